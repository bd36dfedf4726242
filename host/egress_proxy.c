/*
 * egress_proxy — API, buffers, events, the pump, the request side and
 * broker answers.  See egress_proxy.h for the contract and
 * egress_proxy_internal.h for the invariants.
 *
 * Every entry point changes what it must and then runs pump(), which
 * repeats one step of the current phase until nothing moves (or the
 * event ring is nearly full: it resumes when the caller reads events).
 */
#include "egress_proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "egress_proxy_internal.h"

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* ------------------------------------------------------------------ */
/* Buffers                                                             */

static int buf_alloc(struct ep_buf *b, size_t cap, bool secure)
{
	b->data = secure ? sodium_malloc(cap) : malloc(cap);
	if (!b->data)
		return -ENOMEM;
	b->cap = cap;
	b->off = b->len = 0;
	b->secure = secure;
	return 0;
}

static void buf_free(struct ep_buf *b)
{
	if (b->secure)
		sodium_free(b->data); /* wipes */
	else
		free(b->data);
	*b = (struct ep_buf){ 0 };
}

void egress_proxy__append(struct ep_buf *b, const uint8_t *src, size_t n)
{
	if (n == 0)
		return;
	/* Callers size n by relay_room() or the reserves: overflow is a bug. */
	if (!b->data || n > b->cap - b->len)
		abort();
	memcpy(b->data + b->len, src, n);
	b->len += n;
}

/* Queues: drop the first n bytes, keep the rest at offset 0, wipe what was freed. */
static void queue_consume(struct ep_buf *b, size_t n)
{
	size_t rest = b->len - n;

	if (rest > 0)
		memmove(b->data, b->data + n, rest);
	if (b->secure)
		sodium_memzero(b->data + rest, b->len - rest);
	b->len = rest;
}

static void queue_drop(struct ep_buf *b)
{
	if (b->data)
		queue_consume(b, b->len);
}

/* Input buffers: move the unprocessed bytes to the front. */
static void input_compact(struct ep_buf *b)
{
	size_t avail = b->len - b->off;

	if (b->off == 0)
		return;
	if (avail > 0)
		memmove(b->data, b->data + b->off, avail);
	b->off = 0;
	b->len = avail;
}

size_t egress_proxy__relay_room(const struct egress_proxy *p, const struct ep_buf *q)
{
	if (!q->data || q->len >= p->queue_max)
		return 0;
	return min_size(p->queue_max - q->len, q->cap - q->len);
}

/* ------------------------------------------------------------------ */
/* Events                                                              */

void egress_proxy__push(struct egress_proxy *p, enum egress_proxy_event_type type)
{
	struct egress_proxy_event *ev;

	/* The pump keeps EP_EVENTS_RESERVE slots free; no step pushes more. */
	if (p->ev_n >= EP_EVENTS)
		abort();
	ev = &p->ev[(p->ev_head + p->ev_n) % EP_EVENTS];
	*ev = (struct egress_proxy_event){ .type = type, .audit_ctx = p->x.audit_ctx };
	switch (type) {
	case EGRESS_PROXY_EV_REQUEST_HEAD:
		ev->head = &p->gp.head;
		ev->head_bytes = p->gin.data + p->gin.off;
		ev->head_len = p->gp.head.head_len;
		break;
	case EGRESS_PROXY_EV_RESPONSE_HEAD:
		ev->status = p->x.status;
		break;
	case EGRESS_PROXY_EV_REQUEST_DONE:
		ev->exchange = &p->x;
		ev->status = p->x.status;
		break;
	default:
		break;
	}
	p->ev_n++;
}

void egress_proxy__push_close(struct egress_proxy *p, enum egress_proxy_close_reason why)
{
	egress_proxy__push(p, EGRESS_PROXY_EV_CLOSE);
	p->ev[(p->ev_head + p->ev_n - 1) % EP_EVENTS].reason = why;
	p->phase = EP_CLOSED;
}

void egress_proxy__finish_exchange(struct egress_proxy *p, bool complete)
{
	p->x.complete = complete;
	p->done_pending = true;
	egress_proxy__push(p, EGRESS_PROXY_EV_REQUEST_DONE);
}

