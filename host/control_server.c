#include "control_server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "audit.h"
#include "control_api.h"
#include "http1.h"
#include "log.h"
#include "uds_path.h"

#define CS_BUF_SIZE ((size_t)CONTROL_SERVER_HEAD_MAX + CONTROL_API_MAX_BODY)
#define CS_BACKLOG 128
#define CS_LINGER_MS 2000               /* drain time after an early error response */
#define CS_LINGER_MAX ((size_t)1 << 20) /* bytes drained before giving up */
#define CS_RESP_HEAD_MAX 512
#define CS_TAIL_BATCH 64                /* rows per chunk at most */

#define cs_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

_Static_assert(CONTROL_SERVER_HEAD_MAX <= HTTP1_HEAD_CAP, "head cap within the codec's");
_Static_assert(CONTROL_SERVER_HEADERS_MAX <= HTTP1_HEADERS_CAP, "header cap within the codec's");

/*
 * Where a connection is.  READING: collecting a request (the only state
 * that reads; the idle timer runs in every state but this one).  WORKING: the
 * request is on a worker thread, which reads c->req (pointing into c->buf)
 * and writes c->resp; the loop touches neither and never closes the
 * connection then.  WRITING: the response is queued.  LINGER: an error was
 * answered before the request was read; the write side is shut and the
 * rest of the request is drained so the peer sees the answer, not a reset.
 * STREAMING: an audit tail; the connection ends with it.
 */
enum cs_state {
	CS_READING,
	CS_WORKING,
	CS_WRITING,
	CS_LINGER,
	CS_STREAMING,
};

union cs_stream {
	uv_handle_t handle;
	uv_stream_t stream;
	uv_pipe_t pipe;
	uv_tcp_t tcp;
};

struct cs_conn {
	struct control_server *server;
	struct cs_conn *prev, *next;
	union cs_stream h;
	uv_timer_t timer;             /* idle timeout, then linger deadline */
	uv_work_t work;
	uv_write_t write_req;
	uv_write_t continue_req;
	uv_shutdown_t shutdown_req;
	int open_handles;             /* h, timer (and poll): freed when all are closed */
	enum cs_state state;
	bool reading;
	bool closing;
	bool close_after;             /* close once the response is written */
	enum control_caller_kind caller;
	char peer[INET6_ADDRSTRLEN + 8];

	uint8_t *buf;                 /* sodium_malloc'd CS_BUF_SIZE, on first read */
	size_t len;
	size_t lingered;
	struct http1_parser parser;
	bool head_parsed;             /* parser.head is valid (for the access log) */
	bool head_done;               /* ... and accepted: the body is being read */
	bool sent_continue;
	size_t head_len;
	size_t body_len;

	struct control_request req;   /* strings point into buf */
	bool head_method;             /* HEAD: the response carries no body */
	uint64_t start_ns;
	int work_status;

	struct control_response resp;
	bool have_resp;
	char resp_head[CS_RESP_HEAD_MAX];

	/* CS_STREAMING: the subscription, its eventfd on the loop, and the one
	 * chunk write in flight (the head first). */
	struct audit_tail *tail;
	uv_poll_t poll;
	bool poll_open;
	bool polling;
	bool chunk_busy;
	bool stream_ending;           /* the last chunk is queued: close when written */
	char *chunk;
	uv_write_t chunk_req;

	/* ?after=ID: the replay read on a worker after subscribing (CS_WORKING
	 * again meanwhile, c->resp.tail its input), sent after the head; the
	 * stream then skips every row id <= tail_after and every id replayed
	 * (ascending). */
	int64_t tail_after;
	char *replay;
	size_t replay_len;
	int64_t *replayed;
	size_t n_replayed;
};

/* One worker thread's control_api, on the registry control_server_free() closes. */
struct cs_ctx {
	struct control_api *api;
	struct cs_ctx *next;
};

struct control_server {
	uv_loop_t *loop;
	char *state_dir;
	const struct master_key *master_key;
	struct http1_limits limits;
	unsigned max_connections;
	uint64_t idle_timeout_ms;
	struct audit_writer *audit;
	unsigned n_tails;

	char *socket_path;
	int lock_fd;
	dev_t sock_dev;
	ino_t sock_ino;
	uv_pipe_t pipe;
	uv_tcp_t tcp;
	bool pipe_open, tcp_open;
	int open_listeners;

	struct cs_conn *conns;
	unsigned n_conns;

	bool shutting_down;
	bool done_called;
	uv_timer_t shutdown_timer;
	bool shutdown_timer_open;
	control_server_done_cb done;
	void *done_data;

	/* Generation tags this server's contexts in the workers' thread-locals. */
	uint64_t generation;
	uv_mutex_t ctx_lock;
	struct cs_ctx *ctxs;
};

/* A threadpool thread's context, valid while generation matches its server's. */
static _Thread_local struct {
	uint64_t generation;
	struct control_api *api;
} cs_tls;

static atomic_uint_fast64_t cs_generations;

static void cs_read_start(struct cs_conn *c);
static void cs_process(struct cs_conn *c);

__attribute__((format(printf, 4, 5)))
static int cs_fail(char *err, size_t err_size, int r, const char *fmt, ...)
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

/* --- worker threads ---------------------------------------------------- */

/* The calling worker's context, opened on its first request. */
static int cs_thread_api(struct control_server *s, struct control_api **ret_api)
{
	char err[256] = "";
	struct control_api *api = NULL;
	struct cs_ctx *ctx;
	int r;

	if (cs_tls.generation == s->generation && cs_tls.api) {
		*ret_api = cs_tls.api;
		return 0;
	}
	r = control_api_open(s->state_dir, s->master_key, &api, err, sizeof(err));
	if (r < 0) {
		struct log_line l;

		if (log_begin(&l, LOG_LEVEL_ERROR, "control_worker_open_failed")) {
			log_str(&l, "reason", err);
			log_end(&l);
		}
		return r;
	}
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		control_api_close(api);
		return -ENOMEM;
	}
	ctx->api = api;
	uv_mutex_lock(&s->ctx_lock);
	ctx->next = s->ctxs;
	s->ctxs = ctx;
	uv_mutex_unlock(&s->ctx_lock);
	cs_tls.generation = s->generation;
	cs_tls.api = api;
	*ret_api = api;
	return 0;
}

