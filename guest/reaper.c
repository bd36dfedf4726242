#include "reaper.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

struct reaper {
	uv_signal_t sigchld;
	LIST_HEAD(, reaper_watch) watches;
};

static void dispatch(struct reaper *r, pid_t pid, int wstatus)
{
	struct reaper_watch *w;

	LIST_FOREACH(w, &r->watches, link) {
		if (w->pid != pid)
			continue;
		LIST_REMOVE(w, link);
		w->pid = 0;
		w->cb(w, wstatus);
		return;
	}
}

void reaper_collect(struct reaper *r)
{
	for (;;) {
		int wstatus = 0;
		pid_t pid = waitpid(-1, &wstatus, WNOHANG);

		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			return; /* 0: children left but none exited; ECHILD: none */
		dispatch(r, pid, wstatus);
	}
}

static void on_sigchld(uv_signal_t *handle, int signum)
{
	(void)signum;
	reaper_collect(handle->data);
}

static void reaper_free(uv_handle_t *handle)
{
	free(handle->data);
}

int reaper_new(uv_loop_t *loop, struct reaper **ret_reaper)
{
	struct reaper *r = calloc(1, sizeof(*r));
	int err;

	if (!r)
		return -ENOMEM;
	LIST_INIT(&r->watches);
	if ((err = uv_signal_init(loop, &r->sigchld)) < 0) {
		free(r);
		return err;
	}
	r->sigchld.data = r;
	if ((err = uv_signal_start(&r->sigchld, on_sigchld, SIGCHLD)) < 0) {
		uv_close((uv_handle_t *)&r->sigchld, reaper_free);
		return err;
	}
	/* the signal handler is installed and exits from before it are waiting */
	reaper_collect(r);
	*ret_reaper = r;
	return 0;
}

void reaper_close(struct reaper *r)
{
	if (r)
		uv_close((uv_handle_t *)&r->sigchld, reaper_free);
}

void reaper_watch(struct reaper *r, struct reaper_watch *w, pid_t pid, reaper_exit_cb *cb)
{
	w->pid = pid;
	w->cb = cb;
	LIST_INSERT_HEAD(&r->watches, w, link);
}

void reaper_unwatch(struct reaper_watch *w)
{
	if (w->pid == 0)
		return;
	LIST_REMOVE(w, link);
	w->pid = 0;
}
