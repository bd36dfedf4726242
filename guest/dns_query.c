#include "dns_query.h"

#include <errno.h>
#include <string.h>

#include "cursor.h"

/* RFC 1035 section 4.1.1: QR | Opcode(4) | AA | TC | RD | RA | Z | AD | CD | RCODE(4).
 * AD and CD (RFC 4035 section 3.2, RFC 6840 section 5.7) took two of the
 * three Z bits; the third must still be zero. */
#define FLAG_QR 0x8000u
#define FLAG_OPCODE 0x7800u
#define FLAG_TC 0x0200u
#define FLAG_RD 0x0100u
#define FLAG_RA 0x0080u
#define FLAG_Z 0x0040u
#define FLAG_RCODE 0x000fu

#define TYPE_OPT 41u
#define CLASS_IN 1u
#define OPT_RR_SIZE 11u /* root name, type, class, ttl, rdlength 0 */

#define GUARD_DATA(expr, err)                \
	do {                                 \
		if ((expr) != 0)             \
			return -(err);       \
	} while (0)

struct dns_counts {
	uint16_t qd, an, ns, ar;
};

/* "Z  Reserved for future use.  Must be zero in all queries and responses."
 * "TC ... truncated": a query is never truncated; "RCODE ... set as part of
 * responses". */
static int parse_header(struct cursor *c, struct dns_query *q, struct dns_counts *n)
{
	GUARD_DATA(cursor_get_u16be(c, &q->id), DNS_QUERY_E_SHORT);
	GUARD_DATA(cursor_get_u16be(c, &q->flags), DNS_QUERY_E_SHORT);
	GUARD_DATA(cursor_get_u16be(c, &n->qd), DNS_QUERY_E_SHORT);
	GUARD_DATA(cursor_get_u16be(c, &n->an), DNS_QUERY_E_SHORT);
	GUARD_DATA(cursor_get_u16be(c, &n->ns), DNS_QUERY_E_SHORT);
	GUARD_DATA(cursor_get_u16be(c, &n->ar), DNS_QUERY_E_SHORT);
	if (q->flags & FLAG_QR)
		return -DNS_QUERY_E_RESPONSE;
	if (c->len > DNS_QUERY_MAX)
		return -DNS_QUERY_E_TOO_LONG;
	if (q->flags & FLAG_OPCODE)
		return -DNS_QUERY_E_OPCODE;
	if (q->flags & (FLAG_TC | FLAG_Z | FLAG_RCODE))
		return -DNS_QUERY_E_FLAGS;
	if (n->qd != 1 || n->an != 0 || n->ns != 0 || n->ar > 1)
		return -DNS_QUERY_E_COUNTS;
	return 0;
}

/* Hostname letters, digits, hyphen, plus underscore (_service._tcp names,
 * DKIM/DMARC selectors).  By value: never the locale's ctype. */
static int label_byte_ok(uint8_t b)
{
	return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') ||
	       b == '-' || b == '_';
}

/* One label's bytes appended to the dotted text (room is checked by the
 * 255-byte wire limit: text never outgrows wire form). */
static int parse_label(struct cursor *c, uint8_t len, char *text, size_t *text_len)
{
	const uint8_t *bytes;

	GUARD_DATA(cursor_get_bytes(c, len, &bytes), DNS_QUERY_E_TRUNCATED);
	for (uint8_t i = 0; i < len; i++)
		if (!label_byte_ok(bytes[i]))
			return -DNS_QUERY_E_LABEL_CHAR;
	if (*text_len > 0)
		text[(*text_len)++] = '.';
	memcpy(text + *text_len, bytes, len);
	*text_len += len;
	return 0;
}

/*
 * RFC 1035 section 3.1: "a sequence of labels, where each label consists of
 * a length octet followed by that number of octets ... terminates with the
 * zero length octet"; "labels 63 octets or less", "names 255 octets or less".
 * Section 4.1.4: the two high bits 11 mark a pointer; 01 and 10 are reserved
 * (RFC 6891 section 5 retired their extended-label use).
 */
