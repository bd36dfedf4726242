/*
 * guest_exec — the exec route's body and answer (docs/api.md, "exec"), as
 * pure functions: the gateway (guest_gateway.c) moves the request to the
 * guest and the result back.
 *
 * Request body: {"argv": [STRING, ...], "env"?: {NAME: STRING, ...},
 * "cwd"?: STRING, "stdin"?: BASE64, "timeout_ms"?: INTEGER}, nothing else.
 * Rules are the wire's (wire.h), checked here so a bad request is a 400
 * naming the field, not a failed frame: argv 1..WIRE_ARGV_MAX entries,
 * argv[0] non-empty, each at most WIRE_ARG_MAX bytes without NUL; env at
 * most WIRE_ENV_MAX names matching [A-Za-z_][A-Za-z0-9_]{0,127}, values at
 * most WIRE_ENV_VALUE_MAX bytes without NUL; cwd absolute, at most
 * WIRE_CWD_MAX bytes; stdin standard base64 (padding required) decoding to
 * at most GUEST_EXEC_STDIN_MAX bytes; timeout_ms 0..WIRE_TIMEOUT_MS_MAX
 * (0 or absent: GUEST_EXEC_DEFAULT_TIMEOUT_MS).  jansson already refuses
 * strings that are not UTF-8; a string holding \u0000 is refused here.
 *
 * Contract: thread-safe, no I/O, no logging.  0 / negative errno; *ret_*
 * written only on success; on -EINVAL err says what was wrong (never
 * quoting more than GUEST_EXEC_QUOTE_MAX bytes of the request).
 */
#ifndef MIOSA_GUEST_EXEC_H
#define MIOSA_GUEST_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "miosa.pb-c.h"

#define GUEST_EXEC_STDIN_MAX (32u * 1024)      /* fits one frame with argv */
#define GUEST_EXEC_OUTPUT_MAX (2u * 1024 * 1024) /* stdout + stderr kept per exec */
#define GUEST_EXEC_DEFAULT_TIMEOUT_MS (300u * 1000)
/* The broker gives up this long after the guest's own timeout (504). */
#define GUEST_EXEC_GRACE_MS 10000u
#define GUEST_EXEC_QUOTE_MAX 32
#define GUEST_EXEC_ERR_MAX 256

struct guest_exec_request {
	Miosa__ExecRequest msg;      /* exec_id 0: the gateway sets it */
	/* Owned storage msg points into. */
	char **argv;
	Miosa__EnvVar *env_storage;
	Miosa__EnvVar **env;
	uint8_t *stdin_data;
	char *cwd;
};

__attribute__((warn_unused_result))
int guest_exec_parse(const uint8_t *body, size_t len, struct guest_exec_request **ret_req,
		     char *err, size_t err_size);
void guest_exec_request_free(struct guest_exec_request *req); /* NULL ok */

enum guest_exec_outcome {
	GUEST_EXEC_EXITED,     /* value: exit code */
	GUEST_EXEC_SIGNALED,   /* value: signal number */
	GUEST_EXEC_TIMED_OUT,  /* the guest killed it at timeout_ms */
	GUEST_EXEC_START_ERROR /* never ran: start_error */
};

struct guest_exec_result {
	enum guest_exec_outcome outcome;
	int value;
	char start_error[256];
	const uint8_t *out, *err;    /* borrowed */
	size_t out_len, err_len;
	bool truncated;
};

/* The 200 body: {"exit_code"|"signal"|"timed_out"|"start_error", "stdout",
 * "stderr", "truncated"}; malloc'd NUL-terminated JSON.  -ENOMEM. */
__attribute__((warn_unused_result))
int guest_exec_result_json(const struct guest_exec_result *res, char **ret_json,
			   size_t *ret_len);

#endif
