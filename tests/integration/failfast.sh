# shellcheck shell=bash
# Helpers for the integration scripts that stop at the first failure (bash;
# sourced): every check prints "PASS: WHAT"; the first failure prints
# "FAIL: WHAT", then the script's dump_logs if it defines one, and exits 1.
# (lib.sh is the other family: checks that count and go on.)  Also brings
# in fixture.sh.
#
#   pass WHAT / fail WHAT      as above; pass counts in npass
#   dump_tail LINES FILE...    the last LINES lines of each FILE that exists
#   wait_for SECONDS WHAT COMMAND...
#                              poll COMMAND (every WAIT_FOR_POLL seconds,
#                              0.1 unless set) until it succeeds; fail at the
#                              deadline: never a fixed sleep
#   ctl ARGS...                miosactl ($CTL; MIOSA_SOCKET says which broker)
#   gexec CMD...               CMD in sandbox $sbx through the agent
#   exec_works                 the agent for $sbx answers (a wait_for condition)
#   require_root WHY, require_agent, require_tools TOOL...
#                              preconditions: CI has them all, so a missing
#                              one is a failure, never a skip

source "$(dirname "${BASH_SOURCE[0]}")/fixture.sh"

npass=0

fail() {
	echo "FAIL: $*"
	if declare -F dump_logs >/dev/null; then
		dump_logs
	fi
	exit 1
}

pass() {
	npass=$((npass + 1))
	echo "PASS: $*"
}

dump_tail() {
	local n=$1 f
	shift
	for f in "$@"; do
		[ -f "$f" ] || continue
		echo "--- $f (last $n lines)"
		tail -n "$n" "$f"
	done
}

wait_for() {
	local deadline=$((SECONDS + $1)) what=$2
	shift 2
	until "$@"; do
		[ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting for $what"
		sleep "${WAIT_FOR_POLL:-0.1}"
	done
}

ctl() { "$CTL" "$@"; }
gexec() { ctl exec "$sbx" "$@" </dev/null; }
exec_works() { [ "$(gexec -- echo ready 2>/dev/null)" = ready ]; }

require_root() {
	[ "$(id -u)" = 0 ] || { echo "FAIL: needs root ($1); CI runs as root"; exit 1; }
}

require_agent() {
	[ -x "$AGENT" ] || { echo "FAIL: miosa-init not found at $AGENT (guest/ must build it)"; exit 1; }
}

require_tools() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null || { echo "FAIL: $tool not installed"; exit 1; }
	done
}
