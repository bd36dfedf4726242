/* Tests for guest/kmod.h: the order file of the kernel modules PID 1 loads. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "kmod.h"

/* The order vm-images/build-initramfs writes (shared/FACTS.md). */
static const char initramfs_order[] =
	"# written by vm-images/build-initramfs\n"
	"virtio_ring.ko\n"
	"virtio.ko\n"
	"virtio_pci_modern_dev.ko\n"
	"virtio_pci_legacy_dev.ko\n"
	"virtio_pci.ko\n"
	"vsock.ko\n"
	"vmw_vsock_virtio_transport_common.ko\n"
	"vmw_vsock_virtio_transport.ko\n";

static int parse(const char *text, struct kmod_order *o, size_t *line)
{
	return kmod_order_parse(text, strlen(text), o, line);
}

static void assert_entry(const char *text, const struct kmod_order *o, size_t i,
			 const char *want)
{
	assert_true(i < o->count);
	assert_int_equal(o->entry[i].len, strlen(want));
	assert_memory_equal(text + o->entry[i].off, want, strlen(want));
}

static void test_initramfs_order_parses_in_file_order(void **state)
{
	static const char *want[] = { "virtio_ring.ko", "virtio.ko", "virtio_pci_modern_dev.ko",
				      "virtio_pci_legacy_dev.ko", "virtio_pci.ko", "vsock.ko",
				      "vmw_vsock_virtio_transport_common.ko",
				      "vmw_vsock_virtio_transport.ko" };
	struct kmod_order o;

	(void)state;
	assert_int_equal(parse(initramfs_order, &o, NULL), 0);
	assert_int_equal(o.count, 8);
	for (size_t i = 0; i < 8; i++)
		assert_entry(initramfs_order, &o, i, want[i]);
}

static void test_blank_lines_comments_and_missing_final_newline(void **state)
{
	static const char text[] = "\n# a comment, with spaces\n\na.ko\n\n#b.ko\nsub/c.ko";
	struct kmod_order o;

	(void)state;
	assert_int_equal(parse(text, &o, NULL), 0);
	assert_int_equal(o.count, 2);
	assert_entry(text, &o, 0, "a.ko");
	assert_entry(text, &o, 1, "sub/c.ko");
}

static void test_absolute_and_nested_paths_accepted(void **state)
{
	static const char text[] = "/lib/modules/6.1.0-56-amd64/kernel/net/vmw_vsock/vsock.ko\n"
				   "x_y-z+1.2/m.ko\n";
	struct kmod_order o;

	(void)state;
	assert_int_equal(parse(text, &o, NULL), 0);
	assert_int_equal(o.count, 2);
	assert_entry(text, &o, 0, "/lib/modules/6.1.0-56-amd64/kernel/net/vmw_vsock/vsock.ko");
}

static void test_empty_file_lists_nothing(void **state)
{
	struct kmod_order o = { .count = 99 };

	(void)state;
	assert_int_equal(kmod_order_parse("", 0, &o, NULL), 0);
	assert_int_equal(o.count, 0);
	assert_int_equal(parse("\n\n# nothing\n", &o, NULL), 0);
	assert_int_equal(o.count, 0);
}

/* Each bad entry is refused with its line, and the output is untouched. */
static void test_bad_entries_rejected_with_their_line(void **state)
{
	static const char *bad[] = {
		"virtio",             /* no .ko */
		"virtio.ko.xz",       /* compressed: finit_module without flags refuses it */
		".ko",                /* no name */
		"dir/.ko",            /* no name */
		"../virtio.ko",       /* leaves the directory */
		"a/../virtio.ko",     /* .. inside */
		"./virtio.ko",        /* . component */
		"a//virtio.ko",       /* empty component */
		"//virtio.ko",        /* empty component after the root */
		" virtio.ko",         /* leading space */
		"virtio.ko ",         /* trailing space */
		"virtio.ko\r",        /* CRLF file */
		"vir\ttio.ko",        /* tab */
		"vir tio.ko",         /* space */
		"virtio.ko;reboot",   /* not a path byte */
		"vïrtio.ko",          /* UTF-8 */
		"  # indented comment is an entry, and a bad one",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[256];
		struct kmod_order o = { .count = 77 };
		size_t line = 0;

		snprintf(text, sizeof(text), "a.ko\n\n%s\nb.ko\n", bad[i]);
		assert_int_equal(parse(text, &o, &line), -EINVAL);
		assert_int_equal(line, 3);
		assert_int_equal(o.count, 77);
	}
}

static void test_nul_byte_rejected(void **state)
{
	static const char text[] = "a.ko\nb\0.ko\n";
	struct kmod_order o;
	size_t line = 0;

	(void)state;
	assert_int_equal(kmod_order_parse(text, sizeof(text) - 1, &o, &line), -EINVAL);
	assert_int_equal(line, 2);
}

static void test_duplicate_rejected(void **state)
{
	struct kmod_order o;
	size_t line = 0;

	(void)state;
	assert_int_equal(parse("a.ko\nb.ko\na.ko\n", &o, &line), -EINVAL);
	assert_int_equal(line, 3);
	/* the same module under another path is not a textual duplicate */
	assert_int_equal(parse("a.ko\nx/a.ko\n", &o, NULL), 0);
}

