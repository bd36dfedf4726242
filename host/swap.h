/*
 * swap — the placeholder swap on one parsed request head (M3, M4, M5, B1).
 *
 * Contract:
 *   - Finds every placeholder ("miosa-tok-" + 32 lowercase hex, not followed
 *     by a further hex digit) in the request-target (query parameters such
 *     as ?api_key=, and paths such as Telegram's /bot<token>/) and in the
 *     values of header fields other than Host, Content-Length,
 *     Transfer-Encoding, Connection, Expect and Upgrade (those are never
 *     rewritten); asks the vault for each one (scope walk, exfiltration
 *     guard, cleartext rule) and writes the upstream head with
 *     the real values in place.  Everything else is copied byte for byte
 *     (http1_rewrite).
 *   - In the request-target a value is percent-encoded (every byte outside
 *     RFC 3986 unreserved), so a secret can never change the query's
 *     structure; in a header value it is inserted verbatim (the vault only
 *     holds values a field value may carry).
 *   - Basic credentials (RFC 7617): in Authorization and Proxy-Authorization
 *     only (the fields that carry credentials), a value "Basic" (any case)
 *     1*SP token68 whose token is strict RFC 4648 base64 (standard alphabet,
 *     padding) of at most 4 KiB decoded is decoded into sodium_malloc'd
 *     memory and the placeholders of the pair are resolved like any other
 *     (either side of the ':', same verdicts, same counts and name lists).
 *     If one is swapped, the whole pair with the values in place is
 *     re-encoded and replaces the token in one edit.  Values are inserted
 *     verbatim: the upstream sees exactly user:pass with the value in place,
 *     so a value containing ':' put in the user-id moves the split there as
 *     it would had the guest sent it.  A token that is not such base64, or
 *     is longer, is not ours: the value is treated like any other header.
 *   - A placeholder the vault refuses (unknown, another sandbox's, host not
 *     allowed, cleartext) is left as it is (M4: upstream answers 401); a
 *     HOST_NOT_ALLOWED hit is reported in `flagged` for the audit row (B1).
 *   - The output head (ret->head) holds real secrets: it lives in
 *     sodium_malloc'd memory and swap_result_release() wipes and frees it.
 *     Vault values are released (wiped) before swap_request_head returns.
 *     Even when nothing was swapped, ret->head is a copy of the head, so
 *     callers have one code path.
 *   - Returns 0, or a negative errno / -HTTP1_E_* code; then nothing is to
 *     be forwarded (fail closed) and ret is untouched.  -E2BIG: more than
 *     SWAP_MAX_PLACEHOLDERS placeholders in one head.
 *   - Blocks on the vault (SQLite): call from a worker thread, never the loop.
 */
#ifndef MIOSA_SWAP_H
#define MIOSA_SWAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http1.h"
#include "vault.h"

#define SWAP_MAX_PLACEHOLDERS 64u
#define SWAP_MAX_NAMES 16u /* distinct secret names reported per list */

struct swap_names {
	size_t n;
	bool truncated; /* more distinct names than SWAP_MAX_NAMES */
	char name[SWAP_MAX_NAMES][VAULT_NAME_MAX + 1];
};

struct swap_result {
	uint8_t *head;            /* sodium_malloc'd; swap_result_release() */
	size_t head_len;
	size_t n_placeholders;    /* placeholders seen */
	size_t n_swapped;         /* placeholders replaced */
	struct swap_names swapped; /* request_transforms.secrets.swapped */
	struct swap_names flagged; /* exfiltration guard hits (B1) */
	size_t n_unresolved;      /* left as they were: unknown, other sandbox, ... */
};

/* Is s[0, len) a placeholder at offset 0 (exact length, lowercase hex)? */
bool swap_is_placeholder_at(const uint8_t *s, size_t len);

__attribute__((warn_unused_result))
int swap_request_head(struct vault *v, const struct scope_walk_attribution *a,
		      const struct http1_head *h, const uint8_t *head,
		      const char *dest_host, bool is_tls, struct swap_result *ret);

/* Wipe and free the head; safe on a zeroed or released result. */
void swap_result_release(struct swap_result *r);

#endif
