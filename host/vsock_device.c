/* vsock_device — see vsock_device.h. */
#include "vsock_device.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "vhost_user.h"
#include "virtq.h"
#include "vsock_mux.h"
#include "vsock_wire.h"

#define RX_RING 0u
#define TX_RING 1u

struct vsock_device {
	uv_loop_t *loop;
	struct vhost_user *vu;
	struct vsock_mux *mux;
	struct vsock_device_hooks hooks;
	uv_idle_t more;           /* continues work a budget cut short */
	bool finished;
	struct vsock_device_stats stats;
	struct virtq_chain chain;
	/* One packet at a time crosses here: header + the largest payload. */
	uint8_t bounce[VSOCK_HDR_SIZE + VSOCK_MAX_PAYLOAD];
};

static void finish(struct vsock_device *dev, int err, const char *why)
{
	if (dev->finished)
		return;
	dev->finished = true;
	uv_idle_stop(&dev->more);
	dev->hooks.finished(dev->hooks.ctx, err, why);
}

/* A guest packet we cannot deliver as sent becomes an INVALID op on its
 * connection: the mux answers that with RST (vsock_mux.h), so the guest's
 * socket fails instead of hanging. */
static void tx_one(struct vsock_device *dev, const struct virtq_chain *c)
{
	struct vsock_hdr hdr;

	if (c->out_len < VSOCK_HDR_SIZE ||
	    virtq_chain_read(c, 0, dev->bounce, VSOCK_HDR_SIZE) != VSOCK_HDR_SIZE ||
	    vsock_hdr_decode(dev->bounce, VSOCK_HDR_SIZE, &hdr) < 0) {
		dev->stats.tx_malformed++;   /* no header, no connection to reset */
		return;
	}
	if (hdr.len > VSOCK_MAX_PAYLOAD || hdr.len > c->out_len - VSOCK_HDR_SIZE) {
		dev->stats.tx_malformed++;
		hdr.op = VSOCK_OP_INVALID;
		hdr.len = 0;
		vsock_mux_from_guest(dev->mux, &hdr, NULL);
		return;
	}
	if (virtq_chain_read(c, VSOCK_HDR_SIZE, dev->bounce + VSOCK_HDR_SIZE, hdr.len) != hdr.len)
		return;  /* cannot happen: out_len was checked */
	dev->stats.tx_packets++;
	vsock_mux_from_guest(dev->mux, &hdr, hdr.len ? dev->bounce + VSOCK_HDR_SIZE : NULL);
}

/* Returns true when the budget ran out with work left. */
static bool pump_tx(struct vsock_device *dev)
{
	struct virtq *vq = vhost_user_vring(dev->vu, TX_RING);
	const struct guest_mem *mem = vhost_user_mem(dev->vu);
	unsigned done = 0;
	int r = 0;

	if (!vq)
		return false;
	while (done < VSOCK_DEVICE_BUDGET && (r = virtq_pop(vq, mem, &dev->chain)) > 0) {
		tx_one(dev, &dev->chain);
		virtq_push(vq, dev->chain.head, 0);
		done++;
	}
	if (r < 0) {
		finish(dev, -EIO, vq->error);
		return false;
	}
	if (done)
		(void)virtq_notify(vq);
	return done == VSOCK_DEVICE_BUDGET;
}

static bool pump_rx(struct vsock_device *dev)
{
	struct virtq *vq = vhost_user_vring(dev->vu, RX_RING);
	const struct guest_mem *mem = vhost_user_mem(dev->vu);
	unsigned done = 0;
	int r = 0;

	if (!vq)
		return false;
	while (done < VSOCK_DEVICE_BUDGET && vsock_mux_has_pending(dev->mux)) {
		struct virtq_chain *c = &dev->chain;
		size_t cap, n;

		if ((r = virtq_pop(vq, mem, c)) <= 0)
			break;  /* 0: no buffers; the guest's next rx kick resumes */
		if (c->n_out > 0 || c->in_len < VSOCK_HDR_SIZE) {
			finish(dev, -EIO, c->n_out ? "rx buffer has readable descriptors"
						   : "rx buffer smaller than a packet header");
			return false;
		}
		cap = c->in_len < sizeof(dev->bounce) ? c->in_len : sizeof(dev->bounce);
		n = vsock_mux_to_guest(dev->mux, dev->bounce, cap);
		if (n == 0) {
			virtq_unpop(vq);
			break;
		}
		virtq_push(vq, c->head, (uint32_t)virtq_chain_write(c, dev->bounce, n));
		dev->stats.rx_packets++;
		done++;
	}
	if (r < 0) {
		finish(dev, -EIO, vq->error);
		return false;
	}
	if (done)
		(void)virtq_notify(vq);
	return done == VSOCK_DEVICE_BUDGET;
}

