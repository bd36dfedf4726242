/*
 * dns_synth: the per-sandbox synthetic address map and the answers built
 * from it.  Queries are built by a small encoder below (checked against
 * glibc-captured bytes in test_dns_wire.c) or taken from those captures.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dns_synth.h"
#include "dns_wire.h"

#define V_LIST(s) (s), (sizeof(s) - 1u)
#define IP(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (uint32_t)(d))

/* res_query("Example.COM", C_IN, T_A) as glibc 2.36 sent it. */
static const uint8_t glibc_a_mixed_case[] = {
	0x28, 0x70, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x07, 'E', 'x', 'a', 'm', 'p', 'l', 'e', 0x03, 'C', 'O', 'M', 0x00,
	0x00, 0x01, 0x00, 0x01,
};

struct query {
	uint8_t b[600];
	size_t len;
};

/* A stub resolver's query: RD, one question, an OPT if edns_version >= 0.
 * Labels come from the dotted text as they are (no escaping), so tests can
 * also send bytes no real name has. */
static struct query make_query(uint16_t id, const char *name, uint16_t qtype, uint16_t qclass,
			       int edns_version)
{
	struct query q = { .len = 12 };
	const char *p = name;

	q.b[0] = (uint8_t)(id >> 8);
	q.b[1] = (uint8_t)id;
	q.b[2] = 0x01;
	q.b[5] = 1;
	q.b[11] = edns_version >= 0 ? 1 : 0;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);

		assert_true(n >= 1 && n <= 63);
		q.b[q.len++] = (uint8_t)n;
		memcpy(q.b + q.len, p, n);
		q.len += n;
		p += n + (dot ? 1 : 0);
	}
	q.b[q.len++] = 0;
	q.b[q.len++] = (uint8_t)(qtype >> 8);
	q.b[q.len++] = (uint8_t)qtype;
	q.b[q.len++] = (uint8_t)(qclass >> 8);
	q.b[q.len++] = (uint8_t)qclass;
	if (edns_version >= 0) {
		const uint8_t opt[] = { 0, 0, 41, 0x04, 0xd0, 0, (uint8_t)edns_version, 0, 0, 0, 0 };

		memcpy(q.b + q.len, opt, sizeof(opt));
		q.len += sizeof(opt);
	}
	return q;
}

struct answer {
	int r;
	struct dns_synth_info info;
	struct dns_wire_response resp;
	uint8_t b[DNS_WIRE_ANSWER_MAX];
	size_t len;
};

/* Ask, and check what every answer must be: it parses back, same ID. */
static struct answer ask_bytes(struct dns_synth *map, const uint8_t *msg, size_t len)
{
	struct answer a = { 0 };

	a.r = dns_synth_answer(map, msg, len, a.b, sizeof(a.b), &a.len, &a.info);
	if (a.r == 0) {
		assert_int_equal(dns_wire_parse_response(a.b, a.len, &a.resp), 0);
		assert_int_equal(a.resp.id, (uint16_t)(msg[0] << 8 | msg[1]));
		assert_int_equal(a.resp.rcode, a.info.rcode);
		assert_int_equal(a.resp.has_a, a.info.addr != 0);
		if (a.resp.has_a)
			assert_int_equal(a.resp.a_addr, a.info.addr);
		/* it points into this copy of a.b: gone once returned */
		a.resp.question = NULL;
	}
	return a;
}

static struct answer ask(struct dns_synth *map, const char *name, uint16_t qtype)
{
	struct query q = make_query(0x4242, name, qtype, DNS_CLASS_IN, -1);

	return ask_bytes(map, q.b, q.len);
}

static struct dns_synth *new_map(uint32_t max_names)
{
	struct dns_synth_options opts = { .max_names = max_names };
	struct dns_synth *map = NULL;

	assert_int_equal(dns_synth_new(&opts, &map), 0);
	assert_non_null(map);
	return map;
}

static void assert_a(struct dns_synth *map, const char *name, uint32_t want)
{
	struct answer a = ask(map, name, DNS_TYPE_A);

	assert_int_equal(a.r, 0);
	if (a.info.rcode != DNS_RCODE_NOERROR || a.info.addr != want)
		fail_msg("%s: rcode %u addr %08x, want NOERROR %08x", name, a.info.rcode,
			 a.info.addr, want);
	assert_int_equal(a.resp.a_ttl, DNS_SYNTH_TTL);
}

