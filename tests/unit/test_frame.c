/* Tests for proto/frame.h: framing, incremental decoding, fail-closed errors. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "frame.h"
#include "miosa.pb-c.h"

#define RAW_TCP "GET / HTTP/1.1\r\n"

/* Appends one frame with a payload of len bytes (value i & 0xff at i). */
static size_t put_frame(uint8_t *buf, uint32_t len)
{
	buf[0] = (uint8_t)(len >> 24);
	buf[1] = (uint8_t)(len >> 16);
	buf[2] = (uint8_t)(len >> 8);
	buf[3] = (uint8_t)len;
	for (uint32_t i = 0; i < len; i++)
		buf[FRAME_HEADER_SIZE + i] = (uint8_t)i;
	return FRAME_HEADER_SIZE + len;
}

static void assert_payload_pattern(const struct frame *f, size_t len)
{
	assert_int_equal(f->len, len);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(f->payload[i], (uint8_t)i);
}

static struct frame_decoder *new_decoder(void)
{
	struct frame_decoder *d = NULL;

	assert_int_equal(frame_decoder_new(&d), 0);
	assert_non_null(d);
	return d;
}

/* Feeds chunk [data, data+len) in one call; returns the result. */
static int feed(struct frame_decoder *d, const void *data, size_t len, size_t *consumed,
		struct frame *f)
{
	return frame_decoder_feed(d, data, len, consumed, f);
}

