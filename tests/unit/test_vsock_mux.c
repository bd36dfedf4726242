/*
 * vsock_mux: the test is the guest (it calls vsock_mux_from_guest() and
 * drains vsock_mux_to_guest()) and the host processes (plain non-blocking
 * Unix sockets in a mktemp directory), on a real libuv loop.  Every wait
 * runs the loop until a condition holds, with a deadline; every test ends
 * with vsock_mux_free() and uv_loop_close() == 0 (no handle left).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "log.h"
#include "vsock_mux.h"

#define GUEST_CID 3u
#define DEADLINE_MS 20000u

struct fx {
	char dir[64];
	char path[96];
	uv_loop_t loop;
	uv_timer_t tick;
	struct vsock_mux *mux;
	uint32_t buf_alloc;
	unsigned ready_calls;
};

static struct fx F;
static uint8_t pkt[VSOCK_HDR_SIZE + VSOCK_MAX_PAYLOAD];

/* ---- fixture ---------------------------------------------------------------- */

static void on_ready(void *ctx)
{
	((struct fx *)ctx)->ready_calls++;
}

static void on_tick(uv_timer_t *t)
{
	(void)t; /* only wakes uv_run(UV_RUN_ONCE) so conditions are re-checked */
}

static int setup_with(uint32_t buf_alloc, uint32_t request_timeout_ms)
{
	const struct vsock_mux_hooks hooks = { .to_guest_ready = on_ready, .ctx = &F };
	struct vsock_mux_config cfg = { .guest_cid = GUEST_CID, .buf_alloc = buf_alloc,
					.request_timeout_ms = request_timeout_ms };

	memset(&F, 0, sizeof(F));
	snprintf(F.dir, sizeof(F.dir), "/tmp/vsockmux.XXXXXX");
	if (!mkdtemp(F.dir))
		return -1;
	snprintf(F.path, sizeof(F.path), "%s/v.sock", F.dir);
	cfg.uds_path = F.path;
	if (uv_loop_init(&F.loop) != 0)
		return -1;
	uv_timer_init(&F.loop, &F.tick);
	uv_timer_start(&F.tick, on_tick, 5, 5);
	if (vsock_mux_new(&F.loop, &cfg, &hooks, &F.mux) != 0)
		return -1;
	F.buf_alloc = buf_alloc ? buf_alloc : VSOCK_MUX_DEFAULT_BUF_ALLOC;
	return 0;
}

static int setup(void **state)
{
	(void)state;
	return setup_with(0, 0);
}

static int setup_small(void **state)
{
	(void)state;
	return setup_with(4096, 0);
}

static int setup_fast_timeout(void **state)
{
	(void)state;
	return setup_with(0, 100);
}

static int rm_entry(const char *name)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/%s", F.dir, name);
	return unlink(p);
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	if (F.mux)
		vsock_mux_free(F.mux);
	F.mux = NULL;
	uv_close((uv_handle_t *)&F.tick, NULL);
	uv_run(&F.loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&F.loop), 0);
	/* free() unlinks its own socket; the test's listeners are removed here */
	struct stat st;
	assert_int_equal(lstat(F.path, &st), -1);
	(void)rm_entry;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", F.dir);
	return system(cmd) == 0 ? 0 : -1;
}

typedef bool pred_fn(void *arg);

/* Runs the loop until p(arg) holds or the deadline passes. */
static bool run_until(pred_fn *p, void *arg)
{
	uv_update_time(&F.loop);
	uint64_t deadline = uv_now(&F.loop) + DEADLINE_MS;

	while (!p(arg)) {
		if (uv_now(&F.loop) > deadline)
			return false;
		uv_run(&F.loop, UV_RUN_ONCE);
	}
	return true;
}

static bool has_pending(void *arg)
{
	(void)arg;
	return vsock_mux_has_pending(F.mux);
}

/* Lets the loop handle every event that is ready now, without waiting. */
static void run_ready(void)
{
	for (int i = 0; i < 20; i++)
		uv_run(&F.loop, UV_RUN_NOWAIT);
}

/* ---- the fake guest ------------------------------------------------------------ */

struct gconn {
	uint32_t gport, hport;
	uint32_t buf_alloc;   /* the guest's receive buffer */
	uint32_t rx_cnt;      /* RW bytes received from the mux */
	uint32_t told_fwd;    /* fwd_cnt last sent to the mux */
	uint32_t tx_cnt;      /* RW bytes sent to the mux */
	uint32_t peer_buf_alloc, peer_fwd_cnt;
};

static void g_send_raw(const struct vsock_hdr *h, const void *payload)
{
	vsock_mux_from_guest(F.mux, h, payload);
}

static void g_send(struct gconn *g, uint16_t op, uint32_t flags, const void *data, uint32_t len)
{
	struct vsock_hdr h = {
		.src_cid = GUEST_CID, .dst_cid = VSOCK_HOST_CID,
		.src_port = g->gport, .dst_port = g->hport,
		.len = len, .type = VSOCK_TYPE_STREAM, .op = op, .flags = flags,
		.buf_alloc = g->buf_alloc, .fwd_cnt = g->rx_cnt,
	};

	g->told_fwd = g->rx_cnt; /* the guest consumes at once */
	if (op == VSOCK_OP_RW)
		g->tx_cnt += len;
	g_send_raw(&h, len ? data : NULL);
}

/* The next packet for the guest, checked for what every packet must be. */
static bool g_pull(size_t cap, struct vsock_hdr *h, const uint8_t **payload)
{
	size_t n = vsock_mux_to_guest(F.mux, pkt, cap);

	if (n == 0)
		return false;
	assert_true(n <= cap);
	assert_int_equal(vsock_hdr_decode(pkt, n, h), 0);
	assert_int_equal(n, VSOCK_HDR_SIZE + h->len);
	assert_true(h->src_cid == VSOCK_HOST_CID);
	assert_true(h->dst_cid == GUEST_CID);
	assert_int_equal(h->type, VSOCK_TYPE_STREAM);
	*payload = pkt + VSOCK_HDR_SIZE;
	return true;
}

