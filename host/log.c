#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Room kept at the end of every line for " truncated=true\n". */
#define LOG_TAIL_RESERVE 24

static atomic_int log_level = LOG_LEVEL_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const log_level_names[] = {
	[LOG_LEVEL_DEBUG] = "debug",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_ERROR] = "error",
};

void log_set_level(enum log_level level)
{
	atomic_store(&log_level, (int)level);
}

enum log_level log_get_level(void)
{
	return (enum log_level)atomic_load(&log_level);
}

bool log_enabled(enum log_level level)
{
	return (int)level >= atomic_load(&log_level);
}

int log_level_from_string(const char *s, enum log_level *ret_level)
{
	for (size_t i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
		if (s && strcmp(s, log_level_names[i]) == 0) {
			*ret_level = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *log_level_to_string(enum log_level level)
{
	if ((unsigned)level >= sizeof(log_level_names) / sizeof(log_level_names[0]))
		return "?";
	return log_level_names[level];
}

/* Room for content, leaving the tail reserve free. */
static size_t log_room(const struct log_line *l)
{
	size_t limit = sizeof(l->buf) - LOG_TAIL_RESERVE;

	return l->len < limit ? limit - l->len : 0;
}

/* Append n bytes, or mark the line truncated and append nothing more. */
static void log_put(struct log_line *l, const char *s, size_t n)
{
	if (l->truncated)
		return;
	if (n > log_room(l)) {
		l->truncated = true;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void log_putc(struct log_line *l, char c)
{
	log_put(l, &c, 1);
}

static void log_time(struct log_line *l)
{
	struct timespec ts;
	struct tm tm;
	char out[40];
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(out, sizeof(out), "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(out + n, sizeof(out) - n, ".%06ldZ", ts.tv_nsec / 1000);
	log_put(l, out, n);
}

bool log_begin(struct log_line *l, enum log_level level, const char *event)
{
	l->len = 0;
	l->truncated = false;
	l->enabled = log_enabled(level);
	if (!l->enabled)
		return false;
	log_time(l);
	log_putc(l, ' ');
	log_put(l, log_level_to_string(level), strlen(log_level_to_string(level)));
	log_putc(l, ' ');
	log_put(l, event, strlen(event));
	return true;
}

/* Bare values: non-empty printable ASCII that cannot be mistaken for syntax. */
static bool log_needs_quotes(const unsigned char *v, size_t n)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++)
		if (v[i] <= 0x20 || v[i] >= 0x7f || v[i] == '"' || v[i] == '\\' || v[i] == '=')
			return true;
	return false;
}

static void log_put_escaped(struct log_line *l, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	char esc[4] = { '\\', 0, 0, 0 };

	switch (c) {
	case '"': case '\\': esc[1] = (char)c; log_put(l, esc, 2); return;
	case '\n': esc[1] = 'n'; log_put(l, esc, 2); return;
	case '\r': esc[1] = 'r'; log_put(l, esc, 2); return;
	case '\t': esc[1] = 't'; log_put(l, esc, 2); return;
	default: break;
	}
	if (c >= 0x20 && c < 0x7f) {
		log_putc(l, (char)c);
		return;
	}
	esc[1] = 'x';
	esc[2] = hex[c >> 4];
	esc[3] = hex[c & 0xf];
	log_put(l, esc, 4);
}

/* key=value, value cut at max bytes (then "..." inside the quotes). */
static void log_field(struct log_line *l, const char *key, const void *value,
		      size_t len, size_t max)
{
	const unsigned char *v = value;
	bool cut = len > max;

	if (!l->enabled)
		return;
	if (cut)
		len = max;
	log_putc(l, ' ');
	log_put(l, key, strlen(key));
	log_putc(l, '=');
	if (!cut && !log_needs_quotes(v, len)) {
		log_put(l, value, len);
		return;
	}
	log_putc(l, '"');
	for (size_t i = 0; i < len; i++)
		log_put_escaped(l, v[i]);
	if (cut)
		log_put(l, "...", 3);
	log_putc(l, '"');
}

void log_str(struct log_line *l, const char *key, const char *value)
{
	if (!value)
		value = "-";
	log_field(l, key, value, strlen(value), LOG_VALUE_MAX);
}

void log_peer(struct log_line *l, const char *key, const void *value, size_t len)
{
	log_field(l, key, value ? value : "", value ? len : 0, LOG_PEER_MAX);
}

void log_int(struct log_line *l, const char *key, int64_t value)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%" PRId64, value);

	log_field(l, key, num, (size_t)n, sizeof(num));
}

void log_uint(struct log_line *l, const char *key, uint64_t value)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%" PRIu64, value);

	log_field(l, key, num, (size_t)n, sizeof(num));
}

void log_errno(struct log_line *l, int r)
{
	char buf[128];
	/* GNU strerror_r: returns the text, maybe not in buf. */
	const char *text = strerror_r(r < 0 ? -r : r, buf, sizeof(buf));

	log_str(l, "error", text);
}

static void log_write_all(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDERR_FILENO, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* nowhere left to report it */
		buf += n;
		len -= (size_t)n;
	}
}

void log_end(struct log_line *l)
{
	static const char mark[] = " truncated=true";

	if (!l->enabled)
		return;
	/* The tail reserve guarantees room for the mark and the newline. */
	if (l->truncated) {
		memcpy(l->buf + l->len, mark, sizeof(mark) - 1);
		l->len += sizeof(mark) - 1;
	}
	l->buf[l->len++] = '\n';
	pthread_mutex_lock(&log_lock);
	log_write_all(l->buf, l->len);
	pthread_mutex_unlock(&log_lock);
	l->enabled = false;
}

void log_event(enum log_level level, const char *event, const char *key, const char *value)
{
	struct log_line l;

	if (!log_begin(&l, level, event))
		return;
	if (key)
		log_str(&l, key, value);
	log_end(&l);
}
