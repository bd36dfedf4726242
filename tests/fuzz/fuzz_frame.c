/*
 * Fuzz target for proto/frame.h and proto/wire.h: the bytes a peer controls
 * on any guest <-> host connection.
 *
 * Input: byte 0 picks the chunking (how a socket could split the stream),
 * the rest is the stream.  Every complete frame goes through all five wire
 * decoders; whatever one accepts must re-encode with the matching
 * wire_frame_*() (the rules are the same both ways) and decode again.
 * Checked invariants abort; leaks are caught by LeakSanitizer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "frame.h"
#include "wire.h"

static uint8_t reframe[FRAME_MAX_SIZE];

/* Decode; if accepted, re-encode, decode the re-encoding, free both. */
#define ROUND_TRIP(name, type, payload, len)                                               \
	do {                                                                               \
		type *m = NULL, *again = NULL;                                             \
		struct wire_error e = { 0 };                                               \
		size_t n = 0;                                                              \
		int r = wire_decode_##name(payload, len, &m, &e);                          \
		if (r < 0) {                                                               \
			CHECK(m == NULL && e.message && e.field && e.reason);              \
			break;                                                             \
		}                                                                          \
		CHECK(wire_frame_##name(m, reframe, sizeof(reframe), &n, &e) == 0);        \
		CHECK(n >= FRAME_HEADER_SIZE && n <= FRAME_MAX_SIZE);                      \
		CHECK(wire_decode_##name(reframe + FRAME_HEADER_SIZE, n - FRAME_HEADER_SIZE, \
					 &again, &e) == 0);                                \
		wire_free_##name(again);                                                   \
		wire_free_##name(m);                                                       \
	} while (0)

static void decode_all(const struct frame *f)
{
	CHECK(f->len <= FRAME_MAX_PAYLOAD);
	ROUND_TRIP(guest_open, Miosa__GuestOpen, f->payload, f->len);
	ROUND_TRIP(host_to_guest, Miosa__HostToGuest, f->payload, f->len);
	ROUND_TRIP(guest_to_host, Miosa__GuestToHost, f->payload, f->len);
	ROUND_TRIP(open_result, Miosa__OpenResult, f->payload, f->len);
	ROUND_TRIP(dns_answer, Miosa__DnsAnswer, f->payload, f->len);
}

/* Chunk sizes from a tiny generator seeded by byte 0: 1 byte at a time,
 * everything at once, and irregular splits in between. */
static size_t next_chunk(uint8_t mode, uint32_t *state, size_t left)
{
	size_t n;

	if (mode == 0)
		n = 1;
	else if (mode == 0xff)
		n = left;
	else {
		*state = *state * 1103515245u + 12345u;
		n = 1 + (*state >> 16) % ((size_t)mode * 4);
	}
	return n < left ? n : left;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct frame_decoder *d = NULL;
	uint32_t state;
	uint8_t mode;
	size_t off = 1;
	int r = 0;

	if (size < 1)
		return 0;
	mode = data[0];
	state = mode;
	if (frame_decoder_new(&d) < 0)
		return 0;
	while (off < size) {
		size_t chunk = next_chunk(mode, &state, size - off), consumed = SIZE_MAX;
		struct frame f;

		/* Within a chunk, keep feeding: frames stop at their boundary. */
		for (size_t used = 0; used < chunk; used += consumed) {
			r = frame_decoder_feed(d, data + off + used, chunk - used, &consumed, &f);
			if (r < 0)
				goto out;
			/* progress on every call, never past the chunk */
			CHECK(consumed >= 1 && consumed <= chunk - used);
			if (r == FRAME_READY)
				decode_all(&f);
			else
				CHECK(consumed == chunk - used);
		}
		off += chunk;
	}
	r = frame_decoder_finish(d);
out:
	CHECK(r <= 0 && frame_strerror(r) != NULL);
	/* failed closed: the same error again */
	if (r < 0)
		CHECK(frame_decoder_finish(d) == r);
	frame_decoder_free(d);
	return 0;
}
