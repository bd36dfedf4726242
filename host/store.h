/*
 * store — the storage seam of the broker's state.
 *
 * Nothing outside host/store* issues SQL.  This header speaks in records, not
 * queries: the embedded back end (store_sqlite.c, state.db in WAL mode) and a
 * later PostgreSQL back end implement the same functions.  The store never
 * sees a plaintext secret: values arrive sealed by the vault (nonce +
 * ciphertext) and leave the same way.
 *
 * Handles and threads: one struct store = one database connection.  A handle
 * is used by one thread at a time (no internal locking); open one handle per
 * worker thread.  Handles on the same state directory work concurrently:
 * readers never block (WAL), writers serialize through BEGIN IMMEDIATE and
 * wait up to STORE_BUSY_TIMEOUT_MS before failing with -EBUSY.
 * Calls block on disk I/O: keep them off the event loop.
 *
 * Transactions: store_begin_read() / store_begin_write() ... store_commit(),
 * or store_rollback() on any failure.  Record functions called outside an
 * explicit transaction run in their own implicit one.
 *
 * Rows: functions that fill a struct store_secret allocate its hosts (and its
 * ciphertext when STORE_WITH_CIPHERTEXT is asked for); release them with
 * store_secret_clear().  Functions that take a const row only read it.
 *
 * Errors: 0 (or a count) / negative errno.  -ENOENT: no such row.  -EEXIST:
 * a unique key is taken.  -EBUSY: locked past the busy timeout.  -EUCLEAN:
 * the database or a row in it is malformed (every column read back is
 * re-checked against the limits below).  -E2BIG: more rows than the caller's
 * cap.  Others: -ENOMEM, -ENOSPC, -EACCES, -EIO.  store_errmsg() then says
 * what failed; it names tables and columns, never row contents beyond ids.
 *
 * Schema: versioned with PRAGMA user_version; migrations run in order, each
 * in the transaction that bumps the version, on every open.  A database newer
 * than this build is refused.  The one migration list covers the whole of
 * state.db: other modules append to it, never edit a released step.
 */
#ifndef MIOSA_STORE_H
#define MIOSA_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host_pattern.h"
#include "scope_walk.h"
#include "tenancy_types.h"

#define STORE_ID_MAX 256              /* tenant, scope and sandbox ids, bytes */
#define STORE_NAME_MAX 128            /* secret names and env names, bytes */
#define STORE_HOSTS_MAX 32            /* allowed host patterns per secret */
#define STORE_PLACEHOLDER_LEN 42      /* "miosa-tok-" + 32 hex */
#define STORE_NONCE_BYTES 24          /* XChaCha20-Poly1305 */
#define STORE_CIPHERTEXT_MAX (16384 + 16)
#define STORE_META_VALUE_MAX 256
#define STORE_ERR_MAX 256
#define STORE_BUSY_TIMEOUT_MS 5000
#define STORE_DB_NAME "state.db"

struct store;

/* Flags for the secret readers. */
#define STORE_WITH_CIPHERTEXT 0x1u

struct store_secret {
	int64_t id;
	char tenant_id[STORE_ID_MAX + 1];
	enum scope_walk_scope scope;
	char scope_id[STORE_ID_MAX + 1];
	char name[STORE_NAME_MAX + 1];
	char expose_as_env[STORE_NAME_MAX + 1];
	bool allow_cleartext;
	uint32_t version;
	int64_t created_at_us; /* µs since the Unix epoch, UTC */
	int64_t rotated_at_us; /* last value change; 0 = never replaced */
	size_t n_hosts;
	char (*hosts)[HOST_PATTERN_BUF]; /* normalized patterns; none = any host */
	uint8_t nonce[STORE_NONCE_BYTES];
	size_t ciphertext_len;
	uint8_t *ciphertext;
};

struct store_binding {
	int64_t id;
	int64_t secret_id;
	char sandbox_id[STORE_ID_MAX + 1];
	char placeholder[STORE_PLACEHOLDER_LEN + 1];
	int64_t created_at_us;
};