/* From now on only the guest queue matters; upstream-bound bytes go (wiped). */
void egress_proxy__enter_closing(struct egress_proxy *p, enum egress_proxy_close_reason why)
{
	p->phase = EP_CLOSING;
	p->close_reason = why;
	queue_drop(&p->uq);
	p->uin.off = p->uin.len = 0;
	p->gin.off = p->gin.len = 0;
}

/* ------------------------------------------------------------------ */
/* Broker answers                                                      */

static const char *status_reason(uint16_t status)
{
	static const struct {
		uint16_t status;
		const char *reason;
	} reasons[] = {
		{ 400, "Bad Request" }, { 401, "Unauthorized" }, { 403, "Forbidden" },
		{ 404, "Not Found" }, { 405, "Method Not Allowed" },
		{ 407, "Proxy Authentication Required" }, { 408, "Request Timeout" },
		{ 411, "Length Required" }, { 413, "Content Too Large" },
		{ 414, "URI Too Long" }, { 417, "Expectation Failed" },
		{ 421, "Misdirected Request" }, { 429, "Too Many Requests" },
		{ 431, "Request Header Fields Too Large" }, { 500, "Internal Server Error" },
		{ 501, "Not Implemented" }, { 502, "Bad Gateway" },
		{ 503, "Service Unavailable" }, { 504, "Gateway Timeout" },
		{ 505, "HTTP Version Not Supported" },
	};

	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	return status < 500 ? "Client Error" : "Server Error";
}

/*
 * The arguments were validated (deny()) or are the engine's own text, so
 * the answer fits EGRESS_PROXY_ANSWER_MAX and is one line of body.
 */
void egress_proxy__answer(struct egress_proxy *p, uint16_t status, const char *field_name,
			  const char *field_value, const char *body, bool close)
{
	char out[EGRESS_PROXY_ANSWER_MAX];
	size_t body_len = strlen(body) + 1; /* + "\n" */
	int n;

	/* RFC 9110 §15.5.6: "The origin server MUST generate an Allow header
	 * field in a 405 response". */
	n = snprintf(out, sizeof(out),
		     "HTTP/1.1 %u %s\r\n"
		     "Content-Type: text/plain\r\n"
		     "Content-Length: %zu\r\n"
		     "%s%s: %s\r\n"
		     "%s"
		     "\r\n"
		     "%s%s",
		     status, status_reason(status), body_len,
		     status == 405 ? "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n" : "",
		     field_name, field_value, close ? "Connection: close\r\n" : "",
		     p->req_is_head ? "" : body, p->req_is_head ? "" : "\n");
	if (n < 0 || (size_t)n >= sizeof(out))
		abort();
	egress_proxy__append(&p->gq, (const uint8_t *)out, (size_t)n);
	p->x.status = status;
	p->x.broker_answer = true;
	p->x.down_total += (size_t)n;
	p->x.down_body += p->req_is_head ? 0 : body_len;
	p->stats.down_bytes += (size_t)n;
}

/* ------------------------------------------------------------------ */
/* Request side                                                        */

static void start_exchange(struct egress_proxy *p, const struct http1_head *h, const uint8_t *buf)
{
	size_t n;

	p->x = (struct egress_proxy_exchange){ .seq = ++p->stats.exchanges };
	p->req_is_head = false;
	p->req_done = false;
	p->rs = EP_RS_HEAD;
	if (!h)
		return;
	p->req_is_head = h->method == HTTP1_METHOD_HEAD;
	/* Both spans hold visible ASCII only (http1 guarantees it). */
	n = min_size(h->method_name.len, EGRESS_PROXY_METHOD_MAX);
	memcpy(p->x.method, buf + h->method_name.off, n);
	p->x.method[n] = '\0';
	p->x.method_truncated = n < h->method_name.len;
	n = min_size(h->path.len, EGRESS_PROXY_PATH_MAX);
	memcpy(p->x.path, buf + h->path.off, n);
	p->x.path[n] = '\0';
	p->x.path_truncated = n < h->path.len;
}

static uint8_t lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c + ('a' - 'A')) : c;
}

