/* vsock_wire: the 44-byte virtio-vsock header, little-endian, both ways. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vsock_wire.h"

static const struct vsock_hdr sample = {
	.src_cid = 0x0102030405060708ull,
	.dst_cid = 0x1112131415161718ull,
	.src_port = 0x21222324u,
	.dst_port = 0x31323334u,
	.len = 0x41424344u,
	.type = 0x5152u,
	.op = 0x6162u,
	.flags = 0x71727374u,
	.buf_alloc = 0x81828384u,
	.fwd_cnt = 0x91929394u,
};

/* virtio spec 1.2, 5.10.6: the fields in order, each little-endian, packed. */
static const uint8_t sample_bytes[VSOCK_HDR_SIZE] = {
	0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* src_cid */
	0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, /* dst_cid */
	0x24, 0x23, 0x22, 0x21,                         /* src_port */
	0x34, 0x33, 0x32, 0x31,                         /* dst_port */
	0x44, 0x43, 0x42, 0x41,                         /* len */
	0x52, 0x51,                                     /* type */
	0x62, 0x61,                                     /* op */
	0x74, 0x73, 0x72, 0x71,                         /* flags */
	0x84, 0x83, 0x82, 0x81,                         /* buf_alloc */
	0x94, 0x93, 0x92, 0x91,                         /* fwd_cnt */
};

static void test_encode_is_packed_little_endian(void **state)
{
	uint8_t out[VSOCK_HDR_SIZE + 1];

	(void)state;
	memset(out, 0xee, sizeof(out));
	vsock_hdr_encode(&sample, out);
	assert_memory_equal(out, sample_bytes, VSOCK_HDR_SIZE);
	assert_int_equal(out[VSOCK_HDR_SIZE], 0xee); /* writes exactly 44 bytes */
}

static void test_decode_reads_every_field(void **state)
{
	struct vsock_hdr h;

	(void)state;
	assert_int_equal(vsock_hdr_decode(sample_bytes, sizeof(sample_bytes), &h), 0);
	assert_true(h.src_cid == sample.src_cid);
	assert_true(h.dst_cid == sample.dst_cid);
	assert_int_equal(h.src_port, sample.src_port);
	assert_int_equal(h.dst_port, sample.dst_port);
	assert_int_equal(h.len, sample.len);
	assert_int_equal(h.type, sample.type);
	assert_int_equal(h.op, sample.op);
	assert_int_equal(h.flags, sample.flags);
	assert_int_equal(h.buf_alloc, sample.buf_alloc);
	assert_int_equal(h.fwd_cnt, sample.fwd_cnt);
}

static void test_round_trip(void **state)
{
	const struct vsock_hdr in = {
		.src_cid = 3, .dst_cid = VSOCK_HOST_CID, .src_port = 1025, .dst_port = 1024,
		.len = 65536, .type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RW, .flags = 0,
		.buf_alloc = 262144, .fwd_cnt = 0xffffffffu,
	};
	uint8_t bytes[VSOCK_HDR_SIZE];
	struct vsock_hdr out;

	(void)state;
	vsock_hdr_encode(&in, bytes);
	assert_int_equal(vsock_hdr_decode(bytes, sizeof(bytes), &out), 0);
	/* Field by field: the struct has tail padding. */
	assert_true(out.src_cid == in.src_cid && out.dst_cid == in.dst_cid);
	assert_int_equal(out.src_port, in.src_port);
	assert_int_equal(out.dst_port, in.dst_port);
	assert_int_equal(out.len, in.len);
	assert_int_equal(out.type, in.type);
	assert_int_equal(out.op, in.op);
	assert_int_equal(out.flags, in.flags);
	assert_int_equal(out.buf_alloc, in.buf_alloc);
	assert_int_equal(out.fwd_cnt, in.fwd_cnt);
}

static void test_decode_short_input_leaves_output_alone(void **state)
{
	struct vsock_hdr h;

	(void)state;
	memset(&h, 0x5a, sizeof(h));
	for (size_t len = 0; len < VSOCK_HDR_SIZE; len++)
		assert_int_equal(vsock_hdr_decode(sample_bytes, len, &h), -ENODATA);
	for (size_t i = 0; i < sizeof(h); i++)
		assert_int_equal(((const uint8_t *)&h)[i], 0x5a);
	/* Longer input: only the first 44 bytes are the header. */
	uint8_t longer[VSOCK_HDR_SIZE + 8];
	memcpy(longer, sample_bytes, VSOCK_HDR_SIZE);
	memset(longer + VSOCK_HDR_SIZE, 0xff, 8);
	assert_int_equal(vsock_hdr_decode(longer, sizeof(longer), &h), 0);
	assert_int_equal(h.fwd_cnt, sample.fwd_cnt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_is_packed_little_endian),
		cmocka_unit_test(test_decode_reads_every_field),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_decode_short_input_leaves_output_alone),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
