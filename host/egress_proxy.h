/*
 * egress_proxy — the per-stream HTTP/1.1 proxy engine of the broker data
 * path (DESIGN.md "Broker data path"), as a sans-IO state machine: no
 * sockets, no TLS, no event loop, no threads, no logging.  The broker's
 * libuv code drives one engine per guest egress stream, for plain HTTP
 * (port 80) and for decrypted TLS streams alike.
 *
 *   guest bytes ──from_guest()──► [guest in] ─parse─► REQUEST_HEAD event
 *                                                    │ caller: swap+policy+audit
 *                                  forward(new head) ◄┘ or deny(status, ...)
 *   [upstream queue] ◄── rewritten head + request body (framing verbatim)
 *   upstream bytes ──from_upstream()──► [upstream in] ─parse─► [guest queue]
 *
 * Contract:
 *   - Ownership: egress_proxy_new() allocates, egress_proxy_free() wipes
 *     and frees everything (safe on NULL).  The engine never calls out:
 *     the caller feeds input, pulls output and reads events.  Loop affinity:
 *     one thread at a time; see REQUEST_HEAD for the one exception.
 *   - Functions return 0 (or a count) or a negative errno: -EINVAL for a
 *     call the current state does not allow or a bad argument (the state
 *     is then unchanged), -ENOMEM, -E2BIG, -EBADMSG as documented.
 *   - Every call may advance the engine.  After every call the caller
 *     runs its "drive" step:
 *        while (egress_proxy_next_event(p, &ev)) handle(ev);
 *        write egress_proxy_upstream_peek() / egress_proxy_guest_peek();
 *        read a side only while its egress_proxy_*_room() > 0.
 *
 * Input and back-pressure:
 *   - egress_proxy_from_guest()/_from_upstream() accept at most *_room()
 *     bytes and say how many they took; room is 0 while the engine cannot
 *     make progress on that side (its output queue is over its bound, a
 *     verdict is pending and the input buffer is full, the engine is
 *     closing): the caller stops reading that socket until room comes back
 *     (it does after a consume, a verdict, or an event).
 *   - Input buffers hold at most limits.max_head bytes (a head must fit
 *     whole; a longer one is refused like http1 does: 431/502).
 *
 * Output:
 *   - Two byte queues, pulled with *_peek() and released with *_consume()
 *     once written.  A peeked pointer stays valid (the bytes do not move)
 *     until the next *_consume() of that queue or free: appending never
 *     moves bytes, consume compacts.  So: at most one write in flight per
 *     queue; peek, write, consume(n) when the write completed.
 *   - Relayed bytes are added only while a queue holds less than
 *     queue_max bytes.  On top of that the upstream queue reserves
 *     max_forward_head bytes for a forwarded head and the guest queue
 *     EGRESS_PROXY_ANSWER_MAX for a broker answer, so neither ever has to
 *     be refused for lack of room.  Nothing is queued for the upstream
 *     before egress_proxy_upstream_connected(); upstream_peek() returns 0
 *     until then.
 *
 * Requests (strictly in order, one exchange at a time):
 *   - The guest head is parsed by http1 (strict; see http1.h).  A parse
 *     error is answered with http1_error_status() (400, 414, 431, 501,
 *     505) and "MIOSA-Request-Error: <http1_strerror>", then the stream
 *     closes.  Smuggling shapes (CL+TE, two CL, bare LF, obs-fold...) are
 *     parse errors, so nothing of such a request reaches the upstream.
 *   - Host check: the request's authority (Host, or the absolute-form
 *     target) must name the destination given at creation (ASCII
 *     case-insensitive, one trailing dot ignored, a port if present must be
 *     dest_port).  Otherwise 421 + "MIOSA-Request-Error: host-mismatch":
 *     the policy, the swap and the exfiltration guard decided for
 *     dest_host, and a different Host on the same connection would let a
 *     shared front end (CDN) route the request, secrets included, to a
 *     host nobody checked (domain fronting).
 *   - CONNECT: the guest reached a synthetic address that stands for one
 *     name, so a CONNECT means a proxy-aware client mistaking the broker
 *     for a forward proxy.  By default the engine answers it itself with
 *     405 + "MIOSA-Egress-Deny: connect-not-supported" (the connection
 *     stays usable).  With cfg.allow_connect it is an ordinary request
 *     (REQUEST_HEAD, no host check: its target names the next hop): the
 *     caller's policy decides, and a 2xx from the upstream makes a tunnel.
 *   - REQUEST_HEAD: the event carries the parsed head and its bytes.  They
 *     stay unchanged and in place until forward(), deny() or free(); the
 *     engine does not touch them meanwhile (input is appended after them),
 *     so a worker thread may read them (swap_request_head) while the loop
 *     keeps feeding the engine.  Request body bytes that arrive meanwhile
 *     are held back in the guest input buffer (bounded by its size: room
 *     drops to 0) and reach the upstream queue only after forward().
 *   - forward(head) copies the rewritten head into the upstream queue
 *     (sodium_malloc'd) and drops the guest's original head, so the
 *     original placeholder bytes never reach the upstream.  The head is
 *     parsed again first: a head that does not parse, or whose method,
 *     framing (body mode, Content-Length), Expect or Upgrade differ from
 *     the guest's, is refused with -EBADMSG (the caller then denies with
 *     500): a rewrite can never change the framing the engine relays by.
 *     The head holds secrets: every upstream queue byte is wiped with
 *     sodium_memzero as soon as it is consumed (written out), when the
 *     queue is dropped (closing, upstream failure) and on free.
 *   - deny(status, name, value, body) answers the guest with a readable
 *     HTTP/1.1 answer.  The connection stays usable when the request body
 *     can be skipped: no body, or a Content-Length body of at most
 *     skip_max bytes without Expect: 100-continue (which the engine then
 *     reads and discards).  Otherwise (chunked, larger, or a client
 *     waiting for 100 that will never come) the answer says Connection:
 *     close and the stream closes after it.
 *   - NEED_UPSTREAM: a forwarded request needs an upstream connection (the
 *     first one, or a new one after the previous was closed while idle).
 *     The caller connects, then calls upstream_connected() or
 *     upstream_failed(reason): the guest gets 502 with
 *     "MIOSA-Upstream-Error: <reason>" (B10: never a bare EOF).
 *   - Expect: 100-continue: the head is forwarded, the upstream's 100 is
 *     relayed, and the body is relayed as the guest sends it.  If the
 *     upstream answers with a final status instead and the guest never
 *     sends the body, the exchange ends with the response and the stream
 *     closes (the framing of the unsent body is unknown).  The same holds
 *     for any response that ends before its request body.
 *   - Pipelining: bytes after a request wait in the guest input buffer and
 *     are parsed only once the previous exchange is over (response
 *     relayed, REQUEST_DONE read); so at most one exchange is in flight,
 *     responses can never be matched to the wrong request, and a bad
 *     second request cannot disturb the first response.
 *
 * Responses:
 *   - Parsed by http1 in response mode (request method and upgrade flag
 *     given) and relayed verbatim (head and body framing).  1xx interim
 *     responses are relayed and the parser reset for the final one; HEAD,
 *     204 and 304 have no body; a body without framing is read until the
 *     upstream closes and ends the stream.  Keep-alive only if both the
 *     request and the response allow it; otherwise CLOSE after the
 *     exchange.
 *   - A malformed response, or an upstream EOF, before the final response
 *     head was relayed: 502 + "MIOSA-Upstream-Error: bad-response" (resp.
 *     "connection-closed"), then close.  After it (mid-body): close only.
 *   - Upstream bytes while no request is outstanding (an idle server
 *     talking, or a server answering ahead): the engine never queues them
 *     for a later request (that would be response smuggling); it drops
 *     them and asks the caller to close that upstream (UPSTREAM_CLOSE).
 *     An upstream EOF while idle also gives UPSTREAM_CLOSE; a later
 *     request asks for a new one with NEED_UPSTREAM.  (A request forwarded
 *     just as the idle server closes gets a 502, not a retry: the engine
 *     keeps no copy of a head once written, by design.)
 *   - 101 to an upgrade request (WebSocket, B7) and 2xx to CONNECT: after
 *     the head the stream is a TUNNEL; bytes are relayed verbatim both
 *     ways.  An EOF on one side becomes a SHUTDOWN_* event for the other
 *     once the bytes before it are out; CLOSE when both sides ended.  A
 *     non-101 answer to an upgrade request is an ordinary response.
 *   - Broker-generated answers: "HTTP/1.1 <status> <reason>",
 *     Content-Type: text/plain, Content-Length, the MIOSA-* header,
 *     Connection: close when the stream closes after it, a one-line body
 *     (no body in answer to HEAD).  A guest EOF after a complete request
 *     (half-close) still gets its response; then the stream closes.
 *   - CLOSE is reported once, after the guest queue was consumed: the
 *     caller closes both connections at once.  Upstream-bound bytes still
 *     queued then are dropped (wiped).
 *
 * Memory per stream (fixed caps; the plain buffers are allocated at
 * creation, the sodium one at each forward() that finds it released: it is
 * released when REQUEST_DONE is read with the queue empty, outside a
 * tunnel, so an idle keep-alive stream holds no secure memory; no
 * allocation per header):
 *     sizeof(struct egress_proxy)           ~15 KiB (two http1 parsers)
 *   + guest input, upstream input           limits.max_head each
 *   + guest queue                           queue_max + 2 KiB
 *   + upstream queue (sodium_malloc)        queue_max + max_forward_head
 *                                           (+ libsodium's guard pages)
 *   With http1 defaults (max_head 64 KiB), queue_max 64 KiB and
 *   max_forward_head 80 KiB: about 360 KiB at most; the pages actually
 *   touched follow the traffic.  A broker with many streams passes smaller
 *   limits (16 KiB heads, 16 KiB queues: about 115 KiB).
 *
 * Driving it from libuv (what the broker's stream code must do):
 *   - Read a side only while its room is > 0 (uv_read_stop otherwise; the
 *     alloc_cb can size buffers by room).  Decrypted TLS bytes: SSL_read at
 *     most room bytes.
 *   - Write each queue with at most one write in flight (peek, uv_write or
 *     SSL_write, consume(n) only after it succeeded).  After
 *     UPSTREAM_CLOSE or CLOSE a write still in flight on that upstream is
 *     void: close the handle (libuv cancels it) and never consume it.
 *   - REQUEST_HEAD: queue swap + policy + audit on a worker with the
 *     event's head; in after_work call forward() (then swap_result_release)
 *     or deny(); if forward() fails, deny(500, ...).  Never free the engine
 *     while that work is queued.
 *   - NEED_UPSTREAM: resolve, check the address, connect, TLS; then
 *     upstream_connected() or upstream_failed(reason).
 *   - REQUEST_DONE: complete the audit row (duration is the caller's: time
 *     REQUEST_HEAD to REQUEST_DONE).  TUNNEL: the row is written; bytes
 *     after it are in egress_proxy_get_stats().
 *   - Timeouts (idle, head, connect, response) are the caller's: an
 *     upstream that is too slow gets upstream_failed("timeout") (the guest
 *     gets 504 if it is waiting for a response); an idle guest is closed.
 *   - A write or read error on the upstream: upstream_failed("reset").
 */
