#include "egress_stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_log.h"
#include "broker_open.h"
#include "wire.h"

#define M "egress"
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* 198.18.0.0/15 (RFC 2544 benchmarking range): the synthetic addresses the
 * broker's DNS answers hand out. */
#define SYNTHETIC_NET 0xc6120000u
#define SYNTHETIC_MASK 0xfffe0000u

/* One direction's end: what was read from it, what is written to it. */
struct side {
	uv_stream_t *h;
	struct side *peer;
	bool paused;   /* reading stopped by back-pressure */
	bool eof;      /* EOF read from this side */
	bool shutting; /* shutdown(SHUT_WR) asked of this side */
	bool shut;     /* ... and done */
	uv_shutdown_t shutdown;
	uint64_t bytes; /* read from this side */
};

struct egress_stream {
	egress_stream_done_cb *done;
	void *data;
	uv_tcp_t client;
	uv_pipe_t broker;
	uv_timer_t timer; /* the OpenResult deadline */
	struct broker_open op;
	struct side c, b;
	unsigned handles;
	bool broker_init;
	bool closing;
	char name[INET_ADDRSTRLEN + 6]; /* "198.18.0.5:443" */
};

/* A read buffer that becomes the write request carrying it. */
struct chunk {
	uv_write_t req;
	struct side *to;
	size_t cap;
	char data[];
};

size_t egress_stream_size(void)
{
	return sizeof(struct egress_stream);
}

/* --- Ending ------------------------------------------------------------------------ */

static void released(struct egress_stream *s)
{
	if (--s->handles > 0)
		return;
	s->done(s->data, s);
	free(s);
}

static void client_closed(uv_handle_t *h)
{
	released(container_of(h, struct egress_stream, client));
}

static void broker_closed(uv_handle_t *h)
{
	released(container_of(h, struct egress_stream, broker));
}

static void timer_closed(uv_handle_t *h)
{
	released(container_of(h, struct egress_stream, timer));
}

/* Closes everything; reset_client sends the client an RST instead of a FIN. */
static void stream_close(struct egress_stream *s, bool reset_client)
{
	if (s->closing)
		return;
	s->closing = true;
	broker_open_cancel(&s->op);
	uv_close((uv_handle_t *)&s->timer, timer_closed);
	if (s->broker_init)
		uv_close((uv_handle_t *)&s->broker, broker_closed);
	/* close_reset refuses a handle with a shutdown pending: then a FIN */
	if (!reset_client || uv_tcp_close_reset(&s->client, client_closed) < 0)
		uv_close((uv_handle_t *)&s->client, client_closed);
	agent_log_debug(M, "%s: closed (%" PRIu64 " bytes up, %" PRIu64 " down)%s", s->name,
			s->c.bytes, s->b.bytes, reset_client ? ", client reset" : "");
}

void egress_stream_abort(struct egress_stream *s)
{
	stream_close(s, true);
}

/* Both directions ended: a clean close. */
static void maybe_end(struct egress_stream *s)
{
	if (s->c.eof && s->b.eof && s->c.shut && s->b.shut)
		stream_close(s, false);
}

/* --- Splicing ------------------------------------------------------------------------ */

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct chunk *ch = malloc(sizeof(*ch) + EGRESS_READ_SIZE);

	(void)h;
	(void)suggested;
	if (!ch) {
		*buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
		return;
	}
	ch->cap = EGRESS_READ_SIZE;
	*buf = uv_buf_init(ch->data, EGRESS_READ_SIZE);
}

static int start_reading(struct side *from)
{
	from->paused = false;
	return uv_read_start(from->h, on_alloc, on_read);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct side *to = container_of(req, struct side, shutdown);
	struct egress_stream *s = to->h->data;

	if (status == UV_ECANCELED)
		return; /* closing already */
	if (status < 0) {
		stream_close(s, true);
		return;
	}
	to->shut = true;
	maybe_end(s);
}

/* EOF read from `from`: pass the half-close on once its bytes are out
 * (uv_shutdown waits for the write queue). */
static void half_close(struct egress_stream *s, struct side *from)
{
	struct side *to = from->peer;

	from->eof = true;
	to->shutting = true;
	if (uv_shutdown(&to->shutdown, to->h, on_shutdown) < 0)
		stream_close(s, true);
}

