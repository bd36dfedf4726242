/*
 * vsock_mux — see vsock_mux.h.
 *
 * Per connection the mux keeps two byte rings of buf_alloc bytes each:
 *
 *   to_unix   what the guest sent and the Unix socket has not taken yet.
 *             Its length is always rx_cnt - fwd_cnt, so the credit the
 *             guest was given (buf_alloc - (rx_cnt - fwd_cnt)) is exactly
 *             its free space and an over-credit RW is one comparison.
 *             At most one uv_write is in flight, over a contiguous span at
 *             the ring's head; appends go to the tail, so the bytes libuv
 *             is writing never move.
 *   to_guest  what the Unix socket sent and the guest has not been given.
 *             The mux reads into it only up to the guest's credit
 *             (peer_buf_alloc - (tx_cnt - peer_fwd_cnt)), so it never holds
 *             more than the guest agreed to take.
 *
 * Packets for the guest come from three places, in this order:
 *   1. rst_q: RSTs for connections already closed and replies to packets
 *      naming no connection (bounded; a guest that never drains its rx
 *      queue loses RSTs, counted, rather than growing the queue);
 *   2. the ctrl list: connections with a pending REQUEST, RESPONSE,
 *      CREDIT_UPDATE or SHUTDOWN (a bit each, so at most four per
 *      connection); SHUTDOWN waits until to_guest is empty, because the
 *      guest treats data after SHUTDOWN(SEND) as lost;
 *   3. the data list, round-robin: connections with data and credit.
 * A connection is on a list iff it has something to send there; vsock_mux__conn_sync()
 * re-derives list membership, reading and writing from the state after
 * every change, so no event handler has to remember them.
 *
 * Lifetime: a connection leaves the table and the lists when it is closed
 * (state CLOSING) and its memory goes in the pipe's close callback; the mux
 * itself goes when vsock_mux_free() was called and its last handle closed.
 *
 * Host-initiated connections (listener, CONNECT line, request timer) are in
 * vsock_mux_host.c; the types both files share in vsock_mux_internal.h.
 */
#include "vsock_mux.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "log.h"
#include "vsock_mux_internal.h"

#define MUX_BUF_ALLOC_MIN 4096u
#define MUX_BUF_ALLOC_MAX (64u * 1024u * 1024u)

/* ---- helpers ------------------------------------------------------------- */

void vsock_mux__maybe_release(struct vsock_mux *mux)
{
	if (!mux->freeing || mux->handles > 0)
		return;
	free(mux->uds_path);
	free(mux);
}

/* Tells the device once, at the end of an entry point, that packets wait. */
void vsock_mux__notify(struct vsock_mux *mux)
{
	if (!mux->kick || mux->freeing)
		return;
	mux->kick = false;
	if (vsock_mux_has_pending(mux) && mux->hooks.to_guest_ready)
		mux->hooks.to_guest_ready(mux->hooks.ctx);
}

void vsock_mux__conn_log(const struct vsock_conn *c, enum log_level level, const char *event,
			 const char *reason, int r)
{
	struct log_line l;

	if (!log_begin(&l, level, event))
		return;
	log_uint(&l, "guest_cid", c->mux->guest_cid);
	log_uint(&l, "guest_port", c->guest_port);
	log_uint(&l, "host_port", c->host_port);
	log_str(&l, "reason", reason);
	if (r < 0)
		log_errno(&l, r);
	log_end(&l);
}

static unsigned conn_bucket(uint32_t guest_port, uint32_t host_port)
{
	uint32_t h = guest_port * 2654435761u ^ host_port * 40503u;

	return (h ^ (h >> 16)) % MUX_BUCKETS;
}

static struct vsock_conn *mux_find(const struct vsock_mux *mux, uint32_t guest_port,
				   uint32_t host_port)
{
	struct vsock_conn *c = mux->buckets[conn_bucket(guest_port, host_port)];

	while (c && (c->guest_port != guest_port || c->host_port != host_port))
		c = c->hash_next;
	return c;
}

void vsock_mux__hash_insert(struct vsock_mux *mux, struct vsock_conn *c)
{
	unsigned b = conn_bucket(c->guest_port, c->host_port);

	c->hash_next = mux->buckets[b];
	mux->buckets[b] = c;
	c->hashed = true;
}

