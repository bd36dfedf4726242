/*
 * control_api — dispatch: one complete request in, one response out.
 *
 * Order of checks, so that nothing leaks to an unauthenticated TCP caller:
 * path shape (400) → TCP key (401; /v1/health needs none) → route (404, or
 * 405 with Allow; admin-only routes do not exist for TCP) → query (400) →
 * body: length (411/413), media type (415), JSON (400) → handler.
 */
#include "control_api_internal.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CAPI_SEGMENTS_MAX 10

/* ---- jansson's allocator ------------------------------------------------- */

/*
 * Request bodies carry secret values, and jansson copies every string it
 * parses.  Its allocator therefore wipes each block on free; the size lives
 * in a header so free knows how much.  The header is max_align_t sized so
 * the pointer handed out keeps malloc's alignment.
 */
#define CAPI_ALLOC_HEADER sizeof(max_align_t)

static void *capi_json_malloc(size_t size)
{
	unsigned char *p;

	if (size > SIZE_MAX - CAPI_ALLOC_HEADER)
		return NULL;
	if (!(p = malloc(CAPI_ALLOC_HEADER + size)))
		return NULL;
	memcpy(p, &size, sizeof(size));
	return p + CAPI_ALLOC_HEADER;
}

static void capi_json_free(void *ptr)
{
	unsigned char *p;
	size_t size;

	if (!ptr)
		return;
	p = (unsigned char *)ptr - CAPI_ALLOC_HEADER;
	memcpy(&size, p, sizeof(size));
	sodium_memzero(p, CAPI_ALLOC_HEADER + size);
	free(p);
}

int control_api_global_init(void)
{
	if (sodium_init() < 0)
		return -EIO;
	json_set_alloc_funcs(capi_json_malloc, capi_json_free);
	/* Seed the hash function now, once, rather than racing on first use
	 * in several worker threads. */
	json_object_seed(0);
	return 0;
}

/* ---- context ------------------------------------------------------------- */

static int capi_open_fail(char *err, size_t err_size, int r, const char *what, const char *why)
{
	if (err && err_size)
		snprintf(err, err_size, "%s: %s", what, why);
	return r;
}

int control_api_open(const char *state_dir, const struct master_key *key,
		     struct control_api **ret_api, char *err, size_t err_size)
{
	struct control_api *api;
	char why[256] = "";
	int r;

	if (!ret_api)
		return capi_open_fail(err, err_size, -EINVAL, "control API", "no result pointer");
	if (!(api = calloc(1, sizeof(*api))))
		return capi_open_fail(err, err_size, -ENOMEM, "control API", "out of memory");
	if ((r = vault_open(state_dir, key, &api->vault, why, sizeof(why))) != 0) {
		capi_open_fail(err, err_size, r, "vault", why);
		goto out;
	}
	if ((r = tenancy_open(state_dir, key, &api->tenancy, why, sizeof(why))) != 0) {
		capi_open_fail(err, err_size, r, "tenancy", why);
		goto out;
	}
	if ((r = policy_open(state_dir, &api->policy, why, sizeof(why))) != 0) {
		capi_open_fail(err, err_size, r, "policy", why);
		goto out;
	}
	if ((r = store_open(state_dir, &api->store, why, sizeof(why))) != 0) {
		capi_open_fail(err, err_size, r, "audit store", why);
		goto out;
	}
	*ret_api = api;
	api = NULL;
out:
	control_api_close(api);
	return r;
}

void control_api_close(struct control_api *api)
{
	if (!api)
		return;
	store_close(api->store);
	policy_close(api->policy);
	tenancy_close(api->tenancy);
	vault_close(api->vault);
	free(api);
}

int control_api_bootstrap(struct control_api *api, char *err, size_t err_size)
{
	int r = tenancy_tenant_ensure(api->tenancy, TENANCY_DEFAULT_TENANT, NULL);

	if (r < 0)
		return capi_open_fail(err, err_size, r, "bootstrap", tenancy_errmsg(api->tenancy));
	return 0;
}

