/*
 * Unit tests for the plans of store_audit_query() (store_sqlite_audit.c): a
 * page must not depend on the plan the filter chose (time window counted
 * small or large, id walk on the narrow index, an equality index forced by
 * its count, the merged status read through both status indexes).  80 000
 * rows, whose times are not monotonic in id, most of them completed by a
 * completion that comes one to four rows later (so ids of rows and
 * completions interleave), are queried with filter combinations on both
 * sides of each threshold, three pages deep through the cursor, and every
 * page is compared with a brute-force scan of the merged rows that uses
 * audit_filter_match().
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"
#include "audit.h"
#include "store.h"

#define ROWS 80000             /* above the small-window threshold (65 536) */
#define T0 1700000000000000LL
#define PAGE 100
#define PAGES 3

struct fx {
	char root[64];
	struct store *st;
	struct store_audit_row row; /* scratch for make_row() */
	int64_t row_id[ROWS];       /* row i's id */
	int64_t comp_id[ROWS];      /* its completion's id; 0: never completed */
	char err[512];
};


/* Row i's filterable fields as written (the rest of r stays as it was).
 * Time goes up 1 ms per row, but every 97th row is 20 s early (a clock
 * step).  Denied rows carry their status (403); an allowed row is written
 * with 0, or 502 for every 37th (a status its completion then replaces,
 * so the rows' status index holds rows whose merged status differs). */
static void make_row(struct store_audit_row *r, int64_t i)
{
	r->id = 0;
	r->completion_id = 0;
	r->bytes_up = r->bytes_down = r->duration_us = 0;
	r->time_us = T0 + i * 1000 - (i % 97 == 0 ? 20000000 : 0);
	snprintf(r->tenant_id, sizeof(r->tenant_id), "tenant%d", (int)(i % 3));
	snprintf(r->sandbox_id, sizeof(r->sandbox_id), "sbx_%d", (int)(i % 7));
	snprintf(r->host, sizeof(r->host), "h%d.example.com", (int)(i % 11));
	if (i % 5 == 0)
		r->external_user_id[0] = '\0';
	else
		snprintf(r->external_user_id, sizeof(r->external_user_id), "u%d", (int)(i % 13));
	if (i % 4 == 0)
		r->external_workspace_id[0] = '\0';
	else
		snprintf(r->external_workspace_id, sizeof(r->external_workspace_id), "w%d",
			 (int)(i % 17));
	r->status = i % 5 == 0 ? 403 : i % 37 == 0 ? 502 : 0;
	r->action = i % 31 == 0 ? STORE_AUDIT_ERROR : i % 5 == 0 ? STORE_AUDIT_DENY
								  : STORE_AUDIT_ALLOW;
}

/* Whether row i gets a completion (denied rows and every 23rd do not: the
 * latter stay at status 0, "never completed"), and its status. */
static bool completed(int64_t i)
{
	return i % 5 != 0 && i % 23 != 0;
}

static void make_completion(struct store_audit_completion *c, int64_t i)
{
	memset(c, 0, sizeof(*c));
	c->time_us = T0 + i * 1000 + 500;
	c->status = i % 29 == 0 ? 503 : i % 111 == 0 ? 502 : 200;
	c->bytes_up = i;
	c->bytes_down = 2 * i;
	c->duration_us = 1000 + i % 7;
}

/* Row i as a query shows it: merged with its completion. */
static void merged_row(struct fx *f, int64_t i)
{
	make_row(&f->row, i);
	f->row.id = f->row_id[i];
	if (f->comp_id[i]) {
		struct store_audit_completion c;

		make_completion(&c, i);
		c.id = f->comp_id[i];
		c.request_id = f->row_id[i];
		audit_row_merge(&f->row, &c);
	}
}

