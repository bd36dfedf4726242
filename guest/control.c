#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent_log.h"
#include "backoff.h"
#include "broker_open.h"
#include "exec.h"
#include "trust.h"
#include "wire.h"

#define M "control"
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

enum control_state {
	CONTROL_WAITING, /* for the retry timer */
	CONTROL_OPENING, /* Hello sent or being sent, HelloAck awaited */
	CONTROL_READY,
};

struct control_exec {
	struct control *c;
	uint64_t generation; /* the connection that asked */
	uint64_t id;
	struct exec *x;
	LIST_ENTRY(control_exec) link;
};

struct control {
	uv_loop_t *loop;
	struct control_config cfg;
	char transport_text[TRANSPORT_SPEC_TEXT_MAX];
	struct env *env;
	struct reaper *reaper;
	struct egress_capture *egress;
	enum control_state state;
	uv_pipe_t pipe;
	bool pipe_open; /* initialised and not yet closed back */
	struct broker_open op;
	struct frame_decoder *decoder;
	uv_timer_t timer; /* retry delay, then the HelloAck deadline */
	bool timer_open;
	struct backoff backoff;
	uint64_t generation; /* bumped by every HelloAck */
	uint8_t boot_id[WIRE_BOOT_ID_SIZE];
	uint32_t max_execs;
	uint64_t output_max;
	LIST_HEAD(, control_exec) execs;
	bool paused;
	bool closing;
	void (*closed)(void *data);
	void *closed_data;
};

static void connect_now(struct control *c);
static void disconnect(struct control *c);

/* --- Sending ------------------------------------------------------------------------- */

struct control_write {
	uv_write_t req;
	struct control *c;
	uint8_t frame[];
};

static void set_paused(struct control *c, bool paused)
{
	struct control_exec *ce;

	if (c->paused == paused)
		return;
	c->paused = paused;
	LIST_FOREACH(ce, &c->execs, link) {
		if (paused)
			exec_pause(ce->x);
		else
			exec_resume(ce->x);
	}
}

static void on_written(uv_write_t *req, int status)
{
	struct control_write *w = container_of(req, struct control_write, req);
	struct control *c = w->c;

	free(w);
	if (status == UV_ECANCELED)
		return;
	if (status < 0) {
		agent_log_warn(M, "write to the broker failed: %s", uv_strerror(status));
		disconnect(c);
		return;
	}
	if (c->paused && c->pipe_open &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) <= CONTROL_WRITE_LOW)
		set_paused(c, false);
}

/* Sends one frame on the control stream; dropped unless connected. */
static void send_msg(struct control *c, const Miosa__GuestToHost *m)
{
	size_t cap = frame_encoded_size(&m->base), len;
	struct control_write *w;
	struct wire_error e = { 0 };
	uv_buf_t buf;
	int r;

	if (c->state != CONTROL_READY || cap > FRAME_MAX_SIZE)
		return;
	w = malloc(sizeof(*w) + cap);
	if (!w) {
		disconnect(c);
		return;
	}
	w->c = c;
	if ((r = wire_frame_guest_to_host(m, w->frame, cap, &len, &e)) < 0) {
		/* our own message broke a rule: a bug, never peer input */
		agent_log_error(M, "cannot frame %s.%s: %s", e.message, e.field, e.reason);
		free(w);
		return;
	}
	buf = uv_buf_init((char *)w->frame, (unsigned)len);
	if ((r = uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, on_written)) < 0) {
		free(w);
		disconnect(c);
		return;
	}
	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > CONTROL_WRITE_HIGH)
		set_paused(c, true);
}

/* --- Execs ----------------------------------------------------------------------------- */

static bool exec_current(const struct control_exec *ce)
{
	return ce->c->state == CONTROL_READY && ce->generation == ce->c->generation;
}

