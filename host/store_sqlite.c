/*
 * store_sqlite — the embedded back end of store.h: one SQLite connection per
 * handle on STATE_DIR/state.db.
 *
 * Every data statement is a constant string prepared once per handle
 * (SQLITE_PREPARE_PERSISTENT) with bound parameters; the only SQL text built
 * at run time is "PRAGMA user_version = N", whose N is our own loop counter
 * (PRAGMA takes no parameters).
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cursor.h"
#include "store_sqlite_internal.h"

/* The candidate query spells the scopes as literals. */
_Static_assert(SCOPE_WALK_SANDBOX == 0 && SCOPE_WALK_USER == 1 &&
	       SCOPE_WALK_EXTERNAL_USER == 2 && SCOPE_WALK_EXTERNAL_WORKSPACE == 3 &&
	       SCOPE_WALK_WORKSPACE == 4 && SCOPE_WALK_TENANT == 5 &&
	       SCOPE_WALK__COUNT == 6, "scope values are persisted");

/* ---- schema ------------------------------------------------------------ */

/*
 * Migration i takes user_version i to i + 1.  Append only: a released step is
 * never edited, because databases in the field have already run it.
 */
static const char *const st_migrations[] = {
	/* 1: vault — secrets, per-sandbox placeholder bindings, key check. */
	"CREATE TABLE vault_meta ("
	"  key TEXT PRIMARY KEY NOT NULL,"
	"  value BLOB NOT NULL CHECK (length(value) <= 256)"
	") STRICT;"
	"CREATE TABLE vault_secrets ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  tenant_id TEXT NOT NULL CHECK (length(tenant_id) BETWEEN 1 AND 256),"
	"  scope INTEGER NOT NULL CHECK (scope BETWEEN 0 AND 5),"
	"  scope_id TEXT NOT NULL CHECK (length(scope_id) BETWEEN 1 AND 256),"
	"  name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 128),"
	"  expose_as_env TEXT NOT NULL CHECK (length(expose_as_env) BETWEEN 1 AND 128),"
	"  allowed_hosts TEXT NOT NULL DEFAULT '',"
	"  allow_cleartext INTEGER NOT NULL CHECK (allow_cleartext IN (0, 1)),"
	"  version INTEGER NOT NULL CHECK (version BETWEEN 1 AND 4294967295),"
	"  created_at_us INTEGER NOT NULL,"
	"  rotated_at_us INTEGER NOT NULL DEFAULT 0,"
	"  nonce BLOB NOT NULL CHECK (length(nonce) = 24),"
	"  ciphertext BLOB NOT NULL CHECK (length(ciphertext) <= 16400)"
	") STRICT;"
	"CREATE UNIQUE INDEX vault_secrets_by_name"
	"  ON vault_secrets (tenant_id, scope, scope_id, name);"
	"CREATE UNIQUE INDEX vault_secrets_by_env"
	"  ON vault_secrets (tenant_id, scope, scope_id, expose_as_env);"
	"CREATE TABLE vault_bindings ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  sandbox_id TEXT NOT NULL CHECK (length(sandbox_id) BETWEEN 1 AND 256),"
	"  secret_id INTEGER NOT NULL REFERENCES vault_secrets (id) ON DELETE CASCADE,"
	"  placeholder TEXT NOT NULL CHECK (length(placeholder) = 42"
	"    AND placeholder GLOB 'miosa-tok-*'"
	"    AND substr(placeholder, 11) NOT GLOB '*[^0-9a-f]*'),"
	"  created_at_us INTEGER NOT NULL"
	") STRICT;"
	"CREATE UNIQUE INDEX vault_bindings_by_placeholder ON vault_bindings (placeholder);"
	"CREATE UNIQUE INDEX vault_bindings_by_sandbox ON vault_bindings (sandbox_id, secret_id);"
	"CREATE INDEX vault_bindings_by_secret ON vault_bindings (secret_id);",
	/* 2: tenancy — tenants, sandboxes (attribution, transport), API keys
	 * (keyed hashes only).  Unset optional columns are NULL.  IF NOT EXISTS:
	 * re-running the step over its own tables (a user_version put back by
	 * hand) must not brick the database. */
	"CREATE TABLE IF NOT EXISTS tenancy_tenants ("
	"  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 64"
	"    AND substr(id, 1, 1) GLOB '[a-z0-9]' AND id NOT GLOB '*[^a-z0-9_-]*'),"
	"  name TEXT NOT NULL CHECK (length(CAST(name AS BLOB)) BETWEEN 1 AND 256),"
	"  created_at_us INTEGER NOT NULL,"
	"  allow_end_user_credentials INTEGER NOT NULL DEFAULT 1"
	"    CHECK (allow_end_user_credentials IN (0, 1))"
	") STRICT;"
	"CREATE TABLE IF NOT EXISTS tenancy_sandboxes ("
	"  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 28 AND id GLOB 'sbx_*'"
	"    AND substr(id, 5) NOT GLOB '*[^0-9a-f]*'),"
	"  tenant_id TEXT NOT NULL REFERENCES tenancy_tenants (id),"
	"  user_id TEXT CHECK (length(user_id) BETWEEN 1 AND 256),"
	"  workspace_id TEXT CHECK (length(workspace_id) BETWEEN 1 AND 256),"
	"  external_user_id TEXT CHECK (length(external_user_id) BETWEEN 1 AND 256),"
	"  external_workspace_id TEXT CHECK (length(external_workspace_id) BETWEEN 1 AND 256),"
	"  template TEXT CHECK (length(template) BETWEEN 1 AND 1024),"
	"  transport_kind INTEGER NOT NULL CHECK (transport_kind BETWEEN 0 AND 2),"
	"  transport_uds TEXT CHECK (length(transport_uds) BETWEEN 2 AND 96),"
	"  transport_cid INTEGER CHECK (transport_cid BETWEEN 3 AND 4294967294),"
	"  created_at_us INTEGER NOT NULL,"
	"  CHECK ((transport_uds IS NOT NULL) = (transport_kind = 1)"
	"    AND (transport_cid IS NOT NULL) = (transport_kind = 2))"
	") STRICT;"
	"CREATE INDEX IF NOT EXISTS tenancy_sandboxes_by_tenant"
	"  ON tenancy_sandboxes (tenant_id, created_at_us);"
	"CREATE INDEX IF NOT EXISTS tenancy_sandboxes_by_external_user"
	"  ON tenancy_sandboxes (tenant_id, external_user_id);"
	"CREATE INDEX IF NOT EXISTS tenancy_sandboxes_by_external_workspace"
	"  ON tenancy_sandboxes (tenant_id, external_workspace_id);"
	"CREATE UNIQUE INDEX IF NOT EXISTS tenancy_sandboxes_by_uds"
	"  ON tenancy_sandboxes (transport_uds) WHERE transport_uds IS NOT NULL;"
	"CREATE UNIQUE INDEX IF NOT EXISTS tenancy_sandboxes_by_cid"
	"  ON tenancy_sandboxes (transport_cid) WHERE transport_cid IS NOT NULL;"
	"CREATE TABLE IF NOT EXISTS tenancy_api_keys ("
	"  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 28 AND id GLOB 'key_*'"
	"    AND substr(id, 5) NOT GLOB '*[^0-9a-f]*'),"
	"  tenant_id TEXT NOT NULL REFERENCES tenancy_tenants (id),"
	"  name TEXT NOT NULL CHECK (length(CAST(name AS BLOB)) BETWEEN 1 AND 256),"
	"  prefix TEXT NOT NULL CHECK (length(prefix) = 15 AND prefix GLOB 'msk_live_*'),"
	"  hash BLOB NOT NULL CHECK (length(hash) = 32),"
	"  created_at_us INTEGER NOT NULL,"
	"  last_used_at_us INTEGER NOT NULL DEFAULT 0,"
	"  revoked_at_us INTEGER NOT NULL DEFAULT 0"
	") STRICT;"
	"CREATE UNIQUE INDEX IF NOT EXISTS tenancy_api_keys_by_hash ON tenancy_api_keys (hash);"
	"CREATE INDEX IF NOT EXISTS tenancy_api_keys_by_tenant ON tenancy_api_keys (tenant_id, created_at_us);",
	/* 3: sandbox CAs — one per sandbox, gone with it (foreign_keys is on
	 * for every connection).  The key column holds mitm_ca_seal_key()'s
	 * blob only: plaintext key bytes never reach state.db.  Sandboxes
	 * created before this step have no row; tenancy makes theirs on first
	 * use (tenancy.h). */
	"CREATE TABLE IF NOT EXISTS tenancy_sandbox_cas ("
	"  sandbox_id TEXT PRIMARY KEY NOT NULL"
	"    REFERENCES tenancy_sandboxes (id) ON DELETE CASCADE,"
	"  cert_pem TEXT NOT NULL CHECK (length(CAST(cert_pem AS BLOB)) BETWEEN 28 AND 8192"
	"    AND cert_pem GLOB '-----BEGIN CERTIFICATE-----*'),"
	"  sealed_key BLOB NOT NULL CHECK (length(sealed_key) BETWEEN 1 AND 1024),"
	"  created_at_us INTEGER NOT NULL"
	") STRICT;",
	/* 4: network policy (policy.h) — per sandbox: mode (no row = observe),
	 * allowlist (normalized host_pattern, port 0 = any port), observed
	 * and pending hosts.  Rows go with their sandbox.  Caps per sandbox
	 * are enforced by the writers (store.h), not by the schema. */
	"CREATE TABLE IF NOT EXISTS policy_modes ("
	"  sandbox_id TEXT PRIMARY KEY NOT NULL"
	"    REFERENCES tenancy_sandboxes (id) ON DELETE CASCADE,"
	"  enforce INTEGER NOT NULL CHECK (enforce IN (0, 1)),"
	"  updated_at_us INTEGER NOT NULL"
	") STRICT;"
	"CREATE TABLE IF NOT EXISTS policy_allow ("
	"  sandbox_id TEXT NOT NULL REFERENCES tenancy_sandboxes (id) ON DELETE CASCADE,"
	"  pattern TEXT NOT NULL CHECK (length(pattern) BETWEEN 1 AND 253),"
	"  port INTEGER NOT NULL CHECK (port BETWEEN 0 AND 65535),"
	"  created_at_us INTEGER NOT NULL,"
	"  PRIMARY KEY (sandbox_id, pattern, port)"
	") STRICT, WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS policy_observed ("
	"  sandbox_id TEXT NOT NULL REFERENCES tenancy_sandboxes (id) ON DELETE CASCADE,"
	"  host TEXT NOT NULL CHECK (length(host) BETWEEN 1 AND 253),"
	"  port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),"
	"  first_seen_us INTEGER NOT NULL,"
	"  last_seen_us INTEGER NOT NULL,"
	"  count INTEGER NOT NULL CHECK (count >= 1),"
	"  PRIMARY KEY (sandbox_id, host, port)"
	") STRICT, WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS policy_pending ("
	"  sandbox_id TEXT NOT NULL REFERENCES tenancy_sandboxes (id) ON DELETE CASCADE,"
	"  host TEXT NOT NULL CHECK (length(host) BETWEEN 1 AND 253),"
	"  port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),"
	"  first_seen_us INTEGER NOT NULL,"
	"  last_seen_us INTEGER NOT NULL,"
	"  count INTEGER NOT NULL CHECK (count >= 1),"
	"  PRIMARY KEY (sandbox_id, host, port)"
	") STRICT, WITHOUT ROWID;",
	/* 5: audit log (audit.h) — one row per outbound request, connection or
	 * denial; append-only, written by the audit writer only.  ids are
	 * assigned by the writer (last id + 1 in the batch's transaction) and
	 * hashed into the chain.  Lists are ','-joined names (audit.c rejects
	 * ',' in a name).  Each index ends in id so that "filter, newest first,
	 * id < cursor" is one index range walked backwards. */
	"CREATE TABLE IF NOT EXISTS audit_rows ("
	"  id INTEGER PRIMARY KEY CHECK (id >= 1),"
	"  time_us INTEGER NOT NULL,"
	"  tenant_id TEXT NOT NULL CHECK (length(tenant_id) BETWEEN 1 AND 256),"
	"  sandbox_id TEXT NOT NULL CHECK (length(sandbox_id) BETWEEN 1 AND 256),"
	"  external_user_id TEXT CHECK (length(external_user_id) BETWEEN 1 AND 256),"
	"  external_workspace_id TEXT"
	"    CHECK (length(external_workspace_id) BETWEEN 1 AND 256),"
	"  host TEXT NOT NULL CHECK (length(host) BETWEEN 1 AND 253),"
	"  port INTEGER NOT NULL CHECK (port BETWEEN 0 AND 65535),"
	"  scheme TEXT NOT NULL CHECK (scheme IN ('http', 'https', 'tcp')),"
	"  method TEXT NOT NULL CHECK (length(method) <= 32),"
	"  path TEXT NOT NULL CHECK (length(path) <= 2048),"
	"  status INTEGER NOT NULL CHECK (status BETWEEN 0 AND 999),"
	"  action TEXT NOT NULL CHECK (action IN ('allow', 'deny', 'error')),"
	"  reason TEXT NOT NULL CHECK (length(reason) <= 256),"
	"  rules TEXT NOT NULL,"
	"  secrets_swapped TEXT NOT NULL,"
	"  secrets_flagged TEXT NOT NULL,"
	"  bytes_up INTEGER NOT NULL CHECK (bytes_up >= 0),"
	"  bytes_down INTEGER NOT NULL CHECK (bytes_down >= 0),"
	"  duration_us INTEGER NOT NULL CHECK (duration_us >= 0),"
	"  prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32),"
	"  row_hash BLOB NOT NULL CHECK (length(row_hash) = 32)"
	") STRICT;"
	"CREATE INDEX IF NOT EXISTS audit_rows_by_time ON audit_rows (time_us);"
	"CREATE INDEX IF NOT EXISTS audit_rows_by_tenant ON audit_rows (tenant_id, id);"
	"CREATE INDEX IF NOT EXISTS audit_rows_by_sandbox ON audit_rows (sandbox_id, id);"
	"CREATE INDEX IF NOT EXISTS audit_rows_by_host ON audit_rows (host, id);"
	"CREATE INDEX IF NOT EXISTS audit_rows_by_status ON audit_rows (status, id);"
	"CREATE INDEX IF NOT EXISTS audit_rows_by_action ON audit_rows (action, id);"
	"CREATE INDEX IF NOT EXISTS audit_rows_by_external_user"
	"  ON audit_rows (external_user_id, id) WHERE external_user_id IS NOT NULL;"
	"CREATE INDEX IF NOT EXISTS audit_rows_by_external_workspace"
	"  ON audit_rows (external_workspace_id, id) WHERE external_workspace_id IS NOT NULL;",
	/* 6: audit completions (audit.h) — what became of a request row once
	 * its response was relayed (status, bytes, duration).  Links of the
	 * same hash chain as audit_rows: one id sequence over both tables
	 * (the writer gives each new row or completion last id + 1).  UNIQUE
	 * (request_id): a request is completed at most once, which is a rule
	 * of the log, not a query-speed index; it also serves the merge join. */
	"CREATE TABLE IF NOT EXISTS audit_completions ("
	"  id INTEGER PRIMARY KEY CHECK (id >= 1),"
	"  request_id INTEGER NOT NULL UNIQUE CHECK (request_id >= 1 AND request_id < id),"
	"  time_us INTEGER NOT NULL,"
	"  status INTEGER NOT NULL CHECK (status BETWEEN 0 AND 999),"
	"  bytes_up INTEGER NOT NULL CHECK (bytes_up >= 0),"
	"  bytes_down INTEGER NOT NULL CHECK (bytes_down >= 0),"
	"  duration_us INTEGER NOT NULL CHECK (duration_us >= 0),"
	"  prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32),"
	"  row_hash BLOB NOT NULL CHECK (length(row_hash) = 32)"
	") STRICT;",
	/* 7: audit retention (store_audit_prune) — the anchor: id and row_hash
	 * of the newest pruned row, where the chain of what remains starts.
	 * One row at most.  And a narrow (id, time_us) index: a time-only
	 * query walks ids newest first checking time_us, and walking this
	 * index reads ~20 bytes per row instead of the whole row.  And the
	 * completions by (status, request_id): the merged status of a
	 * completed request is its completion's, which a status query reads
	 * through this index (store_sqlite_audit.c, AQ_HEAD_STATUS). */
	"CREATE TABLE IF NOT EXISTS audit_anchor ("
	"  one INTEGER PRIMARY KEY CHECK (one = 1),"
	"  id INTEGER NOT NULL CHECK (id >= 1),"
	"  row_hash BLOB NOT NULL CHECK (length(row_hash) = 32)"
	") STRICT;"
	"CREATE INDEX IF NOT EXISTS audit_rows_by_id_time ON audit_rows (id, time_us);"
	"CREATE INDEX IF NOT EXISTS audit_completions_by_status"
	"  ON audit_completions (status, request_id);",
	/* 8: synthetic DNS maps (dns_synth.h) — per sandbox, every name the
	 * broker has answered with an address, so a broker restart keeps each
	 * name on its address (a guest's cached answer or open connection
	 * still reaches the name it resolved).  A name keeps its address and an
	 * address its name: both pairs unique.  No foreign key (the insert
	 * checks the sandbox exists; store_sandbox_delete() removes the rows).
	 * addr is the host-order uint32 inside 198.18.0.0/15. */
	"CREATE TABLE IF NOT EXISTS dns_map ("
	"  sandbox_id TEXT NOT NULL CHECK (length(sandbox_id) BETWEEN 1 AND 256),"
	"  addr INTEGER NOT NULL CHECK (addr BETWEEN 3323068416 AND 3323199487),"
	"  name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 253),"
	"  PRIMARY KEY (sandbox_id, addr),"
	"  UNIQUE (sandbox_id, name)"
	") STRICT, WITHOUT ROWID;",
};
#define ST_SCHEMA_VERSION ((int)(sizeof(st_migrations) / sizeof(st_migrations[0])))

