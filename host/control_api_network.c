/*
 * control_api_network — the network policy routes (/v1/sandboxes/{id}/
 * network...) and the audit log routes (/v1/audit...) of docs/api.md.
 *
 * Isolation: network routes go through capi_sandbox_in_reach() like every
 * sandbox route; audit queries of a TCP caller always carry the caller's
 * tenant as a filter (naming another tenant is a 404), so no row of another
 * tenant can be listed or exported; verify walks the whole chain and is
 * admin-only (the route table hides it from TCP).
 *
 * Audit rows never hold a secret value (audit.h), so their bodies need no
 * wiping; control_response_free() wipes them anyway.
 */
#include "control_api_internal.h"
#include "policy_tally.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_FIELDS(a) (sizeof(a) / sizeof((a)[0]))

#define CAPI_AUDIT_LIMIT_DEFAULT 100
#define CAPI_AUDIT_LIMIT_MAX 1000
/* An export is built in memory: past this, narrow the filters. */
#define CAPI_AUDIT_EXPORT_MAX (64u << 20)

/* ---- network: objects ----------------------------------------------------- */

static const char *capi_mode_name(enum policy_mode m)
{
	return m == POLICY_ENFORCE ? "enforce" : "observe";
}

/* Port 0 is "any port": null in JSON. */
static json_t *capi_json_port(uint16_t port)
{
	return port ? json_integer(port) : json_null();
}

static json_t *capi_json_entries(const struct policy_entry *e, size_t n)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, json_pack("{s:s, s:o, s:o}", "pattern", e[i].pattern,
							 "port", capi_json_port(e[i].port),
							 "created_at",
							 capi_json_time_or_null(e[i].created_at_us))) != 0) {
			json_decref(arr);
			return NULL;
		}
	return arr;
}

static json_t *capi_json_hits(const struct policy_hit *h, size_t n)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, json_pack("{s:s, s:i, s:I, s:o, s:o}", "host", h[i].host,
							 "port", (int)h[i].port,
							 "count", (json_int_t)h[i].count,
							 "first_seen", capi_json_time(h[i].first_seen_us),
							 "last_seen", capi_json_time(h[i].last_seen_us))) != 0) {
			json_decref(arr);
			return NULL;
		}
	return arr;
}

static json_t *capi_json_network(const char *sandbox_id, const struct policy_status *st)
{
	return json_pack("{s:s, s:s, s:o, s:o, s:o}", "sandbox_id", sandbox_id,
			 "mode", capi_mode_name(st->mode),
			 "allowlist", capi_json_entries(st->allow, st->n_allow),
			 "observed", capi_json_hits(st->observed, st->n_observed),
			 "pending", capi_json_hits(st->pending, st->n_pending));
}

/* Observed hosts still in memory go to the store before a reader looks
 * (control_api.h). */
static int capi_flush_observed(struct capi_ctx *c)
{
	int r;

	if (!capi_tally || (r = policy_tally_flush(capi_tally)) >= 0)
		return 0;
	return capi_fail_errno(c, r, "the observed hosts could not be saved; try again");
}

/* Answer status with the sandbox's network state; extra (may be NULL,
 * stolen) is merged in (the result of a change). */
static int capi_reply_network(struct capi_ctx *c, const struct tenancy_sandbox *s, int status,
			      json_t *extra)
{
	struct policy_status st;
	json_t *obj;
	int r;

	if ((r = capi_flush_observed(c)) != 0) {
		json_decref(extra);
		return r;
	}
	if ((r = policy_status(c->api->policy, s->id, &st)) != 0) {
		json_decref(extra);
		return capi_fail_policy(c, r);
	}
	obj = capi_json_network(s->id, &st);
	policy_status_clear(&st);
	if (obj && extra && json_object_update(obj, extra) != 0) {
		json_decref(obj);
		obj = NULL;
	}
	json_decref(extra);
	return capi_reply(c, status, obj);
}

/* ---- network: handlers ---------------------------------------------------- */

int capi_h_network_status(struct capi_ctx *c)
{
	struct tenancy_sandbox s;
	int r;

	if ((r = capi_sandbox_in_reach(c, &s)) != 0)
		return r;
	return capi_reply_network(c, &s, 200, NULL);
}

int capi_h_network_pending(struct capi_ctx *c)
{
	struct tenancy_sandbox s;
	struct policy_status st;
	json_t *pending;
	int r;

	if ((r = capi_sandbox_in_reach(c, &s)) != 0 || (r = capi_flush_observed(c)) != 0)
		return r;
	if ((r = policy_status(c->api->policy, s.id, &st)) != 0)
		return capi_fail_policy(c, r);
	pending = capi_json_hits(st.pending, st.n_pending);
	policy_status_clear(&st);
	return capi_reply(c, 200, json_pack("{s:s, s:o}", "sandbox_id", s.id, "pending", pending));
}

