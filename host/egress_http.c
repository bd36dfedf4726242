/*
 * egress_http — the libuv wiring of egress_proxy for one guest egress
 * stream (port 80, port 443, or TLS on another port): the "what the libuv
 * wiring must do" list at the end of egress_proxy.h, followed literally.
 *
 *   guest socket ─[TLS: sandbox leaf, memory BIOs]─► egress_proxy ─► upstream
 *   REQUEST_HEAD ─► worker: egress_verdict_run (policy, swap, audit)
 *                ◄─ after_work: forward(swapped head) | deny(403/503/500)
 *   NEED_UPSTREAM ─► resolve (worker) ─► upstream_addr checks / --connect-to
 *                 ─► TCP connect ─[TLS: upstream_tls, SNI + verification
 *                    against the MAPPED NAME, never the --connect-to target]
 *
 * One "side" per socket.  A side holds at most EH_IN_CAP plaintext bytes
 * for the engine (and, with TLS, at most EH_IN_CAP undecrypted bytes in its
 * read BIO); a socket is read only while that room exists, so a peer can
 * never make the broker buffer more.  Output: one write in flight per side;
 * plain sides write the engine's peeked bytes in place and consume them
 * when the write completed; TLS sides SSL_write the peeked bytes into the
 * write BIO (consumed at once: they are encrypted) only when the previous
 * ciphertext has been written, so the BIO holds at most one queue's worth.
 *
 * Lifetime: the stream (c->http) lives as long as its gw_conn; every
 * pending callback (guest write, verdict job, CA job) holds a conn
 * reference, and each upstream connection (struct eh_up) holds one for its
 * whole life, so the engine is never freed under a queued job.
 *
 * Timeouts (docs/broker.md), one timer per upstream connection:
 *   - connecting: resolve + connect + TLS handshake share
 *     opts.connect_timeout_ms (then 504 "timeout");
 *   - an exchange in flight (from forward() to REQUEST_DONE):
 *     opts.response_timeout_ms without progress, restarted by every
 *     upstream read and every completed upstream write, so a slow upload
 *     or a long body that keeps moving is never cut, but a silent upstream
 *     is: 504 "timeout" before the response head, a close after it;
 *   - idle keep-alive (after REQUEST_DONE): opts.upstream_idle_timeout_ms,
 *     then the upstream is closed and the next request opens a new one;
 *   - a tunnel (101, CONNECT): none.
 *
 * Upstream pool: when a guest stream ends (guest EOF) while its upstream
 * connection is idle and reusable (connected, handshaken, no exchange in
 * flight, nothing buffered either way, keep-alive on both sides), the
 * connection is parked in its sandbox's pool (gw_sandbox.pool) under
 * (mapped name, port, TLS) instead of being closed, and the next stream of
 * the SAME sandbox to the same name and port adopts it at NEED_UPSTREAM,
 * skipping resolve, connect and the upstream TLS handshake.  Every request
 * still gets its own verdict (policy, swap, audit): the pool only reuses
 * transport.  Bounds: EH_POOL_PER_KEY per key, EH_POOL_PER_SANDBOX per
 * sandbox; a parked connection expires after opts.upstream_idle_timeout_ms
 * and is dropped at once if the server sends anything or closes.  A
 * deleted sandbox, or the broker shutting down, flushes its pool.
 */
#include "guest_gateway_internal.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "audit.h"
#include "egress_proxy.h"
#include "leaf_mint.h"
#include "log.h"
#include "mitm_ca.h"
#include "ossl_err.h"
#include "swap.h"
#include "tenancy.h"
#include "upstream_addr.h"
#include "upstream_tls.h"

#define EH_IN_CAP (16u * 1024)
/* Per-stream engine limits: many streams per broker (egress_proxy.h). */
#define EH_QUEUE_MAX (16u * 1024)
/* Request and response heads up to 32 KiB (nginx's default cap is 4 x 8 KiB):
 * the engine's buffers are fixed per stream and the upstream queue
 * (queue_max + max_head + 16 KiB slack) is sodium_malloc'd, i.e. touched and
 * locked at once, so these caps are most of what an idle connection costs
 * (bench/broker_rss.sh: 350 KiB per idle connection with 64 KiB heads and
 * queues, a kept secure queue and a socket read buffer per side; 120 KiB now). */
#define EH_HEAD_MAX (32u * 1024)
#define EH_POOL_PER_KEY 8u
#define EH_POOL_PER_SANDBOX 64u

struct eh_up;

struct eh_side {
	struct egress_http *hs;
	struct eh_up *up;            /* upstream side: its connection; NULL: guest */
	uv_stream_t *stream;
	SSL *ssl;                    /* NULL: plain */
	BIO *rbio, *wbio;            /* owned by ssl */
	bool handshaken;
	bool failed;                 /* guest handshake refused: alert out, then close */
	bool sock_eof;               /* the socket reached EOF */
	bool ended;                  /* no more plaintext will come */
	bool eof_given;              /* the engine was told */
	bool reading;
	bool writing;
	bool shut;
	size_t plain_inflight;       /* plain: engine bytes in the write */
	uint8_t *cipher;             /* TLS: ciphertext in the write */
	uv_write_t wreq;
	uv_shutdown_t shreq;
	size_t in_len;
	uint8_t in[EH_IN_CAP];       /* plaintext for the engine */
};

struct eh_up {
	struct egress_http *hs;      /* NULL while pooled */
	struct gw_conn *conn;        /* the stream it holds a reference on; NULL while pooled */
	/* Pool (see "Upstream pool" below): set from parking until adopted or
	 * freed; holds one count of pool_sb->n_pooled. */
	struct gw_sandbox *pool_sb;
	struct eh_up *pool_next;
	bool pooled;                 /* in pool_sb->pool now */
	char pool_name[HOST_PATTERN_BUF];
	uint16_t pool_port;
	bool pool_tls;
	unsigned refs;               /* pending requests and open handles */
	bool closing;
	bool operator_target;
	bool connected;
	uv_getaddrinfo_t gai;
	bool gai_pending;
	uv_tcp_t tcp;
	bool tcp_open;
	uv_connect_t creq;
	uv_timer_t timer;
	bool timer_open;
	char target[HOST_PATTERN_BUF];
	uint16_t target_port;
	struct eh_side side;
};

