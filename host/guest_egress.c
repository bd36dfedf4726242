/*
 * guest_egress — egress streams: EgressOpen -> reverse map -> OpenResult,
 * then what the stream becomes:
 *
 *   ports 80, 443      the HTTP(S) proxy (egress_http.c), policy per request;
 *   any other port     policy at open (enforce + not allowed: OpenResult
 *                      REFUSED "host-not-allowed", audited, pending), then
 *                      the guest's first bytes are sniffed (tls_sniff.h): a
 *                      TLS ClientHello offering http/1.1 or no ALPN goes to
 *                      the HTTPS proxy (no connection row: each request gets
 *                      its own); anything else (not TLS, another ALPN, a
 *                      malformed hello, or nothing within
 *                      GUEST_GATEWAY_SNIFF_TIMEOUT_MS: the server speaks
 *                      first) is spliced byte for byte by the raw relay, with
 *                      one audit row (scheme tcp, no path) at close.
 *
 * The raw relay: the mapped name (or the target of the first matching
 * --connect-to rule) is resolved with uv_getaddrinfo (a worker thread); the
 * first address that upstream_addr.h allows is used, except that an
 * operator-set --connect-to target is exempt from that check.  Bytes are
 * spliced both ways with one write in flight per direction: a side is not
 * read again until the previous chunk was written to the other
 * (back-pressure, at most GW_RELAY_CHUNK bytes buffered per direction).
 * EOF on one side becomes a shutdown(SHUT_WR) of the other (half-close);
 * the stream closes when both directions ended or on any error.  A failed
 * resolution or connection closes the guest stream (it is not HTTP: there
 * is no readable answer to give).
 */
#include "guest_gateway_internal.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "audit.h"
#include "dns_synth.h"
#include "log.h"
#include "tls_sniff.h"
#include "upstream_addr.h"

#define GW_RELAY_CHUNK (64u * 1024)

struct gw_egress {
	struct gw_conn *c;
	char name[HOST_PATTERN_BUF];
	uint16_t port;
	char target[HOST_PATTERN_BUF];
	uint16_t target_port;
	bool operator_target;
	uv_getaddrinfo_t gai;
	bool gai_pending;
	uv_tcp_t up;
	bool up_open;
	uv_connect_t connect_req;
	uv_shutdown_t shut_up, shut_guest;
	bool connected;
	bool guest_eof, up_eof;      /* read side ended */
	bool up_shut, guest_shut;    /* our write side shut */
	uint8_t *pending;
	size_t pending_len;
	/* The connection's audit row, written (fail closed) at open; its
	 * completion (bytes, duration) is submitted at close. */
	struct store_audit_row *row;
	uint64_t start_ms;
	int64_t bytes_up, bytes_down;
	/* Before the relay: the guest's first bytes (TLS_SNIFF_MAX_BYTES). */
	uint8_t *sniff;
	size_t sniff_len;
};

struct gw_tcp_job {
	uv_work_t work;
	struct gw_conn *c;
	struct gw_verdict v;
	uint8_t *rest;
	size_t rest_len;
};

struct gw_relay_write {
	uv_write_t req;
	struct gw_conn *c;
	bool to_up;
	uint8_t *data;
};

static void gw_eg_log(struct gw_conn *c, int level, const char *event, const char *reason,
		      int r)
{
	struct gw_egress *eg = c->eg;
	struct log_line l;

	if (!log_begin(&l, level, event))
		return;
	log_str(&l, "sandbox", c->sb->id);
	log_str(&l, "host", eg ? eg->name : NULL);
	log_uint(&l, "port", eg ? eg->port : 0);
	if (reason)
		log_str(&l, "reason", reason);
	if (r < 0)
		log_errno(&l, r);
	log_end(&l);
}

int gw_send_open_result(struct gw_conn *c, bool ok, const char *reason)
{
	Miosa__OpenResult res = MIOSA__OPEN_RESULT__INIT;
	struct wire_error we;
	uint8_t buf[FRAME_HEADER_SIZE + WIRE_REASON_MAX + 32];
	size_t len;
	int r;

	res.status = ok ? MIOSA__OPEN_RESULT__STATUS__STATUS_OK
			: MIOSA__OPEN_RESULT__STATUS__STATUS_REFUSED;
	res.reason = (char *)(reason ? reason : "");
	if ((r = wire_frame_open_result(&res, buf, sizeof(buf), &len, &we)) < 0) {
		gw_conn_close(c, "cannot encode OpenResult");
		return r;
	}
	return gw_conn_send_bytes(c, buf, len, !ok);
}

