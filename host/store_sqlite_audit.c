/*
 * store_sqlite_audit — audit rows (store.h, migration 5) and their
 * completions (migration 6) and retention (migration 7: the prune anchor,
 * the (id, time_us) index, the completions' status index) in the SQLite
 * back end.
 *
 * The insert, chain-walk, prune and count statements are cached in the
 * audit slots.  A query's WHERE clause is assembled from the constant
 * fragments of au_where[] (one per filter, each with its own fixed parameter
 * number) after a constant head that may name the index to use, so every
 * byte of SQL is still a constant of this file and every value is bound;
 * the statement is prepared per query because the planner must see which
 * filters are present to pick the index (an "?1 IS NULL OR col = ?1"
 * statement would scan the table), and the head is chosen from covering
 * counts (see AQ_SMALL_WINDOW and AQ_EQ_PROBE) because without STAT4 the
 * planner cannot tell a rare value from a common one.
 *
 * Queries read merged rows: audit_rows LEFT JOIN audit_completions on the
 * completion's request_id (UNIQUE, so at most one), the completion's
 * status, bytes and duration taking the row's place; every plan's head
 * keeps that join (alias r and c), so the status filter is always on the
 * merged status.  Chain walks read the two tables apart, as stored
 * (store_audit_list_after(), store_audit_completions_after()).
 */
#include "store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_sqlite_internal.h"

#define AUDIT_COLS "id, time_us, tenant_id, sandbox_id, external_user_id," \
	" external_workspace_id, host, port, scheme, method, path, status, action, reason," \
	" rules, secrets_swapped, secrets_flagged, bytes_up, bytes_down, duration_us," \
	" prev_hash, row_hash"
enum {
	AC_ID, AC_TIME, AC_TENANT, AC_SANDBOX, AC_EXT_USER, AC_EXT_WS, AC_HOST, AC_PORT,
	AC_SCHEME, AC_METHOD, AC_PATH, AC_STATUS, AC_ACTION, AC_REASON, AC_RULES,
	AC_SWAPPED, AC_FLAGGED, AC_UP, AC_DOWN, AC_DURATION, AC_PREV, AC_HASH,
	AC_COMPLETION, /* merged reads only */
};
/* AUDIT_COLS of the join, in the same order, plus the completion's id. */
#define AUDIT_MERGED_COLS "r.id, r.time_us, r.tenant_id, r.sandbox_id, r.external_user_id," \
	" r.external_workspace_id, r.host, r.port, r.scheme, r.method, r.path," \
	" coalesce(c.status, r.status), r.action, r.reason, r.rules, r.secrets_swapped," \
	" r.secrets_flagged, coalesce(c.bytes_up, r.bytes_up)," \
	" coalesce(c.bytes_down, r.bytes_down), coalesce(c.duration_us, r.duration_us)," \
	" r.prev_hash, r.row_hash, c.id"
#define COMPLETION_COLS "id, request_id, time_us, status, bytes_up, bytes_down, duration_us," \
	" prev_hash, row_hash"
enum { CC_ID, CC_REQUEST, CC_TIME, CC_STATUS, CC_UP, CC_DOWN, CC_DURATION, CC_PREV, CC_HASH };

enum au_stmt {
	AU_INSERT, AU_LAST, AU_LIST_AFTER, AU_COMP_INSERT, AU_COMP_AFTER, AU_TIME_PROBE,
	AU_ANCHOR_GET, AU_PRUNE_WALK, AU_ROW_COUNT, AU_DELETE_UPTO, AU_DELETE_COMP_UPTO,
	AU_ANCHOR_PUT,
	AU_PROBE_TENANT, AU_PROBE_SANDBOX, AU_PROBE_HOST, AU_PROBE_EXT_USER, AU_PROBE_EXT_WS,
	AU_PROBE_STATUS, AU_PROBE_ACTION,
	AU__COUNT
};
_Static_assert((int)AU__COUNT <= (int)STORE_SQLITE_SLOTS_AUDIT_N, "audit statement slots");

