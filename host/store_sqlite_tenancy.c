/*
 * store_sqlite_tenancy — the tenancy rows of store.h (tenants, sandboxes, API
 * keys, sandbox CAs) in the SQLite back end.  Schema: migrations 2 and 3 in
 * store_sqlite.c.
 *
 * Same rules as store_sqlite.c: constant SQL prepared once per handle, bound
 * parameters only, every column re-checked on the way out (-EUCLEAN).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_sqlite_internal.h"

enum tn_stmt {
	TN_TENANT_INSERT, TN_TENANT_GET, TN_TENANT_LIST, TN_TENANT_COUNT, TN_TENANT_SET_EUC,
	TN_SANDBOX_INSERT, TN_SANDBOX_GET, TN_SANDBOX_LIST_TENANT, TN_SANDBOX_LIST_ALL,
	TN_SANDBOX_COUNT, TN_SANDBOX_DELETE,
	TN_KEY_INSERT, TN_KEY_GET, TN_KEY_FIND_HASH, TN_KEY_LIST, TN_KEY_COUNT, TN_KEY_TOUCH,
	TN_KEY_REVOKE,
	TN_CA_INSERT, TN_CA_GET, TN_CA_DELETE,
	TN__COUNT
};
_Static_assert((int)TN__COUNT <= (int)STORE_SQLITE_SLOTS_TENANCY_N, "tenancy statement slots");
_Static_assert(TENANCY_TRANSPORT_NONE == 0 && TENANCY_TRANSPORT_UDS == 1 &&
	       TENANCY_TRANSPORT_VSOCK == 2, "transport kinds are persisted");

#define TENANT_COLS "id, name, created_at_us, allow_end_user_credentials"
#define SANDBOX_COLS "id, tenant_id, user_id, workspace_id, external_user_id," \
	" external_workspace_id, template, transport_kind, transport_uds, transport_cid," \
	" created_at_us"
enum {
	SB_ID, SB_TENANT, SB_USER, SB_WORKSPACE, SB_EXT_USER, SB_EXT_WORKSPACE, SB_TEMPLATE,
	SB_KIND, SB_UDS, SB_CID, SB_CREATED,
};
#define KEY_COLS "id, tenant_id, name, prefix, created_at_us, last_used_at_us," \
	" revoked_at_us, hash"
enum { KY_ID, KY_TENANT, KY_NAME, KY_PREFIX, KY_CREATED, KY_USED, KY_REVOKED, KY_HASH };
#define CA_COLS "sandbox_id, cert_pem, created_at_us, sealed_key"
enum { CA_ID, CA_PEM, CA_CREATED, CA_SEALED };
/* Optional equality filters: a NULL parameter matches every row.  ?1 is the
 * tenant (left unbound where unused: numbered parameters keep their slots). */
#define SANDBOX_FILTER "(?2 IS NULL OR external_user_id = ?2)" \
	" AND (?3 IS NULL OR external_workspace_id = ?3)"

