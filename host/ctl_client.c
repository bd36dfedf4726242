#include "ctl_client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "http1.h"

#ifndef MIOSA_VERSION
#define MIOSA_VERSION "0.0.0"
#endif

#define CTL_READ_CHUNK 16384u
#define CTL_BEARER_MAX 512u

/* Format err and return r; %m in fmt describes -r (errno or -HTTP1_E_*). */
__attribute__((format(printf, 4, 5)))
static int ctl_fail(char *err, size_t err_size, int r, const char *fmt, ...)
{
	va_list ap;

	if (err && err_size > 0) {
		errno = -r;
		va_start(ap, fmt);
		vsnprintf(err, err_size, fmt, ap);
		va_end(ap);
	}
	return r;
}

/* ------------------------------------------------------------------ */
/* Endpoints                                                           */

int ctl_endpoint_unix(const char *path, struct ctl_endpoint *ret_ep, char *err, size_t err_size)
{
	struct ctl_endpoint ep = { .transport = CTL_TRANSPORT_UNIX };
	size_t n = strlen(path);

	if (n == 0)
		return ctl_fail(err, err_size, -EINVAL, "control socket path is empty");
	if (n >= sizeof(ep.path))
		return ctl_fail(err, err_size, -ENAMETOOLONG,
				"control socket path is %zu bytes; a Unix socket path holds at most %zu",
				n, sizeof(ep.path) - 1);
	memcpy(ep.path, path, n + 1);
	snprintf(ep.authority, sizeof(ep.authority), "localhost");
	snprintf(ep.display, sizeof(ep.display), "control socket %.250s", path);
	*ret_ep = ep;
	return 0;
}

static bool ctl_is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool ctl_is_reg_name(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!ctl_is_alnum(s[i]) && s[i] != '.' && s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

static bool ctl_is_ipv6_literal(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(s[i] >= '0' && s[i] <= '9') && !(s[i] >= 'a' && s[i] <= 'f') &&
		    !(s[i] >= 'A' && s[i] <= 'F') && s[i] != ':' && s[i] != '.')
			return false;
	return true;
}

