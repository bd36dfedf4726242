#include "guest_exec.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

__attribute__((format(printf, 3, 4)))
static int gx_fail(char *err, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, size, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static bool gx_env_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > WIRE_ENV_NAME_MAX ||
	    !(s[0] == '_' || ((s[0] | 0x20) >= 'a' && (s[0] | 0x20) <= 'z')))
		return false;
	for (size_t i = 1; i < n; i++) {
		char c = s[i];

		if (!(c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')))
			return false;
	}
	return true;
}

/* A JSON string without NUL of at most max bytes; NULL otherwise. */
static const char *gx_string(const json_t *v, size_t max)
{
	const char *s = json_string_value(v);

	if (!s || json_string_length(v) != strlen(s) || json_string_length(v) > max)
		return NULL;
	return s;
}

static int gx_argv(struct guest_exec_request *q, const json_t *a, char *err, size_t size)
{
	size_t n = json_array_size(a);

	if (!json_is_array(a) || n == 0 || n > WIRE_ARGV_MAX)
		return gx_fail(err, size, "field 'argv' must be an array of 1..%u strings",
			       WIRE_ARGV_MAX);
	if (!(q->argv = calloc(n, sizeof(*q->argv))))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *s = gx_string(json_array_get(a, i), WIRE_ARG_MAX);

		if (!s || (i == 0 && !*s))
			return gx_fail(err, size, "argv[%zu] must be a string of %s1..%u bytes "
				       "without NUL", i, i == 0 ? "" : "0 or ", WIRE_ARG_MAX);
		if (!(q->argv[i] = strdup(s)))
			return -ENOMEM;
		q->msg.n_argv = i + 1;
	}
	q->msg.argv = q->argv;
	return 0;
}

static int gx_env(struct guest_exec_request *q, const json_t *o, char *err, size_t size)
{
	size_t n = json_object_size(o), i = 0;
	const char *k;
	json_t *v;

	if (!json_is_object(o) || n > WIRE_ENV_MAX)
		return gx_fail(err, size, "field 'env' must be an object of at most %u strings",
			       WIRE_ENV_MAX);
	if (n == 0)
		return 0;
	q->env_storage = calloc(n, sizeof(*q->env_storage));
	q->env = calloc(n, sizeof(*q->env));
	if (!q->env_storage || !q->env)
		return -ENOMEM;
	json_object_foreach((json_t *)o, k, v) {
		const char *s = gx_string(v, WIRE_ENV_VALUE_MAX);

		if (!gx_env_name_ok(k))
			return gx_fail(err, size, "env name '%.*s' must match "
				       "[A-Za-z_][A-Za-z0-9_]{0,127}", GUEST_EXEC_QUOTE_MAX, k);
		if (!s)
			return gx_fail(err, size, "env '%s' must be a string of at most %u bytes "
				       "without NUL", k, WIRE_ENV_VALUE_MAX);
		miosa__env_var__init(&q->env_storage[i]);
		q->env_storage[i].name = (char *)k;   /* the json outlives msg: see below */
		q->env_storage[i].value = (char *)s;
		q->env[i] = &q->env_storage[i];
		i++;
	}
	q->msg.n_env = i;
	q->msg.env = q->env;
	return 0;
}

