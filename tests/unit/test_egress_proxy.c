/*
 * egress_proxy: the per-stream HTTP/1.1 proxy engine, driven entirely in
 * memory.  A `sim` plays the broker's loop: it feeds scripted guest and
 * upstream bytes, answers events (verdicts, connects) and writes out both
 * queues, recording what the guest and the upstream received.  Most
 * scenarios run twice: with whole buffers and one byte at a time (feeding
 * and writing out), and must give the same bytes and events.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "egress_proxy.h"

#define DEST "api.example.com"
#define OUT_MAX (1u << 20)
#define PLACEHOLDER "miosa-tok-0123456789abcdef0123456789abcdef"
#define SECRET "sk-REAL-SECRET-VALUE-7f3a9"

struct sim {
	struct egress_proxy *p;
	size_t chunk;            /* feed and write-out granularity */
	bool manual;             /* REQUEST_HEAD verdicts are the test's */
	bool deny;               /* automatic verdict: deny */
	const char *fail_connect; /* NEED_UPSTREAM: fail with this reason */
	bool hold_up, hold_guest; /* do not write that queue out */
	const char *swap_from, *swap_to; /* automatic forward: replace in the head */
	int audit_ctx;

	int n_req_head, n_need, n_resp_head, n_done, n_tunnel, n_up_close;
	int n_shut_up, n_shut_guest;
	bool closed;
	enum egress_proxy_close_reason reason;
	struct egress_proxy_event last_head;
	uint16_t resp_status[16];
	struct egress_proxy_exchange done[16];

	size_t up_len, guest_len;
	uint8_t up[OUT_MAX + 1];
	uint8_t guest[OUT_MAX + 1];
};

static struct sim *sim_new_cfg(size_t chunk, const struct egress_proxy_config *cfg)
{
	struct sim *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	s->chunk = chunk;
	assert_int_equal(egress_proxy_new(cfg, &s->p), 0);
	return s;
}

static struct sim *sim_new(size_t chunk)
{
	struct egress_proxy_config cfg = {
		.dest_host = DEST, .dest_port = 443, .scheme = EGRESS_PROXY_HTTPS,
	};

	return sim_new_cfg(chunk, &cfg);
}

static void sim_free(struct sim *s)
{
	egress_proxy_free(s->p);
	free(s);
}

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* The automatic verdict: forward the head (with swap_from → swap_to) or deny. */
static void verdict(struct sim *s, const struct egress_proxy_event *ev)
{
	uint8_t head[16384];
	size_t n = 0, i = 0, from_len = s->swap_from ? strlen(s->swap_from) : 0;

	if (s->deny) {
		assert_int_equal(egress_proxy_deny(s->p, 403, "MIOSA-Egress-Deny", "host-not-allowed",
						   "miosa: " DEST " is not allowed", &s->audit_ctx),
				 0);
		return;
	}
	while (i < ev->head_len) {
		if (from_len && ev->head_len - i >= from_len &&
		    memcmp(ev->head_bytes + i, s->swap_from, from_len) == 0) {
			memcpy(head + n, s->swap_to, strlen(s->swap_to));
			n += strlen(s->swap_to);
			i += from_len;
		} else {
			head[n++] = ev->head_bytes[i++];
		}
	}
	assert_int_equal(egress_proxy_forward(s->p, head, n, &s->audit_ctx), 0);
	memset(head, 0, sizeof(head));
}

static void handle(struct sim *s, const struct egress_proxy_event *ev)
{
	switch (ev->type) {
	case EGRESS_PROXY_EV_REQUEST_HEAD:
		s->n_req_head++;
		s->last_head = *ev;
		if (!s->manual)
			verdict(s, ev);
		break;
	case EGRESS_PROXY_EV_NEED_UPSTREAM:
		s->n_need++;
		if (s->fail_connect)
			assert_int_equal(egress_proxy_upstream_failed(s->p, s->fail_connect), 0);
		else
			assert_int_equal(egress_proxy_upstream_connected(s->p), 0);
		break;
	case EGRESS_PROXY_EV_RESPONSE_HEAD:
		assert_true(s->n_resp_head < 16);
		s->resp_status[s->n_resp_head++] = ev->status;
		break;
	case EGRESS_PROXY_EV_REQUEST_DONE:
		assert_true(s->n_done < 16);
		s->done[s->n_done++] = *ev->exchange;
		break;
	case EGRESS_PROXY_EV_TUNNEL:
		s->n_tunnel++;
		break;
	case EGRESS_PROXY_EV_SHUTDOWN_UPSTREAM:
		s->n_shut_up++;
		break;
	case EGRESS_PROXY_EV_SHUTDOWN_GUEST:
		s->n_shut_guest++;
		break;
	case EGRESS_PROXY_EV_UPSTREAM_CLOSE:
		s->n_up_close++;
		break;
	case EGRESS_PROXY_EV_CLOSE:
		assert_false(s->closed);
		s->closed = true;
		s->reason = ev->reason;
		break;
	}
}

static bool pull(struct sim *s, bool upstream)
{
	const uint8_t *b = NULL;
	size_t n = upstream ? egress_proxy_upstream_peek(s->p, &b) : egress_proxy_guest_peek(s->p, &b);
	uint8_t *dst = upstream ? s->up : s->guest;
	size_t *dst_len = upstream ? &s->up_len : &s->guest_len;

	n = min_size(n, s->chunk);
	if (n == 0)
		return false;
	assert_true(*dst_len + n <= OUT_MAX);
	memcpy(dst + *dst_len, b, n);
	*dst_len += n;
	dst[*dst_len] = 0;
	if (upstream)
		assert_int_equal(egress_proxy_upstream_consume(s->p, n), 0);
	else
		assert_int_equal(egress_proxy_guest_consume(s->p, n), 0);
	return true;
}

/* The broker loop: events, then write-outs, until nothing moves. */
static void drive(struct sim *s)
{
	struct egress_proxy_event ev;
	bool again = true;

	while (again) {
		again = false;
		while (egress_proxy_next_event(s->p, &ev)) {
			handle(s, &ev);
			again = true;
		}
		if (!s->hold_up)
			again |= pull(s, true);
		if (!s->hold_guest)
			again |= pull(s, false);
	}
}

/* Feed as much as the engine takes; returns how much it took. */
static size_t feed(struct sim *s, bool upstream, const void *data, size_t len)
{
	const uint8_t *d = data;
	size_t off = 0;

	drive(s);
	while (off < len) {
		size_t n = min_size(len - off, s->chunk), c = 0;

		if (upstream) {
			int r = egress_proxy_from_upstream(s->p, d + off, n, &c);

			if (r == -ENOTCONN) /* the loop closed that connection (UPSTREAM_CLOSE) */
				break;
			assert_int_equal(r, 0);
		} else {
			assert_int_equal(egress_proxy_from_guest(s->p, d + off, n, &c), 0);
		}
		off += c;
		drive(s);
		if (c == 0)
			break;
	}
	return off;
}

