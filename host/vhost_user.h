/*
 * vhost_user — the backend side of the vhost-user protocol (QEMU
 * docs/interop/vhost-user.rst) for one virtio-vsock device: the Unix socket
 * QEMU connects to, the message codec, the request table, the guest memory
 * table and the vrings (0 = rx, 1 = tx; QEMU keeps the event queue).
 *
 * Offered: features VERSION_1 and PROTOCOL_FEATURES; protocol features
 * CONFIG (the config space is le64 guest_cid) and REPLY_ACK.  Nothing else
 * (no EVENT_IDX, INDIRECT_DESC, MQ, logging, inflight, postcopy).
 *
 * Wire: 12-byte header (le32 request, le32 flags, le32 size) then `size`
 * payload bytes, at most VHOST_USER_MAX_PAYLOAD; file descriptors ride
 * SCM_RIGHTS, at most VHOST_USER_MAX_FDS per message.  Every fd a message
 * carries is either kept by the handler that needs it or closed before the
 * next message is read.
 *
 * Errors: a message that breaks the wire format (version, size, fds) or
 * carries a value the handler refuses is a protocol violation.  With
 * REPLY_ACK negotiated and NEED_REPLY set the frontend gets a failure ack
 * and decides; otherwise the device fails: the connection is dropped and
 * ops->disconnected() says why.  An unknown request is nacked when a reply
 * is asked for and ignored otherwise (the spec lets a frontend send only
 * what was negotiated, so it is a frontend bug either way).
 *
 * Contract:
 *   - Loop-thread only (libuv).  One frontend connection at a time: once
 *     QEMU is connected the listener stops accepting.  A connection that
 *     closes before sending one message is not a frontend (a liveness probe,
 *     e.g. a second miosa-vsock refusing to take over this socket): it is
 *     ignored and accepting resumes.
 *   - ops->vring_state(ctx, i, true) when ring i starts running (kick fd
 *     received, enabled, addresses translated), false when it stops
 *     (GET_VRING_BASE, RESET_OWNER, disconnect); ops->kick(ctx, i) when the
 *     guest kicked a running ring.  ops->disconnected(ctx, err, why) once
 *     when the frontend goes away: err 0 for EOF with every ring stopped (a
 *     clean QEMU shutdown), -ECONNRESET for EOF with rings running, another
 *     -errno for a protocol violation or I/O error; why is a fixed text.
 *   - vhost_user_vring() returns the virtq of a running ring, else NULL; the
 *     pointer is valid until the next callback.
 *   - vhost_user_free(): handles are closed asynchronously; the caller runs
 *     the loop once more before uv_loop_close().
 *   - vhost_user_handle_message() is the codec + dispatcher without the
 *     socket (unit tests, fuzzing): it owns fds[0..nfds) (keeps or closes
 *     them all) and returns 0 (no reply), the reply length, or -errno with
 *     *ret_why set for a fatal violation.
 */
#ifndef MIOSA_VHOST_USER_H
#define MIOSA_VHOST_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "guest_mem.h"
#include "virtq.h"

#define VHOST_USER_HDR_SIZE 12u
#define VHOST_USER_MAX_PAYLOAD 4096u
#define VHOST_USER_MAX_FDS GUEST_MEM_MAX_REGIONS
#define VHOST_USER_MAX_CONFIG_SIZE 256u
#define VHOST_USER_NUM_VRINGS 2u

enum vhost_user_request {
	VHOST_USER_GET_FEATURES = 1,
	VHOST_USER_SET_FEATURES = 2,
	VHOST_USER_SET_OWNER = 3,
	VHOST_USER_RESET_OWNER = 4,
	VHOST_USER_SET_MEM_TABLE = 5,
	VHOST_USER_SET_VRING_NUM = 8,
	VHOST_USER_SET_VRING_ADDR = 9,
	VHOST_USER_SET_VRING_BASE = 10,
	VHOST_USER_GET_VRING_BASE = 11,
	VHOST_USER_SET_VRING_KICK = 12,
	VHOST_USER_SET_VRING_CALL = 13,
	VHOST_USER_SET_VRING_ERR = 14,
	VHOST_USER_GET_PROTOCOL_FEATURES = 15,
	VHOST_USER_SET_PROTOCOL_FEATURES = 16,
	VHOST_USER_SET_VRING_ENABLE = 18,
	VHOST_USER_GET_CONFIG = 24,
	VHOST_USER_SET_CONFIG = 25,
};

#define VHOST_USER_VERSION 1u
#define VHOST_USER_FLAG_VERSION_MASK 3u
#define VHOST_USER_FLAG_REPLY (1u << 2)
#define VHOST_USER_FLAG_NEED_REPLY (1u << 3)

#define VHOST_USER_F_PROTOCOL_FEATURES 30
#define VIRTIO_F_VERSION_1 32
#define VHOST_USER_PROTOCOL_F_REPLY_ACK 3
#define VHOST_USER_PROTOCOL_F_CONFIG 9

#define VHOST_USER_OFFERED_FEATURES \
	((1ull << VIRTIO_F_VERSION_1) | (1ull << VHOST_USER_F_PROTOCOL_FEATURES))
#define VHOST_USER_OFFERED_PROTOCOL_FEATURES \
	((1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) | (1ull << VHOST_USER_PROTOCOL_F_CONFIG))

struct vhost_user_ops {
	void (*vring_state)(void *ctx, unsigned index, bool running);
	void (*kick)(void *ctx, unsigned index);
	void (*disconnected)(void *ctx, int err, const char *why);
};

struct vhost_user;

/* The device, not yet listening.  guest_cid is what GET_CONFIG answers. */
__attribute__((warn_unused_result))
int vhost_user_new(uv_loop_t *loop, uint64_t guest_cid, const struct vhost_user_ops *ops,
		   void *ctx, struct vhost_user **ret_dev);

/*
 * Listens on path (AF_UNIX stream, mode 0600 via umask of the caller's
 * choosing).  A stale socket file nobody listens on is replaced; a live one
 * is -EADDRINUSE; a path too long for sun_path is -ENAMETOOLONG.
 */
__attribute__((warn_unused_result))
int vhost_user_listen(struct vhost_user *dev, const char *path);

struct virtq *vhost_user_vring(struct vhost_user *dev, unsigned index);
const struct guest_mem *vhost_user_mem(const struct vhost_user *dev);

int vhost_user_handle_message(struct vhost_user *dev, const uint8_t *msg, size_t len, int *fds,
			      unsigned nfds, uint8_t *reply, size_t reply_cap, const char **ret_why);

/* Name of a request for logs ("SET_MEM_TABLE"), "unknown" otherwise. */
const char *vhost_user_request_name(uint32_t request);

void vhost_user_free(struct vhost_user *dev);

#endif