static const char *const tn_sql[TN__COUNT] = {
	[TN_TENANT_INSERT] = "INSERT INTO tenancy_tenants (" TENANT_COLS ") VALUES (?1, ?2, ?3, ?4)",
	[TN_TENANT_GET] = "SELECT " TENANT_COLS " FROM tenancy_tenants WHERE id = ?1",
	[TN_TENANT_LIST] = "SELECT " TENANT_COLS " FROM tenancy_tenants ORDER BY id LIMIT ?1",
	[TN_TENANT_COUNT] = "SELECT count(*) FROM tenancy_tenants",
	[TN_TENANT_SET_EUC] = "UPDATE tenancy_tenants SET allow_end_user_credentials = ?2"
		" WHERE id = ?1",
	[TN_SANDBOX_INSERT] = "INSERT INTO tenancy_sandboxes (" SANDBOX_COLS ")"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
	[TN_SANDBOX_GET] = "SELECT " SANDBOX_COLS " FROM tenancy_sandboxes WHERE id = ?1",
	[TN_SANDBOX_LIST_TENANT] = "SELECT " SANDBOX_COLS " FROM tenancy_sandboxes"
		" WHERE tenant_id = ?1 AND " SANDBOX_FILTER
		" ORDER BY created_at_us, id LIMIT ?4",
	[TN_SANDBOX_LIST_ALL] = "SELECT " SANDBOX_COLS " FROM tenancy_sandboxes"
		" WHERE " SANDBOX_FILTER
		" ORDER BY created_at_us, id LIMIT ?4",
	[TN_SANDBOX_COUNT] = "SELECT count(*) FROM tenancy_sandboxes WHERE tenant_id = ?1",
	[TN_SANDBOX_DELETE] = "DELETE FROM tenancy_sandboxes WHERE id = ?1",
	[TN_KEY_INSERT] = "INSERT INTO tenancy_api_keys (" KEY_COLS ")"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[TN_KEY_GET] = "SELECT " KEY_COLS " FROM tenancy_api_keys WHERE id = ?1",
	[TN_KEY_FIND_HASH] = "SELECT " KEY_COLS " FROM tenancy_api_keys WHERE hash = ?1",
	[TN_KEY_LIST] = "SELECT " KEY_COLS " FROM tenancy_api_keys WHERE tenant_id = ?1"
		" ORDER BY created_at_us, id LIMIT ?2",
	[TN_KEY_COUNT] = "SELECT count(*) FROM tenancy_api_keys WHERE tenant_id = ?1",
	[TN_KEY_TOUCH] = "UPDATE tenancy_api_keys SET last_used_at_us = ?2 WHERE id = ?1",
	/* Idempotent: a second revocation keeps the first time. */
	[TN_KEY_REVOKE] = "UPDATE tenancy_api_keys SET revoked_at_us = CASE"
		" WHEN revoked_at_us = 0 THEN ?2 ELSE revoked_at_us END WHERE id = ?1",
	[TN_CA_INSERT] = "INSERT INTO tenancy_sandbox_cas (" CA_COLS ") VALUES (?1, ?2, ?3, ?4)",
	/* The sealed key is read only when asked for (?2 = 1): the API's
	 * certificate answers never hold it, not even in memory. */
	[TN_CA_GET] = "SELECT sandbox_id, cert_pem, created_at_us,"
		" CASE WHEN ?2 THEN sealed_key END FROM tenancy_sandbox_cas WHERE sandbox_id = ?1",
	[TN_CA_DELETE] = "DELETE FROM tenancy_sandbox_cas WHERE sandbox_id = ?1",
};

static int tn_stmt(struct store *st, enum tn_stmt id, sqlite3_stmt **ret_stmt)
{
	return store_sqlite_stmt(st, STORE_SQLITE_SLOTS_TENANCY + (unsigned)id, tn_sql[id],
				 ret_stmt);
}

/* Bind text, or NULL for NULL / "" (unset optional columns). */
static int tn_bind_opt(sqlite3_stmt *s, int idx, const char *text)
{
	if (!text || !text[0])
		return sqlite3_bind_null(s, idx);
	return sqlite3_bind_text(s, idx, text, -1, SQLITE_STATIC);
}

/* An optional text column: NULL reads back as "". */
static int tn_col_opt(sqlite3_stmt *s, int col, char *buf, size_t size)
{
	if (sqlite3_column_type(s, col) == SQLITE_NULL) {
		buf[0] = '\0';
		return 0;
	}
	return store_sqlite_col_text(s, col, buf, size);
}

/* Run a statement with one text parameter (?1) and one int64 (?2, if any). */
static int tn_exec_id(struct store *st, enum tn_stmt id, const char *text, const int64_t *num,
		      const char *what)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = tn_stmt(st, id, &s)) != 0)
		goto out;
	rc = sqlite3_bind_text(s, 1, text, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && num)
		rc = sqlite3_bind_int64(s, 2, *num);
	if (rc != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, what);
		goto out;
	}
	if ((r = store_sqlite_run(st, s, what)) == 0 && store_sqlite_changes(st) == 0)
		r = store_sqlite_failf(st, -ENOENT, "%s: no such row", what);
out:
	store_sqlite_done(s);
	return r;
}

