/*
 * http1_rewrite — see http1_rewrite.h.  Everything is validated before the
 * first output byte is written; the copy itself reads the original head
 * through a cursor and writes into an output whose size was computed (and
 * checked against out_size) by the same validation.
 */
#include "http1_rewrite.h"

#include <string.h>

#include "cursor.h"
#include "http1_internal.h"

int http1_edit_header_value(const struct http1_head *h, uint32_t index, const uint8_t *bytes,
			    size_t n_bytes, struct http1_edit *ret_edit)
{
	if (index >= h->n_headers)
		return -HTTP1_E_EDIT_RANGE;
	return http1_edit_span(h->headers[index].value, bytes, n_bytes, ret_edit);
}

int http1_edit_span(struct http1_span s, const uint8_t *bytes, size_t n_bytes,
		    struct http1_edit *ret_edit)
{
	if (!bytes && n_bytes > 0)
		return -HTTP1_E_USAGE;
	*ret_edit = (struct http1_edit){
		.off = s.off, .len = s.len, .bytes = bytes, .n_bytes = n_bytes,
	};
	return 0;
}

/* [e->off, e->off + e->len] inside [s.off, s.off + s.len], written to not overflow. */
static bool edit_within(const struct http1_edit *e, struct http1_span s)
{
	return e->off >= s.off && e->len <= s.len && e->off - s.off <= s.len - e->len;
}

/*
 * Fields whose value decides framing or routing (RFC 9110 §6.5.1 names the
 * same class as unfit for trailers): never edited.
 */
static bool field_editable(enum http1_field_id id)
{
	return id != HTTP1_FIELD_CONTENT_LENGTH && id != HTTP1_FIELD_TRANSFER_ENCODING &&
	       id != HTTP1_FIELD_HOST;
}

/* Which editable span holds e: the request-target, or an editable field value. */
static int edit_region(const struct http1_head *h, const struct http1_edit *e, bool *ret_in_target)
{
	if (h->kind == HTTP1_REQUEST && edit_within(e, h->target)) {
		*ret_in_target = true;
		return 0;
	}
	for (uint32_t i = 0; i < h->n_headers && i < HTTP1_HEADERS_CAP; i++) {
		const struct http1_header *f = &h->headers[i];

		if (!field_editable(f->id))
			continue;
		if (edit_within(e, f->value)) {
			*ret_in_target = false;
			return 0;
		}
	}
	return -HTTP1_E_EDIT_RANGE;
}

/*
 * Header injection guard: RFC 9110 §5.5 field-value bytes in a field value;
 * in the request-target, the bytes http1__check_target_bytes() accepts.
 */
static int check_replacement(const struct http1_edit *e, bool in_target)
{
	if (!e->bytes && e->n_bytes > 0)
		return -HTTP1_E_USAGE;
	for (size_t i = 0; i < e->n_bytes; i++) {
		uint8_t b = e->bytes[i];
		bool ok = in_target ? (b >= 0x21 && b <= 0x7e && b != '#') : http1__is_field_byte(b);

		if (!ok)
			return -HTTP1_E_EDIT_INJECTION;
	}
	return 0;
}

/* Two edits conflict if they overlap or start at one offset (order ambiguous). */
static bool edits_conflict(const struct http1_edit *a, const struct http1_edit *b)
{
	if (a->off == b->off)
		return true;
	return a->off < b->off + b->len && b->off < a->off + a->len;
}

/*
 * Validate everything and compute the output size.  *ret_target_len is
 * the rewritten request-target's length.
 */
