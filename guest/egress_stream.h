/*
 * egress_stream — one caught TCP connection, carried to the broker.
 *
 *   1. accept; the original destination is getsockname() of the accepted
 *      socket (the synthetic range is local on lo, so the kernel delivered
 *      the SYN for 198.18.x.y:port to our 0.0.0.0:port listener).  Anything
 *      outside 198.18.0.0/15 (a local client of 127.0.0.1:80) is reset:
 *      it is not egress and the broker could not map it;
 *   2. a new broker stream: GuestOpen{egress: dst_addr, dst_port}, then wait
 *      for OpenResult without reading the client (its bytes wait in the
 *      kernel).  Refused, broker unreachable, a bad answer or no answer in
 *      EGRESS_OPEN_TIMEOUT_MS: the client gets a TCP RST (SO_LINGER 0), the
 *      nearest thing to "connection refused" once accept() happened;
 *   3. splice both ways.  Back-pressure: a side is read only while the
 *      other side's unsent bytes are at most EGRESS_HIGH_WATER.  Half-close:
 *      EOF read on one side becomes shutdown(SHUT_WR) on the other once its
 *      queued bytes are out; the connection closes when both directions
 *      have ended, or at once on an error (the client is reset when the
 *      broker side failed, so it never mistakes a cut for a clean end).
 *
 * Memory per connection: sizeof(struct egress_stream) (egress_stream_size())
 * always; while opening, one frame decoder (64 KiB); while splicing, at most
 * EGRESS_HIGH_WATER + EGRESS_READ_SIZE of buffers per direction in flight,
 * none when idle (read buffers are allocated per read and freed when
 * written).
 *
 * Contract: loop thread only.  The stream ends by itself; done(data) is
 * called once, after every handle closed, and then it is freed.
 * egress_stream_abort() resets the client and ends it early.
 */
#ifndef MIOSA_EGRESS_STREAM_H
#define MIOSA_EGRESS_STREAM_H

#include <stddef.h>
#include <uv.h>

#include "transport.h"

#define EGRESS_READ_SIZE (16u * 1024)
#define EGRESS_HIGH_WATER (64u * 1024)
#define EGRESS_OPEN_TIMEOUT_MS 30000u

struct egress_stream;

typedef void egress_stream_done_cb(void *data, struct egress_stream *s);

/*
 * Accepts the pending connection of server and starts the stream; with
 * refuse set, resets it at once (over the connection cap).  Negative UV_E*
 * only when nothing was accepted.
 */
__attribute__((warn_unused_result))
int egress_stream_accept(uv_loop_t *loop, uv_stream_t *server, const struct transport_spec *spec,
			 int refuse, egress_stream_done_cb *done, void *data,
			 struct egress_stream **ret_stream);

void egress_stream_abort(struct egress_stream *s);

size_t egress_stream_size(void);

#endif
