/*
 * miosa-init — the in-VM agent (shared/DESIGN.md "Processes", docs/guest.md).
 *
 *   miosa-init [--no-init] [--transport vsock:CID:PORT | unix:PATH]
 *              [--runtime-dir DIR] [--resolv-conf PATH] [--log-level LVL]
 *
 * Init mode (the default) owns the guest: as PID 1 it mounts the kernel
 * filesystems, loads the kernel modules its image lists (kmod.h) and powers
 * off on SIGTERM; it installs the sandbox CA in the
 * system trust store and writes /etc/profile.d/miosa.sh.  Run in init mode
 * but not as PID 1 (a service that still owns the guest), it does the
 * latter and exits on SIGTERM.  With --no-init it changes nothing outside
 * its network namespace and DIR, except the resolv.conf it is given.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "agent_log.h"
#include "control.h"
#include "dns_stub.h"
#include "egress_capture.h"
#include "env.h"
#include "frame.h"
#include "kmod.h"
#include "netsetup.h"
#include "pid1.h"
#include "reaper.h"

#define M "main"
#define DEFAULT_RUNTIME_DIR "/run/miosa"
#define DNS_STUB_ADDR "127.0.0.1"
#define DNS_STUB_PORT 53

struct options {
	bool init_mode;
	const char *transport;
	const char *runtime_dir;
	const char *resolv_conf;
	enum agent_log_level log_level;
};

struct agent {
	uv_loop_t *loop;
	struct options opt;
	bool pid1;
	struct transport_spec spec;
	struct env *env;
	struct reaper *reaper;
	struct dns_stub *dns;
	struct egress_capture *egress;
	struct control *control;
	uv_signal_t sigterm, sigint;
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: miosa-init [--no-init] [--transport vsock:CID:PORT | unix:PATH]\n"
		"                  [--runtime-dir DIR] [--resolv-conf PATH] [--log-level LVL]\n"
		"\n"
		"The miosa in-VM agent: placeholder env for every process it starts, exec\n"
		"requests from the broker, a DNS stub on 127.0.0.1:53 and capture of every\n"
		"TCP connection to 198.18.0.0/15, all carried to the broker over vsock.\n"
		"\n"
		"  --no-init             run as a service: touch nothing outside the network\n"
		"                        namespace and DIR except the --resolv-conf file\n"
		"  --transport SPEC      vsock:CID:PORT (default %s) or unix:PATH\n"
		"                        (connects to PATH_1024, the hybrid-vsock convention)\n"
		"  --runtime-dir DIR     ca.pem and ca-bundle.pem go here (default %s)\n"
		"  --resolv-conf PATH    pointed at the stub (default %s)\n"
		"  --log-level LVL       error, warn, info (default) or debug\n"
		"  --help, --version\n",
		TRANSPORT_DEFAULT, DEFAULT_RUNTIME_DIR, DNS_STUB_RESOLV_CONF);
}

/* 0 to run, 1 to exit 0 (--help, --version), -1 to exit 2. */
static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "no-init", no_argument, NULL, 'n' },
		{ "transport", required_argument, NULL, 't' },
		{ "runtime-dir", required_argument, NULL, 'r' },
		{ "resolv-conf", required_argument, NULL, 'c' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	*o = (struct options){ .init_mode = true, .transport = TRANSPORT_DEFAULT,
			       .runtime_dir = DEFAULT_RUNTIME_DIR,
			       .resolv_conf = DNS_STUB_RESOLV_CONF, .log_level = AGENT_LOG_INFO };
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'n': o->init_mode = false; break;
		case 't': o->transport = optarg; break;
		case 'r': o->runtime_dir = optarg; break;
		case 'c': o->resolv_conf = optarg; break;
		case 'l':
			if (agent_log_level_parse(optarg, &o->log_level) < 0) {
				fprintf(stderr, "miosa-init: --log-level: unknown level '%.32s'\n", optarg);
				return -1;
			}
			break;
		case 'h': usage(stdout); return 1;
		case 'V': printf("miosa-init %s\n", MIOSA_VERSION); return 1;
		default: usage(stderr); return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "miosa-init: unexpected argument '%.64s'\n", argv[optind]);
		return -1;
	}
	return 0;
}

/* Children inherit 0-2 and exec.c relies on pipe ends being >= 3: make sure
 * they are open (the console for PID 1, else /dev/null). */
static void ensure_stdio(bool pid1)
{
	for (int fd = 0; fd <= 2; fd++) {
		int nfd;

		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		nfd = open(pid1 ? "/dev/console" : "/dev/null", O_RDWR | O_NOCTTY);
		if (nfd < 0)
			nfd = open("/dev/null", O_RDWR);
		if (nfd >= 0 && nfd != fd) {
			dup2(nfd, fd);
			close(nfd);
		}
	}
}

/* A failure a service reports by exiting, PID 1 by logging and carrying on. */
static int start_failed(struct agent *a, const char *what, int r)
{
	agent_log_error(M, "%s: %s%s", what, strerror(-r), a->pid1 ? ", carrying on" : "");
	return a->pid1 ? 0 : r;
}

static int start_network(struct agent *a)
{
	int r;

	if ((r = netsetup_apply()) < 0)
		return start_failed(a, "network setup (lo up, 198.18.0.0/15 local)", r);
	agent_log_info(M, "lo up, %s/%d routed locally on lo", NETSETUP_SYNTHETIC_NET,
		       NETSETUP_SYNTHETIC_PREFIX);
	if (netsetup_has_default_route() > 0)
		agent_log_warn(M, "a default route exists: traffic outside %s/%d is not carried "
				  "by the broker, ignoring",
			       NETSETUP_SYNTHETIC_NET, NETSETUP_SYNTHETIC_PREFIX);
	return 0;
}

