#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"
#include "store.h"
#include "vault.h"

/* ---- fixture ----------------------------------------------------------- */

struct fixture {
	char root[64];
	char state_dir[PATH_MAX];
	char key_path[PATH_MAX];
	char db_path[PATH_MAX];
	struct master_key *key;
	struct vault *v;
	char err[512];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	if (fixture_tmpdir("vault", f->root) != 0)
		return -1;
	/* The key lives apart from the state directory (M7). */
	snprintf(f->state_dir, sizeof(f->state_dir), "%s/state", f->root);
	snprintf(f->db_path, sizeof(f->db_path), "%s/state/state.db", f->root);
	if (fixture_master_key(f->root, f->key_path, sizeof(f->key_path), &f->key,
			       f->err, sizeof(f->err)) != 0 ||
	    vault_open(f->state_dir, f->key, &f->v, f->err, sizeof(f->err)) != 0) {
		fprintf(stderr, "setup: %s\n", f->err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	vault_close(f->v);
	master_key_free(f->key);
	fixture_rmtree(f->root);
	free(f);
	return 0;
}

static void reopen(struct fixture *f)
{
	vault_close(f->v);
	f->v = NULL;
	assert_int_equal(vault_open(f->state_dir, f->key, &f->v, f->err, sizeof(f->err)), 0);
}

/* ---- helpers ----------------------------------------------------------- */

static const struct scope_walk_attribution sbx1 = {
	"sbx-1", "t1", "u1", "alice", "team-a", "w1",
};
static const struct scope_walk_attribution sbx2 = {
	"sbx-2", "t1", "u1", "alice", "team-a", "w1",
};

/* A valid spec; allow_cleartext on so tests pick their destination freely. */
static struct vault_secret_spec spec_of(enum scope_walk_scope scope, const char *scope_id,
					const char *name, const char *env, const char *value)
{
	struct vault_secret_spec s;

	memset(&s, 0, sizeof(s));
	s.ref = (struct vault_secret_ref){ "t1", scope, scope_id, name };
	s.expose_as_env = env;
	s.value = (const uint8_t *)value;
	s.value_len = strlen(value);
	s.allow_cleartext = true;
	s.tenant_allows_end_user_credentials = true;
	return s;
}

static void set_ok(struct vault *v, const struct vault_secret_spec *s,
		   struct vault_set_result *res)
{
	int r = vault_secret_set(v, s, res);

	if (r != 0)
		fail_msg("set %s: %d %s", s->ref.name, r, vault_errmsg(v));
}

/* Swap over TLS to host; returns the verdict, copying an OK value to out. */
static enum vault_swap_verdict swap(struct vault *v, const struct scope_walk_attribution *a,
				    const char *placeholder, const char *host, bool tls,
				    char *out, size_t out_size)
{
	struct vault_swap s;
	int r;

	r = vault_get_for_swap(v, a, placeholder, strlen(placeholder), host, strlen(host), tls, &s);
	if (r != 0)
		fail_msg("swap: %d %s", r, vault_errmsg(v));
	if (s.verdict == VAULT_SWAP_OK) {
		assert_non_null(s.value);
		assert_true(s.value_len < out_size);
		memcpy(out, s.value, s.value_len);
		out[s.value_len] = '\0';
	} else {
		assert_null(s.value);
	}
	vault_swap_release(&s);
	assert_null(s.value);
	return s.verdict;
}

/* The placeholder a sandbox sees for env, via resolution. */
static void resolved_placeholder(struct vault *v, const struct scope_walk_attribution *a,
				 const char *env, char out[VAULT_PLACEHOLDER_LEN + 1])
{
	struct vault_secret_list list;

	out[0] = '\0';
	assert_int_equal(vault_resolve(v, a, &list), 0);
	for (size_t i = 0; i < list.n; i++)
		if (strcmp(list.items[i].expose_as_env, env) == 0)
			strcpy(out, list.items[i].placeholder);
	vault_secret_list_free(&list);
}

static sqlite3 *raw_db(struct fixture *f)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open_v2(f->db_path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static void raw_exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("sql '%s': %s", sql, msg);
}

static uint8_t *read_file(const char *path, size_t *ret_len)
{
	uint8_t *buf = NULL;
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*ret_len = 0;
	if (fd < 0)
		return NULL;
	assert_int_equal(fstat(fd, &sb), 0);
	buf = malloc((size_t)sb.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(read(fd, buf, (size_t)sb.st_size), sb.st_size);
	close(fd);
	*ret_len = (size_t)sb.st_size;
	return buf;
}

/* ---- placeholders, set, list ------------------------------------------- */

static void test_sandbox_secret_gets_random_placeholder_at_set_time(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec s = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "openai_key",
					     "OPENAI_API_KEY", "sk-proj-AAAA");
	struct vault_set_result res, res2;
	char other[VAULT_PLACEHOLDER_LEN + 1];

	set_ok(f->v, &s, &res);
	assert_true(res.created);
	assert_int_equal(res.version, 1);
	assert_true(vault_placeholder_is_valid(res.placeholder, strlen(res.placeholder)));
	/* Same value under another name: placeholders are not derived from it. */
	s.ref.name = "openai_key_2";
	s.expose_as_env = "OPENAI_API_KEY_2";
	set_ok(f->v, &s, &res2);
	assert_string_not_equal(res.placeholder, res2.placeholder);
	resolved_placeholder(f->v, &sbx1, "OPENAI_API_KEY", other);
	assert_string_equal(other, res.placeholder);
}

static void test_placeholder_syntax_is_exact(void **state)
{
	(void)state;
	assert_true(vault_placeholder_is_valid("miosa-tok-0123456789abcdef0123456789abcdef", 42));
	assert_false(vault_placeholder_is_valid("miosa-tok-0123456789ABCDEF0123456789abcdef", 42));
	assert_false(vault_placeholder_is_valid("miosa-tok-0123456789abcdef0123456789abcde", 41));
	assert_false(vault_placeholder_is_valid("miosa-tok-0123456789abcdef0123456789abcdeg", 42));
	assert_false(vault_placeholder_is_valid("MIOSA-tok-0123456789abcdef0123456789abcdef", 42));
	assert_false(vault_placeholder_is_valid(NULL, 42));
}

static void test_list_shows_metadata_and_never_the_value(void **state)
{
	struct fixture *f = *state;
	const char *hosts[] = { "API.openai.com", "*.openai.com", "api.openai.com." };
	struct vault_secret_spec s = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "openai_key",
					     "OPENAI_API_KEY", "sk-proj-LISTME");
	struct vault_set_result res;
	struct vault_secret_list list;
	const struct vault_secret_info *it;

	s.hosts = hosts;
	s.n_hosts = 3;
	s.allow_cleartext = false;
	set_ok(f->v, &s, &res);
	assert_int_equal(vault_secret_list(f->v, "t1", SCOPE_WALK_SANDBOX, "sbx-1", &list), 0);
	assert_int_equal(list.n, 1);
	it = &list.items[0];
	assert_string_equal(it->name, "openai_key");
	assert_string_equal(it->expose_as_env, "OPENAI_API_KEY");
	assert_int_equal(it->scope, SCOPE_WALK_SANDBOX);
	assert_string_equal(it->scope_id, "sbx-1");
	assert_int_equal(it->version, 1);
	assert_true(it->created_at_us > 1700000000LL * 1000000);
	assert_int_equal(it->rotated_at_us, 0);
	assert_false(it->allow_cleartext);
	assert_string_equal(it->placeholder, res.placeholder);
	/* Normalized, duplicates dropped, order kept. */
	assert_int_equal(it->n_hosts, 2);
	assert_string_equal(it->hosts[0], "api.openai.com");
	assert_string_equal(it->hosts[1], "*.openai.com");
	assert_null(memmem(it, sizeof(*it), "LISTME", 6));
	vault_secret_list_free(&list);
	assert_int_equal(list.n, 0);
}

static void test_wide_scope_listing_has_no_placeholder(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec s = spec_of(SCOPE_WALK_TENANT, NULL, "openai_key",
					     "OPENAI_API_KEY", "sk-tenant");
	struct vault_set_result res;
	struct vault_secret_list list;

	set_ok(f->v, &s, &res);
	assert_string_equal(res.placeholder, "");
	/* scope_id of the tenant scope defaults to the tenant id. */
	assert_int_equal(vault_secret_list(f->v, "t1", SCOPE_WALK_TENANT, "t1", &list), 0);
	assert_int_equal(list.n, 1);
	assert_string_equal(list.items[0].scope_id, "t1");
	assert_string_equal(list.items[0].placeholder, "");
	vault_secret_list_free(&list);
}

/* ---- rotation and replacement (M5) ------------------------------------- */

static void test_rotate_keeps_placeholder_and_bumps_version(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec s = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "openai_key",
					     "OPENAI_API_KEY", "sk-old");
	const struct vault_secret_ref ref = { "t1", SCOPE_WALK_SANDBOX, "sbx-1", "openai_key" };
	struct vault_set_result res;
	struct vault_secret_list list;
	char value[64];
	uint32_t version = 0;

