#!/bin/bash
# Crash safety of the qcow driver: tapdisk is killed with SIGKILL in the
# middle of a write-heavy load, then the image must pass qcow-check (leaked
# clusters allowed, no corruption), QEMU must open and read it the same as
# our qcow2raw, every write acknowledged before an acknowledged flush must
# read back, and no region that was never written may show anything but the
# backing file's data. Two loads: a libnbd writer with 16 writes in flight
# per flush on an overlay (512-byte clusters: copy-on-write from the backing
# file), and fio randwrite on a fresh 4 KiB-cluster image.
set -u
. "$(dirname "$0")/lib.sh"
need qemu-img nbdinfo
have_nbd=1
"$PYTHON" -c 'import nbd' 2>/dev/null || have_nbd=0
have_fio=0
command -v fio >/dev/null && fio --enghelp 2>/dev/null | grep -qw nbd && have_fio=1
[ $have_nbd = 1 ] || [ $have_fio = 1 ] || skip "neither python3-libnbd nor fio with the nbd engine"
[ -x "$TAPDISK" ] || fail "no tapdisk binary at $TAPDISK (make asan)"
BIN=$(dirname "$TAPDISK")
for t in qcow-create qcow-check qcow2raw; do
	[ -x "$BIN/$t" ] || fail "no $t at $BIN (make asan)"
done
SIZE=$((64 << 20))

cat >"$WORK/writer.py" <<'PY'
# writer.py URI ISSUED DURABLE SEED: random writes, 16 in flight, then a
# flush; logs each write before issuing it and again once flushed.
import os, random, sys
import nbd

uri, issued_path, durable_path, seed = sys.argv[1:5]
rnd = random.Random(int(seed))
h = nbd.NBD()
h.connect_uri(uri)
size = h.get_size()
slot = 65536
issued = open(issued_path, 'a')
durable = open(durable_path, 'a')
k = 0
slots = []
while True:
    if len(slots) < 16:
        slots = list(range(size // slot))
        rnd.shuffle(slots)
    batch = []
    for _ in range(16):
        s = slots.pop()
        off = s * slot + rnd.randrange(0, 4096)
        ln = rnd.randrange(1, slot - (off - s * slot))
        k += 1
        byte = k % 251 + 1
        issued.write('%d %d %d\n' % (off, ln, byte))
        issued.flush()
        os.fsync(issued.fileno())
        buf = nbd.Buffer.from_bytearray(bytearray([byte]) * ln)
        h.aio_pwrite(buf, off)
        batch.append((off, ln, byte))
    while h.aio_in_flight() > 0:
        h.poll(-1)
    h.flush()
    for off, ln, byte in batch:
        durable.write('%d %d %d\n' % (off, ln, byte))
    durable.flush()
    os.fsync(durable.fileno())
PY

cat >"$WORK/verify.py" <<'PY'
# verify.py FLAT BASE ISSUED DURABLE: the image must equal the base with
# every durable write applied in order; where a write was issued but not
# flushed (the batch in flight at the kill), anything goes.
import sys
flat, base, issued, durable = sys.argv[1:5]
f = open(flat, 'rb').read()
want = bytearray(open(base, 'rb').read())
dur = set(tuple(map(int, l.split())) for l in open(durable))
n = unsure = 0
for line in open(issued):
    rec = tuple(map(int, line.split()))
    off, ln, byte = rec
    if rec in dur:
        want[off:off + ln] = bytes([byte]) * ln
        n += 1
    else:
        want[off:off + ln] = f[off:off + ln]
        unsure += 1
if f != want:
    bad = next(i for i in range(len(f)) if f[i] != want[i])
    sys.exit('byte %d is %d, want %d' % (bad, f[bad], want[bad]))
print('%d durable writes read back (%d in flight at the kill)' % (n, unsure))
PY

# after_crash NAME IMAGE BASE: the checks after the kill.
after_crash() {
	local name=$1 img=$2 base=$3 rc
	"$BIN/qcow-check" "$img" >"$WORK/$name.check" 2>&1
	rc=$?
	[ $rc -le 1 ] || { cat "$WORK/$name.check"; fail "$name: qcow-check exit $rc after the crash"; }
	qemu-img info "$img" >/dev/null || fail "$name: QEMU cannot open the image"
	"$BIN/qcow2raw" -q "$WORK/$name.flat" "$img" || fail "$name: qcow2raw"
	qemu-img compare -q -f qcow -F raw "$img" "$WORK/$name.flat" ||
		fail "$name: QEMU and qcow2raw read the image differently"
	if [ -n "$base" ]; then
		"$PYTHON" "$WORK/verify.py" "$WORK/$name.flat" "$base" \
			"$WORK/$name.issued" "$WORK/$name.durable" || fail "$name: data check"
	fi
	ok "$name: consistent after SIGKILL ($(tail -n 1 "$WORK/$name.check"))"
}

# 1. libnbd writer on an overlay, killed after a while; three rounds.
head -c $SIZE /dev/urandom >"$WORK/base.raw"
for round in 1 2 3; do
	[ $have_nbd = 1 ] || { echo "python3-libnbd missing: no libnbd writer"; break; }
	name=overlay$round
	"$BIN/qcow-create" 0 "$WORK/$name.qcow" "$WORK/base.raw" || fail "qcow-create"
	: >"$WORK/$name.issued"
	: >"$WORK/$name.durable"
	start_tapdisk "$name" --nbd-unix "$WORK/$name.sock" "qcow:$WORK/$name.qcow"
	"$PYTHON" "$WORK/writer.py" "$(uri "$name")" "$WORK/$name.issued" \
		"$WORK/$name.durable" $round >"$WORK/$name.writer.log" 2>&1 &
	wpid=$!
	sleep $((round + 1))
	kill -0 $wpid 2>/dev/null || { cat "$WORK/$name.writer.log"; fail "$name: the writer stopped before the kill"; }
	kill -KILL "$TD_PID"
	wait "$TD_PID" 2>/dev/null
	wait $wpid 2>/dev/null
	[ -s "$WORK/$name.durable" ] || fail "$name: no write was flushed before the kill"
	after_crash "$name" "$WORK/$name.qcow" "$WORK/base.raw"
done

# 2. fio randwrite on a fresh image, killed mid-run.
if [ $have_fio = 1 ]; then
	"$BIN/qcow-create" 64 "$WORK/fio.qcow" || fail "qcow-create"
	start_tapdisk fio --nbd-unix "$WORK/fio.sock" "qcow:$WORK/fio.qcow"
	fio --name=w --ioengine=nbd --uri="$(uri fio)" --rw=randwrite --bs=4k-256k \
		--size=$SIZE --iodepth=32 --fsync=7 --time_based --runtime=30 \
		>"$WORK/fio.log" 2>&1 &
	fpid=$!
	sleep 3
	kill -KILL "$TD_PID"
	wait "$TD_PID" 2>/dev/null
	wait $fpid 2>/dev/null
	after_crash fio "$WORK/fio.qcow" ""
fi
echo "PASS"
