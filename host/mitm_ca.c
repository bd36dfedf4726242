#include "mitm_ca.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "ossl_err.h"

/* Sealed blob: u8 format | nonce | ciphertext | tag (see mitm_ca.h). */
#define MC_FORMAT_V1 0x01
#define MC_NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define MC_TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define MC_HEADER_BYTES (1 + MC_NONCE_BYTES)
#define MC_SERIAL_BITS 128

_Static_assert(MITM_CA_SUBKEY_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
	       "the sealing subkey is an XChaCha20-Poly1305 key");
_Static_assert(sizeof(MITM_CA_CN_PREFIX) - 1 + MITM_CA_SANDBOX_ID_MAX == 64,
	       "CN = prefix + sandbox id fits ub-common-name (RFC 5280)");

struct mitm_ca {
	char sandbox_id[MITM_CA_SANDBOX_ID_MAX + 1];
	X509 *cert;
	EVP_PKEY *key;
	ASN1_OCTET_STRING *ski; /* copy: the keyid of every leaf's AKI */
	time_t not_before;
	time_t not_after;
};

__attribute__((format(printf, 4, 5)))
static int mc_fail(char *err, size_t err_size, int r, const char *fmt, ...)
{
	va_list ap;

	if (err && err_size > 0) {
		va_start(ap, fmt);
		vsnprintf(err, err_size, fmt, ap);
		va_end(ap);
	}
	return r;
}

/* Drain OpenSSL's queue into err as "what: lib:reason..." and return the code. */
static int mc_ossl_fail(char *err, size_t err_size, int fallback, const char *what)
{
	char msg[OSSL_ERR_MSG_MAX];
	int r = ossl_err_drain(fallback, msg, sizeof(msg));

	return mc_fail(err, err_size, r, "%s: %s", what, msg[0] ? msg : "failed");
}

static bool mc_sandbox_id_is_valid(const char *id)
{
	size_t len;

	if (!id)
		return false;
	len = strnlen(id, MITM_CA_SANDBOX_ID_MAX + 1);
	if (len == 0 || len > MITM_CA_SANDBOX_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)id[i] < 0x21 || (unsigned char)id[i] > 0x7e)
			return false;
	return true;
}

static int mc_time(const ASN1_TIME *t, time_t *ret)
{
	struct tm tm;

	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return -EBADMSG;
	*ret = timegm(&tm);
	return 0;
}

/* RFC 5280 4.1.2.2: a positive integer, at most 20 octets; random, never 0. */
static int mc_set_random_serial(X509 *x)
{
	BIGNUM *bn = BN_new();
	int ok = 0;

	if (!bn)
		return -ENOMEM;
	do {
		if (!BN_rand(bn, MC_SERIAL_BITS, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY))
			goto out;
	} while (BN_is_zero(bn));
	ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
out:
	BN_free(bn);
	return ok ? 0 : -ENOMEM;
}

static int mc_add_ca_extensions(X509 *x)
{
	BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
	ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
	ASN1_OCTET_STRING *ski = ASN1_OCTET_STRING_new();
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	int ok = 0;

	if (!bc || !ku || !ski)
		goto out;
	/* RFC 5280 4.2.1.9: "Conforming CAs MUST mark the extension as critical". */
	bc->ca = 0xff;
	bc->pathlen = ASN1_INTEGER_new();
	/* RFC 5280 4.2.1.2 (1): the SHA-1 of the subjectPublicKey BIT STRING. */
	ok = bc->pathlen && ASN1_INTEGER_set(bc->pathlen, 0) &&
	     ASN1_BIT_STRING_set_bit(ku, 5, 1) && /* keyCertSign */
	     ASN1_BIT_STRING_set_bit(ku, 6, 1) && /* cRLSign */
	     X509_pubkey_digest(x, EVP_sha1(), md, &md_len) &&
	     ASN1_OCTET_STRING_set(ski, md, (int)md_len) &&
	     X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_REPLACE) == 1 &&
	     X509_add1_ext_i2d(x, NID_key_usage, ku, 1, X509V3_ADD_REPLACE) == 1 &&
	     X509_add1_ext_i2d(x, NID_subject_key_identifier, ski, 0, X509V3_ADD_REPLACE) == 1;
