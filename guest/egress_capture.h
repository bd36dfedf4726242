/*
 * egress_capture — the listeners that catch the guest's TCP connections.
 *
 * One listener on 0.0.0.0:PORT per port: 80 and 443 always, plus the
 * HelloAck's listen_ports.  With 198.18.0.0/15 routed as local on lo
 * (netsetup.h), a connection to any synthetic address on such a port lands
 * here; each becomes an egress_stream.  A port already taken by a guest
 * service is skipped (logged).  Connections over the cap (the HelloAck's
 * max_connections, at most EGRESS_CAPTURE_MAX) are reset at once.
 *
 * Contract: loop thread only; logs per listener event.
 * egress_capture_set_ports() replaces the set: listeners for ports no longer
 * wanted close (their connections carry on).  egress_capture_close() stops
 * listening, resets every connection, and frees the capture once the last
 * handle closed.
 */
#ifndef MIOSA_EGRESS_CAPTURE_H
#define MIOSA_EGRESS_CAPTURE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "transport.h"

#define EGRESS_CAPTURE_MAX 4096u          /* the agent's own cap */
#define EGRESS_CAPTURE_DEFAULT_MAX 1024u  /* until a HelloAck says otherwise */
#define EGRESS_CAPTURE_BACKLOG 511

struct egress_capture;

/* Starts with the default ports (80, 443); the transport spec is copied. */
__attribute__((warn_unused_result))
int egress_capture_new(uv_loop_t *loop, const struct transport_spec *spec,
		       struct egress_capture **ret_capture);

/* 80 and 443 plus ports (each 1..65535, from a validated HelloAck).
 * Returns how many ports could not be listened on (each logged). */
int egress_capture_set_ports(struct egress_capture *cap, const uint32_t *ports, size_t n);

void egress_capture_set_max_connections(struct egress_capture *cap, uint32_t max);

size_t egress_capture_active(const struct egress_capture *cap);

void egress_capture_close(struct egress_capture *cap);

#endif
