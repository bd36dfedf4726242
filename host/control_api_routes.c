/*
 * control_api_routes — the route table of docs/api.md and its handlers.
 *
 * Isolation is decided in two helpers, capi_tenant_in_reach() and
 * capi_sandbox_in_reach(): every handler that touches a tenant's object goes
 * through one of them, and a TCP caller's view of another tenant is exactly
 * that of a missing object (404, same message shape).
 *
 * Secret values: a handler hands the value's jansson string straight to the
 * vault (which seals it) and never copies it; jansson's allocator wipes the
 * string when the body is freed (control_api.c).
 */
#include "control_api_internal.h"

#include <errno.h>
#include <string.h>

#include "scope_walk.h"

#ifndef MIOSA_VERSION
#define MIOSA_VERSION "unknown"
#endif

#define N_FIELDS(a) (sizeof(a) / sizeof((a)[0]))

const struct control_api_events *capi_events;

void control_api_set_events(const struct control_api_events *ev)
{
	capi_events = ev;
}

struct policy_tally *capi_tally;

void control_api_set_tally(struct policy_tally *t)
{
	capi_tally = t;
}

/* ---- reach: what this caller may see ------------------------------------- */

/* The tenant named by the request (NULL: the caller's own, or "default" for
 * the admin), if this caller may see it. */
static int capi_tenant_in_reach(struct capi_ctx *c, const char *named,
				struct tenancy_tenant *ret_tenant)
{
	const char *id = named ? named : c->admin ? TENANCY_DEFAULT_TENANT : c->caller_tenant;
	int r;

	if (!tenancy_tenant_id_is_valid(id))
		return capi_fail(c, CAPI_E_INVALID_FIELD,
				 "tenant id '%.64s' must match [a-z0-9][a-z0-9_-]{0,63}", id);
	if (!c->admin && strcmp(id, c->caller_tenant) != 0)
		return capi_fail(c, CAPI_E_NOT_FOUND, "no tenant '%s'", id);
	if ((r = tenancy_tenant_get(c->api->tenancy, id, ret_tenant)) != 0)
		return capi_fail_tenancy(c, r);
	return 0;
}

int capi_sandbox_in_reach(struct capi_ctx *c, struct tenancy_sandbox *ret_sandbox)
{
	int r = tenancy_sandbox_get(c->api->tenancy, c->admin ? NULL : c->caller_tenant,
				    capi_param(c, "sandbox"), ret_sandbox);

	return r ? capi_fail_tenancy(c, r) : 0;
}

/* ---- health -------------------------------------------------------------- */

static int h_health(struct capi_ctx *c)
{
	return capi_reply(c, 200, json_pack("{s:s, s:s}", "status", "ok",
					    "version", MIOSA_VERSION));
}

/* ---- tenants ------------------------------------------------------------- */

static int h_tenants_list(struct capi_ctx *c)
{
	struct tenancy_tenant *rows = NULL;
	json_t *arr;
	size_t n = 0;
	int r;

	if ((r = tenancy_tenant_list(c->api->tenancy, &rows, &n)) != 0)
		return capi_fail_tenancy(c, r);
	arr = json_array();
	for (size_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, capi_json_tenant(&rows[i])) != 0) {
			json_decref(arr);
			arr = NULL;
		}
	free(rows);
	return capi_reply(c, 200, arr ? json_pack("{s:o}", "tenants", arr) : NULL);
}

static const struct capi_field tenant_create_fields[] = {
	{ "id", CAPI_T_STRING, true },
	{ "name", CAPI_T_OPT_STRING, false },
};

static int h_tenant_create(struct capi_ctx *c)
{
	struct tenancy_tenant t;
	const char *name;
	int r;

	if ((r = capi_check_object(c, c->body, "body", tenant_create_fields,
				   N_FIELDS(tenant_create_fields))) != 0)
		return r;
	name = capi_str(c->body, "name");
	if (name && !name[0])
		return capi_fail(c, CAPI_E_INVALID_FIELD, "field 'name' must not be empty");
	r = tenancy_tenant_create(c->api->tenancy, capi_str(c->body, "id"), name, &t);
	if (r != 0)
		return capi_fail_tenancy(c, r);
	return capi_reply(c, 201, capi_json_tenant(&t));
}

static int h_tenant_get(struct capi_ctx *c)
{
	struct tenancy_tenant t;
	int r;

	if ((r = capi_tenant_in_reach(c, capi_param(c, "tenant"), &t)) != 0)
		return r;
	return capi_reply(c, 200, capi_json_tenant(&t));
}

static const struct capi_field tenant_settings_fields[] = {
	{ "allow_end_user_scoped_credentials", CAPI_T_BOOL, false },
};

