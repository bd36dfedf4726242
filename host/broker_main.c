/*
 * miosa-broker — options, startup checks, the event loop, signals and a
 * clean shutdown (docs/broker.md).
 *
 * Startup runs on the main thread before the loop does, so it may block
 * (master key file, SQLite migrations): nothing else is running yet.  Once
 * the loop runs, SQLite is only touched from worker threads.
 *
 * Exit status: 0 after a clean shutdown, 1 when startup fails or shutdown
 * cannot finish in time, 2 for a bad option or config file.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "audit.h"
#include "audit_retention.h"
#include "broker_config.h"
#include "control_api.h"
#include "control_server.h"
#include "guest_gateway.h"
#include "policy_tally.h"
#include "log.h"
#include "master_key.h"
#include "upstream_tls.h"

#ifndef MIOSA_VERSION
#define MIOSA_VERSION "0.0.0"
#endif

#define BROKER_EXIT_OK 0
#define BROKER_EXIT_FAILURE 1
#define BROKER_EXIT_USAGE 2
#define BROKER_ERR_MAX 1024

struct broker {
	struct broker_config cfg;
	struct master_key *key;
	uv_loop_t loop;
	bool loop_open;
	uv_signal_t sig_term, sig_int, sig_hup;
	bool signals_open;
	struct control_server *server;
	struct guest_gateway *gateway;
	struct audit_writer *audit;       /* the egress audit log (fail closed) */
	struct policy_tally *tally;       /* observed hosts, written in batches */
	struct audit_pruner *pruner;      /* audit retention; NULL: keep forever */
	struct upstream_tls *upstream_tls; /* system trust store + --upstream-ca */
	bool stopping;
	bool abandoned;        /* shutdown gave up: workers may still run */
};

/* Log why startup failed (%m: errno at the call) and return -1. */
__attribute__((format(printf, 1, 2)))
static int broker_fail(const char *fmt, ...)
{
	char reason[BROKER_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	log_event(LOG_LEVEL_ERROR, "startup_failed", "reason", reason);
	return -1;
}

/* With fd 0-2 closed, the control socket could become "stderr" and get our logs. */
static void broker_reserve_std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR | O_NOCTTY) < 0)
			_exit(BROKER_EXIT_FAILURE);
}

/* The state directory exists (created 0700 if not), is a directory and is writable. */
static int broker_check_state_dir(const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return broker_fail("cannot create state directory %s: %m", dir);
	if (stat(dir, &st) < 0)
		return broker_fail("state directory %s: %m", dir);
	if (!S_ISDIR(st.st_mode))
		return broker_fail("state directory %s is not a directory", dir);
	if (access(dir, W_OK | X_OK) < 0)
		return broker_fail("state directory %s is not writable: %m", dir);
	return 0;
}

/* dirname() into a buffer, without touching path. */
static void broker_dirname(const char *path, char out[PATH_MAX])
{
	const char *slash = strrchr(path, '/');
	size_t len = !slash ? 0 : slash == path ? 1 : (size_t)(slash - path);

	if (len == 0)
		strcpy(out, ".");
	else
		snprintf(out, PATH_MAX, "%.*s", (int)len, path);
}

/*
 * First run: the key file's directory (default /etc/miosa) may not exist
 * yet; create that one level, 0700, and nothing above it.
 */
static int broker_prepare_key_dir(const char *key_path)
{
	char dir[PATH_MAX];

	broker_dirname(key_path, dir);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return broker_fail("cannot create directory %s for the master key: %m (use --master-key)",
				   dir);
	return 0;
}

/* M7: a backup of the state directory must not carry the key that opens it. */
static void broker_warn_key_placement(const struct broker_config *cfg)
{
	char dir[PATH_MAX], real_key_dir[PATH_MAX], real_state[PATH_MAX];
	size_t n;

	broker_dirname(cfg->master_key, dir);
	if (!realpath(dir, real_key_dir) || !realpath(cfg->state_dir, real_state))
		return;
	n = strlen(real_state);
	if (strncmp(real_key_dir, real_state, n) == 0 &&
	    (real_key_dir[n] == '\0' || real_key_dir[n] == '/' || n == 1))
		log_event(LOG_LEVEL_WARN, "master_key_in_state_dir", "path", cfg->master_key);
}