/* SELECT count(*) with an optional text parameter ?1. */
static int tn_count(struct store *st, enum tn_stmt id, const char *text, size_t *ret_count)
{
	sqlite3_stmt *s = NULL;
	int64_t n;
	int rc, r;

	if ((r = tn_stmt(st, id, &s)) != 0)
		goto out;
	if (text && (rc = sqlite3_bind_text(s, 1, text, -1, SQLITE_STATIC)) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind count");
		goto out;
	}
	if ((r = store_sqlite_step(st, s, "count rows")) <= 0) {
		if (r == 0)
			r = store_sqlite_failf(st, -EIO, "count rows: no answer");
		goto out;
	}
	n = sqlite3_column_int64(s, 0);
	*ret_count = n > 0 ? (size_t)n : 0;
	r = 0;
out:
	store_sqlite_done(s);
	return r;
}

typedef store_sqlite_read_fn tn_read_fn;

/* Step a statement expected to give at most one row. */
static int tn_one(struct store *st, sqlite3_stmt *s, tn_read_fn read_row, void *row,
		  const char *table)
{
	int r = store_sqlite_step(st, s, table);

	if (r == 0)
		return store_sqlite_failf(st, -ENOENT, "%s: no such row", table);
	if (r < 0)
		return r;
	if (read_row(s, row) != 0)
		return store_sqlite_failf(st, -EUCLEAN, "%s: row is malformed", table);
	return 0;
}

/* A get by text id ?1 into row (written only on success). */
static int tn_get(struct store *st, enum tn_stmt id, const char *key, tn_read_fn read_row,
		  void *scratch, void *ret_row, size_t size, const char *table)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = tn_stmt(st, id, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC)) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, table);
		goto out;
	}
	memset(scratch, 0, size);
	if ((r = tn_one(st, s, read_row, scratch, table)) == 0)
		memcpy(ret_row, scratch, size);
out:
	store_sqlite_done(s);
	return r;
}

/* ---- tenants ----------------------------------------------------------- */

static int tn_read_tenant(sqlite3_stmt *s, void *p)
{
	struct tenancy_tenant *t = p;
	int64_t allow = sqlite3_column_int64(s, 3);

	if (store_sqlite_col_text(s, 0, t->id, sizeof(t->id)) != 0 ||
	    store_sqlite_col_text(s, 1, t->name, sizeof(t->name)) != 0 ||
	    (allow != 0 && allow != 1))
		return -EUCLEAN;
	t->created_at_us = sqlite3_column_int64(s, 2);
	t->allow_end_user_scoped_credentials = allow == 1;
	return 0;
}

int store_tenant_insert(struct store *st, const struct tenancy_tenant *t)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = tn_stmt(st, TN_TENANT_INSERT, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, t->id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(s, 2, t->name, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 3, t->created_at_us)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(s, 4, t->allow_end_user_scoped_credentials)) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind new tenant");
		goto out;
	}
	r = store_sqlite_run(st, s, "insert tenancy_tenants");
out:
	store_sqlite_done(s);
	return r;
}

int store_tenant_get(struct store *st, const char *id, struct tenancy_tenant *ret_tenant)
{
	struct tenancy_tenant t;

	return tn_get(st, TN_TENANT_GET, id, tn_read_tenant, &t, ret_tenant, sizeof(t),
		      "tenancy_tenants");
}

