/*
 * vhost_user's codec and request table without a socket: the messages QEMU
 * 7.2 sends (FACTS.md order) drive a device over a memfd "guest memory" to
 * running rings; malformed messages (sizes, versions, fds) are fatal and
 * close every fd they carried; unknown requests are nacked only when a reply
 * was asked for and REPLY_ACK was negotiated.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <uv.h>
#include <cmocka.h>

#include "vhost_user.h"

#define MEM_SIZE (1u << 20)
#define UVA_BASE 0x7f1200000000ull
#define REPLY_CAP 512u

struct fixture {
	uv_loop_t loop;
	struct vhost_user *dev;
	int running[VHOST_USER_NUM_VRINGS];
	int kicks[VHOST_USER_NUM_VRINGS];
	int memfd;
	uint8_t *guest;   /* our own view of the guest memory */
	uint8_t msg[VHOST_USER_HDR_SIZE + VHOST_USER_MAX_PAYLOAD + 64];
	uint8_t reply[REPLY_CAP];
	const char *why;
};

static struct fixture fx;

static void on_state(void *ctx, unsigned i, bool running)
{
	(void)ctx;
	fx.running[i] = running;
}

static void on_kick(void *ctx, unsigned i)
{
	(void)ctx;
	fx.kicks[i]++;
}

static void on_disconnected(void *ctx, int err, const char *why)
{
	(void)ctx, (void)err, (void)why;
}

static const struct vhost_user_ops ops = { on_state, on_kick, on_disconnected };

static int setup(void **state)
{
	(void)state;
	memset(&fx, 0, sizeof(fx));
	if (uv_loop_init(&fx.loop) < 0 || vhost_user_new(&fx.loop, 42, &ops, NULL, &fx.dev) < 0)
		return -1;
	fx.memfd = memfd_create("guest", MFD_CLOEXEC);
	if (fx.memfd < 0 || ftruncate(fx.memfd, MEM_SIZE) < 0)
		return -1;
	fx.guest = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fx.memfd, 0);
	return fx.guest == MAP_FAILED ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	vhost_user_free(fx.dev);
	uv_run(&fx.loop, UV_RUN_DEFAULT);
	munmap(fx.guest, MEM_SIZE);
	close(fx.memfd);
	return uv_loop_close(&fx.loop) == 0 ? 0 : -1;
}

static void put_le(uint8_t *p, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = n; i > 0; i--)
		v = (v << 8) | p[i - 1];
	return v;
}

/* Builds header + payload in fx.msg; returns its length. */
static size_t build(uint32_t request, uint32_t flags, const void *payload, uint32_t size)
{
	put_le(fx.msg, request, 4);
	put_le(fx.msg + 4, flags, 4);
	put_le(fx.msg + 8, size, 4);
	if (size)
		memcpy(fx.msg + VHOST_USER_HDR_SIZE, payload, size);
	return VHOST_USER_HDR_SIZE + size;
}

static int send_fds(uint32_t request, uint32_t flags, const void *payload, uint32_t size, int *fds,
		    unsigned nfds)
{
	size_t len = build(request, flags, payload, size);

	fx.why = NULL;
	return vhost_user_handle_message(fx.dev, fx.msg, len, fds, nfds, fx.reply, sizeof(fx.reply),
					 &fx.why);
}

static int send_msg(uint32_t request, const void *payload, uint32_t size)
{
	return send_fds(request, VHOST_USER_VERSION, payload, size, NULL, 0);
}

static int send_u64(uint32_t request, uint64_t v)
{
	uint8_t p[8];

	put_le(p, v, 8);
	return send_msg(request, p, 8);
}

static int send_state(uint32_t request, uint32_t index, uint32_t num)
{
	uint8_t p[8];

	put_le(p, index, 4);
	put_le(p + 4, num, 4);
	return send_msg(request, p, 8);
}