static int group_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct store_audit_row *r;

	if (!f)
		return -1;
	if (fixture_tmpdir("audit-query", f->root) != 0 || store_open(f->root, &f->st, f->err, sizeof(f->err)) != 0 ||
	    store_begin_write(f->st) != 0)
		return -1;
	r = &f->row;
	r->port = 443;
	r->scheme = STORE_AUDIT_HTTPS;
	strcpy(r->method, "GET");
	strcpy(r->path, "/");
	/* The chain is not under test here: any 32 bytes do.  Row i's
	 * completion comes after row i + i % 4 (ids interleave). */
	for (int64_t i = 0, id = 1, next_c = 0; i < ROWS || next_c < ROWS; i++) {
		if (i < ROWS) {
			make_row(r, i);
			r->id = f->row_id[i] = id++;
			if (store_audit_insert(f->st, r) != 0)
				return -1;
		}
		for (; next_c < ROWS && (next_c + next_c % 4 <= i || i >= ROWS); next_c++) {
			struct store_audit_completion c;

			if (!completed(next_c))
				continue;
			make_completion(&c, next_c);
			c.request_id = f->row_id[next_c];
			c.id = f->comp_id[next_c] = id++;
			if (store_audit_completion_insert(f->st, &c) != 0)
				return -1;
		}
	}
	if (store_commit(f->st) != 0)
		return -1;
	*state = f;
	return 0;
}

static int group_teardown(void **state)
{
	struct fx *f = *state;

	store_close(f->st);
	fixture_rmtree(f->root);
	free(f);
	return 0;
}

/* The newest matching merged rows below before_id (0 = none), at most n. */
static size_t expect(struct fx *f, const struct store_audit_filter *flt, int64_t before_id,
		     struct store_audit_row *want, size_t n)
{
	size_t k = 0;

	for (int64_t i = ROWS - 1; i >= 0 && k < n; i--) {
		merged_row(f, i);
		if (before_id && f->row.id >= before_id)
			continue;
		if (audit_filter_match(flt, &f->row))
			want[k++] = f->row;
	}
	return k;
}

static void check_filter(struct fx *f, const struct store_audit_filter *flt, const char *what)
{
	static struct store_audit_row want[PAGE];
	struct store_audit_filter page = *flt;

	for (int p = 0; p < PAGES; p++) {
		struct store_audit_row *rows = NULL;
		int64_t next = 0;
		size_t n = 0, k = expect(f, &page, page.before_id, want, PAGE);

		assert_int_equal(audit_query(f->st, &page, PAGE, &rows, &n, &next), 0);
		if (n != k)
			fail_msg("%s, page %d: %zu rows, expected %zu", what, p, n, k);
		for (size_t i = 0; i < n; i++)
			if (rows[i].id != want[i].id || rows[i].status != want[i].status ||
			    rows[i].completion_id != want[i].completion_id ||
			    rows[i].bytes_down != want[i].bytes_down ||
			    rows[i].duration_us != want[i].duration_us)
				fail_msg("%s, page %d, row %zu: id %lld status %u completion %lld,"
					 " expected id %lld status %u completion %lld", what, p, i,
					 (long long)rows[i].id, rows[i].status,
					 (long long)rows[i].completion_id, (long long)want[i].id,
					 want[i].status, (long long)want[i].completion_id);
		free(rows);
		if (!next)
			break;
		assert_int_equal(next, want[PAGE - 1].id);
		page.before_id = next;
	}
}

#define MS(n) ((int64_t)(n) * 1000)

