#include "upstream_tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "host_pattern.h"
#include "ossl_err.h"

/* "host|port": the identity a session was verified for. */
#define UT_KEY_MAX (HOST_PATTERN_BUF + 6)

static const unsigned char ut_alpn[] = "\x08" UPSTREAM_TLS_ALPN;

struct ut_slot {
	char key[UT_KEY_MAX];
	SSL_SESSION *session; /* our reference; NULL: empty */
};

struct upstream_tls {
	SSL_CTX *ctx;
	size_t n_slots; /* a power of two, or 0 */
	unsigned char hash_key[crypto_shorthash_KEYBYTES];
	pthread_mutex_t lock; /* guards slots */
	struct ut_slot *slots;
};

/* Per-SSL state (ex_data), freed with the SSL. */
struct ut_ssl {
	struct upstream_tls *u;
	char key[UT_KEY_MAX];
};

static pthread_once_t ut_index_once = PTHREAD_ONCE_INIT;
static int ut_ssl_index = -1;

static void ut_ssl_state_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
			      long argl, void *argp)
{
	(void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
	free(ptr);
}

static void ut_index_init(void)
{
	ut_ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, ut_ssl_state_free);
}

__attribute__((format(printf, 4, 5)))
static int ut_fail(char *err, size_t err_size, int r, const char *fmt, ...)
{
	va_list ap;

	if (err && err_size > 0) {
		va_start(ap, fmt);
		vsnprintf(err, err_size, fmt, ap);
		va_end(ap);
	}
	return r;
}

static struct ut_slot *ut_slot_for(struct upstream_tls *u, const char *key)
{
	unsigned char out[crypto_shorthash_BYTES];
	uint64_t h;

	crypto_shorthash(out, (const unsigned char *)key, strlen(key), u->hash_key);
	memcpy(&h, out, sizeof(h));
	return &u->slots[h & (u->n_slots - 1)];
}

/*
 * OpenSSL hands us each new session of a successful handshake (for TLS 1.3
 * when its ticket arrives, after the handshake).  Returning 1 keeps the
 * reference.
 */
static int ut_new_session(SSL *ssl, SSL_SESSION *session)
{
	struct ut_ssl *st = SSL_get_ex_data(ssl, ut_ssl_index);
	struct ut_slot *slot;
	SSL_SESSION *old;

	if (!st || SSL_get_verify_result(ssl) != X509_V_OK || !SSL_SESSION_is_resumable(session))
		return 0;
	pthread_mutex_lock(&st->u->lock);
	slot = ut_slot_for(st->u, st->key);
	old = slot->session;
	slot->session = session;
	memcpy(slot->key, st->key, sizeof(slot->key));
	pthread_mutex_unlock(&st->u->lock);
	SSL_SESSION_free(old);
	return 1;
}

/* A session for key (a new reference), or NULL. */
static SSL_SESSION *ut_take_session(struct upstream_tls *u, const char *key)
{
	struct ut_slot *slot;
	SSL_SESSION *s = NULL;

	pthread_mutex_lock(&u->lock);
	slot = ut_slot_for(u, key);
	if (slot->session && strcmp(slot->key, key) == 0) {
		s = slot->session;
		if (SSL_SESSION_get_protocol_version(s) == TLS1_3_VERSION)
			slot->session = NULL; /* single use: the reference moves to us */
		else
			SSL_SESSION_up_ref(s);
	}
	pthread_mutex_unlock(&u->lock);
	return s;
}

static int ut_ctx_new(const struct upstream_tls_config *cfg, bool resume, SSL_CTX **ret_ctx,
		      char *err, size_t err_size)
{
	char msg[OSSL_ERR_MSG_MAX];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	int r;

	if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_alpn_protos(ctx, ut_alpn, sizeof(ut_alpn) - 1) != 0 /* 0 is success */) {
		r = ossl_err_drain(-ENOMEM, msg, sizeof(msg));
		r = ut_fail(err, err_size, r, "upstream TLS context: %s", msg);
		goto fail;
	}
	if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		r = ossl_err_drain(-EIO, msg, sizeof(msg));
		r = ut_fail(err, err_size, r, "system trust store: %s", msg);
		goto fail;
	}
	if (cfg->extra_ca_file && SSL_CTX_load_verify_file(ctx, cfg->extra_ca_file) != 1) {
		r = ossl_err_drain(-EBADMSG, msg, sizeof(msg));
		r = ut_fail(err, err_size, r, "upstream CA file %s: no usable PEM certificate (%s)",
			    cfg->extra_ca_file, msg);
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (resume) {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
						    SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ctx, ut_new_session);
	} else {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	}
	*ret_ctx = ctx;
	return 0;
