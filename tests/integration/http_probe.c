/*
 * http_probe — the integration scripts' byte-level HTTP tool, so they need
 * neither socat, nc nor jq:
 *
 *   http_probe send (--unix PATH | --tcp HOST:PORT) [--timeout S] [--shut]
 *       Send standard input verbatim, then read one response with the strict
 *       codec and print a summary:
 *           STATUS ERROR_CODE          ("-" when the body has no "error")
 *           header NAME: VALUE         (one line per header field)
 *           body BODY                  (the body, as received, on one line)
 *       Exit 0; 3 if the connection closed without a complete response;
 *       4 on timeout; 5 if the response is malformed; 1 other errors.
 *
 *   http_probe serve (--unix PATH | --tcp PORT) --capture FILE [--ready FILE]
 *                    [--count N] [--status N] [--body JSON | --raw FILE | --hang]
 *       A stand-in broker for CLI tests: once listening, writes the TCP port
 *       (0 for Unix) to the --ready file; then for each of N connections (1)
 *       reads one request (head + Content-Length body), appends its bytes and
 *       a "--END--" line to FILE and answers STATUS (200) with BODY ({}),
 *       Connection: close -- or the bytes of --raw verbatim, or nothing until
 *       the client goes away (--hang).
 *
 *   http_probe jget PATH           (JSON on standard input)
 *       Print the value at PATH ("a.b.0.c"; "#" as the last part: the
 *       array's length): strings raw, anything else as compact JSON.
 *       Exit 1 if absent.
 *
 *   http_probe jkeys PATH          the keys of the object at PATH, sorted.
 *
 *   http_probe free-port           print a TCP port free on 127.0.0.1 now.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "http1.h"

#define PROBE_IN_MAX (8u << 20)
#define PROBE_RESP_MAX (8u << 20)

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int read_fd_all(int fd, uint8_t **ret, size_t *ret_len, size_t max)
{
	size_t len = 0, cap = 65536;
	uint8_t *buf = malloc(cap);

	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n;

		if (len == cap) {
			uint8_t *p;

			if (cap >= max) {
				free(buf);
				return -EFBIG;
			}
			cap *= 2;
			p = realloc(buf, cap);
			if (!p) {
				free(buf);
				return -ENOMEM;
			}
			buf = p;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return -errno;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

static int connect_to(const char *unix_path, const char *tcp)
{
	int fd;

	if (unix_path) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		if (strlen(unix_path) >= sizeof(sa.sun_path))
			return -ENAMETOOLONG;
		strcpy(sa.sun_path, unix_path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			int r = -errno;

			close(fd);
			return r;
		}
		return fd;
	} else {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		char host[64];
		const char *colon = strrchr(tcp, ':');

		if (!colon || (size_t)(colon - tcp) >= sizeof(host))
			return -EINVAL;
		memcpy(host, tcp, (size_t)(colon - tcp));
		host[colon - tcp] = '\0';
		if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
			return -EINVAL;
		sa.sin_port = htons((uint16_t)atoi(colon + 1));
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			int r = -errno;

			close(fd);
			return r;
		}
		return fd;
	}
}

/* Write everything; the peer may close early (its answer is still read). */
static void write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* Read more into buf (poll with deadline): >0 bytes, 0 EOF, -ETIMEDOUT, -errno. */
static ssize_t recv_some(int fd, uint8_t *buf, size_t cap, int64_t deadline)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - now_ms();
		ssize_t n;
		int k;

		if (left <= 0)
			return -ETIMEDOUT;
		k = poll(&pfd, 1, (int)left);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			continue;
		n = read(fd, buf, cap);
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 ? -errno : n;
	}
}

static void print_line_bytes(const char *prefix, const uint8_t *p, size_t n)
{
	fputs(prefix, stdout);
	for (size_t i = 0; i < n; i++)
		putchar(p[i] == '\n' || p[i] == '\r' ? ' ' : p[i]);
	putchar('\n');
}

