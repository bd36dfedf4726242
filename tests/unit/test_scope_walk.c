#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "scope_walk.h"

#define MAXC 8

/* Shorthands for the table. */
#define SBX SCOPE_WALK_SANDBOX
#define USR SCOPE_WALK_USER
#define EXU SCOPE_WALK_EXTERNAL_USER
#define EXW SCOPE_WALK_EXTERNAL_WORKSPACE
#define WSP SCOPE_WALK_WORKSPACE
#define TEN SCOPE_WALK_TENANT

/* Every optional level set (a macro: static tables need constant initializers). */
#define FULL { "sbx-1", "t1", "u1", "alice", "team-a", "w1" }
static const struct scope_walk_attribution full = FULL;

/* One candidate of each scope for the same env name, most specific first. */
#define ALL_LEVELS \
	{ "t1", SBX, "sbx-1", "KEY", "s-sandbox" }, \
	{ "t1", USR, "u1", "KEY", "s-user" }, \
	{ "t1", EXU, "alice", "KEY", "s-extuser" }, \
	{ "t1", EXW, "team-a", "KEY", "s-extws" }, \
	{ "t1", WSP, "w1", "KEY", "s-ws" }, \
	{ "t1", TEN, "t1", "KEY", "s-tenant" }

struct walk_case {
	const char *what;
	struct scope_walk_attribution a;
	struct scope_walk_candidate c[MAXC];
	size_t n;
	int want_count;
	size_t want[MAXC]; /* candidate indices, in env-name order */
};