/* ---- errors -------------------------------------------------------------- */

static const struct {
	int status;
	const char *code;
} capi_error_table[CAPI_E__COUNT] = {
	[CAPI_E_BAD_REQUEST] = { 400, "bad_request" },
	[CAPI_E_INVALID_JSON] = { 400, "invalid_json" },
	[CAPI_E_INVALID_FIELD] = { 400, "invalid_field" },
	[CAPI_E_UNAUTHORIZED] = { 401, "unauthorized" },
	[CAPI_E_EUC_DISABLED] = { 403, "end_user_credentials_disabled" },
	[CAPI_E_NOT_FOUND] = { 404, "not_found" },
	[CAPI_E_METHOD] = { 405, "method_not_allowed" },
	[CAPI_E_CONFLICT] = { 409, "conflict" },
	[CAPI_E_LENGTH_REQUIRED] = { 411, "length_required" },
	[CAPI_E_TOO_LARGE] = { 413, "payload_too_large" },
	[CAPI_E_MEDIA_TYPE] = { 415, "unsupported_media_type" },
	[CAPI_E_INTERNAL] = { 500, "internal" },
	[CAPI_E_UNAVAILABLE] = { 503, "unavailable" },
};

/*
 * The one map from module errors (vault.h, tenancy.h, store.h) to API
 * errors.  Anything not listed is the broker's fault: 500.
 */
static const struct {
	int err;
	enum capi_error e;
} capi_errno_table[] = {
	{ -EINVAL, CAPI_E_INVALID_FIELD },
	{ -E2BIG, CAPI_E_INVALID_FIELD },      /* a listing past its cap: narrow it */
	{ -EPERM, CAPI_E_EUC_DISABLED },       /* vault: scope external_user is off */
	{ -ENOENT, CAPI_E_NOT_FOUND },
	{ -EEXIST, CAPI_E_CONFLICT },
	{ -ENOSPC, CAPI_E_CONFLICT },          /* a per-scope / per-tenant cap */
	{ -EOVERFLOW, CAPI_E_CONFLICT },       /* a secret out of versions */
	{ -EKEYREJECTED, CAPI_E_UNAUTHORIZED },
	{ -EKEYREVOKED, CAPI_E_UNAUTHORIZED },
	{ -EBUSY, CAPI_E_UNAVAILABLE },        /* state.db locked past the busy timeout */
};

__attribute__((format(printf, 3, 0)))
static int capi_vfail(struct capi_ctx *c, enum capi_error e, const char *fmt, va_list ap)
{
	c->error = e;
	vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
	return -1;
}

int capi_fail(struct capi_ctx *c, enum capi_error e, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = capi_vfail(c, e, fmt, ap);
	va_end(ap);
	return r;
}

int capi_fail_errno(struct capi_ctx *c, int r, const char *msg)
{
	enum capi_error e = CAPI_E_INTERNAL;

	for (size_t i = 0; i < sizeof(capi_errno_table) / sizeof(capi_errno_table[0]); i++)
		if (capi_errno_table[i].err == r)
			e = capi_errno_table[i].e;
	return capi_fail(c, e, "%s", msg && msg[0] ? msg : "failed");
}

int capi_fail_vault(struct capi_ctx *c, int r)
{
	return capi_fail_errno(c, r, vault_errmsg(c->api->vault));
}

int capi_fail_tenancy(struct capi_ctx *c, int r)
{
	return capi_fail_errno(c, r, tenancy_errmsg(c->api->tenancy));
}

int capi_fail_policy(struct capi_ctx *c, int r)
{
	return capi_fail_errno(c, r, policy_errmsg(c->api->policy));
}

/* ---- responses ----------------------------------------------------------- */