#define GUEST(s, lit) assert_int_equal(feed((s), false, (lit), sizeof(lit) - 1), sizeof(lit) - 1)
#define UPSTREAM(s, lit) assert_int_equal(feed((s), true, (lit), sizeof(lit) - 1), sizeof(lit) - 1)
/* The engine may stop taking bytes once it decided to close. */
#define GUEST_SOME(s, lit) feed((s), false, (lit), sizeof(lit) - 1)
#define UPSTREAM_SOME(s, lit) feed((s), true, (lit), sizeof(lit) - 1)

static void expect_bytes(const uint8_t *got, size_t got_len, const char *want)
{
	if (got_len != strlen(want) || memcmp(got, want, got_len) != 0) {
		print_error("got %zu bytes:\n%.*s\nwant %zu bytes:\n%s\n", got_len, (int)got_len,
			    (const char *)got, strlen(want), want);
		fail();
	}
}

#define EXPECT_UP(s, want) expect_bytes((s)->up, (s)->up_len, (want))
#define EXPECT_GUEST(s, want) expect_bytes((s)->guest, (s)->guest_len, (want))

static bool guest_has(const struct sim *s, const char *needle)
{
	return strstr((const char *)s->guest, needle) != NULL;
}

static bool up_has(const struct sim *s, const char *needle)
{
	return memmem(s->up, s->up_len, needle, strlen(needle)) != NULL;
}

/* Runs a scenario whole and one byte at a time. */
#define BOTH(name)                                                     \
	static void test_##name(void **state)                          \
	{                                                              \
		(void)state;                                           \
		name(SIZE_MAX);                                        \
	}                                                              \
	static void test_##name##_byte_by_byte(void **state)           \
	{                                                              \
		(void)state;                                           \
		name(1);                                               \
	}
#define BOTH_TESTS(name) cmocka_unit_test(test_##name), cmocka_unit_test(test_##name##_byte_by_byte)

#define GET_A "GET /a?k=" PLACEHOLDER " HTTP/1.1\r\nHost: " DEST "\r\n\r\n"
#define GET_B "GET /b HTTP/1.1\r\nHost: " DEST "\r\nAccept: */*\r\n\r\n"
#define OK_HELLO "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
#define OK_WORLD "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nworld"

/* ------------------------------------------------------------------ */
/* Keep-alive, pipelining, bodies                                      */

static void get_keep_alive_twice_on_one_stream(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, GET_A);
	assert_int_equal(s->n_req_head, 1);
	assert_int_equal(s->n_need, 1);
	EXPECT_UP(s, GET_A);
	UPSTREAM(s, OK_HELLO);
	EXPECT_GUEST(s, OK_HELLO);
	assert_int_equal(s->n_done, 1);
	assert_string_equal(s->done[0].method, "GET");
	assert_string_equal(s->done[0].path, "/a"); /* query never in the record */
	assert_int_equal(s->done[0].status, 200);
	assert_false(s->done[0].broker_answer);
	assert_true(s->done[0].complete);
	assert_int_equal(s->done[0].up_total, sizeof(GET_A) - 1);
	assert_int_equal(s->done[0].down_body, 5);
	assert_int_equal(s->done[0].down_total, sizeof(OK_HELLO) - 1);
	assert_ptr_equal(s->done[0].audit_ctx, &s->audit_ctx);

	GUEST(s, GET_B);
	UPSTREAM(s, OK_WORLD);
	EXPECT_UP(s, GET_A GET_B);
	EXPECT_GUEST(s, OK_HELLO OK_WORLD);
	assert_int_equal(s->n_need, 1); /* one upstream connection for both */
	assert_int_equal(s->n_done, 2);
	assert_int_equal(s->done[1].seq, 2);
	assert_string_equal(s->done[1].path, "/b");
	assert_false(s->closed);
	sim_free(s);
}
BOTH(get_keep_alive_twice_on_one_stream)

static void pipelined_requests_are_forwarded_one_at_a_time_in_order(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, GET_A GET_B);
	assert_int_equal(s->n_req_head, 1); /* the second waits for the first answer */
	EXPECT_UP(s, GET_A);
	UPSTREAM(s, OK_HELLO);
	assert_int_equal(s->n_req_head, 2);
	EXPECT_UP(s, GET_A GET_B);
	UPSTREAM(s, OK_WORLD);
	EXPECT_GUEST(s, OK_HELLO OK_WORLD);
	assert_int_equal(s->n_done, 2);
	assert_string_equal(s->done[0].path, "/a");
	assert_string_equal(s->done[1].path, "/b");
	sim_free(s);
}
BOTH(pipelined_requests_are_forwarded_one_at_a_time_in_order)

#define POST_CL "POST /v1/x HTTP/1.1\r\nHost: " DEST "\r\nContent-Length: 11\r\n\r\nhello world"
#define POST_CHUNKED "POST /v1/y HTTP/1.1\r\nHost: " DEST "\r\nTransfer-Encoding: chunked\r\n\r\n" \
	"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
#define CREATED "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"

static void post_content_length_and_chunked_bodies_relay_verbatim(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, POST_CL);
	EXPECT_UP(s, POST_CL);
	UPSTREAM(s, CREATED);
	assert_int_equal(s->done[0].up_body, 11);
	assert_int_equal(s->done[0].up_total, sizeof(POST_CL) - 1);
	assert_int_equal(s->done[0].down_body, 2);
	assert_int_equal(s->done[0].status, 201);

	GUEST(s, POST_CHUNKED);
	EXPECT_UP(s, POST_CL POST_CHUNKED);
	UPSTREAM(s, CREATED);
	EXPECT_GUEST(s, CREATED CREATED);
	assert_int_equal(s->n_done, 2);
	assert_int_equal(s->done[1].up_body, 11);
	assert_int_equal(s->done[1].up_total, sizeof(POST_CHUNKED) - 1);
	assert_false(s->closed);
	sim_free(s);
}
BOTH(post_content_length_and_chunked_bodies_relay_verbatim)

/* ------------------------------------------------------------------ */
/* Expect: 100-continue                                                */

#define POST_EXPECT_HEAD "PUT /up HTTP/1.1\r\nHost: " DEST "\r\nExpect: 100-continue\r\n" \
	"Content-Length: 4\r\n\r\n"
#define CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"

static void expect_continue_relays_100_then_body_then_final(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, POST_EXPECT_HEAD);
	EXPECT_UP(s, POST_EXPECT_HEAD);
	UPSTREAM(s, CONTINUE);
	EXPECT_GUEST(s, CONTINUE);
	assert_int_equal(s->n_resp_head, 0); /* interim: no final status yet */
	GUEST(s, "data");
	EXPECT_UP(s, POST_EXPECT_HEAD "data");
	UPSTREAM(s, OK_HELLO);
	EXPECT_GUEST(s, CONTINUE OK_HELLO);
	assert_int_equal(s->n_done, 1);
	assert_int_equal(s->done[0].status, 200);
	assert_int_equal(s->done[0].down_total, sizeof(CONTINUE OK_HELLO) - 1);
	GUEST(s, GET_B); /* still usable */
	assert_int_equal(s->n_req_head, 2);
	sim_free(s);
}
BOTH(expect_continue_relays_100_then_body_then_final)

