/*
 * guest_gateway — registry of sandboxes with a transport, the control API's
 * events (worker threads -> loop), env resolution for HelloAck/EnvUpdate and
 * exec requests.  See guest_gateway.h for the contract.
 */
#include "guest_gateway_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dns_synth.h"
#include "env_diff.h"
#include "leaf_mint.h"
#include "log.h"
#include "mitm_ca.h"
#include "sandbox_ca.h"
#include "tenancy.h"

/* ---- events: worker -> loop ---------------------------------------------- */

enum gw_event_kind {
	GW_EV_CREATED,
	GW_EV_DELETED,
	GW_EV_BINDINGS,
	GW_EV_EXEC,
};

struct gw_event {
	struct gw_event *next;
	enum gw_event_kind kind;
	char sandbox_id[TENANCY_OBJECT_ID_LEN + 1];
	char tenant_id[TENANCY_TENANT_ID_MAX + 1];
	struct tenancy_transport transport;
	struct gw_exec_job *job;
};

/*
 * One exec request, shared by the worker that waits and the loop that runs
 * it; the worker owns it.  The loop writes the outcome, then sets done under
 * gw->mu and never touches the job again.
 */
struct gw_exec_job {
	uv_cond_t cond;
	bool done;
	struct guest_exec_request *req;
	char sandbox_id[TENANCY_OBJECT_ID_LEN + 1];
	/* outcome: status 200 with res, or an error status/code/message */
	int status;
	const char *code;
	char message[128];
	struct guest_exec_result res;
	uint8_t *out, *err;
};

/* Loop-side state of an exec sent to a guest; freed in its timer's close. */
struct gw_exec {
	struct gw_exec *next;
	struct gw_conn *c;
	struct gw_exec_job *job;
	uint64_t id;
	uv_timer_t timer;
	uint8_t *out, *err;
	size_t out_len, err_len;
	bool truncated;
};

static void gw_queue_push(struct guest_gateway *gw, struct gw_event *ev)
{
	bool ok;

	uv_mutex_lock(&gw->mu);
	ok = !gw->closed;
	if (ok) {
		*gw->queue_tail = ev;
		gw->queue_tail = &ev->next;
	}
	uv_mutex_unlock(&gw->mu);
	if (ok)
		uv_async_send(&gw->async);
	else
		free(ev);
}

static struct gw_event *gw_event_new(enum gw_event_kind kind, const struct tenancy_sandbox *s,
				     const char *tenant_id)
{
	struct gw_event *ev = calloc(1, sizeof(*ev));

	if (!ev) {
		log_event(LOG_LEVEL_ERROR, "gateway_event_lost", "reason", "out of memory");
		return NULL;
	}
	ev->kind = kind;
	if (s) {
		snprintf(ev->sandbox_id, sizeof(ev->sandbox_id), "%s", s->id);
		snprintf(ev->tenant_id, sizeof(ev->tenant_id), "%s", s->tenant_id);
		ev->transport = s->transport;
	} else if (tenant_id) {
		snprintf(ev->tenant_id, sizeof(ev->tenant_id), "%s", tenant_id);
	}
	return ev;
}

static void gw_on_sandbox_created(void *data, const struct tenancy_sandbox *s)
{
	struct gw_event *ev;

	if (s->transport.kind != TENANCY_TRANSPORT_NONE && (ev = gw_event_new(GW_EV_CREATED, s, NULL)))
		gw_queue_push(data, ev);
}

static void gw_on_sandbox_deleted(void *data, const struct tenancy_sandbox *s)
{
	struct gw_event *ev = gw_event_new(GW_EV_DELETED, s, NULL);

	if (ev)
		gw_queue_push(data, ev);
}

static void gw_on_bindings_changed(void *data, const char *tenant_id)
{
	struct gw_event *ev = gw_event_new(GW_EV_BINDINGS, NULL, tenant_id);

	if (ev)
		gw_queue_push(data, ev);
}

static atomic_uint_fast64_t gw_generations;

/* ---- registry ------------------------------------------------------------ */

