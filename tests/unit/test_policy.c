/*
 * Unit tests of policy.h: the matcher table through policy_decide(), the
 * store-backed operations (allow, deny, lockdown, observe, tallies, caps),
 * persistence, templates (seeds case 10) and sandbox isolation.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "fixture.h"
#include "policy.h"
#include "store.h"

#define SBX_A "sbx_aaaaaaaaaaaaaaaaaaaaaaaa"
#define SBX_B "sbx_bbbbbbbbbbbbbbbbbbbbbbbb"
#define SBX_NONE "sbx_cccccccccccccccccccccccc"
#define T0 1700000000000000LL

/* ---- fixture ----------------------------------------------------------- */

struct fixture {
	char root[64];
	char state_dir[PATH_MAX];
	struct policy *p;
	char err[512];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	static const char *const sandboxes[] = { SBX_A, SBX_B, NULL };

	if (!f)
		return -1;
	if (fixture_tmpdir("policy", f->root) != 0)
		return -1;
	snprintf(f->state_dir, sizeof(f->state_dir), "%s/state", f->root);
	if (fixture_store_seed(f->state_dir, "t1", "Tenant One", T0, sandboxes, f->err,
			       sizeof(f->err)) != 0) {
		fprintf(stderr, "setup: %s\n", f->err);
		return -1;
	}
	if (policy_open(f->state_dir, &f->p, f->err, sizeof(f->err)) != 0) {
		fprintf(stderr, "setup: %s\n", f->err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	policy_close(f->p);
	fixture_rmtree(f->root);
	free(f);
	return 0;
}

static void reopen(struct fixture *f)
{
	policy_close(f->p);
	f->p = NULL;
	assert_int_equal(policy_open(f->state_dir, &f->p, f->err, sizeof(f->err)), 0);
}

/* Decide against the sandbox's stored policy. */
static enum policy_action decide(struct fixture *f, const char *sbx, const char *host,
				 uint16_t port, char rule[POLICY_RULE_MAX])
{
	struct policy_snapshot *snap = NULL;
	enum policy_action a;

	assert_int_equal(policy_snapshot_load(f->p, sbx, &snap), 0);
	a = policy_decide(snap, host, strlen(host), port, rule, POLICY_RULE_MAX);
	policy_snapshot_free(snap);
	return a;
}

static void must_allow(struct fixture *f, const char *sbx, const char *pattern, uint16_t port)
{
	int r = policy_allow(f->p, sbx, pattern, port);

	if (r < 0)
		fail_msg("allow %s: %s", pattern, policy_errmsg(f->p));
}

/* ---- the matcher table (pure: policy_snapshot_new + policy_decide) ------ */

struct match_case {
	const char *pattern;
	uint16_t entry_port;
	const char *host;
	uint16_t port;
	enum policy_action want;
};

static const struct match_case match_table[] = {
	{ "api.openai.com", 0, "api.openai.com", 443, POLICY_ALLOW },
	{ "api.openai.com", 0, "API.OpenAI.COM", 443, POLICY_ALLOW },
	{ "API.OPENAI.COM", 0, "api.openai.com", 80, POLICY_ALLOW },
	{ "api.openai.com.", 0, "api.openai.com", 443, POLICY_ALLOW },
	{ "api.openai.com", 0, "api.openai.com.", 443, POLICY_ALLOW },
	{ "api.openai.com", 0, "openai.com", 443, POLICY_DENY },
	{ "api.openai.com", 0, "x.api.openai.com", 443, POLICY_DENY },
	{ "api.openai.com", 0, "api.openai.com.evil.com", 443, POLICY_DENY },
	{ "*.openai.com", 0, "api.openai.com", 443, POLICY_ALLOW },
	{ "*.openai.com", 0, "a.b.openai.com", 443, POLICY_ALLOW },
	{ "*.openai.com", 0, "openai.com", 443, POLICY_DENY },     /* not the apex */
	{ "*.openai.com", 0, "evilopenai.com", 443, POLICY_DENY },
	{ "*.npmjs.com", 0, "registry.npmjs.com", 443, POLICY_ALLOW },
	{ "*.npmjs.com", 0, "npmjs.com", 443, POLICY_DENY },
	{ "*.NPMJS.com.", 0, "Registry.NPMjs.COM.", 443, POLICY_ALLOW },
	{ "xn--mnchen-3ya.de", 0, "XN--MNCHEN-3YA.DE", 443, POLICY_ALLOW },
	{ "*.xn--mnchen-3ya.de", 0, "www.xn--mnchen-3ya.de", 443, POLICY_ALLOW },
	{ "api.openai.com", 443, "api.openai.com", 443, POLICY_ALLOW },
	{ "api.openai.com", 443, "api.openai.com", 80, POLICY_DENY },
	{ "*.openai.com", 8443, "api.openai.com", 8443, POLICY_ALLOW },
	{ "*.openai.com", 8443, "api.openai.com", 443, POLICY_DENY },
	{ "10.1.2.3", 0, "10.1.2.3", 5432, POLICY_ALLOW },
	{ "10.1.2.3", 0, "10.1.2.4", 5432, POLICY_DENY },
	{ "2001:DB8:0:0::1", 0, "2001:db8::1", 443, POLICY_ALLOW },
	{ "[2001:db8::1]", 0, "2001:db8:0::1", 443, POLICY_ALLOW },
	{ "2001:db8::1", 0, "2001:db8::2", 443, POLICY_DENY },
};

static void test_matcher_table_exact_wildcard_case_dot_ports_ips(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(match_table) / sizeof(match_table[0]); i++) {
		const struct match_case *c = &match_table[i];
		struct policy_entry e = { .port = c->entry_port };
		struct policy_snapshot *snap = NULL;
		char err[256], rule[POLICY_RULE_MAX];

		snprintf(e.pattern, sizeof(e.pattern), "%s", c->pattern);
		if (policy_snapshot_new(POLICY_ENFORCE, &e, 1, &snap, err, sizeof(err)) != 0)
			fail_msg("case %zu: %s", i, err);
		if (policy_decide(snap, c->host, strlen(c->host), c->port, rule, sizeof(rule)) !=
		    c->want)
			fail_msg("case %zu: %s vs %s:%u gave the wrong answer (%s)", i,
				 c->pattern, c->host, (unsigned)c->port, rule);
		policy_snapshot_free(snap);
	}
}

static void test_malformed_patterns_are_rejected_naming_the_pattern(void **state)
{
	static const char *const bad[] = {
		"*foo.com", "a.*.com", "*", "*.com", "", "a..b.com", ".a.com", "-a.com",
		"a-.com", "api.openai.com:443", "münchen.de", "1.2.3", "example.123",
		"*.10.0.0.1", "01.2.3.4", "a b.com", "2001:db8::1%eth0",
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (policy_allow(f->p, SBX_A, bad[i], 0) != -EINVAL)
			fail_msg("pattern \"%s\" was accepted", bad[i]);
		if (!strstr(policy_errmsg(f->p), "pattern '"))
			fail_msg("message for \"%s\": %s", bad[i], policy_errmsg(f->p));
	}
	assert_int_equal(policy_allow(f->p, SBX_A, "*foo.com", 0), -EINVAL);
	assert_non_null(strstr(policy_errmsg(f->p), "'*foo.com'"));
	assert_non_null(strstr(policy_errmsg(f->p), "*.example.com"));
	assert_int_equal(policy_allow(f->p, SBX_A, NULL, 0), -EINVAL);
}

static void test_snapshot_new_rejects_bad_entries_and_mode(void **state)
{
	struct policy_entry e = { .pattern = "a.*.com" };
	struct policy_snapshot *snap = NULL;
	char err[256] = "";

	(void)state;
	assert_int_equal(policy_snapshot_new(POLICY_ENFORCE, &e, 1, &snap, err, sizeof(err)),
			 -EINVAL);
	assert_null(snap);
	assert_non_null(strstr(err, "a.*.com"));
	snprintf(e.pattern, sizeof(e.pattern), "ok.com");
	assert_int_equal(policy_snapshot_new((enum policy_mode)7, &e, 1, &snap, err,
					     sizeof(err)), -EINVAL);
	memset(e.pattern, 'a', sizeof(e.pattern)); /* no NUL inside the buffer */
	assert_int_equal(policy_snapshot_new(POLICY_ENFORCE, &e, 1, &snap, err, sizeof(err)),
			 -EINVAL);
	assert_null(snap);
}

/* ---- decide(): rules fired --------------------------------------------- */

static void test_decide_reports_observe_mode_rule(void **state)
{
	struct fixture *f = *state;
	char rule[POLICY_RULE_MAX];

	assert_int_equal(decide(f, SBX_A, "anything.example", 443, rule), POLICY_ALLOW);
	assert_string_equal(rule, "observe-mode");
}

static void test_decide_reports_matching_entry_and_port(void **state)
{
	struct fixture *f = *state;
	char rule[POLICY_RULE_MAX];

	must_allow(f, SBX_A, "*.OpenAI.com", 0);
	must_allow(f, SBX_A, "db.internal.example", 5432);
	assert_int_equal(policy_lockdown(f->p, SBX_A), 0);
	assert_int_equal(decide(f, SBX_A, "api.openai.com", 443, rule), POLICY_ALLOW);
	assert_string_equal(rule, "allow:*.openai.com");
	assert_int_equal(decide(f, SBX_A, "db.internal.example", 5432, rule), POLICY_ALLOW);
	assert_string_equal(rule, "allow:db.internal.example:5432");
	assert_int_equal(decide(f, SBX_A, "example.org", 443, rule), POLICY_DENY);
	assert_string_equal(rule, "deny:host-not-allowed");
	must_allow(f, SBX_A, "2001:db8::1", 8443);
	assert_int_equal(decide(f, SBX_A, "2001:db8::1", 8443, rule), POLICY_ALLOW);
	assert_string_equal(rule, "allow:[2001:db8::1]:8443");
}

static void test_decide_prefers_exact_entry_over_wildcard(void **state)
{
	struct policy_entry e[2] = { { .pattern = "*.openai.com" }, { .pattern = "api.openai.com" } };
	struct policy_snapshot *snap = NULL;
	char rule[POLICY_RULE_MAX];

	(void)state;
	assert_int_equal(policy_snapshot_new(POLICY_ENFORCE, e, 2, &snap, NULL, 0), 0);
	assert_int_equal(policy_snapshot_size(snap), 2);
	assert_int_equal(policy_decide(snap, "api.openai.com", 14, 443, rule, sizeof(rule)),
			 POLICY_ALLOW);
	assert_string_equal(rule, "allow:api.openai.com");
	policy_snapshot_free(snap);
}

static void test_decide_denies_invalid_destination_in_both_modes(void **state)
{
	struct policy_snapshot *snap = NULL;
	char rule[POLICY_RULE_MAX];

	(void)state;
	for (int m = POLICY_OBSERVE; m <= POLICY_ENFORCE; m++) {
		assert_int_equal(policy_snapshot_new((enum policy_mode)m, NULL, 0, &snap, NULL, 0), 0);
		assert_int_equal(policy_decide(snap, "a..b", 4, 443, rule, sizeof(rule)),
				 POLICY_DENY);
		assert_string_equal(rule, "deny:invalid-destination");
		assert_int_equal(policy_decide(snap, "ok.com", 6, 0, rule, sizeof(rule)),
				 POLICY_DENY);
		assert_int_equal(policy_decide(snap, "*.ok.com", 8, 443, rule, sizeof(rule)),
				 POLICY_DENY);
		assert_int_equal(policy_decide(snap, "ok.com\0x", 8, 443, rule, sizeof(rule)),
				 POLICY_DENY);
		policy_snapshot_free(snap);
	}
}

static void test_decide_with_many_entries_finds_each_exact_one(void **state)
{
	struct policy_entry *e = calloc(POLICY_ALLOW_MAX, sizeof(*e));
	struct policy_snapshot *snap = NULL;
	char host[64], rule[POLICY_RULE_MAX];

	(void)state;
	assert_non_null(e);
	for (int i = 0; i < POLICY_ALLOW_MAX; i++)
		snprintf(e[i].pattern, sizeof(e[i].pattern), "h%04d.example.com", (i * 7919) % 1024);
	assert_int_equal(policy_snapshot_new(POLICY_ENFORCE, e, POLICY_ALLOW_MAX, &snap, NULL, 0), 0);
	for (int i = 0; i < 1024; i++) {
		snprintf(host, sizeof(host), "H%04d.example.com", i);
		assert_int_equal(policy_decide(snap, host, strlen(host), 443, rule, sizeof(rule)),
				 POLICY_ALLOW);
	}
	assert_int_equal(policy_decide(snap, "h1024.example.com", 17, 443, rule, sizeof(rule)),
			 POLICY_DENY);
	policy_snapshot_free(snap);
	assert_int_equal(policy_snapshot_new(POLICY_ENFORCE, e, POLICY_ALLOW_MAX + 1, &snap,
					     NULL, 0), -ENOSPC);
	free(e);
}

/* ---- modes, allow, deny ------------------------------------------------ */

static void test_new_sandbox_is_in_observe_mode_with_empty_lists(void **state)
{
	struct fixture *f = *state;
	struct policy_status s;

	assert_int_equal(policy_status(f->p, SBX_A, &s), 0);
	assert_int_equal(s.mode, POLICY_OBSERVE);
	assert_int_equal(s.n_allow, 0);
	assert_int_equal(s.n_observed, 0);
	assert_int_equal(s.n_pending, 0);
	policy_status_clear(&s);
}

static void test_allow_is_idempotent_and_normalizes(void **state)
{
	struct fixture *f = *state;
	struct policy_status s;

	assert_int_equal(policy_allow(f->p, SBX_A, "PyPI.org.", 0), 1);
	assert_int_equal(policy_allow(f->p, SBX_A, "pypi.org", 0), 0);
	assert_int_equal(policy_allow(f->p, SBX_A, "pypi.org", 443), 1);
	assert_int_equal(policy_status(f->p, SBX_A, &s), 0);
	assert_int_equal(s.n_allow, 2);
	assert_string_equal(s.allow[0].pattern, "pypi.org");
	assert_int_equal(s.allow[0].port, 0);
	assert_int_equal(s.allow[1].port, 443);
	assert_true(s.allow[0].created_at_us > 0);
	policy_status_clear(&s);
}

static void test_deny_removes_entry_and_absent_is_enoent(void **state)
{
	struct fixture *f = *state;
	char rule[POLICY_RULE_MAX];

	must_allow(f, SBX_A, "pypi.org", 0);
	assert_int_equal(policy_lockdown(f->p, SBX_A), 0);
	assert_int_equal(decide(f, SBX_A, "pypi.org", 443, rule), POLICY_ALLOW);
	assert_int_equal(policy_deny(f->p, SBX_A, "PYPI.org", 0), 1);
	assert_int_equal(decide(f, SBX_A, "pypi.org", 443, rule), POLICY_DENY);
	assert_int_equal(policy_deny(f->p, SBX_A, "pypi.org", 0), -ENOENT);
	assert_non_null(strstr(policy_errmsg(f->p), "pypi.org"));
	assert_int_equal(policy_deny(f->p, SBX_A, "*bad.org", 0), -EINVAL);
}

static void test_deny_without_port_removes_every_port_of_pattern(void **state)
{
	struct fixture *f = *state;
	struct policy_status s;

	must_allow(f, SBX_A, "x.example.com", 0);
	must_allow(f, SBX_A, "x.example.com", 443);
	must_allow(f, SBX_A, "x.example.com", 8443);
	must_allow(f, SBX_A, "y.example.com", 0);
	assert_int_equal(policy_deny(f->p, SBX_A, "x.example.com", 8443), 1);
	assert_int_equal(policy_deny(f->p, SBX_A, "x.example.com", 8443), -ENOENT);
	assert_int_equal(policy_deny(f->p, SBX_A, "x.example.com", 0), 2);
	assert_int_equal(policy_status(f->p, SBX_A, &s), 0);
	assert_int_equal(s.n_allow, 1);
	assert_string_equal(s.allow[0].pattern, "y.example.com");
	policy_status_clear(&s);
}

static void test_deny_does_not_remove_wildcard_covering_host(void **state)
{
	struct fixture *f = *state;

	must_allow(f, SBX_A, "*.openai.com", 0);
	assert_int_equal(policy_deny(f->p, SBX_A, "api.openai.com", 0), -ENOENT);
}

static void test_writes_for_unknown_sandbox_are_enoent(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(policy_allow(f->p, SBX_NONE, "a.com", 0), -ENOENT);
	assert_non_null(strstr(policy_errmsg(f->p), SBX_NONE));
	assert_int_equal(policy_lockdown(f->p, SBX_NONE), -ENOENT);
	assert_int_equal(policy_record_observed(f->p, SBX_NONE, "a.com", 443, T0), -ENOENT);
	assert_int_equal(policy_allow(f->p, "", "a.com", 0), -EINVAL);
	assert_int_equal(policy_allow(f->p, "sbx x", "a.com", 0), -EINVAL);
	assert_int_equal(policy_allow(f->p, NULL, "a.com", 0), -EINVAL);
}

/* ---- observed and pending ---------------------------------------------- */

static void test_record_observed_counts_per_host_and_port(void **state)
{
	struct fixture *f = *state;
	struct policy_status s;

	assert_int_equal(policy_record_observed(f->p, SBX_A, "API.openai.com.", 443, T0 + 10), 0);
	assert_int_equal(policy_record_observed(f->p, SBX_A, "api.openai.com", 443, T0 + 5), 0);
	assert_int_equal(policy_record_observed(f->p, SBX_A, "api.openai.com", 443, T0 + 30), 0);
	assert_int_equal(policy_record_observed(f->p, SBX_A, "api.openai.com", 80, T0 + 1), 0);
	assert_int_equal(policy_record_observed(f->p, SBX_A, "bad..host", 80, T0), -EINVAL);
	assert_int_equal(policy_record_observed(f->p, SBX_A, "ok.com", 0, T0), -EINVAL);
	assert_int_equal(policy_status(f->p, SBX_A, &s), 0);
	assert_int_equal(s.n_observed, 2);
	assert_string_equal(s.observed[0].host, "api.openai.com");
	assert_int_equal(s.observed[0].port, 80);
	assert_int_equal(s.observed[1].port, 443);
	assert_int_equal(s.observed[1].count, 3);
	assert_int_equal(s.observed[1].first_seen_us, T0 + 5);
	assert_int_equal(s.observed[1].last_seen_us, T0 + 30);
	policy_status_clear(&s);
}

static void test_record_denied_lands_in_pending_most_recent_first(void **state)
{
	struct fixture *f = *state;
	struct policy_status s;

	assert_int_equal(policy_record_denied(f->p, SBX_A, "evil.example", 443, T0 + 1), 0);
	assert_int_equal(policy_record_denied(f->p, SBX_A, "pypi.org", 443, T0 + 2), 0);
	assert_int_equal(policy_record_denied(f->p, SBX_A, "evil.example", 443, T0 + 3), 0);
	assert_int_equal(policy_status(f->p, SBX_A, &s), 0);
	assert_int_equal(s.n_pending, 2);
	assert_string_equal(s.pending[0].host, "evil.example");
	assert_int_equal(s.pending[0].count, 2);
	assert_int_equal(s.pending[0].first_seen_us, T0 + 1);
	assert_int_equal(s.pending[0].last_seen_us, T0 + 3);
	assert_string_equal(s.pending[1].host, "pypi.org");
	assert_int_equal(s.n_observed, 0);
	policy_status_clear(&s);
}

static void test_allow_removes_host_from_pending(void **state)
{
	struct fixture *f = *state;
	struct policy_status s;

	assert_int_equal(policy_record_denied(f->p, SBX_A, "pypi.org", 443, T0), 0);
	assert_int_equal(policy_record_denied(f->p, SBX_A, "files.pythonhosted.org", 443, T0), 0);
	assert_int_equal(policy_record_denied(f->p, SBX_A, "pythonhosted.org", 443, T0), 0);
	assert_int_equal(policy_record_denied(f->p, SBX_A, "evil.example", 443, T0), 0);
	must_allow(f, SBX_A, "pypi.org", 0);
	must_allow(f, SBX_A, "*.pythonhosted.org", 0); /* not the apex */
	assert_int_equal(policy_status(f->p, SBX_A, &s), 0);
	assert_int_equal(s.n_pending, 2);
	assert_true(strcmp(s.pending[0].host, "evil.example") == 0 ||
		    strcmp(s.pending[1].host, "evil.example") == 0);
	assert_true(strcmp(s.pending[0].host, "pythonhosted.org") == 0 ||
		    strcmp(s.pending[1].host, "pythonhosted.org") == 0);
	policy_status_clear(&s);
}

static void test_allow_with_port_removes_only_that_port_from_pending(void **state)
{
	struct fixture *f = *state;
	struct policy_status s;

	assert_int_equal(policy_record_denied(f->p, SBX_A, "db.example", 5432, T0), 0);
	assert_int_equal(policy_record_denied(f->p, SBX_A, "db.example", 22, T0 + 1), 0);
	must_allow(f, SBX_A, "db.example", 5432);
	assert_int_equal(policy_status(f->p, SBX_A, &s), 0);
	assert_int_equal(s.n_pending, 1);
	assert_int_equal(s.pending[0].port, 22);
	policy_status_clear(&s);
}

static void test_full_observed_list_counts_existing_and_drops_new(void **state)
{
	struct fixture *f = *state;
	struct policy_status s;
	char host[64];

	for (int i = 0; i < POLICY_OBSERVED_MAX; i++) {
		snprintf(host, sizeof(host), "h%d.example.com", i);
		assert_int_equal(policy_record_observed(f->p, SBX_A, host, 443, T0 + i), 0);
	}
	assert_int_equal(policy_record_observed(f->p, SBX_A, "new.example.com", 443, T0), -ENOSPC);
	assert_non_null(strstr(policy_errmsg(f->p), "new.example.com"));
	assert_int_equal(policy_record_observed(f->p, SBX_A, "h7.example.com", 80, T0), -ENOSPC);
	assert_int_equal(policy_record_observed(f->p, SBX_A, "h7.example.com", 443, T0 + 99999), 0);
	/* The other sandbox has its own cap. */
	assert_int_equal(policy_record_observed(f->p, SBX_B, "new.example.com", 443, T0), 0);
	assert_int_equal(policy_status(f->p, SBX_A, &s), 0);
	assert_int_equal(s.n_observed, POLICY_OBSERVED_MAX);
	for (size_t i = 0; i < s.n_observed; i++)
		if (strcmp(s.observed[i].host, "h7.example.com") == 0)
			assert_int_equal(s.observed[i].count, 2);
	policy_status_clear(&s);
}

static void test_full_pending_list_drops_new_hosts(void **state)
{
	struct fixture *f = *state;
	char host[64];

	for (int i = 0; i < POLICY_PENDING_MAX; i++) {
		snprintf(host, sizeof(host), "p%d.example.com", i);
		assert_int_equal(policy_record_denied(f->p, SBX_A, host, 443, T0 + i), 0);
	}
	assert_int_equal(policy_record_denied(f->p, SBX_A, "late.example.com", 443, T0), -ENOSPC);
	assert_int_equal(policy_record_denied(f->p, SBX_A, "p1.example.com", 443, T0), 0);
	/* Allowing frees room. */
	must_allow(f, SBX_A, "p1.example.com", 0);
	assert_int_equal(policy_record_denied(f->p, SBX_A, "late.example.com", 443, T0), 0);
}

static void test_allowlist_cap_is_enforced(void **state)
{
	struct fixture *f = *state;
	char pat[64];

	for (int i = 0; i < POLICY_ALLOW_MAX; i++) {
		snprintf(pat, sizeof(pat), "a%d.example.com", i);
		assert_int_equal(policy_allow(f->p, SBX_A, pat, 0), 1);
	}
	assert_int_equal(policy_allow(f->p, SBX_A, "one-more.example.com", 0), -ENOSPC);
	assert_int_equal(policy_allow(f->p, SBX_A, "a5.example.com", 0), 0); /* existing: fine */
	assert_int_equal(policy_deny(f->p, SBX_A, "a5.example.com", 0), 1);
	assert_int_equal(policy_allow(f->p, SBX_A, "one-more.example.com", 0), 1);
}

/* ---- lockdown and observe ---------------------------------------------- */

static void test_lockdown_turns_observed_hosts_into_exact_any_port_entries(void **state)
{
	struct fixture *f = *state;
	struct policy_status s;
	char rule[POLICY_RULE_MAX];

	assert_int_equal(policy_record_observed(f->p, SBX_A, "api.openai.com", 443, T0), 0);
	assert_int_equal(policy_record_observed(f->p, SBX_A, "api.openai.com", 80, T0), 0);
	assert_int_equal(policy_record_observed(f->p, SBX_A, "pypi.org", 443, T0), 0);
	assert_int_equal(policy_record_observed(f->p, SBX_A, "2001:DB8::1", 443, T0), 0);
	assert_int_equal(policy_lockdown(f->p, SBX_A), 3);
	assert_int_equal(policy_status(f->p, SBX_A, &s), 0);
	assert_int_equal(s.mode, POLICY_ENFORCE);
	assert_int_equal(s.n_allow, 3);
	assert_string_equal(s.allow[0].pattern, "2001:db8::1");
	assert_string_equal(s.allow[1].pattern, "api.openai.com");
	assert_string_equal(s.allow[2].pattern, "pypi.org");
	for (size_t i = 0; i < s.n_allow; i++)
		assert_int_equal(s.allow[i].port, 0);
	assert_int_equal(s.n_observed, 4); /* kept */
	policy_status_clear(&s);
	/* The walkthrough: those still work, a third gets denied. */
	assert_int_equal(decide(f, SBX_A, "api.openai.com", 443, rule), POLICY_ALLOW);
	assert_string_equal(rule, "allow:api.openai.com");
	assert_int_equal(decide(f, SBX_A, "pypi.org", 8080, rule), POLICY_ALLOW);
	assert_int_equal(decide(f, SBX_A, "example.org", 443, rule), POLICY_DENY);
}

static void test_lockdown_keeps_existing_entries_and_skips_covered_hosts(void **state)
{
	struct fixture *f = *state;
	struct policy_status s;

	must_allow(f, SBX_A, "*.openai.com", 0);
	must_allow(f, SBX_A, "db.example", 5432);
	assert_int_equal(policy_record_observed(f->p, SBX_A, "api.openai.com", 443, T0), 0);
	assert_int_equal(policy_record_observed(f->p, SBX_A, "db.example", 5432, T0), 0);
	assert_int_equal(policy_lockdown(f->p, SBX_A), 1); /* db.example, any port */
	assert_int_equal(policy_status(f->p, SBX_A, &s), 0);
	assert_int_equal(s.n_allow, 3);
	policy_status_clear(&s);
	/* Running it again adds nothing. */
	assert_int_equal(policy_lockdown(f->p, SBX_A), 0);
}

static void test_lockdown_prunes_pending_it_now_allows(void **state)
{
	struct fixture *f = *state;
	struct policy_status s;

	assert_int_equal(policy_record_observed(f->p, SBX_A, "pypi.org", 443, T0), 0);
	assert_int_equal(policy_record_denied(f->p, SBX_A, "pypi.org", 443, T0), 0);
	assert_int_equal(policy_record_denied(f->p, SBX_A, "evil.example", 443, T0), 0);
	assert_int_equal(policy_lockdown(f->p, SBX_A), 1);
	assert_int_equal(policy_status(f->p, SBX_A, &s), 0);
	assert_int_equal(s.n_pending, 1);
	assert_string_equal(s.pending[0].host, "evil.example");
	policy_status_clear(&s);
}

static void test_lockdown_over_cap_changes_nothing(void **state)
{
	struct fixture *f = *state;
	struct policy_status s;
	char name[64];

	for (int i = 0; i < POLICY_ALLOW_MAX - 1; i++) {
		snprintf(name, sizeof(name), "a%d.example.com", i);
		assert_int_equal(policy_allow(f->p, SBX_A, name, 0), 1);
	}
	assert_int_equal(policy_record_observed(f->p, SBX_A, "o1.example.net", 443, T0), 0);
	assert_int_equal(policy_record_observed(f->p, SBX_A, "o2.example.net", 443, T0), 0);
	assert_int_equal(policy_lockdown(f->p, SBX_A), -ENOSPC);
	assert_non_null(strstr(policy_errmsg(f->p), "1025"));
	assert_int_equal(policy_status(f->p, SBX_A, &s), 0);
	assert_int_equal(s.mode, POLICY_OBSERVE);          /* atomic: mode unchanged */
	assert_int_equal(s.n_allow, POLICY_ALLOW_MAX - 1); /* and no entry added */
	policy_status_clear(&s);
}

static void test_lockdown_waits_for_a_concurrent_writer_and_is_atomic(void **state)
{
	struct fixture *f = *state;
	struct policy *other = NULL;
	struct policy_status s;

	assert_int_equal(policy_record_observed(f->p, SBX_A, "pypi.org", 443, T0), 0);
	assert_int_equal(policy_open(f->state_dir, &other, f->err, sizeof(f->err)), 0);
	/* A reader's snapshot taken before lockdown sees neither half. */
	assert_int_equal(policy_status(other, SBX_A, &s), 0);
	assert_int_equal(s.mode, POLICY_OBSERVE);
	assert_int_equal(s.n_allow, 0);
	policy_status_clear(&s);
	assert_int_equal(policy_lockdown(f->p, SBX_A), 1);
	assert_int_equal(policy_status(other, SBX_A, &s), 0);
	assert_int_equal(s.mode, POLICY_ENFORCE);
	assert_int_equal(s.n_allow, 1);
	policy_status_clear(&s);
	policy_close(other);
}

static void test_observe_reverts_mode_and_keeps_lists(void **state)
{
	struct fixture *f = *state;
	struct policy_status s;
	char rule[POLICY_RULE_MAX];

	assert_int_equal(policy_record_observed(f->p, SBX_A, "pypi.org", 443, T0), 0);
	assert_int_equal(policy_lockdown(f->p, SBX_A), 1);
	assert_int_equal(policy_record_denied(f->p, SBX_A, "evil.example", 443, T0), 0);
	assert_int_equal(policy_observe(f->p, SBX_A), 0);
	assert_int_equal(policy_status(f->p, SBX_A, &s), 0);
	assert_int_equal(s.mode, POLICY_OBSERVE);
	assert_int_equal(s.n_allow, 1);
	assert_int_equal(s.n_observed, 1);
	assert_int_equal(s.n_pending, 1);
	policy_status_clear(&s);
	assert_int_equal(decide(f, SBX_A, "evil.example", 443, rule), POLICY_ALLOW);
	assert_string_equal(rule, "observe-mode");
}

/* ---- persistence, templates, isolation --------------------------------- */

static void test_policy_survives_reopen(void **state)
{
	struct fixture *f = *state;
	struct policy_status s;
	char rule[POLICY_RULE_MAX];

	must_allow(f, SBX_A, "*.npmjs.com", 0);
	assert_int_equal(policy_record_observed(f->p, SBX_A, "registry.npmjs.com", 443, T0), 0);
	assert_int_equal(policy_record_observed(f->p, SBX_A, "pypi.org", 443, T0), 0);
	assert_int_equal(policy_record_denied(f->p, SBX_A, "npmjs.com", 443, T0), 0);
	/* registry.npmjs.com is covered by the wildcard; the apex stays pending. */
	assert_int_equal(policy_lockdown(f->p, SBX_A), 1);
	reopen(f);
	assert_int_equal(policy_status(f->p, SBX_A, &s), 0);
	assert_int_equal(s.mode, POLICY_ENFORCE);
	assert_int_equal(s.n_allow, 2);
	assert_string_equal(s.pending[0].host, "npmjs.com");
	assert_int_equal(s.n_observed, 2);
	assert_int_equal(s.n_pending, 1);
	policy_status_clear(&s);
	assert_int_equal(decide(f, SBX_A, "npmjs.com", 443, rule), POLICY_DENY);
	assert_int_equal(decide(f, SBX_A, "cdn.npmjs.com", 443, rule), POLICY_ALLOW);
}

static void test_schema_version_includes_policy_step(void **state)
{
	(void)state;
	assert_true(store_schema_version() >= 4);
}

static void test_seeds_case_10_template_in_enforce_yields_enforce_and_observe_fixes_it(void **state)
{
	struct fixture *f = *state;
	struct policy_template t = { 0 };
	char rule[POLICY_RULE_MAX];

	must_allow(f, SBX_A, "*.openai.com", 0);
	must_allow(f, SBX_A, "db.example", 5432);
	assert_int_equal(policy_lockdown(f->p, SBX_A), 0);
	assert_int_equal(policy_export(f->p, SBX_A, &t), 0);
	assert_int_equal(t.mode, POLICY_ENFORCE);
	assert_int_equal(t.n_allow, 2);
	assert_int_equal(t.allow[0].created_at_us, 0);
	/* The new sandbox made from the template. */
	assert_int_equal(policy_import(f->p, SBX_B, &t), 0);
	policy_template_clear(&t);
	assert_int_equal(decide(f, SBX_B, "api.openai.com", 443, rule), POLICY_ALLOW);
	assert_int_equal(decide(f, SBX_B, "pypi.org", 443, rule), POLICY_DENY);
	assert_string_equal(rule, "deny:host-not-allowed");
	/* The fix from the seeds: observe() right after creation. */
	assert_int_equal(policy_observe(f->p, SBX_B), 0);
	assert_int_equal(decide(f, SBX_B, "pypi.org", 443, rule), POLICY_ALLOW);
	assert_string_equal(rule, "observe-mode");
}

static void test_import_replaces_allowlist_and_rejects_bad_entry_without_writing(void **state)
{
	struct fixture *f = *state;
	struct policy_entry e[2] = { { .pattern = "Good.example" }, { .pattern = "*bad.example" } };
	struct policy_template t = { .mode = POLICY_ENFORCE, .allow = e, .n_allow = 2 };
	struct policy_status s;

	must_allow(f, SBX_B, "old.example", 0);
	assert_int_equal(policy_import(f->p, SBX_B, &t), -EINVAL);
	assert_non_null(strstr(policy_errmsg(f->p), "*bad.example"));
	assert_int_equal(policy_status(f->p, SBX_B, &s), 0);
	assert_int_equal(s.mode, POLICY_OBSERVE);
	assert_int_equal(s.n_allow, 1);
	policy_status_clear(&s);
	t.n_allow = 1;
	assert_int_equal(policy_import(f->p, SBX_B, &t), 0);
	assert_int_equal(policy_status(f->p, SBX_B, &s), 0);
	assert_int_equal(s.mode, POLICY_ENFORCE);
	assert_int_equal(s.n_allow, 1);
	assert_string_equal(s.allow[0].pattern, "good.example");
	policy_status_clear(&s);
	assert_int_equal(policy_import(f->p, SBX_NONE, &t), -ENOENT);
}

static void test_two_sandboxes_are_isolated(void **state)
{
	struct fixture *f = *state;
	struct policy_status s;
	char rule[POLICY_RULE_MAX];

	must_allow(f, SBX_A, "api.openai.com", 0);
	assert_int_equal(policy_record_observed(f->p, SBX_A, "pypi.org", 443, T0), 0);
	assert_int_equal(policy_record_denied(f->p, SBX_A, "evil.example", 443, T0), 0);
	assert_int_equal(policy_lockdown(f->p, SBX_A), 1);
	assert_int_equal(policy_status(f->p, SBX_B, &s), 0);
	assert_int_equal(s.mode, POLICY_OBSERVE);
	assert_int_equal(s.n_allow + s.n_observed + s.n_pending, 0);
	policy_status_clear(&s);
	must_allow(f, SBX_B, "api.openai.com", 0);
	assert_int_equal(policy_lockdown(f->p, SBX_B), 0);
	assert_int_equal(decide(f, SBX_B, "pypi.org", 443, rule), POLICY_DENY);
	assert_int_equal(decide(f, SBX_A, "pypi.org", 443, rule), POLICY_ALLOW);
	assert_int_equal(policy_deny(f->p, SBX_B, "api.openai.com", 0), 1);
	assert_int_equal(decide(f, SBX_A, "api.openai.com", 443, rule), POLICY_ALLOW);
}

static void test_deleting_a_sandbox_removes_its_policy_rows(void **state)
{
	struct fixture *f = *state;
	struct policy_status s;
	struct store *st = NULL;

	must_allow(f, SBX_A, "api.openai.com", 0);
	assert_int_equal(policy_record_observed(f->p, SBX_A, "pypi.org", 443, T0), 0);
	assert_int_equal(policy_lockdown(f->p, SBX_A), 1);
	assert_int_equal(store_open(f->state_dir, &st, f->err, sizeof(f->err)), 0);
	assert_int_equal(store_sandbox_delete(st, SBX_A), 0);
	assert_int_equal(fixture_add_sandbox(st, "t1", SBX_A, T0), 0); /* same id again: a clean slate */
	store_close(st);
	assert_int_equal(policy_status(f->p, SBX_A, &s), 0);
	assert_int_equal(s.mode, POLICY_OBSERVE);
	assert_int_equal(s.n_allow + s.n_observed + s.n_pending, 0);
	policy_status_clear(&s);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matcher_table_exact_wildcard_case_dot_ports_ips),
		T(test_malformed_patterns_are_rejected_naming_the_pattern),
		cmocka_unit_test(test_snapshot_new_rejects_bad_entries_and_mode),
		T(test_decide_reports_observe_mode_rule),
		T(test_decide_reports_matching_entry_and_port),
		cmocka_unit_test(test_decide_prefers_exact_entry_over_wildcard),
		cmocka_unit_test(test_decide_denies_invalid_destination_in_both_modes),
		cmocka_unit_test(test_decide_with_many_entries_finds_each_exact_one),
		T(test_new_sandbox_is_in_observe_mode_with_empty_lists),
		T(test_allow_is_idempotent_and_normalizes),
		T(test_deny_removes_entry_and_absent_is_enoent),
		T(test_deny_without_port_removes_every_port_of_pattern),
		T(test_deny_does_not_remove_wildcard_covering_host),
		T(test_writes_for_unknown_sandbox_are_enoent),
		T(test_record_observed_counts_per_host_and_port),
		T(test_record_denied_lands_in_pending_most_recent_first),
		T(test_allow_removes_host_from_pending),
		T(test_allow_with_port_removes_only_that_port_from_pending),
		T(test_full_observed_list_counts_existing_and_drops_new),
		T(test_full_pending_list_drops_new_hosts),
		T(test_allowlist_cap_is_enforced),
		T(test_lockdown_turns_observed_hosts_into_exact_any_port_entries),
		T(test_lockdown_keeps_existing_entries_and_skips_covered_hosts),
		T(test_lockdown_prunes_pending_it_now_allows),
		T(test_lockdown_over_cap_changes_nothing),
		T(test_lockdown_waits_for_a_concurrent_writer_and_is_atomic),
		T(test_observe_reverts_mode_and_keeps_lists),
		T(test_policy_survives_reopen),
		cmocka_unit_test(test_schema_version_includes_policy_step),
		T(test_seeds_case_10_template_in_enforce_yields_enforce_and_observe_fixes_it),
		T(test_import_replaces_allowlist_and_rejects_bad_entry_without_writing),
		T(test_two_sandboxes_are_isolated),
		T(test_deleting_a_sandbox_removes_its_policy_rows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
