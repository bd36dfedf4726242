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
 * A connection is on a list iff it has something to send there; conn_sync()
 * re-derives list membership, reading and writing from the state after
 * every change, so no event handler has to remember them.
 *
 * Lifetime: a connection leaves the table and the lists when it is closed
 * (state CLOSING) and its memory goes in the pipe's close callback; the mux
 * itself goes when vsock_mux_free() was called and its last handle closed.
 */
#include "vsock_mux.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

#define MUX_BUCKETS 1024u
/* Final RSTs (at most one per connection ever closed while the guest did
 * not drain) plus replies to strays, which may use only MUX_STRAY_RST_MAX. */
#define MUX_RST_QUEUE (2u * VSOCK_MUX_MAX_CONNECTIONS)
#define MUX_STRAY_RST_MAX 64u
#define MUX_BACKLOG 128
#define MUX_BUF_ALLOC_MIN 4096u
#define MUX_BUF_ALLOC_MAX (64u * 1024u * 1024u)
/* "CONNECT 4294967295\n" is 19 bytes; the line is refused past this. */
#define MUX_CONNECT_LINE_MAX 32u
/* Host-side ports of host-initiated connections, counting down. */
#define MUX_HOST_PORT_FIRST 0xffffffffu
#define MUX_HOST_PORT_LAST (1u << 30)

struct link {
	struct link *prev, *next;
};

static void link_init(struct link *l)
{
	l->prev = l->next = l;
}

static bool link_linked(const struct link *l)
{
	return l->next != l;
}

static void link_remove(struct link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	link_init(l);
}