/* ---- statements -------------------------------------------------------- */

#define SECRET_COLS "id, tenant_id, scope, scope_id, name, expose_as_env, allowed_hosts," \
	" allow_cleartext, version, created_at_us, rotated_at_us, nonce, ciphertext"
enum {
	COL_ID, COL_TENANT, COL_SCOPE, COL_SCOPE_ID, COL_NAME, COL_ENV, COL_HOSTS,
	COL_CLEARTEXT, COL_VERSION, COL_CREATED, COL_ROTATED, COL_NONCE, COL_CIPHERTEXT,
};
#define BINDING_COLS "id, secret_id, sandbox_id, placeholder, created_at_us"
#define SCOPE_KEY "tenant_id = ?1 AND scope = ?2 AND scope_id = ?3"

enum st_stmt {
	ST_BEGIN_READ, ST_BEGIN_WRITE, ST_COMMIT, ST_ROLLBACK,
	ST_META_GET, ST_META_PUT,
	ST_SECRET_FIND, ST_SECRET_FIND_ENV, ST_SECRET_GET, ST_SECRET_COUNT,
	ST_SECRET_LIST, ST_SECRET_CANDIDATES, ST_SECRET_INSERT, ST_SECRET_UPDATE,
	ST_SECRET_DELETE, ST_SECRET_DELETE_SCOPE,
	ST_BINDING_FIND, ST_BINDING_FIND_PLACEHOLDER, ST_BINDING_INSERT,
	ST_BINDING_DELETE_SANDBOX,
	ST__COUNT
};

