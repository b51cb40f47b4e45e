# shellcheck shell=bash
# Helpers shared by the benchmark scripts (sourced): messages with the
# script's tag (BENCH_TAG), tool checks, and stopping the NBD server a run
# started (SERVER_PID).

die() { echo "$BENCH_TAG: $*" >&2; exit 1; }
say() { echo "$BENCH_TAG: $*" >&2; }

# need CMD PACKAGE: stop with a clear message unless CMD exists.
need() {
	command -v "$1" >/dev/null 2>&1 ||
		die "'$1' not found; install package '$2' (make deps does it)"
}

uri_of() { echo "nbd+unix:///?socket=$1"; }

# SIGTERM the server (its clean stop), SIGKILL after 10 s.
stop_server() {
	local pid=$SERVER_PID _
	[ -n "$pid" ] || return 0
	SERVER_PID=""
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		say "server pid $pid ignored SIGTERM for 10 s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}
