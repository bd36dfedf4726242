/*
 * frame — the length-prefixed framing of the guest <-> host vsock wire.
 *
 * A frame is a u32 big-endian payload length followed by that many bytes of
 * payload (a protobuf-c message).  The payload is at most FRAME_MAX_PAYLOAD
 * bytes; a larger announced length is a protocol error.
 *
 * Contract:
 *   - Pure functions over caller buffers: no I/O, no logging.  The caller
 *     logs once, at the connection, using frame_strerror().
 *   - Fallible functions return 0 or a positive status on success and a
 *     negative errno-style code on failure; ret_* outputs are written only on
 *     success.
 *   - A decoder belongs to one connection and one thread; it is not
 *     thread-safe.  Each decoder holds one fixed buffer for one payload:
 *     sizeof(struct frame_decoder) is FRAME_MAX_PAYLOAD plus under 64 bytes,
 *     allocated once by frame_decoder_new() and never grown.  On egress and
 *     DNS connections only the first frame is framed: free the decoder once
 *     it is out.
 *   - The decoder never consumes input past the end of the frame it
 *     completes: on an egress stream the raw TCP bytes that follow the first
 *     frame in the same read stay with the caller.
 *   - After any error the decoder is failed for good (fail closed): every
 *     later call returns the same error.  The caller closes the connection.
 *
 * Error codes:
 *   -EMSGSIZE  announced length (decoder) or message size (encoder) exceeds
 *              FRAME_MAX_PAYLOAD; the decoder fails as soon as it has read
 *              the 4 length bytes, before buffering any payload.
 *   -EPIPE     frame_decoder_finish(): the stream ended inside a frame.
 *   -ENOBUFS   frame_encode(): the caller's buffer is too small.
 *   -ENOMEM    frame_decoder_new(): out of memory.
 */
#ifndef MIOSA_FRAME_H
#define MIOSA_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#define FRAME_HEADER_SIZE 4u
#define FRAME_MAX_PAYLOAD 65536u
/* Largest whole frame, header included: size a send buffer with this. */
#define FRAME_MAX_SIZE (FRAME_HEADER_SIZE + FRAME_MAX_PAYLOAD)

/* Non-negative results of frame_decoder_feed(). */
enum {
	FRAME_NEED_MORE = 0, /* every input byte was consumed; feed more */
	FRAME_READY = 1,     /* a whole frame is in *ret_frame */
};

/* A view of one payload; valid until the next call on its decoder. */
struct frame {
	const uint8_t *payload;
	size_t len;
};

struct frame_decoder;

/*
 * Whole frame size (header + packed message) of msg.  It may exceed
 * FRAME_MAX_SIZE, in which case frame_encode() refuses the message.
 */
size_t frame_encoded_size(const ProtobufCMessage *msg);

/*
 * Writes msg as one frame to buf.  On success *ret_len is the frame size.
 * -EMSGSIZE when the packed message exceeds FRAME_MAX_PAYLOAD, -ENOBUFS when
 * it does not fit in cap bytes; buf is then left unspecified.
 */
__attribute__((warn_unused_result))
int frame_encode(const ProtobufCMessage *msg, uint8_t *buf, size_t cap, size_t *ret_len);

/* A decoder waiting for the first byte of a frame.  -ENOMEM. */
__attribute__((warn_unused_result))
int frame_decoder_new(struct frame_decoder **ret_decoder);

/* Frees d; NULL is accepted. */
void frame_decoder_free(struct frame_decoder *d);

/*
 * Takes up to len bytes of the stream (any split, down to 1 byte per call).
 *   FRAME_NEED_MORE: *ret_consumed == len.
 *   FRAME_READY:     *ret_consumed <= len is how many bytes completed the
 *                    frame; the rest of data is not part of it and was not
 *                    looked at.  *ret_frame views the payload until the next
 *                    call on d; the next feed starts a new frame.
 *   negative:        protocol error (-EMSGSIZE); outputs untouched.
 * ret_frame is written only with FRAME_READY.
 */
__attribute__((warn_unused_result))
int frame_decoder_feed(struct frame_decoder *d, const void *data, size_t len,
		       size_t *ret_consumed, struct frame *ret_frame);

/*
 * The peer closed its side: 0 when the stream ended on a frame boundary,
 * -EPIPE when it ended inside a frame (the decoder then fails for good).
 */
__attribute__((warn_unused_result))
int frame_decoder_finish(struct frame_decoder *d);

/* Static text for a result of the functions above; never NULL. */
const char *frame_strerror(int r);

#endif
