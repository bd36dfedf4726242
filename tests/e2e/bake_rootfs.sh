#!/bin/bash
# vm-images/bake-rootfs on a debootstrap-shaped tree (merged /usr with
# relative symlinks, /sbin/init -> systemd, a kernel's module tree):
#   --as init: the agent installed, /sbin/init pointing at it with the old
#     init kept, the load-order file listing the tree's modules in order
#     (absolute guest paths), idempotent;
#   --as service: the unit installed and enabled, valid for
#     `systemd-analyze verify --root` (with this machine's unit files copied
#     in for the targets it names), /sbin/init untouched;
#   refusals: /, a non-rootfs, a dynamic agent, an absolute symlink leading
#   out of the tree, a compressed module.
# The baked agent runs from the tree (chroot: static, it needs nothing).
source "$(dirname "$0")/vm_lib.sh"

[ "$(id -u)" = 0 ] || { fail "needs root (chroot); CI runs as root"; vm_finish; }
command -v systemd-analyze >/dev/null || { fail "systemd-analyze not installed"; vm_finish; }
AGENT=$MIOSA_BUILD/guest/miosa-init
KVER=6.1.0-99-amd64
MODULES=(drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev
	 drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci net/vmw_vsock/vsock
	 net/vmw_vsock/vmw_vsock_virtio_transport_common net/vmw_vsock/vmw_vsock_virtio_transport)

# mkroot DIR: a tree shaped like debootstrap's (files are stand-ins)
mkroot() {
	local r=$1 m
	mkdir -p "$r"/usr/{bin,sbin,lib/systemd} "$r"/etc "$r"/var
	for d in bin sbin lib; do ln -s "usr/$d" "$r/$d"; done
	printf '#!/bin/sh\n' >"$r/usr/lib/systemd/systemd"
	ln -s ../lib/systemd/systemd "$r/usr/sbin/init"
	for m in "${MODULES[@]}"; do
		mkdir -p "$r/usr/lib/modules/$KVER/kernel/$(dirname "$m")"
		echo "stand-in" >"$r/usr/lib/modules/$KVER/kernel/$m.ko"
	done
}

bake() { # bake DIR [OPTIONS...]
	local dir=$1
	shift
	(cd "$MIOSA_SOURCE_ROOT" && vm-images/bake-rootfs "$@" "$dir")
}

# --- --as init ------------------------------------------------------------------------------
R=$T/init-root
mkroot "$R"
if bake "$R" --as init >"$T/init.log" 2>&1; then ok "bake --as init"; else fail "bake --as init" "$(tail -n 5 "$T/init.log")"; fi
check_cmd "the agent is /usr/sbin/miosa-init, byte for byte" cmp "$AGENT" "$R/usr/sbin/miosa-init"
check_eq "it is executable" 755 "$(stat -c %a "$R/usr/sbin/miosa-init")"
check_eq "/sbin/init points at the agent" /usr/sbin/miosa-init "$(readlink "$R/sbin/init")"
check_eq "the previous init is kept" ../lib/systemd/systemd "$(readlink "$R/sbin/init.pre-miosa")"
want=$(printf "/lib/modules/$KVER/kernel/%s.ko " "${MODULES[@]}")
check_eq "load-order lists the tree's 8 modules in order, as guest paths" "$want" \
	"$(grep -v '^#' "$R/lib/modules/miosa/load-order" | tr '\n' ' ')"
missing=
for p in $(grep -v '^#' "$R/lib/modules/miosa/load-order"); do
	[ -f "$R$p" ] || missing="$missing $p"
done
check_eq "every listed module exists in the tree" "" "$missing"
check_cmd "an empty system CA bundle for the agent to append to" test -f "$R/etc/ssl/certs/ca-certificates.crt"
check_cmd "the baked agent runs in the tree (static)" chroot "$R" /sbin/init --version
cp -a "$R" "$T/init-once"
if bake "$R" --as init >"$T/init2.log" 2>&1; then ok "bake --as init again"; else fail "bake --as init again" "$(tail -n 5 "$T/init2.log")"; fi
check_cmd "baking twice gives the same tree" diff -r --no-dereference "$T/init-once" "$R"
check_eq "... and keeps the original init, not the agent" ../lib/systemd/systemd "$(readlink "$R/sbin/init.pre-miosa")"

