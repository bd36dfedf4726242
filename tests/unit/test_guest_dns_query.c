/* Tests for guest/dns_query.h: the strict DNS query parser of the stub and
 * the replies it builds itself. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dns_query.h"

/* A query under construction: header, then whatever the test appends. */
struct pkt {
	uint8_t b[2048];
	size_t len;
};

static void put(struct pkt *p, const void *data, size_t n)
{
	assert_true(p->len + n <= sizeof(p->b));
	if (n > 0) /* memcpy(dst, NULL, 0) is undefined */
		memcpy(p->b + p->len, data, n);
	p->len += n;
}

static void put16(struct pkt *p, unsigned v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
	put(p, b, 2);
}

static void header(struct pkt *p, unsigned flags, unsigned qd, unsigned an, unsigned ns,
		   unsigned ar)
{
	p->len = 0;
	put16(p, 0xbeef);
	put16(p, flags);
	put16(p, qd);
	put16(p, an);
	put16(p, ns);
	put16(p, ar);
}

/* Dotted name in wire form ("" is the root). */
static void name(struct pkt *p, const char *dotted)
{
	const char *s = dotted;

	while (*s) {
		const char *dot = strchr(s, '.');
		size_t n = dot ? (size_t)(dot - s) : strlen(s);
		uint8_t len = (uint8_t)n;
		put(p, &len, 1);
		put(p, s, n);
		s += n + (dot ? 1 : 0);
	}
	put(p, "", 1);
}

static void question(struct pkt *p, const char *dotted, unsigned qtype, unsigned qclass)
{
	name(p, dotted);
	put16(p, qtype);
	put16(p, qclass);
}

/* An A query for dotted with RD, as a stub resolver sends it. */
static void a_query(struct pkt *p, const char *dotted)
{
	header(p, 0x0100, 1, 0, 0, 0);
	question(p, dotted, 1, 1);
}

static void opt(struct pkt *p, unsigned udp_size, const uint8_t *rdata, size_t rdlen)
{
	put(p, "", 1); /* root owner */
	put16(p, 41);
	put16(p, udp_size);
	put16(p, 0);
	put16(p, 0); /* TTL: ext-rcode, version, flags */
	put16(p, (unsigned)rdlen);
	put(p, rdata, rdlen);
}

static int parse(const struct pkt *p, struct dns_query *q)
{
	return dns_query_parse(p->b, p->len, q);
}

/* The error and the rcode it is answered with. */
static void assert_refused_with(const struct pkt *p, int error, int rcode)
{
	struct dns_query q;

	memset(&q, 0xaa, sizeof(q));
	assert_int_equal(parse(p, &q), -error);
	assert_int_equal(dns_query_rcode(-error), rcode);
	/* ret_query untouched on failure */
	assert_int_equal(q.id, 0xaaaa);
}

/* --- Valid queries ----------------------------------------------------------------- */

static void test_plain_a_query_parses(void **state)
{
	struct dns_query q;
	struct pkt p;

	(void)state;
	a_query(&p, "api.example.test");
	assert_int_equal(parse(&p, &q), 0);
	assert_int_equal(q.id, 0xbeef);
	assert_int_equal(q.qtype, 1);
	assert_int_equal(q.qclass, 1);
	assert_false(q.edns);
	assert_int_equal(q.udp_size, DNS_UDP_MIN);
	assert_string_equal(q.name, "api.example.test");
	assert_int_equal(q.question_len, p.len - DNS_HEADER_SIZE);
}

static void test_edns_query_reports_udp_size_and_tiles_options(void **state)
{
	/* COOKIE (10) with 8 bytes, then an empty PADDING (12) */
	static const uint8_t opts[] = { 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 12, 0, 0 };
	struct dns_query q;
	struct pkt p;

	(void)state;
	header(&p, 0x0120, 1, 0, 0, 1); /* RD + AD, as dig sends */
	question(&p, "example.test", 28, 1);
	opt(&p, 1232, opts, sizeof(opts));
	assert_int_equal(parse(&p, &q), 0);
	assert_true(q.edns);
	assert_int_equal(q.udp_size, 1232);
	assert_int_equal(q.qtype, 28);
}

static void test_edns_udp_size_below_512_counts_as_512(void **state)
{
	struct dns_query q;
	struct pkt p;

	(void)state;
	header(&p, 0x0100, 1, 0, 0, 1);
	question(&p, "example.test", 1, 1);
	opt(&p, 100, NULL, 0);
	assert_int_equal(parse(&p, &q), 0);
	assert_int_equal(q.udp_size, 512);
}