int store_tenant_list(struct store *st, size_t max, struct tenancy_tenant **ret_rows,
		      size_t *ret_n)
{
	sqlite3_stmt *s = NULL;
	void *rows = NULL;
	int rc, r;

	if ((r = tn_stmt(st, TN_TENANT_LIST, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_int64(s, 1, store_sqlite_limit(max))) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind tenant list");
		goto out;
	}
	r = store_sqlite_many(st, s, max, sizeof(**ret_rows), tn_read_tenant, "tenancy_tenants", &rows,
		    ret_n);
	if (r == 0)
		*ret_rows = rows;
out:
	store_sqlite_done(s);
	return r;
}

int store_tenant_count(struct store *st, size_t *ret_count)
{
	return tn_count(st, TN_TENANT_COUNT, NULL, ret_count);
}

int store_tenant_set_end_user_credentials(struct store *st, const char *id, bool allow)
{
	int64_t v = allow;

	return tn_exec_id(st, TN_TENANT_SET_EUC, id, &v, "update tenancy_tenants");
}

/* ---- sandboxes --------------------------------------------------------- */

static int tn_read_transport(sqlite3_stmt *s, struct tenancy_transport *t)
{
	int64_t kind = sqlite3_column_int64(s, SB_KIND);
	int64_t cid = sqlite3_column_int64(s, SB_CID);
	bool has_uds = sqlite3_column_type(s, SB_UDS) != SQLITE_NULL;
	bool has_cid = sqlite3_column_type(s, SB_CID) != SQLITE_NULL;

	if (kind < TENANCY_TRANSPORT_NONE || kind > TENANCY_TRANSPORT_VSOCK ||
	    has_uds != (kind == TENANCY_TRANSPORT_UDS) ||
	    has_cid != (kind == TENANCY_TRANSPORT_VSOCK) ||
	    (has_cid && (cid < 3 || cid > 0xfffffffe)) ||
	    tn_col_opt(s, SB_UDS, t->uds, sizeof(t->uds)) != 0 ||
	    (has_uds && t->uds[0] != '/'))
		return -EUCLEAN;
	t->kind = (enum tenancy_transport_kind)kind;
	t->cid = has_cid ? (uint32_t)cid : 0;
	return 0;
}

static int tn_read_sandbox(sqlite3_stmt *s, void *p)
{
	struct tenancy_sandbox *b = p;

	if (store_sqlite_col_text(s, SB_ID, b->id, sizeof(b->id)) != 0 ||
	    strlen(b->id) != TENANCY_OBJECT_ID_LEN ||
	    store_sqlite_col_text(s, SB_TENANT, b->tenant_id, sizeof(b->tenant_id)) != 0 ||
	    tn_col_opt(s, SB_USER, b->user_id, sizeof(b->user_id)) != 0 ||
	    tn_col_opt(s, SB_WORKSPACE, b->workspace_id, sizeof(b->workspace_id)) != 0 ||
	    tn_col_opt(s, SB_EXT_USER, b->external_user_id, sizeof(b->external_user_id)) != 0 ||
	    tn_col_opt(s, SB_EXT_WORKSPACE, b->external_workspace_id,
		       sizeof(b->external_workspace_id)) != 0 ||
	    tn_col_opt(s, SB_TEMPLATE, b->template_name, sizeof(b->template_name)) != 0 ||
	    tn_read_transport(s, &b->transport) != 0)
		return -EUCLEAN;
	b->created_at_us = sqlite3_column_int64(s, SB_CREATED);
	return 0;
}

static int tn_bind_sandbox(sqlite3_stmt *s, const struct tenancy_sandbox *b)
{
	const struct tenancy_transport *t = &b->transport;
	int rc;

	if ((rc = sqlite3_bind_text(s, 1 + SB_ID, b->id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(s, 1 + SB_TENANT, b->tenant_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = tn_bind_opt(s, 1 + SB_USER, b->user_id)) != SQLITE_OK ||
	    (rc = tn_bind_opt(s, 1 + SB_WORKSPACE, b->workspace_id)) != SQLITE_OK ||
	    (rc = tn_bind_opt(s, 1 + SB_EXT_USER, b->external_user_id)) != SQLITE_OK ||
	    (rc = tn_bind_opt(s, 1 + SB_EXT_WORKSPACE, b->external_workspace_id)) != SQLITE_OK ||
	    (rc = tn_bind_opt(s, 1 + SB_TEMPLATE, b->template_name)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(s, 1 + SB_KIND, (int)t->kind)) != SQLITE_OK ||
	    (rc = tn_bind_opt(s, 1 + SB_UDS,
			      t->kind == TENANCY_TRANSPORT_UDS ? t->uds : NULL)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 1 + SB_CREATED, b->created_at_us)) != SQLITE_OK)
		return rc;
	if (t->kind == TENANCY_TRANSPORT_VSOCK)
		return sqlite3_bind_int64(s, 1 + SB_CID, t->cid);
	return sqlite3_bind_null(s, 1 + SB_CID);
}

int store_sandbox_insert(struct store *st, const struct tenancy_sandbox *b)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = tn_stmt(st, TN_SANDBOX_INSERT, &s)) != 0)
		goto out;
	if ((rc = tn_bind_sandbox(s, b)) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind new sandbox");
		goto out;
	}
	r = store_sqlite_run(st, s, "insert tenancy_sandboxes");