static void sink_output(void *data, uint64_t exec_id, Miosa__ExecOutput__Stream stream,
			const uint8_t *bytes, size_t len)
{
	struct control_exec *ce = data;
	Miosa__GuestToHost m = MIOSA__GUEST_TO_HOST__INIT;
	Miosa__ExecOutput out = MIOSA__EXEC_OUTPUT__INIT;

	if (!exec_current(ce))
		return; /* its connection is gone: nobody to tell */
	out.exec_id = exec_id;
	out.stream = stream;
	out.data.data = (uint8_t *)bytes;
	out.data.len = len;
	m.msg_case = MIOSA__GUEST_TO_HOST__MSG_EXEC_OUTPUT;
	m.exec_output = &out;
	send_msg(ce->c, &m);
}

static void log_exit(const Miosa__ExecExit *e, bool truncated)
{
	const char *cut = truncated ? " (output cut at the limit)" : "";

	switch (e->outcome_case) {
	case MIOSA__EXEC_EXIT__OUTCOME_EXIT_CODE:
		agent_log_info(M, "exec %" PRIu64 ": exit code %d%s", e->exec_id, e->exit_code, cut);
		break;
	case MIOSA__EXEC_EXIT__OUTCOME_SIGNAL:
		agent_log_info(M, "exec %" PRIu64 ": killed by signal %d%s", e->exec_id, e->signal, cut);
		break;
	case MIOSA__EXEC_EXIT__OUTCOME_TIMED_OUT:
		agent_log_info(M, "exec %" PRIu64 ": timed out, killed%s", e->exec_id, cut);
		break;
	default:
		agent_log_info(M, "exec %" PRIu64 ": did not start: %s", e->exec_id, e->start_error);
		break;
	}
}

static void maybe_closed(struct control *c);

static void sink_exit(void *data, const Miosa__ExecExit *e, bool truncated)
{
	struct control_exec *ce = data;
	struct control *c = ce->c;
	Miosa__GuestToHost m = MIOSA__GUEST_TO_HOST__INIT;

	log_exit(e, truncated);
	if (exec_current(ce)) {
		m.msg_case = MIOSA__GUEST_TO_HOST__MSG_EXEC_EXIT;
		m.exec_exit = (Miosa__ExecExit *)e;
		send_msg(c, &m);
	}
	LIST_REMOVE(ce, link);
	free(ce);
	maybe_closed(c);
}

static const struct exec_sink control_sink = { sink_output, sink_exit };

static void send_start_error(struct control *c, uint64_t exec_id, const char *why)
{
	Miosa__GuestToHost m = MIOSA__GUEST_TO_HOST__INIT;
	Miosa__ExecExit e = MIOSA__EXEC_EXIT__INIT;

	agent_log_info(M, "exec %" PRIu64 ": refused: %s", exec_id, why);
	e.exec_id = exec_id;
	e.outcome_case = MIOSA__EXEC_EXIT__OUTCOME_START_ERROR;
	e.start_error = (char *)why;
	m.msg_case = MIOSA__GUEST_TO_HOST__MSG_EXEC_EXIT;
	m.exec_exit = &e;
	send_msg(c, &m);
}

/* Why this request cannot run now, or NULL. */
static const char *exec_refusal(struct control *c, uint64_t id)
{
	struct control_exec *ce;
	uint32_t running = 0;

	LIST_FOREACH(ce, &c->execs, link) {
		if (ce->generation != c->generation)
			continue;
		if (ce->id == id)
			return "exec_id already running";
		running++;
	}
	return running >= c->max_execs ? "too many concurrent execs" : NULL;
}

