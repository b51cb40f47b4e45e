#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Benchmark tapdisk's NBD frontend (aio driver) against the bare file and
# two other NBD servers, all on the same preallocated image:
#
#   bare      fio ioengine=libaio direct=1 on the file itself
#   tapdisk   tapdisk --nbd-unix SOCK aio:FILE        (O_DIRECT + libaio)
#   qemu-nbd  qemu-nbd -f raw --cache=none --aio=native -k SOCK FILE
#   nbdkit    nbdkit -U SOCK file FILE cache=none
#
# The NBD peers are driven by fio's nbd engine over a unix socket. Peers are
# interleaved (A B C D A B C D ...) for every job in every round, each server is
# started fresh for each measurement, and the median of the rounds is
# reported. Results go to stdout and replace the generated section of
# doc/benchmarks.md (see report.py).
#
# Usage: tests/bench/run.sh [BUILD_DIR]      (make bench: BUILD_DIR=build/release)
#
# Environment (defaults in brackets):
#   BENCH_RUNTIME  seconds per fio run, after the ramp          [8]
#   BENCH_RAMP     fio ramp_time in seconds (not measured)      [1]
#   BENCH_ROUNDS   rounds; the median is reported               [3]
#   BENCH_SIZE     image size (fio size syntax)                 [1G]
#   BENCH_DIR      directory for the image, on a real fs        [/var/tmp/blktap-bench]
#   BENCH_SEQ_QD   queue depth of the 128k sequential jobs      [8]
#   BENCH_PEERS    subset/order of: bare tapdisk qemu-nbd nbdkit
#   BENCH_JOBS     subset/order of: randread randwrite seqread seqwrite
#   BENCH_DOC      markdown file to update; empty: don't write  [doc/benchmarks.md]
#   BENCH_KEEP     1: keep the image and the logs/JSON afterwards
#   BENCH_TAPDISK_REV  how to name the tapdisk build in the report
#                  [git commit of this tree, noting uncommitted changes]
set -euo pipefail

BUILD=${1:-build/release}
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)

RUNTIME=${BENCH_RUNTIME:-8}
RAMP=${BENCH_RAMP:-1}
ROUNDS=${BENCH_ROUNDS:-3}
SIZE=${BENCH_SIZE:-1G}
DIR=${BENCH_DIR:-/var/tmp/blktap-bench}
SEQ_QD=${BENCH_SEQ_QD:-8}
PEERS=${BENCH_PEERS:-bare tapdisk qemu-nbd nbdkit}
JOBS=${BENCH_JOBS:-randread randwrite seqread seqwrite}
DOC=${BENCH_DOC-doc/benchmarks.md}
KEEP=${BENCH_KEEP:-0}

TAPDISK=$BUILD/tapdisk

BENCH_TAG="bench"
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"

# ---- preflight: every tool present, sane parameters ---------------------

need fio fio
need qemu-nbd qemu-utils
need nbdkit nbdkit
need nbdinfo libnbd-bin
need python3 python3
need timeout coreutils

case "$RUNTIME$RAMP$ROUNDS$SEQ_QD" in
*[!0-9]*) die "BENCH_RUNTIME/RAMP/ROUNDS/SEQ_QD must be integers" ;;
esac
if [ "$ROUNDS" -lt 1 ] || [ "$RUNTIME" -lt 1 ]; then
	die "BENCH_ROUNDS and BENCH_RUNTIME must be >= 1"
fi

for p in $PEERS; do
	case $p in
	bare | qemu-nbd | nbdkit) ;;
	tapdisk) [ -x "$TAPDISK" ] || die "$TAPDISK not found or not executable; run 'make' first" ;;
	*) die "unknown peer '$p' in BENCH_PEERS (bare tapdisk qemu-nbd nbdkit)" ;;
	esac
done
for j in $JOBS; do
	case $j in
	randread | randwrite | seqread | seqwrite) ;;
	*) die "unknown job '$j' in BENCH_JOBS (randread randwrite seqread seqwrite)" ;;
	esac
done
fio --enghelp=nbd >/dev/null 2>&1 ||
	die "this fio ($(fio --version)) has no nbd ioengine (needs fio >= 3.21 built with libnbd)"
nbdkit file --version >/dev/null 2>&1 || die "nbdkit has no 'file' plugin (package nbdkit)"

mkdir -p "$DIR" || die "cannot create BENCH_DIR=$DIR"
DIR=$(cd "$DIR" && pwd)
fstype=$(df -PT "$DIR" | awk 'NR == 2 { print $2 }')
case $fstype in
tmpfs | ramfs) die "BENCH_DIR=$DIR is on $fstype; O_DIRECT numbers need a real filesystem (try /var/tmp)" ;;
esac

