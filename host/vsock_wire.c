/* vsock_wire — see vsock_wire.h. */
#include "vsock_wire.h"

#include <errno.h>

#include "cursor.h"

int vsock_hdr_decode(const uint8_t *bytes, size_t len, struct vsock_hdr *ret_hdr)
{
	struct cursor c;
	uint64_t src_cid, dst_cid, src_port, dst_port, plen, type, op, flags, buf_alloc, fwd_cnt;

	if (len < VSOCK_HDR_SIZE)
		return -ENODATA;
	cursor_init(&c, bytes, VSOCK_HDR_SIZE);
	if (cursor_get_le(&c, 8, &src_cid) < 0 || cursor_get_le(&c, 8, &dst_cid) < 0 ||
	    cursor_get_le(&c, 4, &src_port) < 0 || cursor_get_le(&c, 4, &dst_port) < 0 ||
	    cursor_get_le(&c, 4, &plen) < 0 || cursor_get_le(&c, 2, &type) < 0 || cursor_get_le(&c, 2, &op) < 0 ||
	    cursor_get_le(&c, 4, &flags) < 0 || cursor_get_le(&c, 4, &buf_alloc) < 0 ||
	    cursor_get_le(&c, 4, &fwd_cnt) < 0)
		return -ENODATA;
	*ret_hdr = (struct vsock_hdr){
		.src_cid = src_cid,
		.dst_cid = dst_cid,
		.src_port = (uint32_t)src_port,
		.dst_port = (uint32_t)dst_port,
		.len = (uint32_t)plen,
		.type = (uint16_t)type,
		.op = (uint16_t)op,
		.flags = (uint32_t)flags,
		.buf_alloc = (uint32_t)buf_alloc,
		.fwd_cnt = (uint32_t)fwd_cnt,
	};
	return 0;
}

static uint8_t *put_le(uint8_t *out, uint64_t value, size_t width)
{
	for (size_t i = 0; i < width; i++, value >>= 8)
		out[i] = (uint8_t)(value & 0xff);
	return out + width;
}

void vsock_hdr_encode(const struct vsock_hdr *hdr, uint8_t out[VSOCK_HDR_SIZE])
{
	uint8_t *p = out;

	p = put_le(p, hdr->src_cid, 8);
	p = put_le(p, hdr->dst_cid, 8);
	p = put_le(p, hdr->src_port, 4);
	p = put_le(p, hdr->dst_port, 4);
	p = put_le(p, hdr->len, 4);
	p = put_le(p, hdr->type, 2);
	p = put_le(p, hdr->op, 2);
	p = put_le(p, hdr->flags, 4);
	p = put_le(p, hdr->buf_alloc, 4);
	(void)put_le(p, hdr->fwd_cnt, 4);
}
