#!/bin/bash
# Real clients through the whole egress path: the real agent (--no-init, in
# an `ip netns` namespace) runs them through `miosactl exec`, so they hold
# only the placeholder and trust the sandbox CA through the CA-bundle
# variables; the real broker terminates TLS, swaps, audits and re-encrypts
# to a local HTTPS upstream (echo_upstream, reached through --connect-to,
# verified with --upstream-ca).
#
# Checks: rotation between two requests on ONE keep-alive connection
# (python requests.Session: one pool connection, the same guest socket, the
# same upstream connection, the second request carries the new value);
# pipelined requests (three requests in one TLS write, answered in order);
# chunked request bodies (curl -T with Transfer-Encoding: chunked, a python
# generator body); a 10 MiB upload and a 10 MiB download intact (SHA-256);
# Python requests and Node fetch with unchanged code (the placeholder env
# var; the real value is seen only upstream).
#
# Needs root (ip netns): a missing tool is a failure, never a skip.
. "$(dirname "$0")/lib.sh"

ECHO=${ECHO_UPSTREAM:?ECHO_UPSTREAM not set}
AGENT=${MIOSA_INIT:?MIOSA_INIT not set}

[ "$(id -u)" = 0 ] || { echo "FAIL - needs root (ip netns); CI runs as root"; exit 1; }
for tool in ip openssl python3 node curl sha256sum; do
	command -v "$tool" >/dev/null || { echo "FAIL - $tool not installed"; exit 1; }
done
python3 -c 'import requests' || { echo "FAIL - python3-requests not installed"; exit 1; }

ns=miosa-ec-$$
ns2=miosa-ec2-$$
agent_pid=
agent2_pid=
echo_pid=
secret_value=sk-live-$(rand_hex 12)
rotated_value=sk-rot-$(rand_hex 12)

ec_cleanup() {
	local rc=$?
	if [ "$rc" -ne 0 ] || [ "$CHECK_FAIL" -gt 0 ]; then
		for f in "$T"/agent.log "$T"/echo.log; do
			[ -f "$f" ] && { echo "--- $f (last 30 lines)"; tail -n 30 "$f"; }
		done
	fi
	kill_all $agent_pid $agent2_pid $echo_pid
	netns_del "$ns" "$ns2"
	(exit "$rc")
	it_cleanup
}
trap ec_cleanup EXIT

# gexec CMD...: run in the guest; stdout to $T/g.out, stderr to $T/g.err.
gexec() {
	"$MIOSACTL" --socket "$SOCK" exec "$sbx" --timeout 60 -- "$@" </dev/null >"$T/g.out" 2>"$T/g.err"
}
exec_works() { gexec echo ready && [ "$(cat "$T/g.out")" = ready ]; }

# --- the upstream: a test CA and api.openai.test's certificate ------------------------
upstream_cert "$T" api.openai.test || { echo "FAIL - test certificates"; exit 1; }

"$ECHO" "$T/server.pem" "$T/server.key" "$T/echo.port" </dev/null >"$T/echo.log" 2>&1 &
echo_pid=$!
"$ECHO" --tcp-echo "$T/tcpecho.port" </dev/null >>"$T/echo.log" 2>&1 &
echo_pid="$echo_pid $!"
"$ECHO" --silent "$T/silent.port" </dev/null >>"$T/echo.log" 2>&1 &
echo_pid="$echo_pid $!"
wait_until 20 "the echo upstreams" test -s "$T/echo.port" -a -s "$T/tcpecho.port" -a -s "$T/silent.port" || exit 1
port=$(cat "$T/echo.port")
tcpport=$(cat "$T/tcpecho.port")
silentport=$(cat "$T/silent.port")