static int cmd_send(int argc, char **argv)
{
	const char *unix_path = NULL, *tcp = NULL;
	int timeout_s = 10;
	bool shut = false;
	/* Static: the early error returns need no cleanup (and leak nothing). */
	static uint8_t raw[PROBE_RESP_MAX], body[PROBE_RESP_MAX + 1];
	static char hdrs[2 * HTTP1_HEAD_CAP + 64];
	uint8_t *in = NULL;
	size_t in_len = 0, raw_len = 0, body_len = 0, head_len = 0, off;
	struct http1_limits lim;
	struct http1_parser p;
	struct http1_body b;
	int64_t deadline;
	int fd, r;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--unix") == 0 && i + 1 < argc)
			unix_path = argv[++i];
		else if (strcmp(argv[i], "--tcp") == 0 && i + 1 < argc)
			tcp = argv[++i];
		else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
			timeout_s = atoi(argv[++i]);
		else if (strcmp(argv[i], "--shut") == 0)
			shut = true;
		else
			return fprintf(stderr, "http_probe send: bad argument %s\n", argv[i]), 2;
	}
	if (!unix_path == !tcp)
		return fprintf(stderr, "http_probe send: need --unix or --tcp\n"), 2;
	if ((r = read_fd_all(STDIN_FILENO, &in, &in_len, PROBE_IN_MAX)) < 0)
		return fprintf(stderr, "http_probe: stdin: %s\n", strerror(-r)), 1;
	fd = connect_to(unix_path, tcp);
	if (fd < 0)
		return fprintf(stderr, "http_probe: connect: %s\n", strerror(-fd)), 1;
	deadline = now_ms() + (int64_t)timeout_s * 1000;
	write_all(fd, in, in_len);
	free(in);
	if (shut)
		shutdown(fd, SHUT_WR);

	http1_limits_default(&lim);
	lim.max_body = PROBE_RESP_MAX;
	if (http1_parser_init_response(&p, &lim, HTTP1_METHOD_GET, false) < 0)
		return 1;
	for (;;) {
		ssize_t n;

		r = http1_parse(&p, raw, raw_len, &head_len);
		if (r == HTTP1_DONE && (p.head.flags & HTTP1_F_INTERIM)) {
			memmove(raw, raw + head_len, raw_len - head_len);
			raw_len -= head_len;
			http1_parser_reset(&p);
			continue;
		}
		if (r == HTTP1_DONE)
			break;
		if (r < 0)
			return printf("malformed %s\n", http1_strerror(r)), 5;
		n = recv_some(fd, raw + raw_len, PROBE_RESP_MAX - raw_len, deadline);
		if (n == -ETIMEDOUT)
			return printf("timeout\n"), 4;
		if (n <= 0)
			return printf("closed\n"), 3;
		raw_len += (size_t)n;
	}
	hdrs[0] = '\0';
	for (uint32_t i = 0, hl = 0; i < p.head.n_headers; i++) {
		const struct http1_header *f = &p.head.headers[i];

		hl += (uint32_t)sprintf(hdrs + hl, "header %.*s: %.*s\n", (int)f->name.len,
					(const char *)raw + f->name.off, (int)f->value.len,
					(const char *)raw + f->value.off);
	}
	if (http1_body_init(&b, &p.head, &lim) < 0)
		return printf("malformed body framing\n"), 5;
	off = head_len;
	for (;;) {
		size_t consumed, doff, dlen;
		ssize_t n;

		r = http1_body_decode(&b, raw + off, raw_len - off, &consumed, &doff, &dlen);
		if (r < 0)
			return printf("malformed %s\n", http1_strerror(r)), 5;
		memcpy(body + body_len, raw + off + doff, dlen);
		body_len += dlen;
		off += consumed;
		if (r == HTTP1_DONE)
			break;
		if (off < raw_len)
			continue;
		off = raw_len = head_len = 0;
		n = recv_some(fd, raw, PROBE_RESP_MAX, deadline);
		if (n == -ETIMEDOUT)
			return printf("timeout\n"), 4;
		if (n <= 0) {
			if (http1_body_eof(&b) < 0)
				return printf("closed\n"), 3;
			break;
		}
		raw_len = (size_t)n;
	}
	body[body_len] = '\0';
	{
		json_t *j = json_loadb((const char *)body, body_len, 0, NULL);
		const char *code = json_string_value(json_object_get(j, "error"));

		printf("%u %s\n", p.head.status, code ? code : "-");
		json_decref(j);
	}
	fputs(hdrs, stdout);
	close(fd);
	print_line_bytes("body ", body, body_len);
	return 0;
}

