/* vhost_user — see vhost_user.h. */
#include "vhost_user.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cursor.h"
#include "log.h"

/* vring state/addr/fd payloads (vhost-user.rst, "Message types"). */
#define VRING_STATE_SIZE 8u        /* le32 index; le32 num */
#define VRING_ADDR_SIZE 40u        /* le32 index, flags; le64 desc, used, avail, log */
#define U64_SIZE 8u
#define MEM_REGION_SIZE 32u        /* le64 gpa, size, uva, mmap_offset */
#define CONFIG_HDR_SIZE 12u        /* le32 offset, size, flags */
#define VRING_IDX_MASK 0xffu
#define VRING_NOFD_MASK (1u << 8)

struct watch {
	uv_poll_t poll;
	int fd;
	struct vhost_user *dev;
	unsigned index;            /* kick watches: the ring */
};

struct vring {
	uint32_t num;              /* 0 until SET_VRING_NUM */
	uint16_t base;
	bool addr_set, enabled, started, running;
	uint64_t desc_uva, avail_uva, used_uva;
	struct watch *kick;
	struct virtq vq;
};

struct vhost_user {
	uv_loop_t *loop;
	uint64_t guest_cid;
	const struct vhost_user_ops *ops;
	void *ctx;

	uint64_t features;
	uint64_t protocol_features;
	bool features_set;
	bool owner;
	struct guest_mem mem;
	struct vring vr[VHOST_USER_NUM_VRINGS];

	struct watch *listener;
	struct watch *conn;
	uint64_t conn_messages;    /* messages handled on this connection */
	char *path;

	/* The message being read: header + payload, and the fds it carried. */
	uint8_t rbuf[VHOST_USER_HDR_SIZE + VHOST_USER_MAX_PAYLOAD];
	size_t rlen;
	int rfds[VHOST_USER_MAX_FDS];
	unsigned nrfds;
};

struct msg {
	uint32_t request, flags, size;
	const uint8_t *payload;
	int *fds;
	unsigned nfds;
};

typedef int (*handler_fn)(struct vhost_user *dev, struct msg *m, uint8_t *reply, size_t *reply_len,
			  const char **why);

/* ---- little-endian writes (reads go through cursor_get_le) ---- */

static void put_le(uint8_t *out, uint64_t value, size_t width)
{
	for (size_t i = 0; i < width; i++, value >>= 8)
		out[i] = (uint8_t)(value & 0xff);
}

static int take_fd(struct msg *m, unsigned i)
{
	int fd = m->fds[i];

	m->fds[i] = -1;
	return fd;
}

/* ---- vrings ---- */

static void watch_closed(uv_handle_t *h)
{
	free(h->data);
}

static void watch_close(struct watch *w)
{
	if (!w)
		return;
	uv_poll_stop(&w->poll);
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	uv_close((uv_handle_t *)&w->poll, watch_closed);
}

static void kick_cb(uv_poll_t *h, int status, int events);

static int watch_new(struct vhost_user *dev, int fd, unsigned index, uv_poll_cb cb,
		     struct watch **ret_w)
{
	struct watch *w = calloc(1, sizeof(*w));
	int r;

	if (!w)
		return -ENOMEM;
	w->fd = fd;
	w->dev = dev;
	w->index = index;
	if ((r = uv_poll_init(dev->loop, &w->poll, fd)) < 0) {
		free(w);
		return r;
	}
	w->poll.data = w;
	if ((r = uv_poll_start(&w->poll, UV_READABLE, cb)) < 0) {
		w->fd = -1;  /* the caller still owns fd on failure */
		uv_close((uv_handle_t *)&w->poll, watch_closed);
		return r;
	}
	*ret_w = w;
	return 0;
}

/* Translates the ring addresses through the current memory table. */
static int vring_attach(struct vhost_user *dev, struct vring *v)
{
	struct virtq_sizes s;
	void *desc, *avail, *used;

	virtq_ring_sizes((uint16_t)v->num, &s);
	desc = guest_mem_uva(&dev->mem, v->desc_uva, s.desc);
	avail = guest_mem_uva(&dev->mem, v->avail_uva, s.avail);
	used = guest_mem_uva(&dev->mem, v->used_uva, s.used);
	if (!desc || !avail || !used)
		return -EFAULT;
	return virtq_attach(&v->vq, (uint16_t)v->num, v->base, desc, avail, used);
}

