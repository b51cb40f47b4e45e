#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Benchmark an image-format driver (qcow or vmdk) against raw and against
# qemu-nbd serving the same format, in one run on one machine, over NBD
# (fio's nbd engine, unix socket):
#
#   raw       tapdisk --nbd-unix SOCK aio:RAW      (O_DIRECT + libaio)
#   FORMAT    tapdisk --nbd-unix SOCK FORMAT:IMG   (FORMAT = qcow or vmdk)
#   qemu-nbd  qemu-nbd -f FORMAT --cache=none --aio=native -k SOCK IMG
#
# Images: qcow made by qcow-create; vmdk made by
# qemu-img create -f vmdk -o subformat=monolithicSparse.
#
# Jobs, in every round:
#   firstwrite  1M sequential writes at QD1 over the whole image, on a fresh
#               image for each peer (a sparse raw file; a new qcow/vmdk),
#               ending with a flush (fio end_fsync, counted in the figure):
#               every write allocates on qcow/vmdk. At most
#               4 x BENCH_RUNTIME seconds (qemu-nbd is slow here).
#   read1m      1M sequential reads, QD1    } on the images the first writes
#   read128k    128k sequential reads, QD8  } made (qemu-nbd reads the image
#   randread4k  4k random reads, QD32       } tapdisk wrote), all allocated
# Before each read run the page cache of the image is dropped (data may be
# read with O_DIRECT, but metadata and buffered drivers are cached), and a
# run reads each
# block at most once (no wrap-around, random map) so it never reads back
# what it cached itself. Peers are interleaved (raw FORMAT qemu-nbd) job by
# job, each server is started fresh, and the median of the rounds is
# reported with the ratios FORMAT/raw and tapdisk-FORMAT/qemu-nbd-FORMAT.
# The table replaces the region between <!-- bench-FORMAT:begin --> and
# <!-- bench-FORMAT:end --> in doc/benchmarks.md (appended if missing).
#
# Usage: tests/bench/image.sh FORMAT [BUILD_DIR]   (FORMAT qcow or vmdk;
#        BUILD_DIR default build/release; tests/bench/qcow.sh = FORMAT qcow)
#
# Environment (defaults in brackets):
#   BENCH_RUNTIME  seconds at most per read run, after the ramp [8]
#   BENCH_RAMP     fio ramp_time of the read runs               [1]
#   BENCH_ROUNDS   rounds; the median is reported               [3]
#   BENCH_SIZE     image size (fio size syntax)                 [1G]
#   BENCH_DIR      directory for the images, on a real fs       [/var/tmp/blktap-bench]
#   BENCH_JOBS     subset/order of: firstwrite read1m read128k randread4k
#   BENCH_PEERS    subset/order of: raw FORMAT qemu-nbd
#   BENCH_DOC      markdown file to update; empty: don't write  [doc/benchmarks.md]
#   BENCH_KEEP     1: keep the images and the logs/JSON afterwards
#   BENCH_TAPDISK_REV  how to name the tapdisk build in the report
#                  [git commit of this tree, noting uncommitted changes]
set -euo pipefail

FMT=${1:-}
case $FMT in
qcow | vmdk) ;;
*) echo "usage: $0 qcow|vmdk [BUILD_DIR]" >&2; exit 2 ;;
esac
BUILD=${2:-build/release}
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)

RUNTIME=${BENCH_RUNTIME:-8}
RAMP=${BENCH_RAMP:-1}
ROUNDS=${BENCH_ROUNDS:-3}
SIZE=${BENCH_SIZE:-1G}
DIR=${BENCH_DIR:-/var/tmp/blktap-bench}
JOBS=${BENCH_JOBS:-firstwrite read1m read128k randread4k}
PEERS=${BENCH_PEERS:-raw $FMT qemu-nbd}
DOC=${BENCH_DOC-doc/benchmarks.md}
KEEP=${BENCH_KEEP:-0}

