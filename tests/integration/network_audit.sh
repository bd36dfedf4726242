#!/usr/bin/env bash
# Network policy and audit log through the control API (docs/api.md,
# docs/cli.md): a real miosa-broker, miosactl and curl.  Policy round trips
# (allow/deny/lockdown/observe, pending), audit ls with filters, export
# (JSON lines, CSV, content types), verify (intact and tampered), the
# streaming tail route (protocol, validation, scoping, cap), the live tail
# of real requests and tenant isolation over TCP.  Most rows come from
# audit_seed ($1) through the audit module's writer; the live ones from the
# broker's data path: the agent (--no-init) in an `ip netns` namespace runs
# curl through `miosactl exec` against a local plain-HTTP upstream
# (python3 http.server, reached through --connect-to).  Needs root and the
# agent: a missing one is a failure, never a skip.
. "$(dirname "$0")/lib.sh"

SEED=${1:?usage: network_audit.sh AUDIT_SEED}
AGENT=${MIOSA_INIT:-${MIOSA_BUILD_ROOT:?MIOSA_BUILD_ROOT not set}/guest/miosa-init}
[ "$(id -u)" = 0 ] || { echo "FAIL: needs root (ip netns); CI runs as root"; exit 1; }
[ -x "$AGENT" ] || { echo "FAIL: miosa-init not found at $AGENT"; exit 1; }
unset MIOSA_URL MIOSA_API_KEY MIOSA_TENANT
NS=miosa-na-$$
AGENT_PID=
TAIL_PIDS=
HOLD_PID=
na_exit() {
	local rc=$?
	kill_all $TAIL_PIDS $AGENT_PID $HOLD_PID
	netns_del "$NS"
	(exit "$rc")
	it_cleanup
}
trap na_exit EXIT

# A plain-HTTP upstream serving a file whose size the test knows.
mkdir -p "$T/www"
head -c 4321 /dev/zero | tr '\0' 'a' >"$T/www/known.txt"
UP_PORT=$(free_port)
python3 -m http.server --bind 127.0.0.1 --directory "$T/www" "$UP_PORT" \
	</dev/null >"$T/upstream.log" 2>&1 &
SERVE_PID=$!
wait_until 10 "the upstream" curl -sf "http://127.0.0.1:$UP_PORT/known.txt" ||
	fail "upstream" "python3 http.server did not start: $(cat "$T/upstream.log")"

# An upstream that answers each request only once the test writes a line to
# its FIFO: a request whose completion the test decides when to commit.
mkfifo "$T/hold.fifo"
HOLD_PORT=$(free_port)
python3 - "$HOLD_PORT" "$T/hold.fifo" <<'PY' >"$T/hold.log" 2>&1 &
import socket, sys
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    conn, _ = srv.accept()
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    with open(sys.argv[2]) as fifo:
        fifo.readline()
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nheld")
    conn.close()
PY
HOLD_PID=$!

PORT=$(free_port)
broker_start --connect-to "files.test:80:127.0.0.1:$UP_PORT" \
	--connect-to "hold.test:80:127.0.0.1:$HOLD_PORT"
export MIOSA_SOCKET=$SOCK
ok "broker up"

ctl sandbox create
SBX=$CTL_OUT
check_match "sandbox created" '^sbx_' "$SBX"

