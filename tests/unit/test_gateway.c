/*
 * The guest gateway's pure parts: which upstream addresses are refused
 * (upstream_addr), the EnvUpdate diff (env_diff) and the exec route's body
 * (guest_exec).  The I/O parts run in tests/integration/guest_gateway.sh.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sodium.h>

#include "broker_config.h"
#include "env_diff.h"
#include "guest_exec.h"
#include "upstream_addr.h"

/* ---- upstream_addr ------------------------------------------------------- */

struct addr_case {
	const char *text;
	const char *refusal; /* NULL: allowed */
};

static const struct addr_case addr_cases[] = {
	{ "93.184.215.14", NULL },
	{ "1.1.1.1", NULL },
	{ "8.8.8.8", NULL },
	{ "0.0.0.0", "this-network" },
	{ "0.1.2.3", "this-network" },
	{ "10.0.0.1", "private" },
	{ "10.255.255.255", "private" },
	{ "11.0.0.1", NULL },
	{ "100.63.255.255", NULL },
	{ "100.64.0.1", "cgnat" },
	{ "100.127.255.255", "cgnat" },
	{ "100.128.0.0", NULL },
	{ "127.0.0.1", "loopback" },
	{ "127.255.255.254", "loopback" },
	{ "169.254.169.254", "link-local" },
	{ "172.15.255.255", NULL },
	{ "172.16.0.1", "private" },
	{ "172.31.255.255", "private" },
	{ "172.32.0.0", NULL },
	{ "192.168.1.1", "private" },
	{ "192.169.0.1", NULL },
	{ "198.18.0.5", "synthetic" },
	{ "198.19.255.254", "synthetic" },
	{ "198.20.0.1", NULL },
	{ "224.0.0.1", "multicast" },
	{ "239.255.255.250", "multicast" },
	{ "240.0.0.1", "reserved" },
	{ "255.255.255.255", "reserved" },
	{ "2606:2800:220:1::1", NULL },
	{ "2001:4860:4860::8888", NULL },
	{ "::", "unspecified" },
	{ "::1", "loopback" },
	{ "fc00::1", "unique-local" },
	{ "fd00:ec2::254", "unique-local" },
	{ "fe80::1", "link-local" },
	{ "febf::1", "link-local" },
	{ "fec0::1", "site-local" },
	{ "ff02::1", "multicast" },
	{ "::ffff:127.0.0.1", "loopback" },
	{ "::ffff:10.1.2.3", "private" },
	{ "::ffff:169.254.169.254", "link-local" },
	{ "::ffff:93.184.215.14", NULL },
	{ "::127.0.0.1", "loopback" },
	{ "64:ff9b::a9fe:a9fe", "link-local" },
	{ "64:ff9b::808:808", NULL },
};

static void test_upstream_addr_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(addr_cases) / sizeof(addr_cases[0]); i++) {
		const struct addr_case *t = &addr_cases[i];
		struct sockaddr_storage ss = { 0 };
		const char *got;

		if (strchr(t->text, ':')) {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

			in6->sin6_family = AF_INET6;
			assert_int_equal(inet_pton(AF_INET6, t->text, &in6->sin6_addr), 1);
		} else {
			struct sockaddr_in *in = (struct sockaddr_in *)&ss;

			in->sin_family = AF_INET;
			assert_int_equal(inet_pton(AF_INET, t->text, &in->sin_addr), 1);
		}
		got = upstream_addr_refusal((const struct sockaddr *)&ss);
		if (!t->refusal && got)
			fail_msg("%s: refused (%s), want allowed", t->text, got);
		if (t->refusal && (!got || strcmp(got, t->refusal) != 0))
			fail_msg("%s: %s, want %s", t->text, got ? got : "allowed", t->refusal);
	}
}

static void test_upstream_addr_other_family_is_refused(void **state)
{
	struct sockaddr sa = { .sa_family = AF_UNIX };

	(void)state;
	assert_string_equal(upstream_addr_refusal(&sa), "family");
}