	set_ok(f->v, &s, &res);
	assert_int_equal(swap(f->v, &sbx1, res.placeholder, "api.openai.com", true, value,
			      sizeof(value)), VAULT_SWAP_OK);
	assert_string_equal(value, "sk-old");
	assert_int_equal(vault_secret_rotate(f->v, &ref, (const uint8_t *)"sk-new", 6, &version), 0);
	assert_int_equal(version, 2);
	/* The very next swap uses the new value, same placeholder. */
	assert_int_equal(swap(f->v, &sbx1, res.placeholder, "api.openai.com", true, value,
			      sizeof(value)), VAULT_SWAP_OK);
	assert_string_equal(value, "sk-new");
	assert_int_equal(vault_secret_list(f->v, "t1", SCOPE_WALK_SANDBOX, "sbx-1", &list), 0);
	assert_string_equal(list.items[0].placeholder, res.placeholder);
	assert_int_equal(list.items[0].version, 2);
	assert_true(list.items[0].rotated_at_us >= list.items[0].created_at_us);
	vault_secret_list_free(&list);
}

static void test_rotate_of_missing_secret_is_enoent(void **state)
{
	struct fixture *f = *state;
	const struct vault_secret_ref ref = { "t1", SCOPE_WALK_SANDBOX, "sbx-1", "nope" };
	uint32_t version = 77;

	assert_int_equal(vault_secret_rotate(f->v, &ref, (const uint8_t *)"x", 1, &version), -ENOENT);
	assert_int_equal(version, 77);
	assert_non_null(strstr(vault_errmsg(f->v), "rotate secret"));
}

static void test_set_again_replaces_value_and_keeps_every_placeholder(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec s = spec_of(SCOPE_WALK_TENANT, "t1", "openai_key",
					     "OPENAI_API_KEY", "sk-one");
	struct vault_set_result res;
	char p1[VAULT_PLACEHOLDER_LEN + 1], p1b[VAULT_PLACEHOLDER_LEN + 1], value[32];

	set_ok(f->v, &s, &res);
	resolved_placeholder(f->v, &sbx1, "OPENAI_API_KEY", p1);
	s.value = (const uint8_t *)"sk-two";
	set_ok(f->v, &s, &res);
	assert_false(res.created);
	assert_int_equal(res.version, 2);
	resolved_placeholder(f->v, &sbx1, "OPENAI_API_KEY", p1b);
	assert_string_equal(p1, p1b);
	assert_int_equal(swap(f->v, &sbx1, p1, "api.openai.com", true, value, sizeof(value)),
			 VAULT_SWAP_OK);
	assert_string_equal(value, "sk-two");
}

/* ---- per-sandbox placeholders and the swap decision -------------------- */

static void test_wide_scope_secret_gets_one_placeholder_per_sandbox(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec s = spec_of(SCOPE_WALK_WORKSPACE, "w1", "openai_key",
					     "OPENAI_API_KEY", "sk-shared");
	char p1[VAULT_PLACEHOLDER_LEN + 1], p2[VAULT_PLACEHOLDER_LEN + 1];
	char again[VAULT_PLACEHOLDER_LEN + 1], value[32];

	set_ok(f->v, &s, NULL);
	resolved_placeholder(f->v, &sbx1, "OPENAI_API_KEY", p1);
	resolved_placeholder(f->v, &sbx2, "OPENAI_API_KEY", p2);
	assert_true(vault_placeholder_is_valid(p1, strlen(p1)));
	assert_true(vault_placeholder_is_valid(p2, strlen(p2)));
	assert_string_not_equal(p1, p2);
	resolved_placeholder(f->v, &sbx1, "OPENAI_API_KEY", again);
	assert_string_equal(p1, again);
	assert_int_equal(swap(f->v, &sbx2, p2, "api.openai.com", true, value, sizeof(value)),
			 VAULT_SWAP_OK);
	assert_string_equal(value, "sk-shared");
}

