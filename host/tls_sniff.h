/*
 * tls_sniff — what the first bytes of a guest TCP stream on a port other
 * than 80/443 are, so the broker can decide between TLS interception (the
 * HTTP/1.1 proxy) and a byte-for-byte splice (docs/broker.md "Other
 * ports").
 *
 * A pure parser over a buffer (HAProxy style): it returns need-more / a
 * verdict, does no I/O and keeps no state; call it again with more bytes.
 * Every read goes through the cursor (proto/cursor.h).
 *
 * It reads one TLS record (RFC 8446 5.1: type 22 handshake, legacy version
 * 0x03xx, length <= 2^14) holding a whole ClientHello (RFC 8446 4.1.2) and,
 * in its extensions, application_layer_protocol_negotiation (type 16,
 * RFC 7301 3.1: "opaque ProtocolName<1..2^8-1>; ProtocolName
 * protocol_name_list<2..2^16-1>").
 *
 * Verdicts:
 *   TLS_SNIFF_NOT_TLS     the first byte is not 22 or the second not 3:
 *                         another protocol.
 *   TLS_SNIFF_NEED_MORE   a TLS record header so far, the record is not
 *                         complete yet (never more than
 *                         TLS_SNIFF_MAX_BYTES are needed).
 *   TLS_SNIFF_HTTP        a ClientHello whose ALPN list contains
 *                         "http/1.1", or that has no ALPN extension: an
 *                         HTTPS client the proxy understands.
 *   TLS_SNIFF_OTHER_ALPN  a ClientHello with a non-empty ALPN list without
 *                         "http/1.1" (h2 only, imap, postgresql, ...).
 *   TLS_SNIFF_MALFORMED   starts like TLS but is not a well-formed
 *                         ClientHello in one record (includes a ClientHello
 *                         split over several records, which no client we
 *                         know sends below 16 KiB).
 * The caller decides what each verdict means; the broker intercepts only
 * TLS_SNIFF_HTTP.
 *
 * Thread-safe (no state).  Never allocates.
 */
#ifndef MIOSA_TLS_SNIFF_H
#define MIOSA_TLS_SNIFF_H

#include <stddef.h>
#include <stdint.h>

/* Record header + the largest plaintext record (RFC 8446 5.1). */
#define TLS_SNIFF_MAX_BYTES (5u + 16384u)

enum tls_sniff_verdict {
	TLS_SNIFF_NOT_TLS,
	TLS_SNIFF_NEED_MORE,
	TLS_SNIFF_HTTP,
	TLS_SNIFF_OTHER_ALPN,
	TLS_SNIFF_MALFORMED,
};

/* The verdict for the first len bytes of a stream (len may be 0: NEED_MORE). */
enum tls_sniff_verdict tls_sniff_client_hello(const uint8_t *buf, size_t len);

/* A short token for logs: "not-tls", "need-more", "http", "other-alpn", "malformed". */
const char *tls_sniff_verdict_name(enum tls_sniff_verdict v);

#endif
