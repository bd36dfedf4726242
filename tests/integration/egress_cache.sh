#!/bin/bash
# The data path's caches never serve a stale answer (docs/performance.md):
# every verdict worker caches the sandbox row and policy snapshot, and
# observed hosts are counted in memory and written in batches.  Each step
# first warms every worker (more requests than --worker-threads), changes
# something through the control API, then IMMEDIATELY sends a burst of
# requests (new curl connections and keep-alive ones) that must all see
# the change.  The broker's own observed-host batches are a minute apart
# (--observed-flush-ms 60000), so what the control API shows of them is
# what its flush-before-read wrote:
#   - rotate: every request carries the new value (M5);
#   - lockdown: a host never seen is 403 at once, the observed host passes
#     (the lockdown took every observation recorded so far, M12);
#   - allow / deny / observe: take effect on the very next request;
#   - network status counts every allowed request made before it;
#   - a clean shutdown (SIGTERM) writes the observations still in memory.
# Needs root (ip netns) and the agent: a missing one is a failure, never a skip.
set -euo pipefail

BROKER=${MIOSA_BROKER:?MIOSA_BROKER not set}
CTL=${MIOSACTL:?MIOSACTL not set}
ECHO=${ECHO_UPSTREAM:?ECHO_UPSTREAM not set}
AGENT=${MIOSA_INIT:-${MIOSA_BUILD_ROOT:?MIOSA_BUILD_ROOT not set}/guest/miosa-init}
WORKERS=4
BURST=12 # > WORKERS: every worker thread has served (and cached) the sandbox

source "$(dirname "$0")/failfast.sh"

dump_logs() {
	dump_tail 30 "$dir"/broker.err "$dir"/agent.log
}
require_root "ip netns"
require_agent
require_tools ip openssl python3 sqlite3

dir=$(mktemp -d /tmp/miosa-ec.XXXXXX)
ns=miosa-ec-$$
broker_pid= agent_pid= echo_pid=
v1=sk-one-$(rand_hex 12)
v2=sk-two-$(rand_hex 12)

cleanup() {
	kill_all $agent_pid $broker_pid $echo_pid
	netns_del "$ns"
	rm -rf "$dir"
}
trap cleanup EXIT
trap "exit 1" INT TERM

export MIOSA_SOCKET=$dir/state/control.sock
# codes HOST: BURST requests on one keep-alive connection, then BURST more on
# a new connection each; prints one status code per line.
codes() {
	gexec -- sh -c "curl -s -o /dev/null -w '%{http_code}\n' --max-time 15 'https://$1/k[1-$BURST]'
		for i in \$(seq $BURST); do
			curl -s -o /dev/null -w '%{http_code}\n' --max-time 15 https://$1/c\$i
		done"
}
# all_codes WHAT WANT HOST: every request of the burst answered WANT.
all_codes() {
	local out n
	out=$(codes "$3") || fail "$1: curl failed: $out"
	n=$(printf '%s\n' "$out" | grep -cx "$2" || true)
	[ "$n" = $((2 * BURST)) ] || fail "$1: $n of $((2 * BURST)) requests answered $2: $(echo $out)"
}
observed_count() { # observed_count HOST: the count network status shows
	ctl --json network status "$sbx" | python3 -c 'import json, sys
d = json.load(sys.stdin)
print(sum(h["count"] for h in d["observed"] if h["host"] == sys.argv[1]))' "$1"
}

upstream_cert "$dir" api.cache.test new.cache.test late.cache.test || fail "openssl"
"$ECHO" "$dir/server.pem" "$dir/server.key" "$dir/echo.port" </dev/null >"$dir/echo.log" 2>&1 &
echo_pid=$!
wait_for 20 "the echo upstream" test -s "$dir/echo.port"
port=$(cat "$dir/echo.port")

