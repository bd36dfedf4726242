/*
 * vsock_mux — miosa-vsock's connection layer: the virtio-vsock stream
 * protocol (REQUEST/RESPONSE/RW/SHUTDOWN/RST/CREDIT_UPDATE/CREDIT_REQUEST,
 * buf_alloc/fwd_cnt credit) between one guest and the host's hybrid-vsock
 * Unix sockets (the Firecracker convention):
 *
 *   guest -> host port P   the mux connects to "<uds>_P" (AF_UNIX stream);
 *                          RESPONSE once connected, RST if that fails.
 *   host -> guest port P   a host process connects to "<uds>" (the mux
 *                          listens there), writes "CONNECT P\n"; the mux sends
 *                          REQUEST to the guest and, on RESPONSE, answers
 *                          "OK <host_port>\n" and splices; on RST it closes.
 *
 * It knows nothing of virtqueues: the device layer (vhost_user, virtq)
 * hands it each packet the guest put on its tx queue and pulls packets for
 * the rx queue whenever the guest has buffers.  Backpressure is the credit
 * protocol: the mux stops reading a Unix socket while the guest has no
 * credit for it, and advertises buf_alloc for what it buffers towards a
 * Unix socket, so what it holds is bounded per connection.
 *
 * Contract:
 *   - Loop-thread only (libuv).  The mux owns its uv handles; the caller owns
 *     the loop.  The process ignores SIGPIPE (a Unix peer may leave while the
 *     mux writes; the mux sees EPIPE and resets that connection).
 *   - vsock_mux_from_guest() never fails: a packet that breaks the protocol
 *     (wrong CID, unknown op or type, an op the connection's state does not
 *     allow, payload on a control op, len over VSOCK_MAX_PAYLOAD or over the
 *     credit it was given) resets the connection it names (RST to the guest,
 *     Unix socket closed), counted and logged once.  A packet naming no
 *     connection (other than REQUEST) is answered with RST as Linux answers
 *     a packet for no socket, except an RST or one with wrong CIDs or type,
 *     which is dropped; these are counted, not logged (the guest chooses
 *     their rate).
 *   - The payload pointer is only valid during the call (the mux copies).
 *   - hooks->to_guest_ready(ctx) is called at the end of a mux entry point
 *     or loop callback (possibly inside vsock_mux_from_guest(), never inside
 *     vsock_mux_to_guest()) whenever new packets for the guest became
 *     pending; the device then calls vsock_mux_to_guest() until it returns 0
 *     or the rx queue has no room, and resumes on the guest's next rx kick
 *     while vsock_mux_has_pending().
 *   - vsock_mux_reset(): the guest driver reset or went away — every
 *     connection is closed without packets (the guest has forgotten them).
 *   - vsock_mux_free(): closes everything; memory is released from the
 *     close callbacks, so the caller runs the loop once more (uv_run) before
 *     uv_loop_close().
 */
#ifndef MIOSA_VSOCK_MUX_H
#define MIOSA_VSOCK_MUX_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "vsock_wire.h"

/* Caps: a guest cannot make the mux allocate past these. */
#define VSOCK_MUX_MAX_CONNECTIONS 1024u
#define VSOCK_MUX_DEFAULT_BUF_ALLOC (256u * 1024u)
#define VSOCK_MUX_REQUEST_TIMEOUT_MS 2000u /* as Firecracker's CONN_REQUEST_TIMEOUT_MS */

struct vsock_mux_config {
	const char *uds_path;  /* PATH; guest->host port P goes to PATH_P */
	uint64_t guest_cid;    /* >= 3 */
	uint32_t buf_alloc;    /* per connection, what the mux buffers towards a Unix socket */
	/* How long a host-initiated connection may take to send its CONNECT
	 * line, and then the guest to answer the REQUEST, before it is closed
	 * (and, once REQUEST was sent, RST); 0: VSOCK_MUX_REQUEST_TIMEOUT_MS. */
	uint32_t request_timeout_ms;
};

struct vsock_mux_hooks {
	void (*to_guest_ready)(void *ctx);
	void *ctx;
};

/*
 * connections_opened: connections that reached the connected state (either
 * direction); connections_reset: connections ended by an RST either way or
 * refused (no listener, cap); protocol_errors: guest packets that broke the
 * protocol (plus RSTs dropped because the guest left its rx queue full);
 * bytes_*: RW payload bytes.
 */
struct vsock_mux_stats {
	uint64_t connections_opened;
	uint64_t connections_reset;
	uint64_t protocol_errors;
	uint64_t bytes_from_guest;
	uint64_t bytes_to_guest;
};

struct vsock_mux;

/*
 * Creates the mux and starts listening on config->uds_path for host-initiated
 * connections (an existing socket file there is refused with -EADDRINUSE
 * unless nothing listens on it, in which case it is replaced; a non-socket
 * there is refused with -EEXIST).  The socket is mode 0600 and unlinked by
 * vsock_mux_free().  config->buf_alloc 0 means VSOCK_MUX_DEFAULT_BUF_ALLOC,
 * else 4096..64 MiB; uds_path + "_4294967295" must fit sun_path
 * (-ENAMETOOLONG); guest_cid 3..0xfffffffe (-EINVAL).  hooks may be NULL.
 * If it fails after the listener handle was made (uv_pipe_open/uv_listen),
 * that handle is closing: run the loop before uv_loop_close(), as after
 * vsock_mux_free().
 */
__attribute__((warn_unused_result))
int vsock_mux_new(uv_loop_t *loop, const struct vsock_mux_config *config,
		  const struct vsock_mux_hooks *hooks, struct vsock_mux **ret_mux);

/* One packet from the guest's tx queue; payload holds hdr->len bytes (NULL if 0). */
void vsock_mux_from_guest(struct vsock_mux *mux, const struct vsock_hdr *hdr, const uint8_t *payload);

/*
 * The next packet for the guest's rx queue, encoded (header + payload) into
 * buf; cap is the room the guest's buffer chain offers (>= VSOCK_HDR_SIZE,
 * else 0 is returned and nothing is consumed).  A data packet is trimmed to
 * fit cap; the rest stays pending.  Returns the bytes written, 0 when
 * nothing is pending.
 */
size_t vsock_mux_to_guest(struct vsock_mux *mux, uint8_t *buf, size_t cap);

/* True when vsock_mux_to_guest() would return something (given a cap with
 * room for a header and at least one payload byte: data never fits in a
 * bare header). */
int vsock_mux_has_pending(const struct vsock_mux *mux);

void vsock_mux_reset(struct vsock_mux *mux);

void vsock_mux_get_stats(const struct vsock_mux *mux, struct vsock_mux_stats *ret_stats);

void vsock_mux_free(struct vsock_mux *mux);

#endif
