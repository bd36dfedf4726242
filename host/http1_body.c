/*
 * http1 — body decoder (Content-Length, chunked, until-close).  See
 * http1.h for the contract.
 *
 * The chunked framing is a byte-at-a-time state machine over RFC 9112 §7.1:
 *
 *   chunked-body   = *chunk last-chunk trailer-section CRLF
 *   chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-size     = 1*HEXDIG
 *   last-chunk     = 1*("0") [ chunk-ext ] CRLF
 *   chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 *   chunk-ext-val  = token / quoted-string
 *   trailer-section = *( field-line CRLF )
 *
 * so it keeps no bytes of the caller: every framing byte is consumed as
 * soon as it is seen, and chunk data is reported as spans of the caller's
 * buffer.
 */
#include "http1.h"

#include <string.h>

#include "cursor.h"
#include "http1_internal.h"

enum body_state {
	/* chunk-size line; line_len counts its bytes */
	B_SIZE_FIRST,
	B_SIZE,
	B_EXT_BWS_SEMI,     /* BWS seen after size or value: only BWS or ";" */
	B_EXT_BWS_NAME,     /* after ";" */
	B_EXT_NAME,
	B_EXT_AFTER_NAME,   /* BWS after a name: "=" or ";" */
	B_EXT_BWS_VALUE,    /* after "=" */
	B_EXT_TOKEN,
	B_EXT_QUOTED,
	B_EXT_QPAIR,
	B_EXT_AFTER_QUOTED,
	B_SIZE_LF,
	/* chunk-data CRLF */
	B_DATA,
	B_DATA_CR,
	B_DATA_LF,
	/* trailer-section CRLF; trailer_len counts its bytes */
	B_TRAILER_START,
	B_TRAILER_NAME,
	B_TRAILER_VALUE,
	B_TRAILER_LF,
	B_END_LF,
	B_DONE,
	B_FAILED,
};

/* RFC 9110 §6.5.1: fields that "describe message framing, routing" cannot
 * be processed outside the header section; a peer merging trailers into the
 * header section must never see these. */
static const char *const forbidden_trailers[] = {
	"content-length",
	"transfer-encoding",
	"host",
};

static int to(struct http1_body *b, enum body_state s)
{
	b->state = s;
	return 0;
}

/*
 * A byte the chunk-size line grammar does not allow here.  A CR is a CR
 * where the line may not end yet ("5 \r\n", ";\r\n"), so it gets the
 * grammar's error, not "bare CR"; NUL and LF keep their own codes.
 */
static int line_bad_byte(uint8_t c, int otherwise)
{
	return c == '\r' ? -otherwise : http1__bad_byte(c, otherwise);
}

int http1_body_init(struct http1_body *b, const struct http1_head *h,
		    const struct http1_limits *limits)
{
	struct http1_limits l;
	int r;

	if (limits)
		l = *limits;
	else
		http1_limits_default(&l);
	if ((r = http1__limits_check(&l)) != 0)
		return r;
	memset(b, 0, sizeof(*b));
	b->mode = h->body_mode;
	b->max_body = l.max_body;
	b->max_chunk_size = l.max_chunk_size;
	b->max_chunk_line = l.max_chunk_line;
	b->max_trailer = l.max_head;
	b->max_trailers = l.max_headers;
	switch (h->body_mode) {
	case HTTP1_BODY_LENGTH:
		if (h->content_length > l.max_body)
			return -HTTP1_E_BODY_TOO_LARGE;
		b->remaining = h->content_length;
		b->state = b->remaining == 0 ? B_DONE : B_DATA;
		return 0;
	case HTTP1_BODY_CHUNKED:
		b->state = B_SIZE_FIRST;
		return 0;
	case HTTP1_BODY_UNTIL_CLOSE:
		b->state = B_DATA;
		return 0;
	case HTTP1_BODY_NONE:
	case HTTP1_BODY_TUNNEL:
		b->state = B_DONE;
		return 0;
	}
	return -HTTP1_E_USAGE;
}

/* ------------------------------------------------------------------ */
/* Chunk-size line                                                     */

/* chunk-size = 1*HEXDIG, at most 16 digits and max_chunk_size. */
static int step_size(struct http1_body *b, uint8_t c)
{
	int d = http1__hex_value(c);

	if (d >= 0) {
		if (++b->size_digits > 16)
			return -HTTP1_E_CHUNK_SIZE;
		if (b->remaining > (b->max_chunk_size >> 4) ||
		    b->remaining * 16 > b->max_chunk_size - (uint64_t)d)
			return -HTTP1_E_CHUNK_TOO_LARGE;
		b->remaining = b->remaining * 16 + (uint64_t)d;
		return to(b, B_SIZE);
	}
	if (b->state == B_SIZE) {
		if (c == ';')
			return to(b, B_EXT_BWS_NAME);
		if (http1__is_ows(c))
			return to(b, B_EXT_BWS_SEMI);
		if (c == '\r')
			return to(b, B_SIZE_LF);
	}
	return line_bad_byte(c, HTTP1_E_CHUNK_SIZE);
}

/* qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text */
static bool is_qdtext(uint8_t c)
{
	return http1__is_field_byte(c) && c != '"' && c != '\\';
}

/* After a complete name or value: CRLF, or BWS ";" for the next extension. */
static int ext_after_item(struct http1_body *b, uint8_t c)
{
	if (http1__is_ows(c))
		return to(b, B_EXT_BWS_SEMI);
	if (c == ';')
		return to(b, B_EXT_BWS_NAME);
	if (c == '\r')
		return to(b, B_SIZE_LF);
	return line_bad_byte(c, HTTP1_E_CHUNK_EXT);
}

static int step_ext(struct http1_body *b, uint8_t c)
{
	bool ows = http1__is_ows(c), tchar = http1__is_tchar(c);

	switch (b->state) {
	case B_EXT_BWS_SEMI:
		if (ows || c == ';')
			return to(b, ows ? B_EXT_BWS_SEMI : B_EXT_BWS_NAME);
		break;
	case B_EXT_BWS_NAME:
		if (ows || tchar)
			return to(b, ows ? B_EXT_BWS_NAME : B_EXT_NAME);
		break;
	case B_EXT_NAME:
		if (tchar)
			return 0;
		if (c == '=')
			return to(b, B_EXT_BWS_VALUE);
		if (ows)
			return to(b, B_EXT_AFTER_NAME);
		return ext_after_item(b, c);
	case B_EXT_AFTER_NAME:
		if (ows)
			return 0;
		if (c == '=' || c == ';')
			return to(b, c == '=' ? B_EXT_BWS_VALUE : B_EXT_BWS_NAME);
		break;
	case B_EXT_BWS_VALUE:
		if (ows || tchar)
			return to(b, ows ? B_EXT_BWS_VALUE : B_EXT_TOKEN);
		if (c == '"')
			return to(b, B_EXT_QUOTED);
		break;
	case B_EXT_TOKEN:
		return tchar ? 0 : ext_after_item(b, c);
	case B_EXT_QUOTED:
		if (c == '"' || c == '\\')
			return to(b, c == '"' ? B_EXT_AFTER_QUOTED : B_EXT_QPAIR);
		if (is_qdtext(c))
			return 0;
		break;
	case B_EXT_QPAIR:
		/* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) */
		if (http1__is_field_byte(c))
			return to(b, B_EXT_QUOTED);
		break;
	case B_EXT_AFTER_QUOTED:
		return ext_after_item(b, c);
	default:
		return -HTTP1_E_USAGE;
	}
	return line_bad_byte(c, HTTP1_E_CHUNK_EXT);
}

static int step_size_lf(struct http1_body *b, uint8_t c)
{
	if (c != '\n')
		return -HTTP1_E_BARE_CR;
	b->line_len = 0;
	b->size_digits = 0;
	if (b->remaining == 0)
		return to(b, B_TRAILER_START);
	if (b->remaining > b->max_body - b->total)
		return -HTTP1_E_BODY_TOO_LARGE;
	return to(b, B_DATA);
}

/* RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF */
static int step_data_end(struct http1_body *b, uint8_t c)
{
	if (b->state == B_DATA_CR && c == '\r')
		return to(b, B_DATA_LF);
	if (b->state == B_DATA_LF && c == '\n')
		return to(b, B_SIZE_FIRST);
	return -HTTP1_E_CHUNK_CRLF;
}

/* ------------------------------------------------------------------ */
/* Trailer section: the field-line rules of the head, byte by byte      */

static void name_push(struct http1_body *b, uint8_t c)
{
	if (b->name_len < sizeof(b->name))
		b->name[b->name_len] = (char)http1__lower(c);
	b->name_len++;
}

static bool name_forbidden(const struct http1_body *b)
{
	for (size_t i = 0; i < sizeof(forbidden_trailers) / sizeof(forbidden_trailers[0]); i++) {
		size_t n = strlen(forbidden_trailers[i]);

		if (b->name_len == n && memcmp(b->name, forbidden_trailers[i], n) == 0)
			return true;
	}
	return false;
}

static int trailer_line_start(struct http1_body *b, uint8_t c)
{
	if (c == '\r')
		return to(b, B_END_LF);
	if (http1__is_ows(c))
		return -HTTP1_E_OBS_FOLD;
	if (c == ':')
		return -HTTP1_E_EMPTY_FIELD_NAME;
	if (!http1__is_tchar(c))
		return http1__bad_byte(c, HTTP1_E_FIELD_NAME);
	if (b->n_trailers >= b->max_trailers)
		return -HTTP1_E_TOO_MANY_HEADERS;
	b->name_len = 0;
	name_push(b, c);
	return to(b, B_TRAILER_NAME);
}

