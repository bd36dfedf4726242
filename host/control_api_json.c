/*
 * control_api_json — the shapes of the control API's bodies and objects
 * (docs/api.md, "Objects").  Bodies are checked against a field table before
 * a handler reads them; objects are built from records, never from request
 * text, so a secret value has no path into a response.
 */
#include "control_api_internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- bodies -------------------------------------------------------------- */

static const char *capi_type_name(enum capi_type t)
{
	switch (t) {
	case CAPI_T_STRING:     return "a string";
	case CAPI_T_OPT_STRING: return "a string or null";
	case CAPI_T_BOOL:       return "true or false";
	case CAPI_T_UINT32:     return "an integer 0..4294967295";
	case CAPI_T_OPT_UINT32: return "an integer 0..4294967295 or null";
	case CAPI_T_STRINGS:    return "an array of strings";
	case CAPI_T_OBJECT:     return "an object";
	case CAPI_T_ARRAY:      return "an array";
	}
	return "?";
}

static bool capi_is_uint32(const json_t *v)
{
	return json_is_integer(v) && json_integer_value(v) >= 0 &&
	       json_integer_value(v) <= (json_int_t)UINT32_MAX;
}

static bool capi_is_strings(const json_t *v)
{
	size_t i;
	json_t *item;

	if (!json_is_array(v))
		return false;
	json_array_foreach(v, i, item)
		if (!json_is_string(item))
			return false;
	return true;
}

static bool capi_type_ok(enum capi_type t, const json_t *v)
{
	switch (t) {
	case CAPI_T_STRING:     return json_is_string(v);
	case CAPI_T_OPT_STRING: return json_is_string(v) || json_is_null(v);
	case CAPI_T_BOOL:       return json_is_boolean(v);
	case CAPI_T_UINT32:     return capi_is_uint32(v);
	case CAPI_T_OPT_UINT32: return capi_is_uint32(v) || json_is_null(v);
	case CAPI_T_STRINGS:    return capi_is_strings(v);
	case CAPI_T_OBJECT:     return json_is_object(v);
	case CAPI_T_ARRAY:      return json_is_array(v);
	}
	return false;
}

int capi_check_object(struct capi_ctx *c, const json_t *obj, const char *where,
		      const struct capi_field *fields, size_t n)
{
	const char *key;
	json_t *val;

	if (!json_is_object(obj))
		return capi_fail(c, CAPI_E_INVALID_FIELD, "%s must be an object", where);
	json_object_foreach((json_t *)obj, key, val) {
		const struct capi_field *f = NULL;

		for (size_t i = 0; i < n && !f; i++)
			if (strcmp(fields[i].name, key) == 0)
				f = &fields[i];
		/* Names are quoted, values never: a value may be a secret. */
		if (!f)
			return capi_fail(c, CAPI_E_INVALID_FIELD, "%s has unknown field '%.64s'",
					 where, key);
		if (!capi_type_ok(f->type, val))
			return capi_fail(c, CAPI_E_INVALID_FIELD, "field '%s' must be %s", f->name,
					 capi_type_name(f->type));
	}
	for (size_t i = 0; i < n; i++)
		if (fields[i].required && !json_object_get(obj, fields[i].name))
			return capi_fail(c, CAPI_E_INVALID_FIELD, "field '%s' is required",
					 fields[i].name);
	return 0;
}

const char *capi_str(const json_t *obj, const char *name)
{
	return json_string_value(json_object_get(obj, name));
}

bool capi_has(const json_t *obj, const char *name)
{
	const json_t *v = json_object_get(obj, name);

	return v && !json_is_null(v);
}

/* ---- objects ------------------------------------------------------------- */

void capi_format_time(int64_t us, char *buf, size_t size)
{
	int64_t secs = us / 1000000, frac = us % 1000000;
	struct tm tm;
	time_t t;

	if (frac < 0) {
		frac += 1000000;
		secs--;
	}
	t = (time_t)secs;
	if (!gmtime_r(&t, &tm)) {
		snprintf(buf, size, "1970-01-01T00:00:00.000000Z");
		return;
	}
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
}