static int parse_name(struct cursor *c, char *text)
{
	/* wire counts the root octet from the start, so the dotted text of
	 * what passes is at most wire - 2 = 253 bytes: DNS_NAME_TEXT_MAX holds
	 * it with its NUL before any label is copied */
	size_t wire = 1, text_len = 0;
	uint8_t len;
	int r;

	for (;;) {
		GUARD_DATA(cursor_get_u8(c, &len), DNS_QUERY_E_TRUNCATED);
		if ((len & 0xc0) == 0xc0)
			return -DNS_QUERY_E_POINTER;
		if (len & 0xc0)
			return -DNS_QUERY_E_LABEL_LENGTH;
		if (len == 0)
			break;
		wire += 1u + len;
		if (wire > DNS_NAME_MAX)
			return -DNS_QUERY_E_NAME_TOO_LONG;
		if ((r = parse_label(c, len, text, &text_len)) < 0)
			return r;
	}
	if (text_len == 0)
		text[text_len++] = '.';
	text[text_len] = '\0';
	return 0;
}

static int parse_question(struct cursor *c, struct dns_query *q)
{
	size_t start = c->off;
	int r;

	if ((r = parse_name(c, q->name)) < 0)
		return r;
	GUARD_DATA(cursor_get_u16be(c, &q->qtype), DNS_QUERY_E_TRUNCATED);
	GUARD_DATA(cursor_get_u16be(c, &q->qclass), DNS_QUERY_E_TRUNCATED);
	q->question_len = c->off - start;
	if (q->qtype == 0)
		return -DNS_QUERY_E_QTYPE;
	/* RFC 1035 3.2.3 / RFC 1995: zone transfers and the obsolete mail
	 * meta-types are not something a stub forwards */
	if (q->qtype >= 251 && q->qtype <= 254)
		return -DNS_QUERY_E_QTYPE_UNSUPPORTED;
	if (q->qclass != CLASS_IN)
		return -DNS_QUERY_E_QCLASS;
	return 0;
}

/* RFC 6891 section 6.1.2: OPT RDATA is {OPTION-CODE, OPTION-LENGTH,
 * OPTION-DATA} repeated; the options must tile it exactly. */
static int parse_opt_options(struct cursor *c, uint16_t rdlen)
{
	const uint8_t *rdata;
	struct cursor opts;
	uint16_t code, olen;

	GUARD_DATA(cursor_get_bytes(c, rdlen, &rdata), DNS_QUERY_E_TRUNCATED);
	cursor_init(&opts, rdata, rdlen);
	while (cursor_remaining(&opts) > 0) {
		GUARD_DATA(cursor_get_u16be(&opts, &code), DNS_QUERY_E_OPT);
		GUARD_DATA(cursor_get_u16be(&opts, &olen), DNS_QUERY_E_OPT);
		GUARD_DATA(cursor_skip(&opts, olen), DNS_QUERY_E_OPT);
	}
	return 0;
}

/* RFC 6891 section 6.1.2: "NAME domain name MUST be 0 (root domain)",
 * "TYPE OPT (41)", "CLASS requestor's UDP payload size". */
static int parse_opt(struct cursor *c, struct dns_query *q)
{
	uint8_t root;
	uint16_t type, udp_size, rdlen;
	uint32_t ttl;

	GUARD_DATA(cursor_get_u8(c, &root), DNS_QUERY_E_TRUNCATED);
	if (root != 0)
		return -DNS_QUERY_E_OPT;
	GUARD_DATA(cursor_get_u16be(c, &type), DNS_QUERY_E_TRUNCATED);
	if (type != TYPE_OPT)
		return -DNS_QUERY_E_OPT;
	GUARD_DATA(cursor_get_u16be(c, &udp_size), DNS_QUERY_E_TRUNCATED);
	GUARD_DATA(cursor_get_u32be(c, &ttl), DNS_QUERY_E_TRUNCATED);
	GUARD_DATA(cursor_get_u16be(c, &rdlen), DNS_QUERY_E_TRUNCATED);
	(void)ttl; /* extended RCODE, version, DO: the broker's to judge */
	q->edns = true;
	/* "Values lower than 512 MUST be treated as equal to 512." */
	q->udp_size = udp_size < DNS_UDP_MIN ? DNS_UDP_MIN : udp_size;
	return parse_opt_options(c, rdlen);
}

int dns_query_parse(const uint8_t *pkt, size_t len, struct dns_query *ret_query)
{
	struct dns_query q = { .udp_size = DNS_UDP_MIN };
	struct dns_counts n;
	struct cursor c;
	int r;

	cursor_init(&c, pkt, len);
	if ((r = parse_header(&c, &q, &n)) < 0 || (r = parse_question(&c, &q)) < 0)
		return r;
	if (n.ar == 1 && (r = parse_opt(&c, &q)) < 0)
		return r;
	if (cursor_remaining(&c) != 0)
		return -DNS_QUERY_E_TRAILING;
	*ret_query = q;
	return 0;
}