# Other ports: 7000 (a plain TCP echo service), 993 (TLS with ALPN imap,
# spliced to the HTTPS echo server), 8443 (HTTPS with http/1.1: intercepted).
export MIOSA_SOCKET=$SOCK
broker_start --connect-to "api.openai.test:443:127.0.0.1:$port" \
	--connect-to "api.openai.test:8443:127.0.0.1:$port" \
	--connect-to "imap.test:993:127.0.0.1:$port" \
	--connect-to "tcp.test:7000:127.0.0.1:$tcpport" \
	--connect-to "blocked.test:7000:127.0.0.1:$tcpport" \
	--connect-to "silent.test:443:127.0.0.1:$silentport" \
	--guest-tcp-ports 7000,993,8443 \
	--upstream-connect-timeout 2 --upstream-response-timeout 2 --upstream-idle-timeout 5 \
	--upstream-ca "$T/upstream-ca.pem" || exit 1

ctl sandbox create --vsock-uds "$T/vm.sock"
sbx=$CTL_OUT
printf %s "$secret_value" | ctl secrets set "$sbx" openai_key --expose-as OPENAI_API_KEY \
	--host api.openai.test
[ "$CTL_RC" = 0 ] || { echo "FAIL - secrets set: $CTL_ERR"; exit 1; }

netns_add "$ns"
agent_start "$ns" "$T/vm.sock" "$T/run" "$T/agent.log" --log-level debug
agent_pid=$AGENT_PID
wait_until 30 "exec through the agent" exec_works || { echo "FAIL - agent not up"; exit 1; }
ok "broker, sandbox with a secret bound to api.openai.test, agent connected"

url=https://api.openai.test

