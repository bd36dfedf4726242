/*
 * vault — secrets at rest, placeholders and the scope walk (M1–M7, M18, B1).
 *
 * What it promises:
 *   - A secret is (tenant_id, scope, scope_id, name) → value, expose_as_env,
 *     optional allowed hosts, allow_cleartext, version, timestamps.  The value
 *     is sealed with XChaCha20-Poly1305 under a subkey of the master key
 *     (master_key.h); each seal draws a fresh random nonce, and the
 *     associated data binds the row id, the version and every column that
 *     decides where the value may go (tenant, scope, scope_id, name,
 *     expose_as_env, allowed hosts, allow_cleartext).  A ciphertext copied to
 *     another row, an old ciphertext put back under a newer version, or a row
 *     whose policy columns were edited in the database fails to open: the
 *     swap fails closed (-EBADMSG).
 *   - Values leave the vault only through vault_get_for_swap(), in
 *     sodium_malloc'd read-only memory released by vault_swap_release().  No
 *     list, error message or result carries a value.
 *   - Placeholders are "miosa-tok-" + 32 lowercase hex (128 bits from
 *     randombytes_buf), never derived from the value, one per binding
 *     (sandbox ↔ secret).  A sandbox-scope secret gets its placeholder when it
 *     is set; for a secret at a wider scope each sandbox gets its own,
 *     minted on its first resolution and stable from then on (across
 *     restarts, rotations and replacements), so a placeholder leaked from one
 *     sandbox is useless in another.
 *   - Resolution follows scope_walk.h: per env name, sandbox → user →
 *     external_user → external_workspace → workspace → tenant, first match
 *     wins, within the sandbox's tenant.
 *
 * Limits: names [A-Za-z0-9_.-]{1,128}; env names [A-Za-z_][A-Za-z0-9_]*, at
 * most 128 bytes, case-sensitive; tenant, scope and sandbox ids 1..256 bytes
 * of printable ASCII without spaces (0x21..0x7e), compared byte for byte;
 * values 1..16384 bytes of anything an HTTP field value may hold (HTAB,
 * 0x20..0x7e, 0x80..0xff: no NUL, CR, LF or other control characters); at
 * most 32 allowed host patterns (host_pattern.h; duplicates after
 * normalization are dropped); at most 1000 secrets per (tenant, scope,
 * scope_id).  Timestamps are microseconds since the Unix epoch (UTC);
 * rotated_at is the time of the last value change, 0 if none.
 *
 * Handles and threads: one struct vault = one store connection (store.h).
 * A handle is used by one thread at a time; open one per worker thread.
 * Handles on the same state directory work concurrently.  Every call may
 * block on disk: never call from the event loop.
 *
 * Errors: 0 (or a count) / negative errno; vault_errmsg() then says what
 * failed and why, quoting offending names (never a value).  Codes:
 *   -EINVAL  input out of the limits above
 *   -EPERM   scope external_user while the tenant's "allow end-user-scoped
 *            credentials" setting is off (the API answers 403)
 *   -EEXIST  expose_as_env already used by another secret at that scope
 *   -ENOENT  no such secret
 *   -ENOSPC  scope full (VAULT_SECRETS_PER_SCOPE_MAX)
 *   -EBADMSG a stored secret failed authentication (tampered / wrong key)
 *   -EKEYREJECTED (vault_open) the master key is not the one state.db was
 *            created with
 *   others from store.h (-EBUSY, -EUCLEAN, -EIO, -ENOMEM ...).
 * ret_* outputs are written only on success.
 */
#ifndef MIOSA_VAULT_H
#define MIOSA_VAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host_pattern.h"
#include "master_key.h"
#include "scope_walk.h"

#define VAULT_NAME_MAX 128
#define VAULT_ENV_MAX 128
#define VAULT_ID_MAX 256
#define VAULT_VALUE_MAX 16384
#define VAULT_HOSTS_MAX 32
#define VAULT_SECRETS_PER_SCOPE_MAX 1000
#define VAULT_PLACEHOLDER_PREFIX "miosa-tok-"
#define VAULT_PLACEHOLDER_PREFIX_LEN 10
#define VAULT_PLACEHOLDER_HEX_LEN 32
#define VAULT_PLACEHOLDER_LEN (VAULT_PLACEHOLDER_PREFIX_LEN + VAULT_PLACEHOLDER_HEX_LEN)
#define VAULT_ERR_MAX 256

struct vault;

/* Which secret: scope_id for SCOPE_WALK_TENANT may be NULL/"" (= tenant_id). */
struct vault_secret_ref {
	const char *tenant_id;
	enum scope_walk_scope scope;
	const char *scope_id;
	const char *name;
};

struct vault_secret_spec {
	struct vault_secret_ref ref;
	const char *expose_as_env;
	const char *const *hosts; /* n_hosts patterns; none = any host */
	size_t n_hosts;
	bool allow_cleartext;     /* false: never swapped into plain HTTP */
	const uint8_t *value;     /* borrowed; never copied outside secure memory */
	size_t value_len;
	/* The tenant setting "allow end-user-scoped credentials" (M18).  Off
	 * (the zero value) refuses scope external_user with -EPERM. */
	bool tenant_allows_end_user_credentials;
};

struct vault_set_result {
	bool created;   /* false: an existing secret was replaced */
	uint32_t version;
	/* The sandbox's placeholder for a sandbox-scope secret, else "". */
	char placeholder[VAULT_PLACEHOLDER_LEN + 1];
};