struct gw_sandbox *gw_sandbox_find(struct guest_gateway *gw, const char *id)
{
	for (struct gw_sandbox *sb = gw->sandboxes; sb; sb = sb->next)
		if (strcmp(sb->id, id) == 0)
			return sb;
	return NULL;
}

struct gw_sandbox *gw_sandbox_find_cid(struct guest_gateway *gw, uint32_t cid)
{
	for (struct gw_sandbox *sb = gw->sandboxes; sb; sb = sb->next)
		if (sb->transport.kind == TENANCY_TRANSPORT_VSOCK && sb->transport.cid == cid)
			return sb;
	return NULL;
}

static void gw_sandbox_add(struct guest_gateway *gw, const char *id, const char *tenant_id,
			   const struct tenancy_transport *t)
{
	struct gw_sandbox *sb;
	struct log_line l;

	if (gw->shutting_down || t->kind == TENANCY_TRANSPORT_NONE || gw_sandbox_find(gw, id))
		return;
	if (!(sb = calloc(1, sizeof(*sb)))) {
		log_event(LOG_LEVEL_ERROR, "gateway_sandbox_lost", "sandbox", id);
		return;
	}
	sb->dns_wait_tail = &sb->dns_wait_head;
	sb->gw = gw;
	snprintf(sb->id, sizeof(sb->id), "%s", id);
	snprintf(sb->tenant_id, sizeof(sb->tenant_id), "%s", tenant_id);
	sb->transport = *t;
	sb->next = gw->sandboxes;
	gw->sandboxes = sb;
	if (t->kind == TENANCY_TRANSPORT_UDS && gw_listener_uds_start(sb) == 0 &&
	    log_begin(&l, LOG_LEVEL_INFO, "guest_listener_started")) {
		log_str(&l, "sandbox", sb->id);
		log_str(&l, "path", sb->listen_path);
		log_end(&l);
	}
}

void gw_sandbox_release(struct gw_sandbox *sb)
{
	if (!sb->deleted || sb->n_conns > 0 || sb->n_pooled > 0 || sb->listener_open)
		return;
	dns_synth_free(sb->dns);
	leaf_mint_free(sb->lm);
	mitm_ca_free(sb->ca);
	free(sb->env);
	free(sb);
}

static void gw_sandbox_remove(struct guest_gateway *gw, struct gw_sandbox *sb)
{
	for (struct gw_sandbox **p = &gw->sandboxes; *p; p = &(*p)->next)
		if (*p == sb) {
			*p = sb->next;
			break;
		}
	sb->deleted = true;
	gw_listener_uds_stop(sb);
	for (struct gw_conn *c = gw->conns; c; c = c->next)
		if (c->sb == sb)
			gw_conn_close(c, "sandbox deleted");
	egress_http_pool_flush(sb);
	gw_sandbox_release(sb);
}

/* ---- env resolution (worker) --------------------------------------------- */

struct gw_resolve {
	uv_work_t work;
	struct gw_conn *c;
	bool hello;
	char state_dir[4096];
	const struct master_key *key;
	char sandbox_id[TENANCY_OBJECT_ID_LEN + 1];
	/* results */
	int r;
	char err[256];
	struct gw_binding *env;
	size_t n_env;
	char *ca_pem;
};

/*
 * Runs on a worker.  Opens its own store handles: resolution happens on a
 * Hello and on binding changes, rarely enough that a per-call open (a few
 * ms) is simpler than per-thread handles shared with the control server.
 */
