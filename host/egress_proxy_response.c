/*
 * egress_proxy — response side and tunnel.  See egress_proxy.h for the
 * contract and egress_proxy_internal.h for the invariants.
 *
 * The response head is parsed in uin, then copied verbatim to the guest
 * queue as room allows (relay_left); body bytes go through the http1 body
 * decoder, whose consumed bytes (framing included) are a valid encoding
 * and are relayed verbatim.
 */
#include "egress_proxy_internal.h"

#include <string.h>

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

static size_t uin_avail(const struct egress_proxy *p)
{
	return p->uin.len - p->uin.off;
}

/* Move n bytes from the front of uin to the guest queue. */
static void relay_down(struct egress_proxy *p, size_t n)
{
	egress_proxy__append(&p->gq, p->uin.data + p->uin.off, n);
	p->uin.off += n;
	p->x.down_total += n;
	p->stats.down_bytes += n;
}

/*
 * The upstream failed us while the guest stream is at a message boundary
 * (no part of a final response relayed): B10, answer 502 with the reason.
 */
static void upstream_gone(struct egress_proxy *p, const char *reason,
			  enum egress_proxy_close_reason why)
{
	egress_proxy__answer(p, 502, "MIOSA-Upstream-Error", reason,
			     "miosa: the upstream server failed to answer", true);
	egress_proxy__finish_exchange(p, true);
	egress_proxy__enter_closing(p, why);
}

static bool response_head(struct egress_proxy *p)
{
	size_t avail = uin_avail(p), head_len = 0;
	const struct http1_head *h = &p->up.head;
	int r;

	if (avail == 0) {
		if (!p->upstream_eof)
			return false;
		upstream_gone(p, "connection-closed", EGRESS_PROXY_CLOSE_UPSTREAM_EOF);
		return true;
	}
	r = http1_parse(&p->up, p->uin.data + p->uin.off, avail, &head_len);
	if (r == HTTP1_NEED_MORE) {
		if (avail >= p->uin.cap) {
			r = -HTTP1_E_HEAD_TOO_LARGE;
		} else if (p->upstream_eof) {
			upstream_gone(p, "connection-closed", EGRESS_PROXY_CLOSE_UPSTREAM_EOF);
			return true;
		} else {
			return false;
		}
	}
	if (r >= 0 && !(h->flags & HTTP1_F_INTERIM))
		r = http1_body_init(&p->ub, h, &p->limits);
	if (r < 0) {
		upstream_gone(p, "bad-response", EGRESS_PROXY_CLOSE_BAD_RESPONSE);
		return true;
	}
	p->relay_left = head_len;
	if (h->flags & HTTP1_F_INTERIM) {
		p->rs = EP_RS_RELAY_INTERIM;
		return true;
	}
	p->x.status = h->status;
	p->rs = EP_RS_RELAY_FINAL;
	egress_proxy__push(p, EGRESS_PROXY_EV_RESPONSE_HEAD);
	return true;
}

static void enter_tunnel(struct egress_proxy *p)
{
	/* A 101 arriving before the request body ended: the bytes that follow
	 * would be neither body nor the new protocol; refuse to guess. */
	if (!p->req_done) {
		egress_proxy__finish_exchange(p, true);
		egress_proxy__enter_closing(p, EGRESS_PROXY_CLOSE_EARLY_RESPONSE);
		return;
	}
	egress_proxy__finish_exchange(p, true);
	egress_proxy__push(p, EGRESS_PROXY_EV_TUNNEL);
	p->phase = EP_TUNNEL;
}