static void test_root_and_underscore_names_parse(void **state)
{
	struct dns_query q;
	struct pkt p;

	(void)state;
	header(&p, 0x0000, 1, 0, 0, 0);
	question(&p, "", 2, 1); /* ". NS" */
	assert_int_equal(parse(&p, &q), 0);
	assert_string_equal(q.name, ".");
	a_query(&p, "_sip._tcp.Example-1.test");
	assert_int_equal(parse(&p, &q), 0);
	assert_string_equal(q.name, "_sip._tcp.Example-1.test");
}

static void test_cd_and_ad_bits_are_allowed(void **state)
{
	struct dns_query q;
	struct pkt p;

	(void)state;
	header(&p, 0x0130, 1, 0, 0, 0);
	question(&p, "example.test", 1, 1);
	assert_int_equal(parse(&p, &q), 0);
}

/* 63 + 63 + 63 + 61 bytes of labels: 4 length octets + root = 255 exactly. */
static void test_name_of_exactly_255_bytes_parses_and_256_does_not(void **state)
{
	char longest[300], label63[64], label61[62], label62[63];
	struct dns_query q;
	struct pkt p;

	(void)state;
	memset(label63, 'a', 63);
	label63[63] = '\0';
	memset(label61, 'b', 61);
	label61[61] = '\0';
	memset(label62, 'b', 62);
	label62[62] = '\0';
	snprintf(longest, sizeof(longest), "%s.%s.%s.%s", label63, label63, label63, label61);
	a_query(&p, longest);
	assert_int_equal(parse(&p, &q), 0);
	assert_int_equal(strlen(q.name), 253);
	snprintf(longest, sizeof(longest), "%s.%s.%s.%s", label63, label63, label63, label62);
	a_query(&p, longest);
	assert_refused_with(&p, DNS_QUERY_E_NAME_TOO_LONG, DNS_RCODE_FORMERR);
}

/* --- Dropped: nothing to answer ------------------------------------------------------ */

static void test_packet_shorter_than_a_header_is_dropped(void **state)
{
	struct pkt p;

	(void)state;
	a_query(&p, "example.test");
	for (size_t len = 0; len < DNS_HEADER_SIZE; len++) {
		p.len = len;
		assert_refused_with(&p, DNS_QUERY_E_SHORT, -1);
	}
}

static void test_response_is_never_answered(void **state)
{
	struct pkt p;

	(void)state;
	header(&p, 0x8180, 1, 1, 0, 0);
	question(&p, "example.test", 1, 1);
	assert_refused_with(&p, DNS_QUERY_E_RESPONSE, -1);
}

/* --- Answered locally -------------------------------------------------------------------- */

static void test_truncated_question_is_formerr(void **state)
{
	struct pkt p;

	(void)state;
	a_query(&p, "example.test");
	/* cut inside the name, at the root octet, inside QTYPE and QCLASS */
	for (size_t cut = DNS_HEADER_SIZE; cut < p.len; cut++) {
		struct pkt t = p;
		t.len = cut;
		assert_refused_with(&t, DNS_QUERY_E_TRUNCATED, DNS_RCODE_FORMERR);
	}
}

static void test_compression_pointer_in_query_is_formerr(void **state)
{
	struct pkt p;

	(void)state;
	header(&p, 0x0100, 1, 0, 0, 0);
	put(&p, "\xc0\x0c", 2);
	put16(&p, 1);
	put16(&p, 1);
	assert_refused_with(&p, DNS_QUERY_E_POINTER, DNS_RCODE_FORMERR);
	/* after a label too */
	header(&p, 0x0100, 1, 0, 0, 0);
	put(&p, "\x03" "api\xc0\x0c", 6);
	put16(&p, 1);
	put16(&p, 1);
	assert_refused_with(&p, DNS_QUERY_E_POINTER, DNS_RCODE_FORMERR);
}

static void test_label_longer_than_63_is_formerr(void **state)
{
	char label[65];
	struct pkt p;

	(void)state;
	memset(label, 'x', 64);
	label[64] = '\0';
	a_query(&p, label); /* length octet 64 = 0x40: the reserved 01 type */
	assert_refused_with(&p, DNS_QUERY_E_LABEL_LENGTH, DNS_RCODE_FORMERR);
	header(&p, 0x0100, 1, 0, 0, 0);
	put(&p, "\x80", 1); /* 10 type */
	assert_refused_with(&p, DNS_QUERY_E_LABEL_LENGTH, DNS_RCODE_FORMERR);
}