static void expect_continue_final_answer_without_body_closes_after_it(size_t chunk)
{
	static const char *const answers[] = {
		"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\n\r\nno key",
	};

	for (size_t i = 0; i < 2; i++) {
		struct sim *s = sim_new(chunk);

		GUEST(s, POST_EXPECT_HEAD);
		assert_int_equal(feed(s, true, answers[i], strlen(answers[i])), strlen(answers[i]));
		EXPECT_GUEST(s, answers[i]);
		assert_int_equal(s->n_done, 1);
		assert_int_equal(s->done[0].status, i == 0 ? 417 : 401);
		assert_false(s->done[0].broker_answer);
		assert_int_equal(s->done[0].up_body, 0);
		assert_true(s->closed);
		assert_int_equal(s->reason, EGRESS_PROXY_CLOSE_EARLY_RESPONSE);
		sim_free(s);
	}
}
BOTH(expect_continue_final_answer_without_body_closes_after_it)

static void interim_103_is_relayed_before_the_final_response(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, GET_B);
	UPSTREAM(s, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" OK_HELLO);
	EXPECT_GUEST(s, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" OK_HELLO);
	assert_int_equal(s->n_resp_head, 1);
	assert_int_equal(s->resp_status[0], 200);
	sim_free(s);
}
BOTH(interim_103_is_relayed_before_the_final_response)

/* ------------------------------------------------------------------ */
/* Responses without a body, until close                              */

static void head_204_304_have_no_body_and_keep_the_connection(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, "HEAD /h HTTP/1.1\r\nHost: " DEST "\r\n\r\n");
	UPSTREAM(s, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
	assert_int_equal(s->n_done, 1);
	assert_int_equal(s->done[0].down_body, 0);
	GUEST(s, GET_B);
	UPSTREAM(s, "HTTP/1.1 204 No Content\r\n\r\n");
	assert_int_equal(s->n_done, 2);
	GUEST(s, GET_B);
	UPSTREAM(s, "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n");
	assert_int_equal(s->n_done, 3);
	assert_int_equal(s->done[2].status, 304);
	EXPECT_GUEST(s, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
			"HTTP/1.1 204 No Content\r\n\r\n"
			"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n");
	assert_false(s->closed);
	assert_int_equal(s->n_need, 1);
	sim_free(s);
}
BOTH(head_204_304_have_no_body_and_keep_the_connection)

static void until_close_response_ends_the_stream(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, GET_B);
	UPSTREAM(s, "HTTP/1.1 200 OK\r\n\r\nstream of bytes");
	assert_int_equal(s->n_done, 0);
	assert_int_equal(egress_proxy_upstream_room(s->p) > 0, true);
	egress_proxy_upstream_eof(s->p);
	drive(s);
	EXPECT_GUEST(s, "HTTP/1.1 200 OK\r\n\r\nstream of bytes");
	assert_int_equal(s->n_done, 1);
	assert_int_equal(s->done[0].down_body, 15);
	assert_true(s->closed);
	assert_int_equal(s->reason, EGRESS_PROXY_CLOSE_DONE);
	sim_free(s);
}
BOTH(until_close_response_ends_the_stream)

static void connection_close_on_either_side_closes_after_the_exchange(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, GET_B);
	UPSTREAM(s, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
	assert_true(s->closed);
	assert_int_equal(s->reason, EGRESS_PROXY_CLOSE_DONE);
	sim_free(s);

	s = sim_new(chunk);
	GUEST(s, "GET / HTTP/1.0\r\n\r\n"); /* HTTP/1.0 without Host: nothing to check */
	UPSTREAM(s, OK_HELLO);
	EXPECT_GUEST(s, OK_HELLO);
	assert_true(s->closed);
	sim_free(s);
}
BOTH(connection_close_on_either_side_closes_after_the_exchange)

static void guest_half_close_after_a_request_still_gets_the_response(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, GET_B);
	egress_proxy_guest_eof(s->p);
	drive(s);
	assert_false(s->closed);
	UPSTREAM(s, OK_HELLO);
	EXPECT_GUEST(s, OK_HELLO);
	assert_true(s->closed);
	assert_int_equal(s->reason, EGRESS_PROXY_CLOSE_GUEST_EOF);
	sim_free(s);
}
BOTH(guest_half_close_after_a_request_still_gets_the_response)

/* ------------------------------------------------------------------ */
/* Upgrade and CONNECT                                                 */

#define UPGRADE_REQ "GET /ws HTTP/1.1\r\nHost: " DEST "\r\nConnection: Upgrade\r\n" \
	"Upgrade: websocket\r\nSec-WebSocket-Key: " PLACEHOLDER "\r\n\r\n"
#define SWITCHING "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"

static void upgrade_101_becomes_a_tunnel_both_ways(size_t chunk)
{
	struct sim *s = sim_new(chunk);
	struct egress_proxy_stats st;

	GUEST(s, UPGRADE_REQ);
	UPSTREAM(s, SWITCHING "\x81\x02hi");
	assert_int_equal(s->n_tunnel, 1);
	assert_int_equal(s->n_done, 1);
	assert_int_equal(s->done[0].status, 101);
	GUEST(s, "\x81\x05hello not http \r\n\r\n");
	UPSTREAM(s, "\x82\x03" "abc");
	EXPECT_UP(s, UPGRADE_REQ "\x81\x05hello not http \r\n\r\n");
	EXPECT_GUEST(s, SWITCHING "\x81\x02hi" "\x82\x03" "abc");
	egress_proxy_guest_eof(s->p);
	drive(s);
	assert_int_equal(s->n_shut_up, 1);
	assert_false(s->closed);
	UPSTREAM(s, "late");
	egress_proxy_upstream_eof(s->p);
	drive(s);
	assert_int_equal(s->n_shut_guest, 1);
	assert_true(s->closed);
	assert_int_equal(s->reason, EGRESS_PROXY_CLOSE_TUNNEL_END);
	EXPECT_GUEST(s, SWITCHING "\x81\x02hi" "\x82\x03" "abc" "late");
	egress_proxy_get_stats(s->p, &st);
	assert_int_equal(st.tunnel_up, 21);
	assert_int_equal(st.tunnel_down, 4 + 5 + 4);
	sim_free(s);
}
BOTH(upgrade_101_becomes_a_tunnel_both_ways)

/* The secure upstream queue exists only while a request is in flight: an
 * idle keep-alive stream holds no locked memory and no secret bytes. */
