#include "dns_stub.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "agent_log.h"
#include "atomic_file.h"
#include "broker_open.h"
#include "dns_query.h"
#include "wire.h"

#define M "dns"
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define TCP_LEN_SIZE 2u
/* UDP datagrams are read whole into this (the largest a datagram can be),
 * so an over-long query is seen as such instead of being cut. */
#define UDP_READ_SIZE 65536u

struct dns_tcp;

struct dns_job {
	struct dns_stub *stub;
	LIST_ENTRY(dns_job) link;
	TAILQ_ENTRY(dns_job) wait;    /* in stub->waiting while queued */
	struct dns_query q;
	uint8_t query[DNS_QUERY_MAX];
	size_t len;
	struct sockaddr_storage peer; /* UDP client */
	struct dns_tcp *tcp;          /* TCP client; NULL for UDP or once it closed */
	bool from_tcp;
	uv_pipe_t pipe;
	struct broker_open op;
	uv_timer_t timer;
	unsigned handles;
	bool queued;  /* waiting for an in-flight slot */
	bool opened;  /* its broker stream (pipe) exists */
	bool done;
};

struct dns_tcp {
	struct dns_stub *stub;
	LIST_ENTRY(dns_tcp) link;
	uv_tcp_t handle;
	uv_timer_t idle;
	unsigned handles;
	bool closing;
	bool reading;        /* uv_read_start() in effect (a second one is UV_EALREADY) */
	struct dns_job *job; /* the query in flight, if any */
	size_t have;
	uint8_t buf[TCP_LEN_SIZE + DNS_QUERY_MAX];
};

struct dns_stub {
	uv_loop_t *loop;
	struct transport_spec transport;
	uv_udp_t udp;
	uv_tcp_t listener;
	unsigned handles; /* udp + listener still open */
	bool closing;
	unsigned n_jobs;  /* in flight + queued */
	unsigned n_open;  /* in flight: a broker stream each */
	unsigned n_tcp;
	LIST_HEAD(, dns_job) jobs;
	TAILQ_HEAD(, dns_job) waiting;
	LIST_HEAD(, dns_tcp) tcps;
};

static uint8_t udp_buffer[UDP_READ_SIZE];

static void stub_free_if_done(struct dns_stub *s)
{
	if (s->closing && s->handles == 0 && s->n_jobs == 0 && s->n_tcp == 0)
		free(s);
}

static void tcp_reply(struct dns_tcp *t, const uint8_t *pkt, size_t len);
static void tcp_query_done(struct dns_tcp *t);

/* --- Replies ------------------------------------------------------------------ */

static void udp_reply(struct dns_stub *s, const struct sockaddr_storage *peer, const uint8_t *pkt,
		      size_t len)
{
	uv_buf_t buf = uv_buf_init((char *)pkt, (unsigned)len);
	int r;

	/* loopback UDP does not queue: if the socket buffer is full the
	 * client retries, as it would after any lost datagram */
	r = uv_udp_try_send(&s->udp, &buf, 1, (const struct sockaddr *)peer);
	if (r < 0)
		agent_log_debug(M, "UDP reply dropped: %s", uv_strerror(r));
}

/* A reply the stub builds itself (rcode, or TC for an over-long answer). */
static void reply_local(struct dns_stub *s, const struct sockaddr_storage *peer,
			struct dns_tcp *tcp, const uint8_t *pkt, size_t len,
			const struct dns_query *q, uint8_t rcode, bool truncated)
{
	uint8_t out[DNS_QUERY_MAX + 16];
	size_t out_len;

	if (dns_reply_local(pkt, len, q, rcode, truncated, out, sizeof(out), &out_len) < 0)
		return; /* cannot happen: pkt has a header and out fits any question */
	if (tcp)
		tcp_reply(tcp, out, out_len);
	else
		udp_reply(s, peer, out, out_len);
}

/* --- Jobs: one forwarded query --------------------------------------------------- */

static void job_release(struct dns_job *j)
{
	struct dns_stub *s = j->stub;

	if (--j->handles > 0)
		return;
	LIST_REMOVE(j, link);
	s->n_jobs--;
	free(j);
	stub_free_if_done(s);
}

/* pipe->data belongs to broker_open: find the job by address instead */
static void job_pipe_closed(uv_handle_t *handle)
{
	job_release(container_of(handle, struct dns_job, pipe));
}

