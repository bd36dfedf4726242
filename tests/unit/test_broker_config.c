/* broker_config: defaults, flags, the config file, precedence and every error. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "broker_config.h"

#define ARGV(...) ((char *const[]){ "miosa-broker", __VA_ARGS__, NULL })
#define ARGC(...) ((int)(sizeof((char *const[]){ "miosa-broker", __VA_ARGS__ }) / sizeof(char *)))
#define PARSE(cfg, err, ...) \
	broker_config_from_args(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (cfg), (err), sizeof(err))

/* A config file with the given text; the caller unlinks and frees the path. */
static char *write_config(const char *text)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char *path = NULL;
	FILE *f;
	int fd;

	assert_true(asprintf(&path, "%s/test_broker_config.XXXXXX", tmp) > 0);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
	return path;
}

static void drop_config(char *path)
{
	unlink(path);
	free(path);
}

/* Parse --config FILE holding text; returns the result, error text in err. */
static int parse_file(const char *text, struct broker_config *cfg, char *err, size_t err_size,
		      char **ret_path)
{
	char *path = write_config(text);
	char *const argv[] = { "miosa-broker", "--config", path, NULL };
	int r = broker_config_from_args(3, argv, cfg, err, err_size);

	*ret_path = path;
	return r;
}

/* The file must fail with an error that starts with "PATH:LINE: " and contains want. */
static void assert_file_error(const char *text, unsigned line, const char *want)
{
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX] = "", prefix[512];
	char *path;
	int r = parse_file(text, &cfg, err, sizeof(err), &path);

	snprintf(prefix, sizeof(prefix), "%s:%u: ", path, line);
	if (r >= 0 || strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, want))
		fail_msg("file %s: got %d '%s', wanted '%s...%s'", text, r, err, prefix, want);
	drop_config(path);
}

static void assert_flag_error(int r, const char *err, const char *want)
{
	if (r >= 0 || !strstr(err, want))
		fail_msg("got %d '%s', wanted an error containing '%s'", r, err, want);
}

static void test_no_arguments_give_the_documented_defaults(void **state)
{
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX];
	char *const argv[] = { "miosa-broker", NULL };

	(void)state;
	assert_int_equal(broker_config_from_args(1, argv, &cfg, err, sizeof(err)), BROKER_CONFIG_RUN);
	assert_null(cfg.config_file);
	assert_string_equal(cfg.state_dir, "/var/lib/miosa");
	assert_string_equal(cfg.master_key, "/etc/miosa/master.key");
	assert_string_equal(cfg.control_socket, "/var/lib/miosa/control.sock");
	assert_false(cfg.has_listen);
	assert_int_equal(cfg.n_connect_to, 0);
	assert_null(cfg.upstream_ca);
	assert_int_equal(cfg.log_level, LOG_LEVEL_INFO);
	assert_int_equal(cfg.max_connections, 256);
	assert_int_equal(cfg.idle_timeout, 60);
	assert_int_equal(cfg.worker_threads, 4);
	assert_int_equal(cfg.shutdown_timeout, 10);
	assert_int_equal(cfg.upstream_connect_timeout, 10);
	assert_int_equal(cfg.upstream_response_timeout, 60);
	assert_int_equal(cfg.upstream_idle_timeout, 30);
	assert_int_equal(cfg.n_guest_tcp_ports, 0);
	assert_int_equal(cfg.observed_flush_ms, 200);
	broker_config_free(&cfg);
}