static void test_placeholder_leaked_to_another_sandbox_is_not_swapped(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec s = spec_of(SCOPE_WALK_TENANT, "t1", "openai_key",
					     "OPENAI_API_KEY", "sk-shared");
	const struct scope_walk_attribution other_tenant = { "sbx-9", "t2", NULL, NULL, NULL, NULL };
	struct vault_swap sw;
	char p1[VAULT_PLACEHOLDER_LEN + 1], value[32];

	set_ok(f->v, &s, NULL);
	resolved_placeholder(f->v, &sbx1, "OPENAI_API_KEY", p1);
	assert_int_equal(swap(f->v, &sbx2, p1, "api.openai.com", true, value, sizeof(value)),
			 VAULT_SWAP_OTHER_SANDBOX);
	assert_int_equal(swap(f->v, &other_tenant, p1, "api.openai.com", true, value,
			      sizeof(value)), VAULT_SWAP_OTHER_SANDBOX);
	/* The other sandbox does not even learn the secret's name. */
	assert_int_equal(vault_get_for_swap(f->v, &sbx2, p1, strlen(p1), "api.openai.com", 14,
					    true, &sw), 0);
	assert_string_equal(sw.secret_name, "");
	vault_swap_release(&sw);
}

static void test_unknown_placeholder_is_not_swapped(void **state)
{
	struct fixture *f = *state;
	char value[8];

	assert_int_equal(swap(f->v, &sbx1, "miosa-tok-00000000000000000000000000000000",
			      "api.openai.com", true, value, sizeof(value)),
			 VAULT_SWAP_UNKNOWN_PLACEHOLDER);
	assert_int_equal(swap(f->v, &sbx1, "miosa-tok-nothex", "api.openai.com", true, value,
			      sizeof(value)), VAULT_SWAP_UNKNOWN_PLACEHOLDER);
	assert_string_equal(vault_swap_verdict_name(VAULT_SWAP_UNKNOWN_PLACEHOLDER),
			    "unknown_placeholder");
}

static void test_host_outside_the_binding_is_flagged_not_swapped(void **state)
{
	struct fixture *f = *state;
	const char *hosts[] = { "*.openai.com" };
	struct vault_secret_spec s = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "openai_key",
					     "OPENAI_API_KEY", "sk-bound");
	struct vault_set_result res;
	struct vault_swap sw;
	char value[32];

	s.hosts = hosts;
	s.n_hosts = 1;
	set_ok(f->v, &s, &res);
	assert_int_equal(swap(f->v, &sbx1, res.placeholder, "API.OpenAI.com.", true, value,
			      sizeof(value)), VAULT_SWAP_OK);
	assert_int_equal(swap(f->v, &sbx1, res.placeholder, "openai.com", true, value,
			      sizeof(value)), VAULT_SWAP_HOST_NOT_ALLOWED);
	assert_int_equal(vault_get_for_swap(f->v, &sbx1, res.placeholder, VAULT_PLACEHOLDER_LEN,
					    "attacker.example", 16, true, &sw), 0);
	assert_int_equal(sw.verdict, VAULT_SWAP_HOST_NOT_ALLOWED);
	/* B1: the caller flags the request and names the secret in the audit row. */
	assert_string_equal(sw.secret_name, "openai_key");
	assert_null(sw.value);
	vault_swap_release(&sw);
}

static void test_cleartext_is_refused_unless_the_secret_allows_it(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec s = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "k", "K", "v-tls-only");
	struct vault_set_result res;
	char value[32];

	s.allow_cleartext = false;
	set_ok(f->v, &s, &res);
	assert_int_equal(swap(f->v, &sbx1, res.placeholder, "api.example.com", false, value,
			      sizeof(value)), VAULT_SWAP_CLEARTEXT_NOT_ALLOWED);
	assert_int_equal(swap(f->v, &sbx1, res.placeholder, "api.example.com", true, value,
			      sizeof(value)), VAULT_SWAP_OK);
	s.allow_cleartext = true;
	set_ok(f->v, &s, &res);
	assert_int_equal(swap(f->v, &sbx1, res.placeholder, "api.example.com", false, value,
			      sizeof(value)), VAULT_SWAP_OK);
}

static void test_shadowed_secret_placeholder_is_no_longer_swapped(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec wide = spec_of(SCOPE_WALK_TENANT, "t1", "tenant_key",
						"OPENAI_API_KEY", "sk-tenant");
	struct vault_secret_spec own = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "own_key",
					       "OPENAI_API_KEY", "sk-own");
	struct vault_set_result res;
	char p_wide[VAULT_PLACEHOLDER_LEN + 1], now[VAULT_PLACEHOLDER_LEN + 1], value[32];

	set_ok(f->v, &wide, NULL);
	resolved_placeholder(f->v, &sbx1, "OPENAI_API_KEY", p_wide);
	set_ok(f->v, &own, &res);
	resolved_placeholder(f->v, &sbx1, "OPENAI_API_KEY", now);
	assert_string_equal(now, res.placeholder);
	assert_int_equal(swap(f->v, &sbx1, p_wide, "api.openai.com", true, value, sizeof(value)),
			 VAULT_SWAP_NOT_RESOLVED);
	assert_int_equal(swap(f->v, &sbx1, now, "api.openai.com", true, value, sizeof(value)),
			 VAULT_SWAP_OK);
	assert_string_equal(value, "sk-own");
}

static void test_invalid_destination_host_is_an_error(void **state)
{
	struct fixture *f = *state;
	struct vault_swap sw;

	sw.verdict = VAULT_SWAP_OK;
	assert_int_equal(vault_get_for_swap(f->v, &sbx1, "miosa-tok-x", 11, "*.evil.com", 10, true,
					    &sw), -EINVAL);
	assert_non_null(strstr(vault_errmsg(f->v), "destination host"));
	assert_int_equal(vault_get_for_swap(f->v, NULL, "miosa-tok-x", 11, "a.com", 5, true, &sw),
			 -EINVAL);
}

/* ---- resolution through the vault (M6, seeds #2 #14 #15) --------------- */

static void test_resolve_walks_scopes_most_specific_first(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec specs[] = {
		spec_of(SCOPE_WALK_TENANT, "t1", "a_tenant", "A", "1"),
		spec_of(SCOPE_WALK_WORKSPACE, "w1", "a_ws", "A", "2"),
		spec_of(SCOPE_WALK_EXTERNAL_WORKSPACE, "team-a", "b_extws", "B", "3"),
		spec_of(SCOPE_WALK_WORKSPACE, "w1", "b_ws", "B", "4"),
		spec_of(SCOPE_WALK_EXTERNAL_USER, "alice", "c_extuser", "C", "5"),
		spec_of(SCOPE_WALK_USER, "u1", "c_user", "C", "6"),
		spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "c_sbx", "C", "7"),
		spec_of(SCOPE_WALK_SANDBOX, "sbx-2", "d_other", "D", "8"),
	};
	static const char *const want[][2] = {
		{ "A", "a_ws" }, { "B", "b_extws" }, { "C", "c_sbx" },
	};
	struct vault_secret_list list;

	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
		set_ok(f->v, &specs[i], NULL);
	assert_int_equal(vault_resolve(f->v, &sbx1, &list), 0);
	assert_int_equal(list.n, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(list.items[i].expose_as_env, want[i][0]);
		assert_string_equal(list.items[i].name, want[i][1]);
		assert_true(vault_placeholder_is_valid(list.items[i].placeholder, VAULT_PLACEHOLDER_LEN));
	}
	vault_secret_list_free(&list);
}

