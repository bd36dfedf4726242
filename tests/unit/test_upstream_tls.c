/*
 * upstream_tls against servers whose certificates the openssl CLI made in a
 * temporary directory (an implementation independent of ours), and the
 * ossl_err shim it reports failures through.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "fixture.h"
#include "ossl_err.h"
#include "upstream_tls.h"

struct fixture {
	char dir[64];
	char ca[PATH_MAX];
	char empty[PATH_MAX];
	SSL_CTX *good;  /* upstream.test, *.wild.test, 127.0.0.1; signed by ca.pem */
	SSL_CTX *self;  /* upstream.test, self-signed */
	SSL_CTX *old;   /* the good certificate, but TLS 1.1 at most */
};

/* What the last server saw of the client's hello. */
static char seen_sni[256];
static bool seen_no_sni;
static unsigned char seen_alpn[64];
static unsigned int seen_alpn_len;

static int server_alpn(SSL *ssl, const unsigned char **out, unsigned char *out_len,
		       const unsigned char *in, unsigned int in_len, void *arg)
{
	static const unsigned char h1[] = "\x08http/1.1";
	unsigned char *sel;

	(void)ssl; (void)arg;
	seen_alpn_len = in_len < sizeof(seen_alpn) ? in_len : (unsigned)sizeof(seen_alpn);
	memcpy(seen_alpn, in, seen_alpn_len);
	if (SSL_select_next_proto(&sel, out_len, h1, sizeof(h1) - 1, in, in_len) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static int server_sni(SSL *ssl, int *al, void *arg)
{
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	(void)al; (void)arg;
	seen_no_sni = name == NULL;
	snprintf(seen_sni, sizeof(seen_sni), "%s", name ? name : "");
	return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *server_ctx(const char *dir, const char *cert, const char *key)
{
	char cpath[PATH_MAX], kpath[PATH_MAX];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx)
		return NULL;
	snprintf(cpath, sizeof(cpath), "%s/%s", dir, cert);
	snprintf(kpath, sizeof(kpath), "%s/%s", dir, key);
	if (SSL_CTX_use_certificate_chain_file(ctx, cpath) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, kpath, SSL_FILETYPE_PEM) != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_alpn_select_cb(ctx, server_alpn, NULL);
	SSL_CTX_set_tlsext_servername_callback(ctx, server_sni);
	return ctx;
}

static const char make_certs[] =
	"set -e; cd '%s'\n"
	"exec 2>openssl.log\n"
	"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
	" -keyout ca.key -out ca.pem -days 2 -subj '/CN=miosa test upstream CA'"
	" -addext basicConstraints=critical,CA:TRUE"
	" -addext keyUsage=critical,keyCertSign,cRLSign\n"
	"openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
	" -keyout server.key -out server.csr -subj /CN=upstream.test\n"
	"printf '%%s\\n' 'subjectAltName=DNS:upstream.test,DNS:*.wild.test,IP:127.0.0.1'"
	" 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature'"
	" 'extendedKeyUsage=serverAuth' > server.ext\n"
	"openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
	" -days 2 -extfile server.ext -out server.pem\n"
	"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
	" -keyout self.key -out self.pem -days 2 -subj /CN=upstream.test"
	" -addext subjectAltName=DNS:upstream.test\n"
	": > empty.pem\n";

static int group_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char cmd[2048];
	int status;

	if (!f)
		return -1;
	if (fixture_tmpdir("utls", f->dir) != 0)
		return -1;
	snprintf(cmd, sizeof(cmd), make_certs, f->dir);
	status = system(cmd);
	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "openssl CLI failed, see %s/openssl.log\n", f->dir);
		return -1;
	}
	snprintf(f->ca, sizeof(f->ca), "%s/ca.pem", f->dir);
	snprintf(f->empty, sizeof(f->empty), "%s/empty.pem", f->dir);
	f->good = server_ctx(f->dir, "server.pem", "server.key");
	f->self = server_ctx(f->dir, "self.pem", "self.key");
	f->old = server_ctx(f->dir, "server.pem", "server.key");
	if (!f->good || !f->self || !f->old)
		return -1;
	SSL_CTX_set_security_level(f->old, 0);
	SSL_CTX_set_min_proto_version(f->old, TLS1_VERSION);
	SSL_CTX_set_max_proto_version(f->old, TLS1_1_VERSION);
	*state = f;
	return 0;
}

static int group_teardown(void **state)
{
	struct fixture *f = *state;

	SSL_CTX_free(f->good);
	SSL_CTX_free(f->self);
	SSL_CTX_free(f->old);
	fixture_rmtree(f->dir);
	free(f);
	return 0;
}

