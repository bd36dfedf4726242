/*
 * guest_session — one guest connection: the GuestOpen frame, dispatched
 * through a table to the control, dns or egress handler.
 *
 * Control: Hello -> (worker: vault_resolve, CA) -> HelloAck; then framed
 * GuestToHost both ways: ExecOutput/ExecExit go to the exec in flight,
 * Pong clears the liveness probe.  One live control stream per sandbox: a
 * newer Hello replaces (closes) the older stream.  A Ping every
 * GUEST_GATEWAY_PING_INTERVAL_MS; a stream whose previous Ping is still
 * unanswered when the next is due is closed (the agent reconnects).
 *
 * Dns: one DnsQuery -> dns_synth_answer() on the sandbox's map (loaded from
 * the store first, new mappings stored before the answer: guest_dns_map.c)
 * -> DnsAnswer -> close.  A query that gets
 * no answer (no header, QR set) -> close.
 *
 * Errors: a malformed or oversize frame, a wrong message or a write failure
 * is logged once (sandbox, reason) and the connection closed.  Caps:
 * GUEST_GATEWAY_CONNS_PER_SANDBOX and GUEST_GATEWAY_CONNS_MAX connections,
 * GUEST_GATEWAY_OPEN_TIMEOUT_MS to deliver GuestOpen.  Memory per
 * connection while framed: one FRAME_MAX_SIZE read buffer and one decoder
 * (~128 KiB); both are freed when a stream leaves framing (egress).
 */
#include "guest_gateway_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"

struct gw_write {
	uv_write_t req;
	struct gw_conn *c;
	bool close_after;
	size_t len;
	uint8_t data[];
};

void gw_log_conn(struct gw_conn *c, int level, const char *event, const char *reason)
{
	static const char *const kinds[] = { "opening", "control", "dns", "egress" };
	struct log_line l;

	if (!log_begin(&l, level, event))
		return;
	log_str(&l, "sandbox", c->sb->id);
	log_str(&l, "stream", kinds[c->kind]);
	if (reason)
		log_str(&l, "reason", reason);
	log_end(&l);
}

/* ---- lifetime ------------------------------------------------------------ */

static void gw_conn_free(struct gw_conn *c)
{
	struct guest_gateway *gw = c->gw;
	struct gw_sandbox *sb = c->sb;

	if (c->prev)
		c->prev->next = c->next;
	else
		gw->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	gw->n_conns--;
	sb->n_conns--;
	frame_decoder_free(c->dec);
	free(c->rbuf);
	gw_egress_free(c);
	free(c);
	gw_sandbox_release(sb);
}

void gw_conn_unref(struct gw_conn *c)
{
	if (--c->refs == 0)
		gw_conn_free(c);
}

static void gw_on_handle_closed(uv_handle_t *h)
{
	gw_conn_unref(h->data);
}

void gw_conn_close(struct gw_conn *c, const char *reason)
{
	if (c->closing)
		return;
	c->closing = true;
	if (reason)
		gw_log_conn(c, c->kind == GW_CONN_CONTROL ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG,
			    "guest_stream_closed", reason);
	if (c->sb->control == c)
		c->sb->control = NULL;
	gw_exec_fail_conn(c);
	gw_egress_close(c);
	uv_close(&c->h.handle, gw_on_handle_closed);
	uv_close((uv_handle_t *)&c->timer, gw_on_handle_closed);
}

/* ---- writes -------------------------------------------------------------- */

static void gw_on_write(uv_write_t *req, int status)
{
	struct gw_write *w = req->data;
	struct gw_conn *c = w->c;

	if (status < 0 && status != UV_ECANCELED)
		gw_conn_close(c, "write failed");
	else if (w->close_after)
		gw_conn_close(c, NULL);
	sodium_memzero(w->data, w->len);
	free(w);
	gw_conn_unref(c);
}

