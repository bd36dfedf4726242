/*
 * miosactl's modules: ctl_client (endpoints, request targets, reading
 * answers from a stand-in server thread), ctl_value (secret input rules),
 * ctl_output (what reaches the terminal).
 */
#include <errno.h>
#include <pthread.h>
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

#include "ctl_client.h"
#include "ctl_output.h"
#include "ctl_value.h"
#include "http1.h"

/* ------------------------------------------------------------------ */
/* Endpoints                                                           */

static void test_url_accepts_host_port_forms(void **state)
{
	static const struct {
		const char *url, *host, *port, *authority;
	} ok[] = {
		{ "http://127.0.0.1:8080", "127.0.0.1", "8080", "127.0.0.1:8080" },
		{ "http://127.0.0.1:8080/", "127.0.0.1", "8080", "127.0.0.1:8080" },
		{ "HTTP://broker.internal:1", "broker.internal", "1", "broker.internal:1" },
		{ "http://[::1]:65535", "::1", "65535", "[::1]:65535" },
		{ "http://localhost", "localhost", "80", "localhost" },
	};
	struct ctl_endpoint ep;
	char err[CTL_ERR_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(ctl_endpoint_url(ok[i].url, &ep, err, sizeof(err)), 0);
		assert_int_equal(ep.transport, CTL_TRANSPORT_TCP);
		assert_string_equal(ep.host, ok[i].host);
		assert_string_equal(ep.port, ok[i].port);
		assert_string_equal(ep.authority, ok[i].authority);
	}
}

static void test_url_refuses_everything_else(void **state)
{
	static const struct {
		const char *url;
		int r;
		const char *why;
	} bad[] = {
		{ "https://h:1", -EPROTONOSUPPORT, "no TLS" },
		{ "ftp://h:1", -EINVAL, "expected http://" },
		{ "h:1", -EINVAL, "expected http://" },
		{ "http://u:p@h:1", -EINVAL, "no user information" },
		{ "http://h:0", -EINVAL, "port must be" },
		{ "http://h:65536", -EINVAL, "port must be" },
		{ "http://h:1x", -EINVAL, "port must be" },
		{ "http://h:", -EINVAL, "port must be" },
		{ "http://h:1/v1", -EINVAL, "no path" },
		{ "http://h:1?x=1", -EINVAL, "no path" },
		{ "http://h:1#f", -EINVAL, "no path" },
		{ "http://:1", -EINVAL, "invalid host" },
		{ "http://h h:1", -EINVAL, "invalid host" },
		{ "http://h%41:1", -EINVAL, "invalid host" },
		{ "http://[::1:1", -EINVAL, "unterminated" },
		{ "http://[::1]x", -EINVAL, "expected ':'" },
		{ "http://[fe80::1%eth0]:1", -EINVAL, "invalid IPv6" },
		{ "http://[]:1", -EINVAL, "invalid IPv6" },
	};
	struct ctl_endpoint ep = { .port = "keep" };
	char err[CTL_ERR_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(ctl_endpoint_url(bad[i].url, &ep, err, sizeof(err)), bad[i].r);
		assert_non_null(strstr(err, bad[i].why));
		assert_string_equal(ep.port, "keep"); /* ret_* untouched on failure */
	}
}