/* Serialize obj into a plain malloc'd body (compact JSON + "\n"). */
static int capi_serialize(const json_t *obj, struct control_response *resp)
{
	size_t need = json_dumpb(obj, NULL, 0, JSON_COMPACT);
	char *body;

	if (need == 0 || need > SIZE_MAX - 2 || !(body = malloc(need + 2)))
		return -ENOMEM;
	if (json_dumpb(obj, body, need, JSON_COMPACT) != need) {
		free(body);
		return -ENOMEM;
	}
	body[need] = '\n';
	body[need + 1] = '\0';
	resp->body = body;
	resp->body_len = need + 1;
	return 0;
}

int capi_reply(struct capi_ctx *c, int status, json_t *obj)
{
	int r;

	if (!obj)
		return capi_fail(c, CAPI_E_INTERNAL, "out of memory building the response");
	r = capi_serialize(obj, c->resp);
	json_decref(obj);
	if (r != 0)
		return capi_fail(c, CAPI_E_INTERNAL, "out of memory building the response");
	c->resp->status = status;
	return 0;
}

int capi_reply_raw(struct capi_ctx *c, int status, const char *content_type, char *body,
		   size_t len)
{
	if (!body)
		return capi_fail(c, CAPI_E_INTERNAL, "out of memory building the response");
	c->resp->status = status;
	c->resp->body = body;
	c->resp->body_len = len;
	c->resp->content_type = content_type;
	return 0;
}

int capi_reply_empty(struct capi_ctx *c, int status)
{
	c->resp->status = status;
	c->resp->body = NULL;
	c->resp->body_len = 0;
	return 0;
}

/* Messages are ASCII by construction; make sure, so jansson never refuses. */
static void capi_sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

int control_response_error(int status, const char *code, const char *message,
			   struct control_response *ret_resp)
{
	struct control_response resp;
	char msg[CAPI_MSG_MAX];
	json_t *obj;
	int r;

	memset(&resp, 0, sizeof(resp));
	snprintf(msg, sizeof(msg), "%s", message ? message : "");
	capi_sanitize(msg);
	obj = json_pack("{s:s, s:s}", "error", code ? code : "internal", "message", msg);
	if (!obj)
		return -ENOMEM;
	r = capi_serialize(obj, &resp);
	json_decref(obj);
	if (r != 0)
		return r;
	resp.status = status;
	*ret_resp = resp;
	return 0;
}

/* The recorded error as the response.  500s keep their detail for the
 * server's log and tell the client nothing more. */
static int capi_error_response(struct capi_ctx *c)
{
	const char *msg = c->msg;
	struct control_response resp;
	int r;

	if (c->error == CAPI_E_INTERNAL) {
		snprintf(c->resp->detail, sizeof(c->resp->detail), "%s", c->msg);
		msg = "internal error; see the broker's log";
	}
	r = control_response_error(capi_error_table[c->error].status,
				   capi_error_table[c->error].code, msg, &resp);
	if (r != 0)
		return r;
	c->resp->status = resp.status;
	c->resp->body = resp.body;
	c->resp->body_len = resp.body_len;
	return 0;
}

void control_response_free(struct control_response *resp)
{
	if (!resp)
		return;
	/* An API key's creation answer holds the key. */
	if (resp->body)
		sodium_memzero(resp->body, resp->body_len);
	free(resp->body);
	resp->body = NULL;
	resp->body_len = 0;
	free(resp->tail);
	resp->tail = NULL;
}

/* ---- path and query ------------------------------------------------------ */

struct capi_path {
	char *buf;
	size_t n;                        /* segments; > CAPI_SEGMENTS_MAX = too many */
	char *seg[CAPI_SEGMENTS_MAX];
};

