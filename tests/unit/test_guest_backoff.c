/* Tests for guest/backoff.h: the reconnect schedule of the control stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backoff.h"

/* Attempt n waits within [ceiling/2, ceiling], ceiling = min(cap, base*2^n). */
static void test_delays_double_within_jitter_bounds_up_to_the_cap(void **state)
{
	static const uint32_t ceilings[] = { 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000 };
	struct backoff b;

	(void)state;
	backoff_init(&b, 100, 5000, 12345);
	for (size_t i = 0; i < sizeof(ceilings) / sizeof(ceilings[0]); i++) {
		uint32_t d = backoff_next(&b);
		assert_in_range(d, ceilings[i] - ceilings[i] / 2, ceilings[i]);
	}
}

static void test_reset_starts_again_from_base(void **state)
{
	struct backoff b;

	(void)state;
	backoff_init(&b, 100, 5000, 7);
	for (int i = 0; i < 20; i++)
		(void)backoff_next(&b);
	assert_in_range(backoff_next(&b), 2500, 5000);
	backoff_reset(&b);
	assert_in_range(backoff_next(&b), 50, 100);
	assert_in_range(backoff_next(&b), 100, 200);
}

/* Many guests restarted by one broker restart must not retry in lockstep. */
static void test_jitter_spreads_delays(void **state)
{
	uint32_t min = UINT32_MAX, max = 0;

	(void)state;
	for (uint64_t seed = 1; seed <= 200; seed++) {
		struct backoff b;
		uint32_t d;

		backoff_init(&b, 100, 5000, seed * 0x9e3779b97f4a7c15ull);
		for (int i = 0; i < 6; i++)
			(void)backoff_next(&b);
		d = backoff_next(&b); /* ceiling 5000 */
		min = d < min ? d : min;
		max = d > max ? d : max;
	}
	assert_true(max - min > 1500);
}

static void test_same_seed_same_schedule_and_zero_seed_works(void **state)
{
	struct backoff a, b;

	(void)state;
	backoff_init(&a, 10, 1000, 99);
	backoff_init(&b, 10, 1000, 99);
	for (int i = 0; i < 10; i++)
		assert_int_equal(backoff_next(&a), backoff_next(&b));
	backoff_init(&a, 10, 1000, 0);
	for (int i = 0; i < 10; i++)
		assert_in_range(backoff_next(&a), 5, 1000);
}

/* No overflow however long the broker stays away. */
static void test_many_attempts_stay_at_the_cap(void **state)
{
	struct backoff b;

	(void)state;
	backoff_init(&b, 1, UINT32_MAX, 3);
	for (int i = 0; i < 100; i++)
		(void)backoff_next(&b);
	assert_in_range(backoff_next(&b), UINT32_MAX / 2, UINT32_MAX);
	backoff_init(&b, 7, 7, 3);
	for (int i = 0; i < 100; i++)
		assert_in_range(backoff_next(&b), 4, 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delays_double_within_jitter_bounds_up_to_the_cap),
		cmocka_unit_test(test_reset_starts_again_from_base),
		cmocka_unit_test(test_jitter_spreads_delays),
		cmocka_unit_test(test_same_seed_same_schedule_and_zero_seed_works),
		cmocka_unit_test(test_many_attempts_stay_at_the_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
