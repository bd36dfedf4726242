/*
 * store_sqlite_internal — plumbing shared by the files of the SQLite back end
 * of store.h (store_sqlite.c: connection, migrations, vault rows;
 * store_sqlite_tenancy.c: tenancy rows).  Not part of the store contract:
 * nothing outside host/store_sqlite*.c includes it.
 *
 * Each file keeps its own table of constant SQL and caches its prepared
 * statements in a range of the handle's extra slots (below); a statement is
 * always prepared from the same SQL for the same slot.
 */
#ifndef MIOSA_STORE_SQLITE_INTERNAL_H
#define MIOSA_STORE_SQLITE_INTERNAL_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* Statement slots beyond the vault's, one range per file. */
enum {
	STORE_SQLITE_SLOTS_TENANCY = 0,
	STORE_SQLITE_SLOTS_TENANCY_N = 24,
	STORE_SQLITE_SLOTS_POLICY = STORE_SQLITE_SLOTS_TENANCY + STORE_SQLITE_SLOTS_TENANCY_N,
	STORE_SQLITE_SLOTS_POLICY_N = 16,
	STORE_SQLITE_SLOTS_AUDIT = STORE_SQLITE_SLOTS_POLICY + STORE_SQLITE_SLOTS_POLICY_N,
	STORE_SQLITE_SLOTS_AUDIT_N = 24,
	STORE_SQLITE_SLOTS_DNS = STORE_SQLITE_SLOTS_AUDIT + STORE_SQLITE_SLOTS_AUDIT_N,
	STORE_SQLITE_SLOTS_DNS_N = 4,
	STORE_SQLITE_EXTRA_SLOTS = STORE_SQLITE_SLOTS_DNS + STORE_SQLITE_SLOTS_DNS_N,
};

/* The cached statement of slot (prepared from sql on first use). */
__attribute__((warn_unused_result))
int store_sqlite_stmt(struct store *st, unsigned slot, const char *sql, sqlite3_stmt **ret_stmt);
/* Return a statement to idle (reset, bindings cleared); NULL is a no-op. */
void store_sqlite_done(sqlite3_stmt *s);
/* 1 = a row, 0 = done, negative errno with the message set. */
__attribute__((warn_unused_result))
int store_sqlite_step(struct store *st, sqlite3_stmt *s, const char *what);
/* Reads one row of s into *row (zeroed by the caller); 0 or nonzero if malformed. */
typedef int (*store_sqlite_read_fn)(sqlite3_stmt *s, void *row);
/*
 * Step s to the end into a new malloc'd array of elem-sized records read by
 * read_row: -E2BIG past max rows, -EUCLEAN for a malformed row (table names
 * the rows in messages).  ret_* written only on success; the caller frees.
 */
__attribute__((warn_unused_result))
int store_sqlite_many(struct store *st, sqlite3_stmt *s, size_t max, size_t elem,
		      store_sqlite_read_fn read_row, const char *table, void **ret_rows,
		      size_t *ret_n);
/* Step a statement that returns no rows. */
__attribute__((warn_unused_result))
int store_sqlite_run(struct store *st, sqlite3_stmt *s, const char *what);
/* Set the message from a SQLite result code (mapped to -errno) and return it. */
int store_sqlite_fail(struct store *st, int rc, const char *what);
__attribute__((format(printf, 3, 4)))
int store_sqlite_failf(struct store *st, int r, const char *fmt, ...);
/* Copy a non-empty text column of at most size - 1 bytes; -EUCLEAN otherwise. */
__attribute__((warn_unused_result))
int store_sqlite_col_text(sqlite3_stmt *s, int col, char *buf, size_t size);
/* LIMIT for "at most max rows": max + 1, so one row too many is seen. */
int64_t store_sqlite_limit(size_t max);
/* Rows changed by the last statement of this connection. */
int store_sqlite_changes(struct store *st);

#endif
