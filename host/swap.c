#include "swap.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "http1_rewrite.h"

/* One placeholder occurrence and what replaces it. */
struct swap_site {
	struct http1_span span;   /* the placeholder's bytes in the head */
	bool in_target;
	struct vault_swap swap;   /* value held until the head is written */
	uint8_t *encoded;         /* target: percent-encoded value (sodium_malloc) */
	size_t encoded_len;
};

struct swap_job {
	struct swap_site site[SWAP_MAX_PLACEHOLDERS];
	size_t n;
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

/* Collect the placeholders of head[span]. */
static int swap_scan(struct swap_job *job, const uint8_t *head, struct http1_span span,
		     bool in_target)
{
	const uint8_t *p = head + span.off;
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
				.span = { .off = (uint32_t)(p - head),
					  .len = VAULT_PLACEHOLDER_LEN },
				.in_target = in_target,
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
}

static int swap_resolve(struct swap_job *job, struct vault *v,
			const struct scope_walk_attribution *a, const uint8_t *head,
			const char *dest_host, bool is_tls, struct swap_result *res)
{
	int r;

	for (size_t i = 0; i < job->n; i++) {
		struct swap_site *s = &job->site[i];

		r = vault_get_for_swap(v, a, (const char *)head + s->span.off, s->span.len,
				       dest_host, strlen(dest_host), is_tls, &s->swap);
		if (r < 0)
			return r;
		switch (s->swap.verdict) {
		case VAULT_SWAP_OK:
			if (s->in_target && (r = swap_percent_encode(s)) < 0)
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

		if (s->swap.verdict != VAULT_SWAP_OK)
			continue;
		r = http1_edit_span(s->span, s->in_target ? s->encoded : s->swap.value,
				    s->in_target ? s->encoded_len : s->swap.value_len,
				    &edits[n_edits]);
		if (r < 0)
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
	if ((r = swap_scan(job, head, h->target, true)) < 0)
		goto out;
	for (uint32_t i = 0; i < h->n_headers; i++) {
		/* Host and the framing fields are never rewritten (http1_rewrite
		 * refuses it): a placeholder there stays as it is. */
		if (h->headers[i].id != HTTP1_FIELD_OTHER)
			continue;
		if ((r = swap_scan(job, head, h->headers[i].value, false)) < 0)
			goto out;
	}
	res.n_placeholders = job->n;
	if ((r = swap_resolve(job, v, a, head, dest_host, is_tls, &res)) < 0)
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