static void test_bytes_outside_hostname_set_are_formerr(void **state)
{
	static const char *const bad[] = { "a b.test", "a\x01.test", "caf\xc3\xa9.test", "a*.test",
					   "a/b.test" };
	struct pkt p;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		a_query(&p, bad[i]);
		assert_refused_with(&p, DNS_QUERY_E_LABEL_CHAR, DNS_RCODE_FORMERR);
	}
	/* a dot inside a label (wire form can hold one) */
	header(&p, 0x0100, 1, 0, 0, 0);
	put(&p, "\x03" "a.b\x00", 5);
	put16(&p, 1);
	put16(&p, 1);
	assert_refused_with(&p, DNS_QUERY_E_LABEL_CHAR, DNS_RCODE_FORMERR);
}

static void test_empty_label_inside_a_name_cannot_occur(void **state)
{
	struct dns_query q;
	struct pkt p;

	(void)state;
	/* "a..b": the zero octet ends the name, the rest is trailing */
	header(&p, 0x0100, 1, 0, 0, 0);
	put(&p, "\x01" "a\x00\x01" "b\x00", 6);
	put16(&p, 1);
	put16(&p, 1);
	assert_int_not_equal(parse(&p, &q), 0);
}

static void test_question_count_other_than_one_is_formerr(void **state)
{
	struct pkt p;

	(void)state;
	header(&p, 0x0100, 0, 0, 0, 0);
	assert_refused_with(&p, DNS_QUERY_E_COUNTS, DNS_RCODE_FORMERR);
	header(&p, 0x0100, 2, 0, 0, 0);
	question(&p, "a.test", 1, 1);
	question(&p, "b.test", 1, 1);
	assert_refused_with(&p, DNS_QUERY_E_COUNTS, DNS_RCODE_FORMERR);
}

static void test_answer_authority_or_two_additional_records_are_formerr(void **state)
{
	static const unsigned counts[][3] = { { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 2 } };
	struct pkt p;

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		header(&p, 0x0100, 1, counts[i][0], counts[i][1], counts[i][2]);
		question(&p, "example.test", 1, 1);
		assert_refused_with(&p, DNS_QUERY_E_COUNTS, DNS_RCODE_FORMERR);
	}
}

static void test_tc_z_or_rcode_in_a_query_is_formerr(void **state)
{
	static const unsigned flags[] = { 0x0300, 0x0140, 0x0101, 0x010f };
	struct pkt p;

	(void)state;
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		header(&p, flags[i], 1, 0, 0, 0);
		question(&p, "example.test", 1, 1);
		assert_refused_with(&p, DNS_QUERY_E_FLAGS, DNS_RCODE_FORMERR);
	}
}

static void test_other_opcodes_are_notimp(void **state)
{
	struct pkt p;

	(void)state;
	for (unsigned op = 1; op < 16; op++) {
		header(&p, 0x0100 | op << 11, 1, 0, 0, 0);
		question(&p, "example.test", 1, 1);
		assert_refused_with(&p, DNS_QUERY_E_OPCODE, DNS_RCODE_NOTIMP);
	}
}

static void test_qtype_zero_is_formerr_and_zone_transfers_notimp(void **state)
{
	struct pkt p;

	(void)state;
	header(&p, 0x0100, 1, 0, 0, 0);
	question(&p, "example.test", 0, 1);
	assert_refused_with(&p, DNS_QUERY_E_QTYPE, DNS_RCODE_FORMERR);
	for (unsigned t = 251; t <= 254; t++) {
		header(&p, 0x0100, 1, 0, 0, 0);
		question(&p, "example.test", t, 1);
		assert_refused_with(&p, DNS_QUERY_E_QTYPE_UNSUPPORTED, DNS_RCODE_NOTIMP);
	}
}

static void test_class_other_than_in_is_refused(void **state)
{
	struct pkt p;

	(void)state;
	header(&p, 0x0000, 1, 0, 0, 0);
	question(&p, "version.bind", 16, 3); /* CH TXT */
	assert_refused_with(&p, DNS_QUERY_E_QCLASS, DNS_RCODE_REFUSED);
}

