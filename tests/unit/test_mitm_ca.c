#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "mitm_ca.h"

#define SBX "sbx_0123456789abcdef01234567"
#define SBX_OTHER "sbx_fedcba9876543210fedcba98"

static const unsigned char subkey[MITM_CA_SUBKEY_BYTES] = {
	1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
	17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
};

static struct mitm_ca *new_ca(const char *id)
{
	struct mitm_ca *ca = NULL;
	char err[256];

	assert_int_equal(mitm_ca_generate(id, time(NULL), &ca, err, sizeof(err)), 0);
	assert_non_null(ca);
	return ca;
}

struct sealed_ca {
	char *pem;
	size_t pem_len;
	unsigned char *blob;
	size_t blob_len;
};

static void seal(const struct mitm_ca *ca, struct sealed_ca *s)
{
	assert_int_equal(mitm_ca_cert_pem(ca, &s->pem, &s->pem_len), 0);
	assert_int_equal(mitm_ca_seal_key(ca, subkey, &s->blob, &s->blob_len), 0);
}

static void sealed_free(struct sealed_ca *s)
{
	free(s->pem);
	free(s->blob);
}

static int load(const char *id, const struct sealed_ca *s, const unsigned char *key,
		struct mitm_ca **ret)
{
	char err[256] = "";
	int r = mitm_ca_load(id, s->pem, s->pem_len, s->blob, s->blob_len, key, ret,
			     err, sizeof(err));

	if (r < 0)
		assert_true(err[0] != '\0');
	return r;
}

static void test_generated_ca_is_a_p256_ca_with_critical_constraints_and_ski(void **state)
{
	struct mitm_ca *ca = new_ca(SBX);
	X509 *x = mitm_ca_cert(ca);
	char cn[128], group[32];
	int crit = -1;
	BASIC_CONSTRAINTS *bc;
	ASN1_BIT_STRING *ku;
	EVP_PKEY *pub = X509_get0_pubkey(x);

	(void)state;
	assert_int_equal(X509_get_version(x), X509_VERSION_3);
	assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
					      cn, sizeof(cn)) > 0);
	assert_string_equal(cn, "miosa sandbox CA " SBX);
	assert_int_equal(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);
	assert_true(EVP_PKEY_is_a(pub, "EC"));
	assert_int_equal(EVP_PKEY_get_group_name(pub, group, sizeof(group), NULL), 1);
	assert_string_equal(group, "prime256v1");
	assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
	assert_int_equal(X509_verify(x, pub), 1);

	bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
	assert_non_null(bc);
	assert_int_equal(crit, 1);
	assert_true(bc->ca);
	assert_non_null(bc->pathlen);
	assert_int_equal(ASN1_INTEGER_get(bc->pathlen), 0);
	BASIC_CONSTRAINTS_free(bc);

	ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
	assert_non_null(ku);
	assert_int_equal(crit, 1);
	ASN1_BIT_STRING_free(ku);
	assert_int_equal(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	assert_non_null(X509_get0_subject_key_id(x));
	assert_int_equal(X509_check_ca(x), 1);
	mitm_ca_free(ca);
}

static void test_ca_validity_is_backdated_one_hour_and_lasts_ten_years(void **state)
{
	time_t now = 1800000000;
	struct mitm_ca *ca = NULL;

	(void)state;
	assert_int_equal(mitm_ca_generate(SBX, now, &ca, NULL, 0), 0);
	assert_true(mitm_ca_not_before(ca) == now - 3600);
	assert_true(mitm_ca_not_after(ca) == now + 3650L * 86400);
	mitm_ca_free(ca);
}