static void test_guest_tcp_ports_sorted_unique_without_80_443(void **state)
{
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX] = "";
	char many[256] = "";

	(void)state;
	assert_int_equal(PARSE(&cfg, err, "--guest-tcp-ports", "5432,443,22,80,5432,993"),
			 BROKER_CONFIG_RUN);
	assert_int_equal(cfg.n_guest_tcp_ports, 3);
	assert_int_equal(cfg.guest_tcp_ports[0], 22);
	assert_int_equal(cfg.guest_tcp_ports[1], 993);
	assert_int_equal(cfg.guest_tcp_ports[2], 5432);
	broker_config_free(&cfg);
	assert_int_equal(PARSE(&cfg, err, "--guest-tcp-ports", "22,,23"), -EINVAL);
	assert_non_null(strstr(err, "--guest-tcp-ports"));
	assert_int_equal(PARSE(&cfg, err, "--guest-tcp-ports", "0"), -EINVAL);
	assert_int_equal(PARSE(&cfg, err, "--guest-tcp-ports", "65536"), -EINVAL);
	assert_int_equal(PARSE(&cfg, err, "--guest-tcp-ports", "22,"), -EINVAL);
	assert_int_equal(PARSE(&cfg, err, "--guest-tcp-ports", "-1"), -EINVAL);
	for (unsigned i = 0; i < BROKER_CONFIG_GUEST_PORTS_MAX + 1; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s%u", i ? "," : "",
			 1000 + i);
	assert_int_equal(PARSE(&cfg, err, "--guest-tcp-ports", many), -E2BIG);
	assert_non_null(strstr(err, "more than 32 ports"));
}

static void test_upstream_timeouts_are_ranged(void **state)
{
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX] = "";

	(void)state;
	assert_int_equal(PARSE(&cfg, err, "--upstream-connect-timeout", "2",
			       "--upstream-response-timeout", "1", "--upstream-idle-timeout", "3600"),
			 BROKER_CONFIG_RUN);
	assert_int_equal(cfg.upstream_connect_timeout, 2);
	assert_int_equal(cfg.upstream_response_timeout, 1);
	assert_int_equal(cfg.upstream_idle_timeout, 3600);
	broker_config_free(&cfg);
	assert_int_equal(PARSE(&cfg, err, "--upstream-connect-timeout", "0"), -ERANGE);
	assert_int_equal(PARSE(&cfg, err, "--upstream-response-timeout", "3601"), -ERANGE);
}

static void test_help_and_version_win_over_other_flags(void **state)
{
	struct broker_config cfg = { .state_dir = (char *)"untouched" };
	char err[BROKER_CONFIG_ERR_MAX];

	(void)state;
	assert_int_equal(PARSE(&cfg, err, "--help"), BROKER_CONFIG_HELP);
	assert_int_equal(PARSE(&cfg, err, "-h"), BROKER_CONFIG_HELP);
	assert_int_equal(PARSE(&cfg, err, "--state-dir", "/x", "--help"), BROKER_CONFIG_HELP);
	assert_int_equal(PARSE(&cfg, err, "--version"), BROKER_CONFIG_VERSION);
	assert_int_equal(PARSE(&cfg, err, "--version", "--help"), BROKER_CONFIG_HELP);
	/* A config file is not even read for --help. */
	assert_int_equal(PARSE(&cfg, err, "--config", "/nonexistent/x", "--help"), BROKER_CONFIG_HELP);
	assert_string_equal(cfg.state_dir, "untouched");
}

static void test_control_socket_defaults_under_the_state_dir(void **state)
{
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX];

	(void)state;
	assert_int_equal(PARSE(&cfg, err, "--state-dir", "/srv/m"), 0);
	assert_string_equal(cfg.control_socket, "/srv/m/control.sock");
	broker_config_free(&cfg);
	assert_int_equal(PARSE(&cfg, err, "--state-dir=/srv/m", "--control-socket=/run/c.sock"), 0);
	assert_string_equal(cfg.state_dir, "/srv/m");
	assert_string_equal(cfg.control_socket, "/run/c.sock");
	broker_config_free(&cfg);
}