out:
	BASIC_CONSTRAINTS_free(bc);
	ASN1_BIT_STRING_free(ku);
	ASN1_OCTET_STRING_free(ski);
	return ok ? 0 : -ENOMEM;
}

/*
 * Take ownership of cert and key into a new struct mitm_ca.  Caches the
 * certificate's extensions now, while nothing else can see it, so later
 * shared reads never trigger OpenSSL's lazy caching.
 */
static int mc_wrap(const char *sandbox_id, X509 *cert, EVP_PKEY *key, struct mitm_ca **ret_ca)
{
	struct mitm_ca *ca;
	const ASN1_OCTET_STRING *ski;

	ca = calloc(1, sizeof(*ca));
	if (!ca)
		return -ENOMEM;
	if (X509_check_purpose(cert, -1, 0) != 1 ||
	    !(ski = X509_get0_subject_key_id(cert)) ||
	    !(ca->ski = ASN1_OCTET_STRING_dup(ski)) ||
	    mc_time(X509_get0_notBefore(cert), &ca->not_before) < 0 ||
	    mc_time(X509_get0_notAfter(cert), &ca->not_after) < 0) {
		ASN1_OCTET_STRING_free(ca->ski);
		free(ca);
		return -EBADMSG;
	}
	strcpy(ca->sandbox_id, sandbox_id); /* length checked by the caller */
	ca->cert = cert;
	ca->key = key;
	*ret_ca = ca;
	return 0;
}

int mitm_ca_generate(const char *sandbox_id, time_t now, struct mitm_ca **ret_ca,
		     char *err, size_t err_size)
{
	char cn[sizeof(MITM_CA_CN_PREFIX) + MITM_CA_SANDBOX_ID_MAX];
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	X509_NAME *name = NULL;
	int r;

	if (!mc_sandbox_id_is_valid(sandbox_id) || !ret_ca)
		return mc_fail(err, err_size, -EINVAL,
			       "sandbox id must be 1..%d bytes of printable ASCII without spaces",
			       MITM_CA_SANDBOX_ID_MAX);
	snprintf(cn, sizeof(cn), "%s%s", MITM_CA_CN_PREFIX, sandbox_id);

	key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!key) {
		r = mc_ossl_fail(err, err_size, -EIO, "CA key generation");
		goto out;
	}
	if (!(x = X509_new()) || !(name = X509_NAME_new()) ||
	    !X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC,
					(const unsigned char *)cn, -1, -1, 0) ||
	    !X509_set_version(x, X509_VERSION_3) ||
	    mc_set_random_serial(x) < 0 ||
	    !X509_set_subject_name(x, name) || !X509_set_issuer_name(x, name) ||
	    !X509_time_adj_ex(X509_getm_notBefore(x), 0, -MITM_CA_BACKDATE_S, &now) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), MITM_CA_VALIDITY_DAYS, 0, &now) ||
	    !X509_set_pubkey(x, key) ||
	    mc_add_ca_extensions(x) < 0 ||
	    X509_sign(x, key, EVP_sha256()) <= 0) {
		r = mc_ossl_fail(err, err_size, -ENOMEM, "CA certificate");
		goto out;
	}
	r = mc_wrap(sandbox_id, x, key, ret_ca);
	if (r < 0) {
		r = mc_fail(err, err_size, r, "CA certificate: cannot read back its extensions");
		goto out;
	}
	x = NULL;
	key = NULL;
out:
	X509_NAME_free(name);
	X509_free(x);
	EVP_PKEY_free(key); /* OpenSSL clears private key material on free */
	return r;
}

void mitm_ca_free(struct mitm_ca *ca)
{
	if (!ca)
		return;
	EVP_PKEY_free(ca->key);
	X509_free(ca->cert);
	ASN1_OCTET_STRING_free(ca->ski);
	free(ca);
}

