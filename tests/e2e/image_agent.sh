#!/bin/bash
# The image's own /init, as PID 1 of new PID, mount and network namespaces
# chrooted into the unpacked image, against tests/integration/fake_broker
# over the unix transport (the stand-in for vsock until miosa-vsock joins):
# what the agent sets up as PID 1 works with what the image holds.  The
# broker's execs run the image's busybox (placeholder env, stdin/stderr,
# CA variables, timeout, missing binary, env update); the sandbox CA lands
# in the image's /etc/ssl/certs/ca-certificates.crt once; /etc/resolv.conf
# points at the stub; a login shell gets the placeholder from
# /etc/profile.d/miosa.sh; the image's curl resolves a name through the
# stub and its connection to the synthetic address is carried to the
# broker; SIGTERM powers the namespace off.  The load-order file is removed
# from this copy: a test never loads a module into this machine's kernel.
#
# Usage: image_agent.sh FAKE_BROKER (MIOSA_SOURCE_ROOT, MIOSA_BUILD set)
source "$(dirname "$0")/vm_lib.sh"

FAKE=$1
[ "$(id -u)" = 0 ] || { fail "needs root (unshare, chroot); CI runs as root"; vm_finish; }
for tool in unshare nsenter chroot openssl ps; do
	command -v "$tool" >/dev/null || { fail "$tool not installed"; vm_finish; }
done

if ! build_image "$T/img" >"$T/build.log" 2>&1; then
	fail "vm-images/build-initramfs" "$(tail -n 5 "$T/build.log")"
	vm_finish
fi
R=$T/root
mkdir -p "$R" "$T/broker"
(cd "$R" && zcat "$T/img/initramfs.img" | cpio -idm --quiet)
rm "$R/lib/modules/miosa/load-order"
mkdir "$R/broker"
ok "image built and unpacked"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$T/ca.key" -out "$T/ca.pem" -days 2 -subj "/CN=miosa image test CA" 2>/dev/null
placeholder=miosa-tok-$(openssl rand -hex 16)
"$FAKE" --uds "$T/broker/v" --ca-pem "$T/ca.pem" --placeholder "$placeholder" \
	</dev/null >"$T/broker.out" 2>"$T/broker.err" &
broker_pid=$!
VM_CLEANUP+=("kill -KILL $broker_pid 2>/dev/null; wait $broker_pid 2>/dev/null") # never exits by itself
wait_until 10 "the fake broker" grep -q '^LISTENING' "$T/broker.out" || fail "fake broker did not start"

# sh is PID 1 of the new namespaces; it binds the broker's directory into the
# image, then execs chroot, which execs the image's /init: PID 1, init mode.
unshare --pid --fork --kill-child --mount --net --propagation private sh -c '
	mount --bind "$1/broker" "$1/root/broker" &&
	exec chroot "$1/root" /init --transport unix:/broker/v' \
	sh "$T" </dev/null >/dev/null 2>"$T/agent.log" &
unshare_pid=$!
# single quotes: evaluated at exit; emptied once a process is known gone,
# whose PID may belong to someone else by then
VM_CLEANUP+=('[ -z "$unshare_pid" ] || kill -KILL "$unshare_pid" 2>/dev/null')
agent=
find_agent() { agent=$(ps -o pid= --ppid "$unshare_pid" | tr -d ' '); [ -n "$agent" ]; }
if wait_until 10 "the agent's PID" find_agent &&
	wait_until 10 "the agent to start" grep -q 'starting: PID 1' "$T/agent.log"; then
	ok "the image's /init runs as PID 1"
else
	fail "the image's /init runs as PID 1" "$(tail -n 5 "$T/agent.log")"
	vm_finish
fi
VM_CLEANUP+=('[ -z "$agent" ] || kill -KILL "$agent" 2>/dev/null')
check_cmd "no load-order in this copy: nothing loaded" \
	grep -q 'no /lib/modules/miosa/load-order: no kernel modules to load' "$T/agent.log"

# --- The broker's exec scenario, run by the image's busybox ---------------------------------
if wait_until 60 "the exec scenario" grep -q '^SCENARIO' "$T/broker.out"; then
	ok "the broker's scenario ran"
else
	fail "the broker's scenario ran" "$(tail -n 5 "$T/broker.out")"
fi
# All but exec-resolves-through-stub, which runs getent: busybox has none
# (name resolution is checked with the image's curl below).
for check in ping-pong exec-placeholder-env exec-stdin-env-stderr-exit-code \
	exec-ca-bundle-variables exec-timeout-kills exec-start-error-missing-binary \
	env-update-applies-to-next-exec; do
	check_cmd "scenario: $check" grep -qx "PASS $check" "$T/broker.out"
done

# --- What PID 1 wrote into the image --------------------------------------------------------
ca_line=$(sed -n 2p "$T/ca.pem")
check_eq "the sandbox CA is in the image's system bundle, once" 1 \
	"$(grep -cF "$ca_line" "$R/etc/ssl/certs/ca-certificates.crt")"
check_cmd "the image's openssl verifies the CA against that bundle" \
	nsenter -t "$agent" -p -m -n -r -w /usr/bin/openssl verify \
	-CAfile /etc/ssl/certs/ca-certificates.crt /run/miosa/ca.pem
check_cmd "/etc/resolv.conf points at the stub" grep -qx 'nameserver 127.0.0.1' "$R/etc/resolv.conf"
check_eq "a login shell gets the placeholder (/etc/profile + profile.d/miosa.sh)" "$placeholder" \
	"$(nsenter -t "$agent" -p -m -n -r -w /usr/bin/env -i /bin/sh -l -c 'echo $OPENAI_API_KEY' 2>&1)"
check_eq "... and curl's CA variable" /run/miosa/ca-bundle.pem \
	"$(nsenter -t "$agent" -p -m -n -r -w /usr/bin/env -i /bin/sh -l -c 'echo $CURL_CA_BUNDLE' 2>&1)"

# --- The image's curl: DNS through the stub, TCP through the broker ------------------------
body=$(nsenter -t "$agent" -p -m -n -r -w /usr/bin/curl -sS --max-time 10 \
	http://api.example.test/hello 2>&1) || true
check_eq "curl in the image reaches api.example.test through stub and broker" \
	"fake-broker egress dst=198.18.0.5:80" "$body"

# --- SIGTERM: power-off ------------------------------------------------------------------------
kill -TERM "$agent"
agent_gone() { ! kill -0 "$agent" 2>/dev/null; }
if wait_until 15 "the agent to power off" agent_gone; then
	agent=
	status=0
	wait "$unshare_pid" || status=$?
	unshare_pid=
	# SIGINT is how the kernel ends a PID namespace whose init called
	# reboot(RB_POWER_OFF); unshare passes it on
	check_eq "SIGTERM -> power-off ended the namespace" 130 "$status"
else
	fail "SIGTERM -> power-off ended the namespace" "agent still running"
fi
check_cmd "the agent logged its power-off" grep -q 'powering off' "$T/agent.log"
check_eq "no error line in the agent's log" "" "$(grep '^miosa-init: error' "$T/agent.log" | head -n 3)"
if [ "$CHECK_FAIL" -gt 0 ]; then
	echo "--- agent log"; tail -n 30 "$T/agent.log"
	echo "--- broker"; tail -n 20 "$T/broker.out"
fi
vm_finish