static void test_every_flag_is_applied(void **state)
{
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX];
	struct sockaddr_in *a4;

	(void)state;
	assert_int_equal(PARSE(&cfg, err, "--state-dir", "/s", "--master-key", "/k/m.key",
			       "--control-socket", "/s/c", "--listen", "127.0.0.1:7070",
			       "--connect-to", "api.example.com:443:127.0.0.1:8443",
			       "--connect-to=::localhost:", "--upstream-ca", "/ca.pem",
			       "--log-level", "debug", "--max-connections", "9",
			       "--idle-timeout", "5", "--worker-threads", "2",
			       "--shutdown-timeout", "3"), 0);
	assert_string_equal(cfg.master_key, "/k/m.key");
	assert_string_equal(cfg.control_socket, "/s/c");
	assert_true(cfg.has_listen);
	a4 = (struct sockaddr_in *)&cfg.listen;
	assert_int_equal(a4->sin_family, AF_INET);
	assert_int_equal(ntohs(a4->sin_port), 7070);
	assert_int_equal(ntohl(a4->sin_addr.s_addr), 0x7f000001);
	assert_string_equal(cfg.listen_text, "127.0.0.1:7070");
	assert_int_equal(cfg.n_connect_to, 2);
	assert_string_equal(cfg.connect_to[0].host, "api.example.com");
	assert_int_equal(cfg.connect_to[0].port, 443);
	assert_string_equal(cfg.connect_to[0].to_host, "127.0.0.1");
	assert_int_equal(cfg.connect_to[0].to_port, 8443);
	assert_string_equal(cfg.connect_to[1].host, "");
	assert_int_equal(cfg.connect_to[1].port, 0);
	assert_string_equal(cfg.connect_to[1].to_host, "localhost");
	assert_int_equal(cfg.connect_to[1].to_port, 0);
	assert_string_equal(cfg.upstream_ca, "/ca.pem");
	assert_int_equal(cfg.log_level, LOG_LEVEL_DEBUG);
	assert_int_equal(cfg.max_connections, 9);
	assert_int_equal(cfg.idle_timeout, 5);
	assert_int_equal(cfg.worker_threads, 2);
	assert_int_equal(cfg.shutdown_timeout, 3);
	broker_config_free(&cfg);
}

static void test_listen_accepts_ipv4_and_bracketed_ipv6(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
	struct in6_addr loop6 = IN6ADDR_LOOPBACK_INIT;

	(void)state;
	assert_int_equal(broker_config_parse_listen("0.0.0.0:1", &ss), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(broker_config_parse_listen("[::1]:65535", &ss), 0);
	assert_int_equal(a6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(a6->sin6_port), 65535);
	assert_memory_equal(&a6->sin6_addr, &loop6, sizeof(loop6));
	assert_int_equal(broker_config_parse_listen("[::]:80", &ss), 0);
}

static void test_listen_refuses_everything_else(void **state)
{
	static const char *const bad[] = {
		"", "127.0.0.1", "127.0.0.1:", ":80", "127.0.0.1:0", "127.0.0.1:65536",
		"127.0.0.1:80x", "127.0.0.1:+80", "127.0.0.1:-1", "localhost:80", "::1:80",
		"[::1]", "[::1]80", "[::1:80", "[fe80::1%eth0]:80", "[127.0.0.1]:80",
		"1.2.3:80", "01.2.3.4:80", "256.0.0.1:80", " 127.0.0.1:80", "127.0.0.1:80 ",
		"127.0.0.1:123456",
	};
	struct sockaddr_storage ss;
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (broker_config_parse_listen(bad[i], &ss) != -EINVAL)
			fail_msg("listen '%s' was accepted", bad[i]);
	assert_flag_error(PARSE(&cfg, err, "--listen", "localhost:80"), err,
			  "--listen: invalid address 'localhost:80'");
}

static void test_connect_to_follows_curl_syntax(void **state)
{
	struct broker_connect_to r;

	(void)state;
	assert_int_equal(broker_config_parse_connect_to("API.Example.COM.:443:[::1]:8443", &r), 0);
	assert_string_equal(r.host, "api.example.com");
	assert_int_equal(r.port, 443);
	assert_string_equal(r.to_host, "::1");
	assert_int_equal(r.to_port, 8443);
	assert_int_equal(broker_config_parse_connect_to("[2001:DB8::1]::backend:", &r), 0);
	assert_string_equal(r.host, "2001:db8::1");
	assert_int_equal(r.port, 0);
	assert_string_equal(r.to_host, "backend");
	assert_int_equal(r.to_port, 0);
	assert_int_equal(broker_config_parse_connect_to(":::9000", &r), 0);
	assert_string_equal(r.host, "");
	assert_string_equal(r.to_host, "");
	assert_int_equal(r.to_port, 9000);
	assert_int_equal(broker_config_parse_connect_to("a.b:80:10.0.0.1:80", &r), 0);
}

static void test_connect_to_refuses_malformed_rules(void **state)
{
	static const char *const bad[] = {
		"", "a:1:b", "a:1:b:2:3", "a:1:b:x", "a:0:b:1", "a:65536:b:1", "a:1:b:65536",
		"a..b:1:c:1", "-a:1:b:1", "a b:1:c:1", "*.a.com:1:b:1", "::1:443:b:1",
		"[::1:443:b:1", "[::1]443:b:1", "1.2.3:1:b:1", "a:1:[zz]:1", "a:1:b:1:",
		"a:+1:b:1", "a:1:b: 1",
	};
	struct broker_connect_to r;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (broker_config_parse_connect_to(bad[i], &r) != -EINVAL)
			fail_msg("connect-to '%s' was accepted", bad[i]);
	assert_int_equal(broker_config_parse_connect_to("a:1::", &r), -EDESTADDRREQ);
	assert_int_equal(broker_config_parse_connect_to(":::", &r), -EDESTADDRREQ);
}

static void test_connect_to_flag_errors_name_the_rule(void **state)
{
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX];

	(void)state;
	assert_flag_error(PARSE(&cfg, err, "--connect-to", "a:1:b"), err,
			  "--connect-to: invalid rule 'a:1:b'");
	assert_flag_error(PARSE(&cfg, err, "--connect-to", "a:1::"), err,
			  "--connect-to: 'a:1::' redirects nowhere");
}

