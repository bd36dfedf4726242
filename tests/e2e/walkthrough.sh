#!/bin/bash
# The seeds' walkthrough in a real VM: QEMU (TCG) boots the Debian kernel and
# the initramfs vm-images/build-initramfs makes (miosa-init as /init), vsock
# goes through miosa-vsock (vhost-user-vsock-pci) to the broker's hybrid
# socket, and unchanged curl (and python requests) in the guest call local HTTPS stand-ins for
# api.openai.com and api.github.com:
#   placeholder env in the guest -> the real key is seen only upstream ->
#   live audit tail -> lockdown to the two hosts -> a third host gets 403
#   MIOSA-Egress-Deny and shows in pending -> rotation while a loop of
#   requests runs (no failure, the new key on the next request) -> exec
#   relays output and status -> audit verify -> no value anywhere but
#   upstream -> the guest powers off cleanly.
# Prints the VM's boot-to-agent-ready time.
#
# usage (meson sets the environment): walkthrough.sh
# env: MIOSACTL HTTP_PROBE MIOSA_BROKER MIOSA_BUILD_ROOT MIOSA_SOURCE_ROOT API_STANDIN
source "$(dirname "$0")/../integration/lib.sh"
: "${MIOSA_SOURCE_ROOT:?}" "${API_STANDIN:?}"
MIOSA_BUILD=$MIOSA_BUILD_ROOT
MIOSA_SRC=$MIOSA_SOURCE_ROOT
source "$(dirname "$0")/vm_qemu.sh"

STANDIN_PID=
TAIL_PID=
LOOP_PID=
e2e_cleanup() {
	for p in $LOOP_PID $TAIL_PID; do kill "$p" 2>/dev/null || true; done
	vm_stop
	[ -z "$STANDIN_PID" ] || kill "$STANDIN_PID" 2>/dev/null || true
	if [ "$CHECK_FAIL" -gt 0 ]; then
		for f in console.log vsock.log; do
			[ -s "$T/$f" ] && { echo "--- last 30 lines of $f ---"; tail -n 30 "$T/$f"; }
		done
	fi
	it_cleanup
}
trap e2e_cleanup EXIT

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
sha256() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
OPENAI_V1="sk-proj-e2e-$(rand_hex 12)"
OPENAI_V2="sk-proj-rotated-$(rand_hex 12)"
GITHUB_V="gho_e2e$(rand_hex 12)"

# --- image, upstream stand-ins, broker -----------------------------------
t0=$(date +%s.%N)
vm_build "$T/image" --with-python >"$T/image.log" 2>&1 || { cat "$T/image.log"; fail "vm-images/build-initramfs"; exit 1; }
ok "initramfs built in $(elapsed "$t0") s ($(du -k "$T/image/initramfs.img" | cut -f1) KiB)"

upstream_cert "$T" api.openai.com api.github.com || { fail "the test certificates"; exit 1; }
"$API_STANDIN" "$T/server.pem" "$T/server.key" "$T/standin.port" "$T/upstream.record" </dev/null \
	>"$T/standin.log" 2>&1 &
STANDIN_PID=$!
wait_until 10 "the upstream stand-in" test -s "$T/standin.port"
up=$(cat "$T/standin.port")
export MIOSA_SOCKET=$SOCK
broker_start --connect-to "api.openai.com:443:127.0.0.1:$up" \
	--connect-to "api.github.com:443:127.0.0.1:$up" --upstream-ca "$T/upstream-ca.pem"

ctl_ok "sandbox create with the hybrid vsock socket" sandbox create \
	--external-user-id alice@example.com --external-workspace-id team-a --vsock-uds "$T/vm.sock"
SBX=$CTL_OUT
printf '%s' "$OPENAI_V1" | ctl_ok "openai_key set for api.openai.com" \
	secrets set "$SBX" openai_key --expose-as OPENAI_API_KEY --host api.openai.com
