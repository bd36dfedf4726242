/* Unit tests for audit_retention.h: pruning by count and age, the anchor,
 * verify after pruning, a tampered anchor, the pruner thread; completions
 * pruned as links of the same chain (with their rows, or left behind a kept
 * row), an anchor that is a completion. */
#include <errno.h>
#include <pthread.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"
#include "audit.h"
#include "audit_retention.h"
#include "store.h"

#define T0 1700000000000000LL          /* first row's time_us */
#define DAY (86400LL * 1000000LL)

struct fx {
	char root[64];
	char db[PATH_MAX];
	struct audit_writer *w;
	struct store *st;
	char err[512];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f || fixture_tmpdir("audit-ret", f->root) != 0)
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/state.db", f->root);
	if (audit_writer_open(f->root, NULL, &f->w, f->err, sizeof(f->err)) != 0 ||
	    store_open(f->root, &f->st, f->err, sizeof(f->err)) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	audit_writer_close(f->w);
	store_close(f->st);
	fixture_rmtree(f->root);
	free(f);
	return 0;
}

/* Row i is i days after T0 unless time_us is given. */
static int64_t submit(struct fx *f, int i, int64_t time_us)
{
	struct store_audit_row r;
	int64_t id = 0;

	memset(&r, 0, sizeof(r));
	r.time_us = time_us ? time_us : T0 + i * DAY;
	strcpy(r.tenant_id, "acme");
	strcpy(r.sandbox_id, "sbx_1");
	strcpy(r.host, "api.openai.com");
	r.port = 443;
	r.scheme = STORE_AUDIT_HTTPS;
	strcpy(r.method, "GET");
	snprintf(r.path, sizeof(r.path), "/v1/n/%d", i);
	r.status = 200;
	r.action = STORE_AUDIT_ALLOW;
	assert_int_equal(audit_submit_wait(f->w, &r, &id), 0);
	return id;
}

static void submit_n(struct fx *f, int n)
{
	for (int i = 0; i < n; i++)
		assert_int_equal(submit(f, i, 0), i + 1);
}

struct ack_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int status;
	int64_t id;
};

static void on_ack(void *userdata, int status, int64_t id)
{
	struct ack_wait *a = userdata;

	pthread_mutex_lock(&a->mu);
	a->done = true;
	a->status = status;
	a->id = id;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

/* Complete request_id (i days after T0 unless time_us is given) through the
 * writer and wait for the commit: the completion's id. */
static int64_t complete(struct fx *f, int64_t request_id, int i, int64_t time_us)
{
	struct ack_wait a = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, 0 };
	struct store_audit_completion c;
	struct timespec until;

	memset(&c, 0, sizeof(c));
	c.request_id = request_id;
	c.time_us = time_us ? time_us : T0 + i * DAY;
	c.status = 201;
	c.bytes_down = 7;
	assert_int_equal(audit_complete(f->w, &c, on_ack, &a), 0);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&a.mu);
	while (!a.done && pthread_cond_timedwait(&a.cv, &a.mu, &until) == 0)
		;
	pthread_mutex_unlock(&a.mu);
	assert_true(a.done);
	assert_int_equal(a.status, 0);
	return a.id;
}

static int64_t count_rows(struct fx *f)
{
	struct store_audit_filter flt;
	struct store_audit_row *rows = NULL;
	size_t n = 0;

	audit_filter_init(&flt);
	assert_int_equal(store_audit_query(f->st, &flt, 100000, &rows, &n), 0);
	free(rows);
	return (int64_t)n;
}

static void db_exec(struct fx *f, const char *sql)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static void assert_intact(struct fx *f, uint64_t rows, uint64_t pruned)
{
	struct audit_verify_result v;

	assert_int_equal(audit_verify_chain(f->st, &v), 0);
	assert_int_equal(v.bad_id, 0);
	assert_int_equal(v.checked, rows);
	assert_int_equal(v.pruned, pruned);
}