#ifndef MIOSA_EGRESS_PROXY_H
#define MIOSA_EGRESS_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http1.h"

#define EGRESS_PROXY_DEFAULT_QUEUE_MAX (64u * 1024u)
#define EGRESS_PROXY_MIN_QUEUE_MAX     4096u
#define EGRESS_PROXY_DEFAULT_SKIP_MAX  (64u * 1024u)
#define EGRESS_PROXY_FORWARD_SLACK     (16u * 1024u) /* default max_forward_head - max_head */
#define EGRESS_PROXY_ANSWER_MAX        2048u  /* a broker answer, head and body */
#define EGRESS_PROXY_HOST_MAX          253u
#define EGRESS_PROXY_FIELD_NAME_MAX    64u    /* deny(): header name */
#define EGRESS_PROXY_FIELD_VALUE_MAX   256u   /* deny(): header value */
#define EGRESS_PROXY_BODY_MAX          1024u  /* deny(): one-line body */
#define EGRESS_PROXY_METHOD_MAX        32u    /* audit record: longer is truncated */
#define EGRESS_PROXY_PATH_MAX          2048u  /* audit record: longer is truncated */

enum egress_proxy_scheme {
	EGRESS_PROXY_HTTP,
	EGRESS_PROXY_HTTPS,
};

