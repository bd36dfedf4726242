#include "broker_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host_pattern.h"

struct bc_option;

/* Sets one option from its text; on failure writes the reason (no prefix) to err. */
typedef int (*bc_setter)(struct broker_config *cfg, const struct bc_option *o,
			 const char *value, char *err, size_t err_size);

struct bc_option {
	const char *name;      /* flag without "--", config file key */
	const char *metavar;   /* NULL: a flag without a value */
	const char *def;       /* default, as --help shows it */
	const char *help;
	bc_setter set;         /* NULL for help/version/config */
	size_t offset;         /* field of struct broker_config for the generic setters */
	unsigned min, max;     /* unsigned options */
	bool repeatable;
	bool in_file;          /* may be set in a config file */
};

static int bc_set_path(struct broker_config *cfg, const struct bc_option *o,
		       const char *value, char *err, size_t err_size);
static int bc_set_uint(struct broker_config *cfg, const struct bc_option *o,
		       const char *value, char *err, size_t err_size);
static int bc_set_listen(struct broker_config *cfg, const struct bc_option *o,
			 const char *value, char *err, size_t err_size);
static int bc_set_connect_to(struct broker_config *cfg, const struct bc_option *o,
			     const char *value, char *err, size_t err_size);
static int bc_set_log_level(struct broker_config *cfg, const struct bc_option *o,
			    const char *value, char *err, size_t err_size);
static int bc_set_on_off(struct broker_config *cfg, const struct bc_option *o,
			 const char *value, char *err, size_t err_size);
static int bc_set_ports(struct broker_config *cfg, const struct bc_option *o,
			const char *value, char *err, size_t err_size);

#define BC_FIELD(f) offsetof(struct broker_config, f)
#define BC_STR(x) BC_STR_(x)
#define BC_STR_(x) #x

enum { BC_OPT_HELP, BC_OPT_VERSION, BC_OPT_CONFIG }; /* first three rows below */

