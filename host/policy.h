/*
 * policy — the per-sandbox network policy (M12–M15): mode, allowlist, and
 * the observed and pending host tallies.
 *
 * What it promises:
 *   - Mode: observe (the default: every valid destination is allowed and
 *     recorded) or enforce (only allowlisted destinations).  A sandbox with
 *     no stored mode is in observe mode.
 *   - Allowlist entries are host_pattern.h patterns, normalized: an exact
 *     name, a wildcard "*.example.com" or an IP literal, plus an optional
 *     port (1..65535; 0 = any port).  Matching is case-insensitive, ignores
 *     one trailing dot and compares IDNs as A-labels (host_pattern.h).
 *     A WILDCARD MATCHES NAMES STRICTLY BELOW ITS SUFFIX, NEVER THE APEX:
 *     "*.npmjs.com" covers registry.npmjs.com and a.b.npmjs.com but not
 *     npmjs.com; allow both when both are used.  (pip needs pypi.org,
 *     files.pythonhosted.org and pythonhosted.org: seeds case 7.)
 *   - policy_allow() adds an entry (idempotent) and removes from pending
 *     every (host, port) the new entry covers.  policy_deny() removes
 *     allowlist entries, it does not add a "deny rule": with port 0 every
 *     entry of that pattern (any port and per-port), with a port only that
 *     (pattern, port) entry; -ENOENT if nothing matched (the API's 404).
 *   - Observed: every allowed connection, in both modes, counted per
 *     (host, port) with first/last seen.  Pending: every connection denied
 *     in enforce mode, the same way.
 *   - policy_lockdown(): in ONE write transaction, mode := enforce and
 *     allowlist := allowlist ∪ { each observed host as an exact, any-port
 *     entry }.  Host-only on purpose: the list shown to the user and built
 *     by lockdown is a list of hosts (M12, M13); pinning the ports seen in
 *     observe mode would turn a redirect from :80 to :443, or a client that
 *     later picks another port of the same service, into a surprise denial
 *     right after lockdown.  Per-port entries stay available through
 *     policy_allow(pattern, port).  Observed hosts already covered by an
 *     any-port entry are not added again.  Pending hosts the new list covers
 *     leave pending.  If the union would exceed POLICY_ALLOW_MAX, nothing
 *     changes (-ENOSPC).
 *   - policy_observe(): mode := observe; allowlist, observed and pending are
 *     kept, so a later lockdown restores the same list.
 *   - Caps per sandbox: POLICY_ALLOW_MAX allowlist entries (-ENOSPC past
 *     it), POLICY_OBSERVED_MAX observed and POLICY_PENDING_MAX pending
 *     (host, port) rows.  A full tally still counts hits on its existing
 *     rows; a new host is dropped and the record call returns -ENOSPC (the
 *     caller logs "..., ignoring": the connection itself is unaffected).
 *   - Templates (M15): policy_export() / policy_import() carry (mode,
 *     allowlist) as a plain struct the template code serializes.  Import
 *     REPLACES mode and allowlist atomically (a sandbox made from a template
 *     is the template's policy; its tallies are left alone).  A template
 *     taken in enforce mode yields an enforce-mode sandbox (seeds case 10):
 *     policy_observe() right after creation fixes it.  Listen ports are not
 *     policy state and are not carried here: the template code takes them
 *     from their owner.
 *
 * The data path does not touch the store: it loads a policy_snapshot
 * (mode + normalized allowlist, immutable, any thread may read it) and asks
 * policy_decide(), which is pure: no I/O, no allocation, exact entries by
 * binary search, wildcards by one scan.  Changes take effect when the caller
 * loads a new snapshot (the next connection / request).
 *
 * Handles and threads: one struct policy = one store connection (store.h).
 * A handle is used by one thread at a time; every call except the snapshot
 * functions may block on disk: never call them from the event loop.
 *
 * Errors: 0 (or a count) / negative errno; policy_errmsg() then says what
 * failed, quoting the offending pattern or host (host_pattern.h wording,
 * e.g. "host pattern '*foo.com': '*' is only allowed as the whole first
 * label (*.example.com)").  Codes:
 *   -EINVAL  malformed sandbox id, pattern, host or port
 *   -ENOENT  (deny) no such entry; (writes) no such sandbox
 *   -ENOSPC  cap reached (see above)
 *   others from store.h (-EBUSY, -EUCLEAN, -EIO, -ENOMEM ...).
 * ret_* outputs are written only on success.
 */
