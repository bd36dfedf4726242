#include "dns_wire.h"

#include <errno.h>
#include <string.h>

#include "cursor.h"

/* An answer's owner: a compression pointer (RFC 1035 4.1.4) to the question
 * name, which always starts right after the header. */
#define PTR_TO_QUESTION (0xc000u | DNS_WIRE_HEADER_SIZE)

_Static_assert(DNS_WIRE_ANSWER_WORST <= DNS_WIRE_ANSWER_MAX,
	       "an answer must fit a UDP client without EDNS: never truncate");

/* Make a failed cursor read (or any non-zero check) return -err at once. */
#define DW_GUARD(expr, err)            \
	do {                           \
		if ((expr) != 0)       \
			return -(err); \
	} while (0)

struct dw_header {
	uint16_t id, flags, qd, an, ns, ar;
};

static int parse_header(struct cursor *c, struct dw_header *h)
{
	DW_GUARD(cursor_get_u16be(c, &h->id), DNS_WIRE_E_SHORT);
	DW_GUARD(cursor_get_u16be(c, &h->flags), DNS_WIRE_E_SHORT);
	DW_GUARD(cursor_get_u16be(c, &h->qd), DNS_WIRE_E_SHORT);
	DW_GUARD(cursor_get_u16be(c, &h->an), DNS_WIRE_E_SHORT);
	DW_GUARD(cursor_get_u16be(c, &h->ns), DNS_WIRE_E_SHORT);
	DW_GUARD(cursor_get_u16be(c, &h->ar), DNS_WIRE_E_SHORT);
	return 0;
}

/*
 * RFC 1035 section 3.1: "a sequence of labels, where each label consists of
 * a length octet followed by that number of octets ... terminates with the
 * zero length octet"; "labels 63 octets or less", "names 255 octets or less".
 * Section 4.1.4: the two high bits 11 mark a pointer; 01 and 10 are
 * reserved (RFC 6891 section 5 retired their extended-label use).  A query
 * has no earlier name a pointer could sensibly refer to, so none is taken.
 */
static int parse_name(struct cursor *c, const uint8_t **ret_name, size_t *ret_len)
{
	const uint8_t *start = cursor_pos(c);
	size_t wire = 0;
	uint8_t len;

	for (;;) {
		DW_GUARD(cursor_get_u8(c, &len), DNS_WIRE_E_TRUNCATED);
		if ((len & 0xc0) == 0xc0)
			return -DNS_WIRE_E_POINTER;
		if (len & 0xc0)
			return -DNS_WIRE_E_LABEL_TYPE;
		wire += 1u + len;
		if (wire > DNS_WIRE_NAME_MAX)
			return -DNS_WIRE_E_NAME_TOO_LONG;
		if (len == 0)
			break;
		DW_GUARD(cursor_skip(c, len), DNS_WIRE_E_TRUNCATED);
	}
	*ret_name = start;
	*ret_len = wire;
	return 0;
}

struct dw_question {
	const uint8_t *start, *qname;
	size_t len, qname_len;
	uint16_t qtype, qclass;
};

static int parse_question(struct cursor *c, struct dw_question *q)
{
	int r;

	q->start = cursor_pos(c);
	if ((r = parse_name(c, &q->qname, &q->qname_len)) < 0)
		return r;
	DW_GUARD(cursor_get_u16be(c, &q->qtype), DNS_WIRE_E_TRUNCATED);
	DW_GUARD(cursor_get_u16be(c, &q->qclass), DNS_WIRE_E_TRUNCATED);
	q->len = (size_t)(cursor_pos(c) - q->start);
	return 0;
}

struct dw_opt {
	uint16_t udp_size;
	uint32_t ttl; /* extended RCODE (8) | VERSION (8) | DO (1) | Z (15) */
};

/*
 * RFC 6891 section 6.1.2: "NAME domain name MUST be 0 (root domain)", "TYPE
 * OPT (41)", "CLASS requestor's UDP payload size", RDATA "{attribute,
 * value} pairs": OPTION-CODE, OPTION-LENGTH, OPTION-DATA, which must tile
 * RDLENGTH exactly.
 */
