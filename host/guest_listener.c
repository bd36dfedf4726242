/*
 * guest_listener — the guest transports.
 *
 * UDS (hybrid vsock): the VMM's vsock backend connects to PATH_1024 when
 * the guest opens port 1024.  The socket is made by hand (socket, fchmod
 * 0600, bind, listen) so it is 0600 from its first instant without touching
 * the process umask (workers may be creating files): Linux gives the bound
 * inode the socket's own mode masked by the umask.  A stale socket at the
 * path (nobody accepting) is removed, a live one or a non-socket is left
 * alone and the sandbox gets no listener (logged once).  On stop the path
 * is unlinked only if it is still our inode.
 *
 * AF_VSOCK: one listener on port 1024 for every sandbox with a CID; the
 * peer CID names the sandbox.  Enabled only by --vsock-listen.  Never used
 * in tests on a development or CI machine (FACTS.md).
 */
#include "guest_gateway_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include "log.h"
#include "uds_path.h"

/* A guest opens a stream per connection and DNS query: a burst of a few
 * hundred must not meet a full accept queue (connect() would fail EAGAIN). */
#define GW_BACKLOG GUEST_GATEWAY_CONNS_PER_SANDBOX

static void gw_listener_log(const struct gw_sandbox *sb, int level, const char *event,
			    const char *reason, int r)
{
	struct log_line l;

	if (!log_begin(&l, level, event))
		return;
	log_str(&l, "sandbox", sb->id);
	log_str(&l, "path", sb->listen_path);
	log_str(&l, "reason", reason);
	if (r < 0)
		log_errno(&l, r);
	log_end(&l);
}

static int gw_clear_path(struct gw_sandbox *sb, const struct sockaddr_un *sun)
{
	const char *why = NULL;
	bool removed;
	int r;

	if ((r = uds_path_clear(sun, &removed, &why)) < 0) {
		gw_listener_log(sb, LOG_LEVEL_ERROR, "guest_listener_failed", why, r);
		return r;
	}
	if (removed)
		gw_listener_log(sb, LOG_LEVEL_INFO, "guest_socket_stale_removed", "stale", 0);
	return 0;
}

static void gw_on_uds_connection(uv_stream_t *server, int status)
{
	struct gw_sandbox *sb = server->data;

	if (status < 0)
		return;
	gw_session_accept(sb->gw, sb, server, -1);
}

int gw_listener_uds_start(struct gw_sandbox *sb)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd = -1, r, n;

	n = snprintf(sb->listen_path, sizeof(sb->listen_path), "%s_%u", sb->transport.uds,
		     GUEST_GATEWAY_PORT);
	if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
		gw_listener_log(sb, LOG_LEVEL_ERROR, "guest_listener_failed", "path too long", 0);
		return -ENAMETOOLONG;
	}
	memcpy(sun.sun_path, sb->listen_path, (size_t)n + 1);
	if ((r = gw_clear_path(sb, &sun)) < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || fchmod(fd, 0600) < 0 ||
	    bind(fd, (const struct sockaddr *)&sun, sizeof(sun)) < 0) {
		r = -errno;
		goto fail;
	}
	/* Belt and braces: should fchmod not carry over on some kernel. */
	if (lstat(sb->listen_path, &st) < 0 || ((st.st_mode & 0777) != 0600 &&
						chmod(sb->listen_path, 0600) < 0)) {
		r = -errno;
		unlink(sb->listen_path);
		goto fail;
	}
	sb->listen_dev = st.st_dev;
	sb->listen_ino = st.st_ino;
	if (listen(fd, GW_BACKLOG) < 0) {
		r = -errno;
		unlink(sb->listen_path);
		goto fail;
	}
	uv_pipe_init(sb->gw->loop, &sb->listener, 0);
	sb->listener.data = sb;
	sb->listener_open = true;
	if ((r = uv_pipe_open(&sb->listener, fd)) < 0)
		close(fd); /* not the handle's yet */
	if (r < 0 ||
	    (r = uv_listen((uv_stream_t *)&sb->listener, GW_BACKLOG, gw_on_uds_connection)) < 0) {
		gw_listener_log(sb, LOG_LEVEL_ERROR, "guest_listener_failed", "listen", r);
		gw_listener_uds_stop(sb);
		return r;
	}
	return 0;
