/*
 * store_sqlite_dns — the synthetic DNS map rows of store.h in the SQLite
 * back end.  Schema: migration 8 in store_sqlite.c.
 *
 * Same rules as store_sqlite.c: constant SQL prepared once per handle, bound
 * parameters only, every column re-checked on the way out (-EUCLEAN).
 */
#include <errno.h>
#include <string.h>

#include "dns_synth.h"
#include "store_sqlite_internal.h"

enum dm_stmt {
	DM_INSERT, DM_LIST, DM_DELETE_SANDBOX,
	DM__COUNT
};
_Static_assert((int)DM__COUNT <= (int)STORE_SQLITE_SLOTS_DNS_N, "dns map statement slots");

static const char *const dm_sql[DM__COUNT] = {
	/* The sandbox must exist in the same statement: no foreign key, and
	 * no orphan row from a mapping that races the sandbox's deletion. */
	[DM_INSERT] = ("INSERT INTO dns_map (sandbox_id, addr, name)"
		       " SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM tenancy_sandboxes WHERE id = ?1)"),
	[DM_LIST] = "SELECT addr, name FROM dns_map WHERE sandbox_id = ?1 ORDER BY addr LIMIT ?2",
	[DM_DELETE_SANDBOX] = "DELETE FROM dns_map WHERE sandbox_id = ?1",
};

static int dm_stmt(struct store *st, enum dm_stmt id, sqlite3_stmt **ret_stmt)
{
	return store_sqlite_stmt(st, STORE_SQLITE_SLOTS_DNS + (unsigned)id, dm_sql[id], ret_stmt);
}

int store_dns_map_insert(struct store *st, const char *sandbox_id, uint32_t addr,
			 const char *name)
{
	sqlite3_stmt *s = NULL;
	size_t len = strlen(name);
	int rc, r;

	if (addr - DNS_SYNTH_NET >= DNS_SYNTH_POOL_SIZE || len == 0 || len >= HOST_PATTERN_BUF)
		return store_sqlite_failf(st, -EINVAL, "dns_map: address or name out of range");
	if ((r = dm_stmt(st, DM_INSERT, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, sandbox_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 2, addr)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(s, 3, name, (int)len, SQLITE_STATIC)) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind dns_map");
		goto out;
	}
	if ((r = store_sqlite_run(st, s, "insert dns_map")) == 0 && store_sqlite_changes(st) == 0)
		r = store_sqlite_failf(st, -ENOENT, "dns_map: no sandbox %s", sandbox_id);
out:
	store_sqlite_done(s);
	return r;
}

static int dm_read_row(sqlite3_stmt *s, void *row)
{
	struct store_dns_mapping *m = row;
	int64_t addr = sqlite3_column_int64(s, 0);

	if (addr < DNS_SYNTH_NET || addr >= (int64_t)DNS_SYNTH_NET + DNS_SYNTH_POOL_SIZE)
		return -EUCLEAN;
	m->addr = (uint32_t)addr;
	return store_sqlite_col_text(s, 1, m->name, sizeof(m->name));
}

int store_dns_map_list(struct store *st, const char *sandbox_id, size_t max,
		       struct store_dns_mapping **ret_rows, size_t *ret_n)
{
	sqlite3_stmt *s = NULL;
	void *rows = NULL;
	int rc, r;

	if ((r = dm_stmt(st, DM_LIST, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, sandbox_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 2, store_sqlite_limit(max))) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind dns_map list");
		goto out;
	}
	r = store_sqlite_many(st, s, max, sizeof(**ret_rows), dm_read_row, "dns_map", &rows,
			      ret_n);
	if (r == 0)
		*ret_rows = rows;
out:
	store_sqlite_done(s);
	return r;
}

int store_dns_map_delete_sandbox(struct store *st, const char *sandbox_id)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = dm_stmt(st, DM_DELETE_SANDBOX, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, sandbox_id, -1, SQLITE_STATIC)) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind dns_map delete");
		goto out;
	}
	if ((r = store_sqlite_run(st, s, "delete dns_map")) == 0)
		r = store_sqlite_changes(st);
out:
	store_sqlite_done(s);
	return r;
}
