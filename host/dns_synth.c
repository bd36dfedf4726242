#include "dns_synth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cursor.h"

#define POOL_MASK (DNS_SYNTH_POOL_SIZE - 1u)
#define ENTRIES_MIN 64u
#define INDEX_MIN 128u        /* slots; a power of two */
#define ARENA_MIN 4096u
#define NO_ENTRY UINT32_MAX
#define IPV4_TEXT_MAX 15u     /* "255.255.255.255" */

/*
 * Entries are never removed (addresses are never recycled), so they live in
 * one array in allocation order, names in one arena, and two open-addressing
 * indexes (linear probing, at most half full) hold entry index + 1, 0 for an
 * empty slot:
 *   by_name  keyed by SipHash-2-4 of the normalized name under a random
 *            per-map key: the guest chooses names, and must not be able to
 *            pile them into one probe chain;
 *   by_addr  keyed by the address's offset in the pool: we choose
 *            addresses, consecutively, so the low bits spread them evenly.
 */
struct ds_entry {
	uint32_t addr;
	uint32_t name_off; /* into arena: name_len bytes, then NUL */
	uint32_t hash;
	uint8_t name_len;  /* 1..HOST_PATTERN_MAX */
};

struct dns_synth {
	uint32_t max_names;
	uint32_t count;
	uint32_t next_off; /* pool offset the next allocation tries first */
	struct ds_entry *entries;
	uint32_t entries_cap;
	char *arena;
	size_t arena_len, arena_cap;
	uint32_t *by_name, *by_addr;
	uint32_t index_size; /* slots in each index, a power of two */
	unsigned char key[crypto_shorthash_KEYBYTES];
};

/* RFC 6761 6.3/6.4, RFC 7686, and the infrastructure zone: never mapped. */
static const char *const special_use[] = { "localhost", "invalid", "onion", "arpa" };

bool dns_synth_addr_usable(uint32_t addr)
{
	uint32_t last = addr & 0xffu;

	return (addr & ~POOL_MASK) == DNS_SYNTH_NET && last != 0 && last != 0xffu &&
	       addr != DNS_SYNTH_BROKER_ADDR;
}

static bool is_special_use(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(special_use) / sizeof(special_use[0]); i++) {
		size_t n = strlen(special_use[i]);

		if (len >= n && memcmp(name + len - n, special_use[i], n) == 0 &&
		    (len == n || name[len - n - 1] == '.'))
			return true;
	}
	return false;
}

/* Normalize a name and check that it is one we map: a DNS host name (no
 * IP literal, no wildcard), not special-use. */
static int ds_normalize(const char *name, size_t len, char ret_norm[HOST_PATTERN_BUF],
			char *err, size_t err_size)
{
	char norm[HOST_PATTERN_BUF];
	int kind = host_pattern_normalize_host(name, len, norm, err, err_size);

	if (kind < 0)
		return kind;
	if (kind != HOST_PATTERN_NAME) {
		if (err && err_size)
			snprintf(err, err_size, "host '%.64s' is an IP literal, not a name", norm);
		return -EINVAL;
	}
	if (is_special_use(norm, strlen(norm))) {
		if (err && err_size)
			snprintf(err, err_size, "host '%.64s' is a special-use name", norm);
		return -EINVAL;
	}
	memcpy(ret_norm, norm, strlen(norm) + 1);
	return 0;
}

static uint32_t ds_hash(const struct dns_synth *map, const char *name, size_t len)
{
	unsigned char out[crypto_shorthash_BYTES];
	uint32_t h;

	crypto_shorthash(out, (const unsigned char *)name, len, map->key);
	memcpy(&h, out, sizeof(h));
	return h;
}

static const char *ds_name(const struct dns_synth *map, const struct ds_entry *e)
{
	return map->arena + e->name_off;
}

static uint32_t ds_find_name(const struct dns_synth *map, const char *name, size_t len,
			     uint32_t hash)
{
	uint32_t mask = map->index_size - 1u;

	for (uint32_t i = hash & mask;; i = (i + 1u) & mask) {
		uint32_t slot = map->by_name[i];
		const struct ds_entry *e;

		if (slot == 0)
			return NO_ENTRY;
		e = &map->entries[slot - 1u];
		if (e->hash == hash && e->name_len == len && memcmp(ds_name(map, e), name, len) == 0)
			return slot - 1u;
	}
}