static void gw_resolve_work(uv_work_t *w)
{
	struct gw_resolve *q = w->data;
	struct vault_secret_list list = { 0, NULL };
	struct sandbox_ca_public ca = { 0 };
	struct scope_walk_attribution a;
	struct tenancy *t = NULL;
	struct vault *v = NULL;
	struct tenancy_sandbox s;
	int r;

	if ((r = vault_open(q->state_dir, q->key, &v, q->err, sizeof(q->err))) < 0 ||
	    (r = tenancy_open(q->state_dir, q->key, &t, q->err, sizeof(q->err))) < 0)
		goto out;
	if ((r = tenancy_sandbox_get(t, NULL, q->sandbox_id, &s)) < 0) {
		snprintf(q->err, sizeof(q->err), "%s", tenancy_errmsg(t));
		goto out;
	}
	tenancy_sandbox_attribution(&s, &a);
	if ((r = vault_resolve(v, &a, &list)) < 0) {
		snprintf(q->err, sizeof(q->err), "%s", vault_errmsg(v));
		goto out;
	}
	if (q->hello && (r = tenancy_sandbox_ca_public(t, NULL, q->sandbox_id, &ca)) < 0) {
		snprintf(q->err, sizeof(q->err), "%s", tenancy_errmsg(t));
		goto out;
	}
	if (list.n > 0 && !(q->env = calloc(list.n, sizeof(*q->env)))) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < list.n; i++) {
		snprintf(q->env[i].name, sizeof(q->env[i].name), "%s", list.items[i].expose_as_env);
		snprintf(q->env[i].placeholder, sizeof(q->env[i].placeholder), "%s",
			 list.items[i].placeholder);
	}
	q->n_env = list.n;
	if (q->hello) {
		q->ca_pem = ca.cert_pem;
		ca.cert_pem = NULL;
	}
out:
	q->r = r;
	sandbox_ca_public_clear(&ca);
	vault_secret_list_free(&list);
	tenancy_close(t);
	vault_close(v);
}

static int gw_send_hello_ack(struct gw_conn *c, struct gw_resolve *q)
{
	static const uint32_t always[] = GUEST_GATEWAY_LISTEN_PORTS;
	uint32_t ports[sizeof(always) / sizeof(always[0]) + GUEST_GATEWAY_TCP_PORTS_MAX];
	size_t n_ports = 0;
	Miosa__EnvBinding *b = calloc(q->n_env ? q->n_env : 1, sizeof(*b));
	Miosa__EnvBinding **bp = calloc(q->n_env ? q->n_env : 1, sizeof(*bp));
	Miosa__HostToGuest m = MIOSA__HOST_TO_GUEST__INIT;
	Miosa__HelloAck ack = MIOSA__HELLO_ACK__INIT;
	Miosa__Limits lim = MIOSA__LIMITS__INIT;
	int r = -ENOMEM;

	if (!b || !bp)
		goto out;
	for (size_t i = 0; i < q->n_env; i++) {
		miosa__env_binding__init(&b[i]);
		b[i].name = q->env[i].name;
		b[i].placeholder = q->env[i].placeholder;
		bp[i] = &b[i];
	}
	lim.max_connections = GUEST_GATEWAY_CONNS_PER_SANDBOX;
	lim.exec_output_max_bytes = GUEST_EXEC_OUTPUT_MAX;
	lim.max_execs = c->gw->opts.max_execs;
	ack.sandbox_id = c->sb->id;
	ack.n_env = q->n_env;
	ack.env = bp;
	ack.ca_pem = q->ca_pem;
	for (size_t i = 0; i < sizeof(always) / sizeof(always[0]); i++)
		ports[n_ports++] = always[i];
	for (size_t i = 0; i < c->gw->opts.n_tcp_ports; i++)
		ports[n_ports++] = c->gw->opts.tcp_ports[i];
	ack.n_listen_ports = n_ports;
	ack.listen_ports = ports;
	ack.limits = &lim;
	m.msg_case = MIOSA__HOST_TO_GUEST__MSG_HELLO_ACK;
	m.hello_ack = &ack;
	r = gw_conn_send_h2g(c, &m);
out:
	free(b);
	free(bp);
	return r;
}