static void mux_hash_remove(struct vsock_mux *mux, struct vsock_conn *c)
{
	struct vsock_conn **p = &mux->buckets[conn_bucket(c->guest_port, c->host_port)];

	if (!c->hashed)
		return;
	while (*p && *p != c)
		p = &(*p)->hash_next;
	if (*p)
		*p = c->hash_next;
	c->hashed = false;
}

static void mux_hdr(const struct vsock_mux *mux, uint32_t host_port, uint32_t guest_port,
		    uint16_t op, struct vsock_hdr *ret_hdr)
{
	*ret_hdr = (struct vsock_hdr){
		.src_cid = VSOCK_HOST_CID,
		.dst_cid = mux->guest_cid,
		.src_port = host_port,
		.dst_port = guest_port,
		.type = VSOCK_TYPE_STREAM,
		.op = op,
	};
}

/* Every packet carries the connection's current credit; it is now told. */
static void conn_hdr(struct vsock_conn *c, uint16_t op, uint32_t flags, uint32_t len,
		     struct vsock_hdr *ret_hdr)
{
	mux_hdr(c->mux, c->host_port, c->guest_port, op, ret_hdr);
	ret_hdr->flags = flags;
	ret_hdr->len = len;
	ret_hdr->buf_alloc = c->mux->buf_alloc;
	ret_hdr->fwd_cnt = c->fwd_cnt;
	c->adv_fwd_cnt = c->fwd_cnt;
}

/* stray: a reply to a packet naming no connection, which may use only part
 * of the queue so that a flood of them cannot crowd out real RSTs. */
static void mux_queue_rst(struct vsock_mux *mux, const struct vsock_hdr *rst, bool stray)
{
	if (mux->rst_len == MUX_RST_QUEUE || (stray && mux->rst_stray >= MUX_STRAY_RST_MAX)) {
		mux->stats.protocol_errors++;
		return;
	}
	mux->rst_q[(mux->rst_head + mux->rst_len) % MUX_RST_QUEUE] = *rst;
	mux->rst_len++;
	if (stray)
		mux->rst_stray++;
	mux->kick = true;
}

/* ---- closing -------------------------------------------------------------- */

static void conn_on_closed(uv_handle_t *h)
{
	struct vsock_conn *c = h->data;
	struct vsock_mux *mux = c->mux;

	ring_release(&c->to_unix);
	ring_release(&c->to_guest);
	free(c);
	mux->handles--;
	vsock_mux__maybe_release(mux);
}

/* Closes the Unix side without telling the guest anything. */
void vsock_mux__conn_close(struct vsock_conn *c)
{
	struct vsock_mux *mux = c->mux;

	if (c->state == CONN_CLOSING)
		return;
	c->state = CONN_CLOSING;
	mux_hash_remove(mux, c);
	link_remove(&c->all);
	link_remove(&c->ctrl);
	link_remove(&c->data);
	mux->nconns--;
	mux->cap_logged = false;
	uv_close((uv_handle_t *)&c->pipe, conn_on_closed);
}

/* Closes the connection and tells the guest with an RST. */
static void conn_close_rst(struct vsock_conn *c)
{
	struct vsock_hdr rst;

	/* A host connection still reading its CONNECT line is unknown to the guest. */
	if (c->state != CONN_HANDSHAKE) {
		conn_hdr(c, VSOCK_OP_RST, 0, 0, &rst);
		mux_queue_rst(c->mux, &rst, false);
	}
	vsock_mux__conn_close(c);
}

/* A problem on one connection: logged once, counted, RST, closed. */
void vsock_mux__conn_abort(struct vsock_conn *c, const char *reason, int r)
{
	if (c->state == CONN_CLOSING)
		return;
	vsock_mux__conn_log(c, LOG_LEVEL_WARN, "vsock_conn_reset", reason, r);
	c->mux->stats.connections_reset++;
	conn_close_rst(c);
}

/* A guest packet that breaks the protocol on this connection: as
 * vsock_mux__conn_abort(), and the line quotes the packet's fields. */