/* ---- routing: HTTP(S) through egress_proxy, other TCP decided at open ---- */

static void gw_sniff_start(struct gw_conn *c, struct gw_verdict *v, const uint8_t *rest,
			   size_t rest_len);

static void gw_tcp_verdict_work(uv_work_t *w)
{
	struct gw_tcp_job *job = w->data;

	egress_verdict_run(job->c->gw, &job->v);
}

static void gw_tcp_verdict_done(uv_work_t *w, int status)
{
	struct gw_tcp_job *job = w->data;
	struct gw_conn *c = job->c;
	struct gw_verdict *v = &job->v;
	struct log_line l;

	if (c->closing)
		goto out;
	if (status < 0 || v->r < 0) {
		if (log_begin(&l, LOG_LEVEL_ERROR, "guest_egress_verdict_failed")) {
			log_str(&l, "sandbox", c->sb->id);
			log_str(&l, "host", v->host);
			log_errno(&l, status < 0 ? status : v->r);
			log_end(&l);
		}
		gw_send_open_result(c, false, "internal-error");
		goto out;
	}
	if (!v->allow) {
		/* The deny row was written by the worker (counted in pending). */
		if (log_begin(&l, LOG_LEVEL_INFO, "guest_egress_refused")) {
			log_str(&l, "sandbox", c->sb->id);
			log_str(&l, "host", v->host);
			log_uint(&l, "port", v->port);
			log_str(&l, "reason", "host-not-allowed");
			log_end(&l);
		}
		gw_send_open_result(c, false, "host-not-allowed");
		goto out;
	}
	if (v->audit_failed) {
		/* Fail closed: a connection that could not be audited is not opened. */
		gw_send_open_result(c, false, "audit-unavailable");
		goto out;
	}
	if (gw_send_open_result(c, true, NULL) < 0)
		goto out;
	gw_sniff_start(c, v, job->rest, job->rest_len);
out:
	egress_verdict_clear(v);
	free(job->rest);
	free(job);
	gw_conn_unref(c);
}

/*
 * Ports 80 and 443: the HTTP proxy, whose policy runs per request.  Other
 * ports: the policy runs now, before OpenResult (enforce + not allowed:
 * REFUSED "host-not-allowed"; a row that could not be written:
 * "audit-unavailable"); then the first bytes decide (header comment).
 */
static void gw_egress_route(struct gw_conn *c, const char *name, uint16_t port,
			    const uint8_t *rest, size_t rest_len)
{
	struct gw_tcp_job *job;
	int r;

	if (port == 80 || port == 443) {
		if (gw_send_open_result(c, true, NULL) < 0)
			return;
		egress_http_start(c, name, port, port == 443, rest, rest_len);
		return;
	}
	if (!(job = calloc(1, sizeof(*job))) || (rest_len && !(job->rest = malloc(rest_len)))) {
		free(job);
		gw_conn_close(c, "out of memory");
		return;
	}
	job->c = c;
	if (rest_len)
		memcpy(job->rest, rest, rest_len);
	job->rest_len = rest_len;
	snprintf(job->v.sandbox_id, sizeof(job->v.sandbox_id), "%s", c->sb->id);
	snprintf(job->v.host, sizeof(job->v.host), "%s", name);
	job->v.port = port;
	job->v.scheme = STORE_AUDIT_TCP;
	job->v.audit_allow_now = true;
	job->work.data = job;
	if ((r = uv_queue_work(c->gw->loop, &job->work, gw_tcp_verdict_work,
			       gw_tcp_verdict_done)) < 0) {
		free(job->rest);
		free(job);
		gw_send_open_result(c, false, "internal-error");
		return;
	}
	c->refs++;
}

