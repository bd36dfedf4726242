#include "frame.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"

struct frame_decoder {
	int error;         /* 0, or the sticky error every later call returns */
	bool delivered;    /* the frame was handed out; next feed starts anew */
	size_t header_have;
	size_t payload_have;
	uint32_t payload_len; /* meaningful once header_have == FRAME_HEADER_SIZE */
	uint8_t header[FRAME_HEADER_SIZE];
	uint8_t payload[FRAME_MAX_PAYLOAD];
};

/* frame.h promises this bound on per-connection memory. */
_Static_assert(sizeof(struct frame_decoder) < FRAME_MAX_PAYLOAD + 64,
	       "frame_decoder grew past its documented size");

size_t frame_encoded_size(const ProtobufCMessage *msg)
{
	assert(msg);
	return FRAME_HEADER_SIZE + protobuf_c_message_get_packed_size(msg);
}

int frame_encode(const ProtobufCMessage *msg, uint8_t *buf, size_t cap, size_t *ret_len)
{
	size_t len;

	assert(msg && ret_len);
	len = protobuf_c_message_get_packed_size(msg);
	if (len > FRAME_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (!buf || cap < FRAME_HEADER_SIZE || len > cap - FRAME_HEADER_SIZE)
		return -ENOBUFS;
	buf[0] = (uint8_t)(len >> 24);
	buf[1] = (uint8_t)(len >> 16);
	buf[2] = (uint8_t)(len >> 8);
	buf[3] = (uint8_t)len;
	/* get_packed_size and pack walk the same message: a mismatch is a
	 * protobuf-c bug, not input, hence the assert. */
	size_t packed = protobuf_c_message_pack(msg, buf + FRAME_HEADER_SIZE);
	assert(packed == len);
	(void)packed;
	*ret_len = FRAME_HEADER_SIZE + len;
	return 0;
}

int frame_decoder_new(struct frame_decoder **ret_decoder)
{
	struct frame_decoder *d;

	assert(ret_decoder);
	/* calloc, not malloc: the payload buffer starts zeroed, so a view can
	 * never expose bytes of an earlier allocation. */
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	*ret_decoder = d;
	return 0;
}

void frame_decoder_free(struct frame_decoder *d)
{
	free(d);
}

static int decoder_fail(struct frame_decoder *d, int r)
{
	d->error = r;
	return r;
}

static void decoder_start_frame(struct frame_decoder *d)
{
	d->delivered = false;
	d->header_have = 0;
	d->payload_have = 0;
	d->payload_len = 0;
}

/* Moves up to `want` bytes from the input into dst; returns how many. */
static size_t take(struct cursor *in, uint8_t *dst, size_t want)
{
	const uint8_t *src;
	size_t n = cursor_remaining(in);

	if (n > want)
		n = want;
	if (n == 0 || cursor_get_bytes(in, n, &src) != 0)
		return 0;
	memcpy(dst, src, n);
	return n;
}

/* Collects the 4 length bytes; fails once they announce an oversize frame. */
static int take_header(struct frame_decoder *d, struct cursor *in)
{
	struct cursor hdr;
	uint32_t len;

	d->header_have += take(in, d->header + d->header_have,
			       FRAME_HEADER_SIZE - d->header_have);
	if (d->header_have < FRAME_HEADER_SIZE)
		return 0;
	cursor_init(&hdr, d->header, sizeof(d->header));
	if (cursor_get_u32be(&hdr, &len) != 0)
		return -EMSGSIZE; /* unreachable: the header is 4 bytes */
	if (len > FRAME_MAX_PAYLOAD)
		return -EMSGSIZE;
	d->payload_len = len;
	return 0;
}

int frame_decoder_feed(struct frame_decoder *d, const void *data, size_t len,
		       size_t *ret_consumed, struct frame *ret_frame)
{
	struct cursor in;
	int r;

	assert(d && ret_consumed && ret_frame);
	if (d->error)
		return d->error;
	if (d->delivered)
		decoder_start_frame(d);

	cursor_init(&in, data, len);
	if (d->header_have < FRAME_HEADER_SIZE) {
		if ((r = take_header(d, &in)) < 0)
			return decoder_fail(d, r);
		if (d->header_have < FRAME_HEADER_SIZE) {
			*ret_consumed = in.off;
			return FRAME_NEED_MORE;
		}
	}
	/* Never more than the rest of this frame: what follows is the caller's. */
	d->payload_have += take(&in, d->payload + d->payload_have,
				d->payload_len - d->payload_have);
	*ret_consumed = in.off;
	if (d->payload_have < d->payload_len)
		return FRAME_NEED_MORE;

	d->delivered = true;
	ret_frame->payload = d->payload;
	ret_frame->len = d->payload_len;
	return FRAME_READY;
}

int frame_decoder_finish(struct frame_decoder *d)
{
	assert(d);
	if (d->error)
		return d->error;
	if (d->delivered || d->header_have == 0)
		return 0;
	return decoder_fail(d, -EPIPE);
}

const char *frame_strerror(int r)
{
	switch (r) {
	case 0:
	case FRAME_READY:
		return "success";
	case -EMSGSIZE:
		return "frame length exceeds the 65536-byte maximum";
	case -EPIPE:
		return "stream ended inside a frame";
	case -ENOBUFS:
		return "buffer too small for the frame";
	case -ENOMEM:
		return "out of memory";
	default:
		return "unknown frame error";
	}
}
