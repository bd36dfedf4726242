/*
 * control — the agent's control stream with the broker.
 *
 * Connect (transport.h), send GuestOpen{control: Hello{agent version, boot
 * id}}, wait for HelloAck (CONTROL_HELLO_TIMEOUT_MS), apply it:
 *   env bindings (env.h); the sandbox CA (trust.h: DIR/ca.pem, the bundle,
 *   and in init mode the system bundle) and the CA-bundle variables; in
 *   init mode /etc/profile.d/miosa.sh; the listen ports and connection cap
 *   (egress_capture.h); the exec limits.
 * Then serve the broker's frames through a dispatch table: EnvUpdate
 * (applies to processes started afterwards), ExecRequest (exec.h; output
 * streamed as ExecOutput, then one ExecExit), Ping (Pong, same nonce).
 *
 * Broker loss (EOF, error, a malformed frame, no HelloAck in time): the
 * stream closes, the agent logs one line and reconnects after
 * backoff_next() (CONTROL_BACKOFF_BASE_MS doubling to CONTROL_BACKOFF_CAP_MS,
 * jittered); it never exits.  Running execs keep running; their output and
 * exit are dropped (exec ids belong to the connection that asked).
 *
 * Back-pressure: when more than CONTROL_WRITE_HIGH bytes wait to be sent,
 * every exec's output reading pauses until the queue drains below
 * CONTROL_WRITE_LOW; a child whose pipe fills then blocks in write().
 *
 * Contract: loop thread only; logs one line per event.  control_close()
 * kills running execs and calls closed(data) once every exec has been
 * reaped and every handle closed; the control is then freed.
 */
#ifndef MIOSA_CONTROL_H
#define MIOSA_CONTROL_H

#include <stdbool.h>
#include <uv.h>

#include "egress_capture.h"
#include "env.h"
#include "reaper.h"
#include "transport.h"

#define CONTROL_HELLO_TIMEOUT_MS 10000u
#define CONTROL_BACKOFF_BASE_MS 100u
#define CONTROL_BACKOFF_CAP_MS 5000u
#define CONTROL_WRITE_HIGH (256u * 1024)
#define CONTROL_WRITE_LOW (64u * 1024)
#define CONTROL_AGENT_VERSION "miosa-init/" MIOSA_VERSION

struct control_config {
	struct transport_spec transport;
	const char *runtime_dir;   /* ca.pem, ca-bundle.pem */
	bool init_mode;            /* system trust store, /etc/profile.d */
	const char *system_bundle; /* NULL: the distribution's (trust.h) */
};

struct control;

__attribute__((warn_unused_result))
int control_start(uv_loop_t *loop, const struct control_config *cfg, struct env *env,
		  struct reaper *reaper, struct egress_capture *egress, struct control **ret_control);

void control_close(struct control *c, void (*closed)(void *data), void *data);

#endif