struct egress_http {
	struct gw_conn *c;
	char name[HOST_PATTERN_BUF];
	uint16_t port;
	bool tls;
	struct egress_proxy *px;
	struct eh_side guest;
	struct eh_up *up;            /* the current upstream connection */
	bool verdict_pending;
	bool close_pending;          /* CLOSE: close once the guest output is out */
	bool driving, again;
	bool awaiting;               /* forward() .. REQUEST_DONE: response timer */
	bool tunnel;                 /* no upstream timer */
	bool no_reuse;               /* the engine closed for a reason other than a guest EOF */
	uint8_t *pending;            /* guest bytes read with the GuestOpen frame */
	size_t pending_len, pending_off;
	/* The current exchange's audit row, written (fail closed) before the
	 * request went out or was denied; completed (audit.h "Completions") at
	 * REQUEST_DONE, or at close for a tunnel or an exchange cut short.
	 * At most one exchange is in flight per stream (egress_proxy.h). */
	struct store_audit_row *audit_row;
	uint64_t audit_start_ns;     /* REQUEST_HEAD, uv_hrtime() */
	struct egress_proxy_stats audit_base; /* stream counters at REQUEST_HEAD */
	bool audit_tunnel;           /* a 101: complete at close, tunnel bytes added */
	uint64_t audit_up, audit_down; /* tunnel: the upgrade exchange's body bytes */
};

struct eh_verdict_job {
	uv_work_t work;
	struct gw_conn *c;
	struct gw_verdict v;
};

/* A connection-level row written from a worker (the SNI refusal). */
struct eh_row_job {
	uv_work_t work;
	struct gw_conn *c;
	struct store_audit_row row;
};

struct eh_ca_job {
	uv_work_t work;
	struct gw_conn *c;
	char sandbox_id[TENANCY_OBJECT_ID_LEN + 1];
	struct mitm_ca *ca;
	struct leaf_mint *lm;
	int r;
};

static void eh_drive(struct egress_http *hs);
static void eh_up_close(struct eh_up *up);
static void eh_up_arm(struct egress_http *hs);

static void eh_log(struct egress_http *hs, int level, const char *event, const char *reason,
		   int r)
{
	struct log_line l;

	if (!log_begin(&l, level, event))
		return;
	log_str(&l, "sandbox", hs->c->sb->id);
	log_str(&l, "host", hs->name);
	log_uint(&l, "port", hs->port);
	if (reason)
		log_str(&l, "reason", reason);
	if (r < 0)
		log_errno(&l, r);
	log_end(&l);
}

/* ---- sides --------------------------------------------------------------- */

static int eh_side_tls(struct eh_side *s, SSL *ssl)
{
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());

	if (!rb || !wb) {
		BIO_free(rb);
		BIO_free(wb);
		SSL_free(ssl);
		return -ENOMEM;
	}
	BIO_set_mem_eof_return(rb, -1); /* empty: "retry", until the socket's EOF */
	SSL_set_bio(ssl, rb, wb);
	s->ssl = ssl;
	s->rbio = rb;
	s->wbio = wb;
	return 0;
}

static bool eh_side_idle_out(const struct eh_side *s)
{
	return !s->writing && (!s->ssl || BIO_pending(s->wbio) == 0);
}

/* A side failed: the guest side closes the stream, an upstream side is
 * reported to the engine (502 / close as it decides). */
static void eh_side_fail(struct eh_side *s, const char *reason, int r)
{
	struct egress_http *hs = s->hs;

	if (!s->up) {
		eh_log(hs, LOG_LEVEL_INFO, "egress_guest_failed", reason, r);
		gw_conn_close(hs->c, NULL);
		return;
	}
	if (s->up->closing)
		return;
	eh_log(hs, LOG_LEVEL_WARN, "egress_upstream_failed", reason, r);
	if (hs->up == s->up) {
		hs->up = NULL;
		if (egress_proxy_upstream_failed(hs->px, reason) < 0)
			eh_log(hs, LOG_LEVEL_DEBUG, "egress_engine_state", "failed", -EINVAL);
	}
	eh_up_close(s->up);
	hs->again = true;
}

static void eh_side_flush(struct eh_side *s);

static int64_t eh_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Worker: the sandbox's attribution, then the row (written on this worker;
 * nothing waits for it: the connection is already refused). */
static void eh_row_work(uv_work_t *w)
{
	struct eh_row_job *job = w->data;
	struct store_audit_row *row = &job->row;
	struct gw_worker_ctx *ctx;
	struct tenancy_sandbox sb;

	if (gw_worker_ctx_get(job->c->gw, &ctx) == 0 &&
	    tenancy_sandbox_get(ctx->tenancy, NULL, row->sandbox_id, &sb) == 0) {
		snprintf(row->tenant_id, sizeof(row->tenant_id), "%s", sb.tenant_id);
		snprintf(row->external_user_id, sizeof(row->external_user_id), "%s",
			 sb.external_user_id);
		snprintf(row->external_workspace_id, sizeof(row->external_workspace_id), "%s",
			 sb.external_workspace_id);
	}
	(void)egress_verdict_write_row(job->c->gw, row);
}

static void eh_row_done(uv_work_t *w, int status)
{
	struct eh_row_job *job = w->data;
	struct gw_conn *c = job->c;

	(void)status;
	free(job);
	gw_conn_unref(c);
}

/* "SNI must match the name the synthetic address maps to": leaf_mint
 * refused the handshake (unrecognized_name alert); audit it as a deny. */
static void eh_sni_audit(struct egress_http *hs, const struct leaf_mint_sni_info *sni)
{
	struct eh_row_job *job = calloc(1, sizeof(*job));
	struct gw_conn *c = hs->c;
	struct log_line l;

	if (log_begin(&l, LOG_LEVEL_WARN, "egress_sni_refused")) {
		log_str(&l, "sandbox", c->sb->id);
		log_str(&l, "host", hs->name);
		log_str(&l, "sni", sni->sni);
		log_str(&l, "verdict", leaf_mint_sni_name(sni->verdict));
		log_end(&l);
	}
	if (!job) {
		eh_log(hs, LOG_LEVEL_ERROR, "audit_write_failed", "sni-mismatch", -ENOMEM);
		return;
	}
	job->c = c;
	job->row.time_us = eh_now_us();
	snprintf(job->row.sandbox_id, sizeof(job->row.sandbox_id), "%s", c->sb->id);
	snprintf(job->row.tenant_id, sizeof(job->row.tenant_id), "%s", c->sb->tenant_id);
	snprintf(job->row.host, sizeof(job->row.host), "%s", hs->name);
	job->row.port = hs->port;
	job->row.scheme = STORE_AUDIT_HTTPS;
	job->row.action = STORE_AUDIT_DENY;
	snprintf(job->row.reason, sizeof(job->row.reason), "%s",
		 sni->verdict == LEAF_MINT_SNI_MISMATCH ? "sni-mismatch" : "sni-invalid");
	job->work.data = job;
	if (uv_queue_work(c->gw->loop, &job->work, eh_row_work, eh_row_done) < 0) {
		eh_log(hs, LOG_LEVEL_ERROR, "audit_write_failed", "sni-mismatch", -EAGAIN);
		free(job);
		return;
	}
	c->refs++;
}