"$BROKER" --state-dir "$dir/state" --master-key "$dir/master.key" --log-level info \
	--worker-threads "$WORKERS" --observed-flush-ms 60000 \
	--connect-to "api.cache.test:443:127.0.0.1:$port" \
	--connect-to "new.cache.test:443:127.0.0.1:$port" \
	--connect-to "late.cache.test:443:127.0.0.1:$port" \
	--upstream-ca "$dir/upstream-ca.pem" </dev/null >"$dir/broker.out" 2>"$dir/broker.err" &
broker_pid=$!
wait_for 20 "the broker" grep -q broker_ready "$dir/broker.err"
sbx=$(ctl sandbox create --vsock-uds "$dir/vm.sock")
printf %s "$v1" | ctl secrets set "$sbx" k --expose-as API_KEY --host api.cache.test >/dev/null
netns_add "$ns"
agent_start "$ns" "$dir/vm.sock" "$dir/run" "$dir/agent.log"
agent_pid=$AGENT_PID
wait_for 30 "exec through the agent" exec_works
pass "broker ($WORKERS workers), sandbox, secret bound to api.cache.test, agent connected"

# --- rotation: the very next requests carry the new value ------------------------------
swap_burst() { # swap_burst VALUE: every request of a keep-alive burst carried VALUE
	local out n
	out=$(gexec -- sh -c "curl -sS --max-time 15 'https://api.cache.test/s[1-$BURST]' -H \"Authorization: Bearer \$API_KEY\"") ||
		fail "swap burst: $out"
	n=$(printf '%s\n' "$out" | grep -cF "Authorization: Bearer $1" || true)
	[ "$n" = "$BURST" ] || fail "$n of $BURST requests carried the expected value"
}
swap_burst "$v1"
printf %s "$v2" | ctl secrets rotate "$sbx" k >/dev/null
swap_burst "$v2"
pass "rotate, then at once $BURST requests: every one carries the new value (M5)"

# --- observed list and lockdown ------------------------------------------------------------
all_codes "observe mode" 200 api.cache.test
# Allowed requests to api.cache.test so far: two swap bursts and this one.
want=$((2 * BURST + 2 * BURST))
got=$(observed_count api.cache.test)
[ "$got" = "$want" ] || fail "network status counts $got requests to api.cache.test, $want were made"
pass "network status right after the requests counts every one of them ($want)"

ctl network lockdown "$sbx" >/dev/null || fail "lockdown"
all_codes "right after lockdown, a host never seen" 403 new.cache.test
all_codes "right after lockdown, the observed host" 200 api.cache.test
pass "lockdown takes effect on the very next request on every worker; the observed host stays allowed"

ctl network allow "$sbx" new.cache.test >/dev/null || fail "allow"
all_codes "right after allow" 200 new.cache.test
ctl network deny "$sbx" new.cache.test >/dev/null || fail "deny"
all_codes "right after deny" 403 new.cache.test
ctl network observe "$sbx" >/dev/null || fail "observe"
all_codes "right after observe" 200 late.cache.test
pass "allow, deny, observe: each takes effect on the very next request"

# --- a clean shutdown writes what is still in memory -----------------------------------------
all_codes "last burst" 200 late.cache.test
kill -TERM "$broker_pid"
wait "$broker_pid" || fail "broker exited with status $? on SIGTERM"
broker_pid=
q() { sqlite3 -readonly "file:$dir/state/state.db?mode=ro" "$1"; }
n=$(q "SELECT coalesce(sum(count), 0) FROM policy_observed WHERE sandbox_id='$sbx' AND host='late.cache.test'")
[ "$n" = $((4 * BURST)) ] || fail "after SIGTERM, state.db counts $n requests to late.cache.test, $((4 * BURST)) were made"
n=$(q "SELECT coalesce(sum(count), 0) FROM policy_observed WHERE sandbox_id='$sbx' AND host='new.cache.test'")
[ "$n" = $((2 * BURST)) ] || fail "after SIGTERM, state.db counts $n allowed requests to new.cache.test, $((2 * BURST)) were allowed"
pass "SIGTERM: every observation is in state.db"
echo "ALL OK ($npass checks)"