static void assert_fd_closed(int fd)
{
	assert_int_equal(fcntl(fd, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
}

static void test_get_features_offers_version_1_and_protocol_features(void **state)
{
	(void)state;
	assert_int_equal(send_msg(VHOST_USER_GET_FEATURES, NULL, 0), VHOST_USER_HDR_SIZE + 8);
	assert_int_equal(get_le(fx.reply, 4), VHOST_USER_GET_FEATURES);
	assert_int_equal(get_le(fx.reply + 4, 4), VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY);
	assert_int_equal(get_le(fx.reply + 8, 4), 8);
	assert_int_equal(get_le(fx.reply + 12, 8), (1ull << 32) | (1ull << 30));
	assert_int_equal(send_msg(VHOST_USER_GET_PROTOCOL_FEATURES, NULL, 0), VHOST_USER_HDR_SIZE + 8);
	assert_int_equal(get_le(fx.reply + 12, 8), (1ull << 9) | (1ull << 3));
}

static void test_get_config_answers_the_guest_cid(void **state)
{
	uint8_t p[12 + 8] = { 0 };

	(void)state;
	put_le(p + 4, 8, 4);
	assert_int_equal(send_msg(VHOST_USER_GET_CONFIG, p, sizeof(p)), VHOST_USER_HDR_SIZE + 20);
	assert_int_equal(get_le(fx.reply + 12 + 4, 4), 8);
	assert_int_equal(get_le(fx.reply + 12 + 12, 8), 42);
	/* A window past the 8-byte config space reads zeros. */
	put_le(p, 4, 4);
	assert_int_equal(send_msg(VHOST_USER_GET_CONFIG, p, sizeof(p)), VHOST_USER_HDR_SIZE + 20);
	assert_int_equal(get_le(fx.reply + 12 + 12, 8), 0);
}

static void test_get_config_rejects_bad_ranges(void **state)
{
	uint8_t p[12 + 8] = { 0 };

	(void)state;
	put_le(p + 4, 9, 4);  /* size says 9, 8 bytes follow */
	assert_int_equal(send_msg(VHOST_USER_GET_CONFIG, p, sizeof(p)), -EBADMSG);
	put_le(p, 252, 4);    /* offset + size past 256 */
	put_le(p + 4, 8, 4);
	assert_int_equal(send_msg(VHOST_USER_GET_CONFIG, p, sizeof(p)), -EBADMSG);
	put_le(p, 0, 4);
	put_le(p + 4, 0xffffffffu, 4);
	assert_int_equal(send_msg(VHOST_USER_GET_CONFIG, p, sizeof(p)), -EBADMSG);
	assert_non_null(fx.why);
}

static void test_set_config_is_refused(void **state)
{
	uint8_t p[12 + 8] = { 0 };

	(void)state;
	put_le(p + 4, 8, 4);
	assert_int_equal(send_msg(VHOST_USER_SET_CONFIG, p, sizeof(p)), -EPERM);
}

static void test_wrong_payload_sizes_are_fatal(void **state)
{
	uint8_t p[16] = { 0 };

	(void)state;
	assert_int_equal(send_msg(VHOST_USER_SET_FEATURES, p, 4), -EBADMSG);
	assert_int_equal(send_msg(VHOST_USER_SET_VRING_NUM, p, 16), -EBADMSG);
	assert_int_equal(send_msg(VHOST_USER_SET_VRING_ADDR, p, 8), -EBADMSG);
	assert_int_equal(send_msg(VHOST_USER_GET_FEATURES, p, 8), -EBADMSG);
	/* size field disagreeing with the bytes given */
	build(VHOST_USER_SET_OWNER, VHOST_USER_VERSION, NULL, 0);
	put_le(fx.msg + 8, 8, 4);
	assert_int_equal(vhost_user_handle_message(fx.dev, fx.msg, VHOST_USER_HDR_SIZE, NULL, 0,
						   fx.reply, sizeof(fx.reply), &fx.why), -EMSGSIZE);
	/* over the payload cap */
	put_le(fx.msg + 8, VHOST_USER_MAX_PAYLOAD + 1, 4);
	assert_int_equal(vhost_user_handle_message(fx.dev, fx.msg,
						   VHOST_USER_HDR_SIZE + VHOST_USER_MAX_PAYLOAD + 1,
						   NULL, 0, fx.reply, sizeof(fx.reply), &fx.why),
			 -EMSGSIZE);
	/* shorter than a header */
	assert_int_equal(vhost_user_handle_message(fx.dev, fx.msg, 11, NULL, 0, fx.reply,
						   sizeof(fx.reply), &fx.why), -EBADMSG);
	assert_non_null(fx.why);
}

static void test_wrong_version_or_reply_flag_is_fatal(void **state)
{
	(void)state;
	assert_int_equal(send_fds(VHOST_USER_SET_OWNER, 2, NULL, 0, NULL, 0), -EPROTO);
	assert_int_equal(send_fds(VHOST_USER_SET_OWNER, 0, NULL, 0, NULL, 0), -EPROTO);
	assert_int_equal(send_fds(VHOST_USER_SET_OWNER, VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY,
				  NULL, 0, NULL, 0), -EPROTO);
}

static void test_too_many_fds_are_refused_and_closed(void **state)
{
	int fds[VHOST_USER_MAX_FDS + 1];

	(void)state;
	for (unsigned i = 0; i < VHOST_USER_MAX_FDS + 1; i++)
		assert_true((fds[i] = eventfd(0, EFD_CLOEXEC)) >= 0);
	assert_int_equal(send_fds(VHOST_USER_SET_OWNER, VHOST_USER_VERSION, NULL, 0, fds,
				  VHOST_USER_MAX_FDS + 1), -EBADMSG);
	for (unsigned i = 0; i < VHOST_USER_MAX_FDS + 1; i++)
		assert_fd_closed(fds[i]);
}

static void test_fd_on_a_message_that_takes_none_is_fatal_and_closed(void **state)
{
	int fd = eventfd(0, EFD_CLOEXEC);

	(void)state;
	assert_int_equal(send_fds(VHOST_USER_SET_OWNER, VHOST_USER_VERSION, NULL, 0, &fd, 1), -EBADMSG);
	assert_fd_closed(fd);
}

static void test_unknown_request_is_ignored_without_need_reply(void **state)
{
	int fd = eventfd(0, EFD_CLOEXEC);

	(void)state;
	assert_int_equal(send_fds(17 /* GET_QUEUE_NUM: MQ not offered */, VHOST_USER_VERSION, NULL, 0,
				  &fd, 1), 0);
	assert_fd_closed(fd);
	/* NEED_REPLY without REPLY_ACK negotiated: nothing to answer with. */
	assert_int_equal(send_fds(99, VHOST_USER_VERSION | VHOST_USER_FLAG_NEED_REPLY, NULL, 0, NULL, 0),
			 0);
}

static void test_unknown_request_is_nacked_with_reply_ack(void **state)
{
	(void)state;
	assert_int_equal(send_u64(VHOST_USER_SET_PROTOCOL_FEATURES, 1ull << 3), 0);
	assert_int_equal(send_fds(99, VHOST_USER_VERSION | VHOST_USER_FLAG_NEED_REPLY, NULL, 0, NULL, 0),
			 VHOST_USER_HDR_SIZE + 8);
	assert_int_equal(get_le(fx.reply, 4), 99);
	assert_int_equal(get_le(fx.reply + 4, 4), VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY);
	assert_int_not_equal(get_le(fx.reply + 12, 8), 0);
}

static void test_reply_ack_reports_success_and_failure(void **state)
{
	uint8_t p[8];

	(void)state;
	assert_int_equal(send_u64(VHOST_USER_SET_PROTOCOL_FEATURES, 1ull << 3), 0);
	assert_int_equal(send_fds(VHOST_USER_SET_OWNER, VHOST_USER_VERSION | VHOST_USER_FLAG_NEED_REPLY,
				  NULL, 0, NULL, 0), VHOST_USER_HDR_SIZE + 8);
	assert_int_equal(get_le(fx.reply + 12, 8), 0);
	/* A refused value is nacked, not fatal, when the frontend asked. */
	put_le(p, 1ull << 40, 8);
	assert_int_equal(send_fds(VHOST_USER_SET_FEATURES, VHOST_USER_VERSION | VHOST_USER_FLAG_NEED_REPLY,
				  p, 8, NULL, 0), VHOST_USER_HDR_SIZE + 8);
	assert_int_equal(get_le(fx.reply + 12, 8), 1);
	assert_non_null(strstr(fx.why, "not offered"));
}

static void test_unoffered_features_are_fatal_without_reply_ack(void **state)
{
	(void)state;
	assert_int_equal(send_u64(VHOST_USER_SET_FEATURES, 1ull << 29 /* EVENT_IDX */), -EINVAL);
	assert_int_equal(send_u64(VHOST_USER_SET_PROTOCOL_FEATURES, 1ull << 0 /* MQ */), -EINVAL);
}

static void test_vring_values_are_checked(void **state)
{
	(void)state;
	assert_int_equal(send_state(VHOST_USER_SET_VRING_NUM, 2, 128), -ERANGE);  /* event queue */
	assert_int_equal(send_state(VHOST_USER_SET_VRING_NUM, 0, 100), -EINVAL);
	assert_int_equal(send_state(VHOST_USER_SET_VRING_NUM, 0, 65536), -EINVAL);
	assert_int_equal(send_state(VHOST_USER_SET_VRING_BASE, 0, 65536), -EINVAL);
	assert_int_equal(send_state(VHOST_USER_SET_VRING_ENABLE, 0, 2), -EINVAL);
	assert_int_equal(send_u64(VHOST_USER_SET_VRING_CALL, 0x100 | 5), -ERANGE);
	assert_int_equal(send_u64(VHOST_USER_SET_VRING_CALL, 0x200), -EINVAL);
	assert_int_equal(send_u64(VHOST_USER_SET_VRING_CALL, 0), -EBADMSG);  /* fd missing */
	assert_int_equal(send_u64(VHOST_USER_SET_VRING_KICK, 0x100), -ENOTSUP);
}

static int send_mem_table(uint64_t gpa, uint64_t size, uint64_t off, int *fds, unsigned nfds,
			  unsigned nregions)
{
	uint8_t p[8 + 32 * 2] = { 0 };

	put_le(p, nregions, 4);
	for (unsigned i = 0; i < nregions && i < 2; i++) {
		put_le(p + 8 + 32 * i, gpa, 8);
		put_le(p + 8 + 32 * i + 8, size, 8);
		put_le(p + 8 + 32 * i + 16, UVA_BASE, 8);
		put_le(p + 8 + 32 * i + 24, off, 8);
	}
	return send_fds(VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION, p, 8 + 32 * nregions, fds, nfds);
}

static void test_mem_table_needs_one_fd_per_region(void **state)
{
	int fd = dup(fx.memfd);

	(void)state;
	assert_int_equal(send_mem_table(0, MEM_SIZE, 0, &fd, 1, 2), -EBADMSG);
	assert_fd_closed(fd);
	assert_int_equal(send_mem_table(0, MEM_SIZE, 0, NULL, 0, 1), -EBADMSG);
	fd = dup(fx.memfd);
	assert_int_equal(send_mem_table(0, 0, 0, &fd, 1, 1), -EINVAL);  /* empty region */
	assert_fd_closed(fd);
	fd = dup(fx.memfd);
	assert_int_equal(send_mem_table(0, MEM_SIZE, UINT64_MAX - 4, &fd, 1, 1), -EINVAL);
	assert_fd_closed(fd);
	/* A region past the end of its file would SIGBUS on first touch. */
	fd = dup(fx.memfd);
	assert_int_equal(send_mem_table(0, MEM_SIZE, 4096, &fd, 1, 1), -ERANGE);
	fd = dup(fx.memfd);
	assert_int_equal(send_mem_table(0, 2 * MEM_SIZE, 0, &fd, 1, 1), -ERANGE);
	/* Not a file at all. */
	fd = eventfd(0, EFD_CLOEXEC);
	assert_int_equal(send_mem_table(0, MEM_SIZE, 0, &fd, 1, 1), -ERANGE);
	assert_int_equal(vhost_user_mem(fx.dev)->n, 0);
}

/* Rings for queue i at GPA/offset 0x1000 * (1 + 4 i): desc, avail +0x800, used +0x1000. */
static void set_addr(uint32_t i, uint64_t base_uva)
{
	uint8_t p[40] = { 0 };

	put_le(p, i, 4);
	put_le(p + 8, base_uva, 8);            /* desc */
	put_le(p + 16, base_uva + 0x1000, 8);  /* used */
	put_le(p + 24, base_uva + 0x800, 8);   /* avail */
	assert_int_equal(send_msg(VHOST_USER_SET_VRING_ADDR, p, sizeof(p)), 0);
}

static void test_qemu_sequence_starts_and_stops_rings(void **state)
{
	int fd, kick, call;
	uint64_t ring = UVA_BASE + 0x4000;
	struct virtq *vq;
	uint8_t p[8];

	(void)state;
	/* FACTS.md: the order QEMU 7.2 sends. */
	assert_true(send_msg(VHOST_USER_GET_FEATURES, NULL, 0) > 0);
	assert_true(send_msg(VHOST_USER_GET_PROTOCOL_FEATURES, NULL, 0) > 0);
	assert_int_equal(send_u64(VHOST_USER_SET_PROTOCOL_FEATURES, 1ull << 9), 0);
	assert_int_equal(send_msg(VHOST_USER_SET_OWNER, NULL, 0), 0);
	for (uint32_t i = 0; i < 2; i++) {
		call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		put_le(p, i, 8);
		assert_int_equal(send_fds(VHOST_USER_SET_VRING_CALL, VHOST_USER_VERSION, p, 8, &call, 1), 0);
		fd = eventfd(0, EFD_CLOEXEC);
		assert_int_equal(send_fds(VHOST_USER_SET_VRING_ERR, VHOST_USER_VERSION, p, 8, &fd, 1), 0);
		assert_fd_closed(fd);   /* validated, not kept */
	}
	assert_int_equal(send_u64(VHOST_USER_SET_FEATURES, (1ull << 32) | (1ull << 30)), 0);
	fd = dup(fx.memfd);
	assert_int_equal(send_mem_table(0, MEM_SIZE, 0, &fd, 1, 1), 0);
	assert_fd_closed(fd);   /* the mapping keeps the memory */
	assert_int_equal(vhost_user_mem(fx.dev)->n, 1);

	assert_int_equal(send_state(VHOST_USER_SET_VRING_NUM, 1, 128), 0);
	assert_int_equal(send_state(VHOST_USER_SET_VRING_BASE, 1, 7), 0);
	set_addr(1, ring);
	kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	fd = kick;   /* the handler takes the fd (and marks our slot -1) */
	put_le(p, 1, 8);
	assert_int_equal(send_fds(VHOST_USER_SET_VRING_KICK, VHOST_USER_VERSION, p, 8, &fd, 1), 0);
	assert_int_equal(fd, -1);
	/* PROTOCOL_FEATURES negotiated: the ring waits for SET_VRING_ENABLE. */
	assert_int_equal(fx.running[1], 0);
	assert_null(vhost_user_vring(fx.dev, 1));
	assert_int_equal(send_state(VHOST_USER_SET_VRING_ENABLE, 1, 1), 0);
	assert_int_equal(fx.running[1], 1);
	assert_int_equal(fx.kicks[1], 1);  /* started rings are looked at once */
	vq = vhost_user_vring(fx.dev, 1);
	assert_non_null(vq);
	/* The device's own mapping of the memfd shows what the guest wrote. */
	memcpy(fx.guest + 0x4000, "desc", 4);
	assert_memory_equal(vq->desc, "desc", 4);
	assert_int_equal(vq->last_avail_idx, 7);

	/* A guest kick through the eventfd reaches ops->kick via the loop. */
	assert_int_equal(write(kick, &(uint64_t){ 1 }, 8), 8);
	uv_run(&fx.loop, UV_RUN_NOWAIT);
	assert_int_equal(fx.kicks[1], 2);

	/* No reconfiguring a running ring. */
	assert_int_equal(send_state(VHOST_USER_SET_VRING_NUM, 1, 64), -EBUSY);

	/* GET_VRING_BASE stops the ring and returns where it got to. */
	assert_int_equal(send_state(VHOST_USER_GET_VRING_BASE, 1, 0), VHOST_USER_HDR_SIZE + 8);
	assert_int_equal(get_le(fx.reply + 12, 4), 1);
	assert_int_equal(get_le(fx.reply + 16, 4), 7);
	assert_int_equal(fx.running[1], 0);
	assert_null(vhost_user_vring(fx.dev, 1));
}

static void test_ring_outside_memory_fails_the_start(void **state)
{
	int fd = dup(fx.memfd), kick;
	uint8_t p[8];

	(void)state;
	assert_int_equal(send_u64(VHOST_USER_SET_FEATURES, 1ull << 32), 0);  /* rings start enabled */
	assert_int_equal(send_mem_table(0, MEM_SIZE, 0, &fd, 1, 1), 0);
	assert_int_equal(send_state(VHOST_USER_SET_VRING_NUM, 0, 128), 0);
	set_addr(0, UVA_BASE + MEM_SIZE - 0x800);   /* used ring past the end */
	kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	put_le(p, 0, 8);
	assert_int_equal(send_fds(VHOST_USER_SET_VRING_KICK, VHOST_USER_VERSION, p, 8, &kick, 1),
			 -EFAULT);
	assert_int_equal(fx.running[0], 0);
}

static void test_reset_owner_stops_rings_and_unmaps(void **state)
{
	int fd = dup(fx.memfd), kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), slot = kick;
	uint8_t p[8];

	(void)state;
	assert_int_equal(send_u64(VHOST_USER_SET_FEATURES, 1ull << 32), 0);
	assert_int_equal(send_mem_table(0, MEM_SIZE, 0, &fd, 1, 1), 0);
	assert_int_equal(send_state(VHOST_USER_SET_VRING_NUM, 0, 64), 0);
	set_addr(0, UVA_BASE + 0x8000);
	put_le(p, 0, 8);
	assert_int_equal(send_fds(VHOST_USER_SET_VRING_KICK, VHOST_USER_VERSION, p, 8, &slot, 1), 0);
	assert_int_equal(fx.running[0], 1);
	assert_int_not_equal(fcntl(kick, F_GETFD), -1);   /* kept while the ring runs */
	assert_int_equal(send_msg(VHOST_USER_RESET_OWNER, NULL, 0), 0);
	assert_int_equal(fx.running[0], 0);
	assert_int_equal(vhost_user_mem(fx.dev)->n, 0);
	assert_fd_closed(kick);
}

static void test_mem_table_change_moves_running_rings_or_keeps_the_old_table(void **state)
{
	int fd = dup(fx.memfd), kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct virtq *vq;
	uint8_t p[8];

	(void)state;
	assert_int_equal(send_u64(VHOST_USER_SET_FEATURES, 1ull << 32), 0);
	assert_int_equal(send_mem_table(0, MEM_SIZE, 0, &fd, 1, 1), 0);
	assert_int_equal(send_state(VHOST_USER_SET_VRING_NUM, 1, 64), 0);
	set_addr(1, UVA_BASE + 0x8000);
	put_le(p, 1, 8);
	assert_int_equal(send_fds(VHOST_USER_SET_VRING_KICK, VHOST_USER_VERSION, p, 8, &kick, 1), 0);
	vq = vhost_user_vring(fx.dev, 1);
	assert_non_null(vq);
	vq->last_avail_idx = 5;   /* as if 5 chains had been popped */

	/* Hotplug-style change: same ring, new mapping; progress is kept. */
	fd = dup(fx.memfd);
	assert_int_equal(send_mem_table(0, MEM_SIZE, 0, &fd, 1, 1), 0);
	vq = vhost_user_vring(fx.dev, 1);
	assert_non_null(vq);
	assert_int_equal(vq->last_avail_idx, 5);
	memcpy(fx.guest + 0x8000, "ring", 4);
	assert_memory_equal(vq->desc, "ring", 4);

	/* A table the running ring does not fit in is refused; the old one stays. */
	fd = dup(fx.memfd);
	assert_int_equal(send_mem_table(0, 0x4000, 0, &fd, 1, 1), -EFAULT);
	assert_int_equal(vhost_user_mem(fx.dev)->r[0].size, MEM_SIZE);
	vq = vhost_user_vring(fx.dev, 1);
	assert_non_null(vq);
	assert_int_equal(vq->last_avail_idx, 5);
	memcpy(fx.guest + 0x8000, "same", 4);
	assert_memory_equal(vq->desc, "same", 4);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_get_features_offers_version_1_and_protocol_features),
		T(test_get_config_answers_the_guest_cid),
		T(test_get_config_rejects_bad_ranges),
		T(test_set_config_is_refused),
		T(test_wrong_payload_sizes_are_fatal),
		T(test_wrong_version_or_reply_flag_is_fatal),
		T(test_too_many_fds_are_refused_and_closed),
		T(test_fd_on_a_message_that_takes_none_is_fatal_and_closed),
		T(test_unknown_request_is_ignored_without_need_reply),
		T(test_unknown_request_is_nacked_with_reply_ack),
		T(test_reply_ack_reports_success_and_failure),
		T(test_unoffered_features_are_fatal_without_reply_ack),
		T(test_vring_values_are_checked),
		T(test_mem_table_needs_one_fd_per_region),
		T(test_qemu_sequence_starts_and_stops_rings),
		T(test_ring_outside_memory_fails_the_start),
		T(test_reset_owner_stops_rings_and_unmaps),
		T(test_mem_table_change_moves_running_rings_or_keeps_the_old_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
