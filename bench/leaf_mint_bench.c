/*
 * leaf-mint-bench — what a leaf costs the thread that drives the handshake.
 *
 *   leaf-mint-bench [N]     (default 10000)
 *
 * Prints microseconds per operation for: N cache misses (distinct names,
 * each minted and signed), N cache hits over those names, N misses at a
 * capacity of N/10 (every lookup evicts), and a short run of complete
 * in-memory TLS 1.3 handshakes (client verifying the leaf against the
 * sandbox CA) with the leaf cached.  Not a test: numbers only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ssl.h>

#include "leaf_mint.h"
#include "mitm_ca.h"

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int lookups(struct leaf_mint *lm, long n, long modulo)
{
	char name[64];

	for (long i = 0; i < n; i++) {
		X509 *x = NULL;
		int len = snprintf(name, sizeof(name), "host-%ld.bench.example", i % modulo);

		if (leaf_mint_get_cert(lm, name, (size_t)len, &x) != 0)
			return -1;
		X509_free(x);
	}
	return 0;
}

static void report(const char *what, long n, double us)
{
	printf("%-44s %8ld ops  %9.2f us/op\n", what, n, us / (double)n);
}

/*
 * One full handshake over a BIO pair; 0 when both sides finish.  Adds the
 * time spent in the server's SSL_do_handshake calls to *server_us.
 */
static int handshake_once(struct leaf_mint *lm, SSL_CTX *client_ctx, double *server_us)
{
	SSL *server = NULL, *client = SSL_new(client_ctx);
	BIO *cb = NULL, *sb = NULL;
	int cdone = 0, sdone = 0;

	if (!client || leaf_mint_ssl_new(lm, "api.bench.example", 17, &server) != 0 ||
	    BIO_new_bio_pair(&cb, 0, &sb, 0) != 1)
		return -1;
	SSL_set_tlsext_host_name(client, "api.bench.example");
	SSL_set1_host(client, "api.bench.example");
	SSL_set_connect_state(client);
	SSL_set_bio(client, cb, cb);
	SSL_set_bio(server, sb, sb);
	for (int i = 0; i < 20 && !(cdone && sdone); i++) {
		if (!cdone)
			cdone = SSL_do_handshake(client) == 1;
		if (!sdone) {
			double t = now_us();

			sdone = SSL_do_handshake(server) == 1;
			*server_us += now_us() - t;
		}
	}
	SSL_free(client);
	SSL_free(server);
	return cdone && sdone ? 0 : -1;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
	long hs_n = n / 10 > 0 ? n / 10 : 1;
	struct mitm_ca *ca = NULL;
	struct leaf_mint *lm = NULL, *small = NULL;
	SSL_CTX *client_ctx = NULL;
	unsigned char subkey[MITM_CA_SUBKEY_BYTES] = { 0 };
	unsigned char *sealed = NULL;
	size_t sealed_len = 0, pem_len = 0;
	char *pem = NULL;
	double t, server_us = 0;
	int rc = 1;

	if (n <= 0 || n > (long)LEAF_MINT_CACHE_MAX) {
		fprintf(stderr, "usage: leaf-mint-bench [N], 1 <= N <= %u\n", LEAF_MINT_CACHE_MAX);
		return 2;
	}
	t = now_us();
	if (mitm_ca_generate("sbx_bench", time(NULL), &ca, NULL, 0) != 0)
		goto out;
	report("CA generation, first in process (cold)", 1, now_us() - t);
	t = now_us();
	for (int i = 0; i < 100; i++) {
		struct mitm_ca *again = NULL;

		if (mitm_ca_generate("sbx_bench", time(NULL), &again, NULL, 0) != 0)
			goto out;
		mitm_ca_free(again);
	}
	report("CA generation (key + self-signed cert)", 100, now_us() - t);
	if (mitm_ca_cert_pem(ca, &pem, &pem_len) != 0 ||
	    mitm_ca_seal_key(ca, subkey, &sealed, &sealed_len) != 0)
		goto out;
	t = now_us();
	for (int i = 0; i < 100; i++) {
		struct mitm_ca *back = NULL;

		if (mitm_ca_load("sbx_bench", pem, pem_len, sealed, sealed_len, subkey, &back,
				 NULL, 0) != 0)
			goto out;
		mitm_ca_free(back);
	}
	report("CA load (PEM parse + AEAD open + checks)", 100, now_us() - t);
	t = now_us();
	if (leaf_mint_new(ca, &(struct leaf_mint_config){ .cache_capacity = (size_t)n }, &lm) != 0)
		goto out;
	report("leaf_mint_new (leaf key + SSL_CTX)", 1, now_us() - t);

	t = now_us();
	if (lookups(lm, n, n) < 0)
		goto out;
	report("get_cert, cache miss (mint + sign)", n, now_us() - t);
	t = now_us();
	if (lookups(lm, n, n) < 0)
		goto out;
	report("get_cert, cache hit", n, now_us() - t);

	if (leaf_mint_new(ca, &(struct leaf_mint_config){
		.cache_capacity = (size_t)(n / 10 > 0 ? n / 10 : 1) }, &small) != 0)
		goto out;
	t = now_us();
	if (lookups(small, n, n) < 0)
		goto out;
	report("get_cert, miss + LRU eviction (cap N/10)", n, now_us() - t);

	client_ctx = SSL_CTX_new(TLS_client_method());
	if (!client_ctx || X509_STORE_add_cert(SSL_CTX_get_cert_store(client_ctx),
					       mitm_ca_cert(ca)) != 1)
		goto out;
	SSL_CTX_set_verify(client_ctx, SSL_VERIFY_PEER, NULL);
	t = now_us();
	for (long i = 0; i < hs_n; i++)
		if (handshake_once(lm, client_ctx, &server_us) != 0)
			goto out;
	report("TLS 1.3 handshake, both sides, leaf cached", hs_n, now_us() - t);
	report("  of which server side (broker's share)", hs_n, server_us);
	rc = 0;
out:
	if (rc != 0)
		fprintf(stderr, "leaf-mint-bench: failed\n");
	SSL_CTX_free(client_ctx);
	free(pem);
	free(sealed);
	leaf_mint_free(small);
	leaf_mint_free(lm);
	mitm_ca_free(ca);
	return rc;
}
