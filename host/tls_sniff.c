#include "tls_sniff.h"

#include <stdbool.h>
#include <string.h>

#include "cursor.h"

#define TLS_CONTENT_HANDSHAKE 22
#define TLS_HANDSHAKE_CLIENT_HELLO 1
#define TLS_EXT_ALPN 16
#define TLS_RECORD_MAX 16384u

/* A u8/u16/u24-length-prefixed vector as a sub-cursor; -ENODATA if short. */
static int sniff_vector(struct cursor *c, unsigned len_bytes, struct cursor *ret_sub)
{
	const uint8_t *p;
	uint32_t n = 0;

	for (unsigned i = 0; i < len_bytes; i++) {
		uint8_t b;

		if (cursor_get_u8(c, &b) < 0)
			return -1;
		n = n << 8 | b;
	}
	if (cursor_get_bytes(c, n, &p) < 0)
		return -1;
	cursor_init(ret_sub, p, n);
	return 0;
}

/* RFC 7301 3.1: the protocol_name_list; true when it names http/1.1. */
static enum tls_sniff_verdict sniff_alpn(struct cursor *ext)
{
	struct cursor list;
	bool http11 = false;

	if (sniff_vector(ext, 2, &list) < 0 || cursor_remaining(ext) != 0 ||
	    cursor_remaining(&list) < 2)
		return TLS_SNIFF_MALFORMED;
	while (cursor_remaining(&list) > 0) {
		struct cursor name;

		if (sniff_vector(&list, 1, &name) < 0 || cursor_remaining(&name) == 0)
			return TLS_SNIFF_MALFORMED;
		if (cursor_remaining(&name) == 8 && memcmp(cursor_pos(&name), "http/1.1", 8) == 0)
			http11 = true;
	}
	return http11 ? TLS_SNIFF_HTTP : TLS_SNIFF_OTHER_ALPN;
}

/* RFC 8446 4.1.2 ClientHello, the body of one handshake message. */
static enum tls_sniff_verdict sniff_hello(struct cursor *h)
{
	struct cursor v, exts;
	enum tls_sniff_verdict found = TLS_SNIFF_HTTP; /* no ALPN extension */
	bool seen_alpn = false;

	if (cursor_skip(h, 2 + 32) < 0 ||     /* legacy_version, random */
	    sniff_vector(h, 1, &v) < 0 ||     /* legacy_session_id<0..32> */
	    sniff_vector(h, 2, &v) < 0 ||     /* cipher_suites<2..2^16-2> */
	    sniff_vector(h, 1, &v) < 0)       /* legacy_compression_methods<1..2^8-1> */
		return TLS_SNIFF_MALFORMED;
	if (cursor_remaining(h) == 0)
		return TLS_SNIFF_HTTP; /* no extensions at all (TLS 1.2 and older) */
	if (sniff_vector(h, 2, &exts) < 0 || cursor_remaining(h) != 0)
		return TLS_SNIFF_MALFORMED;
	while (cursor_remaining(&exts) > 0) {
		struct cursor ext;
		uint16_t type;

		if (cursor_get_u16be(&exts, &type) < 0 || sniff_vector(&exts, 2, &ext) < 0)
			return TLS_SNIFF_MALFORMED;
		if (type != TLS_EXT_ALPN)
			continue;
		/* RFC 8446 4.2: "There MUST NOT be more than one extension of the same type" */
		if (seen_alpn)
			return TLS_SNIFF_MALFORMED;
		seen_alpn = true;
		found = sniff_alpn(&ext);
		if (found == TLS_SNIFF_MALFORMED)
			return found;
	}
	return found;
}

enum tls_sniff_verdict tls_sniff_client_hello(const uint8_t *buf, size_t len)
{
	struct cursor c, rec, hs;
	uint8_t type, major, minor, hs_type;
	uint16_t rec_len;

	cursor_init(&c, buf, len);
	if (cursor_get_u8(&c, &type) < 0)
		return TLS_SNIFF_NEED_MORE;
	if (type != TLS_CONTENT_HANDSHAKE)
		return TLS_SNIFF_NOT_TLS;
	if (cursor_get_u8(&c, &major) < 0)
		return TLS_SNIFF_NEED_MORE;
	if (major != 3)
		return TLS_SNIFF_NOT_TLS;
	if (cursor_get_u8(&c, &minor) < 0 || cursor_get_u16be(&c, &rec_len) < 0)
		return TLS_SNIFF_NEED_MORE;
	if (rec_len == 0 || rec_len > TLS_RECORD_MAX)
		return TLS_SNIFF_MALFORMED;
	if (cursor_remaining(&c) < rec_len)
		return TLS_SNIFF_NEED_MORE;
	(void)minor; /* any 3.x: clients send 3.1 in the record layer (RFC 8446 5.1) */
	cursor_init(&rec, cursor_pos(&c), rec_len);
	/* RFC 8446 4: Handshake { msg_type; uint24 length; body } */
	if (cursor_get_u8(&rec, &hs_type) < 0 || hs_type != TLS_HANDSHAKE_CLIENT_HELLO ||
	    sniff_vector(&rec, 3, &hs) < 0)
		return TLS_SNIFF_MALFORMED;
	return sniff_hello(&hs);
}

const char *tls_sniff_verdict_name(enum tls_sniff_verdict v)
{
	switch (v) {
	case TLS_SNIFF_NOT_TLS:
		return "not-tls";
	case TLS_SNIFF_NEED_MORE:
		return "need-more";
	case TLS_SNIFF_HTTP:
		return "http";
	case TLS_SNIFF_OTHER_ALPN:
		return "other-alpn";
	case TLS_SNIFF_MALFORMED:
		return "malformed";
	}
	return "unknown";
}