/* The guest's handshake failed: audit an SNI refusal, send the alert
 * OpenSSL queued (unrecognized_name, ...), then close. */
static void eh_guest_handshake_failed(struct eh_side *s, int r)
{
	struct egress_http *hs = s->hs;
	struct leaf_mint_sni_info sni;

	if (leaf_mint_ssl_sni(s->ssl, &sni) == 0 && sni.verdict != LEAF_MINT_SNI_MATCH &&
	    sni.verdict != LEAF_MINT_SNI_ABSENT && sni.verdict != LEAF_MINT_SNI_PENDING)
		eh_sni_audit(hs, &sni);
	eh_log(hs, LOG_LEVEL_INFO, "egress_guest_failed", "tls-failed", r);
	s->failed = true;
	hs->close_pending = true;
	eh_side_flush(s);
}

/* TLS: handshake, then decrypt into in[] while it has room. */
static void eh_side_pump_tls(struct eh_side *s)
{
	char msg[OSSL_ERR_MSG_MAX];
	int n, r;

	if (s->failed)
		return;
	if (!s->handshaken) {
		n = SSL_do_handshake(s->ssl);
		if (n != 1) {
			r = ossl_err_ssl(s->ssl, n, msg, sizeof(msg));
			if (r == -EAGAIN || r == -ENOBUFS || r == -EINPROGRESS) {
				if (s->sock_eof)
					eh_side_fail(s, "connection-closed", -ECONNRESET);
				return;
			}
			if (msg[0])
				eh_log(s->hs, LOG_LEVEL_INFO, "egress_tls_error", msg, 0);
			if (!s->up) {
				eh_guest_handshake_failed(s, r);
				return;
			}
			eh_side_fail(s, r == -EKEYREJECTED ? "tls-verify-failed" : "tls-failed", r);
			return;
		}
		s->handshaken = true;
		s->hs->again = true;
		if (s->up) {
			s->up->connected = true;
			eh_up_arm(s->hs);
			if (egress_proxy_upstream_connected(s->hs->px) < 0)
				eh_log(s->hs, LOG_LEVEL_ERROR, "egress_engine_state", "connected", -EINVAL);
		}
	}
	while (!s->ended && s->in_len < EH_IN_CAP) {
		n = SSL_read(s->ssl, s->in + s->in_len, (int)(EH_IN_CAP - s->in_len));
		if (n > 0) {
			s->in_len += (size_t)n;
			continue;
		}
		r = ossl_err_ssl(s->ssl, n, NULL, 0);
		if (r == -EAGAIN || r == -EINPROGRESS || r == -ENOBUFS)
			break;
		if (r == 0 || (r == -ECONNRESET && s->sock_eof)) {
			s->ended = true; /* close_notify, or the TCP EOF */
			break;
		}
		eh_side_fail(s, "reset", r);
		return;
	}
}

/* Plain guest side: the bytes that came with the GuestOpen frame first. */
static void eh_side_pump_plain(struct eh_side *s)
{
	struct egress_http *hs = s->hs;

	if (!s->up && hs->pending_off < hs->pending_len) {
		size_t n = hs->pending_len - hs->pending_off;

		if (n > EH_IN_CAP - s->in_len)
			n = EH_IN_CAP - s->in_len;
		memcpy(s->in + s->in_len, hs->pending + hs->pending_off, n);
		s->in_len += n;
		hs->pending_off += n;
	}
	if (s->sock_eof && (s->up || hs->pending_off == hs->pending_len))
		s->ended = true;
}

/* The guest stream's data is its gw_conn (gw_conn_close relies on it); an
 * upstream TCP handle's data is its side. */
static struct eh_side *eh_side_of(uv_handle_t *h)
{
	if (h->type == UV_TCP)
		return h->data;
	return &((struct gw_conn *)h->data)->http->guest;
}

/*
 * TLS sides read ciphertext into one buffer for the whole loop: libuv calls
 * the read callback right after the alloc callback of the same read, and
 * eh_on_read() copies the bytes into the side's read BIO at once, so no two
 * reads ever share it (16 KiB less per side and connection).  One per
 * thread, should the broker ever run a loop per core.
 */
static _Thread_local uint8_t eh_raw[EH_IN_CAP];

static void eh_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct eh_side *s = eh_side_of(h);

	(void)suggested;
	if (s->ssl)
		*buf = uv_buf_init((char *)eh_raw, sizeof(eh_raw));
	else
		*buf = uv_buf_init((char *)s->in + s->in_len, (unsigned)(EH_IN_CAP - s->in_len));
}

static void eh_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct eh_side *s = eh_side_of((uv_handle_t *)st);
	struct egress_http *hs = s->hs;

	if (s->up && !s->up->hs) {
		/* Pooled: an idle server that talks or closes is not reused. */
		if (nread != 0)
			eh_up_close(s->up);
		return;
	}
	if (hs->c->closing || (s->up && s->up->closing) || nread == 0)
		return;
	if (nread > 0) {
		if (s->up)
			eh_up_arm(hs); /* progress */
		if (s->ssl) {
			if (BIO_write(s->rbio, buf->base, (int)nread) != (int)nread) {
				eh_side_fail(s, "out-of-memory", -ENOMEM);
				return;
			}
		} else {
			s->in_len += (size_t)nread;
		}
	} else if (nread == UV_EOF || s->ssl) {
		/* With TLS a transport error is an EOF to OpenSSL: it decides
		 * whether the stream was truncated. */
		s->sock_eof = true;
		if (s->ssl)
			BIO_set_mem_eof_return(s->rbio, 0);
		uv_read_stop(st);
		s->reading = false;
	} else {
		eh_side_fail(s, "reset", (int)nread);
		return;
	}
	eh_drive(hs);
}

static void eh_side_update_reading(struct eh_side *s)
{
	bool want = !s->sock_eof &&
		    (s->ssl ? BIO_pending(s->rbio) < (int)EH_IN_CAP : s->in_len < EH_IN_CAP);

	if (!s->up && s->hs->pending_off < s->hs->pending_len)
		want = false;
	if (want && !s->reading) {
		if (uv_read_start(s->stream, eh_on_alloc, eh_on_read) == 0)
			s->reading = true;
	} else if (!want && s->reading) {
		uv_read_stop(s->stream);
		s->reading = false;
	}
}