/* Does the state directory already hold a database? */
static bool broker_has_state_db(const char *state_dir)
{
	char path[PATH_MAX];
	struct stat st;
	int n = snprintf(path, sizeof(path), "%s/state.db", state_dir);

	return n > 0 && (size_t)n < sizeof(path) && lstat(path, &st) == 0;
}

/*
 * A new key only comes with a new database: with state.db present, a
 * missing key file means a wrong --master-key path, and creating a fresh
 * key there would only leave a useless key file behind.
 */
static int broker_load_key(struct broker *b)
{
	char err[BROKER_ERR_MAX] = "";
	int r;

	if (broker_has_state_db(b->cfg.state_dir)) {
		r = master_key_load(b->cfg.master_key, &b->key, err, sizeof(err));
		if (r == -ENOENT)
			return broker_fail("%s, but %s/state.db does; refusing to create a new key "
					   "(check --master-key)", err, b->cfg.state_dir);
	} else {
		if (broker_prepare_key_dir(b->cfg.master_key) < 0)
			return -1;
		r = master_key_load_or_create(b->cfg.master_key, &b->key, err, sizeof(err));
	}
	if (r < 0)
		return broker_fail("%s", err);
	if (r == 1)
		log_event(LOG_LEVEL_INFO, "master_key_created", "path", b->cfg.master_key);
	broker_warn_key_placement(&b->cfg);
	return 0;
}

/* A bad --upstream-ca must fail now, with a clear reason, not on first use. */
static int broker_check_upstream_ca(const char *path)
{
	struct stat st;
	bool regular;
	int fd;

	if (!path)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return broker_fail("upstream CA %s: %m", path);
	regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	close(fd);
	if (!regular)
		return broker_fail("upstream CA %s is not a regular file", path);
	return 0;
}

/* Open state.db once on this thread (migrations, tenant "default"), then close it. */
static int broker_open_state(struct broker *b)
{
	char err[BROKER_ERR_MAX] = "";
	struct control_api *api = NULL;
	int r;

	r = control_api_open(b->cfg.state_dir, b->key, &api, err, sizeof(err));
	if (r < 0)
		return broker_fail("cannot open the state database: %s", err);
	r = control_api_bootstrap(api, err, sizeof(err));
	control_api_close(api);
	if (r < 0)
		return broker_fail("cannot initialise the state database: %s", err);
	return 0;
}

static void broker_log_rules(const struct broker_config *cfg)
{
	for (size_t i = 0; i < cfg->n_connect_to; i++) {
		const struct broker_connect_to *r = &cfg->connect_to[i];
		struct log_line l;

		if (!log_begin(&l, LOG_LEVEL_INFO, "connect_to_rule"))
			return;
		log_str(&l, "host", r->host[0] ? r->host : "*");
		log_uint(&l, "port", r->port);
		log_str(&l, "to_host", r->to_host[0] ? r->to_host : "=");
		log_uint(&l, "to_port", r->to_port);
		log_end(&l);
	}
}

static void broker_log_ready(const struct broker *b)
{
	struct log_line l;

	if (!log_begin(&l, LOG_LEVEL_INFO, "broker_ready"))
		return;
	log_str(&l, "version", MIOSA_VERSION);
	log_int(&l, "pid", getpid());
	log_str(&l, "state_dir", b->cfg.state_dir);
	log_str(&l, "control_socket", b->cfg.control_socket);
	log_str(&l, "listen", b->cfg.has_listen ? b->cfg.listen_text : NULL);
	log_uint(&l, "worker_threads", b->cfg.worker_threads);
	log_uint(&l, "max_connections", b->cfg.max_connections);
	log_end(&l);
}