static uint32_t ds_find_addr(const struct dns_synth *map, uint32_t addr)
{
	uint32_t mask = map->index_size - 1u;

	for (uint32_t i = (addr & POOL_MASK) & mask;; i = (i + 1u) & mask) {
		uint32_t slot = map->by_addr[i];

		if (slot == 0)
			return NO_ENTRY;
		if (map->entries[slot - 1u].addr == addr)
			return slot - 1u;
	}
}

static void ds_index_put(uint32_t *index, uint32_t mask, uint32_t start, uint32_t entry)
{
	uint32_t i = start & mask;

	while (index[i] != 0)
		i = (i + 1u) & mask;
	index[i] = entry + 1u;
}

/* Both indexes at `size` slots, rebuilt from the entries. */
static int ds_index_resize(struct dns_synth *map, uint32_t size)
{
	uint32_t *by_name = calloc(size, sizeof(*by_name));
	uint32_t *by_addr = calloc(size, sizeof(*by_addr));

	if (!by_name || !by_addr) {
		free(by_name);
		free(by_addr);
		return -ENOMEM;
	}
	for (uint32_t e = 0; e < map->count; e++) {
		ds_index_put(by_name, size - 1u, map->entries[e].hash, e);
		ds_index_put(by_addr, size - 1u, map->entries[e].addr & POOL_MASK, e);
	}
	free(map->by_name);
	free(map->by_addr);
	map->by_name = by_name;
	map->by_addr = by_addr;
	map->index_size = size;
	return 0;
}

/* Room for one more entry with a name of len bytes; the map is unchanged
 * on failure.  Every array is capped by max_names, so a guest can make us
 * allocate at most what the header's memory note says. */
static int ds_reserve(struct dns_synth *map, size_t len)
{
	int r;

	if (map->count >= map->max_names)
		return -ENOSPC;
	if (map->count == map->entries_cap) {
		uint32_t cap = map->entries_cap ? map->entries_cap * 2u : ENTRIES_MIN;
		struct ds_entry *e;

		if (cap > map->max_names)
			cap = map->max_names;
		if (!(e = reallocarray(map->entries, cap, sizeof(*e))))
			return -ENOMEM;
		map->entries = e;
		map->entries_cap = cap;
	}
	if (len + 1u > map->arena_cap - map->arena_len) {
		size_t cap = map->arena_cap ? map->arena_cap * 2u : ARENA_MIN;
		size_t most = (size_t)map->max_names * HOST_PATTERN_BUF;
		char *a;

		if (cap > most)
			cap = most;
		if (len + 1u > cap - map->arena_len || !(a = realloc(map->arena, cap)))
			return -ENOMEM;
		map->arena = a;
		map->arena_cap = cap;
	}
	if (((size_t)map->count + 1u) * 2u > map->index_size &&
	    (r = ds_index_resize(map, map->index_size * 2u)) < 0)
		return r;
	return 0;
}

/* Append a normalized name with its address; ds_reserve() succeeded. */
static void ds_insert(struct dns_synth *map, const char *name, size_t len, uint32_t hash,
		      uint32_t addr)
{
	uint32_t e = map->count++;

	map->entries[e] = (struct ds_entry){
		.addr = addr,
		.name_off = (uint32_t)map->arena_len,
		.hash = hash,
		.name_len = (uint8_t)len,
	};
	memcpy(map->arena + map->arena_len, name, len);
	map->arena[map->arena_len + len] = '\0';
	map->arena_len += len + 1u;
	ds_index_put(map->by_name, map->index_size - 1u, hash, e);
	ds_index_put(map->by_addr, map->index_size - 1u, addr & POOL_MASK, e);
}

/* The next usable address no entry holds.  Terminates: count < max_names
 * <= DNS_SYNTH_POOL_USABLE, so at least one is free. */
static uint32_t ds_next_addr(struct dns_synth *map)
{
	for (;;) {
		uint32_t addr = DNS_SYNTH_NET | map->next_off;

		map->next_off = (map->next_off + 1u) & POOL_MASK;
		if (dns_synth_addr_usable(addr) && ds_find_addr(map, addr) == NO_ENTRY)
			return addr;
	}
}

