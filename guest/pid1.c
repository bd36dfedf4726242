#include "pid1.h"

#include <errno.h>
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

	/* static: PID 1 never closes them */
	for (size_t i = 0; i < sizeof(handles) / sizeof(handles[0]); i++)
		if ((r = uv_signal_init(loop, &handles[i])) < 0 ||
		    (r = uv_signal_start(&handles[i], on_signal, poweroff_signals[i])) < 0)
			return r;
	return 0;
}