static void test_names_get_consecutive_addresses_from_198_18_0_2(void **state)
{
	struct dns_synth *map = new_map(0);

	(void)state;
	assert_a(map, "api.openai.com", IP(198, 18, 0, 2));
	assert_a(map, "example.com", IP(198, 18, 0, 3));
	assert_a(map, "registry.npmjs.org", IP(198, 18, 0, 4));
	assert_int_equal(dns_synth_count(map), 3);
	dns_synth_free(map);
}

static void test_same_name_keeps_its_address_in_any_case(void **state)
{
	struct dns_synth *map = new_map(0);
	struct answer a;

	(void)state;
	a = ask(map, "example.com", DNS_TYPE_A);
	assert_true(a.info.created);
	assert_string_equal(a.info.name, "example.com");
	assert_a(map, "other.example", IP(198, 18, 0, 3));
	a = ask(map, "EXAMPLE.com", DNS_TYPE_A);
	assert_false(a.info.created);
	assert_int_equal(a.info.addr, IP(198, 18, 0, 2));
	assert_a(map, "eXaMpLe.CoM", IP(198, 18, 0, 2));
	assert_int_equal(dns_synth_count(map), 2);
	dns_synth_free(map);
}

static void test_answer_echoes_0x20_randomized_case(void **state)
{
	struct dns_synth *map = new_map(0);
	struct answer a;

	(void)state;
	a = ask_bytes(map, glibc_a_mixed_case, sizeof(glibc_a_mixed_case));
	assert_int_equal(a.r, 0);
	assert_int_equal(a.info.addr, IP(198, 18, 0, 2));
	assert_string_equal(a.info.qname_text, "Example.COM");
	assert_string_equal(a.info.name, "example.com");
	assert_int_equal(a.resp.question_len, 17);
	assert_memory_equal(a.b + DNS_WIRE_HEADER_SIZE, glibc_a_mixed_case + 12, 17);
	dns_synth_free(map);
}

static void test_reverse_lookup_gives_the_normalized_name(void **state)
{
	struct dns_synth *map = new_map(0);
	char name[HOST_PATTERN_BUF] = "untouched";

	(void)state;
	assert_a(map, "API.OpenAI.com", IP(198, 18, 0, 2));
	assert_int_equal(dns_synth_reverse(map, IP(198, 18, 0, 2), name), 0);
	assert_string_equal(name, "api.openai.com");
	strcpy(name, "untouched");
	assert_int_equal(dns_synth_reverse(map, IP(198, 18, 0, 3), name), -ENOENT);
	assert_int_equal(dns_synth_reverse(map, DNS_SYNTH_BROKER_ADDR, name), -ENOENT);
	assert_int_equal(dns_synth_reverse(map, IP(198, 19, 255, 255), name), -ENOENT);
	assert_int_equal(dns_synth_reverse(map, IP(198, 20, 0, 2), name), -EADDRNOTAVAIL);
	assert_int_equal(dns_synth_reverse(map, IP(10, 0, 0, 2), name), -EADDRNOTAVAIL);
	assert_int_equal(dns_synth_reverse(map, IP(198, 17, 255, 254), name), -EADDRNOTAVAIL);
	assert_string_equal(name, "untouched");
	dns_synth_free(map);
}

static void test_reverse_lookup_of_egress_address_bytes(void **state)
{
	static const uint8_t v4[] = { 198, 18, 0, 2 };
	static const uint8_t mapped[] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 2 };
	static const uint8_t v6[] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 198, 18, 0, 2 };
	struct dns_synth *map = new_map(0);
	char name[HOST_PATTERN_BUF];

	(void)state;
	assert_a(map, "example.com", IP(198, 18, 0, 2));
	assert_int_equal(dns_synth_reverse_bytes(map, v4, sizeof(v4), name), 0);
	assert_string_equal(name, "example.com");
	strcpy(name, "");
	assert_int_equal(dns_synth_reverse_bytes(map, mapped, sizeof(mapped), name), 0);
	assert_string_equal(name, "example.com");
	assert_int_equal(dns_synth_reverse_bytes(map, v6, sizeof(v6), name), -EADDRNOTAVAIL);
	assert_int_equal(dns_synth_reverse_bytes(map, v4, 3, name), -EINVAL);
	assert_int_equal(dns_synth_reverse_bytes(map, v4, 0, name), -EINVAL);
	dns_synth_free(map);
}