static int trailer_name(struct http1_body *b, uint8_t c)
{
	if (http1__is_tchar(c)) {
		name_push(b, c);
		return 0;
	}
	if (c == ':')
		return name_forbidden(b) ? -HTTP1_E_TRAILER_FORBIDDEN : to(b, B_TRAILER_VALUE);
	if (http1__is_ows(c))
		return -HTTP1_E_SPACE_BEFORE_COLON;
	if (c == '\r')
		return -HTTP1_E_FIELD_NAME;
	return http1__bad_byte(c, HTTP1_E_FIELD_NAME);
}

static int step_trailer(struct http1_body *b, uint8_t c)
{
	switch (b->state) {
	case B_TRAILER_START:
		return trailer_line_start(b, c);
	case B_TRAILER_NAME:
		return trailer_name(b, c);
	case B_TRAILER_VALUE:
		if (c == '\r')
			return to(b, B_TRAILER_LF);
		return http1__is_field_byte(c) ? 0 : http1__bad_byte(c, HTTP1_E_FIELD_VALUE);
	case B_TRAILER_LF:
		if (c != '\n')
			return -HTTP1_E_BARE_CR;
		b->n_trailers++;
		return to(b, B_TRAILER_START);
	case B_END_LF:
		return c == '\n' ? to(b, B_DONE) : -HTTP1_E_BARE_CR;
	default:
		return -HTTP1_E_USAGE;
	}
}

/* ------------------------------------------------------------------ */
/* Driver                                                              */

/* One framing byte, with the per-line and per-section caps. */
static int step(struct http1_body *b, uint8_t c)
{
	if (b->state <= B_SIZE_LF && ++b->line_len > b->max_chunk_line)
		return -HTTP1_E_CHUNK_LINE_TOO_LONG;
	if (b->state >= B_TRAILER_START && b->state <= B_END_LF &&
	    ++b->trailer_len > b->max_trailer)
		return -HTTP1_E_HEAD_TOO_LARGE;
	switch (b->state) {
	case B_SIZE_FIRST:
	case B_SIZE:
		return step_size(b, c);
	case B_SIZE_LF:
		return step_size_lf(b, c);
	case B_DATA_CR:
	case B_DATA_LF:
		return step_data_end(b, c);
	default:
		if (b->state < B_SIZE_LF)
			return step_ext(b, c);
		return step_trailer(b, c);
	}
}

/* Take up to b->remaining content bytes (all for until-close). */
static int take_data(struct http1_body *b, struct cursor *c, size_t *ret_off, size_t *ret_len)
{
	size_t n = cursor_remaining(c);

	if (b->mode != HTTP1_BODY_UNTIL_CLOSE && n > b->remaining)
		n = (size_t)b->remaining;
	if (n > b->max_body - b->total)
		return -HTTP1_E_BODY_TOO_LARGE;
	*ret_off = c->off;
	*ret_len = n;
	if (cursor_skip(c, n) != 0)
		return -HTTP1_E_USAGE;
	b->total += n;
	if (b->mode == HTTP1_BODY_UNTIL_CLOSE)
		return HTTP1_NEED_MORE;
	b->remaining -= n;
	if (b->remaining == 0)
		b->state = b->mode == HTTP1_BODY_CHUNKED ? B_DATA_CR : B_DONE;
	return b->state == B_DONE ? HTTP1_DONE : HTTP1_NEED_MORE;
}

/* Framing bytes until the body ends, the bytes run out, or a second data run
 * would start (one data span per call). */
static int decode_chunked(struct http1_body *b, struct cursor *c, size_t *ret_off,
			  size_t *ret_len)
{
	bool took_data = false;
	uint8_t byte;
	int r;

	while (b->state != B_DONE) {
		if (b->state == B_DATA) {
			if (took_data)
				return HTTP1_NEED_MORE;
			if ((r = take_data(b, c, ret_off, ret_len)) < 0)
				return r;
			took_data = true;
			continue;
		}
		if (cursor_get_u8(c, &byte) != 0)
			return HTTP1_NEED_MORE;
		if ((r = step(b, byte)) != 0)
			return r;
	}
	return HTTP1_DONE;
}

int http1_body_decode(struct http1_body *b, const uint8_t *buf, size_t len,
		      size_t *ret_consumed, size_t *ret_data_off, size_t *ret_data_len)
{
	size_t off = 0, n = 0;
	struct cursor c;
	int r;

	if (b->state == B_FAILED)
		return -b->error;
	cursor_init(&c, buf, len);
	if (!buf && len > 0)
		r = -HTTP1_E_USAGE;
	else if (b->state == B_DONE)
		r = HTTP1_DONE;
	else if (b->mode == HTTP1_BODY_CHUNKED)
		r = decode_chunked(b, &c, &off, &n);
	else
		r = take_data(b, &c, &off, &n);
	if (r < 0) {
		b->state = B_FAILED;
		b->error = -r;
		return r;
	}
	*ret_consumed = c.off;
	*ret_data_off = off;
	*ret_data_len = n;
	return r;
}

int http1_body_eof(const struct http1_body *b)
{
	if (b->state == B_FAILED)
		return -b->error;
	if (b->state == B_DONE || b->mode == HTTP1_BODY_UNTIL_CLOSE)
		return 0;
	return -HTTP1_E_TRUNCATED;
}
