/*
 * leaf_mint — server certificates for the names a sandbox connects to, and
 * the server-side TLS context the broker terminates the guest's TLS with
 * (issue 5, "TLS interception"; DESIGN.md "Broker data path").
 *
 * What it promises:
 *   - One leaf key per sandbox: leaf_mint_new() generates one ECDSA P-256
 *     key and every leaf of that sandbox carries it ("leaf key reuse": a
 *     cache miss costs one signature, not a key generation).  The key lives
 *     only in memory and is wiped when the leaf_mint is freed.
 *   - A leaf for a name (leaf_mint_get_cert) is an X.509 v3 certificate
 *     signed by the sandbox CA (mitm_ca_sign: random 128-bit serial,
 *     issuer, authorityKeyIdentifier):
 *       subject           CN=<name> when it fits in 64 characters, else empty
 *                         (then the SAN is critical, RFC 5280 4.2.1.6)
 *       subjectAltName    the name only: dNSName, or iPAddress for an IP
 *                         literal (4 or 16 octets)
 *       basicConstraints  critical, CA:FALSE
 *       keyUsage          critical, digitalSignature
 *       extKeyUsage       serverAuth
 *       validity          now - 1 hour .. now + 30 days, clamped to the CA's
 *                         validity.  Short, because leaves are re-minted for
 *                         free and a guest has no revocation to check; the
 *                         hour absorbs a guest clock slightly behind ours.
 *   - Names are normalized by host_pattern_normalize_host() (host_pattern.h:
 *     the grammar the policy uses; lower case, one trailing dot dropped, IPv6
 *     in RFC 5952 form, no wildcards), so "API.Example.com." and
 *     "api.example.com" are the same cache entry and the same certificate.
 *   - Cache: an LRU of ready-made leaves per sandbox, keyed by normalized
 *     name: a hash map (SipHash with a random key, so a guest cannot choose
 *     colliding names) over a doubly linked recency list, O(1) lookup,
 *     insert and eviction.  Bounded: capacity entries (default
 *     LEAF_MINT_CACHE_DEFAULT); at capacity the least recently used leaf is
 *     dropped (connections still using it keep their own reference).  A
 *     cached leaf is re-minted once it is within LEAF_MINT_REFRESH_S of its
 *     notAfter, unless that is the CA's notAfter (re-minting could not help).
 *   - Server context (leaf_mint_server_ctx): TLS 1.2 minimum; in TLS 1.2
 *     only ECDHE-ECDSA with AES-GCM or ChaCha20-Poly1305; renegotiation off;
 *     no server-side session cache (stateless tickets only, so a guest cannot
 *     make the broker store sessions); SSL_MODE_RELEASE_BUFFERS (idle
 *     connections hold no record buffers).  No certificate chain is sent:
 *     the guest has the sandbox CA as a trust anchor.
 *   - ALPN: "http/1.1" is selected when the client offers it; otherwise no
 *     protocol is selected and the handshake goes on.  RFC 7301 3.2 says a
 *     server that supports none of the client's protocols "SHALL respond
 *     with a fatal no_application_protocol alert"; we do not, so that a
 *     client that offers only h2 reaches the HTTP/1.1 parser and gets an
 *     audited, readable refusal instead of an opaque alert.  In practice
 *     h2-only clients (gRPC, prior-knowledge HTTP/2) see no ALPN and fail
 *     themselves ("missing selected ALPN"), and one that sends the h2
 *     preface anyway is refused by the HTTP/1.1 parser.  Clients that offer
 *     http/1.1 among others (curl: "h2,http/1.1") get http/1.1; clients
 *     that send no ALPN get none.
 *   - SNI (leaf_mint_ssl_new): each server SSL carries the name its
 *     synthetic address maps to.  During the ClientHello the servername
 *     callback normalizes the SNI and requires it to equal that name; a
 *     client without SNI (IP literals, RFC 6066 3) is served the mapped name.
 *     A mismatch or invalid SNI ends the handshake with an
 *     unrecognized_name alert; leaf_mint_ssl_sni() tells the caller what
 *     happened, for the audit row.  The check runs on every ClientHello,
 *     resumptions included (for a TLS 1.2 resumption OpenSSL reports the
 *     name of the original session), so a ticket never carries a stream
 *     mapped to one name past the check for another.
 *
 * Threads: a struct leaf_mint may be used from any thread: the cache is
 * behind a mutex held only for lookups and list edits, never while
 * signing (two threads missing on one name may both mint; one result is
 * kept).  The SSL_CTX is shared read-only.  Each SSL is driven by one
 * thread at a time, as OpenSSL requires.
 * Blocking: no I/O.  leaf_mint_new() generates a key and a context
 * (~0.4 ms: do it with the CA load on a worker).  A cache miss mints and
 * signs one certificate inside the handshake, on whichever thread drives
 * the SSL: ~40-60 us, against < 1 us for a hit and ~0.3 ms for the
 * server's share of a TLS 1.3 handshake (bench/leaf_mint_bench.c).
 * Ownership: the mitm_ca is borrowed and must outlive the leaf_mint.  An
 * SSL made by leaf_mint_ssl_new holds its own references to the SSL_CTX
 * and its certificate, so once its handshake is done it needs neither the
 * leaf_mint nor the mitm_ca; a handshake still in progress needs both.
 * Errors: 0 / negative errno; ret_* written only on success.  -EINVAL for a
 * name host_pattern refuses, -EKEYEXPIRED when the CA is no longer valid.
 */