/* Worker thread: the request in c->req is complete and nobody else touches c. */
static void cs_work(uv_work_t *w)
{
	struct cs_conn *c = cs_container_of(w, struct cs_conn, work);
	struct control_api *api;
	int r;

	if ((r = cs_thread_api(c->server, &api)) < 0) {
		c->work_status = r;
		return;
	}
	c->work_status = control_api_handle(api, &c->req, &c->resp);
	c->have_resp = c->work_status == 0;
}

/* --- connection lifetime ------------------------------------------------ */

static void cs_check_done(struct control_server *s);

static void cs_release_response(struct cs_conn *c)
{
	if (!c->have_resp)
		return;
	/* A response may hold an API key shown once: wipe before handing back. */
	if (c->resp.body)
		sodium_memzero(c->resp.body, c->resp.body_len);
	control_response_free(&c->resp);
	c->resp = (struct control_response){ 0 };
	c->have_resp = false;
}

static void cs_on_conn_closed(uv_handle_t *h)
{
	struct cs_conn *c = h->data;
	struct control_server *s = c->server;

	if (--c->open_handles > 0)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->n_conns--;
	if (c->tail) {
		/* After the poll handle closed: its fd is the tail's eventfd. */
		audit_tail_close(c->tail);
		s->n_tails--;
	}
	free(c->chunk);
	free(c->replay);
	free(c->replayed);
	cs_release_response(c);
	sodium_free(c->buf); /* wipes */
	free(c);
	cs_check_done(s);
}

/* Never called in CS_WORKING: the worker still uses c. */
static void cs_close(struct cs_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	uv_close(&c->h.handle, cs_on_conn_closed);
	uv_close((uv_handle_t *)&c->timer, cs_on_conn_closed);
	if (c->poll_open)
		uv_close((uv_handle_t *)&c->poll, cs_on_conn_closed);
}

static void cs_on_timer(uv_timer_t *t)
{
	struct cs_conn *c = t->data;

	/* WORKING never times out here: the worker owns c until after_work. */
	if (c->state == CS_WORKING)
		return;
	if (c->state == CS_STREAMING)
		log_event(LOG_LEVEL_INFO, "control_tail_dropped", "reason",
			  "the client did not read a chunk in time");
	else if (c->state != CS_LINGER)
		log_event(LOG_LEVEL_DEBUG, "control_idle_timeout", "peer", c->peer);
	cs_close(c);
}

static void cs_timer_arm(struct cs_conn *c, uint64_t ms)
{
	uv_timer_start(&c->timer, cs_on_timer, ms, 0);
}

static void cs_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *ret_buf)
{
	struct cs_conn *c = h->data;

	(void)hint;
	*ret_buf = uv_buf_init(NULL, 0); /* read_cb then gets UV_ENOBUFS */
	/* Allocated on first data so idle connections cost no locked memory. */
	if (!c->buf && !(c->buf = sodium_malloc(CS_BUF_SIZE)))
		return;
	if (c->state == CS_LINGER || c->state == CS_STREAMING)
		*ret_buf = uv_buf_init((char *)c->buf, (unsigned)CS_BUF_SIZE);
	else if (c->len < CS_BUF_SIZE)
		*ret_buf = uv_buf_init((char *)c->buf + c->len, (unsigned)(CS_BUF_SIZE - c->len));
}

static void cs_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct cs_conn *c = st->data;

	(void)b;
	if (n == 0)
		return;
	if (n < 0) {
		if (n != UV_EOF && n != UV_ECONNRESET)
			log_event(LOG_LEVEL_DEBUG, "control_read_failed", "error", uv_strerror((int)n));
		cs_close(c);
		return;
	}
	/* A tail client has nothing to say: reading only notices it leave. */
	if (c->state == CS_LINGER || c->state == CS_STREAMING) {
		sodium_memzero(c->buf, (size_t)n); /* drained bytes may be a secret value */
		c->lingered += (size_t)n;
		if (c->lingered > CS_LINGER_MAX)
			cs_close(c);
		return;
	}
	c->len += (size_t)n;
	cs_process(c);
}

static void cs_read_start(struct cs_conn *c)
{
	int r;

	if (c->reading || c->closing)
		return;
	if ((r = uv_read_start(&c->h.stream, cs_on_alloc, cs_on_read)) < 0) {
		log_event(LOG_LEVEL_WARN, "control_read_failed", "error", uv_strerror(r));
		cs_close(c);
		return;
	}
	c->reading = true;
}

static void cs_read_stop(struct cs_conn *c)
{
	if (!c->reading)
		return;
	uv_read_stop(&c->h.stream);
	c->reading = false;
}

/* --- responses ---------------------------------------------------------- */

static const char *cs_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "";
	}
}

/* The error code of docs/api.md for a status the server answers by itself. */
static const char *cs_error_code(int status)
{
	switch (status) {
	case 411: return "length_required";
	case 413: return "payload_too_large";
	case 414: return "uri_too_long";
	case 417: return "expectation_failed";
	case 431: return "headers_too_large";
	case 500: return "internal";
	case 501: return "not_implemented";
	case 503: return "unavailable";
	case 505: return "http_version_not_supported";
	default: return "bad_request";
	}
}

/* The handler's Allow value goes into our head: refuse anything but a token list. */
static bool cs_allow_is_safe(const char *allow)
{
	for (; *allow; allow++)
		if (!(*allow >= 'A' && *allow <= 'Z') && *allow != ',' && *allow != ' ')
			return false;
	return true;
}

static bool cs_status_has_body(int status)
{
	return status != 204 && status != 304;
}

static int cs_format_head(struct cs_conn *c)
{
	const struct control_response *resp = &c->resp;
	char *p = c->resp_head;
	size_t left = sizeof(c->resp_head);
	int n;

#define CS_PUT(...) do { \
		n = snprintf(p, left, __VA_ARGS__); \
		if (n < 0 || (size_t)n >= left) \
			return -ENOBUFS; \
		p += n, left -= (size_t)n; \
	} while (0)
	CS_PUT("HTTP/1.1 %d %s\r\n", resp->status, cs_reason(resp->status));
	if (cs_status_has_body(resp->status))
		CS_PUT("Content-Length: %zu\r\n", resp->body ? resp->body_len : 0);
	if (resp->body && cs_status_has_body(resp->status))
		CS_PUT("Content-Type: %s\r\n",
		       resp->content_type ? resp->content_type : "application/json");
	CS_PUT("Cache-Control: no-store\r\n");
	if (resp->allow[0] && memchr(resp->allow, '\0', sizeof(resp->allow)) &&
	    cs_allow_is_safe(resp->allow))
		CS_PUT("Allow: %s\r\n", resp->allow);
	CS_PUT("Connection: %s\r\n\r\n", c->close_after ? "close" : "keep-alive");
