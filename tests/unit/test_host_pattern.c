#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "host_pattern.h"

struct norm_case {
	const char *in;
	int kind;          /* expected return: kind, or -EINVAL */
	const char *out;   /* expected normalized form when valid */
	const char *why;   /* substring of the error when invalid */
};

static const struct norm_case pattern_cases[] = {
	{ "api.openai.com", HOST_PATTERN_NAME, "api.openai.com", NULL },
	{ "API.OpenAI.Com", HOST_PATTERN_NAME, "api.openai.com", NULL },
	{ "api.openai.com.", HOST_PATTERN_NAME, "api.openai.com", NULL },
	{ "localhost", HOST_PATTERN_NAME, "localhost", NULL },
	{ "xn--bcher-kva.example", HOST_PATTERN_NAME, "xn--bcher-kva.example", NULL },
	{ "_dmarc.example.com", HOST_PATTERN_NAME, "_dmarc.example.com", NULL },
	{ "123.example.com", HOST_PATTERN_NAME, "123.example.com", NULL },
	{ "a-b.c-d.example", HOST_PATTERN_NAME, "a-b.c-d.example", NULL },
	{ "*.openai.com", HOST_PATTERN_WILDCARD, "*.openai.com", NULL },
	{ "*.NPMJS.com.", HOST_PATTERN_WILDCARD, "*.npmjs.com", NULL },
	{ "*.co.uk", HOST_PATTERN_WILDCARD, "*.co.uk", NULL },
	{ "10.0.0.1", HOST_PATTERN_IPV4, "10.0.0.1", NULL },
	{ "192.168.1.1.", HOST_PATTERN_IPV4, "192.168.1.1", NULL },
	{ "::1", HOST_PATTERN_IPV6, "::1", NULL },
	{ "[2001:DB8:0:0:0:0:0:1]", HOST_PATTERN_IPV6, "2001:db8::1", NULL },
	{ "", -EINVAL, NULL, "is empty" },
	{ ".", -EINVAL, NULL, "is empty" },
	{ "*", -EINVAL, NULL, "whole first label" },
	{ "*foo.com", -EINVAL, NULL, "whole first label" },
	{ "a.*.com", -EINVAL, NULL, "whole first label" },
	{ "**.com", -EINVAL, NULL, "whole first label" },
	{ "*.", -EINVAL, NULL, "whole first label" },
	{ "*.com", -EINVAL, NULL, "at least two labels" },
	{ "*.1.2.3.4", -EINVAL, NULL, "only allowed as exact" },
	{ "a..com", -EINVAL, NULL, "empty label" },
	{ ".example.com", -EINVAL, NULL, "empty label" },
	{ "example.com..", -EINVAL, NULL, "empty label" },
	{ "-a.example.com", -EINVAL, NULL, "starts or ends with '-'" },
	{ "a-.example.com", -EINVAL, NULL, "starts or ends with '-'" },
	{ "exa mple.com", -EINVAL, NULL, "contains 0x20" },
	{ "example.com/path", -EINVAL, NULL, "contains 0x2f" },
	{ "user@example.com", -EINVAL, NULL, "contains 0x40" },
	{ "b\xc3\xbc" "cher.example", -EINVAL, NULL, "A-labels" },
	{ "1.2.3", -EINVAL, NULL, "not a dotted-quad" },
	{ "example.123", -EINVAL, NULL, "not a dotted-quad" },
	{ "256.1.1.1", -EINVAL, NULL, "not a dotted-quad" },
	{ "01.2.3.4", -EINVAL, NULL, "not a dotted-quad" },
	{ "fe80::1%eth0", -EINVAL, NULL, "IPv6" },
	{ "[::1", -EINVAL, NULL, "IPv6" },
	{ "example.com:443", -EINVAL, NULL, "without a port" },
	{ "[::1]:443", -EINVAL, NULL, "IPv6" },
};

static void test_pattern_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(pattern_cases) / sizeof(pattern_cases[0]); i++) {
		const struct norm_case *c = &pattern_cases[i];
		char out[HOST_PATTERN_BUF] = "untouched";
		char err[256] = "";
		int r = host_pattern_normalize(c->in, strlen(c->in), out, err, sizeof(err));

		if (r != c->kind)
			fail_msg("case %zu '%s': got %d want %d (%s)", i, c->in, r, c->kind, err);
		if (c->kind > 0) {
			assert_string_equal(out, c->out);
		} else {
			assert_string_equal(out, "untouched"); /* ret_* only on success */
			if (!strstr(err, c->why))
				fail_msg("case %zu '%s': message '%s' lacks '%s'", i, c->in, err, c->why);
			assert_non_null(strstr(err, "host pattern '"));
		}
	}
}

