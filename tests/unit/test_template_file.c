/* Tests for host/template_file.h: the IMAGE.policy.pb codec and its files. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "template.pb-c.h"
#include "template_file.h"

static struct policy_entry entries[] = {
	{ .pattern = "API.Example.COM", .port = 0 },
	{ .pattern = "*.npmjs.com", .port = 443 },
	{ .pattern = "2001:db8::1", .port = 8443 },
};

static struct template_state sample(void)
{
	struct template_state t = {
		.policy = { .mode = POLICY_ENFORCE, .allow = entries, .n_allow = 3 },
		.listen_ports = { 80, 443 },
		.n_listen_ports = 2,
		.source_sandbox_id = "sbx_0123456789abcdef01234567",
		.created_at_us = 1795000000123456,
	};
	return t;
}

static void encode_sample(uint8_t **buf, size_t *len)
{
	struct template_state t = sample();
	char err[TEMPLATE_ERR_MAX];

	assert_int_equal(template_file_encode(&t, buf, len, err, sizeof(err)), 0);
}

static void put_u32be(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
	p[3] = (uint8_t)v;
}

/* A file around a hand-made payload, with a correct checksum: the field rules
 * must hold even when the checksum does. */
static uint8_t *frame(const Miosa__TemplatePolicy *m, uint32_t version, size_t *ret_len)
{
	size_t plen = miosa__template_policy__get_packed_size(m);
	uint8_t *buf = malloc(TEMPLATE_FILE_HEADER + plen);
	crypto_hash_sha256_state st;

	assert_non_null(buf);
	memcpy(buf, "\x89MPT\r\n\x1a\n", 8);
	put_u32be(buf + 8, version);
	put_u32be(buf + 12, (uint32_t)plen);
	miosa__template_policy__pack(m, buf + TEMPLATE_FILE_HEADER);
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, buf, 16);
	crypto_hash_sha256_update(&st, buf + TEMPLATE_FILE_HEADER, plen);
	crypto_hash_sha256_final(&st, buf + 16);
	*ret_len = TEMPLATE_FILE_HEADER + plen;
	return buf;
}

/* One valid hand-made message; tests break one field each. */
static struct raw {
	Miosa__TemplatePolicy m;
	Miosa__TemplatePolicy__AllowEntry e;
	Miosa__TemplatePolicy__AllowEntry *ep[1];
	uint32_t ports[2];
} raw;

static void raw_init(void)
{
	miosa__template_policy__init(&raw.m);
	miosa__template_policy__allow_entry__init(&raw.e);
	raw.e.pattern = "example.com";
	raw.e.port = 443;
	raw.ep[0] = &raw.e;
	raw.ports[0] = 80;
	raw.ports[1] = 443;
	raw.m.format_version = TEMPLATE_FILE_VERSION;
	raw.m.mode = MIOSA__TEMPLATE_POLICY__MODE__MODE_ENFORCE;
	raw.m.n_allow = 1;
	raw.m.allow = raw.ep;
	raw.m.n_listen_ports = 2;
	raw.m.listen_ports = raw.ports;
	raw.m.source_sandbox_id = "sbx_a";
	raw.m.created_at_us = 1;
}

/* Decode the framed raw message: expect r, and err containing want. */
static void expect_raw(int want_r, const char *want_err)
{
	struct template_state t;
	char err[TEMPLATE_ERR_MAX] = "";
	uint8_t *buf;
	size_t len;

	buf = frame(&raw.m, TEMPLATE_FILE_VERSION, &len);
	assert_int_equal(template_file_decode(buf, len, &t, err, sizeof(err)), want_r);
	if (want_r == 0)
		template_state_clear(&t);
	else if (!strstr(err, want_err))
		fail_msg("error '%s' does not contain '%s'", err, want_err);
	free(buf);
}