#undef CS_PUT
	return (int)(p - c->resp_head);
}

static void cs_log_access(struct cs_conn *c)
{
	struct log_line l;

	if (!log_begin(&l, LOG_LEVEL_INFO, "control_request"))
		return;
	/* Method and path only: never the query, a body or Authorization. */
	if (c->head_parsed) {
		const struct http1_head *h = &c->parser.head;

		log_peer(&l, "method", c->buf + h->method_name.off, h->method_name.len);
		log_peer(&l, "path", c->buf + h->path.off, h->path.len);
	} else {
		log_str(&l, "method", NULL);
		log_str(&l, "path", NULL);
	}
	log_int(&l, "status", c->resp.status);
	log_uint(&l, "duration_us", (uv_hrtime() - c->start_ns) / 1000);
	log_str(&l, "caller", c->caller == CONTROL_CALLER_ADMIN ? "admin" : "tcp");
	if (c->caller == CONTROL_CALLER_TCP)
		log_str(&l, "peer", c->peer);
	/* What failed behind a 500, or a store connection a handler left
	 * busy (control_api.h); never a secret value. */
	if (c->have_resp && c->resp.detail[0])
		log_str(&l, "detail", c->resp.detail);
	log_end(&l);
}

static void cs_next_request(struct cs_conn *c);

static void cs_on_linger_shutdown(uv_shutdown_t *req, int status)
{
	struct cs_conn *c = cs_container_of(req, struct cs_conn, shutdown_req);

	if (status < 0)
		cs_close(c);
}

/* After an early error: FIN, then drain what the peer still sends, briefly. */
static void cs_linger(struct cs_conn *c)
{
	c->state = CS_LINGER;
	c->lingered = 0;
	sodium_memzero(c->buf, c->len);
	c->len = 0;
	if (uv_shutdown(&c->shutdown_req, &c->h.stream, cs_on_linger_shutdown) < 0) {
		cs_close(c);
		return;
	}
	cs_timer_arm(c, CS_LINGER_MS);
	cs_read_start(c);
}

static void cs_on_written(uv_write_t *req, int status)
{
	struct cs_conn *c = cs_container_of(req, struct cs_conn, write_req);
	bool linger = c->close_after && !c->head_done;

	cs_log_access(c);
	cs_release_response(c);
	if (c->closing)
		return;
	if (status < 0 || c->server->shutting_down) {
		cs_close(c);
		return;
	}
	if (c->close_after) {
		/* The request was not read to its end: let the peer read our answer. */
		if (linger || c->len < c->head_len + c->body_len)
			cs_linger(c);
		else
			cs_close(c);
		return;
	}
	cs_next_request(c);
}

/* Queue c->resp; the connection is WRITING until cs_on_written. */
static void cs_send(struct cs_conn *c)
{
	uv_buf_t bufs[2];
	unsigned n = 1;
	int len, r;

	if (c->resp.status < 200 || c->resp.status > 599) {
		struct log_line l;

		/* A handler bug; the peer gets a well-formed 500 instead. */
		if (log_begin(&l, LOG_LEVEL_ERROR, "control_bad_status")) {
			log_int(&l, "status", c->resp.status);
			log_end(&l);
		}
		cs_release_response(c);
		c->resp = (struct control_response){ .status = 500 };
	}
	if (c->server->shutting_down)
		c->close_after = true;
	c->state = CS_WRITING;
	cs_read_stop(c);
	/* A peer that does not read its answer is dropped like an idle one. */
	cs_timer_arm(c, c->server->idle_timeout_ms);
	len = cs_format_head(c);
	if (len < 0) {
		cs_release_response(c);
		c->resp = (struct control_response){ .status = 500 };
		c->close_after = true;
		len = cs_format_head(c);
	}
	bufs[0] = uv_buf_init(c->resp_head, (unsigned)len);
	if (c->resp.body && c->resp.body_len > 0 && cs_status_has_body(c->resp.status) &&
	    !c->head_method)
		bufs[n++] = uv_buf_init(c->resp.body, (unsigned)c->resp.body_len);
	if ((r = uv_write(&c->write_req, &c->h.stream, bufs, n, cs_on_written)) < 0) {
		log_event(LOG_LEVEL_DEBUG, "control_write_failed", "error", uv_strerror(r));
		cs_release_response(c);
		cs_close(c);
	}
}

/*
 * Answer from the loop thread (codec errors, limits, shutdown).  close: the
 * request was not (or not entirely) read, so the connection cannot go on.
 */
static void cs_reply_error(struct cs_conn *c, int status, const char *message, bool close)
{
	cs_release_response(c);
	if (control_response_error(status, cs_error_code(status), message, &c->resp) == 0)
		c->have_resp = true;
	else
		c->resp = (struct control_response){ .status = status }; /* bare, no memory */
	if (close)
		c->close_after = true;
	if (!c->start_ns)
		c->start_ns = uv_hrtime();
	cs_send(c);
}

/* --- audit tail (streaming) --------------------------------------------- */

static void cs_stream_pump(struct cs_conn *c);

static void cs_on_tail_readable(uv_poll_t *p, int status, int events)
{
	struct cs_conn *c = p->data;

	(void)events;
	if (status < 0) {
		c->stream_ending = true; /* the eventfd failed: end the stream */
		c->polling = false;
		uv_poll_stop(p);
	}
	cs_stream_pump(c);
}

static void cs_poll_set(struct cs_conn *c, bool on)
{
	if (on == c->polling || c->closing)
		return;
	if (on && uv_poll_start(&c->poll, UV_READABLE, cs_on_tail_readable) < 0) {
		cs_close(c);
		return;
	}
	if (!on)
		uv_poll_stop(&c->poll);
	c->polling = on;
}

static void cs_on_chunk_written(uv_write_t *req, int status)
{
	struct cs_conn *c = cs_container_of(req, struct cs_conn, chunk_req);

	free(c->chunk);
	c->chunk = NULL;
	c->chunk_busy = false;
	if (c->closing)
		return;
	uv_timer_stop(&c->timer);
	if (status < 0 || c->stream_ending) {
		cs_close(c);
		return;
	}
	cs_poll_set(c, true); /* level-triggered: rows queued meanwhile fire at once */
}