struct hs {
	int client, server; /* 1: done; else ossl_err_ssl's code */
	char client_msg[OSSL_ERR_MSG_MAX];
	char server_msg[OSSL_ERR_MSG_MAX];
};

static void step(SSL *ssl, int *rc, char *msg, size_t msg_size)
{
	int r;

	if (*rc == 1 || (*rc < 0 && *rc != -EAGAIN))
		return;
	r = SSL_do_handshake(ssl);
	*rc = r == 1 ? 1 : ossl_err_ssl(ssl, r, msg, msg_size);
}

/* Run client against a new SSL of server_ctx over a BIO pair; returns the server SSL. */
static struct hs handshake(SSL *client, SSL_CTX *server_ctx, SSL **ret_server)
{
	struct hs h = { .client = -EAGAIN, .server = -EAGAIN };
	SSL *server = SSL_new(server_ctx);
	BIO *cb = NULL, *sb = NULL;

	assert_non_null(server);
	SSL_set_accept_state(server);
	assert_int_equal(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
	SSL_set_bio(client, cb, cb);
	SSL_set_bio(server, sb, sb);
	seen_sni[0] = '\0';
	seen_no_sni = false;
	seen_alpn_len = 0;
	for (int i = 0; i < 50 && (h.client == -EAGAIN || h.server == -EAGAIN); i++) {
		step(client, &h.client, h.client_msg, sizeof(h.client_msg));
		step(server, &h.server, h.server_msg, sizeof(h.server_msg));
	}
	if (ret_server)
		*ret_server = server;
	else
		SSL_free(server);
	return h;
}

static struct upstream_tls *new_upstream(const char *extra_ca, size_t slots)
{
	struct upstream_tls *u = NULL;
	char err[512];
	int r = upstream_tls_new(&(struct upstream_tls_config){
		.extra_ca_file = extra_ca, .session_cache_slots = slots }, &u, err, sizeof(err));