# --- Rotation between two requests on ONE keep-alive connection (M5) -------------------
# requests.Session keeps the connection; the script pauses between the two
# requests until the test has rotated the secret.
cat >"$T/rotate.py" <<'PY'
import os, sys, time, requests
url, d = sys.argv[1], sys.argv[2]
s = requests.Session()
hdr = {"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]}
def get(path):
    r = s.get(url + path, headers=hdr, stream=True, timeout=20)
    port = r.raw._connection.sock.getsockname()[1]   # the guest-side socket
    body = r.content
    return r, port, body
r1, p1, b1 = get("/rot/1")
with open(d + "/step1.tmp", "w") as f:
    f.write("1")
os.rename(d + "/step1.tmp", d + "/step1")
deadline = time.time() + 30
while not os.path.exists(d + "/go"):
    if time.time() > deadline:
        sys.exit("rotate.py: no go within 30 s")
    time.sleep(0.05)
r2, p2, b2 = get("/rot/2")
pool = s.get_adapter(url).poolmanager.connection_from_url(url)
print("connections", pool.num_connections)
print("ports", p1, p2)
print("upstream", r1.headers["X-Upstream-Conn"], r2.headers["X-Upstream-Conn"])
sys.stdout.write("first " + b1.decode().split("\r\n")[0] + "\n")
for line in b1.decode().split("\r\n"):
    if line.lower().startswith("authorization:"):
        print("auth1", line.split(" ", 2)[2])
for line in b2.decode().split("\r\n"):
    if line.lower().startswith("authorization:"):
        print("auth2", line.split(" ", 2)[2])
PY
mkdir -p "$T/rot"
"$MIOSACTL" --socket "$SOCK" exec "$sbx" --timeout 60 -- python3 "$T/rotate.py" "$url" "$T/rot" \
	</dev/null >"$T/rot.out" 2>"$T/rot.err" &
rot_pid=$!
if wait_until 30 "the first request of rotate.py" test -e "$T/rot/step1"; then
	printf %s "$rotated_value" | ctl secrets rotate "$sbx" openai_key
	check_eq "secrets rotate between the two requests" 0 "$CTL_RC"
	touch "$T/rot/go"
else
	fail "rotate.py made its first request" "$(cat "$T/rot.err")"
	touch "$T/rot/go"
fi
wait "$rot_pid" || fail "rotate.py exited non-zero" "$(cat "$T/rot.err")"
rot=$(cat "$T/rot.out")
check_eq "requests.Session used one connection for both requests" "connections 1" \
	"$(grep '^connections' <<<"$rot")"
read -r _ p1 p2 <<<"$(grep '^ports' <<<"$rot")"
check_eq "both requests left from the same guest socket (port $p1)" "$p1" "$p2"
read -r _ u1 u2 <<<"$(grep '^upstream' <<<"$rot")"
check_eq "both requests were served by the same upstream connection" "$u1" "$u2"
check_eq "first request carried the old value upstream" "auth1 $secret_value" \
	"$(grep '^auth1' <<<"$rot")"
check_eq "second request on the same connection carried the rotated value" \
	"auth2 $rotated_value" "$(grep '^auth2' <<<"$rot")"
cur_value=$rotated_value

# --- Pipelining: three requests in one TLS write, answered in order -------------------
cat >"$T/pipeline.py" <<'PY'
import hashlib, os, socket, ssl, sys
host = sys.argv[1]
ctx = ssl.create_default_context()          # SSL_CERT_FILE: the sandbox CA bundle
s = ctx.wrap_socket(socket.create_connection((host, 443), timeout=20), server_hostname=host)
key = os.environ["OPENAI_API_KEY"]
reqs = (f"GET /pipe/1 HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\r\n"
        f"POST /upload/pipe HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\nhello"
        f"GET /pipe/3 HTTP/1.1\r\nHost: {host}\r\n\r\n").encode()
assert len(reqs) < 16000                    # one TLS record
s.sendall(reqs)
f = s.makefile("rb")
for i in range(3):
    status = f.readline().decode().rstrip()
    hdrs = {}
    while True:
        line = f.readline().decode().rstrip("\r\n")
        if not line:
            break
        k, v = line.split(":", 1)
        hdrs[k.strip().lower()] = v.strip()
    body = f.read(int(hdrs["content-length"]))
    print(i + 1, status, hdrs["x-upstream-conn"], body.decode().split("\r\n")[0].strip())
print("expect", hashlib.sha256(b"hello").hexdigest())
PY
if gexec python3 "$T/pipeline.py" api.openai.test; then
	pipe=$(cat "$T/g.out")
	sha=$(sed -n 's/^expect //p' <<<"$pipe")
	check_match "pipelined 1: GET /pipe/1 answered first" '^1 HTTP/1.1 200 OK [0-9]+ GET /pipe/1 HTTP/1.1$' \
		"$(sed -n 1p <<<"$pipe")"
	check_match "pipelined 2: the POST body answered second" "^2 HTTP/1.1 200 OK [0-9]+ sha256=$sha length=5\$" \
		"$(sed -n 2p <<<"$pipe")"
	check_match "pipelined 3: GET /pipe/3 answered third" '^3 HTTP/1.1 200 OK [0-9]+ GET /pipe/3 HTTP/1.1$' \
		"$(sed -n 3p <<<"$pipe")"
	check_eq "the three pipelined requests rode one upstream connection" 1 \
		"$(head -n 3 <<<"$pipe" | awk '{print $5}' | sort -u | wc -l)"
else
	fail "pipeline.py" "$(cat "$T/g.err" "$T/g.out")"
fi

# --- Chunked request bodies -----------------------------------------------------------
head -c 1048577 /dev/urandom >"$T/chunk.bin"
want="sha256=$(sha256sum "$T/chunk.bin" | cut -d' ' -f1) length=1048577"
if gexec curl -sS --max-time 60 -H 'Transfer-Encoding: chunked' -T "$T/chunk.bin" "$url/upload/chunked"; then
	check_eq "curl -T with Transfer-Encoding: chunked: the upstream got the body intact" \
		"$want" "$(cat "$T/g.out")"
else
	fail "curl chunked upload" "$(cat "$T/g.err")"
fi
grep -q 'Transfer-Encoding: chunked' <<<"$(gexec curl -sS --max-time 20 -H 'Transfer-Encoding: chunked' \
	-T "$T/chunk.bin" "$url/echo-head"; cat "$T/g.out")" &&
	ok "the chunked framing reached the upstream as sent" ||
	fail "chunked framing upstream" "$(head -c 300 "$T/g.out")"

cat >"$T/gen.py" <<'PY'
import hashlib, sys, requests
def gen():
    for i in range(50):
        yield bytes([i]) * (1000 + i)
h = hashlib.sha256(b"".join(gen())).hexdigest()
r = requests.post(sys.argv[1] + "/upload/gen", data=gen(), timeout=30)
print(r.status_code, r.text.strip())
print("expect", f"sha256={h} length={sum(1000 + i for i in range(50))}")
PY
if gexec python3 "$T/gen.py" "$url"; then
	gen=$(cat "$T/g.out")
	check_eq "python requests generator body (chunked): the upstream got it intact" \
		"200 $(sed -n 's/^expect //p' <<<"$gen")" "$(sed -n 1p <<<"$gen")"
else
	fail "gen.py" "$(cat "$T/g.err")"
fi

# --- 10 MiB up and down ---------------------------------------------------------------
big=$((10 * 1024 * 1024))
head -c "$big" /dev/urandom >"$T/up.bin"
want="sha256=$(sha256sum "$T/up.bin" | cut -d' ' -f1) length=$big"
if gexec curl -sS --max-time 120 --data-binary "@$T/up.bin" "$url/upload/big"; then
	check_eq "10 MiB upload (Content-Length): upstream SHA-256 and length equal" "$want" "$(cat "$T/g.out")"
else
	fail "10 MiB upload" "$(cat "$T/g.err")"
fi
want=$(python3 -c "import hashlib,sys; n=$big; print(hashlib.sha256((bytes(range(251)) * (n // 251 + 1))[:n]).hexdigest())")
if gexec curl -sS --max-time 120 -o "$T/down.bin" "$url/download/$big"; then
	check_eq "10 MiB download: SHA-256 equal" "$want" "$(sha256sum "$T/down.bin" | cut -d' ' -f1)"
else
	fail "10 MiB download" "$(cat "$T/g.err")"
fi

# --- Python requests and Node fetch, unchanged code -----------------------------------
cat >"$T/sdk.py" <<'PY'
import os, requests
r = requests.get("https://api.openai.test/v1/models",
                 headers={"Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"}, timeout=20)
print(r.status_code)
print(r.text)
PY
if gexec python3 "$T/sdk.py"; then
	out=$(cat "$T/g.out")
	check_eq "python requests: 200" 200 "$(head -n 1 <<<"$out")"
	check_contains "python requests: the upstream saw the real value" \
		"Authorization: Bearer $cur_value" "$out"
else
	fail "python requests" "$(cat "$T/g.err")"
fi
gexec env || true
check_not_contains "the guest env holds only the placeholder" "$cur_value" "$(cat "$T/g.out")"

cat >"$T/sdk.mjs" <<'JS'
const h = { Authorization: `Bearer ${process.env.OPENAI_API_KEY}` };
const a = await fetch("https://api.openai.test/v1/node/1", { headers: h });
const ta = await a.text();
const b = await fetch("https://api.openai.test/v1/node/2", { headers: h });
const tb = await b.text();
console.log(a.status, b.status, a.headers.get("x-upstream-conn"), b.headers.get("x-upstream-conn"));
console.log(ta);
JS
if gexec node "$T/sdk.mjs"; then
	out=$(cat "$T/g.out")
	read -r s1 s2 _ <<<"$(head -n 1 <<<"$out")"
	check_eq "node fetch: 200 200" "200 200" "$s1 $s2"
	# (whether undici reuses its socket for the second fetch depends on when
	# it returns it to its pool: not asserted)
	check_contains "node fetch: the upstream saw the real value" \
		"Authorization: Bearer $cur_value" "$out"
else
	fail "node fetch" "$(cat "$T/g.err")"
fi

# --- Upstream pool: a new guest connection reuses the previous one's upstream ---------
pooled() { grep -c egress_upstream_pooled "$T/broker.log" || true; }
np=$(pooled)
gexec sh -c 'curl -sS -i --max-time 15 https://api.openai.test/pool/1 -H "Authorization: Bearer $OPENAI_API_KEY"' ||
	fail "curl /pool/1" "$(cat "$T/g.err")"
c1=$(tr -d '\r' <"$T/g.out" | sed -n 's/^X-Upstream-Conn: //p')
pool_grew() { [ "$(pooled)" -gt "$np" ]; }
wait_until 10 "the first stream's upstream to be pooled" pool_grew &&
	ok "a guest connection that ends while its upstream is idle parks the upstream" ||
	fail "egress_upstream_pooled logged"
gexec sh -c 'curl -sS -i --max-time 15 https://api.openai.test/pool/2 -H "Authorization: Bearer $OPENAI_API_KEY"' ||
	fail "curl /pool/2" "$(cat "$T/g.err")"
c2=$(tr -d '\r' <"$T/g.out" | sed -n 's/^X-Upstream-Conn: //p')
check_eq "the next guest connection (a new curl) reuses that upstream connection" "$c1" "$c2"
check_contains "... and its request is still swapped" "Authorization: Bearer $cur_value" "$(cat "$T/g.out")"
wait_until 10 "the second stream's upstream to be pooled" pool_grew || true

# Never shared between sandboxes: a second sandbox (its own agent and
# namespace) gets a new upstream connection although the first sandbox has
# one parked for the same host and port.
ctl sandbox create --vsock-uds "$T/vm2.sock"
sbx2=$CTL_OUT
netns_add "$ns2"
agent_start "$ns2" "$T/vm2.sock" "$T/run2" "$T/agent2.log"
agent2_pid=$AGENT_PID
exec2_works() { "$MIOSACTL" --socket "$SOCK" exec "$sbx2" -- true </dev/null >/dev/null 2>&1; }
wait_until 30 "exec through the second agent" exec2_works || fail "second agent up"
"$MIOSACTL" --socket "$SOCK" exec "$sbx2" -- curl -sS -i --max-time 15 https://api.openai.test/pool/other-sandbox \
	</dev/null >"$T/g.out" 2>"$T/g.err" || fail "curl from the second sandbox" "$(cat "$T/g.err")"
c3=$(tr -d '\r' <"$T/g.out" | sed -n 's/^X-Upstream-Conn: //p')
check_match "the second sandbox's request was answered" '^[0-9]+$' "$c3"
check_ne "the second sandbox did not get the first sandbox's parked upstream" "$c2" "$c3"
check_eq "no pooled upstream was reused for the second sandbox" 0 \
	"$(grep egress_upstream_reused "$T/broker.log" | grep -c "sandbox=$sbx2" || true)"

# --- Timeouts: a stalled upstream gets 504, never a hang; idle upstreams close ---------
t0=$(date +%s)
gexec curl -sS -i --max-time 30 "$url/stall" || true
t1=$(date +%s)
check_match "an upstream that accepts the request and never answers: 504" '^HTTP/1.1 504' \
	"$(head -n 1 "$T/g.out")"
check_contains "... with MIOSA-Upstream-Error: timeout" "MIOSA-Upstream-Error: timeout" "$(cat "$T/g.out")"
check_match "... after the 2 s --upstream-response-timeout, not curl's 30 s" '^[1-9]$' "$((t1 - t0))"
t0=$(date +%s)
gexec curl -sS -i --max-time 30 https://silent.test/ || true
t1=$(date +%s)
check_match "an upstream that accepts TCP and never completes TLS: 504 timeout" \
	'^HTTP/1.1 504' "$(head -n 1 "$T/g.out")"
check_match "... after the 2 s --upstream-connect-timeout" '^[1-9]$' "$((t1 - t0))"

cat >"$T/idle.py" <<'PY'
import os, sys, time, requests
url, log = sys.argv[1], sys.argv[2]
s = requests.Session()
def get(path):
    r = s.get(url + path, stream=True, timeout=20)
    port = r.raw._connection.sock.getsockname()[1]
    r.content
    return r.status_code, port, r.headers["X-Upstream-Conn"]
def idle_closes():
    with open(log, errors="replace") as f:
        return f.read().count("egress_upstream_idle_closed")
before = idle_closes()
a = get("/idle/1")
deadline = time.time() + 30
while idle_closes() == before:               # the broker's 5 s idle timeout
    if time.time() > deadline:
        sys.exit("no egress_upstream_idle_closed within 30 s")
    time.sleep(0.1)
b = get("/idle/2")
print(a[0], b[0], "guest", a[1] == b[1], "upstream", a[2] != b[2])
PY
if gexec python3 "$T/idle.py" "$url" "$T/broker.log"; then
	check_eq "idle upstream closed after --upstream-idle-timeout; the next request on the same guest connection gets a new one" \
		"200 200 guest True upstream True" "$(cat "$T/g.out")"
else
	fail "idle.py" "$(cat "$T/g.err")"
fi

# --- SNI must match the name the synthetic address maps to --------------------------
api_addr=$(ip netns exec "$ns" getent hosts api.openai.test | awk '{print $1}')
check_match "api.openai.test has a synthetic address" '^198\.1[89]\.' "$api_addr"
gexec curl -sS --max-time 15 --resolve "evil.test:443:$api_addr" https://evil.test/ || true
check_contains "curl with SNI evil.test to api.openai.test's address: TLS alert unrecognized name" \
	"unrecognized name" "$(cat "$T/g.err")"
gexec sh -c "openssl s_client -connect $api_addr:443 -servername evil2.test </dev/null 2>&1" || true
check_contains "openssl s_client -servername evil2.test: alert unrecognized name" \
	"unrecognized name" "$(cat "$T/g.out")"

# --- Other ports: spliced unless TLS offering http/1.1 (or no ALPN) -------------------
cat >"$T/tcpecho.py" <<'PY'
import hashlib, os, socket, sys
data = os.urandom(300000)
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
back = b""
while True:
    c = s.recv(65536)
    if not c:
        break
    back += c
print(hashlib.sha256(data).hexdigest(), hashlib.sha256(back).hexdigest(), len(back))
PY
if gexec python3 "$T/tcpecho.py" tcp.test 7000; then
	read -r sent got n <<<"$(cat "$T/g.out")"
	check_eq "port 7000 (not TLS): 300000 bytes spliced to the TCP echo and back intact, EOF propagated" \
		"$sent 300000" "$got $n"
else
	fail "tcpecho.py" "$(cat "$T/g.err")"
fi

cat >"$T/imap.py" <<'PY'
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])  # the UPSTREAM's CA, not the sandbox's
ctx.set_alpn_protocols(["imap"])
t = ctx.wrap_socket(socket.create_connection(("imap.test", 993), timeout=20),
                    server_hostname="api.openai.test")