static void test_label_of_64_bytes_is_refused_and_63_accepted(void **state)
{
	char name[80], out[HOST_PATTERN_BUF], err[256];

	(void)state;
	memset(name, 'a', 63);
	strcpy(name + 63, ".com");
	assert_int_equal(host_pattern_normalize(name, strlen(name), out, err, sizeof(err)),
			 HOST_PATTERN_NAME);
	memset(name, 'a', 64);
	strcpy(name + 64, ".com");
	assert_int_equal(host_pattern_normalize(name, strlen(name), out, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "longer than 63"));
}

/* Labels of 49 'a' + '.': four of them plus "example" = 207; grow to the edge. */
static void test_name_of_254_bytes_is_refused_and_253_accepted(void **state)
{
	char name[300], out[HOST_PATTERN_BUF], err[256];
	size_t len = 0;

	(void)state;
	while (len + 50 <= 253) {
		memset(name + len, 'a', 49);
		name[len + 49] = '.';
		len += 50;
	}
	memset(name + len, 'b', 253 - len);
	len = 253;
	name[len] = '\0';
	assert_int_equal(host_pattern_normalize(name, len, out, err, sizeof(err)), HOST_PATTERN_NAME);
	assert_int_equal(strlen(out), 253);
	/* The trailing dot does not count... */
	name[len] = '.';
	assert_int_equal(host_pattern_normalize(name, len + 1, out, err, sizeof(err)),
			 HOST_PATTERN_NAME);
	/* ...but one more name byte does. */
	name[len] = 'b';
	assert_int_equal(host_pattern_normalize(name, len + 1, out, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "longer than 253"));
}

static void test_embedded_nul_is_refused(void **state)
{
	char out[HOST_PATTERN_BUF], err[256];

	(void)state;
	assert_int_equal(host_pattern_normalize("a.com\0.evil", 11, out, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "NUL"));
}

static void test_span_input_is_not_read_past_its_length(void **state)
{
	char out[HOST_PATTERN_BUF];

	(void)state;
	/* "api.openai.com:443" cut before the port, as a Host header span. */
	assert_int_equal(host_pattern_normalize_host("api.openai.com:443", 14, out, NULL, 0),
			 HOST_PATTERN_NAME);
	assert_string_equal(out, "api.openai.com");
}

static void test_host_refuses_wildcards(void **state)
{
	char out[HOST_PATTERN_BUF], err[256];

	(void)state;
	assert_int_equal(host_pattern_normalize_host("*.openai.com", 12, out, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "wildcards are not allowed"));
	assert_non_null(strstr(err, "host '"));
}

static void test_error_message_quotes_input_printably_and_truncated(void **state)
{
	char in[200], out[HOST_PATTERN_BUF], err[512];

	(void)state;
	memset(in, 'a', sizeof(in));
	in[3] = '\n';
	assert_int_equal(host_pattern_normalize(in, sizeof(in), out, err, sizeof(err)), -EINVAL);
	assert_null(strchr(err, '\n'));
	assert_non_null(strstr(err, "aaa?aaa"));
	assert_non_null(strstr(err, "..."));
	/* No error buffer is fine. */
	assert_int_equal(host_pattern_normalize(in, sizeof(in), out, NULL, 0), -EINVAL);
	assert_int_equal(host_pattern_normalize(NULL, 0, out, NULL, 0), -EINVAL);
}

struct match_case {
	const char *pattern;
	const char *host;
	bool match;
};

static const struct match_case match_cases[] = {
	{ "api.openai.com", "api.openai.com", true },
	{ "API.openai.com.", "api.OPENAI.com", true },
	{ "api.openai.com", "openai.com", false },
	{ "api.openai.com", "x.api.openai.com", false },
	{ "*.openai.com", "api.openai.com", true },
	{ "*.openai.com", "a.b.openai.com", true },
	{ "*.openai.com", "openai.com", false },          /* not the apex */
	{ "*.openai.com", "evilopenai.com", false },       /* label boundary */
	{ "*.openai.com", "api.openai.com.evil.com", false },
	{ "*.openai.com", "API.OpenAI.com.", true },
	{ "*.npmjs.com", "registry.npmjs.org", false },
	{ "10.0.0.1", "10.0.0.1", true },
	{ "10.0.0.1", "10.0.0.2", false },
	{ "[::1]", "0:0:0:0:0:0:0:1", true },
	{ "2001:db8::1", "[2001:DB8::1]", true },
};

