#include "egress_capture.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "agent_log.h"
#include "egress_stream.h"

#define M "egress"

static const uint16_t always_ports[] = { 80, 443 };

struct listener {
	struct egress_capture *cap;
	uv_tcp_t handle;
	uint16_t port;
	bool closing;
	LIST_ENTRY(listener) link;
};

struct conn {
	struct egress_capture *cap;
	struct egress_stream *stream;
	LIST_ENTRY(conn) link;
};

struct egress_capture {
	uv_loop_t *loop;
	struct transport_spec spec;
	uint32_t max_connections;
	size_t active;
	unsigned listeners_open; /* not yet closed back */
	bool closing;
	LIST_HEAD(, listener) listeners;
	LIST_HEAD(, conn) conns;
};

static void capture_free_if_done(struct egress_capture *cap)
{
	if (cap->closing && cap->listeners_open == 0 && cap->active == 0)
		free(cap);
}

/* --- Connections ------------------------------------------------------------------- */

static void conn_done(void *data, struct egress_stream *s)
{
	struct conn *c = data;
	struct egress_capture *cap = c->cap;

	(void)s;
	LIST_REMOVE(c, link);
	free(c);
	cap->active--;
	capture_free_if_done(cap);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct listener *l = server->data;
	struct egress_capture *cap = l->cap;
	struct conn *c;
	int r, refuse;

	if (status < 0) {
		agent_log_warn(M, "port %u: accept failed: %s", l->port, uv_strerror(status));
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		agent_log_error(M, "port %u: out of memory, connection left in the backlog", l->port);
		return;
	}
	c->cap = cap;
	refuse = cap->closing || cap->active >= cap->max_connections;
	if (refuse)
		agent_log_warn(M, "port %u: %zu connections open (the limit), resetting a new one",
			       l->port, cap->active);
	r = egress_stream_accept(cap->loop, server, &cap->spec, refuse, conn_done, c, &c->stream);
	if (r < 0) {
		agent_log_warn(M, "port %u: accept failed: %s", l->port, uv_strerror(r));
		free(c);
		return;
	}
	LIST_INSERT_HEAD(&cap->conns, c, link);
	cap->active++;
}

/* --- Listeners ---------------------------------------------------------------------- */

static void listener_closed(uv_handle_t *h)
{
	struct listener *l = h->data;
	struct egress_capture *cap = l->cap;

	LIST_REMOVE(l, link);
	free(l);
	cap->listeners_open--;
	capture_free_if_done(cap);
}

static void listener_close(struct listener *l)
{
	if (l->closing)
		return;
	l->closing = true;
	uv_close((uv_handle_t *)&l->handle, listener_closed);
}

static struct listener *listener_find(struct egress_capture *cap, uint32_t port)
{
	struct listener *l;

	LIST_FOREACH(l, &cap->listeners, link)
		if (l->port == port && !l->closing)
			return l;
	return NULL;
}

static int listener_open(struct egress_capture *cap, uint16_t port)
{
	struct sockaddr_in any = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct listener *l = calloc(1, sizeof(*l));
	int r;

	if (!l)
		return UV_ENOMEM;
	l->cap = cap;
	l->port = port;
	uv_tcp_init(cap->loop, &l->handle);
	l->handle.data = l;
	LIST_INSERT_HEAD(&cap->listeners, l, link);
	cap->listeners_open++;
	if ((r = uv_tcp_bind(&l->handle, (const struct sockaddr *)&any, 0)) < 0 ||
	    (r = uv_listen((uv_stream_t *)&l->handle, EGRESS_CAPTURE_BACKLOG, on_connection)) < 0) {
		listener_close(l);
		return r;
	}
	return 0;
}

static bool port_wanted(uint32_t port, const uint32_t *ports, size_t n)
{
	for (size_t i = 0; i < sizeof(always_ports) / sizeof(always_ports[0]); i++)
		if (port == always_ports[i])
			return true;
	for (size_t i = 0; i < n; i++)
		if (port == ports[i])
			return true;
	return false;
}

/* Listens on port unless it already does; 1 when it failed (logged). */
static int ensure_listener(struct egress_capture *cap, uint32_t port)
{
	int r;

	if (listener_find(cap, port))
		return 0;
	if ((r = listener_open(cap, (uint16_t)port)) < 0) {
		agent_log_warn(M, "cannot listen on 0.0.0.0:%u: %s, ignoring", port, uv_strerror(r));
		return 1;
	}
	agent_log_info(M, "catching TCP port %u", port);
	return 0;
}

int egress_capture_set_ports(struct egress_capture *cap, const uint32_t *ports, size_t n)
{
	struct listener *l, *next;
	int failed = 0;

	for (l = LIST_FIRST(&cap->listeners); l; l = next) {
		next = LIST_NEXT(l, link);
		if (!l->closing && !port_wanted(l->port, ports, n)) {
			agent_log_info(M, "no longer catching TCP port %u", l->port);
			listener_close(l);
		}
	}
	for (size_t i = 0; i < sizeof(always_ports) / sizeof(always_ports[0]); i++)
		failed += ensure_listener(cap, always_ports[i]);
	for (size_t i = 0; i < n; i++)
		failed += ensure_listener(cap, ports[i]);
	return failed;
}

/* --- Life cycle ---------------------------------------------------------------------- */

int egress_capture_new(uv_loop_t *loop, const struct transport_spec *spec,
		       struct egress_capture **ret_capture)
{
	struct egress_capture *cap = calloc(1, sizeof(*cap));

	if (!cap)
		return -ENOMEM;
	cap->loop = loop;
	cap->spec = *spec;
	cap->max_connections = EGRESS_CAPTURE_DEFAULT_MAX;
	LIST_INIT(&cap->listeners);
	LIST_INIT(&cap->conns);
	(void)egress_capture_set_ports(cap, NULL, 0);
	*ret_capture = cap;
	return 0;
}

void egress_capture_set_max_connections(struct egress_capture *cap, uint32_t max)
{
	cap->max_connections = max < EGRESS_CAPTURE_MAX ? max : EGRESS_CAPTURE_MAX;
}

size_t egress_capture_active(const struct egress_capture *cap)
{
	return cap->active;
}

void egress_capture_close(struct egress_capture *cap)
{
	struct listener *l, *ln;
	struct conn *c, *cn;

	if (!cap || cap->closing)
		return;
	cap->closing = true;
	for (l = LIST_FIRST(&cap->listeners); l; l = ln) {
		ln = LIST_NEXT(l, link);
		listener_close(l);
	}
	/* streams leave the list from their done callback, after this loop */
	for (c = LIST_FIRST(&cap->conns); c; c = cn) {
		cn = LIST_NEXT(c, link);
		egress_stream_abort(c->stream);
	}
	capture_free_if_done(cap);
}