static const struct walk_case cases[] = {
	{ "sandbox beats every wider scope", FULL, { ALL_LEVELS }, 6, 1, { 0 } },
	{ "user beats external_user and wider", FULL,
	  { { "t1", TEN, "t1", "KEY", "s-tenant" }, { "t1", WSP, "w1", "KEY", "s-ws" },
	    { "t1", EXW, "team-a", "KEY", "s-extws" }, { "t1", EXU, "alice", "KEY", "s-eu" },
	    { "t1", USR, "u1", "KEY", "s-user" } }, 5, 1, { 4 } },
	{ "external_user beats external_workspace", FULL,
	  { { "t1", EXW, "team-a", "KEY", "a" }, { "t1", EXU, "alice", "KEY", "b" },
	    { "t1", TEN, "t1", "KEY", "c" } }, 3, 1, { 1 } },
	{ "external_workspace beats workspace", FULL,
	  { { "t1", WSP, "w1", "KEY", "a" }, { "t1", EXW, "team-a", "KEY", "b" } }, 2, 1, { 1 } },
	{ "workspace beats tenant", FULL,
	  { { "t1", TEN, "t1", "KEY", "a" }, { "t1", WSP, "w1", "KEY", "b" } }, 2, 1, { 1 } },
	{ "tenant alone applies", FULL, { { "t1", TEN, "t1", "KEY", "a" } }, 1, 1, { 0 } },
	{ "nothing matched, no binding", FULL,
	  { { "t1", USR, "u2", "KEY", "a" }, { "t1", SBX, "sbx-2", "KEY", "b" } }, 2, 0, { 0 } },
	{ "no candidates", FULL, { { NULL, 0, NULL, NULL, NULL } }, 0, 0, { 0 } },
	{ "other tenant never applies, even with equal ids", FULL,
	  { { "t2", SBX, "sbx-1", "KEY", "a" }, { "t2", TEN, "t1", "KEY", "b" } }, 2, 0, { 0 } },
	{ "tenant-scope id must be the sandbox's tenant", FULL,
	  { { "t1", TEN, "t2", "KEY", "a" } }, 1, 0, { 0 } },
	{ "ids are per level: user id 'alice' is not external_user 'alice'",
	  { "sbx-1", "t1", "alice", NULL, NULL, NULL },
	  { { "t1", EXU, "alice", "KEY", "a" } }, 1, 0, { 0 } },
	{ "empty optional id never matches an empty scope_id",
	  { "sbx-1", "t1", "", "", "", "" },
	  { { "t1", USR, "", "KEY", "a" }, { "t1", EXU, "", "KEY", "b" },
	    { "t1", EXW, "", "KEY", "c" }, { "t1", WSP, "", "KEY", "d" } }, 4, 0, { 0 } },
	{ "ids compare case-sensitively", FULL,
	  { { "t1", USR, "U1", "KEY", "a" } }, 1, 0, { 0 } },
	{ "env names are case-sensitive and resolve independently", FULL,
	  { { "t1", TEN, "t1", "openai_api_key", "lower" },
	    { "t1", SBX, "sbx-1", "OPENAI_API_KEY", "upper" } }, 2, 2, { 1, 0 } },
	{ "each env name gets its own winner, sorted by env", FULL,
	  { { "t1", TEN, "t1", "ZED", "z-tenant" }, { "t1", USR, "u1", "ALPHA", "a-user" },
	    { "t1", TEN, "t1", "ALPHA", "a-tenant" }, { "t1", WSP, "w1", "ZED", "z-ws" } },
	  4, 2, { 1, 3 } },
	{ "tie at one scope: smallest secret name wins", FULL,
	  { { "t1", TEN, "t1", "KEY", "zeta" }, { "t1", TEN, "t1", "KEY", "alpha" } },
	  2, 1, { 1 } },
	{ "tie with equal names: earlier index wins", FULL,
	  { { "t1", WSP, "w1", "KEY", "same" }, { "t1", WSP, "w1", "KEY", "same" } },
	  2, 1, { 0 } },
	/* seeds/security-troubleshooting.txt #2 */
	{ "#2 workspace secret invisible to a sandbox outside the workspace",
	  { "sbx-1", "t1", NULL, NULL, NULL, "w2" },
	  { { "t1", WSP, "w1", "OPENAI_API_KEY", "openai_key" } }, 1, 0, { 0 } },
	{ "#2 workspace secret invisible to a sandbox with no workspace",
	  { "sbx-1", "t1", NULL, NULL, NULL, NULL },
	  { { "t1", WSP, "w1", "OPENAI_API_KEY", "openai_key" } }, 1, 0, { 0 } },
	{ "#2 tenant secret of another tenant is invisible",
	  { "sbx-1", "t1", NULL, NULL, NULL, "w1" },
	  { { "t2", TEN, "t2", "OPENAI_API_KEY", "openai_key" } }, 1, 0, { 0 } },
	{ "#2 sandbox binding fixes it",
	  { "sbx-1", "t1", NULL, NULL, NULL, "w2" },
	  { { "t1", WSP, "w1", "OPENAI_API_KEY", "ws" },
	    { "t1", SBX, "sbx-1", "OPENAI_API_KEY", "direct" } }, 2, 1, { 1 } },
	/* seeds/security-troubleshooting.txt #15 */
	{ "#15 no external_workspace stamp: team secret skipped",
	  { "sbx-1", "t1", NULL, "alice", NULL, NULL },
	  { { "t1", EXW, "team-a", "KEY", "team" } }, 1, 0, { 0 } },
	{ "#15 wrong stamp: team secret skipped",
	  { "sbx-1", "t1", NULL, "alice", "team-b", NULL },
	  { { "t1", EXW, "team-a", "KEY", "team" } }, 1, 0, { 0 } },
	{ "#15 right stamp: team secret resolves",
	  { "sbx-1", "t1", NULL, "alice", "team-a", NULL },
	  { { "t1", EXW, "team-a", "KEY", "team" } }, 1, 1, { 0 } },
};

static void test_walk_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct walk_case *tc = &cases[i];
		size_t winners[MAXC];
		int r = scope_walk_resolve(&tc->a, tc->c, tc->n, winners);

		if (r != tc->want_count)
			fail_msg("case '%s': %d winners, want %d", tc->what, r, tc->want_count);
		for (int k = 0; k < r; k++)
			if (winners[k] != tc->want[k])
				fail_msg("case '%s': winner %d is #%zu, want #%zu", tc->what, k,
					 winners[k], tc->want[k]);
	}
}