static void on_written(uv_write_t *req, int status)
{
	struct chunk *ch = container_of(req, struct chunk, req);
	struct side *to = ch->to, *from = to->peer;
	struct egress_stream *s = to->h->data;

	free(ch);
	if (status == UV_ECANCELED)
		return;
	if (status < 0) {
		/* the client cannot take more, or the broker went away */
		stream_close(s, true);
		return;
	}
	if (from->paused && !from->eof && uv_stream_get_write_queue_size(to->h) <= EGRESS_HIGH_WATER &&
	    start_reading(from) < 0)
		stream_close(s, true);
}

/* Sends len bytes of ch to the other side; pauses `from` over the high water. */
static void forward(struct egress_stream *s, struct side *from, struct chunk *ch, size_t len)
{
	struct side *to = from->peer;
	uv_buf_t buf = uv_buf_init(ch->data, (unsigned)len);

	ch->to = to;
	from->bytes += len;
	if (uv_write(&ch->req, to->h, &buf, 1, on_written) < 0) {
		free(ch);
		stream_close(s, true);
		return;
	}
	if (uv_stream_get_write_queue_size(to->h) > EGRESS_HIGH_WATER) {
		uv_read_stop(from->h);
		from->paused = true;
	}
}

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
	struct egress_stream *s = h->data;
	struct side *from = h == s->c.h ? &s->c : &s->b;
	struct chunk *ch = buf->base ? container_of(buf->base, struct chunk, data) : NULL;

	if (nread > 0) {
		forward(s, from, ch, (size_t)nread);
		return;
	}
	free(ch);
	if (nread == UV_EOF) {
		half_close(s, from);
	} else if (nread < 0) {
		agent_log_debug(M, "%s: %s side: %s", s->name, from == &s->c ? "client" : "broker",
				uv_strerror((int)nread));
		/* a broker failure must not look like a clean end to the client */
		stream_close(s, from == &s->b);
	}
}

/* Bytes of the broker that came with the OpenResult: the first downstream write. */
static int forward_rest(struct egress_stream *s, const uint8_t *rest, size_t len)
{
	struct chunk *ch;

	if (len == 0)
		return 0;
	ch = malloc(sizeof(*ch) + len);
	if (!ch)
		return UV_ENOMEM;
	ch->cap = len;
	memcpy(ch->data, rest, len);
	forward(s, &s->b, ch, len);
	return 0;
}

static void splice_start(struct egress_stream *s, const uint8_t *rest, size_t len)
{
	int r;

	uv_timer_stop(&s->timer);
	s->broker.data = s; /* broker_open is done with it */
	if ((r = forward_rest(s, rest, len)) < 0 || (r = start_reading(&s->c)) < 0 ||
	    (!s->b.paused && (r = start_reading(&s->b)) < 0)) {
		agent_log_warn(M, "%s: cannot splice: %s", s->name, uv_strerror(r));
		stream_close(s, true);
	}
}

/* --- Opening -------------------------------------------------------------------------- */

static void on_open(struct broker_open *op, int status, const struct frame *f,
		    const uint8_t *rest, size_t rest_len)
{
	struct egress_stream *s = op->data;
	Miosa__OpenResult *res = NULL;
	struct wire_error e = { 0 };

	if (status < 0) {
		agent_log_warn(M, "%s: broker stream failed: %s, resetting the client", s->name,
			       status == -EMSGSIZE ? frame_strerror(status) : uv_strerror(status));
		stream_close(s, true);
		return;
	}
	if (wire_decode_open_result(f->payload, f->len, &res, &e) < 0) {
		agent_log_warn(M, "%s: bad OpenResult: %s.%s: %s, resetting the client", s->name,
			       e.message, e.field, e.reason);
		stream_close(s, true);
		return;
	}
	if (res->status == MIOSA__OPEN_RESULT__STATUS__STATUS_REFUSED) {
		char why[101];

		agent_log_info(M, "%s: refused by the broker: %s", s->name,
			       agent_log_quote(res->reason, why, sizeof(why)));
		stream_close(s, true);
	} else {
		agent_log_debug(M, "%s: open", s->name);
		splice_start(s, rest, rest_len);
	}
	wire_free_open_result(res);
}

