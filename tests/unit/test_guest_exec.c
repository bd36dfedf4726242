/* Tests for guest/exec.h: real fork/exec of /bin/sh and friends, on a real
 * libuv loop with the agent's reaper. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "exec.h"
#include "reaper.h"

#define WATCHDOG_MS 15000u
#define TEST_PATH "PATH=/usr/local/bin:/usr/bin:/bin"

struct result {
	char out[256 * 1024];
	char err[4096];
	size_t out_len, err_len;
	size_t chunks, biggest_chunk;
	bool done;
	bool truncated;
	Miosa__ExecExit__OutcomeCase outcome;
	int value; /* exit code or signal */
	char start_error[WIRE_START_ERROR_MAX + 1];
	uint64_t exec_id;
	uint64_t ended_ms;
};

struct fixture {
	uv_loop_t loop;
	struct reaper *reaper;
	uv_timer_t watchdog;
	bool watchdog_fired;
	struct result *res;
};

static void on_output(void *data, uint64_t exec_id, Miosa__ExecOutput__Stream stream,
		      const uint8_t *bytes, size_t len)
{
	struct result *r = data;
	bool out = stream == MIOSA__EXEC_OUTPUT__STREAM__STREAM_STDOUT;
	char *dst = out ? r->out : r->err;
	size_t *have = out ? &r->out_len : &r->err_len;
	size_t cap = out ? sizeof(r->out) : sizeof(r->err);

	assert_int_equal(exec_id, 42);
	assert_false(r->done);
	assert_true(len > 0 && len <= EXEC_CHUNK_MAX);
	r->chunks++;
	if (len > r->biggest_chunk)
		r->biggest_chunk = len;
	if (*have + len < cap) {
		memcpy(dst + *have, bytes, len);
		*have += len;
		dst[*have] = '\0';
	}
}

static void on_exit_cb(void *data, const Miosa__ExecExit *e, bool truncated)
{
	struct result *r = data;

	assert_false(r->done);
	r->done = true;
	r->exec_id = e->exec_id;
	r->truncated = truncated;
	r->outcome = e->outcome_case;
	r->ended_ms = uv_hrtime() / 1000000;
	if (e->outcome_case == MIOSA__EXEC_EXIT__OUTCOME_EXIT_CODE)
		r->value = e->exit_code;
	else if (e->outcome_case == MIOSA__EXEC_EXIT__OUTCOME_SIGNAL)
		r->value = e->signal;
	else if (e->outcome_case == MIOSA__EXEC_EXIT__OUTCOME_START_ERROR)
		snprintf(r->start_error, sizeof(r->start_error), "%s", e->start_error);
}

static const struct exec_sink sink = { on_output, on_exit_cb };

static void on_watchdog(uv_timer_t *t)
{
	struct fixture *f = t->data;

	f->watchdog_fired = true;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->res = calloc(1, sizeof(*f->res));
	assert_non_null(f->res);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(reaper_new(&f->loop, &f->reaper), 0);
	uv_timer_init(&f->loop, &f->watchdog);
	f->watchdog.data = f;
	*state = f;
	return 0;
}

/* Every handle closed: nothing of an exec outlives its exit callback. */
static int teardown(void **state)
{
	struct fixture *f = *state;

	reaper_close(f->reaper);
	uv_close((uv_handle_t *)&f->watchdog, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f->res);
	free(f);
	return 0;
}

/* Runs the loop until the exec reported (or the watchdog fires). */
static void run_until_done(struct fixture *f)
{
	uv_timer_start(&f->watchdog, on_watchdog, WATCHDOG_MS, 0);
	while (!f->res->done && !f->watchdog_fired)
		uv_run(&f->loop, UV_RUN_ONCE);
	uv_timer_stop(&f->watchdog);
	assert_false(f->watchdog_fired);
}

struct spec {
	const char *const *argv;
	const char *const *envp; /* NULL: TEST_PATH only */
	const char *stdin_data;
	const char *cwd;
	uint32_t timeout_ms;
	uint64_t output_max; /* 0: 1 MiB */
};

static struct exec *start(struct fixture *f, const struct spec *s)
{
	static const char *const default_env[] = { TEST_PATH, "X=hello from X", NULL };
	Miosa__ExecRequest req = MIOSA__EXEC_REQUEST__INIT;
	struct exec *x = NULL;

	req.exec_id = 42;
	while (s->argv[req.n_argv])
		req.n_argv++;
	req.argv = (char **)s->argv;
	req.cwd = (char *)(s->cwd ? s->cwd : "");
	req.timeout_ms = s->timeout_ms;
	if (s->stdin_data) {
		req.stdin_data.data = (uint8_t *)s->stdin_data;
		req.stdin_data.len = strlen(s->stdin_data);
	}
	assert_int_equal(exec_start(&f->loop, f->reaper, &req,
				    (char *const *)(s->envp ? s->envp : default_env),
				    s->output_max ? s->output_max : 1u << 20, &sink, f->res, &x),
			 0);
	assert_non_null(x);
	assert_int_equal(exec_id(x), 42);
	return x;
}

