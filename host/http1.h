/*
 * http1 — strict HTTP/1.1 message head parser and body decoder (RFC 9112,
 * RFC 9110).  It faces hostile guests (requests) and hostile upstreams
 * (responses) and fails closed: anything the grammar does not allow, and a
 * few things it allows but that are known request-smuggling vectors, are
 * errors.
 *
 * Contract:
 *   - Pure functions over caller-owned buffers: no I/O, no allocation, no
 *     logging.  Not thread-safe; one parser per message stream.
 *   - Head parsing is incremental.  The caller keeps the bytes of the head
 *     in one buffer, appends to it as they arrive and calls http1_parse()
 *     again with the whole buffer (it may move between calls; the bytes
 *     already given must not change).  Every line is examined once: the
 *     parser remembers where it stopped looking for the next LF.
 *   - http1_parse() returns HTTP1_NEED_MORE, HTTP1_DONE (with the length of
 *     the head in *ret_head_len; bytes after it are body or the next
 *     message and are left alone) or a negative -HTTP1_E_* code.  Errors
 *     are sticky: a failed parser keeps failing until it is reset.
 *   - All spans in struct http1_head are offsets into that buffer, valid
 *     for as long as the caller keeps the head bytes where they are.
 *   - -HTTP1_E_* values are disjoint from errno values, so a caller can
 *     pass either through one int.  http1_error_status() gives the status
 *     to answer a client with when its request fails (a response that
 *     fails to parse is the upstream's fault: answer 502, not this);
 *     http1_strerror() a fixed text (never peer bytes, so it is safe to
 *     log).
 *
 * Strictness decisions (each is a deliberate choice; tests pin them):
 *   - Line endings: every line of the head (and every chunked framing and
 *     trailer line) ends in CRLF.  A bare LF line ending is rejected
 *     (RFC 9112 §2.2 allows accepting it; we do not), as is a CR that is not
 *     followed by LF, and a NUL byte anywhere.
 *   - Empty lines before the request/status line are rejected (RFC 9112
 *     §2.2 says a server SHOULD ignore at least one; a stray CRLF between
 *     pipelined messages is exactly where two parsers can disagree).
 *   - Start line: exactly one SP between its parts.  Method and field names
 *     are tokens.  Only HTTP/1.0 and HTTP/1.1 are accepted: any other
 *     well-formed HTTP-version is HTTP1_E_VERSION (505); a version field
 *     that is not an HTTP-version at all is a malformed start line (400).
 *   - request-target: visible ASCII only (no CTL, SP, DEL, NUL or bytes
 *     >= 0x80), no '#', '%' must start a valid pct-encoding.  Other
 *     characters RFC 3986 does not allow unencoded ("|", "{", "[", ...)
 *     are accepted, as clients send them and they do not affect framing.
 *     Forms: origin-form; absolute-form only with an http/https scheme, a
 *     non-empty host and no userinfo; authority-form only (and always)
 *     with CONNECT; asterisk-form only with OPTIONS.
 *   - Status line: 3-digit code in 100..599; the reason phrase may be
 *     empty, and the SP before an empty reason may be missing (the one
 *     leniency: real servers omit it and it cannot affect framing).
 *   - Fields: no obs-fold (a line starting with SP/HTAB, including right
 *     after the start line), no whitespace between name and colon, no empty
 *     name, values without CTL (HTAB allowed) or DEL; obs-text allowed.
 *   - Host: exactly one in an HTTP/1.1 request, at most one in HTTP/1.0,
 *     with a valid uri-host [":" port] value: no userinfo, a port is 1-5
 *     digits <= 65535, a reg-name is unreserved characters only (RFC 3986
 *     also allows sub-delims and pct-encoding, which no DNS name needs),
 *     an IP-literal is "[" HEXDIG / ":" / "." "]".  The same rules apply
 *     to the authority of absolute-form and authority-form targets.  With
 *     either form a Host value must equal the target's authority (ASCII
 *     case-insensitive): RFC 9112 §3.2.2 lets a proxy ignore Host, we
 *     refuse the ambiguity instead.  Host in a response is not interpreted.
 *   - Content-Length: exactly one field line whose value is 1*DIGIT
 *     <= INT64_MAX.  Two field lines (even equal) and lists ("5, 5") are
 *     rejected although RFC 9110 §8.6 allows collapsing identical values.
 *   - Transfer-Encoding: the only coding supported is chunked, and it must
 *     be present exactly once and last.  Other codings → 501; chunked not
 *     last or twice → 400; empty list elements or parameters → 400 (RFC
 *     9110 §5.6.1 asks to ignore empty elements; we reject).  Trailing OWS
 *     is not part of a field value, so "chunked " is chunked.  TE in an
 *     HTTP/1.0 message and TE together with Content-Length are rejected,
 *     in requests and responses alike.  CONNECT requests may carry neither.
 *   - Responses: 1xx and 204 may not carry Transfer-Encoding, 1xx may not
 *     carry Content-Length (RFC 9110 §8.6, §6.1: MUST NOT send); 204/304
 *     and responses to HEAD may carry a Content-Length, which is validated
 *     and ignored.  A TE whose final coding is not chunked is rejected
 *     rather than read until close.  101 is accepted only if the request
 *     asked for an upgrade and the response names the protocol.
 *   - Chunked bodies: chunk-size is 1 to 16 HEXDIG (either case) and at most
 *     limits.max_chunk_size (413 above); chunk extensions are parsed
 *     strictly by the RFC 9112 §7.1.1 grammar (BWS, token, token or
 *     quoted-string values) and ignored; the size line is capped at
 *     limits.max_chunk_line; CRLF after chunk data is mandatory; trailer
 *     fields follow the header field rules, count against max_headers and
 *     max_head, and may not be Content-Length, Transfer-Encoding or Host.
 *   - Expect: only 100-continue is understood (HTTP1_F_EXPECT_CONTINUE);
 *     any other expectation sets HTTP1_F_EXPECT_OTHER so the caller can
 *     answer 417.  Expect and Upgrade are ignored in HTTP/1.0 requests
 *     (RFC 9110 §10.1.1, §7.8).
 */