/* Starts or stops ring i to match its state; tells the device. */
static int vring_update(struct vhost_user *dev, unsigned i)
{
	struct vring *v = &dev->vr[i];
	bool want = v->started && v->enabled && v->num && v->addr_set;
	int r;

	if (want == v->running)
		return 0;
	if (want) {
		if ((r = vring_attach(dev, v)) < 0)
			return r;
		v->running = true;
		dev->ops->vring_state(dev->ctx, i, true);
		/* Buffers may already be waiting: act as if kicked. */
		if (v->running)
			dev->ops->kick(dev->ctx, i);
	} else {
		v->running = false;
		dev->ops->vring_state(dev->ctx, i, false);
		v->base = v->vq.last_avail_idx;
		virtq_detach(&v->vq);
	}
	return 0;
}

/* GET_VRING_BASE semantics: the ring stops, its fds go away. */
static void vring_stop(struct vhost_user *dev, unsigned i)
{
	struct vring *v = &dev->vr[i];

	v->started = false;
	(void)vring_update(dev, i);
	watch_close(v->kick);
	v->kick = NULL;
	if (v->vq.call_fd >= 0)
		close(v->vq.call_fd);
	v->vq.call_fd = -1;
}

static void reset_device(struct vhost_user *dev)
{
	for (unsigned i = 0; i < VHOST_USER_NUM_VRINGS; i++) {
		vring_stop(dev, i);
		dev->vr[i] = (struct vring){ .vq = { .call_fd = -1 } };
	}
	guest_mem_unmap_all(&dev->mem);
	dev->features = 0;
	dev->features_set = false;
	dev->protocol_features = 0;
	dev->owner = false;
}

