/*
 * policy — per-sandbox network policy over the store; snapshots and the
 * pure decision used on the data path.  Contract in policy.h.
 */
#include "policy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"

_Static_assert(POLICY_ID_MAX <= STORE_ID_MAX, "sandbox ids fit the store");
_Static_assert(sizeof(((struct policy_entry *)0)->pattern) ==
	       sizeof(((struct store_policy_entry *)0)->pattern), "entry patterns");
_Static_assert(sizeof(((struct policy_hit *)0)->host) ==
	       sizeof(((struct store_policy_hit *)0)->host), "hit hosts");

struct policy {
	struct store *st;
	char err[POLICY_ERR_MAX];
};

/*
 * policy_generation(): bumped after every write of a mode or an allowlist
 * (whatever its outcome: a failed commit may still have changed nothing or
 * everything, and a spurious bump only costs a reload).  Starts at 1 so a
 * zeroed cache entry is never current.
 */
static atomic_uint_fast64_t pl_generation = 1;

uint64_t policy_generation(void)
{
	return atomic_load_explicit(&pl_generation, memory_order_acquire);
}

void policy_invalidate(void)
{
	atomic_fetch_add_explicit(&pl_generation, 1, memory_order_acq_rel);
}

/*
 * Sorted entries: exact names and IP literals first (binary search), then
 * wildcards (one scan).  Within each part by pattern, then port, so an
 * any-port entry (0) is found before the per-port ones of the same pattern.
 */
struct policy_snapshot {
	enum policy_mode mode;
	size_t n_exact;
	size_t n;
	struct policy_entry entries[];
};

/* ---- errors and small helpers ------------------------------------------ */

__attribute__((format(printf, 3, 4)))
static int pl_failf(struct policy *p, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->err, sizeof(p->err), fmt, ap);
	va_end(ap);
	return r;
}

/* Take the store's message for r (< 0); a write's -ENOENT is the
 * foreign key on the sandbox. */
static int pl_store_fail(struct policy *p, int r, const char *sandbox_id, bool write)
{
	if (write && r == -ENOENT)
		return pl_failf(p, r, "no such sandbox '%s'", sandbox_id);
	return pl_failf(p, r, "%s", store_errmsg(p->st));
}

