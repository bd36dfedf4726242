/* Tests for proto/wire.h: every message round-trips, every rule rejects. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "frame.h"
#include "wire.h"

#define PH_A "miosa-tok-0123456789abcdef0123456789abcdef"
#define PH_B "miosa-tok-ffffffffffffffffffffffffffffffff"
#define PEM "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

/* One valid instance of every message, wired together; reset per test. */
static struct fixture {
	uint8_t boot_id[16], addr4[4], addr6[16], dns[29], stdin_data[5], out_data[6];
	Miosa__Hello hello;
	Miosa__EgressOpen egress;
	Miosa__DnsQuery dns_query;
	Miosa__GuestOpen open;
	Miosa__EnvBinding bind[2];
	Miosa__EnvBinding *bindp[2];
	uint32_t ports[3];
	Miosa__Limits limits;
	Miosa__HelloAck ack;
	char *unset[1];
	Miosa__EnvUpdate update;
	Miosa__EnvVar var[2];
	Miosa__EnvVar *varp[2];
	char *argv[3];
	Miosa__ExecRequest exec;
	Miosa__Ping ping;
	Miosa__HostToGuest h2g;
	Miosa__ExecOutput output;
	Miosa__ExecExit exit;
	Miosa__Pong pong;
	Miosa__GuestToHost g2h;
	Miosa__OpenResult result;
	Miosa__DnsAnswer answer;
} fx;

static int fixture_setup(void **state)
{
	(void)state;
	memset(&fx, 0, sizeof(fx));
	memset(fx.boot_id, 0xb0, sizeof(fx.boot_id));
	memcpy(fx.addr4, "\xc6\x12\x00\x07", 4); /* 198.18.0.7 */
	memset(fx.addr6, 0xfd, sizeof(fx.addr6));
	memset(fx.dns, 0x01, sizeof(fx.dns));

	miosa__hello__init(&fx.hello);
	fx.hello.agent_version = "0.1.0";
	fx.hello.boot_id = (ProtobufCBinaryData){ sizeof(fx.boot_id), fx.boot_id };
	miosa__egress_open__init(&fx.egress);
	fx.egress.dst_addr = (ProtobufCBinaryData){ 4, fx.addr4 };
	fx.egress.dst_port = 443;
	miosa__dns_query__init(&fx.dns_query);
	fx.dns_query.packet = (ProtobufCBinaryData){ sizeof(fx.dns), fx.dns };
	miosa__guest_open__init(&fx.open);
	fx.open.kind_case = MIOSA__GUEST_OPEN__KIND_CONTROL;
	fx.open.control = &fx.hello;

	for (int i = 0; i < 2; i++) {
		miosa__env_binding__init(&fx.bind[i]);
		fx.bindp[i] = &fx.bind[i];
	}
	fx.bind[0].name = "OPENAI_API_KEY";
	fx.bind[0].placeholder = PH_A;
	fx.bind[1].name = "_gh_token2";
	fx.bind[1].placeholder = PH_B;
	fx.ports[0] = 80, fx.ports[1] = 443, fx.ports[2] = 65535;
	miosa__limits__init(&fx.limits);
	fx.limits.max_connections = 256;
	fx.limits.exec_output_max_bytes = 1 << 20;
	fx.limits.max_execs = 8;
	miosa__hello_ack__init(&fx.ack);
	fx.ack.sandbox_id = "sb_01H-x.y";
	fx.ack.n_env = 2;
	fx.ack.env = fx.bindp;
	fx.ack.ca_pem = PEM;
	fx.ack.n_listen_ports = 3;
	fx.ack.listen_ports = fx.ports;
	fx.ack.limits = &fx.limits;

	miosa__env_update__init(&fx.update);
	fx.update.n_set = 1;
	fx.update.set = fx.bindp;
	fx.unset[0] = "OLD_TOKEN";
	fx.update.n_unset = 1;
	fx.update.unset = fx.unset;

	for (int i = 0; i < 2; i++) {
		miosa__env_var__init(&fx.var[i]);
		fx.varp[i] = &fx.var[i];
	}
	fx.var[0].name = "DEBUG";
	fx.var[0].value = "1";
	fx.var[1].name = "EMPTY";
	fx.var[1].value = "";
	fx.argv[0] = "sh", fx.argv[1] = "-c", fx.argv[2] = "";
	miosa__exec_request__init(&fx.exec);
	fx.exec.exec_id = 42;
	fx.exec.n_argv = 3;
	fx.exec.argv = fx.argv;
	fx.exec.n_env = 2;
	fx.exec.env = fx.varp;
	fx.exec.cwd = "/work";
	memcpy(fx.stdin_data, "hello", 5);
	fx.exec.stdin_data = (ProtobufCBinaryData){ 5, fx.stdin_data };
	fx.exec.timeout_ms = 30000;
	miosa__ping__init(&fx.ping);
	fx.ping.nonce = UINT64_MAX;
	miosa__host_to_guest__init(&fx.h2g);
	fx.h2g.msg_case = MIOSA__HOST_TO_GUEST__MSG_HELLO_ACK;
	fx.h2g.hello_ack = &fx.ack;

	miosa__exec_output__init(&fx.output);
	fx.output.exec_id = 42;
	fx.output.stream = MIOSA__EXEC_OUTPUT__STREAM__STREAM_STDERR;
	memcpy(fx.out_data, "oops\n", 6);
	fx.output.data = (ProtobufCBinaryData){ 6, fx.out_data };
	miosa__exec_exit__init(&fx.exit);
	fx.exit.exec_id = 42;
	fx.exit.outcome_case = MIOSA__EXEC_EXIT__OUTCOME_EXIT_CODE;
	fx.exit.exit_code = 3;
	miosa__pong__init(&fx.pong);
	fx.pong.nonce = 7;
	miosa__guest_to_host__init(&fx.g2h);
	fx.g2h.msg_case = MIOSA__GUEST_TO_HOST__MSG_EXEC_OUTPUT;
	fx.g2h.exec_output = &fx.output;

	miosa__open_result__init(&fx.result);
	fx.result.status = MIOSA__OPEN_RESULT__STATUS__STATUS_REFUSED;
	fx.result.reason = "host not allowed";
	miosa__dns_answer__init(&fx.answer);
	fx.answer.packet = (ProtobufCBinaryData){ sizeof(fx.dns), fx.dns };
	return 0;
}

static void set_h2g(Miosa__HostToGuest__MsgCase c, void *member)
{
	fx.h2g.msg_case = c;
	fx.h2g.hello_ack = member; /* one union: any member pointer lands there */
}

static void set_g2h(Miosa__GuestToHost__MsgCase c, void *member)
{
	fx.g2h.msg_case = c;
	fx.g2h.exec_output = member;
}

static uint8_t frame_buf[FRAME_MAX_SIZE + 64];
static uint8_t payload_buf[FRAME_MAX_PAYLOAD + 64];
static const int sentinel;

static void show_error(const char *what, int r, const struct wire_error *e)
{
	if (r != 0)
		print_message("%s: %d %s.%s: %s\n", what, r, e->message ? e->message : "?",
			      e->field ? e->field : "?", e->reason ? e->reason : "?");
}

/* Decoder behind through_decoder(); freed by fixture_teardown(). */
static struct frame_decoder *rt_decoder;

/* Runs a whole frame through a decoder one byte at a time; returns the payload. */
static struct frame through_decoder(const uint8_t *buf, size_t len)
{
	struct frame f = { 0 };
	size_t consumed;
	struct frame_decoder *d;

