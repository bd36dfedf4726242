/*
 * dns_wire: strict query parsing, answer building, error echoes.
 *
 * The "glibc_*" vectors are queries glibc 2.36's stub resolver (res_query)
 * sent to a capturing UDP socket; the "dig_*" vector follows dig 9.18's
 * default layout (AD set, EDNS 1232 with a client cookie).  Malformed
 * vectors are written out by hand, one rule broken each.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dns_wire.h"

#define V(s) (const uint8_t *)(s), (sizeof(s) - 1u)

/* res_query("Example.COM", C_IN, T_A): RD, no EDNS, case as given. */
static const uint8_t glibc_a_mixed_case[] = {
	0x28, 0x70, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x07, 'E', 'x', 'a', 'm', 'p', 'l', 'e', 0x03, 'C', 'O', 'M', 0x00,
	0x00, 0x01, 0x00, 0x01,
};

/* res_query("www.example.com", C_IN, T_AAAA) */
static const uint8_t glibc_aaaa[] = {
	0x07, 0x75, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x03, 'w', 'w', 'w', 0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x03, 'c', 'o', 'm', 0x00,
	0x00, 0x1c, 0x00, 0x01,
};

/* RES_USE_EDNS0: res_query("api.openai.com", C_IN, T_A), payload 512. */
static const uint8_t glibc_a_edns[] = {
	0xb6, 0xd5, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x03, 'a', 'p', 'i', 0x06, 'o', 'p', 'e', 'n', 'a', 'i', 0x03, 'c', 'o', 'm', 0x00,
	0x00, 0x01, 0x00, 0x01,
	0x00, 0x00, 0x29, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

/* RES_USE_EDNS0: res_query("www.example.com", C_IN, 65 HTTPS) */
static const uint8_t glibc_https_edns[] = {
	0xe8, 0xa7, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x03, 'w', 'w', 'w', 0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x03, 'c', 'o', 'm', 0x00,
	0x00, 0x41, 0x00, 0x01,
	0x00, 0x00, 0x29, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

/* RES_USE_DNSSEC: res_query("xn--bcher-kva.example", C_IN, T_A), DO set. */
static const uint8_t glibc_a_dnssec_ok[] = {
	0x16, 0x2b, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x0d, 'x', 'n', '-', '-', 'b', 'c', 'h', 'e', 'r', '-', 'k', 'v', 'a',
	0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x00,
	0x00, 0x01, 0x00, 0x01,
	0x00, 0x00, 0x29, 0x02, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,
};

/* dig example.com: RD + AD, EDNS payload 1232, COOKIE option (10) of 8. */
static const uint8_t dig_a_cookie[] = {
	0x5c, 0x31, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x03, 'c', 'o', 'm', 0x00,
	0x00, 0x01, 0x00, 0x01,
	0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c,
	0x00, 0x0a, 0x00, 0x08, 0x9a, 0x3f, 0x51, 0x0e, 0x77, 0xc2, 0x01, 0x4d,
};

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void test_parse_glibc_query_without_edns(void **state)
{
	struct dns_wire_query q;

	(void)state;
	assert_int_equal(dns_wire_parse_query(glibc_a_mixed_case, sizeof(glibc_a_mixed_case), &q),
			 0);
	assert_int_equal(q.id, 0x2870);
	assert_int_equal(q.flags, DNS_FLAG_RD);
	assert_int_equal(q.qtype, DNS_TYPE_A);
	assert_int_equal(q.qclass, DNS_CLASS_IN);
	assert_ptr_equal(q.qname, glibc_a_mixed_case + 12);
	assert_int_equal(q.qname_len, 13);
	assert_ptr_equal(q.question, glibc_a_mixed_case + 12);
	assert_int_equal(q.question_len, 17);
	assert_false(q.edns);
	assert_int_equal(q.edns_udp_size, DNS_WIRE_UDP_MIN);
}

static void test_parse_glibc_aaaa_query(void **state)
{
	struct dns_wire_query q;

	(void)state;
	assert_int_equal(dns_wire_parse_query(glibc_aaaa, sizeof(glibc_aaaa), &q), 0);
	assert_int_equal(q.qtype, DNS_TYPE_AAAA);
	assert_int_equal(q.qname_len, 17);
}

static void test_parse_reports_edns(void **state)
{
	struct dns_wire_query q;

	(void)state;
	assert_int_equal(dns_wire_parse_query(glibc_a_edns, sizeof(glibc_a_edns), &q), 0);
	assert_true(q.edns);
	assert_int_equal(q.edns_version, 0);
	assert_false(q.edns_do);
	assert_int_equal(q.edns_udp_size, 512);
	assert_int_equal(q.question_len, 20);

	assert_int_equal(dns_wire_parse_query(glibc_a_dnssec_ok, sizeof(glibc_a_dnssec_ok), &q), 0);
	assert_true(q.edns_do);
}

static void test_parse_ignores_edns_options(void **state)
{
	struct dns_wire_query q;

	(void)state;
	assert_int_equal(dns_wire_parse_query(dig_a_cookie, sizeof(dig_a_cookie), &q), 0);
	assert_int_equal(q.flags, DNS_FLAG_RD | DNS_FLAG_AD);
	assert_true(q.edns);
	assert_int_equal(q.edns_udp_size, 1232);
}

static void test_parse_clamps_small_edns_payload_to_512(void **state)
{
	struct dns_wire_query q;

	(void)state;
	assert_int_equal(dns_wire_parse_query(
		V("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01"
		  "\x01" "a" "\x00" "\x00\x01\x00\x01"
		  "\x00" "\x00\x29" "\x00\x10" "\x00\x01\x00\x00" "\x00\x00"), &q), 0);
	assert_int_equal(q.edns_udp_size, 512);
	assert_int_equal(q.edns_version, 1); /* reported; the caller answers BADVERS */
}

static void test_parse_accepts_any_octet_in_a_label(void **state)
{
	struct dns_wire_query q;
	char text[DNS_WIRE_TEXT_BUF] = "untouched";

	(void)state;
	/* "bücher.example" sent raw (UTF-8), as a broken client might */
	assert_int_equal(dns_wire_parse_query(
		V("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
		  "\x07" "b\xc3\xbc" "cher" "\x07" "example" "\x00" "\x00\x01\x00\x01"), &q), 0);
	assert_int_equal(dns_wire_name_text(q.qname, q.qname_len, text), -DNS_WIRE_E_NAME_TEXT);
	assert_string_equal(text, "untouched");
}

/* n labels of `label` bytes each, then the root, after a query header. */
static size_t make_long_query(uint8_t *buf, size_t n, size_t label, size_t last)
{
	static const uint8_t hdr[] = { 0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0 };
	size_t off = sizeof(hdr);

	memcpy(buf, hdr, sizeof(hdr));
	for (size_t i = 0; i <= n; i++) {
		size_t len = i < n ? label : last;

		if (len == 0)
			continue;
		buf[off++] = (uint8_t)len;
		memset(buf + off, 'a' + (int)(i % 26), len);
		off += len;
	}
	buf[off++] = 0;
	memcpy(buf + off, "\x00\x01\x00\x01", 4);
	return off + 4;
}

static void test_parse_name_of_255_bytes_and_not_256(void **state)
{
	uint8_t buf[600];
	struct dns_wire_query q;
	char text[DNS_WIRE_TEXT_BUF];
	size_t len;

	(void)state;
	/* 3 x (1 + 63) + (1 + 61) + root = 255 */
	len = make_long_query(buf, 3, 63, 61);
	assert_int_equal(dns_wire_parse_query(buf, len, &q), 0);
	assert_int_equal(q.qname_len, 255);
	assert_int_equal(dns_wire_name_text(q.qname, q.qname_len, text), 0);
	assert_int_equal(strlen(text), 253);

	len = make_long_query(buf, 3, 63, 62);
	assert_int_equal(dns_wire_parse_query(buf, len, &q), -DNS_WIRE_E_NAME_TOO_LONG);
	assert_int_equal(dns_wire_error_rcode(-DNS_WIRE_E_NAME_TOO_LONG), DNS_RCODE_FORMERR);
}

static void test_parse_refuses_message_over_65535_bytes(void **state)
{
	size_t len = DNS_WIRE_MSG_MAX + 1u;
	uint8_t *buf = calloc(1, len);
	struct dns_wire_query q;
	uint8_t out[DNS_WIRE_ANSWER_MAX];
	size_t out_len;

	(void)state;
	assert_non_null(buf);
	memcpy(buf, glibc_a_mixed_case, sizeof(glibc_a_mixed_case));
	assert_int_equal(dns_wire_parse_query(buf, len, &q), -DNS_WIRE_E_TOO_LONG);
	assert_int_equal(dns_wire_error_rcode(-DNS_WIRE_E_TOO_LONG), DNS_RCODE_FORMERR);
	assert_int_equal(dns_wire_build_error(buf, len, DNS_RCODE_FORMERR, out, sizeof(out),
					      &out_len), 0);
	assert_int_equal(get16(out), 0x2870);
	free(buf);
}

#define HDR_QD1 "\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
#define HDR_AR1 "\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01"
#define Q_EX "\x07" "example" "\x03" "com" "\x00" "\x00\x01\x00\x01"
#define OPT_HEAD "\x00" "\x00\x29" "\x04\xd0" "\x00\x00\x00\x00"

struct bad_case {
	const char *what;
	const uint8_t *msg;
	size_t len;
	int error;   /* -DNS_WIRE_E_* */
	int rcode;   /* answered with, -1: dropped */
	bool echo;   /* the error answer carries the question */
};

static const struct bad_case bad_cases[] = {
	{ "empty", V(""), -DNS_WIRE_E_SHORT, -1, false },
	{ "11 bytes", V("\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00"), -DNS_WIRE_E_SHORT, -1,
	  false },
	{ "QR set (a response)", V("\xab\xcd\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00" Q_EX),
	  -DNS_WIRE_E_RESPONSE, -1, false },
	{ "opcode IQUERY", V("\xab\xcd\x09\x00\x00\x01\x00\x00\x00\x00\x00\x00" Q_EX),
	  -DNS_WIRE_E_OPCODE, DNS_RCODE_NOTIMP, true },
	{ "opcode STATUS", V("\xab\xcd\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
	  -DNS_WIRE_E_OPCODE, DNS_RCODE_NOTIMP, false },
	{ "opcode NOTIFY", V("\xab\xcd\x20\x00\x00\x01\x00\x00\x00\x00\x00\x00" Q_EX),
	  -DNS_WIRE_E_OPCODE, DNS_RCODE_NOTIMP, true },
	{ "opcode UPDATE", V("\xab\xcd\x28\x00\x00\x01\x00\x00\x00\x00\x00\x00"
			     "\x07" "example" "\x03" "com" "\x00" "\x00\x06\x00\x01"),
	  -DNS_WIRE_E_OPCODE, DNS_RCODE_NOTIMP, true },
	{ "TC set", V("\xab\xcd\x03\x00\x00\x01\x00\x00\x00\x00\x00\x00" Q_EX),
	  -DNS_WIRE_E_FLAGS, DNS_RCODE_FORMERR, true },
	{ "Z set", V("\xab\xcd\x01\x40\x00\x01\x00\x00\x00\x00\x00\x00" Q_EX),
	  -DNS_WIRE_E_FLAGS, DNS_RCODE_FORMERR, true },
	{ "RCODE set", V("\xab\xcd\x01\x03\x00\x01\x00\x00\x00\x00\x00\x00" Q_EX),
	  -DNS_WIRE_E_FLAGS, DNS_RCODE_FORMERR, true },
	{ "QDCOUNT 0", V("\xab\xcd\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
	  -DNS_WIRE_E_COUNTS, DNS_RCODE_FORMERR, false },
	{ "QDCOUNT 2", V("\xab\xcd\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00" Q_EX Q_EX),
	  -DNS_WIRE_E_COUNTS, DNS_RCODE_FORMERR, false },
	{ "ANCOUNT 1", V("\xab\xcd\x01\x00\x00\x01\x00\x01\x00\x00\x00\x00" Q_EX),
	  -DNS_WIRE_E_COUNTS, DNS_RCODE_FORMERR, true },
	{ "NSCOUNT 1", V("\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x01\x00\x00" Q_EX),
	  -DNS_WIRE_E_COUNTS, DNS_RCODE_FORMERR, true },
	{ "ARCOUNT 2", V("\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x02" Q_EX OPT_HEAD
			 "\x00\x00" OPT_HEAD "\x00\x00"),
	  -DNS_WIRE_E_COUNTS, DNS_RCODE_FORMERR, true },
	{ "header only", V(HDR_QD1), -DNS_WIRE_E_TRUNCATED, DNS_RCODE_FORMERR, false },
	{ "label longer than the message", V(HDR_QD1 "\x07" "exam"),
	  -DNS_WIRE_E_TRUNCATED, DNS_RCODE_FORMERR, false },
	{ "name without root label", V(HDR_QD1 "\x07" "example" "\x03" "com"),
	  -DNS_WIRE_E_TRUNCATED, DNS_RCODE_FORMERR, false },
	{ "no QTYPE", V(HDR_QD1 "\x07" "example" "\x03" "com" "\x00"),
	  -DNS_WIRE_E_TRUNCATED, DNS_RCODE_FORMERR, false },
	{ "half a QCLASS", V(HDR_QD1 "\x07" "example" "\x03" "com" "\x00" "\x00\x01\x00"),
	  -DNS_WIRE_E_TRUNCATED, DNS_RCODE_FORMERR, false },
	{ "pointer as the name", V(HDR_QD1 "\xc0\x0c" "\x00\x01\x00\x01"),
	  -DNS_WIRE_E_POINTER, DNS_RCODE_FORMERR, false },
	{ "pointer after a label", V(HDR_QD1 "\x03" "www" "\xc0\x0c" "\x00\x01\x00\x01"),
	  -DNS_WIRE_E_POINTER, DNS_RCODE_FORMERR, false },
	{ "label type 01 (EDNS0 bit label)", V(HDR_QD1 "\x41\x00" "\x00\x01\x00\x01"),
	  -DNS_WIRE_E_LABEL_TYPE, DNS_RCODE_FORMERR, false },
	{ "label type 10", V(HDR_QD1 "\x80" "\x00\x01\x00\x01"),
	  -DNS_WIRE_E_LABEL_TYPE, DNS_RCODE_FORMERR, false },
	{ "label of 64 bytes", V(HDR_QD1 "\x40" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
				 "\x00" "\x00\x01\x00\x01"),
	  -DNS_WIRE_E_LABEL_TYPE, DNS_RCODE_FORMERR, false },
	{ "byte after the question", V(HDR_QD1 Q_EX "\x00"),
	  -DNS_WIRE_E_TRAILING, DNS_RCODE_FORMERR, true },
	{ "ARCOUNT 1 without a record", V(HDR_AR1 Q_EX), -DNS_WIRE_E_TRUNCATED, DNS_RCODE_FORMERR,
	  true },
	{ "OPT cut in its fixed part", V(HDR_AR1 Q_EX "\x00" "\x00\x29" "\x04\xd0" "\x00\x00"),
	  -DNS_WIRE_E_TRUNCATED, DNS_RCODE_FORMERR, true },
	{ "OPT owner not the root", V(HDR_AR1 Q_EX "\x01" "a" "\x00" "\x00\x29" "\x04\xd0"
				      "\x00\x00\x00\x00" "\x00\x00"),
	  -DNS_WIRE_E_OPT, DNS_RCODE_FORMERR, true },
	{ "OPT owner a pointer", V(HDR_AR1 Q_EX "\xc0\x0c" "\x00\x29" "\x04\xd0"
				   "\x00\x00\x00\x00" "\x00\x00"),
	  -DNS_WIRE_E_OPT, DNS_RCODE_FORMERR, true },
	{ "additional record of type A (not OPT)", V(HDR_AR1 Q_EX "\x00" "\x00\x01" "\x00\x01"
						     "\x00\x00\x00\x3c" "\x00\x04" "\x01\x02\x03\x04"),
	  -DNS_WIRE_E_OPT, DNS_RCODE_FORMERR, true },
	{ "TSIG as the additional record", V(HDR_AR1 Q_EX "\x00" "\x00\xfa" "\x00\xff"
					     "\x00\x00\x00\x00" "\x00\x00"),
	  -DNS_WIRE_E_OPT, DNS_RCODE_FORMERR, true },
	{ "OPT RDLENGTH past the end", V(HDR_AR1 Q_EX OPT_HEAD "\x00\x08" "\x00\x0a\x00\x08"),
	  -DNS_WIRE_E_TRUNCATED, DNS_RCODE_FORMERR, true },
	{ "OPT option longer than RDATA", V(HDR_AR1 Q_EX OPT_HEAD "\x00\x06" "\x00\x0a\x00\x08"
					    "\x01\x02"),
	  -DNS_WIRE_E_OPT, DNS_RCODE_FORMERR, true },
	{ "OPT RDATA with half an option header", V(HDR_AR1 Q_EX OPT_HEAD "\x00\x03"
						    "\x00\x0a\x00"),
	  -DNS_WIRE_E_OPT, DNS_RCODE_FORMERR, true },
	{ "bytes after the OPT", V(HDR_AR1 Q_EX OPT_HEAD "\x00\x00" "\xff\xff"),
	  -DNS_WIRE_E_TRAILING, DNS_RCODE_FORMERR, true },
};

static void check_error_answer(const struct bad_case *c)
{
	uint8_t out[DNS_WIRE_ANSWER_MAX];
	struct dns_wire_response resp;
	size_t out_len = 0;
	uint16_t qflags = get16(c->msg + 2);

	assert_int_equal(dns_wire_build_error(c->msg, c->len, (unsigned)c->rcode, out,
					      sizeof(out), &out_len), 0);
	if (dns_wire_parse_response(out, out_len, &resp) != 0)
		fail_msg("%s: error answer does not parse back", c->what);
	assert_int_equal(resp.id, get16(c->msg));
	assert_int_equal(resp.rcode, (unsigned)c->rcode);
	assert_int_equal(resp.flags & DNS_FLAG_OPCODE, qflags & DNS_FLAG_OPCODE);
	assert_int_equal(resp.flags & DNS_FLAG_RD, qflags & DNS_FLAG_RD);
	assert_true(resp.flags & DNS_FLAG_RA);
	assert_false(resp.flags & (DNS_FLAG_TC | DNS_FLAG_AA | DNS_FLAG_Z));
	assert_false(resp.edns);
	assert_false(resp.has_a);
	if (resp.has_question != c->echo)
		fail_msg("%s: question echoed %d, want %d", c->what, resp.has_question, c->echo);
	if (c->echo) {
		assert_int_equal(resp.question_len, 17);
		assert_memory_equal(resp.question, c->msg + DNS_WIRE_HEADER_SIZE, 17);
	}
}

static void test_malformed_queries_are_refused_with_the_right_rcode(void **state)
{
	size_t n = sizeof(bad_cases) / sizeof(bad_cases[0]);

	(void)state;
	assert_true(n >= 25);
	for (size_t i = 0; i < n; i++) {
		const struct bad_case *c = &bad_cases[i];
		struct dns_wire_query q, sentinel;
		int r;

		memset(&q, 0x5a, sizeof(q));
		memcpy(&sentinel, &q, sizeof(q));
		r = dns_wire_parse_query(c->msg, c->len, &q);
		if (r != c->error)
			fail_msg("case %zu '%s': got %d (%s), want %d (%s)", i, c->what, r,
				 dns_wire_strerror(r), c->error, dns_wire_strerror(c->error));
		assert_memory_equal(&q, &sentinel, sizeof(q)); /* ret_* only on success */
		assert_int_equal(dns_wire_error_rcode(r), c->rcode);
		if (c->rcode >= 0)
			check_error_answer(c);
	}
}

static const uint8_t expected_a_answer[] = {
	0x28, 0x70, 0x81, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
	0x07, 'E', 'x', 'a', 'm', 'p', 'l', 'e', 0x03, 'C', 'O', 'M', 0x00,
	0x00, 0x01, 0x00, 0x01,
	0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04,
	0xc6, 0x12, 0x00, 0x02,
};

static void test_a_answer_bytes_echo_the_question_case(void **state)
{
	struct dns_wire_query q;
	uint8_t out[DNS_WIRE_ANSWER_MAX];
	size_t len;

	(void)state;
	assert_int_equal(dns_wire_parse_query(glibc_a_mixed_case, sizeof(glibc_a_mixed_case), &q),
			 0);
	assert_int_equal(dns_wire_build_answer(&q, DNS_RCODE_NOERROR, true, 0xc6120002u, 60, out,
					       sizeof(out), &len), 0);
	assert_int_equal(len, sizeof(expected_a_answer));
	assert_memory_equal(out, expected_a_answer, len);
}

static void test_answer_parses_back(void **state)
{
	struct dns_wire_query q;
	struct dns_wire_response resp;
	uint8_t out[DNS_WIRE_ANSWER_MAX];
	size_t len;

	(void)state;
	assert_int_equal(dns_wire_parse_query(dig_a_cookie, sizeof(dig_a_cookie), &q), 0);
	assert_int_equal(dns_wire_build_answer(&q, 0, true, 0xc6130101u, 60, out, sizeof(out),
					       &len), 0);
	assert_int_equal(dns_wire_parse_response(out, len, &resp), 0);
	assert_int_equal(resp.id, 0x5c31);
	assert_int_equal(resp.rcode, 0);
	assert_true(resp.has_question);
	assert_memory_equal(resp.question, q.question, q.question_len);
	assert_true(resp.has_a);
	assert_int_equal(resp.a_addr, 0xc6130101u);
	assert_int_equal(resp.a_ttl, 60);
	assert_true(resp.edns);
	/* RD copied; AD not claimed: nothing here is DNSSEC-validated */
	assert_int_equal(resp.flags, DNS_FLAG_QR | DNS_FLAG_RD | DNS_FLAG_RA);
}

static void test_answer_copies_rd_and_cd_only(void **state)
{
	static const uint8_t query[] = {
		0x00, 0x01, 0x04, 0x30, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x01, 'a', 0x00, 0x00, 0x01, 0x00, 0x01,
	}; /* AA, AD and CD set, RD clear */
	struct dns_wire_query q;
	uint8_t out[DNS_WIRE_ANSWER_MAX];
	size_t len;

	(void)state;
	assert_int_equal(dns_wire_parse_query(query, sizeof(query), &q), 0);
	assert_int_equal(dns_wire_build_answer(&q, DNS_RCODE_NXDOMAIN, false, 0, 0, out,
					       sizeof(out), &len), 0);
	assert_int_equal(get16(out + 2), DNS_FLAG_QR | DNS_FLAG_RA | DNS_FLAG_CD | 3);
}

static void test_nodata_answer_carries_minimal_opt(void **state)
{
	struct dns_wire_query q;
	uint8_t out[DNS_WIRE_ANSWER_MAX];
	size_t len;
	static const uint8_t opt[] = { 0x00, 0x00, 0x29, 0x04, 0xd0, 0, 0, 0, 0, 0, 0 };

	(void)state;
	assert_int_equal(dns_wire_parse_query(glibc_https_edns, sizeof(glibc_https_edns), &q), 0);
	assert_int_equal(dns_wire_build_answer(&q, 0, false, 0, 0, out, sizeof(out), &len), 0);
	assert_int_equal(len, 12 + q.question_len + sizeof(opt));
	assert_int_equal(get16(out + 6), 0); /* ANCOUNT */
	assert_int_equal(get16(out + 8), 0); /* NSCOUNT: no SOA */
	assert_int_equal(get16(out + 10), 1);
	assert_memory_equal(out + 12 + q.question_len, opt, sizeof(opt));
}

static void test_answer_copies_do_bit(void **state)
{
	struct dns_wire_query q;
	struct dns_wire_response resp;
	uint8_t out[DNS_WIRE_ANSWER_MAX];
	size_t len;

	(void)state;
	assert_int_equal(dns_wire_parse_query(glibc_a_dnssec_ok, sizeof(glibc_a_dnssec_ok), &q), 0);
	assert_int_equal(dns_wire_build_answer(&q, 0, true, 0xc6120002u, 60, out, sizeof(out),
					       &len), 0);
	assert_int_equal(dns_wire_parse_response(out, len, &resp), 0);
	assert_true(resp.edns);
	assert_true(resp.edns_do);
	assert_int_equal(resp.edns_version, 0);
}

static void test_badvers_only_with_edns(void **state)
{
	struct dns_wire_query q;
	struct dns_wire_response resp;
	uint8_t out[DNS_WIRE_ANSWER_MAX];
	size_t len = 7;

	(void)state;
	assert_int_equal(dns_wire_parse_query(glibc_aaaa, sizeof(glibc_aaaa), &q), 0);
	assert_int_equal(dns_wire_build_answer(&q, DNS_RCODE_BADVERS, false, 0, 0, out,
					       sizeof(out), &len), -EINVAL);
	assert_int_equal(len, 7);

	assert_int_equal(dns_wire_parse_query(glibc_a_edns, sizeof(glibc_a_edns), &q), 0);
	assert_int_equal(dns_wire_build_answer(&q, DNS_RCODE_BADVERS, false, 0, 0, out,
					       sizeof(out), &len), 0);
	assert_int_equal(get16(out + 2) & DNS_FLAG_RCODE, 0); /* 16: all in the OPT */
	assert_int_equal(dns_wire_parse_response(out, len, &resp), 0);
	assert_int_equal(resp.rcode, DNS_RCODE_BADVERS);
}

static void test_a_record_only_with_noerror(void **state)
{
	struct dns_wire_query q;
	uint8_t out[DNS_WIRE_ANSWER_MAX];
	size_t len;

	(void)state;
	assert_int_equal(dns_wire_parse_query(glibc_aaaa, sizeof(glibc_aaaa), &q), 0);
	assert_int_equal(dns_wire_build_answer(&q, DNS_RCODE_SERVFAIL, true, 0xc6120002u, 60, out,
					       sizeof(out), &len), -EINVAL);
}

static void test_build_answer_reports_small_buffer(void **state)
{
	struct dns_wire_query q;
	uint8_t out[DNS_WIRE_ANSWER_MAX];
	size_t len = 7;

	(void)state;
	assert_int_equal(dns_wire_parse_query(glibc_a_mixed_case, sizeof(glibc_a_mixed_case), &q),
			 0);
	assert_int_equal(dns_wire_build_answer(&q, 0, true, 0xc6120002u, 60, out,
					       sizeof(expected_a_answer) - 1, &len), -ENOBUFS);
	assert_int_equal(len, 7);
	assert_int_equal(dns_wire_build_error(glibc_a_mixed_case, sizeof(glibc_a_mixed_case),
					      DNS_RCODE_FORMERR, out, 12, &len), -ENOBUFS);
	assert_int_equal(len, 7);
}

static void test_largest_answer_fits_512_bytes(void **state)
{
	uint8_t buf[600], out[DNS_WIRE_ANSWER_MAX];
	struct dns_wire_query q;
	struct dns_wire_response resp;
	size_t len, out_len;

	(void)state;
	len = make_long_query(buf, 3, 63, 61);
	buf[11] = 1; /* ARCOUNT, then an OPT */
	memcpy(buf + len, "\x00\x00\x29\x04\xd0\x00\x00\x80\x00\x00\x00", 11);
	len += 11;
	assert_int_equal(dns_wire_parse_query(buf, len, &q), 0);
	assert_int_equal(dns_wire_build_answer(&q, 0, true, 0xc6120002u, 60, out, sizeof(out),
					       &out_len), 0);
	assert_int_equal(out_len, DNS_WIRE_ANSWER_WORST);
	assert_true(out_len <= 512);
	assert_int_equal(dns_wire_parse_response(out, out_len, &resp), 0);
	assert_true(resp.has_a);
}

static void test_build_error_needs_a_header(void **state)
{
	uint8_t out[DNS_WIRE_ANSWER_MAX];
	size_t len = 7;

	(void)state;
	assert_int_equal(dns_wire_build_error(glibc_aaaa, 11, DNS_RCODE_FORMERR, out, sizeof(out),
					      &len), -EINVAL);
	assert_int_equal(dns_wire_build_error(glibc_aaaa, sizeof(glibc_aaaa), DNS_RCODE_BADVERS,
					      out, sizeof(out), &len), -EINVAL);
	assert_int_equal(len, 7);
}

static void test_name_text(void **state)
{
	char text[DNS_WIRE_TEXT_BUF];

	(void)state;
	assert_int_equal(dns_wire_name_text(V("\x00"), text), 0);
	assert_string_equal(text, "");
	assert_int_equal(dns_wire_name_text(glibc_a_mixed_case + 12, 13, text), 0);
	assert_string_equal(text, "Example.COM");
	assert_int_equal(dns_wire_name_text(V("\x04" "_tcp" "\x01" "x" "\x00"), text), 0);
	assert_string_equal(text, "_tcp.x");
	strcpy(text, "untouched");
	/* a dot inside a label would read as two labels */
	assert_int_equal(dns_wire_name_text(V("\x03" "a.b" "\x03" "com" "\x00"), text),
			 -DNS_WIRE_E_NAME_TEXT);
	assert_int_equal(dns_wire_name_text(V("\x03" "a b" "\x00"), text), -DNS_WIRE_E_NAME_TEXT);
	assert_int_equal(dns_wire_name_text(V("\x02" "a\x7f" "\x00"), text), -DNS_WIRE_E_NAME_TEXT);
	assert_int_equal(dns_wire_name_text(V("\x02" "a\x00" "\x00"), text), -DNS_WIRE_E_NAME_TEXT);
	assert_int_equal(dns_wire_name_text(V("\x01" "a" "\x00" "x"), text), -DNS_WIRE_E_TRAILING);
	assert_int_equal(dns_wire_name_text(V("\x01" "a"), text), -DNS_WIRE_E_TRUNCATED);
	assert_int_equal(dns_wire_name_text(V("\xc0\x0c"), text), -DNS_WIRE_E_POINTER);
	assert_string_equal(text, "untouched");
}

#define RHDR(an, ar) "\xab\xcd\x81\x80\x00\x01\x00" an "\x00\x00\x00" ar
#define A_RR "\xc0\x0c" "\x00\x01" "\x00\x01" "\x00\x00\x00\x3c" "\x00\x04" "\xc6\x12\x00\x02"

static void test_parse_response_is_strict(void **state)
{
	struct dns_wire_response resp;

	(void)state;
	assert_int_equal(dns_wire_parse_response(V(RHDR("\x01", "\x00") Q_EX A_RR), &resp), 0);
	assert_true(resp.has_a);
	assert_int_equal(resp.a_addr, 0xc6120002u);
	/* not a response */
	assert_int_equal(dns_wire_parse_response(V(HDR_QD1 Q_EX), &resp), -DNS_WIRE_E_ANSWER);
	/* an answer without a question */
	assert_int_equal(dns_wire_parse_response(
		V("\xab\xcd\x81\x80\x00\x00\x00\x01\x00\x00\x00\x00" A_RR), &resp),
		-DNS_WIRE_E_ANSWER);
	/* owner not the question */
	assert_int_equal(dns_wire_parse_response(
		V(RHDR("\x01", "\x00") Q_EX "\xc0\x0d" "\x00\x01" "\x00\x01" "\x00\x00\x00\x3c"
		  "\x00\x04" "\xc6\x12\x00\x02"), &resp), -DNS_WIRE_E_ANSWER);
	/* A with 5 bytes of RDATA */
	assert_int_equal(dns_wire_parse_response(
		V(RHDR("\x01", "\x00") Q_EX "\xc0\x0c" "\x00\x01" "\x00\x01" "\x00\x00\x00\x3c"
		  "\x00\x05" "\xc6\x12\x00\x02\x00"), &resp), -DNS_WIRE_E_ANSWER);
	/* an authority record */
	assert_int_equal(dns_wire_parse_response(
		V("\xab\xcd\x81\x80\x00\x01\x00\x00\x00\x01\x00\x00" Q_EX), &resp),
		-DNS_WIRE_E_ANSWER);
	/* bytes after the answer */
	assert_int_equal(dns_wire_parse_response(V(RHDR("\x01", "\x00") Q_EX A_RR "\x00"), &resp),
			 -DNS_WIRE_E_TRAILING);
	/* cut inside the answer */
	assert_int_equal(dns_wire_parse_response(V(RHDR("\x01", "\x00") Q_EX "\xc0\x0c\x00"),
						 &resp), -DNS_WIRE_E_TRUNCATED);
}

static void test_strerror_names_every_error(void **state)
{
	(void)state;
	for (int e = DNS_WIRE_E_SHORT; e <= DNS_WIRE_E_NAME_TEXT; e++)
		assert_string_not_equal(dns_wire_strerror(-e), "unknown DNS message error");
	assert_string_equal(dns_wire_strerror(-EINVAL), "unknown DNS message error");
	assert_string_equal(dns_wire_strerror(0), "unknown DNS message error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_glibc_query_without_edns),
		cmocka_unit_test(test_parse_glibc_aaaa_query),
		cmocka_unit_test(test_parse_reports_edns),
		cmocka_unit_test(test_parse_ignores_edns_options),
		cmocka_unit_test(test_parse_clamps_small_edns_payload_to_512),
		cmocka_unit_test(test_parse_accepts_any_octet_in_a_label),
		cmocka_unit_test(test_parse_name_of_255_bytes_and_not_256),
		cmocka_unit_test(test_parse_refuses_message_over_65535_bytes),
		cmocka_unit_test(test_malformed_queries_are_refused_with_the_right_rcode),
		cmocka_unit_test(test_a_answer_bytes_echo_the_question_case),
		cmocka_unit_test(test_answer_parses_back),
		cmocka_unit_test(test_answer_copies_rd_and_cd_only),
		cmocka_unit_test(test_nodata_answer_carries_minimal_opt),
		cmocka_unit_test(test_answer_copies_do_bit),
		cmocka_unit_test(test_badvers_only_with_edns),
		cmocka_unit_test(test_a_record_only_with_noerror),
		cmocka_unit_test(test_build_answer_reports_small_buffer),
		cmocka_unit_test(test_largest_answer_fits_512_bytes),
		cmocka_unit_test(test_build_error_needs_a_header),
		cmocka_unit_test(test_name_text),
		cmocka_unit_test(test_parse_response_is_strict),
		cmocka_unit_test(test_strerror_names_every_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