static void broker_on_signals_closed(uv_handle_t *h)
{
	(void)h;
}

static void broker_close_signals(struct broker *b)
{
	if (!b->signals_open)
		return;
	b->signals_open = false;
	uv_close((uv_handle_t *)&b->sig_term, broker_on_signals_closed);
	uv_close((uv_handle_t *)&b->sig_int, broker_on_signals_closed);
	uv_close((uv_handle_t *)&b->sig_hup, broker_on_signals_closed);
}

static void broker_on_server_done(struct control_server *server, int status, void *data)
{
	struct broker *b = data;

	(void)server;
	if (status < 0) {
		/* A worker is still inside a request: its context cannot be closed. */
		b->abandoned = true;
		uv_stop(&b->loop);
		return;
	}
	broker_close_signals(b); /* the loop then runs out of handles and returns */
}

static void broker_on_signal(uv_signal_t *h, int signum)
{
	struct broker *b = h->data;
	struct log_line l;

	if (signum == SIGHUP) {
		log_event(LOG_LEVEL_INFO, "signal_ignored", "signal", "SIGHUP");
		return;
	}
	if (b->stopping) {
		log_event(LOG_LEVEL_WARN, "shutdown_forced", "signal", strsignal(signum));
		b->abandoned = true;
		uv_stop(&b->loop);
		return;
	}
	b->stopping = true;
	if (log_begin(&l, LOG_LEVEL_INFO, "shutdown_started")) {
		log_str(&l, "signal", signum == SIGTERM ? "SIGTERM" : "SIGINT");
		log_uint(&l, "timeout_s", b->cfg.shutdown_timeout);
		log_end(&l);
	}
	/* First: answers exec requests blocked on workers, so the server can drain. */
	guest_gateway_shutdown(b->gateway);
	control_server_shutdown(b->server, (uint64_t)b->cfg.shutdown_timeout * 1000,
				broker_on_server_done, b);
}

static int broker_start_signals(struct broker *b)
{
	uv_signal_t *sigs[] = { &b->sig_term, &b->sig_int, &b->sig_hup };
	const int nums[] = { SIGTERM, SIGINT, SIGHUP };
	int r;

	for (size_t i = 0; i < 3; i++) {
		uv_signal_init(&b->loop, sigs[i]);
		sigs[i]->data = b;
	}
	b->signals_open = true;
	for (size_t i = 0; i < 3; i++)
		if ((r = uv_signal_start(sigs[i], broker_on_signal, nums[i])) < 0)
			return broker_fail("cannot handle signals: %s", uv_strerror(r));
	return 0;
}

/*
 * The guest side: listeners for every sandbox with a transport, and the
 * control API's events.  Half the worker threads at most may wait in exec
 * (each exec holds one until the command ends): the rest keep serving the
 * API and the gateway's own store lookups.
 */
/* The pruner's report, on its thread (log.h is thread-safe). */
static void broker_on_audit_pruned(void *userdata, int status, uint64_t pruned,
				   const char *errmsg)
{
	struct log_line l;

	(void)userdata;
	if (!log_begin(&l, status < 0 ? LOG_LEVEL_WARN : LOG_LEVEL_INFO,
		       status < 0 ? "audit_prune_failed" : "audit_pruned"))
		return;
	log_uint(&l, "rows", pruned);
	if (status < 0) {
		log_errno(&l, status);
		log_str(&l, "reason", errmsg);
	}
	log_end(&l);
}

/*
 * The egress data path's shared pieces, made before the gateway: the audit
 * writer thread (its own store handle) and the upstream TLS context (reads
 * the trust store and --upstream-ca now, so a bad file fails startup).
 */
