#include "leaf_mint.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "ossl_err.h"

#define LM_CN_MAX 64 /* RFC 5280 ub-common-name */

/* TLS 1.2 suites: forward secret AEAD only, for our ECDSA leaf. */
static const char lm_tls12_ciphers[] =
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
	"ECDHE-ECDSA-CHACHA20-POLY1305";

/* ALPN wire format: length-prefixed protocol names. */
static const unsigned char lm_alpn[] = "\x08" LEAF_MINT_ALPN;

struct lm_entry {
	struct lm_entry *hnext;      /* bucket chain */
	struct lm_entry *prev, *next; /* recency list, mru first */
	uint64_t hash;
	X509 *cert;                  /* the cache's reference */
	time_t not_before, not_after;
	size_t name_len;
	char name[];                 /* normalized, NUL-terminated */
};

struct leaf_mint {
	const struct mitm_ca *ca;
	EVP_PKEY *key;               /* the leaf key (private) */
	EVP_PKEY *cert_pub;          /* its public half as put in leaves: lm_cert_pubkey_new */
	SSL_CTX *ctx;
	time_t (*now)(void);
	unsigned char hash_key[crypto_shorthash_KEYBYTES];
	size_t capacity;
	size_t n_buckets;            /* a power of two >= capacity */

	pthread_mutex_t lock;        /* guards everything below */
	struct lm_entry **buckets;
	struct lm_entry *mru, *lru;
	struct leaf_mint_stats stats;
};

/* Per-SSL state, hung on the SSL as ex_data and freed with it. */
struct lm_ssl {
	int kind; /* enum host_pattern_kind of mapped */
	char mapped[HOST_PATTERN_BUF];
	struct leaf_mint_sni_info info;
};

static pthread_once_t lm_index_once = PTHREAD_ONCE_INIT;
static int lm_ssl_index = -1;

static void lm_ssl_state_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
			      long argl, void *argp)
{
	(void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
	free(ptr);
}

static void lm_index_init(void)
{
	lm_ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, lm_ssl_state_free);
}

static time_t lm_time_now(void)
{
	return time(NULL);
}

/* ---- certificates ------------------------------------------------------ */

static int lm_add_san(X509 *x, const char *name, int kind, bool critical)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gen = GENERAL_NAME_new();
	ASN1_IA5STRING *dns = NULL;
	ASN1_OCTET_STRING *ip = NULL;
	int ok = 0;

	if (!gens || !gen)
		goto out;
	if (kind == HOST_PATTERN_IPV4 || kind == HOST_PATTERN_IPV6) {
		if (!(ip = a2i_IPADDRESS(name)))
			goto out;
		GENERAL_NAME_set0_value(gen, GEN_IPADD, ip);
	} else {
		if (!(dns = ASN1_IA5STRING_new()) || !ASN1_STRING_set(dns, name, -1)) {
			ASN1_IA5STRING_free(dns);
			goto out;
		}
		GENERAL_NAME_set0_value(gen, GEN_DNS, dns);
	}
	if (!sk_GENERAL_NAME_push(gens, gen))
		goto out;
	gen = NULL; /* owned by gens */
	ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, critical, X509V3_ADD_REPLACE) == 1;
out:
	GENERAL_NAME_free(gen);
	GENERAL_NAMES_free(gens);
	return ok ? 0 : -ENOMEM;
}

static int lm_add_leaf_extensions(X509 *x)
{
	BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new(); /* CA:FALSE */
	ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
	EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
	int ok;

	ok = bc && ku && eku &&
	     ASN1_BIT_STRING_set_bit(ku, 0, 1) && /* digitalSignature: ECDHE signing */
	     sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) &&
	     X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_REPLACE) == 1 &&
	     X509_add1_ext_i2d(x, NID_key_usage, ku, 1, X509V3_ADD_REPLACE) == 1 &&
	     X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 0, X509V3_ADD_REPLACE) == 1;
	BASIC_CONSTRAINTS_free(bc);
	ASN1_BIT_STRING_free(ku);
	sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free); /* nid2obj objects are static */
	return ok ? 0 : -ENOMEM;
}

/*
 * A new leaf for a normalized name, valid now - BACKDATE .. now + VALIDITY
 * clamped to the CA's validity.
 */
