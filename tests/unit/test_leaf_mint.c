#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "leaf_mint.h"
#include "mitm_ca.h"
#include "ossl_err.h"

#define SBX "sbx_0123456789abcdef01234567"
#define DAY 86400L

struct fixture {
	struct mitm_ca *ca;
	struct leaf_mint *lm;
};

static time_t fake_now;

static time_t fake_clock(void)
{
	return fake_now;
}

static int setup_with(void **state, time_t ca_now, const struct leaf_mint_config *cfg)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || mitm_ca_generate(SBX, ca_now, &f->ca, NULL, 0) < 0 ||
	    leaf_mint_new(f->ca, cfg, &f->lm) < 0)
		return -1;
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, time(NULL), NULL);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	leaf_mint_free(f->lm);
	mitm_ca_free(f->ca);
	free(f);
	return 0;
}

static X509 *get(struct fixture *f, const char *name)
{
	X509 *x = NULL;

	assert_int_equal(leaf_mint_get_cert(f->lm, name, strlen(name), &x), 0);
	assert_non_null(x);
	return x;
}

static time_t asn1_time(const ASN1_TIME *t)
{
	struct tm tm;

	assert_int_equal(ASN1_TIME_to_tm(t, &tm), 1);
	return timegm(&tm);
}

/* X509_verify_cert of leaf against the CA alone, strict, as a TLS server cert. */
static int verify_chain(const struct mitm_ca *ca, X509 *leaf)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int ok;

	assert_int_equal(X509_STORE_add_cert(store, mitm_ca_cert(ca)), 1);
	assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
	X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
	assert_int_equal(X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER), 1);
	ok = X509_verify_cert(ctx);
	if (ok != 1)
		fprintf(stderr, "verify: %s\n",
			X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return ok;
}

/* ---- TLS in memory ----------------------------------------------------- */

/* A client that trusts only ca (NULL: nothing) and offers alpn (may be NULL). */
static SSL *client_new(const struct mitm_ca *ca, const char *sni, const char *verify_host,
		       const char *verify_ip, const unsigned char *alpn, size_t alpn_len)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;

	assert_non_null(ctx);
	if (ca)
		assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx),
						     mitm_ca_cert(ca)), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (alpn)
		assert_int_equal(SSL_CTX_set_alpn_protos(ctx, alpn, (unsigned)alpn_len), 0);
	ssl = SSL_new(ctx);
	SSL_CTX_free(ctx); /* the SSL keeps its reference */
	assert_non_null(ssl);
	if (sni)
		assert_int_equal(SSL_set_tlsext_host_name(ssl, sni), 1);
	if (verify_host)
		assert_int_equal(SSL_set1_host(ssl, verify_host), 1);
	if (verify_ip)
		assert_int_equal(X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), verify_ip), 1);
	SSL_set_connect_state(ssl);
	return ssl;
}

struct hs {
	int client, server; /* 1: handshake done; else ossl_err_ssl's code */
	char client_msg[OSSL_ERR_MSG_MAX];
	char server_msg[OSSL_ERR_MSG_MAX];
};

static void step(SSL *ssl, int *rc, char *msg, size_t msg_size)
{
	int r;

	if (*rc == 1 || (*rc < 0 && *rc != -EAGAIN))
		return; /* finished, one way or the other */
	r = SSL_do_handshake(ssl);
	*rc = r == 1 ? 1 : ossl_err_ssl(ssl, r, msg, msg_size);
}

/* Connect client and server with a BIO pair and run both handshakes. */
static struct hs handshake(SSL *client, SSL *server)
{
	struct hs h = { .client = -EAGAIN, .server = -EAGAIN };
	BIO *cb = NULL, *sb = NULL;