/* The one list of options: parsing, --help and docs/broker.md follow it. */
static const struct bc_option bc_options[] = {
	{ "help", NULL, NULL, "show this help and exit", .in_file = false },
	{ "version", NULL, NULL, "show the version and exit", .in_file = false },
	{ "config", "FILE", "none", "read options from FILE (key = value lines); flags override it",
	  .in_file = false },
	{ "state-dir", "DIR", BROKER_CONFIG_DEFAULT_STATE_DIR,
	  "state directory (state.db); created 0700 if missing",
	  bc_set_path, BC_FIELD(state_dir), .in_file = true },
	{ "master-key", "FILE", BROKER_CONFIG_DEFAULT_MASTER_KEY,
	  "32-byte master key file (0600), created on first run; keep it apart from the state dir",
	  bc_set_path, BC_FIELD(master_key), .in_file = true },
	{ "control-socket", "PATH", "STATE_DIR/" BROKER_CONFIG_SOCKET_NAME,
	  "control API Unix socket (created mode 0600)",
	  bc_set_path, BC_FIELD(control_socket), .in_file = true },
	{ "listen", "ADDR:PORT", "none",
	  "also serve the control API on TCP (IPv4 or [IPv6] literal); needs API keys",
	  bc_set_listen, .in_file = true },
	{ "connect-to", "HOST:PORT:TO_HOST:TO_PORT", "none",
	  "connect to TO_HOST:TO_PORT for upstream HOST:PORT (curl's meaning; repeatable)",
	  bc_set_connect_to, .repeatable = true, .in_file = true },
	{ "upstream-ca", "FILE", "system trust store only",
	  "extra PEM trust anchors for upstream TLS",
	  bc_set_path, BC_FIELD(upstream_ca), .in_file = true },
	{ "log-level", "LEVEL", "info", "debug, info, warn or error",
	  bc_set_log_level, .in_file = true },
	{ "max-connections", "N", BC_STR(BROKER_CONFIG_DEFAULT_MAX_CONNECTIONS),
	  "control API connections open at once (1..65536)",
	  bc_set_uint, BC_FIELD(max_connections), 1, 65536, .in_file = true },
	{ "idle-timeout", "SECONDS", BC_STR(BROKER_CONFIG_DEFAULT_IDLE_TIMEOUT),
	  "close a control connection that has not sent a complete request in this time (1..86400)",
	  bc_set_uint, BC_FIELD(idle_timeout), 1, 86400, .in_file = true },
	{ "worker-threads", "N", BC_STR(BROKER_CONFIG_DEFAULT_WORKER_THREADS),
	  "threads that run control API requests and other blocking work (1..128)",
	  bc_set_uint, BC_FIELD(worker_threads), 1, 128, .in_file = true },
	{ "shutdown-timeout", "SECONDS", BC_STR(BROKER_CONFIG_DEFAULT_SHUTDOWN_TIMEOUT),
	  "on SIGTERM/SIGINT, wait this long for requests in progress (1..3600)",
	  bc_set_uint, BC_FIELD(shutdown_timeout), 1, 3600, .in_file = true },
	{ "observed-flush-ms", "MS", BC_STR(BROKER_CONFIG_DEFAULT_OBSERVED_FLUSH_MS),
	  "write observed hosts to state.db in batches this often (1..60000); a SIGKILL loses at most that much of them",
	  bc_set_uint, BC_FIELD(observed_flush_ms), 1, 60000, .in_file = true },
	{ "audit-retention-days", "N", "0",
	  "prune audit rows older than N days (0 = keep forever; 0..36500)",
	  bc_set_uint, BC_FIELD(audit_retention_days), 0, 36500, .in_file = true },
	{ "audit-max-rows", "N", "0",
	  "prune the oldest audit rows beyond N rows (0 = no limit; 0..4000000000)",
	  bc_set_uint, BC_FIELD(audit_max_rows), 0, 4000000000u, .in_file = true },
	{ "vsock-listen", "on|off", "off",
	  "accept guests on AF_VSOCK port 1024 (sandbox by peer CID); needs /dev/vhost-vsock guests",
	  bc_set_on_off, BC_FIELD(vsock_listen), .in_file = true },
	{ "guest-tcp-ports", "PORT[,PORT]...", "none",
	  "TCP ports the guest agent catches besides 80 and 443 (at most 32); spliced, or "
	  "intercepted if TLS with http/1.1 or no ALPN",
	  bc_set_ports, .in_file = true },
	{ "upstream-connect-timeout", "SECONDS",
	  BC_STR(BROKER_CONFIG_DEFAULT_UPSTREAM_CONNECT_TIMEOUT),
	  "egress: resolve + connect + TLS handshake of an upstream (1..300); then 504",
	  bc_set_uint, BC_FIELD(upstream_connect_timeout), 1, 300, .in_file = true },
	{ "upstream-response-timeout", "SECONDS",
	  BC_STR(BROKER_CONFIG_DEFAULT_UPSTREAM_RESPONSE_TIMEOUT),
	  "egress: a request to an upstream with no progress for this long (1..3600); 504 if no "
	  "response head yet",
	  bc_set_uint, BC_FIELD(upstream_response_timeout), 1, 3600, .in_file = true },
	{ "upstream-idle-timeout", "SECONDS", BC_STR(BROKER_CONFIG_DEFAULT_UPSTREAM_IDLE_TIMEOUT),
	  "egress: close an idle keep-alive upstream connection after this (1..3600)",
	  bc_set_uint, BC_FIELD(upstream_idle_timeout), 1, 3600, .in_file = true },
};

#define BC_N_OPTIONS (sizeof(bc_options) / sizeof(bc_options[0]))

__attribute__((format(printf, 4, 5)))
static int bc_fail(char *err, size_t err_size, int r, const char *fmt, ...)
{
	va_list ap;

	if (err && err_size > 0) {
		va_start(ap, fmt);
		vsnprintf(err, err_size, fmt, ap);
		va_end(ap);
	}
	return r;
}

/* A value quoted for an error message: at most 64 bytes, non-printables as '?'. */
static const char *bc_quote(const char *value, char buf[72])
{
	size_t n = 0;

	for (; value[n] && n < 64; n++)
		buf[n] = (value[n] >= 0x20 && value[n] < 0x7f) ? value[n] : '?';
	if (value[n])
		memcpy(buf + n, "...", 3), n += 3;
	buf[n] = '\0';
	return buf;
}