static void more_cb(uv_idle_t *h);

static void pump(struct vsock_device *dev)
{
	bool more;

	if (dev->finished)
		return;
	more = pump_tx(dev);
	if (!dev->finished)
		more |= pump_rx(dev);
	if (dev->finished)
		return;
	if (more)
		uv_idle_start(&dev->more, more_cb);
}

static void more_cb(uv_idle_t *h)
{
	struct vsock_device *dev = h->data;

	uv_idle_stop(h);
	pump(dev);
}

/* Called by the mux, possibly from inside vsock_mux_from_guest(): never
 * pump re-entrantly, continue on the next loop turn. */
static void to_guest_ready(void *ctx)
{
	struct vsock_device *dev = ctx;

	if (!dev->finished)
		uv_idle_start(&dev->more, more_cb);
}

static void on_vring_state(void *ctx, unsigned index, bool running)
{
	struct vsock_device *dev = ctx;

	(void)index;
	/* A ring stops when the guest driver resets the device or QEMU stops
	 * it: the guest has forgotten its connections. */
	if (!running)
		vsock_mux_reset(dev->mux);
}

static void on_kick(void *ctx, unsigned index)
{
	(void)index;
	pump(ctx);
}

static void on_disconnected(void *ctx, int err, const char *why)
{
	finish(ctx, err, why);
}

static const struct vhost_user_ops vu_ops = {
	.vring_state = on_vring_state,
	.kick = on_kick,
	.disconnected = on_disconnected,
};

int vsock_device_new(uv_loop_t *loop, const struct vsock_device_config *config,
		     const struct vsock_device_hooks *hooks, struct vsock_device **ret_dev,
		     const char **ret_where)
{
	const struct vsock_mux_config mc = {
		.uds_path = config->uds_path,
		.guest_cid = config->guest_cid,
		.buf_alloc = VSOCK_MUX_DEFAULT_BUF_ALLOC,
	};
	struct vsock_mux_hooks mh;
	struct vsock_device *dev;
	const char *where = "memory";
	int r;

	if (!(dev = calloc(1, sizeof(*dev))))
		return -ENOMEM;
	dev->loop = loop;
	dev->hooks = *hooks;
	mh = (struct vsock_mux_hooks){ .to_guest_ready = to_guest_ready, .ctx = dev };
	if ((r = uv_idle_init(loop, &dev->more)) < 0)
		goto fail_nohandle;
	dev->more.data = dev;
	where = "vhost-user device";
	if ((r = vhost_user_new(loop, config->guest_cid, &vu_ops, dev, &dev->vu)) < 0)
		goto fail;
	where = "uds";
	if ((r = vsock_mux_new(loop, &mc, &mh, &dev->mux)) < 0)
		goto fail;
	where = "vhost-user socket";
	if ((r = vhost_user_listen(dev->vu, config->vhost_user_path)) < 0)
		goto fail;
	*ret_dev = dev;
	return 0;
fail:
	*ret_where = where;
	vsock_device_free(dev);
	return r;
fail_nohandle:
	*ret_where = where;
	free(dev);
	return r;
}

void vsock_device_get_stats(const struct vsock_device *dev, struct vsock_device_stats *ret_stats)
{
	*ret_stats = dev->stats;
}

static void device_closed(uv_handle_t *h)
{
	free(h->data);
}

void vsock_device_free(struct vsock_device *dev)
{
	if (!dev)
		return;
	dev->finished = true;
	vhost_user_free(dev->vu);
	if (dev->mux)
		vsock_mux_free(dev->mux);
	uv_close((uv_handle_t *)&dev->more, device_closed);
}