static void test_round_trip_keeps_every_field_and_normalizes(void **state)
{
	struct template_state t;
	char err[TEMPLATE_ERR_MAX];
	uint8_t *buf;
	size_t len;

	(void)state;
	encode_sample(&buf, &len);
	assert_int_equal(template_file_decode(buf, len, &t, err, sizeof(err)), 0);
	assert_int_equal(t.version, TEMPLATE_FILE_VERSION);
	assert_int_equal(t.policy.mode, POLICY_ENFORCE);
	assert_int_equal(t.policy.n_allow, 3);
	assert_string_equal(t.policy.allow[0].pattern, "api.example.com");
	assert_int_equal(t.policy.allow[0].port, 0);
	assert_string_equal(t.policy.allow[1].pattern, "*.npmjs.com");
	assert_int_equal(t.policy.allow[1].port, 443);
	assert_string_equal(t.policy.allow[2].pattern, "2001:db8::1");
	assert_int_equal(t.policy.allow[2].port, 8443);
	assert_int_equal(t.n_listen_ports, 2);
	assert_int_equal(t.listen_ports[0], 80);
	assert_int_equal(t.listen_ports[1], 443);
	assert_string_equal(t.source_sandbox_id, "sbx_0123456789abcdef01234567");
	assert_int_equal(t.created_at_us, 1795000000123456);
	template_state_clear(&t);
	free(buf);
}

static void test_round_trip_observe_with_empty_lists(void **state)
{
	struct template_state in = { .policy = { .mode = POLICY_OBSERVE },
				     .source_sandbox_id = "s" },
			      out;
	char err[TEMPLATE_ERR_MAX];
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(template_file_encode(&in, &buf, &len, err, sizeof(err)), 0);
	assert_int_equal(template_file_decode(buf, len, &out, err, sizeof(err)), 0);
	assert_int_equal(out.policy.mode, POLICY_OBSERVE);
	assert_int_equal(out.policy.n_allow, 0);
	assert_null(out.policy.allow);
	assert_int_equal(out.n_listen_ports, 0);
	template_state_clear(&out);
	free(buf);
}

static void test_truncation_at_every_byte_is_refused(void **state)
{
	struct template_state t = { .version = 77 };
	char err[TEMPLATE_ERR_MAX];
	uint8_t *buf;
	size_t len;

	(void)state;
	encode_sample(&buf, &len);
	for (size_t n = 0; n < len; n++) {
		/* A copy of exactly n bytes, so ASan sees any read past it. */
		uint8_t *cut = malloc(n ? n : 1);

		memcpy(cut, buf, n);
		err[0] = '\0';
		assert_int_equal(template_file_decode(cut, n, &t, err, sizeof(err)), -EBADMSG);
		assert_non_null(strstr(err, "truncated"));
		assert_int_equal(t.version, 77); /* ret_state untouched */
		free(cut);
	}
	free(buf);
}

static void test_every_flipped_bit_is_refused(void **state)
{
	struct template_state t;
	char err[TEMPLATE_ERR_MAX];
	uint8_t *buf;
	size_t len;

	(void)state;
	encode_sample(&buf, &len);
	for (size_t i = 0; i < len; i++)
		for (unsigned bit = 0; bit < 8; bit++) {
			int r;

			buf[i] ^= (uint8_t)(1u << bit);
			r = template_file_decode(buf, len, &t, err, sizeof(err));
			if (r == 0)
				fail_msg("flipping bit %u of byte %zu was not detected", bit, i);
			/* Past the header only the checksum can notice. */
			if (i >= TEMPLATE_FILE_HEADER || (i >= 16 && i < 48))
				assert_non_null(strstr(err, "checksum mismatch"));
			buf[i] ^= (uint8_t)(1u << bit);
		}
	assert_int_equal(template_file_decode(buf, len, &t, err, sizeof(err)), 0);
	template_state_clear(&t);
	free(buf);
}

static void test_bad_magic_is_refused(void **state)
{
	struct template_state t;
	char err[TEMPLATE_ERR_MAX];
	const char text[] = "mode: enforce\nallow: example.com\n";
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(template_file_decode(text, sizeof(text) - 1, &t, err, sizeof(err)),
			 -EBADMSG);
	assert_string_equal(err, "not a miosa policy template (bad magic)");
	encode_sample(&buf, &len);
	buf[3] = 'X';
	assert_int_equal(template_file_decode(buf, len, &t, err, sizeof(err)), -EBADMSG);
	assert_string_equal(err, "not a miosa policy template (bad magic)");
	free(buf);
}