static void test_ca_serials_are_random_128_bit_positive(void **state)
{
	struct mitm_ca *a = new_ca(SBX), *b = new_ca(SBX);
	const ASN1_INTEGER *sa = X509_get0_serialNumber(mitm_ca_cert(a));
	const ASN1_INTEGER *sb = X509_get0_serialNumber(mitm_ca_cert(b));
	BIGNUM *bn = ASN1_INTEGER_to_BN(sa, NULL);

	(void)state;
	assert_int_not_equal(ASN1_INTEGER_cmp(sa, sb), 0);
	assert_non_null(bn);
	assert_false(BN_is_negative(bn));
	assert_false(BN_is_zero(bn));
	assert_true(BN_num_bits(bn) <= 128);
	BN_free(bn);
	mitm_ca_free(a);
	mitm_ca_free(b);
}

static void test_ca_passes_strict_x509_verification_as_its_own_anchor(void **state)
{
	struct mitm_ca *ca = new_ca(SBX);
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();

	(void)state;
	assert_int_equal(X509_STORE_add_cert(store, mitm_ca_cert(ca)), 1);
	X509_STORE_set_flags(store, X509_V_FLAG_X509_STRICT);
	assert_int_equal(X509_STORE_CTX_init(ctx, store, mitm_ca_cert(ca), NULL), 1);
	assert_int_equal(X509_verify_cert(ctx), 1);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	mitm_ca_free(ca);
}

static void test_cert_pem_holds_the_certificate_only(void **state)
{
	struct mitm_ca *ca = new_ca(SBX);
	char *pem = NULL;
	size_t len = 0;

	(void)state;
	assert_int_equal(mitm_ca_cert_pem(ca, &pem, &len), 0);
	assert_int_equal(strlen(pem), len);
	assert_non_null(strstr(pem, "-----BEGIN CERTIFICATE-----"));
	assert_null(strstr(pem, "PRIVATE"));
	free(pem);
	mitm_ca_free(ca);
}

static void test_seal_and_load_round_trip_gives_the_same_key_and_cert(void **state)
{
	struct mitm_ca *ca = new_ca(SBX), *back = NULL;
	struct sealed_ca s = { 0 };
	X509 *leaf = X509_new();
	time_t now = time(NULL);

	(void)state;
	seal(ca, &s);
	assert_true(s.blob_len < MITM_CA_SEALED_MAX);
	assert_int_equal(load(SBX, &s, subkey, &back), 0);
	assert_string_equal(mitm_ca_sandbox_id(back), SBX);
	assert_int_equal(X509_cmp(mitm_ca_cert(ca), mitm_ca_cert(back)), 0);
	assert_true(mitm_ca_not_after(back) == mitm_ca_not_after(ca));

	/* The loaded key signs, and the signature verifies with the original cert. */
	assert_int_equal(X509_set_version(leaf, X509_VERSION_3), 1);
	assert_non_null(ASN1_TIME_set(X509_getm_notBefore(leaf), now));
	assert_non_null(ASN1_TIME_set(X509_getm_notAfter(leaf), now + 60));
	assert_int_equal(X509_set_pubkey(leaf, X509_get0_pubkey(mitm_ca_cert(ca))), 1);
	assert_int_equal(mitm_ca_sign(back, leaf), 0);
	assert_int_equal(X509_verify(leaf, X509_get0_pubkey(mitm_ca_cert(ca))), 1);
	X509_free(leaf);
	sealed_free(&s);
	mitm_ca_free(back);
	mitm_ca_free(ca);
}

static void test_sealing_twice_uses_fresh_nonces(void **state)
{
	struct mitm_ca *ca = new_ca(SBX);
	unsigned char *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0;

	(void)state;
	assert_int_equal(mitm_ca_seal_key(ca, subkey, &a, &alen), 0);
	assert_int_equal(mitm_ca_seal_key(ca, subkey, &b, &blen), 0);
	assert_int_equal(alen, blen);
	assert_int_equal(a[0], b[0]); /* format byte */
	assert_memory_not_equal(a + 1, b + 1, 24);
	free(a);
	free(b);
	mitm_ca_free(ca);
}