static int h_tenant_settings(struct capi_ctx *c)
{
	const json_t *allow = json_object_get(c->body, "allow_end_user_scoped_credentials");
	struct tenancy_tenant t;
	int r;

	if ((r = capi_check_object(c, c->body, "body", tenant_settings_fields,
				   N_FIELDS(tenant_settings_fields))) != 0 ||
	    (r = capi_tenant_in_reach(c, capi_param(c, "tenant"), &t)) != 0)
		return r;
	if (allow && (r = tenancy_tenant_set_end_user_credentials(c->api->tenancy, t.id,
								   json_is_true(allow), &t)) != 0)
		return capi_fail_tenancy(c, r);
	return capi_reply(c, 200, capi_json_tenant(&t));
}

/* ---- API keys ------------------------------------------------------------ */

static const struct capi_field apikey_create_fields[] = {
	{ "name", CAPI_T_STRING, true },
};

static int h_apikey_create(struct capi_ctx *c)
{
	struct tenancy_api_key k;
	struct tenancy_tenant t;
	char *full = NULL;
	json_t *obj;
	int r;

	if ((r = capi_check_object(c, c->body, "body", apikey_create_fields,
				   N_FIELDS(apikey_create_fields))) != 0 ||
	    (r = capi_tenant_in_reach(c, capi_param(c, "tenant"), &t)) != 0)
		return r;
	r = tenancy_api_key_create(c->api->tenancy, t.id, capi_str(c->body, "name"), &k, &full);
	if (r != 0)
		return capi_fail_tenancy(c, r);
	/* The one answer that carries the key: jansson's copy is wiped when
	 * freed, the response body by control_response_free(). */
	obj = capi_json_api_key(&k);
	if (obj && json_object_set_new(obj, "key", json_string(full)) != 0) {
		json_decref(obj);
		obj = NULL;
	}
	tenancy_api_key_secret_free(full);
	return capi_reply(c, 201, obj);
}

static int h_apikeys_list(struct capi_ctx *c)
{
	struct tenancy_api_key *rows = NULL;
	struct tenancy_tenant t;
	json_t *arr;
	size_t n = 0;
	int r;

	if ((r = capi_tenant_in_reach(c, capi_param(c, "tenant"), &t)) != 0)
		return r;
	if ((r = tenancy_api_key_list(c->api->tenancy, t.id, &rows, &n)) != 0)
		return capi_fail_tenancy(c, r);
	arr = json_array();
	for (size_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, capi_json_api_key(&rows[i])) != 0) {
			json_decref(arr);
			arr = NULL;
		}
	free(rows);
	return capi_reply(c, 200, arr ? json_pack("{s:o}", "apikeys", arr) : NULL);
}

static int h_apikey_revoke(struct capi_ctx *c)
{
	struct tenancy_api_key k;
	struct tenancy_tenant t;
	int r;

	if ((r = capi_tenant_in_reach(c, capi_param(c, "tenant"), &t)) != 0)
		return r;
	r = tenancy_api_key_revoke(c->api->tenancy, t.id, capi_param(c, "apikey"), &k);
	if (r != 0)
		return capi_fail_tenancy(c, r);
	return capi_reply(c, 200, capi_json_api_key(&k));
}

/* ---- sandboxes ----------------------------------------------------------- */

static const struct capi_field sandbox_create_fields[] = {
	{ "tenant_id", CAPI_T_OPT_STRING, false },
	{ "user_id", CAPI_T_OPT_STRING, false },
	{ "workspace_id", CAPI_T_OPT_STRING, false },
	{ "external_user_id", CAPI_T_OPT_STRING, false },
	{ "external_workspace_id", CAPI_T_OPT_STRING, false },
	{ "template", CAPI_T_OPT_STRING, false },
	{ "policy", CAPI_T_OBJECT, false },
	{ "vsock_uds", CAPI_T_OPT_STRING, false },
	{ "vsock_cid", CAPI_T_OPT_UINT32, false },
};

/* Optional strings are a value or null; "" would read as "unset". */
static int capi_no_empty_strings(struct capi_ctx *c, const json_t *obj)
{
	const char *key;
	json_t *val;

	json_object_foreach((json_t *)obj, key, val)
		if (json_is_string(val) && json_string_length(val) == 0)
			return capi_fail(c, CAPI_E_INVALID_FIELD,
					 "field '%.64s' must not be empty (null means unset)", key);
	return 0;
}

static int capi_sandbox_spec(struct capi_ctx *c, const char *tenant_id,
			     struct tenancy_sandbox_spec *spec)
{
	const json_t *b = c->body;

