/* Unit tests for audit.h: redaction, chain, writer, tail, query, export. */
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
#include <sqlite3.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"
#include "audit.h"
#include "store.h"

#define PH "miosa-tok-0123456789abcdef0123456789abcdef"

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

	if (fixture_tmpdir("audit", f->root) != 0)
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/state.db", f->root);
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

static void open_writer(struct fx *f, size_t queue, size_t batch, int ms)
{
	struct audit_writer_opts o = { .queue_max = queue, .batch_max = batch, .batch_ms = ms };

	assert_int_equal(audit_writer_open(f->root, &o, &f->w, f->err, sizeof(f->err)), 0);
}

static void open_store(struct fx *f)
{
	if (!f->st)
		assert_int_equal(store_open(f->root, &f->st, f->err, sizeof(f->err)), 0);
}

static void row_init(struct store_audit_row *r, int i)
{
	memset(r, 0, sizeof(*r));
	r->time_us = 1700000000000000 + i * 1000000LL;
	strcpy(r->tenant_id, "acme");
	snprintf(r->sandbox_id, sizeof(r->sandbox_id), "sbx_%d", i % 2);
	strcpy(r->external_user_id, i % 2 ? "bob@example.com" : "alice@example.com");
	strcpy(r->external_workspace_id, "ws1");
	strcpy(r->host, i % 3 ? "api.openai.com" : "api.github.com");
	r->port = 443;
	r->scheme = STORE_AUDIT_HTTPS;
	strcpy(r->method, "POST");
	strcpy(r->path, "/v1/chat/completions");
	r->status = i % 4 == 3 ? 403 : 200;
	r->action = i % 4 == 3 ? STORE_AUDIT_DENY : STORE_AUDIT_ALLOW;
	r->n_swapped = 1;
	strcpy(r->swapped[0], "openai_key");
	r->bytes_up = 100 + i;
	r->bytes_down = 2000;
	r->duration_us = 5000;
}

static void submit_n(struct fx *f, int n)
{
	struct store_audit_row r;

	for (int i = 0; i < n; i++) {
		row_init(&r, i);
		assert_int_equal(audit_submit_wait(f->w, &r, NULL), 0);
	}
}

static void db_exec(struct fx *f, const char *sql)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* ---- redaction --------------------------------------------------------- */

static void expect_redact(const char *in, const char *want)
{
	char out[STORE_AUDIT_PATH_MAX + 1];

	assert_int_equal(audit_redact_path(in, out, sizeof(out)), (int)strlen(want));
	assert_string_equal(out, want);
}

