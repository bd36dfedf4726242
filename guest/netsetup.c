#include "netsetup.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdbool.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <linux/rtnetlink.h>

int netsetup_errno(int nl_error)
{
	static const struct {
		int nle, err;
	} map[] = {
		{ NLE_INTR, EINTR },	       { NLE_BAD_SOCK, EBADF },
		{ NLE_AGAIN, EAGAIN },	       { NLE_NOMEM, ENOMEM },
		{ NLE_EXIST, EEXIST },	       { NLE_INVAL, EINVAL },
		{ NLE_RANGE, ERANGE },	       { NLE_MSGSIZE, EMSGSIZE },
		{ NLE_OPNOTSUPP, EOPNOTSUPP }, { NLE_AF_NOSUPPORT, EAFNOSUPPORT },
		{ NLE_OBJ_NOTFOUND, ENOENT },  { NLE_BUSY, EBUSY },
		{ NLE_NOACCESS, EACCES },      { NLE_PERM, EPERM },
		{ NLE_NODEV, ENODEV },
	};
	int nle = nl_error < 0 ? -nl_error : nl_error;

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (map[i].nle == nle)
			return -map[i].err;
	return -EIO;
}

static int link_up(struct nl_sock *sk, int *ret_ifindex)
{
	struct rtnl_link *lo = NULL, *change = NULL;
	int r;

	if ((r = rtnl_link_get_kernel(sk, 0, "lo", &lo)) < 0)
		goto out;
	change = rtnl_link_alloc();
	if (!change) {
		r = -NLE_NOMEM;
		goto out;
	}
	rtnl_link_set_flags(change, IFF_UP);
	if ((r = rtnl_link_change(sk, lo, change, 0)) < 0)
		goto out;
	*ret_ifindex = rtnl_link_get_ifindex(lo);
out:
	rtnl_link_put(change);
	rtnl_link_put(lo);
	return r < 0 ? netsetup_errno(r) : 0;
}

/* ip route replace local 198.18.0.0/15 dev lo table local scope host */
static int build_route(int ifindex, struct rtnl_route **ret_route)
{
	struct rtnl_route *route = rtnl_route_alloc();
	struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
	struct nl_addr *dst = NULL;
	struct in_addr net;
	int r = -NLE_NOMEM;

	inet_pton(AF_INET, NETSETUP_SYNTHETIC_NET, &net);
	if (!route || !nh || !(dst = nl_addr_build(AF_INET, &net, sizeof(net))))
		goto fail;
	nl_addr_set_prefixlen(dst, NETSETUP_SYNTHETIC_PREFIX);
	rtnl_route_set_family(route, AF_INET);
	if ((r = rtnl_route_set_dst(route, dst)) < 0 ||
	    (r = rtnl_route_set_type(route, RTN_LOCAL)) < 0)
		goto fail;
	rtnl_route_set_table(route, RT_TABLE_LOCAL);
	rtnl_route_set_scope(route, RT_SCOPE_HOST);
	rtnl_route_set_protocol(route, RTPROT_BOOT);
	rtnl_route_nh_set_ifindex(nh, ifindex);
	rtnl_route_add_nexthop(route, nh); /* the route owns nh now */
	nl_addr_put(dst);
	*ret_route = route;
	return 0;
fail:
	nl_addr_put(dst);
	if (nh)
		rtnl_route_nh_free(nh);
	rtnl_route_put(route);
	return r;
}

static int add_synthetic_route(struct nl_sock *sk, int ifindex)
{
	struct rtnl_route *route = NULL;
	int r;

	if ((r = build_route(ifindex, &route)) < 0)
		return netsetup_errno(r);
	r = rtnl_route_add(sk, route, NLM_F_REPLACE);
	rtnl_route_put(route);
	return r < 0 ? netsetup_errno(r) : 0;
}

/*
 * ip addr add 198.18.0.1/32 dev lo scope host.  Routing needs no address
 * (the /15 is local already), but getaddrinfo() with AI_ADDRCONFIG (getent
 * ahosts, Node's net.connect) returns nothing for IPv4 unless some IPv4
 * address other than 127.0.0.1 is configured (glibc check_pf.c).  Any
 * address of the range would do; one more local address changes nothing
 * for connections to it.
 */
static int add_guest_address(struct nl_sock *sk, int ifindex)
{
	struct rtnl_addr *addr = rtnl_addr_alloc();
	struct nl_addr *local = NULL;
	struct in_addr in;
	int r = -NLE_NOMEM;

	inet_pton(AF_INET, NETSETUP_GUEST_ADDR, &in);
	if (!addr || !(local = nl_addr_build(AF_INET, &in, sizeof(in))))
		goto out;
	nl_addr_set_prefixlen(local, 32);
	rtnl_addr_set_ifindex(addr, ifindex);
	rtnl_addr_set_family(addr, AF_INET);
	rtnl_addr_set_scope(addr, RT_SCOPE_HOST);
	if ((r = rtnl_addr_set_local(addr, local)) < 0)
		goto out;
	r = rtnl_addr_add(sk, addr, 0);
	if (r == -NLE_EXIST)
		r = 0; /* a restarted agent finds it */
out:
	nl_addr_put(local);
	rtnl_addr_put(addr);
	return r < 0 ? netsetup_errno(r) : 0;
}

static int open_socket(struct nl_sock **ret_sk)
{
	struct nl_sock *sk = nl_socket_alloc();
	int r;

	if (!sk)
		return -ENOMEM;
	if ((r = nl_connect(sk, NETLINK_ROUTE)) < 0) {
		nl_socket_free(sk);
		return netsetup_errno(r);
	}
	*ret_sk = sk;
	return 0;
}

int netsetup_apply(void)
{
	struct nl_sock *sk = NULL;
	int ifindex = 0, r;

	if ((r = open_socket(&sk)) < 0)
		return r;
	if ((r = link_up(sk, &ifindex)) == 0 && (r = add_synthetic_route(sk, ifindex)) == 0)
		r = add_guest_address(sk, ifindex);
	nl_socket_free(sk);
	return r;
}

int netsetup_has_default_route(void)
{
	struct nl_sock *sk = NULL;
	struct nl_cache *cache = NULL;
	bool found = false;
	int r;

	if ((r = open_socket(&sk)) < 0)
		return r;
	if ((r = rtnl_route_alloc_cache(sk, AF_INET, 0, &cache)) < 0) {
		nl_socket_free(sk);
		return netsetup_errno(r);
	}
	for (struct nl_object *o = nl_cache_get_first(cache); o && !found; o = nl_cache_get_next(o)) {
		struct rtnl_route *route = (struct rtnl_route *)o;
		struct nl_addr *dst = rtnl_route_get_dst(route);

		found = rtnl_route_get_table(route) == RT_TABLE_MAIN && dst &&
			nl_addr_get_prefixlen(dst) == 0;
	}
	nl_cache_free(cache);
	nl_socket_free(sk);
	return found;
}