static int gw_send_env_update(struct gw_conn *c, const struct gw_binding *env, size_t n)
{
	struct gw_sandbox *sb = c->sb;
	struct env_diff_entry *o = calloc(sb->n_env + 1, sizeof(*o));
	struct env_diff_entry *nw = calloc(n + 1, sizeof(*nw));
	size_t *set = calloc(n + 1, sizeof(*set)), *unset = calloc(sb->n_env + 1, sizeof(*unset));
	Miosa__EnvBinding *b = calloc(n + 1, sizeof(*b));
	Miosa__EnvBinding **bp = calloc(n + 1, sizeof(*bp));
	char **un = calloc(sb->n_env + 1, sizeof(*un));
	Miosa__HostToGuest m = MIOSA__HOST_TO_GUEST__INIT;
	Miosa__EnvUpdate u = MIOSA__ENV_UPDATE__INIT;
	size_t n_set, n_unset;
	int r = -ENOMEM;

	if (!o || !nw || !set || !unset || !b || !bp || !un)
		goto out;
	for (size_t i = 0; i < sb->n_env; i++)
		o[i] = (struct env_diff_entry){ sb->env[i].name, sb->env[i].placeholder };
	for (size_t i = 0; i < n; i++)
		nw[i] = (struct env_diff_entry){ env[i].name, env[i].placeholder };
	r = 0;
	if (env_diff(o, sb->n_env, nw, n, set, &n_set, unset, &n_unset) == 0)
		goto out;
	for (size_t i = 0; i < n_set; i++) {
		miosa__env_binding__init(&b[i]);
		b[i].name = (char *)env[set[i]].name;
		b[i].placeholder = (char *)env[set[i]].placeholder;
		bp[i] = &b[i];
	}
	for (size_t i = 0; i < n_unset; i++)
		un[i] = sb->env[unset[i]].name;
	u.n_set = n_set;
	u.set = bp;
	u.n_unset = n_unset;
	u.unset = un;
	m.msg_case = MIOSA__HOST_TO_GUEST__MSG_ENV_UPDATE;
	m.env_update = &u;
	if ((r = gw_conn_send_h2g(c, &m)) == 0) {
		struct log_line l;

		if (log_begin(&l, LOG_LEVEL_INFO, "guest_env_update")) {
			log_str(&l, "sandbox", sb->id);
			log_uint(&l, "set", n_set);
			log_uint(&l, "unset", n_unset);
			log_end(&l);
		}
	}
out:
	free(o);
	free(nw);
	free(set);
	free(unset);
	free(b);
	free(bp);
	free(un);
	return r;
}

static void gw_resolve_done(uv_work_t *w, int status)
{
	struct gw_resolve *q = w->data;
	struct gw_conn *c = q->c;
	struct gw_sandbox *sb = c->sb;
	bool again = false;

	c->resolving = false;
	again = c->resolve_again;
	c->resolve_again = false;
	if (!c->closing && sb->control == c) {
		if (status < 0 || q->r < 0) {
			struct log_line l;

			if (log_begin(&l, LOG_LEVEL_ERROR, "guest_env_resolve_failed")) {
				log_str(&l, "sandbox", sb->id);
				log_str(&l, "reason", status < 0 ? "cancelled" : q->err);
				log_end(&l);
			}
			if (q->hello)
				gw_conn_close(c, "cannot resolve the sandbox's env");
		} else if (q->hello) {
			if (gw_send_hello_ack(c, q) == 0) {
				c->acked = true;
				free(sb->env);
				sb->env = q->env;
				sb->n_env = q->n_env;
				q->env = NULL;
				gw_session_start_ping(c);
				gw_log_conn(c, LOG_LEVEL_INFO, "guest_hello_ack", NULL);
			}
		} else if (gw_send_env_update(c, q->env, q->n_env) == 0) {
			free(sb->env);
			sb->env = q->env;
			sb->n_env = q->n_env;
			q->env = NULL;
		}
		if (again && !c->closing)
			gw_resolve_start(c, false);
	}
	free(q->env);
	free(q->ca_pem);
	free(q);
	gw_conn_unref(c);
}

void gw_resolve_start(struct gw_conn *c, bool hello)
{
	struct gw_resolve *q;
	int r;

	if (c->resolving) {
		c->resolve_again = true;
		return;
	}
	if (!(q = calloc(1, sizeof(*q)))) {
		gw_conn_close(c, "out of memory");
		return;
	}
	q->work.data = q;
	q->c = c;
	q->hello = hello;
	q->key = c->gw->opts.master_key;
	snprintf(q->state_dir, sizeof(q->state_dir), "%s", c->gw->state_dir);
	snprintf(q->sandbox_id, sizeof(q->sandbox_id), "%s", c->sb->id);
	if ((r = uv_queue_work(c->gw->loop, &q->work, gw_resolve_work, gw_resolve_done)) < 0) {
		free(q);
		gw_conn_close(c, "cannot queue work");
		return;
	}
	c->refs++;
	c->resolving = true;
}