static const struct capi_field network_entry_fields[] = {
	{ "pattern", CAPI_T_STRING, true },
	{ "port", CAPI_T_OPT_UINT32, false },
};

/* The body of allow / deny: a pattern and an optional port (absent or null:
 * any port). */
static int capi_network_entry(struct capi_ctx *c, const char **ret_pattern, uint16_t *ret_port)
{
	const json_t *port = json_object_get(c->body, "port");
	int r;

	if ((r = capi_check_object(c, c->body, "body", network_entry_fields,
				   N_FIELDS(network_entry_fields))) != 0)
		return r;
	*ret_port = 0;
	if (port && !json_is_null(port)) {
		json_int_t v = json_integer_value(port);

		if (v < 1 || v > 65535)
			return capi_fail(c, CAPI_E_INVALID_FIELD,
					 "field 'port' must be 1..65535 (omit it or send null for any port)");
		*ret_port = (uint16_t)v;
	}
	*ret_pattern = capi_str(c->body, "pattern");
	return 0;
}

int capi_h_network_allow(struct capi_ctx *c)
{
	struct tenancy_sandbox s;
	const char *pattern;
	uint16_t port;
	int r;

	if ((r = capi_network_entry(c, &pattern, &port)) != 0 ||
	    (r = capi_sandbox_in_reach(c, &s)) != 0)
		return r;
	if ((r = policy_allow(c->api->policy, s.id, pattern, port)) < 0)
		return capi_fail_policy(c, r);
	return capi_reply_network(c, &s, r == 1 ? 201 : 200,
				  json_pack("{s:b}", "added", r == 1));
}

int capi_h_network_deny(struct capi_ctx *c)
{
	struct tenancy_sandbox s;
	const char *pattern;
	uint16_t port;
	int r;

	if ((r = capi_network_entry(c, &pattern, &port)) != 0 ||
	    (r = capi_sandbox_in_reach(c, &s)) != 0)
		return r;
	if ((r = policy_deny(c->api->policy, s.id, pattern, port)) < 0)
		return capi_fail_policy(c, r);
	return capi_reply_network(c, &s, 200, json_pack("{s:i}", "removed", r));
}

int capi_h_network_lockdown(struct capi_ctx *c)
{
	struct tenancy_sandbox s;
	int r;

	/* Lockdown's allowlist is the observed list: all of it. */
	if ((r = capi_sandbox_in_reach(c, &s)) != 0 || (r = capi_flush_observed(c)) != 0)
		return r;
	if ((r = policy_lockdown(c->api->policy, s.id)) < 0)
		return capi_fail_policy(c, r);
	return capi_reply_network(c, &s, 200, json_pack("{s:i}", "added", r));
}

int capi_h_network_observe(struct capi_ctx *c)
{
	struct tenancy_sandbox s;
	int r;

	if ((r = capi_sandbox_in_reach(c, &s)) != 0)
		return r;
	if ((r = policy_observe(c->api->policy, s.id)) < 0)
		return capi_fail_policy(c, r);
	return capi_reply_network(c, &s, 200, NULL);
}

/* ---- audit: the filter from the query -------------------------------------- */

#define CAPI_AUDIT_FILTERS \
	"tenant_id", "sandbox", "host", "status", "action", "since", "until", \
	"external_user_id", "external_workspace_id"

const char *const capi_audit_list_query[] = { CAPI_AUDIT_FILTERS, "limit", "cursor", NULL };
const char *const capi_audit_export_query[] = { CAPI_AUDIT_FILTERS, "format", NULL };
const char *const capi_audit_tail_query[] = { CAPI_AUDIT_FILTERS, "after", NULL };

static int64_t capi_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Strict decimal in [min, max]: no sign, no spaces, no leading '+'. */
static bool capi_parse_i64(const char *s, int64_t min, int64_t max, int64_t *ret)
{
	int64_t v = 0;

	if (!*s || strlen(s) > 19)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (INT64_MAX - (*s - '0')) / 10)
			return false;
		v = v * 10 + (*s - '0');
	}
	if (v < min || v > max)
		return false;
	*ret = v;
	return true;
}