	frame_decoder_free(rt_decoder);
	assert_int_equal(frame_decoder_new(&rt_decoder), 0);
	d = rt_decoder;
	for (size_t i = 0; i < len; i++) {
		int r = frame_decoder_feed(d, buf + i, 1, &consumed, &f);

		assert_int_equal(consumed, 1);
		assert_int_equal(r, i + 1 == len ? FRAME_READY : FRAME_NEED_MORE);
	}
	return f; /* views d's buffer, which lives until the next call */
}

/* Packs without any rule check, as a hostile or buggy peer would. */
static size_t pack_raw(const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);

	assert_true(len <= sizeof(payload_buf));
	assert_int_equal(protobuf_c_message_pack(m, payload_buf), len);
	return len;
}

/*
 * round_trip_NAME(msg): frame with the checking encoder, deframe, decode.
 * reject_NAME(msg, code, message, field): both the decoder (fed the raw
 * packing) and the encoder refuse msg, naming message.field, and write no
 * ret_* output.
 */
#define DEFINE_HELPERS(name, type)                                                         \
	static type *round_trip_##name(const type *msg)                                    \
	{                                                                                  \
		struct wire_error e = { 0 };                                               \
		size_t len = 0;                                                            \
		type *out = NULL;                                                          \
		int r = wire_frame_##name(msg, frame_buf, sizeof(frame_buf), &len, &e);    \
		show_error("encode", r, &e);                                              \
		assert_int_equal(r, 0);                                                    \
		struct frame f = through_decoder(frame_buf, len);                          \
		r = wire_decode_##name(f.payload, f.len, &out, &e);                        \
		show_error("decode", r, &e);                                              \
		assert_int_equal(r, 0);                                                    \
		assert_non_null(out);                                                      \
		return out;                                                                \
	}                                                                                  \
	static void reject_##name(const type *msg, int code, const char *message,          \
				  const char *field)                                       \
	{                                                                                  \
		struct wire_error e = { 0 };                                               \
		type *out = (type *)&sentinel;                                             \
		size_t len = pack_raw(&msg->base), flen = 7;                               \
		assert_int_equal(wire_decode_##name(payload_buf, len, &out, &e), code);    \
		assert_ptr_equal(out, &sentinel);                                          \
		assert_string_equal(e.message, message);                                   \
		assert_string_equal(e.field, field);                                       \
		assert_non_null(e.reason);                                                 \
		e = (struct wire_error){ 0 };                                              \
		assert_int_equal(wire_frame_##name(msg, frame_buf, sizeof(frame_buf), &flen, \
						   &e),                                    \
				 code == -EBADMSG ? -EINVAL : code);                       \
		assert_int_equal(flen, 7);                                                 \
		assert_string_equal(e.message, message);                                   \
		assert_string_equal(e.field, field);                                       \
	}                                                                                  \
	static void accept_##name(const type *msg)                                         \
	{                                                                                  \
		wire_free_##name(round_trip_##name(msg));                                  \
	}

DEFINE_HELPERS(guest_open, Miosa__GuestOpen)
DEFINE_HELPERS(host_to_guest, Miosa__HostToGuest)
DEFINE_HELPERS(guest_to_host, Miosa__GuestToHost)
DEFINE_HELPERS(open_result, Miosa__OpenResult)
DEFINE_HELPERS(dns_answer, Miosa__DnsAnswer)

/* A string of n copies of c, owned by a small pool freed after each test. */
static char *pool[16];
static size_t pool_used;

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	assert_true(pool_used < sizeof(pool) / sizeof(pool[0]));
	memset(s, c, n);
	s[n] = '\0';
	pool[pool_used++] = s;
	return s;
}

static int fixture_teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < pool_used; i++)
		free(pool[i]);
	pool_used = 0;
	frame_decoder_free(rt_decoder);
	rt_decoder = NULL;
	return 0;
}

/* ------------------------------------------------------------------------- */
/* Round trips                                                               */

static void test_guest_open_control_round_trips(void **state)
{
	(void)state;
	Miosa__GuestOpen *m = round_trip_guest_open(&fx.open);

	assert_int_equal(m->kind_case, MIOSA__GUEST_OPEN__KIND_CONTROL);
	assert_string_equal(m->control->agent_version, "0.1.0");
	assert_int_equal(m->control->boot_id.len, 16);
	assert_memory_equal(m->control->boot_id.data, fx.boot_id, 16);
	wire_free_guest_open(m);
}

static void test_guest_open_egress_round_trips_ipv4_and_ipv6(void **state)
{
	(void)state;
	Miosa__GuestOpen *m;

	fx.open.kind_case = MIOSA__GUEST_OPEN__KIND_EGRESS;
	fx.open.egress = &fx.egress;
	m = round_trip_guest_open(&fx.open);
	assert_int_equal(m->kind_case, MIOSA__GUEST_OPEN__KIND_EGRESS);
	assert_int_equal(m->egress->dst_addr.len, 4);
	assert_memory_equal(m->egress->dst_addr.data, fx.addr4, 4);
	assert_int_equal(m->egress->dst_port, 443);
	wire_free_guest_open(m);

	fx.egress.dst_addr = (ProtobufCBinaryData){ 16, fx.addr6 };
	fx.egress.dst_port = 65535;
	m = round_trip_guest_open(&fx.open);
	assert_int_equal(m->egress->dst_addr.len, 16);
	assert_memory_equal(m->egress->dst_addr.data, fx.addr6, 16);
	assert_int_equal(m->egress->dst_port, 65535);
	wire_free_guest_open(m);
}

static void test_guest_open_dns_round_trips(void **state)
{
	(void)state;
	Miosa__GuestOpen *m;

	fx.open.kind_case = MIOSA__GUEST_OPEN__KIND_DNS;
	fx.open.dns = &fx.dns_query;
	m = round_trip_guest_open(&fx.open);
	assert_int_equal(m->kind_case, MIOSA__GUEST_OPEN__KIND_DNS);
	assert_int_equal(m->dns->packet.len, sizeof(fx.dns));
	assert_memory_equal(m->dns->packet.data, fx.dns, sizeof(fx.dns));
	wire_free_guest_open(m);
}

static void test_hello_ack_round_trips(void **state)
{
	(void)state;
	Miosa__HostToGuest *m = round_trip_host_to_guest(&fx.h2g);
	const Miosa__HelloAck *a;

	assert_int_equal(m->msg_case, MIOSA__HOST_TO_GUEST__MSG_HELLO_ACK);
	a = m->hello_ack;
	assert_string_equal(a->sandbox_id, "sb_01H-x.y");
	assert_int_equal(a->n_env, 2);
	assert_string_equal(a->env[0]->name, "OPENAI_API_KEY");
	assert_string_equal(a->env[0]->placeholder, PH_A);
	assert_string_equal(a->env[1]->name, "_gh_token2");
	assert_string_equal(a->env[1]->placeholder, PH_B);
	assert_string_equal(a->ca_pem, PEM);
	assert_int_equal(a->n_listen_ports, 3);
	assert_int_equal(a->listen_ports[2], 65535);
	assert_int_equal(a->limits->max_connections, 256);
	assert_int_equal(a->limits->exec_output_max_bytes, 1 << 20);
	assert_int_equal(a->limits->max_execs, 8);
	wire_free_host_to_guest(m);
}

static void test_env_update_round_trips(void **state)
{
	(void)state;
	Miosa__HostToGuest *m;

	set_h2g(MIOSA__HOST_TO_GUEST__MSG_ENV_UPDATE, &fx.update);
	m = round_trip_host_to_guest(&fx.h2g);
	assert_int_equal(m->msg_case, MIOSA__HOST_TO_GUEST__MSG_ENV_UPDATE);
	assert_int_equal(m->env_update->n_set, 1);
	assert_string_equal(m->env_update->set[0]->placeholder, PH_A);
	assert_int_equal(m->env_update->n_unset, 1);
	assert_string_equal(m->env_update->unset[0], "OLD_TOKEN");
	wire_free_host_to_guest(m);

	/* an empty update is valid (and harmless) */
	fx.update.n_set = fx.update.n_unset = 0;
	accept_host_to_guest(&fx.h2g);
}