static void secure_queue_is_released_between_exchanges(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	assert_int_equal(egress_proxy_debug_secure_cap(s->p), 0);
	s->hold_up = true; /* keep the forwarded head queued */
	GUEST(s, GET_A);
	assert_true(egress_proxy_debug_secure_cap(s->p) > 0);
	s->hold_up = false;
	drive(s);
	EXPECT_UP(s, GET_A);
	UPSTREAM(s, OK_HELLO);
	assert_int_equal(s->n_done, 1);
	assert_int_equal(egress_proxy_debug_secure_cap(s->p), 0);
	/* the next request allocates it again and goes through */
	GUEST(s, GET_B);
	UPSTREAM(s, OK_WORLD);
	EXPECT_UP(s, GET_A GET_B);
	EXPECT_GUEST(s, OK_HELLO OK_WORLD);
	assert_int_equal(egress_proxy_debug_secure_cap(s->p), 0);
	/* a tunnel keeps it: bytes after the 101 relay through it */
	GUEST(s, UPGRADE_REQ);
	UPSTREAM(s, SWITCHING);
	assert_int_equal(s->n_tunnel, 1);
	assert_true(egress_proxy_debug_secure_cap(s->p) > 0);
	GUEST(s, "frame");
	assert_true(up_has(s, "frame"));
	sim_free(s);
}
BOTH(secure_queue_is_released_between_exchanges)

static void upgrade_refused_with_200_stays_http(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, UPGRADE_REQ);
	UPSTREAM(s, OK_HELLO);
	assert_int_equal(s->n_tunnel, 0);
	GUEST(s, GET_B);
	assert_int_equal(s->n_req_head, 2);
	UPSTREAM(s, OK_WORLD);
	EXPECT_GUEST(s, OK_HELLO OK_WORLD);
	EXPECT_UP(s, UPGRADE_REQ GET_B);
	sim_free(s);
}
BOTH(upgrade_refused_with_200_stays_http)

#define CONNECT_REQ "CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n"

static void connect_is_refused_with_405_and_the_stream_stays_usable(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, CONNECT_REQ);
	assert_int_equal(s->n_req_head, 0); /* never offered to the policy */
	assert_int_equal(s->up_len, 0);
	assert_true(guest_has(s, "HTTP/1.1 405 Method Not Allowed\r\n"));
	assert_true(guest_has(s, "\r\nMIOSA-Egress-Deny: connect-not-supported\r\n"));
	assert_true(guest_has(s, "\r\nAllow: "));
	assert_false(guest_has(s, "Connection: close"));
	assert_int_equal(s->n_done, 1);
	assert_true(s->done[0].broker_answer);
	assert_string_equal(s->done[0].method, "CONNECT");
	GUEST(s, GET_B);
	EXPECT_UP(s, GET_B);
	assert_false(s->closed);
	sim_free(s);
}
BOTH(connect_is_refused_with_405_and_the_stream_stays_usable)

static void connect_allowed_becomes_a_tunnel_after_2xx(size_t chunk)
{
	struct egress_proxy_config cfg = {
		.dest_host = "proxy.corp", .dest_port = 3128, .allow_connect = true,
	};
	struct sim *s = sim_new_cfg(chunk, &cfg);

	GUEST(s, CONNECT_REQ);
	assert_int_equal(s->n_req_head, 1);
	UPSTREAM(s, "HTTP/1.1 200 Connection established\r\n\r\n");
	assert_int_equal(s->n_tunnel, 1);
	GUEST(s, "\x16\x03\x01 tls bytes");
	EXPECT_UP(s, CONNECT_REQ "\x16\x03\x01 tls bytes");
	sim_free(s);
}
BOTH(connect_allowed_becomes_a_tunnel_after_2xx)

/* ------------------------------------------------------------------ */
/* Deny, host check                                                    */

static void deny_answers_403_skips_the_body_and_the_next_request_works(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	s->deny = true;
	GUEST(s, POST_CL);
	assert_true(guest_has(s, "HTTP/1.1 403 Forbidden\r\n"));
	assert_true(guest_has(s, "\r\nMIOSA-Egress-Deny: host-not-allowed\r\n"));
	assert_true(guest_has(s, "\r\nContent-Type: text/plain\r\n"));
	assert_true(guest_has(s, "\r\n\r\nmiosa: " DEST " is not allowed\n"));
	assert_false(guest_has(s, "Connection: close"));
	assert_int_equal(s->n_need, 0);
	assert_int_equal(s->up_len, 0);
	assert_int_equal(s->n_done, 1);
	assert_int_equal(s->done[0].status, 403);
	assert_true(s->done[0].broker_answer);
	assert_ptr_equal(s->done[0].audit_ctx, &s->audit_ctx);

	s->deny = false;
	GUEST(s, GET_B);
	EXPECT_UP(s, GET_B); /* the denied head and its body never went up */
	UPSTREAM(s, OK_HELLO);
	assert_int_equal(s->n_done, 2);
	assert_false(s->closed);
	sim_free(s);
}
BOTH(deny_answers_403_skips_the_body_and_the_next_request_works)

static void deny_with_a_body_it_cannot_skip_closes_after_answering(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	s->deny = true;
	GUEST_SOME(s, POST_CHUNKED);
	assert_true(guest_has(s, "HTTP/1.1 403 Forbidden\r\n"));
	assert_true(guest_has(s, "\r\nConnection: close\r\n"));
	assert_true(s->closed);
	assert_int_equal(s->reason, EGRESS_PROXY_CLOSE_DENIED);
	sim_free(s);

	s = sim_new(chunk); /* a client waiting for 100 would never send the body */
	s->deny = true;
	GUEST(s, POST_EXPECT_HEAD);
	assert_true(guest_has(s, "\r\nConnection: close\r\n"));
	assert_true(s->closed);
	sim_free(s);
}
BOTH(deny_with_a_body_it_cannot_skip_closes_after_answering)

static void deny_to_head_has_no_body(size_t chunk)
{
	struct sim *s = sim_new(chunk);
	const char *end;

	s->deny = true;
	GUEST(s, "HEAD / HTTP/1.1\r\nHost: " DEST "\r\n\r\n");
	end = strstr((const char *)s->guest, "\r\n\r\n");
	assert_non_null(end);
	assert_int_equal(end + 4 - (const char *)s->guest, s->guest_len);
	assert_true(guest_has(s, "Content-Length: "));
	sim_free(s);
}
BOTH(deny_to_head_has_no_body)