static void test_unix_path_limits(void **state)
{
	char path[200], err[CTL_ERR_MAX];
	struct ctl_endpoint ep;

	(void)state;
	memset(path, 'a', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	assert_int_equal(ctl_endpoint_unix(path, &ep, err, sizeof(err)), -ENAMETOOLONG);
	assert_int_equal(ctl_endpoint_unix("", &ep, err, sizeof(err)), -EINVAL);
	path[107] = '\0';
	assert_int_equal(ctl_endpoint_unix(path, &ep, err, sizeof(err)), 0);
	path[108 - 1] = 'a';
	path[108] = '\0';
	assert_int_equal(ctl_endpoint_unix(path, &ep, err, sizeof(err)), -ENAMETOOLONG);
}

/* ------------------------------------------------------------------ */
/* Request targets                                                     */

static void test_target_percent_encodes_segments_and_query(void **state)
{
	struct ctl_target t;

	(void)state;
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1/tenants");
	ctl_target_add_segment(&t, "a/b c%\xc3\xa4");
	ctl_target_add_segment(&t, "..");
	ctl_target_add_segment(&t, "Az09-._~");
	ctl_target_add_query(&t, "external_user_id", "alice@example.com");
	ctl_target_add_query(&t, "x", "a&b=c?#");
	assert_string_equal(ctl_target_get(&t),
			    "/v1/tenants/a%2Fb%20c%25%C3%A4/../Az09-._~"
			    "?external_user_id=alice%40example.com&x=a%26b%3Dc%3F%23");
}

static void test_target_overflow_is_sticky(void **state)
{
	char big[CTL_TARGET_MAX];
	struct ctl_target t;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ctl_target_init(&t);
	ctl_target_add(&t, "/v1");
	ctl_target_add_segment(&t, big);
	assert_null(ctl_target_get(&t));
	ctl_target_add(&t, "/ok");
	assert_null(ctl_target_get(&t));
}

/* ------------------------------------------------------------------ */
/* Reading answers: a stand-in server on a Unix socket                 */

struct stand_in {
	char dir[64];
	char path[108];
	int lfd;
	const char *answer;       /* sent verbatim after the request head */
	size_t answer_len;
	bool hang;                /* send nothing; wait for the client to go */
	bool linger;              /* answer, then keep the connection open */
	char request[65536];      /* what the client sent (head + body) */
	size_t request_len;
	pthread_t thread;
};

static void *stand_in_run(void *arg)
{
	struct stand_in *s = arg;
	int fd = accept(s->lfd, NULL, NULL);
	char buf[4096];

	if (fd < 0)
		return NULL;
	/* Read until the head ends and Content-Length bytes follow. */
	for (;;) {
		ssize_t n = read(fd, s->request + s->request_len,
				 sizeof(s->request) - 1 - s->request_len);
		char *end, *cl;

		if (n <= 0)
			break;
		s->request_len += (size_t)n;
		s->request[s->request_len] = '\0';
		end = strstr(s->request, "\r\n\r\n");
		if (!end)
			continue;
		cl = strstr(s->request, "Content-Length: ");
		if (!cl || cl > end ||
		    s->request_len >= (size_t)(end + 4 - s->request) + strtoul(cl + 16, NULL, 10))
			break;
	}
	if (s->hang) {
		while (read(fd, buf, sizeof(buf)) > 0)
			;
	} else {
		for (size_t off = 0; off < s->answer_len;) {
			ssize_t w = send(fd, s->answer + off, s->answer_len - off, MSG_NOSIGNAL);

			if (w <= 0)
				break;
			off += (size_t)w;
		}
		while (s->linger && read(fd, buf, sizeof(buf)) > 0)
			;
	}
	close(fd);
	return NULL;
}

static void stand_in_start(struct stand_in *s, const char *answer, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(s, 0, sizeof(*s));
	snprintf(s->dir, sizeof(s->dir), "/tmp/test_ctl.XXXXXX");
	assert_non_null(mkdtemp(s->dir));
	snprintf(s->path, sizeof(s->path), "%s/s", s->dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->path);
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s->lfd >= 0);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s->lfd, 1), 0);
	s->answer = answer;
	s->answer_len = len;
	assert_int_equal(pthread_create(&s->thread, NULL, stand_in_run, s), 0);
}

static void stand_in_stop(struct stand_in *s)
{
	pthread_join(s->thread, NULL);
	close(s->lfd);
	unlink(s->path);
	rmdir(s->dir);
}