static int start_dns(struct agent *a)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(DNS_STUB_PORT) };
	int r;

	inet_pton(AF_INET, DNS_STUB_ADDR, &addr.sin_addr);
	if ((r = dns_stub_start(a->loop, &a->spec, &addr, &a->dns)) < 0)
		return start_failed(a, "DNS stub on 127.0.0.1:53", r);
	/* only the init owns /etc and may replace a symlinked resolv.conf */
	if ((r = dns_stub_write_resolv_conf(a->opt.resolv_conf, a->opt.init_mode)) < 0)
		return start_failed(a, a->opt.resolv_conf, r);
	agent_log_info(M, "DNS stub on 127.0.0.1:53, %s points at it", a->opt.resolv_conf);
	return 0;
}

static int start_agent(struct agent *a)
{
	struct control_config cfg = {
		.transport = a->spec,
		.runtime_dir = a->opt.runtime_dir,
		.init_mode = a->opt.init_mode,
	};
	int r;

	if ((r = reaper_new(a->loop, &a->reaper)) < 0)
		return start_failed(a, "SIGCHLD handler", r);
	if ((r = env_new(&a->env)) < 0)
		return r;
	if (mkdir(a->opt.runtime_dir, 0755) < 0 && errno != EEXIST)
		if ((r = start_failed(a, a->opt.runtime_dir, -errno)) < 0)
			return r;
	if ((r = start_network(a)) < 0 || (r = start_dns(a)) < 0)
		return r;
	if ((r = egress_capture_new(a->loop, &a->spec, &a->egress)) < 0)
		return start_failed(a, "TCP capture", r);
	if ((r = control_start(a->loop, &cfg, a->env, a->reaper, a->egress, &a->control)) < 0)
		return start_failed(a, "control stream", r);
	return 0;
}

/* --- Shutdown (not PID 1: pid1.h powers off instead) ------------------------------------ */

static void on_control_closed(void *data)
{
	struct agent *a = data;

	/* every exec has been reaped: the reaper can go */
	reaper_close(a->reaper);
	a->reaper = NULL;
}

static void on_stop_signal(uv_signal_t *handle, int signum)
{
	struct agent *a = handle->data;

	agent_log_info(M, "%s received, exiting", strsignal(signum));
	uv_close((uv_handle_t *)&a->sigterm, NULL);
	uv_close((uv_handle_t *)&a->sigint, NULL);
	dns_stub_close(a->dns);
	egress_capture_close(a->egress);
	if (a->control)
		control_close(a->control, on_control_closed, a);
	else
		on_control_closed(a);
}

static int watch_signals(struct agent *a)
{
	int r;

	if (a->pid1)
		return pid1_watch_signals(a->loop);
	uv_signal_init(a->loop, &a->sigterm);
	uv_signal_init(a->loop, &a->sigint);
	a->sigterm.data = a->sigint.data = a;
	if ((r = uv_signal_start(&a->sigterm, on_stop_signal, SIGTERM)) < 0 ||
	    (r = uv_signal_start(&a->sigint, on_stop_signal, SIGINT)) < 0)
		return r;
	return 0;
}

int main(int argc, char **argv)
{
	struct agent a = { .loop = uv_default_loop() };
	int r;

	if ((r = parse_options(argc, argv, &a.opt)) != 0)
		return r > 0 ? 0 : 2;
	agent_log_set_level(a.opt.log_level);
	if (transport_spec_parse(a.opt.transport, &a.spec) < 0) {
		fprintf(stderr, "miosa-init: --transport: expected vsock:CID:PORT or unix:PATH "
				"(PATH at most %zu bytes), got '%.128s'\n",
			TRANSPORT_PATH_MAX, a.opt.transport);
		return 2;
	}
	a.pid1 = a.opt.init_mode && getpid() == 1;
	/* every write to a closed socket or pipe is an error return, not death */
	signal(SIGPIPE, SIG_IGN);
	/* Each stream being opened holds a 64 KiB frame decoder for one round
	 * trip.  Served by mmap, they go back to the kernel when freed, so the
	 * agent's RSS follows its live connections rather than the peak of a
	 * burst of opens (the heap would keep that peak). */
	mallopt(M_MMAP_THRESHOLD, FRAME_MAX_PAYLOAD);
	if (a.pid1)
		pid1_mount_all();
	ensure_stdio(a.pid1);
	agent_log_info(M, "miosa-init %s starting: %s, transport %s, runtime dir %s", MIOSA_VERSION,
		       a.pid1 ? "PID 1" : a.opt.init_mode ? "init mode (not PID 1)" : "--no-init",
		       a.opt.transport, a.opt.runtime_dir);
	/* before the transport: AF_VSOCK needs the vsock modules */
	if (a.pid1)
		pid1_load_modules(KMOD_ORDER_FILE);
	if ((r = watch_signals(&a)) < 0 || (r = start_agent(&a)) < 0) {
		agent_log_error(M, "cannot start: %s", strerror(-r));
		if (a.pid1)
			pid1_poweroff(); /* PID 1 must not exit: the kernel would panic */
		return 1;
	}
	uv_run(a.loop, UV_RUN_DEFAULT);
	if (a.pid1)
		pid1_poweroff(); /* unreachable: its signal handles keep the loop alive */
	r = uv_loop_close(a.loop);
	env_free(a.env);
	if (r < 0)
		agent_log_warn(M, "loop closed with handles open: %s", uv_strerror(r));
	return 0;
}