static void test_exec_request_round_trips(void **state)
{
	(void)state;
	Miosa__HostToGuest *m;
	const Miosa__ExecRequest *x;

	set_h2g(MIOSA__HOST_TO_GUEST__MSG_EXEC, &fx.exec);
	m = round_trip_host_to_guest(&fx.h2g);
	x = m->exec;
	assert_int_equal(x->exec_id, 42);
	assert_int_equal(x->n_argv, 3);
	assert_string_equal(x->argv[0], "sh");
	assert_string_equal(x->argv[2], "");
	assert_int_equal(x->n_env, 2);
	assert_string_equal(x->env[0]->name, "DEBUG");
	assert_string_equal(x->env[0]->value, "1");
	assert_string_equal(x->cwd, "/work");
	assert_int_equal(x->stdin_data.len, 5);
	assert_memory_equal(x->stdin_data.data, "hello", 5);
	assert_int_equal(x->timeout_ms, 30000);
	wire_free_host_to_guest(m);

	/* defaults: no cwd, no timeout, no stdin */
	fx.exec.cwd = "";
	fx.exec.timeout_ms = 0;
	fx.exec.stdin_data.len = 0;
	accept_host_to_guest(&fx.h2g);
}

static void test_ping_round_trips(void **state)
{
	(void)state;
	Miosa__HostToGuest *m;

	set_h2g(MIOSA__HOST_TO_GUEST__MSG_PING, &fx.ping);
	m = round_trip_host_to_guest(&fx.h2g);
	assert_int_equal(m->msg_case, MIOSA__HOST_TO_GUEST__MSG_PING);
	assert_true(m->ping->nonce == UINT64_MAX);
	wire_free_host_to_guest(m);
}

static void test_exec_output_round_trips(void **state)
{
	(void)state;
	Miosa__GuestToHost *m = round_trip_guest_to_host(&fx.g2h);

	assert_int_equal(m->msg_case, MIOSA__GUEST_TO_HOST__MSG_EXEC_OUTPUT);
	assert_int_equal(m->exec_output->exec_id, 42);
	assert_int_equal(m->exec_output->stream, MIOSA__EXEC_OUTPUT__STREAM__STREAM_STDERR);
	assert_int_equal(m->exec_output->data.len, 6);
	assert_memory_equal(m->exec_output->data.data, "oops\n", 6);
	wire_free_guest_to_host(m);
}

static void test_exec_exit_round_trips_each_outcome(void **state)
{
	(void)state;
	Miosa__GuestToHost *m;

	set_g2h(MIOSA__GUEST_TO_HOST__MSG_EXEC_EXIT, &fx.exit);
	fx.exit.exit_code = 0; /* a zero exit code is still sent: it is a oneof */
	m = round_trip_guest_to_host(&fx.g2h);
	assert_int_equal(m->exec_exit->outcome_case, MIOSA__EXEC_EXIT__OUTCOME_EXIT_CODE);
	assert_int_equal(m->exec_exit->exit_code, 0);
	wire_free_guest_to_host(m);

	fx.exit.outcome_case = MIOSA__EXEC_EXIT__OUTCOME_SIGNAL;
	fx.exit.signal = 9;
	m = round_trip_guest_to_host(&fx.g2h);
	assert_int_equal(m->exec_exit->outcome_case, MIOSA__EXEC_EXIT__OUTCOME_SIGNAL);
	assert_int_equal(m->exec_exit->signal, 9);
	wire_free_guest_to_host(m);

	fx.exit.outcome_case = MIOSA__EXEC_EXIT__OUTCOME_TIMED_OUT;
	fx.exit.timed_out = 1;
	m = round_trip_guest_to_host(&fx.g2h);
	assert_int_equal(m->exec_exit->outcome_case, MIOSA__EXEC_EXIT__OUTCOME_TIMED_OUT);
	assert_true(m->exec_exit->timed_out);
	wire_free_guest_to_host(m);

	fx.exit.outcome_case = MIOSA__EXEC_EXIT__OUTCOME_START_ERROR;
	fx.exit.start_error = "execvp: No such file or directory";
	m = round_trip_guest_to_host(&fx.g2h);
	assert_int_equal(m->exec_exit->outcome_case, MIOSA__EXEC_EXIT__OUTCOME_START_ERROR);
	assert_string_equal(m->exec_exit->start_error, "execvp: No such file or directory");
	assert_int_equal(m->exec_exit->exec_id, 42);
	wire_free_guest_to_host(m);
}

static void test_pong_round_trips(void **state)
{
	(void)state;
	Miosa__GuestToHost *m;

	set_g2h(MIOSA__GUEST_TO_HOST__MSG_PONG, &fx.pong);
	m = round_trip_guest_to_host(&fx.g2h);
	assert_int_equal(m->msg_case, MIOSA__GUEST_TO_HOST__MSG_PONG);
	assert_int_equal(m->pong->nonce, 7);
	wire_free_guest_to_host(m);
}

static void test_open_result_round_trips(void **state)
{
	(void)state;
	Miosa__OpenResult *m = round_trip_open_result(&fx.result);

	assert_int_equal(m->status, MIOSA__OPEN_RESULT__STATUS__STATUS_REFUSED);
	assert_string_equal(m->reason, "host not allowed");
	wire_free_open_result(m);

	fx.result.status = MIOSA__OPEN_RESULT__STATUS__STATUS_OK;
	fx.result.reason = "";
	m = round_trip_open_result(&fx.result);
	assert_int_equal(m->status, MIOSA__OPEN_RESULT__STATUS__STATUS_OK);
	wire_free_open_result(m);
}

static void test_dns_answer_round_trips(void **state)
{
	(void)state;
	Miosa__DnsAnswer *m = round_trip_dns_answer(&fx.answer);

	assert_int_equal(m->packet.len, sizeof(fx.dns));
	assert_memory_equal(m->packet.data, fx.dns, sizeof(fx.dns));
	wire_free_dns_answer(m);
}

/* ------------------------------------------------------------------------- */
/* Oneofs                                                                    */

static void test_message_without_its_oneof_set_is_rejected(void **state)
{
	(void)state;
	fx.open.kind_case = MIOSA__GUEST_OPEN__KIND__NOT_SET;
	reject_guest_open(&fx.open, -EINVAL, "GuestOpen", "kind");
	fx.h2g.msg_case = MIOSA__HOST_TO_GUEST__MSG__NOT_SET;
	reject_host_to_guest(&fx.h2g, -EINVAL, "HostToGuest", "msg");
	fx.g2h.msg_case = MIOSA__GUEST_TO_HOST__MSG__NOT_SET;
	reject_guest_to_host(&fx.g2h, -EINVAL, "GuestToHost", "msg");
	set_g2h(MIOSA__GUEST_TO_HOST__MSG_EXEC_EXIT, &fx.exit);
	fx.exit.outcome_case = MIOSA__EXEC_EXIT__OUTCOME__NOT_SET;
	reject_guest_to_host(&fx.g2h, -EINVAL, "ExecExit", "outcome");
}

static void test_empty_payload_is_rejected_as_an_unset_oneof(void **state)
{
	(void)state;
	struct wire_error e = { 0 };
	Miosa__GuestOpen *m = NULL;

	assert_int_equal(wire_decode_guest_open(NULL, 0, &m, &e), -EINVAL);
	assert_null(m);
	assert_string_equal(e.field, "kind");
}