static void test_newer_version_is_refused_with_both_versions(void **state)
{
	struct template_state t;
	char err[TEMPLATE_ERR_MAX], want[128];
	uint8_t *buf;
	size_t len;

	(void)state;
	raw_init();
	raw.m.format_version = TEMPLATE_FILE_VERSION + 1;
	buf = frame(&raw.m, TEMPLATE_FILE_VERSION + 1, &len);
	assert_int_equal(template_file_decode(buf, len, &t, err, sizeof(err)), -EPROTONOSUPPORT);
	snprintf(want, sizeof(want), "format version %u is newer than this miosactl supports (%u)",
		 TEMPLATE_FILE_VERSION + 1, TEMPLATE_FILE_VERSION);
	assert_string_equal(err, want);
	free(buf);
	buf = frame(&raw.m, 0, &len);
	assert_int_equal(template_file_decode(buf, len, &t, err, sizeof(err)), -EBADMSG);
	assert_string_equal(err, "format version 0 is invalid");
	free(buf);
}

static void test_oversize_and_trailing_bytes_are_refused(void **state)
{
	struct template_state t;
	char err[TEMPLATE_ERR_MAX];
	uint8_t *buf, *big;
	size_t len;

	(void)state;
	encode_sample(&buf, &len);
	big = calloc(1, TEMPLATE_FILE_MAX + 1);
	assert_non_null(big);
	memcpy(big, buf, len);
	assert_int_equal(template_file_decode(big, TEMPLATE_FILE_MAX + 1, &t, err, sizeof(err)),
			 -EFBIG);
	assert_int_equal(template_file_decode(big, len + 1, &t, err, sizeof(err)), -EBADMSG);
	assert_string_equal(err, "1 trailing bytes after the payload");
	free(big);
	free(buf);
}

static void test_field_rules_hold_inside_a_valid_checksum(void **state)
{
	(void)state;
	raw_init();
	expect_raw(0, "");

	raw_init();
	raw.e.pattern = "*foo.com";
	expect_raw(-EINVAL, "allow[0]: host pattern '*foo.com'");
	raw_init();
	raw.e.pattern = "";
	expect_raw(-EINVAL, "allow[0]:");
	raw_init();
	raw.e.port = 65536;
	expect_raw(-EINVAL, "allow[0]: port 65536 is not in 0..65535");
	raw_init();
	raw.m.mode = MIOSA__TEMPLATE_POLICY__MODE__MODE_UNSPECIFIED;
	expect_raw(-EINVAL, "mode: must be observe or enforce");
	raw_init();
	raw.m.mode = 7;
	expect_raw(-EINVAL, "mode: must be observe or enforce");
	raw_init();
	raw.m.format_version = 9;
	expect_raw(-EINVAL, "format_version 9 differs from the header's (1)");
	raw_init();
	raw.ports[1] = 0;
	expect_raw(-EINVAL, "listen_ports: port 0 is not in 1..65535");
	raw_init();
	raw.ports[1] = 80;
	expect_raw(-EINVAL, "listen_ports: port 80 is listed twice");
	raw_init();
	raw.m.source_sandbox_id = "";
	expect_raw(-EINVAL, "source_sandbox_id");
	raw_init();
	raw.m.source_sandbox_id = "has space";
	expect_raw(-EINVAL, "source_sandbox_id");
	raw_init();
	raw.m.created_at_us = -1;
	expect_raw(-EINVAL, "created_at_us");
	raw_init();
	raw.e.pattern = "ex\xc3" "ample.com"; /* not UTF-8 */
	expect_raw(-EBADMSG, "not UTF-8");
}

static void test_too_many_entries_is_refused(void **state)
{
	Miosa__TemplatePolicy__AllowEntry **ep;
	Miosa__TemplatePolicy__AllowEntry e;
	size_t n = POLICY_ALLOW_MAX + 1;

	(void)state;
	raw_init();
	miosa__template_policy__allow_entry__init(&e);
	e.pattern = "example.com";
	ep = calloc(n, sizeof(*ep));
	for (size_t i = 0; i < n; i++)
		ep[i] = &e;
	raw.m.allow = ep;
	raw.m.n_allow = n;
	expect_raw(-EINVAL, "allow: more than 1024 entries");
	raw.m.n_allow = POLICY_ALLOW_MAX;
	expect_raw(0, "");
	free(ep);
}

