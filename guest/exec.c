#include "exec.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

enum { PIPE_IN, PIPE_OUT, PIPE_ERR, PIPE_COUNT };

/* What the child reports on the status pipe when it cannot exec. */
enum child_stage { STAGE_SETUP = 1, STAGE_CHDIR, STAGE_EXEC };

struct child_report {
	int stage;
	int err;
};

struct exec_pipe {
	uv_pipe_t handle;
	bool open;    /* not yet uv_close()d */
	bool reading; /* uv_read_start() in effect */
};

struct exec {
	uv_loop_t *loop;
	uint64_t id;
	pid_t pid;
	struct exec_sink sink;
	void *data;
	struct reaper_watch watch;
	struct exec_pipe pipes[PIPE_COUNT];
	uv_write_t stdin_write;
	uv_timer_t timer; /* the timeout, then the drain after the reap */
	bool timer_open;
	uint8_t *stdin_data;
	size_t stdin_len;
	uint64_t output_max;
	uint64_t output_sent;
	unsigned handles; /* initialised and not yet closed back */
	bool paused;
	bool reaped;
	int wstatus;
	bool timed_out;
	bool truncated;
	bool reported;
	struct child_report start_failure; /* stage 0: none */
	uint8_t buf[EXEC_CHUNK_MAX];
};

/* --- Child side (after fork: async-signal-safe calls only) ------------------------ */

struct child_plan {
	int fds[PIPE_COUNT]; /* the child's ends */
	int status_fd;
	char *const *argv;
	char *const *envp;
	const char *cwd;
	const char *path; /* PATH from envp, or NULL */
};

__attribute__((noreturn))
static void child_fail(int status_fd, int stage, int err)
{
	struct child_report rep = { stage, err };

	/* nothing to do if the parent is gone */
	if (write(status_fd, &rep, sizeof(rep)) < 0)
		_exit(127);
	_exit(127);
}

/* execvp() over plan->path; returns the errno to report (EACCES preferred,
 * as execvp does: a match we may not run says more than later misses). */
static int child_exec_path(const struct child_plan *p)
{
	const char *name = p->argv[0], *dir = p->path ? p->path : "";
	size_t name_len = strlen(name);
	int err = ENOENT;
	char full[PATH_MAX];

	if (strchr(name, '/')) {
		execve(name, p->argv, p->envp);
		return errno;
	}
	while (p->path) {
		const char *end = strchrnul(dir, ':');
		size_t dir_len = (size_t)(end - dir);

		/* an empty PATH entry means the current directory */
		if (dir_len + 1 + name_len < sizeof(full)) {
			memcpy(full, dir_len ? dir : ".", dir_len ? dir_len : 1);
			dir_len = dir_len ? dir_len : 1;
			full[dir_len] = '/';
			memcpy(full + dir_len + 1, name, name_len + 1);
			execve(full, p->argv, p->envp);
			if (errno == EACCES)
				err = EACCES;
			else if (errno != ENOENT && errno != ENOTDIR)
				return errno;
		}
		if (*end == '\0')
			break;
		dir = end + 1;
	}
	return err;
}

__attribute__((noreturn))
static void child_run(const struct child_plan *p)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigset_t none;

	/* own session and process group: the timeout kills all of it */
	if (setsid() < 0)
		child_fail(p->status_fd, STAGE_SETUP, errno);
	/* the agent ignores SIGPIPE and libuv installs handlers; exec keeps
	 * ignored signals ignored, so reset every disposition */
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &dfl, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* main() keeps 0-2 open, so the pipe ends are all >= 3 and dup2()
	 * never overwrites one another; dup2 clears CLOEXEC on the copy. */
	for (int i = 0; i < PIPE_COUNT; i++)
		if (dup2(p->fds[i], i) < 0)
			child_fail(p->status_fd, STAGE_SETUP, errno);
	/* anything the agent inherited without CLOEXEC stops here too */
	(void)close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
	if (chdir(p->cwd) < 0)
		child_fail(p->status_fd, STAGE_CHDIR, errno);
	child_fail(p->status_fd, STAGE_EXEC, child_exec_path(p));
}

/* --- Parent side: life cycle ----------------------------------------------------- */

static void exec_free_if_done(struct exec *x)
{
	if (x->reported && x->handles == 0) {
		free(x->stdin_data);
		free(x);
	}
}

static void on_handle_closed(uv_handle_t *handle)
{
	struct exec *x = handle->data;

	x->handles--;
	exec_free_if_done(x);
}

