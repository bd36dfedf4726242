/*
 * vsock_wire — the virtio-vsock packet header (virtio spec 1.2, 5.10.6):
 *
 *   le64 src_cid; le64 dst_cid; le32 src_port; le32 dst_port; le32 len;
 *   le16 type; le16 op; le32 flags; le32 buf_alloc; le32 fwd_cnt;
 *
 * 44 bytes, little-endian, packed.  The only code that turns guest bytes
 * into a struct vsock_hdr or back; miosa-vsock's device layer (vhost_user,
 * virtq) and its connection layer (vsock_mux) meet at this struct.
 *
 * Contract: pure functions, no allocation.  vsock_hdr_decode() reads exactly
 * VSOCK_HDR_SIZE bytes through the project's cursor; it checks only that
 * the bytes are there (semantic checks — op, type, len bounds — are the
 * mux's, which answers them with RST).  ret_hdr is written on success only.
 */
#ifndef MIOSA_VSOCK_WIRE_H
#define MIOSA_VSOCK_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define VSOCK_HDR_SIZE 44u
#define VSOCK_HOST_CID 2u

/* The largest payload one packet carries (Linux VIRTIO_VSOCK_MAX_PKT_BUF_SIZE). */
#define VSOCK_MAX_PAYLOAD (64u * 1024u)

enum vsock_type {
	VSOCK_TYPE_STREAM = 1,
	VSOCK_TYPE_SEQPACKET = 2,
};

enum vsock_op {
	VSOCK_OP_INVALID = 0,
	VSOCK_OP_REQUEST = 1,
	VSOCK_OP_RESPONSE = 2,
	VSOCK_OP_RST = 3,
	VSOCK_OP_SHUTDOWN = 4,
	VSOCK_OP_RW = 5,
	VSOCK_OP_CREDIT_UPDATE = 6,
	VSOCK_OP_CREDIT_REQUEST = 7,
};

/* SHUTDOWN flags */
#define VSOCK_SHUTDOWN_RCV 1u
#define VSOCK_SHUTDOWN_SEND 2u

struct vsock_hdr {
	uint64_t src_cid;
	uint64_t dst_cid;
	uint32_t src_port;
	uint32_t dst_port;
	uint32_t len;
	uint16_t type;
	uint16_t op;
	uint32_t flags;
	uint32_t buf_alloc;
	uint32_t fwd_cnt;
};

/* 0, or -ENODATA when fewer than VSOCK_HDR_SIZE bytes are given. */
__attribute__((warn_unused_result))
int vsock_hdr_decode(const uint8_t *bytes, size_t len, struct vsock_hdr *ret_hdr);

/* Writes VSOCK_HDR_SIZE bytes to out (which must have room for them). */
void vsock_hdr_encode(const struct vsock_hdr *hdr, uint8_t out[VSOCK_HDR_SIZE]);

#endif
