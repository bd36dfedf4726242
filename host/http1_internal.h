/*
 * http1 internals shared by http1.c, http1_body.c and http1_rewrite.c:
 * the character classes of RFC 9110 §5.6 / RFC 9112 and a few checks.
 * Never locale-dependent (no <ctype.h> on wire bytes).
 */
#ifndef MIOSA_HTTP1_INTERNAL_H
#define MIOSA_HTTP1_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http1.h"

static inline bool http1__is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static inline bool http1__is_alpha(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* -1 if c is not a HEXDIG. */
static inline int http1__hex_value(uint8_t c)
{
	if (http1__is_digit(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static inline uint8_t http1__lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + ('a' - 'A')) : c;
}

/*
 * RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
 * "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
 */
static inline bool http1__is_tchar(uint8_t c)
{
	if (http1__is_digit(c) || http1__is_alpha(c))
		return true;
	switch (c) {
	case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
	case '+': case '-': case '.': case '^': case '_': case '`': case '|':
	case '~':
		return true;
	default:
		return false;
	}
}

/* OWS = *( SP / HTAB ) */
static inline bool http1__is_ows(uint8_t c)
{
	return c == ' ' || c == '\t';
}

/* field-vchar = VCHAR / obs-text */
static inline bool http1__is_field_vchar(uint8_t c)
{
	return (c >= 0x21 && c <= 0x7e) || c >= 0x80;
}

/* Bytes allowed inside a field value: field-vchar, SP, HTAB. */
static inline bool http1__is_field_byte(uint8_t c)
{
	return http1__is_field_vchar(c) || http1__is_ows(c);
}

/*
 * The error for a byte that the grammar does not allow at this point: the
 * three bytes that matter for message boundaries get their own codes so a
 * smuggling attempt is named as such, everything else gets `otherwise`.
 */
static inline int http1__bad_byte(uint8_t c, int otherwise)
{
	switch (c) {
	case '\0':
		return -HTTP1_E_NUL;
	case '\r':
		return -HTTP1_E_BARE_CR;
	case '\n':
		return -HTTP1_E_BARE_LF;
	default:
		return -otherwise;
	}
}

/* ASCII case-insensitive comparison of bytes with a lowercase literal. */
static inline bool http1__eq_lower(const uint8_t *bytes, size_t len, const char *lower)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (lower[i] == '\0' || http1__lower(bytes[i]) != (uint8_t)lower[i])
			return false;
	return lower[i] == '\0';
}

/*
 * request-target bytes (see the decision in http1.h): visible ASCII other
 * than '#', '%' followed by two HEXDIG.  0 or -HTTP1_E_TARGET (or the NUL/
 * CR/LF codes).
 */
int http1__check_target_bytes(const uint8_t *bytes, size_t len);

/* 0 if the limits are consistent (see struct http1_limits), -HTTP1_E_USAGE. */
int http1__limits_check(const struct http1_limits *l);

#endif
