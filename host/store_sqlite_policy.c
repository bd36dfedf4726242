/*
 * store_sqlite_policy — the network policy rows of store.h (modes,
 * allowlists, observed and pending hosts) in the SQLite back end.  Schema:
 * migration 4 in store_sqlite.c.
 *
 * Same rules as store_sqlite.c: constant SQL prepared once per handle, bound
 * parameters only, every column re-checked on the way out (-EUCLEAN).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_sqlite_internal.h"

enum pl_stmt {
	PL_MODE_GET, PL_MODE_SET,
	PL_ALLOW_LIST, PL_ALLOW_COUNT, PL_ALLOW_INSERT, PL_ALLOW_DELETE_PORT,
	PL_ALLOW_DELETE_ALL_PORTS, PL_ALLOW_CLEAR,
	PL_OBSERVED_RECORD, PL_OBSERVED_LIST, PL_OBSERVED_DELETE,
	PL_PENDING_RECORD, PL_PENDING_LIST, PL_PENDING_DELETE,
	PL__COUNT
};
_Static_assert((int)PL__COUNT <= (int)STORE_SQLITE_SLOTS_POLICY_N, "policy statement slots");

#define HIT_COLS "host, port, first_seen_us, last_seen_us, count"

/*
 * One statement per hit (one connection, or a batch of them merged in
 * memory by policy_tally): the row count is checked inside the INSERT, so
 * the cap holds even with several writers.  An existing row always counts
 * (the EXISTS arm), whatever the tally's size.  count saturates.
 */
#define HIT_RECORD(table) \
	"INSERT INTO " table " (sandbox_id, " HIT_COLS ")" \
	" SELECT ?1, ?2, ?3, ?4, ?6, ?7" \
	" WHERE (SELECT count(*) FROM " table " WHERE sandbox_id = ?1) < ?5" \
	"  OR EXISTS (SELECT 1 FROM " table " WHERE sandbox_id = ?1 AND host = ?2 AND port = ?3)" \
	" ON CONFLICT (sandbox_id, host, port) DO UPDATE SET" \
	"  count = CASE WHEN count <= 9223372036854775807 - excluded.count" \
	"   THEN count + excluded.count ELSE 9223372036854775807 END," \
	"  first_seen_us = min(first_seen_us, excluded.first_seen_us)," \
	"  last_seen_us = max(last_seen_us, excluded.last_seen_us)"

static const char *const pl_sql[PL__COUNT] = {
	[PL_MODE_GET] = "SELECT enforce FROM policy_modes WHERE sandbox_id = ?1",
	[PL_MODE_SET] = "INSERT INTO policy_modes (sandbox_id, enforce, updated_at_us)"
		" VALUES (?1, ?2, ?3) ON CONFLICT (sandbox_id) DO UPDATE SET"
		" enforce = excluded.enforce, updated_at_us = excluded.updated_at_us",
	[PL_ALLOW_LIST] = "SELECT pattern, port, created_at_us FROM policy_allow"
		" WHERE sandbox_id = ?1 ORDER BY pattern, port LIMIT ?2",
	[PL_ALLOW_COUNT] = "SELECT count(*) FROM policy_allow WHERE sandbox_id = ?1",
	[PL_ALLOW_INSERT] = "INSERT INTO policy_allow (sandbox_id, pattern, port, created_at_us)"
		" VALUES (?1, ?2, ?3, ?4) ON CONFLICT (sandbox_id, pattern, port) DO NOTHING",
	[PL_ALLOW_DELETE_PORT] = "DELETE FROM policy_allow"
		" WHERE sandbox_id = ?1 AND pattern = ?2 AND port = ?3",
	[PL_ALLOW_DELETE_ALL_PORTS] = "DELETE FROM policy_allow"
		" WHERE sandbox_id = ?1 AND pattern = ?2",
	[PL_ALLOW_CLEAR] = "DELETE FROM policy_allow WHERE sandbox_id = ?1",
	[PL_OBSERVED_RECORD] = HIT_RECORD("policy_observed"),
	[PL_OBSERVED_LIST] = "SELECT " HIT_COLS " FROM policy_observed WHERE sandbox_id = ?1"
		" ORDER BY host, port LIMIT ?2",
	[PL_OBSERVED_DELETE] = "DELETE FROM policy_observed"
		" WHERE sandbox_id = ?1 AND host = ?2 AND port = ?3",
	[PL_PENDING_RECORD] = HIT_RECORD("policy_pending"),
	[PL_PENDING_LIST] = "SELECT " HIT_COLS " FROM policy_pending WHERE sandbox_id = ?1"
		" ORDER BY last_seen_us DESC, host, port LIMIT ?2",
	[PL_PENDING_DELETE] = "DELETE FROM policy_pending"
		" WHERE sandbox_id = ?1 AND host = ?2 AND port = ?3",
};