case $BUILD in /*) ;; *) BUILD=$TOP/$BUILD ;; esac
case $DOC in /* | "") ;; *) DOC=$TOP/$DOC ;; esac
TAPDISK=$BUILD/tapdisk
QCOW_CREATE=$BUILD/qcow-create

BENCH_TAG="bench-$FMT"
# shellcheck source=tests/bench/lib.sh
. "$(dirname "$0")/lib.sh"

need fio fio
need qemu-nbd qemu-utils
need nbdinfo libnbd-bin
need python3 python3
need timeout coreutils
[ -x "$TAPDISK" ] || die "$TAPDISK not found or not executable; run 'make' first"
if [ "$FMT" = qcow ]; then
	[ -x "$QCOW_CREATE" ] || die "$QCOW_CREATE not found or not executable; run 'make' first"
else
	need qemu-img qemu-utils
fi
fio --enghelp=nbd >/dev/null 2>&1 ||
	die "this fio ($(fio --version)) has no nbd ioengine (needs fio >= 3.21 built with libnbd)"
case "$RUNTIME$RAMP$ROUNDS" in
*[!0-9]*) die "BENCH_RUNTIME/RAMP/ROUNDS must be integers" ;;
esac
if [ "$ROUNDS" -lt 1 ] || [ "$RUNTIME" -lt 1 ]; then
	die "BENCH_ROUNDS and BENCH_RUNTIME must be >= 1"
fi
for j in $JOBS; do
	case $j in firstwrite | read1m | read128k | randread4k) ;;
	*) die "unknown job '$j' in BENCH_JOBS (firstwrite read1m read128k randread4k)" ;;
	esac
done
for p in $PEERS; do
	case $p in raw | "$FMT" | qemu-nbd) ;;
	*) die "unknown peer '$p' in BENCH_PEERS (raw $FMT qemu-nbd)" ;;
	esac
done

mkdir -p "$DIR" || die "cannot create BENCH_DIR=$DIR"
DIR=$(cd "$DIR" && pwd)
fstype=$(df -PT "$DIR" | awk 'NR == 2 { print $2 }')
case $fstype in
tmpfs | ramfs) die "BENCH_DIR=$DIR is on $fstype; O_DIRECT numbers need a real filesystem (try /var/tmp)" ;;
esac

# Sockets in a short /tmp path (sun_path is 108 bytes); images in BENCH_DIR.
WORK=$(mktemp -d "/tmp/blktap-bench-$FMT.XXXXXX")
RES=$WORK/results
LOGS=$WORK/logs
SCRATCH=$WORK/fio # fio's cwd: its state files land here
mkdir -p "$RES" "$LOGS" "$SCRATCH"
# IMG: the FORMAT image tapdisk writes (and everyone reads); QSCRATCH: the
# one qemu-nbd's first write goes to.
RAW=$DIR/bench-$FMT-$$.raw
IMG=$DIR/bench-$FMT-$$.$FMT
QSCRATCH=$DIR/bench-$FMT-$$.qemu.$FMT
SERVER_PID=""
FIO_PID=""
FAILED=0

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$FIO_PID" ]; then
		kill -TERM "$FIO_PID" 2>/dev/null || true
		wait "$FIO_PID" 2>/dev/null || true
	fi
	stop_server || true
	if [ "$KEEP" = 1 ]; then
		say "kept images in $DIR and logs/results in $WORK"
	else
		rm -f "$RAW" "$IMG" "$QSCRATCH"
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


# start_server PEER FILE SOCK LOG: start it, wait for an NBD handshake.
start_server() {
	local peer=$1 file=$2 sock=$3 log=$4 _
	rm -f "$sock"
	case $peer in
	raw) "$TAPDISK" --nbd-unix "$sock" "aio:$file" </dev/null >"$log" 2>&1 & ;;
	qcow | vmdk) "$TAPDISK" --nbd-unix "$sock" "$peer:$file" </dev/null >"$log" 2>&1 & ;;
	qemu-nbd)
		qemu-nbd --persistent --socket="$sock" --format="$FMT" \
			--cache=none --aio=native "$file" </dev/null >"$log" 2>&1 &
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
		if [ -S "$sock" ] &&
			timeout 10 nbdinfo --size "$(uri_of "$sock")" </dev/null >/dev/null 2>>"$log"; then
			return 0
		fi
		sleep 0.05
	done
	say "$peer did not answer on $sock within 10 s"
	return 1
}

# fresh_image PEER: the image a first write of PEER goes to, made anew.
fresh_image() {
	case $1 in
	raw)
		rm -f "$RAW"
		truncate -s "$IMG_BYTES" "$RAW"
		echo "$RAW"
		;;
	qcow | vmdk | qemu-nbd)
		local f=$IMG
		[ "$1" = qemu-nbd ] && f=$QSCRATCH
		rm -f "$f"
		if [ "$FMT" = qcow ]; then
			"$QCOW_CREATE" "$((IMG_BYTES >> 20))" "$f" >"$LOGS/qcow-create.log" 2>&1 ||
				{ cat "$LOGS/qcow-create.log" >&2; return 1; }
		else
			qemu-img create -q -f vmdk -o subformat=monolithicSparse "$f" "$IMG_BYTES" \
				>"$LOGS/qemu-img-create.log" 2>&1 ||
				{ cat "$LOGS/qemu-img-create.log" >&2; return 1; }
		fi
		echo "$f"
		;;
	esac
}

# drop_cache FILE: write back and evict FILE's pages (only this file).
drop_cache() {
	sync "$1"
	dd if="$1" iflag=nocache count=0 status=none
}

# run_one ROUND JOB PEER: one measurement; JSON in $RES/ROUND.JOB.PEER.json
run_one() {
	local round=$1 job=$2 peer=$3 tag="$1.$2.$3"
	local json=$RES/$tag.json log=$LOGS/$tag.fio.log slog=$LOGS/$tag.server.log
	local sock=$WORK/$peer.sock file rc=0
	local -a args
	case $job in
	firstwrite)
		file=$(fresh_image "$peer") || return 1
		# Capped, for qemu-nbd: its qcow driver writes a cluster at a time.
		args=(--rw=write --bs=1M --iodepth=1 --size="$IMG_BYTES" --end_fsync=1
			--runtime=$((RUNTIME * 4)))
		;;
	*)
		file=$RAW
		[ "$peer" = raw ] || file=$IMG
		[ -s "$file" ] || { say "$job: no image written for $peer (run firstwrite first)"; return 1; }
		drop_cache "$file"
		args=(--size="$IMG_BYTES" --runtime="$RUNTIME" --ramp_time="$RAMP" --randrepeat=0)
		case $job in
		read1m) args+=(--rw=read --bs=1M --iodepth=1) ;;
		read128k) args+=(--rw=read --bs=128k --iodepth=8) ;;
		randread4k) args+=(--rw=randread --bs=4k --iodepth=32) ;;
		esac
		;;
	esac
	start_server "$peer" "$file" "$sock" "$slog" || { stop_server; return 1; }
	(cd "$SCRATCH" && exec timeout -k 5 $((RAMP + RUNTIME + 600)) fio --name="$job" \
		--ioengine=nbd --uri="$(uri_of "$sock")" "${args[@]}" --numjobs=1 \
		--verify_state_save=0 --output-format=json --output="$json") \
		</dev/null >"$log" 2>&1 &
	FIO_PID=$!
	wait "$FIO_PID" || rc=$?
	FIO_PID=""
	if ! kill -0 "$SERVER_PID" 2>/dev/null; then
		say "$peer died during $job (round $round); its log:"
		tail -n 20 "$slog" >&2
		rc=1
	fi
	stop_server
	if [ "$rc" -ne 0 ]; then
		say "fio $job on $peer (round $round) failed (status $rc):"
		tail -n 20 "$log" >&2
		rm -f "$json"
		return 1
	fi
	[ "$job" = firstwrite ] && [ "$peer" = qemu-nbd ] && rm -f "$QSCRATCH"
	return 0
}

# one_line JSON: "MiB/s" (and IOPS for 4k) of one run
one_line() {
	python3 - "$1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))['jobs'][0]
d = j['write'] if j['write']['io_bytes'] else j['read']
print('%.0f MiB/s %.0f IOPS' % (d['bw'] / 1024, d['iops']))
PY
}

IMG_BYTES=$(python3 - "$SIZE" <<'PY'
import re, sys
m = re.fullmatch(r'(\d+)([kKmMgGtT]?)[iI]?[bB]?', sys.argv[1])
if not m:
    sys.exit('bad BENCH_SIZE')
print(int(m.group(1)) << {'': 0, 'k': 10, 'm': 20, 'g': 30, 't': 40}[m.group(2).lower()])
PY
) || die "BENCH_SIZE=$SIZE is not a size like 1G or 512M"
[ $((IMG_BYTES % (1 << 20))) -eq 0 ] || die "BENCH_SIZE must be a whole number of MiB"

njobs=$(echo "$JOBS" | wc -w)
npeers=$(echo "$PEERS" | wc -w)
say "images in $DIR ($fstype), $SIZE; work dir $WORK"
say "$ROUNDS rounds x $njobs jobs x $npeers peers (about $((ROUNDS * njobs * npeers * (RAMP + RUNTIME + 2) / 60 + 1)) min)"
START=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD0%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 4) }'; then
	say "warning: load average is $LOAD0 on $(nproc) CPUs; other work will skew the figures"
fi
for round in $(seq 1 "$ROUNDS"); do
	for job in $JOBS; do
		for peer in $PEERS; do
			if run_one "$round" "$job" "$peer"; then
				result=$(one_line "$RES/$round.$job.$peer.json")
			else
				result=FAILED
				FAILED=$((FAILED + 1))
			fi
			printf 'bench-%s: round %d/%d %-10s %-8s %s\n' "$FMT" \
				"$round" "$ROUNDS" "$job" "$peer" "$result" >&2
		done
	done
done

if [ -n "${BENCH_TAPDISK_REV:-}" ]; then
	commit=$BENCH_TAPDISK_REV
else
	commit=$(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [ -n "$(git -C "$TOP" status --porcelain -- tapdisk libblktap 2>/dev/null)" ]; then
		commit="$commit + uncommitted changes in tapdisk/ or libblktap/"
	fi
fi
doc=$DOC
if [ "$FAILED" -ne 0 ] && [ -n "$doc" ]; then
	say "$FAILED measurement(s) failed: not updating $doc"
	doc=""
fi
case $FMT in
qcow) IMAGE_DESC="$SIZE; qcow made by qcow-create (4 KiB clusters, 512-entry L2 tables)" ;;
vmdk) IMAGE_DESC="$SIZE; vmdk made by qemu-img create -f vmdk -o subformat=monolithicSparse (64 KiB grains, 512-entry grain tables)" ;;
esac
META="date=$START
machine=$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM
kernel=$(uname -sr)
filesystem=$fstype on $(df -P "$DIR" | awk 'NR == 2 { print $1 }') ($DIR)
fio=$(fio --version)
qemu-nbd=$(qemu-nbd --version | head -n 1)
tapdisk=$commit
image=$IMAGE_DESC
runs=$ROUNDS round(s), peers interleaved; reads at most $RUNTIME s after a $RAMP s ramp
load average=$LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"

python3 - "$FMT" "$RES" "$ROUNDS" "$JOBS" "$PEERS" "$doc" "$META" <<'PY'
import json, os, statistics, sys

fmt_, res, rounds, jobs, peers, doc, meta = sys.argv[1:8]
rounds = int(rounds)
jobs, peers = jobs.split(), peers.split()
names = {'raw': 'tapdisk aio (raw)', fmt_: 'tapdisk ' + fmt_, 'qemu-nbd': 'qemu-nbd ' + fmt_}
what = {'firstwrite': '1M seq first write, QD1 (+ flush)', 'read1m': '1M seq read, QD1',
        'read128k': '128k seq read, QD8', 'randread4k': '4k random read, QD32'}
# Targets (issue 5) are qcow's; vmdk has none: no target column.
target = {'firstwrite': 0.75, 'read1m': 0.90, 'read128k': 0.90, 'randread4k': 0.90} if fmt_ == 'qcow' else None

def value(job, peer, r):
    p = os.path.join(res, '%d.%s.%s.json' % (r, job, peer))
    if not os.path.exists(p):
        return None
    j = json.load(open(p))['jobs'][0]
    d = j['write'] if j['write']['io_bytes'] else j['read']
    return d['iops'] if job == 'randread4k' else d['bw'] / 1024

unit = lambda job: 'IOPS' if job == 'randread4k' else 'MiB/s'
med = {}
for job in jobs:
    for peer in peers:
        v = [x for x in (value(job, peer, r) for r in range(1, rounds + 1)) if x is not None]
        med[job, peer] = statistics.median(v) if v else None

def fmt(x):
    return '-' if x is None else '%.0f' % x

def ratio(a, b):
    return None if a is None or not b else a / b

out = []
head = '| job | unit | ' + ' | '.join(names[p] for p in peers)
cols = []
vs_raw = (fmt_ + ' / raw', fmt_, 'raw')
if fmt_ in peers and 'raw' in peers:
    cols.append(vs_raw)
if fmt_ in peers and 'qemu-nbd' in peers:
    cols.append(('tapdisk %s / qemu-nbd %s' % (fmt_, fmt_), fmt_, 'qemu-nbd'))
targets = target is not None and vs_raw in cols
head += ''.join(' | ' + c[0] for c in cols) + (' | target (%s / raw) |' % fmt_ if targets else ' |')
out.append(head)
out.append('|' + '---|' * (head.count('|') - 1))
for job in jobs:
    row = '| %s | %s | ' % (what[job], unit(job)) + ' | '.join(fmt(med[job, p]) for p in peers)
    for _, a, b in cols:
        r = ratio(med[job, a], med[job, b])
        row += ' | ' + ('-' if r is None else '%.2f' % r)
    if targets:
        r = ratio(med[job, fmt_], med[job, 'raw'])
        t = target[job]
        row += ' | ≥ %.2f: %s' % (t, '-' if r is None else ('met' if r >= t else 'missed'))
    out.append(row + ' |')
table = '\n'.join(out)
print(table)

rows = ['| job | peer | ' + ' | '.join('round %d' % r for r in range(1, rounds + 1)) + ' |',
        '|' + '---|' * (rounds + 2)]
for job in jobs:
    for peer in peers:
        rows.append('| %s | %s | ' % (job, peer) + ' | '.join(
            fmt(value(job, peer, r)) for r in range(1, rounds + 1)) + ' |')
every = '\n'.join(rows)

if doc:
    if fmt_ == 'qcow':
        region = ['<!-- bench-qcow:begin: generated by tests/bench/qcow.sh, do not edit inside -->',
                  '', '### qcow: tapdisk qcow vs raw vs qemu-nbd (tests/bench/qcow.sh)', '',
                  'Medians of the rounds; ratios of the medians. Targets (issue 5): first-write '
                  'sequential writes within 25% of raw, allocated-cluster reads within 10% of raw.',
                  'Reads start with the image\'s page cache dropped and read each block at most once. '
                  'All three use O_DIRECT for data (the qcow driver keeps its metadata buffered). '
                  'First writes go to a fresh sparse raw file (truncate) and a fresh qcow (qcow-create). '
                  'Figures move a lot from round to round on a shared machine: compare within a round.',
                  '', table, '', 'Every round:', '', every, '']
    else:
        region = ['<!-- bench-%s:begin: generated by tests/bench/image.sh %s, do not edit inside -->' % (fmt_, fmt_),
                  '', '### %s: tapdisk %s vs raw vs qemu-nbd (tests/bench/image.sh %s)' % (fmt_, fmt_, fmt_), '',
                  'Medians of the rounds; ratios of the medians. No targets are set for %s.' % fmt_,
                  'Reads start with the image\'s page cache dropped and read each block at most once. '
                  'tapdisk aio (raw) and qemu-nbd (--cache=none) use O_DIRECT for data; the tapdisk vmdk '
                  'driver reads and writes through the page cache (no O_DIRECT; fdatasync orders grain '
                  'allocation). '
                  'First writes go to a fresh sparse raw file (truncate) and a fresh monolithicSparse vmdk '
                  '(qemu-img create) for each peer. '
                  'Figures move a lot from round to round on a shared machine: compare within a round.',
                  '', table, '', 'Every round:', '', every, '']
    region += ['- ' + l.replace('=', ': ', 1) for l in meta.splitlines()]
    end = '<!-- bench-%s:end -->' % fmt_
    region += ['', end]
    text = open(doc).read() if os.path.exists(doc) else ''
    b = text.find('<!-- bench-%s:begin' % fmt_)
    e = text.find(end)
    new = '\n'.join(region)
    if b >= 0 and e > b:
        text = text[:b] + new + text[e + len(end):]
    else:
        text = text.rstrip('\n') + '\n\n' + new + '\n'
    open(doc, 'w').write(text)
    print('bench-%s: wrote %s' % (fmt_, doc), file=sys.stderr)
PY

[ "$FAILED" -eq 0 ] || die "$FAILED measurement(s) failed (logs in $WORK)"
