#include "swap.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "http1_rewrite.h"

/*
 * Basic credentials (RFC 7617): "Basic" SP token68, token68 the RFC 4648
 * base64 of user-id ":" password.  A decoded pair above this is left alone
 * (it is no credential we issued a placeholder for), so a peer cannot make
 * us allocate more than this per header.
 */
#define SWAP_BASIC_MAX_DECODED 4096u

enum swap_where {
	SWAP_IN_TARGET,
	SWAP_IN_HEADER,
	SWAP_IN_BASIC,            /* inside a decoded Basic pair */
};

/* One placeholder occurrence and what replaces it. */
struct swap_site {
	struct http1_span span;   /* the placeholder's bytes in the head, or in
				   * basic[basic].decoded for SWAP_IN_BASIC */
	enum swap_where where;
	size_t basic;             /* SWAP_IN_BASIC: index into swap_job.basic */
	struct vault_swap swap;   /* value held until the head is written */
	uint8_t *encoded;         /* target: percent-encoded value (sodium_malloc) */
	size_t encoded_len;
};

/* One Basic header value holding at least one placeholder. */
struct swap_basic {
	struct http1_span token;  /* the base64 token68 in the head */
	uint8_t *decoded;         /* sodium_malloc'd user:pass as the guest sent it */
	size_t decoded_len;
	size_t first, n;          /* its sites: site[first, first + n) */
	uint8_t *encoded;         /* sodium_malloc'd base64 of the pair with the
				   * real values in place; NULL if none swapped */
	size_t encoded_len;
};

struct swap_job {
	struct swap_site site[SWAP_MAX_PLACEHOLDERS];
	size_t n;
	/* Each recorded one holds >= 1 site, so n_basic <= n; the extra slot
	 * lets a pair be decoded while site[] is full (its scan then fails). */
	struct swap_basic basic[SWAP_MAX_PLACEHOLDERS + 1];
	size_t n_basic;
};

