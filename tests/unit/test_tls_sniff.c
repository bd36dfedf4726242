/*
 * tls_sniff: the verdict on a stream's first bytes.  Real ClientHellos come
 * from OpenSSL clients over memory BIOs (with and without ALPN, TLS 1.2
 * only and 1.3); malformed ones are built by hand or by editing a real one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/ssl.h>

#include "tls_sniff.h"

/* The first flight of an OpenSSL client offering alpn (wire format, NULL:
 * none), into buf; its length. */
static size_t client_hello(const unsigned char *alpn, unsigned alpn_len, bool tls12_only,
			   uint8_t *buf, size_t cap)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;
	BIO *rb, *wb;
	int n;

	assert_non_null(ctx);
	if (tls12_only)
		assert_int_equal(SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION), 1);
	ssl = SSL_new(ctx);
	assert_non_null(ssl);
	rb = BIO_new(BIO_s_mem());
	wb = BIO_new(BIO_s_mem());
	SSL_set_bio(ssl, rb, wb);
	assert_int_equal(SSL_set_tlsext_host_name(ssl, "db.example.test"), 1);
	if (alpn)
		assert_int_equal(SSL_set_alpn_protos(ssl, alpn, alpn_len), 0);
	assert_true(SSL_connect(ssl) <= 0); /* wants to read the ServerHello */
	n = BIO_read(wb, buf, (int)cap);
	assert_true(n > 0);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return (size_t)n;
}

static const unsigned char alpn_h2_http11[] = "\x02h2\x08http/1.1";
static const unsigned char alpn_h2[] = "\x02h2";
static const unsigned char alpn_imap[] = "\x04imap";
static const unsigned char alpn_pg_http11[] = "\x0apostgresql\x08http/1.1";

static void test_client_hello_with_http11_alpn_is_http(void **state)
{
	uint8_t buf[4096];
	size_t n;

	(void)state;
	n = client_hello(alpn_h2_http11, sizeof(alpn_h2_http11) - 1, false, buf, sizeof(buf));
	assert_int_equal(tls_sniff_client_hello(buf, n), TLS_SNIFF_HTTP);
	n = client_hello(alpn_pg_http11, sizeof(alpn_pg_http11) - 1, true, buf, sizeof(buf));
	assert_int_equal(tls_sniff_client_hello(buf, n), TLS_SNIFF_HTTP);
}

static void test_client_hello_without_alpn_is_http(void **state)
{
	uint8_t buf[4096];
	size_t n;

	(void)state;
	n = client_hello(NULL, 0, false, buf, sizeof(buf));
	assert_int_equal(tls_sniff_client_hello(buf, n), TLS_SNIFF_HTTP);
	n = client_hello(NULL, 0, true, buf, sizeof(buf));
	assert_int_equal(tls_sniff_client_hello(buf, n), TLS_SNIFF_HTTP);
}

static void test_client_hello_with_other_alpn_is_spliced(void **state)
{
	uint8_t buf[4096];
	size_t n;

	(void)state;
	n = client_hello(alpn_imap, sizeof(alpn_imap) - 1, false, buf, sizeof(buf));
	assert_int_equal(tls_sniff_client_hello(buf, n), TLS_SNIFF_OTHER_ALPN);
	n = client_hello(alpn_h2, sizeof(alpn_h2) - 1, true, buf, sizeof(buf));
	assert_int_equal(tls_sniff_client_hello(buf, n), TLS_SNIFF_OTHER_ALPN);
}

static void test_every_prefix_needs_more(void **state)
{
	uint8_t buf[4096];
	size_t n;

	(void)state;
	n = client_hello(alpn_imap, sizeof(alpn_imap) - 1, false, buf, sizeof(buf));
	for (size_t i = 0; i < n; i++)
		assert_int_equal(tls_sniff_client_hello(buf, i), TLS_SNIFF_NEED_MORE);
	/* bytes after the record (a pipelined record) do not matter */
	buf[n] = 0x17;
	assert_int_equal(tls_sniff_client_hello(buf, n + 1), TLS_SNIFF_OTHER_ALPN);
}

