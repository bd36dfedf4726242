#include "vault.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"

_Static_assert(VAULT_NAME_MAX == STORE_NAME_MAX && VAULT_ENV_MAX == STORE_NAME_MAX &&
	       VAULT_ID_MAX == STORE_ID_MAX && VAULT_HOSTS_MAX == STORE_HOSTS_MAX &&
	       VAULT_PLACEHOLDER_LEN == STORE_PLACEHOLDER_LEN, "vault and store limits agree");
_Static_assert(STORE_NONCE_BYTES == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce");
_Static_assert(STORE_CIPHERTEXT_MAX ==
	       VAULT_VALUE_MAX + crypto_aead_xchacha20poly1305_ietf_ABYTES, "ciphertext");
_Static_assert(MASTER_KEY_SUBKEY_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES &&
	       MASTER_KEY_SUBKEY_BYTES == crypto_auth_KEYBYTES, "subkey sizes");

/* Bounds what one sandbox's resolution may pull from the store. */
#define VAULT_CANDIDATES_MAX ((size_t)SCOPE_WALK__COUNT * VAULT_SECRETS_PER_SCOPE_MAX)
/* Messages quote at most this much of an offending name. */
#define VAULT_QUOTE_MAX 64
/* A fixed string MAC'd under the key-check subkey: proves "same key" without
 * storing anything derived from the value subkey. */
static const char vault_key_check_label[] = "miosa vault key check v1";
static const char vault_key_check_meta[] = "vault_key_check";

struct vault {
	struct store *st;
	unsigned char *value_key; /* sodium_malloc'd, read-only */
	char err[VAULT_ERR_MAX];
};

/* ---- errors ------------------------------------------------------------ */

__attribute__((format(printf, 3, 4)))
static int vault_fail(struct vault *v, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v->err, sizeof(v->err), fmt, ap);
	va_end(ap);
	return r;
}

/* Prefix the store's message with what the vault was doing. */
static int vault_store_fail(struct vault *v, int r, const char *what)
{
	return vault_fail(v, r, "%s: %s", what, store_errmsg(v->st));
}

/* Printable-only, truncated copy of a caller string for messages. */
static const char *vault_quote(const char *s, char buf[VAULT_QUOTE_MAX + 4])
{
	size_t i;

	for (i = 0; s && s[i] && i < VAULT_QUOTE_MAX; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	strcpy(buf + i, s && s[i] ? "..." : "");
	return buf;
}

static int64_t vault_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- validation -------------------------------------------------------- */

/* Ids: 1..VAULT_ID_MAX bytes of 0x21..0x7e. */
static int vault_check_id(struct vault *v, const char *what, const char *s)
{
	char q[VAULT_QUOTE_MAX + 4];
	size_t len;

	if (!s || !s[0])
		return vault_fail(v, -EINVAL, "%s is missing", what);
	len = strnlen(s, VAULT_ID_MAX + 1);
	if (len > VAULT_ID_MAX)
		return vault_fail(v, -EINVAL, "%s '%s' is longer than %d bytes", what,
				  vault_quote(s, q), VAULT_ID_MAX);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch < 0x21 || ch > 0x7e)
			return vault_fail(v, -EINVAL,
					  "%s '%s' has byte 0x%02x at offset %zu; ids are printable ASCII without spaces",
					  what, vault_quote(s, q), ch, i);
	}
	return 0;
}

static int vault_check_optional_id(struct vault *v, const char *what, const char *s)
{
	return (s && s[0]) ? vault_check_id(v, what, s) : 0;
}