static int handle_exec(struct control *c, const Miosa__HostToGuest *m)
{
	const Miosa__ExecRequest *req = m->exec;
	const char *refusal = exec_refusal(c, req->exec_id);
	struct control_exec *ce;
	char **envp = NULL;
	char why[WIRE_START_ERROR_MAX];
	int r;

	if (refusal) {
		send_start_error(c, req->exec_id, refusal);
		return 0;
	}
	ce = calloc(1, sizeof(*ce));
	if (!ce) {
		send_start_error(c, req->exec_id, "cannot start: out of memory");
		return 0;
	}
	*ce = (struct control_exec){ .c = c, .generation = c->generation, .id = req->exec_id };
	/* exec callbacks come from the loop, after ce is listed below */
	r = env_build(c->env, req->env, req->n_env, &envp);
	if (r == 0)
		r = exec_start(c->loop, c->reaper, req, envp, c->output_max, &control_sink, ce,
			       &ce->x);
	env_strv_free(envp);
	if (r < 0) {
		snprintf(why, sizeof(why), "cannot start: %s", strerror(-r));
		send_start_error(c, req->exec_id, why);
		free(ce);
		return 0;
	}
	LIST_INSERT_HEAD(&c->execs, ce, link);
	if (c->paused)
		exec_pause(ce->x);
	/* argv[0] only: arguments may carry anything, placeholders included */
	agent_log_info(M, "exec %" PRIu64 ": started %s (%zu args, %zu extra env)", req->exec_id,
		       agent_log_quote(req->argv[0], why, 65), req->n_argv, req->n_env);
	return 0;
}

/* --- Other messages -------------------------------------------------------------------- */

static void write_profile(struct control *c)
{
	int r;

	if (!c->cfg.init_mode)
		return;
	if (mkdir("/etc/profile.d", 0755) < 0 && errno != EEXIST)
		agent_log_warn(M, "mkdir /etc/profile.d: %s, ignoring", strerror(errno));
	if ((r = env_write_profile(c->env, ENV_PROFILE_PATH)) < 0)
		agent_log_warn(M, "cannot write %s: %s, ignoring", ENV_PROFILE_PATH, strerror(-r));
}

static int handle_env_update(struct control *c, const Miosa__HostToGuest *m)
{
	const Miosa__EnvUpdate *u = m->env_update;
	int r;

	if ((r = env_apply_update(c->env, u)) < 0) {
		agent_log_error(M, "env update (+%zu -%zu) not applied: %s", u->n_set, u->n_unset,
				r == -E2BIG ? "more than 1024 bindings" : strerror(-r));
		return 0;
	}
	agent_log_info(M, "env update: %zu set, %zu unset, %zu bindings now", u->n_set, u->n_unset,
		       env_binding_count(c->env));
	write_profile(c);
	return 0;
}

static int handle_ping(struct control *c, const Miosa__HostToGuest *m)
{
	Miosa__GuestToHost out = MIOSA__GUEST_TO_HOST__INIT;
	Miosa__Pong pong = MIOSA__PONG__INIT;

	pong.nonce = m->ping->nonce;
	out.msg_case = MIOSA__GUEST_TO_HOST__MSG_PONG;
	out.pong = &pong;
	send_msg(c, &out);
	return 0;
}

static int handle_second_hello_ack(struct control *c, const Miosa__HostToGuest *m)
{
	(void)c;
	(void)m;
	agent_log_warn(M, "a second HelloAck on one connection: protocol error, reconnecting");
	return -EPROTO;
}

/* Every message the broker may send after HelloAck. */
static const struct control_handler {
	Miosa__HostToGuest__MsgCase msg;
	int (*handle)(struct control *c, const Miosa__HostToGuest *m);
} handlers[] = {
	{ MIOSA__HOST_TO_GUEST__MSG_HELLO_ACK, handle_second_hello_ack },
	{ MIOSA__HOST_TO_GUEST__MSG_ENV_UPDATE, handle_env_update },
	{ MIOSA__HOST_TO_GUEST__MSG_EXEC, handle_exec },
	{ MIOSA__HOST_TO_GUEST__MSG_PING, handle_ping },
};

/* One frame after HelloAck; negative: drop the connection. */
static int dispatch(struct control *c, const struct frame *f)
{
	Miosa__HostToGuest *m = NULL;
	struct wire_error e = { 0 };
	int r;

	if ((r = wire_decode_host_to_guest(f->payload, f->len, &m, &e)) < 0) {
		agent_log_warn(M, "bad frame from the broker: %s.%s: %s, reconnecting", e.message,
			       e.field, e.reason);
		return r;
	}
	r = -EPROTO; /* wire.c admits only the cases below: unreachable */
	for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
		if (handlers[i].msg == m->msg_case) {
			r = handlers[i].handle(c, m);
			break;
		}
	wire_free_host_to_guest(m);
	return r;
}