static int capi_audit_time(struct capi_ctx *c, const char *name, int64_t now, int64_t *ret_us)
{
	const char *v = capi_query(c, name);

	if (!v)
		return 0;
	if (audit_parse_time(v, now, ret_us) != 0 || *ret_us <= 0)
		return capi_fail(c, CAPI_E_INVALID_FIELD,
				 "query parameter '%s' ('%.64s') must be a duration back from now (30s, 5m, 24h, 7d) or an RFC 3339 time (2024-05-01T12:00:00Z)",
				 name, v);
	return 0;
}

static int capi_audit_action(struct capi_ctx *c, int *ret_action)
{
	static const char *const names[] = {
		[STORE_AUDIT_ALLOW] = "allow",
		[STORE_AUDIT_DENY] = "deny",
		[STORE_AUDIT_ERROR] = "error",
	};
	const char *v = capi_query(c, "action");

	if (!v)
		return 0;
	for (size_t i = 0; i < N_FIELDS(names); i++)
		if (strcmp(v, names[i]) == 0) {
			*ret_action = (int)i;
			return 0;
		}
	return capi_fail(c, CAPI_E_INVALID_FIELD,
			 "query parameter 'action' ('%.32s') must be allow, deny or error", v);
}

/* Every string filter is an exact value (strict equality, never a pattern). */
static int capi_audit_strings(struct capi_ctx *c, struct store_audit_filter *f)
{
	static const char *const names[] = {
		"sandbox", "host", "external_user_id", "external_workspace_id",
	};
	const char **slots[] = { &f->sandbox_id, &f->host, &f->external_user_id,
				 &f->external_workspace_id };

	for (size_t i = 0; i < N_FIELDS(names); i++) {
		const char *v = capi_query(c, names[i]);

		if (v && !tenancy_attr_id_is_valid(v))
			return capi_fail(c, CAPI_E_INVALID_FIELD,
					 "query parameter '%s' must be 1..256 bytes of printable ASCII without spaces",
					 names[i]);
		*slots[i] = v;
	}
	return 0;
}

/* TCP: always the caller's tenant; naming another one is a 404. */
static int capi_audit_tenant(struct capi_ctx *c, struct store_audit_filter *f)
{
	const char *v = capi_query(c, "tenant_id");

	if (v && !tenancy_tenant_id_is_valid(v))
		return capi_fail(c, CAPI_E_INVALID_FIELD,
				 "tenant id '%.64s' must match [a-z0-9][a-z0-9_-]{0,63}", v);
	if (!c->admin) {
		if (v && strcmp(v, c->caller_tenant) != 0)
			return capi_fail(c, CAPI_E_NOT_FOUND, "no tenant '%s'", v);
		v = c->caller_tenant;
	}
	f->tenant_id = v;
	return 0;
}

static int capi_audit_filter(struct capi_ctx *c, struct store_audit_filter *f)
{
	int64_t now = capi_now_us(), status;
	const char *v;
	int r;

	audit_filter_init(f);
	if ((r = capi_audit_tenant(c, f)) != 0 || (r = capi_audit_strings(c, f)) != 0 ||
	    (r = capi_audit_action(c, &f->action)) != 0 ||
	    (r = capi_audit_time(c, "since", now, &f->since_us)) != 0 ||
	    (r = capi_audit_time(c, "until", now, &f->until_us)) != 0)
		return r;
	if ((v = capi_query(c, "status"))) {
		if (!capi_parse_i64(v, 0, 999, &status))
			return capi_fail(c, CAPI_E_INVALID_FIELD,
					 "query parameter 'status' ('%.32s') must be an HTTP status 0..999 (0: none)",
					 v);
		f->status = (int)status;
	}
	return 0;
}

/* ---- audit: handlers ------------------------------------------------------- */

/* A row as the export's JSONL object (one encoding for list and export). */
static json_t *capi_json_audit_row(const struct store_audit_row *row)
{
	char *text = audit_row_json(row);
	json_t *obj;

	if (!text)
		return NULL;
	obj = json_loads(text, 0, NULL);
	free(text);
	return obj;
}