static void test_connect_to_is_capped(void **state)
{
	char *argv[2 + 2 * (BROKER_CONFIG_CONNECT_TO_MAX + 1)];
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX];
	int argc = 1;

	(void)state;
	argv[0] = "miosa-broker";
	for (int i = 0; i < BROKER_CONFIG_CONNECT_TO_MAX; i++) {
		argv[argc++] = "--connect-to";
		argv[argc++] = "a:1:b:2";
	}
	argv[argc] = NULL;
	assert_int_equal(broker_config_from_args(argc, argv, &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.n_connect_to, BROKER_CONFIG_CONNECT_TO_MAX);
	broker_config_free(&cfg);
	argv[argc++] = "--connect-to";
	argv[argc++] = "a:1:b:2";
	argv[argc] = NULL;
	assert_flag_error(broker_config_from_args(argc, argv, &cfg, err, sizeof(err)), err,
			  "--connect-to: more than 64 rules");
}

static void test_numbers_are_strict_and_ranged(void **state)
{
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX];

	(void)state;
	assert_flag_error(PARSE(&cfg, err, "--max-connections", "0"), err,
			  "--max-connections: 0 is out of range 1..65536");
	assert_flag_error(PARSE(&cfg, err, "--max-connections", "65537"), err, "out of range");
	assert_flag_error(PARSE(&cfg, err, "--idle-timeout", "99999999999999999999999"), err,
			  "out of range 1..86400");
	assert_flag_error(PARSE(&cfg, err, "--worker-threads", "129"), err, "out of range 1..128");
	assert_flag_error(PARSE(&cfg, err, "--worker-threads", "-1"), err,
			  "--worker-threads: '-1' is not a number");
	assert_flag_error(PARSE(&cfg, err, "--worker-threads", "+2"), err, "is not a number");
	assert_flag_error(PARSE(&cfg, err, "--worker-threads", "2 "), err, "is not a number");
	assert_flag_error(PARSE(&cfg, err, "--shutdown-timeout", "0x10"), err, "is not a number");
	assert_flag_error(PARSE(&cfg, err, "--shutdown-timeout", "0"), err, "out of range 1..3600");
	assert_flag_error(PARSE(&cfg, err, "--observed-flush-ms", "0"), err, "out of range 1..60000");
	assert_flag_error(PARSE(&cfg, err, "--observed-flush-ms", "60001"), err,
			  "out of range 1..60000");
	assert_int_equal(PARSE(&cfg, err, "--max-connections", "65536", "--idle-timeout", "86400"), 0);
	assert_int_equal(cfg.max_connections, 65536);
	broker_config_free(&cfg);
	/* Audit retention: 0 (the default) keeps forever. */
	assert_int_equal(PARSE(&cfg, err, "--idle-timeout", "5"), 0);
	assert_int_equal(cfg.audit_retention_days, 0);
	assert_int_equal(cfg.audit_max_rows, 0);
	broker_config_free(&cfg);
	assert_int_equal(PARSE(&cfg, err, "--audit-retention-days", "90", "--audit-max-rows",
			       "4000000000"), 0);
	assert_int_equal(cfg.audit_retention_days, 90);
	assert_int_equal(cfg.audit_max_rows, 4000000000u);
	broker_config_free(&cfg);
	assert_flag_error(PARSE(&cfg, err, "--audit-retention-days", "36501"), err,
			  "out of range 0..36500");
	assert_flag_error(PARSE(&cfg, err, "--audit-max-rows", "4000000001"), err,
			  "out of range 0..4000000000");
}

