#include "wire.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* miosa.proto is not recursive (deepest: HostToGuest.hello_ack.env), so this
 * only guards against a future schema change turning the walk into a stack
 * hazard. */
#define WIRE_DEPTH_MAX 8u

#define PLACEHOLDER_PREFIX "miosa-tok-"
#define PLACEHOLDER_HEX 32u
#define PEM_CERT_BEGIN "-----BEGIN CERTIFICATE-----"

static int wire_fail(struct wire_error *err, int r, const char *message, const char *field,
		     const char *reason)
{
	if (err)
		*err = (struct wire_error){ .message = message, .field = field, .reason = reason };
	return r;
}

/*
 * Rule checks read like the schema: ENSURE(condition, field, reason).
 * They expect `M` (the message name) and `err` in scope.
 */
#define ENSURE(cond, field, reason)                                       \
	do {                                                              \
		if (!(cond))                                              \
			return wire_fail(err, -EINVAL, M, field, reason); \
	} while (0)

#define GUARD(expr)                   \
	do {                          \
		int guard_r_ = (expr); \
		if (guard_r_ < 0)     \
			return guard_r_; \
	} while (0)

/* --- Text ----------------------------------------------------------------- */

/* Byte classes by value: isalpha() and friends depend on the locale. */
static bool is_alpha(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_lower_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f');
}

/* Length of s, or max + 1 if longer; reads at most max + 1 bytes.  NULL (only
 * possible in a message built locally for sending) counts as empty, which is
 * how protobuf-c packs it. */
static size_t text_len(const char *s, size_t max)
{
	return s ? strnlen(s, max + 1) : 0;
}

/*
 * Well-formed UTF-8 (RFC 3629 section 4: no overlong forms, no surrogates,
 * nothing above U+10FFFF) without NUL: a C string must mean what the peer
 * sent.
 */
static bool text_valid(const uint8_t *s, size_t len)
{
	struct cursor c;
	uint8_t b;

	cursor_init(&c, s, len);
	while (cursor_get_u8(&c, &b) == 0) {
		uint8_t lo = 0x80, hi = 0xbf, next;
		unsigned more;

		if (b == 0)
			return false;
		if (b < 0x80)
			continue;
		if (b >= 0xc2 && b <= 0xdf)
			more = 1;
		else if (b >= 0xe0 && b <= 0xef)
			more = 2, lo = b == 0xe0 ? 0xa0 : 0x80, hi = b == 0xed ? 0x9f : 0xbf;
		else if (b >= 0xf0 && b <= 0xf4)
			more = 3, lo = b == 0xf0 ? 0x90 : 0x80, hi = b == 0xf4 ? 0x8f : 0xbf;
		else
			return false;
		/* Only the first continuation byte has a narrowed range. */
		for (unsigned i = 0; i < more; i++, lo = 0x80, hi = 0xbf)
			if (cursor_get_u8(&c, &next) != 0 || next < lo || next > hi)
				return false;
	}
	return true;
}

static bool printable_ascii(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return false;
	return true;
}

