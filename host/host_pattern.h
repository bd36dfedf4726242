/*
 * host_pattern — validate, normalize and match host names and host patterns.
 *
 * Used by the vault (the hosts a secret may be swapped to, B1) and by the
 * network policy (allowlist entries, M13).  Pure functions: no I/O, no
 * allocation, no global state; safe from any thread.
 *
 * Grammar of a pattern (after removing ONE trailing dot):
 *   exact     a DNS name: labels of [A-Za-z0-9_-], 1..63 bytes, not starting
 *             or ending with '-', joined by '.', at most 253 bytes in all.
 *             Letters are folded to lower case (names are case-insensitive).
 *             Non-ASCII is refused: give IDNs as A-labels (xn--...).
 *   wildcard  "*." followed by an exact name of at least two labels.
 *             "*.openai.com" matches every name strictly below openai.com
 *             (api.openai.com, a.b.openai.com) but NOT openai.com itself.
 *             '*' anywhere else ("*foo.com", "a.*.com", "*") is refused, and so
 *             is a wildcard over a single label ("*.com"): that would cover a
 *             whole TLD.  No public-suffix list is consulted.
 *   IPv4      a strict dotted quad (no leading zeros, no shorthand); exact only.
 *   IPv6      RFC 4291 text, optionally in brackets, no zone id; exact only.
 *             Normalized to the RFC 5952 form inet_ntop() produces.
 * A name whose last label is all digits must be a valid IPv4 address: "1.2.3"
 * or "example.123" are refused rather than guessed at (WHATWG URL does the
 * same), so a pattern can never mean one thing here and another to a resolver.
 *
 * Inputs are (pointer, length) spans because callers hold them that way (SNI,
 * Host header without its port, JSON strings); an embedded NUL is refused.
 * Normalized outputs are NUL-terminated, at most HOST_PATTERN_MAX bytes, and
 * written only on success.
 *
 * Errors: -EINVAL with a message in err (if err != NULL) that quotes the input
 * (truncated, non-printable bytes shown as '?') and says which rule it broke.
 */
#ifndef MIOSA_HOST_PATTERN_H
#define MIOSA_HOST_PATTERN_H

#include <stdbool.h>
#include <stddef.h>

#define HOST_PATTERN_MAX 253                    /* bytes, without trailing dot */
#define HOST_PATTERN_BUF (HOST_PATTERN_MAX + 1) /* normalized form + NUL */
#define HOST_PATTERN_LABEL_MAX 63

enum host_pattern_kind {
	HOST_PATTERN_NAME = 1, /* exact DNS name */
	HOST_PATTERN_WILDCARD, /* "*.example.com" */
	HOST_PATTERN_IPV4,
	HOST_PATTERN_IPV6,
};

/*
 * Validate and normalize a pattern (exact name, wildcard or IP literal).
 * Returns its kind (> 0) or -EINVAL.
 */
__attribute__((warn_unused_result))
int host_pattern_normalize(const char *pattern, size_t len,
			   char ret_normalized[HOST_PATTERN_BUF],
			   char *err, size_t err_size);

/*
 * Validate and normalize a destination host (what a connection goes to):
 * the same grammar without wildcards.  Returns its kind (> 0) or -EINVAL.
 */
__attribute__((warn_unused_result))
int host_pattern_normalize_host(const char *host, size_t len,
				char ret_normalized[HOST_PATTERN_BUF],
				char *err, size_t err_size);

/*
 * Does a normalized pattern cover a normalized host?  Both must come from the
 * functions above (anything else gives an unspecified but memory-safe
 * answer).  Exact and IP patterns compare equal; a wildcard matches names
 * strictly below its suffix.
 */
bool host_pattern_match(const char *pattern, const char *host);

#endif
