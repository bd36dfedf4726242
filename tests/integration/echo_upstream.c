/*
 * echo_upstream — a tiny HTTPS upstream stand-in for the egress tests:
 * answers every request with 200 and a body that is the request head it
 * received, byte for byte (so a test sees exactly what the broker sent
 * upstream: swapped secrets, Host, query).  Request bodies
 * (Content-Length only) are read and discarded.  Keep-alive; one
 * connection at a time (tests run clients one after another).
 *
 * usage: echo_upstream CERT KEY PORTFILE
 * Listens on 127.0.0.1 with an ephemeral port, writes the port to PORTFILE
 * once listening, runs until killed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define HEAD_MAX 65536

/* Read one request head into buf; 0 at EOF/error, else its length. */
static size_t read_head(SSL *ssl, char *buf, size_t *have)
{
	for (;;) {
		char *end = *have ? memmem(buf, *have, "\r\n\r\n", 4) : NULL;
		int n;

		if (end)
			return (size_t)(end - buf) + 4;
		if (*have >= HEAD_MAX)
			return 0;
		n = SSL_read(ssl, buf + *have, (int)(HEAD_MAX - *have));
		if (n <= 0)
			return 0;
		*have += (size_t)n;
	}
}

static unsigned long content_length(const char *head, size_t len)
{
	const char *p = head;

	while (p < head + len) {
		const char *eol = memmem(p, (size_t)(head + len - p), "\r\n", 2);

		if (!eol)
			break;
		if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
			return strtoul(p + 15, NULL, 10);
		p = eol + 2;
	}
	return 0;
}

static void serve(SSL *ssl)
{
	static char buf[HEAD_MAX];
	size_t have = 0, hl;

	while ((hl = read_head(ssl, buf, &have)) > 0) {
		unsigned long cl = content_length(buf, hl);
		char resp[256];
		size_t extra = have - hl;

		snprintf(resp, sizeof(resp),
			 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n",
			 hl);
		if (SSL_write(ssl, resp, (int)strlen(resp)) <= 0 || SSL_write(ssl, buf, (int)hl) <= 0)
			return;
		/* discard the body: what is buffered, then the rest */
		if (extra >= cl) {
			memmove(buf, buf + hl + cl, extra - cl);
			have = extra - cl;
			continue;
		}
		cl -= extra;
		have = 0;
		while (cl > 0) {
			int n = SSL_read(ssl, buf, (int)(cl < HEAD_MAX ? cl : HEAD_MAX));

			if (n <= 0)
				return;
			cl -= (unsigned long)n;
		}
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	SSL_CTX *ctx;
	FILE *f;
	int one = 1, ls;

	if (argc != 4) {
		fprintf(stderr, "usage: echo_upstream CERT KEY PORTFILE\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, argv[1]) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 16) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &alen) < 0) {
		perror("echo_upstream: listen");
		return 1;
	}
	if (!(f = fopen(argv[3], "w")) || fprintf(f, "%u\n", ntohs(a.sin_port)) < 0 || fclose(f)) {
		perror("echo_upstream: port file");
		return 1;
	}
	for (;;) {
		int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
		SSL *ssl;

		if (fd < 0)
			continue;
		/* The answer goes out in two SSL_writes: without NODELAY, Nagle
		 * and the client's delayed ACK add ~40 ms to every request. */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_accept(ssl) == 1)
			serve(ssl);
		else
			ERR_clear_error();
		SSL_shutdown(ssl);
		SSL_free(ssl);
		close(fd);
	}
}