static int capi_hex(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decode s in place, once.  -EINVAL: malformed escape or a NUL. */
static int capi_pct_decode(char *s)
{
	char *out = s;

	for (; *s; s++) {
		int hi, lo;

		if (*s != '%') {
			*out++ = *s;
			continue;
		}
		if ((hi = capi_hex(s[1])) < 0 || (lo = capi_hex(s[2])) < 0 || (hi | lo) == 0)
			return -EINVAL;
		*out++ = (char)(hi << 4 | lo);
		s += 2;
	}
	*out = '\0';
	return 0;
}

/* Split the raw path on '/' first, then decode each segment: an encoded
 * "%2F" stays inside its segment. */
static int capi_path_parse(struct capi_ctx *c, const char *raw, struct capi_path *p)
{
	char *s, *slash;

	if (raw[0] != '/')
		return capi_fail(c, CAPI_E_BAD_REQUEST, "path must start with '/'");
	if (!(p->buf = strdup(raw + 1)))
		return capi_fail(c, CAPI_E_INTERNAL, "out of memory");
	for (s = p->buf; s; s = slash) {
		if ((slash = strchr(s, '/')))
			*slash++ = '\0';
		if (p->n == CAPI_SEGMENTS_MAX) {
			p->n++; /* no route is this long: 404 */
			return 0;
		}
		if (capi_pct_decode(s) != 0)
			return capi_fail(c, CAPI_E_BAD_REQUEST,
					 "path segment %zu has a malformed percent-escape", p->n + 1);
		p->seg[p->n++] = s;
	}
	return 0;
}

/* Does pattern match p?  With c, also captures the parameters. */
static bool capi_match(const char *pattern, const struct capi_path *p, struct capi_ctx *c)
{
	const char *seg = pattern + 1;
	size_t i = 0, n_params = 0;

	for (; i < p->n && i < CAPI_SEGMENTS_MAX; i++) {
		const char *end = strchrnul(seg, '/');
		size_t len = (size_t)(end - seg);

		if (seg[0] == '{') {
			if (!p->seg[i][0] || n_params == CAPI_PARAMS_MAX)
				return false;
			if (c) {
				c->param_names[n_params] = seg + 1;
				c->param_name_lens[n_params] = len - 2;
				c->params[n_params] = p->seg[i];
			}
			n_params++;
		} else if (strlen(p->seg[i]) != len || memcmp(p->seg[i], seg, len) != 0) {
			return false;
		}
		if (!*end)
			break;
		seg = end + 1;
	}
	/* The loop breaks only at the pattern's last segment: it must also
	 * have been the path's last. */
	if (i + 1 != p->n)
		return false;
	if (c)
		c->n_params = n_params;
	return true;
}

const char *capi_param(const struct capi_ctx *c, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < c->n_params; i++)
		if (c->param_name_lens[i] == len && memcmp(c->param_names[i], name, len) == 0)
			return c->params[i];
	return NULL;
}

const char *capi_query(const struct capi_ctx *c, const char *name)
{
	for (size_t i = 0; i < c->n_query; i++)
		if (strcmp(c->query_keys[i], name) == 0)
			return c->query_values[i];
	return NULL;
}

static bool capi_query_allowed(const struct capi_route *route, const char *key)
{
	for (const char *const *q = route->query; q && *q; q++)
		if (strcmp(*q, key) == 0)
			return true;
	return false;
}

/* One "key=value" pair, decoded in place. */
static int capi_query_pair(struct capi_ctx *c, const struct capi_route *route, char *pair)
{
	char *eq = strchr(pair, '=');

	if (!eq || eq == pair)
		return capi_fail(c, CAPI_E_BAD_REQUEST, "query has a parameter without a name or value");
	*eq = '\0';
	if (capi_pct_decode(pair) != 0 || capi_pct_decode(eq + 1) != 0)
		return capi_fail(c, CAPI_E_BAD_REQUEST, "query has a malformed percent-escape");
	if (!capi_query_allowed(route, pair))
		return capi_fail(c, CAPI_E_INVALID_FIELD, "unknown query parameter '%.64s'", pair);
	if (capi_query(c, pair))
		return capi_fail(c, CAPI_E_INVALID_FIELD, "query parameter '%s' is repeated", pair);
	/* An empty filter would read as "no filter": refuse it instead. */
	if (!eq[1])
		return capi_fail(c, CAPI_E_INVALID_FIELD, "query parameter '%s' is empty", pair);
	/* Every allowed name appears once, so the count stays within the
	 * route's list; the cap is a second guard. */
	if (c->n_query == CAPI_QUERY_MAX)
		return capi_fail(c, CAPI_E_INVALID_FIELD, "too many query parameters");
	c->query_keys[c->n_query] = pair;
	c->query_values[c->n_query++] = eq + 1;
	return 0;
}