t.sendall(b"GET /over-imap HTTP/1.1\r\nHost: imap.test\r\n\r\n")
got = b""
while b"GET /over-imap" not in got:
    c = t.recv(65536)
    if not c:
        break
    got += c
print("issuer", dict(x[0] for x in t.getpeercert()["issuer"])["commonName"])
print("echo", b"GET /over-imap HTTP/1.1" in got)
PY
if gexec python3 "$T/imap.py" "$T/upstream-ca.pem"; then
	check_contains "port 993, TLS with ALPN imap: end-to-end TLS with the upstream's own certificate (spliced)" \
		"issuer miosa test upstream CA" "$(cat "$T/g.out")"
	check_contains "port 993: bytes relayed both ways" "echo True" "$(cat "$T/g.out")"
else
	fail "imap.py" "$(cat "$T/g.err")"
fi
gexec sh -c 'openssl s_client -alpn imap -connect imap.test:993 -servername api.openai.test </dev/null 2>&1' || true
check_contains "openssl s_client -alpn imap: sees the upstream's issuer, not the sandbox CA" \
	"miosa test upstream CA" "$(grep -i '^issuer=' "$T/g.out")"

if gexec sh -c 'curl -sS --max-time 20 https://api.openai.test:8443/v1/alt -H "Authorization: Bearer $OPENAI_API_KEY"'; then
	check_contains "port 8443, TLS with http/1.1 (curl): intercepted, the placeholder swapped" \
		"Authorization: Bearer $cur_value" "$(cat "$T/g.out")"