/* Waits for a packet and checks its op and ports. */
static void g_expect(struct gconn *g, uint16_t op, struct vsock_hdr *h)
{
	const uint8_t *p;

	assert_true(run_until(has_pending, NULL));
	assert_true(g_pull(sizeof(pkt), h, &p));
	assert_int_equal(h->op, op);
	assert_int_equal(h->src_port, g->hport);
	assert_int_equal(h->dst_port, g->gport);
	g->peer_buf_alloc = h->buf_alloc;
	g->peer_fwd_cnt = h->fwd_cnt;
}

static uint32_t g_credit(const struct gconn *g)
{
	return g->peer_buf_alloc - (g->tx_cnt - g->peer_fwd_cnt);
}

/* ---- the host processes --------------------------------------------------------- */

static void port_path(uint32_t port, char *out, size_t len)
{
	snprintf(out, len, "%s_%u", F.path, port);
}

static int listen_at(uint32_t port)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	port_path(port, sun.sun_path, sizeof(sun.sun_path));
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(fd, 2048), 0);
	return fd;
}

struct accept_arg {
	int lfd, fd;
};

static bool try_accept(void *arg)
{
	struct accept_arg *a = arg;

	a->fd = accept4(a->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	return a->fd >= 0;
}

static int accept_wait(int lfd)
{
	struct accept_arg a = { .lfd = lfd, .fd = -1 };

	assert_true(run_until(try_accept, &a));
	return a.fd;
}

static int connect_mux(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", F.path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	return fd;
}

static void write_all(int fd, const void *data, size_t len)
{
	assert_int_equal(write(fd, data, len), (ssize_t)len);
}

struct read_arg {
	int fd;
	uint8_t *buf;
	size_t want, got;
	bool eof;
};

/* Reads until want bytes arrived (want 0: until EOF). */
static bool try_read(void *arg)
{
	struct read_arg *a = arg;

	for (;;) {
		size_t room = a->want ? a->want - a->got : sizeof(pkt);
		uint8_t scratch[4096];
		ssize_t n;

		if (a->want && a->got == a->want)
			return true;
		n = read(a->fd, a->buf ? a->buf + a->got : scratch,
			 a->buf ? room : (room < sizeof(scratch) ? room : sizeof(scratch)));
		if (n > 0) {
			a->got += (size_t)n;
			continue;
		}
		if (n == 0) {
			a->eof = true;
			return true;
		}
		if (errno == ECONNRESET) {
			a->eof = true;
			return true;
		}
		return false;
	}
}

static void read_exact(int fd, void *buf, size_t len)
{
	struct read_arg a = { .fd = fd, .buf = buf, .want = len };

	assert_true(run_until(try_read, &a));
	assert_int_equal(a.got, len);
}

/* Waits for EOF and returns how many bytes came before it. */
static size_t read_to_eof(int fd)
{
	struct read_arg a = { .fd = fd };

	assert_true(run_until(try_read, &a));
	assert_true(a.eof);
	return a.got;
}

/* An established guest -> host connection: REQUEST, RESPONSE, accepted fd. */
static int open_guest_conn(struct gconn *g, int lfd, uint32_t gport, uint32_t hport,
			   uint32_t guest_buf_alloc)
{
	struct vsock_hdr h;

	*g = (struct gconn){ .gport = gport, .hport = hport, .buf_alloc = guest_buf_alloc };
	g_send(g, VSOCK_OP_REQUEST, 0, NULL, 0);
	g_expect(g, VSOCK_OP_RESPONSE, &h);
	assert_int_equal(h.buf_alloc, F.buf_alloc);
	assert_int_equal(h.fwd_cnt, 0);
	return accept_wait(lfd);
}

static void fill(uint8_t *p, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++) {
		seed ^= seed << 13;
		seed ^= seed >> 17;
		seed ^= seed << 5;
		p[i] = (uint8_t)seed;
	}
}

static void get_stats(struct vsock_mux_stats *s)
{
	vsock_mux_get_stats(F.mux, s);
}

/* ---- guest -> host ---------------------------------------------------------------- */

static void test_request_to_listener_gets_response(void **state)
{
	struct gconn g;
	struct vsock_mux_stats s;
	int lfd = listen_at(1024), fd;

	(void)state;
	fd = open_guest_conn(&g, lfd, 49152, 1024, 65536);
	assert_true(F.ready_calls > 0);
	assert_false(vsock_mux_has_pending(F.mux));
	get_stats(&s);
	assert_int_equal(s.connections_opened, 1);
	assert_int_equal(s.protocol_errors, 0);
	close(fd);
	close(lfd);
}

static void test_request_without_listener_gets_rst(void **state)
{
	struct gconn g = { .gport = 49152, .hport = 7777, .buf_alloc = 65536 };
	struct vsock_hdr h;
	struct vsock_mux_stats s;

	(void)state;
	g_send(&g, VSOCK_OP_REQUEST, 0, NULL, 0);
	g_expect(&g, VSOCK_OP_RST, &h);
	assert_false(vsock_mux_has_pending(F.mux));
	get_stats(&s);
	assert_int_equal(s.connections_opened, 0);
	assert_int_equal(s.connections_reset, 1);
	/* The key is free again: an RW on it is answered with RST, not data. */
	g_send(&g, VSOCK_OP_RW, 0, "x", 1);
	g_expect(&g, VSOCK_OP_RST, &h);
}