/* ---- upstream connections ------------------------------------------------ */

static void eh_up_unref(struct eh_up *up)
{
	struct gw_conn *c;
	struct gw_sandbox *sb;

	if (--up->refs > 0)
		return;
	c = up->conn;
	sb = up->pool_sb;
	SSL_free(up->side.ssl);
	free(up->side.cipher);
	sodium_memzero(up->side.in, sizeof(up->side.in)); /* response bytes */
	free(up);
	if (c)
		gw_conn_unref(c);
	if (sb) {
		sb->n_pooled--;
		gw_sandbox_release(sb);
	}
}

static void eh_up_on_timer_closed(uv_handle_t *h)
{
	eh_up_unref(h->data);
}

static void eh_up_on_tcp_closed(uv_handle_t *h)
{
	eh_up_unref(((struct eh_side *)h->data)->up);
}

static void eh_up_close(struct eh_up *up)
{
	if (up->closing)
		return;
	up->closing = true;
	if (up->pooled) {
		/* out of the pool list; pool_sb stays counted until freed */
		for (struct eh_up **p = &up->pool_sb->pool; *p; p = &(*p)->pool_next)
			if (*p == up) {
				*p = up->pool_next;
				break;
			}
		up->pooled = false;
	}
	if (up->hs && up->hs->up == up)
		up->hs->up = NULL;
	if (up->gai_pending)
		uv_cancel((uv_req_t *)&up->gai);
	if (up->tcp_open) {
		up->tcp_open = false;
		uv_close((uv_handle_t *)&up->tcp, eh_up_on_tcp_closed);
	}
	if (up->timer_open) {
		up->timer_open = false;
		uv_close((uv_handle_t *)&up->timer, eh_up_on_timer_closed);
	}
}

/* ---- writes -------------------------------------------------------------- */

static void eh_on_write(uv_write_t *req, int status)
{
	struct eh_side *s = req->data;
	struct egress_http *hs = s->hs;
	struct gw_conn *c = hs->c;
	struct eh_up *up = s->up;
	size_t n = s->plain_inflight;

	s->writing = false;
	s->plain_inflight = 0;
	free(s->cipher);
	s->cipher = NULL;
	/* After UPSTREAM_CLOSE / CLOSE a write in flight is void: never consume. */
	if (!c->closing && !(up && up->closing)) {
		if (status < 0) {
			eh_side_fail(s, "reset", status);
		} else {
			/* progress: an upload moving, or a slow guest reading a
			 * response (the upstream is not read meanwhile) */
			eh_up_arm(hs);
		}
		if (status >= 0 && !s->ssl && !c->closing) {
			int r = up ? egress_proxy_upstream_consume(hs->px, n)
				   : egress_proxy_guest_consume(hs->px, n);

			if (r < 0)
				gw_conn_close(c, "engine refused a consume");
		}
		if (!c->closing)
			eh_drive(hs);
	}
	if (up)
		eh_up_unref(up);
	else
		gw_conn_unref(c);
}

static int eh_write(struct eh_side *s, const uint8_t *p, size_t n)
{
	uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
	int r;

	s->wreq.data = s;
	if ((r = uv_write(&s->wreq, s->stream, &b, 1, eh_on_write)) < 0)
		return r;
	s->writing = true;
	if (s->up)
		s->up->refs++;
	else
		s->hs->c->refs++;
	return 0;
}

/* Write what the engine has for this side: one write in flight. */
static void eh_side_flush(struct eh_side *s)
{
	struct egress_proxy *px = s->hs->px;
	const uint8_t *p;
	size_t n;
	int r;

	if (s->writing || s->shut || (s->ssl && !s->handshaken && !BIO_pending(s->wbio)))
		goto ciphertext;
	if (s->ssl && s->handshaken && BIO_pending(s->wbio) == 0) {
		n = s->up ? egress_proxy_upstream_peek(px, &p) : egress_proxy_guest_peek(px, &p);
		if (n > 0) {
			int w = SSL_write(s->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n));

			if (w <= 0) {
				eh_side_fail(s, "tls-failed", ossl_err_ssl(s->ssl, w, NULL, 0));
				return;
			}
			r = s->up ? egress_proxy_upstream_consume(px, (size_t)w)
				  : egress_proxy_guest_consume(px, (size_t)w);
			if (r < 0) {
				gw_conn_close(s->hs->c, "engine refused a consume");
				return;
			}
		}
	} else if (!s->ssl) {
		n = s->up ? egress_proxy_upstream_peek(px, &p) : egress_proxy_guest_peek(px, &p);
		if (n > 0) {
			if ((r = eh_write(s, p, n)) < 0)
				eh_side_fail(s, "reset", r);
			else
				s->plain_inflight = n;
		}
		return;
	}
ciphertext:
	if (s->ssl && !s->writing && BIO_pending(s->wbio) > 0) {
		int len = BIO_pending(s->wbio);

		if (!(s->cipher = malloc((size_t)len))) {
			eh_side_fail(s, "out-of-memory", -ENOMEM);
			return;
		}
		if (BIO_read(s->wbio, s->cipher, len) != len ||
		    (r = eh_write(s, s->cipher, (size_t)len)) < 0) {
			free(s->cipher);
			s->cipher = NULL;
			eh_side_fail(s, "reset", -EIO);
		}
	}
}

static void eh_on_shutdown(uv_shutdown_t *req, int status)
{
	struct eh_side *s = req->data;

	(void)status;
	if (s->up)
		eh_up_unref(s->up);
	else
		gw_conn_unref(s->hs->c);
}

/* Tunnel half-close: TLS sends close_notify (flushed with the output),
 * plain TCP shuts its write side once the queued writes are out. */
static void eh_side_shutdown(struct eh_side *s)
{
	if (s->shut)
		return;
	if (s->ssl) {
		(void)SSL_shutdown(s->ssl);
		eh_side_flush(s);
		s->shut = true;
		return;
	}
	s->shut = true;
	s->shreq.data = s;
	if (uv_shutdown(&s->shreq, s->stream, eh_on_shutdown) == 0) {
		if (s->up)
			s->up->refs++;
		else
			s->hs->c->refs++;
	}
}

/* ---- upstream: resolve, check, connect, TLS ------------------------------ */

static void eh_up_fail(struct eh_up *up, const char *reason, int r)
{
	eh_side_fail(&up->side, reason, r);
	if (!up->hs->c->closing)
		eh_drive(up->hs);
}

