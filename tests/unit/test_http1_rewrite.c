/*
 * http1_rewrite: placeholder swaps in header values and the query, bytes
 * outside the edits copied verbatim, and every way an edit could change
 * the message structure refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http1.h"
#include "http1_rewrite.h"

#define TOK "miosa-tok-0123456789abcdef0123456789abcdef"
#define U8(s) ((const uint8_t *)(s))

struct fixture {
	const char *in;
	size_t len;
	struct http1_parser p;
};

static void parse_request(struct fixture *f, const char *in)
{
	size_t head_len;

	f->in = in;
	f->len = strlen(in);
	assert_int_equal(http1_parser_init_request(&f->p, NULL), 0);
	assert_int_equal(http1_parse(&f->p, U8(in), f->len, &head_len), HTTP1_DONE);
}

/* Index of the first occurrence of needle in the fixture's head. */
static size_t find(const struct fixture *f, const char *needle)
{
	const char *hit = memmem(f->in, f->len, needle, strlen(needle));

	assert_non_null(hit);
	return (size_t)(hit - f->in);
}

static struct http1_edit edit_at(size_t off, size_t len, const char *bytes)
{
	return (struct http1_edit){ .off = off, .len = len, .bytes = U8(bytes),
				    .n_bytes = strlen(bytes) };
}

/* Rewrite, check the size function agrees, compare with want, re-parse. */
static void assert_rewrites_to(const struct fixture *f, const struct http1_edit *edits,
			       size_t n, const char *want)
{
	const struct http1_head *h = &f->p.head;
	size_t size = 0, written = 0, head_len;
	struct http1_parser again;
	uint8_t *out;

	assert_int_equal(http1_rewrite_size(h, U8(f->in), f->len, edits, n, &size), 0);
	assert_int_equal(size, strlen(want));
	out = malloc(size);
	assert_non_null(out);
	assert_int_equal(http1_rewrite(h, U8(f->in), f->len, edits, n, out, size, &written), 0);
	assert_int_equal(written, size);
	assert_memory_equal(out, want, size);
	/* the output is still a valid head with the same field lines */
	assert_int_equal(http1_parser_init_request(&again, NULL), 0);
	assert_int_equal(http1_parse(&again, out, size, &head_len), HTTP1_DONE);
	assert_int_equal(head_len, size);
	assert_int_equal(again.head.n_headers, h->n_headers);
	free(out);
}

static int rewrite_error(const struct fixture *f, const struct http1_edit *edits, size_t n)
{
	uint8_t out[1024];
	size_t size = 0, written = 0;
	int r1, r2;

	r1 = http1_rewrite_size(&f->p.head, U8(f->in), f->len, edits, n, &size);
	r2 = http1_rewrite(&f->p.head, U8(f->in), f->len, edits, n, out, sizeof(out), &written);
	assert_int_equal(size, 0);      /* ret_* untouched on failure */
	assert_int_equal(written, 0);
	return r1 != 0 ? r1 : r2;
}

static void test_header_value_token_replaced_by_longer_secret(void **state)
{
	(void)state;
	struct fixture f;
	struct http1_edit e;

	parse_request(&f, "GET /v1 HTTP/1.1\r\nHost: api.example\r\n"
			  "Authorization: Bearer " TOK "\r\nAccept: */*\r\n\r\n");
	e = edit_at(find(&f, TOK), strlen(TOK), "sk-live-THIS-IS-A-MUCH-LONGER-REAL-SECRET-VALUE-1234567890");
	assert_rewrites_to(&f, &e, 1, "GET /v1 HTTP/1.1\r\nHost: api.example\r\n"
			   "Authorization: Bearer sk-live-THIS-IS-A-MUCH-LONGER-REAL-SECRET-VALUE-1234567890"
			   "\r\nAccept: */*\r\n\r\n");
}

