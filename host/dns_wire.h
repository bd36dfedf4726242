/*
 * dns_wire — strict DNS message parsing and building for the broker's
 * synthetic resolver (RFC 1035 section 4, RFC 6891 for EDNS).
 *
 * The guest's DNS stub forwards each query it gets over a Dns stream; the
 * guest is untrusted, so the broker parses every query again here, whatever
 * the stub checked.
 *
 * Contract (HAProxy-style parser): pure functions over caller buffers; no
 * I/O, no allocation, no logging, no global state; safe from any thread.
 * Every read of untrusted bytes goes through proto/cursor.h.  Functions
 * return 0 or a negative code: -DNS_WIRE_E_* for malformed messages (>= 1200,
 * so they never collide with errno values; dns_wire_strerror() names them),
 * -EINVAL / -ENOBUFS for caller mistakes.  ret_* outputs are written only on
 * success.
 *
 * What a query must be (dns_wire_parse_query):
 *   header   QR = 0; OPCODE = QUERY (else NOTIMP); TC = 0, Z = 0, RCODE = 0
 *            (AA, RD, AD and CD are free); QDCOUNT = 1, ANCOUNT = NSCOUNT = 0,
 *            ARCOUNT 0 or 1;
 *   question a QNAME of labels 1..63 bytes ending in the root label, at most
 *            255 bytes in wire form, with no compression pointer (nothing
 *            precedes it that it could point to) and no extended label type;
 *            any octet is allowed inside a label (RFC 2181 section 11): what
 *            is a usable host name is the caller's question, not a format
 *            error.  QTYPE and QCLASS are returned as they are: which ones
 *            get an answer is policy (dns_synth.h);
 *   additional nothing, or one OPT pseudo-RR: owner the root, options that
 *            tile its RDATA exactly;
 *   nothing after that; the whole message at most DNS_WIRE_MSG_MAX bytes.
 *
 * EDNS (RFC 6891): the requestor's OPT is parsed and reported (version, DO,
 * payload size clamped to >= 512); its options (cookies, padding, client
 * subnet, ...) are ignored, which section 6.1.2 allows ("Any OPTION-CODE
 * values not understood by a responder or requestor MUST be ignored").  An
 * answer to a query with an OPT carries a minimal OPT of our own: payload
 * size DNS_WIRE_EDNS_UDP_SIZE, version 0, the DO bit copied (RFC 3225
 * section 3), no options.  Error answers built from a query that did not
 * parse carry no OPT: its OPT was not understood.
 *
 * What an answer is (dns_wire_build_answer): ID, OPCODE, RD and CD of the
 * query (RFC 4035 section 3.2.2: CD is copied); QR and RA set; AA, TC, AD
 * clear; the question echoed byte for byte, so a client that randomizes the
 * case of its QNAME (0x20 encoding) sees its own case back; at most one A
 * record whose owner is a compression pointer to that question; no
 * authority section (negative answers carry no SOA, see dns_synth.h).  The
 * largest answer is DNS_WIRE_ANSWER_WORST bytes, under the 512 bytes any UDP
 * client takes, so an answer is never truncated.
 */
#ifndef MIOSA_DNS_WIRE_H
#define MIOSA_DNS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_WIRE_HEADER_SIZE 12u
#define DNS_WIRE_NAME_MAX 255u     /* wire form, length octets and root included */
#define DNS_WIRE_LABEL_MAX 63u
#define DNS_WIRE_TEXT_BUF 254u     /* dotted text of a 255-byte name, plus NUL */
#define DNS_WIRE_MSG_MAX 65535u    /* what a DNS length prefix can carry */
#define DNS_WIRE_UDP_MIN 512u      /* RFC 1035 2.3.4 / RFC 6891 6.2.3 floor */
#define DNS_WIRE_EDNS_UDP_SIZE 1232u /* our payload size (DNS flag day 2020) */
#define DNS_WIRE_OPT_RR_SIZE 11u   /* root owner, type, class, ttl, rdlength 0 */
/* Header, a 255-byte question name + type + class, one A record with a
 * pointer owner (2 + 10 + 4), our OPT. */
