/*
 * upstream_addr — which resolved upstream addresses the broker refuses to
 * connect to (DESIGN.md "Broker data path"): a guest must not reach the
 * host's loopback, the operator's private networks or cloud metadata
 * through the broker just by naming a host that resolves there.
 *
 * Refused (IPv4, also when embedded in IPv6 as ::ffff:a.b.c.d (mapped),
 * ::a.b.c.d (compatible, deprecated) or 64:ff9b::a.b.c.d (NAT64)):
 *   0.0.0.0/8 "this network", 10/8, 172.16/12, 192.168/16 private,
 *   100.64/10 CGNAT, 127/8 loopback, 169.254/16 link-local and metadata,
 *   198.18/15 (our own synthetic range: it would loop back into a guest),
 *   224/4 multicast, 240/4 reserved and 255.255.255.255.
 * Refused (IPv6): :: and ::1, fc00::/7 unique-local (fd00:ec2::254 metadata
 *   included), fe80::/10 link-local, fec0::/10 site-local, ff00::/8
 *   multicast.
 * Everything else is allowed.  An operator-set --connect-to target is
 * exempt; that decision is the caller's.
 *
 * Pure functions, thread-safe.  Addresses in network byte order.
 */
#ifndef MIOSA_UPSTREAM_ADDR_H
#define MIOSA_UPSTREAM_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* NULL if addr may be used, else a static reason token such as "loopback". */
const char *upstream_addr_refusal_v4(const uint8_t addr[4]);
const char *upstream_addr_refusal_v6(const uint8_t addr[16]);
/* AF_INET / AF_INET6; any other family is refused ("family"). */
const char *upstream_addr_refusal(const struct sockaddr *sa);

#endif
