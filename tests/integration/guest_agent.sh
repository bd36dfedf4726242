#!/bin/bash
# miosa-init alone, in a network namespace with only lo, against
# tests/integration/fake_broker (a real wire-protocol peer) over the
# Unix-socket transport.  Needs root for `ip netns`; CI runs as root, so
# anything missing is a failure, never a skip.
#
# Usage: guest_agent.sh MIOSA_INIT FAKE_BROKER
set -euo pipefail

AGENT=$1
FAKE=$2

source "$(dirname "$0")/failfast.sh"

dump_logs() {
	dump_tail 40 "$work"/agent.log "$work"/broker*.out "$work"/broker*.err
}

require_root "ip netns"
require_tools ip openssl curl getent python3 sha256sum

# Short path: PATH_1024 must fit in sun_path (108 bytes).
work=$(mktemp -d /tmp/miosa-guest.XXXXXX)
ns=miosa-guest-$$
agent_pid=
broker_pid=
host_resolv_before=$(sha256sum /etc/resolv.conf 2>/dev/null || true)

cleanup() {
	kill_all $agent_pid $broker_pid
	netns_del "$ns"
	rm -rf "$work"
}
trap cleanup EXIT
# meson stops a test that runs over its timeout with SIGTERM: clean up then too
trap "exit 1" INT TERM

netns_add "$ns"
in_ns() { ip netns exec "$ns" "$@"; }

sandbox_ca "$work"
placeholder=miosa-tok-$(openssl rand -hex 16)

start_broker() { # start_broker N: output in broker-N.out
	"$FAKE" --uds "$work/v" --ca-pem "$work/ca.pem" --placeholder "$placeholder" \
		</dev/null >"$work/broker-$1.out" 2>"$work/broker-$1.err" &
	broker_pid=$!
	wait_for 10 "fake broker $1 to listen" grep -q '^LISTENING' "$work/broker-$1.out"
}

scenario_done() { grep -q '^SCENARIO' "$work/broker-$1.out"; }

check_scenario() { # check_scenario N
	wait_for 60 "the exec scenario of broker $1" scenario_done "$1"
	if grep -q '^FAIL' "$work/broker-$1.out" || ! grep -q '^SCENARIO OK' "$work/broker-$1.out"; then
		fail "broker $1 scenario: $(grep '^FAIL' "$work/broker-$1.out" | head -5)"
	fi
	pass "broker $1: $(grep -c '^PASS' "$work/broker-$1.out") wire checks (ping, exec env/stdio/exit/timeout/start_error, CA variables, EnvUpdate, DNS from exec)"
}

# --- Start ---------------------------------------------------------------------------
start_broker 1
# not through in_ns: `ip netns exec` execs the agent in place, so AGENT_PID is its pid
agent_start "$ns" "$work/v" "$work/run" "$work/agent.log" --log-level debug
agent_pid=$AGENT_PID
check_scenario 1

grep -qx 'nameserver 127.0.0.1' "/etc/netns/$ns/resolv.conf" ||
	fail "resolv.conf not pointed at the stub: $(cat "/etc/netns/$ns/resolv.conf")"
[ "$(sha256sum /etc/resolv.conf 2>/dev/null || true)" = "$host_resolv_before" ] ||
	fail "--no-init changed the machine's /etc/resolv.conf"
cmp -s "$work/run/ca.pem" "$work/ca.pem" || fail "runtime dir ca.pem differs from the CA"
pass "resolv.conf -> 127.0.0.1 (the given file only), DIR/ca.pem is the sandbox CA"

# --- DNS through the stub ----------------------------------------------------------------
out=$(in_ns getent hosts api.example.test) || fail "getent hosts api.example.test failed"
[ "$(echo "$out" | awk '{print $1}')" = 198.18.0.5 ] || fail "getent hosts: '$out'"
pass "getent hosts api.example.test -> 198.18.0.5"

in_ns python3 - <<'EOF' || fail "DNS stub wire checks"
import socket, struct

def query(name, qid=0x4242, qtype=1, raw=None, tcp=False):
    q = raw if raw is not None else struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + \
        b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + \
        struct.pack(">HH", qtype, 1)
    if tcp:
        s = socket.create_connection(("127.0.0.1", 53), timeout=5)
        s.sendall(struct.pack(">H", len(q)) + q)
        buf = b""
        while len(buf) < 2 or len(buf) < 2 + struct.unpack(">H", buf[:2])[0]:
            chunk = s.recv(65536)
            assert chunk, "TCP stream closed early"
            buf += chunk
        s.close()
        return buf[2:]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(q, ("127.0.0.1", 53))
    a = s.recv(65536)
    s.close()
    return a

def flags(a): return struct.unpack(">H", a[2:4])[0]
def ancount(a): return struct.unpack(">H", a[6:8])[0]