/* troubleshooting #2 */
static void test_workspace_secret_not_visible_outside_its_workspace(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec s = spec_of(SCOPE_WALK_WORKSPACE, "w1", "openai_key",
					     "OPENAI_API_KEY", "sk-ws");
	const struct scope_walk_attribution outside = { "sbx-3", "t1", NULL, NULL, NULL, "w2" };
	struct vault_secret_list list;

	set_ok(f->v, &s, NULL);
	assert_int_equal(vault_resolve(f->v, &outside, &list), 0);
	assert_int_equal(list.n, 0);
	assert_null(list.items);
	vault_secret_list_free(&list);
}

/* troubleshooting #14 */
static void test_external_user_scope_refused_when_tenant_setting_is_off(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec s = spec_of(SCOPE_WALK_EXTERNAL_USER, "alice", "gh", "GH_TOKEN",
					     "ghp-x");
	struct vault_set_result res = { .version = 99 };
	struct vault_secret_list list;

	s.tenant_allows_end_user_credentials = false;
	assert_int_equal(vault_secret_set(f->v, &s, &res), -EPERM);
	assert_int_equal(res.version, 99);
	assert_non_null(strstr(vault_errmsg(f->v), "allow end-user-scoped credentials"));
	assert_int_equal(vault_secret_list(f->v, "t1", SCOPE_WALK_EXTERNAL_USER, "alice", &list), 0);
	assert_int_equal(list.n, 0);
	vault_secret_list_free(&list);
	s.tenant_allows_end_user_credentials = true;
	set_ok(f->v, &s, &res);
}

/* troubleshooting #15 */
static void test_external_workspace_secret_needs_the_sandbox_stamp(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec s = spec_of(SCOPE_WALK_EXTERNAL_WORKSPACE, "team-a", "team_key",
					     "TEAM_KEY", "sk-team");
	const struct scope_walk_attribution unstamped = { "sbx-4", "t1", NULL, "alice", NULL, NULL };
	const struct scope_walk_attribution stamped = { "sbx-5", "t1", NULL, "alice", "team-a", NULL };
	char p[VAULT_PLACEHOLDER_LEN + 1];

	set_ok(f->v, &s, NULL);
	resolved_placeholder(f->v, &unstamped, "TEAM_KEY", p);
	assert_string_equal(p, "");
	resolved_placeholder(f->v, &stamped, "TEAM_KEY", p);
	assert_true(vault_placeholder_is_valid(p, strlen(p)));
}

static void test_same_env_for_two_names_at_one_scope_is_eexist(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec a = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "first", "OPENAI_API_KEY", "1");
	struct vault_secret_spec b = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "second", "OPENAI_API_KEY", "2");
	struct vault_secret_spec c = spec_of(SCOPE_WALK_SANDBOX, "sbx-2", "second", "OPENAI_API_KEY", "3");

	set_ok(f->v, &a, NULL);
	assert_int_equal(vault_secret_set(f->v, &b, NULL), -EEXIST);
	assert_string_equal(vault_errmsg(f->v),
			    "expose_as_env OPENAI_API_KEY is already used by secret 'first' at scope sandbox 'sbx-1'");
	/* Other scope ids, and a rename of the env by the same secret, are fine. */
	set_ok(f->v, &c, NULL);
	a.expose_as_env = "OPENAI_KEY";
	set_ok(f->v, &a, NULL);
	set_ok(f->v, &b, NULL);
}

/* ---- validation -------------------------------------------------------- */

struct bad_case {
	const char *what;
	struct vault_secret_spec spec;
	int err;
	const char *msg;
};

