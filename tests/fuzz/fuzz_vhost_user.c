/*
 * Fuzz target for host/vhost_user.c (and, through it, guest_mem and virtq):
 * the bytes a vhost-user frontend controls, then the ring contents a guest
 * controls.
 *
 * Input: a stream of vhost-user messages, framed as on the socket (12-byte
 * header, `size` payload bytes).  A SET_MEM_TABLE message gets one fd per
 * region it announces (up to 8), each a dup of a 64 KiB memfd; the memfd
 * holds the input itself, so ring addresses and descriptors inside the
 * mapped window are fuzzer-chosen; SET_VRING_KICK/CALL/ERR without the
 * "no fd" bit get an eventfd.  After each message every running ring
 * is drained (pop/push, at most 64 chains).  A fatal result ends the input,
 * as it ends the connection.  Invariants (reply framing) abort; memory
 * errors are ASan's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <uv.h>

#include "fuzz_target.h"
#include "vhost_user.h"

#define MEM_SIZE (64u * 1024u)

static void on_state(void *ctx, unsigned i, bool running)
{
	(void)ctx, (void)i, (void)running;
}

static void on_kick(void *ctx, unsigned i)
{
	(void)ctx, (void)i;
}

static void on_disconnected(void *ctx, int err, const char *why)
{
	(void)ctx, (void)err, (void)why;
}

static const struct vhost_user_ops ops = { on_state, on_kick, on_disconnected };

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void drain_rings(struct vhost_user *dev)
{
	static struct virtq_chain chain;

	for (unsigned i = 0; i < VHOST_USER_NUM_VRINGS; i++) {
		struct virtq *vq = vhost_user_vring(dev, i);

		for (unsigned n = 0; vq && n < 64; n++) {
			uint8_t buf[64];

			if (virtq_pop(vq, vhost_user_mem(dev), &chain) <= 0)
				break;
			CHECK(chain.n_out + chain.n_in <= VIRTQ_MAX_IOV);
			(void)virtq_chain_read(&chain, 0, buf, sizeof(buf));
			virtq_push(vq, chain.head, (uint32_t)virtq_chain_write(&chain, buf, sizeof(buf)));
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t reply[512];
	struct vhost_user *dev = NULL;
	uv_loop_t loop;
	size_t off = 0;
	int memfd;

	if (uv_loop_init(&loop) < 0)
		abort();
	memfd = memfd_create("fuzz-guest", MFD_CLOEXEC);
	CHECK(memfd >= 0 && ftruncate(memfd, MEM_SIZE) == 0);
	CHECK(pwrite(memfd, data, size < MEM_SIZE ? size : MEM_SIZE, 0) >= 0);
	CHECK(vhost_user_new(&loop, 3, &ops, NULL, &dev) == 0);

	while (size - off >= VHOST_USER_HDR_SIZE) {
		uint32_t request = le32(data + off), len = le32(data + off + 8);
		int fds[VHOST_USER_MAX_FDS];
		unsigned nfds = 0;
		const char *why = NULL;
		size_t msg_len;
		int r;

		/* Frame like the socket reader: an over-long size is fatal there. */
		if (len > VHOST_USER_MAX_PAYLOAD || len > size - off - VHOST_USER_HDR_SIZE)
			break;
		msg_len = VHOST_USER_HDR_SIZE + len;
		if (request == VHOST_USER_SET_MEM_TABLE && len >= 4) {
			uint32_t n = le32(data + off + VHOST_USER_HDR_SIZE);

			while (nfds < n && nfds < VHOST_USER_MAX_FDS)
				CHECK((fds[nfds++] = dup(memfd)) >= 0);
		}
		/* Kick/call/err without the "no fd" bit come with an eventfd. */
		if ((request == VHOST_USER_SET_VRING_KICK || request == VHOST_USER_SET_VRING_CALL ||
		     request == VHOST_USER_SET_VRING_ERR) && len == 8 &&
		    !(data[off + VHOST_USER_HDR_SIZE + 1] & 1))
			CHECK((fds[nfds++] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) >= 0);
		r = vhost_user_handle_message(dev, data + off, msg_len, fds, nfds, reply, sizeof(reply),
					      &why);
		off += msg_len;
		if (r < 0) {
			CHECK(why != NULL);
			break;
		}
		if (r > 0) {
			CHECK((size_t)r >= VHOST_USER_HDR_SIZE && (size_t)r <= sizeof(reply));
			CHECK(le32(reply + 8) == (uint32_t)r - VHOST_USER_HDR_SIZE);
			CHECK((le32(reply + 4) & VHOST_USER_FLAG_REPLY) != 0);
		}
		drain_rings(dev);
	}
	vhost_user_free(dev);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK(uv_loop_close(&loop) == 0);
	close(memfd);
	return 0;
}