# ---- network ----------------------------------------------------------
ctl_ok "network status" network status "$SBX"
check_contains "fresh sandbox is in observe mode" "mode: observe" "$CTL_OUT"
ctl_ok "network pending" network pending "$SBX"
check_eq "pending is empty" "no pending hosts" "$CTL_OUT"
ctl_ok "allow api.openai.com" network allow "$SBX" api.openai.com
check_eq "allow says allowed" "allowed api.openai.com" "$CTL_OUT"
ctl_ok "allow again" network allow "$SBX" api.openai.com
check_eq "second allow is idempotent" "already allowed api.openai.com" "$CTL_OUT"
ctl_ok "allow a wildcard on a port" network allow "$SBX" '*.npmjs.com' --port 443
ctl_fails "bad pattern is refused with its quote" 1 "*foo.com" network allow "$SBX" '*foo.com'
ctl_fails "bad port is a usage error" 2 "--port" network allow "$SBX" a.com --port 70000
ctl --json network status "$SBX"
check_eq "allowlist has two entries" "2" "$(printf '%s' "$CTL_OUT" | jget 'allowlist.#')"
ctl_ok "lockdown" network lockdown "$SBX"
check_contains "lockdown reports enforce" "mode: enforce" "$CTL_OUT"
api GET "/v1/sandboxes/$SBX/network"
expect "GET network over curl" 200 -
check_eq "mode is enforce" "enforce" "$(printf '%s' "$BODY" | jget mode)"
ctl_ok "observe" network observe "$SBX"
check_contains "observe keeps the list" "2 entries" "$CTL_OUT"
ctl_ok "deny" network deny "$SBX" api.openai.com
ctl_fails "deny of an absent entry is not_found" 1 "not_found" network deny "$SBX" api.openai.com
api POST "/v1/sandboxes/$SBX/network/allow" '{"pattern": "a..b"}'
expect "curl: bad pattern is 400 invalid_field" 400 invalid_field
check_contains "message quotes the pattern" "a..b" "$BODY"
api POST "/v1/sandboxes/$SBX/network/allow" '{"pattern": "pypi.org"}'
expect "curl: allow is 201" 201 -
api POST "/v1/sandboxes/$SBX/network/allow" '{"pattern": "pypi.org"}'
expect "curl: allow again is 200" 200 -

# ---- audit: empty log ----------------------------------------------------
ctl_ok "audit ls on an empty log" audit ls
check_eq "no rows" "" "$CTL_OUT"
# Every worker verifies (more calls than workers) before rows arrive, so
# the checks below read through connections that already read this table.
for i in 1 2 3 4 5 6 7 8; do
	ctl_ok "verify on an empty log (call $i)" audit verify
	check_contains "empty chain is OK (call $i)" "OK: 0 rows" "$CTL_OUT"
done
ctl_fails "bad --since gives the API's message" 1 "must be a duration" audit ls --since 5x
ctl_fails "unknown action" 1 "allow, deny or error" audit ls --action maybe

# ---- audit: rows -----------------------------------------------------------
"$SEED" "$STATE_DIR" \
	"default,$SBX,api.openai.com,443,https,200,allow,openai_key,alice@example.com,7200" \
	"default,$SBX,registry.npmjs.org,443,https,200,allow,-,alice@example.com,60" \
	"default,$SBX,evil.example,443,https,403,deny,-,bob,30" \
	"default,$SBX,db.internal,5432,tcp,0,deny,-,-,10" \
	"b,sbx_bbbbbbbbbbbbbbbbbbbbbbbb,api.openai.com,443,https,200,allow,-,carol,5" \
	>"$T/ids" || fail "audit_seed"
check_eq "five rows seeded" "5" "$(wc -l <"$T/ids" | tr -d ' ')"
# A request written fail closed (status unknown), then completed as the
# data path does once the response was relayed: sizes the test knows.
"$SEED" "$STATE_DIR" \
	"default,$SBX,uploads.example,443,https,0,allow,openai_key,-,1,201:1234:56789:4321" \
	>"$T/done_id" || fail "audit_seed with a completion"
DONE_ID=$(cat "$T/done_id")
for i in 1 2 3 4 5 6 7 8; do
	ctl_ok "verify the seeded chain (call $i)" audit verify
	check_contains "six rows and a completion verified (call $i)" "OK: 7 rows" "$CTL_OUT"
done
ctl --json audit ls --host uploads.example
check_eq "ls --json: merged status" "201" "$(printf '%s' "$CTL_OUT" | jget 'rows.0.status')"
check_eq "ls --json: bytes_up" "1234" "$(printf '%s' "$CTL_OUT" | jget 'rows.0.bytes_up')"
check_eq "ls --json: bytes_down" "56789" "$(printf '%s' "$CTL_OUT" | jget 'rows.0.bytes_down')"
check_eq "ls --json: duration_us" "4321" "$(printf '%s' "$CTL_OUT" | jget 'rows.0.duration_us')"
check_eq "ls --json: completion_id follows the row" "$((DONE_ID + 1))" \
	"$(printf '%s' "$CTL_OUT" | jget 'rows.0.completion_id')"