static void test_every_validation_error_is_specific(void **state)
{
	struct fixture *f = *state;
	static const char *const one_bad_host[] = { "api.openai.com", "*foo.com" };
	static const char *const many_hosts[33] = { "a.com", "a.com", "a.com", "a.com", "a.com",
		"a.com", "a.com", "a.com", "a.com", "a.com", "a.com", "a.com", "a.com", "a.com",
		"a.com", "a.com", "a.com", "a.com", "a.com", "a.com", "a.com", "a.com", "a.com",
		"a.com", "a.com", "a.com", "a.com", "a.com", "a.com", "a.com", "a.com", "a.com", "a.com" };
	static char long_name[130], long_id[258], big_value[VAULT_VALUE_MAX + 2];
	struct bad_case cases[32];
	size_t n = 0;

	memset(long_name, 'n', 129);
	memset(long_id, 'i', 257);
	memset(big_value, 'v', VAULT_VALUE_MAX + 1);
#define BAD(w, s, e, m) cases[n++] = (struct bad_case){ w, s, e, m }
#define OK_SPEC spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "name", "ENV", "value")
	struct vault_secret_spec s;

	s = OK_SPEC; s.ref.name = "";            BAD("empty name", s, -EINVAL, "secret name is missing");
	s = OK_SPEC; s.ref.name = long_name;     BAD("long name", s, -EINVAL, "longer than 128");
	s = OK_SPEC; s.ref.name = "a/b";         BAD("slash in name", s, -EINVAL, "has '/' at offset 1");
	s = OK_SPEC; s.ref.name = "a b";         BAD("space in name", s, -EINVAL, "has ' ' at offset 1");
	s = OK_SPEC; s.expose_as_env = NULL;     BAD("no env", s, -EINVAL, "expose_as_env is missing");
	s = OK_SPEC; s.expose_as_env = "1ABC";   BAD("env digit first", s, -EINVAL, "not an environment variable name");
	s = OK_SPEC; s.expose_as_env = "A-B";    BAD("env dash", s, -EINVAL, "not an environment variable name");
	s = OK_SPEC; s.expose_as_env = "A=B";    BAD("env equals", s, -EINVAL, "not an environment variable name");
	s = OK_SPEC; s.expose_as_env = long_name; BAD("env long", s, -EINVAL, "longer than 128");
	s = OK_SPEC; s.ref.tenant_id = NULL;     BAD("no tenant", s, -EINVAL, "tenant_id is missing");
	s = OK_SPEC; s.ref.scope_id = "";        BAD("no scope id", s, -EINVAL, "scope_id is missing");
	s = OK_SPEC; s.ref.scope_id = long_id;   BAD("long scope id", s, -EINVAL, "longer than 256");
	s = OK_SPEC; s.ref.scope_id = "a b";     BAD("space in id", s, -EINVAL, "byte 0x20 at offset 1");
	s = OK_SPEC; s.ref.scope_id = "caf\xc3\xa9"; BAD("non-ascii id", s, -EINVAL, "byte 0xc3");
	s = OK_SPEC; s.ref.scope = (enum scope_walk_scope)6; BAD("bad scope", s, -EINVAL, "is not a scope");
	s = OK_SPEC; s.ref.scope = SCOPE_WALK_TENANT; s.ref.scope_id = "t2";
	BAD("tenant scope id", s, -EINVAL, "must be the tenant id");
	s = OK_SPEC; s.value = NULL; s.value_len = 0; BAD("no value", s, -EINVAL, "value is empty");
	s = OK_SPEC; s.value_len = 0;            BAD("empty value", s, -EINVAL, "value is empty");
	s = OK_SPEC; s.value = (const uint8_t *)big_value; s.value_len = VAULT_VALUE_MAX + 1;
	BAD("big value", s, -EINVAL, "the limit is 16384");
	s = OK_SPEC; s.value = (const uint8_t *)"ab\0cd"; s.value_len = 5;
	BAD("NUL", s, -EINVAL, "value byte 2 is NUL (0x00)");
	s = OK_SPEC; s.value = (const uint8_t *)"abc\r"; s.value_len = 4;
	BAD("CR", s, -EINVAL, "value byte 3 is a carriage return (CR)");
	s = OK_SPEC; s.value = (const uint8_t *)"sk-abc\n"; s.value_len = 7;
	BAD("LF", s, -EINVAL, "value byte 6 is a line feed (LF)");
	s = OK_SPEC; s.value = (const uint8_t *)"a\x1b" "b"; s.value_len = 3;
	BAD("ESC", s, -EINVAL, "a control character (0x1b)");
	s = OK_SPEC; s.hosts = one_bad_host; s.n_hosts = 2;
	BAD("bad host", s, -EINVAL, "host pattern '*foo.com'");
	s = OK_SPEC; s.hosts = many_hosts; s.n_hosts = 33;
	BAD("33 hosts", s, -EINVAL, "33 allowed hosts; the limit is 32");
#undef BAD
#undef OK_SPEC
	for (size_t i = 0; i < n; i++) {
		struct vault_set_result res = { .version = 1234 };
		int r = vault_secret_set(f->v, &cases[i].spec, &res);

		if (r != cases[i].err || !strstr(vault_errmsg(f->v), cases[i].msg))
			fail_msg("case '%s': %d '%s', want %d '%s'", cases[i].what, r,
				 vault_errmsg(f->v), cases[i].err, cases[i].msg);
		assert_int_equal(res.version, 1234);
	}
	/* Tab and bytes >= 0x80 are legal in an HTTP field value. */
	s = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "name", "ENV", "a\tb\xff");
	set_ok(f->v, &s, NULL);
	assert_int_equal(vault_secret_set(f->v, NULL, NULL), -EINVAL);
}

static void test_error_messages_never_contain_the_value(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec s = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "k", "K",
					     "sk-SECRETSECRET\r\n");
	const struct vault_secret_ref ref = { "t1", SCOPE_WALK_SANDBOX, "sbx-1", "k" };

	assert_int_equal(vault_secret_set(f->v, &s, NULL), -EINVAL);
	assert_null(strstr(vault_errmsg(f->v), "SECRET"));
	assert_int_equal(vault_secret_rotate(f->v, &ref, (const uint8_t *)"SECRETSECRET\n", 13, NULL),
			 -EINVAL);
	assert_null(strstr(vault_errmsg(f->v), "SECRET"));
}

static void test_scope_holds_at_most_1000_secrets(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = raw_db(f);
	struct vault_secret_spec s;
	char sql[256];

	/* Fill directly (1000 sealed sets would mostly time fsync). */
	raw_exec(db, "BEGIN");
	for (int i = 0; i < VAULT_SECRETS_PER_SCOPE_MAX; i++) {
		snprintf(sql, sizeof(sql), "INSERT INTO vault_secrets (tenant_id, scope, scope_id, name,"
			 " expose_as_env, allow_cleartext, version, created_at_us, nonce, ciphertext)"
			 " VALUES ('t1', 0, 'sbx-1', 'n%d', 'E%d', 0, 1, 0, zeroblob(24), x'')", i, i);
		raw_exec(db, sql);
	}
	raw_exec(db, "COMMIT");
	sqlite3_close(db);
	s = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "one_more", "ONE_MORE", "v");
	assert_int_equal(vault_secret_set(f->v, &s, NULL), -ENOSPC);
	assert_non_null(strstr(vault_errmsg(f->v), "already holds 1000 secrets"));
	/* Replacing an existing one is still fine. */
	s = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "n5", "E5", "v");
	set_ok(f->v, &s, NULL);
}

/* ---- at rest (M7) ------------------------------------------------------ */

static void assert_no_value_in_state_files(struct fixture *f, const char *const *values, size_t n)
{
	static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };

	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		char path[PATH_MAX + 16];
		size_t len;
		uint8_t *buf;

		snprintf(path, sizeof(path), "%s%s", f->db_path, suffixes[i]);
		buf = read_file(path, &len);
		if (!buf)
			continue;
		for (size_t k = 0; k < n; k++)
			if (memmem(buf, len, values[k], strlen(values[k])))
				fail_msg("value %zu found in %s", k, path);
		free(buf);
	}
}

static void test_value_never_in_database_file(void **state)
{
	struct fixture *f = *state;
	static const char *const values[] = {
		"sk-proj-ZEBRA-0123456789-distinctive", "ghp_QUOKKA_secret_token_value",
		"xoxb-NARWHAL-slack-bot-token", "AKIA-PANGOLIN-aws-secret",
		"sk-proj-ZEBRA-rotated-version-2",
	};
	struct vault_secret_spec s;
	const struct vault_secret_ref ref = { "t1", SCOPE_WALK_SANDBOX, "sbx-1", "v0" };
	char name[8], env[8], wal_path[PATH_MAX + 8];
	size_t len;
	uint8_t *wal;

	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "v%d", i);
		snprintf(env, sizeof(env), "V%d", i);
		s = spec_of(i % 2 ? SCOPE_WALK_TENANT : SCOPE_WALK_SANDBOX, i % 2 ? "t1" : "sbx-1",
			    name, env, values[i]);
		set_ok(f->v, &s, NULL);
	}
	assert_int_equal(vault_secret_rotate(f->v, &ref, (const uint8_t *)values[4],
					     strlen(values[4]), NULL), 0);
	/* While the handle is open the writes sit in the WAL: check it too. */
	snprintf(wal_path, sizeof(wal_path), "%s-wal", f->db_path);
	wal = read_file(wal_path, &len);
	assert_non_null(wal);
	assert_true(len > 0);
	free(wal);
	assert_no_value_in_state_files(f, values, 5);
	vault_close(f->v);
	f->v = NULL;
	assert_no_value_in_state_files(f, values, 5);
	reopen(f);
}

