/*
 * vsock_stream — the traffic both ends of the e2e vsock test exchange (the
 * guest probe and the host peer include it; header-only so the static guest
 * binary needs nothing else).
 *
 * Full duplex: each side sends `bytes` of a pseudo-random stream seeded by
 * its role while receiving the peer's stream, and compares every received
 * byte with the stream it expects (byte by byte, not a checksum that could
 * collide).  Non-blocking fd + poll, with a
 * deadline: a stuck transfer fails instead of hanging.
 */
#ifndef MIOSA_E2E_VSOCK_STREAM_H
#define MIOSA_E2E_VSOCK_STREAM_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STREAM_SEED_GUEST 0x9e3779b9u
#define STREAM_SEED_HOST 0x85ebca6bu
#define STREAM_CHUNK 65536
/* Byte i of a stream is pattern[i % STREAM_PERIOD]: a prime period, so a
 * chunk delivered twice, dropped or out of order shows as a mismatch. */
#define STREAM_PERIOD 1048573u

static inline double stream_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift32 bytes: generated once, so the transfer measures the link and
 * not the generator. */
static inline void stream_pattern(uint8_t *p, uint32_t seed)
{
	uint32_t x = seed;

	for (uint32_t i = 0; i < STREAM_PERIOD; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

/* Compares n received bytes that start at stream offset off; -1 on a mismatch. */
static inline int stream_check(const uint8_t *pat, uint64_t off, const uint8_t *in, size_t n)
{
	while (n > 0) {
		size_t at = (size_t)(off % STREAM_PERIOD), k = STREAM_PERIOD - at;

		if (k > n)
			k = n;
		if (memcmp(pat + at, in, k) != 0)
			return -1;
		in += k;
		off += k;
		n -= k;
	}
	return 0;
}

/*
 * Returns 0 when `bytes` went out and `bytes` came in intact; -1 with a
 * message on stderr otherwise.  *ret_secs is the wall time of the transfer.
 */
static inline int stream_exchange(int fd, uint64_t bytes, uint32_t send_seed, uint32_t recv_seed,
				  double timeout_secs, double *ret_secs)
{
	static uint8_t out_pat[STREAM_PERIOD], in_pat[STREAM_PERIOD], in[STREAM_CHUNK];
	uint64_t sent = 0, received = 0;
	double start;

	stream_pattern(out_pat, send_seed);
	stream_pattern(in_pat, recv_seed);
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		return -1;
	start = stream_now();
	while (sent < bytes || received < bytes) {
		struct pollfd p = { .fd = fd, .events = 0 };
		int left_ms = (int)((start + timeout_secs - stream_now()) * 1000);

		if (left_ms <= 0) {
			fprintf(stderr, "stream: timeout (sent %llu, received %llu of %llu)\n",
				(unsigned long long)sent, (unsigned long long)received,
				(unsigned long long)bytes);
			return -1;
		}
		if (sent < bytes)
			p.events |= POLLOUT;
		if (received < bytes)
			p.events |= POLLIN;
		if (poll(&p, 1, left_ms) < 0 && errno != EINTR)
			return -1;
		if ((p.revents & POLLOUT) && sent < bytes) {
			size_t at = (size_t)(sent % STREAM_PERIOD), n = STREAM_PERIOD - at;
			ssize_t w;

			if (n > STREAM_CHUNK)
				n = STREAM_CHUNK;
			if (n > bytes - sent)
				n = (size_t)(bytes - sent);
			w = write(fd, out_pat + at, n);
			if (w < 0 && errno != EAGAIN && errno != EINTR) {
				perror("stream: write");
				return -1;
			}
			if (w > 0)
				sent += (uint64_t)w;
		}
		if ((p.revents & (POLLIN | POLLHUP | POLLERR)) && received < bytes) {
			uint64_t want = bytes - received;
			ssize_t n = read(fd, in, want < sizeof(in) ? (size_t)want : sizeof(in));

			if (n == 0) {
				fprintf(stderr, "stream: peer closed after %llu of %llu bytes\n",
					(unsigned long long)received, (unsigned long long)bytes);
				return -1;
			}
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				perror("stream: read");
				return -1;
			}
			if (n > 0) {
				if (stream_check(in_pat, received, in, (size_t)n) < 0) {
					fprintf(stderr, "stream: data differs in bytes %llu..%llu\n",
						(unsigned long long)received,
						(unsigned long long)(received + (uint64_t)n));
					return -1;
				}
				received += (uint64_t)n;
			}
		}
	}
	*ret_secs = stream_now() - start;
	return 0;
}

#endif