/* protobuf-c keeps the last oneof member on the wire; that is the one checked. */
static void test_oneof_sent_twice_is_judged_by_the_last_member(void **state)
{
	(void)state;
	struct wire_error e = { 0 };
	Miosa__GuestOpen *m = NULL;
	size_t a, b;

	a = pack_raw(&fx.open.base); /* control: a valid Hello */
	fx.open.kind_case = MIOSA__GUEST_OPEN__KIND_EGRESS;
	fx.open.egress = &fx.egress;
	fx.egress.dst_port = 0;
	uint8_t both[256];
	memcpy(both, payload_buf, a);
	b = pack_raw(&fx.open.base);
	memcpy(both + a, payload_buf, b);
	assert_int_equal(wire_decode_guest_open(both, a + b, &m, &e), -EINVAL);
	assert_string_equal(e.message, "EgressOpen");
	assert_string_equal(e.field, "dst_port");
}

/* ------------------------------------------------------------------------- */
/* Guest -> host                                                             */

static void test_hello_with_bad_agent_version_is_rejected(void **state)
{
	(void)state;
	fx.hello.agent_version = repeat('v', WIRE_AGENT_VERSION_MAX);
	accept_guest_open(&fx.open);
	fx.hello.agent_version = repeat('v', WIRE_AGENT_VERSION_MAX + 1);
	reject_guest_open(&fx.open, -EINVAL, "Hello", "agent_version");
	fx.hello.agent_version = "";
	reject_guest_open(&fx.open, -EINVAL, "Hello", "agent_version");
	fx.hello.agent_version = "1.0\n";
	reject_guest_open(&fx.open, -EINVAL, "Hello", "agent_version");
	fx.hello.agent_version = "1.0\x7f";
	reject_guest_open(&fx.open, -EINVAL, "Hello", "agent_version");
	fx.hello.agent_version = "v\xc3\xa9"; /* valid UTF-8, not ASCII */
	reject_guest_open(&fx.open, -EINVAL, "Hello", "agent_version");
}

static void test_hello_with_boot_id_not_16_bytes_is_rejected(void **state)
{
	(void)state;
	static const size_t bad[] = { 0, 1, 15, 17 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t id[17] = { 0 };

		fx.hello.boot_id = (ProtobufCBinaryData){ bad[i], id };
		reject_guest_open(&fx.open, -EINVAL, "Hello", "boot_id");
	}
}

static void test_egress_open_with_bad_address_length_is_rejected(void **state)
{
	(void)state;
	static const size_t bad[] = { 0, 3, 5, 15, 17 };
	uint8_t addr[17] = { 0 };

	fx.open.kind_case = MIOSA__GUEST_OPEN__KIND_EGRESS;
	fx.open.egress = &fx.egress;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fx.egress.dst_addr = (ProtobufCBinaryData){ bad[i], addr };
		reject_guest_open(&fx.open, -EINVAL, "EgressOpen", "dst_addr");
	}
}

static void test_egress_open_with_port_outside_1_to_65535_is_rejected(void **state)
{
	(void)state;
	fx.open.kind_case = MIOSA__GUEST_OPEN__KIND_EGRESS;
	fx.open.egress = &fx.egress;
	fx.egress.dst_port = 1;
	accept_guest_open(&fx.open);
	fx.egress.dst_port = 0;
	reject_guest_open(&fx.open, -EINVAL, "EgressOpen", "dst_port");
	fx.egress.dst_port = 65536;
	reject_guest_open(&fx.open, -EINVAL, "EgressOpen", "dst_port");
	fx.egress.dst_port = UINT32_MAX;
	reject_guest_open(&fx.open, -EINVAL, "EgressOpen", "dst_port");
}

static void test_dns_packets_shorter_than_a_header_are_rejected(void **state)
{
	(void)state;
	fx.open.kind_case = MIOSA__GUEST_OPEN__KIND_DNS;
	fx.open.dns = &fx.dns_query;
	fx.dns_query.packet.len = WIRE_DNS_MIN;
	accept_guest_open(&fx.open);
	fx.dns_query.packet.len = WIRE_DNS_MIN - 1;
	reject_guest_open(&fx.open, -EINVAL, "DnsQuery", "packet");
	fx.dns_query.packet.len = 0;
	reject_guest_open(&fx.open, -EINVAL, "DnsQuery", "packet");

	fx.answer.packet.len = WIRE_DNS_MIN - 1;
	reject_dns_answer(&fx.answer, -EINVAL, "DnsAnswer", "packet");
	fx.answer.packet.len = 0;
	reject_dns_answer(&fx.answer, -EINVAL, "DnsAnswer", "packet");
}

static void test_largest_dns_answer_that_fits_a_frame_is_accepted(void **state)
{
	(void)state;
	uint8_t *pkt = calloc(1, FRAME_MAX_PAYLOAD);

	assert_non_null(pkt);
	/* 1 tag byte + 3 length bytes + packet == FRAME_MAX_PAYLOAD */
	fx.answer.packet = (ProtobufCBinaryData){ FRAME_MAX_PAYLOAD - 4, pkt };
	accept_dns_answer(&fx.answer);
	free(pkt);
}

static void test_exec_output_with_zero_exec_id_is_rejected(void **state)
{
	(void)state;
	fx.output.exec_id = 0;
	reject_guest_to_host(&fx.g2h, -EINVAL, "ExecOutput", "exec_id");
}

static void test_exec_output_with_unspecified_or_unknown_stream_is_rejected(void **state)
{
	(void)state;
	fx.output.stream = MIOSA__EXEC_OUTPUT__STREAM__STREAM_STDOUT;
	accept_guest_to_host(&fx.g2h);
	fx.output.stream = MIOSA__EXEC_OUTPUT__STREAM__STREAM_UNSPECIFIED;
	reject_guest_to_host(&fx.g2h, -EINVAL, "ExecOutput", "stream");
	fx.output.stream = (Miosa__ExecOutput__Stream)3;
	reject_guest_to_host(&fx.g2h, -EINVAL, "ExecOutput", "stream");
	fx.output.stream = (Miosa__ExecOutput__Stream)-1;
	reject_guest_to_host(&fx.g2h, -EINVAL, "ExecOutput", "stream");
}

static void test_exec_output_chunk_over_32_kib_is_rejected(void **state)
{
	(void)state;
	uint8_t *data = calloc(1, WIRE_EXEC_CHUNK_MAX + 1);

	assert_non_null(data);
	fx.output.data = (ProtobufCBinaryData){ WIRE_EXEC_CHUNK_MAX, data };
	accept_guest_to_host(&fx.g2h);
	fx.output.data.len++;
	reject_guest_to_host(&fx.g2h, -EINVAL, "ExecOutput", "data");
	free(data);
}

static void test_exec_exit_with_zero_exec_id_is_rejected(void **state)
{
	(void)state;
	set_g2h(MIOSA__GUEST_TO_HOST__MSG_EXEC_EXIT, &fx.exit);
	fx.exit.exec_id = 0;
	reject_guest_to_host(&fx.g2h, -EINVAL, "ExecExit", "exec_id");
}