static const struct bc_option *bc_lookup(const char *name, size_t len)
{
	for (size_t i = 0; i < BC_N_OPTIONS; i++)
		if (strlen(bc_options[i].name) == len && memcmp(bc_options[i].name, name, len) == 0)
			return &bc_options[i];
	return NULL;
}

static size_t bc_index(const struct bc_option *o)
{
	return (size_t)(o - bc_options);
}

/* --- value parsers ------------------------------------------------------ */

static bool bc_has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

static int bc_set_path(struct broker_config *cfg, const struct bc_option *o,
		       const char *value, char *err, size_t err_size)
{
	char **field = (char **)((char *)cfg + o->offset);
	char *copy;

	if (!value[0])
		return bc_fail(err, err_size, -EINVAL, "empty path");
	if (bc_has_control(value))
		return bc_fail(err, err_size, -EINVAL, "path contains a control character");
	if (strlen(value) >= PATH_MAX)
		return bc_fail(err, err_size, -ENAMETOOLONG, "path longer than %d bytes", PATH_MAX - 1);
	copy = strdup(value);
	if (!copy)
		return bc_fail(err, err_size, -ENOMEM, "out of memory");
	free(*field);
	*field = copy;
	return 0;
}

/* 1*DIGIT with value in [min, max]; no sign, no blanks, no other base. */
static int bc_parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret_value)
{
	unsigned long v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > max)
			return -ERANGE;
	}
	if (v < min)
		return -ERANGE;
	*ret_value = (unsigned)v;
	return 0;
}

static int bc_set_uint(struct broker_config *cfg, const struct bc_option *o,
		       const char *value, char *err, size_t err_size)
{
	unsigned *field = (unsigned *)((char *)cfg + o->offset);
	char q[72];
	int r = bc_parse_uint(value, o->min, o->max, field);

	if (r == -EINVAL)
		return bc_fail(err, err_size, r, "'%s' is not a number", bc_quote(value, q));
	if (r == -ERANGE)
		return bc_fail(err, err_size, r, "%s is out of range %u..%u",
			       bc_quote(value, q), o->min, o->max);
	return 0;
}

/* "on" or "off", exactly. */
static int bc_set_on_off(struct broker_config *cfg, const struct bc_option *o,
			 const char *value, char *err, size_t err_size)
{
	bool *field = (bool *)((char *)cfg + o->offset);
	char q[72];

	if (strcmp(value, "on") == 0)
		*field = true;
	else if (strcmp(value, "off") == 0)
		*field = false;
	else
		return bc_fail(err, err_size, -EINVAL, "'%s' must be on or off", bc_quote(value, q));
	return 0;
}

static int bc_set_log_level(struct broker_config *cfg, const struct bc_option *o,
			    const char *value, char *err, size_t err_size)
{
	char q[72];

	(void)o;
	if (log_level_from_string(value, &cfg->log_level) < 0)
		return bc_fail(err, err_size, -EINVAL,
			       "unknown level '%s' (debug, info, warn or error)", bc_quote(value, q));
	return 0;
}

/* PORT[,PORT]...: 1..65535 each, 80 and 443 ignored (always caught),
 * duplicates folded, at most BROKER_CONFIG_GUEST_PORTS_MAX; kept sorted. */