static int lm_mint(struct leaf_mint *lm, const char *name, int kind, time_t now,
		   X509 **ret_cert, time_t *ret_not_before, time_t *ret_not_after)
{
	time_t ca_nb = mitm_ca_not_before(lm->ca), ca_na = mitm_ca_not_after(lm->ca);
	time_t nb = now - LEAF_MINT_BACKDATE_S, na = now + LEAF_MINT_VALIDITY_S;
	size_t name_len = strlen(name);
	X509_NAME *subject = NULL;
	X509 *x = NULL;
	int r;

	if (nb < ca_nb)
		nb = ca_nb;
	if (na > ca_na)
		na = ca_na;
	if (now >= ca_na || na <= nb)
		return -EKEYEXPIRED;

	if (!(x = X509_new()) || !(subject = X509_NAME_new()) ||
	    !X509_set_version(x, X509_VERSION_3) ||
	    !ASN1_TIME_set(X509_getm_notBefore(x), nb) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), na) ||
	    !X509_set_pubkey(x, lm->cert_pub)) {
		r = ossl_err_drain(-ENOMEM, NULL, 0);
		goto out;
	}
	/* RFC 5280 4.2.1.6: with an empty subject the SAN MUST be critical. */
	if (name_len <= LM_CN_MAX &&
	    !X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_ASC,
					(const unsigned char *)name, -1, -1, 0)) {
		r = ossl_err_drain(-ENOMEM, NULL, 0);
		goto out;
	}
	if (!X509_set_subject_name(x, subject) ||
	    lm_add_san(x, name, kind, name_len > LM_CN_MAX) < 0 ||
	    lm_add_leaf_extensions(x) < 0) {
		r = ossl_err_drain(-ENOMEM, NULL, 0);
		goto out;
	}
	r = mitm_ca_sign(lm->ca, x);
	if (r < 0)
		goto out;
	*ret_cert = x;
	*ret_not_before = nb;
	*ret_not_after = na;
	x = NULL;
out:
	X509_NAME_free(subject);
	X509_free(x);
	return r;
}

/* ---- cache (everything below runs under lm->lock) ---------------------- */

static uint64_t lm_hash(const struct leaf_mint *lm, const char *name, size_t len)
{
	unsigned char out[crypto_shorthash_BYTES];
	uint64_t h;

	crypto_shorthash(out, (const unsigned char *)name, len, lm->hash_key);
	memcpy(&h, out, sizeof(h));
	return h;
}

static struct lm_entry **lm_bucket(struct leaf_mint *lm, uint64_t hash)
{
	return &lm->buckets[hash & (lm->n_buckets - 1)];
}

static struct lm_entry *lm_find(struct leaf_mint *lm, const char *name, size_t len,
				uint64_t hash)
{
	for (struct lm_entry *e = *lm_bucket(lm, hash); e; e = e->hnext)
		if (e->hash == hash && e->name_len == len && memcmp(e->name, name, len) == 0)
			return e;
	return NULL;
}

static void lm_list_unlink(struct leaf_mint *lm, struct lm_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		lm->mru = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		lm->lru = e->prev;
	e->prev = e->next = NULL;
}

static void lm_list_push_front(struct leaf_mint *lm, struct lm_entry *e)
{
	e->prev = NULL;
	e->next = lm->mru;
	if (lm->mru)
		lm->mru->prev = e;
	else
		lm->lru = e;
	lm->mru = e;
}

static void lm_touch(struct leaf_mint *lm, struct lm_entry *e)
{
	if (lm->mru == e)
		return;
	lm_list_unlink(lm, e);
	lm_list_push_front(lm, e);
}

static void lm_remove(struct leaf_mint *lm, struct lm_entry *e)
{
	struct lm_entry **pp = lm_bucket(lm, e->hash);

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lm_list_unlink(lm, e);
	X509_free(e->cert);
	free(e);
	lm->stats.entries--;
}

/* Can this cached leaf still be handed out at time now? */
static bool lm_is_fresh(const struct leaf_mint *lm, const struct lm_entry *e, time_t now)
{
	if (now < e->not_before || now >= e->not_after)
		return false;
	if (e->not_after - now > LEAF_MINT_REFRESH_S)
		return true;
	/* Capped at the CA's notAfter: a new leaf would not live longer. */
	return e->not_after >= mitm_ca_not_after(lm->ca);
}

