/*
 * fake_broker — a small but real wire-protocol peer for miosa-init alone,
 * used by guest_agent.sh until the broker's egress side exists.
 *
 *   fake_broker --uds PATH --ca-pem FILE --placeholder TOK
 *
 * Listens on PATH_1024 (the hybrid-vsock convention the agent's
 * --transport unix:PATH dials) and serves every stream kind through
 * proto/frame.h and proto/wire.h, exactly as the broker must:
 *   control: Hello -> HelloAck (sandbox "sbx-test", OPENAI_API_KEY=TOK, the
 *            CA, listen ports 2525 8080 8443 9000, limits), then a scripted
 *            scenario of pings, env updates and execs whose results it
 *            checks, printing "PASS name" / "FAIL name: why" lines and
 *            "SCENARIO OK" or "SCENARIO FAILED" at the end;
 *   dns:     A queries get 198.18.0.5 (AAAA: no data); "wrong-id.test" gets
 *            an answer with another ID, "big.test" 40 A records (> 512
 *            bytes: the agent must set TC over UDP);
 *   egress:  port 8443 refused; port 2525 sends a banner in the same write
 *            as OpenResult, then echoes; an HTTP GET gets a 200 naming the
 *            destination; anything else is echoed, half-close propagated.
 * One thread per connection, blocking I/O: it is a test peer.  Stdout
 * carries the result lines (line-buffered); stderr the diagnostics.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "frame.h"
#include "wire.h"

#define SYNTH_A "\xc6\x12\x00\x05" /* 198.18.0.5 */
#define SECOND_PLACEHOLDER "miosa-tok-0123456789abcdef0123456789abcdef"
#define REAL_VALUE "sk-real-secret-never-in-the-guest"

static const char *ca_pem;
static const char *placeholder;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

__attribute__((format(printf, 1, 2)))
static void say(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&out_lock);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

/* --- Framed I/O over a blocking socket -------------------------------------------- */

struct conn {
	int fd;
	struct frame_decoder *dec;
	uint8_t buf[16384];
	size_t off, len; /* unread bytes of buf */
};