static int check_edits(const struct http1_head *h, const uint8_t *head, size_t head_len,
		       const struct http1_edit *edits, size_t n_edits, size_t *ret_size,
		       size_t *ret_target_len)
{
	size_t size = h->head_len, target_len = h->target.len;
	int r;

	if (!head || h->head_len == 0 || head_len < h->head_len || (n_edits > 0 && !edits))
		return -HTTP1_E_USAGE;
	if (n_edits > HTTP1_REWRITE_MAX_EDITS)
		return -HTTP1_E_EDIT_COUNT;
	for (size_t i = 0; i < n_edits; i++) {
		const struct http1_edit *e = &edits[i];
		bool in_target = false;

		if ((r = edit_region(h, e, &in_target)) != 0 ||
		    (r = check_replacement(e, in_target)) != 0)
			return r;
		for (size_t j = 0; j < i; j++)
			if (edits_conflict(e, &edits[j]))
				return -HTTP1_E_EDIT_OVERLAP;
		/* e->len <= size: e lies inside the head, and edits do not overlap */
		size -= e->len;
		if (e->n_bytes > SIZE_MAX - size)
			return -HTTP1_E_NOSPACE;
		size += e->n_bytes;
		if (in_target)
			target_len = target_len - e->len + e->n_bytes;
	}
	*ret_size = size;
	*ret_target_len = target_len;
	return 0;
}

int http1_rewrite_size(const struct http1_head *h, const uint8_t *head, size_t head_len,
		       const struct http1_edit *edits, size_t n_edits, size_t *ret_size)
{
	size_t size, target_len;
	int r;

	if ((r = check_edits(h, head, head_len, edits, n_edits, &size, &target_len)) != 0)
		return r;
	*ret_size = size;
	return 0;
}

/* Edit indices sorted by offset (insertion sort: n is small and bounded). */
static void sort_edits(const struct http1_edit *edits, size_t n, uint16_t *order)
{
	for (size_t i = 0; i < n; i++) {
		size_t j = i;

		while (j > 0 && edits[order[j - 1]].off > edits[i].off) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = (uint16_t)i;
	}
}

struct out {
	uint8_t *buf;
	size_t size;
	size_t len;
};

/* Room was checked by check_edits(); the test keeps that an invariant. */
static int out_put(struct out *o, const uint8_t *bytes, size_t n)
{
	if (n > o->size - o->len)
		return -HTTP1_E_NOSPACE;
	if (n > 0)
		memcpy(o->buf + o->len, bytes, n);
	o->len += n;
	return 0;
}

/* Copy the original bytes from the cursor's position up to off. */
static int copy_until(struct cursor *in, size_t off, struct out *o)
{
	const uint8_t *bytes;
	size_t n;

	if (off < in->off)
		return -HTTP1_E_USAGE;
	n = off - in->off;
	if (cursor_get_bytes(in, n, &bytes) != 0)
		return -HTTP1_E_USAGE;
	return out_put(o, bytes, n);
}

static int write_edits(const struct http1_head *h, const uint8_t *head,
		       const struct http1_edit *edits, size_t n_edits, struct out *o)
{
	uint16_t order[HTTP1_REWRITE_MAX_EDITS];
	struct cursor in;
	int r;

	sort_edits(edits, n_edits, order);
	cursor_init(&in, head, h->head_len);
	for (size_t i = 0; i < n_edits; i++) {
		const struct http1_edit *e = &edits[order[i]];

		if ((r = copy_until(&in, e->off, o)) != 0)
			return r;
		if (cursor_skip(&in, e->len) != 0)
			return -HTTP1_E_USAGE;
		if ((r = out_put(o, e->bytes, e->n_bytes)) != 0)
			return r;
	}
	return copy_until(&in, h->head_len, o);
}

int http1_rewrite(const struct http1_head *h, const uint8_t *head, size_t head_len,
		  const struct http1_edit *edits, size_t n_edits, uint8_t *out, size_t out_size,
		  size_t *ret_len)
{
	struct out o = { .buf = out, .size = out_size };
	size_t size, target_len;
	int r;

	if ((r = check_edits(h, head, head_len, edits, n_edits, &size, &target_len)) != 0)
		return r;
	if (!out || out_size < size)
		return -HTTP1_E_NOSPACE;
	if ((r = write_edits(h, head, edits, n_edits, &o)) != 0)
		goto out;
	/* Edits inside the target may have split or built a '%' escape. */
	if (h->kind == HTTP1_REQUEST &&
	    (target_len == 0 || http1__check_target_bytes(out + h->target.off, target_len) != 0)) {
		r = -HTTP1_E_EDIT_INJECTION;
		goto out;
	}
	*ret_len = o.len;
	return 0;
out:
	explicit_bzero(out, out_size);
	return r;
}
