/*
 * control_api_internal — what the files of the control API share:
 * control_api.c (dispatch: path, auth, body, errors, responses),
 * control_api_json.c (body schemas, object encoders) and
 * control_api_routes.c (the route table and its handlers).
 *
 * A handler gets a context whose path parameters are percent-decoded (not
 * yet validated), whose query parameters are known to the route, whose body
 * (for body routes) is one JSON object of the route's schema shape, and
 * whose caller is authenticated.  It either sets the response
 * (capi_reply*) and returns 0, or records an error (capi_fail*) and returns
 * its negative result; the dispatcher turns that into the error response.
 */
#ifndef MIOSA_CONTROL_API_INTERNAL_H
#define MIOSA_CONTROL_API_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "control_api.h"
#include "policy.h"
#include "sandbox_ca.h"
#include "tenancy.h"
#include "vault.h"

#define CAPI_PARAMS_MAX 4
#define CAPI_QUERY_MAX 12
#define CAPI_MSG_MAX 256

struct control_api {
	struct vault *vault;
	struct tenancy *tenancy;
	struct policy *policy;
	struct store *store;         /* audit queries, export, verify */
};

/* The API's error classes: the status and code of docs/api.md's table. */
enum capi_error {
	CAPI_E_BAD_REQUEST,
	CAPI_E_INVALID_JSON,
	CAPI_E_INVALID_FIELD,
	CAPI_E_UNAUTHORIZED,
	CAPI_E_EUC_DISABLED,
	CAPI_E_NOT_FOUND,
	CAPI_E_METHOD,
	CAPI_E_CONFLICT,
	CAPI_E_LENGTH_REQUIRED,
	CAPI_E_TOO_LARGE,
	CAPI_E_MEDIA_TYPE,
	CAPI_E_INTERNAL,
	CAPI_E_UNAVAILABLE,
	CAPI_E__COUNT
};

struct capi_ctx {
	struct control_api *api;
	const struct control_request *req;
	struct control_response *resp;
	bool admin;
	const char *caller_tenant;   /* TCP: the key's tenant; admin: NULL */
	struct tenancy_api_key key;  /* TCP: the verified key */
	size_t n_params;
	const char *param_names[CAPI_PARAMS_MAX]; /* into the route pattern */
	size_t param_name_lens[CAPI_PARAMS_MAX];
	const char *params[CAPI_PARAMS_MAX];      /* decoded */
	size_t n_query;
	const char *query_keys[CAPI_QUERY_MAX];
	const char *query_values[CAPI_QUERY_MAX];
	json_t *body;                /* body routes: the parsed object */
	enum capi_error error;
	char msg[CAPI_MSG_MAX];
};

typedef int (*capi_handler)(struct capi_ctx *c);

#define CAPI_ROUTE_ADMIN_ONLY 0x1u /* TCP callers get 404, as for an unknown path */
#define CAPI_ROUTE_BODY 0x2u       /* needs a JSON object body */
#define CAPI_ROUTE_NO_AUTH 0x4u    /* TCP callers need no key */

struct capi_route {
	const char *method;
	const char *pattern;          /* "/v1/sandboxes/{sandbox}": {x} = one segment */
	unsigned flags;
	const char *const *query;     /* allowed query parameters, NULL-terminated */
	capi_handler handler;
};

extern const struct capi_route capi_routes[];
/* control_api_set_events(); NULL: none. */
extern const struct control_api_events *capi_events;
/* control_api_set_tally(); NULL: none. */
extern struct policy_tally *capi_tally;
extern const size_t capi_n_routes;

/* ---- control_api.c: results ---------------------------------------------- */

/* Record an error of class e; returns -1 (a handler's failure). */
__attribute__((format(printf, 3, 4)))
int capi_fail(struct capi_ctx *c, enum capi_error e, const char *fmt, ...);
/* Record a module error r (negative errno) through the one errno table,
 * with the module's message (vault/tenancy messages never hold values). */
