/* Tests for guest/transport.h: spec parsing, and the unix back end against
 * a real listening socket (the vsock back end never runs outside a VM:
 * FACTS.md, a machine's /dev/vsock leads to its hypervisor). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "transport.h"

static void test_vsock_spec_parses(void **state)
{
	struct transport_spec s;

	(void)state;
	assert_int_equal(transport_spec_parse("vsock:2:1024", &s), 0);
	assert_int_equal(s.kind, TRANSPORT_VSOCK);
	assert_int_equal(s.cid, 2);
	assert_int_equal(s.port, 1024);
	assert_int_equal(transport_spec_parse("vsock:4294967295:4294967295", &s), 0);
	assert_int_equal(s.cid, UINT32_MAX);
	assert_int_equal(s.port, UINT32_MAX);
	assert_int_equal(transport_spec_parse("vsock:0:1", &s), 0);
	assert_int_equal(s.cid, 0);
}

static void test_default_transport_is_host_cid_port_1024(void **state)
{
	struct transport_spec s;

	(void)state;
	assert_int_equal(transport_spec_parse(TRANSPORT_DEFAULT, &s), 0);
	assert_int_equal(s.kind, TRANSPORT_VSOCK);
	assert_int_equal(s.cid, 2);
	assert_int_equal(s.port, TRANSPORT_HOST_PORT);
}

static void test_unix_spec_dials_path_1024(void **state)
{
	struct transport_spec s;
	char text[TRANSPORT_SPEC_TEXT_MAX];

	(void)state;
	assert_int_equal(transport_spec_parse("unix:/run/sbx/v.sock", &s), 0);
	assert_int_equal(s.kind, TRANSPORT_UNIX);
	assert_string_equal(s.path, "/run/sbx/v.sock_1024");
	transport_spec_format(&s, text, sizeof(text));
	assert_string_equal(text, "unix:/run/sbx/v.sock_1024");
	assert_int_equal(transport_spec_parse("vsock:3:5000", &s), 0);
	transport_spec_format(&s, text, sizeof(text));
	assert_string_equal(text, "vsock:3:5000");
}

static void test_invalid_specs_are_refused_without_writing(void **state)
{
	static const char *const bad[] = {
		"", "vsock", "vsock:", "vsock:2", "vsock:2:", "vsock::1024", "vsock:a:1",
		"vsock:-1:1", "vsock:+2:1", "vsock:2:0", "vsock:02:1024", "vsock:2:01024",
		"vsock:4294967296:1", "vsock:2:99999999999", "vsock:2:1024:5", "vsock:2: 1024",
		"unix:", "tcp:127.0.0.1:1024", "UNIX:/x", "Vsock:2:1024",
	};
	struct transport_spec s;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&s, 0x5a, sizeof(s));
		assert_int_equal(transport_spec_parse(bad[i], &s), -EINVAL);
		assert_int_equal(s.cid, 0x5a5a5a5a);
	}
}

/* PATH + "_1024" + NUL must fit in sun_path. */
static void test_unix_path_length_limit(void **state)
{
	char text[300] = "unix:";
	struct transport_spec s;

	(void)state;
	memset(text + 5, 'p', TRANSPORT_PATH_MAX);
	text[5 + TRANSPORT_PATH_MAX] = '\0';
	assert_int_equal(transport_spec_parse(text, &s), 0);
	assert_int_equal(strlen(s.path) + 1, sizeof(s.path));
	text[5 + TRANSPORT_PATH_MAX] = 'p';
	text[6 + TRANSPORT_PATH_MAX] = '\0';
	assert_int_equal(transport_spec_parse(text, &s), -EINVAL);
}

/* --- The unix back end ---------------------------------------------------------------- */

struct dial {
	int calls;
	int status;
};

static void on_connected(void *data, int status)
{
	struct dial *d = data;

	d->calls++;
	d->status = status;
}

static int listen_unix(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_true(strlen(path) < sizeof(addr.sun_path));
	memcpy(addr.sun_path, path, strlen(path) + 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

static void dial(const char *spec_text, struct dial *d, bool cancel)
{
	struct transport_connect *req = NULL;
	struct transport_spec spec;
	uv_loop_t loop;
	uv_pipe_t pipe;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(transport_spec_parse(spec_text, &spec), 0);
	assert_int_equal(transport_connect(&loop, &spec, &pipe, on_connected, d, &req), 0);
	assert_non_null(req);
	if (cancel)
		transport_connect_cancel(req);
	else
		while (d->calls == 0)
			uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&pipe, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_unix_connect_reaches_the_listener_at_path_1024(void **state)
{
	char dir[] = "/tmp/miosa-tr-XXXXXX", sock[128], spec[160];
	struct dial d = { 0 };
	int lfd, cfd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/v_1024", dir);
	snprintf(spec, sizeof(spec), "unix:%s/v", dir);
	lfd = listen_unix(sock);
	dial(spec, &d, false);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.status, 0);
	cfd = accept(lfd, NULL, NULL);
	assert_true(cfd >= 0);
	close(cfd);
	close(lfd);
	unlink(sock);
	rmdir(dir);
}

static void test_unix_connect_to_nothing_reports_an_error(void **state)
{
	struct dial d = { 0 };

	(void)state;
	dial("unix:/nonexistent/miosa/v", &d, false);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.status, UV_ENOENT);
}

static void test_cancelled_connect_never_calls_back(void **state)
{
	struct dial d = { 0 };

	(void)state;
	dial("unix:/nonexistent/miosa/v", &d, true);
	assert_int_equal(d.calls, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vsock_spec_parses),
		cmocka_unit_test(test_default_transport_is_host_cid_port_1024),
		cmocka_unit_test(test_unix_spec_dials_path_1024),
		cmocka_unit_test(test_invalid_specs_are_refused_without_writing),
		cmocka_unit_test(test_unix_path_length_limit),
		cmocka_unit_test(test_unix_connect_reaches_the_listener_at_path_1024),
		cmocka_unit_test(test_unix_connect_to_nothing_reports_an_error),
		cmocka_unit_test(test_cancelled_connect_never_calls_back),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