static void link_append(struct link *head, struct link *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

#define link_entry(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* A byte ring of fixed capacity: the memory never moves once allocated. */
struct ring {
	uint8_t *data;
	uint32_t cap, head, len;
};

static int ring_alloc(struct ring *r, uint32_t cap)
{
	if (r->data)
		return 0;
	r->data = malloc(cap);
	if (!r->data)
		return -ENOMEM;
	r->cap = cap;
	r->head = r->len = 0;
	return 0;
}

static uint32_t ring_free(const struct ring *r)
{
	return r->cap - r->len;
}

/* The contiguous free span at the tail. */
static uint8_t *ring_tail(const struct ring *r, uint32_t *ret_len)
{
	uint32_t tail = (uint32_t)(((uint64_t)r->head + r->len) % r->cap);
	uint32_t n = r->cap - tail;

	*ret_len = n < ring_free(r) ? n : ring_free(r);
	return r->data + tail;
}

/* The contiguous data span at the head. */
static const uint8_t *ring_head(const struct ring *r, uint32_t *ret_len)
{
	uint32_t n = r->cap - r->head;

	*ret_len = n < r->len ? n : r->len;
	return r->data + r->head;
}

static void ring_consume(struct ring *r, uint32_t n)
{
	r->head = (uint32_t)(((uint64_t)r->head + n) % r->cap);
	r->len -= n;
	if (r->len == 0)
		r->head = 0;
}

/* Caller checked n <= ring_free(). */
static void ring_push(struct ring *r, const uint8_t *src, uint32_t n)
{
	while (n > 0) {
		uint32_t span;
		uint8_t *dst = ring_tail(r, &span);
		uint32_t k = n < span ? n : span;

		memcpy(dst, src, k);
		r->len += k;
		src += k;
		n -= k;
	}
}

/* Moves the first n (<= len) bytes out into dst. */
static void ring_pop(struct ring *r, uint8_t *dst, uint32_t n)
{
	while (n > 0) {
		uint32_t span;
		const uint8_t *src = ring_head(r, &span);
		uint32_t k = n < span ? n : span;

		memcpy(dst, src, k);
		ring_consume(r, k);
		dst += k;
		n -= k;
	}
}

static void ring_release(struct ring *r)
{
	free(r->data);
	*r = (struct ring){ 0 };
}

enum conn_state {
	CONN_CONNECTING,    /* guest REQUEST, uv_pipe_connect in flight */
	CONN_HANDSHAKE,     /* host connection, reading "CONNECT P\n" */
	CONN_REQUEST_SENT,  /* host connection, waiting for the guest's RESPONSE */
	CONN_ESTABLISHED,
	CONN_CLOSING,       /* out of the table, waiting for close_cb */
};

#define CTRL_REQUEST 1u
#define CTRL_RESPONSE 2u
#define CTRL_CREDIT_UPDATE 4u
#define CTRL_SHUTDOWN 8u

struct vsock_conn {
	struct vsock_mux *mux;
	uv_pipe_t pipe;
	uv_connect_t connect_req;
	uv_write_t write_req;
	uv_write_t ok_req;
	uv_shutdown_t shutdown_req;
	char ok_line[24];
	struct link all, ctrl, data;
	struct vsock_conn *hash_next;
	bool hashed;
	enum conn_state state;
	uint32_t guest_port, host_port;
	uint64_t deadline; /* HANDSHAKE, REQUEST_SENT: uv_now() by which to move on */
	unsigned ctrl_pending;
	struct ring to_unix, to_guest;
	/* guest -> Unix: rx_cnt received, fwd_cnt written, adv_fwd_cnt last told */
	uint32_t rx_cnt, fwd_cnt, adv_fwd_cnt;
	/* Unix -> guest: tx_cnt sent, the guest's buf_alloc and fwd_cnt */
	uint32_t tx_cnt, peer_buf_alloc, peer_fwd_cnt;
	uint32_t writing; /* bytes of to_unix in the uv_write in flight */
	bool reading, unix_eof, shut_wr_started, shut_wr_done, shutdown_sent;
	bool guest_shut_send, guest_shut_rcv;
};

struct vsock_mux {
	uv_loop_t *loop;
	char *uds_path;
	uint64_t guest_cid;
	uint32_t buf_alloc;
	uint32_t request_timeout_ms;
	struct vsock_mux_hooks hooks;
	uv_pipe_t listener;
	bool listener_open;
	/* Expires CONNECT lines and REQUESTs of host-initiated connections;
	 * runs only while one waits. */
	uv_timer_t timer;
	bool timer_open;
	dev_t listen_dev;
	ino_t listen_ino;
	unsigned handles; /* open uv handles; the mux is freed when freeing and 0 */
	bool freeing;
	bool kick;        /* something became pending since the hook was called */
	unsigned nconns;
	bool cap_logged;
	uint32_t next_host_port;
	struct vsock_conn *buckets[MUX_BUCKETS];
	struct link all, ctrl, data;
	struct vsock_hdr rst_q[MUX_RST_QUEUE];
	unsigned rst_head, rst_len, rst_stray;
	struct vsock_mux_stats stats;
};

/* A closed-over rejected host connection (cap reached). */
struct mux_reject {
	struct vsock_mux *mux;
	uv_pipe_t pipe;
};

static void conn_sync(struct vsock_conn *c);

/* ---- helpers ------------------------------------------------------------- */

static void mux_maybe_release(struct vsock_mux *mux)
{
	if (!mux->freeing || mux->handles > 0)
		return;
	free(mux->uds_path);
	free(mux);
}

/* Tells the device once, at the end of an entry point, that packets wait. */
static void mux_notify(struct vsock_mux *mux)
{
	if (!mux->kick || mux->freeing)
		return;
	mux->kick = false;
	if (vsock_mux_has_pending(mux) && mux->hooks.to_guest_ready)
		mux->hooks.to_guest_ready(mux->hooks.ctx);
}

static void conn_log(const struct vsock_conn *c, enum log_level level, const char *event,
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

static void mux_hash_insert(struct vsock_mux *mux, struct vsock_conn *c)
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
	mux_maybe_release(mux);
}

/* Closes the Unix side without telling the guest anything. */
static void conn_close(struct vsock_conn *c)
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
	conn_close(c);
}