static void deny_refuses_header_injection(void **state)
{
	struct sim *s = sim_new(SIZE_MAX);

	(void)state;
	s->manual = true;
	GUEST(s, GET_B);
	assert_int_equal(egress_proxy_deny(s->p, 403, "MIOSA-Egress-Deny", "x\r\nSet-Cookie: a", NULL, NULL),
			 -EINVAL);
	assert_int_equal(egress_proxy_deny(s->p, 403, "Bad Name", "x", NULL, NULL), -EINVAL);
	assert_int_equal(egress_proxy_deny(s->p, 403, "X", "x", "two\nlines", NULL), -EINVAL);
	assert_int_equal(egress_proxy_deny(s->p, 200, "X", "x", NULL, NULL), -EINVAL);
	assert_int_equal(egress_proxy_deny(s->p, 403, "X", "x", NULL, NULL), 0);
	assert_int_equal(egress_proxy_deny(s->p, 403, "X", "x", NULL, NULL), -EINVAL); /* no verdict pending */
	sim_free(s);
}

static void host_naming_another_site_gets_421(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n");
	assert_int_equal(s->n_req_head, 0);
	assert_true(guest_has(s, "HTTP/1.1 421 Misdirected Request\r\n"));
	assert_true(guest_has(s, "\r\nMIOSA-Request-Error: host-mismatch\r\n"));
	/* Case, a trailing dot and the right port are the same host. */
	GUEST(s, "GET / HTTP/1.1\r\nHost: API.Example.COM.:443\r\n\r\n");
	assert_int_equal(s->n_req_head, 1);
	UPSTREAM(s, OK_HELLO);
	GUEST(s, "GET / HTTP/1.1\r\nHost: " DEST ":8443\r\n\r\n");
	assert_int_equal(s->n_req_head, 1);
	GUEST(s, "GET http://" DEST "/abs HTTP/1.1\r\nHost: " DEST "\r\n\r\n");
	assert_int_equal(s->n_req_head, 2);
	assert_int_equal(s->n_done, 3);
	sim_free(s);
}
BOTH(host_naming_another_site_gets_421)

/* ------------------------------------------------------------------ */
/* Upstream failures                                                   */

static void upstream_connect_failure_answers_502_with_reason(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	s->fail_connect = "connect-refused";
	GUEST_SOME(s, POST_CL);
	assert_true(guest_has(s, "HTTP/1.1 502 Bad Gateway\r\n"));
	assert_true(guest_has(s, "\r\nMIOSA-Upstream-Error: connect-refused\r\n"));
	assert_true(guest_has(s, "\r\nConnection: close\r\n"));
	assert_int_equal(s->up_len, 0);
	assert_true(s->closed);
	assert_int_equal(s->reason, EGRESS_PROXY_CLOSE_UPSTREAM_FAILED);
	assert_int_equal(s->done[0].status, 502);
	assert_true(s->done[0].broker_answer);
	sim_free(s);

	s = sim_new(chunk);
	s->fail_connect = "not a\r\ntoken";
	GUEST(s, GET_B);
	assert_true(guest_has(s, "\r\nMIOSA-Upstream-Error: connect-failed\r\n"));
	sim_free(s);
}
BOTH(upstream_connect_failure_answers_502_with_reason)

static void upstream_eof_before_the_response_answers_502(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, GET_B);
	UPSTREAM(s, "HTTP/1.1 200 O");
	egress_proxy_upstream_eof(s->p);
	drive(s);
	assert_true(guest_has(s, "HTTP/1.1 502 Bad Gateway\r\n"));
	assert_true(guest_has(s, "\r\nMIOSA-Upstream-Error: connection-closed\r\n"));
	assert_int_equal(s->reason, EGRESS_PROXY_CLOSE_UPSTREAM_EOF);
	sim_free(s);
}
BOTH(upstream_eof_before_the_response_answers_502)

