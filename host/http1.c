/*
 * http1 — message head parser.  See http1.h for the contract and the
 * strictness decisions.  Layout: line scanner, start lines, request-target
 * and authority, field lines, the per-field handlers (a dispatch table),
 * framing decisions at the end of the head, error table.
 *
 * Every byte of the caller's buffer is read through a struct cursor; spans
 * are cursor offsets, so they are inside buf by construction.
 */
#include "http1.h"

#include <errno.h>
#include <string.h>

#include "cursor.h"
#include "http1_internal.h"

enum parser_state {
	PARSE_START_LINE,
	PARSE_FIELDS,
	PARSE_DONE,
	PARSE_FAILED,
};

/* A cursor over buf[0, end) positioned at off. */
static void cursor_at(struct cursor *c, const uint8_t *buf, size_t end, size_t off)
{
	cursor_init(c, buf, end);
	c->off = off <= end ? off : end;
}

static struct http1_span span_of(size_t off, size_t len)
{
	return (struct http1_span){ .off = (uint32_t)off, .len = (uint32_t)len };
}

/* Consume the longest run of bytes satisfying pred; returns its length. */
static size_t take_while(struct cursor *c, bool (*pred)(uint8_t))
{
	size_t start = c->off;
	uint8_t b;

	while (cursor_peek_u8(c, &b) == 0 && pred(b))
		c->off++;
	return c->off - start;
}

static bool at_end(const struct cursor *c)
{
	return cursor_remaining(c) == 0;
}

/* Consume byte `want` if it is next. */
static bool take_byte(struct cursor *c, uint8_t want)
{
	uint8_t b;

	if (cursor_peek_u8(c, &b) != 0 || b != want)
		return false;
	c->off++;
	return true;
}

/* The bytes of a span, read through a cursor so the range is checked. */
static const uint8_t *span_bytes(const uint8_t *buf, size_t buf_len, struct http1_span s)
{
	struct cursor c;
	const uint8_t *bytes = NULL;

	cursor_at(&c, buf, buf_len, s.off);
	if (c.off != s.off || cursor_get_bytes(&c, s.len, &bytes) != 0)
		return NULL;
	return bytes;
}

/* buf[s, e) without OWS on either side; [s, e) is known to be inside buf. */
static struct http1_span trim_ows(const uint8_t *buf, size_t s, size_t e)
{
	const uint8_t *b = span_bytes(buf, e, span_of(s, e - s));
	size_t lo = 0, hi = e - s;

	while (lo < hi && http1__is_ows(b[lo]))
		lo++;
	while (hi > lo && http1__is_ows(b[hi - 1]))
		hi--;
	return span_of(s + lo, hi - lo);
}

/* ------------------------------------------------------------------ */
/* Limits and lifecycle                                                */

void http1_limits_default(struct http1_limits *ret_limits)
{
	*ret_limits = (struct http1_limits){
		.max_request_line = HTTP1_DEFAULT_MAX_REQUEST_LINE,
		.max_head = HTTP1_DEFAULT_MAX_HEAD,
		.max_headers = HTTP1_DEFAULT_MAX_HEADERS,
		.max_chunk_line = HTTP1_DEFAULT_MAX_CHUNK_LINE,
		.max_chunk_size = HTTP1_DEFAULT_MAX_CHUNK_SIZE,
		.max_body = HTTP1_DEFAULT_MAX_BODY,
	};
}

/*
 * max_head must leave room for a maximal start line plus its CRLF: then the
 * "line too long" check always fires before the "head too large" one, and
 * the outcome does not depend on how the bytes were split.
 */
int http1__limits_check(const struct http1_limits *l)
{
	if (l->max_request_line == 0 || l->max_head > HTTP1_HEAD_CAP ||
	    l->max_head < (uint64_t)l->max_request_line + 2 ||
	    l->max_headers == 0 || l->max_headers > HTTP1_HEADERS_CAP ||
	    l->max_chunk_line < 3 || l->max_body > HTTP1_DEFAULT_MAX_BODY)
		return -HTTP1_E_USAGE;
	return 0;
}

static int parser_init(struct http1_parser *p, const struct http1_limits *limits,
		       enum http1_kind kind)
{
	struct http1_limits l;
	int r;

	if (limits)
		l = *limits;
	else
		http1_limits_default(&l);
	if ((r = http1__limits_check(&l)) != 0)
		return r;
	memset(p, 0, sizeof(*p));
	p->limits = l;
	p->head.kind = kind;
	return 0;
}

int http1_parser_init_request(struct http1_parser *p, const struct http1_limits *limits)
{
	return parser_init(p, limits, HTTP1_REQUEST);
}

int http1_parser_init_response(struct http1_parser *p, const struct http1_limits *limits,
			       enum http1_method req_method, bool req_upgrade)
{
	int r;

	if ((r = parser_init(p, limits, HTTP1_RESPONSE)) != 0)
		return r;
	p->req_method = req_method;
	p->req_upgrade = req_upgrade;
	return 0;
}

void http1_parser_reset(struct http1_parser *p)
{
	struct http1_limits l = p->limits;
	enum http1_kind kind = p->head.kind;
	enum http1_method req_method = p->req_method;
	bool req_upgrade = p->req_upgrade;

	memset(p, 0, sizeof(*p));
	p->limits = l;
	p->head.kind = kind;
	p->req_method = req_method;
	p->req_upgrade = req_upgrade;
}

/* ------------------------------------------------------------------ */
/* Line scanner                                                        */