static void test_aaaa_is_nodata_and_maps_nothing(void **state)
{
	struct dns_synth *map = new_map(0);
	struct answer a;

	(void)state;
	a = ask(map, "example.com", DNS_TYPE_AAAA);
	assert_int_equal(a.r, 0);
	assert_int_equal(a.info.rcode, DNS_RCODE_NOERROR);
	assert_false(a.resp.has_a);
	assert_true(a.resp.has_question);
	assert_int_equal(a.resp.qtype, DNS_TYPE_AAAA);
	assert_string_equal(a.info.name, "example.com");
	assert_false(a.info.created);
	assert_int_equal(dns_synth_count(map), 0);
	/* and still NODATA once the name has an A */
	assert_a(map, "example.com", IP(198, 18, 0, 2));
	a = ask(map, "example.com", DNS_TYPE_AAAA);
	assert_int_equal(a.info.rcode, DNS_RCODE_NOERROR);
	assert_false(a.resp.has_a);
	dns_synth_free(map);
}

static void test_https_svcb_and_other_types_are_nodata(void **state)
{
	static const uint16_t types[] = {
		DNS_TYPE_HTTPS, DNS_TYPE_SVCB, DNS_TYPE_MX, DNS_TYPE_TXT, DNS_TYPE_NS,
		DNS_TYPE_CNAME, DNS_TYPE_SOA, DNS_TYPE_PTR, DNS_TYPE_SRV, DNS_TYPE_ANY, 99, 65280,
	};
	struct dns_synth *map = new_map(0);

	(void)state;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		struct answer a = ask(map, "www.example.com", types[i]);

		assert_int_equal(a.r, 0);
		if (a.info.rcode != DNS_RCODE_NOERROR || a.resp.has_a)
			fail_msg("type %u: rcode %u", types[i], a.info.rcode);
		assert_int_equal(a.resp.qtype, types[i]);
	}
	assert_int_equal(dns_synth_count(map), 0);
	dns_synth_free(map);
}

static void test_full_map_refuses_new_names_and_keeps_old_ones(void **state)
{
	struct dns_synth *map = new_map(3);
	struct answer a;
	uint32_t addr;

	(void)state;
	assert_a(map, "a.example", IP(198, 18, 0, 2));
	assert_a(map, "b.example", IP(198, 18, 0, 3));
	assert_a(map, "c.example", IP(198, 18, 0, 4));
	a = ask(map, "d.example", DNS_TYPE_A);
	assert_int_equal(a.r, 0);
	assert_int_equal(a.info.rcode, DNS_RCODE_REFUSED);
	assert_int_equal(a.info.error, -ENOSPC);
	assert_false(a.resp.has_a);
	assert_true(a.resp.has_question);
	/* no recycling: every old name keeps its address */
	assert_a(map, "A.example", IP(198, 18, 0, 2));
	assert_a(map, "c.example", IP(198, 18, 0, 4));
	/* other types of a new name are still NODATA: nothing to allocate */
	assert_int_equal(ask(map, "d.example", DNS_TYPE_AAAA).info.rcode, DNS_RCODE_NOERROR);
	assert_int_equal(dns_synth_assign(map, "e.example", 9, &addr), -ENOSPC);
	assert_int_equal(dns_synth_count(map), 3);
	dns_synth_free(map);
}

static void test_allocation_skips_dot_0_and_dot_255(void **state)
{
	struct dns_synth *map = new_map(600);
	char name[32];
	uint32_t addr = 0, last = 0;

	(void)state;
	for (int i = 0; i < 253; i++) {
		snprintf(name, sizeof(name), "n%d.example", i);
		assert_int_equal(dns_synth_assign(map, name, strlen(name), &last), 1);
	}
	assert_int_equal(last, IP(198, 18, 0, 254));
	assert_int_equal(dns_synth_assign(map, "next.example", 12, &addr), 1);
	assert_int_equal(addr, IP(198, 18, 1, 1));
	assert_int_equal(dns_synth_assign(map, "next.example", 12, &addr), 0);
	assert_int_equal(addr, IP(198, 18, 1, 1));
	dns_synth_free(map);
}

