#!/bin/bash
# Boots the image vm-images/build-initramfs makes under QEMU (TCG only:
# shared/FACTS.md, KVM hangs here) with no vsock device, and reads the
# serial console: the kernel ran /init (miosa-init as PID 1), the agent
# loaded the 8 virtio/vsock modules in order, set up lo, the synthetic route
# and the DNS stub, then failed to reach the broker for want of a device and
# kept retrying; ctrl-alt-del (QEMU monitor) reaches it as SIGINT and it
# powers the guest off cleanly, which ends QEMU with status 0.  Prints the
# boot-to-agent time (QEMU start to the agent's first line).
# With a vsock device and miosa-vsock, the walkthrough test goes further.
source "$(dirname "$0")/vm_lib.sh"

for tool in qemu-system-x86_64 socat timeout; do
	command -v "$tool" >/dev/null || { fail "$tool not installed (scripts/install-deps)"; vm_finish; }
done

MODULES="virtio_ring.ko virtio.ko virtio_pci_modern_dev.ko virtio_pci_legacy_dev.ko virtio_pci.ko vsock.ko vmw_vsock_virtio_transport_common.ko vmw_vsock_virtio_transport.ko"
LOG=$T/serial.log
MON=$T/monitor.sock
BOOT_DEADLINE=60

if ! build_image "$T/img" >"$T/build.log" 2>&1; then
	fail "vm-images/build-initramfs" "$(tail -n 5 "$T/build.log")"
	vm_finish
fi
ok "vm-images/build-initramfs wrote $(cd "$T/img" && ls | tr '\n' ' ')"

# The DESIGN.md command line minus the vsock device, plus panic=-1 (a
# panic ends QEMU at once instead of waiting out the deadline) and a
# monitor socket for ctrl-alt-del.
t0=$(now_ms)
timeout -s KILL $((BOOT_DEADLINE + 30)) qemu-system-x86_64 -accel tcg -m 512 -smp 1 \
	-nographic -no-reboot -nic none \
	-kernel "$T/img/vmlinuz" -initrd "$T/img/initramfs.img" \
	-append "console=ttyS0 quiet panic=-1" \
	-monitor "unix:$MON,server,nowait" </dev/null >"$LOG" 2>&1 &
QEMU=$!
# single quotes: evaluated at exit, when QEMU= means it was already reaped
# (its PID may belong to someone else by then)
VM_CLEANUP+=('[ -z "$QEMU" ] || kill -KILL "$QEMU" 2>/dev/null')

agent_started() { grep -q 'miosa-init: info: main: miosa-init .* starting' "$LOG"; }
retried() { [ "$(grep -c 'control: cannot connect to vsock:2:1024' "$LOG")" -ge 2 ]; }
qemu_gone() { ! kill -0 "$QEMU" 2>/dev/null; }

if wait_until "$BOOT_DEADLINE" "the agent's first line" agent_started; then
	ms=$(($(now_ms) - t0))
	echo "# boot-to-agent: $((ms / 1000)).$(printf %03d $((ms % 1000))) s (QEMU start to miosa-init's first line, TCG)"
	ok "the kernel ran /init: miosa-init started"
else
	fail "the kernel ran /init" "no agent line in ${BOOT_DEADLINE}s"
fi

# No vsock device: the transport says so, then retries (a second attempt).
# That is the last thing the agent does: everything before it is logged.
if wait_until 30 "a retried connect" retried; then
	ok "the transport failed and retried"
else
	fail "the transport failed and retried" "$(grep -c 'cannot connect' "$LOG") attempts logged"
fi
# The serial console ends lines with CR LF.
C=$T/console
tr -d '\r' <"$LOG" >"$C"
check_cmd "the agent runs as PID 1 with the default vsock transport" \
	grep -q 'starting: PID 1, transport vsock:2:1024' "$C"

# Each module is logged once, in the order file's order, all loaded.
got=$(sed -n 's/^miosa-init: info: pid1: kernel module \([^ ]*\) loaded$/\1/p' "$C" | tr '\n' ' ')
check_eq "the 8 virtio/vsock modules loaded in order" "$MODULES " "$got"
check_cmd "the module summary says 8 loaded, none failed" \
	grep -q 'kernel modules from /lib/modules/miosa/load-order: 8 loaded, 0 already there, 0 failed' "$C"
check_cmd "lo up and 198.18.0.0/15 routed locally" \
	grep -q 'main: lo up, 198.18.0.0/15 routed locally on lo' "$C"
check_cmd "DNS stub on 127.0.0.1:53 and /etc/resolv.conf" \
	grep -q 'main: DNS stub on 127.0.0.1:53, /etc/resolv.conf points at it' "$C"
check_cmd "TCP capture on ports 80 and 443" \
	grep -Pzq 'catching TCP port 80\n(.*\n)*.*catching TCP port 443' "$C"
# AF_VSOCK needs the modules: they come first, the transport last
check_cmd "modules loaded before the network and the transport" \
	grep -Pzq 'load-order: 8 loaded.*\n(.*\n)*.*lo up.*\n(.*\n)*.*cannot connect to vsock' "$C"
check_cmd "the transport error names the missing device and the retry" \
	grep -Eq 'warn: control: cannot connect to vsock:2:1024: no such device \(no virtio-vsock device in this VM\), retrying in [0-9]+ ms$' "$C"
check_eq "no error line (mounts, modules, network, DNS)" 0 "$(grep -c '^miosa-init: error' "$C" || true)"
check_eq "no kernel panic or oops" 0 "$(grep -Ec 'Kernel panic|Oops|BUG:|Attempted to kill init' "$C" || true)"

# ctrl-alt-del -> SIGINT to PID 1 -> clean power-off -> QEMU exits 0.
if echo "sendkey ctrl-alt-delete" | socat - "UNIX-CONNECT:$MON" >/dev/null 2>&1; then
	ok "ctrl-alt-del sent through the QEMU monitor"
else
	fail "ctrl-alt-del sent through the QEMU monitor"
fi
if wait_until 30 "QEMU to exit" qemu_gone; then
	status=0
	wait "$QEMU" || status=$?
	QEMU=
	check_eq "QEMU exited with status 0 (guest powered off)" 0 "$status"
else
	fail "the guest powered off within 30 s of ctrl-alt-del"
fi
tr -d '\r' <"$LOG" >"$C"
check_cmd "the agent shut down on SIGINT and powered off" \
	grep -Pzq 'pid1: Interrupt received, shutting down\n(.*\n)*miosa-init: info: pid1: powering off' "$C"
ms=$(($(now_ms) - t0))
echo "# QEMU start to exit: $((ms / 1000)).$(printf %03d $((ms % 1000))) s"

if [ "$CHECK_FAIL" -gt 0 ]; then
	echo "--- serial console ($LOG)"
	tail -n 60 "$C"
fi
vm_finish