/* One GET through a stand-in answering `answer`; returns ctl_client_call's result. */
static int call_with(const char *answer, size_t len, struct ctl_response *resp, char *err,
		     size_t err_size, struct stand_in *s)
{
	struct ctl_request req = { .method = "GET", .target = "/v1/health" };
	struct ctl_endpoint ep;
	int r;

	stand_in_start(s, answer, len);
	assert_int_equal(ctl_endpoint_unix(s->path, &ep, err, err_size), 0);
	r = ctl_client_call(&ep, &req, 2000, resp, err, err_size);
	stand_in_stop(s);
	return r;
}

#define CALL(answer, resp, err, s) call_with(answer, sizeof(answer) - 1, resp, err, sizeof(err), s)

static void test_call_reads_content_length_answer(void **state)
{
	static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
				     "Content-Length: 15\r\n\r\n{\"status\":\"ok\"}";
	static struct stand_in s;
	struct ctl_response resp;
	char err[CTL_ERR_MAX];

	(void)state;
	assert_int_equal(CALL(answer, &resp, err, &s), 0);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "{\"status\":\"ok\"}");
	assert_int_equal(resp.body_len, 15);
	assert_non_null(strstr(s.request, "GET /v1/health HTTP/1.1\r\nHost: localhost\r\n"));
	assert_non_null(strstr(s.request, "Connection: close\r\n"));
	assert_null(strstr(s.request, "Content-Length"));
	ctl_response_free(&resp);
}

static void test_call_decodes_chunked_and_skips_interim(void **state)
{
	static const char answer[] = "HTTP/1.1 100 Continue\r\n\r\n"
				     "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, POST\r\n"
				     "Transfer-Encoding: chunked\r\n\r\n"
				     "3\r\n{\"e\r\n6;ext=1\r\nrror\":\r\n3\r\n\"x\"\r\n1\r\n}\r\n0\r\n\r\n";
	static struct stand_in s;
	struct ctl_response resp;
	char err[CTL_ERR_MAX];

	(void)state;
	assert_int_equal(CALL(answer, &resp, err, &s), 0);
	assert_int_equal(resp.status, 405);
	assert_string_equal(resp.allow, "GET, POST");
	assert_string_equal(resp.body, "{\"error\":\"x\"}");
	ctl_response_free(&resp);
}

/* Regression: a complete answer ends the call even if the peer keeps the
 * connection open (it used to wait for EOF when the last read held data). */
static void test_call_returns_when_the_body_is_complete(void **state)
{
	static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
	struct ctl_request req = { .method = "GET", .target = "/v1/health" };
	static struct stand_in s;
	struct ctl_endpoint ep;
	struct ctl_response resp;
	char err[CTL_ERR_MAX];

	(void)state;
	stand_in_start(&s, answer, sizeof(answer) - 1);
	s.linger = true;
	assert_int_equal(ctl_endpoint_unix(s.path, &ep, err, sizeof(err)), 0);
	assert_int_equal(ctl_client_call(&ep, &req, 2000, &resp, err, sizeof(err)), 0);
	assert_string_equal(resp.body, "{}");
	ctl_response_free(&resp);
	stand_in_stop(&s);
}

static void test_call_no_content(void **state)
{
	static const char answer[] = "HTTP/1.1 204 No Content\r\n\r\n";
	static struct stand_in s;
	struct ctl_response resp;
	char err[CTL_ERR_MAX];

	(void)state;
	assert_int_equal(CALL(answer, &resp, err, &s), 0);
	assert_int_equal(resp.status, 204);
	assert_int_equal(resp.body_len, 0);
	assert_string_equal(resp.body, "");
	ctl_response_free(&resp);
}

static void test_call_until_close_body(void **state)
{
	static const char answer[] = "HTTP/1.1 200 OK\r\n\r\n{\"a\":1}";
	static struct stand_in s;
	struct ctl_response resp;
	char err[CTL_ERR_MAX];

	(void)state;
	assert_int_equal(CALL(answer, &resp, err, &s), 0);
	assert_string_equal(resp.body, "{\"a\":1}");
	ctl_response_free(&resp);
}