#ifndef MIOSA_POLICY_H
#define MIOSA_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host_pattern.h"

#define POLICY_ALLOW_MAX 1024     /* allowlist entries per sandbox */
#define POLICY_OBSERVED_MAX 1024  /* observed (host, port) rows per sandbox */
#define POLICY_PENDING_MAX 1024   /* pending (host, port) rows per sandbox */
#define POLICY_ID_MAX 256         /* sandbox id: 1..256 bytes of 0x21..0x7e */
#define POLICY_ERR_MAX 320
/* "allow:" + pattern + ":" + port, NUL-terminated. */
#define POLICY_RULE_MAX (sizeof("allow:[") - 1 + HOST_PATTERN_MAX + sizeof("]:65535"))

/* Rules reported by policy_decide(). */
#define POLICY_RULE_OBSERVE "observe-mode"
#define POLICY_RULE_NOT_ALLOWED "deny:host-not-allowed"
#define POLICY_RULE_INVALID "deny:invalid-destination"

enum policy_mode {
	POLICY_OBSERVE = 0,
	POLICY_ENFORCE = 1,
};

enum policy_action {
	POLICY_DENY = 0,
	POLICY_ALLOW = 1,
};

struct policy_entry {
	char pattern[HOST_PATTERN_BUF]; /* normalized */
	uint16_t port;                  /* 0 = any port */
	int64_t created_at_us;          /* 0 in templates */
};

struct policy_hit {
	char host[HOST_PATTERN_BUF];    /* normalized */
	uint16_t port;
	int64_t first_seen_us;
	int64_t last_seen_us;
	int64_t count;
};

/* policy_status(): free with policy_status_clear(). */
struct policy_status {
	enum policy_mode mode;
	struct policy_entry *allow;     /* by pattern, port */
	size_t n_allow;
	struct policy_hit *observed;    /* by host, port */
	size_t n_observed;
	struct policy_hit *pending;     /* most recent first */
	size_t n_pending;
};

/* The template form (M15); free with policy_template_clear(). */
struct policy_template {
	enum policy_mode mode;
	struct policy_entry *allow;
	size_t n_allow;                 /* <= POLICY_ALLOW_MAX */
};

struct policy;
struct policy_snapshot;

__attribute__((warn_unused_result))
int policy_open(const char *state_dir, struct policy **ret_policy, char *err, size_t err_size);
void policy_close(struct policy *p); /* NULL is a no-op */
const char *policy_errmsg(const struct policy *p);

/*
 * Is the handle's store connection idle (store_check_idle())?  0 = yes.
 * -EBUSY = a transaction or statement was left open, which pins the
 * connection to an old snapshot; policy_errmsg() says which, and with reset
 * the connection has been made idle again (store_force_idle()).
 */
__attribute__((warn_unused_result))
int policy_check_idle(struct policy *p, bool reset);

/* Mode and all three lists in one read transaction. */
__attribute__((warn_unused_result))
int policy_status(struct policy *p, const char *sandbox_id, struct policy_status *ret_status);
void policy_status_clear(struct policy_status *s);

/* Returns 1 if added, 0 if the entry was already there (pending pruned
 * either way). */
__attribute__((warn_unused_result))
int policy_allow(struct policy *p, const char *sandbox_id, const char *pattern, uint16_t port);
/* Returns the number of entries removed (>= 1); -ENOENT if none. */
__attribute__((warn_unused_result))
int policy_deny(struct policy *p, const char *sandbox_id, const char *pattern, uint16_t port);
/* Returns the number of entries lockdown added to the allowlist. */
__attribute__((warn_unused_result))
int policy_lockdown(struct policy *p, const char *sandbox_id);
__attribute__((warn_unused_result))
int policy_observe(struct policy *p, const char *sandbox_id);