/* Feeds bytes of the stream; stops at the first bad frame. */
static void feed(struct control *c, const uint8_t *data, size_t len)
{
	uint64_t generation = c->generation;

	while (len > 0 && c->state == CONTROL_READY && c->generation == generation) {
		struct frame f;
		size_t used = 0;
		int r = frame_decoder_feed(c->decoder, data, len, &used, &f);

		if (r < 0) {
			agent_log_warn(M, "broker stream: %s, reconnecting", frame_strerror(r));
			disconnect(c);
			return;
		}
		data += used;
		len -= used;
		if (r == FRAME_READY && dispatch(c, &f) < 0) {
			disconnect(c);
			return;
		}
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	/* consumed by on_read before libuv asks again */
	static char chunk[64 * 1024];

	(void)h;
	(void)suggested;
	*buf = uv_buf_init(chunk, sizeof(chunk));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct control *c = stream->data;

	if (nread > 0) {
		feed(c, (const uint8_t *)buf->base, (size_t)nread);
		return;
	}
	if (nread == 0)
		return;
	if (nread == UV_EOF)
		agent_log_warn(M, "the broker closed the control stream, reconnecting");
	else
		agent_log_warn(M, "control stream: %s, reconnecting", uv_strerror((int)nread));
	disconnect(c);
}

/* --- HelloAck ------------------------------------------------------------------------------ */

static void apply_trust(struct control *c, const char *ca_pem)
{
	char *bundle = NULL, *ca = NULL;
	int r;

	if ((r = trust_write_runtime(c->cfg.runtime_dir, ca_pem, c->cfg.system_bundle, &bundle,
				     &ca)) < 0) {
		agent_log_error(M, "cannot write the sandbox CA to %s: %s, TLS through the broker "
				   "will fail",
				c->cfg.runtime_dir, strerror(-r));
		return;
	}
	if ((r = env_set_trust(c->env, bundle, ca)) < 0)
		agent_log_error(M, "CA variables not set: %s", strerror(-r));
	free(bundle);
	free(ca);
	if (!c->cfg.init_mode)
		return;
	r = trust_append_system(TRUST_SYSTEM_BUNDLE, ca_pem);
	if (r < 0 && r != -ENOENT)
		agent_log_warn(M, "cannot add the sandbox CA to %s: %s, ignoring", TRUST_SYSTEM_BUNDLE,
			       strerror(-r));
}

static void apply_hello_ack(struct control *c, const Miosa__HelloAck *a)
{
	int r;

	if ((r = env_set_bindings(c->env, a->env, a->n_env)) < 0)
		agent_log_error(M, "env bindings not applied: %s", strerror(-r));
	apply_trust(c, a->ca_pem);
	write_profile(c);
	if (c->egress) {
		(void)egress_capture_set_ports(c->egress, a->listen_ports, a->n_listen_ports);
		egress_capture_set_max_connections(c->egress, a->limits->max_connections);
	}
	c->max_execs = a->limits->max_execs;
	c->output_max = a->limits->exec_output_max_bytes;
	agent_log_info(M, "connected to %s: sandbox %s, %zu env bindings, %zu extra ports, "
			  "exec output cap %" PRIu64 " bytes",
		       c->transport_text, a->sandbox_id, a->n_env, a->n_listen_ports, c->output_max);
}

static int start_session(struct control *c, const uint8_t *rest, size_t rest_len)
{
	int r;

	if ((r = frame_decoder_new(&c->decoder)) < 0)
		return r;
	c->pipe.data = c; /* broker_open is done with it */
	if ((r = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read)) < 0)
		return r;
	feed(c, rest, rest_len);
	return 0;
}