static void on_open_timeout(uv_timer_t *t)
{
	struct egress_stream *s = container_of(t, struct egress_stream, timer);

	agent_log_warn(M, "%s: no OpenResult in %u ms, resetting the client", s->name,
		       EGRESS_OPEN_TIMEOUT_MS);
	stream_close(s, true);
}

/* The original destination; -EADDRNOTAVAIL when it is not synthetic. */
static int original_dst(struct egress_stream *s, struct sockaddr_in *ret_dst)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	char ip[INET_ADDRSTRLEN] = "?";
	int len = sizeof(ss), r;

	if ((r = uv_tcp_getsockname(&s->client, (struct sockaddr *)&ss, &len)) < 0)
		return r;
	if (ss.ss_family != AF_INET)
		return -EAFNOSUPPORT;
	inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
	snprintf(s->name, sizeof(s->name), "%s:%u", ip, ntohs(in->sin_port));
	if ((ntohl(in->sin_addr.s_addr) & SYNTHETIC_MASK) != SYNTHETIC_NET)
		return -EADDRNOTAVAIL;
	*ret_dst = *in;
	return 0;
}

static int open_broker(struct egress_stream *s, uv_loop_t *loop, const struct transport_spec *spec,
		       const struct sockaddr_in *dst)
{
	Miosa__GuestOpen open = MIOSA__GUEST_OPEN__INIT;
	Miosa__EgressOpen eo = MIOSA__EGRESS_OPEN__INIT;
	int r;

	eo.dst_addr.data = (uint8_t *)&dst->sin_addr.s_addr; /* network order */
	eo.dst_addr.len = 4;
	eo.dst_port = ntohs(dst->sin_port);
	open.kind_case = MIOSA__GUEST_OPEN__KIND_EGRESS;
	open.egress = &eo;
	s->op.data = s;
	if ((r = broker_open_start(&s->op, loop, spec, &s->broker, &open, on_open)) < 0)
		return r;
	s->broker_init = true;
	s->handles++;
	return uv_timer_start(&s->timer, on_open_timeout, EGRESS_OPEN_TIMEOUT_MS, 0);
}

static void done_nothing(void *data, struct egress_stream *s)
{
	(void)data;
	(void)s;
}

static struct egress_stream *stream_new(uv_loop_t *loop, egress_stream_done_cb *done, void *data)
{
	struct egress_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->done = done;
	s->data = data;
	uv_tcp_init(loop, &s->client);
	uv_timer_init(loop, &s->timer);
	s->client.data = s;
	s->handles = 2;
	s->c = (struct side){ .h = (uv_stream_t *)&s->client, .peer = &s->b };
	s->b = (struct side){ .h = (uv_stream_t *)&s->broker, .peer = &s->c };
	snprintf(s->name, sizeof(s->name), "?");
	return s;
}

int egress_stream_accept(uv_loop_t *loop, uv_stream_t *server, const struct transport_spec *spec,
			 int refuse, egress_stream_done_cb *done, void *data,
			 struct egress_stream **ret_stream)
{
	struct egress_stream *s = stream_new(loop, done, data);
	struct sockaddr_in dst;
	int r;

	if (!s)
		return UV_ENOMEM;
	if ((r = uv_accept(server, (uv_stream_t *)&s->client)) < 0) {
		/* nothing was accepted: the caller hears it now, not from done */
		s->done = done_nothing;
		stream_close(s, false);
		return r;
	}
	*ret_stream = s;
	/* The relay writes whatever the broker sent as soon as it arrives, so a
	 * response often leaves in two or more small writes; with Nagle on, the
	 * second waits for the client's (delayed, ~40 ms) ACK.  That stalled
	 * ~4% of keep-alive requests by 44 ms in bench/egress_bench.sh. */
	if ((r = uv_tcp_nodelay(&s->client, 1)) < 0)
		agent_log_debug(M, "%s: TCP_NODELAY: %s, ignoring", s->name, uv_strerror(r));
	if (refuse) {
		stream_close(s, true);
	} else if ((r = original_dst(s, &dst)) < 0) {
		agent_log_info(M, "%s: not a synthetic destination, resetting: %s", s->name,
			       strerror(-r));
		stream_close(s, true);
	} else if ((r = open_broker(s, loop, spec, &dst)) < 0) {
		agent_log_warn(M, "%s: cannot open a broker stream: %s", s->name, uv_strerror(r));
		stream_close(s, true);
	}
	return 0;
}
