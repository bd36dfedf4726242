#!/bin/bash
# miosa-init as PID 1 (init mode) in new PID, mount and network namespaces,
# against tests/integration/fake_broker.  Checks what only PID 1 does: execs
# run and are reaped by it, orphans re-parented to it are reaped, the CA
# lands in the system bundle (once) and /etc/profile.d/miosa.sh carries the
# bindings, and SIGTERM reaches every process before the namespace is
# powered off (reboot(RB_POWER_OFF) ends a PID namespace's init with SIGINT).
# The files init mode writes under /etc are bind mounts of scratch copies in
# the private mount namespace: the machine's own are never touched.
# Needs root; CI runs as root, so anything missing is a failure, never a skip.
#
# Usage: guest_pid1.sh MIOSA_INIT FAKE_BROKER
set -euo pipefail

AGENT=$1
FAKE=$2

source "$(dirname "$0")/failfast.sh"

dump_logs() {
	dump_tail 30 "$work"/agent.log "$work"/broker.out "$work"/broker.err
}

require_root "unshare"
require_tools unshare nsenter openssl ps

# Not under /tmp or /run: PID 1 mounts a tmpfs on each when it is not a
# mount point already, which would hide the work directory from it.
work=$(mktemp -d /var/tmp/miosa-pid1.XXXXXX)
unshare_pid=
broker_pid=
agent=
cleanup() {
	[ -z "$unshare_pid" ] || kill -KILL "$unshare_pid" 2>/dev/null || true
	[ -z "$agent" ] || kill -KILL "$agent" 2>/dev/null || true
	[ -z "$broker_pid" ] || kill -KILL "$broker_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap "exit 1" INT TERM

system_bundle=/etc/ssl/certs/ca-certificates.crt
[ -f "$system_bundle" ] || fail "$system_bundle missing (install ca-certificates)"
cp "$system_bundle" "$work/system.crt"
echo "nameserver 192.0.2.53" >"$work/resolv.conf"
mkdir "$work/profile.d"
sandbox_ca "$work"
placeholder=miosa-tok-$(openssl rand -hex 16)

"$FAKE" --uds "$work/v" --ca-pem "$work/ca.pem" --placeholder "$placeholder" \
	</dev/null >"$work/broker.out" 2>"$work/broker.err" &
broker_pid=$!
wait_for 10 "the fake broker" grep -q '^LISTENING' "$work/broker.out"

# sh is PID 1 of the new namespace, binds the scratch files, then execs the
# agent, which so becomes PID 1 in init mode (no --no-init).
unshare --pid --fork --mount --net --propagation private sh -c '
	mount --bind "$1/system.crt" /etc/ssl/certs/ca-certificates.crt &&
	mount --bind "$1/profile.d" /etc/profile.d &&
	mount --bind "$1/resolv.conf" /etc/resolv.conf &&
	exec "$2" --transport "unix:$1/v" --runtime-dir "$1/run" --log-level debug' \
	sh "$work" "$AGENT" </dev/null >/dev/null 2>"$work/agent.log" &
unshare_pid=$!
find_agent() { agent=$(ps -o pid= --ppid "$unshare_pid" | tr -d ' '); [ -n "$agent" ]; }
wait_for 10 "the agent's PID" find_agent
wait_for 10 "the agent to start" grep -q 'starting: PID 1' "$work/agent.log"
in_agent() { nsenter -t "$agent" -p -m -n "$@"; } # forks into the PID namespace

# --- What PID 1 sets up --------------------------------------------------------------
wait_for 60 "the exec scenario" grep -q '^SCENARIO' "$work/broker.out"
grep -q '^SCENARIO OK' "$work/broker.out" || fail "scenario: $(grep '^FAIL' "$work/broker.out")"
pass "exec scenario as PID 1 ($(grep -c '^PASS' "$work/broker.out") checks)"

ca_line=$(sed -n 2p "$work/ca.pem")
[ "$(grep -cF "$ca_line" "$work/system.crt")" = 1 ] || fail "CA not in the system bundle exactly once"
cmp -s <(head -c "$(stat -c %s "$system_bundle")" "$work/system.crt") "$system_bundle" ||
	fail "the system bundle's original content changed"
got=$(env -i sh -c ". '$work/profile.d/miosa.sh' && echo \"\$OPENAI_API_KEY \$SSL_CERT_FILE\"")
[ "$got" = "$placeholder $work/run/ca-bundle.pem" ] || fail "profile.d/miosa.sh gives '$got'"
grep -qx 'nameserver 127.0.0.1' "$work/resolv.conf" || fail "resolv.conf not rewritten"
pass "CA appended to the system bundle once, /etc/profile.d/miosa.sh, /etc/resolv.conf"

# --- Orphans are reaped ----------------------------------------------------------------
# sh exits at once; its background sleep is re-parented to PID 1, the agent
in_agent sh -c 'sleep 1 & exit 0'
orphan_of_agent() { ps -o comm= --ppid "$agent" | grep -qx sleep; }
wait_for 5 "the orphan to be re-parented to the agent" orphan_of_agent
no_children() { [ -z "$(ps -o pid= --ppid "$agent")" ]; }
wait_for 10 "the orphan to be reaped (no zombie left)" no_children
pass "orphan re-parented to PID 1 and reaped"

# --- SIGTERM: every process hears it, then power-off ---------------------------------------
in_agent sh -c "trap 'echo got-term > $work/term; exit 0' TERM; touch $work/ready; sleep 100 & wait" &
nsenter_pid=$!
wait_for 10 "the SIGTERM watcher to run" test -e "$work/ready"
kill -TERM "$agent"
agent_gone() { ! kill -0 "$agent" 2>/dev/null; }
wait_for 15 "the agent to power the namespace off" agent_gone
wait "$nsenter_pid" 2>/dev/null || true
[ "$(cat "$work/term" 2>/dev/null)" = got-term ] || fail "a process in the guest never got SIGTERM"
grep -q 'powering off' "$work/agent.log" || fail "no power-off logged"
status=0
wait "$unshare_pid" || status=$?
unshare_pid=
agent=
# util-linux unshare passes its child's death by signal on: SIGINT is how
# the kernel ends a PID namespace whose init called reboot(RB_POWER_OFF).
[ "$status" = $((128 + 2)) ] || fail "unshare exit status $status (expected 130: SIGINT)"
if grep -q 'ERROR: AddressSanitizer\|runtime error:\|LeakSanitizer' "$work/agent.log"; then
	fail "sanitizer report in the agent's log"
fi
pass "SIGTERM forwarded to every process, then reboot(RB_POWER_OFF) ended the namespace"
echo "guest_pid1: all checks passed"