	assert_int_equal(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
	SSL_set_bio(client, cb, cb);
	SSL_set_bio(server, sb, sb);
	for (int i = 0; i < 50 && (h.client == -EAGAIN || h.server == -EAGAIN); i++) {
		step(client, &h.client, h.client_msg, sizeof(h.client_msg));
		step(server, &h.server, h.server_msg, sizeof(h.server_msg));
	}
	return h;
}

static SSL *server_new(struct fixture *f, const char *mapped)
{
	SSL *ssl = NULL;

	assert_int_equal(leaf_mint_ssl_new(f->lm, mapped, strlen(mapped), &ssl), 0);
	return ssl;
}

static const unsigned char alpn_h2_h1[] = "\x02h2\x08http/1.1";
static const unsigned char alpn_h2[] = "\x02h2";

/* ---- certificates ------------------------------------------------------ */

static void test_leaf_verifies_against_the_ca_for_its_name_and_no_other(void **state)
{
	struct fixture *f = *state;
	X509 *x = get(f, "api.example.com");

	assert_int_equal(verify_chain(f->ca, x), 1);
	assert_int_equal(X509_check_host(x, "api.example.com", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(x, "API.EXAMPLE.COM", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(x, "other.example.com", 0, 0, NULL), 0);
	assert_int_equal(X509_check_host(x, "example.com", 0, 0, NULL), 0);
	assert_int_equal(X509_check_host(x, "x.api.example.com", 0, 0, NULL), 0);
	X509_free(x);
}

static void test_leaf_has_one_san_server_auth_digital_signature_aki_and_ca_false(void **state)
{
	struct fixture *f = *state;
	X509 *x = get(f, "api.example.com");
	GENERAL_NAMES *san;
	const GENERAL_NAME *gen;
	BASIC_CONSTRAINTS *bc;
	ASN1_BIT_STRING *ku;
	const ASN1_OCTET_STRING *aki;
	char cn[128];
	int crit = -1;

	assert_int_equal(X509_get_version(x), X509_VERSION_3);
	san = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
	assert_non_null(san);
	assert_int_equal(crit, 0); /* the subject is not empty */
	assert_int_equal(sk_GENERAL_NAME_num(san), 1);
	gen = sk_GENERAL_NAME_value(san, 0);
	assert_int_equal(gen->type, GEN_DNS);
	assert_int_equal(ASN1_STRING_length(gen->d.dNSName), strlen("api.example.com"));
	assert_memory_equal(ASN1_STRING_get0_data(gen->d.dNSName), "api.example.com", 15);
	GENERAL_NAMES_free(san);

	assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
					      cn, sizeof(cn)) > 0);
	assert_string_equal(cn, "api.example.com");
	assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x),
				       X509_get_subject_name(mitm_ca_cert(f->ca))), 0);

	bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
	assert_non_null(bc);
	assert_int_equal(crit, 1);
	assert_false(bc->ca);
	BASIC_CONSTRAINTS_free(bc);

	assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
	ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
	assert_non_null(ku);
	assert_int_equal(crit, 1);
	ASN1_BIT_STRING_free(ku);
	assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_SERVER);
	aki = X509_get0_authority_key_id(x);
	assert_non_null(aki);
	assert_int_equal(ASN1_OCTET_STRING_cmp(aki, X509_get0_subject_key_id(mitm_ca_cert(f->ca))),
			 0);
	assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
	X509_free(x);
}

static void test_every_leaf_of_a_sandbox_shares_one_key_but_not_a_serial(void **state)
{
	struct fixture *f = *state;
	X509 *a = get(f, "a.example.com"), *b = get(f, "b.example.com");

	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(a), X509_get0_pubkey(b)), 1);
	assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(a),
					      X509_get0_serialNumber(b)), 0);
	X509_free(a);
	X509_free(b);
}