/* 1 MiB each way at once, the guest taking packets of at most 4096 bytes. */
static void test_rw_both_ways_one_mib_byte_exact(void **state)
{
	const size_t total = 1u << 20, cap = 4096;
	const uint32_t guest_buf = 65536;
	uint8_t *up = malloc(total), *down = malloc(total), *got_up = malloc(total);
	size_t up_sent = 0, up_recv = 0, down_written = 0, down_recv = 0;
	struct gconn g;
	struct vsock_mux_stats s;
	int lfd = listen_at(1024), fd;

	(void)state;
	assert_non_null(up);
	assert_non_null(down);
	assert_non_null(got_up);
	fill(up, total, 1);
	fill(down, total, 2);
	fd = open_guest_conn(&g, lfd, 50000, 1024, guest_buf);
	uv_update_time(&F.loop);
	uint64_t deadline = uv_now(&F.loop) + DEADLINE_MS;
	while (up_recv < total || down_recv < total) {
		struct vsock_hdr h;
		const uint8_t *p;
		ssize_t n;

		assert_true(uv_now(&F.loop) < deadline);
		while (up_sent < total && g_credit(&g) > 0) {
			uint32_t k = g_credit(&g);
			if (k > VSOCK_MAX_PAYLOAD)
				k = VSOCK_MAX_PAYLOAD;
			if (k > total - up_sent)
				k = (uint32_t)(total - up_sent);
			g_send(&g, VSOCK_OP_RW, 0, up + up_sent, k);
			up_sent += k;
		}
		if (down_written < total) {
			n = write(fd, down + down_written, total - down_written);
			if (n > 0)
				down_written += (size_t)n;
			else
				assert_true(errno == EAGAIN);
		}
		while ((n = read(fd, got_up + up_recv, total - up_recv)) > 0)
			up_recv += (size_t)n;
		while (g_pull(cap, &h, &p)) {
			assert_int_equal(h.src_port, 1024);
			assert_int_equal(h.dst_port, 50000);
			g.peer_buf_alloc = h.buf_alloc;
			g.peer_fwd_cnt = h.fwd_cnt;
			if (h.op == VSOCK_OP_CREDIT_UPDATE)
				continue;
			assert_int_equal(h.op, VSOCK_OP_RW);
			assert_true(h.len > 0 && h.len <= cap - VSOCK_HDR_SIZE);
			/* never more than the credit the guest gave */
			assert_true(g.rx_cnt + h.len - g.told_fwd <= guest_buf);
			assert_true(down_recv + h.len <= total);
			assert_memory_equal(p, down + down_recv, h.len);
			down_recv += h.len;
			g.rx_cnt += h.len;
			if (g.rx_cnt - g.told_fwd >= guest_buf / 2)
				g_send(&g, VSOCK_OP_CREDIT_UPDATE, 0, NULL, 0);
		}
		uv_run(&F.loop, UV_RUN_ONCE);
	}
	assert_memory_equal(got_up, up, total);
	get_stats(&s);
	assert_true(s.bytes_from_guest == total);
	assert_true(s.bytes_to_guest == total);
	assert_int_equal(s.protocol_errors, 0);
	assert_int_equal(s.connections_reset, 0);
	free(up);
	free(down);
	free(got_up);
	close(fd);
	close(lfd);
}

static void test_mux_stops_at_guest_credit_and_resumes(void **state)
{
	const uint32_t guest_buf = 8192;
	uint8_t data[65536], got[65536];
	uint32_t recv = 0;
	struct gconn g;
	struct vsock_hdr h;
	const uint8_t *p;
	int lfd = listen_at(1024), fd;

	(void)state;
	fill(data, sizeof(data), 3);
	fd = open_guest_conn(&g, lfd, 50001, 1024, guest_buf);
	write_all(fd, data, sizeof(data));
	for (unsigned round = 1; round <= 3; round++) {
		while (recv < round * guest_buf) {
			assert_true(run_until(has_pending, NULL));
			while (g_pull(sizeof(pkt), &h, &p)) {
				assert_int_equal(h.op, VSOCK_OP_RW);
				memcpy(got + recv, p, h.len);
				recv += h.len;
				g.rx_cnt += h.len;
				assert_true(recv <= round * guest_buf);
			}
		}
		/* Credit used up: every ready event handled, and nothing more comes. */
		run_ready();
		assert_false(vsock_mux_has_pending(F.mux));
		assert_int_equal(recv, round * guest_buf);
		g_send(&g, VSOCK_OP_CREDIT_UPDATE, 0, NULL, 0);
	}
	assert_memory_equal(got, data, recv);
	close(fd);
	close(lfd);
}

static void test_guest_over_credit_rw_gets_rst(void **state)
{
	uint8_t data[4096], got[4096];
	struct gconn g;
	struct vsock_hdr h;
	struct vsock_mux_stats s;
	int lfd = listen_at(1024), fd;

	(void)state;
	fill(data, sizeof(data), 4);
	fd = open_guest_conn(&g, lfd, 50002, 1024, 65536); /* mux buf_alloc 4096 */
	g_send(&g, VSOCK_OP_RW, 0, data, sizeof(data));
	read_exact(fd, got, sizeof(got));
	assert_memory_equal(got, data, sizeof(got));
	/* The freed space was not advertised yet: one byte more breaks the credit. */
	g_send(&g, VSOCK_OP_RW, 0, data, 1);
	g_expect(&g, VSOCK_OP_RST, &h);
	assert_int_equal(read_to_eof(fd), 0);
	get_stats(&s);
	assert_int_equal(s.protocol_errors, 1);
	assert_int_equal(s.connections_reset, 1);
	close(fd);
	close(lfd);
}

