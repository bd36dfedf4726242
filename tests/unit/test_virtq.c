/*
 * virtq and guest_mem against split rings laid out in an ordinary buffer
 * registered as guest memory: what a well-behaved driver makes available
 * comes out as chains; everything a hostile guest can write into the rings
 * (loops, out-of-range heads and addresses, long chains, direction misuse,
 * runaway indexes) is a device error, never an access outside the buffer.
 */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cmocka.h>

#include "guest_mem.h"
#include "virtq.h"

#define MEM_SIZE (256u * 1024u)
#define GPA_BASE 0x100000u
#define UVA_BASE 0x7f0000000000ull
#define NUM 16u
#define DESC_OFF 0x0u
#define AVAIL_OFF 0x1000u
#define USED_OFF 0x2000u
#define DATA_OFF 0x10000u   /* buffers live from here */

struct fixture {
	_Alignas(4096) uint8_t mem[MEM_SIZE];
	struct guest_mem gm;
	struct virtq vq;
	struct virtq_chain chain;
	uint16_t avail_idx;
};

static struct fixture fx;

static void set_desc(uint16_t i, uint64_t gpa, uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *d = fx.mem + DESC_OFF + 16u * i;
	uint64_t a = htole64(gpa);
	uint32_t l = htole32(len);
	uint16_t f = htole16(flags), n = htole16(next);

	memcpy(d, &a, 8);
	memcpy(d + 8, &l, 4);
	memcpy(d + 12, &f, 2);
	memcpy(d + 14, &n, 2);
}

static void set_u16(size_t off, uint16_t v)
{
	v = htole16(v);
	memcpy(fx.mem + off, &v, 2);
}

static uint16_t get_u16(size_t off)
{
	uint16_t v;

	memcpy(&v, fx.mem + off, 2);
	return le16toh(v);
}

static uint32_t get_u32(size_t off)
{
	uint32_t v;

	memcpy(&v, fx.mem + off, 4);
	return le32toh(v);
}

/* Makes chain `head` available, as the driver does: ring slot, then idx. */
static void make_avail(uint16_t head)
{
	set_u16(AVAIL_OFF + 4 + 2u * (fx.avail_idx % NUM), head);
	fx.avail_idx++;
	set_u16(AVAIL_OFF + 2, fx.avail_idx);
}

static int setup_ring(uint16_t base)
{
	memset(&fx, 0, sizeof(fx));
	fx.vq.call_fd = -1;
	fx.avail_idx = base;
	set_u16(AVAIL_OFF + 2, base);
	set_u16(USED_OFF + 2, base);
	if (guest_mem_add_buffer(&fx.gm, fx.mem, GPA_BASE, MEM_SIZE, UVA_BASE) < 0)
		return -1;
	return virtq_attach(&fx.vq, NUM, base, fx.mem + DESC_OFF, fx.mem + AVAIL_OFF,
			    fx.mem + USED_OFF);
}

static int setup(void **state)
{
	(void)state;
	return setup_ring(0);
}