static void upstream_failure_while_waiting_answers_504_or_closes_mid_body(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, GET_B);
	UPSTREAM(s, "HTTP/1.1 100 Continue\r\n\r\n");
	assert_int_equal(egress_proxy_upstream_failed(s->p, "timeout"), 0);
	drive(s);
	assert_true(guest_has(s, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 504 Gateway Timeout\r\n"));
	assert_true(guest_has(s, "\r\nMIOSA-Upstream-Error: timeout\r\n"));
	assert_int_equal(s->done[0].status, 504);
	assert_true(s->closed);
	sim_free(s);

	s = sim_new(chunk);
	GUEST(s, GET_B);
	UPSTREAM(s, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf");
	assert_int_equal(egress_proxy_upstream_failed(s->p, "reset"), 0);
	drive(s);
	EXPECT_GUEST(s, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf");
	assert_true(s->closed);
	assert_false(s->done[0].complete);
	sim_free(s);

	s = sim_new(chunk); /* idle: only that upstream goes */
	GUEST(s, GET_B);
	UPSTREAM(s, OK_HELLO);
	assert_int_equal(egress_proxy_upstream_failed(s->p, "reset"), 0);
	drive(s);
	assert_int_equal(s->n_up_close, 1);
	assert_false(s->closed);
	GUEST(s, GET_B);
	assert_int_equal(s->n_need, 2);
	sim_free(s);
}
BOTH(upstream_failure_while_waiting_answers_504_or_closes_mid_body)

static void upstream_eof_mid_body_closes_without_an_answer(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, GET_B);
	UPSTREAM(s, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf");
	egress_proxy_upstream_eof(s->p);
	drive(s);
	EXPECT_GUEST(s, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf");
	assert_true(s->closed);
	assert_int_equal(s->reason, EGRESS_PROXY_CLOSE_UPSTREAM_EOF);
	assert_false(s->done[0].complete);
	sim_free(s);
}
BOTH(upstream_eof_mid_body_closes_without_an_answer)

static void response_smuggling_two_content_lengths_gets_502(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, GET_B);
	UPSTREAM_SOME(s, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 44\r\n\r\nhello");
	assert_true(guest_has(s, "HTTP/1.1 502 Bad Gateway\r\n"));
	assert_true(guest_has(s, "\r\nMIOSA-Upstream-Error: bad-response\r\n"));
	assert_false(guest_has(s, "hello"));
	assert_int_equal(s->reason, EGRESS_PROXY_CLOSE_BAD_RESPONSE);
	sim_free(s);
}
BOTH(response_smuggling_two_content_lengths_gets_502)

static void malformed_chunked_response_mid_body_closes(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, GET_B);
	UPSTREAM_SOME(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX");
	assert_true(s->closed);
	assert_int_equal(s->reason, EGRESS_PROXY_CLOSE_BAD_RESPONSE);
	assert_false(guest_has(s, "XX"));
	sim_free(s);
}
BOTH(malformed_chunked_response_mid_body_closes)

static void upstream_bytes_while_idle_close_that_upstream_only(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, GET_B);
	UPSTREAM_SOME(s, OK_HELLO "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nodd");
	assert_int_equal(s->n_up_close, 1);
	EXPECT_GUEST(s, OK_HELLO); /* never kept for the next request */
	GUEST(s, GET_B);
	assert_int_equal(s->n_need, 2); /* a fresh connection */
	UPSTREAM(s, OK_WORLD);
	EXPECT_GUEST(s, OK_HELLO OK_WORLD);

	egress_proxy_upstream_eof(s->p); /* an idle keep-alive connection ends */
	drive(s);
	assert_int_equal(s->n_up_close, 2);
	assert_false(s->closed);
	GUEST(s, GET_B);
	assert_int_equal(s->n_need, 3);
	sim_free(s);
}
BOTH(upstream_bytes_while_idle_close_that_upstream_only)

/* ------------------------------------------------------------------ */
/* Malformed requests, smuggling                                       */

static void expect_400_nothing_upstream(size_t chunk, const char *req, const char *status_line,
					const char *err)
{
	struct sim *s = sim_new(chunk);
	char hdr[256];

	assert_int_equal(feed(s, false, req, strlen(req)) > 0, true);
	assert_int_equal(s->n_req_head, 0);
	assert_int_equal(s->n_need, 0);
	assert_int_equal(s->up_len, 0);
	assert_true(guest_has(s, status_line));
	snprintf(hdr, sizeof(hdr), "\r\nMIOSA-Request-Error: %s\r\n", err);
	assert_true(guest_has(s, hdr));
	assert_true(guest_has(s, "\r\nConnection: close\r\n"));
	assert_true(s->closed);
	assert_int_equal(s->reason, EGRESS_PROXY_CLOSE_BAD_REQUEST);
	assert_int_equal(s->n_done, 1);
	assert_string_equal(s->done[0].method, "");
	assert_false(egress_proxy_debug_contains(s->p, (const uint8_t *)"smuggled", 8) &&
		     s->up_len > 0);
	sim_free(s);
}

static void malformed_and_smuggling_requests_get_400_and_close(size_t chunk)
{
	expect_400_nothing_upstream(chunk, "GET / HTTP/1.1\nHost: " DEST "\r\n\r\n",
				    "HTTP/1.1 400 Bad Request\r\n", "line ends in LF without CR");
	expect_400_nothing_upstream(chunk,
				    "POST / HTTP/1.1\r\nHost: " DEST "\r\nContent-Length: 8\r\n"
				    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
				    "HTTP/1.1 400 Bad Request\r\n",
				    "both Content-Length and Transfer-Encoding");
	expect_400_nothing_upstream(chunk,
				    "POST / HTTP/1.1\r\nHost: " DEST "\r\nContent-Length: 8\r\n"
				    "Content-Length: 30\r\n\r\nsmuggled",
				    "HTTP/1.1 400 Bad Request\r\n", "more than one Content-Length");
	expect_400_nothing_upstream(chunk,
				    "POST / HTTP/1.1\r\nHost: " DEST "\r\nTransfer-Encoding: gzip\r\n\r\n",
				    "HTTP/1.1 501 Not Implemented\r\n", "transfer coding not implemented");
	expect_400_nothing_upstream(chunk,
				    "GET / HTTP/1.1\r\nHost: " DEST "\r\nX: a\r\n b\r\n\r\n",
				    "HTTP/1.1 400 Bad Request\r\n", "obsolete line folding");
	expect_400_nothing_upstream(chunk, "GET / HTTP/2.0\r\nHost: " DEST "\r\n\r\n",
				    "HTTP/1.1 505 HTTP Version Not Supported\r\n",
				    "HTTP version not supported");
}
BOTH(malformed_and_smuggling_requests_get_400_and_close)

static void malformed_chunked_request_body_gets_400_and_stops_at_the_bad_byte(size_t chunk)
{
	struct sim *s = sim_new(chunk);
	const char head[] = "POST / HTTP/1.1\r\nHost: " DEST "\r\nTransfer-Encoding: chunked\r\n\r\n";

	GUEST_SOME(s, "POST / HTTP/1.1\r\nHost: " DEST "\r\nTransfer-Encoding: chunked\r\n\r\n"
		 "3\r\nabc\r\nzz\r\nGET /smuggled HTTP/1.1\r\n\r\n");
	assert_true(guest_has(s, "HTTP/1.1 400 Bad Request\r\n"));
	assert_true(guest_has(s, "\r\nMIOSA-Request-Error: invalid chunk size\r\n"));
	assert_true(s->closed);
	assert_false(up_has(s, "zz"));
	assert_false(up_has(s, "smuggled"));
	assert_true(s->up_len <= sizeof(head) - 1 + 8);
	sim_free(s);
}
BOTH(malformed_chunked_request_body_gets_400_and_stops_at_the_bad_byte)

static void oversize_head_gets_431(void **state)
{
	struct http1_limits l;
	struct egress_proxy_config cfg = { .dest_host = DEST, .dest_port = 443, .limits = &l };
	struct sim *s;
	char req[2048];
	int n;

	(void)state;
	http1_limits_default(&l);
	l.max_request_line = 256;
	l.max_head = 512;
	s = sim_new_cfg(SIZE_MAX, &cfg);
	n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: " DEST "\r\nX: %0900d\r\n\r\n", 0);
	assert_true(feed(s, false, req, (size_t)n) >= 512);
	assert_true(guest_has(s, "HTTP/1.1 431 Request Header Fields Too Large\r\n"));
	assert_true(s->closed);
	sim_free(s);
}

/* ------------------------------------------------------------------ */
/* Verdicts, the swap, wiping                                          */

static void request_body_is_held_back_until_the_verdict(size_t chunk)
{
	struct sim *s = sim_new(chunk);
	const uint8_t *b;

	s->manual = true;
	GUEST(s, POST_CL);
	assert_int_equal(s->n_req_head, 1);
	assert_int_equal(s->n_need, 0);
	assert_int_equal(egress_proxy_upstream_peek(s->p, &b), 0);
	assert_int_equal(s->up_len, 0);
	/* The event's head is still the guest's, in place. */
	assert_int_equal(s->last_head.head_len, sizeof(POST_CL) - 1 - 11);
	assert_memory_equal(s->last_head.head_bytes, POST_CL, s->last_head.head_len);
	assert_int_equal(s->last_head.head->content_length, 11);
	assert_int_equal(egress_proxy_forward(s->p, s->last_head.head_bytes,
					      s->last_head.head_len, NULL), 0);
	drive(s);
	EXPECT_UP(s, POST_CL);
	sim_free(s);
}
BOTH(request_body_is_held_back_until_the_verdict)

static void verdict_pending_applies_back_pressure_on_the_guest(void **state)
{
	struct http1_limits l;
	struct egress_proxy_config cfg = { .dest_host = DEST, .dest_port = 443, .limits = &l };
	static char big[100000];
	struct sim *s;
	size_t took;

	(void)state;
	http1_limits_default(&l);
	l.max_head = 4096;
	l.max_request_line = 1024;
	s = sim_new_cfg(SIZE_MAX, &cfg);
	s->manual = true;
	GUEST(s, "POST / HTTP/1.1\r\nHost: " DEST "\r\nContent-Length: 100000\r\n\r\n");
	memset(big, 'b', sizeof(big));
	took = feed(s, false, big, sizeof(big));
	assert_true(took < 4096); /* held back, bounded by the input buffer */
	assert_int_equal(egress_proxy_guest_room(s->p), 0);
	assert_int_equal(egress_proxy_forward(s->p, s->last_head.head_bytes,
					      s->last_head.head_len, NULL), 0);
	drive(s);
	assert_int_equal(feed(s, false, big + took, sizeof(big) - took), sizeof(big) - took);
	assert_int_equal(s->up_len, s->last_head.head_len + sizeof(big));
	sim_free(s);
}

static void forwarded_head_replaces_the_original_and_its_placeholder(size_t chunk)
{
	struct sim *s = sim_new(chunk);
	const char req[] = "GET /v1/models?key=" PLACEHOLDER " HTTP/1.1\r\nHost: " DEST
			   "\r\nAuthorization: Bearer " PLACEHOLDER "\r\n\r\n";

	s->swap_from = PLACEHOLDER;
	s->swap_to = SECRET;
	GUEST(s, req);
	EXPECT_UP(s, "GET /v1/models?key=" SECRET " HTTP/1.1\r\nHost: " DEST
		     "\r\nAuthorization: Bearer " SECRET "\r\n\r\n");
	assert_false(up_has(s, PLACEHOLDER));
	UPSTREAM(s, OK_HELLO);
	assert_string_equal(s->done[0].path, "/v1/models");
	assert_false(guest_has(s, SECRET));
	sim_free(s);
}
BOTH(forwarded_head_replaces_the_original_and_its_placeholder)

static void secret_bytes_are_wiped_once_written_out(void **state)
{
	struct sim *s = sim_new(SIZE_MAX);
	const uint8_t *b;
	size_t n;

	(void)state;
	s->swap_from = PLACEHOLDER;
	s->swap_to = SECRET;
	s->hold_up = true;
	GUEST(s, "GET /a HTTP/1.1\r\nHost: " DEST "\r\nAuthorization: Bearer " PLACEHOLDER "\r\n\r\n");
	n = egress_proxy_upstream_peek(s->p, &b);
	assert_true(n > 0);
	assert_non_null(memmem(b, n, SECRET, strlen(SECRET)));
	assert_true(egress_proxy_debug_contains(s->p, (const uint8_t *)SECRET, strlen(SECRET)));
	/* Written out in two parts, the second starting inside the secret. */
	assert_int_equal(egress_proxy_upstream_consume(s->p, n - 10), 0);
	assert_int_equal(egress_proxy_upstream_consume(s->p, 10), 0);
	assert_false(egress_proxy_debug_contains(s->p, (const uint8_t *)SECRET, strlen(SECRET)));
	assert_false(egress_proxy_debug_contains(s->p, (const uint8_t *)"REAL-SECRET", 11));
	sim_free(s);
}

static void secret_bytes_are_wiped_when_the_upstream_fails(void **state)
{
	struct sim *s = sim_new(SIZE_MAX);

	(void)state;
	s->swap_from = PLACEHOLDER;
	s->swap_to = SECRET;
	s->fail_connect = "timeout";
	GUEST(s, "GET /a HTTP/1.1\r\nHost: " DEST "\r\nX-Api-Key: " PLACEHOLDER "\r\n\r\n");
	assert_true(s->closed);
	assert_false(egress_proxy_debug_contains(s->p, (const uint8_t *)SECRET, strlen(SECRET)));
	sim_free(s);
}

static void forward_refuses_a_head_that_changes_the_framing(void **state)
{
	struct sim *s = sim_new(SIZE_MAX);
	const char other_cl[] = "POST /v1/x HTTP/1.1\r\nHost: " DEST "\r\nContent-Length: 12\r\n\r\n";
	const char other_host[] = "POST /v1/x HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 11\r\n\r\n";
	const char chunked[] = "POST /v1/x HTTP/1.1\r\nHost: " DEST "\r\nTransfer-Encoding: chunked\r\n\r\n";
	const char two[] = "POST /v1/x HTTP/1.1\r\nHost: " DEST "\r\nContent-Length: 11\r\n\r\nGET / HTTP/1.1\r\n";
	const char bad[] = "POST /v1/x HTTP/1.1\r\nHost: " DEST "\r\nX: a\nContent-Length: 11\r\n\r\n";

	(void)state;
	s->manual = true;
	GUEST(s, POST_CL);
	assert_int_equal(egress_proxy_forward(s->p, (const uint8_t *)other_cl, sizeof(other_cl) - 1, NULL), -EBADMSG);
	assert_int_equal(egress_proxy_forward(s->p, (const uint8_t *)other_host, sizeof(other_host) - 1, NULL), -EBADMSG);
	assert_int_equal(egress_proxy_forward(s->p, (const uint8_t *)chunked, sizeof(chunked) - 1, NULL), -EBADMSG);
	assert_int_equal(egress_proxy_forward(s->p, (const uint8_t *)two, sizeof(two) - 1, NULL), -EBADMSG);
	assert_int_equal(egress_proxy_forward(s->p, (const uint8_t *)bad, sizeof(bad) - 1, NULL), -EBADMSG);
	drive(s);
	assert_int_equal(s->up_len, 0);
	assert_int_equal(s->n_need, 0);
	/* The verdict is still pending: the caller can still deny. */
	assert_int_equal(egress_proxy_deny(s->p, 500, "MIOSA-Egress-Error", "rewrite-failed", NULL, NULL), 0);
	drive(s);
	assert_true(guest_has(s, "HTTP/1.1 500 Internal Server Error\r\n"));
	sim_free(s);
}

/* ------------------------------------------------------------------ */
/* Back-pressure                                                       */

static void queues_respect_their_bound_under_back_pressure(void **state)
{
	struct egress_proxy_config cfg = {
		.dest_host = DEST, .dest_port = 443, .queue_max = 4096,
	};
	static char body[200000];
	static char resp[200100];
	struct sim *s = sim_new_cfg(SIZE_MAX, &cfg);
	const uint8_t *b;
	size_t took, n, head_len;
	char head[128];
	int hl;

	(void)state;
	memset(body, 'u', sizeof(body));
	hl = snprintf(head, sizeof(head), "PUT /big HTTP/1.1\r\nHost: " DEST "\r\nContent-Length: %zu\r\n\r\n",
		      sizeof(body));
	head_len = (size_t)hl;
	s->hold_up = true;
	GUEST(s, "PUT /big HTTP/1.1\r\nHost: " DEST "\r\nContent-Length: 200000\r\n\r\n");
	took = feed(s, false, body, sizeof(body));
	n = egress_proxy_upstream_peek(s->p, &b);
	assert_true(n <= 4096 + head_len);
	assert_true(took < 4096 + 65536 + 1); /* queue + input buffer, not the body */
	assert_int_equal(egress_proxy_guest_room(s->p), 0);
	s->hold_up = false;
	assert_int_equal(feed(s, false, body + took, sizeof(body) - took), sizeof(body) - took);
	assert_int_equal(s->up_len, head_len + sizeof(body));

	/* Download with a guest that does not read. */
	s->hold_guest = true;
	n = (size_t)snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
			     sizeof(body));
	memcpy(resp + n, body, sizeof(body));
	took = feed(s, true, resp, n + sizeof(body));
	assert_true(egress_proxy_guest_peek(s->p, &b) <= 4096);
	assert_true(took < 4096 + 65536 + 1);
	assert_int_equal(egress_proxy_upstream_room(s->p), 0);
	s->hold_guest = false;
	assert_int_equal(feed(s, true, resp + took, n + sizeof(body) - took), n + sizeof(body) - took);
	assert_int_equal(s->guest_len, n + sizeof(body));
	assert_int_equal(s->n_done, 1);
	assert_int_equal(s->done[0].up_body, sizeof(body));
	assert_int_equal(s->done[0].down_body, sizeof(body));
	sim_free(s);
}

static void early_response_before_the_request_body_closes_after_it(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, "POST /v1/x HTTP/1.1\r\nHost: " DEST "\r\nContent-Length: 11\r\n\r\nhel");
	UPSTREAM(s, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n");
	assert_true(s->closed);
	assert_int_equal(s->reason, EGRESS_PROXY_CLOSE_EARLY_RESPONSE);
	assert_int_equal(s->done[0].status, 413);
	sim_free(s);
}
BOTH(early_response_before_the_request_body_closes_after_it)

static void guest_eof_inside_the_request_body_answers_400_and_closes(size_t chunk)
{
	struct sim *s = sim_new(chunk);

	GUEST(s, "POST /v1/x HTTP/1.1\r\nHost: " DEST "\r\nContent-Length: 11\r\n\r\nhel");
	egress_proxy_guest_eof(s->p);
	drive(s);
	assert_true(guest_has(s, "HTTP/1.1 400 Bad Request\r\n"));
	assert_true(s->closed);
	assert_int_equal(s->reason, EGRESS_PROXY_CLOSE_GUEST_EOF);
	sim_free(s);
}
BOTH(guest_eof_inside_the_request_body_answers_400_and_closes)

static void api_misuse_is_refused_without_changing_state(void **state)
{
	struct egress_proxy_config cfg = { .dest_host = "", .dest_port = 443 };
	struct egress_proxy *p = NULL;
	struct sim *s;
	size_t c;

	(void)state;
	assert_int_equal(egress_proxy_new(&cfg, &p), -EINVAL);
	cfg.dest_host = "bad host";
	assert_int_equal(egress_proxy_new(&cfg, &p), -EINVAL);
	cfg.dest_host = DEST;
	cfg.queue_max = 100;
	assert_int_equal(egress_proxy_new(&cfg, &p), -EINVAL);
	assert_null(p);
	s = sim_new(SIZE_MAX);
	assert_int_equal(egress_proxy_forward(s->p, (const uint8_t *)"x", 1, NULL), -EINVAL);
	assert_int_equal(egress_proxy_upstream_connected(s->p), -EINVAL);
	assert_int_equal(egress_proxy_from_upstream(s->p, (const uint8_t *)"x", 1, &c), -ENOTCONN);
	assert_int_equal(egress_proxy_guest_consume(s->p, 1), -EINVAL);
	GUEST(s, GET_B); /* still works */
	assert_int_equal(s->n_req_head, 1);
	sim_free(s);
	egress_proxy_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		BOTH_TESTS(get_keep_alive_twice_on_one_stream),
		BOTH_TESTS(secure_queue_is_released_between_exchanges),
		BOTH_TESTS(pipelined_requests_are_forwarded_one_at_a_time_in_order),
		BOTH_TESTS(post_content_length_and_chunked_bodies_relay_verbatim),
		BOTH_TESTS(expect_continue_relays_100_then_body_then_final),
		BOTH_TESTS(expect_continue_final_answer_without_body_closes_after_it),
		BOTH_TESTS(interim_103_is_relayed_before_the_final_response),
		BOTH_TESTS(head_204_304_have_no_body_and_keep_the_connection),
		BOTH_TESTS(until_close_response_ends_the_stream),
		BOTH_TESTS(connection_close_on_either_side_closes_after_the_exchange),
		BOTH_TESTS(guest_half_close_after_a_request_still_gets_the_response),
		BOTH_TESTS(upgrade_101_becomes_a_tunnel_both_ways),
		BOTH_TESTS(upgrade_refused_with_200_stays_http),
		BOTH_TESTS(connect_is_refused_with_405_and_the_stream_stays_usable),
		BOTH_TESTS(connect_allowed_becomes_a_tunnel_after_2xx),
		BOTH_TESTS(deny_answers_403_skips_the_body_and_the_next_request_works),
		BOTH_TESTS(deny_with_a_body_it_cannot_skip_closes_after_answering),
		BOTH_TESTS(deny_to_head_has_no_body),
		cmocka_unit_test(deny_refuses_header_injection),
		BOTH_TESTS(host_naming_another_site_gets_421),
		BOTH_TESTS(upstream_connect_failure_answers_502_with_reason),
		BOTH_TESTS(upstream_eof_before_the_response_answers_502),
		BOTH_TESTS(upstream_eof_mid_body_closes_without_an_answer),
		BOTH_TESTS(upstream_failure_while_waiting_answers_504_or_closes_mid_body),
		BOTH_TESTS(response_smuggling_two_content_lengths_gets_502),
		BOTH_TESTS(malformed_chunked_response_mid_body_closes),
		BOTH_TESTS(upstream_bytes_while_idle_close_that_upstream_only),
		BOTH_TESTS(malformed_and_smuggling_requests_get_400_and_close),
		BOTH_TESTS(malformed_chunked_request_body_gets_400_and_stops_at_the_bad_byte),
		cmocka_unit_test(oversize_head_gets_431),
		BOTH_TESTS(request_body_is_held_back_until_the_verdict),
		cmocka_unit_test(verdict_pending_applies_back_pressure_on_the_guest),
		BOTH_TESTS(forwarded_head_replaces_the_original_and_its_placeholder),
		cmocka_unit_test(secret_bytes_are_wiped_once_written_out),
		cmocka_unit_test(secret_bytes_are_wiped_when_the_upstream_fails),
		cmocka_unit_test(forward_refuses_a_head_that_changes_the_framing),
		cmocka_unit_test(queues_respect_their_bound_under_back_pressure),
		BOTH_TESTS(early_response_before_the_request_body_closes_after_it),
		BOTH_TESTS(guest_eof_inside_the_request_body_answers_400_and_closes),
		cmocka_unit_test(api_misuse_is_refused_without_changing_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
