# shellcheck shell=bash
# Helpers for the vm-images/ tests (bash; sourced, not run).
#
# Environment (meson sets it): MIOSA_SOURCE_ROOT (the source tree, where the
# vm-images/ scripts run) and MIOSA_BUILD (the build directory holding
# guest/miosa-init).  Every check prints "ok - WHAT" or "FAIL - WHAT: DETAIL";
# vm_finish prints the totals and exits non-zero if anything failed.  Waits
# poll an observable condition until a deadline, never a fixed sleep.

set -euo pipefail

: "${MIOSA_SOURCE_ROOT:?MIOSA_SOURCE_ROOT must be the source tree}"
: "${MIOSA_BUILD:?MIOSA_BUILD must be the build directory}"

VM_NAME=$(basename "$0" .sh)
VM_PASS=0
VM_FAIL=0
T=$(mktemp -d "${TMPDIR:-/tmp}/miosa-$VM_NAME.XXXXXX")
VM_CLEANUP=()

vm_cleanup() {
	for c in "${VM_CLEANUP[@]}"; do
		eval "$c" || true
	done
	rm -rf "$T"
}
trap vm_cleanup EXIT
trap 'exit 130' INT TERM

ok() {
	VM_PASS=$((VM_PASS + 1))
	echo "ok - $1"
}

fail() {
	VM_FAIL=$((VM_FAIL + 1))
	echo "FAIL - $1${2:+: $2}"
}

# check WHAT EXPECTED ACTUAL
check_eq() {
	if [ "$2" = "$3" ]; then ok "$1"; else fail "$1" "expected '$2', got '$3'"; fi
}

# check_cmd WHAT COMMAND...: passes when COMMAND succeeds
check_cmd() {
	local what=$1
	shift
	if "$@" >"$T/check.out" 2>&1; then
		ok "$what"
	else
		fail "$what" "$* failed: $(tail -n 3 "$T/check.out" | tr '\n' ' ')"
	fi
}

vm_finish() {
	echo "$VM_NAME: $VM_PASS passed, $VM_FAIL failed"
	[ "$VM_FAIL" -eq 0 ] && [ "$VM_PASS" -gt 0 ]
}

# wait_until SECS WHAT COMMAND...: 0 once COMMAND succeeds, 1 at the deadline
wait_until() {
	local secs=$1 what=$2
	shift 2
	local deadline=$(($(date +%s) + secs))
	until "$@" >/dev/null 2>&1; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "timed out after ${secs}s waiting for $what" >&2
			return 1
		fi
		sleep 0.05
	done
}

# build_image OUT [OPTIONS...]: vm-images/build-initramfs from the source tree
build_image() {
	local out=$1
	shift
	(cd "$MIOSA_SOURCE_ROOT" && vm-images/build-initramfs "$@" "$out")
}

# Milliseconds since the epoch.
now_ms() {
	echo $(($(date +%s%N) / 1000000))
}
