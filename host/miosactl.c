/*
 * miosactl — the command-line client of the broker's control API
 * (docs/api.md, docs/cli.md).
 *
 * One request per command over the Unix control socket (host admin) or a
 * TCP listener with an API key.  Human output is aligned tables and
 * "key: value" views; --json prints the API's JSON (indented, keys sorted).
 *
 * Secret values: read by ctl_value (stdin or --value-file, never argv),
 * put into a JSON request body whose every allocation is wiped when freed
 * (cl_wipe_malloc below is jansson's allocator for the whole process), and
 * never printed: the API never returns them, so no output path can.
 *
 * Exit status: 0 success, 1 API/connection/input error, 2 usage error.
 */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl_client.h"
#include "ctl_output.h"
#include "ctl_value.h"
#include "template_file.h"

#ifndef MIOSA_VERSION
#define MIOSA_VERSION "0.0.0"
#endif

#define CL_EXIT_OK 0
#define CL_EXIT_FAIL 1
#define CL_EXIT_USAGE 2
/* parse_args(): --help was printed, the command is done. */
#define CL_HELP_DONE (-1)

#define CL_DEFAULT_SOCKET "/var/lib/miosa/control.sock"
#define CL_DEFAULT_TENANT "default"
#define CL_HOSTS_MAX 64
#define CL_MAX_POS 4

/* Global options and where to talk to. */
struct cl {
	struct ctl_endpoint ep;
	const char *api_key;      /* MIOSA_API_KEY; sent over TCP only */
	const char *tenant;       /* MIOSA_TENANT or "default": for routes naming one */
	const char *tenant_env;   /* MIOSA_TENANT or NULL: sandbox create/ls send no
				   * tenant_id without it (the broker's default) */
	bool json;
	int timeout_ms;
};

struct cl_command {
	const char *group;
	const char *verb;
	int (*run)(struct cl *c, const struct cl_command *cmd, int argc, char **argv);
	const char *usage;        /* after "miosactl " */
	const char *help;         /* the rest of --help */
	bool takes_value;         /* reads a secret value */
};

/* ------------------------------------------------------------------ */
/* jansson allocator: request bodies hold secret values, so every block */
/* jansson frees is wiped first.                                        */

#define CL_WIPE_HDR 16 /* keeps malloc's alignment for what follows */

static void *cl_wipe_malloc(size_t n)
{
	unsigned char *p;

	if (n > SIZE_MAX - CL_WIPE_HDR)
		return NULL;
	p = malloc(n + CL_WIPE_HDR);
	if (!p)
		return NULL;
	memcpy(p, &n, sizeof(n));
	return p + CL_WIPE_HDR;
}

static void cl_wipe_free(void *ptr)
{
	unsigned char *p;
	size_t n;

	if (!ptr)
		return;
	p = (unsigned char *)ptr - CL_WIPE_HDR;
	memcpy(&n, p, sizeof(n));
	sodium_memzero(p, n + CL_WIPE_HDR);
	free(p);
}

/* ------------------------------------------------------------------ */
/* Messages                                                            */

__attribute__((format(printf, 1, 2)))
static int cl_error(const char *fmt, ...)
{
	va_list ap;

	fputs("miosactl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return CL_EXIT_FAIL;
}

__attribute__((format(printf, 2, 3)))
static int cl_usage_error(const struct cl_command *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "miosactl %s%s%s: ", cmd->group, *cmd->verb ? " " : "", cmd->verb);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nUsage: miosactl %s\nTry 'miosactl %s%s%s --help'.\n", cmd->usage,
		cmd->group, *cmd->verb ? " " : "", cmd->verb);
	return CL_EXIT_USAGE;
}

/* ------------------------------------------------------------------ */
/* Argument parsing                                                    */

enum cl_opt_kind {
	CL_OPT_STR,   /* --name VALUE, last one wins; out is const char ** */
	CL_OPT_FLAG,  /* --name; out is bool * */
	CL_OPT_LIST,  /* --name VALUE, repeatable; out is struct cl_strv * */
};

struct cl_strv {
	const char *v[CL_HOSTS_MAX];
	size_t n;
};

struct cl_opt {
	const char *name;
	enum cl_opt_kind kind;
	void *out;
};

static const char *cl_value_hint(const struct cl_command *cmd)
{
	return cmd->takes_value ? " (the value is read from standard input or --value-file, never "
				  "from the command line)"
				: "";
}

static void cl_print_help(const struct cl_command *cmd)
{
	printf("Usage: miosactl %s\n\n%s", cmd->usage, cmd->help);
}

/* Every argument ends up in a JSON string or a path: it must be UTF-8. */
static bool cl_is_utf8(const char *s)
{
	json_t *j = json_string(s);

	json_decref(j);
	return j != NULL;
}

static int cl_opt_store(const struct cl_command *cmd, const struct cl_opt *o, const char *arg)
{
	struct cl_strv *sv;

	if (o->kind == CL_OPT_FLAG) {
		*(bool *)o->out = true;
		return 0;
	}
	if (!arg || !*arg)
		return cl_usage_error(cmd, "--%s needs a non-empty value", o->name);
	if (!cl_is_utf8(arg))
		return cl_usage_error(cmd, "--%s: the value is not valid UTF-8", o->name);
	if (o->kind == CL_OPT_STR) {
		*(const char **)o->out = arg;
		return 0;
	}
	sv = o->out;
	if (sv->n >= CL_HOSTS_MAX)
		return cl_usage_error(cmd, "--%s given more than %d times", o->name, CL_HOSTS_MAX);
	sv->v[sv->n++] = arg;
	return 0;
}

/*
 * Long options must be spelled out: GNU getopt would take "--value=X" as an
 * abbreviation of --value-file and then quote X in an error, and X is what a
 * user who means to pass a secret value would type.  Unknown names are
 * reported without what follows '='.
 */
static int cl_check_option_names(const struct cl_command *cmd, int argc, char **argv,
				 const struct option *lo)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		size_t n = strcspn(a, "=");
		const struct option *o;

		if (strcmp(a, "--") == 0)
			return 0;
		if (strncmp(a, "--", 2) != 0)
			continue;
		for (o = lo; o->name; o++)
			if (strlen(o->name) == n - 2 && strncmp(a + 2, o->name, n - 2) == 0)
				break;
		if (!o->name)
			return cl_usage_error(cmd, "unknown option %.*s%s", (int)n, a,
					      cl_value_hint(cmd));
		if (o->has_arg == required_argument && a[n] != '=')
			i++; /* its value, whatever it looks like */
	}
	return 0;
}

/*
 * Parse argv[1..argc) of a command (argv[0] is the verb): its options (plus
 * --json and --help, allowed anywhere), then between min_pos and max_pos
 * positional arguments into pos[].  Options may follow positionals; "--"
 * ends the options.  Returns 0, CL_HELP_DONE or CL_EXIT_USAGE.
 */
static int cl_parse_args(struct cl *c, const struct cl_command *cmd, int argc, char **argv,
			 const struct cl_opt *opts, const char **pos, int min_pos, int max_pos,
			 int *ret_npos)
{
	struct option lo[24];
	size_t n_opts = 0;
	int n, r, npos;

	for (; opts && opts[n_opts].name; n_opts++) {
		assert(n_opts + 3 < sizeof(lo) / sizeof(lo[0]));
		lo[n_opts] = (struct option){ opts[n_opts].name,
					      opts[n_opts].kind == CL_OPT_FLAG ? no_argument
									   : required_argument,
					      NULL, 256 + (int)n_opts };
	}
	lo[n_opts] = (struct option){ "json", no_argument, NULL, 'j' };
	lo[n_opts + 1] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[n_opts + 2] = (struct option){ NULL, 0, NULL, 0 };
	if ((r = cl_check_option_names(cmd, argc, argv, lo)) != 0)
		return r;
	optind = 0; /* GNU: full re-initialisation for this argv */
	opterr = 0;
	while ((n = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (n == 'h') {
			cl_print_help(cmd);
			return CL_HELP_DONE;
		}
		if (n == 'j') {
			c->json = true;
			continue;
		}
		if (n == '?' || n == ':') {
			/* optopt: 0 for an unknown long option, the option's
			 * value when its argument is missing. */
			if (optopt >= 256 && (size_t)(optopt - 256) < n_opts)
				return cl_usage_error(cmd, "--%s needs a value",
						      opts[optopt - 256].name);
			if (optopt > 0 && optopt < 256)
				return cl_usage_error(cmd, "unknown option -%c", optopt);
			/* Not past '=': "--value=sk-..." must not echo the value. */
			return cl_usage_error(cmd, "unknown option %.*s%s",
					      (int)strcspn(argv[optind - 1], "="), argv[optind - 1],
					      cl_value_hint(cmd));
		}
		if ((r = cl_opt_store(cmd, &opts[n - 256], optarg)) != 0)
			return r;
	}
	npos = argc - optind;
	if (npos < min_pos)
		return cl_usage_error(cmd, "missing argument");
	/* Not quoted: a secret value typed here by mistake is not echoed. */
	if (npos > max_pos)
		return cl_usage_error(cmd, "too many arguments%s", cl_value_hint(cmd));
	for (int i = 0; i < npos; i++) {
		if (!*argv[optind + i])
			return cl_usage_error(cmd, "empty argument");
		if (!cl_is_utf8(argv[optind + i]))
			return cl_usage_error(cmd, "an argument is not valid UTF-8");
		pos[i] = argv[optind + i];
	}
	if (ret_npos)
		*ret_npos = npos;
	return 0;
}

/* Strict decimal in [min, max]. */
static bool cl_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *ret)
{
	uint64_t v = 0;

	if (!*s || strlen(s) > 10)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (v < min || v > max)
		return false;
	*ret = (uint32_t)v;
	return true;
}

/* ------------------------------------------------------------------ */
/* Talking to the API                                                  */

static void cl_print_api_error(const struct cl *c, const struct ctl_response *resp)
{
	char code[128], msg[CTL_TEXT_MAX];
	json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
	const char *jcode = json_string_value(json_object_get(j, "error"));
	const char *jmsg = json_string_value(json_object_get(j, "message"));

	if (jcode && jmsg) {
		ctl_output_sanitize(jmsg, msg, sizeof(msg));
		ctl_output_sanitize(jcode, code, sizeof(code));
		fprintf(stderr, "miosactl: %s (%s, HTTP %d)\n", msg, code, resp->status);
	} else {
		fprintf(stderr, "miosactl: HTTP %d from %s without an error object\n", resp->status,
			c->ep.display);
	}
	json_decref(j);
}

/*
 * One API call.  body (may be NULL) is sent as compact JSON from wiped
 * memory.  On 2xx *ret_json (if not NULL) is the parsed answer, NULL when
 * there is none (204); *ret_status (if not NULL) the status.  Errors are
 * printed here; returns an exit status.
 */
static int cl_call(struct cl *c, const char *method, const struct ctl_target *t, json_t *body,
		   json_t **ret_json, int *ret_status)
{
	struct ctl_request req = { .method = method, .target = ctl_target_get(t) };
	struct ctl_response resp = { 0 };
	char err[CTL_ERR_MAX];
	unsigned char *buf = NULL;
	json_t *j = NULL;
	json_error_t jerr;
	size_t n = 0;
	int r, ex = CL_EXIT_FAIL;

	if (!req.target)
		return cl_error("request path too long");
	if (c->ep.transport == CTL_TRANSPORT_TCP)
		req.bearer = c->api_key;
	if (body) {
		n = json_dumpb(body, NULL, 0, JSON_COMPACT);
		if (n == 0 || !(buf = sodium_malloc(n)) ||
		    json_dumpb(body, (char *)buf, n, JSON_COMPACT) != n) {
			sodium_free(buf);
			return cl_error("cannot encode the request body");
		}
		req.body = buf;
		req.body_len = n;
		req.has_body = true;
	}
	r = ctl_client_call(&c->ep, &req, c->timeout_ms, &resp, err, sizeof(err));
	sodium_free(buf);
	if (r < 0)
		return cl_error("%s", err);
	if (resp.status >= 400) {
		cl_print_api_error(c, &resp);
		goto out;
	}
	if (resp.status < 200 || resp.status > 299) {
		cl_error("unexpected HTTP %d from %s", resp.status, c->ep.display);
		goto out;
	}
	if (resp.body_len > 0) {
		j = json_loadb(resp.body, resp.body_len, JSON_REJECT_DUPLICATES, &jerr);
		if (!j) {
			char text[200];

			ctl_output_sanitize(jerr.text, text, sizeof(text));
			cl_error("invalid JSON in the answer from %s: %s", c->ep.display, text);
			goto out;
		}
	}
	if (ret_status)
		*ret_status = resp.status;
	if (ret_json)
		*ret_json = j;
	else
		json_decref(j);
	ex = CL_EXIT_OK;
out:
	ctl_response_free(&resp);
	return ex;
}