static void test_encoder_refuses_what_the_decoder_would(void **state)
{
	struct policy_entry bad = { .pattern = "exa mple.com" };
	struct template_state t = sample();
	char err[TEMPLATE_ERR_MAX];
	uint8_t *buf = NULL;
	size_t len = 0;

	(void)state;
	t.policy.allow = &bad;
	t.policy.n_allow = 1;
	assert_int_equal(template_file_encode(&t, &buf, &len, err, sizeof(err)), -EINVAL);
	assert_null(buf);
	t = sample();
	t.source_sandbox_id[0] = '\0';
	assert_int_equal(template_file_encode(&t, &buf, &len, err, sizeof(err)), -EINVAL);
	assert_null(buf);
}

static char *make_dir(void)
{
	char *d = strdup("/tmp/test_template_file.XXXXXX");

	assert_non_null(mkdtemp(d));
	return d;
}

static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void test_write_is_0644_atomic_and_reads_back(void **state)
{
	struct template_state in = sample(), out;
	char err[TEMPLATE_ERR_MAX], path[512];
	char *dir = make_dir();
	mode_t old = umask(077);
	struct stat st;
	size_t size = 0;

	(void)state;
	snprintf(path, sizeof(path), "%s/img.qcow2%s", dir, TEMPLATE_FILE_SUFFIX);
	assert_int_equal(template_file_write(path, &in, &size, err, sizeof(err)), 0);
	umask(old);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal((size_t)st.st_size, size);
	assert_int_equal(count_entries(dir), 1); /* no temporary file left */
	/* Overwrite: still one file, new content. */
	in.policy.mode = POLICY_OBSERVE;
	assert_int_equal(template_file_write(path, &in, NULL, err, sizeof(err)), 0);
	assert_int_equal(count_entries(dir), 1);
	assert_int_equal(template_file_read(path, &out, err, sizeof(err)), 0);
	assert_int_equal(out.policy.mode, POLICY_OBSERVE);
	assert_int_equal(out.policy.n_allow, 3);
	template_state_clear(&out);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
	free(dir);
}

static void test_read_names_the_file_in_every_error(void **state)
{
	struct template_state t;
	char err[TEMPLATE_ERR_MAX], path[512], want[600];
	char *dir = make_dir();
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/none.policy.pb", dir);
	assert_int_equal(template_file_read(path, &t, err, sizeof(err)), -ENOENT);
	assert_true(strncmp(err, path, strlen(path)) == 0);
	f = fopen(path, "w");
	assert_int_equal(fwrite("\x89MPT\r\n\x1a\n\0\0", 1, 10, f), 10);
	fclose(f);
	assert_int_equal(template_file_read(path, &t, err, sizeof(err)), -EBADMSG);
	snprintf(want, sizeof(want), "%s: truncated: 10 bytes, shorter than the 48-byte header",
		 path);
	assert_string_equal(err, want);
	assert_int_equal(template_file_read(dir, &t, err, sizeof(err)), -EISDIR);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
	free(dir);
}

static void test_path_appends_the_suffix(void **state)
{
	char small[8], path[64];

	(void)state;
	assert_int_equal(template_file_path("/img/a.qcow2", path, sizeof(path)), 0);
	assert_string_equal(path, "/img/a.qcow2.policy.pb");
	assert_int_equal(template_file_path("a.qcow2", small, sizeof(small)), -ENAMETOOLONG);
	assert_int_equal(template_file_path("", path, sizeof(path)), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_keeps_every_field_and_normalizes),
		cmocka_unit_test(test_round_trip_observe_with_empty_lists),
		cmocka_unit_test(test_truncation_at_every_byte_is_refused),
		cmocka_unit_test(test_every_flipped_bit_is_refused),
		cmocka_unit_test(test_bad_magic_is_refused),
		cmocka_unit_test(test_newer_version_is_refused_with_both_versions),
		cmocka_unit_test(test_oversize_and_trailing_bytes_are_refused),
		cmocka_unit_test(test_field_rules_hold_inside_a_valid_checksum),
		cmocka_unit_test(test_too_many_entries_is_refused),
		cmocka_unit_test(test_encoder_refuses_what_the_decoder_would),
		cmocka_unit_test(test_write_is_0644_atomic_and_reads_back),
		cmocka_unit_test(test_read_names_the_file_in_every_error),
		cmocka_unit_test(test_path_appends_the_suffix),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