static void eh_up_on_timeout(uv_timer_t *t)
{
	struct eh_up *up = t->data;

	if (!up->hs) {
		eh_up_close(up); /* pooled: expired */
		return;
	}
	eh_up_fail(up, "timeout", -ETIMEDOUT);
}

/* An idle keep-alive upstream: close it; the engine asks for a new one
 * (NEED_UPSTREAM) with the next request. */
static void eh_up_on_idle(uv_timer_t *t)
{
	struct eh_up *up = t->data;
	struct egress_http *hs = up->hs;

	if (!hs) {
		eh_up_close(up); /* pooled: expired */
		return;
	}
	if (up->closing || hs->c->closing || hs->up != up)
		return;
	eh_log(hs, LOG_LEVEL_DEBUG, "egress_upstream_idle_closed", NULL, 0);
	if (egress_proxy_upstream_failed(hs->px, "idle") < 0)
		eh_log(hs, LOG_LEVEL_DEBUG, "egress_engine_state", "idle", -EINVAL);
	eh_up_close(up);
	eh_drive(hs);
}

/* The upstream's timer once connected: response (restarted on progress)
 * while an exchange is in flight, idle otherwise, none in a tunnel. */
static void eh_up_arm(struct egress_http *hs)
{
	const struct guest_gateway_options *o = &hs->c->gw->opts;
	struct eh_up *up = hs->up;

	if (!up || up->closing || !up->connected || !up->timer_open)
		return;
	if (hs->tunnel)
		uv_timer_stop(&up->timer);
	else if (hs->awaiting)
		uv_timer_start(&up->timer, eh_up_on_timeout, o->response_timeout_ms, 0);
	else
		uv_timer_start(&up->timer, eh_up_on_idle, o->upstream_idle_timeout_ms, 0);
}

static void eh_up_on_connect(uv_connect_t *req, int status)
{
	struct eh_up *up = req->data;
	struct egress_http *hs = up->hs;
	SSL *ssl;
	int r;

	if (up->closing || hs->c->closing)
		goto out;
	if (status < 0) {
		eh_up_fail(up, status == UV_ECONNREFUSED ? "connect-refused" : "connect-failed",
			   status);
		goto out;
	}
	up->side.stream = (uv_stream_t *)&up->tcp;
	/* A relay: no Nagle wait between the records of one request. */
	(void)uv_tcp_nodelay(&up->tcp, 1);
	if (!hs->tls) {
		up->connected = true;
		eh_up_arm(hs);
		if (egress_proxy_upstream_connected(hs->px) < 0)
			eh_log(hs, LOG_LEVEL_ERROR, "egress_engine_state", "connected", -EINVAL);
		eh_drive(hs);
		goto out;
	}
	/* SNI and verification name the mapped host, not the --connect-to
	 * target: what the policy allowed is what is verified. */
	if ((r = upstream_tls_ssl_new(hs->c->gw->opts.upstream_tls, hs->name, strlen(hs->name),
				      hs->port, &ssl)) < 0 ||
	    (r = eh_side_tls(&up->side, ssl)) < 0) {
		eh_up_fail(up, "tls-failed", r);
		goto out;
	}
	SSL_set_connect_state(ssl);
	eh_drive(hs);
out:
	eh_up_unref(up);
}

static void eh_up_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct eh_up *up = req->data;
	const struct addrinfo *pick = NULL;
	const char *refusal = NULL;
	int r;

	up->gai_pending = false;
	if (up->closing || up->hs->c->closing)
		goto out;
	if (status < 0) {
		eh_up_fail(up, "dns-failed", status);
		goto out;
	}
	for (const struct addrinfo *ai = res; ai && !pick; ai = ai->ai_next) {
		const char *why = up->operator_target ? NULL : upstream_addr_refusal(ai->ai_addr);

		if (!why)
			pick = ai;
		else if (!refusal)
			refusal = why;
	}
	if (!pick) {
		eh_log(up->hs, LOG_LEVEL_WARN, "egress_address_refused",
		       refusal ? refusal : "no address", 0);
		eh_up_fail(up, "address-not-allowed", -EACCES);
		goto out;
	}
	uv_tcp_init(up->hs->c->gw->loop, &up->tcp);
	up->tcp.data = &up->side;
	up->tcp_open = true;
	up->refs++;
	up->creq.data = up;
	if ((r = uv_tcp_connect(&up->creq, &up->tcp, pick->ai_addr, eh_up_on_connect)) < 0) {
		eh_up_fail(up, "connect-failed", r);
		goto out;
	}
	up->refs++;
out:
	uv_freeaddrinfo(res);
	eh_up_unref(up);
}

/* ---- upstream pool ------------------------------------------------------- */

static bool eh_pool_key_eq(const struct eh_up *up, const struct egress_http *hs)
{
	return up->pool_port == hs->port && up->pool_tls == hs->tls &&
	       strcmp(up->pool_name, hs->name) == 0;
}

/* The guest stream is ending: park its upstream if it can serve another
 * request as it is.  true: parked (the stream no longer owns it). */
static bool eh_pool_park(struct egress_http *hs)
{
	struct gw_sandbox *sb = hs->c->sb;
	struct eh_up *up = hs->up;
	const uint8_t *p;
	unsigned same = 0, all = 0;

	if (!up || up->closing || !up->connected || !up->tcp_open || !up->timer_open ||
	    hs->no_reuse || hs->awaiting || hs->tunnel || sb->deleted ||
	    hs->c->gw->shutting_down || up->side.writing || up->side.shut ||
	    up->side.sock_eof || up->side.ended || up->side.in_len > 0 ||
	    (up->side.ssl && (!up->side.handshaken || BIO_pending(up->side.wbio) > 0 ||
			      BIO_pending(up->side.rbio) > 0 || SSL_pending(up->side.ssl) > 0)) ||
	    egress_proxy_upstream_peek(hs->px, &p) > 0)
		return false;
	for (const struct eh_up *q = sb->pool; q; q = q->pool_next, all++)
		same += eh_pool_key_eq(q, hs);
	if (same >= EH_POOL_PER_KEY || all >= EH_POOL_PER_SANDBOX)
		return false;
	snprintf(up->pool_name, sizeof(up->pool_name), "%s", hs->name);
	up->pool_port = hs->port;
	up->pool_tls = hs->tls;
	up->hs = NULL;
	up->side.hs = NULL;
	up->pool_sb = sb;
	up->pooled = true;
	up->pool_next = sb->pool;
	sb->pool = up;
	sb->n_pooled++;
	hs->up = NULL;
	uv_timer_start(&up->timer, eh_up_on_timeout, hs->c->gw->opts.upstream_idle_timeout_ms, 0);
	/* keep reading: a server that closes or talks drops out of the pool */
	if (!up->side.reading && uv_read_start(up->side.stream, eh_on_alloc, eh_on_read) == 0)
		up->side.reading = true;
	eh_log(hs, LOG_LEVEL_DEBUG, "egress_upstream_pooled", NULL, 0);
	/* the stream's reference goes last: it may free the stream */
	up->conn = NULL;
	gw_conn_unref(hs->c);
	return true;
}