static int bc_set_ports(struct broker_config *cfg, const struct bc_option *o,
			const char *value, char *err, size_t err_size)
{
	uint16_t ports[BROKER_CONFIG_GUEST_PORTS_MAX];
	size_t n = 0;
	char q[72];

	(void)o;
	for (const char *p = value;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char one[8];
		unsigned v;
		size_t at;

		if (len == 0 || len >= sizeof(one))
			return bc_fail(err, err_size, -EINVAL, "'%s' is not a list of ports",
				       bc_quote(value, q));
		memcpy(one, p, len);
		one[len] = '\0';
		if (bc_parse_uint(one, 1, 65535, &v) < 0)
			return bc_fail(err, err_size, -EINVAL, "'%s' is not a port (1..65535)",
				       bc_quote(one, q));
		for (at = 0; at < n && ports[at] < v; at++)
			;
		if (v != 80 && v != 443 && !(at < n && ports[at] == v)) {
			if (n == BROKER_CONFIG_GUEST_PORTS_MAX)
				return bc_fail(err, err_size, -E2BIG, "more than %u ports",
					       BROKER_CONFIG_GUEST_PORTS_MAX);
			memmove(ports + at + 1, ports + at, (n - at) * sizeof(ports[0]));
			ports[at] = (uint16_t)v;
			n++;
		}
		if (!comma)
			break;
		p = comma + 1;
	}
	memcpy(cfg->guest_tcp_ports, ports, n * sizeof(ports[0]));
	cfg->n_guest_tcp_ports = n;
	return 0;
}

/* A port: 1..5 digits, 1..65535. */
static int bc_parse_port(const char *s, size_t len, uint16_t *ret_port)
{
	char buf[6];
	unsigned v;

	if (len == 0 || len > 5)
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (bc_parse_uint(buf, 1, 65535, &v) < 0)
		return -EINVAL;
	*ret_port = (uint16_t)v;
	return 0;
}

int broker_config_parse_listen(const char *s, struct sockaddr_storage *ret_addr)
{
	struct sockaddr_storage ss = { 0 };
	bool v6 = s[0] == '[';
	const char *colon;
	char host[INET6_ADDRSTRLEN];
	size_t hlen;
	uint16_t port;

	if (v6) {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		s++;
		hlen = (size_t)(close - s);
		colon = close + 1;
	} else {
		colon = strchr(s, ':');
		if (!colon || strchr(colon + 1, ':'))
			return -EINVAL; /* no port, or an unbracketed IPv6 address */
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (bc_parse_port(colon + 1, strlen(colon + 1), &port) < 0)
		return -EINVAL;
	if (v6) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;

		if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
			return -EINVAL;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;

		/* glibc's inet_pton takes only a strict dotted quad (no "1.2.3", no 010). */
		if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
			return -EINVAL;
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
	}
	*ret_addr = ss;
	return 0;
}

static int bc_set_listen(struct broker_config *cfg, const struct bc_option *o,
			 const char *value, char *err, size_t err_size)
{
	char q[72];

	(void)o;
	if (strlen(value) >= sizeof(cfg->listen_text) ||
	    broker_config_parse_listen(value, &cfg->listen) < 0)
		return bc_fail(err, err_size, -EINVAL,
			       "invalid address '%s' (expected IPV4:PORT or [IPV6]:PORT, port 1..65535)",
			       bc_quote(value, q));
	cfg->has_listen = true;
	strcpy(cfg->listen_text, value);
	return 0;
}

/*
 * One host field of a connect-to rule at *p: empty, a bracketed IPv6
 * literal or a name / IPv4 address up to the next ':'.  Leaves *p on the
 * byte after it; writes the normalized host ("" if empty).
 */
static int bc_parse_rule_host(const char **p, char ret_host[BROKER_CONFIG_HOST_MAX + 1])
{
	const char *s = *p, *end;
	char norm[HOST_PATTERN_BUF];

	if (*s == '[') {
		end = strchr(s, ']');
		if (!end)
			return -EINVAL;
		end++;
	} else {
		end = strchr(s, ':');
		if (!end)
			end = s + strlen(s);
	}
	if (end == s) {
		ret_host[0] = '\0';
	} else {
		int kind = host_pattern_normalize_host(s, (size_t)(end - s), norm, NULL, 0);

		/* An unbracketed IPv6 address cannot reach here whole: ':' ended it. */
		if (kind < 0 || (kind == HOST_PATTERN_IPV6 && *s != '['))
			return -EINVAL;
		strcpy(ret_host, norm);
	}
	*p = end;
	return 0;
}

/* One port field at *p, up to the next ':' (or the end if last): empty → 0. */
static int bc_parse_rule_port(const char **p, bool last, uint16_t *ret_port)
{
	const char *s = *p, *end = last ? s + strlen(s) : strchr(s, ':');

	if (!end)
		return -EINVAL;
	if (end == s)
		*ret_port = 0;
	else if (bc_parse_port(s, (size_t)(end - s), ret_port) < 0)
		return -EINVAL;
	*p = end;
	return 0;
}

