/*
 * libFuzzer target for the http1 codec.  The input is parsed as a request
 * and as a response (to a request method chosen by the first byte), with
 * default and with small limits, and each time:
 *   - the outcome must not depend on how the bytes are split: whole input,
 *     two parts at a split chosen from the input, and one byte at a time
 *     must agree exactly (result, head length, derived fields);
 *   - every span must lie inside the head;
 *   - the body decoder, fed the rest whole and one byte at a time (each
 *     window in its own exactly-sized allocation), must agree on result,
 *     consumed bytes and decoded content;
 *   - a rewrite of an uninterpreted field value (and of the query, for
 *     requests) must produce exactly http1_rewrite_size() bytes that parse
 *     again to the same structure.
 * Any violated invariant abort()s.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "http1.h"
#include "http1_rewrite.h"

static const struct http1_limits small_limits = {
	.max_request_line = 64,
	.max_head = 256,
	.max_headers = 4,
	.max_chunk_line = 24,
	.max_chunk_size = 0x400,
	.max_body = 4096,
};

struct ctx {
	bool response;
	enum http1_method req_method;
	bool req_upgrade;
	const struct http1_limits *limits;
};

static void init(const struct ctx *c, struct http1_parser *p)
{
	int r = c->response ? http1_parser_init_response(p, c->limits, c->req_method, c->req_upgrade)
			    : http1_parser_init_request(p, c->limits);
	CHECK(r == 0);
}

static bool span_in(struct http1_span s, size_t len)
{
	return (size_t)s.off + s.len <= len;
}

static void check_head(const struct http1_head *h, size_t head_len, size_t size)
{
	CHECK(head_len == h->head_len && head_len <= size && head_len >= 4);
	CHECK(h->n_headers <= HTTP1_HEADERS_CAP);
	CHECK(span_in(h->target, head_len) && span_in(h->path, head_len));
	CHECK(span_in(h->query, head_len) && span_in(h->host, head_len));
	CHECK(span_in(h->authority, head_len) && span_in(h->upgrade, head_len));
	CHECK(span_in(h->reason, head_len) && span_in(h->method_name, head_len));
	for (uint32_t i = 0; i < h->n_headers; i++) {
		CHECK(span_in(h->headers[i].name, head_len));
		CHECK(span_in(h->headers[i].value, head_len));
		CHECK(h->headers[i].name.len > 0);
	}
	CHECK(h->body_mode <= HTTP1_BODY_TUNNEL);
}

static bool same_head(const struct http1_head *a, const struct http1_head *b)
{
	return a->head_len == b->head_len && a->flags == b->flags &&
	       a->body_mode == b->body_mode && a->content_length == b->content_length &&
	       a->n_headers == b->n_headers && a->status == b->status &&
	       a->method == b->method && a->version_minor == b->version_minor &&
	       memcmp(&a->target, &b->target, sizeof(a->target)) == 0 &&
	       memcmp(&a->query, &b->query, sizeof(a->query)) == 0 &&
	       memcmp(a->headers, b->headers, a->n_headers * sizeof(a->headers[0])) == 0;
}

/* Parse one byte at a time, each call with a fresh exactly-sized buffer. */
static int parse_bytewise(const struct ctx *c, struct http1_parser *p, const uint8_t *data,
			  size_t size, size_t *ret_head_len)
{
	uint8_t *buf = NULL;
	int r = HTTP1_NEED_MORE;

	init(c, p);
	for (size_t n = 1; n <= size && r == HTTP1_NEED_MORE; n++) {
		uint8_t *next = malloc(n);
		CHECK(next);
		memcpy(next, data, n);
		free(buf);
		buf = next;
		r = http1_parse(p, buf, n, ret_head_len);
	}
	free(buf);
	return r;
}

struct body_result {
	int r;
	size_t consumed;
	uint64_t content_len;
	uint64_t content_sum;      /* position-weighted checksum of the content */
};

static void decode(const struct http1_head *h, const struct ctx *c, const uint8_t *data,
		   size_t size, size_t step, struct body_result *o)
{
	struct http1_body b;
	size_t pos = 0;
	int r;

	memset(o, 0, sizeof(*o));
	r = http1_body_init(&b, h, c->limits);
	if (r < 0) {
		o->r = r;
		return;
	}
	for (;;) {
		size_t n = size - pos < step ? size - pos : step;
		size_t consumed = 0, d_off = 0, d_len = 0;
		uint8_t *win = malloc(n + 1);

		CHECK(win);
		memcpy(win, data + pos, n);
		r = http1_body_decode(&b, win, n, &consumed, &d_off, &d_len);
		if (r >= 0) {
			CHECK(consumed <= n && d_len <= consumed && d_off <= consumed - d_len);
			for (size_t i = 0; i < d_len; i++)
				o->content_sum += (o->content_len + i + 1) * win[d_off + i];
			o->content_len += d_len;
			pos += consumed;
		}
		free(win);
		if (r != HTTP1_NEED_MORE || (consumed == 0 && pos == size))
			break;
		CHECK(consumed > 0 || n == 0);
		if (n == 0)
			break;
	}
	o->r = r;
	o->consumed = pos;
	if (r == HTTP1_NEED_MORE) {
		int e = http1_body_eof(&b);
		CHECK(e == 0 || e == -HTTP1_E_TRUNCATED);
	}
}