/*
 * Open (creating if missing) state_dir (0700) and state_dir/state.db (0600),
 * apply the connection settings and run pending migrations.  A state_dir or
 * state.db that group or others can write, or a state.db they can read, is
 * refused.  err receives the reason on failure.
 */
__attribute__((warn_unused_result))
int store_open(const char *state_dir, struct store **ret_store, char *err, size_t err_size);
void store_close(struct store *st); /* NULL is a no-op; rolls back an open transaction */
const char *store_errmsg(const struct store *st);
/* The schema version this build migrates to. */
int store_schema_version(void);

__attribute__((warn_unused_result)) int store_begin_read(struct store *st);
__attribute__((warn_unused_result)) int store_begin_write(struct store *st);
__attribute__((warn_unused_result)) int store_commit(struct store *st);
/* Best effort and idempotent: nothing to do when no transaction is open. */
void store_rollback(struct store *st);
/*
 * Durability of this connection's next commits: full (the default) syncs
 * the WAL at every commit, so a commit survives power loss; !full
 * (synchronous=NORMAL) does not, and such a commit survives a process
 * crash (SIGKILL) but may be lost with power, always as a suffix: the next
 * full commit syncs everything before it.  Outside a transaction.
 */
__attribute__((warn_unused_result)) int store_set_sync_full(struct store *st, bool full);

/*
 * Is the connection idle: no transaction open and no statement stepped but
 * not yet reset?  In WAL mode either one pins the connection to the
 * snapshot it started with, so every later read on it answers old data
 * (a rotated secret, an audit chain without its newest rows).  0 = idle;
 * -EBUSY = not, store_errmsg() names the open transaction or the statement
 * (its constant SQL, truncated; never a bound value).
 */
__attribute__((warn_unused_result)) int store_check_idle(struct store *st);
/* Reset every running statement and roll back an open transaction: the
 * connection is idle afterwards.  Idempotent; for recovery from a caller's
 * bug that store_check_idle() found, not for ordinary error paths. */
void store_force_idle(struct store *st);

/* Small opaque key/value rows (vault key check).  get: value length. */
__attribute__((warn_unused_result))
int store_meta_get(struct store *st, const char *key, uint8_t *buf, size_t buf_size,
		   size_t *ret_len);
__attribute__((warn_unused_result))
int store_meta_put(struct store *st, const char *key, const uint8_t *value, size_t len);

/* Secrets, keyed by (tenant_id, scope, scope_id, name). */
__attribute__((warn_unused_result))
int store_secret_find(struct store *st, const char *tenant_id, enum scope_walk_scope scope,
		      const char *scope_id, const char *name, unsigned flags,
		      struct store_secret *ret_secret);
__attribute__((warn_unused_result))
int store_secret_find_env(struct store *st, const char *tenant_id, enum scope_walk_scope scope,
			  const char *scope_id, const char *expose_as_env,
			  struct store_secret *ret_secret);
__attribute__((warn_unused_result))
int store_secret_get(struct store *st, int64_t id, unsigned flags,
		     struct store_secret *ret_secret);
/* Number of secrets at one (tenant, scope, scope_id). */
__attribute__((warn_unused_result))
int store_secret_count(struct store *st, const char *tenant_id, enum scope_walk_scope scope,
		       const char *scope_id, size_t *ret_count);
/* Secrets at one (tenant, scope, scope_id), by name; -E2BIG past max. */
__attribute__((warn_unused_result))
int store_secret_list(struct store *st, const char *tenant_id, enum scope_walk_scope scope,
		      const char *scope_id, size_t max,
		      struct store_secret **ret_rows, size_t *ret_n);
/*
 * Every secret of the attribution's tenant whose (scope, scope_id) matches
 * one of the attribution's ids (levels with no id are skipped): the input of
 * scope_walk_resolve().  No ciphertext.  -E2BIG past max.
 */
__attribute__((warn_unused_result))
int store_secret_candidates(struct store *st, const struct scope_walk_attribution *a,
			    size_t max, struct store_secret **ret_rows, size_t *ret_n);