static bool vault_is_alnum(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

static int vault_check_name(struct vault *v, const char *name)
{
	char q[VAULT_QUOTE_MAX + 4];
	size_t len;

	if (!name || !name[0])
		return vault_fail(v, -EINVAL, "secret name is missing");
	len = strnlen(name, VAULT_NAME_MAX + 1);
	if (len > VAULT_NAME_MAX)
		return vault_fail(v, -EINVAL, "secret name '%s' is longer than %d bytes",
				  vault_quote(name, q), VAULT_NAME_MAX);
	for (size_t i = 0; i < len; i++)
		if (!vault_is_alnum(name[i]) && !strchr("_.-", name[i]))
			return vault_fail(v, -EINVAL,
					  "secret name '%s' has '%c' at offset %zu; names use A-Z a-z 0-9 _ . -",
					  vault_quote(name, q), (name[i] >= 0x20 && name[i] < 0x7f) ? name[i] : '?', i);
	return 0;
}

static int vault_check_env(struct vault *v, const char *env)
{
	char q[VAULT_QUOTE_MAX + 4];
	size_t len;

	if (!env || !env[0])
		return vault_fail(v, -EINVAL, "expose_as_env is missing");
	len = strnlen(env, VAULT_ENV_MAX + 1);
	if (len > VAULT_ENV_MAX)
		return vault_fail(v, -EINVAL, "expose_as_env '%s' is longer than %d bytes",
				  vault_quote(env, q), VAULT_ENV_MAX);
	for (size_t i = 0; i < len; i++) {
		bool ok = env[i] == '_' || vault_is_alnum(env[i]);

		if (!ok || (i == 0 && env[i] >= '0' && env[i] <= '9'))
			return vault_fail(v, -EINVAL,
					  "expose_as_env '%s' is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
					  vault_quote(env, q));
	}
	return 0;
}

static const char *vault_byte_class(unsigned char ch)
{
	switch (ch) {
	case '\0': return "NUL";
	case '\r': return "a carriage return (CR)";
	case '\n': return "a line feed (LF)";
	default:   return "a control character";
	}
}

/*
 * Values end up in HTTP field values (RFC 9110 §5.5: field-vchar, SP, HTAB,
 * obs-text), so anything else could split or corrupt the request it is
 * swapped into.  The message names the offset, never the bytes around it.
 */
static int vault_check_value(struct vault *v, const uint8_t *value, size_t len)
{
	if (!value || len == 0)
		return vault_fail(v, -EINVAL, "value is empty");
	if (len > VAULT_VALUE_MAX)
		return vault_fail(v, -EINVAL, "value is %zu bytes; the limit is %d", len,
				  VAULT_VALUE_MAX);
	for (size_t i = 0; i < len; i++) {
		uint8_t ch = value[i];

		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return vault_fail(v, -EINVAL,
					  "value byte %zu is %s (0x%02x); values are sent in HTTP headers and must not contain NUL, CR, LF or other control characters",
					  i, ch == 0x7f ? "DEL" : vault_byte_class(ch), ch);
	}
	return 0;
}

/* Check (tenant, scope, scope_id); resolves the tenant scope's implicit scope_id. */
static int vault_check_scope(struct vault *v, const char *tenant_id, enum scope_walk_scope scope,
			     const char *scope_id, const char **ret_scope_id)
{
	char q[VAULT_QUOTE_MAX + 4];
	int r;

	if ((r = vault_check_id(v, "tenant_id", tenant_id)) != 0)
		return r;
	if (!scope_walk_scope_name(scope))
		return vault_fail(v, -EINVAL, "scope %d is not a scope", (int)scope);
	if (scope == SCOPE_WALK_TENANT && (!scope_id || !scope_id[0]))
		scope_id = tenant_id;
	if (scope == SCOPE_WALK_TENANT && strcmp(scope_id, tenant_id) != 0)
		return vault_fail(v, -EINVAL, "scope tenant: scope_id '%s' must be the tenant id",
				  vault_quote(scope_id, q));
	if ((r = vault_check_id(v, "scope_id", scope_id)) != 0)
		return r;
	*ret_scope_id = scope_id;
	return 0;
}

static int vault_check_ref(struct vault *v, const struct vault_secret_ref *ref,
			   const char **ret_scope_id)
{
	const char *scope_id = NULL;
	int r;

	if (!ref)
		return vault_fail(v, -EINVAL, "no secret given");
	if ((r = vault_check_scope(v, ref->tenant_id, ref->scope, ref->scope_id, &scope_id)) != 0 ||
	    (r = vault_check_name(v, ref->name)) != 0)
		return r;
	*ret_scope_id = scope_id;
	return 0;
}

static int vault_check_attribution(struct vault *v, const struct scope_walk_attribution *a)
{
	int r;

	if (!a)
		return vault_fail(v, -EINVAL, "no sandbox attribution given");
	if ((r = vault_check_id(v, "sandbox_id", a->sandbox_id)) != 0 ||
	    (r = vault_check_id(v, "tenant_id", a->tenant_id)) != 0 ||
	    (r = vault_check_optional_id(v, "user_id", a->user_id)) != 0 ||
	    (r = vault_check_optional_id(v, "external_user_id", a->external_user_id)) != 0 ||
	    (r = vault_check_optional_id(v, "external_workspace_id", a->external_workspace_id)) != 0 ||
	    (r = vault_check_optional_id(v, "workspace_id", a->workspace_id)) != 0)
		return r;
	return 0;
}

/* Normalize spec hosts into a new array, dropping duplicates. */
static int vault_normalize_hosts(struct vault *v, const char *const *in, size_t n_in,
				 char (**ret_hosts)[HOST_PATTERN_BUF], size_t *ret_n)
{
	char (*hosts)[HOST_PATTERN_BUF] = NULL;
	char msg[VAULT_ERR_MAX];
	size_t n = 0;
	int r = 0;

	if (n_in > VAULT_HOSTS_MAX)
		return vault_fail(v, -EINVAL, "%zu allowed hosts; the limit is %d", n_in,
				  VAULT_HOSTS_MAX);
	if (n_in > 0 && !in)
		return vault_fail(v, -EINVAL, "allowed hosts missing");
	if (n_in > 0 && !(hosts = calloc(n_in, sizeof(*hosts))))
		return vault_fail(v, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n_in; i++) {
		bool dup = false;

		if (!in[i] || (r = host_pattern_normalize(in[i], strnlen(in[i], HOST_PATTERN_BUF + 1),
							  hosts[n], msg, sizeof(msg))) < 0) {
			r = vault_fail(v, -EINVAL, "%s", in[i] ? msg : "allowed host is NULL");
			goto out;
		}
		for (size_t j = 0; j < n && !dup; j++)
			dup = strcmp(hosts[j], hosts[n]) == 0;
		if (!dup)
			n++;
	}
	*ret_hosts = hosts;
	*ret_n = n;
	hosts = NULL;
	r = 0;
out:
	free(hosts);
	return r;
}

/* ---- placeholders ------------------------------------------------------ */

bool vault_placeholder_is_valid(const char *s, size_t len)
{
	if (!s || len != VAULT_PLACEHOLDER_LEN ||
	    memcmp(s, VAULT_PLACEHOLDER_PREFIX, VAULT_PLACEHOLDER_PREFIX_LEN) != 0)
		return false;
	for (size_t i = VAULT_PLACEHOLDER_PREFIX_LEN; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* 128 random bits; nothing about the secret goes in. */
static void vault_mint_placeholder(char out[VAULT_PLACEHOLDER_LEN + 1])
{
	unsigned char rnd[VAULT_PLACEHOLDER_HEX_LEN / 2];

	randombytes_buf(rnd, sizeof(rnd));
	memcpy(out, VAULT_PLACEHOLDER_PREFIX, VAULT_PLACEHOLDER_PREFIX_LEN);
	sodium_bin2hex(out + VAULT_PLACEHOLDER_PREFIX_LEN, VAULT_PLACEHOLDER_HEX_LEN + 1,
		       rnd, sizeof(rnd));
	sodium_memzero(rnd, sizeof(rnd));
}

/* Find or mint the binding (sandbox, secret); inside a write transaction. */
static int vault_ensure_binding(struct vault *v, const char *sandbox_id, int64_t secret_id,
				char ret_placeholder[VAULT_PLACEHOLDER_LEN + 1])
{
	struct store_binding b;
	int64_t id;
	int r;

	r = store_binding_find(v->st, sandbox_id, secret_id, &b);
	if (r == 0)
		goto found;
	if (r != -ENOENT)
		return vault_store_fail(v, r, "find binding");
	memset(&b, 0, sizeof(b));
	snprintf(b.sandbox_id, sizeof(b.sandbox_id), "%s", sandbox_id);
	b.secret_id = secret_id;
	b.created_at_us = vault_now_us();
	/* A collision of 128 random bits will not happen; retrying costs
	 * nothing and keeps the unique index a guarantee, not a hope. */
	for (int attempt = 0; attempt < 3; attempt++) {
		vault_mint_placeholder(b.placeholder);
		r = store_binding_insert(v->st, &b, &id);
		if (r != -EEXIST)
			break;
	}
	if (r != 0)
		return vault_store_fail(v, r, "mint placeholder");
found:
	/* It goes into a guest's environment: never trust the row blindly. */
	if (!vault_placeholder_is_valid(b.placeholder, strlen(b.placeholder)))
		return vault_fail(v, -EUCLEAN, "binding %lld has a malformed placeholder",
				  (long long)b.id);
	memcpy(ret_placeholder, b.placeholder, VAULT_PLACEHOLDER_LEN + 1);
	return 0;
}

/* ---- sealing ----------------------------------------------------------- */

static int vault_ad_bytes(crypto_generichash_state *h, const void *p, size_t len)
{
	return crypto_generichash_update(h, p, len);
}

/* Length-prefixed, so no two field sequences hash alike. */
static int vault_ad_str(crypto_generichash_state *h, const char *s)
{
	size_t len = strlen(s);
	uint8_t be[2] = { (uint8_t)(len >> 8), (uint8_t)len };

	return vault_ad_bytes(h, be, sizeof(be)) | vault_ad_bytes(h, s, len);
}

static int vault_ad_u64(crypto_generichash_state *h, uint64_t x)
{
	uint8_t be[8];

	for (int i = 0; i < 8; i++)
		be[i] = (uint8_t)(x >> (56 - 8 * i));
	return vault_ad_bytes(h, be, sizeof(be));
}

/*
 * Associated data = BLAKE2b-256 over every column that says what the value
 * is and where it may go.  Hashing keeps the AD fixed-size whatever the host
 * list holds.  Timestamps stay out: they are informational.
 */
static int vault_ad(const struct store_secret *row, uint8_t ad[crypto_generichash_BYTES])
{
	static const char domain[] = "miosa/vault/secret/v1";
	crypto_generichash_state h;
	int r;

	r = crypto_generichash_init(&h, NULL, 0, crypto_generichash_BYTES);
	r |= vault_ad_str(&h, domain);
	r |= vault_ad_u64(&h, (uint64_t)row->id);
	r |= vault_ad_u64(&h, row->version);
	r |= vault_ad_str(&h, row->tenant_id);
	r |= vault_ad_u64(&h, (uint64_t)row->scope);
	r |= vault_ad_str(&h, row->scope_id);
	r |= vault_ad_str(&h, row->name);
	r |= vault_ad_str(&h, row->expose_as_env);
	r |= vault_ad_u64(&h, row->allow_cleartext);
	r |= vault_ad_u64(&h, row->n_hosts);
	for (size_t i = 0; i < row->n_hosts; i++)
		r |= vault_ad_str(&h, row->hosts[i]);
	r |= crypto_generichash_final(&h, ad, crypto_generichash_BYTES);
	return r == 0 ? 0 : -EIO;
}

/* Seal value into row (fresh nonce, new ciphertext); row's columns are final. */
static int vault_seal(struct vault *v, struct store_secret *row, const uint8_t *value,
		      size_t len)
{
	uint8_t ad[crypto_generichash_BYTES];
	unsigned long long ct_len;
	uint8_t *ct;

	if (vault_ad(row, ad) != 0)
		return vault_fail(v, -EIO, "cannot compute associated data");
	ct = malloc(len + crypto_aead_xchacha20poly1305_ietf_ABYTES);
	if (!ct)
		return vault_fail(v, -ENOMEM, "out of memory");
	randombytes_buf(row->nonce, sizeof(row->nonce));
	crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &ct_len, value, len, ad, sizeof(ad),
						   NULL, row->nonce, v->value_key);
	free(row->ciphertext);
	row->ciphertext = ct;
	row->ciphertext_len = (size_t)ct_len;
	return 0;
}

/* Open row's ciphertext into new sodium_malloc'd, read-only memory. */
static int vault_unseal(struct vault *v, const struct store_secret *row,
			unsigned char **ret_value, size_t *ret_len)
{
	const size_t abytes = crypto_aead_xchacha20poly1305_ietf_ABYTES;
	uint8_t ad[crypto_generichash_BYTES];
	unsigned long long len = 0;
	unsigned char *pt;
	char q[VAULT_QUOTE_MAX + 4];

	if (!row->ciphertext || row->ciphertext_len <= abytes ||
	    row->ciphertext_len > VAULT_VALUE_MAX + abytes || vault_ad(row, ad) != 0)
		goto bad;
	pt = sodium_malloc(row->ciphertext_len - abytes);
	if (!pt)
		return vault_fail(v, -ENOMEM, "out of secure memory");
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &len, NULL, row->ciphertext,
						       row->ciphertext_len, ad, sizeof(ad),
						       row->nonce, v->value_key) != 0) {
		sodium_free(pt); /* wipes whatever was written */
		goto bad;
	}
	(void)sodium_mprotect_readonly(pt); /* hardening only; the value is correct either way */
	*ret_value = pt;
	*ret_len = (size_t)len;
	return 0;
bad:
	return vault_fail(v, -EBADMSG,
			  "secret '%s' (id %lld, version %u) failed authentication: its row or ciphertext was altered, or state.db was sealed with another master key",
			  vault_quote(row->name, q), (long long)row->id, row->version);
}