static void test_exec_exit_with_out_of_range_outcome_is_rejected(void **state)
{
	(void)state;
	set_g2h(MIOSA__GUEST_TO_HOST__MSG_EXEC_EXIT, &fx.exit);
	fx.exit.exit_code = 255;
	accept_guest_to_host(&fx.g2h);
	fx.exit.exit_code = 256;
	reject_guest_to_host(&fx.g2h, -EINVAL, "ExecExit", "exit_code");
	fx.exit.exit_code = -1;
	reject_guest_to_host(&fx.g2h, -EINVAL, "ExecExit", "exit_code");

	fx.exit.outcome_case = MIOSA__EXEC_EXIT__OUTCOME_SIGNAL;
	fx.exit.signal = 64;
	accept_guest_to_host(&fx.g2h);
	fx.exit.signal = 0;
	reject_guest_to_host(&fx.g2h, -EINVAL, "ExecExit", "signal");
	fx.exit.signal = 65;
	reject_guest_to_host(&fx.g2h, -EINVAL, "ExecExit", "signal");

	fx.exit.outcome_case = MIOSA__EXEC_EXIT__OUTCOME_TIMED_OUT;
	fx.exit.timed_out = 0;
	reject_guest_to_host(&fx.g2h, -EINVAL, "ExecExit", "timed_out");

	fx.exit.outcome_case = MIOSA__EXEC_EXIT__OUTCOME_START_ERROR;
	fx.exit.start_error = repeat('e', WIRE_START_ERROR_MAX);
	accept_guest_to_host(&fx.g2h);
	fx.exit.start_error = repeat('e', WIRE_START_ERROR_MAX + 1);
	reject_guest_to_host(&fx.g2h, -EINVAL, "ExecExit", "start_error");
	fx.exit.start_error = "";
	reject_guest_to_host(&fx.g2h, -EINVAL, "ExecExit", "start_error");
}

/* ------------------------------------------------------------------------- */
/* Host -> guest                                                             */

static void test_hello_ack_with_bad_sandbox_id_is_rejected(void **state)
{
	(void)state;
	static const char *const bad[] = { "", "a/b", "a b", "..\\x", "id\xc3\xa9" };

	fx.ack.sandbox_id = repeat('s', WIRE_SANDBOX_ID_MAX);
	accept_host_to_guest(&fx.h2g);
	fx.ack.sandbox_id = repeat('s', WIRE_SANDBOX_ID_MAX + 1);
	reject_host_to_guest(&fx.h2g, -EINVAL, "HelloAck", "sandbox_id");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fx.ack.sandbox_id = (char *)bad[i];
		reject_host_to_guest(&fx.h2g, -EINVAL, "HelloAck", "sandbox_id");
	}
}

static void test_hello_ack_with_bad_placeholder_is_rejected(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"miosa-tok-",
		"miosa-tok-0123456789abcdef0123456789abcde",   /* 31 hex */
		"miosa-tok-0123456789abcdef0123456789abcdef0", /* 33 hex */
		"miosa-tok-0123456789ABCDEF0123456789abcdef",  /* uppercase */
		"miosa-tok-0123456789abcdeg0123456789abcdef",  /* not hex */
		"MIOSA-tok-0123456789abcdef0123456789abcdef",
		"miosa_tok-0123456789abcdef0123456789abcdef",
		"sk-live-0123456789abcdef0123456789abcdef00",  /* a real-looking secret */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fx.bind[1].placeholder = (char *)bad[i];
		reject_host_to_guest(&fx.h2g, -EINVAL, "EnvBinding", "placeholder");
	}
}

static void test_hello_ack_with_bad_env_name_is_rejected(void **state)
{
	(void)state;
	static const char *const bad[] = { "", "1ABC", "A-B", "A=B", "A B", "\xc3\xa9" };
	char *longest = repeat('N', WIRE_ENV_NAME_MAX);

	longest[0] = '_';
	fx.bind[1].name = longest;
	accept_host_to_guest(&fx.h2g);
	fx.bind[1].name = repeat('N', WIRE_ENV_NAME_MAX + 1);
	reject_host_to_guest(&fx.h2g, -EINVAL, "EnvBinding", "name");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fx.bind[1].name = (char *)bad[i];
		reject_host_to_guest(&fx.h2g, -EINVAL, "EnvBinding", "name");
	}
}

static void test_hello_ack_with_duplicate_env_name_is_rejected(void **state)
{
	(void)state;
	fx.bind[1].name = fx.bind[0].name;
	reject_host_to_guest(&fx.h2g, -EINVAL, "HelloAck", "env");
	/* names are case-sensitive: these two differ */
	fx.bind[1].name = "openai_api_key";
	accept_host_to_guest(&fx.h2g);
}

static void test_hello_ack_with_more_than_256_env_bindings_is_rejected(void **state)
{
	(void)state;
	static Miosa__EnvBinding b[WIRE_ENV_MAX + 1];
	static Miosa__EnvBinding *bp[WIRE_ENV_MAX + 1];
	static char names[WIRE_ENV_MAX + 1][16];

	for (size_t i = 0; i <= WIRE_ENV_MAX; i++) {
		miosa__env_binding__init(&b[i]);
		snprintf(names[i], sizeof(names[i]), "VAR_%zu", i);
		b[i].name = names[i];
		b[i].placeholder = PH_A; /* the same placeholder twice is allowed */
		bp[i] = &b[i];
	}
	fx.ack.env = bp;
	fx.ack.n_env = WIRE_ENV_MAX;
	accept_host_to_guest(&fx.h2g);
	fx.ack.n_env = WIRE_ENV_MAX + 1;
	reject_host_to_guest(&fx.h2g, -EINVAL, "HelloAck", "env");
}

static void test_hello_ack_with_bad_ca_pem_is_rejected(void **state)
{
	(void)state;
	char *big = repeat('A', WIRE_CA_PEM_MAX + 1);

	memcpy(big, PEM, strlen(PEM));
	big[WIRE_CA_PEM_MAX] = '\0';
	fx.ack.ca_pem = big;
	accept_host_to_guest(&fx.h2g);
	big[WIRE_CA_PEM_MAX] = 'A';
	reject_host_to_guest(&fx.h2g, -EINVAL, "HelloAck", "ca_pem");
	fx.ack.ca_pem = "";
	reject_host_to_guest(&fx.h2g, -EINVAL, "HelloAck", "ca_pem");
	fx.ack.ca_pem = "-----BEGIN PRIVATE KEY-----\n";
	reject_host_to_guest(&fx.h2g, -EINVAL, "HelloAck", "ca_pem");
	fx.ack.ca_pem = "-----BEGIN CERT";
	reject_host_to_guest(&fx.h2g, -EINVAL, "HelloAck", "ca_pem");
}

static void test_hello_ack_with_bad_listen_ports_is_rejected(void **state)
{
	(void)state;
	static uint32_t many[WIRE_LISTEN_PORTS_MAX + 1];

	fx.ports[1] = 0;
	reject_host_to_guest(&fx.h2g, -EINVAL, "HelloAck", "listen_ports");
	fx.ports[1] = 65536;
	reject_host_to_guest(&fx.h2g, -EINVAL, "HelloAck", "listen_ports");
	fx.ports[1] = 80; /* duplicate of ports[0] */
	reject_host_to_guest(&fx.h2g, -EINVAL, "HelloAck", "listen_ports");

	for (uint32_t i = 0; i <= WIRE_LISTEN_PORTS_MAX; i++)
		many[i] = i + 1;
	fx.ack.listen_ports = many;
	fx.ack.n_listen_ports = WIRE_LISTEN_PORTS_MAX;
	accept_host_to_guest(&fx.h2g);
	fx.ack.n_listen_ports = WIRE_LISTEN_PORTS_MAX + 1;
	reject_host_to_guest(&fx.h2g, -EINVAL, "HelloAck", "listen_ports");
	/* none at all is valid (80 and 443 are implied by the agent) */
	fx.ack.n_listen_ports = 0;
	accept_host_to_guest(&fx.h2g);
}

static void test_hello_ack_without_limits_is_rejected(void **state)
{
	(void)state;
	fx.ack.limits = NULL;
	reject_host_to_guest(&fx.h2g, -EINVAL, "HelloAck", "limits");
}