static void test_pops_readable_then_writable_parts_and_pushes_used(void **state)
{
	uint8_t got[8];

	(void)state;
	memcpy(fx.mem + DATA_OFF, "head", 4);
	memcpy(fx.mem + DATA_OFF + 0x100, "body", 4);
	set_desc(3, GPA_BASE + DATA_OFF, 4, VIRTQ_DESC_F_NEXT, 7);
	set_desc(7, GPA_BASE + DATA_OFF + 0x100, 4, VIRTQ_DESC_F_NEXT, 1);
	set_desc(1, GPA_BASE + DATA_OFF + 0x200, 64, VIRTQ_DESC_F_WRITE, 0);
	make_avail(3);

	assert_int_equal(virtq_pop(&fx.vq, &fx.gm, &fx.chain), 1);
	assert_int_equal(fx.chain.head, 3);
	assert_int_equal(fx.chain.n_out, 2);
	assert_int_equal(fx.chain.n_in, 1);
	assert_int_equal(fx.chain.out_len, 8);
	assert_int_equal(fx.chain.in_len, 64);
	assert_int_equal(virtq_chain_read(&fx.chain, 0, got, sizeof(got)), 8);
	assert_memory_equal(got, "headbody", 8);
	/* An offset crossing the first buffer continues in the second. */
	assert_int_equal(virtq_chain_read(&fx.chain, 2, got, 4), 4);
	assert_memory_equal(got, "adbo", 4);
	assert_int_equal(virtq_chain_write(&fx.chain, "reply", 5), 5);
	assert_memory_equal(fx.mem + DATA_OFF + 0x200, "reply", 5);

	virtq_push(&fx.vq, fx.chain.head, 5);
	assert_int_equal(get_u16(USED_OFF + 2), 1);
	assert_int_equal(get_u32(USED_OFF + 4), 3);
	assert_int_equal(get_u32(USED_OFF + 8), 5);
	assert_int_equal(virtq_pop(&fx.vq, &fx.gm, &fx.chain), 0);
}

static void test_chain_write_stops_at_writable_capacity(void **state)
{
	(void)state;
	set_desc(0, GPA_BASE + DATA_OFF, 3, VIRTQ_DESC_F_WRITE, 0);
	make_avail(0);
	assert_int_equal(virtq_pop(&fx.vq, &fx.gm, &fx.chain), 1);
	assert_int_equal(virtq_chain_write(&fx.chain, "abcdef", 6), 3);
	assert_int_equal(fx.mem[DATA_OFF + 3], 0);
}

static void test_empty_ring_pops_nothing(void **state)
{
	(void)state;
	assert_int_equal(virtq_pop(&fx.vq, &fx.gm, &fx.chain), 0);
	assert_false(fx.vq.broken);
}

static void assert_broken(const char *reason_part)
{
	assert_int_equal(virtq_pop(&fx.vq, &fx.gm, &fx.chain), -EIO);
	assert_true(fx.vq.broken);
	assert_non_null(strstr(fx.vq.error, reason_part));
	/* A broken ring stays broken: nothing more is read from it. */
	assert_int_equal(virtq_pop(&fx.vq, &fx.gm, &fx.chain), -EIO);
}