static const char *const au_sql[AU__COUNT] = {
	[AU_INSERT] = "INSERT INTO audit_rows (" AUDIT_COLS ") VALUES (?1, ?2, ?3, ?4, ?5,"
		" ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
	/* The newest link of the chain, from either table (each side is one
	 * step down its primary key). */
	[AU_LAST] = "SELECT id, row_hash FROM ("
		"SELECT * FROM (SELECT id, row_hash FROM audit_rows ORDER BY id DESC LIMIT 1)"
		" UNION ALL"
		" SELECT * FROM (SELECT id, row_hash FROM audit_completions ORDER BY id DESC LIMIT 1))"
		" ORDER BY id DESC LIMIT 1",
	[AU_LIST_AFTER] = "SELECT " AUDIT_COLS " FROM audit_rows WHERE id > ?1"
		" ORDER BY id LIMIT ?2",
	[AU_COMP_INSERT] = "INSERT INTO audit_completions (" COMPLETION_COLS ") VALUES (?1, ?2,"
		" ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[AU_COMP_AFTER] = "SELECT " COMPLETION_COLS " FROM audit_completions WHERE id > ?1"
		" ORDER BY id LIMIT ?2",
	/* Rows of a time window (and below a cursor), counted up to ?4 on
	 * the time index alone (covering: entries are (time_us, id)). */
	[AU_TIME_PROBE] = "SELECT count(*) FROM (SELECT 1 FROM audit_rows"
		" INDEXED BY audit_rows_by_time"
		" WHERE time_us >= ?1 AND time_us < ?2 AND id < ?3 LIMIT ?4)",
	[AU_ANCHOR_GET] = "SELECT id, row_hash FROM audit_anchor WHERE one = 1",
	/* The oldest links of the chain, both tables merged in id order (each
	 * side one step along its primary key); kind 0 = row, 1 = completion. */
	[AU_PRUNE_WALK] = "SELECT id, time_us, row_hash, 0, 0 FROM audit_rows"
		" UNION ALL SELECT id, time_us, row_hash, 1, request_id FROM audit_completions"
		" ORDER BY 1 LIMIT ?1",
	[AU_ROW_COUNT] = "SELECT count(*) FROM audit_rows",
	[AU_DELETE_UPTO] = "DELETE FROM audit_rows WHERE id <= ?1",
	[AU_DELETE_COMP_UPTO] = "DELETE FROM audit_completions WHERE id <= ?1",
	[AU_ANCHOR_PUT] = "INSERT INTO audit_anchor (one, id, row_hash) VALUES (1, ?1, ?2)"
		" ON CONFLICT (one) DO UPDATE SET id = excluded.id, row_hash = excluded.row_hash",
	/* Rows of one equality filter, counted up to ?11 on its own index
	 * (covering); parameter numbers are au_where[]'s, so au_bind_filter()
	 * binds them (a statement may leave numbers unused). */
#define AU_PROBE(col, param) "SELECT count(*) FROM (SELECT 1 FROM audit_rows WHERE " \
	col " = " param " LIMIT ?11)"
	[AU_PROBE_TENANT] = AU_PROBE("tenant_id", "?3"),
	[AU_PROBE_SANDBOX] = AU_PROBE("sandbox_id", "?4"),
	[AU_PROBE_HOST] = AU_PROBE("host", "?5"),
	[AU_PROBE_EXT_USER] = AU_PROBE("external_user_id", "?6"),
	[AU_PROBE_EXT_WS] = AU_PROBE("external_workspace_id", "?7"),
	/* The merged status is the completion's or, without one, the row's:
	 * an upper bound of its rows is the completions with it plus the rows
	 * written with it (an allowed HTTP row is written with 0, so for any
	 * other status the second term is mostly rows never completed). */
	[AU_PROBE_STATUS] = "SELECT (SELECT count(*) FROM (SELECT 1 FROM audit_completions"
		" WHERE status = ?8 LIMIT ?11)) + (" AU_PROBE("status", "?8") ")",
	[AU_PROBE_ACTION] = AU_PROBE("action", "?9"),
#undef AU_PROBE
};

static const char *const au_scheme_names[] = { "http", "https", "tcp" };
static const char *const au_action_names[] = { "allow", "deny", "error" };

/* Query filters: fragment and parameter number (bound in au_bind_filter). */
enum { AQ_SINCE = 1, AQ_UNTIL, AQ_TENANT, AQ_SANDBOX, AQ_HOST, AQ_EXT_USER, AQ_EXT_WS,
       AQ_STATUS, AQ_ACTION, AQ_BEFORE, AQ_LIMIT };
static const char *const au_where[] = {
	[AQ_SINCE] = " AND r.time_us >= ?1",
	[AQ_UNTIL] = " AND r.time_us < ?2",
	[AQ_TENANT] = " AND r.tenant_id = ?3",
	[AQ_SANDBOX] = " AND r.sandbox_id = ?4",
	[AQ_HOST] = " AND r.host = ?5",
	[AQ_EXT_USER] = " AND r.external_user_id = ?6",
	[AQ_EXT_WS] = " AND r.external_workspace_id = ?7",
	[AQ_STATUS] = " AND coalesce(c.status, r.status) = ?8", /* the merged status */
	[AQ_ACTION] = " AND r.action = ?9",
	[AQ_BEFORE] = " AND r.id < ?10",
};
#define AQ_JOIN " LEFT JOIN audit_completions c ON c.request_id = r.id"
#define AQ_HEAD "SELECT " AUDIT_MERGED_COLS " FROM audit_rows r" AQ_JOIN " WHERE 1"
/* The time fragments for the id walks: '+' keeps the planner off the time
 * index (it would read and sort the whole window). */
static const char *const au_where_walk[] = {
	[AQ_SINCE] = " AND +r.time_us >= ?1",
	[AQ_UNTIL] = " AND +r.time_us < ?2",
};
/*
 * Newest first is "walk id backwards until limit rows matched", which is
 * what the planner picks for a time filter; it is fast when the window
 * holds the newest rows and slow when it holds few or none of them (a
 * window that matches nothing walked the whole table: 85-97 ms over 1 M
 * rows).  Without STAT4 the planner cannot tell the two apart from bound
 * values, so au_time_window_small() counts the window on the time index
 * first (covering, capped at AQ_SMALL_WINDOW entries): a smaller window is
 * read through that index, its ids top-k sorted in the subquery and only
 * the page's rows fetched; a larger one is walked by id.  The subquery
 * joins the completions too, for the merged status filter (SQLite drops
 * the join when no filter reads c: request_id is UNIQUE).
 */
#define AQ_HEAD_TIME "SELECT " AUDIT_MERGED_COLS " FROM audit_rows r" AQ_JOIN \
	" WHERE r.id IN (SELECT r.id FROM audit_rows r INDEXED BY audit_rows_by_time" \
	AQ_JOIN " WHERE 1"
#define AQ_TAIL_TIME " ORDER BY r.id DESC LIMIT ?11) ORDER BY r.id DESC"
/* A larger window with no other filter than the cursor: the id walk on the
 * narrow (id, time_us) index, the page's rows fetched after. */
