#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"
#include "audit.h"
#include "control_api.h"
#include "policy.h"
#include "tenancy.h"
#include "vault.h"

/*
 * Every request goes through call(), which checks each response of the run
 * against every secret value the tests have used: no value may ever come
 * back, whatever the route, status or error.
 */

/* ---- secret values seen by the run --------------------------------------- */

#define SECRETS_MAX 512
static char *secrets[SECRETS_MAX];
static size_t n_secrets;
static size_t responses_checked;

static const char *secret(const char *value)
{
	for (size_t i = 0; i < n_secrets; i++)
		if (strcmp(secrets[i], value) == 0)
			return secrets[i];
	assert_true(n_secrets < SECRETS_MAX);
	secrets[n_secrets] = strdup(value);
	assert_non_null(secrets[n_secrets]);
	return secrets[n_secrets++];
}

static void check_no_secret_in(const char *body, size_t len)
{
	responses_checked++;
	for (size_t i = 0; body && i < n_secrets; i++)
		if (memmem(body, len, secrets[i], strlen(secrets[i])))
			fail_msg("a response holds a secret value: %.*s", (int)len, body);
}

/* ---- fixture ------------------------------------------------------------- */

struct fixture {
	char root[64];
	char state_dir[PATH_MAX];
	char key_path[PATH_MAX];
	struct master_key *key;
	struct control_api *api;
	char err[512];
	char sbx[40];        /* a sandbox of tenant "default" */
	char key_a[64];      /* an API key of tenant "a" */
	char key_b[64];      /* an API key of tenant "b" */
	char key_b_id[40];
};

enum { ADMIN_CALLER = CONTROL_CALLER_ADMIN, TCP_CALLER = CONTROL_CALLER_TCP };

struct reply {
	int status;
	json_t *json;        /* NULL for 204 */
	char allow[64];
};

static struct reply call_req(struct fixture *f, const struct control_request *req)
{
	struct control_response resp;
	struct reply out;
	json_error_t jerr;

	memset(&out, 0, sizeof(out));
	assert_int_equal(control_api_handle(f->api, req, &resp), 0);
	check_no_secret_in(resp.body, resp.body_len);
	if (resp.status == 500)
		print_message("500 detail: %s\n", resp.detail);
	/* No request may leave a store connection in a transaction or with a
	 * statement running: in WAL mode that connection would read its old
	 * snapshot for the rest of the worker's life.  control_api_handle()
	 * repairs it and says so in the detail; here that is a failure. */
	if (strstr(resp.detail, "store left busy"))
		fail_msg("%s %s left a store connection busy: %s", req->method, req->path,
			 resp.detail);
	{
		char why[256] = "";

		if (control_api_check_idle(f->api, false, why, sizeof(why)) != 0)
			fail_msg("%s %s: %s", req->method, req->path, why);
	}
	out.status = resp.status;
	memcpy(out.allow, resp.allow, sizeof(out.allow));
	if (resp.status == 204) {
		assert_null(resp.body);
	} else {
		assert_non_null(resp.body);
		assert_int_equal(strlen(resp.body), resp.body_len);
		out.json = json_loadb(resp.body, resp.body_len, JSON_REJECT_DUPLICATES, &jerr);
		if (!out.json || !json_is_object(out.json))
			fail_msg("response is not a JSON object: %s", resp.body);
	}
	if (resp.status >= 400) {
		assert_non_null(json_string_value(json_object_get(out.json, "error")));
		assert_non_null(json_string_value(json_object_get(out.json, "message")));
		assert_int_equal(json_object_size(out.json), 2);
	}
	control_response_free(&resp);
	assert_null(resp.body);
	return out;
}

/* target = path[?query]; a body is sent as application/json. */
static struct reply call(struct fixture *f, int caller, const char *bearer, const char *method,
			 const char *target, const char *body)
{
	char path[4096];
	const char *q = strchr(target, '?');
	struct control_request req = {
		.caller = (enum control_caller_kind)caller,
		.method = method,
		.path = path,
		.query = q ? q + 1 : "",
		.content_type = body ? "application/json" : NULL,
		.bearer = bearer,
		.body = (const uint8_t *)body,
		.body_len = body ? strlen(body) : 0,
		.has_body = body != NULL,
	};

	snprintf(path, sizeof(path), "%.*s", (int)(q ? (size_t)(q - target) : strlen(target)),
		 target);
	return call_req(f, &req);
}

static json_t *expect(struct fixture *f, int caller, const char *bearer, int status,
		      const char *method, const char *target, const char *body)
{
	struct reply r = call(f, caller, bearer, method, target, body);
	char *dump;

	if (r.status != status) {
		dump = r.json ? json_dumps(r.json, 0) : NULL;
		fail_msg("%s %s: status %d, want %d: %s", method, target, r.status, status,
			 dump ? dump : "(no body)");
	}
	return r.json;
}

#define ADMIN(status, method, target, body) \
	expect(f, ADMIN_CALLER, NULL, status, method, target, body)
#define TCP(key, status, method, target, body) \
	expect(f, TCP_CALLER, key, status, method, target, body)

static void expect_error(struct fixture *f, int caller, const char *bearer, int status,
			 const char *code, const char *method, const char *target,
			 const char *body)
{
	json_t *j = expect(f, caller, bearer, status, method, target, body);

	assert_string_equal(json_string_value(json_object_get(j, "error")), code);
	json_decref(j);
}

static const char *jstr(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	if (!s)
		fail_msg("no string field '%s'", key);
	return s;
}

static json_int_t jint(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);

	assert_true(json_is_integer(v));
	return json_integer_value(v);
}

static void drop(json_t *j)
{
	json_decref(j);
}

/* json_dumps() memory comes from jansson's (wiping) allocator: free it there. */
static void jfree(void *p)
{
	json_free_t fr = NULL;

	json_get_alloc_funcs(NULL, &fr);
	fr(p);
}

static void mint_key(struct fixture *f, const char *tenant, char *out, size_t size,
		     char *id_out, size_t id_size)
{
	char target[128];
	json_t *j;

	snprintf(target, sizeof(target), "/v1/tenants/%s/apikeys", tenant);
	j = ADMIN(201, "POST", target, "{\"name\": \"test key\"}");
	snprintf(out, size, "%s", jstr(j, "key"));
	if (id_out)
		snprintf(id_out, id_size, "%s", jstr(j, "id"));
	drop(j);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	json_t *j;

	if (!f)
		return -1;
	if (fixture_tmpdir("capi", f->root) != 0)
		return -1;
	snprintf(f->state_dir, sizeof(f->state_dir), "%s/state", f->root);
	if (fixture_master_key(f->root, f->key_path, sizeof(f->key_path), &f->key,
			       f->err, sizeof(f->err)) != 0 ||
	    control_api_open(f->state_dir, f->key, &f->api, f->err, sizeof(f->err)) != 0 ||
	    control_api_bootstrap(f->api, f->err, sizeof(f->err)) != 0) {
		fprintf(stderr, "setup: %s\n", f->err);
		return -1;
	}
	*state = f;
	drop(ADMIN(201, "POST", "/v1/tenants", "{\"id\": \"a\"}"));
	drop(ADMIN(201, "POST", "/v1/tenants", "{\"id\": \"b\", \"name\": \"Tenant B\"}"));
	mint_key(f, "a", f->key_a, sizeof(f->key_a), NULL, 0);
	mint_key(f, "b", f->key_b, sizeof(f->key_b), f->key_b_id, sizeof(f->key_b_id));
	j = ADMIN(201, "POST", "/v1/sandboxes", "{}");
	snprintf(f->sbx, sizeof(f->sbx), "%s", jstr(j, "id"));
	drop(j);
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	control_api_close(f->api);
	master_key_free(f->key);
	fixture_rmtree(f->root);
	free(f);
	return 0;
}

static void reopen(struct fixture *f)
{
	control_api_close(f->api);
	f->api = NULL;
	assert_int_equal(control_api_open(f->state_dir, f->key, &f->api, f->err, sizeof(f->err)), 0);
	assert_int_equal(control_api_bootstrap(f->api, f->err, sizeof(f->err)), 0);
}

static void assert_rfc3339_micro(const char *s)
{
	regex_t re;

	assert_int_equal(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$",
				 REG_EXTENDED | REG_NOSUB), 0);
	if (regexec(&re, s, 0, NULL, 0) != 0)
		fail_msg("not RFC 3339 UTC with microseconds: %s", s);
	regfree(&re);
}

/* PUT a secret; returns the answer. */
static json_t *put_secret(struct fixture *f, int status, const char *target, const char *env,
			  const char *value)
{
	char body[512];

	snprintf(body, sizeof(body), "{\"value\": \"%s\", \"expose_as_env\": \"%s\"}",
		 secret(value), env);
	return ADMIN(status, "PUT", target, body);
}

/* ---- process-wide --------------------------------------------------------- */

static void test_global_init_installs_a_wiping_allocator(void **state)
{
	json_malloc_t m = NULL;
	json_free_t fr = NULL;

	(void)state;
	json_get_alloc_funcs(&m, &fr);
	assert_non_null(m);
	assert_non_null(fr);
	assert_ptr_not_equal((void *)m, (void *)malloc);
	assert_ptr_not_equal((void *)fr, (void *)free);
}

/* ---- health and tenants --------------------------------------------------- */

static void test_health_answers_without_a_key(void **state)
{
	struct fixture *f = *state;
	json_t *j = TCP(NULL, 200, "GET", "/v1/health", NULL);

	assert_string_equal(jstr(j, "status"), "ok");
	assert_true(strlen(jstr(j, "version")) > 0);
	drop(j);
	drop(ADMIN(200, "GET", "/v1/health", NULL));
}

static void test_bootstrap_creates_the_default_tenant_once(void **state)
{
	struct fixture *f = *state;
	json_t *j, *list;

	assert_int_equal(control_api_bootstrap(f->api, f->err, sizeof(f->err)), 0);
	j = ADMIN(200, "GET", "/v1/tenants", NULL);
	list = json_object_get(j, "tenants");
	assert_int_equal(json_array_size(list), 3);
	assert_string_equal(jstr(json_array_get(list, 0), "id"), "a");
	assert_string_equal(jstr(json_array_get(list, 2), "id"), "default");
	drop(j);
}

static void test_tenant_is_created_read_and_its_setting_patched(void **state)
{
	struct fixture *f = *state;
	json_t *j, *settings;

	j = ADMIN(201, "POST", "/v1/tenants", "{\"id\": \"acme\", \"name\": \"Acme Inc ✓\"}");
	assert_string_equal(jstr(j, "id"), "acme");
	assert_string_equal(jstr(j, "name"), "Acme Inc ✓");
	assert_rfc3339_micro(jstr(j, "created_at"));
	settings = json_object_get(j, "settings");
	assert_true(json_is_true(json_object_get(settings, "allow_end_user_scoped_credentials")));
	drop(j);
	j = ADMIN(200, "GET", "/v1/tenants/acme", NULL);
	assert_string_equal(jstr(j, "name"), "Acme Inc ✓");
	drop(j);
	j = ADMIN(200, "PATCH", "/v1/tenants/acme/settings",
		  "{\"allow_end_user_scoped_credentials\": false}");
	settings = json_object_get(j, "settings");
	assert_true(json_is_false(json_object_get(settings, "allow_end_user_scoped_credentials")));
	drop(j);
	j = ADMIN(200, "PATCH", "/v1/tenants/acme/settings", "{}");
	settings = json_object_get(j, "settings");
	assert_true(json_is_false(json_object_get(settings, "allow_end_user_scoped_credentials")));
	drop(j);
	/* A key's own tenant is reachable over TCP, settings included. */
	j = TCP(f->key_a, 200, "PATCH", "/v1/tenants/a/settings",
		"{\"allow_end_user_scoped_credentials\": true}");
	drop(j);
	drop(TCP(f->key_a, 200, "GET", "/v1/tenants/a", NULL));
	expect_error(f, ADMIN_CALLER, NULL, 409, "conflict", "POST", "/v1/tenants",
		     "{\"id\": \"acme\"}");
}