static void test_whole_pool_is_handed_out_once_then_refused(void **state)
{
	struct dns_synth *map = new_map(DNS_SYNTH_POOL_USABLE);
	uint8_t *seen = calloc(DNS_SYNTH_POOL_SIZE, 1);
	char name[32], back[HOST_PATTERN_BUF];
	uint32_t addr = 0;

	(void)state;
	assert_non_null(seen);
	for (uint32_t i = 0; i < DNS_SYNTH_POOL_USABLE; i++) {
		snprintf(name, sizeof(name), "h%u.test", i);
		assert_int_equal(dns_synth_assign(map, name, strlen(name), &addr), 1);
		if (!dns_synth_addr_usable(addr) || seen[addr - DNS_SYNTH_NET])
			fail_msg("%s got %08x: reserved or handed out twice", name, addr);
		seen[addr - DNS_SYNTH_NET] = 1;
	}
	assert_int_equal(addr, IP(198, 19, 255, 254));
	assert_int_equal(dns_synth_assign(map, "one.more", 8, &addr), -ENOSPC);
	assert_int_equal(ask(map, "one.more", DNS_TYPE_A).info.rcode, DNS_RCODE_REFUSED);
	assert_int_equal(dns_synth_reverse(map, IP(198, 19, 0, 77), back), 0);
	assert_int_equal(dns_synth_lookup(map, back, strlen(back), &addr), 0);
	assert_int_equal(addr, IP(198, 19, 0, 77));
	free(seen);
	dns_synth_free(map);
}

static void test_names_that_are_no_host_get_nxdomain(void **state)
{
	static const char *const names[] = {
		"localhost", "LocalHost", "db.localhost", "invalid", "x.invalid",
		"duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion",
		"2.0.18.198.in-addr.arpa", "router.home.arpa", "arpa",
		"10.0.0.1", "169.254.169.254", "198.18.0.2", "example.123",
		("b\xc3\xbc" "cher.example"), "exa mple.com", "-lead.example", "trail-.example",
		"*.example.com", "a*b.example", "::1", "a\\.b.example", "quote\".example",
	};
	struct dns_synth *map = new_map(0);

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct answer a = ask(map, names[i], DNS_TYPE_A);
		struct answer b = ask(map, names[i], DNS_TYPE_AAAA);

		assert_int_equal(a.r, 0);
		if (a.info.rcode != DNS_RCODE_NXDOMAIN || b.info.rcode != DNS_RCODE_NXDOMAIN)
			fail_msg("'%s': A rcode %u, AAAA rcode %u, want NXDOMAIN", names[i],
				 a.info.rcode, b.info.rcode);
		assert_int_equal(a.info.error, -EINVAL);
		assert_string_equal(a.info.name, "");
		assert_true(a.resp.has_question);
	}
	assert_int_equal(dns_synth_count(map), 0);
	dns_synth_free(map);
}

static void test_label_with_a_dot_inside_gets_nxdomain(void **state)
{
	/* one label "a.b" then "com": as text it would read as a.b.com */
	static const uint8_t query[] = {
		0x00, 0x07, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x03, 'a', '.', 'b', 0x03, 'c', 'o', 'm', 0x00, 0x00, 0x01, 0x00, 0x01,
	};
	struct dns_synth *map = new_map(0);
	struct answer a;

	(void)state;
	a = ask_bytes(map, query, sizeof(query));
	assert_int_equal(a.info.rcode, DNS_RCODE_NXDOMAIN);
	assert_string_equal(a.info.qname_text, "");
	assert_int_equal(dns_synth_count(map), 0);
	dns_synth_free(map);
}

static void test_names_merely_resembling_special_use_are_mapped(void **state)
{
	struct dns_synth *map = new_map(0);

	(void)state;
	assert_a(map, "notlocalhost", IP(198, 18, 0, 2));
	assert_a(map, "localhost.example.com", IP(198, 18, 0, 3));
	assert_a(map, "myarpa.com", IP(198, 18, 0, 4));
	assert_a(map, "onion.example", IP(198, 18, 0, 5));
	assert_a(map, "_acme-challenge.example.com", IP(198, 18, 0, 6));
	assert_a(map, "xn--bcher-kva.example", IP(198, 18, 0, 7));
	assert_a(map, "intranet", IP(198, 18, 0, 8));
	assert_a(map, "123.example.com", IP(198, 18, 0, 9));
	dns_synth_free(map);
}

static void test_root_is_nodata(void **state)
{
	struct dns_synth *map = new_map(0);
	struct answer a = ask(map, "", DNS_TYPE_A);

	(void)state;
	assert_int_equal(a.r, 0);
	assert_int_equal(a.info.rcode, DNS_RCODE_NOERROR);
	assert_false(a.resp.has_a);
	assert_int_equal(ask(map, "", DNS_TYPE_NS).info.rcode, DNS_RCODE_NOERROR);
	assert_int_equal(dns_synth_count(map), 0);
	dns_synth_free(map);
}

