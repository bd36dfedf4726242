/*
 * scope_walk — which secret a sandbox sees under each env name (M6).
 *
 * A pure function over an array of candidates: no SQL, no I/O, no allocation.
 * The store fetches the candidate rows; this module decides.  Safe from any
 * thread; inputs are borrowed for the duration of the call only.
 *
 * Rules:
 *   - A sandbox carries an attribution: sandbox_id and tenant_id (required),
 *     user_id, external_user_id, external_workspace_id, workspace_id (each
 *     optional: NULL or "" means that level does not apply to the sandbox).
 *   - A candidate applies when its tenant equals the sandbox's tenant and its
 *     (scope, scope_id) equals the sandbox's id at that level:
 *     sandbox/sandbox_id, user/user_id, external_user/external_user_id,
 *     external_workspace/external_workspace_id, workspace/workspace_id,
 *     tenant/tenant_id.  Ids compare byte for byte (case-sensitive).
 *   - For each expose_as_env name (case-sensitive) the most specific
 *     applicable scope wins, in enum order: sandbox, user, external_user,
 *     external_workspace, workspace, tenant.  No applicable candidate, no
 *     binding.
 *   - Ties (same env, same scope) cannot come from the store, whose unique
 *     index forbids them; if they occur anyway the walk stays deterministic:
 *     the smallest secret name wins, then the earlier array index.
 */
#ifndef MIOSA_SCOPE_WALK_H
#define MIOSA_SCOPE_WALK_H

#include <stdbool.h>
#include <stddef.h>

/* Most specific first; the values are persisted (store) and must not change. */
enum scope_walk_scope {
	SCOPE_WALK_SANDBOX = 0,
	SCOPE_WALK_USER = 1,
	SCOPE_WALK_EXTERNAL_USER = 2,
	SCOPE_WALK_EXTERNAL_WORKSPACE = 3,
	SCOPE_WALK_WORKSPACE = 4,
	SCOPE_WALK_TENANT = 5,
	SCOPE_WALK__COUNT
};

struct scope_walk_attribution {
	const char *sandbox_id;            /* required */
	const char *tenant_id;             /* required */
	const char *user_id;               /* optional */
	const char *external_user_id;      /* optional, immutable after creation (M18) */
	const char *external_workspace_id; /* optional, immutable after creation (M18) */
	const char *workspace_id;          /* optional */
};

struct scope_walk_candidate {
	const char *tenant_id;
	enum scope_walk_scope scope;
	const char *scope_id;
	const char *expose_as_env;
	const char *name; /* secret name: only breaks ties */
};

/* "sandbox", "user", ..., or NULL for a value outside the enum. */
const char *scope_walk_scope_name(enum scope_walk_scope scope);

/* Parse a scope name (exact, lower case).  0 or -EINVAL. */
__attribute__((warn_unused_result))
int scope_walk_scope_from_name(const char *name, enum scope_walk_scope *ret_scope);

/* The sandbox's id at that level, or NULL when the level does not apply. */
const char *scope_walk_attribution_id(const struct scope_walk_attribution *a,
				      enum scope_walk_scope scope);

/* Does this candidate apply to this sandbox (ignoring other candidates)? */
bool scope_walk_applies(const struct scope_walk_attribution *a,
			const struct scope_walk_candidate *c);

/*
 * Resolve: fills winners[0..count) with the indices (into cands) of the
 * winning candidate of each env name, sorted by env name (strcmp), and
 * returns count (0..n).  winners must hold n entries; it is also used as
 * scratch, so its contents are unspecified on failure.
 * -EINVAL if a required attribution id is missing or a candidate has a NULL
 * field or a scope outside the enum.
 */
__attribute__((warn_unused_result))
int scope_walk_resolve(const struct scope_walk_attribution *a,
		       const struct scope_walk_candidate *cands, size_t n,
		       size_t *winners);

#endif
