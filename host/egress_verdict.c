/*
 * egress_verdict — the worker-thread half of the egress data path: for one
 * HTTP request (REQUEST_HEAD) or one TCP connection, on a current policy
 * snapshot (so allow / lockdown / observe take effect on the next request,
 * also on an open keep-alive connection):
 *
 *   policy_decide ─deny (enforce)─► policy_record_denied, deny row written
 *        │allow
 *        ▼
 *   observed tally → swap_request_head (HTTP) → allow row written
 *
 * What the data path reads, and from where (DESIGN.md "Scale-out": never
 * block the data path on the database where a cache stays correct):
 *   - the sandbox row and its policy snapshot: from this worker thread's
 *     cache (gw_worker_ctx.cache), valid while policy_generation() is the
 *     value read before they were loaded.  Every policy write and every
 *     sandbox deletion bumps it before the control API answers (policy.h),
 *     so a change still takes effect on the very next request.
 *   - placeholders (swap): from the vault on every request, uncached:
 *     rotation (M5) and unbinding must hold on the very next request, and
 *     a rotation has no hook here yet.
 *   - observed hosts: counted in memory (policy_tally.h), written in
 *     batches by the tally's thread; the control API flushes before it
 *     reads them.  Without a tally (opts.tally NULL) or when its table is
 *     full, the worker writes the observation itself.
 *
 * When the row is written (fail closed, B5): at the verdict, BEFORE the
 * request is forwarded or the connection opened, with audit_submit_wait()
 * (the worker waits for the writer's commit).  A request whose row was not
 * committed is not forwarded (503 MIOSA-Audit-Error), a connection not
 * opened (refused "audit-unavailable").  The row carries the verdict
 * (action, rules, swapped/flagged names, host, method, redacted path, ids;
 * a deny row its 403); what happened next (status, bytes, duration) comes
 * in a completion the loop submits without waiting when the exchange or
 * connection ends (egress_verdict_submit_completion(), audit.h
 * "Completions").  A denied TCP connection ends at once: no completion.
 *
 * Store handles: one (vault, tenancy, policy) triple per threadpool thread,
 * opened on its first job and kept (like control_server): opening costs
 * three SQLite opens plus key derivation per job otherwise.  They are
 * tagged with the gateway's generation and closed by
 * guest_gateway_free().
 */
#include "guest_gateway_internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "audit.h"
#include "log.h"
#include "policy.h"
#include "policy_tally.h"
#include "store.h"
#include "swap.h"
#include "tenancy.h"

static void gw_cache_clear(struct gw_worker_ctx *ctx)
{
	for (size_t i = 0; i < GW_CACHE_SLOTS; i++) {
		policy_snapshot_free(ctx->cache[i].snap);
		memset(&ctx->cache[i], 0, sizeof(ctx->cache[i]));
	}
}

/*
 * The sandbox row and policy snapshot for id, from this thread's cache or
 * loaded.  Both stay owned by the cache and valid until this thread's next
 * call.  The generation is read BEFORE loading: a write that commits
 * during the load bumps it, so that entry is reloaded next time.
 */
static int gw_cache_get(struct gw_worker_ctx *ctx, const char *id,
			const struct tenancy_sandbox **ret_sandbox,
			const struct policy_snapshot **ret_snap)
{
	uint64_t gen = policy_generation();
	struct gw_cache_entry *e = NULL;
	struct policy_snapshot *snap = NULL;
	struct tenancy_sandbox s;
	int r;

	for (size_t i = 0; i < GW_CACHE_SLOTS; i++) {
		struct gw_cache_entry *c = &ctx->cache[i];

		if (c->generation != 0 && strcmp(c->sandbox.id, id) == 0) {
			e = c;
			break;
		}
		/* Else the least recently used slot (an empty one first). */
		if (!e || c->last_used < e->last_used)
			e = c;
	}
	if (e->generation != gen || strcmp(e->sandbox.id, id) != 0) {
		if ((r = tenancy_sandbox_get(ctx->tenancy, NULL, id, &s)) < 0 ||
		    (r = policy_snapshot_load(ctx->policy, id, &snap)) < 0)
			return r;
		policy_snapshot_free(e->snap);
		e->sandbox = s;
		e->snap = snap;
		e->generation = gen;
	}
	e->last_used = ++ctx->cache_tick;
	*ret_sandbox = &e->sandbox;
	*ret_snap = e->snap;
	return 0;
}

