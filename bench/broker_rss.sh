#!/bin/sh
# broker_rss — the broker's memory with N open, idle guest connections:
#   guest python -> miosa-init (netns, no NIC) -> vsock stand-in (Unix
#   socket) -> broker (TLS termination, HTTP/1.1 engine, upstream TLS) ->
#   echo_upstream.
# Each of the N connections makes one HTTPS request (a swapped placeholder)
# and then stays open and idle, so the broker holds per connection: the
# guest stream, its TLS session, the proxy engine and one kept-alive
# upstream TLS connection.  Prints the broker's VmRSS (/proc/PID/status)
# after a warm-up request and with the N connections open, and the
# difference per connection.  Needs root (network namespace).
#   usage: bench/broker_rss.sh [N]     (default 1000; after `meson compile -C build`)
set -eu
cd "$(dirname "$0")/.."
N=${1:-1000}
B=${MIOSA_BUILD:-build}
[ "$(id -u)" = 0 ] || { echo "broker_rss: needs root (ip netns)" >&2; exit 2; }
# Each open connection costs the guest client, the agent and the broker two
# descriptors (guest side + upstream / vsock side): raise the soft limit to
# the hard one, which must leave room.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((2 * N + 256)) ] ||
	{ echo "broker_rss: open-file limit $(ulimit -n) is too small for $N connections" >&2; exit 2; }

. bench/lib.sh
bench_init rss
# wait_ok for slow conditions: the deadline is 5 minutes.
wait_long() { i=0; until "$@" >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 6000 ] || { echo "timeout: $*" >&2; exit 1; }; sleep 0.05; done; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

bench_upstream

"$B/host/miosa-broker" --state-dir "$work/state" --master-key "$work/key/master.key" \
	--log-level warn --connect-to "api.bench.test:443:127.0.0.1:$port" \
	--upstream-ca "$work/ca.pem" --upstream-idle-timeout 3600 2>"$work/broker.log" &
broker=$!
pids="$pids $broker"
wait_ok ctl health
bench_sandbox
bench_agent

cat >"$work/hold.py" <<'PY'
import os, socket, ssl, sys, time
n, d = int(sys.argv[1]), sys.argv[2]
key = os.environ["API_KEY"].encode()
ctx = ssl.create_default_context()   # SSL_CERT_FILE: the sandbox CA
def one(s):
    s.sendall(b"GET /held HTTP/1.1\r\nHost: api.bench.test\r\nAuthorization: Bearer " + key + b"\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, body = buf.split(b"\r\n\r\n", 1)
    cl = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
    while len(body) < cl:
        body += s.recv(65536)
    assert b"Bearer sk-bench-value" in body
conns = []
for i in range(n):
    s = ctx.wrap_socket(socket.create_connection(("api.bench.test", 443), timeout=60),
                        server_hostname="api.bench.test")
    one(s)
    conns.append(s)
with open(d + "/open.tmp", "w") as f:
    f.write(str(len(conns)))
os.rename(d + "/open.tmp", d + "/open")
deadline = time.time() + 600
while not os.path.exists(d + "/done") and time.time() < deadline:
    time.sleep(0.1)
for s in conns:   # still usable after the measurement
    one(s)
print(len(conns))
PY

# Warm-up: leaf minting, DNS, the worker's store handles, one upstream.
ctl exec "$sbx" -- sh -c 'curl -sS https://api.bench.test/warm -H "Authorization: Bearer $API_KEY"' \
	>/dev/null </dev/null
rss0=$(rss_kib "$broker")
agent0=$(rss_kib "$agent")

ctl exec "$sbx" --timeout 900 -- sh -c "ulimit -n $((2 * N + 256)); python3 '$work/hold.py' $N '$work'" \
	</dev/null >"$work/hold.out" 2>"$work/hold.err" &
holder=$!
wait_long test -e "$work/open"
rss1=$(rss_kib "$broker")
agent1=$(rss_kib "$agent")
fds=$(ls "/proc/$broker/fd" | wc -l)
touch "$work/done"
wait "$holder" || { echo "broker_rss: the client failed:" >&2; cat "$work/hold.err" >&2; exit 1; }
[ "$(cat "$work/hold.out")" = "$N" ] || { echo "broker_rss: $(cat "$work/hold.out") of $N" >&2; exit 1; }

awk -v n="$N" -v r0="$rss0" -v r1="$rss1" -v a0="$agent0" -v a1="$agent1" -v fds="$fds" 'BEGIN {
	printf "%d open idle HTTPS guest connections (each: one swapped request, upstream kept alive)\n", n
	printf "  broker VmRSS: %d KiB before, %d KiB with them open: %+d KiB, %.1f KiB per connection\n", r0, r1, r1 - r0, (r1 - r0) / n
	printf "  broker open descriptors with them open: %d\n", fds
	printf "  agent VmRSS:  %d KiB before, %d KiB: %.1f KiB per connection\n", a0, a1, (a1 - a0) / n
}'