/*
 * Does the authority (uri-host [":" port], validated by http1) name the
 * destination?  No authority (HTTP/1.0 without Host) names nothing else.
 */
static bool host_matches(const struct egress_proxy *p, const struct http1_head *h,
			 const uint8_t *buf)
{
	const uint8_t *a = buf + h->authority.off, *host = a;
	size_t n = h->authority.len, host_len, i = 0, dest_len = strlen(p->dest_host);
	uint32_t port = 0;

	if (n == 0)
		return true;
	if (a[0] == '[') {
		while (i < n && a[i] != ']')
			i++;
		if (i == n)
			return false;
		host = a + 1;
		host_len = i - 1;
		i++;
	} else {
		while (i < n && a[i] != ':')
			i++;
		host_len = i;
	}
	if (i < n) {
		if (a[i] != ':' || i + 1 == n || n - i - 1 > 5)
			return false;
		for (i++; i < n; i++) {
			if (a[i] < '0' || a[i] > '9')
				return false;
			port = port * 10 + (uint32_t)(a[i] - '0');
		}
		if (port != p->dest_port)
			return false;
	}
	if (host_len > 1 && host[host_len - 1] == '.')
		host_len--;
	if (host_len != dest_len)
		return false;
	for (i = 0; i < host_len; i++)
		if (lower(host[i]) != (uint8_t)p->dest_host[i])
			return false;
	return true;
}

/* Answer with the head already dropped and the body to skip or not. */
static void do_deny(struct egress_proxy *p, uint16_t status, const char *field_name,
		    const char *field_value, const char *body, void *audit_ctx)
{
	const struct http1_head *h = &p->gp.head;
	bool skippable = h->body_mode == HTTP1_BODY_NONE ||
			 (h->body_mode == HTTP1_BODY_LENGTH && h->content_length <= p->skip_max &&
			  !(h->flags & HTTP1_F_EXPECT_CONTINUE));
	bool close = !skippable || !(h->flags & HTTP1_F_KEEP_ALIVE) || p->guest_eof;

	p->x.audit_ctx = audit_ctx;
	p->gin.off += h->head_len;
	egress_proxy__answer(p, status, field_name, field_value, body, close);
	if (!close && http1_body_init(&p->gb, h, &p->limits) == 0) {
		p->phase = EP_SKIP;
		return;
	}
	egress_proxy__finish_exchange(p, true);
	egress_proxy__enter_closing(p, !skippable ? EGRESS_PROXY_CLOSE_DENIED
				    : p->guest_eof ? EGRESS_PROXY_CLOSE_GUEST_EOF
						   : EGRESS_PROXY_CLOSE_DONE);
}

static void bad_request(struct egress_proxy *p, int r)
{
	char body[128];

	snprintf(body, sizeof(body), "miosa: bad request: %s", http1_strerror(r));
	egress_proxy__answer(p, (uint16_t)http1_error_status(r), "MIOSA-Request-Error",
			     http1_strerror(r), body, true);
	egress_proxy__finish_exchange(p, true);
	egress_proxy__enter_closing(p, EGRESS_PROXY_CLOSE_BAD_REQUEST);
}

/* A complete head: refuse it here or ask the caller. */
static void on_request_head(struct egress_proxy *p)
{
	const struct http1_head *h = &p->gp.head;
	const uint8_t *buf = p->gin.data + p->gin.off;
	bool connect = h->method == HTTP1_METHOD_CONNECT;

	start_exchange(p, h, buf);
	p->phase = EP_VERDICT;
	if (connect && !p->allow_connect)
		do_deny(p, 405, "MIOSA-Egress-Deny", "connect-not-supported",
			"miosa: CONNECT is not supported here; connect to the host directly", NULL);
	else if (!connect && !host_matches(p, h, buf))
		do_deny(p, 421, "MIOSA-Request-Error", "host-mismatch",
			"miosa: the Host does not name the host this connection is for", NULL);
	else
		egress_proxy__push(p, EGRESS_PROXY_EV_REQUEST_HEAD);
}