static const char *const st_sql[ST__COUNT] = {
	[ST_BEGIN_READ] = "BEGIN DEFERRED",
	/* IMMEDIATE: take the write lock up front, so the busy timeout applies
	 * and a read-then-write transaction can never fail half way with
	 * SQLITE_BUSY_SNAPSHOT. */
	[ST_BEGIN_WRITE] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_META_GET] = "SELECT value FROM vault_meta WHERE key = ?1",
	[ST_META_PUT] = "INSERT INTO vault_meta (key, value) VALUES (?1, ?2)"
		" ON CONFLICT (key) DO UPDATE SET value = excluded.value",
	[ST_SECRET_FIND] = "SELECT " SECRET_COLS " FROM vault_secrets WHERE " SCOPE_KEY
		" AND name = ?4",
	[ST_SECRET_FIND_ENV] = "SELECT " SECRET_COLS " FROM vault_secrets WHERE " SCOPE_KEY
		" AND expose_as_env = ?4",
	[ST_SECRET_GET] = "SELECT " SECRET_COLS " FROM vault_secrets WHERE id = ?1",
	[ST_SECRET_COUNT] = "SELECT count(*) FROM vault_secrets WHERE " SCOPE_KEY,
	[ST_SECRET_LIST] = "SELECT " SECRET_COLS " FROM vault_secrets WHERE " SCOPE_KEY
		" ORDER BY name LIMIT ?4",
	/* One exact index seek per level (an OR of the six would only use
	 * the tenant_id prefix and scan the tenant).  A NULL id never
	 * compares equal: levels the sandbox lacks drop out. */
	[ST_SECRET_CANDIDATES] =
		"SELECT " SECRET_COLS " FROM vault_secrets WHERE tenant_id = ?1 AND scope = 0 AND scope_id = ?2"
		" UNION ALL SELECT " SECRET_COLS " FROM vault_secrets WHERE tenant_id = ?1 AND scope = 1 AND scope_id = ?3"
		" UNION ALL SELECT " SECRET_COLS " FROM vault_secrets WHERE tenant_id = ?1 AND scope = 2 AND scope_id = ?4"
		" UNION ALL SELECT " SECRET_COLS " FROM vault_secrets WHERE tenant_id = ?1 AND scope = 3 AND scope_id = ?5"
		" UNION ALL SELECT " SECRET_COLS " FROM vault_secrets WHERE tenant_id = ?1 AND scope = 4 AND scope_id = ?6"
		" UNION ALL SELECT " SECRET_COLS " FROM vault_secrets WHERE tenant_id = ?1 AND scope = 5 AND scope_id = ?7"
		" LIMIT ?8",
	[ST_SECRET_INSERT] = "INSERT INTO vault_secrets (tenant_id, scope, scope_id, name,"
		" expose_as_env, allowed_hosts, allow_cleartext, version, created_at_us,"
		" rotated_at_us, nonce, ciphertext)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
	[ST_SECRET_UPDATE] = "UPDATE vault_secrets SET expose_as_env = ?2, allowed_hosts = ?3,"
		" allow_cleartext = ?4, version = ?5, rotated_at_us = ?6, nonce = ?7,"
		" ciphertext = ?8 WHERE id = ?1",
	[ST_SECRET_DELETE] = "DELETE FROM vault_secrets WHERE id = ?1",
	[ST_SECRET_DELETE_SCOPE] = "DELETE FROM vault_secrets WHERE " SCOPE_KEY,
	[ST_BINDING_FIND] = "SELECT " BINDING_COLS " FROM vault_bindings"
		" WHERE sandbox_id = ?1 AND secret_id = ?2",
	[ST_BINDING_FIND_PLACEHOLDER] = "SELECT " BINDING_COLS " FROM vault_bindings"
		" WHERE placeholder = ?1",
	[ST_BINDING_INSERT] = "INSERT INTO vault_bindings (sandbox_id, secret_id, placeholder,"
		" created_at_us) VALUES (?1, ?2, ?3, ?4)",
	[ST_BINDING_DELETE_SANDBOX] = "DELETE FROM vault_bindings WHERE sandbox_id = ?1",
};

