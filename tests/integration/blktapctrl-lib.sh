# shellcheck shell=bash
# Helpers for the blktapctrl-*.sh integration tests (sourced, on top of
# lib.sh): start blktapctrl in a private run dir, run tap-ctl against it,
# wait for disk states. Everything started here is killed on exit, by pid.
# Run on its own, this file is no test and says so.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	echo "SKIP: helper sourced by the blktapctrl-*.sh tests, not a test"
	exit 77
fi

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUILD=${BUILD:-$TOP/build/asan}
case $BUILD in /*) ;; *) BUILD=$TOP/$BUILD ;; esac
BLKTAPCTRL=$BUILD/blktapctrl
TAPCTL=$BUILD/tap-ctl
[ -x "$BLKTAPCTRL" ] || skip "$BLKTAPCTRL not built (make asan)"
[ -x "$TAPCTL" ] || skip "$TAPCTL not built (make asan)"
[ -x "$TAPDISK" ] || skip "$TAPDISK not built (make asan)"

RUN=$WORK/run
export BLKTAPCTRL_SOCKET=$RUN/blktapctrl.sock
CTRL_PID=

_ctrl_cleanup() {
	local f pid
	if [ -n "$CTRL_PID" ]; then
		{ kill -KILL "$CTRL_PID"; wait "$CTRL_PID"; } 2>/dev/null
	fi
	# the tapdisks our daemon started, from its state files
	for f in "$RUN"/disks/*; do
		[ -f "$f" ] || continue
		pid=$(sed -n 's/^pid=//p' "$f")
		[ -n "$pid" ] && [ "$pid" != 0 ] && kill -KILL "$pid" 2>/dev/null
	done
	_lib_cleanup
}
trap _ctrl_cleanup EXIT

# Show the daemon's and the tapdisks' logs when a test fails.
fail() {
	echo "FAIL: $*"
	local l
	for l in "$WORK"/blktapctrl.log "$RUN"/tapdisk-*.log; do
		[ -s "$l" ] && { echo "--- $l"; tail -n 30 "$l"; }
	done
	exit 1
}

# start_ctrl [OPTIONS...]: blktapctrl in the foreground (backgrounded here),
# log appended to $WORK/blktapctrl.log; waits until it answers.
start_ctrl() {
	mkdir -p "$RUN"
	"$BLKTAPCTRL" -f -v --run-dir "$RUN" --tapdisk "$TAPDISK" "$@" \
		</dev/null >>"$WORK/blktapctrl.log" 2>&1 &
	CTRL_PID=$!
	local i
	for i in $(seq 100); do
		"$TAPCTL" check --nbd-only >/dev/null 2>&1 && return 0
		kill -0 "$CTRL_PID" 2>/dev/null || fail "blktapctrl exited at start"
		sleep 0.05
	done
	fail "blktapctrl did not answer within 5 s"
}

# stop_ctrl: SIGTERM; blktapctrl must exit 0 (and ASan-clean) at once.
stop_ctrl() {
	kill -TERM "$CTRL_PID" || fail "blktapctrl is gone"
	wait "$CTRL_PID"
	local rc=$?
	CTRL_PID=
	[ "$rc" = 0 ] || fail "blktapctrl exited with status $rc after SIGTERM"
}

tapctl() { "$TAPCTL" "$@"; }

# field KEY LINE: the value of KEY in a comma-separated key=value line,
# parsed the way Xen's block-tap script does it.
field() {
	local p
	for p in $(echo "$2" | tr ',' '\n'); do
		case $p in "$1="*) echo "${p#"$1="}"; return 0 ;; esac
	done
	return 1
}

# wait_state MINOR STATE [NOT_PID]: until the disk is in STATE (and, if
# given, served by another pid than NOT_PID); prints its list line.
wait_state() {
	local line i
	for i in $(seq 200); do
		line=$(tapctl list -m "$1") || fail "list -m $1"
		if [ "$(field state "$line")" = "$2" ] &&
		   { [ -z "${3:-}" ] || [ "$(field pid "$line")" != "$3" ]; }; then
			echo "$line"
			return 0
		fi
		sleep 0.05
	done
	fail "disk $1 did not reach state $2 (last: $line)"
}

# qio URI ARGS...: qemu-io on an NBD URI, failing the test on error.
qio() {
	local uri=$1 out
	shift
	out=$(qemu-io -f raw "$@" "$uri" 2>&1) || fail "qemu-io $*: $out"
	case $out in *"Pattern verification failed"*|*"error"*|*"failed"*)
		fail "qemu-io $*: $out" ;;
	esac
}