struct egress_proxy_config {
	const struct http1_limits *limits; /* NULL: http1 defaults; copied */
	const char *dest_host;             /* the name the stream was mapped to; copied */
	uint16_t dest_port;
	enum egress_proxy_scheme scheme;
	uint32_t queue_max;        /* 0: default; at least EGRESS_PROXY_MIN_QUEUE_MAX */
	uint32_t max_forward_head; /* 0: limits.max_head + EGRESS_PROXY_FORWARD_SLACK */
	uint64_t skip_max;         /* 0: default; denied CL bodies up to this are skipped */
	bool allow_connect;        /* see "CONNECT" above */
};

enum egress_proxy_event_type {
	EGRESS_PROXY_EV_REQUEST_HEAD,     /* decide: forward() or deny() */
	EGRESS_PROXY_EV_NEED_UPSTREAM,    /* connect: upstream_connected() / _failed() */
	EGRESS_PROXY_EV_RESPONSE_HEAD,    /* final status known */
	EGRESS_PROXY_EV_REQUEST_DONE,     /* one exchange over: the audit record */
	EGRESS_PROXY_EV_TUNNEL,           /* from now on bytes are relayed verbatim */
	EGRESS_PROXY_EV_SHUTDOWN_UPSTREAM,/* tunnel: guest sent EOF, shut down upstream writes */
	EGRESS_PROXY_EV_SHUTDOWN_GUEST,   /* tunnel: upstream sent EOF, shut down guest writes */
	EGRESS_PROXY_EV_UPSTREAM_CLOSE,   /* close the upstream connection (stream goes on) */
	EGRESS_PROXY_EV_CLOSE,            /* close both connections now */
};

