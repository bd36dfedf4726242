# Shared helpers for the integration scripts (bash; sourced, not run).
#
# Environment (meson sets it): MIOSACTL, HTTP_PROBE, MIOSA_BUILD_ROOT and,
# for scripts that start one, MIOSA_BROKER.
#
# Conventions: every check prints "ok - WHAT" or "FAIL - WHAT: DETAIL";
# it_finish prints the totals and exits non-zero if anything failed.  Waits
# are deadline loops on an observable condition, never fixed sleeps.

set -eu
set -o pipefail
# `printf VALUE | ctl ...` runs ctl in this shell, so its results stick.
shopt -s lastpipe

: "${MIOSACTL:?MIOSACTL must point at the miosactl binary}"
: "${HTTP_PROBE:?HTTP_PROBE must point at the http_probe helper}"

# ok, fail, check_eq, wait_until
source "$(dirname "${BASH_SOURCE[0]}")/../lib/checks.sh"
# upstream_cert, netns_add, agent_start
source "$(dirname "${BASH_SOURCE[0]}")/fixture.sh"

IT_NAME=$(basename "$0" .sh)
T=$(mktemp -d "${TMPDIR:-/tmp}/miosa-it.XXXXXX")
BROKER_PID=
SERVE_PID=
# Every byte any client received or printed, for the leak checks.
TRANSCRIPT=$T/transcript
: >"$TRANSCRIPT"

it_cleanup() {
	local rc=$?
	if [ -n "$SERVE_PID" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
		kill "$SERVE_PID" 2>/dev/null || true
		wait "$SERVE_PID" 2>/dev/null || true
	fi
	if [ -n "$BROKER_PID" ]; then
		broker_stop || true
	fi
	if [ "$CHECK_FAIL" -gt 0 ] || [ "$rc" -ne 0 ]; then
		if [ -s "$T/broker.log" ]; then
			echo "--- last 40 lines of the broker log ($T/broker.log) ---"
			tail -n 40 "$T/broker.log" || true
		fi
	fi
	rm -rf "$T"
}
trap it_cleanup EXIT
trap 'exit 130' INT TERM

# check_ne WHAT UNEXPECTED ACTUAL
check_ne() {
	if [ "$2" != "$3" ]; then ok "$1"; else fail "$1" "got '$3'"; fi
}

# check_match WHAT ERE ACTUAL
check_match() {
	if printf '%s' "$3" | grep -Eq -- "$2"; then ok "$1"; else fail "$1" "'$3' does not match /$2/"; fi
}

# check_contains WHAT NEEDLE HAYSTACK
check_contains() {
	case "$3" in
	*"$2"*) ok "$1" ;;
	*) fail "$1" "'$2' not in '$(printf '%s' "$3" | head -c 400)'" ;;
	esac
}

check_not_contains() {
	case "$3" in
	*"$2"*) fail "$1" "'$2' found in '$(printf '%s' "$3" | head -c 400)'" ;;
	*) ok "$1" ;;
	esac
}

it_finish() {
	echo "$IT_NAME: $((CHECK_PASS + CHECK_FAIL)) checks, $CHECK_FAIL failed"
	[ "$CHECK_FAIL" -eq 0 ]
}

# jget PATH: a field of the JSON on stdin ("" if absent).
jget() {
	"$HTTP_PROBE" jget "$1" || true
}

# jkeys PATH: the sorted keys of the object at PATH in the JSON on stdin.
jkeys() {
	"$HTTP_PROBE" jkeys "$1" || true
}

# ---------------------------------------------------------------------------
# miosactl: ctl ARGS... sets CTL_RC, CTL_OUT, CTL_ERR (stdin passes through).

ctl() {
	CTL_RC=0
	"$MIOSACTL" "$@" >"$T/ctl.out" 2>"$T/ctl.err" || CTL_RC=$?
	CTL_OUT=$(cat "$T/ctl.out")
	CTL_ERR=$(cat "$T/ctl.err")
	cat "$T/ctl.out" "$T/ctl.err" >>"$TRANSCRIPT"
}

# ctl_ok WHAT ARGS...: run miosactl, count a failure unless it exits 0.
ctl_ok() {
	local what=$1
	shift
	ctl "$@"
	if [ "$CTL_RC" -eq 0 ]; then ok "$what"; else fail "$what" "exit $CTL_RC: $CTL_ERR"; fi
}

# ctl_fails WHAT RC ERR-SUBSTRING ARGS...
ctl_fails() {
	local what=$1 rc=$2 needle=$3
	shift 3
	ctl "$@"
	if [ "$CTL_RC" -ne "$rc" ]; then
		fail "$what" "exit $CTL_RC (expected $rc): $CTL_ERR"
	else
		check_contains "$what" "$needle" "$CTL_ERR"
	fi
}

# ---------------------------------------------------------------------------
# curl: api METHOD PATH [JSON] over the control socket, tapi KEY METHOD PATH
# [JSON] over TCP (KEY "" sends no Authorization).  Set STATUS, BODY, CODE
# (the "error" field or "-") and HEADERS (file).  JSON goes through stdin so
# secret values never sit in curl's argv.  CT_HEADER replaces the
# Content-Type line ("Content-Type:" sends none).