/* port = 1*5DIGIT in 1..65535 */
static bool ctl_is_port(const char *s, size_t n)
{
	unsigned v = 0;

	if (n == 0 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	return v >= 1 && v <= 65535;
}

int ctl_endpoint_url(const char *url, struct ctl_endpoint *ret_ep, char *err, size_t err_size)
{
	static const char scheme[] = "http://";
	struct ctl_endpoint ep = { .transport = CTL_TRANSPORT_TCP };
	const char *auth, *host, *port = "80";
	size_t auth_len, host_len, port_len = 2;

	if (strncasecmp(url, "https://", 8) == 0)
		return ctl_fail(err, err_size, -EPROTONOSUPPORT,
				"URL %.200s: https is not supported yet (no TLS); use http:// on loopback or a trusted network",
				url);
	if (strncasecmp(url, scheme, sizeof(scheme) - 1) != 0)
		return ctl_fail(err, err_size, -EINVAL,
				"URL %.200s: expected http://HOST:PORT", url);
	auth = url + sizeof(scheme) - 1;
	auth_len = strcspn(auth, "/?#");
	if (auth[auth_len] != '\0' && strcmp(auth + auth_len, "/") != 0)
		return ctl_fail(err, err_size, -EINVAL,
				"URL %.200s: no path, query or fragment allowed (expected http://HOST:PORT)",
				url);
	if (memchr(auth, '@', auth_len))
		return ctl_fail(err, err_size, -EINVAL,
				"URL %.200s: no user information allowed; the API key goes in MIOSA_API_KEY",
				url);
	if (auth_len > 0 && auth[0] == '[') {
		const char *close = memchr(auth, ']', auth_len);

		if (!close)
			return ctl_fail(err, err_size, -EINVAL, "URL %.200s: unterminated [", url);
		host = auth + 1;
		host_len = (size_t)(close - host);
		if (!ctl_is_ipv6_literal(host, host_len))
			return ctl_fail(err, err_size, -EINVAL,
					"URL %.200s: invalid IPv6 address", url);
		if ((size_t)(close + 1 - auth) < auth_len) {
			if (close[1] != ':')
				return ctl_fail(err, err_size, -EINVAL,
						"URL %.200s: expected ':' after ']'", url);
			port = close + 2;
			port_len = auth_len - (size_t)(port - auth);
		}
	} else {
		const char *colon = memchr(auth, ':', auth_len);

		host = auth;
		host_len = colon ? (size_t)(colon - auth) : auth_len;
		if (colon) {
			port = colon + 1;
			port_len = auth_len - (size_t)(port - auth);
		}
		if (!ctl_is_reg_name(host, host_len))
			return ctl_fail(err, err_size, -EINVAL,
					"URL %.200s: invalid host name", url);
	}
	if (!ctl_is_port(port, port_len))
		return ctl_fail(err, err_size, -EINVAL,
				"URL %.200s: port must be 1..65535", url);
	if (host_len >= sizeof(ep.host) || auth_len >= sizeof(ep.authority))
		return ctl_fail(err, err_size, -ENAMETOOLONG, "URL %.200s: host name too long", url);
	memcpy(ep.host, host, host_len);
	memcpy(ep.port, port, port_len);
	memcpy(ep.authority, auth, auth_len);
	snprintf(ep.display, sizeof(ep.display), "http://%s", ep.authority);
	*ret_ep = ep;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Request targets                                                     */

void ctl_target_init(struct ctl_target *t)
{
	t->len = 0;
	t->buf[0] = '\0';
	t->has_query = false;
	t->overflow = false;
}

static void ctl_target_putc(struct ctl_target *t, char c)
{
	if (t->overflow || t->len + 1 >= sizeof(t->buf)) {
		t->overflow = true;
		return;
	}
	t->buf[t->len++] = c;
	t->buf[t->len] = '\0';
}

void ctl_target_add(struct ctl_target *t, const char *literal)
{
	for (; *literal; literal++)
		ctl_target_putc(t, *literal);
}

/* RFC 3986 §2.3: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~" */
static void ctl_target_add_encoded(struct ctl_target *t, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (ctl_is_alnum((char)c) || c == '-' || c == '.' || c == '_' || c == '~') {
			ctl_target_putc(t, (char)c);
		} else {
			ctl_target_putc(t, '%');
			ctl_target_putc(t, hex[c >> 4]);
			ctl_target_putc(t, hex[c & 15]);
		}
	}
}

void ctl_target_add_segment(struct ctl_target *t, const char *s)
{
	ctl_target_putc(t, '/');
	ctl_target_add_encoded(t, s);
}

void ctl_target_add_query(struct ctl_target *t, const char *name, const char *value)
{
	ctl_target_putc(t, t->has_query ? '&' : '?');
	t->has_query = true;
	ctl_target_add_encoded(t, name);
	ctl_target_putc(t, '=');
	ctl_target_add_encoded(t, value);
}

const char *ctl_target_get(const struct ctl_target *t)
{
	return t->overflow ? NULL : t->buf;
}

/* ------------------------------------------------------------------ */
/* Deadlines and socket I/O                                            */

static int64_t ctl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for events on fd until the deadline: 0, -ETIMEDOUT or -errno. */
static int ctl_wait(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		int64_t left = deadline - ctl_now_ms();
		int n;

		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n > 0)
			return 0;
	}
}

static int ctl_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/*
 * A blocking connect bounded by SO_SNDTIMEO (which is what bounds connect
 * on AF_UNIX when the listener's backlog is full), then non-blocking I/O.
 */