/* ---- exec: worker side --------------------------------------------------- */

static int gw_exec_error(int status, const char *code, const char *msg,
			 struct control_response *ret_resp)
{
	return control_response_error(status, code, msg, ret_resp);
}

static int gw_exec_answer(struct gw_exec_job *job, struct control_response *ret_resp)
{
	char *json;
	size_t len;
	int r;

	if (job->status != 200)
		return gw_exec_error(job->status, job->code, job->message, ret_resp);
	job->res.out = job->out;
	job->res.err = job->err;
	if ((r = guest_exec_result_json(&job->res, &json, &len)) < 0)
		return r;
	memset(ret_resp, 0, sizeof(*ret_resp));
	ret_resp->status = 200;
	ret_resp->body = json;
	ret_resp->body_len = len;
	return 0;
}

/* control_api_events.exec: runs on a control API worker and blocks. */
static int gw_on_exec(void *data, const struct tenancy_sandbox *s, const uint8_t *body,
		      size_t body_len, struct control_response *ret_resp)
{
	struct guest_gateway *gw = data;
	char err[GUEST_EXEC_ERR_MAX] = "";
	struct gw_exec_job *job;
	struct gw_event *ev;
	bool busy, closed;
	int r;

	if (!(job = calloc(1, sizeof(*job))))
		return -ENOMEM;
	if ((r = guest_exec_parse(body, body_len, &job->req, err, sizeof(err))) < 0) {
		free(job);
		return r == -EINVAL ? gw_exec_error(400, "invalid_field", err, ret_resp) : r;
	}
	snprintf(job->sandbox_id, sizeof(job->sandbox_id), "%s", s->id);
	if (uv_cond_init(&job->cond) < 0 || !(ev = gw_event_new(GW_EV_EXEC, s, NULL))) {
		guest_exec_request_free(job->req);
		free(job);
		return -ENOMEM;
	}
	ev->job = job;
	uv_mutex_lock(&gw->mu);
	closed = gw->closed;
	busy = gw->execs_running >= gw->opts.max_execs;
	if (!closed && !busy) {
		gw->execs_running++;
		*gw->queue_tail = ev;
		gw->queue_tail = &ev->next;
		ev = NULL;
	}
	uv_mutex_unlock(&gw->mu);
	if (closed || busy) {
		free(ev);
		uv_cond_destroy(&job->cond);
		guest_exec_request_free(job->req);
		free(job);
		return closed ? gw_exec_error(503, "guest_not_connected", "the broker is shutting down",
					      ret_resp)
			      : gw_exec_error(503, "exec_busy", "too many exec requests in flight; "
					      "retry later", ret_resp);
	}
	uv_async_send(&gw->async);
	uv_mutex_lock(&gw->mu);
	while (!job->done)
		uv_cond_wait(&job->cond, &gw->mu);
	gw->execs_running--;
	uv_mutex_unlock(&gw->mu);
	r = gw_exec_answer(job, ret_resp);
	uv_cond_destroy(&job->cond);
	guest_exec_request_free(job->req);
	free(job->out);
	free(job->err);
	free(job);
	return r;
}

/* ---- exec: loop side ----------------------------------------------------- */

/* Hand the outcome to the worker; the job is not ours after this. */
static void gw_job_finish(struct guest_gateway *gw, struct gw_exec_job *job, int status,
			  const char *code, const char *msg)
{
	job->status = status;
	job->code = code;
	snprintf(job->message, sizeof(job->message), "%s", msg ? msg : "");
	uv_mutex_lock(&gw->mu);
	job->done = true;
	uv_cond_signal(&job->cond);
	uv_mutex_unlock(&gw->mu);
}

static void gw_exec_on_timer_closed(uv_handle_t *h)
{
	struct gw_exec *x = h->data;
	struct gw_conn *c = x->c;

	free(x->out);
	free(x->err);
	free(x);
	gw_conn_unref(c);
}