int capi_h_audit_list(struct capi_ctx *c)
{
	struct store_audit_filter f;
	struct store_audit_row *rows = NULL;
	int64_t limit = CAPI_AUDIT_LIMIT_DEFAULT, next = 0;
	char next_text[24];
	const char *v;
	json_t *arr;
	size_t n = 0;
	int r;

	if ((r = capi_audit_filter(c, &f)) != 0)
		return r;
	if ((v = capi_query(c, "limit")) && !capi_parse_i64(v, 1, CAPI_AUDIT_LIMIT_MAX, &limit))
		return capi_fail(c, CAPI_E_INVALID_FIELD,
				 "query parameter 'limit' ('%.32s') must be 1..%d", v,
				 CAPI_AUDIT_LIMIT_MAX);
	/* The cursor is the next_cursor of the previous page (a row id). */
	if ((v = capi_query(c, "cursor")) && !capi_parse_i64(v, 1, INT64_MAX, &f.before_id))
		return capi_fail(c, CAPI_E_INVALID_FIELD,
				 "query parameter 'cursor' ('%.32s') is not a cursor from a previous page",
				 v);
	if ((r = audit_query(c->api->store, &f, (size_t)limit, &rows, &n, &next)) != 0)
		return capi_fail_errno(c, r, store_errmsg(c->api->store));
	arr = json_array();
	for (size_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, capi_json_audit_row(&rows[i])) != 0) {
			json_decref(arr);
			arr = NULL;
		}
	free(rows);
	snprintf(next_text, sizeof(next_text), "%lld", (long long)next);
	return capi_reply(c, 200, arr ? json_pack("{s:o, s:s?}", "rows", arr, "next_cursor",
						  next ? next_text : NULL)
				      : NULL);
}

struct capi_export_buf {
	char *p;
	size_t len, cap;
};

static int capi_export_write(void *userdata, const char *buf, size_t len)
{
	struct capi_export_buf *b = userdata;

	if (len > CAPI_AUDIT_EXPORT_MAX - b->len)
		return -EFBIG;
	if (len + 1 > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;

		while (cap - b->len < len + 1)
			cap *= 2;
		if (!(p = realloc(b->p, cap)))
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, buf, len);
	b->len += len;
	b->p[b->len] = '\0';
	return 0;
}

int capi_h_audit_export(struct capi_ctx *c)
{
	struct capi_export_buf b = { NULL, 0, 0 };
	const char *format = capi_query(c, "format");
	struct store_audit_filter f;
	enum audit_format fmt;
	int r;

	if (!format || strcmp(format, "jsonl") == 0)
		fmt = AUDIT_JSONL;
	else if (strcmp(format, "csv") == 0)
		fmt = AUDIT_CSV;
	else
		return capi_fail(c, CAPI_E_INVALID_FIELD,
				 "query parameter 'format' ('%.32s') must be jsonl or csv", format);
	if ((r = capi_audit_filter(c, &f)) != 0)
		return r;
	/* An empty export still has a (zero-length) body of its type. */
	if ((r = capi_export_write(&b, "", 0)) == 0)
		r = audit_export(c->api->store, &f, fmt, capi_export_write, &b);
	if (r < 0) {
		free(b.p);
		if (r == -EFBIG)
			return capi_fail(c, CAPI_E_BAD_REQUEST,
					 "the export is larger than %u MiB; narrow it with since, until or another filter",
					 CAPI_AUDIT_EXPORT_MAX >> 20);
		return capi_fail_errno(c, r, store_errmsg(c->api->store));
	}
	return capi_reply_raw(c, 200, fmt == AUDIT_CSV ? "text/csv; charset=utf-8"
						       : "application/x-ndjson",
			      b.p, b.len);
}

int capi_h_audit_verify(struct capi_ctx *c)
{
	struct audit_verify_result v;
	char hex[2 * STORE_AUDIT_HASH_BYTES + 1];
	int r;

	r = audit_verify_chain(c->api->store, &v);
	if (r == -EBADMSG)
		return capi_reply(c, 200, json_pack("{s:b, s:I, s:I, s:I}", "ok", 0, "first_bad_id",
						    (json_int_t)v.bad_id, "rows",
						    (json_int_t)v.checked, "pruned",
						    (json_int_t)v.pruned));
	if (r != 0)
		return capi_fail_errno(c, r, store_errmsg(c->api->store));
	sodium_bin2hex(hex, sizeof(hex), v.head, sizeof(v.head));
	return capi_reply(c, 200, json_pack("{s:b, s:I, s:I, s:s}", "ok", 1, "rows",
					    (json_int_t)v.checked, "pruned", (json_int_t)v.pruned,
					    "head", hex));
}

static const char *capi_tail_keep(char *dst, const char *src)
{
	if (!src)
		return NULL;
	snprintf(dst, STORE_ID_MAX + 1, "%s", src); /* validated: <= STORE_ID_MAX */
	return dst;
}

/*
 * GET /v1/audit/tail: only validates and hands the filter to the server,
 * which subscribes to the audit writer and streams (control_server.c); the
 * same filters as the list, the tenant forced for a TCP caller.  after=ID
 * (0 = from the first row) asks for the rows committed after row ID first.
 */
