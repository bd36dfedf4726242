#include "transport.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

struct transport_connect {
	enum transport_kind kind;
	transport_connect_cb *cb;
	void *data;
	bool cancelled;
	uv_pipe_t *pipe;
	union {
		uv_connect_t connect; /* unix */
		struct {              /* vsock */
			uv_poll_t poll;
			int fd;
		} vsock;
	} u;
};

/* --- Spec ------------------------------------------------------------------ */

/* Decimal u32 of the whole string [s, end): no sign, no leading zero. */
static int parse_u32(const char *s, const char *end, uint32_t *ret_value)
{
	uint64_t v = 0;

	if (s == end || (s[0] == '0' && end - s > 1))
		return -EINVAL;
	for (const char *p = s; p < end; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > UINT32_MAX)
			return -EINVAL;
	}
	*ret_value = (uint32_t)v;
	return 0;
}

static int parse_vsock(const char *rest, struct transport_spec *ret_spec)
{
	const char *colon = strchr(rest, ':');
	uint32_t cid, port;

	if (!colon || parse_u32(rest, colon, &cid) < 0 ||
	    parse_u32(colon + 1, colon + 1 + strlen(colon + 1), &port) < 0 || port == 0)
		return -EINVAL;
	*ret_spec = (struct transport_spec){ .kind = TRANSPORT_VSOCK, .cid = cid, .port = port };
	return 0;
}

static int parse_unix(const char *path, struct transport_spec *ret_spec)
{
	size_t len = strlen(path);
	struct transport_spec spec = { .kind = TRANSPORT_UNIX };

	if (len == 0 || len > TRANSPORT_PATH_MAX)
		return -EINVAL;
	snprintf(spec.path, sizeof(spec.path), "%s_%u", path, TRANSPORT_HOST_PORT);
	*ret_spec = spec;
	return 0;
}

int transport_spec_parse(const char *text, struct transport_spec *ret_spec)
{
	if (strncmp(text, "vsock:", 6) == 0)
		return parse_vsock(text + 6, ret_spec);
	if (strncmp(text, "unix:", 5) == 0)
		return parse_unix(text + 5, ret_spec);
	return -EINVAL;
}

void transport_spec_format(const struct transport_spec *spec, char *buf, size_t cap)
{
	if (spec->kind == TRANSPORT_VSOCK)
		snprintf(buf, cap, "vsock:%u:%u", spec->cid, spec->port);
	else
		snprintf(buf, cap, "unix:%s", spec->path);
}

/* --- Unix back end ------------------------------------------------------------ */

static void unix_connected(uv_connect_t *connect, int status)
{
	struct transport_connect *req = connect->data;

	if (!req->cancelled)
		req->cb(req->data, status);
	free(req);
}

static int connect_unix(uv_loop_t *loop, const struct transport_spec *spec,
			struct transport_connect *req)
{
	int r = uv_pipe_init(loop, req->pipe, 0);

	if (r < 0)
		return r;
	req->u.connect.data = req;
	/* libuv reports every failure, even an immediate one, through the
	 * callback (after this returns), so the caller's state is in place. */
	uv_pipe_connect(&req->u.connect, req->pipe, spec->path, unix_connected);
	return 0;
}

/* --- Vsock back end ----------------------------------------------------------- */

static void vsock_free(uv_handle_t *poll)
{
	free(poll->data);
}

static void vsock_writable(uv_poll_t *poll, int status, int events)
{
	struct transport_connect *req = poll->data;
	int fd = req->u.vsock.fd, err = 0;
	socklen_t len = sizeof(err);

	(void)events;
	if (status == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	status = status < 0 ? status : -err;
	/* The poll handle lets go of fd (uv_close stops watching at once)
	 * before the pipe takes it over. */
	uv_close((uv_handle_t *)poll, vsock_free);
	if (status == 0)
		status = uv_pipe_open(req->pipe, fd);
	if (status < 0)
		close(fd);
	req->cb(req->data, status);
}

static int vsock_socket(const struct transport_spec *spec, int *ret_fd)
{
	struct sockaddr_vm addr = {
		.svm_family = AF_VSOCK,
		.svm_cid = spec->cid,
		.svm_port = spec->port,
	};
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 && errno != EINPROGRESS) {
		int r = -errno;
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

static int connect_vsock(uv_loop_t *loop, const struct transport_spec *spec,
			 struct transport_connect *req)
{
	int fd = -1, r;

	if ((r = vsock_socket(spec, &fd)) < 0)
		return r;
	if ((r = uv_poll_init(loop, &req->u.vsock.poll, fd)) < 0)
		goto fail;
	req->u.vsock.fd = fd;
	req->u.vsock.poll.data = req;
	/* A non-blocking connect completes when the socket turns writable. */
	if ((r = uv_poll_start(&req->u.vsock.poll, UV_WRITABLE, vsock_writable)) < 0) {
		/* the request is freed by the close callback; report the error */
		uv_close((uv_handle_t *)&req->u.vsock.poll, vsock_free);
		close(fd);
		return r;
	}
	uv_pipe_init(loop, req->pipe, 0);
	return 0;
fail:
	close(fd);
	free(req);
	return r;
}

/* --- Entry points ---------------------------------------------------------------- */

int transport_connect(uv_loop_t *loop, const struct transport_spec *spec, uv_pipe_t *pipe,
		      transport_connect_cb *cb, void *data, struct transport_connect **ret_req)
{
	struct transport_connect *req = calloc(1, sizeof(*req));
	int r;

	assert(cb && pipe);
	if (!req)
		return UV_ENOMEM;
	*req = (struct transport_connect){ .kind = spec->kind, .cb = cb, .data = data,
					   .pipe = pipe };
	if (spec->kind == TRANSPORT_UNIX) {
		if ((r = connect_unix(loop, spec, req)) < 0) {
			free(req);
			return r;
		}
	} else if ((r = connect_vsock(loop, spec, req)) < 0) {
		return r; /* connect_vsock() released req */
	}
	if (ret_req)
		*ret_req = req;
	return 0;
}

void transport_connect_cancel(struct transport_connect *req)
{
	req->cancelled = true;
	if (req->kind == TRANSPORT_UNIX)
		return; /* the caller's uv_close() ends the connect with ECANCELED */
	/* vsock: stop watching before closing the descriptor */
	uv_close((uv_handle_t *)&req->u.vsock.poll, vsock_free);
	close(req->u.vsock.fd);
}