/* Hand out (a new reference to) cert; a mint that lost a race replaces. */
static int lm_store(struct leaf_mint *lm, const char *name, size_t len, uint64_t hash,
		    X509 *cert, time_t nb, time_t na)
{
	struct lm_entry *e = lm_find(lm, name, len, hash);

	if (e) {
		X509_free(e->cert);
		e->cert = cert;
		e->not_before = nb;
		e->not_after = na;
		lm_touch(lm, e);
		return 0;
	}
	e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return -ENOMEM;
	if (lm->stats.entries >= lm->capacity) {
		lm_remove(lm, lm->lru);
		lm->stats.evictions++;
	}
	e->hash = hash;
	e->cert = cert;
	e->not_before = nb;
	e->not_after = na;
	e->name_len = len;
	memcpy(e->name, name, len + 1);
	e->hnext = *lm_bucket(lm, hash);
	*lm_bucket(lm, hash) = e;
	lm_list_push_front(lm, e);
	lm->stats.entries++;
	return 0;
}

/* ---- lookups ----------------------------------------------------------- */

/* The leaf for a normalized name: cached, else minted outside the lock. */
static int lm_get(struct leaf_mint *lm, const char *name, int kind, X509 **ret_cert)
{
	size_t len = strlen(name);
	uint64_t hash = lm_hash(lm, name, len);
	time_t now = lm->now(), nb = 0, na = 0;
	struct lm_entry *e;
	X509 *cert = NULL;
	int r;

	pthread_mutex_lock(&lm->lock);
	e = lm_find(lm, name, len, hash);
	if (e && lm_is_fresh(lm, e, now)) {
		lm_touch(lm, e);
		lm->stats.hits++;
		X509_up_ref(e->cert);
		*ret_cert = e->cert;
		pthread_mutex_unlock(&lm->lock);
		return 0;
	}
	pthread_mutex_unlock(&lm->lock);

	r = lm_mint(lm, name, kind, now, &cert, &nb, &na);
	if (r < 0)
		return r;

	pthread_mutex_lock(&lm->lock);
	lm->stats.misses++;
	r = lm_store(lm, name, len, hash, cert, nb, na);
	if (r == 0)
		X509_up_ref(cert); /* one for the cache, one for the caller */
	pthread_mutex_unlock(&lm->lock);
	if (r < 0) {
		X509_free(cert);
		return r;
	}
	*ret_cert = cert;
	return 0;
}

int leaf_mint_get_cert(struct leaf_mint *lm, const char *name, size_t len, X509 **ret_cert)
{
	char norm[HOST_PATTERN_BUF];
	int kind;

	if (!lm || !name || !ret_cert)
		return -EINVAL;
	kind = host_pattern_normalize_host(name, len, norm, NULL, 0);
	if (kind < 0)
		return -EINVAL;
	return lm_get(lm, norm, kind, ret_cert);
}

/* ---- TLS callbacks ----------------------------------------------------- */

static void lm_quote(char out[HOST_PATTERN_BUF], const char *s)
{
	size_t i;

	for (i = 0; i < HOST_PATTERN_MAX && s[i]; i++)
		out[i] = (s[i] > 0x20 && s[i] < 0x7f) ? s[i] : '?';
	out[i] = '\0';
}