/*
 * Insert a new row (s->id is ignored) and return its id.  Ids are never
 * reused, even after deletion, so a ciphertext bound to an id can never
 * become valid for a later row.  -EEXIST if the name or the env name is taken
 * at that (tenant, scope, scope_id).
 */
__attribute__((warn_unused_result))
int store_secret_insert(struct store *st, const struct store_secret *s, int64_t *ret_id);
/*
 * Update the mutable columns of row s->id: expose_as_env, hosts,
 * allow_cleartext, version, rotated_at_us, nonce, ciphertext.
 */
__attribute__((warn_unused_result))
int store_secret_update(struct store *st, const struct store_secret *s);
/* Delete one row and (cascading) its bindings. */
__attribute__((warn_unused_result))
int store_secret_delete(struct store *st, int64_t id);
/* Delete every row at one (tenant, scope, scope_id); returns the count. */
__attribute__((warn_unused_result))
int store_secret_delete_scope(struct store *st, const char *tenant_id,
			      enum scope_walk_scope scope, const char *scope_id);
void store_secret_clear(struct store_secret *s);
void store_secret_array_free(struct store_secret *rows, size_t n);

/* Bindings: one (sandbox, secret) pair and its placeholder. */
__attribute__((warn_unused_result))
int store_binding_find(struct store *st, const char *sandbox_id, int64_t secret_id,
		       struct store_binding *ret_binding);
__attribute__((warn_unused_result))
int store_binding_find_placeholder(struct store *st, const char *placeholder,
				   struct store_binding *ret_binding);
/* -EEXIST if the placeholder or the (sandbox, secret) pair is taken. */
__attribute__((warn_unused_result))
int store_binding_insert(struct store *st, const struct store_binding *b, int64_t *ret_id);
/* Delete every binding of a sandbox; returns the count. */
__attribute__((warn_unused_result))
int store_binding_delete_sandbox(struct store *st, const char *sandbox_id);

/*
 * Tenancy rows (tenancy_types.h): tenants, sandboxes, API keys.  Readers
 * re-check every column against the limits of tenancy_types.h (-EUCLEAN).
 * Unset optional strings are stored as NULL and read back as "".
 */

/* -EEXIST if the id is taken. */
__attribute__((warn_unused_result))
int store_tenant_insert(struct store *st, const struct tenancy_tenant *t);
__attribute__((warn_unused_result))
int store_tenant_get(struct store *st, const char *id, struct tenancy_tenant *ret_tenant);
/* Every tenant, by id; -E2BIG past max.  Free *ret_rows with free(). */
__attribute__((warn_unused_result))
int store_tenant_list(struct store *st, size_t max, struct tenancy_tenant **ret_rows,
		      size_t *ret_n);
__attribute__((warn_unused_result))
int store_tenant_count(struct store *st, size_t *ret_count);
/* -ENOENT if there is no such tenant. */
__attribute__((warn_unused_result))
int store_tenant_set_end_user_credentials(struct store *st, const char *id, bool allow);

/* -EEXIST if the id or the transport (UDS path, CID) is taken; -ENOENT if
 * the tenant does not exist. */
__attribute__((warn_unused_result))
int store_sandbox_insert(struct store *st, const struct tenancy_sandbox *s);
__attribute__((warn_unused_result))
int store_sandbox_get(struct store *st, const char *id, struct tenancy_sandbox *ret_sandbox);
/* Matching sandboxes, oldest first; -E2BIG past max.  Free with free(). */
__attribute__((warn_unused_result))
int store_sandbox_list(struct store *st, const struct tenancy_sandbox_filter *filter,
		       size_t max, struct tenancy_sandbox **ret_rows, size_t *ret_n);
__attribute__((warn_unused_result))
int store_sandbox_count(struct store *st, const char *tenant_id, size_t *ret_count);
/* -ENOENT if there is no such sandbox. */
__attribute__((warn_unused_result))
int store_sandbox_delete(struct store *st, const char *id);