static void test_restart_keeps_placeholders_and_values(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec own = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "own", "OWN", "sk-own-1");
	struct vault_secret_spec wide = spec_of(SCOPE_WALK_USER, "u1", "wide", "WIDE", "sk-wide-1");
	struct vault_set_result res;
	char pw[VAULT_PLACEHOLDER_LEN + 1], again[VAULT_PLACEHOLDER_LEN + 1], value[32];

	set_ok(f->v, &own, &res);
	set_ok(f->v, &wide, NULL);
	resolved_placeholder(f->v, &sbx1, "WIDE", pw);
	vault_close(f->v);
	f->v = NULL;
	master_key_free(f->key);
	f->key = NULL;
	assert_int_equal(master_key_load_or_create(f->key_path, &f->key, f->err, sizeof(f->err)), 0);
	reopen(f);
	resolved_placeholder(f->v, &sbx1, "OWN", again);
	assert_string_equal(again, res.placeholder);
	resolved_placeholder(f->v, &sbx1, "WIDE", again);
	assert_string_equal(again, pw);
	assert_int_equal(swap(f->v, &sbx1, pw, "x.example", true, value, sizeof(value)), VAULT_SWAP_OK);
	assert_string_equal(value, "sk-wide-1");
	assert_int_equal(swap(f->v, &sbx1, res.placeholder, "x.example", true, value, sizeof(value)),
			 VAULT_SWAP_OK);
	assert_string_equal(value, "sk-own-1");
}

static void test_other_master_key_is_rejected_at_open(void **state)
{
	struct fixture *f = *state;
	struct master_key *other = NULL;
	struct vault *v = NULL;
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/other.key", f->root);
	assert_int_equal(master_key_create(path, &other, f->err, sizeof(f->err)), 0);
	assert_int_equal(vault_open(f->state_dir, other, &v, f->err, sizeof(f->err)), -EKEYREJECTED);
	assert_null(v);
	assert_non_null(strstr(f->err, "master key does not match state.db"));
	master_key_free(other);
}

/* Flip one byte of a column of the only secret row, straight in SQLite. */
static void flip_blob_byte(struct fixture *f, const char *column, size_t index)
{
	sqlite3 *db = raw_db(f);
	sqlite3_stmt *st = NULL;
	uint8_t buf[STORE_CIPHERTEXT_MAX];
	char sql[128];
	int len;

	snprintf(sql, sizeof(sql), "SELECT %s FROM vault_secrets", column);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	len = sqlite3_column_bytes(st, 0);
	assert_true(len > (int)index);
	memcpy(buf, sqlite3_column_blob(st, 0), (size_t)len);
	sqlite3_finalize(st);
	buf[index] ^= 0x01;
	snprintf(sql, sizeof(sql), "UPDATE vault_secrets SET %s = ?1", column);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_blob(st, 1, buf, len, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void expect_fail_closed(struct fixture *f, const char *placeholder)
{
	struct vault_swap sw;

	sw.value = (unsigned char *)"untouched";
	assert_int_equal(vault_get_for_swap(f->v, &sbx1, placeholder, strlen(placeholder),
					    "api.openai.com", 14, true, &sw), -EBADMSG);
	assert_string_equal((const char *)sw.value, "untouched");
	assert_non_null(strstr(vault_errmsg(f->v), "failed authentication"));
}

static void test_flipped_ciphertext_byte_fails_closed(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec s = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "k", "K", "sk-tamper");
	struct vault_set_result res;

	set_ok(f->v, &s, &res);
	flip_blob_byte(f, "ciphertext", 3);
	expect_fail_closed(f, res.placeholder);
}

static void test_flipped_nonce_byte_fails_closed(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec s = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "k", "K", "sk-tamper");
	struct vault_set_result res;

	set_ok(f->v, &s, &res);
	flip_blob_byte(f, "nonce", 0);
	expect_fail_closed(f, res.placeholder);
}

static void test_version_changed_in_database_fails_closed(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec s = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "k", "K", "sk-v");
	struct vault_set_result res;
	sqlite3 *db;

	set_ok(f->v, &s, &res);
	db = raw_db(f);
	raw_exec(db, "UPDATE vault_secrets SET version = version + 1");
	sqlite3_close(db);
	expect_fail_closed(f, res.placeholder);
}

/*
 * Every edit keeps the swap reachable (host still allowed, TLS), so only the
 * AD can stop it: tenant/scope/scope_id, env, hosts and allow_cleartext are
 * all bound into it.
 */
static void test_policy_columns_edited_in_database_fail_closed(void **state)
{
	static const char *const edits[] = {
		"UPDATE vault_secrets SET allowed_hosts = ''",
		"UPDATE vault_secrets SET allowed_hosts = 'api.openai.com' || char(10) || 'evil.example'",
		"UPDATE vault_secrets SET allow_cleartext = 1",
		"UPDATE vault_secrets SET scope = 5, scope_id = 't1'",
		"UPDATE vault_secrets SET expose_as_env = 'OTHER'",
	};
	struct fixture *f = *state;
	const char *hosts[] = { "api.openai.com" };

	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		struct vault_secret_spec s = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "k", "K", "sk-p");
		struct vault_set_result res;
		sqlite3 *db;

		s.hosts = hosts;
		s.n_hosts = 1;
		s.allow_cleartext = false;
		set_ok(f->v, &s, &res);
		db = raw_db(f);
		raw_exec(db, edits[i]);
		sqlite3_close(db);
		expect_fail_closed(f, res.placeholder);
		db = raw_db(f);
		raw_exec(db, "DELETE FROM vault_secrets");
		sqlite3_close(db);
	}
}