enum egress_proxy_close_reason {
	EGRESS_PROXY_CLOSE_DONE,            /* a side asked to close, or until-close body */
	EGRESS_PROXY_CLOSE_GUEST_EOF,
	EGRESS_PROXY_CLOSE_BAD_REQUEST,     /* answered 4xx/5xx, or broken request body */
	EGRESS_PROXY_CLOSE_DENIED,          /* denied and the body could not be skipped */
	EGRESS_PROXY_CLOSE_UPSTREAM_FAILED, /* connect failed (502 sent) */
	EGRESS_PROXY_CLOSE_BAD_RESPONSE,    /* malformed response (502 sent if possible) */
	EGRESS_PROXY_CLOSE_UPSTREAM_EOF,    /* upstream closed inside a response */
	EGRESS_PROXY_CLOSE_EARLY_RESPONSE,  /* response ended before the request body */
	EGRESS_PROXY_CLOSE_TUNNEL_END,
};

/* The audit record of one exchange (REQUEST_DONE). */
struct egress_proxy_exchange {
	uint64_t seq;              /* 1, 2, ... on this stream */
	char method[EGRESS_PROXY_METHOD_MAX + 1];  /* "" if the request did not parse */
	char path[EGRESS_PROXY_PATH_MAX + 1];      /* the guest's path, query excluded */
	bool method_truncated;
	bool path_truncated;
	uint16_t status;           /* final status the guest saw; 0 if none */
	bool broker_answer;        /* that status came from the broker, not upstream */
	bool complete;             /* the guest got a whole answer (upstream's or the
	                              broker's; a tunnel: its head) */
	uint64_t up_body;          /* request content bytes queued for the upstream */
	uint64_t up_total;         /* ... head and framing included */
	uint64_t down_body;        /* response content bytes queued for the guest */
	uint64_t down_total;       /* ... heads (1xx too) and framing included */
	void *audit_ctx;           /* from forward()/deny(); NULL for engine answers */
};

struct egress_proxy_event {
	enum egress_proxy_event_type type;
	/* REQUEST_HEAD: see the contract above. */
	const struct http1_head *head;
	const uint8_t *head_bytes;
	size_t head_len;
	/* RESPONSE_HEAD: the final status. */
	uint16_t status;
	/* RESPONSE_HEAD, REQUEST_DONE, TUNNEL */
	void *audit_ctx;
	/* REQUEST_DONE: valid until the next call with this engine. */
	const struct egress_proxy_exchange *exchange;
	/* CLOSE */
	enum egress_proxy_close_reason reason;
};

/* Whole-stream counters (tunnel bytes included), e.g. for a tunnel's row. */
struct egress_proxy_stats {
	uint64_t exchanges;
	uint64_t up_bytes;       /* queued for the upstream */
	uint64_t down_bytes;     /* queued for the guest */
	uint64_t tunnel_up;
	uint64_t tunnel_down;
};