struct store {
	sqlite3 *db;
	sqlite3_stmt *stmts[ST__COUNT];
	sqlite3_stmt *extra[STORE_SQLITE_EXTRA_SLOTS]; /* store_sqlite_internal.h */
	char err[STORE_ERR_MAX];
};

/* ---- errors ------------------------------------------------------------ */

/* The one map from SQLite result codes to errno values. */
static int st_errno(int rc)
{
	switch (rc) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		return -EEXIST;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return -ENOENT;
	default:
		break;
	}
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:     return -EBUSY;
	case SQLITE_NOMEM:      return -ENOMEM;
	case SQLITE_FULL:       return -ENOSPC;
	case SQLITE_TOOBIG:     return -E2BIG;
	case SQLITE_CONSTRAINT:
	case SQLITE_MISMATCH:
	case SQLITE_RANGE:      return -EINVAL;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH:       return -EACCES;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:     return -EUCLEAN;
	default:                return -EIO;
	}
}

/* Set the handle's message ("state.db: <what>") and return r. */
__attribute__((format(printf, 3, 0)))
static int st_vfailf(struct store *st, int r, const char *fmt, va_list ap)
{
	static const char prefix[] = "state.db: ";

	memcpy(st->err, prefix, sizeof(prefix));
	vsnprintf(st->err + sizeof(prefix) - 1, sizeof(st->err) - (sizeof(prefix) - 1), fmt, ap);
	return r;
}

__attribute__((format(printf, 3, 4)))
static int st_failf(struct store *st, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	r = st_vfailf(st, r, fmt, ap);
	va_end(ap);
	return r;
}

/* As st_failf for a SQLite failure: appends SQLite's message, maps rc. */
static int st_fail(struct store *st, int rc, const char *what)
{
	return st_failf(st, st_errno(rc), "%s: %s", what, sqlite3_errmsg(st->db));
}

/* ---- statement plumbing ------------------------------------------------ */

static int st_stmt(struct store *st, enum st_stmt id, sqlite3_stmt **ret_stmt)
{
	int rc;

	if (!st->stmts[id]) {
		rc = sqlite3_prepare_v3(st->db, st_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
					&st->stmts[id], NULL);
		if (rc != SQLITE_OK)
			return st_fail(st, rc, "prepare statement");
	}
	*ret_stmt = st->stmts[id];
	return 0;
}

/* Return a cached statement to idle: releases its locks and borrowed binds. */
static void st_done(sqlite3_stmt *s)
{
	if (s) {
		(void)sqlite3_reset(s); /* repeats the last step's error, handled there */
		(void)sqlite3_clear_bindings(s);
	}
}

/* 1 = a row, 0 = done, negative = error with the message set. */
static int st_step(struct store *st, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return st_fail(st, rc, what);
}

/* Bind ?1..?3 = (tenant_id, scope, scope_id). */
static int st_bind_scope(sqlite3_stmt *s, const char *tenant_id,
			 enum scope_walk_scope scope, const char *scope_id)
{
	int rc;

	if ((rc = sqlite3_bind_text(s, 1, tenant_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(s, 2, (int)scope)) != SQLITE_OK)
		return rc;
	return sqlite3_bind_text(s, 3, scope_id, -1, SQLITE_STATIC);
}

/* Run a statement that returns no rows; -EXX or 0. */
static int st_run(struct store *st, sqlite3_stmt *s, const char *what)
{
	int r = st_step(st, s, what);

	if (r > 0)
		r = st_failf(st, -EIO, "%s: unexpected row", what);
	return r;
}

static int st_exec_cached(struct store *st, enum st_stmt id, const char *what)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = st_stmt(st, id, &s)) == 0)
		r = st_run(st, s, what);
	st_done(s);
	return r;
}

/* ---- opening ----------------------------------------------------------- */

static int st_open_fail(char *err, size_t err_size, int r, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int st_open_fail(char *err, size_t err_size, int r, const char *fmt, ...)
{
	va_list ap;

	if (err && err_size > 0) {
		errno = -r;
		va_start(ap, fmt);
		vsnprintf(err, err_size, fmt, ap);
		va_end(ap);
	}
	return r;
}

static int st_prepare_dir(const char *dir, char *err, size_t err_size)
{
	struct stat sb;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return st_open_fail(err, err_size, -errno,
				    "cannot create state directory %s: %m", dir);
	if (stat(dir, &sb) < 0)
		return st_open_fail(err, err_size, -errno, "state directory %s: %m", dir);
	if (!S_ISDIR(sb.st_mode))
		return st_open_fail(err, err_size, -ENOTDIR,
				    "state directory %s is not a directory", dir);
	/* Whoever can write the directory can swap state.db under us. */
	if (sb.st_mode & (S_IWGRP | S_IWOTH))
		return st_open_fail(err, err_size, -EPERM,
				    "state directory %s is mode %04o; must not be writable by group or others (chmod 700)",
				    dir, (unsigned)(sb.st_mode & 07777));
	return 0;
}

/*
 * Create state.db ourselves with 0600 so SQLite never creates it with the
 * umask's idea of a mode; its -wal and -shm files copy the main file's mode.
 */
static int st_prepare_file(const char *path, char *err, size_t err_size)
{
	struct stat sb;
	int fd;

	/*
	 * Never open() + close() an existing database file here: POSIX record
	 * locks belong to the process, and close() of ANY descriptor of the
	 * file drops every lock SQLite holds on it in this process (fcntl(2)).
	 * Another process closing its connection would then see itself as the
	 * last one, checkpoint and unlink the -wal file under our live
	 * connections: their later commits would go to an unlinked file and be
	 * lost.  Only a file we create ourselves (O_EXCL: nobody holds a lock
	 * on it yet) is opened and closed.
	 */
	if (lstat(path, &sb) < 0) {
		if (errno != ENOENT)
			return st_open_fail(err, err_size, -errno, "cannot open %s: %m", path);
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
		if (fd < 0 && errno != EEXIST)
			return st_open_fail(err, err_size, -errno, "cannot create %s: %m", path);
		if (fd >= 0)
			close(fd);
		if (lstat(path, &sb) < 0)
			return st_open_fail(err, err_size, -errno, "cannot open %s: %m", path);
	}
	if (S_ISLNK(sb.st_mode))
		return st_open_fail(err, err_size, -ELOOP, "%s is a symlink; refusing to follow it",
				    path);
	if (!S_ISREG(sb.st_mode))
		return st_open_fail(err, err_size, -EINVAL, "%s is not a regular file", path);
	if (sb.st_mode & (S_IRWXG | S_IRWXO))
		return st_open_fail(err, err_size, -EPERM,
				    "%s is mode %04o; must not be accessible by group or others (chmod 600)",
				    path, (unsigned)(sb.st_mode & 07777));
	return 0;
}

/* Constant SQL with no parameters (connection settings, migrations). */
static int st_exec(struct store *st, const char *sql, const char *what);

int store_set_sync_full(struct store *st, bool full)
{
	return st_exec(st, full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
		       "set synchronous");
}

static int st_exec(struct store *st, const char *sql, const char *what)
{
	int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : st_fail(st, rc, what);
}

/* A PRAGMA that answers one row; its first column as text into buf. */
static int st_pragma_text(struct store *st, const char *sql, char *buf, size_t size)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *t;
	int rc, r;

	rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		return st_fail(st, rc, sql);
	if ((r = st_step(st, s, sql)) == 1) {
		t = sqlite3_column_text(s, 0);
		snprintf(buf, size, "%s", t ? (const char *)t : "");
		r = 0;
	} else if (r == 0) {
		r = st_failf(st, -EIO, "%s: no answer", sql);
	}
	sqlite3_finalize(s);
	return r;
}