static int ds_assign_normalized(struct dns_synth *map, const char *norm, uint32_t *ret_addr)
{
	size_t len = strlen(norm);
	uint32_t hash = ds_hash(map, norm, len);
	uint32_t e = ds_find_name(map, norm, len, hash);
	int r;

	if (e != NO_ENTRY) {
		*ret_addr = map->entries[e].addr;
		return 0;
	}
	if ((r = ds_reserve(map, len)) < 0)
		return r;
	*ret_addr = ds_next_addr(map);
	ds_insert(map, norm, len, hash, *ret_addr);
	return 1;
}

int dns_synth_new(const struct dns_synth_options *opts, struct dns_synth **ret_map)
{
	uint32_t max = opts && opts->max_names ? opts->max_names : DNS_SYNTH_DEFAULT_MAX_NAMES;
	struct dns_synth *map;
	int r;

	if (max > DNS_SYNTH_POOL_USABLE)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	if (!(map = calloc(1, sizeof(*map))))
		return -ENOMEM;
	map->max_names = max;
	randombytes_buf(map->key, sizeof(map->key));
	if ((r = ds_index_resize(map, INDEX_MIN)) < 0) {
		dns_synth_free(map);
		return r;
	}
	*ret_map = map;
	return 0;
}

void dns_synth_free(struct dns_synth *map)
{
	if (!map)
		return;
	free(map->entries);
	free(map->arena);
	free(map->by_name);
	free(map->by_addr);
	free(map);
}

size_t dns_synth_count(const struct dns_synth *map)
{
	return map->count;
}

int dns_synth_assign(struct dns_synth *map, const char *name, size_t len, uint32_t *ret_addr)
{
	char norm[HOST_PATTERN_BUF];
	int r;

	if ((r = ds_normalize(name, len, norm, NULL, 0)) < 0)
		return r;
	return ds_assign_normalized(map, norm, ret_addr);
}

int dns_synth_lookup(const struct dns_synth *map, const char *name, size_t len,
		     uint32_t *ret_addr)
{
	char norm[HOST_PATTERN_BUF];
	size_t n;
	uint32_t e;
	int r;

	if ((r = ds_normalize(name, len, norm, NULL, 0)) < 0)
		return r;
	n = strlen(norm);
	if ((e = ds_find_name(map, norm, n, ds_hash(map, norm, n))) == NO_ENTRY)
		return -ENOENT;
	*ret_addr = map->entries[e].addr;
	return 0;
}

int dns_synth_reverse(const struct dns_synth *map, uint32_t addr,
		      char ret_name[HOST_PATTERN_BUF])
{
	const struct ds_entry *e;
	uint32_t i;

	if ((addr & ~POOL_MASK) != DNS_SYNTH_NET)
		return -EADDRNOTAVAIL;
	if ((i = ds_find_addr(map, addr)) == NO_ENTRY)
		return -ENOENT;
	e = &map->entries[i];
	memcpy(ret_name, ds_name(map, e), (size_t)e->name_len + 1u);
	return 0;
}

int dns_synth_reverse_bytes(const struct dns_synth *map, const uint8_t *addr, size_t len,
			    char ret_name[HOST_PATTERN_BUF])
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	struct cursor c;
	uint32_t a;

	cursor_init(&c, addr, len);
	if (len == 16) {
		if (memcmp(addr, v4mapped, sizeof(v4mapped)) != 0)
			return -EADDRNOTAVAIL;
		if (cursor_skip(&c, sizeof(v4mapped)) != 0)
			return -EINVAL;
	} else if (len != 4) {
		return -EINVAL;
	}
	if (cursor_get_u32be(&c, &a) != 0)
		return -EINVAL;
	return dns_synth_reverse(map, a, ret_name);
}

/* The policy part of an answer: what rcode, and whether an A record. */
static void synth_decide(struct dns_synth *map, const struct dns_wire_query *q,
			 struct dns_synth_info *info)
{
	uint32_t addr;
	int r;

