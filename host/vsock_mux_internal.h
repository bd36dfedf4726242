/*
 * vsock_mux_internal — what vsock_mux.c (the guest protocol, connections,
 * credit) and vsock_mux_host.c (host-initiated connections: the listener,
 * the CONNECT line, the request timer) share.  Not a public interface:
 * only these two files include it.  See vsock_mux.c for the design.
 */
#ifndef MIOSA_VSOCK_MUX_INTERNAL_H
#define MIOSA_VSOCK_MUX_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <uv.h>

#include "log.h"
#include "vsock_mux.h"

#define MUX_BUCKETS 1024u
/* Final RSTs (at most one per connection ever closed while the guest did
 * not drain) plus replies to strays, which may use only MUX_STRAY_RST_MAX. */
#define MUX_RST_QUEUE (2u * VSOCK_MUX_MAX_CONNECTIONS)
#define MUX_STRAY_RST_MAX 64u

struct link {
	struct link *prev, *next;
};

static inline void link_init(struct link *l)
{
	l->prev = l->next = l;
}

static inline bool link_linked(const struct link *l)
{
	return l->next != l;
}

static inline void link_remove(struct link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	link_init(l);
}

static inline void link_append(struct link *head, struct link *l)
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

static inline int ring_alloc(struct ring *r, uint32_t cap)
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

static inline uint32_t ring_free(const struct ring *r)
{
	return r->cap - r->len;
}

/* The contiguous free span at the tail. */
static inline uint8_t *ring_tail(const struct ring *r, uint32_t *ret_len)
{
	uint32_t tail = (uint32_t)(((uint64_t)r->head + r->len) % r->cap);
	uint32_t n = r->cap - tail;

	*ret_len = n < ring_free(r) ? n : ring_free(r);
	return r->data + tail;
}

/* The contiguous data span at the head. */
static inline const uint8_t *ring_head(const struct ring *r, uint32_t *ret_len)
{
	uint32_t n = r->cap - r->head;

	*ret_len = n < r->len ? n : r->len;
	return r->data + r->head;
}

static inline void ring_consume(struct ring *r, uint32_t n)
{
	r->head = (uint32_t)(((uint64_t)r->head + n) % r->cap);
	r->len -= n;
	if (r->len == 0)
		r->head = 0;
}

/* Caller checked n <= ring_free(). */
static inline void ring_push(struct ring *r, const uint8_t *src, uint32_t n)
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
static inline void ring_pop(struct ring *r, uint8_t *dst, uint32_t n)
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

static inline void ring_release(struct ring *r)
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

/* vsock_mux.c */
struct vsock_conn *vsock_mux__conn_new(struct vsock_mux *mux);
void vsock_mux__conn_sync(struct vsock_conn *c);
void vsock_mux__conn_close(struct vsock_conn *c);
void vsock_mux__conn_abort(struct vsock_conn *c, const char *reason, int r);
void vsock_mux__conn_log(const struct vsock_conn *c, enum log_level level, const char *event,
			 const char *reason, int r);
void vsock_mux__hash_insert(struct vsock_mux *mux, struct vsock_conn *c);
void vsock_mux__notify(struct vsock_mux *mux);
void vsock_mux__maybe_release(struct vsock_mux *mux);

/* vsock_mux_host.c */
/* Creates the listener on uds_path and the timer; -errno.  On failure the
 * handles exist iff mux->listener_open (then vsock_mux_free() closes them). */
int vsock_mux__listen(struct vsock_mux *mux);
/* Parses what a host connection sent so far; closes it or sends REQUEST. */
void vsock_mux__handshake(struct vsock_conn *c);
void vsock_mux__close_handles(struct vsock_mux *mux);

#endif
