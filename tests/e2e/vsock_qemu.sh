#!/bin/bash
# miosa-vsock end to end: a real QEMU (TCG, never KVM: FACTS.md) with
# vhost-user-vsock-pci served by miosa-vsock, booting a tiny initramfs built
# here from the cached Debian kernel package (vsock modules), busybox-static
# and tests/e2e/vsock_guest_probe.  Checks:
#   - guest -> host: the guest connects to CID 2 port 5000, miosa-vsock
#     connects to <uds>_5000 (vsock_host_peer serve), MIB MiB go each way and
#     every byte is checked on both ends;
#   - host -> guest: vsock_host_peer writes "CONNECT 6000" to <uds>, gets
#     "OK ...", 1 MiB goes each way, checked;
#   - clean exit: the guest runs `poweroff -f`, QEMU exits 0, and
#     miosa-vsock exits 0 (its frontend disconnected after stopping rings).
# Prints the throughput through miosa-vsock and of a Unix socketpair on this
# host in the same run, and the boot-to-ready time (QEMU start to the
# guest's first vsock connection arriving on the host).
# Waits are deadline loops on an observable condition; the short sleep only
# paces the polling.
#
# Usage: vsock_qemu.sh MIOSA_VSOCK VSOCK_HOST_PEER VSOCK_GUEST_PROBE [MIB]
set -euo pipefail

VSOCK=$1
PEER=$2
PROBE=$3
MIB=${4:-32}
HOST_PORT=5000
GUEST_PORT=6000
CID=3
CACHE=/root/.cache/miosa/vm

fail() {
	echo "FAIL: $*"
	for f in "$work"/vsock.log "$work"/console.log "$work"/serve.out "$work"/serve.err \
		"$work"/connect.out "$work"/connect.err; do
		[ -f "$f" ] && { echo "--- $f (last 40 lines)"; tail -n 40 "$f"; }
	done
	exit 1
}
pass() { echo "PASS: $*"; }