static void kick_cb(uv_poll_t *h, int status, int events)
{
	struct watch *w = h->data;
	struct vhost_user *dev = w->dev;
	uint64_t count;

	(void)events;
	if (status < 0)
		return;
	/* Drain the eventfd; EAGAIN means another wakeup already took it. */
	if (read(w->fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		return;
	if (dev->vr[w->index].running)
		dev->ops->kick(dev->ctx, w->index);
}

/* ---- request handlers: each reads its payload like a schema ---- */

static int reply_u64(uint8_t *reply, size_t *reply_len, uint64_t v)
{
	put_le(reply, v, 8);
	*reply_len = 8;
	return 0;
}

static int get_u64_payload(const struct msg *m, uint64_t *ret)
{
	struct cursor c;

	cursor_init(&c, m->payload, m->size);
	return cursor_get_le(&c, 8, ret);
}

static int h_get_features(struct vhost_user *dev, struct msg *m, uint8_t *reply, size_t *reply_len,
			  const char **why)
{
	(void)dev, (void)m, (void)why;
	return reply_u64(reply, reply_len, VHOST_USER_OFFERED_FEATURES);
}

static int h_set_features(struct vhost_user *dev, struct msg *m, uint8_t *reply, size_t *reply_len,
			  const char **why)
{
	uint64_t f;

	(void)reply, (void)reply_len;
	if (get_u64_payload(m, &f) < 0)
		return -EBADMSG;
	if (f & ~VHOST_USER_OFFERED_FEATURES) {
		*why = "SET_FEATURES acks features that were not offered";
		return -EINVAL;
	}
	dev->features = f;
	dev->features_set = true;
	/* Without PROTOCOL_FEATURES rings start enabled (vhost-user.rst, "Ring states"). */
	if (!(f & (1ull << VHOST_USER_F_PROTOCOL_FEATURES)))
		for (unsigned i = 0; i < VHOST_USER_NUM_VRINGS; i++)
			dev->vr[i].enabled = true;
	return 0;
}

static int h_get_protocol_features(struct vhost_user *dev, struct msg *m, uint8_t *reply,
				   size_t *reply_len, const char **why)
{
	(void)dev, (void)m, (void)why;
	return reply_u64(reply, reply_len, VHOST_USER_OFFERED_PROTOCOL_FEATURES);
}

static int h_set_protocol_features(struct vhost_user *dev, struct msg *m, uint8_t *reply,
				   size_t *reply_len, const char **why)
{
	uint64_t f;

	(void)reply, (void)reply_len;
	if (get_u64_payload(m, &f) < 0)
		return -EBADMSG;
	if (f & ~VHOST_USER_OFFERED_PROTOCOL_FEATURES) {
		*why = "SET_PROTOCOL_FEATURES acks protocol features that were not offered";
		return -EINVAL;
	}
	dev->protocol_features = f;
	return 0;
}

static int h_set_owner(struct vhost_user *dev, struct msg *m, uint8_t *reply, size_t *reply_len,
		       const char **why)
{
	(void)m, (void)reply, (void)reply_len, (void)why;
	dev->owner = true;
	return 0;
}

static int h_reset_owner(struct vhost_user *dev, struct msg *m, uint8_t *reply, size_t *reply_len,
			 const char **why)
{
	(void)m, (void)reply, (void)reply_len, (void)why;
	reset_device(dev);
	return 0;
}

static int h_set_mem_table(struct vhost_user *dev, struct msg *m, uint8_t *reply,
			   size_t *reply_len, const char **why)
{
	struct guest_mem fresh = { 0 }, old;
	struct cursor c;
	uint64_t n, pad;
	int r;

	(void)reply, (void)reply_len;
	cursor_init(&c, m->payload, m->size);
	if (cursor_get_le(&c, 4, &n) < 0 || cursor_get_le(&c, 4, &pad) < 0)
		return -EBADMSG;
	if (n == 0 || n > GUEST_MEM_MAX_REGIONS || cursor_remaining(&c) != n * MEM_REGION_SIZE) {
		*why = "SET_MEM_TABLE region count does not match its size or exceeds 8";
		return -EBADMSG;
	}
	if (m->nfds != n) {
		*why = "SET_MEM_TABLE carries a different number of fds than regions";
		return -EBADMSG;
	}
	for (unsigned i = 0; i < n; i++) {
		uint64_t gpa, size, uva, off;

		if (cursor_get_le(&c, 8, &gpa) < 0 || cursor_get_le(&c, 8, &size) < 0 || cursor_get_le(&c, 8, &uva) < 0 ||
		    cursor_get_le(&c, 8, &off) < 0)
			return -EBADMSG;
		if ((r = guest_mem_map(&fresh, m->fds[i], gpa, size, uva, off)) < 0) {
			*why = "SET_MEM_TABLE region cannot be mapped";
			guest_mem_unmap_all(&fresh);
			return r;
		}
	}
	/* Running rings (memory hotplug) move to the new table first; if one
	 * does not fit it, the old table stays.  Single-threaded and nobody
	 * holds guest pointers across loop turns, so the old mappings can go
	 * once the rings point into the new ones. */
	for (unsigned i = 0; i < VHOST_USER_NUM_VRINGS; i++)
		if (dev->vr[i].running)
			dev->vr[i].base = dev->vr[i].vq.last_avail_idx;  /* attach restarts from base */
	old = dev->mem;
	dev->mem = fresh;
	for (unsigned i = 0; i < VHOST_USER_NUM_VRINGS; i++) {
		struct vring *v = &dev->vr[i];

		if (!v->running)
			continue;
		if ((r = vring_attach(dev, v)) < 0) {
			dev->mem = old;
			for (unsigned k = 0; k < VHOST_USER_NUM_VRINGS; k++)
				if (dev->vr[k].running)
					(void)vring_attach(dev, &dev->vr[k]);
			guest_mem_unmap_all(&fresh);
			*why = "a running ring lies outside the new memory table";
			return r;
		}
	}
	guest_mem_unmap_all(&old);
	return 0;   /* the fds are closed by the caller: the mappings keep the memory */
}

/* le32 index; le32 num — index checked. */
static int get_vring_state(struct msg *m, unsigned *ret_index, uint32_t *ret_num, const char **why)
{
	struct cursor c;
	uint64_t index, num;

	cursor_init(&c, m->payload, m->size);
	if (cursor_get_le(&c, 4, &index) < 0 || cursor_get_le(&c, 4, &num) < 0)
		return -EBADMSG;
	if (index >= VHOST_USER_NUM_VRINGS) {
		*why = "vring index out of range";
		return -ERANGE;
	}
	*ret_index = (unsigned)index;
	*ret_num = (uint32_t)num;
	return 0;
}

static int h_set_vring_num(struct vhost_user *dev, struct msg *m, uint8_t *reply,
			   size_t *reply_len, const char **why)
{
	unsigned i;
	uint32_t num;
	int r;

	(void)reply, (void)reply_len;
	if ((r = get_vring_state(m, &i, &num, why)) < 0)
		return r;
	if (!virtq_size_valid(num)) {
		*why = "SET_VRING_NUM size is not a power of two up to 32768";
		return -EINVAL;
	}
	if (dev->vr[i].running) {
		*why = "SET_VRING_NUM on a running ring";
		return -EBUSY;
	}
	dev->vr[i].num = num;
	return 0;
}

static int h_set_vring_base(struct vhost_user *dev, struct msg *m, uint8_t *reply,
			    size_t *reply_len, const char **why)
{
	unsigned i;
	uint32_t num;
	int r;

	(void)reply, (void)reply_len;
	if ((r = get_vring_state(m, &i, &num, why)) < 0)
		return r;
	if (num > UINT16_MAX) {
		*why = "SET_VRING_BASE base over 65535";
		return -EINVAL;
	}
	if (dev->vr[i].running) {
		*why = "SET_VRING_BASE on a running ring";
		return -EBUSY;
	}
	dev->vr[i].base = (uint16_t)num;
	return 0;
}

static int h_get_vring_base(struct vhost_user *dev, struct msg *m, uint8_t *reply,
			    size_t *reply_len, const char **why)
{
	unsigned i;
	uint32_t num;
	int r;

	if ((r = get_vring_state(m, &i, &num, why)) < 0)
		return r;
	vring_stop(dev, i);
	put_le(reply, i, 4);
	put_le(reply + 4, dev->vr[i].base, 4);
	*reply_len = VRING_STATE_SIZE;
	return 0;
}

static int h_set_vring_addr(struct vhost_user *dev, struct msg *m, uint8_t *reply,
			    size_t *reply_len, const char **why)
{
	struct cursor c;
	uint64_t index, flags, desc, used, avail, logaddr;

	(void)reply, (void)reply_len;
	cursor_init(&c, m->payload, m->size);
	if (cursor_get_le(&c, 4, &index) < 0 || cursor_get_le(&c, 4, &flags) < 0 || cursor_get_le(&c, 8, &desc) < 0 ||
	    cursor_get_le(&c, 8, &used) < 0 || cursor_get_le(&c, 8, &avail) < 0 || cursor_get_le(&c, 8, &logaddr) < 0)
		return -EBADMSG;
	if (index >= VHOST_USER_NUM_VRINGS) {
		*why = "vring index out of range";
		return -ERANGE;
	}
	if (dev->vr[index].running) {
		*why = "SET_VRING_ADDR on a running ring";
		return -EBUSY;
	}
	/* flags bit 0 asks for used-ring logging, which we never offered. */
	dev->vr[index].desc_uva = desc;
	dev->vr[index].used_uva = used;
	dev->vr[index].avail_uva = avail;
	dev->vr[index].addr_set = true;
	return 0;
}

/* le64: bits 0-7 ring index, bit 8 "no fd"; nothing else. */
static int get_vring_fd_arg(struct msg *m, unsigned *ret_index, bool *ret_nofd, const char **why)
{
	uint64_t v;

	if (get_u64_payload(m, &v) < 0)
		return -EBADMSG;
	if (v & ~(uint64_t)(VRING_IDX_MASK | VRING_NOFD_MASK)) {
		*why = "vring fd message has unknown flag bits";
		return -EINVAL;
	}
	if ((v & VRING_IDX_MASK) >= VHOST_USER_NUM_VRINGS) {
		*why = "vring index out of range";
		return -ERANGE;
	}
	if (m->nfds != ((v & VRING_NOFD_MASK) ? 0u : 1u)) {
		*why = "vring fd message carries the wrong number of fds";
		return -EBADMSG;
	}
	*ret_index = (unsigned)(v & VRING_IDX_MASK);
	*ret_nofd = (v & VRING_NOFD_MASK) != 0;
	return 0;
}

static int h_set_vring_kick(struct vhost_user *dev, struct msg *m, uint8_t *reply,
			    size_t *reply_len, const char **why)
{
	struct vring *v;
	unsigned i;
	bool nofd;
	int r, fd;

	(void)reply, (void)reply_len;
	if ((r = get_vring_fd_arg(m, &i, &nofd, why)) < 0)
		return r;
	if (nofd) {
		*why = "SET_VRING_KICK without fd (polling mode) is not supported";
		return -ENOTSUP;
	}
	v = &dev->vr[i];
	watch_close(v->kick);
	v->kick = NULL;
	fd = take_fd(m, 0);
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
	    (r = watch_new(dev, fd, i, kick_cb, &v->kick)) < 0) {
		close(fd);
		*why = "cannot watch the kick eventfd";
		return -EIO;
	}
	/* "The ring is started when the kick fd is received" (Ring states). */
	v->started = true;
	if ((r = vring_update(dev, i)) < 0) {
		*why = "ring addresses lie outside guest memory";
		return r;
	}
	return 0;
}

static int h_set_vring_call(struct vhost_user *dev, struct msg *m, uint8_t *reply,
			    size_t *reply_len, const char **why)
{
	struct vring *v;
	unsigned i;
	bool nofd;
	int r;

	(void)reply, (void)reply_len;
	if ((r = get_vring_fd_arg(m, &i, &nofd, why)) < 0)
		return r;
	v = &dev->vr[i];
	if (v->vq.call_fd >= 0)
		close(v->vq.call_fd);
	v->vq.call_fd = nofd ? -1 : take_fd(m, 0);
	return 0;
}

static int h_set_vring_err(struct vhost_user *dev, struct msg *m, uint8_t *reply,
			   size_t *reply_len, const char **why)
{
	unsigned i;
	bool nofd;

	(void)dev, (void)reply, (void)reply_len;
	/* We never signal ring errors that way (we fail the device instead);
	 * the fd is validated and closed with the message. */
	return get_vring_fd_arg(m, &i, &nofd, why);
}

static int h_set_vring_enable(struct vhost_user *dev, struct msg *m, uint8_t *reply,
			      size_t *reply_len, const char **why)
{
	unsigned i;
	uint32_t num;
	int r;

	(void)reply, (void)reply_len;
	if ((r = get_vring_state(m, &i, &num, why)) < 0)
		return r;
	if (num > 1) {
		*why = "SET_VRING_ENABLE value is neither 0 nor 1";
		return -EINVAL;
	}
	dev->vr[i].enabled = num == 1;
	if ((r = vring_update(dev, i)) < 0) {
		*why = "ring addresses lie outside guest memory";
		return r;
	}
	return 0;
}

static int h_get_config(struct vhost_user *dev, struct msg *m, uint8_t *reply, size_t *reply_len,
			const char **why)
{
	uint8_t space[8];
	struct cursor c;
	uint64_t off, size, flags;

	cursor_init(&c, m->payload, m->size);
	if (cursor_get_le(&c, 4, &off) < 0 || cursor_get_le(&c, 4, &size) < 0 || cursor_get_le(&c, 4, &flags) < 0)
		return -EBADMSG;
	if (size > VHOST_USER_MAX_CONFIG_SIZE || off > VHOST_USER_MAX_CONFIG_SIZE - size ||
	    cursor_remaining(&c) != size) {
		*why = "GET_CONFIG range or size is invalid";
		return -EBADMSG;
	}
	/* virtio 1.2, 5.10.4: struct virtio_vsock_config { le64 guest_cid; }.
	 * Bytes past it read as zero. */
	put_le(space, dev->guest_cid, 8);
	memcpy(reply, m->payload, CONFIG_HDR_SIZE);
	memset(reply + CONFIG_HDR_SIZE, 0, size);
	for (uint64_t k = 0; k < size; k++)
		if (off + k < sizeof(space))
			reply[CONFIG_HDR_SIZE + k] = space[off + k];
	*reply_len = CONFIG_HDR_SIZE + size;
	return 0;
}

static int h_set_config(struct vhost_user *dev, struct msg *m, uint8_t *reply, size_t *reply_len,
			const char **why)
{
	(void)dev, (void)m, (void)reply, (void)reply_len;
	*why = "SET_CONFIG: the vsock config space is read-only";
	return -EPERM;
}

#define ANY_SIZE UINT32_MAX

static const struct request_def {
	uint32_t request;
	const char *name;
	uint32_t size;         /* exact payload size, or ANY_SIZE (handler checks) */
	unsigned max_fds;
	bool has_reply;        /* answers with a body (REPLY_ACK does not apply) */
	handler_fn handler;
} requests[] = {
	{ VHOST_USER_GET_FEATURES, "GET_FEATURES", 0, 0, true, h_get_features },
	{ VHOST_USER_SET_FEATURES, "SET_FEATURES", U64_SIZE, 0, false, h_set_features },
	{ VHOST_USER_SET_OWNER, "SET_OWNER", 0, 0, false, h_set_owner },
	{ VHOST_USER_RESET_OWNER, "RESET_OWNER", 0, 0, false, h_reset_owner },
	{ VHOST_USER_SET_MEM_TABLE, "SET_MEM_TABLE", ANY_SIZE, VHOST_USER_MAX_FDS, false,
	  h_set_mem_table },
	{ VHOST_USER_SET_VRING_NUM, "SET_VRING_NUM", VRING_STATE_SIZE, 0, false, h_set_vring_num },
	{ VHOST_USER_SET_VRING_ADDR, "SET_VRING_ADDR", VRING_ADDR_SIZE, 0, false, h_set_vring_addr },
	{ VHOST_USER_SET_VRING_BASE, "SET_VRING_BASE", VRING_STATE_SIZE, 0, false, h_set_vring_base },
	{ VHOST_USER_GET_VRING_BASE, "GET_VRING_BASE", VRING_STATE_SIZE, 0, true, h_get_vring_base },
	{ VHOST_USER_SET_VRING_KICK, "SET_VRING_KICK", U64_SIZE, 1, false, h_set_vring_kick },
	{ VHOST_USER_SET_VRING_CALL, "SET_VRING_CALL", U64_SIZE, 1, false, h_set_vring_call },
	{ VHOST_USER_SET_VRING_ERR, "SET_VRING_ERR", U64_SIZE, 1, false, h_set_vring_err },
	{ VHOST_USER_GET_PROTOCOL_FEATURES, "GET_PROTOCOL_FEATURES", 0, 0, true,
	  h_get_protocol_features },
	{ VHOST_USER_SET_PROTOCOL_FEATURES, "SET_PROTOCOL_FEATURES", U64_SIZE, 0, false,
	  h_set_protocol_features },
	{ VHOST_USER_SET_VRING_ENABLE, "SET_VRING_ENABLE", VRING_STATE_SIZE, 0, false,
	  h_set_vring_enable },
	{ VHOST_USER_GET_CONFIG, "GET_CONFIG", ANY_SIZE, 0, true, h_get_config },
	{ VHOST_USER_SET_CONFIG, "SET_CONFIG", ANY_SIZE, 0, false, h_set_config },
};

static const struct request_def *find_request(uint32_t request)
{
	for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++)
		if (requests[i].request == request)
			return &requests[i];
	return NULL;
}