/* A problem on one connection: logged once, counted, RST, closed. */
static void conn_abort(struct vsock_conn *c, const char *reason, int r)
{
	if (c->state == CONN_CLOSING)
		return;
	conn_log(c, LOG_LEVEL_WARN, "vsock_conn_reset", reason, r);
	c->mux->stats.connections_reset++;
	conn_close_rst(c);
}

/* A guest packet that breaks the protocol on this connection: as
 * conn_abort(), and the line quotes the packet's fields. */
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
		conn_abort(c, "write to Unix socket failed", status);
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
	conn_sync(c);
out:
	mux_notify(mux);
}

static void conn_on_shutdown(uv_shutdown_t *req, int status)
{
	struct vsock_conn *c = req->data;
	struct vsock_mux *mux = c->mux;

	(void)status; /* failed means the peer is gone: nothing left to flush either way */
	if (c->state == CONN_CLOSING)
		return;
	c->shut_wr_done = true;
	conn_sync(c);
	mux_notify(mux);
}

static void conn_on_ok_written(uv_write_t *req, int status)
{
	struct vsock_conn *c = req->data;
	struct vsock_mux *mux = c->mux;

	if (c->state == CONN_CLOSING || status >= 0)
		return;
	conn_abort(c, "write of OK line failed", status);
	mux_notify(mux);
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
			conn_abort(c, "write to Unix socket failed", r);
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
static void conn_sync(struct vsock_conn *c)
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
			conn_abort(c, "read from Unix socket failed", r);
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
		conn_log(c, LOG_LEVEL_INFO, "vsock_connect_failed", "connect to PATH_P failed",
			 status);
		mux->stats.connections_reset++;
		conn_close_rst(c);
		goto out;
	}
	if ((r = conn_establish(c)) < 0) {
		conn_abort(c, "out of memory", r);
		goto out;
	}
	c->ctrl_pending |= CTRL_RESPONSE;
	conn_sync(c);
out:
	mux_notify(mux);
}

static struct vsock_conn *conn_new(struct vsock_mux *mux)
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
	c = conn_new(mux);
	if (!c) {
		mux_stray_rst(mux, h);
		return;
	}
	c->state = CONN_CONNECTING;
	c->guest_port = h->src_port;
	c->host_port = h->dst_port;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	mux_hash_insert(mux, c);
	/* Length checked in vsock_mux_new(): "_4294967295" always fits. */
	n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s_%u", mux->uds_path, c->host_port);
	if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
		conn_abort(c, "path too long", -ENAMETOOLONG);
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
		conn_abort(c, "out of memory", r);
		return;
	}
	n = snprintf(c->ok_line, sizeof(c->ok_line), "OK %u\n", c->host_port);
	uv_buf_t b = uv_buf_init(c->ok_line, (unsigned)n);
	c->ok_req.data = c;
	if ((r = uv_write(&c->ok_req, (uv_stream_t *)&c->pipe, &b, 1, conn_on_ok_written)) < 0)
		conn_abort(c, "write of OK line failed", r);
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
		conn_close(c);
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
		conn_sync(c);
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
	mux_notify(mux);
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
		conn_sync(c);
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
		conn_sync(c);
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

/* ---- host -> guest connections ------------------------------------------------------- */

/*
 * "CONNECT P\n", P a decimal u32 without sign, spaces or leading zeros.
 * Returns 1 and the line's length when complete, 0 when more is needed,
 * -EINVAL when the bytes cannot become a valid line.
 */