/* Queue data (malloc'd, taken: freed once written). */
static void cs_chunk_write(struct cs_conn *c, char *data, size_t len)
{
	uv_buf_t b = uv_buf_init(data, (unsigned)len);

	c->chunk = data;
	c->chunk_busy = true;
	cs_poll_set(c, false); /* rows wait in the tail's bounded queue meanwhile */
	/* A client that does not read its chunk in time is dropped. */
	cs_timer_arm(c, c->server->idle_timeout_ms);
	if (uv_write(&c->chunk_req, &c->h.stream, &b, 1, cs_on_chunk_written) < 0) {
		free(c->chunk);
		c->chunk = NULL;
		c->chunk_busy = false;
		cs_close(c);
	}
}

struct cs_text {
	char *p;
	size_t len, cap;
	bool oom;
};

static void cs_text_add(struct cs_text *t, const char *s, size_t n)
{
	if (t->oom)
		return;
	if (n + 1 > t->cap - t->len) {
		size_t cap = t->cap ? t->cap : 8192;
		char *p;

		while (cap - t->len < n + 1)
			cap *= 2;
		if (!(p = realloc(t->p, cap))) {
			t->oom = true;
			return;
		}
		t->p = p;
		t->cap = cap;
	}
	memcpy(t->p + t->len, s, n);
	t->len += n;
}

static int cs_id_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Was row id shown already: by the client (<= after) or by the replay? */
static bool cs_stream_seen(const struct cs_conn *c, int64_t id)
{
	return id <= c->tail_after ||
	       (c->n_replayed > 0 && bsearch(&id, c->replayed, c->n_replayed,
					     sizeof(*c->replayed), cs_id_cmp));
}

/*
 * Move up to CS_TAIL_BATCH committed rows into one chunk.  The chunk's
 * size line is reserved at the front (16 bytes) and filled once the data
 * is known, so the rows are copied once.
 */
static void cs_stream_pump(struct cs_conn *c)
{
	static const char dropped[] =
		"{\"error\":\"tail_dropped\",\"message\":\"this client fell behind the audit log; "
		"rows were skipped: reconnect, and use GET /v1/audit for the gap\"}\n";
	struct cs_text t = { 0 };
	struct store_audit_row row;
	char size_line[17];
	size_t data_len, skip;
	int r = 0, n = 0;

	if (c->chunk_busy || c->closing)
		return;
	cs_text_add(&t, "                ", 16);
	while (!c->stream_ending && n < CS_TAIL_BATCH &&
	       (r = audit_tail_next(c->tail, 0, &row)) == 0) {
		char *line;

		if (cs_stream_seen(c, row.id))
			continue;
		if (!(line = audit_row_json(&row))) {
			t.oom = true;
			break;
		}
		cs_text_add(&t, line, strlen(line));
		cs_text_add(&t, "\n", 1);
		free(line);
		n++;
	}
	if (r == AUDIT_TAIL_DROPPED)
		cs_text_add(&t, dropped, sizeof(dropped) - 1);
	if (r == AUDIT_TAIL_DROPPED || (r < 0 && r != -ETIMEDOUT) || t.oom)
		c->stream_ending = true; /* dropped, writer closed, or no memory */
	if (t.oom) {
		free(t.p);
		cs_close(c);
		return;
	}
	data_len = t.len - 16;
	if (data_len == 0 && !c->stream_ending) {
		free(t.p);
		cs_poll_set(c, true);
		return;
	}
	/* "SIZE\r\n" right-aligned into the reserved 16 bytes, then "\r\n";
	 * the unused front of the reserve is cut off. */
	skip = 16;
	if (data_len > 0) {
		int k = snprintf(size_line, sizeof(size_line), "%zx\r\n", data_len);

		skip = 16 - (size_t)k;
		memcpy(t.p + skip, size_line, (size_t)k);
		cs_text_add(&t, "\r\n", 2);
	}
	if (c->stream_ending)
		cs_text_add(&t, "0\r\n\r\n", 5);
	if (t.oom) {
		free(t.p);
		cs_close(c);
		return;
	}
	memmove(t.p, t.p + skip, t.len - skip);
	cs_chunk_write(c, t.p, t.len - skip);
}

static void cs_stream_begin(struct cs_conn *c);
static void cs_replay_work(uv_work_t *w);
static void cs_after_replay(uv_work_t *w, int status);

/* Give the subscription back, then answer an error and close. */
static void cs_stream_abort(struct cs_conn *c, int status, const char *message)
{
	audit_tail_close(c->tail);
	c->tail = NULL;
	c->server->n_tails--;
	cs_reply_error(c, status, message, true);
}

/*
 * The handler said 200 with a tail filter: subscribe, then (?after=) read
 * the replay on a worker, then send the head and stream.  Subscribing
 * before the replay's read is what closes the gap: a row committed in
 * between is in the subscription, the replay or both (the stream skips
 * the ids replayed).
 */
static void cs_stream_start(struct cs_conn *c)
{
	struct control_server *s = c->server;
	int r;

	if (!s->audit) {
		cs_reply_error(c, 503, "the audit log is not available on this server", true);
		return;
	}
	if (s->n_tails >= CONTROL_SERVER_TAILS_MAX) {
		cs_reply_error(c, 503, "too many audit tails are open; try again later", true);
		return;
	}
	r = audit_tail_subscribe(s->audit, &c->resp.tail->filter, CONTROL_SERVER_TAIL_QUEUE,
				 &c->tail);
	if (r < 0) {
		cs_reply_error(c, 503, r == -EMFILE ? "too many audit tails are open; try again later"
						    : "the audit log cannot be tailed now",
			       true);
		return;
	}
	s->n_tails++;
	if (!c->resp.tail->has_after) {
		c->tail_after = INT64_MIN;
		cs_stream_begin(c);
		return;
	}
	/* The worker reads c->resp.tail; the loop leaves c->resp alone in
	 * CS_WORKING and releases it once streaming. */
	c->tail_after = c->resp.tail->after_id;
	c->state = CS_WORKING;
	if ((r = uv_queue_work(s->loop, &c->work, cs_replay_work, cs_after_replay)) < 0) {
		c->state = CS_WRITING;
		log_event(LOG_LEVEL_ERROR, "control_tail_failed", "error", uv_strerror(r));
		cs_stream_abort(c, 500, "the broker failed; see its log");
	}
}