/* ---- API keys ------------------------------------------------------------- */

static void test_api_key_is_shown_once_and_revoked_key_gets_401(void **state)
{
	struct fixture *f = *state;
	char key[64], id[40], target[128];
	json_t *j, *item;
	const char *revoked;

	j = ADMIN(201, "POST", "/v1/tenants/a/apikeys", "{\"name\": \"deploy\"}");
	snprintf(key, sizeof(key), "%s", jstr(j, "key"));
	snprintf(id, sizeof(id), "%s", jstr(j, "id"));
	assert_int_equal(strlen(key), TENANCY_API_KEY_LEN);
	assert_int_equal(strncmp(key, jstr(j, "prefix"), strlen(jstr(j, "prefix"))), 0);
	assert_true(json_is_null(json_object_get(j, "revoked_at")));
	assert_true(json_is_null(json_object_get(j, "last_used_at")));
	assert_string_equal(jstr(j, "tenant_id"), "a");
	drop(j);
	/* The key works, and listings never show it again. */
	drop(TCP(key, 200, "GET", "/v1/sandboxes", NULL));
	j = TCP(key, 200, "GET", "/v1/tenants/a/apikeys", NULL);
	assert_int_equal(json_array_size(json_object_get(j, "apikeys")), 2);
	for (size_t i = 0; i < 2; i++) {
		char *dump;

		item = json_array_get(json_object_get(j, "apikeys"), i);
		assert_null(json_object_get(item, "key"));
		dump = json_dumps(item, 0);
		assert_null(strstr(dump, key + TENANCY_API_KEY_DISPLAY_LEN));
		jfree(dump);
	}
	item = json_array_get(json_object_get(j, "apikeys"), 1);
	assert_string_equal(jstr(item, "id"), id);
	assert_rfc3339_micro(jstr(item, "last_used_at"));
	drop(j);
	snprintf(target, sizeof(target), "/v1/tenants/a/apikeys/%s", id);
	j = ADMIN(200, "DELETE", target, NULL);
	revoked = jstr(j, "revoked_at");
	assert_rfc3339_micro(revoked);
	item = ADMIN(200, "DELETE", target, NULL); /* revoking twice keeps the time */
	assert_string_equal(jstr(item, "revoked_at"), revoked);
	drop(item);
	drop(j);
	expect_error(f, TCP_CALLER, key, 401, "unauthorized", "GET", "/v1/sandboxes", NULL);
	expect_error(f, TCP_CALLER, key, 401, "unauthorized", "GET", "/v1/tenants/a", NULL);
	/* A key may revoke itself: the next request is refused. */
	snprintf(target, sizeof(target), "/v1/tenants/a/apikeys");
	j = TCP(f->key_a, 200, "GET", target, NULL);
	snprintf(id, sizeof(id), "%s", jstr(json_array_get(json_object_get(j, "apikeys"), 0), "id"));
	drop(j);
	snprintf(target, sizeof(target), "/v1/tenants/a/apikeys/%s", id);
	drop(TCP(f->key_a, 200, "DELETE", target, NULL));
	expect_error(f, TCP_CALLER, f->key_a, 401, "unauthorized", "GET", "/v1/sandboxes", NULL);
}

/* ---- sandboxes ------------------------------------------------------------ */

static const char full_sandbox[] =
	"{\"user_id\": \"u1\", \"workspace_id\": \"w1\", \"external_user_id\": \"alice\","
	" \"external_workspace_id\": \"team-a\", \"template\": \"py312\","
	" \"vsock_uds\": \"/run/miosa/vm-7.sock\"}";

static void test_sandbox_is_created_read_listed_and_deleted(void **state)
{
	struct fixture *f = *state;
	char target[128], id[40];
	json_t *j, *t;

	j = ADMIN(201, "POST", "/v1/sandboxes", full_sandbox);
	snprintf(id, sizeof(id), "%s", jstr(j, "id"));
	assert_true(tenancy_sandbox_id_is_valid(id));
	assert_string_equal(jstr(j, "tenant_id"), "default");
	assert_string_equal(jstr(j, "user_id"), "u1");
	assert_string_equal(jstr(j, "workspace_id"), "w1");
	assert_string_equal(jstr(j, "external_user_id"), "alice");
	assert_string_equal(jstr(j, "external_workspace_id"), "team-a");
	assert_string_equal(jstr(j, "template"), "py312");
	t = json_object_get(j, "transport");
	assert_string_equal(jstr(t, "kind"), "uds");
	assert_string_equal(jstr(t, "uds"), "/run/miosa/vm-7.sock");
	assert_rfc3339_micro(jstr(j, "created_at"));
	drop(j);
	snprintf(target, sizeof(target), "/v1/sandboxes/%s", id);
	j = ADMIN(200, "GET", target, NULL);
	assert_string_equal(jstr(j, "external_user_id"), "alice");
	drop(j);
	j = ADMIN(201, "POST", "/v1/sandboxes", "{\"tenant_id\": \"a\", \"vsock_cid\": 77}");
	t = json_object_get(j, "transport");
	assert_string_equal(jstr(t, "kind"), "vsock");
	assert_int_equal(jint(t, "cid"), 77);
	assert_true(json_is_null(json_object_get(j, "user_id")));
	assert_true(json_is_null(json_object_get(j, "template")));
	drop(j);
	j = ADMIN(200, "GET", "/v1/sandboxes", NULL);
	assert_int_equal(json_array_size(json_object_get(j, "sandboxes")), 3);
	drop(j);
	assert_null(ADMIN(204, "DELETE", target, NULL));
	expect_error(f, ADMIN_CALLER, NULL, 404, "not_found", "GET", target, NULL);
	expect_error(f, ADMIN_CALLER, NULL, 404, "not_found", "DELETE", target, NULL);
	/* The transport is free again. */
	drop(ADMIN(201, "POST", "/v1/sandboxes", full_sandbox));
	expect_error(f, ADMIN_CALLER, NULL, 409, "conflict", "POST", "/v1/sandboxes", full_sandbox);
	drop(TCP(f->key_b, 201, "POST", "/v1/sandboxes", "{\"tenant_id\": \"b\"}"));
	drop(TCP(f->key_b, 201, "POST", "/v1/sandboxes", "{\"tenant_id\": null}"));
}

static size_t count_listed(struct fixture *f, int caller, const char *key, const char *target)
{
	json_t *j = expect(f, caller, key, 200, "GET", target, NULL);
	size_t n = json_array_size(json_object_get(j, "sandboxes"));

	drop(j);
	return n;
}

static void test_sandbox_list_filters_by_strict_equality(void **state)
{
	struct fixture *f = *state;

	drop(ADMIN(201, "POST", "/v1/sandboxes", "{\"external_user_id\": \"alice\", \"external_workspace_id\": \"w1\"}"));
	drop(ADMIN(201, "POST", "/v1/sandboxes", "{\"external_user_id\": \"Alice\", \"external_workspace_id\": \"w1\"}"));
	drop(ADMIN(201, "POST", "/v1/sandboxes", "{\"external_user_id\": \"alice\", \"tenant_id\": \"a\"}"));
	drop(TCP(f->key_b, 201, "POST", "/v1/sandboxes", "{\"external_user_id\": \"alice\"}"));
	assert_int_equal(count_listed(f, ADMIN_CALLER, NULL, "/v1/sandboxes?external_user_id=alice"), 3);
	assert_int_equal(count_listed(f, ADMIN_CALLER, NULL,
				      "/v1/sandboxes?external_user_id=alice&tenant_id=default"), 1);
	assert_int_equal(count_listed(f, ADMIN_CALLER, NULL, "/v1/sandboxes?external_workspace_id=w1"), 2);
	assert_int_equal(count_listed(f, ADMIN_CALLER, NULL,
				      "/v1/sandboxes?external_workspace_id=w1&external_user_id=Alice"), 1);
	assert_int_equal(count_listed(f, ADMIN_CALLER, NULL, "/v1/sandboxes?external_user_id=ali"), 0);
	assert_int_equal(count_listed(f, ADMIN_CALLER, NULL, "/v1/sandboxes?tenant_id=default"), 3);
	assert_int_equal(count_listed(f, TCP_CALLER, f->key_b, "/v1/sandboxes"), 1);
	assert_int_equal(count_listed(f, TCP_CALLER, f->key_b, "/v1/sandboxes?tenant_id=b"), 1);
	assert_int_equal(count_listed(f, TCP_CALLER, f->key_a, "/v1/sandboxes?external_user_id=alice"), 1);
	assert_int_equal(count_listed(f, TCP_CALLER, f->key_a, "/v1/sandboxes?external_user_id=Alice"), 0);
}

static void test_sandbox_patch_confirms_and_refuses_changes(void **state)
{
	static const char *const changes[] = {
		"{\"external_user_id\": \"mallory\"}",
		"{\"external_user_id\": null}",
		"{\"external_workspace_id\": \"team-b\"}",
		"{\"user_id\": \"u2\"}",
		"{\"workspace_id\": null}",
		"{\"template\": \"other\"}",
		"{\"vsock_uds\": \"/run/miosa/elsewhere.sock\"}",
		"{\"vsock_cid\": 9}",
		"{\"vsock_uds\": null}",
		"{\"transport\": {\"kind\": \"none\"}}",
		"{\"transport\": {\"kind\": \"uds\", \"uds\": \"/x\"}}",
		"{\"tenant_id\": \"a\"}",
		"{\"id\": \"sbx_000000000000000000000000\"}",
		"{\"created_at\": \"2000-01-01T00:00:00.000000Z\"}",
	};
	struct fixture *f = *state;
	char target[128], *same;
	json_t *j;

	j = ADMIN(201, "POST", "/v1/sandboxes", full_sandbox);
	snprintf(target, sizeof(target), "/v1/sandboxes/%s", jstr(j, "id"));
	/* The object as read back is a no-op PATCH. */
	same = json_dumps(j, JSON_COMPACT);
	drop(j);
	drop(ADMIN(200, "PATCH", target, same));
	jfree(same);
	drop(ADMIN(200, "PATCH", target, "{}"));
	drop(ADMIN(200, "PATCH", target, "{\"external_user_id\": \"alice\", \"vsock_cid\": null}"));
	drop(ADMIN(200, "PATCH", target, "{\"transport\": {\"kind\": \"uds\"}}"));
	for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		j = ADMIN(409, "PATCH", target, changes[i]);
		assert_string_equal(jstr(j, "error"), "conflict");
		assert_non_null(strstr(jstr(j, "message"), "immutable"));
		drop(j);
	}
	j = ADMIN(200, "GET", target, NULL);
	assert_string_equal(jstr(j, "external_user_id"), "alice");
	drop(j);
	expect_error(f, ADMIN_CALLER, NULL, 400, "invalid_field", "PATCH", target,
		     "{\"external_user_id\": \"has space\"}");
	expect_error(f, ADMIN_CALLER, NULL, 400, "invalid_field", "PATCH", target,
		     "{\"transport\": {\"kind\": \"tcp\"}}");
	expect_error(f, ADMIN_CALLER, NULL, 400, "invalid_field", "PATCH", target,
		     "{\"transport\": {\"uds\": \"/x\"}}");
	expect_error(f, ADMIN_CALLER, NULL, 400, "invalid_field", "PATCH", target,
		     "{\"name\": \"x\"}");
}