static void test_log_level_takes_the_four_names_only(void **state)
{
	static const char *const names[] = { "debug", "info", "warn", "error" };
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX];

	(void)state;
	for (int i = 0; i < 4; i++) {
		assert_int_equal(PARSE(&cfg, err, "--log-level", (char *)names[i]), 0);
		assert_int_equal(cfg.log_level, i);
		broker_config_free(&cfg);
	}
	assert_flag_error(PARSE(&cfg, err, "--log-level", "INFO"), err,
			  "--log-level: unknown level 'INFO'");
	assert_flag_error(PARSE(&cfg, err, "--log-level", "warning"), err, "unknown level");
}

static void test_flag_syntax_errors(void **state)
{
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX];

	(void)state;
	assert_flag_error(PARSE(&cfg, err, "--bogus"), err, "unknown option '--bogus'");
	/* No abbreviations, unlike getopt_long. */
	assert_flag_error(PARSE(&cfg, err, "--state", "/x"), err, "unknown option '--state'");
	assert_flag_error(PARSE(&cfg, err, "--state-dir"), err, "--state-dir needs a value (DIR)");
	assert_flag_error(PARSE(&cfg, err, "--state-dir="), err, "--state-dir: missing value");
	assert_flag_error(PARSE(&cfg, err, "--help=yes"), err, "--help takes no value");
	assert_flag_error(PARSE(&cfg, err, "/var/lib/miosa"), err,
			  "unexpected argument '/var/lib/miosa'");
	assert_flag_error(PARSE(&cfg, err, "-s"), err, "unexpected argument '-s'");
	assert_flag_error(PARSE(&cfg, err, "--"), err, "unexpected argument '--'");
	assert_flag_error(PARSE(&cfg, err, "--state-dir", "/a", "--state-dir", "/b"), err,
			  "--state-dir given more than once");
	assert_flag_error(PARSE(&cfg, err, "--state-dir", "/a\tb"), err,
			  "--state-dir: path contains a control character");
	assert_flag_error(PARSE(&cfg, err, "--config", "/a", "--config", "/b"), err,
			  "--config given more than once");
	assert_flag_error(PARSE(&cfg, err, "--config="), err, "--config: missing value");
}

static void test_socket_path_must_fit_sun_path(void **state)
{
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX], dir[200];

	(void)state;
	memset(dir, 'd', sizeof(dir) - 1);
	dir[0] = '/';
	dir[sizeof(dir) - 1] = '\0';
	assert_flag_error(PARSE(&cfg, err, "--state-dir", dir), err,
			  "a Unix socket path holds at most 107");
	/* An explicit short socket path makes the long state dir fine. */
	assert_int_equal(PARSE(&cfg, err, "--state-dir", dir, "--control-socket", "/run/m.sock"), 0);
	broker_config_free(&cfg);
}