struct egress_proxy;

/* -EINVAL for bad limits or host, -ENOMEM. */
__attribute__((warn_unused_result))
int egress_proxy_new(const struct egress_proxy_config *cfg, struct egress_proxy **ret);
void egress_proxy_free(struct egress_proxy *p);

/* Input.  *ret_consumed <= room; 0 when the engine takes nothing now. */
size_t egress_proxy_guest_room(const struct egress_proxy *p);
size_t egress_proxy_upstream_room(const struct egress_proxy *p);
__attribute__((warn_unused_result))
int egress_proxy_from_guest(struct egress_proxy *p, const uint8_t *buf, size_t len,
			    size_t *ret_consumed);
/* -ENOTCONN if no upstream is connected. */
__attribute__((warn_unused_result))
int egress_proxy_from_upstream(struct egress_proxy *p, const uint8_t *buf, size_t len,
			       size_t *ret_consumed);
void egress_proxy_guest_eof(struct egress_proxy *p);
void egress_proxy_upstream_eof(struct egress_proxy *p);

/*
 * upstream_connected(): after NEED_UPSTREAM only (-EINVAL otherwise).
 * upstream_failed(): the upstream connection could not be made or broke
 * (connect or TLS error, reset, write error, the caller's timeout).  While
 * connecting, or while a response is awaited and none of it was relayed:
 * 502 (504 for "timeout") with "MIOSA-Upstream-Error: <reason>", then
 * close.  Mid-response or in a tunnel: close.  Idle: like an idle EOF
 * (UPSTREAM_CLOSE).  -EINVAL when there is no upstream.  reason: a short
 * token such as "connect-refused", "dns-failed", "tls-verify-failed",
 * "timeout"; anything else is sent as "connect-failed".
 */
__attribute__((warn_unused_result))
int egress_proxy_upstream_connected(struct egress_proxy *p);
__attribute__((warn_unused_result))
int egress_proxy_upstream_failed(struct egress_proxy *p, const char *reason);

/* Verdicts, after REQUEST_HEAD only.  forward(): -E2BIG over
 * max_forward_head, -EBADMSG (see above), -ENOMEM.  deny(): status
 * 400..599, name a token of at most EGRESS_PROXY_FIELD_NAME_MAX, value
 * visible ASCII and SP of at most EGRESS_PROXY_FIELD_VALUE_MAX, body (may be
 * NULL) printable ASCII of at most EGRESS_PROXY_BODY_MAX; else -EINVAL. */
__attribute__((warn_unused_result))
int egress_proxy_forward(struct egress_proxy *p, const uint8_t *head, size_t len,
			 void *audit_ctx);
__attribute__((warn_unused_result))
int egress_proxy_deny(struct egress_proxy *p, uint16_t status, const char *field_name,
		      const char *field_value, const char *body, void *audit_ctx);

/* Output. */
size_t egress_proxy_upstream_peek(const struct egress_proxy *p, const uint8_t **ret_bytes);
size_t egress_proxy_guest_peek(const struct egress_proxy *p, const uint8_t **ret_bytes);
/* -EINVAL if n is more than what peek returned. */
__attribute__((warn_unused_result))
int egress_proxy_upstream_consume(struct egress_proxy *p, size_t n);
__attribute__((warn_unused_result))
int egress_proxy_guest_consume(struct egress_proxy *p, size_t n);

/* true with the next event, false when there is none. */
bool egress_proxy_next_event(struct egress_proxy *p, struct egress_proxy_event *ret);

void egress_proxy_get_stats(const struct egress_proxy *p, struct egress_proxy_stats *ret);
const char *egress_proxy_close_reason_str(enum egress_proxy_close_reason r);

/* Test hook: does any engine buffer, over its whole capacity (consumed and
 * unused bytes included), contain needle?  For the wiping tests. */
bool egress_proxy_debug_contains(const struct egress_proxy *p, const uint8_t *needle,
				 size_t len);
/* Test hook: the capacity of the (sodium_malloc'd) upstream queue; 0 while
 * it is released (between exchanges). */
size_t egress_proxy_debug_secure_cap(const struct egress_proxy *p);

#endif