/* ---- secrets -------------------------------------------------------------- */

static void test_sandbox_secret_put_creates_then_replaces_with_the_same_placeholder(void **state)
{
	struct fixture *f = *state;
	char target[160], body[256], placeholder[64];
	json_t *j, *hosts;

	snprintf(target, sizeof(target), "/v1/sandboxes/%s/secrets/openai", f->sbx);
	j = put_secret(f, 201, target, "OPENAI_API_KEY", "sk-proj-first-0001");
	assert_string_equal(jstr(j, "name"), "openai");
	assert_string_equal(jstr(j, "expose_as_env"), "OPENAI_API_KEY");
	assert_string_equal(jstr(j, "scope"), "sandbox");
	assert_string_equal(jstr(j, "scope_id"), f->sbx);
	assert_int_equal(jint(j, "version"), 1);
	assert_true(json_is_null(json_object_get(j, "rotated_at")));
	assert_true(json_is_false(json_object_get(j, "allow_cleartext")));
	assert_int_equal(json_array_size(json_object_get(j, "hosts")), 0);
	snprintf(placeholder, sizeof(placeholder), "%s", jstr(j, "placeholder"));
	assert_true(vault_placeholder_is_valid(placeholder, strlen(placeholder)));
	assert_null(json_object_get(j, "value"));
	drop(j);
	snprintf(body, sizeof(body),
		 "{\"value\": \"%s\", \"expose_as_env\": \"OPENAI_API_KEY\","
		 " \"hosts\": [\"API.openai.com\", \"*.openai.com\"], \"allow_cleartext\": true}",
		 secret("sk-proj-second-0002"));
	j = ADMIN(200, "PUT", target, body);
	assert_int_equal(jint(j, "version"), 2);
	assert_string_equal(jstr(j, "placeholder"), placeholder);
	assert_true(json_is_true(json_object_get(j, "allow_cleartext")));
	hosts = json_object_get(j, "hosts");
	assert_int_equal(json_array_size(hosts), 2);
	assert_string_equal(json_string_value(json_array_get(hosts, 0)), "api.openai.com");
	assert_rfc3339_micro(jstr(j, "rotated_at"));
	drop(j);
	/* Two names cannot share one env variable at one scope. */
	snprintf(target, sizeof(target), "/v1/sandboxes/%s/secrets/openai2", f->sbx);
	drop(put_secret(f, 409, target, "OPENAI_API_KEY", "sk-proj-clash-0003"));
	snprintf(target, sizeof(target), "/v1/sandboxes/%s/secrets/openai", f->sbx);
	assert_null(ADMIN(204, "DELETE", target, NULL));
	expect_error(f, ADMIN_CALLER, NULL, 404, "not_found", "DELETE", target, NULL);
}

/* The placeholder and version of env in a sandbox's view. */
static json_t *binding_of(struct fixture *f, const char *sbx, const char *env)
{
	char target[128];
	json_t *j, *b, *found = NULL;
	size_t i;

	snprintf(target, sizeof(target), "/v1/sandboxes/%s/secrets", sbx);
	j = ADMIN(200, "GET", target, NULL);
	json_array_foreach(json_object_get(j, "bindings"), i, b)
		if (strcmp(jstr(b, "expose_as_env"), env) == 0)
			found = json_incref(b);
	drop(j);
	return found;
}

static void test_rotate_keeps_the_placeholder_and_bumps_the_version(void **state)
{
	struct fixture *f = *state;
	char target[160], body[128], placeholder[64];
	json_t *j, *b;

	snprintf(target, sizeof(target), "/v1/sandboxes/%s/secrets/gh", f->sbx);
	drop(put_secret(f, 201, target, "GITHUB_TOKEN", "ghp_rotate_before_000"));
	b = binding_of(f, f->sbx, "GITHUB_TOKEN");
	snprintf(placeholder, sizeof(placeholder), "%s", jstr(b, "placeholder"));
	assert_int_equal(jint(b, "version"), 1);
	drop(b);
	snprintf(target, sizeof(target), "/v1/sandboxes/%s/secrets/gh/rotate", f->sbx);
	snprintf(body, sizeof(body), "{\"value\": \"%s\"}", secret("ghp_rotate_after_111"));
	j = ADMIN(200, "POST", target, body);
	assert_int_equal(jint(j, "version"), 2);
	assert_string_equal(jstr(j, "placeholder"), placeholder);
	assert_rfc3339_micro(jstr(j, "rotated_at"));
	drop(j);
	b = binding_of(f, f->sbx, "GITHUB_TOKEN");
	assert_string_equal(jstr(b, "placeholder"), placeholder);
	assert_int_equal(jint(b, "version"), 2);
	drop(b);
	/* A wider scope: the sandbox's placeholder for it survives rotation too. */
	drop(put_secret(f, 201, "/v1/tenants/default/secrets/tenant/default/slack", "SLACK_TOKEN",
			"xoxb-rotate-before-22"));
	b = binding_of(f, f->sbx, "SLACK_TOKEN");
	snprintf(placeholder, sizeof(placeholder), "%s", jstr(b, "placeholder"));
	drop(b);
	snprintf(body, sizeof(body), "{\"value\": \"%s\"}", secret("xoxb-rotate-after-33"));
	j = ADMIN(200, "POST", "/v1/tenants/default/secrets/tenant/default/slack/rotate", body);
	assert_int_equal(jint(j, "version"), 2);
	assert_null(json_object_get(j, "placeholder"));
	drop(j);
	b = binding_of(f, f->sbx, "SLACK_TOKEN");
	assert_string_equal(jstr(b, "placeholder"), placeholder);
	assert_int_equal(jint(b, "version"), 2);
	drop(b);
	expect_error(f, ADMIN_CALLER, NULL, 404, "not_found", "POST",
		     "/v1/tenants/default/secrets/tenant/default/nope/rotate", body);
}

static void test_scope_walk_through_the_api_picks_the_most_specific_scope(void **state)
{
	static const struct {
		const char *scope, *name, *delete_target;
	} levels[] = {
		{ "sandbox", "k0", NULL },
		{ "user", "k1", "/v1/tenants/default/secrets/user/u1/k1" },
		{ "external_user", "k2", "/v1/tenants/default/secrets/external_user/alice/k2" },
		{ "external_workspace", "k3", "/v1/tenants/default/secrets/external_workspace/team-a/k3" },
		{ "workspace", "k4", "/v1/tenants/default/secrets/workspace/w1/k4" },
		{ "tenant", "k5", "/v1/tenants/default/secrets/tenant/default/k5" },
	};
	struct fixture *f = *state;
	char sbx[40], target[160], value[64];
	json_t *j, *b;

	j = ADMIN(201, "POST", "/v1/sandboxes", full_sandbox);
	snprintf(sbx, sizeof(sbx), "%s", jstr(j, "id"));
	drop(j);
	/* Set widest first so each new level must win by rule, not by order. */
	for (size_t i = sizeof(levels) / sizeof(levels[0]); i-- > 0;) {
		if (i == 0)
			snprintf(target, sizeof(target), "/v1/sandboxes/%s/secrets/k0", sbx);
		else
			snprintf(target, sizeof(target), "%s", levels[i].delete_target);
		snprintf(value, sizeof(value), "sk-walk-level-%zu-value", i);
		drop(put_secret(f, 201, target, "OPENAI_API_KEY", value));
	}
	drop(put_secret(f, 201, "/v1/tenants/default/secrets/tenant/default/other", "OTHER",
			"sk-walk-other-value"));
	/* Peel the levels off one by one: the next one wins each time. */
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		b = binding_of(f, sbx, "OPENAI_API_KEY");
		assert_non_null(b);
		assert_string_equal(jstr(b, "scope"), levels[i].scope);
		assert_string_equal(jstr(b, "name"), levels[i].name);
		assert_true(vault_placeholder_is_valid(jstr(b, "placeholder"),
						       strlen(jstr(b, "placeholder"))));
		drop(b);
		b = binding_of(f, sbx, "OTHER");
		assert_string_equal(jstr(b, "scope"), "tenant");
		drop(b);
		if (i == 0)
			snprintf(target, sizeof(target), "/v1/sandboxes/%s/secrets/k0", sbx);
		else
			snprintf(target, sizeof(target), "%s", levels[i].delete_target);
		assert_null(ADMIN(204, "DELETE", target, NULL));
	}
	assert_null(binding_of(f, sbx, "OPENAI_API_KEY"));
	/* The fixture's plain sandbox never saw the user-level ones. */
	b = binding_of(f, f->sbx, "OTHER");
	assert_string_equal(jstr(b, "scope"), "tenant");
	drop(b);
}

static void test_external_user_scope_is_gated_by_the_tenant_setting(void **state)
{
	struct fixture *f = *state;
	const char *target = "/v1/tenants/default/secrets/external_user/alice/eu";
	char body[128];
	json_t *j;

	drop(put_secret(f, 201, target, "EU_TOKEN", "eu-token-before-off"));
	drop(ADMIN(200, "PATCH", "/v1/tenants/default/settings",
		   "{\"allow_end_user_scoped_credentials\": false}"));
	snprintf(body, sizeof(body), "{\"value\": \"%s\", \"expose_as_env\": \"EU2\"}",
		 secret("eu-token-while-off"));
	j = ADMIN(403, "PUT", "/v1/tenants/default/secrets/external_user/alice/eu2", body);
	assert_string_equal(jstr(j, "error"), "end_user_credentials_disabled");
	assert_non_null(strstr(jstr(j, "message"), "allow end-user-scoped credentials"));
	drop(j);
	snprintf(body, sizeof(body), "{\"value\": \"%s\"}", secret("eu-token-rotate-off"));
	expect_error(f, ADMIN_CALLER, NULL, 403, "end_user_credentials_disabled", "POST",
		     "/v1/tenants/default/secrets/external_user/alice/eu/rotate", body);
	/* Other scopes are unaffected; listing and deleting still work. */
	drop(put_secret(f, 201, "/v1/tenants/default/secrets/external_workspace/team-a/ew",
			"EW_TOKEN", "ew-token-while-off"));
	drop(ADMIN(200, "GET", "/v1/tenants/default/secrets/external_user/alice", NULL));
	drop(ADMIN(200, "PATCH", "/v1/tenants/default/settings",
		   "{\"allow_end_user_scoped_credentials\": true}"));
	drop(put_secret(f, 201, "/v1/tenants/default/secrets/external_user/alice/eu2", "EU2",
			"eu-token-after-on"));
	/* Another tenant's setting is its own. */
	drop(TCP(f->key_b, 200, "PATCH", "/v1/tenants/b/settings",
		 "{\"allow_end_user_scoped_credentials\": false}"));
	drop(put_secret(f, 201, "/v1/tenants/default/secrets/external_user/bob/eu3", "EU3",
			"eu-token-default-on"));
}