static int lm_refuse(struct lm_ssl *st, enum leaf_mint_sni verdict, int *al, int alert)
{
	st->info.verdict = verdict;
	*al = alert;
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/*
 * Runs for every ClientHello, with or without SNI (OpenSSL calls it from
 * the server_name extension's final step either way).
 */
static int lm_servername_cb(SSL *ssl, int *al, void *arg)
{
	struct leaf_mint *lm = arg;
	struct lm_ssl *st = lm_ssl_index >= 0 ? SSL_get_ex_data(ssl, lm_ssl_index) : NULL;
	char norm[HOST_PATTERN_BUF];
	const char *sni;
	X509 *cert = NULL;
	int r;

	if (!st) {
		*al = SSL_AD_INTERNAL_ERROR; /* not from leaf_mint_ssl_new */
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	st->info.sni[0] = '\0';
	if (!sni) {
		st->info.verdict = LEAF_MINT_SNI_ABSENT;
	} else {
		lm_quote(st->info.sni, sni);
		if (host_pattern_normalize_host(sni, strlen(sni), norm, NULL, 0) < 0)
			return lm_refuse(st, LEAF_MINT_SNI_INVALID, al, SSL_AD_UNRECOGNIZED_NAME);
		if (strcmp(norm, st->mapped) != 0)
			return lm_refuse(st, LEAF_MINT_SNI_MISMATCH, al, SSL_AD_UNRECOGNIZED_NAME);
		st->info.verdict = LEAF_MINT_SNI_MATCH;
	}
	r = lm_get(lm, st->mapped, st->kind, &cert);
	if (r == 0 && SSL_use_cert_and_key(ssl, cert, lm->key, NULL, 1) != 1)
		r = ossl_err_drain(-ENOMEM, NULL, 0);
	X509_free(cert);
	if (r < 0) {
		st->info.mint_error = r;
		return lm_refuse(st, LEAF_MINT_SNI_MINT_FAILED, al, SSL_AD_INTERNAL_ERROR);
	}
	return SSL_TLSEXT_ERR_OK;
}

static int lm_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *out_len,
			  const unsigned char *in, unsigned int in_len, void *arg)
{
	unsigned char *selected = NULL;

	(void)ssl; (void)arg;
	/* OpenSSL has checked the list's framing before calling us. */
	if (SSL_select_next_proto(&selected, out_len, lm_alpn, sizeof(lm_alpn) - 1,
				  in, in_len) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK; /* see "ALPN" in leaf_mint.h */
	*out = selected;
	return SSL_TLSEXT_ERR_OK;
}

static int lm_server_ctx_new(struct leaf_mint *lm, SSL_CTX **ret_ctx)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx ||
	    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, lm_tls12_ciphers) != 1) {
		SSL_CTX_free(ctx);
		return ossl_err_drain(-ENOMEM, NULL, 0);
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
				 SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_tlsext_servername_callback(ctx, lm_servername_cb);
	SSL_CTX_set_tlsext_servername_arg(ctx, lm);
	SSL_CTX_set_alpn_select_cb(ctx, lm_alpn_select, NULL);
	*ret_ctx = ctx;
	return 0;
}

/*
 * The public key every leaf carries, as a legacy-type EVP_PKEY.  Why: in
 * OpenSSL 3.0, X509_set_pubkey() with a provider key (what
 * EVP_PKEY_Q_keygen makes) encodes it with an OSSL_ENCODER and decodes the
 * result again with an OSSL_DECODER, ~160 us per call, most of a mint;
 * with a key of a legacy type it takes the old pub_encode path, ~6 us
 * (measured on the CI machine).  Only public, non-deprecated calls are
 * used; if any fails, or the result is not the same key, the provider key
 * itself is used (correct, just slower).  Comparing once here also fills
 * OpenSSL's export cache while no other thread can see the key.
 */
static EVP_PKEY *lm_cert_pubkey_new(EVP_PKEY *key)
{
	EVP_PKEY *pub = EVP_PKEY_new();
	unsigned char *point = NULL;
	size_t point_len = 0;
	bool ok;

	ERR_set_mark();
	ok = pub && EVP_PKEY_set_type(pub, EVP_PKEY_EC) == 1 &&
	     EVP_PKEY_copy_parameters(pub, key) == 1 &&
	     (point_len = EVP_PKEY_get1_encoded_public_key(key, &point)) > 0 &&
	     EVP_PKEY_set1_encoded_public_key(pub, point, point_len) == 1 &&
	     EVP_PKEY_eq(pub, key) == 1;
	OPENSSL_free(point);
	ERR_pop_to_mark(); /* a failure here only means the slow path */
	if (!ok) {
		EVP_PKEY_free(pub);
		if (EVP_PKEY_up_ref(key) != 1)
			return NULL;
		return key;
	}
	return pub;
}

/* ---- lifecycle --------------------------------------------------------- */

int leaf_mint_new(const struct mitm_ca *ca, const struct leaf_mint_config *config,
		  struct leaf_mint **ret_lm)
{
	size_t capacity = config && config->cache_capacity ? config->cache_capacity
							    : LEAF_MINT_CACHE_DEFAULT;
	struct leaf_mint *lm;
	int r;