static int bc_expect_colon(const char **p)
{
	if (**p != ':')
		return -EINVAL;
	(*p)++;
	return 0;
}

int broker_config_parse_connect_to(const char *s, struct broker_connect_to *ret_rule)
{
	struct broker_connect_to rule = { 0 };
	const char *p = s;
	int r;

	if ((r = bc_parse_rule_host(&p, rule.host)) < 0 ||
	    (r = bc_expect_colon(&p)) < 0 ||
	    (r = bc_parse_rule_port(&p, false, &rule.port)) < 0 ||
	    (r = bc_expect_colon(&p)) < 0 ||
	    (r = bc_parse_rule_host(&p, rule.to_host)) < 0 ||
	    (r = bc_expect_colon(&p)) < 0 ||
	    (r = bc_parse_rule_port(&p, true, &rule.to_port)) < 0)
		return r;
	if (*p)
		return -EINVAL;
	/* curl accepts it, but a rule that redirects nowhere is a typo. */
	if (!rule.to_host[0] && rule.to_port == 0)
		return -EDESTADDRREQ;
	*ret_rule = rule;
	return 0;
}

static int bc_set_connect_to(struct broker_config *cfg, const struct bc_option *o,
			     const char *value, char *err, size_t err_size)
{
	struct broker_connect_to rule, *grown;
	char q[72];
	int r;

	(void)o;
	r = broker_config_parse_connect_to(value, &rule);
	if (r == -EDESTADDRREQ)
		return bc_fail(err, err_size, -EINVAL,
			       "'%s' redirects nowhere (TO_HOST and TO_PORT both empty)",
			       bc_quote(value, q));
	if (r < 0)
		return bc_fail(err, err_size, r,
			       "invalid rule '%s' (expected HOST:PORT:TO_HOST:TO_PORT; hosts are names, "
			       "IPv4 or [IPv6] literals, ports 1..65535, any field may be empty)",
			       bc_quote(value, q));
	if (cfg->n_connect_to >= BROKER_CONFIG_CONNECT_TO_MAX)
		return bc_fail(err, err_size, -E2BIG, "more than %d rules",
			       BROKER_CONFIG_CONNECT_TO_MAX);
	grown = realloc(cfg->connect_to, (cfg->n_connect_to + 1) * sizeof(*grown));
	if (!grown)
		return bc_fail(err, err_size, -ENOMEM, "out of memory");
	cfg->connect_to = grown;
	cfg->connect_to[cfg->n_connect_to++] = rule;
	return 0;
}

/* --- the config file ----------------------------------------------------- */

/* The whole file, NUL-terminated (it may hold NULs too: lines are checked). */
static int bc_read_file(const char *path, char **ret_text, size_t *ret_len,
			char *err, size_t err_size)
{
	struct stat st;
	char *text = NULL;
	size_t off = 0;
	int fd, r = 0;

	/* O_NONBLOCK: a FIFO at the path must not hang startup. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return bc_fail(err, err_size, -errno, "cannot open config file %s: %s",
			       path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > BROKER_CONFIG_FILE_MAX) {
		r = bc_fail(err, err_size, -EINVAL,
			    "config file %s is not a regular file of at most %d bytes",
			    path, BROKER_CONFIG_FILE_MAX);
		goto out;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		r = bc_fail(err, err_size, -ENOMEM, "out of memory");
		goto out;
	}
	while (off < (size_t)st.st_size) {
		ssize_t n = read(fd, text + off, (size_t)st.st_size - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = bc_fail(err, err_size, -errno, "cannot read config file %s: %s",
				    path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break; /* shrank since fstat: parse what is there */
		off += (size_t)n;
	}
	text[off] = '\0';
	*ret_text = text;
	*ret_len = off;
	text = NULL;
out:
	free(text);
	close(fd);
	return r;
}