# ---- scratch space and cleanup ------------------------------------------

# Sockets live in a short /tmp path (sun_path is 108 bytes); the image lives
# in BENCH_DIR.
WORK=$(mktemp -d /tmp/blktap-bench.XXXXXX)
RES=$WORK/results
LOGS=$WORK/logs
mkdir -p "$RES" "$LOGS"
IMG=$DIR/bench-$$.img
SERVER_PID=""
FIO_PID=""
FAILED=0

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$FIO_PID" ]; then
		kill -TERM "$FIO_PID" 2>/dev/null || true # timeout passes it on to fio
		wait "$FIO_PID" 2>/dev/null || true
	fi
	stop_server || true
	if [ "$KEEP" = 1 ]; then
		say "kept image $IMG and logs/results in $WORK"
	else
		rm -f "$IMG"
		if [ "$rc" -ne 0 ] || [ "$FAILED" -ne 0 ]; then
			say "logs and fio output kept in $WORK"
		else
			rm -rf "$WORK"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- servers --------------------------------------------------------------


# cpu_ticks PID: user+system clock ticks of a process (all its threads).
cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# start_server PEER SOCK LOG: start the server in the foreground of a
# background job, wait until it answers an NBD handshake with the right size.
start_server() {
	local peer=$1 sock=$2 log=$3 _ size
	rm -f "$sock"
	case $peer in
	tapdisk)
		"$TAPDISK" --nbd-unix "$sock" "aio:$IMG" </dev/null >"$log" 2>&1 &
		;;
	qemu-nbd)
		qemu-nbd --persistent --socket="$sock" --format=raw \
			--cache=none --aio=native "$IMG" </dev/null >"$log" 2>&1 &
		;;
	nbdkit)
		nbdkit --foreground --exit-with-parent --unix "$sock" \
			file "$IMG" cache=none </dev/null >"$log" 2>&1 &
		;;
	esac
	SERVER_PID=$!
	for _ in $(seq 1 200); do
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			wait "$SERVER_PID" 2>/dev/null || true
			SERVER_PID=""
			say "$peer exited during start-up; its log ($log):"
			tail -n 20 "$log" >&2
			return 1
		fi
		if [ -S "$sock" ]; then
			size=$(timeout 10 nbdinfo --size "$(uri_of "$sock")" </dev/null 2>>"$log") || size=""
			if [ -n "$size" ]; then
				if [ "$size" != "$IMG_BYTES" ]; then
					say "$peer reports size $size, the image has $IMG_BYTES bytes"
					return 1
				fi
				return 0
			fi
		fi
		sleep 0.05
	done
	say "$peer did not answer on $sock within 10 s; its log ($log):"
	tail -n 20 "$log" >&2
	return 1
}

# stop_server: SIGTERM, wait up to 10 s, then SIGKILL. Only the PID we started.
# ---- fio ------------------------------------------------------------------

# job_args JOB: sets JOB_ARGS to the fio options of a job.
job_args() {
	case $1 in
	randread) JOB_ARGS=(--rw=randread --bs=4k --iodepth=32) ;;
	randwrite) JOB_ARGS=(--rw=randwrite --bs=4k --iodepth=32) ;;
	seqread) JOB_ARGS=(--rw=read --bs=128k --iodepth="$SEQ_QD") ;;
	seqwrite) JOB_ARGS=(--rw=write --bs=128k --iodepth="$SEQ_QD") ;;
	esac
}