#define AQ_HEAD_IDWALK "SELECT " AUDIT_MERGED_COLS " FROM audit_rows r" AQ_JOIN \
	" WHERE r.id IN (SELECT r.id FROM audit_rows r INDEXED BY audit_rows_by_id_time WHERE 1"
#define AQ_SMALL_WINDOW 65536
/*
 * Equality filters: the planner picks one index and checks the other
 * columns row by row, but it cannot know which value is rare (status 503
 * vs action allow), and the wrong pick walks most of the table when the
 * intersection is small (23-28 ms over 1 M rows).  au_pick_index() counts
 * each filter on its index (capped at AQ_EQ_PROBE) and the query is forced
 * onto the smallest; when every count reaches the cap the planner chooses.
 * The merged status has no index of its own: its head reads the ids of the
 * completions with that status and of the rows written with it (both
 * indexes, at most 2 * AQ_EQ_PROBE ids) and au_where[AQ_STATUS] keeps the
 * rows whose merged status matches; it is taken even for status alone,
 * which the planner could only answer by walking every row.  NOT INDEXED
 * keeps the planner on those ids (rowid lookups, newest first, no sort):
 * with another equality filter it would walk that filter's index instead
 * (status 503 + allow: 6 ms, 0.4 ms through the ids).
 */
#define AQ_EQ_PROBE 8192
#define AQ_HEAD_BY(index) "SELECT " AUDIT_MERGED_COLS " FROM audit_rows r INDEXED BY " \
	index AQ_JOIN " WHERE 1"
#define AQ_HEAD_STATUS "SELECT " AUDIT_MERGED_COLS " FROM audit_rows r NOT INDEXED" AQ_JOIN \
	" WHERE r.id IN (SELECT request_id FROM audit_completions" \
	" INDEXED BY audit_completions_by_status WHERE status = ?8" \
	" UNION ALL SELECT id FROM audit_rows INDEXED BY audit_rows_by_status WHERE status = ?8)"
static const struct {
	int aq;
	enum au_stmt probe;
	const char *head;
} au_eq[] = {
	{ AQ_TENANT, AU_PROBE_TENANT, AQ_HEAD_BY("audit_rows_by_tenant") },
	{ AQ_SANDBOX, AU_PROBE_SANDBOX, AQ_HEAD_BY("audit_rows_by_sandbox") },
	{ AQ_HOST, AU_PROBE_HOST, AQ_HEAD_BY("audit_rows_by_host") },
	{ AQ_EXT_USER, AU_PROBE_EXT_USER, AQ_HEAD_BY("audit_rows_by_external_user") },
	{ AQ_EXT_WS, AU_PROBE_EXT_WS, AQ_HEAD_BY("audit_rows_by_external_workspace") },
	{ AQ_STATUS, AU_PROBE_STATUS, AQ_HEAD_STATUS },
	{ AQ_ACTION, AU_PROBE_ACTION, AQ_HEAD_BY("audit_rows_by_action") },
};
#define AQ_TAIL " ORDER BY r.id DESC LIMIT ?11"

static int au_stmt(struct store *st, enum au_stmt id, sqlite3_stmt **ret_stmt)
{
	return store_sqlite_stmt(st, STORE_SQLITE_SLOTS_AUDIT + (unsigned)id, au_sql[id],
				 ret_stmt);
}

/* ---- lists ------------------------------------------------------------- */

static int au_join(char *buf, size_t size, const void *items, size_t item_size, size_t n)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		const char *s = (const char *)items + i * item_size;
		size_t len = strnlen(s, item_size);

		if (len == item_size || len == 0 || memchr(s, ',', len) ||
		    len + 2 > size - off)
			return -EINVAL;
		if (i > 0)
			buf[off++] = ',';
		memcpy(buf + off, s, len);
		off += len;
		buf[off] = '\0';
	}
	return 0;
}

static int au_split(const unsigned char *text, int len, void *items, size_t item_size,
		    size_t *ret_n)
{
	size_t n = 0;
	int start = 0;

	if (len == 0) {
		*ret_n = 0;
		return 0;
	}
	for (int i = 0; i <= len; i++) {
		char *dst;

		if (i < len && text[i] != ',')
			continue;
		if (i == start || n == STORE_AUDIT_LIST_MAX || (size_t)(i - start) >= item_size)
			return -EUCLEAN;
		dst = (char *)items + n * item_size;
		memcpy(dst, text + start, (size_t)(i - start));
		dst[i - start] = '\0';
		n++;
		start = i + 1;
	}
	*ret_n = n;
	return 0;
}

/* ---- rows -------------------------------------------------------------- */

static int au_enum(const char *const *names, size_t n, const unsigned char *text)
{
	for (size_t i = 0; text && i < n; i++)
		if (strcmp((const char *)text, names[i]) == 0)
			return (int)i;
	return -1;
}

static int au_opt_text(sqlite3_stmt *s, int col, char *buf, size_t size)
{
	if (sqlite3_column_type(s, col) == SQLITE_NULL) {
		buf[0] = '\0';
		return 0;
	}
	return store_sqlite_col_text(s, col, buf, size);
}

/* Text that may be empty ("" for tcp methods and paths, empty reasons). */
static int au_text0(sqlite3_stmt *s, int col, char *buf, size_t size)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	int len = sqlite3_column_bytes(s, col);

	if (sqlite3_column_type(s, col) != SQLITE_TEXT || !t || len < 0 ||
	    (size_t)len >= size || memchr(t, '\0', (size_t)len))
		return -EUCLEAN;
	memcpy(buf, t, (size_t)len);
	buf[len] = '\0';
	return 0;
}