static _Thread_local struct {
	uint64_t generation;
	struct gw_worker_ctx *ctx;
} gw_tls;

int gw_worker_ctx_get(struct guest_gateway *gw, struct gw_worker_ctx **ret_ctx)
{
	char err[256] = "";
	struct gw_worker_ctx *ctx;
	int r;

	if (gw_tls.generation == gw->generation && gw_tls.ctx) {
		*ret_ctx = gw_tls.ctx;
		return 0;
	}
	if (!(ctx = calloc(1, sizeof(*ctx))))
		return -ENOMEM;
	if ((r = vault_open(gw->state_dir, gw->opts.master_key, &ctx->vault, err, sizeof(err))) < 0 ||
	    (r = tenancy_open(gw->state_dir, gw->opts.master_key, &ctx->tenancy, err,
			      sizeof(err))) < 0 ||
	    (r = policy_open(gw->state_dir, &ctx->policy, err, sizeof(err))) < 0 ||
	    (r = store_open(gw->state_dir, &ctx->st, err, sizeof(err))) < 0) {
		log_event(LOG_LEVEL_ERROR, "egress_worker_open_failed", "reason", err);
		gw_cache_clear(ctx);
		store_close(ctx->st);
		policy_close(ctx->policy);
		tenancy_close(ctx->tenancy);
		vault_close(ctx->vault);
		free(ctx);
		return r;
	}
	uv_mutex_lock(&gw->ctx_lock);
	ctx->next = gw->ctxs;
	gw->ctxs = ctx;
	uv_mutex_unlock(&gw->ctx_lock);
	gw_tls.generation = gw->generation;
	gw_tls.ctx = ctx;
	*ret_ctx = ctx;
	return 0;
}

void gw_worker_ctx_close_all(struct guest_gateway *gw)
{
	struct gw_worker_ctx *ctx, *next;

	uv_mutex_lock(&gw->ctx_lock);
	ctx = gw->ctxs;
	gw->ctxs = NULL;
	uv_mutex_unlock(&gw->ctx_lock);
	for (; ctx; ctx = next) {
		next = ctx->next;
		gw_cache_clear(ctx);
		store_close(ctx->st);
		policy_close(ctx->policy);
		tenancy_close(ctx->tenancy);
		vault_close(ctx->vault);
		free(ctx);
	}
}

static int64_t gw_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void gw_row_add(char list[][STORE_NAME_MAX + 1], size_t *n, const char *name)
{
	if (*n < STORE_AUDIT_LIST_MAX && name[0] && !strchr(name, ','))
		snprintf(list[(*n)++], STORE_NAME_MAX + 1, "%s", name);
}

/* The row's fixed part: who, where, what. */
static void gw_row_init(struct store_audit_row *row, const struct tenancy_sandbox *s,
			const struct gw_verdict *v)
{
	const struct http1_head *h = v->head;

	row->time_us = gw_now_us();
	snprintf(row->tenant_id, sizeof(row->tenant_id), "%s", s->tenant_id);
	snprintf(row->sandbox_id, sizeof(row->sandbox_id), "%s", s->id);
	snprintf(row->external_user_id, sizeof(row->external_user_id), "%s", s->external_user_id);
	snprintf(row->external_workspace_id, sizeof(row->external_workspace_id), "%s",
		 s->external_workspace_id);
	snprintf(row->host, sizeof(row->host), "%s", v->host);
	row->port = v->port;
	row->scheme = (enum store_audit_scheme)v->scheme;
	if (h) {
		/* The guest's request-target: placeholders, never values;
		 * audit_submit() redacts its query. */
		size_t ml = h->method_name.len < STORE_AUDIT_METHOD_MAX ? h->method_name.len
									: STORE_AUDIT_METHOD_MAX;
		size_t tl = h->target.len < STORE_AUDIT_PATH_MAX ? h->target.len : STORE_AUDIT_PATH_MAX;

		memcpy(row->method, v->head_bytes + h->method_name.off, ml);
		row->method[ml] = '\0';
		memcpy(row->path, v->head_bytes + h->target.off, tl);
		row->path[tl] = '\0';
	}
	/* An allowlist rule longer than a row's rule field is cut. */
	snprintf(row->rules[0], sizeof(row->rules[0]), "%.*s", STORE_AUDIT_RULE_MAX, v->rule);
	row->n_rules = v->rule[0] ? 1 : 0;
}

