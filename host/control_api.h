/*
 * control_api — the control API's routes and handlers (docs/api.md), as a
 * pure function from one complete request to one response.  No sockets and
 * no event loop here: control_server.c parses HTTP, collects the body and
 * calls control_api_handle() on a worker thread.
 *
 * Contract:
 *   - control_api_global_init() is called once per process before any other
 *     call (it points jansson's allocator at one that wipes freed memory,
 *     because request bodies carry secret values).
 *   - A struct control_api is a per-thread context: it owns that thread's
 *     store connections (vault, tenancy, policy, and a plain store handle
 *     for audit queries).  Open one per worker thread; never
 *     share one between threads.  Every call may block on SQLite.
 *   - control_api_handle() always produces a response (status + JSON body —
 *     except GET /v1/audit/export, whose body is JSON lines or CSV with
 *     content_type set, and GET /v1/audit/tail, whose 200 has no body but
 *     a tail filter the server streams from (control_response.tail) —
 *     errors as {"error": CODE, "message": TEXT} per docs/api.md) and returns
 *     0; it returns a negative errno only when it could not even build a
 *     response (out of memory) — the server then answers a bare 500.
 *   - The request body is borrowed and may hold secret values: the handler
 *     never copies a value outside sodium_malloc'd memory and never puts one
 *     in a response, log line or error message.
 *   - Responses own their body (malloc'd); control_response_free() wipes
 *     and releases it (the answer to an API key's creation holds the key).
 */
#ifndef MIOSA_CONTROL_API_H
#define MIOSA_CONTROL_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "master_key.h"
#include "store.h"

#define CONTROL_API_MAX_BODY 65536u

struct control_api;

/* Who is calling: the Unix socket is the host admin; TCP carries a key. */
enum control_caller_kind {
	CONTROL_CALLER_ADMIN,   /* Unix control socket: every tenant, no key */
	CONTROL_CALLER_TCP,     /* needs Authorization: Bearer msk_live_... */
};

struct control_request {
	enum control_caller_kind caller;
	const char *method;          /* NUL-terminated token, e.g. "GET" */
	const char *path;            /* raw path (still percent-encoded), NUL-terminated */
	const char *query;           /* raw query without '?', "" if none */
	const char *content_type;    /* Content-Type value or NULL */
	const char *bearer;          /* token after "Bearer " or NULL */
	const uint8_t *body;         /* may be NULL when body_len == 0 */
	size_t body_len;             /* <= CONTROL_API_MAX_BODY (server enforces: 413) */
	bool has_body;               /* Content-Length present (even 0) */
};

#define CONTROL_API_DETAIL_MAX 256

/* GET /v1/audit/tail: the validated filter (tenant-scoped for a TCP
 * caller) the server subscribes with.  filter's strings point into strs.
 * has_after: the caller asked for the committed rows with id > after_id
 * first (control_api_audit_replay()); without it the stream starts now. */
struct control_audit_tail {
	struct store_audit_filter filter;
	char strs[5][STORE_ID_MAX + 1];
	bool has_after;
	int64_t after_id;
};

/* Rows a tail replays at most (?after=): the newest of them when there are more. */
#define CONTROL_API_TAIL_REPLAY_MAX 1000u

struct control_response {
	int status;
	char *body;                  /* malloc'd, NUL-terminated; NULL for 204 */
	size_t body_len;
	/* Content-Type of body: NULL = "application/json" (every route but the
	 * audit export); else a static string, never freed. */
	const char *content_type;
	char allow[64];              /* 405: methods the route accepts, else "" */
	/* 500: what failed, for the server's log line (the client only reads
	 * "internal error"); never holds a secret value.  Else "". */
	char detail[CONTROL_API_DETAIL_MAX];
	/* Non-NULL (malloc'd; control_response_free() frees it) on a 200 to
	 * GET /v1/audit/tail: stream committed rows matching it as chunked
	 * JSON lines instead of a body. */
	struct control_audit_tail *tail;
};

__attribute__((warn_unused_result))
int control_api_global_init(void);

