#include "env.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"

struct env_binding {
	char *name;
	char *placeholder;
};

struct env {
	struct env_binding *bindings;
	size_t n_bindings;
	char *bundle_path; /* SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE */
	char *ca_path;     /* NODE_EXTRA_CA_CERTS */
};

/* One NAME=value candidate while layering. */
struct env_entry {
	const char *name;
	const char *value;
};

static const struct env_entry base_env[] = {
	{ "PATH", ENV_BASE_PATH },
	{ "HOME", "/root" },
	{ "LANG", "C.UTF-8" },
};

static const char *const bundle_vars[] = { "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
					   "CURL_CA_BUNDLE" };
#define NODE_CA_VAR "NODE_EXTRA_CA_CERTS"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

int env_new(struct env **ret_env)
{
	struct env *env = calloc(1, sizeof(*env));

	if (!env)
		return -ENOMEM;
	*ret_env = env;
	return 0;
}

static void bindings_free(struct env_binding *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(b[i].name);
		free(b[i].placeholder);
	}
	free(b);
}

void env_free(struct env *env)
{
	if (!env)
		return;
	bindings_free(env->bindings, env->n_bindings);
	free(env->bundle_path);
	free(env->ca_path);
	free(env);
}

size_t env_binding_count(const struct env *env)
{
	return env->n_bindings;
}

/* --- Bindings ------------------------------------------------------------------ */

/* A working copy of the bindings, swapped in only when complete. */
struct binding_set {
	struct env_binding *b;
	size_t n;
	size_t cap;
};