static void test_edns_query_gets_opt_and_unknown_version_gets_badvers(void **state)
{
	struct dns_synth *map = new_map(0);
	struct query q = make_query(7, "example.com", DNS_TYPE_A, DNS_CLASS_IN, 0);
	struct answer a = ask_bytes(map, q.b, q.len);

	(void)state;
	assert_int_equal(a.info.rcode, DNS_RCODE_NOERROR);
	assert_true(a.resp.edns);
	assert_int_equal(a.info.addr, IP(198, 18, 0, 2));

	q = make_query(8, "other.example", DNS_TYPE_A, DNS_CLASS_IN, 1);
	a = ask_bytes(map, q.b, q.len);
	assert_int_equal(a.info.rcode, DNS_RCODE_BADVERS);
	assert_true(a.resp.edns);
	assert_int_equal(a.resp.edns_version, 0);
	assert_false(a.resp.has_a);
	assert_int_equal(dns_synth_count(map), 1);
	dns_synth_free(map);
}

static void test_class_and_meta_types_get_their_rcodes(void **state)
{
	static const struct {
		uint16_t qtype, qclass;
		unsigned rcode;
	} cases[] = {
		{ DNS_TYPE_TXT, 3 /* CH: version.bind */, DNS_RCODE_REFUSED },
		{ DNS_TYPE_A, 4 /* HS */, DNS_RCODE_REFUSED },
		{ DNS_TYPE_A, 255 /* ANY */, DNS_RCODE_REFUSED },
		{ DNS_TYPE_AXFR, DNS_CLASS_IN, DNS_RCODE_NOTIMP },
		{ DNS_TYPE_IXFR, DNS_CLASS_IN, DNS_RCODE_NOTIMP },
		{ DNS_TYPE_MAILA, DNS_CLASS_IN, DNS_RCODE_NOTIMP },
		{ DNS_TYPE_MAILB, DNS_CLASS_IN, DNS_RCODE_NOTIMP },
		{ DNS_TYPE_TKEY, DNS_CLASS_IN, DNS_RCODE_NOTIMP },
		{ 0, DNS_CLASS_IN, DNS_RCODE_FORMERR },
		{ DNS_TYPE_OPT, DNS_CLASS_IN, DNS_RCODE_FORMERR },
		{ DNS_TYPE_TSIG, DNS_CLASS_IN, DNS_RCODE_FORMERR },
	};
	struct dns_synth *map = new_map(0);

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct query q = make_query(9, "example.com", cases[i].qtype, cases[i].qclass, 0);
		struct answer a = ask_bytes(map, q.b, q.len);

		assert_int_equal(a.r, 0);
		if (a.info.rcode != cases[i].rcode)
			fail_msg("type %u class %u: rcode %u, want %u", cases[i].qtype,
				 cases[i].qclass, a.info.rcode, cases[i].rcode);
		assert_int_equal(a.info.error, -EPROTONOSUPPORT);
		assert_true(a.resp.has_question);
		assert_true(a.resp.edns);
	}
	assert_int_equal(dns_synth_count(map), 0);
	dns_synth_free(map);
}

static void test_malformed_query_gets_formerr_with_its_id(void **state)
{
	/* a compression pointer in the question */
	static const uint8_t query[] = {
		0xbe, 0xef, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01,
	};
	struct dns_synth *map = new_map(0);
	struct answer a = ask_bytes(map, query, sizeof(query));

	(void)state;
	assert_int_equal(a.r, 0);
	assert_int_equal(a.info.rcode, DNS_RCODE_FORMERR);
	assert_int_equal(a.info.error, -DNS_WIRE_E_POINTER);
	assert_false(a.info.has_question);
	assert_int_equal(a.resp.id, 0xbeef);
	assert_false(a.resp.has_question);
	dns_synth_free(map);
}

