#include "cursor.h"

#include <errno.h>
#include <string.h>

void cursor_init(struct cursor *c, const void *data, size_t len)
{
	c->data = data;
	c->len = data ? len : 0;
	c->off = 0;
}

int cursor_get_bytes(struct cursor *c, size_t n, const uint8_t **ret_bytes)
{
	if (n > cursor_remaining(c))
		return -ENODATA;
	if (ret_bytes)
		*ret_bytes = c->data + c->off;
	c->off += n;
	return 0;
}

int cursor_skip(struct cursor *c, size_t n)
{
	return cursor_get_bytes(c, n, NULL);
}

int cursor_peek_u8(const struct cursor *c, uint8_t *ret_value)
{
	if (cursor_remaining(c) < 1)
		return -ENODATA;
	*ret_value = c->data[c->off];
	return 0;
}

int cursor_get_u8(struct cursor *c, uint8_t *ret_value)
{
	int r = cursor_peek_u8(c, ret_value);

	if (r == 0)
		c->off++;
	return r;
}

int cursor_get_u16be(struct cursor *c, uint16_t *ret_value)
{
	const uint8_t *p;
	int r;

	if ((r = cursor_get_bytes(c, 2, &p)) != 0)
		return r;
	*ret_value = (uint16_t)((uint16_t)p[0] << 8 | p[1]);
	return 0;
}

int cursor_get_u32be(struct cursor *c, uint32_t *ret_value)
{
	const uint8_t *p;
	int r;

	if ((r = cursor_get_bytes(c, 4, &p)) != 0)
		return r;
	*ret_value = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
		     (uint32_t)p[2] << 8 | (uint32_t)p[3];
	return 0;
}

int cursor_get_le(struct cursor *c, size_t width, uint64_t *ret_value)
{
	const uint8_t *p;
	uint64_t v = 0;
	int r;

	if (width < 1 || width > 8)
		return -EINVAL;
	if ((r = cursor_get_bytes(c, width, &p)) != 0)
		return r;
	for (size_t i = width; i > 0; i--)
		v = v << 8 | p[i - 1];
	*ret_value = v;
	return 0;
}

int cursor_find(const struct cursor *c, uint8_t byte, size_t limit, size_t *ret_index)
{
	size_t span = cursor_remaining(c);
	const uint8_t *hit;

	if (limit < span)
		span = limit;
	if (span == 0)
		return -ENOENT;
	hit = memchr(c->data + c->off, byte, span);
	if (!hit)
		return -ENOENT;
	*ret_index = (size_t)(hit - (c->data + c->off));
	return 0;
}