#define DNS_WIRE_ANSWER_WORST \
	(DNS_WIRE_HEADER_SIZE + DNS_WIRE_NAME_MAX + 4u + 16u + DNS_WIRE_OPT_RR_SIZE)
/* An output buffer of this size always suffices. */
#define DNS_WIRE_ANSWER_MAX DNS_WIRE_UDP_MIN

/* RFC 1035 section 4.1.1, RFC 6891 section 9 (BADVERS is an extended RCODE,
 * only expressible with an OPT record). */
enum dns_wire_rcode {
	DNS_RCODE_NOERROR = 0,
	DNS_RCODE_FORMERR = 1,
	DNS_RCODE_SERVFAIL = 2,
	DNS_RCODE_NXDOMAIN = 3,
	DNS_RCODE_NOTIMP = 4,
	DNS_RCODE_REFUSED = 5,
	DNS_RCODE_BADVERS = 16,
};

enum dns_wire_type {
	DNS_TYPE_A = 1,
	DNS_TYPE_NS = 2,
	DNS_TYPE_CNAME = 5,
	DNS_TYPE_SOA = 6,
	DNS_TYPE_PTR = 12,
	DNS_TYPE_MX = 15,
	DNS_TYPE_TXT = 16,
	DNS_TYPE_AAAA = 28,
	DNS_TYPE_SRV = 33,
	DNS_TYPE_OPT = 41,
	DNS_TYPE_SVCB = 64,
	DNS_TYPE_HTTPS = 65,
	DNS_TYPE_TKEY = 249,
	DNS_TYPE_TSIG = 250,
	DNS_TYPE_IXFR = 251,
	DNS_TYPE_AXFR = 252,
	DNS_TYPE_MAILB = 253,
	DNS_TYPE_MAILA = 254,
	DNS_TYPE_ANY = 255,
};

#define DNS_CLASS_IN 1u

/* Header flag bits (RFC 1035 4.1.1; AD and CD from RFC 4035 3.2). */
#define DNS_FLAG_QR 0x8000u
#define DNS_FLAG_OPCODE 0x7800u
#define DNS_FLAG_AA 0x0400u
#define DNS_FLAG_TC 0x0200u
#define DNS_FLAG_RD 0x0100u
#define DNS_FLAG_RA 0x0080u
#define DNS_FLAG_Z 0x0040u
#define DNS_FLAG_AD 0x0020u
#define DNS_FLAG_CD 0x0010u
#define DNS_FLAG_RCODE 0x000fu

enum {
	DNS_WIRE_E_SHORT = 1200,    /* under 12 bytes: no ID to answer (dropped) */
	DNS_WIRE_E_RESPONSE,        /* QR set: never answer a response (dropped) */
	DNS_WIRE_E_TOO_LONG,        /* over DNS_WIRE_MSG_MAX (FORMERR) */
	DNS_WIRE_E_OPCODE,          /* not QUERY (NOTIMP) */
	DNS_WIRE_E_FLAGS,           /* TC, Z or RCODE set in a query (FORMERR) */
	DNS_WIRE_E_COUNTS,          /* section counts (FORMERR) */
	DNS_WIRE_E_TRUNCATED,       /* ends inside a field or record (FORMERR) */
	DNS_WIRE_E_POINTER,         /* compression pointer in a query (FORMERR) */
	DNS_WIRE_E_LABEL_TYPE,      /* label type 01 or 10 (FORMERR) */
	DNS_WIRE_E_NAME_TOO_LONG,   /* over 255 bytes in wire form (FORMERR) */
	DNS_WIRE_E_OPT,             /* additional record is not a well-formed OPT (FORMERR) */
	DNS_WIRE_E_TRAILING,        /* bytes after the last record (FORMERR) */
	DNS_WIRE_E_ANSWER,          /* a response not in the shape we build */
	DNS_WIRE_E_NAME_TEXT,       /* a label byte with no place in a host name */
};