static int64_t pl_now_us(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* 1..POLICY_ID_MAX bytes of 0x21..0x7e (vault.h's id alphabet). */
static int pl_check_sandbox(struct policy *p, const char *sandbox_id)
{
	size_t n = 0;

	if (!sandbox_id)
		return pl_failf(p, -EINVAL, "no sandbox id");
	for (; sandbox_id[n] && n <= POLICY_ID_MAX; n++)
		if ((unsigned char)sandbox_id[n] < 0x21 || (unsigned char)sandbox_id[n] > 0x7e)
			return pl_failf(p, -EINVAL, "sandbox id has a byte outside 0x21..0x7e");
	if (n == 0 || n > POLICY_ID_MAX)
		return pl_failf(p, -EINVAL, "sandbox id must be 1..%d bytes", POLICY_ID_MAX);
	return 0;
}

static int pl_normalize_pattern(const char *pattern, char out[HOST_PATTERN_BUF], char *err,
				size_t err_size)
{
	int r;

	if (!pattern) {
		snprintf(err, err_size, "no pattern");
		return -EINVAL;
	}
	r = host_pattern_normalize(pattern, strlen(pattern), out, err, err_size);
	return r < 0 ? r : 0;
}

static void pl_rollback_if(struct policy *p, int r)
{
	if (r < 0)
		store_rollback(p->st);
}

/* ---- open / close ------------------------------------------------------ */

int policy_open(const char *state_dir, struct policy **ret_policy, char *err, size_t err_size)
{
	struct policy *p;
	int r;

	if (!ret_policy)
		return -EINVAL;
	if (!(p = calloc(1, sizeof(*p)))) {
		if (err && err_size)
			snprintf(err, err_size, "out of memory");
		return -ENOMEM;
	}
	if ((r = store_open(state_dir, &p->st, err, err_size)) != 0) {
		free(p);
		return r;
	}
	*ret_policy = p;
	return 0;
}

void policy_close(struct policy *p)
{
	if (!p)
		return;
	store_close(p->st);
	free(p);
}

const char *policy_errmsg(const struct policy *p)
{
	return p ? p->err : "no policy handle";
}

int policy_check_idle(struct policy *p, bool reset)
{
	int r = store_check_idle(p->st);

	if (r == 0)
		return 0;
	pl_failf(p, r, "%s", store_errmsg(p->st));
	if (reset)
		store_force_idle(p->st);
	return r;
}

/* ---- snapshots and the decision ---------------------------------------- */

static bool pl_is_wildcard(const char *pattern)
{
	return pattern[0] == '*';
}

static int pl_entry_cmp(const void *a, const void *b)
{
	const struct policy_entry *x = a, *y = b;
	int c = (int)pl_is_wildcard(x->pattern) - (int)pl_is_wildcard(y->pattern);

	if (c == 0)
		c = strcmp(x->pattern, y->pattern);
	if (c == 0)
		c = (int)x->port - (int)y->port;
	return c;
}

int policy_snapshot_new(enum policy_mode mode, const struct policy_entry *entries, size_t n,
			struct policy_snapshot **ret_snapshot, char *err, size_t err_size)
{
	struct policy_snapshot *snap;
	char dummy[1];
	size_t i;
	int r;

	if (!err || err_size == 0) {
		err = dummy;
		err_size = sizeof(dummy);
	}
	if (mode != POLICY_OBSERVE && mode != POLICY_ENFORCE) {
		snprintf(err, err_size, "unknown policy mode %d", (int)mode);
		return -EINVAL;
	}
	if (n > POLICY_ALLOW_MAX) {
		snprintf(err, err_size, "%zu allowlist entries; at most %d", n, POLICY_ALLOW_MAX);
		return -ENOSPC;
	}
	snap = calloc(1, sizeof(*snap) + n * sizeof(snap->entries[0]));
	if (!snap) {
		snprintf(err, err_size, "out of memory");
		return -ENOMEM;
	}
	snap->mode = mode;
	snap->n = n;
	for (i = 0; i < n; i++) {
		/* The pattern buffer must hold a string: never read past it. */
		if (!memchr(entries[i].pattern, '\0', sizeof(entries[i].pattern))) {
			snprintf(err, err_size, "allowlist entry %zu is not a string", i);
			r = -EINVAL;
			goto fail;
		}
		r = pl_normalize_pattern(entries[i].pattern, snap->entries[i].pattern, err,
					 err_size);
		if (r < 0)
			goto fail;
		snap->entries[i].port = entries[i].port;
		snap->entries[i].created_at_us = entries[i].created_at_us;
		if (!pl_is_wildcard(snap->entries[i].pattern))
			snap->n_exact++;
	}
	if (n > 1)
		qsort(snap->entries, n, sizeof(snap->entries[0]), pl_entry_cmp);
	*ret_snapshot = snap;
	return 0;
fail:
	free(snap);
	return r;
}

void policy_snapshot_free(struct policy_snapshot *snap)
{
	free(snap);
}

enum policy_mode policy_snapshot_mode(const struct policy_snapshot *snap)
{
	return snap->mode;
}

size_t policy_snapshot_size(const struct policy_snapshot *snap)
{
	return snap->n;
}

static bool pl_port_ok(const struct policy_entry *e, uint16_t port)
{
	return e->port == 0 || e->port == port;
}

/* The entry covering normalized (host, port), or NULL. */
static const struct policy_entry *pl_match(const struct policy_snapshot *snap,
					   const char *host, uint16_t port)
{
	size_t lo = 0, hi = snap->n_exact;

	/* Lower bound of host among the exact entries. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(snap->entries[mid].pattern, host) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < snap->n_exact && strcmp(snap->entries[lo].pattern, host) == 0; lo++)
		if (pl_port_ok(&snap->entries[lo], port))
			return &snap->entries[lo];
	for (size_t i = snap->n_exact; i < snap->n; i++)
		if (pl_port_ok(&snap->entries[i], port) &&
		    host_pattern_match(snap->entries[i].pattern, host))
			return &snap->entries[i];
	return NULL;
}

static void pl_rule(char *buf, size_t size, const char *text)
{
	if (buf && size)
		snprintf(buf, size, "%s", text);
}

enum policy_action policy_decide(const struct policy_snapshot *snap, const char *host,
				 size_t host_len, uint16_t port, char *ret_rule,
				 size_t rule_size)
{
	char norm[HOST_PATTERN_BUF];
	const struct policy_entry *e;

	if (!snap || !host || port == 0 ||
	    host_pattern_normalize_host(host, host_len, norm, NULL, 0) < 0) {
		pl_rule(ret_rule, rule_size, POLICY_RULE_INVALID);
		return POLICY_DENY;
	}
	if (snap->mode == POLICY_OBSERVE) {
		pl_rule(ret_rule, rule_size, POLICY_RULE_OBSERVE);
		return POLICY_ALLOW;
	}
	if (!(e = pl_match(snap, norm, port))) {
		pl_rule(ret_rule, rule_size, POLICY_RULE_NOT_ALLOWED);
		return POLICY_DENY;
	}
	if (ret_rule && rule_size) {
		if (e->port && strchr(e->pattern, ':')) /* IPv6: keep the port readable */
			snprintf(ret_rule, rule_size, "allow:[%s]:%u", e->pattern, (unsigned)e->port);
		else if (e->port)
			snprintf(ret_rule, rule_size, "allow:%s:%u", e->pattern, (unsigned)e->port);
		else
			snprintf(ret_rule, rule_size, "allow:%s", e->pattern);
	}
	return POLICY_ALLOW;
}

/* ---- reading ----------------------------------------------------------- */

static int pl_read_mode(struct policy *p, const char *sandbox_id, enum policy_mode *ret_mode)
{
	bool enforce = false;
	int r = store_policy_mode_get(p->st, sandbox_id, &enforce);

	if (r == -ENOENT) {
		enforce = false; /* no row: the default mode */
		r = 0;
	}
	if (r < 0)
		return pl_store_fail(p, r, sandbox_id, false);
	*ret_mode = enforce ? POLICY_ENFORCE : POLICY_OBSERVE;
	return 0;
}

static int pl_read_allow(struct policy *p, const char *sandbox_id,
			 struct policy_entry **ret_rows, size_t *ret_n)
{
	struct store_policy_entry *rows = NULL;
	struct policy_entry *out;
	size_t n = 0;
	int r;

	if ((r = store_policy_allow_list(p->st, sandbox_id, POLICY_ALLOW_MAX, &rows, &n)) < 0)
		return pl_store_fail(p, r, sandbox_id, false);
	out = calloc(n ? n : 1, sizeof(*out));
	if (!out) {
		free(rows);
		return pl_failf(p, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		memcpy(out[i].pattern, rows[i].pattern, sizeof(out[i].pattern));
		out[i].port = rows[i].port;
		out[i].created_at_us = rows[i].created_at_us;
	}
	free(rows);
	*ret_rows = out;
	*ret_n = n;
	return 0;
}

static int pl_read_hits(struct policy *p, enum store_policy_hits which, const char *sandbox_id,
			struct policy_hit **ret_rows, size_t *ret_n)
{
	size_t max = which == STORE_POLICY_PENDING ? POLICY_PENDING_MAX : POLICY_OBSERVED_MAX;
	struct store_policy_hit *rows = NULL;
	struct policy_hit *out;
	size_t n = 0;
	int r;

	if ((r = store_policy_hit_list(p->st, which, sandbox_id, max, &rows, &n)) < 0)
		return pl_store_fail(p, r, sandbox_id, false);
	out = calloc(n ? n : 1, sizeof(*out));
	if (!out) {
		free(rows);
		return pl_failf(p, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		memcpy(out[i].host, rows[i].host, sizeof(out[i].host));
		out[i].port = rows[i].port;
		out[i].first_seen_us = rows[i].first_seen_us;
		out[i].last_seen_us = rows[i].last_seen_us;
		out[i].count = rows[i].count;
	}
	free(rows);
	*ret_rows = out;
	*ret_n = n;
	return 0;
}

int policy_status(struct policy *p, const char *sandbox_id, struct policy_status *ret_status)
{
	struct policy_status s = { 0 };
	int r;

	if ((r = pl_check_sandbox(p, sandbox_id)) < 0)
		return r;
	if ((r = store_begin_read(p->st)) < 0)
		return pl_store_fail(p, r, sandbox_id, false);
	if ((r = pl_read_mode(p, sandbox_id, &s.mode)) < 0 ||
	    (r = pl_read_allow(p, sandbox_id, &s.allow, &s.n_allow)) < 0 ||
	    (r = pl_read_hits(p, STORE_POLICY_OBSERVED, sandbox_id, &s.observed,
			      &s.n_observed)) < 0 ||
	    (r = pl_read_hits(p, STORE_POLICY_PENDING, sandbox_id, &s.pending,
			      &s.n_pending)) < 0)
		goto out;
	if ((r = store_commit(p->st)) < 0) {
		r = pl_store_fail(p, r, sandbox_id, false);
		goto out;
	}
	*ret_status = s;
	memset(&s, 0, sizeof(s));
out:
	pl_rollback_if(p, r);
	policy_status_clear(&s);
	return r;
}

void policy_status_clear(struct policy_status *s)
{
	if (!s)
		return;
	free(s->allow);
	free(s->observed);
	free(s->pending);
	memset(s, 0, sizeof(*s));
}

/* ---- writing ----------------------------------------------------------- */

/* Remove from pending every (host, port) snap's allowlist now covers.
 * Inside the caller's write transaction. */
static int pl_prune_pending(struct policy *p, const char *sandbox_id,
			    const struct policy_snapshot *snap)
{
	struct policy_hit *hits = NULL;
	size_t n = 0;
	int r;

	if ((r = pl_read_hits(p, STORE_POLICY_PENDING, sandbox_id, &hits, &n)) < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		if (!pl_match(snap, hits[i].host, hits[i].port))
			continue;
		r = store_policy_hit_delete(p->st, STORE_POLICY_PENDING, sandbox_id,
					    hits[i].host, hits[i].port);
		if (r < 0) {
			r = pl_store_fail(p, r, sandbox_id, true);
			break;
		}
		r = 0;
	}
	free(hits);
	return r;
}

int policy_allow(struct policy *p, const char *sandbox_id, const char *pattern, uint16_t port)
{
	struct store_policy_entry e = { .port = port, .created_at_us = pl_now_us() };
	struct policy_snapshot *one = NULL;
	struct policy_entry pe = { .port = port };
	size_t count = 0;
	int r, added = 0;

	if ((r = pl_check_sandbox(p, sandbox_id)) < 0)
		return r;
	if ((r = pl_normalize_pattern(pattern, e.pattern, p->err, sizeof(p->err))) < 0)
		return r;
	memcpy(pe.pattern, e.pattern, sizeof(pe.pattern));
	if ((r = policy_snapshot_new(POLICY_ENFORCE, &pe, 1, &one, p->err, sizeof(p->err))) < 0)
		return r;
	if ((r = store_begin_write(p->st)) < 0) {
		r = pl_store_fail(p, r, sandbox_id, true);
		goto out;
	}
	if ((r = store_policy_allow_count(p->st, sandbox_id, &count)) < 0 ||
	    (r = store_policy_allow_insert(p->st, sandbox_id, &e)) < 0) {
		r = pl_store_fail(p, r, sandbox_id, true);
		goto out;
	}
	added = r;
	if (added && count >= POLICY_ALLOW_MAX) {
		r = pl_failf(p, -ENOSPC, "allowlist of sandbox '%s' is full (%d entries)",
			     sandbox_id, POLICY_ALLOW_MAX);
		goto out;
	}
	if ((r = pl_prune_pending(p, sandbox_id, one)) < 0)
		goto out;
	if ((r = store_commit(p->st)) < 0) {
		r = pl_store_fail(p, r, sandbox_id, true);
		goto out;
	}
	r = added;
out:
	pl_rollback_if(p, r);
	policy_invalidate();
	policy_snapshot_free(one);
	return r;
}

int policy_deny(struct policy *p, const char *sandbox_id, const char *pattern, uint16_t port)
{
	char norm[HOST_PATTERN_BUF];
	int r;

	if ((r = pl_check_sandbox(p, sandbox_id)) < 0)
		return r;
	if ((r = pl_normalize_pattern(pattern, norm, p->err, sizeof(p->err))) < 0)
		return r;
	/* One statement: its own implicit transaction. */
	r = store_policy_allow_delete(p->st, sandbox_id, norm, port == 0 ? -1 : (int)port);
	policy_invalidate();
	if (r < 0)
		return pl_store_fail(p, r, sandbox_id, false);
	if (r == 0) {
		if (port)
			return pl_failf(p, -ENOENT, "pattern '%s' port %u is not on the allowlist",
					norm, (unsigned)port);
		return pl_failf(p, -ENOENT, "pattern '%s' is not on the allowlist", norm);
	}
	return r;
}

static int pl_set_mode(struct policy *p, const char *sandbox_id, enum policy_mode mode)
{
	int r;

	if ((r = pl_check_sandbox(p, sandbox_id)) < 0)
		return r;
	r = store_policy_mode_set(p->st, sandbox_id, mode == POLICY_ENFORCE, pl_now_us());
	policy_invalidate();
	return r < 0 ? pl_store_fail(p, r, sandbox_id, true) : 0;
}

int policy_observe(struct policy *p, const char *sandbox_id)
{
	return pl_set_mode(p, sandbox_id, POLICY_OBSERVE);
}

/*
 * The entries lockdown adds: each observed host, once, as an exact any-port
 * entry, unless an any-port entry of allow already covers it.  Observed rows
 * come sorted by host, so repeats of one host (other ports) are adjacent.
 */
static int pl_lockdown_additions(struct policy *p, const struct policy_snapshot *allow,
				 const struct policy_hit *obs, size_t n_obs,
				 struct policy_entry *add, size_t *ret_n_add)
{
	size_t n_add = 0;

	for (size_t i = 0; i < n_obs; i++) {
		char norm[HOST_PATTERN_BUF];
		const struct policy_entry *e;

		if (i > 0 && strcmp(obs[i].host, obs[i - 1].host) == 0)
			continue;
		/* Re-check what the database gave back. */
		if (host_pattern_normalize_host(obs[i].host, strlen(obs[i].host), norm, NULL,
						0) < 0 || strcmp(norm, obs[i].host) != 0)
			return pl_failf(p, -EUCLEAN, "state.db: policy_observed: a row is malformed");
		/* Port 0 never names a connection: only any-port entries match. */
		e = pl_match(allow, norm, 0);
		if (e && e->port == 0)
			continue;
		memcpy(add[n_add].pattern, norm, sizeof(norm));
		add[n_add].port = 0;
		n_add++;
	}
	*ret_n_add = n_add;
	return 0;
}

int policy_lockdown(struct policy *p, const char *sandbox_id)
{
	struct policy_snapshot *cur = NULL, *final = NULL;
	struct policy_entry *allow = NULL, *all = NULL;
	struct policy_hit *obs = NULL;
	size_t n_allow = 0, n_obs = 0, n_add = 0;
	int64_t now = pl_now_us();
	int r;

	if ((r = pl_check_sandbox(p, sandbox_id)) < 0)
		return r;
	if ((r = store_begin_write(p->st)) < 0)
		return pl_store_fail(p, r, sandbox_id, true);
	if ((r = pl_read_allow(p, sandbox_id, &allow, &n_allow)) < 0 ||
	    (r = pl_read_hits(p, STORE_POLICY_OBSERVED, sandbox_id, &obs, &n_obs)) < 0 ||
	    (r = policy_snapshot_new(POLICY_ENFORCE, allow, n_allow, &cur, p->err,
				     sizeof(p->err))) < 0)
		goto out;
	/* n_allow + n_obs <= 2 * 1024: no overflow. */
	if (!(all = calloc(n_allow + n_obs + 1, sizeof(*all)))) {
		r = pl_failf(p, -ENOMEM, "out of memory");
		goto out;
	}
	memcpy(all, allow, n_allow * sizeof(*all));
	if ((r = pl_lockdown_additions(p, cur, obs, n_obs, all + n_allow, &n_add)) < 0)
		goto out;
	if (n_allow + n_add > POLICY_ALLOW_MAX) {
		r = pl_failf(p, -ENOSPC,
			     "lockdown of sandbox '%s' would make %zu allowlist entries; at most %d",
			     sandbox_id, n_allow + n_add, POLICY_ALLOW_MAX);
		goto out;
	}
	for (size_t i = n_allow; i < n_allow + n_add; i++) {
		struct store_policy_entry e = { .port = 0, .created_at_us = now };

		memcpy(e.pattern, all[i].pattern, sizeof(e.pattern));
		if ((r = store_policy_allow_insert(p->st, sandbox_id, &e)) < 0) {
			r = pl_store_fail(p, r, sandbox_id, true);
			goto out;
		}
	}
	if ((r = store_policy_mode_set(p->st, sandbox_id, true, now)) < 0) {
		r = pl_store_fail(p, r, sandbox_id, true);
		goto out;
	}
	if ((r = policy_snapshot_new(POLICY_ENFORCE, all, n_allow + n_add, &final, p->err,
				     sizeof(p->err))) < 0 ||
	    (r = pl_prune_pending(p, sandbox_id, final)) < 0)
		goto out;
	if ((r = store_commit(p->st)) < 0) {
		r = pl_store_fail(p, r, sandbox_id, true);
		goto out;
	}
	r = (int)n_add;
out:
	pl_rollback_if(p, r);
	policy_invalidate();
	policy_snapshot_free(cur);
	policy_snapshot_free(final);
	free(allow);
	free(all);
	free(obs);
	return r;
}

static int pl_record(struct policy *p, enum store_policy_hits which, const char *sandbox_id,
		     const char *host, uint16_t port, int64_t now_us)
{
	size_t max = which == STORE_POLICY_PENDING ? POLICY_PENDING_MAX : POLICY_OBSERVED_MAX;
	struct store_policy_hit hit = { 0 };
	char norm[HOST_PATTERN_BUF];
	int r;

	if ((r = pl_check_sandbox(p, sandbox_id)) < 0)
		return r;
	if (!host)
		return pl_failf(p, -EINVAL, "no host");
	if (host_pattern_normalize_host(host, strlen(host), norm, p->err, sizeof(p->err)) < 0)
		return -EINVAL;
	if (port == 0)
		return pl_failf(p, -EINVAL, "host '%s': port 0 is not a destination", norm);
	hit.port = port;
	hit.first_seen_us = hit.last_seen_us = now_us;
	hit.count = 1;
	memcpy(hit.host, norm, sizeof(hit.host));
	r = store_policy_hit_record(p->st, which, sandbox_id, &hit, max);
	if (r == -ENOSPC)
		return pl_failf(p, r, "%s list of sandbox '%s' is full (%zu hosts); '%s' not recorded",
				which == STORE_POLICY_PENDING ? "pending" : "observed", sandbox_id,
				max, norm);
	return r < 0 ? pl_store_fail(p, r, sandbox_id, true) : 0;
}

int policy_record_observed_batch(struct policy *p, const char *sandbox_id,
				 const struct policy_hit *hits, size_t n)
{
	size_t dropped = 0;
	int r;

	if ((r = pl_check_sandbox(p, sandbox_id)) < 0)
		return r;
	if (n > 0 && !hits)
		return pl_failf(p, -EINVAL, "no hits");
	for (size_t i = 0; i < n; i++) {
		char norm[HOST_PATTERN_BUF];

		if (hits[i].port == 0 || hits[i].count < 1 ||
		    hits[i].first_seen_us > hits[i].last_seen_us ||
		    host_pattern_normalize_host(hits[i].host, strnlen(hits[i].host,
				sizeof(hits[i].host)), norm, NULL, 0) < 0 ||
		    strcmp(norm, hits[i].host) != 0)
			return pl_failf(p, -EINVAL, "observed hit %zu of sandbox '%s' is malformed",
					i, sandbox_id);
	}
	if ((r = store_begin_write(p->st)) < 0)
		return pl_store_fail(p, r, sandbox_id, true);
	for (size_t i = 0; i < n; i++) {
		struct store_policy_hit h = {
			.port = hits[i].port,
			.first_seen_us = hits[i].first_seen_us,
			.last_seen_us = hits[i].last_seen_us,
			.count = hits[i].count,
		};

		memcpy(h.host, hits[i].host, sizeof(h.host));
		r = store_policy_hit_record(p->st, STORE_POLICY_OBSERVED, sandbox_id, &h,
					    POLICY_OBSERVED_MAX);
		if (r == -ENOSPC) {
			dropped++; /* the statement changed nothing: go on */
			continue;
		}
		if (r < 0) {
			r = pl_store_fail(p, r, sandbox_id, true);
			goto out;
		}
	}
	if ((r = store_commit(p->st)) < 0) {
		r = pl_store_fail(p, r, sandbox_id, true);
		goto out;
	}
	if (dropped)
		pl_failf(p, 0, "observed list of sandbox '%s' is full (%d hosts); %zu new hosts not recorded",
			 sandbox_id, POLICY_OBSERVED_MAX, dropped);
	r = (int)dropped;
out:
	pl_rollback_if(p, r);
	return r;
}

int policy_record_observed(struct policy *p, const char *sandbox_id, const char *host,
			   uint16_t port, int64_t now_us)
{
	return pl_record(p, STORE_POLICY_OBSERVED, sandbox_id, host, port, now_us);
}

int policy_record_denied(struct policy *p, const char *sandbox_id, const char *host,
			 uint16_t port, int64_t now_us)
{
	return pl_record(p, STORE_POLICY_PENDING, sandbox_id, host, port, now_us);
}

/* ---- snapshots from the store and templates ---------------------------- */

int policy_snapshot_load(struct policy *p, const char *sandbox_id,
			 struct policy_snapshot **ret_snapshot)
{
	struct policy_template t = { 0 };
	int r;

	if ((r = policy_export(p, sandbox_id, &t)) < 0)
		return r;
	r = policy_snapshot_new(t.mode, t.allow, t.n_allow, ret_snapshot, p->err,
				sizeof(p->err));
	if (r == -EINVAL)
		r = pl_failf(p, -EUCLEAN, "state.db: policy_allow: a row is malformed");
	policy_template_clear(&t);
	return r;
}

int policy_export(struct policy *p, const char *sandbox_id, struct policy_template *ret_template)
{
	struct policy_template t = { 0 };
	int r;

	if ((r = pl_check_sandbox(p, sandbox_id)) < 0)
		return r;
	if ((r = store_begin_read(p->st)) < 0)
		return pl_store_fail(p, r, sandbox_id, false);
	if ((r = pl_read_mode(p, sandbox_id, &t.mode)) < 0 ||
	    (r = pl_read_allow(p, sandbox_id, &t.allow, &t.n_allow)) < 0)
		goto out;
	if ((r = store_commit(p->st)) < 0) {
		r = pl_store_fail(p, r, sandbox_id, false);
		goto out;
	}
	for (size_t i = 0; i < t.n_allow; i++)
		t.allow[i].created_at_us = 0;
	*ret_template = t;
	memset(&t, 0, sizeof(t));
out:
	pl_rollback_if(p, r);
	policy_template_clear(&t);
	return r;
}

int policy_import(struct policy *p, const char *sandbox_id, const struct policy_template *t)
{
	struct policy_snapshot *snap = NULL;
	int64_t now = pl_now_us();
	int r;

	if ((r = pl_check_sandbox(p, sandbox_id)) < 0)
		return r;
	if (!t || (t->n_allow > 0 && !t->allow))
		return pl_failf(p, -EINVAL, "no template");
	/* Validate everything before the first write: the snapshot holds the
	 * normalized entries. */
	if ((r = policy_snapshot_new(t->mode, t->allow, t->n_allow, &snap, p->err,
				     sizeof(p->err))) < 0)
		return r;
	if ((r = store_begin_write(p->st)) < 0) {
		r = pl_store_fail(p, r, sandbox_id, true);
		goto out;
	}
	if ((r = store_policy_mode_set(p->st, sandbox_id, t->mode == POLICY_ENFORCE, now)) < 0 ||
	    (r = store_policy_allow_clear(p->st, sandbox_id)) < 0) {
		r = pl_store_fail(p, r, sandbox_id, true);
		goto out;
	}
	for (size_t i = 0; i < snap->n; i++) {
		struct store_policy_entry e = { .port = snap->entries[i].port, .created_at_us = now };

		memcpy(e.pattern, snap->entries[i].pattern, sizeof(e.pattern));
		if ((r = store_policy_allow_insert(p->st, sandbox_id, &e)) < 0) {
			r = pl_store_fail(p, r, sandbox_id, true);
			goto out;
		}
	}
	if ((r = store_commit(p->st)) < 0)
		r = pl_store_fail(p, r, sandbox_id, true);
out:
	pl_rollback_if(p, r);
	policy_invalidate();
	policy_snapshot_free(snap);
	return r < 0 ? r : 0;
}

void policy_template_clear(struct policy_template *t)
{
	if (!t)
		return;
	free(t->allow);
	memset(t, 0, sizeof(*t));
}