static bool step_idle(struct egress_proxy *p)
{
	size_t avail = p->gin.len - p->gin.off, head_len = 0;
	int r;

	if (p->done_pending || p->uq.len > p->queue_max || p->gq.len > p->queue_max)
		return false;
	if (avail == 0) {
		if (!p->guest_eof)
			return false;
		egress_proxy__enter_closing(p, EGRESS_PROXY_CLOSE_GUEST_EOF);
		return true;
	}
	r = http1_parse(&p->gp, p->gin.data + p->gin.off, avail, &head_len);
	if (r == HTTP1_NEED_MORE) {
		if (avail >= p->gin.cap) {
			r = -HTTP1_E_HEAD_TOO_LARGE;
		} else if (p->guest_eof) {
			/* A head cut short by the client: nobody to answer. */
			egress_proxy__enter_closing(p, EGRESS_PROXY_CLOSE_GUEST_EOF);
			return true;
		} else {
			return false;
		}
	}
	if (r < 0) {
		start_exchange(p, NULL, NULL);
		bad_request(p, r);
		return true;
	}
	on_request_head(p);
	return true;
}

/* The request body broke (bad framing, or the guest left inside it). */
static void request_broken(struct egress_proxy *p, int r)
{
	bool eof = r == -HTTP1_E_TRUNCATED;

	if (p->rs == EP_RS_HEAD) {
		bad_request(p, r);
		if (eof)
			p->close_reason = EGRESS_PROXY_CLOSE_GUEST_EOF;
		return;
	}
	egress_proxy__finish_exchange(p, false);
	egress_proxy__enter_closing(p, eof ? EGRESS_PROXY_CLOSE_GUEST_EOF
				    : EGRESS_PROXY_CLOSE_BAD_REQUEST);
}

/* Request body from gin through the decoder: to uq (forwarded) or nowhere (skipped). */
static bool step_request_body(struct egress_proxy *p, bool skip)
{
	size_t avail = p->gin.len - p->gin.off, consumed = 0, doff = 0, dlen = 0;
	size_t room = skip ? avail : egress_proxy__relay_room(p, &p->uq);
	int r;

	r = http1_body_decode(&p->gb, p->gin.data + p->gin.off, min_size(avail, room), &consumed,
			      &doff, &dlen);
	if (r == HTTP1_NEED_MORE && consumed == 0 && avail == 0 && p->guest_eof)
		r = -HTTP1_E_TRUNCATED;
	if (r < 0) {
		if (skip) {
			egress_proxy__finish_exchange(p, true);
			egress_proxy__enter_closing(p, EGRESS_PROXY_CLOSE_BAD_REQUEST);
		} else {
			request_broken(p, r);
		}
		return true;
	}
	if (!skip) {
		egress_proxy__append(&p->uq, p->gin.data + p->gin.off, consumed);
		p->x.up_total += consumed;
		p->x.up_body += dlen;
		p->stats.up_bytes += consumed;
	}
	p->gin.off += consumed;
	if (r != HTTP1_DONE)
		return consumed > 0;
	if (skip) {
		egress_proxy__finish_exchange(p, true);
		http1_parser_reset(&p->gp);
		p->phase = EP_IDLE;
	} else {
		p->req_done = true;
	}
	return true;
}

void egress_proxy__end_exchange(struct egress_proxy *p)
{
	bool keep = (p->gp.head.flags & HTTP1_F_KEEP_ALIVE) &&
		    (p->up.head.flags & HTTP1_F_KEEP_ALIVE);

	egress_proxy__finish_exchange(p, true);
	if (!p->req_done)
		egress_proxy__enter_closing(p, EGRESS_PROXY_CLOSE_EARLY_RESPONSE);
	else if (p->guest_eof)
		egress_proxy__enter_closing(p, EGRESS_PROXY_CLOSE_GUEST_EOF);
	else if (!keep)
		egress_proxy__enter_closing(p, EGRESS_PROXY_CLOSE_DONE);
	else {
		http1_parser_reset(&p->gp);
		p->phase = EP_IDLE;
	}
}

/*
 * No request outstanding upstream: bytes from it would be answers ahead
 * of their request (never queued for a later one), an EOF ends a kept-alive
 * connection.  Either way that connection is done.
 */