# --- --as service ---------------------------------------------------------------------------
S=$T/service-root
mkroot "$S"
if bake "$S" --as service >"$T/svc.log" 2>&1; then ok "bake --as service"; else fail "bake --as service" "$(tail -n 5 "$T/svc.log")"; fi
U=$S/etc/systemd/system/miosa-init.service
check_cmd "the unit is installed" test -f "$U"
check_cmd "the unit starts the agent in init mode (no --no-init)" grep -qx 'ExecStart=/usr/sbin/miosa-init' "$U"
check_cmd "the unit restarts it" grep -qx 'Restart=always' "$U"
check_eq "the unit is enabled for multi-user.target" /etc/systemd/system/miosa-init.service \
	"$(readlink "$S/etc/systemd/system/multi-user.target.wants/miosa-init.service")"
check_eq "/sbin/init is left to systemd" ../lib/systemd/systemd "$(readlink "$S/sbin/init")"
check_cmd "no load-order (udev loads the modules)" test ! -e "$S/lib/modules/miosa/load-order"
# the targets the unit names come from this machine's systemd
cp -a /usr/lib/systemd/system/. "$S/usr/lib/systemd/system/"
check_cmd "systemd-analyze verify --root accepts the unit" \
	systemd-analyze --root="$S" --man=no verify /etc/systemd/system/miosa-init.service
sed 's|^ExecStart=.*|ExecStart=/usr/sbin/no-such-agent|' "$U" >"$S/etc/systemd/system/broken.service"
if systemd-analyze --root="$S" --man=no verify /etc/systemd/system/broken.service >/dev/null 2>&1; then
	fail "systemd-analyze verify rejects a unit whose program is missing (the check can fail)"
else
	ok "systemd-analyze verify rejects a unit whose program is missing (the check can fail)"
fi

# --- Refusals -------------------------------------------------------------------------------
refused() { # refused WHAT MESSAGE ARGS...
	local what=$1 msg=$2
	shift 2
	if (cd "$MIOSA_SOURCE_ROOT" && vm-images/bake-rootfs "$@") >"$T/ref.log" 2>&1; then
		fail "$what" "exit 0"
	else
		check_cmd "$what" grep -q -- "$msg" "$T/ref.log"
	fi
}
refused "/ is refused" "refusing to bake into /" /
mkdir -p "$T/not-a-root"
refused "a tree without etc/ is refused" "not a root filesystem" "$T/not-a-root"
mkdir -p "$T/dyn/guest"
cp /usr/bin/true "$T/dyn/guest/miosa-init"
refused "a dynamic agent is refused" "not a static executable" --agent "$T/dyn/guest/miosa-init" "$R"
refused "an unknown --as is refused" "--as must be init or service" --as daemon "$R"
A=$T/abs-root
mkdir -p "$A/etc" "$A/usr"
ln -s /usr/sbin "$A/sbin"
host_init() { stat -c '%i %Y %N' /usr/sbin/init /usr/sbin/init.pre-miosa /usr/sbin/miosa-init 2>&1 || true; }
before=$(host_init)
refused "an absolute symlink out of the tree is refused" "absolute symlink" "$A"
check_eq "... and this machine's /usr/sbin is untouched" "$before" "$(host_init)"
Z=$T/xz-root
mkroot "$Z"
mv "$Z/usr/lib/modules/$KVER/kernel/net/vmw_vsock/vsock.ko" "$Z/usr/lib/modules/$KVER/kernel/net/vmw_vsock/vsock.ko.xz"
refused "a compressed module is refused for --as init" "vsock is compressed" "$Z"
vm_finish
