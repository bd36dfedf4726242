#!/bin/bash
# Audit durability (issue 6, B5): a broker killed with SIGKILL loses no
# audit row of a request whose response was relayed.
#
# The real agent (--no-init, in an `ip netns` namespace, unix transport)
# carries 200 concurrent curl requests (HTTPS, the sandbox CA, a bound
# placeholder in a header) to a local threaded HTTPS upstream through the
# broker.  Each request has its own query marker (/d/I?n=I).  Once a first
# share of them has a complete response the broker gets SIGKILL while the
# rest are in flight.  Every curl that got a complete 200 whose body is the
# upstream's echo of its own request line counts as "got a response".  Then
# the broker restarts on the same state directory and the test asserts:
# every such request has its audit row (rows of requests that never got a
# response may or may not exist), `miosactl audit verify` passes, and the
# secret value is nowhere in state.db (+WAL).  Last, a restart with
# --audit-max-rows 50 prunes the oldest rows and verify starts from the
# anchor.  Waits are deadline loops.
#
# Needs root (ip netns) and the agent: a missing one is a failure, never a skip.
set -euo pipefail

BROKER=${MIOSA_BROKER:?MIOSA_BROKER not set}
CTL=${MIOSACTL:?MIOSACTL not set}
AGENT=${MIOSA_INIT:-${MIOSA_BUILD_ROOT:?MIOSA_BUILD_ROOT not set}/guest/miosa-init}
N=${AD_N:-200}  # concurrent requests (AD_N: for debugging)
KILL_AFTER=${AD_KILL_AFTER:-40}  # requests finished before SIGKILL

source "$(dirname "$0")/failfast.sh"
WAIT_FOR_POLL=0.05