	if (capi_has(b, "vsock_uds") && capi_has(b, "vsock_cid"))
		return capi_fail(c, CAPI_E_INVALID_FIELD,
				 "fields 'vsock_uds' and 'vsock_cid' exclude each other");
	*spec = (struct tenancy_sandbox_spec){
		.tenant_id = tenant_id,
		.user_id = capi_str(b, "user_id"),
		.workspace_id = capi_str(b, "workspace_id"),
		.external_user_id = capi_str(b, "external_user_id"),
		.external_workspace_id = capi_str(b, "external_workspace_id"),
		.template_name = capi_str(b, "template"),
		.transport = TENANCY_TRANSPORT_NONE,
	};
	if (capi_has(b, "vsock_uds")) {
		spec->transport = TENANCY_TRANSPORT_UDS;
		spec->uds = capi_str(b, "vsock_uds");
	} else if (capi_has(b, "vsock_cid")) {
		spec->transport = TENANCY_TRANSPORT_VSOCK;
		spec->cid = (uint32_t)json_integer_value(json_object_get(b, "vsock_cid"));
	}
	return 0;
}

/*
 * With a "policy" (a template's, M15) the sandbox is created and then given
 * that policy; if the import fails the sandbox is deleted again before
 * anyone is told it exists (no event, no 201), so no caller ever sees a
 * sandbox with the default policy instead of the template's.  The policy is
 * validated completely first, so that path is for store failures only.
 */
static int h_sandbox_create(struct capi_ctx *c)
{
	struct policy_template pt = { 0 };
	struct tenancy_sandbox_spec spec;
	struct tenancy_sandbox s;
	struct tenancy_tenant t;
	bool with_policy = false;
	int r, d;

	if ((r = capi_check_object(c, c->body, "body", sandbox_create_fields,
				   N_FIELDS(sandbox_create_fields))) != 0 ||
	    (r = capi_no_empty_strings(c, c->body)) != 0 ||
	    (r = capi_tenant_in_reach(c, capi_str(c->body, "tenant_id"), &t)) != 0 ||
	    (r = capi_sandbox_spec(c, t.id, &spec)) != 0 ||
	    (r = capi_template_policy_parse(c, json_object_get(c->body, "policy"), &pt,
					    &with_policy)) != 0)
		return r;
	if ((r = tenancy_sandbox_create(c->api->tenancy, &spec, &s)) != 0) {
		r = capi_fail_tenancy(c, r);
		goto out;
	}
	if (with_policy && (r = policy_import(c->api->policy, s.id, &pt)) < 0) {
		r = capi_fail_policy(c, r);
		d = tenancy_sandbox_delete(c->api->tenancy, c->api->vault, s.tenant_id, s.id);
		/* The one case where a half-made sandbox survives: say so. */
		if (d != 0)
			r = capi_fail(c, CAPI_E_INTERNAL,
				      "sandbox %s: its template policy did not import and removing it failed (%s): delete it",
				      s.id, strerror(-d));
		goto out;
	}
	if (capi_events && capi_events->sandbox_created)
		capi_events->sandbox_created(capi_events->data, &s);
	r = capi_reply(c, 201, capi_json_sandbox(&s));
out:
	policy_template_clear(&pt);
	return r;
}

static json_t *capi_json_sandboxes(const struct tenancy_sandbox *rows, size_t n)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, capi_json_sandbox(&rows[i])) != 0) {
			json_decref(arr);
			return NULL;
		}
	return arr ? json_pack("{s:o}", "sandboxes", arr) : NULL;
}

static int h_sandboxes_list(struct capi_ctx *c)
{
	struct tenancy_sandbox_filter filter = {
		.tenant_id = capi_query(c, "tenant_id"),
		.external_user_id = capi_query(c, "external_user_id"),
		.external_workspace_id = capi_query(c, "external_workspace_id"),
	};
	struct tenancy_sandbox *rows = NULL;
	struct tenancy_tenant t;
	size_t n = 0;
	int r;

	/* TCP: always the caller's tenant; naming another one is a 404. */
	if (!c->admin) {
		if ((r = capi_tenant_in_reach(c, filter.tenant_id, &t)) != 0)
			return r;
		filter.tenant_id = c->caller_tenant;
	}
	if ((r = tenancy_sandbox_list(c->api->tenancy, &filter, &rows, &n)) != 0)
		return capi_fail_tenancy(c, r);
	r = capi_reply(c, 200, capi_json_sandboxes(rows, n));
	free(rows);
	return r;
}

static int h_sandbox_get(struct capi_ctx *c)
{
	struct tenancy_sandbox s;
	int r;

	if ((r = capi_sandbox_in_reach(c, &s)) != 0)
		return r;
	return capi_reply(c, 200, capi_json_sandbox(&s));
}