static void test_whole_header_value_replaced_by_shorter_value(void **state)
{
	(void)state;
	struct fixture f;
	struct http1_edit e;

	parse_request(&f, "GET / HTTP/1.1\r\nHost: h\r\nX-Api-Key: " TOK "\r\n\r\n");
	assert_int_equal(http1_edit_header_value(&f.p.head, 1, U8("k"), 1, &e), 0);
	assert_rewrites_to(&f, &e, 1, "GET / HTTP/1.1\r\nHost: h\r\nX-Api-Key: k\r\n\r\n");
}

static void test_header_value_can_become_empty(void **state)
{
	(void)state;
	struct fixture f;
	struct http1_edit e;

	parse_request(&f, "GET / HTTP/1.1\r\nHost: h\r\nX-A: secret\r\n\r\n");
	assert_int_equal(http1_edit_header_value(&f.p.head, 1, NULL, 0, &e), 0);
	assert_rewrites_to(&f, &e, 1, "GET / HTTP/1.1\r\nHost: h\r\nX-A: \r\n\r\n");
}

static void test_query_parameter_value_replaced(void **state)
{
	(void)state;
	struct http1_span name, value;
	struct fixture f;
	struct http1_edit e;
	uint32_t iter = 0;
	bool found = false;

	parse_request(&f, "GET /search?q=cats&key=" TOK "&n=1 HTTP/1.1\r\nHost: h\r\n\r\n");
	while (http1_query_next(&f.p.head, U8(f.in), &iter, &name, &value) == 1) {
		if (name.len != 3 || memcmp(f.in + name.off, "key", 3) != 0)
			continue;
		assert_int_equal(http1_edit_span(value, U8("REAL%2Fsecret"), 13, &e), 0);
		found = true;
	}
	assert_true(found);
	assert_rewrites_to(&f, &e, 1,
			   "GET /search?q=cats&key=REAL%2Fsecret&n=1 HTTP/1.1\r\nHost: h\r\n\r\n");
}

static void test_untouched_bytes_are_copied_verbatim(void **state)
{
	(void)state;
	struct fixture f;
	struct http1_edit e;

	parse_request(&f, "PoSt /a?b HTTP/1.1\r\nhOsT:h\r\nx-WEIRD-case:\t  v1 \t\r\n"
			  "X-Tok:   " TOK "   \r\nContent-Length: 0\r\n\r\n");
	e = edit_at(find(&f, TOK), strlen(TOK), "S");
	assert_rewrites_to(&f, &e, 1, "PoSt /a?b HTTP/1.1\r\nhOsT:h\r\nx-WEIRD-case:\t  v1 \t\r\n"
			   "X-Tok:   S   \r\nContent-Length: 0\r\n\r\n");
}