int capi_h_audit_tail(struct capi_ctx *c)
{
	struct control_audit_tail *t;
	struct store_audit_filter *f;
	const char *v;
	int r;

	if (!(t = calloc(1, sizeof(*t))))
		return capi_fail(c, CAPI_E_INTERNAL, "out of memory");
	f = &t->filter;
	if ((v = capi_query(c, "after")) &&
	    !(t->has_after = capi_parse_i64(v, 0, INT64_MAX, &t->after_id))) {
		free(t);
		return capi_fail(c, CAPI_E_INVALID_FIELD,
				 "query parameter 'after' ('%.32s') must be a row id (0 or more)", v);
	}
	if ((r = capi_audit_filter(c, f)) != 0) {
		free(t);
		return r;
	}
	f->tenant_id = capi_tail_keep(t->strs[0], f->tenant_id);
	f->sandbox_id = capi_tail_keep(t->strs[1], f->sandbox_id);
	f->host = capi_tail_keep(t->strs[2], f->host);
	f->external_user_id = capi_tail_keep(t->strs[3], f->external_user_id);
	f->external_workspace_id = capi_tail_keep(t->strs[4], f->external_workspace_id);
	c->resp->tail = t;
	return capi_reply_empty(c, 200);
}

/* The replay's rows, newest first as the pages come: their JSON lines and ids. */
struct capi_replay {
	char *lines[CONTROL_API_TAIL_REPLAY_MAX];
	int64_t ids[CONTROL_API_TAIL_REPLAY_MAX];
	size_t n;
	bool more;
};

#define CAPI_REPLAY_PAGE 64

/* Page newest first until row after_id or the cap: the rows above after_id. */
static int capi_replay_collect(struct store *st, const struct control_audit_tail *t,
			       struct capi_replay *rp)
{
	struct store_audit_filter f = t->filter;
	int64_t next = 0;

	f.before_id = 0;
	for (;;) {
		struct store_audit_row *rows = NULL;
		size_t n = 0;
		bool stop = false;
		int r;

		if ((r = audit_query(st, &f, CAPI_REPLAY_PAGE, &rows, &n, &next)) != 0)
			return r;
		for (size_t i = 0; i < n && !stop; i++) {
			if (rows[i].id <= t->after_id) {
				stop = true;
			} else if (rp->n == CONTROL_API_TAIL_REPLAY_MAX) {
				rp->more = stop = true;
			} else if (!(rp->lines[rp->n] = audit_row_json(&rows[i]))) {
				free(rows);
				return -ENOMEM;
			} else {
				rp->ids[rp->n++] = rows[i].id;
			}
		}
		free(rows);
		if (stop || next == 0)
			return 0;
		f.before_id = next;
	}
}

int control_api_audit_replay(struct control_api *api, const struct control_audit_tail *t,
			     char **ret_text, size_t *ret_len, int64_t **ret_ids, size_t *ret_n)
{
	struct capi_replay *rp = calloc(1, sizeof(*rp));
	struct capi_export_buf b = { NULL, 0, 0 };
	int64_t *ids = NULL;
	char notice[256];
	int r;

	if (!rp)
		return -ENOMEM;
	if ((r = capi_replay_collect(api->store, t, rp)) != 0)
		goto out;
	if (rp->n > 0 && !(ids = malloc(rp->n * sizeof(*ids)))) {
		r = -ENOMEM;
		goto out;
	}
	if (rp->more) {
		snprintf(notice, sizeof(notice),
			 "{\"notice\":\"tail_gap\",\"message\":\"more than %u rows were committed "
			 "after row %lld; only the newest %u follow: use GET /v1/audit for the rest\"}\n",
			 CONTROL_API_TAIL_REPLAY_MAX, (long long)t->after_id,
			 CONTROL_API_TAIL_REPLAY_MAX);
		r = capi_export_write(&b, notice, strlen(notice));
	}
	for (size_t i = 0; r == 0 && i < rp->n; i++) {
		const char *line = rp->lines[rp->n - 1 - i];

		ids[i] = rp->ids[rp->n - 1 - i];
		if ((r = capi_export_write(&b, line, strlen(line))) == 0)
			r = capi_export_write(&b, "\n", 1);
	}
	if (r != 0)
		goto out;
	*ret_text = b.p;
	*ret_len = b.len;
	*ret_ids = ids;
	*ret_n = rp->n;
	b.p = NULL;
	ids = NULL;
out:
	for (size_t i = 0; i < rp->n; i++)
		free(rp->lines[i]);
	free(rp);
	free(ids);
	free(b.p);
	return r;
}