static void test_non_queries_get_no_answer(void **state)
{
	struct dns_synth *map = new_map(0);
	struct query q = make_query(1, "example.com", DNS_TYPE_A, DNS_CLASS_IN, -1);
	struct dns_synth_info info = { .rcode = 77 };
	uint8_t out[DNS_WIRE_ANSWER_MAX];
	size_t len = 7;

	(void)state;
	assert_int_equal(dns_synth_answer(map, q.b, 11, out, sizeof(out), &len, &info), -EBADMSG);
	assert_int_equal(dns_synth_answer(map, q.b, 0, out, sizeof(out), &len, &info), -EBADMSG);
	q.b[2] |= 0x80; /* QR: a response, never answered (no loops) */
	assert_int_equal(dns_synth_answer(map, q.b, q.len, out, sizeof(out), &len, &info),
			 -EBADMSG);
	assert_int_equal(len, 7);
	assert_int_equal(info.rcode, 77);
	assert_int_equal(dns_synth_count(map), 0);
	dns_synth_free(map);
}

static void test_small_buffer_maps_nothing(void **state)
{
	struct dns_synth *map = new_map(0);
	struct query q = make_query(1, "example.com", DNS_TYPE_A, DNS_CLASS_IN, -1);
	uint8_t out[DNS_WIRE_ANSWER_MAX];
	size_t len = 7;

	(void)state;
	assert_int_equal(dns_synth_answer(map, q.b, q.len, out, DNS_WIRE_ANSWER_MAX - 1, &len,
					  NULL), -ENOBUFS);
	assert_int_equal(len, 7);
	assert_int_equal(dns_synth_count(map), 0);
	assert_int_equal(dns_synth_answer(map, q.b, q.len, out, sizeof(out), &len, NULL), 0);
	assert_int_equal(dns_synth_count(map), 1);
	dns_synth_free(map);
}

static void test_maps_are_per_sandbox(void **state)
{
	struct dns_synth *one = new_map(0), *two = new_map(0);
	char name[HOST_PATTERN_BUF];

	(void)state;
	assert_a(one, "a.example", IP(198, 18, 0, 2));
	assert_a(two, "b.example", IP(198, 18, 0, 2));
	assert_int_equal(dns_synth_reverse(two, IP(198, 18, 0, 2), name), 0);
	assert_string_equal(name, "b.example");
	assert_int_equal(dns_synth_reverse(one, IP(198, 18, 0, 2), name), 0);
	assert_string_equal(name, "a.example");
	dns_synth_free(one);
	dns_synth_free(two);
}

static void test_assign_and_lookup_normalize_names(void **state)
{
	struct dns_synth *map = new_map(0);
	uint32_t addr = 0;

	(void)state;
	assert_int_equal(dns_synth_lookup(map, "example.com", 11, &addr), -ENOENT);
	assert_int_equal(dns_synth_assign(map, "Example.COM.", 12, &addr), 1);
	assert_int_equal(addr, IP(198, 18, 0, 2));
	addr = 0;
	assert_int_equal(dns_synth_lookup(map, "example.com", 11, &addr), 0);
	assert_int_equal(addr, IP(198, 18, 0, 2));
	assert_int_equal(dns_synth_assign(map, "localhost", 9, &addr), -EINVAL);
	assert_int_equal(dns_synth_assign(map, "1.2.3.4", 7, &addr), -EINVAL);
	assert_int_equal(dns_synth_assign(map, "", 0, &addr), -EINVAL);
	assert_int_equal(dns_synth_lookup(map, "a..b", 4, &addr), -EINVAL);
	assert_int_equal(addr, IP(198, 18, 0, 2));
	dns_synth_free(map);
}

static void test_options_are_checked(void **state)
{
	struct dns_synth_options opts = { .max_names = DNS_SYNTH_POOL_USABLE + 1u };
	struct dns_synth *map = NULL;

	(void)state;
	assert_int_equal(dns_synth_new(&opts, &map), -EINVAL);
	assert_null(map);
	assert_int_equal(dns_synth_new(NULL, &map), 0);
	assert_int_equal(dns_synth_count(map), 0);
	dns_synth_free(map);
	dns_synth_free(NULL);
	assert_int_equal(DNS_SYNTH_POOL_USABLE, 130047);
}

static void test_reserved_addresses_are_not_usable(void **state)
{
	(void)state;
	assert_false(dns_synth_addr_usable(IP(198, 18, 0, 0)));
	assert_false(dns_synth_addr_usable(IP(198, 18, 0, 1)));
	assert_false(dns_synth_addr_usable(IP(198, 18, 7, 0)));
	assert_false(dns_synth_addr_usable(IP(198, 18, 7, 255)));
	assert_false(dns_synth_addr_usable(IP(198, 19, 255, 255)));
	assert_false(dns_synth_addr_usable(IP(198, 20, 0, 2)));
	assert_false(dns_synth_addr_usable(IP(127, 0, 0, 1)));
	assert_true(dns_synth_addr_usable(IP(198, 18, 0, 2)));
	assert_true(dns_synth_addr_usable(IP(198, 19, 255, 254)));
	assert_true(dns_synth_addr_usable(IP(198, 19, 0, 1)));
}

