#!/bin/bash
# The broker's guest side with the real agent: miosa-broker + miosactl on the
# host, miosa-init (--no-init) in an `ip netns` namespace with only lo, over
# the hybrid-vsock Unix socket ($dir/vm.sock_1024).  Exec with the
# placeholder env, exit status, DNS from the sandbox's synthetic map,
# EnvUpdate after a new secret, rotation keeping the placeholder, a TCP
# relay to a local server through --connect-to, a refused real address, and
# a broker restart the agent survives.
#
# Needs root (ip netns) and the agent: CI runs as root and builds the agent,
# so a missing one is a failure, never a skip.
set -euo pipefail

BROKER=${MIOSA_BROKER:?MIOSA_BROKER not set}
CTL=${MIOSACTL:?MIOSACTL not set}
AGENT=${MIOSA_INIT:-${MIOSA_BUILD_ROOT:?MIOSA_BUILD_ROOT not set}/guest/miosa-init}

source "$(dirname "$0")/failfast.sh"

dump_logs() {
	dump_tail 40 "$dir"/broker-*.err "$dir"/agent.log
}

require_root "ip netns"
require_agent
require_tools ip curl getent python3 stat

# Short path: PATH_1024 must fit in sun_path (108 bytes).
dir=$(mktemp -d /tmp/miosa-gw.XXXXXX)
ns=miosa-gw-$$
broker_pid=
agent_pid=
http_pid=
secret_value=sk-live-$(rand_hex 12)

cleanup() {
	kill_all $agent_pid $broker_pid $http_pid
	netns_del "$ns"
	rm -rf "$dir"
}
trap cleanup EXIT
trap "exit 1" INT TERM

export MIOSA_SOCKET=$dir/state/control.sock
in_ns() { ip netns exec "$ns" "$@"; }

# A local HTTP server in the root namespace: the --connect-to target.
mkdir -p "$dir/www"
echo "hello from the local test server $$" >"$dir/www/index.html"
http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$dir/www" && exec python3 -m http.server --bind 127.0.0.1 "$http_port") \
	>"$dir/http.log" 2>&1 &
http_pid=$!
wait_for 20 "the local HTTP server" curl -fsS -o /dev/null "http://127.0.0.1:$http_port/"

start_broker() { # start_broker N
	"$BROKER" --state-dir "$dir/state" --master-key "$dir/master.key" --log-level debug \
		--connect-to "local.test:80:127.0.0.1:$http_port" \
		</dev/null >"$dir/broker-$1.out" 2>"$dir/broker-$1.err" &
	broker_pid=$!
	wait_for 20 "broker $1 to be ready" grep -q broker_ready "$dir/broker-$1.err"
}

stop_broker() {
	kill -TERM "$broker_pid"
	wait "$broker_pid" || fail "broker exited with status $? on SIGTERM"
	broker_pid=
}

# --- Broker, sandbox, secret -----------------------------------------------------------
start_broker 1
sbx=$(ctl sandbox create --vsock-uds "$dir/vm.sock")
[ -S "$dir/vm.sock_1024" ] || fail "no listener at $dir/vm.sock_1024 after sandbox create"
[ "$(stat -c %a "$dir/vm.sock_1024")" = 600 ] || fail "vm.sock_1024 mode $(stat -c %a "$dir/vm.sock_1024")"
pass "sandbox create --vsock-uds: the broker listens on PATH_1024, mode 0600"

printf %s "$secret_value" | ctl secrets set "$sbx" openai --expose-as OPENAI_API_KEY >/dev/null
placeholder=$(ctl --json secrets ls "$sbx" | python3 -c \
	'import json,sys; print([b["placeholder"] for b in json.load(sys.stdin)["bindings"] if b["expose_as_env"]=="OPENAI_API_KEY"][0])')
[[ $placeholder =~ ^miosa-tok-[0-9a-f]{32}$ ]] || fail "placeholder '$placeholder'"

out=$(gexec -- true 2>&1) && fail "exec without an agent succeeded"
echo "$out" | grep -q guest_not_connected || fail "exec without an agent: '$out'"
pass "exec before the agent connects: guest_not_connected, exit 1"