/* ---- env_diff ------------------------------------------------------------ */

#define P1 "miosa-tok-11111111111111111111111111111111"
#define P2 "miosa-tok-22222222222222222222222222222222"
#define P3 "miosa-tok-33333333333333333333333333333333"

static void test_env_diff_identical_is_empty(void **state)
{
	const struct env_diff_entry a[] = { { "A", P1 }, { "B", P2 } };
	size_t set[2], unset[2], ns = 9, nu = 9;

	(void)state;
	assert_int_equal(env_diff(a, 2, a, 2, set, &ns, unset, &nu), 0);
	assert_int_equal(ns, 0);
	assert_int_equal(nu, 0);
}

static void test_env_diff_new_changed_and_removed(void **state)
{
	const struct env_diff_entry old_env[] = { { "A", P1 }, { "B", P2 }, { "C", P3 } };
	const struct env_diff_entry new_env[] = { { "B", P3 }, { "C", P3 }, { "D", P1 } };
	size_t set[3], unset[3], ns, nu;

	(void)state;
	assert_int_equal(env_diff(old_env, 3, new_env, 3, set, &ns, unset, &nu), 3);
	assert_int_equal(ns, 2);      /* B changed, D new */
	assert_int_equal(set[0], 0);
	assert_int_equal(set[1], 2);
	assert_int_equal(nu, 1);      /* A gone */
	assert_int_equal(unset[0], 0);
}

static void test_env_diff_from_empty_sets_all(void **state)
{
	const struct env_diff_entry new_env[] = { { "A", P1 }, { "B", P2 } };
	size_t set[2], unset[1], ns, nu;

	(void)state;
	assert_int_equal(env_diff(NULL, 0, new_env, 2, set, &ns, unset, &nu), 2);
	assert_int_equal(ns, 2);
	assert_int_equal(nu, 0);
}

static void test_env_diff_to_empty_unsets_all(void **state)
{
	const struct env_diff_entry old_env[] = { { "A", P1 }, { "B", P2 } };
	size_t set[1], unset[2], ns, nu;

	(void)state;
	assert_int_equal(env_diff(old_env, 2, NULL, 0, set, &ns, unset, &nu), 2);
	assert_int_equal(ns, 0);
	assert_int_equal(nu, 2);
}

/* ---- guest_exec ---------------------------------------------------------- */

static int parse(const char *json, struct guest_exec_request **ret, char *err)
{
	return guest_exec_parse((const uint8_t *)json, strlen(json), ret, err, GUEST_EXEC_ERR_MAX);
}

static void expect_invalid(const char *json, const char *needle)
{
	struct guest_exec_request *q = NULL;
	char err[GUEST_EXEC_ERR_MAX] = "";

	if (parse(json, &q, err) != -EINVAL)
		fail_msg("accepted: %s", json);
	assert_null(q);
	if (!strstr(err, needle))
		fail_msg("%s: error '%s' lacks '%s'", json, err, needle);
}

static void test_exec_parse_full_request(void **state)
{
	struct guest_exec_request *q = NULL;
	char err[GUEST_EXEC_ERR_MAX] = "";

	(void)state;
	assert_int_equal(parse("{\"argv\":[\"sh\",\"-c\",\"\"],\"env\":{\"A_1\":\"x y\"},"
			       "\"cwd\":\"/tmp\",\"stdin\":\"aGVsbG8=\",\"timeout_ms\":1500}",
			       &q, err), 0);
	assert_int_equal(q->msg.n_argv, 3);
	assert_string_equal(q->msg.argv[0], "sh");
	assert_string_equal(q->msg.argv[2], "");
	assert_int_equal(q->msg.n_env, 1);
	assert_string_equal(q->msg.env[0]->name, "A_1");
	assert_string_equal(q->msg.env[0]->value, "x y");
	assert_string_equal(q->msg.cwd, "/tmp");
	assert_int_equal(q->msg.stdin_data.len, 5);
	assert_memory_equal(q->msg.stdin_data.data, "hello", 5);
	assert_int_equal(q->msg.timeout_ms, 1500);
	guest_exec_request_free(q);
}

