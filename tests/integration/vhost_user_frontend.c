/*
 * vhost_user_frontend — plays QEMU (and the guest driver) against
 * miosa-vsock for tests/integration/vsock_backend.sh, without a VM: it
 * speaks vhost-user on SOCK, shares a memfd as guest memory, lays out the
 * rx/tx rings in it and writes virtio-vsock packets into them.
 *
 *   vhost_user_frontend SOCK UDS CID SCENARIO
 *
 *   clean     handshake as QEMU 7.2, rings running, GET_VRING_BASE, EOF
 *   vanish    handshake, rings running, EOF (QEMU killed)
 *   oversize  a header announcing a 8192-byte payload
 *   loop      a tx chain whose descriptors point at each other, kicked
 *   rxread    an rx buffer without the WRITE flag, needed for an RST
 *   data      guest REQUEST to port 7000 -> RESPONSE once miosa-vsock
 *             connected UDS_7000 (this program listens there), RW "hello"
 *             reaches the Unix socket, "world" written there comes back
 *             as RW; an RW whose header claims more payload than its chain
 *             holds resets the connection (RST, Unix socket closed); then
 *             a clean stop
 *
 * Exit 0 when every reply and packet was as expected.  Waits have deadlines.
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MEM_SIZE (1u << 20)
#define UVA 0x7f0000000000ull
#define NUM 16u
#define PORT 7000u
#define GUEST_PORT 1234u
#define HDR 44u
#define DEADLINE_MS 10000

static int sock, memfd, kick[2], call[2];
static uint8_t *mem;
static uint64_t cid;
static const char *uds;
/* ring r: desc at 0x1000 + r * 0x3000, avail +0x800, used +0x1000 */
static uint16_t avail_idx[2], used_seen[2];

#define DIE(...)                                      \
	do {                                          \
		fprintf(stderr, "frontend: " __VA_ARGS__); \
		fputc('\n', stderr);                  \
		exit(1);                              \
	} while (0)

static size_t ring_base(unsigned r)
{
	return 0x1000u + r * 0x3000u;
}

static void put_le(uint8_t *p, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = n; i > 0; i--)
		v = (v << 8) | p[i - 1];
	return v;
}

