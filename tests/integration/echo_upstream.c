/*
 * echo_upstream — a tiny upstream stand-in for the egress tests.
 *
 * usage: echo_upstream CERT KEY PORTFILE        HTTPS (below)
 *        echo_upstream --tcp-echo PORTFILE      plain TCP: every byte read is
 *                                               written back, EOF -> EOF
 *        echo_upstream --silent PORTFILE        plain TCP: accepts, reads,
 *                                               never writes a byte (a
 *                                               stalled upstream / TLS peer)
 * Listens on 127.0.0.1 with an ephemeral port, writes the port to PORTFILE
 * once listening, runs until killed.  One thread per connection, so a
 * keep-alive connection held by the broker never blocks another.
 *
 * HTTPS routes (keep-alive; request bodies with Content-Length or chunked
 * framing are read whole):
 *   /upload...        200, body "sha256=<hex> length=<n>\n" of the request
 *                     body after de-chunking (what the upstream received)
 *   /download/N       200, Content-Length N, byte i = i % 251 (N <= 1 GiB)
 *   /stall...         reads the request, never answers (until the peer goes)
 *   anything else     200, body = the request head received, byte for byte
 *                     (so a test sees exactly what the broker sent upstream:
 *                     swapped secrets, Host, query)
 * Every answer carries "X-Upstream-Conn: <n>" (1, 2, ... per accepted
 * connection) and "X-Upstream-Peer-Port: <port>" (the broker's source port):
 * which upstream connection served a request.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#define HEAD_MAX 65536
#define DOWNLOAD_MAX (1ul << 30)

enum mode { MODE_HTTPS, MODE_TCP_ECHO, MODE_SILENT };

struct conn {
	int fd;
	unsigned long id;
	unsigned peer_port;
	SSL *ssl;
	enum mode mode;
	size_t have;           /* bytes in buf */
	char buf[HEAD_MAX];
};

static SSL_CTX *ctx;
static atomic_ulong conn_counter;

static int conn_read(struct conn *c, void *p, size_t n)
{
	if (c->ssl)
		return SSL_read(c->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n));
	return (int)read(c->fd, p, n);
}

static bool conn_write(struct conn *c, const void *p, size_t n)
{
	const char *q = p;

	while (n > 0) {
		int w = c->ssl ? SSL_write(c->ssl, q, (int)(n > 65536 ? 65536 : n))
			       : (int)write(c->fd, q, n);

		if (w <= 0)
			return false;
		q += w;
		n -= (size_t)w;
	}
	return true;
}

/* Make buf hold at least need bytes; false at EOF/error. */
static bool fill(struct conn *c, size_t need)
{
	while (c->have < need) {
		int n;

		if (c->have >= HEAD_MAX)
			return false;
		n = conn_read(c, c->buf + c->have, HEAD_MAX - c->have);
		if (n <= 0)
			return false;
		c->have += (size_t)n;
	}
	return true;
}

static void drop(struct conn *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->have - n);
	c->have -= n;
}

/* The length of the CRLF-terminated line at the start of buf (CRLF
 * included), reading more as needed; 0 at EOF/error/oversize. */
static size_t line_len(struct conn *c)
{
	for (;;) {
		char *eol = c->have ? memmem(c->buf, c->have, "\r\n", 2) : NULL;

		if (eol)
			return (size_t)(eol - c->buf) + 2;
		if (!fill(c, c->have + 1))
			return 0;
	}
}

/* One request head at the start of buf; 0 at EOF/error, else its length. */
static size_t read_head(struct conn *c)
{
	for (;;) {
		char *end = c->have ? memmem(c->buf, c->have, "\r\n\r\n", 4) : NULL;

		if (end)
			return (size_t)(end - c->buf) + 4;
		if (!fill(c, c->have + 1))
			return 0;
	}
}