/*
 * Count one connection at now_us (µs since the epoch): observed for an
 * allowed one, denied for one refused in enforce mode (pending).  host is
 * normalized first (host_pattern_normalize_host); port 1..65535.
 * 0 = counted; -ENOSPC = the tally is full and host is new: not recorded.
 */
__attribute__((warn_unused_result))
int policy_record_observed(struct policy *p, const char *sandbox_id, const char *host,
			   uint16_t port, int64_t now_us);
__attribute__((warn_unused_result))
int policy_record_denied(struct policy *p, const char *sandbox_id, const char *host,
			 uint16_t port, int64_t now_us);
/*
 * Many observed connections of one sandbox in one write transaction (what
 * policy_tally collected in memory): each hit adds hit.count to its
 * (host, port) row and widens its seen times.  Hosts must be normalized.
 * Returns the number of new hosts dropped because the tally is full
 * (0 = all counted; policy_errmsg() then says how many); -EINVAL if a hit
 * is malformed (nothing written); -ENOENT if the sandbox is gone.
 */
__attribute__((warn_unused_result))
int policy_record_observed_batch(struct policy *p, const char *sandbox_id,
				 const struct policy_hit *hits, size_t n);

/*
 * The process-wide policy generation: it changes after every write of a
 * sandbox's mode or allowlist through any handle of this process (allow,
 * deny, lockdown, observe, import), before that call returns.  A cache of
 * snapshots (egress_verdict.c) tags each entry with the generation read
 * BEFORE loading it and reloads when the generation differs, so a change
 * takes effect on the next request: a load that raced a write carries the
 * old tag and is thrown away.  policy_invalidate() bumps it for changes
 * made outside this module that a cache must see (a sandbox deleted).
 * Writes by other processes on the same state.db are not seen: the broker
 * is the only writer (DESIGN.md).
 */
uint64_t policy_generation(void);
void policy_invalidate(void);

/* Templates. */
__attribute__((warn_unused_result))
int policy_export(struct policy *p, const char *sandbox_id, struct policy_template *ret_template);
/* Validates and normalizes every entry before writing anything. */
__attribute__((warn_unused_result))
int policy_import(struct policy *p, const char *sandbox_id, const struct policy_template *t);
void policy_template_clear(struct policy_template *t);

/* ---- snapshots and the decision (pure; no store) ------------------------ */

/* The sandbox's mode and allowlist as an immutable snapshot. */
__attribute__((warn_unused_result))
int policy_snapshot_load(struct policy *p, const char *sandbox_id,
			 struct policy_snapshot **ret_snapshot);
/*
 * A snapshot from entries given by the caller (templates, tests): patterns
 * are validated and normalized; duplicates are fine.  -EINVAL with the bad
 * pattern in err; -ENOSPC past POLICY_ALLOW_MAX; -ENOMEM.
 */
__attribute__((warn_unused_result))
int policy_snapshot_new(enum policy_mode mode, const struct policy_entry *entries, size_t n,
			struct policy_snapshot **ret_snapshot, char *err, size_t err_size);
void policy_snapshot_free(struct policy_snapshot *snap); /* NULL is a no-op */
enum policy_mode policy_snapshot_mode(const struct policy_snapshot *snap);
size_t policy_snapshot_size(const struct policy_snapshot *snap);

/*
 * May a connection to (host, port) go out?  host is a span (SNI, Host
 * header without its port, mapped name) normalized here.  ret_rule (at least
 * POLICY_RULE_MAX bytes) always receives the rule that fired:
 *   "observe-mode"               observe mode, any valid destination
 *   "allow:<pattern>[:<port>]"   the allowlist entry that matched (exact
 *                                entries win over wildcards; an IPv6
 *                                pattern with a port is bracketed)
 *   "deny:host-not-allowed"      enforce mode, no entry matched
 *   "deny:invalid-destination"   host not a valid name/IP, or port 0 —
 *                                denied in BOTH modes: nothing could be
 *                                resolved, recorded or allowed for it.
 */
enum policy_action policy_decide(const struct policy_snapshot *snap, const char *host,
				 size_t host_len, uint16_t port, char *ret_rule,
				 size_t rule_size);

#endif