/* POSIX portable env name: [A-Za-z_][A-Za-z0-9_]*, 1..WIRE_ENV_NAME_MAX. */
static bool env_name_valid(const char *s)
{
	size_t len = text_len(s, WIRE_ENV_NAME_MAX);

	if (len == 0 || len > WIRE_ENV_NAME_MAX || is_digit(s[0]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '_')
			return false;
	return true;
}

static bool placeholder_valid(const char *s)
{
	const size_t plen = sizeof(PLACEHOLDER_PREFIX) - 1;

	if (text_len(s, plen + PLACEHOLDER_HEX) != plen + PLACEHOLDER_HEX ||
	    memcmp(s, PLACEHOLDER_PREFIX, plen) != 0)
		return false;
	for (size_t i = plen; i < plen + PLACEHOLDER_HEX; i++)
		if (!is_lower_hex(s[i]))
			return false;
	return true;
}

static bool sandbox_id_valid(const char *s)
{
	size_t len = text_len(s, WIRE_SANDBOX_ID_MAX);

	if (len == 0 || len > WIRE_SANDBOX_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_alpha(s[i]) && !is_digit(s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

/* Names are valid (non-empty, <= WIRE_ENV_NAME_MAX) by the time this runs;
 * quadratic, but n <= 2 * WIRE_ENV_MAX. */
static bool names_distinct(const char *const *names, size_t n)
{
	for (size_t i = 1; i < n; i++)
		for (size_t j = 0; j < i; j++)
			if (strcmp(names[i], names[j]) == 0)
				return false;
	return true;
}

/* --- Encoding walk -----------------------------------------------------------
 * protobuf-c checks the encoding but not the text of string fields, and its
 * C strings end at the first NUL.  This walks the payload once, with the
 * descriptors, before unpacking: every string field of the schema must be
 * text_valid(); groups and malformed records are refused.
 */

static int get_varint(struct cursor *c, uint64_t *ret_value)
{
	uint64_t v = 0;
	uint8_t b;

	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (cursor_get_u8(c, &b) != 0)
			return -EBADMSG;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*ret_value = v;
			return 0;
		}
	}
	return -EBADMSG; /* more than 10 bytes */
}

static int walk(const ProtobufCMessageDescriptor *desc, struct cursor *c, unsigned depth,
		struct wire_error *err);

/* One length-delimited record: check it if the schema says text or message. */
static int walk_len(const ProtobufCMessageDescriptor *desc, const ProtobufCFieldDescriptor *f,
		    const uint8_t *bytes, size_t len, unsigned depth, struct wire_error *err)
{
	struct cursor sub;

	if (!f)
		return 0; /* unknown field: ignored */
	if (f->type == PROTOBUF_C_TYPE_STRING && !text_valid(bytes, len))
		return wire_fail(err, -EBADMSG, desc->short_name, f->name,
				 "not UTF-8 text, or holds a NUL byte");
	if (f->type != PROTOBUF_C_TYPE_MESSAGE)
		return 0;
	if (depth >= WIRE_DEPTH_MAX)
		return wire_fail(err, -EBADMSG, desc->short_name, f->name, "nested too deep");
	cursor_init(&sub, bytes, len);
	return walk(f->descriptor, &sub, depth + 1, err);
}

static int walk(const ProtobufCMessageDescriptor *desc, struct cursor *c, unsigned depth,
		struct wire_error *err)
{
	static const char bad[] = "not a valid protobuf encoding";

	while (cursor_remaining(c) > 0) {
		const ProtobufCFieldDescriptor *f;
		const uint8_t *bytes = NULL;
		uint64_t key, v;
		int r;

		/* Field numbers are 1..2^29 - 1 (protobuf encoding spec). */
		if (get_varint(c, &key) != 0 || key >> 3 == 0 || key >> 3 > 0x1fffffff)
			return wire_fail(err, -EBADMSG, desc->short_name, "*", bad);
		f = protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3));
		switch (key & 7) {
		case PROTOBUF_C_WIRE_TYPE_VARINT:
			r = get_varint(c, &v);
			break;
		case PROTOBUF_C_WIRE_TYPE_64BIT:
			r = cursor_skip(c, 8);
			break;
		case PROTOBUF_C_WIRE_TYPE_32BIT:
			r = cursor_skip(c, 4);
			break;
		case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED:
			if ((r = get_varint(c, &v)) != 0)
				break;
			/* compare before narrowing: v may not fit in size_t */
			r = v > cursor_remaining(c) ? -EBADMSG
						    : cursor_get_bytes(c, (size_t)v, &bytes);
			if (r == 0)
				GUARD(walk_len(desc, f, bytes, (size_t)v, depth, err));
			break;
		default: /* groups (deprecated) and reserved wire types */
			r = -EBADMSG;
			break;
		}
		if (r != 0)
			return wire_fail(err, -EBADMSG, desc->short_name, f ? f->name : "*", bad);
	}
	return 0;
}

/* --- Unpacking under a budget --------------------------------------------- */

struct budget {
	size_t left;
	bool exceeded; /* the peer asked for too much */
	bool oom;      /* malloc itself failed */
};

/* Cumulative: what protobuf-c frees mid-unpack is not credited back. */
static void *budget_alloc(void *data, size_t size)
{
	struct budget *b = data;
	void *p;

	if (size > b->left) {
		b->exceeded = true;
		return NULL;
	}
	b->left -= size;
	p = malloc(size);
	if (!p)
		b->oom = true;
	return p;
}