static int au_hash_col(sqlite3_stmt *s, int col, uint8_t *out)
{
	const void *b = sqlite3_column_blob(s, col);

	if (sqlite3_column_type(s, col) != SQLITE_BLOB ||
	    sqlite3_column_bytes(s, col) != STORE_AUDIT_HASH_BYTES || !b)
		return -EUCLEAN;
	memcpy(out, b, STORE_AUDIT_HASH_BYTES);
	return 0;
}

static int au_read_row(struct store *st, sqlite3_stmt *s, struct store_audit_row *row)
{
	int scheme, action, r;
	int64_t port, status;

	memset(row, 0, sizeof(*row));
	row->id = sqlite3_column_int64(s, AC_ID);
	row->time_us = sqlite3_column_int64(s, AC_TIME);
	port = sqlite3_column_int64(s, AC_PORT);
	status = sqlite3_column_int64(s, AC_STATUS);
	scheme = au_enum(au_scheme_names, 3, sqlite3_column_text(s, AC_SCHEME));
	action = au_enum(au_action_names, 3, sqlite3_column_text(s, AC_ACTION));
	row->bytes_up = sqlite3_column_int64(s, AC_UP);
	row->bytes_down = sqlite3_column_int64(s, AC_DOWN);
	row->duration_us = sqlite3_column_int64(s, AC_DURATION);
	if ((r = store_sqlite_col_text(s, AC_TENANT, row->tenant_id, sizeof(row->tenant_id))) != 0 ||
	    (r = store_sqlite_col_text(s, AC_SANDBOX, row->sandbox_id, sizeof(row->sandbox_id))) != 0 ||
	    (r = au_opt_text(s, AC_EXT_USER, row->external_user_id,
			     sizeof(row->external_user_id))) != 0 ||
	    (r = au_opt_text(s, AC_EXT_WS, row->external_workspace_id,
			     sizeof(row->external_workspace_id))) != 0 ||
	    (r = store_sqlite_col_text(s, AC_HOST, row->host, sizeof(row->host))) != 0 ||
	    (r = au_text0(s, AC_METHOD, row->method, sizeof(row->method))) != 0 ||
	    (r = au_text0(s, AC_PATH, row->path, sizeof(row->path))) != 0 ||
	    (r = au_text0(s, AC_REASON, row->reason, sizeof(row->reason))) != 0 ||
	    (r = au_split(sqlite3_column_text(s, AC_RULES), sqlite3_column_bytes(s, AC_RULES),
			  row->rules, sizeof(row->rules[0]), &row->n_rules)) != 0 ||
	    (r = au_split(sqlite3_column_text(s, AC_SWAPPED), sqlite3_column_bytes(s, AC_SWAPPED),
			  row->swapped, sizeof(row->swapped[0]), &row->n_swapped)) != 0 ||
	    (r = au_split(sqlite3_column_text(s, AC_FLAGGED), sqlite3_column_bytes(s, AC_FLAGGED),
			  row->flagged, sizeof(row->flagged[0]), &row->n_flagged)) != 0 ||
	    (r = au_hash_col(s, AC_PREV, row->prev_hash)) != 0 ||
	    (r = au_hash_col(s, AC_HASH, row->row_hash)) != 0)
		return store_sqlite_failf(st, r, "malformed row in audit_rows");
	if (row->id < 1 || port < 0 || port > 65535 || status < 0 || status > 999 ||
	    scheme < 0 || action < 0 || row->bytes_up < 0 || row->bytes_down < 0 ||
	    row->duration_us < 0)
		return store_sqlite_failf(st, -EUCLEAN, "malformed row %lld in audit_rows",
					  (long long)row->id);
	if (sqlite3_column_count(s) > AC_COMPLETION &&
	    sqlite3_column_type(s, AC_COMPLETION) != SQLITE_NULL &&
	    (row->completion_id = sqlite3_column_int64(s, AC_COMPLETION)) <= row->id)
		return store_sqlite_failf(st, -EUCLEAN, "malformed completion of row %lld",
					  (long long)row->id);
	row->port = (uint16_t)port;
	row->status = (uint16_t)status;
	row->scheme = (enum store_audit_scheme)scheme;
	row->action = (enum store_audit_action)action;
	return 0;
}

static int au_bind_text0(sqlite3_stmt *s, int idx, const char *text, size_t size)
{
	size_t len = strnlen(text, size);

	if (len == size)
		return SQLITE_TOOBIG;
	return sqlite3_bind_text(s, idx, text, (int)len, SQLITE_STATIC);
}

static int au_bind_opt(sqlite3_stmt *s, int idx, const char *text, size_t size)
{
	return text[0] ? au_bind_text0(s, idx, text, size) : sqlite3_bind_null(s, idx);
}

