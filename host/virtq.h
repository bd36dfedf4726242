/*
 * virtq — the device side of a virtio split virtqueue (virtio 1.2, 2.7)
 * living in guest memory: pop descriptor chains the driver made available,
 * push them back as used, notify the driver through its call eventfd.
 *
 * Everything in the rings is written by the guest, concurrently, and is
 * untrusted: every index is reduced or checked against the queue size, each
 * descriptor is read once into a local copy, every buffer is translated
 * through guest_mem (the whole range must lie in guest memory) and a chain
 * is walked at most `num` steps.  A ring that breaks those rules is a device
 * error: virtq_pop() returns -EIO, sets `broken` and a fixed reason, and the
 * queue is not touched again until it is set up anew (the caller logs the
 * reason once).  Offered features: none beyond VERSION_1 — no INDIRECT_DESC
 * (an indirect descriptor is a device error), no EVENT_IDX (notifications
 * follow VRING_AVAIL_F_NO_INTERRUPT; we never suppress kicks).
 *
 * Contract:
 *   - Single-threaded (the loop thread).  struct virtq is caller-owned;
 *     its fields are read-only outside virtq.c apart from call_fd.
 *   - virtq_attach() takes pointers the caller already translated for the
 *     sizes virtq_ring_sizes() gives; it checks alignment and num.
 *   - A chain's iovs point into guest memory: valid until the next memory
 *     table change; the caller copies and holds none across loop turns.
 *   - Readable descriptors come first, writable ones after; a readable one
 *     after a writable one is a device error (virtio 1.2, 2.7.4.2).
 *   - Return values: 1 = a chain, 0 = ring empty, -EIO = device error.
 */
#ifndef MIOSA_VIRTQ_H
#define MIOSA_VIRTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest_mem.h"

#define VIRTQ_MAX_SIZE 32768u  /* split rings: a power of two up to 2^15 */
/* Descriptors one chain may use; Linux vsock uses 1-2 per packet. */
#define VIRTQ_MAX_IOV 64u

#define VIRTQ_DESC_F_NEXT 1u
#define VIRTQ_DESC_F_WRITE 2u
#define VIRTQ_DESC_F_INDIRECT 4u
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1u

struct virtq_iov {
	uint8_t *base;
	uint32_t len;
};

struct virtq_chain {
	uint16_t head;
	unsigned n_out;          /* readable (driver -> device) iovs, first */
	unsigned n_in;           /* writable (device -> driver) iovs, after */
	size_t out_len, in_len;  /* byte totals of each part */
	struct virtq_iov iov[VIRTQ_MAX_IOV];
};

struct virtq {
	uint16_t num;
	uint16_t last_avail_idx;  /* next avail slot to pop */
	uint16_t used_idx;        /* next used slot to fill */
	bool attached;
	bool broken;
	const char *error;        /* fixed text when broken */
	uint8_t *desc, *avail, *used;
	int call_fd;              /* eventfd or -1 (no interrupts) */
};

struct virtq_sizes {
	uint64_t desc, avail, used;
};

/* Ring byte sizes for num entries (without EVENT_IDX's trailing fields, which
 * we include anyway so a guest that writes them stays inside the range). */
void virtq_ring_sizes(uint16_t num, struct virtq_sizes *ret_sizes);

/* True if num is a valid split-ring size (power of two, 1..VIRTQ_MAX_SIZE). */
bool virtq_size_valid(uint32_t num);

/*
 * Attaches the rings.  last_avail_idx is the base the frontend set; used_idx
 * continues from the ring's current used->idx (vhost-user: the rings may
 * have been used before a restart).  -EINVAL for a bad num or misaligned
 * ring.  call_fd is left as it is.
 */
__attribute__((warn_unused_result))
int virtq_attach(struct virtq *vq, uint16_t num, uint16_t last_avail_idx, void *desc,
		 void *avail, void *used);

void virtq_detach(struct virtq *vq);

__attribute__((warn_unused_result))
int virtq_pop(struct virtq *vq, const struct guest_mem *mem, struct virtq_chain *ret_chain);

/* Gives back the chain popped last (nothing was done with it). */
void virtq_unpop(struct virtq *vq);

/* Returns the chain to the driver with len bytes written into it. */
void virtq_push(struct virtq *vq, uint16_t head, uint32_t len);

/*
 * Signals the call eventfd unless the driver set VRING_AVAIL_F_NO_INTERRUPT.
 * Returns 1 if signalled, 0 if suppressed or no call fd, -errno from write.
 */
int virtq_notify(struct virtq *vq);

/* Copies up to len readable bytes starting at byte off of the chain; returns the count. */
size_t virtq_chain_read(const struct virtq_chain *c, size_t off, void *dst, size_t len);
/* Scatters len bytes into the writable part; returns the count written (<= in_len). */
size_t virtq_chain_write(const struct virtq_chain *c, const void *src, size_t len);

#endif