int gw_conn_send_bytes(struct gw_conn *c, const uint8_t *data, size_t len, bool close_after)
{
	struct gw_write *w;
	uv_buf_t b;
	int r;

	if (c->closing)
		return -EPIPE;
	if (!(w = malloc(sizeof(*w) + len))) {
		gw_conn_close(c, "out of memory");
		return -ENOMEM;
	}
	w->c = c;
	w->close_after = close_after;
	w->len = len;
	memcpy(w->data, data, len);
	w->req.data = w;
	b = uv_buf_init((char *)w->data, (unsigned)len);
	if ((r = uv_write(&w->req, &c->h.stream, &b, 1, gw_on_write)) < 0) {
		free(w);
		gw_conn_close(c, "write failed");
		return r;
	}
	c->refs++;
	return 0;
}

int gw_conn_send_h2g(struct gw_conn *c, const Miosa__HostToGuest *msg)
{
	struct wire_error we = { "", "", "" };
	uint8_t *buf = malloc(FRAME_MAX_SIZE);
	size_t len;
	int r;

	if (!buf) {
		gw_conn_close(c, "out of memory");
		return -ENOMEM;
	}
	r = wire_frame_host_to_guest(msg, buf, FRAME_MAX_SIZE, &len, &we);
	if (r < 0) {
		struct log_line l;

		/* Our own message broke a wire rule: a broker bug or oversize data. */
		if (log_begin(&l, LOG_LEVEL_ERROR, "guest_frame_encode_failed")) {
			log_str(&l, "sandbox", c->sb->id);
			log_str(&l, "message", we.message);
			log_str(&l, "field", we.field);
			log_str(&l, "reason", we.reason);
			log_errno(&l, r);
			log_end(&l);
		}
		free(buf);
		return r;
	}
	r = gw_conn_send_bytes(c, buf, len, false);
	sodium_memzero(buf, len);
	free(buf);
	return r;
}

/* ---- ping ---------------------------------------------------------------- */

static void gw_on_ping_timer(uv_timer_t *t)
{
	struct gw_conn *c = t->data;
	Miosa__HostToGuest m = MIOSA__HOST_TO_GUEST__INIT;
	Miosa__Ping ping = MIOSA__PING__INIT;

	if (c->ping_outstanding) {
		gw_conn_close(c, "no pong within the ping interval");
		return;
	}
	randombytes_buf(&c->ping_nonce, sizeof(c->ping_nonce));
	c->ping_outstanding = true;
	ping.nonce = c->ping_nonce;
	m.msg_case = MIOSA__HOST_TO_GUEST__MSG_PING;
	m.ping = &ping;
	if (gw_conn_send_h2g(c, &m) < 0)
		gw_conn_close(c, "cannot send ping");
}

void gw_session_start_ping(struct gw_conn *c)
{
	uv_timer_start(&c->timer, gw_on_ping_timer, GUEST_GATEWAY_PING_INTERVAL_MS,
		       GUEST_GATEWAY_PING_INTERVAL_MS);
}

/* ---- control stream ------------------------------------------------------ */

static void gw_control_frame(struct gw_conn *c, const struct frame *f)
{
	struct wire_error we = { "", "", "" };
	Miosa__GuestToHost *m = NULL;
	int r;

	if ((r = wire_decode_guest_to_host(f->payload, f->len, &m, &we)) < 0) {
		char reason[160];

		snprintf(reason, sizeof(reason), "bad GuestToHost: %s.%s: %s", we.message,
			 we.field, we.reason);
		gw_conn_close(c, reason);
		return;
	}
	if (!c->acked) {
		wire_free_guest_to_host(m);
		gw_conn_close(c, "frame before HelloAck");
		return;
	}
	switch (m->msg_case) {
	case MIOSA__GUEST_TO_HOST__MSG_EXEC_OUTPUT:
		gw_exec_on_output(c, m->exec_output);
		break;
	case MIOSA__GUEST_TO_HOST__MSG_EXEC_EXIT:
		gw_exec_on_exit(c, m->exec_exit);
		break;
	case MIOSA__GUEST_TO_HOST__MSG_PONG:
		if (c->ping_outstanding && m->pong->nonce == c->ping_nonce)
			c->ping_outstanding = false;
		break;
	default:
		break;
	}
	wire_free_guest_to_host(m);
}