static void test_config_file_sets_options(void **state)
{
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX];
	char *path;

	(void)state;
	assert_int_equal(parse_file("# miosa broker\n"
				    "\n"
				    "state-dir = /srv/miosa\n"
				    "  master-key=/etc/k.key  \n"
				    "\tlisten\t=\t[::1]:9000\n"
				    "   # indented comment\n"
				    "connect-to = a.example:443:127.0.0.1:8443\n"
				    "connect-to = b.example:443:127.0.0.1:9443\n"
				    "log-level = warn\n"
				    "upstream-ca = /etc/ssl/extra ca.pem\n"
				    "max-connections = 10",   /* no final newline */
				    &cfg, err, sizeof(err), &path), 0);
	assert_string_equal(cfg.config_file, path);
	assert_string_equal(cfg.state_dir, "/srv/miosa");
	assert_string_equal(cfg.control_socket, "/srv/miosa/control.sock");
	assert_string_equal(cfg.master_key, "/etc/k.key");
	assert_true(cfg.has_listen);
	assert_int_equal(cfg.listen.ss_family, AF_INET6);
	assert_int_equal(cfg.n_connect_to, 2);
	assert_string_equal(cfg.connect_to[1].host, "b.example");
	assert_int_equal(cfg.log_level, LOG_LEVEL_WARN);
	assert_string_equal(cfg.upstream_ca, "/etc/ssl/extra ca.pem");
	assert_int_equal(cfg.max_connections, 10);
	broker_config_free(&cfg);
	drop_config(path);
}

static void test_flags_override_the_file(void **state)
{
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX];
	char *path = write_config("state-dir = /from-file\n"
				  "log-level = error\n"
				  "connect-to = a:1:b:2\n"
				  "connect-to = c:1:d:2\n"
				  "worker-threads = 8\n"
				  "audit-retention-days = 30\n"
				  "audit-max-rows = 1000\n");

	(void)state;
	/* Flags before or after --config: position does not matter. */
	assert_int_equal(PARSE(&cfg, err, "--log-level", "debug", "--config", path,
			       "--connect-to", "x:1:y:2", "--audit-max-rows", "500"), 0);
	assert_string_equal(cfg.state_dir, "/from-file");
	assert_int_equal(cfg.audit_retention_days, 30);
	assert_int_equal(cfg.audit_max_rows, 500);
	assert_int_equal(cfg.log_level, LOG_LEVEL_DEBUG);
	assert_int_equal(cfg.worker_threads, 8);
	/* A repeatable option given as flags replaces the file's list. */
	assert_int_equal(cfg.n_connect_to, 1);
	assert_string_equal(cfg.connect_to[0].host, "x");
	broker_config_free(&cfg);
	drop_config(path);
}

static void test_empty_config_file_is_all_defaults(void **state)
{
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX];
	char *path;

	(void)state;
	assert_int_equal(parse_file("", &cfg, err, sizeof(err), &path), 0);
	assert_string_equal(cfg.state_dir, "/var/lib/miosa");
	broker_config_free(&cfg);
	drop_config(path);
}

static void test_config_file_errors_name_file_and_line(void **state)
{
	char long_line[BROKER_CONFIG_LINE_MAX + 32];

	(void)state;
	assert_file_error("# ok\nbogus = 1\n", 2, "unknown key 'bogus'");
	assert_file_error("state-dir = /a\n\nstate-dir = /b\n", 3,
			  "duplicate key 'state-dir' (first set on line 1)");
	assert_file_error("listen = nowhere\n", 1, "listen: invalid address 'nowhere'");
	assert_file_error("\n\nworker-threads = 0\n", 3, "worker-threads: 0 is out of range");
	assert_file_error("log-level = loud\n", 1, "log-level: unknown level 'loud'");
	assert_file_error("connect-to = a:1:b\n", 1, "connect-to: invalid rule");
	assert_file_error("state-dir /x\n", 1, "expected 'key = value'");
	assert_file_error("state-dir =\n", 1, "state-dir: missing value");
	assert_file_error("state-dir =   \t\n", 1, "state-dir: missing value");
	assert_file_error("= /x\n", 1, "unknown key ''");
	assert_file_error("--state-dir = /x\n", 1, "unknown key '--state-dir'");
	assert_file_error("State-Dir = /x\n", 1, "unknown key 'State-Dir'");
	assert_file_error("config = /other\n", 1, "'config' cannot be set in a config file");
	assert_file_error("help = 1\n", 1, "'help' cannot be set in a config file");
	assert_file_error("state-dir = /x\r\n", 1, "control character 0x0d");
	assert_file_error("a = 1\n\nstate-dir = /x\033[2J\n", 1, "unknown key 'a'");
	assert_file_error("# c\nstate-dir = /x\033\n", 2, "control character 0x1b");
	memset(long_line, '#', sizeof(long_line) - 1);
	long_line[sizeof(long_line) - 1] = '\0';
	assert_file_error(long_line, 1, "line longer than 4096 bytes");
}