/*
 * Find the LF ending the line that starts at p->line_start, looking only
 * at bytes not examined before and never beyond the point where the line
 * or the head would be over its limit.
 *
 * max_line counts the line with its CRLF.  Returns 1 with *ret_lf, 0 when
 * more bytes are needed, or the limit error once it is certain that the
 * LF, wherever it comes, would be too far.
 */
static int find_line_end(struct http1_parser *p, const uint8_t *buf, size_t len,
			 size_t max_line, int line_err, size_t *ret_lf)
{
	size_t line_cap = p->line_start + max_line;     /* the LF must be before this */
	size_t head_cap = p->limits.max_head;           /* and before this */
	size_t bound = len;
	struct cursor c;
	size_t idx;

	if (bound > line_cap)
		bound = line_cap;
	if (bound > head_cap)
		bound = head_cap;
	if (p->scan < bound) {
		cursor_at(&c, buf, bound, p->scan);
		if (cursor_find(&c, '\n', SIZE_MAX, &idx) == 0) {
			*ret_lf = p->scan + idx;
			return 1;
		}
		p->scan = (uint32_t)bound;
	}
	if (len >= line_cap)
		return -line_err;
	if (len >= head_cap)
		return -HTTP1_E_HEAD_TOO_LARGE;
	return 0;
}

/*
 * RFC 9112 §2.2: "A recipient of such a bare CR MUST consider that element
 * to be invalid or replace each bare CR with SP" — we reject.  "a recipient
 * MAY recognize a single LF as a line terminator" — we do not.  NUL is
 * rejected everywhere in the head.  *ret_end is where the line's content
 * ends (at its CR).
 */
static int check_line(const uint8_t *buf, size_t start, size_t lf, size_t *ret_end)
{
	struct cursor c;
	size_t end, idx;
	uint8_t last;

	if (lf == start)
		return -HTTP1_E_BARE_LF;
	cursor_at(&c, buf, lf, lf - 1);
	if (cursor_get_u8(&c, &last) != 0)
		return -HTTP1_E_USAGE;
	end = last == '\r' ? lf - 1 : lf;
	cursor_at(&c, buf, end, start);
	if (cursor_find(&c, '\0', SIZE_MAX, &idx) == 0)
		return -HTTP1_E_NUL;
	if (cursor_find(&c, '\r', SIZE_MAX, &idx) == 0)
		return -HTTP1_E_BARE_CR;
	if (end == lf)
		return -HTTP1_E_BARE_LF;
	*ret_end = end;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Request-target and authority                                        */

int http1__check_target_bytes(const uint8_t *bytes, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t b = bytes[i];

		if (b < 0x21 || b > 0x7e || b == '#')
			return http1__bad_byte(b, HTTP1_E_TARGET);
		/* RFC 3986 §2.1: pct-encoded = "%" HEXDIG HEXDIG */
		if (b == '%' && (len - i < 3 || http1__hex_value(bytes[i + 1]) < 0 ||
				 http1__hex_value(bytes[i + 2]) < 0))
			return -HTTP1_E_TARGET;
	}
	return 0;
}

/*
 * RFC 3986 §3.2.2: reg-name = *( unreserved / pct-encoded / sub-delims ).
 * We accept unreserved only: DNS names (IDNA as A-labels) need nothing
 * else, and sub-delims (",", ";", "&", ...) or escapes in a host name are
 * where two parsers of it start to disagree.
 */
static bool is_reg_name_char(uint8_t c)
{
	return http1__is_alpha(c) || http1__is_digit(c) || c == '-' || c == '.' || c == '_' ||
	       c == '~';
}

static bool is_ip_literal_char(uint8_t c)
{
	return http1__hex_value(c) >= 0 || c == ':' || c == '.';
}

/* port = 1*5DIGIT <= 65535 (RFC 3986 allows empty; we do not). */
static int parse_port(struct cursor *c)
{
	uint32_t port = 0;
	size_t n = 0;
	uint8_t b;

	while (cursor_peek_u8(c, &b) == 0 && http1__is_digit(b) && n < 5) {
		port = port * 10 + (uint32_t)(b - '0');
		c->off++;
		n++;
	}
	if (n == 0 || port > 65535 || !at_end(c))
		return -1;
	return 0;
}

/*
 * authority = uri-host [ ":" port ] with uri-host = IP-literal / IPv4address
 * / reg-name (RFC 3986 §3.2; IPvFuture is not accepted).  RFC 9110 §4.2.4:
 * "a recipient SHOULD parse for userinfo and treat its presence as an
 * error" — '@' gives userinfo_err.  Returns 0 or -err / -userinfo_err.
 */
static int check_authority(const uint8_t *buf, struct http1_span s, bool port_required,
			   int err, int userinfo_err)
{
	struct cursor c;
	size_t idx;

	cursor_at(&c, buf, (size_t)s.off + s.len, s.off);
	if (cursor_find(&c, '@', SIZE_MAX, &idx) == 0)
		return -userinfo_err;
	if (take_byte(&c, '[')) {
		if (take_while(&c, is_ip_literal_char) == 0 || !take_byte(&c, ']'))
			return -err;
	} else if (take_while(&c, is_reg_name_char) == 0) {
		return -err;
	}
	if (take_byte(&c, ':'))
		return parse_port(&c) == 0 ? 0 : -err;
	if (!at_end(&c) || port_required)
		return -err;
	return 0;
}

