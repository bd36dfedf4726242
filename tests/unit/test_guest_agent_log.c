/* Tests for guest/agent_log.h: levels and the quoting of peer strings. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent_log.h"

static void test_levels_parse_and_unknown_is_refused(void **state)
{
	enum agent_log_level l = AGENT_LOG_ERROR;

	(void)state;
	assert_int_equal(agent_log_level_parse("debug", &l), 0);
	assert_int_equal(l, AGENT_LOG_DEBUG);
	assert_int_equal(agent_log_level_parse("warn", &l), 0);
	assert_int_equal(l, AGENT_LOG_WARN);
	assert_int_equal(agent_log_level_parse("DEBUG", &l), -EINVAL);
	assert_int_equal(agent_log_level_parse("", &l), -EINVAL);
	assert_int_equal(l, AGENT_LOG_WARN);
	agent_log_set_level(AGENT_LOG_WARN);
	assert_true(agent_log_enabled(AGENT_LOG_ERROR));
	assert_false(agent_log_enabled(AGENT_LOG_INFO));
}

/* A peer string can neither start a new log line nor overrun the buffer. */
static void test_quote_keeps_one_line_and_truncates(void **state)
{
	char buf[8];

	(void)state;
	assert_string_equal(agent_log_quote("ok\nFAKE: x", buf, sizeof(buf)), "ok?FAKE");
	assert_string_equal(agent_log_quote("\x1b[31m\xc3\xa9", buf, sizeof(buf)), "?[31m??");
	assert_string_equal(agent_log_quote(NULL, buf, sizeof(buf)), "");
	assert_string_equal(agent_log_quote("abc", buf, 1), "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_levels_parse_and_unknown_is_refused),
		cmocka_unit_test(test_quote_keeps_one_line_and_truncates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