static void test_hello_ack_with_out_of_range_limits_is_rejected(void **state)
{
	(void)state;
	fx.limits.max_connections = WIRE_MAX_CONNECTIONS_MAX;
	fx.limits.exec_output_max_bytes = WIRE_EXEC_OUTPUT_TOTAL_MAX;
	fx.limits.max_execs = WIRE_MAX_EXECS_MAX;
	accept_host_to_guest(&fx.h2g);

	fx.limits.max_connections = 0;
	reject_host_to_guest(&fx.h2g, -EINVAL, "Limits", "max_connections");
	fx.limits.max_connections = WIRE_MAX_CONNECTIONS_MAX + 1;
	reject_host_to_guest(&fx.h2g, -EINVAL, "Limits", "max_connections");
	fx.limits.max_connections = 1;
	fx.limits.exec_output_max_bytes = 0;
	reject_host_to_guest(&fx.h2g, -EINVAL, "Limits", "exec_output_max_bytes");
	fx.limits.exec_output_max_bytes = WIRE_EXEC_OUTPUT_TOTAL_MAX + 1;
	reject_host_to_guest(&fx.h2g, -EINVAL, "Limits", "exec_output_max_bytes");
	fx.limits.exec_output_max_bytes = 1;
	fx.limits.max_execs = 0;
	reject_host_to_guest(&fx.h2g, -EINVAL, "Limits", "max_execs");
	fx.limits.max_execs = WIRE_MAX_EXECS_MAX + 1;
	reject_host_to_guest(&fx.h2g, -EINVAL, "Limits", "max_execs");
}

static void test_env_update_with_bad_binding_is_rejected(void **state)
{
	(void)state;
	set_h2g(MIOSA__HOST_TO_GUEST__MSG_ENV_UPDATE, &fx.update);
	fx.bind[0].placeholder = "plain-secret-value";
	reject_host_to_guest(&fx.h2g, -EINVAL, "EnvBinding", "placeholder");
	fx.bind[0].placeholder = PH_A;
	fx.bind[0].name = "BAD-NAME";
	reject_host_to_guest(&fx.h2g, -EINVAL, "EnvBinding", "name");
}

static void test_env_update_with_a_name_in_set_and_unset_is_rejected(void **state)
{
	(void)state;
	set_h2g(MIOSA__HOST_TO_GUEST__MSG_ENV_UPDATE, &fx.update);
	fx.unset[0] = "OPENAI_API_KEY";
	reject_host_to_guest(&fx.h2g, -EINVAL, "EnvUpdate", "set");
	fx.update.n_set = 2;
	fx.unset[0] = "X";
	fx.bind[1].name = "OPENAI_API_KEY";
	reject_host_to_guest(&fx.h2g, -EINVAL, "EnvUpdate", "set");
}

static void test_env_update_with_bad_or_too_many_unset_names_is_rejected(void **state)
{
	(void)state;
	static char *names[WIRE_ENV_MAX + 1];
	static char storage[WIRE_ENV_MAX + 1][16];

	set_h2g(MIOSA__HOST_TO_GUEST__MSG_ENV_UPDATE, &fx.update);
	fx.unset[0] = "9LIVES";
	reject_host_to_guest(&fx.h2g, -EINVAL, "EnvUpdate", "unset");
	fx.unset[0] = "";
	reject_host_to_guest(&fx.h2g, -EINVAL, "EnvUpdate", "unset");

	for (size_t i = 0; i <= WIRE_ENV_MAX; i++) {
		snprintf(storage[i], sizeof(storage[i]), "U%zu", i);
		names[i] = storage[i];
	}
	fx.update.n_set = 0;
	fx.update.unset = names;
	fx.update.n_unset = WIRE_ENV_MAX;
	accept_host_to_guest(&fx.h2g);
	fx.update.n_unset = WIRE_ENV_MAX + 1;
	reject_host_to_guest(&fx.h2g, -EINVAL, "EnvUpdate", "unset");
}

static void test_exec_request_with_zero_exec_id_is_rejected(void **state)
{
	(void)state;
	set_h2g(MIOSA__HOST_TO_GUEST__MSG_EXEC, &fx.exec);
	fx.exec.exec_id = 0;
	reject_host_to_guest(&fx.h2g, -EINVAL, "ExecRequest", "exec_id");
}

static void test_exec_request_with_bad_argv_is_rejected(void **state)
{
	(void)state;
	static char *many[WIRE_ARGV_MAX + 1];

	set_h2g(MIOSA__HOST_TO_GUEST__MSG_EXEC, &fx.exec);
	fx.exec.n_argv = 0;
	reject_host_to_guest(&fx.h2g, -EINVAL, "ExecRequest", "argv");
	fx.exec.n_argv = 3;
	fx.argv[0] = "";
	reject_host_to_guest(&fx.h2g, -EINVAL, "ExecRequest", "argv");
	fx.argv[0] = "sh";
	fx.argv[2] = repeat('a', WIRE_ARG_MAX);
	accept_host_to_guest(&fx.h2g);
	fx.argv[2] = repeat('a', WIRE_ARG_MAX + 1);
	reject_host_to_guest(&fx.h2g, -EINVAL, "ExecRequest", "argv");

	for (size_t i = 0; i <= WIRE_ARGV_MAX; i++)
		many[i] = "x";
	fx.exec.argv = many;
	fx.exec.n_argv = WIRE_ARGV_MAX;
	accept_host_to_guest(&fx.h2g);
	fx.exec.n_argv = WIRE_ARGV_MAX + 1;
	reject_host_to_guest(&fx.h2g, -EINVAL, "ExecRequest", "argv");
}

static void test_exec_request_with_bad_env_is_rejected(void **state)
{
	(void)state;
	static Miosa__EnvVar v[WIRE_ENV_MAX + 1];
	static Miosa__EnvVar *vp[WIRE_ENV_MAX + 1];
	static char names[WIRE_ENV_MAX + 1][16];

	set_h2g(MIOSA__HOST_TO_GUEST__MSG_EXEC, &fx.exec);
	fx.var[1].name = "2X";
	reject_host_to_guest(&fx.h2g, -EINVAL, "EnvVar", "name");
	fx.var[1].name = "DEBUG";
	reject_host_to_guest(&fx.h2g, -EINVAL, "ExecRequest", "env");
	fx.var[1].name = "BIG";
	fx.var[1].value = repeat('v', WIRE_ENV_VALUE_MAX);
	accept_host_to_guest(&fx.h2g);
	fx.var[1].value = repeat('v', WIRE_ENV_VALUE_MAX + 1);
	reject_host_to_guest(&fx.h2g, -EINVAL, "EnvVar", "value");

	for (size_t i = 0; i <= WIRE_ENV_MAX; i++) {
		miosa__env_var__init(&v[i]);
		snprintf(names[i], sizeof(names[i]), "E%zu", i);
		v[i].name = names[i];
		vp[i] = &v[i];
	}
	fx.exec.env = vp;
	fx.exec.n_env = WIRE_ENV_MAX;
	accept_host_to_guest(&fx.h2g);
	fx.exec.n_env = WIRE_ENV_MAX + 1;
	reject_host_to_guest(&fx.h2g, -EINVAL, "ExecRequest", "env");
}

static void test_exec_request_with_relative_or_long_cwd_is_rejected(void **state)
{
	(void)state;
	char *longest = repeat('d', WIRE_CWD_MAX);

	set_h2g(MIOSA__HOST_TO_GUEST__MSG_EXEC, &fx.exec);
	longest[0] = '/';
	fx.exec.cwd = longest;
	accept_host_to_guest(&fx.h2g);
	fx.exec.cwd = repeat('/', WIRE_CWD_MAX + 1);
	reject_host_to_guest(&fx.h2g, -EINVAL, "ExecRequest", "cwd");
	fx.exec.cwd = "work";
	reject_host_to_guest(&fx.h2g, -EINVAL, "ExecRequest", "cwd");
	fx.exec.cwd = "./work";
	reject_host_to_guest(&fx.h2g, -EINVAL, "ExecRequest", "cwd");
}