static void test_scope_secrets_are_listed_rotated_and_deleted(void **state)
{
	struct fixture *f = *state;
	const char *base = "/v1/tenants/default/secrets/workspace/w1";
	char body[128];
	json_t *j, *list;

	drop(put_secret(f, 201, "/v1/tenants/default/secrets/workspace/w1/db", "DATABASE_URL",
			"postgres://u:pw-scope-list@db/x"));
	drop(put_secret(f, 201, "/v1/tenants/default/secrets/workspace/w1/api", "API_KEY",
			"sk-scope-list-api"));
	j = ADMIN(200, "GET", base, NULL);
	list = json_object_get(j, "secrets");
	assert_int_equal(json_array_size(list), 2);
	assert_string_equal(jstr(json_array_get(list, 0), "name"), "api"); /* by name */
	assert_string_equal(jstr(json_array_get(list, 1), "scope"), "workspace");
	assert_string_equal(jstr(json_array_get(list, 1), "scope_id"), "w1");
	assert_null(json_object_get(json_array_get(list, 0), "placeholder"));
	drop(j);
	snprintf(body, sizeof(body), "{\"value\": \"%s\"}", secret("sk-scope-list-api-v2"));
	j = ADMIN(200, "POST", "/v1/tenants/default/secrets/workspace/w1/api/rotate", body);
	assert_int_equal(jint(j, "version"), 2);
	drop(j);
	assert_null(ADMIN(204, "DELETE", "/v1/tenants/default/secrets/workspace/w1/api", NULL));
	j = ADMIN(200, "GET", base, NULL);
	assert_int_equal(json_array_size(json_object_get(j, "secrets")), 1);
	drop(j);
	j = ADMIN(200, "GET", "/v1/tenants/default/secrets/user/nobody", NULL);
	assert_int_equal(json_array_size(json_object_get(j, "secrets")), 0);
	drop(j);
}

static void test_path_segments_are_percent_decoded_once(void **state)
{
	struct fixture *f = *state;
	json_t *j;

	j = put_secret(f, 201, "/v1/tenants/default/secrets/external_workspace/team%2Fa/k",
		       "K1", "sk-pct-once-1");
	assert_string_equal(jstr(j, "scope_id"), "team/a");
	drop(j);
	j = put_secret(f, 201, "/v1/tenants/default/secrets/external_workspace/team%252Fa/k",
		       "K2", "sk-pct-once-2");
	assert_string_equal(jstr(j, "scope_id"), "team%2Fa");
	drop(j);
	j = ADMIN(200, "GET", "/v1/tenants/default/secrets/external_workspace/team%2fa", NULL);
	assert_int_equal(json_array_size(json_object_get(j, "secrets")), 1);
	assert_string_equal(jstr(json_array_get(json_object_get(j, "secrets"), 0), "expose_as_env"),
			    "K1");
	drop(j);
	drop(ADMIN(200, "GET", "/v1/%74enants/default", NULL));
}

static void test_media_type_parameters_are_accepted(void **state)
{
	static const char *const types[] = {
		"application/json; charset=utf-8", "Application/JSON;charset=\"UTF-8\"",
		"application/json ; foo=bar", "application/json",
	};
	struct fixture *f = *state;
	const char *body = "{}";

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		struct control_request req = {
			.caller = CONTROL_CALLER_ADMIN, .method = "POST", .path = "/v1/sandboxes",
			.query = "", .content_type = types[i], .body = (const uint8_t *)body,
			.body_len = strlen(body), .has_body = true,
		};
		struct reply r = call_req(f, &req);

		assert_int_equal(r.status, 201);
		drop(r.json);
	}
}

static void test_wrong_method_answers_405_with_allow(void **state)
{
	struct fixture *f = *state;
	char target[128];
	struct reply r;

	r = call(f, ADMIN_CALLER, NULL, "DELETE", "/v1/sandboxes", NULL);
	assert_int_equal(r.status, 405);
	assert_string_equal(r.allow, "POST, GET");
	assert_string_equal(jstr(r.json, "error"), "method_not_allowed");
	drop(r.json);
	snprintf(target, sizeof(target), "/v1/sandboxes/%s/secrets", f->sbx);
	r = call(f, TCP_CALLER, f->key_a, "POST", target, "{}");
	assert_int_equal(r.status, 405);
	assert_string_equal(r.allow, "GET");
	drop(r.json);
	r = call(f, ADMIN_CALLER, NULL, "GET", "/v1/health", NULL);
	assert_string_equal(r.allow, "");
	drop(r.json);
	/* Admin-only paths do not exist for TCP, whatever the method. */
	r = call(f, TCP_CALLER, f->key_a, "DELETE", "/v1/tenants", NULL);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.allow, "");
	drop(r.json);
}

/* ---- sandbox CA ------------------------------------------------------------ */

/* An answer's object holds no private key, in any spelling we know. */
static void assert_no_private_key(const json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT);

	assert_non_null(text);
	assert_null(strstr(text, "PRIVATE KEY"));
	assert_null(strstr(text, "sealed"));
	jfree(text);
}

static void test_sandbox_ca_answers_the_certificate_only(void **state)
{
	struct fixture *f = *state;
	char target[128], again_target[128];
	const char *pem, *fp;
	json_t *j, *again;
	struct reply r;

	snprintf(target, sizeof(target), "/v1/sandboxes/%s/ca", f->sbx);
	j = ADMIN(200, "GET", target, NULL);
	assert_int_equal(json_object_size(j), 5);
	assert_string_equal(jstr(j, "sandbox_id"), f->sbx);
	pem = jstr(j, "certificate_pem");
	assert_int_equal(strncmp(pem, "-----BEGIN CERTIFICATE-----\n", 28), 0);
	assert_non_null(strstr(pem, "-----END CERTIFICATE-----\n"));
	assert_rfc3339_micro(jstr(j, "not_before"));
	assert_rfc3339_micro(jstr(j, "not_after"));
	assert_true(strcmp(jstr(j, "not_before"), jstr(j, "not_after")) < 0);
	fp = jstr(j, "sha256_fingerprint");
	assert_int_equal(strlen(fp), 95);
	for (size_t i = 0; i < 95; i++)
		assert_true(i % 3 == 2 ? fp[i] == ':' : strchr("0123456789ABCDEF", fp[i]) != NULL);
	assert_no_private_key(j);
	/* Stable: the same certificate every time, and after a restart. */
	again = ADMIN(200, "GET", target, NULL);
	assert_string_equal(jstr(again, "certificate_pem"), pem);
	drop(again);
	reopen(f);
	again = ADMIN(200, "GET", target, NULL);
	assert_string_equal(jstr(again, "certificate_pem"), pem);
	assert_string_equal(jstr(again, "sha256_fingerprint"), fp);
	drop(again);
	/* Over TCP, the owning tenant's key sees its own sandbox's CA. */
	again = TCP(f->key_b, 201, "POST", "/v1/sandboxes", "{}");
	snprintf(again_target, sizeof(again_target), "/v1/sandboxes/%s/ca", jstr(again, "id"));
	drop(again);
	again = TCP(f->key_b, 200, "GET", again_target, NULL);
	assert_string_not_equal(jstr(again, "certificate_pem"), pem);
	assert_no_private_key(again);
	drop(again);
	/* Another tenant's sandbox: exactly a missing one. */
	expect_error(f, TCP_CALLER, f->key_a, 404, "not_found", "GET", again_target, NULL);
	expect_error(f, TCP_CALLER, f->key_a, 404, "not_found", "GET", target, NULL);
	expect_error(f, ADMIN_CALLER, NULL, 404, "not_found", "GET",
		     "/v1/sandboxes/sbx_000000000000000000000000/ca", NULL);
	expect_error(f, ADMIN_CALLER, NULL, 400, "invalid_field", "GET", "/v1/sandboxes/nope/ca",
		     NULL);
	/* Read-only: the CA is made with the sandbox, never by a request. */
	r = call(f, ADMIN_CALLER, NULL, "POST", target, "{}");
	assert_int_equal(r.status, 405);
	assert_string_equal(r.allow, "GET");
	drop(r.json);
	r = call(f, TCP_CALLER, f->key_b, "DELETE", again_target, NULL);
	assert_int_equal(r.status, 405);
	drop(r.json);
	/* Gone with the sandbox. */
	snprintf(again_target, sizeof(again_target), "/v1/sandboxes/%s", f->sbx);
	assert_null(ADMIN(204, "DELETE", again_target, NULL));
	expect_error(f, ADMIN_CALLER, NULL, 404, "not_found", "GET", target, NULL);
	drop(j);
}

/* ---- isolation ------------------------------------------------------------ */

struct b_world {
	char sbx[40], sbx_path[96], secret_path[160], key_path[128];
};

static void make_b_world(struct fixture *f, struct b_world *w)
{
	json_t *j = TCP(f->key_b, 201, "POST", "/v1/sandboxes", "{\"external_user_id\": \"bob\"}");
	char body[128];

	snprintf(w->sbx, sizeof(w->sbx), "%s", jstr(j, "id"));
	drop(j);
	snprintf(w->sbx_path, sizeof(w->sbx_path), "/v1/sandboxes/%s", w->sbx);
	snprintf(w->secret_path, sizeof(w->secret_path), "/v1/sandboxes/%s/secrets/b-secret",
		 w->sbx);
	snprintf(w->key_path, sizeof(w->key_path), "/v1/tenants/b/apikeys/%s", f->key_b_id);
	snprintf(body, sizeof(body), "{\"value\": \"%s\", \"expose_as_env\": \"B_TOKEN\"}",
		 secret("b-secret-value-xyz"));
	drop(TCP(f->key_b, 201, "PUT", w->secret_path, body));
	snprintf(body, sizeof(body), "{\"value\": \"%s\", \"expose_as_env\": \"B_TENANT\"}",
		 secret("b-tenant-value-xyz"));
	drop(TCP(f->key_b, 201, "PUT", "/v1/tenants/b/secrets/tenant/b/bt", body));
}