static void test_ip_literal_leaf_carries_an_ip_address_san(void **state)
{
	struct fixture *f = *state;
	X509 *v4 = get(f, "127.0.0.1"), *v6 = get(f, "[2001:DB8::1]");
	GENERAL_NAMES *san = X509_get_ext_d2i(v6, NID_subject_alt_name, NULL, NULL);

	assert_non_null(san);
	assert_int_equal(sk_GENERAL_NAME_num(san), 1);
	assert_int_equal(sk_GENERAL_NAME_value(san, 0)->type, GEN_IPADD);
	assert_int_equal(ASN1_STRING_length(sk_GENERAL_NAME_value(san, 0)->d.iPAddress), 16);
	GENERAL_NAMES_free(san);

	assert_int_equal(verify_chain(f->ca, v4), 1);
	assert_int_equal(verify_chain(f->ca, v6), 1);
	assert_int_equal(X509_check_ip_asc(v4, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_ip_asc(v4, "127.0.0.2", 0), 0);
	assert_int_equal(X509_check_ip_asc(v6, "2001:db8:0::1", 0), 1);
	assert_int_equal(X509_check_ip_asc(v6, "2001:db8::2", 0), 0);
	assert_int_equal(X509_check_host(v4, "localhost", 0, 0, NULL), 0);
	X509_free(v4);
	X509_free(v6);
}

static void test_name_longer_than_a_cn_gets_an_empty_subject_and_critical_san(void **state)
{
	struct fixture *f = *state;
	char name[128];
	X509 *x;
	int crit = -1;
	GENERAL_NAMES *san;

	snprintf(name, sizeof(name), "%.60s.%.30s.example.com",
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
	x = get(f, name);
	assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(x)), 0);
	san = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
	assert_non_null(san);
	assert_int_equal(crit, 1);
	GENERAL_NAMES_free(san);
	assert_int_equal(verify_chain(f->ca, x), 1);
	assert_int_equal(X509_check_host(x, name, 0, 0, NULL), 1);
	X509_free(x);
}

static void test_leaf_is_valid_from_an_hour_ago_for_thirty_days(void **state)
{
	struct fixture *f = *state;
	X509 *x;
	time_t now = time(NULL);

	teardown(state);
	fake_now = now;
	assert_int_equal(setup_with(state, now - 10 * DAY,
				    &(struct leaf_mint_config){ .now = fake_clock }), 0);
	f = *state;
	x = get(f, "api.example.com");
	assert_true(asn1_time(X509_get0_notBefore(x)) == now - 3600);
	assert_true(asn1_time(X509_get0_notAfter(x)) == now + 30 * DAY);
	X509_free(x);
}

static void test_leaf_validity_is_capped_by_the_ca_and_the_capped_leaf_is_kept(void **state)
{
	struct fixture *f = *state;
	time_t now = time(NULL);
	X509 *x, *again;

	/* A CA with ten days to live: its leaves end with it. */
	teardown(state);
	fake_now = now;
	assert_int_equal(setup_with(state, now - MITM_CA_VALIDITY_DAYS * DAY + 10 * DAY,
				    &(struct leaf_mint_config){ .now = fake_clock }), 0);
	f = *state;
	x = get(f, "api.example.com");
	assert_true(asn1_time(X509_get0_notAfter(x)) == mitm_ca_not_after(f->ca));
	assert_int_equal(verify_chain(f->ca, x), 1);
	/* Within a day of its (capped) end, re-minting could not help: kept. */
	fake_now = mitm_ca_not_after(f->ca) - 3600;
	again = get(f, "api.example.com");
	assert_ptr_equal(again, x);
	X509_free(again);
	/* Once the CA has expired, nothing is served. */
	fake_now = mitm_ca_not_after(f->ca);
	assert_int_equal(leaf_mint_get_cert(f->lm, "api.example.com", 15, &again), -EKEYEXPIRED);
	assert_int_equal(leaf_mint_get_cert(f->lm, "new.example.com", 15, &again), -EKEYEXPIRED);
	X509_free(x);
}