#ifndef MIOSA_LEAF_MINT_H
#define MIOSA_LEAF_MINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>

#include "host_pattern.h"
#include "mitm_ca.h"

#define LEAF_MINT_CACHE_DEFAULT 1024u   /* leaves per sandbox */
#define LEAF_MINT_CACHE_MAX 65536u
#define LEAF_MINT_BACKDATE_S 3600       /* notBefore = now - 1 hour */
#define LEAF_MINT_VALIDITY_S (30 * 86400) /* notAfter = now + 30 days */
#define LEAF_MINT_REFRESH_S 86400       /* re-mint when less than a day is left */
#define LEAF_MINT_ALPN "http/1.1"

struct leaf_mint;

struct leaf_mint_config {
	size_t cache_capacity; /* 0: LEAF_MINT_CACHE_DEFAULT; at most LEAF_MINT_CACHE_MAX */
	time_t (*now)(void);   /* NULL: time(NULL); tests move the clock */
};

struct leaf_mint_stats {
	size_t entries;
	uint64_t hits;
	uint64_t misses;    /* leaves minted, including refreshes */
	uint64_t evictions; /* dropped at capacity */
};

/* What the servername callback saw on one SSL (leaf_mint_ssl_sni). */
enum leaf_mint_sni {
	LEAF_MINT_SNI_PENDING = 0,  /* no ClientHello processed yet */
	LEAF_MINT_SNI_MATCH,        /* SNI equals the mapped name: served */
	LEAF_MINT_SNI_ABSENT,       /* no SNI: served the mapped name */
	LEAF_MINT_SNI_MISMATCH,     /* a valid name other than the mapped one: refused */
	LEAF_MINT_SNI_INVALID,      /* not a host name (wildcard, bad label): refused */
	LEAF_MINT_SNI_MINT_FAILED,  /* no certificate could be made: internal_error */
};

struct leaf_mint_sni_info {
	enum leaf_mint_sni verdict;
	/* The SNI as sent, for the audit row: at most HOST_PATTERN_MAX bytes,
	 * non-printable bytes as '?'; "" when absent. */
	char sni[HOST_PATTERN_BUF];
	int mint_error; /* LEAF_MINT_SNI_MINT_FAILED: the -errno */
};

/*
 * A minting context for the sandbox of ca: generates the leaf key and the
 * server SSL_CTX.  config may be NULL (defaults).
 */
__attribute__((warn_unused_result))
int leaf_mint_new(const struct mitm_ca *ca, const struct leaf_mint_config *config,
		  struct leaf_mint **ret_lm);

/* Free the cache, context and key; NULL is a no-op. */
void leaf_mint_free(struct leaf_mint *lm);

/*
 * The leaf for name[0..len) (a host name or IP literal), from the cache or
 * minted now.  *ret_cert is a new reference: X509_free() it.
 */
__attribute__((warn_unused_result))
int leaf_mint_get_cert(struct leaf_mint *lm, const char *name, size_t len, X509 **ret_cert);

/*
 * The sandbox's server context (borrowed, lives as long as lm).  Its
 * servername callback only serves SSLs made by leaf_mint_ssl_new: a bare
 * SSL_new() on it fails every handshake with internal_error.
 */
SSL_CTX *leaf_mint_server_ctx(const struct leaf_mint *lm);

/*
 * A server-side SSL (accept state, no BIOs yet) for a stream whose
 * synthetic address maps to mapped_name[0..len).  The caller attaches BIOs
 * and drives it; SSL_free() releases everything.
 */
__attribute__((warn_unused_result))
int leaf_mint_ssl_new(struct leaf_mint *lm, const char *mapped_name, size_t len,
		      SSL **ret_ssl);

/*
 * What the servername callback decided on ssl (one from leaf_mint_ssl_new).
 * -EINVAL for another SSL.
 */
__attribute__((warn_unused_result))
int leaf_mint_ssl_sni(const SSL *ssl, struct leaf_mint_sni_info *ret_info);

/* A stable lower-case token for audit rows ("match", "mismatch", ...). */
const char *leaf_mint_sni_name(enum leaf_mint_sni verdict);

void leaf_mint_get_stats(struct leaf_mint *lm, struct leaf_mint_stats *ret_stats);

#endif