static int st_configure(struct store *st)
{
	char mode[16];
	int r;

	/* Defensive mode: no writable_schema or other ways to corrupt the file
	 * through SQL. */
	if (sqlite3_db_config(st->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL) != SQLITE_OK ||
	    sqlite3_extended_result_codes(st->db, 1) != SQLITE_OK ||
	    sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS) != SQLITE_OK)
		return st_failf(st, -EIO, "cannot configure connection: %s",
				sqlite3_errmsg(st->db));
	if ((r = st_pragma_text(st, "PRAGMA journal_mode = WAL", mode, sizeof(mode))) != 0)
		return r;
	if (strcmp(mode, "wal") != 0)
		return st_failf(st, -EIO, "cannot switch to WAL mode (journal mode is %s)", mode);
	/* synchronous=FULL: a committed secret survives power loss, not just a
	 * crash.  secure_delete: freed pages (old ciphertexts, placeholders of
	 * removed bindings) are zeroed rather than left in the file. */
	return st_exec(st, "PRAGMA foreign_keys = ON;"
			   "PRAGMA synchronous = FULL;"
			   "PRAGMA secure_delete = ON;"
			   "PRAGMA trusted_schema = OFF;", "connection settings");
}

static int st_user_version(struct store *st, int *ret_version)
{
	char buf[24];
	char *end;
	long v;
	int r;

	if ((r = st_pragma_text(st, "PRAGMA user_version", buf, sizeof(buf))) != 0)
		return r;
	errno = 0;
	v = strtol(buf, &end, 10);
	if (errno != 0 || end == buf || *end != '\0' || v < 0 || v > INT_MAX)
		return st_failf(st, -EUCLEAN, "user_version is not a schema version");
	*ret_version = (int)v;
	return 0;
}

/* Bring the schema to ST_SCHEMA_VERSION; one transaction, so a concurrent
 * opener waits and then finds the work done. */
static int st_migrate(struct store *st)
{
	char bump[48];
	int v = 0, r;

	if ((r = st_exec(st, "BEGIN IMMEDIATE", "begin migration")) != 0)
		return r;
	if ((r = st_user_version(st, &v)) != 0)
		goto out;
	if (v > ST_SCHEMA_VERSION) {
		r = st_failf(st, -EPROTONOSUPPORT,
			     "schema version %d is newer than this build supports (%d)",
			     v, ST_SCHEMA_VERSION);
		goto out;
	}
	for (; v < ST_SCHEMA_VERSION; v++) {
		snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", v + 1);
		if ((r = st_exec(st, st_migrations[v], "schema migration")) != 0 ||
		    (r = st_exec(st, bump, "schema version")) != 0)
			goto out;
	}
	r = st_exec(st, "COMMIT", "commit migration");
out:
	if (r != 0)
		store_rollback(st);
	return r;
}

int store_schema_version(void)
{
	return ST_SCHEMA_VERSION;
}

int store_open(const char *state_dir, struct store **ret_store, char *err, size_t err_size)
{
	struct store *st = NULL;
	char path[PATH_MAX];
	int n, rc, r;

	if (!state_dir || !state_dir[0] || !ret_store)
		return st_open_fail(err, err_size, -EINVAL, "no state directory given");
	n = snprintf(path, sizeof(path), "%s/" STORE_DB_NAME, state_dir);
	if (n < 0 || (size_t)n >= sizeof(path))
		return st_open_fail(err, err_size, -ENAMETOOLONG,
				    "state directory path is too long");
	if ((r = st_prepare_dir(state_dir, err, err_size)) != 0 ||
	    (r = st_prepare_file(path, err, err_size)) != 0)
		return r;
	st = calloc(1, sizeof(*st));
	if (!st)
		return st_open_fail(err, err_size, -ENOMEM, "out of memory");
	/* NOMUTEX: a handle belongs to one thread at a time (see store.h). */
	rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
			     SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_EXRESCODE, NULL);
	if (rc != SQLITE_OK) {
		r = st_open_fail(err, err_size, st_errno(rc), "cannot open %s: %s", path,
				 st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		goto out;
	}
	if ((r = st_configure(st)) != 0 || (r = st_migrate(st)) != 0) {
		st_open_fail(err, err_size, r, "%s", st->err);
		goto out;
	}
	*ret_store = st;
	st = NULL;
out:
	store_close(st);
	return r;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	if (st->db)
		store_rollback(st);
	for (int i = 0; i < ST__COUNT; i++)
		sqlite3_finalize(st->stmts[i]);
	for (int i = 0; i < STORE_SQLITE_EXTRA_SLOTS; i++)
		sqlite3_finalize(st->extra[i]);
	/* The last connection to close checkpoints and removes the -wal file. */
	sqlite3_close(st->db);
	free(st);
}

const char *store_errmsg(const struct store *st)
{
	return st ? st->err : "no store";
}

/* ---- transactions ------------------------------------------------------ */

int store_begin_read(struct store *st)
{
	return st_exec_cached(st, ST_BEGIN_READ, "begin read transaction");
}

int store_begin_write(struct store *st)
{
	return st_exec_cached(st, ST_BEGIN_WRITE, "begin write transaction");
}

int store_commit(struct store *st)
{
	return st_exec_cached(st, ST_COMMIT, "commit");
}

void store_rollback(struct store *st)
{
	if (sqlite3_get_autocommit(st->db))
		return; /* no transaction open (or SQLite already rolled it back) */
	if (st_exec_cached(st, ST_ROLLBACK, "rollback") != 0)
		(void)sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

/* How much of a statement's SQL an idle-check message quotes. */
#define ST_IDLE_SQL_QUOTE 80

int store_check_idle(struct store *st)
{
	sqlite3_stmt *s = NULL;

	/* Statements first: a leaked SELECT is also what keeps the implicit
	 * read transaction open, and its SQL says where the leak is. */
	while ((s = sqlite3_next_stmt(st->db, s)))
		if (sqlite3_stmt_busy(s)) {
			const char *sql = sqlite3_sql(s);

			/* sqlite3_sql() is the text as prepared, never the
			 * bound values (unlike sqlite3_expanded_sql()). */
			return st_failf(st, -EBUSY, "statement left running: %.*s%s",
					ST_IDLE_SQL_QUOTE, sql ? sql : "?",
					sql && strlen(sql) > ST_IDLE_SQL_QUOTE ? "..." : "");
		}
	if (!sqlite3_get_autocommit(st->db))
		return st_failf(st, -EBUSY, "transaction left open");
	return 0;
}

void store_force_idle(struct store *st)
{
	sqlite3_stmt *s = NULL;

	while ((s = sqlite3_next_stmt(st->db, s)))
		if (sqlite3_stmt_busy(s))
			(void)sqlite3_reset(s);
	store_rollback(st);
}

/* ---- meta -------------------------------------------------------------- */

int store_meta_get(struct store *st, const char *key, uint8_t *buf, size_t buf_size,
		   size_t *ret_len)
{
	sqlite3_stmt *s = NULL;
	const void *blob;
	int len, rc, r;

	if ((r = st_stmt(st, ST_META_GET, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC)) != SQLITE_OK) {
		r = st_fail(st, rc, "bind meta key");
		goto out;
	}
	if ((r = st_step(st, s, "read vault_meta")) <= 0) {
		if (r == 0)
			r = st_failf(st, -ENOENT, "vault_meta has no '%s'", key);
		goto out;
	}
	blob = sqlite3_column_blob(s, 0);
	len = sqlite3_column_bytes(s, 0);
	if (len < 0 || (size_t)len > buf_size || (len > 0 && !blob)) {
		r = st_failf(st, -EUCLEAN, "vault_meta '%s' is malformed", key);
		goto out;
	}
	if (len > 0)
		memcpy(buf, blob, (size_t)len);
	*ret_len = (size_t)len;
	r = 0;
out:
	st_done(s);
	return r;
}

int store_meta_put(struct store *st, const char *key, const uint8_t *value, size_t len)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if (len == 0 || len > STORE_META_VALUE_MAX)
		return st_failf(st, -EINVAL, "vault_meta value must be 1..%d bytes",
				STORE_META_VALUE_MAX);
	if ((r = st_stmt(st, ST_META_PUT, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_blob(s, 2, value, (int)len, SQLITE_STATIC)) != SQLITE_OK) {
		r = st_fail(st, rc, "bind vault_meta");
		goto out;
	}
	r = st_run(st, s, "write vault_meta");
out:
	st_done(s);
	return r;
}

/* ---- secret rows ------------------------------------------------------- */

void store_secret_clear(struct store_secret *s)
{
	if (!s)
		return;
	free(s->hosts);
	free(s->ciphertext);
	s->hosts = NULL;
	s->n_hosts = 0;
	s->ciphertext = NULL;
	s->ciphertext_len = 0;
}

void store_secret_array_free(struct store_secret *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store_secret_clear(&rows[i]);
	free(rows);
}

/* Copy a non-empty text column of at most size - 1 bytes; -EUCLEAN otherwise. */
static int st_col_text(sqlite3_stmt *s, int col, char *buf, size_t size)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	int n = sqlite3_column_bytes(s, col);

	if (!t || n <= 0 || (size_t)n >= size || memchr(t, '\0', (size_t)n))
		return -EUCLEAN;
	memcpy(buf, t, (size_t)n);
	buf[n] = '\0';
	return 0;
}