static void test_several_edits_in_any_order(void **state)
{
	(void)state;
	struct fixture f;
	struct http1_edit e[3];

	parse_request(&f, "GET /p?t=" TOK " HTTP/1.1\r\nHost: h\r\nA: " TOK "\r\nB: x" TOK "y\r\n\r\n");
	size_t q = find(&f, TOK);
	size_t a = find(&f, "A: ") + 3;
	size_t b = find(&f, "B: x") + 4;
	e[0] = edit_at(b, strlen(TOK), "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
	e[1] = edit_at(q, strlen(TOK), "Q");
	e[2] = edit_at(a, strlen(TOK), "aa");
	assert_rewrites_to(&f, e, 3, "GET /p?t=Q HTTP/1.1\r\nHost: h\r\nA: aa\r\nB: x"
			   "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbby\r\n\r\n");
}

static void test_adjacent_edits_and_insertions_are_allowed(void **state)
{
	(void)state;
	struct fixture f;
	struct http1_edit e[3];

	parse_request(&f, "GET / HTTP/1.1\r\nHost: h\r\nX: abcd\r\n\r\n");
	size_t v = find(&f, "abcd");
	e[0] = edit_at(v, 2, "AB");
	e[1] = edit_at(v + 2, 2, "CD");
	e[2] = edit_at(v + 4, 0, "!");
	assert_rewrites_to(&f, e, 3, "GET / HTTP/1.1\r\nHost: h\r\nX: ABCD!\r\n\r\n");
}

static void test_request_target_replaced_whole(void **state)
{
	(void)state;
	struct fixture f;
	struct http1_edit e;

	parse_request(&f, "GET http://h/x?y HTTP/1.1\r\nHost: h\r\n\r\n");
	assert_int_equal(http1_edit_span(f.p.head.target, U8("/x?y"), 4, &e), 0);
	assert_rewrites_to(&f, &e, 1, "GET /x?y HTTP/1.1\r\nHost: h\r\n\r\n");
}

static void test_body_bytes_after_head_are_not_copied(void **state)
{
	(void)state;
	struct fixture f;
	struct http1_edit e;

	parse_request(&f, "POST / HTTP/1.1\r\nHost: h\r\nX: t\r\nContent-Length: 4\r\n\r\nbody");
	e = edit_at(find(&f, "X: t") + 3, 1, "T");
	assert_rewrites_to(&f, &e, 1, "POST / HTTP/1.1\r\nHost: h\r\nX: T\r\nContent-Length: 4\r\n\r\n");
}

static void test_crlf_injection_in_header_value_is_refused(void **state)
{
	(void)state;
	static const char *const evil[] = {
		"x\r\nTransfer-Encoding: chunked", "x\ny", "x\ry", "a\x01", "a\x7f",
	};
	struct fixture f;
	struct http1_edit e;

	parse_request(&f, "GET / HTTP/1.1\r\nHost: h\r\nX: " TOK "\r\n\r\n");
	for (size_t i = 0; i < sizeof(evil) / sizeof(evil[0]); i++) {
		e = edit_at(find(&f, TOK), strlen(TOK), evil[i]);
		assert_int_equal(rewrite_error(&f, &e, 1), -HTTP1_E_EDIT_INJECTION);
	}
	e = (struct http1_edit){ .off = find(&f, TOK), .len = 1, .bytes = U8("a\0b"), .n_bytes = 3 };
	assert_int_equal(rewrite_error(&f, &e, 1), -HTTP1_E_EDIT_INJECTION);
}

static void test_request_line_injection_in_target_is_refused(void **state)
{
	(void)state;
	static const char *const evil[] = { "a b", "a\tb", "x#frag", "x\r\n", "caf\xc3\xa9" };
	struct fixture f;
	struct http1_edit e;

	parse_request(&f, "GET /?k=" TOK " HTTP/1.1\r\nHost: h\r\n\r\n");
	for (size_t i = 0; i < sizeof(evil) / sizeof(evil[0]); i++) {
		e = edit_at(find(&f, TOK), strlen(TOK), evil[i]);
		assert_int_equal(rewrite_error(&f, &e, 1), -HTTP1_E_EDIT_INJECTION);
	}
}

static void test_broken_percent_escape_in_target_is_refused_and_output_zeroed(void **state)
{
	(void)state;
	struct fixture f;
	struct http1_edit e;
	uint8_t out[128];
	size_t size = 0, written = 0;

	parse_request(&f, "GET /a%41b HTTP/1.1\r\nHost: h\r\n\r\n");
	e = edit_at(find(&f, "41"), 2, "zz");
	assert_int_equal(http1_rewrite_size(&f.p.head, U8(f.in), f.len, &e, 1, &size), 0);
	memset(out, 0xaa, sizeof(out));
	assert_int_equal(http1_rewrite(&f.p.head, U8(f.in), f.len, &e, 1, out, sizeof(out), &written),
			 -HTTP1_E_EDIT_INJECTION);
	assert_int_equal(written, 0);
	for (size_t i = 0; i < sizeof(out); i++)
		assert_int_equal(out[i], 0);
}

static void test_edits_outside_editable_spans_are_refused(void **state)
{
	(void)state;
	struct fixture f;
	struct http1_edit e;

	parse_request(&f, "POST /p HTTP/1.1\r\nHost: h\r\nX-Name: v\r\nContent-Length: 0\r\n\r\n");
	e = edit_at(find(&f, "X-Name"), 6, "Host");              /* a field name */
	assert_int_equal(rewrite_error(&f, &e, 1), -HTTP1_E_EDIT_RANGE);
	e = edit_at(find(&f, ": 0") + 2, 1, "5");                /* framing value */
	assert_int_equal(rewrite_error(&f, &e, 1), -HTTP1_E_EDIT_RANGE);
	e = edit_at(0, 4, "GET");                                /* the method */
	assert_int_equal(rewrite_error(&f, &e, 1), -HTTP1_E_EDIT_RANGE);
	e = edit_at(find(&f, " HTTP/1.1"), 9, "x");              /* the version */
	assert_int_equal(rewrite_error(&f, &e, 1), -HTTP1_E_EDIT_RANGE);
	e = edit_at(find(&f, "v\r\n"), 3, "w");                  /* across a line end */
	assert_int_equal(rewrite_error(&f, &e, 1), -HTTP1_E_EDIT_RANGE);
	e = edit_at(f.p.head.head_len - 2, 0, "x");              /* into the final CRLF */
	assert_int_equal(rewrite_error(&f, &e, 1), -HTTP1_E_EDIT_RANGE);
	e = edit_at(f.p.head.head_len + 10, 0, "x");             /* past the head */
	assert_int_equal(rewrite_error(&f, &e, 1), -HTTP1_E_EDIT_RANGE);
	e = (struct http1_edit){ .off = find(&f, "v\r\n"), .len = SIZE_MAX, .bytes = U8("x"),
				 .n_bytes = 1 };                 /* length overflow */
	assert_int_equal(rewrite_error(&f, &e, 1), -HTTP1_E_EDIT_RANGE);
	assert_int_equal(http1_edit_header_value(&f.p.head, 9, U8("x"), 1, &e), -HTTP1_E_EDIT_RANGE);
}

static void test_framing_and_routing_values_are_not_editable(void **state)
{
	(void)state;
	struct fixture f;
	struct http1_edit e;

	parse_request(&f, "POST /p HTTP/1.1\r\nHost: " TOK "\r\nTransfer-Encoding: chunked\r\n\r\n");
	assert_int_equal(http1_edit_header_value(&f.p.head, 1, U8("identity"), 8, &e), 0);
	assert_int_equal(rewrite_error(&f, &e, 1), -HTTP1_E_EDIT_RANGE);
	assert_int_equal(http1_edit_header_value(&f.p.head, 0, U8("evil.example"), 12, &e), 0);
	assert_int_equal(rewrite_error(&f, &e, 1), -HTTP1_E_EDIT_RANGE);
}

static void test_overlapping_edits_are_refused(void **state)
{
	(void)state;
	struct fixture f;
	struct http1_edit e[2];

	parse_request(&f, "GET / HTTP/1.1\r\nHost: h\r\nX: abcdef\r\n\r\n");
	size_t v = find(&f, "abcdef");
	e[0] = edit_at(v, 4, "1");
	e[1] = edit_at(v + 3, 2, "2");
	assert_int_equal(rewrite_error(&f, e, 2), -HTTP1_E_EDIT_OVERLAP);
	e[1] = edit_at(v + 2, 0, "2");              /* insertion inside a replaced span */
	assert_int_equal(rewrite_error(&f, e, 2), -HTTP1_E_EDIT_OVERLAP);
	e[0] = edit_at(v + 1, 0, "1");              /* two insertions at one offset */
	e[1] = edit_at(v + 1, 0, "2");
	assert_int_equal(rewrite_error(&f, e, 2), -HTTP1_E_EDIT_OVERLAP);
	e[0] = edit_at(v, 2, "1");                  /* same span twice */
	e[1] = edit_at(v, 2, "1");
	assert_int_equal(rewrite_error(&f, e, 2), -HTTP1_E_EDIT_OVERLAP);
}

static void test_too_many_edits_are_refused(void **state)
{
	(void)state;
	struct http1_edit *e = calloc(HTTP1_REWRITE_MAX_EDITS + 1, sizeof(*e));
	struct fixture f;

	assert_non_null(e);
	parse_request(&f, "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\r\n");
	assert_int_equal(rewrite_error(&f, e, HTTP1_REWRITE_MAX_EDITS + 1), -HTTP1_E_EDIT_COUNT);
	free(e);
}

static void test_small_output_buffer_is_refused_before_writing(void **state)
{
	(void)state;
	struct fixture f;
	struct http1_edit e;
	uint8_t out[64];
	size_t size, written = 0;

	parse_request(&f, "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\r\n");
	e = edit_at(find(&f, "X: a") + 3, 1, "bbbb");
	assert_int_equal(http1_rewrite_size(&f.p.head, U8(f.in), f.len, &e, 1, &size), 0);
	memset(out, 0x55, sizeof(out));
	assert_int_equal(http1_rewrite(&f.p.head, U8(f.in), f.len, &e, 1, out, size - 1, &written),
			 -HTTP1_E_NOSPACE);
	assert_int_equal(written, 0);
	assert_int_equal(out[0], 0x55);
}

static void test_response_header_value_is_editable_but_not_target(void **state)
{
	(void)state;
	static const char in[] = "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nContent-Length: 0\r\n\r\n";
	struct http1_parser p;
	struct http1_edit e;
	uint8_t out[128];
	size_t head_len, size, written;

	assert_int_equal(http1_parser_init_response(&p, NULL, HTTP1_METHOD_GET, false), 0);
	assert_int_equal(http1_parse(&p, U8(in), sizeof(in) - 1, &head_len), HTTP1_DONE);
	assert_int_equal(http1_edit_header_value(&p.head, 0, U8("a=2"), 3, &e), 0);
	assert_int_equal(http1_rewrite_size(&p.head, U8(in), sizeof(in) - 1, &e, 1, &size), 0);
	assert_int_equal(http1_rewrite(&p.head, U8(in), sizeof(in) - 1, &e, 1, out, size, &written), 0);
	assert_memory_equal(out, "HTTP/1.1 200 OK\r\nSet-Cookie: a=2\r\nContent-Length: 0\r\n\r\n",
			    written);
	e = edit_at(9, 3, "500");                   /* the status code */
	assert_int_equal(http1_rewrite_size(&p.head, U8(in), sizeof(in) - 1, &e, 1, &size),
			 -HTTP1_E_EDIT_RANGE);
}

static void test_no_edits_reproduces_the_head(void **state)
{
	(void)state;
	struct fixture f;

	parse_request(&f, "GET /x HTTP/1.1\r\nHost: h\r\n\r\ntrailing body");
	assert_rewrites_to(&f, NULL, 0, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_value_token_replaced_by_longer_secret),
		cmocka_unit_test(test_whole_header_value_replaced_by_shorter_value),
		cmocka_unit_test(test_header_value_can_become_empty),
		cmocka_unit_test(test_query_parameter_value_replaced),
		cmocka_unit_test(test_untouched_bytes_are_copied_verbatim),
		cmocka_unit_test(test_several_edits_in_any_order),
		cmocka_unit_test(test_adjacent_edits_and_insertions_are_allowed),
		cmocka_unit_test(test_request_target_replaced_whole),
		cmocka_unit_test(test_body_bytes_after_head_are_not_copied),
		cmocka_unit_test(test_crlf_injection_in_header_value_is_refused),
		cmocka_unit_test(test_request_line_injection_in_target_is_refused),
		cmocka_unit_test(test_broken_percent_escape_in_target_is_refused_and_output_zeroed),
		cmocka_unit_test(test_edits_outside_editable_spans_are_refused),
		cmocka_unit_test(test_framing_and_routing_values_are_not_editable),
		cmocka_unit_test(test_overlapping_edits_are_refused),
		cmocka_unit_test(test_too_many_edits_are_refused),
		cmocka_unit_test(test_small_output_buffer_is_refused_before_writing),
		cmocka_unit_test(test_response_header_value_is_editable_but_not_target),
		cmocka_unit_test(test_no_edits_reproduces_the_head),
	};

	return cmocka_run_group_tests_name("http1_rewrite", tests, NULL, NULL);
}
