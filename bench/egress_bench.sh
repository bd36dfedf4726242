#!/bin/sh
# egress_bench — keep-alive HTTPS through the whole broker path vs direct,
# same run, same client (curl), same local upstream (echo_upstream):
#   guest curl -> miosa-init (netns, no NIC) -> vsock stand-in (Unix socket)
#   -> broker: TLS termination, HTTP/1.1 parse, policy, swap, audit row
#   (fsync'd before forwarding), upstream TLS -> echo_upstream
# vs host curl -> echo_upstream.  N requests on one keep-alive connection,
# each carrying a placeholder that is swapped.  Prints requests/s and the
# added latency per request.  Needs root (network namespace).
#   usage: bench/egress_bench.sh [N]     (after `meson compile -C build`)
#   MIOSA_BENCH_TIMING=1: run the broker at --log-level debug and print the
#   median and mean of each verdict phase (docs/performance.md); the debug
#   log itself adds a little to the measured latency.
set -eu
cd "$(dirname "$0")/.."
N=${1:-1000}
B=${MIOSA_BUILD:-build}
[ "$(id -u)" = 0 ] || { echo "egress_bench: needs root (ip netns)" >&2; exit 2; }

. bench/lib.sh
bench_init bench
now_ns() { date +%s%N; }

bench_upstream

"$B/host/miosa-broker" --state-dir "$work/state" --master-key "$work/key/master.key" \
	--log-level "$([ "${MIOSA_BENCH_TIMING:-0}" = 1 ] && echo debug || echo warn)" \
	--connect-to "api.bench.test:443:127.0.0.1:$port" \
	--upstream-ca "$work/ca.pem" 2>"$work/broker.log" &
broker=$!
pids="$pids $broker"
wait_ok ctl health
bench_sandbox
bench_agent

# Warm-up (leaf minting, DNS, first connections) is not measured.
ctl exec "$sbx" -- sh -c 'curl -sS https://api.bench.test/warm -H "Authorization: Bearer $API_KEY"' \
	>/dev/null </dev/null

t0=$(now_ns)
ctl exec "$sbx" --timeout 600 -- sh -c \
	"curl -sS 'https://api.bench.test/r[1-$N]' -H \"Authorization: Bearer \$API_KEY\"" \
	</dev/null | grep -c '^GET /r' >"$work/n_broker"
t1=$(now_ns)
curl -sS --cacert "$work/ca.pem" --resolve "api.bench.test:$port:127.0.0.1" \
	"https://api.bench.test:$port/r[1-$N]" -H "Authorization: Bearer sk-bench-value-0123456789" |
	grep -c '^GET /r' >"$work/n_direct"
t2=$(now_ns)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$broker/status")

# Then N/4 new guest connections, one request each (the upstream pool's
# case: one-shot clients), timed inside the guest by python.
cat >"$work/fresh.py" <<'PY'
import os, socket, ssl, sys, time
n = int(sys.argv[1])
key = os.environ["API_KEY"].encode()
ctx = ssl.create_default_context()
t0 = time.monotonic()
for i in range(n):
    s = ctx.wrap_socket(socket.create_connection(("api.bench.test", 443), timeout=30),
                        server_hostname="api.bench.test")
    s.sendall(b"GET /fresh HTTP/1.1\r\nHost: api.bench.test\r\nAuthorization: Bearer " + key + b"\r\n\r\n")
    buf = b""
    while b"GET /fresh" not in buf:
        c = s.recv(65536)
        assert c, "connection closed early"
        buf += c
    s.close()
print("%.3f" % ((time.monotonic() - t0) * 1000 / n))
PY
nf=$((N / 4))
fresh_ms=$(ctl exec "$sbx" --timeout 600 -- python3 "$work/fresh.py" "$nf" </dev/null)

awk -v n="$N" -v nb="$(cat "$work/n_broker")" -v nd="$(cat "$work/n_direct")" \
    -v tb="$((t1 - t0))" -v td="$((t2 - t1))" -v rss="$rss" 'BEGIN {
	if (nb != n || nd != n) { printf "egress_bench: only %d/%d (broker) and %d/%d (direct) requests completed\n", nb, n, nd, n; exit 1 }
	printf "%d keep-alive HTTPS requests, one connection, placeholder swapped per request\n", n
	printf "  through the broker: %8.1f req/s  %7.3f ms/request (incl. one miosactl exec)\n", n / (tb / 1e9), tb / 1e6 / n
	printf "  direct:             %8.1f req/s  %7.3f ms/request\n", n / (td / 1e9), td / 1e6 / n
	printf "  added latency:      %7.3f ms/request\n", (tb - td) / 1e6 / n
	printf "  broker RSS after the run: %d KiB\n", rss
}'
echo "$nf new guest connections, one HTTPS request each: $fresh_ms ms per connection (guest-side, TLS to the broker included)"
if [ "${MIOSA_BENCH_TIMING:-0}" = 1 ]; then
	echo "  verdict phases (µs; median / mean over the measured requests):"
	for f in cache_us policy_us tally_us swap_us audit_us total_us; do
		grep ' egress_verdict_timing ' "$work/broker.log" | tail -n "$N" |
			sed -n "s/.* $f=\([0-9]*\).*/\1/p" | sort -n |
			awk -v f="$f" '{ v[NR] = $1; s += $1 } END {
				if (NR) printf "    %-10s %6d / %8.1f\n", f, v[int((NR + 1) / 2)], s / NR }'
	done
fi