static bool bc_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Trim blanks at both ends of [*s, *s + *len). */
static void bc_trim(char **s, size_t *len)
{
	while (*len > 0 && bc_blank(**s))
		(*s)++, (*len)--;
	while (*len > 0 && bc_blank((*s)[*len - 1]))
		(*len)--;
}

struct bc_file_state {
	const char *path;
	unsigned line_no;
	unsigned seen[BC_N_OPTIONS];   /* line each option was set on, 0 if not */
};

/* Checks on the raw line: length and bytes (TAB is the only control byte allowed). */
static int bc_check_line(const struct bc_file_state *fs, const char *line, size_t len,
			 char *err, size_t err_size)
{
	if (len > BROKER_CONFIG_LINE_MAX)
		return bc_fail(err, err_size, -EINVAL, "%s:%u: line longer than %d bytes",
			       fs->path, fs->line_no, BROKER_CONFIG_LINE_MAX);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return bc_fail(err, err_size, -EINVAL,
				       "%s:%u: control character 0x%02x (only TAB is allowed; "
				       "lines end with LF)", fs->path, fs->line_no, c);
	}
	return 0;
}

static int bc_apply_line(struct broker_config *cfg, struct bc_file_state *fs,
			 char *line, size_t len, char *err, size_t err_size)
{
	char *eq, *key = line, *value;
	size_t klen, vlen;
	const struct bc_option *o;
	char reason[BROKER_CONFIG_ERR_MAX], q[72];
	int r;

	bc_trim(&key, &len);
	if (len == 0 || key[0] == '#')
		return 0;
	eq = memchr(key, '=', len);
	if (!eq)
		return bc_fail(err, err_size, -EINVAL, "%s:%u: expected 'key = value'",
			       fs->path, fs->line_no);
	klen = (size_t)(eq - key);
	value = eq + 1;
	vlen = len - klen - 1;
	bc_trim(&key, &klen);
	bc_trim(&value, &vlen);
	key[klen] = '\0';
	value[vlen] = '\0';
	o = bc_lookup(key, klen);
	if (!o)
		return bc_fail(err, err_size, -EINVAL, "%s:%u: unknown key '%s'",
			       fs->path, fs->line_no, bc_quote(key, q));
	if (!o->in_file)
		return bc_fail(err, err_size, -EINVAL, "%s:%u: '%s' cannot be set in a config file",
			       fs->path, fs->line_no, o->name);
	if (fs->seen[bc_index(o)] && !o->repeatable)
		return bc_fail(err, err_size, -EINVAL, "%s:%u: duplicate key '%s' (first set on line %u)",
			       fs->path, fs->line_no, o->name, fs->seen[bc_index(o)]);
	if (vlen == 0)
		return bc_fail(err, err_size, -EINVAL, "%s:%u: %s: missing value",
			       fs->path, fs->line_no, o->name);
	fs->seen[bc_index(o)] = fs->line_no;
	if ((r = o->set(cfg, o, value, reason, sizeof(reason))) < 0)
		return bc_fail(err, err_size, r, "%s:%u: %s: %s", fs->path, fs->line_no, o->name, reason);
	return 0;
}

static int bc_load_file(struct broker_config *cfg, const char *path, char *err, size_t err_size)
{
	struct bc_file_state fs = { .path = path };
	char *text = NULL, *line, *end, *nl;
	size_t size = 0;
	int r;

	if ((r = bc_read_file(path, &text, &size, err, err_size)) < 0)
		return r;
	end = text + size;
	for (line = text; line < end; line = nl + 1) {
		nl = memchr(line, '\n', (size_t)(end - line));
		if (!nl)
			nl = end; /* last line without LF: text[size] is NUL */
		fs.line_no++;
		if ((r = bc_check_line(&fs, line, (size_t)(nl - line), err, err_size)) < 0 ||
		    (r = bc_apply_line(cfg, &fs, line, (size_t)(nl - line), err, err_size)) < 0)
			goto out;
	}
	r = 0;
out:
	free(text);
	return r;
}

/* --- flags ---------------------------------------------------------------- */

struct bc_flag {
	const struct bc_option *opt;
	const char *value;
};