static void close_pipe(struct exec *x, int i)
{
	struct exec_pipe *p = &x->pipes[i];

	if (!p->open)
		return;
	p->open = false;
	p->reading = false;
	uv_close((uv_handle_t *)&p->handle, on_handle_closed);
}

static void close_timer(struct exec *x)
{
	if (!x->timer_open)
		return;
	x->timer_open = false;
	uv_close((uv_handle_t *)&x->timer, on_handle_closed);
}

static const char *start_error_text(const struct child_report *f, char *buf, size_t cap)
{
	if (f->stage == STAGE_EXEC && f->err == ENOENT)
		return "argv[0] not found";
	snprintf(buf, cap, "%s: %s",
		 f->stage == STAGE_CHDIR ? "cannot enter cwd" :
		 f->stage == STAGE_EXEC	 ? "cannot execute argv[0]" :
					   "cannot set up the child",
		 strerror(f->err));
	return buf;
}

/* The one outcome: start_error, timed_out, signal or exit_code. */
static void report(struct exec *x)
{
	Miosa__ExecExit e = MIOSA__EXEC_EXIT__INIT;
	char text[WIRE_START_ERROR_MAX];

	e.exec_id = x->id;
	if (x->start_failure.stage) {
		e.outcome_case = MIOSA__EXEC_EXIT__OUTCOME_START_ERROR;
		e.start_error = (char *)start_error_text(&x->start_failure, text, sizeof(text));
	} else if (x->timed_out) {
		e.outcome_case = MIOSA__EXEC_EXIT__OUTCOME_TIMED_OUT;
		e.timed_out = true;
	} else if (WIFSIGNALED(x->wstatus)) {
		e.outcome_case = MIOSA__EXEC_EXIT__OUTCOME_SIGNAL;
		e.signal = WTERMSIG(x->wstatus);
	} else {
		e.outcome_case = MIOSA__EXEC_EXIT__OUTCOME_EXIT_CODE;
		e.exit_code = WEXITSTATUS(x->wstatus);
	}
	x->reported = true;
	x->sink.exit(x->data, &e, x->truncated);
}

/* Reaped and both output pipes closed: report, release the rest. */
static void maybe_finish(struct exec *x)
{
	if (x->reported || !x->reaped || x->pipes[PIPE_OUT].open || x->pipes[PIPE_ERR].open)
		return;
	close_timer(x);
	close_pipe(x, PIPE_IN);
	report(x);
	exec_free_if_done(x);
}

/* --- Parent side: output ------------------------------------------------------------ */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	struct exec *x = handle->data;

	(void)suggested;
	/* one buffer for both pipes: libuv reads, then calls on_output, before
	 * it allocates again */
	*buf = uv_buf_init((char *)x->buf, sizeof(x->buf));
}

static void deliver(struct exec *x, Miosa__ExecOutput__Stream stream, const uint8_t *bytes,
		    size_t len)
{
	uint64_t room = x->output_max - x->output_sent;

	if (len > room) {
		len = (size_t)room;
		x->truncated = true;
	}
	if (len > 0)
		x->sink.output(x->data, x->id, stream, bytes, len);
	x->output_sent += len;
	if (x->output_sent == x->output_max) {
		/* the cap: stop reading; the command gets EPIPE on its next write */
		x->truncated = true;
		close_pipe(x, PIPE_OUT);
		close_pipe(x, PIPE_ERR);
	}
}

static void on_output(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct exec *x = stream->data;
	int i = stream == (uv_stream_t *)&x->pipes[PIPE_OUT].handle ? PIPE_OUT : PIPE_ERR;

	if (nread > 0)
		deliver(x,
			i == PIPE_OUT ? MIOSA__EXEC_OUTPUT__STREAM__STREAM_STDOUT :
					MIOSA__EXEC_OUTPUT__STREAM__STREAM_STDERR,
			(const uint8_t *)buf->base, (size_t)nread);
	else if (nread < 0)
		close_pipe(x, i); /* EOF, or an error: nothing more to read */
	maybe_finish(x);
}

static int start_reading(struct exec *x, int i)
{
	struct exec_pipe *p = &x->pipes[i];
	int r;

	if (!p->open || p->reading)
		return 0;
	if ((r = uv_read_start((uv_stream_t *)&p->handle, on_alloc, on_output)) < 0)
		return r;
	p->reading = true;
	return 0;
}