static void conn_reject(struct vsock_conn *c, const struct vsock_hdr *h, const char *reason)
{
	struct log_line l;

	if (c->state == CONN_CLOSING)
		return;
	if (log_begin(&l, LOG_LEVEL_WARN, "vsock_conn_reset")) {
		log_uint(&l, "guest_cid", c->mux->guest_cid);
		log_uint(&l, "guest_port", c->guest_port);
		log_uint(&l, "host_port", c->host_port);
		log_str(&l, "reason", reason);
		log_uint(&l, "src_cid", h->src_cid);
		log_uint(&l, "dst_cid", h->dst_cid);
		log_uint(&l, "type", h->type);
		log_uint(&l, "op", h->op);
		log_uint(&l, "len", h->len);
		log_uint(&l, "flags", h->flags);
		log_end(&l);
	}
	c->mux->stats.connections_reset++;
	c->mux->stats.protocol_errors++;
	conn_close_rst(c);
}

/* ---- credit and I/O -------------------------------------------------------- */

/*
 * The credit the guest was last told: buf_alloc - (rx_cnt - adv_fwd_cnt).
 * It is never above the ring's real free space (adv_fwd_cnt <= fwd_cnt) and
 * rx_cnt - adv_fwd_cnt <= buf_alloc holds because RW is checked against it.
 */
static uint32_t conn_told_free(const struct vsock_conn *c)
{
	return c->mux->buf_alloc - (c->rx_cnt - c->adv_fwd_cnt);
}

/* What the guest still accepts: its buf_alloc minus what it has not consumed. */
static uint32_t conn_guest_credit(const struct vsock_conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

	/* A peer fwd_cnt ahead of tx_cnt is a lie; it earns no credit. */
	return in_flight > c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static uint32_t conn_read_room(const struct vsock_conn *c)
{
	uint32_t credit, room = ring_free(&c->to_guest);

	if (c->unix_eof || c->guest_shut_rcv)
		return 0;
	if (c->state == CONN_HANDSHAKE)
		return room;
	if (c->state != CONN_ESTABLISHED)
		return 0;
	credit = conn_guest_credit(c);
	if (credit <= c->to_guest.len)
		return 0;
	return credit - c->to_guest.len < room ? credit - c->to_guest.len : room;
}

static void conn_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct vsock_conn *c = h->data;
	uint32_t room = conn_read_room(c), span;
	uint8_t *p;

	(void)suggested;
	if (room == 0 || !c->to_guest.data) {
		*buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS: stop reading */
		return;
	}
	p = ring_tail(&c->to_guest, &span);
	*buf = uv_buf_init((char *)p, span < room ? span : room);
}

static void conn_on_written(uv_write_t *req, int status)
{
	struct vsock_conn *c = req->data;
	struct vsock_mux *mux = c->mux;
	uint32_t told_free;

	if (c->state == CONN_CLOSING)
		return;
	if (status < 0) {
		vsock_mux__conn_abort(c, "write to Unix socket failed", status);
		goto out;
	}
	ring_consume(&c->to_unix, c->writing);
	c->fwd_cnt += c->writing;
	c->writing = 0;
	/* Once what the guest was told is free falls under half and we have
	 * freed more, it may be waiting: tell it. */
	told_free = conn_told_free(c);
	if (c->fwd_cnt != c->adv_fwd_cnt && told_free < mux->buf_alloc / 2)
		c->ctrl_pending |= CTRL_CREDIT_UPDATE;
	vsock_mux__conn_sync(c);
out:
	vsock_mux__notify(mux);
}

static void conn_on_shutdown(uv_shutdown_t *req, int status)
{
	struct vsock_conn *c = req->data;
	struct vsock_mux *mux = c->mux;

	(void)status; /* failed means the peer is gone: nothing left to flush either way */
	if (c->state == CONN_CLOSING)
		return;
	c->shut_wr_done = true;
	vsock_mux__conn_sync(c);
	vsock_mux__notify(mux);
}

static void conn_on_ok_written(uv_write_t *req, int status)
{
	struct vsock_conn *c = req->data;
	struct vsock_mux *mux = c->mux;

	if (c->state == CONN_CLOSING || status >= 0)
		return;
	vsock_mux__conn_abort(c, "write of OK line failed", status);
	vsock_mux__notify(mux);
}