static void budget_free(void *data, void *p)
{
	(void)data;
	free(p);
}

/*
 * The budget allocator is malloc() underneath, so the message is freed later
 * with protobuf-c's default allocator (NULL) and the budget need not outlive
 * this call.
 */
static int unpack(const ProtobufCMessageDescriptor *desc, const void *payload, size_t len,
		  ProtobufCMessage **ret_msg, struct wire_error *err)
{
	struct budget b = { .left = WIRE_UNPACK_BUDGET };
	ProtobufCAllocator alloc = { .alloc = budget_alloc, .free = budget_free,
				     .allocator_data = &b };
	ProtobufCMessage *m;

	m = protobuf_c_message_unpack(desc, &alloc, len, payload);
	if (m) {
		*ret_msg = m;
		return 0;
	}
	if (b.oom)
		return wire_fail(err, -ENOMEM, desc->short_name, "*", "out of memory");
	if (b.exceeded)
		return wire_fail(err, -EBADMSG, desc->short_name, "*",
				 "needs more memory to unpack than WIRE_UNPACK_BUDGET");
	return wire_fail(err, -EBADMSG, desc->short_name, "*", "not a valid protobuf encoding");
}

/* --- Rules, one function per message ---------------------------------------
 * Each takes the message as ProtobufCMessage so oneof tables can hold it.
 */

typedef int check_fn(const ProtobufCMessage *m, struct wire_error *err);

struct oneof_case {
	uint32_t number; /* protobuf-c numbers a oneof case by its field number */
	check_fn *check; /* NULL: the message has nothing to check */
};

/*
 * The one place oneofs are checked: the set case must be in the table, and
 * its (message) member is checked by the case's rule.
 */
static int check_oneof(const ProtobufCMessage *m, uint32_t set, const char *oneof,
		       const struct oneof_case *cases, size_t n, struct wire_error *err)
{
	const char *M = m->descriptor->short_name;

	for (size_t i = 0; i < n; i++) {
		const ProtobufCFieldDescriptor *f;
		const ProtobufCMessage *sub;

		if (cases[i].number != set)
			continue;
		f = protobuf_c_message_descriptor_get_field(m->descriptor, set);
		/* Tables only list message cases: a programmer error otherwise. */
		assert(f && f->type == PROTOBUF_C_TYPE_MESSAGE);
		memcpy(&sub, (const char *)m + f->offset, sizeof(sub));
		ENSURE(sub, f->name, "set without a message");
		return cases[i].check ? cases[i].check(sub, err) : 0;
	}
	return wire_fail(err, -EINVAL, M, oneof, "not set");
}

static int check_env_binding(const ProtobufCMessage *m, struct wire_error *err)
{
	static const char M[] = "EnvBinding";
	const Miosa__EnvBinding *b = (const void *)m;

	ENSURE(env_name_valid(b->name), "name",
	       "must match [A-Za-z_][A-Za-z0-9_]* and be 1..128 bytes");
	ENSURE(placeholder_valid(b->placeholder), "placeholder",
	       "must be \"miosa-tok-\" + 32 lowercase hex digits");
	return 0;
}

static int check_env_var(const ProtobufCMessage *m, struct wire_error *err)
{
	static const char M[] = "EnvVar";
	const Miosa__EnvVar *v = (const void *)m;

	ENSURE(env_name_valid(v->name), "name",
	       "must match [A-Za-z_][A-Za-z0-9_]* and be 1..128 bytes");
	ENSURE(text_len(v->value, WIRE_ENV_VALUE_MAX) <= WIRE_ENV_VALUE_MAX, "value",
	       "longer than WIRE_ENV_VALUE_MAX");
	return 0;
}

/* The entries of a repeated EnvBinding field, each checked; names collected. */
static int check_bindings(const char *M, const char *field, Miosa__EnvBinding *const *env,
			  size_t n, const char **names, struct wire_error *err)
{
	ENSURE(n <= WIRE_ENV_MAX, field, "more than WIRE_ENV_MAX entries");
	for (size_t i = 0; i < n; i++) {
		ENSURE(env[i], field, "NULL entry");
		GUARD(check_env_binding(&env[i]->base, err));
		names[i] = env[i]->name;
	}
	return 0;
}

