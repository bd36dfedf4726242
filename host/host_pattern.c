#include "host_pattern.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cursor.h"

/* Quoted inputs in messages are cut here: enough to recognise, never a flood. */
#define HP_QUOTE_MAX 64

struct hp_ctx {
	const char *in;
	size_t in_len;
	const char *what; /* "host pattern" or "host" */
	char *err;
	size_t err_size;
};

__attribute__((format(printf, 2, 3)))
static int hp_fail(const struct hp_ctx *ctx, const char *fmt, ...)
{
	char quoted[HP_QUOTE_MAX + 4];
	char why[160];
	size_t in_len = ctx->in ? ctx->in_len : 0;
	size_t n = in_len < HP_QUOTE_MAX ? in_len : HP_QUOTE_MAX;
	va_list ap;

	if (!ctx->err || ctx->err_size == 0)
		return -EINVAL;
	/* Peer-supplied bytes are quoted printable-only so a message cannot
	 * carry control characters into a log line. */
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)ctx->in[i];
		quoted[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	strcpy(quoted + n, in_len > n ? "..." : "");
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(ctx->err, ctx->err_size, "%s '%s': %s", ctx->what, quoted, why);
	return -EINVAL;
}

static bool hp_is_label_char(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
}

static int hp_ipv6(const struct hp_ctx *ctx, const char *s, size_t len,
		   char ret_normalized[HOST_PATTERN_BUF])
{
	char buf[INET6_ADDRSTRLEN];
	struct in6_addr addr;

	/* One colon is a name with a port, not an address. */
	if (memchr(s, ':', len) == memrchr(s, ':', len))
		return hp_fail(ctx, "has a ':'; give the host without a port");
	if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
		s++;
		len -= 2;
	}
	if (len == 0 || len >= sizeof(buf))
		return hp_fail(ctx, "is not a valid IPv6 address");
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET6, buf, &addr) != 1)
		return hp_fail(ctx, "is not a valid IPv6 address (zone ids are not accepted)");
	if (!inet_ntop(AF_INET6, &addr, ret_normalized, HOST_PATTERN_BUF))
		return hp_fail(ctx, "is not a valid IPv6 address");
	return HOST_PATTERN_IPV6;
}

/*
 * Check one label and append it, lower-cased, to out[*out_len].  The caller
 * guarantees room: the whole input was bounded before the walk started.
 */
static int hp_label(const struct hp_ctx *ctx, const uint8_t *label, size_t len,
		    char *out, size_t *out_len, bool *ret_numeric)
{
	bool numeric = true;

	if (len == 0)
		return hp_fail(ctx, "has an empty label");
	if (len > HOST_PATTERN_LABEL_MAX)
		return hp_fail(ctx, "has a label longer than %d bytes", HOST_PATTERN_LABEL_MAX);
	if (label[0] == '-' || label[len - 1] == '-')
		return hp_fail(ctx, "has a label that starts or ends with '-'");
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = label[i];

		if (ch == '*')
			return hp_fail(ctx, "'*' is only allowed as the whole first label (*.example.com)");
		if (ch >= 0x80)
			return hp_fail(ctx, "is not ASCII; give internationalized names as A-labels (xn--...)");
		if (!hp_is_label_char(ch))
			return hp_fail(ctx, "contains 0x%02x; names use letters, digits, '-', '_' and '.'", ch);
		if (ch < '0' || ch > '9')
			numeric = false;
		out[(*out_len)++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : (char)ch;
	}
	*ret_numeric = numeric;
	return 0;
}

/* Walk the dot-separated labels of s[0..len) into out; counts labels. */
static int hp_labels(const struct hp_ctx *ctx, const char *s, size_t len,
		     char *out, size_t *out_len, size_t *ret_labels, bool *ret_last_numeric)
{
	struct cursor c;
	size_t labels = 0;
	bool numeric = false;
	int r;

	cursor_init(&c, s, len);
	for (;;) {
		const uint8_t *label;
		size_t idx;
		bool last = cursor_find(&c, '.', cursor_remaining(&c), &idx) != 0;

		if (last)
			idx = cursor_remaining(&c);
		if ((r = cursor_get_bytes(&c, idx, &label)) != 0 ||
		    (r = hp_label(ctx, label, idx, out, out_len, &numeric)) != 0)
			return r;
		labels++;
		if (last)
			break;
		if ((r = cursor_skip(&c, 1)) != 0)
			return r;
		out[(*out_len)++] = '.';
	}
	*ret_labels = labels;
	*ret_last_numeric = numeric;
	return 0;
}