/*
 * Sandbox CAs (tenancy_sandbox_cas, one row per sandbox, removed with it by
 * ON DELETE CASCADE): the certificate PEM (public) and the private key as
 * sealed by mitm_ca_seal_key() (ciphertext; the store never sees the key).
 * Readers re-check both lengths and the PEM's first line (-EUCLEAN).
 */
#define STORE_CA_PEM_MAX 8192      /* = MITM_CA_PEM_MAX */
#define STORE_CA_SEALED_MAX 1024   /* = MITM_CA_SEALED_MAX */
#define STORE_CA_PEM_PREFIX "-----BEGIN CERTIFICATE-----\n"

/* Flag for store_sandbox_ca_get(): also read the sealed key. */
#define STORE_WITH_SEALED_KEY 0x2u

struct store_sandbox_ca {
	char sandbox_id[TENANCY_OBJECT_ID_LEN + 1];
	char *cert_pem;          /* malloc'd, NUL-terminated */
	size_t cert_pem_len;     /* excludes the NUL */
	uint8_t *sealed_key;     /* malloc'd; NULL unless STORE_WITH_SEALED_KEY */
	size_t sealed_key_len;
	int64_t created_at_us;
};

/* -EEXIST if the sandbox has one; -ENOENT if there is no such sandbox;
 * -EINVAL for lengths out of the limits above. */
__attribute__((warn_unused_result))
int store_sandbox_ca_insert(struct store *st, const struct store_sandbox_ca *ca);
/* Release with store_sandbox_ca_clear().  -ENOENT: the sandbox has none. */
__attribute__((warn_unused_result))
int store_sandbox_ca_get(struct store *st, const char *sandbox_id, unsigned flags,
			 struct store_sandbox_ca *ret_ca);
/* -ENOENT if the sandbox has none. */
__attribute__((warn_unused_result))
int store_sandbox_ca_delete(struct store *st, const char *sandbox_id);
void store_sandbox_ca_clear(struct store_sandbox_ca *ca); /* frees; NULL is a no-op */

/* hash: keyed BLAKE2b of the full key.  -EEXIST if id or hash is taken;
 * -ENOENT if the tenant does not exist. */
__attribute__((warn_unused_result))
int store_api_key_insert(struct store *st, const struct tenancy_api_key *k,
			 const uint8_t hash[TENANCY_API_KEY_HASH_BYTES]);
__attribute__((warn_unused_result))
int store_api_key_get(struct store *st, const char *id, struct tenancy_api_key *ret_key);
/* Indexed lookup by hash; ret_hash receives the stored hash for the
 * caller's constant-time comparison. */
__attribute__((warn_unused_result))
int store_api_key_find_hash(struct store *st, const uint8_t hash[TENANCY_API_KEY_HASH_BYTES],
			    struct tenancy_api_key *ret_key,
			    uint8_t ret_hash[TENANCY_API_KEY_HASH_BYTES]);
/* A tenant's keys, oldest first; -E2BIG past max.  Free with free(). */
__attribute__((warn_unused_result))
int store_api_key_list(struct store *st, const char *tenant_id, size_t max,
		       struct tenancy_api_key **ret_rows, size_t *ret_n);
__attribute__((warn_unused_result))
int store_api_key_count(struct store *st, const char *tenant_id, size_t *ret_count);
/* Set last_used_at_us; -ENOENT if there is no such key. */
__attribute__((warn_unused_result))
int store_api_key_touch(struct store *st, const char *id, int64_t now_us);
/* Set revoked_at_us unless already revoked (then unchanged); -ENOENT. */
__attribute__((warn_unused_result))
int store_api_key_revoke(struct store *st, const char *id, int64_t now_us);

/*
 * Synthetic DNS maps (dns_synth.h; migration 8): per sandbox, the address
 * each name was answered with, so the map outlives a broker restart.  addr
 * is host order inside 198.18.0.0/15; names are normalized by the caller
 * (host_pattern_normalize_host) and re-checked only for length on the way
 * out (dns_synth_import() validates the rest).
 */