static int check_limits(const ProtobufCMessage *m, struct wire_error *err)
{
	static const char M[] = "Limits";
	const Miosa__Limits *l = (const void *)m;

	ENSURE(l->max_connections >= 1 && l->max_connections <= WIRE_MAX_CONNECTIONS_MAX,
	       "max_connections", "must be 1..65535");
	ENSURE(l->exec_output_max_bytes >= 1 &&
		       l->exec_output_max_bytes <= WIRE_EXEC_OUTPUT_TOTAL_MAX,
	       "exec_output_max_bytes", "must be 1..2^30");
	ENSURE(l->max_execs >= 1 && l->max_execs <= WIRE_MAX_EXECS_MAX, "max_execs",
	       "must be 1..1024");
	return 0;
}

static int check_hello(const ProtobufCMessage *m, struct wire_error *err)
{
	static const char M[] = "Hello";
	const Miosa__Hello *h = (const void *)m;
	size_t len = text_len(h->agent_version, WIRE_AGENT_VERSION_MAX);

	ENSURE(len >= 1 && len <= WIRE_AGENT_VERSION_MAX && printable_ascii(h->agent_version, len),
	       "agent_version", "must be 1..64 bytes of printable ASCII");
	ENSURE(h->boot_id.len == WIRE_BOOT_ID_SIZE, "boot_id", "must be 16 bytes");
	return 0;
}

static int check_listen_ports(const Miosa__HelloAck *a, struct wire_error *err)
{
	static const char M[] = "HelloAck";
	uint64_t seen[65536 / 64] = { 0 };

	ENSURE(a->n_listen_ports <= WIRE_LISTEN_PORTS_MAX, "listen_ports",
	       "more than WIRE_LISTEN_PORTS_MAX entries");
	for (size_t i = 0; i < a->n_listen_ports; i++) {
		uint32_t p = a->listen_ports[i];

		ENSURE(p >= 1 && p <= 65535, "listen_ports", "port must be 1..65535");
		ENSURE(!(seen[p / 64] & (UINT64_C(1) << (p % 64))), "listen_ports",
		       "duplicate port");
		seen[p / 64] |= UINT64_C(1) << (p % 64);
	}
	return 0;
}

static int check_hello_ack(const ProtobufCMessage *m, struct wire_error *err)
{
	static const char M[] = "HelloAck";
	const Miosa__HelloAck *a = (const void *)m;
	const char *names[WIRE_ENV_MAX];
	size_t pem_len = text_len(a->ca_pem, WIRE_CA_PEM_MAX);

	ENSURE(sandbox_id_valid(a->sandbox_id), "sandbox_id",
	       "must be 1..64 bytes of [A-Za-z0-9._-]");
	GUARD(check_bindings(M, "env", a->env, a->n_env, names, err));
	ENSURE(names_distinct(names, a->n_env), "env", "duplicate name");
	ENSURE(pem_len <= WIRE_CA_PEM_MAX, "ca_pem", "longer than 16 KiB");
	ENSURE(pem_len >= sizeof(PEM_CERT_BEGIN) - 1 &&
		       memcmp(a->ca_pem, PEM_CERT_BEGIN, sizeof(PEM_CERT_BEGIN) - 1) == 0,
	       "ca_pem", "must start with \"" PEM_CERT_BEGIN "\"");
	GUARD(check_listen_ports(a, err));
	ENSURE(a->limits, "limits", "missing");
	return check_limits(&a->limits->base, err);
}

static int check_env_update(const ProtobufCMessage *m, struct wire_error *err)
{
	static const char M[] = "EnvUpdate";
	const Miosa__EnvUpdate *u = (const void *)m;
	/* set and unset together: a name in both is as ambiguous as a duplicate */
	const char *names[2 * WIRE_ENV_MAX];

	GUARD(check_bindings(M, "set", u->set, u->n_set, names, err));
	ENSURE(u->n_unset <= WIRE_ENV_MAX, "unset", "more than WIRE_ENV_MAX entries");
	for (size_t i = 0; i < u->n_unset; i++) {
		ENSURE(env_name_valid(u->unset[i]), "unset",
		       "must match [A-Za-z_][A-Za-z0-9_]* and be 1..128 bytes");
		names[u->n_set + i] = u->unset[i];
	}
	ENSURE(names_distinct(names, u->n_set + u->n_unset), "set",
	       "duplicate name in set and unset");
	return 0;
}