/* ---- open / close ------------------------------------------------------ */

/* First open stores MAC(label); later opens verify it under this key. */
static int vault_key_check(struct vault *v, const struct master_key *key)
{
	uint8_t mac[crypto_auth_BYTES], stored[STORE_META_VALUE_MAX];
	unsigned char *ck = NULL;
	size_t n = 0;
	int r;

	if ((r = master_key_derive(key, MASTER_KEY_PURPOSE_KEY_CHECK, &ck)) != 0)
		return vault_fail(v, r, "cannot derive the key-check subkey");
	crypto_auth(mac, (const unsigned char *)vault_key_check_label,
		    sizeof(vault_key_check_label) - 1, ck);
	if ((r = store_begin_write(v->st)) != 0) {
		r = vault_store_fail(v, r, "key check");
		goto out;
	}
	r = store_meta_get(v->st, vault_key_check_meta, stored, sizeof(stored), &n);
	if (r == -ENOENT)
		r = store_meta_put(v->st, vault_key_check_meta, mac, sizeof(mac));
	else if (r == 0 && (n != sizeof(mac) || sodium_memcmp(stored, mac, sizeof(mac)) != 0))
		r = vault_fail(v, -EKEYREJECTED,
			       "the master key does not match state.db (its secrets were sealed with another key)");
	if (r == 0)
		r = store_commit(v->st);
	if (r != 0 && r != -EKEYREJECTED)
		r = vault_store_fail(v, r, "key check");
	if (r != 0)
		store_rollback(v->st);
out:
	master_key_subkey_free(ck);
	return r;
}