static void test_cached_leaf_is_reminted_when_less_than_a_day_is_left(void **state)
{
	struct fixture *f = *state;
	time_t now = time(NULL);
	struct leaf_mint_stats st;
	X509 *a, *b, *c;

	teardown(state);
	fake_now = now;
	assert_int_equal(setup_with(state, now,
				    &(struct leaf_mint_config){ .now = fake_clock }), 0);
	f = *state;
	a = get(f, "api.example.com");
	fake_now = now + 29 * DAY - 1; /* a day and a second left */
	b = get(f, "api.example.com");
	assert_ptr_equal(a, b);
	fake_now = now + 29 * DAY + 1;
	c = get(f, "api.example.com");
	assert_ptr_not_equal(a, c);
	assert_true(asn1_time(X509_get0_notAfter(c)) == fake_now + 30 * DAY);
	leaf_mint_get_stats(f->lm, &st);
	assert_int_equal(st.misses, 2);
	assert_int_equal(st.hits, 1);
	assert_int_equal(st.entries, 1);
	X509_free(a);
	X509_free(b);
	X509_free(c);
}

static void test_expired_ca_mints_nothing(void **state)
{
	struct fixture *f;
	X509 *x = NULL;

	teardown(state);
	assert_int_equal(setup_with(state, time(NULL) - (MITM_CA_VALIDITY_DAYS + 1) * DAY, NULL),
			 0);
	f = *state;
	assert_int_equal(leaf_mint_get_cert(f->lm, "a.example", 9, &x), -EKEYEXPIRED);
	assert_null(x);
}

static void test_invalid_names_are_refused(void **state)
{
	struct fixture *f = *state;
	static const char *bad[] = {
		"", ".", "*.example.com", "a..example.com", "exa mple.com", "-a.example.com",
		"1.2.3", "a.example.com:443", "ex\xc3\xa4mple.com", "a/b", "256.1.1.1",
	};
	char long_name[300];
	X509 *x = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(leaf_mint_get_cert(f->lm, bad[i], strlen(bad[i]), &x), -EINVAL);
	/* An embedded NUL, and a name over 253 bytes. */
	assert_int_equal(leaf_mint_get_cert(f->lm, "a.com\0b.com", 11, &x), -EINVAL);
	memset(long_name, 'a', sizeof(long_name));
	for (size_t i = 50; i < sizeof(long_name); i += 51)
		long_name[i] = '.';
	assert_int_equal(leaf_mint_get_cert(f->lm, long_name, 260, &x), -EINVAL);
	assert_null(x);
	assert_int_equal(ERR_peek_error(), 0);
}

/* ---- cache ------------------------------------------------------------- */

static void test_cache_hit_returns_the_same_certificate(void **state)
{
	struct fixture *f = *state;
	struct leaf_mint_stats st;
	X509 *a = get(f, "api.example.com"), *b = get(f, "api.example.com");

	assert_ptr_equal(a, b);
	leaf_mint_get_stats(f->lm, &st);
	assert_int_equal(st.hits, 1);
	assert_int_equal(st.misses, 1);
	assert_int_equal(st.entries, 1);
	X509_free(a);
	X509_free(b);
}

static void test_names_differing_in_case_or_trailing_dot_share_one_entry(void **state)
{
	struct fixture *f = *state;
	X509 *a = get(f, "api.example.com"), *b = get(f, "API.Example.COM."),
	     *c = get(f, "[::1]"), *d = get(f, "0:0::1");

	assert_ptr_equal(a, b);
	assert_ptr_equal(c, d);
	X509_free(a);
	X509_free(b);
	X509_free(c);
	X509_free(d);
}

