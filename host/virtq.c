/* virtq — see virtq.h. */
#include "virtq.h"

#include <endian.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

/* Layouts (virtio 1.2, 2.7.5 - 2.7.8), all little-endian:
 *   desc[i]:  le64 addr; le32 len; le16 flags; le16 next      (16 bytes)
 *   avail:    le16 flags; le16 idx; le16 ring[num]; le16 used_event
 *   used:     le16 flags; le16 idx; {le32 id; le32 len} ring[num]; le16 avail_event
 */
#define DESC_SIZE 16u

void virtq_ring_sizes(uint16_t num, struct virtq_sizes *ret_sizes)
{
	ret_sizes->desc = (uint64_t)DESC_SIZE * num;
	ret_sizes->avail = 6u + 2u * (uint64_t)num;
	ret_sizes->used = 6u + 8u * (uint64_t)num;
}

bool virtq_size_valid(uint32_t num)
{
	return num >= 1 && num <= VIRTQ_MAX_SIZE && (num & (num - 1)) == 0;
}

/* The driver updates these concurrently: read them once, with acquire order
 * so the ring entries it published before the index are visible. */
static uint16_t load_le16_acquire(const uint8_t *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_ACQUIRE));
}

static uint16_t load_le16(const uint8_t *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_RELAXED));
}

int virtq_attach(struct virtq *vq, uint16_t num, uint16_t last_avail_idx, void *desc,
		 void *avail, void *used)
{
	/* Alignment from virtio 1.2, 2.7 (desc 16, avail 2, used 4). */
	if (!virtq_size_valid(num) || !desc || !avail || !used || ((uintptr_t)desc & 15u) ||
	    ((uintptr_t)avail & 1u) || ((uintptr_t)used & 3u))
		return -EINVAL;
	vq->num = num;
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	vq->last_avail_idx = last_avail_idx;
	vq->used_idx = load_le16(vq->used + 2);
	vq->attached = true;
	vq->broken = false;
	vq->error = NULL;
	return 0;
}

void virtq_detach(struct virtq *vq)
{
	vq->attached = false;
	vq->desc = vq->avail = vq->used = NULL;
}

static int fail(struct virtq *vq, const char *why)
{
	vq->broken = true;
	vq->error = why;
	return -EIO;
}

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* One copy of descriptor i (i < num): the guest may rewrite it while we look. */
static void read_desc(const struct virtq *vq, uint16_t i, struct desc *ret)
{
	uint8_t raw[DESC_SIZE];
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;

	memcpy(raw, vq->desc + (size_t)i * DESC_SIZE, DESC_SIZE);
	memcpy(&addr, raw, 8);
	memcpy(&len, raw + 8, 4);
	memcpy(&flags, raw + 12, 2);
	memcpy(&next, raw + 14, 2);
	*ret = (struct desc){ le64toh(addr), le32toh(len), le16toh(flags), le16toh(next) };
}

int virtq_pop(struct virtq *vq, const struct guest_mem *mem, struct virtq_chain *ret_chain)
{
	struct virtq_chain *c = ret_chain;
	uint16_t avail_idx, head, i;
	bool seen_writable = false;

	if (!vq->attached || vq->broken)
		return vq->broken ? -EIO : 0;
	avail_idx = load_le16_acquire(vq->avail + 2);
	if (avail_idx == vq->last_avail_idx)
		return 0;
	/* 16-bit wrap-around is normal; more than num outstanding is not. */
	if ((uint16_t)(avail_idx - vq->last_avail_idx) > vq->num)
		return fail(vq, "available index moved past the queue size");
	head = load_le16(vq->avail + 4 + 2u * (vq->last_avail_idx & (vq->num - 1)));
	if (head >= vq->num)
		return fail(vq, "chain head outside the descriptor table");

	c->head = head;
	c->n_out = c->n_in = 0;
	c->out_len = c->in_len = 0;
	i = head;
	for (unsigned steps = 0;; steps++) {
		struct desc d;
		uint8_t *p;

		/* A chain can use each descriptor once: more steps is a loop. */
		if (steps >= vq->num)
			return fail(vq, "descriptor chain longer than the queue (loop)");
		read_desc(vq, i, &d);
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return fail(vq, "indirect descriptor (INDIRECT_DESC not offered)");
		if (d.flags & VIRTQ_DESC_F_WRITE)
			seen_writable = true;
		else if (seen_writable)
			return fail(vq, "readable descriptor after a writable one");
		if (d.len > 0) {
			if (c->n_out + c->n_in >= VIRTQ_MAX_IOV)
				return fail(vq, "descriptor chain has too many buffers");
			p = guest_mem_gpa(mem, d.addr, d.len);
			if (!p)
				return fail(vq, "descriptor points outside guest memory");
			c->iov[c->n_out + c->n_in] = (struct virtq_iov){ p, d.len };
			if (d.flags & VIRTQ_DESC_F_WRITE) {
				c->n_in++;
				c->in_len += d.len;
			} else {
				c->n_out++;
				c->out_len += d.len;
			}
		}
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		if (d.next >= vq->num)
			return fail(vq, "next descriptor outside the descriptor table");
		i = d.next;
	}
	vq->last_avail_idx++;
	return 1;
}

void virtq_unpop(struct virtq *vq)
{
	vq->last_avail_idx--;
}

void virtq_push(struct virtq *vq, uint16_t head, uint32_t len)
{
	uint8_t *elem = vq->used + 4 + 8u * (vq->used_idx & (vq->num - 1));
	uint32_t id_le = htole32(head), len_le = htole32(len);

	memcpy(elem, &id_le, 4);
	memcpy(elem + 4, &len_le, 4);
	vq->used_idx++;
	/* Release: the element is visible before the index that publishes it. */
	__atomic_store_n((uint16_t *)(void *)(vq->used + 2), htole16(vq->used_idx), __ATOMIC_RELEASE);
}

int virtq_notify(struct virtq *vq)
{
	const uint64_t one = 1;

	if (!vq->attached || vq->call_fd < 0)
		return 0;
	/* Full barrier: our used->idx store must be ordered before reading the
	 * driver's flags, or both sides can miss each other (2.7.7.2). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (load_le16(vq->avail) & VIRTQ_AVAIL_F_NO_INTERRUPT)
		return 0;
	if (write(vq->call_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno;
	return 1;
}

size_t virtq_chain_read(const struct virtq_chain *c, size_t off, void *dst, size_t len)
{
	uint8_t *out = dst;
	size_t done = 0;

	for (unsigned k = 0; k < c->n_out && done < len; k++) {
		const struct virtq_iov *v = &c->iov[k];
		size_t n;

		if (off >= v->len) {
			off -= v->len;
			continue;
		}
		n = v->len - off;
		if (n > len - done)
			n = len - done;
		memcpy(out + done, v->base + off, n);
		done += n;
		off = 0;
	}
	return done;
}

size_t virtq_chain_write(const struct virtq_chain *c, const void *src, size_t len)
{
	const uint8_t *in = src;
	size_t done = 0;

	for (unsigned k = c->n_out; k < c->n_out + c->n_in && done < len; k++) {
		const struct virtq_iov *v = &c->iov[k];
		size_t n = v->len < len - done ? v->len : len - done;

		memcpy(v->base, in + done, n);
		done += n;
	}
	return done;
}