static void test_freed_credit_is_advertised_and_usable(void **state)
{
	uint8_t data[4096], got[4096];
	struct gconn g;
	struct vsock_hdr h;
	int lfd = listen_at(1024), fd;

	(void)state;
	fill(data, sizeof(data), 5);
	fd = open_guest_conn(&g, lfd, 50003, 1024, 65536);
	for (int round = 0; round < 4; round++) {
		assert_int_equal(g_credit(&g), 4096);
		g_send(&g, VSOCK_OP_RW, 0, data, sizeof(data));
		read_exact(fd, got, sizeof(got));
		assert_memory_equal(got, data, sizeof(got));
		/* The guest is blocked; the mux must tell it what was freed. */
		g_expect(&g, VSOCK_OP_CREDIT_UPDATE, &h);
		assert_int_equal(h.fwd_cnt, 4096u * (unsigned)(round + 1));
	}
	close(fd);
	close(lfd);
}

static void test_credit_request_gets_credit_update(void **state)
{
	struct gconn g;
	struct vsock_hdr h;
	int lfd = listen_at(1024), fd;

	(void)state;
	fd = open_guest_conn(&g, lfd, 50004, 1024, 65536);
	g_send(&g, VSOCK_OP_RW, 0, "abc", 3);
	read_exact(fd, (uint8_t[3]){ 0 }, 3);
	/* fwd_cnt moves in the write callback: let the loop deliver it. */
	run_ready();
	g_send(&g, VSOCK_OP_CREDIT_REQUEST, 0, NULL, 0);
	g_expect(&g, VSOCK_OP_CREDIT_UPDATE, &h);
	assert_int_equal(h.buf_alloc, F.buf_alloc);
	assert_int_equal(h.fwd_cnt, 3);
	/* Asked again, answered again. */
	g_send(&g, VSOCK_OP_CREDIT_REQUEST, 0, NULL, 0);
	g_expect(&g, VSOCK_OP_CREDIT_UPDATE, &h);
	assert_int_equal(h.fwd_cnt, 3);
	assert_false(vsock_mux_has_pending(F.mux));
	close(fd);
	close(lfd);
}

/* ---- shutdown ------------------------------------------------------------------ */

static void test_guest_shutdown_send_then_host_eof_ends_with_rst(void **state)
{
	struct gconn g;
	struct vsock_hdr h;
	const uint8_t *p;
	char got[5];
	int lfd = listen_at(1024), fd;

	(void)state;
	fd = open_guest_conn(&g, lfd, 50005, 1024, 65536);
	g_send(&g, VSOCK_OP_RW, 0, "hello", 5);
	g_send(&g, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND, NULL, 0);
	read_exact(fd, got, 5);
	assert_memory_equal(got, "hello", 5);
	assert_int_equal(read_to_eof(fd), 0); /* SHUT_WR after the flush */
	write_all(fd, "world", 5);
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	/* Data, then SHUTDOWN(SEND), then the RST that ends the connection. */
	g_expect(&g, VSOCK_OP_RW, &h);
	assert_int_equal(h.len, 5);
	assert_memory_equal(pkt + VSOCK_HDR_SIZE, "world", 5);
	g_expect(&g, VSOCK_OP_SHUTDOWN, &h);
	assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
	g_expect(&g, VSOCK_OP_RST, &h);
	assert_false(g_pull(sizeof(pkt), &h, &p));
	close(fd);
	close(lfd);
}

static void test_host_close_then_guest_full_shutdown_ends_with_rst(void **state)
{
	struct gconn g;
	struct vsock_hdr h;
	struct vsock_mux_stats s;
	int lfd = listen_at(1024), fd;

	(void)state;
	fd = open_guest_conn(&g, lfd, 50006, 1024, 65536);
	write_all(fd, "bye", 3);
	close(fd);
	g_expect(&g, VSOCK_OP_RW, &h);
	assert_memory_equal(pkt + VSOCK_HDR_SIZE, "bye", 3);
	g_expect(&g, VSOCK_OP_SHUTDOWN, &h);
	assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
	run_ready();
	assert_false(vsock_mux_has_pending(F.mux)); /* waits for the guest's side */
	g_send(&g, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND, NULL, 0);
	g_expect(&g, VSOCK_OP_RST, &h);
	get_stats(&s);
	assert_int_equal(s.protocol_errors, 0);
	assert_int_equal(s.connections_reset, 0);
	close(lfd);
}

static void test_guest_full_shutdown_flushes_then_rst(void **state)
{
	uint8_t data[3000], got[3000];
	struct gconn g;
	struct vsock_hdr h;
	int lfd = listen_at(1024), fd;

	(void)state;
	fill(data, sizeof(data), 6);
	fd = open_guest_conn(&g, lfd, 50007, 1024, 65536);
	g_send(&g, VSOCK_OP_RW, 0, data, sizeof(data));
	g_send(&g, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND, NULL, 0);
	read_exact(fd, got, sizeof(got));
	assert_memory_equal(got, data, sizeof(got));
	assert_int_equal(read_to_eof(fd), 0);
	g_expect(&g, VSOCK_OP_RST, &h);
	close(fd);
	close(lfd);
}

static void test_guest_rst_closes_unix_socket(void **state)
{
	struct gconn g;
	int lfd = listen_at(1024), fd;

	(void)state;
	fd = open_guest_conn(&g, lfd, 50008, 1024, 65536);
	g_send(&g, VSOCK_OP_RST, 0, NULL, 0);
	assert_int_equal(read_to_eof(fd), 0);
	assert_false(vsock_mux_has_pending(F.mux)); /* no RST answers an RST */
	close(fd);
	close(lfd);
}