static int check_exec_argv(const Miosa__ExecRequest *x, struct wire_error *err)
{
	static const char M[] = "ExecRequest";

	ENSURE(x->n_argv >= 1 && x->n_argv <= WIRE_ARGV_MAX, "argv", "must have 1..256 entries");
	ENSURE(text_len(x->argv[0], 1) >= 1, "argv", "argv[0] is empty");
	for (size_t i = 0; i < x->n_argv; i++)
		ENSURE(text_len(x->argv[i], WIRE_ARG_MAX) <= WIRE_ARG_MAX, "argv",
		       "entry longer than 4 KiB");
	return 0;
}

static int check_exec_request(const ProtobufCMessage *m, struct wire_error *err)
{
	static const char M[] = "ExecRequest";
	const Miosa__ExecRequest *x = (const void *)m;
	const char *names[WIRE_ENV_MAX];
	size_t cwd_len = text_len(x->cwd, WIRE_CWD_MAX);

	ENSURE(x->exec_id != 0, "exec_id", "must be non-zero");
	GUARD(check_exec_argv(x, err));
	ENSURE(x->n_env <= WIRE_ENV_MAX, "env", "more than WIRE_ENV_MAX entries");
	for (size_t i = 0; i < x->n_env; i++) {
		ENSURE(x->env[i], "env", "NULL entry");
		GUARD(check_env_var(&x->env[i]->base, err));
		names[i] = x->env[i]->name;
	}
	ENSURE(names_distinct(names, x->n_env), "env", "duplicate name");
	ENSURE(cwd_len <= WIRE_CWD_MAX, "cwd", "longer than 4095 bytes");
	ENSURE(cwd_len == 0 || x->cwd[0] == '/', "cwd", "must be empty or absolute");
	ENSURE(x->timeout_ms <= WIRE_TIMEOUT_MS_MAX, "timeout_ms", "more than 24 hours");
	return 0;
}

static int check_exec_output(const ProtobufCMessage *m, struct wire_error *err)
{
	static const char M[] = "ExecOutput";
	const Miosa__ExecOutput *o = (const void *)m;

	ENSURE(o->exec_id != 0, "exec_id", "must be non-zero");
	ENSURE(o->stream == MIOSA__EXEC_OUTPUT__STREAM__STREAM_STDOUT ||
		       o->stream == MIOSA__EXEC_OUTPUT__STREAM__STREAM_STDERR,
	       "stream", "must be STREAM_STDOUT or STREAM_STDERR");
	ENSURE(o->data.len <= WIRE_EXEC_CHUNK_MAX, "data", "longer than 32 KiB");
	return 0;
}

/* Its oneof holds scalars, not messages, so it is checked here in full. */
static int check_exec_exit(const ProtobufCMessage *m, struct wire_error *err)
{
	static const char M[] = "ExecExit";
	const Miosa__ExecExit *e = (const void *)m;
	size_t len;

	ENSURE(e->exec_id != 0, "exec_id", "must be non-zero");
	switch (e->outcome_case) {
	case MIOSA__EXEC_EXIT__OUTCOME_EXIT_CODE:
		ENSURE(e->exit_code >= 0 && e->exit_code <= 255, "exit_code", "must be 0..255");
		return 0;
	case MIOSA__EXEC_EXIT__OUTCOME_SIGNAL:
		ENSURE(e->signal >= 1 && e->signal <= (int32_t)WIRE_SIGNAL_MAX, "signal",
		       "must be 1..64");
		return 0;
	case MIOSA__EXEC_EXIT__OUTCOME_TIMED_OUT:
		ENSURE(e->timed_out, "timed_out", "must be true when set");
		return 0;
	case MIOSA__EXEC_EXIT__OUTCOME_START_ERROR:
		len = text_len(e->start_error, WIRE_START_ERROR_MAX);
		ENSURE(len >= 1 && len <= WIRE_START_ERROR_MAX, "start_error",
		       "must be 1..256 bytes");
		return 0;
	default:
		return wire_fail(err, -EINVAL, M, "outcome", "not set");
	}
}