/* Everything about a secret except its value. */
struct vault_secret_info {
	char name[VAULT_NAME_MAX + 1];
	char expose_as_env[VAULT_ENV_MAX + 1];
	enum scope_walk_scope scope;
	char scope_id[VAULT_ID_MAX + 1];
	uint32_t version;
	int64_t created_at_us;
	int64_t rotated_at_us;
	bool allow_cleartext;
	/* The viewing sandbox's placeholder; "" in a scope listing of a scope
	 * wider than sandbox (there each sandbox has its own). */
	char placeholder[VAULT_PLACEHOLDER_LEN + 1];
	size_t n_hosts;
	char (*hosts)[HOST_PATTERN_BUF]; /* normalized; owned by the list */
};

struct vault_secret_list {
	size_t n;
	struct vault_secret_info *items;
};

enum vault_swap_verdict {
	VAULT_SWAP_OK = 0,                  /* value returned */
	VAULT_SWAP_UNKNOWN_PLACEHOLDER,     /* not a placeholder the vault issued */
	VAULT_SWAP_OTHER_SANDBOX,           /* issued to another sandbox */
	VAULT_SWAP_NOT_RESOLVED,            /* this sandbox's, but no longer its binding
					     * for that env name (shadowed by a more
					     * specific secret) */
	VAULT_SWAP_HOST_NOT_ALLOWED,        /* B1: destination outside the secret's hosts;
					     * flag the request */
	VAULT_SWAP_CLEARTEXT_NOT_ALLOWED,   /* plain HTTP and allow_cleartext is off */
};

struct vault_swap {
	enum vault_swap_verdict verdict;
	/* Set from NOT_RESOLVED on (for the audit row); "" before that, so a
	 * sandbox never learns another sandbox's secret names. */
	char secret_name[VAULT_NAME_MAX + 1];
	enum scope_walk_scope scope;
	uint32_t version;
	unsigned char *value; /* VAULT_SWAP_OK only: sodium_malloc'd, read-only */
	size_t value_len;
};

/*
 * Open the vault in state_dir (created 0700 if missing; state.db inside).
 * The value subkey is derived from key at open and kept by the handle: key
 * may be freed afterwards.  The first open stores a key check in state.db;
 * later opens with another key fail with -EKEYREJECTED.
 */
__attribute__((warn_unused_result))
int vault_open(const char *state_dir, const struct master_key *key, struct vault **ret_vault,
	       char *err, size_t err_size);
void vault_close(struct vault *v); /* NULL is a no-op; wipes the subkey */
const char *vault_errmsg(const struct vault *v);

/*
 * Is the handle's store connection idle (store_check_idle())?  0 = yes.
 * -EBUSY = a transaction or statement was left open, which pins the
 * connection to an old snapshot; vault_errmsg() says which, and with reset
 * the connection has been made idle again (store_force_idle()).
 */
__attribute__((warn_unused_result))
int vault_check_idle(struct vault *v, bool reset);

/*
 * Create, or replace by (tenant, scope, scope_id, name): a replacement takes
 * the new value, env name, hosts and allow_cleartext, bumps the version and
 * keeps every placeholder already issued.  ret_result may be NULL.
 */
__attribute__((warn_unused_result))
int vault_secret_set(struct vault *v, const struct vault_secret_spec *spec,
		     struct vault_set_result *ret_result);

/* New value, same placeholders, version + 1, rotated_at = now (M5). */
__attribute__((warn_unused_result))
int vault_secret_rotate(struct vault *v, const struct vault_secret_ref *ref,
			const uint8_t *value, size_t value_len, uint32_t *ret_version);

/* Delete a secret and every binding (placeholder) of it. */
__attribute__((warn_unused_result))
int vault_secret_delete(struct vault *v, const struct vault_secret_ref *ref);

/* The secrets at one (tenant, scope, scope_id), by name. */
__attribute__((warn_unused_result))
int vault_secret_list(struct vault *v, const char *tenant_id, enum scope_walk_scope scope,
		      const char *scope_id, struct vault_secret_list *ret_list);

/*
 * A sandbox's resolved view: one entry per env name (sorted), the winning
 * secret with this sandbox's placeholder, minting placeholders on first
 * resolution.  This is what HelloAck sends (env name → placeholder).
 */
__attribute__((warn_unused_result))
int vault_resolve(struct vault *v, const struct scope_walk_attribution *a,
		  struct vault_secret_list *ret_list);

void vault_secret_list_free(struct vault_secret_list *list);

/*
 * The swap decision for one placeholder seen in a request of sandbox a going
 * to dest_host (a name or IP literal without port) over TLS or not.
 * Returns 0 with ret_swap->verdict set; the value is present only for
 * VAULT_SWAP_OK and must be released with vault_swap_release().  Negative on
 * failure (-EBADMSG for a tampered row, -EINVAL for a malformed attribution
 * or dest_host): the caller must not swap.
 */
__attribute__((warn_unused_result))
int vault_get_for_swap(struct vault *v, const struct scope_walk_attribution *a,
		       const char *placeholder, size_t placeholder_len,
		       const char *dest_host, size_t dest_host_len, bool is_tls,
		       struct vault_swap *ret_swap);

/* Wipe and free the value (if any); safe on a zeroed or released swap. */
void vault_swap_release(struct vault_swap *swap);

/*
 * A sandbox is gone: delete its sandbox-scope secrets and every placeholder
 * issued to it.  Returns the number of secrets and bindings removed.
 */
__attribute__((warn_unused_result))
int vault_forget_sandbox(struct vault *v, const char *tenant_id, const char *sandbox_id);

/* Is s[0..len) exactly "miosa-tok-" + 32 lowercase hex digits? */
bool vault_placeholder_is_valid(const char *s, size_t len);

/* Stable lower-case token for audit rows and reason headers. */
const char *vault_swap_verdict_name(enum vault_swap_verdict verdict);

#endif
