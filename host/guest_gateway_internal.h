/*
 * guest_gateway_internal — what the gateway's files share:
 * guest_gateway.c (registry, control API events, exec, env resolution),
 * guest_listener.c (UDS and AF_VSOCK listeners), guest_session.c (one guest
 * connection: GuestOpen dispatch, control and dns streams),
 * guest_dns_map.c (the sandbox's DNS map: loaded from and written to the
 * store before use) and guest_egress.c (egress streams: OpenResult and the
 * raw relay seam).
 * Everything here is loop-thread only unless stated.
 */
#ifndef MIOSA_GUEST_GATEWAY_INTERNAL_H
#define MIOSA_GUEST_GATEWAY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "control_api.h"
#include "frame.h"
#include "guest_exec.h"
#include "guest_gateway.h"
#include "host_pattern.h"
#include "http1.h"
#include "policy.h"
#include "tenancy_types.h"
#include "vault.h"
#include "wire.h"

struct audit_writer;
struct store;
struct dns_synth;
struct egress_http;
struct eh_up;
struct leaf_mint;
struct mitm_ca;
struct policy;
struct swap_result;
struct tenancy;
struct gw_conn;
struct gw_egress;
struct gw_event;
struct gw_exec_job;
struct gw_exec;
struct gw_dns_wait;

struct gw_binding {
	char name[WIRE_ENV_NAME_MAX + 1];
	char placeholder[VAULT_PLACEHOLDER_LEN + 1];
};

struct gw_sandbox {
	struct guest_gateway *gw;
	struct gw_sandbox *next;
	char id[TENANCY_OBJECT_ID_LEN + 1];
	char tenant_id[TENANCY_TENANT_ID_MAX + 1];
	struct tenancy_transport transport;
	/* UDS listener on transport.uds + "_1024". */
	uv_pipe_t listener;
	bool listener_open;           /* handle initialised, close pending or not */
	char listen_path[108];
	dev_t listen_dev;
	ino_t listen_ino;
	/* The synthetic DNS map (guest_dns_map.c): loaded from the store on a
	 * worker before the first dns or egress stream uses it; dns_busy while
	 * that load or the store write of a new mapping is in flight, when
	 * every dns and egress stream of the sandbox waits in dns_wait (FIFO,
	 * bounded by the per-sandbox connection cap). */
	struct dns_synth *dns;
	bool dns_loaded;
	bool dns_busy;
	struct gw_dns_wait *dns_wait_head, **dns_wait_tail;
	/* TLS interception: the sandbox CA (with its key) and its leaf_mint,
	 * loaded lazily on a worker by the first TLS stream; freed with the
	 * sandbox (after its last connection, so no handshake still needs them). */
	struct mitm_ca *ca;
	struct leaf_mint *lm;
	/* Idle upstream connections kept for this sandbox's next streams
	 * (egress_http.c): never shared with another sandbox.  n_pooled
	 * counts them until they are freed (closing ones included), and
	 * keeps the sandbox alive like n_conns. */
	struct eh_up *pool;
	unsigned n_pooled;
	struct gw_conn *control;      /* the live control stream, if any */
	struct gw_binding *env;       /* what the guest was last told */
	size_t n_env;
	unsigned n_conns;
	bool deleted;                 /* out of the registry; freed when idle */
};

enum gw_conn_kind {
	GW_CONN_OPENING,  /* waiting for GuestOpen */
	GW_CONN_CONTROL,
	GW_CONN_DNS,
	GW_CONN_EGRESS,
};

struct gw_conn {
	struct guest_gateway *gw;
	struct gw_sandbox *sb;
	struct gw_conn *prev, *next;  /* gw->conns */
	union {
		uv_pipe_t pipe;
		uv_stream_t stream;
		uv_handle_t handle;
	} h;
	uv_timer_t timer;             /* open timeout; then ping (control) or connect (egress) */
	enum gw_conn_kind kind;
	unsigned refs;                /* open handles + work in flight; free at 0 */
	bool closing;
	struct frame_decoder *dec;    /* opening and control */
	uint8_t *rbuf;                /* FRAME_MAX_SIZE, opening and control */
	/* control */
	bool acked;
	bool resolving, resolve_again;
	bool ping_outstanding;
	uint64_t ping_nonce;
	uint64_t next_exec_id;
	struct gw_exec *execs;
	/* egress */
	struct gw_egress *eg;         /* raw relay (and its upstream resolution) */
	struct egress_http *http;     /* HTTP/TLS proxy streams (egress_http.c) */
};