static bool step_upstream_idle(struct egress_proxy *p)
{
	if (p->up_state != EP_UP_OPEN || (p->uin.len == p->uin.off && !p->upstream_eof))
		return false;
	p->up_state = EP_UP_NONE;
	p->upstream_eof = false;
	p->uin.off = p->uin.len = 0;
	queue_drop(&p->uq);
	egress_proxy__push(p, EGRESS_PROXY_EV_UPSTREAM_CLOSE);
	return true;
}

static bool step(struct egress_proxy *p)
{
	bool moved = false;

	switch (p->phase) {
	case EP_IDLE:
		return step_upstream_idle(p) || step_idle(p);
	case EP_VERDICT:
		return step_upstream_idle(p);
	case EP_SKIP:
		return step_upstream_idle(p) || step_request_body(p, true);
	case EP_EXCHANGE:
		if (!p->req_done)
			moved = step_request_body(p, false);
		if (p->phase == EP_EXCHANGE && p->up_state == EP_UP_OPEN)
			moved |= egress_proxy__step_response(p);
		return moved;
	case EP_TUNNEL:
		return egress_proxy__step_tunnel(p);
	case EP_CLOSING:
		if (p->gq.len > 0)
			return false;
		egress_proxy__push_close(p, p->close_reason);
		return true;
	case EP_CLOSED:
		break;
	}
	return false;
}

static void pump(struct egress_proxy *p)
{
	while (EP_EVENTS - p->ev_n >= EP_EVENTS_RESERVE && step(p))
		;
	if (p->phase != EP_VERDICT)
		input_compact(&p->gin);
	input_compact(&p->uin);
}

/* ------------------------------------------------------------------ */
/* API                                                                 */

static int set_dest_host(struct egress_proxy *p, const char *host)
{
	size_t n = host ? strlen(host) : 0;

	if (n > 1 && host[0] == '[' && host[n - 1] == ']') {
		host++;
		n -= 2;
	}
	if (n > 1 && host[n - 1] == '.')
		n--;
	if (n == 0 || n > EGRESS_PROXY_HOST_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)host[i];

		if (c <= 0x20 || c >= 0x7f)
			return -EINVAL;
		p->dest_host[i] = (char)lower(c);
	}
	p->dest_host[n] = '\0';
	return 0;
}

static int configure(struct egress_proxy *p, const struct egress_proxy_config *cfg)
{
	int r;

	if (cfg->limits)
		p->limits = *cfg->limits;
	else
		http1_limits_default(&p->limits);
	/* http1 checks the limits; the parsers are initialized here anyway. */
	if ((r = http1_parser_init_request(&p->gp, &p->limits)) != 0 ||
	    (r = http1_parser_init_request(&p->up, &p->limits)) != 0)
		return -EINVAL;
	p->queue_max = cfg->queue_max ? cfg->queue_max : EGRESS_PROXY_DEFAULT_QUEUE_MAX;
	p->max_forward_head = cfg->max_forward_head
				      ? cfg->max_forward_head
				      : min_size((size_t)p->limits.max_head + EGRESS_PROXY_FORWARD_SLACK,
						 HTTP1_HEAD_CAP);
	p->skip_max = cfg->skip_max ? cfg->skip_max : EGRESS_PROXY_DEFAULT_SKIP_MAX;
	if (p->queue_max < EGRESS_PROXY_MIN_QUEUE_MAX || p->max_forward_head > HTTP1_HEAD_CAP ||
	    p->max_forward_head < p->limits.max_head)
		return -EINVAL;
	p->fwd_limits = p->limits;
	p->fwd_limits.max_head = (uint32_t)p->max_forward_head;
	p->fwd_limits.max_request_line = (uint32_t)p->max_forward_head - 2;
	p->dest_port = cfg->dest_port;
	p->scheme = cfg->scheme;
	p->allow_connect = cfg->allow_connect;
	return set_dest_host(p, cfg->dest_host);
}