static int ctl_connect_unix(const struct ctl_endpoint *ep, int64_t deadline, int *ret_fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int64_t left = deadline - ctl_now_ms();
	struct timeval tv;
	int fd, r;

	if (left <= 0)
		return -ETIMEDOUT;
	tv.tv_sec = (time_t)(left / 1000);
	tv.tv_usec = (suseconds_t)(left % 1000) * 1000;
	memcpy(sa.sun_path, ep->path, strlen(ep->path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;
		close(fd);
		return r;
	}
	if ((r = ctl_set_nonblock(fd)) < 0) {
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

static int ctl_connect_addr(const struct addrinfo *ai, int64_t deadline, int *ret_fd)
{
	socklen_t len = sizeof(int);
	int fd, r, soerr = 0;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
	if (fd < 0)
		return -errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		goto ok;
	if (errno != EINPROGRESS) {
		r = -errno;
		goto fail;
	}
	if ((r = ctl_wait(fd, POLLOUT, deadline)) < 0)
		goto fail;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) {
		r = -errno;
		goto fail;
	}
	if (soerr != 0) {
		r = -soerr;
		goto fail;
	}
ok:
	*ret_fd = fd;
	return 0;
fail:
	close(fd);
	return r;
}

/* Every address of host:port in turn; the last error if none answers. */
static int ctl_connect_tcp(const struct ctl_endpoint *ep, int64_t deadline, int *ret_fd,
			   char *err, size_t err_size)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		/* No AI_ADDRCONFIG: with only lo up (a network namespace) it
		 * makes glibc refuse even 127.0.0.1. */
		.ai_flags = AI_NUMERICSERV,
	};
	struct addrinfo *res = NULL;
	int r, g;

	g = getaddrinfo(ep->host, ep->port, &hints, &res);
	if (g != 0)
		return ctl_fail(err, err_size, -EHOSTUNREACH, "cannot resolve %s: %s",
				ep->display, gai_strerror(g));
	r = -EHOSTUNREACH;
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		if ((r = ctl_connect_addr(ai, deadline, ret_fd)) == 0)
			break;
		if (r == -ETIMEDOUT)
			break;
	}
	freeaddrinfo(res);
	if (r < 0)
		return ctl_fail(err, err_size, r, "cannot connect to %s: %m", ep->display);
	return 0;
}

static int ctl_connect(const struct ctl_endpoint *ep, int64_t deadline, int *ret_fd,
		       char *err, size_t err_size)
{
	int r;

	if (ep->transport == CTL_TRANSPORT_TCP)
		return ctl_connect_tcp(ep, deadline, ret_fd, err, err_size);
	r = ctl_connect_unix(ep, deadline, ret_fd);
	if (r == -ENOENT || r == -ECONNREFUSED)
		return ctl_fail(err, err_size, r,
				"cannot connect to %s: %m (is miosa-broker running? see --socket, MIOSA_SOCKET)",
				ep->display);
	if (r == -EACCES)
		return ctl_fail(err, err_size, r,
				"cannot connect to %s: %m (the socket is mode 0600: run as the broker's user)",
				ep->display);
	if (r < 0)
		return ctl_fail(err, err_size, r, "cannot connect to %s: %m", ep->display);
	return 0;
}

/* Send every byte of iov[0..n) before the deadline. */
static int ctl_send_all(int fd, struct iovec *iov, int n, int64_t deadline)
{
	while (n > 0) {
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL);
		size_t done;
		int r;

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if ((r = ctl_wait(fd, POLLOUT, deadline)) < 0)
				return r;
			continue;
		}
		if (w < 0)
			return -errno;
		done = (size_t)w;
		while (n > 0 && done >= iov->iov_len) {
			done -= iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + done;
			iov->iov_len -= done;
		}
	}
	return 0;
}

/* Read what is there (at most cap bytes): the count, 0 at EOF, or -errno. */
static ssize_t ctl_recv(int fd, uint8_t *buf, size_t cap, int64_t deadline)
{
	for (;;) {
		ssize_t n = read(fd, buf, cap);
		int r;

		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		if ((r = ctl_wait(fd, POLLIN, deadline)) < 0)
			return r;
	}
}

/* ------------------------------------------------------------------ */
/* Request                                                             */

static bool ctl_is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!ctl_is_alnum(*s) && !strchr("!#$%&'*+-.^_`|~", *s))
			return false;
	return true;
}

/* Visible ASCII only: a bearer with CR/LF would inject header lines. */
static bool ctl_is_bearer(const char *s)
{
	if (!*s || strlen(s) > CTL_BEARER_MAX)
		return false;
	for (; *s; s++)
		if (*s < 0x21 || *s > 0x7e)
			return false;
	return true;
}

struct ctl_head {
	char *buf;
	size_t cap;
	size_t len;
	bool overflow;
};