/* allowed_hosts holds normalized patterns joined by '\n' ('' = none). */
static int st_parse_hosts(const unsigned char *text, size_t len, struct store_secret *row)
{
	char (*hosts)[HOST_PATTERN_BUF];
	struct cursor c;
	size_t n = 0;

	if (len == 0)
		return 0;
	hosts = calloc(STORE_HOSTS_MAX, sizeof(*hosts));
	if (!hosts)
		return -ENOMEM;
	cursor_init(&c, text, len);
	while (cursor_remaining(&c) > 0) {
		const uint8_t *item;
		size_t idx;
		bool last = cursor_find(&c, '\n', cursor_remaining(&c), &idx) != 0;

		if (last)
			idx = cursor_remaining(&c);
		if (n == STORE_HOSTS_MAX || idx == 0 || idx > HOST_PATTERN_MAX ||
		    cursor_get_bytes(&c, idx, &item) != 0 || memchr(item, '\0', idx) ||
		    (!last && cursor_skip(&c, 1) != 0) || (!last && cursor_remaining(&c) == 0)) {
			free(hosts);
			return -EUCLEAN;
		}
		memcpy(hosts[n], item, idx);
		hosts[n++][idx] = '\0';
	}
	row->hosts = hosts;
	row->n_hosts = n;
	return 0;
}

static int st_col_blob(sqlite3_stmt *s, int col, const void **ret_blob, size_t *ret_len)
{
	const void *blob = sqlite3_column_blob(s, col);
	int n = sqlite3_column_bytes(s, col);

	if (n < 0 || (n > 0 && !blob))
		return -EUCLEAN;
	*ret_blob = blob;
	*ret_len = (size_t)n;
	return 0;
}

static int st_read_ciphertext(sqlite3_stmt *s, struct store_secret *row)
{
	const void *blob;
	size_t len;

	if (st_col_blob(s, COL_CIPHERTEXT, &blob, &len) != 0 || len > STORE_CIPHERTEXT_MAX)
		return -EUCLEAN;
	/* malloc(0) may return NULL; keep a real buffer so NULL means "not read". */
	row->ciphertext = malloc(len ? len : 1);
	if (!row->ciphertext)
		return -ENOMEM;
	if (len)
		memcpy(row->ciphertext, blob, len);
	row->ciphertext_len = len;
	return 0;
}

/* Fill row from the current result row (SECRET_COLS), checking every column. */
static int st_read_secret_cols(sqlite3_stmt *s, unsigned flags, struct store_secret *row)
{
	const unsigned char *hosts;
	const void *nonce;
	size_t nonce_len;
	int64_t scope, version, cleartext;
	int r;

	row->id = sqlite3_column_int64(s, COL_ID);
	scope = sqlite3_column_int64(s, COL_SCOPE);
	version = sqlite3_column_int64(s, COL_VERSION);
	cleartext = sqlite3_column_int64(s, COL_CLEARTEXT);
	if (st_col_text(s, COL_TENANT, row->tenant_id, sizeof(row->tenant_id)) != 0 ||
	    st_col_text(s, COL_SCOPE_ID, row->scope_id, sizeof(row->scope_id)) != 0 ||
	    st_col_text(s, COL_NAME, row->name, sizeof(row->name)) != 0 ||
	    st_col_text(s, COL_ENV, row->expose_as_env, sizeof(row->expose_as_env)) != 0 ||
	    scope < 0 || scope >= SCOPE_WALK__COUNT || version < 1 || version > UINT32_MAX ||
	    (cleartext != 0 && cleartext != 1) ||
	    st_col_blob(s, COL_NONCE, &nonce, &nonce_len) != 0 || nonce_len != STORE_NONCE_BYTES)
		return -EUCLEAN;
	row->scope = (enum scope_walk_scope)scope;
	row->version = (uint32_t)version;
	row->allow_cleartext = cleartext == 1;
	row->created_at_us = sqlite3_column_int64(s, COL_CREATED);
	row->rotated_at_us = sqlite3_column_int64(s, COL_ROTATED);
	memcpy(row->nonce, nonce, STORE_NONCE_BYTES);
	hosts = sqlite3_column_text(s, COL_HOSTS);
	if (!hosts)
		return -EUCLEAN;
	if ((r = st_parse_hosts(hosts, (size_t)sqlite3_column_bytes(s, COL_HOSTS), row)) != 0)
		return r;
	if (flags & STORE_WITH_CIPHERTEXT)
		return st_read_ciphertext(s, row);
	return 0;
}

static int st_read_secret(struct store *st, sqlite3_stmt *s, unsigned flags,
			  struct store_secret *ret_row)
{
	struct store_secret row;
	int r;

	memset(&row, 0, sizeof(row));
	if ((r = st_read_secret_cols(s, flags, &row)) != 0) {
		store_secret_clear(&row);
		if (r == -ENOMEM)
			return st_failf(st, r, "out of memory reading vault_secrets");
		return st_failf(st, r, "vault_secrets row %lld is malformed",
				(long long)sqlite3_column_int64(s, COL_ID));
	}
	*ret_row = row;
	return 0;
}

/* Step a statement expected to give at most one secret. */
static int st_one_secret(struct store *st, sqlite3_stmt *s, unsigned flags,
			 struct store_secret *ret_row)
{
	int r = st_step(st, s, "read vault_secrets");

	if (r == 0)
		return st_failf(st, -ENOENT, "no such secret");
	if (r < 0)
		return r;
	return st_read_secret(st, s, flags, ret_row);
}

/* Step through rows (at most max) into a new array. */
static int st_many_secrets(struct store *st, sqlite3_stmt *s, size_t max,
			   struct store_secret **ret_rows, size_t *ret_n)
{
	struct store_secret *rows = NULL, *grown;
	size_t n = 0, cap = 0;
	int r;

	while ((r = st_step(st, s, "read vault_secrets")) == 1) {
		if (n == max) {
			r = st_failf(st, -E2BIG, "more than %zu secrets", max);
			goto out;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			grown = reallocarray(rows, cap, sizeof(*rows));
			if (!grown) {
				r = st_failf(st, -ENOMEM, "out of memory listing secrets");
				goto out;
			}
			rows = grown;
		}
		if ((r = st_read_secret(st, s, 0, &rows[n])) != 0)
			goto out;
		n++;
	}
	if (r < 0)
		goto out;
	*ret_rows = rows;
	*ret_n = n;
	rows = NULL;
	n = 0;
out:
	store_secret_array_free(rows, n);
	return r;
}