/* cl_call() for answers that must be a JSON object. */
static int cl_call_object(struct cl *c, const char *method, const struct ctl_target *t,
			  json_t *body, json_t **ret_json, int *ret_status)
{
	json_t *j = NULL;
	int ex = cl_call(c, method, t, body, &j, ret_status);

	if (ex != CL_EXIT_OK)
		return ex;
	if (!json_is_object(j)) {
		json_decref(j);
		return cl_error("answer from %s is not a JSON object", c->ep.display);
	}
	*ret_json = j;
	return CL_EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* Output                                                              */

static int cl_print_json(const json_t *j)
{
	if (ctl_output_json(stdout, j) < 0)
		return cl_error("cannot write to standard output");
	return CL_EXIT_OK;
}

static int cl_print_table(const json_t *array, const struct ctl_column *cols, size_t ncols)
{
	if (ctl_output_table(stdout, array, cols, ncols) < 0)
		return cl_error("cannot write to standard output");
	return CL_EXIT_OK;
}

static int cl_print_view(const json_t *obj, const char *const *keys, bool onoff)
{
	if (ctl_output_view(stdout, obj, keys, onoff) < 0)
		return cl_error("cannot write to standard output");
	return CL_EXIT_OK;
}

/* The array under key in obj (the list answers), or an error. */
static int cl_list_field(const struct cl *c, const json_t *obj, const char *key,
			 const json_t **ret_array)
{
	const json_t *a = json_object_get(obj, key);

	if (!json_is_array(a))
		return cl_error("answer from %s has no \"%s\" list", c->ep.display, key);
	*ret_array = a;
	return CL_EXIT_OK;
}

/* Print a list answer: JSON as is, or a table of obj[key]. */
static int cl_print_list(const struct cl *c, const json_t *obj, const char *key,
			 const struct ctl_column *cols, size_t ncols)
{
	const json_t *a = NULL;
	int ex;

	if (c->json)
		return cl_print_json(obj);
	if ((ex = cl_list_field(c, obj, key, &a)) != CL_EXIT_OK)
		return ex;
	return cl_print_table(a, cols, ncols);
}

/* Print one object: JSON as is, or a view of keys. */
static int cl_print_object(const struct cl *c, const json_t *obj, const char *const *keys)
{
	return c->json ? cl_print_json(obj) : cl_print_view(obj, keys, false);
}

/* ------------------------------------------------------------------ */
/* Shared field sets                                                   */

static const char *const cl_sandbox_keys[] = {
	"id", "tenant_id", "user_id", "workspace_id", "external_user_id",
	"external_workspace_id", "template", "transport", "created_at", NULL,
};

static const struct ctl_column cl_sandbox_cols[] = {
	{ "ID", "id" },
	{ "TENANT", "tenant_id" },
	{ "USER", "user_id" },
	{ "WORKSPACE", "workspace_id" },
	{ "EXTERNAL_USER", "external_user_id" },
	{ "EXTERNAL_WORKSPACE", "external_workspace_id" },
	{ "TEMPLATE", "template" },
	{ "TRANSPORT", "transport" },
	{ "CREATED", "created_at" },
};

static const char *const cl_secret_keys[] = {
	"result", "name", "expose_as_env", "placeholder", "scope", "scope_id", "version",
	"hosts", "allow_cleartext", "created_at", "rotated_at", NULL,
};

static const struct ctl_column cl_binding_cols[] = {
	{ "ENV", "expose_as_env" },
	{ "PLACEHOLDER", "placeholder" },
	{ "SCOPE", "scope" },
	{ "SCOPE_ID", "scope_id" },
	{ "NAME", "name" },
	{ "VERSION", "version" },
	{ "HOSTS", "hosts" },
};

static const struct ctl_column cl_secret_cols[] = {
	{ "NAME", "name" },
	{ "ENV", "expose_as_env" },
	{ "SCOPE", "scope" },
	{ "SCOPE_ID", "scope_id" },
	{ "VERSION", "version" },
	{ "HOSTS", "hosts" },
	{ "ROTATED", "rotated_at" },
};

static const char *const cl_apikey_keys[] = {
	"id", "tenant_id", "name", "prefix", "created_at", "last_used_at", "revoked_at", NULL,
};

static const struct ctl_column cl_apikey_cols[] = {
	{ "ID", "id" },
	{ "NAME", "name" },
	{ "PREFIX", "prefix" },
	{ "CREATED", "created_at" },
	{ "LAST_USED", "last_used_at" },
	{ "REVOKED", "revoked_at" },
};

static const char *const cl_tenant_keys[] = {
	"id", "name", "created_at", "settings.allow_end_user_scoped_credentials", NULL,
};

static const struct ctl_column cl_tenant_cols[] = {
	{ "ID", "id" },
	{ "NAME", "name" },
	{ "END_USER_CREDENTIALS", "settings.allow_end_user_scoped_credentials" },
	{ "CREATED", "created_at" },
};

#define CL_NCOLS(a) (sizeof(a) / sizeof((a)[0]))

/* Set obj[key] = value when value is not NULL; false on allocation failure. */
static bool cl_set_opt_str(json_t *obj, const char *key, const char *value)
{
	json_t *s;

	if (!value)
		return true;
	s = json_string(value);
	return s && json_object_set_new(obj, key, s) == 0;
}

/* ------------------------------------------------------------------ */
/* sandbox                                                             */

static int cl_template_policy_for_create(const char *image, json_t *body);

static int cl_sandbox_create(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	const char *tenant = NULL, *user = NULL, *ws = NULL, *ext_user = NULL, *ext_ws = NULL,
		   *template = NULL, *uds = NULL, *cid_s = NULL;
	const struct cl_opt opts[] = {
		{ "tenant", CL_OPT_STR, &tenant },
		{ "user-id", CL_OPT_STR, &user },
		{ "workspace-id", CL_OPT_STR, &ws },
		{ "external-user-id", CL_OPT_STR, &ext_user },
		{ "external-workspace-id", CL_OPT_STR, &ext_ws },
		{ "template", CL_OPT_STR, &template },
		{ "vsock-uds", CL_OPT_STR, &uds },
		{ "vsock-cid", CL_OPT_STR, &cid_s },
		{ NULL, 0, NULL },
	};
	struct ctl_target t;
	json_t *body = NULL, *ans = NULL, *out = NULL;
	const char *id;
	uint32_t cid = 0;
	int ex;

	if ((ex = cl_parse_args(c, cmd, argc, argv, opts, NULL, 0, 0, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	if (uds && cid_s)
		return cl_usage_error(cmd, "--vsock-uds and --vsock-cid exclude each other");
	if (!tenant)
		tenant = c->tenant_env;
	if (cid_s && !cl_parse_u32(cid_s, 0, UINT32_MAX, &cid))
		return cl_usage_error(cmd, "--vsock-cid '%s' is not a number in 0..%u", cid_s,
				      UINT32_MAX);
	body = json_object();
	if (!body || !cl_set_opt_str(body, "tenant_id", tenant) ||
	    !cl_set_opt_str(body, "user_id", user) || !cl_set_opt_str(body, "workspace_id", ws) ||
	    !cl_set_opt_str(body, "external_user_id", ext_user) ||
	    !cl_set_opt_str(body, "external_workspace_id", ext_ws) ||
	    !cl_set_opt_str(body, "template", template) ||
	    !cl_set_opt_str(body, "vsock_uds", uds) ||
	    (cid_s && json_object_set_new(body, "vsock_cid", json_integer(cid)) != 0)) {
		ex = cl_error("out of memory");
		goto out;
	}
	if (template && (ex = cl_template_policy_for_create(template, body)) != CL_EXIT_OK)
		goto out;
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/sandboxes");
	if ((ex = cl_call_object(c, "POST", &t, body, &ans, NULL)) != CL_EXIT_OK)
		goto out;
	id = json_string_value(json_object_get(ans, "id"));
	if (!id) {
		ex = cl_error("answer from %s has no sandbox id", c->ep.display);
		goto out;
	}
	if (c->json) {
		out = json_pack("{s:s}", "id", id);
		ex = out ? cl_print_json(out) : cl_error("out of memory");
	} else {
		char safe[300];

		ctl_output_sanitize(id, safe, sizeof(safe));
		printf("%s\n", safe);
	}
out:
	json_decref(out);
	json_decref(ans);
	json_decref(body);
	return ex;
}

static int cl_sandbox_show(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	const char *pos[1];
	struct ctl_target t;
	json_t *ans = NULL;
	int ex;

	if ((ex = cl_parse_args(c, cmd, argc, argv, NULL, pos, 1, 1, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/sandboxes");
	ctl_target_add_segment(&t, pos[0]);
	if ((ex = cl_call_object(c, "GET", &t, NULL, &ans, NULL)) == CL_EXIT_OK)
		ex = cl_print_object(c, ans, cl_sandbox_keys);
	json_decref(ans);
	return ex;
}

static int cl_sandbox_ls(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	const char *tenant = NULL, *ext_user = NULL, *ext_ws = NULL;
	const struct cl_opt opts[] = {
		{ "tenant", CL_OPT_STR, &tenant },
		{ "external-user-id", CL_OPT_STR, &ext_user },
		{ "external-workspace-id", CL_OPT_STR, &ext_ws },
		{ NULL, 0, NULL },
	};
	struct ctl_target t;
	json_t *ans = NULL;
	int ex;

	if ((ex = cl_parse_args(c, cmd, argc, argv, opts, NULL, 0, 0, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	if (!tenant)
		tenant = c->tenant_env;
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/sandboxes");
	if (tenant)
		ctl_target_add_query(&t, "tenant_id", tenant);
	if (ext_user)
		ctl_target_add_query(&t, "external_user_id", ext_user);
	if (ext_ws)
		ctl_target_add_query(&t, "external_workspace_id", ext_ws);
	if ((ex = cl_call_object(c, "GET", &t, NULL, &ans, NULL)) == CL_EXIT_OK)
		ex = cl_print_list(c, ans, "sandboxes", cl_sandbox_cols, CL_NCOLS(cl_sandbox_cols));
	json_decref(ans);
	return ex;
}

static int cl_sandbox_rm(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	const char *pos[1];
	struct ctl_target t;
	int ex;

	if ((ex = cl_parse_args(c, cmd, argc, argv, NULL, pos, 1, 1, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/sandboxes");
	ctl_target_add_segment(&t, pos[0]);
	return cl_call(c, "DELETE", &t, NULL, NULL, NULL);
}

/*
 * A PEM certificate as the broker sent it: printed byte for byte (so
 * `> ca.pem` is the file openssl reads), hence checked first to hold
 * nothing a terminal would interpret.
 */
static bool cl_is_pem_text(const char *s, size_t len)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----\n";
	static const char end[] = "-----END CERTIFICATE-----\n";

	if (len < sizeof(begin) - 1 + sizeof(end) - 1 || memcmp(s, begin, sizeof(begin) - 1) != 0 ||
	    memcmp(s + len - (sizeof(end) - 1), end, sizeof(end) - 1) != 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] != '\n' && (s[i] < 0x20 || s[i] > 0x7e))
			return false;
	return true;
}

static int cl_sandbox_ca(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	const char *pos[1];
	struct ctl_target t;
	json_t *ans = NULL;
	const json_t *pem;
	int ex;

	if ((ex = cl_parse_args(c, cmd, argc, argv, NULL, pos, 1, 1, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/sandboxes");
	ctl_target_add_segment(&t, pos[0]);
	ctl_target_add(&t, "/ca");
	if ((ex = cl_call_object(c, "GET", &t, NULL, &ans, NULL)) != CL_EXIT_OK)
		goto out;
	if (c->json) {
		ex = cl_print_json(ans);
		goto out;
	}
	pem = json_object_get(ans, "certificate_pem");
	if (!json_is_string(pem) || !cl_is_pem_text(json_string_value(pem), json_string_length(pem))) {
		ex = cl_error("answer from %s has no PEM certificate", c->ep.display);
		goto out;
	}
	if (fwrite(json_string_value(pem), 1, json_string_length(pem), stdout) !=
	    json_string_length(pem))
		ex = cl_error("cannot write to standard output");
out:
	json_decref(ans);
	return ex;
}

/* ------------------------------------------------------------------ */
/* secrets                                                             */

static const char *const cl_scopes[] = {
	"sandbox", "user", "external_user", "external_workspace", "workspace", "tenant", NULL,
};

/* Where a secret (or a listing) lives: a sandbox, or (tenant, scope, scope_id). */
struct cl_secret_where {
	const char *sandbox;   /* sandbox scope; NULL for the others */
	const char *tenant;
	const char *scope;
	const char *scope_id;
	const char *name;      /* NULL for listings */
};

struct cl_scope_args {
	const char *scope;
	const char *scope_id;
	const char *tenant;
};

/*
 * The two forms: "SANDBOX [NAME]" (sandbox scope), or "--scope S
 * --scope-id ID [--tenant T] [NAME]".  For scope tenant, --scope-id and
 * --tenant default to each other (and to MIOSA_TENANT / "default").
 */
static int cl_secret_where(const struct cl *c, const struct cl_command *cmd,
			   const struct cl_scope_args *a, const char **pos, int npos,
			   bool want_name, struct cl_secret_where *ret)
{
	int need = want_name ? 1 : 0;
	bool known = false;

	memset(ret, 0, sizeof(*ret));
	if (!a->scope) {
		if (a->scope_id || a->tenant)
			return cl_usage_error(cmd, "--scope-id and --tenant need --scope");
		if (npos < need + 1)
			return cl_usage_error(cmd, "missing argument");
		if (npos > need + 1)
			return cl_usage_error(cmd, "too many arguments%s", cl_value_hint(cmd));
		ret->sandbox = pos[0];
		ret->name = want_name ? pos[1] : NULL;
		return 0;
	}
	for (size_t i = 0; cl_scopes[i]; i++)
		known = known || strcmp(a->scope, cl_scopes[i]) == 0;
	if (!known)
		return cl_usage_error(cmd,
				      "unknown scope '%s' (expected sandbox, user, external_user, external_workspace, workspace or tenant)",
				      a->scope);
	if (npos < need)
		return cl_usage_error(cmd, "missing argument");
	if (npos > need)
		return cl_usage_error(cmd, "too many arguments%s", cl_value_hint(cmd));
	ret->name = want_name ? pos[0] : NULL;
	if (strcmp(a->scope, "sandbox") == 0) {
		if (a->tenant)
			return cl_usage_error(cmd, "--tenant does not apply to the sandbox scope");
		if (!a->scope_id)
			return cl_usage_error(cmd, "--scope sandbox needs --scope-id SANDBOX");
		ret->sandbox = a->scope_id;
		return 0;
	}
	ret->scope = a->scope;
	ret->tenant = a->tenant;
	ret->scope_id = a->scope_id;
	if (strcmp(a->scope, "tenant") == 0) {
		if (!ret->tenant)
			ret->tenant = ret->scope_id ? ret->scope_id : c->tenant;
		if (!ret->scope_id)
			ret->scope_id = ret->tenant;
		if (strcmp(ret->tenant, ret->scope_id) != 0)
			return cl_usage_error(cmd, "--scope tenant: --scope-id must equal --tenant");
		return 0;
	}
	if (!ret->scope_id)
		return cl_usage_error(cmd, "--scope %s needs --scope-id ID", a->scope);
	if (!ret->tenant)
		ret->tenant = c->tenant;
	return 0;
}

static void cl_secret_target(struct ctl_target *t, const struct cl_secret_where *w,
			     const char *suffix)
{
	ctl_target_init(t);
	if (w->sandbox) {
		ctl_target_add(t, "/v1/sandboxes");
		ctl_target_add_segment(t, w->sandbox);
		ctl_target_add(t, "/secrets");
	} else {
		ctl_target_add(t, "/v1/tenants");
		ctl_target_add_segment(t, w->tenant);
		ctl_target_add(t, "/secrets");
		ctl_target_add_segment(t, w->scope);
		ctl_target_add_segment(t, w->scope_id);
	}
	if (w->name)
		ctl_target_add_segment(t, w->name);
	if (suffix)
		ctl_target_add(t, suffix);
}

/* {"value": ...} with the value copied only into wiped jansson memory. */
static json_t *cl_value_body(const struct ctl_value *v)
{
	json_t *body = json_object();
	json_t *s = json_stringn((const char *)v->bytes, v->len);

	if (!body || !s || json_object_set_new(body, "value", s) != 0) {
		json_decref(body);
		return NULL;
	}
	return body;
}

static int cl_print_secret(const struct cl *c, json_t *ans, const char *result)
{
	json_t *view;
	int ex;

	if (c->json)
		return cl_print_json(ans);
	view = json_deep_copy(ans);
	if (!view || (result && json_object_set_new(view, "result", json_string(result)) != 0)) {
		json_decref(view);
		return cl_error("out of memory");
	}
	ex = cl_print_view(view, cl_secret_keys, false);
	json_decref(view);
	return ex;
}

static int cl_secrets_set(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	struct cl_scope_args a = { 0 };
	const char *env = NULL, *value_file = NULL, *pos[CL_MAX_POS];
	struct cl_strv hosts = { .n = 0 };
	bool cleartext = false;
	const struct cl_opt opts[] = {
		{ "scope", CL_OPT_STR, &a.scope },
		{ "scope-id", CL_OPT_STR, &a.scope_id },
		{ "tenant", CL_OPT_STR, &a.tenant },
		{ "expose-as", CL_OPT_STR, &env },
		{ "host", CL_OPT_LIST, &hosts },
		{ "allow-cleartext", CL_OPT_FLAG, &cleartext },
		{ "value-file", CL_OPT_STR, &value_file },
		{ NULL, 0, NULL },
	};
	struct cl_secret_where w;
	struct ctl_value value = { 0 };
	struct ctl_target t;
	char err[CTL_ERR_MAX];
	json_t *body = NULL, *ans = NULL, *harr = NULL;
	int ex, npos = 0, status = 0, r;

	if ((ex = cl_parse_args(c, cmd, argc, argv, opts, pos, 0, CL_MAX_POS, &npos)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	if ((ex = cl_secret_where(c, cmd, &a, pos, npos, true, &w)) != 0)
		return ex;
	if (!env)
		return cl_usage_error(cmd, "--expose-as ENV is required");
	if ((r = ctl_value_read(value_file, w.name, &value, err, sizeof(err))) < 0)
		return cl_error("%s", err);
	body = cl_value_body(&value);
	ctl_value_free(&value);
	if (!body || !cl_set_opt_str(body, "expose_as_env", env) ||
	    json_object_set_new(body, "allow_cleartext", json_boolean(cleartext)) != 0)
		goto oom;
	if (hosts.n > 0) {
		if (!(harr = json_array()) || json_object_set_new(body, "hosts", harr) != 0)
			goto oom;
		for (size_t i = 0; i < hosts.n; i++)
			if (json_array_append_new(harr, json_string(hosts.v[i])) != 0)
				goto oom;
	}
	cl_secret_target(&t, &w, NULL);
	if ((ex = cl_call_object(c, "PUT", &t, body, &ans, &status)) == CL_EXIT_OK)
		ex = cl_print_secret(c, ans, status == 201 ? "created" : "replaced");
	json_decref(ans);
	json_decref(body);
	return ex;
oom:
	json_decref(body);
	return cl_error("out of memory");
}

static int cl_secrets_ls(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	struct cl_scope_args a = { 0 };
	const char *pos[CL_MAX_POS];
	const struct cl_opt opts[] = {
		{ "scope", CL_OPT_STR, &a.scope },
		{ "scope-id", CL_OPT_STR, &a.scope_id },
		{ "tenant", CL_OPT_STR, &a.tenant },
		{ NULL, 0, NULL },
	};
	struct cl_secret_where w;
	struct ctl_target t;
	json_t *ans = NULL;
	int ex, npos = 0;

	if ((ex = cl_parse_args(c, cmd, argc, argv, opts, pos, 0, CL_MAX_POS, &npos)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	if ((ex = cl_secret_where(c, cmd, &a, pos, npos, false, &w)) != 0)
		return ex;
	cl_secret_target(&t, &w, NULL);
	if ((ex = cl_call_object(c, "GET", &t, NULL, &ans, NULL)) != CL_EXIT_OK)
		return ex;
	if (w.sandbox)
		ex = cl_print_list(c, ans, "bindings", cl_binding_cols, CL_NCOLS(cl_binding_cols));
	else
		ex = cl_print_list(c, ans, "secrets", cl_secret_cols, CL_NCOLS(cl_secret_cols));
	json_decref(ans);
	return ex;
}

static int cl_secrets_rotate(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	struct cl_scope_args a = { 0 };
	const char *value_file = NULL, *pos[CL_MAX_POS];
	const struct cl_opt opts[] = {
		{ "scope", CL_OPT_STR, &a.scope },
		{ "scope-id", CL_OPT_STR, &a.scope_id },
		{ "tenant", CL_OPT_STR, &a.tenant },
		{ "value-file", CL_OPT_STR, &value_file },
		{ NULL, 0, NULL },
	};
	struct cl_secret_where w;
	struct ctl_value value = { 0 };
	struct ctl_target t;
	char err[CTL_ERR_MAX];
	json_t *body, *ans = NULL;
	int ex, npos = 0, r;

	if ((ex = cl_parse_args(c, cmd, argc, argv, opts, pos, 0, CL_MAX_POS, &npos)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	if ((ex = cl_secret_where(c, cmd, &a, pos, npos, true, &w)) != 0)
		return ex;
	if ((r = ctl_value_read(value_file, w.name, &value, err, sizeof(err))) < 0)
		return cl_error("%s", err);
	body = cl_value_body(&value);
	ctl_value_free(&value);
	if (!body)
		return cl_error("out of memory");
	cl_secret_target(&t, &w, "/rotate");
	if ((ex = cl_call_object(c, "POST", &t, body, &ans, NULL)) == CL_EXIT_OK)
		ex = cl_print_secret(c, ans, NULL);
	json_decref(ans);
	json_decref(body);
	return ex;
}

static int cl_secrets_rm(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	struct cl_scope_args a = { 0 };
	const char *pos[CL_MAX_POS];
	const struct cl_opt opts[] = {
		{ "scope", CL_OPT_STR, &a.scope },
		{ "scope-id", CL_OPT_STR, &a.scope_id },
		{ "tenant", CL_OPT_STR, &a.tenant },
		{ NULL, 0, NULL },
	};
	struct cl_secret_where w;
	struct ctl_target t;
	int ex, npos = 0;

	if ((ex = cl_parse_args(c, cmd, argc, argv, opts, pos, 0, CL_MAX_POS, &npos)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	if ((ex = cl_secret_where(c, cmd, &a, pos, npos, true, &w)) != 0)
		return ex;
	cl_secret_target(&t, &w, NULL);
	return cl_call(c, "DELETE", &t, NULL, NULL, NULL);
}

/* ------------------------------------------------------------------ */
/* apikey                                                              */

static void cl_apikey_target(struct ctl_target *t, const char *tenant, const char *id)
{
	ctl_target_init(t);
	ctl_target_add(t, "/v1/tenants");
	ctl_target_add_segment(t, tenant);
	ctl_target_add(t, "/apikeys");
	if (id)
		ctl_target_add_segment(t, id);
}

static int cl_apikey_create(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	const char *tenant = NULL, *pos[1];
	const struct cl_opt opts[] = {
		{ "tenant", CL_OPT_STR, &tenant },
		{ NULL, 0, NULL },
	};
	struct ctl_target t;
	json_t *body, *ans = NULL;
	const char *key;
	int ex;

	if ((ex = cl_parse_args(c, cmd, argc, argv, opts, pos, 1, 1, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	if (!(body = json_pack("{s:s}", "name", pos[0])))
		return cl_error("out of memory");
	cl_apikey_target(&t, tenant ? tenant : c->tenant, NULL);
	ex = cl_call_object(c, "POST", &t, body, &ans, NULL);
	json_decref(body);
	if (ex != CL_EXIT_OK)
		return ex;
	key = json_string_value(json_object_get(ans, "key"));
	if (c->json) {
		ex = cl_print_json(ans);
	} else if (!key) {
		ex = cl_error("answer from %s holds no key", c->ep.display);
	} else {
		char id[300], safe_key[CTL_ERR_MAX];

		ctl_output_cell(json_object_get(ans, "id"), false, id, sizeof(id));
		ctl_output_sanitize(key, safe_key, sizeof(safe_key));
		printf("%s\n", safe_key);
		fprintf(stderr,
			"miosactl: created API key %s; the key above is shown only this once, store it now\n",
			id);
	}
	json_decref(ans);
	return ex;
}

static int cl_apikey_ls(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	const char *tenant = NULL;
	const struct cl_opt opts[] = {
		{ "tenant", CL_OPT_STR, &tenant },
		{ NULL, 0, NULL },
	};
	struct ctl_target t;
	json_t *ans = NULL;
	int ex;

	if ((ex = cl_parse_args(c, cmd, argc, argv, opts, NULL, 0, 0, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	cl_apikey_target(&t, tenant ? tenant : c->tenant, NULL);
	if ((ex = cl_call_object(c, "GET", &t, NULL, &ans, NULL)) == CL_EXIT_OK)
		ex = cl_print_list(c, ans, "apikeys", cl_apikey_cols, CL_NCOLS(cl_apikey_cols));
	json_decref(ans);
	return ex;
}

static int cl_apikey_revoke(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	const char *tenant = NULL, *pos[1];
	const struct cl_opt opts[] = {
		{ "tenant", CL_OPT_STR, &tenant },
		{ NULL, 0, NULL },
	};
	struct ctl_target t;
	json_t *ans = NULL;
	int ex;

	if ((ex = cl_parse_args(c, cmd, argc, argv, opts, pos, 1, 1, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	cl_apikey_target(&t, tenant ? tenant : c->tenant, pos[0]);
	if ((ex = cl_call_object(c, "DELETE", &t, NULL, &ans, NULL)) == CL_EXIT_OK)
		ex = cl_print_object(c, ans, cl_apikey_keys);
	json_decref(ans);
	return ex;
}

/* ------------------------------------------------------------------ */
/* tenant                                                              */

static int cl_tenant_create(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	const char *name = NULL, *pos[1];
	const struct cl_opt opts[] = {
		{ "name", CL_OPT_STR, &name },
		{ NULL, 0, NULL },
	};
	struct ctl_target t;
	json_t *body, *ans = NULL;
	int ex;

	if ((ex = cl_parse_args(c, cmd, argc, argv, opts, pos, 1, 1, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	body = json_pack("{s:s}", "id", pos[0]);
	if (!body || !cl_set_opt_str(body, "name", name)) {
		json_decref(body);
		return cl_error("out of memory");
	}
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/tenants");
	ex = cl_call_object(c, "POST", &t, body, &ans, NULL);
	json_decref(body);
	if (ex == CL_EXIT_OK)
		ex = cl_print_object(c, ans, cl_tenant_keys);
	json_decref(ans);
	return ex;
}

static int cl_tenant_ls(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	struct ctl_target t;
	json_t *ans = NULL;
	int ex;

	if ((ex = cl_parse_args(c, cmd, argc, argv, NULL, NULL, 0, 0, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/tenants");
	if ((ex = cl_call_object(c, "GET", &t, NULL, &ans, NULL)) == CL_EXIT_OK)
		ex = cl_print_list(c, ans, "tenants", cl_tenant_cols, CL_NCOLS(cl_tenant_cols));
	json_decref(ans);
	return ex;
}

static int cl_tenant_show(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	const char *pos[1] = { NULL };
	struct ctl_target t;
	json_t *ans = NULL;
	int ex, npos = 0;

	if ((ex = cl_parse_args(c, cmd, argc, argv, NULL, pos, 0, 1, &npos)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/tenants");
	ctl_target_add_segment(&t, npos ? pos[0] : c->tenant);
	if ((ex = cl_call_object(c, "GET", &t, NULL, &ans, NULL)) == CL_EXIT_OK)
		ex = cl_print_object(c, ans, cl_tenant_keys);
	json_decref(ans);
	return ex;
}

static int cl_tenant_settings(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	static const char *const keys[] = { "settings.allow_end_user_scoped_credentials", NULL };
	const char *end_user = NULL, *pos[1] = { NULL };
	const struct cl_opt opts[] = {
		{ "allow-end-user-scoped-credentials", CL_OPT_STR, &end_user },
		{ NULL, 0, NULL },
	};
	struct ctl_target t;
	json_t *body = NULL, *ans = NULL;
	int ex, npos = 0;

	if ((ex = cl_parse_args(c, cmd, argc, argv, opts, pos, 0, 1, &npos)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	if (end_user && strcmp(end_user, "on") != 0 && strcmp(end_user, "off") != 0)
		return cl_usage_error(cmd, "--allow-end-user-scoped-credentials takes on or off, not '%s'",
				      end_user);
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/tenants");
	ctl_target_add_segment(&t, npos ? pos[0] : c->tenant);
	if (end_user) {
		ctl_target_add(&t, "/settings");
		body = json_pack("{s:b}", "allow_end_user_scoped_credentials",
				 strcmp(end_user, "on") == 0);
		if (!body)
			return cl_error("out of memory");
	}
	ex = cl_call_object(c, body ? "PATCH" : "GET", &t, body, &ans, NULL);
	if (ex == CL_EXIT_OK)
		ex = c->json ? cl_print_json(ans) : cl_print_view(ans, keys, true);
	json_decref(ans);
	json_decref(body);
	return ex;
}

/* ------------------------------------------------------------------ */
/* network                                                             */

static void cl_network_target(struct ctl_target *t, const char *sandbox, const char *verb)
{
	ctl_target_init(t);
	ctl_target_add(t, "/v1/sandboxes");
	ctl_target_add_segment(t, sandbox);
	ctl_target_add(t, "/network");
	if (verb) {
		ctl_target_add(t, "/");
		ctl_target_add(t, verb);
	}
}

static const struct ctl_column cl_hit_cols[] = {
	{ "HOST", "host" },
	{ "PORT", "port" },
	{ "COUNT", "count" },
	{ "FIRST_SEEN", "first_seen" },
	{ "LAST_SEEN", "last_seen" },
};

static const struct ctl_column cl_allow_cols[] = {
	{ "PATTERN", "pattern" },
	{ "PORT", "port" },
	{ "ADDED", "created_at" },
};

/* One titled list of the network answer; "-" in PORT means any port. */
static int cl_print_section(const struct cl *c, const json_t *ans, const char *key,
			    const char *title, const struct ctl_column *cols, size_t ncols)
{
	const json_t *a = NULL;
	int ex;

	if ((ex = cl_list_field(c, ans, key, &a)) != CL_EXIT_OK)
		return ex;
	printf("\n%s (%zu):\n", title, json_array_size(a));
	return json_array_size(a) ? cl_print_table(a, cols, ncols) : CL_EXIT_OK;
}

static int cl_print_network(const struct cl *c, const json_t *ans)
{
	char mode[32];
	int ex;

	if (c->json)
		return cl_print_json(ans);
	ctl_output_cell(json_object_get(ans, "mode"), false, mode, sizeof(mode));
	printf("mode: %s\n", mode);
	if ((ex = cl_print_section(c, ans, "allowlist", "allowlist", cl_allow_cols,
				   CL_NCOLS(cl_allow_cols))) != CL_EXIT_OK ||
	    (ex = cl_print_section(c, ans, "observed", "observed", cl_hit_cols,
				   CL_NCOLS(cl_hit_cols))) != CL_EXIT_OK)
		return ex;
	return cl_print_section(c, ans, "pending", "pending (blocked in enforce mode)", cl_hit_cols,
				CL_NCOLS(cl_hit_cols));
}

static int cl_network_status(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	const char *pos[1];
	struct ctl_target t;
	json_t *ans = NULL;
	int ex;

	if ((ex = cl_parse_args(c, cmd, argc, argv, NULL, pos, 1, 1, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	cl_network_target(&t, pos[0], NULL);
	if ((ex = cl_call_object(c, "GET", &t, NULL, &ans, NULL)) == CL_EXIT_OK)
		ex = cl_print_network(c, ans);
	json_decref(ans);
	return ex;
}

static int cl_network_pending(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	const json_t *a = NULL;
	const char *pos[1];
	struct ctl_target t;
	json_t *ans = NULL;
	int ex;

	if ((ex = cl_parse_args(c, cmd, argc, argv, NULL, pos, 1, 1, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	cl_network_target(&t, pos[0], "pending");
	if ((ex = cl_call_object(c, "GET", &t, NULL, &ans, NULL)) != CL_EXIT_OK)
		goto out;
	if (c->json) {
		ex = cl_print_json(ans);
	} else if ((ex = cl_list_field(c, ans, "pending", &a)) == CL_EXIT_OK) {
		if (json_array_size(a) == 0)
			printf("no pending hosts\n");
		else
			ex = cl_print_table(a, cl_hit_cols, CL_NCOLS(cl_hit_cols));
	}
out:
	json_decref(ans);
	return ex;
}

/* POST .../network/allow|deny {"pattern", "port"?} */
static int cl_network_edit(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	const char *port_text = NULL;
	const struct cl_opt opts[] = {
		{ "port", CL_OPT_STR, &port_text },
		{ NULL, 0, NULL },
	};
	bool allow = strcmp(cmd->verb, "allow") == 0;
	char pattern[CTL_TEXT_MAX];
	const char *pos[2];
	struct ctl_target t;
	json_t *body, *ans = NULL;
	uint32_t port = 0;
	int ex, status = 0;

	if ((ex = cl_parse_args(c, cmd, argc, argv, opts, pos, 2, 2, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	if (port_text && !cl_parse_u32(port_text, 1, 65535, &port))
		return cl_usage_error(cmd, "--port '%s' is not 1..65535", port_text);
	body = json_pack("{s:s}", "pattern", pos[1]);
	if (!body || (port && json_object_set_new(body, "port", json_integer(port)) != 0)) {
		json_decref(body);
		return cl_error("out of memory");
	}
	cl_network_target(&t, pos[0], cmd->verb);
	ex = cl_call_object(c, "POST", &t, body, &ans, &status);
	json_decref(body);
	if (ex != CL_EXIT_OK)
		return ex;
	if (c->json) {
		ex = cl_print_json(ans);
	} else {
		char where[32] = "";

		ctl_output_sanitize(pos[1], pattern, sizeof(pattern));
		if (port)
			snprintf(where, sizeof(where), " port %u", port);
		if (allow)
			printf("%s %s%s\n", status == 201 ? "allowed" : "already allowed", pattern,
			       where);
		else
			printf("removed %s%s from the allowlist\n", pattern, where);
	}
	json_decref(ans);
	return ex;
}

/* POST .../network/lockdown|observe: prints the new mode and list size. */
static int cl_network_mode(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	const json_t *a = NULL;
	const char *pos[1];
	struct ctl_target t;
	json_t *ans = NULL;
	int ex;

	if ((ex = cl_parse_args(c, cmd, argc, argv, NULL, pos, 1, 1, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	cl_network_target(&t, pos[0], cmd->verb);
	if ((ex = cl_call_object(c, "POST", &t, NULL, &ans, NULL)) != CL_EXIT_OK)
		return ex;
	if (c->json) {
		ex = cl_print_json(ans);
	} else if ((ex = cl_list_field(c, ans, "allowlist", &a)) == CL_EXIT_OK) {
		if (strcmp(cmd->verb, "lockdown") == 0)
			printf("mode: enforce; %zu allowlist entries (%lld added from observed hosts)\n",
			       json_array_size(a),
			       (long long)json_integer_value(json_object_get(ans, "added")));
		else
			printf("mode: observe; allowlist kept (%zu entries)\n", json_array_size(a));
	}
	json_decref(ans);
	return ex;
}

/* ------------------------------------------------------------------ */
/* audit                                                               */

#define CL_AUDIT_LINE_MAX (1u << 20) /* one tail line (a row is a few KiB) */
#define CL_AUDIT_EXPORT_MAX (256u << 20)

/* The filters every audit command takes, as query parameters. */
struct cl_audit_filter {
	const char *tenant, *sandbox, *host, *since, *until, *status, *action;
	const char *ext_user, *ext_ws, *limit, *cursor, *format;
};

#define CL_AUDIT_FILTER_OPTS(f) \
	{ "tenant", CL_OPT_STR, &(f)->tenant }, \
	{ "sandbox", CL_OPT_STR, &(f)->sandbox }, \
	{ "host", CL_OPT_STR, &(f)->host }, \
	{ "since", CL_OPT_STR, &(f)->since }, \
	{ "until", CL_OPT_STR, &(f)->until }, \
	{ "status", CL_OPT_STR, &(f)->status }, \
	{ "action", CL_OPT_STR, &(f)->action }, \
	{ "external-user-id", CL_OPT_STR, &(f)->ext_user }, \
	{ "external-workspace-id", CL_OPT_STR, &(f)->ext_ws }

/* Values go to the API as they are: it validates them and its message
 * (e.g. a bad --since) is what the user sees. */
static void cl_audit_query(struct ctl_target *t, const struct cl_audit_filter *f)
{
	const struct { const char *name, *value; } q[] = {
		{ "tenant_id", f->tenant }, { "sandbox", f->sandbox }, { "host", f->host },
		{ "since", f->since }, { "until", f->until }, { "status", f->status },
		{ "action", f->action }, { "external_user_id", f->ext_user },
		{ "external_workspace_id", f->ext_ws }, { "limit", f->limit },
		{ "cursor", f->cursor }, { "format", f->format },
	};

	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++)
		if (q[i].value)
			ctl_target_add_query(t, q[i].name, q[i].value);
}

static void cl_format_time_us(json_int_t us, char *out, size_t size)
{
	time_t secs = (time_t)(us / 1000000);
	struct tm tm;

	if (us < 0 || !gmtime_r(&secs, &tm)) {
		snprintf(out, size, "-");
		return;
	}
	snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (int)(us % 1000000 / 1000));
}

/*
 * One row as the seeds show it, after its time and sandbox:
 *   TIME SANDBOX [audit] allow api.openai.com HTTP 200 secrets=openai_key
 * A port other than the scheme's default follows the host; a TCP row says
 * TCP; a row without a status shows "-"; an allowed HTTP row that swapped
 * nothing says secrets=none; deny and error rows show the rules that fired
 * and end with their reason:
 *   [audit] deny evil.example HTTP 403 rule=deny:host-not-allowed reason=host-not-allowed
 * Every broker string is sanitized.
 */
static void cl_print_audit_row(FILE *out, const json_t *row)
{
	const json_t *swapped = ctl_output_lookup(row, "request_transforms.secrets.swapped");
	char when[80], sbx[CTL_TEXT_MAX], action[16], host[CTL_TEXT_MAX], scheme[16];
	char reason[CTL_TEXT_MAX], name[CTL_TEXT_MAX];
	json_int_t port = json_integer_value(json_object_get(row, "port"));
	json_int_t status = json_integer_value(json_object_get(row, "status"));
	size_t i;
	json_t *v;

	cl_format_time_us(json_integer_value(json_object_get(row, "time_us")), when, sizeof(when));
	ctl_output_cell(json_object_get(row, "sandbox_id"), false, sbx, sizeof(sbx));
	ctl_output_cell(json_object_get(row, "action"), false, action, sizeof(action));
	ctl_output_cell(json_object_get(row, "host"), false, host, sizeof(host));
	ctl_output_cell(json_object_get(row, "scheme"), false, scheme, sizeof(scheme));
	ctl_output_cell(json_object_get(row, "reason"), false, reason, sizeof(reason));
	fprintf(out, "%s %s [audit] %s %s", when, sbx, action, host);
	if (!((strcmp(scheme, "https") == 0 && port == 443) ||
	      (strcmp(scheme, "http") == 0 && port == 80)))
		fprintf(out, ":%lld", (long long)port);
	if (strcmp(scheme, "tcp") == 0)
		fputs(" TCP", out);
	else if (status > 0)
		fprintf(out, " HTTP %lld", (long long)status);
	else
		fputs(" HTTP -", out);
	json_array_foreach(swapped, i, v) {
		ctl_output_cell(v, false, name, sizeof(name));
		fprintf(out, "%s%s", i == 0 ? " secrets=" : ",", name);
	}
	if (strcmp(action, "allow") != 0) {
		json_array_foreach(json_object_get(row, "rules"), i, v) {
			ctl_output_cell(v, false, name, sizeof(name));
			fprintf(out, "%s%s", i == 0 ? " rule=" : ",", name);
		}
		if (strcmp(reason, "-") != 0)
			fprintf(out, " reason=%s", reason);
	} else if (json_array_size(swapped) == 0 && strcmp(scheme, "tcp") != 0) {
		/* The seeds show "secrets=none" on an HTTP call that swapped nothing. */
		fputs(" secrets=none", out);
	}
	fputc('\n', out);
}

static int cl_print_audit_rows(const struct cl *c, const json_t *rows, bool oldest_first)
{
	size_t n = json_array_size(rows);

	for (size_t k = 0; k < n; k++) {
		const json_t *row = json_array_get(rows, oldest_first ? n - 1 - k : k);

		if (!json_is_object(row))
			return cl_error("answer from %s has a row that is not an object", c->ep.display);
		if (c->json) {
			char *line = json_dumps(row, JSON_COMPACT | JSON_SORT_KEYS);

			if (!line)
				return cl_error("out of memory");
			puts(line);
			cl_wipe_free(line); /* jansson's allocator */
		} else {
			cl_print_audit_row(stdout, row);
		}
	}
	return CL_EXIT_OK;
}

static int cl_audit_ls(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	struct cl_audit_filter f = { 0 };
	const struct cl_opt opts[] = {
		CL_AUDIT_FILTER_OPTS(&f),
		{ "limit", CL_OPT_STR, &f.limit },
		{ "cursor", CL_OPT_STR, &f.cursor },
		{ NULL, 0, NULL },
	};
	const json_t *rows = NULL, *next;
	struct ctl_target t;
	json_t *ans = NULL;
	int ex;

	if ((ex = cl_parse_args(c, cmd, argc, argv, opts, NULL, 0, 0, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/audit");
	cl_audit_query(&t, &f);
	if ((ex = cl_call_object(c, "GET", &t, NULL, &ans, NULL)) != CL_EXIT_OK)
		return ex;
	if (c->json) {
		ex = cl_print_json(ans);
	} else if ((ex = cl_list_field(c, ans, "rows", &rows)) == CL_EXIT_OK) {
		ex = cl_print_audit_rows(c, rows, false);
		next = json_object_get(ans, "next_cursor");
		if (ex == CL_EXIT_OK && json_is_string(next)) {
			char cur[64];

			ctl_output_sanitize(json_string_value(next), cur, sizeof(cur));
			fprintf(stderr, "miosactl: more rows: add --cursor %s\n", cur);
		}
	}
	json_decref(ans);
	return ex;
}

/* GET with the answer's body as it is (export): 0 and *ret_resp on 2xx. */
static int cl_call_raw(struct cl *c, const struct ctl_target *t, size_t max_response,
		       struct ctl_response *ret_resp)
{
	struct ctl_request req = { .method = "GET", .target = ctl_target_get(t),
				   .max_response = max_response };
	struct ctl_response resp = { 0 };
	char err[CTL_ERR_MAX];

	if (!req.target)
		return cl_error("request path too long");
	if (c->ep.transport == CTL_TRANSPORT_TCP)
		req.bearer = c->api_key;
	if (ctl_client_call(&c->ep, &req, c->timeout_ms, &resp, err, sizeof(err)) < 0)
		return cl_error("%s", err);
	if (resp.status >= 400) {
		cl_print_api_error(c, &resp);
		ctl_response_free(&resp);
		return CL_EXIT_FAIL;
	}
	if (resp.status != 200) {
		ctl_response_free(&resp);
		return cl_error("unexpected HTTP %d from %s", resp.status, c->ep.display);
	}
	*ret_resp = resp;
	return CL_EXIT_OK;
}

static int cl_audit_export(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	struct cl_audit_filter f = { 0 };
	const struct cl_opt opts[] = {
		CL_AUDIT_FILTER_OPTS(&f),
		{ "format", CL_OPT_STR, &f.format },
		{ NULL, 0, NULL },
	};
	struct ctl_response resp = { 0 };
	struct ctl_target t;
	int ex;

	if ((ex = cl_parse_args(c, cmd, argc, argv, opts, NULL, 0, 0, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	if (f.format && strcmp(f.format, "jsonl") != 0 && strcmp(f.format, "csv") != 0)
		return cl_usage_error(cmd, "--format must be jsonl or csv");
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/audit/export");
	cl_audit_query(&t, &f);
	if ((ex = cl_call_raw(c, &t, CL_AUDIT_EXPORT_MAX, &resp)) != CL_EXIT_OK)
		return ex;
	/* Raw on purpose: the export is the broker's (RFC 4180 / JSON lines,
	 * spreadsheet formulas already neutralized), redirected to a file. */
	if (resp.body_len && fwrite(resp.body, 1, resp.body_len, stdout) != resp.body_len)
		ex = cl_error("cannot write to standard output");
	ctl_response_free(&resp);
	return ex;
}

static int cl_audit_verify(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	struct ctl_target t;
	json_t *ans = NULL;
	bool ok;
	int ex;

	if ((ex = cl_parse_args(c, cmd, argc, argv, NULL, NULL, 0, 0, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/audit/verify");
	if ((ex = cl_call_object(c, "GET", &t, NULL, &ans, NULL)) != CL_EXIT_OK)
		return ex;
	ok = json_is_true(json_object_get(ans, "ok"));
	if (c->json) {
		ex = cl_print_json(ans);
	} else if (ok) {
		char head[80];

		ctl_output_cell(json_object_get(ans, "head"), false, head, sizeof(head));
		printf("audit chain OK: %lld rows, head %s\n",
		       (long long)json_integer_value(json_object_get(ans, "rows")), head);
	} else {
		printf("audit chain BROKEN: first bad row id %lld (%lld rows verified before it)\n",
		       (long long)json_integer_value(json_object_get(ans, "first_bad_id")),
		       (long long)json_integer_value(json_object_get(ans, "rows")) - 1);
	}
	/* Retention: the walk started at the anchor of the pruned rows. */
	if (!c->json && json_integer_value(json_object_get(ans, "pruned")) > 0)
		printf("%lld older rows pruned by retention; the chain was checked from their anchor\n",
		       (long long)json_integer_value(json_object_get(ans, "pruned")));
	json_decref(ans);
	return ex == CL_EXIT_OK && !ok ? CL_EXIT_FAIL : ex;
}

/*
 * One page of the newest matching rows (before cursor, if any).  On success
 * *ret_ans holds the answer (rows newest first).
 */
static int cl_audit_page(struct cl *c, const struct cl_audit_filter *f, const char *limit,
			 const char *cursor, json_t **ret_ans)
{
	struct cl_audit_filter page = *f;
	struct ctl_target t;
	const json_t *rows;
	int ex;

	page.limit = limit;
	page.cursor = cursor;
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/audit");
	cl_audit_query(&t, &page);
	if ((ex = cl_call_object(c, "GET", &t, NULL, ret_ans, NULL)) != CL_EXIT_OK)
		return ex;
	if ((ex = cl_list_field(c, *ret_ans, "rows", &rows)) != CL_EXIT_OK) {
		json_decref(*ret_ans);
		*ret_ans = NULL;
	}
	return ex;
}

/* The tail stream's reader: complete lines out of the chunks. */
struct cl_tail {
	struct cl *c;
	json_int_t skip_to;          /* rows up to this id were shown by --lines */
	char *line;
	size_t len, cap;
	bool dropped;
};

/* One JSON line from the stream: a row, or the broker's last word. */
static int cl_tail_line(struct cl_tail *t, const char *text, size_t len)
{
	json_error_t jerr;
	json_t *row = json_loadb(text, len, 0, &jerr);
	const json_t *error;
	int ex = CL_EXIT_OK;

	if (!json_is_object(row)) {
		json_decref(row);
		return cl_error("the audit tail from %s sent a line that is not a JSON object",
				t->c->ep.display);
	}
	if (json_object_get(row, "notice")) {
		char msg[CTL_TEXT_MAX];

		/* A gap the broker could not replay (over its cap): say so, go on. */
		ctl_output_cell(json_object_get(row, "message"), false, msg, sizeof(msg));
		fprintf(stderr, "miosactl: audit tail: %s\n", msg);
	} else if ((error = json_object_get(row, "error"))) {
		char msg[CTL_TEXT_MAX];

		ctl_output_cell(json_object_get(row, "message"), false, msg, sizeof(msg));
		fprintf(stderr, "miosactl: audit tail: %s\n", msg);
		t->dropped = true;
	} else if (json_integer_value(json_object_get(row, "id")) > t->skip_to) {
		if (t->c->json) {
			/* The broker's line as it came. */
			if (fwrite(text, 1, len, stdout) != len || putchar('\n') == EOF)
				ex = cl_error("cannot write to standard output");
		} else {
			cl_print_audit_row(stdout, row);
		}
	}
	json_decref(row);
	return ex;
}

/* ctl_request.on_data: split the decoded stream into lines. */
static int cl_tail_data(void *userdata, const char *data, size_t len)
{
	struct cl_tail *t = userdata;

	for (size_t i = 0; i < len; i++) {
		if (data[i] != '\n') {
			if (t->len == CL_AUDIT_LINE_MAX) {
				cl_error("the audit tail from %s sent a line over %u bytes",
					 t->c->ep.display, CL_AUDIT_LINE_MAX);
				return -EPROTO;
			}
			if (t->len == t->cap) {
				size_t cap = t->cap ? t->cap * 2 : 8192;
				char *p = realloc(t->line, cap);

				if (!p)
					return -ENOMEM;
				t->line = p;
				t->cap = cap;
			}
			t->line[t->len++] = data[i];
			continue;
		}
		if (t->len > 0 && cl_tail_line(t, t->line, t->len) != CL_EXIT_OK)
			return -EIO;
		t->len = 0;
	}
	return fflush(stdout) == 0 ? 0 : -EIO;
}

/*
 * The last --lines rows from GET /v1/audit, then GET /v1/audit/tail with
 * after=<the newest row printed> (0 when none matched): the broker
 * subscribes, replays the rows committed since, then streams each committed
 * row (an HTTP request once its completion committed, so with its status)
 * as a JSON line, until interrupted; a row committed between the two calls
 * is shown once.  --lines 0 asks for no after=: the stream starts when the
 * broker subscribes, and there is no earlier call to leave a gap after.
 */
static int cl_audit_tail(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	struct cl_audit_filter f = { 0 };
	const char *lines = "10";
	const struct cl_opt opts[] = {
		CL_AUDIT_FILTER_OPTS(&f),
		{ "lines", CL_OPT_STR, &lines },
		{ NULL, 0, NULL },
	};
	struct cl_tail tail = { .c = c };
	struct ctl_request req = { .method = "GET", .on_data = cl_tail_data, .userdata = &tail };
	struct ctl_response resp = { 0 };
	char err[CTL_ERR_MAX];
	struct ctl_target t;
	json_t *ans = NULL;
	char after[24];
	uint32_t n_lines;
	int ex, r;

	if ((ex = cl_parse_args(c, cmd, argc, argv, opts, NULL, 0, 0, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	if (!cl_parse_u32(lines, 0, 1000, &n_lines))
		return cl_usage_error(cmd, "--lines '%s' is not 0..1000", lines);
	if (n_lines) {
		if ((ex = cl_audit_page(c, &f, lines, NULL, &ans)) != CL_EXIT_OK)
			return ex;
		tail.skip_to = json_integer_value(
			json_object_get(json_array_get(json_object_get(ans, "rows"), 0), "id"));
		ex = cl_print_audit_rows(c, json_object_get(ans, "rows"), true);
		json_decref(ans);
		if (ex == CL_EXIT_OK && fflush(stdout) != 0)
			ex = cl_error("cannot write to standard output");
		if (ex != CL_EXIT_OK)
			return ex;
	}
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/audit/tail");
	cl_audit_query(&t, &f);
	if (n_lines) {
		snprintf(after, sizeof(after), "%lld", (long long)tail.skip_to);
		ctl_target_add_query(&t, "after", after);
	}
	if (!(req.target = ctl_target_get(&t)))
		return cl_error("request path too long");
	if (c->ep.transport == CTL_TRANSPORT_TCP)
		req.bearer = c->api_key;
	r = ctl_client_call(&c->ep, &req, c->timeout_ms, &resp, err, sizeof(err));
	free(tail.line);
	if (r < 0 && err[0])
		return cl_error("%s", err);
	if (r < 0)
		return CL_EXIT_FAIL; /* the line reader said why */
	if (resp.status >= 400) {
		cl_print_api_error(c, &resp);
		ctl_response_free(&resp);
		return CL_EXIT_FAIL;
	}
	ctl_response_free(&resp);
	if (resp.status != 200)
		return cl_error("unexpected HTTP %d from %s", resp.status, c->ep.display);
	/* The stream only ends when the broker ends it. */
	if (!tail.dropped)
		fprintf(stderr, "miosactl: the broker at %s ended the audit tail\n", c->ep.display);
	return CL_EXIT_FAIL;
}

/* ------------------------------------------------------------------ */
/* health                                                              */

static int cl_health(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	static const char *const keys[] = { "status", "version", NULL };
	struct ctl_target t;
	json_t *ans = NULL;
	int ex;

	if ((ex = cl_parse_args(c, cmd, argc, argv, NULL, NULL, 0, 0, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/health");
	if ((ex = cl_call_object(c, "GET", &t, NULL, &ans, NULL)) == CL_EXIT_OK)
		ex = cl_print_object(c, ans, keys);
	json_decref(ans);
	return ex;
}


/* ------------------------------------------------------------------ */
/* exec                                                                */

#define CL_EXEC_STDIN_MAX (32u * 1024)   /* the broker's cap (guest_exec.h) */
#define CL_EXEC_ENV_MAX 256
#define CL_EXEC_STATUS_TIMEOUT 124        /* as timeout(1) */
#define CL_EXEC_STATUS_NOT_STARTED 127    /* as a shell's "command not found" */

/* Standard input, when it is not a terminal: at most CL_EXEC_STDIN_MAX bytes. */
static int cl_exec_stdin(json_t *body)
{
	unsigned char *buf, *p;
	size_t n = 0, cap = sodium_base64_ENCODED_LEN(CL_EXEC_STDIN_MAX + 1,
						      sodium_base64_VARIANT_ORIGINAL);
	char *b64;
	int ex = CL_EXIT_OK;

	if (isatty(STDIN_FILENO))
		return CL_EXIT_OK;
	if (!(buf = malloc(CL_EXEC_STDIN_MAX + 1)) || !(b64 = malloc(cap))) {
		free(buf);
		return cl_error("out of memory");
	}
	for (p = buf; n <= CL_EXEC_STDIN_MAX;) {
		size_t got = fread(p, 1, CL_EXEC_STDIN_MAX + 1 - n, stdin);

		if (got == 0)
			break;
		n += got;
		p += got;
	}
	if (ferror(stdin))
		ex = cl_error("cannot read standard input: %s", strerror(errno));
	else if (n > CL_EXEC_STDIN_MAX)
		ex = cl_error("standard input is over %u bytes; pass larger input another way",
			      CL_EXEC_STDIN_MAX);
	else if (n > 0) {
		sodium_bin2base64(b64, cap, buf, n, sodium_base64_VARIANT_ORIGINAL);
		if (json_object_set_new(body, "stdin", json_string(b64)) != 0)
			ex = cl_error("out of memory");
	}
	free(buf);
	free(b64);
	return ex;
}

/* A base64 field of the answer, raw to f. */
static int cl_exec_write(const json_t *ans, const char *key, FILE *f)
{
	const char *s = json_string_value(json_object_get(ans, key));
	size_t len = s ? strlen(s) : 0, n = 0;
	unsigned char *bin;

	if (!s)
		return cl_error("answer has no '%s'", key);
	if (len == 0)
		return CL_EXIT_OK;
	if (!(bin = malloc(len)))
		return cl_error("out of memory");
	if (sodium_base642bin(bin, len, s, len, NULL, &n, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0) {
		free(bin);
		return cl_error("answer's '%s' is not base64", key);
	}
	if (fwrite(bin, 1, n, f) != n) {
		free(bin);
		return cl_error("cannot write the command's %s: %s", key, strerror(errno));
	}
	free(bin);
	fflush(f);
	return CL_EXIT_OK;
}

/* The command's status as ours: exit code, 128+signal, 124 timeout, 127 not run. */
static int cl_exec_status(const json_t *ans)
{
	const json_t *v;

	if ((v = json_object_get(ans, "exit_code")) && json_is_integer(v))
		return (int)(json_integer_value(v) & 0xff);
	if ((v = json_object_get(ans, "signal")) && json_is_integer(v))
		return 128 + (int)(json_integer_value(v) & 0x7f);
	if (json_is_true(json_object_get(ans, "timed_out"))) {
		fprintf(stderr, "miosactl: the command timed out in the guest\n");
		return CL_EXEC_STATUS_TIMEOUT;
	}
	if ((v = json_object_get(ans, "start_error")) && json_is_string(v)) {
		char text[300];

		ctl_output_sanitize(json_string_value(v), text, sizeof(text));
		fprintf(stderr, "miosactl: the command did not start: %s\n", text);
		return CL_EXEC_STATUS_NOT_STARTED;
	}
	return cl_error("answer has no outcome");
}

/* Options before "--" by hand: getopt would permute the command's own. */
static int cl_exec_options(struct cl *c, const struct cl_command *cmd, int argc, char **argv,
			   json_t *body, const char **ret_sandbox, int *ret_cmd, uint32_t *ret_timeout)
{
	json_t *env = json_object();
	const char *sandbox = NULL;
	int i;

	if (!env)
		return cl_error("out of memory");
	json_object_set_new(body, "env", env);
	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			cl_print_help(cmd);
			return CL_HELP_DONE;
		} else if (strcmp(a, "--json") == 0) {
			c->json = true;
		} else if (strcmp(a, "--timeout") == 0 || strcmp(a, "--cwd") == 0 ||
			   strcmp(a, "--env") == 0) {
			if (!v || strcmp(v, "--") == 0)
				return cl_usage_error(cmd, "%s needs a value", a);
			i++;
			if (strcmp(a, "--timeout") == 0) {
				if (!cl_parse_u32(v, 1, 86400, ret_timeout))
					return cl_usage_error(cmd, "--timeout must be 1..86400 seconds");
			} else if (strcmp(a, "--cwd") == 0) {
				json_object_set_new(body, "cwd", json_string(v));
			} else {
				const char *eq = strchr(v, '=');
				char name[129];

				if (!eq || eq == v || (size_t)(eq - v) >= sizeof(name) || !cl_is_utf8(v))
					return cl_usage_error(cmd, "--env needs NAME=VALUE");
				memcpy(name, v, (size_t)(eq - v));
				name[eq - v] = '\0';
				if (json_object_size(env) >= CL_EXEC_ENV_MAX ||
				    json_object_set_new(env, name, json_string(eq + 1)) != 0)
					return cl_usage_error(cmd, "bad --env %s", name);
			}
		} else if (a[0] == '-') {
			return cl_usage_error(cmd, "unknown option %.*s", (int)strcspn(a, "="), a);
		} else if (!sandbox) {
			sandbox = a;
		} else {
			return cl_usage_error(cmd, "the command goes after \"--\"");
		}
	}
	if (!sandbox)
		return cl_usage_error(cmd, "missing SANDBOX");
	if (i >= argc || i + 1 >= argc)
		return cl_usage_error(cmd, "missing \"-- CMD [ARG]...\"");
	*ret_sandbox = sandbox;
	*ret_cmd = i + 1;
	return 0;
}

static int cl_exec(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	json_t *body = json_object(), *args = json_array(), *ans = NULL;
	const char *sandbox = NULL;
	uint32_t timeout_s = 0;
	struct ctl_target t;
	int first = 0, ex;

	if (!body || !args) {
		json_decref(body);
		json_decref(args);
		return cl_error("out of memory");
	}
	json_object_set_new(body, "argv", args);
	ex = cl_exec_options(c, cmd, argc, argv, body, &sandbox, &first, &timeout_s);
	if (ex != 0)
		goto out;
	for (int i = first; i < argc; i++)
		if (!cl_is_utf8(argv[i]) || json_array_append_new(args, json_string(argv[i])) != 0) {
			ex = cl_usage_error(cmd, "argument %d is not valid UTF-8", i - first);
			goto out;
		}
	if (timeout_s)
		json_object_set_new(body, "timeout_ms", json_integer((json_int_t)timeout_s * 1000));
	if ((ex = cl_exec_stdin(body)) != CL_EXIT_OK)
		goto out;
	/* The call lasts as long as the command: the broker's own deadline
	 * (the guest's timeout, default 300 s, + 10 s) plus a margin. */
	c->timeout_ms = (int)((timeout_s ? timeout_s : 300) + 30) * 1000;
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/sandboxes");
	ctl_target_add_segment(&t, sandbox);
	ctl_target_add(&t, "/exec");
	if ((ex = cl_call_object(c, "POST", &t, body, &ans, NULL)) != CL_EXIT_OK)
		goto out;
	if (c->json)
		ex = cl_print_json(ans);
	else if ((ex = cl_exec_write(ans, "stdout", stdout)) == CL_EXIT_OK)
		ex = cl_exec_write(ans, "stderr", stderr);
	if (ex == CL_EXIT_OK)
		ex = cl_exec_status(ans);
out:
	json_decref(body);
	json_decref(ans);
	return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
}

/* ------------------------------------------------------------------ */
/* The command table                                                   */

#define CL_SCOPE_HELP \
	"Scopes (the resolver walks them in this order, first match wins per env name):\n" \
	"  sandbox (SANDBOX NAME form), user, external_user, external_workspace,\n" \
	"  workspace, tenant.  --scope-id is the user/workspace/external id, or the\n" \
	"  tenant id for --scope tenant (then --scope-id and --tenant default to each\n" \
	"  other).  --tenant defaults to $MIOSA_TENANT, else \"default\"; over --url it\n" \
	"  must be the API key's tenant.\n"

/* ------------------------------------------------------------------ */
/* template (M15): the policy file beside a VM image                   */
/*                                                                     */
/* miosactl reads and writes IMAGE.policy.pb itself (it may talk to a  */
/* remote broker); the broker only sees the policy as JSON.            */

static int64_t cl_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * The answer of GET /v1/sandboxes/{id}/template as a template_state.  The
 * broker's answer is checked by template_file_encode() again before anything
 * is written; here only its shape.
 */
static int cl_template_from_json(const struct cl *c, const json_t *ans,
				 struct template_state *ret)
{
	struct template_state t = { .created_at_us = cl_now_us() };
	const json_t *allow = json_object_get(ans, "allowlist");
	const json_t *ports = json_object_get(ans, "listen_ports");
	const char *mode = json_string_value(json_object_get(ans, "mode"));
	const char *id = json_string_value(json_object_get(ans, "sandbox_id"));
	const json_t *e;
	size_t i;

	if (!mode || !id || !json_is_array(allow) || !json_is_array(ports) ||
	    json_array_size(allow) > POLICY_ALLOW_MAX ||
	    json_array_size(ports) > TEMPLATE_LISTEN_PORTS_MAX ||
	    strlen(id) >= sizeof(t.source_sandbox_id) ||
	    (strcmp(mode, "observe") != 0 && strcmp(mode, "enforce") != 0))
		return cl_error("answer from %s is not a template policy", c->ep.display);
	t.policy.mode = strcmp(mode, "enforce") == 0 ? POLICY_ENFORCE : POLICY_OBSERVE;
	memcpy(t.source_sandbox_id, id, strlen(id) + 1);
	if (json_array_size(allow) > 0 &&
	    !(t.policy.allow = calloc(json_array_size(allow), sizeof(*t.policy.allow))))
		return cl_error("out of memory");
	json_array_foreach(allow, i, e) {
		const char *pat = json_string_value(json_object_get(e, "pattern"));
		const json_t *port = json_object_get(e, "port");
		json_int_t p = json_is_integer(port) ? json_integer_value(port) : 0;

		if (!pat || strlen(pat) >= sizeof(t.policy.allow[i].pattern) ||
		    !(json_is_null(port) || json_is_integer(port)) || p < 0 || p > 65535) {
			template_state_clear(&t);
			return cl_error("answer from %s has a malformed allowlist entry",
					c->ep.display);
		}
		memcpy(t.policy.allow[i].pattern, pat, strlen(pat) + 1);
		t.policy.allow[i].port = (uint16_t)p;
		t.policy.n_allow = i + 1;
	}
	json_array_foreach(ports, i, e) {
		json_int_t p = json_integer_value(e);

		if (!json_is_integer(e) || p < 1 || p > 65535) {
			template_state_clear(&t);
			return cl_error("answer from %s has a malformed listen port", c->ep.display);
		}
		t.listen_ports[t.n_listen_ports++] = (uint16_t)p;
	}
	*ret = t;
	return CL_EXIT_OK;
}

static json_t *cl_template_allow_json(const struct template_state *t)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < t->policy.n_allow; i++) {
		const struct policy_entry *e = &t->policy.allow[i];

		if (json_array_append_new(arr, json_pack("{s:s, s:o}", "pattern", e->pattern, "port",
							 e->port ? json_integer(e->port)
								 : json_null())) != 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

static json_t *cl_template_ports_json(const struct template_state *t)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < t->n_listen_ports; i++)
		if (json_array_append_new(arr, json_integer(t->listen_ports[i])) != 0) {
			json_decref(arr);
			return NULL;
		}
	return arr;
}

/* The "policy" object of POST /v1/sandboxes. */
static json_t *cl_template_policy_json(const struct template_state *t)
{
	return json_pack("{s:s, s:o, s:o}", "mode",
			 t->policy.mode == POLICY_ENFORCE ? "enforce" : "observe", "allowlist",
			 cl_template_allow_json(t), "listen_ports", cl_template_ports_json(t));
}

/* What `template show` and `template save` print (--json: as is). */
static json_t *cl_template_json(const char *path, size_t size, const struct template_state *t)
{
	char when[64];

	cl_format_time_us(t->created_at_us, when, sizeof(when));
	return json_pack("{s:s, s:I, s:i, s:s, s:s, s:s, s:o, s:o}", "file", path, "bytes",
			 (json_int_t)size, "format_version",
			 (int)(t->version ? t->version : TEMPLATE_FILE_VERSION),
			 "source_sandbox_id", t->source_sandbox_id, "created_at", when, "mode",
			 t->policy.mode == POLICY_ENFORCE ? "enforce" : "observe", "allowlist",
			 cl_template_allow_json(t), "listen_ports", cl_template_ports_json(t));
}

static const char *const cl_template_keys[] = {
	"file", "bytes", "format_version", "source_sandbox_id", "created_at", "mode",
	"listen_ports", NULL,
};

static const struct ctl_column cl_template_allow_cols[] = {
	{ "PATTERN", "pattern" },
	{ "PORT", "port" },
};

static int cl_print_template(const struct cl *c, const json_t *obj)
{
	int ex;

	if (c->json)
		return cl_print_json(obj);
	if ((ex = cl_print_view(obj, cl_template_keys, false)) != CL_EXIT_OK)
		return ex;
	return cl_print_section(c, obj, "allowlist", "allowlist", cl_template_allow_cols,
				CL_NCOLS(cl_template_allow_cols));
}

static int cl_template_save(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	struct template_state st = { 0 };
	char path[PATH_MAX], err[TEMPLATE_ERR_MAX];
	const char *pos[2];
	struct ctl_target t;
	json_t *ans = NULL, *out = NULL;
	size_t size = 0;
	int ex, r;

	if ((ex = cl_parse_args(c, cmd, argc, argv, NULL, pos, 2, 2, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	if ((r = template_file_path(pos[1], path, sizeof(path))) < 0)
		return cl_error("%s: %s", pos[1], strerror(-r));
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/sandboxes");
	ctl_target_add_segment(&t, pos[0]);
	ctl_target_add(&t, "/template");
	if ((ex = cl_call_object(c, "GET", &t, NULL, &ans, NULL)) != CL_EXIT_OK ||
	    (ex = cl_template_from_json(c, ans, &st)) != CL_EXIT_OK)
		goto out;
	if (template_file_write(path, &st, &size, err, sizeof(err)) < 0) {
		ex = cl_error("%s", err);
		goto out;
	}
	out = cl_template_json(path, size, &st);
	ex = out ? cl_print_template(c, out) : cl_error("out of memory");
out:
	json_decref(out);
	json_decref(ans);
	template_state_clear(&st);
	return ex;
}

static int cl_template_show(struct cl *c, const struct cl_command *cmd, int argc, char **argv)
{
	struct template_state st = { 0 };
	char path[PATH_MAX], err[TEMPLATE_ERR_MAX];
	const char *pos[1];
	json_t *out = NULL;
	struct stat sb;
	int ex, r;

	if ((ex = cl_parse_args(c, cmd, argc, argv, NULL, pos, 1, 1, NULL)) != 0)
		return ex == CL_HELP_DONE ? CL_EXIT_OK : ex;
	if ((r = template_file_path(pos[0], path, sizeof(path))) < 0)
		return cl_error("%s: %s", pos[0], strerror(-r));
	if (template_file_read(path, &st, err, sizeof(err)) < 0)
		return cl_error("%s", err);
	out = cl_template_json(path, stat(path, &sb) == 0 ? (size_t)sb.st_size : 0, &st);
	ex = out ? cl_print_template(c, out) : cl_error("out of memory");
	json_decref(out);
	template_state_clear(&st);
	return ex;
}

/*
 * sandbox create --template IMAGE: IMAGE.policy.pb, if there is one, as the
 * body's "policy".  No file: no policy (the default: observe mode, empty
 * allowlist), as for a template name that is not a path.  Any other
 * problem with the file refuses the create before the broker is asked.
 */
static int cl_template_policy_for_create(const char *image, json_t *body)
{
	struct template_state st = { 0 };
	char path[PATH_MAX], err[TEMPLATE_ERR_MAX];
	json_t *policy;
	int r;

	if ((r = template_file_path(image, path, sizeof(path))) < 0)
		return cl_error("--template %s: %s", image, strerror(-r));
	r = template_file_read(path, &st, err, sizeof(err));
	if (r == -ENOENT)
		return CL_EXIT_OK;
	if (r < 0)
		return cl_error("%s; no sandbox created", err);
	policy = cl_template_policy_json(&st);
	template_state_clear(&st);
	if (!policy || json_object_set_new(body, "policy", policy) != 0)
		return cl_error("out of memory");
	return CL_EXIT_OK;
}

#define CL_VALUE_HELP \
	"The value is read from standard input (or --value-file FILE), never from the\n" \
	"command line.  Exactly one trailing newline (\\n or \\r\\n) is removed; an empty\n" \
	"value is refused; at most 16384 bytes of UTF-8.  On a terminal it is read as\n" \
	"one line without echo.  The value is never printed, logged or written to a\n" \
	"file by miosactl, and the API never returns it.\n"

static const struct cl_command cl_commands[] = {
	{ "sandbox", "create", cl_sandbox_create,
	  "sandbox create [--tenant T] [--user-id U] [--workspace-id W] [--external-user-id U]\n"
	  "                [--external-workspace-id W] [--template IMAGE]\n"
	  "                [--vsock-uds PATH | --vsock-cid CID]",
	  "Create a sandbox and print its id (--json: {\"id\": ...}).  The four\n"
	  "attribution ids are immutable after creation; the scope walk uses them.\n\n"
	  "  --tenant T                  owning tenant (default $MIOSA_TENANT, else the\n"
	  "                              broker's: \"default\" on the Unix socket, the\n"
	  "                              API key's tenant over --url)\n"
	  "  --user-id U, --workspace-id W\n"
	  "                              the platform's own user / workspace ids\n"
	  "  --external-user-id U, --external-workspace-id W\n"
	  "                              the end user / workspace ids of your product\n"
	  "  --template IMAGE            VM image the sandbox is made from; when\n"
	  "                              IMAGE.policy.pb exists (`template save`), the\n"
	  "                              sandbox starts with that policy: mode,\n"
	  "                              allowlist, listen ports.  A template saved in\n"
	  "                              enforce mode starts in enforce mode (`network\n"
	  "                              observe` right after creation changes that).\n"
	  "                              A corrupt or newer-version file is refused and\n"
	  "                              no sandbox is created.  No such file: the\n"
	  "                              default policy (observe, empty allowlist)\n"
	  "  --vsock-uds PATH            hybrid vsock: the broker listens on PATH_1024\n"
	  "  --vsock-cid CID             kernel vhost-vsock guest CID\n" },
	{ "sandbox", "show", cl_sandbox_show, "sandbox show SANDBOX",
	  "Show one sandbox: tenant, attribution ids, template, transport, creation time.\n" },
	{ "sandbox", "ls", cl_sandbox_ls,
	  "sandbox ls [--tenant T] [--external-user-id U] [--external-workspace-id W]",
	  "List sandboxes, optionally filtered (strict equality on every filter).\n"
	  "--tenant defaults to $MIOSA_TENANT; without either, the Unix socket lists\n"
	  "every tenant's sandboxes and --url the API key's tenant's.\n" },
	{ "sandbox", "ca", cl_sandbox_ca, "sandbox ca SANDBOX",
	  "Print the sandbox's CA certificate (PEM, public) for baking into images:\n"
	  "the guest trusts it, and the broker signs the certificates it shows the\n"
	  "guest with its key, which never leaves the broker.  The output is the PEM\n"
	  "exactly (`miosactl sandbox ca SBX > ca.pem`); --json prints the API's\n"
	  "answer (certificate_pem, not_before, not_after, sha256_fingerprint).\n" },
	{ "sandbox", "rm", cl_sandbox_rm, "sandbox rm SANDBOX",
	  "Delete a sandbox with its sandbox-scope secrets and placeholders.  Prints\n"
	  "nothing on success.\n" },

	{ "secrets", "set", cl_secrets_set,
	  "secrets set SANDBOX NAME --expose-as ENV [--host PATTERN]... [--allow-cleartext]\n"
	  "                [--value-file FILE]\n"
	  "       miosactl secrets set --scope SCOPE --scope-id ID [--tenant T] NAME --expose-as ENV\n"
	  "                [--host PATTERN]... [--allow-cleartext] [--value-file FILE]",
	  "Create or replace a secret; prints it (never its value) with \"result: created\"\n"
	  "or \"replaced\" and, for the sandbox scope, the placeholder the guest sees.\n"
	  "A replacement keeps every placeholder already issued.\n\n"
	  "  --expose-as ENV        env variable the guest gets the placeholder in\n"
	  "  --host PATTERN         swap only for requests to this host (exact or *.suffix);\n"
	  "                         repeatable; none: any host\n"
	  "  --allow-cleartext      also swap into plain-HTTP requests (off by default)\n"
	  "  --value-file FILE      read the value from FILE instead of standard input\n\n"
	  CL_VALUE_HELP "\n" CL_SCOPE_HELP, true },
	{ "secrets", "ls", cl_secrets_ls,
	  "secrets ls SANDBOX\n"
	  "       miosactl secrets ls --scope SCOPE --scope-id ID [--tenant T]",
	  "With SANDBOX: the sandbox's resolved bindings, one per env name, after the\n"
	  "scope walk (ENV PLACEHOLDER SCOPE SCOPE_ID NAME VERSION HOSTS; SCOPE is the\n"
	  "winning scope).  With --scope: the secrets stored at that one scope.\n"
	  "HOSTS \"-\" means any host.\n\n" CL_SCOPE_HELP },
	{ "secrets", "rotate", cl_secrets_rotate,
	  "secrets rotate SANDBOX NAME [--value-file FILE]\n"
	  "       miosactl secrets rotate --scope SCOPE --scope-id ID [--tenant T] NAME\n"
	  "                [--value-file FILE]",
	  "Give a secret a new value: the version goes up by one, every placeholder\n"
	  "stays the same, and the next request carrying it gets the new value.\n\n"
	  CL_VALUE_HELP "\n" CL_SCOPE_HELP, true },
	{ "secrets", "rm", cl_secrets_rm,
	  "secrets rm SANDBOX NAME\n"
	  "       miosactl secrets rm --scope SCOPE --scope-id ID [--tenant T] NAME",
	  "Delete a secret and every placeholder bound to it.  Prints nothing on\n"
	  "success.\n\n" CL_SCOPE_HELP },

	{ "apikey", "create", cl_apikey_create, "apikey create [--tenant T] NAME",
	  "Create an API key for the TCP listener.  The key (msk_live_...) is printed\n"
	  "on standard output this one time only (the broker keeps a hash); the note\n"
	  "with its id goes to standard error.  --json prints the whole answer.\n"
	  "--tenant defaults to $MIOSA_TENANT, else \"default\".\n" },
	{ "apikey", "ls", cl_apikey_ls, "apikey ls [--tenant T]",
	  "List a tenant's API keys (id, name, prefix, times; never the key).\n" },
	{ "apikey", "revoke", cl_apikey_revoke, "apikey revoke [--tenant T] ID",
	  "Revoke an API key: requests with it are refused (401) from now on.\n"
	  "Revoking twice succeeds.\n" },

	{ "tenant", "create", cl_tenant_create, "tenant create ID [--name NAME]",
	  "Create a tenant (Unix socket only).  ID is [a-z0-9][a-z0-9_-]{0,63}.\n" },
	{ "tenant", "ls", cl_tenant_ls, "tenant ls", "List every tenant (Unix socket only).\n" },
	{ "tenant", "show", cl_tenant_show, "tenant show [TENANT]",
	  "Show a tenant and its settings.  TENANT defaults to $MIOSA_TENANT, else\n"
	  "\"default\".\n" },
	{ "tenant", "settings", cl_tenant_settings,
	  "tenant settings [TENANT] [--allow-end-user-scoped-credentials on|off]",
	  "Show a tenant's settings, or change them.  With the setting off, secrets at\n"
	  "scope external_user are refused (403 end_user_credentials_disabled).\n"
	  "TENANT defaults to $MIOSA_TENANT, else \"default\".\n" },

	{ "network", "status", cl_network_status, "network status SANDBOX",
	  "Show the sandbox's network policy: mode (observe: everything allowed and\n"
	  "recorded; enforce: only the allowlist), the allowlist, the hosts observed\n"
	  "so far and the pending hosts (blocked in enforce mode).  PORT \"-\" on an\n"
	  "allowlist entry means any port.\n" },
	{ "network", "pending", cl_network_pending, "network pending SANDBOX",
	  "List the hosts blocked in enforce mode (host, port, count, first/last\n"
	  "seen), so they can be allowed.  Allowing a host removes it from here.\n" },
	{ "network", "allow", cl_network_edit, "network allow SANDBOX PATTERN [--port P]",
	  "Add PATTERN to the allowlist: an exact name (api.openai.com), a wildcard\n"
	  "(*.openai.com: any name strictly below openai.com, NOT openai.com itself)\n"
	  "or an IP literal; --port limits it to one port (default: any port).\n"
	  "Prints \"allowed\" or \"already allowed\".  Takes effect on the next\n"
	  "connection and the next request of open keep-alive connections.\n" },
	{ "network", "deny", cl_network_edit, "network deny SANDBOX PATTERN [--port P]",
	  "Remove PATTERN from the allowlist (without --port: every entry of that\n"
	  "pattern).  It is not a deny rule: in observe mode the host stays\n"
	  "reachable.  Fails (not_found) when nothing matched.\n" },
	{ "network", "lockdown", cl_network_mode, "network lockdown SANDBOX",
	  "Switch to enforce mode with every observed host added to the allowlist,\n"
	  "atomically.  Anything else is then blocked (HTTP 403 with\n"
	  "MIOSA-Egress-Deny) and listed by `network pending`.\n" },
	{ "network", "observe", cl_network_mode, "network observe SANDBOX",
	  "Switch back to observe mode; the allowlist is kept for a later lockdown.\n"
	  "Use it right after creating a sandbox from a template snapshotted in\n"
	  "enforce mode.\n" },

	{ "template", "save", cl_template_save, "template save SANDBOX IMAGE",
	  "Write the sandbox's policy state (mode, allowlist, listen ports) beside the\n"
	  "VM image, as IMAGE.policy.pb, and print what was written.  IMAGE need not\n"
	  "exist yet (its directory must); an existing IMAGE.policy.pb is replaced\n"
	  "atomically.  The file (mode 0644) holds policy only, never a secret or a\n"
	  "placeholder: versioned protobuf with a SHA-256 checksum.  `sandbox create\n"
	  "--template IMAGE` loads it.\n" },
	{ "template", "show", cl_template_show, "template show IMAGE",
	  "Print the policy saved in IMAGE.policy.pb: format version, source sandbox,\n"
	  "time saved, mode, listen ports and the allowlist (PORT \"-\": any port).\n"
	  "A corrupt file (truncated, bad checksum, not a template) or one of a newer\n"
	  "format version is refused with a message naming the file (exit 1).\n" },

	{ "audit", "ls", cl_audit_ls,
	  "audit ls [--sandbox S] [--host H] [--since T] [--until T] [--status N]\n"
	  "                [--action allow|deny|error] [--external-user-id U]\n"
	  "                [--external-workspace-id W] [--tenant T] [--limit N] [--cursor C]",
	  "List audit rows, newest first, one line each:\n"
	  "  TIME SANDBOX [audit] ACTION HOST[:PORT] HTTP STATUS [secrets=NAMES] [reason=R]\n"
	  "Every filter is strict equality (--external-user-id alice@ matches only\n"
	  "\"alice@\").  --since/--until take a duration back from now (30s, 5m, 24h,\n"
	  "7d) or an RFC 3339 time.  --limit is 1..1000 (default 100); when there are\n"
	  "more rows, stderr says which --cursor gives the next page.  --json prints\n"
	  "the API's answer (rows and next_cursor).  Over --url only the API key's\n"
	  "tenant's rows exist.\n" },
	{ "audit", "export", cl_audit_export,
	  "audit export [--format jsonl|csv] [--sandbox S] [--host H] [--since T] [--until T]\n"
	  "                [--status N] [--action A] [--external-user-id U]\n"
	  "                [--external-workspace-id W] [--tenant T]",
	  "Write every matching row to standard output, newest first, as JSON lines\n"
	  "(default) or CSV (RFC 4180, header line; fields a spreadsheet would run as\n"
	  "a formula are prefixed with ').  At most 64 MiB per export: narrow it with\n"
	  "--since/--until.\n" },
	{ "audit", "tail", cl_audit_tail,
	  "audit tail [--lines N] [--sandbox S] [--host H] [--since T] [--status N]\n"
	  "                [--action A] [--external-user-id U] [--external-workspace-id W]\n"
	  "                [--tenant T]",
	  "Print the last --lines matching rows (default 10, 0 for none), oldest\n"
	  "first, then every new row as it is committed, in the `audit ls` format\n"
	  "(--json: the broker's JSON lines as they come), until interrupted.  The\n"
	  "rows are streamed (GET /v1/audit/tail): an HTTP request shows once its\n"
	  "response was relayed, with its status (HTTP -: no completion within a few\n"
	  "seconds).  A row committed while the last rows are read is shown once:\n"
	  "the broker replays what came after the newest row printed (at most 1000\n"
	  "rows; a note on standard error says when there were more).  Exits 1 if\n"
	  "the broker ends the stream or drops a tail that fell behind.\n" },
	{ "audit", "verify", cl_audit_verify, "audit verify",
	  "Check the audit log's hash chain (Unix socket only).  Exit status 0 when\n"
	  "every row links to the one before and its hash recomputes; 1 with the\n"
	  "first bad row's id when the chain is broken (a row edited, inserted,\n"
	  "reordered or deleted).  Deleting the newest rows is only detected by\n"
	  "comparing the printed head with one kept elsewhere.\n" },

	{ "exec", "", cl_exec,
	  "exec SANDBOX [--timeout S] [--env NAME=VALUE]... [--cwd DIR] -- CMD [ARG]...",
	  "Run CMD in the sandbox's guest (its agent must be connected) with the\n"
	  "placeholder env, and relay its output: the command's stdout and stderr\n"
	  "bytes go raw to ours (up to 2 MiB together; the rest is cut).  Standard\n"
	  "input, when it is not a terminal, is sent as the command's stdin (up to\n"
	  "32 KiB; use </dev/null for none).\n\n"
	  "  --timeout S        the guest kills the command after S seconds (default 300)\n"
	  "  --env NAME=VALUE   extra environment variable (repeatable)\n"
	  "  --cwd DIR          working directory (absolute)\n"
	  "  --json             print the API's answer (base64 output) instead\n\n"
	  "Exit status: the command's own; 128+N when killed by signal N; 124 on\n"
	  "timeout; 127 when it could not start; 1 for API or connection errors\n"
	  "(e.g. guest_not_connected); 2 usage error.\n" },

	{ "health", "", cl_health, "health",
	  "Ask the broker whether it is up; prints its status and version.\n" },
};

#define CL_NCOMMANDS (sizeof(cl_commands) / sizeof(cl_commands[0]))

/*
 * A command's usage lines under prefix: the "miosactl " a second form
 * starts with is replaced by prefix; continuation lines stay as they are.
 */
static void cl_print_usage_lines(FILE *f, const char *usage, const char *prefix)
{
	static const char second[] = "       miosactl ";
	const char *line = usage;

	while (*line) {
		size_t n = strcspn(line, "\n");

		if (line == usage)
			fprintf(f, "%s%.*s\n", prefix, (int)n, line);
		else if (strncmp(line, second, sizeof(second) - 1) == 0)
			fprintf(f, "%s%.*s\n", prefix, (int)(n - (sizeof(second) - 1)),
				line + sizeof(second) - 1);
		else
			fprintf(f, "%.*s\n", (int)n, line);
		line += n;
		if (*line == '\n')
			line++;
	}
}

static void cl_print_main_usage(FILE *f)
{
	fprintf(f, "Usage: miosactl [--socket PATH | --url URL] [--json] [--timeout SECONDS] COMMAND ...\n");
}

static void cl_print_main_help(void)
{
	cl_print_main_usage(stdout);
	printf("\nControl a miosa broker through its control API (docs/api.md).\n\nCommands:\n");
	for (size_t i = 0; i < CL_NCOMMANDS; i++)
		cl_print_usage_lines(stdout, cl_commands[i].usage, "  ");
	printf("\n"
	       "Every command takes --help and --json.\n\n"
	       "Global options:\n"
	       "  --socket PATH      the broker's control socket (host admin, every tenant;\n"
	       "                     default $MIOSA_SOCKET, else " CL_DEFAULT_SOCKET ")\n"
	       "  --url URL          http://HOST:PORT of the broker's TCP listener (--listen);\n"
	       "                     default $MIOSA_URL.  Needs MIOSA_API_KEY.  There is no TLS\n"
	       "                     yet: the key crosses the network in clear, so use it on\n"
	       "                     loopback or a network you trust\n"
	       "  --json             print the API's JSON (indented, keys sorted) instead of\n"
	       "                     tables\n"
	       "  --timeout SECONDS  give up on the broker after this long (default 30)\n"
	       "  --help, --version\n\n"
	       "Environment:\n"
	       "  MIOSA_SOCKET   control socket path (used when --socket/--url are not given)\n"
	       "  MIOSA_URL      TCP listener URL (likewise; setting both is an error)\n"
	       "  MIOSA_API_KEY  msk_live_... key, sent as \"Authorization: Bearer\" over --url\n"
	       "                 only (never over the Unix socket, never printed)\n"
	       "  MIOSA_TENANT   default for --tenant (else \"default\"; for sandbox create\n"
	       "                 and ls, else the broker's choice)\n\n"
	       "Secret values are read from standard input or --value-file, never from the\n"
	       "command line.\n\n"
	       "Exit status: 0 success; 1 error from the API, the connection, or the input\n"
	       "(message on stderr: \"miosactl: MESSAGE (CODE, HTTP STATUS)\" for API errors);\n"
	       "2 usage error.\n");
}

/* `miosactl GROUP` or `miosactl GROUP --help`: the group's commands. */
static void cl_print_group(FILE *f, const char *group)
{
	fprintf(f, "Usage:\n");
	for (size_t i = 0; i < CL_NCOMMANDS; i++)
		if (strcmp(cl_commands[i].group, group) == 0)
			cl_print_usage_lines(f, cl_commands[i].usage, "  miosactl ");
	fprintf(f, "Try 'miosactl %s COMMAND --help'.\n", group);
}

static bool cl_is_group(const char *s)
{
	for (size_t i = 0; i < CL_NCOMMANDS; i++)
		if (strcmp(cl_commands[i].group, s) == 0)
			return true;
	return false;
}

static const struct cl_command *cl_find(const char *group, const char *verb)
{
	for (size_t i = 0; i < CL_NCOMMANDS; i++)
		if (strcmp(cl_commands[i].group, group) == 0 &&
		    strcmp(cl_commands[i].verb, verb ? verb : "") == 0)
			return &cl_commands[i];
	return NULL;
}

/* ------------------------------------------------------------------ */
/* main                                                                */

static int cl_main_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int cl_main_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("miosactl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	cl_print_main_usage(stderr);
	fputs("Try 'miosactl --help'.\n", stderr);
	return CL_EXIT_USAGE;
}

static const char *cl_env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

/* Where to connect: --socket/--url, else MIOSA_URL/MIOSA_SOCKET, else the default. */
static int cl_pick_endpoint(struct cl *c, const char *socket_path, const char *url)
{
	const char *env_sock = cl_env("MIOSA_SOCKET"), *env_url = cl_env("MIOSA_URL");
	char err[CTL_ERR_MAX];
	int r;

	if (socket_path && url)
		return cl_main_usage_error("--socket and --url exclude each other");
	if (!socket_path && !url) {
		if (env_sock && env_url)
			return cl_main_usage_error(
				"MIOSA_SOCKET and MIOSA_URL are both set; unset one or pass --socket/--url");
		url = env_url;
		socket_path = env_url ? NULL : (env_sock ? env_sock : CL_DEFAULT_SOCKET);
	}
	r = url ? ctl_endpoint_url(url, &c->ep, err, sizeof(err))
		: ctl_endpoint_unix(socket_path, &c->ep, err, sizeof(err));
	if (r < 0)
		return cl_main_usage_error("%s", err);
	c->api_key = cl_env("MIOSA_API_KEY");
	return 0;
}

/* Global options up to COMMAND.  Returns -1 to go on, else an exit status. */
static int cl_parse_global(struct cl *c, int argc, char **argv, int *ret_next)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "url", required_argument, NULL, 'u' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *socket_path = NULL, *url = NULL;
	uint32_t secs;
	int n, r;

	opterr = 0;
	while ((n = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
		switch (n) {
		case 's':
			socket_path = optarg;
			break;
		case 'u':
			url = optarg;
			break;
		case 'j':
			c->json = true;
			break;
		case 't':
			if (!cl_parse_u32(optarg, 1, 3600, &secs))
				return cl_main_usage_error("--timeout '%s' is not 1..3600 seconds",
							   optarg);
			c->timeout_ms = (int)secs * 1000;
			break;
		case 'h':
			cl_print_main_help();
			return CL_EXIT_OK;
		case 'V':
			printf("miosactl %s\n", MIOSA_VERSION);
			return CL_EXIT_OK;
		default:
			return cl_main_usage_error("unknown option or missing value: %s",
						   argv[optind - 1]);
		}
	}
	if ((r = cl_pick_endpoint(c, socket_path, url)) != 0)
		return r;
	*ret_next = optind;
	return -1;
}

static int cl_finish(int ex)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "miosactl: cannot write to standard output: %s\n", strerror(errno));
		return ex == CL_EXIT_OK ? CL_EXIT_FAIL : ex;
	}
	return ex;
}

int main(int argc, char **argv)
{
	struct cl c = { .timeout_ms = CTL_CLIENT_DEFAULT_TIMEOUT_MS };
	const struct cl_command *cmd;
	const char *group, *verb;
	int next = 0, r, sub;

	json_set_alloc_funcs(cl_wipe_malloc, cl_wipe_free);
	if (sodium_init() < 0) {
		fprintf(stderr, "miosactl: libsodium failed to initialise\n");
		return CL_EXIT_FAIL;
	}
	c.tenant_env = cl_env("MIOSA_TENANT");
	c.tenant = c.tenant_env ? c.tenant_env : CL_DEFAULT_TENANT;
	if ((r = cl_parse_global(&c, argc, argv, &next)) >= 0)
		return cl_finish(r);
	if (next >= argc)
		return cl_main_usage_error("missing COMMAND");
	group = argv[next];
	if (strcmp(group, "help") == 0) {
		cl_print_main_help();
		return cl_finish(CL_EXIT_OK);
	}
	if (!cl_is_group(group))
		return cl_main_usage_error("unknown command '%s'", group);
	verb = next + 1 < argc ? argv[next + 1] : NULL;
	cmd = cl_find(group, "");
	if (cmd) {
		sub = next; /* a command without a verb (health): argv[sub] is its name */
	} else {
		if (!verb || strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0) {
			cl_print_group(verb ? stdout : stderr, group);
			return cl_finish(verb ? CL_EXIT_OK : CL_EXIT_USAGE);
		}
		cmd = cl_find(group, verb);
		if (!cmd) {
			fprintf(stderr, "miosactl: unknown command '%s %s'\n", group, verb);
			cl_print_group(stderr, group);
			return CL_EXIT_USAGE;
		}
		sub = next + 1;
	}
	return cl_finish(cmd->run(&c, cmd, argc - sub, argv + sub));
}
