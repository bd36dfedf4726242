/* Tests for guest/env.h: the layered environment of every process the agent
 * starts, EnvUpdate, and the /etc/profile.d fragment. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "env.h"

#define TOK_A "miosa-tok-00000000000000000000000000000001"
#define TOK_B "miosa-tok-00000000000000000000000000000002"
#define TOK_C "miosa-tok-00000000000000000000000000000003"

static struct env *new_env(void)
{
	struct env *env = NULL;

	assert_int_equal(env_new(&env), 0);
	return env;
}

static void bind1(struct env *env, const char *name, const char *placeholder)
{
	Miosa__EnvBinding b = MIOSA__ENV_BINDING__INIT, *list[] = { &b };

	b.name = (char *)name;
	b.placeholder = (char *)placeholder;
	assert_int_equal(env_set_bindings(env, list, 1), 0);
}

/* The value of name in envp, or NULL; fails if the name is there twice. */
static const char *lookup(char **envp, const char *name)
{
	size_t n = strlen(name);
	const char *found = NULL;

	for (char **e = envp; *e; e++)
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') {
			assert_null(found);
			found = *e + n + 1;
		}
	return found;
}

static char **build(struct env *env, Miosa__EnvVar **extra, size_t n)
{
	char **envp = NULL;

	assert_int_equal(env_build(env, extra, n, &envp), 0);
	assert_non_null(envp);
	return envp;
}

static void test_base_env_is_clean_and_not_inherited(void **state)
{
	struct env *env = new_env();
	char **envp;
	size_t n = 0;

	(void)state;
	setenv("MIOSA_TEST_AGENT_ONLY", "leak", 1);
	envp = build(env, NULL, 0);
	for (char **e = envp; *e; e++)
		n++;
	assert_int_equal(n, 3);
	assert_string_equal(lookup(envp, "PATH"), ENV_BASE_PATH);
	assert_string_equal(lookup(envp, "HOME"), "/root");
	assert_string_equal(lookup(envp, "LANG"), "C.UTF-8");
	assert_null(lookup(envp, "MIOSA_TEST_AGENT_ONLY"));
	env_strv_free(envp);
	env_free(env);
}

static void test_bindings_and_ca_variables_are_present(void **state)
{
	struct env *env = new_env();
	char **envp;

	(void)state;
	bind1(env, "OPENAI_API_KEY", TOK_A);
	envp = build(env, NULL, 0);
	assert_string_equal(lookup(envp, "OPENAI_API_KEY"), TOK_A);
	assert_null(lookup(envp, "SSL_CERT_FILE")); /* no CA installed yet */
	env_strv_free(envp);
	assert_int_equal(env_set_trust(env, "/run/miosa/ca-bundle.pem", "/run/miosa/ca.pem"), 0);
	envp = build(env, NULL, 0);
	assert_string_equal(lookup(envp, "SSL_CERT_FILE"), "/run/miosa/ca-bundle.pem");
	assert_string_equal(lookup(envp, "REQUESTS_CA_BUNDLE"), "/run/miosa/ca-bundle.pem");
	assert_string_equal(lookup(envp, "CURL_CA_BUNDLE"), "/run/miosa/ca-bundle.pem");
	assert_string_equal(lookup(envp, "NODE_EXTRA_CA_CERTS"), "/run/miosa/ca.pem");
	env_strv_free(envp);
	env_free(env);
}

static void test_extra_env_overrides_base_but_never_bindings_or_ca(void **state)
{
	Miosa__EnvVar v[4] = { MIOSA__ENV_VAR__INIT, MIOSA__ENV_VAR__INIT, MIOSA__ENV_VAR__INIT,
			       MIOSA__ENV_VAR__INIT };
	Miosa__EnvVar *extra[] = { &v[0], &v[1], &v[2], &v[3] };
	struct env *env = new_env();
	char **envp;

	(void)state;
	bind1(env, "OPENAI_API_KEY", TOK_A);
	assert_int_equal(env_set_trust(env, "/b.pem", "/c.pem"), 0);
	v[0].name = "PATH", v[0].value = "/opt/bin";
	v[1].name = "OPENAI_API_KEY", v[1].value = "sk-real-value";
	v[2].name = "SSL_CERT_FILE", v[2].value = "/elsewhere.pem";
	v[3].name = "DEBUG", v[3].value = "1";
	envp = build(env, extra, 4);
	assert_string_equal(lookup(envp, "PATH"), "/opt/bin");
	assert_string_equal(lookup(envp, "DEBUG"), "1");
	assert_string_equal(lookup(envp, "OPENAI_API_KEY"), TOK_A);
	assert_string_equal(lookup(envp, "SSL_CERT_FILE"), "/b.pem");
	env_strv_free(envp);
	env_free(env);
}

static void test_binding_replaces_a_base_variable(void **state)
{
	struct env *env = new_env();
	char **envp;

	(void)state;
	bind1(env, "HOME", TOK_B); /* odd, but the binding wins */
	envp = build(env, NULL, 0);
	assert_string_equal(lookup(envp, "HOME"), TOK_B);
	env_strv_free(envp);
	env_free(env);
}

