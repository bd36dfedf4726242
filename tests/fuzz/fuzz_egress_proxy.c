/*
 * libFuzzer target for the egress_proxy engine.  The input is a script:
 * one configuration byte, then operations (feed guest bytes, feed upstream
 * bytes, write out part of a queue, EOFs, late verdicts and connects), each
 * taking its arguments from the following bytes.  Events are answered with
 * verdicts also chosen by input bytes: forward the head unchanged, forward
 * it with a header value rewritten to a marker "secret", forward garbage,
 * deny, or leave it pending.  Invariants (abort() when violated):
 *   - queues and input never exceed their documented bounds;
 *   - nothing is queued for the upstream unless a forwarded request (or a
 *     tunnel) is in progress: between REQUEST_DONE and the next forward the
 *     upstream byte count does not move, and before the first forward the
 *     upstream sees nothing at all;
 *   - a forwarded head is appended whole at the end of the upstream queue;
 *   - after the upstream queue is written out (or dropped), the marker is
 *     in no engine buffer;
 *   - CLOSE is reported once and is the last event; the engine takes no
 *     input after it.
 * ASan/LSan catch memory errors and leaks.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "egress_proxy.h"
#include "http1_rewrite.h"

static const char marker[] = "ZqSECRETqZ";

static const struct http1_limits small_limits = {
	.max_request_line = 64,
	.max_head = 256,
	.max_headers = 4,
	.max_chunk_line = 24,
	.max_chunk_size = 0x400,
	.max_body = 4096,
};

struct fz {
	const uint8_t *in;
	size_t len, off;
	struct egress_proxy *p;
	size_t queue_max, up_cap, guest_cap;
	bool head_pending;        /* REQUEST_HEAD not answered */
	struct egress_proxy_event head_ev;
	bool need_pending;        /* NEED_UPSTREAM not answered */
	bool connected;
	bool forwarding;          /* a forwarded request or a tunnel may queue upstream bytes */
	bool ever_forwarded;
	bool marker_sent;
	bool marker_in_input;
	bool closed;
	uint64_t up_mark;         /* stats.up_bytes when forwarding stopped */
};

static uint8_t next(struct fz *f)
{
	return f->off < f->len ? f->in[f->off++] : 0;
}

static size_t up_bytes(const struct fz *f)
{
	struct egress_proxy_stats st;

	egress_proxy_get_stats(f->p, &st);
	return st.up_bytes;
}

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* Forward the head with its first uninterpreted field value replaced by the marker. */
static int forward_with_marker(struct fz *f, const struct egress_proxy_event *ev)
{
	const struct http1_head *h = ev->head;
	struct http1_edit e;
	uint8_t out[8192];
	size_t n = 0, out_len = 0;
	int r;

	for (uint32_t i = 0; i < h->n_headers; i++) {
		if (h->headers[i].id != HTTP1_FIELD_OTHER)
			continue;
		if (http1_edit_header_value(h, i, (const uint8_t *)marker, sizeof(marker) - 1, &e) != 0 ||
		    http1_rewrite_size(h, ev->head_bytes, ev->head_len, &e, 1, &n) != 0 ||
		    n > sizeof(out) ||
		    http1_rewrite(h, ev->head_bytes, ev->head_len, &e, 1, out, sizeof(out), &out_len) != 0)
			return -1;
		r = egress_proxy_forward(f->p, out, out_len, NULL);
		if (r == 0)
			f->marker_sent = true;
		memset(out, 0, sizeof(out));
		return r;
	}
	return egress_proxy_forward(f->p, ev->head_bytes, ev->head_len, NULL);
}

static void check_forwarded(struct fz *f, const uint8_t *head, size_t len, size_t before)
{
	const uint8_t *b;
	size_t n = egress_proxy_upstream_peek(f->p, &b);

	CHECK(up_bytes(f) >= before + len);
	f->forwarding = true;
	f->ever_forwarded = true;
	/* Nothing else can be appended between the forward and this check
	 * but body bytes after it, so look for the head right before them. */
	if (f->connected && n >= len && head)
		CHECK(memmem(b, n, head, len) != NULL);
}

