/*
 * audit-query-bench — inserts N audit rows (default 1 000 000) through the
 * store in big transactions, most of them completed as real traffic is (a
 * completion one or two rows later, in the same chain: ~2 N links), then
 * times filtered queries (limit 100, newest first, merged rows) and prints
 * one line per query.  Target (issue 6): < 50 ms each.
 *
 *   audit-query-bench [STATE_DIR] [ROWS]   (STATE_DIR is created; default a
 *   fresh directory under /tmp; a STATE_DIR this bench filled with ROWS rows
 *   before is reused)
 *
 * Then the writer: SUBMITTERS threads (as many as concurrent requests) each
 * submit a row, wait for its commit (audit_submit_wait, what the data
 * path does per request) and submit its completion without waiting, for 3 s through the real writer (group commit,
 * WAL, synchronous=FULL) on a fresh STATE_DIR/writer, and the sustained
 * rows/s is printed for 1, 16 and 200 submitters, with the commit wait's
 * p50/p99/max; the 200 run is repeated with the retention pruner deleting
 * behind the writer (--audit-max-rows 20000 semantics, 50 ms passes), which
 * shows what pruning costs the writer.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "audit_retention.h"
#include "store.h"

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* 2^(b/4) without libm. */
static double pow2q(int b)
{
	static const double q[4] = { 1.0, 1.189207115, 1.414213562, 1.681792831 };
	double v = q[b % 4];

	for (int i = 0; i < b / 4; i++)
		v *= 2;
	return v;
}

static void make_row(struct store_audit_row *r, long i, int64_t t0)
{
	memset(r, 0, sizeof(*r));
	r->time_us = t0 + i * 1000; /* one row per ms */
	snprintf(r->tenant_id, sizeof(r->tenant_id), "tenant%ld", i % 10);
	snprintf(r->sandbox_id, sizeof(r->sandbox_id), "sbx_%024ld", i % 1000);
	snprintf(r->external_user_id, sizeof(r->external_user_id), "user%ld@example.com",
		 i % 5000);
	snprintf(r->external_workspace_id, sizeof(r->external_workspace_id), "ws%ld", i % 500);
	snprintf(r->host, sizeof(r->host), "api%ld.example.com", i % 200);
	r->port = 443;
	r->scheme = STORE_AUDIT_HTTPS;
	snprintf(r->method, sizeof(r->method), "POST");
	snprintf(r->path, sizeof(r->path), "/v1/chat/completions?user=%ld", i);
	r->status = i % 50 == 0 ? 403 : 0; /* allowed: unknown until completed */
	r->action = i % 50 == 0 ? STORE_AUDIT_DENY : STORE_AUDIT_ALLOW;
	r->n_swapped = 1;
	snprintf(r->swapped[0], sizeof(r->swapped[0]), "openai_key");
}

/* Denied rows are never completed, nor every 101st allowed one (still in
 * flight, or its completion lost in a crash); the rest answer 200, every
 * 997th 503. */
static bool completed(long i)
{
	return i % 50 != 0 && i % 101 != 0;
}

static void make_completion(struct store_audit_completion *c, long i, int64_t t0)
{
	memset(c, 0, sizeof(*c));
	c->time_us = t0 + i * 1000 + 900;
	c->status = i % 997 == 0 ? 503 : 200;
	c->bytes_up = 512;
	c->bytes_down = 4096;
	c->duration_us = 120000;
}

/* The chain's length for rows rows: what fill() writes. */
static int64_t links_for(long rows)
{
	int64_t n = rows;

	for (long i = 0; i < rows; i++)
		n += completed(i);
	return n;
}