#ifndef MIOSA_HTTP1_H
#define MIOSA_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults and hard caps for struct http1_limits. */
#define HTTP1_DEFAULT_MAX_REQUEST_LINE 8192u    /* bytes, without CRLF */
#define HTTP1_DEFAULT_MAX_HEAD         65536u   /* bytes, start line to final CRLF */
#define HTTP1_DEFAULT_MAX_HEADERS      100u     /* field lines */
#define HTTP1_DEFAULT_MAX_CHUNK_SIZE   (UINT64_C(1) << 30)
#define HTTP1_DEFAULT_MAX_CHUNK_LINE   4096u    /* chunk-size [chunk-ext] CRLF */
#define HTTP1_DEFAULT_MAX_BODY         UINT64_C(0x7fffffffffffffff) /* no cap */
#define HTTP1_HEADERS_CAP              256u     /* capacity of http1_head.headers */
#define HTTP1_HEAD_CAP                 (1u << 20)

enum http1_result {
	HTTP1_NEED_MORE = 0,
	HTTP1_DONE = 1,
};

/* Returned negated.  The comment is the status http1_error_status() maps to. */
enum http1_error {
	HTTP1_E_NUL = 1000,          /* 400 NUL byte */
	HTTP1_E_BARE_CR,             /* 400 CR not followed by LF */
	HTTP1_E_BARE_LF,             /* 400 LF not preceded by CR */
	HTTP1_E_LEADING_EMPTY_LINE,  /* 400 empty line before the start line */
	HTTP1_E_START_LINE,          /* 400 malformed request/status line */
	HTTP1_E_METHOD,              /* 400 method is not a token */
	HTTP1_E_TARGET,              /* 400 invalid request-target */
	HTTP1_E_TARGET_FORM,         /* 400 target form not allowed with this method */
	HTTP1_E_USERINFO,            /* 400 userinfo in absolute-form */
	HTTP1_E_VERSION,             /* 505 HTTP-version other than 1.0 / 1.1 */
	HTTP1_E_STATUS,              /* 400 status code not 3 digits in 100..599 */
	HTTP1_E_REASON,              /* 400 control character in reason phrase */
	HTTP1_E_URI_TOO_LONG,        /* 414 request line over max_request_line */
	HTTP1_E_HEAD_TOO_LARGE,      /* 431 head (or trailers) over max_head */
	HTTP1_E_TOO_MANY_HEADERS,    /* 431 more than max_headers field lines */
	HTTP1_E_OBS_FOLD,            /* 400 field line starting with SP/HTAB */
	HTTP1_E_FIELD_NAME,          /* 400 invalid field name / missing colon */
	HTTP1_E_EMPTY_FIELD_NAME,    /* 400 */
	HTTP1_E_SPACE_BEFORE_COLON,  /* 400 */
	HTTP1_E_FIELD_VALUE,         /* 400 CTL or DEL in a field value */
	HTTP1_E_HOST_MISSING,        /* 400 HTTP/1.1 request without Host */
	HTTP1_E_HOST_DUPLICATE,      /* 400 */
	HTTP1_E_HOST_INVALID,        /* 400 */
	HTTP1_E_HOST_MISMATCH,       /* 400 Host differs from absolute-form authority */
	HTTP1_E_CL_INVALID,          /* 400 Content-Length not 1*DIGIT <= INT64_MAX */
	HTTP1_E_CL_DUPLICATE,        /* 400 two Content-Length lines or a list */
	HTTP1_E_CL_AND_TE,           /* 400 */
	HTTP1_E_TE_INVALID,          /* 400 malformed Transfer-Encoding list */
	HTTP1_E_TE_UNKNOWN,          /* 501 coding other than chunked */
	HTTP1_E_TE_CHUNKED_NOT_LAST, /* 400 */
	HTTP1_E_TE_CHUNKED_TWICE,    /* 400 */
	HTTP1_E_TE_HTTP10,           /* 400 Transfer-Encoding in an HTTP/1.0 message */
	HTTP1_E_CONNECT_BODY,        /* 400 CONNECT request with CL or TE */
	HTTP1_E_UPGRADE_DUPLICATE,   /* 400 two Upgrade field lines */
	HTTP1_E_FRAMING_NOT_ALLOWED, /* 400 CL/TE in a 1xx, TE in a 204 response */
	HTTP1_E_UNEXPECTED_101,      /* 400 101 without upgrade request / Upgrade */
	HTTP1_E_BODY_TOO_LARGE,      /* 413 Content-Length or chunked body over max_body */
	HTTP1_E_CHUNK_SIZE,          /* 400 malformed chunk-size */
	HTTP1_E_CHUNK_TOO_LARGE,     /* 413 chunk over max_chunk_size */
	HTTP1_E_CHUNK_EXT,           /* 400 malformed chunk extension */
	HTTP1_E_CHUNK_LINE_TOO_LONG, /* 400 chunk-size line over max_chunk_line */
	HTTP1_E_CHUNK_CRLF,          /* 400 chunk data not followed by CRLF */
	HTTP1_E_TRAILER_FORBIDDEN,   /* 400 framing/routing field in trailers */
	HTTP1_E_TRUNCATED,           /* 400 connection closed inside a body */
	HTTP1_E_EDIT_RANGE,          /* 500 edit outside the head or across a line end */
	HTTP1_E_EDIT_OVERLAP,        /* 500 two edits overlap or insert at one offset */
	HTTP1_E_EDIT_INJECTION,      /* 500 replacement holds CR, LF, NUL or another CTL */
	HTTP1_E_EDIT_COUNT,          /* 500 more than HTTP1_REWRITE_MAX_EDITS */
	HTTP1_E_NOSPACE,             /* 500 output buffer too small */
	HTTP1_E_USAGE,               /* 500 API misuse: bad limits, shrinking buffer */
	HTTP1_E_MAX_,
};