static void job_timer_closed(uv_handle_t *handle)
{
	job_release(container_of(handle, struct dns_job, timer));
}

static int job_open(struct dns_job *j);
static void job_finish(struct dns_job *j, const uint8_t *answer, size_t len);

/* A slot came free: the oldest queued queries go to the broker. */
static void stub_open_queued(struct dns_stub *s)
{
	struct dns_job *j;
	int r;

	while (!s->closing && s->n_open < DNS_STUB_JOBS_MAX && (j = TAILQ_FIRST(&s->waiting))) {
		TAILQ_REMOVE(&s->waiting, j, wait);
		j->queued = false;
		if ((r = job_open(j)) < 0) {
			agent_log_warn(M, "%s: cannot forward: %s, answering SERVFAIL", j->q.name,
				       strerror(-r));
			job_finish(j, NULL, 0);
		}
	}
}

/* Answers the client (answer, or SERVFAIL when NULL) and releases the job. */
static void job_finish(struct dns_job *j, const uint8_t *answer, size_t len)
{
	struct dns_tcp *tcp = j->tcp;

	if (j->done)
		return;
	j->done = true;
	if (j->queued) {
		TAILQ_REMOVE(&j->stub->waiting, j, wait);
		j->queued = false;
	}
	if (j->opened) {
		broker_open_cancel(&j->op);
		uv_close((uv_handle_t *)&j->pipe, job_pipe_closed);
		j->stub->n_open--;
	}
	uv_close((uv_handle_t *)&j->timer, job_timer_closed);
	stub_open_queued(j->stub);
	if (j->stub->closing || (j->from_tcp && !tcp))
		return; /* nobody left to answer */
	if (tcp) {
		tcp->job = NULL;
		if (answer)
			tcp_reply(tcp, answer, len);
		else
			reply_local(j->stub, NULL, tcp, j->query, j->len, &j->q, DNS_RCODE_SERVFAIL, false);
		tcp_query_done(tcp);
	} else if (!answer) {
		reply_local(j->stub, &j->peer, NULL, j->query, j->len, &j->q, DNS_RCODE_SERVFAIL, false);
	} else if (len > j->q.udp_size) {
		reply_local(j->stub, &j->peer, NULL, j->query, j->len, &j->q, DNS_RCODE_NOERROR, true);
	} else {
		udp_reply(j->stub, &j->peer, answer, len);
	}
}

static void job_answered(struct broker_open *op, int status, const struct frame *f,
			 const uint8_t *rest, size_t rest_len)
{
	struct dns_job *j = op->data;
	Miosa__DnsAnswer *a = NULL;
	struct wire_error e = { 0 };
	int r;

	(void)rest;
	(void)rest_len; /* the broker closes after its answer: nothing follows */
	if (status < 0) {
		agent_log_warn(M, "%s: broker stream failed: %s, answering SERVFAIL", j->q.name,
			       status == -EMSGSIZE ? frame_strerror(status) : uv_strerror(status));
		job_finish(j, NULL, 0);
		return;
	}
	if ((r = wire_decode_dns_answer(f->payload, f->len, &a, &e)) < 0) {
		agent_log_warn(M, "%s: bad answer frame: %s.%s: %s, answering SERVFAIL", j->q.name,
			       e.message, e.field, e.reason);
		job_finish(j, NULL, 0);
		return;
	}
	if (dns_answer_check(a->packet.data, a->packet.len, &j->q) < 0) {
		agent_log_warn(M, "%s: answer ID or QR does not match the query, answering SERVFAIL",
			       j->q.name);
		job_finish(j, NULL, 0);
	} else {
		agent_log_debug(M, "%s type %u: answered (%zu bytes)", j->q.name, j->q.qtype,
				a->packet.len);
		job_finish(j, a->packet.data, a->packet.len);
	}
	wire_free_dns_answer(a);
}

static void job_timeout(uv_timer_t *timer)
{
	struct dns_job *j = timer->data;

	agent_log_warn(M, "%s: no answer from the broker in %u ms, answering SERVFAIL", j->q.name,
		       DNS_STUB_TIMEOUT_MS);
	job_finish(j, NULL, 0);
}

