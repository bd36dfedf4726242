#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"
#include "mitm_ca.h"
#include "sandbox_ca.h"
#include "store.h"
#include "tenancy.h"
#include "vault.h"

/* ---- fixture ----------------------------------------------------------- */

struct fixture {
	char root[64];
	char state_dir[PATH_MAX];
	char key_path[PATH_MAX];
	char db_path[PATH_MAX];
	struct master_key *key;
	struct tenancy *t;
	struct vault *v;
	char err[512];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	if (fixture_tmpdir("tenancy", f->root) != 0)
		return -1;
	snprintf(f->state_dir, sizeof(f->state_dir), "%s/state", f->root);
	snprintf(f->db_path, sizeof(f->db_path), "%s/state/state.db", f->root);
	if (fixture_master_key(f->root, f->key_path, sizeof(f->key_path), &f->key,
			       f->err, sizeof(f->err)) != 0 ||
	    tenancy_open(f->state_dir, f->key, &f->t, f->err, sizeof(f->err)) != 0 ||
	    vault_open(f->state_dir, f->key, &f->v, f->err, sizeof(f->err)) != 0 ||
	    tenancy_tenant_create(f->t, "t1", "Tenant One", NULL) != 0 ||
	    tenancy_tenant_create(f->t, "t2", NULL, NULL) != 0) {
		fprintf(stderr, "setup: %s / %s\n", f->err, f->t ? tenancy_errmsg(f->t) : "");
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	tenancy_close(f->t);
	vault_close(f->v);
	master_key_free(f->key);
	fixture_rmtree(f->root);
	free(f);
	return 0;
}

static void reopen(struct fixture *f)
{
	tenancy_close(f->t);
	f->t = NULL;
	assert_int_equal(tenancy_open(f->state_dir, f->key, &f->t, f->err, sizeof(f->err)), 0);
}

static struct tenancy_sandbox_spec spec_for(const char *tenant)
{
	return (struct tenancy_sandbox_spec){ .tenant_id = tenant };
}

static void create_ok(struct fixture *f, const struct tenancy_sandbox_spec *spec,
		      struct tenancy_sandbox *out)
{
	int r = tenancy_sandbox_create(f->t, spec, out);

	if (r != 0)
		fail_msg("create sandbox: %d %s", r, tenancy_errmsg(f->t));
}

/* Does the file at path contain needle anywhere (state.db and its WAL)? */
static bool file_contains(const char *path, const void *needle, size_t len)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long size;
	bool found = false;

	if (!fp)
		return false;
	fseek(fp, 0, SEEK_END);
	size = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = malloc((size_t)size + 1);
	assert_non_null(buf);
	if (fread(buf, 1, (size_t)size, fp) == (size_t)size)
		found = memmem(buf, (size_t)size, needle, len) != NULL;
	free(buf);
	fclose(fp);
	return found;
}

/* ---- tenants ------------------------------------------------------------- */