const char *vhost_user_request_name(uint32_t request)
{
	const struct request_def *d = find_request(request);

	return d ? d->name : "unknown";
}

static size_t put_reply_header(uint8_t *reply, uint32_t request, uint32_t size)
{
	put_le(reply, request, 4);
	put_le(reply + 4, VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY, 4);
	put_le(reply + 8, size, 4);
	return VHOST_USER_HDR_SIZE + size;
}

/* REPLY_ACK: "zero on success or non-zero on failure" (vhost-user.rst). */
static int ack(uint8_t *reply, uint32_t request, uint64_t status)
{
	put_le(reply + VHOST_USER_HDR_SIZE, status, 8);
	return (int)put_reply_header(reply, request, 8);
}

static void close_fds(int *fds, unsigned nfds)
{
	for (unsigned i = 0; i < nfds; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}

int vhost_user_handle_message(struct vhost_user *dev, const uint8_t *bytes, size_t len, int *fds,
			      unsigned nfds, uint8_t *reply, size_t reply_cap, const char **ret_why)
{
	const struct request_def *d;
	struct msg m = { .fds = fds, .nfds = nfds };
	const char *why = NULL;
	struct cursor c;
	uint64_t request, flags, size;
	size_t body_len = 0;
	bool need_ack;
	int r;

	/* The reply buffer must hold the largest reply we produce. */
	if (reply_cap < VHOST_USER_HDR_SIZE + CONFIG_HDR_SIZE + VHOST_USER_MAX_CONFIG_SIZE) {
		r = -EINVAL;
		why = "reply buffer too small";
		goto out;
	}
	cursor_init(&c, bytes, len);
	if (cursor_get_le(&c, 4, &request) < 0 || cursor_get_le(&c, 4, &flags) < 0 || cursor_get_le(&c, 4, &size) < 0) {
		r = -EBADMSG;
		why = "message shorter than its header";
		goto out;
	}
	if ((flags & VHOST_USER_FLAG_VERSION_MASK) != VHOST_USER_VERSION ||
	    (flags & VHOST_USER_FLAG_REPLY)) {
		r = -EPROTO;
		why = "message has a wrong version or the reply flag";
		goto out;
	}
	if (size > VHOST_USER_MAX_PAYLOAD || size != cursor_remaining(&c)) {
		r = -EMSGSIZE;
		why = "message size field does not match the payload (or exceeds 4096)";
		goto out;
	}
	if (nfds > VHOST_USER_MAX_FDS) {
		r = -EBADMSG;
		why = "message carries more than 8 fds";
		goto out;
	}
	m.request = (uint32_t)request;
	m.flags = (uint32_t)flags;
	m.size = (uint32_t)size;
	m.payload = cursor_pos(&c);
	need_ack = (flags & VHOST_USER_FLAG_NEED_REPLY) &&
		   (dev->protocol_features & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK));

	d = find_request(m.request);
	if (!d) {
		r = need_ack ? ack(reply, m.request, 1) : 0;
		goto out;
	}
	if ((d->size != ANY_SIZE && m.size != d->size) || nfds > d->max_fds) {
		r = -EBADMSG;
		why = "payload size or fd count wrong for the request";
		goto out;
	}
	r = d->handler(dev, &m, reply + VHOST_USER_HDR_SIZE, &body_len, &why);
	if (r < 0) {
		if (!why)
			why = "malformed payload";
		if (need_ack && !d->has_reply) {
			/* The frontend asked to hear about failures: it decides. */
			*ret_why = why;
			r = ack(reply, m.request, 1);
			why = NULL;
		}
		goto out;
	}
	if (d->has_reply)
		r = (int)put_reply_header(reply, m.request, (uint32_t)body_len);
	else
		r = need_ack ? ack(reply, m.request, 0) : 0;
out:
	close_fds(fds, nfds);
	if (why)
		*ret_why = why;
	return r;
}