/* ------------------------------------------------------------------ */

struct serve_opts {
	FILE *capture;
	int status;
	const char *body;      /* JSON answer */
	const uint8_t *raw;    /* or these bytes verbatim */
	size_t raw_len;
	bool hang;             /* read the request, answer nothing, wait for EOF */
};

static int serve_one(int lfd, const struct serve_opts *o)
{
	static uint8_t buf[1 << 20];
	struct http1_parser p;
	size_t len = 0, head_len = 0, need;
	char head[256];
	int fd, r, n;

	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (http1_parser_init_request(&p, NULL) < 0)
		return -EINVAL;
	for (;;) {
		ssize_t k;

		r = http1_parse(&p, buf, len, &head_len);
		if (r == HTTP1_DONE)
			break;
		if (r < 0) {
			fprintf(o->capture, "MALFORMED %s\n", http1_strerror(r));
			close(fd);
			return 0;
		}
		k = read(fd, buf + len, sizeof(buf) - len);
		if (k <= 0) {
			close(fd);
			return 0;
		}
		len += (size_t)k;
	}
	need = head_len + (p.head.body_mode == HTTP1_BODY_LENGTH ? p.head.content_length : 0);
	while (len < need && len < sizeof(buf)) {
		ssize_t k = read(fd, buf + len, sizeof(buf) - len);

		if (k <= 0)
			break;
		len += (size_t)k;
	}
	fwrite(buf, 1, len, o->capture);
	fputs("\n--END--\n", o->capture);
	fflush(o->capture);
	if (o->hang) {
		while (read(fd, buf, sizeof(buf)) > 0)
			;
	} else if (o->raw) {
		write_all(fd, o->raw, o->raw_len);
	} else {
		n = snprintf(head, sizeof(head),
			     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
			     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			     o->status, strlen(o->body));
		write_all(fd, (const uint8_t *)head, (size_t)n);
		write_all(fd, (const uint8_t *)o->body, strlen(o->body));
	}
	close(fd);
	return 0;
}

static int serve_listen(const char *path, const char *tcp_port, int *ret_port)
{
	int lfd;

	if (path) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		if (strlen(path) >= sizeof(sa.sun_path))
			return -ENAMETOOLONG;
		strcpy(sa.sun_path, path);
		lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			return -errno;
		*ret_port = 0;
	} else {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		socklen_t sl = sizeof(sa);
		int one = 1;

		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sa.sin_port = htons((uint16_t)atoi(tcp_port));
		lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0)
			return -errno;
		*ret_port = ntohs(sa.sin_port);
	}
	if (listen(lfd, 8) < 0)
		return -errno;
	return lfd;
}

