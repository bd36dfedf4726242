/*
 * tenancy — tenants, sandboxes and control API keys (M18, M19).
 *
 * What it promises:
 *   - Tenants: id [a-z0-9][a-z0-9_-]{0,63}, a display name (1..256 bytes of
 *     UTF-8 without control characters; defaults to the id) and one setting,
 *     allow_end_user_scoped_credentials (on for a new tenant), which gates
 *     secrets at scope external_user.  Tenants are never deleted.
 *   - Sandboxes: id "sbx_" + 24 lowercase hex (96 bits from randombytes),
 *     minted here.  user_id, workspace_id, external_user_id and
 *     external_workspace_id (each optional, 1..256 bytes of 0x21..0x7e), the
 *     template (1..1024 bytes of 0x20..0x7e) and the transport are fixed at
 *     creation: there is no update.  A transport (UDS path, vsock CID)
 *     belongs to at most one sandbox.  Deleting a sandbox also makes the vault
 *     forget its sandbox-scope secrets and every placeholder issued to it.
 *   - Sandbox CAs (issue 5, "TLS interception"): every sandbox has its own CA
 *     (sandbox_ca.h: ECDSA P-256, private key sealed under the CA_KEYS
 *     subkey), made with the sandbox and committed in the same transaction as
 *     its row, deleted with it (foreign key cascade).  A sandbox created
 *     before the CA table existed (schema step 3) gets its CA on the first
 *     read of it, under the write lock, so every reader sees the same one.
 *   - API keys: "msk_live_" + 43 base64url characters (32 random bytes),
 *     returned once, in sodium_malloc'd memory, by tenancy_api_key_create().
 *     Only a keyed BLAKE2b hash is stored (subkey MASTER_KEY_PURPOSE_API_KEYS,
 *     so a stolen state.db without the master key cannot test guesses).
 *     Verification hashes the presented key, looks the hash up by index and
 *     compares with sodium_memcmp; a revoked key never verifies again.
 *   - Every lookup that takes a tenant_id treats another tenant's object as
 *     missing (-ENOENT): callers get isolation without checking themselves.
 *     NULL as tenant_id means "any tenant" (the host admin).
 *
 * Caps (tenancy_types.h): TENANCY_TENANTS_MAX tenants,
 * TENANCY_SANDBOXES_PER_TENANT_MAX sandboxes and
 * TENANCY_API_KEYS_PER_TENANT_MAX keys per tenant (-ENOSPC past them);
 * listings return at most TENANCY_LIST_MAX rows (-E2BIG past it).
 *
 * Handles and threads: one struct tenancy = one store connection (store.h),
 * used by one thread at a time; open one per worker thread.  Every call may
 * block on disk: never call from the event loop.
 *
 * Errors: 0 / negative errno; tenancy_errmsg() then says what failed,
 * quoting offending ids (never a key).  -EINVAL input out of the limits
 * above; -ENOENT no such object (or another tenant's); -EEXIST id or
 * transport taken; -ENOSPC a cap reached; -EKEYREJECTED a presented API key
 * that is malformed or unknown; -EKEYREVOKED one that was revoked; others from
 * store.h.  ret_* outputs are written only on success.
 */
#ifndef MIOSA_TENANCY_H
#define MIOSA_TENANCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "master_key.h"
#include "scope_walk.h"
#include "tenancy_types.h"

#define TENANCY_ERR_MAX 256
#define TENANCY_DEFAULT_TENANT "default"
/*
 * last_used_at_us is written at most this often per key: verification runs on
 * every TCP request, and a durable write per request would put an fsync on
 * the request path.  So last_used_at is accurate to a minute.
 */
#define TENANCY_KEY_TOUCH_INTERVAL_US (60 * 1000000LL)

struct mitm_ca;
struct sandbox_ca_public;
struct tenancy;
struct vault;

/* What a new sandbox is made of.  NULL or "" = unset. */
struct tenancy_sandbox_spec {
	const char *tenant_id; /* required */
	const char *user_id;
	const char *workspace_id;
	const char *external_user_id;
	const char *external_workspace_id;
	const char *template_name;
	enum tenancy_transport_kind transport;
	const char *uds;       /* TENANCY_TRANSPORT_UDS: absolute path, 2..96 bytes */
	uint32_t cid;          /* TENANCY_TRANSPORT_VSOCK: 3..0xfffffffe */
};

/*
 * Open on state_dir (state.db, created if missing) with the process' master
 * key; the API-key and CA-key subkeys are derived here and kept (key may be
 * freed after).
 */
__attribute__((warn_unused_result))
int tenancy_open(const char *state_dir, const struct master_key *key,
		 struct tenancy **ret_tenancy, char *err, size_t err_size);
void tenancy_close(struct tenancy *t); /* NULL is a no-op; wipes the subkey */
const char *tenancy_errmsg(const struct tenancy *t);

/*
 * Is the handle's store connection idle (store_check_idle())?  0 = yes.
 * -EBUSY = a transaction or statement was left open, which pins the
 * connection to an old snapshot; tenancy_errmsg() says which, and with reset
 * the connection has been made idle again (store_force_idle()).
 */
__attribute__((warn_unused_result))
int tenancy_check_idle(struct tenancy *t, bool reset);

