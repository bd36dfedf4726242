/*
 * exec — runs one ExecRequest: fork/exec with pipes, stdin bytes, cwd,
 * timeout, output streamed in chunks, one outcome at the end.
 *
 * The child:  its own session and process group (setsid: the timeout kills
 * the whole group), default signal dispositions and an empty signal mask,
 * stdin/stdout/stderr on pipes, every other descriptor closed at exec, cwd
 * req->cwd (empty: "/"), environment envp (built by env.h), argv[0] looked
 * up in envp's PATH (not the agent's) when it holds no '/'.
 *
 * Output: every read of stdout or stderr (at most EXEC_CHUNK_MAX bytes)
 * goes to sink->output as it arrives.  At most output_max bytes of stdout
 * and stderr together are forwarded (the broker's HelloAck limit); at the
 * cap the agent closes both pipes, so the command sees EPIPE / SIGPIPE on
 * its next write, as under `cmd | head -c N`, and the outcome is whatever
 * the command then does.
 *
 * End: once the child is reaped and both pipes are at EOF, or EXEC_DRAIN_MS
 * after the reap when a background grandchild keeps a pipe open, sink->exit
 * gets exactly one outcome: start_error (never ran: chdir or exec failed,
 * "argv[0] not found" for ENOENT), timed_out (the agent killed it after
 * timeout_ms), signal, or exit_code.
 *
 * Contract:
 *   - Loop thread only; children are reaped through reaper.h.
 *   - exec_start(): 0 and *ret_exec, or a negative errno when nothing could
 *     be started (no pipe, no fork: the caller reports a start_error).  The
 *     parent blocks until the child has called execve() or failed (a
 *     CLOEXEC status pipe), like uv_spawn().
 *   - req, envp and sink need only live for the call (everything is copied
 *     or used before it returns); data is passed back untouched.
 *   - After sink->exit returns, the exec frees itself: do not touch it.
 *   - Memory: one EXEC_CHUNK_MAX read buffer plus stdin_data per exec.
 */
#ifndef MIOSA_EXEC_H
#define MIOSA_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "miosa.pb-c.h"
#include "reaper.h"
#include "wire.h"

#define EXEC_CHUNK_MAX WIRE_EXEC_CHUNK_MAX /* bytes per ExecOutput */
#define EXEC_DRAIN_MS 500u
#define EXEC_DEFAULT_CWD "/"

struct exec;

struct exec_sink {
	void (*output)(void *data, uint64_t exec_id, Miosa__ExecOutput__Stream stream,
		       const uint8_t *bytes, size_t len);
	/* exit->exec_id is set; output_truncated: the cap was reached. */
	void (*exit)(void *data, const Miosa__ExecExit *exit, bool output_truncated);
};

__attribute__((warn_unused_result))
int exec_start(uv_loop_t *loop, struct reaper *reaper, const Miosa__ExecRequest *req,
	       char *const *envp, uint64_t output_max, const struct exec_sink *sink, void *data,
	       struct exec **ret_exec);

/* Back-pressure: stop / restart reading the child's output (the child
 * blocks once its pipe buffer is full). */
void exec_pause(struct exec *x);
void exec_resume(struct exec *x);

/* SIGKILL to the child's process group (agent shutdown); the outcome still
 * comes through sink->exit. */
void exec_kill(struct exec *x);

uint64_t exec_id(const struct exec *x);

#endif