else
	fail "curl https://api.openai.test:8443" "$(cat "$T/g.err")"
fi

ctl network lockdown "$sbx"
check_eq "network lockdown" 0 "$CTL_RC"
cat >"$T/blocked.py" <<'PY'
import socket, sys
s = socket.create_connection((sys.argv[1], 7000), timeout=20)
s.sendall(b"hello")
try:
    got = s.recv(100)
except ConnectionResetError:
    got = b""
print("got", len(got))
PY
if gexec python3 "$T/blocked.py" blocked.test; then
	check_eq "enforce: a new host on port 7000 is refused at open (no byte comes back)" \
		"got 0" "$(cat "$T/g.out")"
else
	fail "blocked.py" "$(cat "$T/g.err")"
fi
if gexec python3 "$T/tcpecho.py" tcp.test 7000; then
	read -r sent got n <<<"$(cat "$T/g.out")"
	check_eq "enforce: the observed tcp.test:7000 still splices" "$sent 300000" "$got $n"
else
	fail "tcpecho.py after lockdown" "$(cat "$T/g.err")"
fi

# --- Audit and leaks ------------------------------------------------------------------
q() { sqlite3 -readonly "file:$STATE_DIR/state.db?mode=ro" "$1"; }
n=$(q "SELECT count(*) FROM audit_rows WHERE sandbox_id='$sbx' AND host='api.openai.test' AND path LIKE '/rot/%' AND secrets_swapped='openai_key'")
check_eq "audit: both rotation requests swapped openai_key" 2 "$n"
n=$(q "SELECT count(*) FROM audit_rows WHERE sandbox_id='$sbx' AND path LIKE '/pool/%' AND secrets_swapped='openai_key'")
check_eq "audit: both requests over the pooled upstream have their own swapped row" 2 "$n"
# A TCP row is written at open; bytes and duration arrive in its completion.
tcp_rows() { test "$(q "SELECT count(*) FROM audit_rows r JOIN audit_completions c ON c.request_id = r.id WHERE r.host='tcp.test' AND r.port=7000 AND r.scheme='tcp' AND r.action='allow' AND c.bytes_up=300000 AND c.bytes_down=300000")" = 2; }
wait_until 10 "the TCP rows at close" tcp_rows &&
	ok "audit: two allow rows for tcp.test:7000 (scheme tcp, 300000 bytes each way)" ||
	fail "audit: two allow rows for tcp.test:7000 (scheme tcp, 300000 bytes each way)" \
		"$(q "SELECT r.scheme, r.action, c.bytes_up, c.bytes_down, r.path FROM audit_rows r LEFT JOIN audit_completions c ON c.request_id = r.id WHERE r.host='tcp.test'")"