enum http1_kind {
	HTTP1_REQUEST,
	HTTP1_RESPONSE,
};

/* Methods are case-sensitive (RFC 9110 §9.1): "get" is HTTP1_METHOD_OTHER. */
enum http1_method {
	HTTP1_METHOD_OTHER,
	HTTP1_METHOD_GET,
	HTTP1_METHOD_HEAD,
	HTTP1_METHOD_POST,
	HTTP1_METHOD_PUT,
	HTTP1_METHOD_DELETE,
	HTTP1_METHOD_CONNECT,
	HTTP1_METHOD_OPTIONS,
	HTTP1_METHOD_TRACE,
	HTTP1_METHOD_PATCH,
};

enum http1_target_form {
	HTTP1_TARGET_ORIGIN,     /* /path?query */
	HTTP1_TARGET_ABSOLUTE,   /* http://authority/path?query */
	HTTP1_TARGET_AUTHORITY,  /* host:port, CONNECT only */
	HTTP1_TARGET_ASTERISK,   /* *, OPTIONS only */
};

enum http1_body_mode {
	HTTP1_BODY_NONE,         /* no content */
	HTTP1_BODY_LENGTH,       /* content_length bytes (may be 0) */
	HTTP1_BODY_CHUNKED,
	HTTP1_BODY_UNTIL_CLOSE,  /* response without framing: read until EOF */
	HTTP1_BODY_TUNNEL,       /* 2xx to CONNECT, 101: bytes after the head are not HTTP */
};