int egress_proxy_new(const struct egress_proxy_config *cfg, struct egress_proxy **ret)
{
	struct egress_proxy *p;
	int r;

	if (!cfg || !ret)
		return -EINVAL;
	if (sodium_init() < 0)
		return -ENOMEM;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	if ((r = configure(p, cfg)) != 0 ||
	    (r = buf_alloc(&p->gin, p->limits.max_head, false)) != 0 ||
	    (r = buf_alloc(&p->uin, p->limits.max_head, false)) != 0 ||
	    (r = buf_alloc(&p->gq, p->queue_max + EGRESS_PROXY_ANSWER_MAX, false)) != 0) {
		egress_proxy_free(p);
		return r;
	}
	*ret = p;
	return 0;
}

void egress_proxy_free(struct egress_proxy *p)
{
	if (!p)
		return;
	buf_free(&p->gin);
	buf_free(&p->uin);
	buf_free(&p->gq);
	buf_free(&p->uq);
	free(p);
}

size_t egress_proxy_guest_room(const struct egress_proxy *p)
{
	if (p->phase >= EP_CLOSING || p->guest_eof)
		return 0;
	if (p->phase == EP_VERDICT)
		return p->gin.cap - p->gin.len;
	return p->gin.cap - (p->gin.len - p->gin.off);
}

size_t egress_proxy_upstream_room(const struct egress_proxy *p)
{
	if (p->phase >= EP_CLOSING || p->up_state != EP_UP_OPEN || p->upstream_eof)
		return 0;
	return p->uin.cap - (p->uin.len - p->uin.off);
}

int egress_proxy_from_guest(struct egress_proxy *p, const uint8_t *buf, size_t len,
			    size_t *ret_consumed)
{
	size_t n = min_size(len, egress_proxy_guest_room(p));

	if ((!buf && len > 0) || !ret_consumed)
		return -EINVAL;
	if (p->phase != EP_VERDICT)
		input_compact(&p->gin);
	egress_proxy__append(&p->gin, buf, n);
	pump(p);
	*ret_consumed = n;
	return 0;
}

int egress_proxy_from_upstream(struct egress_proxy *p, const uint8_t *buf, size_t len,
			       size_t *ret_consumed)
{
	size_t n;

	if ((!buf && len > 0) || !ret_consumed)
		return -EINVAL;
	if (p->up_state != EP_UP_OPEN && p->phase < EP_CLOSING)
		return -ENOTCONN;
	n = min_size(len, egress_proxy_upstream_room(p));
	input_compact(&p->uin);
	egress_proxy__append(&p->uin, buf, n);
	pump(p);
	*ret_consumed = n;
	return 0;
}

void egress_proxy_guest_eof(struct egress_proxy *p)
{
	p->guest_eof = true;
	pump(p);
}

void egress_proxy_upstream_eof(struct egress_proxy *p)
{
	if (p->up_state == EP_UP_OPEN)
		p->upstream_eof = true;
	pump(p);
}

int egress_proxy_upstream_connected(struct egress_proxy *p)
{
	if (p->phase >= EP_CLOSING)
		return 0;
	if (p->up_state != EP_UP_CONNECTING)
		return -EINVAL;
	p->up_state = EP_UP_OPEN;
	p->upstream_eof = false;
	pump(p);
	return 0;
}

/* A reason token we are willing to put in a header: [A-Za-z0-9._-]{1,64}. */
static bool is_reason_token(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.' || c == '_'))
			return false;
	}
	return true;
}

/* The guest stream is waiting for a response and has none of it yet. */
static bool at_response_boundary(const struct egress_proxy *p)
{
	return p->phase == EP_EXCHANGE && p->rs == EP_RS_HEAD;
}