static void test_tenant_isolation_answers_404_for_everything_of_another_tenant(void **state)
{
	struct fixture *f = *state;
	struct b_world w;
	char rotate[200], other_key[160];
	const char *put = "{\"value\": \"a-intruder-value\", \"expose_as_env\": \"X\"}";
	const char *rot = "{\"value\": \"a-intruder-value\"}";
	json_t *j, *b, *missing;

	secret("a-intruder-value");
	make_b_world(f, &w);
	snprintf(rotate, sizeof(rotate), "%s/rotate", w.secret_path);
	snprintf(other_key, sizeof(other_key), "/v1/tenants/a/apikeys/%s", f->key_b_id);
	const struct { const char *method, *target, *body; } probes[] = {
		{ "GET", w.sbx_path, NULL },
		{ "PATCH", w.sbx_path, "{}" },
		{ "DELETE", w.sbx_path, NULL },
		{ "PUT", w.secret_path, put },
		{ "POST", rotate, rot },
		{ "DELETE", w.secret_path, NULL },
		{ "GET", "/v1/tenants/b", NULL },
		{ "PATCH", "/v1/tenants/b/settings", "{\"allow_end_user_scoped_credentials\": false}" },
		{ "GET", "/v1/tenants/b/apikeys", NULL },
		{ "POST", "/v1/tenants/b/apikeys", "{\"name\": \"stolen\"}" },
		{ "DELETE", w.key_path, NULL },
		{ "DELETE", other_key, NULL },
		{ "GET", "/v1/tenants/b/secrets/tenant/b", NULL },
		{ "PUT", "/v1/tenants/b/secrets/tenant/b/bt", put },
		{ "POST", "/v1/tenants/b/secrets/tenant/b/bt/rotate", rot },
		{ "DELETE", "/v1/tenants/b/secrets/tenant/b/bt", NULL },
		{ "GET", "/v1/sandboxes?tenant_id=b", NULL },
		{ "POST", "/v1/sandboxes", "{\"tenant_id\": \"b\"}" },
		{ "GET", "/v1/tenants", NULL },
		{ "POST", "/v1/tenants", "{\"id\": \"c\"}" },
	};
	char secrets_view[128];

	snprintf(secrets_view, sizeof(secrets_view), "%s/secrets", w.sbx_path);
	expect_error(f, TCP_CALLER, f->key_a, 404, "not_found", "GET", secrets_view, NULL);
	snprintf(secrets_view, sizeof(secrets_view), "%s/ca", w.sbx_path);
	expect_error(f, TCP_CALLER, f->key_a, 404, "not_found", "GET", secrets_view, NULL);
	snprintf(secrets_view, sizeof(secrets_view), "%s/template", w.sbx_path);
	expect_error(f, TCP_CALLER, f->key_a, 404, "not_found", "GET", secrets_view, NULL);
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		expect_error(f, TCP_CALLER, f->key_a, 404, "not_found", probes[i].method,
			     probes[i].target, probes[i].body);
	}
	/* Indistinguishable from a sandbox that does not exist. */
	j = TCP(f->key_a, 404, "GET", w.sbx_path, NULL);
	missing = TCP(f->key_a, 404, "GET", "/v1/sandboxes/sbx_000000000000000000000000", NULL);
	assert_int_equal(strncmp(jstr(j, "message"), "no sandbox sbx_", 15), 0);
	assert_int_equal(strncmp(jstr(missing, "message"), "no sandbox sbx_", 15), 0);
	drop(j);
	drop(missing);
	/* A sees only its own sandboxes. */
	assert_int_equal(count_listed(f, TCP_CALLER, f->key_a, "/v1/sandboxes"), 0);
	/* B's world is untouched and B's key still works. */
	j = TCP(f->key_b, 200, "GET", w.sbx_path, NULL);
	assert_string_equal(jstr(j, "external_user_id"), "bob");
	drop(j);
	b = binding_of(f, w.sbx, "B_TOKEN");
	assert_int_equal(jint(b, "version"), 1);
	drop(b);
	b = binding_of(f, w.sbx, "B_TENANT");
	assert_int_equal(jint(b, "version"), 1);
	drop(b);
	j = TCP(f->key_b, 200, "GET", "/v1/tenants/b", NULL);
	assert_true(json_is_true(json_object_get(json_object_get(j, "settings"),
						 "allow_end_user_scoped_credentials")));
	drop(j);
	j = TCP(f->key_b, 200, "GET", "/v1/tenants/b/apikeys", NULL);
	assert_int_equal(json_array_size(json_object_get(j, "apikeys")), 1);
	assert_true(json_is_null(json_object_get(json_array_get(json_object_get(j, "apikeys"), 0),
						 "revoked_at")));
	drop(j);
	/* And B cannot reach A's or the default tenant's either. */
	expect_error(f, TCP_CALLER, f->key_b, 404, "not_found", "GET",
		     "/v1/sandboxes?tenant_id=default", NULL);
	snprintf(secrets_view, sizeof(secrets_view), "/v1/sandboxes/%s", f->sbx);
	expect_error(f, TCP_CALLER, f->key_b, 404, "not_found", "DELETE", secrets_view, NULL);
}

/* ---- malformed and unauthorized requests ---------------------------------- */

enum bearer { B_NONE, B_A, B_GARBAGE, B_UNKNOWN };

struct bad_case {
	int caller;
	enum bearer bearer;
	const char *method;
	const char *target;        /* "SBX" is replaced by the fixture's sandbox */
	const char *content_type;  /* NULL: application/json when a body is given */
	const char *body;
	int status;
	const char *code;
};