static int h_sandbox_delete(struct capi_ctx *c)
{
	struct tenancy_sandbox s;
	int r;

	if ((r = capi_sandbox_in_reach(c, &s)) != 0)
		return r;
	r = tenancy_sandbox_delete(c->api->tenancy, c->api->vault, s.tenant_id, s.id);
	/* The data path caches the sandbox row with its policy (policy.h):
	 * its next request must find the sandbox gone. */
	policy_invalidate();
	if (r != 0)
		return capi_fail_tenancy(c, r);
	if (capi_events && capi_events->sandbox_deleted)
		capi_events->sandbox_deleted(capi_events->data, &s);
	return capi_reply_empty(c, 204);
}

/* The sandbox's CA certificate (public; its key never leaves tenancy). */
static int h_sandbox_ca(struct capi_ctx *c)
{
	struct sandbox_ca_public ca;
	struct tenancy_sandbox s;
	int r;

	if ((r = capi_sandbox_in_reach(c, &s)) != 0)
		return r;
	if ((r = tenancy_sandbox_ca_public(c->api->tenancy, s.tenant_id, s.id, &ca)) != 0)
		return capi_fail_tenancy(c, r);
	r = capi_reply(c, 200, capi_json_sandbox_ca(s.id, &ca));
	sandbox_ca_public_clear(&ca);
	return r;
}

/* ---- sandbox PATCH: nothing is mutable, so it only confirms -------------- */

static const struct capi_field sandbox_patch_fields[] = {
	{ "id", CAPI_T_STRING, false },
	{ "tenant_id", CAPI_T_OPT_STRING, false },
	{ "user_id", CAPI_T_OPT_STRING, false },
	{ "workspace_id", CAPI_T_OPT_STRING, false },
	{ "external_user_id", CAPI_T_OPT_STRING, false },
	{ "external_workspace_id", CAPI_T_OPT_STRING, false },
	{ "template", CAPI_T_OPT_STRING, false },
	{ "transport", CAPI_T_OBJECT, false },
	{ "vsock_uds", CAPI_T_OPT_STRING, false },
	{ "vsock_cid", CAPI_T_OPT_UINT32, false },
	{ "created_at", CAPI_T_STRING, false },
};

static const struct capi_field transport_fields[] = {
	{ "kind", CAPI_T_STRING, true },
	{ "uds", CAPI_T_OPT_STRING, false },
	{ "cid", CAPI_T_OPT_UINT32, false },
};

/* A field given in the PATCH must equal the sandbox's value ("" = null). */
static int capi_patch_same(struct capi_ctx *c, const char *name, const char *current)
{
	const json_t *v = json_object_get(c->body, name);
	const char *want;

	if (!v)
		return 0;
	want = json_is_null(v) ? "" : json_string_value(v);
	if (strcmp(want, current) != 0)
		return capi_fail(c, CAPI_E_CONFLICT, "%s is immutable (fixed at creation)", name);
	return 0;
}

static int capi_patch_ids(struct capi_ctx *c, const struct tenancy_sandbox *s)
{
	static const char *const attr[] = {
		"user_id", "workspace_id", "external_user_id", "external_workspace_id",
	};
	const char *cur[] = { s->user_id, s->workspace_id, s->external_user_id,
			      s->external_workspace_id };
	const char *tenant = capi_str(c->body, "tenant_id");
	int r;

	/* Validate before comparing: a malformed value is a 400, not a change. */
	for (size_t i = 0; i < N_FIELDS(attr); i++) {
		const char *v = capi_str(c->body, attr[i]);

		if (v && !tenancy_attr_id_is_valid(v))
			return capi_fail(c, CAPI_E_INVALID_FIELD,
					 "field '%s' must be 1..256 bytes of printable ASCII without spaces",
					 attr[i]);
	}
	/* TCP: naming another tenant is a 404, as everywhere. */
	if (!c->admin && tenant && strcmp(tenant, c->caller_tenant) != 0)
		return capi_fail(c, CAPI_E_NOT_FOUND, "no tenant '%.64s'", tenant);
	if ((r = capi_patch_same(c, "id", s->id)) != 0 ||
	    (r = capi_patch_same(c, "tenant_id", s->tenant_id)) != 0)
		return r;
	for (size_t i = 0; i < N_FIELDS(attr); i++)
		if ((r = capi_patch_same(c, attr[i], cur[i])) != 0)
			return r;
	return capi_patch_same(c, "template", s->template_name);
}

static int capi_parse_kind(struct capi_ctx *c, const char *kind,
			   enum tenancy_transport_kind *ret_kind)
{
	static const char *const names[] = {
		[TENANCY_TRANSPORT_NONE] = "none",
		[TENANCY_TRANSPORT_UDS] = "uds",
		[TENANCY_TRANSPORT_VSOCK] = "vsock",
	};

	for (size_t i = 0; i < N_FIELDS(names); i++)
		if (strcmp(kind, names[i]) == 0) {
			*ret_kind = (enum tenancy_transport_kind)i;
			return 0;
		}
	return capi_fail(c, CAPI_E_INVALID_FIELD,
			 "field 'transport.kind' must be \"none\", \"uds\" or \"vsock\"");
}