void exec_pause(struct exec *x)
{
	x->paused = true;
	for (int i = PIPE_OUT; i <= PIPE_ERR; i++)
		if (x->pipes[i].reading) {
			uv_read_stop((uv_stream_t *)&x->pipes[i].handle);
			x->pipes[i].reading = false;
		}
}

void exec_resume(struct exec *x)
{
	x->paused = false;
	for (int i = PIPE_OUT; i <= PIPE_ERR; i++)
		if (start_reading(x, i) < 0)
			close_pipe(x, i);
	maybe_finish(x);
}

/* --- Parent side: stdin, timeout, exit ---------------------------------------------- */

static void on_stdin_written(uv_write_t *req, int status)
{
	struct exec *x = container_of(req, struct exec, stdin_write);

	/* EPIPE when the command exits without reading: not our concern */
	(void)status;
	close_pipe(x, PIPE_IN);
}

static void feed_stdin(struct exec *x)
{
	uv_buf_t buf = uv_buf_init((char *)x->stdin_data, (unsigned)x->stdin_len);

	if (x->stdin_len == 0 ||
	    uv_write(&x->stdin_write, (uv_stream_t *)&x->pipes[PIPE_IN].handle, &buf, 1,
		     on_stdin_written) < 0)
		close_pipe(x, PIPE_IN); /* EOF at once */
}

static void kill_group(struct exec *x)
{
	/* the child is its own group leader (setsid before exec) */
	if (!x->reaped && x->pid > 0 && kill(-x->pid, SIGKILL) < 0)
		kill(x->pid, SIGKILL);
}

static void on_timeout(uv_timer_t *timer)
{
	struct exec *x = timer->data;
	siginfo_t si = { 0 };

	/* exited just now, SIGCHLD not yet handled: that is not a timeout */
	if (waitid(P_PID, (id_t)x->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == x->pid)
		return;
	x->timed_out = true;
	kill_group(x);
}

static void on_drained(uv_timer_t *timer)
{
	struct exec *x = timer->data;

	/* paused by back-pressure, the output is not drained: keep waiting */
	if (x->paused) {
		uv_timer_start(&x->timer, on_drained, EXEC_DRAIN_MS, 0);
		return;
	}
	/* a background process still holds a pipe: stop waiting for it */
	close_pipe(x, PIPE_OUT);
	close_pipe(x, PIPE_ERR);
	maybe_finish(x);
}

static void on_reaped(struct reaper_watch *w, int wstatus)
{
	struct exec *x = w->data;

	x->reaped = true;
	x->wstatus = wstatus;
	if (x->timer_open) {
		uv_timer_stop(&x->timer);
		if (x->pipes[PIPE_OUT].open || x->pipes[PIPE_ERR].open)
			uv_timer_start(&x->timer, on_drained, EXEC_DRAIN_MS, 0);
	}
	maybe_finish(x);
}

void exec_kill(struct exec *x)
{
	kill_group(x);
}

uint64_t exec_id(const struct exec *x)
{
	return x->id;
}

/* --- Start --------------------------------------------------------------------------- */

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}

/* The PATH value of envp, for the child's own lookup. */
static const char *envp_path(char *const *envp)
{
	for (char *const *e = envp; *e; e++)
		if (strncmp(*e, "PATH=", 5) == 0)
			return *e + 5;
	return NULL;
}

/*
 * fork() and wait on the status pipe until the child has exec'd (EOF) or
 * reported why it could not.  parent[] and child[] are the pipe ends per
 * stdio stream; child[] and the status pipe are closed here.
 */
static int spawn(struct exec *x, struct child_plan *plan, int *child, int status[2])
{
	struct child_report rep;
	ssize_t n;

	x->pid = fork();
	if (x->pid < 0)
		return -errno;
	if (x->pid == 0) {
		close(status[0]);
		plan->status_fd = status[1];
		child_run(plan);
	}
	close(status[1]);
	status[1] = -1;
	close_fds(child, PIPE_COUNT);
	do
		n = read(status[0], &rep, sizeof(rep));
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(rep))
		x->start_failure = rep;
	close(status[0]);
	status[0] = -1;
	return 0;
}

static int open_parent_ends(struct exec *x, int *parent)
{
	int r;

	for (int i = 0; i < PIPE_COUNT; i++) {
		struct exec_pipe *p = &x->pipes[i];

		if ((r = uv_pipe_init(x->loop, &p->handle, 0)) < 0)
			return r;
		p->handle.data = x;
		x->handles++;
		p->open = true;
		if ((r = uv_pipe_open(&p->handle, parent[i])) < 0)
			return r;
		parent[i] = -1; /* the handle owns it now */
	}
	return 0;
}

