/*
 * miosa-vsock — the vhost-user backend for QEMU's vhost-user-vsock-pci, one
 * process per VM (docs/vsock.md).
 *
 *   miosa-vsock --vhost-user SOCK --uds PATH --guest-cid CID [--log-level L]
 *
 * Lifetime follows the frontend, as a VMM-supervised backend should: it
 * listens on SOCK before QEMU starts, serves one QEMU connection and exits
 * when that connection ends.  Exit status: 0 when QEMU disconnects after
 * stopping the rings (a clean guest or QEMU shutdown) or on SIGTERM/SIGINT;
 * 1 when QEMU vanishes with rings running, breaks the protocol, the guest
 * corrupts a ring, or startup fails; 2 for a bad option.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "log.h"
#include "vsock_device.h"

#ifndef MIOSA_VERSION
#define MIOSA_VERSION "0.0.0"
#endif

#define EXIT_USAGE 2

static const char usage_text[] =
	"Usage: miosa-vsock --vhost-user SOCK --uds PATH --guest-cid CID [--log-level LEVEL]\n"
	"\n"
	"vhost-user backend for QEMU's vhost-user-vsock-pci: guest virtio-vsock\n"
	"streams become host Unix sockets (the Firecracker hybrid-vsock convention).\n"
	"\n"
	"  --vhost-user SOCK  listen here for QEMU (-chardev socket,path=SOCK); start\n"
	"                     miosa-vsock first, QEMU connects once at startup\n"
	"  --uds PATH         guest -> host port P connects to PATH_P; host -> guest:\n"
	"                     connect to PATH, write \"CONNECT P\\n\", read \"OK <port>\\n\"\n"
	"  --guest-cid CID    the guest's CID (3..4294967294), given to the guest\n"
	"                     through the device's config space\n"
	"  --log-level LEVEL  debug | info | warn | error (default info); logs go to stderr\n"
	"  --help, --version\n"
	"\n"
	"QEMU needs shared guest memory, e.g.:\n"
	"  -object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem\n"
	"  -chardev socket,id=c,path=SOCK -device vhost-user-vsock-pci,chardev=c\n"
	"\n"
	"One process serves one VM and exits when QEMU disconnects: status 0 after a\n"
	"clean shutdown (rings stopped) or SIGTERM/SIGINT, 1 when QEMU vanishes with\n"
	"the device running, breaks the vhost-user protocol or the guest corrupts a\n"
	"ring, or startup fails, 2 for a bad option.\n";

struct options {
	const char *vhost_user;
	const char *uds;
	uint64_t guest_cid;
	enum log_level level;
};

struct app {
	uv_loop_t loop;
	uv_signal_t sig_term, sig_int;
	struct vsock_device *dev;
	int status;
};

/* Decimal only, whole string, in range: CIDs 0-2 are reserved (hypervisor,
 * local, host) and 2^32-1 means "any". */
static int parse_cid(const char *s, uint64_t *ret_cid)
{
	char *end;
	unsigned long long v;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < 3 || v > 0xfffffffeull)
		return -ERANGE;
	*ret_cid = v;
	return 0;
}

/* 0 = run, 1 = printed help/version, <0 = usage error (message in *ret_err). */
static int parse_args(int argc, char **argv, struct options *o, const char **ret_err)
{
	static char err[256];

	*o = (struct options){ .level = LOG_LEVEL_INFO };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage_text, stdout);
			return 1;
		}
		if (!strcmp(a, "--version")) {
			printf("miosa-vsock %s\n", MIOSA_VERSION);
			return 1;
		}
		if (strcmp(a, "--vhost-user") && strcmp(a, "--uds") && strcmp(a, "--guest-cid") &&
		    strcmp(a, "--log-level")) {
			snprintf(err, sizeof(err), "unknown option '%.64s'", a);
			goto bad;
		}
		if (!v) {
			snprintf(err, sizeof(err), "option '%s' needs a value", a);
			goto bad;
		}
		i++;
		if (!strcmp(a, "--vhost-user"))
			o->vhost_user = v;
		else if (!strcmp(a, "--uds"))
			o->uds = v;
		else if (!strcmp(a, "--guest-cid")) {
			if (parse_cid(v, &o->guest_cid) < 0) {
				snprintf(err, sizeof(err),
					 "--guest-cid '%.32s' is not a number in 3..4294967294", v);
				goto bad;
			}
		} else if (log_level_from_string(v, &o->level) < 0) {
			snprintf(err, sizeof(err), "--log-level '%.32s' is not debug, info, warn or error", v);
			goto bad;
		}
	}
	if (!o->vhost_user || !o->uds || !o->guest_cid) {
		snprintf(err, sizeof(err), "--vhost-user, --uds and --guest-cid are required");
		goto bad;
	}
	if (!*o->vhost_user || !*o->uds) {
		snprintf(err, sizeof(err), "socket paths must not be empty");
		goto bad;
	}
	return 0;