/* The transport as a "transport" object must equal the sandbox's. */
static int capi_patch_transport_object(struct capi_ctx *c, const struct tenancy_transport *cur)
{
	const json_t *t = json_object_get(c->body, "transport");
	enum tenancy_transport_kind kind = TENANCY_TRANSPORT_NONE;
	const json_t *cid;
	const char *uds;
	int r;

	if (!t)
		return 0;
	if ((r = capi_check_object(c, t, "transport", transport_fields,
				   N_FIELDS(transport_fields))) != 0 ||
	    (r = capi_parse_kind(c, capi_str(t, "kind"), &kind)) != 0)
		return r;
	uds = capi_str(t, "uds");
	cid = json_object_get(t, "cid");
	if (kind != cur->kind || (uds && strcmp(uds, cur->uds) != 0) ||
	    (kind != TENANCY_TRANSPORT_UDS && uds) ||
	    (capi_has(t, "cid") && (kind != TENANCY_TRANSPORT_VSOCK ||
				    (uint32_t)json_integer_value(cid) != cur->cid)))
		return capi_fail(c, CAPI_E_CONFLICT, "transport is immutable (fixed at creation)");
	return 0;
}

/* vsock_uds / vsock_cid as in a creation body: null = "not this kind". */
static int capi_patch_transport_fields(struct capi_ctx *c, const struct tenancy_transport *cur)
{
	const json_t *uds = json_object_get(c->body, "vsock_uds");
	const json_t *cid = json_object_get(c->body, "vsock_cid");
	bool same = true;

	if (uds)
		same = json_is_null(uds) ? cur->kind != TENANCY_TRANSPORT_UDS
					 : cur->kind == TENANCY_TRANSPORT_UDS &&
					   strcmp(json_string_value(uds), cur->uds) == 0;
	if (same && cid)
		same = json_is_null(cid) ? cur->kind != TENANCY_TRANSPORT_VSOCK
					 : cur->kind == TENANCY_TRANSPORT_VSOCK &&
					   (uint32_t)json_integer_value(cid) == cur->cid;
	if (!same)
		return capi_fail(c, CAPI_E_CONFLICT, "transport is immutable (fixed at creation)");
	return 0;
}

static int h_sandbox_patch(struct capi_ctx *c)
{
	struct tenancy_sandbox s;
	char created[40];
	int r;

	if ((r = capi_check_object(c, c->body, "body", sandbox_patch_fields,
				   N_FIELDS(sandbox_patch_fields))) != 0 ||
	    (r = capi_no_empty_strings(c, c->body)) != 0 ||
	    (r = capi_sandbox_in_reach(c, &s)) != 0)
		return r;
	capi_format_time(s.created_at_us, created, sizeof(created));
	if ((r = capi_patch_ids(c, &s)) != 0 ||
	    (r = capi_patch_transport_object(c, &s.transport)) != 0 ||
	    (r = capi_patch_transport_fields(c, &s.transport)) != 0 ||
	    (r = capi_patch_same(c, "created_at", created)) != 0)
		return r;
	return capi_reply(c, 200, capi_json_sandbox(&s));
}

/* ---- secrets ------------------------------------------------------------- */

/* Which secret a route names, and what the tenant allows. */
struct capi_target {
	struct vault_secret_ref ref;
	bool sandbox_scope;     /* answers carry the sandbox's placeholder */
	bool allow_end_user;    /* the tenant's M18 setting */
	char tenant_id[TENANCY_TENANT_ID_MAX + 1];
	char scope_id[VAULT_ID_MAX + 1];
};

/* /v1/sandboxes/{sandbox}/secrets/{name} */
static int capi_target_sandbox(struct capi_ctx *c, struct capi_target *ret_target)
{
	struct tenancy_sandbox s;
	struct tenancy_tenant t;
	int r;

	if ((r = capi_sandbox_in_reach(c, &s)) != 0)
		return r;
	if ((r = tenancy_tenant_get(c->api->tenancy, s.tenant_id, &t)) != 0)
		return capi_fail_tenancy(c, r);
	memset(ret_target, 0, sizeof(*ret_target));
	memcpy(ret_target->tenant_id, s.tenant_id, sizeof(ret_target->tenant_id));
	snprintf(ret_target->scope_id, sizeof(ret_target->scope_id), "%s", s.id);
	ret_target->ref.scope = SCOPE_WALK_SANDBOX;
	ret_target->sandbox_scope = true;
	ret_target->allow_end_user = t.allow_end_user_scoped_credentials;
	return 0;
}