/* Pipes for stdin (child reads [0]), stdout and stderr (child writes [1]). */
static int make_pipes(int *parent, int *child, int status[2])
{
	int fds[2];

	for (int i = 0; i < PIPE_COUNT; i++) {
		if (pipe2(fds, O_CLOEXEC) < 0)
			return -errno;
		parent[i] = i == PIPE_IN ? fds[1] : fds[0];
		child[i] = i == PIPE_IN ? fds[0] : fds[1];
	}
	return pipe2(status, O_CLOEXEC) < 0 ? -errno : 0;
}

static int exec_alloc(uv_loop_t *loop, const Miosa__ExecRequest *req, uint64_t output_max,
		      const struct exec_sink *sink, void *data, struct exec **ret_exec)
{
	struct exec *x = calloc(1, sizeof(*x));

	if (!x)
		return -ENOMEM;
	x->loop = loop;
	x->id = req->exec_id;
	x->sink = *sink;
	x->data = data;
	x->output_max = output_max;
	x->watch.data = x;
	if (req->stdin_data.len > 0) {
		x->stdin_data = malloc(req->stdin_data.len);
		if (!x->stdin_data) {
			free(x);
			return -ENOMEM;
		}
		memcpy(x->stdin_data, req->stdin_data.data, req->stdin_data.len);
		x->stdin_len = req->stdin_data.len;
	}
	*ret_exec = x;
	return 0;
}

static int start_timer(struct exec *x, uint32_t timeout_ms)
{
	int r;

	if ((r = uv_timer_init(x->loop, &x->timer)) < 0)
		return r;
	x->timer.data = x;
	x->handles++;
	x->timer_open = true;
	return timeout_ms ? uv_timer_start(&x->timer, on_timeout, timeout_ms, 0) : 0;
}

/* After fork: the child runs (or reported a start failure); from here on
 * every outcome, even a local failure, goes through sink->exit. */
static void run_parent(struct exec *x, struct reaper *reaper, int *parent, uint32_t timeout_ms)
{
	int r;

	reaper_watch(reaper, &x->watch, x->pid, on_reaped);
	if ((r = open_parent_ends(x, parent)) < 0 || (r = start_timer(x, timeout_ms)) < 0 ||
	    (r = start_reading(x, PIPE_OUT)) < 0 || (r = start_reading(x, PIPE_ERR)) < 0) {
		/* the command runs but cannot be watched: end it */
		close_fds(parent, PIPE_COUNT);
		kill_group(x);
		close_pipe(x, PIPE_OUT);
		close_pipe(x, PIPE_ERR);
		close_pipe(x, PIPE_IN);
		return;
	}
	feed_stdin(x);
}

int exec_start(uv_loop_t *loop, struct reaper *reaper, const Miosa__ExecRequest *req,
	       char *const *envp, uint64_t output_max, const struct exec_sink *sink, void *data,
	       struct exec **ret_exec)
{
	int parent[PIPE_COUNT] = { -1, -1, -1 }, child[PIPE_COUNT] = { -1, -1, -1 };
	int status[2] = { -1, -1 };
	struct exec *x = NULL;
	struct child_plan plan;
	char **argv;
	int r;

	assert(req->n_argv >= 1 && output_max >= 1);
	/* protobuf-c's repeated strings are counted, execve wants a NULL end */
	argv = calloc(req->n_argv + 1, sizeof(*argv));
	if (!argv)
		return -ENOMEM;
	memcpy(argv, req->argv, req->n_argv * sizeof(*argv));
	if ((r = exec_alloc(loop, req, output_max, sink, data, &x)) < 0) {
		free(argv);
		return r;
	}
	plan = (struct child_plan){
		.argv = argv,
		.envp = envp,
		.cwd = req->cwd && req->cwd[0] ? req->cwd : EXEC_DEFAULT_CWD,
		.path = envp_path(envp),
	};
	if ((r = make_pipes(parent, child, status)) < 0)
		goto fail;
	memcpy(plan.fds, child, sizeof(child));
	if ((r = spawn(x, &plan, child, status)) < 0)
		goto fail;
	free(argv);
	run_parent(x, reaper, parent, req->timeout_ms);
	*ret_exec = x;
	return 0;
fail:
	free(argv);
	close_fds(parent, PIPE_COUNT);
	close_fds(child, PIPE_COUNT);
	close_fds(status, 2);
	free(x->stdin_data);
	free(x);
	return r;
}
