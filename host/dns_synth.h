/*
 * dns_synth — the per-sandbox synthetic address map and the broker's answer
 * to a guest DNS query (B2: no guest-chosen name is looked up upstream here).
 *
 * The broker calls dns_synth_answer() once per Dns stream and
 * dns_synth_reverse() once per Egress open.  A map belongs to one sandbox
 * and lives as long as it does.
 *
 * Addresses (198.18.0.0/15, RFC 2544 benchmarking space, routed to the
 * agent inside the guest):
 *   - never handed out: every address whose last octet is 0 or 255 (this
 *     covers 198.18.0.0, the network, and 198.19.255.255, the broadcast
 *     form; some clients and middleboxes refuse .0/.255 even inside a
 *     larger prefix), and 198.18.0.1, kept for the broker itself should the
 *     guest ever need to reach it by address.  That leaves
 *     DNS_SYNTH_POOL_USABLE = 130047 addresses;
 *   - allocated in ascending order from 198.18.0.2, skipping the above and
 *     any address an import already holds;
 *   - never recycled: a name keeps its address for the map's life and an
 *     address never changes name, so an open connection (or a stale cached
 *     answer) can never be mapped to a different name than the one the
 *     guest resolved.  When max_names names are mapped, a new name is
 *     answered REFUSED (the limit lasts for the sandbox's life: REFUSED,
 *     not the retry-inviting SERVFAIL); names already mapped keep working.
 *
 * Answers (every name, in observe and enforce mode alike: policy acts on
 * the connection, so a blocked HTTPS call gets a readable 403, not a DNS
 * failure):
 *   - A for a host name: one A record with its address, TTL DNS_SYNTH_TTL
 *     (short; the broker persists maps, guest_dns_map.c, so a restart keeps
 *     every cached answer valid; the guest stub does not cache);
 *   - any other type (AAAA, HTTPS/SVCB, MX, TXT, ANY, ...) for a host name:
 *     NOERROR with no data (NODATA).  No AAAA so clients use the IPv4 catch;
 *     no HTTPS/SVCB so they fall back to A instead of trying ECH or
 *     alternative endpoints.  Only A queries create mappings;
 *   - negative answers carry no SOA: we are authoritative for nothing, a
 *     made-up SOA would invite negative caching (RFC 2308 section 5: none
 *     without a SOA) and the stub is one vsock hop away;
 *   - NXDOMAIN for names that are no host name at all: a label byte outside
 *     [A-Za-z0-9_-] (non-ASCII: IDNs must already be A-labels, xn--), a
 *     label starting or ending with '-', a name ending in a number (an IPv4
 *     literal such as "10.0.0.1", or "example.123"), and the special-use
 *     names below localhost., invalid. (RFC 6761 6.3, 6.4), onion. (RFC
 *     7686) and arpa. (reverse zones, home.arpa; no PTR is synthesized):
 *     the broker must never send a connection to its own loopback or map a
 *     literal, and NXDOMAIN is what the real DNS says for all of them.  The
 *     guest's /etc/hosts answers localhost before DNS is asked;
 *   - NOERROR/NODATA for the root name (it exists; nothing to map);
 *   - REFUSED for QCLASS other than IN; NOTIMP for zone transfers, MAILA,
 *     MAILB and TKEY; FORMERR for QTYPE 0, OPT and TSIG as questions;
 *     BADVERS for an EDNS version other than 0 (RFC 6891 section 6.1.3);
 *   - FORMERR/NOTIMP for malformed queries (see dns_wire.h), echoing ID and
 *     question when those parse; nothing at all for a message without a
 *     header or with QR set (the broker closes the stream; the stub then
 *     answers SERVFAIL itself);
 *   - SERVFAIL only when the broker itself fails (out of memory).
 * Names are compared after host_pattern_normalize_host() (case folded,
 * which makes 0x20-randomized queries map alike); the answer echoes the
 * question as sent.
 *
 * Memory: per name, a 16-byte entry, its normalized text plus NUL in one
 * arena, and a 4-byte slot in each of two hash indexes kept at most half
 * full: about 16 + (len + 1) + 16..32 bytes, ~60 bytes for a 20-byte name,
 * ~290 for a 253-byte one (measured: 65 and 286 bytes); arrays grow by
 * doubling up to their cap.  Worst case at the default cap (32768 names of
 * 253 bytes, which a hostile guest can ask for): about 9 MiB; 32768 typical
 * names: about 2 MiB.
 *
 * Contract: not thread-safe; a map is owned by one sandbox and used from
 * one thread (its loop).  Functions return 0 (or a count) or a negative
 * errno; ret_* outputs are written only on success.  No I/O, no logging:
 * dns_synth_info says what happened so the broker logs once.  Addresses are
 * uint32_t in host byte order (198.18.0.2 is 0xc6120002).
 */
#ifndef MIOSA_DNS_SYNTH_H
#define MIOSA_DNS_SYNTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns_wire.h"
#include "host_pattern.h"

