#include "scope_walk.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const char *const scope_names[SCOPE_WALK__COUNT] = {
	[SCOPE_WALK_SANDBOX] = "sandbox",
	[SCOPE_WALK_USER] = "user",
	[SCOPE_WALK_EXTERNAL_USER] = "external_user",
	[SCOPE_WALK_EXTERNAL_WORKSPACE] = "external_workspace",
	[SCOPE_WALK_WORKSPACE] = "workspace",
	[SCOPE_WALK_TENANT] = "tenant",
};

const char *scope_walk_scope_name(enum scope_walk_scope scope)
{
	if ((unsigned)scope >= SCOPE_WALK__COUNT)
		return NULL;
	return scope_names[scope];
}

int scope_walk_scope_from_name(const char *name, enum scope_walk_scope *ret_scope)
{
	if (!name)
		return -EINVAL;
	for (int s = 0; s < SCOPE_WALK__COUNT; s++) {
		if (strcmp(name, scope_names[s]) == 0) {
			*ret_scope = (enum scope_walk_scope)s;
			return 0;
		}
	}
	return -EINVAL;
}

static const char *nonempty(const char *s)
{
	return (s && s[0] != '\0') ? s : NULL;
}

const char *scope_walk_attribution_id(const struct scope_walk_attribution *a,
				      enum scope_walk_scope scope)
{
	switch (scope) {
	case SCOPE_WALK_SANDBOX:            return nonempty(a->sandbox_id);
	case SCOPE_WALK_USER:               return nonempty(a->user_id);
	case SCOPE_WALK_EXTERNAL_USER:      return nonempty(a->external_user_id);
	case SCOPE_WALK_EXTERNAL_WORKSPACE: return nonempty(a->external_workspace_id);
	case SCOPE_WALK_WORKSPACE:          return nonempty(a->workspace_id);
	case SCOPE_WALK_TENANT:             return nonempty(a->tenant_id);
	case SCOPE_WALK__COUNT:             break;
	}
	return NULL;
}

static bool candidate_valid(const struct scope_walk_candidate *c)
{
	return c->tenant_id && c->scope_id && c->expose_as_env && c->name &&
	       (unsigned)c->scope < SCOPE_WALK__COUNT;
}

bool scope_walk_applies(const struct scope_walk_attribution *a,
			const struct scope_walk_candidate *c)
{
	const char *tenant = nonempty(a->tenant_id);
	const char *id;

	if (!tenant || !candidate_valid(c) || strcmp(c->tenant_id, tenant) != 0)
		return false;
	/* An empty attribution id means "no such level": it must never match
	 * a candidate, not even one whose scope_id is also empty. */
	id = scope_walk_attribution_id(a, c->scope);
	return id && strcmp(c->scope_id, id) == 0;
}

/* Order: env name, then specificity, then secret name, then array index. */
static int candidate_cmp(const void *pa, const void *pb, void *arg)
{
	const struct scope_walk_candidate *cands = arg;
	size_t ia = *(const size_t *)pa, ib = *(const size_t *)pb;
	const struct scope_walk_candidate *a = &cands[ia], *b = &cands[ib];
	int r;

	if ((r = strcmp(a->expose_as_env, b->expose_as_env)) != 0)
		return r;
	if (a->scope != b->scope)
		return a->scope < b->scope ? -1 : 1;
	if ((r = strcmp(a->name, b->name)) != 0)
		return r;
	return ia < ib ? -1 : ia > ib;
}

int scope_walk_resolve(const struct scope_walk_attribution *a,
		       const struct scope_walk_candidate *cands, size_t n,
		       size_t *winners)
{
	size_t applicable = 0, count = 0;

	if (!a || !nonempty(a->sandbox_id) || !nonempty(a->tenant_id) ||
	    (n > 0 && (!cands || !winners)) || n > INT_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!candidate_valid(&cands[i]))
			return -EINVAL;

	for (size_t i = 0; i < n; i++)
		if (scope_walk_applies(a, &cands[i]))
			winners[applicable++] = i;
	/* After sorting, the first entry of each env-name run is its winner.
	 * (qsort_r's array is declared nonnull, even for zero elements.) */
	if (applicable > 1)
		qsort_r(winners, applicable, sizeof(*winners), candidate_cmp, (void *)cands);
	for (size_t i = 0; i < applicable; i++) {
		const char *env = cands[winners[i]].expose_as_env;

		if (count > 0 && strcmp(cands[winners[count - 1]].expose_as_env, env) == 0)
			continue;
		winners[count++] = winners[i];
	}
	return (int)count;
}