/* Associated data: the format byte, then the sandbox id. */
static size_t mc_ad(const char *sandbox_id, unsigned char ad[1 + MITM_CA_SANDBOX_ID_MAX])
{
	size_t len = strlen(sandbox_id);

	ad[0] = MC_FORMAT_V1;
	memcpy(ad + 1, sandbox_id, len);
	return 1 + len;
}

int mitm_ca_seal_key(const struct mitm_ca *ca, const unsigned char subkey[MITM_CA_SUBKEY_BYTES],
		     unsigned char **ret_sealed, size_t *ret_sealed_len)
{
	unsigned char ad[1 + MITM_CA_SANDBOX_ID_MAX];
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	unsigned char *der = NULL, *p, *sealed = NULL;
	unsigned long long ct_len = 0;
	size_t ad_len, sealed_len = 0;
	int der_len, r;

	if (!ca || !subkey || !ret_sealed || !ret_sealed_len)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	if (!(p8 = EVP_PKEY2PKCS8(ca->key)) ||
	    (der_len = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL)) <= 0) {
		r = ossl_err_drain(-ENOMEM, NULL, 0);
		goto out;
	}
	if ((size_t)der_len > MITM_CA_SEALED_MAX - MC_HEADER_BYTES - MC_TAG_BYTES) {
		r = -E2BIG; /* not a P-256 key: cannot happen */
		goto out;
	}
	der = sodium_malloc((size_t)der_len);
	if (!der) {
		r = -ENOMEM;
		goto out;
	}
	p = der;
	if (i2d_PKCS8_PRIV_KEY_INFO(p8, &p) != der_len) {
		r = ossl_err_drain(-ENOMEM, NULL, 0);
		goto out;
	}
	sealed_len = MC_HEADER_BYTES + (size_t)der_len + MC_TAG_BYTES;
	sealed = malloc(sealed_len);
	if (!sealed) {
		r = -ENOMEM;
		goto out;
	}
	sealed[0] = MC_FORMAT_V1;
	randombytes_buf(sealed + 1, MC_NONCE_BYTES);
	ad_len = mc_ad(ca->sandbox_id, ad);
	crypto_aead_xchacha20poly1305_ietf_encrypt(sealed + MC_HEADER_BYTES, &ct_len,
						   der, (size_t)der_len, ad, ad_len,
						   NULL, sealed + 1, subkey);
	*ret_sealed = sealed;
	*ret_sealed_len = sealed_len;
	sealed = NULL;
	r = 0;
out:
	if (der) {
		sodium_memzero(der, (size_t)der_len);
		sodium_free(der);
	}
	free(sealed);
	PKCS8_PRIV_KEY_INFO_free(p8); /* frees its key octets with a clearing free */
	return r;
}

/* Is x this sandbox's CA certificate, self-signed with pub? */
static bool mc_cert_is_sandbox_ca(X509 *x, const char *sandbox_id)
{
	char want[sizeof(MITM_CA_CN_PREFIX) + MITM_CA_SANDBOX_ID_MAX];
	char cn[sizeof(want) + 1];
	X509_NAME *subject = X509_get_subject_name(x);
	int n;

	snprintf(want, sizeof(want), "%s%s", MITM_CA_CN_PREFIX, sandbox_id);
	n = X509_NAME_get_text_by_NID(subject, NID_commonName, cn, (int)sizeof(cn));
	return n > 0 && (size_t)n == strlen(want) && memcmp(cn, want, (size_t)n) == 0 &&
	       X509_NAME_entry_count(subject) == 1 &&
	       X509_NAME_cmp(subject, X509_get_issuer_name(x)) == 0 &&
	       X509_check_purpose(x, -1, 0) == 1 &&
	       (X509_get_extension_flags(x) & EXFLAG_CA) &&
	       (X509_get_key_usage(x) & KU_KEY_CERT_SIGN) &&
	       X509_get0_subject_key_id(x) != NULL;
}