static void test_prune_max_rows_keeps_newest_and_anchor(void **state)
{
	struct fx *f = *state;
	struct audit_retention keep4 = { .max_rows = 4 };
	uint8_t anchor_hash[STORE_AUDIT_HASH_BYTES], h[STORE_AUDIT_HASH_BYTES];
	int64_t anchor = 0, id6 = 0;
	struct store_audit_row *rows = NULL;
	size_t n = 0;

	submit_n(f, 10);
	/* Row 6's hash, to compare with the anchor. */
	assert_int_equal(store_audit_list_after(f->st, 5, 1, &rows, &n), 0);
	assert_int_equal(n, 1);
	id6 = rows[0].id;
	memcpy(h, rows[0].row_hash, sizeof(h));
	free(rows);
	assert_int_equal(store_audit_anchor(f->st, &anchor, anchor_hash), -ENOENT);

	assert_int_equal(audit_prune(f->st, &keep4, T0 + 100 * DAY, 1000), 6);
	assert_int_equal(count_rows(f), 4);
	assert_int_equal(store_audit_anchor(f->st, &anchor, anchor_hash), 0);
	assert_int_equal(anchor, id6);
	assert_memory_equal(anchor_hash, h, sizeof(h));
	assert_intact(f, 4, 6);
	/* Nothing more to do, and the chain goes on after the kept rows. */
	assert_int_equal(audit_prune(f->st, &keep4, T0 + 100 * DAY, 1000), 0);
	assert_int_equal(submit(f, 10, 0), 11);
	assert_intact(f, 5, 6);
}

static void test_prune_is_bounded_per_transaction(void **state)
{
	struct fx *f = *state;
	struct audit_retention keep1 = { .max_rows = 1 };

	submit_n(f, 10);
	assert_int_equal(audit_prune(f->st, &keep1, T0, 3), 3);
	assert_int_equal(count_rows(f), 7);
	assert_intact(f, 7, 3);
	assert_int_equal(audit_prune(f->st, &keep1, T0, 3), 3);
	assert_int_equal(audit_prune(f->st, &keep1, T0, 3), 3);
	assert_int_equal(audit_prune(f->st, &keep1, T0, 3), 0);
	assert_intact(f, 1, 9);
}

static void test_prune_by_age_stops_at_first_young_row(void **state)
{
	struct fx *f = *state;
	struct audit_retention days5 = { .days = 5 };
	int64_t now = T0 + 10 * DAY;

	/* Rows 1-4 are 10..7 days old, row 5 is fresh (a clock step), row 6
	 * is old again: only the prefix 1-4 goes. */
	for (int i = 0; i < 4; i++)
		submit(f, i, 0);
	submit(f, 4, now - DAY);
	submit(f, 5, T0);
	assert_int_equal(audit_prune(f->st, &days5, now, 1000), 4);
	assert_int_equal(count_rows(f), 2);
	assert_intact(f, 2, 4);
	/* A policy that keeps everything, or now before the cutoff, prunes nothing. */
	struct audit_retention forever = { 0 };
	assert_int_equal(audit_prune(f->st, &forever, now, 1000), 0);
	assert_int_equal(audit_prune(f->st, &days5, 5 * DAY, 1000), 0);
	assert_int_equal(audit_prune(f->st, &days5, now, 0), -EINVAL);
}

static void test_prune_everything_then_chain_continues_from_anchor(void **state)
{
	struct fx *f = *state;
	struct audit_retention days1 = { .days = 1 };
	struct audit_verify_result v;
	uint8_t anchor_hash[STORE_AUDIT_HASH_BYTES];
	int64_t anchor = 0;

	submit_n(f, 5);
	assert_int_equal(audit_prune(f->st, &days1, T0 + 100 * DAY, 1000), 5);
	assert_int_equal(count_rows(f), 0);
	assert_int_equal(audit_verify_chain(f->st, &v), 0);
	assert_int_equal(v.checked, 0);
	assert_int_equal(v.pruned, 5);
	assert_int_equal(store_audit_anchor(f->st, &anchor, anchor_hash), 0);
	assert_memory_equal(v.head, anchor_hash, sizeof(anchor_hash));
	/* The writer links the next row to the anchor, not to a fresh chain. */
	assert_int_equal(submit(f, 200, 0), 6);
	assert_intact(f, 1, 5);
}

static void test_tampered_anchor_is_reported(void **state)
{
	struct fx *f = *state;
	struct audit_retention keep3 = { .max_rows = 3 };
	int64_t bad = 0;

	submit_n(f, 8);
	assert_int_equal(audit_prune(f->st, &keep3, T0, 1000), 5);
	assert_intact(f, 3, 5);

	/* A changed anchor hash: the first remaining row no longer links. */
	db_exec(f, "UPDATE audit_anchor SET row_hash = zeroblob(32)");
	assert_int_equal(audit_verify(f->st, &bad, NULL, NULL), -EBADMSG);
	assert_int_equal(bad, 6);
}

