#include "pid1.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent_log.h"
#include "kmod.h"

#define M "pid1"

struct pid1_mount {
	const char *source, *target, *type;
	unsigned long flags;
	const char *options;
	mode_t dir_mode;
};

/* In order: /dev before /dev/pts and /dev/shm. */
static const struct pid1_mount mounts[] = {
	{ "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0555 },
	{ "sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0555 },
	{ "devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755", 0755 },
	{ "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666", 0755 },
	{ "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777 },
	{ "tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", 0755 },
	{ "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777 },
};

static const int poweroff_signals[] = { SIGTERM, SIGINT, SIGPWR, SIGUSR1, SIGUSR2 };

/* A mount point differs from its parent in device (or is the root). */
static bool is_mount_point(const char *path)
{
	char parent[64];
	struct stat st, pst;

	snprintf(parent, sizeof(parent), "%s/..", path);
	if (stat(path, &st) < 0 || stat(parent, &pst) < 0)
		return false;
	return st.st_dev != pst.st_dev || st.st_ino == pst.st_ino;
}

static int mount_one(const struct pid1_mount *m)
{
	if (is_mount_point(m->target))
		return 0;
	if (mkdir(m->target, m->dir_mode) < 0 && errno != EEXIST)
		return -errno;
	if (mount(m->source, m->target, m->type, m->flags, m->options) < 0)
		return -errno;
	return 1;
}

int pid1_mount_all(void)
{
	int failed = 0;

	for (size_t i = 0; i < sizeof(mounts) / sizeof(mounts[0]); i++) {
		int r = mount_one(&mounts[i]);

		if (r < 0) {
			agent_log_error(M, "mount %s on %s: %s", mounts[i].type, mounts[i].target,
					strerror(-r));
			failed++;
		} else if (r > 0) {
			agent_log_debug(M, "mounted %s on %s", mounts[i].type, mounts[i].target);
		}
	}
	return failed;
}

/* Why one module did not load, in words for the boot console. */
static const char *module_error(int dirfd, const char *path, int r)
{
	/* the kernel also says ENOENT for an unknown symbol */
	if (r == -ENOENT && faccessat(dirfd, path, R_OK, 0) == 0)
		return "unknown symbol: a module it needs is not loaded (order file, dmesg)";
	if (r == -ENOENT)
		return "no such file in the image";
	return strerror(-r);
}

/* Entries are relative to the order file's directory: open that. */
static int open_order_dir(const char *order_file)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(order_file, '/');
	int n;

	if (!slash)
		return open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	n = snprintf(dir, sizeof(dir), "%.*s", (int)(slash - order_file), order_file);
	if (n < 0 || (size_t)n >= sizeof(dir))
		return -1;
	return open(n == 0 ? "/" : dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

int pid1_load_modules(const char *order_file)
{
	static char text[KMOD_ORDER_MAX + 1];
	struct kmod_order order;
	size_t len, line = 0, loaded = 0, present = 0;
	int dirfd, failed = 0, r;

	if ((r = kmod_order_read(order_file, text, sizeof(text), &len)) == -ENOENT) {
		agent_log_info(M, "no %s: no kernel modules to load", order_file);
		return 0;
	}
	if (r < 0) {
		agent_log_error(M, "cannot read %s: %s, loading no kernel modules", order_file,
				strerror(-r));
		return 1;
	}
	if ((r = kmod_order_parse(text, len, &order, &line)) < 0) {
		if (r == -E2BIG)
			agent_log_error(M, "%s line %zu: more than %u modules, loading none",
					order_file, line, KMOD_MAX_MODULES);
		else
			agent_log_error(M, "%s line %zu: not a module path (.ko, [A-Za-z0-9._+-/], "
					   "no . or .. component) or listed twice, loading none",
					order_file, line);
		return 1;
	}
	if ((dirfd = open_order_dir(order_file)) < 0) {
		agent_log_error(M, "cannot open the directory of %s: %s, loading no kernel modules",
				order_file, strerror(errno));
		return 1;
	}
	for (size_t i = 0; i < order.count; i++) {
		char path[KMOD_PATH_MAX + 1];

		snprintf(path, sizeof(path), "%.*s", (int)order.entry[i].len,
			 text + order.entry[i].off);
		r = kmod_load(dirfd, path);
		if (r == 0) {
			loaded++;
			agent_log_info(M, "kernel module %s loaded", path);
		} else if (r > 0) {
			present++;
			agent_log_info(M, "kernel module %s already loaded or built in", path);
		} else {
			failed++;
			agent_log_error(M, "cannot load kernel module %s: %s, carrying on", path,
					module_error(dirfd, path, r));
		}
	}
	close(dirfd);
	agent_log_info(M, "kernel modules from %s: %zu loaded, %zu already there, %d failed",
		       order_file, loaded, present, failed);
	return failed;
}

/* Reaps what has exited; true when no child is left. */
static bool reap_all(void)
{
	for (;;) {
		pid_t pid = waitpid(-1, NULL, WNOHANG);

		if (pid > 0 || (pid < 0 && errno == EINTR))
			continue;
		return pid < 0 && errno == ECHILD;
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits up to ms for every child to be gone. */
static bool wait_children(uint64_t ms)
{
	const struct timespec tick = { 0, 20 * 1000 * 1000 };
	uint64_t deadline = now_ms() + ms;

	while (!reap_all()) {
		if (now_ms() >= deadline)
			return false;
		nanosleep(&tick, NULL);
	}
	return true;
}

void pid1_poweroff(void)
{
	/* kill(-1) reaches every process but PID 1 (POSIX, Linux) */
	kill(-1, SIGTERM);
	if (!wait_children(PID1_GRACE_MS)) {
		agent_log_warn(M, "processes still running after %u ms, killing them", PID1_GRACE_MS);
		kill(-1, SIGKILL);
		(void)wait_children(1000);
	}
	sync();
	agent_log_info(M, "powering off");
	reboot(RB_POWER_OFF);
	/* only without CAP_SYS_BOOT: stay alive, PID 1 must never exit */
	agent_log_error(M, "reboot(RB_POWER_OFF): %s", strerror(errno));
	for (;;)
		pause();
}

static void on_signal(uv_signal_t *handle, int signum)
{
	(void)handle;
	agent_log_info(M, "%s received, shutting down", strsignal(signum));
	pid1_poweroff();
}

int pid1_watch_signals(uv_loop_t *loop)
{
	static uv_signal_t handles[sizeof(poweroff_signals) / sizeof(poweroff_signals[0])];
	int r;

	/* Without this the kernel reboots at once on ctrl-alt-del (C_A_D on, the
	 * default) instead of sending us SIGINT for a clean power-off. */
	if (reboot(RB_DISABLE_CAD) < 0) {
		/* EINVAL in a child PID namespace: ctrl-alt-del is the machine's */
		if (errno == EINVAL)
			agent_log_debug(M, "reboot(RB_DISABLE_CAD): not the initial PID namespace");
		else
			agent_log_warn(M, "reboot(RB_DISABLE_CAD): %s, ignoring", strerror(errno));
	}
	/* static: PID 1 never closes them */
	for (size_t i = 0; i < sizeof(handles) / sizeof(handles[0]); i++)
		if ((r = uv_signal_init(loop, &handles[i])) < 0 ||
		    (r = uv_signal_start(&handles[i], on_signal, poweroff_signals[i])) < 0)
			return r;
	return 0;
}
