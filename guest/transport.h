/*
 * transport — how the agent reaches the broker: one module, two back ends.
 *
 *   vsock:CID:PORT  AF_VSOCK stream to CID:PORT (default vsock:2:1024, the
 *                   host).  Used inside VMs only: never on a development or
 *                   CI machine, whose /dev/vsock leads to its hypervisor.
 *   unix:PATH       AF_UNIX stream to PATH_1024, the hybrid-vsock convention
 *                   (Firecracker / Cloud Hypervisor: guest->host port P is
 *                   the socket PATH_P); what the tests use.
 *
 * Every call opens a new stream connection: one per control session, DNS
 * query and egress connection (shared/DESIGN.md, "Guest <-> host wire").
 *
 * Contract:
 *   - transport_spec_parse() / transport_spec_format() are pure.
 *   - transport_connect() runs on the loop thread.  When it returns 0 it has
 *     uv_pipe_init()ed *pipe, which then belongs to the caller, who must
 *     uv_close() it whatever happens; cb(data, status) is called exactly once
 *     (status 0: the pipe is a connected stream, readable and writable),
 *     unless transport_connect_cancel() comes first, after which cb is never
 *     called.  On failure (negative return) *pipe is untouched and cb is
 *     never called.
 *   - Cancel, then uv_close() the pipe; the request frees itself.
 *   - Errors are negative UV_E* codes (which are -errno on Linux).
 */
#ifndef MIOSA_TRANSPORT_H
#define MIOSA_TRANSPORT_H

#include <stdint.h>
#include <sys/un.h>
#include <uv.h>

/* The broker's port: the vsock port by default, the suffix of unix:PATH. */
#define TRANSPORT_HOST_PORT 1024u
#define TRANSPORT_DEFAULT "vsock:2:1024"
/* PATH of unix:PATH, so that "PATH_1024" still fits in sun_path with its NUL. */
#define TRANSPORT_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - sizeof("_1024"))
/* Longest text transport_spec_format() writes, NUL included. */
#define TRANSPORT_SPEC_TEXT_MAX (sizeof("unix:") + sizeof(((struct sockaddr_un *)0)->sun_path))

enum transport_kind {
	TRANSPORT_VSOCK = 1,
	TRANSPORT_UNIX = 2,
};

struct transport_spec {
	enum transport_kind kind;
	uint32_t cid;  /* vsock */
	uint32_t port; /* vsock */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* unix: PATH_1024 */
};

/*
 * Parses "vsock:CID:PORT" (decimal u32s, no sign, no leading zeros but "0",
 * PORT != 0) or "unix:PATH" (non-empty, at most TRANSPORT_PATH_MAX bytes).
 * -EINVAL for anything else; *ret_spec written only on success.
 */
__attribute__((warn_unused_result))
int transport_spec_parse(const char *text, struct transport_spec *ret_spec);

/* "vsock:2:1024" or "unix:/run/x_1024" (the socket actually dialled). */
void transport_spec_format(const struct transport_spec *spec, char *buf, size_t cap);

struct transport_connect;

typedef void transport_connect_cb(void *data, int status);

__attribute__((warn_unused_result))
int transport_connect(uv_loop_t *loop, const struct transport_spec *spec, uv_pipe_t *pipe,
		      transport_connect_cb *cb, void *data, struct transport_connect **ret_req);

void transport_connect_cancel(struct transport_connect *req);

#endif