static void test_other_protocols_are_not_tls(void **state)
{
	(void)state;
	assert_int_equal(tls_sniff_client_hello((const uint8_t *)"GET / HTTP/1.1\r\n", 16),
			 TLS_SNIFF_NOT_TLS);
	assert_int_equal(tls_sniff_client_hello((const uint8_t *)"SSH-2.0-OpenSSH", 15),
			 TLS_SNIFF_NOT_TLS);
	assert_int_equal(tls_sniff_client_hello((const uint8_t *)"\x16\x02", 2), TLS_SNIFF_NOT_TLS);
	assert_int_equal(tls_sniff_client_hello((const uint8_t *)"\x16", 1), TLS_SNIFF_NEED_MORE);
	assert_int_equal(tls_sniff_client_hello(NULL, 0), TLS_SNIFF_NEED_MORE);
}

/* Find the ALPN extension (type 16) in a real hello: the offset of its type. */
static size_t find_alpn(const uint8_t *buf, size_t n, const unsigned char *alpn, size_t alen)
{
	for (size_t i = 0; i + 6 + alen <= n; i++)
		if (buf[i] == 0 && buf[i + 1] == 16 && memcmp(buf + i + 6, alpn, alen) == 0)
			return i;
	fail_msg("no ALPN extension in the hello");
	return 0;
}

static void test_malformed_hellos(void **state)
{
	uint8_t buf[4096], bad[4096];
	size_t n, at;

	(void)state;
	n = client_hello(alpn_imap, sizeof(alpn_imap) - 1, false, buf, sizeof(buf));
	at = find_alpn(buf, n, alpn_imap, sizeof(alpn_imap) - 1);

	/* record length over 2^14 */
	memcpy(bad, "\x16\x03\x01\x40\x01", 5);
	assert_int_equal(tls_sniff_client_hello(bad, 5), TLS_SNIFF_MALFORMED);
	/* zero-length record */
	assert_int_equal(tls_sniff_client_hello((const uint8_t *)"\x16\x03\x01\x00\x00", 5),
			 TLS_SNIFF_MALFORMED);
	/* not a ClientHello (ServerHello type 2) */
	memcpy(bad, buf, n);
	bad[5] = 2;
	assert_int_equal(tls_sniff_client_hello(bad, n), TLS_SNIFF_MALFORMED);
	/* handshake length beyond the record (a hello split over records) */
	memcpy(bad, buf, n);
	bad[7]++;
	assert_int_equal(tls_sniff_client_hello(bad, n), TLS_SNIFF_MALFORMED);
	/* ALPN protocol name of length 0 (RFC 7301: ProtocolName<1..2^8-1>) */
	memcpy(bad, buf, n);
	bad[at + 6] = 0;
	assert_int_equal(tls_sniff_client_hello(bad, n), TLS_SNIFF_MALFORMED);
	/* ALPN name longer than its list */
	memcpy(bad, buf, n);
	bad[at + 6] = 0x20;
	assert_int_equal(tls_sniff_client_hello(bad, n), TLS_SNIFF_MALFORMED);
	/* ALPN list length shorter than the extension */
	memcpy(bad, buf, n);
	bad[at + 5]--;
	assert_int_equal(tls_sniff_client_hello(bad, n), TLS_SNIFF_MALFORMED);
	/* a second ALPN extension: change the one before it into ALPN too is
	 * hard to do in place; instead, the extension type after ALPN */
	memcpy(bad, buf, n);
	{
		size_t next = at + 4 + ((size_t)buf[at + 2] << 8 | buf[at + 3]);

		if (next + 4 <= n) {
			bad[next] = 0;
			bad[next + 1] = 16;
			assert_int_equal(tls_sniff_client_hello(bad, n), TLS_SNIFF_MALFORMED);
		}
	}
}

static void test_verdict_names(void **state)
{
	(void)state;
	assert_string_equal(tls_sniff_verdict_name(TLS_SNIFF_NOT_TLS), "not-tls");
	assert_string_equal(tls_sniff_verdict_name(TLS_SNIFF_OTHER_ALPN), "other-alpn");
	assert_string_equal(tls_sniff_verdict_name(TLS_SNIFF_HTTP), "http");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client_hello_with_http11_alpn_is_http),
		cmocka_unit_test(test_client_hello_without_alpn_is_http),
		cmocka_unit_test(test_client_hello_with_other_alpn_is_spliced),
		cmocka_unit_test(test_every_prefix_needs_more),
		cmocka_unit_test(test_other_protocols_are_not_tls),
		cmocka_unit_test(test_malformed_hellos),
		cmocka_unit_test(test_verdict_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