n=$(q "SELECT count(*) FROM audit_rows WHERE host='tcp.test' AND (path IS NULL OR path='')")
check_eq "audit: the TCP rows have no path" 2 "$n"
n=$(q "SELECT count(*) FROM audit_rows WHERE host='blocked.test' AND port=7000 AND scheme='tcp' AND action='deny'")
check_eq "audit: the refused TCP connection has a deny row" 1 "$n"
n=$(q "SELECT count(*) FROM audit_rows WHERE host='api.openai.test' AND port=8443 AND scheme='https' AND secrets_swapped='openai_key'")
check_eq "audit: the intercepted 8443 request has an https row with the swap" 1 "$n"
n=$(q "SELECT count(*) FROM audit_rows WHERE host='api.openai.test' AND port=8443 AND scheme='tcp'")
check_eq "audit: one connection row (written at open, before the sniff) for the intercepted 8443 stream" 1 "$n"
n=$(q "SELECT count(*) FROM audit_rows WHERE host='imap.test' AND port=993 AND scheme='tcp' AND action='allow'")
check_eq "audit: the spliced TLS connections on 993 have tcp rows" 2 "$n"
sni_rows() { test "$(q "SELECT count(*) FROM audit_rows WHERE sandbox_id='$sbx' AND host='api.openai.test' AND port=443 AND action='deny' AND reason='sni-mismatch' AND scheme='https'")" = 2; }
wait_until 10 "the SNI rows" sni_rows && ok "audit: both SNI mismatches have a deny row, reason sni-mismatch" ||
	fail "audit: SNI mismatch rows" "$(q "SELECT host, action, reason FROM audit_rows WHERE reason LIKE 'sni%'")"
for v in "$secret_value" "$rotated_value"; do
	if grep -aqF "$v" "$STATE_DIR"/state.db* "$T/broker.log" "$T/agent.log"; then
		fail "no secret value in state.db or the logs"
	fi
done
ok "no secret value in state.db or the logs"

broker_stop || fail "broker exited cleanly on SIGTERM"
it_finish
