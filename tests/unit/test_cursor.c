#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cursor.h"

static void test_reads_big_endian_integers_in_order(void **state)
{
	(void)state;
	const uint8_t bytes[] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07 };
	struct cursor c;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;

	cursor_init(&c, bytes, sizeof(bytes));
	assert_int_equal(cursor_get_u8(&c, &u8), 0);
	assert_int_equal(u8, 0x01);
	assert_int_equal(cursor_get_u16be(&c, &u16), 0);
	assert_int_equal(u16, 0x0203);
	assert_int_equal(cursor_get_u32be(&c, &u32), 0);
	assert_int_equal(u32, 0x04050607u);
	assert_int_equal(cursor_remaining(&c), 0);
}

static void test_short_read_fails_without_moving_or_writing(void **state)
{
	(void)state;
	const uint8_t bytes[] = { 0xaa, 0xbb, 0xcc };
	struct cursor c;
	uint32_t u32 = 0x12345678;
	const uint8_t *view = NULL;

	cursor_init(&c, bytes, sizeof(bytes));
	assert_int_equal(cursor_get_u32be(&c, &u32), -ENODATA);
	assert_int_equal(u32, 0x12345678);
	assert_int_equal(cursor_remaining(&c), 3);
	assert_int_equal(cursor_get_bytes(&c, 4, &view), -ENODATA);
	assert_null(view);
	assert_int_equal(cursor_get_bytes(&c, SIZE_MAX, &view), -ENODATA);
	assert_int_equal(cursor_skip(&c, 3), 0);
	assert_int_equal(cursor_skip(&c, 1), -ENODATA);
}

static void test_reads_little_endian_of_each_width(void **state)
{
	static const uint8_t bytes[] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0xff };
	struct cursor c;
	uint64_t v = 42;

	(void)state;
	cursor_init(&c, bytes, sizeof(bytes));
	assert_int_equal(cursor_get_le(&c, 8, &v), 0);
	assert_true(v == 0x0807060504030201ull);
	assert_int_equal(cursor_get_le(&c, 1, &v), 0);
	assert_true(v == 0xff);
	cursor_init(&c, bytes, 3);
	assert_int_equal(cursor_get_le(&c, 2, &v), 0);
	assert_true(v == 0x0201);
	v = 42;
	assert_int_equal(cursor_get_le(&c, 2, &v), -ENODATA); /* one byte left */
	assert_true(v == 42);
	assert_int_equal(cursor_remaining(&c), 1);
	assert_int_equal(cursor_get_le(&c, 0, &v), -EINVAL);
	assert_int_equal(cursor_get_le(&c, 9, &v), -EINVAL);
	assert_true(v == 42);
}

static void test_find_is_bounded_by_limit_and_remaining(void **state)
{
	(void)state;
	const uint8_t bytes[] = "abc\r\ndef";
	struct cursor c;
	size_t idx = 99;

	cursor_init(&c, bytes, sizeof(bytes) - 1);
	assert_int_equal(cursor_find(&c, '\n', SIZE_MAX, &idx), 0);
	assert_int_equal(idx, 4);
	assert_int_equal(cursor_find(&c, '\n', 4, &idx), -ENOENT);
	assert_int_equal(cursor_skip(&c, 5), 0);
	assert_int_equal(cursor_find(&c, '\n', SIZE_MAX, &idx), -ENOENT);
	cursor_init(&c, NULL, 10);
	assert_int_equal(cursor_remaining(&c), 0);
	assert_int_equal(cursor_find(&c, 'a', 10, &idx), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reads_big_endian_integers_in_order),
		cmocka_unit_test(test_short_read_fails_without_moving_or_writing),
		cmocka_unit_test(test_reads_little_endian_of_each_width),
		cmocka_unit_test(test_find_is_bounded_by_limit_and_remaining),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
