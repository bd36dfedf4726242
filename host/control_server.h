/*
 * control_server — the control API (docs/api.md) served over HTTP/1.1 on a
 * libuv loop: a Unix socket for the host admin and an optional TCP listener
 * for tenants' API keys.  control_api.c answers; this module moves bytes.
 *
 * Per connection: one sodium_malloc'd buffer of CONTROL_SERVER_HEAD_MAX +
 * CONTROL_API_MAX_BODY bytes (request bodies carry secret values; the
 * buffer is wiped as requests are consumed and when it is freed), parsed
 * with the strict codec (http1.h).  Content-Length bodies only, up to
 * CONTROL_API_MAX_BODY (413 beyond, 411 for chunked); Expect: 100-continue
 * is answered; keep-alive and pipelining with one request at a time, in
 * order; Connection: close honoured.  A complete request runs on a libuv
 * threadpool thread (uv_queue_work) against that thread's own struct
 * control_api, opened lazily and closed by control_server_free(); the
 * response is written back from the loop thread.  A connection that has
 * not delivered a complete request within idle_timeout_ms of being
 * accepted or of its last response, or has not read a response within
 * idle_timeout_ms, is closed; connections beyond max_connections are
 * accepted and closed at once.
 *
 * Audit tail (GET /v1/audit/tail, docs/api.md): when the handler answers
 * 200 with a tail filter, the connection subscribes to the audit writer
 * (audit_tail_subscribe) and streams each committed merged row matching
 * it as one JSON line, Transfer-Encoding: chunked, until the client goes
 * away, the writer drops it (it fell behind: a last line
 * {"error": "tail_dropped", ...}) or the server shuts down.  The loop never
 * waits for a tail: rows wait in the subscription's bounded queue
 * (CONTROL_SERVER_TAIL_QUEUE) while a chunk is being written; a client
 * that does not read a chunk within idle_timeout_ms is closed.  At most
 * CONTROL_SERVER_TAILS_MAX tails at once (503 beyond).  With after=ID
 * the connection subscribes first, then reads the rows after ID on a
 * threadpool thread (control_api_audit_replay(): no SQLite on the loop)
 * and sends them as the stream's first chunk; the stream then skips the
 * ids replayed and those up to ID, so a row committed between the
 * client's list and its tail is sent once.
 *
 * One access log line per request: method, path (never the query), status,
 * duration in µs, caller kind.  Never a body, query or Authorization value.
 * A tail is logged when its stream starts.
 *
 * Contract:
 *   - Loop affinity: every function runs on the loop thread.
 *   - control_server_start() binds and listens before it returns, so every
 *     startup failure is reported there (0 / -errno, reason in err):
 *       * the socket path is taken by a live listener: "control socket PATH
 *         is in use by another process" (-EADDRINUSE); a stale socket is
 *         removed; anything else at the path is refused (-EEXIST);
 *       * PATH.lock (kept open while the server lives) serialises brokers
 *         racing for the same path.
 *     The socket is created mode 0600.
 *   - control_server_shutdown(): stops accepting, unlinks the socket,
 *     closes idle connections, lets requests in progress finish (their
 *     response carries Connection: close; requests queued but not started
 *     get 503), then calls done(0) once everything it owns is closed.  At
 *     timeout_ms, connections that only wait on their peer are cut; if a
 *     request is still running on a worker, done(-ETIMEDOUT) instead, and
 *     the server must then be abandoned, not freed (the worker is still
 *     using a control_api context).  done is called once and is not NULL.
 *   - control_server_start() failing may leave listener handles closing on
 *     the loop: run the loop once more before closing it (they free the
 *     server themselves).
 *   - control_server_free() after done(0): closes every control_api context
 *     (SQLite closed cleanly) and frees the server.  NULL is a no-op.
 */
#ifndef MIOSA_CONTROL_SERVER_H
#define MIOSA_CONTROL_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "master_key.h"

struct audit_writer;

/* Request head cap: request line, fields, final CRLF. */
#define CONTROL_SERVER_HEAD_MAX 16384u
#define CONTROL_SERVER_REQUEST_LINE_MAX 8192u
#define CONTROL_SERVER_HEADERS_MAX 64u
#define CONTROL_SERVER_TAILS_MAX 16u
#define CONTROL_SERVER_TAIL_QUEUE 1024u  /* rows a tail may fall behind */

struct control_server;

struct control_server_options {
	const char *state_dir;
	const struct master_key *master_key;   /* borrowed; outlives the server */
	const char *socket_path;
	const struct sockaddr *listen;         /* NULL: no TCP listener */
	unsigned max_connections;
	uint64_t idle_timeout_ms;
	struct audit_writer *audit;            /* borrowed; NULL: the tail answers 503 */
};

typedef void (*control_server_done_cb)(struct control_server *server, int status, void *data);

__attribute__((warn_unused_result))
int control_server_start(uv_loop_t *loop, const struct control_server_options *opts,
			 struct control_server **ret_server, char *err, size_t err_size);
void control_server_shutdown(struct control_server *server, uint64_t timeout_ms,
			     control_server_done_cb done, void *data);
void control_server_free(struct control_server *server);

#endif
