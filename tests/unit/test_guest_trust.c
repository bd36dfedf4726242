/* Tests for guest/trust.h: the runtime CA files and the system bundle. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "trust.h"

#define CA "-----BEGIN CERTIFICATE-----\nMIIBsandboxCA\n-----END CERTIFICATE-----\n"
#define SYS "-----BEGIN CERTIFICATE-----\nMIIBsystemRoot\n-----END CERTIFICATE-----"

struct dir {
	char path[64];
	char file[128];
};

static int setup(void **state)
{
	struct dir *d = calloc(1, sizeof(*d));

	snprintf(d->path, sizeof(d->path), "/tmp/miosa-trust-XXXXXX");
	assert_non_null(mkdtemp(d->path));
	*state = d;
	return 0;
}

static int teardown(void **state)
{
	struct dir *d = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->path);
	assert_int_equal(system(cmd), 0);
	free(d);
	return 0;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *text = NULL;
	size_t cap = 0;

	assert_non_null(f);
	if (getdelim(&text, &cap, '\0', f) < 0) {
		free(text);
		text = strdup("");
	}
	fclose(f);
	return text;
}

static const char *in(struct dir *d, const char *name)
{
	snprintf(d->file, sizeof(d->file), "%s/%s", d->path, name);
	return d->file;
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_runtime_files_hold_ca_and_system_plus_ca(void **state)
{
	struct dir *d = *state;
	char *bundle = NULL, *ca = NULL, *text, sys[128];
	struct stat st;

	snprintf(sys, sizeof(sys), "%s", in(d, "system.crt"));
	write_text(sys, SYS); /* no final newline: one is added */
	assert_int_equal(trust_write_runtime(d->path, CA, sys, &bundle, &ca), 0);
	assert_string_equal(ca, in(d, TRUST_CA_FILE));
	assert_string_equal(bundle, in(d, TRUST_BUNDLE_FILE));
	text = slurp(ca);
	assert_string_equal(text, CA);
	free(text);
	text = slurp(bundle);
	assert_string_equal(text, SYS "\n" CA);
	free(text);
	assert_int_equal(stat(bundle, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	free(bundle);
	free(ca);
}

static void test_bundle_does_not_repeat_a_ca_already_in_the_system(void **state)
{
	struct dir *d = *state;
	char *bundle = NULL, *ca = NULL, *text, sys[128];

	snprintf(sys, sizeof(sys), "%s", in(d, "system.crt"));
	write_text(sys, SYS "\n" CA);
	assert_int_equal(trust_write_runtime(d->path, CA, sys, &bundle, &ca), 0);
	text = slurp(bundle);
	assert_string_equal(text, SYS "\n" CA);
	free(text);
	free(bundle);
	free(ca);
}

static void test_missing_system_bundle_is_an_error_when_named(void **state)
{
	struct dir *d = *state;
	char *bundle = NULL, *ca = NULL;

	assert_int_equal(trust_write_runtime(d->path, CA, in(d, "absent"), &bundle, &ca), -ENOENT);
	assert_null(bundle);
}

static void test_append_to_system_bundle_happens_once(void **state)
{
	struct dir *d = *state;
	char *text, sys[128];

	snprintf(sys, sizeof(sys), "%s", in(d, "ca-certificates.crt"));
	write_text(sys, SYS);
	assert_int_equal(trust_append_system(sys, CA), 0);
	assert_int_equal(trust_append_system(sys, CA), 1);
	text = slurp(sys);
	assert_string_equal(text, SYS "\n" CA);
	free(text);
	assert_int_equal(trust_append_system(in(d, "absent"), CA), -ENOENT);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_runtime_files_hold_ca_and_system_plus_ca),
		T(test_bundle_does_not_repeat_a_ca_already_in_the_system),
		T(test_missing_system_bundle_is_an_error_when_named),
		T(test_append_to_system_bundle_happens_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
