#!/bin/bash
# The synthetic DNS map of a sandbox survives broker restarts (docs/design.md,
# "DNS maps"): a name resolved before a restart resolves to the same address
# after it, a connection to an address the guest already holds (no new
# lookup: curl --resolve) reaches the name that address was answered for,
# and a new name gets a fresh address that collides with none of the old
# ones.  Both a clean stop (SIGTERM) and a crash (SIGKILL right after an
# answer: the mapping was committed before the guest saw it).  The first
# stream after each restart is once an egress stream (the map loads before
# the reverse lookup) and once a DNS query (before the answer).
# Needs root (ip netns) and the agent: a missing one is a failure, never a skip.
set -euo pipefail

BROKER=${MIOSA_BROKER:?MIOSA_BROKER not set}
CTL=${MIOSACTL:?MIOSACTL not set}
ECHO=${ECHO_UPSTREAM:?ECHO_UPSTREAM not set}
AGENT=${MIOSA_INIT:-${MIOSA_BUILD_ROOT:?MIOSA_BUILD_ROOT not set}/guest/miosa-init}

source "$(dirname "$0")/failfast.sh"

dump_logs() {
	dump_tail 30 "$dir"/broker.err "$dir"/agent.log
}
require_root "ip netns"
require_agent
require_tools ip openssl sqlite3

dir=$(mktemp -d /tmp/miosa-dm.XXXXXX)
ns=miosa-dm-$$
broker_pid= agent_pid= echo_pid=

cleanup() {
	kill_all $agent_pid $broker_pid $echo_pid
	netns_del "$ns"
	rm -rf "$dir"
}
trap cleanup EXIT
trap "exit 1" INT TERM

export MIOSA_SOCKET=$dir/state/control.sock

upstream_cert "$dir" a.map.test b.map.test c.map.test || fail "openssl"
"$ECHO" "$dir/server.pem" "$dir/server.key" "$dir/echo.port" </dev/null >"$dir/echo.log" 2>&1 &
echo_pid=$!
wait_for 20 "the echo upstream" test -s "$dir/echo.port"
port=$(cat "$dir/echo.port")

broker_up() {
	: >"$dir/broker.err"
	"$BROKER" --state-dir "$dir/state" --master-key "$dir/master.key" --log-level info \
		--connect-to "a.map.test:443:127.0.0.1:$port" \
		--connect-to "b.map.test:443:127.0.0.1:$port" \
		--connect-to "c.map.test:443:127.0.0.1:$port" \
		--upstream-ca "$dir/upstream-ca.pem" </dev/null >>"$dir/broker.out" 2>"$dir/broker.err" &
	broker_pid=$!
	wait_for 20 "the broker" grep -q broker_ready "$dir/broker.err"
}
broker_down() { # broker_down SIGNAL
	kill "-$1" "$broker_pid"
	wait "$broker_pid" 2>/dev/null || [ "$1" = KILL ] || fail "broker exited with status $? on SIG$1"
	broker_pid=
}
# The agent's control stream is back: exec answers.  It says nothing about
# DNS or egress streams, which open per query and per connection.
agent_back() { wait_for 30 "the agent back on the restarted broker" exec_works; }

# resolve NAME: the address the guest's resolver (the agent's stub) answers.
resolve() {
	gexec -- sh -c "getent ahostsv4 $1 | head -n 1 | cut -d ' ' -f 1"
}
# fetch_at NAME ADDR: the status of https://NAME/ sent to ADDR without a
# lookup (000: no HTTP answer).
fetch_at() {
	gexec -- curl -s -o /dev/null -w '%{http_code}' --max-time 15 \
		--resolve "$1:443:$2" "https://$1/" || true
}
# An ordinary connection: also used with the broker down (after SIGKILL),
# when a read-only one cannot run WAL recovery itself.
rows() { sqlite3 -cmd '.timeout 5000' "$dir/state/state.db" \
	"SELECT count(*) FROM dns_map WHERE sandbox_id = '$sbx'"; }

broker_up
sbx=$(ctl sandbox create --vsock-uds "$dir/vm.sock")
netns_add "$ns"
agent_start "$ns" "$dir/vm.sock" "$dir/run" "$dir/agent.log"
agent_pid=$AGENT_PID
wait_for 30 "exec through the agent" exec_works
pass "broker, sandbox and agent up"

addr_a=$(resolve a.map.test)
addr_b=$(resolve b.map.test)
[[ $addr_a == 198.1[89].* && $addr_b == 198.1[89].* && $addr_a != "$addr_b" ]] ||
	fail "a.map.test -> '$addr_a', b.map.test -> '$addr_b': two synthetic addresses"
[ "$(fetch_at a.map.test "$addr_a")" = 200 ] || fail "a.map.test at $addr_a before any restart"
[ "$(rows)" = 2 ] || fail "state.db holds $(rows) mappings for the sandbox, want 2"
pass "a.map.test -> $addr_a, b.map.test -> $addr_b, both in state.db"

