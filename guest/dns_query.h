/*
 * dns_query — the strict parser for DNS queries the guest sends to the stub
 * (127.0.0.1:53), and the few answers the stub builds itself.
 *
 * A query is forwarded to the broker only when it is exactly what a stub
 * resolver sends (RFC 1035 section 4.1, RFC 6891 for EDNS):
 *   header: QR = 0, OPCODE = QUERY, TC = 0, Z = 0, RCODE = 0 (AA, RD, AD, CD
 *           free); QDCOUNT = 1, ANCOUNT = NSCOUNT = 0, ARCOUNT <= 1;
 *   question: QNAME of labels 1..63 bytes of [A-Za-z0-9_-] ending in the
 *           root label, at most 255 bytes in wire form, no compression
 *           pointer (nothing precedes it that it could point to) and no
 *           extended label type; QTYPE != 0; QCLASS = IN;
 *   additional: nothing, or one OPT pseudo-RR (owner ".", options that tile
 *           its RDATA exactly);
 *   nothing after that; the whole query at most DNS_QUERY_MAX bytes.
 * Anything else is answered locally (FORMERR, NOTIMP or REFUSED: see
 * dns_query_rcode()) or dropped (no header to answer, or a response).
 *
 * Contract (HAProxy-style parser): pure functions over caller buffers, no
 * I/O, no allocation, no logging; every read goes through proto/cursor.h.
 * Errors are negative DNS_QUERY_E_* codes (>= 1000, so they never collide
 * with errno values); dns_query_strerror() names them.  ret_* outputs are
 * written only on success.
 */
#ifndef MIOSA_DNS_QUERY_H
#define MIOSA_DNS_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_HEADER_SIZE 12u
/* Largest query accepted (the DNS flag day 2020 EDNS buffer size): a query
 * is one question (<= 259 bytes) and an OPT record. */
#define DNS_QUERY_MAX 1232u
#define DNS_NAME_MAX 255u   /* wire form, length octets and root included */
#define DNS_LABEL_MAX 63u
#define DNS_UDP_MIN 512u    /* what a UDP client without EDNS can take */
#define DNS_NAME_TEXT_MAX 254u /* dotted text of a 255-byte name, plus NUL */

enum dns_rcode {
	DNS_RCODE_NOERROR = 0,
	DNS_RCODE_FORMERR = 1,
	DNS_RCODE_SERVFAIL = 2,
	DNS_RCODE_NOTIMP = 4,
	DNS_RCODE_REFUSED = 5,
};

enum {
	DNS_QUERY_E_SHORT = 1000,       /* under 12 bytes: no header (dropped) */
	DNS_QUERY_E_RESPONSE,           /* QR set: never answer a response (dropped) */
	DNS_QUERY_E_TOO_LONG,           /* over DNS_QUERY_MAX (FORMERR) */
	DNS_QUERY_E_OPCODE,             /* not QUERY (NOTIMP) */
	DNS_QUERY_E_FLAGS,              /* TC, Z or RCODE set (FORMERR) */
	DNS_QUERY_E_COUNTS,             /* section counts (FORMERR) */
	DNS_QUERY_E_TRUNCATED,          /* ends inside a record (FORMERR) */
	DNS_QUERY_E_POINTER,            /* compression pointer (FORMERR) */
	DNS_QUERY_E_LABEL_LENGTH,       /* label over 63 / extended type (FORMERR) */
	DNS_QUERY_E_LABEL_CHAR,         /* byte outside [A-Za-z0-9_-] (FORMERR) */
	DNS_QUERY_E_NAME_TOO_LONG,      /* over 255 bytes (FORMERR) */
	DNS_QUERY_E_QTYPE,              /* QTYPE 0 (FORMERR) */
	DNS_QUERY_E_QTYPE_UNSUPPORTED,  /* AXFR, IXFR, MAILA, MAILB (NOTIMP) */
	DNS_QUERY_E_QCLASS,             /* not IN (REFUSED) */
	DNS_QUERY_E_OPT,                /* additional record is not a valid OPT (FORMERR) */
	DNS_QUERY_E_TRAILING,           /* bytes after the last record (FORMERR) */
};

struct dns_query {
	uint16_t id;
	uint16_t flags;
	uint16_t qtype;
	uint16_t qclass;
	bool edns;
	uint16_t udp_size;     /* the client's UDP limit: DNS_UDP_MIN without EDNS */
	size_t question_len;   /* bytes of the question section after the header */
	char name[DNS_NAME_TEXT_MAX]; /* dotted, for logs ("." for the root) */
};

__attribute__((warn_unused_result))
int dns_query_parse(const uint8_t *pkt, size_t len, struct dns_query *ret_query);

/* The rcode a parse error is answered with, or -1 to drop the packet. */
int dns_query_rcode(int error);

const char *dns_query_strerror(int error);

/*
 * A reply built by the stub itself: ID, OPCODE and RD of the query, QR and
 * RA set, rcode, TC if truncated.  With q (the query parsed) the question is
 * echoed and, if the query had EDNS, an OPT record added; without q (the
 * query did not parse) the reply is a bare header.  pkt must hold at least a
 * header (-EINVAL otherwise); -ENOBUFS if cap is too small.
 */
__attribute__((warn_unused_result))
int dns_reply_local(const uint8_t *pkt, size_t len, const struct dns_query *q, uint8_t rcode,
		    bool truncated, uint8_t *out, size_t cap, size_t *ret_len);

/*
 * Whether the broker's answer may be relayed for q: at least a header, QR
 * set, the same ID.  0 or -EBADMSG.  Nothing else is inspected: the answer
 * goes to the client unchanged.
 */
__attribute__((warn_unused_result))
int dns_answer_check(const uint8_t *ans, size_t len, const struct dns_query *q);

#endif