static void test_small_caps_trim_and_never_split_headers(void **state)
{
	struct gconn g;
	struct vsock_hdr h;
	const uint8_t *p;
	char data[10] = "0123456789", got[10];
	size_t recv = 0;
	int lfd = listen_at(1024), fd;

	(void)state;
	fd = open_guest_conn(&g, lfd, 50050, 1024, 65536);
	write_all(fd, data, sizeof(data));
	assert_true(run_until(has_pending, NULL));
	/* Under a header: nothing, and nothing consumed. */
	assert_int_equal(vsock_mux_to_guest(F.mux, pkt, VSOCK_HDR_SIZE - 1), 0);
	/* A bare header cannot carry data. */
	assert_int_equal(vsock_mux_to_guest(F.mux, pkt, VSOCK_HDR_SIZE), 0);
	/* One payload byte per packet, in order, until all ten are out. */
	while (recv < sizeof(data)) {
		assert_true(g_pull(VSOCK_HDR_SIZE + 1, &h, &p));
		assert_int_equal(h.op, VSOCK_OP_RW);
		assert_int_equal(h.len, 1);
		got[recv++] = (char)p[0];
		if (recv < sizeof(data) && !vsock_mux_has_pending(F.mux))
			assert_true(run_until(has_pending, NULL));
	}
	assert_memory_equal(got, data, sizeof(data));
	/* Control packets fit a bare header. */
	g_send(&g, VSOCK_OP_CREDIT_REQUEST, 0, NULL, 0);
	assert_true(g_pull(VSOCK_HDR_SIZE, &h, &p));
	assert_int_equal(h.op, VSOCK_OP_CREDIT_UPDATE);
	close(fd);
	close(lfd);
}

static void test_guest_rcv_shutdown_stops_reading(void **state)
{
	struct gconn g;
	struct vsock_hdr h;
	int lfd = listen_at(1024), fd;

	(void)state;
	fd = open_guest_conn(&g, lfd, 50051, 1024, 65536);
	g_send(&g, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_RCV, NULL, 0);
	write_all(fd, "ignored", 7);
	run_ready();
	assert_false(vsock_mux_has_pending(F.mux)); /* nothing for a guest that reads no more */
	g_send(&g, VSOCK_OP_RW, 0, "last", 4);      /* it may still send */
	char got[4];
	read_exact(fd, got, 4);
	assert_memory_equal(got, "last", 4);
	g_send(&g, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND, NULL, 0);
	read_to_eof(fd);
	g_expect(&g, VSOCK_OP_RST, &h);
	close(fd);
	close(lfd);
}

static void test_unix_write_error_resets(void **state)
{
	struct gconn g;
	struct vsock_hdr h;
	struct vsock_mux_stats s;
	int lfd = listen_at(1024), fd;

	(void)state;
	fd = open_guest_conn(&g, lfd, 50052, 1024, 65536);
	close(fd); /* the host process is gone entirely */
	g_expect(&g, VSOCK_OP_SHUTDOWN, &h);
	/* The guest still sends: the write fails (EPIPE) and the connection is reset. */
	g_send(&g, VSOCK_OP_RW, 0, "late", 4);
	g_expect(&g, VSOCK_OP_RST, &h);
	get_stats(&s);
	assert_int_equal(s.connections_reset, 1);
	assert_int_equal(s.protocol_errors, 0);
	close(lfd);
}

/* ---- protocol errors --------------------------------------------------------------- */

static void test_wrong_cid_type_and_stray_packets(void **state)
{
	struct gconn g, stray = { .gport = 60000, .hport = 1024, .buf_alloc = 65536 };
	struct vsock_hdr h;
	struct vsock_mux_stats s;
	const uint8_t *p;
	int lfd = listen_at(1024), fd;

	(void)state;
	/* Naming no connection: wrong CIDs or type are dropped silently. */
	struct vsock_hdr bad = {
		.src_cid = 4, .dst_cid = VSOCK_HOST_CID, .src_port = 1, .dst_port = 1024,
		.type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_REQUEST, .buf_alloc = 4096,
	};
	g_send_raw(&bad, NULL);
	bad.src_cid = GUEST_CID;
	bad.dst_cid = 5;
	g_send_raw(&bad, NULL);
	bad.dst_cid = VSOCK_HOST_CID;
	bad.type = VSOCK_TYPE_SEQPACKET;
	g_send_raw(&bad, NULL);
	run_ready();
	assert_false(vsock_mux_has_pending(F.mux));
	get_stats(&s);
	assert_int_equal(s.protocol_errors, 3);
	assert_int_equal(s.connections_opened, 0);

	/* RW, unknown op for no connection: RST back; RST for none: nothing. */
	g_send(&stray, VSOCK_OP_RW, 0, "zz", 2);
	g_expect(&stray, VSOCK_OP_RST, &h);
	g_send(&stray, 99, 0, NULL, 0);
	g_expect(&stray, VSOCK_OP_RST, &h);
	g_send(&stray, VSOCK_OP_RST, 0, NULL, 0);
	assert_false(g_pull(sizeof(pkt), &h, &p));

	/* Naming a live connection: wrong CID resets it. */
	fd = open_guest_conn(&g, lfd, 50009, 1024, 65536);
	struct vsock_hdr lie = {
		.src_cid = 7, .dst_cid = VSOCK_HOST_CID, .src_port = g.gport,
		.dst_port = g.hport, .type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RW,
	};
	g_send_raw(&lie, NULL);
	g_expect(&g, VSOCK_OP_RST, &h);
	assert_int_equal(read_to_eof(fd), 0);
	close(fd);

	/* Unknown op, duplicate REQUEST, over-long RW on a live connection: RST. */
	static const uint16_t ops[] = { 0, 42, VSOCK_OP_REQUEST };
	for (size_t i = 0; i < 3; i++) {
		fd = open_guest_conn(&g, lfd, 50010 + (uint32_t)i, 1024, 65536);
		g_send(&g, ops[i], 0, NULL, 0);
		g_expect(&g, VSOCK_OP_RST, &h);
		assert_int_equal(read_to_eof(fd), 0);
		close(fd);
	}
	fd = open_guest_conn(&g, lfd, 50020, 1024, 65536);
	struct vsock_hdr huge = {
		.src_cid = GUEST_CID, .dst_cid = VSOCK_HOST_CID, .src_port = g.gport,
		.dst_port = g.hport, .type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RW,
		.len = VSOCK_MAX_PAYLOAD + 1,
	};
	g_send_raw(&huge, pkt);
	g_expect(&g, VSOCK_OP_RST, &h);
	assert_int_equal(read_to_eof(fd), 0);
	close(fd);
	get_stats(&s);
	assert_int_equal(s.protocol_errors, 3 + 2 + 1 + 3 + 1);
	close(lfd);
}