printf '%s' "$GITHUB_V" | ctl_ok "github_token set at the workspace scope" \
	secrets set --scope external_workspace --scope-id team-a github_token \
	--expose-as GITHUB_TOKEN --host api.github.com

# --- boot ------------------------------------------------------------------
t0=$(date +%s.%N)
vm_start "$T/image" "$T" "$T/vm.sock" 3
if wait_until 180 "the guest agent" "$MIOSACTL" exec "$SBX" -- true; then
	boot=$(elapsed "$t0")
	ok "the guest agent answers exec (boot to agent ready: $boot s)"
else
	fail "the guest agent came up over vsock"
	exit 1
fi
gexec() { ctl exec "$SBX" -- "$@" </dev/null; }

gexec sh -c 'echo "$OPENAI_API_KEY"'
check_match "OPENAI_API_KEY in the guest is a placeholder" '^miosa-tok-[0-9a-f]{32}$' "$CTL_OUT"
gexec sh -c 'echo "$GITHUB_TOKEN"'
check_match "GITHUB_TOKEN in the guest is a placeholder" '^miosa-tok-[0-9a-f]{32}$' "$CTL_OUT"
gexec env
check_not_contains "no real value in the guest's environment" "$OPENAI_V1" "$CTL_OUT"
check_not_contains "no github value in the guest's environment" "$GITHUB_V" "$CTL_OUT"

# --- swap, audit tail --------------------------------------------------------
"$MIOSACTL" audit tail --sandbox "$SBX" >"$T/tail.out" 2>&1 &
TAIL_PID=$!
call_openai() { gexec sh -c 'curl -sS --max-time 30 https://api.openai.com/v1/chat/completions -H "Authorization: Bearer $OPENAI_API_KEY"'; }
call_openai
check_eq "curl in the guest reaches api.openai.com (0)" 0 "$CTL_RC"
check_contains "upstream got the real openai key (its sha256)" "\"authorization_sha256\":\"$(sha256 "$OPENAI_V1")\"" "$CTL_OUT"
check_not_contains "the guest's output holds no real value" "$OPENAI_V1" "$CTL_OUT"
gexec sh -c 'curl -sS --max-time 30 https://api.github.com/repos/acme/app/issues -H "Authorization: token $GITHUB_TOKEN"'
check_contains "upstream got the real github token" "\"authorization_sha256\":\"$(sha256 "$GITHUB_V")\"" "$CTL_OUT"
# Python requests, unchanged code: the same swap for a second real client.
gexec python3 -c 'import os, requests
r = requests.get("https://api.openai.com/v1/models", headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]}, timeout=30)
print(r.status_code, r.text)'
check_contains "python requests in the guest: upstream got the real key" "200 {\"host\":\"api.openai.com\",\"path\":\"/v1/models\",\"authorization_sha256\":\"$(sha256 "$OPENAI_V1")\"" "$CTL_OUT"
check_contains "the upstream record holds the real openai key" "Bearer $OPENAI_V1" "$(cat "$T/upstream.record")"
tail_has() { grep -Eq "$1" "$T/tail.out"; }
if wait_until 20 "the audit tail" tail_has 'allow api\.openai\.com.*secrets=openai_key'; then
	ok "audit tail shows allow api.openai.com secrets=openai_key live"
else
	fail "audit tail shows the openai call" "$(cat "$T/tail.out")"
fi

# --- lockdown ----------------------------------------------------------------
ctl_ok "network lockdown" network lockdown "$SBX"
call_openai
check_contains "api.openai.com still works after lockdown" '"host":"api.openai.com"' "$CTL_OUT"
gexec sh -c 'curl -sS --max-time 30 https://api.github.com/zen'
check_contains "api.github.com still works after lockdown" '"host":"api.github.com"' "$CTL_OUT"
gexec sh -c 'curl -si --max-time 30 https://pypi.org/simple/requests/'
check_match "a third host gets 403" '^HTTP/1\.1 403' "$CTL_OUT"
check_match "with MIOSA-Egress-Deny: host-not-allowed" '^[Mm][Ii][Oo][Ss][Aa]-[Ee]gress-[Dd]eny: host-not-allowed' "$CTL_OUT"
ctl network pending "$SBX"
check_contains "pypi.org shows in pending" "pypi.org" "$CTL_OUT"

