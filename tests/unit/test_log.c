/* log: line format, quoting and escaping, truncation, level filter. */
#include <errno.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "log.h"

static int saved_stderr = -1;
static FILE *sink;

/* Send fd 2 to a temporary file for the duration of one test. */
static int redirect(void **state)
{
	(void)state;
	sink = tmpfile();
	assert_non_null(sink);
	saved_stderr = dup(STDERR_FILENO);
	assert_true(saved_stderr >= 0);
	assert_true(dup2(fileno(sink), STDERR_FILENO) >= 0);
	log_set_level(LOG_LEVEL_DEBUG);
	return 0;
}

static int restore(void **state)
{
	(void)state;
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	fclose(sink);
	log_set_level(LOG_LEVEL_INFO);
	return 0;
}

/* Everything logged so far, without the timestamp of the first line; caller frees. */
static char *captured(void)
{
	long n = lseek(fileno(sink), 0, SEEK_END);
	char *text = calloc(1, (size_t)n + 1);

	assert_non_null(text);
	assert_int_equal(pread(fileno(sink), text, (size_t)n, 0), n);
	return text;
}

/* The part after "TIME " of the only line logged. */
static char *one_line(void)
{
	char *text = captured(), *sp = strchr(text, ' '), *rest;

	assert_non_null(sp);
	assert_non_null(strchr(text, '\n'));
	assert_ptr_equal(strchr(text, '\n'), text + strlen(text) - 1);
	rest = strdup(sp + 1);
	free(text);
	return rest;
}

static void test_line_starts_with_rfc3339_utc_time_and_level(void **state)
{
	regex_t re;
	char *text;

	(void)state;
	log_event(LOG_LEVEL_INFO, "broker_ready", "pid", "42");
	text = captured();
	assert_int_equal(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
				      "\\.[0-9]{6}Z info broker_ready pid=42\n$", REG_EXTENDED), 0);
	if (regexec(&re, text, 0, NULL, 0) != 0)
		fail_msg("unexpected line: %s", text);
	regfree(&re);
	free(text);
}

static void test_plain_values_are_bare_others_quoted_and_escaped(void **state)
{
	struct log_line l;
	char *text;

	(void)state;
	assert_true(log_begin(&l, LOG_LEVEL_WARN, "ev"));
	log_str(&l, "a", "/v1/health");
	log_str(&l, "b", "two words");
	log_str(&l, "c", "");
	log_str(&l, "d", NULL);
	log_str(&l, "e", "k=v");
	log_str(&l, "f", "q\"b\\s");
	log_str(&l, "g", "x\ny\rz\tw\033[31m\x7f\xff");
	log_int(&l, "h", -12);
	log_uint(&l, "i", UINT64_MAX);
	log_end(&l);
	text = one_line();
	assert_string_equal(text, "warn ev a=/v1/health b=\"two words\" c=\"\" d=- e=\"k=v\" "
				  "f=\"q\\\"b\\\\s\" g=\"x\\ny\\rz\\tw\\x1b[31m\\x7f\\xff\" h=-12 "
				  "i=18446744073709551615\n");
	free(text);
}

static void test_peer_values_are_truncated(void **state)
{
	char peer[LOG_PEER_MAX + 50], want[LOG_PEER_MAX + 64];
	struct log_line l;
	char *text;

	(void)state;
	memset(peer, 'p', sizeof(peer));
	assert_true(log_begin(&l, LOG_LEVEL_INFO, "ev"));
	log_peer(&l, "path", peer, sizeof(peer));
	log_peer(&l, "nul", "a\0b", 3);
	log_end(&l);
	text = one_line();
	snprintf(want, sizeof(want), "info ev path=\"%.*s...\" nul=\"a\\x00b\"\n", LOG_PEER_MAX, peer);
	assert_string_equal(text, want);
	free(text);
}

static void test_overlong_line_is_cut_and_marked(void **state)
{
	char big[LOG_VALUE_MAX];
	struct log_line l;
	char *text;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_true(log_begin(&l, LOG_LEVEL_INFO, "ev"));
	for (int i = 0; i < 4; i++)
		log_str(&l, "k", big);
	log_end(&l);
	text = captured();
	assert_true(strlen(text) <= LOG_LINE_MAX);
	assert_non_null(strstr(text, " truncated=true\n"));
	free(text);
}

static void test_level_filter_drops_lower_levels(void **state)
{
	struct log_line l;
	char *text;

	(void)state;
	log_set_level(LOG_LEVEL_WARN);
	assert_false(log_enabled(LOG_LEVEL_INFO));
	assert_false(log_begin(&l, LOG_LEVEL_INFO, "dropped"));
	log_str(&l, "k", "v");
	log_end(&l);
	log_event(LOG_LEVEL_DEBUG, "dropped", NULL, NULL);
	log_event(LOG_LEVEL_ERROR, "kept", NULL, NULL);
	text = one_line();
	assert_string_equal(text, "error kept\n");
	free(text);
}

static void test_errno_is_described(void **state)
{
	struct log_line l;
	char *text;

	(void)state;
	assert_true(log_begin(&l, LOG_LEVEL_ERROR, "ev"));
	log_errno(&l, -ENOENT);
	log_end(&l);
	text = one_line();
	assert_string_equal(text, "error ev error=\"No such file or directory\"\n");
	free(text);
}

static void test_level_names_round_trip(void **state)
{
	enum log_level level = LOG_LEVEL_INFO;

	(void)state;
	for (int i = LOG_LEVEL_DEBUG; i <= LOG_LEVEL_ERROR; i++) {
		assert_int_equal(log_level_from_string(log_level_to_string(i), &level), 0);
		assert_int_equal(level, i);
	}
	assert_int_equal(log_level_from_string("Info", &level), -EINVAL);
	assert_int_equal(log_level_from_string("", &level), -EINVAL);
	assert_int_equal(log_level_from_string(NULL, &level), -EINVAL);
	assert_int_equal(level, LOG_LEVEL_ERROR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_line_starts_with_rfc3339_utc_time_and_level,
						redirect, restore),
		cmocka_unit_test_setup_teardown(test_plain_values_are_bare_others_quoted_and_escaped,
						redirect, restore),
		cmocka_unit_test_setup_teardown(test_peer_values_are_truncated, redirect, restore),
		cmocka_unit_test_setup_teardown(test_overlong_line_is_cut_and_marked, redirect, restore),
		cmocka_unit_test_setup_teardown(test_level_filter_drops_lower_levels, redirect, restore),
		cmocka_unit_test_setup_teardown(test_errno_is_described, redirect, restore),
		cmocka_unit_test(test_level_names_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