ctl_ok "status filter on the merged status" audit ls --status 201
check_contains "201 row shown with its completed status" "[audit] allow uploads.example HTTP 201 secrets=openai_key" "$CTL_OUT"
ctl_ok "status 0 no longer matches the completed row" audit ls --status 0 --host uploads.example
check_eq "no row with status 0" "" "$CTL_OUT"
ctl_ok "audit ls" audit ls --sandbox "$SBX"
check_eq "five rows of the sandbox" "5" "$(printf '%s\n' "$CTL_OUT" | grep -c '\[audit\]')"
check_contains "seeds' line format" "[audit] allow api.openai.com HTTP 200 secrets=openai_key" "$CTL_OUT"
check_contains "tcp row" "[audit] deny db.internal:5432 TCP" "$CTL_OUT"
ctl_ok "filter by action" audit ls --action deny
check_eq "two denials" "2" "$(printf '%s\n' "$CTL_OUT" | grep -c '\[audit\] deny')"
ctl_ok "filter by since" audit ls --since 5m --sandbox "$SBX"
check_eq "four rows in the last 5m" "4" "$(printf '%s\n' "$CTL_OUT" | grep -c '\[audit\]')"
ctl_ok "external_user_id is strict equality" audit ls --external-user-id alice@
check_eq "alice@ matches nothing" "" "$CTL_OUT"
ctl_ok "external_user_id exact" audit ls --external-user-id alice@example.com
check_eq "alice has two rows" "2" "$(printf '%s\n' "$CTL_OUT" | grep -c '\[audit\]')"
ctl_ok "status filter" audit ls --status 403
check_contains "deny row: status, rule fired, reason" "[audit] deny evil.example HTTP 403 rule=deny:host-not-allowed reason=host-not-allowed" "$CTL_OUT"
ctl audit ls --limit 2
check_contains "paging hint" "--cursor" "$CTL_ERR"
CUR=$(printf '%s' "$CTL_ERR" | sed -n 's/.*--cursor \([0-9]*\).*/\1/p')
ctl_ok "next page" audit ls --limit 2 --cursor "$CUR"
check_eq "rest of the rows" "2" "$(printf '%s\n' "$CTL_OUT" | grep -c '\[audit\]')"

ctl_ok "export jsonl" audit export --format jsonl
check_eq "jsonl has every row, completed ones merged" "6" "$(printf '%s\n' "$CTL_OUT" | grep -c '^{')"
ctl_ok "export csv" audit export --format csv --sandbox "$SBX"
check_eq "csv: header + 5 rows" "6" "$(printf '%s\n' "$CTL_OUT" | wc -l | tr -d ' ')"
api GET "/v1/audit/export?format=csv"
expect "curl export" 200 -
check_match "csv content type" '^text/csv' "$(header_value Content-Type)"
api GET "/v1/audit/export?format=jsonl"
check_eq "jsonl content type" "application/x-ndjson" "$(header_value Content-Type)"
api GET "/v1/audit/export?format=xml"
expect "unknown format" 400 invalid_field

# ---- tenant isolation over TCP ---------------------------------------------
ctl tenant create b
ctl apikey create --tenant b k
KEY_B=$(printf '%s\n' "$CTL_OUT" | head -n 1)
tapi "$KEY_B" GET "/v1/audit"
expect "tenant b lists its audit" 200 -
check_eq "b sees only its row" "1" "$(printf '%s' "$BODY" | jget 'rows.#')"
tapi "$KEY_B" GET "/v1/audit?tenant_id=default"
expect "b cannot name another tenant" 404 not_found
tapi "$KEY_B" GET "/v1/audit/verify"
expect "verify is admin only" 404 not_found
tapi "$KEY_B" GET "/v1/sandboxes/$SBX/network"
expect "b cannot see default's network" 404 not_found

# ---- tail (streaming) -------------------------------------------------------
# GET /v1/audit/tail streams from the broker's own audit writer, so rows
# written by audit_seed (another process) never reach it: egress_https.sh
# tails real requests live.  Here: the route's protocol, validation,
# tenant scoping and cap, each waited on with a deadline.
tail_started() { [ "$(grep -c 'path=/v1/audit/tail status=200' "$T/broker.log")" -ge "$1" ]; }
curl -sS -N --unix-socket "$SOCK" -D "$T/tail.head" -o "$T/tail.body" \
	"http://localhost/v1/audit/tail?sandbox=$SBX&action=allow" 2>/dev/null &
