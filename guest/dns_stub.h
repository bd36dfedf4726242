/*
 * dns_stub — the guest's resolver: UDP and TCP on 127.0.0.1:53.
 *
 * Every query is checked by dns_query_parse(); a malformed one is answered
 * locally (FORMERR / NOTIMP / REFUSED) or dropped, never forwarded.  A valid
 * one goes to the broker as its own stream (GuestOpen{dns: DnsQuery}); the
 * broker's DnsAnswer is relayed to the client unchanged once its ID and QR
 * bit match.  Nothing is resolved inside the guest (B2).  When the broker
 * cannot be reached, answers garbage, or takes longer than
 * DNS_STUB_TIMEOUT_MS, the client gets SERVFAIL at once instead of waiting
 * out its own timeout.  A UDP answer larger than the client can take (512,
 * or its EDNS size) becomes an empty reply with TC set, and the client
 * retries over TCP (RFC 1035 section 4.2.1).
 *
 * Caps: DNS_STUB_JOBS_MAX queries in flight, each holding a copy of the
 * query (<= 1232 bytes) and, while its answer arrives, one frame decoder
 * (64 KiB); DNS_STUB_QUEUE_MAX more wait in arrival order for a slot (a
 * copy of the query each, their timeout running; SERVFAIL beyond); DNS_STUB_TCP_MAX TCP clients, one query at a time
 * each (pipelined queries wait in their buffer), closed after
 * DNS_STUB_TCP_IDLE_MS without a query.
 *
 * Contract: loop thread only; logs each failure once (queries themselves at
 * debug level).  dns_stub_close() stops listening and cancels queries; the
 * stub is freed when its last handle has closed.
 */
#ifndef MIOSA_DNS_STUB_H
#define MIOSA_DNS_STUB_H

#include <stdbool.h>
#include <netinet/in.h>
#include <uv.h>

#include "transport.h"

#define DNS_STUB_JOBS_MAX 64u
#define DNS_STUB_QUEUE_MAX 1024u
#define DNS_STUB_TCP_MAX 16u
#define DNS_STUB_TIMEOUT_MS 4000u
#define DNS_STUB_TCP_IDLE_MS 10000u
#define DNS_STUB_RESOLV_CONF "/etc/resolv.conf"

struct dns_stub;

/* Binds UDP and TCP on addr (127.0.0.1:53 in the agent).  The transport
 * spec is copied. */
__attribute__((warn_unused_result))
int dns_stub_start(uv_loop_t *loop, const struct transport_spec *transport,
		   const struct sockaddr_in *addr, struct dns_stub **ret_stub);
void dns_stub_close(struct dns_stub *stub);

/*
 * Points the resolver at the stub: path becomes "nameserver 127.0.0.1".
 * Written in place (truncate + write), not renamed over: in a network
 * namespace, /etc/resolv.conf is a bind mount, which rename() cannot
 * replace.  A symlink is refused (-ELOOP) unless replace_symlink (PID 1
 * owns /etc), which replaces it with a file.
 */
__attribute__((warn_unused_result))
int dns_stub_write_resolv_conf(const char *path, bool replace_symlink);

#endif