static struct result *run(struct fixture *f, const struct spec *s)
{
	start(f, s);
	run_until_done(f);
	assert_int_equal(f->res->exec_id, 42);
	return f->res;
}

#define SH(script) ((const char *const[]){ "sh", "-c", script, NULL })

static void test_stdout_and_exit_code(void **state)
{
	struct result *r = run(*state, &(struct spec){ .argv = SH("echo $X; exit 3") });

	assert_int_equal(r->outcome, MIOSA__EXEC_EXIT__OUTCOME_EXIT_CODE);
	assert_int_equal(r->value, 3);
	assert_string_equal(r->out, "hello from X\n");
	assert_int_equal(r->err_len, 0);
	assert_false(r->truncated);
}

static void test_stderr_is_its_own_stream(void **state)
{
	struct result *r = run(*state, &(struct spec){ .argv = SH("echo out; echo err >&2") });

	assert_string_equal(r->out, "out\n");
	assert_string_equal(r->err, "err\n");
	assert_int_equal(r->value, 0);
}

static void test_stdin_bytes_then_eof(void **state)
{
	struct result *r = run(*state, &(struct spec){ .argv = SH("cat; echo done"),
						       .stdin_data = "line one\nline two" });

	assert_string_equal(r->out, "line one\nline twodone\n");
}

static void test_no_stdin_means_eof_at_once(void **state)
{
	struct result *r = run(*state, &(struct spec){ .argv = SH("cat; echo eof") });

	assert_string_equal(r->out, "eof\n");
}

static void test_environment_is_exactly_envp(void **state)
{
	static const char *const envp[] = { TEST_PATH, "ONLY=this", NULL };
	struct result *r;

	setenv("MIOSA_AGENT_SIDE", "must-not-leak", 1);
	r = run(*state, &(struct spec){ .argv = SH("env | sort"), .envp = envp });
	/* sh adds PWD (and may add SHLVL, _) on its own */
	assert_non_null(strstr(r->out, "ONLY=this\n"));
	assert_null(strstr(r->out, "MIOSA_AGENT_SIDE"));
}

static void test_cwd_is_used_and_defaults_to_root(void **state)
{
	struct fixture *f = *state;
	struct result *r = run(f, &(struct spec){ .argv = SH("pwd"), .cwd = "/tmp" });

	assert_string_equal(r->out, "/tmp\n");
	memset(f->res, 0, sizeof(*f->res));
	r = run(f, &(struct spec){ .argv = SH("pwd") });
	assert_string_equal(r->out, "/\n");
}

static void test_timeout_kills_the_process_group(void **state)
{
	struct fixture *f = *state;
	uint64_t t0 = uv_hrtime() / 1000000;
	/* a child in the background would outlive a kill of sh alone */
	struct result *r = run(f, &(struct spec){ .argv = SH("sleep 30 & sleep 30; echo late"),
						  .timeout_ms = 200 });

	assert_int_equal(r->outcome, MIOSA__EXEC_EXIT__OUTCOME_TIMED_OUT);
	assert_int_equal(r->out_len, 0);
	/* the group died with it: far sooner than either sleep (loose bound:
	 * CI runs tests in parallel on two cores) */
	assert_true(r->ended_ms - t0 < 10000);
}

static void test_finishing_before_the_timeout_is_an_exit(void **state)
{
	struct result *r = run(*state, &(struct spec){ .argv = SH("exit 0"), .timeout_ms = 5000 });

	assert_int_equal(r->outcome, MIOSA__EXEC_EXIT__OUTCOME_EXIT_CODE);
	assert_int_equal(r->value, 0);
}

static void test_death_by_signal_is_reported(void **state)
{
	struct result *r = run(*state, &(struct spec){ .argv = SH("kill -TERM $$") });

	assert_int_equal(r->outcome, MIOSA__EXEC_EXIT__OUTCOME_SIGNAL);
	assert_int_equal(r->value, SIGTERM);
}

/* The cap is exact and the writer then meets a closed pipe (SIGPIPE). */
static void test_output_cap_is_enforced_across_both_streams(void **state)
{
	struct result *r = run(*state, &(struct spec){ .argv = SH("echo 12345 >&2; exec yes"),
						       .output_max = 1000 });

	assert_int_equal(r->out_len + r->err_len, 1000);
	assert_true(r->truncated);
	assert_int_equal(r->outcome, MIOSA__EXEC_EXIT__OUTCOME_SIGNAL);
	assert_int_equal(r->value, SIGPIPE);
}

static void test_large_output_arrives_whole_in_chunks_of_at_most_32k(void **state)
{
	struct result *r = run(*state, &(struct spec){ .argv = SH("head -c 200000 /dev/zero | tr '\\0' a") });

	assert_int_equal(r->out_len, 200000);
	assert_true(r->biggest_chunk <= 32 * 1024);
	assert_true(r->chunks >= 200000 / (32 * 1024));
	for (size_t i = 0; i < r->out_len; i++)
		assert_int_equal(r->out[i], 'a');
	assert_false(r->truncated);
}