/* Drop levels one by one from the most specific: the next one must win. */
static void test_every_level_wins_once_the_more_specific_are_gone(void **state)
{
	const struct scope_walk_candidate all[] = { ALL_LEVELS };

	(void)state;
	for (size_t first = 0; first < 6; first++) {
		size_t winners[6];

		assert_int_equal(scope_walk_resolve(&full, all + first, 6 - first, winners), 1);
		assert_int_equal(winners[0], 0);
		assert_int_equal((all + first)[winners[0]].scope, (enum scope_walk_scope)first);
	}
}

/* Remove one attribution id at a time: that level is skipped, not matched. */
static void test_missing_attribution_id_skips_its_level(void **state)
{
	const struct scope_walk_candidate all[] = { ALL_LEVELS };
	static const char *names[] = { NULL, "s-user", "s-extuser", "s-extws", "s-ws", "s-tenant" };

	(void)state;
	for (int lvl = SCOPE_WALK_USER; lvl < SCOPE_WALK_TENANT; lvl++) {
		struct scope_walk_attribution a = full;
		size_t winners[6];

		a.sandbox_id = "sbx-other"; /* sandbox level never matches here */
		if (lvl == SCOPE_WALK_USER) a.user_id = NULL;
		if (lvl == SCOPE_WALK_EXTERNAL_USER) { a.user_id = NULL; a.external_user_id = ""; }
		if (lvl == SCOPE_WALK_EXTERNAL_WORKSPACE) {
			a.user_id = NULL; a.external_user_id = NULL; a.external_workspace_id = NULL;
		}
		if (lvl == SCOPE_WALK_WORKSPACE) {
			a.user_id = NULL; a.external_user_id = NULL; a.external_workspace_id = NULL;
			a.workspace_id = "";
		}
		assert_int_equal(scope_walk_resolve(&a, all, 6, winners), 1);
		assert_string_equal(all[winners[0]].name, names[lvl + 1]);
	}
}

static void test_invalid_input_is_refused(void **state)
{
	const struct scope_walk_candidate bad_env[] = { { "t1", TEN, "t1", NULL, "a" } };
	const struct scope_walk_candidate bad_scope[] = {
		{ "t1", (enum scope_walk_scope)6, "t1", "KEY", "a" } };
	struct scope_walk_attribution a = full;
	size_t winners[1] = { 42 };

	(void)state;
	assert_int_equal(scope_walk_resolve(NULL, NULL, 0, NULL), -EINVAL);
	a.sandbox_id = "";
	assert_int_equal(scope_walk_resolve(&a, NULL, 0, NULL), -EINVAL);
	a = full;
	a.tenant_id = NULL;
	assert_int_equal(scope_walk_resolve(&a, NULL, 0, NULL), -EINVAL);
	assert_int_equal(scope_walk_resolve(&full, bad_env, 1, winners), -EINVAL);
	assert_int_equal(scope_walk_resolve(&full, bad_scope, 1, winners), -EINVAL);
	assert_int_equal(scope_walk_resolve(&full, NULL, 1, winners), -EINVAL);
	assert_int_equal(winners[0], 42);
	assert_int_equal(scope_walk_resolve(&full, NULL, 0, NULL), 0);
}

static void test_scope_names_round_trip(void **state)
{
	enum scope_walk_scope s = SCOPE_WALK_TENANT;

	(void)state;
	for (int i = 0; i < SCOPE_WALK__COUNT; i++) {
		const char *name = scope_walk_scope_name((enum scope_walk_scope)i);

		assert_non_null(name);
		assert_int_equal(scope_walk_scope_from_name(name, &s), 0);
		assert_int_equal(s, i);
	}
	assert_string_equal(scope_walk_scope_name(SCOPE_WALK_EXTERNAL_WORKSPACE),
			    "external_workspace");
	assert_null(scope_walk_scope_name(SCOPE_WALK__COUNT));
	s = SCOPE_WALK_USER;
	assert_int_equal(scope_walk_scope_from_name("Tenant", &s), -EINVAL);
	assert_int_equal(scope_walk_scope_from_name("", &s), -EINVAL);
	assert_int_equal(scope_walk_scope_from_name(NULL, &s), -EINVAL);
	assert_int_equal(s, SCOPE_WALK_USER);
}