# --- The wire, spoken by hand: malformed frames, DNS, unknown egress destination --------
python3 - "$dir/vm.sock_1024" <<'PY' || fail "raw wire checks"
import socket, struct, sys
path = sys.argv[1]

def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(path)
    return s

def read_all(s):
    buf = b""
    while True:
        c = s.recv(65536)
        if not c:
            return buf
        buf += c

def frame(payload): return struct.pack(">I", len(payload)) + payload
def field(num, data): return bytes([num << 3 | 2, len(data)]) + data

# oversize length prefix: closed without an answer
s = conn(); s.sendall(struct.pack(">I", 65537)); assert read_all(s) == b"", "oversize"
# not a GuestOpen: closed without an answer
s = conn(); s.sendall(frame(b"\xff\xff\xff")); assert read_all(s) == b"", "garbage"
# a GuestOpen with no kind set: closed
s = conn(); s.sendall(frame(b"")); assert read_all(s) == b"", "empty GuestOpen"
# DNS: an A query for raw.example.org gets a 198.18/15 answer, then the stream closes
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x03raw\x07example\x03org\x00" + \
    struct.pack(">HH", 1, 1)
s = conn(); s.sendall(frame(field(3, field(1, q)))); a = read_all(s)
n = struct.unpack(">I", a[:4])[0]
assert len(a) == 4 + n, "one frame, then close"
pkt = a[4:]
assert pkt[0] == 0x0a, "DnsAnswer.packet"
pkt = pkt[2:] if pkt[1] < 0x80 else pkt[3:]
assert pkt[:2] == b"\x12\x34" and pkt[-4] == 198 and pkt[-3] in (18, 19), pkt
# egress to a synthetic address nobody resolved: REFUSED unknown-destination
eg = field(1, bytes([198, 18, 200, 77])) + bytes([0x10, 80])
s = conn(); s.sendall(frame(field(2, eg))); a = read_all(s)
assert a[4:6] == b"\x08\x02" and b"unknown-destination" in a, a
print("raw wire ok")
PY
grep -q guest_frame_rejected "$dir/broker-1.err" || fail "oversize frame not logged"
grep -q guest_open_rejected "$dir/broker-1.err" || fail "bad GuestOpen not logged"
pass "raw wire: oversize/garbage/empty GuestOpen closed and logged; DNS answered; unknown destination refused"

# --- The agent in a namespace with only lo --------------------------------------------
netns_add "$ns"
# not through in_ns: `ip netns exec` execs the agent in place, so $! is its pid
agent_start "$ns" "$dir/vm.sock" "$dir/run" "$dir/agent.log" --log-level debug
agent_pid=$AGENT_PID
wait_for 30 "the agent's HelloAck" grep -q guest_hello_ack "$dir/broker-1.err"
wait_for 30 "exec through the agent" exec_works
pass "agent connected (Hello -> HelloAck) and exec works"

# --- Exec: placeholder env, never the value; exit status; stdin; stderr -----------------
out=$(gexec -- sh -c 'echo $OPENAI_API_KEY') || fail "exec echo failed"
[ "$out" = "$placeholder" ] || fail "guest env OPENAI_API_KEY='$out', want '$placeholder'"
out=$(gexec -- env) || fail "exec env failed"
echo "$out" | grep -qF "$secret_value" && fail "the secret value reached the guest env"
pass "exec: OPENAI_API_KEY is the placeholder (matches secrets ls), never the value"

set +e
gexec -- sh -c 'exit 7'
rc=$?
set -e
[ "$rc" = 7 ] || fail "exec 'exit 7' gave status $rc"
out=$(echo "in-$$" | ctl exec "$sbx" -- sh -c 'cat; echo to-stderr >&2' 2>"$dir/stderr")
[ "$out" = "in-$$" ] || fail "stdin round trip: '$out'"
grep -qx to-stderr "$dir/stderr" || fail "stderr not relayed: $(cat "$dir/stderr")"
set +e
gexec --timeout 1 -- sleep 30 2>/dev/null
rc=$?
set -e
[ "$rc" = 124 ] || fail "exec timeout gave status $rc, want 124"
pass "exec: exit 7 -> 7, stdin forwarded, stderr relayed, --timeout -> 124"

