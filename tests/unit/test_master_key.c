#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixture.h"
#include "master_key.h"

struct fixture {
	char dir[64];
	char path[PATH_MAX];
	char err[512];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	if (fixture_tmpdir("mk", f->dir) != 0)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/master.key", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	fixture_rmtree(f->dir);
	free(f);
	return 0;
}

static void write_file(const char *path, size_t len, mode_t mode)
{
	unsigned char buf[64];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void test_first_run_creates_key_file_mode_0600_of_32_bytes(void **state)
{
	struct fixture *f = *state;
	struct master_key *key = NULL;
	struct stat sb;

	assert_int_equal(master_key_load_or_create(f->path, &key, f->err, sizeof(f->err)), 1);
	assert_non_null(key);
	assert_int_equal(lstat(f->path, &sb), 0);
	assert_true(S_ISREG(sb.st_mode));
	assert_int_equal(sb.st_mode & 07777, 0600);
	assert_int_equal(sb.st_size, MASTER_KEY_BYTES);
	master_key_free(key);
}

static void test_no_temporary_file_is_left_behind(void **state)
{
	struct fixture *f = *state;
	struct master_key *key = NULL;
	struct dirent *de;
	DIR *d;
	int entries = 0;

	assert_int_equal(master_key_create(f->path, &key, f->err, sizeof(f->err)), 0);
	master_key_free(key);
	d = opendir(f->dir);
	assert_non_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			entries++;
	closedir(d);
	assert_int_equal(entries, 1);
}

static void test_restrictive_umask_still_gives_a_loadable_key(void **state)
{
	struct fixture *f = *state;
	struct master_key *key = NULL;
	mode_t old = umask(0377);

	assert_int_equal(master_key_create(f->path, &key, f->err, sizeof(f->err)), 0);
	umask(old);
	master_key_free(key);
	key = NULL;
	assert_int_equal(master_key_load(f->path, &key, f->err, sizeof(f->err)), 0);
	master_key_free(key);
}

static void test_reload_derives_the_same_subkeys(void **state)
{
	struct fixture *f = *state;
	struct master_key *key = NULL;
	unsigned char *a = NULL, *b = NULL;

	assert_int_equal(master_key_load_or_create(f->path, &key, f->err, sizeof(f->err)), 1);
	assert_int_equal(master_key_derive(key, MASTER_KEY_PURPOSE_SECRET_VALUES, &a), 0);
	master_key_free(key);
	key = NULL;
	assert_int_equal(master_key_load_or_create(f->path, &key, f->err, sizeof(f->err)), 0);
	assert_int_equal(master_key_derive(key, MASTER_KEY_PURPOSE_SECRET_VALUES, &b), 0);
	assert_memory_equal(a, b, MASTER_KEY_SUBKEY_BYTES);
	master_key_subkey_free(a);
	master_key_subkey_free(b);
	master_key_free(key);
}

static void test_subkeys_are_independent_per_purpose(void **state)
{
	struct fixture *f = *state;
	struct master_key *key = NULL;
	unsigned char *sub[4] = { NULL };

	assert_int_equal(master_key_create(f->path, &key, f->err, sizeof(f->err)), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(master_key_derive(key, (enum master_key_purpose)(i + 1), &sub[i]), 0);
	for (int i = 0; i < 4; i++)
		for (int j = i + 1; j < 4; j++)
			assert_memory_not_equal(sub[i], sub[j], MASTER_KEY_SUBKEY_BYTES);
	for (int i = 0; i < 4; i++)
		master_key_subkey_free(sub[i]);
	master_key_free(key);
}

static void test_derive_with_unknown_purpose_is_refused(void **state)
{
	struct fixture *f = *state;
	struct master_key *key = NULL;
	unsigned char *sub = (unsigned char *)"untouched";

	assert_int_equal(master_key_create(f->path, &key, f->err, sizeof(f->err)), 0);
	assert_int_equal(master_key_derive(key, (enum master_key_purpose)0, &sub), -EINVAL);
	assert_int_equal(master_key_derive(key, (enum master_key_purpose)99, &sub), -EINVAL);
	assert_string_equal((const char *)sub, "untouched");
	master_key_free(key);
}

static void test_master_key_with_group_read_is_refused(void **state)
{
	struct fixture *f = *state;
	struct master_key *key = NULL;
	char want[PATH_MAX + 128];

	write_file(f->path, MASTER_KEY_BYTES, 0640);
	assert_int_equal(master_key_load_or_create(f->path, &key, f->err, sizeof(f->err)), -EPERM);
	assert_null(key);
	snprintf(want, sizeof(want),
		 "master key %s is mode 0640; must not be readable by group or others (chmod 600)",
		 f->path);
	assert_string_equal(f->err, want);
}

static void test_master_key_with_other_write_is_refused(void **state)
{
	struct fixture *f = *state;
	struct master_key *key = NULL;

	write_file(f->path, MASTER_KEY_BYTES, 0602);
	assert_int_equal(master_key_load(f->path, &key, f->err, sizeof(f->err)), -EPERM);
	assert_non_null(strstr(f->err, "mode 0602"));
	assert_non_null(strstr(f->err, "chmod 600"));
}

static void test_master_key_of_wrong_size_is_refused(void **state)
{
	struct fixture *f = *state;
	struct master_key *key = NULL;
	char want[PATH_MAX + 64];

	write_file(f->path, 31, 0600);
	assert_int_equal(master_key_load(f->path, &key, f->err, sizeof(f->err)), -EINVAL);
	snprintf(want, sizeof(want), "master key %s must be exactly 32 bytes, found 31", f->path);
	assert_string_equal(f->err, want);
	write_file(f->path, 0, 0600);
	assert_int_equal(master_key_load_or_create(f->path, &key, f->err, sizeof(f->err)), -EINVAL);
	assert_non_null(strstr(f->err, "found 0"));
	write_file(f->path, 33, 0600);
	assert_int_equal(master_key_load(f->path, &key, f->err, sizeof(f->err)), -EINVAL);
	assert_null(key);
}

static void test_master_key_symlink_is_refused(void **state)
{
	struct fixture *f = *state;
	struct master_key *key = NULL;
	char target[PATH_MAX];

	snprintf(target, sizeof(target), "%s/real.key", f->dir);
	write_file(target, MASTER_KEY_BYTES, 0600);
	assert_int_equal(symlink(target, f->path), 0);
	assert_int_equal(master_key_load_or_create(f->path, &key, f->err, sizeof(f->err)), -ELOOP);
	assert_non_null(strstr(f->err, "is a symlink"));
	assert_non_null(strstr(f->err, f->path));
	/* A dangling symlink must not be followed to create the target either. */
	assert_int_equal(unlink(target), 0);
	assert_int_equal(master_key_load_or_create(f->path, &key, f->err, sizeof(f->err)), -ELOOP);
	assert_int_equal(access(target, F_OK), -1);
}

static void test_master_key_that_is_a_directory_is_refused(void **state)
{
	struct fixture *f = *state;
	struct master_key *key = NULL;

	assert_int_equal(mkdir(f->path, 0700), 0);
	assert_int_equal(master_key_load_or_create(f->path, &key, f->err, sizeof(f->err)), -EINVAL);
	assert_non_null(strstr(f->err, "is not a regular file"));
}

static void test_master_key_fifo_is_refused_without_blocking(void **state)
{
	struct fixture *f = *state;
	struct master_key *key = NULL;

	assert_int_equal(mkfifo(f->path, 0600), 0);
	assert_int_equal(master_key_load(f->path, &key, f->err, sizeof(f->err)), -EINVAL);
	assert_non_null(strstr(f->err, "is not a regular file"));
}

/* Root reads a mode-0000 file anyway, so as root drop to nobody in a child. */
static int load_expecting_eacces(const char *path)
{
	struct master_key *key = NULL;
	char err[512] = "";
	int r = master_key_load(path, &key, err, sizeof(err));

	return (r == -EACCES && !key && strstr(err, "is unreadable") && strstr(err, path)) ? 0 : 1;
}

static void test_unreadable_master_key_is_refused(void **state)
{
	struct fixture *f = *state;
	int status = -1;
	pid_t pid;

	write_file(f->path, MASTER_KEY_BYTES, geteuid() == 0 ? 0600 : 0000);
	if (geteuid() != 0) {
		assert_int_equal(load_expecting_eacces(f->path), 0);
		return;
	}
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(2);
		_exit(load_expecting_eacces(f->path));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_create_never_replaces_an_existing_file(void **state)
{
	struct fixture *f = *state;
	struct master_key *key = NULL;
	unsigned char buf[64];
	int fd;

	write_file(f->path, 5, 0600);
	assert_int_equal(master_key_create(f->path, &key, f->err, sizeof(f->err)), -EEXIST);
	assert_non_null(strstr(f->err, "already exists"));
	fd = open(f->path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf)), 5);
	close(fd);
}

static void test_missing_parent_directory_fails_clearly(void **state)
{
	struct fixture *f = *state;
	struct master_key *key = NULL;
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/nope/master.key", f->dir);
	assert_int_equal(master_key_load_or_create(path, &key, f->err, sizeof(f->err)), -ENOENT);
	assert_non_null(strstr(f->err, "cannot create"));
	assert_int_equal(master_key_load(path, &key, f->err, sizeof(f->err)), -ENOENT);
	assert_non_null(strstr(f->err, "does not exist"));
	assert_int_equal(master_key_load(NULL, &key, NULL, 0), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_first_run_creates_key_file_mode_0600_of_32_bytes),
		T(test_no_temporary_file_is_left_behind),
		T(test_restrictive_umask_still_gives_a_loadable_key),
		T(test_reload_derives_the_same_subkeys),
		T(test_subkeys_are_independent_per_purpose),
		T(test_derive_with_unknown_purpose_is_refused),
		T(test_master_key_with_group_read_is_refused),
		T(test_master_key_with_other_write_is_refused),
		T(test_master_key_of_wrong_size_is_refused),
		T(test_master_key_symlink_is_refused),
		T(test_master_key_that_is_a_directory_is_refused),
		T(test_master_key_fifo_is_refused_without_blocking),
		T(test_unreadable_master_key_is_refused),
		T(test_create_never_replaces_an_existing_file),
		T(test_missing_parent_directory_fails_clearly),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
