/*
 * netsetup — the guest's network, with libnl-route (no `ip` binary).
 *
 *   lo up (the kernel then gives it 127.0.0.1/8);
 *   local 198.18.0.0/15 dev lo table local (type local, scope host): every
 *     synthetic address is local ("AnyIP"), so a connect() to 198.18.0.5:443
 *     reaches the agent's 0.0.0.0:443 listener and getsockname() on the
 *     accepted socket still says 198.18.0.5:443;
 *   198.18.0.1/32 on lo (scope host): an IPv4 address other than 127.0.0.1,
 *     without which getaddrinfo(AI_ADDRCONFIG) (getent ahosts, Node) finds
 *     no IPv4 configured and resolves nothing;
 *   no default route: a connect() anywhere else fails at once with
 *     ENETUNREACH (B3: the guest has no NIC; everything rides vsock).
 *
 * Contract: blocking netlink calls, run once at start before the loop;
 * no logging; 0 or negative errno (libnl codes mapped by netsetup_errno()).
 * Needs CAP_NET_ADMIN in the agent's network namespace.  Idempotent (the
 * route is added with NLM_F_REPLACE).
 */
#ifndef MIOSA_NETSETUP_H
#define MIOSA_NETSETUP_H

#define NETSETUP_SYNTHETIC_NET "198.18.0.0"
#define NETSETUP_SYNTHETIC_PREFIX 15
#define NETSETUP_GUEST_ADDR "198.18.0.1"

__attribute__((warn_unused_result))
int netsetup_apply(void);

/* 1 if the main table holds an IPv4 default route, 0 if not, or -errno. */
__attribute__((warn_unused_result))
int netsetup_has_default_route(void);

/* libnl's NLE_* code (positive or negative) as a negative errno. */
int netsetup_errno(int nl_error);

#endif
