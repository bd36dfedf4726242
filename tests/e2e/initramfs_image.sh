#!/bin/bash
# vm-images/build-initramfs: what the image holds and that it is
# reproducible.  Two builds of the same inputs give the same bytes (and a
# different SOURCE_DATE_EPOCH different ones, so the comparison can fail);
# a cached kernel package is never downloaded again; the unpacked image runs
# its own curl, openssl and busybox (chroot: only the image's libraries);
# --with-python adds a working python3 + requests; a missing or dynamic
# agent is refused with a clear message.  Needs root (chroot).
source "$(dirname "$0")/vm_lib.sh"

[ "$(id -u)" = 0 ] || { fail "needs root (chroot); CI runs as root"; vm_finish; }
EPOCH=1700000000
AGENT=$MIOSA_BUILD/guest/miosa-init

# apt-get must not be needed: the kernel package is in the cache already
mkdir -p "$T/bin"
cat >"$T/bin/apt-get" <<EOS
#!/bin/sh
echo "apt-get \$*" >>"$T/apt-get.called"
exit 1
EOS
chmod +x "$T/bin/apt-get"

build() { # build OUT EPOCH [OPTIONS...]
	local out=$1 epoch=$2
	shift 2
	PATH=$T/bin:$PATH SOURCE_DATE_EPOCH=$epoch build_image "$out" "$@" >"$out.log" 2>&1
}

for b in a b; do
	if build "$T/$b" "$EPOCH"; then
		ok "build $b"
	else
		fail "build $b" "$(tail -n 5 "$T/$b.log")"
		vm_finish
	fi
done
check_eq "no download: the cached kernel package was reused" "" "$(cat "$T/apt-get.called" 2>/dev/null)"
sha() { sha256sum "$1" | cut -d' ' -f1; }
check_eq "two builds: identical initramfs.img" "$(sha "$T/a/initramfs.img")" "$(sha "$T/b/initramfs.img")"
check_eq "two builds: identical vmlinuz" "$(sha "$T/a/vmlinuz")" "$(sha "$T/b/vmlinuz")"
echo "# initramfs.img sha256 $(sha "$T/a/initramfs.img"), $(stat -c %s "$T/a/initramfs.img") bytes"
build "$T/c" $((EPOCH + 1)) || fail "build c" "$(tail -n 5 "$T/c.log")"
if [ "$(sha "$T/a/initramfs.img")" != "$(sha "$T/c/initramfs.img")" ]; then
	ok "another SOURCE_DATE_EPOCH gives other bytes (the comparison can fail)"
else
	fail "another SOURCE_DATE_EPOCH gives other bytes" "same sha256"
fi