/* What a failed connect means for someone reading the boot console. */
static const char *connect_hint(const struct control *c, int r)
{
	if (c->cfg.transport.kind != TRANSPORT_VSOCK)
		return "";
	if (r == UV_ENODEV)
		return " (no virtio-vsock device in this VM)";
	if (r == UV_EAFNOSUPPORT)
		return " (no vsock support: kernel modules not loaded?)";
	return "";
}

static void on_hello_ack(struct broker_open *op, int status, const struct frame *f,
			 const uint8_t *rest, size_t rest_len)
{
	struct control *c = op->data;
	Miosa__HostToGuest *m = NULL;
	struct wire_error e = { 0 };
	int r;

	if (status < 0) {
		agent_log_info(M, "cannot reach the broker at %s: %s%s, reconnecting",
			       c->transport_text,
			       status == -EMSGSIZE ? frame_strerror(status) : uv_strerror(status),
			       connect_hint(c, status));
		disconnect(c);
		return;
	}
	if ((r = wire_decode_host_to_guest(f->payload, f->len, &m, &e)) < 0 ||
	    m->msg_case != MIOSA__HOST_TO_GUEST__MSG_HELLO_ACK) {
		if (r < 0)
			agent_log_warn(M, "bad HelloAck: %s.%s: %s", e.message, e.field, e.reason);
		else
			agent_log_warn(M, "the broker's first frame is not a HelloAck");
		wire_free_host_to_guest(m);
		disconnect(c);
		return;
	}
	uv_timer_stop(&c->timer);
	c->generation++;
	c->state = CONTROL_READY;
	backoff_reset(&c->backoff);
	apply_hello_ack(c, m->hello_ack);
	wire_free_host_to_guest(m);
	if ((r = start_session(c, rest, rest_len)) < 0) {
		agent_log_error(M, "control stream: %s, reconnecting", uv_strerror(r));
		disconnect(c);
	}
}

/* --- Connection life cycle ------------------------------------------------------------------ */

static void on_retry(uv_timer_t *t)
{
	connect_now(container_of(t, struct control, timer));
}

/* Returns the delay, for the caller's log line. */
static uint32_t schedule_retry(struct control *c)
{
	uint32_t delay = backoff_next(&c->backoff);

	c->state = CONTROL_WAITING;
	if (c->closing)
		return 0;
	agent_log_debug(M, "reconnecting in %u ms", delay);
	uv_timer_start(&c->timer, on_retry, delay, 0);
	return delay;
}


static void on_pipe_closed(uv_handle_t *h)
{
	struct control *c = container_of(h, struct control, pipe);

	c->pipe_open = false;
	if (c->closing)
		maybe_closed(c);
	else
		schedule_retry(c);
}

/* Ends the current stream (if any); a retry follows once it has closed. */
static void disconnect(struct control *c)
{
	if (c->state == CONTROL_WAITING && !c->pipe_open)
		return;
	c->state = CONTROL_WAITING;
	if (c->timer_open)
		uv_timer_stop(&c->timer);
	broker_open_cancel(&c->op);
	frame_decoder_free(c->decoder);
	c->decoder = NULL;
	/* outputs of this connection's execs are dropped now: let them flow */
	set_paused(c, false);
	if (c->pipe_open && !uv_is_closing((uv_handle_t *)&c->pipe))
		uv_close((uv_handle_t *)&c->pipe, on_pipe_closed);
}

static void on_hello_timeout(uv_timer_t *t)
{
	struct control *c = container_of(t, struct control, timer);

	agent_log_warn(M, "no HelloAck from %s in %u ms, reconnecting", c->transport_text,
		       CONTROL_HELLO_TIMEOUT_MS);
	disconnect(c);
}