int vault_open(const char *state_dir, const struct master_key *key, struct vault **ret_vault,
	       char *err, size_t err_size)
{
	struct vault *v = NULL;
	int r;

	if (!key || !ret_vault) {
		r = -EINVAL;
		if (err && err_size)
			snprintf(err, err_size, "vault: no master key given");
		return r;
	}
	if (sodium_init() < 0) {
		if (err && err_size)
			snprintf(err, err_size, "vault: libsodium failed to initialise");
		return -EIO;
	}
	if (!(v = calloc(1, sizeof(*v)))) {
		if (err && err_size)
			snprintf(err, err_size, "vault: out of memory");
		return -ENOMEM;
	}
	if ((r = store_open(state_dir, &v->st, err, err_size)) != 0)
		goto out;
	if ((r = master_key_derive(key, MASTER_KEY_PURPOSE_SECRET_VALUES, &v->value_key)) != 0) {
		vault_fail(v, r, "cannot derive the secret-value subkey");
		goto fail;
	}
	if ((r = vault_key_check(v, key)) != 0)
		goto fail;
	*ret_vault = v;
	v = NULL;
	goto out;
fail:
	if (err && err_size)
		snprintf(err, err_size, "%s", v->err);
out:
	vault_close(v);
	return r;
}

void vault_close(struct vault *v)
{
	if (!v)
		return;
	store_close(v->st);
	master_key_subkey_free(v->value_key);
	free(v);
}

const char *vault_errmsg(const struct vault *v)
{
	return v ? v->err : "no vault";
}

int vault_check_idle(struct vault *v, bool reset)
{
	int r = store_check_idle(v->st);

	if (r == 0)
		return 0;
	vault_fail(v, r, "%s", store_errmsg(v->st));
	if (reset)
		store_force_idle(v->st);
	return r;
}

/* ---- set / rotate / delete --------------------------------------------- */

static int vault_check_spec(struct vault *v, const struct vault_secret_spec *spec,
			    const char **ret_scope_id)
{
	int r;

	if (!spec)
		return vault_fail(v, -EINVAL, "no secret given");
	if ((r = vault_check_ref(v, &spec->ref, ret_scope_id)) != 0 ||
	    (r = vault_check_env(v, spec->expose_as_env)) != 0 ||
	    (r = vault_check_value(v, spec->value, spec->value_len)) != 0)
		return r;
	/* M18 / troubleshooting #14: the API layer turns -EPERM into 403. */
	if (spec->ref.scope == SCOPE_WALK_EXTERNAL_USER && !spec->tenant_allows_end_user_credentials)
		return vault_fail(v, -EPERM,
				  "scope external_user is disabled for this tenant (setting \"allow end-user-scoped credentials\" is off)");
	return 0;
}

