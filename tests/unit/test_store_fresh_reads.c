/*
 * Reads see what other connections committed (store.h, control_api.h).
 *
 * The broker keeps one set of connections per control-API worker for its
 * whole life, and other processes (the audit writer of audit_seed, the
 * sqlite3 CLI, a second broker tool) write the same state.db.  In WAL mode a
 * connection only moves to a newer snapshot when it starts a new read
 * transaction, so two things make a connection read old data for good:
 *   - a transaction or statement left open (store_check_idle() finds it);
 *   - the -wal/-shm files unlinked under it: close() of any descriptor of
 *     state.db drops every POSIX lock the process holds on it, so another
 *     process closing its last connection believes it is the last one,
 *     checkpoints and deletes the WAL our connections still read.
 * Each test reads through the affected functions (audit verify and query,
 * policy status, vault list, tenancy get), writes through other handles or
 * another process, and reads again through the first handles.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"
#include "audit.h"
#include "control_api.h"
#include "control_api_internal.h"
#include "master_key.h"
#include "policy.h"
#include "store.h"
#include "store_sqlite_internal.h"
#include "tenancy.h"
#include "vault.h"

struct handles {
	struct store *audit;
	struct policy *policy;
	struct vault *vault;
	struct tenancy *tenancy;
};

struct fixture {
	char root[64];
	char state_dir[PATH_MAX];
	char key_path[PATH_MAX];
	struct master_key *key;
	char sbx[TENANCY_OBJECT_ID_LEN + 1];
	struct handles rd;  /* the reader: a worker's long-lived connections */
	char err[512];
};

/* What the reader sees. */
struct view {
	uint64_t verified;      /* audit_verify(): rows checked */
	size_t queried;         /* audit_query(): rows */
	size_t allowed;         /* policy_status(): allowlist entries */
	size_t secrets;         /* vault_secret_list() at tenant "default" */
	bool tenant_t2;         /* tenancy_tenant_get("t2") found it */
};

static void handles_open(struct fixture *f, struct handles *h)
{
	assert_int_equal(store_open(f->state_dir, &h->audit, f->err, sizeof(f->err)), 0);
	assert_int_equal(policy_open(f->state_dir, &h->policy, f->err, sizeof(f->err)), 0);
	assert_int_equal(vault_open(f->state_dir, f->key, &h->vault, f->err, sizeof(f->err)), 0);
	assert_int_equal(tenancy_open(f->state_dir, f->key, &h->tenancy, f->err, sizeof(f->err)),
			 0);
}

static void handles_close(struct handles *h)
{
	store_close(h->audit);
	policy_close(h->policy);
	vault_close(h->vault);
	tenancy_close(h->tenancy);
	memset(h, 0, sizeof(*h));
}

static void assert_idle(struct handles *h)
{
	if (store_check_idle(h->audit) != 0)
		fail_msg("audit store: %s", store_errmsg(h->audit));
	if (policy_check_idle(h->policy, false) != 0)
		fail_msg("policy: %s", policy_errmsg(h->policy));
	if (vault_check_idle(h->vault, false) != 0)
		fail_msg("vault: %s", vault_errmsg(h->vault));
	if (tenancy_check_idle(h->tenancy, false) != 0)
		fail_msg("tenancy: %s", tenancy_errmsg(h->tenancy));
}

static struct view look(struct fixture *f)
{
	struct handles *h = &f->rd;
	struct store_audit_filter filter;
	struct store_audit_row *rows = NULL;
	struct policy_status ps;
	struct vault_secret_list list;
	struct tenancy_tenant t;
	struct view v = { 0 };
	int64_t bad = 0, next = 0;
	int r;

	assert_int_equal(audit_verify(h->audit, &bad, &v.verified, NULL), 0);
	audit_filter_init(&filter);
	assert_int_equal(audit_query(h->audit, &filter, 100, &rows, &v.queried, &next), 0);
	free(rows);
	assert_int_equal(policy_status(h->policy, f->sbx, &ps), 0);
	v.allowed = ps.n_allow;
	policy_status_clear(&ps);
	assert_int_equal(vault_secret_list(h->vault, "default", SCOPE_WALK_TENANT, "default",
					   &list), 0);
	v.secrets = list.n;
	vault_secret_list_free(&list);
	r = tenancy_tenant_get(h->tenancy, "t2", &t);
	assert_true(r == 0 || r == -ENOENT);
	v.tenant_t2 = r == 0;
	assert_idle(h);
	return v;
}

static void audit_row(struct store_audit_row *r, const char *host)
{
	memset(r, 0, sizeof(*r));
	r->time_us = 1700000000000000;
	strcpy(r->tenant_id, "default");
	strcpy(r->sandbox_id, "sbx_aaaaaaaaaaaaaaaaaaaaaaaa");
	snprintf(r->host, sizeof(r->host), "%s", host);
	r->port = 443;
	r->scheme = STORE_AUDIT_HTTPS;
	strcpy(r->method, "GET");
	strcpy(r->path, "/");
	r->status = 200;
	r->action = STORE_AUDIT_ALLOW;
}