static int check_egress_open(const ProtobufCMessage *m, struct wire_error *err)
{
	static const char M[] = "EgressOpen";
	const Miosa__EgressOpen *o = (const void *)m;

	ENSURE(o->dst_addr.len == 4 || o->dst_addr.len == 16, "dst_addr",
	       "must be 4 (IPv4) or 16 (IPv6) bytes");
	ENSURE(o->dst_port >= 1 && o->dst_port <= 65535, "dst_port", "must be 1..65535");
	return 0;
}

static int check_dns_packet(const char *M, const ProtobufCBinaryData *p, struct wire_error *err)
{
	ENSURE(p->len >= WIRE_DNS_MIN && p->len <= WIRE_DNS_MAX, "packet",
	       "must be 12..65535 bytes");
	return 0;
}

static int check_dns_query(const ProtobufCMessage *m, struct wire_error *err)
{
	return check_dns_packet("DnsQuery", &((const Miosa__DnsQuery *)(const void *)m)->packet, err);
}

static int check_dns_answer(const ProtobufCMessage *m, struct wire_error *err)
{
	return check_dns_packet("DnsAnswer", &((const Miosa__DnsAnswer *)(const void *)m)->packet,
				err);
}

static int check_open_result(const ProtobufCMessage *m, struct wire_error *err)
{
	static const char M[] = "OpenResult";
	const Miosa__OpenResult *o = (const void *)m;

	ENSURE(o->status == MIOSA__OPEN_RESULT__STATUS__STATUS_OK ||
		       o->status == MIOSA__OPEN_RESULT__STATUS__STATUS_REFUSED,
	       "status", "must be STATUS_OK or STATUS_REFUSED");
	ENSURE(text_len(o->reason, WIRE_REASON_MAX) <= WIRE_REASON_MAX, "reason",
	       "longer than 256 bytes");
	return 0;
}

static const struct oneof_case guest_open_cases[] = {
	{ MIOSA__GUEST_OPEN__KIND_CONTROL, check_hello },
	{ MIOSA__GUEST_OPEN__KIND_EGRESS, check_egress_open },
	{ MIOSA__GUEST_OPEN__KIND_DNS, check_dns_query },
};

static const struct oneof_case host_to_guest_cases[] = {
	{ MIOSA__HOST_TO_GUEST__MSG_HELLO_ACK, check_hello_ack },
	{ MIOSA__HOST_TO_GUEST__MSG_ENV_UPDATE, check_env_update },
	{ MIOSA__HOST_TO_GUEST__MSG_EXEC, check_exec_request },
	{ MIOSA__HOST_TO_GUEST__MSG_PING, NULL },
};

static const struct oneof_case guest_to_host_cases[] = {
	{ MIOSA__GUEST_TO_HOST__MSG_EXEC_OUTPUT, check_exec_output },
	{ MIOSA__GUEST_TO_HOST__MSG_EXEC_EXIT, check_exec_exit },
	{ MIOSA__GUEST_TO_HOST__MSG_PONG, NULL },
};

static int check_guest_open(const ProtobufCMessage *m, struct wire_error *err)
{
	const Miosa__GuestOpen *g = (const void *)m;

	return check_oneof(m, g->kind_case, "kind", guest_open_cases,
			   ARRAY_SIZE(guest_open_cases), err);
}

static int check_host_to_guest(const ProtobufCMessage *m, struct wire_error *err)
{
	const Miosa__HostToGuest *h = (const void *)m;

	return check_oneof(m, h->msg_case, "msg", host_to_guest_cases,
			   ARRAY_SIZE(host_to_guest_cases), err);
}

static int check_guest_to_host(const ProtobufCMessage *m, struct wire_error *err)
{
	const Miosa__GuestToHost *g = (const void *)m;

	return check_oneof(m, g->msg_case, "msg", guest_to_host_cases,
			   ARRAY_SIZE(guest_to_host_cases), err);
}