struct guest_gateway {
	uv_loop_t *loop;
	struct guest_gateway_options opts;
	char *state_dir;
	struct control_api_events events;
	/* Worker -> loop.  mu guards queue, closed and execs_running. */
	uv_mutex_t mu;
	uv_async_t async;
	bool async_open;
	struct gw_event *queue_head, **queue_tail;
	bool closed;
	unsigned execs_running;
	/* Loop only. */
	struct gw_sandbox *sandboxes;
	struct gw_conn *conns;
	unsigned n_conns;
	bool shutting_down;
	int vsock_fd;
	uv_poll_t vsock_poll;
	bool vsock_open;
	/* Per-worker-thread store handles (egress_verdict.c); ctx_lock guards
	 * the registry guest_gateway_free() closes. */
	uint64_t generation;
	uv_mutex_t ctx_lock;
	struct gw_worker_ctx *ctxs;
};

/* guest_gateway.c */
struct gw_sandbox *gw_sandbox_find(struct guest_gateway *gw, const char *id);
struct gw_sandbox *gw_sandbox_find_cid(struct guest_gateway *gw, uint32_t cid);
void gw_sandbox_release(struct gw_sandbox *sb); /* free if deleted and idle */
void gw_resolve_start(struct gw_conn *c, bool hello);
void gw_exec_on_output(struct gw_conn *c, const Miosa__ExecOutput *o);
void gw_exec_on_exit(struct gw_conn *c, const Miosa__ExecExit *e);
void gw_exec_fail_conn(struct gw_conn *c); /* the control stream is going away */

/* guest_listener.c */
int gw_listener_uds_start(struct gw_sandbox *sb);
void gw_listener_uds_stop(struct gw_sandbox *sb);
int gw_listener_vsock_start(struct guest_gateway *gw, char *err, size_t err_size);
void gw_listener_vsock_stop(struct guest_gateway *gw);

/* guest_session.c */
/* A new guest connection for sb: accepted from server (UDS listener), or
 * the accepted fd (AF_VSOCK; closed on failure) when server is NULL. */
void gw_session_accept(struct guest_gateway *gw, struct gw_sandbox *sb, uv_stream_t *server,
		       int fd);
void gw_conn_close(struct gw_conn *c, const char *reason);
void gw_session_start_ping(struct gw_conn *c);
void gw_conn_unref(struct gw_conn *c);
/* Encode msg as one frame and queue it; closes c on failure.  0 / -errno. */
int gw_conn_send_h2g(struct gw_conn *c, const Miosa__HostToGuest *msg);
int gw_conn_send_bytes(struct gw_conn *c, const uint8_t *data, size_t len, bool close_after);
void gw_log_conn(struct gw_conn *c, int level, const char *event, const char *reason);
/* Frame answer as the dns stream's DnsAnswer, then close the stream. */
void gw_dns_send(struct gw_conn *c, const uint8_t *answer, size_t answer_len);

/* guest_dns_map.c: a dns stream's query, and an egress stream's open (its
 * reading stopped), run once the sandbox's map is loaded and no new
 * mapping is being stored. */
void gw_dns_map_query(struct gw_conn *c, const uint8_t *query, size_t len);
void gw_dns_map_egress(struct gw_conn *c, const Miosa__EgressOpen *open, const uint8_t *rest,
		       size_t rest_len);

/* guest_egress.c */
int gw_send_open_result(struct gw_conn *c, bool ok, const char *reason);
void gw_egress_open(struct gw_conn *c, const Miosa__EgressOpen *open, const uint8_t *rest,
		    size_t rest_len);