/* Worker thread: the rows committed after ?after=, for the stream's start. */
static void cs_replay_work(uv_work_t *w)
{
	struct cs_conn *c = cs_container_of(w, struct cs_conn, work);
	struct control_api *api;
	int r;

	if ((r = cs_thread_api(c->server, &api)) == 0)
		r = control_api_audit_replay(api, c->resp.tail, &c->replay, &c->replay_len,
					     &c->replayed, &c->n_replayed);
	c->work_status = r;
}

static void cs_after_replay(uv_work_t *w, int status)
{
	struct cs_conn *c = cs_container_of(w, struct cs_conn, work);

	c->state = CS_WRITING;
	if (status == UV_ECANCELED || c->server->shutting_down) {
		cs_stream_abort(c, 503, "the broker is shutting down");
		return;
	}
	if (c->work_status < 0) {
		struct log_line l;

		if (log_begin(&l, LOG_LEVEL_ERROR, "control_tail_replay_failed")) {
			log_errno(&l, c->work_status);
			log_end(&l);
		}
		cs_stream_abort(c, 500, "the broker failed; see its log");
		return;
	}
	cs_stream_begin(c);
}

/* Subscribed (and replay read): the head, with the replay as its first chunk. */
static void cs_stream_begin(struct cs_conn *c)
{
	static const char head[] = "HTTP/1.1 200 OK\r\n"
				   "Content-Type: application/x-ndjson\r\n"
				   "Transfer-Encoding: chunked\r\n"
				   "Cache-Control: no-store\r\n"
				   "Connection: close\r\n\r\n";
	struct control_server *s = c->server;
	struct cs_text t = { 0 };
	char size_line[20];
	int r;

	if ((r = uv_poll_init(s->loop, &c->poll, audit_tail_fd(c->tail))) < 0) {
		log_event(LOG_LEVEL_ERROR, "control_tail_failed", "error", uv_strerror(r));
		cs_stream_abort(c, 500, "the broker failed; see its log");
		return;
	}
	c->poll.data = c;
	c->poll_open = true;
	c->open_handles++;
	c->state = CS_STREAMING;
	c->close_after = true;
	c->lingered = 0;
	cs_log_access(c);
	cs_release_response(c); /* the subscription copied the filter */
	cs_text_add(&t, head, sizeof(head) - 1);
	if (c->replay_len > 0) {
		int k = snprintf(size_line, sizeof(size_line), "%zx\r\n", c->replay_len);

		cs_text_add(&t, size_line, (size_t)k);
		cs_text_add(&t, c->replay, c->replay_len);
		cs_text_add(&t, "\r\n", 2);
	}
	free(c->replay);
	c->replay = NULL;
	if (t.oom) {
		free(t.p);
		cs_close(c);
		return;
	}
	cs_chunk_write(c, t.p, t.len);
	cs_read_start(c); /* to notice the client leave */
}

static void cs_after_work(uv_work_t *w, int status)
{
	struct cs_conn *c = cs_container_of(w, struct cs_conn, work);

	if (status == UV_ECANCELED) {
		cs_reply_error(c, 503, "the broker is shutting down", true);
		return;
	}
	if (c->work_status < 0) {
		struct log_line l;

		if (log_begin(&l, LOG_LEVEL_ERROR, "control_handler_failed")) {
			log_errno(&l, c->work_status);
			log_end(&l);
		}
		cs_reply_error(c, 500, "the broker failed; see its log", false);
		return;
	}
	if (c->resp.status == 200 && c->resp.tail && !c->head_method) {
		if (c->server->shutting_down)
			cs_reply_error(c, 503, "the broker is shutting down", true);
		else
			cs_stream_start(c);
		return;
	}
	cs_send(c);
}

/* --- requests ----------------------------------------------------------- */

/* NUL-terminate a span in place (see cs_bind_request for why that is safe). */
static const char *cs_cstr(struct cs_conn *c, struct http1_span sp)
{
	c->buf[sp.off + sp.len] = '\0';
	return (const char *)c->buf + sp.off;
}

static bool cs_name_is(const struct cs_conn *c, const struct http1_header *h, const char *name)
{
	return h->name.len == strlen(name) &&
	       strncasecmp((const char *)c->buf + h->name.off, name, h->name.len) == 0;
}

/* "Bearer" 1*SP token (RFC 9110 §11.1: the scheme is case-insensitive). */
static const char *cs_bearer(struct cs_conn *c, struct http1_span v)
{
	const char *s = cs_cstr(c, v);
	size_t i = 6;

	if (v.len <= i || strncasecmp(s, "Bearer", i) != 0 || s[i] != ' ')
		return NULL;
	while (s[i] == ' ')
		i++;
	return s[i] ? s + i : NULL;
}

/*
 * Fill c->req from the parsed head.  Strings are NUL-terminated in place
 * rather than copied, so a bearer token never leaves the wiped buffer: the
 * byte after each span is a delimiter the parser has finished with (SP or
 * '?' after method and path, SP after the query, OWS or CR after a field
 * value, which excludes trailing OWS).  Returns a status to answer with
 * instead, or 0.
 */
static int cs_bind_request(struct cs_conn *c, const char **ret_message)
{
	const struct http1_head *h = &c->parser.head;
	const struct http1_header *ctype = NULL, *auth = NULL;

	for (uint32_t i = 0; i < h->n_headers; i++) {
		const struct http1_header *f = &h->headers[i];
		const struct http1_header **slot = cs_name_is(c, f, "content-type") ? &ctype :
						   cs_name_is(c, f, "authorization") ? &auth : NULL;

		if (!slot)
			continue;
		if (*slot) {
			*ret_message = "Content-Type or Authorization given more than once";
			return 400;
		}
		*slot = f;
	}
	c->req = (struct control_request){
		.caller = c->caller,
		.method = cs_cstr(c, h->method_name),
		.path = cs_cstr(c, h->path),
		.query = (h->flags & HTTP1_F_HAS_QUERY) ? cs_cstr(c, h->query) : "",
		.content_type = ctype ? cs_cstr(c, ctype->value) : NULL,
		.bearer = auth && c->caller == CONTROL_CALLER_TCP ? cs_bearer(c, auth->value) : NULL,
		.body = c->body_len ? c->buf + c->head_len : NULL,
		.body_len = c->body_len,
		.has_body = h->body_mode == HTTP1_BODY_LENGTH,
	};
	c->head_method = h->method == HTTP1_METHOD_HEAD;
	return 0;
}

