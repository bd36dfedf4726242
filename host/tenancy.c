#include "tenancy.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sandbox_ca.h"
#include "store.h"
#include "vault.h"

_Static_assert(TENANCY_API_KEY_HASH_BYTES >= crypto_generichash_BYTES_MIN &&
	       TENANCY_API_KEY_HASH_BYTES <= crypto_generichash_BYTES_MAX, "hash size");
_Static_assert(MASTER_KEY_SUBKEY_BYTES >= crypto_generichash_KEYBYTES_MIN &&
	       MASTER_KEY_SUBKEY_BYTES <= crypto_generichash_KEYBYTES_MAX, "hash key size");
_Static_assert(TENANCY_TENANT_ID_MAX <= STORE_ID_MAX && TENANCY_ATTR_ID_MAX <= STORE_ID_MAX,
	       "tenancy ids fit the vault's scope ids");
_Static_assert(TENANCY_OBJECT_ID_LEN == 4 + TENANCY_OBJECT_ID_HEX, "object id length");

/* Messages quote at most this much of an offending string. */
#define TN_QUOTE_MAX 64

struct tenancy {
	struct store *st;
	unsigned char *hash_key; /* sodium_malloc'd, read-only */
	unsigned char *ca_key;   /* MASTER_KEY_PURPOSE_CA_KEYS: seals sandbox CA keys */
	char err[TENANCY_ERR_MAX];
};

/* ---- errors ------------------------------------------------------------ */

__attribute__((format(printf, 3, 4)))
static int tn_fail(struct tenancy *t, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->err, sizeof(t->err), fmt, ap);
	va_end(ap);
	return r;
}

static int tn_store_fail(struct tenancy *t, int r, const char *what)
{
	return tn_fail(t, r, "%s: %s", what, store_errmsg(t->st));
}

/* Printable-only, truncated copy of a caller string for messages. */
static const char *tn_quote(const char *s, char buf[TN_QUOTE_MAX + 4])
{
	size_t i;

	for (i = 0; s && s[i] && i < TN_QUOTE_MAX; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	strcpy(buf + i, s && s[i] ? "..." : "");
	return buf;
}

/* Commit the open write transaction; the caller rolls back on failure. */
static int tn_commit(struct tenancy *t, const char *what)
{
	int r = store_commit(t->st);

	return r ? tn_store_fail(t, r, what) : 0;
}

static int64_t tn_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- validation -------------------------------------------------------- */

static bool tn_is_set(const char *s)
{
	return s && s[0];
}

/* 1..max bytes, each within [lo, hi]. */
static bool tn_bytes_in(const char *s, size_t max, unsigned char lo, unsigned char hi)
{
	size_t len;

	if (!tn_is_set(s) || (len = strnlen(s, max + 1)) > max)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < lo || (unsigned char)s[i] > hi)
			return false;
	return true;
}

bool tenancy_tenant_id_is_valid(const char *s)
{
	size_t len;

	if (!tn_is_set(s) || (len = strnlen(s, TENANCY_TENANT_ID_MAX + 1)) > TENANCY_TENANT_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '_' && c != '-')))
			return false;
	}
	return true;
}

bool tenancy_attr_id_is_valid(const char *s)
{
	return tn_bytes_in(s, TENANCY_ATTR_ID_MAX, 0x21, 0x7e);
}