#define J "application/json"
static const struct bad_case bad_cases[] = {
	/* media type, length, size */
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", "", "{}", 415, "unsupported_media_type" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", "text/plain", "{}", 415, "unsupported_media_type" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", "application/json; charset=latin1", "{}", 415, "unsupported_media_type" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", "application/jsonx", "{}", 415, "unsupported_media_type" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", "application/json garbage", "{}", 415, "unsupported_media_type" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", "-", NULL, 411, "length_required" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/sandboxes/SBX/secrets/x", "-", NULL, 411, "length_required" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "BIG", 413, "payload_too_large" },
	/* JSON */
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "", 400, "invalid_json" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "[]", 400, "invalid_json" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "\"str\"", 400, "invalid_json" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{} x", 400, "invalid_json" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{}{}", 400, "invalid_json" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{\"user_id\":\"a\",\"user_id\":\"b\"}", 400, "invalid_json" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{\"template\":\"\xff\"}", 400, "invalid_json" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{\"template\":\"\xc0\xaf\"}", 400, "invalid_json" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{", 400, "invalid_json" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{\"template\":\"a\\u0000b\"}", 400, "invalid_json" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/sandboxes/SBX/secrets/x", J, "{\"value\":\"sk-canary-in-bad-json\\q\",\"expose_as_env\":\"X\"}", 400, "invalid_json" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/sandboxes/SBX/secrets/x", J, "{\"value\":\"sk-canary-in-bad-json\",\"value\":\"sk-canary-in-bad-json\"}", 400, "invalid_json" },
	/* fields */
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{\"user_id\": 5}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{\"bogus\": 1}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{\"tenant_id\": \"nope\"}", 404, "not_found" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{\"tenant_id\": \"Bad\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{\"vsock_uds\": \"/a\", \"vsock_cid\": 5}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{\"vsock_cid\": 2}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{\"vsock_cid\": -1}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{\"vsock_cid\": 4294967296}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{\"vsock_cid\": 1.5}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{\"vsock_uds\": \"relative.sock\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{\"external_user_id\": \"\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{\"external_user_id\": \"has space\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "LONG", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes", J, "{\"external_workspace_id\": [\"a\"]}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/tenants", J, "{\"id\": \"Bad\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/tenants", J, "{}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/tenants", J, "{\"id\": \"x\", \"name\": \"\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/tenants", J, "{\"id\": \"default\"}", 409, "conflict" },
	{ ADMIN_CALLER, B_NONE, "PATCH", "/v1/tenants/default/settings", J, "{\"allow_end_user_scoped_credentials\": \"yes\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/tenants/default/apikeys", J, "{}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/tenants/default/apikeys", J, "{\"name\": 1}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/tenants/default/apikeys", J, "{\"name\": \"bell\\u0007\"}", 400, "invalid_field" },
	/* secrets */
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/sandboxes/SBX/secrets/x", J, "{\"expose_as_env\": \"X\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/sandboxes/SBX/secrets/x", J, "{\"value\": \"sk-canary-no-env\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/sandboxes/SBX/secrets/x", J, "HUGEVALUE", 413, "payload_too_large" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/sandboxes/SBX/secrets/x", J, "{\"value\": \"sk-canary-newline\\nX\", \"expose_as_env\": \"X\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/sandboxes/SBX/secrets/x", J, "{\"value\": \"\", \"expose_as_env\": \"X\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/sandboxes/SBX/secrets/x", J, "{\"value\": 12345, \"expose_as_env\": \"X\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/sandboxes/SBX/secrets/x", J, "{\"value\": \"sk-canary-bad-env\", \"expose_as_env\": \"1BAD\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/sandboxes/SBX/secrets/bad%20name", J, "{\"value\": \"sk-canary-bad-name\", \"expose_as_env\": \"X\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/sandboxes/SBX/secrets/x", J, "{\"value\": \"sk-canary-hosts\", \"expose_as_env\": \"X\", \"hosts\": \"a.com\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/sandboxes/SBX/secrets/x", J, "{\"value\": \"sk-canary-hosts\", \"expose_as_env\": \"X\", \"hosts\": [1]}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/sandboxes/SBX/secrets/x", J, "{\"value\": \"sk-canary-hosts\", \"expose_as_env\": \"X\", \"hosts\": [\"a..b\"]}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/sandboxes/SBX/secrets/x", J, "MANYHOSTS", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/sandboxes/SBX/secrets/x", J, "{\"value\": \"sk-canary-clear\", \"expose_as_env\": \"X\", \"allow_cleartext\": 1}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/tenants/default/secrets/sandbox/SBX/x", J, "{\"value\": \"sk-canary-scope\", \"expose_as_env\": \"X\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/tenants/default/secrets/bogus/s/x", J, "{\"value\": \"sk-canary-scope\", \"expose_as_env\": \"X\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/tenants/default/secrets/tenant/a/x", J, "{\"value\": \"sk-canary-scope\", \"expose_as_env\": \"X\"}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/tenants/nope/secrets/tenant/nope/x", J, "{\"value\": \"sk-canary-scope\", \"expose_as_env\": \"X\"}", 404, "not_found" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes/SBX/secrets/missing/rotate", J, "{\"value\": \"sk-canary-rotate\"}", 404, "not_found" },
	{ ADMIN_CALLER, B_NONE, "POST", "/v1/sandboxes/SBX/secrets/x/rotate", J, "{\"value\": \"sk-canary-rotate\", \"hosts\": []}", 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "DELETE", "/v1/sandboxes/SBX/secrets/missing", NULL, NULL, 404, "not_found" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/sandboxes/sbx_000000000000000000000000/secrets", NULL, NULL, 404, "not_found" },
	/* paths and queries */
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/nope", NULL, NULL, 404, "not_found" },
	{ ADMIN_CALLER, B_NONE, "GET", "/", NULL, NULL, 404, "not_found" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/sandboxes/", NULL, NULL, 404, "not_found" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1//sandboxes", NULL, NULL, 404, "not_found" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/a/b/c/d/e/f/g/h/i/j/k/l", NULL, NULL, 404, "not_found" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/sandboxes/sbx_zz", NULL, NULL, 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/sandboxes/sbx_000000000000000000000000", NULL, NULL, 404, "not_found" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/sandboxes/%zz", NULL, NULL, 400, "bad_request" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/sandboxes/%2", NULL, NULL, 400, "bad_request" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/sandboxes/a%00b", NULL, NULL, 400, "bad_request" },
	{ ADMIN_CALLER, B_NONE, "GET", "v1/sandboxes", NULL, NULL, 400, "bad_request" },
	{ ADMIN_CALLER, B_NONE, "DELETE", "/v1/tenants", NULL, NULL, 405, "method_not_allowed" },
	{ ADMIN_CALLER, B_NONE, "PUT", "/v1/sandboxes", NULL, NULL, 405, "method_not_allowed" },
	{ ADMIN_CALLER, B_NONE, "get", "/v1/health", NULL, NULL, 405, "method_not_allowed" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/sandboxes?bogus=1", NULL, NULL, 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/sandboxes?external_user_id=a&external_user_id=b", NULL, NULL, 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/sandboxes?external_user_id=", NULL, NULL, 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/sandboxes?external_user_id=a%20b", NULL, NULL, 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/sandboxes?x", NULL, NULL, 400, "bad_request" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/sandboxes?a=%zz", NULL, NULL, 400, "bad_request" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/sandboxes?tenant_id=Bad", NULL, NULL, 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/health?verbose=1", NULL, NULL, 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/health", J, "{}", 400, "bad_request" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/tenants/nope", NULL, NULL, 404, "not_found" },
	{ ADMIN_CALLER, B_NONE, "GET", "/v1/tenants/NOPE", NULL, NULL, 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "DELETE", "/v1/tenants/default/apikeys/key_xyz", NULL, NULL, 400, "invalid_field" },
	{ ADMIN_CALLER, B_NONE, "DELETE", "/v1/tenants/default/apikeys/key_000000000000000000000000", NULL, NULL, 404, "not_found" },
	/* authentication */
	{ TCP_CALLER, B_NONE, "GET", "/v1/sandboxes", NULL, NULL, 401, "unauthorized" },
	{ TCP_CALLER, B_GARBAGE, "GET", "/v1/sandboxes", NULL, NULL, 401, "unauthorized" },
	{ TCP_CALLER, B_UNKNOWN, "GET", "/v1/sandboxes", NULL, NULL, 401, "unauthorized" },
	{ TCP_CALLER, B_NONE, "GET", "/v1/nope", NULL, NULL, 401, "unauthorized" },
	{ TCP_CALLER, B_NONE, "GET", "/v1/tenants", NULL, NULL, 401, "unauthorized" },
	{ TCP_CALLER, B_UNKNOWN, "POST", "/v1/sandboxes", J, "{}", 401, "unauthorized" },
	{ TCP_CALLER, B_GARBAGE, "PUT", "/v1/sandboxes/SBX/secrets/x", J, "{\"value\": \"sk-canary-unauth\", \"expose_as_env\": \"X\"}", 401, "unauthorized" },
	{ TCP_CALLER, B_A, "GET", "/v1/tenants", NULL, NULL, 404, "not_found" },
	{ TCP_CALLER, B_A, "POST", "/v1/tenants", J, "{\"id\": \"zz\"}", 404, "not_found" },
	{ TCP_CALLER, B_A, "GET", "/v1/sandboxes/SBX", NULL, NULL, 404, "not_found" },
	{ TCP_CALLER, B_A, "PUT", "/v1/sandboxes/SBX/secrets/x", J, "{\"value\": \"sk-canary-tcp\", \"expose_as_env\": \"X\"}", 404, "not_found" },
	{ TCP_CALLER, B_A, "GET", "/v1/tenants/default", NULL, NULL, 404, "not_found" },
};
#undef J

/* Bodies too big to spell in the table. */
static char *special_body(const char *tag)
{
	size_t n = strcmp(tag, "BIG") == 0 ? CONTROL_API_MAX_BODY + 1 : VAULT_VALUE_MAX + 1;
	char *b = malloc(n + 4096);
	size_t off;

	assert_non_null(b);
	if (strcmp(tag, "BIG") == 0) {
		memset(b, ' ', n);
		b[0] = '{';
		b[n - 1] = '}';
		b[n] = '\0';
	} else if (strcmp(tag, "HUGEVALUE") == 0) {
		off = (size_t)sprintf(b, "{\"expose_as_env\": \"X\", \"value\": \"");
		memset(b + off, 'v', n);
		strcpy(b + off + n, "\"}");
	} else if (strcmp(tag, "MANYHOSTS") == 0) {
		off = (size_t)sprintf(b, "{\"value\": \"sk-canary-many\", \"expose_as_env\": \"X\", \"hosts\": [");
		for (int i = 0; i < VAULT_HOSTS_MAX + 1; i++)
			off += (size_t)sprintf(b + off, "%s\"h%d.example.com\"", i ? "," : "", i);
		strcpy(b + off, "]}");
	} else { /* LONG: a 257-byte id */
		off = (size_t)sprintf(b, "{\"external_user_id\": \"");
		memset(b + off, 'u', 257);
		strcpy(b + off + 257, "\"}");
	}
	return b;
}

static void run_bad_case(struct fixture *f, const struct bad_case *bc, size_t idx)
{
	static const char unknown[] = "msk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
	const char *bearers[] = { NULL, f->key_a, "garbage", unknown };
	char target[512], path[512], *body = NULL, *p;
	const char *q;
	struct control_request req;
	struct reply r;

	snprintf(target, sizeof(target), "%s", bc->target);
	if ((p = strstr(target, "SBX")))
		snprintf(p, sizeof(target) - (size_t)(p - target), "%s%s", f->sbx,
			 strstr(bc->target, "SBX") + 3);
	q = strchr(target, '?');
	snprintf(path, sizeof(path), "%.*s", (int)(q ? (size_t)(q - target) : strlen(target)), target);
	if (bc->body && (!strcmp(bc->body, "BIG") || !strcmp(bc->body, "HUGEVALUE") ||
			 !strcmp(bc->body, "MANYHOSTS") || !strcmp(bc->body, "LONG")))
		body = special_body(bc->body);
	memset(&req, 0, sizeof(req));
	req.caller = (enum control_caller_kind)bc->caller;
	req.method = bc->method;
	req.path = path;
	req.query = q ? q + 1 : "";
	req.bearer = bearers[bc->bearer];
	req.body = (const uint8_t *)(body ? body : bc->body);
	req.body_len = req.body ? strlen((const char *)req.body) : 0;
	req.has_body = bc->body != NULL;
	req.content_type = bc->content_type && strcmp(bc->content_type, "-") == 0 ? NULL
			   : bc->content_type;
	r = call_req(f, &req);
	if (r.status != bc->status ||
	    strcmp(json_string_value(json_object_get(r.json, "error")), bc->code) != 0)
		fail_msg("case %zu %s %s: got %d %s (%s), want %d %s", idx, bc->method, bc->target,
			 r.status, json_string_value(json_object_get(r.json, "error")),
			 json_string_value(json_object_get(r.json, "message")), bc->status, bc->code);
	drop(r.json);
	free(body);
}

static void test_malformed_and_unauthorized_requests_get_exact_errors(void **state)
{
	struct fixture *f = *state;
	size_t n = sizeof(bad_cases) / sizeof(bad_cases[0]);

	/* Every value in the table counts as a secret for the response scan. */
	secret("sk-canary-in-bad-json");
	secret("sk-canary-no-env");
	secret("sk-canary-newline");
	secret("sk-canary-bad-env");
	secret("sk-canary-bad-name");
	secret("sk-canary-hosts");
	secret("sk-canary-many");
	secret("sk-canary-clear");
	secret("sk-canary-scope");
	secret("sk-canary-rotate");
	secret("sk-canary-unauth");
	secret("sk-canary-tcp");
	secret("vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv");
	assert_true(n >= 40);
	for (size_t i = 0; i < n; i++)
		run_bad_case(f, &bad_cases[i], i);
	/* Nothing in the table created anything. */
	assert_int_equal(count_listed(f, ADMIN_CALLER, NULL, "/v1/sandboxes"), 1);
}

/* ---- restart -------------------------------------------------------------- */

static char *get_text(struct fixture *f, const char *target)
{
	json_t *j = ADMIN(200, "GET", target, NULL);
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);

	drop(j);
	assert_non_null(s);
	return s;
}

static void test_everything_survives_a_restart(void **state)
{
	struct fixture *f = *state;
	char view[128], *before[4], *after[4];
	const char *targets[] = { "/v1/tenants", "/v1/sandboxes", view,
				  "/v1/tenants/default/secrets/tenant/default" };

	snprintf(view, sizeof(view), "/v1/sandboxes/%s/secrets", f->sbx);
	drop(put_secret(f, 201, "/v1/tenants/default/secrets/tenant/default/t", "T_KEY",
			"sk-restart-tenant"));
	drop(ADMIN(200, "PATCH", "/v1/tenants/a/settings",
		   "{\"allow_end_user_scoped_credentials\": false}"));
	{
		char target[160];

		snprintf(target, sizeof(target), "/v1/sandboxes/%s/secrets/s", f->sbx);
		drop(put_secret(f, 201, target, "S_KEY", "sk-restart-sandbox"));
	}
	for (size_t i = 0; i < 4; i++)
		before[i] = get_text(f, targets[i]);
	reopen(f);
	for (size_t i = 0; i < 4; i++) {
		after[i] = get_text(f, targets[i]);
		assert_string_equal(before[i], after[i]);
		jfree(before[i]);
		jfree(after[i]);
	}
	/* Keys still authenticate; the setting stayed off. */
	drop(TCP(f->key_b, 200, "GET", "/v1/tenants/b", NULL));
	expect_error(f, TCP_CALLER, f->key_a, 403, "end_user_credentials_disabled", "PUT",
		     "/v1/tenants/a/secrets/external_user/x/y",
		     "{\"value\": \"sk-restart-denied\", \"expose_as_env\": \"Y\"}");
}

/* ---- the scan itself ------------------------------------------------------- */

/* ---- network and audit routes --------------------------------------------- */

static void test_network_routes_round_trip(void **state)
{
	struct fixture *f = *state;
	char target[160], other[200];
	json_t *j;

	snprintf(target, sizeof(target), "/v1/sandboxes/%s/network", f->sbx);
	j = ADMIN(200, "GET", target, NULL);
	assert_string_equal(jstr(j, "mode"), "observe");
	assert_int_equal(json_array_size(json_object_get(j, "allowlist")), 0);
	drop(j);
	snprintf(other, sizeof(other), "%s/allow", target);
	j = ADMIN(201, "POST", other, "{\"pattern\": \"*.openai.com\", \"port\": 443}");
	assert_true(json_is_true(json_object_get(j, "added")));
	drop(j);
	j = ADMIN(200, "POST", other, "{\"pattern\": \"*.openai.com\", \"port\": 443}");
	assert_true(json_is_false(json_object_get(j, "added")));
	drop(j);
	expect_error(f, ADMIN_CALLER, NULL, 400, "invalid_field", "POST", other,
		     "{\"pattern\": \"a..b\"}");
	snprintf(other, sizeof(other), "%s/lockdown", target);
	j = ADMIN(200, "POST", other, NULL);
	assert_string_equal(jstr(j, "mode"), "enforce");
	drop(j);
	snprintf(other, sizeof(other), "%s/pending", target);
	j = ADMIN(200, "GET", other, NULL);
	assert_int_equal(json_array_size(json_object_get(j, "pending")), 0);
	drop(j);
	snprintf(other, sizeof(other), "%s/observe", target);
	j = ADMIN(200, "POST", other, NULL);
	assert_string_equal(jstr(j, "mode"), "observe");
	assert_int_equal(json_array_size(json_object_get(j, "allowlist")), 1);
	drop(j);
	snprintf(other, sizeof(other), "%s/deny", target);
	j = ADMIN(200, "POST", other, "{\"pattern\": \"*.openai.com\", \"port\": 443}");
	assert_int_equal(jint(j, "removed"), 1);
	drop(j);
	expect_error(f, ADMIN_CALLER, NULL, 404, "not_found", "POST", other,
		     "{\"pattern\": \"*.openai.com\", \"port\": 443}");
	/* Another tenant's key sees nothing of this sandbox. */
	expect_error(f, TCP_CALLER, f->key_b, 404, "not_found", "GET", target, NULL);
	expect_error(f, TCP_CALLER, f->key_b, 404, "not_found", "POST", other,
		     "{\"pattern\": \"x.com\"}");
}

/* Rows through the audit module's own writer, as the broker writes them. */
static int64_t seed_row(struct fixture *f, struct audit_writer *w, const char *tenant,
			const char *host, uint16_t status, enum store_audit_action action)
{
	struct store_audit_row r;
	int64_t id = 0;

	memset(&r, 0, sizeof(r));
	r.time_us = 1790000000000000;
	snprintf(r.tenant_id, sizeof(r.tenant_id), "%s", tenant);
	snprintf(r.sandbox_id, sizeof(r.sandbox_id), "%s", f->sbx);
	snprintf(r.host, sizeof(r.host), "%s", host);
	r.port = 443;
	r.scheme = STORE_AUDIT_HTTPS;
	strcpy(r.method, "GET");
	strcpy(r.path, "/v1/models?api_key=" "miosa-tok-00112233445566778899aabbccddeeff");
	r.status = status;
	r.action = action;
	assert_int_equal(audit_submit_wait_flags(w, &r, AUDIT_SUBMIT_AWAIT_COMPLETION, &id), 0);
	return id;
}

static void seed_world(struct fixture *f, int64_t *ret_completed)
{
	struct store_audit_completion c = { .time_us = 1790000000100000, .status = 200,
					    .bytes_up = 10, .bytes_down = 20, .duration_us = 30 };
	struct audit_writer *w = NULL;
	int64_t id;

	assert_int_equal(audit_writer_open(f->state_dir, NULL, &w, f->err, sizeof(f->err)), 0);
	id = seed_row(f, w, "default", "api.openai.com", 0, STORE_AUDIT_ALLOW);
	(void)seed_row(f, w, "default", "evil.example", 403, STORE_AUDIT_DENY);
	(void)seed_row(f, w, "b", "api.openai.com", 0, STORE_AUDIT_ALLOW);
	c.request_id = id;
	assert_int_equal(audit_complete(w, &c, NULL, NULL), 0);
	audit_writer_close(w); /* commits what is queued */
	*ret_completed = id;
}

static void test_audit_list_merges_completions_and_filters_on_them(void **state)
{
	struct fixture *f = *state;
	const json_t *row;
	int64_t id;
	json_t *j;

	seed_world(f, &id);
	j = ADMIN(200, "GET", "/v1/audit", NULL);
	assert_int_equal(json_array_size(json_object_get(j, "rows")), 3);
	assert_true(json_is_null(json_object_get(j, "next_cursor")));
	drop(j);
	j = ADMIN(200, "GET", "/v1/audit?status=200&tenant_id=default", NULL);
	assert_int_equal(json_array_size(json_object_get(j, "rows")), 1);
	row = json_array_get(json_object_get(j, "rows"), 0);
	assert_int_equal(jint(row, "id"), id);
	assert_int_equal(jint(row, "bytes_up"), 10);
	assert_int_equal(jint(row, "bytes_down"), 20);
	assert_int_equal(jint(row, "duration_us"), 30);
	assert_int_equal(jint(row, "completion_id"), 4);
	assert_string_equal(jstr(row, "path"), "/v1/models?api_key=REDACTED");
	drop(j);
	j = ADMIN(200, "GET", "/v1/audit?status=0", NULL);
	assert_int_equal(json_array_size(json_object_get(j, "rows")), 1); /* tenant b's, unknown */
	drop(j);
	j = ADMIN(200, "GET", "/v1/audit?action=deny&host=evil.example", NULL);
	assert_int_equal(json_array_size(json_object_get(j, "rows")), 1);
	drop(j);
	/* A key sees its own tenant only. */
	j = TCP(f->key_b, 200, "GET", "/v1/audit", NULL);
	assert_int_equal(json_array_size(json_object_get(j, "rows")), 1);
	drop(j);
	expect_error(f, TCP_CALLER, f->key_b, 404, "not_found", "GET", "/v1/audit?tenant_id=default",
		     NULL);
	expect_error(f, ADMIN_CALLER, NULL, 400, "invalid_field", "GET", "/v1/audit?status=1000",
		     NULL);
	expect_error(f, ADMIN_CALLER, NULL, 400, "invalid_field", "GET", "/v1/audit?limit=0", NULL);
	expect_error(f, ADMIN_CALLER, NULL, 400, "invalid_field", "GET", "/v1/audit?since=5x", NULL);
}

static void test_audit_verify_counts_completions_and_is_admin_only(void **state)
{
	struct fixture *f = *state;
	int64_t id;
	json_t *j;

	seed_world(f, &id);
	j = ADMIN(200, "GET", "/v1/audit/verify", NULL);
	assert_true(json_is_true(json_object_get(j, "ok")));
	assert_int_equal(jint(j, "rows"), 4); /* three rows and a completion */
	drop(j);
	expect_error(f, TCP_CALLER, f->key_a, 404, "not_found", "GET", "/v1/audit/verify", NULL);
}

/* The export answers raw text: call control_api_handle() directly. */
static void test_audit_export_carries_the_merged_row(void **state)
{
	struct fixture *f = *state;
	struct control_request req = { .caller = CONTROL_CALLER_ADMIN, .method = "GET",
				       .path = "/v1/audit/export", .query = "format=csv&status=200" };
	struct control_response resp;
	int64_t id;

	seed_world(f, &id);
	assert_int_equal(control_api_handle(f->api, &req, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.content_type, "text/csv; charset=utf-8");
	assert_non_null(strstr(resp.body, ",10,20,30,"));
	assert_non_null(strstr(resp.body, ",4\r\n"));
	assert_null(resp.tail);
	control_response_free(&resp);
	req.query = "format=jsonl&host=evil.example";
	assert_int_equal(control_api_handle(f->api, &req, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.content_type, "application/x-ndjson");
	assert_non_null(strstr(resp.body, "\"status\":403"));
	assert_non_null(strstr(resp.body, "\"completion_id\":null"));
	control_response_free(&resp);
}

/* GET /v1/audit/tail: a 200 without a body that hands the server a filter. */
static struct control_response tail_call(struct fixture *f, int caller, const char *bearer,
					 const char *method, const char *query)
{
	struct control_request req = { .caller = (enum control_caller_kind)caller,
				       .method = method, .path = "/v1/audit/tail",
				       .query = query, .bearer = bearer };
	struct control_response resp;

	assert_int_equal(control_api_handle(f->api, &req, &resp), 0);
	return resp;
}

static void test_audit_tail_hands_the_validated_filter_to_the_server(void **state)
{
	struct fixture *f = *state;
	struct control_response resp;
	char query[256];
	const struct store_audit_filter *flt;

	snprintf(query, sizeof(query),
		 "sandbox=%s&host=api.openai.com&status=200&action=allow&external_user_id=alice",
		 f->sbx);
	resp = tail_call(f, ADMIN_CALLER, NULL, "GET", query);
	assert_int_equal(resp.status, 200);
	assert_null(resp.body);
	assert_non_null(resp.tail);
	flt = &resp.tail->filter;
	assert_null(flt->tenant_id); /* the admin tails every tenant */
	assert_string_equal(flt->sandbox_id, f->sbx);
	assert_string_equal(flt->host, "api.openai.com");
	assert_string_equal(flt->external_user_id, "alice");
	assert_null(flt->external_workspace_id);
	assert_int_equal(flt->status, 200);
	assert_int_equal(flt->action, STORE_AUDIT_ALLOW);
	control_response_free(&resp);
	assert_null(resp.tail);

	/* A key's tail is its tenant's, whatever it asks. */
	resp = tail_call(f, TCP_CALLER, f->key_a, "GET", "");
	assert_int_equal(resp.status, 200);
	assert_non_null(resp.tail);
	assert_string_equal(resp.tail->filter.tenant_id, "a");
	assert_int_equal(resp.tail->filter.status, -1);
	assert_int_equal(resp.tail->filter.action, -1);
	control_response_free(&resp);

	resp = tail_call(f, TCP_CALLER, f->key_a, "GET", "tenant_id=b");
	assert_int_equal(resp.status, 404);
	assert_null(resp.tail);
	control_response_free(&resp);
	resp = tail_call(f, TCP_CALLER, NULL, "GET", "");
	assert_int_equal(resp.status, 401);
	assert_null(resp.tail);
	control_response_free(&resp);
	resp = tail_call(f, ADMIN_CALLER, NULL, "GET", "status=abc");
	assert_int_equal(resp.status, 400);
	assert_non_null(strstr(resp.body, "invalid_field"));
	assert_null(resp.tail);
	control_response_free(&resp);
	resp = tail_call(f, ADMIN_CALLER, NULL, "GET", "cursor=5");
	assert_int_equal(resp.status, 400); /* list-only parameter */
	assert_null(resp.tail);
	control_response_free(&resp);
	resp = tail_call(f, ADMIN_CALLER, NULL, "POST", "");
	assert_int_equal(resp.status, 405);
	assert_null(resp.tail);
	control_response_free(&resp);
}

static void test_audit_tail_after_is_a_row_id(void **state)
{
	struct fixture *f = *state;
	static const char *const bad[] = { "after=-1", "after=abc", "after=", "after=+5",
					   "after=99999999999999999999" };
	struct control_response resp;

	resp = tail_call(f, ADMIN_CALLER, NULL, "GET", "host=x.example");
	assert_int_equal(resp.status, 200);
	assert_false(resp.tail->has_after); /* from now, as before */
	control_response_free(&resp);
	resp = tail_call(f, ADMIN_CALLER, NULL, "GET", "after=0");
	assert_int_equal(resp.status, 200);
	assert_true(resp.tail->has_after);
	assert_int_equal(resp.tail->after_id, 0);
	control_response_free(&resp);
	resp = tail_call(f, TCP_CALLER, f->key_a, "GET", "after=42&action=deny");
	assert_int_equal(resp.status, 200);
	assert_true(resp.tail->has_after);
	assert_int_equal(resp.tail->after_id, 42);
	assert_string_equal(resp.tail->filter.tenant_id, "a");
	control_response_free(&resp);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		resp = tail_call(f, ADMIN_CALLER, NULL, "GET", bad[i]);
		assert_int_equal(resp.status, 400);
		assert_non_null(strstr(resp.body, "invalid_field"));
		assert_non_null(strstr(resp.body, "after"));
		assert_null(resp.tail);
		control_response_free(&resp);
	}
}

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The replay for query: its text and ids, with n lines of text expected. */
static void replay(struct fixture *f, const char *query, char **ret_text, int64_t **ret_ids,
		   size_t *ret_n)
{
	struct control_response resp = tail_call(f, ADMIN_CALLER, NULL, "GET", query);
	size_t len = 0;

	assert_int_equal(resp.status, 200);
	assert_non_null(resp.tail);
	*ret_text = NULL;
	*ret_ids = NULL;
	assert_int_equal(control_api_audit_replay(f->api, resp.tail, ret_text, &len, ret_ids,
						  ret_n), 0);
	assert_true(*ret_text ? strlen(*ret_text) == len : len == 0);
	/* No statement left running: the worker's next read sees new rows. */
	assert_int_equal(control_api_check_idle(f->api, false, f->err, sizeof(f->err)), 0);
	control_response_free(&resp);
}

static void test_audit_tail_replays_the_rows_after_the_id_oldest_first(void **state)
{
	struct fixture *f = *state;
	int64_t done, *ids;
	char *text;
	size_t n;

	seed_world(f, &done); /* rows 1..3, row 1 completed by link 4 */
	assert_int_equal(done, 1);
	replay(f, "after=0", &text, &ids, &n);
	assert_int_equal(n, 3);
	assert_int_equal(ids[0], 1);
	assert_int_equal(ids[1], 2);
	assert_int_equal(ids[2], 3);
	/* Merged rows, one JSON line each, oldest first. */
	assert_true(starts_with(text, "{\"id\":1,"));
	assert_non_null(strstr(text, "\"completion_id\":4"));
	assert_int_equal(strchr(strrchr(text, '{'), '\n')[1], '\0');
	assert_null(strstr(text, "notice"));
	free(text);
	free(ids);

	replay(f, "after=1", &text, &ids, &n);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], 2);
	assert_true(starts_with(text, "{\"id\":2,"));
	free(text);
	free(ids);

	/* The tail's own filter applies, the merged status included. */
	replay(f, "after=0&host=api.openai.com", &text, &ids, &n);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], 1);
	assert_int_equal(ids[1], 3);
	free(text);
	free(ids);
	replay(f, "after=0&status=200", &text, &ids, &n);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], 1);
	free(text);
	free(ids);

	/* Nothing after the newest: an empty replay. */
	replay(f, "after=3", &text, &ids, &n);
	assert_int_equal(n, 0);
	assert_null(text);
	assert_null(ids);
}

static void test_audit_tail_replay_keeps_the_newest_rows_and_says_so(void **state)
{
	struct fixture *f = *state;
	const size_t total = CONTROL_API_TAIL_REPLAY_MAX + 5;
	struct store_audit_row r;
	struct audit_writer *w = NULL;
	const char *first;
	int64_t *ids;
	char *text;
	size_t n;

	memset(&r, 0, sizeof(r));
	r.time_us = 1790000000000000;
	snprintf(r.tenant_id, sizeof(r.tenant_id), "default");
	snprintf(r.sandbox_id, sizeof(r.sandbox_id), "%s", f->sbx);
	snprintf(r.host, sizeof(r.host), "many.example");
	r.port = 443;
	r.scheme = STORE_AUDIT_HTTPS;
	r.status = 200;
	r.action = STORE_AUDIT_ALLOW;
	assert_int_equal(audit_writer_open(f->state_dir, NULL, &w, f->err, sizeof(f->err)), 0);
	for (size_t i = 0; i < total; i++)
		assert_int_equal(audit_submit(w, &r, NULL, NULL), 0);
	audit_writer_close(w); /* commits what is queued: ids 1..total */

	replay(f, "after=0", &text, &ids, &n);
	assert_int_equal(n, CONTROL_API_TAIL_REPLAY_MAX);
	assert_int_equal(ids[0], 6);
	assert_int_equal(ids[n - 1], (int64_t)total);
	for (size_t i = 1; i < n; i++)
		assert_true(ids[i] > ids[i - 1]);
	/* The notice first, naming the id it could not replay from. */
	assert_true(starts_with(text, "{\"notice\":\"tail_gap\","));
	assert_non_null(strstr(text, "after row 0"));
	first = strchr(text, '\n') + 1;
	assert_true(starts_with(first, "{\"id\":6,"));
	free(text);
	free(ids);

	/* Exactly the cap after the id: all of them, no notice. */
	replay(f, "after=5", &text, &ids, &n);
	assert_int_equal(n, CONTROL_API_TAIL_REPLAY_MAX);
	assert_int_equal(ids[0], 6);
	assert_null(strstr(text, "notice"));
	free(text);
	free(ids);
}

static void test_no_response_of_the_run_held_a_secret_value(void **state)
{
	(void)state;
	/* call() checked each one; make sure the net was really cast. */
	assert_true(responses_checked > 200);
	assert_true(n_secrets > 30);
}

/* ---- templates (M15) ------------------------------------------------------ */

static size_t count_sandboxes(struct fixture *f)
{
	json_t *j = ADMIN(200, "GET", "/v1/sandboxes", NULL);
	size_t n = json_array_size(json_object_get(j, "sandboxes"));

	drop(j);
	return n;
}

static void test_template_policy_is_read_and_given_to_a_new_sandbox(void **state)
{
	struct fixture *f = *state;
	char target[160], body[512];
	json_t *j, *allow, *again;
	char *dump;

	snprintf(target, sizeof(target), "/v1/sandboxes/%s/network/allow", f->sbx);
	drop(ADMIN(201, "POST", target, "{\"pattern\": \"api.openai.com\"}"));
	drop(ADMIN(201, "POST", target, "{\"pattern\": \"*.npmjs.com\", \"port\": 443}"));
	snprintf(target, sizeof(target), "/v1/sandboxes/%s/network/lockdown", f->sbx);
	drop(ADMIN(200, "POST", target, NULL));

	snprintf(target, sizeof(target), "/v1/sandboxes/%s/template", f->sbx);
	j = ADMIN(200, "GET", target, NULL);
	assert_string_equal(jstr(j, "sandbox_id"), f->sbx);
	assert_string_equal(jstr(j, "mode"), "enforce");
	allow = json_object_get(j, "allowlist");
	assert_int_equal(json_array_size(allow), 2);
	assert_string_equal(jstr(json_array_get(allow, 0), "pattern"), "*.npmjs.com");
	assert_int_equal(jint(json_array_get(allow, 0), "port"), 443);
	assert_string_equal(jstr(json_array_get(allow, 1), "pattern"), "api.openai.com");
	assert_true(json_is_null(json_object_get(json_array_get(allow, 1), "port")));
	assert_int_equal(json_array_size(json_object_get(j, "listen_ports")), 2);
	assert_null(json_object_get(j, "observed")); /* tallies are not template state */

	/* The answer, minus its sandbox id, is a valid "policy" object. */
	assert_int_equal(json_object_del(j, "sandbox_id"), 0);
	dump = json_dumps(j, JSON_COMPACT);
	snprintf(body, sizeof(body), "{\"template\": \"py312\", \"policy\": %s}", dump);
	jfree(dump);
	drop(j);
	j = ADMIN(201, "POST", "/v1/sandboxes", body);
	snprintf(target, sizeof(target), "/v1/sandboxes/%s/network", jstr(j, "id"));
	drop(j);
	again = ADMIN(200, "GET", target, NULL);
	assert_string_equal(jstr(again, "mode"), "enforce");
	assert_int_equal(json_array_size(json_object_get(again, "allowlist")), 2);
	drop(again);
	/* Over TCP too, for the key's own tenant. */
	drop(TCP(f->key_a, 201, "POST", "/v1/sandboxes",
		 "{\"policy\": {\"mode\": \"observe\", \"allowlist\": []}}"));
}

static void test_an_invalid_template_policy_creates_no_sandbox(void **state)
{
	static const char *const bad[] = {
		"{\"policy\": {\"mode\": \"enforce\", \"allowlist\": [{\"pattern\": \"*foo.com\"}]}}",
		"{\"policy\": {\"mode\": \"enforce\", \"allowlist\": [{\"pattern\": \"a.com\", \"port\": 0}]}}",
		"{\"policy\": {\"mode\": \"enforce\", \"allowlist\": [{\"pattern\": \"a.com\", \"port\": 65536}]}}",
		"{\"policy\": {\"mode\": \"enforce\", \"allowlist\": [{\"pattern\": 7}]}}",
		"{\"policy\": {\"mode\": \"enforce\", \"allowlist\": [\"a.com\"]}}",
		"{\"policy\": {\"mode\": \"enforce\", \"allowlist\": [{\"pattern\": \"a.com\", \"x\": 1}]}}",
		"{\"policy\": {\"mode\": \"enforce\", \"allowlist\": [], \"listen_ports\": [8080]}}",
		"{\"policy\": {\"mode\": \"enforce\", \"allowlist\": [], \"listen_ports\": [0]}}",
		"{\"policy\": {\"mode\": \"enforce\", \"allowlist\": [], \"listen_ports\": [\"80\"]}}",
		"{\"policy\": {\"mode\": \"strict\", \"allowlist\": []}}",
		"{\"policy\": {\"allowlist\": []}}",
		"{\"policy\": {\"mode\": \"enforce\"}}",
		"{\"policy\": {\"mode\": \"enforce\", \"allowlist\": {}}}",
		"{\"policy\": [], \"template\": \"x\"}",
		"{\"policy\": {\"mode\": \"enforce\", \"allowlist\": [], \"observed\": []}}",
	};
	struct fixture *f = *state;
	size_t before = count_sandboxes(f);
	char *many;
	size_t len = 0;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_error(f, ADMIN_CALLER, NULL, 400, "invalid_field", "POST", "/v1/sandboxes",
			     bad[i]);
	/* One entry past the cap. */
	many = malloc(64 + (POLICY_ALLOW_MAX + 1) * 32); /* each entry < 32 bytes */
	assert_non_null(many);
	len += (size_t)sprintf(many, "{\"policy\": {\"mode\": \"enforce\", \"allowlist\": [");
	for (int i = 0; i <= POLICY_ALLOW_MAX; i++)
		len += (size_t)sprintf(many + len, "%s{\"pattern\":\"h%d.io\"}", i ? "," : "", i);
	strcpy(many + len, "]}}");
	expect_error(f, ADMIN_CALLER, NULL, 400, "invalid_field", "POST", "/v1/sandboxes", many);
	free(many);
	assert_int_equal(count_sandboxes(f), before);
	expect_error(f, ADMIN_CALLER, NULL, 404, "not_found", "GET",
		     "/v1/sandboxes/sbx_000000000000000000000000/template", NULL);
}

static int group_setup(void **state)
{
	(void)state;
	return control_api_global_init();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		cmocka_unit_test(test_global_init_installs_a_wiping_allocator),
		T(test_health_answers_without_a_key),
		T(test_bootstrap_creates_the_default_tenant_once),
		T(test_tenant_is_created_read_and_its_setting_patched),
		T(test_api_key_is_shown_once_and_revoked_key_gets_401),
		T(test_sandbox_is_created_read_listed_and_deleted),
		T(test_sandbox_list_filters_by_strict_equality),
		T(test_sandbox_patch_confirms_and_refuses_changes),
		T(test_sandbox_secret_put_creates_then_replaces_with_the_same_placeholder),
		T(test_rotate_keeps_the_placeholder_and_bumps_the_version),
		T(test_scope_walk_through_the_api_picks_the_most_specific_scope),
		T(test_external_user_scope_is_gated_by_the_tenant_setting),
		T(test_scope_secrets_are_listed_rotated_and_deleted),
		T(test_path_segments_are_percent_decoded_once),
		T(test_media_type_parameters_are_accepted),
		T(test_wrong_method_answers_405_with_allow),
		T(test_sandbox_ca_answers_the_certificate_only),
		T(test_tenant_isolation_answers_404_for_everything_of_another_tenant),
		T(test_malformed_and_unauthorized_requests_get_exact_errors),
		T(test_template_policy_is_read_and_given_to_a_new_sandbox),
		T(test_an_invalid_template_policy_creates_no_sandbox),
		T(test_everything_survives_a_restart),
		T(test_network_routes_round_trip),
		T(test_audit_list_merges_completions_and_filters_on_them),
		T(test_audit_verify_counts_completions_and_is_admin_only),
		T(test_audit_export_carries_the_merged_row),
		T(test_audit_tail_hands_the_validated_filter_to_the_server),
		T(test_audit_tail_after_is_a_row_id),
		T(test_audit_tail_replays_the_rows_after_the_id_oldest_first),
		T(test_audit_tail_replay_keeps_the_newest_rows_and_says_so),
		cmocka_unit_test(test_no_response_of_the_run_held_a_secret_value),
#undef T
	};
	int r = cmocka_run_group_tests(tests, group_setup, NULL);

	for (size_t i = 0; i < n_secrets; i++)
		free(secrets[i]);
	return r;
}