static void gw_open_control(struct gw_conn *c, const Miosa__GuestOpen *open, const uint8_t *rest,
			    size_t rest_len)
{
	struct gw_sandbox *sb = c->sb;

	(void)open;
	(void)rest;
	(void)rest_len; /* the read loop keeps feeding the decoder */
	if (sb->control && sb->control != c) {
		gw_log_conn(sb->control, LOG_LEVEL_INFO, "guest_control_replaced", NULL);
		gw_conn_close(sb->control, "replaced by a newer control stream");
	}
	c->kind = GW_CONN_CONTROL;
	sb->control = c;
	uv_timer_stop(&c->timer);
	gw_log_conn(c, LOG_LEVEL_INFO, "guest_hello", NULL);
	gw_resolve_start(c, true);
}

/* ---- dns stream ---------------------------------------------------------- */

/* Send one answer as the stream's only frame, then close. */
void gw_dns_send(struct gw_conn *c, const uint8_t *answer, size_t answer_len)
{
	Miosa__DnsAnswer ans = MIOSA__DNS_ANSWER__INIT;
	struct wire_error we = { "", "", "" };
	uint8_t *frame;
	size_t len;

	ans.packet.data = (uint8_t *)answer;
	ans.packet.len = answer_len;
	if (!(frame = malloc(FRAME_MAX_SIZE))) {
		gw_conn_close(c, "out of memory");
		return;
	}
	if (wire_frame_dns_answer(&ans, frame, FRAME_MAX_SIZE, &len, &we) < 0)
		gw_conn_close(c, "cannot encode the answer");
	else
		gw_conn_send_bytes(c, frame, len, true);
	free(frame);
}

static void gw_open_dns(struct gw_conn *c, const Miosa__GuestOpen *open, const uint8_t *rest,
			size_t rest_len)
{
	(void)rest;
	(void)rest_len;
	c->kind = GW_CONN_DNS;
	uv_read_stop(&c->h.stream);
	gw_dns_map_query(c, open->dns->packet.data, open->dns->packet.len);
}

/* ---- GuestOpen dispatch -------------------------------------------------- */

static void gw_open_egress_entry(struct gw_conn *c, const Miosa__GuestOpen *open,
				 const uint8_t *rest, size_t rest_len)
{
	c->kind = GW_CONN_EGRESS;
	uv_timer_stop(&c->timer);
	/* The guest waits for OpenResult; stop reading until the relay runs. */
	uv_read_stop(&c->h.stream);
	gw_dns_map_egress(c, open->egress, rest, rest_len);
}

typedef void (*gw_open_handler)(struct gw_conn *c, const Miosa__GuestOpen *open,
				const uint8_t *rest, size_t rest_len);

static const struct {
	Miosa__GuestOpen__KindCase kind;
	gw_open_handler handler;
} gw_open_table[] = {
	{ MIOSA__GUEST_OPEN__KIND_CONTROL, gw_open_control },
	{ MIOSA__GUEST_OPEN__KIND_EGRESS, gw_open_egress_entry },
	{ MIOSA__GUEST_OPEN__KIND_DNS, gw_open_dns },
};

static void gw_dispatch_open(struct gw_conn *c, const struct frame *f, const uint8_t *rest,
			     size_t rest_len)
{
	struct wire_error we = { "", "", "" };
	Miosa__GuestOpen *open = NULL;
	gw_open_handler h = NULL;
	int r;

	if ((r = wire_decode_guest_open(f->payload, f->len, &open, &we)) < 0) {
		char reason[160];

		snprintf(reason, sizeof(reason), "bad GuestOpen: %s.%s: %s", we.message, we.field,
			 we.reason);
		gw_log_conn(c, LOG_LEVEL_WARN, "guest_open_rejected", reason);
		gw_conn_close(c, NULL);
		return;
	}
	for (size_t i = 0; i < sizeof(gw_open_table) / sizeof(gw_open_table[0]); i++)
		if (gw_open_table[i].kind == open->kind_case)
			h = gw_open_table[i].handler;
	if (h)
		h(c, open, rest, rest_len);
	else
		gw_conn_close(c, "unknown GuestOpen kind");
	wire_free_guest_open(open);
}

/* ---- reads --------------------------------------------------------------- */

static void gw_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct gw_conn *c = h->data;

	(void)suggested;
	*buf = uv_buf_init((char *)c->rbuf, FRAME_MAX_SIZE);
}