static bool is_lower_hex(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool swap_is_placeholder_at(const uint8_t *s, size_t len)
{
	if (len < VAULT_PLACEHOLDER_LEN ||
	    memcmp(s, VAULT_PLACEHOLDER_PREFIX, VAULT_PLACEHOLDER_PREFIX_LEN) != 0)
		return false;
	for (size_t i = VAULT_PLACEHOLDER_PREFIX_LEN; i < VAULT_PLACEHOLDER_LEN; i++)
		if (!is_lower_hex(s[i]))
			return false;
	/* "miosa-tok-" + 33 hex is some other string, not our placeholder. */
	return len == VAULT_PLACEHOLDER_LEN || !is_lower_hex(s[VAULT_PLACEHOLDER_LEN]);
}

/* Collect the placeholders of base[span]; their spans are relative to base. */
static int swap_scan(struct swap_job *job, const uint8_t *base, struct http1_span span,
		     enum swap_where where, size_t basic)
{
	const uint8_t *p = base + span.off;
	size_t left = span.len;

	while (left >= VAULT_PLACEHOLDER_LEN) {
		const uint8_t *hit = memmem(p, left, VAULT_PLACEHOLDER_PREFIX,
					    VAULT_PLACEHOLDER_PREFIX_LEN);
		size_t skip;

		if (!hit)
			break;
		skip = (size_t)(hit - p);
		left -= skip;
		p = hit;
		if (swap_is_placeholder_at(p, left)) {
			if (job->n == SWAP_MAX_PLACEHOLDERS)
				return -E2BIG;
			job->site[job->n++] = (struct swap_site){
				.span = { .off = (uint32_t)(p - base),
					  .len = VAULT_PLACEHOLDER_LEN },
				.where = where,
				.basic = basic,
			};
			p += VAULT_PLACEHOLDER_LEN;
			left -= VAULT_PLACEHOLDER_LEN;
		} else {
			p += VAULT_PLACEHOLDER_PREFIX_LEN;
			left -= VAULT_PLACEHOLDER_PREFIX_LEN;
		}
	}
	return 0;
}

/* ASCII-only, locale-free: these are protocol tokens, never text. */
static bool ascii_case_equal(const uint8_t *a, size_t a_len, const char *b)
{
	size_t n = strlen(b);

	if (a_len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t x = a[i], y = (uint8_t)b[i];

		if (x >= 'A' && x <= 'Z')
			x = (uint8_t)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (uint8_t)(y - 'A' + 'a');
		if (x != y)
			return false;
	}
	return true;
}

/*
 * The token68 of a Basic credential in the value of hdr, or false.  Only
 * Authorization and Proxy-Authorization carry credentials (RFC 9110 §11.6.2,
 * §11.7.2); "Basic" is case-insensitive (§11.1) and we accept 1*SP before the
 * token (the value is already trimmed of trailing OWS by the parser).
 */
static bool swap_basic_token(const uint8_t *head, const struct http1_header *hdr,
			     struct http1_span *ret_token)
{
	static const char scheme[] = "basic";
	const uint8_t *v = head + hdr->value.off;
	size_t len = hdr->value.len, i = sizeof(scheme) - 1;

	if (!ascii_case_equal(head + hdr->name.off, hdr->name.len, "authorization") &&
	    !ascii_case_equal(head + hdr->name.off, hdr->name.len, "proxy-authorization"))
		return false;
	if (len <= i || !ascii_case_equal(v, i, scheme) || v[i] != ' ')
		return false;
	while (i < len && v[i] == ' ')
		i++;
	if (i == len)
		return false;
	*ret_token = (struct http1_span){ .off = hdr->value.off + (uint32_t)i,
					  .len = hdr->value.len - (uint32_t)i };
	return true;
}

/*
 * If hdr is a Basic credential whose pair decodes (strict RFC 4648 base64,
 * padding required, at most SWAP_BASIC_MAX_DECODED bytes) and holds
 * placeholders, record it and its sites and return 1.  0: not Basic, not
 * base64, too long or no placeholder; the caller scans the raw value as for
 * any header.  Negative: -ENOMEM, -E2BIG.
 */
static int swap_scan_basic(struct swap_job *job, const uint8_t *head,
			   const struct http1_header *hdr)
{
	struct swap_basic *b = &job->basic[job->n_basic];
	struct http1_span tok;
	const uint8_t *t;
	size_t max, pad = 0, first = job->n;
	int r;

	if (!swap_basic_token(head, hdr, &tok))
		return 0;
	t = head + tok.off;
	/* With padding every quantum is 4 characters; a shorter last one is
	 * malformed, and the exact size is known before we allocate. */
	if (tok.len % 4 != 0)
		return 0;
	pad = (t[tok.len - 1] == '=') + (t[tok.len - 2] == '=');
	max = tok.len / 4 * 3;
	if (max - pad > SWAP_BASIC_MAX_DECODED)
		return 0;
	*b = (struct swap_basic){ .token = tok };
	b->decoded = sodium_malloc(max);
	if (!b->decoded)
		return -ENOMEM;
	/* Strict: no ignored characters, padding and zero trailing bits
	 * required; anything else is someone else's token. */
	if (sodium_base642bin(b->decoded, max, (const char *)t, tok.len, NULL,
			      &b->decoded_len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
		r = 0;
		goto drop;
	}
	r = swap_scan(job, b->decoded,
		      (struct http1_span){ .off = 0, .len = (uint32_t)b->decoded_len },
		      SWAP_IN_BASIC, job->n_basic);
	if (r < 0 || job->n == first)
		goto drop;
	b->first = first;
	b->n = job->n - first;
	job->n_basic++;
	return 1;
drop:
	/* swap_scan may have recorded sites before failing; they go too. */
	job->n = first;
	sodium_free(b->decoded); /* wipes */
	*b = (struct swap_basic){ 0 };
	return r;
}

static void swap_names_add(struct swap_names *names, const char *name)
{
	for (size_t i = 0; i < names->n; i++)
		if (strcmp(names->name[i], name) == 0)
			return;
	if (names->n == SWAP_MAX_NAMES) {
		names->truncated = true;
		return;
	}
	/* vault names are at most VAULT_NAME_MAX bytes and NUL-terminated */
	memcpy(names->name[names->n], name, strlen(name) + 1);
	names->n++;
}

static bool is_unreserved(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

/* RFC 3986 §2.1 percent-encoding into secure memory. */
static int swap_percent_encode(struct swap_site *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const uint8_t *v = s->swap.value;
	size_t n = 0;

	for (size_t i = 0; i < s->swap.value_len; i++)
		n += is_unreserved(v[i]) ? 1 : 3;
	s->encoded = sodium_malloc(n ? n : 1);
	if (!s->encoded)
		return -ENOMEM;
	s->encoded_len = n;
	n = 0;
	for (size_t i = 0; i < s->swap.value_len; i++) {
		if (is_unreserved(v[i])) {
			s->encoded[n++] = v[i];
		} else {
			s->encoded[n++] = '%';
			s->encoded[n++] = (uint8_t)hex[v[i] >> 4];
			s->encoded[n++] = (uint8_t)hex[v[i] & 0x0f];
		}
	}
	return 0;
}

static void swap_job_release(struct swap_job *job)
{
	for (size_t i = 0; i < job->n; i++) {
		vault_swap_release(&job->site[i].swap);
		sodium_free(job->site[i].encoded); /* sodium_free wipes */
		job->site[i].encoded = NULL;
	}
	for (size_t i = 0; i < job->n_basic; i++) {
		sodium_free(job->basic[i].decoded);
		sodium_free(job->basic[i].encoded);
		job->basic[i].decoded = job->basic[i].encoded = NULL;
	}
}

/* The placeholder bytes of site s. */
static const uint8_t *swap_site_bytes(const struct swap_job *job, const struct swap_site *s,
				      const uint8_t *head)
{
	if (s->where == SWAP_IN_BASIC)
		return job->basic[s->basic].decoded + s->span.off;
	return head + s->span.off;
}

/*
 * Re-encode b's pair with every swapped value in place.  Values go in
 * verbatim: a ':' in a value put in the user-id moves the split the upstream
 * makes, exactly as if the guest had sent the real value itself.
 */
static int swap_basic_encode(struct swap_job *job, struct swap_basic *b)
{
	size_t plain_len = b->decoded_len, n_ok = 0, in = 0, out = 0, enc_size;
	uint8_t *plain;

	for (size_t i = b->first; i < b->first + b->n; i++) {
		if (job->site[i].swap.verdict != VAULT_SWAP_OK)
			continue;
		n_ok++;
		/* <= 4 KiB + 64 * VAULT_VALUE_MAX: no overflow */
		plain_len = plain_len - VAULT_PLACEHOLDER_LEN + job->site[i].swap.value_len;
	}
	if (n_ok == 0)
		return 0;
	plain = sodium_malloc(plain_len ? plain_len : 1);
	if (!plain)
		return -ENOMEM;
	for (size_t i = b->first; i < b->first + b->n; i++) {
		const struct swap_site *s = &job->site[i];

		if (s->swap.verdict != VAULT_SWAP_OK)
			continue;
		memcpy(plain + out, b->decoded + in, s->span.off - in);
		out += s->span.off - in;
		if (s->swap.value_len)
			memcpy(plain + out, s->swap.value, s->swap.value_len);
		out += s->swap.value_len;
		in = s->span.off + s->span.len;
	}
	memcpy(plain + out, b->decoded + in, b->decoded_len - in);
	enc_size = sodium_base64_ENCODED_LEN(plain_len, sodium_base64_VARIANT_ORIGINAL);
	b->encoded = sodium_malloc(enc_size);
	if (!b->encoded) {
		sodium_free(plain);
		return -ENOMEM;
	}
	sodium_bin2base64((char *)b->encoded, enc_size, plain, plain_len,
			  sodium_base64_VARIANT_ORIGINAL);
	b->encoded_len = enc_size - 1; /* without the NUL */
	sodium_free(plain);            /* wipes */
	return 0;
}

static int swap_resolve(struct swap_job *job, struct vault *v,
			const struct scope_walk_attribution *a, const uint8_t *head,
			const char *dest_host, bool is_tls, struct swap_result *res)
{
	int r;

	for (size_t i = 0; i < job->n; i++) {
		struct swap_site *s = &job->site[i];

		r = vault_get_for_swap(v, a, (const char *)swap_site_bytes(job, s, head),
				       s->span.len,
				       dest_host, strlen(dest_host), is_tls, &s->swap);
		if (r < 0)
			return r;
		switch (s->swap.verdict) {
		case VAULT_SWAP_OK:
			if (s->where == SWAP_IN_TARGET && (r = swap_percent_encode(s)) < 0)
				return r;
			res->n_swapped++;
			swap_names_add(&res->swapped, s->swap.secret_name);
			break;
		case VAULT_SWAP_HOST_NOT_ALLOWED:
			swap_names_add(&res->flagged, s->swap.secret_name);
			res->n_unresolved++;
			break;
		default:
			res->n_unresolved++;
			break;
		}
	}
	return 0;
}

static int swap_write_head(struct swap_job *job, const struct http1_head *h,
			   const uint8_t *head, struct swap_result *res)
{
	struct http1_edit edits[SWAP_MAX_PLACEHOLDERS];
	size_t n_edits = 0, size = 0, len = 0;
	uint8_t *out = NULL;
	int r;

	for (size_t i = 0; i < job->n; i++) {
		const struct swap_site *s = &job->site[i];

		if (s->swap.verdict != VAULT_SWAP_OK || s->where == SWAP_IN_BASIC)
			continue;
		r = http1_edit_span(s->span,
				    s->where == SWAP_IN_TARGET ? s->encoded : s->swap.value,
				    s->where == SWAP_IN_TARGET ? s->encoded_len : s->swap.value_len,
				    &edits[n_edits]);
		if (r < 0)
			goto out;
		n_edits++;
	}
	/* One edit per Basic pair, replacing its whole token; n_edits stays
	 * <= job->n because each pair holds at least one swapped site. */
	for (size_t i = 0; i < job->n_basic; i++) {
		const struct swap_basic *b = &job->basic[i];

		if (!b->encoded)
			continue;
		if ((r = http1_edit_span(b->token, b->encoded, b->encoded_len,
					 &edits[n_edits])) < 0)
			goto out;
		n_edits++;
	}
	if ((r = http1_rewrite_size(h, head, h->head_len, edits, n_edits, &size)) < 0)
		goto out;
	out = sodium_malloc(size ? size : 1);
	if (!out) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = http1_rewrite(h, head, h->head_len, edits, n_edits, out, size, &len)) < 0)
		goto out;
	res->head = out;
	res->head_len = len;
	out = NULL;
	r = 0;
out:
	sodium_free(out);
	sodium_memzero(edits, sizeof(edits));
	return r;
}

int swap_request_head(struct vault *v, const struct scope_walk_attribution *a,
		      const struct http1_head *h, const uint8_t *head,
		      const char *dest_host, bool is_tls, struct swap_result *ret)
{
	struct swap_job *job;
	struct swap_result res = { 0 };
	int r;

	if (h->kind != HTTP1_REQUEST)
		return -EINVAL;
	job = calloc(1, sizeof(*job));
	if (!job)
		return -ENOMEM;
	if ((r = swap_scan(job, head, h->target, SWAP_IN_TARGET, 0)) < 0)
		goto out;
	for (uint32_t i = 0; i < h->n_headers; i++) {
		/* Host and the framing fields are never rewritten (http1_rewrite
		 * refuses it): a placeholder there stays as it is. */
		if (h->headers[i].id != HTTP1_FIELD_OTHER)
			continue;
		/* A decoded Basic pair replaces the raw scan: its base64 can
		 * hold no '-', hence no placeholder. */
		if ((r = swap_scan_basic(job, head, &h->headers[i])) < 0)
			goto out;
		if (r == 0 &&
		    (r = swap_scan(job, head, h->headers[i].value, SWAP_IN_HEADER, 0)) < 0)
			goto out;
	}
	res.n_placeholders = job->n;
	if ((r = swap_resolve(job, v, a, head, dest_host, is_tls, &res)) < 0)
		goto out;
	for (size_t i = 0; i < job->n_basic; i++)
		if ((r = swap_basic_encode(job, &job->basic[i])) < 0)
			goto out;
	if ((r = swap_write_head(job, h, head, &res)) < 0)
		goto out;
	*ret = res;
	r = 0;
out:
	swap_job_release(job);
	free(job);
	return r;
}

void swap_result_release(struct swap_result *r)
{
	sodium_free(r->head);
	r->head = NULL;
	r->head_len = 0;
}
