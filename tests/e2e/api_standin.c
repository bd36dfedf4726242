/*
 * api_standin — a local HTTPS stand-in for api.openai.com / api.github.com
 * in the QEMU walkthrough (test and demo), where the guest must never see a
 * real value: unlike tests/integration/echo_upstream it does not echo what
 * it received.
 *
 *   - Appends every request head it receives, verbatim, to RECORD (host
 *     side, 0600): that is where the test finds the real value "upstream",
 *     and the only place it is written.
 *   - Answers 200 with a short JSON body naming the host and path and, for
 *     each credential header (Authorization, X-Api-Key), the SHA-256 of its
 *     value: the guest (and the demo's narration) can tell which value
 *     arrived — the host side compares it with the hash of what it put in
 *     the vault — without the value itself entering the guest.
 *
 * Thread per connection, keep-alive, Content-Length bodies read and
 * discarded; a head over HEAD_MAX or a malformed one closes the connection.
 *
 * usage: api_standin CERT KEY PORTFILE RECORD
 * Listens on 127.0.0.1 with an ephemeral port, writes the port to PORTFILE
 * once listening, runs until killed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#define HEAD_MAX 16384
#define BODY_MAX (64u * 1024u * 1024u)

static SSL_CTX *ctx;
static int record_fd;
static pthread_mutex_t record_lock = PTHREAD_MUTEX_INITIALIZER;

/* One request head into buf; 0 at EOF/error/oversize, else its length. */
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

/* The value of header NAME in head (not NUL-terminated: len), or NULL. */
static const char *header(const char *head, size_t len, const char *name, size_t *ret_len)
{
	size_t nlen = strlen(name);
	const char *p = memmem(head, len, "\r\n", 2);

	while (p && p + 2 < head + len) {
		const char *line = p + 2;
		const char *eol = memmem(line, (size_t)(head + len - line), "\r\n", 2);

		if (!eol || eol == line)
			return NULL;
		if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
		    strncasecmp(line, name, nlen) == 0) {
			const char *v = line + nlen + 1;

			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			*ret_len = (size_t)(eol - v);
			return v;
		}
		p = eol;
	}
	return NULL;
}

static void sha256_hex(const char *data, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;

	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	for (unsigned int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* "Bearer X" / "token X" / "Basic X": the hash covers X, the credential. */
static void credential_json(const char *head, size_t hl, const char *name, char *out, size_t cap)
{
	size_t vlen;
	const char *v = header(head, hl, name, &vlen);
	const char *sp;
	char hex[65];

	out[0] = '\0';
	if (!v)
		return;
	sp = memchr(v, ' ', vlen);
	if (sp && strcasecmp(name, "authorization") == 0) {
		vlen -= (size_t)(sp + 1 - v);
		v = sp + 1;
	}
	sha256_hex(v, vlen, hex);
	snprintf(out, cap, ",\"%s_sha256\":\"%s\"", name, hex);
}

static int record(const char *head, size_t hl)
{
	int r = 0;

	pthread_mutex_lock(&record_lock);
	for (size_t off = 0; off < hl;) {
		ssize_t n = write(record_fd, head + off, hl - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = -1;
			break;
		}
		off += (size_t)n;
	}
	pthread_mutex_unlock(&record_lock);
	return r;
}

static unsigned long content_length(const char *head, size_t hl)
{
	size_t vlen;
	const char *v = header(head, hl, "content-length", &vlen);
	unsigned long n = 0;

	for (size_t i = 0; v && i < vlen && v[i] >= '0' && v[i] <= '9'; i++)
		n = n * 10 + (unsigned long)(v[i] - '0');
	return n > BODY_MAX ? BODY_MAX : n;
}

static void serve(SSL *ssl)
{
	char buf[HEAD_MAX];
	size_t have = 0, hl;

	while ((hl = read_head(ssl, buf, &have)) > 0) {
		unsigned long cl = content_length(buf, hl);
		size_t hostlen = 0, extra = have - hl;
		const char *host = header(buf, hl, "host", &hostlen);
		const char *sp1 = memchr(buf, ' ', hl);
		const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(buf + hl - sp1 - 1)) : NULL;
		char auth[128], apikey[128], body[1024], resp[256];
		int blen;

		if (!host || !sp1 || !sp2 || record(buf, hl) < 0)
			return;
		credential_json(buf, hl, "authorization", auth, sizeof(auth));
		credential_json(buf, hl, "x-api-key", apikey, sizeof(apikey));
		/* host and path come from the broker's parser: no quote or control
		 * byte can be in them, they are not escaped further. */
		blen = snprintf(body, sizeof(body), "{\"host\":\"%.*s\",\"path\":\"%.*s\"%s%s}\n",
				(int)(hostlen > 200 ? 200 : hostlen), host,
				(int)((size_t)(sp2 - sp1 - 1) > 400 ? 400 : (size_t)(sp2 - sp1 - 1)),
				sp1 + 1, auth, apikey);
		if (blen < 0 || (size_t)blen >= sizeof(body))
			return;
		snprintf(resp, sizeof(resp),
			 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
			 blen);
		if (SSL_write(ssl, resp, (int)strlen(resp)) <= 0 || SSL_write(ssl, body, blen) <= 0)
			return;
		if (extra >= cl) {
			memmove(buf, buf + hl + cl, extra - cl);
			have = extra - cl;
			continue;
		}
		cl -= extra;
		have = 0;
		while (cl > 0) {
			int n = SSL_read(ssl, buf, (int)(cl < sizeof(buf) ? cl : sizeof(buf)));

			if (n <= 0)
				return;
			cl -= (unsigned long)n;
		}
	}
}

static void *connection(void *arg)
{
	int fd = (int)(intptr_t)arg;
	SSL *ssl = SSL_new(ctx);

	if (ssl) {
		SSL_set_fd(ssl, fd);
		if (SSL_accept(ssl) == 1)
			serve(ssl);
		SSL_shutdown(ssl);
		SSL_free(ssl);
	}
	ERR_clear_error();
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	pthread_attr_t attr;
	FILE *f;
	int one = 1, ls;

	if (argc != 5) {
		fprintf(stderr, "usage: api_standin CERT KEY PORTFILE RECORD\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	record_fd = open(argv[4], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (record_fd < 0) {
		perror("api_standin: record file");
		return 1;
	}
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, argv[1]) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 64) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &alen) < 0) {
		perror("api_standin: listen");
		return 1;
	}
	if (!(f = fopen(argv[3], "w")) || fprintf(f, "%u\n", ntohs(a.sin_port)) < 0 || fclose(f)) {
		perror("api_standin: port file");
		return 1;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (;;) {
		int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
		pthread_t t;

		if (fd < 0)
			continue;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (pthread_create(&t, &attr, connection, (void *)(intptr_t)fd) != 0)
			close(fd);
	}
}