/* One write in flight at a time, then SHUT_WR once the guest's SEND-shutdown
 * has been flushed.  Returns false if the connection was aborted. */
static bool conn_flush(struct vsock_conn *c)
{
	int r;

	if (c->state != CONN_ESTABLISHED || c->writing)
		return true;
	if (c->to_unix.len > 0) {
		uint32_t n;
		const uint8_t *p = ring_head(&c->to_unix, &n);
		uv_buf_t b = uv_buf_init((char *)(uintptr_t)p, n);

		c->write_req.data = c;
		if ((r = uv_write(&c->write_req, (uv_stream_t *)&c->pipe, &b, 1,
				  conn_on_written)) < 0) {
			vsock_mux__conn_abort(c, "write to Unix socket failed", r);
			return false;
		}
		c->writing = n;
		return true;
	}
	if (c->guest_shut_send && !c->shut_wr_started) {
		c->shut_wr_started = true;
		c->shutdown_req.data = c;
		if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->pipe, conn_on_shutdown) < 0)
			c->shut_wr_done = true; /* not connected any more: nothing to flush */
	}
	return true;
}

static void conn_set_listed(struct vsock_mux *mux, struct link *head, struct link *l, bool on)
{
	if (on && !link_linked(l)) {
		link_append(head, l);
		mux->kick = true;
	} else if (!on && link_linked(l)) {
		link_remove(l);
	}
}

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Re-derives lists, reading, writing and completion from the state. */
void vsock_mux__conn_sync(struct vsock_conn *c)
{
	struct vsock_mux *mux = c->mux;
	bool ctrl, data, to_unix_done, to_guest_done;
	int r;

	if (c->state == CONN_CLOSING)
		return;
	if (!conn_flush(c))
		return;
	ctrl = (c->ctrl_pending & ~CTRL_SHUTDOWN) != 0 ||
	       ((c->ctrl_pending & CTRL_SHUTDOWN) && c->to_guest.len == 0);
	data = c->state == CONN_ESTABLISHED && c->to_guest.len > 0 && conn_guest_credit(c) > 0;
	conn_set_listed(mux, &mux->ctrl, &c->ctrl, ctrl);
	conn_set_listed(mux, &mux->data, &c->data, data);

	if (conn_read_room(c) > 0 && !c->reading) {
		c->pipe.data = c;
		if ((r = uv_read_start((uv_stream_t *)&c->pipe, conn_on_alloc, conn_on_read)) < 0) {
			vsock_mux__conn_abort(c, "read from Unix socket failed", r);
			return;
		}
		c->reading = true;
	} else if (conn_read_room(c) == 0 && c->reading) {
		uv_read_stop((uv_stream_t *)&c->pipe);
		c->reading = false;
	}

	/* Both directions done: Linux expects the RST that ends the connection
	 * from the side that sees the second shutdown (it waits for it after
	 * sending SHUTDOWN(RCV|SEND) itself). */
	to_unix_done = c->guest_shut_send && c->to_unix.len == 0 && !c->writing && c->shut_wr_done;
	to_guest_done = c->guest_shut_rcv || c->shutdown_sent;
	if (c->state == CONN_ESTABLISHED && to_unix_done && to_guest_done)
		conn_close_rst(c);
}

/* ---- guest -> host connections ---------------------------------------------- */

static int conn_establish(struct vsock_conn *c)
{
	int r;

	if ((r = ring_alloc(&c->to_unix, c->mux->buf_alloc)) < 0 ||
	    (r = ring_alloc(&c->to_guest, c->mux->buf_alloc)) < 0)
		return r;
	c->state = CONN_ESTABLISHED;
	c->mux->stats.connections_opened++;
	return 0;
}