/* Field names the parser interprets; compared ASCII case-insensitively. */
enum http1_field_id {
	HTTP1_FIELD_OTHER,
	HTTP1_FIELD_HOST,
	HTTP1_FIELD_CONTENT_LENGTH,
	HTTP1_FIELD_TRANSFER_ENCODING,
	HTTP1_FIELD_CONNECTION,
	HTTP1_FIELD_EXPECT,
	HTTP1_FIELD_UPGRADE,
};

enum http1_flag {
	HTTP1_F_KEEP_ALIVE      = 1u << 0, /* connection persists after this message */
	HTTP1_F_EXPECT_CONTINUE = 1u << 1, /* request: Expect: 100-continue (HTTP/1.1) */
	HTTP1_F_EXPECT_OTHER    = 1u << 2, /* request: an expectation we do not know */
	HTTP1_F_UPGRADE         = 1u << 3, /* request: Connection: upgrade + Upgrade */
	HTTP1_F_HAS_QUERY       = 1u << 4, /* request: target has a '?' (query may be empty) */
	HTTP1_F_INTERIM         = 1u << 5, /* response: 1xx other than 101, final one follows */
	HTTP1_F_HAS_HOST        = 1u << 6, /* request: a Host field line is present */
};

/* Bytes [off, off + len) of the buffer given to http1_parse(). */
struct http1_span {
	uint32_t off;
	uint32_t len;
};

struct http1_header {
	struct http1_span name;
	struct http1_span value;  /* without leading/trailing OWS */
	enum http1_field_id id;
};

struct http1_limits {
	uint32_t max_request_line; /* also caps the status line */
	uint32_t max_head;         /* >= max_request_line + 2, <= HTTP1_HEAD_CAP */
	uint32_t max_headers;      /* 1..HTTP1_HEADERS_CAP */
	uint32_t max_chunk_line;   /* >= 3 */
	uint64_t max_chunk_size;
	uint64_t max_body;         /* caps Content-Length and a chunked body's total */
};

/* A parsed message head.  Read-only for the caller. */
struct http1_head {
	enum http1_kind kind;
	uint8_t version_minor;            /* 0 or 1 */
	uint32_t flags;                   /* enum http1_flag */
	uint32_t head_len;                /* start line to final CRLF included */

	/* requests */
	enum http1_method method;
	struct http1_span method_name;
	enum http1_target_form target_form;
	struct http1_span target;         /* whole request-target */
	struct http1_span authority;      /* absolute/authority-form: from the target;
	                                     origin/asterisk-form: the Host value */
	struct http1_span path;           /* origin/absolute-form; may be empty in absolute-form */
	struct http1_span query;          /* after '?', see HTTP1_F_HAS_QUERY */
	struct http1_span host;           /* Host value (empty if HTTP1_F_HAS_HOST is unset) */
	struct http1_span upgrade;        /* Upgrade value if HTTP1_F_UPGRADE (or a 101) */

	/* responses */
	uint16_t status;
	struct http1_span reason;

	/* framing */
	enum http1_body_mode body_mode;
	uint64_t content_length;          /* HTTP1_BODY_LENGTH only */

	uint32_t n_headers;
	struct http1_header headers[HTTP1_HEADERS_CAP];
};

/* Parser state.  Fields below `head` are private. */
struct http1_parser {
	struct http1_head head;
	struct http1_limits limits;
	enum http1_method req_method;     /* responses: method of the request */
	bool req_upgrade;                 /* responses: the request asked to upgrade */