/* Write row and wait for its commit; row->id is set on success. */
static int gw_row_write(struct guest_gateway *gw, struct store_audit_row *row, unsigned flags)
{
	int64_t id;
	int r;

	if (!gw->opts.audit)
		return -ENOTCONN;
	if ((r = audit_submit_wait_flags(gw->opts.audit, row, flags, &id)) == 0)
		row->id = id;
	else {
		struct log_line l;

		if (log_begin(&l, LOG_LEVEL_ERROR, "audit_write_failed")) {
			log_str(&l, "sandbox", row->sandbox_id);
			log_str(&l, "host", row->host);
			log_errno(&l, r);
			log_end(&l);
		}
	}
	return r;
}

int egress_verdict_write_row(struct guest_gateway *gw, struct store_audit_row *row)
{
	return gw_row_write(gw, row, 0);
}

void egress_verdict_submit_completion(struct guest_gateway *gw, const struct store_audit_row *row,
				      uint16_t status, uint64_t bytes_up, uint64_t bytes_down,
				      int64_t duration_us)
{
	struct store_audit_completion comp = {
		.request_id = row->id,
		.time_us = gw_now_us(),
		.status = status,
		.bytes_up = bytes_up > INT64_MAX ? INT64_MAX : (int64_t)bytes_up,
		.bytes_down = bytes_down > INT64_MAX ? INT64_MAX : (int64_t)bytes_down,
		.duration_us = duration_us < 0 ? 0 : duration_us,
	};
	int r;

	/* No wait: the exchange is over and the guest already has its answer;
	 * a completion lost here leaves the row with status unknown. */
	r = gw->opts.audit ? audit_complete(gw->opts.audit, &comp, NULL, NULL) : -ENOTCONN;
	if (r < 0) {
		struct log_line l;

		if (log_begin(&l, LOG_LEVEL_ERROR, "audit_completion_failed")) {
			log_str(&l, "sandbox", row->sandbox_id);
			log_str(&l, "host", row->host);
			log_int(&l, "row", row->id);
			log_errno(&l, r);
			log_str(&l, "reason", "the row keeps status unknown, ignoring");
			log_end(&l);
		}
	}
}

/* The observed / pending tallies are advisory: a failure never changes the
 * verdict (a full tally is expected, policy.h). */
static void gw_verdict_log_tally(const char *sandbox, const char *host, int r)
{
	struct log_line l;

	if (r >= 0 || r == -ENOSPC || !log_begin(&l, LOG_LEVEL_WARN, "policy_tally_failed"))
		return;
	log_str(&l, "sandbox", sandbox);
	log_str(&l, "host", host);
	log_errno(&l, r);
	log_str(&l, "reason", "cannot count the host, ignoring");
	log_end(&l);
}

/*
 * Per-phase timing of one verdict (µs, CLOCK_MONOTONIC), logged as one
 * debug line "egress_verdict_timing": off by default, and with the level
 * above debug it costs one log_enabled() check per verdict.  What it showed
 * is in docs/performance.md (MIOSA_BENCH_TIMING=1 bench/egress_bench.sh).
 */
enum gw_phase {
	GW_PH_SANDBOX,   /* worker ctx + sandbox row and snapshot (cache) */
	GW_PH_POLICY,    /* policy_decide */
	GW_PH_TALLY,     /* observed / pending tally */
	GW_PH_SWAP,      /* placeholder resolution and head rewrite */
	GW_PH_AUDIT,     /* audit_submit_wait: the row committed */
	GW_PH__COUNT
};

static const char *const gw_phase_name[GW_PH__COUNT] = {
	"cache_us", "policy_us", "tally_us", "swap_us", "audit_us",
};

struct gw_timing {
	bool on;
	int64_t last;
	int64_t us[GW_PH__COUNT];
};

static int64_t gw_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void gw_timing_start(struct gw_timing *t)
{
	memset(t, 0, sizeof(*t));
	if ((t->on = log_enabled(LOG_LEVEL_DEBUG)))
		t->last = gw_mono_us();
}

static void gw_timing_mark(struct gw_timing *t, enum gw_phase ph)
{
	int64_t now;

	if (!t->on)
		return;
	now = gw_mono_us();
	t->us[ph] += now - t->last;
	t->last = now;
}