static void conn_on_connected(uv_connect_t *req, int status)
{
	struct vsock_conn *c = req->data;
	struct vsock_mux *mux = c->mux;
	int r;

	if (c->state == CONN_CLOSING)
		return;
	if (status < 0) {
		/* Nobody listens on PATH_P: the guest's connect() gets ECONNRESET. */
		vsock_mux__conn_log(c, LOG_LEVEL_INFO, "vsock_connect_failed",
				    "connect to PATH_P failed", status);
		mux->stats.connections_reset++;
		conn_close_rst(c);
		goto out;
	}
	if ((r = conn_establish(c)) < 0) {
		vsock_mux__conn_abort(c, "out of memory", r);
		goto out;
	}
	c->ctrl_pending |= CTRL_RESPONSE;
	vsock_mux__conn_sync(c);
out:
	vsock_mux__notify(mux);
}

struct vsock_conn *vsock_mux__conn_new(struct vsock_mux *mux)
{
	struct vsock_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->mux = mux;
	link_init(&c->all);
	link_init(&c->ctrl);
	link_init(&c->data);
	uv_pipe_init(mux->loop, &c->pipe, 0);
	c->pipe.data = c;
	link_append(&mux->all, &c->all);
	mux->nconns++;
	mux->handles++;
	return c;
}

static void mux_stray_rst(struct vsock_mux *mux, const struct vsock_hdr *h)
{
	struct vsock_hdr rst;

	mux_hdr(mux, h->dst_port, h->src_port, VSOCK_OP_RST, &rst);
	mux_queue_rst(mux, &rst, true);
}

static void mux_guest_request(struct vsock_mux *mux, const struct vsock_hdr *h)
{
	struct sockaddr_un sun;
	struct vsock_conn *c;
	int n;

	if (mux->nconns >= VSOCK_MUX_MAX_CONNECTIONS) {
		struct log_line l;

		/* Once per time the cap is reached: a guest looping on REQUEST
		 * must not flood the log. */
		if (!mux->cap_logged && log_begin(&l, LOG_LEVEL_WARN, "vsock_conn_refused")) {
			mux->cap_logged = true;
			log_uint(&l, "guest_cid", mux->guest_cid);
			log_uint(&l, "guest_port", h->src_port);
			log_uint(&l, "host_port", h->dst_port);
			log_str(&l, "reason", "connection cap reached");
			log_end(&l);
		}
		mux->stats.connections_reset++;
		mux_stray_rst(mux, h);
		return;
	}
	c = vsock_mux__conn_new(mux);
	if (!c) {
		mux_stray_rst(mux, h);
		return;
	}
	c->state = CONN_CONNECTING;
	c->guest_port = h->src_port;
	c->host_port = h->dst_port;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	vsock_mux__hash_insert(mux, c);
	/* Length checked in vsock_mux_new(): "_4294967295" always fits. */
	n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s_%u", mux->uds_path, c->host_port);
	if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
		vsock_mux__conn_abort(c, "path too long", -ENAMETOOLONG);
		return;
	}
	c->connect_req.data = c;
	uv_pipe_connect(&c->connect_req, &c->pipe, sun.sun_path, conn_on_connected);
}

/* ---- packets from the guest --------------------------------------------------- */

typedef void conn_op_fn(struct vsock_conn *c, const struct vsock_hdr *h, const uint8_t *payload);

static void conn_op_response(struct vsock_conn *c, const struct vsock_hdr *h,
			     const uint8_t *payload)
{
	int n, r;

	(void)h;
	(void)payload;
	if ((r = conn_establish(c)) < 0) {
		vsock_mux__conn_abort(c, "out of memory", r);
		return;
	}
	n = snprintf(c->ok_line, sizeof(c->ok_line), "OK %u\n", c->host_port);
	uv_buf_t b = uv_buf_init(c->ok_line, (unsigned)n);
	c->ok_req.data = c;
	if ((r = uv_write(&c->ok_req, (uv_stream_t *)&c->pipe, &b, 1, conn_on_ok_written)) < 0)
		vsock_mux__conn_abort(c, "write of OK line failed", r);
}

static void conn_op_rw(struct vsock_conn *c, const struct vsock_hdr *h, const uint8_t *payload)
{
	if (c->guest_shut_send) {
		conn_reject(c, h, "RW after SHUTDOWN(SEND)");
		return;
	}
	/* The guest may send only within the credit it was given. */
	if (h->len > conn_told_free(c)) {
		conn_reject(c, h, "RW over credit");
		return;
	}
	ring_push(&c->to_unix, payload, h->len);
	c->rx_cnt += h->len;
	c->mux->stats.bytes_from_guest += h->len;
}