static void test_update_sets_replaces_and_unsets(void **state)
{
	Miosa__EnvBinding b1 = MIOSA__ENV_BINDING__INIT, b2 = MIOSA__ENV_BINDING__INIT;
	Miosa__EnvBinding *set[] = { &b1, &b2 };
	char *unset[] = { "GITHUB_TOKEN" };
	Miosa__EnvUpdate u = MIOSA__ENV_UPDATE__INIT;
	Miosa__EnvBinding g = MIOSA__ENV_BINDING__INIT, o = MIOSA__ENV_BINDING__INIT;
	Miosa__EnvBinding *initial[] = { &o, &g };
	struct env *env = new_env();
	char **envp;

	(void)state;
	o.name = "OPENAI_API_KEY", o.placeholder = TOK_A;
	g.name = "GITHUB_TOKEN", g.placeholder = TOK_B;
	assert_int_equal(env_set_bindings(env, initial, 2), 0);
	b1.name = "OPENAI_API_KEY", b1.placeholder = TOK_C; /* replaced */
	b2.name = "SLACK_TOKEN", b2.placeholder = TOK_B;    /* new */
	u.n_set = 2, u.set = set, u.n_unset = 1, u.unset = unset;
	assert_int_equal(env_apply_update(env, &u), 0);
	assert_int_equal(env_binding_count(env), 2);
	envp = build(env, NULL, 0);
	assert_string_equal(lookup(envp, "OPENAI_API_KEY"), TOK_C);
	assert_string_equal(lookup(envp, "SLACK_TOKEN"), TOK_B);
	assert_null(lookup(envp, "GITHUB_TOKEN"));
	env_strv_free(envp);
	env_free(env);
}

static void test_set_bindings_replaces_the_whole_set(void **state)
{
	struct env *env = new_env();
	char **envp;

	(void)state;
	bind1(env, "A_KEY", TOK_A);
	bind1(env, "B_KEY", TOK_B); /* a new HelloAck */
	envp = build(env, NULL, 0);
	assert_null(lookup(envp, "A_KEY"));
	assert_string_equal(lookup(envp, "B_KEY"), TOK_B);
	env_strv_free(envp);
	env_free(env);
}

/* Over ENV_BINDINGS_MAX: -E2BIG and the bindings stay as they were. */
static void test_update_past_the_cap_changes_nothing(void **state)
{
	static Miosa__EnvBinding b[ENV_BINDINGS_MAX + 1];
	static Miosa__EnvBinding *list[ENV_BINDINGS_MAX + 1];
	static char names[ENV_BINDINGS_MAX + 1][16];
	Miosa__EnvUpdate u = MIOSA__ENV_UPDATE__INIT;
	struct env *env = new_env();

	(void)state;
	for (size_t i = 0; i <= ENV_BINDINGS_MAX; i++) {
		b[i] = (Miosa__EnvBinding)MIOSA__ENV_BINDING__INIT;
		snprintf(names[i], sizeof(names[i]), "K%zu", i);
		b[i].name = names[i];
		b[i].placeholder = TOK_A;
		list[i] = &b[i];
	}
	assert_int_equal(env_set_bindings(env, list, ENV_BINDINGS_MAX + 1), -E2BIG);
	assert_int_equal(env_binding_count(env), 0);
	assert_int_equal(env_set_bindings(env, list, ENV_BINDINGS_MAX), 0);
	u.n_set = 1;
	u.set = &list[ENV_BINDINGS_MAX];
	assert_int_equal(env_apply_update(env, &u), -E2BIG);
	assert_int_equal(env_binding_count(env), ENV_BINDINGS_MAX);
	/* replacing an existing name at the cap is fine */
	u.set = &list[0];
	assert_int_equal(env_apply_update(env, &u), 0);
	env_free(env);
}

/* The profile is sourced by sh: values (a runtime dir with a quote in its
 * name) must come back verbatim. */
static void test_profile_round_trips_through_sh(void **state)
{
	char dir[] = "/tmp/miosa-env-XXXXXX", path[256], cmd[600], out[512] = "";
	struct env *env = new_env();
	struct stat st;
	FILE *p;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/miosa.sh", dir);
	bind1(env, "OPENAI_API_KEY", TOK_A);
	assert_int_equal(env_set_trust(env, "/run/it's here/b.pem", "/run/c.pem"), 0);
	assert_int_equal(env_write_profile(env, path), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	snprintf(cmd, sizeof(cmd),
		 "env -i /bin/sh -c '. %s && printf \"%%s|%%s|%%s\" \"$OPENAI_API_KEY\" "
		 "\"$SSL_CERT_FILE\" \"$NODE_EXTRA_CA_CERTS\"'",
		 path);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(out, sizeof(out), p));
	assert_int_equal(pclose(p), 0);
	assert_string_equal(out, TOK_A "|/run/it's here/b.pem|/run/c.pem");
	unlink(path);
	rmdir(dir);
	env_free(env);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base_env_is_clean_and_not_inherited),
		cmocka_unit_test(test_bindings_and_ca_variables_are_present),
		cmocka_unit_test(test_extra_env_overrides_base_but_never_bindings_or_ca),
		cmocka_unit_test(test_binding_replaces_a_base_variable),
		cmocka_unit_test(test_update_sets_replaces_and_unsets),
		cmocka_unit_test(test_set_bindings_replaces_the_whole_set),
		cmocka_unit_test(test_update_past_the_cap_changes_nothing),
		cmocka_unit_test(test_profile_round_trips_through_sh),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