static void test_ciphertext_copied_between_rows_fails(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec a = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "a", "A", "sk-aaaa");
	struct vault_secret_spec b = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "b", "B", "sk-bbbb");
	struct vault_set_result ra, rb;
	sqlite3 *db;

	set_ok(f->v, &a, &ra);
	set_ok(f->v, &b, &rb);
	db = raw_db(f);
	raw_exec(db, "UPDATE vault_secrets SET"
		     " nonce = (SELECT nonce FROM vault_secrets WHERE name = 'a'),"
		     " ciphertext = (SELECT ciphertext FROM vault_secrets WHERE name = 'a')"
		     " WHERE name = 'b'");
	sqlite3_close(db);
	expect_fail_closed(f, rb.placeholder);
}

static void test_older_ciphertext_restored_under_newer_version_fails(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec s = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "k", "K", "sk-version-1");
	const struct vault_secret_ref ref = { "t1", SCOPE_WALK_SANDBOX, "sbx-1", "k" };
	struct vault_set_result res;
	sqlite3 *db;

	set_ok(f->v, &s, &res);
	db = raw_db(f);
	raw_exec(db, "CREATE TABLE saved AS SELECT nonce, ciphertext FROM vault_secrets");
	sqlite3_close(db);
	assert_int_equal(vault_secret_rotate(f->v, &ref, (const uint8_t *)"sk-version-2", 12, NULL), 0);
	db = raw_db(f);
	raw_exec(db, "UPDATE vault_secrets SET nonce = (SELECT nonce FROM saved),"
		     " ciphertext = (SELECT ciphertext FROM saved)");
	sqlite3_close(db);
	expect_fail_closed(f, res.placeholder);
}

/* ---- files, schema, handles -------------------------------------------- */