static int job_open(struct dns_job *j)
{
	Miosa__GuestOpen open = MIOSA__GUEST_OPEN__INIT;
	Miosa__DnsQuery dq = MIOSA__DNS_QUERY__INIT;
	int r;

	dq.packet.data = j->query;
	dq.packet.len = j->len;
	open.kind_case = MIOSA__GUEST_OPEN__KIND_DNS;
	open.dns = &dq;
	j->op.data = j;
	if ((r = broker_open_start(&j->op, j->stub->loop, &j->stub->transport, &j->pipe, &open,
				   job_answered)) < 0)
		return r;
	j->handles++;
	j->opened = true;
	j->stub->n_open++;
	return 0;
}

/* Forwards a parsed query; 0, or negative when the client must get SERVFAIL. */
static int job_start(struct dns_stub *s, const uint8_t *pkt, size_t len,
		     const struct dns_query *q, const struct sockaddr_storage *peer,
		     struct dns_tcp *tcp)
{
	struct dns_job *j;
	int r;

	if (s->n_jobs >= DNS_STUB_JOBS_MAX + DNS_STUB_QUEUE_MAX)
		return -EBUSY;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	*j = (struct dns_job){ .stub = s, .q = *q, .len = len, .tcp = tcp, .from_tcp = tcp != NULL };
	memcpy(j->query, pkt, len);
	if (peer)
		j->peer = *peer;
	/* A burst (a test runner starting 200 clients) waits its turn instead of
	 * getting SERVFAIL; its timeout runs from arrival all the same. */
	if (s->n_open >= DNS_STUB_JOBS_MAX) {
		TAILQ_INSERT_TAIL(&s->waiting, j, wait);
		j->queued = true;
	} else if ((r = job_open(j)) < 0) {
		free(j);
		return r;
	}
	uv_timer_init(s->loop, &j->timer);
	j->timer.data = j;
	j->handles++;
	uv_timer_start(&j->timer, job_timeout, DNS_STUB_TIMEOUT_MS, 0);
	LIST_INSERT_HEAD(&s->jobs, j, link);
	s->n_jobs++;
	if (tcp)
		tcp->job = j;
	return 0;
}

/* --- Queries from either transport ------------------------------------------------- */

/*
 * 1: forwarded, the answer comes later; 0: answered here; -1: drop it (a
 * TCP client is then disconnected: its stream is out of step).
 */
static int handle_query(struct dns_stub *s, const uint8_t *pkt, size_t len,
			const struct sockaddr_storage *peer, struct dns_tcp *tcp)
{
	struct dns_query q;
	int r, rcode;

	if ((r = dns_query_parse(pkt, len, &q)) < 0) {
		rcode = dns_query_rcode(r);
		agent_log_info(M, "query %s: %s", rcode < 0 ? "dropped" : "answered locally",
			       dns_query_strerror(r));
		if (rcode < 0)
			return -1;
		reply_local(s, peer, tcp, pkt, len, NULL, (uint8_t)rcode, false);
		return 0;
	}
	agent_log_debug(M, "%s type %u: forwarding", q.name, q.qtype);
	if ((r = job_start(s, pkt, len, &q, peer, tcp)) < 0) {
		agent_log_warn(M, "%s: cannot forward: %s, answering SERVFAIL", q.name,
			       r == -EBUSY ? "too many queries in flight" : strerror(-r));
		reply_local(s, peer, tcp, pkt, len, &q, DNS_RCODE_SERVFAIL, false);
		return 0;
	}
	return 1;
}

/* --- UDP ---------------------------------------------------------------------------- */

static void udp_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	(void)handle;
	(void)suggested;
	/* consumed by udp_read before libuv asks again */
	*buf = uv_buf_init((char *)udp_buffer, sizeof(udp_buffer));
}

static void udp_read(uv_udp_t *udp, ssize_t nread, const uv_buf_t *buf,
		     const struct sockaddr *addr, unsigned flags)
{
	struct dns_stub *s = udp->data;
	struct sockaddr_storage peer = { 0 };

	(void)flags; /* a cut datagram is 64 KiB long: "longer than 1232" */
	if (nread < 0)
		agent_log_debug(M, "UDP receive failed: %s", uv_strerror((int)nread));
	if (nread <= 0 || !addr || s->closing)
		return;
	memcpy(&peer, addr, addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
							: sizeof(struct sockaddr_in));
	(void)handle_query(s, (const uint8_t *)buf->base, (size_t)nread, &peer, NULL);
}

/* --- TCP (RFC 1035 section 4.2.2: two-byte length, then the message) -------------- */