/* Runs fn with stderr in a temporary file at level WARN; returns what was logged. */
static char *capture_log(void (*fn)(void))
{
	static char text[8192];
	FILE *sink = tmpfile();
	int saved = dup(STDERR_FILENO);
	size_t n;

	assert_non_null(sink);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(sink), STDERR_FILENO) >= 0);
	log_set_level(LOG_LEVEL_WARN);
	fn();
	log_set_level(LOG_LEVEL_ERROR);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	rewind(sink);
	n = fread(text, 1, sizeof(text) - 1, sink);
	text[n] = 0;
	fclose(sink);
	return text;
}

static void over_credit_twice(void)
{
	uint8_t data[4096] = { 0 };
	struct gconn g;
	struct vsock_hdr h;
	int lfd = listen_at(1024), fd;

	fd = open_guest_conn(&g, lfd, 50060, 1024, 65536);
	g_send(&g, VSOCK_OP_RW, 0, data, sizeof(data));
	g_send(&g, VSOCK_OP_RW, 0, data, 10);   /* over the 4096 credit */
	g_send(&g, VSOCK_OP_RW, 0, data, 10);   /* names no connection now: counted, not logged */
	g_expect(&g, VSOCK_OP_RST, &h);
	g_expect(&g, VSOCK_OP_RST, &h);
	close(fd);
	close(lfd);
}

static void test_protocol_error_logs_one_line_quoting_the_packet(void **state)
{
	const char *text;
	struct vsock_mux_stats s;

	(void)state;
	text = capture_log(over_credit_twice);
	const char *line = strstr(text, "warn vsock_conn_reset ");
	assert_non_null(line);
	assert_null(strstr(line + strlen("warn vsock_conn_reset "), "vsock_conn_reset")); /* once */
	assert_non_null(strstr(line, "guest_port=50060 host_port=1024"));
	assert_non_null(strstr(line, "reason=\"RW over credit\""));
	assert_non_null(strstr(line, "op=5 len=10"));
	get_stats(&s);
	assert_int_equal(s.protocol_errors, 2);
	assert_int_equal(s.connections_reset, 1);
}

static void test_connection_cap(void **state)
{
	struct rlimit rl;
	struct gconn g;
	struct vsock_hdr h;
	const uint8_t *p;
	unsigned responses = 0;
	int lfd = listen_at(1024);

	(void)state;
	/* the mux holds one fd per connection (the test accepts none) */
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < 4 * VSOCK_MUX_MAX_CONNECTIONS) {
		rl.rlim_cur = rl.rlim_max < 4 * VSOCK_MUX_MAX_CONNECTIONS ?
			rl.rlim_max : 4 * VSOCK_MUX_MAX_CONNECTIONS;
		assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	}
	assert_true(rl.rlim_cur >= VSOCK_MUX_MAX_CONNECTIONS + 64);
	for (uint32_t i = 0; i < VSOCK_MUX_MAX_CONNECTIONS; i++) {
		g = (struct gconn){ .gport = 10000 + i, .hport = 1024, .buf_alloc = 4096 };
		g_send(&g, VSOCK_OP_REQUEST, 0, NULL, 0);
	}
	/* One over the cap, refused at once. */
	g = (struct gconn){ .gport = 9999, .hport = 1024, .buf_alloc = 4096 };
	g_send(&g, VSOCK_OP_REQUEST, 0, NULL, 0);
	assert_true(g_pull(sizeof(pkt), &h, &p));
	assert_int_equal(h.op, VSOCK_OP_RST);
	assert_int_equal(h.dst_port, 9999);
	/* Every one under the cap gets its RESPONSE. */
	while (responses < VSOCK_MUX_MAX_CONNECTIONS) {
		assert_true(run_until(has_pending, NULL));
		while (g_pull(sizeof(pkt), &h, &p)) {
			assert_int_equal(h.op, VSOCK_OP_RESPONSE);
			responses++;
		}
	}
	/* Closing one makes room for one. */
	g = (struct gconn){ .gport = 10000, .hport = 1024, .buf_alloc = 4096 };
	g_send(&g, VSOCK_OP_RST, 0, NULL, 0);
	g = (struct gconn){ .gport = 9999, .hport = 1024, .buf_alloc = 4096 };
	g_send(&g, VSOCK_OP_REQUEST, 0, NULL, 0);
	g_expect(&g, VSOCK_OP_RESPONSE, &h);
	close(lfd); /* the accepted-or-not peers go with the listener and the mux */
}

/* ---- host -> guest ----------------------------------------------------------------- */