/* /v1/tenants/{tenant}/secrets/{scope}/{scope_id}[/{name}] */
static int capi_target_scope(struct capi_ctx *c, struct capi_target *ret_target)
{
	const char *scope_name = capi_param(c, "scope"), *scope_id = capi_param(c, "scope_id");
	enum scope_walk_scope scope;
	struct tenancy_tenant t;
	int r;

	if ((r = capi_tenant_in_reach(c, capi_param(c, "tenant"), &t)) != 0)
		return r;
	if (scope_walk_scope_from_name(scope_name, &scope) != 0 || scope == SCOPE_WALK_SANDBOX)
		return capi_fail(c, CAPI_E_INVALID_FIELD,
				 "scope '%.64s' must be user, external_user, external_workspace, workspace or tenant (sandbox secrets live under /v1/sandboxes)",
				 scope_name);
	if (!tenancy_attr_id_is_valid(scope_id))
		return capi_fail(c, CAPI_E_INVALID_FIELD,
				 "scope_id must be 1..256 bytes of printable ASCII without spaces");
	if (scope == SCOPE_WALK_TENANT && strcmp(scope_id, t.id) != 0)
		return capi_fail(c, CAPI_E_INVALID_FIELD, "scope tenant: scope_id must be the tenant id");
	memset(ret_target, 0, sizeof(*ret_target));
	memcpy(ret_target->tenant_id, t.id, sizeof(ret_target->tenant_id));
	snprintf(ret_target->scope_id, sizeof(ret_target->scope_id), "%s", scope_id);
	ret_target->ref.scope = scope;
	ret_target->allow_end_user = t.allow_end_user_scoped_credentials;
	return 0;
}

/* The target's routes differ in prefix only: one entry point for both. */
static int capi_target(struct capi_ctx *c, struct capi_target *ret_target)
{
	int r = capi_param(c, "sandbox") ? capi_target_sandbox(c, ret_target)
					 : capi_target_scope(c, ret_target);

	if (r != 0)
		return r;
	ret_target->ref.tenant_id = ret_target->tenant_id;
	ret_target->ref.scope_id = ret_target->scope_id;
	ret_target->ref.name = capi_param(c, "name");
	return 0;
}

/* Answer with the secret as the vault now describes it. */
static int capi_reply_secret(struct capi_ctx *c, const struct capi_target *tg, int status)
{
	struct vault_secret_list list = { 0, NULL };
	json_t *obj = NULL;
	bool found = false;
	int r;

	r = vault_secret_list(c->api->vault, tg->ref.tenant_id, tg->ref.scope, tg->ref.scope_id,
			      &list);
	if (r != 0)
		return capi_fail_vault(c, r);
	for (size_t i = 0; i < list.n && !found; i++) {
		if (strcmp(list.items[i].name, tg->ref.name) == 0) {
			found = true;
			obj = capi_json_secret(&list.items[i], tg->sandbox_scope);
		}
	}
	vault_secret_list_free(&list);
	if (!found) /* deleted by a concurrent request */
		return capi_fail(c, CAPI_E_NOT_FOUND, "no secret '%s'", tg->ref.name);
	return capi_reply(c, status, obj);
}

/* A value's size is checked here so an oversize one is a 413, as the
 * contract says; its content is the vault's to judge. */
static int capi_value(struct capi_ctx *c, const uint8_t **ret_value, size_t *ret_len)
{
	const json_t *v = json_object_get(c->body, "value");

	if (json_string_length(v) > VAULT_VALUE_MAX)
		return capi_fail(c, CAPI_E_TOO_LARGE, "value is longer than %d bytes",
				 VAULT_VALUE_MAX);
	*ret_value = (const uint8_t *)json_string_value(v);
	*ret_len = json_string_length(v);
	return 0;
}

static int capi_end_user_gate(struct capi_ctx *c, const struct capi_target *tg)
{
	if (tg->ref.scope == SCOPE_WALK_EXTERNAL_USER && !tg->allow_end_user)
		return capi_fail(c, CAPI_E_EUC_DISABLED,
				 "scope external_user is disabled for this tenant (setting \"allow end-user-scoped credentials\" is off)");
	return 0;
}

static const struct capi_field secret_put_fields[] = {
	{ "value", CAPI_T_STRING, true },
	{ "expose_as_env", CAPI_T_STRING, true },
	{ "hosts", CAPI_T_STRINGS, false },
	{ "allow_cleartext", CAPI_T_BOOL, false },
};

/* Borrow the hosts array's strings (alive as long as the body). */
static int capi_hosts(struct capi_ctx *c, const char *hosts[VAULT_HOSTS_MAX], size_t *ret_n)
{
	const json_t *arr = json_object_get(c->body, "hosts");
	size_t n = json_array_size(arr);

	if (n > VAULT_HOSTS_MAX)
		return capi_fail(c, CAPI_E_INVALID_FIELD, "field 'hosts' has %zu entries; the limit is %d",
				 n, VAULT_HOSTS_MAX);
	for (size_t i = 0; i < n; i++)
		hosts[i] = json_string_value(json_array_get(arr, i));
	*ret_n = n;
	return 0;
}