/* '+' is a literal plus (RFC 3986), not a space: no id holds a space. */
static int capi_query_parse(struct capi_ctx *c, const struct capi_route *route, char **buf)
{
	char *s, *amp;
	int r;

	if (!c->req->query || !c->req->query[0])
		return 0;
	if (!(*buf = strdup(c->req->query)))
		return capi_fail(c, CAPI_E_INTERNAL, "out of memory");
	for (s = *buf; s; s = amp) {
		if ((amp = strchr(s, '&')))
			*amp++ = '\0';
		if ((r = capi_query_pair(c, route, s)) != 0)
			return r;
	}
	return 0;
}

/* ---- routing ------------------------------------------------------------- */

/* Append method to an Allow list unless present. */
static void capi_allow_add(char *allow, size_t size, const char *method)
{
	size_t len = strlen(method);

	for (const char *p = allow; (p = strstr(p, method)); p += len)
		if ((p == allow || p[-1] == ' ') && (p[len] == ',' || p[len] == '\0'))
			return;
	snprintf(allow + strlen(allow), size - strlen(allow), "%s%s", allow[0] ? ", " : "",
		 method);
}

/*
 * The route for (method, path), visible to this caller.  ret_no_auth: some
 * route of this path needs no key.  The Allow list is filled for a 405.
 */
static const struct capi_route *capi_route_find(struct capi_ctx *c, const struct capi_path *p,
						bool *ret_path_known, bool *ret_no_auth)
{
	const struct capi_route *found = NULL;

	*ret_path_known = *ret_no_auth = false;
	for (size_t i = 0; i < capi_n_routes; i++) {
		const struct capi_route *rt = &capi_routes[i];

		if ((!c->admin && (rt->flags & CAPI_ROUTE_ADMIN_ONLY)) || !capi_match(rt->pattern, p, NULL))
			continue;
		*ret_path_known = true;
		*ret_no_auth |= (rt->flags & CAPI_ROUTE_NO_AUTH) != 0;
		capi_allow_add(c->resp->allow, sizeof(c->resp->allow), rt->method);
		if (!found && strcmp(rt->method, c->req->method) == 0)
			found = rt;
	}
	if (found)
		capi_match(found->pattern, p, c);
	return found;
}

/* ---- authentication ------------------------------------------------------ */

static int capi_authenticate(struct capi_ctx *c)
{
	const char *bearer = c->req->bearer;
	int r;

	if (!bearer || !bearer[0])
		return capi_fail(c, CAPI_E_UNAUTHORIZED,
				 "this listener needs Authorization: Bearer msk_live_...");
	r = tenancy_api_key_verify(c->api->tenancy, bearer, strnlen(bearer, TENANCY_API_KEY_LEN + 1),
				   &c->key);
	if (r == -EKEYREVOKED)
		return capi_fail(c, CAPI_E_UNAUTHORIZED, "API key was revoked");
	if (r == -EKEYREJECTED)
		return capi_fail(c, CAPI_E_UNAUTHORIZED, "API key is not valid");
	if (r != 0)
		return capi_fail_tenancy(c, r);
	c->caller_tenant = c->key.tenant_id;
	return 0;
}

/* ---- body ---------------------------------------------------------------- */