/* A name ending in a number is an IPv4 address or nothing. */
static int hp_ipv4(const struct hp_ctx *ctx, const char *name, bool wildcard)
{
	struct in_addr addr;
	char canon[INET_ADDRSTRLEN];

	if (wildcard)
		return hp_fail(ctx, "ends in a number; IP addresses are only allowed as exact entries");
	if (inet_pton(AF_INET, name, &addr) != 1 ||
	    !inet_ntop(AF_INET, &addr, canon, sizeof(canon)) || strcmp(canon, name) != 0)
		return hp_fail(ctx, "ends in a number but is not a dotted-quad IPv4 address");
	return HOST_PATTERN_IPV4;
}

static int hp_normalize(const struct hp_ctx *ctx, bool allow_wildcard,
			char ret_normalized[HOST_PATTERN_BUF])
{
	char out[HOST_PATTERN_BUF + 2];
	const char *s = ctx->in;
	size_t len = ctx->in_len, out_len = 0, labels = 0;
	bool wildcard = false, last_numeric = false;
	int r;

	if (!s || len == 0)
		return hp_fail(ctx, "is empty");
	if (memchr(s, '\0', len))
		return hp_fail(ctx, "contains a NUL byte");
	if (len > HOST_PATTERN_MAX + 1)
		return hp_fail(ctx, "is longer than %d bytes", HOST_PATTERN_MAX);
	if (memchr(s, ':', len))
		return hp_ipv6(ctx, s, len, ret_normalized);
	if (s[len - 1] == '.')
		len--; /* one trailing dot: the absolute form of the same name */
	if (s[0] == '*') {
		if (!allow_wildcard)
			return hp_fail(ctx, "wildcards are not allowed here");
		if (len < 2 || s[1] != '.')
			return hp_fail(ctx, "'*' is only allowed as the whole first label (*.example.com)");
		memcpy(out, "*.", 2);
		out_len = 2;
		s += 2;
		len -= 2;
		wildcard = true;
	}
	if (len == 0)
		return hp_fail(ctx, wildcard ? "has an empty label" : "is empty");
	if ((r = hp_labels(ctx, s, len, out, &out_len, &labels, &last_numeric)) != 0)
		return r;
	if (out_len > HOST_PATTERN_MAX)
		return hp_fail(ctx, "is longer than %d bytes", HOST_PATTERN_MAX);
	out[out_len] = '\0';
	if (last_numeric) {
		if ((r = hp_ipv4(ctx, out, wildcard)) < 0)
			return r;
	} else if (wildcard && labels < 2) {
		return hp_fail(ctx, "a wildcard must cover at least two labels (*.example.com, not *.com)");
	} else {
		r = wildcard ? HOST_PATTERN_WILDCARD : HOST_PATTERN_NAME;
	}
	memcpy(ret_normalized, out, out_len + 1);
	return r;
}

int host_pattern_normalize(const char *pattern, size_t len,
			   char ret_normalized[HOST_PATTERN_BUF],
			   char *err, size_t err_size)
{
	const struct hp_ctx ctx = { pattern, len, "host pattern", err, err_size };

	return hp_normalize(&ctx, true, ret_normalized);
}

int host_pattern_normalize_host(const char *host, size_t len,
				char ret_normalized[HOST_PATTERN_BUF],
				char *err, size_t err_size)
{
	const struct hp_ctx ctx = { host, len, "host", err, err_size };

	return hp_normalize(&ctx, false, ret_normalized);
}

bool host_pattern_match(const char *pattern, const char *host)
{
	if (pattern[0] == '*' && pattern[1] == '.') {
		const char *suffix = pattern + 1; /* ".example.com" */
		size_t sl = strlen(suffix), hl = strlen(host);

		/* hl > sl: at least one label before the suffix, so the apex
		 * "example.com" itself never matches. */
		return hl > sl && strcmp(host + hl - sl, suffix) == 0;
	}
	return strcmp(pattern, host) == 0;
}