static void verdict(struct fz *f, uint8_t how)
{
	const struct egress_proxy_event *ev = &f->head_ev;
	static const char *const reasons[] = { "host-not-allowed", "audit-unavailable", "" };
	static uint8_t copy[HTTP1_HEAD_CAP];
	size_t before = up_bytes(f);
	int r;

	f->head_pending = false;
	switch (how % 5) {
	case 0:
		/* The event's bytes may move once the verdict is given: keep a copy. */
		memcpy(copy, ev->head_bytes, ev->head_len);
		r = egress_proxy_forward(f->p, ev->head_bytes, ev->head_len, NULL);
		CHECK(r == 0 || r == -E2BIG);
		if (r == 0)
			check_forwarded(f, copy, ev->head_len, before);
		else
			CHECK(egress_proxy_deny(f->p, 500, "X", "x", NULL, NULL) == 0);
		break;
	case 1:
		r = forward_with_marker(f, ev);
		if (r == 0)
			check_forwarded(f, NULL, 0, before);
		else
			CHECK(egress_proxy_deny(f->p, 500, "X", "rewrite", NULL, NULL) == 0);
		break;
	case 2:
		/* Garbage instead of a head: must be refused, state unchanged. */
		CHECK(egress_proxy_forward(f->p, (const uint8_t *)"GET / HTTP/1.1\r\n\r\n", 18, NULL) != 0 ||
		      ev->head_len == 18);
		f->head_pending = true;
		break;
	case 3:
		CHECK(egress_proxy_deny(f->p, (uint16_t)(400 + how % 200), "MIOSA-Egress-Deny",
					reasons[how % 3], how & 1 ? "miosa: no" : NULL, NULL) == 0);
		break;
	default:
		f->head_pending = true; /* decided later by an operation */
		break;
	}
}

static void events(struct fz *f)
{
	struct egress_proxy_event ev;

	while (egress_proxy_next_event(f->p, &ev)) {
		CHECK(!f->closed);
		switch (ev.type) {
		case EGRESS_PROXY_EV_REQUEST_HEAD:
			CHECK(!f->head_pending && ev.head_len > 0 && ev.head_len == ev.head->head_len);
			f->head_ev = ev;
			verdict(f, next(f));
			break;
		case EGRESS_PROXY_EV_NEED_UPSTREAM:
			CHECK(!f->need_pending && !f->connected);
			f->need_pending = true;
			if (next(f) % 3 == 0) {
				f->need_pending = false;
				f->connected = true;
				CHECK(egress_proxy_upstream_connected(f->p) == 0);
			}
			break;
		case EGRESS_PROXY_EV_REQUEST_DONE:
			CHECK(ev.exchange != NULL && ev.exchange->seq > 0);
			CHECK(strlen(ev.exchange->path) <= EGRESS_PROXY_PATH_MAX);
			f->forwarding = false;
			f->up_mark = up_bytes(f);
			break;
		case EGRESS_PROXY_EV_TUNNEL:
			f->forwarding = true;
			break;
		case EGRESS_PROXY_EV_UPSTREAM_CLOSE:
			CHECK(f->connected);
			f->connected = false;
			break;
		case EGRESS_PROXY_EV_CLOSE:
			f->closed = true;
			break;
		default:
			break;
		}
	}
}

static void check_bounds(struct fz *f)
{
	const uint8_t *b;

	CHECK(egress_proxy_upstream_peek(f->p, &b) <= f->up_cap);
	CHECK(egress_proxy_guest_peek(f->p, &b) <= f->guest_cap);
	CHECK(egress_proxy_guest_room(f->p) <= HTTP1_HEAD_CAP);
	if (!f->ever_forwarded)
		CHECK(up_bytes(f) == 0);
	if (!f->forwarding && !f->head_pending)
		CHECK(up_bytes(f) == f->up_mark);
	if (f->closed) {
		CHECK(egress_proxy_guest_room(f->p) == 0);
		CHECK(egress_proxy_upstream_room(f->p) == 0);
	}
}