/* ---- validation (pure; also used by the control API for path segments) */
bool tenancy_tenant_id_is_valid(const char *s);
bool tenancy_attr_id_is_valid(const char *s);       /* 1..256 bytes of 0x21..0x7e */
bool tenancy_sandbox_id_is_valid(const char *s);    /* "sbx_" + 24 lowercase hex */
bool tenancy_api_key_id_is_valid(const char *s);    /* "key_" + 24 lowercase hex */
bool tenancy_name_is_valid(const char *s);          /* 1..256 bytes, UTF-8, no controls */

/* ---- tenants */
/* name NULL or "" = the id.  -EEXIST if the id is taken. */
__attribute__((warn_unused_result))
int tenancy_tenant_create(struct tenancy *t, const char *id, const char *name,
			  struct tenancy_tenant *ret_tenant);
/* Create unless it exists: 1 created, 0 already there (bootstrap). */
__attribute__((warn_unused_result))
int tenancy_tenant_ensure(struct tenancy *t, const char *id, const char *name);
__attribute__((warn_unused_result))
int tenancy_tenant_get(struct tenancy *t, const char *id, struct tenancy_tenant *ret_tenant);
/* Every tenant, by id.  Free *ret_tenants with free(). */
__attribute__((warn_unused_result))
int tenancy_tenant_list(struct tenancy *t, struct tenancy_tenant **ret_tenants, size_t *ret_n);
__attribute__((warn_unused_result))
int tenancy_tenant_set_end_user_credentials(struct tenancy *t, const char *id, bool allow,
					    struct tenancy_tenant *ret_tenant);

/* ---- sandboxes */
__attribute__((warn_unused_result))
int tenancy_sandbox_create(struct tenancy *t, const struct tenancy_sandbox_spec *spec,
			   struct tenancy_sandbox *ret_sandbox);
/* tenant_id NULL = any tenant. */
__attribute__((warn_unused_result))
int tenancy_sandbox_get(struct tenancy *t, const char *tenant_id, const char *id,
			struct tenancy_sandbox *ret_sandbox);
/* Strict-equality filters, oldest first.  Free *ret_sandboxes with free(). */
__attribute__((warn_unused_result))
int tenancy_sandbox_list(struct tenancy *t, const struct tenancy_sandbox_filter *filter,
			 struct tenancy_sandbox **ret_sandboxes, size_t *ret_n);
/*
 * Delete a sandbox (tenant_id NULL = any tenant) and, through v, its
 * sandbox-scope secrets and placeholders.  The vault is told before and
 * after the row goes (two connections, no shared transaction): a failure
 * leaves the sandbox in place for a retry, and a secret written concurrently
 * with the deletion is still swept.
 */
__attribute__((warn_unused_result))
int tenancy_sandbox_delete(struct tenancy *t, struct vault *v, const char *tenant_id,
			   const char *id);
/*
 * The sandbox's CA with its private key, for the data path (tenant_id NULL
 * = any tenant; another tenant's sandbox is -ENOENT).  mitm_ca_free() it.
 * -EBADMSG / -EKEYREJECTED: the stored CA fails mitm_ca_load()'s checks
 * (tampered, or state.db under another master key).  ~1 ms of CPU.
 */
__attribute__((warn_unused_result))
int tenancy_sandbox_ca_load(struct tenancy *t, const char *tenant_id, const char *id,
			    struct mitm_ca **ret_ca);
/*
 * The certificate only (PEM, validity, fingerprint; sandbox_ca.h), for the
 * control API: the sealed key is not even read.  Release with
 * sandbox_ca_public_clear().
 */
__attribute__((warn_unused_result))
int tenancy_sandbox_ca_public(struct tenancy *t, const char *tenant_id, const char *id,
			      struct sandbox_ca_public *ret_pub);
/* The scope-walk attribution of a sandbox; points into s. */
void tenancy_sandbox_attribution(const struct tenancy_sandbox *s,
				 struct scope_walk_attribution *ret_attribution);

/* ---- API keys */
/*
 * Mint a key for tenant_id.  *ret_full_key receives the full key
 * (TENANCY_API_KEY_LEN chars + NUL) in sodium_malloc'd memory: show it
 * once, then tenancy_api_key_secret_free() it.
 */
__attribute__((warn_unused_result))
int tenancy_api_key_create(struct tenancy *t, const char *tenant_id, const char *name,
			   struct tenancy_api_key *ret_key, char **ret_full_key);
void tenancy_api_key_secret_free(char *full_key); /* wipes; NULL is a no-op */
/*
 * Check a presented key (len bytes, not necessarily NUL-terminated) and
 * return its record.  -EKEYREJECTED malformed/unknown, -EKEYREVOKED revoked.
 * Refreshes last_used_at_us (see TENANCY_KEY_TOUCH_INTERVAL_US; best effort:
 * a failure to record the use does not fail the verification).
 */
__attribute__((warn_unused_result))
int tenancy_api_key_verify(struct tenancy *t, const char *key, size_t len,
			   struct tenancy_api_key *ret_key);
/* A tenant's keys, oldest first (revoked ones included).  Free with free(). */
__attribute__((warn_unused_result))
int tenancy_api_key_list(struct tenancy *t, const char *tenant_id,
			 struct tenancy_api_key **ret_keys, size_t *ret_n);
/* Revoke (idempotent: a second call keeps the first time). */
__attribute__((warn_unused_result))
int tenancy_api_key_revoke(struct tenancy *t, const char *tenant_id, const char *id,
			   struct tenancy_api_key *ret_key);

#endif
