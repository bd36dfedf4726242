/*
 * Fuzz target for guest/dns_query.h: every byte a guest process can send to
 * the DNS stub on 127.0.0.1:53 goes through dns_query_parse() first.
 *
 * Invariants checked (abort on violation): a parse either succeeds with a
 * question inside the packet and a printable name of at most 253 bytes, or
 * fails with a known error whose rcode is drop/FORMERR/NOTIMP/REFUSED; the
 * stub's own replies (bare, with the question, truncated) always fit and
 * carry the query's ID; parsing is deterministic.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "dns_query.h"

static void check_name(const struct dns_query *q)
{
	size_t n = strnlen(q->name, sizeof(q->name));

	CHECK(n >= 1 && n <= 253);
	for (size_t i = 0; i < n; i++) {
		char c = q->name[i];
		CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.');
	}
}

static void check_reply(const uint8_t *data, size_t size, const struct dns_query *q, uint8_t rcode,
			bool tc)
{
	uint8_t out[DNS_QUERY_MAX + 16];
	size_t len = 0;

	CHECK(dns_reply_local(data, size, q, rcode, tc, out, sizeof(out), &len) == 0);
	CHECK(len >= DNS_HEADER_SIZE && len <= sizeof(out));
	CHECK(out[0] == data[0] && out[1] == data[1] && (out[2] & 0x80));
	CHECK((out[3] & 0x0f) == rcode && !!(out[2] & 0x02) == tc);
	if (q)
		CHECK(dns_answer_check(out, len, q) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_query q, again;
	int r = dns_query_parse(data, size, &q), rcode;

	CHECK(dns_query_parse(data, size, &again) == r);
	if (r == 0) {
		CHECK(size >= DNS_HEADER_SIZE && size <= DNS_QUERY_MAX);
		CHECK(q.question_len >= 5 && q.question_len <= size - DNS_HEADER_SIZE);
		CHECK(q.udp_size >= DNS_UDP_MIN && q.qclass == 1 && q.qtype != 0);
		CHECK(memcmp(&q, &again, sizeof(q)) == 0);
		check_name(&q);
		check_reply(data, size, &q, DNS_RCODE_SERVFAIL, false);
		check_reply(data, size, &q, DNS_RCODE_NOERROR, true);
		return 0;
	}
	CHECK(r <= -DNS_QUERY_E_SHORT && r >= -DNS_QUERY_E_TRAILING);
	CHECK(dns_query_strerror(r) != NULL);
	rcode = dns_query_rcode(r);
	CHECK(rcode == -1 || rcode == DNS_RCODE_FORMERR || rcode == DNS_RCODE_NOTIMP ||
	      rcode == DNS_RCODE_REFUSED);
	/* the stub answers every error but "no header" and "a response" */
	CHECK((rcode == -1) == (r == -DNS_QUERY_E_SHORT || r == -DNS_QUERY_E_RESPONSE));
	if (rcode >= 0)
		check_reply(data, size, NULL, (uint8_t)rcode, false);
	return 0;
}