fail:
	SSL_CTX_free(ctx);
	return r;
}

int upstream_tls_new(const struct upstream_tls_config *config, struct upstream_tls **ret_u,
		     char *err, size_t err_size)
{
	static const struct upstream_tls_config defaults;
	const struct upstream_tls_config *cfg = config ? config : &defaults;
	struct upstream_tls *u;
	int r;

	if (!ret_u || cfg->session_cache_slots > UPSTREAM_TLS_SESSION_SLOTS_MAX)
		return ut_fail(err, err_size, -EINVAL,
			       "upstream TLS: session cache is limited to %u slots",
			       UPSTREAM_TLS_SESSION_SLOTS_MAX);
	if (sodium_init() < 0)
		return ut_fail(err, err_size, -EIO, "libsodium failed to initialise");
	pthread_once(&ut_index_once, ut_index_init);
	if (ut_ssl_index < 0)
		return ut_fail(err, err_size, ossl_err_drain(-ENOMEM, NULL, 0),
			       "upstream TLS: no SSL ex_data index");

	u = calloc(1, sizeof(*u));
	if (!u)
		return ut_fail(err, err_size, -ENOMEM, "upstream TLS: out of memory");
	r = pthread_mutex_init(&u->lock, NULL);
	if (r != 0) {
		free(u);
		return ut_fail(err, err_size, -r, "upstream TLS: mutex");
	}
	if (cfg->session_cache_slots > 0) {
		for (u->n_slots = 1; u->n_slots < cfg->session_cache_slots; u->n_slots <<= 1)
			;
		u->slots = calloc(u->n_slots, sizeof(*u->slots));
		if (!u->slots) {
			r = ut_fail(err, err_size, -ENOMEM, "upstream TLS: out of memory");
			goto fail;
		}
		crypto_shorthash_keygen(u->hash_key);
	}
	r = ut_ctx_new(cfg, u->n_slots > 0, &u->ctx, err, err_size);
	if (r < 0)
		goto fail;
	*ret_u = u;
	return 0;
fail:
	upstream_tls_free(u);
	return r;
}

void upstream_tls_free(struct upstream_tls *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->n_slots; i++)
		SSL_SESSION_free(u->slots[i].session);
	free(u->slots);
	SSL_CTX_free(u->ctx);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

SSL_CTX *upstream_tls_ctx(const struct upstream_tls *u)
{
	return u->ctx;
}

/* Name or address checks, SNI, and the session to offer. */
static int ut_configure(struct upstream_tls *u, SSL *ssl, const char *host, int kind,
			const char *key)
{
	SSL_SESSION *session;
	int ok;

	if (kind == HOST_PATTERN_IPV4 || kind == HOST_PATTERN_IPV6) {
		ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
	} else {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		ok = SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1;
	}
	if (!ok)
		return ossl_err_drain(-ENOMEM, NULL, 0);
	if (u->n_slots > 0 && (session = ut_take_session(u, key)) != NULL) {
		ok = SSL_set_session(ssl, session) == 1;
		SSL_SESSION_free(session);
		if (!ok)
			ERR_clear_error(); /* resumption is an optimisation: go on without */
	}
	return 0;
}

int upstream_tls_ssl_new(struct upstream_tls *u, const char *host, size_t len, uint16_t port,
			 SSL **ret_ssl)
{
	char norm[HOST_PATTERN_BUF];
	struct ut_ssl *st;
	SSL *ssl = NULL;
	int kind, r;

	if (!u || !host || !ret_ssl)
		return -EINVAL;
	kind = host_pattern_normalize_host(host, len, norm, NULL, 0);
	if (kind < 0)
		return -EINVAL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->u = u;
	snprintf(st->key, sizeof(st->key), "%s|%u", norm, (unsigned)port);
	ssl = SSL_new(u->ctx);
	if (!ssl || SSL_set_ex_data(ssl, ut_ssl_index, st) != 1) {
		free(st);
		r = ossl_err_drain(-ENOMEM, NULL, 0);
		goto fail;
	}
	r = ut_configure(u, ssl, norm, kind, st->key);
	if (r < 0)
		goto fail;
	SSL_set_connect_state(ssl);
	*ret_ssl = ssl;
	return 0;
fail:
	SSL_free(ssl); /* frees st once attached */
	return r;
}
