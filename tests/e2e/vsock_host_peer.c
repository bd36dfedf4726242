/*
 * vsock_host_peer — the host end of the e2e vsock test (tests/e2e/vsock_qemu.sh).
 *
 *   vsock_host_peer serve PATH MIB        listen on the Unix socket PATH
 *                                         (miosa-vsock's <uds>_PORT), accept
 *                                         one guest connection, exchange MIB
 *                                         MiB each way
 *   vsock_host_peer connect UDS PORT MIB  host-initiated: connect to UDS,
 *                                         "CONNECT PORT\n", expect "OK ...\n",
 *                                         exchange
 *   vsock_host_peer baseline MIB          the same exchange over a Unix
 *                                         socketpair (two processes): the
 *                                         baseline miosa-vsock is compared to
 *
 * Prints one "key=value ..." result line; exit 0 only if every byte arrived
 * intact both ways.  Every wait has a deadline.
 */
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "vsock_stream.h"

#define TIMEOUT_SECS 100.0

static int unix_addr(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return -1;
	strcpy(sun->sun_path, path);
	return 0;
}

static double realtime(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int report(const char *mode, uint64_t bytes, double secs)
{
	/* MB/s counts one direction's bytes (both directions ran at once). */
	printf("mode=%s bytes=%llu secs=%.3f mbps=%.1f\n", mode, (unsigned long long)bytes, secs,
	       (double)bytes / 1e6 / secs);
	return 0;
}

static int serve(const char *path, uint64_t bytes)
{
	struct sockaddr_un sun;
	struct pollfd p;
	double secs;
	int lfd, fd;

	if (unix_addr(path, &sun) < 0 || (lfd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(lfd, 1) < 0) {
		perror("serve: listen");
		return 1;
	}
	p = (struct pollfd){ .fd = lfd, .events = POLLIN };
	if (poll(&p, 1, (int)(TIMEOUT_SECS * 1000)) != 1 || (fd = accept(lfd, NULL, NULL)) < 0) {
		fprintf(stderr, "serve: no guest connection within %.0f s\n", TIMEOUT_SECS);
		return 1;
	}
	/* When the guest's first connection arrived: the test's boot-to-ready mark. */
	printf("accepted_at=%.3f\n", realtime());
	fflush(stdout);
	if (stream_exchange(fd, bytes, STREAM_SEED_HOST, STREAM_SEED_GUEST, TIMEOUT_SECS, &secs) < 0)
		return 1;
	close(fd);
	return report("guest_initiated", bytes, secs);
}

static int connect_host(const char *uds, const char *port, uint64_t bytes)
{
	struct sockaddr_un sun;
	char line[64], req[32];
	size_t len = 0;
	double secs;
	int fd;

	if (unix_addr(uds, &sun) < 0 || (fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		perror("connect: uds");
		return 1;
	}
	snprintf(req, sizeof(req), "CONNECT %s\n", port);
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req))
		return 1;
	/* Byte by byte up to '\n': nothing of the stream that follows is eaten. */
	while (len < sizeof(line) - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, (int)(TIMEOUT_SECS * 1000)) != 1 || read(fd, line + len, 1) != 1) {
			fprintf(stderr, "connect: no answer to CONNECT\n");
			return 1;
		}
		if (line[len++] == '\n')
			break;
	}
	line[len] = '\0';
	if (strncmp(line, "OK ", 3) != 0) {
		fprintf(stderr, "connect: answer is not OK: %.40s\n", line);
		return 1;
	}
	if (stream_exchange(fd, bytes, STREAM_SEED_HOST, STREAM_SEED_GUEST, TIMEOUT_SECS, &secs) < 0)
		return 1;
	close(fd);
	return report("host_initiated", bytes, secs);
}

static int baseline(uint64_t bytes)
{
	int sv[2], status;
	double secs;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 1;
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		_exit(stream_exchange(sv[1], bytes, STREAM_SEED_GUEST, STREAM_SEED_HOST, TIMEOUT_SECS,
				      &secs) < 0);
	}
	close(sv[1]);
	if (pid < 0 ||
	    stream_exchange(sv[0], bytes, STREAM_SEED_HOST, STREAM_SEED_GUEST, TIMEOUT_SECS, &secs) < 0)
		return 1;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return 1;
	return report("unix_baseline", bytes, secs);
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "serve"))
		return serve(argv[2], strtoull(argv[3], NULL, 10) << 20);
	if (argc == 5 && !strcmp(argv[1], "connect"))
		return connect_host(argv[2], argv[3], strtoull(argv[4], NULL, 10) << 20);
	if (argc == 3 && !strcmp(argv[1], "baseline"))
		return baseline(strtoull(argv[2], NULL, 10) << 20);
	fprintf(stderr, "usage: vsock_host_peer serve PATH MIB | connect UDS PORT MIB | baseline MIB\n");
	return 2;
}