int store_audit_insert(struct store *st, const struct store_audit_row *row)
{
	char rules[STORE_AUDIT_LIST_MAX * (STORE_AUDIT_RULE_MAX + 1) + 1];
	char swapped[STORE_AUDIT_LIST_MAX * (STORE_NAME_MAX + 1) + 1];
	char flagged[sizeof(swapped)];
	sqlite3_stmt *s = NULL;
	int r;

	if ((unsigned)row->scheme > STORE_AUDIT_TCP || (unsigned)row->action > STORE_AUDIT_ERROR ||
	    row->n_rules > STORE_AUDIT_LIST_MAX || row->n_swapped > STORE_AUDIT_LIST_MAX ||
	    row->n_flagged > STORE_AUDIT_LIST_MAX ||
	    au_join(rules, sizeof(rules), row->rules, sizeof(row->rules[0]), row->n_rules) != 0 ||
	    au_join(swapped, sizeof(swapped), row->swapped, sizeof(row->swapped[0]),
		    row->n_swapped) != 0 ||
	    au_join(flagged, sizeof(flagged), row->flagged, sizeof(row->flagged[0]),
		    row->n_flagged) != 0)
		return store_sqlite_failf(st, -EINVAL, "audit row %lld is malformed",
					  (long long)row->id);
	if ((r = au_stmt(st, AU_INSERT, &s)) != 0)
		return r;
	if (sqlite3_bind_int64(s, 1, row->id) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 2, row->time_us) != SQLITE_OK ||
	    au_bind_text0(s, 3, row->tenant_id, sizeof(row->tenant_id)) != SQLITE_OK ||
	    au_bind_text0(s, 4, row->sandbox_id, sizeof(row->sandbox_id)) != SQLITE_OK ||
	    au_bind_opt(s, 5, row->external_user_id, sizeof(row->external_user_id)) != SQLITE_OK ||
	    au_bind_opt(s, 6, row->external_workspace_id,
			sizeof(row->external_workspace_id)) != SQLITE_OK ||
	    au_bind_text0(s, 7, row->host, sizeof(row->host)) != SQLITE_OK ||
	    sqlite3_bind_int(s, 8, row->port) != SQLITE_OK ||
	    sqlite3_bind_text(s, 9, au_scheme_names[row->scheme], -1, SQLITE_STATIC) != SQLITE_OK ||
	    au_bind_text0(s, 10, row->method, sizeof(row->method)) != SQLITE_OK ||
	    au_bind_text0(s, 11, row->path, sizeof(row->path)) != SQLITE_OK ||
	    sqlite3_bind_int(s, 12, row->status) != SQLITE_OK ||
	    sqlite3_bind_text(s, 13, au_action_names[row->action], -1, SQLITE_STATIC) != SQLITE_OK ||
	    au_bind_text0(s, 14, row->reason, sizeof(row->reason)) != SQLITE_OK ||
	    sqlite3_bind_text(s, 15, rules, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(s, 16, swapped, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(s, 17, flagged, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 18, row->bytes_up) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 19, row->bytes_down) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 20, row->duration_us) != SQLITE_OK ||
	    sqlite3_bind_blob(s, 21, row->prev_hash, STORE_AUDIT_HASH_BYTES,
			      SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_blob(s, 22, row->row_hash, STORE_AUDIT_HASH_BYTES,
			      SQLITE_STATIC) != SQLITE_OK) {
		store_sqlite_done(s);
		return store_sqlite_failf(st, -EINVAL, "cannot bind audit row %lld",
					  (long long)row->id);
	}
	r = store_sqlite_run(st, s, "insert audit row");
	store_sqlite_done(s);
	return r;
}

/* id and hash of the one row of a "SELECT id, hash" statement; -ENOENT if none. */
static int au_id_hash(struct store *st, enum au_stmt id, const char *what, int64_t *ret_id,
		      uint8_t ret_hash[STORE_AUDIT_HASH_BYTES])
{
	uint8_t hash[STORE_AUDIT_HASH_BYTES];
	sqlite3_stmt *s = NULL;
	int64_t v = 0;
	int r;

	if ((r = au_stmt(st, id, &s)) != 0)
		return r;
	r = store_sqlite_step(st, s, what);
	if (r == 0)
		r = -ENOENT;
	if (r == 1) {
		v = sqlite3_column_int64(s, 0);
		r = au_hash_col(s, 1, hash);
		if (r != 0 || v < 1)
			r = store_sqlite_failf(st, -EUCLEAN, "%s: malformed row", what);
	}
	store_sqlite_done(s);
	if (r < 0)
		return r;
	*ret_id = v;
	memcpy(ret_hash, hash, sizeof(hash));
	return 0;
}

int store_audit_completion_insert(struct store *st, const struct store_audit_completion *c)
{
	sqlite3_stmt *s = NULL;
	int r;

	if (c->id < 1 || c->request_id < 1 || c->request_id >= c->id || c->status > 999 ||
	    c->bytes_up < 0 || c->bytes_down < 0 || c->duration_us < 0)
		return store_sqlite_failf(st, -EINVAL, "audit completion %lld is malformed",
					  (long long)c->id);
	if ((r = au_stmt(st, AU_COMP_INSERT, &s)) != 0)
		return r;
	if (sqlite3_bind_int64(s, 1, c->id) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 2, c->request_id) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 3, c->time_us) != SQLITE_OK ||
	    sqlite3_bind_int(s, 4, c->status) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 5, c->bytes_up) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 6, c->bytes_down) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 7, c->duration_us) != SQLITE_OK ||
	    sqlite3_bind_blob(s, 8, c->prev_hash, STORE_AUDIT_HASH_BYTES,
			      SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_blob(s, 9, c->row_hash, STORE_AUDIT_HASH_BYTES,
			      SQLITE_STATIC) != SQLITE_OK) {
		store_sqlite_done(s);
		return store_sqlite_failf(st, -EINVAL, "cannot bind audit completion %lld",
					  (long long)c->id);
	}
	r = store_sqlite_run(st, s, "insert audit completion");
	store_sqlite_done(s);
	return r;
}

