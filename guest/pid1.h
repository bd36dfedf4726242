/*
 * pid1 — what the agent does only as PID 1 of the guest (init mode, and
 * getpid() == 1): mount the kernel filesystems, load the kernel modules
 * the transport needs, power off on request.  Reaping every zombie is
 * reaper.h (it runs in every mode).
 *
 *   pid1_mount_all(): /proc, /sys, /dev (devtmpfs: CONFIG_DEVTMPFS_MOUNT is
 *     off in Debian's kernel), /dev/pts, /dev/shm, /run, /tmp, each only
 *     when it is not already a mount point (an initramfs or a rootfs init
 *     before us may have mounted some); the directory is created if absent.
 *   pid1_load_modules(): the modules listed in the order file (kmod.h;
 *     KMOD_ORDER_FILE in images built by vm-images/build-initramfs), in
 *     order.  We are /init: nothing (no shell, udev or modprobe) loaded them
 *     before us.  Each result is logged; a missing or failing module does
 *     not stop the agent (the transport then says why it cannot connect).
 *     No order file: nothing to load (a rootfs whose kernel has them built
 *     in, or loads them otherwise).
 *   pid1_watch_signals(): SIGTERM, SIGINT (ctrl-alt-del: the kernel's
 *     immediate reboot on it is turned off, so it reaches us as SIGINT),
 *     SIGPWR, SIGUSR1 and SIGUSR2 (busybox halt/poweroff send those to
 *     PID 1) power the guest off: pid1_poweroff().
 *   pid1_poweroff(): SIGTERM to every process, up to PID1_GRACE_MS for them
 *     to exit (reaping meanwhile), SIGKILL to the rest, sync(),
 *     reboot(RB_POWER_OFF).  Never returns: PID 1 must not exit (the kernel
 *     would panic).  It blocks the loop, on purpose: nothing else runs then.
 *
 * Contract: pid1_mount_all() and pid1_load_modules() log each failure (the
 * boot console is where someone will look) and return how many failed
 * (pid1_load_modules(): an unreadable or malformed order file counts as one
 * failure and loads nothing).  Blocking, run once before the loop.
 */
#ifndef MIOSA_PID1_H
#define MIOSA_PID1_H

#include <uv.h>

#define PID1_GRACE_MS 5000u

int pid1_mount_all(void);

int pid1_load_modules(const char *order_file);

__attribute__((warn_unused_result))
int pid1_watch_signals(uv_loop_t *loop);

__attribute__((noreturn))
void pid1_poweroff(void);

#endif
