/* uds_path: what a listener may take over (nothing, a stale socket) and what
 * it must refuse (a live listener, anything that is not a socket). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "uds_path.h"

struct t {
	char dir[FIXTURE_DIR_MAX];
	struct sockaddr_un sun;
};

static int setup(void **state)
{
	static struct t t;

	memset(&t, 0, sizeof(t));
	if (fixture_tmpdir("uds", t.dir) < 0)
		return -1;
	t.sun.sun_family = AF_UNIX;
	snprintf(t.sun.sun_path, sizeof(t.sun.sun_path), "%s/s", t.dir);
	*state = &t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;

	return fixture_rmtree(t->dir);
}

/* A bound socket; listening or not. */
static int bound(const struct sockaddr_un *sun, int listening)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (const struct sockaddr *)sun, sizeof(*sun)), 0);
	if (listening)
		assert_int_equal(listen(fd, 1), 0);
	return fd;
}

static void test_absent_path_is_free(void **state)
{
	struct t *t = *state;
	bool removed = true;

	assert_int_equal(uds_path_clear(&t->sun, &removed, &(const char *){ NULL }), 0);
	assert_false(removed);
	assert_int_equal(uds_path_probe(&t->sun), 0);
}

static void test_stale_socket_is_removed(void **state)
{
	struct t *t = *state;
	bool removed = false;
	struct stat st;

	close(bound(&t->sun, 1)); /* the listener died without unlinking */
	assert_int_equal(uds_path_probe(&t->sun), 0);
	assert_int_equal(uds_path_clear(&t->sun, &removed, &(const char *){ NULL }), 0);
	assert_true(removed);
	assert_int_equal(lstat(t->sun.sun_path, &st), -1);
	assert_int_equal(errno, ENOENT);
}

static void test_live_listener_is_refused(void **state)
{
	struct t *t = *state;
	const char *why = NULL;
	bool removed = false;
	int fd = bound(&t->sun, 1);
	struct stat st;

	assert_int_equal(uds_path_probe(&t->sun), 1);
	assert_int_equal(uds_path_clear(&t->sun, &removed, &why), -EADDRINUSE);
	assert_string_equal(why, "is in use by another process");
	assert_int_equal(lstat(t->sun.sun_path, &st), 0); /* left in place */
	close(fd);
}

static void test_non_socket_is_never_replaced(void **state)
{
	struct t *t = *state;
	const char *why = NULL;
	bool removed = false;
	int fd = open(t->sun.sun_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	struct stat st;

	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(uds_path_clear(&t->sun, &removed, &why), -EEXIST);
	assert_non_null(strstr(why, "not a socket"));
	assert_int_equal(lstat(t->sun.sun_path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(unlink(t->sun.sun_path), 0);
	assert_int_equal(symlink("/nonexistent", t->sun.sun_path), 0);
	assert_int_equal(uds_path_clear(&t->sun, &removed, &why), -EEXIST);
	assert_int_equal(lstat(t->sun.sun_path, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_absent_path_is_free, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_socket_is_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_listener_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_non_socket_is_never_replaced, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