static int mc_parse_cert(const char *pem, size_t pem_len, X509 **ret_cert)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)pem_len);
	X509 *x;

	if (!bio)
		return -ENOMEM;
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!x)
		return ossl_err_drain(-EBADMSG, NULL, 0);
	*ret_cert = x;
	return 0;
}

/* Open the blob into a key; the plaintext DER exists only inside. */
static int mc_open_key(const char *sandbox_id, const unsigned char *sealed, size_t sealed_len,
		       const unsigned char subkey[MITM_CA_SUBKEY_BYTES], EVP_PKEY **ret_key)
{
	unsigned char ad[1 + MITM_CA_SANDBOX_ID_MAX];
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	EVP_PKEY *key = NULL;
	unsigned char *der;
	const unsigned char *p;
	unsigned long long der_len = 0;
	size_t ct_len = sealed_len - MC_HEADER_BYTES, ad_len;
	int r = -EBADMSG;

	der = sodium_malloc(ct_len - MC_TAG_BYTES);
	if (!der)
		return -ENOMEM;
	ad_len = mc_ad(sandbox_id, ad);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(der, &der_len, NULL,
						       sealed + MC_HEADER_BYTES, ct_len,
						       ad, ad_len, sealed + 1, subkey) != 0)
		goto out;
	p = der;
	if (!(p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)der_len)) ||
	    p != der + der_len || !(key = EVP_PKCS82PKEY(p8))) {
		r = ossl_err_drain(-EBADMSG, NULL, 0);
		goto out;
	}
	*ret_key = key;
	key = NULL;
	r = 0;
out:
	sodium_memzero(der, ct_len - MC_TAG_BYTES);
	sodium_free(der);
	PKCS8_PRIV_KEY_INFO_free(p8);
	EVP_PKEY_free(key);
	return r;
}

static bool mc_key_is_p256(const EVP_PKEY *key)
{
	char group[32];

	return EVP_PKEY_is_a(key, "EC") &&
	       EVP_PKEY_get_group_name(key, group, sizeof(group), NULL) == 1 &&
	       strcmp(group, "prime256v1") == 0;
}

int mitm_ca_load(const char *sandbox_id, const char *cert_pem, size_t cert_pem_len,
		 const unsigned char *sealed, size_t sealed_len,
		 const unsigned char subkey[MITM_CA_SUBKEY_BYTES],
		 struct mitm_ca **ret_ca, char *err, size_t err_size)
{
	X509 *x = NULL;
	EVP_PKEY *key = NULL;
	int r;

	if (!mc_sandbox_id_is_valid(sandbox_id) || !cert_pem || !sealed || !subkey || !ret_ca)
		return mc_fail(err, err_size, -EINVAL, "CA load: invalid arguments");
	if (cert_pem_len == 0 || cert_pem_len > MITM_CA_PEM_MAX)
		return mc_fail(err, err_size, -EBADMSG, "CA of sandbox %s: certificate PEM is %zu bytes",
			       sandbox_id, cert_pem_len);
	if (sealed_len <= MC_HEADER_BYTES + MC_TAG_BYTES || sealed_len > MITM_CA_SEALED_MAX ||
	    sealed[0] != MC_FORMAT_V1)
		return mc_fail(err, err_size, -EBADMSG,
			       "CA of sandbox %s: sealed key is malformed (%zu bytes)",
			       sandbox_id, sealed_len);
	if (sodium_init() < 0)
		return mc_fail(err, err_size, -EIO, "libsodium failed to initialise");