int egress_proxy_upstream_failed(struct egress_proxy *p, const char *reason)
{
	const char *why = is_reason_token(reason) ? reason : "connect-failed";
	bool connecting = p->up_state == EP_UP_CONNECTING;

	if (p->phase >= EP_CLOSING)
		return 0;
	if (p->up_state == EP_UP_NONE)
		return -EINVAL;
	if (!connecting && !at_response_boundary(p) && p->phase != EP_EXCHANGE &&
	    p->phase != EP_TUNNEL) {
		/* Idle: like an EOF on a kept-alive connection. */
		p->upstream_eof = true;
		pump(p);
		return 0;
	}
	p->up_state = EP_UP_NONE;
	if (connecting || at_response_boundary(p)) {
		egress_proxy__answer(p, strcmp(why, "timeout") == 0 ? 504 : 502,
				     "MIOSA-Upstream-Error", why,
				     connecting ? "miosa: could not connect to the upstream server"
						: "miosa: the upstream server failed to answer",
				     true);
		egress_proxy__finish_exchange(p, true);
	} else if (p->phase == EP_EXCHANGE) {
		egress_proxy__finish_exchange(p, false); /* part of the response is out */
	}
	egress_proxy__enter_closing(p, connecting ? EGRESS_PROXY_CLOSE_UPSTREAM_FAILED
					   : EGRESS_PROXY_CLOSE_UPSTREAM_EOF);
	pump(p);
	return 0;
}

/*
 * The forwarded head must frame the message exactly as the guest's did:
 * the engine relays the body by the guest's framing and parses the response
 * by the guest's method and upgrade flag.  It is parsed with p->up, idle
 * while a verdict is pending (the previous exchange is over).
 */
static int check_forward_head(struct egress_proxy *p, const uint8_t *head, size_t len)
{
	const struct http1_head *g = &p->gp.head, *f = &p->up.head;
	const uint32_t same = HTTP1_F_KEEP_ALIVE | HTTP1_F_EXPECT_CONTINUE |
			      HTTP1_F_EXPECT_OTHER | HTTP1_F_UPGRADE;
	const uint8_t *gbuf = p->gin.data + p->gin.off;
	size_t head_len = 0;

	if (http1_parser_init_request(&p->up, &p->fwd_limits) != 0 ||
	    http1_parse(&p->up, head, len, &head_len) != HTTP1_DONE || head_len != len)
		return -EBADMSG;
	if (f->method != g->method || f->version_minor != g->version_minor ||
	    f->body_mode != g->body_mode || f->content_length != g->content_length ||
	    ((f->flags ^ g->flags) & same) || f->target_form != g->target_form ||
	    f->authority.len != g->authority.len ||
	    memcmp(head + f->authority.off, gbuf + g->authority.off, g->authority.len) != 0)
		return -EBADMSG;
	return 0;
}

int egress_proxy_forward(struct egress_proxy *p, const uint8_t *head, size_t len,
			 void *audit_ctx)
{
	const struct http1_head *g = &p->gp.head;
	int r;

	if (p->phase != EP_VERDICT || !head || len == 0)
		return -EINVAL;
	if (len > p->max_forward_head)
		return -E2BIG;
	if ((r = check_forward_head(p, head, len)) != 0)
		return r;
	if (!p->uq.data && (r = buf_alloc(&p->uq, p->queue_max + p->max_forward_head, true)) != 0)
		return r;
	if ((r = http1_body_init(&p->gb, g, &p->limits)) != 0 ||
	    (r = http1_parser_init_response(&p->up, &p->limits, g->method,
					    (g->flags & HTTP1_F_UPGRADE) != 0)) != 0)
		return -EINVAL;
	egress_proxy__append(&p->uq, head, len);
	p->x.audit_ctx = audit_ctx;
	p->x.up_total += len;
	p->stats.up_bytes += len;
	p->gin.off += g->head_len; /* the guest's head (placeholders) is gone */
	p->phase = EP_EXCHANGE;
	if (p->up_state == EP_UP_NONE) {
		p->up_state = EP_UP_CONNECTING;
		egress_proxy__push(p, EGRESS_PROXY_EV_NEED_UPSTREAM);
	}
	pump(p);
	return 0;
}

static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Printable ASCII and SP only, at most max bytes. */
static bool is_text(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((uint8_t)s[i] < 0x20 || (uint8_t)s[i] > 0x7e)
			return false;
	return true;
}