/* Row i's completion comes after row i + 1 + i % 2 (ids interleave). */
static int fill(struct store *st, long rows, int64_t t0)
{
	uint8_t prev[STORE_AUDIT_HASH_BYTES] = { 0 };
	struct store_audit_completion c;
	struct store_audit_row r;
	int64_t id = 1, *row_id;
	long next_c = 0;
	int rc = 0;

	if (!(row_id = calloc((size_t)rows, sizeof(*row_id))))
		return -ENOMEM;
	for (long i = 0; rc == 0 && (i < rows || next_c < rows);) {
		if ((rc = store_begin_write(st)) != 0)
			break;
		for (long k = 0; rc == 0 && k < 50000 && (i < rows || next_c < rows); k++, i++) {
			if (i < rows) {
				make_row(&r, i, t0);
				r.id = row_id[i] = id++;
				memcpy(r.prev_hash, prev, sizeof(prev));
				audit_row_hash(&r, r.row_hash);
				memcpy(prev, r.row_hash, sizeof(prev));
				rc = store_audit_insert(st, &r);
			}
			for (; rc == 0 && next_c < rows && (next_c + 1 + next_c % 2 <= i || i >= rows);
			     next_c++) {
				if (!completed(next_c))
					continue;
				make_completion(&c, next_c, t0);
				c.request_id = row_id[next_c];
				c.id = id++;
				memcpy(c.prev_hash, prev, sizeof(prev));
				audit_completion_hash(&c, c.row_hash);
				memcpy(prev, c.row_hash, sizeof(prev));
				rc = store_audit_completion_insert(st, &c);
			}
		}
		if (rc != 0)
			store_rollback(st);
		else
			rc = store_commit(st);
	}
	free(row_id);
	return rc;
}

static int timed(struct store *st, const char *label, const struct store_audit_filter *f)
{
	double best = 1e9, worst = 0;
	size_t n = 0;

	for (int run = 0; run < 5; run++) {
		struct store_audit_row *rows = NULL;
		int64_t next = 0;
		double t = now_ms();
		int rc = audit_query(st, f, 100, &rows, &n, &next);

		t = now_ms() - t;
		free(rows);
		if (rc != 0) {
			fprintf(stderr, "%s: %s\n", label, store_errmsg(st));
			return rc;
		}
		best = t < best ? t : best;
		worst = t > worst ? t : worst;
	}
	printf("%-40s rows=%3zu  best %7.3f ms  worst %7.3f ms  %s\n", label, n, best, worst,
	       worst < 50.0 ? "ok" : "SLOW");
	return 0;
}

#define WB_BUCKETS 96 /* latency histogram: bucket b holds [2^(b/4), 2^((b+1)/4)) µs */

struct wbench {
	struct audit_writer *w;
	atomic_bool stop;
	atomic_long rows, failed;
	atomic_long hist[WB_BUCKETS];
	atomic_long max_us;
};

static int wb_bucket(double us)
{
	int b = 0;

	while (b < WB_BUCKETS - 1 && us >= pow2q(b + 1))
		b++;
	return b;
}

/* The latency below which a fraction q of the submits finished (bucket top). */
static double wb_quantile(struct wbench *b, double q)
{
	long total = 0, seen = 0;

	for (int i = 0; i < WB_BUCKETS; i++)
		total += atomic_load(&b->hist[i]);
	for (int i = 0; i < WB_BUCKETS; i++) {
		seen += atomic_load(&b->hist[i]);
		if (total && (double)seen >= q * (double)total)
			return pow2q(i + 1);
	}
	return 0;
}

static void *wbench_main(void *arg)
{
	struct wbench *b = arg;
	struct store_audit_completion c;
	struct store_audit_row r;
	long i = 0;

	while (!atomic_load(&b->stop)) {
		int64_t id = 0;
		double t = now_ms(), us;
		long cur;

		make_row(&r, i, 1700000000000000);
		if (audit_submit_wait(b->w, &r, &id) == 0)
			atomic_fetch_add(&b->rows, 1);
		else
			atomic_fetch_add(&b->failed, 1);
		us = (now_ms() - t) * 1e3;
		make_completion(&c, i++, 1700000000000000);
		c.request_id = id;
		if (id && completed(i - 1) && audit_complete(b->w, &c, NULL, NULL) != 0)
			atomic_fetch_add(&b->failed, 1);
		atomic_fetch_add(&b->hist[wb_bucket(us)], 1);
		cur = atomic_load(&b->max_us);
		while ((long)us > cur && !atomic_compare_exchange_weak(&b->max_us, &cur, (long)us))
			;
	}
	return NULL;
}

/* Sustained durable rows/s with n submitters waiting for their commit;
 * prune: with the retention pruner keeping 20 000 rows. */