__attribute__((format(printf, 2, 3)))
static void ctl_head_add(struct ctl_head *h, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (h->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(h->buf + h->len, h->cap - h->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= h->cap - h->len)
		h->overflow = true;
	else
		h->len += (size_t)n;
}

/* The request head in sodium_malloc'd memory (it may hold the API key). */
static int ctl_build_head(const struct ctl_endpoint *ep, const struct ctl_request *req,
			  char **ret_head, size_t *ret_len)
{
	bool auth = req->bearer && ep->transport == CTL_TRANSPORT_TCP;
	struct ctl_head h = { 0 };

	if (sodium_init() < 0) /* idempotent; sodium_malloc needs it */
		return -EIO;
	h.cap = strlen(req->method) + strlen(req->target) + strlen(ep->authority) +
		(auth ? strlen(req->bearer) : 0) + 512;
	h.buf = sodium_malloc(h.cap);
	if (!h.buf)
		return -ENOMEM;
	ctl_head_add(&h, "%s %s HTTP/1.1\r\nHost: %s\r\n", req->method, req->target,
		     ep->authority);
	ctl_head_add(&h, "User-Agent: miosactl/%s\r\nAccept: application/json\r\n"
		     "Connection: close\r\n", MIOSA_VERSION);
	if (auth)
		ctl_head_add(&h, "Authorization: Bearer %s\r\n", req->bearer);
	if (req->has_body)
		ctl_head_add(&h, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
			     req->body_len);
	ctl_head_add(&h, "\r\n");
	if (h.overflow) {
		sodium_free(h.buf);
		return -ENAMETOOLONG;
	}
	*ret_head = h.buf;
	*ret_len = h.len;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Response                                                            */

struct ctl_rx {
	int fd;
	int64_t deadline;
	uint8_t *raw;         /* head, then undecoded body bytes */
	size_t raw_len;
	size_t raw_cap;
	uint8_t *body;        /* decoded content */
	size_t body_len;
	size_t body_cap;
	size_t body_max;      /* the request's max_response */
	bool eof;
	const struct ctl_request *stream; /* streaming a 200 to stream->on_data */
	int stream_r;         /* on_data's negative return */
};

static enum http1_method ctl_method_id(const char *m)
{
	static const struct {
		const char *name;
		enum http1_method id;
	} table[] = {
		{ "GET", HTTP1_METHOD_GET },       { "HEAD", HTTP1_METHOD_HEAD },
		{ "POST", HTTP1_METHOD_POST },     { "PUT", HTTP1_METHOD_PUT },
		{ "DELETE", HTTP1_METHOD_DELETE }, { "PATCH", HTTP1_METHOD_PATCH },
		{ "OPTIONS", HTTP1_METHOD_OPTIONS },
	};

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (strcmp(m, table[i].name) == 0)
			return table[i].id;
	return HTTP1_METHOD_OTHER;
}

/* Append more bytes from the socket to raw; sets eof.  0 or -errno. */
static int ctl_rx_fill(struct ctl_rx *rx)
{
	size_t room = rx->raw_cap - rx->raw_len;
	ssize_t n;

	if (room == 0)
		return -EMSGSIZE; /* the parser caps the head below raw_cap */
	n = ctl_recv(rx->fd, rx->raw + rx->raw_len, room > CTL_READ_CHUNK ? CTL_READ_CHUNK : room,
		     rx->deadline);
	if (n < 0)
		return (int)n;
	if (n == 0)
		rx->eof = true;
	rx->raw_len += (size_t)n;
	return 0;
}

static int ctl_rx_take(struct ctl_rx *rx, const uint8_t *data, size_t len)
{
	if (len > rx->body_max - rx->body_len)
		return -HTTP1_E_BODY_TOO_LARGE;
	if (rx->body_len + len + 1 > rx->body_cap) {
		size_t cap = rx->body_cap ? rx->body_cap : 4096;
		uint8_t *p;

		while (cap < rx->body_len + len + 1)
			cap *= 2;
		if (cap > rx->body_max + 1)
			cap = rx->body_max + 1;
		p = realloc(rx->body, cap);
		if (!p)
			return -ENOMEM;
		rx->body = p;
		rx->body_cap = cap;
	}
	memcpy(rx->body + rx->body_len, data, len);
	rx->body_len += len;
	rx->body[rx->body_len] = '\0';
	return 0;
}

/* Parse heads until a final one; on return raw[0, *ret_head_len) is it. */
static int ctl_rx_head(struct ctl_rx *rx, struct http1_parser *p, size_t *ret_head_len)
{
	for (;;) {
		size_t head_len = 0;
		int r = http1_parse(p, rx->raw, rx->raw_len, &head_len);

		if (r < 0)
			return r;
		if (r == HTTP1_DONE && (p->head.flags & HTTP1_F_INTERIM)) {
			memmove(rx->raw, rx->raw + head_len, rx->raw_len - head_len);
			rx->raw_len -= head_len;
			http1_parser_reset(p);
			continue;
		}
		if (r == HTTP1_DONE) {
			*ret_head_len = head_len;
			return 0;
		}
		if (rx->eof)
			return -ECONNRESET;
		if ((r = ctl_rx_fill(rx)) < 0)
			return r;
	}
}

/* Decode the body starting at raw[off]; reads until it ends. */
static int ctl_rx_body(struct ctl_rx *rx, const struct http1_head *h,
		       const struct http1_limits *limits, size_t off)
{
	struct http1_body b;
	int r;

	if (h->body_mode == HTTP1_BODY_TUNNEL)
		return -EPROTO;
	if ((r = http1_body_init(&b, h, limits)) < 0)
		return r;
	for (;;) {
		size_t consumed = 0, doff = 0, dlen = 0;
		int t;

		r = http1_body_decode(&b, rx->raw + off, rx->raw_len - off, &consumed, &doff, &dlen);
		if (r < 0)
			return r;
		if (dlen > 0 && rx->stream &&
		    (t = rx->stream->on_data(rx->stream->userdata,
					     (const char *)rx->raw + off + doff, dlen)) < 0) {
			rx->stream_r = t;
			return t;
		}
		if (dlen > 0 && !rx->stream && (t = ctl_rx_take(rx, rx->raw + off + doff, dlen)) < 0)
			return t;
		/* Done: stop reading, even if the peer keeps the connection. */
		if (r == HTTP1_DONE)
			return 0;
		off += consumed;
		if (off < rx->raw_len)
			continue;
		rx->raw_len = off = 0;
		if (rx->eof)
			return http1_body_eof(&b);
		if ((r = ctl_rx_fill(rx)) < 0)
			return r;
	}
}

static void ctl_copy_allow(const struct http1_head *h, const uint8_t *raw, char *out, size_t size)
{
	out[0] = '\0';
	for (uint32_t i = 0; i < h->n_headers; i++) {
		const struct http1_header *f = &h->headers[i];

		if (f->name.len == 5 && strncasecmp((const char *)raw + f->name.off, "Allow", 5) == 0) {
			size_t n = f->value.len < size - 1 ? f->value.len : size - 1;

			memcpy(out, raw + f->value.off, n);
			out[n] = '\0';
			return;
		}
	}
}

static int ctl_receive(struct ctl_rx *rx, const char *method, struct ctl_response *resp)
{
	struct http1_limits limits;
	struct http1_parser p;
	size_t head_len = 0;
	int r;

	http1_limits_default(&limits);
	limits.max_body = rx->body_max;
	if ((r = http1_parser_init_response(&p, &limits, ctl_method_id(method), false)) < 0)
		return r;
	if ((r = ctl_rx_head(rx, &p, &head_len)) < 0)
		return r;
	resp->status = p.head.status;
	ctl_copy_allow(&p.head, rx->raw, resp->allow, sizeof(resp->allow));
	if (rx->stream && resp->status == 200) {
		rx->deadline = INT64_MAX; /* a stream lasts as long as it lasts */
		limits.max_body = HTTP1_DEFAULT_MAX_BODY; /* no cap: rows come one line at a time */
	} else {
		rx->stream = NULL;
	}
	if ((r = ctl_rx_body(rx, &p.head, &limits, head_len)) < 0)
		return r;
	if ((r = ctl_rx_take(rx, (const uint8_t *)"", 0)) < 0) /* NUL-terminate */
		return r;
	return 0;
}

static int ctl_rx_fail(const struct ctl_endpoint *ep, const struct ctl_rx *rx, int r,
		       int timeout_ms, char *err, size_t err_size)
{
	if (r == -ETIMEDOUT)
		return ctl_fail(err, err_size, r, "no answer from %s within %d s", ep->display,
				timeout_ms / 1000);
	if (r == -ECONNRESET)
		return ctl_fail(err, err_size, r, "%s closed the connection before a complete answer",
				ep->display);
	if (r == -HTTP1_E_BODY_TOO_LARGE)
		return ctl_fail(err, err_size, r, "answer from %s is over %zu bytes", ep->display,
				rx->body_max);
	if (r == -EPROTO)
		return ctl_fail(err, err_size, r, "%s switched protocols unexpectedly", ep->display);
	if (-r >= HTTP1_E_NUL && -r < HTTP1_E_MAX_)
		return ctl_fail(err, err_size, r, "malformed HTTP answer from %s: %s", ep->display,
				http1_strerror(r));
	return ctl_fail(err, err_size, r, "reading the answer from %s: %m", ep->display);
}

int ctl_client_call(const struct ctl_endpoint *ep, const struct ctl_request *req, int timeout_ms,
		    struct ctl_response *ret_resp, char *err, size_t err_size)
{
	struct ctl_response resp = { 0 };
	struct ctl_rx rx = { .fd = -1 };
	struct iovec iov[2];
	char *head = NULL;
	size_t head_len = 0;
	int r, send_r;

	if (!ctl_is_token(req->method) || req->target[0] != '/' ||
	    (req->has_body != (req->body != NULL)))
		return ctl_fail(err, err_size, -EINVAL, "invalid request");
	if (req->bearer && ep->transport == CTL_TRANSPORT_TCP && !ctl_is_bearer(req->bearer))
		return ctl_fail(err, err_size, -EINVAL,
				"the API key holds characters an HTTP header cannot carry");
	rx.deadline = ctl_now_ms() + (timeout_ms > 0 ? timeout_ms : CTL_CLIENT_DEFAULT_TIMEOUT_MS);
	rx.stream = req->on_data ? req : NULL;
	rx.body_max = req->max_response ? req->max_response : CTL_CLIENT_MAX_RESPONSE;
	if (rx.body_max > CTL_CLIENT_MAX_RESPONSE_LIMIT)
		return ctl_fail(err, err_size, -EINVAL, "invalid request");
	if ((r = ctl_build_head(ep, req, &head, &head_len)) < 0)
		return ctl_fail(err, err_size, r, "cannot build the request: %m");
	if ((r = ctl_connect(ep, rx.deadline, &rx.fd, err, err_size)) < 0)
		goto out;

	iov[0] = (struct iovec){ .iov_base = head, .iov_len = head_len };
	iov[1] = (struct iovec){ .iov_base = (void *)req->body, .iov_len = req->body_len };
	send_r = ctl_send_all(rx.fd, iov, req->has_body && req->body_len > 0 ? 2 : 1, rx.deadline);
	if (send_r < 0 && send_r != -EPIPE && send_r != -ECONNRESET) {
		r = send_r == -ETIMEDOUT ? ctl_rx_fail(ep, &rx, send_r, timeout_ms, err, err_size)
					 : ctl_fail(err, err_size, send_r, "sending to %s: %m",
						    ep->display);
		goto out;
	}
	/* The broker may answer (413, 401 ...) and close before reading the
	 * whole body: a complete answer still counts. */
	rx.raw_cap = HTTP1_DEFAULT_MAX_HEAD + CTL_READ_CHUNK;
	rx.raw = malloc(rx.raw_cap);
	if (!rx.raw) {
		r = ctl_fail(err, err_size, -ENOMEM, "out of memory");
		goto out;
	}
	if ((r = ctl_receive(&rx, req->method, &resp)) < 0) {
		if (rx.stream_r < 0) {
			if (err_size > 0)
				err[0] = '\0';
			r = rx.stream_r;
		} else if (send_r < 0)
			r = ctl_fail(err, err_size, send_r, "sending to %s: %m", ep->display);
		else
			r = ctl_rx_fail(ep, &rx, r, timeout_ms, err, err_size);
		goto out;
	}
	resp.body = (char *)rx.body;
	resp.body_len = rx.body_len;
	rx.body = NULL;
	*ret_resp = resp;
	r = 0;
out:
	if (rx.fd >= 0)
		close(rx.fd);
	free(rx.raw);
	free(rx.body);
	sodium_free(head);
	return r;
}

void ctl_response_free(struct ctl_response *resp)
{
	if (!resp)
		return;
	free(resp->body);
	resp->body = NULL;
	resp->body_len = 0;
}