static void test_call_refuses_malformed_answers(void **state)
{
	static const char *const bad[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.1 200 OK\nContent-Length: 2\n\n{}",
		"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
	};
	static struct stand_in s;
	struct ctl_response resp = { .status = -1 };
	char err[CTL_ERR_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_true(call_with(bad[i], strlen(bad[i]), &resp, err, sizeof(err), &s) < 0);
		assert_int_equal(resp.status, -1); /* untouched */
		assert_non_null(strstr(err, s.path));
	}
}

static void test_call_refuses_truncated_answers(void **state)
{
	static const char *const bad[] = {
		"",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
		"HTTP/1.1 200 OK\r\nContent-Le",
	};
	static struct stand_in s;
	struct ctl_response resp;
	char err[CTL_ERR_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_true(call_with(bad[i], strlen(bad[i]), &resp, err, sizeof(err), &s) < 0);
}

static void test_call_caps_the_answer(void **state)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 4194305\r\n\r\n";
	static struct stand_in s;
	struct ctl_response resp;
	char err[CTL_ERR_MAX];

	(void)state;
	assert_int_equal(call_with(head, sizeof(head) - 1, &resp, err, sizeof(err), &s),
			 -HTTP1_E_BODY_TOO_LARGE);
	assert_non_null(strstr(err, "over 4194304 bytes"));
}

static void test_call_times_out(void **state)
{
	struct ctl_request req = { .method = "GET", .target = "/v1/health" };
	static struct stand_in s;
	struct ctl_endpoint ep;
	struct ctl_response resp;
	char err[CTL_ERR_MAX];

	(void)state;
	stand_in_start(&s, "", 0);
	s.hang = true;
	assert_int_equal(ctl_endpoint_unix(s.path, &ep, err, sizeof(err)), 0);
	assert_int_equal(ctl_client_call(&ep, &req, 1000, &resp, err, sizeof(err)), -ETIMEDOUT);
	assert_non_null(strstr(err, "within 1 s"));
	stand_in_stop(&s);
}

/* Streaming (GET /v1/audit/tail): a 200's content goes to on_data. */
struct stream_sink {
	char buf[256];
	size_t len;
	int calls;
	int fail_with;
};

static int stream_sink_data(void *userdata, const char *data, size_t len)
{
	struct stream_sink *k = userdata;

	k->calls++;
	if (k->fail_with)
		return k->fail_with;
	assert_true(len < sizeof(k->buf) - k->len);
	memcpy(k->buf + k->len, data, len);
	k->len += len;
	return 0;
}

static int stream_with(const char *answer, size_t len, struct stream_sink *k,
		       struct ctl_response *resp, char *err, size_t err_size)
{
	struct ctl_request req = { .method = "GET", .target = "/v1/audit/tail",
				   .on_data = stream_sink_data, .userdata = k };
	static struct stand_in s;
	struct ctl_endpoint ep;
	int r;

	stand_in_start(&s, answer, len);
	assert_int_equal(ctl_endpoint_unix(s.path, &ep, err, err_size), 0);
	r = ctl_client_call(&ep, &req, 2000, resp, err, err_size);
	stand_in_stop(&s);
	return r;
}

static void test_call_streams_a_200_to_on_data(void **state)
{
	static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
				     "Transfer-Encoding: chunked\r\n\r\n"
				     "8\r\n{\"id\":1}\r\n9\r\n\n{\"id\":2}\r\n1\r\n\n\r\n0\r\n\r\n";
	struct stream_sink k = { .len = 0 };
	struct ctl_response resp;
	char err[CTL_ERR_MAX];

	(void)state;
	assert_int_equal(stream_with(answer, sizeof(answer) - 1, &k, &resp, err, sizeof(err)), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body_len, 0); /* the content went to on_data */
	assert_int_equal(k.len, 18);
	assert_memory_equal(k.buf, "{\"id\":1}\n{\"id\":2}\n", 18);
	assert_true(k.calls >= 3);
	ctl_response_free(&resp);
}