static void conn_op_shutdown(struct vsock_conn *c, const struct vsock_hdr *h,
			     const uint8_t *payload)
{
	(void)payload;
	if (h->flags & ~(VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND)) {
		conn_reject(c, h, "unknown SHUTDOWN flags");
		return;
	}
	if (h->flags & VSOCK_SHUTDOWN_SEND)
		c->guest_shut_send = true;
	if (h->flags & VSOCK_SHUTDOWN_RCV) {
		/* It reads no more: what we hold for it and our SHUTDOWN are moot. */
		c->guest_shut_rcv = true;
		c->to_guest.len = 0;
		c->to_guest.head = 0;
		c->ctrl_pending &= ~CTRL_SHUTDOWN;
	}
}

static void conn_op_credit_update(struct vsock_conn *c, const struct vsock_hdr *h,
				  const uint8_t *payload)
{
	/* The header's buf_alloc/fwd_cnt were taken already. */
	(void)c;
	(void)h;
	(void)payload;
}

static void conn_op_credit_request(struct vsock_conn *c, const struct vsock_hdr *h,
				   const uint8_t *payload)
{
	(void)h;
	(void)payload;
	c->ctrl_pending |= CTRL_CREDIT_UPDATE;
}

#define IN(s) (1u << (s))

/* What the guest may send on a live connection, and in which states.  RST is
 * handled before (any state); anything else, REQUEST included, resets. */
static const struct {
	uint16_t op;
	unsigned states;
	conn_op_fn *fn;
} conn_ops[] = {
	{ VSOCK_OP_RESPONSE, IN(CONN_REQUEST_SENT), conn_op_response },
	{ VSOCK_OP_RW, IN(CONN_ESTABLISHED), conn_op_rw },
	{ VSOCK_OP_SHUTDOWN, IN(CONN_ESTABLISHED), conn_op_shutdown },
	{ VSOCK_OP_CREDIT_UPDATE, IN(CONN_ESTABLISHED), conn_op_credit_update },
	{ VSOCK_OP_CREDIT_REQUEST, IN(CONN_ESTABLISHED), conn_op_credit_request },
};

static void conn_from_guest(struct vsock_conn *c, const struct vsock_hdr *h,
			    const uint8_t *payload)
{
	/* "Every packet from the guest updates the peer's buf_alloc/fwd_cnt". */
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	if (h->op == VSOCK_OP_RST) {
		c->mux->stats.connections_reset++;
		vsock_mux__conn_close(c);
		return;
	}
	if (h->op != VSOCK_OP_RW && h->len != 0) {
		conn_reject(c, h, "payload on a control packet");
		return;
	}
	for (size_t i = 0; i < sizeof(conn_ops) / sizeof(conn_ops[0]); i++) {
		if (conn_ops[i].op != h->op)
			continue;
		if (!(conn_ops[i].states & IN(c->state)))
			break;
		conn_ops[i].fn(c, h, payload);
		vsock_mux__conn_sync(c);
		return;
	}
	conn_reject(c, h, h->op == VSOCK_OP_REQUEST ? "REQUEST for a live connection" :
			  "op not allowed in this state");
}

void vsock_mux_from_guest(struct vsock_mux *mux, const struct vsock_hdr *h, const uint8_t *payload)
{
	struct vsock_conn *c;

	if (mux->freeing)
		return;
	c = mux_find(mux, h->src_port, h->dst_port);
	if (h->src_cid != mux->guest_cid || h->dst_cid != VSOCK_HOST_CID ||
	    h->type != VSOCK_TYPE_STREAM || h->len > VSOCK_MAX_PAYLOAD ||
	    (h->len > 0 && !payload)) {
		if (c)
			conn_reject(c, h, "bad CID, type or length");
		else
			mux->stats.protocol_errors++;
		goto out;
	}
	if (c) {
		conn_from_guest(c, h, payload);
	} else if (h->op == VSOCK_OP_REQUEST) {
		mux_guest_request(mux, h);
	} else if (h->op != VSOCK_OP_RST) {
		/* Late packets of a connection already reset land here too. */
		mux->stats.protocol_errors++;
		mux_stray_rst(mux, h);
	}
out:
	vsock_mux__notify(mux);
}

