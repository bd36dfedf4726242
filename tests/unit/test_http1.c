/*
 * http1 parser and body decoder: a table of request/response cases, each
 * registered as its own cmocka test and each run three ways with the same
 * expected outcome:
 *   - the whole input at once;
 *   - split in two at every byte boundary;
 *   - one byte at a time, each call with a freshly allocated buffer of
 *     exactly the bytes so far (so a read past len is an ASan error and the
 *     buffer moves between calls, as the contract allows).
 * When the head parses, the body decoder runs the same three ways and must
 * produce the same content, result and unconsumed remainder.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http1.h"

#define S(lit) .in = (lit), .in_len = sizeof(lit) - 1
#define E(code) (-HTTP1_E_##code)

enum { KA = HTTP1_F_KEEP_ALIVE, HH = HTTP1_F_HAS_HOST, Q = HTTP1_F_HAS_QUERY,
       EC = HTTP1_F_EXPECT_CONTINUE, EO = HTTP1_F_EXPECT_OTHER, UP = HTTP1_F_UPGRADE,
       IM = HTTP1_F_INTERIM };

struct tcase {
	const char *name;
	const char *in;
	size_t in_len;
	bool response;
	enum http1_method req_method;      /* responses: request method (default GET) */
	bool req_upgrade;
	const struct http1_limits *limits; /* NULL: defaults */

	int result;                        /* HTTP1_NEED_MORE, HTTP1_DONE or E(...) */
	/* when result == HTTP1_DONE */
	size_t head_len;                   /* 0: up to the first CRLF CRLF */
	enum http1_body_mode body_mode;
	uint64_t content_length;
	uint32_t flags;                    /* exact */
	enum http1_method method;
	enum http1_target_form form;
	uint16_t status;
	bool http10;                       /* HTTP/1.0 (default: HTTP/1.1) */
	const char *path, *query, *host, *authority, *upgrade, *reason;

	/* body, run when result == HTTP1_DONE and mode is not NONE/TUNNEL */
	bool body_checked;                 /* the fields below are meaningful */
	int body_result;                   /* of the body decoder at the end of input */
	const char *body;                  /* decoded content */
	size_t body_len;
	const char *rest;                  /* bytes left unconsumed (pipelined) */
	int eof;                           /* http1_body_eof() at the end */
};

#define BODY(res, content, left) .body_checked = true, .body_result = (res), \
	.body = (content), .body_len = sizeof(content) - 1, .rest = (left)

static const struct http1_limits small_limits = {
	.max_request_line = 32,
	.max_head = 128,
	.max_headers = 3,
	.max_chunk_line = 16,
	.max_chunk_size = 0x100,
	.max_body = 1000,
};

#define H11 "Host: example.com\r\n"