json_t *capi_json_time(int64_t us)
{
	char buf[40];

	capi_format_time(us, buf, sizeof(buf));
	return json_string(buf);
}

json_t *capi_json_time_or_null(int64_t us)
{
	return us == 0 ? json_null() : capi_json_time(us);
}

/* "" (unset) → NULL, which json_pack's "s?" writes as null. */
static const char *capi_opt(const char *s)
{
	return s[0] ? s : NULL;
}

json_t *capi_json_tenant(const struct tenancy_tenant *t)
{
	return json_pack("{s:s, s:s, s:o, s:{s:b}}", "id", t->id, "name", t->name,
			 "created_at", capi_json_time(t->created_at_us),
			 "settings", "allow_end_user_scoped_credentials",
			 t->allow_end_user_scoped_credentials);
}

static json_t *capi_json_transport(const struct tenancy_transport *t)
{
	switch (t->kind) {
	case TENANCY_TRANSPORT_UDS:
		return json_pack("{s:s, s:s}", "kind", "uds", "uds", t->uds);
	case TENANCY_TRANSPORT_VSOCK:
		return json_pack("{s:s, s:I}", "kind", "vsock", "cid", (json_int_t)t->cid);
	case TENANCY_TRANSPORT_NONE:
		break;
	}
	return json_pack("{s:s}", "kind", "none");
}

json_t *capi_json_sandbox(const struct tenancy_sandbox *s)
{
	return json_pack("{s:s, s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:o, s:o}",
			 "id", s->id, "tenant_id", s->tenant_id,
			 "user_id", capi_opt(s->user_id),
			 "workspace_id", capi_opt(s->workspace_id),
			 "external_user_id", capi_opt(s->external_user_id),
			 "external_workspace_id", capi_opt(s->external_workspace_id),
			 "template", capi_opt(s->template_name),
			 "transport", capi_json_transport(&s->transport),
			 "created_at", capi_json_time(s->created_at_us));
}

/* The CA's public half: the private key has no field to go in. */
json_t *capi_json_sandbox_ca(const char *sandbox_id, const struct sandbox_ca_public *ca)
{
	return json_pack("{s:s, s:s%, s:o, s:o, s:s}",
			 "sandbox_id", sandbox_id,
			 "certificate_pem", ca->cert_pem, ca->cert_pem_len,
			 "not_before", capi_json_time((int64_t)ca->not_before * 1000000),
			 "not_after", capi_json_time((int64_t)ca->not_after * 1000000),
			 "sha256_fingerprint", ca->sha256_fingerprint);
}

json_t *capi_json_api_key(const struct tenancy_api_key *k)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o}",
			 "id", k->id, "tenant_id", k->tenant_id, "name", k->name,
			 "prefix", k->prefix,
			 "created_at", capi_json_time(k->created_at_us),
			 "last_used_at", capi_json_time_or_null(k->last_used_at_us),
			 "revoked_at", capi_json_time_or_null(k->revoked_at_us));
}

static json_t *capi_json_hosts(const struct vault_secret_info *s)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < s->n_hosts; i++) {
		if (json_array_append_new(arr, json_string(s->hosts[i])) != 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

/* Everything about a secret except its value, which a vault_secret_info
 * does not even hold. */
json_t *capi_json_secret(const struct vault_secret_info *s, bool with_placeholder)
{
	json_t *obj;

	obj = json_pack("{s:s, s:s, s:s, s:s, s:I, s:o, s:o, s:o, s:b}",
			"name", s->name, "expose_as_env", s->expose_as_env,
			"scope", scope_walk_scope_name(s->scope), "scope_id", s->scope_id,
			"version", (json_int_t)s->version,
			"created_at", capi_json_time(s->created_at_us),
			"rotated_at", capi_json_time_or_null(s->rotated_at_us),
			"hosts", capi_json_hosts(s),
			"allow_cleartext", s->allow_cleartext);
	if (obj && with_placeholder &&
	    json_object_set_new(obj, "placeholder", json_string(s->placeholder)) != 0) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}
