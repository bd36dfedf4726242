#include "ctl_output.h"

#include <errno.h>
#include <string.h>

void ctl_output_sanitize(const char *in, char *out, size_t size)
{
	size_t i = 0;

	if (size == 0)
		return;
	for (; in && in[i] && i + 1 < size; i++)
		out[i] = in[i] >= 0x20 && in[i] < 0x7f ? in[i] : '?';
	out[i] = '\0';
}

const json_t *ctl_output_lookup(const json_t *obj, const char *key)
{
	char part[128];

	while (obj && key) {
		const char *dot = strchr(key, '.');
		size_t n = dot ? (size_t)(dot - key) : strlen(key);

		if (n >= sizeof(part))
			return NULL;
		memcpy(part, key, n);
		part[n] = '\0';
		obj = json_object_get(obj, part);
		key = dot ? dot + 1 : NULL;
	}
	return obj;
}

static void co_transport(const json_t *v, char *out, size_t size)
{
	const char *kind = json_string_value(json_object_get(v, "kind"));
	const json_t *uds = json_object_get(v, "uds");
	const json_t *cid = json_object_get(v, "cid");

	if (kind && strcmp(kind, "uds") == 0 && json_is_string(uds))
		snprintf(out, size, "uds:%s", json_string_value(uds));
	else if (kind && strcmp(kind, "vsock") == 0 && json_is_integer(cid))
		snprintf(out, size, "vsock:%" JSON_INTEGER_FORMAT, json_integer_value(cid));
	else
		snprintf(out, size, "%s", kind ? kind : "-");
}

/* Compact JSON of v, freed with jansson's (possibly custom) allocator. */
static void co_dump(const json_t *v, char *out, size_t size)
{
	json_free_t free_fn = NULL;
	char *d = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);

	snprintf(out, size, "%s", d ? d : "?");
	json_get_alloc_funcs(NULL, &free_fn);
	if (d && free_fn)
		free_fn(d);
}

/* Anything but an array; nested values are dumped, not recursed into. */
static void co_scalar(const json_t *v, bool onoff, char *out, size_t size)
{
	if (!v || json_is_null(v))
		snprintf(out, size, "-");
	else if (json_is_string(v))
		snprintf(out, size, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(out, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_boolean(v))
		snprintf(out, size, "%s",
			 json_is_true(v) ? (onoff ? "on" : "yes") : (onoff ? "off" : "no"));
	else if (json_is_object(v) && json_object_get(v, "kind"))
		co_transport(v, out, size);
	else
		co_dump(v, out, size);
}

void ctl_output_cell(const json_t *v, bool onoff, char *out, size_t size)
{
	char raw[CTL_TEXT_MAX];
	size_t len = 0, i;
	const json_t *e;

	if (!json_is_array(v) || json_array_size(v) == 0) {
		co_scalar(json_is_array(v) ? NULL : v, onoff, raw, sizeof(raw));
		ctl_output_sanitize(raw, out, size);
		return;
	}
	raw[0] = '\0';
	json_array_foreach(v, i, e) {
		char item[CTL_TEXT_MAX];

		if (json_is_array(e))
			co_dump(e, item, sizeof(item));
		else
			co_scalar(e, onoff, item, sizeof(item));
		len += (size_t)snprintf(raw + len, sizeof(raw) - len, "%s%s", i ? "," : "", item);
		if (len >= sizeof(raw))
			break;
	}
	ctl_output_sanitize(raw, out, size);
}

/* One cell: padded to width, or ending the line (no trailing blanks). */
static void co_put_cell(FILE *f, const char *text, size_t width, bool last)
{
	if (last)
		fprintf(f, "%s\n", text);
	else
		fprintf(f, "%-*s  ", (int)width, text);
}

int ctl_output_table(FILE *f, const json_t *array, const struct ctl_column *cols, size_t ncols)
{
	size_t nrows = json_array_size(array), width[CTL_OUTPUT_MAX_COLUMNS] = { 0 };
	char cell[CTL_TEXT_MAX];

	if (ncols > CTL_OUTPUT_MAX_COLUMNS)
		return -E2BIG;
	for (size_t k = 0; k < ncols; k++)
		width[k] = strlen(cols[k].header);
	for (size_t i = 0; i < nrows; i++) {
		for (size_t k = 0; k < ncols; k++) {
			ctl_output_cell(ctl_output_lookup(json_array_get(array, i), cols[k].key),
					false, cell, sizeof(cell));
			if (strlen(cell) > width[k])
				width[k] = strlen(cell);
		}
	}
	for (size_t k = 0; k < ncols; k++)
		co_put_cell(f, cols[k].header, width[k], k + 1 == ncols);
	for (size_t i = 0; i < nrows; i++) {
		for (size_t k = 0; k < ncols; k++) {
			ctl_output_cell(ctl_output_lookup(json_array_get(array, i), cols[k].key),
					false, cell, sizeof(cell));
			co_put_cell(f, cell, width[k], k + 1 == ncols);
		}
	}
	return ferror(f) ? -EIO : 0;
}

static const char *co_label(const char *key)
{
	const char *dot = strrchr(key, '.');

	return dot ? dot + 1 : key;
}

int ctl_output_view(FILE *f, const json_t *obj, const char *const *keys, bool onoff)
{
	size_t w = 0;
	char cell[CTL_TEXT_MAX];

	for (size_t i = 0; keys[i]; i++)
		if (ctl_output_lookup(obj, keys[i]) && strlen(co_label(keys[i])) > w)
			w = strlen(co_label(keys[i]));
	for (size_t i = 0; keys[i]; i++) {
		const json_t *v = ctl_output_lookup(obj, keys[i]);
		const char *label = co_label(keys[i]);

		if (!v)
			continue;
		ctl_output_cell(v, onoff, cell, sizeof(cell));
		fprintf(f, "%s:%*s%s\n", label, (int)(w - strlen(label) + 2), "", cell);
	}
	return ferror(f) ? -EIO : 0;
}

int ctl_output_json(FILE *f, const json_t *j)
{
	if (json_dumpf(j, f, JSON_INDENT(2) | JSON_SORT_KEYS) != 0 || fputc('\n', f) == EOF)
		return -EIO;
	return 0;
}