static int mux_parse_connect(const uint8_t *p, size_t len, uint32_t *ret_port,
			     size_t *ret_line_len)
{
	static const char prefix[] = "CONNECT ";
	const size_t plen = sizeof(prefix) - 1;
	size_t i, end;
	uint64_t v = 0;

	for (i = 0; i < len && i < plen; i++)
		if (p[i] != (uint8_t)prefix[i])
			return -EINVAL;
	for (end = plen; end < len && end < MUX_CONNECT_LINE_MAX && p[end] != '\n'; end++)
		if (p[end] < '0' || p[end] > '9')
			return -EINVAL;
	if (end >= MUX_CONNECT_LINE_MAX)
		return -EINVAL;
	if (end >= len)
		return 0;
	/* p[end] == '\n' */
	if (end == plen || (p[plen] == '0' && end - plen > 1) || end - plen > 10)
		return -EINVAL;
	for (i = plen; i < end; i++)
		v = v * 10 + (uint64_t)(p[i] - '0');
	if (v > UINT32_MAX)
		return -EINVAL;
	*ret_port = (uint32_t)v;
	*ret_line_len = end + 1;
	return 1;
}

static bool mux_host_port_used(const struct vsock_mux *mux, uint32_t port)
{
	for (const struct link *l = mux->all.next; l != &mux->all; l = l->next)
		if (link_entry(l, const struct vsock_conn, all)->host_port == port)
			return true;
	return false;
}

static int mux_alloc_host_port(struct vsock_mux *mux, uint32_t *ret_port)
{
	/* At most nconns ports are taken, so nconns + 1 tries find a free one. */
	for (unsigned tries = 0; tries <= VSOCK_MUX_MAX_CONNECTIONS; tries++) {
		uint32_t p = mux->next_host_port;

		mux->next_host_port = p == MUX_HOST_PORT_LAST ? MUX_HOST_PORT_FIRST : p - 1;
		if (!mux_host_port_used(mux, p)) {
			*ret_port = p;
			return 0;
		}
	}
	return -EADDRNOTAVAIL;
}

static void mux_on_timer(uv_timer_t *t)
{
	struct vsock_mux *mux = t->data;
	uint64_t now = uv_now(mux->loop);
	bool waiting = false;
	struct link *l, *next;

	for (l = mux->all.next; l != &mux->all; l = next) {
		struct vsock_conn *c = link_entry(l, struct vsock_conn, all);

		next = l->next; /* conn_abort() unlinks c */
		if (c->state != CONN_HANDSHAKE && c->state != CONN_REQUEST_SENT)
			continue;
		if (c->deadline > now)
			waiting = true;
		else if (c->state == CONN_HANDSHAKE)
			conn_abort(c, "no CONNECT line in time", -ETIMEDOUT);
		else
			conn_abort(c, "guest did not answer the REQUEST in time", -ETIMEDOUT);
	}
	if (!waiting)
		uv_timer_stop(t);
	mux_notify(mux);
}

/* A tick of a quarter of the timeout: a REQUEST expires within 1.25 times it. */
static void mux_arm_timer(struct vsock_mux *mux)
{
	uint64_t tick = mux->request_timeout_ms / 4 ? mux->request_timeout_ms / 4 : 1;

	if (mux->timer_open && !uv_is_active((uv_handle_t *)&mux->timer))
		uv_timer_start(&mux->timer, mux_on_timer, tick, tick);
}