void gw_egress_open(struct gw_conn *c, const Miosa__EgressOpen *open, const uint8_t *rest,
		    size_t rest_len)
{
	char name[HOST_PATTERN_BUF];
	int r = -ENOENT;

	/* guest_dns_map.c loaded the map (NULL only for an oversize address). */
	if (c->sb->dns)
		r = dns_synth_reverse_bytes(c->sb->dns, open->dst_addr.data, open->dst_addr.len,
					    name);
	if (r < 0) {
		struct log_line l;

		if (log_begin(&l, LOG_LEVEL_INFO, "guest_egress_refused")) {
			log_str(&l, "sandbox", c->sb->id);
			log_str(&l, "reason", "unknown-destination");
			log_uint(&l, "port", open->dst_port);
			log_end(&l);
		}
		gw_send_open_result(c, false, "unknown-destination");
		return;
	}
	gw_egress_route(c, name, (uint16_t)open->dst_port, rest, rest_len);
}

/* ---- relay --------------------------------------------------------------- */

static void gw_eg_maybe_done(struct gw_conn *c)
{
	struct gw_egress *eg = c->eg;

	if (eg->guest_eof && eg->up_eof && eg->up_shut && eg->guest_shut)
		gw_conn_close(c, NULL);
}

static void gw_relay_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	char *p = malloc(GW_RELAY_CHUNK);

	(void)h;
	(void)suggested;
	*buf = uv_buf_init(p, p ? GW_RELAY_CHUNK : 0);
}