static void test_chain_loop_is_a_device_error(void **state)
{
	(void)state;
	set_desc(0, GPA_BASE + DATA_OFF, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(1, GPA_BASE + DATA_OFF, 16, VIRTQ_DESC_F_NEXT, 0);
	make_avail(0);
	assert_broken("loop");
}

static void test_self_loop_with_zero_length_is_a_device_error(void **state)
{
	(void)state;
	set_desc(5, 0, 0, VIRTQ_DESC_F_NEXT, 5);
	make_avail(5);
	assert_broken("loop");
}

static void test_address_outside_guest_memory_is_a_device_error(void **state)
{
	(void)state;
	set_desc(0, GPA_BASE - 1, 16, 0, 0);   /* starts one byte before */
	make_avail(0);
	assert_broken("outside guest memory");
}

static void test_buffer_crossing_the_end_of_memory_is_a_device_error(void **state)
{
	(void)state;
	set_desc(0, GPA_BASE + MEM_SIZE - 8, 9, 0, 0);
	make_avail(0);
	assert_broken("outside guest memory");
}

static void test_address_that_would_wrap_is_a_device_error(void **state)
{
	(void)state;
	set_desc(0, UINT64_MAX - 3, 0xffffffffu, 0, 0);
	make_avail(0);
	assert_broken("outside guest memory");
}

static void test_buffer_ending_exactly_at_memory_end_is_accepted(void **state)
{
	(void)state;
	set_desc(0, GPA_BASE + MEM_SIZE - 8, 8, 0, 0);
	make_avail(0);
	assert_int_equal(virtq_pop(&fx.vq, &fx.gm, &fx.chain), 1);
	assert_ptr_equal(fx.chain.iov[0].base, fx.mem + MEM_SIZE - 8);
}

static void test_head_outside_table_is_a_device_error(void **state)
{
	(void)state;
	make_avail(NUM);
	assert_broken("head");
}

static void test_next_outside_table_is_a_device_error(void **state)
{
	(void)state;
	set_desc(0, GPA_BASE + DATA_OFF, 16, VIRTQ_DESC_F_NEXT, NUM);
	make_avail(0);
	assert_broken("next descriptor");
}

static void test_chain_longer_than_iov_cap_is_a_device_error(void **state)
{
	(void)state;
	assert_int_equal(setup_ring(0), 0);
	/* A queue of 128 lets a chain of 65 distinct descriptors exist. */
	memset(fx.mem + AVAIL_OFF, 0, 0x1000);
	assert_int_equal(virtq_attach(&fx.vq, 128, 0, fx.mem + DESC_OFF, fx.mem + AVAIL_OFF + 0x800,
				      fx.mem + USED_OFF + 0x800), 0);
	for (uint16_t i = 0; i <= VIRTQ_MAX_IOV; i++)
		set_desc(i, GPA_BASE + DATA_OFF, 1, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
	set_desc(VIRTQ_MAX_IOV, GPA_BASE + DATA_OFF, 1, 0, 0);
	set_u16(AVAIL_OFF + 0x800 + 4, 0);
	set_u16(AVAIL_OFF + 0x800 + 2, 1);
	assert_broken("too many buffers");
}

static void test_chain_of_max_iov_buffers_is_accepted(void **state)
{
	(void)state;
	memset(fx.mem + AVAIL_OFF, 0, 0x1000);
	assert_int_equal(virtq_attach(&fx.vq, 128, 0, fx.mem + DESC_OFF, fx.mem + AVAIL_OFF + 0x800,
				      fx.mem + USED_OFF + 0x800), 0);
	for (uint16_t i = 0; i < VIRTQ_MAX_IOV; i++)
		set_desc(i, GPA_BASE + DATA_OFF + i, 1, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
	set_desc(VIRTQ_MAX_IOV - 1, GPA_BASE + DATA_OFF, 1, 0, 0);
	set_u16(AVAIL_OFF + 0x800 + 2, 1);
	assert_int_equal(virtq_pop(&fx.vq, &fx.gm, &fx.chain), 1);
	assert_int_equal(fx.chain.n_out, VIRTQ_MAX_IOV);
}

static void test_zero_length_descriptors_carry_nothing(void **state)
{
	(void)state;
	set_desc(0, 0xdeadbeef00ull, 0, VIRTQ_DESC_F_NEXT, 1);  /* never translated */
	set_desc(1, GPA_BASE + DATA_OFF, 4, VIRTQ_DESC_F_NEXT, 2);
	set_desc(2, 0, 0, VIRTQ_DESC_F_WRITE, 0);
	make_avail(0);
	assert_int_equal(virtq_pop(&fx.vq, &fx.gm, &fx.chain), 1);
	assert_int_equal(fx.chain.n_out, 1);
	assert_int_equal(fx.chain.n_in, 0);
	assert_int_equal(fx.chain.out_len, 4);
	assert_int_equal(fx.chain.in_len, 0);
	assert_int_equal(virtq_chain_write(&fx.chain, "x", 1), 0);
}

static void test_readable_after_writable_is_a_device_error(void **state)
{
	(void)state;
	set_desc(0, GPA_BASE + DATA_OFF, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(1, GPA_BASE + DATA_OFF + 16, 16, 0, 0);
	make_avail(0);
	assert_broken("readable descriptor after a writable");
}

static void test_write_only_chain_has_nothing_to_read(void **state)
{
	uint8_t got[4] = { 0 };

	(void)state;
	set_desc(0, GPA_BASE + DATA_OFF, 16, VIRTQ_DESC_F_WRITE, 0);
	make_avail(0);
	assert_int_equal(virtq_pop(&fx.vq, &fx.gm, &fx.chain), 1);
	assert_int_equal(fx.chain.out_len, 0);
	assert_int_equal(virtq_chain_read(&fx.chain, 0, got, sizeof(got)), 0);
}

static void test_indirect_descriptor_is_a_device_error(void **state)
{
	(void)state;
	set_desc(0, GPA_BASE + DATA_OFF, 16, VIRTQ_DESC_F_INDIRECT, 0);
	make_avail(0);
	assert_broken("indirect");
}

static void test_avail_index_past_queue_size_is_a_device_error(void **state)
{
	(void)state;
	set_u16(AVAIL_OFF + 2, NUM + 1);
	assert_broken("queue size");
}

static void test_indexes_wrap_around_16_bits(void **state)
{
	(void)state;
	assert_int_equal(setup_ring(65534), 0);
	for (uint16_t i = 0; i < 4; i++) {
		set_desc(i, GPA_BASE + DATA_OFF + i, 1, 0, 0);
		make_avail(i);
	}
	assert_int_equal(get_u16(AVAIL_OFF + 2), 2);  /* 65534 + 4 wrapped */
	for (uint16_t i = 0; i < 4; i++) {
		assert_int_equal(virtq_pop(&fx.vq, &fx.gm, &fx.chain), 1);
		assert_int_equal(fx.chain.head, i);
		virtq_push(&fx.vq, fx.chain.head, 0);
	}
	assert_int_equal(virtq_pop(&fx.vq, &fx.gm, &fx.chain), 0);
	assert_int_equal(get_u16(USED_OFF + 2), 2);
	/* The element pushed at used idx 65535 sits in slot 65535 % NUM. */
	assert_int_equal(get_u32(USED_OFF + 4 + 8u * (65535u % NUM)), 1);
}

static void test_unpop_gives_the_chain_back(void **state)
{
	(void)state;
	set_desc(2, GPA_BASE + DATA_OFF, 8, VIRTQ_DESC_F_WRITE, 0);
	make_avail(2);
	assert_int_equal(virtq_pop(&fx.vq, &fx.gm, &fx.chain), 1);
	virtq_unpop(&fx.vq);
	assert_int_equal(virtq_pop(&fx.vq, &fx.gm, &fx.chain), 1);
	assert_int_equal(fx.chain.head, 2);
}

static void test_notify_signals_call_fd_unless_suppressed(void **state)
{
	uint64_t v = 0;
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

	(void)state;
	assert_true(efd >= 0);
	assert_int_equal(virtq_notify(&fx.vq), 0);   /* no call fd */
	fx.vq.call_fd = efd;
	assert_int_equal(virtq_notify(&fx.vq), 1);
	assert_int_equal(read(efd, &v, sizeof(v)), sizeof(v));
	assert_int_equal(v, 1);
	set_u16(AVAIL_OFF, VIRTQ_AVAIL_F_NO_INTERRUPT);
	assert_int_equal(virtq_notify(&fx.vq), 0);
	assert_int_equal(read(efd, &v, sizeof(v)), -1);
	close(efd);
}

static void test_attach_refuses_bad_sizes_and_alignment(void **state)
{
	struct virtq vq = { .call_fd = -1 };

	(void)state;
	assert_int_equal(virtq_attach(&vq, 3, 0, fx.mem, fx.mem + AVAIL_OFF, fx.mem + USED_OFF), -EINVAL);
	assert_int_equal(virtq_attach(&vq, 0, 0, fx.mem, fx.mem + AVAIL_OFF, fx.mem + USED_OFF), -EINVAL);
	assert_int_equal(virtq_attach(&vq, 16, 0, fx.mem + 8, fx.mem + AVAIL_OFF, fx.mem + USED_OFF),
			 -EINVAL);
	assert_int_equal(virtq_attach(&vq, 16, 0, fx.mem, fx.mem + AVAIL_OFF + 1, fx.mem + USED_OFF),
			 -EINVAL);
	assert_int_equal(virtq_attach(&vq, 16, 0, fx.mem, fx.mem + AVAIL_OFF, fx.mem + USED_OFF + 2),
			 -EINVAL);
	assert_false(vq.attached);
	assert_false(virtq_size_valid(65536));
	assert_true(virtq_size_valid(32768));
}

static void test_guest_mem_translates_only_whole_ranges(void **state)
{
	struct guest_mem m = { 0 };
	static uint8_t a[64], b[64];

	(void)state;
	assert_int_equal(guest_mem_add_buffer(&m, a, 0x1000, sizeof(a), 0x9000), 0);
	assert_int_equal(guest_mem_add_buffer(&m, b, 0x1040, sizeof(b), 0xa000), 0);
	assert_ptr_equal(guest_mem_gpa(&m, 0x1000, 64), a);
	assert_ptr_equal(guest_mem_gpa(&m, 0x1040, 1), b);
	/* Adjacent regions are still separate mappings: no straddling. */
	assert_null(guest_mem_gpa(&m, 0x103f, 2));
	assert_null(guest_mem_gpa(&m, 0x1080, 1));
	assert_null(guest_mem_gpa(&m, 0xfff, 1));
	assert_null(guest_mem_gpa(&m, 0x1000, UINT64_MAX));
	assert_ptr_equal(guest_mem_uva(&m, 0xa010, 8), b + 16);
	assert_null(guest_mem_uva(&m, 0x1000, 1));
	assert_int_equal(guest_mem_add_buffer(&m, a, UINT64_MAX - 10, sizeof(a), 0), -EINVAL);
	assert_int_equal(guest_mem_add_buffer(&m, a, 0, 0, 0), -EINVAL);
	for (unsigned i = 2; i < GUEST_MEM_MAX_REGIONS; i++)
		assert_int_equal(guest_mem_add_buffer(&m, a, 0x100000ull * i, sizeof(a), 0), 0);
	assert_int_equal(guest_mem_add_buffer(&m, a, 0x10000000, sizeof(a), 0), -E2BIG);
	guest_mem_unmap_all(&m);
	assert_int_equal(m.n, 0);
}

#define T(f) cmocka_unit_test_setup(f, setup)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_pops_readable_then_writable_parts_and_pushes_used),
		T(test_chain_write_stops_at_writable_capacity),
		T(test_empty_ring_pops_nothing),
		T(test_chain_loop_is_a_device_error),
		T(test_self_loop_with_zero_length_is_a_device_error),
		T(test_address_outside_guest_memory_is_a_device_error),
		T(test_buffer_crossing_the_end_of_memory_is_a_device_error),
		T(test_address_that_would_wrap_is_a_device_error),
		T(test_buffer_ending_exactly_at_memory_end_is_accepted),
		T(test_head_outside_table_is_a_device_error),
		T(test_next_outside_table_is_a_device_error),
		T(test_chain_longer_than_iov_cap_is_a_device_error),
		T(test_chain_of_max_iov_buffers_is_accepted),
		T(test_zero_length_descriptors_carry_nothing),
		T(test_readable_after_writable_is_a_device_error),
		T(test_write_only_chain_has_nothing_to_read),
		T(test_indirect_descriptor_is_a_device_error),
		T(test_avail_index_past_queue_size_is_a_device_error),
		T(test_indexes_wrap_around_16_bits),
		T(test_unpop_gives_the_chain_back),
		T(test_notify_signals_call_fd_unless_suppressed),
		T(test_attach_refuses_bad_sizes_and_alignment),
		T(test_guest_mem_translates_only_whole_ranges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