static void conn_handshake(struct vsock_conn *c)
{
	uint32_t span, port = 0, host_port = 0;
	size_t line_len = 0;
	const uint8_t *p = ring_head(&c->to_guest, &span);
	int r;

	/* The line is at the start of a fresh ring, so it is contiguous. */
	r = mux_parse_connect(p, span, &port, &line_len);
	if (r == 0)
		return;
	if (r < 0) {
		conn_log(c, LOG_LEVEL_WARN, "vsock_host_connect_refused", "malformed CONNECT line", 0);
		c->mux->stats.protocol_errors++;
		conn_close(c);
		return;
	}
	if ((r = mux_alloc_host_port(c->mux, &host_port)) < 0) {
		conn_log(c, LOG_LEVEL_WARN, "vsock_host_connect_refused", "no free host port", r);
		conn_close(c);
		return;
	}
	/* Bytes after the line stay in to_guest and go after the RESPONSE. */
	ring_consume(&c->to_guest, (uint32_t)line_len);
	c->guest_port = port;
	c->host_port = host_port;
	c->state = CONN_REQUEST_SENT;
	c->ctrl_pending |= CTRL_REQUEST;
	c->deadline = uv_now(c->mux->loop) + c->mux->request_timeout_ms;
	mux_hash_insert(c->mux, c);
	mux_arm_timer(c->mux);
}

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct vsock_conn *c = s->data;
	struct vsock_mux *mux = c->mux;

	(void)buf;
	if (c->state == CONN_CLOSING)
		return;
	if (nread == UV_ENOBUFS) {
		/* No room or no credit: conn_sync() restarts reading when there is. */
		uv_read_stop(s);
		c->reading = false;
	} else if (nread > 0) {
		c->to_guest.len += (uint32_t)nread;
		if (c->state == CONN_HANDSHAKE)
			conn_handshake(c);
	} else if (nread == UV_EOF) {
		if (c->state == CONN_HANDSHAKE) {
			conn_log(c, LOG_LEVEL_WARN, "vsock_host_connect_refused",
				 "EOF before the CONNECT line", 0);
			conn_close(c);
			goto out;
		}
		c->unix_eof = true;
		c->ctrl_pending |= CTRL_SHUTDOWN;
	} else if (nread < 0) {
		conn_abort(c, "read from Unix socket failed", (int)nread);
		goto out;
	}
	conn_sync(c);
out:
	mux_notify(mux);
}

static void mux_on_reject_closed(uv_handle_t *h)
{
	struct mux_reject *rj = h->data;
	struct vsock_mux *mux = rj->mux;

	free(rj);
	mux->handles--;
	mux_maybe_release(mux);
}

/* Accepts and closes at once: an unaccepted connection would stall the listener. */
static void mux_reject(struct vsock_mux *mux, uv_stream_t *server)
{
	struct mux_reject *rj = calloc(1, sizeof(*rj));

	if (!rj)
		return;
	rj->mux = mux;
	uv_pipe_init(mux->loop, &rj->pipe, 0);
	rj->pipe.data = rj;
	mux->handles++;
	(void)uv_accept(server, (uv_stream_t *)&rj->pipe);
	uv_close((uv_handle_t *)&rj->pipe, mux_on_reject_closed);
}

static void mux_on_connection(uv_stream_t *server, int status)
{
	struct vsock_mux *mux = server->data;
	struct vsock_conn *c;
	int r;

	if (status < 0 || mux->freeing)
		return;
	if (mux->nconns >= VSOCK_MUX_MAX_CONNECTIONS) {
		log_event(LOG_LEVEL_WARN, "vsock_host_connect_refused", "reason",
			  "connection cap reached");
		mux_reject(mux, server);
		return;
	}
	c = conn_new(mux);
	if (!c) {
		mux_reject(mux, server);
		return;
	}
	c->state = CONN_HANDSHAKE;
	/* A silent host process must not hold a connection slot for ever. */
	c->deadline = uv_now(mux->loop) + mux->request_timeout_ms;
	mux_arm_timer(mux);
	if ((r = uv_accept(server, (uv_stream_t *)&c->pipe)) < 0 ||
	    (r = ring_alloc(&c->to_guest, mux->buf_alloc)) < 0) {
		conn_log(c, LOG_LEVEL_WARN, "vsock_host_connect_refused", "accept failed", r);
		conn_close(c);
		return;
	}
	conn_sync(c);
	mux_notify(mux);
}

/* ---- lifecycle --------------------------------------------------------------------- */

/* 1: something accepts on the path; 0: a stale socket; -errno. */
static int mux_socket_alive(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int r;

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0 || errno == EAGAIN ||
	    errno == EINPROGRESS)
		r = 1;
	else if (errno == ECONNREFUSED || errno == ENOENT)
		r = 0;
	else
		r = -errno;
	close(fd);
	return r;
}

