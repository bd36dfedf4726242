#include "sandbox_ca.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "master_key.h"
#include "mitm_ca.h"
#include "ossl_err.h"

_Static_assert(STORE_CA_PEM_MAX == MITM_CA_PEM_MAX, "the store keeps what mitm_ca loads");
_Static_assert(STORE_CA_SEALED_MAX == MITM_CA_SEALED_MAX, "the store keeps what mitm_ca seals");
_Static_assert(MASTER_KEY_SUBKEY_BYTES == MITM_CA_SUBKEY_BYTES, "CA_KEYS subkey seals CA keys");
_Static_assert(TENANCY_OBJECT_ID_LEN <= MITM_CA_SANDBOX_ID_MAX, "a sandbox id fits the CN");

__attribute__((format(printf, 4, 5)))
static int sc_fail(char *err, size_t err_size, int r, const char *fmt, ...)
{
	va_list ap;

	if (err && err_size > 0) {
		va_start(ap, fmt);
		vsnprintf(err, err_size, fmt, ap);
		va_end(ap);
	}
	return r;
}

static int64_t sc_now_us(time_t now)
{
	return (int64_t)now * 1000000;
}

int sandbox_ca_make(const char *sandbox_id, const unsigned char *subkey, time_t now,
		    struct store_sandbox_ca *ret_row, char *err, size_t err_size)
{
	struct store_sandbox_ca row;
	struct mitm_ca *ca = NULL;
	int r;

	memset(&row, 0, sizeof(row));
	if (!sandbox_id || strlen(sandbox_id) != TENANCY_OBJECT_ID_LEN || !subkey || !ret_row)
		return sc_fail(err, err_size, -EINVAL, "sandbox CA: bad arguments");
	memcpy(row.sandbox_id, sandbox_id, TENANCY_OBJECT_ID_LEN + 1);
	row.created_at_us = sc_now_us(now);
	if ((r = mitm_ca_generate(sandbox_id, now, &ca, err, err_size)) != 0)
		goto out;
	if ((r = mitm_ca_seal_key(ca, subkey, &row.sealed_key, &row.sealed_key_len)) != 0) {
		sc_fail(err, err_size, r, "sandbox CA of %s: cannot seal the key", sandbox_id);
		goto out;
	}
	if ((r = mitm_ca_cert_pem(ca, &row.cert_pem, &row.cert_pem_len)) != 0) {
		sc_fail(err, err_size, r, "sandbox CA of %s: cannot encode the certificate",
			sandbox_id);
		goto out;
	}
	*ret_row = row;
	memset(&row, 0, sizeof(row));
out:
	mitm_ca_free(ca); /* wipes the key */
	store_sandbox_ca_clear(&row);
	return r;
}

int sandbox_ca_load(struct store *st, const char *sandbox_id, const unsigned char *subkey,
		    struct mitm_ca **ret_ca, char *err, size_t err_size)
{
	struct store_sandbox_ca row;
	int r;

	memset(&row, 0, sizeof(row));
	if ((r = store_sandbox_ca_get(st, sandbox_id, STORE_WITH_SEALED_KEY, &row)) != 0)
		return sc_fail(err, err_size, r, "%s", store_errmsg(st));
	r = mitm_ca_load(sandbox_id, row.cert_pem, row.cert_pem_len, row.sealed_key,
			 row.sealed_key_len, subkey, ret_ca, err, err_size);
	store_sandbox_ca_clear(&row);
	return r;
}

static int sc_time(const ASN1_TIME *t, time_t *ret)
{
	struct tm tm;

	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return -EUCLEAN;
	*ret = timegm(&tm);
	return 0;
}

/* Validity and fingerprint of the stored certificate into pub. */
static int sc_describe(const char *pem, size_t pem_len, struct sandbox_ca_public *pub)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	BIO *bio = BIO_new_mem_buf(pem, (int)pem_len);
	X509 *x = NULL;
	int r = -EUCLEAN;

	if (!bio)
		return ossl_err_drain(-ENOMEM, NULL, 0);
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (!x || sc_time(X509_get0_notBefore(x), &pub->not_before) != 0 ||
	    sc_time(X509_get0_notAfter(x), &pub->not_after) != 0 ||
	    X509_digest(x, EVP_sha256(), md, &md_len) != 1 || md_len != 32) {
		/* Empties the queue; anything but running out of memory means
		 * the row holds no certificate we made. */
		if (ossl_err_drain(-EUCLEAN, NULL, 0) == -ENOMEM)
			r = -ENOMEM;
		goto out;
	}
	for (unsigned int i = 0; i < md_len; i++)
		snprintf(pub->sha256_fingerprint + 3 * i, 4, i + 1 < md_len ? "%02X:" : "%02X",
			 md[i]);
	r = 0;
out:
	X509_free(x);
	BIO_free(bio);
	return r;
}

int sandbox_ca_public(struct store *st, const char *sandbox_id,
		      struct sandbox_ca_public *ret_pub, char *err, size_t err_size)
{
	struct sandbox_ca_public pub;
	struct store_sandbox_ca row;
	int r;

	memset(&row, 0, sizeof(row));
	memset(&pub, 0, sizeof(pub));
	if ((r = store_sandbox_ca_get(st, sandbox_id, 0, &row)) != 0)
		return sc_fail(err, err_size, r, "%s", store_errmsg(st));
	if ((r = sc_describe(row.cert_pem, row.cert_pem_len, &pub)) != 0) {
		store_sandbox_ca_clear(&row);
		return sc_fail(err, err_size, r, "sandbox CA of %s: the stored certificate is malformed",
			       sandbox_id);
	}
	pub.cert_pem = row.cert_pem;
	pub.cert_pem_len = row.cert_pem_len;
	*ret_pub = pub;
	return 0;
}

void sandbox_ca_public_clear(struct sandbox_ca_public *pub)
{
	if (!pub)
		return;
	free(pub->cert_pem);
	pub->cert_pem = NULL;
	pub->cert_pem_len = 0;
}