out:
	store_sqlite_done(s);
	return r;
}

int store_sandbox_get(struct store *st, const char *id, struct tenancy_sandbox *ret_sandbox)
{
	struct tenancy_sandbox *b = malloc(sizeof(*b)); /* ~2 KiB: keep it off the stack */
	int r;

	if (!b)
		return store_sqlite_failf(st, -ENOMEM, "out of memory");
	r = tn_get(st, TN_SANDBOX_GET, id, tn_read_sandbox, b, ret_sandbox, sizeof(*b),
		   "tenancy_sandboxes");
	free(b);
	return r;
}

int store_sandbox_list(struct store *st, const struct tenancy_sandbox_filter *filter,
		       size_t max, struct tenancy_sandbox **ret_rows, size_t *ret_n)
{
	static const struct tenancy_sandbox_filter any = { NULL, NULL, NULL };
	sqlite3_stmt *s = NULL;
	void *rows = NULL;
	int rc, r;

	if (!filter)
		filter = &any;
	/* Two statements, so a tenant's listing seeks its index rather than
	 * scanning every tenant's rows. */
	if ((r = tn_stmt(st, filter->tenant_id ? TN_SANDBOX_LIST_TENANT : TN_SANDBOX_LIST_ALL,
			 &s)) != 0)
		goto out;
	if ((rc = tn_bind_opt(s, 1, filter->tenant_id)) != SQLITE_OK ||
	    (rc = tn_bind_opt(s, 2, filter->external_user_id)) != SQLITE_OK ||
	    (rc = tn_bind_opt(s, 3, filter->external_workspace_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 4, store_sqlite_limit(max))) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind sandbox filter");
		goto out;
	}
	r = store_sqlite_many(st, s, max, sizeof(**ret_rows), tn_read_sandbox, "tenancy_sandboxes",
		    &rows, ret_n);
	if (r == 0)
		*ret_rows = rows;
out:
	store_sqlite_done(s);
	return r;
}

int store_sandbox_count(struct store *st, const char *tenant_id, size_t *ret_count)
{
	return tn_count(st, TN_SANDBOX_COUNT, tenant_id, ret_count);
}

int store_sandbox_delete(struct store *st, const char *id)
{
	return tn_exec_id(st, TN_SANDBOX_DELETE, id, NULL, "delete tenancy_sandboxes");
}

/* ---- API keys ---------------------------------------------------------- */

static int tn_read_key(sqlite3_stmt *s, void *p)
{
	struct tenancy_api_key *k = p;

	if (store_sqlite_col_text(s, KY_ID, k->id, sizeof(k->id)) != 0 ||
	    strlen(k->id) != TENANCY_OBJECT_ID_LEN ||
	    store_sqlite_col_text(s, KY_TENANT, k->tenant_id, sizeof(k->tenant_id)) != 0 ||
	    store_sqlite_col_text(s, KY_NAME, k->name, sizeof(k->name)) != 0 ||
	    store_sqlite_col_text(s, KY_PREFIX, k->prefix, sizeof(k->prefix)) != 0)
		return -EUCLEAN;
	k->created_at_us = sqlite3_column_int64(s, KY_CREATED);
	k->last_used_at_us = sqlite3_column_int64(s, KY_USED);
	k->revoked_at_us = sqlite3_column_int64(s, KY_REVOKED);
	return 0;
}

int store_api_key_insert(struct store *st, const struct tenancy_api_key *k,
			 const uint8_t hash[TENANCY_API_KEY_HASH_BYTES])
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if ((r = tn_stmt(st, TN_KEY_INSERT, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1 + KY_ID, k->id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(s, 1 + KY_TENANT, k->tenant_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(s, 1 + KY_NAME, k->name, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(s, 1 + KY_PREFIX, k->prefix, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 1 + KY_CREATED, k->created_at_us)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 1 + KY_USED, k->last_used_at_us)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 1 + KY_REVOKED, k->revoked_at_us)) != SQLITE_OK ||
	    (rc = sqlite3_bind_blob(s, 1 + KY_HASH, hash, TENANCY_API_KEY_HASH_BYTES,
				    SQLITE_STATIC)) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind new API key");
		goto out;
	}
	r = store_sqlite_run(st, s, "insert tenancy_api_keys");
out:
	store_sqlite_done(s);
	return r;
}