/*
 * THE SEAM: what an accepted egress stream becomes.  Today a raw TCP relay
 * to the mapped name (or its --connect-to target); the HTTP/TLS proxy
 * (egress_proxy) replaces it for ports 80/443.  name is normalized,
 * pending holds guest bytes already read after the GuestOpen frame.
 */
void egress_stream_start(struct gw_conn *c, const char *name, uint16_t port,
			 const uint8_t *pending, size_t pending_len);
void gw_egress_close(struct gw_conn *c);
void gw_egress_free(struct gw_conn *c);
/* The first --connect-to rule for name:port as curl applies it: target and
 * target_port (the name and port when no rule matches); true when an
 * operator rule matched (its target is exempt from the address checks). */
bool gw_connect_to(const struct guest_gateway *gw, const char *name, uint16_t port,
		   char target[HOST_PATTERN_BUF], uint16_t *ret_port);

/* egress_http.c: ports 80/443 and TLS on any port, through egress_proxy. */
void egress_http_start(struct gw_conn *c, const char *name, uint16_t port, bool tls,
		       const uint8_t *pending, size_t pending_len);
void egress_http_close(struct gw_conn *c);
void egress_http_free(struct gw_conn *c);
/* Close every pooled upstream of sb (sandbox deleted, broker shutting down). */
void egress_http_pool_flush(struct gw_sandbox *sb);

/* egress_verdict.c (worker threads): policy, swap and audit for one request
 * or one TCP connection.  See egress_verdict_run(). */
#define GW_CACHE_SLOTS 16

/* One sandbox's row and policy snapshot as of policy_generation() ==
 * generation (0 = empty slot). */
struct gw_cache_entry {
	uint64_t generation;
	uint64_t last_used;
	struct tenancy_sandbox sandbox;
	struct policy_snapshot *snap;
};

struct gw_worker_ctx {
	struct store *st;                /* guest_dns_map.c */
	struct vault *vault;
	struct tenancy *tenancy;
	struct policy *policy;
	/* This thread's cache (no lock: one thread).  LRU over the slots. */
	struct gw_cache_entry cache[GW_CACHE_SLOTS];
	uint64_t cache_tick;
	struct gw_worker_ctx *next;
};

struct gw_verdict {
	/* in (copied by the loop before queueing) */
	char sandbox_id[TENANCY_OBJECT_ID_LEN + 1];
	char host[HOST_PATTERN_BUF];
	uint16_t port;
	int scheme;                      /* enum store_audit_scheme */
	const struct http1_head *head;   /* NULL: a TCP connection */
	const uint8_t *head_bytes;
	bool audit_allow_now;            /* write the allow row at the verdict */
	/* out */
	int r;                           /* < 0: internal failure (answer 500/refuse) */
	bool allow;
	bool audit_failed;               /* fail closed: 503 MIOSA-Audit-Error */
	char rule[POLICY_RULE_MAX];
	struct swap_result *swap;        /* allowed HTTP: the head to forward */
	struct store_audit_row *row;     /* the row; id > 0 once written */
};

int gw_worker_ctx_get(struct guest_gateway *gw, struct gw_worker_ctx **ret_ctx);
void gw_worker_ctx_close_all(struct guest_gateway *gw);
/* Worker: fills v's outputs.  v->row is allocated here (free it). */
void egress_verdict_run(struct guest_gateway *gw, struct gw_verdict *v);
void egress_verdict_clear(struct gw_verdict *v);
/* Worker: write a row that needs no completion (a refusal) and wait for its
 * commit; logs on failure. */
int egress_verdict_write_row(struct guest_gateway *gw, struct store_audit_row *row);
/* Loop or worker: submit the completion of row (written, row->id set)
 * without waiting; logs on failure. */
void egress_verdict_submit_completion(struct guest_gateway *gw, const struct store_audit_row *row,
				      uint16_t status, uint64_t bytes_up, uint64_t bytes_down,
				      int64_t duration_us);

#endif