static void test_call_stream_reads_an_error_whole(void **state)
{
	static const char answer[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 17\r\n\r\n"
				     "{\"error\":\"x\",\"m\"}";
	struct stream_sink k = { .len = 0 };
	struct ctl_response resp;
	char err[CTL_ERR_MAX];

	(void)state;
	assert_int_equal(stream_with(answer, sizeof(answer) - 1, &k, &resp, err, sizeof(err)), 0);
	assert_int_equal(resp.status, 400);
	assert_string_equal(resp.body, "{\"error\":\"x\",\"m\"}");
	assert_int_equal(k.calls, 0);
	ctl_response_free(&resp);
}

static void test_call_stream_stops_when_on_data_fails(void **state)
{
	static const char answer[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				     "2\r\n{}\r\n2\r\n{}\r\n0\r\n\r\n";
	struct stream_sink k = { .fail_with = -EPIPE };
	struct ctl_response resp;
	char err[CTL_ERR_MAX];

	(void)state;
	assert_int_equal(stream_with(answer, sizeof(answer) - 1, &k, &resp, err, sizeof(err)),
			 -EPIPE);
	assert_int_equal(k.calls, 1);
	assert_string_equal(err, ""); /* the callback said why */
}

static void test_call_sends_body_and_bearer_only_over_tcp(void **state)
{
	static const char answer[] = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}";
	static const char body[] = "{\"value\":\"v\"}";
	struct ctl_request req = {
		.method = "PUT", .target = "/v1/x", .bearer = "msk_live_k",
		.body = (const uint8_t *)body, .body_len = sizeof(body) - 1, .has_body = true,
	};
	static struct stand_in s;
	struct ctl_endpoint ep;
	struct ctl_response resp;
	char err[CTL_ERR_MAX];

	(void)state;
	stand_in_start(&s, answer, sizeof(answer) - 1);
	assert_int_equal(ctl_endpoint_unix(s.path, &ep, err, sizeof(err)), 0);
	assert_int_equal(ctl_client_call(&ep, &req, 2000, &resp, err, sizeof(err)), 0);
	stand_in_stop(&s);
	assert_int_equal(resp.status, 201);
	assert_non_null(strstr(s.request, "Content-Type: application/json\r\nContent-Length: 13\r\n"
					  "\r\n{\"value\":\"v\"}"));
	assert_null(strstr(s.request, "Authorization"));
	ctl_response_free(&resp);
}

static void test_call_refuses_header_injection_in_the_key(void **state)
{
	struct ctl_request req = { .method = "GET", .target = "/", .bearer = "k\r\nX: 1" };
	struct ctl_endpoint ep;
	struct ctl_response resp;
	char err[CTL_ERR_MAX];

	(void)state;
	assert_int_equal(ctl_endpoint_url("http://127.0.0.1:1", &ep, err, sizeof(err)), 0);
	assert_int_equal(ctl_client_call(&ep, &req, 1000, &resp, err, sizeof(err)), -EINVAL);
	assert_null(strstr(err, "k\r\n"));
}

static void test_call_names_the_socket_when_it_cannot_connect(void **state)
{
	struct ctl_request req = { .method = "GET", .target = "/" };
	struct ctl_endpoint ep;
	struct ctl_response resp;
	char err[CTL_ERR_MAX];

	(void)state;
	assert_int_equal(ctl_endpoint_unix("/nonexistent/miosa.sock", &ep, err, sizeof(err)), 0);
	assert_int_equal(ctl_client_call(&ep, &req, 1000, &resp, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/miosa.sock"));
	assert_non_null(strstr(err, "No such file"));
}

/* ------------------------------------------------------------------ */
/* Secret values                                                       */

/* Feed bytes through a pipe to ctl_value_read_fd. */
static int value_of(const char *bytes, size_t len, struct ctl_value *v)
{
	char err[CTL_ERR_MAX];
	int p[2], r;

	assert_int_equal(pipe(p), 0);
	if (len > 0) /* fits the pipe buffer (64 KiB) */
		assert_int_equal(write(p[1], bytes, len), (ssize_t)len);
	close(p[1]);
	r = ctl_value_read_fd(p[0], "name", v, err, sizeof(err));
	close(p[0]);
	return r;
}

static void test_value_strips_exactly_one_line_ending(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "abc\n", "abc" },         { "abc\r\n", "abc" },     { "abc", "abc" },
		{ "abc\n\n", "abc\n" },     { "abc\r\n\r\n", "abc\r\n" }, { "abc\r", "abc\r" },
		{ "\tx y \n", "\tx y " },   { "\xc3\xa4\n", "\xc3\xa4" },
		{ "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80" },
	};
	struct ctl_value v;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(value_of(cases[i].in, strlen(cases[i].in), &v), 0);
		assert_int_equal(v.len, strlen(cases[i].out));
		assert_memory_equal(v.bytes, cases[i].out, v.len);
		ctl_value_free(&v);
		assert_null(v.bytes);
	}
}