static int parse_opt(struct cursor *c, struct dw_opt *o)
{
	const uint8_t *rdata;
	struct cursor opts;
	uint16_t type, rdlen, code, olen;
	uint8_t root;

	DW_GUARD(cursor_get_u8(c, &root), DNS_WIRE_E_TRUNCATED);
	DW_GUARD(root != 0, DNS_WIRE_E_OPT);
	DW_GUARD(cursor_get_u16be(c, &type), DNS_WIRE_E_TRUNCATED);
	DW_GUARD(type != DNS_TYPE_OPT, DNS_WIRE_E_OPT);
	DW_GUARD(cursor_get_u16be(c, &o->udp_size), DNS_WIRE_E_TRUNCATED);
	DW_GUARD(cursor_get_u32be(c, &o->ttl), DNS_WIRE_E_TRUNCATED);
	DW_GUARD(cursor_get_u16be(c, &rdlen), DNS_WIRE_E_TRUNCATED);
	DW_GUARD(cursor_get_bytes(c, rdlen, &rdata), DNS_WIRE_E_TRUNCATED);
	cursor_init(&opts, rdata, rdlen);
	while (cursor_remaining(&opts) > 0) {
		DW_GUARD(cursor_get_u16be(&opts, &code), DNS_WIRE_E_OPT);
		DW_GUARD(cursor_get_u16be(&opts, &olen), DNS_WIRE_E_OPT);
		DW_GUARD(cursor_skip(&opts, olen), DNS_WIRE_E_OPT);
	}
	return 0;
}

/* RFC 1035 4.1.1: "Z Reserved for future use.  Must be zero in all queries
 * and responses"; a query is never truncated (TC) and "RCODE ... is set as
 * part of responses". */
static int check_query_header(const struct dw_header *h, size_t len)
{
	if (h->flags & DNS_FLAG_QR)
		return -DNS_WIRE_E_RESPONSE;
	if (len > DNS_WIRE_MSG_MAX)
		return -DNS_WIRE_E_TOO_LONG;
	if (h->flags & DNS_FLAG_OPCODE)
		return -DNS_WIRE_E_OPCODE;
	if (h->flags & (DNS_FLAG_TC | DNS_FLAG_Z | DNS_FLAG_RCODE))
		return -DNS_WIRE_E_FLAGS;
	if (h->qd != 1 || h->an != 0 || h->ns != 0 || h->ar > 1)
		return -DNS_WIRE_E_COUNTS;
	return 0;
}

int dns_wire_parse_query(const uint8_t *msg, size_t len, struct dns_wire_query *ret_query)
{
	struct dw_header h;
	struct dw_question q;
	struct dw_opt o = { .udp_size = DNS_WIRE_UDP_MIN };
	struct cursor c;
	int r;

	cursor_init(&c, msg, len);
	if ((r = parse_header(&c, &h)) < 0 || (r = check_query_header(&h, len)) < 0 ||
	    (r = parse_question(&c, &q)) < 0)
		return r;
	if (h.ar == 1 && (r = parse_opt(&c, &o)) < 0)
		return r;
	if (cursor_remaining(&c) != 0)
		return -DNS_WIRE_E_TRAILING;

	*ret_query = (struct dns_wire_query){
		.id = h.id,
		.flags = h.flags,
		.qname = q.qname,
		.qname_len = q.qname_len,
		.qtype = q.qtype,
		.qclass = q.qclass,
		.question = q.start,
		.question_len = q.len,
		.edns = h.ar == 1,
		.edns_version = (uint8_t)(o.ttl >> 16),
		.edns_do = (o.ttl & 0x8000u) != 0,
		/* "Values lower than 512 MUST be treated as equal to 512." */
		.edns_udp_size = o.udp_size < DNS_WIRE_UDP_MIN ? DNS_WIRE_UDP_MIN : o.udp_size,
	};
	return 0;
}

int dns_wire_error_rcode(int error)
{
	switch (-error) {
	case DNS_WIRE_E_SHORT:
	case DNS_WIRE_E_RESPONSE:
		return -1;
	case DNS_WIRE_E_OPCODE:
		return DNS_RCODE_NOTIMP;
	default:
		return DNS_RCODE_FORMERR;
	}
}