	if (r < 0)
		fprintf(stderr, "upstream_tls_new: %s\n", err);
	assert_int_equal(r, 0);
	return u;
}

/* One handshake of a fresh client SSL for host:port against server_ctx. */
static struct hs connect_to(struct upstream_tls *u, const char *host, uint16_t port,
			    SSL_CTX *server_ctx, SSL **ret_client, SSL **ret_server)
{
	SSL *client = NULL;
	struct hs h;

	assert_int_equal(upstream_tls_ssl_new(u, host, strlen(host), port, &client), 0);
	h = handshake(client, server_ctx, ret_server);
	if (ret_client)
		*ret_client = client;
	else
		SSL_free(client);
	return h;
}

/* ---- trust ------------------------------------------------------------- */

static void test_server_signed_by_the_extra_ca_is_accepted(void **state)
{
	struct fixture *f = *state;
	struct upstream_tls *u = new_upstream(f->ca, 0);
	SSL *client = NULL;
	struct hs h = connect_to(u, "upstream.test", 443, f->good, &client, NULL);

	assert_int_equal(h.client, 1);
	assert_int_equal(h.server, 1);
	assert_int_equal(SSL_get_verify_result(client), X509_V_OK);
	assert_true(SSL_version(client) >= TLS1_2_VERSION);
	SSL_free(client);
	upstream_tls_free(u);
}

static void test_server_of_the_extra_ca_is_refused_without_it(void **state)
{
	struct fixture *f = *state;
	struct upstream_tls *u = new_upstream(NULL, 0);
	struct hs h = connect_to(u, "upstream.test", 443, f->good, NULL, NULL);

	assert_int_equal(h.client, -EKEYREJECTED);
	assert_non_null(strstr(h.client_msg, "certificate verify failed: "));
	upstream_tls_free(u);
}

static void test_self_signed_server_not_in_the_trust_store_is_refused(void **state)
{
	struct fixture *f = *state;
	struct upstream_tls *u = new_upstream(f->ca, 0);
	SSL *client = NULL;
	struct hs h = connect_to(u, "upstream.test", 443, f->self, &client, NULL);

	assert_int_equal(h.client, -EKEYREJECTED);
	assert_int_equal(SSL_get_verify_result(client), X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
	assert_non_null(strstr(h.client_msg, "self-signed"));
	assert_true(h.server < 0 && h.server != -EAGAIN); /* got the alert */
	SSL_free(client);
	upstream_tls_free(u);
}

static void test_hostname_mismatch_is_refused(void **state)
{
	struct fixture *f = *state;
	struct upstream_tls *u = new_upstream(f->ca, 0);
	SSL *client = NULL;
	struct hs h = connect_to(u, "other.test", 443, f->good, &client, NULL);

	assert_int_equal(h.client, -EKEYREJECTED);
	assert_int_equal(SSL_get_verify_result(client), X509_V_ERR_HOSTNAME_MISMATCH);
	assert_non_null(strstr(h.client_msg, "mismatch"));
	SSL_free(client);
	upstream_tls_free(u);
}

static void test_wildcard_covers_exactly_one_label(void **state)
{
	struct fixture *f = *state;
	struct upstream_tls *u = new_upstream(f->ca, 0);

	assert_int_equal(connect_to(u, "a.wild.test", 443, f->good, NULL, NULL).client, 1);
	assert_int_equal(connect_to(u, "A.Wild.Test.", 443, f->good, NULL, NULL).client, 1);
	assert_int_equal(connect_to(u, "a.b.wild.test", 443, f->good, NULL, NULL).client,
			 -EKEYREJECTED);
	assert_int_equal(connect_to(u, "wild.test", 443, f->good, NULL, NULL).client,
			 -EKEYREJECTED);
	upstream_tls_free(u);
}

static void test_ip_literal_is_verified_against_the_ip_san_and_sends_no_sni(void **state)
{
	struct fixture *f = *state;
	struct upstream_tls *u = new_upstream(f->ca, 0);
	struct hs h = connect_to(u, "127.0.0.1", 443, f->good, NULL, NULL);

	assert_int_equal(h.client, 1);
	assert_true(seen_no_sni);
	h = connect_to(u, "127.0.0.2", 443, f->good, NULL, NULL);
	assert_int_equal(h.client, -EKEYREJECTED);
	assert_non_null(strstr(h.client_msg, "IP address mismatch"));
	upstream_tls_free(u);
}

static void test_sni_is_the_normalized_host_and_alpn_offers_http11_only(void **state)
{
	struct fixture *f = *state;
	struct upstream_tls *u = new_upstream(f->ca, 0);
	SSL *client = NULL;
	const unsigned char *sel = NULL;
	unsigned int sel_len = 0;
	struct hs h = connect_to(u, "UPSTREAM.test.", 443, f->good, &client, NULL);

	assert_int_equal(h.client, 1);
	assert_string_equal(seen_sni, "upstream.test");
	assert_int_equal(seen_alpn_len, 9);
	assert_memory_equal(seen_alpn, "\x08http/1.1", 9);
	SSL_get0_alpn_selected(client, &sel, &sel_len);
	assert_int_equal(sel_len, 8);
	SSL_free(client);
	upstream_tls_free(u);
}

static void test_server_limited_to_tls11_is_refused(void **state)
{
	struct fixture *f = *state;
	struct upstream_tls *u = new_upstream(f->ca, 0);
	struct hs h = connect_to(u, "upstream.test", 443, f->old, NULL, NULL);

	assert_true(h.client < 0 && h.client != -EAGAIN);
	assert_true(h.server < 0 && h.server != -EAGAIN);
	upstream_tls_free(u);
}

static void test_invalid_host_is_refused(void **state)
{
	struct fixture *f = *state;
	struct upstream_tls *u = new_upstream(f->ca, 0);
	SSL *ssl = NULL;

	assert_int_equal(upstream_tls_ssl_new(u, "*.wild.test", 11, 443, &ssl), -EINVAL);
	assert_int_equal(upstream_tls_ssl_new(u, "", 0, 443, &ssl), -EINVAL);
	assert_int_equal(upstream_tls_ssl_new(u, "a b", 3, 443, &ssl), -EINVAL);
	assert_null(ssl);
	upstream_tls_free(u);
}

static void test_missing_empty_or_garbage_ca_file_is_refused_naming_the_file(void **state)
{
	struct fixture *f = *state;
	struct upstream_tls *u = NULL;
	char path[PATH_MAX], err[512];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/missing.pem", f->dir);
	assert_int_equal(upstream_tls_new(&(struct upstream_tls_config){ .extra_ca_file = path },
					  &u, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, path));
	assert_int_equal(upstream_tls_new(&(struct upstream_tls_config){
		.extra_ca_file = f->empty }, &u, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, f->empty));
	snprintf(path, sizeof(path), "%s/garbage.pem", f->dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n", fp);
	fclose(fp);
	assert_true(upstream_tls_new(&(struct upstream_tls_config){ .extra_ca_file = path },
				     &u, err, sizeof(err)) < 0);
	assert_null(u);
	assert_int_equal(upstream_tls_new(&(struct upstream_tls_config){
		.session_cache_slots = UPSTREAM_TLS_SESSION_SLOTS_MAX + 1 }, &u, NULL, 0), -EINVAL);
	assert_int_equal(ERR_peek_error(), 0);
}

/* ---- resumption -------------------------------------------------------- */

/* Let the client read what the server sends after the handshake (TLS 1.3 tickets). */
static void exchange(SSL *client, SSL *server)
{
	char buf[4];

	assert_int_equal(SSL_write(server, "x", 1), 1);
	assert_int_equal(SSL_read(client, buf, sizeof(buf)), 1);
}

/*
 * Send close_notify, then free: OpenSSL marks the session of a connection
 * freed without it not resumable (RFC 5246 7.2.1), so a pool must close
 * connections with SSL_shutdown() to resume later.
 */
static void close_client(SSL *client)
{
	/* The peer may be gone already: the flag is set even if the alert is not sent. */
	(void)SSL_shutdown(client);
	ERR_clear_error();
	SSL_free(client);
}

static void test_second_connection_to_the_same_host_and_port_resumes(void **state)
{
	struct fixture *f = *state;
	struct upstream_tls *u = new_upstream(f->ca, 16);
	SSL *client = NULL, *server = NULL;
	struct hs h = connect_to(u, "upstream.test", 443, f->good, &client, &server);

	assert_int_equal(h.client, 1);
	assert_false(SSL_session_reused(client));
	exchange(client, server);
	close_client(client);
	SSL_free(server);

	h = connect_to(u, "upstream.test", 443, f->good, &client, NULL);
	assert_int_equal(h.client, 1);
	assert_true(SSL_session_reused(client));
	close_client(client);

	/* TLS 1.3: the ticket was used once and that connection read no new one. */
	h = connect_to(u, "upstream.test", 443, f->good, &client, NULL);
	assert_int_equal(h.client, 1);
	assert_false(SSL_session_reused(client));
	close_client(client);
	upstream_tls_free(u);
}

static void test_session_is_not_offered_to_another_host_or_port(void **state)
{
	struct fixture *f = *state;
	struct upstream_tls *u = new_upstream(f->ca, 16);
	SSL *client = NULL, *server = NULL;
	struct hs h = connect_to(u, "upstream.test", 443, f->good, &client, &server);

	assert_int_equal(h.client, 1);
	exchange(client, server);
	close_client(client);
	SSL_free(server);
	h = connect_to(u, "upstream.test", 8443, f->good, &client, NULL);
	assert_int_equal(h.client, 1);
	assert_false(SSL_session_reused(client));
	close_client(client);
	h = connect_to(u, "a.wild.test", 443, f->good, &client, NULL);
	assert_int_equal(h.client, 1);
	assert_false(SSL_session_reused(client));
	close_client(client);
	upstream_tls_free(u);
}

static void test_without_a_session_cache_nothing_resumes(void **state)
{
	struct fixture *f = *state;
	struct upstream_tls *u = new_upstream(f->ca, 0);
	SSL *client = NULL, *server = NULL;
	struct hs h = connect_to(u, "upstream.test", 443, f->good, &client, &server);

	assert_int_equal(h.client, 1);
	exchange(client, server);
	close_client(client);
	SSL_free(server);
	h = connect_to(u, "upstream.test", 443, f->good, &client, NULL);
	assert_int_equal(h.client, 1);
	assert_false(SSL_session_reused(client));
	close_client(client);
	upstream_tls_free(u);
}

static void test_tls12_session_is_resumed_more_than_once(void **state)
{
	struct fixture *f = *state;
	struct upstream_tls *u = new_upstream(f->ca, 16);
	SSL *client = NULL;
	struct hs h;

	assert_int_equal(SSL_CTX_set_max_proto_version(f->good, TLS1_2_VERSION), 1);
	h = connect_to(u, "upstream.test", 443, f->good, &client, NULL);
	assert_int_equal(h.client, 1);
	assert_int_equal(SSL_version(client), TLS1_2_VERSION);
	close_client(client);
	for (int i = 0; i < 2; i++) {
		h = connect_to(u, "upstream.test", 443, f->good, &client, NULL);
		assert_int_equal(h.client, 1);
		assert_true(SSL_session_reused(client));
		close_client(client);
	}
	assert_int_equal(SSL_CTX_set_max_proto_version(f->good, 0), 1);
	upstream_tls_free(u);
}

/* ---- ossl_err ---------------------------------------------------------- */

static void test_ossl_err_maps_the_oldest_specific_entry_and_empties_the_queue(void **state)
{
	char msg[OSSL_ERR_MSG_MAX];

	(void)state;
	ERR_raise(ERR_LIB_X509, X509_R_CERT_ALREADY_IN_HASH_TABLE);
	ERR_raise(ERR_LIB_SSL, SSL_R_CERTIFICATE_VERIFY_FAILED);
	ERR_raise(ERR_LIB_PEM, PEM_R_NO_START_LINE);
	assert_int_equal(ossl_err_drain(-EIO, msg, sizeof(msg)), -EKEYREJECTED);
	assert_non_null(strstr(msg, "certificate verify failed"));
	assert_non_null(strstr(msg, "; "));
	assert_int_equal(ERR_peek_error(), 0);

	ERR_raise(ERR_LIB_SYS, ENOENT);
	assert_int_equal(ossl_err_drain(-EIO, NULL, 0), -ENOENT);
	ERR_raise(ERR_LIB_EVP, ERR_R_MALLOC_FAILURE);
	assert_int_equal(ossl_err_drain(-EIO, NULL, 0), -ENOMEM);
	ERR_raise(ERR_LIB_PEM, PEM_R_NO_START_LINE);
	assert_int_equal(ossl_err_drain(-EIO, NULL, 0), -EBADMSG);
	ERR_raise(ERR_LIB_SSL, SSL_R_TLSV1_UNRECOGNIZED_NAME);
	assert_int_equal(ossl_err_drain(-EIO, NULL, 0), -ECONNABORTED);
	ERR_raise(ERR_LIB_X509, X509_R_CERT_ALREADY_IN_HASH_TABLE);
	assert_int_equal(ossl_err_drain(-EIO, NULL, 0), -EIO);
	assert_int_equal(ossl_err_drain(-EPROTO, msg, sizeof(msg)), -EPROTO);
	assert_string_equal(msg, "");
}

static void test_ossl_err_message_is_bounded_and_leaves_out_entry_data(void **state)
{
	char msg[OSSL_ERR_MSG_MAX], tiny[12], two[2];

	(void)state;
	ERR_raise_data(ERR_LIB_SSL, SSL_R_CERTIFICATE_VERIFY_FAILED, "secret=%s", "hunter2");
	assert_int_equal(ossl_err_drain(-EIO, msg, sizeof(msg)), -EKEYREJECTED);
	assert_null(strstr(msg, "hunter2"));
	for (int i = 0; i < 12; i++)
		ERR_raise(ERR_LIB_SSL, SSL_R_CERTIFICATE_VERIFY_FAILED);
	assert_int_equal(ossl_err_drain(-EIO, msg, sizeof(msg)), -EKEYREJECTED);
	assert_true(strlen(msg) < sizeof(msg));
	assert_string_equal(msg + strlen(msg) - 3, "...");
	ERR_raise(ERR_LIB_SSL, SSL_R_CERTIFICATE_VERIFY_FAILED);
	assert_int_equal(ossl_err_drain(-EIO, tiny, sizeof(tiny)), -EKEYREJECTED);
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
	assert_string_equal(tiny + sizeof(tiny) - 4, "...");
	ERR_raise(ERR_LIB_SSL, SSL_R_CERTIFICATE_VERIFY_FAILED);
	assert_int_equal(ossl_err_drain(-EIO, two, sizeof(two)), -EKEYREJECTED);
	assert_int_equal(strlen(two), 1);
	assert_int_equal(ERR_peek_error(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_server_signed_by_the_extra_ca_is_accepted),
		cmocka_unit_test(test_server_of_the_extra_ca_is_refused_without_it),
		cmocka_unit_test(test_self_signed_server_not_in_the_trust_store_is_refused),
		cmocka_unit_test(test_hostname_mismatch_is_refused),
		cmocka_unit_test(test_wildcard_covers_exactly_one_label),
		cmocka_unit_test(test_ip_literal_is_verified_against_the_ip_san_and_sends_no_sni),
		cmocka_unit_test(test_sni_is_the_normalized_host_and_alpn_offers_http11_only),
		cmocka_unit_test(test_server_limited_to_tls11_is_refused),
		cmocka_unit_test(test_invalid_host_is_refused),
		cmocka_unit_test(test_missing_empty_or_garbage_ca_file_is_refused_naming_the_file),
		cmocka_unit_test(test_second_connection_to_the_same_host_and_port_resumes),
		cmocka_unit_test(test_session_is_not_offered_to_another_host_or_port),
		cmocka_unit_test(test_without_a_session_cache_nothing_resumes),
		cmocka_unit_test(test_tls12_session_is_resumed_more_than_once),
		cmocka_unit_test(test_ossl_err_maps_the_oldest_specific_entry_and_empties_the_queue),
		cmocka_unit_test(test_ossl_err_message_is_bounded_and_leaves_out_entry_data),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
