/*
 * pid1 — what the agent does only as PID 1 of the guest (init mode, and
 * getpid() == 1): mount the kernel filesystems, power off on request.
 * Reaping every zombie is reaper.h (it runs in every mode).  Loading the
 * vsock kernel modules is the initramfs's job (vm-images/), before us.
 *
 *   pid1_mount_all(): /proc, /sys, /dev (devtmpfs: CONFIG_DEVTMPFS_MOUNT is
 *     off in Debian's kernel), /dev/pts, /dev/shm, /run, /tmp, each only
 *     when it is not already a mount point (an initramfs or a rootfs init
 *     before us may have mounted some); the directory is created if absent.
 *   pid1_watch_signals(): SIGTERM, SIGINT (ctrl-alt-del), SIGPWR, SIGUSR1
 *     and SIGUSR2 (busybox halt/poweroff send those to PID 1) power the
 *     guest off: pid1_poweroff().
 *   pid1_poweroff(): SIGTERM to every process, up to PID1_GRACE_MS for them
 *     to exit (reaping meanwhile), SIGKILL to the rest, sync(),
 *     reboot(RB_POWER_OFF).  Never returns: PID 1 must not exit (the kernel
 *     would panic).  It blocks the loop, on purpose: nothing else runs then.
 *
 * Contract: logs each failed mount (the boot console is where someone will
 * look); returns how many mounts failed.
 */
#ifndef MIOSA_PID1_H
#define MIOSA_PID1_H

#include <uv.h>

#define PID1_GRACE_MS 5000u

int pid1_mount_all(void);

__attribute__((warn_unused_result))
int pid1_watch_signals(uv_loop_t *loop);

__attribute__((noreturn))
void pid1_poweroff(void);

#endif