static void test_export_import_round_trip_keeps_every_address(void **state)
{
	struct dns_synth *map = new_map(0), *again = new_map(0);
	char *text = NULL, *text2 = NULL, name[HOST_PATTERN_BUF];
	size_t len = 0, len2 = 0;
	uint32_t addr;

	(void)state;
	assert_a(map, "api.openai.com", IP(198, 18, 0, 2));
	assert_a(map, "Example.com", IP(198, 18, 0, 3));
	assert_a(map, "_dmarc.example.com", IP(198, 18, 0, 4));
	assert_int_equal(dns_synth_export(map, &text, &len), 0);
	assert_string_equal(text, "198.18.0.2 api.openai.com\n"
				  "198.18.0.3 example.com\n"
				  "198.18.0.4 _dmarc.example.com\n");
	assert_int_equal(len, strlen(text));

	assert_int_equal(dns_synth_import(again, text, len, NULL, 0), 3);
	assert_int_equal(dns_synth_reverse(again, IP(198, 18, 0, 3), name), 0);
	assert_string_equal(name, "example.com");
	assert_a(again, "API.openai.com", IP(198, 18, 0, 2));
	/* allocation continues after the highest imported address */
	assert_a(again, "new.example", IP(198, 18, 0, 5));
	assert_int_equal(dns_synth_assign(again, "example.com", 11, &addr), 0);
	assert_int_equal(addr, IP(198, 18, 0, 3));
	assert_int_equal(dns_synth_export(again, &text2, &len2), 0);
	assert_int_equal(len2, len + strlen("198.18.0.5 new.example\n"));
	assert_memory_equal(text2, text, len);
	free(text);
	free(text2);
	dns_synth_free(map);
	dns_synth_free(again);
}

static void test_import_of_scattered_addresses_allocates_around_them(void **state)
{
	static const char list[] = "198.18.0.4 c.example\n198.18.0.2 a.example\n";
	struct dns_synth *map = new_map(0);
	char *text = NULL;
	size_t len;

	(void)state;
	assert_int_equal(dns_synth_import(map, list, sizeof(list) - 1, NULL, 0), 2);
	assert_a(map, "d.example", IP(198, 18, 0, 5));
	assert_int_equal(dns_synth_export(map, &text, &len), 0);
	assert_string_equal(text, "198.18.0.4 c.example\n198.18.0.2 a.example\n"
				  "198.18.0.5 d.example\n");
	free(text);
	dns_synth_free(map);

	/* the highest address taken: allocation wraps and skips what is held */
	map = new_map(0);
	assert_int_equal(dns_synth_import(map, V_LIST("198.19.255.254 last.example\n"
						      "198.18.0.2 first.example\n"), NULL, 0), 2);
	assert_a(map, "wrapped.example", IP(198, 18, 0, 3));
	dns_synth_free(map);
}

static void test_export_of_empty_map_is_empty(void **state)
{
	struct dns_synth *map = new_map(0);
	char *text = NULL;
	size_t len = 7;

	(void)state;
	assert_int_equal(dns_synth_export(map, &text, &len), 0);
	assert_int_equal(len, 0);
	assert_string_equal(text, "");
	free(text);
	assert_int_equal(dns_synth_import(map, "", 0, NULL, 0), 0);
	assert_a(map, "x.example", IP(198, 18, 0, 2));
	dns_synth_free(map);
}