static void test_cache_evicts_the_least_recently_used_at_capacity(void **state)
{
	struct fixture *f;
	struct leaf_mint_stats st;
	X509 *a, *b, *c, *d, *a2, *c2, *b2;

	teardown(state);
	assert_int_equal(setup_with(state, time(NULL),
				    &(struct leaf_mint_config){ .cache_capacity = 3 }), 0);
	f = *state;
	a = get(f, "a.example");
	b = get(f, "b.example");
	c = get(f, "c.example");
	a2 = get(f, "a.example");    /* a is now the most recent: b is the LRU */
	d = get(f, "d.example");     /* evicts b */
	leaf_mint_get_stats(f->lm, &st);
	assert_int_equal(st.entries, 3);
	assert_int_equal(st.evictions, 1);
	assert_ptr_equal(a, a2);
	c2 = get(f, "c.example");    /* still cached */
	assert_ptr_equal(c, c2);
	b2 = get(f, "b.example");    /* was evicted: minted again, evicts a */
	assert_ptr_not_equal(b, b2);
	leaf_mint_get_stats(f->lm, &st);
	assert_int_equal(st.misses, 5);
	assert_int_equal(st.hits, 2);
	assert_int_equal(st.evictions, 2);
	assert_int_equal(st.entries, 3);
	X509_free(a); X509_free(b); X509_free(c); X509_free(d);
	X509_free(a2); X509_free(c2); X509_free(b2);
}

static void test_capacity_over_the_maximum_is_refused(void **state)
{
	struct fixture *f = *state;
	struct leaf_mint *lm = NULL;

	assert_int_equal(leaf_mint_new(f->ca, &(struct leaf_mint_config){
		.cache_capacity = LEAF_MINT_CACHE_MAX + 1 }, &lm), -EINVAL);
	assert_null(lm);
}

struct worker {
	struct leaf_mint *lm;
	int seed;
	int failures;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	char name[32];

	for (int i = 0; i < 300; i++) {
		X509 *x = NULL;
		int len = snprintf(name, sizeof(name), "h%d.example", (i * 7 + w->seed) % 24);

		if (leaf_mint_get_cert(w->lm, name, (size_t)len, &x) != 0 ||
		    X509_check_host(x, name, (size_t)len, 0, NULL) != 1)
			w->failures++;
		X509_free(x);
	}
	return NULL;
}

static void test_concurrent_lookups_from_several_threads_are_consistent(void **state)
{
	struct fixture *f;
	struct worker w[4];
	pthread_t t[4];
	struct leaf_mint_stats st;

	teardown(state);
	assert_int_equal(setup_with(state, time(NULL),
				    &(struct leaf_mint_config){ .cache_capacity = 8 }), 0);
	f = *state;
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ .lm = f->lm, .seed = i * 5 };
		assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
	}
	leaf_mint_get_stats(f->lm, &st);
	assert_int_equal(st.hits + st.misses, 4 * 300);
	assert_true(st.entries <= 8);
}

/* ---- handshakes -------------------------------------------------------- */

static void test_handshake_for_the_mapped_sni_verifies_and_selects_http11(void **state)
{
	struct fixture *f = *state;
	SSL *server = server_new(f, "api.example.com");
	SSL *client = client_new(f->ca, "api.example.com", "api.example.com", NULL,
				 alpn_h2_h1, sizeof(alpn_h2_h1) - 1);
	struct leaf_mint_sni_info info;
	const unsigned char *sel = NULL;
	unsigned int sel_len = 0;
	struct hs h = handshake(client, server);

	assert_int_equal(h.client, 1);
	assert_int_equal(h.server, 1);
	assert_int_equal(SSL_get_verify_result(client), X509_V_OK);
	assert_int_equal(SSL_version(client), TLS1_3_VERSION);
	SSL_get0_alpn_selected(client, &sel, &sel_len);
	assert_int_equal(sel_len, 8);
	assert_memory_equal(sel, "http/1.1", 8);
	assert_int_equal(leaf_mint_ssl_sni(server, &info), 0);
	assert_int_equal(info.verdict, LEAF_MINT_SNI_MATCH);
	assert_string_equal(info.sni, "api.example.com");
	assert_string_equal(leaf_mint_sni_name(info.verdict), "match");
	SSL_free(client);
	SSL_free(server);
}