static int pl_stmt(struct store *st, enum pl_stmt id, sqlite3_stmt **ret_stmt)
{
	return store_sqlite_stmt(st, STORE_SQLITE_SLOTS_POLICY + (unsigned)id, pl_sql[id],
				 ret_stmt);
}

static const char *pl_table(enum store_policy_hits which)
{
	return which == STORE_POLICY_PENDING ? "policy_pending" : "policy_observed";
}

/* ---- modes ------------------------------------------------------------- */

int store_policy_mode_get(struct store *st, const char *sandbox_id, bool *ret_enforce)
{
	sqlite3_stmt *s = NULL;
	int64_t v;
	int rc, r;

	if ((r = pl_stmt(st, PL_MODE_GET, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, sandbox_id, -1, SQLITE_STATIC)) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind policy_modes");
		goto out;
	}
	if ((r = store_sqlite_step(st, s, "read policy_modes")) <= 0) {
		if (r == 0)
			r = store_sqlite_failf(st, -ENOENT, "policy_modes: no such row");
		goto out;
	}
	v = sqlite3_column_int64(s, 0);
	if (v != 0 && v != 1) {
		r = store_sqlite_failf(st, -EUCLEAN, "policy_modes: row is malformed");
		goto out;
	}
	*ret_enforce = v == 1;
	r = 0;
out:
	store_sqlite_done(s);
	return r;
}

int store_policy_mode_set(struct store *st, const char *sandbox_id, bool enforce,
			  int64_t now_us)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = pl_stmt(st, PL_MODE_SET, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, sandbox_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(s, 2, enforce ? 1 : 0)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 3, now_us)) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind policy mode");
		goto out;
	}
	r = store_sqlite_run(st, s, "write policy_modes");
out:
	store_sqlite_done(s);
	return r;
}

/* ---- allowlist --------------------------------------------------------- */

typedef store_sqlite_read_fn pl_read_fn;

/* Bind ?1 = sandbox id, ?2 = LIMIT for max rows. */
static int pl_bind_list(sqlite3_stmt *s, const char *sandbox_id, size_t max)
{
	int rc = sqlite3_bind_text(s, 1, sandbox_id, -1, SQLITE_STATIC);

	return rc != SQLITE_OK ? rc : sqlite3_bind_int64(s, 2, store_sqlite_limit(max));
}

static int pl_read_entry(sqlite3_stmt *s, void *p)
{
	struct store_policy_entry *e = p;
	int64_t port = sqlite3_column_int64(s, 1);

	if (store_sqlite_col_text(s, 0, e->pattern, sizeof(e->pattern)) != 0 ||
	    port < 0 || port > 65535)
		return -EUCLEAN;
	e->port = (uint16_t)port;
	e->created_at_us = sqlite3_column_int64(s, 2);
	return 0;
}

int store_policy_allow_list(struct store *st, const char *sandbox_id, size_t max,
			    struct store_policy_entry **ret_rows, size_t *ret_n)
{
	sqlite3_stmt *s = NULL;
	void *rows = NULL;
	int rc, r;

	if ((r = pl_stmt(st, PL_ALLOW_LIST, &s)) != 0)
		goto out;
	if ((rc = pl_bind_list(s, sandbox_id, max)) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind allowlist");
		goto out;
	}
	r = store_sqlite_many(st, s, max, sizeof(**ret_rows), pl_read_entry, "policy_allow", &rows, ret_n);
	if (r == 0)
		*ret_rows = rows;
out:
	store_sqlite_done(s);
	return r;
}

int store_policy_allow_count(struct store *st, const char *sandbox_id, size_t *ret_count)
{
	sqlite3_stmt *s = NULL;
	int64_t n;
	int rc, r;

	if ((r = pl_stmt(st, PL_ALLOW_COUNT, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, sandbox_id, -1, SQLITE_STATIC)) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind allowlist count");
		goto out;
	}
	if ((r = store_sqlite_step(st, s, "count policy_allow")) <= 0) {
		if (r == 0)
			r = store_sqlite_failf(st, -EIO, "count policy_allow: no answer");
		goto out;
	}
	n = sqlite3_column_int64(s, 0);
	*ret_count = n > 0 ? (size_t)n : 0;
	r = 0;
out:
	store_sqlite_done(s);
	return r;
}

int store_policy_allow_insert(struct store *st, const char *sandbox_id,
			      const struct store_policy_entry *e)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = pl_stmt(st, PL_ALLOW_INSERT, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, sandbox_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(s, 2, e->pattern, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(s, 3, e->port)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 4, e->created_at_us)) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind allowlist entry");
		goto out;
	}
	if ((r = store_sqlite_run(st, s, "insert policy_allow")) == 0)
		r = store_sqlite_changes(st) > 0 ? 1 : 0;