int egress_proxy_deny(struct egress_proxy *p, uint16_t status, const char *field_name,
		      const char *field_value, const char *body, void *audit_ctx)
{
	size_t n = field_name ? strlen(field_name) : 0;

	if (p->phase != EP_VERDICT || status < 400 || status > 599 || n == 0 ||
	    n > EGRESS_PROXY_FIELD_NAME_MAX || !field_value ||
	    !is_text(field_value, EGRESS_PROXY_FIELD_VALUE_MAX) ||
	    (body && !is_text(body, EGRESS_PROXY_BODY_MAX)))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!is_tchar(field_name[i]))
			return -EINVAL;
	do_deny(p, status, field_name, field_value, body ? body : "miosa: request refused",
		audit_ctx);
	pump(p);
	return 0;
}

size_t egress_proxy_upstream_peek(const struct egress_proxy *p, const uint8_t **ret_bytes)
{
	if (p->up_state != EP_UP_OPEN || p->uq.len == 0) {
		*ret_bytes = NULL;
		return 0;
	}
	*ret_bytes = p->uq.data;
	return p->uq.len;
}

size_t egress_proxy_guest_peek(const struct egress_proxy *p, const uint8_t **ret_bytes)
{
	*ret_bytes = p->gq.len ? p->gq.data : NULL;
	return p->gq.len;
}

int egress_proxy_upstream_consume(struct egress_proxy *p, size_t n)
{
	if (n > p->uq.len || (n > 0 && p->up_state != EP_UP_OPEN))
		return -EINVAL;
	if (n > 0)
		queue_consume(&p->uq, n);
	pump(p);
	return 0;
}

int egress_proxy_guest_consume(struct egress_proxy *p, size_t n)
{
	if (n > p->gq.len)
		return -EINVAL;
	if (n > 0)
		queue_consume(&p->gq, n);
	pump(p);
	return 0;
}

bool egress_proxy_next_event(struct egress_proxy *p, struct egress_proxy_event *ret)
{
	if (p->ev_n == 0)
		pump(p);
	if (p->ev_n == 0)
		return false;
	*ret = p->ev[p->ev_head];
	p->ev_head = (p->ev_head + 1) % EP_EVENTS;
	p->ev_n--;
	if (ret->type == EGRESS_PROXY_EV_REQUEST_DONE) {
		p->done_pending = false;
		/* Between exchanges the upstream queue is empty: release it (it
		 * is sodium_malloc'd, so locked and touched whole) and let the
		 * next forward() allocate it again.  An idle keep-alive stream
		 * then holds no secure memory, and no request's secret bytes
		 * linger.  Not in a tunnel, which keeps relaying through it. */
		if (p->uq.data && p->uq.len == 0 && p->phase != EP_TUNNEL &&
		    p->phase != EP_EXCHANGE)
			buf_free(&p->uq);
	}
	return true;
}

void egress_proxy_get_stats(const struct egress_proxy *p, struct egress_proxy_stats *ret)
{
	*ret = p->stats;
}

const char *egress_proxy_close_reason_str(enum egress_proxy_close_reason r)
{
	switch (r) {
	case EGRESS_PROXY_CLOSE_DONE:            return "done";
	case EGRESS_PROXY_CLOSE_GUEST_EOF:       return "guest-eof";
	case EGRESS_PROXY_CLOSE_BAD_REQUEST:     return "bad-request";
	case EGRESS_PROXY_CLOSE_DENIED:          return "denied";
	case EGRESS_PROXY_CLOSE_UPSTREAM_FAILED: return "upstream-failed";
	case EGRESS_PROXY_CLOSE_BAD_RESPONSE:    return "bad-response";
	case EGRESS_PROXY_CLOSE_UPSTREAM_EOF:    return "upstream-eof";
	case EGRESS_PROXY_CLOSE_EARLY_RESPONSE:  return "early-response";
	case EGRESS_PROXY_CLOSE_TUNNEL_END:      return "tunnel-end";
	}
	return "unknown";
}

bool egress_proxy_debug_contains(const struct egress_proxy *p, const uint8_t *needle,
				 size_t len)
{
	const struct ep_buf *bufs[] = { &p->gin, &p->uin, &p->gq, &p->uq };

	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
		if (bufs[i]->data && len > 0 && memmem(bufs[i]->data, bufs[i]->cap, needle, len))
			return true;
	return false;
}

size_t egress_proxy_debug_secure_cap(const struct egress_proxy *p)
{
	return p->uq.data ? p->uq.cap : 0;
}