static void test_redact_table(void **state)
{
	static const struct { const char *in, *want; } t[] = {
		{ "/v1/models", "/v1/models" },
		{ "/", "/" },
		{ "", "" },
		{ "/x?a=1&b=2", "/x?a=1&b=2" },
		{ "/x?key=abc", "/x?key=REDACTED" },
		{ "/x?KEY=abc", "/x?KEY=REDACTED" },
		{ "/x?api_key=abc&q=cats", "/x?api_key=REDACTED&q=cats" },
		{ "/x?apiKey=abc", "/x?apiKey=REDACTED" },
		{ "/x?token=t&access_token=u", "/x?token=REDACTED&access_token=REDACTED" },
		{ "/x?secret=s&password=p", "/x?secret=REDACTED&password=REDACTED" },
		{ "/x?auth=a&sig=b&signature=c", "/x?auth=REDACTED&sig=REDACTED&signature=REDACTED" },
		{ "/cb?code=xyz&state=1", "/cb?code=REDACTED&state=1" },
		{ "/x?client_secret=s", "/x?client_secret=REDACTED" },
		{ "/x?X-Amz-Signature=abc", "/x?X-Amz-Signature=REDACTED" },
		{ "/x?api%5Fkey=abc", "/x?api%5Fkey=REDACTED" },
		{ "/x?q=" PH, "/x?q=REDACTED" },
		{ "/x?q=Bearer%20" PH, "/x?q=REDACTED" },
		{ "/x?" PH, "/x?REDACTED" },
		{ "/bot" PH "/send", "/REDACTED/send" },
		{ "/x?key=", "/x?key=REDACTED" },
		{ "/x?a=1&&b", "/x?a=1&&b" },
		{ "/x?monkey=1", "/x?monkey=REDACTED" },
		{ "/x?user=bob", "/x?user=bob" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		expect_redact(t[i].in, t[i].want);
}

static void test_redact_cuts_long_output_after_redacting(void **state)
{
	char out[16];

	(void)state;
	assert_int_equal(audit_redact_path("/x?token=supersecretvalue", out, sizeof(out)), 15);
	assert_string_equal(out, "/x?token=REDACT");
	assert_null(strstr(out, "super"));
}

/* ---- validation and time ----------------------------------------------- */

static void test_validate_accepts_a_complete_row(void **state)
{
	struct store_audit_row r;

	(void)state;
	row_init(&r, 1);
	assert_int_equal(audit_row_validate(&r), 0);
}

static void test_validate_rejects_bad_rows(void **state)
{
	struct store_audit_row r;

	(void)state;
	row_init(&r, 1);
	r.host[0] = '\0';
	assert_int_equal(audit_row_validate(&r), -EINVAL);
	row_init(&r, 1);
	strcpy(r.swapped[0], "a,b");
	assert_int_equal(audit_row_validate(&r), -EINVAL);
	row_init(&r, 1);
	r.path[3] = '\n';
	assert_int_equal(audit_row_validate(&r), -EINVAL);
	row_init(&r, 1);
	r.status = 1000;
	assert_int_equal(audit_row_validate(&r), -EINVAL);
	row_init(&r, 1);
	r.n_rules = STORE_AUDIT_LIST_MAX + 1;
	assert_int_equal(audit_row_validate(&r), -EINVAL);
	row_init(&r, 1);
	r.action = (enum store_audit_action)7;
	assert_int_equal(audit_row_validate(&r), -EINVAL);
}

static void test_parse_time_durations(void **state)
{
	int64_t now = 1700000000000000, t;

	(void)state;
	assert_int_equal(audit_parse_time("5m", now, &t), 0);
	assert_int_equal(t, now - 300000000LL);
	assert_int_equal(audit_parse_time("24h", now, &t), 0);
	assert_int_equal(t, now - 86400000000LL);
	assert_int_equal(audit_parse_time("7d", now, &t), 0);
	assert_int_equal(t, now - 7 * 86400000000LL);
	assert_int_equal(audit_parse_time("30s", now, &t), 0);
	assert_int_equal(t, now - 30000000LL);
}

static void test_parse_time_rfc3339(void **state)
{
	int64_t t;

	(void)state;
	assert_int_equal(audit_parse_time("2023-11-14T22:13:20Z", 0, &t), 0);
	assert_int_equal(t, 1700000000000000LL);
	assert_int_equal(audit_parse_time("2023-11-14T22:13:20.5Z", 0, &t), 0);
	assert_int_equal(t, 1700000000500000LL);
	assert_int_equal(audit_parse_time("2023-11-15T00:13:20+02:00", 0, &t), 0);
	assert_int_equal(t, 1700000000000000LL);
	assert_int_equal(audit_parse_time("2024-02-29T00:00:00Z", 0, &t), 0);
}

static void test_parse_time_rejects_garbage(void **state)
{
	static const char *const bad[] = {
		"", "5", "m", "5x", "-5m", "5 m", "2023-11-14", "2023-13-01T00:00:00Z",
		"2023-02-29T00:00:00Z", "2023-11-14T22:13:20", "2023-11-14T25:00:00Z",
		"2023-11-14T22:13:20.Z", "2023-11-14T22:13:20+2:00", "99999999999d",
	};
	int64_t t;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(audit_parse_time(bad[i], 1700000000000000, &t), -EINVAL);
}

/* ---- chain ------------------------------------------------------------- */

static void test_hash_covers_every_field_and_prev(void **state)
{
	struct store_audit_row a, b;
	uint8_t h1[32], h2[32];

	(void)state;
	row_init(&a, 1);
	audit_row_hash(&a, h1);
	b = a;
	audit_row_hash(&b, h2);
	assert_memory_equal(h1, h2, 32);
	b.bytes_down++;
	audit_row_hash(&b, h2);
	assert_memory_not_equal(h1, h2, 32);
	b = a;
	b.prev_hash[31] ^= 1;
	audit_row_hash(&b, h2);
	assert_memory_not_equal(h1, h2, 32);
	b = a;
	strcpy(b.swapped[0], "openai_kez");
	audit_row_hash(&b, h2);
	assert_memory_not_equal(h1, h2, 32);
}

static void test_chain_links_rows_and_verifies(void **state)
{
	struct fx *f = *state;
	struct store_audit_row *rows;
	uint8_t zero[32] = { 0 }, head[32];
	uint64_t checked;
	int64_t bad = 0;
	size_t n;

	open_writer(f, 0, 0, 0);
	submit_n(f, 5);
	open_store(f);
	assert_int_equal(store_audit_list_after(f->st, 0, 10, &rows, &n), 0);
	assert_int_equal(n, 5);
	assert_memory_equal(rows[0].prev_hash, zero, 32);
	for (size_t i = 1; i < n; i++)
		assert_memory_equal(rows[i].prev_hash, rows[i - 1].row_hash, 32);
	assert_int_equal(audit_verify(f->st, &bad, &checked, head), 0);
	assert_int_equal(checked, 5);
	assert_memory_equal(head, rows[4].row_hash, 32);
	free(rows);
}

static void test_verify_detects_an_edited_row(void **state)
{
	struct fx *f = *state;
	int64_t bad = 0;

	open_writer(f, 0, 0, 0);
	submit_n(f, 6);
	db_exec(f, "UPDATE audit_rows SET status = 200 WHERE id = 4");
	open_store(f);
	assert_int_equal(audit_verify(f->st, &bad, NULL, NULL), -EBADMSG);
	assert_int_equal(bad, 4);
}

static void test_verify_detects_a_deleted_row(void **state)
{
	struct fx *f = *state;
	int64_t bad = 0;

	open_writer(f, 0, 0, 0);
	submit_n(f, 6);
	db_exec(f, "DELETE FROM audit_rows WHERE id = 3");
	open_store(f);
	assert_int_equal(audit_verify(f->st, &bad, NULL, NULL), -EBADMSG);
	assert_int_equal(bad, 4);
}

static void test_verify_of_an_empty_log_passes(void **state)
{
	struct fx *f = *state;
	int64_t bad = 0;
	uint64_t checked = 1;

	open_store(f);
	assert_int_equal(audit_verify(f->st, &bad, &checked, NULL), 0);
	assert_int_equal(checked, 0);
}

/* ---- writer ------------------------------------------------------------ */

static void test_acked_rows_survive_close_and_reopen_in_order(void **state)
{
	struct fx *f = *state;
	struct store_audit_row r, *rows;
	int64_t id;
	size_t n;

	open_writer(f, 0, 0, 0);
	for (int i = 0; i < 20; i++) {
		row_init(&r, i);
		assert_int_equal(audit_submit_wait(f->w, &r, &id), 0);
		assert_int_equal(id, i + 1);
	}
	audit_writer_close(f->w);
	f->w = NULL;
	open_store(f);
	assert_int_equal(store_audit_list_after(f->st, 0, 100, &rows, &n), 0);
	assert_int_equal(n, 20);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(rows[i].id, (int64_t)i + 1);
		assert_int_equal(rows[i].bytes_up, 100 + (int64_t)i);
	}
	free(rows);
}

static void test_writer_continues_an_existing_chain(void **state)
{
	struct fx *f = *state;
	int64_t bad = 0, id;
	struct store_audit_row r;

	open_writer(f, 0, 0, 0);
	submit_n(f, 3);
	audit_writer_close(f->w);
	open_writer(f, 0, 0, 0);
	row_init(&r, 9);
	assert_int_equal(audit_submit_wait(f->w, &r, &id), 0);
	assert_int_equal(id, 4);
	open_store(f);
	assert_int_equal(audit_verify(f->st, &bad, NULL, NULL), 0);
}

struct acks {
	pthread_mutex_t mu;
	int n, errors;
	int64_t last_id;
	bool ordered;
};

static void count_ack(void *ud, int status, int64_t id)
{
	struct acks *a = ud;

	pthread_mutex_lock(&a->mu);
	a->n++;
	if (status != 0)
		a->errors++;
	if (id != a->last_id + 1)
		a->ordered = false;
	a->last_id = id;
	pthread_mutex_unlock(&a->mu);
}

static void test_group_commit_batches_full_batches(void **state)
{
	struct fx *f = *state;
	struct acks a = { .mu = PTHREAD_MUTEX_INITIALIZER, .ordered = true };
	struct audit_writer_stats s;
	struct store_audit_row r;

	open_writer(f, 1000, 10, 2000);
	for (int i = 0; i < 100; i++) {
		row_init(&r, i);
		assert_int_equal(audit_submit(f->w, &r, count_ack, &a), 0);
	}
	audit_writer_close(f->w);
	f->w = NULL;
	assert_int_equal(a.n, 100);
	assert_int_equal(a.errors, 0);
	assert_true(a.ordered);
	(void)s;
}

static void test_group_commit_counts(void **state)
{
	struct fx *f = *state;
	struct acks a = { .mu = PTHREAD_MUTEX_INITIALIZER, .ordered = true };
	struct audit_writer_stats s;
	struct store_audit_row r;
	int64_t id;

	/* A batch fills to 10 well within its 2 s window: 10 transactions. */
	open_writer(f, 1000, 10, 2000);
	for (int i = 0; i < 99; i++) {
		row_init(&r, i);
		assert_int_equal(audit_submit(f->w, &r, count_ack, &a), 0);
	}
	row_init(&r, 99);
	assert_int_equal(audit_submit_wait(f->w, &r, &id), 0);
	assert_int_equal(id, 100);
	audit_writer_stats(f->w, &s);
	assert_int_equal(s.rows, 100);
	assert_int_equal(s.batches, 10);
}

static void test_group_commit_window_gathers_a_partial_batch(void **state)
{
	struct fx *f = *state;
	struct acks a = { .mu = PTHREAD_MUTEX_INITIALIZER, .ordered = true };
	struct audit_writer_stats s;
	struct store_audit_row r;

	open_writer(f, 1000, 1000, 500);
	for (int i = 0; i < 49; i++) {
		row_init(&r, i);
		assert_int_equal(audit_submit(f->w, &r, count_ack, &a), 0);
	}
	row_init(&r, 49);
	assert_int_equal(audit_submit_wait(f->w, &r, NULL), 0);
	audit_writer_stats(f->w, &s);
	assert_int_equal(s.rows, 50);
	assert_int_equal(s.batches, 1);
}

static void test_full_queue_refuses_with_eagain(void **state)
{
	struct fx *f = *state;
	struct acks a = { .mu = PTHREAD_MUTEX_INITIALIZER, .ordered = true };
	struct audit_writer_stats s;
	struct store_audit_row r;

	/* The writer waits 5 s for 1000 rows: the 4 queued stay queued. */
	open_writer(f, 4, 1000, 5000);
	row_init(&r, 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(audit_submit(f->w, &r, count_ack, &a), 0);
	assert_int_equal(audit_submit(f->w, &r, count_ack, &a), -EAGAIN);
	audit_writer_stats(f->w, &s);
	assert_int_equal(s.rejected, 1);
	audit_writer_close(f->w); /* flushes without waiting out the window */
	f->w = NULL;
	assert_int_equal(a.n, 4);
	assert_int_equal(a.errors, 0);
}

static void test_submit_rejects_an_invalid_row_without_ack(void **state)
{
	struct fx *f = *state;
	struct acks a = { .mu = PTHREAD_MUTEX_INITIALIZER, .ordered = true };
	struct store_audit_row r;

	open_writer(f, 0, 0, 0);
	row_init(&r, 0);
	r.tenant_id[0] = '\0';
	assert_int_equal(audit_submit(f->w, &r, count_ack, &a), -EINVAL);
	audit_writer_close(f->w);
	f->w = NULL;
	assert_int_equal(a.n, 0);
}

static void test_failed_commit_acks_an_error_and_stores_nothing(void **state)
{
	struct fx *f = *state;
	struct store_audit_row r;
	int64_t bad = 0;
	uint64_t checked = 9;

	open_writer(f, 0, 0, 0);
	/* Make every insert fail inside the writer's transaction. */
	db_exec(f, "CREATE TRIGGER no_audit BEFORE INSERT ON audit_rows"
		   " BEGIN SELECT RAISE(ABORT, 'nope'); END");
	row_init(&r, 0);
	assert_true(audit_submit_wait(f->w, &r, NULL) < 0);
	open_store(f);
	assert_int_equal(audit_verify(f->st, &bad, &checked, NULL), 0);
	assert_int_equal(checked, 0);
}

/* ---- secrets never stored ---------------------------------------------- */

static int count_rows(struct fx *f, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	int n;

	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	n = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return n;
}

static void test_placeholder_and_credential_values_never_reach_the_db(void **state)
{
	struct fx *f = *state;
	struct store_audit_row r;

	open_writer(f, 0, 0, 0);
	row_init(&r, 0);
	strcpy(r.path, "/v1/x?q=" PH "&api_key=sk-live-verysecret&page=2");
	assert_int_equal(audit_submit_wait(f->w, &r, NULL), 0);
	assert_int_equal(count_rows(f, "SELECT count(*) FROM audit_rows WHERE path ="
				    " '/v1/x?q=REDACTED&api_key=REDACTED&page=2'"), 1);
	/* No column of any row holds either value. */
	assert_int_equal(count_rows(f, "SELECT count(*) FROM audit_rows WHERE"
				    " instr(path || tenant_id || sandbox_id || host || reason ||"
				    " rules || secrets_swapped || secrets_flagged ||"
				    " coalesce(external_user_id, ''), 'miosa-tok-') > 0 OR"
				    " instr(path || reason, 'verysecret') > 0"), 0);
}

/* ---- tail -------------------------------------------------------------- */

static void test_tail_receives_committed_rows_matching_its_filter(void **state)
{
	struct fx *f = *state;
	struct store_audit_filter flt;
	struct store_audit_row r;
	struct audit_tail *t;
	int64_t id;

	open_writer(f, 0, 0, 0);
	audit_filter_init(&flt);
	flt.sandbox_id = "sbx_1";
	assert_int_equal(audit_tail_subscribe(f->w, &flt, 0, &t), 0);
	assert_true(audit_tail_fd(t) >= 0);
	submit_n(f, 4); /* sbx_0, sbx_1, sbx_0, sbx_1 */
	assert_int_equal(audit_tail_next(t, 1000, &r), 0);
	assert_string_equal(r.sandbox_id, "sbx_1");
	assert_int_equal(r.id, 2);
	assert_int_equal(audit_tail_next(t, 1000, &r), 0);
	assert_int_equal(r.id, 4);
	assert_int_equal(audit_tail_next(t, 0, &r), -ETIMEDOUT);
	row_init(&r, 5);
	assert_int_equal(audit_submit_wait(f->w, &r, &id), 0);
	assert_int_equal(audit_tail_next(t, 1000, &r), 0);
	assert_int_equal(r.id, id);
	audit_tail_close(t);
}

static void test_slow_subscriber_is_dropped_with_a_marker(void **state)
{
	struct fx *f = *state;
	struct audit_tail *slow, *fast;
	struct store_audit_row r;

	open_writer(f, 0, 0, 0);
	assert_int_equal(audit_tail_subscribe(f->w, NULL, 2, &slow), 0);
	assert_int_equal(audit_tail_subscribe(f->w, NULL, 100, &fast), 0);
	submit_n(f, 5); /* the writer never waited for either */
	assert_int_equal(audit_tail_next(slow, 0, &r), 0);
	assert_int_equal(r.id, 1);
	assert_int_equal(audit_tail_next(slow, 0, &r), 0);
	assert_int_equal(r.id, 2);
	assert_int_equal(audit_tail_next(slow, 0, &r), AUDIT_TAIL_DROPPED);
	assert_int_equal(audit_tail_next(slow, 0, &r), -EPIPE);
	for (int i = 1; i <= 5; i++) {
		assert_int_equal(audit_tail_next(fast, 0, &r), 0);
		assert_int_equal(r.id, i);
	}
	audit_tail_close(slow);
	audit_tail_close(fast);
}

static void test_tail_ends_when_the_writer_closes(void **state)
{
	struct fx *f = *state;
	struct audit_tail *t;
	struct store_audit_row r;

	open_writer(f, 0, 0, 0);
	assert_int_equal(audit_tail_subscribe(f->w, NULL, 0, &t), 0);
	submit_n(f, 1);
	audit_writer_close(f->w);
	f->w = NULL;
	assert_int_equal(audit_tail_next(t, 0, &r), 0);
	assert_int_equal(audit_tail_next(t, 1000, &r), -EPIPE);
	audit_tail_close(t);
}

/* ---- query ------------------------------------------------------------- */

static void query_ids(struct fx *f, const struct store_audit_filter *flt, size_t limit,
		      const int64_t *want, size_t n_want, int64_t want_next)
{
	struct store_audit_row *rows;
	int64_t next;
	size_t n;

	assert_int_equal(audit_query(f->st, flt, limit, &rows, &n, &next), 0);
	assert_int_equal(n, n_want);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(rows[i].id, want[i]);
	assert_int_equal(next, want_next);
	free(rows);
}

static void test_query_filters(void **state)
{
	struct fx *f = *state;
	struct store_audit_filter q;

	open_writer(f, 0, 0, 0);
	submit_n(f, 8); /* ids 1..8 = i 0..7 */
	open_store(f);
	audit_filter_init(&q);
	query_ids(f, &q, 100, (int64_t[]){ 8, 7, 6, 5, 4, 3, 2, 1 }, 8, 0);
	q.sandbox_id = "sbx_0";
	query_ids(f, &q, 100, (int64_t[]){ 7, 5, 3, 1 }, 4, 0);
	audit_filter_init(&q);
	q.host = "api.github.com"; /* i % 3 == 0 */
	query_ids(f, &q, 100, (int64_t[]){ 7, 4, 1 }, 3, 0);
	q.host = "api.github";
	query_ids(f, &q, 100, NULL, 0, 0);
	audit_filter_init(&q);
	q.action = STORE_AUDIT_DENY; /* i % 4 == 3 */
	query_ids(f, &q, 100, (int64_t[]){ 8, 4 }, 2, 0);
	audit_filter_init(&q);
	q.status = 403;
	query_ids(f, &q, 100, (int64_t[]){ 8, 4 }, 2, 0);
	audit_filter_init(&q);
	q.since_us = 1700000000000000 + 2 * 1000000LL;
	q.until_us = 1700000000000000 + 5 * 1000000LL;
	query_ids(f, &q, 100, (int64_t[]){ 5, 4, 3 }, 3, 0);
	audit_filter_init(&q);
	q.external_workspace_id = "ws1";
	q.tenant_id = "acme";
	query_ids(f, &q, 100, (int64_t[]){ 8, 7, 6, 5, 4, 3, 2, 1 }, 8, 0);
	q.tenant_id = "other";
	query_ids(f, &q, 100, NULL, 0, 0);
}

static void test_query_external_user_is_strict_equality(void **state)
{
	struct fx *f = *state;
	struct store_audit_filter q;

	open_writer(f, 0, 0, 0);
	submit_n(f, 4);
	open_store(f);
	audit_filter_init(&q);
	q.external_user_id = "alice@example.com";
	query_ids(f, &q, 100, (int64_t[]){ 3, 1 }, 2, 0);
	q.external_user_id = "alice@";
	query_ids(f, &q, 100, NULL, 0, 0);
	q.external_user_id = "%";
	query_ids(f, &q, 100, NULL, 0, 0);
	q.external_user_id = "ALICE@example.com";
	query_ids(f, &q, 100, NULL, 0, 0);
	q.external_user_id = "";
	query_ids(f, &q, 100, NULL, 0, 0);
}

static void test_query_pagination_cursor(void **state)
{
	struct fx *f = *state;
	struct store_audit_filter q;

	open_writer(f, 0, 0, 0);
	submit_n(f, 7);
	open_store(f);
	audit_filter_init(&q);
	query_ids(f, &q, 3, (int64_t[]){ 7, 6, 5 }, 3, 5);
	q.before_id = 5;
	query_ids(f, &q, 3, (int64_t[]){ 4, 3, 2 }, 3, 2);
	q.before_id = 2;
	query_ids(f, &q, 3, (int64_t[]){ 1 }, 1, 0);
	q.before_id = 4;
	query_ids(f, &q, 3, (int64_t[]){ 3, 2, 1 }, 3, 0);
}

static void test_filter_match_agrees_with_the_query(void **state)
{
	struct store_audit_filter q;
	struct store_audit_row r;

	(void)state;
	row_init(&r, 0);
	audit_filter_init(&q);
	assert_true(audit_filter_match(&q, &r));
	q.external_user_id = "alice@";
	assert_false(audit_filter_match(&q, &r));
	q.external_user_id = "alice@example.com";
	assert_true(audit_filter_match(&q, &r));
	r.external_user_id[0] = '\0';
	q.external_user_id = "";
	assert_false(audit_filter_match(&q, &r));
}

/* ---- export ------------------------------------------------------------ */

struct sink {
	char buf[262144];
	size_t len;
	int calls;
};

static int sink_write(void *ud, const char *buf, size_t len)
{
	struct sink *s = ud;

	assert_true(len < sizeof(s->buf) - s->len);
	memcpy(s->buf + s->len, buf, len);
	s->len += len;
	s->buf[s->len] = '\0';
	s->calls++;
	return 0;
}

static int sink_fail(void *ud, const char *buf, size_t len)
{
	(void)ud; (void)buf; (void)len;
	return -EPIPE;
}

static void fixed_row(struct store_audit_row *r)
{
	row_init(r, 0);
	strcpy(r->external_workspace_id, "");
	strcpy(r->reason, "=HYPERLINK(\"x\"), ok");
	r->n_rules = 2;
	strcpy(r->rules[0], "observe");
	strcpy(r->rules[1], "-sum");
	r->n_flagged = 0;
	strcpy(r->path, "/v1/chat?key=abc");
}

static const char hex0[] = "0000000000000000000000000000000000000000000000000000000000000000";

static void test_export_jsonl_exact_bytes(void **state)
{
	struct fx *f = *state;
	struct store_audit_filter q;
	struct store_audit_row r, *rows;
	char hash[65], want[2048];
	struct sink s = { .len = 0 };
	int64_t next;
	size_t n;

	open_writer(f, 0, 0, 0);
	fixed_row(&r);
	assert_int_equal(audit_submit_wait(f->w, &r, NULL), 0);
	open_store(f);
	audit_filter_init(&q);
	assert_int_equal(audit_query(f->st, &q, 1, &rows, &n, &next), 0);
	for (int i = 0; i < 32; i++)
		snprintf(hash + 2 * i, 3, "%02x", rows[0].row_hash[i]);
	free(rows);
	snprintf(want, sizeof(want),
		 "{\"id\":1,\"time_us\":1700000000000000,\"tenant_id\":\"acme\","
		 "\"sandbox_id\":\"sbx_0\",\"external_user_id\":\"alice@example.com\","
		 "\"external_workspace_id\":null,\"host\":\"api.github.com\",\"port\":443,"
		 "\"scheme\":\"https\",\"method\":\"POST\",\"path\":\"/v1/chat?key=REDACTED\","
		 "\"status\":200,\"action\":\"allow\",\"reason\":\"=HYPERLINK(\\\"x\\\"), ok\","
		 "\"rules\":[\"observe\",\"-sum\"],\"request_transforms\":{\"secrets\":"
		 "{\"swapped\":[\"openai_key\"],\"flagged\":[]}},\"bytes_up\":100,"
		 "\"bytes_down\":2000,\"duration_us\":5000,\"prev_hash\":\"%s\","
		 "\"row_hash\":\"%s\",\"completion_id\":null}\n", hex0, hash);
	assert_int_equal(audit_export(f->st, &q, AUDIT_JSONL, sink_write, &s), 1);
	assert_string_equal(s.buf, want);
}

static void test_export_csv_exact_bytes_and_formula_safe(void **state)
{
	struct fx *f = *state;
	struct store_audit_filter q;
	struct store_audit_row r, *rows;
	char hash[65], want[2048];
	struct sink s = { .len = 0 };
	int64_t next;
	size_t n;

	open_writer(f, 0, 0, 0);
	fixed_row(&r);
	assert_int_equal(audit_submit_wait(f->w, &r, NULL), 0);
	open_store(f);
	audit_filter_init(&q);
	assert_int_equal(audit_query(f->st, &q, 1, &rows, &n, &next), 0);
	for (int i = 0; i < 32; i++)
		snprintf(hash + 2 * i, 3, "%02x", rows[0].row_hash[i]);
	free(rows);
	snprintf(want, sizeof(want),
		 "id,time_us,tenant_id,sandbox_id,external_user_id,external_workspace_id,host,"
		 "port,scheme,method,path,status,action,reason,rules,secrets_swapped,"
		 "secrets_flagged,bytes_up,bytes_down,duration_us,prev_hash,row_hash,completion_id\r\n"
		 "1,1700000000000000,acme,sbx_0,alice@example.com,,api.github.com,443,https,POST,"
		 "/v1/chat?key=REDACTED,200,allow,\"'=HYPERLINK(\"\"x\"\"), ok\",observe;-sum,"
		 "openai_key,,100,2000,5000,%s,%s,\r\n", hex0, hash);
	assert_int_equal(audit_export(f->st, &q, AUDIT_CSV, sink_write, &s), 1);
	assert_string_equal(s.buf, want);
}

static void test_export_streams_in_pages_newest_first(void **state)
{
	struct fx *f = *state;
	struct store_audit_filter q;
	struct sink *s = calloc(1, sizeof(*s));
	struct store_audit_row r;
	struct acks a = { .mu = PTHREAD_MUTEX_INITIALIZER, .ordered = true };

	open_writer(f, 2000, 500, 0);
	for (int i = 0; i < AUDIT_PAGE_ROWS + 10; i++) {
		row_init(&r, i);
		strcpy(r.path, "/");
		assert_int_equal(audit_submit(f->w, &r, count_ack, &a), 0);
	}
	audit_writer_close(f->w);
	f->w = NULL;
	open_store(f);
	audit_filter_init(&q);
	q.host = "nowhere";
	assert_int_equal(audit_export(f->st, &q, AUDIT_JSONL, sink_write, s), 0);
	assert_int_equal(s->calls, 0);
	audit_filter_init(&q);
	q.sandbox_id = "sbx_0";
	assert_int_equal(audit_export(f->st, &q, AUDIT_CSV, sink_write, s), (AUDIT_PAGE_ROWS + 10) / 2);
	assert_int_equal(s->calls, 2); /* header + one page of 261 rows */
	assert_non_null(strstr(s->buf, "\r\n521,"));
	assert_int_equal(audit_export(f->st, &q, AUDIT_JSONL, sink_fail, NULL), -EPIPE);
	free(s);
}

/* ---- completions ------------------------------------------------------- */

static void comp_init(struct store_audit_completion *c, int64_t request_id, uint16_t status)
{
	memset(c, 0, sizeof(*c));
	c->request_id = request_id;
	c->time_us = 1700000000500000;
	c->status = status;
	c->bytes_up = 321;
	c->bytes_down = 4567;
	c->duration_us = 8900;
}

struct comp_ack {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int n, status;
	int64_t id;
};

static void comp_ack_fn(void *userdata, int status, int64_t id)
{
	struct comp_ack *a = userdata;

	pthread_mutex_lock(&a->mu);
	a->n++;
	a->status = status;
	a->id = id;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

/* audit_complete() and wait for its (asynchronous) ack; returns its id. */
static int64_t complete_wait(struct fx *f, const struct store_audit_completion *c)
{
	struct comp_ack a = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

	assert_int_equal(audit_complete(f->w, c, comp_ack_fn, &a), 0);
	pthread_mutex_lock(&a.mu);
	while (a.n == 0)
		pthread_cond_wait(&a.cv, &a.mu);
	pthread_mutex_unlock(&a.mu);
	assert_int_equal(a.status, 0);
	return a.id;
}

static void test_completion_merges_into_its_request_row(void **state)
{
	struct fx *f = *state;
	struct store_audit_filter q;
	struct store_audit_row r, *rows;
	struct store_audit_completion c;
	int64_t id, cid, next;
	size_t n;

	open_writer(f, 0, 0, 0);
	row_init(&r, 0);
	r.status = 0, r.bytes_up = r.bytes_down = r.duration_us = 0; /* as written pre-forward */
	assert_int_equal(audit_submit_wait_flags(f->w, &r, AUDIT_SUBMIT_AWAIT_COMPLETION, &id), 0);
	row_init(&r, 1);
	assert_int_equal(audit_submit_wait(f->w, &r, NULL), 0); /* an unrelated row */
	comp_init(&c, id, 201);
	cid = complete_wait(f, &c);
	assert_int_equal(cid, 3); /* the next link of the one chain */
	open_store(f);
	audit_filter_init(&q);
	assert_int_equal(audit_query(f->st, &q, 10, &rows, &n, &next), 0);
	assert_int_equal(n, 2); /* one merged row per request, no completion row */
	assert_int_equal(rows[1].id, id);
	assert_int_equal(rows[1].status, 201);
	assert_int_equal(rows[1].bytes_up, 321);
	assert_int_equal(rows[1].bytes_down, 4567);
	assert_int_equal(rows[1].duration_us, 8900);
	assert_int_equal(rows[1].completion_id, cid);
	assert_int_equal(rows[0].completion_id, 0);
	assert_int_equal(rows[0].status, 200);
	free(rows);
}

static void test_completion_bad_input_is_refused(void **state)
{
	struct fx *f = *state;
	struct store_audit_completion c;

	open_writer(f, 0, 0, 0);
	comp_init(&c, 0, 200);
	assert_int_equal(audit_complete(f->w, &c, NULL, NULL), -EINVAL);
	comp_init(&c, 1, 1000);
	assert_int_equal(audit_complete(f->w, &c, NULL, NULL), -EINVAL);
	comp_init(&c, 1, 200);
	c.bytes_down = -1;
	assert_int_equal(audit_complete(f->w, &c, NULL, NULL), -EINVAL);
	assert_int_equal(audit_complete(NULL, &c, NULL, NULL), -EINVAL);
}

static void test_status_filter_sees_the_completed_status(void **state)
{
	struct fx *f = *state;
	struct store_audit_filter q;
	struct store_audit_row r, *rows;
	struct store_audit_completion c;
	int64_t id, next;
	size_t n;

	open_writer(f, 0, 0, 0);
	row_init(&r, 0);
	r.status = 0;
	assert_int_equal(audit_submit_wait_flags(f->w, &r, AUDIT_SUBMIT_AWAIT_COMPLETION, &id), 0);
	row_init(&r, 2);
	r.status = 0; /* never completed: status unknown */
	assert_int_equal(audit_submit_wait(f->w, &r, NULL), 0);
	comp_init(&c, id, 404);
	(void)complete_wait(f, &c);
	open_store(f);
	audit_filter_init(&q);
	q.status = 404;
	assert_int_equal(audit_query(f->st, &q, 10, &rows, &n, &next), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].id, id);
	free(rows);
	q.status = 0;
	assert_int_equal(audit_query(f->st, &q, 10, &rows, &n, &next), 0);
	assert_int_equal(n, 1); /* the pre-completion status no longer matches */
	assert_int_not_equal(rows[0].id, id);
	free(rows);
}

static void test_verify_covers_completions(void **state)
{
	struct fx *f = *state;
	struct store_audit_completion c;
	struct store_audit_row r;
	uint8_t head[32];
	uint64_t checked;
	int64_t id, cid, bad = 0;

	open_writer(f, 0, 0, 0);
	row_init(&r, 0);
	assert_int_equal(audit_submit_wait_flags(f->w, &r, AUDIT_SUBMIT_AWAIT_COMPLETION, &id), 0);
	comp_init(&c, id, 200);
	cid = complete_wait(f, &c);
	submit_n(f, 2); /* rows chained after the completion */
	open_store(f);
	assert_int_equal(audit_verify(f->st, &bad, &checked, head), 0);
	assert_int_equal(checked, 4);
	/* Edit the completion: the chain breaks at it. */
	db_exec(f, "UPDATE audit_completions SET status = 500");
	assert_int_equal(audit_verify(f->st, &bad, &checked, NULL), -EBADMSG);
	assert_int_equal(bad, cid);
	db_exec(f, "UPDATE audit_completions SET status = 200");
	assert_int_equal(audit_verify(f->st, &bad, &checked, NULL), 0);
	/* Delete it: the row after it no longer links. */
	db_exec(f, "DELETE FROM audit_completions");
	assert_int_equal(audit_verify(f->st, &bad, &checked, NULL), -EBADMSG);
	assert_int_equal(bad, cid + 1);
}

static void test_verify_walks_many_pages_of_mixed_links(void **state)
{
	struct fx *f = *state;
	struct store_audit_completion c;
	struct store_audit_row r;
	uint64_t checked;
	int64_t id, bad = 0;
	int n = AUDIT_PAGE_ROWS + 20;

	open_writer(f, 0, 0, 0);
	for (int i = 0; i < n; i++) {
		row_init(&r, i);
		assert_int_equal(audit_submit_wait_flags(f->w, &r, AUDIT_SUBMIT_AWAIT_COMPLETION,
							 &id), 0);
		comp_init(&c, id, 200);
		(void)complete_wait(f, &c);
	}
	open_store(f);
	assert_int_equal(audit_verify(f->st, &bad, &checked, NULL), 0);
	assert_int_equal(checked, 2 * (uint64_t)n);
}

static void test_tail_holds_a_request_until_its_completion(void **state)
{
	struct fx *f = *state;
	struct store_audit_completion c;
	struct store_audit_filter flt;
	struct store_audit_row r, got;
	struct audit_tail *t;
	int64_t id;

	open_writer(f, 0, 0, 0);
	audit_filter_init(&flt);
	flt.status = 200; /* the merged status: the row as written has 0 */
	assert_int_equal(audit_tail_subscribe(f->w, &flt, 0, &t), 0);
	row_init(&r, 1);
	r.status = 0;
	assert_int_equal(audit_submit_wait_flags(f->w, &r, AUDIT_SUBMIT_AWAIT_COMPLETION, &id), 0);
	assert_int_equal(audit_tail_next(t, 0, &got), -ETIMEDOUT); /* held */
	comp_init(&c, id, 200);
	assert_int_equal(audit_complete(f->w, &c, NULL, NULL), 0);
	assert_int_equal(audit_tail_next(t, 5000, &got), 0);
	assert_int_equal(got.id, id);
	assert_int_equal(got.status, 200);
	assert_int_equal(got.bytes_down, 4567);
	assert_int_equal(got.completion_id, id + 1);
	assert_int_equal(audit_tail_next(t, 0, &got), -ETIMEDOUT); /* published once */
	audit_tail_close(t);
}

static void test_tail_publishes_an_uncompleted_request_after_the_hold(void **state)
{
	struct fx *f = *state;
	struct store_audit_row r, got;
	struct audit_tail *t;
	struct timespec t0, t1;
	int64_t id, ms;

	open_writer(f, 0, 0, 0);
	assert_int_equal(audit_tail_subscribe(f->w, NULL, 0, &t), 0);
	row_init(&r, 1);
	r.status = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(audit_submit_wait_flags(f->w, &r, AUDIT_SUBMIT_AWAIT_COMPLETION, &id), 0);
	assert_int_equal(audit_tail_next(t, AUDIT_TAIL_HOLD_MS + 5000, &got), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_true(ms >= AUDIT_TAIL_HOLD_MS - 50);
	assert_int_equal(got.id, id);
	assert_int_equal(got.status, 0); /* honest: unknown */
	assert_int_equal(got.completion_id, 0);
	audit_tail_close(t);
}

static void test_json_and_csv_carry_the_completion(void **state)
{
	struct fx *f = *state;
	struct store_audit_filter q;
	struct store_audit_completion c;
	struct store_audit_row r;
	struct sink s = { .len = 0 };
	int64_t id;

	open_writer(f, 0, 0, 0);
	row_init(&r, 0);
	r.status = 0;
	assert_int_equal(audit_submit_wait_flags(f->w, &r, AUDIT_SUBMIT_AWAIT_COMPLETION, &id), 0);
	comp_init(&c, id, 200);
	(void)complete_wait(f, &c);
	open_store(f);
	audit_filter_init(&q);
	assert_int_equal(audit_export(f->st, &q, AUDIT_JSONL, sink_write, &s), 1);
	assert_non_null(strstr(s.buf, "\"status\":200,"));
	assert_non_null(strstr(s.buf, "\"bytes_up\":321,\"bytes_down\":4567,\"duration_us\":8900,"));
	assert_non_null(strstr(s.buf, "\"completion_id\":2}"));
	s.len = 0;
	s.buf[0] = '\0';
	assert_int_equal(audit_export(f->st, &q, AUDIT_CSV, sink_write, &s), 1);
	assert_non_null(strstr(s.buf, ",321,4567,8900,"));
	assert_non_null(strstr(s.buf, ",2\r\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_redact_table),
		cmocka_unit_test(test_redact_cuts_long_output_after_redacting),
		cmocka_unit_test(test_validate_accepts_a_complete_row),
		cmocka_unit_test(test_validate_rejects_bad_rows),
		cmocka_unit_test(test_parse_time_durations),
		cmocka_unit_test(test_parse_time_rfc3339),
		cmocka_unit_test(test_parse_time_rejects_garbage),
		cmocka_unit_test(test_hash_covers_every_field_and_prev),
		cmocka_unit_test(test_filter_match_agrees_with_the_query),
		cmocka_unit_test_setup_teardown(test_chain_links_rows_and_verifies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_detects_an_edited_row, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_detects_a_deleted_row, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_of_an_empty_log_passes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acked_rows_survive_close_and_reopen_in_order,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_continues_an_existing_chain, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_batches_full_batches, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_window_gathers_a_partial_batch,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_queue_refuses_with_eagain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_submit_rejects_an_invalid_row_without_ack,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_commit_acks_an_error_and_stores_nothing,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_placeholder_and_credential_values_never_reach_the_db, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tail_receives_committed_rows_matching_its_filter,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_subscriber_is_dropped_with_a_marker, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_tail_ends_when_the_writer_closes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_query_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_query_external_user_is_strict_equality, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_query_pagination_cursor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_completion_merges_into_its_request_row, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_completion_bad_input_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_filter_sees_the_completed_status, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_verify_covers_completions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_walks_many_pages_of_mixed_links, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_tail_holds_a_request_until_its_completion, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_tail_publishes_an_uncompleted_request_after_the_hold,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_and_csv_carry_the_completion, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_export_jsonl_exact_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_export_csv_exact_bytes_and_formula_safe, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_export_streams_in_pages_newest_first, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