/* The value of header name (with ':') in head, or NULL. */
static const char *header(const char *head, size_t len, const char *name)
{
	size_t nl = strlen(name);

	for (const char *p = head; p < head + len;) {
		const char *eol = memmem(p, (size_t)(head + len - p), "\r\n", 2);

		if (!eol)
			break;
		if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0) {
			p += nl;
			while (*p == ' ')
				p++;
			return p;
		}
		p = eol + 2;
	}
	return NULL;
}

/* Read the request body (buf starts at it); feed it to md when given. */
static bool read_body(struct conn *c, const char *head, size_t hl, EVP_MD_CTX *md,
		      uint64_t *ret_len)
{
	const char *te = header(head, hl, "transfer-encoding:");
	const char *cl = header(head, hl, "content-length:");
	uint64_t total = 0;

	if (te && strncasecmp(te, "chunked", 7) == 0) {
		for (;;) {
			size_t ll = line_len(c);
			unsigned long long sz;

			if (ll == 0)
				return false;
			sz = strtoull(c->buf, NULL, 16);
			drop(c, ll);
			if (sz == 0) {
				/* trailers up to the empty line */
				while ((ll = line_len(c)) > 2)
					drop(c, ll);
				if (ll == 0)
					return false;
				drop(c, ll);
				break;
			}
			while (sz > 0) {
				size_t n;

				if (c->have == 0 && !fill(c, 1))
					return false;
				n = c->have < sz ? c->have : (size_t)sz;
				if (md)
					EVP_DigestUpdate(md, c->buf, n);
				drop(c, n);
				sz -= n;
				total += n;
			}
			if (!fill(c, 2) || memcmp(c->buf, "\r\n", 2) != 0)
				return false;
			drop(c, 2);
		}
	} else if (cl) {
		unsigned long long left = strtoull(cl, NULL, 10);

		while (left > 0) {
			size_t n;

			if (c->have == 0 && !fill(c, 1))
				return false;
			n = c->have < left ? c->have : (size_t)left;
			if (md)
				EVP_DigestUpdate(md, c->buf, n);
			drop(c, n);
			left -= n;
			total += n;
		}
	}
	*ret_len = total;
	return true;
}

static bool answer(struct conn *c, const char *body, size_t len)
{
	char resp[512];

	snprintf(resp, sizeof(resp),
		 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
		 "X-Upstream-Conn: %lu\r\nX-Upstream-Peer-Port: %u\r\n\r\n",
		 len, c->id, c->peer_port);
	return conn_write(c, resp, strlen(resp)) && conn_write(c, body, len);
}

static bool download(struct conn *c, unsigned long n)
{
	char resp[512], chunk[251 * 64];

	if (n > DOWNLOAD_MAX)
		n = DOWNLOAD_MAX;
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (char)(i % 251);
	snprintf(resp, sizeof(resp),
		 "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
		 "Content-Length: %lu\r\nX-Upstream-Conn: %lu\r\nX-Upstream-Peer-Port: %u\r\n\r\n",
		 n, c->id, c->peer_port);
	if (!conn_write(c, resp, strlen(resp)))
		return false;
	/* chunk is a whole number of 251-byte periods: every write starts at i % 251 == 0 */
	while (n > 0) {
		size_t k = n < sizeof(chunk) ? n : sizeof(chunk);

		if (!conn_write(c, chunk, k))
			return false;
		n -= k;
	}
	return true;
}