static void test_tls12_handshake_uses_ecdhe_ecdsa_aead(void **state)
{
	struct fixture *f = *state;
	SSL *server = server_new(f, "api.example.com");
	SSL *client = client_new(f->ca, "api.example.com", "api.example.com", NULL, NULL, 0);
	struct hs h;

	assert_int_equal(SSL_set_max_proto_version(client, TLS1_2_VERSION), 1);
	h = handshake(client, server);
	assert_int_equal(h.client, 1);
	assert_int_equal(h.server, 1);
	assert_int_equal(SSL_version(server), TLS1_2_VERSION);
	assert_non_null(strstr(SSL_get_cipher_name(server), "ECDHE-ECDSA-"));
	SSL_free(client);
	SSL_free(server);
}

static void test_sni_other_than_the_mapped_name_is_refused_with_an_alert(void **state)
{
	struct fixture *f = *state;
	SSL *server = server_new(f, "api.example.com");
	SSL *client = client_new(f->ca, "evil.example.com", "evil.example.com", NULL, NULL, 0);
	struct leaf_mint_sni_info info;
	struct hs h = handshake(client, server);

	assert_int_equal(h.server, -EPROTO);
	assert_int_equal(h.client, -ECONNABORTED); /* the unrecognized_name alert */
	assert_non_null(strstr(h.client_msg, "unrecognized name"));
	assert_int_equal(leaf_mint_ssl_sni(server, &info), 0);
	assert_int_equal(info.verdict, LEAF_MINT_SNI_MISMATCH);
	assert_string_equal(info.sni, "evil.example.com");
	SSL_free(client);
	SSL_free(server);
}

static void test_invalid_sni_is_refused_and_quoted_safely(void **state)
{
	struct fixture *f = *state;
	SSL *server = server_new(f, "api.example.com");
	SSL *client = client_new(f->ca, "*.example.com", NULL, NULL, NULL, 0);
	struct leaf_mint_sni_info info;
	struct hs h = handshake(client, server);

	assert_true(h.server < 0 && h.server != -EAGAIN);
	assert_true(h.client < 0 && h.client != -EAGAIN);
	assert_int_equal(leaf_mint_ssl_sni(server, &info), 0);
	assert_int_equal(info.verdict, LEAF_MINT_SNI_INVALID);
	assert_string_equal(info.sni, "*.example.com");
	SSL_free(client);
	SSL_free(server);
}

static void test_guest_resumes_with_a_ticket_and_the_sni_is_still_checked(void **state)
{
	struct fixture *f = *state;
	SSL *server = server_new(f, "api.example.com");
	SSL *client = client_new(f->ca, "api.example.com", "api.example.com", NULL, NULL, 0);
	struct leaf_mint_sni_info info;
	SSL_SESSION *session;
	struct hs h = handshake(client, server);
	char buf[4];

	assert_int_equal(h.client, 1);
	assert_int_equal(SSL_write(server, "x", 1), 1); /* carries the tickets along */
	assert_int_equal(SSL_read(client, buf, sizeof(buf)), 1);
	session = SSL_get1_session(client);
	assert_non_null(session);
	(void)SSL_shutdown(client);
	SSL_free(client);
	SSL_free(server);

	/* Same name: resumed, and the callback still ran. */
	server = server_new(f, "api.example.com");
	client = client_new(f->ca, "api.example.com", "api.example.com", NULL, NULL, 0);
	assert_int_equal(SSL_set_session(client, session), 1);
	h = handshake(client, server);
	assert_int_equal(h.client, 1);
	assert_true(SSL_session_reused(server));
	assert_int_equal(leaf_mint_ssl_sni(server, &info), 0);
	assert_int_equal(info.verdict, LEAF_MINT_SNI_MATCH);
	SSL_free(client);
	SSL_free(server);

	/* The ticket does not get a stream mapped to another name past the check. */
	server = server_new(f, "other.example.com");
	client = client_new(f->ca, "api.example.com", "api.example.com", NULL, NULL, 0);
	assert_int_equal(SSL_set_session(client, session), 1);
	h = handshake(client, server);
	assert_int_equal(h.server, -EPROTO);
	assert_int_equal(leaf_mint_ssl_sni(server, &info), 0);
	assert_int_equal(info.verdict, LEAF_MINT_SNI_MISMATCH);
	SSL_free(client);
	SSL_free(server);
	SSL_SESSION_free(session);
}