static void test_encode_writes_big_endian_length_then_message(void **state)
{
	(void)state;
	Miosa__Ping ping = MIOSA__PING__INIT;
	uint8_t buf[64];
	size_t len = 0;

	ping.nonce = 300; /* field 1 varint: 08 ac 02 */
	assert_int_equal(frame_encode(&ping.base, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 7);
	assert_int_equal(frame_encoded_size(&ping.base), 7);
	const uint8_t expect[] = { 0, 0, 0, 3, 0x08, 0xac, 0x02 };
	assert_memory_equal(buf, expect, sizeof(expect));
}

static void test_encode_of_empty_message_is_a_bare_header(void **state)
{
	(void)state;
	Miosa__Ping ping = MIOSA__PING__INIT;
	uint8_t buf[4];
	size_t len = 0;

	assert_int_equal(frame_encode(&ping.base, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 4);
	assert_int_equal(buf[0] | buf[1] | buf[2] | buf[3], 0);
}

static void test_encode_refuses_message_over_max_payload(void **state)
{
	(void)state;
	Miosa__DnsAnswer a = MIOSA__DNS_ANSWER__INIT;
	uint8_t *buf = calloc(1, 2 * FRAME_MAX_SIZE);
	size_t len = 12345;

	assert_non_null(buf);
	/* 65536 - 4 bytes of data + 1 tag + 3 length bytes == 65536: fits */
	a.packet.len = FRAME_MAX_PAYLOAD - 4;
	a.packet.data = buf + FRAME_MAX_SIZE;
	assert_int_equal(frame_encode(&a.base, buf, FRAME_MAX_SIZE, &len), 0);
	assert_int_equal(len, FRAME_MAX_SIZE);
	/* one more byte does not */
	a.packet.len++;
	len = 12345;
	assert_int_equal(frame_encoded_size(&a.base), FRAME_MAX_SIZE + 1);
	assert_int_equal(frame_encode(&a.base, buf, 2 * FRAME_MAX_SIZE, &len), -EMSGSIZE);
	assert_int_equal(len, 12345);
	free(buf);
}

static void test_encode_refuses_too_small_buffer_without_writing_length(void **state)
{
	(void)state;
	Miosa__Ping ping = MIOSA__PING__INIT;
	uint8_t buf[8];
	size_t len = 99;

	ping.nonce = 300;
	assert_int_equal(frame_encode(&ping.base, buf, 6, &len), -ENOBUFS);
	assert_int_equal(frame_encode(&ping.base, buf, 3, &len), -ENOBUFS);
	assert_int_equal(frame_encode(&ping.base, NULL, 0, &len), -ENOBUFS);
	assert_int_equal(len, 99);
}

static void test_decoder_returns_whole_frame_from_one_chunk(void **state)
{
	(void)state;
	struct frame_decoder *d = new_decoder();
	uint8_t buf[64];
	size_t n = put_frame(buf, 20), consumed = 0;
	struct frame f;

	assert_int_equal(feed(d, buf, n, &consumed, &f), FRAME_READY);
	assert_int_equal(consumed, n);
	assert_payload_pattern(&f, 20);
	assert_int_equal(frame_decoder_finish(d), 0);
	frame_decoder_free(d);
}

static void test_decoder_takes_one_byte_at_a_time(void **state)
{
	(void)state;
	struct frame_decoder *d = new_decoder();
	uint8_t buf[300];
	size_t n = put_frame(buf, 290), consumed;
	struct frame f;

	for (size_t i = 0; i + 1 < n; i++) {
		consumed = 99;
		assert_int_equal(feed(d, buf + i, 1, &consumed, &f), FRAME_NEED_MORE);
		assert_int_equal(consumed, 1);
	}
	assert_int_equal(feed(d, buf + n - 1, 1, &consumed, &f), FRAME_READY);
	assert_int_equal(consumed, 1);
	assert_payload_pattern(&f, 290);
	frame_decoder_free(d);
}

static void test_decoder_leaves_raw_bytes_after_frame_unconsumed(void **state)
{
	(void)state;
	struct frame_decoder *d = new_decoder();
	uint8_t buf[64];
	size_t n = put_frame(buf, 9), consumed = 0;
	struct frame f;

	memcpy(buf + n, RAW_TCP, strlen(RAW_TCP));
	assert_int_equal(feed(d, buf, n + strlen(RAW_TCP), &consumed, &f), FRAME_READY);
	assert_int_equal(consumed, n);
	assert_payload_pattern(&f, 9);
	/* the caller's bytes were not touched either */
	assert_memory_equal(buf + n, RAW_TCP, strlen(RAW_TCP));
	frame_decoder_free(d);
}

/*
 * Two frames and raw bytes, split into two chunks at every offset: the two
 * frames always come out whole, and exactly the raw bytes are left.
 */
static void test_decoder_handles_a_split_at_every_offset(void **state)
{
	(void)state;
	uint8_t buf[128];
	size_t a = put_frame(buf, 13);
	size_t b = put_frame(buf + a, 0);
	size_t total;

	memcpy(buf + a + b, RAW_TCP, strlen(RAW_TCP));
	total = a + b + strlen(RAW_TCP);
	for (size_t split = 0; split <= total; split++) {
		struct frame_decoder *d = new_decoder();
		const uint8_t *p = buf;
		size_t chunk_end = split, frames = 0, consumed;
		struct frame f;

		while (frames < 2) {
			size_t avail = (size_t)(buf + chunk_end - p);
			int r = feed(d, p, avail, &consumed, &f);

			assert_true(r >= 0);
			assert_true(consumed <= avail);
			p += consumed;
			if (r == FRAME_READY) {
				assert_payload_pattern(&f, frames == 0 ? 13 : 0);
				frames++;
			} else {
				assert_int_equal(consumed, avail);
				assert_int_not_equal(chunk_end, total);
				chunk_end = total;
			}
		}
		assert_ptr_equal(p, buf + a + b);
		assert_int_equal(frame_decoder_finish(d), 0);
		frame_decoder_free(d);
	}
}

static void test_decoder_returns_back_to_back_frames_one_per_call(void **state)
{
	(void)state;
	struct frame_decoder *d = new_decoder();
	uint8_t buf[128];
	size_t n = 0, off = 0, consumed;
	struct frame f;

	for (uint32_t len = 1; len <= 5; len++)
		n += put_frame(buf + n, len);
	for (uint32_t len = 1; len <= 5; len++) {
		assert_int_equal(feed(d, buf + off, n - off, &consumed, &f), FRAME_READY);
		assert_int_equal(consumed, FRAME_HEADER_SIZE + len);
		assert_payload_pattern(&f, len);
		off += consumed;
	}
	assert_int_equal(off, n);
	frame_decoder_free(d);
}

static void test_zero_length_frame_is_ready_with_empty_payload(void **state)
{
	(void)state;
	struct frame_decoder *d = new_decoder();
	const uint8_t buf[] = { 0, 0, 0, 0, 0xee };
	size_t consumed;
	struct frame f;

	assert_int_equal(feed(d, buf, sizeof(buf), &consumed, &f), FRAME_READY);
	assert_int_equal(consumed, 4);
	assert_int_equal(f.len, 0);
	frame_decoder_free(d);
}

static void test_max_size_frame_is_accepted(void **state)
{
	(void)state;
	struct frame_decoder *d = new_decoder();
	uint8_t *buf = malloc(FRAME_MAX_SIZE);
	size_t n, consumed;
	struct frame f;

	assert_non_null(buf);
	n = put_frame(buf, FRAME_MAX_PAYLOAD);
	assert_int_equal(feed(d, buf, n / 2, &consumed, &f), FRAME_NEED_MORE);
	assert_int_equal(feed(d, buf + n / 2, n - n / 2, &consumed, &f), FRAME_READY);
	assert_payload_pattern(&f, FRAME_MAX_PAYLOAD);
	frame_decoder_free(d);
	free(buf);
}

static void test_oversize_length_fails_before_buffering(void **state)
{
	(void)state;
	struct frame_decoder *d = new_decoder();
	const uint8_t hdr[] = { 0x00, 0x01, 0x00, 0x01 }; /* 65537 */
	size_t consumed = 77;
	struct frame f = { 0 };

	/* the fourth length byte is enough: no payload byte was needed */
	assert_int_equal(feed(d, hdr, 3, &consumed, &f), FRAME_NEED_MORE);
	consumed = 77;
	assert_int_equal(feed(d, hdr + 3, 1, &consumed, &f), -EMSGSIZE);
	assert_int_equal(consumed, 77);
	assert_null(f.payload);
	frame_decoder_free(d);

	d = new_decoder();
	const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 1, 2, 3 };
	assert_int_equal(feed(d, huge, sizeof(huge), &consumed, &f), -EMSGSIZE);
	frame_decoder_free(d);
}

static void test_decoder_stays_failed_after_an_error(void **state)
{
	(void)state;
	struct frame_decoder *d = new_decoder();
	const uint8_t bad[] = { 0x7f, 0, 0, 0 };
	uint8_t good[16];
	size_t n = put_frame(good, 3), consumed = 5;
	struct frame f;

	assert_int_equal(feed(d, bad, sizeof(bad), &consumed, &f), -EMSGSIZE);
	assert_int_equal(feed(d, good, n, &consumed, &f), -EMSGSIZE);
	assert_int_equal(feed(d, NULL, 0, &consumed, &f), -EMSGSIZE);
	assert_int_equal(frame_decoder_finish(d), -EMSGSIZE);
	assert_int_equal(consumed, 5);
	frame_decoder_free(d);
}

static void test_truncated_frame_at_eof_is_an_error(void **state)
{
	(void)state;
	uint8_t buf[32];
	size_t n = put_frame(buf, 10), consumed;
	struct frame f;

	/* every proper prefix, from one length byte to all but the last byte */
	for (size_t cut = 1; cut < n; cut++) {
		struct frame_decoder *d = new_decoder();

		assert_int_equal(feed(d, buf, cut, &consumed, &f), FRAME_NEED_MORE);
		assert_int_equal(frame_decoder_finish(d), -EPIPE);
		/* and the decoder is failed from then on */
		assert_int_equal(feed(d, buf + cut, n - cut, &consumed, &f), -EPIPE);
		assert_int_equal(frame_decoder_finish(d), -EPIPE);
		frame_decoder_free(d);
	}
}

static void test_eof_on_a_frame_boundary_is_clean(void **state)
{
	(void)state;
	struct frame_decoder *d = new_decoder();
	uint8_t buf[16];
	size_t n = put_frame(buf, 2), consumed;
	struct frame f;

	assert_int_equal(frame_decoder_finish(d), 0); /* nothing ever sent */
	assert_int_equal(feed(d, buf, n, &consumed, &f), FRAME_READY);
	assert_int_equal(frame_decoder_finish(d), 0);
	/* an empty read after a frame does not start a partial one */
	assert_int_equal(feed(d, buf, 0, &consumed, &f), FRAME_NEED_MORE);
	assert_int_equal(consumed, 0);
	assert_int_equal(frame_decoder_finish(d), 0);
	frame_decoder_free(d);
}

static void test_empty_input_needs_more_and_writes_no_frame(void **state)
{
	(void)state;
	struct frame_decoder *d = new_decoder();
	size_t consumed = 3;
	struct frame f = { .payload = (const uint8_t *)"x", .len = 42 };

	assert_int_equal(feed(d, NULL, 0, &consumed, &f), FRAME_NEED_MORE);
	assert_int_equal(consumed, 0);
	assert_int_equal(f.len, 42);
	frame_decoder_free(d);
}

/* Random streams in random chunks: never consumes more than given, never
 * returns more than the maximum, and either frames or fails closed. */
static void test_decoder_survives_garbage_in_random_chunks(void **state)
{
	(void)state;
	uint8_t buf[4096];
	uint32_t seed = 12345;

	for (int round = 0; round < 200; round++) {
		struct frame_decoder *d = new_decoder();
		size_t off = 0, consumed;
		struct frame f;
		int r = 0;

		for (size_t i = 0; i < sizeof(buf); i++) {
			seed = seed * 1103515245u + 12345u;
			buf[i] = (uint8_t)(seed >> 16);
		}
		/* small lengths now and then, so some frames complete */
		if (round % 2)
			buf[0] = buf[1] = buf[2] = 0;
		while (off < sizeof(buf) && r >= 0) {
			size_t chunk = 1 + (buf[off] % 64);

			if (chunk > sizeof(buf) - off)
				chunk = sizeof(buf) - off;
			r = feed(d, buf + off, chunk, &consumed, &f);
			if (r < 0)
				break;
			assert_true(consumed <= chunk);
			if (r == FRAME_READY)
				assert_true(f.len <= FRAME_MAX_PAYLOAD);
			off += consumed;
		}
		assert_true(r == -EMSGSIZE || r >= 0);
		frame_decoder_free(d);
	}
}

static void test_strerror_names_each_error(void **state)
{
	(void)state;
	assert_string_equal(frame_strerror(-EMSGSIZE), "frame length exceeds the 65536-byte maximum");
	assert_string_equal(frame_strerror(-EPIPE), "stream ended inside a frame");
	assert_string_equal(frame_strerror(-ENOBUFS), "buffer too small for the frame");
	assert_string_equal(frame_strerror(-ENOMEM), "out of memory");
	assert_string_equal(frame_strerror(0), "success");
	assert_string_equal(frame_strerror(-EIO), "unknown frame error");
}

static void test_free_accepts_null(void **state)
{
	(void)state;
	frame_decoder_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_writes_big_endian_length_then_message),
		cmocka_unit_test(test_encode_of_empty_message_is_a_bare_header),
		cmocka_unit_test(test_encode_refuses_message_over_max_payload),
		cmocka_unit_test(test_encode_refuses_too_small_buffer_without_writing_length),
		cmocka_unit_test(test_decoder_returns_whole_frame_from_one_chunk),
		cmocka_unit_test(test_decoder_takes_one_byte_at_a_time),
		cmocka_unit_test(test_decoder_leaves_raw_bytes_after_frame_unconsumed),
		cmocka_unit_test(test_decoder_handles_a_split_at_every_offset),
		cmocka_unit_test(test_decoder_returns_back_to_back_frames_one_per_call),
		cmocka_unit_test(test_zero_length_frame_is_ready_with_empty_payload),
		cmocka_unit_test(test_max_size_frame_is_accepted),
		cmocka_unit_test(test_oversize_length_fails_before_buffering),
		cmocka_unit_test(test_decoder_stays_failed_after_an_error),
		cmocka_unit_test(test_truncated_frame_at_eof_is_an_error),
		cmocka_unit_test(test_eof_on_a_frame_boundary_is_clean),
		cmocka_unit_test(test_empty_input_needs_more_and_writes_no_frame),
		cmocka_unit_test(test_decoder_survives_garbage_in_random_chunks),
		cmocka_unit_test(test_strerror_names_each_error),
		cmocka_unit_test(test_free_accepts_null),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