static bool relay_head(struct egress_proxy *p)
{
	size_t n = min_size(p->relay_left, egress_proxy__relay_room(p, &p->gq));

	if (n == 0)
		return false;
	relay_down(p, n);
	p->relay_left -= n;
	if (p->relay_left > 0)
		return true;
	if (p->rs == EP_RS_RELAY_INTERIM) {
		/* RFC 9110 §15.2: a client MUST be able to parse one or more
		 * 1xx responses before the final one. */
		http1_parser_reset(&p->up);
		p->rs = EP_RS_HEAD;
		return true;
	}
	switch (p->up.head.body_mode) {
	case HTTP1_BODY_TUNNEL:
		enter_tunnel(p);
		break;
	case HTTP1_BODY_NONE:
		p->rs = EP_RS_DONE;
		egress_proxy__end_exchange(p);
		break;
	default:
		p->rs = EP_RS_BODY;
		break;
	}
	return true;
}

static bool response_body(struct egress_proxy *p)
{
	size_t avail = uin_avail(p), consumed = 0, doff = 0, dlen = 0;
	size_t room = egress_proxy__relay_room(p, &p->gq);
	int r;

	if (avail == 0 && p->upstream_eof) {
		if (http1_body_eof(&p->ub) == 0) {
			p->rs = EP_RS_DONE;
			egress_proxy__end_exchange(p);
		} else {
			egress_proxy__finish_exchange(p, false);
			egress_proxy__enter_closing(p, EGRESS_PROXY_CLOSE_UPSTREAM_EOF);
		}
		return true;
	}
	r = http1_body_decode(&p->ub, p->uin.data + p->uin.off, min_size(avail, room), &consumed,
			      &doff, &dlen);
	if (r < 0) {
		/* Part of the response is out: all that is left is to close. */
		egress_proxy__finish_exchange(p, false);
		egress_proxy__enter_closing(p, EGRESS_PROXY_CLOSE_BAD_RESPONSE);
		return true;
	}
	relay_down(p, consumed);
	p->x.down_body += dlen;
	if (r == HTTP1_DONE) {
		p->rs = EP_RS_DONE;
		egress_proxy__end_exchange(p);
		return true;
	}
	return consumed > 0;
}

bool egress_proxy__step_response(struct egress_proxy *p)
{
	switch (p->rs) {
	case EP_RS_HEAD:
		return response_head(p);
	case EP_RS_RELAY_INTERIM:
	case EP_RS_RELAY_FINAL:
		return relay_head(p);
	case EP_RS_BODY:
		return response_body(p);
	case EP_RS_DONE:
		break;
	}
	return false;
}

/* Tunnel: verbatim both ways; an EOF is passed on once the bytes before it are out. */
bool egress_proxy__step_tunnel(struct egress_proxy *p)
{
	size_t up = min_size(p->gin.len - p->gin.off, egress_proxy__relay_room(p, &p->uq));
	size_t down = min_size(uin_avail(p), egress_proxy__relay_room(p, &p->gq));
	bool moved = up > 0 || down > 0;

	egress_proxy__append(&p->uq, p->gin.data + p->gin.off, up);
	p->gin.off += up;
	p->stats.up_bytes += up;
	p->stats.tunnel_up += up;
	egress_proxy__append(&p->gq, p->uin.data + p->uin.off, down);
	p->uin.off += down;
	p->stats.down_bytes += down;
	p->stats.tunnel_down += down;

	if (p->guest_eof && !p->shut_up_sent && p->gin.off == p->gin.len && p->uq.len == 0) {
		p->shut_up_sent = true;
		egress_proxy__push(p, EGRESS_PROXY_EV_SHUTDOWN_UPSTREAM);
		moved = true;
	}
	if (p->upstream_eof && !p->shut_guest_sent && uin_avail(p) == 0 && p->gq.len == 0) {
		p->shut_guest_sent = true;
		egress_proxy__push(p, EGRESS_PROXY_EV_SHUTDOWN_GUEST);
		moved = true;
	}
	if (p->shut_up_sent && p->shut_guest_sent) {
		egress_proxy__push_close(p, EGRESS_PROXY_CLOSE_TUNNEL_END);
		moved = true;
	}
	return moved;
}
