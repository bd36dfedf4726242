# shellcheck shell=bash
# Checks that count instead of stopping, and a deadline wait: the part of
# tests/integration/lib.sh and tests/e2e/vm_lib.sh that is the same (bash;
# sourced by those two, not by a test directly).
#
# Contract: ok WHAT prints "ok - WHAT" and counts a pass in CHECK_PASS;
# fail WHAT [DETAIL] prints "FAIL - WHAT: DETAIL" and counts a failure in
# CHECK_FAIL; neither exits, the sourcing library's *_finish turns the
# counts into the exit status.  wait_until polls a command until a deadline
# (never a fixed sleep) and returns 1 at the deadline, saying so on stderr.

CHECK_PASS=0
CHECK_FAIL=0

ok() {
	CHECK_PASS=$((CHECK_PASS + 1))
	echo "ok - $1"
}

fail() {
	CHECK_FAIL=$((CHECK_FAIL + 1))
	echo "FAIL - $1${2:+: $2}"
}

# check_eq WHAT EXPECTED ACTUAL
check_eq() {
	if [ "$2" = "$3" ]; then ok "$1"; else fail "$1" "expected '$2', got '$3'"; fi
}

# wait_until SECONDS WHAT COMMAND...: 0 once COMMAND succeeds, 1 at the
# deadline.
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
