/*
 * control_api_template — templates (MISSION M15; docs/api.md "Templates"):
 * GET /v1/sandboxes/{id}/template returns the sandbox's policy state (mode,
 * allowlist, listen ports), and the "policy" object of POST /v1/sandboxes
 * carries such a state into a new sandbox.
 *
 * The file beside the VM image (IMAGE.policy.pb, template_file.h) is
 * miosactl's business: the CLI may talk to a remote broker, so it reads and
 * writes the file and the broker only sees JSON.  The API is a trust
 * boundary of its own, so the "policy" object is validated here as fully as
 * the file is by template_file.c, before the sandbox exists.
 */
#include "control_api_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "guest_gateway.h"

#define N_FIELDS(a) (sizeof(a) / sizeof((a)[0]))

/* The guest's listeners: fixed for every sandbox of this broker (80, 443). */
static const uint16_t capi_listen_ports[] = GUEST_GATEWAY_LISTEN_PORTS;

static json_t *capi_json_listen_ports(void)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < N_FIELDS(capi_listen_ports); i++)
		if (json_array_append_new(arr, json_integer(capi_listen_ports[i])) != 0) {
			json_decref(arr);
			return NULL;
		}
	return arr;
}

static json_t *capi_json_template(const char *sandbox_id, const struct policy_template *t)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < t->n_allow; i++) {
		const struct policy_entry *e = &t->allow[i];

		if (json_array_append_new(arr, json_pack("{s:s, s:o}", "pattern", e->pattern, "port",
							 e->port ? json_integer(e->port)
								 : json_null())) != 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return json_pack("{s:s, s:s, s:o, s:o}", "sandbox_id", sandbox_id, "mode",
			 t->mode == POLICY_ENFORCE ? "enforce" : "observe", "allowlist", arr,
			 "listen_ports", capi_json_listen_ports());
}

int capi_h_sandbox_template(struct capi_ctx *c)
{
	struct policy_template t = { 0 };
	struct tenancy_sandbox s;
	int r;

	if ((r = capi_sandbox_in_reach(c, &s)) != 0)
		return r;
	if ((r = policy_export(c->api->policy, s.id, &t)) < 0)
		return capi_fail_policy(c, r);
	r = capi_reply(c, 200, capi_json_template(s.id, &t));
	policy_template_clear(&t);
	return r;
}

/* ---- the "policy" object of POST /v1/sandboxes ---------------------------- */

static const struct capi_field policy_fields[] = {
	{ "mode", CAPI_T_STRING, true },
	{ "allowlist", CAPI_T_ARRAY, true },
	{ "listen_ports", CAPI_T_ARRAY, false },
};

static const struct capi_field entry_fields[] = {
	{ "pattern", CAPI_T_STRING, true },
	{ "port", CAPI_T_OPT_UINT32, false },
};

static int capi_policy_entries(struct capi_ctx *c, const json_t *arr,
			       struct policy_entry **ret_allow, size_t *ret_n)
{
	size_t n = json_array_size(arr);
	struct policy_entry *allow = NULL;
	const char *pat;
	int r;

	if (n > POLICY_ALLOW_MAX)
		return capi_fail(c, CAPI_E_INVALID_FIELD,
				 "field 'policy.allowlist' has more than %d entries", POLICY_ALLOW_MAX);
	if (n > 0 && !(allow = calloc(n, sizeof(*allow))))
		return capi_fail_errno(c, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(arr, i), *port;
		json_int_t v = 0;

		if ((r = capi_check_object(c, e, "policy.allowlist[]", entry_fields,
					   N_FIELDS(entry_fields))) != 0)
			goto fail;
		port = json_object_get(e, "port");
		if (port && !json_is_null(port) &&
		    ((v = json_integer_value(port)) < 1 || v > 65535)) {
			r = capi_fail(c, CAPI_E_INVALID_FIELD,
				      "field 'policy.allowlist[%zu].port' must be 1..65535 or null", i);
			goto fail;
		}
		pat = capi_str(e, "pattern");
		/* Too long for the buffer is too long for host_pattern too. */
		if (strlen(pat) >= sizeof(allow[i].pattern)) {
			r = capi_fail(c, CAPI_E_INVALID_FIELD,
				      "field 'policy.allowlist[%zu].pattern' is longer than %d bytes",
				      i, HOST_PATTERN_MAX);
			goto fail;
		}
		memcpy(allow[i].pattern, pat, strlen(pat) + 1);
		allow[i].port = (uint16_t)v;
	}
	*ret_allow = allow;
	*ret_n = n;
	return 0;
fail:
	free(allow);
	return r;
}

/* Listen ports are not per sandbox here: a template may only name ports the
 * guest gateway serves anyway; anything else would be silently dropped. */
static int capi_policy_listen_ports(struct capi_ctx *c, const json_t *arr)
{
	size_t i;
	json_t *v;

	json_array_foreach(arr, i, v) {
		bool served = false;
		json_int_t p = json_integer_value(v);

		if (!json_is_integer(v) || p < 1 || p > 65535)
			return capi_fail(c, CAPI_E_INVALID_FIELD,
					 "field 'policy.listen_ports' must hold integers 1..65535");
		for (size_t k = 0; k < N_FIELDS(capi_listen_ports); k++)
			served = served || capi_listen_ports[k] == p;
		if (!served)
			return capi_fail(c, CAPI_E_INVALID_FIELD,
					 "field 'policy.listen_ports': port %d is not served: this broker's guest listeners are 80 and 443",
					 (int)p);
	}
	return 0;
}

int capi_template_policy_parse(struct capi_ctx *c, const json_t *policy,
			       struct policy_template *ret_template, bool *ret_present)
{
	struct policy_template t = { 0 };
	struct policy_snapshot *snap = NULL;
	const char *mode;
	char err[POLICY_ERR_MAX];
	int r;

	if (!policy || json_is_null(policy)) {
		*ret_template = t;
		*ret_present = false;
		return 0;
	}
	if ((r = capi_check_object(c, policy, "policy", policy_fields, N_FIELDS(policy_fields))) != 0)
		return r;
	mode = capi_str(policy, "mode");
	if (strcmp(mode, "observe") == 0)
		t.mode = POLICY_OBSERVE;
	else if (strcmp(mode, "enforce") == 0)
		t.mode = POLICY_ENFORCE;
	else
		return capi_fail(c, CAPI_E_INVALID_FIELD,
				 "field 'policy.mode' must be \"observe\" or \"enforce\"");
	if (json_object_get(policy, "listen_ports") &&
	    (r = capi_policy_listen_ports(c, json_object_get(policy, "listen_ports"))) != 0)
		return r;
	if ((r = capi_policy_entries(c, json_object_get(policy, "allowlist"), &t.allow,
				     &t.n_allow)) != 0)
		return r;
	/* The rules policy_import() applies, checked before anything is made. */
	r = policy_snapshot_new(t.mode, t.allow, t.n_allow, &snap, err, sizeof(err));
	policy_snapshot_free(snap);
	if (r < 0) {
		policy_template_clear(&t);
		if (r == -EINVAL)
			return capi_fail(c, CAPI_E_INVALID_FIELD, "field 'policy.allowlist': %s", err);
		return capi_fail_errno(c, r, err);
	}
	*ret_template = t;
	*ret_present = true;
	return 0;
}