	/* RFC 6891 6.1.3: "If a responder does not implement the VERSION
	 * level of the request, then it MUST respond with RCODE=BADVERS." */
	if (q->edns && q->edns_version != 0) {
		info->rcode = DNS_RCODE_BADVERS;
		info->error = -EPROTONOSUPPORT;
		return;
	}
	if (q->qclass != DNS_CLASS_IN) {
		info->rcode = DNS_RCODE_REFUSED;
		info->error = -EPROTONOSUPPORT;
		return;
	}
	switch (q->qtype) {
	case 0:
	case DNS_TYPE_OPT:  /* RFC 6891 6.1.1: a pseudo-RR, never a question */
	case DNS_TYPE_TSIG: /* RFC 8945: only ever an additional record */
		info->rcode = DNS_RCODE_FORMERR;
		info->error = -EPROTONOSUPPORT;
		return;
	case DNS_TYPE_TKEY:
	case DNS_TYPE_IXFR:
	case DNS_TYPE_AXFR:
	case DNS_TYPE_MAILB:
	case DNS_TYPE_MAILA:
		info->rcode = DNS_RCODE_NOTIMP;
		info->error = -EPROTONOSUPPORT;
		return;
	default:
		break;
	}
	if (q->qname_len == 1) /* the root: it exists, and is no host */
		return;
	if (info->qname_text[0] == '\0' ||
	    ds_normalize(info->qname_text, strlen(info->qname_text), info->name, NULL, 0) < 0) {
		info->rcode = DNS_RCODE_NXDOMAIN;
		info->error = -EINVAL;
		return;
	}
	if (q->qtype != DNS_TYPE_A)
		return; /* NODATA: only A queries create mappings */
	r = ds_assign_normalized(map, info->name, &addr);
	if (r < 0) {
		info->rcode = r == -ENOSPC ? DNS_RCODE_REFUSED : DNS_RCODE_SERVFAIL;
		info->error = r;
		return;
	}
	info->addr = addr;
	info->created = r == 1;
}

int dns_synth_answer(struct dns_synth *map, const uint8_t *query, size_t len, uint8_t *out,
		     size_t cap, size_t *ret_len, struct dns_synth_info *ret_info)
{
	struct dns_synth_info info = { 0 };
	struct dns_wire_query q;
	size_t n;
	int r, rcode;

	/* Checked first, so no mapping is ever made for an answer that
	 * cannot be sent (its `created` would be lost). */
	if (cap < DNS_WIRE_ANSWER_MAX)
		return -ENOBUFS;
	if ((r = dns_wire_parse_query(query, len, &q)) < 0) {
		if ((rcode = dns_wire_error_rcode(r)) < 0)
			return -EBADMSG;
		info.rcode = (unsigned)rcode;
		info.error = r;
		if ((r = dns_wire_build_error(query, len, info.rcode, out, cap, &n)) < 0)
			return r;
	} else {
		info.has_question = true;
		info.qtype = q.qtype;
		if (dns_wire_name_text(q.qname, q.qname_len, info.qname_text) < 0)
			info.qname_text[0] = '\0';
		synth_decide(map, &q, &info);
		if ((r = dns_wire_build_answer(&q, info.rcode, info.addr != 0, info.addr,
					       DNS_SYNTH_TTL, out, cap, &n)) < 0)
			return r;
	}
	*ret_len = n;
	if (ret_info)
		*ret_info = info;
	return 0;
}

static size_t ds_format_line(const struct dns_synth *map, const struct ds_entry *e, char *buf,
			     size_t size)
{
	struct in_addr a = { .s_addr = htonl(e->addr) };
	char ip[INET_ADDRSTRLEN];
	int n;

	inet_ntop(AF_INET, &a, ip, sizeof(ip));
	n = snprintf(buf, size, "%s %s\n", ip, ds_name(map, e));
	return n < 0 ? 0 : (size_t)n;
}

int dns_synth_export(const struct dns_synth *map, char **ret_text, size_t *ret_len)
{
	size_t total = 0, off = 0;
	char *text;

	for (uint32_t i = 0; i < map->count; i++)
		total += ds_format_line(map, &map->entries[i], NULL, 0);
	if (!(text = malloc(total + 1u)))
		return -ENOMEM;
	for (uint32_t i = 0; i < map->count; i++)
		off += ds_format_line(map, &map->entries[i], text + off, total + 1u - off);
	text[total] = '\0';
	*ret_text = text;
	*ret_len = total;
	return 0;
}