/* ---- the socket ---- */

static void conn_drop(struct vhost_user *dev, int err, const char *why)
{
	bool was_running = false;

	for (unsigned i = 0; i < VHOST_USER_NUM_VRINGS; i++)
		was_running |= dev->vr[i].running;
	if (err == 0 && was_running) {
		err = -ECONNRESET;
		why = "frontend disconnected with rings running";
	}
	reset_device(dev);
	close_fds(dev->rfds, dev->nrfds);
	dev->nrfds = 0;
	dev->rlen = 0;
	watch_close(dev->conn);
	dev->conn = NULL;
	dev->ops->disconnected(dev->ctx, err, why);
}

static int send_reply(struct vhost_user *dev, const uint8_t *reply, size_t len)
{
	ssize_t n;

	do
		n = send(dev->conn->fd, reply, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	/* Replies are tiny next to a socket buffer; a short send means the
	 * frontend stopped reading. */
	return (size_t)n == len ? 0 : -EAGAIN;
}

/* Reads what is missing of the current message; fds accumulate across reads. */
static int conn_read(struct vhost_user *dev, bool *ret_complete)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	size_t want = VHOST_USER_HDR_SIZE;
	ssize_t n;

	if (dev->rlen >= VHOST_USER_HDR_SIZE) {
		uint32_t size;

		memcpy(&size, dev->rbuf + 8, 4);
		size = le32toh(size);
		if (size > VHOST_USER_MAX_PAYLOAD)
			return -EMSGSIZE;
		want += size;
	}
	iov.iov_base = dev->rbuf + dev->rlen;
	iov.iov_len = want - dev->rlen;
	mh.msg_control = ctl.buf;
	mh.msg_controllen = sizeof(ctl.buf);
	n = recvmsg(dev->conn->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		size_t count;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t k = 0; k < count; k++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
			if (dev->nrfds >= VHOST_USER_MAX_FDS) {
				close(fd);
				return -E2BIG;
			}
			dev->rfds[dev->nrfds++] = fd;
		}
	}
	if (mh.msg_flags & MSG_CTRUNC)
		return -E2BIG;
	if (n == 0)
		return -ENOTCONN;
	dev->rlen += (size_t)n;
	if (dev->rlen >= VHOST_USER_HDR_SIZE) {
		uint32_t size;

		memcpy(&size, dev->rbuf + 8, 4);
		if (le32toh(size) > VHOST_USER_MAX_PAYLOAD)
			return -EMSGSIZE;
		/* A header just read may announce a payload still to come (the
		 * poll is level-triggered: we are called again for it). */
		*ret_complete = dev->rlen == VHOST_USER_HDR_SIZE + (size_t)le32toh(size);
	}
	return 0;
}

