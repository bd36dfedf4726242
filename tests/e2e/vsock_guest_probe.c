/*
 * vsock_guest_probe — runs inside the e2e test's QEMU guest (static binary,
 * started by the initramfs /init).  Never run on a host: it opens AF_VSOCK.
 *
 *   vsock_guest_probe HOST_PORT LISTEN_PORT MIB
 *
 * 1. listens on vsock LISTEN_PORT (so the host may connect at any time);
 * 2. connects to CID 2 (the host) port HOST_PORT: miosa-vsock turns that
 *    into a connection to <uds>_HOST_PORT; exchanges MIB MiB each way;
 * 3. accepts the host-initiated connection (the host wrote "CONNECT
 *    LISTEN_PORT" to <uds>) and exchanges 1 MiB each way.
 * Prints "PROBE <step> ok ..." lines on the console; exit 0 if all passed.
 */
#include <stdlib.h>
#include <sys/socket.h>
#include <linux/vm_sockets.h>

#include "vsock_stream.h"

#define TIMEOUT_SECS 90.0

static int vsock_socket(void)
{
	return socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
}

int main(int argc, char **argv)
{
	struct sockaddr_vm host = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST };
	struct sockaddr_vm any = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY };
	uint64_t bytes;
	struct pollfd p;
	double secs;
	int lfd, fd;

	if (argc != 4) {
		fprintf(stderr, "usage: vsock_guest_probe HOST_PORT LISTEN_PORT MIB\n");
		return 2;
	}
	host.svm_port = (unsigned)strtoul(argv[1], NULL, 10);
	any.svm_port = (unsigned)strtoul(argv[2], NULL, 10);
	bytes = strtoull(argv[3], NULL, 10) << 20;

	lfd = vsock_socket();
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&any, sizeof(any)) < 0 || listen(lfd, 1) < 0) {
		perror("PROBE listen failed");
		return 1;
	}
	printf("PROBE listen ok port=%u\n", any.svm_port);
	fflush(stdout);

	fd = vsock_socket();
	if (fd < 0 || connect(fd, (struct sockaddr *)&host, sizeof(host)) < 0) {
		perror("PROBE connect failed");
		return 1;
	}
	if (stream_exchange(fd, bytes, STREAM_SEED_GUEST, STREAM_SEED_HOST, TIMEOUT_SECS, &secs) < 0) {
		printf("PROBE guest_initiated failed\n");
		return 1;
	}
	printf("PROBE guest_initiated ok bytes=%llu secs=%.3f\n", (unsigned long long)bytes, secs);
	fflush(stdout);
	close(fd);

	p = (struct pollfd){ .fd = lfd, .events = POLLIN };
	if (poll(&p, 1, (int)(TIMEOUT_SECS * 1000)) != 1 || (fd = accept(lfd, NULL, NULL)) < 0) {
		printf("PROBE host_initiated failed: no connection\n");
		return 1;
	}
	if (stream_exchange(fd, 1u << 20, STREAM_SEED_GUEST, STREAM_SEED_HOST, TIMEOUT_SECS, &secs) < 0) {
		printf("PROBE host_initiated failed\n");
		return 1;
	}
	printf("PROBE host_initiated ok bytes=%u secs=%.3f\n", 1u << 20, secs);
	fflush(stdout);
	close(fd);
	close(lfd);
	return 0;
}
