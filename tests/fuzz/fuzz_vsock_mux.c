/*
 * Fuzz target for host/vsock_mux.h: every packet a guest puts on its tx
 * queue reaches vsock_mux_from_guest().
 *
 * The input is a sequence of records, each
 *
 *   ctl (1 byte) | virtio-vsock header (44 bytes, vsock_hdr_decode) | payload
 *
 * where the payload is the next min(hdr.len, what is left) bytes.  ctl:
 *   bit 0   keep the header's CIDs (else src=guest, dst=host, so most records
 *           get past the CID check)
 *   bit 1   keep the header's type (else STREAM)
 *   bits 2-4  the rx buffer size the "device" offers when draining (8 sizes,
 *           from 0 and 43, below a header, to a full 64 KiB packet)
 *   bit 5   run the loop once (connects complete, writes finish), then
 *           accept what connected to port 1024 and write 1000 bytes into
 *           each accepted socket (data towards the guest, under its credit)
 *   bit 6   vsock_mux_reset()
 *   bit 7   drain every pending packet now (else one packet)
 * A header whose len the input cannot back is given a zeroed buffer of that
 * size when it is at most VSOCK_MAX_PAYLOAD, else the short rest of the input
 * (the mux must reject it without reading it; ASan would see the read).
 *
 * No peer processes: port 1024 has a listener the harness itself accepts on
 * (bit 5), every other port has none (connects fail, RST).  Invariants (abort on
 * violation): every packet fits the offered size, decodes, comes from CID 2
 * to the guest CID with type STREAM and no payload unless RW (at most
 * VSOCK_MAX_PAYLOAD); draining terminates within what the caps allow; after
 * vsock_mux_free() and one loop run no handle is left (uv_loop_alive() is
 * 0), and LeakSanitizer sees no leak.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz_target.h"
#include "log.h"
#include "vsock_mux.h"

#define GUEST_CID 3u
#define RECORD_HDR (1u + VSOCK_HDR_SIZE)
/* Packets one drain may yield: the RST queue, four controls per connection,
 * and data packets, each carrying at least one of the bytes fed so far. */
#define DRAIN_CTRL_MAX (2u * VSOCK_MUX_MAX_CONNECTIONS + 4u * VSOCK_MUX_MAX_CONNECTIONS)

static const size_t caps[8] = {
	0, VSOCK_HDR_SIZE - 1, VSOCK_HDR_SIZE, VSOCK_HDR_SIZE + 1, 100, 4096,
	VSOCK_HDR_SIZE + VSOCK_MAX_PAYLOAD, VSOCK_HDR_SIZE + VSOCK_MAX_PAYLOAD + 7,
};

static uv_loop_t loop;
static char dir[64], path[96];
static int listen_fd = -1;
static uint8_t out[VSOCK_HDR_SIZE + VSOCK_MAX_PAYLOAD + 8];
static uint8_t zeros[VSOCK_MAX_PAYLOAD];

/* The socket and the temporary directory go when the process ends. */
static void cleanup(void)
{
	char p[128];

	if (listen_fd >= 0)
		close(listen_fd);
	snprintf(p, sizeof(p), "%s_1024", path);
	unlink(p);
	unlink(path);
	rmdir(dir);
}

static void init_once(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	if (listen_fd >= 0)
		return;
	log_set_level(LOG_LEVEL_ERROR);
	signal(SIGPIPE, SIG_IGN); /* as miosa-vsock does (vsock_mux.h) */
	snprintf(dir, sizeof(dir), "/tmp/fuzz-vsock-mux.XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/v.sock", dir);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s_1024", path);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(listen_fd >= 0);
	CHECK(bind(listen_fd, (struct sockaddr *)&sun, sizeof(sun)) == 0);
	CHECK(listen(listen_fd, 256) == 0);
	CHECK(uv_loop_init(&loop) == 0);
	atexit(cleanup);
}

/* Connections the mux closed stay queued on the listener; drop them. */
#define PEERS_MAX 64
static int peers[PEERS_MAX];
static unsigned npeers;
static size_t fed; /* bytes written into peers during this input */