/* Copy the key columns of a new row. */
static void vault_row_init(struct store_secret *row, const struct vault_secret_ref *ref,
			   const char *scope_id)
{
	int64_t now = vault_now_us();

	memset(row, 0, sizeof(*row));
	snprintf(row->tenant_id, sizeof(row->tenant_id), "%s", ref->tenant_id);
	row->scope = ref->scope;
	snprintf(row->scope_id, sizeof(row->scope_id), "%s", scope_id);
	snprintf(row->name, sizeof(row->name), "%s", ref->name);
	row->version = 1;
	row->created_at_us = now;
}

/* The env name must not belong to another secret at the same scope. */
static int vault_check_env_free(struct vault *v, const struct store_secret *row,
				bool exists, const char *env)
{
	struct store_secret other;
	char q[VAULT_QUOTE_MAX + 4];
	int r;

	r = store_secret_find_env(v->st, row->tenant_id, row->scope, row->scope_id, env, &other);
	if (r == -ENOENT)
		return 0;
	if (r != 0)
		return vault_store_fail(v, r, "check expose_as_env");
	if (!exists || other.id != row->id)
		r = vault_fail(v, -EEXIST,
			       "expose_as_env %s is already used by secret '%s' at scope %s '%s'",
			       env, other.name, scope_walk_scope_name(row->scope),
			       vault_quote(row->scope_id, q));
	store_secret_clear(&other);
	return r;
}

/* Load the row to replace, or start a new one (checking the scope cap). */
static int vault_load_or_new(struct vault *v, const struct vault_secret_ref *ref,
			     const char *scope_id, struct store_secret *row, bool *ret_exists)
{
	size_t count = 0;
	int r;

	r = store_secret_find(v->st, ref->tenant_id, ref->scope, scope_id, ref->name, 0, row);
	if (r == 0) {
		if (row->version == UINT32_MAX)
			return vault_fail(v, -EOVERFLOW, "secret '%s' has run out of versions",
					  row->name);
		row->version++;
		row->rotated_at_us = vault_now_us();
		*ret_exists = true;
		return 0;
	}
	if (r != -ENOENT)
		return vault_store_fail(v, r, "find secret");
	if ((r = store_secret_count(v->st, ref->tenant_id, ref->scope, scope_id, &count)) != 0)
		return vault_store_fail(v, r, "count secrets");
	if (count >= VAULT_SECRETS_PER_SCOPE_MAX)
		return vault_fail(v, -ENOSPC, "scope %s already holds %d secrets",
				  scope_walk_scope_name(ref->scope), VAULT_SECRETS_PER_SCOPE_MAX);
	vault_row_init(row, ref, scope_id);
	*ret_exists = false;
	return 0;
}

/*
 * Write row with value sealed under its final id: a new row is inserted
 * first (empty ciphertext, same transaction) because the id is in the AD.
 */
static int vault_write_sealed(struct vault *v, struct store_secret *row, bool exists,
			      const uint8_t *value, size_t len)
{
	int r;

	if (!exists && (r = store_secret_insert(v->st, row, &row->id)) != 0)
		return r == -EEXIST ? vault_store_fail(v, r, "secret already exists")
				    : vault_store_fail(v, r, "insert secret");
	if ((r = vault_seal(v, row, value, len)) != 0)
		return r;
	if ((r = store_secret_update(v->st, row)) != 0)
		return vault_store_fail(v, r, "write secret");
	return 0;
}

int vault_secret_set(struct vault *v, const struct vault_secret_spec *spec,
		     struct vault_set_result *ret_result)
{
	struct vault_set_result res;
	struct store_secret row;
	char (*hosts)[HOST_PATTERN_BUF] = NULL;
	const char *scope_id = NULL;
	size_t n_hosts = 0;
	bool exists = false, txn = false;
	int r;

	memset(&row, 0, sizeof(row));
	memset(&res, 0, sizeof(res));
	if ((r = vault_check_spec(v, spec, &scope_id)) != 0 ||
	    (r = vault_normalize_hosts(v, spec->hosts, spec->n_hosts, &hosts, &n_hosts)) != 0)
		goto out;
	if ((r = store_begin_write(v->st)) != 0) {
		r = vault_store_fail(v, r, "set secret");
		goto out;
	}
	txn = true;
	if ((r = vault_load_or_new(v, &spec->ref, scope_id, &row, &exists)) != 0 ||
	    (r = vault_check_env_free(v, &row, exists, spec->expose_as_env)) != 0)
		goto out;
	snprintf(row.expose_as_env, sizeof(row.expose_as_env), "%s", spec->expose_as_env);
	row.allow_cleartext = spec->allow_cleartext;
	free(row.hosts);
	row.hosts = hosts;
	row.n_hosts = n_hosts;
	hosts = NULL;
	if ((r = vault_write_sealed(v, &row, exists, spec->value, spec->value_len)) != 0)
		goto out;
	if (row.scope == SCOPE_WALK_SANDBOX &&
	    (r = vault_ensure_binding(v, row.scope_id, row.id, res.placeholder)) != 0)
		goto out;
	if ((r = store_commit(v->st)) != 0) {
		r = vault_store_fail(v, r, "commit secret");
		goto out;
	}
	txn = false;
	res.created = !exists;
	res.version = row.version;
	if (ret_result)
		*ret_result = res;
out:
	if (txn)
		store_rollback(v->st);
	store_secret_clear(&row);
	free(hosts);
	return r;
}

