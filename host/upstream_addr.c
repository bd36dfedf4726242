#include "upstream_addr.h"

#include <netinet/in.h>
#include <string.h>

struct v4_range {
	uint32_t net;
	unsigned prefix;
	const char *reason;
};

static const struct v4_range v4_refused[] = {
	{ 0x00000000u, 8, "this-network" },
	{ 0x0a000000u, 8, "private" },
	{ 0x64400000u, 10, "cgnat" },
	{ 0x7f000000u, 8, "loopback" },
	{ 0xa9fe0000u, 16, "link-local" },  /* 169.254.169.254: metadata */
	{ 0xac100000u, 12, "private" },
	{ 0xc0a80000u, 16, "private" },
	{ 0xc6120000u, 15, "synthetic" },
	{ 0xe0000000u, 4, "multicast" },
	{ 0xf0000000u, 4, "reserved" },      /* includes 255.255.255.255 */
};

const char *upstream_addr_refusal_v4(const uint8_t a[4])
{
	uint32_t x = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];

	for (size_t i = 0; i < sizeof(v4_refused) / sizeof(v4_refused[0]); i++) {
		uint32_t mask = ~0u << (32 - v4_refused[i].prefix);

		if ((x & mask) == v4_refused[i].net)
			return v4_refused[i].reason;
	}
	return NULL;
}

static int v6_all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

const char *upstream_addr_refusal_v6(const uint8_t a[16])
{
	static const uint8_t nat64[12] = { 0x00, 0x64, 0xff, 0x9b };

	if (v6_all_zero(a, 15) && (a[15] == 0 || a[15] == 1))
		return a[15] ? "loopback" : "unspecified";
	/* Embedded IPv4: the IPv4 rules decide. */
	if (v6_all_zero(a, 10) && a[10] == 0xff && a[11] == 0xff)
		return upstream_addr_refusal_v4(a + 12);      /* ::ffff:a.b.c.d */
	if (v6_all_zero(a, 12))
		return upstream_addr_refusal_v4(a + 12);      /* ::a.b.c.d */
	if (memcmp(a, nat64, sizeof(nat64)) == 0)
		return upstream_addr_refusal_v4(a + 12);      /* 64:ff9b::/96 */
	if ((a[0] & 0xfe) == 0xfc)
		return "unique-local";
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return "link-local";
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)
		return "site-local";
	if (a[0] == 0xff)
		return "multicast";
	return NULL;
}

const char *upstream_addr_refusal(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		return upstream_addr_refusal_v4((const uint8_t *)&in->sin_addr);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		return upstream_addr_refusal_v6(in6->sin6_addr.s6_addr);
	}
	return "family";
}
