/*
 * guest_gateway — the broker's guest side: transports, per-connection
 * sessions (control / dns / egress), sandbox lifecycle, exec.
 *
 * Threads: everything here runs on the loop thread except the two entry
 * points the control API calls from its workers through
 * control_api_events (guest_gateway_events()): lifecycle and binding
 * events, and exec.  Those are queued under a mutex and handed to the loop
 * with a uv_async_t; exec then blocks its worker until the loop has an
 * answer (at most timeout_ms + GUEST_EXEC_GRACE_MS).  SQLite is only
 * touched from workers (uv_queue_work opens its own vault/tenancy handles).
 *
 * Transports (guest_listener.c):
 *   - UDS: per sandbox with transport uds PATH, a listener on PATH_1024
 *     (hybrid-vsock convention), made when the sandbox is created (and for
 *     every such sandbox at start), removed when it is deleted and at
 *     shutdown.  Mode 0600: the VMM's vsock backend (miosa-vsock, QEMU,
 *     Firecracker, Cloud Hypervisor) must run as the broker's user.
 *   - AF_VSOCK port 1024, sandbox found by the peer CID: only with
 *     opts->vsock_listen (default off; never in tests on a dev/CI machine).
 *
 * Lifecycle: guest_gateway_start() (loop not yet running, may block: it
 * lists sandboxes), guest_gateway_shutdown() (stops listeners, closes every
 * guest connection, answers pending exec requests 503; call it before
 * control_server_shutdown() so no worker stays blocked in exec), then
 * guest_gateway_free() once the loop has run the close callbacks.
 * guest_gateway_start(): 0 / negative errno with the reason in err.  On
 * failure *ret_gw is set all the same (like control_server_start(), handles
 * may still be closing): it is already shut down; run the loop, then free.
 */
#ifndef MIOSA_GUEST_GATEWAY_H
#define MIOSA_GUEST_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "broker_config.h"
#include "master_key.h"

#define GUEST_GATEWAY_PORT 1024u
/* Liveness: a Ping every interval; a guest whose Pong for the previous
 * Ping has not arrived when the next one is due is cut off. */
#define GUEST_GATEWAY_PING_INTERVAL_MS 15000u
/* Caps per sandbox: guest connections of every kind, and exec requests in
 * flight (each holds one worker thread while it waits). */
#define GUEST_GATEWAY_CONNS_PER_SANDBOX 1024u
#define GUEST_GATEWAY_CONNS_MAX 16384u
/* The connection must deliver its GuestOpen frame within this. */
#define GUEST_GATEWAY_OPEN_TIMEOUT_MS 10000u
/* Upstream resolve + connect (+ TLS), when options leave it 0. */
#define GUEST_GATEWAY_CONNECT_TIMEOUT_MS 10000u
/* Other ports: how long the broker waits for the guest's first bytes
 * before it splices (a protocol where the server speaks first). */
#define GUEST_GATEWAY_SNIFF_TIMEOUT_MS 500u
/* The HelloAck's listen ports: always these, plus opts.tcp_ports. */
#define GUEST_GATEWAY_LISTEN_PORTS { 80u, 443u }
#define GUEST_GATEWAY_TCP_PORTS_MAX 32u

struct guest_gateway;
struct control_api_events;
struct audit_writer;
struct upstream_tls;
struct policy_tally;

struct guest_gateway_options {
	const char *state_dir;
	const struct master_key *master_key;      /* borrowed; outlives the gateway */
	const struct broker_connect_to *connect_to; /* borrowed */
	size_t n_connect_to;
	bool vsock_listen;
	unsigned max_execs;                        /* concurrent execs, >= 1 */
	/* Egress data path (borrowed; outlive the gateway and its loop's last
	 * run): every request and TCP connection is audited through audit (fail
	 * closed: NULL refuses all egress), upstream TLS through upstream_tls. */
	struct audit_writer *audit;
	struct upstream_tls *upstream_tls;
	/* Upstream timeouts (0: the defaults of broker_config.h, in ms here):
	 * resolve + connect + TLS; request sent -> response head; idle
	 * keep-alive upstream connection. */
	uint64_t connect_timeout_ms;
	uint64_t response_timeout_ms;
	uint64_t upstream_idle_timeout_ms;
	/* Extra ports the agent catches (HelloAck), at most
	 * GUEST_GATEWAY_TCP_PORTS_MAX (more are ignored); borrowed, like
	 * connect_to. */
	const uint16_t *tcp_ports;
	size_t n_tcp_ports;
	/* Observed hosts are counted here and written in batches off the data
	 * path (policy_tally.h; borrowed, outlives the gateway).  NULL: each
	 * allowed request writes its observation itself (one SQLite write). */
	struct policy_tally *tally;
};

__attribute__((warn_unused_result))
int guest_gateway_start(uv_loop_t *loop, const struct guest_gateway_options *opts,
			struct guest_gateway **ret_gw, char *err, size_t err_size);
/* The control API hook (control_api_set_events()); valid until free. */
const struct control_api_events *guest_gateway_events(struct guest_gateway *gw);
void guest_gateway_shutdown(struct guest_gateway *gw);
void guest_gateway_free(struct guest_gateway *gw);

#endif
