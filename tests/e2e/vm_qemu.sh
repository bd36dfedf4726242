# A QEMU guest for the e2e test and the demo (bash or POSIX sh; sourced).
#
#   vm_build OUT [OPTION...]
#                         vm-images/build-initramfs [OPTION...] OUT (agent from $MIOSA_BUILD)
#   vm_start OUT DIR UDS CID
#                         miosa-vsock on DIR/vhost.sock (guest port P -> UDS_P),
#                         then QEMU under TCG booting OUT/vmlinuz + initramfs;
#                         console in DIR/console.log, backend log in
#                         DIR/vsock.log.  Sets VM_QEMU_PID, VM_VSOCK_PID.
#   vm_stop               QEMU gets SIGTERM (the agent as PID 1 powers off on
#                         it... QEMU itself ends on SIGTERM), then the backend.
#   vm_wait_exit SECONDS  waits for QEMU to end by itself; its status in VM_QEMU_RC.
#
# TCG only: on these machines KVM hangs (shared/FACTS.md); no fallback.
# Needs: MIOSA_BUILD (build dir with host/miosa-vsock and guest/miosa-init),
# MIOSA_SRC (source tree).

VM_QEMU_PID=
VM_VSOCK_PID=
VM_QEMU_RC=

vm_build() {
	_out=$1
	shift
	(cd "$MIOSA_SRC" && MIOSA_BUILD="$MIOSA_BUILD" vm-images/build-initramfs "$@" "$_out")
}

vm_start() {
	_out=$1 _dir=$2 _uds=$3 _cid=$4
	"$MIOSA_BUILD/host/miosa-vsock" --vhost-user "$_dir/vhost.sock" --uds "$_uds" \
		--guest-cid "$_cid" </dev/null >>"$_dir/vsock.log" 2>&1 &
	VM_VSOCK_PID=$!
	_i=0
	until [ -S "$_dir/vhost.sock" ]; do
		_i=$((_i + 1))
		if [ "$_i" -gt 200 ] || ! kill -0 "$VM_VSOCK_PID" 2>/dev/null; then
			echo "vm_start: miosa-vsock did not listen on $_dir/vhost.sock" >&2
			cat "$_dir/vsock.log" >&2
			return 1
		fi
		sleep 0.05
	done
	qemu-system-x86_64 -accel tcg -m 512 -smp 1 -nographic -no-reboot -nic none \
		-kernel "$_out/vmlinuz" -initrd "$_out/initramfs.img" \
		-append "console=ttyS0 quiet panic=-1" \
		-object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem \
		-chardev "socket,id=c,path=$_dir/vhost.sock" -device vhost-user-vsock-pci,chardev=c \
		</dev/null >"$_dir/console.log" 2>&1 &
	VM_QEMU_PID=$!
}

vm_wait_exit() {
	_deadline=$(($(date +%s) + $1))
	while kill -0 "$VM_QEMU_PID" 2>/dev/null; do
		[ "$(date +%s)" -lt "$_deadline" ] || return 1
		sleep 0.1
	done
	VM_QEMU_RC=0
	wait "$VM_QEMU_PID" 2>/dev/null || VM_QEMU_RC=$?
	VM_QEMU_PID=
	return 0
}

vm_stop() {
	if [ -n "$VM_QEMU_PID" ]; then
		kill -TERM "$VM_QEMU_PID" 2>/dev/null || true
		vm_wait_exit 10 || { kill -KILL "$VM_QEMU_PID" 2>/dev/null || true; wait "$VM_QEMU_PID" 2>/dev/null || true; }
		VM_QEMU_PID=
	fi
	if [ -n "$VM_VSOCK_PID" ]; then
		kill -TERM "$VM_VSOCK_PID" 2>/dev/null || true
		wait "$VM_VSOCK_PID" 2>/dev/null || true
		VM_VSOCK_PID=
	fi
}