static int writer_bench(const char *dir, int n, bool prune)
{
	struct audit_writer_opts o = { .batch_ms = 0 }; /* as the broker */
	struct audit_pruner_opts po = { .policy = { .max_rows = 20000 }, .interval_ms = 50 };
	struct audit_pruner *p = NULL;
	struct audit_writer_stats ws;
	static struct wbench b;
	pthread_t th[200];
	char err[512];
	double t;
	int started = 0, rc;

	memset(&b, 0, sizeof(b));
	if ((rc = audit_writer_open(dir, &o, &b.w, err, sizeof(err))) != 0) {
		fprintf(stderr, "writer: %s\n", err);
		return rc;
	}
	if (prune && (rc = audit_pruner_start(dir, &po, &p, err, sizeof(err))) != 0) {
		fprintf(stderr, "pruner: %s\n", err);
		audit_writer_close(b.w);
		return rc;
	}
	t = now_ms();
	while (started < n && pthread_create(&th[started], NULL, wbench_main, &b) == 0)
		started++;
	for (;;) { /* 3 s, checked each 100 ms */
		struct timespec ts = { 0, 100000000 };

		nanosleep(&ts, NULL);
		if (now_ms() - t >= 3000)
			break;
	}
	atomic_store(&b.stop, true);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	t = now_ms() - t;
	audit_pruner_stop(p);
	audit_writer_stats(b.w, &ws);
	audit_writer_close(b.w);
	printf("writer, %3d submitters waiting for commit%s: %7.0f rows/s durable"
	       " (%.1f rows per commit, %ld failed); wait p50 %.2f ms p99 %.2f ms max %.2f ms\n",
	       started, prune ? ", pruner keeping 20k" : "",
	       (double)atomic_load(&b.rows) / (t / 1e3),
	       ws.batches ? (double)ws.rows / (double)ws.batches : 0.0, atomic_load(&b.failed),
	       wb_quantile(&b, 0.5) / 1e3, wb_quantile(&b, 0.99) / 1e3,
	       (double)atomic_load(&b.max_us) / 1e3);
	return started == n && atomic_load(&b.failed) == 0 ? 0 : -EIO;
}