a = query("api.example.test")
assert a[:2] == b"\x42\x42" and flags(a) & 0xf == 0 and ancount(a) == 1, a
assert a.endswith(bytes([198, 18, 0, 5])), a
# a compression pointer in a query: FORMERR from the stub, nothing forwarded
bad = struct.pack(">HHHHHH", 0x1111, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack(">HH", 1, 1)
a = query(None, raw=bad)
assert a[:2] == b"\x11\x11" and flags(a) & 0x8000 and flags(a) & 0xf == 1, ("FORMERR", a)
# a label over 63 bytes
a = query("x" * 64 + ".test", qid=0x2222)
assert flags(a) & 0xf == 1, ("label > 63", a)
# the broker's answer has another ID: SERVFAIL, never relayed
a = query("wrong-id.test", qid=0x3333)
assert a[:2] == b"\x33\x33" and flags(a) & 0xf == 2, ("SERVFAIL", a)
# over 512 bytes on UDP: TC set, no answers; the same over TCP is whole
a = query("big.test", qid=0x4444)
assert flags(a) & 0x0200 and ancount(a) == 0, ("TC", a)
a = query("big.test", qid=0x4545, tcp=True)
assert a[:2] == b"\x45\x45" and ancount(a) == 40, ("TCP", len(a))
# AAAA: no data (the fake broker's choice), still relayed
a = query("api.example.test", qid=0x5555, qtype=28)
assert flags(a) & 0xf == 0 and ancount(a) == 0, a
# TCP: a query arriving a byte at a time; then, pipelined in one write, a
# malformed query (FORMERR, connection kept) and two valid ones, in order
import time
def framed(q): return struct.pack(">H", len(q)) + q
def plain(qid, name): return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + \
    b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
class Messages:
    """Length-prefixed messages off a TCP stream, any number per recv."""
    def __init__(self, sock):
        self.sock, self.buf = sock, b""
    def next(self):
        while len(self.buf) < 2 or len(self.buf) < 2 + struct.unpack(">H", self.buf[:2])[0]:
            c = self.sock.recv(65536)
            assert c, "TCP stream closed early"
            self.buf += c
        n = 2 + struct.unpack(">H", self.buf[:2])[0]
        m, self.buf = self.buf[2:n], self.buf[n:]
        return m
s = socket.create_connection(("127.0.0.1", 53), timeout=5)
msgs = Messages(s)
m = framed(plain(0x0101, "api.example.test"))
for i in range(len(m)):
    s.sendall(m[i:i + 1])
    time.sleep(0.002)
assert msgs.next()[:2] == b"\x01\x01"
s.sendall(framed(struct.pack(">H", 0x0202) + bad[2:]) +
          framed(plain(0x0303, "api.example.test")) + framed(plain(0x0404, "b.example.test")))
a = msgs.next()
assert a[:2] == b"\x02\x02" and flags(a) & 0xf == 1, ("TCP FORMERR", a)
assert msgs.next()[:2] == b"\x03\x03"
assert msgs.next()[:2] == b"\x04\x04"
s.close()
# A burst beyond the in-flight cap (64): 200 queries sent at once (what fits
# the stub's default UDP receive buffer) all get
# their answer (queued for a slot), none a SERVFAIL.
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.settimeout(10)
for i in range(200):
    s.sendto(plain(0x6000 + i, "burst%d.example.test" % i), ("127.0.0.1", 53))
got = {}
while len(got) < 200:
    a = s.recv(65536)
    got[struct.unpack(">H", a[:2])[0]] = a
assert all(flags(a) & 0xf == 0 and ancount(a) == 1 for a in got.values()), \
    sorted(flags(a) & 0xf for a in got.values())
s.close()
print("dns ok")
EOF
pass "DNS stub: FORMERR for pointer/long label, SERVFAIL on ID mismatch, TC over UDP + TCP fallback, TCP split and pipelined queries, a 200-query burst all answered"

# --- TCP capture ---------------------------------------------------------------------------
body=$(in_ns curl -sS --max-time 10 http://api.example.test/hello) || fail "curl http://api.example.test/"
[ "$body" = "fake-broker egress dst=198.18.0.5:80" ] || fail "curl body '$body'"
body=$(in_ns curl -sS --max-time 10 http://api.example.test:8080/) || fail "curl :8080"
[ "$body" = "fake-broker egress dst=198.18.0.5:8080" ] || fail "curl :8080 body '$body'"
pass "curl http://api.example.test (ports 80 and HelloAck's 8080) carried through the broker"

in_ns python3 - <<'EOF' || fail "egress splice checks"
import errno, socket
# 1 MiB each way with half-close: back-pressure and shutdown propagation
s = socket.create_connection(("198.18.0.5", 9000), timeout=10)
data = bytes(range(256)) * 4096
s.sendall(data)
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
assert got == data, ("echo", len(got))
s.close()
# bytes the broker sent with its OpenResult reach the client first
s = socket.create_connection(("198.18.0.5", 2525), timeout=10)
banner = b""
while not banner.endswith(b"\r\n"):
    banner += s.recv(100)
assert banner == b"220 fake-broker banner\r\n", banner
s.sendall(b"EHLO x\r\n")
assert s.recv(100) == b"EHLO x\r\n"
s.close()
# refused by the broker: reset, not a clean close (possibly before
# connect() returns, on loopback)
try:
    s = socket.create_connection(("198.18.0.5", 8443), timeout=10)
    r = s.recv(10)
    raise AssertionError("refused port gave %r, not a reset" % r)
except ConnectionResetError:
    pass
# anything outside 198.18.0.0/15: no route at all
try:
    socket.create_connection(("192.0.2.1", 80), timeout=5)
    raise AssertionError("192.0.2.1 reachable")
except OSError as e:
    assert e.errno == errno.ENETUNREACH, e
print("egress ok")
EOF
msg=$(in_ns bash -c 'exec 3<>/dev/tcp/192.0.2.1/80' 2>&1) && fail "192.0.2.1:80 connected"
case "$msg" in *"Network is unreachable"*) ;; *) fail "192.0.2.1: '$msg'" ;; esac
pass "echo 1 MiB with half-close, banner with OpenResult, refused -> RST, 192.0.2.1 -> Network is unreachable"

# --- Memory: idle and with 200 open connections --------------------------------------------
rss() { awk '/^VmRSS/ {print $2}' "/proc/$agent_pid/status"; }
rss_idle=$(rss)
cat >"$work/conns200.py" <<'EOF'
import socket, sys
conns = []
for i in range(200):
    s = socket.create_connection(("198.18.0.5", 9000), timeout=10)
    s.sendall(b"ping %d\n" % i)
    conns.append(s)
for i, s in enumerate(conns):
    want = b"ping %d\n" % i
    got = b""
    while len(got) < len(want):
        got += s.recv(100)
    assert got == want, (i, got)
for line in open("/proc/%s/status" % sys.argv[1]):
    if line.startswith("VmRSS"):
        print(line.split()[1])
for s in conns:
    s.close()
EOF
rss_200=$(in_ns python3 "$work/conns200.py" "$agent_pid") || fail "200 concurrent connections"
pass "200 concurrent connections echoed; agent RSS idle ${rss_idle} kB, with 200 open ${rss_200} kB"
echo "MEASURE rss_idle_kb=$rss_idle rss_200_connections_kb=$rss_200"

# --- Broker restart --------------------------------------------------------------------------
kill -KILL "$broker_pid"
wait "$broker_pid" 2>/dev/null || true
broker_pid=
kill -0 "$agent_pid" || fail "the agent died with the broker"
# while it is gone: DNS fails fast (SERVFAIL), a connection is reset
in_ns getent hosts api.example.test >/dev/null && fail "name resolved with no broker"
out=$(in_ns curl -sS --max-time 10 http://api.example.test/ 2>&1) && fail "curl worked with no broker"
in_ns python3 - <<'EOF' || fail "a connection with no broker was not reset"
import socket
# on loopback the reset can beat connect() itself back to the caller
try:
    s = socket.create_connection(("198.18.0.5", 9000), timeout=10)
    r = s.recv(10)
    raise AssertionError("no broker, yet %r" % r)
except ConnectionResetError:
    print("reset")
EOF
pass "broker gone: agent alive, DNS fails fast ($out), TCP reset"
start_broker 2
check_scenario 2
body=$(in_ns curl -sS --max-time 10 http://api.example.test/again) || fail "curl after restart"
[ "$body" = "fake-broker egress dst=198.18.0.5:80" ] || fail "curl after restart: '$body'"
grep -q 'reconnecting\|cannot reach the broker' "$work/agent.log" || fail "no reconnect logged"
pass "agent reconnected to a restarted broker; exec and curl work again"

# --- Logs and exit -------------------------------------------------------------------------------
if grep -q -e "$placeholder" -e miosa-tok-0123456789abcdef "$work/agent.log"; then
	fail "a placeholder value appears in the agent's log"
fi
if grep -q 'ERROR: AddressSanitizer\|runtime error:\|LeakSanitizer' "$work/agent.log"; then
	fail "sanitizer report in the agent's log"
fi
kill -TERM "$agent_pid"
wait_for 10 "the agent to exit on SIGTERM" bash -c "! kill -0 $agent_pid 2>/dev/null"
wait "$agent_pid" && status=0 || status=$?
agent_pid=
[ "$status" = 0 ] || fail "agent exit status $status after SIGTERM"
if grep -q 'ERROR: AddressSanitizer\|runtime error:\|LeakSanitizer' "$work/agent.log"; then
	fail "sanitizer report in the agent's log"
fi
pass "no placeholder in the agent log; SIGTERM -> exit 0"
echo "guest_agent: all checks passed"