out:
	store_sqlite_done(s);
	return r;
}

/* Run a DELETE keyed by ?1 sandbox, ?2 text, ?3 port (if port >= 0). */
static int pl_delete(struct store *st, enum pl_stmt id, const char *sandbox_id,
		     const char *text, int port, const char *what)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = pl_stmt(st, id, &s)) != 0)
		goto out;
	rc = sqlite3_bind_text(s, 1, sandbox_id, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && text)
		rc = sqlite3_bind_text(s, 2, text, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && port >= 0)
		rc = sqlite3_bind_int(s, 3, port);
	if (rc != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, what);
		goto out;
	}
	if ((r = store_sqlite_run(st, s, what)) == 0)
		r = store_sqlite_changes(st);
out:
	store_sqlite_done(s);
	return r;
}

int store_policy_allow_delete(struct store *st, const char *sandbox_id, const char *pattern,
			      int port)
{
	if (port > 65535)
		return store_sqlite_failf(st, -EINVAL, "policy_allow: port out of range");
	if (port < 0)
		return pl_delete(st, PL_ALLOW_DELETE_ALL_PORTS, sandbox_id, pattern, -1,
				 "delete policy_allow");
	return pl_delete(st, PL_ALLOW_DELETE_PORT, sandbox_id, pattern, port,
			 "delete policy_allow");
}

int store_policy_allow_clear(struct store *st, const char *sandbox_id)
{
	return pl_delete(st, PL_ALLOW_CLEAR, sandbox_id, NULL, -1, "clear policy_allow");
}

/* ---- observed and pending ---------------------------------------------- */

int store_policy_hit_record(struct store *st, enum store_policy_hits which,
			    const char *sandbox_id, const struct store_policy_hit *hit, size_t max)
{
	enum pl_stmt id = which == STORE_POLICY_PENDING ? PL_PENDING_RECORD : PL_OBSERVED_RECORD;
	sqlite3_stmt *s = NULL;
	int rc, r;

	if (hit->count < 1 || hit->port == 0 || hit->first_seen_us > hit->last_seen_us)
		return store_sqlite_failf(st, -EINVAL, "%s: malformed hit", pl_table(which));
	if ((r = pl_stmt(st, id, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, sandbox_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(s, 2, hit->host, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(s, 3, hit->port)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 4, hit->first_seen_us)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 5, max > INT64_MAX ? INT64_MAX : (int64_t)max)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 6, hit->last_seen_us)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 7, hit->count)) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind policy hit");
		goto out;
	}
	if ((r = store_sqlite_run(st, s, pl_table(which))) == 0 && store_sqlite_changes(st) == 0)
		r = store_sqlite_failf(st, -ENOSPC, "%s: sandbox has %zu hosts already",
				       pl_table(which), max);
out:
	store_sqlite_done(s);
	return r;
}

static int pl_read_hit(sqlite3_stmt *s, void *p)
{
	struct store_policy_hit *h = p;
	int64_t port = sqlite3_column_int64(s, 1);

	if (store_sqlite_col_text(s, 0, h->host, sizeof(h->host)) != 0 ||
	    port < 1 || port > 65535)
		return -EUCLEAN;
	h->port = (uint16_t)port;
	h->first_seen_us = sqlite3_column_int64(s, 2);
	h->last_seen_us = sqlite3_column_int64(s, 3);
	h->count = sqlite3_column_int64(s, 4);
	return h->count >= 1 ? 0 : -EUCLEAN;
}

int store_policy_hit_list(struct store *st, enum store_policy_hits which,
			  const char *sandbox_id, size_t max,
			  struct store_policy_hit **ret_rows, size_t *ret_n)
{
	enum pl_stmt id = which == STORE_POLICY_PENDING ? PL_PENDING_LIST : PL_OBSERVED_LIST;
	sqlite3_stmt *s = NULL;
	void *rows = NULL;
	int rc, r;

	if ((r = pl_stmt(st, id, &s)) != 0)
		goto out;
	if ((rc = pl_bind_list(s, sandbox_id, max)) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind host list");
		goto out;
	}
	r = store_sqlite_many(st, s, max, sizeof(**ret_rows), pl_read_hit, pl_table(which), &rows, ret_n);
	if (r == 0)
		*ret_rows = rows;
out:
	store_sqlite_done(s);
	return r;
}

int store_policy_hit_delete(struct store *st, enum store_policy_hits which,
			    const char *sandbox_id, const char *host, uint16_t port)
{
	enum pl_stmt id = which == STORE_POLICY_PENDING ? PL_PENDING_DELETE : PL_OBSERVED_DELETE;

	return pl_delete(st, id, sandbox_id, host, port, "delete policy host");
}