	int state;
	int error;
	uint32_t line_start;  /* first byte of the line not parsed yet */
	uint32_t scan;        /* no LF in [line_start, scan) */
	uint32_t n_host;
	uint32_t n_cl;
	uint32_t n_te;
	uint32_t n_upgrade;
	bool te_chunked;      /* a chunked coding was seen */
	bool conn_close;
	bool conn_keep_alive;
	bool conn_upgrade;
};

/* The documented defaults. */
void http1_limits_default(struct http1_limits *ret_limits);

/*
 * Prepare p to parse a request (resp. a response to a request with method
 * req_method, which asked for a protocol upgrade if req_upgrade).  limits
 * may be NULL for the defaults; it is copied.  -HTTP1_E_USAGE if it is
 * inconsistent.
 */
__attribute__((warn_unused_result))
int http1_parser_init_request(struct http1_parser *p, const struct http1_limits *limits);
__attribute__((warn_unused_result))
int http1_parser_init_response(struct http1_parser *p, const struct http1_limits *limits,
			       enum http1_method req_method, bool req_upgrade);
/* Start over for the next message on the stream; kind, limits, request context kept. */
void http1_parser_reset(struct http1_parser *p);

/*
 * Parse the head at the start of buf[0, len).  Returns HTTP1_NEED_MORE,
 * HTTP1_DONE with *ret_head_len set (p->head is then complete), or
 * -HTTP1_E_*.  len may not shrink between calls (-HTTP1_E_USAGE).
 * After HTTP1_DONE further calls return HTTP1_DONE again.
 */
__attribute__((warn_unused_result))
int http1_parse(struct http1_parser *p, const uint8_t *buf, size_t len, size_t *ret_head_len);

/*
 * Iterate the query of a parsed request: *iter starts at 0.  Returns 1 with
 * the next parameter (name before the first '=', value after it, either may
 * be empty; a parameter without '=' has an empty value at its end), 0 when
 * there are no more.  Empty parameters ("a=1&&b=2") are skipped.
 */
int http1_query_next(const struct http1_head *h, const uint8_t *buf, uint32_t *iter,
		     struct http1_span *ret_name, struct http1_span *ret_value);

/* Status to answer a peer with for -code (or code); 500 for unknown codes. */
int http1_error_status(int code);
/* Fixed description of -code (or code); never NULL, never peer bytes. */
const char *http1_strerror(int code);

/*
 * Body decoder.  Streams over caller buffers: every call examines
 * buf[0, len) — only bytes not consumed before — and consumes framing
 * bytes and at most one run of content bytes, reported as the span
 * [*ret_data_off, + *ret_data_len) of buf (possibly empty); it stops
 * before a second run would start.  The consumed bytes (framing included)
 * are a valid encoding and may be relayed verbatim.  Returns
 * HTTP1_NEED_MORE (call again with buf + consumed, or with new bytes once
 * everything is consumed), HTTP1_DONE (the body ended: bytes after
 * *ret_consumed belong to the next message) or -HTTP1_E_*.  Errors are
 * sticky.  Works one byte at a time.
 */
struct http1_body {
	enum http1_body_mode mode;
	uint64_t remaining;   /* LENGTH: content left; CHUNKED: left in this chunk */
	uint64_t total;       /* content bytes decoded so far */
	/* private */
	uint64_t max_body;
	uint64_t max_chunk_size;
	uint32_t max_chunk_line;
	uint32_t max_trailer;
	uint32_t max_trailers;
	int state;
	int error;
	uint32_t line_len;    /* bytes of the current chunk-size line */
	uint32_t size_digits;
	uint32_t trailer_len;
	uint32_t n_trailers;
	uint32_t name_len;    /* of the trailer field name being read */
	char name[20];        /* its first bytes, lowercased */
};

/* Set up b for the body announced by h (limits may be NULL: defaults). */
__attribute__((warn_unused_result))
int http1_body_init(struct http1_body *b, const struct http1_head *h,
		    const struct http1_limits *limits);
__attribute__((warn_unused_result))
int http1_body_decode(struct http1_body *b, const uint8_t *buf, size_t len,
		      size_t *ret_consumed, size_t *ret_data_off, size_t *ret_data_len);
/* The peer closed the stream: 0 if that ends the body, -HTTP1_E_TRUNCATED if not. */
__attribute__((warn_unused_result))
int http1_body_eof(const struct http1_body *b);

#endif