int vault_secret_rotate(struct vault *v, const struct vault_secret_ref *ref,
			const uint8_t *value, size_t value_len, uint32_t *ret_version)
{
	struct store_secret row;
	const char *scope_id = NULL;
	bool txn = false;
	int r;

	memset(&row, 0, sizeof(row));
	if ((r = vault_check_ref(v, ref, &scope_id)) != 0 ||
	    (r = vault_check_value(v, value, value_len)) != 0)
		goto out;
	if ((r = store_begin_write(v->st)) != 0) {
		r = vault_store_fail(v, r, "rotate secret");
		goto out;
	}
	txn = true;
	r = store_secret_find(v->st, ref->tenant_id, ref->scope, scope_id, ref->name, 0, &row);
	if (r != 0) {
		r = vault_store_fail(v, r, "rotate secret");
		goto out;
	}
	if (row.version == UINT32_MAX) {
		r = vault_fail(v, -EOVERFLOW, "secret '%s' has run out of versions", row.name);
		goto out;
	}
	row.version++;
	row.rotated_at_us = vault_now_us();
	if ((r = vault_write_sealed(v, &row, true, value, value_len)) != 0)
		goto out;
	if ((r = store_commit(v->st)) != 0) {
		r = vault_store_fail(v, r, "commit rotation");
		goto out;
	}
	txn = false;
	if (ret_version)
		*ret_version = row.version;
out:
	if (txn)
		store_rollback(v->st);
	store_secret_clear(&row);
	return r;
}

int vault_secret_delete(struct vault *v, const struct vault_secret_ref *ref)
{
	struct store_secret row;
	const char *scope_id = NULL;
	bool txn = false;
	int r;

	memset(&row, 0, sizeof(row));
	if ((r = vault_check_ref(v, ref, &scope_id)) != 0)
		goto out;
	if ((r = store_begin_write(v->st)) != 0) {
		r = vault_store_fail(v, r, "delete secret");
		goto out;
	}
	txn = true;
	if ((r = store_secret_find(v->st, ref->tenant_id, ref->scope, scope_id, ref->name, 0,
				   &row)) != 0 ||
	    (r = store_secret_delete(v->st, row.id)) != 0 ||
	    (r = store_commit(v->st)) != 0) {
		r = vault_store_fail(v, r, "delete secret");
		goto out;
	}
	txn = false;
out:
	if (txn)
		store_rollback(v->st);
	store_secret_clear(&row);
	return r;
}

int vault_forget_sandbox(struct vault *v, const char *tenant_id, const char *sandbox_id)
{
	int r, secrets = 0, bindings = 0;

	if ((r = vault_check_id(v, "tenant_id", tenant_id)) != 0 ||
	    (r = vault_check_id(v, "sandbox_id", sandbox_id)) != 0)
		return r;
	if ((r = store_begin_write(v->st)) != 0)
		return vault_store_fail(v, r, "forget sandbox");
	/* Secrets first: their own bindings go with them (ON DELETE CASCADE). */
	if ((secrets = store_secret_delete_scope(v->st, tenant_id, SCOPE_WALK_SANDBOX,
						 sandbox_id)) < 0 ||
	    (bindings = store_binding_delete_sandbox(v->st, sandbox_id)) < 0 ||
	    (r = store_commit(v->st)) != 0) {
		r = secrets < 0 ? secrets : bindings < 0 ? bindings : r;
		vault_store_fail(v, r, "forget sandbox");
		store_rollback(v->st);
		return r;
	}
	return secrets + bindings;
}

/* ---- lists and resolution ---------------------------------------------- */

void vault_secret_list_free(struct vault_secret_list *list)
{
	if (!list)
		return;
	for (size_t i = 0; i < list->n; i++)
		free(list->items[i].hosts);
	free(list->items);
	list->items = NULL;
	list->n = 0;
}

/* Move a row's description (not its ciphertext) into info. */
static void vault_info_from_row(struct store_secret *row, const char *placeholder,
				struct vault_secret_info *info)
{
	memset(info, 0, sizeof(*info));
	memcpy(info->name, row->name, sizeof(info->name));
	memcpy(info->expose_as_env, row->expose_as_env, sizeof(info->expose_as_env));
	info->scope = row->scope;
	memcpy(info->scope_id, row->scope_id, sizeof(info->scope_id));
	info->version = row->version;
	info->created_at_us = row->created_at_us;
	info->rotated_at_us = row->rotated_at_us;
	info->allow_cleartext = row->allow_cleartext;
	snprintf(info->placeholder, sizeof(info->placeholder), "%s", placeholder);
	info->n_hosts = row->n_hosts;
	info->hosts = row->hosts;
	row->hosts = NULL;
	row->n_hosts = 0;
}

/* Build list items from rows; sandbox listings carry the sandbox's placeholder. */
static int vault_list_items(struct vault *v, struct store_secret *rows, size_t n,
			    bool with_placeholder, struct vault_secret_list *list)
{
	struct store_binding b;
	int r;

	if (n > 0 && !(list->items = calloc(n, sizeof(*list->items))))
		return vault_fail(v, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		b.placeholder[0] = '\0';
		if (with_placeholder) {
			r = store_binding_find(v->st, rows[i].scope_id, rows[i].id, &b);
			if (r != 0 && r != -ENOENT)
				return vault_store_fail(v, r, "list secrets");
			if (r != 0 || !vault_placeholder_is_valid(b.placeholder, strlen(b.placeholder)))
				b.placeholder[0] = '\0';
		}
		vault_info_from_row(&rows[i], b.placeholder, &list->items[list->n++]);
	}
	return 0;
}

