/*
 * env_diff — what an EnvUpdate must carry to take a guest from one resolved
 * env (HelloAck / the last update) to the next: every binding that is new
 * or whose placeholder changed goes in `set`, every name that disappeared in
 * `unset`.  Rotation keeps placeholders, so it yields an empty diff.
 *
 * Pure, no allocation: the caller passes index arrays of n_new (set) and
 * n_old (unset) entries.  Names are compared bytewise; each list holds a
 * name at most once (vault_resolve() guarantees it).  O(n_old * n_new),
 * both at most WIRE_ENV_MAX.
 */
#ifndef MIOSA_ENV_DIFF_H
#define MIOSA_ENV_DIFF_H

#include <stddef.h>

struct env_diff_entry {
	const char *name;
	const char *placeholder;
};

/* ret_set[i]: indices into new_env; ret_unset[i]: indices into old_env.
 * Returns the total number of changes (0: send nothing). */
size_t env_diff(const struct env_diff_entry *old_env, size_t n_old,
		const struct env_diff_entry *new_env, size_t n_new,
		size_t *ret_set, size_t *ret_n_set, size_t *ret_unset, size_t *ret_n_unset);

#endif