static void test_time_windows_match_a_scan_whatever_the_plan(void **state)
{
	struct fx *f = *state;
	struct store_audit_filter flt;
	static const struct { int64_t since, until; const char *what; } w[] = {
		{ T0 + MS(79000), 0, "since, small window at the head" },
		{ T0 + MS(5000), 0, "since, large window" },
		{ 0, T0 + MS(1000), "until, small window at the tail" },
		{ 0, T0 + MS(70000), "until, large window ending near the head" },
		{ T0 + MS(40000), T0 + MS(40500), "small window mid-log (clock-stepped rows in it)" },
		{ T0 + MS(2000), T0 + MS(72000), "large window mid-log" },
		{ T0 + MS(90000), 0, "since after the newest (empty)" },
		{ 0, T0 - MS(30000), "until before the oldest (empty)" },
	};

	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
		audit_filter_init(&flt);
		flt.since_us = w[i].since;
		flt.until_us = w[i].until;
		check_filter(f, &flt, w[i].what);
		flt.before_id = 30000; /* a cursor that starts the walk mid-log */
		check_filter(f, &flt, w[i].what);
		flt.before_id = 0;
		flt.host = "h3.example.com";
		check_filter(f, &flt, w[i].what);
		flt.action = STORE_AUDIT_DENY;
		check_filter(f, &flt, w[i].what);
		flt.status = 503;
		check_filter(f, &flt, w[i].what);
		flt.host = NULL;
		flt.action = -1;
		check_filter(f, &flt, w[i].what); /* the merged status alone */
		flt.status = 0;                   /* never completed */
		check_filter(f, &flt, w[i].what);
	}
}

static void test_equality_combinations_match_a_scan_whatever_the_index(void **state)
{
	struct fx *f = *state;
	struct store_audit_filter flt;

	audit_filter_init(&flt);
	flt.status = 503;
	flt.action = STORE_AUDIT_ALLOW;           /* rare with common */
	check_filter(f, &flt, "status 503 + allow");
	audit_filter_init(&flt);
	flt.action = STORE_AUDIT_DENY;
	flt.host = "h7.example.com";
	check_filter(f, &flt, "deny + host");
	flt.status = 200;                         /* deny is never 200: empty */
	check_filter(f, &flt, "deny + host + 200");
	audit_filter_init(&flt);
	flt.tenant_id = "tenant1";
	flt.sandbox_id = "sbx_4";
	flt.external_user_id = "u5";
	check_filter(f, &flt, "tenant + sandbox + external user");
	audit_filter_init(&flt);
	flt.external_workspace_id = "w3";
	flt.external_user_id = "u2";
	flt.action = STORE_AUDIT_ERROR;
	check_filter(f, &flt, "external workspace + user + error");
	flt.before_id = 40000;
	check_filter(f, &flt, "external workspace + user + error, cursor");
	audit_filter_init(&flt);
	flt.host = "h1.example.com";
	flt.sandbox_id = "sbx_0";
	flt.since_us = T0 + MS(10000);
	flt.until_us = T0 + MS(75000);
	check_filter(f, &flt, "host + sandbox in a large window");
	audit_filter_init(&flt);
	flt.status = 503;                         /* completions only, rare */
	check_filter(f, &flt, "status 503");
	flt.before_id = 50000;
	check_filter(f, &flt, "status 503, cursor");
	audit_filter_init(&flt);
	flt.status = 502;                         /* rows written 502, most completed 200 */
	check_filter(f, &flt, "status 502");
	flt.host = "h2.example.com";
	check_filter(f, &flt, "status 502 + host");
	audit_filter_init(&flt);
	flt.status = 200;                         /* common: the id walk */
	check_filter(f, &flt, "status 200");
	flt.sandbox_id = "sbx_3";
	flt.external_workspace_id = "w5";
	check_filter(f, &flt, "status 200 + sandbox + workspace");
	audit_filter_init(&flt);
	flt.status = 403;                         /* denied rows, never completed */
	flt.tenant_id = "tenant2";
	check_filter(f, &flt, "status 403 + tenant");
	audit_filter_init(&flt);
	flt.status = 0;                           /* completion never came */
	check_filter(f, &flt, "status 0");
	flt.action = STORE_AUDIT_ERROR;
	check_filter(f, &flt, "status 0 + error");
	audit_filter_init(&flt);
	flt.status = 404;                         /* nobody */
	check_filter(f, &flt, "status 404 (empty)");
	audit_filter_init(&flt);
	flt.host = "nohost.example.com";
	flt.status = 200;
	check_filter(f, &flt, "unknown host + 200 (empty)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_time_windows_match_a_scan_whatever_the_plan),
		cmocka_unit_test(test_equality_combinations_match_a_scan_whatever_the_index),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