int vault_secret_list(struct vault *v, const char *tenant_id, enum scope_walk_scope scope,
		      const char *scope_id, struct vault_secret_list *ret_list)
{
	struct vault_secret_list list = { 0, NULL };
	struct store_secret *rows = NULL;
	size_t n = 0;
	bool txn = false;
	int r;

	if ((r = vault_check_scope(v, tenant_id, scope, scope_id, &scope_id)) != 0)
		goto out;
	if (!ret_list) {
		r = vault_fail(v, -EINVAL, "no list given");
		goto out;
	}
	if ((r = store_begin_read(v->st)) != 0) {
		r = vault_store_fail(v, r, "list secrets");
		goto out;
	}
	txn = true;
	r = store_secret_list(v->st, tenant_id, scope, scope_id, VAULT_SECRETS_PER_SCOPE_MAX,
			      &rows, &n);
	if (r != 0) {
		r = vault_store_fail(v, r, "list secrets");
		goto out;
	}
	if ((r = vault_list_items(v, rows, n, scope == SCOPE_WALK_SANDBOX, &list)) != 0)
		goto out;
	if ((r = store_commit(v->st)) != 0) {
		r = vault_store_fail(v, r, "list secrets");
		goto out;
	}
	txn = false;
	*ret_list = list;
	list.items = NULL;
	list.n = 0;
out:
	if (txn)
		store_rollback(v->st);
	vault_secret_list_free(&list);
	store_secret_array_free(rows, n);
	return r;
}

