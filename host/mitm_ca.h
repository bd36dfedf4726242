/*
 * mitm_ca — the per-sandbox certificate authority the broker terminates the
 * guest's TLS with (issue 5, "TLS interception").
 *
 * What it promises:
 *   - mitm_ca_generate() makes a fresh ECDSA P-256 key and a self-signed
 *     X.509 v3 certificate:
 *       subject = issuer  CN="miosa sandbox CA <sandbox id>"
 *       serial            128 random bits (positive, never 0)
 *       validity          now - 1 hour .. now + 3650 days.  The hour absorbs
 *                         a guest clock slightly behind the host's.  Ten
 *                         years because the certificate is baked into
 *                         images and templates (`miosactl sandbox ca`);
 *                         its key never leaves the broker, and deleting the
 *                         sandbox is what revokes it.
 *       basicConstraints  critical, CA:TRUE, pathlen:0 (it signs leaves only)
 *       keyUsage          critical, keyCertSign + cRLSign
 *       subjectKeyIdentifier  SHA-1 of the public key (RFC 5280 4.2.1.2 (1))
 *       signature         ecdsa-with-SHA256
 *     This passes OpenSSL's X509_V_FLAG_X509_STRICT checks (Python 3.13
 *     verifies with it by default).
 *   - The private key leaves this module only sealed: mitm_ca_seal_key()
 *     encrypts its PKCS#8 DER with XChaCha20-Poly1305 under a caller-given
 *     32-byte subkey (master_key_derive(MASTER_KEY_PURPOSE_CA_KEYS)), a fresh
 *     random nonce per seal, and associated data = format byte || sandbox
 *     id, so a blob copied to another sandbox fails to open.  Blob layout
 *     (opaque to callers, stable on disk):
 *       u8 format (1) | 24-byte nonce | ciphertext (DER) | 16-byte tag
 *     Plaintext key bytes live only in sodium_malloc'd buffers, wiped on
 *     every path.
 *   - mitm_ca_load() is the way back and fails closed: a tampered or
 *     truncated blob, another sandbox id or another subkey give -EBADMSG; a
 *     certificate that is not this sandbox's CA (subject, CA flag, self
 *     signature) gives -EBADMSG; a key that does not belong to the
 *     certificate gives -EKEYREJECTED.
 *   - mitm_ca_sign() is the only use of the private key: it signs a
 *     certificate (leaf_mint.h) as this CA.
 *
 * Limits: a sandbox id is 1..MITM_CA_SANDBOX_ID_MAX bytes of 0x21..0x7e (the
 * vault's id alphabet); the bound comes from the CN: RFC 5280 caps
 * commonName at 64 characters (ub-common-name) and the prefix takes 17.
 * Sandbox ids ("sbx_" + 24 hex, tenancy.h) are 28.
 *
 * Ownership and threads: a struct mitm_ca is immutable once returned; it
 * may be used from any number of threads at once (signing with a shared
 * EVP_PKEY is safe in OpenSSL 3).  mitm_ca_free() wipes and frees it; it
 * must outlive every leaf_mint made from it.
 * Blocking: no I/O, but CPU: generate ~0.3 ms (~2 ms for the first in a
 * process, OpenSSL's provider set-up), load ~0.8 ms (PEM and PKCS#8
 * decoders, AEAD, checks), measured by bench/leaf_mint_bench.c.  Run both
 * on a worker with the rest of sandbox set-up.
 * Errors: 0 / negative errno; ret_* written only on success; err (may be
 * NULL) receives a one-line reason (never key bytes).  -EINVAL for
 * arguments out of the limits above.
 */
#ifndef MIOSA_MITM_CA_H
#define MIOSA_MITM_CA_H

#include <stddef.h>
#include <time.h>

#include <openssl/x509.h>

#define MITM_CA_CN_PREFIX "miosa sandbox CA "
#define MITM_CA_SANDBOX_ID_MAX 47              /* 64 - strlen(MITM_CA_CN_PREFIX) */
#define MITM_CA_SUBKEY_BYTES 32                /* = MASTER_KEY_SUBKEY_BYTES */
#define MITM_CA_BACKDATE_S 3600                /* notBefore = now - 1 hour */
#define MITM_CA_VALIDITY_DAYS 3650             /* notAfter = now + 10 years */
#define MITM_CA_SEALED_MAX 1024                /* a P-256 blob is ~180 bytes */
#define MITM_CA_PEM_MAX 8192                   /* certificate PEM accepted by load */

struct mitm_ca;

/*
 * A new CA for sandbox_id, valid from now - MITM_CA_BACKDATE_S.  now is the
 * current time (time(NULL)); tests pass other values.
 */
__attribute__((warn_unused_result))
int mitm_ca_generate(const char *sandbox_id, time_t now, struct mitm_ca **ret_ca,
		     char *err, size_t err_size);

/*
 * Rebuild a CA from its certificate PEM and a blob from mitm_ca_seal_key(),
 * checking everything listed above.
 */
__attribute__((warn_unused_result))
int mitm_ca_load(const char *sandbox_id, const char *cert_pem, size_t cert_pem_len,
		 const unsigned char *sealed, size_t sealed_len,
		 const unsigned char subkey[MITM_CA_SUBKEY_BYTES],
		 struct mitm_ca **ret_ca, char *err, size_t err_size);

/* Wipe and free; NULL is a no-op. */
void mitm_ca_free(struct mitm_ca *ca);

/*
 * Seal the private key.  *ret_sealed is malloc'd (ciphertext: not secret),
 * released with free().
 */
__attribute__((warn_unused_result))
int mitm_ca_seal_key(const struct mitm_ca *ca, const unsigned char subkey[MITM_CA_SUBKEY_BYTES],
		     unsigned char **ret_sealed, size_t *ret_sealed_len);

/*
 * The certificate as PEM (public: HelloAck, `miosactl sandbox ca`, storage).
 * *ret_pem is malloc'd and NUL-terminated, *ret_len excludes the NUL.
 */
__attribute__((warn_unused_result))
int mitm_ca_cert_pem(const struct mitm_ca *ca, char **ret_pem, size_t *ret_len);

/* The certificate, borrowed for the life of ca (X509_up_ref to keep it). */
X509 *mitm_ca_cert(const struct mitm_ca *ca);

const char *mitm_ca_sandbox_id(const struct mitm_ca *ca);

/* The certificate's validity, seconds since the epoch (UTC). */
time_t mitm_ca_not_before(const struct mitm_ca *ca);
time_t mitm_ca_not_after(const struct mitm_ca *ca);

/*
 * Sign cert as this CA: sets the issuer name and the authorityKeyIdentifier
 * (keyid of this CA's subjectKeyIdentifier), then signs with
 * ecdsa-with-SHA256.  The caller has set everything else.  -ERANGE if
 * cert's validity is not inside the CA's (a chain verifier would refuse it
 * anyway; clamp first, see mitm_ca_not_before/after).
 */
__attribute__((warn_unused_result))
int mitm_ca_sign(const struct mitm_ca *ca, X509 *cert);

#endif