/* Unlink x from its connection, answer its job, free it. */
static void gw_exec_end(struct gw_exec *x, int status, const char *code, const char *msg)
{
	for (struct gw_exec **p = &x->c->execs; *p; p = &(*p)->next)
		if (*p == x) {
			*p = x->next;
			break;
		}
	if (status == 200) {
		x->job->out = x->out;
		x->job->err = x->err;
		x->job->res.out_len = x->out_len;
		x->job->res.err_len = x->err_len;
		x->job->res.truncated = x->truncated;
		x->out = x->err = NULL;
	}
	gw_job_finish(x->c->gw, x->job, status, code, msg);
	x->job = NULL;
	uv_close((uv_handle_t *)&x->timer, gw_exec_on_timer_closed);
}

static void gw_exec_on_timeout(uv_timer_t *t)
{
	struct gw_exec *x = t->data;
	struct log_line l;

	if (log_begin(&l, LOG_LEVEL_WARN, "guest_exec_timeout")) {
		log_str(&l, "sandbox", x->c->sb->id);
		log_uint(&l, "exec_id", x->id);
		log_end(&l);
	}
	gw_exec_end(x, 504, "guest_timeout", "the guest did not finish the command in time");
}

static struct gw_exec *gw_exec_find(struct gw_conn *c, uint64_t id)
{
	for (struct gw_exec *x = c->execs; x; x = x->next)
		if (x->id == id)
			return x;
	return NULL;
}

static void gw_exec_start(struct guest_gateway *gw, struct gw_exec_job *job)
{
	struct gw_sandbox *sb = gw_sandbox_find(gw, job->sandbox_id);
	Miosa__HostToGuest m = MIOSA__HOST_TO_GUEST__INIT;
	struct gw_conn *c = sb ? sb->control : NULL;
	uint64_t deadline;
	struct gw_exec *x;
	int r;

	if (!c || !c->acked || c->closing) {
		gw_job_finish(gw, job, 503, "guest_not_connected",
			      "no guest agent is connected for this sandbox");
		return;
	}
	if (!(x = calloc(1, sizeof(*x)))) {
		gw_job_finish(gw, job, 500, "internal", "out of memory");
		return;
	}
	x->c = c;
	x->job = job;
	x->id = ++c->next_exec_id;
	job->req->msg.exec_id = x->id;
	m.msg_case = MIOSA__HOST_TO_GUEST__MSG_EXEC;
	m.exec = &job->req->msg;
	if ((r = gw_conn_send_h2g(c, &m)) < 0) {
		free(x);
		if (r == -EMSGSIZE || r == -EINVAL)
			gw_job_finish(gw, job, 400, "invalid_field",
				      "the request does not fit in one frame to the guest");
		else
			gw_job_finish(gw, job, 503, "guest_not_connected", "the guest went away");
		return;
	}
	uv_timer_init(gw->loop, &x->timer);
	x->timer.data = x;
	c->refs++;
	x->next = c->execs;
	c->execs = x;
	deadline = (uint64_t)job->req->msg.timeout_ms + GUEST_EXEC_GRACE_MS;
	uv_timer_start(&x->timer, gw_exec_on_timeout, deadline, 0);
}

static void gw_exec_append(struct gw_exec *x, uint8_t **buf, size_t *len, const uint8_t *p,
			   size_t n)
{
	size_t room = GUEST_EXEC_OUTPUT_MAX - (x->out_len + x->err_len);
	uint8_t *nb;

	if (n > room) {
		n = room;
		x->truncated = true;
	}
	if (n == 0)
		return;
	if (!(nb = realloc(*buf, *len + n))) {
		x->truncated = true;
		return;
	}
	memcpy(nb + *len, p, n);
	*buf = nb;
	*len += n;
}

void gw_exec_on_output(struct gw_conn *c, const Miosa__ExecOutput *o)
{
	struct gw_exec *x = gw_exec_find(c, o->exec_id);

	if (!x) /* late output of an exec we gave up on */
		return;
	if (o->stream == MIOSA__EXEC_OUTPUT__STREAM__STREAM_STDOUT)
		gw_exec_append(x, &x->out, &x->out_len, o->data.data, o->data.len);
	else
		gw_exec_append(x, &x->err, &x->err_len, o->data.data, o->data.len);
}

