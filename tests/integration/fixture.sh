# shellcheck shell=bash
# What the integration scripts that run the real agent set up the same way
# (bash; sourced by lib.sh and failfast.sh, defines functions only):
#
#   upstream_cert DIR SAN...   a test CA and an upstream certificate
#   sandbox_ca DIR             a CA standing in for the broker's sandbox CA
#   netns_add NS               a network namespace with its own resolv.conf
#   agent_start NS SOCK RUNDIR LOG [OPTION...]
#                              the agent (--no-init) in NS, on unix:SOCK
#   netns_del NS...            remove namespaces and their /etc/netns files
#   kill_all PID...            SIGKILL each (empty and gone ones are fine)
#   rand_hex BYTES             BYTES random bytes as lower-case hex
#
# Contract: each returns non-zero on failure and leaves reporting it to the
# caller (the two families of scripts report differently); none exits.
# Cleanup stays with the caller, which owns the namespace and the processes.

# upstream_cert DIR SAN...: DIR/upstream-ca.{pem,key} (CN "miosa test
# upstream CA") and DIR/server.{pem,key}, a serverAuth leaf for the DNS
# names SAN... (CN the first), both valid 2 days.  openssl's output goes to
# DIR/openssl.log, printed on failure.
upstream_cert() {
	local dir=$1 sans
	shift
	sans=$(printf 'DNS:%s,' "$@")
	(
		cd "$dir"
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
			-subj "/CN=miosa test upstream CA" -keyout upstream-ca.key -out upstream-ca.pem
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-subj "/CN=$1" -keyout server.key -out server.csr
		printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
			"${sans%,}" >ext.cnf
		openssl x509 -req -in server.csr -CA upstream-ca.pem -CAkey upstream-ca.key \
			-CAcreateserial -days 2 -extfile ext.cnf -out server.pem
	) >"$dir/openssl.log" 2>&1 || { cat "$dir/openssl.log"; return 1; }
}

# sandbox_ca DIR: DIR/ca.{pem,key} (CN "miosa test sandbox CA", 2 days): what
# fake_broker hands the agent as the sandbox CA.
sandbox_ca() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$1/ca.key" -out "$1/ca.pem" -days 2 \
		-subj "/CN=miosa test sandbox CA" 2>/dev/null
}

# netns_add NS: the namespace, and /etc/netns/NS/resolv.conf first: without
# it a process in the namespace writing /etc/resolv.conf would write the
# machine's own (FACTS.md).  It names an unreachable server (TEST-NET-1)
# until the agent points it at its stub.
netns_add() {
	mkdir -p "/etc/netns/$1"
	echo "nameserver 192.0.2.53" >"/etc/netns/$1/resolv.conf"
	ip netns add "$1"
}

# netns_del NS...: for cleanup; a namespace that was never added is fine.
netns_del() {
	local ns
	for ns in "$@"; do
		ip netns del "$ns" 2>/dev/null || true
		rm -rf "/etc/netns/$ns"
	done
}

# kill_all PID...: for cleanup (callers pass unquoted, possibly empty, lists).
kill_all() {
	local p
	for p in "$@"; do
		kill -KILL "$p" 2>/dev/null || true
	done
}

# rand_hex BYTES: a fresh random value for a test secret.
rand_hex() {
	head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'
}

# agent_start NS SOCK RUNDIR LOG [OPTION...]: $AGENT --no-init in NS,
# connected to unix:SOCK, its stderr in LOG; sets AGENT_PID.
agent_start() {
	local ns=$1 sock=$2 run=$3 log=$4
	shift 4
	ip netns exec "$ns" "$AGENT" --no-init --transport "unix:$sock" --runtime-dir "$run" \
		--resolv-conf "/etc/netns/$ns/resolv.conf" "$@" </dev/null >/dev/null 2>"$log" &
	AGENT_PID=$!
}