/*
 * One round of writes (n = 1, 2, ...): one audit row through the real
 * writer, one allowlist entry, one tenant-scope secret, and tenant "t2" in
 * round 1.  Returns 0 or the first failure (callable from a child).
 */
static int write_round(struct fixture *f, int n)
{
	struct audit_writer *w = NULL;
	struct handles h = { 0 };
	struct store_audit_row row;
	struct vault_secret_spec s = { 0 };
	char host[64], name[32], env[32];
	int r;

	snprintf(host, sizeof(host), "round%d.example", n);
	snprintf(name, sizeof(name), "key%d", n);
	snprintf(env, sizeof(env), "KEY_%d", n);
	s.ref = (struct vault_secret_ref){ "default", SCOPE_WALK_TENANT, "default", name };
	s.expose_as_env = env;
	s.value = (const uint8_t *)"not-a-real-value";
	s.value_len = strlen("not-a-real-value");
	audit_row(&row, host);
	if ((r = store_open(f->state_dir, &h.audit, f->err, sizeof(f->err))) != 0 ||
	    (r = policy_open(f->state_dir, &h.policy, f->err, sizeof(f->err))) != 0 ||
	    (r = vault_open(f->state_dir, f->key, &h.vault, f->err, sizeof(f->err))) != 0 ||
	    (r = tenancy_open(f->state_dir, f->key, &h.tenancy, f->err, sizeof(f->err))) != 0 ||
	    (r = audit_writer_open(f->state_dir, NULL, &w, f->err, sizeof(f->err))) != 0)
		goto out;
	if ((r = audit_submit_wait(w, &row, NULL)) != 0 ||
	    (r = policy_allow(h.policy, f->sbx, host, 0)) < 0 ||
	    (r = vault_secret_set(h.vault, &s, NULL)) != 0 ||
	    (n == 1 && (r = tenancy_tenant_create(h.tenancy, "t2", NULL, NULL)) != 0))
		goto out;
	r = 0;
out:
	/* Closing every connection of the writer is what once made it think
	 * it was the last one (see the top of this file). */
	audit_writer_close(w);
	handles_close(&h);
	return r;
}

static void assert_view(struct fixture *f, int rounds)
{
	struct view v = look(f);

	assert_int_equal(v.verified, (uint64_t)rounds);
	assert_int_equal(v.queried, (size_t)rounds);
	assert_int_equal(v.allowed, (size_t)rounds);
	assert_int_equal(v.secrets, (size_t)rounds);
	assert_int_equal(v.tenant_t2, rounds > 0);
}

/* ---- fixture ------------------------------------------------------------- */

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct tenancy_sandbox_spec spec = { .tenant_id = "default" };
	struct tenancy_sandbox sbx;
	struct tenancy *t = NULL;

	if (!f)
		return -1;
	if (fixture_tmpdir("fresh", f->root) != 0)
		return -1;
	snprintf(f->state_dir, sizeof(f->state_dir), "%s/state", f->root);
	if (fixture_master_key(f->root, f->key_path, sizeof(f->key_path), &f->key,
			       f->err, sizeof(f->err)) != 0 ||
	    tenancy_open(f->state_dir, f->key, &t, f->err, sizeof(f->err)) != 0 ||
	    tenancy_tenant_ensure(t, "default", NULL) < 0 ||
	    tenancy_sandbox_create(t, &spec, &sbx) != 0) {
		fprintf(stderr, "setup: %s %s\n", f->err, t ? tenancy_errmsg(t) : "");
		tenancy_close(t);
		return -1;
	}
	snprintf(f->sbx, sizeof(f->sbx), "%s", sbx.id);
	tenancy_close(t);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	handles_close(&f->rd);
	master_key_free(f->key);
	fixture_rmtree(f->root);
	free(f);
	return 0;
}

/* ---- tests --------------------------------------------------------------- */

static void test_reads_see_commits_of_another_connection(void **state)
{
	struct fixture *f = *state;

	handles_open(f, &f->rd);
	assert_view(f, 0);
	for (int n = 1; n <= 3; n++) {
		assert_int_equal(write_round(f, n), 0);
		assert_view(f, n);
	}
}

/* The broker's case: its workers keep their connections and open more
 * (a new worker's store_open()) while another process writes and exits. */
