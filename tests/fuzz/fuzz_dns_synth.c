/*
 * dns_synth_answer() sees every DNS query bytes a guest sends (B2).  Each
 * input is one query, asked of a map with room for one more name (asked
 * twice) and of a full map.  Invariants:
 *   - no crash, no leak, no read past the input (it is an exact-size copy);
 *   - no answer exactly when there is no header or QR is set;
 *   - every answer parses back (dns_wire_parse_response) with the query's
 *     ID and the rcode reported, fits DNS_WIRE_ANSWER_WORST bytes, and
 *     echoes the query's question bytes when it has one;
 *   - an A record only answers an A query with NOERROR, holds an address
 *     inside 198.18.0.0/15 that is not reserved, reverse-maps to the
 *     normalized queried name, and that name looks up to it;
 *   - asking again gives the same bytes and creates nothing (stable map);
 *   - the full map never grows.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "dns_synth.h"
#include "dns_wire.h"
#include "host_pattern.h"

static const char *const prefill[] = { "a.example", "api.openai.com", "xn--bcher-kva.example" };
#define PREFILL_N (sizeof(prefill) / sizeof(prefill[0]))

static struct dns_synth *new_map(uint32_t max_names)
{
	struct dns_synth_options opts = { .max_names = max_names };
	struct dns_synth *map;
	uint32_t addr;

	if (dns_synth_new(&opts, &map) != 0)
		abort();
	for (size_t i = 0; i < PREFILL_N; i++)
		if (dns_synth_assign(map, prefill[i], strlen(prefill[i]), &addr) != 1)
			abort();
	return map;
}

static void check_a_record(const struct dns_synth *map, const struct dns_synth_info *info,
			   const struct dns_wire_response *resp)
{
	char norm[HOST_PATTERN_BUF], back[HOST_PATTERN_BUF];
	uint32_t addr;

	if (!resp->has_a || resp->a_addr != info->addr || info->rcode != DNS_RCODE_NOERROR ||
	    info->qtype != DNS_TYPE_A || resp->a_ttl != DNS_SYNTH_TTL)
		abort();
	if ((info->addr & 0xfffe0000u) != DNS_SYNTH_NET || !dns_synth_addr_usable(info->addr))
		abort();
	if (dns_synth_reverse(map, info->addr, back) != 0 || strcmp(back, info->name) != 0)
		abort();
	if (host_pattern_normalize_host(info->qname_text, strlen(info->qname_text), norm, NULL,
					0) != HOST_PATTERN_NAME ||
	    strcmp(norm, info->name) != 0)
		abort();
	if (dns_synth_lookup(map, info->name, strlen(info->name), &addr) != 0 ||
	    addr != info->addr)
		abort();
}

static int ask(struct dns_synth *map, const uint8_t *q, size_t len, uint8_t *out,
	       size_t *out_len, struct dns_synth_info *info)
{
	struct dns_wire_response resp;
	struct dns_wire_query parsed;
	bool no_answer = len < DNS_WIRE_HEADER_SIZE || (q[2] & 0x80);
	bool parses = dns_wire_parse_query(q, len, &parsed) == 0;
	int r = dns_synth_answer(map, q, len, out, DNS_WIRE_ANSWER_MAX, out_len, info);

	if (r == -EBADMSG) {
		if (!no_answer)
			abort();
		return r;
	}
	if (r != 0 || no_answer || *out_len > DNS_WIRE_ANSWER_WORST)
		abort();
	if (dns_wire_parse_response(out, *out_len, &resp) != 0)
		abort();
	if (resp.id != (uint16_t)(q[0] << 8 | q[1]) || resp.rcode != info->rcode)
		abort();
	if (resp.has_question &&
	    (len - DNS_WIRE_HEADER_SIZE < resp.question_len ||
	     memcmp(resp.question, q + DNS_WIRE_HEADER_SIZE, resp.question_len) != 0))
		abort();
	if (parses != info->has_question || (parses && (!resp.has_question ||
							resp.edns != parsed.edns)))
		abort();
	if (info->addr != 0)
		check_a_record(map, info, &resp);
	else if (resp.has_a || info->created)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t out1[DNS_WIRE_ANSWER_MAX], out2[DNS_WIRE_ANSWER_MAX];
	struct dns_synth_info info1, info2;
	struct dns_synth *roomy, *full;
	size_t len1, len2;
	uint8_t *copy;
	int r1, r2;

	/* An exact-size heap copy so ASan catches any read past size. */
	if (!(copy = malloc(size ? size : 1)))
		return 0;
	memcpy(copy, data, size);
	roomy = new_map(PREFILL_N + 1);
	full = new_map(PREFILL_N);

	r1 = ask(roomy, copy, size, out1, &len1, &info1);
	r2 = ask(roomy, copy, size, out2, &len2, &info2);
	if (r1 != r2 || (r1 == 0 && (len1 != len2 || memcmp(out1, out2, len1) != 0 ||
				     info2.created || info1.addr != info2.addr)))
		abort();
	if (dns_synth_count(roomy) != PREFILL_N + (r1 == 0 && info1.created ? 1u : 0u))
		abort();

	r2 = ask(full, copy, size, out2, &len2, &info2);
	if (r1 != r2 || dns_synth_count(full) != PREFILL_N)
		abort();
	/* a new name is refused by the full map, a known one answered alike */
	if (r1 == 0 && info1.created &&
	    (info2.rcode != DNS_RCODE_REFUSED || info2.error != -ENOSPC))
		abort();
	if (r1 == 0 && !info1.created && (len1 != len2 || memcmp(out1, out2, len1) != 0))
		abort();

	dns_synth_free(roomy);
	dns_synth_free(full);
	free(copy);
	return 0;
}
