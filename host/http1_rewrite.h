/*
 * http1_rewrite — serialize a parsed head with some bytes replaced, e.g. a
 * placeholder token in a header value or in one query parameter swapped for
 * the real secret.
 *
 * Contract:
 *   - Input: the head bytes exactly as given to http1_parse() (at least
 *     h->head_len of them) and the struct http1_head it produced.  Edits are
 *     spans of that original head: replace [off, off + len) with
 *     bytes[0, n_bytes).  len 0 is an insertion.  Edits may come in any
 *     order.
 *   - Every byte outside the edits is copied verbatim: field name case,
 *     order, whitespace, the start line, the final CRLF.
 *   - An edit must lie inside the request-target (requests) or inside the
 *     value of one field line that neither frames nor routes the message
 *     (not Content-Length, Transfer-Encoding or Host), bounds included;
 *     otherwise -HTTP1_E_EDIT_RANGE.  So line structure, field names,
 *     framing and the Host can never change.
 *   - Replacement bytes: in a field value, field-vchar / SP / HTAB only; in
 *     the request-target, visible ASCII other than '#'; else
 *     -HTTP1_E_EDIT_INJECTION (CR, LF and NUL are always refused).  The
 *     rewritten request-target is checked as a whole again (a '%' must still
 *     start a valid escape).
 *   - Two edits that overlap, an insertion strictly inside a replaced
 *     span, or two edits starting at one offset (their order would be
 *     ambiguous): -HTTP1_E_EDIT_OVERLAP.  Adjacent edits are fine.
 *   - http1_rewrite_size() gives the exact output size so the caller can
 *     allocate it (with sodium_malloc: the output holds secrets).
 *     http1_rewrite() checks everything before it writes anything, and
 *     zeroes out[0, out_size) if the final target check fails; on success
 *     *ret_len is the size http1_rewrite_size() announced.
 *   - Pure: no allocation, no I/O; never copies replacement bytes anywhere
 *     but into out.
 */
#ifndef MIOSA_HTTP1_REWRITE_H
#define MIOSA_HTTP1_REWRITE_H

#include <stddef.h>
#include <stdint.h>

#include "http1.h"

#define HTTP1_REWRITE_MAX_EDITS 256u

struct http1_edit {
	size_t off;             /* into the original head */
	size_t len;             /* bytes replaced */
	const uint8_t *bytes;   /* replacement, may be NULL if n_bytes == 0 */
	size_t n_bytes;
};

/* An edit replacing the whole value of header index (-HTTP1_E_EDIT_RANGE if absent). */
__attribute__((warn_unused_result))
int http1_edit_header_value(const struct http1_head *h, uint32_t index, const uint8_t *bytes,
			    size_t n_bytes, struct http1_edit *ret_edit);

/* An edit replacing span s (e.g. h->target, a query value from http1_query_next()). */
__attribute__((warn_unused_result))
int http1_edit_span(struct http1_span s, const uint8_t *bytes, size_t n_bytes,
		    struct http1_edit *ret_edit);

__attribute__((warn_unused_result))
int http1_rewrite_size(const struct http1_head *h, const uint8_t *head, size_t head_len,
		       const struct http1_edit *edits, size_t n_edits, size_t *ret_size);

__attribute__((warn_unused_result))
int http1_rewrite(const struct http1_head *h, const uint8_t *head, size_t head_len,
		  const struct http1_edit *edits, size_t n_edits, uint8_t *out, size_t out_size,
		  size_t *ret_len);

#endif