int capi_fail_errno(struct capi_ctx *c, int r, const char *msg);
int capi_fail_vault(struct capi_ctx *c, int r);
int capi_fail_tenancy(struct capi_ctx *c, int r);
int capi_fail_policy(struct capi_ctx *c, int r);
/* Answer status with obj (reference stolen; NULL = out of memory). */
int capi_reply(struct capi_ctx *c, int status, json_t *obj);
int capi_reply_empty(struct capi_ctx *c, int status);

/* Answer status with a non-JSON body (malloc'd, reference stolen even on
 * failure) of type content_type (static). */
int capi_reply_raw(struct capi_ctx *c, int status, const char *content_type, char *body,
		   size_t len);

/* Is the sandbox named by the route's {sandbox} in this caller's reach?
 * (control_api_routes.c; 404 for another tenant's, as for a missing one) */
int capi_sandbox_in_reach(struct capi_ctx *c, struct tenancy_sandbox *ret_sandbox);

/* Decoded path parameter / query parameter by name; NULL if absent. */
const char *capi_param(const struct capi_ctx *c, const char *name);
const char *capi_query(const struct capi_ctx *c, const char *name);

/* ---- control_api_json.c: bodies and objects ------------------------------ */

enum capi_type {
	CAPI_T_STRING,     /* a string */
	CAPI_T_OPT_STRING, /* a string, or null = unset */
	CAPI_T_BOOL,
	CAPI_T_UINT32,     /* an integer 0..4294967295 */
	CAPI_T_OPT_UINT32, /* as above, or null */
	CAPI_T_STRINGS,    /* an array of strings */
	CAPI_T_OBJECT,
	CAPI_T_ARRAY,      /* an array; the caller checks its items */
};

struct capi_field {
	const char *name;
	enum capi_type type;
	bool required;
};

/* obj has only these fields, each of its type, and all required ones. */
int capi_check_object(struct capi_ctx *c, const json_t *obj, const char *where,
		      const struct capi_field *fields, size_t n);
/* A string field's value: NULL if absent or null. */
const char *capi_str(const json_t *obj, const char *name);
/* Present (and not null)? */
bool capi_has(const json_t *obj, const char *name);

json_t *capi_json_time(int64_t us);      /* RFC 3339 UTC with microseconds */
json_t *capi_json_time_or_null(int64_t us); /* 0 = null */
json_t *capi_json_tenant(const struct tenancy_tenant *t);
json_t *capi_json_sandbox(const struct tenancy_sandbox *s);
json_t *capi_json_api_key(const struct tenancy_api_key *k);
json_t *capi_json_sandbox_ca(const char *sandbox_id, const struct sandbox_ca_public *ca);
json_t *capi_json_secret(const struct vault_secret_info *s, bool with_placeholder);
/* Format us as RFC 3339 into buf (at least 28 bytes). */
void capi_format_time(int64_t us, char *buf, size_t size);

/* ---- control_api_network.c: network policy and audit handlers ------------ */

int capi_h_network_status(struct capi_ctx *c);
int capi_h_network_pending(struct capi_ctx *c);
int capi_h_network_allow(struct capi_ctx *c);
int capi_h_network_deny(struct capi_ctx *c);
int capi_h_network_lockdown(struct capi_ctx *c);
int capi_h_network_observe(struct capi_ctx *c);
int capi_h_audit_list(struct capi_ctx *c);
int capi_h_audit_export(struct capi_ctx *c);
int capi_h_audit_verify(struct capi_ctx *c);
int capi_h_audit_tail(struct capi_ctx *c);
extern const char *const capi_audit_tail_query[];
extern const char *const capi_audit_list_query[];

/* ---- control_api_template.c: templates (M15) ----------------------------- */

int capi_h_sandbox_template(struct capi_ctx *c);
/*
 * The "policy" object of POST /v1/sandboxes, validated completely (patterns
 * by policy_snapshot_new(), listen ports against what the guest gateway
 * serves) so a sandbox is only created for a policy that will import.
 * Absent or null: 0 with ret_template zeroed and *ret_present false.
 */
int capi_template_policy_parse(struct capi_ctx *c, const json_t *policy,
			       struct policy_template *ret_template, bool *ret_present);
extern const char *const capi_audit_export_query[];

#endif