static void gw_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct gw_conn *c = s->data;
	const uint8_t *p = (const uint8_t *)buf->base;
	size_t left = nread > 0 ? (size_t)nread : 0;

	if (nread < 0) {
		if (nread == UV_EOF && c->kind == GW_CONN_OPENING &&
		    frame_decoder_finish(c->dec) == 0)
			gw_conn_close(c, NULL);
		else
			gw_conn_close(c, nread == UV_EOF ? "peer closed" : uv_strerror((int)nread));
		return;
	}
	while (left > 0 && !c->closing &&
	       (c->kind == GW_CONN_OPENING || c->kind == GW_CONN_CONTROL)) {
		struct frame f;
		size_t used;
		int r = frame_decoder_feed(c->dec, p, left, &used, &f);

		if (r < 0) {
			char reason[96];

			snprintf(reason, sizeof(reason), "bad frame: %s", frame_strerror(r));
			gw_log_conn(c, LOG_LEVEL_WARN, "guest_frame_rejected", reason);
			gw_conn_close(c, NULL);
			return;
		}
		p += used;
		left -= used;
		if (r == FRAME_NEED_MORE)
			break;
		if (c->kind == GW_CONN_OPENING)
			gw_dispatch_open(c, &f, p, left);
		else
			gw_control_frame(c, &f);
		if (c->kind == GW_CONN_EGRESS || c->kind == GW_CONN_DNS)
			break; /* egress took the rest; dns ignores it */
	}
}

static void gw_on_open_timeout(uv_timer_t *t)
{
	gw_conn_close(t->data, "no GuestOpen in time");
}

static void gw_on_refused_closed(uv_handle_t *h)
{
	free(h);
}

/* Over a cap: accept and close at once (libuv stops listening otherwise). */
static void gw_refuse(struct guest_gateway *gw, struct gw_sandbox *sb, uv_stream_t *server,
		      int fd, const char *reason)
{
	struct log_line l;
	uv_pipe_t *p;

	if (log_begin(&l, LOG_LEVEL_WARN, "guest_connection_refused")) {
		log_str(&l, "sandbox", sb->id);
		log_str(&l, "reason", reason);
		log_end(&l);
	}
	if (!server) {
		close(fd);
		return;
	}
	if (!(p = malloc(sizeof(*p))))
		return;
	uv_pipe_init(gw->loop, p, 0);
	(void)uv_accept(server, (uv_stream_t *)p);
	uv_close((uv_handle_t *)p, gw_on_refused_closed);
}

void gw_session_accept(struct guest_gateway *gw, struct gw_sandbox *sb, uv_stream_t *server,
		       int fd)
{
	struct gw_conn *c;
	int r;

	if (gw->shutting_down || sb->deleted || gw->n_conns >= GUEST_GATEWAY_CONNS_MAX ||
	    sb->n_conns >= GUEST_GATEWAY_CONNS_PER_SANDBOX) {
		gw_refuse(gw, sb, server, fd, "connection cap reached");
		return;
	}
	if (!(c = calloc(1, sizeof(*c))) || !(c->rbuf = malloc(FRAME_MAX_SIZE)) ||
	    frame_decoder_new(&c->dec) < 0) {
		if (c)
			free(c->rbuf);
		free(c);
		gw_refuse(gw, sb, server, fd, "out of memory");
		return;
	}
	c->gw = gw;
	c->sb = sb;
	c->kind = GW_CONN_OPENING;
	uv_pipe_init(gw->loop, &c->h.pipe, 0);
	uv_timer_init(gw->loop, &c->timer);
	c->h.handle.data = c;
	c->timer.data = c;
	c->refs = 2;
	c->next = gw->conns;
	if (gw->conns)
		gw->conns->prev = c;
	gw->conns = c;
	gw->n_conns++;
	sb->n_conns++;
	r = server ? uv_accept(server, &c->h.stream) : uv_pipe_open(&c->h.pipe, fd);
	if (r < 0) {
		if (!server)
			close(fd);
		gw_conn_close(c, "cannot open the connection");
		return;
	}
	uv_timer_start(&c->timer, gw_on_open_timeout, GUEST_GATEWAY_OPEN_TIMEOUT_MS, 0);
	if ((r = uv_read_start(&c->h.stream, gw_on_alloc, gw_on_read)) < 0)
		gw_conn_close(c, "cannot read");
}