/* Split argv into (option, value) pairs; no value is applied yet. */
static int bc_scan_args(int argc, char *const argv[], struct bc_flag *flags, size_t *ret_n,
			char *err, size_t err_size)
{
	unsigned count[BC_N_OPTIONS] = { 0 };
	size_t n = 0;
	char q[72];

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *name, *eq, *value = NULL;
		const struct bc_option *o;

		if (strcmp(arg, "-h") == 0)
			arg = "--help";
		if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
			return bc_fail(err, err_size, -EINVAL, "unexpected argument '%s'",
				       bc_quote(arg, q));
		name = arg + 2;
		eq = strchr(name, '=');
		o = bc_lookup(name, eq ? (size_t)(eq - name) : strlen(name));
		if (!o)
			return bc_fail(err, err_size, -EINVAL, "unknown option '%s'", bc_quote(arg, q));
		if (!o->metavar && eq)
			return bc_fail(err, err_size, -EINVAL, "--%s takes no value", o->name);
		if (o->metavar) {
			if (eq)
				value = eq + 1;
			else if (i + 1 < argc)
				value = argv[++i];
			else
				return bc_fail(err, err_size, -EINVAL, "--%s needs a value (%s)",
					       o->name, o->metavar);
		}
		if (count[bc_index(o)]++ > 0 && !o->repeatable)
			return bc_fail(err, err_size, -EINVAL, "--%s given more than once", o->name);
		flags[n++] = (struct bc_flag){ o, value };
	}
	*ret_n = n;
	return 0;
}

static void bc_clear_connect_to(struct broker_config *cfg)
{
	free(cfg->connect_to);
	cfg->connect_to = NULL;
	cfg->n_connect_to = 0;
}

static int bc_apply_flags(struct broker_config *cfg, const struct bc_flag *flags, size_t n,
			  char *err, size_t err_size)
{
	char reason[BROKER_CONFIG_ERR_MAX];
	bool connect_to_cleared = false;
	int r;

	for (size_t i = 0; i < n; i++) {
		const struct bc_option *o = flags[i].opt;

		if (!o->set)
			continue;
		/* Flags replace the file's list (connect-to is the one repeatable option). */
		if (o->repeatable && !connect_to_cleared) {
			bc_clear_connect_to(cfg);
			connect_to_cleared = true;
		}
		if (!flags[i].value[0])
			return bc_fail(err, err_size, -EINVAL, "--%s: missing value", o->name);
		if ((r = o->set(cfg, o, flags[i].value, reason, sizeof(reason))) < 0)
			return bc_fail(err, err_size, r, "--%s: %s", o->name, reason);
	}
	return 0;
}

static int bc_defaults(struct broker_config *cfg)
{
	*cfg = (struct broker_config){
		.log_level = LOG_LEVEL_INFO,
		.max_connections = BROKER_CONFIG_DEFAULT_MAX_CONNECTIONS,
		.idle_timeout = BROKER_CONFIG_DEFAULT_IDLE_TIMEOUT,
		.worker_threads = BROKER_CONFIG_DEFAULT_WORKER_THREADS,
		.shutdown_timeout = BROKER_CONFIG_DEFAULT_SHUTDOWN_TIMEOUT,
		.upstream_connect_timeout = BROKER_CONFIG_DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
		.upstream_response_timeout = BROKER_CONFIG_DEFAULT_UPSTREAM_RESPONSE_TIMEOUT,
		.upstream_idle_timeout = BROKER_CONFIG_DEFAULT_UPSTREAM_IDLE_TIMEOUT,
		.observed_flush_ms = BROKER_CONFIG_DEFAULT_OBSERVED_FLUSH_MS,
	};
	cfg->state_dir = strdup(BROKER_CONFIG_DEFAULT_STATE_DIR);
	cfg->master_key = strdup(BROKER_CONFIG_DEFAULT_MASTER_KEY);
	return cfg->state_dir && cfg->master_key ? 0 : -ENOMEM;
}