static void test_missing_binary_is_a_start_error(void **state)
{
	struct fixture *f = *state;
	struct result *r = run(f, &(struct spec){ .argv = (const char *const[]){ "no-such-cmd-x", NULL } });

	assert_int_equal(r->outcome, MIOSA__EXEC_EXIT__OUTCOME_START_ERROR);
	assert_string_equal(r->start_error, "argv[0] not found");
	assert_int_equal(r->out_len + r->err_len, 0);
	memset(f->res, 0, sizeof(*f->res));
	r = run(f, &(struct spec){ .argv = (const char *const[]){ "/nonexistent/bin/x", NULL } });
	assert_string_equal(r->start_error, "argv[0] not found");
}

static void test_path_comes_from_envp_not_the_agent(void **state)
{
	static const char *const envp[] = { "PATH=/nonexistent", NULL };
	struct result *r = run(*state, &(struct spec){ .argv = SH("true"), .envp = envp });

	assert_int_equal(r->outcome, MIOSA__EXEC_EXIT__OUTCOME_START_ERROR);
	assert_string_equal(r->start_error, "argv[0] not found");
}

static void test_non_executable_file_is_a_start_error(void **state)
{
	struct result *r = run(*state, &(struct spec){ .argv = (const char *const[]){ "/etc/passwd", NULL } });

	assert_int_equal(r->outcome, MIOSA__EXEC_EXIT__OUTCOME_START_ERROR);
	assert_string_equal(r->start_error, "cannot execute argv[0]: Permission denied");
}

static void test_bad_cwd_is_a_start_error(void **state)
{
	struct result *r = run(*state, &(struct spec){ .argv = SH("true"), .cwd = "/nonexistent-dir" });

	assert_int_equal(r->outcome, MIOSA__EXEC_EXIT__OUTCOME_START_ERROR);
	assert_string_equal(r->start_error, "cannot enter cwd: No such file or directory");
}

/* A background child holding stdout open does not hold the exit forever. */
static void test_background_child_holding_stdout_is_waited_for_briefly(void **state)
{
	struct fixture *f = *state;
	uint64_t t0 = uv_hrtime() / 1000000;
	struct result *r = run(f, &(struct spec){ .argv = SH("sleep 12 & echo $!") });
	long holder = strtol(r->out, NULL, 10);

	assert_int_equal(r->value, 0);
	/* EXEC_DRAIN_MS after the reap, not the 12 s of the holder */
	assert_true(r->ended_ms - t0 < 8000);
	assert_true(holder > 1);
	assert_int_equal(kill((pid_t)holder, SIGKILL), 0); /* still running: it was not waited for */
}

static void on_tick(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

/* Paused, nothing is delivered and the exit waits (even past the drain
 * delay); resumed, everything arrives in order. */
static void test_pause_holds_output_until_resume(void **state)
{
	struct fixture *f = *state;
	struct exec *x = start(f, &(struct spec){ .argv = SH("echo one; echo two") });
	uv_timer_t tick;
	bool ticked = false;

	exec_pause(x);
	uv_timer_init(&f->loop, &tick);
	tick.data = &ticked;
	uv_timer_start(&tick, on_tick, EXEC_DRAIN_MS + 300, 0);
	while (!ticked)
		uv_run(&f->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&tick, NULL);
	assert_false(f->res->done);
	assert_int_equal(f->res->out_len, 0);
	exec_resume(x);
	run_until_done(f);
	assert_string_equal(f->res->out, "one\ntwo\n");
}

static void test_kill_ends_a_running_exec(void **state)
{
	struct fixture *f = *state;
	struct exec *x = start(f, &(struct spec){ .argv = SH("sleep 30") });

	exec_kill(x);
	run_until_done(f);
	assert_int_equal(f->res->outcome, MIOSA__EXEC_EXIT__OUTCOME_SIGNAL);
	assert_int_equal(f->res->value, SIGKILL);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_stdout_and_exit_code),
		T(test_stderr_is_its_own_stream),
		T(test_stdin_bytes_then_eof),
		T(test_no_stdin_means_eof_at_once),
		T(test_environment_is_exactly_envp),
		T(test_cwd_is_used_and_defaults_to_root),
		T(test_timeout_kills_the_process_group),
		T(test_finishing_before_the_timeout_is_an_exit),
		T(test_death_by_signal_is_reported),
		T(test_output_cap_is_enforced_across_both_streams),
		T(test_large_output_arrives_whole_in_chunks_of_at_most_32k),
		T(test_missing_binary_is_a_start_error),
		T(test_path_comes_from_envp_not_the_agent),
		T(test_non_executable_file_is_a_start_error),
		T(test_bad_cwd_is_a_start_error),
		T(test_background_child_holding_stdout_is_waited_for_briefly),
		T(test_pause_holds_output_until_resume),
		T(test_kill_ends_a_running_exec),
	};
	/* the agent ignores SIGPIPE (main.c); so does its test */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
