# shellcheck shell=bash
# Helpers for the integration scripts (sourced, not run): a scratch
# directory, starting and stopping tapdisk, skipping when a tool is
# missing, failing with tapdisk's log shown. Everything started here is
# killed and removed on exit.

TOP=${TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
TAPDISK=${TAPDISK:-$TOP/build/asan/tapdisk}
case $TAPDISK in /*) ;; *) TAPDISK=$TOP/$TAPDISK ;; esac
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# The Debian python has the libnbd bindings; a pyenv one may not.
PYTHON=python3
for p in /usr/bin/python3 python3; do
	if "$p" -c 'import nbd' 2>/dev/null; then PYTHON=$p; break; fi
done

TD_PIDS=()
WORK=$(mktemp -d /var/tmp/blktap-it.XXXXXX)

_lib_cleanup() {
	local pid
	for pid in "${TD_PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null
	done
	wait 2>/dev/null
	rm -rf "$WORK"
}
trap _lib_cleanup EXIT

skip() { echo "SKIP: $*"; exit 77; }

# need CMD...: skip the test unless every command exists.
need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "$c not installed"
	done
}

need_python_nbd() {
	"$PYTHON" -c 'import nbd' 2>/dev/null || skip "python3-libnbd not installed"
}

fail() {
	echo "FAIL: $*"
	local l
	for l in "$WORK"/tapdisk*.log; do
		[ -s "$l" ] && { echo "--- $l"; tail -n 40 "$l"; }
	done
	exit 1
}

ok() { echo "ok: $*"; }

# start_tapdisk NAME ARGS...: start "$TAPDISK ARGS..." in the background
# with its log in $WORK/tapdisk-NAME.log; sets TD_PID. Waits until its
# unix socket ($WORK/NAME.sock, which ARGS must use) accepts connections.
start_tapdisk() {
	local name=$1 sock="$WORK/$1.sock" i
	shift
	"$TAPDISK" "$@" >"$WORK/tapdisk-$name.log" 2>&1 &
	TD_PID=$!
	TD_PIDS+=("$TD_PID")
	for i in $(seq 200); do
		if [ -S "$sock" ] && nbdinfo --size "nbd+unix:///?socket=$sock" \
				>/dev/null 2>&1; then
			return 0
		fi
		kill -0 "$TD_PID" 2>/dev/null || fail "tapdisk $* exited at start"
		sleep 0.05
	done
	fail "tapdisk $* did not come up on $sock"
}

# stop_tapdisk [PID]: SIGTERM, then wait; returns tapdisk's exit status.
stop_tapdisk() {
	local pid=${1:-$TD_PID} rc i
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "tapdisk $pid ignored SIGTERM for 15 s" >&2
		kill -KILL "$pid"
	fi
	wait "$pid"
	rc=$?
	return $rc
}

# uri NAME [EXPORT]: the NBD URI of $WORK/NAME.sock.
uri() { echo "nbd+unix:///${2:-}?socket=$WORK/$1.sock"; }

# A free TCP port on the loopback interface.
free_port() {
	"$PYTHON" - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
PY
}