static void gw_on_read_guest(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void gw_on_read_up(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void gw_on_shutdown(uv_shutdown_t *req, int status)
{
	struct gw_conn *c = req->data;

	if (!c->closing) {
		if (status < 0)
			gw_conn_close(c, "shutdown failed");
		else {
			if (req == &c->eg->shut_up)
				c->eg->up_shut = true;
			else
				c->eg->guest_shut = true;
			gw_eg_maybe_done(c);
		}
	}
	gw_conn_unref(c);
}

static void gw_shutdown(struct gw_conn *c, uv_stream_t *s, uv_shutdown_t *req)
{
	req->data = c;
	if (uv_shutdown(req, s, gw_on_shutdown) < 0)
		gw_conn_close(c, "shutdown failed");
	else
		c->refs++;
}

static void gw_on_relay_write(uv_write_t *req, int status)
{
	struct gw_relay_write *w = req->data;
	struct gw_conn *c = w->c;

	free(w->data);
	if (!c->closing) {
		if (status < 0)
			gw_conn_close(c, "relay write failed");
		else if (w->to_up && !c->eg->guest_eof)
			uv_read_start(&c->h.stream, gw_relay_alloc, gw_on_read_guest);
		else if (!w->to_up && !c->eg->up_eof)
			uv_read_start((uv_stream_t *)&c->eg->up, gw_relay_alloc, gw_on_read_up);
	}
	free(w);
	gw_conn_unref(c);
}

/* Write data (ownership taken) to one side; the other side stays stopped
 * until it is written. */
static void gw_relay(struct gw_conn *c, bool to_up, uint8_t *data, size_t len)
{
	uv_stream_t *dst = to_up ? (uv_stream_t *)&c->eg->up : &c->h.stream;
	struct gw_relay_write *w = malloc(sizeof(*w));
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);

	if (!w) {
		free(data);
		gw_conn_close(c, "out of memory");
		return;
	}
	w->c = c;
	w->to_up = to_up;
	w->data = data;
	if (to_up)
		c->eg->bytes_up += (int64_t)len;
	else
		c->eg->bytes_down += (int64_t)len;
	w->req.data = w;
	uv_read_stop(to_up ? &c->h.stream : (uv_stream_t *)&c->eg->up);
	if (uv_write(&w->req, dst, &b, 1, gw_on_relay_write) < 0) {
		free(data);
		free(w);
		gw_conn_close(c, "relay write failed");
		return;
	}
	c->refs++;
}

static void gw_on_read_side(struct gw_conn *c, bool from_guest, ssize_t nread,
			    const uv_buf_t *buf)
{
	struct gw_egress *eg = c->eg;

	if (nread > 0 && !c->closing) {
		gw_relay(c, from_guest, (uint8_t *)buf->base, (size_t)nread);
		return;
	}
	free(buf->base);
	if (nread == 0 || c->closing)
		return;
	if (nread != UV_EOF) {
		gw_conn_close(c, from_guest ? "guest read failed" : "upstream read failed");
		return;
	}
	if (from_guest) {
		eg->guest_eof = true;
		uv_read_stop(&c->h.stream);
		gw_shutdown(c, (uv_stream_t *)&eg->up, &eg->shut_up);
	} else {
		eg->up_eof = true;
		uv_read_stop((uv_stream_t *)&eg->up);
		gw_shutdown(c, &c->h.stream, &eg->shut_guest);
	}
}

static void gw_on_read_guest(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	gw_on_read_side(s->data, true, nread, buf);
}

static void gw_on_read_up(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	gw_on_read_side(s->data, false, nread, buf);
}

static void gw_on_connect(uv_connect_t *req, int status)
{
	struct gw_conn *c = req->data;
	struct gw_egress *eg = c->eg;

	if (!c->closing) {
		uv_timer_stop(&c->timer);
		if (status < 0) {
			gw_eg_log(c, LOG_LEVEL_WARN, "guest_egress_connect_failed", NULL, status);
			gw_conn_close(c, NULL);
		} else {
			eg->connected = true;
			(void)uv_tcp_nodelay(&eg->up, 1); /* a relay: no Nagle wait */
			gw_eg_log(c, LOG_LEVEL_INFO, "guest_egress_connected",
				  eg->operator_target ? "connect-to" : NULL, 0);
			uv_read_start((uv_stream_t *)&eg->up, gw_relay_alloc, gw_on_read_up);
			if (eg->pending_len > 0) {
				uint8_t *p = eg->pending;

				eg->pending = NULL;
				gw_relay(c, true, p, eg->pending_len);
			} else {
				uv_read_start(&c->h.stream, gw_relay_alloc, gw_on_read_guest);
			}
		}
	}
	gw_conn_unref(c);
}

static void gw_on_connect_timeout(uv_timer_t *t)
{
	struct gw_conn *c = t->data;

	gw_eg_log(c, LOG_LEVEL_WARN, "guest_egress_connect_failed", "timeout", 0);
	gw_conn_close(c, NULL);
}

static void gw_on_up_closed(uv_handle_t *h)
{
	gw_conn_unref(h->data);
}

static void gw_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct gw_conn *c = req->data;
	struct gw_egress *eg = c->eg;
	const struct addrinfo *pick = NULL;
	const char *refusal = NULL;
	int r;

	eg->gai_pending = false;
	if (c->closing || status < 0) {
		if (!c->closing)
			gw_eg_log(c, LOG_LEVEL_WARN, "guest_egress_resolve_failed", NULL, status);
		goto out;
	}
	for (const struct addrinfo *ai = res; ai && !pick; ai = ai->ai_next) {
		const char *why = eg->operator_target ? NULL : upstream_addr_refusal(ai->ai_addr);

		if (!why)
			pick = ai;
		else if (!refusal)
			refusal = why;
	}
	if (!pick) {
		gw_eg_log(c, LOG_LEVEL_WARN, "guest_egress_refused", refusal ? refusal : "no address",
			  0);
		goto out;
	}
	uv_tcp_init(c->gw->loop, &eg->up);
	eg->up.data = c;
	eg->up_open = true;
	c->refs++;
	eg->connect_req.data = c;
	if ((r = uv_tcp_connect(&eg->connect_req, &eg->up, pick->ai_addr, gw_on_connect)) < 0) {
		gw_eg_log(c, LOG_LEVEL_WARN, "guest_egress_connect_failed", NULL, r);
		goto out;
	}
	c->refs++;
	uv_timer_start(&c->timer, gw_on_connect_timeout, c->gw->opts.connect_timeout_ms, 0);
	uv_freeaddrinfo(res);
	gw_conn_unref(c);
	return;
out:
	uv_freeaddrinfo(res);
	if (!c->closing)
		gw_conn_close(c, NULL);
	gw_conn_unref(c);
}

bool gw_connect_to(const struct guest_gateway *gw, const char *name, uint16_t port,
		   char target[HOST_PATTERN_BUF], uint16_t *ret_port)
{
	snprintf(target, HOST_PATTERN_BUF, "%s", name);
	*ret_port = port;
	for (size_t i = 0; i < gw->opts.n_connect_to; i++) {
		const struct broker_connect_to *rule = &gw->opts.connect_to[i];

		if ((rule->host[0] && strcmp(rule->host, name) != 0) ||
		    (rule->port && rule->port != port))
			continue;
		if (rule->to_host[0])
			snprintf(target, HOST_PATTERN_BUF, "%s", rule->to_host);
		if (rule->to_port)
			*ret_port = rule->to_port;
		return true;
	}
	return false;
}