struct dns_wire_query {
	uint16_t id;
	uint16_t flags;             /* as received */
	const uint8_t *qname;       /* wire form inside the message, root octet included */
	size_t qname_len;           /* 1..255 */
	uint16_t qtype;
	uint16_t qclass;
	const uint8_t *question;    /* the question section: qname, qtype, qclass */
	size_t question_len;
	bool edns;                  /* one OPT record was present */
	uint8_t edns_version;
	bool edns_do;               /* DNSSEC OK (RFC 3225) */
	uint16_t edns_udp_size;     /* clamped to >= 512; 512 without EDNS */
};

/* Parse a query.  The pointers in ret_query point into msg. */
__attribute__((warn_unused_result))
int dns_wire_parse_query(const uint8_t *msg, size_t len, struct dns_wire_query *ret_query);

/* The rcode a parse error is answered with, or -1 when no answer can be
 * sent (no header, or the message is itself a response). */
int dns_wire_error_rcode(int error);

const char *dns_wire_strerror(int error);

/*
 * The dotted text of a wire-form name ("" for the root), for host-name
 * validation and logs.  -DNS_WIRE_E_NAME_TEXT if a label holds '.' or a byte
 * outside printable ASCII (0x21..0x7e): such a label has no unambiguous text
 * form and can never be a host name.  -DNS_WIRE_E_* if name is not a valid
 * uncompressed wire name of exactly name_len bytes.
 */
__attribute__((warn_unused_result))
int dns_wire_name_text(const uint8_t *name, size_t name_len,
		       char ret_text[DNS_WIRE_TEXT_BUF]);

/*
 * Build the answer to a parsed query: rcode (BADVERS only if the query had
 * EDNS: -EINVAL otherwise) and, if has_a, one A record for addr (host byte
 * order) with the given TTL.  -ENOBUFS if cap is too small (never with
 * DNS_WIRE_ANSWER_MAX).
 */
__attribute__((warn_unused_result))
int dns_wire_build_answer(const struct dns_wire_query *q, unsigned rcode, bool has_a,
			  uint32_t addr, uint32_t ttl, uint8_t *out, size_t cap,
			  size_t *ret_len);

/*
 * Build an error answer (rcode <= 15) to a message that did not parse as a
 * query but has a header: its ID, OPCODE, RD and CD; QR and RA set; the
 * question echoed if QDCOUNT is 1 and the question itself parses, else
 * QDCOUNT 0.  -EINVAL if msg is shorter than a header or rcode > 15.
 */
__attribute__((warn_unused_result))
int dns_wire_build_error(const uint8_t *msg, size_t len, unsigned rcode, uint8_t *out,
			 size_t cap, size_t *ret_len);

struct dns_wire_response {
	uint16_t id;
	uint16_t flags;
	unsigned rcode;             /* header RCODE, extended by the OPT if any */
	bool has_question;
	const uint8_t *question;    /* inside the message */
	size_t question_len;
	uint16_t qtype;
	bool has_a;
	uint32_t a_addr;            /* host byte order */
	uint32_t a_ttl;
	bool edns;
	uint8_t edns_version;
	bool edns_do;
};

/*
 * Strict parse of a response in the shape dns_wire builds (see above): for
 * tests, fuzz invariants and test clients.  QDCOUNT <= 1, ANCOUNT <= 1 and
 * only with a question, an answer owner that points at the question and is
 * of its type and class IN (A: RDLENGTH 4), NSCOUNT 0, ARCOUNT <= 1 and then
 * an OPT, nothing after.  -DNS_WIRE_E_* otherwise.
 */
__attribute__((warn_unused_result))
int dns_wire_parse_response(const uint8_t *msg, size_t len,
			    struct dns_wire_response *ret_response);

#endif