static void connect_now(struct control *c)
{
	Miosa__GuestOpen open = MIOSA__GUEST_OPEN__INIT;
	Miosa__Hello hello = MIOSA__HELLO__INIT;
	int r;

	hello.agent_version = (char *)CONTROL_AGENT_VERSION;
	hello.boot_id.data = c->boot_id;
	hello.boot_id.len = sizeof(c->boot_id);
	open.kind_case = MIOSA__GUEST_OPEN__KIND_CONTROL;
	open.control = &hello;
	c->op.data = c;
	c->state = CONTROL_OPENING;
	if ((r = broker_open_start(&c->op, c->loop, &c->cfg.transport, &c->pipe, &open,
				   on_hello_ack)) < 0) {
		uint32_t delay = schedule_retry(c);

		agent_log_warn(M, "cannot connect to %s: %s%s, retrying in %u ms", c->transport_text,
			       uv_strerror(r), connect_hint(c, r), delay);
		return;
	}
	c->pipe_open = true;
	uv_timer_start(&c->timer, on_hello_timeout, CONTROL_HELLO_TIMEOUT_MS, 0);
}

/* /proc/sys/kernel/random/boot_id: the same for every agent run in one
 * boot, so the broker can tell an agent restart from a guest reboot.
 * Random bytes when it cannot be read. */
static void read_boot_id(uint8_t id[WIRE_BOOT_ID_SIZE])
{
	char text[64] = "";
	size_t n = 0;
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		ssize_t got = read(fd, text, sizeof(text) - 1);
		text[got > 0 ? got : 0] = '\0';
		close(fd);
	}
	for (const char *p = text; *p && n < 2 * WIRE_BOOT_ID_SIZE; p++) {
		int v = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
		if (v < 0)
			continue; /* the dashes */
		id[n / 2] = (uint8_t)(n % 2 ? id[n / 2] | v : v << 4);
		n++;
	}
	if (n == 2 * WIRE_BOOT_ID_SIZE)
		return;
	if (getrandom(id, WIRE_BOOT_ID_SIZE, 0) != (ssize_t)WIRE_BOOT_ID_SIZE)
		memset(id, 0, WIRE_BOOT_ID_SIZE); /* the broker only logs it */
}

static uint64_t random_seed(void)
{
	uint64_t seed = 0;

	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
		seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ (uint64_t)uv_hrtime();
	return seed;
}

int control_start(uv_loop_t *loop, const struct control_config *cfg, struct env *env,
		  struct reaper *reaper, struct egress_capture *egress, struct control **ret_control)
{
	struct control *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->cfg = *cfg;
	c->cfg.runtime_dir = strdup(cfg->runtime_dir);
	c->cfg.system_bundle = cfg->system_bundle ? strdup(cfg->system_bundle) : NULL;
	if (!c->cfg.runtime_dir || (cfg->system_bundle && !c->cfg.system_bundle)) {
		free((char *)c->cfg.runtime_dir);
		free(c);
		return -ENOMEM;
	}
	transport_spec_format(&cfg->transport, c->transport_text, sizeof(c->transport_text));
	c->env = env;
	c->reaper = reaper;
	c->egress = egress;
	c->max_execs = 1;
	c->output_max = 1;
	LIST_INIT(&c->execs);
	read_boot_id(c->boot_id);
	backoff_init(&c->backoff, CONTROL_BACKOFF_BASE_MS, CONTROL_BACKOFF_CAP_MS, random_seed());
	uv_timer_init(loop, &c->timer);
	c->timer_open = true;
	connect_now(c);
	*ret_control = c;
	return 0;
}

/* --- Closing --------------------------------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h)
{
	struct control *c = container_of(h, struct control, timer);

	c->timer_open = false;
	maybe_closed(c);
}

static void maybe_closed(struct control *c)
{
	if (!c->closing || c->pipe_open || c->timer_open || !LIST_EMPTY(&c->execs))
		return;
	free((char *)c->cfg.runtime_dir);
	free((char *)c->cfg.system_bundle);
	if (c->closed)
		c->closed(c->closed_data);
	free(c);
}

void control_close(struct control *c, void (*closed)(void *data), void *data)
{
	struct control_exec *ce;

	if (c->closing)
		return;
	c->closing = true;
	c->closed = closed;
	c->closed_data = data;
	disconnect(c);
	LIST_FOREACH(ce, &c->execs, link)
		exec_kill(ce->x);
	uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}