static int au_read_completion(struct store *st, sqlite3_stmt *s, struct store_audit_completion *c)
{
	int64_t status;

	memset(c, 0, sizeof(*c));
	c->id = sqlite3_column_int64(s, CC_ID);
	c->request_id = sqlite3_column_int64(s, CC_REQUEST);
	c->time_us = sqlite3_column_int64(s, CC_TIME);
	status = sqlite3_column_int64(s, CC_STATUS);
	c->bytes_up = sqlite3_column_int64(s, CC_UP);
	c->bytes_down = sqlite3_column_int64(s, CC_DOWN);
	c->duration_us = sqlite3_column_int64(s, CC_DURATION);
	if (c->id < 1 || c->request_id < 1 || c->request_id >= c->id || status < 0 ||
	    status > 999 || c->bytes_up < 0 || c->bytes_down < 0 || c->duration_us < 0 ||
	    au_hash_col(s, CC_PREV, c->prev_hash) != 0 || au_hash_col(s, CC_HASH, c->row_hash) != 0)
		return store_sqlite_failf(st, -EUCLEAN, "malformed completion %lld in audit_completions",
					  (long long)c->id);
	c->status = (uint16_t)status;
	return 0;
}

int store_audit_completions_after(struct store *st, int64_t after_id, size_t max,
				  struct store_audit_completion **ret, size_t *ret_n)
{
	struct store_audit_completion *cs = NULL;
	sqlite3_stmt *s = NULL;
	size_t n = 0;
	int r = 0;

	if ((r = au_stmt(st, AU_COMP_AFTER, &s)) != 0)
		return r;
	if (sqlite3_bind_int64(s, 1, after_id) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 2, (int64_t)max) != SQLITE_OK) {
		r = store_sqlite_failf(st, -EINVAL, "cannot bind audit completion page");
		goto out;
	}
	if (max > 0 && !(cs = calloc(max, sizeof(*cs)))) {
		r = store_sqlite_failf(st, -ENOMEM, "out of memory");
		goto out;
	}
	while (n < max && (r = store_sqlite_step(st, s, "read audit completions")) == 1) {
		if ((r = au_read_completion(st, s, &cs[n])) != 0)
			goto out;
		n++;
	}
	if (n < max && r < 0)
		goto out;
	r = 0;
	*ret = cs;
	*ret_n = n;
	cs = NULL;
out:
	free(cs);
	store_sqlite_done(s);
	return r;
}

int store_audit_last(struct store *st, int64_t *ret_id, uint8_t ret_hash[STORE_AUDIT_HASH_BYTES])
{
	int r = au_id_hash(st, AU_LAST, "read last audit link", ret_id, ret_hash);

	/* Every link pruned: the next row or completion links to the anchor. */
	if (r == -ENOENT)
		r = au_id_hash(st, AU_ANCHOR_GET, "read audit anchor", ret_id, ret_hash);
	return r;
}

int store_audit_anchor(struct store *st, int64_t *ret_id, uint8_t ret_hash[STORE_AUDIT_HASH_BYTES])
{
	return au_id_hash(st, AU_ANCHOR_GET, "read audit anchor", ret_id, ret_hash);
}

static int au_count_rows(struct store *st, int64_t *ret_n)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = au_stmt(st, AU_ROW_COUNT, &s)) != 0)
		return r;
	if ((r = store_sqlite_step(st, s, "count audit rows")) == 1) {
		*ret_n = sqlite3_column_int64(s, 0);
		r = 0;
	} else if (r == 0) {
		r = store_sqlite_failf(st, -EIO, "count audit rows: no answer");
	}
	store_sqlite_done(s);
	return r;
}

/*
 * The last id of the prunable prefix among the oldest max links (0: none)
 * and its hash.  The prefix is one of the chain, rows and completions alike
 * in id order, so what remains still links from the anchor.  A row goes
 * when it is older than before_us or more than keep_rows rows (requests,
 * what queries show) remain with it; a completion when it is older than
 * before_us or its request row went (now or before: request_id <= the
 * anchor).  A completion whose row goes but which is not in the prefix yet
 * stays behind until its turn: queries read rows and join completions to
 * them, so it is never shown, and verify checks it as a link.
 */
static int au_prune_upto(struct store *st, int64_t before_us, uint64_t keep_rows, size_t max,
			 int64_t *ret_upto, uint8_t hash[STORE_AUDIT_HASH_BYTES])
{
	uint8_t anchor_hash[STORE_AUDIT_HASH_BYTES];
	int64_t rows_left = 0, upto = 0, anchor = 0;
	sqlite3_stmt *s = NULL;
	int r;

	r = au_id_hash(st, AU_ANCHOR_GET, "read audit anchor", &anchor, anchor_hash);
	if (r != 0 && r != -ENOENT)
		return r;
	if (keep_rows != 0 && (r = au_count_rows(st, &rows_left)) != 0)
		return r;
	if ((r = au_stmt(st, AU_PRUNE_WALK, &s)) != 0)
		return r;
	if (sqlite3_bind_int64(s, 1, (int64_t)max) != SQLITE_OK) {
		store_sqlite_done(s);
		return store_sqlite_failf(st, -EINVAL, "cannot bind audit prune walk");
	}
	while ((r = store_sqlite_step(st, s, "read oldest audit links")) == 1) {
		int64_t id = sqlite3_column_int64(s, 0), t = sqlite3_column_int64(s, 1);
		bool completion = sqlite3_column_int(s, 3) != 0;
		int64_t request = sqlite3_column_int64(s, 4);
		bool too_old = before_us != 0 && t < before_us;
		bool too_many = completion ? request <= (upto ? upto : anchor)
					   : keep_rows != 0 && (uint64_t)rows_left > keep_rows;

		if (!too_old && !too_many)
			break;
		if ((r = au_hash_col(s, 2, hash)) != 0) {
			r = store_sqlite_failf(st, -EUCLEAN, "malformed link %lld in the audit log",
					       (long long)id);
			break;
		}
		if (!completion)
			rows_left--;
		upto = id;
	}
	store_sqlite_done(s);
	if (r < 0)
		return r;
	*ret_upto = upto;
	return 0;
}