/* Accepts what connected (kept up to PEERS_MAX) and feeds every peer. */
static void feed_peers(void)
{
	static const uint8_t chunk[1000];
	int fd;

	while ((fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
		if (npeers == PEERS_MAX)
			close(fd);
		else
			peers[npeers++] = fd;
	}
	for (unsigned i = 0; i < npeers; i++) {
		ssize_t n = send(peers[i], chunk, sizeof(chunk), MSG_NOSIGNAL);

		if (n > 0) /* EAGAIN is fine */
			fed += (size_t)n;
	}
}

/* Closes every peer and whatever connected after the last feed. */
static void drop_peers(void)
{
	int fd;

	while ((fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
		close(fd);
	for (unsigned i = 0; i < npeers; i++)
		close(peers[i]);
	npeers = 0;
}

static size_t pull_one(struct vsock_mux *mux, size_t cap)
{
	struct vsock_hdr h;
	size_t n = vsock_mux_to_guest(mux, out, cap);

	if (n == 0)
		return 0;
	CHECK(cap >= VSOCK_HDR_SIZE && n <= cap);
	CHECK(vsock_hdr_decode(out, n, &h) == 0);
	CHECK(n == VSOCK_HDR_SIZE + h.len);
	CHECK(h.src_cid == VSOCK_HOST_CID && h.dst_cid == GUEST_CID);
	CHECK(h.type == VSOCK_TYPE_STREAM);
	CHECK(h.op >= VSOCK_OP_REQUEST && h.op <= VSOCK_OP_CREDIT_UPDATE);
	CHECK(h.op == VSOCK_OP_RW ? h.len > 0 && h.len <= VSOCK_MAX_PAYLOAD : h.len == 0);
	return n;
}

static void drain(struct vsock_mux *mux, size_t cap)
{
	unsigned i = 0;

	if (cap < VSOCK_HDR_SIZE) {
		CHECK(vsock_mux_to_guest(mux, out, cap) == 0);
		return;
	}
	while (pull_one(mux, cap) > 0)
		CHECK(++i <= DRAIN_CTRL_MAX + fed);
	/* A bare header's room cannot take data, which may then remain. */
	if (cap > VSOCK_HDR_SIZE)
		CHECK(!vsock_mux_has_pending(mux));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct vsock_mux_config cfg = { .uds_path = path, .guest_cid = GUEST_CID,
					      .buf_alloc = 16384 };
	struct vsock_mux *mux = NULL;
	size_t off = 0;

	init_once();
	fed = 0;
	CHECK(vsock_mux_new(&loop, &cfg, NULL, &mux) == 0);
	while (size - off >= RECORD_HDR) {
		uint8_t ctl = data[off];
		struct vsock_hdr h;
		const uint8_t *payload;
		size_t left;

		CHECK(vsock_hdr_decode(data + off + 1, VSOCK_HDR_SIZE, &h) == 0);
		off += RECORD_HDR;
		left = size - off;
		if (!(ctl & 1)) {
			h.src_cid = GUEST_CID;
			h.dst_cid = VSOCK_HOST_CID;
		}
		if (!(ctl & 2))
			h.type = VSOCK_TYPE_STREAM;
		if (h.len <= left) {
			payload = data + off;
			off += h.len;
		} else if (h.len <= VSOCK_MAX_PAYLOAD) {
			payload = zeros;
			off = size;
		} else {
			payload = data + off; /* short: must not be read */
			off = size;
		}
		vsock_mux_from_guest(mux, &h, h.len ? payload : NULL);
		if (ctl & 0x20) {
			uv_run(&loop, UV_RUN_NOWAIT);
			feed_peers();
			uv_run(&loop, UV_RUN_NOWAIT);
		}
		if (ctl & 0x40) {
			vsock_mux_reset(mux);
			CHECK(!vsock_mux_has_pending(mux));
		}
		if (ctl & 0x80)
			drain(mux, caps[(ctl >> 2) & 7]);
		else if (caps[(ctl >> 2) & 7] >= VSOCK_HDR_SIZE)
			(void)pull_one(mux, caps[(ctl >> 2) & 7]);
	}
	uv_run(&loop, UV_RUN_NOWAIT);
	drain(mux, sizeof(out));
	vsock_mux_free(mux);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK(!uv_loop_alive(&loop));
	drop_peers();
	return 0;
}
