/*
 * cursor — the one bounded reader every parser of untrusted bytes uses.
 *
 * Contract:
 *   - A cursor is a read-only view over caller-owned memory; it never
 *     allocates and never copies.  The memory must outlive the cursor.
 *   - Every getter checks the remaining length first and cannot overflow
 *     (lengths are compared against what is left, never added to offsets).
 *   - Getters return 0 on success, -ENODATA when fewer bytes remain than
 *     asked for.  On failure the cursor does not move and ret_* outputs are
 *     left untouched.
 *   - Not thread-safe; a cursor belongs to one parser invocation.
 */
#ifndef MIOSA_CURSOR_H
#define MIOSA_CURSOR_H

#include <stddef.h>
#include <stdint.h>

struct cursor {
	const uint8_t *data;
	size_t len;
	size_t off;
};

void cursor_init(struct cursor *c, const void *data, size_t len);

static inline size_t cursor_remaining(const struct cursor *c)
{
	return c->len - c->off;
}

static inline const uint8_t *cursor_pos(const struct cursor *c)
{
	return c->data + c->off;
}

__attribute__((warn_unused_result))
int cursor_get_u8(struct cursor *c, uint8_t *ret_value);
__attribute__((warn_unused_result))
int cursor_get_u16be(struct cursor *c, uint16_t *ret_value);
__attribute__((warn_unused_result))
int cursor_get_u32be(struct cursor *c, uint32_t *ret_value);
/* width (1..8, else -EINVAL) little-endian bytes: virtio and vhost-user fields. */
__attribute__((warn_unused_result))
int cursor_get_le(struct cursor *c, size_t width, uint64_t *ret_value);
__attribute__((warn_unused_result))
int cursor_peek_u8(const struct cursor *c, uint8_t *ret_value);
/* A view of the next n bytes; the cursor moves past them. */
__attribute__((warn_unused_result))
int cursor_get_bytes(struct cursor *c, size_t n, const uint8_t **ret_bytes);
__attribute__((warn_unused_result))
int cursor_skip(struct cursor *c, size_t n);
/*
 * Index (relative to the current position) of the first byte equal to
 * `byte` within the next `limit` bytes (or what remains, if less).
 * -ENOENT if absent.  The cursor does not move.
 */
__attribute__((warn_unused_result))
int cursor_find(const struct cursor *c, uint8_t byte, size_t limit, size_t *ret_index);

#endif