static void test_match_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
		const struct match_case *c = &match_cases[i];
		char p[HOST_PATTERN_BUF], h[HOST_PATTERN_BUF];

		assert_true(host_pattern_normalize(c->pattern, strlen(c->pattern), p, NULL, 0) > 0);
		assert_true(host_pattern_normalize_host(c->host, strlen(c->host), h, NULL, 0) > 0);
		if (host_pattern_match(p, h) != c->match)
			fail_msg("case %zu: '%s' vs '%s' should %smatch", i, c->pattern, c->host,
				 c->match ? "" : "not ");
	}
}

/* Fixed-seed xorshift: the same "random" inputs on every run. */
static uint32_t rnd_next(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

/*
 * Three inputs in four come from a small alphabet of name characters (often
 * valid); the rest from one full of the grammar's edges and bad bytes.
 */
static size_t random_input(uint32_t *seed, char *buf, size_t cap)
{
	static const char tame[] = "ab0-..*";
	static const char wild[] = "aZ09-_.*:[]%.....:::\x00\xc3\x80 /@";
	bool is_tame = rnd_next(seed) % 4 != 0;
	const char *alphabet = is_tame ? tame : wild;
	size_t n = is_tame ? sizeof(tame) - 1 : sizeof(wild) - 1;
	size_t len = rnd_next(seed) % (is_tame ? 24 : cap);

	for (size_t i = 0; i < len; i++)
		buf[i] = alphabet[rnd_next(seed) % n];
	return len;
}

static void check_normalized_invariants(const char *in, size_t len, int kind, const char *out)
{
	char again[HOST_PATTERN_BUF], host[HOST_PATTERN_BUF], below[HOST_PATTERN_BUF + 1];

	assert_true(strlen(out) <= HOST_PATTERN_MAX);
	/* Idempotent: a normalized pattern normalizes to itself. */
	if (host_pattern_normalize(out, strlen(out), again, NULL, 0) != kind ||
	    strcmp(again, out) != 0)
		fail_msg("'%.*s' -> '%s' is not a fixed point", (int)len, in, out);
	if (kind != HOST_PATTERN_WILDCARD) {
		assert_int_equal(host_pattern_normalize_host(out, strlen(out), host, NULL, 0), kind);
		assert_true(host_pattern_match(out, host));
		return;
	}
	/* A wildcard covers a name one label deeper, never its apex. */
	snprintf(below, sizeof(below), "x%s", out + 1);
	assert_int_equal(host_pattern_normalize_host(below, strlen(below), host, NULL, 0),
			 HOST_PATTERN_NAME);
	assert_true(host_pattern_match(out, host));
	assert_int_equal(host_pattern_normalize_host(out + 2, strlen(out + 2), host, NULL, 0),
			 HOST_PATTERN_NAME);
	assert_false(host_pattern_match(out, host));
}

static void test_random_inputs_keep_the_contract(void **state)
{
	uint32_t seed = 0x9e3779b9u;
	char in[300], out[HOST_PATTERN_BUF], err[256];
	int accepted = 0;

	(void)state;
	for (int i = 0; i < 50000; i++) {
		size_t len = random_input(&seed, in, sizeof(in));
		int r;

		memset(out, 0x7f, sizeof(out));
		r = host_pattern_normalize(in, len, out, err, sizeof(err));
		if (r < 0) {
			assert_int_equal(r, -EINVAL);
			assert_true(strlen(err) < sizeof(err));
			continue;
		}
		accepted++;
		check_normalized_invariants(in, len, r, out);
	}
	assert_true(accepted > 1000); /* the property was exercised, not vacuous */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pattern_table),
		cmocka_unit_test(test_label_of_64_bytes_is_refused_and_63_accepted),
		cmocka_unit_test(test_name_of_254_bytes_is_refused_and_253_accepted),
		cmocka_unit_test(test_embedded_nul_is_refused),
		cmocka_unit_test(test_span_input_is_not_read_past_its_length),
		cmocka_unit_test(test_host_refuses_wildcards),
		cmocka_unit_test(test_error_message_quotes_input_printably_and_truncated),
		cmocka_unit_test(test_match_table),
		cmocka_unit_test(test_random_inputs_keep_the_contract),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