# --- SIGTERM; the first stream after the restart is an egress one ----------------------
broker_down TERM
broker_up
agent_back
[ "$(fetch_at a.map.test "$addr_a")" = 200 ] ||
	fail "after SIGTERM, a connection to $addr_a (no new lookup) does not reach a.map.test"
pass "after SIGTERM: a connection to the cached $addr_a reaches a.map.test"
[ "$(fetch_at b.map.test "$addr_a")" != 200 ] ||
	fail "after SIGTERM, $addr_a accepted SNI b.map.test: it maps to another name"
wait_for 10 "the SNI mismatch refusal logged" \
	grep -q "egress_sni_refused .*host=a.map.test sni=b.map.test" "$dir/broker.err"
[ "$(fetch_at b.map.test "$addr_b")" = 200 ] || fail "after SIGTERM, b.map.test at $addr_b"
pass "after SIGTERM: $addr_a is a.map.test only (b.map.test there: sni-mismatch), $addr_b is b.map.test"
[ "$(resolve a.map.test)" = "$addr_a" ] || fail "after SIGTERM a.map.test resolves elsewhere"
[ "$(resolve b.map.test)" = "$addr_b" ] || fail "after SIGTERM b.map.test resolves elsewhere"
pass "after SIGTERM: both names resolve to the same addresses"

# --- SIGKILL; the first stream after the restart is a DNS query ------------------------
broker_down KILL
broker_up
agent_back
[ "$(resolve b.map.test)" = "$addr_b" ] || fail "after SIGKILL b.map.test resolves elsewhere"
addr_c=$(resolve c.map.test)
[[ $addr_c == 198.1[89].* && $addr_c != "$addr_a" && $addr_c != "$addr_b" ]] ||
	fail "new name c.map.test -> '$addr_c' (old: $addr_a, $addr_b)"
pass "after SIGKILL: b.map.test keeps $addr_b, the new c.map.test gets a fresh $addr_c"

# SIGKILL right after c.map.test's answer: its mapping was committed first.
broker_down KILL
[ "$(rows)" = 3 ] || fail "after SIGKILL state.db holds $(rows) mappings, want 3"
broker_up
agent_back
[ "$(fetch_at c.map.test "$addr_c")" = 200 ] ||
	fail "after a second SIGKILL, a connection to $addr_c does not reach c.map.test"
[ "$(fetch_at a.map.test "$addr_a")" = 200 ] || fail "after a second SIGKILL, a.map.test at $addr_a"
[ "$(resolve c.map.test)" = "$addr_c" ] || fail "after a second SIGKILL c.map.test resolves elsewhere"
pass "SIGKILL right after an answer: c.map.test keeps $addr_c, a.map.test keeps $addr_a"

# --- a mapping that cannot be stored is not answered --------------------------------------
# A trigger makes the insert of fail.map.test's row fail: the guest gets
# SERVFAIL (no address), the broker drops the mapping and reloads the map
# from state.db, and the names it holds keep their addresses.
sqlite3 "$dir/state/state.db" "CREATE TRIGGER dns_map_test_fail BEFORE INSERT ON dns_map
	WHEN NEW.name = 'fail.map.test' BEGIN SELECT RAISE(ABORT, 'test refuses the row'); END;" ||
	fail "create the failing trigger"
out=$(resolve fail.map.test)
[ -z "$out" ] || fail "fail.map.test got an address ($out) that state.db does not hold"
grep -q "guest_dns_map_store_failed .*name=fail.map.test" "$dir/broker.err" ||
	fail "the failed write was not logged"
[ "$(rows)" = 3 ] || fail "state.db holds $(rows) mappings after the failed write, want 3"
[ "$(fetch_at a.map.test "$addr_a")" = 200 ] || fail "after the failed write, a.map.test at $addr_a"
[ "$(resolve c.map.test)" = "$addr_c" ] || fail "after the failed write c.map.test resolves elsewhere"
sqlite3 "$dir/state/state.db" "DROP TRIGGER dns_map_test_fail" || fail "drop the trigger"
addr_f=$(resolve fail.map.test)
[[ $addr_f == 198.1[89].* && $addr_f != "$addr_a" && $addr_f != "$addr_b" && $addr_f != "$addr_c" ]] ||
	fail "fail.map.test -> '$addr_f' once it can be stored"
[ "$(rows)" = 4 ] || fail "state.db holds $(rows) mappings, want 4"
pass "a failed write: SERVFAIL, nothing kept in memory, the map reloaded; the name maps once it can be stored"

# --- the rows go with the sandbox ---------------------------------------------------------
ctl sandbox rm "$sbx" >/dev/null || fail "sandbox rm"
[ "$(rows)" = 0 ] || fail "after sandbox rm state.db holds $(rows) mappings"
pass "sandbox rm deletes its mappings"
echo "ALL OK ($npass checks)"