static void accept_cb(uv_poll_t *h, int status, int events);

static void conn_cb(uv_poll_t *h, int status, int events)
{
	struct watch *w = h->data;
	struct vhost_user *dev = w->dev;
	uint8_t reply[VHOST_USER_HDR_SIZE + CONFIG_HDR_SIZE + VHOST_USER_MAX_CONFIG_SIZE];
	const char *why = NULL;
	bool complete = false;
	uint32_t request;
	int r;

	(void)events;
	if (status < 0) {
		conn_drop(dev, status, "error on the vhost-user socket");
		return;
	}
	r = conn_read(dev, &complete);
	if (r == -ENOTCONN && dev->conn_messages == 0 && dev->rlen == 0) {
		/* Connected and left without a word: not a frontend but someone
		 * checking that we listen (another miosa-vsock refusing to take
		 * over a live socket does exactly that).  Keep serving. */
		close_fds(dev->rfds, dev->nrfds);
		dev->nrfds = 0;
		watch_close(dev->conn);
		dev->conn = NULL;
		if (uv_poll_start(&dev->listener->poll, UV_READABLE, accept_cb) < 0)
			dev->ops->disconnected(dev->ctx, -EIO, "cannot listen again");
		log_event(LOG_LEVEL_DEBUG, "vhost_user_probe_ignored", "socket", dev->path);
		return;
	}
	if (r == -ENOTCONN) {
		conn_drop(dev, dev->rlen ? -EPROTO : 0,
			  dev->rlen ? "frontend closed the socket mid-message" : "frontend closed the socket");
		return;
	}
	if (r < 0) {
		conn_drop(dev, r, r == -E2BIG ? "message carries more than 8 fds" :
				  r == -EMSGSIZE ? "message size exceeds 4096 bytes" :
						   "cannot read the vhost-user socket");
		return;
	}
	if (!complete)
		return;
	memcpy(&request, dev->rbuf, 4);
	request = le32toh(request);
	r = vhost_user_handle_message(dev, dev->rbuf, dev->rlen, dev->rfds, dev->nrfds, reply,
				      sizeof(reply), &why);
	dev->conn_messages++;
	dev->nrfds = 0;
	dev->rlen = 0;
	if (log_enabled(LOG_LEVEL_DEBUG)) {
		struct log_line l;

		if (log_begin(&l, LOG_LEVEL_DEBUG, "vhost_user_message")) {
			log_str(&l, "request", vhost_user_request_name(request));
			log_uint(&l, "code", request);
			log_int(&l, "result", r);
			log_end(&l);
		}
	}
	if (r < 0) {
		conn_drop(dev, r, why);
		return;
	}
	if (why || !find_request(request)) {
		struct log_line l;

		if (log_begin(&l, LOG_LEVEL_WARN, why ? "vhost_user_nack" : "vhost_user_unknown_request")) {
			log_uint(&l, "request", request);
			log_str(&l, "reason", why ? why : "not offered, ignoring");
			log_end(&l);
		}
	}
	if (r > 0 && (r = send_reply(dev, reply, (size_t)r)) < 0)
		conn_drop(dev, r, "cannot write a reply to the vhost-user socket");
}