/* The first --connect-to rule matching name:port, as curl applies them. */
static void gw_apply_connect_to(struct gw_conn *c)
{
	struct gw_egress *eg = c->eg;

	eg->operator_target = gw_connect_to(c->gw, eg->name, eg->port, eg->target,
					    &eg->target_port);
}

/* The relay's upstream: --connect-to, then resolve (off the loop). */
static void gw_relay_resolve(struct gw_conn *c)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP };
	struct gw_egress *eg = c->eg;
	char service[8];
	int r;

	gw_apply_connect_to(c);
	snprintf(service, sizeof(service), "%u", eg->target_port);
	eg->gai.data = c;
	r = uv_getaddrinfo(c->gw->loop, &eg->gai, gw_on_resolved, eg->target, service, &hints);
	if (r < 0) {
		gw_eg_log(c, LOG_LEVEL_WARN, "guest_egress_resolve_failed", NULL, r);
		gw_conn_close(c, NULL);
		return;
	}
	eg->gai_pending = true;
	c->refs++;
}

/* c->eg for name:port; the framing buffers are dropped.  false: closed. */
static bool gw_egress_new(struct gw_conn *c, const char *name, uint16_t port)
{
	struct gw_egress *eg = calloc(1, sizeof(*eg));

	if (!eg) {
		gw_conn_close(c, "out of memory");
		return false;
	}
	c->eg = eg;
	eg->c = c;
	snprintf(eg->name, sizeof(eg->name), "%s", name);
	eg->port = port;
	/* Leaving framing: the decoder and its buffer are no longer needed. */
	frame_decoder_free(c->dec);
	c->dec = NULL;
	free(c->rbuf);
	c->rbuf = NULL;
	return true;
}

void egress_stream_start(struct gw_conn *c, const char *name, uint16_t port,
			 const uint8_t *pending, size_t pending_len)
{
	uint8_t *copy = NULL;

	if (pending_len && !(copy = malloc(pending_len))) {
		gw_conn_close(c, "out of memory");
		return;
	}
	if (!gw_egress_new(c, name, port)) {
		free(copy);
		return;
	}
	if (pending_len)
		memcpy(copy, pending, pending_len);
	c->eg->pending = copy;
	c->eg->pending_len = pending_len;
	gw_relay_resolve(c);
}

/* ---- other ports: sniff the first bytes ------------------------------------ */

/* Intercept (TLS_SNIFF_HTTP) or splice; the sniffed bytes go along. */
static void gw_sniff_decide(struct gw_conn *c, enum tls_sniff_verdict verdict)
{
	struct gw_egress *eg = c->eg;
	struct log_line l;
	uint8_t *bytes = eg->sniff;
	size_t len = eg->sniff_len;
	char name[HOST_PATTERN_BUF];
	uint16_t port = eg->port;

	uv_timer_stop(&c->timer);
	uv_read_stop(&c->h.stream);
	eg->sniff = NULL;
	eg->sniff_len = 0;
	if (log_begin(&l, LOG_LEVEL_DEBUG, "guest_egress_sniffed")) {
		log_str(&l, "sandbox", c->sb->id);
		log_str(&l, "host", eg->name);
		log_uint(&l, "port", eg->port);
		log_str(&l, "verdict", len ? tls_sniff_verdict_name(verdict) : "silent");
		log_uint(&l, "bytes", len);
		log_end(&l);
	}
	if (verdict != TLS_SNIFF_HTTP) {
		eg->pending = bytes;
		eg->pending_len = len;
		gw_relay_resolve(c);
		return;
	}
	/* HTTPS: every request gets its own row; the connection's row (written
	 * at open) is completed now, before the proxy takes the stream over. */
	snprintf(name, sizeof(name), "%s", eg->name);
	if (eg->row)
		egress_verdict_submit_completion(c->gw, eg->row, 0, 0, 0,
						 (int64_t)(uv_now(c->gw->loop) - eg->start_ms) * 1000);
	free(eg->row);
	free(eg);
	c->eg = NULL;
	egress_http_start(c, name, port, true, bytes, len);
	free(bytes);
}

