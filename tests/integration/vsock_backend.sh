#!/bin/bash
# miosa-vsock without a VM: tests/integration/vhost_user_frontend plays QEMU
# and the guest driver over the vhost-user socket and a memfd.  Checks the
# lifetime contract (docs/vsock.md): exit 0 after a clean stop, 1 when the
# frontend vanishes with rings running, breaks the protocol or the guest
# corrupts a ring, 1 with the step and path for a bad socket path, 2 for a
# bad option; and the data path glue: guest REQUEST -> <uds>_P connect ->
# RESPONSE, RW both ways, a lying packet length resets its connection.  No AF_VSOCK anywhere (FACTS.md).
# Waits are deadline loops on an observable condition; the short sleep only
# paces the polling.
#
# Usage: vsock_backend.sh MIOSA_VSOCK VHOST_USER_FRONTEND
set -euo pipefail

VSOCK=$1
FRONTEND=$2
CID=7

work=$(mktemp -d /tmp/miosa-vsock-backend.XXXXXX)
pid=
cleanup() {
	[ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap "exit 1" INT TERM

fail() {
	echo "FAIL: $*"
	[ -f "$work/vsock.log" ] && { echo "--- miosa-vsock log"; tail -n 20 "$work/vsock.log"; }
	exit 1
}
pass() { echo "PASS: $*"; }

wait_for() { # wait_for SECONDS WHAT COMMAND...
	local deadline=$((SECONDS + $1)) what=$2
	shift 2
	until "$@"; do
		[ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting for $what"
		sleep 0.05
	done
}
exited() { ! kill -0 "$1" 2>/dev/null; }

start() {
	rm -f "$work/vhost.sock" "$work/vsock"
	"$VSOCK" --vhost-user "$work/vhost.sock" --uds "$work/vsock" --guest-cid "$CID" \
		--log-level debug >"$work/vsock.log" 2>&1 &
	pid=$!
	wait_for 10 "miosa-vsock to listen" test -S "$work/vhost.sock"
}

# finish EXPECTED_STATUS LOG_PATTERN WHAT
finish() {
	local status=0
	wait_for 10 "miosa-vsock to exit ($3)" exited "$pid"
	wait "$pid" || status=$?
	pid=
	[ "$status" = "$1" ] || fail "$3: miosa-vsock exited $status, expected $1"
	grep -q -- "$2" "$work/vsock.log" || fail "$3: log lacks '$2'"
	pass "$3: exit $1, log has '$2'"
}

run_frontend() { # SCENARIO
	"$FRONTEND" "$work/vhost.sock" "$work/vsock" "$CID" "$1" >"$work/frontend.out" 2>&1 ||
		fail "frontend scenario $1: $(cat "$work/frontend.out")"
}

start; run_frontend clean
finish 0 "frontend_disconnected" "QEMU-like handshake, GET_VRING_BASE, EOF"

start; run_frontend vanish
finish 1 "frontend disconnected with rings running" "frontend gone with rings running"

start; run_frontend oversize
finish 1 "exceeds 4096" "oversize vhost-user message"

start; run_frontend loop
finish 1 "loop" "guest chain loop fails the device"

start; run_frontend rxread
finish 1 "rx buffer has readable descriptors" "read-only rx buffer fails the device"

start; run_frontend data
grep -q "data ok" "$work/frontend.out" || fail "data scenario did not report success"
finish 0 "frontend_disconnected" "guest REQUEST/RW through the rings to <uds>_7000 and back"
grep -q 'tx_malformed=1' "$work/vsock.log" || fail "the lying RW length was not counted as malformed"
pass "an RW claiming more payload than its chain reset its connection (RST, socket closed)"

# Startup errors name the step and the path.
status=0
"$VSOCK" --vhost-user "$work/no/such/dir/s" --uds "$work/vsock" --guest-cid "$CID" \
	>"$work/vsock.log" 2>&1 || status=$?
[ "$status" = 1 ] || fail "missing socket directory: exit $status, expected 1"
grep -q 'step="vhost-user socket" path=.*/no/such/dir/s error="No such file or directory"' \
	"$work/vsock.log" || fail "missing socket directory: unclear error: $(cat "$work/vsock.log")"
pass "missing socket directory: exit 1 naming step and path"

start
status=0
"$VSOCK" --vhost-user "$work/vhost.sock" --uds "$work/vsock2" --guest-cid "$CID" \
	>"$work/second.log" 2>&1 || status=$?
[ "$status" = 1 ] && grep -q 'Address already in use' "$work/second.log" ||
	fail "a live vhost-user socket was not refused: $(cat "$work/second.log")"
kill -TERM "$pid"
finish 0 "shutdown_started" "SIGTERM"
pass "a second backend on a live socket is refused"

status=0
"$VSOCK" --vhost-user "$work/s" --uds "$work/u" --guest-cid 2 >"$work/usage.log" 2>&1 || status=$?
[ "$status" = 2 ] && grep -q 'guest-cid' "$work/usage.log" || fail "CID 2 accepted (exit $status)"
pass "reserved CID refused with exit 2"