static void test_additional_record_must_be_a_well_formed_opt(void **state)
{
	static const uint8_t ragged[] = { 0, 10, 0, 8, 1, 2, 3 }; /* says 8, has 3 */
	struct pkt p;

	(void)state;
	/* not OPT: a TSIG-like record */
	header(&p, 0x0100, 1, 0, 0, 1);
	question(&p, "example.test", 1, 1);
	put(&p, "", 1);
	put16(&p, 250);
	put16(&p, 255);
	put16(&p, 0);
	put16(&p, 0);
	put16(&p, 0);
	assert_refused_with(&p, DNS_QUERY_E_OPT, DNS_RCODE_FORMERR);
	/* OPT with an owner other than the root */
	header(&p, 0x0100, 1, 0, 0, 1);
	question(&p, "example.test", 1, 1);
	put(&p, "\x01x", 2);
	assert_refused_with(&p, DNS_QUERY_E_OPT, DNS_RCODE_FORMERR);
	/* options that do not tile the RDATA */
	header(&p, 0x0100, 1, 0, 0, 1);
	question(&p, "example.test", 1, 1);
	opt(&p, 1232, ragged, sizeof(ragged));
	assert_refused_with(&p, DNS_QUERY_E_OPT, DNS_RCODE_FORMERR);
	/* RDLENGTH past the end */
	header(&p, 0x0100, 1, 0, 0, 1);
	question(&p, "example.test", 1, 1);
	opt(&p, 1232, NULL, 0);
	p.b[p.len - 1] = 4;
	assert_refused_with(&p, DNS_QUERY_E_TRUNCATED, DNS_RCODE_FORMERR);
}

static void test_bytes_after_the_last_record_are_formerr(void **state)
{
	struct pkt p;

	(void)state;
	a_query(&p, "example.test");
	put(&p, "\0", 1);
	assert_refused_with(&p, DNS_QUERY_E_TRAILING, DNS_RCODE_FORMERR);
}

static void test_query_longer_than_1232_bytes_is_formerr(void **state)
{
	static uint8_t pad[DNS_QUERY_MAX];
	struct dns_query q;
	struct pkt p;
	size_t room;

	(void)state;
	header(&p, 0x0100, 1, 0, 0, 1);
	question(&p, "example.test", 1, 1);
	/* one PADDING option filling the query to exactly the limit */
	room = DNS_QUERY_MAX - p.len - 11 - 4;
	pad[0] = 0;
	pad[1] = 12;
	pad[2] = (uint8_t)(room >> 8);
	pad[3] = (uint8_t)room;
	opt(&p, 1232, pad, 4 + room);
	assert_int_equal(p.len, DNS_QUERY_MAX);
	assert_int_equal(parse(&p, &q), 0);
	put(&p, "\0", 1);
	assert_refused_with(&p, DNS_QUERY_E_TOO_LONG, DNS_RCODE_FORMERR);
}

/* --- Local replies ------------------------------------------------------------------------ */

static void test_formerr_reply_is_a_bare_header_with_id_opcode_and_rd(void **state)
{
	uint8_t out[64];
	size_t len = 0;
	struct pkt p;

	(void)state;
	a_query(&p, "example.test");
	p.b[2] |= 0x10; /* opcode bit, for the echo check */
	assert_int_equal(dns_reply_local(p.b, p.len, NULL, DNS_RCODE_FORMERR, false, out,
					 sizeof(out), &len), 0);
	assert_int_equal(len, DNS_HEADER_SIZE);
	assert_int_equal(out[0], 0xbe);
	assert_int_equal(out[1], 0xef);
	/* QR | opcode 2 | RD, RA, rcode 1 */
	assert_int_equal(out[2], 0x80 | 0x10 | 0x01);
	assert_int_equal(out[3], 0x80 | 0x01);
	for (int i = 4; i < 12; i++)
		assert_int_equal(out[i], 0);
}

static void test_reply_with_query_echoes_question_and_opt(void **state)
{
	struct dns_query q;
	uint8_t out[128];
	size_t len = 0;
	struct pkt p;

	(void)state;
	header(&p, 0x0100, 1, 0, 0, 1);
	question(&p, "example.test", 1, 1);
	opt(&p, 4096, NULL, 0);
	assert_int_equal(parse(&p, &q), 0);
	assert_int_equal(dns_reply_local(p.b, p.len, &q, DNS_RCODE_NOERROR, true, out, sizeof(out),
					 &len), 0);
	assert_int_equal(len, DNS_HEADER_SIZE + q.question_len + 11);
	assert_true(out[2] & 0x02); /* TC */
	assert_int_equal(out[5], 1); /* QDCOUNT */
	assert_int_equal(out[11], 1); /* ARCOUNT: our OPT */
	assert_memory_equal(out + DNS_HEADER_SIZE, p.b + DNS_HEADER_SIZE, q.question_len);
	assert_int_equal(out[DNS_HEADER_SIZE + q.question_len + 2], 41);
}