static bool tn_object_id_is_valid(const char *s, const char *prefix)
{
	if (!s || strnlen(s, TENANCY_OBJECT_ID_LEN + 1) != TENANCY_OBJECT_ID_LEN ||
	    memcmp(s, prefix, 4) != 0)
		return false;
	for (size_t i = 4; i < TENANCY_OBJECT_ID_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

bool tenancy_sandbox_id_is_valid(const char *s)
{
	return tn_object_id_is_valid(s, TENANCY_SANDBOX_ID_PREFIX);
}

bool tenancy_api_key_id_is_valid(const char *s)
{
	return tn_object_id_is_valid(s, TENANCY_API_KEY_ID_PREFIX);
}

/* Length of the UTF-8 sequence at s (RFC 3629: shortest form, no
 * surrogates, at most U+10FFFF), or 0 if it is not one. */
static size_t tn_utf8_seq(const unsigned char *s, size_t left)
{
	unsigned char c = s[0];
	size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 :
		   c >= 0xf0 && c <= 0xf4 ? 4 : 0;
	unsigned char lo = 0x80, hi = 0xbf;

	if (n == 0 || n > left)
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	for (size_t i = 1; i < n; i++, lo = 0x80, hi = 0xbf)
		if (s[i] < lo || s[i] > hi)
			return 0;
	return n;
}

/* Display names: UTF-8 without C0, DEL or C1 controls (they would end up
 * in terminals via miosactl). */
bool tenancy_name_is_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len, n;

	if (!tn_is_set(s) || (len = strnlen(s, TENANCY_NAME_MAX + 1)) > TENANCY_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i += n) {
		if (!(n = tn_utf8_seq(p + i, len - i)) || p[i] < 0x20 || p[i] == 0x7f ||
		    (p[i] == 0xc2 && p[i + 1] < 0xa0))
			return false;
	}
	return true;
}

/* An optional attribution id: unset, or valid. */
static int tn_check_attr(struct tenancy *t, const char *what, const char *s)
{
	char q[TN_QUOTE_MAX + 4];

	if (!tn_is_set(s) || tenancy_attr_id_is_valid(s))
		return 0;
	return tn_fail(t, -EINVAL, "%s '%s' must be 1..%d bytes of printable ASCII without spaces",
		       what, tn_quote(s, q), TENANCY_ATTR_ID_MAX);
}

static int tn_check_tenant_id(struct tenancy *t, const char *id)
{
	char q[TN_QUOTE_MAX + 4];

	if (tenancy_tenant_id_is_valid(id))
		return 0;
	return tn_fail(t, -EINVAL, "tenant id '%s' must match [a-z0-9][a-z0-9_-]{0,63}",
		       tn_quote(id, q));
}

static int tn_check_transport(struct tenancy *t, const struct tenancy_sandbox_spec *spec)
{
	char q[TN_QUOTE_MAX + 4];

	switch (spec->transport) {
	case TENANCY_TRANSPORT_NONE:
		return 0;
	case TENANCY_TRANSPORT_UDS:
		if (!tn_bytes_in(spec->uds, TENANCY_UDS_MAX, 0x20, 0x7e) || spec->uds[0] != '/' ||
		    !spec->uds[1])
			return tn_fail(t, -EINVAL,
				       "vsock_uds '%s' must be an absolute path of 2..%d printable ASCII bytes",
				       tn_quote(spec->uds, q), TENANCY_UDS_MAX);
		return 0;
	case TENANCY_TRANSPORT_VSOCK:
		/* 0, 1 and 2 are the hypervisor, loopback and host; ~0 is "any". */
		if (spec->cid < 3 || spec->cid == UINT32_MAX)
			return tn_fail(t, -EINVAL, "vsock_cid %u is reserved; use 3..4294967294",
				       spec->cid);
		return 0;
	}
	return tn_fail(t, -EINVAL, "transport kind %d is unknown", (int)spec->transport);
}

static int tn_check_sandbox_spec(struct tenancy *t, const struct tenancy_sandbox_spec *spec)
{
	char q[TN_QUOTE_MAX + 4];
	int r;

	if (!spec)
		return tn_fail(t, -EINVAL, "no sandbox given");
	if ((r = tn_check_tenant_id(t, spec->tenant_id)) != 0 ||
	    (r = tn_check_attr(t, "user_id", spec->user_id)) != 0 ||
	    (r = tn_check_attr(t, "workspace_id", spec->workspace_id)) != 0 ||
	    (r = tn_check_attr(t, "external_user_id", spec->external_user_id)) != 0 ||
	    (r = tn_check_attr(t, "external_workspace_id", spec->external_workspace_id)) != 0 ||
	    (r = tn_check_transport(t, spec)) != 0)
		return r;
	if (tn_is_set(spec->template_name) &&
	    !tn_bytes_in(spec->template_name, TENANCY_TEMPLATE_MAX, 0x20, 0x7e))
		return tn_fail(t, -EINVAL, "template '%s' must be 1..%d bytes of printable ASCII",
			       tn_quote(spec->template_name, q), TENANCY_TEMPLATE_MAX);
	return 0;
}

/* ---- open / close ------------------------------------------------------ */

int tenancy_open(const char *state_dir, const struct master_key *key,
		 struct tenancy **ret_tenancy, char *err, size_t err_size)
{
	struct tenancy *t = NULL;
	int r;

	if (!key || !ret_tenancy) {
		if (err && err_size)
			snprintf(err, err_size, "tenancy: no master key given");
		return -EINVAL;
	}
	if (sodium_init() < 0) {
		if (err && err_size)
			snprintf(err, err_size, "tenancy: libsodium failed to initialise");
		return -EIO;
	}
	if (!(t = calloc(1, sizeof(*t)))) {
		if (err && err_size)
			snprintf(err, err_size, "tenancy: out of memory");
		return -ENOMEM;
	}
	if ((r = store_open(state_dir, &t->st, err, err_size)) != 0)
		goto out;
	if ((r = master_key_derive(key, MASTER_KEY_PURPOSE_API_KEYS, &t->hash_key)) != 0 ||
	    (r = master_key_derive(key, MASTER_KEY_PURPOSE_CA_KEYS, &t->ca_key)) != 0) {
		if (err && err_size)
			snprintf(err, err_size, "tenancy: cannot derive the subkeys");
		goto out;
	}
	*ret_tenancy = t;
	t = NULL;
out:
	tenancy_close(t);
	return r;
}

void tenancy_close(struct tenancy *t)
{
	if (!t)
		return;
	store_close(t->st);
	master_key_subkey_free(t->hash_key);
	master_key_subkey_free(t->ca_key);
	free(t);
}

const char *tenancy_errmsg(const struct tenancy *t)
{
	return t ? t->err : "no tenancy";
}

int tenancy_check_idle(struct tenancy *t, bool reset)
{
	int r = store_check_idle(t->st);

	if (r == 0)
		return 0;
	tn_fail(t, r, "%s", store_errmsg(t->st));
	if (reset)
		store_force_idle(t->st);
	return r;
}

/* ---- tenants ----------------------------------------------------------- */

static int tn_tenant_insert(struct tenancy *t, const struct tenancy_tenant *row)
{
	char q[TN_QUOTE_MAX + 4];
	size_t count = 0;
	int r;

	if ((r = store_tenant_count(t->st, &count)) != 0)
		return tn_store_fail(t, r, "count tenants");
	if (count >= TENANCY_TENANTS_MAX)
		return tn_fail(t, -ENOSPC, "there are already %d tenants", TENANCY_TENANTS_MAX);
	r = store_tenant_insert(t->st, row);
	if (r == -EEXIST)
		return tn_fail(t, r, "tenant '%s' already exists", tn_quote(row->id, q));
	if (r != 0)
		return tn_store_fail(t, r, "create tenant");
	return 0;
}

int tenancy_tenant_create(struct tenancy *t, const char *id, const char *name,
			  struct tenancy_tenant *ret_tenant)
{
	struct tenancy_tenant row;
	int r;

	if ((r = tn_check_tenant_id(t, id)) != 0)
		return r;
	if (tn_is_set(name) && !tenancy_name_is_valid(name))
		return tn_fail(t, -EINVAL,
			       "tenant name must be 1..%d bytes of UTF-8 without control characters",
			       TENANCY_NAME_MAX);
	memset(&row, 0, sizeof(row));
	snprintf(row.id, sizeof(row.id), "%s", id);
	snprintf(row.name, sizeof(row.name), "%s", tn_is_set(name) ? name : id);
	row.created_at_us = tn_now_us();
	row.allow_end_user_scoped_credentials = true;
	if ((r = store_begin_write(t->st)) != 0)
		return tn_store_fail(t, r, "create tenant");
	if ((r = tn_tenant_insert(t, &row)) != 0 ||
	    (r = tn_commit(t, "create tenant")) != 0) {
		store_rollback(t->st);
		return r;
	}
	if (ret_tenant)
		*ret_tenant = row;
	return 0;
}

int tenancy_tenant_ensure(struct tenancy *t, const char *id, const char *name)
{
	struct tenancy_tenant row;
	int r = tenancy_tenant_get(t, id, &row);

	if (r != -ENOENT)
		return r;
	r = tenancy_tenant_create(t, id, name, NULL);
	if (r == -EEXIST) /* another thread or process got there first */
		return 0;
	return r == 0 ? 1 : r;
}

int tenancy_tenant_get(struct tenancy *t, const char *id, struct tenancy_tenant *ret_tenant)
{
	char q[TN_QUOTE_MAX + 4];
	int r;

	if ((r = tn_check_tenant_id(t, id)) != 0)
		return r;
	r = store_tenant_get(t->st, id, ret_tenant);
	if (r == -ENOENT)
		return tn_fail(t, r, "no tenant '%s'", tn_quote(id, q));
	return r ? tn_store_fail(t, r, "get tenant") : 0;
}

int tenancy_tenant_list(struct tenancy *t, struct tenancy_tenant **ret_tenants, size_t *ret_n)
{
	int r = store_tenant_list(t->st, TENANCY_LIST_MAX, ret_tenants, ret_n);

	return r ? tn_store_fail(t, r, "list tenants") : 0;
}

int tenancy_tenant_set_end_user_credentials(struct tenancy *t, const char *id, bool allow,
					    struct tenancy_tenant *ret_tenant)
{
	char q[TN_QUOTE_MAX + 4];
	int r;

	if ((r = tn_check_tenant_id(t, id)) != 0)
		return r;
	r = store_tenant_set_end_user_credentials(t->st, id, allow);
	if (r == -ENOENT)
		return tn_fail(t, r, "no tenant '%s'", tn_quote(id, q));
	if (r != 0)
		return tn_store_fail(t, r, "update tenant settings");
	return tenancy_tenant_get(t, id, ret_tenant);
}

/* ---- sandboxes --------------------------------------------------------- */

/* prefix + 24 lowercase hex of fresh randomness. */
static void tn_mint_id(const char *prefix, char out[TENANCY_OBJECT_ID_LEN + 1])
{
	unsigned char rnd[TENANCY_OBJECT_ID_HEX / 2];

	randombytes_buf(rnd, sizeof(rnd));
	memcpy(out, prefix, 4);
	sodium_bin2hex(out + 4, TENANCY_OBJECT_ID_HEX + 1, rnd, sizeof(rnd));
}

static void tn_sandbox_from_spec(const struct tenancy_sandbox_spec *spec,
				 struct tenancy_sandbox *row)
{
	memset(row, 0, sizeof(*row));
	tn_mint_id(TENANCY_SANDBOX_ID_PREFIX, row->id);
	snprintf(row->tenant_id, sizeof(row->tenant_id), "%s", spec->tenant_id);
	snprintf(row->user_id, sizeof(row->user_id), "%s", spec->user_id ? spec->user_id : "");
	snprintf(row->workspace_id, sizeof(row->workspace_id), "%s",
		 spec->workspace_id ? spec->workspace_id : "");
	snprintf(row->external_user_id, sizeof(row->external_user_id), "%s",
		 spec->external_user_id ? spec->external_user_id : "");
	snprintf(row->external_workspace_id, sizeof(row->external_workspace_id), "%s",
		 spec->external_workspace_id ? spec->external_workspace_id : "");
	snprintf(row->template_name, sizeof(row->template_name), "%s",
		 spec->template_name ? spec->template_name : "");
	row->transport.kind = spec->transport;
	if (spec->transport == TENANCY_TRANSPORT_UDS)
		snprintf(row->transport.uds, sizeof(row->transport.uds), "%s", spec->uds);
	if (spec->transport == TENANCY_TRANSPORT_VSOCK)
		row->transport.cid = spec->cid;
	row->created_at_us = tn_now_us();
}

/* Inside the write transaction: tenant exists, cap not reached, insert. */
static int tn_sandbox_insert(struct tenancy *t, const struct tenancy_sandbox *row)
{
	struct tenancy_tenant tenant;
	size_t count = 0;
	int r;

	if ((r = tenancy_tenant_get(t, row->tenant_id, &tenant)) != 0)
		return r;
	if ((r = store_sandbox_count(t->st, row->tenant_id, &count)) != 0)
		return tn_store_fail(t, r, "count sandboxes");
	if (count >= TENANCY_SANDBOXES_PER_TENANT_MAX)
		return tn_fail(t, -ENOSPC, "tenant '%s' already has %d sandboxes", row->tenant_id,
			       TENANCY_SANDBOXES_PER_TENANT_MAX);
	r = store_sandbox_insert(t->st, row);
	/* 96 random bits do not collide: a taken key is the transport. */
	if (r == -EEXIST && row->transport.kind == TENANCY_TRANSPORT_UDS)
		return tn_fail(t, r, "vsock_uds %s is already used by another sandbox",
			       row->transport.uds);
	if (r == -EEXIST && row->transport.kind == TENANCY_TRANSPORT_VSOCK)
		return tn_fail(t, r, "vsock_cid %u is already used by another sandbox",
			       row->transport.cid);
	return r ? tn_store_fail(t, r, "create sandbox") : 0;
}

/* A new CA row for sandbox id (generated and sealed; no I/O). */
static int tn_ca_make(struct tenancy *t, const char *id, struct store_sandbox_ca *ret_row)
{
	char why[TENANCY_ERR_MAX];
	int r = sandbox_ca_make(id, t->ca_key, time(NULL), ret_row, why, sizeof(why));

	return r ? tn_fail(t, r, "create the sandbox CA: %s", why) : 0;
}

static int tn_ca_insert(struct tenancy *t, const struct store_sandbox_ca *ca)
{
	int r = store_sandbox_ca_insert(t->st, ca);

	return r ? tn_store_fail(t, r, "store the sandbox CA") : 0;
}

/*
 * The CA is generated before the write transaction (the write lock is not
 * held for the key generation) and inserted inside it, with the sandbox row:
 * both commit or neither does, so no sandbox exists without its CA.
 */
int tenancy_sandbox_create(struct tenancy *t, const struct tenancy_sandbox_spec *spec,
			   struct tenancy_sandbox *ret_sandbox)
{
	struct store_sandbox_ca ca;
	struct tenancy_sandbox *row;
	int r;

	memset(&ca, 0, sizeof(ca));
	if ((r = tn_check_sandbox_spec(t, spec)) != 0)
		return r;
	if (!(row = malloc(sizeof(*row))))
		return tn_fail(t, -ENOMEM, "out of memory");
	tn_sandbox_from_spec(spec, row);
	if ((r = tn_ca_make(t, row->id, &ca)) != 0)
		goto out;
	if ((r = store_begin_write(t->st)) != 0) {
		r = tn_store_fail(t, r, "create sandbox");
		goto out;
	}
	if ((r = tn_sandbox_insert(t, row)) != 0 || (r = tn_ca_insert(t, &ca)) != 0 ||
	    (r = tn_commit(t, "create sandbox")) != 0) {
		store_rollback(t->st);
		goto out;
	}
	if (ret_sandbox)
		*ret_sandbox = *row;
out:
	store_sandbox_ca_clear(&ca);
	free(row);
	return r;
}

int tenancy_sandbox_get(struct tenancy *t, const char *tenant_id, const char *id,
			struct tenancy_sandbox *ret_sandbox)
{
	struct tenancy_sandbox *row;
	char q[TN_QUOTE_MAX + 4];
	int r;

	if (!tenancy_sandbox_id_is_valid(id))
		return tn_fail(t, -EINVAL, "sandbox id '%s' must be sbx_ + 24 lowercase hex digits",
			       tn_quote(id, q));
	if (!(row = malloc(sizeof(*row))))
		return tn_fail(t, -ENOMEM, "out of memory");
	r = store_sandbox_get(t->st, id, row);
	/* Another tenant's sandbox is answered exactly like a missing one. */
	if (r == -ENOENT || (r == 0 && tenant_id && strcmp(row->tenant_id, tenant_id) != 0))
		r = tn_fail(t, -ENOENT, "no sandbox %s", id);
	else if (r != 0)
		r = tn_store_fail(t, r, "get sandbox");
	else
		*ret_sandbox = *row;
	free(row);
	return r;
}

int tenancy_sandbox_list(struct tenancy *t, const struct tenancy_sandbox_filter *filter,
			 struct tenancy_sandbox **ret_sandboxes, size_t *ret_n)
{
	int r;

	if (filter && ((filter->tenant_id && (r = tn_check_tenant_id(t, filter->tenant_id)) != 0) ||
		       (r = tn_check_attr(t, "external_user_id", filter->external_user_id)) != 0 ||
		       (r = tn_check_attr(t, "external_workspace_id",
					  filter->external_workspace_id)) != 0))
		return r;
	r = store_sandbox_list(t->st, filter, TENANCY_LIST_MAX, ret_sandboxes, ret_n);
	if (r == -E2BIG)
		return tn_fail(t, r, "more than %d sandboxes match; narrow the filter",
			       TENANCY_LIST_MAX);
	return r ? tn_store_fail(t, r, "list sandboxes") : 0;
}

static int tn_forget(struct tenancy *t, struct vault *v, const struct tenancy_sandbox *row)
{
	int r = vault_forget_sandbox(v, row->tenant_id, row->id);

	return r < 0 ? tn_fail(t, r, "forget the sandbox's secrets: %s", vault_errmsg(v)) : 0;
}

/* The sandbox row and its DNS map rows (which have no foreign key to
 * cascade from) in one transaction: a map never outlives its sandbox, and a
 * sandbox that stays never loses its map (a map restarted from empty would
 * hand a guest's cached addresses to other names). */
static int tn_sandbox_delete_rows(struct tenancy *t, const char *id)
{
	int r;

	if ((r = store_begin_write(t->st)) != 0)
		return r;
	if ((r = store_dns_map_delete_sandbox(t->st, id)) < 0 ||
	    (r = store_sandbox_delete(t->st, id)) != 0 ||
	    (r = store_commit(t->st)) != 0) {
		store_rollback(t->st);
		return r;
	}
	return 0;
}

int tenancy_sandbox_delete(struct tenancy *t, struct vault *v, const char *tenant_id,
			   const char *id)
{
	struct tenancy_sandbox *row;
	int r;

	if (!v)
		return tn_fail(t, -EINVAL, "no vault given");
	if (!(row = malloc(sizeof(*row))))
		return tn_fail(t, -ENOMEM, "out of memory");
	if ((r = tenancy_sandbox_get(t, tenant_id, id, row)) != 0 ||
	    (r = tn_forget(t, v, row)) != 0)
		goto out;
	r = tn_sandbox_delete_rows(t, row->id);
	if (r == -ENOENT) /* deleted concurrently: same outcome */
		r = tn_fail(t, r, "no sandbox %s", row->id);
	else if (r != 0)
		r = tn_store_fail(t, r, "delete sandbox");
	else
		r = tn_forget(t, v, row); /* sweeps a secret set in between */
out:
	free(row);
	return r;
}

/*
 * Give a sandbox created before schema step 3 its CA.  Under the write lock:
 * a concurrent backfill (another thread or process) either finished first —
 * its row is kept — or waits for ours.  A sandbox deleted meanwhile fails
 * the foreign key: -ENOENT.
 */
static int tn_ca_backfill(struct tenancy *t, const char *id)
{
	struct store_sandbox_ca ca, existing;
	int r;

	memset(&ca, 0, sizeof(ca));
	memset(&existing, 0, sizeof(existing));
	if ((r = tn_ca_make(t, id, &ca)) != 0)
		return r;
	if ((r = store_begin_write(t->st)) != 0) {
		r = tn_store_fail(t, r, "create sandbox CA");
		goto out;
	}
	r = store_sandbox_ca_get(t->st, id, 0, &existing);
	if (r == -ENOENT) {
		r = store_sandbox_ca_insert(t->st, &ca);
		if (r == -ENOENT)
			r = tn_fail(t, r, "no sandbox %s", id);
		else if (r != 0)
			r = tn_store_fail(t, r, "store the sandbox CA");
	} else if (r != 0) {
		r = tn_store_fail(t, r, "read sandbox CA");
	}
	if (r != 0 || (r = tn_commit(t, "create sandbox CA")) != 0)
		store_rollback(t->st);
out:
	store_sandbox_ca_clear(&existing);
	store_sandbox_ca_clear(&ca);
	return r;
}

/* The sandbox in reach of tenant_id, then one attempt of fn, and after a
 * backfill (a sandbox older than its CA table) a second. */
typedef int (*tn_ca_read_fn)(struct tenancy *t, const char *id, void *ret, char *why,
			     size_t why_size);

static int tn_ca_read(struct tenancy *t, const char *tenant_id, const char *id, tn_ca_read_fn fn,
		      void *ret)
{
	struct tenancy_sandbox *row;
	char why[TENANCY_ERR_MAX];
	int r;

	if (!(row = malloc(sizeof(*row))))
		return tn_fail(t, -ENOMEM, "out of memory");
	r = tenancy_sandbox_get(t, tenant_id, id, row);
	free(row);
	if (r != 0)
		return r;
	r = fn(t, id, ret, why, sizeof(why));
	if (r == -ENOENT) {
		if ((r = tn_ca_backfill(t, id)) != 0)
			return r;
		r = fn(t, id, ret, why, sizeof(why));
	}
	return r ? tn_fail(t, r, "sandbox CA of %s: %s", id, why) : 0;
}

static int tn_ca_load_fn(struct tenancy *t, const char *id, void *ret, char *why, size_t size)
{
	return sandbox_ca_load(t->st, id, t->ca_key, ret, why, size);
}

static int tn_ca_public_fn(struct tenancy *t, const char *id, void *ret, char *why, size_t size)
{
	return sandbox_ca_public(t->st, id, ret, why, size);
}

int tenancy_sandbox_ca_load(struct tenancy *t, const char *tenant_id, const char *id,
			    struct mitm_ca **ret_ca)
{
	struct mitm_ca *ca = NULL;
	int r = tn_ca_read(t, tenant_id, id, tn_ca_load_fn, &ca);

	if (r == 0)
		*ret_ca = ca;
	return r;
}

int tenancy_sandbox_ca_public(struct tenancy *t, const char *tenant_id, const char *id,
			      struct sandbox_ca_public *ret_pub)
{
	struct sandbox_ca_public pub;
	int r;

	memset(&pub, 0, sizeof(pub));
	if ((r = tn_ca_read(t, tenant_id, id, tn_ca_public_fn, &pub)) == 0)
		*ret_pub = pub;
	return r;
}

void tenancy_sandbox_attribution(const struct tenancy_sandbox *s,
				 struct scope_walk_attribution *ret_attribution)
{
	*ret_attribution = (struct scope_walk_attribution){
		.sandbox_id = s->id,
		.tenant_id = s->tenant_id,
		.user_id = s->user_id,
		.external_user_id = s->external_user_id,
		.external_workspace_id = s->external_workspace_id,
		.workspace_id = s->workspace_id,
	};
}

/* ---- API keys ---------------------------------------------------------- */

static void tn_key_hash(const struct tenancy *t, const char *key, size_t len,
			uint8_t out[TENANCY_API_KEY_HASH_BYTES])
{
	crypto_generichash(out, TENANCY_API_KEY_HASH_BYTES, (const unsigned char *)key, len,
			   t->hash_key, MASTER_KEY_SUBKEY_BYTES);
}

/* "msk_live_" + base64url(32 random bytes) into sodium_malloc'd memory. */
static int tn_key_mint(char **ret_full)
{
	unsigned char rnd[TENANCY_API_KEY_RANDOM_BYTES];
	char *full = sodium_malloc(TENANCY_API_KEY_LEN + 1);

	_Static_assert(sodium_base64_ENCODED_LEN(TENANCY_API_KEY_RANDOM_BYTES,
						 sodium_base64_VARIANT_URLSAFE_NO_PADDING) ==
		       TENANCY_API_KEY_B64_LEN + 1, "key length");
	if (!full)
		return -ENOMEM;
	randombytes_buf(rnd, sizeof(rnd));
	memcpy(full, TENANCY_API_KEY_PREFIX, TENANCY_API_KEY_PREFIX_LEN);
	sodium_bin2base64(full + TENANCY_API_KEY_PREFIX_LEN, TENANCY_API_KEY_B64_LEN + 1, rnd,
			  sizeof(rnd), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(rnd, sizeof(rnd));
	*ret_full = full;
	return 0;
}

/* Inside the write transaction: tenant exists, cap not reached, insert. */
static int tn_key_insert(struct tenancy *t, const struct tenancy_api_key *k,
			 const uint8_t hash[TENANCY_API_KEY_HASH_BYTES])
{
	struct tenancy_tenant tenant;
	size_t count = 0;
	int r;

	if ((r = tenancy_tenant_get(t, k->tenant_id, &tenant)) != 0)
		return r;
	if ((r = store_api_key_count(t->st, k->tenant_id, &count)) != 0)
		return tn_store_fail(t, r, "count API keys");
	if (count >= TENANCY_API_KEYS_PER_TENANT_MAX)
		return tn_fail(t, -ENOSPC, "tenant '%s' already has %d API keys", k->tenant_id,
			       TENANCY_API_KEYS_PER_TENANT_MAX);
	r = store_api_key_insert(t->st, k, hash);
	return r ? tn_store_fail(t, r, "create API key") : 0;
}

static int tn_check_key_args(struct tenancy *t, const char *tenant_id, const char *name)
{
	int r;

	if ((r = tn_check_tenant_id(t, tenant_id)) != 0)
		return r;
	if (!tenancy_name_is_valid(name))
		return tn_fail(t, -EINVAL,
			       "API key name must be 1..%d bytes of UTF-8 without control characters",
			       TENANCY_NAME_MAX);
	return 0;
}

int tenancy_api_key_create(struct tenancy *t, const char *tenant_id, const char *name,
			   struct tenancy_api_key *ret_key, char **ret_full_key)
{
	uint8_t hash[TENANCY_API_KEY_HASH_BYTES];
	struct tenancy_api_key k;
	char *full = NULL;
	int r;

	if ((r = tn_check_key_args(t, tenant_id, name)) != 0)
		return r;
	if (!ret_full_key)
		return tn_fail(t, -EINVAL, "nowhere to return the key");
	if ((r = tn_key_mint(&full)) != 0)
		return tn_fail(t, r, "out of secure memory");
	memset(&k, 0, sizeof(k));
	tn_mint_id(TENANCY_API_KEY_ID_PREFIX, k.id);
	snprintf(k.tenant_id, sizeof(k.tenant_id), "%s", tenant_id);
	snprintf(k.name, sizeof(k.name), "%s", name);
	memcpy(k.prefix, full, TENANCY_API_KEY_DISPLAY_LEN);
	k.prefix[TENANCY_API_KEY_DISPLAY_LEN] = '\0';
	k.created_at_us = tn_now_us();
	tn_key_hash(t, full, TENANCY_API_KEY_LEN, hash);
	if ((r = store_begin_write(t->st)) != 0) {
		r = tn_store_fail(t, r, "create API key");
		goto out;
	}
	if ((r = tn_key_insert(t, &k, hash)) != 0 ||
	    (r = tn_commit(t, "create API key")) != 0) {
		store_rollback(t->st);
		goto out;
	}
	if (ret_key)
		*ret_key = k;
	*ret_full_key = full;
	full = NULL;
out:
	tenancy_api_key_secret_free(full);
	return r;
}

void tenancy_api_key_secret_free(char *full_key)
{
	sodium_free(full_key); /* zeroes before unmapping */
}

/* Shape only: the prefix and 43 base64url characters. */
static bool tn_key_is_well_formed(const char *key, size_t len)
{
	if (!key || len != TENANCY_API_KEY_LEN ||
	    memcmp(key, TENANCY_API_KEY_PREFIX, TENANCY_API_KEY_PREFIX_LEN) != 0)
		return false;
	for (size_t i = TENANCY_API_KEY_PREFIX_LEN; i < len; i++) {
		char c = key[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
	}
	return true;
}

/*
 * Record a use, at most once per TENANCY_KEY_TOUCH_INTERVAL_US.  Best
 * effort: last_used_at is informational, and a busy or read-only state.db
 * must not turn a valid key away.
 */
static void tn_key_touch(struct tenancy *t, struct tenancy_api_key *k)
{
	int64_t now = tn_now_us();

	if (k->last_used_at_us != 0 && now - k->last_used_at_us < TENANCY_KEY_TOUCH_INTERVAL_US)
		return;
	if (store_api_key_touch(t->st, k->id, now) == 0)
		k->last_used_at_us = now;
}

int tenancy_api_key_verify(struct tenancy *t, const char *key, size_t len,
			   struct tenancy_api_key *ret_key)
{
	uint8_t hash[TENANCY_API_KEY_HASH_BYTES], stored[TENANCY_API_KEY_HASH_BYTES];
	struct tenancy_api_key k;
	int r;

	if (!tn_key_is_well_formed(key, len))
		return tn_fail(t, -EKEYREJECTED, "API key is malformed");
	tn_key_hash(t, key, len, hash);
	r = store_api_key_find_hash(t->st, hash, &k, stored);
	if (r == -ENOENT)
		return tn_fail(t, -EKEYREJECTED, "API key is unknown");
	if (r != 0)
		return tn_store_fail(t, r, "verify API key");
	/* The index found it by equality already; compare again in constant
	 * time so the decision itself never depends on a short-circuit. */
	if (sodium_memcmp(hash, stored, sizeof(hash)) != 0)
		return tn_fail(t, -EKEYREJECTED, "API key is unknown");
	if (k.revoked_at_us != 0)
		return tn_fail(t, -EKEYREVOKED, "API key %s was revoked", k.id);
	tn_key_touch(t, &k);
	*ret_key = k;
	return 0;
}

int tenancy_api_key_list(struct tenancy *t, const char *tenant_id,
			 struct tenancy_api_key **ret_keys, size_t *ret_n)
{
	int r;

	if ((r = tn_check_tenant_id(t, tenant_id)) != 0)
		return r;
	r = store_api_key_list(t->st, tenant_id, TENANCY_LIST_MAX, ret_keys, ret_n);
	return r ? tn_store_fail(t, r, "list API keys") : 0;
}

/* tenant_id NULL = any tenant; another tenant's key is -ENOENT. */
static int tn_key_get(struct tenancy *t, const char *tenant_id, const char *id,
		      struct tenancy_api_key *ret_key)
{
	struct tenancy_api_key k;
	char q[TN_QUOTE_MAX + 4];
	int r;

	if (!tenancy_api_key_id_is_valid(id))
		return tn_fail(t, -EINVAL, "API key id '%s' must be key_ + 24 lowercase hex digits",
			       tn_quote(id, q));
	r = store_api_key_get(t->st, id, &k);
	if (r == -ENOENT || (r == 0 && tenant_id && strcmp(k.tenant_id, tenant_id) != 0))
		return tn_fail(t, -ENOENT, "no API key %s", id);
	if (r != 0)
		return tn_store_fail(t, r, "get API key");
	*ret_key = k;
	return 0;
}

int tenancy_api_key_revoke(struct tenancy *t, const char *tenant_id, const char *id,
			   struct tenancy_api_key *ret_key)
{
	struct tenancy_api_key k;
	int r;

	if ((r = tn_key_get(t, tenant_id, id, &k)) != 0)
		return r;
	if ((r = store_api_key_revoke(t->st, id, tn_now_us())) != 0)
		return tn_store_fail(t, r, "revoke API key");
	if ((r = tn_key_get(t, tenant_id, id, &k)) != 0)
		return r;
	if (ret_key)
		*ret_key = k;
	return 0;
}
