#!/bin/bash
# miosa-broker's life cycle, from the outside: start, health over the Unix
# socket, socket mode, refusals at startup (busy socket, not a socket, bad
# master key mode, unusable state dir, bad config / flags), SIGTERM, stale
# socket after a crash, restart.
#
# Environment: MIOSA_BROKER (the binary; default $MIOSA_BUILD_ROOT/host/miosa-broker).
# Needs curl.  Waits are deadline loops on an observable condition, never
# fixed sleeps.  Prints "ok - WHAT" / "FAIL - WHAT: DETAIL", then totals;
# exits non-zero if anything failed.
set -u

BROKER=${MIOSA_BROKER:-${MIOSA_BUILD_ROOT:-build}/host/miosa-broker}
DEADLINE_S=${DEADLINE_S:-20}
PASS=0
FAIL=0
PIDS=()

T=$(mktemp -d "${TMPDIR:-/tmp}/miosa-lifecycle.XXXXXX") || exit 1
chmod 700 "$T"
STATE=$T/state
KEYDIR=$T/keys
KEY=$KEYDIR/master.key
SOCK=$STATE/control.sock
mkdir -m 700 "$KEYDIR"

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	if [ "$FAIL" -gt 0 ]; then
		for f in "$T"/*.log; do
			[ -s "$f" ] || continue
			echo "--- $f"
			tail -n 20 "$f"
		done
	fi
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { PASS=$((PASS + 1)); echo "ok - $1"; }
fail() { FAIL=$((FAIL + 1)); echo "FAIL - $1${2:+: $2}"; }

# contains WHAT FILE NEEDLE
contains() {
	if grep -qF -- "$3" "$2"; then ok "$1"; else fail "$1" "'$3' not in $(head -c 600 "$2")"; fi
}

# The deadline loops poll a condition; the short sleep only paces the polling.
wait_for_socket() { # PATH PID
	local end=$((SECONDS + DEADLINE_S))
	while [ $SECONDS -lt $end ]; do
		[ -S "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

wait_for_exit() { # PID -> sets EXIT_STATUS; 1 if it is still running at the deadline
	local end=$((SECONDS + DEADLINE_S))
	while [ $SECONDS -lt $end ]; do
		if ! kill -0 "$1" 2>/dev/null; then
			{ wait "$1"; } 2>/dev/null
			EXIT_STATUS=$?
			return 0
		fi
		sleep 0.05
	done
	return 1
}

start_broker() { # LOG ARGS... -> sets BROKER_PID
	local log=$1
	shift
	"$BROKER" "$@" 2>"$log" &
	BROKER_PID=$!
	PIDS+=("$BROKER_PID")
}

# run_refused WHAT WANT_STATUS LOG ARGS...: a broker that must exit by itself.
run_refused() {
	local what=$1 want=$2 log=$3
	shift 3
	start_broker "$log" "$@"
	if ! wait_for_exit "$BROKER_PID"; then
		fail "$what" "still running after ${DEADLINE_S}s"
		return
	fi
	if [ "$EXIT_STATUS" -eq "$want" ]; then ok "$what exits $want"; else
		fail "$what exits $want" "exit $EXIT_STATUS"; fi
}

health() { # SOCKET -> prints the HTTP status
	curl -s -o "$T/health.body" -w '%{http_code}' --max-time 10 \
		--unix-socket "$1" http://broker/v1/health
}

# For a path where a stale socket may already exist: wait for a live answer.
wait_for_health() { # SOCKET PID
	local end=$((SECONDS + DEADLINE_S))
	while [ $SECONDS -lt $end ]; do
		[ "$(health "$1")" = 200 ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

if [ ! -x "$BROKER" ]; then
	echo "FAIL - MIOSA_BROKER=$BROKER is not an executable"
	exit 1
fi
if ! command -v curl >/dev/null; then
	echo "FAIL - curl is required"
	exit 1
fi

# --- first start ----------------------------------------------------------
start_broker "$T/a.log" --state-dir "$STATE" --master-key "$KEY"
A=$BROKER_PID
if wait_for_socket "$SOCK" "$A"; then ok "broker creates its control socket"; else
	fail "broker creates its control socket" "no $SOCK"; exit 1; fi
code=$(health "$SOCK")
if [ "$code" = 200 ] && grep -q '"status":"ok"' "$T/health.body"; then ok "GET /v1/health is 200 ok"
else fail "GET /v1/health is 200 ok" "status $code, body $(cat "$T/health.body" 2>/dev/null)"; fi
mode=$(stat -c %a "$SOCK")
if [ "$mode" = 600 ]; then ok "control socket is mode 0600"; else fail "control socket is mode 0600" "$mode"; fi
mode=$(stat -c %a "$KEY" 2>/dev/null)
if [ "$mode" = 600 ]; then ok "master key created 0600"; else fail "master key created 0600" "$mode"; fi
contains "first start logs the key creation" "$T/a.log" "master_key_created"
contains "ready line names the socket" "$T/a.log" "control_socket=$SOCK"

# The access log has method, path and status, never the query or Authorization.
curl -s -o /dev/null --max-time 10 --unix-socket "$SOCK" -H 'Authorization: Bearer msk_live_SeCrEtToKeN' \
	'http://broker/v1/health?api_key=SeCrEtQuErY'
contains "access log line" "$T/a.log" "control_request method=GET path=/v1/health status="
if ! grep -qE 'SeCrEt|Authorization|api_key' "$T/a.log"; then ok "access log has no query or Authorization"; else
	fail "access log has no query or Authorization" "$(grep -E 'SeCrEt|Authorization|api_key' "$T/a.log")"; fi

# --- refusals while A runs ---------------------------------------------------
run_refused "second broker on the same socket" 1 "$T/busy.log" --state-dir "$STATE" --master-key "$KEY"
contains "second broker says why" "$T/busy.log" "control socket $SOCK is in use by another process"
code=$(health "$SOCK")
if [ "$code" = 200 ]; then ok "first broker still serves after the refusal"; else
	fail "first broker still serves after the refusal" "status $code"; fi

cp "$KEY" "$T/loose.key"
chmod 644 "$T/loose.key"
run_refused "master key mode 0644" 1 "$T/loose.log" --state-dir "$T/state2" --master-key "$T/loose.key" \
	--control-socket "$T/s2.sock"
contains "loose key error names path and mode" "$T/loose.log" "master key $T/loose.key is mode 0644"
if [ ! -e "$T/s2.sock" ]; then ok "refused broker leaves no socket"; else fail "refused broker leaves no socket"; fi

run_refused "missing key file beside an existing state.db" 1 "$T/nokey.log" --state-dir "$STATE" \
	--master-key "$KEYDIR/typo.key" --control-socket "$T/s6.sock"
contains "missing key error says why" "$T/nokey.log" "refusing to create a new key"
if [ ! -e "$KEYDIR/typo.key" ]; then ok "no stray key file is created"; else fail "no stray key file is created"; fi

head -c 32 /dev/urandom >"$T/other.key"
chmod 600 "$T/other.key"
run_refused "another master key for state.db" 1 "$T/otherkey.log" --state-dir "$STATE" \
	--master-key "$T/other.key" --control-socket "$T/s7.sock"
contains "wrong key error" "$T/otherkey.log" "cannot open the state database"

: >"$T/not-a-dir"
run_refused "state dir that is a file" 1 "$T/notdir.log" --state-dir "$T/not-a-dir" --master-key "$KEY" \
	--control-socket "$T/s3.sock"
contains "state dir error names it" "$T/notdir.log" "state directory $T/not-a-dir is not a directory"

mkdir -m 700 "$T/state4"
: >"$T/state4/control.sock"
run_refused "regular file at the socket path" 1 "$T/notsock.log" --state-dir "$T/state4" --master-key "$KEY"
contains "not-a-socket error" "$T/notsock.log" "exists and is not a socket"

printf 'state-dir = %s\n# comment\nlisten = localhost:80\n' "$T/state5" >"$T/bad.conf"
run_refused "bad config file" 2 "$T/badconf.log" --config "$T/bad.conf"
contains "config error names file:line" "$T/badconf.log" "$T/bad.conf:3: listen: invalid address 'localhost:80'"
run_refused "unknown flag" 2 "$T/badflag.log" --state-dir "$T/state5" --no-such-flag
contains "flag error names the flag" "$T/badflag.log" "unknown option '--no-such-flag'"
if [ ! -e "$T/state5" ]; then ok "a usage error touches nothing"; else fail "a usage error touches nothing"; fi

# --- SIGTERM -------------------------------------------------------------------
kill -TERM "$A"
if wait_for_exit "$A"; then
	if [ "$EXIT_STATUS" -eq 0 ]; then ok "SIGTERM: exit 0"; else fail "SIGTERM: exit 0" "exit $EXIT_STATUS"; fi
else
	fail "SIGTERM: exit 0" "still running after ${DEADLINE_S}s"
fi
if [ ! -e "$SOCK" ]; then ok "SIGTERM removes the socket"; else fail "SIGTERM removes the socket"; fi
contains "shutdown is logged" "$T/a.log" "shutdown_complete"

# --- restart --------------------------------------------------------------------
start_broker "$T/b.log" --state-dir "$STATE" --master-key "$KEY"
B=$BROKER_PID
if wait_for_socket "$SOCK" "$B" && [ "$(health "$SOCK")" = 200 ]; then ok "restart serves again"; else
	fail "restart serves again"; fi
if ! grep -q master_key_created "$T/b.log"; then ok "restart reuses the master key"; else
	fail "restart reuses the master key"; fi

# --- crash leaves a stale socket; the next start replaces it ------------------
# bash reports a job killed by a signal on stderr; that is the point here.
{ kill -KILL "$B"; wait_for_exit "$B"; } 2>/dev/null
if [ -S "$SOCK" ]; then ok "SIGKILL leaves a stale socket behind"; else fail "SIGKILL leaves a stale socket behind"; fi
start_broker "$T/c.log" --state-dir "$STATE" --master-key "$KEY"
C=$BROKER_PID
if wait_for_health "$SOCK" "$C"; then ok "start over a stale socket serves"; else
	fail "start over a stale socket serves"; fi
contains "stale socket removal is logged" "$T/c.log" "control_socket_stale_removed"
kill -INT "$C"
if wait_for_exit "$C" && [ "$EXIT_STATUS" -eq 0 ]; then ok "SIGINT: exit 0"; else fail "SIGINT: exit 0" "${EXIT_STATUS:-running}"; fi

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