/* path [ "?" query ] from c's position to its end. */
static void split_path_query(struct http1_head *h, struct cursor *c)
{
	size_t start = c->off, idx;

	if (cursor_find(c, '?', SIZE_MAX, &idx) != 0) {
		h->path = span_of(start, cursor_remaining(c));
		return;
	}
	h->path = span_of(start, idx);
	h->query = span_of(start + idx + 1, cursor_remaining(c) - idx - 1);
	h->flags |= HTTP1_F_HAS_QUERY;
}

static bool is_authority_end(uint8_t c)
{
	return c != '/' && c != '?';
}

/*
 * RFC 9112 §3.2.2: absolute-form = absolute-URI.  Only http and https (RFC
 * 9110 §4.2.1: "A recipient that processes such a URI reference MUST reject
 * it as invalid" when the host is empty).
 */
static int parse_absolute_form(struct http1_head *h, const uint8_t *buf, struct cursor *c)
{
	static const char *const schemes[] = { "http://", "https://" };
	const uint8_t *p;
	int r;

	for (size_t i = 0; i < 2; i++) {
		size_t n = strlen(schemes[i]), start;
		struct cursor probe = *c;

		if (cursor_get_bytes(&probe, n, &p) != 0 || !http1__eq_lower(p, n, schemes[i]))
			continue;
		start = probe.off;
		h->authority = span_of(start, take_while(&probe, is_authority_end));
		r = check_authority(buf, h->authority, false, HTTP1_E_TARGET, HTTP1_E_USERINFO);
		if (r != 0)
			return r;
		h->target_form = HTTP1_TARGET_ABSOLUTE;
		split_path_query(h, &probe);
		return 0;
	}
	return -HTTP1_E_TARGET;
}

/*
 * RFC 9112 §3.2: origin-form / absolute-form / authority-form /
 * asterisk-form.  §3.2.3: "The authority-form of request-target is only
 * used for CONNECT requests."  §3.2.4: "The asterisk-form of
 * request-target is only used for a server-wide OPTIONS request."
 */
static int parse_target(struct http1_head *h, const uint8_t *buf, struct http1_span t)
{
	const uint8_t *bytes = span_bytes(buf, (size_t)t.off + t.len, t);
	bool is_connect = h->method == HTTP1_METHOD_CONNECT;
	struct cursor c;
	int r;

	if (!bytes || (r = http1__check_target_bytes(bytes, t.len)) != 0)
		return bytes ? r : -HTTP1_E_TARGET;
	h->target = t;
	cursor_at(&c, buf, (size_t)t.off + t.len, t.off);
	if (check_authority(buf, t, true, HTTP1_E_TARGET, HTTP1_E_USERINFO) == 0) {
		if (!is_connect)
			return -HTTP1_E_TARGET_FORM;
		h->target_form = HTTP1_TARGET_AUTHORITY;
		h->authority = t;
		return 0;
	}
	if (is_connect)
		return check_authority(buf, t, true, HTTP1_E_TARGET_FORM, HTTP1_E_USERINFO);
	if (t.len == 1 && bytes[0] == '*') {
		if (h->method != HTTP1_METHOD_OPTIONS)
			return -HTTP1_E_TARGET_FORM;
		h->target_form = HTTP1_TARGET_ASTERISK;
		return 0;
	}
	if (bytes[0] == '/') {
		h->target_form = HTTP1_TARGET_ORIGIN;
		split_path_query(h, &c);
		return 0;
	}
	return parse_absolute_form(h, buf, &c);
}

/* ------------------------------------------------------------------ */
/* Start lines                                                         */

static const struct {
	const char *name;
	enum http1_method method;
} methods[] = {
	{ "GET", HTTP1_METHOD_GET },         { "HEAD", HTTP1_METHOD_HEAD },
	{ "POST", HTTP1_METHOD_POST },       { "PUT", HTTP1_METHOD_PUT },
	{ "DELETE", HTTP1_METHOD_DELETE },   { "CONNECT", HTTP1_METHOD_CONNECT },
	{ "OPTIONS", HTTP1_METHOD_OPTIONS }, { "TRACE", HTTP1_METHOD_TRACE },
	{ "PATCH", HTTP1_METHOD_PATCH },
};

/* RFC 9110 §9.1: "The method token is case-sensitive". */
static enum http1_method method_of(const uint8_t *bytes, size_t len)
{
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strlen(methods[i].name) == len && memcmp(bytes, methods[i].name, len) == 0)
			return methods[i].method;
	return HTTP1_METHOD_OTHER;
}

static bool is_not_sp(uint8_t c)
{
	return c != ' ';
}

/*
 * RFC 9112 §2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT, HTTP-name =
 * %s"HTTP" (case-sensitive).  Consumes exactly those 8 bytes.  Returns the
 * minor version, -HTTP1_E_VERSION for a well-formed version other than 1.0
 * and 1.1, -HTTP1_E_START_LINE otherwise.
 */
static int parse_version(struct cursor *c)
{
	const uint8_t *v;

	if (cursor_get_bytes(c, 8, &v) != 0 || memcmp(v, "HTTP/", 5) != 0 ||
	    !http1__is_digit(v[5]) || v[6] != '.' || !http1__is_digit(v[7]))
		return -HTTP1_E_START_LINE;
	if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
		return -HTTP1_E_VERSION;
	return v[7] - '0';
}

/*
 * RFC 9112 §3: request-line = method SP request-target SP HTTP-version.
 * "the request-line grammar rule requires that each of the component
 * elements be separated by a single SP octet"; we do not use the MAY that
 * follows (parsing on whitespace-delimited word boundaries).
 */