# --- Contents ------------------------------------------------------------------------------
R=$T/root
mkdir "$R"
(cd "$R" && zcat "$T/a/initramfs.img" | cpio -idm --quiet) || fail "unpack the image"
check_cmd "/init is the agent, byte for byte" cmp "$AGENT" "$R/init"
check_eq "/init is executable" 755 "$(stat -c %a "$R/init")"
# From the archive's own headers (newc: uid, gid and mtime of each entry),
# not from an unpacked copy whose directories change as files land in them.
newc_bad() { # prints the first entries not root:root with mtime $1
	zcat "$2" | python3 -c '
import sys
d, e, off, bad = sys.stdin.buffer.read(), int(sys.argv[1]), 0, []
while True:
    h = d[off:off + 110]
    assert h[:6] == b"070701", "not newc at %d" % off
    f = [int(h[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
    namesize, filesize = f[11], f[6]
    name = d[off + 110:off + 110 + namesize - 1].decode()
    if name == "TRAILER!!!":
        break
    if f[2] != 0 or f[3] != 0 or f[5] != e:
        bad.append("%s uid %d gid %d mtime %d" % (name, f[2], f[3], f[5]))
    off = (off + 110 + namesize + 3) & ~3
    off = (off + filesize + 3) & ~3
print("\n".join(bad[:3]))
' "$1"
}
check_eq "every archive entry is root:root with mtime SOURCE_DATE_EPOCH" "" "$(newc_bad "$EPOCH" "$T/a/initramfs.img")"
for applet in sh ls cat poweroff ip mount; do
	check_cmd "busybox applet $applet" chroot "$R" /bin/sh -c "command -v $applet"
done
check_cmd "the image's curl runs with the image's libraries" chroot "$R" /usr/bin/curl --version
check_cmd "the image's openssl makes a CA (CA tooling)" chroot "$R" /usr/bin/openssl req -x509 \
	-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /tmp/k.pem -out /tmp/c.pem \
	-subj /CN=miosa-test -days 1
check_cmd "... and reads it back" chroot "$R" /usr/bin/openssl x509 -in /tmp/c.pem -noout -subject

want="virtio_ring.ko virtio.ko virtio_pci_modern_dev.ko virtio_pci_legacy_dev.ko virtio_pci.ko vsock.ko vmw_vsock_virtio_transport_common.ko vmw_vsock_virtio_transport.ko "
check_eq "load-order lists the 8 modules in order" "$want" \
	"$(grep -v '^#' "$R/lib/modules/miosa/load-order" | tr '\n' ' ')"
kver=$(sed -n 's/^build-initramfs: kernel \([^ ]*\) .*/\1/p' "$T/a.log")
for m in $want; do
	f=$R/lib/modules/miosa/$m
	if readelf -h "$f" 2>/dev/null | grep -q 'REL (Relocatable file)' &&
		grep -aq "vermagic=$kver " "$f"; then
		ok "$m: a module for $kver"
	else
		fail "$m: a module for $kver" "missing, not ELF REL or wrong vermagic"
	fi
done

check_cmd "/etc/passwd has root" grep -qx 'root:x:0:0:root:/root:/bin/sh' "$R/etc/passwd"
check_cmd "/etc/group has root" grep -qx 'root:x:0:' "$R/etc/group"
check_cmd "/etc/hosts has localhost" grep -Eq '^127\.0\.0\.1[[:space:]]+localhost$' "$R/etc/hosts"
check_cmd "/etc/nsswitch.conf resolves hosts by files then dns" grep -qx 'hosts: files dns' "$R/etc/nsswitch.conf"
check_cmd "/etc/resolv.conf points at the agent's stub" grep -qx 'nameserver 127.0.0.1' "$R/etc/resolv.conf"
check_cmd "the system CA bundle exists for the agent to append to" test -f "$R/etc/ssl/certs/ca-certificates.crt"
check_cmd "/etc/profile.d exists for the agent's profile" test -d "$R/etc/profile.d"
check_cmd "openssl finds its config" chroot "$R" /bin/sh -c 'test -f /usr/lib/ssl/openssl.cnf'
# glibc resolves names through the image's /etc/hosts (nsswitch "files",
# built into libc: the image has no libnss_*), in a network namespace of our
# own with busybox httpd serving the image's /etc.
# (/dev is devtmpfs in the guest: this copy needs /dev/null by hand)
mknod -m 666 "$R/dev/null" c 1 3
cat >"$R/tmp/resolve.sh" <<'EOS'
ip link set lo up
httpd -f -p 127.0.0.1:8080 -h /etc &
pid=$!
i=0
until out=$(curl -sS --max-time 2 http://localhost:8080/hostname 2>/tmp/curl.err); do
	i=$((i + 1))
	[ "$i" -lt 100 ] || break
	sleep 0.05
done
kill "$pid"
echo "$out"
EOS
check_eq "curl in the image resolves localhost through /etc/hosts and fetches over HTTP" miosa \
	"$(unshare -n chroot "$R" /bin/sh /tmp/resolve.sh 2>&1)"
check_eq "no libnss module needed or shipped" "" "$(find "$R" -name 'libnss_*' | head -n 1)"

# --- --with-python -------------------------------------------------------------------------
if build "$T/py" "$EPOCH" --with-python; then
	ok "build --with-python ($(stat -c %s "$T/py/initramfs.img") bytes)"
	P=$T/proot
	mkdir "$P"
	(cd "$P" && zcat "$T/py/initramfs.img" | cpio -idm --quiet)
	check_cmd "python3 + requests import in the image" chroot "$P" /usr/bin/python3 -c \
		'import requests, ssl, json, urllib3; print(requests.__version__)'
else
	fail "build --with-python" "$(tail -n 5 "$T/py.log")"
fi

# --- Refusals ------------------------------------------------------------------------------
mkdir -p "$T/nobuild" "$T/dynbuild/guest"
if (cd "$MIOSA_SOURCE_ROOT" && MIOSA_BUILD=$T/nobuild vm-images/build-initramfs "$T/x") >"$T/err1" 2>&1; then
	fail "a missing agent is refused" "exit 0"
else
	check_cmd "a missing agent is refused, naming the path" grep -q "$T/nobuild/guest/miosa-init not found" "$T/err1"
fi
cp /usr/bin/true "$T/dynbuild/guest/miosa-init"
if (cd "$MIOSA_SOURCE_ROOT" && MIOSA_BUILD=$T/dynbuild vm-images/build-initramfs "$T/x") >"$T/err2" 2>&1; then
	fail "a dynamic agent is refused" "exit 0"
else
	check_cmd "a dynamic agent is refused as not static" grep -q "is not a static executable" "$T/err2"
fi
check_cmd "nothing written by a refused build" test ! -e "$T/x/initramfs.img"
vm_finish