#define DNS_SYNTH_NET 0xc6120000u          /* 198.18.0.0 */
#define DNS_SYNTH_POOL_SIZE (1u << 17)     /* /15 */
#define DNS_SYNTH_BROKER_ADDR 0xc6120001u  /* 198.18.0.1, reserved */
#define DNS_SYNTH_POOL_USABLE (DNS_SYNTH_POOL_SIZE - 2u * 512u - 1u) /* 130047 */
#define DNS_SYNTH_DEFAULT_MAX_NAMES 32768u
#define DNS_SYNTH_TTL 60u                  /* seconds, on every A record */

struct dns_synth;

struct dns_synth_options {
	uint32_t max_names; /* 0: DNS_SYNTH_DEFAULT_MAX_NAMES; at most DNS_SYNTH_POOL_USABLE */
};

/* opts may be NULL.  -EINVAL for a cap over the pool, -ENOMEM, -EIO if
 * libsodium (keyed name hashing) cannot start. */
__attribute__((warn_unused_result))
int dns_synth_new(const struct dns_synth_options *opts, struct dns_synth **ret_map);

void dns_synth_free(struct dns_synth *map);

size_t dns_synth_count(const struct dns_synth *map);

/* Is addr one the map could ever hand out (inside the /15, not reserved)? */
bool dns_synth_addr_usable(uint32_t addr);

/*
 * The address of a host name, mapping it if new.  The name is normalized
 * (host_pattern_normalize_host) and must be a host name the answer rules
 * above would map.  Returns 1 if the mapping was made now, 0 if it existed;
 * -EINVAL (not a mappable name), -ENOSPC (max_names reached), -ENOMEM.
 */
__attribute__((warn_unused_result))
int dns_synth_assign(struct dns_synth *map, const char *name, size_t len, uint32_t *ret_addr);

/* The address of a name already mapped: 0, -ENOENT, -EINVAL (not mappable). */
__attribute__((warn_unused_result))
int dns_synth_lookup(const struct dns_synth *map, const char *name, size_t len,
		     uint32_t *ret_addr);

/*
 * Reverse lookup for an Egress open: the normalized name addr maps to.
 * -EADDRNOTAVAIL if addr is not in 198.18.0.0/15, -ENOENT if it is but no
 * name has it (the broker refuses the connection).  O(1).
 */
__attribute__((warn_unused_result))
int dns_synth_reverse(const struct dns_synth *map, uint32_t addr,
		      char ret_name[HOST_PATTERN_BUF]);

/* The same for EgressOpen.dst_addr: 4 bytes, or 16 bytes of an IPv4-mapped
 * IPv6 address (::ffff:198.18.x.y), network order.  Other IPv6 addresses:
 * -EADDRNOTAVAIL; other lengths: -EINVAL. */
__attribute__((warn_unused_result))
int dns_synth_reverse_bytes(const struct dns_synth *map, const uint8_t *addr, size_t len,
			    char ret_name[HOST_PATTERN_BUF]);

struct dns_synth_info {
	unsigned rcode;                 /* answered (BADVERS = 16 is extended) */
	int error;                      /* why not NOERROR: -DNS_WIRE_E_* (malformed),
					 * -EINVAL (no host name), -ENOSPC (map full),
					 * -ENOMEM, -EPROTONOSUPPORT (class, type or EDNS
					 * version refused); 0 otherwise */
	bool has_question;              /* qtype and qname_text are meaningful */
	uint16_t qtype;
	char qname_text[DNS_WIRE_TEXT_BUF]; /* as asked, "" if not printable */
	char name[HOST_PATTERN_BUF];    /* normalized host name, "" if none */
	uint32_t addr;                  /* the A record's address, 0 if none */
	bool created;                   /* this query made the mapping: persist it */
};

/*
 * The one call the broker makes per Dns stream: parse query[0, len), map the
 * name if it is an A query for a new host name, build the answer in out
 * (DNS_WIRE_ANSWER_MAX bytes always suffice).  Returns 0 with an answer to
 * send (whatever its rcode), -EBADMSG when the message gets no answer (no
 * header, or QR set: close the stream), -ENOBUFS if cap is under
 * DNS_WIRE_ANSWER_MAX (checked first: nothing is mapped then).  ret_info
 * (may be NULL) says what was answered and why, for the broker's one log
 * line and for persisting a new mapping.
 */
__attribute__((warn_unused_result))
int dns_synth_answer(struct dns_synth *map, const uint8_t *query, size_t len, uint8_t *out,
		     size_t cap, size_t *ret_len, struct dns_synth_info *ret_info);

/*
 * Persistence across broker restarts.  Export: one line per mapping in
 * allocation order, "<dotted quad> <normalized name>\n", in a malloc'd
 * buffer (NUL-terminated, *ret_len without the NUL) the caller frees; an
 * empty map exports "".  Import: the same format (any order) into an empty
 * map (-EBUSY otherwise), all or nothing: any bad line (address outside the
 * pool or reserved, a name not in normalized form or not mappable, a
 * duplicate name or address, a missing final newline, more lines than
 * max_names) leaves the map empty and returns -EINVAL with the line number
 * and reason in err.  Allocation then continues after the highest address
 * imported.  Returns the number of mappings imported.
 */
__attribute__((warn_unused_result))
int dns_synth_export(const struct dns_synth *map, char **ret_text, size_t *ret_len);

__attribute__((warn_unused_result))
int dns_synth_import(struct dns_synth *map, const char *text, size_t len, char *err,
		     size_t err_size);

#endif