# --- DNS: synthetic addresses from the sandbox's map -------------------------------------
out=$(in_ns getent hosts api.example.com) || fail "getent hosts api.example.com failed"
addr=$(echo "$out" | awk '{print $1}')
[[ $addr =~ ^198\.1[89]\. ]] || fail "api.example.com -> '$addr', want 198.18/15"
pass "ip netns exec: getent hosts api.example.com -> $addr (198.18/15)"

# --- Rotation keeps the placeholder; a new secret arrives by EnvUpdate -------------------
printf %s "$secret_value-rotated" | ctl secrets rotate "$sbx" openai >/dev/null
out=$(gexec -- sh -c 'echo $OPENAI_API_KEY')
[ "$out" = "$placeholder" ] || fail "after rotate: '$out'"
printf %s "other-value-$$" | ctl secrets set "$sbx" other --expose-as OTHER_API_KEY >/dev/null
other=$(ctl --json secrets ls "$sbx" | python3 -c \
	'import json,sys; print([b["placeholder"] for b in json.load(sys.stdin)["bindings"] if b["expose_as_env"]=="OTHER_API_KEY"][0])')
wait_for 10 "the EnvUpdate" grep -q guest_env_update "$dir/broker-1.err"
out=$(gexec -- sh -c 'echo $OTHER_API_KEY')
[ "$out" = "$other" ] || fail "new secret in a later exec: '$out', want '$other'"
pass "rotate keeps the placeholder; a secret set after connect reaches later execs (EnvUpdate)"

# --- TCP: --connect-to reaches the local server; a real address fails fast ---------------
out=$(in_ns curl -sS --max-time 10 http://local.test/) || fail "curl http://local.test/ failed"
[ "$out" = "hello from the local test server $$" ] || fail "curl http://local.test/: '$out'"
pass "curl http://local.test/ in the namespace -> the local server via --connect-to"

start=$SECONDS
if in_ns curl -sS --max-time 10 -o /dev/null http://192.0.2.1/ 2>"$dir/curl.err"; then
	fail "curl http://192.0.2.1/ succeeded"
fi
[ $((SECONDS - start)) -le 3 ] || fail "curl http://192.0.2.1/ took $((SECONDS - start)) s"
pass "curl http://192.0.2.1/ fails at once ($(head -c 80 "$dir/curl.err"))"

# --- Broker restart: the agent reconnects, exec works again ------------------------------
stop_broker
[ -e "$dir/vm.sock_1024" ] && fail "vm.sock_1024 left behind after shutdown"
start_broker 2
[ -S "$dir/vm.sock_1024" ] || fail "no listener re-created at start"
wait_for 60 "the agent to reconnect" grep -q guest_hello_ack "$dir/broker-2.err"
wait_for 30 "exec after the restart" exec_works
out=$(gexec -- sh -c 'echo $OPENAI_API_KEY $OTHER_API_KEY')
[ "$out" = "$placeholder $other" ] || fail "env after restart: '$out'"
kill -0 "$agent_pid" || fail "the agent exited"
out=$(in_ns curl -sS --max-time 10 http://local.test/) || fail "curl after the broker restart failed"
[ "$out" = "hello from the local test server $$" ] || fail "curl after the restart: '$out'"
pass "broker restart: listener re-created, agent reconnected, exec works with the same env, the next curl works"

# --- A broker killed outright leaves a stale socket: the next one replaces it ------------
kill -KILL "$broker_pid"
wait "$broker_pid" 2>/dev/null || true
broker_pid=
[ -S "$dir/vm.sock_1024" ] || fail "expected a stale vm.sock_1024 after SIGKILL"
start_broker 3
grep -q guest_socket_stale_removed "$dir/broker-3.err" || fail "stale socket not reported"
wait_for 60 "the agent to reconnect to broker 3" grep -q guest_hello_ack "$dir/broker-3.err"
wait_for 30 "exec after the stale-socket restart" exec_works
pass "after SIGKILL the stale PATH_1024 is replaced and the agent reconnects"

# --- Sandbox deletion removes the listener -----------------------------------------------
ctl sandbox rm "$sbx"
wait_for 10 "the listener to go" test ! -e "$dir/vm.sock_1024"
pass "sandbox rm removes PATH_1024"

grep -qF "$secret_value" "$dir"/broker-*.err "$dir/agent.log" && fail "a secret value was logged"
echo "ALL OK"