static int au_delete_upto(struct store *st, enum au_stmt id, int64_t upto, int *ret_deleted)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = au_stmt(st, id, &s)) != 0)
		return r;
	if (sqlite3_bind_int64(s, 1, upto) != SQLITE_OK)
		r = store_sqlite_failf(st, -EINVAL, "cannot bind audit prune");
	else
		r = store_sqlite_run(st, s, "delete oldest audit links");
	store_sqlite_done(s);
	if (r == 0)
		*ret_deleted += store_sqlite_changes(st);
	return r;
}

int store_audit_prune(struct store *st, int64_t before_us, uint64_t keep_rows, size_t max)
{
	uint8_t hash[STORE_AUDIT_HASH_BYTES];
	sqlite3_stmt *s = NULL;
	int64_t upto = 0;
	int r, deleted = 0;

	if (max == 0 || max > INT32_MAX || before_us < 0)
		return store_sqlite_failf(st, -EINVAL, "audit prune arguments out of range");
	if (before_us == 0 && keep_rows == 0)
		return 0;
	if ((r = au_prune_upto(st, before_us, keep_rows, max, &upto, hash)) != 0)
		return r;
	if (upto == 0)
		return 0;
	if ((r = au_delete_upto(st, AU_DELETE_UPTO, upto, &deleted)) != 0 ||
	    (r = au_delete_upto(st, AU_DELETE_COMP_UPTO, upto, &deleted)) != 0 ||
	    (r = au_stmt(st, AU_ANCHOR_PUT, &s)) != 0)
		return r;
	if (sqlite3_bind_int64(s, 1, upto) != SQLITE_OK ||
	    sqlite3_bind_blob(s, 2, hash, sizeof(hash), SQLITE_STATIC) != SQLITE_OK)
		r = store_sqlite_failf(st, -EINVAL, "cannot bind audit anchor");
	else
		r = store_sqlite_run(st, s, "move audit anchor");
	store_sqlite_done(s);
	return r != 0 ? r : deleted;
}

/* Step s to the end (or max rows) into a malloc'd array. */
static int au_collect(struct store *st, sqlite3_stmt *s, size_t max,
		      struct store_audit_row **ret_rows, size_t *ret_n)
{
	struct store_audit_row *rows = NULL;
	size_t n = 0;
	int r = 0;

	if (max > 0 && !(rows = calloc(max, sizeof(*rows))))
		return store_sqlite_failf(st, -ENOMEM, "out of memory");
	while (n < max && (r = store_sqlite_step(st, s, "read audit rows")) == 1) {
		if ((r = au_read_row(st, s, &rows[n])) != 0)
			goto fail;
		n++;
	}
	if (n < max && r < 0)
		goto fail;
	*ret_rows = rows;
	*ret_n = n;
	return 0;
fail:
	free(rows);
	return r;
}

int store_audit_list_after(struct store *st, int64_t after_id, size_t max,
			   struct store_audit_row **ret_rows, size_t *ret_n)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = au_stmt(st, AU_LIST_AFTER, &s)) != 0)
		return r;
	if (sqlite3_bind_int64(s, 1, after_id) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 2, (int64_t)max) != SQLITE_OK)
		r = store_sqlite_failf(st, -EINVAL, "cannot bind audit page");
	else
		r = au_collect(st, s, max, ret_rows, ret_n);
	store_sqlite_done(s);
	return r;
}

static int au_bind_filter(sqlite3_stmt *s, const struct store_audit_filter *f, size_t max)
{
	int rc = SQLITE_OK;

	if (f->since_us)
		rc |= sqlite3_bind_int64(s, AQ_SINCE, f->since_us);
	if (f->until_us)
		rc |= sqlite3_bind_int64(s, AQ_UNTIL, f->until_us);
	if (f->tenant_id)
		rc |= sqlite3_bind_text(s, AQ_TENANT, f->tenant_id, -1, SQLITE_STATIC);
	if (f->sandbox_id)
		rc |= sqlite3_bind_text(s, AQ_SANDBOX, f->sandbox_id, -1, SQLITE_STATIC);
	if (f->host)
		rc |= sqlite3_bind_text(s, AQ_HOST, f->host, -1, SQLITE_STATIC);
	if (f->external_user_id)
		rc |= sqlite3_bind_text(s, AQ_EXT_USER, f->external_user_id, -1, SQLITE_STATIC);
	if (f->external_workspace_id)
		rc |= sqlite3_bind_text(s, AQ_EXT_WS, f->external_workspace_id, -1,
					SQLITE_STATIC);
	if (f->status >= 0)
		rc |= sqlite3_bind_int(s, AQ_STATUS, f->status);
	if (f->action >= 0)
		rc |= sqlite3_bind_text(s, AQ_ACTION, au_action_names[f->action], -1,
					SQLITE_STATIC);
	if (f->before_id)
		rc |= sqlite3_bind_int64(s, AQ_BEFORE, f->before_id);
	rc |= sqlite3_bind_int64(s, AQ_LIMIT, (int64_t)max);
	return rc == SQLITE_OK ? 0 : -EINVAL;
}

