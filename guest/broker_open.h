/*
 * broker_open — opens one stream to the broker: a transport connection,
 * the GuestOpen frame every stream starts with, and the broker's first
 * frame back (HelloAck, OpenResult or DnsAnswer).  The control stream, each
 * DNS query and each egress connection go through it.
 *
 * Contract:
 *   - struct broker_open is embedded in the caller's state (libuv style:
 *     public layout, private fields) and must stay valid until the caller's
 *     pipe is closed (its close callback has run).
 *   - broker_open_start(): on 0, *pipe is initialised and belongs to the
 *     caller, who must uv_close() it whatever happens.  cb is called exactly
 *     once, unless broker_open_cancel() comes first:
 *       status 0:  *answer views the broker's first frame payload and
 *                  rest/rest_len the bytes that followed it in the same read
 *                  (raw TCP on an egress stream); both are valid during the
 *                  callback only.  Reading is stopped; the caller sets
 *                  pipe->data and starts its own reads.
 *       status < 0: UV_E* from connect/read/write, UV_EOF when the broker
 *                  closed before answering, or a frame.h error (-EMSGSIZE).
 *     On failure (negative return) nothing was started.
 *   - Memory: one frame decoder (FRAME_MAX_PAYLOAD + 64 bytes) between the
 *     first broker byte and the callback; reads go through one module-wide
 *     buffer (the loop is single-threaded and consumes each read at once).
 *   - Loop thread only.
 */
#ifndef MIOSA_BROKER_OPEN_H
#define MIOSA_BROKER_OPEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "frame.h"
#include "miosa.pb-c.h"
#include "transport.h"

struct broker_open;

typedef void broker_open_cb(struct broker_open *op, int status, const struct frame *answer,
			    const uint8_t *rest, size_t rest_len);

struct broker_open {
	void *data; /* the caller's; untouched by this module */
	/* private */
	uv_pipe_t *pipe;
	broker_open_cb *cb;
	struct transport_connect *connecting;
	struct frame_decoder *decoder;
	uint8_t *first; /* the encoded GuestOpen frame until written */
	size_t first_len;
	uv_write_t write;
	bool writing; /* uv_write() holds first */
	bool done;
};

__attribute__((warn_unused_result))
int broker_open_start(struct broker_open *op, uv_loop_t *loop, const struct transport_spec *spec,
		      uv_pipe_t *pipe, const Miosa__GuestOpen *first, broker_open_cb *cb);

/* No callback after this; then uv_close() the pipe.  No-op once cb ran. */
void broker_open_cancel(struct broker_open *op);

#endif