static void test_any_flipped_bit_in_the_sealed_key_is_refused(void **state)
{
	struct mitm_ca *ca = new_ca(SBX), *back = NULL;
	struct sealed_ca s = { 0 };

	(void)state;
	seal(ca, &s);
	for (size_t i = 0; i < s.blob_len; i++) {
		s.blob[i] ^= 0x01;
		assert_int_equal(load(SBX, &s, subkey, &back), -EBADMSG);
		s.blob[i] ^= 0x01;
	}
	assert_null(back);
	assert_int_equal(ERR_peek_error(), 0);
	sealed_free(&s);
	mitm_ca_free(ca);
}

static void test_truncated_or_oversized_sealed_key_is_refused(void **state)
{
	struct mitm_ca *ca = new_ca(SBX), *back = NULL;
	struct sealed_ca s = { 0 };
	unsigned char big[MITM_CA_SEALED_MAX + 1];
	size_t full;

	(void)state;
	seal(ca, &s);
	full = s.blob_len;
	for (s.blob_len = 0; s.blob_len < full; s.blob_len++)
		assert_int_equal(load(SBX, &s, subkey, &back), -EBADMSG);
	memset(big, 0, sizeof(big));
	memcpy(big, s.blob, full);
	assert_int_equal(mitm_ca_load(SBX, s.pem, s.pem_len, big, sizeof(big), subkey, &back,
				      NULL, 0), -EBADMSG);
	assert_null(back);
	s.blob_len = full;
	sealed_free(&s);
	mitm_ca_free(ca);
}

static void test_sealed_key_of_another_sandbox_is_refused(void **state)
{
	struct mitm_ca *a = new_ca(SBX), *b = new_ca(SBX_OTHER), *back = NULL;
	struct sealed_ca sa = { 0 }, sb = { 0 }, swapped;

	(void)state;
	seal(a, &sa);
	seal(b, &sb);
	/* A's certificate under B's id: not B's CA. */
	assert_int_equal(load(SBX_OTHER, &sa, subkey, &back), -EBADMSG);
	/* B's certificate with A's blob: the associated data (sandbox id) differs. */
	swapped = (struct sealed_ca){ sb.pem, sb.pem_len, sa.blob, sa.blob_len };
	assert_int_equal(load(SBX_OTHER, &swapped, subkey, &back), -EBADMSG);
	assert_null(back);
	sealed_free(&sa);
	sealed_free(&sb);
	mitm_ca_free(a);
	mitm_ca_free(b);
}

static void test_sealed_key_under_another_subkey_is_refused(void **state)
{
	struct mitm_ca *ca = new_ca(SBX), *back = NULL;
	struct sealed_ca s = { 0 };
	unsigned char other[MITM_CA_SUBKEY_BYTES];

	(void)state;
	seal(ca, &s);
	memcpy(other, subkey, sizeof(other));
	other[31] ^= 0x80;
	assert_int_equal(load(SBX, &s, other, &back), -EBADMSG);
	assert_null(back);
	sealed_free(&s);
	mitm_ca_free(ca);
}

static void test_certificate_of_another_key_is_refused(void **state)
{
	/* Two CAs of the same sandbox (a regenerated CA): cert of one, key of the other. */
	struct mitm_ca *a = new_ca(SBX), *b = new_ca(SBX), *back = NULL;
	struct sealed_ca sa = { 0 }, sb = { 0 }, mixed;

	(void)state;
	seal(a, &sa);
	seal(b, &sb);
	mixed = (struct sealed_ca){ sa.pem, sa.pem_len, sb.blob, sb.blob_len };
	assert_int_equal(load(SBX, &mixed, subkey, &back), -EKEYREJECTED);
	assert_null(back);
	assert_int_equal(ERR_peek_error(), 0);
	sealed_free(&sa);
	sealed_free(&sb);
	mitm_ca_free(a);
	mitm_ca_free(b);
}