struct tcp_write {
	uv_write_t req;
	uint8_t data[];
};

static void tcp_released(uv_handle_t *handle)
{
	struct dns_tcp *t = handle->data;
	struct dns_stub *s = t->stub;

	if (--t->handles > 0)
		return;
	LIST_REMOVE(t, link);
	s->n_tcp--;
	free(t);
	stub_free_if_done(s);
}

static void tcp_close(struct dns_tcp *t)
{
	if (t->closing)
		return;
	t->closing = true;
	if (t->job)
		t->job->tcp = NULL; /* its answer has nowhere to go */
	t->job = NULL;
	uv_close((uv_handle_t *)&t->handle, tcp_released);
	uv_close((uv_handle_t *)&t->idle, tcp_released);
}

static void tcp_written(uv_write_t *req, int status)
{
	(void)status; /* a client that went away: its loss */
	free(req);
}

static void tcp_reply(struct dns_tcp *t, const uint8_t *pkt, size_t len)
{
	struct tcp_write *w;
	uv_buf_t buf;

	if (t->closing || len > UINT16_MAX)
		return;
	w = malloc(sizeof(*w) + TCP_LEN_SIZE + len);
	if (!w) {
		tcp_close(t);
		return;
	}
	w->data[0] = (uint8_t)(len >> 8);
	w->data[1] = (uint8_t)len;
	memcpy(w->data + TCP_LEN_SIZE, pkt, len);
	buf = uv_buf_init((char *)w->data, (unsigned)(TCP_LEN_SIZE + len));
	if (uv_write(&w->req, (uv_stream_t *)&t->handle, &buf, 1, tcp_written) < 0) {
		free(w);
		tcp_close(t);
	}
}

static void tcp_shut(uv_shutdown_t *req, int status)
{
	struct dns_tcp *t = req->handle->data;

	(void)status;
	free(req);
	tcp_close(t);
}

/* The client finished sending: flush our replies, then close. */
static void tcp_finish(struct dns_tcp *t)
{
	uv_shutdown_t *req = malloc(sizeof(*req));

	if (t->closing)
		return;
	if (!req || uv_shutdown(req, (uv_stream_t *)&t->handle, tcp_shut) < 0) {
		free(req);
		tcp_close(t);
	}
}

static void tcp_idle(uv_timer_t *timer)
{
	tcp_close(timer->data);
}

static void tcp_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	struct dns_tcp *t = handle->data;

	(void)suggested;
	/* never full while reading: tcp_process stops reading first */
	*buf = uv_buf_init((char *)t->buf + t->have, (unsigned)(sizeof(t->buf) - t->have));
}

static void tcp_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* Handles every whole message in the buffer, one forwarded query at a time. */
static void tcp_process(struct dns_tcp *t)
{
	while (!t->closing && !t->job && t->have >= TCP_LEN_SIZE) {
		size_t n = (size_t)t->buf[0] << 8 | t->buf[1];
		int r;

		if (n > DNS_QUERY_MAX) {
			agent_log_info(M, "TCP query of %zu bytes: longer than %u, closing", n,
				       DNS_QUERY_MAX);
			tcp_close(t);
			return;
		}
		if (t->have < TCP_LEN_SIZE + n)
			break;
		r = handle_query(t->stub, t->buf + TCP_LEN_SIZE, n, NULL, t);
		if (r < 0) {
			tcp_close(t);
			return;
		}
		/* the job holds its own copy: the bytes can go */
		t->have -= TCP_LEN_SIZE + n;
		memmove(t->buf, t->buf + TCP_LEN_SIZE + n, t->have);
		uv_timer_again(&t->idle);
	}
	if (t->closing || t->reading == !t->job)
		return;
	t->reading = !t->job;
	if (t->job)
		uv_read_stop((uv_stream_t *)&t->handle);
	else if (uv_read_start((uv_stream_t *)&t->handle, tcp_alloc, tcp_read) < 0)
		tcp_close(t);
}

/* The forwarded query of t was answered (job_finish). */
static void tcp_query_done(struct dns_tcp *t)
{
	tcp_process(t);
}

static void tcp_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct dns_tcp *t = stream->data;

	(void)buf;
	if (nread == UV_EOF) {
		t->reading = false; /* libuv stopped reading at EOF */
		tcp_finish(t);
		return;
	}
	if (nread < 0) {
		tcp_close(t);
		return;
	}
	t->have += (size_t)nread;
	tcp_process(t);
}