TAIL_PID=$!
if wait_until 10 "the tail's head" grep -qi '^Transfer-Encoding: chunked' "$T/tail.head"; then
	ok "tail answers 200 with a chunked stream"
else
	fail "tail answers 200 with a chunked stream" "$(cat "$T/tail.head" 2>/dev/null)"
fi
check_match "tail status line" '^HTTP/1.1 200' "$(head -n 1 "$T/tail.head")"
check_eq "tail content type" "application/x-ndjson" \
	"$(grep -i '^Content-Type:' "$T/tail.head" | cut -d' ' -f2- | tr -d '\r')"
kill "$TAIL_PID" 2>/dev/null || true
wait "$TAIL_PID" 2>/dev/null || true
api GET "/v1/audit/tail?status=abc"
expect "tail: bad status filter is 400 before any streaming" 400 invalid_field
api GET "/v1/audit/tail?limit=5"
expect "tail: list-only parameters are refused" 400 "invalid_field|bad_request"
tapi "$KEY_B" GET "/v1/audit/tail?tenant_id=default"
expect "tail: tenant b cannot name another tenant" 404 not_found
tapi "" GET "/v1/audit/tail"
expect "tail over TCP needs a key" 401 unauthorized
# The cap: 16 tails stream, the 17th is refused with 503.
PIDS=
for i in $(seq 1 16); do
	curl -sS -N --unix-socket "$SOCK" -o /dev/null "http://localhost/v1/audit/tail" 2>/dev/null &
	PIDS="$PIDS $!"
done
if wait_until 10 "16 tails streaming" tail_started 17; then
	ok "16 tails stream at once"
else
	fail "16 tails stream at once" "$(grep -c 'path=/v1/audit/tail' "$T/broker.log")"
fi
api GET "/v1/audit/tail"
expect "the 17th tail is refused" 503 unavailable
check_contains "503 says why" "too many audit tails" "$BODY"
for p in $PIDS; do kill "$p" 2>/dev/null || true; done
for p in $PIDS; do wait "$p" 2>/dev/null || true; done
# Closed tails free their slots (the broker notices the clients leave).
tail_ok() {
	curl -sS -N --max-time 1 --unix-socket "$SOCK" -o /dev/null -D "$T/tail2.head" \
		"http://localhost/v1/audit/tail" 2>/dev/null
	grep -q '^HTTP/1.1 200' "$T/tail2.head"
}
if wait_until 10 "a tail slot to free" tail_ok; then
	ok "tails whose clients left free their slots"
else
	fail "tails whose clients left free their slots" "$(head -n 1 "$T/tail2.head")"
fi
ctl_fails "miosactl audit tail gives the API's message" 1 "must be an HTTP status" \
	audit tail --lines 0 --status abc

# after=ID closes the gap between `audit ls` and the tail: the broker
# subscribes, then replays the rows committed after ID (oldest first), then
# streams.  The window is provoked by rows committed after the list was read
# and before the tail was asked for; each is shown once.
ctl --json audit ls --limit 1
OLD=$(printf '%s' "$CTL_OUT" | jget 'rows.0.id')
check_match "the newest row before the gap" '^[0-9]+$' "$OLD"
"$SEED" "$STATE_DIR" \
	"default,$SBX,gap.example,443,https,200,allow,-,-,1" \
	"default,$SBX,gap.example,443,https,201,allow,-,-,1" \
	"default,$SBX,other.example,443,https,200,allow,-,-,1" \
	>"$T/gap_ids" || fail "audit_seed for the gap"