static void test_value_refusals(void **state)
{
	static const struct {
		const char *in;
		int r;
	} cases[] = {
		{ "", -ENODATA },          { "\n", -ENODATA },       { "\r\n", -ENODATA },
		{ "a\xff", -EILSEQ },      { "\xc0\x80", -EILSEQ },  { "\xed\xa0\x80", -EILSEQ },
		{ "\xf4\x90\x80\x80", -EILSEQ }, { "\xe2\x82", -EILSEQ },
	};
	struct ctl_value v = { .bytes = (unsigned char *)"untouched" };

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(value_of(cases[i].in, strlen(cases[i].in), &v), cases[i].r);
		assert_string_equal((const char *)v.bytes, "untouched");
	}
}

static void test_value_size_limit(void **state)
{
	static char buf[CTL_VALUE_MAX + 3];
	struct ctl_value v;

	(void)state;
	memset(buf, 'v', sizeof(buf));
	buf[CTL_VALUE_MAX] = '\r';
	buf[CTL_VALUE_MAX + 1] = '\n';
	assert_int_equal(value_of(buf, CTL_VALUE_MAX + 2, &v), 0);
	assert_int_equal(v.len, CTL_VALUE_MAX);
	ctl_value_free(&v);
	assert_int_equal(value_of(buf, CTL_VALUE_MAX, &v), 0);
	ctl_value_free(&v);
	memset(buf, 'v', sizeof(buf));
	assert_int_equal(value_of(buf, CTL_VALUE_MAX + 1, &v), -EFBIG);
	assert_int_equal(value_of(buf, CTL_VALUE_MAX + 3, &v), -EFBIG);
	buf[CTL_VALUE_MAX + 1] = '\n';
	assert_int_equal(value_of(buf, CTL_VALUE_MAX + 2, &v), -EFBIG);
}