static void test_reply_refuses_short_query_and_small_buffer(void **state)
{
	struct dns_query q;
	uint8_t out[64];
	size_t len = 0;
	struct pkt p;

	(void)state;
	a_query(&p, "example.test");
	assert_int_equal(parse(&p, &q), 0);
	assert_int_equal(dns_reply_local(p.b, 11, NULL, 1, false, out, sizeof(out), &len), -EINVAL);
	assert_int_equal(dns_reply_local(p.b, p.len, &q, 2, false, out, 20, &len), -ENOBUFS);
	assert_int_equal(len, 0);
}

static void test_answer_check_wants_same_id_and_qr(void **state)
{
	struct dns_query q;
	uint8_t ans[64];
	struct pkt p;

	(void)state;
	a_query(&p, "example.test");
	assert_int_equal(parse(&p, &q), 0);
	memcpy(ans, p.b, p.len);
	ans[2] |= 0x80;
	assert_int_equal(dns_answer_check(ans, p.len, &q), 0);
	ans[1] ^= 1;
	assert_int_equal(dns_answer_check(ans, p.len, &q), -EBADMSG);
	ans[1] ^= 1;
	ans[2] &= 0x7f;
	assert_int_equal(dns_answer_check(ans, p.len, &q), -EBADMSG);
	ans[2] |= 0x80;
	assert_int_equal(dns_answer_check(ans, 11, &q), -EBADMSG);
}

static void test_strerror_names_every_error(void **state)
{
	const char *unknown = dns_query_strerror(-1);

	(void)state;
	for (int e = DNS_QUERY_E_SHORT; e <= DNS_QUERY_E_TRAILING; e++) {
		assert_non_null(dns_query_strerror(-e));
		assert_string_not_equal(dns_query_strerror(-e), unknown);
	}
	assert_string_equal(dns_query_strerror(-(DNS_QUERY_E_TRAILING + 1)), unknown);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_a_query_parses),
		cmocka_unit_test(test_edns_query_reports_udp_size_and_tiles_options),
		cmocka_unit_test(test_edns_udp_size_below_512_counts_as_512),
		cmocka_unit_test(test_root_and_underscore_names_parse),
		cmocka_unit_test(test_cd_and_ad_bits_are_allowed),
		cmocka_unit_test(test_name_of_exactly_255_bytes_parses_and_256_does_not),
		cmocka_unit_test(test_packet_shorter_than_a_header_is_dropped),
		cmocka_unit_test(test_response_is_never_answered),
		cmocka_unit_test(test_truncated_question_is_formerr),
		cmocka_unit_test(test_compression_pointer_in_query_is_formerr),
		cmocka_unit_test(test_label_longer_than_63_is_formerr),
		cmocka_unit_test(test_bytes_outside_hostname_set_are_formerr),
		cmocka_unit_test(test_empty_label_inside_a_name_cannot_occur),
		cmocka_unit_test(test_question_count_other_than_one_is_formerr),
		cmocka_unit_test(test_answer_authority_or_two_additional_records_are_formerr),
		cmocka_unit_test(test_tc_z_or_rcode_in_a_query_is_formerr),
		cmocka_unit_test(test_other_opcodes_are_notimp),
		cmocka_unit_test(test_qtype_zero_is_formerr_and_zone_transfers_notimp),
		cmocka_unit_test(test_class_other_than_in_is_refused),
		cmocka_unit_test(test_additional_record_must_be_a_well_formed_opt),
		cmocka_unit_test(test_bytes_after_the_last_record_are_formerr),
		cmocka_unit_test(test_query_longer_than_1232_bytes_is_formerr),
		cmocka_unit_test(test_formerr_reply_is_a_bare_header_with_id_opcode_and_rd),
		cmocka_unit_test(test_reply_with_query_echoes_question_and_opt),
		cmocka_unit_test(test_reply_refuses_short_query_and_small_buffer),
		cmocka_unit_test(test_answer_check_wants_same_id_and_qr),
		cmocka_unit_test(test_strerror_names_every_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