/* NEED_UPSTREAM: a parked connection of this sandbox for the same key. */
static bool eh_pool_adopt(struct egress_http *hs)
{
	struct gw_sandbox *sb = hs->c->sb;
	struct eh_up *up = NULL;

	for (struct eh_up **p = &sb->pool; *p; p = &(*p)->pool_next)
		if (eh_pool_key_eq(*p, hs)) {
			up = *p;
			*p = up->pool_next;
			break;
		}
	if (!up)
		return false;
	up->pooled = false;
	up->pool_next = NULL;
	up->pool_sb = NULL;
	sb->n_pooled--; /* the stream's reference keeps sb alive from here */
	up->hs = hs;
	up->side.hs = hs;
	up->conn = hs->c;
	hs->c->refs++;
	hs->up = up;
	eh_log(hs, LOG_LEVEL_DEBUG, "egress_upstream_reused", NULL, 0);
	if (egress_proxy_upstream_connected(hs->px) < 0)
		eh_log(hs, LOG_LEVEL_ERROR, "egress_engine_state", "connected", -EINVAL);
	eh_up_arm(hs);
	hs->again = true;
	return true;
}

void egress_http_pool_flush(struct gw_sandbox *sb)
{
	while (sb->pool)
		eh_up_close(sb->pool); /* unlinks it */
}

/* NEED_UPSTREAM. */
static void eh_up_start(struct egress_http *hs)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP };
	struct gw_conn *c = hs->c;
	struct eh_up *up;
	char service[8];
	int r;

	if (eh_pool_adopt(hs))
		return;
	up = calloc(1, sizeof(*up));
	if (!up) {
		if (egress_proxy_upstream_failed(hs->px, "out-of-memory") < 0)
			gw_conn_close(hs->c, "out of memory");
		return;
	}
	up->hs = hs;
	up->side.hs = hs;
	up->side.up = up;
	up->refs = 1; /* dropped below: the handles and requests hold the rest */
	up->conn = c;
	c->refs++;
	hs->up = up;
	up->operator_target = gw_connect_to(c->gw, hs->name, hs->port, up->target,
					    &up->target_port);
	uv_timer_init(c->gw->loop, &up->timer);
	up->timer.data = up;
	up->timer_open = true;
	up->refs++;
	uv_timer_start(&up->timer, eh_up_on_timeout, c->gw->opts.connect_timeout_ms, 0);
	snprintf(service, sizeof(service), "%u", up->target_port);
	up->gai.data = up;
	r = uv_getaddrinfo(c->gw->loop, &up->gai, eh_up_on_resolved, up->target, service, &hints);
	if (r < 0) {
		eh_side_fail(&up->side, "dns-failed", r);
	} else {
		up->gai_pending = true;
		up->refs++;
	}
	eh_up_unref(up);
}

/* ---- audit completions (loop) -------------------------------------------- */

static int64_t eh_audit_elapsed_us(const struct egress_http *hs)
{
	return (int64_t)((uv_hrtime() - hs->audit_start_ns) / 1000);
}

/* REQUEST_DONE: complete the exchange's row, or keep it for a tunnel. */
static void eh_audit_exchange_done(struct egress_http *hs, const struct egress_proxy_exchange *x)
{
	if (!hs->audit_row)
		return;
	if (x->status == 101) {
		hs->audit_tunnel = true;
		hs->audit_up = x->up_body;
		hs->audit_down = x->down_body;
		return;
	}
	/* Content bytes (framing and heads excluded): what the request and
	 * the response carried, comparable across HTTP/1.1 framings. */
	egress_verdict_submit_completion(hs->c->gw, hs->audit_row, x->status, x->up_body,
					 x->down_body, eh_audit_elapsed_us(hs));
	free(hs->audit_row);
	hs->audit_row = NULL;
}

/* The stream ends: a tunnel's row gets its relayed bytes; an exchange cut
 * short (guest gone, stream closed) what went through, status 0. */
static void eh_audit_stream_end(struct egress_http *hs)
{
	struct egress_proxy_stats st = { 0 };
	uint64_t up, down;

	if (!hs->audit_row)
		return;
	if (hs->px)
		egress_proxy_get_stats(hs->px, &st);
	if (hs->audit_tunnel) {
		up = hs->audit_up + st.tunnel_up;
		down = hs->audit_down + st.tunnel_down;
	} else {
		up = st.up_bytes - hs->audit_base.up_bytes;
		down = st.down_bytes - hs->audit_base.down_bytes;
	}
	egress_verdict_submit_completion(hs->c->gw, hs->audit_row, hs->audit_tunnel ? 101 : 0,
					 up, down, eh_audit_elapsed_us(hs));
	free(hs->audit_row);
	hs->audit_row = NULL;
}

/* A written row (id set): from now on this exchange owes a completion. */
static void eh_audit_take_row(struct egress_http *hs, struct gw_verdict *v)
{
	if (!v->row || v->row->id <= 0)
		return;
	free(hs->audit_row);
	hs->audit_row = v->row;
	hs->audit_tunnel = false;
	v->row = NULL;
}

/* ---- verdicts (worker) --------------------------------------------------- */

static void eh_verdict_work(uv_work_t *w)
{
	struct eh_verdict_job *job = w->data;

	egress_verdict_run(job->c->gw, &job->v);
}

static void eh_deny(struct egress_http *hs, uint16_t status, const char *name,
		    const char *value, const char *body)
{
	if (egress_proxy_deny(hs->px, status, name, value, body, NULL) < 0)
		gw_conn_close(hs->c, "cannot answer the guest");
}

