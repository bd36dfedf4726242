/*
 * agent_log — one line per event on stderr, for miosa-init.
 *
 * Contract:
 *   - Lines look like "miosa-init: warn: egress: 198.18.0.5:443 refused: no policy".
 *     The module name says where the event happened; the text says what.
 *   - Callers log peer strings truncated ("%.*s") and never log env values,
 *     secret or not: a placeholder binding is logged by name only.
 *   - Single-threaded (the agent has one loop thread); not async-signal-safe.
 *   - Pure modules (dns_query, env, backoff, transport parsing, trust) do not
 *     log: their callers, the event handlers, log once at the boundary.
 */
#ifndef MIOSA_AGENT_LOG_H
#define MIOSA_AGENT_LOG_H

#include <stddef.h>

enum agent_log_level {
	AGENT_LOG_ERROR = 0,
	AGENT_LOG_WARN = 1,
	AGENT_LOG_INFO = 2,
	AGENT_LOG_DEBUG = 3,
};

/* "error", "warn", "info", "debug" -> 0, or -EINVAL. */
__attribute__((warn_unused_result))
int agent_log_level_parse(const char *text, enum agent_log_level *ret_level);

void agent_log_set_level(enum agent_log_level level);

/* Whether a line at this level would be printed (to skip costly formatting). */
int agent_log_enabled(enum agent_log_level level);

/*
 * A peer string made safe for one log line: printable ASCII kept, any other
 * byte (newlines, escapes, UTF-8) shown as '?', cut to cap - 1 bytes.
 * Returns buf.
 */
const char *agent_log_quote(const char *s, char *buf, size_t cap);

__attribute__((format(printf, 3, 4)))
void agent_log(enum agent_log_level level, const char *module, const char *fmt, ...);

#define agent_log_error(module, ...) agent_log(AGENT_LOG_ERROR, module, __VA_ARGS__)
#define agent_log_warn(module, ...) agent_log(AGENT_LOG_WARN, module, __VA_ARGS__)
#define agent_log_info(module, ...) agent_log(AGENT_LOG_INFO, module, __VA_ARGS__)
#define agent_log_debug(module, ...) agent_log(AGENT_LOG_DEBUG, module, __VA_ARGS__)

#endif