/* ---- packets to the guest ---------------------------------------------------------- */

static size_t conn_emit_ctrl(struct vsock_conn *c, uint8_t *buf)
{
	static const struct {
		unsigned bit;
		uint16_t op;
		uint32_t flags;
	} order[] = {
		{ CTRL_REQUEST, VSOCK_OP_REQUEST, 0 },
		{ CTRL_RESPONSE, VSOCK_OP_RESPONSE, 0 },
		{ CTRL_CREDIT_UPDATE, VSOCK_OP_CREDIT_UPDATE, 0 },
		{ CTRL_SHUTDOWN, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND },
	};
	struct vsock_hdr h;

	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		if (!(c->ctrl_pending & order[i].bit))
			continue;
		if (order[i].bit == CTRL_SHUTDOWN) {
			if (c->to_guest.len > 0)
				continue;
			c->shutdown_sent = true;
		}
		c->ctrl_pending &= ~order[i].bit;
		conn_hdr(c, order[i].op, order[i].flags, 0, &h);
		vsock_hdr_encode(&h, buf);
		return VSOCK_HDR_SIZE;
	}
	return 0;
}

static size_t conn_emit_data(struct vsock_conn *c, uint8_t *buf, size_t cap)
{
	struct vsock_hdr h;
	size_t n = c->to_guest.len;
	uint32_t credit = conn_guest_credit(c);

	if (n > credit)
		n = credit;
	if (n > cap - VSOCK_HDR_SIZE)
		n = cap - VSOCK_HDR_SIZE;
	if (n > VSOCK_MAX_PAYLOAD)
		n = VSOCK_MAX_PAYLOAD;
	if (n == 0)
		return 0;
	conn_hdr(c, VSOCK_OP_RW, 0, (uint32_t)n, &h);
	vsock_hdr_encode(&h, buf);
	ring_pop(&c->to_guest, buf + VSOCK_HDR_SIZE, (uint32_t)n);
	c->tx_cnt += (uint32_t)n;
	c->mux->stats.bytes_to_guest += n;
	/* A pending CREDIT_UPDATE is said by this header as well. */
	return VSOCK_HDR_SIZE + n;
}

size_t vsock_mux_to_guest(struct vsock_mux *mux, uint8_t *buf, size_t cap)
{
	size_t n;

	if (cap < VSOCK_HDR_SIZE || mux->freeing)
		return 0;
	if (mux->rst_len > 0) {
		const struct vsock_hdr *h = &mux->rst_q[mux->rst_head];

		vsock_hdr_encode(h, buf);
		mux->rst_head = (mux->rst_head + 1) % MUX_RST_QUEUE;
		mux->rst_len--;
		if (mux->rst_stray > mux->rst_len)
			mux->rst_stray = mux->rst_len;
		return VSOCK_HDR_SIZE;
	}
	while (link_linked(&mux->ctrl)) {
		struct vsock_conn *c = link_entry(mux->ctrl.next, struct vsock_conn, ctrl);

		link_remove(&c->ctrl);
		n = conn_emit_ctrl(c, buf);
		vsock_mux__conn_sync(c);
		if (n > 0)
			return n;
	}
	/* A bare header has no room for data: nothing moves (and the round-robin
	 * below would never end). */
	while (cap > VSOCK_HDR_SIZE && link_linked(&mux->data)) {
		struct vsock_conn *c = link_entry(mux->data.next, struct vsock_conn, data);

		/* Off the list and back on at its tail: round-robin. */
		link_remove(&c->data);
		n = conn_emit_data(c, buf, cap);
		vsock_mux__conn_sync(c);
		if (n > 0)
			return n;
	}
	return 0;
}

int vsock_mux_has_pending(const struct vsock_mux *mux)
{
	return !mux->freeing &&
	       (mux->rst_len > 0 || link_linked(&mux->ctrl) || link_linked(&mux->data));
}