/* Open the per-thread context on state_dir with the process' master key. */
__attribute__((warn_unused_result))
int control_api_open(const char *state_dir, const struct master_key *key,
		     struct control_api **ret_api, char *err, size_t err_size);
void control_api_close(struct control_api *api);

/* First start: make sure tenant "default" exists.  0 or -errno. */
__attribute__((warn_unused_result))
int control_api_bootstrap(struct control_api *api, char *err, size_t err_size);

__attribute__((warn_unused_result))
int control_api_handle(struct control_api *api, const struct control_request *req,
		       struct control_response *ret_resp);

/*
 * Are all of api's store connections idle (no transaction, no statement
 * left running)?  A connection left busy keeps reading the snapshot it
 * started with, forever (WAL).  0 = idle; -EBUSY: err says which module
 * and statement, and with reset the connections have been made idle.
 * control_api_handle() runs this (with reset) after every request and puts
 * the message in the response's detail, prefixed "store left busy: ".
 */
__attribute__((warn_unused_result))
int control_api_check_idle(struct control_api *api, bool reset, char *err, size_t err_size);
void control_response_free(struct control_response *resp);

/*
 * GET /v1/audit/tail?after=ID, on a worker thread, called by the server
 * after it subscribed (so a row committed meanwhile is in the replay, the
 * subscription or both): the committed merged rows matching t->filter with
 * id > t->after_id, oldest first, at most CONTROL_API_TAIL_REPLAY_MAX (the
 * newest; when there were more, a {"notice": "tail_gap", ...} line comes
 * first), as JSON lines in *ret_text (malloc'd, NULL when empty), and their
 * ids, ascending, in *ret_ids (malloc'd, NULL when empty).  A row whose
 * completion is not committed yet is replayed without it.  0 or -errno.
 */
__attribute__((warn_unused_result))
int control_api_audit_replay(struct control_api *api, const struct control_audit_tail *t,
			     char **ret_text, size_t *ret_len, int64_t **ret_ids, size_t *ret_n);

/*
 * Events for the guest gateway (guest_gateway.h), process-wide.
 *
 * control_api_set_events() is called once, before any worker runs a request
 * (the pointer is read without a lock); ev and what it points to outlive
 * every request.  The callbacks run on the worker thread of the request,
 * after the change is committed, and must not block on anything but the
 * loop they hand the event to:
 *   - sandbox_created / sandbox_deleted: with the sandbox as it was;
 *   - bindings_changed: a secret was set, rotated or deleted at any scope of
 *     tenant_id (so the resolved env of any of its sandboxes may differ);
 *   - exec: POST /v1/sandboxes/{id}/exec for sandbox s (already in the
 *     caller's reach), raw JSON body (a JSON object; schema in docs/api.md).
 *     Blocks until the command ends or times out and fills *ret_resp (a
 *     complete response, as control_api_handle() would).  0, or -errno when
 *     no response could be built (the server answers a bare 500).
 * Without events (NULL, the default) the exec route answers 503
 * guest_not_connected and the other events are not reported.
 */
struct tenancy_sandbox;
struct control_api_events {
	void (*sandbox_created)(void *data, const struct tenancy_sandbox *s);
	void (*sandbox_deleted)(void *data, const struct tenancy_sandbox *s);
	void (*bindings_changed)(void *data, const char *tenant_id);
	int (*exec)(void *data, const struct tenancy_sandbox *s, const uint8_t *body,
		    size_t body_len, struct control_response *ret_resp);
	void *data;
};

void control_api_set_events(const struct control_api_events *ev);

/*
 * The process' observed-host tally (policy_tally.h), set once like the
 * events (NULL, the default: the data path writes observations itself).
 * Every route that reads the observed list (network status and every
 * network route's answer, pending, lockdown) flushes it first, so it sees
 * every connection recorded before the request; a flush that fails fails
 * the request (503/500) rather than answer from a stale list.
 */
struct policy_tally;
void control_api_set_tally(struct policy_tally *t);

/* An error response built outside the handlers (e.g. 400 from the codec). */
__attribute__((warn_unused_result))
int control_response_error(int status, const char *code, const char *message,
			   struct control_response *ret_resp);

#endif