	if (!ca || !ret_lm || capacity > LEAF_MINT_CACHE_MAX)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	pthread_once(&lm_index_once, lm_index_init);
	if (lm_ssl_index < 0)
		return ossl_err_drain(-ENOMEM, NULL, 0);

	lm = calloc(1, sizeof(*lm));
	if (!lm)
		return -ENOMEM;
	lm->ca = ca;
	lm->now = config && config->now ? config->now : lm_time_now;
	lm->capacity = capacity;
	for (lm->n_buckets = 1; lm->n_buckets < capacity; lm->n_buckets <<= 1)
		;
	crypto_shorthash_keygen(lm->hash_key);
	r = pthread_mutex_init(&lm->lock, NULL);
	if (r != 0) {
		free(lm);
		return -r;
	}
	lm->buckets = calloc(lm->n_buckets, sizeof(*lm->buckets));
	if (!lm->buckets) {
		r = -ENOMEM;
		goto fail;
	}
	lm->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!lm->key) {
		r = ossl_err_drain(-EIO, NULL, 0);
		goto fail;
	}
	lm->cert_pub = lm_cert_pubkey_new(lm->key);
	if (!lm->cert_pub) {
		r = -ENOMEM;
		goto fail;
	}
	r = lm_server_ctx_new(lm, &lm->ctx);
	if (r < 0)
		goto fail;
	*ret_lm = lm;
	return 0;
fail:
	leaf_mint_free(lm);
	return r;
}

void leaf_mint_free(struct leaf_mint *lm)
{
	struct lm_entry *e, *next;

	if (!lm)
		return;
	for (e = lm->mru; e; e = next) {
		next = e->next;
		X509_free(e->cert);
		free(e);
	}
	free(lm->buckets);
	SSL_CTX_free(lm->ctx);
	EVP_PKEY_free(lm->cert_pub);
	EVP_PKEY_free(lm->key); /* OpenSSL clears the private key on free */
	sodium_memzero(lm->hash_key, sizeof(lm->hash_key));
	pthread_mutex_destroy(&lm->lock);
	free(lm);
}

SSL_CTX *leaf_mint_server_ctx(const struct leaf_mint *lm)
{
	return lm->ctx;
}

int leaf_mint_ssl_new(struct leaf_mint *lm, const char *mapped_name, size_t len,
		      SSL **ret_ssl)
{
	struct lm_ssl *st;
	SSL *ssl;

	if (!lm || !mapped_name || !ret_ssl)
		return -EINVAL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->kind = host_pattern_normalize_host(mapped_name, len, st->mapped, NULL, 0);
	if (st->kind < 0) {
		free(st);
		return -EINVAL;
	}
	ssl = SSL_new(lm->ctx);
	if (!ssl || SSL_set_ex_data(ssl, lm_ssl_index, st) != 1) {
		SSL_free(ssl);
		free(st);
		return ossl_err_drain(-ENOMEM, NULL, 0);
	}
	SSL_set_accept_state(ssl);
	*ret_ssl = ssl;
	return 0;
}

int leaf_mint_ssl_sni(const SSL *ssl, struct leaf_mint_sni_info *ret_info)
{
	const struct lm_ssl *st;

	if (!ssl || !ret_info)
		return -EINVAL;
	pthread_once(&lm_index_once, lm_index_init);
	if (lm_ssl_index < 0)
		return -EINVAL;
	st = SSL_get_ex_data(ssl, lm_ssl_index);
	if (!st)
		return -EINVAL;
	*ret_info = st->info;
	return 0;
}

const char *leaf_mint_sni_name(enum leaf_mint_sni verdict)
{
	switch (verdict) {
	case LEAF_MINT_SNI_PENDING: return "pending";
	case LEAF_MINT_SNI_MATCH: return "match";
	case LEAF_MINT_SNI_ABSENT: return "absent";
	case LEAF_MINT_SNI_MISMATCH: return "mismatch";
	case LEAF_MINT_SNI_INVALID: return "invalid";
	case LEAF_MINT_SNI_MINT_FAILED: return "mint_failed";
	}
	return "unknown";
}

void leaf_mint_get_stats(struct leaf_mint *lm, struct leaf_mint_stats *ret_stats)
{
	pthread_mutex_lock(&lm->lock);
	*ret_stats = lm->stats;
	pthread_mutex_unlock(&lm->lock);
}
