/*
 * sandbox_ca — a sandbox's TLS-interception CA (mitm_ca.h) as it is kept in
 * state.db (store.h, table tenancy_sandbox_cas).  The glue between the CA
 * module, which knows certificates and sealing, and the store, which knows
 * rows; tenancy.h decides who may ask for which sandbox's CA.
 *
 * What it promises:
 *   - sandbox_ca_make() generates a fresh CA (ECDSA P-256, mitm_ca.h) and
 *     returns it as a store row: certificate PEM + the key sealed under the
 *     caller's CA_KEYS subkey (master_key.h).  No I/O: the caller inserts the
 *     row in the same write transaction as the sandbox row, so the two commit
 *     or roll back together.
 *   - sandbox_ca_load() is the data path's way in: reads the row and rebuilds
 *     the CA with mitm_ca_load(), which fails closed (a tampered blob, one
 *     sealed under another master key or copied from another sandbox:
 *     -EBADMSG; a key not matching the certificate: -EKEYREJECTED).
 *   - sandbox_ca_public() reads the certificate only — the query does not
 *     even select the sealed key — and describes it (validity, SHA-256
 *     fingerprint) for the control API.
 *
 * subkey: the MASTER_KEY_SUBKEY_BYTES (= MITM_CA_SUBKEY_BYTES) of
 * master_key_derive(MASTER_KEY_PURPOSE_CA_KEYS); borrowed.
 *
 * Key material: the private key exists in plaintext only inside a struct
 * mitm_ca (OpenSSL's key object, wiped by mitm_ca_free()) and in the
 * sodium_malloc'd buffers of mitm_ca.c; every path here frees what it made.
 * The sealed blob is ciphertext: plain malloc.
 *
 * Threads and blocking: as store.h (one handle per thread, disk I/O); make
 * costs ~0.3 ms of CPU and load ~0.8 ms (mitm_ca.h).  Never on the loop.
 * Errors: 0 / negative errno; err (may be NULL) receives a one-line reason,
 * never key bytes.  -ENOENT: the sandbox has no CA row.  -EUCLEAN: the
 * stored certificate does not parse.  Others from store.h and mitm_ca.h.
 * ret_* are written only on success.
 */
#ifndef MIOSA_SANDBOX_CA_H
#define MIOSA_SANDBOX_CA_H

#include <stddef.h>
#include <time.h>

#include "store.h"

struct mitm_ca;

/* SHA-256 of the DER as OpenSSL's -fingerprint prints it: "AB:CD:...". */
#define SANDBOX_CA_FINGERPRINT_LEN (32 * 3 - 1)

struct sandbox_ca_public {
	char *cert_pem;        /* malloc'd, NUL-terminated */
	size_t cert_pem_len;   /* excludes the NUL */
	time_t not_before;     /* seconds since the epoch, UTC */
	time_t not_after;
	char sha256_fingerprint[SANDBOX_CA_FINGERPRINT_LEN + 1];
};

/*
 * A new CA for sandbox_id (valid from now - MITM_CA_BACKDATE_S) as a row
 * ready for store_sandbox_ca_insert(); release it with
 * store_sandbox_ca_clear().  created_at_us = now.
 */
__attribute__((warn_unused_result))
int sandbox_ca_make(const char *sandbox_id, const unsigned char *subkey, time_t now,
		    struct store_sandbox_ca *ret_row, char *err, size_t err_size);

/* The sandbox's CA with its private key; mitm_ca_free() it. */
__attribute__((warn_unused_result))
int sandbox_ca_load(struct store *st, const char *sandbox_id, const unsigned char *subkey,
		    struct mitm_ca **ret_ca, char *err, size_t err_size);

/* The public half only.  Release with sandbox_ca_public_clear(). */
__attribute__((warn_unused_result))
int sandbox_ca_public(struct store *st, const char *sandbox_id,
		      struct sandbox_ca_public *ret_pub, char *err, size_t err_size);
void sandbox_ca_public_clear(struct sandbox_ca_public *pub); /* NULL is a no-op */

#endif