static int st_find_by(struct store *st, enum st_stmt id, const char *tenant_id,
		      enum scope_walk_scope scope, const char *scope_id, const char *col4,
		      unsigned flags, struct store_secret *ret_secret)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = st_stmt(st, id, &s)) != 0)
		goto out;
	if ((rc = st_bind_scope(s, tenant_id, scope, scope_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(s, 4, col4, -1, SQLITE_STATIC)) != SQLITE_OK) {
		r = st_fail(st, rc, "bind secret key");
		goto out;
	}
	r = st_one_secret(st, s, flags, ret_secret);
out:
	st_done(s);
	return r;
}

int store_secret_find(struct store *st, const char *tenant_id, enum scope_walk_scope scope,
		      const char *scope_id, const char *name, unsigned flags,
		      struct store_secret *ret_secret)
{
	return st_find_by(st, ST_SECRET_FIND, tenant_id, scope, scope_id, name, flags,
			  ret_secret);
}

int store_secret_find_env(struct store *st, const char *tenant_id, enum scope_walk_scope scope,
			  const char *scope_id, const char *expose_as_env,
			  struct store_secret *ret_secret)
{
	return st_find_by(st, ST_SECRET_FIND_ENV, tenant_id, scope, scope_id, expose_as_env, 0,
			  ret_secret);
}

int store_secret_get(struct store *st, int64_t id, unsigned flags,
		     struct store_secret *ret_secret)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = st_stmt(st, ST_SECRET_GET, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_int64(s, 1, id)) != SQLITE_OK) {
		r = st_fail(st, rc, "bind secret id");
		goto out;
	}
	r = st_one_secret(st, s, flags, ret_secret);
out:
	st_done(s);
	return r;
}

int store_secret_count(struct store *st, const char *tenant_id, enum scope_walk_scope scope,
		       const char *scope_id, size_t *ret_count)
{
	sqlite3_stmt *s = NULL;
	int64_t count;
	int rc, r;

	if ((r = st_stmt(st, ST_SECRET_COUNT, &s)) != 0)
		goto out;
	if ((rc = st_bind_scope(s, tenant_id, scope, scope_id)) != SQLITE_OK) {
		r = st_fail(st, rc, "bind secret scope");
		goto out;
	}
	if ((r = st_step(st, s, "count vault_secrets")) <= 0) {
		if (r == 0)
			r = st_failf(st, -EIO, "count vault_secrets: no answer");
		goto out;
	}
	count = sqlite3_column_int64(s, 0);
	*ret_count = count > 0 ? (size_t)count : 0;
	r = 0;
out:
	st_done(s);
	return r;
}

/* LIMIT max + 1: one row more than allowed is enough to report -E2BIG. */
static int64_t st_limit(size_t max)
{
	return max >= (size_t)INT64_MAX ? INT64_MAX : (int64_t)max + 1;
}

int store_secret_list(struct store *st, const char *tenant_id, enum scope_walk_scope scope,
		      const char *scope_id, size_t max,
		      struct store_secret **ret_rows, size_t *ret_n)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = st_stmt(st, ST_SECRET_LIST, &s)) != 0)
		goto out;
	if ((rc = st_bind_scope(s, tenant_id, scope, scope_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 4, st_limit(max))) != SQLITE_OK) {
		r = st_fail(st, rc, "bind secret scope");
		goto out;
	}
	r = st_many_secrets(st, s, max, ret_rows, ret_n);
out:
	st_done(s);
	return r;
}

int store_secret_candidates(struct store *st, const struct scope_walk_attribution *a,
			    size_t max, struct store_secret **ret_rows, size_t *ret_n)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, r;

	if ((r = st_stmt(st, ST_SECRET_CANDIDATES, &s)) != 0)
		goto out;
	rc = sqlite3_bind_text(s, 1, a->tenant_id, -1, SQLITE_STATIC);
	for (int lvl = 0; lvl < SCOPE_WALK__COUNT && rc == SQLITE_OK; lvl++) {
		const char *id = scope_walk_attribution_id(a, (enum scope_walk_scope)lvl);

		rc = id ? sqlite3_bind_text(s, 2 + lvl, id, -1, SQLITE_STATIC)
			: sqlite3_bind_null(s, 2 + lvl);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 8, st_limit(max));
	if (rc != SQLITE_OK) {
		r = st_fail(st, rc, "bind attribution");
		goto out;
	}
	r = st_many_secrets(st, s, max, ret_rows, ret_n);
out:
	st_done(s);
	return r;
}

/* Join hosts with '\n' into a new string ("" for none). */
static int st_join_hosts(struct store *st, const struct store_secret *row, char **ret_text)
{
	char *text, *p;
	size_t total = 1;

	if (row->n_hosts > STORE_HOSTS_MAX || (row->n_hosts > 0 && !row->hosts))
		return st_failf(st, -EINVAL, "more than %d allowed hosts", STORE_HOSTS_MAX);
	for (size_t i = 0; i < row->n_hosts; i++) {
		size_t len = strnlen(row->hosts[i], HOST_PATTERN_BUF);

		if (len == 0 || len > HOST_PATTERN_MAX || strchr(row->hosts[i], '\n'))
			return st_failf(st, -EINVAL, "allowed host %zu is malformed", i);
		total += len + 1;
	}
	text = p = malloc(total);
	if (!text)
		return st_failf(st, -ENOMEM, "out of memory");
	for (size_t i = 0; i < row->n_hosts; i++) {
		size_t len = strlen(row->hosts[i]);

		if (i > 0)
			*p++ = '\n';
		memcpy(p, row->hosts[i], len);
		p += len;
	}
	*p = '\0';
	*ret_text = text;
	return 0;
}

static int st_bind_ciphertext(sqlite3_stmt *s, int idx, const struct store_secret *row)
{
	if (row->ciphertext_len == 0 || !row->ciphertext)
		return sqlite3_bind_zeroblob(s, idx, 0);
	return sqlite3_bind_blob(s, idx, row->ciphertext, (int)row->ciphertext_len,
				 SQLITE_STATIC);
}

static int st_check_row(struct store *st, const struct store_secret *row)
{
	if ((unsigned)row->scope >= SCOPE_WALK__COUNT || row->version < 1 ||
	    row->ciphertext_len > STORE_CIPHERTEXT_MAX)
		return st_failf(st, -EINVAL, "secret row out of range");
	return 0;
}