static const struct tcase cases[] = {
	/* ---- valid requests ---- */
	{ "simple_get_parses_with_keep_alive_default", S("GET / HTTP/1.1\r\n" H11 "\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .method = HTTP1_METHOD_GET, .path = "/",
	  .host = "example.com", .authority = "example.com", .body_mode = HTTP1_BODY_NONE },
	{ "origin_form_splits_path_and_query", S("GET /a/b?x=1&y=2 HTTP/1.1\r\n" H11 "\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH | Q, .method = HTTP1_METHOD_GET,
	  .path = "/a/b", .query = "x=1&y=2" },
	{ "question_mark_alone_gives_empty_query", S("GET /a? HTTP/1.1\r\n" H11 "\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH | Q, .path = "/a", .query = "" },
	{ "http10_request_needs_no_host_and_closes", S("GET / HTTP/1.0\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = 0, .http10 = true, .host = "" },
	{ "http10_keep_alive_option_keeps_connection",
	  S("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA, .http10 = true },
	{ "http11_connection_close_disables_keep_alive",
	  S("GET / HTTP/1.1\r\n" H11 "Connection: foo, close\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = HH },
	{ "lowercase_method_is_other_method", S("get / HTTP/1.1\r\n" H11 "\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .method = HTTP1_METHOD_OTHER },
	{ "post_with_content_length_decodes_body",
	  S("POST /u HTTP/1.1\r\n" H11 "Content-Length: 5\r\n\r\nhello"),
	  .result = HTTP1_DONE, .flags = KA | HH, .method = HTTP1_METHOD_POST,
	  .body_mode = HTTP1_BODY_LENGTH, .content_length = 5, BODY(HTTP1_DONE, "hello", "") },
	{ "content_length_with_leading_ows_is_valid",
	  S("POST / HTTP/1.1\r\n" H11 "Content-Length:    5   \r\n\r\nhello"),
	  .result = HTTP1_DONE, .flags = KA | HH, .body_mode = HTTP1_BODY_LENGTH,
	  .content_length = 5, BODY(HTTP1_DONE, "hello", "") },
	{ "content_length_max_int64_is_accepted",
	  S("POST / HTTP/1.1\r\n" H11 "Content-Length: 9223372036854775807\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .body_mode = HTTP1_BODY_LENGTH,
	  .content_length = INT64_MAX },
	{ "content_length_zero_body_is_done_immediately",
	  S("POST / HTTP/1.1\r\n" H11 "Content-Length: 0\r\n\r\nGET"),
	  .result = HTTP1_DONE, .flags = KA | HH, .body_mode = HTTP1_BODY_LENGTH,
	  .head_len = sizeof("POST / HTTP/1.1\r\n" H11 "Content-Length: 0\r\n\r\n") - 1,
	  BODY(HTTP1_DONE, "", "GET") },
	{ "chunked_body_decodes",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n"
	    "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .body_mode = HTTP1_BODY_CHUNKED,
	  BODY(HTTP1_DONE, "hello world", "") },
	{ "chunk_sizes_accept_both_hex_cases",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n"
	    "a\r\n0123456789\r\nA\r\nabcdefghij\r\n00\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .body_mode = HTTP1_BODY_CHUNKED,
	  BODY(HTTP1_DONE, "0123456789abcdefghij", "") },
	{ "chunk_extensions_are_parsed_and_ignored",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n"
	    "5;name=value;flag\r\nhello\r\n1 ; a = \"q\\\"x;y\" ;b\r\n!\r\n0;last\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .body_mode = HTTP1_BODY_CHUNKED,
	  BODY(HTTP1_DONE, "hello!", "") },
	{ "trailers_after_last_chunk_are_accepted",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n"
	    "3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Other:\tv \r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .body_mode = HTTP1_BODY_CHUNKED,
	  BODY(HTTP1_DONE, "abc", "") },
	{ "te_value_with_htab_ows_is_chunked",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .body_mode = HTTP1_BODY_CHUNKED,
	  BODY(HTTP1_DONE, "", "") },
	{ "te_value_trailing_space_is_not_part_of_value",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked \r\n\r\n0\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .body_mode = HTTP1_BODY_CHUNKED,
	  BODY(HTTP1_DONE, "", "") },
	{ "te_coding_name_is_case_insensitive",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: ChUnKeD\r\n\r\n0\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .body_mode = HTTP1_BODY_CHUNKED,
	  BODY(HTTP1_DONE, "", "") },
	{ "pipelined_get_leaves_next_request_unconsumed",
	  S("GET /1 HTTP/1.1\r\n" H11 "\r\nGET /2 HTTP/1.1\r\n" H11 "\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .path = "/1",
	  .head_len = sizeof("GET /1 HTTP/1.1\r\n" H11 "\r\n") - 1 },
	{ "pipelined_after_chunked_body_is_left_for_next_head",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n"
	    "2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .body_mode = HTTP1_BODY_CHUNKED,
	  .head_len = sizeof("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n") - 1,
	  BODY(HTTP1_DONE, "hi", "GET / HTTP/1.1\r\n") },
	{ "pipelined_after_length_body_is_left_for_next_head",
	  S("POST / HTTP/1.1\r\n" H11 "Content-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .body_mode = HTTP1_BODY_LENGTH,
	  .content_length = 2,
	  .head_len = sizeof("POST / HTTP/1.1\r\n" H11 "Content-Length: 2\r\n\r\n") - 1,
	  BODY(HTTP1_DONE, "hi", "GET / HTTP/1.1\r\n") },
	{ "expect_100_continue_is_flagged",
	  S("PUT /x HTTP/1.1\r\n" H11 "Expect: 100-Continue\r\nContent-Length: 1\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH | EC, .method = HTTP1_METHOD_PUT,
	  .body_mode = HTTP1_BODY_LENGTH, .content_length = 1 },
	{ "unknown_expectation_is_flagged_for_417",
	  S("PUT /x HTTP/1.1\r\n" H11 "Expect: teapot\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH | EO, .method = HTTP1_METHOD_PUT },
	{ "expect_in_http10_request_is_ignored",
	  S("PUT /x HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = 0, .http10 = true, .method = HTTP1_METHOD_PUT },
	{ "websocket_upgrade_request_is_flagged_with_protocol",
	  S("GET /chat HTTP/1.1\r\n" H11 "Connection: keep-alive, Upgrade\r\n"
	    "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH | UP, .upgrade = "websocket" },
	{ "upgrade_without_connection_option_is_not_an_upgrade",
	  S("GET / HTTP/1.1\r\n" H11 "Upgrade: websocket\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .upgrade = "" },
	{ "absolute_form_gives_authority_path_and_query",
	  S("GET http://example.com/a?b=1 HTTP/1.1\r\n" H11 "\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH | Q, .form = HTTP1_TARGET_ABSOLUTE,
	  .authority = "example.com", .path = "/a", .query = "b=1" },
	{ "absolute_form_without_path_has_empty_path",
	  S("GET HTTPS://Example.COM:8443 HTTP/1.1\r\nHost: example.com:8443\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .form = HTTP1_TARGET_ABSOLUTE,
	  .authority = "Example.COM:8443", .path = "" },
	{ "connect_authority_form_parses_without_body",
	  S("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .method = HTTP1_METHOD_CONNECT,
	  .form = HTTP1_TARGET_AUTHORITY, .authority = "example.com:443",
	  .body_mode = HTTP1_BODY_NONE },
	{ "options_asterisk_form_is_accepted",
	  S("OPTIONS * HTTP/1.1\r\n" H11 "\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .method = HTTP1_METHOD_OPTIONS,
	  .form = HTTP1_TARGET_ASTERISK },
	{ "ipv6_literal_host_with_port_is_valid",
	  S("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .host = "[::1]:8080" },
	{ "empty_host_value_is_allowed",
	  S("GET / HTTP/1.1\r\nHost:\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH, .host = "" },
	{ "obs_text_in_field_value_is_allowed",
	  S("GET / HTTP/1.1\r\n" H11 "X-Name: caf\xc3\xa9\r\n\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH },
	{ "unencoded_brackets_and_pipe_in_query_are_tolerated",
	  S("GET /s?a[]=1|2 HTTP/1.1\r\n" H11 "\r\n"),
	  .result = HTTP1_DONE, .flags = KA | HH | Q, .query = "a[]=1|2" },
	{ "request_line_at_exact_limit_is_accepted",
	  S("GET /aaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: h\r\n\r\n"),
	  .limits = &small_limits, .result = HTTP1_DONE, .flags = KA | HH },
	{ "incomplete_head_needs_more", S("GET / HTTP/1.1\r\n" H11),
	  .result = HTTP1_NEED_MORE },
	{ "lone_cr_at_end_of_input_needs_more", S("GET / HTTP/1.1\r"),
	  .result = HTTP1_NEED_MORE },

	/* ---- request smuggling and malformed requests ---- */
	{ "cl_then_te_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "0\r\n\r\nX"),
	  .result = E(CL_AND_TE) },
	{ "te_then_cl_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
	    "8\r\nSMUGGLED\r\n0\r\n\r\n"),
	  .result = E(CL_AND_TE) },
	{ "te_xchunked_is_unknown_coding_501",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: xchunked\r\n\r\n"),
	  .result = E(TE_UNKNOWN) },
	{ "te_with_space_before_colon_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding : chunked\r\n\r\n"),
	  .result = E(SPACE_BEFORE_COLON) },
	{ "te_chunked_twice_in_one_list_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked, chunked\r\n\r\n"),
	  .result = E(TE_CHUNKED_TWICE) },
	{ "te_chunked_in_two_field_lines_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n"),
	  .result = E(TE_CHUNKED_TWICE) },
	{ "te_gzip_before_chunked_is_unknown_coding",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: gzip, chunked\r\n\r\n"),
	  .result = E(TE_UNKNOWN) },
	{ "te_chunked_not_last_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked, identity\r\n\r\n"),
	  .result = E(TE_CHUNKED_NOT_LAST) },
	{ "te_chunked_then_second_line_coding_is_not_last",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n"
	    "Transfer-Encoding: gzip\r\n\r\n"),
	  .result = E(TE_CHUNKED_NOT_LAST) },
	{ "te_empty_list_element_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked,\r\n\r\n"),
	  .result = E(TE_INVALID) },
	{ "te_empty_value_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: \r\n\r\n"),
	  .result = E(TE_INVALID) },
	{ "te_coding_with_parameter_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked;q=1\r\n\r\n"),
	  .result = E(TE_INVALID) },
	{ "te_quoted_coding_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: \"chunked\"\r\n\r\n"),
	  .result = E(TE_INVALID) },
	{ "te_in_http10_request_is_rejected",
	  S("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
	  .result = E(TE_HTTP10) },
	{ "duplicate_equal_content_length_lines_are_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\n"),
	  .result = E(CL_DUPLICATE) },
	{ "content_length_list_of_equal_values_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Content-Length: 5, 5\r\n\r\n"),
	  .result = E(CL_DUPLICATE) },
	{ "negative_content_length_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Content-Length: -1\r\n\r\n"), .result = E(CL_INVALID) },
	{ "content_length_with_plus_sign_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Content-Length: +5\r\n\r\n"), .result = E(CL_INVALID) },
	{ "hex_content_length_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Content-Length: 0x10\r\n\r\n"), .result = E(CL_INVALID) },
	{ "content_length_with_inner_space_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Content-Length: 1 0\r\n\r\n"), .result = E(CL_INVALID) },
	{ "empty_content_length_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Content-Length:\r\n\r\n"), .result = E(CL_INVALID) },
	{ "content_length_over_int64_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Content-Length: 9223372036854775808\r\n\r\n"),
	  .result = E(CL_INVALID) },
	{ "content_length_of_twenty_digits_is_rejected",
	  S("POST / HTTP/1.1\r\n" H11 "Content-Length: 99999999999999999999\r\n\r\n"),
	  .result = E(CL_INVALID) },
	{ "content_length_over_max_body_is_413",
	  S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n\r\n"),
	  .limits = &small_limits, .result = E(BODY_TOO_LARGE) },
	{ "obs_fold_continuation_line_is_rejected",
	  S("GET / HTTP/1.1\r\n" H11 "X-A: a\r\n b\r\n\r\n"), .result = E(OBS_FOLD) },
	{ "whitespace_before_first_field_is_rejected",
	  S("GET / HTTP/1.1\r\n\tHost: example.com\r\n\r\n"), .result = E(OBS_FOLD) },
	{ "bare_lf_line_endings_are_rejected",
	  S("GET / HTTP/1.1\nHost: example.com\n\n"), .result = E(BARE_LF) },
	{ "bare_lf_in_header_section_is_rejected",
	  S("GET / HTTP/1.1\r\nHost: example.com\n\r\n"), .result = E(BARE_LF) },
	{ "bare_lf_as_final_empty_line_is_rejected",
	  S("GET / HTTP/1.1\r\nHost: example.com\r\n\n"), .result = E(BARE_LF) },
	{ "bare_cr_inside_field_value_is_rejected",
	  S("GET / HTTP/1.1\r\nX: a\rTransfer-Encoding: chunked\r\n" H11 "\r\n"),
	  .result = E(BARE_CR) },
	{ "bare_cr_in_request_line_is_rejected",
	  S("GET /\r HTTP/1.1\r\n" H11 "\r\n"), .result = E(BARE_CR) },
	{ "nul_in_field_value_is_rejected",
	  S("GET / HTTP/1.1\r\n" H11 "X: a\0b\r\n\r\n"), .result = E(NUL) },
	{ "nul_in_request_target_is_rejected",
	  S("GET /a\0b HTTP/1.1\r\n" H11 "\r\n"), .result = E(NUL) },
	{ "field_line_without_colon_is_rejected",
	  S("GET / HTTP/1.1\r\n" H11 "X-No-Colon\r\n\r\n"), .result = E(FIELD_NAME) },
	{ "empty_field_name_is_rejected",
	  S("GET / HTTP/1.1\r\n" H11 ": value\r\n\r\n"), .result = E(EMPTY_FIELD_NAME) },
	{ "non_token_char_in_field_name_is_rejected",
	  S("GET / HTTP/1.1\r\n" H11 "X(y): 1\r\n\r\n"), .result = E(FIELD_NAME) },
	{ "control_char_in_field_value_is_rejected",
	  S("GET / HTTP/1.1\r\n" H11 "X: a\x01z\r\n\r\n"), .result = E(FIELD_VALUE) },
	{ "del_in_field_value_is_rejected",
	  S("GET / HTTP/1.1\r\n" H11 "X: a\x7fz\r\n\r\n"), .result = E(FIELD_VALUE) },
	{ "non_token_method_is_rejected",
	  S("G@T / HTTP/1.1\r\n" H11 "\r\n"), .result = E(METHOD) },
	{ "control_char_in_target_is_rejected",
	  S("GET /a\x01 HTTP/1.1\r\n" H11 "\r\n"), .result = E(TARGET) },
	{ "del_in_target_is_rejected",
	  S("GET /a\x7f HTTP/1.1\r\n" H11 "\r\n"), .result = E(TARGET) },
	{ "fragment_in_target_is_rejected",
	  S("GET /a#frag HTTP/1.1\r\n" H11 "\r\n"), .result = E(TARGET) },
	{ "malformed_percent_escape_is_rejected",
	  S("GET /a%zz HTTP/1.1\r\n" H11 "\r\n"), .result = E(TARGET) },
	{ "non_ascii_target_is_rejected",
	  S("GET /caf\xc3\xa9 HTTP/1.1\r\n" H11 "\r\n"), .result = E(TARGET) },
	{ "target_without_slash_or_scheme_is_rejected",
	  S("GET a/b HTTP/1.1\r\n" H11 "\r\n"), .result = E(TARGET) },
	{ "absolute_form_with_userinfo_is_rejected",
	  S("GET http://user:pw@example.com/ HTTP/1.1\r\n" H11 "\r\n"), .result = E(USERINFO) },
	{ "absolute_form_with_empty_host_is_rejected",
	  S("GET http:///a HTTP/1.1\r\n" H11 "\r\n"), .result = E(TARGET) },
	{ "absolute_form_with_other_scheme_is_rejected",
	  S("GET ftp://example.com/ HTTP/1.1\r\n" H11 "\r\n"), .result = E(TARGET) },
	{ "absolute_form_host_mismatch_is_rejected",
	  S("GET http://allowed.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n"),
	  .result = E(HOST_MISMATCH) },
	{ "authority_form_with_get_is_rejected",
	  S("GET example.com:443 HTTP/1.1\r\n" H11 "\r\n"), .result = E(TARGET_FORM) },
	{ "connect_with_origin_form_is_rejected",
	  S("CONNECT / HTTP/1.1\r\n" H11 "\r\n"), .result = E(TARGET_FORM) },
	{ "connect_without_port_is_rejected",
	  S("CONNECT example.com HTTP/1.1\r\n" H11 "\r\n"), .result = E(TARGET_FORM) },
	{ "connect_with_content_length_is_rejected",
	  S("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
	    "Content-Length: 0\r\n\r\n"),
	  .result = E(CONNECT_BODY) },
	{ "asterisk_form_with_get_is_rejected",
	  S("GET * HTTP/1.1\r\n" H11 "\r\n"), .result = E(TARGET_FORM) },
	{ "http2_version_is_505", S("GET / HTTP/2.0\r\n" H11 "\r\n"), .result = E(VERSION) },
	{ "http12_version_is_505", S("GET / HTTP/1.2\r\n" H11 "\r\n"), .result = E(VERSION) },
	{ "lowercase_http_name_is_malformed", S("GET / http/1.1\r\n" H11 "\r\n"),
	  .result = E(START_LINE) },
	{ "trailing_space_after_version_is_malformed", S("GET / HTTP/1.1 \r\n" H11 "\r\n"),
	  .result = E(START_LINE) },
	{ "double_space_in_request_line_is_malformed", S("GET  / HTTP/1.1\r\n" H11 "\r\n"),
	  .result = E(START_LINE) },
	{ "htab_as_separator_is_malformed", S("GET\t/ HTTP/1.1\r\n" H11 "\r\n"),
	  .result = E(START_LINE) },
	{ "http09_request_line_is_malformed", S("GET /\r\n\r\n"), .result = E(START_LINE) },
	{ "space_inside_target_is_malformed", S("GET /a b HTTP/1.1\r\n" H11 "\r\n"),
	  .result = E(START_LINE) },
	{ "leading_empty_line_is_rejected", S("\r\nGET / HTTP/1.1\r\n" H11 "\r\n"),
	  .result = E(LEADING_EMPTY_LINE) },
	{ "http11_without_host_is_rejected", S("GET / HTTP/1.1\r\n\r\n"),
	  .result = E(HOST_MISSING) },
	{ "two_host_lines_are_rejected",
	  S("GET / HTTP/1.1\r\nHost: a.example\r\nhost: b.example\r\n\r\n"),
	  .result = E(HOST_DUPLICATE) },
	{ "two_host_lines_in_http10_are_rejected",
	  S("GET / HTTP/1.0\r\nHost: a.example\r\nHost: a.example\r\n\r\n"),
	  .result = E(HOST_DUPLICATE) },
	{ "host_with_userinfo_is_rejected", S("GET / HTTP/1.1\r\nHost: u@h.example\r\n\r\n"),
	  .result = E(HOST_INVALID) },
	{ "host_with_port_over_65535_is_rejected",
	  S("GET / HTTP/1.1\r\nHost: h.example:99999\r\n\r\n"), .result = E(HOST_INVALID) },
	{ "host_with_path_is_rejected", S("GET / HTTP/1.1\r\nHost: h.example/x\r\n\r\n"),
	  .result = E(HOST_INVALID) },
	{ "host_list_is_rejected", S("GET / HTTP/1.1\r\nHost: a.example, b.example\r\n\r\n"),
	  .result = E(HOST_INVALID) },
	{ "two_upgrade_lines_are_rejected",
	  S("GET / HTTP/1.1\r\n" H11 "Upgrade: a\r\nUpgrade: b\r\n\r\n"),
	  .result = E(UPGRADE_DUPLICATE) },
	{ "request_line_over_limit_is_414",
	  S("GET /aaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: h\r\n\r\n"),
	  .limits = &small_limits, .result = E(URI_TOO_LONG) },
	{ "request_line_over_limit_without_lf_yet_is_414",
	  S("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
	  .limits = &small_limits, .result = E(URI_TOO_LONG) },
	{ "head_over_limit_is_431",
	  S("GET / HTTP/1.1\r\nHost: h\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"),
	  .limits = &small_limits, .result = E(HEAD_TOO_LARGE) },
	{ "too_many_header_lines_is_431",
	  S("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
	  .limits = &small_limits, .result = E(TOO_MANY_HEADERS) },

	/* ---- chunked body errors (the head is fine) ---- */
#define CH "POST / HTTP/1.1\r\n" H11 "Transfer-Encoding: chunked\r\n\r\n"
#define CH_LEN (sizeof(CH) - 1)
	{ "chunk_size_overflow_is_413",
	  S(CH "ffffffffffffffffff\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED, BODY(E(CHUNK_TOO_LARGE), "", "") },
	{ "chunk_size_over_sixteen_digits_is_rejected",
	  S(CH "00000000000000001\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED, BODY(E(CHUNK_SIZE), "", "") },
	{ "chunk_size_with_0x_prefix_is_rejected",
	  S(CH "0x5\r\nhello\r\n0\r\n\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED, BODY(E(CHUNK_SIZE), "", "") },
	{ "negative_chunk_size_is_rejected",
	  S(CH "-5\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED, BODY(E(CHUNK_SIZE), "", "") },
	{ "chunk_size_with_leading_space_is_rejected",
	  S(CH " 5\r\nhello\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED, BODY(E(CHUNK_SIZE), "", "") },
	{ "chunk_size_with_trailing_space_is_rejected",
	  S(CH "5 \r\nhello\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED, BODY(E(CHUNK_EXT), "", "") },
	{ "empty_chunk_size_is_rejected",
	  S(CH "\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED, BODY(E(CHUNK_SIZE), "", "") },
	{ "chunk_size_line_with_bare_lf_is_rejected",
	  S(CH "5\nhello\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED, BODY(E(BARE_LF), "", "") },
	{ "chunk_extension_without_name_is_rejected",
	  S(CH "5;\r\nhello\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED, BODY(E(CHUNK_EXT), "", "") },
	{ "chunk_extension_with_unterminated_quote_is_rejected",
	  S(CH "5;a=\"x\r\nhello\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED, BODY(E(CHUNK_EXT), "", "") },
	{ "chunk_extension_with_ctl_is_rejected",
	  S(CH "5;a=b\x01\r\nhello\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED, BODY(E(CHUNK_EXT), "", "") },
	{ "chunk_data_without_crlf_is_rejected",
	  S(CH "5\r\nhelloX\r\n0\r\n\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED, BODY(E(CHUNK_CRLF), "", "") },
	{ "chunk_data_followed_by_bare_lf_is_rejected",
	  S(CH "5\r\nhello\n0\r\n\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED, BODY(E(CHUNK_CRLF), "", "") },
	{ "chunked_body_without_final_crlf_is_truncated_at_eof",
	  S(CH "5\r\nhello\r\n0\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED,
	  BODY(HTTP1_NEED_MORE, "hello", ""), .eof = E(TRUNCATED) },
	{ "chunked_body_without_last_chunk_is_truncated_at_eof",
	  S(CH "5\r\nhello\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED,
	  BODY(HTTP1_NEED_MORE, "hello", ""), .eof = E(TRUNCATED) },
	{ "forbidden_trailer_field_is_rejected",
	  S(CH "0\r\nContent-Length: 5\r\n\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED,
	  BODY(E(TRAILER_FORBIDDEN), "", "") },
	{ "obs_fold_in_trailer_is_rejected",
	  S(CH "0\r\nX: a\r\n b\r\n\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED, BODY(E(OBS_FOLD), "", "") },
	{ "trailer_without_colon_is_rejected",
	  S(CH "0\r\nX\r\n\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED, BODY(E(FIELD_NAME), "", "") },
	{ "nul_in_chunk_data_is_content_not_an_error",
	  S(CH "3\r\na\0b\r\n0\r\n\r\n"), .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = CH_LEN, .body_mode = HTTP1_BODY_CHUNKED, BODY(HTTP1_DONE, "a\0b", "") },
	{ "chunk_over_configured_size_is_413",
	  S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n101\r\n"),
	  .limits = &small_limits, .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = sizeof("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n") - 1,
	  .body_mode = HTTP1_BODY_CHUNKED, BODY(E(CHUNK_TOO_LARGE), "", "") },
	{ "chunk_line_over_limit_is_rejected",
	  S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;aaaaaaaaaaaaaaaaaaaa\r\n"),
	  .limits = &small_limits, .result = HTTP1_DONE, .flags = KA | HH,
	  .head_len = sizeof("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n") - 1,
	  .body_mode = HTTP1_BODY_CHUNKED, BODY(E(CHUNK_LINE_TOO_LONG), "", "") },
	{ "length_body_cut_short_is_truncated_at_eof",
	  S("POST / HTTP/1.1\r\n" H11 "Content-Length: 10\r\n\r\nabc"),
	  .result = HTTP1_DONE, .flags = KA | HH, .body_mode = HTTP1_BODY_LENGTH,
	  .content_length = 10,
	  .head_len = sizeof("POST / HTTP/1.1\r\n" H11 "Content-Length: 10\r\n\r\n") - 1,
	  BODY(HTTP1_NEED_MORE, "abc", ""), .eof = E(TRUNCATED) },

	/* ---- responses ---- */
	{ "response_with_content_length_decodes_body",
	  S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), .response = true,
	  .result = HTTP1_DONE, .status = 200, .reason = "OK", .flags = KA,
	  .body_mode = HTTP1_BODY_LENGTH, .content_length = 5, BODY(HTTP1_DONE, "hello", "") },
	{ "chunked_response_decodes_body",
	  S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n0\r\n\r\n"),
	  .response = true, .result = HTTP1_DONE, .status = 200, .flags = KA,
	  .body_mode = HTTP1_BODY_CHUNKED, BODY(HTTP1_DONE, "Wiki", "") },
	{ "response_without_framing_is_read_until_close",
	  S("HTTP/1.1 200 OK\r\nServer: x\r\n\r\nall of it"), .response = true,
	  .result = HTTP1_DONE, .status = 200, .flags = 0,
	  .body_mode = HTTP1_BODY_UNTIL_CLOSE, BODY(HTTP1_NEED_MORE, "all of it", ""), .eof = 0 },
	{ "response_204_has_no_body",
	  S("HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n"), .response = true,
	  .result = HTTP1_DONE, .status = 204, .flags = KA, .body_mode = HTTP1_BODY_NONE,
	  .head_len = sizeof("HTTP/1.1 204 No Content\r\n\r\n") - 1,
	  BODY(HTTP1_DONE, "", "HTTP/1.1 200 OK\r\n") },
	{ "response_304_ignores_content_length",
	  S("HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n"), .response = true,
	  .result = HTTP1_DONE, .status = 304, .flags = KA, .body_mode = HTTP1_BODY_NONE },
	{ "response_to_head_ignores_content_length",
	  S("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1"), .response = true,
	  .req_method = HTTP1_METHOD_HEAD, .result = HTTP1_DONE, .status = 200, .flags = KA,
	  .body_mode = HTTP1_BODY_NONE, .head_len = sizeof("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n") - 1,
	  BODY(HTTP1_DONE, "", "HTTP/1.1") },
	{ "response_to_head_with_chunked_has_no_body",
	  S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), .response = true,
	  .req_method = HTTP1_METHOD_HEAD, .result = HTTP1_DONE, .status = 200, .flags = KA,
	  .body_mode = HTTP1_BODY_NONE },
	{ "response_with_cl_and_te_is_rejected",
	  S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
	  .response = true, .result = E(CL_AND_TE) },
	{ "response_100_continue_is_interim",
	  S("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
	  .response = true, .result = HTTP1_DONE, .status = 100, .reason = "Continue",
	  .flags = KA | IM, .body_mode = HTTP1_BODY_NONE,
	  .head_len = sizeof("HTTP/1.1 100 Continue\r\n\r\n") - 1 },
	{ "response_103_early_hints_is_interim",
	  S("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"),
	  .response = true, .result = HTTP1_DONE, .status = 103, .flags = KA | IM,
	  .body_mode = HTTP1_BODY_NONE },
	{ "response_101_to_upgrade_request_becomes_tunnel",
	  S("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	    "\x81\x05hello"),
	  .response = true, .req_upgrade = true, .result = HTTP1_DONE, .status = 101, .flags = 0,
	  .body_mode = HTTP1_BODY_TUNNEL, .upgrade = "websocket",
	  .head_len = sizeof("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
			     "Upgrade: websocket\r\n\r\n") - 1,
	  BODY(HTTP1_DONE, "", "\x81\x05hello") },
	{ "response_101_without_upgrade_request_is_rejected",
	  S("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"), .response = true,
	  .result = E(UNEXPECTED_101) },
	{ "response_101_without_upgrade_field_is_rejected",
	  S("HTTP/1.1 101 Switching Protocols\r\n\r\n"), .response = true, .req_upgrade = true,
	  .result = E(UNEXPECTED_101) },
	{ "response_2xx_to_connect_becomes_tunnel",
	  S("HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01"), .response = true,
	  .req_method = HTTP1_METHOD_CONNECT, .result = HTTP1_DONE, .status = 200, .flags = 0,
	  .body_mode = HTTP1_BODY_TUNNEL, .head_len = sizeof("HTTP/1.1 200 Connection established\r\n\r\n") - 1 },
	{ "response_407_to_connect_has_a_body",
	  S("HTTP/1.1 407 Proxy Auth\r\nContent-Length: 2\r\n\r\nno"), .response = true,
	  .req_method = HTTP1_METHOD_CONNECT, .result = HTTP1_DONE, .status = 407, .flags = KA,
	  .body_mode = HTTP1_BODY_LENGTH, .content_length = 2, BODY(HTTP1_DONE, "no", "") },
	{ "status_line_with_empty_reason_is_valid",
	  S("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"), .response = true,
	  .result = HTTP1_DONE, .status = 200, .reason = "", .flags = KA,
	  .body_mode = HTTP1_BODY_LENGTH },
	{ "status_line_without_reason_or_space_is_tolerated",
	  S("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n"), .response = true,
	  .result = HTTP1_DONE, .status = 404, .reason = "", .flags = KA,
	  .body_mode = HTTP1_BODY_LENGTH },
	{ "http10_response_with_length_and_keep_alive_persists",
	  S("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"),
	  .response = true, .result = HTTP1_DONE, .status = 200, .http10 = true, .flags = KA,
	  .body_mode = HTTP1_BODY_LENGTH },
	{ "four_digit_status_is_rejected", S("HTTP/1.1 2000 OK\r\n\r\n"), .response = true,
	  .result = E(STATUS) },
	{ "status_below_100_is_rejected", S("HTTP/1.1 099 Odd\r\n\r\n"), .response = true,
	  .result = E(STATUS) },
	{ "status_600_is_rejected", S("HTTP/1.1 600 Odd\r\n\r\n"), .response = true,
	  .result = E(STATUS) },
	{ "reason_with_control_char_is_rejected", S("HTTP/1.1 200 O\x01K\r\n\r\n"),
	  .response = true, .result = E(REASON) },
	{ "http2_status_line_is_malformed", S("HTTP/2 200\r\n\r\n"), .response = true,
	  .result = E(START_LINE) },
	{ "http20_response_version_is_505", S("HTTP/2.0 200 OK\r\n\r\n"), .response = true,
	  .result = E(VERSION) },
	{ "te_in_http10_response_is_rejected",
	  S("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), .response = true,
	  .result = E(TE_HTTP10) },
	{ "te_in_204_response_is_rejected",
	  S("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"), .response = true,
	  .result = E(FRAMING_NOT_ALLOWED) },
	{ "content_length_in_1xx_is_rejected",
	  S("HTTP/1.1 100 Continue\r\nContent-Length: 0\r\n\r\n"), .response = true,
	  .result = E(FRAMING_NOT_ALLOWED) },
	{ "gzip_te_response_is_rejected_not_read_until_close",
	  S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), .response = true,
	  .result = E(TE_UNKNOWN) },
	{ "obs_fold_in_response_is_rejected",
	  S("HTTP/1.1 200 OK\r\nX: a\r\n\tb\r\nContent-Length: 0\r\n\r\n"), .response = true,
	  .result = E(OBS_FOLD) },
	{ "bare_lf_in_response_is_rejected", S("HTTP/1.1 200 OK\nContent-Length: 0\n\n"),
	  .response = true, .result = E(BARE_LF) },
	{ "duplicate_content_length_in_response_is_rejected",
	  S("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
	  .response = true, .result = E(CL_DUPLICATE) },
	{ "host_field_in_response_is_not_interpreted",
	  S("HTTP/1.1 200 OK\r\nHost: a@b\r\nHost: c\r\nContent-Length: 0\r\n\r\n"),
	  .response = true, .result = HTTP1_DONE, .status = 200, .flags = KA,
	  .body_mode = HTTP1_BODY_LENGTH },
	{ "leading_empty_line_before_status_line_is_rejected",
	  S("\r\nHTTP/1.1 200 OK\r\n\r\n"), .response = true, .result = E(LEADING_EMPTY_LINE) },
	{ "status_line_over_limit_is_431",
	  S("HTTP/1.1 200 OKOKOKOKOKOKOKOKOKOKOKOKOKOK\r\n\r\n"), .response = true,
	  .limits = &small_limits, .result = E(HEAD_TOO_LARGE) },
};

#define N_CASES (sizeof(cases) / sizeof(cases[0]))

/* ------------------------------------------------------------------ */
/* Drivers                                                             */

static void parser_init_for(const struct tcase *tc, struct http1_parser *p)
{
	int r;

	if (tc->response)
		r = http1_parser_init_response(p, tc->limits,
					       tc->req_method ? tc->req_method : HTTP1_METHOD_GET,
					       tc->req_upgrade);
	else
		r = http1_parser_init_request(p, tc->limits);
	assert_int_equal(r, 0);
}

/* Default: the head ends at the first CRLF CRLF (or is the whole input). */
static size_t expected_head_len(const struct tcase *tc)
{
	const char *end;

	if (tc->head_len)
		return tc->head_len;
	end = memmem(tc->in, tc->in_len, "\r\n\r\n", 4);
	return end ? (size_t)(end - tc->in) + 4 : tc->in_len;
}

static void assert_span(const uint8_t *buf, struct http1_span s, const char *want)
{
	if (!want)
		return;
	assert_int_equal(s.len, strlen(want));
	assert_memory_equal(buf + s.off, want, s.len);
}

static const char *result_name(int r)
{
	if (r == HTTP1_DONE)
		return "DONE";
	if (r == HTTP1_NEED_MORE)
		return "NEED_MORE";
	return http1_strerror(r);
}

/* The outcome of a parse, checked the same way for every feeding pattern. */
static void check_outcome(const struct tcase *tc, const struct http1_parser *p,
			  const uint8_t *buf, int r, size_t head_len)
{
	const struct http1_head *h = &p->head;

	if (r != tc->result)
		fail_msg("%s: got %d (%s), want %d (%s)", tc->name, r, result_name(r),
			 tc->result, result_name(tc->result));
	if (r != HTTP1_DONE)
		return;
	assert_int_equal(head_len, expected_head_len(tc));
	assert_int_equal(h->head_len, head_len);
	assert_int_equal(h->flags, tc->flags);
	assert_int_equal(h->body_mode, tc->body_mode);
	if (tc->body_mode == HTTP1_BODY_LENGTH)
		assert_true(h->content_length == tc->content_length);
	assert_int_equal(h->version_minor, tc->http10 ? 0 : 1);
	assert_int_equal(h->n_headers <= HTTP1_HEADERS_CAP, 1);
	if (tc->response) {
		assert_int_equal(h->status, tc->status);
		assert_span(buf, h->reason, tc->reason);
	} else {
		if (tc->method)
			assert_int_equal(h->method, tc->method);
		assert_int_equal(h->target_form, tc->form);
		assert_span(buf, h->path, tc->path);
		assert_span(buf, h->query, tc->query);
		assert_span(buf, h->host, tc->host);
		assert_span(buf, h->authority, tc->authority);
	}
	assert_span(buf, h->upgrade, tc->upgrade);
	/* every span lies inside the head */
	for (uint32_t i = 0; i < h->n_headers; i++) {
		assert_true(h->headers[i].name.off + h->headers[i].name.len <= head_len);
		assert_true(h->headers[i].value.off + h->headers[i].value.len <= head_len);
	}
}

static void run_whole(const struct tcase *tc)
{
	struct http1_parser p;
	size_t head_len = 0;
	int r;

	parser_init_for(tc, &p);
	r = http1_parse(&p, (const uint8_t *)tc->in, tc->in_len, &head_len);
	check_outcome(tc, &p, (const uint8_t *)tc->in, r, head_len);
	/* idempotent / sticky */
	size_t again = 0;
	assert_int_equal(http1_parse(&p, (const uint8_t *)tc->in, tc->in_len, &again), r);
	if (r == HTTP1_DONE)
		assert_int_equal(again, head_len);
}

static void run_split_everywhere(const struct tcase *tc)
{
	for (size_t k = 0; k <= tc->in_len; k++) {
		struct http1_parser p;
		size_t head_len = 0;
		int r;

		parser_init_for(tc, &p);
		r = http1_parse(&p, (const uint8_t *)tc->in, k, &head_len);
		if (r == HTTP1_NEED_MORE)
			r = http1_parse(&p, (const uint8_t *)tc->in, tc->in_len, &head_len);
		check_outcome(tc, &p, (const uint8_t *)tc->in, r, head_len);
	}
}

/* One byte more per call, each time in a new exactly-sized heap buffer. */
static void run_byte_by_byte(const struct tcase *tc)
{
	struct http1_parser p;
	uint8_t *buf = NULL;
	size_t head_len = 0;
	int r = HTTP1_NEED_MORE;

	parser_init_for(tc, &p);
	for (size_t n = 1; n <= tc->in_len && r == HTTP1_NEED_MORE; n++) {
		uint8_t *next = malloc(n);
		assert_non_null(next);
		memcpy(next, tc->in, n);
		free(buf);
		buf = next;
		r = http1_parse(&p, buf, n, &head_len);
	}
	check_outcome(tc, &p, (const uint8_t *)tc->in, r, head_len);
	free(buf);
}

struct body_out {
	uint8_t content[512];
	size_t content_len;
	size_t consumed;
	int result;
};

/*
 * Decode the body from bytes [from, in_len), making `step` more bytes
 * available at a time, each window in its own heap buffer.
 */
static void decode_body(const struct tcase *tc, const struct http1_head *h, size_t from,
			size_t step, struct body_out *o)
{
	struct http1_body b;
	size_t avail = from, pos = from;
	int r = HTTP1_NEED_MORE;

	memset(o, 0, sizeof(*o));
	assert_int_equal(http1_body_init(&b, h, tc->limits), 0);
	for (;;) {
		size_t n = avail - pos, consumed = 0, d_off = 0, d_len = 0;
		uint8_t *win = malloc(n + 1);

		assert_non_null(win);
		memcpy(win, tc->in + pos, n);
		r = http1_body_decode(&b, win, n, &consumed, &d_off, &d_len);
		if (r >= 0) {
			assert_true(consumed <= n);
			assert_true(d_off + d_len <= consumed);
			assert_true(o->content_len + d_len <= sizeof(o->content));
			memcpy(o->content + o->content_len, win + d_off, d_len);
			o->content_len += d_len;
			pos += consumed;
		}
		free(win);
		if (r != HTTP1_NEED_MORE)
			break;
		if (pos < avail)
			continue;               /* more to do in this window */
		if (avail == tc->in_len)
			break;
		avail = avail + step > tc->in_len ? tc->in_len : avail + step;
	}
	o->result = r;
	o->consumed = pos - from;
	if (r == HTTP1_NEED_MORE)
		assert_int_equal(http1_body_eof(&b), tc->eof);
	else if (r < 0)
		assert_int_equal(http1_body_eof(&b), r);
}

static void run_body(const struct tcase *tc)
{
	const size_t steps[] = { SIZE_MAX, 1, 2, 3, 7 };
	struct http1_parser p;
	size_t head_len = 0;

	if (tc->result != HTTP1_DONE || !tc->body_checked)
		return;
	parser_init_for(tc, &p);
	assert_int_equal(http1_parse(&p, (const uint8_t *)tc->in, tc->in_len, &head_len), HTTP1_DONE);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct body_out o;
		size_t rest_len = tc->rest ? strlen(tc->rest) : 0;

		decode_body(tc, &p.head, head_len, steps[i] == SIZE_MAX ? tc->in_len : steps[i], &o);
		if (o.result != tc->body_result)
			fail_msg("%s (step %zu): body got %d (%s), want %d (%s)", tc->name, steps[i],
				 o.result, result_name(o.result), tc->body_result,
				 result_name(tc->body_result));
		if (o.result < 0)
			continue;
		assert_int_equal(o.content_len, tc->body_len);
		assert_memory_equal(o.content, tc->body, tc->body_len);
		assert_int_equal(head_len + o.consumed + rest_len, tc->in_len);
		if (rest_len)
			assert_memory_equal(tc->in + head_len + o.consumed, tc->rest, rest_len);
	}
}

static void test_table_case(void **state)
{
	const struct tcase *tc = *state;

	run_whole(tc);
	run_split_everywhere(tc);
	run_byte_by_byte(tc);
	run_body(tc);
}

/* ------------------------------------------------------------------ */
/* Behaviour outside the table                                         */

static void test_pipelined_requests_parse_one_after_another(void **state)
{
	(void)state;
	static const char in[] =
		"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
		"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
		"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
		"GET /4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
	const char *paths[] = { "/1", "/2", "/3", "/4" };
	const size_t total = sizeof(in) - 1;
	struct http1_parser p;
	size_t pos = 0;

	assert_int_equal(http1_parser_init_request(&p, NULL), 0);
	for (size_t i = 0; i < 4; i++) {
		const uint8_t *msg = (const uint8_t *)in + pos;
		struct http1_body b;
		size_t head_len, consumed, d_off, d_len;

		http1_parser_reset(&p);
		assert_int_equal(http1_parse(&p, msg, total - pos, &head_len), HTTP1_DONE);
		assert_span(msg, p.head.path, paths[i]);
		assert_int_equal(!!(p.head.flags & HTTP1_F_KEEP_ALIVE), i < 3);
		pos += head_len;
		assert_int_equal(http1_body_init(&b, &p.head, NULL), 0);
		int r;
		do {
			r = http1_body_decode(&b, (const uint8_t *)in + pos, total - pos, &consumed,
					      &d_off, &d_len);
			assert_true(r >= 0);
			pos += consumed;
		} while (r == HTTP1_NEED_MORE);
	}
	assert_int_equal(pos, total);
}

static void test_interim_response_then_final_response(void **state)
{
	(void)state;
	static const char in[] = "HTTP/1.1 100 Continue\r\n\r\n"
				 "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
	struct http1_parser p;
	size_t head_len, second;

	assert_int_equal(http1_parser_init_response(&p, NULL, HTTP1_METHOD_PUT, false), 0);
	assert_int_equal(http1_parse(&p, (const uint8_t *)in, sizeof(in) - 1, &head_len), HTTP1_DONE);
	assert_int_equal(p.head.status, 100);
	assert_true(p.head.flags & HTTP1_F_INTERIM);
	http1_parser_reset(&p);
	assert_int_equal(http1_parse(&p, (const uint8_t *)in + head_len, sizeof(in) - 1 - head_len,
				     &second), HTTP1_DONE);
	assert_int_equal(p.head.status, 201);
	assert_false(p.head.flags & HTTP1_F_INTERIM);
	assert_int_equal(p.head.body_mode, HTTP1_BODY_LENGTH);
	assert_int_equal(p.head.content_length, 2);
	assert_int_equal(head_len + second + 2, sizeof(in) - 1);
}

static void test_headers_keep_order_case_and_trimmed_values(void **state)
{
	(void)state;
	static const char in[] = "GET / HTTP/1.1\r\nhOsT: example.com\r\nX-A:  1 2 \t\r\n"
				 "x-empty:\r\nContent-LENGTH: 0\r\n\r\n";
	const uint8_t *buf = (const uint8_t *)in;
	struct http1_parser p;
	size_t head_len;

	assert_int_equal(http1_parser_init_request(&p, NULL), 0);
	assert_int_equal(http1_parse(&p, buf, sizeof(in) - 1, &head_len), HTTP1_DONE);
	assert_int_equal(p.head.n_headers, 4);
	assert_span(buf, p.head.headers[0].name, "hOsT");
	assert_int_equal(p.head.headers[0].id, HTTP1_FIELD_HOST);
	assert_span(buf, p.head.headers[1].name, "X-A");
	assert_span(buf, p.head.headers[1].value, "1 2");
	assert_int_equal(p.head.headers[1].id, HTTP1_FIELD_OTHER);
	assert_span(buf, p.head.headers[2].value, "");
	assert_int_equal(p.head.headers[3].id, HTTP1_FIELD_CONTENT_LENGTH);
	assert_span(buf, p.head.method_name, "GET");
	assert_span(buf, p.head.target, "/");
}

/* "GET /aaa...a HTTP/1.1" of exactly line_len bytes, then Host and the end. */
static uint8_t *request_with_line_of(size_t line_len, size_t *ret_len)
{
	static const char pre[] = "GET /", post[] = " HTTP/1.1\r\nHost: h\r\n\r\n";
	const size_t fixed = (sizeof(pre) - 1) + (sizeof(" HTTP/1.1") - 1);
	size_t n_a = line_len - fixed, len = (sizeof(pre) - 1) + n_a + (sizeof(post) - 1);
	uint8_t *buf;

	buf = malloc(len);
	assert_non_null(buf);
	memcpy(buf, pre, sizeof(pre) - 1);
	memset(buf + sizeof(pre) - 1, 'a', n_a);
	memcpy(buf + sizeof(pre) - 1 + n_a, post, sizeof(post) - 1);
	*ret_len = len;
	return buf;
}

static void test_default_limits_accept_8k_request_line_and_reject_more(void **state)
{
	(void)state;
	struct http1_parser p;
	size_t len, head_len;
	uint8_t *buf;

	buf = request_with_line_of(HTTP1_DEFAULT_MAX_REQUEST_LINE, &len);
	assert_int_equal(http1_parser_init_request(&p, NULL), 0);
	assert_int_equal(http1_parse(&p, buf, len, &head_len), HTTP1_DONE);
	free(buf);

	buf = request_with_line_of(HTTP1_DEFAULT_MAX_REQUEST_LINE + 1, &len);
	assert_int_equal(http1_parser_init_request(&p, NULL), 0);
	assert_int_equal(http1_parse(&p, buf, len, &head_len), -HTTP1_E_URI_TOO_LONG);
	free(buf);
}

static void test_default_limits_reject_101_headers(void **state)
{
	(void)state;
	char buf[4096];
	size_t len = 0, head_len;
	struct http1_parser p;

	len += (size_t)snprintf(buf + len, sizeof(buf) - len, "GET / HTTP/1.1\r\nHost: h\r\n");
	for (int i = 0; i < 99; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "X-%d: v\r\n", i);
	len += (size_t)snprintf(buf + len, sizeof(buf) - len, "\r\n");
	assert_int_equal(http1_parser_init_request(&p, NULL), 0);
	assert_int_equal(http1_parse(&p, (uint8_t *)buf, len, &head_len), HTTP1_DONE);
	assert_int_equal(p.head.n_headers, 100);

	len -= 2;
	len += (size_t)snprintf(buf + len, sizeof(buf) - len, "X-last: v\r\n\r\n");
	assert_int_equal(http1_parser_init_request(&p, NULL), 0);
	assert_int_equal(http1_parse(&p, (uint8_t *)buf, len, &head_len), -HTTP1_E_TOO_MANY_HEADERS);
}

static void test_default_limits_reject_head_over_64k(void **state)
{
	(void)state;
	const size_t len = HTTP1_DEFAULT_MAX_HEAD + 64;
	uint8_t *buf = malloc(len);
	struct http1_parser p;
	size_t head_len;
	int r = HTTP1_NEED_MORE;

	assert_non_null(buf);
	memcpy(buf, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ", 32);
	memset(buf + 32, 'v', len - 32);
	assert_int_equal(http1_parser_init_request(&p, NULL), 0);
	/* in 1000-byte steps: the error comes as soon as the limit is certain */
	for (size_t n = 1000;; n += 1000) {
		r = http1_parse(&p, buf, n < len ? n : len, &head_len);
		if (r != HTTP1_NEED_MORE || n >= len)
			break;
	}
	assert_int_equal(r, -HTTP1_E_HEAD_TOO_LARGE);
	free(buf);
}

static void test_shrinking_buffer_is_usage_error(void **state)
{
	(void)state;
	static const char in[] = "GET / HTTP/1.1\r\nHost";
	struct http1_parser p;
	size_t head_len;

	assert_int_equal(http1_parser_init_request(&p, NULL), 0);
	assert_int_equal(http1_parse(&p, (const uint8_t *)in, sizeof(in) - 1, &head_len),
			 HTTP1_NEED_MORE);
	assert_int_equal(http1_parse(&p, (const uint8_t *)in, 3, &head_len), -HTTP1_E_USAGE);
	/* sticky */
	assert_int_equal(http1_parse(&p, (const uint8_t *)in, sizeof(in) - 1, &head_len),
			 -HTTP1_E_USAGE);
}

static void test_inconsistent_limits_are_refused(void **state)
{
	(void)state;
	struct http1_parser p;
	struct http1_limits l;

	http1_limits_default(&l);
	l.max_head = l.max_request_line + 1;
	assert_int_equal(http1_parser_init_request(&p, &l), -HTTP1_E_USAGE);
	http1_limits_default(&l);
	l.max_headers = HTTP1_HEADERS_CAP + 1;
	assert_int_equal(http1_parser_init_request(&p, &l), -HTTP1_E_USAGE);
	http1_limits_default(&l);
	l.max_head = HTTP1_HEAD_CAP + 1;
	assert_int_equal(http1_parser_init_response(&p, &l, HTTP1_METHOD_GET, false),
			 -HTTP1_E_USAGE);
}

static void test_query_iterator_yields_each_parameter(void **state)
{
	(void)state;
	static const char in[] = "GET /p?a=1&&tok=miosa-tok-00&flag&=v& HTTP/1.1\r\nHost: h\r\n\r\n";
	const uint8_t *buf = (const uint8_t *)in;
	const char *want[][2] = { { "a", "1" }, { "tok", "miosa-tok-00" }, { "flag", "" },
				  { "", "v" } };
	struct http1_span name, value;
	struct http1_parser p;
	uint32_t iter = 0;
	size_t head_len, n = 0;

	assert_int_equal(http1_parser_init_request(&p, NULL), 0);
	assert_int_equal(http1_parse(&p, buf, sizeof(in) - 1, &head_len), HTTP1_DONE);
	while (http1_query_next(&p.head, buf, &iter, &name, &value) == 1) {
		assert_true(n < 4);
		assert_span(buf, name, want[n][0]);
		assert_span(buf, value, want[n][1]);
		n++;
	}
	assert_int_equal(n, 4);
	assert_int_equal(http1_query_next(&p.head, buf, &iter, &name, &value), 0);
}

static void test_every_error_has_text_and_a_listed_status(void **state)
{
	(void)state;
	for (int e = HTTP1_E_NUL; e < HTTP1_E_MAX_; e++) {
		int st = http1_error_status(-e);

		assert_non_null(http1_strerror(-e));
		assert_string_not_equal(http1_strerror(-e), "unknown http1 error");
		assert_true(st == 400 || st == 413 || st == 414 || st == 431 || st == 500 ||
			    st == 501 || st == 505);
		assert_int_equal(http1_error_status(e), st);
	}
	assert_int_equal(http1_error_status(-HTTP1_E_TE_UNKNOWN), 501);
	assert_int_equal(http1_error_status(-HTTP1_E_VERSION), 505);
	assert_int_equal(http1_error_status(-HTTP1_E_URI_TOO_LONG), 414);
	assert_int_equal(http1_error_status(-HTTP1_E_HEAD_TOO_LARGE), 431);
	assert_int_equal(http1_error_status(-HTTP1_E_CHUNK_TOO_LARGE), 413);
	assert_int_equal(http1_error_status(-EINVAL), 500);
	assert_string_equal(http1_strerror(-EINVAL), "unknown http1 error");
}

static void test_body_decoder_reports_one_data_run_per_call(void **state)
{
	(void)state;
	static const char body[] = "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
	struct http1_head h = { .body_mode = HTTP1_BODY_CHUNKED };
	struct http1_body b;
	size_t consumed, off, len;

	assert_int_equal(http1_body_init(&b, &h, NULL), 0);
	assert_int_equal(http1_body_decode(&b, (const uint8_t *)body, sizeof(body) - 1, &consumed,
					   &off, &len), HTTP1_NEED_MORE);
	assert_int_equal(off, 3);
	assert_int_equal(len, 3);
	assert_int_equal(consumed, 11);   /* up to the next chunk's data */
	assert_int_equal(http1_body_decode(&b, (const uint8_t *)body + consumed,
					   sizeof(body) - 1 - consumed, &consumed, &off, &len),
			 HTTP1_DONE);
	assert_int_equal(len, 2);
	assert_int_equal(b.total, 5);
	assert_int_equal(http1_body_eof(&b), 0);
	/* after DONE nothing more is consumed */
	assert_int_equal(http1_body_decode(&b, (const uint8_t *)"x", 1, &consumed, &off, &len),
			 HTTP1_DONE);
	assert_int_equal(consumed, 0);
}

static void test_too_many_trailers_are_rejected(void **state)
{
	(void)state;
	static const char body[] = "0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
	struct http1_head h = { .body_mode = HTTP1_BODY_CHUNKED };
	struct http1_body b;
	size_t consumed, off, len;

	assert_int_equal(http1_body_init(&b, &h, &small_limits), 0);
	assert_int_equal(http1_body_decode(&b, (const uint8_t *)body, sizeof(body) - 1, &consumed,
					   &off, &len), -HTTP1_E_TOO_MANY_HEADERS);
}

int main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_pipelined_requests_parse_one_after_another),
		cmocka_unit_test(test_interim_response_then_final_response),
		cmocka_unit_test(test_headers_keep_order_case_and_trimmed_values),
		cmocka_unit_test(test_default_limits_accept_8k_request_line_and_reject_more),
		cmocka_unit_test(test_default_limits_reject_101_headers),
		cmocka_unit_test(test_default_limits_reject_head_over_64k),
		cmocka_unit_test(test_shrinking_buffer_is_usage_error),
		cmocka_unit_test(test_inconsistent_limits_are_refused),
		cmocka_unit_test(test_query_iterator_yields_each_parameter),
		cmocka_unit_test(test_every_error_has_text_and_a_listed_status),
		cmocka_unit_test(test_body_decoder_reports_one_data_run_per_call),
		cmocka_unit_test(test_too_many_trailers_are_rejected),
	};
	const size_t n_fixed = sizeof(fixed) / sizeof(fixed[0]);
	struct CMUnitTest *tests = calloc(N_CASES + n_fixed, sizeof(*tests));
	int failed;

	if (!tests)
		return 1;
	for (size_t i = 0; i < N_CASES; i++)
		tests[i] = (struct CMUnitTest){
			.name = cases[i].name,
			.test_func = test_table_case,
			.initial_state = (void *)&cases[i],
		};
	memcpy(tests + N_CASES, fixed, sizeof(fixed));
	failed = _cmocka_run_group_tests("http1", tests, N_CASES + n_fixed, NULL, NULL);
	free(tests);
	return failed;
}