int store_api_key_get(struct store *st, const char *id, struct tenancy_api_key *ret_key)
{
	struct tenancy_api_key k;

	return tn_get(st, TN_KEY_GET, id, tn_read_key, &k, ret_key, sizeof(k),
		      "tenancy_api_keys");
}

int store_api_key_find_hash(struct store *st, const uint8_t hash[TENANCY_API_KEY_HASH_BYTES],
			    struct tenancy_api_key *ret_key,
			    uint8_t ret_hash[TENANCY_API_KEY_HASH_BYTES])
{
	struct tenancy_api_key k;
	sqlite3_stmt *s = NULL;
	const void *blob;
	int rc, r;

	memset(&k, 0, sizeof(k));
	if ((r = tn_stmt(st, TN_KEY_FIND_HASH, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_blob(s, 1, hash, TENANCY_API_KEY_HASH_BYTES,
				    SQLITE_STATIC)) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind API key hash");
		goto out;
	}
	if ((r = tn_one(st, s, tn_read_key, &k, "tenancy_api_keys")) != 0)
		goto out;
	blob = sqlite3_column_blob(s, KY_HASH);
	if (!blob || sqlite3_column_bytes(s, KY_HASH) != TENANCY_API_KEY_HASH_BYTES) {
		r = store_sqlite_failf(st, -EUCLEAN, "tenancy_api_keys: hash is malformed");
		goto out;
	}
	memcpy(ret_hash, blob, TENANCY_API_KEY_HASH_BYTES);
	*ret_key = k;
out:
	store_sqlite_done(s);
	return r;
}

int store_api_key_list(struct store *st, const char *tenant_id, size_t max,
		       struct tenancy_api_key **ret_rows, size_t *ret_n)
{
	sqlite3_stmt *s = NULL;
	void *rows = NULL;
	int rc, r;

	if ((r = tn_stmt(st, TN_KEY_LIST, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, tenant_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 2, store_sqlite_limit(max))) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind API key list");
		goto out;
	}
	r = store_sqlite_many(st, s, max, sizeof(**ret_rows), tn_read_key, "tenancy_api_keys", &rows,
		    ret_n);
	if (r == 0)
		*ret_rows = rows;
out:
	store_sqlite_done(s);
	return r;
}

int store_api_key_count(struct store *st, const char *tenant_id, size_t *ret_count)
{
	return tn_count(st, TN_KEY_COUNT, tenant_id, ret_count);
}

int store_api_key_touch(struct store *st, const char *id, int64_t now_us)
{
	return tn_exec_id(st, TN_KEY_TOUCH, id, &now_us, "update tenancy_api_keys");
}

int store_api_key_revoke(struct store *st, const char *id, int64_t now_us)
{
	return tn_exec_id(st, TN_KEY_REVOKE, id, &now_us, "revoke tenancy_api_keys");
}

/* ---- sandbox CAs ------------------------------------------------------- */

static bool tn_ca_pem_ok(const char *pem, size_t len)
{
	return pem && len >= sizeof(STORE_CA_PEM_PREFIX) - 1 && len <= STORE_CA_PEM_MAX &&
	       memcmp(pem, STORE_CA_PEM_PREFIX, sizeof(STORE_CA_PEM_PREFIX) - 1) == 0 &&
	       strlen(pem) == len;
}

int store_sandbox_ca_insert(struct store *st, const struct store_sandbox_ca *ca)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if (!tn_ca_pem_ok(ca->cert_pem, ca->cert_pem_len) || !ca->sealed_key ||
	    ca->sealed_key_len == 0 || ca->sealed_key_len > STORE_CA_SEALED_MAX)
		return store_sqlite_failf(st, -EINVAL, "sandbox CA of %s is out of range",
					  ca->sandbox_id);
	if ((r = tn_stmt(st, TN_CA_INSERT, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1 + CA_ID, ca->sandbox_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(s, 1 + CA_PEM, ca->cert_pem, (int)ca->cert_pem_len,
				    SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 1 + CA_CREATED, ca->created_at_us)) != SQLITE_OK ||
	    (rc = sqlite3_bind_blob(s, 1 + CA_SEALED, ca->sealed_key, (int)ca->sealed_key_len,
				    SQLITE_STATIC)) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind new sandbox CA");
		goto out;
	}
	r = store_sqlite_run(st, s, "insert tenancy_sandbox_cas");
out:
	store_sqlite_done(s);
	return r;
}

/* Copy the current row's columns into ca (allocations owned by ca). */
static int tn_read_ca(sqlite3_stmt *s, unsigned flags, struct store_sandbox_ca *ca)
{
	const unsigned char *pem = sqlite3_column_text(s, CA_PEM);
	size_t pem_len = (size_t)sqlite3_column_bytes(s, CA_PEM);
	const void *blob;
	size_t blob_len;

	if (store_sqlite_col_text(s, CA_ID, ca->sandbox_id, sizeof(ca->sandbox_id)) != 0 ||
	    !tn_ca_pem_ok((const char *)pem, pem_len))
		return -EUCLEAN;
	ca->created_at_us = sqlite3_column_int64(s, CA_CREATED);
	if (!(ca->cert_pem = malloc(pem_len + 1)))
		return -ENOMEM;
	memcpy(ca->cert_pem, pem, pem_len + 1);
	ca->cert_pem_len = pem_len;
	if (!(flags & STORE_WITH_SEALED_KEY))
		return 0;
	blob = sqlite3_column_blob(s, CA_SEALED);
	blob_len = (size_t)sqlite3_column_bytes(s, CA_SEALED);
	if (!blob || blob_len == 0 || blob_len > STORE_CA_SEALED_MAX)
		return -EUCLEAN;
	if (!(ca->sealed_key = malloc(blob_len)))
		return -ENOMEM;
	memcpy(ca->sealed_key, blob, blob_len);
	ca->sealed_key_len = blob_len;
	return 0;
}

int store_sandbox_ca_get(struct store *st, const char *sandbox_id, unsigned flags,
			 struct store_sandbox_ca *ret_ca)
{
	struct store_sandbox_ca ca;
	sqlite3_stmt *s = NULL;
	int rc, r;

	memset(&ca, 0, sizeof(ca));
	if ((r = tn_stmt(st, TN_CA_GET, &s)) != 0)
		goto out;
	if ((rc = sqlite3_bind_text(s, 1, sandbox_id, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(s, 2, (flags & STORE_WITH_SEALED_KEY) != 0)) != SQLITE_OK) {
		r = store_sqlite_fail(st, rc, "bind sandbox CA key");
		goto out;
	}
	if ((r = store_sqlite_step(st, s, "read tenancy_sandbox_cas")) <= 0) {
		if (r == 0)
			r = store_sqlite_failf(st, -ENOENT, "tenancy_sandbox_cas: no such row");
		goto out;
	}
	if ((r = tn_read_ca(s, flags, &ca)) != 0) {
		r = r == -ENOMEM ? store_sqlite_failf(st, r, "out of memory reading a sandbox CA")
				 : store_sqlite_failf(st, r, "tenancy_sandbox_cas: row is malformed");
		goto out;
	}
	*ret_ca = ca;
	memset(&ca, 0, sizeof(ca));
out:
	store_sqlite_done(s);
	store_sandbox_ca_clear(&ca);
	return r;
}

int store_sandbox_ca_delete(struct store *st, const char *sandbox_id)
{
	return tn_exec_id(st, TN_CA_DELETE, sandbox_id, NULL, "delete tenancy_sandbox_cas");
}

void store_sandbox_ca_clear(struct store_sandbox_ca *ca)
{
	if (!ca)
		return;
	free(ca->cert_pem);
	free(ca->sealed_key);
	ca->cert_pem = NULL;
	ca->sealed_key = NULL;
	ca->cert_pem_len = ca->sealed_key_len = 0;
}
