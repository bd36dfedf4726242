#include "env_diff.h"

#include <string.h>

static const struct env_diff_entry *env_find(const struct env_diff_entry *env, size_t n,
					     const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(env[i].name, name) == 0)
			return &env[i];
	return NULL;
}

size_t env_diff(const struct env_diff_entry *old_env, size_t n_old,
		const struct env_diff_entry *new_env, size_t n_new,
		size_t *ret_set, size_t *ret_n_set, size_t *ret_unset, size_t *ret_n_unset)
{
	size_t n_set = 0, n_unset = 0;

	for (size_t i = 0; i < n_new; i++) {
		const struct env_diff_entry *o = env_find(old_env, n_old, new_env[i].name);

		if (!o || strcmp(o->placeholder, new_env[i].placeholder) != 0)
			ret_set[n_set++] = i;
	}
	for (size_t i = 0; i < n_old; i++)
		if (!env_find(new_env, n_new, old_env[i].name))
			ret_unset[n_unset++] = i;
	*ret_n_set = n_set;
	*ret_n_unset = n_unset;
	return n_set + n_unset;
}