	r = mc_parse_cert(cert_pem, cert_pem_len, &x);
	if (r < 0) {
		r = mc_fail(err, err_size, r, "CA of sandbox %s: certificate does not parse",
			    sandbox_id);
		goto out;
	}
	if (!mc_cert_is_sandbox_ca(x, sandbox_id)) {
		ERR_clear_error();
		r = mc_fail(err, err_size, -EBADMSG,
			    "CA of sandbox %s: certificate is not this sandbox's CA", sandbox_id);
		goto out;
	}
	r = mc_open_key(sandbox_id, sealed, sealed_len, subkey, &key);
	if (r < 0) {
		r = mc_fail(err, err_size, r,
			    "CA of sandbox %s: sealed key fails to open (tampered, another "
			    "sandbox's, or another master key)", sandbox_id);
		goto out;
	}
	if (!mc_key_is_p256(key) || X509_check_private_key(x, key) != 1) {
		ERR_clear_error();
		r = mc_fail(err, err_size, -EKEYREJECTED,
			    "CA of sandbox %s: key does not belong to the certificate", sandbox_id);
		goto out;
	}
	if (X509_verify(x, key) != 1) {
		ERR_clear_error();
		r = mc_fail(err, err_size, -EBADMSG,
			    "CA of sandbox %s: certificate is not signed by its key", sandbox_id);
		goto out;
	}
	r = mc_wrap(sandbox_id, x, key, ret_ca);
	if (r < 0) {
		r = mc_fail(err, err_size, r, "CA of sandbox %s: cannot read its validity", sandbox_id);
		goto out;
	}
	x = NULL;
	key = NULL;
out:
	X509_free(x);
	EVP_PKEY_free(key);
	return r;
}

int mitm_ca_cert_pem(const struct mitm_ca *ca, char **ret_pem, size_t *ret_len)
{
	BIO *bio;
	char *data = NULL, *pem;
	long len;
	int r = 0;

	if (!ca || !ret_pem || !ret_len)
		return -EINVAL;
	bio = BIO_new(BIO_s_mem());
	if (!bio || PEM_write_bio_X509(bio, ca->cert) != 1 ||
	    (len = BIO_get_mem_data(bio, &data)) <= 0) {
		r = ossl_err_drain(-ENOMEM, NULL, 0);
		goto out;
	}
	pem = malloc((size_t)len + 1);
	if (!pem) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(pem, data, (size_t)len);
	pem[len] = '\0';
	*ret_pem = pem;
	*ret_len = (size_t)len;
out:
	BIO_free(bio);
	return r;
}

X509 *mitm_ca_cert(const struct mitm_ca *ca)
{
	return ca->cert;
}

const char *mitm_ca_sandbox_id(const struct mitm_ca *ca)
{
	return ca->sandbox_id;
}

time_t mitm_ca_not_before(const struct mitm_ca *ca)
{
	return ca->not_before;
}

time_t mitm_ca_not_after(const struct mitm_ca *ca)
{
	return ca->not_after;
}

static int mc_add_aki(const struct mitm_ca *ca, X509 *cert)
{
	AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
	int ok;

	ok = akid && (akid->keyid = ASN1_OCTET_STRING_dup(ca->ski)) &&
	     X509_add1_ext_i2d(cert, NID_authority_key_identifier, akid, 0, X509V3_ADD_REPLACE) == 1;
	AUTHORITY_KEYID_free(akid);
	return ok ? 0 : -ENOMEM;
}

int mitm_ca_sign(const struct mitm_ca *ca, X509 *cert)
{
	int before, after;

	if (!ca || !cert)
		return -EINVAL;
	before = ASN1_TIME_compare(X509_get0_notBefore(cert), X509_get0_notBefore(ca->cert));
	after = ASN1_TIME_compare(X509_get0_notAfter(cert), X509_get0_notAfter(ca->cert));
	if (before == -2 || after == -2) {
		ERR_clear_error();
		return -EINVAL; /* validity not set */
	}
	if (before < 0 || after > 0)
		return -ERANGE;
	if (mc_set_random_serial(cert) < 0 ||
	    !X509_set_issuer_name(cert, X509_get_subject_name(ca->cert)) ||
	    mc_add_aki(ca, cert) < 0 ||
	    X509_sign(cert, ca->key, EVP_sha256()) <= 0)
		return ossl_err_drain(-ENOMEM, NULL, 0);
	return 0;
}