static int cmd_serve(int argc, char **argv)
{
	const char *path = NULL, *tcp = NULL, *capture_path = NULL, *ready = NULL, *raw = NULL;
	struct serve_opts o = { .status = 200, .body = "{}" };
	int count = 1, lfd, port = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--unix") == 0 && i + 1 < argc)
			path = argv[++i];
		else if (strcmp(argv[i], "--tcp") == 0 && i + 1 < argc)
			tcp = argv[++i];
		else if (strcmp(argv[i], "--capture") == 0 && i + 1 < argc)
			capture_path = argv[++i];
		else if (strcmp(argv[i], "--ready") == 0 && i + 1 < argc)
			ready = argv[++i];
		else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
			count = atoi(argv[++i]);
		else if (strcmp(argv[i], "--status") == 0 && i + 1 < argc)
			o.status = atoi(argv[++i]);
		else if (strcmp(argv[i], "--body") == 0 && i + 1 < argc)
			o.body = argv[++i];
		else if (strcmp(argv[i], "--raw") == 0 && i + 1 < argc)
			raw = argv[++i];
		else if (strcmp(argv[i], "--hang") == 0)
			o.hang = true;
		else
			return fprintf(stderr, "http_probe serve: bad argument %s\n", argv[i]), 2;
	}
	if (!path == !tcp || !capture_path)
		return fprintf(stderr, "http_probe serve: need --unix or --tcp, and --capture\n"), 2;
	if (raw) {
		int fd = open(raw, O_RDONLY | O_CLOEXEC);
		uint8_t *bytes;

		if (fd < 0 || read_fd_all(fd, &bytes, &o.raw_len, PROBE_IN_MAX) < 0)
			return fprintf(stderr, "http_probe: %s: cannot read\n", raw), 1;
		o.raw = bytes;
		close(fd);
	}
	o.capture = fopen(capture_path, "a");
	if (!o.capture)
		return fprintf(stderr, "http_probe: %s: %s\n", capture_path, strerror(errno)), 1;
	lfd = serve_listen(path, tcp, &port);
	if (lfd < 0)
		return fprintf(stderr, "http_probe: listen: %s\n", strerror(-lfd)), 1;
	if (ready) {
		/* Written complete under a temporary name, then renamed. */
		char tmp[4096];
		FILE *f;

		snprintf(tmp, sizeof(tmp), "%s.tmp", ready);
		f = fopen(tmp, "w");
		if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, ready) < 0)
			return fprintf(stderr, "http_probe: %s: cannot write\n", ready), 1;
	}
	for (int i = 0; i < count; i++)
		if (serve_one(lfd, &o) < 0)
			return 1;
	close(lfd);
	if (path)
		unlink(path);
	fclose(o.capture);
	free((void *)o.raw);
	return 0;
}

/* ------------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* jget PATH (value) or jkeys PATH (sorted keys of the object there). */
static int cmd_jget(int argc, char **argv, bool keys)
{
	uint8_t *in = NULL;
	size_t len = 0;
	json_t *root, *v;
	char *path, *part, *save = NULL;
	json_error_t jerr;
	int ex = 1;

	if (argc != 2)
		return fprintf(stderr, "usage: http_probe jget|jkeys PATH\n"), 2;
	if (read_fd_all(STDIN_FILENO, &in, &len, PROBE_IN_MAX) < 0)
		return 1;
	root = json_loadb((const char *)in, len, 0, &jerr);
	free(in);
	if (!root)
		return fprintf(stderr, "http_probe jget: invalid JSON: %s\n", jerr.text), 1;
	path = strdup(argv[1]);
	v = root;
	for (part = strtok_r(path, ".", &save); v && part; part = strtok_r(NULL, ".", &save)) {
		if (strcmp(part, "#") == 0 && json_is_array(v)) {
			printf("%zu\n", json_array_size(v));
			ex = 0;
			goto out;
		}
		if (json_is_array(v))
			v = json_array_get(v, (size_t)strtoul(part, NULL, 10));
		else
			v = json_object_get(v, part);
	}
	if (v && keys) {
		/* Object keys, sorted, space-separated. */
		const char *k, *sorted[256];
		size_t n = 0;
		json_t *unused;

		if (!json_is_object(v))
			goto out;
		json_object_foreach(v, k, unused)
			if (n < 256)
				sorted[n++] = k;
		qsort(sorted, n, sizeof(sorted[0]), cmp_str);
		for (size_t i = 0; i < n; i++)
			printf("%s%s", i ? " " : "", sorted[i]);
		printf("\n");
		ex = 0;
	} else if (v) {
		if (json_is_string(v)) {
			printf("%s\n", json_string_value(v));
		} else {
			char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

			printf("%s\n", s ? s : "");
			free(s);
		}
		ex = 0;
	}
out:
	free(path);
	json_decref(root);
	return ex;
}

static int cmd_free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		return 1;
	printf("%u\n", ntohs(sa.sin_port));
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 2 && strcmp(argv[1], "send") == 0)
		return cmd_send(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "serve") == 0)
		return cmd_serve(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "jget") == 0)
		return cmd_jget(argc - 1, argv + 1, false);
	if (argc >= 2 && strcmp(argv[1], "jkeys") == 0)
		return cmd_jget(argc - 1, argv + 1, true);
	if (argc == 2 && strcmp(argv[1], "free-port") == 0)
		return cmd_free_port();
	fprintf(stderr, "usage: http_probe send|serve|jget|jkeys|free-port ...\n");
	return 2;
}