int dns_query_rcode(int error)
{
	switch (-error) {
	case DNS_QUERY_E_SHORT:
	case DNS_QUERY_E_RESPONSE:
		return -1;
	case DNS_QUERY_E_OPCODE:
	case DNS_QUERY_E_QTYPE_UNSUPPORTED:
		return DNS_RCODE_NOTIMP;
	case DNS_QUERY_E_QCLASS:
		return DNS_RCODE_REFUSED;
	default:
		return DNS_RCODE_FORMERR;
	}
}

const char *dns_query_strerror(int error)
{
	static const char *const text[] = {
		[DNS_QUERY_E_SHORT - 1000] = "shorter than a DNS header",
		[DNS_QUERY_E_RESPONSE - 1000] = "QR set (a response, not a query)",
		[DNS_QUERY_E_TOO_LONG - 1000] = "longer than 1232 bytes",
		[DNS_QUERY_E_OPCODE - 1000] = "opcode is not QUERY",
		[DNS_QUERY_E_FLAGS - 1000] = "TC, Z or RCODE set in a query",
		[DNS_QUERY_E_COUNTS - 1000] = "not one question without answer/authority records",
		[DNS_QUERY_E_TRUNCATED - 1000] = "ends inside a record",
		[DNS_QUERY_E_POINTER - 1000] = "compression pointer in a query",
		[DNS_QUERY_E_LABEL_LENGTH - 1000] = "label longer than 63 bytes or reserved type",
		[DNS_QUERY_E_LABEL_CHAR - 1000] = "label byte outside [A-Za-z0-9_-]",
		[DNS_QUERY_E_NAME_TOO_LONG - 1000] = "name longer than 255 bytes",
		[DNS_QUERY_E_QTYPE - 1000] = "QTYPE 0",
		[DNS_QUERY_E_QTYPE_UNSUPPORTED - 1000] = "zone transfer or mail meta-type",
		[DNS_QUERY_E_QCLASS - 1000] = "QCLASS is not IN",
		[DNS_QUERY_E_OPT - 1000] = "additional record is not a well-formed OPT",
		[DNS_QUERY_E_TRAILING - 1000] = "bytes after the last record",
	};
	int i = -error - 1000;

	if (i < 0 || (size_t)i >= sizeof(text) / sizeof(text[0]) || !text[i])
		return "unknown DNS query error";
	return text[i];
}

static void put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

int dns_reply_local(const uint8_t *pkt, size_t len, const struct dns_query *q, uint8_t rcode,
		    bool truncated, uint8_t *out, size_t cap, size_t *ret_len)
{
	size_t qlen = q ? q->question_len : 0;
	size_t need = DNS_HEADER_SIZE + qlen + (q && q->edns ? OPT_RR_SIZE : 0);
	uint16_t flags;

	if (len < DNS_HEADER_SIZE || (q && qlen > len - DNS_HEADER_SIZE))
		return -EINVAL;
	if (cap < need)
		return -ENOBUFS;
	flags = (uint16_t)((pkt[2] << 8 | pkt[3]) & (FLAG_OPCODE | FLAG_RD));
	flags |= FLAG_QR | FLAG_RA | (truncated ? FLAG_TC : 0) | (rcode & FLAG_RCODE);
	memset(out, 0, need);
	memcpy(out, pkt, 2); /* ID */
	put_u16(out + 2, flags);
	put_u16(out + 4, q ? 1 : 0);
	if (q)
		memcpy(out + DNS_HEADER_SIZE, pkt + DNS_HEADER_SIZE, qlen);
	if (q && q->edns) {
		uint8_t *opt = out + DNS_HEADER_SIZE + qlen;

		put_u16(out + 10, 1); /* ARCOUNT */
		/* root owner (opt[0] = 0), TYPE OPT, our UDP size, TTL 0, RDLEN 0 */
		put_u16(opt + 1, TYPE_OPT);
		put_u16(opt + 3, DNS_QUERY_MAX);
	}
	*ret_len = need;
	return 0;
}

int dns_answer_check(const uint8_t *ans, size_t len, const struct dns_query *q)
{
	struct cursor c;
	uint16_t id, flags;

	cursor_init(&c, ans, len);
	if (len < DNS_HEADER_SIZE || cursor_get_u16be(&c, &id) != 0 ||
	    cursor_get_u16be(&c, &flags) != 0)
		return -EBADMSG;
	return id == q->id && (flags & FLAG_QR) ? 0 : -EBADMSG;
}