struct store_dns_mapping {
	uint32_t addr;
	char name[HOST_PATTERN_BUF];
};

/* 0 = stored; -EEXIST: the sandbox already maps this address or this name;
 * -ENOENT: no such sandbox (a mapping never outlives its sandbox);
 * -EINVAL: addr outside the /15, or an empty or oversize name. */
__attribute__((warn_unused_result))
int store_dns_map_insert(struct store *st, const char *sandbox_id, uint32_t addr,
			 const char *name);
/* By address; -E2BIG past max.  Free *ret_rows with free(). */
__attribute__((warn_unused_result))
int store_dns_map_list(struct store *st, const char *sandbox_id, size_t max,
		       struct store_dns_mapping **ret_rows, size_t *ret_n);
/* Every mapping of a sandbox (tenancy_sandbox_delete); returns the count. */
__attribute__((warn_unused_result))
int store_dns_map_delete_sandbox(struct store *st, const char *sandbox_id);

/*
 * Network policy rows (policy.h; migration 4), keyed by sandbox and removed
 * with it (ON DELETE CASCADE).  Writes for a sandbox that does not exist fail
 * with -ENOENT.  Patterns and hosts are host_pattern-normalized by the
 * caller; readers re-check lengths and ports (-EUCLEAN).
 */
struct store_policy_entry {
	char pattern[HOST_PATTERN_BUF]; /* host_pattern_normalize() form */
	uint16_t port;                  /* 0 = any port */
	int64_t created_at_us;
};

struct store_policy_hit {
	char host[HOST_PATTERN_BUF];    /* host_pattern_normalize_host() form */
	uint16_t port;                  /* 1..65535 */
	int64_t first_seen_us;
	int64_t last_seen_us;
	int64_t count;                  /* >= 1, saturates at INT64_MAX */
};

/* The two host tallies: allowed connections, and denied ones (pending). */
enum store_policy_hits {
	STORE_POLICY_OBSERVED = 0,
	STORE_POLICY_PENDING = 1,
};

/* -ENOENT: no mode row (the sandbox is in the default mode). */
__attribute__((warn_unused_result))
int store_policy_mode_get(struct store *st, const char *sandbox_id, bool *ret_enforce);
__attribute__((warn_unused_result))
int store_policy_mode_set(struct store *st, const char *sandbox_id, bool enforce,
			  int64_t now_us);
/* By pattern, then port; -E2BIG past max.  Free *ret_rows with free(). */
__attribute__((warn_unused_result))
int store_policy_allow_list(struct store *st, const char *sandbox_id, size_t max,
			    struct store_policy_entry **ret_rows, size_t *ret_n);
__attribute__((warn_unused_result))
int store_policy_allow_count(struct store *st, const char *sandbox_id, size_t *ret_count);
/* 1 = inserted, 0 = the (pattern, port) entry was already there. */
__attribute__((warn_unused_result))
int store_policy_allow_insert(struct store *st, const char *sandbox_id,
			      const struct store_policy_entry *e);
/* Delete (pattern, port), or every port of pattern when port < 0; returns
 * the count (0 when there was none). */
__attribute__((warn_unused_result))
int store_policy_allow_delete(struct store *st, const char *sandbox_id, const char *pattern,
			      int port);
/* Delete the whole allowlist of a sandbox; returns the count. */
__attribute__((warn_unused_result))
int store_policy_allow_clear(struct store *st, const char *sandbox_id);
/*
 * Count hit->count connections to (hit->host, hit->port) seen between
 * hit->first_seen_us and hit->last_seen_us, in one statement: an existing
 * row gets count + hit->count (saturating) and its seen times widened; a
 * new host is inserted only while the sandbox has fewer than max rows in
 * that tally.  0 = counted; -ENOSPC = tally full, the new host was not
 * recorded; -EINVAL = count < 1, port 0 or first > last.
 */
__attribute__((warn_unused_result))
int store_policy_hit_record(struct store *st, enum store_policy_hits which,
			    const char *sandbox_id, const struct store_policy_hit *hit,
			    size_t max);