static void test_host_connect_request_response_splice(void **state)
{
	struct gconn g;
	struct vsock_hdr h;
	struct vsock_mux_stats s;
	char ok[32];
	int fd = connect_mux(), fd2;

	(void)state;
	write_all(fd, "CONNECT 5000\nearly bytes", 24);
	assert_true(run_until(has_pending, NULL));
	assert_true(g_pull(sizeof(pkt), &h, &(const uint8_t *){ NULL }));
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	assert_int_equal(h.dst_port, 5000);
	assert_int_equal(h.src_port, 0xffffffffu);
	assert_int_equal(h.buf_alloc, F.buf_alloc);
	g = (struct gconn){ .gport = 5000, .hport = h.src_port, .buf_alloc = 65536 };
	g_send(&g, VSOCK_OP_RESPONSE, 0, NULL, 0);
	read_exact(fd, ok, 14);
	assert_memory_equal(ok, "OK 4294967295\n", 14);
	g_expect(&g, VSOCK_OP_RW, &h);
	assert_int_equal(h.len, 11);
	assert_memory_equal(pkt + VSOCK_HDR_SIZE, "early bytes", 11);
	g.rx_cnt += h.len;
	g_send(&g, VSOCK_OP_RW, 0, "pong", 4);
	read_exact(fd, ok, 4);
	assert_memory_equal(ok, "pong", 4);
	get_stats(&s);
	assert_int_equal(s.connections_opened, 1);

	/* The next host connection gets the next port down. */
	fd2 = connect_mux();
	write_all(fd2, "CONNECT 5000\n", 13);
	assert_true(run_until(has_pending, NULL));
	assert_true(g_pull(sizeof(pkt), &h, &(const uint8_t *){ NULL }));
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	assert_int_equal(h.src_port, 0xfffffffeu);
	close(fd2);
	close(fd);
}

static void test_host_connect_guest_rst_closes(void **state)
{
	struct gconn g;
	struct vsock_hdr h;
	int fd = connect_mux();

	(void)state;
	write_all(fd, "CONNECT 22\n", 11);
	assert_true(run_until(has_pending, NULL));
	assert_true(g_pull(sizeof(pkt), &h, &(const uint8_t *){ NULL }));
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	g = (struct gconn){ .gport = 22, .hport = h.src_port, .buf_alloc = 65536 };
	g_send(&g, VSOCK_OP_RST, 0, NULL, 0);
	assert_int_equal(read_to_eof(fd), 0); /* closed with no "OK" */
	assert_false(vsock_mux_has_pending(F.mux));
	close(fd);
}

static void test_host_connect_unanswered_request_times_out(void **state)
{
	struct gconn g;
	struct vsock_hdr h;
	struct vsock_mux_stats s;
	int fd = connect_mux();

	(void)state;
	write_all(fd, "CONNECT 23\n", 11);
	assert_true(run_until(has_pending, NULL));
	assert_true(g_pull(sizeof(pkt), &h, &(const uint8_t *){ NULL }));
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	g = (struct gconn){ .gport = 23, .hport = h.src_port, .buf_alloc = 65536 };
	/* The guest never answers: after 100 ms the host socket is closed with no
	 * "OK" and the guest is told with an RST. */
	uv_update_time(&F.loop);
	uint64_t start = uv_now(&F.loop);
	assert_int_equal(read_to_eof(fd), 0);
	assert_true(uv_now(&F.loop) - start >= 90);
	g_expect(&g, VSOCK_OP_RST, &h);
	get_stats(&s);
	assert_int_equal(s.connections_reset, 1);
	/* A late RESPONSE names no connection any more: RST again. */
	g_send(&g, VSOCK_OP_RESPONSE, 0, NULL, 0);
	g_expect(&g, VSOCK_OP_RST, &h);
	close(fd);
}

static void test_host_connect_without_line_times_out(void **state)
{
	struct vsock_mux_stats s;
	int fd = connect_mux();

	(void)state;
	write_all(fd, "CONNECT 2", 9); /* and then nothing */
	assert_int_equal(read_to_eof(fd), 0);
	assert_false(vsock_mux_has_pending(F.mux)); /* the guest never knew */
	get_stats(&s);
	assert_int_equal(s.connections_reset, 1);
	close(fd);
}

static void test_host_connect_malformed_lines_are_closed(void **state)
{
	static const char *const bad[] = {
		"CONNECT 01\n", "CONNECT -1\n", "CONNECT +1\n", "CONNECT  1\n", "CONNECT 1 \n",
		"connect 1\n", "CONNECT 4294967296\n", "CONNECT 99999999999\n", "CONNECT 1\r\n",
		"CONNECT \n", "\n", "CONNECT\n", "CONNECT 0x10\n",
		"CONNECT 00000000000000000000001\n", "GET / HTTP/1.1\r\n",
		"CONNECT 1",                          /* then EOF */
		"CONNECT 1111111111111111111111111111", /* no newline within 32 bytes */
	};
	struct vsock_mux_stats s;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int fd = connect_mux();

		write_all(fd, bad[i], strlen(bad[i]));
		if (i == 15)
			assert_int_equal(shutdown(fd, SHUT_WR), 0);
		assert_int_equal(read_to_eof(fd), 0); /* closed, no reply */
		assert_false(vsock_mux_has_pending(F.mux));
		close(fd);
	}
	get_stats(&s);
	assert_int_equal(s.protocol_errors, 16); /* all but the EOF one */
	/* "CONNECT 0" is a valid port. */
	int fd = connect_mux();
	write_all(fd, "CONNECT 0\n", 10);
	assert_true(run_until(has_pending, NULL));
	close(fd);
}

/* ---- reset and free ------------------------------------------------------------------ */