static void test_import_refuses_bad_lists_and_leaves_the_map_empty(void **state)
{
	static const struct {
		const char *text, *why;
	} cases[] = {
		{ "198.18.0.2 a.example", "no final newline" },
		{ "198.18.0.2 a.example\n198.18.0.3 b.example", "line 2: no final newline" },
		{ "198.18.0.2\n", "no '<IPv4 address> <name>'" },
		{ "198.18.0.2 \n", "is empty" },
		{ "a.example 198.18.0.2\n", "no '<IPv4 address> <name>'" },
		{ "198.018.0.2 a.example\n", "no '<IPv4 address> <name>'" },
		{ " 198.18.0.2 a.example\n", "no '<IPv4 address> <name>'" },
		{ "198.18.0.2  a.example\n", "contains 0x20" },
		{ "10.0.0.2 a.example\n", "outside 198.18.0.0/15 or reserved" },
		{ "198.18.0.1 a.example\n", "outside 198.18.0.0/15 or reserved" },
		{ "198.18.0.0 a.example\n", "outside 198.18.0.0/15 or reserved" },
		{ "198.18.3.255 a.example\n", "outside 198.18.0.0/15 or reserved" },
		{ "198.20.0.2 a.example\n", "outside 198.18.0.0/15 or reserved" },
		{ "198.18.0.2 A.example\n", "not in normalized form" },
		{ "198.18.0.2 a.example.\n", "not in normalized form" },
		{ "198.18.0.2 localhost\n", "special-use" },
		{ "198.18.0.2 10.0.0.1\n", "IP literal" },
		{ "198.18.0.2 a.example\r\n", "contains 0x0d" },
		{ "198.18.0.2 a.example\n198.18.0.3 a.example\n", "line 2: duplicate name" },
		{ "198.18.0.2 a.example\n198.18.0.2 b.example\n", "line 2: duplicate address" },
		{ "198.18.0.2 a.example\n198.18.0.3 b.example\n198.18.0.4 c.example\n"
		  "198.18.0.5 d.example\n", "line 4: more than 3 names" },
	};
	struct dns_synth *map = new_map(3);

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[256] = "";
		int r = dns_synth_import(map, cases[i].text, strlen(cases[i].text), err,
					 sizeof(err));

		if (r != -EINVAL || !strstr(err, cases[i].why))
			fail_msg("case %zu: got %d '%s', want -EINVAL '%s'", i, r, err,
				 cases[i].why);
		assert_int_equal(dns_synth_count(map), 0);
	}
	/* and the map still works from the start of the pool */
	assert_a(map, "b.example", IP(198, 18, 0, 2));
	dns_synth_free(map);
}

static void test_import_into_a_used_map_is_refused(void **state)
{
	struct dns_synth *map = new_map(0);

	(void)state;
	assert_a(map, "a.example", IP(198, 18, 0, 2));
	assert_int_equal(dns_synth_import(map, V_LIST("198.18.0.3 b.example\n"), NULL, 0), -EBUSY);
	assert_int_equal(dns_synth_count(map), 1);
	dns_synth_free(map);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_get_consecutive_addresses_from_198_18_0_2),
		cmocka_unit_test(test_same_name_keeps_its_address_in_any_case),
		cmocka_unit_test(test_answer_echoes_0x20_randomized_case),
		cmocka_unit_test(test_reverse_lookup_gives_the_normalized_name),
		cmocka_unit_test(test_reverse_lookup_of_egress_address_bytes),
		cmocka_unit_test(test_aaaa_is_nodata_and_maps_nothing),
		cmocka_unit_test(test_https_svcb_and_other_types_are_nodata),
		cmocka_unit_test(test_full_map_refuses_new_names_and_keeps_old_ones),
		cmocka_unit_test(test_allocation_skips_dot_0_and_dot_255),
		cmocka_unit_test(test_whole_pool_is_handed_out_once_then_refused),
		cmocka_unit_test(test_names_that_are_no_host_get_nxdomain),
		cmocka_unit_test(test_label_with_a_dot_inside_gets_nxdomain),
		cmocka_unit_test(test_names_merely_resembling_special_use_are_mapped),
		cmocka_unit_test(test_root_is_nodata),
		cmocka_unit_test(test_edns_query_gets_opt_and_unknown_version_gets_badvers),
		cmocka_unit_test(test_class_and_meta_types_get_their_rcodes),
		cmocka_unit_test(test_malformed_query_gets_formerr_with_its_id),
		cmocka_unit_test(test_non_queries_get_no_answer),
		cmocka_unit_test(test_small_buffer_maps_nothing),
		cmocka_unit_test(test_maps_are_per_sandbox),
		cmocka_unit_test(test_assign_and_lookup_normalize_names),
		cmocka_unit_test(test_options_are_checked),
		cmocka_unit_test(test_reserved_addresses_are_not_usable),
		cmocka_unit_test(test_export_import_round_trip_keeps_every_address),
		cmocka_unit_test(test_import_of_scattered_addresses_allocates_around_them),
		cmocka_unit_test(test_export_of_empty_map_is_empty),
		cmocka_unit_test(test_import_refuses_bad_lists_and_leaves_the_map_empty),
		cmocka_unit_test(test_import_into_a_used_map_is_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