static const char *capi_skip_ows(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* A parameter value (token or quoted-string) ends at ';', OWS or the end. */
static const char *capi_param_value(const char *p, size_t *ret_len, bool *ret_quoted)
{
	const char *v = p;

	*ret_quoted = *p == '"';
	if (*ret_quoted) {
		v = ++p;
		while (*p && *p != '"')
			p++;
		*ret_len = (size_t)(p - v);
		return *p == '"' ? p + 1 : NULL;
	}
	while (*p && *p != ';' && *p != ' ' && *p != '\t')
		p++;
	*ret_len = (size_t)(p - v);
	return p;
}

/* RFC 9110 §8.3: type/subtype *( OWS ";" OWS parameter ); charset must be
 * UTF-8 when given (RFC 8259 §8.1), other parameters are ignored. */
static bool capi_media_type_is_json(const char *ct)
{
	static const char json[] = "application/json";
	const char *p;

	if (!ct)
		return false;
	p = capi_skip_ows(ct);
	if (strncasecmp(p, json, sizeof(json) - 1) != 0)
		return false;
	for (p = capi_skip_ows(p + sizeof(json) - 1); *p; p = capi_skip_ows(p)) {
		const char *name, *eq, *val;
		size_t vlen;
		bool quoted;

		if (*p != ';')
			return false;
		name = capi_skip_ows(p + 1);
		if (!*name)
			return true;
		if (!(eq = strchr(name, '=')) || eq == name)
			return false;
		val = eq + 1;
		if (!(p = capi_param_value(val, &vlen, &quoted)))
			return false;
		if ((size_t)(eq - name) == 7 && strncasecmp(name, "charset", 7) == 0 &&
		    !(vlen == 5 && strncasecmp(val + quoted, "utf-8", 5) == 0))
			return false;
	}
	return true;
}

/* jansson's own text quotes the input near the error, which may be a secret
 * value: only our phrase and the position go back. */
static int capi_json_error(struct capi_ctx *c, const json_error_t *err)
{
	const char *what;

	switch (json_error_code(err)) {
	case json_error_out_of_memory:
		return capi_fail(c, CAPI_E_INTERNAL, "out of memory parsing the body");
	case json_error_stack_overflow:   what = "nests too deeply"; break;
	case json_error_invalid_utf8:     what = "is not valid UTF-8"; break;
	case json_error_duplicate_key:    what = "has a duplicate key"; break;
	case json_error_end_of_input_expected: what = "has data after the JSON object"; break;
	case json_error_premature_end_of_input: what = "ends inside the JSON text"; break;
	case json_error_null_character:
	case json_error_null_byte_in_key: what = "holds a NUL character"; break;
	case json_error_index_out_of_range:
	case json_error_numeric_overflow: what = "has a number out of range"; break;
	default:                          what = "is not valid JSON"; break;
	}
	return capi_fail(c, CAPI_E_INVALID_JSON, "body %s (at byte %d)", what, err->position);
}

static int capi_body(struct capi_ctx *c, const struct capi_route *route)
{
	const struct control_request *req = c->req;
	json_error_t err;

	if (!(route->flags & CAPI_ROUTE_BODY)) {
		if (req->body_len > 0)
			return capi_fail(c, CAPI_E_BAD_REQUEST, "%s %s takes no body", route->method,
					 route->pattern);
		return 0;
	}
	if (!req->has_body)
		return capi_fail(c, CAPI_E_LENGTH_REQUIRED, "a JSON body with Content-Length is required");
	if (req->body_len > CONTROL_API_MAX_BODY)
		return capi_fail(c, CAPI_E_TOO_LARGE, "body is larger than %u bytes",
				 CONTROL_API_MAX_BODY);
	if (!capi_media_type_is_json(req->content_type))
		return capi_fail(c, CAPI_E_MEDIA_TYPE, "Content-Type must be application/json");
	if (req->body_len == 0 || !req->body)
		return capi_fail(c, CAPI_E_INVALID_JSON, "body is empty; send a JSON object");
	c->body = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &err);
	if (!c->body)
		return capi_json_error(c, &err);
	if (!json_is_object(c->body))
		return capi_fail(c, CAPI_E_INVALID_JSON, "body must be a JSON object");
	return 0;
}

/* ---- connection hygiene -------------------------------------------------- */