static void test_path_length_bounded(void **state)
{
	char text[KMOD_PATH_MAX + 8];
	struct kmod_order o;
	size_t line = 0;

	(void)state;
	memset(text, 'm', KMOD_PATH_MAX - 3);
	memcpy(text + KMOD_PATH_MAX - 3, ".ko", 4);
	assert_int_equal(parse(text, &o, NULL), 0);
	assert_int_equal(o.entry[0].len, KMOD_PATH_MAX);
	memset(text, 'm', KMOD_PATH_MAX - 2);
	memcpy(text + KMOD_PATH_MAX - 2, ".ko", 4);
	assert_int_equal(parse(text, &o, &line), -EINVAL);
	assert_int_equal(line, 1);
}

static void test_module_count_bounded(void **state)
{
	char text[KMOD_ORDER_MAX];
	struct kmod_order o;
	size_t len = 0, line = 0;

	(void)state;
	for (unsigned i = 0; i < KMOD_MAX_MODULES; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len, "m%u.ko\n", i);
	assert_int_equal(kmod_order_parse(text, len, &o, NULL), 0);
	assert_int_equal(o.count, KMOD_MAX_MODULES);
	len += (size_t)snprintf(text + len, sizeof(text) - len, "one-more.ko\n");
	assert_int_equal(kmod_order_parse(text, len, &o, &line), -E2BIG);
	assert_int_equal(line, KMOD_MAX_MODULES + 1);
}

static void test_file_size_bounded(void **state)
{
	char *text = malloc(KMOD_ORDER_MAX + 1);
	struct kmod_order o;
	size_t line = 99;

	(void)state;
	assert_non_null(text);
	/* comments up to exactly the cap are fine */
	memset(text, '#', KMOD_ORDER_MAX + 1);
	assert_int_equal(kmod_order_parse(text, KMOD_ORDER_MAX, &o, NULL), 0);
	assert_int_equal(o.count, 0);
	assert_int_equal(kmod_order_parse(text, KMOD_ORDER_MAX + 1, &o, &line), -EFBIG);
	assert_int_equal(line, 0);
	free(text);
}

static char *write_temp(const char *data, size_t len)
{
	char *path = strdup("/tmp/test_guest_kmod.XXXXXX");
	int fd;

	assert_non_null(path);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

static void test_read_returns_the_file_and_refuses_longer_than_the_cap(void **state)
{
	static char buf[KMOD_ORDER_MAX + 1];
	char *big = malloc(KMOD_ORDER_MAX + 1);
	char *path;
	size_t len = 12345;

	(void)state;
	assert_non_null(big);
	path = write_temp(initramfs_order, strlen(initramfs_order));
	assert_int_equal(kmod_order_read(path, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, strlen(initramfs_order));
	assert_memory_equal(buf, initramfs_order, len);
	unlink(path);
	free(path);

	memset(big, '#', KMOD_ORDER_MAX + 1);
	path = write_temp(big, KMOD_ORDER_MAX);
	assert_int_equal(kmod_order_read(path, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, KMOD_ORDER_MAX);
	unlink(path);
	free(path);

	path = write_temp(big, KMOD_ORDER_MAX + 1);
	len = 7;
	assert_int_equal(kmod_order_read(path, buf, sizeof(buf), &len), -EFBIG);
	assert_int_equal(len, 7);
	/* a buffer too small for the cap is a programmer error, refused */
	assert_int_equal(kmod_order_read(path, buf, KMOD_ORDER_MAX, &len), -EINVAL);
	unlink(path);
	free(path);
	free(big);
}

static void test_read_missing_file_is_enoent(void **state)
{
	static char buf[KMOD_ORDER_MAX + 1];
	size_t len = 5;

	(void)state;
	assert_int_equal(kmod_order_read("/nonexistent/miosa/load-order", buf, sizeof(buf), &len),
			 -ENOENT);
	assert_int_equal(len, 5);
}

/* Only the path that fails before finit_module(2): a test never loads a
 * module into the kernel of the machine it runs on. */
static void test_load_missing_module_is_enoent(void **state)
{
	(void)state;
	assert_int_equal(kmod_load(AT_FDCWD, "/nonexistent/miosa/virtio.ko"), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_initramfs_order_parses_in_file_order),
		cmocka_unit_test(test_blank_lines_comments_and_missing_final_newline),
		cmocka_unit_test(test_absolute_and_nested_paths_accepted),
		cmocka_unit_test(test_empty_file_lists_nothing),
		cmocka_unit_test(test_bad_entries_rejected_with_their_line),
		cmocka_unit_test(test_nul_byte_rejected),
		cmocka_unit_test(test_duplicate_rejected),
		cmocka_unit_test(test_path_length_bounded),
		cmocka_unit_test(test_module_count_bounded),
		cmocka_unit_test(test_file_size_bounded),
		cmocka_unit_test(test_read_returns_the_file_and_refuses_longer_than_the_cap),
		cmocka_unit_test(test_read_missing_file_is_enoent),
		cmocka_unit_test(test_load_missing_module_is_enoent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
