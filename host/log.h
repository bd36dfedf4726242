/*
 * log — the broker's structured log: one line per event on stderr.
 *
 *   2026-11-24T04:30:00.123456Z info control_request method=GET path=/v1/health status=200
 *
 * A line is the RFC 3339 UTC time with microseconds, the level, an event
 * name (a constant identifier) and key=value fields.  A value is written
 * bare when it is non-empty printable ASCII without space, '"', '\\' or
 * '='; otherwise it is double-quoted with \" \\ \n \r \t and \xHH escapes,
 * so a peer can never forge a field, a line break or a terminal escape.
 *
 * What never goes into a log: request or response bodies, Authorization
 * headers, query strings, secret values, keys.  This module cannot tell a
 * secret from any other string, so the rule binds the callers: pass names,
 * ids, paths, statuses and fixed texts only.
 *
 * Contract:
 *   - Thread-safe: the level is atomic and each line is written with one
 *     write(2) under a mutex, so lines from worker threads never interleave.
 *   - A struct log_line lives on the caller's stack; log_begin() returns
 *     false (and the other calls do nothing) when the level is filtered out.
 *   - Lines are capped at LOG_LINE_MAX bytes; a line cut short ends with
 *     "truncated=true".  log_peer() caps one value at LOG_PEER_MAX bytes
 *     (then "..." marks the cut): use it for every string a peer chose.
 *   - Writing blocks if stderr is a full pipe; the broker accepts that (a
 *     log reader that stops reading stops the broker, as with journald).
 */
#ifndef MIOSA_LOG_H
#define MIOSA_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOG_LINE_MAX 2048
#define LOG_PEER_MAX 128
#define LOG_VALUE_MAX 1024   /* cap for log_str(): operator paths and fixed texts */

enum log_level {
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR,
};

struct log_line {
	char buf[LOG_LINE_MAX];
	size_t len;
	bool enabled;
	bool truncated;
};

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
bool log_enabled(enum log_level level);

/* "debug" | "info" | "warn" | "error" (exact, lowercase); -EINVAL otherwise. */
__attribute__((warn_unused_result))
int log_level_from_string(const char *s, enum log_level *ret_level);
const char *log_level_to_string(enum log_level level);

bool log_begin(struct log_line *l, enum log_level level, const char *event);
/* Trusted text (config values, our own messages); NULL is written as "-". */
void log_str(struct log_line *l, const char *key, const char *value);
/* Bytes a peer chose: escaped and truncated to LOG_PEER_MAX. */
void log_peer(struct log_line *l, const char *key, const void *value, size_t len);
void log_int(struct log_line *l, const char *key, int64_t value);
void log_uint(struct log_line *l, const char *key, uint64_t value);
/* error="<strerror(-r)>" for a negative errno r. */
void log_errno(struct log_line *l, int r);
void log_end(struct log_line *l);

/* One event with at most one field: log_event(LOG_LEVEL_INFO, "ready", "pid", "42"). */
void log_event(enum log_level level, const char *event, const char *key, const char *value);

#endif
