/*
 * broker_config — miosa-broker's options: defaults, the config file, flags.
 *
 * Every option is a long flag (--state-dir DIR or --state-dir=DIR) and a
 * config file key of the same name without the dashes (state-dir = DIR).
 * Precedence: built-in default < config file (--config FILE) < flag.  The
 * table in broker_config.c is the single list of options: parsing, --help
 * and docs/broker.md follow it.
 *
 * Config file: UTF-8/ASCII text, one "key = value" per line (spaces around
 * '=' optional, value is the rest of the line with surrounding blanks
 * removed, no quoting), blank lines and lines whose first non-blank byte is
 * '#' ignored.  Strict: an unknown key, a key set twice (except the
 * repeatable connect-to), a bad value, a line without '=', a control byte
 * or a line over BROKER_CONFIG_LINE_MAX bytes is an error naming FILE:LINE.
 * Flags are as strict: unknown flag, missing value, a flag given twice
 * (except --connect-to) or a positional argument is an error.  A repeatable
 * option given as flags replaces the file's entries as a whole.
 *
 * Contract:
 *   - broker_config_from_args() returns BROKER_CONFIG_RUN with *ret_cfg
 *     filled (release with broker_config_free()), BROKER_CONFIG_HELP or
 *     BROKER_CONFIG_VERSION (ret_cfg untouched), or a negative errno with a
 *     one-line reason in err (flags: "--listen: ..."; file:
 *     "FILE:LINE: ...").  The caller prints it and exits 2.
 *   - Pure parsing and validation: reads the config file, nothing else (no
 *     path is checked for existence, no socket opened); startup checks
 *     belong to broker_main.c.  No logging, no global state: safe to call
 *     repeatedly (tests do).
 */
#ifndef MIOSA_BROKER_CONFIG_H
#define MIOSA_BROKER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "log.h"

#define BROKER_CONFIG_DEFAULT_STATE_DIR "/var/lib/miosa"
#define BROKER_CONFIG_DEFAULT_MASTER_KEY "/etc/miosa/master.key"
#define BROKER_CONFIG_SOCKET_NAME "control.sock"
#define BROKER_CONFIG_DEFAULT_MAX_CONNECTIONS 256
#define BROKER_CONFIG_DEFAULT_IDLE_TIMEOUT 60       /* seconds */
#define BROKER_CONFIG_DEFAULT_WORKER_THREADS 4
#define BROKER_CONFIG_DEFAULT_SHUTDOWN_TIMEOUT 10   /* seconds */
/* Egress upstreams (docs/broker.md "Timeouts"). */
#define BROKER_CONFIG_DEFAULT_UPSTREAM_CONNECT_TIMEOUT 10   /* resolve + TCP + TLS */
#define BROKER_CONFIG_DEFAULT_UPSTREAM_RESPONSE_TIMEOUT 60  /* an exchange without progress */
#define BROKER_CONFIG_DEFAULT_UPSTREAM_IDLE_TIMEOUT 30      /* idle keep-alive upstream */
/* Extra TCP ports the guest agent catches besides 80 and 443. */
#define BROKER_CONFIG_GUEST_PORTS_MAX 32
/* = POLICY_TALLY_FLUSH_MS_DEFAULT (policy_tally.h). */
#define BROKER_CONFIG_DEFAULT_OBSERVED_FLUSH_MS 200

#define BROKER_CONFIG_LINE_MAX 4096      /* bytes per config file line */
#define BROKER_CONFIG_FILE_MAX (1 << 20) /* config file size */
#define BROKER_CONFIG_CONNECT_TO_MAX 64
#define BROKER_CONFIG_HOST_MAX 253       /* DNS name, without a trailing dot */
#define BROKER_CONFIG_SUN_PATH_MAX 107   /* sizeof(sun_path) - 1 on Linux */
#define BROKER_CONFIG_ERR_MAX 512

enum broker_config_action {
	BROKER_CONFIG_RUN = 0,
	BROKER_CONFIG_HELP = 1,
	BROKER_CONFIG_VERSION = 2,
};

/*
 * One --connect-to rule (curl's CURLOPT_CONNECT_TO): a connection for
 * host:port goes to to_host:to_port; SNI, Host and certificate checks stay
 * those of host.  An empty host / port 0 matches any host / port; an empty
 * to_host / to_port 0 keeps the request's own.  Hosts are stored lowercase,
 * without a trailing dot, IPv6 literals without brackets.
 */
struct broker_connect_to {
	char host[BROKER_CONFIG_HOST_MAX + 1];
	uint16_t port;
	char to_host[BROKER_CONFIG_HOST_MAX + 1];
	uint16_t to_port;
};

struct broker_config {
	char *config_file;          /* NULL: none */
	char *state_dir;
	char *master_key;
	char *control_socket;       /* default: state_dir/control.sock */
	bool has_listen;
	struct sockaddr_storage listen;  /* AF_INET or AF_INET6, port set */
	char listen_text[64];       /* as given, for logs */
	struct broker_connect_to *connect_to;
	size_t n_connect_to;
	char *upstream_ca;          /* NULL: system trust store only */
	enum log_level log_level;
	unsigned max_connections;
	unsigned idle_timeout;      /* seconds */
	unsigned worker_threads;
	unsigned shutdown_timeout;  /* seconds */
	unsigned observed_flush_ms; /* observed hosts: batch interval (policy_tally.h) */
	bool vsock_listen;          /* AF_VSOCK guest listener (default off) */
	unsigned upstream_connect_timeout;  /* seconds */
	unsigned upstream_response_timeout; /* seconds */
	unsigned upstream_idle_timeout;     /* seconds */
	uint16_t guest_tcp_ports[BROKER_CONFIG_GUEST_PORTS_MAX]; /* besides 80, 443; sorted, unique */
	size_t n_guest_tcp_ports;
	unsigned audit_retention_days;  /* 0 = keep audit rows forever */
	unsigned audit_max_rows;        /* 0 = no row limit */
};

__attribute__((warn_unused_result))
int broker_config_from_args(int argc, char *const argv[], struct broker_config *ret_cfg,
			    char *err, size_t err_size);
void broker_config_free(struct broker_config *cfg);

/* The --help text: every option with its default. */
void broker_config_help(FILE *out, const char *prog);

/*
 * Parsers shared with the rest of the broker (and tested on their own).
 * ADDR:PORT with an IPv4 literal or a bracketed IPv6 literal, port 1..65535.
 */
__attribute__((warn_unused_result))
int broker_config_parse_listen(const char *s, struct sockaddr_storage *ret_addr);
/* HOST:PORT:TO_HOST:TO_PORT as described above. */
__attribute__((warn_unused_result))
int broker_config_parse_connect_to(const char *s, struct broker_connect_to *ret_rule);

#endif
