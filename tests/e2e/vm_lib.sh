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

# ok, fail, check_eq, wait_until
source "$(dirname "${BASH_SOURCE[0]}")/../lib/checks.sh"

VM_NAME=$(basename "$0" .sh)
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
	echo "$VM_NAME: $CHECK_PASS passed, $CHECK_FAIL failed"
	[ "$CHECK_FAIL" -eq 0 ] && [ "$CHECK_PASS" -gt 0 ]
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