static int write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The next frame; its view is valid until the next call.  -1 at EOF/error. */
static int read_frame(struct conn *c, struct frame *f)
{
	for (;;) {
		size_t used = 0;
		ssize_t n;
		int r;

		if (c->len > 0) {
			r = frame_decoder_feed(c->dec, c->buf + c->off, c->len, &used, f);
			if (r < 0)
				return -1;
			c->off += used;
			c->len -= used;
			if (r == FRAME_READY)
				return 0;
		}
		c->off = 0;
		n = recv(c->fd, c->buf, sizeof(c->buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		c->len = (size_t)n;
	}
}

static int send_h2g(struct conn *c, const Miosa__HostToGuest *m)
{
	static __thread uint8_t out[FRAME_MAX_SIZE];
	struct wire_error e = { 0 };
	size_t len;

	if (wire_frame_host_to_guest(m, out, sizeof(out), &len, &e) < 0) {
		fprintf(stderr, "fake_broker: cannot frame %s.%s: %s\n", e.message, e.field, e.reason);
		return -1;
	}
	return write_all(c->fd, out, len);
}

/* --- Control: the scenario ------------------------------------------------------------- */

struct exec_result {
	char out[65536], err[65536];
	size_t out_len, err_len;
	Miosa__ExecExit__OutcomeCase outcome;
	int code;
	char start_error[300];
};

static int send_hello_ack(struct conn *c)
{
	Miosa__HostToGuest m = MIOSA__HOST_TO_GUEST__INIT;
	Miosa__HelloAck ack = MIOSA__HELLO_ACK__INIT;
	Miosa__EnvBinding b = MIOSA__ENV_BINDING__INIT, *env[] = { &b };
	Miosa__Limits limits = MIOSA__LIMITS__INIT;
	uint32_t ports[] = { 2525, 8080, 8443, 9000 };

	b.name = "OPENAI_API_KEY";
	b.placeholder = (char *)placeholder;
	limits.max_connections = 512;
	limits.exec_output_max_bytes = 1u << 20;
	limits.max_execs = 8;
	ack.sandbox_id = "sbx-test";
	ack.n_env = 1;
	ack.env = env;
	ack.ca_pem = (char *)ca_pem;
	ack.n_listen_ports = 4;
	ack.listen_ports = ports;
	ack.limits = &limits;
	m.msg_case = MIOSA__HOST_TO_GUEST__MSG_HELLO_ACK;
	m.hello_ack = &ack;
	return send_h2g(c, &m);
}

static void append(char *dst, size_t *len, size_t cap, const ProtobufCBinaryData *d)
{
	size_t n = d->len < cap - 1 - *len ? d->len : cap - 1 - *len;

	memcpy(dst + *len, d->data, n);
	*len += n;
	dst[*len] = '\0';
}

/* Reads frames until the ExecExit of id; other messages are protocol errors
 * here (the scenario runs one exec at a time). */
static int collect_exec(struct conn *c, uint64_t id, struct exec_result *res)
{
	struct frame f;

	memset(res, 0, sizeof(*res));
	while (read_frame(c, &f) == 0) {
		Miosa__GuestToHost *m = NULL;
		struct wire_error e = { 0 };

		if (wire_decode_guest_to_host(f.payload, f.len, &m, &e) < 0) {
			say("FAIL wire: agent sent %s.%s: %s", e.message, e.field, e.reason);
			return -1;
		}
		if (m->msg_case == MIOSA__GUEST_TO_HOST__MSG_EXEC_OUTPUT && m->exec_output->exec_id == id) {
			bool is_out = m->exec_output->stream == MIOSA__EXEC_OUTPUT__STREAM__STREAM_STDOUT;
			append(is_out ? res->out : res->err, is_out ? &res->out_len : &res->err_len,
			       sizeof(res->out), &m->exec_output->data);
		} else if (m->msg_case == MIOSA__GUEST_TO_HOST__MSG_EXEC_EXIT &&
			   m->exec_exit->exec_id == id) {
			const Miosa__ExecExit *x = m->exec_exit;
			res->outcome = x->outcome_case;
			res->code = x->outcome_case == MIOSA__EXEC_EXIT__OUTCOME_SIGNAL ? x->signal :
										   x->exit_code;
			if (x->outcome_case == MIOSA__EXEC_EXIT__OUTCOME_START_ERROR)
				snprintf(res->start_error, sizeof(res->start_error), "%s", x->start_error);
			wire_free_guest_to_host(m);
			return 0;
		}
		wire_free_guest_to_host(m);
	}
	say("FAIL exec %" PRIu64 ": control stream ended", id);
	return -1;
}

struct exec_spec {
	const char *name;
	const char *const *argv;
	const char *const *env; /* NAME, VALUE pairs, NULL-terminated */
	const char *stdin_data;
	uint32_t timeout_ms;
};

static int run_exec(struct conn *c, uint64_t id, const struct exec_spec *s, struct exec_result *res)
{
	Miosa__HostToGuest m = MIOSA__HOST_TO_GUEST__INIT;
	Miosa__ExecRequest req = MIOSA__EXEC_REQUEST__INIT;
	Miosa__EnvVar vars[8], *pvars[8];
	size_t n = 0;

	req.exec_id = id;
	while (s->argv[req.n_argv])
		req.n_argv++;
	req.argv = (char **)s->argv;
	for (; s->env && s->env[2 * n] && n < 8; n++) {
		vars[n] = (Miosa__EnvVar)MIOSA__ENV_VAR__INIT;
		vars[n].name = (char *)s->env[2 * n];
		vars[n].value = (char *)s->env[2 * n + 1];
		pvars[n] = &vars[n];
	}
	req.n_env = n;
	req.env = pvars;
	if (s->stdin_data) {
		req.stdin_data.data = (uint8_t *)s->stdin_data;
		req.stdin_data.len = strlen(s->stdin_data);
	}
	req.timeout_ms = s->timeout_ms;
	m.msg_case = MIOSA__HOST_TO_GUEST__MSG_EXEC;
	m.exec = &req;
	if (send_h2g(c, &m) < 0)
		return -1;
	return collect_exec(c, id, res);
}

__attribute__((format(printf, 3, 4)))
static bool check(bool ok, const char *name, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	if (ok) {
		say("PASS %s", name);
		return true;
	}
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	say("FAIL %s: %s", name, why);
	return false;
}

static bool exited(const struct exec_result *r, int code)
{
	return r->outcome == MIOSA__EXEC_EXIT__OUTCOME_EXIT_CODE && r->code == code;
}

static bool scenario_ping(struct conn *c)
{
	Miosa__HostToGuest m = MIOSA__HOST_TO_GUEST__INIT;
	Miosa__Ping ping = MIOSA__PING__INIT;
	struct frame f;
	bool ok = false;

	ping.nonce = 0x1234567890abcdefull;
	m.msg_case = MIOSA__HOST_TO_GUEST__MSG_PING;
	m.ping = &ping;
	if (send_h2g(c, &m) == 0 && read_frame(c, &f) == 0) {
		Miosa__GuestToHost *g = NULL;
		if (wire_decode_guest_to_host(f.payload, f.len, &g, NULL) == 0)
			ok = g->msg_case == MIOSA__GUEST_TO_HOST__MSG_PONG && g->pong->nonce == ping.nonce;
		wire_free_guest_to_host(g);
	}
	return check(ok, "ping-pong", "no Pong with the same nonce");
}

static bool scenario_placeholder(struct conn *c)
{
	static const char *const argv[] = { "sh", "-c", "echo $OPENAI_API_KEY", NULL };
	/* an exec may not override a binding (docs/guest.md) */
	static const char *const env[] = { "OPENAI_API_KEY", REAL_VALUE, NULL };
	const struct exec_spec s = { "placeholder", argv, env, NULL, 10000 };
	struct exec_result r;
	char want[128];

	snprintf(want, sizeof(want), "%s\n", placeholder);
	if (run_exec(c, 1, &s, &r) < 0)
		return false;
	return check(exited(&r, 0) && strcmp(r.out, want) == 0 && !strstr(r.out, REAL_VALUE),
		     "exec-placeholder-env", "stdout '%.100s', outcome %d/%d", r.out, r.outcome,
		     r.code);
}

static bool scenario_stdio(struct conn *c)
{
	static const char *const argv[] = { "sh", "-c", "cat; echo \" $X\"; echo oops >&2; exit 3",
					    NULL };
	static const char *const env[] = { "X", "from-extra-env", NULL };
	const struct exec_spec s = { "stdio", argv, env, "stdin-bytes", 10000 };
	struct exec_result r;

	if (run_exec(c, 2, &s, &r) < 0)
		return false;
	return check(exited(&r, 3) && strcmp(r.out, "stdin-bytes from-extra-env\n") == 0 &&
			     strcmp(r.err, "oops\n") == 0,
		     "exec-stdin-env-stderr-exit-code", "stdout '%.100s' stderr '%.100s' outcome %d/%d",
		     r.out, r.err, r.outcome, r.code);
}

/* Every CA variable set; the bundles hold the CA; NODE_EXTRA_CA_CERTS is it. */
static bool scenario_trust(struct conn *c)
{
	static const char *const argv[] = {
		"sh", "-c",
		"ca=$(sed -n 2p \"$NODE_EXTRA_CA_CERTS\") && test -n \"$ca\" || exit 7; "
		"for v in SSL_CERT_FILE REQUESTS_CA_BUNDLE CURL_CA_BUNDLE; do "
		"eval f=\\$$v; case \"$f\" in */ca-bundle.pem) ;; *) exit 8;; esac; "
		"grep -qF \"$ca\" \"$f\" || exit 9; done; "
		"cat \"$NODE_EXTRA_CA_CERTS\"; echo bundle-ok",
		NULL };
	const struct exec_spec s = { "trust", argv, NULL, NULL, 10000 };
	struct exec_result r;
	char want[20000];

	snprintf(want, sizeof(want), "%s%sbundle-ok\n", ca_pem,
		 ca_pem[strlen(ca_pem) - 1] == '\n' ? "" : "\n");
	if (run_exec(c, 3, &s, &r) < 0)
		return false;
	return check(exited(&r, 0) && strcmp(r.out, want) == 0, "exec-ca-bundle-variables",
		     "stdout '%.200s' stderr '%.200s' outcome %d/%d", r.out, r.err, r.outcome,
		     r.code);
}

static bool scenario_timeout_and_missing(struct conn *c)
{
	static const char *const sleep_argv[] = { "sleep", "30", NULL };
	static const char *const missing_argv[] = { "no-such-command-miosa", NULL };
	const struct exec_spec slow = { "timeout", sleep_argv, NULL, NULL, 300 };
	const struct exec_spec missing = { "missing", missing_argv, NULL, NULL, 0 };
	struct exec_result r;
	bool ok;

	if (run_exec(c, 4, &slow, &r) < 0)
		return false;
	ok = check(r.outcome == MIOSA__EXEC_EXIT__OUTCOME_TIMED_OUT, "exec-timeout-kills",
		   "outcome %d", r.outcome);
	if (run_exec(c, 5, &missing, &r) < 0)
		return false;
	return check(r.outcome == MIOSA__EXEC_EXIT__OUTCOME_START_ERROR &&
			     strcmp(r.start_error, "argv[0] not found") == 0,
		     "exec-start-error-missing-binary", "outcome %d '%s'", r.outcome,
		     r.start_error) && ok;
}

static bool scenario_env_update(struct conn *c)
{
	static const char *const argv[] = { "sh", "-c", "echo $NEW_KEY", NULL };
	const struct exec_spec s = { "env-update", argv, NULL, NULL, 10000 };
	Miosa__HostToGuest m = MIOSA__HOST_TO_GUEST__INIT;
	Miosa__EnvUpdate u = MIOSA__ENV_UPDATE__INIT;
	Miosa__EnvBinding b = MIOSA__ENV_BINDING__INIT, *set[] = { &b };
	struct exec_result r;

	b.name = "NEW_KEY";
	b.placeholder = SECOND_PLACEHOLDER;
	u.n_set = 1;
	u.set = set;
	m.msg_case = MIOSA__HOST_TO_GUEST__MSG_ENV_UPDATE;
	m.env_update = &u;
	if (send_h2g(c, &m) < 0 || run_exec(c, 6, &s, &r) < 0)
		return false;
	return check(exited(&r, 0) && strcmp(r.out, SECOND_PLACEHOLDER "\n") == 0,
		     "env-update-applies-to-next-exec", "stdout '%.100s'", r.out);
}

static bool scenario_dns_from_exec(struct conn *c)
{
	static const char *const argv[] = { "getent", "ahostsv4", "api.example.test", NULL };
	const struct exec_spec s = { "dns", argv, NULL, NULL, 10000 };
	struct exec_result r;

	if (run_exec(c, 7, &s, &r) < 0)
		return false;
	return check(exited(&r, 0) && strncmp(r.out, "198.18.0.5", 10) == 0,
		     "exec-resolves-through-stub", "stdout '%.100s' outcome %d/%d", r.out, r.outcome,
		     r.code);
}

static void *control_thread(struct conn *c)
{
	static unsigned sessions;
	bool ok = true;
	struct frame f;

	if (send_hello_ack(c) < 0)
		return NULL;
	ok &= scenario_ping(c);
	ok &= scenario_placeholder(c);
	ok &= scenario_stdio(c);
	ok &= scenario_trust(c);
	ok &= scenario_timeout_and_missing(c);
	ok &= scenario_env_update(c);
	ok &= scenario_dns_from_exec(c);
	say(ok ? "SCENARIO OK session=%u" : "SCENARIO FAILED session=%u",
	    __atomic_add_fetch(&sessions, 1, __ATOMIC_SEQ_CST));
	/* stay connected: the agent must keep this stream until we go */
	while (read_frame(c, &f) == 0)
		;
	return NULL;
}

/* --- DNS ------------------------------------------------------------------------------- */

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* The agent validated the query; only the question is looked at here. */
static size_t dns_answer(const uint8_t *q, size_t qlen, uint8_t *out, size_t cap)
{
	size_t name_end = 12, n = 0, len;
	unsigned qtype, count;
	char name[256] = "";

	while (name_end < qlen && q[name_end] != 0) {
		size_t l = q[name_end];
		if (n + l + 1 >= sizeof(name) || name_end + 1 + l >= qlen)
			return 0;
		memcpy(name + n, q + name_end + 1, l);
		n += l;
		name[n++] = '.';
		name_end += 1 + l;
	}
	name[n ? n - 1 : 0] = '\0';
	if (name_end + 5 > qlen)
		return 0;
	qtype = (unsigned)q[name_end + 1] << 8 | q[name_end + 2];
	len = name_end + 5; /* header + question */
	count = qtype == 1 ? (strcmp(name, "big.test") == 0 ? 40 : 1) : 0;
	if (len + 16 * count > cap)
		return 0;
	memcpy(out, q, len);
	put16(out + 2, 0x8180); /* QR, RD, RA, NOERROR */
	put16(out + 6, count);
	put16(out + 8, 0);
	put16(out + 10, 0); /* the query's OPT is not echoed */
	for (unsigned i = 0; i < count; i++, len += 16) {
		put16(out + len, 0xc00c);
		put16(out + len + 2, 1);
		put16(out + len + 4, 1);
		put16(out + len + 6, 0);
		put16(out + len + 8, 60);
		put16(out + len + 10, 4);
		memcpy(out + len + 12, SYNTH_A, 4);
		if (i > 0)
			out[len + 15] = (uint8_t)(5 + i);
	}
	if (strcmp(name, "wrong-id.test") == 0)
		out[0] ^= 0xff;
	return len;
}

static void serve_dns(struct conn *c, const Miosa__DnsQuery *dq)
{
	static __thread uint8_t pkt[4096], out[FRAME_MAX_SIZE];
	Miosa__DnsAnswer a = MIOSA__DNS_ANSWER__INIT;
	size_t len;

	a.packet.len = dns_answer(dq->packet.data, dq->packet.len, pkt, sizeof(pkt));
	a.packet.data = pkt;
	if (a.packet.len == 0)
		return; /* the agent times out and answers SERVFAIL */
	if (wire_frame_dns_answer(&a, out, sizeof(out), &len, NULL) == 0)
		(void)write_all(c->fd, out, len);
}

/* --- Egress ------------------------------------------------------------------------------ */

static int send_open_result(struct conn *c, bool ok, const char *reason, const char *extra)
{
	static __thread uint8_t out[FRAME_MAX_SIZE];
	Miosa__OpenResult res = MIOSA__OPEN_RESULT__INIT;
	size_t len, n = extra ? strlen(extra) : 0;

	res.status = ok ? MIOSA__OPEN_RESULT__STATUS__STATUS_OK :
			  MIOSA__OPEN_RESULT__STATUS__STATUS_REFUSED;
	res.reason = (char *)reason;
	if (wire_frame_open_result(&res, out, sizeof(out) - n, &len, NULL) < 0)
		return -1;
	/* the banner rides in the same write as the OpenResult */
	if (n > 0)
		memcpy(out + len, extra, n);
	return write_all(c->fd, out, len + n);
}

static void http_answer(struct conn *c, const char *dst)
{
	char head[8192], resp[512], body[128];
	size_t have = c->len;

	memcpy(head, c->buf + c->off, have);
	while (!memmem(head, have, "\r\n\r\n", 4) && have < sizeof(head)) {
		ssize_t n = recv(c->fd, head + have, sizeof(head) - have, 0);
		if (n <= 0)
			return;
		have += (size_t)n;
	}
	snprintf(body, sizeof(body), "fake-broker egress dst=%s\n", dst);
	snprintf(resp, sizeof(resp),
		 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
		 "Connection: close\r\n\r\n%s",
		 strlen(body), body);
	(void)write_all(c->fd, resp, strlen(resp));
	shutdown(c->fd, SHUT_WR);
	while (recv(c->fd, head, sizeof(head), 0) > 0)
		;
}

/* Echo until EOF, then half-close: the agent must pass both ends on. */
static void echo(struct conn *c)
{
	if (c->len > 0 && write_all(c->fd, c->buf + c->off, c->len) < 0)
		return;
	for (;;) {
		ssize_t n = recv(c->fd, c->buf, sizeof(c->buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || write_all(c->fd, c->buf, (size_t)n) < 0)
			break;
	}
	shutdown(c->fd, SHUT_WR);
}

static void serve_egress(struct conn *c, const Miosa__EgressOpen *eo)
{
	char ip[INET6_ADDRSTRLEN] = "?", dst[80];

	inet_ntop(eo->dst_addr.len == 4 ? AF_INET : AF_INET6, eo->dst_addr.data, ip, sizeof(ip));
	snprintf(dst, sizeof(dst), "%s:%u", ip, eo->dst_port);
	if (eo->dst_port == 8443) {
		(void)send_open_result(c, false, "fake broker refuses port 8443", NULL);
		return;
	}
	if (send_open_result(c, true, "", eo->dst_port == 2525 ? "220 fake-broker banner\r\n" : NULL) < 0)
		return;
	/* wait for the client's first bytes to pick a mode */
	if (c->len == 0) {
		ssize_t n = recv(c->fd, c->buf, sizeof(c->buf), 0);
		if (n <= 0) {
			shutdown(c->fd, SHUT_WR);
			return;
		}
		c->off = 0;
		c->len = (size_t)n;
	}
	if (c->len >= 4 && memcmp(c->buf + c->off, "GET ", 4) == 0)
		http_answer(c, dst);
	else
		echo(c);
}

/* --- Connections -------------------------------------------------------------------------- */

static void *serve(void *arg)
{
	struct conn *c = arg;
	Miosa__GuestOpen *open = NULL;
	struct wire_error e = { 0 };
	struct frame f;

	if (frame_decoder_new(&c->dec) < 0 || read_frame(c, &f) < 0)
		goto out;
	if (wire_decode_guest_open(f.payload, f.len, &open, &e) < 0) {
		say("FAIL wire: first frame %s.%s: %s", e.message, e.field, e.reason);
		goto out;
	}
	/* the decoder never consumed past the GuestOpen: raw bytes stay in buf */
	switch (open->kind_case) {
	case MIOSA__GUEST_OPEN__KIND_CONTROL:
		fprintf(stderr, "fake_broker: control stream from %s\n", open->control->agent_version);
		control_thread(c);
		break;
	case MIOSA__GUEST_OPEN__KIND_DNS:
		serve_dns(c, open->dns);
		break;
	case MIOSA__GUEST_OPEN__KIND_EGRESS:
		serve_egress(c, open->egress);
		break;
	default:
		break;
	}
out:
	wire_free_guest_open(open);
	frame_decoder_free(c->dec);
	close(c->fd);
	free(c);
	return NULL;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "re");
	char *text = NULL;
	size_t cap = 0;

	if (!f || getdelim(&text, &cap, '\0', f) < 0) {
		perror(path);
		exit(2);
	}
	fclose(f);
	return text;
}

static int listen_on(const char *base)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if ((size_t)snprintf(addr.sun_path, sizeof(addr.sun_path), "%s_1024", base) >=
	    sizeof(addr.sun_path)) {
		fprintf(stderr, "fake_broker: path too long\n");
		exit(2);
	}
	unlink(addr.sun_path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 512) < 0) {
		perror(addr.sun_path);
		exit(2);
	}
	return fd;
}

int main(int argc, char **argv)
{
	const char *uds = NULL, *ca_file = NULL;
	int ch, lfd;

	static const struct option opts[] = {
		{ "uds", required_argument, NULL, 'u' },
		{ "ca-pem", required_argument, NULL, 'c' },
		{ "placeholder", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch == 'u')
			uds = optarg;
		else if (ch == 'c')
			ca_file = optarg;
		else if (ch == 'p')
			placeholder = optarg;
		else
			return 2;
	}
	if (!uds || !ca_file || !placeholder) {
		fprintf(stderr, "usage: fake_broker --uds PATH --ca-pem FILE --placeholder TOK\n");
		return 2;
	}
	ca_pem = read_file(ca_file);
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	lfd = listen_on(uds);
	say("LISTENING %s_1024", uds);
	for (;;) {
		pthread_t t;
		struct conn *c = calloc(1, sizeof(*c));
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0 || !c) {
			free(c);
			if (fd >= 0)
				close(fd);
			continue;
		}
		c->fd = fd;
		if (pthread_create(&t, NULL, serve, c) != 0) {
			close(fd);
			free(c);
			continue;
		}
		pthread_detach(t);
	}
}
