/*
 * ctl_client — the control API's client side for miosactl: one HTTP/1.1
 * request per connection (Connection: close) over the broker's Unix control
 * socket or a TCP listener, the answer parsed with the strict codec
 * (http1.h) into bounded buffers.
 *
 * Contract:
 *   - Blocking I/O with one deadline per call (poll), for a CLI: never use
 *     it on an event loop.  Not thread-safe; no global state, no logging.
 *   - Errors: 0 / negative errno, or a negative -HTTP1_E_* when the answer
 *     is malformed HTTP (the two ranges are disjoint).  err receives one
 *     line naming the endpoint and the reason; it never holds the API key
 *     or the request body.
 *   - The request body is borrowed and may hold a secret value: it is sent
 *     from the caller's buffer and never copied.  The request head holds
 *     the API key (TCP only; it is never sent over the Unix socket), so it
 *     is built in sodium_malloc'd memory and wiped.
 *   - Responses are capped at CTL_CLIENT_MAX_RESPONSE bytes of content
 *     (a request may raise it: max_response);
 *     ret_resp is written only on success and released with
 *     ctl_response_free().
 *   - No TLS: a URL is http://HOST:PORT.  Use TCP only on loopback or a
 *     network you trust; the API key crosses it in clear.
 */
#ifndef MIOSA_CTL_CLIENT_H
#define MIOSA_CTL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CTL_CLIENT_MAX_RESPONSE (4u << 20)
/* The most a request may raise its cap to (max_response). */
#define CTL_CLIENT_MAX_RESPONSE_LIMIT (256u << 20)
#define CTL_CLIENT_DEFAULT_TIMEOUT_MS 30000
#define CTL_TARGET_MAX 4096
#define CTL_ERR_MAX 512

enum ctl_transport {
	CTL_TRANSPORT_UNIX,
	CTL_TRANSPORT_TCP,
};

struct ctl_endpoint {
	enum ctl_transport transport;
	char path[108];     /* UNIX: sun_path, NUL-terminated */
	char host[256];     /* TCP: name or address, IPv6 without brackets */
	char port[6];       /* TCP: decimal, 1..65535 */
	char authority[270];/* TCP: Host header value; UNIX: "localhost" */
	char display[300];  /* the socket path or URL, for messages */
};

/* A Unix control socket path.  -ENAMETOOLONG / -EINVAL (empty). */
__attribute__((warn_unused_result))
int ctl_endpoint_unix(const char *path, struct ctl_endpoint *ret_ep, char *err, size_t err_size);

/*
 * "http://HOST:PORT" with an optional trailing "/".  HOST is a DNS name, an
 * IPv4 address or a bracketed IPv6 address; no userinfo, path, query or
 * https (-EPROTONOSUPPORT for another scheme, -EINVAL otherwise).
 */
__attribute__((warn_unused_result))
int ctl_endpoint_url(const char *url, struct ctl_endpoint *ret_ep, char *err, size_t err_size);

/* An origin-form request target built piece by piece; overflow is sticky. */
struct ctl_target {
	char buf[CTL_TARGET_MAX];
	size_t len;
	bool has_query;
	bool overflow;
};

void ctl_target_init(struct ctl_target *t);
/* Append literal text (already a valid path, e.g. "/v1/sandboxes"). */
void ctl_target_add(struct ctl_target *t, const char *literal);
/* Append "/" + s percent-encoded (everything but RFC 3986 unreserved). */
void ctl_target_add_segment(struct ctl_target *t, const char *s);
/* Append "?name=value" or "&name=value", value percent-encoded. */
void ctl_target_add_query(struct ctl_target *t, const char *name, const char *value);
/* The target, or NULL after an overflow. */
const char *ctl_target_get(const struct ctl_target *t);

struct ctl_request {
	const char *method;       /* token, e.g. "GET" */
	const char *target;       /* origin-form, percent-encoded (ctl_target) */
	const char *bearer;       /* API key; sent over TCP only; NULL: none */
	const uint8_t *body;      /* JSON; borrowed; NULL when !has_body */
	size_t body_len;
	bool has_body;            /* sends Content-Type and Content-Length */
	size_t max_response;      /* content cap; 0 = CTL_CLIENT_MAX_RESPONSE, at most
				   * CTL_CLIENT_MAX_RESPONSE_LIMIT (audit export) */
	/* Streaming (GET /v1/audit/tail): with on_data set, a 200's content
	 * is handed to on_data piece by piece as it is decoded, with no
	 * deadline once the head arrived (timeout_ms bounds connect, send
	 * and the head), and resp->body stays empty; any other status is
	 * read whole as usual.  A negative return from on_data stops the
	 * call, which returns it (err ""). */
	int (*on_data)(void *userdata, const char *data, size_t len);
	void *userdata;
};

struct ctl_response {
	int status;
	char *body;               /* malloc'd, NUL-terminated (body_len excludes it) */
	size_t body_len;
	char allow[128];          /* Allow header value (405), else "" */
};

/*
 * Send req to ep and read the whole answer.  timeout_ms bounds the whole
 * exchange (connect, send, receive).  An HTTP error status is a success
 * here: the caller reads resp->status.  Interim 1xx answers are skipped.
 */
__attribute__((warn_unused_result))
int ctl_client_call(const struct ctl_endpoint *ep, const struct ctl_request *req, int timeout_ms,
		    struct ctl_response *ret_resp, char *err, size_t err_size);

void ctl_response_free(struct ctl_response *resp);

#endif