static void gw_timing_log(const struct gw_timing *t, const struct gw_verdict *v)
{
	struct log_line l;
	int64_t total = 0;

	if (!t->on || !log_begin(&l, LOG_LEVEL_DEBUG, "egress_verdict_timing"))
		return;
	log_str(&l, "sandbox", v->sandbox_id);
	log_str(&l, "host", v->host);
	for (size_t i = 0; i < GW_PH__COUNT; i++) {
		log_int(&l, gw_phase_name[i], t->us[i]);
		total += t->us[i];
	}
	log_int(&l, "total_us", total);
	log_end(&l);
}

/* Count an allowed connection: in memory when there is a tally with room,
 * else in the store now. */
static int gw_record_observed(struct guest_gateway *gw, struct gw_worker_ctx *ctx,
			      const struct gw_verdict *v, int64_t now)
{
	int r = -ENOSPC;

	if (gw->opts.tally)
		r = policy_tally_record(gw->opts.tally, v->sandbox_id, v->host, v->port, now);
	if (r == -ENOSPC)
		r = policy_record_observed(ctx->policy, v->sandbox_id, v->host, v->port, now);
	return r;
}

void egress_verdict_run(struct guest_gateway *gw, struct gw_verdict *v)
{
	const struct policy_snapshot *snap = NULL;
	const struct tenancy_sandbox *s = NULL;
	struct gw_timing t;
	struct scope_walk_attribution a;
	struct gw_worker_ctx *ctx;
	int64_t now = gw_now_us();
	int r;

	gw_timing_start(&t);
	v->allow = false;
	v->audit_failed = false;
	if (!(v->row = calloc(1, sizeof(*v->row)))) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = gw_worker_ctx_get(gw, &ctx)) < 0)
		goto out;
	if ((r = gw_cache_get(ctx, v->sandbox_id, &s, &snap)) < 0)
		goto out;
	gw_timing_mark(&t, GW_PH_SANDBOX);
	v->allow = policy_decide(snap, v->host, strlen(v->host), v->port, v->rule,
				 sizeof(v->rule)) == POLICY_ALLOW;
	gw_timing_mark(&t, GW_PH_POLICY);
	gw_row_init(v->row, s, v);
	if (!v->allow) {
		gw_verdict_log_tally(v->sandbox_id, v->host,
				     policy_record_denied(ctx->policy, v->sandbox_id, v->host,
							  v->port, now));
		gw_timing_mark(&t, GW_PH_TALLY);
		v->row->action = STORE_AUDIT_DENY;
		v->row->status = v->head ? 403 : 0;
		snprintf(v->row->reason, sizeof(v->row->reason), "host-not-allowed");
		/* The guest gets its 403 / refusal whether or not this row lands:
		 * nothing goes out either way. */
		if (gw_row_write(gw, v->row, v->head ? AUDIT_SUBMIT_AWAIT_COMPLETION : 0) < 0)
			v->audit_failed = true;
		gw_timing_mark(&t, GW_PH_AUDIT);
		r = 0;
		goto out;
	}
	gw_verdict_log_tally(v->sandbox_id, v->host, gw_record_observed(gw, ctx, v, now));
	gw_timing_mark(&t, GW_PH_TALLY);
	v->row->action = STORE_AUDIT_ALLOW;
	if (v->head) {
		if (!(v->swap = calloc(1, sizeof(*v->swap)))) {
			r = -ENOMEM;
			goto out;
		}
		tenancy_sandbox_attribution(s, &a);
		if ((r = swap_request_head(ctx->vault, &a, v->head, v->head_bytes, v->host,
					   v->scheme == STORE_AUDIT_HTTPS, v->swap)) < 0) {
			free(v->swap);
			v->swap = NULL;
			goto out;
		}
		for (size_t i = 0; i < v->swap->swapped.n; i++)
			gw_row_add(v->row->swapped, &v->row->n_swapped, v->swap->swapped.name[i]);
		for (size_t i = 0; i < v->swap->flagged.n; i++)
			gw_row_add(v->row->flagged, &v->row->n_flagged, v->swap->flagged.name[i]);
		gw_timing_mark(&t, GW_PH_SWAP);
	}
	if (v->audit_allow_now && gw_row_write(gw, v->row, AUDIT_SUBMIT_AWAIT_COMPLETION) < 0)
		v->audit_failed = true;
	gw_timing_mark(&t, GW_PH_AUDIT);
	r = 0;
out:
	gw_timing_log(&t, v);
	v->r = r;
}

void egress_verdict_clear(struct gw_verdict *v)
{
	if (v->swap) {
		swap_result_release(v->swap);
		free(v->swap);
		v->swap = NULL;
	}
	free(v->row);
	v->row = NULL;
}