static void test_reset_closes_everything_without_packets(void **state)
{
	struct gconn g;
	struct vsock_hdr h;
	int lfd = listen_at(1024), fd, hfd, hfd2;

	(void)state;
	fd = open_guest_conn(&g, lfd, 50030, 1024, 65536);
	hfd = connect_mux();
	write_all(hfd, "CONNECT 80\n", 11);       /* REQUEST pending */
	hfd2 = connect_mux();
	write_all(hfd2, "CONNECT", 7);            /* still in the handshake */
	assert_true(run_until(has_pending, NULL));
	g_send(&g, VSOCK_OP_RW, 0, "data", 4);    /* towards the Unix socket */
	vsock_mux_reset(F.mux);
	assert_false(vsock_mux_has_pending(F.mux));
	assert_int_equal(vsock_mux_to_guest(F.mux, pkt, sizeof(pkt)), 0);
	read_to_eof(fd);
	assert_int_equal(read_to_eof(hfd), 0);
	assert_int_equal(read_to_eof(hfd2), 0);
	close(fd);
	close(hfd);
	close(hfd2);
	/* Still serving: the listener stays and a new connection works. */
	fd = open_guest_conn(&g, lfd, 50030, 1024, 65536);
	hfd = connect_mux();
	write_all(hfd, "CONNECT 80\n", 11);
	assert_true(run_until(has_pending, NULL));
	assert_true(g_pull(sizeof(pkt), &h, &(const uint8_t *){ NULL }));
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	close(hfd);
	close(fd);
	close(lfd);
}

static void test_free_with_live_connections_leaves_no_handle(void **state)
{
	struct gconn g;
	int lfd = listen_at(1024), fd, hfd;

	(void)state;
	fd = open_guest_conn(&g, lfd, 50040, 1024, 65536);
	write_all(fd, "unread", 6);
	hfd = connect_mux();
	write_all(hfd, "CONNECT 9\n", 10);
	g_send(&g, (uint16_t)VSOCK_OP_REQUEST, 0, NULL, 0); /* resets it: RST pending */
	g = (struct gconn){ .gport = 50041, .hport = 4444, .buf_alloc = 65536 };
	g_send(&g, VSOCK_OP_REQUEST, 0, NULL, 0); /* connect in flight, no listener */
	vsock_mux_free(F.mux);
	F.mux = NULL;
	/* teardown: uv_run, then uv_loop_close() must return 0 and the socket be gone */
	close(fd);
	close(hfd);
	close(lfd);
}

static void test_new_refuses_live_path_and_replaces_stale(void **state)
{
	struct vsock_mux_config cfg = { .uds_path = F.path, .guest_cid = GUEST_CID };
	struct vsock_mux *m = NULL;
	char stale[96], longp[200];
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	(void)state;
	assert_int_equal(vsock_mux_new(&F.loop, &cfg, NULL, &m), -EADDRINUSE);
	assert_null(m);
	/* A socket file nobody listens on is replaced. */
	snprintf(stale, sizeof(stale), "%s/stale.sock", F.dir);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", stale);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
	cfg.uds_path = stale;
	assert_int_equal(vsock_mux_new(&F.loop, &cfg, NULL, &m), 0);
	vsock_mux_free(m);
	/* Bad configs. */
	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = 0;
	cfg.uds_path = longp;
	assert_int_equal(vsock_mux_new(&F.loop, &cfg, NULL, &m), -ENAMETOOLONG);
	cfg.uds_path = stale;
	cfg.guest_cid = 2;
	assert_int_equal(vsock_mux_new(&F.loop, &cfg, NULL, &m), -EINVAL);
	cfg.guest_cid = GUEST_CID;
	cfg.buf_alloc = 100;
	assert_int_equal(vsock_mux_new(&F.loop, &cfg, NULL, &m), -EINVAL);
	/* A file that is not a socket is left alone. */
	fd = open(stale, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	cfg.buf_alloc = 0;
	assert_int_equal(vsock_mux_new(&F.loop, &cfg, NULL, &m), -EEXIST);
	unlink(stale);
}

/* Every test runs on a fresh mux and ends with the no-handle check. */
#define T(test, setup_fn) cmocka_unit_test_setup_teardown(test, setup_fn, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_request_to_listener_gets_response, setup),
		T(test_request_without_listener_gets_rst, setup),
		T(test_rw_both_ways_one_mib_byte_exact, setup),
		T(test_mux_stops_at_guest_credit_and_resumes, setup),
		T(test_guest_over_credit_rw_gets_rst, setup_small),
		T(test_freed_credit_is_advertised_and_usable, setup_small),
		T(test_credit_request_gets_credit_update, setup),
		T(test_guest_shutdown_send_then_host_eof_ends_with_rst, setup),
		T(test_host_close_then_guest_full_shutdown_ends_with_rst, setup),
		T(test_guest_full_shutdown_flushes_then_rst, setup),
		T(test_guest_rst_closes_unix_socket, setup),
		T(test_small_caps_trim_and_never_split_headers, setup),
		T(test_guest_rcv_shutdown_stops_reading, setup),
		T(test_unix_write_error_resets, setup),
		T(test_wrong_cid_type_and_stray_packets, setup),
		T(test_protocol_error_logs_one_line_quoting_the_packet, setup_small),
		T(test_connection_cap, setup),
		T(test_host_connect_request_response_splice, setup),
		T(test_host_connect_guest_rst_closes, setup),
		T(test_host_connect_malformed_lines_are_closed, setup),
		T(test_host_connect_unanswered_request_times_out, setup_fast_timeout),
		T(test_host_connect_without_line_times_out, setup_fast_timeout),
		T(test_reset_closes_everything_without_packets, setup),
		T(test_free_with_live_connections_leaves_no_handle, setup),
		T(test_new_refuses_live_path_and_replaces_stale, setup),
	};

	log_set_level(LOG_LEVEL_ERROR); /* the mux's warnings are expected here */
	signal(SIGPIPE, SIG_IGN);         /* as miosa-vsock does (vsock_mux.h) */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