static int mux_clear_path(const char *path, const struct sockaddr_un *sun)
{
	struct stat st;
	int r;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	if ((r = mux_socket_alive(sun)) != 0)
		return r > 0 ? -EADDRINUSE : r;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* The socket is made by hand so that it is 0600 from its first instant
 * (fchmod before bind; Linux gives the inode the socket's mode). */
static int mux_listen_fd(struct vsock_mux *mux, int *ret_fd)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	size_t n = strlen(mux->uds_path);
	int fd = -1, r;

	memcpy(sun.sun_path, mux->uds_path, n + 1);
	if ((r = mux_clear_path(mux->uds_path, &sun)) < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || fchmod(fd, 0600) < 0 ||
	    bind(fd, (const struct sockaddr *)&sun, sizeof(sun)) < 0) {
		r = -errno;
		goto fail;
	}
	if (lstat(mux->uds_path, &st) < 0 ||
	    ((st.st_mode & 0777) != 0600 && chmod(mux->uds_path, 0600) < 0) ||
	    listen(fd, MUX_BACKLOG) < 0) {
		r = -errno;
		unlink(mux->uds_path);
		goto fail;
	}
	mux->listen_dev = st.st_dev;
	mux->listen_ino = st.st_ino;
	*ret_fd = fd;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	return r;
}

static void mux_on_listener_closed(uv_handle_t *h)
{
	struct vsock_mux *mux = h->data;

	mux->handles--;
	mux_maybe_release(mux);
}

static void mux_on_timer_closed(uv_handle_t *h)
{
	struct vsock_mux *mux = h->data;

	mux->handles--;
	mux_maybe_release(mux);
}

/* The listener (its socket file unlinked) and the timer. */
static void mux_close_handles(struct vsock_mux *mux)
{
	struct stat st;

	if (mux->listener_open) {
		mux->listener_open = false;
		/* Unlink only our own inode: another mux may have replaced a stale one. */
		if (lstat(mux->uds_path, &st) == 0 && st.st_dev == mux->listen_dev &&
		    st.st_ino == mux->listen_ino)
			unlink(mux->uds_path);
		uv_close((uv_handle_t *)&mux->listener, mux_on_listener_closed);
	}
	if (mux->timer_open) {
		mux->timer_open = false;
		uv_close((uv_handle_t *)&mux->timer, mux_on_timer_closed);
	}
}

int vsock_mux_new(uv_loop_t *loop, const struct vsock_mux_config *config,
		  const struct vsock_mux_hooks *hooks, struct vsock_mux **ret_mux)
{
	struct sockaddr_un sun;
	struct vsock_mux *mux;
	uint32_t buf_alloc = config->buf_alloc ? config->buf_alloc : VSOCK_MUX_DEFAULT_BUF_ALLOC;
	int fd = -1, r;

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
	mux->next_host_port = MUX_HOST_PORT_FIRST;
	link_init(&mux->all);
	link_init(&mux->ctrl);
	link_init(&mux->data);
	if ((r = mux_listen_fd(mux, &fd)) < 0)
		goto fail;
	uv_pipe_init(loop, &mux->listener, 0);
	mux->listener.data = mux;
	mux->listener_open = true;
	mux->handles++;
	uv_timer_init(loop, &mux->timer);
	mux->timer.data = mux;
	mux->timer_open = true;
	mux->handles++;
	if ((r = uv_pipe_open(&mux->listener, fd)) < 0)
		close(fd); /* not the handle's yet */
	if (r < 0 ||
	    (r = uv_listen((uv_stream_t *)&mux->listener, MUX_BACKLOG, mux_on_connection)) < 0) {
		/* The handle exists now: it goes through close_cb like in free(). */
		vsock_mux_free(mux);
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
		conn_close(link_entry(mux->all.next, struct vsock_conn, all));
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
	mux_close_handles(mux);
	mux_maybe_release(mux);
}