int store_secret_insert(struct store *st, const struct store_secret *row, int64_t *ret_id)
{
	sqlite3_stmt *s = NULL;
	char *hosts = NULL;
	int rc, r;

	if ((r = st_check_row(st, row)) != 0 || (r = st_join_hosts(st, row, &hosts)) != 0 ||
	    (r = st_stmt(st, ST_SECRET_INSERT, &s)) != 0)
		goto out;
	if ((rc = st_bind_scope(s, row->tenant_id, row->scope, row->scope_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(s, 4, row->name, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(s, 5, row->expose_as_env, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(s, 6, hosts, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(s, 7, row->allow_cleartext)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 8, row->version)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 9, row->created_at_us)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 10, row->rotated_at_us)) != SQLITE_OK ||
	    (rc = sqlite3_bind_blob(s, 11, row->nonce, STORE_NONCE_BYTES, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = st_bind_ciphertext(s, 12, row)) != SQLITE_OK) {
		r = st_fail(st, rc, "bind new secret");
		goto out;
	}
	if ((r = st_run(st, s, "insert vault_secrets")) != 0)
		goto out;
	*ret_id = sqlite3_last_insert_rowid(st->db);
out:
	st_done(s);
	free(hosts);
	return r;
}

int store_secret_update(struct store *st, const struct store_secret *row)
{
	sqlite3_stmt *s = NULL;
	char *hosts = NULL;
	int rc, r;

	if ((r = st_check_row(st, row)) != 0 || (r = st_join_hosts(st, row, &hosts)) != 0 ||
	    (r = st_stmt(st, ST_SECRET_UPDATE, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_int64(s, 1, row->id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(s, 2, row->expose_as_env, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(s, 3, hosts, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(s, 4, row->allow_cleartext)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 5, row->version)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 6, row->rotated_at_us)) != SQLITE_OK ||
	    (rc = sqlite3_bind_blob(s, 7, row->nonce, STORE_NONCE_BYTES, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = st_bind_ciphertext(s, 8, row)) != SQLITE_OK) {
		r = st_fail(st, rc, "bind secret update");
		goto out;
	}
	if ((r = st_run(st, s, "update vault_secrets")) != 0)
		goto out;
	if (sqlite3_changes(st->db) == 0)
		r = st_failf(st, -ENOENT, "no secret with id %lld", (long long)row->id);
out:
	st_done(s);
	free(hosts);
	return r;
}

int store_secret_delete(struct store *st, int64_t id)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = st_stmt(st, ST_SECRET_DELETE, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_int64(s, 1, id)) != SQLITE_OK) {
		r = st_fail(st, rc, "bind secret id");
		goto out;
	}
	if ((r = st_run(st, s, "delete vault_secrets")) != 0)
		goto out;
	if (sqlite3_changes(st->db) == 0)
		r = st_failf(st, -ENOENT, "no secret with id %lld", (long long)id);
out:
	st_done(s);
	return r;
}

int store_secret_delete_scope(struct store *st, const char *tenant_id,
			      enum scope_walk_scope scope, const char *scope_id)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = st_stmt(st, ST_SECRET_DELETE_SCOPE, &s)) != 0)
		goto out;
	if ((rc = st_bind_scope(s, tenant_id, scope, scope_id)) != SQLITE_OK) {
		r = st_fail(st, rc, "bind secret scope");
		goto out;
	}
	if ((r = st_run(st, s, "delete vault_secrets")) == 0)
		r = sqlite3_changes(st->db);
out:
	st_done(s);
	return r;
}

/* ---- bindings ---------------------------------------------------------- */

static int st_read_binding(struct store *st, sqlite3_stmt *s, struct store_binding *ret_b)
{
	struct store_binding b;
	int r = st_step(st, s, "read vault_bindings");

	if (r == 0)
		return st_failf(st, -ENOENT, "no such binding");
	if (r < 0)
		return r;
	memset(&b, 0, sizeof(b));
	b.id = sqlite3_column_int64(s, 0);
	b.secret_id = sqlite3_column_int64(s, 1);
	b.created_at_us = sqlite3_column_int64(s, 4);
	if (st_col_text(s, 2, b.sandbox_id, sizeof(b.sandbox_id)) != 0 ||
	    st_col_text(s, 3, b.placeholder, sizeof(b.placeholder)) != 0 ||
	    strlen(b.placeholder) != STORE_PLACEHOLDER_LEN)
		return st_failf(st, -EUCLEAN, "vault_bindings row %lld is malformed",
				(long long)b.id);
	*ret_b = b;
	return 0;
}

int store_binding_find(struct store *st, const char *sandbox_id, int64_t secret_id,
		       struct store_binding *ret_binding)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = st_stmt(st, ST_BINDING_FIND, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, sandbox_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 2, secret_id)) != SQLITE_OK) {
		r = st_fail(st, rc, "bind binding key");
		goto out;
	}
	r = st_read_binding(st, s, ret_binding);
out:
	st_done(s);
	return r;
}

int store_binding_find_placeholder(struct store *st, const char *placeholder,
				   struct store_binding *ret_binding)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = st_stmt(st, ST_BINDING_FIND_PLACEHOLDER, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, placeholder, -1, SQLITE_STATIC)) != SQLITE_OK) {
		r = st_fail(st, rc, "bind placeholder");
		goto out;
	}
	r = st_read_binding(st, s, ret_binding);
out:
	st_done(s);
	return r;
}

int store_binding_insert(struct store *st, const struct store_binding *b, int64_t *ret_id)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = st_stmt(st, ST_BINDING_INSERT, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, b->sandbox_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 2, b->secret_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(s, 3, b->placeholder, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 4, b->created_at_us)) != SQLITE_OK) {
		r = st_fail(st, rc, "bind new binding");
		goto out;
	}
	if ((r = st_run(st, s, "insert vault_bindings")) != 0)
		goto out;
	*ret_id = sqlite3_last_insert_rowid(st->db);
out:
	st_done(s);
	return r;
}

int store_binding_delete_sandbox(struct store *st, const char *sandbox_id)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = st_stmt(st, ST_BINDING_DELETE_SANDBOX, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, sandbox_id, -1, SQLITE_STATIC)) != SQLITE_OK) {
		r = st_fail(st, rc, "bind sandbox id");
		goto out;
	}
	if ((r = st_run(st, s, "delete vault_bindings")) == 0)
		r = sqlite3_changes(st->db);
out:
	st_done(s);
	return r;
}

/* ---- plumbing for the other files of this back end --------------------- */

int store_sqlite_stmt(struct store *st, unsigned slot, const char *sql, sqlite3_stmt **ret_stmt)
{
	int rc;

	if (slot >= STORE_SQLITE_EXTRA_SLOTS)
		return st_failf(st, -EINVAL, "statement slot %u out of range", slot);
	if (!st->extra[slot]) {
		rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
					&st->extra[slot], NULL);
		if (rc != SQLITE_OK)
			return st_fail(st, rc, "prepare statement");
	}
	*ret_stmt = st->extra[slot];
	return 0;
}

void store_sqlite_done(sqlite3_stmt *s)
{
	st_done(s);
}

int store_sqlite_step(struct store *st, sqlite3_stmt *s, const char *what)
{
	return st_step(st, s, what);
}

int store_sqlite_many(struct store *st, sqlite3_stmt *s, size_t max, size_t elem,
		      store_sqlite_read_fn read_row, const char *table, void **ret_rows,
		      size_t *ret_n)
{
	unsigned char *rows = NULL, *grown;
	size_t n = 0, cap = 0;
	int r;

	while ((r = st_step(st, s, table)) == 1) {
		if (n == max) {
			r = st_failf(st, -E2BIG, "%s: more than %zu rows", table, max);
			goto out;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			if (!(grown = reallocarray(rows, cap, elem))) {
				r = st_failf(st, -ENOMEM, "out of memory reading %s", table);
				goto out;
			}
			rows = grown;
		}
		memset(rows + n * elem, 0, elem);
		if (read_row(s, rows + n * elem) != 0) {
			r = st_failf(st, -EUCLEAN, "%s: a row is malformed", table);
			goto out;
		}
		n++;
	}
	if (r < 0)
		goto out;
	*ret_rows = rows;
	*ret_n = n;
	rows = NULL;
out:
	free(rows);
	return r;
}

int store_sqlite_run(struct store *st, sqlite3_stmt *s, const char *what)
{
	return st_run(st, s, what);
}

int store_sqlite_fail(struct store *st, int rc, const char *what)
{
	return st_fail(st, rc, what);
}

int store_sqlite_failf(struct store *st, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	r = st_vfailf(st, r, fmt, ap);
	va_end(ap);
	return r;
}

int store_sqlite_col_text(sqlite3_stmt *s, int col, char *buf, size_t size)
{
	return st_col_text(s, col, buf, size);
}

int64_t store_sqlite_limit(size_t max)
{
	return st_limit(max);
}

int store_sqlite_changes(struct store *st)
{
	return sqlite3_changes(st->db);
}