static void accept_cb(uv_poll_t *h, int status, int events)
{
	struct watch *w = h->data;
	struct vhost_user *dev = w->dev;
	int fd, r;

	(void)events;
	if (status < 0 || dev->conn)
		return;
	fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	if ((r = watch_new(dev, fd, 0, conn_cb, &dev->conn)) < 0) {
		close(fd);
		return;
	}
	/* One frontend per device: stop accepting while it is connected. */
	uv_poll_stop(&w->poll);
	dev->conn_messages = 0;
	log_event(LOG_LEVEL_INFO, "vhost_user_connected", "socket", dev->path);
}

int vhost_user_new(uv_loop_t *loop, uint64_t guest_cid, const struct vhost_user_ops *ops,
		   void *ctx, struct vhost_user **ret_dev)
{
	struct vhost_user *dev = calloc(1, sizeof(*dev));

	if (!dev)
		return -ENOMEM;
	dev->loop = loop;
	dev->guest_cid = guest_cid;
	dev->ops = ops;
	dev->ctx = ctx;
	for (unsigned i = 0; i < VHOST_USER_NUM_VRINGS; i++)
		dev->vr[i].vq.call_fd = -1;
	*ret_dev = dev;
	return 0;
}

static int unix_addr(const char *path, struct sockaddr_un *ret_sun)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	*ret_sun = sun;
	return 0;
}