int control_api_check_idle(struct control_api *api, bool reset, char *err, size_t err_size)
{
	int r, ret = 0;

	/* Every connection is checked (and reset) even after the first hit;
	 * the message names the first. */
	if ((r = vault_check_idle(api->vault, reset)) != 0) {
		ret = r;
		if (err && err_size)
			snprintf(err, err_size, "vault: %s", vault_errmsg(api->vault));
	}
	if ((r = tenancy_check_idle(api->tenancy, reset)) != 0 && ret == 0) {
		ret = r;
		if (err && err_size)
			snprintf(err, err_size, "tenancy: %s", tenancy_errmsg(api->tenancy));
	}
	if ((r = policy_check_idle(api->policy, reset)) != 0 && ret == 0) {
		ret = r;
		if (err && err_size)
			snprintf(err, err_size, "policy: %s", policy_errmsg(api->policy));
	}
	if ((r = store_check_idle(api->store)) != 0) {
		if (ret == 0 && err && err_size)
			snprintf(err, err_size, "audit store: %s", store_errmsg(api->store));
		if (ret == 0)
			ret = r;
		if (reset)
			store_force_idle(api->store);
	}
	return ret;
}

/* A handler that left a connection busy is a bug of ours: the answer
 * stands, the connection is made idle so the next request on this worker
 * reads current data, and the detail tells the server's log. */
static void capi_after_request(struct control_api *api, struct control_response *resp)
{
	char why[CONTROL_API_DETAIL_MAX];
	size_t used;

	if (control_api_check_idle(api, true, why, sizeof(why)) == 0)
		return;
	used = strnlen(resp->detail, sizeof(resp->detail));
	snprintf(resp->detail + used, sizeof(resp->detail) - used, "%sstore left busy: %s",
		 used ? "; " : "", why);
}

/* ---- dispatch ------------------------------------------------------------ */

static int capi_dispatch(struct capi_ctx *c, struct capi_path *path, char **query_buf)
{
	const struct capi_route *route;
	bool path_known, no_auth;
	int r;

	if (!c->req->method || !c->req->path)
		return capi_fail(c, CAPI_E_BAD_REQUEST, "request without method or path");
	if ((r = capi_path_parse(c, c->req->path, path)) != 0)
		return r;
	route = capi_route_find(c, path, &path_known, &no_auth);
	if (!c->admin && !no_auth && (r = capi_authenticate(c)) != 0)
		return r;
	if (!route && path_known)
		return capi_fail(c, CAPI_E_METHOD, "%.16s is not allowed here; use %s",
				 c->req->method, c->resp->allow);
	if (!route)
		return capi_fail(c, CAPI_E_NOT_FOUND, "no such route");
	c->resp->allow[0] = '\0'; /* only a 405 carries Allow */
	if ((r = capi_query_parse(c, route, query_buf)) != 0 || (r = capi_body(c, route)) != 0)
		return r;
	return route->handler(c);
}

int control_api_handle(struct control_api *api, const struct control_request *req,
		       struct control_response *ret_resp)
{
	struct control_response resp;
	struct capi_path path;
	struct capi_ctx *c;
	char *query_buf = NULL;
	int r;

	if (!api || !req || !ret_resp)
		return -EINVAL;
	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	memset(&resp, 0, sizeof(resp));
	memset(&path, 0, sizeof(path));
	c->api = api;
	c->req = req;
	c->resp = &resp;
	c->admin = req->caller == CONTROL_CALLER_ADMIN;
	r = capi_dispatch(c, &path, &query_buf);
	if (r != 0) {
		free(resp.body); /* a handler never fails after replying; be safe */
		resp.body = NULL;
		resp.content_type = NULL;
		free(resp.tail);
		resp.tail = NULL;
		if (c->error != CAPI_E_METHOD)
			resp.allow[0] = '\0';
		r = capi_error_response(c);
	}
	json_decref(c->body);
	free(query_buf);
	free(path.buf);
	free(c);
	capi_after_request(api, &resp);
	if (r != 0) {
		control_response_free(&resp);
		return r;
	}
	*ret_resp = resp;
	return 0;
}