static void test_exec_parse_defaults(void **state)
{
	struct guest_exec_request *q = NULL;
	char err[GUEST_EXEC_ERR_MAX] = "";

	(void)state;
	assert_int_equal(parse("{\"argv\":[\"true\"],\"timeout_ms\":0}", &q, err), 0);
	assert_int_equal(q->msg.timeout_ms, GUEST_EXEC_DEFAULT_TIMEOUT_MS);
	assert_int_equal(q->msg.n_env, 0);
	assert_int_equal(q->msg.stdin_data.len, 0);
	assert_true(q->msg.cwd == NULL || q->msg.cwd[0] == '\0' || q->msg.cwd == q->cwd);
	guest_exec_request_free(q);
}

static void test_exec_parse_rejects_bad_bodies(void **state)
{
	(void)state;
	expect_invalid("[]", "JSON object");
	expect_invalid("{\"argv\":[\"a\"],", "JSON object");
	expect_invalid("{}", "argv");
	expect_invalid("{\"argv\":[]}", "argv");
	expect_invalid("{\"argv\":\"sh\"}", "argv");
	expect_invalid("{\"argv\":[\"\"]}", "argv[0]");
	expect_invalid("{\"argv\":[\"a\",1]}", "argv[1]");
	expect_invalid("{\"argv\":[\"a\\u0000b\"]}", "JSON object"); /* jansson: no NUL */
	expect_invalid("{\"argv\":[\"a\"],\"extra\":1}", "unknown field 'extra'");
	expect_invalid("{\"argv\":[\"a\"],\"env\":{\"1A\":\"x\"}}", "env name");
	expect_invalid("{\"argv\":[\"a\"],\"env\":{\"A-B\":\"x\"}}", "env name");
	expect_invalid("{\"argv\":[\"a\"],\"env\":{\"A\":1}}", "env 'A'");
	expect_invalid("{\"argv\":[\"a\"],\"env\":[]}", "env");
	expect_invalid("{\"argv\":[\"a\"],\"cwd\":\"tmp\"}", "cwd");
	expect_invalid("{\"argv\":[\"a\"],\"stdin\":\"!!!\"}", "stdin");
	expect_invalid("{\"argv\":[\"a\"],\"stdin\":\"aGVsbG8\"}", "stdin");
	expect_invalid("{\"argv\":[\"a\"],\"timeout_ms\":-1}", "timeout_ms");
	expect_invalid("{\"argv\":[\"a\"],\"timeout_ms\":86400001}", "timeout_ms");
	expect_invalid("{\"argv\":[\"a\"],\"timeout_ms\":\"5\"}", "timeout_ms");
	expect_invalid("{\"argv\":[\"a\"],\"argv\":[\"b\"]}", "JSON object");
}

static void test_exec_parse_caps_stdin(void **state)
{
	size_t n = GUEST_EXEC_STDIN_MAX + 1;
	size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
	uint8_t *raw = calloc(1, n);
	char *b64 = malloc(cap), *json = malloc(cap + 64);
	struct guest_exec_request *q = NULL;
	char err[GUEST_EXEC_ERR_MAX];

	(void)state;
	assert_non_null(raw);
	assert_non_null(b64);
	assert_non_null(json);
	sodium_bin2base64(b64, cap, raw, n, sodium_base64_VARIANT_ORIGINAL);
	snprintf(json, cap + 64, "{\"argv\":[\"cat\"],\"stdin\":\"%s\"}", b64);
	assert_int_equal(parse(json, &q, err), -EINVAL);
	sodium_bin2base64(b64, cap, raw, n - 1, sodium_base64_VARIANT_ORIGINAL);
	snprintf(json, cap + 64, "{\"argv\":[\"cat\"],\"stdin\":\"%s\"}", b64);
	assert_int_equal(parse(json, &q, err), 0);
	assert_int_equal(q->msg.stdin_data.len, GUEST_EXEC_STDIN_MAX);
	guest_exec_request_free(q);
	free(raw);
	free(b64);
	free(json);
}