# run_one ROUND JOB PEER: one measurement; JSON in $RES/ROUND.JOB.PEER.json
run_one() {
	local round=$1 job=$2 peer=$3 tag="$1.$2.$3"
	local json=$RES/$tag.json log=$LOGS/$tag.fio.log slog=$LOGS/$tag.server.log
	local sock=$WORK/$peer.sock t0 t1 c0 c1 rc
	local -a engine
	if [ "$peer" = bare ]; then
		engine=(--ioengine=libaio --direct=1 --filename="$IMG" --size="$IMG_BYTES")
	else
		start_server "$peer" "$sock" "$slog" || { stop_server; return 1; }
		engine=(--ioengine=nbd --uri="$(uri_of "$sock")")
	fi
	job_args "$job"
	c0=0
	[ -n "$SERVER_PID" ] && c0=$(cpu_ticks "$SERVER_PID")
	t0=$(date +%s.%N)
	rc=0
	# In the background so that a signal to this script is handled at once.
	timeout -k 5 $((RAMP + RUNTIME + 60)) fio --name="$job" "${JOB_ARGS[@]}" "${engine[@]}" \
		--time_based --runtime="$RUNTIME" --ramp_time="$RAMP" --numjobs=1 \
		--norandommap --randrepeat=0 --output-format=json --output="$json" \
		</dev/null >"$log" 2>&1 &
	FIO_PID=$!
	wait "$FIO_PID" || rc=$?
	FIO_PID=""
	t1=$(date +%s.%N)
	if [ -n "$SERVER_PID" ]; then
		c1=$(cpu_ticks "$SERVER_PID")
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			say "$peer died during $job (round $round); its log:"
			tail -n 20 "$slog" >&2
			rc=1
		fi
		# Server CPU over the whole fio run (ramp included), in % of one core.
		awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" \
			'BEGIN { printf "%.1f\n", (c1 - c0) / hz / (t1 - t0) * 100 }' >"$RES/$tag.cpu"
		stop_server
	fi
	if [ "$rc" -ne 0 ]; then
		say "fio $job on $peer (round $round) failed (status $rc); fio said:"
		tail -n 20 "$log" >&2
		rm -f "$json"
		return 1
	fi
	return 0
}

# ---- the run --------------------------------------------------------------

say "image: $IMG ($SIZE on $fstype); work dir: $WORK"
say "writing the image fully (O_DIRECT, 1 MiB writes)"
fio --name=fill --ioengine=libaio --direct=1 --rw=write --bs=1M --iodepth=8 \
	--size="$SIZE" --filename="$IMG" --end_fsync=1 \
	</dev/null >"$LOGS/fill.log" 2>&1 || { tail -n 20 "$LOGS/fill.log" >&2; die "cannot write $IMG"; }
IMG_BYTES=$(stat -c %s "$IMG")
sync

njobs=$(echo "$JOBS" | wc -w)
npeers=$(echo "$PEERS" | wc -w)
say "$ROUNDS rounds x $njobs jobs x $npeers peers x $((RAMP + RUNTIME)) s" \
	"(about $((ROUNDS * njobs * npeers * (RAMP + RUNTIME + 2) / 60 + 1)) min)"

START=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
# Other work on the machine skews the figures; say so rather than hide it.
if awk -v l="${LOAD0%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 4) }'; then
	say "warning: load average is $LOAD0 on $(nproc) CPUs; other work will skew the figures"
fi
for round in $(seq 1 "$ROUNDS"); do
	for job in $JOBS; do
		for peer in $PEERS; do
			if run_one "$round" "$job" "$peer"; then
				result=$(python3 "$HERE/report.py" --one "$RES/$round.$job.$peer.json")
			else
				result=FAILED
				FAILED=$((FAILED + 1))
			fi
			printf 'bench: round %d/%d %-9s %-8s %s\n' \
				"$round" "$ROUNDS" "$job" "$peer" "$result" >&2
		done
	done
done

# ---- report ---------------------------------------------------------------

if [ -n "${BENCH_TAPDISK_REV:-}" ]; then
	commit=$BENCH_TAPDISK_REV
else
	commit=$(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [ -n "$(git -C "$TOP" status --porcelain -- tapdisk libblktap 2>/dev/null)" ]; then
		commit="$commit + uncommitted changes in tapdisk/ or libblktap/"
	fi
fi
doc_arg=()
if [ -n "$DOC" ] && [ "$FAILED" -eq 0 ]; then
	doc_arg=(--doc "$DOC")
elif [ -n "$DOC" ]; then
	say "$FAILED measurement(s) failed: not updating $DOC"
fi

python3 "$HERE/report.py" --results "$RES" "${doc_arg[@]}" \
	--peers "$PEERS" --jobs "$JOBS" --rounds "$ROUNDS" \
	--meta "date=$START" \
	--meta "machine=$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM" \
	--meta "kernel=$(uname -sr)" \
	--meta "filesystem=$fstype on $(df -P "$DIR" | awk 'NR == 2 { print $1 }') ($DIR)" \
	--meta "fio=$(fio --version)" \
	--meta "qemu-nbd=$(qemu-nbd --version | head -n 1)" \
	--meta "nbdkit=$(nbdkit --version)" \
	--meta "tapdisk=$commit" \
	--meta "image=$SIZE raw file, fully written before the runs" \
	--meta "runtime=$RUNTIME s per run after a $RAMP s ramp; $ROUNDS round(s), peers interleaved" \
	--meta "seq_qd=$SEQ_QD" \
	--meta "load average=$LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (1, 5, 15 min)"

[ "$FAILED" -eq 0 ] || die "$FAILED measurement(s) failed (logs in $WORK)"