static void test_state_dir_is_0700_and_database_0600_in_wal_mode(void **state)
{
	struct fixture *f = *state;
	struct stat sb;
	sqlite3 *db;
	sqlite3_stmt *st;

	assert_int_equal(stat(f->state_dir, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0700);
	assert_int_equal(stat(f->db_path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	db = raw_db(f);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), store_schema_version());
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void test_loose_state_permissions_are_refused(void **state)
{
	struct fixture *f = *state;
	struct vault *v = NULL;

	vault_close(f->v);
	f->v = NULL;
	assert_int_equal(chmod(f->db_path, 0644), 0);
	assert_int_equal(vault_open(f->state_dir, f->key, &v, f->err, sizeof(f->err)), -EPERM);
	assert_non_null(strstr(f->err, "is mode 0644; must not be accessible by group or others"));
	assert_int_equal(chmod(f->db_path, 0600), 0);
	assert_int_equal(chmod(f->state_dir, 0770), 0);
	assert_int_equal(vault_open(f->state_dir, f->key, &v, f->err, sizeof(f->err)), -EPERM);
	assert_non_null(strstr(f->err, "must not be writable by group or others (chmod 700)"));
	assert_int_equal(chmod(f->state_dir, 0700), 0);
	reopen(f);
}

static void test_symlinked_database_is_refused(void **state)
{
	struct fixture *f = *state;
	struct vault *v = NULL;
	char elsewhere[PATH_MAX];

	vault_close(f->v);
	f->v = NULL;
	snprintf(elsewhere, sizeof(elsewhere), "%s/elsewhere.db", f->root);
	assert_int_equal(rename(f->db_path, elsewhere), 0);
	assert_int_equal(symlink(elsewhere, f->db_path), 0);
	assert_int_equal(vault_open(f->state_dir, f->key, &v, f->err, sizeof(f->err)), -ELOOP);
	assert_non_null(strstr(f->err, "is a symlink"));
	assert_int_equal(unlink(f->db_path), 0);
	assert_int_equal(rename(elsewhere, f->db_path), 0);
	reopen(f);
}

static void test_newer_schema_is_refused(void **state)
{
	struct fixture *f = *state;
	struct vault *v = NULL;
	sqlite3 *db;

	vault_close(f->v);
	f->v = NULL;
	db = raw_db(f);
	raw_exec(db, "PRAGMA user_version = 999");
	sqlite3_close(db);
	assert_int_equal(vault_open(f->state_dir, f->key, &v, f->err, sizeof(f->err)),
			 -EPROTONOSUPPORT);
	assert_non_null(strstr(f->err, "schema version 999 is newer than this build"));
	db = raw_db(f);
	raw_exec(db, "PRAGMA user_version = 1");
	sqlite3_close(db);
	reopen(f);
}

static void test_delete_removes_the_secret_and_its_placeholders(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec s = spec_of(SCOPE_WALK_TENANT, "t1", "k", "K", "sk-del");
	const struct vault_secret_ref ref = { "t1", SCOPE_WALK_TENANT, NULL, "k" };
	char p[VAULT_PLACEHOLDER_LEN + 1], p2[VAULT_PLACEHOLDER_LEN + 1], value[16];

	set_ok(f->v, &s, NULL);
	resolved_placeholder(f->v, &sbx1, "K", p);
	assert_int_equal(vault_secret_delete(f->v, &ref), 0);
	assert_int_equal(swap(f->v, &sbx1, p, "a.com", true, value, sizeof(value)),
			 VAULT_SWAP_UNKNOWN_PLACEHOLDER);
	assert_int_equal(vault_secret_delete(f->v, &ref), -ENOENT);
	/* Re-created: a new row, a new binding, a new placeholder. */
	set_ok(f->v, &s, NULL);
	resolved_placeholder(f->v, &sbx1, "K", p2);
	assert_true(vault_placeholder_is_valid(p2, strlen(p2)));
	assert_string_not_equal(p, p2);
}

static void test_forget_sandbox_drops_its_secrets_and_placeholders(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec own = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "own", "OWN", "sk-o");
	struct vault_secret_spec wide = spec_of(SCOPE_WALK_TENANT, "t1", "wide", "WIDE", "sk-w");
	struct vault_set_result res;
	char pw[VAULT_PLACEHOLDER_LEN + 1], p2[VAULT_PLACEHOLDER_LEN + 1], value[16];

	set_ok(f->v, &own, &res);
	set_ok(f->v, &wide, NULL);
	resolved_placeholder(f->v, &sbx1, "WIDE", pw);
	resolved_placeholder(f->v, &sbx2, "WIDE", p2);
	assert_int_equal(vault_forget_sandbox(f->v, "t1", "sbx-1"), 2);
	assert_int_equal(swap(f->v, &sbx1, res.placeholder, "a.com", true, value, sizeof(value)),
			 VAULT_SWAP_UNKNOWN_PLACEHOLDER);
	assert_int_equal(swap(f->v, &sbx1, pw, "a.com", true, value, sizeof(value)),
			 VAULT_SWAP_UNKNOWN_PLACEHOLDER);
	assert_int_equal(swap(f->v, &sbx2, p2, "a.com", true, value, sizeof(value)), VAULT_SWAP_OK);
}

static void test_second_handle_sees_rotation_on_the_next_swap(void **state)
{
	struct fixture *f = *state;
	struct vault_secret_spec s = spec_of(SCOPE_WALK_SANDBOX, "sbx-1", "k", "K", "sk-first");
	const struct vault_secret_ref ref = { "t1", SCOPE_WALK_SANDBOX, "sbx-1", "k" };
	struct vault_set_result res;
	struct vault *v2 = NULL;
	char value[32];

	assert_int_equal(vault_open(f->state_dir, f->key, &v2, f->err, sizeof(f->err)), 0);
	set_ok(f->v, &s, &res);
	assert_int_equal(swap(v2, &sbx1, res.placeholder, "a.com", true, value, sizeof(value)),
			 VAULT_SWAP_OK);
	assert_string_equal(value, "sk-first");
	assert_int_equal(vault_secret_rotate(f->v, &ref, (const uint8_t *)"sk-second", 9, NULL), 0);
	assert_int_equal(swap(v2, &sbx1, res.placeholder, "a.com", true, value, sizeof(value)),
			 VAULT_SWAP_OK);
	assert_string_equal(value, "sk-second");
	vault_close(v2);
}

#define WORKERS 4
#define PER_WORKER 25

struct worker {
	const char *state_dir;
	const struct master_key *key;
	int id;
	int failures;
	char err[256];
};

/* One handle per thread, as the broker does: sets and resolves interleave. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct vault *v = NULL;
	char name[32], env[32], sandbox[32];

	if (vault_open(w->state_dir, w->key, &v, w->err, sizeof(w->err)) != 0) {
		w->failures++;
		return NULL;
	}
	snprintf(sandbox, sizeof(sandbox), "sbx-w%d", w->id);
	for (int i = 0; i < PER_WORKER; i++) {
		const struct scope_walk_attribution a = { sandbox, "t1", NULL, NULL, NULL, NULL };
		struct vault_secret_spec s;
		struct vault_secret_list list;

		snprintf(name, sizeof(name), "w%d_s%d", w->id, i);
		snprintf(env, sizeof(env), "W%d_S%d", w->id, i);
		s = spec_of(i % 2 ? SCOPE_WALK_TENANT : SCOPE_WALK_SANDBOX,
			    i % 2 ? "t1" : sandbox, name, env, "sk-concurrent");
		if (vault_secret_set(v, &s, NULL) != 0) {
			snprintf(w->err, sizeof(w->err), "%s", vault_errmsg(v));
			w->failures++;
		}
		if (vault_resolve(v, &a, &list) != 0) {
			snprintf(w->err, sizeof(w->err), "%s", vault_errmsg(v));
			w->failures++;
		} else {
			vault_secret_list_free(&list);
		}
	}
	vault_close(v);
	return NULL;
}

static void test_handles_on_one_state_dir_work_concurrently(void **state)
{
	struct fixture *f = *state;
	struct worker w[WORKERS];
	pthread_t t[WORKERS];
	char fresh[PATH_MAX];
	struct vault *v = NULL;
	struct vault_secret_list list;

	/* A fresh directory: the threads also race to create and migrate it. */
	snprintf(fresh, sizeof(fresh), "%s/fresh", f->root);
	for (int i = 0; i < WORKERS; i++) {
		w[i] = (struct worker){ fresh, f->key, i, 0, "" };
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < WORKERS; i++) {
		pthread_join(t[i], NULL);
		if (w[i].failures)
			fail_msg("worker %d: %d failures, last: %s", i, w[i].failures, w[i].err);
	}
	assert_int_equal(vault_open(fresh, f->key, &v, f->err, sizeof(f->err)), 0);
	assert_int_equal(vault_secret_list(v, "t1", SCOPE_WALK_TENANT, "t1", &list), 0);
	assert_int_equal(list.n, WORKERS * (PER_WORKER / 2)); /* odd i: tenant scope */
	vault_secret_list_free(&list);
	assert_int_equal(vault_resolve(v, &(struct scope_walk_attribution){ "sbx-w0", "t1", NULL,
		NULL, NULL, NULL }, &list), 0);
	/* Its own sandbox secrets (even i) plus every tenant secret. */
	assert_int_equal(list.n, (PER_WORKER + 1) / 2 + WORKERS * (PER_WORKER / 2));
	vault_secret_list_free(&list);
	vault_close(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_sandbox_secret_gets_random_placeholder_at_set_time),
		T(test_placeholder_syntax_is_exact),
		T(test_list_shows_metadata_and_never_the_value),
		T(test_wide_scope_listing_has_no_placeholder),
		T(test_rotate_keeps_placeholder_and_bumps_version),
		T(test_rotate_of_missing_secret_is_enoent),
		T(test_set_again_replaces_value_and_keeps_every_placeholder),
		T(test_wide_scope_secret_gets_one_placeholder_per_sandbox),
		T(test_placeholder_leaked_to_another_sandbox_is_not_swapped),
		T(test_unknown_placeholder_is_not_swapped),
		T(test_host_outside_the_binding_is_flagged_not_swapped),
		T(test_cleartext_is_refused_unless_the_secret_allows_it),
		T(test_shadowed_secret_placeholder_is_no_longer_swapped),
		T(test_invalid_destination_host_is_an_error),
		T(test_resolve_walks_scopes_most_specific_first),
		T(test_workspace_secret_not_visible_outside_its_workspace),
		T(test_external_user_scope_refused_when_tenant_setting_is_off),
		T(test_external_workspace_secret_needs_the_sandbox_stamp),
		T(test_same_env_for_two_names_at_one_scope_is_eexist),
		T(test_every_validation_error_is_specific),
		T(test_error_messages_never_contain_the_value),
		T(test_scope_holds_at_most_1000_secrets),
		T(test_value_never_in_database_file),
		T(test_restart_keeps_placeholders_and_values),
		T(test_other_master_key_is_rejected_at_open),
		T(test_flipped_ciphertext_byte_fails_closed),
		T(test_flipped_nonce_byte_fails_closed),
		T(test_version_changed_in_database_fails_closed),
		T(test_policy_columns_edited_in_database_fail_closed),
		T(test_ciphertext_copied_between_rows_fails),
		T(test_older_ciphertext_restored_under_newer_version_fails),
		T(test_state_dir_is_0700_and_database_0600_in_wal_mode),
		T(test_loose_state_permissions_are_refused),
		T(test_symlinked_database_is_refused),
		T(test_newer_schema_is_refused),
		T(test_delete_removes_the_secret_and_its_placeholders),
		T(test_forget_sandbox_drops_its_secrets_and_placeholders),
		T(test_second_handle_sees_rotation_on_the_next_swap),
		T(test_handles_on_one_state_dir_work_concurrently),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