static void serve_https(struct conn *c)
{
	char head[HEAD_MAX];
	size_t hl;

	while ((hl = read_head(c)) > 0) {
		uint64_t len = 0;
		bool ok;

		memcpy(head, c->buf, hl);
		drop(c, hl);
		if (strncmp(head, "POST /upload", 12) == 0 || strncmp(head, "PUT /upload", 11) == 0) {
			EVP_MD_CTX *md = EVP_MD_CTX_new();
			unsigned char dg[32];
			char out[128];
			unsigned dl = 0;

			if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL) ||
			    !read_body(c, head, hl, md, &len) || !EVP_DigestFinal_ex(md, dg, &dl)) {
				EVP_MD_CTX_free(md);
				return;
			}
			EVP_MD_CTX_free(md);
			size_t o = (size_t)snprintf(out, sizeof(out), "sha256=");
			for (unsigned i = 0; i < dl; i++)
				o += (size_t)snprintf(out + o, sizeof(out) - o, "%02x", dg[i]);
			snprintf(out + o, sizeof(out) - o, " length=%llu\n", (unsigned long long)len);
			ok = answer(c, out, strlen(out));
		} else if (strncmp(head, "GET /download/", 14) == 0) {
			ok = read_body(c, head, hl, NULL, &len) &&
			     download(c, strtoul(head + 14, NULL, 10));
		} else if (strncmp(head, "GET /stall", 10) == 0) {
			char sink[4096];

			while (conn_read(c, sink, sizeof(sink)) > 0)
				;
			return;
		} else {
			ok = read_body(c, head, hl, NULL, &len) && answer(c, head, hl);
		}
		if (!ok)
			return;
	}
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	char sink[65536];
	int n;

	switch (c->mode) {
	case MODE_HTTPS:
		c->ssl = SSL_new(ctx);
		if (c->ssl && SSL_set_fd(c->ssl, c->fd) == 1 && SSL_accept(c->ssl) == 1) {
			serve_https(c);
			SSL_shutdown(c->ssl);
		}
		ERR_clear_error();
		SSL_free(c->ssl);
		break;
	case MODE_TCP_ECHO:
		while ((n = (int)read(c->fd, sink, sizeof(sink))) > 0)
			if (!conn_write(c, sink, (size_t)n))
				break;
		break;
	case MODE_SILENT:
		while (read(c->fd, sink, sizeof(sink)) > 0)
			;
		break;
	}
	close(c->fd);
	free(c);
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	enum mode mode = MODE_HTTPS;
	const char *portfile;
	pthread_attr_t attr;
	FILE *f;
	int one = 1, ls;

	if (argc == 3 && strcmp(argv[1], "--tcp-echo") == 0) {
		mode = MODE_TCP_ECHO;
		portfile = argv[2];
	} else if (argc == 3 && strcmp(argv[1], "--silent") == 0) {
		mode = MODE_SILENT;
		portfile = argv[2];
	} else if (argc == 4 && argv[1][0] != '-') {
		portfile = argv[3];
	} else {
		fprintf(stderr, "usage: echo_upstream CERT KEY PORTFILE\n"
				"       echo_upstream --tcp-echo|--silent PORTFILE\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (mode == MODE_HTTPS) {
		ctx = SSL_CTX_new(TLS_server_method());
		if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, argv[1]) != 1 ||
		    SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1) {
			ERR_print_errors_fp(stderr);
			return 1;
		}
	}
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1024) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &alen) < 0) {
		perror("echo_upstream: listen");
		return 1;
	}
	if (!(f = fopen(portfile, "w")) || fprintf(f, "%u\n", ntohs(a.sin_port)) < 0 || fclose(f)) {
		perror("echo_upstream: port file");
		return 1;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (;;) {
		struct sockaddr_in peer;
		socklen_t plen = sizeof(peer);
		int fd = accept4(ls, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
		struct conn *c;
		pthread_t t;

		if (fd < 0)
			continue;
		/* Answers go out in several writes: without NODELAY, Nagle and
		 * the client's delayed ACK add ~40 ms to every request. */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (!(c = calloc(1, sizeof(*c)))) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->mode = mode;
		c->id = atomic_fetch_add(&conn_counter, 1) + 1;
		c->peer_port = ntohs(peer.sin_port);
		if (pthread_create(&t, &attr, conn_main, c) != 0) {
			close(fd);
			free(c);
		}
	}
}
