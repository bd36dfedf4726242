/*
 * upstream_tls — the client side of the broker's egress: TLS from the broker
 * to the real upstream (DESIGN.md "Broker data path": "TLS with system
 * trust store and hostname verification").
 *
 * What it promises:
 *   - One context per broker (upstream_tls_new): the system trust store
 *     (SSL_CTX_set_default_verify_paths: Debian's /etc/ssl/certs, or
 *     SSL_CERT_FILE / SSL_CERT_DIR when set) plus, optionally, the PEM
 *     certificates of one extra file (--upstream-ca), which must hold at
 *     least one.  TLS 1.2 minimum.  Verification is required: a handshake
 *     whose chain does not verify fails.  ALPN offers "http/1.1" only.
 *   - Per connection (upstream_tls_ssl_new), for the host the request is
 *     for (with --connect-to, the original HOST, not the target):
 *       DNS name   SNI = the name; the certificate must match it
 *                  (SSL_set1_host, RFC 6125: wildcards only as a whole
 *                  left-most label, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS).
 *       IP literal no SNI (RFC 6066 3: "Literal IPv4 and IPv6 addresses are
 *                  not permitted in HostName"); the certificate must carry
 *                  the address as an iPAddress SAN
 *                  (X509_VERIFY_PARAM_set1_ip_asc).
 *     The host is normalized with host_pattern_normalize_host() first (the
 *     policy's grammar), so what is verified is what the policy allowed.
 *   - Session resumption (optional, session_cache_slots > 0): sessions are
 *     kept per (host, port) in a direct-mapped table of that many slots
 *     (bounded memory; a colliding host simply replaces the older entry).
 *     Only sessions from verified handshakes are stored, and a session is
 *     offered again only for the same host and port, whose certificate was
 *     verified when it was made.  TLS 1.3 sessions are handed out once
 *     (RFC 8446 C.4: "Clients SHOULD NOT reuse a ticket for multiple
 *     connections"); TLS 1.2 sessions stay until replaced.  A connection
 *     freed without SSL_shutdown() (close_notify) leaves a session OpenSSL
 *     marks not resumable (RFC 5246 7.2.1), so it is not offered: close
 *     pooled connections with SSL_shutdown() before SSL_free().
 *   - Failures: drive the SSL and classify a failing call with
 *     ossl_err_ssl() (ossl_err.h): -EKEYREJECTED with a reason such as
 *     "certificate verify failed: Hostname mismatch" is what a 502 quotes.
 *
 * Threads: a struct upstream_tls may be shared by every loop thread; the
 * session table has its own mutex.  Each SSL is driven by one thread at a
 * time.  Blocking: upstream_tls_new reads the trust files (call it at
 * startup); nothing else does I/O.
 * Ownership: SSL objects hold a reference to the SSL_CTX, but the session
 * callback uses the struct upstream_tls: free it only after every SSL made
 * from it.
 * Errors: 0 / negative errno; ret_* written only on success; err (may be
 * NULL) receives a one-line reason quoting the file.  -EINVAL for a host
 * host_pattern refuses.
 */
#ifndef MIOSA_UPSTREAM_TLS_H
#define MIOSA_UPSTREAM_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#define UPSTREAM_TLS_ALPN "http/1.1"
#define UPSTREAM_TLS_SESSION_SLOTS_DEFAULT 1024u
#define UPSTREAM_TLS_SESSION_SLOTS_MAX 65536u

struct upstream_tls;

struct upstream_tls_config {
	const char *extra_ca_file;  /* NULL: the system trust store only */
	size_t session_cache_slots; /* 0: no resumption; at most ..._MAX */
};

__attribute__((warn_unused_result))
int upstream_tls_new(const struct upstream_tls_config *config, struct upstream_tls **ret_u,
		     char *err, size_t err_size);

/* NULL is a no-op. */
void upstream_tls_free(struct upstream_tls *u);

/* The shared client context (borrowed). */
SSL_CTX *upstream_tls_ctx(const struct upstream_tls *u);

/*
 * A client SSL (connect state, no BIOs yet) for host[0..len):port, with
 * SNI, hostname or IP verification, ALPN, and a cached session if there is
 * one.  The caller attaches BIOs, drives it, and SSL_free()s it.
 */
__attribute__((warn_unused_result))
int upstream_tls_ssl_new(struct upstream_tls *u, const char *host, size_t len, uint16_t port,
			 SSL **ret_ssl);

#endif