static int parse_request_line(struct http1_head *h, const uint8_t *buf, size_t start, size_t end)
{
	struct http1_span target;
	const uint8_t *m;
	struct cursor c;
	int r;

	cursor_at(&c, buf, end, start);
	h->method_name = span_of(start, take_while(&c, http1__is_tchar));
	if (!take_byte(&c, ' ') || h->method_name.len == 0) {
		uint8_t b;
		if (cursor_peek_u8(&c, &b) != 0 || http1__is_ows(b) || h->method_name.len == 0)
			return -HTTP1_E_START_LINE;
		return http1__bad_byte(b, HTTP1_E_METHOD);
	}
	m = span_bytes(buf, end, h->method_name);
	h->method = method_of(m, h->method_name.len);

	target.off = (uint32_t)c.off;
	target.len = (uint32_t)take_while(&c, is_not_sp);
	if (target.len == 0 || !take_byte(&c, ' '))
		return -HTTP1_E_START_LINE;
	if ((r = parse_target(h, buf, target)) != 0)
		return r;

	if ((r = parse_version(&c)) < 0)
		return r;
	if (!at_end(&c))
		return -HTTP1_E_START_LINE;
	h->version_minor = (uint8_t)r;
	return 0;
}

static bool is_reason_byte(uint8_t c)
{
	/* reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ) */
	return http1__is_field_byte(c);
}

/*
 * RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
 * with status-code = 3DIGIT; RFC 9110 §15: "All valid status codes are
 * within the range of 100 to 599, inclusive."  The SP before an empty
 * reason may be missing (see http1.h).
 */