# --- rotation mid-run ----------------------------------------------------------
# A loop of 40 requests in the guest; the key rotates after the first few.
"$MIOSACTL" exec "$SBX" -- sh -c 'i=0; while [ $i -lt 40 ]; do
	curl -sS --max-time 30 -o /dev/null -w "%{http_code}\n" https://api.openai.com/v1/models \
		-H "Authorization: Bearer $OPENAI_API_KEY" || echo curl-failed
	i=$((i + 1)); done' </dev/null >"$T/loop.out" 2>&1 &
LOOP_PID=$!
records() { grep -c "Bearer $OPENAI_V1" "$T/upstream.record" || true; }
before=$(records)
loop_started() { [ $(($(records) - before)) -ge 3 ]; }
wait_until 60 "the loop's first requests" loop_started || fail "the guest loop made requests"
printf '%s' "$OPENAI_V2" | ctl_ok "secrets rotate while the loop runs" secrets rotate "$SBX" openai_key
call_openai
check_contains "the very next request carries the new key" "\"authorization_sha256\":\"$(sha256 "$OPENAI_V2")\"" "$CTL_OUT"
loop_rc=0
wait "$LOOP_PID" || loop_rc=$?
LOOP_PID=
check_eq "the guest loop exits 0" 0 "$loop_rc"
check_eq "all 40 loop requests answered 200" 40 "$(grep -c '^200$' "$T/loop.out" || true)"
# Upstream order: once v2 appears, v1 never comes back.
order=$(grep -oE "Bearer ($OPENAI_V1|$OPENAI_V2)" "$T/upstream.record" | sed "s/^Bearer //" | uniq | sed "s/$OPENAI_V1/v1/;s/$OPENAI_V2/v2/" | tr '\n' ' ')
check_eq "upstream saw v1 then v2, never v1 after v2" "v1 v2 " "$order"
gexec sh -c 'echo "$OPENAI_API_KEY"'
check_match "the guest's placeholder is unchanged by rotation" '^miosa-tok-[0-9a-f]{32}$' "$CTL_OUT"

# --- exec, audit ---------------------------------------------------------------
gexec sh -c 'echo out; echo err >&2; exit 7'
check_eq "exec relays the command's status" 7 "$CTL_RC"
check_eq "exec relays stdout" out "$CTL_OUT"
check_eq "exec relays stderr" err "$CTL_ERR"
ctl_ok "audit verify" audit verify
ctl audit ls --sandbox "$SBX" --json
check_contains "audit rows name the swapped secret" "openai_key" "$CTL_OUT"
check_not_contains "no value in audit rows" "$OPENAI_V1" "$CTL_OUT"

# --- power off -------------------------------------------------------------------
gexec poweroff
if vm_wait_exit 60; then
	check_eq "the guest powered off and QEMU exited 0" 0 "$VM_QEMU_RC"
else
	fail "the guest powered off within 60 s"
fi

# --- no value outside the upstream ---------------------------------------------
broker_stop || fail "broker stopped cleanly"
for f in "$STATE_DIR"/state.db* "$T/broker.log" "$T/console.log" "$T/vsock.log" \
	"$T/tail.out" "$T/loop.out" "$TRANSCRIPT"; do
	[ -f "$f" ] || continue
	if grep -q -e "$OPENAI_V1" -e "$OPENAI_V2" -e "$GITHUB_V" "$f"; then
		fail "no real value in $(basename "$f")"
	else
		ok "no real value in $(basename "$f")"
	fi
done
it_finish
