/*
 * Unit tests of policy_tally.h (observed hosts counted in memory, written
 * in batches) and of policy_generation() (what the data path's cache of
 * policy snapshots keys on): a reader that flushes sees every earlier
 * record, counts and seen times merge, close saves what is left, a deleted
 * sandbox does not block the others, a full table pushes back, and every
 * policy write moves the generation before it returns.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "fixture.h"
#include "policy.h"
#include "policy_tally.h"
#include "store.h"

#define SBX_A "sbx_aaaaaaaaaaaaaaaaaaaaaaaa"
#define SBX_B "sbx_bbbbbbbbbbbbbbbbbbbbbbbb"
#define SBX_GONE "sbx_cccccccccccccccccccccccc"
#define T0 1700000000000000LL
/* Long enough that the tally's thread never flushes during a test unless
 * the test asks: what a test reads is what its own flush (or close) wrote. */
#define FLUSH_MS_IDLE 60000u

struct fixture {
	char root[64];
	char state_dir[PATH_MAX];
	struct policy *p;
	struct policy_tally *t;
	char err[512];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	static const char *const sandboxes[] = { SBX_A, SBX_B, SBX_GONE, NULL };

	if (!f)
		return -1;
	if (fixture_tmpdir("tally", f->root) != 0)
		return -1;
	snprintf(f->state_dir, sizeof(f->state_dir), "%s/state", f->root);
	if (fixture_store_seed(f->state_dir, "t1", "Tenant One", T0, sandboxes, f->err,
			       sizeof(f->err)) != 0) {
		fprintf(stderr, "setup: %s\n", f->err);
		return -1;
	}
	if (policy_open(f->state_dir, &f->p, f->err, sizeof(f->err)) != 0 ||
	    policy_tally_open(f->state_dir, FLUSH_MS_IDLE, &f->t, f->err, sizeof(f->err)) != 0) {
		fprintf(stderr, "setup: %s\n", f->err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	policy_tally_close(f->t);
	policy_close(f->p);
	fixture_rmtree(f->root);
	free(f);
	return 0;
}

/* The stored observed row for (host, port), or count 0 if none. */
static struct policy_hit observed(struct fixture *f, const char *sbx, const char *host,
				  uint16_t port)
{
	struct policy_status st;
	struct policy_hit h = { .count = 0 };

	assert_int_equal(policy_status(f->p, sbx, &st), 0);
	for (size_t i = 0; i < st.n_observed; i++)
		if (st.observed[i].port == port && strcmp(st.observed[i].host, host) == 0)
			h = st.observed[i];
	policy_status_clear(&st);
	return h;
}

static size_t n_observed(struct fixture *f, const char *sbx)
{
	struct policy_status st;
	size_t n;

	assert_int_equal(policy_status(f->p, sbx, &st), 0);
	n = st.n_observed;
	policy_status_clear(&st);
	return n;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_record_stays_in_memory_until_flush(void **state)
{
	struct fixture *f = *state;
	struct policy_hit h;

	assert_int_equal(policy_tally_record(f->t, SBX_A, "api.example.com", 443, T0), 0);
	assert_int_equal(n_observed(f, SBX_A), 0);
	assert_int_equal(policy_tally_flush(f->t), 0);
	h = observed(f, SBX_A, "api.example.com", 443);
	assert_int_equal(h.count, 1);
	assert_int_equal(h.first_seen_us, T0);
	assert_int_equal(h.last_seen_us, T0);
}

static void test_flush_merges_counts_and_seen_times(void **state)
{
	struct fixture *f = *state;
	struct policy_hit h;

	/* Out of order on purpose: first/last are min/max, not arrival order. */
	assert_int_equal(policy_tally_record(f->t, SBX_A, "API.Example.COM.", 443, T0 + 50), 0);
	assert_int_equal(policy_tally_record(f->t, SBX_A, "api.example.com", 443, T0 + 10), 0);
	assert_int_equal(policy_tally_record(f->t, SBX_A, "api.example.com", 443, T0 + 90), 0);
	assert_int_equal(policy_tally_record(f->t, SBX_A, "api.example.com", 80, T0 + 20), 0);
	assert_int_equal(policy_tally_record(f->t, SBX_B, "api.example.com", 443, T0 + 30), 0);
	assert_int_equal(policy_tally_flush(f->t), 0);
	h = observed(f, SBX_A, "api.example.com", 443);
	assert_int_equal(h.count, 3);
	assert_int_equal(h.first_seen_us, T0 + 10);
	assert_int_equal(h.last_seen_us, T0 + 90);
	assert_int_equal(observed(f, SBX_A, "api.example.com", 80).count, 1);
	assert_int_equal(observed(f, SBX_B, "api.example.com", 443).count, 1);
	assert_int_equal(n_observed(f, SBX_A), 2);

	/* A second batch adds to the stored row and widens it. */
	assert_int_equal(policy_tally_record(f->t, SBX_A, "api.example.com", 443, T0 + 5), 0);
	assert_int_equal(policy_tally_record(f->t, SBX_A, "api.example.com", 443, T0 + 500), 0);
	assert_int_equal(policy_tally_flush(f->t), 0);
	h = observed(f, SBX_A, "api.example.com", 443);
	assert_int_equal(h.count, 5);
	assert_int_equal(h.first_seen_us, T0 + 5);
	assert_int_equal(h.last_seen_us, T0 + 500);
}

static void test_direct_and_batched_records_add_up(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(policy_record_observed(f->p, SBX_A, "a.example", 443, T0), 0);
	assert_int_equal(policy_tally_record(f->t, SBX_A, "a.example", 443, T0 + 1), 0);
	assert_int_equal(policy_tally_flush(f->t), 0);
	assert_int_equal(observed(f, SBX_A, "a.example", 443).count, 2);
}

static void test_close_saves_what_is_left(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < 7; i++)
		assert_int_equal(policy_tally_record(f->t, SBX_A, "left.example", 443, T0 + i), 0);
	policy_tally_close(f->t);
	f->t = NULL;
	assert_int_equal(observed(f, SBX_A, "left.example", 443).count, 7);
}

static void test_lockdown_after_flush_allows_every_recorded_host(void **state)
{
	struct fixture *f = *state;
	struct policy_snapshot *snap = NULL;
	char rule[POLICY_RULE_MAX];

	assert_int_equal(policy_tally_record(f->t, SBX_A, "one.example", 443, T0), 0);
	assert_int_equal(policy_tally_record(f->t, SBX_A, "two.example", 8443, T0), 0);
	/* What the control API does before lockdown (control_api_network.c). */
	assert_int_equal(policy_tally_flush(f->t), 0);
	assert_int_equal(policy_lockdown(f->p, SBX_A), 2);
	assert_int_equal(policy_snapshot_load(f->p, SBX_A, &snap), 0);
	assert_int_equal(policy_decide(snap, "one.example", 11, 443, rule, sizeof(rule)),
			 POLICY_ALLOW);
	assert_int_equal(policy_decide(snap, "two.example", 11, 8443, rule, sizeof(rule)),
			 POLICY_ALLOW);
	assert_int_equal(policy_decide(snap, "three.example", 13, 443, rule, sizeof(rule)),
			 POLICY_DENY);
	policy_snapshot_free(snap);
}

static void test_deleted_sandbox_does_not_block_the_others(void **state)
{
	struct fixture *f = *state;
	struct store *st = NULL;

	assert_int_equal(policy_tally_record(f->t, SBX_GONE, "gone.example", 443, T0), 0);
	assert_int_equal(policy_tally_record(f->t, SBX_A, "kept.example", 443, T0), 0);
	assert_int_equal(store_open(f->state_dir, &st, f->err, sizeof(f->err)), 0);
	assert_int_equal(store_sandbox_delete(st, SBX_GONE), 0);
	store_close(st);
	assert_int_equal(policy_tally_flush(f->t), 0);
	assert_int_equal(observed(f, SBX_A, "kept.example", 443).count, 1);
	/* Dropped, not retried forever: the next flush has nothing left. */
	assert_int_equal(policy_tally_flush(f->t), 0);
}

static void test_malformed_records_are_refused(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(policy_tally_record(f->t, SBX_A, "bad host", 443, T0), -EINVAL);
	assert_int_equal(policy_tally_record(f->t, SBX_A, "ok.example", 0, T0), -EINVAL);
	assert_int_equal(policy_tally_record(f->t, "", "ok.example", 443, T0), -EINVAL);
	assert_int_equal(policy_tally_record(f->t, SBX_A, NULL, 443, T0), -EINVAL);
	assert_int_equal(policy_tally_flush(f->t), 0);
	assert_int_equal(n_observed(f, SBX_A), 0);
}

static void test_full_table_pushes_back_and_loses_nothing(void **state)
{
	struct fixture *f = *state;
	size_t in_memory = 0, direct = 0;
	char host[64];

	/* Past the table's capacity the caller writes the hit itself. */
	for (unsigned i = 0; i < POLICY_TALLY_SLOTS; i++) {
		int r;

		snprintf(host, sizeof(host), "h%u.example", i);
		r = policy_tally_record(f->t, SBX_A, host, 443, T0 + i);
		if (r == -ENOSPC) {
			assert_int_equal(policy_record_observed(f->p, SBX_A, host, 443, T0 + i), 0);
			direct++;
		} else {
			assert_int_equal(r, 0);
			in_memory++;
		}
	}
	assert_true(direct > 0);
	assert_true(in_memory >= POLICY_TALLY_SLOTS / 2);
	assert_int_equal(policy_tally_flush(f->t), 0);
	assert_int_equal(n_observed(f, SBX_A), POLICY_TALLY_SLOTS);
	/* Room again after the flush. */
	assert_int_equal(policy_tally_record(f->t, SBX_A, "h0.example", 443, T0), 0);
}

/* ---- concurrency: flush sees every record made before it ------------------- */

#define RACE_THREADS 3
#define RACE_ROUNDS 200

struct race {
	struct fixture *f;
	int idx;
	int failures;
};

/* Each round: record, flush, read back through a private handle; the count
 * must include this thread's own record even while the other threads (and
 * the tally's thread, on a short interval) flush concurrently. */
static void *race_main(void *arg)
{
	struct race *rc = arg;
	struct policy *p = NULL;
	char err[256];
	char host[64];

	snprintf(host, sizeof(host), "thread%d.example", rc->idx);
	if (policy_open(rc->f->state_dir, &p, err, sizeof(err)) != 0) {
		rc->failures++;
		return NULL;
	}
	for (int i = 1; i <= RACE_ROUNDS; i++) {
		struct policy_status st;
		int64_t count = 0;

		if (policy_tally_record(rc->f->t, SBX_A, host, 443, T0 + i) != 0 ||
		    policy_tally_flush(rc->f->t) != 0 || policy_status(p, SBX_A, &st) != 0) {
			rc->failures++;
			continue;
		}
		for (size_t k = 0; k < st.n_observed; k++)
			if (strcmp(st.observed[k].host, host) == 0)
				count = st.observed[k].count;
		policy_status_clear(&st);
		if (count != i)
			rc->failures++;
	}
	policy_close(p);
	return NULL;
}

static void test_flush_includes_records_taken_by_a_concurrent_flush(void **state)
{
	struct fixture *f = *state;
	struct race rc[RACE_THREADS];
	pthread_t th[RACE_THREADS];

	/* The tally's own thread flushes every millisecond meanwhile. */
	policy_tally_close(f->t);
	assert_int_equal(policy_tally_open(f->state_dir, 1, &f->t, f->err, sizeof(f->err)), 0);
	for (int i = 0; i < RACE_THREADS; i++) {
		rc[i].f = f;
		rc[i].idx = i;
		rc[i].failures = 0;
		assert_int_equal(pthread_create(&th[i], NULL, race_main, &rc[i]), 0);
	}
	for (int i = 0; i < RACE_THREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(rc[i].failures, 0);
	}
}

/* ---- the generation the data path's cache keys on -------------------------- */

static void test_every_policy_write_moves_the_generation(void **state)
{
	struct fixture *f = *state;
	struct policy_template t = { .mode = POLICY_OBSERVE };
	uint64_t g = policy_generation();

	assert_int_equal(policy_allow(f->p, SBX_A, "a.example", 0), 1);
	assert_true(policy_generation() > g);
	g = policy_generation();
	assert_true(policy_deny(f->p, SBX_A, "a.example", 0) >= 1);
	assert_true(policy_generation() > g);
	g = policy_generation();
	assert_true(policy_lockdown(f->p, SBX_A) >= 0);
	assert_true(policy_generation() > g);
	g = policy_generation();
	assert_int_equal(policy_observe(f->p, SBX_A), 0);
	assert_true(policy_generation() > g);
	g = policy_generation();
	assert_int_equal(policy_import(f->p, SBX_A, &t), 0);
	assert_true(policy_generation() > g);
	g = policy_generation();
	policy_invalidate();
	assert_true(policy_generation() > g);
	/* Counting hosts is not a policy change: cached snapshots stay. */
	g = policy_generation();
	assert_int_equal(policy_record_observed(f->p, SBX_A, "b.example", 443, T0), 0);
	assert_int_equal(policy_tally_record(f->t, SBX_A, "b.example", 443, T0), 0);
	assert_int_equal(policy_tally_flush(f->t), 0);
	assert_true(policy_generation() == g);
}

static void test_batch_rejects_unnormalized_hosts(void **state)
{
	struct fixture *f = *state;
	struct policy_hit h = { .port = 443, .first_seen_us = T0, .last_seen_us = T0, .count = 1 };

	snprintf(h.host, sizeof(h.host), "UPPER.example");
	assert_int_equal(policy_record_observed_batch(f->p, SBX_A, &h, 1), -EINVAL);
	snprintf(h.host, sizeof(h.host), "upper.example");
	h.first_seen_us = T0 + 1;
	assert_int_equal(policy_record_observed_batch(f->p, SBX_A, &h, 1), -EINVAL);
	h.first_seen_us = T0;
	h.count = 0;
	assert_int_equal(policy_record_observed_batch(f->p, SBX_A, &h, 1), -EINVAL);
	h.count = 4;
	assert_int_equal(policy_record_observed_batch(f->p, SBX_A, &h, 1), 0);
	assert_int_equal(observed(f, SBX_A, "upper.example", 443).count, 4);
	assert_int_equal(policy_record_observed_batch(f->p, SBX_GONE "x", &h, 1), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_record_stays_in_memory_until_flush),
		T(test_flush_merges_counts_and_seen_times),
		T(test_direct_and_batched_records_add_up),
		T(test_close_saves_what_is_left),
		T(test_lockdown_after_flush_allows_every_recorded_host),
		T(test_deleted_sandbox_does_not_block_the_others),
		T(test_malformed_records_are_refused),
		T(test_full_table_pushes_back_and_loses_nothing),
		T(test_flush_includes_records_taken_by_a_concurrent_flush),
		T(test_every_policy_write_moves_the_generation),
		T(test_batch_rejects_unnormalized_hosts),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