void gw_exec_on_exit(struct gw_conn *c, const Miosa__ExecExit *e)
{
	struct gw_exec *x = gw_exec_find(c, e->exec_id);
	struct guest_exec_result *res;

	if (!x)
		return;
	res = &x->job->res;
	switch (e->outcome_case) {
	case MIOSA__EXEC_EXIT__OUTCOME_EXIT_CODE:
		res->outcome = GUEST_EXEC_EXITED;
		res->value = e->exit_code;
		break;
	case MIOSA__EXEC_EXIT__OUTCOME_SIGNAL:
		res->outcome = GUEST_EXEC_SIGNALED;
		res->value = e->signal;
		break;
	case MIOSA__EXEC_EXIT__OUTCOME_TIMED_OUT:
		res->outcome = GUEST_EXEC_TIMED_OUT;
		break;
	default: /* wire.c guarantees one outcome */
		res->outcome = GUEST_EXEC_START_ERROR;
		snprintf(res->start_error, sizeof(res->start_error), "%s",
			 e->start_error ? e->start_error : "");
		break;
	}
	gw_exec_end(x, 200, NULL, NULL);
}

void gw_exec_fail_conn(struct gw_conn *c)
{
	while (c->execs)
		gw_exec_end(c->execs, 503, "guest_not_connected",
			    "the guest's control stream closed before the command ended");
}

/* ---- the loop's end of the queue ----------------------------------------- */

static void gw_handle_event(struct guest_gateway *gw, struct gw_event *ev)
{
	struct gw_sandbox *sb;

	switch (ev->kind) {
	case GW_EV_CREATED:
		gw_sandbox_add(gw, ev->sandbox_id, ev->tenant_id, &ev->transport);
		break;
	case GW_EV_DELETED:
		if ((sb = gw_sandbox_find(gw, ev->sandbox_id)))
			gw_sandbox_remove(gw, sb);
		break;
	case GW_EV_BINDINGS:
		for (sb = gw->sandboxes; sb; sb = sb->next)
			if (strcmp(sb->tenant_id, ev->tenant_id) == 0 && sb->control &&
			    sb->control->acked && !sb->control->closing)
				gw_resolve_start(sb->control, false);
		break;
	case GW_EV_EXEC:
		if (gw->shutting_down)
			gw_job_finish(gw, ev->job, 503, "guest_not_connected",
				      "the broker is shutting down");
		else
			gw_exec_start(gw, ev->job);
		break;
	}
	free(ev);
}

static void gw_drain(struct guest_gateway *gw)
{
	struct gw_event *ev;

	uv_mutex_lock(&gw->mu);
	ev = gw->queue_head;
	gw->queue_head = NULL;
	gw->queue_tail = &gw->queue_head;
	uv_mutex_unlock(&gw->mu);
	while (ev) {
		struct gw_event *next = ev->next;

		gw_handle_event(gw, ev);
		ev = next;
	}
}

static void gw_on_async(uv_async_t *a)
{
	gw_drain(a->data);
}

/* ---- start / shutdown ---------------------------------------------------- */

/* Startup (loop not running yet): a listener for every sandbox with a transport. */
static int gw_load_sandboxes(struct guest_gateway *gw, char *err, size_t err_size)
{
	struct tenancy_sandbox *rows = NULL;
	struct tenancy *t = NULL;
	size_t n = 0;
	int r;

	if ((r = tenancy_open(gw->state_dir, gw->opts.master_key, &t, err, err_size)) < 0)
		return r;
	if ((r = tenancy_sandbox_list(t, NULL, &rows, &n)) < 0)
		snprintf(err, err_size, "cannot list sandboxes: %s", tenancy_errmsg(t));
	tenancy_close(t);
	for (size_t i = 0; r == 0 && i < n; i++)
		gw_sandbox_add(gw, rows[i].id, rows[i].tenant_id, &rows[i].transport);
	free(rows);
	return r;
}