/* Observed: by host, port.  Pending: most recent first.  -E2BIG past max.
 * Free *ret_rows with free(). */
__attribute__((warn_unused_result))
int store_policy_hit_list(struct store *st, enum store_policy_hits which,
			  const char *sandbox_id, size_t max,
			  struct store_policy_hit **ret_rows, size_t *ret_n);
/* Delete one (host, port) row; returns the count (0 or 1). */
__attribute__((warn_unused_result))
int store_policy_hit_delete(struct store *st, enum store_policy_hits which,
			    const char *sandbox_id, const char *host, uint16_t port);

/*
 * Audit rows (audit.h; migration 5) and their completions (migration 6).
 * Append-only; the audit writer is the only caller of store_audit_insert()
 * and store_audit_completion_insert().  Strings are NUL-terminated; unset
 * external ids are "" (stored as NULL).  Lists hold names only, never a
 * value.  Readers re-check every column against these limits (-EUCLEAN).
 */
#define STORE_AUDIT_HOST_MAX 253
#define STORE_AUDIT_METHOD_MAX 32
#define STORE_AUDIT_PATH_MAX 2048
#define STORE_AUDIT_REASON_MAX 256
#define STORE_AUDIT_LIST_MAX 16       /* rules, swapped names, flagged names */
#define STORE_AUDIT_RULE_MAX 64
#define STORE_AUDIT_HASH_BYTES 32     /* BLAKE2b-256 */

enum store_audit_scheme { STORE_AUDIT_HTTP, STORE_AUDIT_HTTPS, STORE_AUDIT_TCP };
enum store_audit_action { STORE_AUDIT_ALLOW, STORE_AUDIT_DENY, STORE_AUDIT_ERROR };

struct store_audit_row {
	int64_t id;                   /* assigned by the writer */
	int64_t time_us;              /* µs since the Unix epoch, UTC */
	char tenant_id[STORE_ID_MAX + 1];
	char sandbox_id[STORE_ID_MAX + 1];
	char external_user_id[STORE_ID_MAX + 1];
	char external_workspace_id[STORE_ID_MAX + 1];
	char host[STORE_AUDIT_HOST_MAX + 1];
	uint16_t port;
	enum store_audit_scheme scheme;
	char method[STORE_AUDIT_METHOD_MAX + 1];  /* "" for tcp */
	char path[STORE_AUDIT_PATH_MAX + 1];      /* with query, redacted */
	uint16_t status;                          /* 0 = none (tcp, refused) */
	enum store_audit_action action;
	char reason[STORE_AUDIT_REASON_MAX + 1];
	size_t n_rules;
	char rules[STORE_AUDIT_LIST_MAX][STORE_AUDIT_RULE_MAX + 1];
	size_t n_swapped;                         /* request_transforms.secrets.swapped */
	char swapped[STORE_AUDIT_LIST_MAX][STORE_NAME_MAX + 1];
	size_t n_flagged;                         /* exfiltration guard hits */
	char flagged[STORE_AUDIT_LIST_MAX][STORE_NAME_MAX + 1];
	int64_t bytes_up;
	int64_t bytes_down;
	int64_t duration_us;
	uint8_t prev_hash[STORE_AUDIT_HASH_BYTES];
	uint8_t row_hash[STORE_AUDIT_HASH_BYTES];
	/* Merged reads (store_audit_query): the id of the completion whose
	 * status, bytes and duration replaced the row's own, 0 = none.  Not
	 * stored with the row and not hashed; ignored by store_audit_insert(). */
	int64_t completion_id;
};

/*
 * A completion (migration 6): what became of request row request_id once
 * its exchange ended.  A link of the same chain as the rows (one id
 * sequence over both), hashed by audit_completion_hash().
 */