static void eh_verdict_done(uv_work_t *w, int status)
{
	struct eh_verdict_job *job = w->data;
	struct gw_conn *c = job->c;
	struct egress_http *hs = c->http;
	struct gw_verdict *v = &job->v;
	char body[EGRESS_PROXY_BODY_MAX + 1];
	int r;

	hs->verdict_pending = false;
	if (c->closing) {
		eh_audit_take_row(hs, v);
		eh_audit_stream_end(hs); /* the guest went away before the answer */
		goto out;
	}
	if (status < 0 || v->r < 0) {
		eh_log(hs, LOG_LEVEL_ERROR, "egress_verdict_failed", NULL, status < 0 ? status : v->r);
		eh_deny(hs, 500, "MIOSA-Egress-Error", "internal-error",
			"miosa: the broker could not decide on this request");
	} else if (!v->allow) {
		snprintf(body, sizeof(body),
			 "miosa: egress to %s is not allowed; allow it with: miosactl network allow %s %s",
			 hs->name, c->sb->id, hs->name);
		eh_log(hs, LOG_LEVEL_INFO, "egress_denied", v->rule, 0);
		eh_deny(hs, 403, "MIOSA-Egress-Deny", "host-not-allowed", body);
	} else if (v->audit_failed) {
		eh_deny(hs, 503, "MIOSA-Audit-Error", "unavailable",
			"miosa: the request could not be audited, so it was not sent");
	} else if ((r = egress_proxy_forward(hs->px, v->swap->head, v->swap->head_len, NULL)) < 0) {
		eh_log(hs, LOG_LEVEL_ERROR, "egress_forward_refused", NULL, r);
		eh_deny(hs, 500, "MIOSA-Request-Error", "rewrite-refused",
			"miosa: the rewritten request was refused");
	} else {
		struct log_line l;

		hs->awaiting = true;
		eh_up_arm(hs);
		if (log_begin(&l, LOG_LEVEL_INFO, "egress_request")) {
			log_str(&l, "sandbox", c->sb->id);
			log_str(&l, "host", hs->name);
			log_uint(&l, "port", hs->port);
			log_str(&l, "method", v->row->method);
			log_uint(&l, "swapped", v->swap->n_swapped);
			log_uint(&l, "flagged", v->swap->flagged.n);
			log_end(&l);
		}
	}
	eh_audit_take_row(hs, v);
	/* forward() copied the head: wipe the swapped values now. */
	egress_verdict_clear(v);
	eh_drive(hs);
out:
	egress_verdict_clear(v);
	free(job);
	gw_conn_unref(c);
}

static void eh_on_request_head(struct egress_http *hs, const struct egress_proxy_event *ev)
{
	struct gw_conn *c = hs->c;
	struct eh_verdict_job *job = calloc(1, sizeof(*job));
	int r;

	if (!job) {
		eh_deny(hs, 500, "MIOSA-Egress-Error", "internal-error", NULL);
		return;
	}
	job->c = c;
	snprintf(job->v.sandbox_id, sizeof(job->v.sandbox_id), "%s", c->sb->id);
	snprintf(job->v.host, sizeof(job->v.host), "%s", hs->name);
	job->v.port = hs->port;
	job->v.scheme = hs->tls ? STORE_AUDIT_HTTPS : STORE_AUDIT_HTTP;
	job->v.head = ev->head;
	job->v.head_bytes = ev->head_bytes;
	job->v.audit_allow_now = true;
	job->work.data = job;
	hs->audit_start_ns = uv_hrtime();
	egress_proxy_get_stats(hs->px, &hs->audit_base);
	if ((r = uv_queue_work(c->gw->loop, &job->work, eh_verdict_work, eh_verdict_done)) < 0) {
		free(job);
		eh_deny(hs, 500, "MIOSA-Egress-Error", "internal-error", NULL);
		return;
	}
	c->refs++;
	hs->verdict_pending = true;
}

/* ---- the drive step ------------------------------------------------------ */

static void eh_on_event(struct egress_http *hs, const struct egress_proxy_event *ev)
{
	struct log_line l;

	switch (ev->type) {
	case EGRESS_PROXY_EV_REQUEST_HEAD:
		eh_on_request_head(hs, ev);
		break;
	case EGRESS_PROXY_EV_NEED_UPSTREAM:
		eh_up_start(hs);
		break;
	case EGRESS_PROXY_EV_REQUEST_DONE:
		hs->awaiting = false;
		eh_up_arm(hs);
		eh_audit_exchange_done(hs, ev->exchange);
		if (log_begin(&l, LOG_LEVEL_DEBUG, "egress_exchange_done")) {
			log_str(&l, "sandbox", hs->c->sb->id);
			log_str(&l, "host", hs->name);
			log_uint(&l, "status", ev->exchange->status);
			log_uint(&l, "bytes_up", ev->exchange->up_total);
			log_uint(&l, "bytes_down", ev->exchange->down_total);
			log_end(&l);
		}
		break;
	case EGRESS_PROXY_EV_SHUTDOWN_UPSTREAM:
		if (hs->up && hs->up->connected)
			eh_side_shutdown(&hs->up->side);
		break;
	case EGRESS_PROXY_EV_SHUTDOWN_GUEST:
		eh_side_shutdown(&hs->guest);
		break;
	case EGRESS_PROXY_EV_UPSTREAM_CLOSE:
		if (hs->up)
			eh_up_close(hs->up);
		break;
	case EGRESS_PROXY_EV_CLOSE:
		/* Only a guest that went away leaves the upstream reusable; any
		 * other reason (Connection: close, errors) does not. */
		if (ev->reason != EGRESS_PROXY_CLOSE_GUEST_EOF)
			hs->no_reuse = true;
		hs->close_pending = true;
		break;
	case EGRESS_PROXY_EV_TUNNEL:
		hs->tunnel = true;
		eh_up_arm(hs);
		break;
	case EGRESS_PROXY_EV_RESPONSE_HEAD:
		break;
	}
}

/* Feed a side's plaintext to the engine; tell it about the end once. */
static void eh_side_feed(struct egress_http *hs, struct eh_side *s)
{
	size_t used = 0;
	int r;

	if (s->in_len > 0) {
		r = s->up ? egress_proxy_from_upstream(hs->px, s->in, s->in_len, &used)
			  : egress_proxy_from_guest(hs->px, s->in, s->in_len, &used);
		if (r < 0) {
			gw_conn_close(hs->c, "engine refused input");
			return;
		}
		if (used > 0) {
			memmove(s->in, s->in + used, s->in_len - used);
			s->in_len -= used;
			hs->again = true;
		}
	}
	if (s->ended && s->in_len == 0 && !s->eof_given) {
		s->eof_given = true;
		hs->again = true;
		if (s->up)
			egress_proxy_upstream_eof(hs->px);
		else
			egress_proxy_guest_eof(hs->px);
	}
}

static void eh_side_step(struct egress_http *hs, struct eh_side *s)
{
	if (s->ssl)
		eh_side_pump_tls(s);
	else
		eh_side_pump_plain(s);
	if (hs->c->closing)
		return;
	if (!s->ssl || s->handshaken)
		eh_side_feed(hs, s);
}