dump_logs() {
	dump_tail 30 "$dir"/broker.err "$dir"/agent.log "$dir"/upstream.log
	if [ -d "$dir/res" ]; then
		echo "--- curl results (http code, exit status): count"
		cat "$dir"/res/*[0-9] 2>/dev/null | sort | uniq -c || true
	fi
}

require_root "ip netns"
require_agent
require_tools ip openssl python3 sqlite3 curl

dir=$(mktemp -d /tmp/miosa-ad.XXXXXX)
ns=miosa-ad-$$
broker_pid=
agent_pid=
up_pid=
load_pid=
secret_value=sk-live-$(rand_hex 12)

cleanup() {
	kill_all $load_pid $agent_pid $broker_pid $up_pid
	# The curls of the load run in the namespace: none may outlive the test.
	ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
	netns_del "$ns"
	[ -n "${AD_KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
trap "exit 1" INT TERM

export MIOSA_SOCKET=$dir/state/control.sock
broker_ready() { grep -q broker_ready "$dir/broker.err"; }

start_broker() { # start_broker [EXTRA FLAGS...]
	: >"$dir/broker.err"
	"$BROKER" --state-dir "$dir/state" --master-key "$dir/master.key" --log-level "${AD_LOG_LEVEL:-info}" \
		--connect-to "api.openai.test:443:127.0.0.1:$port" \
		--upstream-ca "$dir/upstream-ca.pem" --worker-threads 8 "$@" \
		</dev/null >"$dir/broker.out" 2>>"$dir/broker.err" &
	broker_pid=$!
	wait_for 30 "the broker" broker_ready
}

# --- A test CA, the upstream's certificate, a threaded HTTPS echo upstream ------------
upstream_cert "$dir" api.openai.test || fail "openssl could not make the test certificates"

# Concurrent (one thread per connection; echo_upstream serves one at a time):
# answers 200 with the request line as the body.
python3 - "$dir/server.pem" "$dir/server.key" "$dir/upstream.port" >"$dir/upstream.log" 2>&1 <<'PY' &
import http.server, os, ssl, sys
cert, key, portfile = sys.argv[1:4]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = (self.requestline + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
srv = S(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
tmp = portfile + ".tmp"
with open(tmp, "w") as f: f.write(str(srv.server_address[1]))
os.rename(tmp, portfile)
srv.serve_forever()
PY
up_pid=$!
wait_for 20 "the HTTPS upstream" test -s "$dir/upstream.port"
port=$(cat "$dir/upstream.port")

start_broker
sbx=$(ctl sandbox create --vsock-uds "$dir/vm.sock")
printf %s "$secret_value" |
	ctl secrets set "$sbx" openai_key --expose-as OPENAI_API_KEY --host api.openai.test >/dev/null

netns_add "$ns"
agent_start "$ns" "$dir/vm.sock" "$dir/run" "$dir/agent.log" --log-level "${AD_LOG_LEVEL:-info}"
agent_pid=$AGENT_PID
wait_for 30 "exec through the agent" exec_works
# What a process of the guest gets: the placeholder and the sandbox CA bundle.
placeholder=$(gexec -- printenv OPENAI_API_KEY)
bundle=$(gexec -- printenv CURL_CA_BUNDLE)
[[ $placeholder =~ ^miosa-tok-[0-9a-f]{32}$ ]] || fail "placeholder '$placeholder'"
[ -s "$bundle" ] || fail "sandbox CA bundle '$bundle'"
out=$(ip netns exec "$ns" curl -sS --max-time 20 --cacert "$bundle" \
	"https://api.openai.test/warm?n=0" -H "Authorization: Bearer $placeholder") ||
	fail "a first request through the agent"
[ "$out" = "GET /warm?n=0 HTTP/1.1" ] || fail "first request: '$out'"
# The load pins that answer (--resolve): the test is about the audit rows
# of HTTP requests, not 400 concurrent lookups through the DNS stub.
addr=$(ip netns exec "$ns" getent ahostsv4 api.openai.test | awk 'NR == 1 {print $1}')
[[ $addr =~ ^198\.1[89]\. ]] || fail "api.openai.test -> '$addr'"
pass "broker, sandbox, secret, agent, HTTPS upstream; a first request through the agent"

# --- 200 concurrent requests, SIGKILL while they run ---------------------------------
# One shell in the namespace starts every curl; each writes res/I (http code,
# exit status) only when it has finished, then the body is compared.
mkdir -p "$dir/res" "$dir/body"
ip netns exec "$ns" bash -c '
	n=$1 bundle=$2 ph=$3 d=$4 addr=$5
	for i in $(seq 1 "$n"); do
		( rc=0
		  code=$(curl -sS --max-time 30 --cacert "$bundle" -o "$d/body/$i" -w "%{http_code}" \
			--resolve "api.openai.test:443:$addr" \
			"https://api.openai.test/d/$i?n=$i" -H "Authorization: Bearer $ph" 2>/dev/null) || rc=$?
		  echo "$code $rc" >"$d/res/$i.tmp" && mv "$d/res/$i.tmp" "$d/res/$i" ) &
	done
	wait' load "$N" "$bundle" "$placeholder" "$dir" "$addr" </dev/null >/dev/null 2>&1 &
load_pid=$!
finished() { local f=("$dir"/res/*[0-9]); [ -e "${f[0]}" ] && echo "${#f[@]}" || echo 0; }
enough_finished() { [ "$(finished)" -ge "$KILL_AFTER" ]; }
all_finished() { [ "$(finished)" = "$N" ]; }
wait_for 120 "$KILL_AFTER finished requests" enough_finished
at_kill=$(finished)
kill -KILL "$broker_pid"
wait "$broker_pid" 2>/dev/null || true
broker_pid=
# Every curl ends: with a response, an error, or its --max-time.
wait_for 60 "every curl to end" all_finished
wait "$load_pid" || true
load_pid=

responded=()
for i in $(seq 1 "$N"); do
	read -r code rc <"$dir/res/$i"
	if [ "$code" = 200 ] && [ "$rc" = 0 ] &&
	   [ "$(cat "$dir/body/$i" 2>/dev/null)" = "GET /d/$i?n=$i HTTP/1.1" ]; then
		responded+=("$i")
	fi
done
[ "$at_kill" -lt "$N" ] || fail "all $N requests had finished before the SIGKILL: nothing was in flight"
[ "${#responded[@]}" -ge "$KILL_AFTER" ] || fail "only ${#responded[@]} complete responses (>= $KILL_AFTER finished before the kill)"
pass "SIGKILL with $((N - at_kill)) of $N requests in flight; ${#responded[@]} got a complete response"

# --- Restart on the same state; every relayed response has its row -------------------
start_broker
db=$dir/state/state.db
q() { sqlite3 -readonly -cmd '.timeout 5000' "file:$db?mode=ro" "$1"; }
# With no broker running a read-only connection cannot run WAL recovery
# itself (seen once as "database is locked" right after a SIGTERM): read
# with an ordinary connection then.
q_stopped() { sqlite3 -cmd '.timeout 5000' "$db" "$1"; }
# One query: the markers that have a row (paths are /d/I?n=I, not redacted).
q "SELECT path FROM audit_rows WHERE sandbox_id = '$sbx' AND host = 'api.openai.test'
	AND action = 'allow' AND secrets_swapped = 'openai_key' AND path GLOB '/d/*'" \
	>"$dir/rows" || fail "reading audit_rows"
missing=0
for i in "${responded[@]}"; do
	grep -qxF "/d/$i?n=$i" "$dir/rows" || { missing=$((missing + 1)); echo "no audit row for request $i"; }
done
[ "$missing" = 0 ] || fail "$missing of ${#responded[@]} requests with a response have no audit row"
rows=$(wc -l <"$dir/rows")
[ "$(sort "$dir/rows" | uniq -d | wc -l)" = 0 ] || fail "a request has two rows"
pass "each of the ${#responded[@]} responded requests has its audit row ($rows rows of $N requests)"

# Completions are submitted without waiting (audit_complete), so a SIGKILL may lose
# the newest ones: counted, not required.  Each one stored completes a row of the log.
q "SELECT r.path FROM audit_completions c JOIN audit_rows r ON r.id = c.request_id
	WHERE r.sandbox_id = '$sbx' AND r.path GLOB '/d/*' AND c.status = 200" \
	>"$dir/completed" || fail "reading audit_completions"
completed=0
for i in "${responded[@]}"; do
	grep -qxF "/d/$i?n=$i" "$dir/completed" && completed=$((completed + 1))
done
[ "$(q "SELECT count(*) FROM audit_completions c
	WHERE NOT EXISTS (SELECT 1 FROM audit_rows r WHERE r.id = c.request_id)")" = 0 ] ||
	fail "a completion without its request row"
[ "$(sort "$dir/completed" | uniq -d | wc -l)" = 0 ] || fail "a request has two completions"
pass "$completed of ${#responded[@]} responded requests have their completion (status 200); none is orphaned"

out=$(ctl audit verify) || fail "miosactl audit verify: $out"
case "$out" in "audit chain OK: "*) ;; *) fail "audit verify: '$out'" ;; esac
pass "miosactl audit verify after the crash: $out"

if grep -aqF "$secret_value" "$dir"/state/state.db*; then
	fail "the secret value is in state.db"
fi
grep -aqF "$placeholder" "$dir"/state/state.db* || fail "the placeholder binding is not in state.db (checked the wrong file?)"
pass "no secret value in state.db (+WAL)"

# --- Retention on the same log: --audit-max-rows prunes, verify starts at the anchor ---
kill -TERM "$broker_pid"
wait "$broker_pid" || fail "broker exited with status $? on SIGTERM"
broker_pid=
# Rows and completions are links of one chain (one id sequence): pruning takes a
# prefix of it, the 50 newest rows stay, and so do the links after the oldest of them.
last_link=$(q_stopped "SELECT max(id) FROM (SELECT id FROM audit_rows UNION ALL SELECT id FROM audit_completions)")
first_kept=$(q_stopped "SELECT id FROM audit_rows ORDER BY id DESC LIMIT 1 OFFSET 49")
start_broker --audit-max-rows 50
pruned_to_50() { [ "$(q "SELECT count(*) FROM audit_rows")" = 50 ]; }
wait_for 30 "the pruner to keep 50 rows" pruned_to_50
[ "$(q "SELECT min(id) FROM audit_rows")" = "$first_kept" ] || fail "pruning did not take the oldest rows"
anchor=$(q "SELECT id FROM audit_anchor")
[ "$anchor" -lt "$first_kept" ] || fail "the anchor $anchor is not below the oldest kept row $first_kept"
[ "$(q "SELECT count(*) FROM audit_completions WHERE id <= $anchor")" = 0 ] ||
	fail "a completion at or below the anchor survived"
# Between the anchor and the oldest kept row only completions of pruned rows remain.
[ "$(q "SELECT count(*) FROM audit_completions WHERE id < $first_kept AND request_id > $anchor")" = 0 ] ||
	fail "a kept link below the oldest kept row is not a completion of a pruned row"
links=$((last_link - anchor))
[ "$(q "SELECT count(*) FROM (SELECT id FROM audit_rows UNION ALL SELECT id FROM audit_completions)")" = "$links" ] ||
	fail "the links left are not the ids after the anchor"
out=$(ctl audit verify) || fail "miosactl audit verify after pruning: $out"
case "$out" in
"audit chain OK: $links rows, head "*"
$anchor older rows pruned by retention; the chain was checked from their anchor") ;;
*) fail "audit verify after pruning: '$out'" ;;
esac
grep -q "audit_pruned rows=$anchor" "$dir/broker.err" || fail "no audit_pruned log line"
pass "--audit-max-rows 50: the oldest $anchor links (rows and completions) pruned, $links left, the chain verifies from the anchor"

kill -TERM "$broker_pid"
wait "$broker_pid" || fail "broker exited with status $? on SIGTERM"
broker_pid=
echo "ALL OK ($npass checks)"
