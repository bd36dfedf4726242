# bench/lib.sh — the setup bench/broker_rss.sh and bench/egress_bench.sh
# share (POSIX sh; sourced from the source root with B set to the build
# directory).  Everything below api.bench.test is local: a test CA, an
# echo_upstream with its certificate, the broker the caller starts, one
# sandbox holding one secret, and the agent in a network namespace.
#
#   bench_init NAME    $work (a fresh /tmp/miosa-NAME.XXXXXX), $ns, $pids
#                      and the EXIT trap that kills $pids and removes the
#                      namespace and $work; MIOSA_SOCKET for ctl
#   bench_upstream     the certificates in $work, echo_upstream on them;
#                      sets $port.  The CA is $work/ca.pem
#   bench_sandbox      a sandbox with API_KEY bound to api.bench.test: $sbx
#   bench_agent        the agent (--no-init) in $ns for $sbx, up: $agent
#   ctl ARGS...        miosactl
#   wait_ok COMMAND... poll COMMAND (every 50 ms) for 10 s, exit 1 at the
#                      deadline

ctl() { "$B/host/miosactl" "$@"; }
wait_ok() { i=0; until "$@" >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 200 ] || { echo "timeout: $*" >&2; exit 1; }; sleep 0.05; done; }

bench_cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "/etc/netns/$ns" "$work"
}

bench_init() {
	work=$(mktemp -d "/tmp/miosa-$1.XXXXXX")
	ns="miosa-$1-$$"
	pids=""
	trap bench_cleanup EXIT
	trap 'exit 1' INT TERM
	export MIOSA_SOCKET="$work/state/control.sock"
}

bench_upstream() {
	(
		cd "$work"
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
			-subj "/CN=bench CA" -keyout ca.key -out ca.pem
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-subj "/CN=api.bench.test" -keyout up.key -out up.csr
		printf 'subjectAltName=DNS:api.bench.test\nextendedKeyUsage=serverAuth\n' >ext.cnf
		openssl x509 -req -in up.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
			-extfile ext.cnf -out up.pem
	) >"$work/openssl.log" 2>&1
	"$B/tests/integration/echo_upstream" "$work/up.pem" "$work/up.key" "$work/port" </dev/null \
		>/dev/null 2>&1 &
	pids="$pids $!"
	wait_ok test -s "$work/port"
	port=$(cat "$work/port")
}

bench_sandbox() {
	sbx=$(ctl sandbox create --vsock-uds "$work/vm.sock")
	echo "sk-bench-value-0123456789" | ctl secrets set "$sbx" k --expose-as API_KEY \
		--host api.bench.test >/dev/null
}

bench_agent() {
	mkdir -p "/etc/netns/$ns"
	echo "nameserver 192.0.2.53" >"/etc/netns/$ns/resolv.conf"
	ip netns add "$ns"
	ip netns exec "$ns" "$B/guest/miosa-init" --no-init --transport "unix:$work/vm.sock" \
		--runtime-dir "$work/run" --resolv-conf "/etc/netns/$ns/resolv.conf" 2>/dev/null &
	agent=$!
	pids="$pids $agent"
	wait_ok ctl exec "$sbx" -- true
}