HEADERS=$T/headers

_curl() {
	local method=$1 url=$2 body=$3
	shift 3
	local -a args=(-sS --path-as-is -X "$method" -o "$T/body" -D "$HEADERS" -w '%{http_code}' "$@")
	if [ -n "$body" ]; then
		STATUS=$(printf '%s' "$body" |
			curl "${args[@]}" -H "${CT_HEADER-Content-Type: application/json}" \
				--data-binary @- "$url") || STATUS=000
	else
		STATUS=$(curl "${args[@]}" "$url") || STATUS=000
	fi
	BODY=$(cat "$T/body" 2>/dev/null || true)
	printf '%s\n' "$BODY" >>"$TRANSCRIPT"
	CODE=$(printf '%s' "$BODY" | "$HTTP_PROBE" jget error 2>/dev/null || true)
	[ -n "$CODE" ] || CODE=-
}

api() {
	_curl "$1" "http://localhost$2" "${3-}" --unix-socket "$SOCK"
}

tapi() {
	local key=$1
	shift
	if [ -n "$key" ]; then
		_curl "$1" "http://127.0.0.1:$PORT$2" "${3-}" -H "Authorization: Bearer $key"
	else
		_curl "$1" "http://127.0.0.1:$PORT$2" "${3-}"
	fi
}

# expect WHAT STATUS CODE: the last api/tapi answered STATUS with error CODE
# ("-": no error object).  STATUS and CODE may be EREs ("400|404").
expect() {
	if printf '%s' "$STATUS" | grep -Eqx -- "$2" && printf '%s' "$CODE" | grep -Eqx -- "$3"; then
		case "$2$3" in
		*"|"*) ok "$1 (got $STATUS $CODE)" ;;
		*) ok "$1" ;;
		esac
	else
		fail "$1" "expected $2 $3, got $STATUS $CODE $(printf '%s' "$BODY" | head -c 300)"
	fi
}

header_value() {
	grep -i "^$1:" "$HEADERS" | head -n 1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'
}

# ---------------------------------------------------------------------------
# The broker: broker_start [EXTRA FLAGS...] on $T/state with the key in
# $T/keys (a separate directory), socket $SOCK, log $T/broker.log.

SOCK=$T/control.sock
PORT=
STATE_DIR=$T/state
MASTER_KEY=$T/keys/master.key

_broker_ready() {
	kill -0 "$BROKER_PID" 2>/dev/null || return 2
	[ -S "$SOCK" ] || return 1
	curl -sf --unix-socket "$SOCK" http://localhost/v1/health >/dev/null || return 1
	if [ -n "$PORT" ]; then
		curl -sf "http://127.0.0.1:$PORT/v1/health" >/dev/null || return 1
	fi
}

broker_start() {
	: "${MIOSA_BROKER:?MIOSA_BROKER must point at miosa-broker}"
	mkdir -p "$T/keys"
	chmod 700 "$T/keys"
	local -a listen=()
	[ -z "$PORT" ] || listen=(--listen "127.0.0.1:$PORT")
	"$MIOSA_BROKER" --state-dir "$STATE_DIR" --master-key "$MASTER_KEY" \
		--control-socket "$SOCK" "${listen[@]}" --log-level debug \
		"$@" </dev/null >>"$T/broker.log" 2>&1 &
	BROKER_PID=$!
	local deadline=$(($(date +%s) + 30)) rc
	while :; do
		rc=0
		_broker_ready || rc=$?
		[ "$rc" -ne 0 ] || return 0
		if [ "$rc" -eq 2 ]; then
			wait "$BROKER_PID" 2>/dev/null || true
			BROKER_PID=
			echo "miosa-broker exited during startup; log:" >&2
			cat "$T/broker.log" >&2
			return 1
		fi
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "miosa-broker not ready after 30s; log:" >&2
			cat "$T/broker.log" >&2
			return 1
		fi
		sleep 0.05
	done
}

# broker_stop: SIGTERM, then wait (deadline 15 s) for it to exit; 0 if it
# exited by itself with status 0.
broker_stop() {
	[ -n "$BROKER_PID" ] || return 0
	local pid=$BROKER_PID rc=0 deadline=$(($(date +%s) + 15))
	BROKER_PID=
	kill -TERM "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "miosa-broker (pid $pid) ignored SIGTERM for 15s; killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
			return 1
		fi
		sleep 0.05
	done
	wait "$pid" 2>/dev/null || rc=$?
	# control_api_handle() repairs a store connection a request left in a
	# transaction (it would read an old snapshot for good) and the access
	# log line says so: in a test run that is a bug.  Checked once per run.
	if [ -z "${_BROKER_BUSY_SEEN:-}" ] && grep -q 'store left busy' "$T/broker.log" 2>/dev/null; then
		_BROKER_BUSY_SEEN=1
		fail "no request left a store connection busy" \
			"$(grep -m 3 'store left busy' "$T/broker.log")"
	fi
	return "$rc"
}

broker_alive() {
	[ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null
}

free_port() {
	"$HTTP_PROBE" free-port
}