/* --- Exported for codecs with their own rules (wire.h) -------------------- */

int wire_check_text(const ProtobufCMessageDescriptor *desc, const void *payload, size_t len,
		    struct wire_error *err)
{
	struct cursor c;

	cursor_init(&c, payload, len);
	return walk(desc, &c, 0, err);
}

int wire_unpack(const ProtobufCMessageDescriptor *desc, const void *payload, size_t len,
		ProtobufCMessage **ret_msg, struct wire_error *err)
{
	GUARD(wire_check_text(desc, payload, len, err));
	return unpack(desc, payload, len, ret_msg, err);
}

/* --- Top-level messages ------------------------------------------------------ */

struct wire_spec {
	const ProtobufCMessageDescriptor *desc;
	check_fn *check;
};

static int wire_decode(const struct wire_spec *spec, const void *payload, size_t len,
		       ProtobufCMessage **ret_msg, struct wire_error *err)
{
	ProtobufCMessage *m = NULL;
	struct cursor c;
	int r;

	if (len > FRAME_MAX_PAYLOAD)
		return wire_fail(err, -EMSGSIZE, spec->desc->short_name, "*",
				 "longer than FRAME_MAX_PAYLOAD");
	cursor_init(&c, payload, len);
	if ((r = walk(spec->desc, &c, 0, err)) < 0 ||
	    (r = unpack(spec->desc, payload, len, &m, err)) < 0 ||
	    (r = spec->check(m, err)) < 0)
		goto out;
	*ret_msg = m;
	m = NULL;
out:
	if (m)
		protobuf_c_message_free_unpacked(m, NULL);
	return r;
}

static int wire_encode(const struct wire_spec *spec, const ProtobufCMessage *msg, uint8_t *buf,
		       size_t cap, size_t *ret_len, struct wire_error *err)
{
	const char *M = spec->desc->short_name;
	struct cursor c;
	size_t len;
	int r;

	assert(msg && msg->descriptor == spec->desc);
	GUARD(spec->check(msg, err));
	r = frame_encode(msg, buf, cap, &len);
	if (r < 0)
		return wire_fail(err, r, M, "*",
				 r == -EMSGSIZE ? "does not fit in one frame" : "buffer too small");
	/* The rules above cannot see text: walk what we are about to send. */
	cursor_init(&c, buf + FRAME_HEADER_SIZE, len - FRAME_HEADER_SIZE);
	if (walk(spec->desc, &c, 0, err) < 0)
		return -EINVAL;
	*ret_len = len;
	return 0;
}

/* Typed entry points (declared in wire.h) over the two functions above. */
#define WIRE_MESSAGE(name, type, prefix)                                                    \
	static const struct wire_spec spec_##name = { &prefix##__descriptor, check_##name }; \
	int wire_decode_##name(const void *payload, size_t len, type **ret_msg,              \
			       struct wire_error *err)                                       \
	{                                                                                    \
		ProtobufCMessage *m;                                                         \
		int r = wire_decode(&spec_##name, payload, len, &m, err);                    \
		if (r == 0)                                                                  \
			*ret_msg = (type *)m;                                                \
		return r;                                                                    \
	}                                                                                    \
	int wire_frame_##name(const type *msg, uint8_t *buf, size_t cap, size_t *ret_len,    \
			      struct wire_error *err)                                        \
	{                                                                                    \
		return wire_encode(&spec_##name, &msg->base, buf, cap, ret_len, err);        \
	}                                                                                    \
	void wire_free_##name(type *msg)                                                     \
	{                                                                                    \
		if (msg)                                                                     \
			prefix##__free_unpacked(msg, NULL);                                  \
	}

WIRE_MESSAGE(guest_open, Miosa__GuestOpen, miosa__guest_open)
WIRE_MESSAGE(host_to_guest, Miosa__HostToGuest, miosa__host_to_guest)
WIRE_MESSAGE(guest_to_host, Miosa__GuestToHost, miosa__guest_to_host)
WIRE_MESSAGE(open_result, Miosa__OpenResult, miosa__open_result)
WIRE_MESSAGE(dns_answer, Miosa__DnsAnswer, miosa__dns_answer)
