#include "broker_open.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "wire.h"

/* Big enough for any OpenResult or DNS answer in one or two reads. */
#define BROKER_OPEN_READ_SIZE (16u * 1024)

static char read_buffer[BROKER_OPEN_READ_SIZE];

/* The first frame, unless uv_write() still holds it (on_written frees it). */
static void release_first(struct broker_open *op)
{
	if (op->writing)
		return;
	free(op->first);
	op->first = NULL;
}

/* Calls cb once and releases what the open phase held (not the pipe). */
static void finish(struct broker_open *op, int status, const struct frame *answer,
		   const uint8_t *rest, size_t rest_len)
{
	if (op->done)
		return;
	op->done = true;
	release_first(op);
	if (!uv_is_closing((uv_handle_t *)op->pipe))
		uv_read_stop((uv_stream_t *)op->pipe);
	op->cb(op, status, answer, rest, rest_len);
	/* after the callback: answer views the decoder's buffer */
	frame_decoder_free(op->decoder);
	op->decoder = NULL;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	(void)handle;
	(void)suggested;
	*buf = uv_buf_init(read_buffer, sizeof(read_buffer));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct broker_open *op = stream->data;
	struct frame f;
	size_t used = 0;
	int r;

	if (nread == 0 || op->done)
		return;
	if (nread < 0) {
		finish(op, (int)nread, NULL, NULL, 0);
		return;
	}
	r = frame_decoder_feed(op->decoder, buf->base, (size_t)nread, &used, &f);
	if (r < 0)
		finish(op, r, NULL, NULL, 0);
	else if (r == FRAME_READY)
		finish(op, 0, &f, (const uint8_t *)buf->base + used, (size_t)nread - used);
}

static void on_written(uv_write_t *req, int status)
{
	struct broker_open *op = req->data;

	op->writing = false;
	free(op->first);
	op->first = NULL;
	if (status < 0)
		finish(op, status, NULL, NULL, 0);
}

static void on_connected(void *data, int status)
{
	struct broker_open *op = data;
	uv_buf_t buf = uv_buf_init((char *)op->first, (unsigned)op->first_len);
	int r;

	op->connecting = NULL;
	if (status < 0) {
		finish(op, status, NULL, NULL, 0);
		return;
	}
	/* The decoder's 64 KiB are taken only once the stream exists. */
	if ((r = frame_decoder_new(&op->decoder)) < 0) {
		finish(op, r, NULL, NULL, 0);
		return;
	}
	op->write.data = op;
	if ((r = uv_write(&op->write, (uv_stream_t *)op->pipe, &buf, 1, on_written)) < 0) {
		finish(op, r, NULL, NULL, 0);
		return;
	}
	op->writing = true;
	if ((r = uv_read_start((uv_stream_t *)op->pipe, on_alloc, on_read)) < 0)
		finish(op, r, NULL, NULL, 0);
}

static int encode_first(struct broker_open *op, const Miosa__GuestOpen *first)
{
	size_t cap = frame_encoded_size(&first->base);
	int r;

	if (cap > FRAME_MAX_SIZE)
		return -EMSGSIZE;
	op->first = malloc(cap);
	if (!op->first)
		return -ENOMEM;
	if ((r = wire_frame_guest_open(first, op->first, cap, &op->first_len, NULL)) < 0) {
		free(op->first);
		op->first = NULL;
	}
	return r;
}

int broker_open_start(struct broker_open *op, uv_loop_t *loop, const struct transport_spec *spec,
		      uv_pipe_t *pipe, const Miosa__GuestOpen *first, broker_open_cb *cb)
{
	void *data = op->data;
	int r;

	*op = (struct broker_open){ .data = data, .pipe = pipe, .cb = cb };
	if ((r = encode_first(op, first)) < 0)
		return r;
	if ((r = transport_connect(loop, spec, pipe, on_connected, op, &op->connecting)) < 0) {
		release_first(op);
		return r;
	}
	pipe->data = op;
	return 0;
}

void broker_open_cancel(struct broker_open *op)
{
	if (op->done)
		return;
	op->done = true;
	if (op->connecting) {
		transport_connect_cancel(op->connecting);
		op->connecting = NULL;
	} else if (!uv_is_closing((uv_handle_t *)op->pipe)) {
		uv_read_stop((uv_stream_t *)op->pipe);
	}
	frame_decoder_free(op->decoder);
	op->decoder = NULL;
	/* if uv_write() still holds the first frame, on_written frees it
	 * (ECANCELED once the caller closes the pipe) */
	release_first(op);
}
