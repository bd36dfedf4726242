/*
 * reaper — the one place the agent collects child exit statuses.
 *
 * On SIGCHLD it calls waitpid(-1, WNOHANG) until nothing is left, so every
 * zombie is reaped: our exec children, and in PID 1 mode every orphan the
 * kernel re-parents to us.  A status whose pid is watched goes to its
 * watcher; the rest are dropped.  The agent never uses uv_spawn(), whose own
 * SIGCHLD handling would race with waitpid(-1).
 *
 * Contract:
 *   - Loop thread only.  struct reaper_watch is embedded in the watcher's
 *     state (no allocation); reaper_watch() right after fork(), before
 *     returning to the loop, cannot miss the exit (statuses are collected
 *     from the loop, never from the signal handler).
 *   - cb runs once, from the loop; the watch is already removed then.
 *   - reaper_close(): the reaper is freed from its handle's close callback.
 */
#ifndef MIOSA_REAPER_H
#define MIOSA_REAPER_H

#include <sys/queue.h>
#include <sys/types.h>
#include <uv.h>

struct reaper;
struct reaper_watch;

typedef void reaper_exit_cb(struct reaper_watch *w, int wstatus);

struct reaper_watch {
	pid_t pid;
	reaper_exit_cb *cb;
	void *data; /* the watcher's */
	LIST_ENTRY(reaper_watch) link;
};

__attribute__((warn_unused_result))
int reaper_new(uv_loop_t *loop, struct reaper **ret_reaper);
void reaper_close(struct reaper *r);

void reaper_watch(struct reaper *r, struct reaper_watch *w, pid_t pid, reaper_exit_cb *cb);
/* The pid is no longer of interest (its status will be dropped). */
void reaper_unwatch(struct reaper_watch *w);

/* Collects what is pending now (also done on every SIGCHLD). */
void reaper_collect(struct reaper *r);

#endif