const char *dns_wire_strerror(int error)
{
	static const char *const text[] = {
		[DNS_WIRE_E_SHORT - 1200] = "shorter than a DNS header",
		[DNS_WIRE_E_RESPONSE - 1200] = "QR set (a response, not a query)",
		[DNS_WIRE_E_TOO_LONG - 1200] = "longer than 65535 bytes",
		[DNS_WIRE_E_OPCODE - 1200] = "opcode is not QUERY",
		[DNS_WIRE_E_FLAGS - 1200] = "TC, Z or RCODE set in a query",
		[DNS_WIRE_E_COUNTS - 1200] = "not one question without answer/authority records",
		[DNS_WIRE_E_TRUNCATED - 1200] = "ends inside a record",
		[DNS_WIRE_E_POINTER - 1200] = "compression pointer in a query",
		[DNS_WIRE_E_LABEL_TYPE - 1200] = "reserved label type",
		[DNS_WIRE_E_NAME_TOO_LONG - 1200] = "name longer than 255 bytes",
		[DNS_WIRE_E_OPT - 1200] = "additional record is not a well-formed OPT",
		[DNS_WIRE_E_TRAILING - 1200] = "bytes after the last record",
		[DNS_WIRE_E_ANSWER - 1200] = "response not in the expected shape",
		[DNS_WIRE_E_NAME_TEXT - 1200] = "label byte with no place in a host name",
	};
	int i = -error - 1200;

	if (i < 0 || (size_t)i >= sizeof(text) / sizeof(text[0]) || !text[i])
		return "unknown DNS message error";
	return text[i];
}

int dns_wire_name_text(const uint8_t *name, size_t name_len, char ret_text[DNS_WIRE_TEXT_BUF])
{
	/* wire form is at most 255 bytes with the root octet, so the text of
	 * what passes is at most 253 bytes: the buffer holds it with its NUL */
	char text[DNS_WIRE_TEXT_BUF];
	const uint8_t *label, *parsed;
	size_t text_len = 0, parsed_len;
	struct cursor c;
	uint8_t len;
	int r;

	cursor_init(&c, name, name_len);
	if ((r = parse_name(&c, &parsed, &parsed_len)) < 0)
		return r;
	if (cursor_remaining(&c) != 0)
		return -DNS_WIRE_E_TRAILING;
	cursor_init(&c, name, name_len);
	for (;;) {
		DW_GUARD(cursor_get_u8(&c, &len), DNS_WIRE_E_TRUNCATED);
		if (len == 0)
			break;
		DW_GUARD(cursor_get_bytes(&c, len, &label), DNS_WIRE_E_TRUNCATED);
		for (uint8_t i = 0; i < len; i++)
			if (label[i] <= 0x20 || label[i] >= 0x7f || label[i] == '.')
				return -DNS_WIRE_E_NAME_TEXT;
		if (text_len > 0)
			text[text_len++] = '.';
		memcpy(text + text_len, label, len);
		text_len += len;
	}
	text[text_len] = '\0';
	memcpy(ret_text, text, text_len + 1);
	return 0;
}

static void put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	put_u16(p, (uint16_t)(v >> 16));
	put_u16(p + 2, (uint16_t)v);
}

/* Response flags: the query's OPCODE, RD and CD; QR and RA; our rcode. */
static uint16_t answer_flags(uint16_t query_flags, unsigned rcode)
{
	return (uint16_t)((query_flags & (DNS_FLAG_OPCODE | DNS_FLAG_RD | DNS_FLAG_CD)) |
			  DNS_FLAG_QR | DNS_FLAG_RA | (rcode & DNS_FLAG_RCODE));
}

static void put_header(uint8_t *out, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an,
		       uint16_t ar)
{
	put_u16(out, id);
	put_u16(out + 2, flags);
	put_u16(out + 4, qd);
	put_u16(out + 6, an);
	put_u16(out + 8, 0);
	put_u16(out + 10, ar);
}

int dns_wire_build_answer(const struct dns_wire_query *q, unsigned rcode, bool has_a,
			  uint32_t addr, uint32_t ttl, uint8_t *out, size_t cap,
			  size_t *ret_len)
{
	size_t need = DNS_WIRE_HEADER_SIZE + q->question_len;
	uint8_t *p;

	/* An extended RCODE exists only in an OPT; an A record only beside
	 * NOERROR; a question only as parse_query returns it. */
	if (rcode > 0xfffu || (rcode > 15 && !q->edns) || (has_a && rcode != 0) ||
	    q->question_len > DNS_WIRE_NAME_MAX + 4u)
		return -EINVAL;
	need += (has_a ? 16u : 0u) + (q->edns ? DNS_WIRE_OPT_RR_SIZE : 0u);
	if (cap < need)
		return -ENOBUFS;

	put_header(out, q->id, answer_flags(q->flags, rcode), 1, has_a ? 1 : 0, q->edns ? 1 : 0);
	p = out + DNS_WIRE_HEADER_SIZE;
	memcpy(p, q->question, q->question_len);
	p += q->question_len;
	if (has_a) {
		put_u16(p, PTR_TO_QUESTION);
		put_u16(p + 2, DNS_TYPE_A);
		put_u16(p + 4, DNS_CLASS_IN);
		put_u32(p + 6, ttl);
		put_u16(p + 10, 4);
		put_u32(p + 12, addr);
		p += 16;
	}
	if (q->edns) {
		/* root owner, TYPE OPT, CLASS our payload size, TTL = extended
		 * RCODE | VERSION 0 | DO copied, RDLENGTH 0 */
		p[0] = 0;
		put_u16(p + 1, DNS_TYPE_OPT);
		put_u16(p + 3, DNS_WIRE_EDNS_UDP_SIZE);
		put_u32(p + 5, (uint32_t)(rcode >> 4) << 24 | (q->edns_do ? 0x8000u : 0u));
		put_u16(p + 9, 0);
	}
	*ret_len = need;
	return 0;
}