static void test_anchor_id_moved_or_rows_deleted_is_reported(void **state)
{
	struct fx *f = *state;
	struct audit_retention keep3 = { .max_rows = 3 };
	struct audit_verify_result v;

	submit_n(f, 8);
	assert_int_equal(audit_prune(f->st, &keep3, T0, 1000), 5);
	/* Hiding pruning (anchor id moved back) breaks the id sequence. */
	db_exec(f, "UPDATE audit_anchor SET id = 2");
	assert_int_equal(audit_verify_chain(f->st, &v), -EBADMSG);
	assert_int_equal(v.bad_id, 6);
	db_exec(f, "UPDATE audit_anchor SET id = 5");
	assert_intact(f, 3, 5);
	/* Deleting the oldest remaining row outside retention is caught. */
	db_exec(f, "DELETE FROM audit_rows WHERE id = 6");
	assert_int_equal(audit_verify_chain(f->st, &v), -EBADMSG);
	assert_int_equal(v.bad_id, 7);
}

static void test_pruner_thread_enforces_max_rows(void **state)
{
	struct fx *f = *state;
	struct audit_pruner_opts o = {
		.policy = { .max_rows = 5 }, .interval_ms = 20, .batch = 4,
	};
	struct audit_pruner *p = NULL;
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	int64_t deadline = (int64_t)time(NULL) + 20;

	submit_n(f, 30);
	assert_int_equal(audit_pruner_start(f->root, &o, &p, f->err, sizeof(f->err)), 0);
	/* Wait for the condition, with a deadline. */
	while (count_rows(f) > 5 && (int64_t)time(NULL) < deadline)
		nanosleep(&tick, NULL);
	assert_int_equal(count_rows(f), 5);
	/* Rows keep coming while it runs: the chain stays intact. */
	for (int i = 30; i < 40; i++)
		submit(f, i, 0);
	while (count_rows(f) > 5 && (int64_t)time(NULL) < deadline)
		nanosleep(&tick, NULL);
	audit_pruner_stop(p);
	assert_int_equal(count_rows(f), 5);
	assert_intact(f, 5, 35);

	/* A policy that keeps everything starts nothing. */
	o.policy.max_rows = 0;
	assert_int_equal(audit_pruner_start(f->root, &o, &p, f->err, sizeof(f->err)), -EINVAL);
}