static void gw_sniff_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct gw_egress *eg = ((struct gw_conn *)h->data)->eg;

	(void)suggested;
	*buf = uv_buf_init((char *)eg->sniff + eg->sniff_len,
			   (unsigned)(TLS_SNIFF_MAX_BYTES - eg->sniff_len));
}

static void gw_sniff_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct gw_conn *c = s->data;
	struct gw_egress *eg = c->eg;
	enum tls_sniff_verdict v;

	(void)buf;
	if (c->closing || !eg || !eg->sniff || nread == 0)
		return;
	if (nread < 0) {
		/* EOF or error before a verdict: the relay reads it again. */
		if (eg->sniff_len == 0) {
			gw_conn_close(c, NULL);
			return;
		}
		gw_sniff_decide(c, TLS_SNIFF_NOT_TLS);
		return;
	}
	eg->sniff_len += (size_t)nread;
	v = tls_sniff_client_hello(eg->sniff, eg->sniff_len);
	if (v == TLS_SNIFF_NEED_MORE && eg->sniff_len < TLS_SNIFF_MAX_BYTES)
		return;
	gw_sniff_decide(c, v);
}

static void gw_sniff_timeout(uv_timer_t *t)
{
	struct gw_conn *c = t->data;

	if (!c->closing && c->eg && c->eg->sniff)
		gw_sniff_decide(c, TLS_SNIFF_NOT_TLS);
}

/* Allowed at open (v->row: the connection's row, taken): read the first
 * bytes, at most TLS_SNIFF_MAX_BYTES, for GUEST_GATEWAY_SNIFF_TIMEOUT_MS. */
static void gw_sniff_start(struct gw_conn *c, struct gw_verdict *v, const uint8_t *rest,
			   size_t rest_len)
{
	struct gw_egress *eg;
	enum tls_sniff_verdict verdict;
	size_t cap = rest_len > TLS_SNIFF_MAX_BYTES ? rest_len : TLS_SNIFF_MAX_BYTES;
	uint8_t *buf = malloc(cap);

	if (!buf) {
		gw_conn_close(c, "out of memory");
		return;
	}
	if (!gw_egress_new(c, v->host, v->port)) {
		free(buf);
		return;
	}
	eg = c->eg;
	eg->row = v->row;
	v->row = NULL;
	eg->start_ms = uv_now(c->gw->loop);
	if (rest_len)
		memcpy(buf, rest, rest_len);
	eg->sniff = buf;
	eg->sniff_len = rest_len;
	verdict = tls_sniff_client_hello(buf, rest_len);
	if (verdict != TLS_SNIFF_NEED_MORE || rest_len >= TLS_SNIFF_MAX_BYTES) {
		gw_sniff_decide(c, verdict);
		return;
	}
	c->timer.data = c;
	uv_timer_start(&c->timer, gw_sniff_timeout, GUEST_GATEWAY_SNIFF_TIMEOUT_MS, 0);
	if (uv_read_start(&c->h.stream, gw_sniff_alloc, gw_sniff_read) < 0)
		gw_conn_close(c, "guest read failed");
}

void gw_egress_close(struct gw_conn *c)
{
	struct gw_egress *eg = c->eg;

	egress_http_close(c);
	if (!eg)
		return;
	if (eg->row) {
		egress_verdict_submit_completion(
			c->gw, eg->row, 0, (uint64_t)eg->bytes_up, (uint64_t)eg->bytes_down,
			(int64_t)(uv_now(c->gw->loop) - eg->start_ms) * 1000);
		free(eg->row);
		eg->row = NULL;
	}
	if (eg->gai_pending)
		uv_cancel((uv_req_t *)&eg->gai);
	if (eg->up_open) {
		eg->up_open = false;
		uv_close((uv_handle_t *)&eg->up, gw_on_up_closed);
	}
}

/* Called from gw_conn_free() through the conn: release what is left. */
void gw_egress_free(struct gw_conn *c)
{
	egress_http_free(c);
	if (!c->eg)
		return;
	free(c->eg->pending);
	free(c->eg->sniff);
	free(c->eg->row);
	free(c->eg);
	c->eg = NULL;
}