/* The head is complete: refuse what the control API does not take. */
static int cs_check_head(struct cs_conn *c, const char **ret_message)
{
	const struct http1_head *h = &c->parser.head;

	c->close_after = !(h->flags & HTTP1_F_KEEP_ALIVE);
	if (h->body_mode == HTTP1_BODY_CHUNKED) {
		*ret_message = "chunked request bodies are not accepted; send Content-Length";
		return 411;
	}
	if (h->body_mode != HTTP1_BODY_NONE && h->body_mode != HTTP1_BODY_LENGTH) {
		*ret_message = "request framing not supported";
		return 400;
	}
	if (h->body_mode == HTTP1_BODY_LENGTH && h->content_length > CONTROL_API_MAX_BODY) {
		*ret_message = "request body over 65536 bytes";
		return 413;
	}
	if (h->flags & HTTP1_F_EXPECT_OTHER) {
		*ret_message = "only Expect: 100-continue is supported";
		return 417;
	}
	if (h->target_form != HTTP1_TARGET_ORIGIN) {
		*ret_message = "request-target must be a path (origin-form)";
		return 400;
	}
	c->body_len = h->body_mode == HTTP1_BODY_LENGTH ? (size_t)h->content_length : 0;
	return 0;
}

static void cs_on_continue_written(uv_write_t *req, int status)
{
	(void)req;
	(void)status; /* a failure shows up on the next read or write */
}

/* RFC 9110 §10.1.1: a server that will read the body sends 100 first. */
static void cs_maybe_continue(struct cs_conn *c)
{
	static char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
	uv_buf_t b = uv_buf_init(msg, sizeof(msg) - 1);

	if (c->sent_continue || !(c->parser.head.flags & HTTP1_F_EXPECT_CONTINUE))
		return;
	c->sent_continue = true;
	if (uv_write(&c->continue_req, &c->h.stream, &b, 1, cs_on_continue_written) < 0)
		cs_close(c);
}

static void cs_dispatch(struct cs_conn *c)
{
	int r;

	c->state = CS_WORKING;
	c->start_ns = uv_hrtime();
	cs_read_stop(c);
	uv_timer_stop(&c->timer);
	r = uv_queue_work(c->server->loop, &c->work, cs_work, cs_after_work);
	if (r < 0) {
		c->state = CS_READING;
		cs_reply_error(c, 500, "the broker failed; see its log", true);
	}
}

/* Look at what is buffered: maybe a head, maybe a whole request. */
static void cs_process(struct cs_conn *c)
{
	const char *message = NULL;
	int r;

	if (!c->head_done) {
		r = http1_parse(&c->parser, c->buf, c->len, &c->head_len);
		if (r == HTTP1_NEED_MORE)
			return;
		if (r < 0) {
			cs_reply_error(c, http1_error_status(r), http1_strerror(r), true);
			return;
		}
		c->head_parsed = c->head_done = true;
		if ((r = cs_check_head(c, &message)) != 0) {
			c->head_done = false; /* not read to its end: linger */
			cs_reply_error(c, r, message, true);
			return;
		}
	}
	if (c->len - c->head_len < c->body_len) {
		cs_maybe_continue(c);
		return;
	}
	if ((r = cs_bind_request(c, &message)) != 0) {
		cs_reply_error(c, r, message, true);
		return;
	}
	cs_dispatch(c);
}

/* The response went out: drop the request, wipe it, serve a pipelined one. */
static void cs_next_request(struct cs_conn *c)
{
	size_t used = c->head_len + c->body_len;

	memmove(c->buf, c->buf + used, c->len - used);
	sodium_memzero(c->buf + (c->len - used), used);
	c->len -= used;
	http1_parser_reset(&c->parser);
	c->head_parsed = c->head_done = false;
	c->sent_continue = false;
	c->head_len = c->body_len = 0;
	c->req = (struct control_request){ 0 };
	c->head_method = false;
	c->start_ns = 0;
	c->state = CS_READING;
	cs_timer_arm(c, c->server->idle_timeout_ms);
	if (c->len > 0)
		cs_process(c);
	if (c->state == CS_READING)
		cs_read_start(c);
}

/* --- listeners ---------------------------------------------------------- */

static void cs_free_handle(uv_handle_t *h)
{
	free(h);
}

/* Over the connection cap: accept (or the listener stalls) and close at once. */
static void cs_refuse(struct control_server *s, uv_stream_t *listener)
{
	union cs_stream *h = malloc(sizeof(*h));
	struct log_line l;

	if (log_begin(&l, LOG_LEVEL_WARN, "control_connection_refused")) {
		log_str(&l, "reason", "too many connections");
		log_uint(&l, "limit", s->max_connections);
		log_end(&l);
	}
	if (!h)
		return;
	if (listener == (uv_stream_t *)&s->pipe)
		uv_pipe_init(s->loop, &h->pipe, 0);
	else
		uv_tcp_init(s->loop, &h->tcp);
	(void)uv_accept(listener, &h->stream);
	uv_close(&h->handle, cs_free_handle);
}

static void cs_peer_name(struct cs_conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		snprintf(c->peer, sizeof(c->peer), "%s:%u", ip, port);
	} else if (ss.ss_family == AF_INET6) {
		uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		snprintf(c->peer, sizeof(c->peer), "[%s]:%u", ip, port);
	}
}

/* Both handles are initialised whatever happens (neither init can fail without a socket). */
static int cs_conn_init(struct control_server *s, struct cs_conn *c, bool tcp)
{
	c->server = s;
	c->caller = tcp ? CONTROL_CALLER_TCP : CONTROL_CALLER_ADMIN;
	strcpy(c->peer, tcp ? "?" : "unix");
	if (tcp)
		uv_tcp_init(s->loop, &c->h.tcp);
	else
		uv_pipe_init(s->loop, &c->h.pipe, 0);
	c->h.handle.data = c;
	uv_timer_init(s->loop, &c->timer);
	c->timer.data = c;
	c->open_handles = 2;
	/* The limits were checked at start; this cannot fail. */
	return http1_parser_init_request(&c->parser, &s->limits);
}

