/*
 * ctl_output — how miosactl shows API answers to people: aligned tables of
 * JSON objects, "key: value" views, and the --json pretty printer.
 *
 * Contract:
 *   - Text from the broker reaches the terminal as printable ASCII only
 *     (every other byte becomes '?'), truncated to CTL_TEXT_MAX - 1 bytes
 *     per cell, so an answer cannot move the cursor, retitle the window or
 *     hide a line.  --json output is jansson's encoding (control characters
 *     escaped).
 *   - A cell shows "-" for null, an absent field or an empty list; lists are
 *     joined with ","; booleans are yes/no (on/off when asked); a transport
 *     object is one word ("uds:PATH", "vsock:CID", "none").
 *   - Keys may be dotted paths into nested objects ("settings.x"); a view
 *     labels such a row with the last part.
 *   - Everything writes to the FILE given; returns 0, or -EIO when the
 *     stream failed (-E2BIG: more columns than CTL_OUTPUT_MAX_COLUMNS).
 *     No global state; not thread-safe only in that stdio is shared.
 */
#ifndef MIOSA_CTL_OUTPUT_H
#define MIOSA_CTL_OUTPUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CTL_TEXT_MAX 1024
#define CTL_OUTPUT_MAX_COLUMNS 16

struct ctl_column {
	const char *header;
	const char *key;    /* in each row object; dotted paths allowed */
};

/* in (NULL: "") as printable ASCII into out[size]. */
void ctl_output_sanitize(const char *in, char *out, size_t size);

/* obj's value at a dotted key path, or NULL. */
const json_t *ctl_output_lookup(const json_t *obj, const char *key);

/* A value as one sanitized cell of text (see above). */
void ctl_output_cell(const json_t *v, bool onoff, char *out, size_t size);

/* Header line, then one line per object of array; columns padded to fit. */
__attribute__((warn_unused_result))
int ctl_output_table(FILE *f, const json_t *array, const struct ctl_column *cols, size_t ncols);

/* "key:  value" lines for the keys (NULL-terminated) present in obj. */
__attribute__((warn_unused_result))
int ctl_output_view(FILE *f, const json_t *obj, const char *const *keys, bool onoff);

/* Indented JSON, keys sorted (stable whatever order the broker used). */
__attribute__((warn_unused_result))
int ctl_output_json(FILE *f, const json_t *j);

#endif