static void test_exec_request_with_timeout_over_a_day_is_rejected(void **state)
{
	(void)state;
	set_h2g(MIOSA__HOST_TO_GUEST__MSG_EXEC, &fx.exec);
	fx.exec.timeout_ms = WIRE_TIMEOUT_MS_MAX;
	accept_host_to_guest(&fx.h2g);
	fx.exec.timeout_ms = WIRE_TIMEOUT_MS_MAX + 1;
	reject_host_to_guest(&fx.h2g, -EINVAL, "ExecRequest", "timeout_ms");
}

static void test_open_result_with_unspecified_or_unknown_status_is_rejected(void **state)
{
	(void)state;
	fx.result.status = MIOSA__OPEN_RESULT__STATUS__STATUS_UNSPECIFIED;
	reject_open_result(&fx.result, -EINVAL, "OpenResult", "status");
	fx.result.status = (Miosa__OpenResult__Status)7;
	reject_open_result(&fx.result, -EINVAL, "OpenResult", "status");
}

static void test_open_result_with_reason_over_256_bytes_is_rejected(void **state)
{
	(void)state;
	fx.result.reason = repeat('r', WIRE_REASON_MAX);
	accept_open_result(&fx.result);
	fx.result.reason = repeat('r', WIRE_REASON_MAX + 1);
	reject_open_result(&fx.result, -EINVAL, "OpenResult", "reason");
}

/* ------------------------------------------------------------------------- */
/* Encoding level                                                            */

/* Appends a length-delimited record (field number < 16, len < 128). */
static size_t put_len(uint8_t *buf, size_t off, unsigned field, const void *data, size_t len)
{
	assert_true(field < 16 && len < 128);
	buf[off++] = (uint8_t)(field << 3 | 2);
	buf[off++] = (uint8_t)len;
	memcpy(buf + off, data, len);
	return off + len;
}

/* GuestOpen{control: Hello{agent_version: version[0..len), boot_id}} */
static size_t hello_bytes(uint8_t *out, const char *version, size_t len)
{
	uint8_t hello[128];
	size_t n = put_len(hello, 0, 1, version, len);

	n = put_len(hello, n, 2, fx.boot_id, sizeof(fx.boot_id));
	return put_len(out, 0, 1, hello, n);
}

static void test_string_with_a_nul_byte_is_rejected(void **state)
{
	(void)state;
	struct wire_error e = { 0 };
	Miosa__GuestOpen *m = NULL;
	uint8_t buf[256];
	size_t n;

	/* protobuf-c would hand us "1.0", hiding the rest */
	n = hello_bytes(buf, "1.0\0evil", 8);
	assert_int_equal(wire_decode_guest_open(buf, n, &m, &e), -EBADMSG);
	assert_null(m);
	assert_string_equal(e.message, "Hello");
	assert_string_equal(e.field, "agent_version");

	n = hello_bytes(buf, "1.0", 3);
	assert_int_equal(wire_decode_guest_open(buf, n, &m, &e), 0);
	wire_free_guest_open(m);
}

static void test_argv_entry_with_a_nul_byte_is_rejected(void **state)
{
	(void)state;
	struct wire_error e = { 0 };
	Miosa__HostToGuest *m = NULL;
	uint8_t exec[64], buf[128];
	size_t n = 0;

	exec[n++] = 0x08, exec[n++] = 0x01; /* exec_id = 1 */
	n = put_len(exec, n, 2, "rm\0-rf", 6);
	n = put_len(buf, 0, 3, exec, n);
	assert_int_equal(wire_decode_host_to_guest(buf, n, &m, &e), -EBADMSG);
	assert_string_equal(e.message, "ExecRequest");
	assert_string_equal(e.field, "argv");
}

static void test_only_well_formed_utf8_is_accepted_in_strings(void **state)
{
	(void)state;
	static const char *const good[] = {
		"plain", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9d\x84\x9e", "\xf4\x8f\xbf\xbf",
		"\xed\x9f\xbf", "\xee\x80\x80",
	};
	static const char *const bad[] = {
		"\x80",             /* lone continuation */
		"\xc0\x80",         /* overlong NUL */
		"\xc1\xbf",         /* overlong */
		"\xe0\x80\x80",     /* overlong */
		"\xed\xa0\x80",     /* surrogate U+D800 */
		"\xf0\x80\x80\x80", /* overlong */
		"\xf4\x90\x80\x80", /* above U+10FFFF */
		"\xf5\x80\x80\x80", "\xff", "\xc3", "\xe2\x82", "\xc3\x28",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		fx.result.reason = (char *)good[i];
		accept_open_result(&fx.result);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fx.result.reason = (char *)bad[i];
		reject_open_result(&fx.result, -EBADMSG, "OpenResult", "reason");
	}
}

static void test_malformed_encodings_are_bad_messages(void **state)
{
	(void)state;
	static const struct {
		const char *what;
		uint8_t bytes[16];
		size_t len;
	} cases[] = {
		{ "truncated key", { 0x80 }, 1 },
		{ "truncated length", { 0x0a }, 1 },
		{ "length past the end", { 0x0a, 0x05, 0x0a }, 3 },
		{ "length varint over 10 bytes",
		  { 0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 }, 12 },
		{ "start group", { 0x0b, 0x0c }, 2 },
		{ "wire type 6", { 0x0e }, 1 },
		{ "truncated fixed64", { 0x79, 1, 2, 3 }, 4 },
		{ "truncated fixed32", { 0x7d, 1 }, 2 },
		{ "known message field as varint", { 0x08, 0x01 }, 2 },
		{ "field number zero", { 0x02, 0x00 }, 2 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct wire_error e = { 0 };
		Miosa__GuestOpen *m = NULL;
		int r = wire_decode_guest_open(cases[i].bytes, cases[i].len, &m, &e);

		if (r != -EBADMSG)
			print_message("case \"%s\": %d\n", cases[i].what, r);
		assert_int_equal(r, -EBADMSG);
		assert_null(m);
		assert_string_equal(e.message, "GuestOpen");
		assert_non_null(e.reason);
	}
}

static void test_unknown_fields_are_ignored(void **state)
{
	(void)state;
	struct wire_error e = { 0 };
	Miosa__GuestOpen *m = NULL;
	uint8_t hello[128], buf[256];
	size_t n;
	/* field 99: varint, fixed64, fixed32, and length-delimited with a NUL */
	static const uint8_t unknown[] = {
		0x98, 0x06, 0x01,
		0x99, 0x06, 1, 2, 3, 4, 5, 6, 7, 8,
		0x9d, 0x06, 1, 2, 3, 4,
		0x9a, 0x06, 0x02, 0x00, 0xff,
	};

	n = put_len(hello, 0, 1, "1.0", 3);
	n = put_len(hello, n, 2, fx.boot_id, sizeof(fx.boot_id));
	memcpy(hello + n, unknown, sizeof(unknown));
	n += sizeof(unknown);
	n = put_len(buf, 0, 1, hello, n);
	memcpy(buf + n, unknown, sizeof(unknown));
	n += sizeof(unknown);
	assert_int_equal(wire_decode_guest_open(buf, n, &m, &e), 0);
	assert_string_equal(m->control->agent_version, "1.0");
	wire_free_guest_open(m);
}

static void test_payload_needing_more_than_the_unpack_budget_is_rejected(void **state)
{
	(void)state;
	struct wire_error e = { 0 };
	Miosa__HostToGuest *m = NULL;
	uint8_t *buf = malloc(FRAME_MAX_PAYLOAD);
	size_t n = 0, inner = FRAME_MAX_PAYLOAD - 4 - 2;

	/* HostToGuest{exec: ExecRequest{exec_id 1, argv: "" x 32765}}: 64 KiB on
	 * the wire, megabytes of pointers, slabs and tiny strings unpacked */
	assert_non_null(buf);
	buf[n++] = 0x1a;
	buf[n++] = (uint8_t)(0x80 | (inner & 0x7f));
	buf[n++] = (uint8_t)(0x80 | ((inner >> 7) & 0x7f));
	buf[n++] = (uint8_t)(inner >> 14);
	buf[n++] = 0x08, buf[n++] = 0x01;
	while (n + 2 <= FRAME_MAX_PAYLOAD)
		buf[n++] = 0x12, buf[n++] = 0x00;
	assert_int_equal(n, FRAME_MAX_PAYLOAD);
	assert_int_equal(wire_decode_host_to_guest(buf, n, &m, &e), -EBADMSG);
	assert_null(m);
	assert_string_equal(e.message, "HostToGuest");
	assert_string_equal(e.reason, "needs more memory to unpack than WIRE_UNPACK_BUDGET");
	free(buf);
}

static void test_payload_longer_than_a_frame_is_rejected(void **state)
{
	(void)state;
	struct wire_error e = { 0 };
	Miosa__DnsAnswer *m = NULL;

	assert_int_equal(wire_decode_dns_answer(payload_buf, FRAME_MAX_PAYLOAD + 1, &m, &e),
			 -EMSGSIZE);
	assert_null(m);
}

static void test_garbage_payloads_are_rejected_by_every_decoder(void **state)
{
	(void)state;
	uint8_t buf[512];
	uint32_t seed = 99;

	for (int round = 0; round < 2000; round++) {
		size_t len = 1 + round % sizeof(buf);
		Miosa__GuestOpen *a = NULL;
		Miosa__HostToGuest *b = NULL;
		Miosa__GuestToHost *c = NULL;
		Miosa__OpenResult *d = NULL;
		Miosa__DnsAnswer *f = NULL;
		int r;

		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			buf[i] = (uint8_t)(seed >> 16);
		}
		/* Random bytes may, rarely, be a valid message: then it must free cleanly. */
		r = wire_decode_guest_open(buf, len, &a, NULL);
		assert_true(r == 0 || r == -EBADMSG || r == -EINVAL);
		wire_free_guest_open(a);
		r = wire_decode_host_to_guest(buf, len, &b, NULL);
		assert_true(r == 0 || r == -EBADMSG || r == -EINVAL);
		wire_free_host_to_guest(b);
		r = wire_decode_guest_to_host(buf, len, &c, NULL);
		assert_true(r == 0 || r == -EBADMSG || r == -EINVAL);
		wire_free_guest_to_host(c);
		r = wire_decode_open_result(buf, len, &d, NULL);
		assert_true(r == 0 || r == -EBADMSG || r == -EINVAL);
		wire_free_open_result(d);
		r = wire_decode_dns_answer(buf, len, &f, NULL);
		assert_true(r == 0 || r == -EBADMSG || r == -EINVAL);
		wire_free_dns_answer(f);
	}
}