static void eh_drive(struct egress_http *hs)
{
	struct gw_conn *c = hs->c;
	struct egress_proxy_event ev;

	if (hs->driving) {
		hs->again = true;
		return;
	}
	hs->driving = true;
	do {
		hs->again = false;
		if (!hs->guest.stream)
			break; /* TLS: waiting for the sandbox's leaf_mint */
		eh_side_step(hs, &hs->guest);
		if (c->closing)
			break;
		if (hs->up && hs->up->side.stream && !hs->up->closing)
			eh_side_step(hs, &hs->up->side);
		while (!c->closing && egress_proxy_next_event(hs->px, &ev))
			eh_on_event(hs, &ev);
		if (c->closing)
			break;
		eh_side_flush(&hs->guest);
		if (hs->up && hs->up->side.stream && !hs->up->closing)
			eh_side_flush(&hs->up->side);
		if (c->closing)
			break;
		if (hs->close_pending && eh_side_idle_out(&hs->guest)) {
			gw_conn_close(c, NULL);
			break;
		}
		eh_side_update_reading(&hs->guest);
		if (hs->up && hs->up->side.stream && !hs->up->closing)
			eh_side_update_reading(&hs->up->side);
	} while (hs->again && !c->closing);
	hs->driving = false;
}

/* ---- start: engine, then (TLS) the sandbox's leaf_mint ------------------- */

static void eh_start_guest(struct egress_http *hs)
{
	struct gw_conn *c = hs->c;
	SSL *ssl;
	int r;

	if (hs->tls) {
		if ((r = leaf_mint_ssl_new(c->sb->lm, hs->name, strlen(hs->name), &ssl)) < 0 ||
		    (r = eh_side_tls(&hs->guest, ssl)) < 0) {
			eh_log(hs, LOG_LEVEL_ERROR, "egress_tls_setup_failed", NULL, r);
			gw_conn_close(c, NULL);
			return;
		}
		SSL_set_accept_state(ssl);
		if (hs->pending_len > 0 &&
		    BIO_write(hs->guest.rbio, hs->pending, (int)hs->pending_len) != (int)hs->pending_len) {
			gw_conn_close(c, "out of memory");
			return;
		}
		hs->pending_off = hs->pending_len;
	}
	hs->guest.stream = &c->h.stream;
	eh_drive(hs);
}

static void eh_ca_work(uv_work_t *w)
{
	struct eh_ca_job *job = w->data;
	struct gw_worker_ctx *ctx;

	if ((job->r = gw_worker_ctx_get(job->c->gw, &ctx)) < 0)
		return;
	if ((job->r = tenancy_sandbox_ca_load(ctx->tenancy, NULL, job->sandbox_id, &job->ca)) < 0)
		return;
	if ((job->r = leaf_mint_new(job->ca, NULL, &job->lm)) < 0) {
		mitm_ca_free(job->ca);
		job->ca = NULL;
	}
}

static void eh_ca_done(uv_work_t *w, int status)
{
	struct eh_ca_job *job = w->data;
	struct gw_conn *c = job->c;
	struct gw_sandbox *sb = c->sb;

	if (job->lm && !sb->lm) {
		sb->lm = job->lm;
		sb->ca = job->ca;
	} else {
		leaf_mint_free(job->lm);
		mitm_ca_free(job->ca);
	}
	if (!c->closing) {
		if (sb->lm)
			eh_start_guest(c->http);
		else {
			eh_log(c->http, LOG_LEVEL_ERROR, "egress_ca_load_failed", NULL,
			       status < 0 ? status : job->r);
			gw_conn_close(c, NULL);
		}
	}
	free(job);
	gw_conn_unref(c);
}

void egress_http_start(struct gw_conn *c, const char *name, uint16_t port, bool tls,
		       const uint8_t *pending, size_t pending_len)
{
	struct http1_limits limits;
	struct egress_proxy_config cfg = {
		.limits = &limits,
		.dest_host = name,
		.dest_port = port,
		.scheme = tls ? EGRESS_PROXY_HTTPS : EGRESS_PROXY_HTTP,
		.queue_max = EH_QUEUE_MAX,
	};
	struct egress_http *hs;
	struct eh_ca_job *job;
	int r;

	http1_limits_default(&limits);
	limits.max_head = EH_HEAD_MAX;
	hs = calloc(1, sizeof(*hs));
	if (!hs || (pending_len && !(hs->pending = malloc(pending_len)))) {
		free(hs);
		gw_conn_close(c, "out of memory");
		return;
	}
	c->http = hs;
	hs->c = c;
	hs->guest.hs = hs;
	snprintf(hs->name, sizeof(hs->name), "%s", name);
	hs->port = port;
	hs->tls = tls;
	if (pending_len)
		memcpy(hs->pending, pending, pending_len);
	hs->pending_len = pending_len;
	frame_decoder_free(c->dec);
	c->dec = NULL;
	free(c->rbuf);
	c->rbuf = NULL;
	if ((r = egress_proxy_new(&cfg, &hs->px)) < 0) {
		eh_log(hs, LOG_LEVEL_ERROR, "egress_proxy_failed", NULL, r);
		gw_conn_close(c, NULL);
		return;
	}
	if (!tls || c->sb->lm) {
		eh_start_guest(hs);
		return;
	}
	if (!(job = calloc(1, sizeof(*job)))) {
		gw_conn_close(c, "out of memory");
		return;
	}
	job->c = c;
	snprintf(job->sandbox_id, sizeof(job->sandbox_id), "%s", c->sb->id);
	job->work.data = job;
	if ((r = uv_queue_work(c->gw->loop, &job->work, eh_ca_work, eh_ca_done)) < 0) {
		free(job);
		gw_conn_close(c, "cannot queue the CA load");
		return;
	}
	c->refs++;
}

void egress_http_close(struct gw_conn *c)
{
	struct egress_http *hs = c->http;

	if (hs)
		eh_audit_stream_end(hs);
	if (hs && hs->up && !eh_pool_park(hs))
		eh_up_close(hs->up);
}

void egress_http_free(struct gw_conn *c)
{
	struct egress_http *hs = c->http;

	if (!hs)
		return;
	free(hs->audit_row); /* completed in egress_http_close() */
	egress_proxy_free(hs->px);
	SSL_free(hs->guest.ssl);
	free(hs->guest.cipher);
	free(hs->pending);
	sodium_memzero(hs, sizeof(*hs));
	free(hs);
	c->http = NULL;
}
