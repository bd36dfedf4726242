/*
 * egress_proxy internals shared by egress_proxy.c (API, request side,
 * broker answers) and egress_proxy_response.c (response side, tunnel).
 *
 * Invariants:
 *   - Output queues (gq, uq) always start at offset 0 (consume compacts)
 *     and their bytes never move except in consume, so a peeked pointer
 *     stays valid until the next consume.
 *   - Relays add to a queue only while it holds less than queue_max bytes;
 *     uq has max_forward_head more capacity for a forwarded head, gq
 *     EGRESS_PROXY_ANSWER_MAX more for a broker answer.  A new exchange
 *     starts only when both queues are back under queue_max, so the head
 *     and the answer always fit.
 *   - Input buffers (gin, uin) hold unprocessed bytes [off, len).  gin is
 *     never compacted while a verdict is pending (the REQUEST_HEAD event
 *     points into it).
 *   - Every uq byte is wiped when consumed or dropped; uq is freed with
 *     sodium_free (which wipes).
 */
#ifndef MIOSA_EGRESS_PROXY_INTERNAL_H
#define MIOSA_EGRESS_PROXY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "egress_proxy.h"
#include "http1.h"

enum ep_phase {
	EP_IDLE,      /* waiting for / parsing the next request head */
	EP_VERDICT,   /* REQUEST_HEAD reported, waiting for forward()/deny() */
	EP_EXCHANGE,  /* forwarded: request body relay and response */
	EP_SKIP,      /* denied, answer queued: discarding the request body */
	EP_TUNNEL,
	EP_CLOSING,   /* waiting for the guest queue to drain, then CLOSE */
	EP_CLOSED,
};

enum ep_upstream {
	EP_UP_NONE,
	EP_UP_CONNECTING, /* NEED_UPSTREAM reported */
	EP_UP_OPEN,
};

enum ep_resp {
	EP_RS_HEAD,          /* parsing a response head; the guest stream is at a message boundary */
	EP_RS_RELAY_INTERIM, /* copying a 1xx head to the guest */
	EP_RS_RELAY_FINAL,   /* copying the final head to the guest */
	EP_RS_BODY,
	EP_RS_DONE,
};

struct ep_buf {
	uint8_t *data;
	size_t cap;
	size_t off;   /* input buffers: first unprocessed byte; queues: always 0 */
	size_t len;
	bool secure;  /* sodium_malloc'd, wiped on consume */
};

#define EP_EVENTS 32u
#define EP_EVENTS_RESERVE 8u /* the pump stops with fewer free slots than this */

struct egress_proxy {
	struct http1_limits limits;
	struct http1_limits fwd_limits;   /* for re-parsing forwarded heads */
	char dest_host[EGRESS_PROXY_HOST_MAX + 1]; /* lowercase, no trailing dot, no [] */
	uint16_t dest_port;
	enum egress_proxy_scheme scheme;
	size_t queue_max;
	size_t max_forward_head;
	uint64_t skip_max;
	bool allow_connect;

	enum ep_phase phase;
	enum ep_upstream up_state;
	enum ep_resp rs;
	bool guest_eof;
	bool upstream_eof;
	bool req_done;        /* request body fully relayed */
	bool req_is_head;     /* answers carry no body */
	bool done_pending;    /* REQUEST_DONE not read yet: do not parse the next head */
	bool shut_up_sent;
	bool shut_guest_sent;
	enum egress_proxy_close_reason close_reason;
	size_t relay_left;    /* head bytes still to copy from uin to gq */

	struct http1_parser gp; /* guest requests */
	struct http1_parser up; /* upstream responses; re-parses forwarded heads */
	struct http1_body gb;
	struct http1_body ub;
	struct ep_buf gin, uin, gq, uq;

	struct egress_proxy_exchange x;
	struct egress_proxy_stats stats;

	struct egress_proxy_event ev[EP_EVENTS];
	unsigned ev_head;
	unsigned ev_n;
};

/* Bytes a relay may add to queue q now. */
size_t egress_proxy__relay_room(const struct egress_proxy *p, const struct ep_buf *q);
void egress_proxy__append(struct ep_buf *b, const uint8_t *src, size_t n);
void egress_proxy__push(struct egress_proxy *p, enum egress_proxy_event_type type);
/* CLOSE; the engine is then EP_CLOSED. */
void egress_proxy__push_close(struct egress_proxy *p, enum egress_proxy_close_reason why);
/* REQUEST_DONE for the current exchange. */
void egress_proxy__finish_exchange(struct egress_proxy *p, bool complete);
void egress_proxy__enter_closing(struct egress_proxy *p, enum egress_proxy_close_reason why);
/* Queue a broker answer for the current exchange (see egress_proxy.h). */
void egress_proxy__answer(struct egress_proxy *p, uint16_t status, const char *field_name,
			  const char *field_value, const char *body, bool close);
/* The current response is relayed whole: next request, or close. */
void egress_proxy__end_exchange(struct egress_proxy *p);

/* egress_proxy_response.c: one step each; true if something moved. */
bool egress_proxy__step_response(struct egress_proxy *p);
bool egress_proxy__step_tunnel(struct egress_proxy *p);

#endif