GAP1=$(sed -n 1p "$T/gap_ids")
GAP2=$(sed -n 2p "$T/gap_ids")
# The lines of a tail's body that are rows, by id, in order.
body_ids() { sed -n 's/^{"id":\([0-9]*\),.*/\1/p' "$1" | tr '\n' ' '; }
tails_stop() {
	kill_all $TAIL_PIDS
	for p in $TAIL_PIDS; do wait "$p" 2>/dev/null || true; done
	TAIL_PIDS=
}
gap_tail() {
	: >"$T/$1.body"
	curl -sS -N --unix-socket "$SOCK" -o "$T/$1.body" "http://localhost/v1/audit/tail?$2" \
		2>/dev/null &
	TAIL_PIDS="$TAIL_PIDS $!"
}
gap_tail gap "host=gap.example&after=$OLD"
gap_tail gap1 "host=gap.example&after=$GAP1"
gap_lines() { [ "$(grep -c '^{' "$T/$1.body")" -ge "$2" ]; }
if wait_until 10 "the replay of the gap" gap_lines gap 2 && wait_until 10 "the replay after $GAP1" gap_lines gap1 1; then
	ok "after=ID replays the rows committed after ID"
else
	fail "after=ID replays the rows committed after ID" "$(cat "$T/gap.body" "$T/gap1.body")"
fi
check_eq "replay: the gap's rows once each, oldest first" "$GAP1 $GAP2 " "$(body_ids "$T/gap.body")"
check_eq "replay: only the rows after the id" "$GAP2 " "$(body_ids "$T/gap1.body")"
check_contains "replay: a row as the list shows it" '"status":201' "$(sed -n 2p "$T/gap.body")"
tails_stop
api GET "/v1/audit/tail?after=-1"
expect "tail: after must be a row id" 400 invalid_field
check_contains "after's 400 quotes it" "'-1'" "$BODY"
# miosactl passes after=<the newest row it printed>: against a stand-in
# control socket that records the tail's request and answers a notice (the
# broker's line when the gap was over its cap) and a row.
STUB_SOCK=$T/stub.sock
python3 - "$STUB_SOCK" "$T/stub.req" <<'PY' >"$T/stub.log" 2>&1 &
import json, os, socket, sys
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
srv.listen(4)
def head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode()
row = {"id": 7, "time_us": 1790000000000000, "host": "gap.example", "status": 200}
conn, _ = srv.accept()
body = json.dumps({"rows": [row]}).encode()
head(conn)
conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
             b"Connection: close\r\n\r\n%s" % (len(body), body))
conn.close()
conn, _ = srv.accept()
open(sys.argv[2], "w").write(head(conn) + "\n")
lines = (b'{"notice":"tail_gap","message":"more than 1000 rows were committed after row 7"}\n'
         b'{"id":8,"host":"gap.example","status":200}\n')
conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
             b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
             b"%x\r\n%s\r\n0\r\n\r\n" % (len(lines), lines))
conn.close()
PY
TAIL_PIDS="$TAIL_PIDS $!"
wait_until 10 "the stand-in socket" test -S "$STUB_SOCK" || fail "stand-in" "$(cat "$T/stub.log")"
rc=0
MIOSA_SOCKET=$STUB_SOCK "$MIOSACTL" --json audit tail --lines 1 --host gap.example \
	>"$T/stub.out" 2>"$T/stub.err" </dev/null || rc=$?
check_eq "miosactl tail exits 1 when the stream ends" "1" "$rc"
check_match "miosactl asks for the rows after the newest it printed" \
	'^GET /v1/audit/tail\?.*after=7( |&)' "$(cat "$T/stub.req" 2>/dev/null)"
check_eq "miosactl prints the list's row, then the replayed one" "78" \
	"$(sed -n 's/.*"id":\([0-9]*\).*/\1/p' "$T/stub.out" | tr -d '\n')"
check_contains "miosactl shows the broker's notice on stderr" \
	"audit tail: more than 1000 rows were committed after row 7" "$(cat "$T/stub.err")"
tails_stop

# ---- live tail of real requests ----------------------------------------------
# The tail streams from the broker's audit writer: started before the
# requests (subscribed once the broker logged its route), it prints each
# one live with the status of its completion, not "HTTP -".
ctl sandbox create --vsock-uds "$T/vm.sock"
LIVE=$CTL_OUT
check_match "sandbox with a hybrid-vsock path" '^sbx_' "$LIVE"
netns_add "$NS"
agent_start "$NS" "$T/vm.sock" "$T/run" "$T/agent.log"
exec_works() { [ "$("$MIOSACTL" exec "$LIVE" -- echo ready 2>/dev/null </dev/null)" = ready ]; }
if wait_until 30 "exec through the agent" exec_works; then
	ok "agent connected"