static int gx_stdin(struct guest_exec_request *q, const json_t *v, char *err, size_t size)
{
	const char *s = json_string_value(v);
	size_t len = json_string_length(v), out_len;

	if (!s || len > sodium_base64_ENCODED_LEN(GUEST_EXEC_STDIN_MAX,
						  sodium_base64_VARIANT_ORIGINAL))
		return gx_fail(err, size, "field 'stdin' must be base64 of at most %u bytes",
			       GUEST_EXEC_STDIN_MAX);
	if (len == 0)
		return 0;
	if (!(q->stdin_data = malloc(len)))
		return -ENOMEM;
	if (sodium_base642bin(q->stdin_data, len, s, len, NULL, &out_len, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0 || out_len > GUEST_EXEC_STDIN_MAX)
		return gx_fail(err, size, "field 'stdin' must be standard base64 (with padding) "
			       "of at most %u bytes", GUEST_EXEC_STDIN_MAX);
	q->msg.stdin_data.data = q->stdin_data;
	q->msg.stdin_data.len = out_len;
	return 0;
}

static int gx_fields(struct guest_exec_request *q, json_t *root, char *err, size_t size)
{
	static const char *const known[] = { "argv", "env", "cwd", "stdin", "timeout_ms" };
	const char *k, *cwd;
	json_t *v;
	int r;

	json_object_foreach(root, k, v) {
		bool ok = false;

		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			ok |= strcmp(k, known[i]) == 0;
		if (!ok)
			return gx_fail(err, size, "unknown field '%.*s'", GUEST_EXEC_QUOTE_MAX, k);
	}
	if ((r = gx_argv(q, json_object_get(root, "argv"), err, size)) != 0)
		return r;
	if ((v = json_object_get(root, "env")) && (r = gx_env(q, v, err, size)) != 0)
		return r;
	if ((v = json_object_get(root, "cwd"))) {
		cwd = gx_string(v, WIRE_CWD_MAX);
		if (!cwd || cwd[0] != '/')
			return gx_fail(err, size, "field 'cwd' must be an absolute path of at most "
				       "%u bytes", WIRE_CWD_MAX);
		if (!(q->cwd = strdup(cwd)))
			return -ENOMEM;
		q->msg.cwd = q->cwd;
	}
	if ((v = json_object_get(root, "stdin")) && (r = gx_stdin(q, v, err, size)) != 0)
		return r;
	q->msg.timeout_ms = GUEST_EXEC_DEFAULT_TIMEOUT_MS;
	if ((v = json_object_get(root, "timeout_ms"))) {
		json_int_t t = json_integer_value(v);

		if (!json_is_integer(v) || t < 0 || t > (json_int_t)WIRE_TIMEOUT_MS_MAX)
			return gx_fail(err, size, "field 'timeout_ms' must be an integer "
				       "0..%u", WIRE_TIMEOUT_MS_MAX);
		if (t > 0)
			q->msg.timeout_ms = (uint32_t)t;
	}
	return 0;
}

/*
 * env names and values point into the parsed JSON; the env entries are
 * copied to owned memory at the end so the document can go.
 */
static int gx_own_env(struct guest_exec_request *q)
{
	for (size_t i = 0; i < q->msg.n_env; i++) {
		char *name = strdup(q->env_storage[i].name);
		char *value = strdup(q->env_storage[i].value);

		if (!name || !value) {
			free(name);
			free(value);
			for (size_t j = i; j < q->msg.n_env; j++)
				q->env_storage[j].name = q->env_storage[j].value = NULL;
			return -ENOMEM;
		}
		q->env_storage[i].name = name;
		q->env_storage[i].value = value;
	}
	return 0;
}

int guest_exec_parse(const uint8_t *body, size_t len, struct guest_exec_request **ret_req,
		     char *err, size_t err_size)
{
	struct guest_exec_request *q = calloc(1, sizeof(*q));
	json_error_t jerr;
	json_t *root;
	int r;

	if (!q)
		return -ENOMEM;
	miosa__exec_request__init(&q->msg);
	root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		r = gx_fail(err, err_size, "the body must be one JSON object");
		goto out;
	}
	r = gx_fields(q, root, err, err_size);
	if (r == 0)
		r = gx_own_env(q);
	else
		q->msg.n_env = 0; /* entries still point into root: nothing owned yet */
out:
	json_decref(root);
	if (r != 0) {
		guest_exec_request_free(q);
		return r;
	}
	*ret_req = q;
	return 0;
}

void guest_exec_request_free(struct guest_exec_request *q)
{
	if (!q)
		return;
	for (size_t i = 0; i < q->msg.n_argv; i++)
		free(q->argv[i]);
	free(q->argv);
	for (size_t i = 0; i < q->msg.n_env; i++) {
		if (q->env_storage[i].value)
			sodium_memzero(q->env_storage[i].value, strlen(q->env_storage[i].value));
		free(q->env_storage[i].name);
		free(q->env_storage[i].value);
	}
	free(q->env_storage);
	free(q->env);
	if (q->stdin_data)
		sodium_memzero(q->stdin_data, q->msg.stdin_data.len);
	free(q->stdin_data);
	free(q->cwd);
	free(q);
}

static json_t *gx_base64(const uint8_t *p, size_t n)
{
	size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
	char *b = malloc(cap);
	json_t *s;

	if (!b)
		return NULL;
	sodium_bin2base64(b, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
	s = json_string(b);
	free(b);
	return s;
}

int guest_exec_result_json(const struct guest_exec_result *res, char **ret_json,
			   size_t *ret_len)
{
	json_t *o = json_object();
	char *text;
	size_t n;
	int bad = !o;

	switch (res->outcome) {
	case GUEST_EXEC_EXITED:
		bad |= !o || json_object_set_new(o, "exit_code", json_integer(res->value));
		break;
	case GUEST_EXEC_SIGNALED:
		bad |= !o || json_object_set_new(o, "signal", json_integer(res->value));
		break;
	case GUEST_EXEC_TIMED_OUT:
		bad |= !o || json_object_set_new(o, "timed_out", json_true());
		break;
	case GUEST_EXEC_START_ERROR:
		bad |= !o || json_object_set_new(o, "start_error", json_string(res->start_error));
		break;
	}
	bad = bad || json_object_set_new(o, "stdout", gx_base64(res->out, res->out_len)) ||
	      json_object_set_new(o, "stderr", gx_base64(res->err, res->err_len)) ||
	      json_object_set_new(o, "truncated", json_boolean(res->truncated));
	/* json_dumpb into our own malloc: the caller free()s it. */
	n = bad ? 0 : json_dumpb(o, NULL, 0, JSON_COMPACT);
	text = n ? malloc(n + 1) : NULL;
	if (text && json_dumpb(o, text, n, JSON_COMPACT) == n)
		text[n] = '\0';
	else {
		free(text);
		text = NULL;
	}
	json_decref(o);
	if (!text)
		return -ENOMEM;
	*ret_len = n;
	*ret_json = text;
	return 0;
}