static int set_find(const struct binding_set *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->b[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int set_put(struct binding_set *s, const char *name, const char *placeholder)
{
	char *p = strdup(placeholder);
	int i = set_find(s, name);

	if (!p)
		return -ENOMEM;
	if (i >= 0) {
		free(s->b[i].placeholder);
		s->b[i].placeholder = p;
		return 0;
	}
	if (s->n == ENV_BINDINGS_MAX) {
		free(p);
		return -E2BIG;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct env_binding *b = reallocarray(s->b, cap, sizeof(*b));
		if (!b) {
			free(p);
			return -ENOMEM;
		}
		s->b = b;
		s->cap = cap;
	}
	s->b[s->n].name = strdup(name);
	if (!s->b[s->n].name) {
		free(p);
		return -ENOMEM;
	}
	s->b[s->n++].placeholder = p;
	return 0;
}

static void set_remove(struct binding_set *s, const char *name)
{
	int i = set_find(s, name);

	if (i < 0)
		return;
	free(s->b[i].name);
	free(s->b[i].placeholder);
	/* keep the broker's order: the profile and envp read in that order */
	memmove(&s->b[i], &s->b[i + 1], (s->n - (size_t)i - 1) * sizeof(*s->b));
	s->n--;
}

static void env_swap_in(struct env *env, struct binding_set *s)
{
	bindings_free(env->bindings, env->n_bindings);
	env->bindings = s->b;
	env->n_bindings = s->n;
}

int env_set_bindings(struct env *env, Miosa__EnvBinding *const *bindings, size_t n)
{
	struct binding_set s = { 0 };
	int r;

	for (size_t i = 0; i < n; i++)
		if ((r = set_put(&s, bindings[i]->name, bindings[i]->placeholder)) < 0)
			goto fail;
	env_swap_in(env, &s);
	return 0;
fail:
	bindings_free(s.b, s.n);
	return r;
}

int env_apply_update(struct env *env, const Miosa__EnvUpdate *update)
{
	struct binding_set s = { 0 };
	int r;

	for (size_t i = 0; i < env->n_bindings; i++)
		if ((r = set_put(&s, env->bindings[i].name, env->bindings[i].placeholder)) < 0)
			goto fail;
	for (size_t i = 0; i < update->n_unset; i++)
		set_remove(&s, update->unset[i]);
	for (size_t i = 0; i < update->n_set; i++)
		if ((r = set_put(&s, update->set[i]->name, update->set[i]->placeholder)) < 0)
			goto fail;
	env_swap_in(env, &s);
	return 0;
fail:
	bindings_free(s.b, s.n);
	return r;
}

int env_set_trust(struct env *env, const char *bundle_path, const char *ca_path)
{
	char *bundle = NULL, *ca = NULL;

	assert(!bundle_path == !ca_path);
	if (bundle_path && (!(bundle = strdup(bundle_path)) || !(ca = strdup(ca_path)))) {
		free(bundle);
		return -ENOMEM;
	}
	free(env->bundle_path);
	free(env->ca_path);
	env->bundle_path = bundle;
	env->ca_path = ca;
	return 0;
}

/* --- Building envp --------------------------------------------------------------- */

/* The layers in order, as one array of candidates. */
static int env_layers(const struct env *env, Miosa__EnvVar *const *extra, size_t n_extra,
		      struct env_entry **ret_entries, size_t *ret_n)
{
	size_t max = ARRAY_SIZE(base_env) + n_extra + ARRAY_SIZE(bundle_vars) + 1 +
		     env->n_bindings;
	struct env_entry *e = calloc(max, sizeof(*e));
	size_t n = 0;

	if (!e)
		return -ENOMEM;
	for (size_t i = 0; i < ARRAY_SIZE(base_env); i++)
		e[n++] = base_env[i];
	for (size_t i = 0; i < n_extra; i++)
		e[n++] = (struct env_entry){ extra[i]->name, extra[i]->value ? extra[i]->value : "" };
	if (env->bundle_path) {
		for (size_t i = 0; i < ARRAY_SIZE(bundle_vars); i++)
			e[n++] = (struct env_entry){ bundle_vars[i], env->bundle_path };
		e[n++] = (struct env_entry){ NODE_CA_VAR, env->ca_path };
	}
	for (size_t i = 0; i < env->n_bindings; i++)
		e[n++] = (struct env_entry){ env->bindings[i].name, env->bindings[i].placeholder };
	*ret_entries = e;
	*ret_n = n;
	return 0;
}

/* Whether a later layer sets the same name.  Quadratic, but n is bounded
 * (3 + WIRE_ENV_MAX + 4 + ENV_BINDINGS_MAX) and this runs once per exec. */
static bool overridden(const struct env_entry *e, size_t n, size_t i)
{
	for (size_t j = i + 1; j < n; j++)
		if (strcmp(e[i].name, e[j].name) == 0)
			return true;
	return false;
}

void env_strv_free(char **strv)
{
	if (!strv)
		return;
	for (char **p = strv; *p; p++)
		free(*p);
	free(strv);
}

int env_build(const struct env *env, Miosa__EnvVar *const *extra, size_t n_extra,
	      char ***ret_envp)
{
	struct env_entry *e = NULL;
	char **envp = NULL;
	size_t n = 0, out = 0;
	int r;

	if ((r = env_layers(env, extra, n_extra, &e, &n)) < 0)
		return r;
	r = -ENOMEM;
	envp = calloc(n + 1, sizeof(*envp));
	if (!envp)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (overridden(e, n, i))
			continue;
		if (asprintf(&envp[out], "%s=%s", e[i].name, e[i].value) < 0) {
			envp[out] = NULL;
			goto out;
		}
		out++;
	}
	*ret_envp = envp;
	envp = NULL;
	r = 0;
out:
	env_strv_free(envp);
	free(e);
	return r;
}

/* --- Profile ------------------------------------------------------------------------ */

/* export NAME='value' with ' written as '\'' (POSIX sh quoting). */
static void profile_export(FILE *out, const char *name, const char *value)
{
	fprintf(out, "export %s='", name);
	for (const char *p = value; *p; p++) {
		if (*p == '\'')
			fputs("'\\''", out);
		else
			fputc(*p, out);
	}
	fputs("'\n", out);
}

static void profile_body(const struct env *env, FILE *out)
{
	fputs("# Written by miosa-init on every HelloAck and EnvUpdate: the sandbox's\n"
	      "# placeholder bindings and CA bundle for login shells.  Edits are lost.\n",
	      out);
	if (env->bundle_path) {
		for (size_t i = 0; i < ARRAY_SIZE(bundle_vars); i++)
			profile_export(out, bundle_vars[i], env->bundle_path);
		profile_export(out, NODE_CA_VAR, env->ca_path);
	}
	for (size_t i = 0; i < env->n_bindings; i++)
		profile_export(out, env->bindings[i].name, env->bindings[i].placeholder);
}

int env_write_profile(const struct env *env, const char *path)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	int r;

	if (!out)
		return -ENOMEM;
	profile_body(env, out);
	/* a memory stream only fails for want of memory, reported here */
	if (ferror(out) | fclose(out)) {
		free(text);
		return -ENOMEM;
	}
	r = atomic_file_write(path, text, len, 0644);
	free(text);
	return r;
}
