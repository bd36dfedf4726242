/*
 * vsock_device — miosa-vsock's glue between the virtio device (vhost_user,
 * virtq) and the connection layer (vsock_mux):
 *
 *   tx (ring 1): each chain the guest made available holds one packet,
 *     header + payload, readable; it is gathered into a bounded bounce
 *     buffer (VSOCK_HDR_SIZE + VSOCK_MAX_PAYLOAD), decoded and handed to
 *     vsock_mux_from_guest(), then returned used (0 bytes written).
 *   rx (ring 0): while the mux has packets pending and the guest has
 *     writable chains, vsock_mux_to_guest() encodes one packet into the
 *     bounce buffer sized to the chain and it is scattered into the chain.
 *
 * Guest errors: a tx packet shorter than its header, or whose header
 * announces more payload than the chain holds or than VSOCK_MAX_PAYLOAD, is
 * handed to the mux as an INVALID op for its connection (which the mux
 * answers with RST), its payload never read.  A ring the guest corrupted
 * (virtq_pop() -EIO: loops, out-of-range addresses, readable rx buffers)
 * fails the device: the device stops serving both rings and the owner's
 * failed() hook gets the reason; miosa-vsock then exits.
 *
 * Contract: loop-thread only.  Work per callback is bounded
 * (VSOCK_DEVICE_BUDGET chains); the rest continues on the next loop turn.
 * vsock_device_free() as vhost_user_free()/vsock_mux_free(): the caller runs
 * the loop once more before uv_loop_close().
 */
#ifndef MIOSA_VSOCK_DEVICE_H
#define MIOSA_VSOCK_DEVICE_H

#include <stdint.h>
#include <uv.h>

#define VSOCK_DEVICE_BUDGET 256u

struct vsock_device_config {
	const char *vhost_user_path;
	const char *uds_path;
	uint64_t guest_cid;
};

struct vsock_device_hooks {
	/* The frontend went away (err 0: clean) or the device failed. Once. */
	void (*finished)(void *ctx, int err, const char *why);
	void *ctx;
};

struct vsock_device_stats {
	uint64_t tx_packets, rx_packets;
	uint64_t tx_malformed;
};

struct vsock_device;

/* -errno; *ret_where names the step that failed ("vhost-user socket", "uds"). */
__attribute__((warn_unused_result))
int vsock_device_new(uv_loop_t *loop, const struct vsock_device_config *config,
		     const struct vsock_device_hooks *hooks, struct vsock_device **ret_dev,
		     const char **ret_where);

void vsock_device_get_stats(const struct vsock_device *dev, struct vsock_device_stats *ret_stats);

void vsock_device_free(struct vsock_device *dev);

#endif
