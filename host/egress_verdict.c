/*
 * egress_verdict — the worker-thread half of the egress data path: for one
 * HTTP request (REQUEST_HEAD) or one TCP connection, on a fresh policy
 * snapshot (so allow / lockdown / observe take effect on the next request,
 * also on an open keep-alive connection):
 *
 *   policy_decide ─deny (enforce)─► policy_record_denied, deny row written
 *        │allow
 *        ▼
 *   policy_record_observed → swap_request_head (HTTP) → allow row written
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
#include "swap.h"
#include "tenancy.h"

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
	    (r = policy_open(gw->state_dir, &ctx->policy, err, sizeof(err))) < 0) {
		log_event(LOG_LEVEL_ERROR, "egress_worker_open_failed", "reason", err);
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

void egress_verdict_run(struct guest_gateway *gw, struct gw_verdict *v)
{
	struct policy_snapshot *snap = NULL;
	struct scope_walk_attribution a;
	struct gw_worker_ctx *ctx;
	struct tenancy_sandbox s;
	int64_t now = gw_now_us();
	int r;

	v->allow = false;
	v->audit_failed = false;
	if (!(v->row = calloc(1, sizeof(*v->row)))) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = gw_worker_ctx_get(gw, &ctx)) < 0)
		goto out;
	if ((r = tenancy_sandbox_get(ctx->tenancy, NULL, v->sandbox_id, &s)) < 0 ||
	    (r = policy_snapshot_load(ctx->policy, v->sandbox_id, &snap)) < 0)
		goto out;
	v->allow = policy_decide(snap, v->host, strlen(v->host), v->port, v->rule,
				 sizeof(v->rule)) == POLICY_ALLOW;
	gw_row_init(v->row, &s, v);
	if (!v->allow) {
		gw_verdict_log_tally(v->sandbox_id, v->host,
				     policy_record_denied(ctx->policy, v->sandbox_id, v->host,
							  v->port, now));
		v->row->action = STORE_AUDIT_DENY;
		v->row->status = v->head ? 403 : 0;
		snprintf(v->row->reason, sizeof(v->row->reason), "host-not-allowed");
		/* The guest gets its 403 / refusal whether or not this row lands:
		 * nothing goes out either way. */
		if (gw_row_write(gw, v->row, v->head ? AUDIT_SUBMIT_AWAIT_COMPLETION : 0) < 0)
			v->audit_failed = true;
		r = 0;
		goto out;
	}
	gw_verdict_log_tally(v->sandbox_id, v->host,
			     policy_record_observed(ctx->policy, v->sandbox_id, v->host, v->port,
						    now));
	v->row->action = STORE_AUDIT_ALLOW;
	if (v->head) {
		if (!(v->swap = calloc(1, sizeof(*v->swap)))) {
			r = -ENOMEM;
			goto out;
		}
		tenancy_sandbox_attribution(&s, &a);
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
	}
	if (v->audit_allow_now && gw_row_write(gw, v->row, AUDIT_SUBMIT_AWAIT_COMPLETION) < 0)
		v->audit_failed = true;
	r = 0;
out:
	policy_snapshot_free(snap);
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