static int broker_start_egress(struct broker *b)
{
	struct upstream_tls_config tc = {
		.extra_ca_file = b->cfg.upstream_ca,
		.session_cache_slots = UPSTREAM_TLS_SESSION_SLOTS_DEFAULT,
	};
	/* No batch window: every request waits for its row's commit, so a
	 * window would add its whole length to each sequential request (it
	 * cost 2 ms/request in bench/egress_bench.sh).  Rows that arrive while
	 * a commit runs still share the next one: group commit without delay. */
	struct audit_writer_opts ao = { .batch_ms = 0 };
	/* Retention: a thread with its own connection, bounded transactions
	 * (audit_retention.h); the loop never waits for it. */
	struct audit_pruner_opts po = {
		.policy = { .days = b->cfg.audit_retention_days,
			    .max_rows = b->cfg.audit_max_rows },
		.report = broker_on_audit_pruned,
	};
	char err[BROKER_ERR_MAX] = "";

	if (audit_writer_open(b->cfg.state_dir, &ao, &b->audit, err, sizeof(err)) < 0)
		return broker_fail("audit log: %s", err);
	/* One SQLite write (and fsync) per request cost ~0.3-1.4 ms of the
	 * added latency (docs/performance.md): count in memory instead. */
	if (policy_tally_open(b->cfg.state_dir, b->cfg.observed_flush_ms, &b->tally, err,
			      sizeof(err)) < 0)
		return broker_fail("observed-host tally: %s", err);
	control_api_set_tally(b->tally);
	if ((b->cfg.audit_retention_days || b->cfg.audit_max_rows) &&
	    audit_pruner_start(b->cfg.state_dir, &po, &b->pruner, err, sizeof(err)) < 0)
		return broker_fail("audit retention: %s", err);
	if (upstream_tls_new(&tc, &b->upstream_tls, err, sizeof(err)) < 0)
		return broker_fail("upstream TLS: %s", err);
	return 0;
}

static int broker_start_gateway(struct broker *b)
{
	struct guest_gateway_options opts = {
		.state_dir = b->cfg.state_dir,
		.master_key = b->key,
		.connect_to = b->cfg.connect_to,
		.n_connect_to = b->cfg.n_connect_to,
		.vsock_listen = b->cfg.vsock_listen,
		.max_execs = b->cfg.worker_threads / 2 ? b->cfg.worker_threads / 2 : 1,
		.audit = b->audit,
		.upstream_tls = b->upstream_tls,
		.connect_timeout_ms = (uint64_t)b->cfg.upstream_connect_timeout * 1000,
		.response_timeout_ms = (uint64_t)b->cfg.upstream_response_timeout * 1000,
		.upstream_idle_timeout_ms = (uint64_t)b->cfg.upstream_idle_timeout * 1000,
		.tcp_ports = b->cfg.guest_tcp_ports,
		.n_tcp_ports = b->cfg.n_guest_tcp_ports,
		.tally = b->tally,
	};
	char err[BROKER_ERR_MAX] = "";

	if (guest_gateway_start(&b->loop, &opts, &b->gateway, err, sizeof(err)) < 0)
		return broker_fail("guest gateway: %s", err);
	control_api_set_events(guest_gateway_events(b->gateway));
	return 0;
}

static int broker_start_server(struct broker *b)
{
	struct control_server_options opts = {
		.state_dir = b->cfg.state_dir,
		.master_key = b->key,
		.socket_path = b->cfg.control_socket,
		.listen = b->cfg.has_listen ? (const struct sockaddr *)&b->cfg.listen : NULL,
		.max_connections = b->cfg.max_connections,
		.idle_timeout_ms = (uint64_t)b->cfg.idle_timeout * 1000,
		.audit = b->audit,
	};
	char err[BROKER_ERR_MAX] = "";

	if (control_server_start(&b->loop, &opts, &b->server, err, sizeof(err)) < 0)
		return broker_fail("%s", err);
	return 0;
}

/* Process-wide settings that must precede any libuv or libsodium use. */
static int broker_init_process(const struct broker_config *cfg)
{
	char n[16];

	/* libuv writes with write(2): a peer that went away must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	/* libuv sizes its threadpool from this once, on first use. */
	snprintf(n, sizeof(n), "%u", cfg->worker_threads);
	if (setenv("UV_THREADPOOL_SIZE", n, 1) < 0)
		return broker_fail("cannot set UV_THREADPOOL_SIZE: %m");
	if (sodium_init() < 0)
		return broker_fail("libsodium failed to initialise");
	if (control_api_global_init() < 0)
		return broker_fail("the control API failed to initialise");
	return 0;
}