static void cs_on_connection(uv_stream_t *listener, int status)
{
	struct control_server *s = listener->data;
	bool tcp = listener == (uv_stream_t *)&s->tcp;
	struct cs_conn *c;
	int r;

	if (status < 0) {
		log_event(LOG_LEVEL_WARN, "control_accept_failed", "error", uv_strerror(status));
		return;
	}
	if (s->n_conns >= s->max_connections || !(c = calloc(1, sizeof(*c)))) {
		cs_refuse(s, listener);
		return;
	}
	r = cs_conn_init(s, c, tcp);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->n_conns++;
	if (r < 0 || (r = uv_accept(listener, &c->h.stream)) < 0) {
		cs_close(c);
		return;
	}
	if (tcp) {
		uv_tcp_nodelay(&c->h.tcp, 1);
		cs_peer_name(c);
	}
	cs_timer_arm(c, s->idle_timeout_ms);
	cs_read_start(c);
}

/*
 * Held for the server's life so two brokers racing for one path cannot
 * both decide the socket is stale.  The lock file stays behind on exit:
 * removing it would let a third process lock a new inode while a second
 * still holds the old one.
 */
static int cs_lock_path(struct control_server *s, char *err, size_t err_size)
{
	char lock[PATH_MAX];
	int n = snprintf(lock, sizeof(lock), "%s.lock", s->socket_path);

	if (n < 0 || (size_t)n >= sizeof(lock))
		return cs_fail(err, err_size, -ENAMETOOLONG, "control socket path %s is too long",
			       s->socket_path);
	s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (s->lock_fd < 0)
		return cs_fail(err, err_size, -errno, "cannot open lock file %s: %m", lock);
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			return cs_fail(err, err_size, -EADDRINUSE,
				       "control socket %s is in use by another process", s->socket_path);
		return cs_fail(err, err_size, -errno, "cannot lock %s: %m", lock);
	}
	return 0;
}

static int cs_sockaddr_un(const char *path, struct sockaddr_un *ret_sun)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, path);
	*ret_sun = sun;
	return 0;
}

/* Make the path free for bind(): nothing there, or a stale socket removed. */
static int cs_clear_path(const char *path, const struct sockaddr_un *sun,
			 char *err, size_t err_size)
{
	const char *why = NULL;
	bool removed;
	int r;

	if ((r = uds_path_clear(sun, &removed, &why)) < 0)
		return cs_fail(err, err_size, r, "control socket %s %s: %s", path, why, strerror(-r));
	if (removed)
		log_event(LOG_LEVEL_INFO, "control_socket_stale_removed", "path", path);
	return 0;
}

/*
 * socket + bind + listen by hand rather than uv_pipe_bind(): the umask
 * makes the socket 0600 from its first instant, and libuv would unlink the
 * path on close even if it is no longer ours.
 */
static int cs_bind_unix(const char *path, const struct sockaddr_un *sun, int *ret_fd,
			char *err, size_t err_size)
{
	mode_t old;
	int fd, r;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return cs_fail(err, err_size, -errno, "control socket: %m");
	old = umask(0177); /* startup is single-threaded: nobody else sees this umask */
	r = bind(fd, (const struct sockaddr *)sun, sizeof(*sun)) < 0 ? -errno : 0;
	umask(old);
	if (r < 0) {
		close(fd);
		return cs_fail(err, err_size, r, "cannot bind control socket %s: %m", path);
	}
	if (listen(fd, CS_BACKLOG) < 0) {
		r = -errno;
		unlink(path);
		close(fd);
		return cs_fail(err, err_size, r, "cannot listen on control socket %s: %m", path);
	}
	*ret_fd = fd;
	return 0;
}

static int cs_listen_unix(struct control_server *s, char *err, size_t err_size)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd = -1, r;

	if (cs_sockaddr_un(s->socket_path, &sun) < 0)
		return cs_fail(err, err_size, -ENAMETOOLONG, "control socket path %s is too long",
			       s->socket_path);
	if ((r = cs_lock_path(s, err, err_size)) < 0 ||
	    (r = cs_clear_path(s->socket_path, &sun, err, err_size)) < 0 ||
	    (r = cs_bind_unix(s->socket_path, &sun, &fd, err, err_size)) < 0)
		return r;
	if (stat(s->socket_path, &st) == 0) {
		s->sock_dev = st.st_dev;
		s->sock_ino = st.st_ino;
	}
	uv_pipe_init(s->loop, &s->pipe, 0);
	s->pipe.data = s;
	s->pipe_open = true;
	s->open_listeners++;
	if ((r = uv_pipe_open(&s->pipe, fd)) < 0) {
		close(fd);
		return cs_fail(err, err_size, r, "control socket %s: %s", s->socket_path, uv_strerror(r));
	}
	if ((r = uv_listen((uv_stream_t *)&s->pipe, CS_BACKLOG, cs_on_connection)) < 0)
		return cs_fail(err, err_size, r, "cannot listen on control socket %s: %s",
			       s->socket_path, uv_strerror(r));
	return 0;
}

static void cs_addr_text(const struct sockaddr *sa, char *out, size_t size)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET6) {
		uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof(ip));
		snprintf(out, size, "[%s]:%u", ip, ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
	} else {
		uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof(ip));
		snprintf(out, size, "%s:%u", ip, ntohs(((const struct sockaddr_in *)sa)->sin_port));
	}
}

static int cs_listen_tcp(struct control_server *s, const struct sockaddr *addr,
			 char *err, size_t err_size)
{
	char text[INET6_ADDRSTRLEN + 8];
	int r;

	cs_addr_text(addr, text, sizeof(text));
	if ((r = uv_tcp_init_ex(s->loop, &s->tcp, addr->sa_family)) < 0)
		return cs_fail(err, err_size, r, "cannot listen on %s: %s", text, uv_strerror(r));
	s->tcp.data = s;
	s->tcp_open = true;
	s->open_listeners++;
	/* "[::]:N" means IPv6 only; IPv4 needs its own address. */
	r = uv_tcp_bind(&s->tcp, addr, addr->sa_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&s->tcp, CS_BACKLOG, cs_on_connection);
	if (r < 0)
		return cs_fail(err, err_size, r, "cannot listen on %s: %s", text, uv_strerror(r));
	return 0;
}

/* --- start, shutdown, free ------------------------------------------------ */

static void cs_on_listener_closed(uv_handle_t *h)
{
	struct control_server *s = h->data;

	s->open_listeners--;
	cs_check_done(s);
}