static void test_applies_matches_attribution_ids(void **state)
{
	const struct scope_walk_candidate c = { "t1", EXW, "team-a", "KEY", "x" };

	(void)state;
	assert_true(scope_walk_applies(&full, &c));
	assert_string_equal(scope_walk_attribution_id(&full, EXW), "team-a");
	assert_null(scope_walk_attribution_id(&(struct scope_walk_attribution){ "s", "t", "", NULL, NULL, NULL }, USR));
}

static uint32_t rnd_next(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

/* The rules of scope_walk.h spelled out the slow way: O(n^2), no sorting. */
static bool reference_beats(const struct scope_walk_candidate *c, size_t i, size_t j)
{
	int r;

	if (c[i].scope != c[j].scope)
		return c[i].scope < c[j].scope;
	r = strcmp(c[i].name, c[j].name);
	return r != 0 ? r < 0 : i < j;
}

static bool reference_is_winner(const struct scope_walk_attribution *a,
				const struct scope_walk_candidate *c, size_t n, size_t i)
{
	if (!scope_walk_applies(a, &c[i]))
		return false;
	for (size_t j = 0; j < n; j++)
		if (j != i && scope_walk_applies(a, &c[j]) &&
		    strcmp(c[j].expose_as_env, c[i].expose_as_env) == 0 && reference_beats(c, j, i))
			return false;
	return true;
}

static void test_random_candidate_sets_match_the_reference(void **state)
{
	static const char *const tenants[] = { "t1", "t2" };
	static const char *const ids[] = { "sbx-1", "u1", "alice", "team-a", "w1", "t1", "x", "" };
	static const char *const envs[] = { "A", "B", "a", "C" };
	static const char *const names[] = { "n1", "n2", "n3" };
	const struct scope_walk_attribution attrs[] = {
		FULL, { "sbx-1", "t1", NULL, "alice", NULL, "w1" },
		{ "sbx-1", "t1", "", "", "team-a", "" }, { "x", "t1", "x", "x", "x", "x" },
	};
	uint32_t seed = 0x2545f491u;

	(void)state;
	for (int round = 0; round < 5000; round++) {
		struct scope_walk_candidate c[16];
		size_t n = rnd_next(&seed) % 17, winners[16], expected = 0;
		const struct scope_walk_attribution *a = &attrs[rnd_next(&seed) % 4];
		int r;

		for (size_t i = 0; i < n; i++)
			c[i] = (struct scope_walk_candidate){
				tenants[rnd_next(&seed) % 2],
				(enum scope_walk_scope)(rnd_next(&seed) % SCOPE_WALK__COUNT),
				ids[rnd_next(&seed) % 8], envs[rnd_next(&seed) % 4],
				names[rnd_next(&seed) % 3] };
		r = scope_walk_resolve(a, c, n, winners);
		assert_true(r >= 0);
		for (size_t i = 0; i < n; i++)
			expected += reference_is_winner(a, c, n, i);
		assert_int_equal((size_t)r, expected);
		for (int k = 0; k < r; k++) {
			assert_true(reference_is_winner(a, c, n, winners[k]));
			if (k > 0)
				assert_true(strcmp(c[winners[k - 1]].expose_as_env,
						   c[winners[k]].expose_as_env) < 0);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_walk_table),
		cmocka_unit_test(test_every_level_wins_once_the_more_specific_are_gone),
		cmocka_unit_test(test_missing_attribution_id_skips_its_level),
		cmocka_unit_test(test_invalid_input_is_refused),
		cmocka_unit_test(test_scope_names_round_trip),
		cmocka_unit_test(test_applies_matches_attribution_ids),
		cmocka_unit_test(test_random_candidate_sets_match_the_reference),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