/* Derived defaults and checks that span options. */
static int bc_finish(struct broker_config *cfg, char *err, size_t err_size)
{
	if (!cfg->control_socket) {
		size_t len = strlen(cfg->state_dir) + sizeof("/" BROKER_CONFIG_SOCKET_NAME);

		cfg->control_socket = malloc(len);
		if (!cfg->control_socket)
			return bc_fail(err, err_size, -ENOMEM, "out of memory");
		snprintf(cfg->control_socket, len, "%s/" BROKER_CONFIG_SOCKET_NAME, cfg->state_dir);
	}
	/* A Unix socket address holds at most 107 bytes of path. */
	if (strlen(cfg->control_socket) > BROKER_CONFIG_SUN_PATH_MAX)
		return bc_fail(err, err_size, -ENAMETOOLONG,
			       "control socket path %s is %zu bytes; a Unix socket path holds at most %d "
			       "(use --control-socket)", cfg->control_socket,
			       strlen(cfg->control_socket), BROKER_CONFIG_SUN_PATH_MAX);
	return 0;
}

int broker_config_from_args(int argc, char *const argv[], struct broker_config *ret_cfg,
			    char *err, size_t err_size)
{
	struct broker_config cfg = { 0 };
	struct bc_flag *flags;
	size_t n = 0;
	int r;

	flags = calloc(argc > 0 ? (size_t)argc : 1, sizeof(*flags));
	if (!flags)
		return bc_fail(err, err_size, -ENOMEM, "out of memory");
	if ((r = bc_scan_args(argc, argv, flags, &n, err, err_size)) < 0)
		goto out;
	/* --help and --version win over everything else on the line. */
	for (size_t i = 0; i < n; i++) {
		if (flags[i].opt == &bc_options[BC_OPT_HELP]) {
			r = BROKER_CONFIG_HELP;
			goto out;
		}
		if (flags[i].opt == &bc_options[BC_OPT_VERSION])
			r = BROKER_CONFIG_VERSION;
	}
	if (r == BROKER_CONFIG_VERSION)
		goto out;
	if ((r = bc_defaults(&cfg)) < 0) {
		bc_fail(err, err_size, r, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (flags[i].opt != &bc_options[BC_OPT_CONFIG])
			continue;
		if (!flags[i].value[0]) {
			r = bc_fail(err, err_size, -EINVAL, "--config: missing value");
			goto out;
		}
		if (!(cfg.config_file = strdup(flags[i].value))) {
			r = bc_fail(err, err_size, -ENOMEM, "out of memory");
			goto out;
		}
		if ((r = bc_load_file(&cfg, cfg.config_file, err, err_size)) < 0)
			goto out;
	}
	if ((r = bc_apply_flags(&cfg, flags, n, err, err_size)) < 0 ||
	    (r = bc_finish(&cfg, err, err_size)) < 0)
		goto out;
	*ret_cfg = cfg;
	cfg = (struct broker_config){ 0 };
	r = BROKER_CONFIG_RUN;
out:
	broker_config_free(&cfg);
	free(flags);
	return r;
}

void broker_config_free(struct broker_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->config_file);
	free(cfg->state_dir);
	free(cfg->master_key);
	free(cfg->control_socket);
	free(cfg->upstream_ca);
	free(cfg->connect_to);
	*cfg = (struct broker_config){ 0 };
}

void broker_config_help(FILE *out, const char *prog)
{
	fprintf(out, "Usage: %s [OPTION]...\n"
		"The miosa broker: guest egress over vsock, vault, policy, audit and the control API.\n\n",
		prog);
	for (size_t i = 0; i < BC_N_OPTIONS; i++) {
		const struct bc_option *o = &bc_options[i];
		char left[64];

		snprintf(left, sizeof(left), "--%s%s%s", o->name, o->metavar ? " " : "",
			 o->metavar ? o->metavar : "");
		fprintf(out, "  %s\n      %s", left, o->help);
		if (o->def)
			fprintf(out, "\n      [default: %s]", o->def);
		fputc('\n', out);
	}
	fprintf(out, "\nEvery option except --config, --help and --version can also be set in the\n"
		"config file as 'name = value' (name without the dashes); flags override it.\n"
		"Exit status: 0 after a clean shutdown, 1 when startup or the broker fails,\n"
		"2 for a bad option or config file.  See docs/broker.md.\n");
}