/* ---- reading a Unix socket ------------------------------------------------------------ */

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct vsock_conn *c = s->data;
	struct vsock_mux *mux = c->mux;

	(void)buf;
	if (c->state == CONN_CLOSING)
		return;
	if (nread == UV_ENOBUFS) {
		/* No room or no credit: conn_sync restarts reading when there is. */
		uv_read_stop(s);
		c->reading = false;
	} else if (nread > 0) {
		c->to_guest.len += (uint32_t)nread;
		if (c->state == CONN_HANDSHAKE)
			vsock_mux__handshake(c);
	} else if (nread == UV_EOF) {
		if (c->state == CONN_HANDSHAKE) {
			vsock_mux__conn_log(c, LOG_LEVEL_WARN, "vsock_host_connect_refused",
					    "EOF before the CONNECT line", 0);
			vsock_mux__conn_close(c);
			goto out;
		}
		c->unix_eof = true;
		c->ctrl_pending |= CTRL_SHUTDOWN;
	} else if (nread < 0) {
		vsock_mux__conn_abort(c, "read from Unix socket failed", (int)nread);
		goto out;
	}
	vsock_mux__conn_sync(c);
out:
	vsock_mux__notify(mux);
}

/* ---- lifecycle --------------------------------------------------------------------- */

int vsock_mux_new(uv_loop_t *loop, const struct vsock_mux_config *config,
		  const struct vsock_mux_hooks *hooks, struct vsock_mux **ret_mux)
{
	struct sockaddr_un sun;
	struct vsock_mux *mux;
	uint32_t buf_alloc = config->buf_alloc ? config->buf_alloc : VSOCK_MUX_DEFAULT_BUF_ALLOC;
	int r;

	/* PATH_4294967295 must fit sun_path: libuv would truncate it silently. */
	if (!config->uds_path || !config->uds_path[0] ||
	    strlen(config->uds_path) + sizeof("_4294967295") > sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	/* CIDs are 32-bit in practice (Linux); 0-2 are reserved, ~0 is "any". */
	if (config->guest_cid < 3 || config->guest_cid >= UINT32_MAX)
		return -EINVAL;
	if (buf_alloc < MUX_BUF_ALLOC_MIN || buf_alloc > MUX_BUF_ALLOC_MAX)
		return -EINVAL;
	mux = calloc(1, sizeof(*mux));
	if (!mux)
		return -ENOMEM;
	mux->uds_path = strdup(config->uds_path);
	if (!mux->uds_path) {
		r = -ENOMEM;
		goto fail;
	}
	mux->loop = loop;
	mux->guest_cid = config->guest_cid;
	mux->buf_alloc = buf_alloc;
	mux->request_timeout_ms = config->request_timeout_ms ? config->request_timeout_ms :
							       VSOCK_MUX_REQUEST_TIMEOUT_MS;
	if (hooks)
		mux->hooks = *hooks;
	link_init(&mux->all);
	link_init(&mux->ctrl);
	link_init(&mux->data);
	if ((r = vsock_mux__listen(mux)) < 0) {
		if (!mux->listener_open)
			goto fail;
		vsock_mux_free(mux); /* its handles exist: they close as in free() */
		return r;
	}
	*ret_mux = mux;
	return 0;
fail:
	free(mux->uds_path);
	free(mux);
	return r;
}

static void mux_close_all(struct vsock_mux *mux)
{
	while (link_linked(&mux->all))
		vsock_mux__conn_close(link_entry(mux->all.next, struct vsock_conn, all));
	mux->rst_head = mux->rst_len = mux->rst_stray = 0;
	mux->kick = false;
}

void vsock_mux_reset(struct vsock_mux *mux)
{
	mux_close_all(mux);
}

void vsock_mux_get_stats(const struct vsock_mux *mux, struct vsock_mux_stats *ret_stats)
{
	*ret_stats = mux->stats;
}

void vsock_mux_free(struct vsock_mux *mux)
{
	if (!mux)
		return;
	mux_close_all(mux);
	mux->freeing = true;
	vsock_mux__close_handles(mux);
	vsock_mux__maybe_release(mux);
}