static void cs_close_listeners(struct control_server *s)
{
	if (s->pipe_open) {
		s->pipe_open = false;
		uv_close((uv_handle_t *)&s->pipe, cs_on_listener_closed);
	}
	if (s->tcp_open) {
		s->tcp_open = false;
		uv_close((uv_handle_t *)&s->tcp, cs_on_listener_closed);
	}
}

/* Remove the socket only if it is still the one we bound. */
static void cs_unlink_socket(struct control_server *s)
{
	struct stat st;

	if (!s->sock_ino)
		return;
	if (lstat(s->socket_path, &st) == 0 && st.st_dev == s->sock_dev && st.st_ino == s->sock_ino)
		unlink(s->socket_path);
	s->sock_ino = 0;
}

/* The codec limits of the control API, checked once so per-connection init cannot fail. */
static int cs_limits(struct http1_limits *ret_limits)
{
	struct http1_limits lim;
	struct http1_parser probe;
	int r;

	http1_limits_default(&lim);
	lim.max_request_line = CONTROL_SERVER_REQUEST_LINE_MAX;
	lim.max_head = CONTROL_SERVER_HEAD_MAX;
	lim.max_headers = CONTROL_SERVER_HEADERS_MAX;
	lim.max_body = CONTROL_API_MAX_BODY;
	if ((r = http1_parser_init_request(&probe, &lim)) < 0)
		return r;
	*ret_limits = lim;
	return 0;
}

int control_server_start(uv_loop_t *loop, const struct control_server_options *opts,
			 struct control_server **ret_server, char *err, size_t err_size)
{
	struct control_server *s;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return cs_fail(err, err_size, -ENOMEM, "out of memory");
	s->loop = loop;
	s->lock_fd = -1;
	s->master_key = opts->master_key;
	s->max_connections = opts->max_connections;
	s->idle_timeout_ms = opts->idle_timeout_ms;
	s->audit = opts->audit;
	s->generation = atomic_fetch_add(&cs_generations, 1) + 1;
	if ((r = cs_limits(&s->limits)) < 0) {
		free(s);
		return cs_fail(err, err_size, r, "control server: inconsistent HTTP limits");
	}
	if ((r = uv_mutex_init(&s->ctx_lock)) < 0) {
		free(s);
		return cs_fail(err, err_size, r, "control server: %s", uv_strerror(r));
	}
	s->state_dir = strdup(opts->state_dir);
	s->socket_path = strdup(opts->socket_path);
	if (!s->state_dir || !s->socket_path) {
		r = cs_fail(err, err_size, -ENOMEM, "out of memory");
		goto fail;
	}
	if ((r = cs_listen_unix(s, err, err_size)) < 0 ||
	    (opts->listen && (r = cs_listen_tcp(s, opts->listen, err, err_size)) < 0))
		goto fail;
	*ret_server = s;
	return 0;
fail:
	/* Listeners that were opened close on the loop; the caller exits after it runs. */
	s->shutting_down = true;
	s->done_called = true;
	cs_close_listeners(s);
	cs_unlink_socket(s);
	if (s->open_listeners == 0)
		control_server_free(s);
	else
		s->done = NULL; /* freed by cs_check_done once the listeners are closed */
	return r;
}

static void cs_on_shutdown_timer_closed(uv_handle_t *h)
{
	struct control_server *s = h->data;

	if (!s->done_called) {
		s->done_called = true;
		s->done(s, 0, s->done_data);
	}
}

static void cs_check_done(struct control_server *s)
{
	if (!s->shutting_down || s->n_conns > 0 || s->open_listeners > 0)
		return;
	if (s->done_called && !s->done && !s->shutdown_timer_open) {
		control_server_free(s); /* a failed start, now fully closed */
		return;
	}
	if (s->shutdown_timer_open) {
		s->shutdown_timer_open = false;
		uv_close((uv_handle_t *)&s->shutdown_timer, cs_on_shutdown_timer_closed);
	}
}

/*
 * Time is up.  Connections only waiting on a slow peer are cut; a request
 * still on a worker cannot be, so then the server is abandoned.
 */
static void cs_on_shutdown_timeout(uv_timer_t *t)
{
	struct control_server *s = t->data;
	unsigned working = 0;
	struct log_line l;

	if (s->done_called)
		return;
	for (struct cs_conn *c = s->conns; c; c = c->next) {
		if (c->state == CS_WORKING)
			working++;
		else
			cs_close(c);
	}
	if (log_begin(&l, working ? LOG_LEVEL_ERROR : LOG_LEVEL_WARN, "shutdown_timeout")) {
		log_uint(&l, "connections", s->n_conns);
		log_uint(&l, "requests_running", working);
		log_end(&l);
	}
	if (!working)
		return; /* the closes complete the shutdown */
	s->done_called = true;
	s->done(s, -ETIMEDOUT, s->done_data);
}

static void cs_shutdown_conn(struct cs_conn *c)
{
	switch (c->state) {
	case CS_READING:
	case CS_LINGER:
		cs_close(c);
		break;
	case CS_WORKING:
		/* Not started yet: after_work gets UV_ECANCELED and answers 503. */
		(void)uv_cancel((uv_req_t *)&c->work);
		c->close_after = true;
		break;
	case CS_WRITING:
		c->close_after = true;
		break;
	case CS_STREAMING:
		cs_close(c); /* the client sees the stream end without its last chunk */
		break;
	}
}

void control_server_shutdown(struct control_server *s, uint64_t timeout_ms,
			     control_server_done_cb done, void *data)
{
	if (s->shutting_down)
		return;
	s->shutting_down = true;
	s->done = done;
	s->done_data = data;
	cs_close_listeners(s);
	cs_unlink_socket(s);
	for (struct cs_conn *c = s->conns, *next; c; c = next) {
		next = c->next; /* cs_close frees nothing before its callbacks run */
		cs_shutdown_conn(c);
	}
	uv_timer_init(s->loop, &s->shutdown_timer);
	s->shutdown_timer.data = s;
	s->shutdown_timer_open = true;
	uv_timer_start(&s->shutdown_timer, cs_on_shutdown_timeout, timeout_ms, 0);
	cs_check_done(s);
}

void control_server_free(struct control_server *s)
{
	struct cs_ctx *ctx, *next;

	if (!s)
		return;
	for (ctx = s->ctxs; ctx; ctx = next) {
		next = ctx->next;
		control_api_close(ctx->api);
		free(ctx);
	}
	uv_mutex_destroy(&s->ctx_lock);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s->state_dir);
	free(s->socket_path);
	free(s);
}