static void test_garbage_certificate_pem_is_refused(void **state)
{
	struct mitm_ca *ca = new_ca(SBX), *back = NULL;
	struct sealed_ca s = { 0 }, bad;
	char junk[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

	(void)state;
	seal(ca, &s);
	bad = (struct sealed_ca){ junk, strlen(junk), s.blob, s.blob_len };
	assert_int_equal(load(SBX, &bad, subkey, &back), -EBADMSG);
	bad.pem_len = 0;
	assert_int_equal(load(SBX, &bad, subkey, &back), -EBADMSG);
	assert_null(back);
	assert_int_equal(ERR_peek_error(), 0);
	sealed_free(&s);
	mitm_ca_free(ca);
}

static void test_invalid_sandbox_ids_are_refused(void **state)
{
	static const char *bad[] = {
		"", "sbx with space", "sbx\x01", "sbx_\xc3\xa9",
		"a12345678901234567890123456789012345678901234567", /* 48 bytes */
	};
	struct mitm_ca *ca = NULL;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(mitm_ca_generate(bad[i], time(NULL), &ca, err, sizeof(err)),
				 -EINVAL);
	assert_int_equal(mitm_ca_generate(NULL, time(NULL), &ca, NULL, 0), -EINVAL);
	assert_null(ca);
	/* The longest id that fits the CN works. */
	assert_int_equal(mitm_ca_generate("a1234567890123456789012345678901234567890123456",
					  time(NULL), &ca, err, sizeof(err)), 0);
	mitm_ca_free(ca);
}

static void test_sign_refuses_validity_outside_the_ca(void **state)
{
	struct mitm_ca *ca = new_ca(SBX);
	X509 *x = X509_new();

	(void)state;
	assert_int_equal(mitm_ca_sign(ca, x), -EINVAL); /* no validity set */
	assert_int_equal(X509_set_pubkey(x, X509_get0_pubkey(mitm_ca_cert(ca))), 1);
	assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), mitm_ca_not_before(ca) - 1));
	assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), mitm_ca_not_before(ca) + 60));
	assert_int_equal(mitm_ca_sign(ca, x), -ERANGE);
	assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), mitm_ca_not_before(ca)));
	assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), mitm_ca_not_after(ca) + 1));
	assert_int_equal(mitm_ca_sign(ca, x), -ERANGE);
	assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), mitm_ca_not_after(ca)));
	assert_int_equal(mitm_ca_sign(ca, x), 0);
	assert_int_equal(X509_verify(x, X509_get0_pubkey(mitm_ca_cert(ca))), 1);
	assert_int_equal(ERR_peek_error(), 0);
	X509_free(x);
	mitm_ca_free(ca);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generated_ca_is_a_p256_ca_with_critical_constraints_and_ski),
		cmocka_unit_test(test_ca_validity_is_backdated_one_hour_and_lasts_ten_years),
		cmocka_unit_test(test_ca_serials_are_random_128_bit_positive),
		cmocka_unit_test(test_ca_passes_strict_x509_verification_as_its_own_anchor),
		cmocka_unit_test(test_cert_pem_holds_the_certificate_only),
		cmocka_unit_test(test_seal_and_load_round_trip_gives_the_same_key_and_cert),
		cmocka_unit_test(test_sealing_twice_uses_fresh_nonces),
		cmocka_unit_test(test_any_flipped_bit_in_the_sealed_key_is_refused),
		cmocka_unit_test(test_truncated_or_oversized_sealed_key_is_refused),
		cmocka_unit_test(test_sealed_key_of_another_sandbox_is_refused),
		cmocka_unit_test(test_sealed_key_under_another_subkey_is_refused),
		cmocka_unit_test(test_certificate_of_another_key_is_refused),
		cmocka_unit_test(test_garbage_certificate_pem_is_refused),
		cmocka_unit_test(test_invalid_sandbox_ids_are_refused),
		cmocka_unit_test(test_sign_refuses_validity_outside_the_ca),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