int main(int argc, char **argv)
{
	char dir[256] = "/tmp/miosa-audit-bench-XXXXXX", err[512];
	long rows = argc > 2 ? strtol(argv[2], NULL, 10) : 1000000;
	int64_t t0 = 1700000000000000, last, have = 0;
	uint8_t head[STORE_AUDIT_HASH_BYTES];
	struct store_audit_filter f;
	struct store *st = NULL;
	double t;
	int rc = 0;

	if (argc > 1 && strcmp(argv[1], "--help") == 0) {
		printf("usage: audit-query-bench [STATE_DIR] [ROWS]\n");
		return 0;
	}
	if (argc > 1)
		snprintf(dir, sizeof(dir), "%s", argv[1]);
	else if (!mkdtemp(dir))
		return 1;
	if (rows < 1000 || store_open(dir, &st, err, sizeof(err)) != 0) {
		fprintf(stderr, "audit-query-bench: %s\n", rows < 1000 ? "ROWS < 1000" : err);
		return 1;
	}
	/* A STATE_DIR this bench filled before with ROWS rows is reused. */
	if (store_audit_last(st, &have, head) == 0 && have == links_for(rows)) {
		printf("reusing %ld rows in %s\n", rows, dir);
	} else {
		t = now_ms();
		if ((rc = fill(st, rows, t0)) != 0) {
			fprintf(stderr, "fill: %s\n", store_errmsg(st));
			goto out;
		}
		t = now_ms() - t;
		printf("inserted %ld rows and %lld completions in %.0f ms (%.0f links/s, 50k rows"
		       " per transaction) in %s\n", rows, (long long)(links_for(rows) - rows), t,
		       (double)links_for(rows) / (t / 1e3), dir);
		if ((rc = store_audit_last(st, &have, head)) != 0)
			goto out;
	}
	last = t0 + (rows - 1) * 1000;

	audit_filter_init(&f);
	rc = rc ?: timed(st, "no filter (newest 100)", &f);
	f.tenant_id = "tenant3";
	rc = rc ?: timed(st, "tenant", &f);
	audit_filter_init(&f);
	f.sandbox_id = "sbx_000000000000000000000042";
	rc = rc ?: timed(st, "sandbox", &f);
	audit_filter_init(&f);
	f.host = "api7.example.com";
	rc = rc ?: timed(st, "host", &f);
	f.status = 503;
	rc = rc ?: timed(st, "host + status 503 (rare)", &f);
	audit_filter_init(&f);
	f.action = STORE_AUDIT_DENY;
	rc = rc ?: timed(st, "action deny", &f);
	f.host = "api7.example.com";
	rc = rc ?: timed(st, "action deny + host", &f);
	audit_filter_init(&f);
	f.status = 503;
	rc = rc ?: timed(st, "status 503 (from completions)", &f);
	f.action = STORE_AUDIT_ALLOW;
	rc = rc ?: timed(st, "status 503 + allow", &f);
	audit_filter_init(&f);
	f.status = 200;
	rc = rc ?: timed(st, "status 200 (common)", &f);
	f.host = "api7.example.com";
	rc = rc ?: timed(st, "status 200 + host", &f);
	audit_filter_init(&f);
	f.status = 403;
	rc = rc ?: timed(st, "status 403 (denied, no completion)", &f);
	audit_filter_init(&f);
	f.status = 0;
	rc = rc ?: timed(st, "status 0 (never completed)", &f);
	f.before_id = have / 2;
	rc = rc ?: timed(st, "status 0, cursor at mid-log", &f);
	audit_filter_init(&f);
	f.status = 504;
	rc = rc ?: timed(st, "status 504 (matches none)", &f);
	audit_filter_init(&f);
	f.external_user_id = "user4242@example.com";
	rc = rc ?: timed(st, "external_user_id", &f);
	f.external_user_id = "user4242@";
	rc = rc ?: timed(st, "external_user_id prefix (matches none)", &f);
	audit_filter_init(&f);
	f.external_workspace_id = "ws17";
	rc = rc ?: timed(st, "external_workspace_id", &f);
	f.action = STORE_AUDIT_DENY;
	rc = rc ?: timed(st, "external_workspace_id + deny", &f);
	audit_filter_init(&f);
	f.since_us = last - 5 * 60 * 1000000LL;
	rc = rc ?: timed(st, "since 5m", &f);
	f.host = "api9.example.com";
	rc = rc ?: timed(st, "since 5m + host", &f);
	f.status = 503;
	rc = rc ?: timed(st, "since 5m + host + status 503", &f);
	audit_filter_init(&f);
	f.since_us = last - 5 * 60 * 1000000LL;
	f.before_id = have - 2000; /* ~1000 rows back */
	rc = rc ?: timed(st, "since 5m, cursor 1000 back", &f);
	audit_filter_init(&f);
	f.since_us = last - 24 * 3600 * 1000000LL;
	f.until_us = last - 23 * 3600 * 1000000LL;
	f.sandbox_id = "sbx_000000000000000000000042";
	rc = rc ?: timed(st, "window 1h a day ago + sandbox", &f);
	audit_filter_init(&f);
	f.since_us = last + 1;
	rc = rc ?: timed(st, "since after newest (empty)", &f);
	audit_filter_init(&f);
	f.until_us = t0;
	rc = rc ?: timed(st, "until before oldest (empty)", &f);
	audit_filter_init(&f);
	f.until_us = t0 + 60 * 1000000LL;
	rc = rc ?: timed(st, "until oldest+1m (oldest 6%)", &f);
	audit_filter_init(&f);
	f.since_us = t0 + (last - t0) / 2;
	f.until_us = f.since_us + 1000000LL;
	rc = rc ?: timed(st, "window 1s at mid-log", &f);
	f.action = STORE_AUDIT_DENY;
	rc = rc ?: timed(st, "window 1s at mid-log + deny", &f);
	audit_filter_init(&f);
	f.since_us = t0 + (last - t0) / 4;
	f.until_us = t0 + (last - t0) / 2;
	rc = rc ?: timed(st, "window 25% of the log, ending mid-log", &f);
	f.host = "api7.example.com";
	rc = rc ?: timed(st, "window 25% ending mid-log + host", &f);
	audit_filter_init(&f);
	f.sandbox_id = "sbx_000000000000000000000042";
	f.before_id = have / 2;
	rc = rc ?: timed(st, "sandbox, cursor at mid-log", &f);
	audit_filter_init(&f);
	f.before_id = have / 2;
	rc = rc ?: timed(st, "cursor at mid-log", &f);
	if (rc == 0) {
		char wdir[300];
		static const int submitters[] = { 1, 16, 200 };

		for (size_t i = 0; rc == 0 && i < sizeof(submitters) / sizeof(submitters[0]); i++) {
			snprintf(wdir, sizeof(wdir), "%s/writer%d", dir, submitters[i]);
			rc = writer_bench(wdir, submitters[i], false);
		}
		snprintf(wdir, sizeof(wdir), "%s/writer200-pruned", dir);
		rc = rc ?: writer_bench(wdir, 200, true);
	}
out:
	store_close(st);
	return rc == 0 ? 0 : 1;
}