static void test_reads_see_commits_of_another_process(void **state)
{
	struct fixture *f = *state;
	struct handles late = { 0 };

	handles_open(f, &f->rd);
	assert_view(f, 0);
	for (int n = 1; n <= 3; n++) {
		pid_t pid;
		int status = 0;

		char round[16];

		handles_open(f, &late); /* a new worker opens next to the old ones */
		snprintf(round, sizeof(round), "%d", n);
		/* exec, not just fork: a forked child inherits SQLite's
		 * per-process lock table and would never see itself as the
		 * last connection. */
		if ((pid = fork()) == 0) {
			execl("/proc/self/exe", "test_store_fresh_reads", "--write-round", round,
			      f->root, f->sbx, (char *)NULL);
			_exit(127);
		}
		assert_true(pid > 0);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		assert_view(f, n);
		handles_close(&late);
	}
}

static void test_check_idle_names_what_was_left_open(void **state)
{
	struct fixture *f = *state;
	struct store *st = NULL;
	sqlite3_stmt *s = NULL;

	assert_int_equal(store_open(f->state_dir, &st, f->err, sizeof(f->err)), 0);
	assert_int_equal(store_check_idle(st), 0);

	assert_int_equal(store_begin_read(st), 0);
	assert_int_equal(store_check_idle(st), -EBUSY);
	assert_non_null(strstr(store_errmsg(st), "transaction left open"));
	store_force_idle(st);
	assert_int_equal(store_check_idle(st), 0);

	/* A SELECT stepped to its first row and never reset. */
	assert_int_equal(store_sqlite_stmt(st, STORE_SQLITE_SLOTS_AUDIT +
					   STORE_SQLITE_SLOTS_AUDIT_N - 1,
					   "SELECT name FROM sqlite_schema ORDER BY name", &s), 0);
	assert_int_equal(store_sqlite_step(st, s, "test"), 1);
	assert_int_equal(store_check_idle(st), -EBUSY);
	assert_non_null(strstr(store_errmsg(st), "statement left running: SELECT name FROM"));
	store_force_idle(st);
	assert_int_equal(store_check_idle(st), 0);
	store_close(st);
}

/* A leak is reported by control_api_check_idle() and repaired (and named
 * in the response's detail) by control_api_handle(). */
static void test_control_api_repairs_a_leaked_transaction_and_says_so(void **state)
{
	struct fixture *f = *state;
	struct control_request req = {
		.caller = CONTROL_CALLER_ADMIN, .method = "GET", .path = "/v1/health", .query = "",
	};
	struct control_response resp;
	struct control_api *api = NULL;
	char why[256] = "";

	assert_int_equal(control_api_global_init(), 0);
	assert_int_equal(control_api_open(f->state_dir, f->key, &api, f->err, sizeof(f->err)), 0);
	assert_int_equal(control_api_check_idle(api, false, why, sizeof(why)), 0);

	/* The audit connection (control_api_internal.h) left in a read
	 * transaction, as a buggy handler would. */
	assert_int_equal(store_begin_read(api->store), 0);
	assert_int_equal(control_api_check_idle(api, false, why, sizeof(why)), -EBUSY);
	assert_non_null(strstr(why, "audit store: state.db: transaction left open"));

	assert_int_equal(control_api_handle(api, &req, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_non_null(strstr(resp.detail, "store left busy: audit store:"));
	control_response_free(&resp);
	assert_int_equal(control_api_check_idle(api, false, why, sizeof(why)), 0);

	/* The repaired connection reads new commits again. */
	handles_open(f, &f->rd);
	assert_int_equal(write_round(f, 1), 0);
	{
		int64_t bad = 0;
		uint64_t checked = 0;

		assert_int_equal(audit_verify(api->store, &bad, &checked, NULL), 0);
		assert_int_equal(checked, 1);
	}
	control_api_close(api);
}

/* The writer process of test_reads_see_commits_of_another_process:
 * --write-round N ROOT SANDBOX_ID. */
static int writer_main(char **argv)
{
	struct fixture f;
	int r;

	memset(&f, 0, sizeof(f));
	snprintf(f.root, sizeof(f.root), "%s", argv[3]);
	snprintf(f.sbx, sizeof(f.sbx), "%s", argv[4]);
	snprintf(f.key_path, sizeof(f.key_path), "%s/master.key", f.root);
	snprintf(f.state_dir, sizeof(f.state_dir), "%s/state", f.root);
	if (master_key_load(f.key_path, &f.key, f.err, sizeof(f.err)) != 0) {
		fprintf(stderr, "writer: %s\n", f.err);
		return 1;
	}
	if ((r = write_round(&f, atoi(argv[2]))) != 0)
		fprintf(stderr, "writer: round %s: %d %s\n", argv[2], r, f.err);
	master_key_free(f.key);
	return r == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reads_see_commits_of_another_connection, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reads_see_commits_of_another_process, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_check_idle_names_what_was_left_open, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_control_api_repairs_a_leaked_transaction_and_says_so, setup, teardown),
	};

	if (argc == 5 && strcmp(argv[1], "--write-round") == 0)
		return writer_main(argv);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