int vhost_user_listen(struct vhost_user *dev, const char *path)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd = -1, r;

	if ((r = unix_addr(path, &sun)) < 0)
		return r;
	/* Replace a stale socket (a previous run that died), never a live one
	 * and never something that is not a socket. */
	if (lstat(path, &st) == 0) {
		int probe;

		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe < 0)
			return -errno;
		r = connect(probe, (struct sockaddr *)&sun, sizeof(sun));
		close(probe);
		if (r == 0)
			return -EADDRINUSE;
		if (unlink(path) < 0)
			return -errno;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, 1) < 0) {
		r = -errno;
		goto fail;
	}
	if (!(dev->path = strdup(path))) {
		r = -ENOMEM;
		goto fail;
	}
	if ((r = watch_new(dev, fd, 0, accept_cb, &dev->listener)) < 0)
		goto fail;
	return 0;
fail:
	close(fd);
	if (dev->path) {
		unlink(path);
		free(dev->path);
		dev->path = NULL;
	}
	return r;
}

struct virtq *vhost_user_vring(struct vhost_user *dev, unsigned index)
{
	if (index >= VHOST_USER_NUM_VRINGS || !dev->vr[index].running)
		return NULL;
	return &dev->vr[index].vq;
}

const struct guest_mem *vhost_user_mem(const struct vhost_user *dev)
{
	return &dev->mem;
}

void vhost_user_free(struct vhost_user *dev)
{
	if (!dev)
		return;
	for (unsigned i = 0; i < VHOST_USER_NUM_VRINGS; i++) {
		dev->vr[i].running = false;  /* no callbacks while tearing down */
		dev->vr[i].started = false;
		virtq_detach(&dev->vr[i].vq);
		watch_close(dev->vr[i].kick);
		if (dev->vr[i].vq.call_fd >= 0)
			close(dev->vr[i].vq.call_fd);
	}
	guest_mem_unmap_all(&dev->mem);
	close_fds(dev->rfds, dev->nrfds);
	watch_close(dev->conn);
	watch_close(dev->listener);
	if (dev->path) {
		unlink(dev->path);
		free(dev->path);
	}
	free(dev);
}