static void test_exec_result_json_shapes(void **state)
{
	struct guest_exec_result res = { .outcome = GUEST_EXEC_EXITED, .value = 7,
					 .out = (const uint8_t *)"hi\n", .out_len = 3 };
	char *json;
	size_t len;

	(void)state;
	assert_int_equal(guest_exec_result_json(&res, &json, &len), 0);
	assert_string_equal(json, "{\"exit_code\":7,\"stdout\":\"aGkK\",\"stderr\":\"\","
			    "\"truncated\":false}");
	assert_int_equal(len, strlen(json));
	free(json);
	res = (struct guest_exec_result){ .outcome = GUEST_EXEC_SIGNALED, .value = 9,
					  .truncated = true };
	assert_int_equal(guest_exec_result_json(&res, &json, &len), 0);
	assert_string_equal(json, "{\"signal\":9,\"stdout\":\"\",\"stderr\":\"\",\"truncated\":true}");
	free(json);
	res = (struct guest_exec_result){ .outcome = GUEST_EXEC_TIMED_OUT };
	assert_int_equal(guest_exec_result_json(&res, &json, &len), 0);
	assert_non_null(strstr(json, "\"timed_out\":true"));
	free(json);
	res = (struct guest_exec_result){ .outcome = GUEST_EXEC_START_ERROR };
	snprintf(res.start_error, sizeof(res.start_error), "argv[0] not found");
	assert_int_equal(guest_exec_result_json(&res, &json, &len), 0);
	assert_non_null(strstr(json, "\"start_error\":\"argv[0] not found\""));
	free(json);
}

/* ---- --vsock-listen (broker_config) -------------------------------------- */

static int parse_flags(const char *flag, const char *value, struct broker_config *cfg,
		       char *err)
{
	char *argv[] = { (char *)"miosa-broker", (char *)flag, (char *)value, NULL };

	return broker_config_from_args(flag ? 3 : 1, argv, cfg, err, BROKER_CONFIG_ERR_MAX);
}

static void test_vsock_listen_defaults_off_and_takes_on_off(void **state)
{
	char err[BROKER_CONFIG_ERR_MAX] = "";
	struct broker_config cfg;

	(void)state;
	assert_int_equal(parse_flags(NULL, NULL, &cfg, err), BROKER_CONFIG_RUN);
	assert_false(cfg.vsock_listen);
	broker_config_free(&cfg);
	assert_int_equal(parse_flags("--vsock-listen", "on", &cfg, err), BROKER_CONFIG_RUN);
	assert_true(cfg.vsock_listen);
	broker_config_free(&cfg);
	assert_int_equal(parse_flags("--vsock-listen", "off", &cfg, err), BROKER_CONFIG_RUN);
	assert_false(cfg.vsock_listen);
	broker_config_free(&cfg);
	assert_int_equal(parse_flags("--vsock-listen", "yes", &cfg, err), -EINVAL);
	assert_non_null(strstr(err, "must be on or off"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_upstream_addr_table),
		cmocka_unit_test(test_upstream_addr_other_family_is_refused),
		cmocka_unit_test(test_env_diff_identical_is_empty),
		cmocka_unit_test(test_env_diff_new_changed_and_removed),
		cmocka_unit_test(test_env_diff_from_empty_sets_all),
		cmocka_unit_test(test_env_diff_to_empty_unsets_all),
		cmocka_unit_test(test_exec_parse_full_request),
		cmocka_unit_test(test_exec_parse_defaults),
		cmocka_unit_test(test_exec_parse_rejects_bad_bodies),
		cmocka_unit_test(test_exec_parse_caps_stdin),
		cmocka_unit_test(test_exec_result_json_shapes),
		cmocka_unit_test(test_vsock_listen_defaults_off_and_takes_on_off),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