fail:
	gw_listener_log(sb, LOG_LEVEL_ERROR, "guest_listener_failed", "bind", r);
	if (fd >= 0)
		close(fd);
	return r;
}

static void gw_on_listener_closed(uv_handle_t *h)
{
	struct gw_sandbox *sb = h->data;

	sb->listener_open = false;
	gw_sandbox_release(sb);
}

void gw_listener_uds_stop(struct gw_sandbox *sb)
{
	struct stat st;

	if (!sb->listener_open || uv_is_closing((uv_handle_t *)&sb->listener))
		return;
	if (lstat(sb->listen_path, &st) == 0 && st.st_dev == sb->listen_dev &&
	    st.st_ino == sb->listen_ino)
		unlink(sb->listen_path);
	uv_close((uv_handle_t *)&sb->listener, gw_on_listener_closed);
}

/* ---- AF_VSOCK ------------------------------------------------------------ */

static void gw_on_vsock_readable(uv_poll_t *p, int status, int events)
{
	struct guest_gateway *gw = p->data;

	(void)events;
	if (status < 0)
		return;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_vm peer;
		socklen_t len = sizeof(peer);
		struct gw_sandbox *sb;
		int fd = accept4(gw->vsock_fd, (struct sockaddr *)&peer, &len,
				 SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0)
			return;
		sb = len >= sizeof(peer) ? gw_sandbox_find_cid(gw, peer.svm_cid) : NULL;
		if (!sb) {
			struct log_line l;

			if (log_begin(&l, LOG_LEVEL_WARN, "guest_vsock_unknown_cid")) {
				log_uint(&l, "cid", len >= sizeof(peer) ? peer.svm_cid : 0);
				log_end(&l);
			}
			close(fd);
			continue;
		}
		gw_session_accept(gw, sb, NULL, fd);
	}
}

int gw_listener_vsock_start(struct guest_gateway *gw, char *err, size_t err_size)
{
	struct sockaddr_vm addr = {
		.svm_family = AF_VSOCK,
		.svm_port = GUEST_GATEWAY_PORT,
		.svm_cid = VMADDR_CID_ANY,
	};
	int fd, r;

	fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (const struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    listen(fd, GW_BACKLOG) < 0) {
		r = -errno;
		if (fd >= 0)
			close(fd);
		snprintf(err, err_size, "cannot listen on vsock port %u: %s", GUEST_GATEWAY_PORT,
			 strerror(-r));
		return r;
	}
	gw->vsock_fd = fd;
	if ((r = uv_poll_init(gw->loop, &gw->vsock_poll, fd)) < 0) {
		close(fd);
		gw->vsock_fd = -1;
		snprintf(err, err_size, "vsock listener: %s", uv_strerror(r));
		return r;
	}
	gw->vsock_poll.data = gw;
	gw->vsock_open = true;
	if ((r = uv_poll_start(&gw->vsock_poll, UV_READABLE, gw_on_vsock_readable)) < 0) {
		snprintf(err, err_size, "vsock listener: %s", uv_strerror(r));
		return r;
	}
	log_event(LOG_LEVEL_INFO, "guest_vsock_listening", "port", "1024");
	return 0;
}

static void gw_on_vsock_closed(uv_handle_t *h)
{
	struct guest_gateway *gw = h->data;

	close(gw->vsock_fd);
	gw->vsock_fd = -1;
}

void gw_listener_vsock_stop(struct guest_gateway *gw)
{
	if (!gw->vsock_open)
		return;
	gw->vsock_open = false;
	uv_close((uv_handle_t *)&gw->vsock_poll, gw_on_vsock_closed);
}