static void test_config_file_with_a_nul_byte_is_refused(void **state)
{
	static const char text[] = "state-dir = /x\nlog-level = info\0garbage\n";
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX], *path = NULL;
	FILE *f;
	int fd;

	(void)state;
	assert_true(asprintf(&path, "%s/test_broker_config.XXXXXX", tmp) > 0);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_int_equal(fwrite(text, 1, sizeof(text) - 1, f), sizeof(text) - 1);
	fclose(f);
	assert_int_equal(PARSE(&cfg, err, "--config", path), -EINVAL);
	assert_non_null(strstr(err, ":2: control character 0x00"));
	drop_config(path);
}

static void test_unreadable_config_file_is_an_error(void **state)
{
	struct broker_config cfg;
	char err[BROKER_CONFIG_ERR_MAX];

	(void)state;
	assert_int_equal(PARSE(&cfg, err, "--config", "/nonexistent/miosa.conf"), -ENOENT);
	assert_string_equal(err, "cannot open config file /nonexistent/miosa.conf: "
				 "No such file or directory");
	assert_flag_error(PARSE(&cfg, err, "--config", "/"), err,
			  "config file / is not a regular file");
}

static void test_help_lists_every_option_with_its_default(void **state)
{
	static const char *const want[] = {
		"--config FILE", "--state-dir DIR", "[default: /var/lib/miosa]",
		"--master-key FILE", "[default: /etc/miosa/master.key]",
		"--control-socket PATH", "[default: STATE_DIR/control.sock]",
		"--listen ADDR:PORT", "--connect-to HOST:PORT:TO_HOST:TO_PORT",
		"--upstream-ca FILE", "--log-level LEVEL", "[default: info]",
		"--max-connections N", "[default: 256]", "--idle-timeout SECONDS", "[default: 60]",
		"--worker-threads N", "[default: 4]", "--shutdown-timeout SECONDS", "[default: 10]",
		"--help", "--version",
	};
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	(void)state;
	assert_non_null(out);
	broker_config_help(out, "miosa-broker");
	fclose(out);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (!strstr(text, want[i]))
			fail_msg("--help lacks '%s':\n%s", want[i], text);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_arguments_give_the_documented_defaults),
		cmocka_unit_test(test_help_and_version_win_over_other_flags),
		cmocka_unit_test(test_control_socket_defaults_under_the_state_dir),
		cmocka_unit_test(test_every_flag_is_applied),
		cmocka_unit_test(test_listen_accepts_ipv4_and_bracketed_ipv6),
		cmocka_unit_test(test_listen_refuses_everything_else),
		cmocka_unit_test(test_connect_to_follows_curl_syntax),
		cmocka_unit_test(test_connect_to_refuses_malformed_rules),
		cmocka_unit_test(test_connect_to_flag_errors_name_the_rule),
		cmocka_unit_test(test_connect_to_is_capped),
		cmocka_unit_test(test_numbers_are_strict_and_ranged),
		cmocka_unit_test(test_log_level_takes_the_four_names_only),
		cmocka_unit_test(test_flag_syntax_errors),
		cmocka_unit_test(test_socket_path_must_fit_sun_path),
		cmocka_unit_test(test_guest_tcp_ports_sorted_unique_without_80_443),
		cmocka_unit_test(test_upstream_timeouts_are_ranged),
		cmocka_unit_test(test_config_file_sets_options),
		cmocka_unit_test(test_flags_override_the_file),
		cmocka_unit_test(test_empty_config_file_is_all_defaults),
		cmocka_unit_test(test_config_file_errors_name_file_and_line),
		cmocka_unit_test(test_config_file_with_a_nul_byte_is_refused),
		cmocka_unit_test(test_unreadable_config_file_is_an_error),
		cmocka_unit_test(test_help_lists_every_option_with_its_default),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