static void test_tenant_ids_follow_the_documented_pattern(void **state)
{
	static const char *const good[] = { "a", "0", "acme", "acme-co_2", "a-", "a_",
		"abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz01" };
	static const char *const bad[] = { "", "-a", "_a", "Acme", "ac me", "ac.me", "a/b",
		"abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz012", "é" };
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(tenancy_tenant_id_is_valid(good[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(tenancy_tenant_id_is_valid(bad[i]));
		assert_int_equal(tenancy_tenant_create(f->t, bad[i], NULL, NULL), -EINVAL);
	}
	assert_false(tenancy_tenant_id_is_valid(NULL));
}

static void test_new_tenant_defaults_name_to_id_and_allows_end_user_credentials(void **state)
{
	struct fixture *f = *state;
	struct tenancy_tenant t;

	assert_int_equal(tenancy_tenant_get(f->t, "t2", &t), 0);
	assert_string_equal(t.name, "t2");
	assert_true(t.allow_end_user_scoped_credentials);
	assert_true(t.created_at_us > 0);
	assert_int_equal(tenancy_tenant_get(f->t, "t1", &t), 0);
	assert_string_equal(t.name, "Tenant One");
	assert_int_equal(tenancy_tenant_create(f->t, "t1", NULL, NULL), -EEXIST);
	assert_non_null(strstr(tenancy_errmsg(f->t), "already exists"));
	assert_int_equal(tenancy_tenant_get(f->t, "t9", &t), -ENOENT);
}

static void test_tenant_ensure_creates_once(void **state)
{
	struct fixture *f = *state;
	struct tenancy_tenant *rows = NULL;
	size_t n = 0;

	assert_int_equal(tenancy_tenant_ensure(f->t, "default", NULL), 1);
	assert_int_equal(tenancy_tenant_ensure(f->t, "default", NULL), 0);
	assert_int_equal(tenancy_tenant_list(f->t, &rows, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(rows[0].id, "default"); /* by id */
	assert_string_equal(rows[1].id, "t1");
	free(rows);
}

static void test_end_user_credentials_setting_toggles_and_persists(void **state)
{
	struct fixture *f = *state;
	struct tenancy_tenant t;

	assert_int_equal(tenancy_tenant_set_end_user_credentials(f->t, "t1", false, &t), 0);
	assert_false(t.allow_end_user_scoped_credentials);
	reopen(f);
	assert_int_equal(tenancy_tenant_get(f->t, "t1", &t), 0);
	assert_false(t.allow_end_user_scoped_credentials);
	assert_int_equal(tenancy_tenant_set_end_user_credentials(f->t, "t1", true, &t), 0);
	assert_true(t.allow_end_user_scoped_credentials);
	assert_int_equal(tenancy_tenant_set_end_user_credentials(f->t, "nope", true, &t), -ENOENT);
}

static void test_names_must_be_utf8_without_control_characters(void **state)
{
	struct fixture *f = *state;
	char long_name[TENANCY_NAME_MAX + 2];

	assert_true(tenancy_name_is_valid("Ünïcødé ✓ 🚀"));
	assert_false(tenancy_name_is_valid("tab\there"));
	assert_false(tenancy_name_is_valid("del\x7f"));
	assert_false(tenancy_name_is_valid("c1\xc2\x85"));        /* NEL */
	assert_false(tenancy_name_is_valid("bad\xff"));
	assert_false(tenancy_name_is_valid("overlong\xc0\xaf"));
	assert_false(tenancy_name_is_valid("surrogate\xed\xa0\x80"));
	assert_false(tenancy_name_is_valid("truncated\xe2\x82"));
	memset(long_name, 'n', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_false(tenancy_name_is_valid(long_name));
	long_name[TENANCY_NAME_MAX] = '\0';
	assert_true(tenancy_name_is_valid(long_name));
	assert_int_equal(tenancy_tenant_create(f->t, "t3", "bad\nname", NULL), -EINVAL);
}

/* ---- sandboxes ----------------------------------------------------------- */

static void test_sandbox_ids_are_random_sbx_hex(void **state)
{
	struct fixture *f = *state;
	struct tenancy_sandbox_spec spec = spec_for("t1");
	struct tenancy_sandbox a, b;

	create_ok(f, &spec, &a);
	create_ok(f, &spec, &b);
	assert_true(tenancy_sandbox_id_is_valid(a.id));
	assert_true(tenancy_sandbox_id_is_valid(b.id));
	assert_string_not_equal(a.id, b.id);
	assert_int_equal(strncmp(a.id, "sbx_", 4), 0);
	assert_int_equal(strlen(a.id), 28);
	assert_false(tenancy_sandbox_id_is_valid("sbx_0123456789ABCDEF01234567"));
	assert_false(tenancy_sandbox_id_is_valid("sbx_0123456789abcdef0123456"));
	assert_false(tenancy_sandbox_id_is_valid("key_0123456789abcdef01234567"));
}

static void test_sandbox_keeps_its_attribution_and_transport(void **state)
{
	struct fixture *f = *state;
	struct tenancy_sandbox_spec spec = {
		.tenant_id = "t1", .user_id = "u1", .workspace_id = "w1",
		.external_user_id = "alice@example.com", .external_workspace_id = "team-a",
		.template_name = "python 3.12", .transport = TENANCY_TRANSPORT_UDS,
		.uds = "/run/miosa/vm1.sock",
	};
	struct tenancy_sandbox s, got;

	create_ok(f, &spec, &s);
	reopen(f);
	assert_int_equal(tenancy_sandbox_get(f->t, "t1", s.id, &got), 0);
	assert_string_equal(got.user_id, "u1");
	assert_string_equal(got.workspace_id, "w1");
	assert_string_equal(got.external_user_id, "alice@example.com");
	assert_string_equal(got.external_workspace_id, "team-a");
	assert_string_equal(got.template_name, "python 3.12");
	assert_int_equal(got.transport.kind, TENANCY_TRANSPORT_UDS);
	assert_string_equal(got.transport.uds, "/run/miosa/vm1.sock");
	assert_int_equal(got.created_at_us, s.created_at_us);
	spec = (struct tenancy_sandbox_spec){ .tenant_id = "t1",
		.transport = TENANCY_TRANSPORT_VSOCK, .cid = 42 };
	create_ok(f, &spec, &s);
	assert_int_equal(tenancy_sandbox_get(f->t, NULL, s.id, &got), 0);
	assert_int_equal(got.transport.kind, TENANCY_TRANSPORT_VSOCK);
	assert_int_equal(got.transport.cid, 42);
	assert_string_equal(got.user_id, "");
}

static void test_sandbox_attribution_ids_are_printable_ascii_up_to_256_bytes(void **state)
{
	struct fixture *f = *state;
	struct tenancy_sandbox_spec spec = spec_for("t1");
	char id[TENANCY_ATTR_ID_MAX + 2];
	struct tenancy_sandbox s;

	memset(id, 'x', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';
	spec.external_user_id = id;
	assert_int_equal(tenancy_sandbox_create(f->t, &spec, &s), -EINVAL);
	assert_non_null(strstr(tenancy_errmsg(f->t), "external_user_id"));
	id[TENANCY_ATTR_ID_MAX] = '\0';
	create_ok(f, &spec, &s);
	spec.external_user_id = "has space";
	assert_int_equal(tenancy_sandbox_create(f->t, &spec, &s), -EINVAL);
	spec.external_user_id = "del\x7f";
	assert_int_equal(tenancy_sandbox_create(f->t, &spec, &s), -EINVAL);
	spec.external_user_id = "caf\xc3\xa9";
	assert_int_equal(tenancy_sandbox_create(f->t, &spec, &s), -EINVAL);
	spec.external_user_id = NULL;
	spec.workspace_id = "tab\t";
	assert_int_equal(tenancy_sandbox_create(f->t, &spec, &s), -EINVAL);
	spec.workspace_id = NULL;
	spec.template_name = "nl\n";
	assert_int_equal(tenancy_sandbox_create(f->t, &spec, &s), -EINVAL);
	spec.template_name = NULL;
	spec.tenant_id = "nope";
	assert_int_equal(tenancy_sandbox_create(f->t, &spec, &s), -ENOENT);
}

static void test_sandbox_transport_is_validated_and_unique(void **state)
{
	struct fixture *f = *state;
	static const uint32_t reserved[] = { 0, 1, 2, UINT32_MAX };
	struct tenancy_sandbox_spec spec = spec_for("t1");
	char long_path[TENANCY_UDS_MAX + 2];
	struct tenancy_sandbox s;

	spec.transport = TENANCY_TRANSPORT_VSOCK;
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		spec.cid = reserved[i];
		assert_int_equal(tenancy_sandbox_create(f->t, &spec, &s), -EINVAL);
	}
	spec.cid = 3;
	create_ok(f, &spec, &s);
	spec.tenant_id = "t2"; /* a CID is one VM, whatever the tenant */
	assert_int_equal(tenancy_sandbox_create(f->t, &spec, &s), -EEXIST);
	assert_non_null(strstr(tenancy_errmsg(f->t), "vsock_cid 3 is already used"));
	spec.transport = TENANCY_TRANSPORT_UDS;
	spec.uds = "relative/path";
	assert_int_equal(tenancy_sandbox_create(f->t, &spec, &s), -EINVAL);
	spec.uds = "/";
	assert_int_equal(tenancy_sandbox_create(f->t, &spec, &s), -EINVAL);
	memset(long_path, 'p', sizeof(long_path) - 1);
	long_path[0] = '/';
	long_path[sizeof(long_path) - 1] = '\0';
	spec.uds = long_path;
	assert_int_equal(tenancy_sandbox_create(f->t, &spec, &s), -EINVAL);
	long_path[TENANCY_UDS_MAX] = '\0';
	create_ok(f, &spec, &s);
	assert_int_equal(tenancy_sandbox_create(f->t, &spec, &s), -EEXIST);
	spec.transport = (enum tenancy_transport_kind)7;
	assert_int_equal(tenancy_sandbox_create(f->t, &spec, &s), -EINVAL);
}

static void test_another_tenants_sandbox_is_missing(void **state)
{
	struct fixture *f = *state;
	struct tenancy_sandbox_spec spec = spec_for("t2");
	struct tenancy_sandbox s, got;

	create_ok(f, &spec, &s);
	assert_int_equal(tenancy_sandbox_get(f->t, "t1", s.id, &got), -ENOENT);
	assert_int_equal(tenancy_sandbox_delete(f->t, f->v, "t1", s.id), -ENOENT);
	assert_int_equal(tenancy_sandbox_get(f->t, "t2", s.id, &got), 0);
	assert_int_equal(tenancy_sandbox_get(f->t, NULL, s.id, &got), 0);
	assert_int_equal(tenancy_sandbox_get(f->t, NULL, "sbx_000000000000000000000000", &got),
			 -ENOENT);
	assert_int_equal(tenancy_sandbox_get(f->t, NULL, "nope", &got), -EINVAL);
}

static void test_sandbox_list_filters_by_strict_equality(void **state)
{
	struct fixture *f = *state;
	struct tenancy_sandbox_spec spec = spec_for("t1");
	struct tenancy_sandbox_filter filter = { .tenant_id = "t1" };
	struct tenancy_sandbox s, *rows = NULL;
	size_t n = 0;

	spec.external_user_id = "alice";
	spec.external_workspace_id = "w1";
	create_ok(f, &spec, &s);
	spec.external_user_id = "Alice";
	create_ok(f, &spec, &s);
	spec.external_user_id = "alice2";
	spec.external_workspace_id = "w2";
	create_ok(f, &spec, &s);
	spec = spec_for("t2");
	spec.external_user_id = "alice";
	create_ok(f, &spec, &s);

	filter.external_user_id = "alice";
	assert_int_equal(tenancy_sandbox_list(f->t, &filter, &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].external_user_id, "alice");
	free(rows);
	filter.external_user_id = NULL;
	filter.external_workspace_id = "w1";
	assert_int_equal(tenancy_sandbox_list(f->t, &filter, &rows, &n), 0);
	assert_int_equal(n, 2);
	assert_true(rows[0].created_at_us <= rows[1].created_at_us);
	free(rows);
	filter = (struct tenancy_sandbox_filter){ .external_user_id = "alice" };
	assert_int_equal(tenancy_sandbox_list(f->t, &filter, &rows, &n), 0);
	assert_int_equal(n, 2); /* both tenants: the admin's view */
	free(rows);
	assert_int_equal(tenancy_sandbox_list(f->t, NULL, &rows, &n), 0);
	assert_int_equal(n, 4);
	free(rows);
	filter.external_user_id = "bad id";
	assert_int_equal(tenancy_sandbox_list(f->t, &filter, &rows, &n), -EINVAL);
}

static void test_deleting_a_sandbox_forgets_its_secrets_and_placeholders(void **state)
{
	struct fixture *f = *state;
	struct tenancy_sandbox_spec spec = spec_for("t1");
	struct vault_secret_spec vs;
	struct vault_set_result res;
	struct vault_secret_list list;
	struct scope_walk_attribution a;
	struct vault_swap swap;
	struct tenancy_sandbox s;

	create_ok(f, &spec, &s);
	memset(&vs, 0, sizeof(vs));
	vs.ref = (struct vault_secret_ref){ "t1", SCOPE_WALK_SANDBOX, s.id, "k" };
	vs.expose_as_env = "K";
	vs.value = (const uint8_t *)"sk-forget-me";
	vs.value_len = strlen("sk-forget-me");
	assert_int_equal(vault_secret_set(f->v, &vs, &res), 0);
	assert_true(vault_placeholder_is_valid(res.placeholder, strlen(res.placeholder)));
	assert_int_equal(tenancy_sandbox_delete(f->t, f->v, "t1", s.id), 0);
	assert_int_equal(tenancy_sandbox_get(f->t, NULL, s.id, &s), -ENOENT);
	assert_int_equal(vault_secret_list(f->v, "t1", SCOPE_WALK_SANDBOX, s.id, &list), 0);
	assert_int_equal(list.n, 0);
	vault_secret_list_free(&list);
	tenancy_sandbox_attribution(&s, &a);
	assert_int_equal(vault_get_for_swap(f->v, &a, res.placeholder, strlen(res.placeholder),
					    "api.example.com", 15, true, &swap), 0);
	assert_int_equal(swap.verdict, VAULT_SWAP_UNKNOWN_PLACEHOLDER);
	vault_swap_release(&swap);
	assert_int_equal(tenancy_sandbox_delete(f->t, f->v, NULL, s.id), -ENOENT);
}

/* ---- API keys ------------------------------------------------------------ */

static void mint(struct fixture *f, const char *tenant, struct tenancy_api_key *k, char **full)
{
	int r = tenancy_api_key_create(f->t, tenant, "ci key", k, full);

	if (r != 0)
		fail_msg("create key: %d %s", r, tenancy_errmsg(f->t));
}

static void test_api_key_is_msk_live_base64url_and_shown_once(void **state)
{
	struct fixture *f = *state;
	struct tenancy_api_key k, got, *rows = NULL;
	char *full = NULL;
	size_t n = 0;

	mint(f, "t1", &k, &full);
	assert_int_equal(strlen(full), TENANCY_API_KEY_LEN);
	assert_int_equal(strncmp(full, "msk_live_", 9), 0);
	for (size_t i = 9; i < TENANCY_API_KEY_LEN; i++)
		assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
				       full[i]));
	assert_true(tenancy_api_key_id_is_valid(k.id));
	assert_int_equal(strncmp(k.prefix, full, TENANCY_API_KEY_DISPLAY_LEN), 0);
	assert_int_equal(strlen(k.prefix), TENANCY_API_KEY_DISPLAY_LEN);
	assert_int_equal(k.revoked_at_us, 0);
	assert_int_equal(k.last_used_at_us, 0);
	assert_int_equal(tenancy_api_key_verify(f->t, full, strlen(full), &got), 0);
	assert_string_equal(got.id, k.id);
	assert_string_equal(got.tenant_id, "t1");
	assert_int_equal(tenancy_api_key_list(f->t, "t1", &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].name, "ci key");
	free(rows);
	tenancy_api_key_secret_free(full);
}

static void test_only_a_keyed_hash_of_the_key_is_stored(void **state)
{
	struct fixture *f = *state;
	struct tenancy_api_key k;
	char wal[PATH_MAX + 8];
	char *full = NULL;

	mint(f, "t1", &k, &full);
	snprintf(wal, sizeof(wal), "%s-wal", f->db_path);
	/* The random part, not just the public prefix, must be nowhere. */
	assert_false(file_contains(f->db_path, full + 15, TENANCY_API_KEY_LEN - 15));
	assert_false(file_contains(wal, full + 15, TENANCY_API_KEY_LEN - 15));
	tenancy_close(f->t);
	f->t = NULL;
	assert_false(file_contains(f->db_path, full + 15, TENANCY_API_KEY_LEN - 15));
	reopen(f);
	tenancy_api_key_secret_free(full);
}

static void test_verify_accepts_only_the_exact_key(void **state)
{
	struct fixture *f = *state;
	struct tenancy_api_key k, got;
	char *full = NULL, copy[TENANCY_API_KEY_LEN + 2];

	mint(f, "t1", &k, &full);
	memcpy(copy, full, TENANCY_API_KEY_LEN + 1);
	copy[TENANCY_API_KEY_LEN - 1] = copy[TENANCY_API_KEY_LEN - 1] == 'A' ? 'B' : 'A';
	assert_int_equal(tenancy_api_key_verify(f->t, copy, TENANCY_API_KEY_LEN, &got),
			 -EKEYREJECTED);
	assert_int_equal(tenancy_api_key_verify(f->t, full, TENANCY_API_KEY_LEN - 1, &got),
			 -EKEYREJECTED);
	memcpy(copy, full, TENANCY_API_KEY_LEN + 1);
	copy[5] = 't'; /* msk_test_ */
	assert_int_equal(tenancy_api_key_verify(f->t, copy, TENANCY_API_KEY_LEN, &got),
			 -EKEYREJECTED);
	memcpy(copy, full, TENANCY_API_KEY_LEN + 1);
	copy[20] = '+'; /* base64, not base64url */
	assert_int_equal(tenancy_api_key_verify(f->t, copy, TENANCY_API_KEY_LEN, &got),
			 -EKEYREJECTED);
	assert_int_equal(tenancy_api_key_verify(f->t, "", 0, &got), -EKEYREJECTED);
	assert_int_equal(tenancy_api_key_verify(f->t, NULL, 0, &got), -EKEYREJECTED);
	assert_int_equal(tenancy_api_key_verify(f->t, full, TENANCY_API_KEY_LEN, &got), 0);
	tenancy_api_key_secret_free(full);
}

static void test_revoked_key_never_verifies_and_revoke_is_idempotent(void **state)
{
	struct fixture *f = *state;
	struct tenancy_api_key k, first, second, got;
	char *full = NULL;

	mint(f, "t1", &k, &full);
	assert_int_equal(tenancy_api_key_revoke(f->t, "t2", k.id, &first), -ENOENT);
	assert_int_equal(tenancy_api_key_revoke(f->t, "t1", k.id, &first), 0);
	assert_true(first.revoked_at_us > 0);
	assert_int_equal(tenancy_api_key_verify(f->t, full, TENANCY_API_KEY_LEN, &got),
			 -EKEYREVOKED);
	assert_int_equal(tenancy_api_key_revoke(f->t, NULL, k.id, &second), 0);
	assert_int_equal(second.revoked_at_us, first.revoked_at_us);
	reopen(f);
	assert_int_equal(tenancy_api_key_verify(f->t, full, TENANCY_API_KEY_LEN, &got),
			 -EKEYREVOKED);
	assert_int_equal(tenancy_api_key_revoke(f->t, NULL, "key_000000000000000000000000", &got),
			 -ENOENT);
	assert_int_equal(tenancy_api_key_revoke(f->t, NULL, "key_xyz", &got), -EINVAL);
	tenancy_api_key_secret_free(full);
}

static void test_keys_verify_only_under_the_same_master_key(void **state)
{
	struct fixture *f = *state;
	struct tenancy_api_key k, got;
	struct master_key *other = NULL;
	struct tenancy *t2 = NULL;
	char path[PATH_MAX + 16], *full = NULL;

	mint(f, "t1", &k, &full);
	snprintf(path, sizeof(path), "%s/other.key", f->root);
	assert_int_equal(master_key_create(path, &other, f->err, sizeof(f->err)), 0);
	assert_int_equal(tenancy_open(f->state_dir, other, &t2, f->err, sizeof(f->err)), 0);
	/* The stored hash is keyed: without the master key it cannot be matched. */
	assert_int_equal(tenancy_api_key_verify(t2, full, TENANCY_API_KEY_LEN, &got),
			 -EKEYREJECTED);
	tenancy_close(t2);
	master_key_free(other);
	tenancy_api_key_secret_free(full);
}

static void test_use_of_a_key_is_recorded(void **state)
{
	struct fixture *f = *state;
	struct tenancy_api_key k, got, *rows = NULL;
	char *full = NULL;
	size_t n = 0;

	mint(f, "t2", &k, &full);
	assert_int_equal(tenancy_api_key_verify(f->t, full, TENANCY_API_KEY_LEN, &got), 0);
	assert_true(got.last_used_at_us >= k.created_at_us);
	assert_int_equal(tenancy_api_key_list(f->t, "t2", &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].last_used_at_us, got.last_used_at_us);
	free(rows);
	assert_int_equal(tenancy_api_key_create(f->t, "t1", "", &k, &full), -EINVAL);
	assert_int_equal(tenancy_api_key_create(f->t, "nope", "x", &k, &full), -ENOENT);
	tenancy_api_key_secret_free(full);
}

/* ---- sandbox CAs --------------------------------------------------------- */

/* The public half, asserted to be there. */
static void ca_public_ok(struct fixture *f, const char *tenant, const char *id,
			 struct sandbox_ca_public *out)
{
	int r = tenancy_sandbox_ca_public(f->t, tenant, id, out);

	if (r != 0)
		fail_msg("sandbox CA public: %d %s", r, tenancy_errmsg(f->t));
}

static struct mitm_ca *ca_load_ok(struct fixture *f, const char *id)
{
	struct mitm_ca *ca = NULL;
	int r = tenancy_sandbox_ca_load(f->t, NULL, id, &ca);

	if (r != 0)
		fail_msg("sandbox CA load: %d %s", r, tenancy_errmsg(f->t));
	return ca;
}

/* The loaded CA's certificate is the one the API shows. */
static void assert_ca_matches(struct mitm_ca *ca, const char *id, const char *pem)
{
	char *got = NULL;
	size_t len = 0;

	assert_string_equal(mitm_ca_sandbox_id(ca), id);
	assert_int_equal(mitm_ca_cert_pem(ca, &got, &len), 0);
	assert_string_equal(got, pem);
	free(got);
}

/* Run one statement on state.db behind the store's back (tests only). */
static void db_exec(struct fixture *f, const char *sql)
{
	sqlite3 *db;
	char *msg = NULL;

	assert_int_equal(sqlite3_open_v2(f->db_path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
	sqlite3_close(db);
}

/* Flip the low bit of byte off of a sandbox's sealed key. */
static void flip_sealed_bit(struct fixture *f, const char *id, int off)
{
	unsigned char blob[2048];
	sqlite3_stmt *st;
	sqlite3 *db;
	int len;

	assert_int_equal(sqlite3_open_v2(f->db_path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT sealed_key FROM tenancy_sandbox_cas"
					    " WHERE sandbox_id = ?1", -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	len = sqlite3_column_bytes(st, 0);
	assert_true(len > off && (size_t)len <= sizeof(blob));
	memcpy(blob, sqlite3_column_blob(st, 0), (size_t)len);
	sqlite3_finalize(st);
	blob[off] ^= 1;
	assert_int_equal(sqlite3_prepare_v2(db, "UPDATE tenancy_sandbox_cas SET sealed_key = ?2"
					    " WHERE sandbox_id = ?1", -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, blob, len, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static int db_count_cas(struct fixture *f, const char *id)
{
	sqlite3_stmt *st;
	sqlite3 *db;
	int n;

	assert_int_equal(sqlite3_open_v2(f->db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM tenancy_sandbox_cas"
					    " WHERE sandbox_id = ?1", -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

static void test_sandbox_is_created_with_its_ca(void **state)
{
	struct fixture *f = *state;
	struct tenancy_sandbox_spec spec = spec_for("t1");
	struct sandbox_ca_public pub, other;
	struct tenancy_sandbox s;
	struct mitm_ca *ca;
	time_t now = time(NULL);

	create_ok(f, &spec, &s);
	assert_int_equal(db_count_cas(f, s.id), 1);
	ca_public_ok(f, "t1", s.id, &pub);
	assert_int_equal(strncmp(pub.cert_pem, "-----BEGIN CERTIFICATE-----\n", 28), 0);
	assert_int_equal(strlen(pub.cert_pem), pub.cert_pem_len);
	assert_null(strstr(pub.cert_pem, "PRIVATE KEY"));
	assert_int_equal(strlen(pub.sha256_fingerprint), SANDBOX_CA_FINGERPRINT_LEN);
	assert_true(pub.not_before <= now - MITM_CA_BACKDATE_S + 5 &&
		    pub.not_before >= now - MITM_CA_BACKDATE_S - 5);
	assert_int_equal(pub.not_after - pub.not_before,
			 (time_t)MITM_CA_VALIDITY_DAYS * 86400 + MITM_CA_BACKDATE_S);
	ca = ca_load_ok(f, s.id);
	assert_ca_matches(ca, s.id, pub.cert_pem);
	assert_int_equal(mitm_ca_not_after(ca), pub.not_after);
	mitm_ca_free(ca);
	/* Another tenant's sandbox has no CA for this caller either. */
	assert_int_equal(tenancy_sandbox_ca_public(f->t, "t2", s.id, &other), -ENOENT);
	ca = NULL;
	assert_int_equal(tenancy_sandbox_ca_load(f->t, "t2", s.id, &ca), -ENOENT);
	assert_null(ca);
	assert_int_equal(tenancy_sandbox_ca_public(f->t, NULL, "sbx_000000000000000000000000",
						   &other), -ENOENT);
	assert_int_equal(tenancy_sandbox_ca_public(f->t, NULL, "sbx_nope", &other), -EINVAL);
	/* Each sandbox its own CA. */
	create_ok(f, &spec, &s);
	ca_public_ok(f, "t1", s.id, &other);
	assert_string_not_equal(other.cert_pem, pub.cert_pem);
	assert_string_not_equal(other.sha256_fingerprint, pub.sha256_fingerprint);
	sandbox_ca_public_clear(&other);
	sandbox_ca_public_clear(&pub);
}

static void test_sandbox_ca_survives_a_restart(void **state)
{
	struct fixture *f = *state;
	struct tenancy_sandbox_spec spec = spec_for("t2");
	struct sandbox_ca_public before, after;
	struct tenancy_sandbox s;
	struct mitm_ca *ca;

	create_ok(f, &spec, &s);
	ca_public_ok(f, NULL, s.id, &before);
	reopen(f);
	ca_public_ok(f, "t2", s.id, &after);
	assert_string_equal(before.cert_pem, after.cert_pem);
	assert_string_equal(before.sha256_fingerprint, after.sha256_fingerprint);
	ca = ca_load_ok(f, s.id);
	assert_ca_matches(ca, s.id, before.cert_pem);
	mitm_ca_free(ca);
	sandbox_ca_public_clear(&before);
	sandbox_ca_public_clear(&after);
}

static void test_sandbox_ca_refuses_a_tampered_or_foreign_key(void **state)
{
	struct fixture *f = *state;
	struct tenancy_sandbox_spec spec = spec_for("t1");
	struct tenancy_sandbox s, s2;
	struct master_key *other = NULL;
	struct tenancy *t2 = NULL;
	struct mitm_ca *ca = NULL;
	char sql[512], path[PATH_MAX + 16];

	create_ok(f, &spec, &s);
	create_ok(f, &spec, &s2);
	/* Under another master key the blob does not open. */
	snprintf(path, sizeof(path), "%s/other.key", f->root);
	assert_int_equal(master_key_create(path, &other, f->err, sizeof(f->err)), 0);
	assert_int_equal(tenancy_open(f->state_dir, other, &t2, f->err, sizeof(f->err)), 0);
	assert_int_equal(tenancy_sandbox_ca_load(t2, NULL, s.id, &ca), -EBADMSG);
	assert_null(ca);
	tenancy_close(t2);
	master_key_free(other);
	/* One flipped bit in the ciphertext. */
	flip_sealed_bit(f, s.id, 40);
	assert_int_equal(tenancy_sandbox_ca_load(f->t, NULL, s.id, &ca), -EBADMSG);
	assert_null(ca);
	/* Another sandbox's (intact) blob: the associated data binds the id. */
	snprintf(sql, sizeof(sql),
		 "UPDATE tenancy_sandbox_cas SET sealed_key = (SELECT sealed_key FROM"
		 " tenancy_sandbox_cas WHERE sandbox_id = '%s') WHERE sandbox_id = '%s'",
		 s2.id, s.id);
	db_exec(f, sql);
	assert_int_equal(tenancy_sandbox_ca_load(f->t, NULL, s.id, &ca), -EBADMSG);
	assert_null(ca);
	/* The untouched one still loads; the public half never needed the key. */
	ca = ca_load_ok(f, s2.id);
	mitm_ca_free(ca);
	{
		struct sandbox_ca_public pub;

		ca_public_ok(f, "t1", s.id, &pub);
		sandbox_ca_public_clear(&pub);
	}
}

static void test_sandbox_ca_is_deleted_with_the_sandbox(void **state)
{
	struct fixture *f = *state;
	struct tenancy_sandbox_spec spec = spec_for("t1");
	struct sandbox_ca_public pub;
	struct tenancy_sandbox s, keep;
	struct store_sandbox_ca row;
	struct store *st = NULL;

	create_ok(f, &spec, &s);
	create_ok(f, &spec, &keep);
	assert_int_equal(tenancy_sandbox_delete(f->t, f->v, "t1", s.id), 0);
	assert_int_equal(db_count_cas(f, s.id), 0);
	assert_int_equal(db_count_cas(f, keep.id), 1);
	assert_int_equal(tenancy_sandbox_ca_public(f->t, NULL, s.id, &pub), -ENOENT);
	assert_int_equal(store_open(f->state_dir, &st, f->err, sizeof(f->err)), 0);
	assert_int_equal(store_sandbox_ca_get(st, s.id, STORE_WITH_SEALED_KEY, &row), -ENOENT);
	store_close(st);
}

static void test_store_keeps_one_ca_per_existing_sandbox(void **state)
{
	struct fixture *f = *state;
	struct tenancy_sandbox_spec spec = spec_for("t1");
	struct store_sandbox_ca row, got;
	struct tenancy_sandbox s;
	struct store *st = NULL;
	uint8_t blob[3] = { 1, 2, 3 };
	char pem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

	create_ok(f, &spec, &s);
	assert_int_equal(store_open(f->state_dir, &st, f->err, sizeof(f->err)), 0);
	memset(&row, 0, sizeof(row));
	snprintf(row.sandbox_id, sizeof(row.sandbox_id), "%s", s.id);
	row.cert_pem = pem;
	row.cert_pem_len = strlen(pem);
	row.sealed_key = blob;
	row.sealed_key_len = sizeof(blob);
	assert_int_equal(store_sandbox_ca_insert(st, &row), -EEXIST);
	snprintf(row.sandbox_id, sizeof(row.sandbox_id), "sbx_000000000000000000000000");
	assert_int_equal(store_sandbox_ca_insert(st, &row), -ENOENT);
	row.cert_pem_len = 3;
	assert_int_equal(store_sandbox_ca_insert(st, &row), -EINVAL);
	/* Without the flag the sealed key is not even read. */
	assert_int_equal(store_sandbox_ca_get(st, s.id, 0, &got), 0);
	assert_null(got.sealed_key);
	assert_int_equal(got.sealed_key_len, 0);
	store_sandbox_ca_clear(&got);
	assert_int_equal(store_sandbox_ca_get(st, s.id, STORE_WITH_SEALED_KEY, &got), 0);
	assert_non_null(got.sealed_key);
	assert_true(got.sealed_key_len > 1 + 24 + 16);
	store_sandbox_ca_clear(&got);
	assert_int_equal(store_sandbox_ca_delete(st, s.id), 0);
	assert_int_equal(store_sandbox_ca_delete(st, s.id), -ENOENT);
	store_close(st);
}

/* A sandbox created before schema step 3 (or whose row was lost) gets a
 * CA on first use, and then keeps that one. */
static void test_sandbox_from_schema_2_gets_its_ca_on_first_use(void **state)
{
	struct fixture *f = *state;
	struct tenancy_sandbox_spec spec = spec_for("t1");
	struct sandbox_ca_public first, again;
	struct tenancy_sandbox s;
	struct mitm_ca *ca;

	create_ok(f, &spec, &s);
	tenancy_close(f->t);
	vault_close(f->v);
	f->t = NULL;
	f->v = NULL;
	db_exec(f, "DROP TABLE tenancy_sandbox_cas; PRAGMA user_version = 2;");
	assert_int_equal(vault_open(f->state_dir, f->key, &f->v, f->err, sizeof(f->err)), 0);
	reopen(f); /* runs step 3 again */
	assert_int_equal(db_count_cas(f, s.id), 0);
	ca_public_ok(f, "t1", s.id, &first);
	assert_int_equal(db_count_cas(f, s.id), 1);
	ca_public_ok(f, "t1", s.id, &again);
	assert_string_equal(first.cert_pem, again.cert_pem);
	ca = ca_load_ok(f, s.id);
	assert_ca_matches(ca, s.id, first.cert_pem);
	mitm_ca_free(ca);
	sandbox_ca_public_clear(&first);
	sandbox_ca_public_clear(&again);
	/* Deleting it still takes the CA along. */
	assert_int_equal(tenancy_sandbox_delete(f->t, f->v, NULL, s.id), 0);
	assert_int_equal(db_count_cas(f, s.id), 0);
}

/* ---- synthetic DNS map rows ------------------------------------------------ */

#define ADDR(c, d) (0xc6120000u | ((uint32_t)(c) << 8) | (uint32_t)(d)) /* 198.18.c.d */

static struct store *open_store(struct fixture *f)
{
	struct store *st = NULL;

	assert_int_equal(store_open(f->state_dir, &st, f->err, sizeof(f->err)), 0);
	return st;
}

static void dns_insert_ok(struct store *st, const char *id, uint32_t addr, const char *name)
{
	int r = store_dns_map_insert(st, id, addr, name);

	if (r != 0)
		fail_msg("insert %s: %d %s", name, r, store_errmsg(st));
}

static void test_dns_map_rows_list_by_address_per_sandbox(void **state)
{
	struct fixture *f = *state;
	struct tenancy_sandbox a, b;
	struct tenancy_sandbox_spec spec = spec_for("t1");
	struct store_dns_mapping *rows = NULL;
	struct store *st;
	size_t n = 99;

	create_ok(f, &spec, &a);
	create_ok(f, &spec, &b);
	st = open_store(f);
	assert_int_equal(store_dns_map_list(st, a.id, 10, &rows, &n), 0);
	assert_int_equal(n, 0);
	free(rows);
	dns_insert_ok(st, a.id, ADDR(0, 3), "b.example");
	dns_insert_ok(st, a.id, ADDR(0, 2), "a.example");
	dns_insert_ok(st, a.id, ADDR(1, 1), "c.example");
	/* the same address and name in another sandbox: maps are per sandbox */
	dns_insert_ok(st, b.id, ADDR(0, 2), "b.example");
	assert_int_equal(store_dns_map_list(st, a.id, 10, &rows, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(rows[0].addr, ADDR(0, 2));
	assert_string_equal(rows[0].name, "a.example");
	assert_int_equal(rows[1].addr, ADDR(0, 3));
	assert_string_equal(rows[1].name, "b.example");
	assert_int_equal(rows[2].addr, ADDR(1, 1));
	assert_string_equal(rows[2].name, "c.example");
	free(rows);
	rows = NULL;
	assert_int_equal(store_dns_map_list(st, a.id, 2, &rows, &n), -E2BIG);
	assert_null(rows);
	assert_int_equal(store_dns_map_list(st, b.id, 10, &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].name, "b.example");
	free(rows);
	store_close(st);
}

static void test_dns_map_insert_keeps_name_and_address_unique(void **state)
{
	struct fixture *f = *state;
	struct tenancy_sandbox a;
	struct tenancy_sandbox_spec spec = spec_for("t1");
	struct store_dns_mapping *rows = NULL;
	struct store *st;
	size_t n = 0;

	create_ok(f, &spec, &a);
	st = open_store(f);
	dns_insert_ok(st, a.id, ADDR(0, 2), "a.example");
	/* an address never changes name, a name never changes address */
	assert_int_equal(store_dns_map_insert(st, a.id, ADDR(0, 2), "other.example"), -EEXIST);
	assert_int_equal(store_dns_map_insert(st, a.id, ADDR(0, 9), "a.example"), -EEXIST);
	/* outside 198.18.0.0/15, empty or oversize names */
	assert_int_equal(store_dns_map_insert(st, a.id, 0xc6140002u, "x.example"), -EINVAL);
	assert_int_equal(store_dns_map_insert(st, a.id, 0xc611ffffu, "x.example"), -EINVAL);
	assert_int_equal(store_dns_map_insert(st, a.id, ADDR(0, 5), ""), -EINVAL);
	/* no mapping for a sandbox that does not exist */
	assert_int_equal(store_dns_map_insert(st, "sb_nosuchsandbox", ADDR(0, 5), "x.example"),
			 -ENOENT);
	assert_int_equal(store_dns_map_list(st, a.id, 10, &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].addr, ADDR(0, 2));
	assert_string_equal(rows[0].name, "a.example");
	free(rows);
	store_close(st);
}

static void test_dns_map_rows_go_with_their_sandbox(void **state)
{
	struct fixture *f = *state;
	struct tenancy_sandbox a, b;
	struct tenancy_sandbox_spec spec = spec_for("t1");
	struct store_dns_mapping *rows = NULL;
	struct store *st;
	size_t n = 0;

	create_ok(f, &spec, &a);
	create_ok(f, &spec, &b);
	st = open_store(f);
	dns_insert_ok(st, a.id, ADDR(0, 2), "a.example");
	dns_insert_ok(st, a.id, ADDR(0, 3), "b.example");
	dns_insert_ok(st, b.id, ADDR(0, 2), "a.example");
	assert_int_equal(tenancy_sandbox_delete(f->t, f->v, NULL, a.id), 0);
	assert_int_equal(store_dns_map_list(st, a.id, 10, &rows, &n), 0);
	assert_int_equal(n, 0);
	free(rows);
	assert_int_equal(store_dns_map_list(st, b.id, 10, &rows, &n), 0);
	assert_int_equal(n, 1);
	free(rows);
	assert_int_equal(store_dns_map_insert(st, a.id, ADDR(0, 4), "c.example"), -ENOENT);
	assert_int_equal(store_dns_map_delete_sandbox(st, b.id), 1);
	assert_int_equal(store_dns_map_delete_sandbox(st, b.id), 0);
	store_close(st);
}

/* ---- schema -------------------------------------------------------------- */

static void test_migration_adds_prefixed_tables_at_the_current_version(void **state)
{
	struct fixture *f = *state;
	sqlite3_stmt *st;
	sqlite3 *db;
	int tables = 0;

	assert_int_equal(sqlite3_open_v2(f->db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), store_schema_version());
	assert_true(store_schema_version() >= 2);
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'table'"
					    " AND name NOT LIKE 'sqlite_%'", -1, &st, NULL),
			 SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);

		/* every module prefixes its tables (store.h): vault_, tenancy_,
		 * policy_, audit_, dns_ */
		assert_true(strncmp(name, "vault_", 6) == 0 || strncmp(name, "tenancy_", 8) == 0 ||
			    strncmp(name, "policy_", 7) == 0 || strncmp(name, "audit_", 6) == 0 ||
			    strncmp(name, "dns_", 4) == 0);
		tables += strncmp(name, "tenancy_", 8) == 0;
	}
	assert_int_equal(tables, 4);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void test_rows_survive_a_restart(void **state)
{
	struct fixture *f = *state;
	struct tenancy_sandbox_spec spec = spec_for("t1");
	struct tenancy_api_key k, got;
	struct tenancy_sandbox s, s2;
	char *full = NULL;

	create_ok(f, &spec, &s);
	mint(f, "t1", &k, &full);
	tenancy_close(f->t);
	vault_close(f->v);
	f->t = NULL;
	f->v = NULL;
	assert_int_equal(tenancy_open(f->state_dir, f->key, &f->t, f->err, sizeof(f->err)), 0);
	assert_int_equal(vault_open(f->state_dir, f->key, &f->v, f->err, sizeof(f->err)), 0);
	assert_int_equal(tenancy_sandbox_get(f->t, "t1", s.id, &s2), 0);
	assert_int_equal(tenancy_api_key_verify(f->t, full, TENANCY_API_KEY_LEN, &got), 0);
	assert_string_equal(got.id, k.id);
	tenancy_api_key_secret_free(full);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_tenant_ids_follow_the_documented_pattern),
		T(test_new_tenant_defaults_name_to_id_and_allows_end_user_credentials),
		T(test_tenant_ensure_creates_once),
		T(test_end_user_credentials_setting_toggles_and_persists),
		T(test_names_must_be_utf8_without_control_characters),
		T(test_sandbox_ids_are_random_sbx_hex),
		T(test_sandbox_keeps_its_attribution_and_transport),
		T(test_sandbox_attribution_ids_are_printable_ascii_up_to_256_bytes),
		T(test_sandbox_transport_is_validated_and_unique),
		T(test_another_tenants_sandbox_is_missing),
		T(test_sandbox_list_filters_by_strict_equality),
		T(test_deleting_a_sandbox_forgets_its_secrets_and_placeholders),
		T(test_api_key_is_msk_live_base64url_and_shown_once),
		T(test_only_a_keyed_hash_of_the_key_is_stored),
		T(test_verify_accepts_only_the_exact_key),
		T(test_revoked_key_never_verifies_and_revoke_is_idempotent),
		T(test_keys_verify_only_under_the_same_master_key),
		T(test_use_of_a_key_is_recorded),
		T(test_sandbox_is_created_with_its_ca),
		T(test_sandbox_ca_survives_a_restart),
		T(test_sandbox_ca_refuses_a_tampered_or_foreign_key),
		T(test_sandbox_ca_is_deleted_with_the_sandbox),
		T(test_store_keeps_one_ca_per_existing_sandbox),
		T(test_sandbox_from_schema_2_gets_its_ca_on_first_use),
		T(test_dns_map_rows_list_by_address_per_sandbox),
		T(test_dns_map_insert_keeps_name_and_address_unique),
		T(test_dns_map_rows_go_with_their_sandbox),
		T(test_migration_adds_prefixed_tables_at_the_current_version),
		T(test_rows_survive_a_restart),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