static int broker_start(struct broker *b)
{
	int r;

	if (broker_init_process(&b->cfg) < 0 ||
	    broker_check_state_dir(b->cfg.state_dir) < 0 ||
	    broker_load_key(b) < 0 ||
	    broker_check_upstream_ca(b->cfg.upstream_ca) < 0 ||
	    broker_open_state(b) < 0)
		return -1;
	if ((r = uv_loop_init(&b->loop)) < 0)
		return broker_fail("cannot create the event loop: %s", uv_strerror(r));
	b->loop_open = true;
	if (broker_start_egress(b) < 0 || broker_start_gateway(b) < 0 ||
	    broker_start_server(b) < 0 ||
	    broker_start_signals(b) < 0)
		return -1;
	broker_log_rules(&b->cfg);
	broker_log_ready(b);
	return 0;
}

/* Release everything; only after the loop has nothing left running. */
static void broker_cleanup(struct broker *b)
{
	if (b->loop_open) {
		broker_close_signals(b);
		guest_gateway_shutdown(b->gateway);
		if (b->server && !b->stopping)
			control_server_shutdown(b->server, (uint64_t)b->cfg.shutdown_timeout * 1000,
						broker_on_server_done, b);
		uv_run(&b->loop, UV_RUN_DEFAULT); /* let close callbacks run */
		control_server_free(b->server);
		control_api_set_events(NULL);
		guest_gateway_free(b->gateway);
		if (uv_loop_close(&b->loop) < 0)
			log_event(LOG_LEVEL_WARN, "loop_close_failed", "reason", "handles still open");
	}
	/* After the loop drained: no stream or worker job uses them any more;
	 * closing the writer commits the rows still queued. */
	upstream_tls_free(b->upstream_tls);
	audit_pruner_stop(b->pruner);
	audit_writer_close(b->audit);
	/* After every user of the tally is gone: its last flush saves what the
	 * final requests recorded (a clean shutdown loses no observation). */
	control_api_set_tally(NULL);
	policy_tally_close(b->tally);
	master_key_free(b->key);
	broker_config_free(&b->cfg);
}

int main(int argc, char *argv[])
{
	static struct broker b; /* static: reachable for leak checkers if we _exit */
	char err[BROKER_CONFIG_ERR_MAX] = "";
	int r;

	broker_reserve_std_fds();
	r = broker_config_from_args(argc, argv, &b.cfg, err, sizeof(err));
	if (r == BROKER_CONFIG_HELP) {
		broker_config_help(stdout, "miosa-broker");
		return BROKER_EXIT_OK;
	}
	if (r == BROKER_CONFIG_VERSION) {
		printf("miosa-broker %s\n", MIOSA_VERSION);
		return BROKER_EXIT_OK;
	}
	if (r < 0) {
		fprintf(stderr, "miosa-broker: %s\nTry 'miosa-broker --help'.\n", err);
		return BROKER_EXIT_USAGE;
	}
	log_set_level(b.cfg.log_level);
	if (broker_start(&b) < 0) {
		broker_cleanup(&b);
		return BROKER_EXIT_FAILURE;
	}
	uv_run(&b.loop, UV_RUN_DEFAULT);
	if (b.abandoned) {
		/* exit() would join the threadpool and wait for the stuck request. */
		log_event(LOG_LEVEL_ERROR, "shutdown_incomplete", "reason",
			  "requests still running; exiting without closing the state database");
		_exit(BROKER_EXIT_FAILURE);
	}
	broker_cleanup(&b);
	log_event(LOG_LEVEL_INFO, "shutdown_complete", NULL, NULL);
	return BROKER_EXIT_OK;
}