int guest_gateway_start(uv_loop_t *loop, const struct guest_gateway_options *opts,
			struct guest_gateway **ret_gw, char *err, size_t err_size)
{
	struct guest_gateway *gw = calloc(1, sizeof(*gw));
	int r;

	if (!gw || !(gw->state_dir = strdup(opts->state_dir))) {
		free(gw);
		snprintf(err, err_size, "out of memory");
		return -ENOMEM;
	}
	gw->loop = loop;
	gw->opts = *opts;
	if (gw->opts.max_execs == 0)
		gw->opts.max_execs = 1;
	if (gw->opts.connect_timeout_ms == 0)
		gw->opts.connect_timeout_ms = GUEST_GATEWAY_CONNECT_TIMEOUT_MS;
	if (gw->opts.response_timeout_ms == 0)
		gw->opts.response_timeout_ms = 60000;
	if (gw->opts.upstream_idle_timeout_ms == 0)
		gw->opts.upstream_idle_timeout_ms = 30000;
	if (gw->opts.n_tcp_ports > GUEST_GATEWAY_TCP_PORTS_MAX)
		gw->opts.n_tcp_ports = GUEST_GATEWAY_TCP_PORTS_MAX;
	gw->vsock_fd = -1;
	gw->queue_tail = &gw->queue_head;
	gw->events = (struct control_api_events){
		.sandbox_created = gw_on_sandbox_created,
		.sandbox_deleted = gw_on_sandbox_deleted,
		.bindings_changed = gw_on_bindings_changed,
		.exec = gw_on_exec,
		.data = gw,
	};
	if ((r = uv_mutex_init(&gw->mu)) < 0) {
		free(gw->state_dir);
		free(gw);
		snprintf(err, err_size, "cannot create a mutex: %s", uv_strerror(r));
		return r;
	}
	if ((r = uv_mutex_init(&gw->ctx_lock)) < 0) {
		uv_mutex_destroy(&gw->mu);
		free(gw->state_dir);
		free(gw);
		snprintf(err, err_size, "cannot create a mutex: %s", uv_strerror(r));
		return r;
	}
	/* Tags this gateway's per-thread store handles (egress_verdict.c). */
	gw->generation = atomic_fetch_add(&gw_generations, 1) + 1;
	if ((r = uv_async_init(loop, &gw->async, gw_on_async)) < 0) {
		snprintf(err, err_size, "cannot create an async handle: %s", uv_strerror(r));
		goto fail;
	}
	gw->async.data = gw;
	gw->async_open = true;
	if ((r = gw_load_sandboxes(gw, err, err_size)) < 0)
		goto fail;
	if (opts->vsock_listen && (r = gw_listener_vsock_start(gw, err, err_size)) < 0)
		goto fail;
	*ret_gw = gw;
	return 0;
fail:
	/* Handles may be open: the caller runs the loop once, then frees. */
	*ret_gw = gw;
	guest_gateway_shutdown(gw);
	return r;
}

const struct control_api_events *guest_gateway_events(struct guest_gateway *gw)
{
	return &gw->events;
}

static void gw_on_async_closed(uv_handle_t *h)
{
	(void)h;
}

void guest_gateway_shutdown(struct guest_gateway *gw)
{
	if (!gw || gw->shutting_down)
		return;
	uv_mutex_lock(&gw->mu);
	gw->closed = true;       /* no new events or execs from workers */
	uv_mutex_unlock(&gw->mu);
	gw->shutting_down = true;
	gw_drain(gw);            /* answers queued execs 503, applies deletions */
	while (gw->sandboxes)
		gw_sandbox_remove(gw, gw->sandboxes);
	for (struct gw_conn *c = gw->conns; c; c = c->next)
		gw_conn_close(c, "broker shutting down");
	gw_listener_vsock_stop(gw);
	if (gw->async_open) {
		gw->async_open = false;
		uv_close((uv_handle_t *)&gw->async, gw_on_async_closed);
	}
}

void guest_gateway_free(struct guest_gateway *gw)
{
	if (!gw)
		return;
	gw_worker_ctx_close_all(gw);
	uv_mutex_destroy(&gw->ctx_lock);
	uv_mutex_destroy(&gw->mu);
	free(gw->state_dir);
	free(gw);
}