else
	fail "agent connected" "$(tail -n 20 "$T/agent.log")"
fi
tails_before=$(grep -c 'path=/v1/audit/tail status=200' "$T/broker.log")
tails_up_by() { [ "$(grep -c 'path=/v1/audit/tail status=200' "$T/broker.log")" -ge $((tails_before + $1)) ]; }
tails_up() { tails_up_by 2; }
"$MIOSACTL" audit tail --lines 0 --sandbox "$LIVE" >"$T/live.out" 2>"$T/live.err" &
TAIL_PIDS="$TAIL_PIDS $!"
"$MIOSACTL" --json audit tail --lines 0 --sandbox "$LIVE" >"$T/live.json" 2>"$T/live.jerr" &
TAIL_PIDS="$TAIL_PIDS $!"
if wait_until 10 "both tails to subscribe" tails_up; then
	ok "two tails subscribed before the requests"
else
	fail "two tails subscribed before the requests" "$(cat "$T/live.err" "$T/live.jerr")"
fi
for i in 1 2; do
	"$MIOSACTL" exec "$LIVE" -- curl -sS --max-time 15 -o /dev/null -w '%{http_code}\n' \
		http://files.test/known.txt </dev/null >"$T/curl.$i" 2>&1
	check_eq "request $i through the broker" "200" "$(cat "$T/curl.$i")"
done
live_lines() { [ "$(grep -c '\[audit\] allow files.test HTTP 200 secrets=none' "$T/live.out")" -ge 2 ]; }
if wait_until 10 "the tail to print both requests" live_lines; then
	ok "audit tail printed both requests live with HTTP 200"
else
	fail "audit tail printed both requests live with HTTP 200" "$(cat "$T/live.out" "$T/live.err")"
fi
check_eq "tail printed those two rows only" "2" "$(grep -c '\[audit\]' "$T/live.out")"
json_lines() { [ "$(grep -c '"host":"files.test"' "$T/live.json")" -ge 2 ]; }
if wait_until 10 "the --json tail" json_lines; then
	ok "audit tail --json printed both rows"
else
	fail "audit tail --json printed both rows" "$(cat "$T/live.json" "$T/live.jerr")"
fi
check_eq "--json tail line: merged status" "200" "$(head -n 1 "$T/live.json" | jget status)"
check_eq "--json tail line: bytes_down" "4321" "$(head -n 1 "$T/live.json" | jget bytes_down)"
tails_stop
# A tail asking for the rows after 0 gets both requests replayed, then the
# next one streamed: each once.
gap_tail live_after "sandbox=$LIVE&after=0"
if wait_until 10 "the replay of both requests" gap_lines live_after 2; then
	ok "after=0 replays the sandbox's requests"
else
	fail "after=0 replays the sandbox's requests" "$(cat "$T/live_after.body")"
fi
"$MIOSACTL" exec "$LIVE" -- curl -sS --max-time 15 -o /dev/null -w '%{http_code}\n' \
	http://files.test/known.txt </dev/null >"$T/curl.3" 2>&1
check_eq "request 3 through the broker" "200" "$(cat "$T/curl.3")"
if wait_until 10 "request 3 on the stream" gap_lines live_after 3; then
	ok "the request after the replay is streamed"
else
	fail "the request after the replay is streamed" "$(cat "$T/live_after.body")"
fi
live_ids=$(body_ids "$T/live_after.body")
check_eq "replayed and streamed rows: three ids, each once" "3" \
	"$(printf '%s' "$live_ids" | tr ' ' '\n' | grep -c .)"
check_eq "no id twice" "3" "$(printf '%s' "$live_ids" | tr ' ' '\n' | grep . | sort -u | wc -l | tr -d ' ')"
tails_stop
# A row in both the replay and the subscription: a request held by its
# upstream is committed (without its completion) before the tail is asked
# for, so the replay sends it; the broker publishes it to the subscription
# when its completion commits (or its 3 s hold ends): the stream skips it.
# The writer holds a row for its completion only while some tail is open:
# one is, before the request.
tails_before=$(grep -c 'path=/v1/audit/tail status=200' "$T/broker.log")
gap_tail keeper "host=keeper.example"
wait_until 10 "the keeper tail" tails_up_by 1 || fail "keeper tail" "$(cat "$T/keeper.body")"
"$MIOSACTL" exec "$LIVE" -- curl -sS --max-time 30 -o /dev/null -w '%{http_code}\n' \
	http://hold.test/held </dev/null >"$T/curl.held" 2>&1 &