__attribute__((format(printf, 4, 5)))
static int import_fail(struct dns_synth *map, char *err, size_t err_size, const char *fmt, ...)
{
	va_list ap;

	/* all or nothing: forget what the lines before the bad one added */
	map->count = 0;
	map->arena_len = 0;
	map->next_off = 0;
	memset(map->by_name, 0, (size_t)map->index_size * sizeof(*map->by_name));
	memset(map->by_addr, 0, (size_t)map->index_size * sizeof(*map->by_addr));
	if (err && err_size) {
		va_start(ap, fmt);
		vsnprintf(err, err_size, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* "<dotted quad>": strict (inet_pton: no leading zeros, no shorthand). */
static int import_addr(const uint8_t *s, size_t len, uint32_t *ret_addr)
{
	char buf[IPV4_TEXT_MAX + 1];
	struct in_addr a;

	if (len == 0 || len > IPV4_TEXT_MAX)
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -EINVAL;
	*ret_addr = ntohl(a.s_addr);
	return 0;
}

static int import_line(struct dns_synth *map, const uint8_t *line, size_t len, size_t lineno,
		       uint32_t *max_off, char *err, size_t err_size)
{
	char norm[HOST_PATTERN_BUF], why[192];
	const uint8_t *name;
	struct cursor c;
	size_t sp, name_len;
	uint32_t addr, hash;
	int r;

	cursor_init(&c, line, len);
	if (cursor_find(&c, ' ', len, &sp) != 0 || import_addr(line, sp, &addr) < 0)
		return import_fail(map, err, err_size, "line %zu: no '<IPv4 address> <name>'",
				   lineno);
	if (!dns_synth_addr_usable(addr))
		return import_fail(map, err, err_size,
				   "line %zu: address outside 198.18.0.0/15 or reserved", lineno);
	if (cursor_skip(&c, sp + 1u) != 0 ||
	    cursor_get_bytes(&c, cursor_remaining(&c), &name) != 0)
		return import_fail(map, err, err_size, "line %zu: truncated", lineno);
	name_len = len - sp - 1u;
	if (ds_normalize((const char *)name, name_len, norm, why, sizeof(why)) < 0)
		return import_fail(map, err, err_size, "line %zu: %s", lineno, why);
	if (strlen(norm) != name_len || memcmp(norm, name, name_len) != 0)
		return import_fail(map, err, err_size, "line %zu: name not in normalized form",
				   lineno);
	hash = ds_hash(map, norm, name_len);
	if (ds_find_name(map, norm, name_len, hash) != NO_ENTRY)
		return import_fail(map, err, err_size, "line %zu: duplicate name '%.64s'", lineno,
				   norm);
	if (ds_find_addr(map, addr) != NO_ENTRY)
		return import_fail(map, err, err_size, "line %zu: duplicate address", lineno);
	if ((r = ds_reserve(map, name_len)) == -ENOSPC)
		return import_fail(map, err, err_size, "line %zu: more than %u names", lineno,
				   map->max_names);
	if (r < 0) {
		(void)import_fail(map, err, err_size, "line %zu: out of memory", lineno);
		return r;
	}
	ds_insert(map, norm, name_len, hash, addr);
	if ((addr & POOL_MASK) > *max_off)
		*max_off = addr & POOL_MASK;
	return 0;
}

int dns_synth_import(struct dns_synth *map, const char *text, size_t len, char *err,
		     size_t err_size)
{
	const uint8_t *line;
	uint32_t max_off = 0;
	size_t nl, lineno = 0;
	struct cursor c;
	int r;

	if (map->count != 0)
		return -EBUSY;
	cursor_init(&c, text, len);
	while (cursor_remaining(&c) > 0) {
		lineno++;
		if (cursor_find(&c, '\n', cursor_remaining(&c), &nl) != 0)
			return import_fail(map, err, err_size, "line %zu: no final newline", lineno);
		if ((r = cursor_get_bytes(&c, nl, &line)) != 0 || (r = cursor_skip(&c, 1)) != 0)
			return import_fail(map, err, err_size, "line %zu: truncated", lineno);
		if ((r = import_line(map, line, nl, lineno, &max_off, err, err_size)) < 0)
			return r;
	}
	if (map->count > 0)
		map->next_off = (max_off + 1u) & POOL_MASK;
	return (int)map->count;
}