/* Run the scope walk over candidate rows; winners indexes rows. */
static int vault_walk(struct vault *v, const struct scope_walk_attribution *a,
		      const struct store_secret *rows, size_t n,
		      size_t **ret_winners, size_t *ret_count)
{
	struct scope_walk_candidate *cands = NULL;
	size_t *winners = NULL;
	int r;

	if (n > 0 && (!(cands = calloc(n, sizeof(*cands))) ||
		      !(winners = calloc(n, sizeof(*winners))))) {
		r = vault_fail(v, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		cands[i] = (struct scope_walk_candidate){ rows[i].tenant_id, rows[i].scope,
			rows[i].scope_id, rows[i].expose_as_env, rows[i].name };
	if ((r = scope_walk_resolve(a, cands, n, winners)) < 0) {
		r = vault_fail(v, r, "scope walk refused its input");
		goto out;
	}
	*ret_count = (size_t)r;
	*ret_winners = winners;
	winners = NULL;
	r = 0;
out:
	free(cands);
	free(winners);
	return r;
}

static int vault_resolved_items(struct vault *v, const struct scope_walk_attribution *a,
				struct store_secret *rows, const size_t *winners, size_t count,
				struct vault_secret_list *list)
{
	char placeholder[VAULT_PLACEHOLDER_LEN + 1];
	int r;

	if (count > 0 && !(list->items = calloc(count, sizeof(*list->items))))
		return vault_fail(v, -ENOMEM, "out of memory");
	for (size_t i = 0; i < count; i++) {
		struct store_secret *row = &rows[winners[i]];

		if ((r = vault_ensure_binding(v, a->sandbox_id, row->id, placeholder)) != 0)
			return r;
		vault_info_from_row(row, placeholder, &list->items[list->n++]);
	}
	return 0;
}

int vault_resolve(struct vault *v, const struct scope_walk_attribution *a,
		  struct vault_secret_list *ret_list)
{
	struct vault_secret_list list = { 0, NULL };
	struct store_secret *rows = NULL;
	size_t n = 0, count = 0, *winners = NULL;
	bool txn = false;
	int r;

	if ((r = vault_check_attribution(v, a)) != 0)
		goto out;
	if (!ret_list) {
		r = vault_fail(v, -EINVAL, "no list given");
		goto out;
	}
	/* A write transaction: resolution may mint placeholders, and two
	 * handles resolving the same sandbox must agree on one. */
	if ((r = store_begin_write(v->st)) != 0) {
		r = vault_store_fail(v, r, "resolve sandbox");
		goto out;
	}
	txn = true;
	r = store_secret_candidates(v->st, a, VAULT_CANDIDATES_MAX, &rows, &n);
	if (r != 0) {
		r = vault_store_fail(v, r, "resolve sandbox");
		goto out;
	}
	if ((r = vault_walk(v, a, rows, n, &winners, &count)) != 0 ||
	    (r = vault_resolved_items(v, a, rows, winners, count, &list)) != 0)
		goto out;
	if ((r = store_commit(v->st)) != 0) {
		r = vault_store_fail(v, r, "resolve sandbox");
		goto out;
	}
	txn = false;
	*ret_list = list;
	list.items = NULL;
	list.n = 0;
out:
	if (txn)
		store_rollback(v->st);
	vault_secret_list_free(&list);
	store_secret_array_free(rows, n);
	free(winners);
	return r;
}

/* ---- swap -------------------------------------------------------------- */

const char *vault_swap_verdict_name(enum vault_swap_verdict verdict)
{
	switch (verdict) {
	case VAULT_SWAP_OK:                    return "swapped";
	case VAULT_SWAP_UNKNOWN_PLACEHOLDER:   return "unknown_placeholder";
	case VAULT_SWAP_OTHER_SANDBOX:         return "other_sandbox";
	case VAULT_SWAP_NOT_RESOLVED:          return "not_resolved";
	case VAULT_SWAP_HOST_NOT_ALLOWED:      return "host_not_allowed";
	case VAULT_SWAP_CLEARTEXT_NOT_ALLOWED: return "cleartext_not_allowed";
	}
	return "unknown";
}

void vault_swap_release(struct vault_swap *swap)
{
	if (!swap)
		return;
	sodium_free(swap->value);
	swap->value = NULL;
	swap->value_len = 0;
}

/* Is row still the sandbox's winner for its env name? */
static int vault_is_winner(struct vault *v, const struct scope_walk_attribution *a,
			   const struct store_secret *row, bool *ret_winner)
{
	struct store_secret *rows = NULL;
	size_t n = 0, count = 0, *winners = NULL;
	bool winner = false;
	int r;

	if ((r = store_secret_candidates(v->st, a, VAULT_CANDIDATES_MAX, &rows, &n)) != 0) {
		r = vault_store_fail(v, r, "resolve sandbox");
		goto out;
	}
	if ((r = vault_walk(v, a, rows, n, &winners, &count)) != 0)
		goto out;
	for (size_t i = 0; i < count && !winner; i++)
		winner = rows[winners[i]].id == row->id;
	*ret_winner = winner;
out:
	store_secret_array_free(rows, n);
	free(winners);
	return r;
}

static bool vault_host_allowed(const struct store_secret *row, const char *host)
{
	if (row->n_hosts == 0)
		return true; /* no list: the secret is not host-bound */
	for (size_t i = 0; i < row->n_hosts; i++)
		if (host_pattern_match(row->hosts[i], host))
			return true;
	return false;
}

/*
 * The decision, inside a read transaction.  Checks run from "whose is it"
 * to "where may it go", and the value is decrypted only when all pass.
 */
static int vault_decide(struct vault *v, const struct scope_walk_attribution *a,
			const char *placeholder, const char *host, bool is_tls,
			struct vault_swap *res)
{
	struct store_binding b;
	struct store_secret row;
	bool winner = false;
	int r;

	memset(&row, 0, sizeof(row));
	r = store_binding_find_placeholder(v->st, placeholder, &b);
	if (r == -ENOENT || (r == 0 && sodium_memcmp(b.placeholder, placeholder,
						     VAULT_PLACEHOLDER_LEN) != 0)) {
		res->verdict = VAULT_SWAP_UNKNOWN_PLACEHOLDER;
		return 0;
	}
	if (r != 0)
		return vault_store_fail(v, r, "look up placeholder");
	if (strcmp(b.sandbox_id, a->sandbox_id) != 0) {
		res->verdict = VAULT_SWAP_OTHER_SANDBOX;
		return 0;
	}
	r = store_secret_get(v->st, b.secret_id, STORE_WITH_CIPHERTEXT, &row);
	if (r != 0) {
		r = vault_store_fail(v, r, "load secret");
		goto out;
	}
	if (strcmp(row.tenant_id, a->tenant_id) != 0) {
		res->verdict = VAULT_SWAP_OTHER_SANDBOX;
		goto out;
	}
	memcpy(res->secret_name, row.name, sizeof(res->secret_name));
	res->scope = row.scope;
	res->version = row.version;
	if ((r = vault_is_winner(v, a, &row, &winner)) != 0)
		goto out;
	if (!winner)
		res->verdict = VAULT_SWAP_NOT_RESOLVED;
	else if (!vault_host_allowed(&row, host))
		res->verdict = VAULT_SWAP_HOST_NOT_ALLOWED;
	else if (!is_tls && !row.allow_cleartext)
		res->verdict = VAULT_SWAP_CLEARTEXT_NOT_ALLOWED;
	else if ((r = vault_unseal(v, &row, &res->value, &res->value_len)) == 0)
		res->verdict = VAULT_SWAP_OK;
out:
	store_secret_clear(&row);
	return r;
}

int vault_get_for_swap(struct vault *v, const struct scope_walk_attribution *a,
		       const char *placeholder, size_t placeholder_len,
		       const char *dest_host, size_t dest_host_len, bool is_tls,
		       struct vault_swap *ret_swap)
{
	char ph[VAULT_PLACEHOLDER_LEN + 1], host[HOST_PATTERN_BUF], msg[VAULT_ERR_MAX];
	struct vault_swap res;
	int r;

	memset(&res, 0, sizeof(res));
	if ((r = vault_check_attribution(v, a)) != 0)
		return r;
	if (!ret_swap)
		return vault_fail(v, -EINVAL, "no result given");
	if (host_pattern_normalize_host(dest_host, dest_host_len, host, msg, sizeof(msg)) < 0)
		return vault_fail(v, -EINVAL, "destination %s", msg);
	if (!vault_placeholder_is_valid(placeholder, placeholder_len)) {
		res.verdict = VAULT_SWAP_UNKNOWN_PLACEHOLDER;
		goto done;
	}
	memcpy(ph, placeholder, VAULT_PLACEHOLDER_LEN);
	ph[VAULT_PLACEHOLDER_LEN] = '\0';
	if ((r = store_begin_read(v->st)) != 0)
		return vault_store_fail(v, r, "swap");
	r = vault_decide(v, a, ph, host, is_tls, &res);
	if (r == 0 && (r = store_commit(v->st)) != 0)
		r = vault_store_fail(v, r, "swap");
	if (r != 0) {
		store_rollback(v->st);
		vault_swap_release(&res);
		return r;
	}
done:
	*ret_swap = res;
	return 0;
}