int dns_wire_build_error(const uint8_t *msg, size_t len, unsigned rcode, uint8_t *out,
			 size_t cap, size_t *ret_len)
{
	struct dw_question q = { 0 };
	struct dw_header h;
	struct cursor c;
	bool echo;
	size_t need;

	cursor_init(&c, msg, len);
	if (rcode > 15 || parse_header(&c, &h) < 0)
		return -EINVAL;
	echo = h.qd == 1 && parse_question(&c, &q) == 0;
	need = DNS_WIRE_HEADER_SIZE + (echo ? q.len : 0u);
	if (cap < need)
		return -ENOBUFS;
	put_header(out, h.id, answer_flags(h.flags, rcode), echo ? 1 : 0, 0, 0);
	if (echo)
		memcpy(out + DNS_WIRE_HEADER_SIZE, q.start, q.len);
	*ret_len = need;
	return 0;
}

/* The one answer record shape we build: pointer owner, TYPE A, CLASS IN. */
static int parse_answer_a(struct cursor *c, struct dns_wire_response *r)
{
	uint16_t owner, type, klass, rdlen;

	DW_GUARD(cursor_get_u16be(c, &owner), DNS_WIRE_E_TRUNCATED);
	DW_GUARD(cursor_get_u16be(c, &type), DNS_WIRE_E_TRUNCATED);
	DW_GUARD(cursor_get_u16be(c, &klass), DNS_WIRE_E_TRUNCATED);
	DW_GUARD(cursor_get_u32be(c, &r->a_ttl), DNS_WIRE_E_TRUNCATED);
	DW_GUARD(cursor_get_u16be(c, &rdlen), DNS_WIRE_E_TRUNCATED);
	if (owner != PTR_TO_QUESTION || type != DNS_TYPE_A || r->qtype != DNS_TYPE_A ||
	    klass != DNS_CLASS_IN || rdlen != 4)
		return -DNS_WIRE_E_ANSWER;
	DW_GUARD(cursor_get_u32be(c, &r->a_addr), DNS_WIRE_E_TRUNCATED);
	r->has_a = true;
	return 0;
}

int dns_wire_parse_response(const uint8_t *msg, size_t len,
			    struct dns_wire_response *ret_response)
{
	struct dns_wire_response resp = { 0 };
	struct dw_question q;
	struct dw_header h;
	struct dw_opt o;
	struct cursor c;
	int r;

	cursor_init(&c, msg, len);
	if ((r = parse_header(&c, &h)) < 0)
		return r;
	if (!(h.flags & DNS_FLAG_QR) || len > DNS_WIRE_MSG_MAX || h.qd > 1 || h.an > 1 ||
	    (h.an == 1 && h.qd == 0) || h.ns != 0 || h.ar > 1)
		return -DNS_WIRE_E_ANSWER;
	resp.id = h.id;
	resp.flags = h.flags;
	resp.rcode = h.flags & DNS_FLAG_RCODE;
	if (h.qd == 1) {
		if ((r = parse_question(&c, &q)) < 0)
			return r;
		resp.has_question = true;
		resp.question = q.start;
		resp.question_len = q.len;
		resp.qtype = q.qtype;
	}
	if (h.an == 1 && (r = parse_answer_a(&c, &resp)) < 0)
		return r;
	if (h.ar == 1) {
		if ((r = parse_opt(&c, &o)) < 0)
			return r;
		resp.edns = true;
		resp.rcode |= (o.ttl >> 24) << 4;
		resp.edns_version = (uint8_t)(o.ttl >> 16);
		resp.edns_do = (o.ttl & 0x8000u) != 0;
	}
	if (cursor_remaining(&c) != 0)
		return -DNS_WIRE_E_TRAILING;
	*ret_response = resp;
	return 0;
}