static void check_body(const struct http1_head *h, const struct ctx *c, const uint8_t *rest,
		       size_t n)
{
	struct body_result whole, bytewise;

	decode(h, c, rest, n, n ? n : 1, &whole);
	decode(h, c, rest, n, 1, &bytewise);
	CHECK(whole.r == bytewise.r);
	if (whole.r < 0)
		return;
	CHECK(whole.consumed == bytewise.consumed && whole.consumed <= n);
	CHECK(whole.content_len == bytewise.content_len);
	CHECK(whole.content_sum == bytewise.content_sum);
	if (whole.r == HTTP1_DONE && h->body_mode == HTTP1_BODY_LENGTH)
		CHECK(whole.content_len == h->content_length);
}

/*
 * Re-parse a rewritten head; it must keep its structure.  The edits make it
 * longer, so it is parsed with limits no input here can reach.
 */
static void check_reparse(const struct ctx *c, const struct http1_head *h, const uint8_t *out,
			  size_t len)
{
	static const struct http1_limits roomy = {
		.max_request_line = HTTP1_HEAD_CAP / 2,
		.max_head = HTTP1_HEAD_CAP,
		.max_headers = HTTP1_HEADERS_CAP,
		.max_chunk_line = HTTP1_DEFAULT_MAX_CHUNK_LINE,
		.max_chunk_size = HTTP1_DEFAULT_MAX_CHUNK_SIZE,
		.max_body = HTTP1_DEFAULT_MAX_BODY,
	};
	struct http1_parser *q = malloc(sizeof(*q));
	struct ctx roomy_ctx = *c;
	size_t head_len = 0;

	CHECK(q);
	roomy_ctx.limits = &roomy;
	init(&roomy_ctx, q);
	CHECK(http1_parse(q, out, len, &head_len) == HTTP1_DONE);
	CHECK(head_len == len);
	CHECK(q->head.n_headers == h->n_headers && q->head.body_mode == h->body_mode);
	CHECK(q->head.flags == h->flags);
	free(q);
}

static void check_rewrite(const struct ctx *c, const struct http1_head *h, const uint8_t *data,
			  size_t size)
{
	static const uint8_t secret[] = "REPLACED-secret_value-0123456789";
	struct http1_edit edits[2];
	size_t n = 0, out_size = 0, written = 0;
	struct http1_span name, value;
	uint32_t iter = 0;
	uint8_t *out;
	int r;

	for (uint32_t i = 0; i < h->n_headers; i++) {
		if (h->headers[i].id != HTTP1_FIELD_OTHER)
			continue;
		CHECK(http1_edit_header_value(h, i, secret, sizeof(secret) - 1, &edits[n]) == 0);
		n++;
		break;
	}
	if (!c->response && h->target_form == HTTP1_TARGET_ORIGIN &&
	    http1_query_next(h, data, &iter, &name, &value) == 1) {
		CHECK(span_in(name, h->head_len) && span_in(value, h->head_len));
		CHECK(http1_edit_span(value, secret, sizeof(secret) - 1, &edits[n]) == 0);
		n++;
	}
	r = http1_rewrite_size(h, data, size, edits, n, &out_size);
	CHECK(r == 0);
	out = malloc(out_size ? out_size : 1);
	CHECK(out);
	/* whole query values are replaced, so no '%' escape can be split */
	r = http1_rewrite(h, data, size, edits, n, out, out_size, &written);
	CHECK(r == 0 && written == out_size);
	check_reparse(c, h, out, written);
	free(out);
}

static void run(const struct ctx *c, const uint8_t *data, size_t size, size_t split)
{
	struct http1_parser *whole = malloc(sizeof(*whole));
	struct http1_parser *two = malloc(sizeof(*two));
	struct http1_parser *bytes = malloc(sizeof(*bytes));
	size_t hl_whole = 0, hl_two = 0, hl_bytes = 0;
	int r_whole, r_two, r_bytes;

	CHECK(whole && two && bytes);
	init(c, whole);
	r_whole = http1_parse(whole, data, size, &hl_whole);

	init(c, two);
	r_two = http1_parse(two, data, split, &hl_two);
	if (r_two == HTTP1_NEED_MORE)
		r_two = http1_parse(two, data, size, &hl_two);

	r_bytes = parse_bytewise(c, bytes, data, size, &hl_bytes);
	if (size == 0)
		r_bytes = HTTP1_NEED_MORE;

	CHECK(r_whole == r_two && r_whole == r_bytes);
	CHECK(r_whole == HTTP1_NEED_MORE || r_whole == HTTP1_DONE ||
	      (r_whole <= -HTTP1_E_NUL && r_whole > -HTTP1_E_MAX_));
	CHECK(http1_strerror(r_whole) != NULL);
	if (r_whole != HTTP1_DONE)
		goto out;
	CHECK(hl_whole == hl_two && hl_whole == hl_bytes);
	CHECK(same_head(&whole->head, &two->head) && same_head(&whole->head, &bytes->head));
	check_head(&whole->head, hl_whole, size);
	check_body(&whole->head, c, data + hl_whole, size - hl_whole);
	check_rewrite(c, &whole->head, data, size);
out:
	free(whole);
	free(two);
	free(bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum http1_method methods[] = {
		HTTP1_METHOD_GET, HTTP1_METHOD_HEAD, HTTP1_METHOD_CONNECT, HTTP1_METHOD_POST,
	};
	uint8_t sel = size > 0 ? data[0] : 0;
	size_t split = size > 0 ? (size_t)sel * 7919u % (size + 1) : 0;
	struct ctx c = { .limits = NULL };

	run(&c, data, size, split);
	c.limits = &small_limits;
	run(&c, data, size, split);

	c = (struct ctx){
		.response = true,
		.req_method = methods[sel & 3],
		.req_upgrade = sel & 4,
		.limits = (sel & 8) ? &small_limits : NULL,
	};
	run(&c, data, size, split);
	return 0;
}