static int tcp_accept(struct dns_stub *s, struct dns_tcp *t)
{
	int r;

	t->stub = s;
	uv_tcp_init(s->loop, &t->handle);
	uv_timer_init(s->loop, &t->idle);
	t->handle.data = t->idle.data = t;
	t->handles = 2;
	LIST_INSERT_HEAD(&s->tcps, t, link);
	s->n_tcp++;
	if ((r = uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&t->handle)) < 0)
		return r;
	if (s->n_tcp > DNS_STUB_TCP_MAX)
		return -EBUSY;
	uv_timer_start(&t->idle, tcp_idle, DNS_STUB_TCP_IDLE_MS, DNS_STUB_TCP_IDLE_MS);
	if ((r = uv_read_start((uv_stream_t *)&t->handle, tcp_alloc, tcp_read)) < 0)
		return r;
	t->reading = true;
	return 0;
}

static void tcp_connection(uv_stream_t *listener, int status)
{
	struct dns_stub *s = listener->data;
	struct dns_tcp *t;
	int r;

	if (status < 0 || s->closing)
		return;
	t = calloc(1, sizeof(*t));
	if (!t)
		return; /* the connection waits in the backlog for the next one */
	if ((r = tcp_accept(s, t)) < 0) {
		agent_log_warn(M, "TCP client refused: %s",
			       r == -EBUSY ? "too many TCP clients" : uv_strerror(r));
		tcp_close(t);
	}
}

/* --- Life cycle ------------------------------------------------------------------------ */

static void stub_handle_closed(uv_handle_t *handle)
{
	struct dns_stub *s = handle->data;

	s->handles--;
	stub_free_if_done(s);
}

static int stub_bind(struct dns_stub *s, const struct sockaddr_in *addr)
{
	int r;

	if ((r = uv_udp_bind(&s->udp, (const struct sockaddr *)addr, 0)) < 0 ||
	    (r = uv_udp_recv_start(&s->udp, udp_alloc, udp_read)) < 0 ||
	    (r = uv_tcp_bind(&s->listener, (const struct sockaddr *)addr, 0)) < 0 ||
	    (r = uv_listen((uv_stream_t *)&s->listener, 64, tcp_connection)) < 0)
		return r;
	return 0;
}

int dns_stub_start(uv_loop_t *loop, const struct transport_spec *transport,
		   const struct sockaddr_in *addr, struct dns_stub **ret_stub)
{
	struct dns_stub *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->transport = *transport;
	LIST_INIT(&s->jobs);
	TAILQ_INIT(&s->waiting);
	LIST_INIT(&s->tcps);
	uv_udp_init(loop, &s->udp);
	uv_tcp_init(loop, &s->listener);
	s->udp.data = s->listener.data = s;
	s->handles = 2;
	if ((r = stub_bind(s, addr)) < 0) {
		dns_stub_close(s);
		return r;
	}
	*ret_stub = s;
	return 0;
}

void dns_stub_close(struct dns_stub *s)
{
	struct dns_job *j, *jn;
	struct dns_tcp *t, *tn;

	if (!s || s->closing)
		return;
	s->closing = true;
	uv_close((uv_handle_t *)&s->udp, stub_handle_closed);
	uv_close((uv_handle_t *)&s->listener, stub_handle_closed);
	/* closing removes nothing from the lists until the close callbacks */
	for (t = LIST_FIRST(&s->tcps); t; t = tn) {
		tn = LIST_NEXT(t, link);
		tcp_close(t);
	}
	for (j = LIST_FIRST(&s->jobs); j; j = jn) {
		jn = LIST_NEXT(j, link);
		job_finish(j, NULL, 0);
	}
}

/* --- resolv.conf ---------------------------------------------------------------------- */

int dns_stub_write_resolv_conf(const char *path, bool replace_symlink)
{
	static const char text[] =
		"# Written by miosa-init: every name is resolved by the sandbox broker\n"
		"# through the agent's DNS stub.\n"
		"nameserver 127.0.0.1\n";
	int fd, r;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0 && errno == ELOOP && replace_symlink) {
		if (unlink(path) < 0)
			return -errno;
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	}
	if (fd < 0)
		return -errno;
	r = atomic_file_write_all(fd, text, sizeof(text) - 1);
	if (close(fd) < 0 && r == 0)
		r = -errno;
	return r;
}