static void test_client_verifying_another_name_rejects_the_leaf(void **state)
{
	struct fixture *f = *state;
	SSL *server = server_new(f, "api.example.com");
	SSL *client = client_new(f->ca, "api.example.com", "other.example.com", NULL, NULL, 0);
	struct hs h = handshake(client, server);

	assert_int_equal(h.client, -EKEYREJECTED);
	assert_non_null(strstr(h.client_msg, "certificate verify failed: "));
	assert_non_null(strstr(h.client_msg, "mismatch"));
	assert_int_equal(SSL_get_verify_result(client), X509_V_ERR_HOSTNAME_MISMATCH);
	SSL_free(client);
	SSL_free(server);
}

static void test_client_trusting_another_sandbox_ca_rejects_the_leaf(void **state)
{
	struct fixture *f = *state;
	struct mitm_ca *other = NULL;
	SSL *server = server_new(f, "api.example.com");
	SSL *client;
	struct hs h;

	assert_int_equal(mitm_ca_generate("sbx_other", time(NULL), &other, NULL, 0), 0);
	client = client_new(other, "api.example.com", "api.example.com", NULL, NULL, 0);
	h = handshake(client, server);
	assert_int_equal(h.client, -EKEYREJECTED);
	assert_int_not_equal(SSL_get_verify_result(client), X509_V_OK);
	SSL_free(client);
	SSL_free(server);
	mitm_ca_free(other);
}

static void test_client_without_sni_is_served_the_mapped_ip_leaf(void **state)
{
	struct fixture *f = *state;
	SSL *server = server_new(f, "10.1.2.3");
	SSL *client = client_new(f->ca, NULL, NULL, "10.1.2.3", NULL, 0);
	struct leaf_mint_sni_info info;
	struct hs h = handshake(client, server);

	assert_int_equal(h.client, 1);
	assert_int_equal(h.server, 1);
	assert_int_equal(leaf_mint_ssl_sni(server, &info), 0);
	assert_int_equal(info.verdict, LEAF_MINT_SNI_ABSENT);
	assert_string_equal(info.sni, "");
	SSL_free(client);
	SSL_free(server);
}

static void test_h2_only_client_gets_no_alpn_and_the_handshake_completes(void **state)
{
	struct fixture *f = *state;
	SSL *server = server_new(f, "api.example.com");
	SSL *client = client_new(f->ca, "api.example.com", "api.example.com", NULL,
				 alpn_h2, sizeof(alpn_h2) - 1);
	const unsigned char *sel = NULL;
	unsigned int sel_len = 99;
	struct hs h = handshake(client, server);

	assert_int_equal(h.client, 1);
	assert_int_equal(h.server, 1);
	SSL_get0_alpn_selected(client, &sel, &sel_len);
	assert_int_equal(sel_len, 0);
	SSL_free(client);
	SSL_free(server);
}

static void test_tls11_client_is_refused(void **state)
{
	struct fixture *f = *state;
	SSL *server = server_new(f, "api.example.com");
	SSL *client = client_new(f->ca, "api.example.com", "api.example.com", NULL, NULL, 0);
	struct hs h;

	SSL_set_security_level(client, 0);
	assert_int_equal(SSL_set_min_proto_version(client, TLS1_VERSION), 1);
	assert_int_equal(SSL_set_max_proto_version(client, TLS1_1_VERSION), 1);
	h = handshake(client, server);
	assert_int_equal(h.server, -EPROTO);
	assert_non_null(strstr(h.server_msg, "unsupported protocol"));
	assert_true(h.client < 0 && h.client != -EAGAIN);
	SSL_free(client);
	SSL_free(server);
}