/* Rotation keeps placeholders, so the guest env cannot change; it is still
 * reported: the gateway recomputes and sends nothing when nothing differs. */
static void capi_bindings_changed(const char *tenant_id)
{
	if (capi_events && capi_events->bindings_changed)
		capi_events->bindings_changed(capi_events->data, tenant_id);
}

static int h_secret_put(struct capi_ctx *c)
{
	const char *hosts[VAULT_HOSTS_MAX];
	struct vault_secret_spec spec;
	struct vault_set_result res;
	struct capi_target tg;
	int r;

	memset(&spec, 0, sizeof(spec));
	if ((r = capi_check_object(c, c->body, "body", secret_put_fields,
				   N_FIELDS(secret_put_fields))) != 0 ||
	    (r = capi_target(c, &tg)) != 0 ||
	    (r = capi_value(c, &spec.value, &spec.value_len)) != 0 ||
	    (r = capi_hosts(c, hosts, &spec.n_hosts)) != 0)
		return r;
	spec.ref = tg.ref;
	spec.expose_as_env = capi_str(c->body, "expose_as_env");
	spec.hosts = hosts;
	spec.allow_cleartext = json_is_true(json_object_get(c->body, "allow_cleartext"));
	spec.tenant_allows_end_user_credentials = tg.allow_end_user;
	if ((r = vault_secret_set(c->api->vault, &spec, &res)) != 0)
		return capi_fail_vault(c, r);
	capi_bindings_changed(tg.ref.tenant_id);
	return capi_reply_secret(c, &tg, res.created ? 201 : 200);
}

static const struct capi_field secret_rotate_fields[] = {
	{ "value", CAPI_T_STRING, true },
};

static int h_secret_rotate(struct capi_ctx *c)
{
	struct capi_target tg;
	const uint8_t *value;
	size_t len;
	int r;

	if ((r = capi_check_object(c, c->body, "body", secret_rotate_fields,
				   N_FIELDS(secret_rotate_fields))) != 0 ||
	    (r = capi_target(c, &tg)) != 0 ||
	    (r = capi_end_user_gate(c, &tg)) != 0 ||
	    (r = capi_value(c, &value, &len)) != 0)
		return r;
	if ((r = vault_secret_rotate(c->api->vault, &tg.ref, value, len, NULL)) != 0)
		return capi_fail_vault(c, r);
	capi_bindings_changed(tg.ref.tenant_id);
	return capi_reply_secret(c, &tg, 200);
}

static int h_secret_delete(struct capi_ctx *c)
{
	struct capi_target tg;
	int r;

	if ((r = capi_target(c, &tg)) != 0)
		return r;
	if ((r = vault_secret_delete(c->api->vault, &tg.ref)) != 0)
		return capi_fail_vault(c, r);
	capi_bindings_changed(tg.ref.tenant_id);
	return capi_reply_empty(c, 204);
}

static json_t *capi_json_secrets(const char *key, const struct vault_secret_list *list,
				 bool with_placeholder)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < list->n; i++)
		if (json_array_append_new(arr, capi_json_secret(&list->items[i],
								with_placeholder)) != 0) {
			json_decref(arr);
			return NULL;
		}
	return arr ? json_pack("{s:o}", key, arr) : NULL;
}

static int h_scope_secrets(struct capi_ctx *c)
{
	struct vault_secret_list list = { 0, NULL };
	struct capi_target tg;
	int r;

	if ((r = capi_target(c, &tg)) != 0)
		return r;
	r = vault_secret_list(c->api->vault, tg.ref.tenant_id, tg.ref.scope, tg.ref.scope_id,
			      &list);
	if (r != 0)
		return capi_fail_vault(c, r);
	r = capi_reply(c, 200, capi_json_secrets("secrets", &list, false));
	vault_secret_list_free(&list);
	return r;
}

/* The sandbox's resolved view: the scope walk's winner per env name. */
static int h_sandbox_secrets(struct capi_ctx *c)
{
	struct vault_secret_list list = { 0, NULL };
	struct scope_walk_attribution a;
	struct tenancy_sandbox s;
	int r;

	if ((r = capi_sandbox_in_reach(c, &s)) != 0)
		return r;
	tenancy_sandbox_attribution(&s, &a);
	if ((r = vault_resolve(c->api->vault, &a, &list)) != 0)
		return capi_fail_vault(c, r);
	r = capi_reply(c, 200, capi_json_secrets("bindings", &list, true));
	vault_secret_list_free(&list);
	return r;
}