static void test_value_from_a_missing_file(void **state)
{
	struct ctl_value v;
	char err[CTL_ERR_MAX];

	(void)state;
	assert_int_equal(ctl_value_read("/nonexistent/value", "n", &v, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/value"));
}

/* ------------------------------------------------------------------ */
/* Output                                                              */

static void test_sanitize_keeps_printable_ascii_only(void **state)
{
	char out[16];

	(void)state;
	ctl_output_sanitize("a\x1b[31mb\x07\x7f\xc3\xa4", out, sizeof(out));
	assert_string_equal(out, "a?[31mb????");
	ctl_output_sanitize("0123456789abcdefXYZ", out, sizeof(out));
	assert_string_equal(out, "0123456789abcde");
	ctl_output_sanitize(NULL, out, sizeof(out));
	assert_string_equal(out, "");
}

static void test_cells(void **state)
{
	static const struct {
		const char *json;
		bool onoff;
		const char *cell;
	} cases[] = {
		{ "null", false, "-" },
		{ "[]", false, "-" },
		{ "\"x\\u001by\"", false, "x?y" },
		{ "42", false, "42" },
		{ "true", false, "yes" },
		{ "false", true, "off" },
		{ "[\"a\",\"*.b\"]", false, "a,*.b" },
		{ "[[1,[2]],{\"k\":\"v\"}]", false, "[1,[2]],{\"k\":\"v\"}" },
		{ "{\"kind\":\"uds\",\"uds\":\"/run/x\"}", false, "uds:/run/x" },
		{ "{\"kind\":\"vsock\",\"cid\":7}", false, "vsock:7" },
		{ "{\"kind\":\"none\"}", false, "none" },
	};
	char out[CTL_TEXT_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *j = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);

		assert_non_null(j);
		ctl_output_cell(j, cases[i].onoff, out, sizeof(out));
		assert_string_equal(out, cases[i].cell);
		json_decref(j);
	}
	ctl_output_cell(NULL, false, out, sizeof(out));
	assert_string_equal(out, "-");
}

static void test_table_and_view(void **state)
{
	static const struct ctl_column cols[] = { { "ID", "id" }, { "ON", "s.on" }, { "N", "n" } };
	static const char *const keys[] = { "id", "s.on", "missing", NULL };
	json_t *rows = json_loads("[{\"id\":\"a\",\"s\":{\"on\":true},\"n\":null},"
				  "{\"id\":\"long-id\",\"s\":{\"on\":false},\"n\":[\"x\"]}]", 0, NULL);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	(void)state;
	assert_non_null(rows);
	assert_int_equal(ctl_output_table(f, rows, cols, 3), 0);
	assert_int_equal(ctl_output_view(f, json_array_get(rows, 0), keys, true), 0);
	fclose(f);
	assert_string_equal(buf, "ID       ON   N\n"
				 "a        yes  -\n"
				 "long-id  no   x\n"
				 "id:  a\n"
				 "on:  on\n");
	free(buf);
	json_decref(rows);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_accepts_host_port_forms),
		cmocka_unit_test(test_url_refuses_everything_else),
		cmocka_unit_test(test_unix_path_limits),
		cmocka_unit_test(test_target_percent_encodes_segments_and_query),
		cmocka_unit_test(test_target_overflow_is_sticky),
		cmocka_unit_test(test_call_reads_content_length_answer),
		cmocka_unit_test(test_call_decodes_chunked_and_skips_interim),
		cmocka_unit_test(test_call_returns_when_the_body_is_complete),
		cmocka_unit_test(test_call_no_content),
		cmocka_unit_test(test_call_until_close_body),
		cmocka_unit_test(test_call_refuses_malformed_answers),
		cmocka_unit_test(test_call_refuses_truncated_answers),
		cmocka_unit_test(test_call_caps_the_answer),
		cmocka_unit_test(test_call_times_out),
		cmocka_unit_test(test_call_streams_a_200_to_on_data),
		cmocka_unit_test(test_call_stream_reads_an_error_whole),
		cmocka_unit_test(test_call_stream_stops_when_on_data_fails),
		cmocka_unit_test(test_call_sends_body_and_bearer_only_over_tcp),
		cmocka_unit_test(test_call_refuses_header_injection_in_the_key),
		cmocka_unit_test(test_call_names_the_socket_when_it_cannot_connect),
		cmocka_unit_test(test_value_strips_exactly_one_line_ending),
		cmocka_unit_test(test_value_refusals),
		cmocka_unit_test(test_value_size_limit),
		cmocka_unit_test(test_value_from_a_missing_file),
		cmocka_unit_test(test_sanitize_keeps_printable_ascii_only),
		cmocka_unit_test(test_cells),
		cmocka_unit_test(test_table_and_view),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