static void drain(struct fz *f, bool upstream, size_t max)
{
	const uint8_t *b;
	size_t n = upstream ? egress_proxy_upstream_peek(f->p, &b) : egress_proxy_guest_peek(f->p, &b);

	n = min_size(n, max);
	if (upstream)
		CHECK(egress_proxy_upstream_consume(f->p, n) == 0);
	else
		CHECK(egress_proxy_guest_consume(f->p, n) == 0);
}

static void feed(struct fz *f, bool upstream)
{
	size_t n = next(f), c = 0;
	int r;

	n = min_size(n, f->len - f->off);
	if (upstream) {
		r = egress_proxy_from_upstream(f->p, f->in + f->off, n, &c);
		CHECK(r == 0 || (r == -ENOTCONN && !f->connected));
	} else {
		CHECK(egress_proxy_from_guest(f->p, f->in + f->off, n, &c) == 0);
	}
	CHECK(c <= n);
	CHECK(!f->closed || c == 0);
	f->off += n;
}

static void op(struct fz *f, uint8_t o)
{
	switch (o % 10) {
	case 0: case 1: case 2:
		feed(f, false);
		break;
	case 3: case 4:
		feed(f, true);
		break;
	case 5:
		drain(f, next(f) & 1, (size_t)next(f) * 64 + 1);
		break;
	case 6:
		if (next(f) == 0xff)
			egress_proxy_guest_eof(f->p);
		else
			drain(f, false, SIZE_MAX);
		break;
	case 7:
		if (next(f) == 0xff)
			egress_proxy_upstream_eof(f->p);
		else
			drain(f, true, SIZE_MAX);
		break;
	case 8:
		if (f->head_pending)
			verdict(f, next(f));
		break;
	case 9:
		if (f->need_pending) {
			f->need_pending = false;
			if (next(f) & 1) {
				f->connected = true;
				CHECK(egress_proxy_upstream_connected(f->p) == 0);
			} else {
				CHECK(egress_proxy_upstream_failed(f->p, "connect-refused") == 0);
			}
		} else if (f->connected && next(f) == 0x7f) {
			/* reset or timeout: idle → UPSTREAM_CLOSE, else 502/504 or close */
			CHECK(egress_proxy_upstream_failed(f->p, "timeout") == 0);
		}
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { .in = data, .len = size };
	struct egress_proxy_config cfg = { .dest_host = "api.example.com", .dest_port = 443 };
	struct http1_limits def;
	uint8_t c;

	c = next(&f);
	http1_limits_default(&def);
	cfg.limits = c & 1 ? &small_limits : &def;
	cfg.queue_max = c & 2 ? EGRESS_PROXY_MIN_QUEUE_MAX : 0;
	cfg.allow_connect = c & 4;
	cfg.skip_max = c & 8 ? 1 : 0;
	CHECK(egress_proxy_new(&cfg, &f.p) == 0);
	f.queue_max = cfg.queue_max ? cfg.queue_max : EGRESS_PROXY_DEFAULT_QUEUE_MAX;
	f.up_cap = f.queue_max + cfg.limits->max_head + EGRESS_PROXY_FORWARD_SLACK;
	f.guest_cap = f.queue_max + EGRESS_PROXY_ANSWER_MAX;
	f.marker_in_input = memmem(data, size, marker, sizeof(marker) - 1) != NULL;

	while (f.off < f.len) {
		op(&f, next(&f));
		events(&f);
		check_bounds(&f);
	}
	/* Write out whatever the upstream may still get; then the marker is gone. */
	drain(&f, true, SIZE_MAX);
	events(&f);
	check_bounds(&f);
	if (f.marker_sent && !f.marker_in_input && (f.connected || f.closed)) {
		const uint8_t *b;

		if (egress_proxy_upstream_peek(f.p, &b) == 0)
			CHECK(!egress_proxy_debug_contains(f.p, (const uint8_t *)marker,
							   sizeof(marker) - 1));
	}
	egress_proxy_free(f.p);
	return 0;
}