static void send_msg(uint32_t req, const void *payload, uint32_t size, const int *fds, unsigned nfds)
{
	uint8_t buf[12 + 512];
	union {
		char c[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { buf, 12 + size };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	put_le(buf, req, 4);
	put_le(buf + 4, 1, 4);
	put_le(buf + 8, size, 4);
	if (size)
		memcpy(buf + 12, payload, size);
	if (nfds) {
		struct cmsghdr *cm;

		mh.msg_control = ctl.c;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	if (sendmsg(sock, &mh, MSG_NOSIGNAL) != (ssize_t)(12 + size))
		DIE("sendmsg request %u: %s", req, strerror(errno));
}

static void read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t n;

		if (poll(&p, 1, DEADLINE_MS) != 1)
			DIE("timeout reading");
		n = read(fd, (uint8_t *)buf + got, len - got);
		if (n <= 0)
			DIE("read: %s", n ? strerror(errno) : "EOF");
		got += (size_t)n;
	}
}

/* Reads a reply to req; returns its payload size (payload in out). */
static uint32_t recv_reply(uint32_t req, uint8_t *out, size_t cap)
{
	uint8_t h[12];
	uint32_t size;

	read_full(sock, h, 12);
	size = (uint32_t)get_le(h + 8, 4);
	if (get_le(h, 4) != req || get_le(h + 4, 4) != (1u | 4u) || size > cap)
		DIE("bad reply header to %u", req);
	read_full(sock, out, size);
	return size;
}

static void send_u64(uint32_t req, uint64_t v)
{
	uint8_t p[8];

	put_le(p, v, 8);
	send_msg(req, p, 8, NULL, 0);
}

static void send_state(uint32_t req, uint32_t index, uint32_t num)
{
	uint8_t p[8];

	put_le(p, index, 4);
	put_le(p + 4, num, 4);
	send_msg(req, p, 8, NULL, 0);
}

static void handshake(void)
{
	uint8_t r[64], p[64] = { 0 };

	send_msg(1, NULL, 0, NULL, 0);                       /* GET_FEATURES */
	if (recv_reply(1, r, sizeof(r)) != 8 || get_le(r, 8) != ((1ull << 32) | (1ull << 30)))
		DIE("GET_FEATURES: unexpected features");
	send_msg(15, NULL, 0, NULL, 0);                      /* GET_PROTOCOL_FEATURES */
	if (recv_reply(15, r, sizeof(r)) != 8 || !(get_le(r, 8) & (1ull << 9)))
		DIE("GET_PROTOCOL_FEATURES: CONFIG not offered");
	send_u64(16, 1ull << 9);                             /* SET_PROTOCOL_FEATURES */
	send_msg(3, NULL, 0, NULL, 0);                       /* SET_OWNER */
	for (unsigned i = 0; i < 2; i++) {
		put_le(p, i, 8);
		send_msg(13, p, 8, &call[i], 1);             /* SET_VRING_CALL */
	}
	memset(p, 0, sizeof(p));
	put_le(p + 4, 8, 4);
	send_msg(24, p, 20, NULL, 0);                        /* GET_CONFIG */
	if (recv_reply(24, r, sizeof(r)) != 20 || get_le(r + 12, 8) != cid)
		DIE("GET_CONFIG: guest_cid is not %llu", (unsigned long long)cid);
	send_u64(2, (1ull << 32) | (1ull << 30));            /* SET_FEATURES */
	memset(p, 0, sizeof(p));
	put_le(p, 1, 4);
	put_le(p + 8, 0, 8);
	put_le(p + 16, MEM_SIZE, 8);
	put_le(p + 24, UVA, 8);
	send_msg(5, p, 8 + 32, &memfd, 1);                   /* SET_MEM_TABLE */
	for (unsigned i = 0; i < 2; i++) {
		send_state(8, i, NUM);                       /* SET_VRING_NUM */
		send_state(10, i, 0);                        /* SET_VRING_BASE */
		memset(p, 0, sizeof(p));
		put_le(p, i, 4);
		put_le(p + 8, UVA + ring_base(i), 8);
		put_le(p + 16, UVA + ring_base(i) + 0x1000, 8);
		put_le(p + 24, UVA + ring_base(i) + 0x800, 8);
		send_msg(9, p, 40, NULL, 0);                 /* SET_VRING_ADDR */
		put_le(p, i, 8);
		send_msg(12, p, 8, &kick[i], 1);             /* SET_VRING_KICK */
		send_state(18, i, 1);                        /* SET_VRING_ENABLE */
	}
}

static void stop_rings(void)
{
	uint8_t r[8];

	for (unsigned i = 0; i < 2; i++) {
		send_state(11, i, 0);                        /* GET_VRING_BASE */
		if (recv_reply(11, r, sizeof(r)) != 8 || get_le(r, 4) != i)
			DIE("GET_VRING_BASE %u: bad reply", i);
	}
}

static void set_desc(unsigned r, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *d = mem + ring_base(r) + 16u * i;

	put_le(d, addr, 8);
	put_le(d + 8, len, 4);
	put_le(d + 12, flags, 2);
	put_le(d + 14, next, 2);
}

static void make_avail(unsigned r, uint16_t head)
{
	uint8_t *avail = mem + ring_base(r) + 0x800;

	put_le(avail + 4 + 2 * (avail_idx[r] % NUM), head, 2);
	avail_idx[r]++;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	put_le(avail + 2, avail_idx[r], 2);
}

static void do_kick(unsigned r)
{
	uint64_t one = 1;

	if (write(kick[r], &one, 8) != 8)
		DIE("kick");
}

/* Waits until ring r's used idx moves; returns the used element's length. */
static uint32_t wait_used(unsigned r, uint32_t *ret_id)
{
	uint8_t *used = mem + ring_base(r) + 0x1000;
	struct pollfd p = { call[r], POLLIN, 0 };
	uint64_t v;

	while ((uint16_t)get_le(used + 2, 2) == used_seen[r]) {
		if (poll(&p, 1, DEADLINE_MS) != 1)
			DIE("timeout waiting for ring %u used", r);
		(void)!read(call[r], &v, 8);
	}
	*ret_id = (uint32_t)get_le(used + 4 + 8 * (used_seen[r] % NUM), 4);
	return (uint32_t)get_le(used + 8 + 8 * (used_seen[r]++ % NUM), 4);
}

/* claim: the header's len field, or UINT32_MAX for the true payload length. */
static void tx_packet(uint16_t slot, uint16_t op, const char *payload, uint32_t claim)
{
	size_t off = 0x40000 + 0x1000u * slot, len = payload ? strlen(payload) : 0;
	uint8_t *h = mem + off;

	memset(h, 0, HDR);
	put_le(h, cid, 8);
	put_le(h + 8, 2, 8);
	put_le(h + 16, GUEST_PORT, 4);
	put_le(h + 20, PORT, 4);
	put_le(h + 24, claim == UINT32_MAX ? len : claim, 4);
	put_le(h + 28, 1, 2);            /* STREAM */
	put_le(h + 30, op, 2);
	put_le(h + 36, 65536, 4);        /* buf_alloc */
	memcpy(h + HDR, payload ? payload : "", len);
	set_desc(1, slot, off, (uint32_t)(HDR + len), 0, 0);
	make_avail(1, slot);
	do_kick(1);
}

/* The next rx packet: op and payload. */
static uint16_t rx_packet(char *payload, size_t cap)
{
	uint32_t id, len = wait_used(0, &id);
	const uint8_t *h = mem + 0x10000 + 0x2000u * id;
	uint32_t plen = (uint32_t)get_le(h + 24, 4);

	if (len < HDR || plen != len - HDR || plen >= cap || get_le(h, 8) != 2 ||
	    get_le(h + 8, 8) != cid || get_le(h + 20, 4) != GUEST_PORT)
		DIE("rx packet malformed (len %u)", len);
	memcpy(payload, h + HDR, plen);
	payload[plen] = '\0';
	/* Give the buffer back, as the driver does. */
	make_avail(0, (uint16_t)id);
	do_kick(0);
	return (uint16_t)get_le(h + 30, 2);
}

static void scenario_data(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char buf[128];
	struct pollfd p;
	int lfd, fd;
	uint16_t op;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s_%u", uds, PORT);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(lfd, 1) < 0)
		DIE("listen %s: %s", sun.sun_path, strerror(errno));
	for (uint16_t i = 0; i < 8; i++) {   /* rx buffers: writable, 4 KiB + header */
		set_desc(0, i, 0x10000 + 0x2000u * i, 4096 + HDR, 2, 0);
		make_avail(0, i);
	}
	do_kick(0);
	tx_packet(0, 1, NULL, UINT32_MAX);                           /* REQUEST */
	p = (struct pollfd){ lfd, POLLIN, 0 };
	if (poll(&p, 1, DEADLINE_MS) != 1 || (fd = accept(lfd, NULL, NULL)) < 0)
		DIE("miosa-vsock did not connect %s", sun.sun_path);
	/* RESPONSE, possibly after a CREDIT_UPDATE. */
	while ((op = rx_packet(buf, sizeof(buf))) != 2)
		if (op != 6)
			DIE("expected RESPONSE, got op %u", op);
	tx_packet(1, 5, "hello", UINT32_MAX);                        /* RW */
	read_full(fd, buf, 5);
	if (memcmp(buf, "hello", 5))
		DIE("guest bytes did not reach the Unix socket intact");
	if (write(fd, "world", 5) != 5)
		DIE("write to the Unix socket");
	while ((op = rx_packet(buf, sizeof(buf))) != 5)
		if (op != 6)
			DIE("expected RW, got op %u", op);
	if (strcmp(buf, "world"))
		DIE("host bytes did not reach the guest intact: '%s'", buf);
	/* A packet whose header claims more payload than its chain holds: the
	 * connection is reset (RST to the guest, Unix socket closed). */
	tx_packet(2, 5, "short", 100);
	while ((op = rx_packet(buf, sizeof(buf))) != 3)
		if (op != 6)
			DIE("expected RST after a lying length, got op %u", op);
	p = (struct pollfd){ fd, POLLIN, 0 };
	if (poll(&p, 1, DEADLINE_MS) != 1 || read(fd, buf, 1) != 0)
		DIE("Unix socket not closed after the reset");
	close(fd);
	close(lfd);
	unlink(sun.sun_path);
	printf("data ok: REQUEST->RESPONSE, RW both ways\n");
}

int main(int argc, char **argv)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	const char *scenario;

	if (argc != 5)
		DIE("usage: vhost_user_frontend SOCK UDS CID SCENARIO");
	uds = argv[2];
	cid = strtoull(argv[3], NULL, 10);
	scenario = argv[4];
	memfd = memfd_create("guest", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, MEM_SIZE) < 0)
		DIE("memfd");
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (mem == MAP_FAILED)
		DIE("mmap");
	for (unsigned i = 0; i < 2; i++) {
		kick[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		call[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", argv[1]);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		DIE("connect %s: %s", argv[1], strerror(errno));

	if (!strcmp(scenario, "oversize")) {
		uint8_t h[12];

		put_le(h, 3, 4);
		put_le(h + 4, 1, 4);
		put_le(h + 8, 8192, 4);
		if (write(sock, h, 12) != 12)
			DIE("write");
		/* miosa-vsock must hang up on us. */
		struct pollfd p = { sock, POLLIN, 0 };
		if (poll(&p, 1, DEADLINE_MS) != 1 || read(sock, h, 1) != 0)
			DIE("connection not closed after an oversize message");
		return 0;
	}
	handshake();
	if (!strcmp(scenario, "clean")) {
		stop_rings();
	} else if (!strcmp(scenario, "vanish")) {
		/* nothing: EOF with rings running */
	} else if (!strcmp(scenario, "loop")) {
		set_desc(1, 0, 0x40000, 16, 1, 1);
		set_desc(1, 1, 0x40000, 16, 1, 0);
		make_avail(1, 0);
		do_kick(1);
		struct pollfd p = { sock, POLLIN, 0 };
		uint8_t b;
		if (poll(&p, 1, DEADLINE_MS) != 1 || read(sock, &b, 1) != 0)
			DIE("connection not closed after a chain loop");
		return 0;
	} else if (!strcmp(scenario, "rxread")) {
		/* An rx buffer the device may only read; a REQUEST nobody listens
		 * for makes the mux answer RST, which needs an rx buffer. */
		struct pollfd p = { sock, POLLIN, 0 };
		uint8_t b;

		set_desc(0, 0, 0x10000, 4096, 0, 0);
		make_avail(0, 0);
		tx_packet(0, 1, NULL, UINT32_MAX);
		if (poll(&p, 1, DEADLINE_MS) != 1 || read(sock, &b, 1) != 0)
			DIE("connection not closed after a readable rx buffer");
		return 0;
	} else if (!strcmp(scenario, "data")) {
		scenario_data();
		stop_rings();
	} else {
		DIE("unknown scenario %s", scenario);
	}
	close(sock);
	return 0;
}