HELD_EXEC=$!
held_row() {
	ctl --json audit ls --sandbox "$LIVE" --host hold.test
	[ "$(printf '%s' "$CTL_OUT" | jget 'rows.#')" = 1 ]
}
wait_until 10 "the held request's row" held_row || fail "held row" "$(cat "$T/hold.log")"
HELD=$(printf '%s' "$CTL_OUT" | jget 'rows.0.id')
gap_tail held "sandbox=$LIVE&after=$((HELD - 1))"
if wait_until 10 "the held row's replay" gap_lines held 1; then
	ok "the held request is replayed"
else
	fail "the held request is replayed" "$(cat "$T/held.body")"
fi
check_contains "replayed before its completion committed" '"completion_id":null' \
	"$(head -n 1 "$T/held.body")"
timeout 10 sh -c "echo go >'$T/hold.fifo'" || fail "release the held request" "$(cat "$T/hold.log")"
wait "$HELD_EXEC" || true
check_eq "the held request completes" "200" "$(cat "$T/curl.held")"
# A later request marks the stream's progress past the held row's publish.
"$MIOSACTL" exec "$LIVE" -- curl -sS --max-time 15 -o /dev/null -w '%{http_code}\n' \
	http://files.test/known.txt </dev/null >"$T/curl.4" 2>&1
check_eq "request 4 through the broker" "200" "$(cat "$T/curl.4")"
if wait_until 10 "request 4 on the stream" gap_lines held 2; then
	ok "the stream goes on after the held row"
else
	fail "the stream goes on after the held row" "$(cat "$T/held.body")"
fi
check_match "the held row once, then request 4" "^$HELD [0-9]+ \$" "$(body_ids "$T/held.body")"
tails_stop
# The same requests through the list: one merged row each, sizes known.
ctl --json audit ls --sandbox "$LIVE" --limit 1
check_eq "ls --json: status 200" "200" "$(printf '%s' "$CTL_OUT" | jget 'rows.0.status')"
check_eq "ls --json: bytes_up (a GET has no body)" "0" "$(printf '%s' "$CTL_OUT" | jget 'rows.0.bytes_up')"
check_eq "ls --json: bytes_down is the file's size" "4321" "$(printf '%s' "$CTL_OUT" | jget 'rows.0.bytes_down')"
dur=$(printf '%s' "$CTL_OUT" | jget 'rows.0.duration_us')
check_match "ls --json: a duration" '^[1-9][0-9]*$' "$dur"
check_eq "ls --json: path" "/known.txt" "$(printf '%s' "$CTL_OUT" | jget 'rows.0.path')"
kill -KILL "$AGENT_PID" 2>/dev/null || true
wait "$AGENT_PID" 2>/dev/null || true
AGENT_PID=

# ---- verify, then tamper ------------------------------------------------------
for i in 1 2 3 4 5 6 7 8; do
	ctl_ok "verify intact chain (call $i)" audit verify
	check_contains "fourteen rows and six completions verified (call $i)" "OK: 20 rows" "$CTL_OUT"
done
if command -v sqlite3 >/dev/null; then
	# Tampered next to the live broker, whose workers have already
	# verified the chain: each must see the edit on its next read (a
	# connection left in a transaction would still answer its old
	# snapshot).  More calls than workers, so every worker answers once.
	sqlite3 "$STATE_DIR/state.db" "UPDATE audit_rows SET host = 'tampered.example' WHERE id = 3" ||
		fail "tamper" "sqlite3 failed"
	for i in 1 2 3 4 5 6 7 8; do
		ctl audit verify
		check_eq "tampered chain exits 1 (call $i)" "1" "$CTL_RC"
		check_contains "first bad id is 3 (call $i)" "first bad row id 3" "$CTL_OUT"
	done
else
	fail "tamper" "sqlite3 is not installed"
fi

broker_stop || fail "broker stops cleanly"
it_finish