static void test_frame_helpers_report_small_buffer_and_oversize(void **state)
{
	(void)state;
	struct wire_error e = { 0 };
	uint8_t small[8];
	uint8_t *pkt = calloc(1, FRAME_MAX_PAYLOAD);
	size_t len = 5;

	assert_int_equal(wire_frame_open_result(&fx.result, small, sizeof(small), &len, &e),
			 -ENOBUFS);
	assert_string_equal(e.message, "OpenResult");
	assert_int_equal(len, 5);

	assert_non_null(pkt);
	fx.answer.packet = (ProtobufCBinaryData){ WIRE_DNS_MAX, pkt };
	assert_int_equal(wire_frame_dns_answer(&fx.answer, frame_buf, sizeof(frame_buf), &len, &e),
			 -EMSGSIZE);
	assert_string_equal(e.reason, "does not fit in one frame");
	assert_int_equal(len, 5);
	free(pkt);
}

static void test_free_functions_accept_null(void **state)
{
	(void)state;
	wire_free_guest_open(NULL);
	wire_free_host_to_guest(NULL);
	wire_free_guest_to_host(NULL);
	wire_free_open_result(NULL);
	wire_free_dns_answer(NULL);
}

#define T(f) cmocka_unit_test_setup_teardown(f, fixture_setup, fixture_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_guest_open_control_round_trips),
		T(test_guest_open_egress_round_trips_ipv4_and_ipv6),
		T(test_guest_open_dns_round_trips),
		T(test_hello_ack_round_trips),
		T(test_env_update_round_trips),
		T(test_exec_request_round_trips),
		T(test_ping_round_trips),
		T(test_exec_output_round_trips),
		T(test_exec_exit_round_trips_each_outcome),
		T(test_pong_round_trips),
		T(test_open_result_round_trips),
		T(test_dns_answer_round_trips),
		T(test_message_without_its_oneof_set_is_rejected),
		T(test_empty_payload_is_rejected_as_an_unset_oneof),
		T(test_oneof_sent_twice_is_judged_by_the_last_member),
		T(test_hello_with_bad_agent_version_is_rejected),
		T(test_hello_with_boot_id_not_16_bytes_is_rejected),
		T(test_egress_open_with_bad_address_length_is_rejected),
		T(test_egress_open_with_port_outside_1_to_65535_is_rejected),
		T(test_dns_packets_shorter_than_a_header_are_rejected),
		T(test_largest_dns_answer_that_fits_a_frame_is_accepted),
		T(test_exec_output_with_zero_exec_id_is_rejected),
		T(test_exec_output_with_unspecified_or_unknown_stream_is_rejected),
		T(test_exec_output_chunk_over_32_kib_is_rejected),
		T(test_exec_exit_with_zero_exec_id_is_rejected),
		T(test_exec_exit_with_out_of_range_outcome_is_rejected),
		T(test_hello_ack_with_bad_sandbox_id_is_rejected),
		T(test_hello_ack_with_bad_placeholder_is_rejected),
		T(test_hello_ack_with_bad_env_name_is_rejected),
		T(test_hello_ack_with_duplicate_env_name_is_rejected),
		T(test_hello_ack_with_more_than_256_env_bindings_is_rejected),
		T(test_hello_ack_with_bad_ca_pem_is_rejected),
		T(test_hello_ack_with_bad_listen_ports_is_rejected),
		T(test_hello_ack_without_limits_is_rejected),
		T(test_hello_ack_with_out_of_range_limits_is_rejected),
		T(test_env_update_with_bad_binding_is_rejected),
		T(test_env_update_with_a_name_in_set_and_unset_is_rejected),
		T(test_env_update_with_bad_or_too_many_unset_names_is_rejected),
		T(test_exec_request_with_zero_exec_id_is_rejected),
		T(test_exec_request_with_bad_argv_is_rejected),
		T(test_exec_request_with_bad_env_is_rejected),
		T(test_exec_request_with_relative_or_long_cwd_is_rejected),
		T(test_exec_request_with_timeout_over_a_day_is_rejected),
		T(test_open_result_with_unspecified_or_unknown_status_is_rejected),
		T(test_open_result_with_reason_over_256_bytes_is_rejected),
		T(test_string_with_a_nul_byte_is_rejected),
		T(test_argv_entry_with_a_nul_byte_is_rejected),
		T(test_only_well_formed_utf8_is_accepted_in_strings),
		T(test_malformed_encodings_are_bad_messages),
		T(test_unknown_fields_are_ignored),
		T(test_payload_needing_more_than_the_unpack_budget_is_rejected),
		T(test_payload_longer_than_a_frame_is_rejected),
		T(test_garbage_payloads_are_rejected_by_every_decoder),
		T(test_frame_helpers_report_small_buffer_and_oversize),
		T(test_free_functions_accept_null),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