static void test_prune_takes_completions_in_id_order_with_their_rows(void **state)
{
	struct fx *f = *state;
	struct audit_retention keep2 = { .max_rows = 2 };
	struct store_audit_filter flt;
	struct store_audit_row *rows = NULL;
	size_t n = 0;

	/* R1 R2 C(R1) R3 C(R3) C(R2) R4 C(R4) R5: ids 1..9. */
	assert_int_equal(submit(f, 0, 0), 1);
	assert_int_equal(submit(f, 1, 0), 2);
	assert_int_equal(complete(f, 1, 0, 0), 3);
	assert_int_equal(submit(f, 2, 0), 4);
	assert_int_equal(complete(f, 4, 2, 0), 5);
	assert_int_equal(complete(f, 2, 1, 0), 6);
	assert_int_equal(submit(f, 3, 0), 7);
	assert_int_equal(complete(f, 7, 3, 0), 8);
	assert_int_equal(submit(f, 4, 0), 9);
	assert_intact(f, 9, 0);
	/* max_rows counts rows (requests): R1-R3 go, and with them every
	 * completion before R4 (theirs); R4 stops the prefix. */
	assert_int_equal(audit_prune(f->st, &keep2, T0 + 100 * DAY, 1000), 6);
	assert_int_equal(count_rows(f), 2);
	assert_intact(f, 3, 6);
	audit_filter_init(&flt);
	assert_int_equal(store_audit_query(f->st, &flt, 10, &rows, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(rows[0].id, 9);
	assert_int_equal(rows[0].completion_id, 0);
	assert_int_equal(rows[1].id, 7);
	assert_int_equal(rows[1].completion_id, 8);
	assert_int_equal(rows[1].status, 201);
	free(rows);
	assert_int_equal(audit_prune(f->st, &keep2, T0 + 100 * DAY, 1000), 0);
}

static void test_completion_of_a_pruned_row_behind_a_kept_row_stays_until_its_turn(void **state)
{
	struct fx *f = *state;
	struct audit_retention keep1 = { .max_rows = 1 };
	struct store_audit_filter flt;
	struct store_audit_row *rows = NULL;
	size_t n = 0;

	/* R1 R2 C(R2) C(R1): R1 is a long request completed last. */
	assert_int_equal(submit(f, 0, 0), 1);
	assert_int_equal(submit(f, 1, 0), 2);
	assert_int_equal(complete(f, 2, 1, 0), 3);
	assert_int_equal(complete(f, 1, 2, 0), 4);
	assert_int_equal(audit_prune(f->st, &keep1, T0, 1000), 1);
	/* C(R1) remains without its row: verified as a link, never shown. */
	assert_intact(f, 3, 1);
	audit_filter_init(&flt);
	assert_int_equal(store_audit_query(f->st, &flt, 10, &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].id, 2);
	assert_int_equal(rows[0].completion_id, 3);
	free(rows);
	flt.status = 201;
	assert_int_equal(store_audit_query(f->st, &flt, 10, &rows, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].id, 2);
	free(rows);
	/* A new row: R2, C(R2) and the left-behind C(R1) go together. */
	assert_int_equal(submit(f, 3, 0), 5);
	assert_int_equal(audit_prune(f->st, &keep1, T0, 1000), 3);
	assert_intact(f, 1, 4);
	assert_int_equal(count_rows(f), 1);
}

static void test_prune_everything_anchor_is_a_completion_and_both_kinds_chain_on(void **state)
{
	struct fx *f = *state;
	struct audit_retention days1 = { .days = 1 };
	uint8_t anchor_hash[STORE_AUDIT_HASH_BYTES];
	struct store_audit_completion *cs = NULL;
	int64_t anchor = 0;
	size_t n = 0;

	assert_int_equal(submit(f, 0, 0), 1);
	assert_int_equal(submit(f, 1, 0), 2);
	assert_int_equal(complete(f, 2, 1, 0), 3);
	assert_int_equal(complete(f, 1, 2, 0), 4);
	assert_int_equal(audit_prune(f->st, &days1, T0 + 100 * DAY, 1000), 4);
	assert_int_equal(store_audit_anchor(f->st, &anchor, anchor_hash), 0);
	assert_int_equal(anchor, 4);
	assert_int_equal(store_audit_completions_after(f->st, 0, 10, &cs, &n), 0);
	assert_int_equal(n, 0);
	free(cs);
	assert_intact(f, 0, 4);
	/* The writer chains a row and then a completion onto the anchor. */
	assert_int_equal(submit(f, 200, 0), 5);
	assert_int_equal(complete(f, 5, 200, 0), 6);
	assert_intact(f, 2, 4);
}

static void test_completion_goes_with_its_old_row_and_deleting_one_is_caught(void **state)
{
	struct fx *f = *state;
	struct audit_retention days5 = { .days = 5 };
	struct audit_verify_result v;
	int64_t now = T0 + 10 * DAY;

	/* R1 (old) C(R1) (fresh: a long request) R2 (fresh) R3 (old) C(R3)
	 * R4: the request's age is its row's, so C(R1) goes with R1; the
	 * fresh R2 holds back the rest. */
	assert_int_equal(submit(f, 0, 0), 1);
	assert_int_equal(complete(f, 1, 0, now - DAY), 2);
	assert_int_equal(submit(f, 1, now - DAY), 3);
	assert_int_equal(submit(f, 2, 0), 4);
	assert_int_equal(complete(f, 4, 2, 0), 5);
	assert_int_equal(submit(f, 3, 0), 6);
	assert_int_equal(audit_prune(f->st, &days5, now, 1000), 2);
	assert_intact(f, 4, 2);
	/* Ids are consecutive over both tables: a completion deleted outside
	 * retention is reported as the link after it. */
	db_exec(f, "DELETE FROM audit_completions WHERE id = 5");
	assert_int_equal(audit_verify_chain(f->st, &v), -EBADMSG);
	assert_int_equal(v.bad_id, 6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_prune_max_rows_keeps_newest_and_anchor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prune_is_bounded_per_transaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prune_by_age_stops_at_first_young_row, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prune_everything_then_chain_continues_from_anchor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tampered_anchor_is_reported, setup, teardown),
		cmocka_unit_test_setup_teardown(test_anchor_id_moved_or_rows_deleted_is_reported, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pruner_thread_enforces_max_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prune_takes_completions_in_id_order_with_their_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_completion_of_a_pruned_row_behind_a_kept_row_stays_until_its_turn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prune_everything_anchor_is_a_completion_and_both_kinds_chain_on, setup, teardown),
		cmocka_unit_test_setup_teardown(test_completion_goes_with_its_old_row_and_deleting_one_is_caught, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