bad:
	*ret_err = err;
	return -EINVAL;
}

static void on_finished(void *ctx, int err, const char *why)
{
	struct app *app = ctx;
	struct log_line l;

	app->status = err == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
	if (log_begin(&l, err == 0 ? LOG_LEVEL_INFO : LOG_LEVEL_ERROR,
		      err == 0 ? "frontend_disconnected" : "device_failed")) {
		log_str(&l, "reason", why);
		if (err < 0)
			log_errno(&l, err);
		log_end(&l);
	}
	uv_stop(&app->loop);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct app *app = h->data;

	log_event(LOG_LEVEL_INFO, "shutdown_started", "signal", strsignal(signum));
	app->status = EXIT_SUCCESS;
	uv_stop(&app->loop);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

int main(int argc, char **argv)
{
	struct vsock_device_hooks hooks;
	struct vsock_device_config cfg;
	struct app app = { .status = EXIT_FAILURE };
	struct options o;
	const char *err = NULL, *where = NULL;
	struct log_line l;
	int r;

	r = parse_args(argc, argv, &o, &err);
	if (r == 1)
		return EXIT_SUCCESS;
	if (r < 0) {
		fprintf(stderr, "miosa-vsock: %s\nTry 'miosa-vsock --help'.\n", err);
		return EXIT_USAGE;
	}
	log_set_level(o.level);
	signal(SIGPIPE, SIG_IGN);
	if ((r = uv_loop_init(&app.loop)) < 0) {
		log_event(LOG_LEVEL_ERROR, "startup_failed", "reason", uv_strerror(r));
		return EXIT_FAILURE;
	}
	cfg = (struct vsock_device_config){ o.vhost_user, o.uds, o.guest_cid };
	hooks = (struct vsock_device_hooks){ .finished = on_finished, .ctx = &app };
	if ((r = vsock_device_new(&app.loop, &cfg, &hooks, &app.dev, &where)) < 0) {
		if (log_begin(&l, LOG_LEVEL_ERROR, "startup_failed")) {
			log_str(&l, "step", where);
			log_str(&l, "path", where && !strcmp(where, "uds") ? o.uds : o.vhost_user);
			log_errno(&l, r);
			log_end(&l);
		}
		goto out;
	}
	uv_signal_init(&app.loop, &app.sig_term);
	uv_signal_init(&app.loop, &app.sig_int);
	app.sig_term.data = app.sig_int.data = &app;
	uv_signal_start(&app.sig_term, on_signal, SIGTERM);
	uv_signal_start(&app.sig_int, on_signal, SIGINT);
	if (log_begin(&l, LOG_LEVEL_INFO, "vsock_ready")) {
		log_str(&l, "vhost_user", o.vhost_user);
		log_str(&l, "uds", o.uds);
		log_uint(&l, "guest_cid", o.guest_cid);
		log_str(&l, "version", MIOSA_VERSION);
		log_end(&l);
	}
	uv_run(&app.loop, UV_RUN_DEFAULT);
	if (log_begin(&l, LOG_LEVEL_INFO, "vsock_stopped")) {
		struct vsock_device_stats s;

		vsock_device_get_stats(app.dev, &s);
		log_uint(&l, "tx_packets", s.tx_packets);
		log_uint(&l, "rx_packets", s.rx_packets);
		log_uint(&l, "tx_malformed", s.tx_malformed);
		log_int(&l, "status", app.status);
		log_end(&l);
	}
	vsock_device_free(app.dev);
out:
	uv_walk(&app.loop, close_walk, NULL);
	uv_run(&app.loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&app.loop) < 0)
		log_event(LOG_LEVEL_WARN, "loop_close_failed", "reason", "handles still open");
	return app.status;
}