wait_for() { # wait_for SECONDS WHAT COMMAND...
	local deadline=$((SECONDS + $1)) what=$2
	shift 2
	until "$@"; do
		[ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting for $what"
		sleep 0.05
	done
}

exited() { ! kill -0 "$1" 2>/dev/null; }

for tool in qemu-system-x86_64 busybox cpio gzip dpkg-deb; do
	command -v "$tool" >/dev/null || fail "$tool not installed (scripts/install-deps)"
done
busybox_bin=$(command -v busybox)
file -L "$busybox_bin" 2>/dev/null | grep -q 'statically linked' ||
	ldd "$busybox_bin" 2>&1 | grep -q 'not a dynamic executable' ||
	fail "busybox is not static (install busybox-static)"

work=$(mktemp -d /tmp/miosa-vsock-e2e.XXXXXX)
vsock_pid=
qemu_pid=
serve_pid=
cleanup() {
	for p in $qemu_pid $serve_pid $vsock_pid; do kill -KILL "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
trap "exit 1" INT TERM

# ---- the guest: kernel + modules from the Debian package, busybox, probe ----
deb=$(ls "$CACHE"/linux-image-*.deb 2>/dev/null | head -n 1 || true)
if [ -z "$deb" ]; then
	pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n 1)
	[ -n "$pkg" ] || fail "cannot resolve the kernel package behind linux-image-amd64"
	mkdir -p "$CACHE"
	(cd "$CACHE" && apt-get download "$pkg") >"$work/apt.log" 2>&1 || fail "apt-get download $pkg"
	deb=$(ls "$CACHE"/linux-image-*.deb | head -n 1)
fi
mkdir "$work/k"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/k" --wildcards './boot/vmlinuz-*' \
	'*/virtio_ring.ko' '*/virtio.ko' '*/virtio_pci*.ko' '*/vsock.ko' \
	'*/vmw_vsock_virtio_transport*.ko' || fail "cannot unpack $deb"
kernel=$(ls "$work"/k/boot/vmlinuz-* | head -n 1)

root="$work/root"
mkdir -p "$root"/bin "$root"/dev "$root"/proc "$root"/sys "$root"/lib/modules
cp "$busybox_bin" "$root/bin/busybox"
cp "$PROBE" "$root/bin/vsock_guest_probe"
# FACTS.md: the load order that works (no modules.dep in the package).
mods="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport"
for m in $mods; do
	f=$(find "$work/k" -name "$m.ko" | head -n 1)
	[ -n "$f" ] || fail "module $m.ko not in $deb"
	cp "$f" "$root/lib/modules/"
done
cat >"$root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
for m in $mods; do insmod /lib/modules/\$m.ko || echo "PROBE insmod \$m failed"; done
/bin/vsock_guest_probe $HOST_PORT $GUEST_PORT $MIB && echo "PROBE all ok" || echo "PROBE exit=\$?"
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initramfs.img"

# ---- host side: miosa-vsock, then the peer on <uds>_5000, then QEMU ----
"$VSOCK" --vhost-user "$work/vhost.sock" --uds "$work/vsock" --guest-cid "$CID" \
	--log-level info >"$work/vsock.log" 2>&1 &
vsock_pid=$!
wait_for 10 "miosa-vsock to listen" test -S "$work/vhost.sock"
"$PEER" serve "$work/vsock_$HOST_PORT" "$MIB" >"$work/serve.out" 2>"$work/serve.err" &
serve_pid=$!
wait_for 10 "the host peer to listen" test -S "$work/vsock_$HOST_PORT"

qemu_start=$(date +%s.%N)
qemu-system-x86_64 -accel tcg -m 512 -smp 1 -nographic -no-reboot -nic none \
	-kernel "$kernel" -initrd "$work/initramfs.img" \
	-append "console=ttyS0 quiet panic=-1" \
	-object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem \
	-chardev socket,id=c,path="$work/vhost.sock" -device vhost-user-vsock-pci,chardev=c \
	</dev/null >"$work/console.log" 2>&1 &
qemu_pid=$!

wait_for 100 "the guest-initiated transfer" exited "$serve_pid"
wait "$serve_pid" || fail "guest -> host port $HOST_PORT transfer (vsock_host_peer serve)"
serve_pid=
pass "guest connected to CID 2 port $HOST_PORT via <uds>_$HOST_PORT; $MIB MiB each way intact"

"$PEER" connect "$work/vsock" "$GUEST_PORT" 1 >"$work/connect.out" 2>"$work/connect.err" ||
	fail "host -> guest CONNECT $GUEST_PORT transfer"
pass "host-initiated CONNECT $GUEST_PORT answered OK; 1 MiB each way intact"

wait_for 60 "QEMU to exit after poweroff -f" exited "$qemu_pid"
qemu_status=0
wait "$qemu_pid" || qemu_status=$?
qemu_pid=
grep -q "PROBE all ok" "$work/console.log" || fail "the guest probe did not report success"
[ "$qemu_status" = 0 ] || fail "QEMU exited with status $qemu_status"
pass "guest powered off, QEMU exited 0"

wait_for 10 "miosa-vsock to exit after QEMU" exited "$vsock_pid"
vsock_status=0
wait "$vsock_pid" || vsock_status=$?
vsock_pid=
[ "$vsock_status" = 0 ] || fail "miosa-vsock exited with status $vsock_status"
grep -q 'frontend_disconnected' "$work/vsock.log" || fail "miosa-vsock did not log a clean disconnect"
pass "miosa-vsock exited 0 when QEMU disconnected"

"$PEER" baseline "$MIB" >"$work/baseline.out" || fail "Unix socketpair baseline"

field() { sed -n "s/.*$2=\([0-9.]*\).*/\1/p" "$1" | head -n 1; }
accepted=$(field "$work/serve.out" accepted_at)
vs_mbps=$(field "$work/serve.out" mbps)
base_mbps=$(field "$work/baseline.out" mbps)
boot=$(awk -v a="$accepted" -v b="$qemu_start" 'BEGIN { printf "%.2f", a - b }')
echo "RESULT vsock_throughput_mbps=$vs_mbps unix_baseline_mbps=$base_mbps mib_each_way=$MIB (full duplex, MB/s per direction)"
echo "RESULT boot_to_first_vsock_connection_secs=$boot (QEMU start -> guest connection on <uds>_$HOST_PORT, TCG)"
