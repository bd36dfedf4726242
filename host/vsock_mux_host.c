/*
 * vsock_mux_host — host-initiated connections (see vsock_mux.h): the
 * listener on PATH, the strict "CONNECT P\n" line, the host port, and the
 * timer that closes a connection whose line or RESPONSE does not come.
 * The connection itself, once REQUEST is queued, is vsock_mux.c's.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "uds_path.h"
#include "vsock_mux_internal.h"

#define MUX_BACKLOG 128
/* "CONNECT 4294967295\n" is 19 bytes; the line is refused past this. */
#define MUX_CONNECT_LINE_MAX 32u
/* Host-side ports of host-initiated connections, counting down.  Never
 * 4294967295: that is VMADDR_PORT_ANY, which Linux reads as "no port" — a
 * connection accepted from it has no bound peer and every write in the
 * guest fails with EDESTADDRREQ (found by tests/e2e/vsock_qemu.sh). */
#define MUX_HOST_PORT_FIRST 0xfffffffeu
#define MUX_HOST_PORT_LAST (1u << 30)

/* A closed-over rejected host connection (cap reached). */
struct mux_reject {
	struct vsock_mux *mux;
	uv_pipe_t pipe;
};

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

		next = l->next; /* vsock_mux__conn_abort() unlinks c */
		if (c->state != CONN_HANDSHAKE && c->state != CONN_REQUEST_SENT)
			continue;
		if (c->deadline > now)
			waiting = true;
		else if (c->state == CONN_HANDSHAKE)
			vsock_mux__conn_abort(c, "no CONNECT line in time", -ETIMEDOUT);
		else
			vsock_mux__conn_abort(c, "guest did not answer the REQUEST in time",
					      -ETIMEDOUT);
	}
	if (!waiting)
		uv_timer_stop(t);
	vsock_mux__notify(mux);
}

/* A tick of a quarter of the timeout: a REQUEST expires within 1.25 times it. */
static void mux_arm_timer(struct vsock_mux *mux)
{
	uint64_t tick = mux->request_timeout_ms / 4 ? mux->request_timeout_ms / 4 : 1;

	if (mux->timer_open && !uv_is_active((uv_handle_t *)&mux->timer))
		uv_timer_start(&mux->timer, mux_on_timer, tick, tick);
}

void vsock_mux__handshake(struct vsock_conn *c)
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
		vsock_mux__conn_log(c, LOG_LEVEL_WARN, "vsock_host_connect_refused",
				    "malformed CONNECT line", 0);
		c->mux->stats.protocol_errors++;
		vsock_mux__conn_close(c);
		return;
	}
	if ((r = mux_alloc_host_port(c->mux, &host_port)) < 0) {
		vsock_mux__conn_log(c, LOG_LEVEL_WARN, "vsock_host_connect_refused",
				    "no free host port", r);
		vsock_mux__conn_close(c);
		return;
	}
	/* Bytes after the line stay in to_guest and go after the RESPONSE. */
	ring_consume(&c->to_guest, (uint32_t)line_len);
	c->guest_port = port;
	c->host_port = host_port;
	c->state = CONN_REQUEST_SENT;
	c->ctrl_pending |= CTRL_REQUEST;
	c->deadline = uv_now(c->mux->loop) + c->mux->request_timeout_ms;
	vsock_mux__hash_insert(c->mux, c);
	mux_arm_timer(c->mux);
}

static void mux_on_reject_closed(uv_handle_t *h)
{
	struct mux_reject *rj = h->data;
	struct vsock_mux *mux = rj->mux;

	free(rj);
	mux->handles--;
	vsock_mux__maybe_release(mux);
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
	c = vsock_mux__conn_new(mux);
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
		vsock_mux__conn_log(c, LOG_LEVEL_WARN, "vsock_host_connect_refused",
				    "accept failed", r);
		vsock_mux__conn_close(c);
		return;
	}
	vsock_mux__conn_sync(c);
	vsock_mux__notify(mux);
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
	if ((r = uds_path_clear(&sun, &(bool){ false }, &(const char *){ NULL })) < 0)
		return r; /* vsock_mux_new() documents -EEXIST / -EADDRINUSE */
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
	vsock_mux__maybe_release(mux);
}

static void mux_on_timer_closed(uv_handle_t *h)
{
	struct vsock_mux *mux = h->data;

	mux->handles--;
	vsock_mux__maybe_release(mux);
}

/* The listener (its socket file unlinked) and the timer. */
void vsock_mux__close_handles(struct vsock_mux *mux)
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

int vsock_mux__listen(struct vsock_mux *mux)
{
	int fd = -1, r;

	mux->next_host_port = MUX_HOST_PORT_FIRST;
	if ((r = mux_listen_fd(mux, &fd)) < 0)
		return r;
	uv_pipe_init(mux->loop, &mux->listener, 0);
	mux->listener.data = mux;
	mux->listener_open = true;
	mux->handles++;
	uv_timer_init(mux->loop, &mux->timer);
	mux->timer.data = mux;
	mux->timer_open = true;
	mux->handles++;
	if ((r = uv_pipe_open(&mux->listener, fd)) < 0) {
		close(fd); /* not the handle's yet */
		return r;
	}
	return uv_listen((uv_stream_t *)&mux->listener, MUX_BACKLOG, mux_on_connection);
}