static void test_ssl_not_made_by_leaf_mint_is_refused(void **state)
{
	struct fixture *f = *state;
	SSL *server = SSL_new(leaf_mint_server_ctx(f->lm));
	SSL *client = client_new(f->ca, "api.example.com", "api.example.com", NULL, NULL, 0);
	struct leaf_mint_sni_info info;
	struct hs h;

	assert_non_null(server);
	SSL_set_accept_state(server);
	h = handshake(client, server);
	assert_true(h.server < 0 && h.server != -EAGAIN);
	assert_true(h.client < 0 && h.client != -EAGAIN);
	assert_int_equal(leaf_mint_ssl_sni(server, &info), -EINVAL);
	SSL_free(client);
	SSL_free(server);
}

static void test_connection_keeps_working_after_its_leaf_is_evicted(void **state)
{
	struct fixture *f;
	SSL *server, *client;
	struct hs h;
	X509 *other;
	char buf[8];

	teardown(state);
	assert_int_equal(setup_with(state, time(NULL),
				    &(struct leaf_mint_config){ .cache_capacity = 1 }), 0);
	f = *state;
	server = server_new(f, "api.example.com");
	client = client_new(f->ca, "api.example.com", "api.example.com", NULL, NULL, 0);
	h = handshake(client, server);
	assert_int_equal(h.client, 1);
	other = get(f, "other.example.com"); /* evicts api.example.com */
	X509_free(other);
	leaf_mint_free(f->lm); /* and the whole context: the SSLs hold their references */
	f->lm = NULL;
	assert_int_equal(SSL_write(server, "ping", 4), 4);
	assert_int_equal(SSL_read(client, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(SSL_write(client, "pong", 4), 4);
	assert_int_equal(SSL_read(server, buf, sizeof(buf)), 4);
	SSL_free(client);
	SSL_free(server);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_leaf_verifies_against_the_ca_for_its_name_and_no_other),
		T(test_leaf_has_one_san_server_auth_digital_signature_aki_and_ca_false),
		T(test_every_leaf_of_a_sandbox_shares_one_key_but_not_a_serial),
		T(test_ip_literal_leaf_carries_an_ip_address_san),
		T(test_name_longer_than_a_cn_gets_an_empty_subject_and_critical_san),
		T(test_leaf_is_valid_from_an_hour_ago_for_thirty_days),
		T(test_leaf_validity_is_capped_by_the_ca_and_the_capped_leaf_is_kept),
		T(test_cached_leaf_is_reminted_when_less_than_a_day_is_left),
		T(test_expired_ca_mints_nothing),
		T(test_invalid_names_are_refused),
		T(test_cache_hit_returns_the_same_certificate),
		T(test_names_differing_in_case_or_trailing_dot_share_one_entry),
		T(test_cache_evicts_the_least_recently_used_at_capacity),
		T(test_capacity_over_the_maximum_is_refused),
		T(test_concurrent_lookups_from_several_threads_are_consistent),
		T(test_handshake_for_the_mapped_sni_verifies_and_selects_http11),
		T(test_tls12_handshake_uses_ecdhe_ecdsa_aead),
		T(test_sni_other_than_the_mapped_name_is_refused_with_an_alert),
		T(test_invalid_sni_is_refused_and_quoted_safely),
		T(test_guest_resumes_with_a_ticket_and_the_sni_is_still_checked),
		T(test_client_verifying_another_name_rejects_the_leaf),
		T(test_client_trusting_another_sandbox_ca_rejects_the_leaf),
		T(test_client_without_sni_is_served_the_mapped_ip_leaf),
		T(test_h2_only_client_gets_no_alpn_and_the_handshake_completes),
		T(test_tls11_client_is_refused),
		T(test_ssl_not_made_by_leaf_mint_is_refused),
		T(test_connection_keeps_working_after_its_leaf_is_evicted),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