/* 1 when f's time window (below its cursor) holds < AQ_SMALL_WINDOW rows. */
static int au_time_window_small(struct store *st, const struct store_audit_filter *f)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = au_stmt(st, AU_TIME_PROBE, &s)) != 0)
		return r;
	if (sqlite3_bind_int64(s, 1, f->since_us ? f->since_us : INT64_MIN) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 2, f->until_us ? f->until_us : INT64_MAX) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 3, f->before_id ? f->before_id : INT64_MAX) != SQLITE_OK ||
	    sqlite3_bind_int64(s, 4, AQ_SMALL_WINDOW) != SQLITE_OK)
		r = store_sqlite_failf(st, -EINVAL, "cannot bind audit time probe");
	else if ((r = store_sqlite_step(st, s, "count audit time window")) == 1)
		r = sqlite3_column_int64(s, 0) < AQ_SMALL_WINDOW;
	else if (r == 0)
		r = store_sqlite_failf(st, -EIO, "count audit time window: no answer");
	store_sqlite_done(s);
	return r;
}

/* The head forcing the index of the most selective equality filter, or
 * NULL (fewer than two and no status, or all of them common). */
static int au_pick_index(struct store *st, const struct store_audit_filter *f, const bool *on,
			 const char **ret_head)
{
	const char *best = NULL;
	int64_t best_n = AQ_EQ_PROBE;
	size_t present = 0;

	for (size_t i = 0; i < sizeof(au_eq) / sizeof(au_eq[0]); i++)
		present += on[au_eq[i].aq];
	/* One filter has its own index, which the planner takes; the merged
	 * status has none. */
	if (present < 2 && !on[AQ_STATUS]) {
		*ret_head = NULL;
		return 0;
	}
	for (size_t i = 0; i < sizeof(au_eq) / sizeof(au_eq[0]); i++) {
		sqlite3_stmt *s = NULL;
		int64_t n = 0;
		int r;

		if (!on[au_eq[i].aq])
			continue;
		if ((r = au_stmt(st, au_eq[i].probe, &s)) != 0)
			return r;
		if (au_bind_filter(s, f, AQ_EQ_PROBE) != 0)
			r = store_sqlite_failf(st, -EINVAL, "cannot bind audit filter probe");
		else if ((r = store_sqlite_step(st, s, "count audit filter")) == 1)
			n = sqlite3_column_int64(s, 0);
		else if (r == 0)
			r = store_sqlite_failf(st, -EIO, "count audit filter: no answer");
		store_sqlite_done(s);
		if (r < 0)
			return r;
		if (n < best_n) {
			best_n = n;
			best = au_eq[i].head;
		}
	}
	*ret_head = best;
	return 0;
}

int store_audit_query(struct store *st, const struct store_audit_filter *f, size_t max,
		      struct store_audit_row **ret_rows, size_t *ret_n)
{
	/* Any head + every fragment (each < 48 bytes) + any tail fits: the sum
	 * of the three longest heads and the longer tail bounds them all. */
	char sql[sizeof(AQ_HEAD_TIME AQ_HEAD_IDWALK AQ_HEAD_STATUS AQ_TAIL_TIME) + 10 * 48];
	const bool on[] = {
		[AQ_SINCE] = f->since_us != 0, [AQ_UNTIL] = f->until_us != 0,
		[AQ_TENANT] = f->tenant_id, [AQ_SANDBOX] = f->sandbox_id, [AQ_HOST] = f->host,
		[AQ_EXT_USER] = f->external_user_id, [AQ_EXT_WS] = f->external_workspace_id,
		[AQ_STATUS] = f->status >= 0, [AQ_ACTION] = f->action >= 0,
		[AQ_BEFORE] = f->before_id != 0,
	};
	sqlite3_stmt *any = NULL, *s = NULL;
	const char *head = AQ_HEAD, *tail = AQ_TAIL, *frag;
	bool walk = true, forced = false;
	size_t off;
	int rc, r;

	if (f->action > STORE_AUDIT_ERROR || f->status > 999)
		return store_sqlite_failf(st, -EINVAL, "audit filter out of range");
	/* The database handle, through a statement of ours (the plumbing of
	 * store_sqlite_internal.h hands out statements, not the handle). */
	if ((r = au_stmt(st, AU_LAST, &any)) != 0)
		return r;
	if (f->since_us || f->until_us) {
		if ((r = au_time_window_small(st, f)) < 0)
			return r;
		if (r == 1) {
			head = AQ_HEAD_TIME;
			tail = AQ_TAIL_TIME;
			walk = false;
		} else if (!on[AQ_TENANT] && !on[AQ_SANDBOX] && !on[AQ_HOST] &&
			   !on[AQ_EXT_USER] && !on[AQ_EXT_WS] && !on[AQ_STATUS] &&
			   !on[AQ_ACTION]) {
			head = AQ_HEAD_IDWALK;
			tail = AQ_TAIL_TIME;
			forced = true;
		}
	}
	if (walk && !forced) {
		const char *by = NULL;

		if ((r = au_pick_index(st, f, on, &by)) != 0)
			return r;
		if (by)
			head = by;
	}
	off = strlen(head);
	memcpy(sql, head, off);
	for (size_t i = AQ_SINCE; i <= AQ_BEFORE; i++) {
		size_t len;

		if (!on[i])
			continue;
		frag = walk && i <= AQ_UNTIL ? au_where_walk[i] : au_where[i];
		len = strlen(frag);
		memcpy(sql + off, frag, len);
		off += len;
	}
	memcpy(sql + off, tail, strlen(tail) + 1);
	rc = sqlite3_prepare_v2(sqlite3_db_handle(any), sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		return store_sqlite_fail(st, rc, "prepare audit query");
	if (au_bind_filter(s, f, max) != 0)
		r = store_sqlite_failf(st, -EINVAL, "cannot bind audit filter");
	else
		r = au_collect(st, s, max, ret_rows, ret_n);
	sqlite3_finalize(s);
	return r;
}