/* ---- exec (the guest gateway runs it; guest_gateway.h) ------------------- */

static int h_sandbox_exec(struct capi_ctx *c)
{
	struct tenancy_sandbox s;
	int r;

	if ((r = capi_sandbox_in_reach(c, &s)) != 0)
		return r;
	if (!capi_events || !capi_events->exec)
		return control_response_error(503, "guest_not_connected",
					      "no guest gateway in this process", c->resp);
	return capi_events->exec(capi_events->data, &s, c->req->body, c->req->body_len, c->resp);
}

/* ---- the table ----------------------------------------------------------- */

static const char *const sandbox_list_query[] = {
	"tenant_id", "external_user_id", "external_workspace_id", NULL,
};

#define ADMIN CAPI_ROUTE_ADMIN_ONLY
#define BODY CAPI_ROUTE_BODY
#define SCOPE_SECRET "/v1/tenants/{tenant}/secrets/{scope}/{scope_id}/{name}"
#define SANDBOX_SECRET "/v1/sandboxes/{sandbox}/secrets/{name}"
#define NETWORK "/v1/sandboxes/{sandbox}/network"

const struct capi_route capi_routes[] = {
	{ "GET", "/v1/health", CAPI_ROUTE_NO_AUTH, NULL, h_health },
	{ "GET", "/v1/tenants", ADMIN, NULL, h_tenants_list },
	{ "POST", "/v1/tenants", ADMIN | BODY, NULL, h_tenant_create },
	{ "GET", "/v1/tenants/{tenant}", 0, NULL, h_tenant_get },
	{ "PATCH", "/v1/tenants/{tenant}/settings", BODY, NULL, h_tenant_settings },
	{ "POST", "/v1/tenants/{tenant}/apikeys", BODY, NULL, h_apikey_create },
	{ "GET", "/v1/tenants/{tenant}/apikeys", 0, NULL, h_apikeys_list },
	{ "DELETE", "/v1/tenants/{tenant}/apikeys/{apikey}", 0, NULL, h_apikey_revoke },
	{ "POST", "/v1/sandboxes", BODY, NULL, h_sandbox_create },
	{ "GET", "/v1/sandboxes", 0, sandbox_list_query, h_sandboxes_list },
	{ "GET", "/v1/sandboxes/{sandbox}", 0, NULL, h_sandbox_get },
	{ "PATCH", "/v1/sandboxes/{sandbox}", BODY, NULL, h_sandbox_patch },
	{ "DELETE", "/v1/sandboxes/{sandbox}", 0, NULL, h_sandbox_delete },
	{ "GET", "/v1/sandboxes/{sandbox}/ca", 0, NULL, h_sandbox_ca },
	{ "GET", "/v1/sandboxes/{sandbox}/template", 0, NULL, capi_h_sandbox_template },
	{ "POST", "/v1/sandboxes/{sandbox}/exec", BODY, NULL, h_sandbox_exec },
	{ "GET", "/v1/sandboxes/{sandbox}/secrets", 0, NULL, h_sandbox_secrets },
	{ "PUT", SANDBOX_SECRET, BODY, NULL, h_secret_put },
	{ "POST", SANDBOX_SECRET "/rotate", BODY, NULL, h_secret_rotate },
	{ "DELETE", SANDBOX_SECRET, 0, NULL, h_secret_delete },
	{ "GET", "/v1/tenants/{tenant}/secrets/{scope}/{scope_id}", 0, NULL, h_scope_secrets },
	{ "PUT", SCOPE_SECRET, BODY, NULL, h_secret_put },
	{ "POST", SCOPE_SECRET "/rotate", BODY, NULL, h_secret_rotate },
	{ "DELETE", SCOPE_SECRET, 0, NULL, h_secret_delete },
	{ "GET", NETWORK, 0, NULL, capi_h_network_status },
	{ "GET", NETWORK "/pending", 0, NULL, capi_h_network_pending },
	{ "POST", NETWORK "/allow", BODY, NULL, capi_h_network_allow },
	{ "POST", NETWORK "/deny", BODY, NULL, capi_h_network_deny },
	{ "POST", NETWORK "/lockdown", 0, NULL, capi_h_network_lockdown },
	{ "POST", NETWORK "/observe", 0, NULL, capi_h_network_observe },
	{ "GET", "/v1/audit", 0, capi_audit_list_query, capi_h_audit_list },
	{ "GET", "/v1/audit/export", 0, capi_audit_export_query, capi_h_audit_export },
	{ "GET", "/v1/audit/verify", ADMIN, NULL, capi_h_audit_verify },
	{ "GET", "/v1/audit/tail", 0, capi_audit_tail_query, capi_h_audit_tail },
};
const size_t capi_n_routes = N_FIELDS(capi_routes);
