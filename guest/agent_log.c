#include "agent_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static enum agent_log_level log_level = AGENT_LOG_INFO;

static const char *const level_names[] = {
	[AGENT_LOG_ERROR] = "error",
	[AGENT_LOG_WARN] = "warn",
	[AGENT_LOG_INFO] = "info",
	[AGENT_LOG_DEBUG] = "debug",
};

int agent_log_level_parse(const char *text, enum agent_log_level *ret_level)
{
	for (int i = AGENT_LOG_ERROR; i <= AGENT_LOG_DEBUG; i++)
		if (strcmp(text, level_names[i]) == 0) {
			*ret_level = (enum agent_log_level)i;
			return 0;
		}
	return -EINVAL;
}

void agent_log_set_level(enum agent_log_level level)
{
	log_level = level;
}

int agent_log_enabled(enum agent_log_level level)
{
	return level <= log_level;
}

void agent_log(enum agent_log_level level, const char *module, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	size_t len;
	int n;

	if (!agent_log_enabled(level))
		return;
	/* Format first, then one write: concurrent writers to the console
	 * (children share it in init mode) cannot split our line. */
	n = snprintf(line, sizeof(line), "miosa-init: %s: %s: ", level_names[level], module);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	len = strlen(line);
	line[len++] = '\n';
	/* A log line that cannot be written has nowhere else to go. */
	if (write(STDERR_FILENO, line, len) < 0)
		return;
}

const char *agent_log_quote(const char *s, char *buf, size_t cap)
{
	size_t n = 0;

	if (cap == 0)
		return "";
	for (; s && *s && n + 1 < cap; s++, n++)
		buf[n] = *s >= 0x20 && *s <= 0x7e ? *s : '?';
	buf[n] = '\0';
	return buf;
}