static int parse_status_line(struct http1_head *h, const uint8_t *buf, size_t start, size_t end)
{
	const uint8_t *d;
	struct cursor c;
	uint8_t b;
	int r;

	cursor_at(&c, buf, end, start);
	if ((r = parse_version(&c)) < 0)
		return r;
	h->version_minor = (uint8_t)r;
	if (!take_byte(&c, ' '))
		return -HTTP1_E_START_LINE;
	if (cursor_get_bytes(&c, 3, &d) != 0 || !http1__is_digit(d[0]) ||
	    !http1__is_digit(d[1]) || !http1__is_digit(d[2]))
		return -HTTP1_E_STATUS;
	h->status = (uint16_t)((d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0'));
	if (h->status < 100 || h->status > 599)
		return -HTTP1_E_STATUS;
	h->reason = span_of(c.off, 0);
	if (at_end(&c))
		return 0;
	if (cursor_peek_u8(&c, &b) == 0 && http1__is_digit(b))
		return -HTTP1_E_STATUS;
	if (!take_byte(&c, ' '))
		return -HTTP1_E_START_LINE;
	h->reason.off = (uint32_t)c.off;
	h->reason.len = (uint32_t)take_while(&c, is_reason_byte);
	if (!at_end(&c))
		return -HTTP1_E_REASON;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Field handlers: one per field the parser interprets                 */

static int on_host(struct http1_parser *p, const uint8_t *buf, const struct http1_header *f)
{
	struct http1_head *h = &p->head;

	/* RFC 9112 §3.2: "... more than one Host header field line or a Host
	 * header field with an invalid field value" → 400. */
	if (++p->n_host > 1)
		return -HTTP1_E_HOST_DUPLICATE;
	if (f->value.len > 0) {
		int r = check_authority(buf, f->value, false, HTTP1_E_HOST_INVALID,
					HTTP1_E_HOST_INVALID);
		if (r != 0)
			return r;
	}
	h->host = f->value;
	h->flags |= HTTP1_F_HAS_HOST;
	return 0;
}

/*
 * RFC 9110 §8.6: Content-Length = 1*DIGIT.  For a list of identical values
 * "a recipient MAY either reject the message as invalid or replace that
 * invalid field value with a single instance of the decimal value" — we
 * reject, lists and repeated field lines alike.
 */
static int on_content_length(struct http1_parser *p, const uint8_t *buf,
			     const struct http1_header *f)
{
	uint64_t v = 0;
	struct cursor c;
	size_t idx;
	uint8_t b;

	if (++p->n_cl > 1)
		return -HTTP1_E_CL_DUPLICATE;
	cursor_at(&c, buf, (size_t)f->value.off + f->value.len, f->value.off);
	if (cursor_find(&c, ',', SIZE_MAX, &idx) == 0)
		return -HTTP1_E_CL_DUPLICATE;
	if (at_end(&c))
		return -HTTP1_E_CL_INVALID;
	while (cursor_get_u8(&c, &b) == 0) {
		if (!http1__is_digit(b))
			return -HTTP1_E_CL_INVALID;
		if (v > (HTTP1_DEFAULT_MAX_BODY - (uint64_t)(b - '0')) / 10)
			return -HTTP1_E_CL_INVALID;
		v = v * 10 + (uint64_t)(b - '0');
	}
	p->head.content_length = v;
	return 0;
}

/*
 * RFC 9112 §6.1: Transfer-Encoding = #transfer-coding.  Each element must
 * be a bare token.  "A sender MUST NOT apply the chunked coding more than
 * once to a message body"; chunked must be last (§6.3); we implement no
 * other coding: "A server that receives a request message with a transfer
 * coding it does not understand SHOULD respond with 501 (Not Implemented)."
 * Elements of several field lines form one list, in order.
 */
static int te_element(struct http1_parser *p, const uint8_t *bytes, size_t len)
{
	if (len == 0)
		return -HTTP1_E_TE_INVALID;
	for (size_t i = 0; i < len; i++)
		if (!http1__is_tchar(bytes[i]))
			return -HTTP1_E_TE_INVALID;
	if (http1__eq_lower(bytes, len, "chunked")) {
		if (p->te_chunked)
			return -HTTP1_E_TE_CHUNKED_TWICE;
		p->te_chunked = true;
		return 0;
	}
	return p->te_chunked ? -HTTP1_E_TE_CHUNKED_NOT_LAST : -HTTP1_E_TE_UNKNOWN;
}

/* Walk a comma list, calling fn on each OWS-trimmed element (empty ones too). */
static int for_each_element(struct http1_parser *p, const uint8_t *buf, struct http1_span v,
			    int (*fn)(struct http1_parser *, const uint8_t *, size_t))
{
	size_t end = (size_t)v.off + v.len, pos = v.off;

	for (;;) {
		struct cursor c;
		struct http1_span elem;
		size_t idx, stop;
		const uint8_t *bytes;
		int r;

		cursor_at(&c, buf, end, pos);
		stop = cursor_find(&c, ',', SIZE_MAX, &idx) == 0 ? pos + idx : end;
		elem = trim_ows(buf, pos, stop);
		bytes = span_bytes(buf, end, elem);
		if ((r = fn(p, bytes, elem.len)) != 0)
			return r;
		if (stop == end)
			return 0;
		pos = stop + 1;
	}
}

static int on_transfer_encoding(struct http1_parser *p, const uint8_t *buf,
				const struct http1_header *f)
{
	p->n_te++;
	return for_each_element(p, buf, f->value, te_element);
}

/* RFC 9110 §7.6.1: "Connection options are case-insensitive." */
static int connection_option(struct http1_parser *p, const uint8_t *bytes, size_t len)
{
	if (http1__eq_lower(bytes, len, "close"))
		p->conn_close = true;
	else if (http1__eq_lower(bytes, len, "keep-alive"))
		p->conn_keep_alive = true;
	else if (http1__eq_lower(bytes, len, "upgrade"))
		p->conn_upgrade = true;
	return 0;
}

static int on_connection(struct http1_parser *p, const uint8_t *buf,
			 const struct http1_header *f)
{
	return for_each_element(p, buf, f->value, connection_option);
}

/* RFC 9110 §10.1.1: "The Expect field value is case-insensitive." */
static int expectation(struct http1_parser *p, const uint8_t *bytes, size_t len)
{
	if (len == 0)
		return 0;
	if (http1__eq_lower(bytes, len, "100-continue"))
		p->head.flags |= HTTP1_F_EXPECT_CONTINUE;
	else
		p->head.flags |= HTTP1_F_EXPECT_OTHER;
	return 0;
}

static int on_expect(struct http1_parser *p, const uint8_t *buf, const struct http1_header *f)
{
	return for_each_element(p, buf, f->value, expectation);
}

static int on_upgrade(struct http1_parser *p, const uint8_t *buf, const struct http1_header *f)
{
	(void)buf;
	if (++p->n_upgrade > 1)
		return -HTTP1_E_UPGRADE_DUPLICATE;
	p->head.upgrade = f->value;
	return 0;
}

typedef int (*field_handler)(struct http1_parser *p, const uint8_t *buf,
			     const struct http1_header *f);

enum {
	REQ = 1u << HTTP1_REQUEST,
	RESP = 1u << HTTP1_RESPONSE,
};

static const struct {
	const char *name;            /* lowercase */
	enum http1_field_id id;
	unsigned kinds;              /* messages the handler runs for */
	field_handler handler;
} field_table[] = {
	{ "host",              HTTP1_FIELD_HOST,              REQ,        on_host },
	{ "content-length",    HTTP1_FIELD_CONTENT_LENGTH,    REQ | RESP, on_content_length },
	{ "transfer-encoding", HTTP1_FIELD_TRANSFER_ENCODING, REQ | RESP, on_transfer_encoding },
	{ "connection",        HTTP1_FIELD_CONNECTION,        REQ | RESP, on_connection },
	{ "expect",            HTTP1_FIELD_EXPECT,            REQ,        on_expect },
	{ "upgrade",           HTTP1_FIELD_UPGRADE,           REQ | RESP, on_upgrade },
};

/* ------------------------------------------------------------------ */
/* Field lines                                                         */

/*
 * RFC 9112 §5: field-line = field-name ":" OWS field-value OWS.
 * §5.1: "No whitespace is allowed between the field name and colon. ... A
 * server MUST reject, with a response status code of 400 (Bad Request), any
 * received request message that contains whitespace between a header field
 * name and colon."  We reject it in responses too.
 */
static int parse_field_line(struct http1_header *f, const uint8_t *buf, size_t start, size_t end)
{
	struct cursor c;
	size_t v_start;
	uint8_t b = 0;

	cursor_at(&c, buf, end, start);
	f->name = span_of(start, take_while(&c, http1__is_tchar));
	if (!take_byte(&c, ':')) {
		if (cursor_peek_u8(&c, &b) == 0 && http1__is_ows(b))
			return -HTTP1_E_SPACE_BEFORE_COLON;
		return -HTTP1_E_FIELD_NAME;
	}
	if (f->name.len == 0)
		return -HTTP1_E_EMPTY_FIELD_NAME;
	v_start = c.off;
	take_while(&c, http1__is_field_byte);
	if (!at_end(&c))
		return -HTTP1_E_FIELD_VALUE;
	f->value = trim_ows(buf, v_start, end);
	return 0;
}

static int dispatch_field(struct http1_parser *p, const uint8_t *buf, struct http1_header *f)
{
	const uint8_t *name = span_bytes(buf, (size_t)f->name.off + f->name.len, f->name);

	f->id = HTTP1_FIELD_OTHER;
	for (size_t i = 0; i < sizeof(field_table) / sizeof(field_table[0]); i++) {
		if (!http1__eq_lower(name, f->name.len, field_table[i].name))
			continue;
		f->id = field_table[i].id;
		if (!(field_table[i].kinds & (1u << p->head.kind)))
			return 0;
		return field_table[i].handler(p, buf, f);
	}
	return 0;
}

static int on_field_line(struct http1_parser *p, const uint8_t *buf, size_t start, size_t end)
{
	const uint8_t *first = span_bytes(buf, end, span_of(start, 1));
	struct http1_head *h = &p->head;
	struct http1_header *f;
	int r;

	/* RFC 9112 §5.2: "A server that receives an obs-fold in a request
	 * message ... MUST either reject the message by sending a 400 (Bad
	 * Request)" — and §2.2 for whitespace before the first field line.  We
	 * reject both, in responses too. */
	if (!first || http1__is_ows(*first))
		return -HTTP1_E_OBS_FOLD;
	if (h->n_headers >= p->limits.max_headers)
		return -HTTP1_E_TOO_MANY_HEADERS;
	f = &h->headers[h->n_headers];
	if ((r = parse_field_line(f, buf, start, end)) != 0 ||
	    (r = dispatch_field(p, buf, f)) != 0)
		return r;
	h->n_headers++;
	return 0;
}

/* ------------------------------------------------------------------ */
/* End of the head: framing and derived flags                          */

/*
 * RFC 9112 §9.3: "If the "close" connection option is present, the
 * connection will not persist after the current response; else, If the
 * received protocol is HTTP/1.1 (or later), the connection will persist
 * ...; else, If the received protocol is HTTP/1.0, the "keep-alive"
 * connection option is present, ... the connection will persist".
 */
static bool keep_alive(const struct http1_parser *p)
{
	if (p->conn_close)
		return false;
	return p->head.version_minor == 1 || p->conn_keep_alive;
}

/* Checks shared by requests and responses. */
static int check_framing_fields(const struct http1_parser *p)
{
	/* RFC 9112 §6.1: "A server or client that receives an HTTP/1.0 message
	 * containing a Transfer-Encoding header field MUST treat the message as
	 * if the framing is faulty" */
	if (p->n_te > 0 && p->head.version_minor == 0)
		return -HTTP1_E_TE_HTTP10;
	/* RFC 9112 §6.3: "Such a message might indicate an attempt to perform
	 * request smuggling ... and ought to be handled as an error." */
	if (p->n_te > 0 && p->n_cl > 0)
		return -HTTP1_E_CL_AND_TE;
	return 0;
}

static bool spans_equal_nocase(const uint8_t *buf, size_t len, struct http1_span a,
			       struct http1_span b)
{
	const uint8_t *x = span_bytes(buf, len, a), *y = span_bytes(buf, len, b);

	if (!x || !y || a.len != b.len)
		return false;
	for (uint32_t i = 0; i < a.len; i++)
		if (http1__lower(x[i]) != http1__lower(y[i]))
			return false;
	return true;
}

static int finish_request(struct http1_parser *p, const uint8_t *buf)
{
	struct http1_head *h = &p->head;
	bool http11 = h->version_minor == 1;
	int r;

	if ((r = check_framing_fields(p)) != 0)
		return r;
	/* RFC 9110 §9.3.6: "A CONNECT request message does not have content." */
	if (h->method == HTTP1_METHOD_CONNECT && (p->n_te > 0 || p->n_cl > 0))
		return -HTTP1_E_CONNECT_BODY;
	/* RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
	 * code to any HTTP/1.1 request message that lacks a Host header field" */
	if (http11 && p->n_host == 0)
		return -HTTP1_E_HOST_MISSING;
	if (h->target_form == HTTP1_TARGET_ABSOLUTE || h->target_form == HTTP1_TARGET_AUTHORITY) {
		if (p->n_host > 0 && !spans_equal_nocase(buf, p->line_start, h->host, h->authority))
			return -HTTP1_E_HOST_MISMATCH;
	} else {
		h->authority = h->host;
	}

	if (p->n_te > 0) {
		h->body_mode = HTTP1_BODY_CHUNKED;
	} else if (p->n_cl > 0) {
		if (h->content_length > p->limits.max_body)
			return -HTTP1_E_BODY_TOO_LARGE;
		h->body_mode = HTTP1_BODY_LENGTH;
	} else {
		h->body_mode = HTTP1_BODY_NONE;
	}

	if (keep_alive(p))
		h->flags |= HTTP1_F_KEEP_ALIVE;
	/* RFC 9110 §10.1.1: "A server that receives a 100-continue expectation
	 * in an HTTP/1.0 request MUST ignore that expectation."  §7.8: "A
	 * server MUST ignore an Upgrade header field that is received in an
	 * HTTP/1.0 request." */
	if (!http11)
		h->flags &= ~(uint32_t)(HTTP1_F_EXPECT_CONTINUE | HTTP1_F_EXPECT_OTHER);
	if (http11 && p->conn_upgrade && p->n_upgrade > 0)
		h->flags |= HTTP1_F_UPGRADE;
	else
		h->upgrade = span_of(0, 0);
	return 0;
}

/* RFC 9112 §6.3, items 1-2 and 4-8, in order; TE that is not chunked-last
 * never gets here (rejected in on_transfer_encoding). */
static int response_body_mode(struct http1_parser *p)
{
	struct http1_head *h = &p->head;
	uint16_t s = h->status;

	if (s == 101)
		return HTTP1_BODY_TUNNEL;
	if ((s >= 100 && s < 200) || s == 204 || s == 304 || p->req_method == HTTP1_METHOD_HEAD)
		return HTTP1_BODY_NONE;
	/* "Any 2xx (Successful) response to a CONNECT request implies that the
	 * connection will become a tunnel immediately after the empty line" */
	if (p->req_method == HTTP1_METHOD_CONNECT && s >= 200 && s < 300)
		return HTTP1_BODY_TUNNEL;
	if (p->n_te > 0)
		return HTTP1_BODY_CHUNKED;
	if (p->n_cl > 0)
		return h->content_length > p->limits.max_body ? -HTTP1_E_BODY_TOO_LARGE
							      : HTTP1_BODY_LENGTH;
	return HTTP1_BODY_UNTIL_CLOSE;
}

static int finish_response(struct http1_parser *p)
{
	struct http1_head *h = &p->head;
	uint16_t s = h->status;
	int r;

	if ((r = check_framing_fields(p)) != 0)
		return r;
	/* RFC 9110 §8.6 / RFC 9112 §6.1: "A server MUST NOT send a
	 * Content-Length [resp. Transfer-Encoding] header field in any response
	 * with a status code of 1xx (Informational) or 204 (No Content)." */
	if (s < 200 && (p->n_te > 0 || p->n_cl > 0))
		return -HTTP1_E_FRAMING_NOT_ALLOWED;
	if (s == 204 && p->n_te > 0)
		return -HTTP1_E_FRAMING_NOT_ALLOWED;
	/* RFC 9110 §15.2.2: "The server MUST generate an Upgrade header field in
	 * the response" — and we only follow it if we asked. */
	if (s == 101 && (!p->req_upgrade || p->n_upgrade == 0))
		return -HTTP1_E_UNEXPECTED_101;
	if (s != 101)
		h->upgrade = span_of(0, 0);
	if ((r = response_body_mode(p)) < 0)
		return r;
	h->body_mode = (enum http1_body_mode)r;
	if (s < 200 && s != 101)
		h->flags |= HTTP1_F_INTERIM;
	if (keep_alive(p) && h->body_mode != HTTP1_BODY_UNTIL_CLOSE &&
	    h->body_mode != HTTP1_BODY_TUNNEL)
		h->flags |= HTTP1_F_KEEP_ALIVE;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Driver                                                              */

static int on_line(struct http1_parser *p, const uint8_t *buf, size_t start, size_t end)
{
	int r;

	if (p->state == PARSE_START_LINE) {
		/* RFC 9112 §2.2 allows ignoring leading empty lines; we reject. */
		if (end == start)
			return -HTTP1_E_LEADING_EMPTY_LINE;
		r = p->head.kind == HTTP1_REQUEST ? parse_request_line(&p->head, buf, start, end)
						  : parse_status_line(&p->head, buf, start, end);
		if (r == 0)
			p->state = PARSE_FIELDS;
		return r;
	}
	if (end == start) {
		r = p->head.kind == HTTP1_REQUEST ? finish_request(p, buf) : finish_response(p);
		if (r == 0)
			p->state = PARSE_DONE;
		return r;
	}
	return on_field_line(p, buf, start, end);
}

static int parse_lines(struct http1_parser *p, const uint8_t *buf, size_t len)
{
	while (p->state != PARSE_DONE) {
		bool start_line = p->state == PARSE_START_LINE;
		size_t max_line = start_line ? (size_t)p->limits.max_request_line + 2 : SIZE_MAX / 2;
		int line_err = p->head.kind == HTTP1_REQUEST ? HTTP1_E_URI_TOO_LONG
							     : HTTP1_E_HEAD_TOO_LARGE;
		size_t lf = 0, end = 0;
		int r;

		if ((r = find_line_end(p, buf, len, max_line, line_err, &lf)) <= 0)
			return r;
		if ((r = check_line(buf, p->line_start, lf, &end)) != 0 ||
		    (r = on_line(p, buf, p->line_start, end)) != 0)
			return r;
		p->line_start = (uint32_t)(lf + 1);
		p->scan = p->line_start;
	}
	p->head.head_len = p->line_start;
	return HTTP1_DONE;
}

int http1_parse(struct http1_parser *p, const uint8_t *buf, size_t len, size_t *ret_head_len)
{
	int r;

	if (p->state == PARSE_FAILED)
		return -p->error;
	if (p->state != PARSE_DONE) {
		if (len < p->scan || (!buf && len > 0))
			r = -HTTP1_E_USAGE;
		else
			r = parse_lines(p, buf, len);
		if (r < 0) {
			p->state = PARSE_FAILED;
			p->error = -r;
			return r;
		}
		if (r == HTTP1_NEED_MORE)
			return r;
	}
	if (ret_head_len)
		*ret_head_len = p->head.head_len;
	return HTTP1_DONE;
}

/* ------------------------------------------------------------------ */
/* Query iteration                                                     */

int http1_query_next(const struct http1_head *h, const uint8_t *buf, uint32_t *iter,
		     struct http1_span *ret_name, struct http1_span *ret_value)
{
	size_t q_end = (size_t)h->query.off + h->query.len;
	size_t pos, stop, eq, idx;
	struct cursor c;

	if (!(h->flags & HTTP1_F_HAS_QUERY) || *iter >= h->query.len)
		return 0;
	pos = (size_t)h->query.off + *iter;
	cursor_at(&c, buf, q_end, pos);
	while (take_byte(&c, '&'))
		;
	pos = c.off;
	if (at_end(&c)) {
		*iter = h->query.len;
		return 0;
	}
	stop = cursor_find(&c, '&', SIZE_MAX, &idx) == 0 ? pos + idx : q_end;
	cursor_at(&c, buf, stop, pos);
	eq = cursor_find(&c, '=', SIZE_MAX, &idx) == 0 ? pos + idx : stop;
	*ret_name = span_of(pos, eq - pos);
	*ret_value = eq < stop ? span_of(eq + 1, stop - eq - 1) : span_of(stop, 0);
	*iter = (uint32_t)(stop - h->query.off);
	return 1;
}

/* ------------------------------------------------------------------ */
/* Errors                                                              */

static const struct {
	int status;
	const char *text;
} errors[HTTP1_E_MAX_ - HTTP1_E_NUL] = {
#define E(code, st, txt) [HTTP1_E_##code - HTTP1_E_NUL] = { st, txt }
	E(NUL, 400, "NUL byte in message"),
	E(BARE_CR, 400, "CR not followed by LF"),
	E(BARE_LF, 400, "line ends in LF without CR"),
	E(LEADING_EMPTY_LINE, 400, "empty line before the start line"),
	E(START_LINE, 400, "malformed start line"),
	E(METHOD, 400, "method is not a token"),
	E(TARGET, 400, "invalid request-target"),
	E(TARGET_FORM, 400, "request-target form not allowed with this method"),
	E(USERINFO, 400, "userinfo in request-target"),
	E(VERSION, 505, "HTTP version not supported"),
	E(STATUS, 400, "invalid status code"),
	E(REASON, 400, "invalid reason phrase"),
	E(URI_TOO_LONG, 414, "request line too long"),
	E(HEAD_TOO_LARGE, 431, "header section too large"),
	E(TOO_MANY_HEADERS, 431, "too many header fields"),
	E(OBS_FOLD, 400, "obsolete line folding"),
	E(FIELD_NAME, 400, "invalid field name"),
	E(EMPTY_FIELD_NAME, 400, "empty field name"),
	E(SPACE_BEFORE_COLON, 400, "whitespace between field name and colon"),
	E(FIELD_VALUE, 400, "control character in field value"),
	E(HOST_MISSING, 400, "missing Host"),
	E(HOST_DUPLICATE, 400, "more than one Host"),
	E(HOST_INVALID, 400, "invalid Host"),
	E(HOST_MISMATCH, 400, "Host differs from the request-target authority"),
	E(CL_INVALID, 400, "invalid Content-Length"),
	E(CL_DUPLICATE, 400, "more than one Content-Length"),
	E(CL_AND_TE, 400, "both Content-Length and Transfer-Encoding"),
	E(TE_INVALID, 400, "malformed Transfer-Encoding"),
	E(TE_UNKNOWN, 501, "transfer coding not implemented"),
	E(TE_CHUNKED_NOT_LAST, 400, "chunked is not the final transfer coding"),
	E(TE_CHUNKED_TWICE, 400, "chunked applied more than once"),
	E(TE_HTTP10, 400, "Transfer-Encoding in an HTTP/1.0 message"),
	E(CONNECT_BODY, 400, "CONNECT request with content framing"),
	E(UPGRADE_DUPLICATE, 400, "more than one Upgrade"),
	E(FRAMING_NOT_ALLOWED, 400, "content framing in a response without content"),
	E(UNEXPECTED_101, 400, "unexpected 101 Switching Protocols"),
	E(BODY_TOO_LARGE, 413, "content too large"),
	E(CHUNK_SIZE, 400, "invalid chunk size"),
	E(CHUNK_TOO_LARGE, 413, "chunk too large"),
	E(CHUNK_EXT, 400, "invalid chunk extension"),
	E(CHUNK_LINE_TOO_LONG, 400, "chunk size line too long"),
	E(CHUNK_CRLF, 400, "chunk data not followed by CRLF"),
	E(TRAILER_FORBIDDEN, 400, "forbidden field in trailer section"),
	E(TRUNCATED, 400, "connection closed inside the content"),
	E(EDIT_RANGE, 500, "edit outside an editable span"),
	E(EDIT_OVERLAP, 500, "overlapping edits"),
	E(EDIT_INJECTION, 500, "replacement contains a forbidden byte"),
	E(EDIT_COUNT, 500, "too many edits"),
	E(NOSPACE, 500, "output buffer too small"),
	E(USAGE, 500, "API misuse"),
#undef E
};

static int error_index(int code)
{
	if (code < 0)
		code = -code;
	if (code < HTTP1_E_NUL || code >= HTTP1_E_MAX_)
		return -1;
	return code - HTTP1_E_NUL;
}

int http1_error_status(int code)
{
	int i = error_index(code);

	return i < 0 ? 500 : errors[i].status;
}

const char *http1_strerror(int code)
{
	int i = error_index(code);

	return i < 0 ? "unknown http1 error" : errors[i].text;
}