struct store_audit_completion {
	int64_t id;                   /* assigned by the writer */
	int64_t request_id;           /* the row it completes, < id */
	int64_t time_us;              /* when the exchange ended */
	uint16_t status;              /* 0 = no response reached the guest */
	int64_t bytes_up;
	int64_t bytes_down;
	int64_t duration_us;
	uint8_t prev_hash[STORE_AUDIT_HASH_BYTES];
	uint8_t row_hash[STORE_AUDIT_HASH_BYTES];
};

/* Query filter: NULL strings, 0 times/ids and -1 status/action mean "any".
 * Strings match by strict (byte) equality, never a pattern. */
struct store_audit_filter {
	int64_t since_us;             /* time_us >= since_us */
	int64_t until_us;             /* time_us < until_us */
	const char *tenant_id;
	const char *sandbox_id;
	const char *host;
	const char *external_user_id;
	const char *external_workspace_id;
	int status;
	int action;                   /* enum store_audit_action */
	int64_t before_id;            /* cursor: id < before_id */
};

/* Insert a row whose id and hashes are set.  -EEXIST: the id is taken. */
__attribute__((warn_unused_result))
int store_audit_insert(struct store *st, const struct store_audit_row *row);
/* Insert a completion whose id and hashes are set.  -EEXIST: the id is
 * taken or request_id is already completed. */
__attribute__((warn_unused_result))
int store_audit_completion_insert(struct store *st, const struct store_audit_completion *c);
/* The newest chain link's (row or completion) id and row_hash, or the prune
 * anchor's when every link was pruned (the chain goes on from it); -ENOENT
 * when the log never had a link. */
__attribute__((warn_unused_result))
int store_audit_last(struct store *st, int64_t *ret_id,
		     uint8_t ret_hash[STORE_AUDIT_HASH_BYTES]);
/* Matching rows, newest first, at most max (a page, not an error), each
 * merged with its completion if any (status, bytes_up, bytes_down,
 * duration_us from the completion; completion_id set); the filter's status
 * applies to the merged status.  Free *ret_rows with free(). */
__attribute__((warn_unused_result))
int store_audit_query(struct store *st, const struct store_audit_filter *f, size_t max,
		      struct store_audit_row **ret_rows, size_t *ret_n);
/* Rows with id > after_id, oldest first, at most max (chain walks). */
__attribute__((warn_unused_result))
int store_audit_list_after(struct store *st, int64_t after_id, size_t max,
			   struct store_audit_row **ret_rows, size_t *ret_n);
/* Completions with id > after_id, oldest first, at most max (chain walks). */
__attribute__((warn_unused_result))
int store_audit_completions_after(struct store *st, int64_t after_id, size_t max,
				  struct store_audit_completion **ret, size_t *ret_n);

/*
 * Retention (migration 7).  Pruning deletes the oldest links of the chain
 * only (rows and completions alike, a prefix of the one id sequence, so
 * the rest of the chain still links) and keeps the anchor: the id and hash
 * of the newest pruned link, where the chain of the remaining links starts
 * (the first one's prev_hash, id = anchor id + 1).  The anchor id is also
 * the count of links ever pruned (ids start at 1).
 *
 * store_audit_prune(), inside the caller's write transaction: deletes the
 * oldest links while each is a row older than before_us (0 = no age limit)
 * or with more than keep_rows rows remaining (0 = no count limit; rows are
 * requests, completions do not count), or a completion older than before_us
 * or whose request row is pruned; at most max links, stopping at the first
 * that is neither (a completion of a kept row stops it).  A completion
 * after that point whose request row was pruned stays until its turn; a
 * query never shows it (it reads rows and joins their completions).  Moves
 * the anchor to the last deleted link.  Returns the count deleted (rows and
 * completions; 0: nothing to do).
 */
__attribute__((warn_unused_result))
int store_audit_prune(struct store *st, int64_t before_us, uint64_t keep_rows, size_t max);
/* The anchor; -ENOENT when nothing was ever pruned. */
__attribute__((warn_unused_result))
int store_audit_anchor(struct store *st, int64_t *ret_id,
		       uint8_t ret_hash[STORE_AUDIT_HASH_BYTES]);

#endif
