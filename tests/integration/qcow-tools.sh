#!/bin/bash
# The qcow tools' command lines: usage errors exit 2; qcow-create sizes
# (plain number = MiB, suffixes), positional and -b backing, SIZE 0 taking
# the backing size, output byte-identical to `qemu-img create -f qcow`, -r
# preallocated tables; qcow-check exit statuses 0 (clean) / 1 (leaks, -r
# repairs a leaked tail) / 2 (corrupt) with messages naming what is wrong;
# I/O errors name the file.
set -u
. "$(dirname "$0")/lib.sh"
need qemu-img cmp python3
BIN=$(dirname "$TAPDISK")
for t in qcow-create qcow-check img2qcow qcow2raw; do
	[ -x "$BIN/$t" ] || fail "no $t at $BIN (make asan)"
done
cd "$WORK" || exit 1

expect_rc() {
	local want=$1 rc
	shift
	"$@" >"$WORK/out" 2>&1
	rc=$?
	[ $rc -eq "$want" ] || { cat "$WORK/out"; fail "$* exited $rc, want $want"; }
}

# Usage errors.
expect_rc 2 "$BIN/qcow-create"
expect_rc 2 "$BIN/qcow-create" 10
expect_rc 2 "$BIN/qcow-create" -x 10 a.qcow
expect_rc 2 "$BIN/qcow-create" 10Q a.qcow
expect_rc 2 "$BIN/qcow-create" -c 3000 10 a.qcow
expect_rc 2 "$BIN/img2qcow" a.qcow
expect_rc 2 "$BIN/qcow2raw" a.raw
expect_rc 2 "$BIN/qcow-check"
expect_rc 2 "$BIN/qcow-check" a b
grep -q Usage "$WORK/out" || fail "no usage text"
for t in qcow-create img2qcow qcow2raw qcow-check; do
	expect_rc 0 "$BIN/$t" -h
done
ok "usage errors exit 2"

# Sizes and layout identical to qemu-img.
"$BIN/qcow-create" 10 mine.qcow || fail "qcow-create 10"
qemu-img create -q -f qcow theirs.qcow 10M
cmp mine.qcow theirs.qcow || fail "qcow-create 10 differs from qemu-img create 10M"
"$BIN/qcow-create" 1G big.qcow || fail "qcow-create 1G"
[ "$(qemu-img info --output=json big.qcow | grep -o '"virtual-size": [0-9]*')" = '"virtual-size": 1073741824' ] ||
	fail "qcow-create 1G: wrong size"
truncate -s 3M base.raw
"$BIN/qcow-create" 3 pos.qcow base.raw || fail "positional backing"
"$BIN/qcow-create" -b base.raw 3 opt.qcow || fail "-b backing"
"$BIN/qcow-create" 0 zero.qcow base.raw || fail "size 0 with backing"
qemu-img create -q -f qcow -b base.raw -F raw theirs-b.qcow 3M
for f in pos opt zero; do
	cmp "$f.qcow" theirs-b.qcow || fail "$f.qcow differs from qemu-img create -b"
done
expect_rc 1 "$BIN/qcow-create" 3 nob.qcow missing.raw
grep -q "missing.raw" "$WORK/out" || fail "missing backing file not named"
ok "qcow-create: sizes, backing forms, identical to qemu-img"

# -r: every L2 table preallocated, still clean and readable by QEMU.
"$BIN/qcow-create" -r 64 res.qcow || fail "qcow-create -r"
expect_rc 0 "$BIN/qcow-check" res.qcow
grep -q "32 L2 tables" "$WORK/out" || { cat "$WORK/out"; fail "-r did not preallocate 32 tables"; }
qemu-img compare -q -f qcow -F raw res.qcow <(head -c $((64 << 20)) /dev/zero) 2>/dev/null ||
	{ truncate -s 64M zero64.raw; qemu-img compare -q -f qcow -F raw res.qcow zero64.raw; } ||
	fail "QEMU reads the -r image as non-zero"
ok "qcow-create -r"

# qcow-check statuses.
head -c 3M /dev/urandom >data.raw
"$BIN/img2qcow" -q d.qcow data.raw || fail "img2qcow"
expect_rc 0 "$BIN/qcow-check" d.qcow
cp d.qcow leak.qcow
truncate -s $(( $(stat -c %s leak.qcow) + 3 * 4096 )) leak.qcow
expect_rc 1 "$BIN/qcow-check" leak.qcow
grep -q "3 leaked clusters" "$WORK/out" || { cat "$WORK/out"; fail "leaks not counted"; }
expect_rc 0 "$BIN/qcow-check" -r leak.qcow
cmp leak.qcow d.qcow || fail "qcow-check -r did not restore the file"
# Corrupt: an L2 entry past the end, and two entries for one cluster.
cp d.qcow bad.qcow
python3 - bad.qcow <<'PY'
import struct, sys
p = sys.argv[1]
f = bytearray(open(p, 'rb').read())
l1o = struct.unpack('>Q', f[40:48])[0]
l2o = struct.unpack('>Q', f[l1o:l1o + 8])[0]
e0 = f[l2o:l2o + 8]
f[l2o + 8:l2o + 16] = e0                               # cluster used twice
f[l2o + 16:l2o + 24] = struct.pack('>Q', 1 << 40)       # past the end
open(p, 'wb').write(f)
PY
expect_rc 2 "$BIN/qcow-check" bad.qcow
grep -q "past the end of the file" "$WORK/out" || { cat "$WORK/out"; fail "no past-EOF message"; }
grep -q "overlaps" "$WORK/out" || { cat "$WORK/out"; fail "no overlap message"; }
expect_rc 2 "$BIN/qcow-check" -r bad.qcow
printf 'QFI\373\0\0\0\2' >v2.qcow
truncate -s 4096 v2.qcow
expect_rc 2 "$BIN/qcow-check" v2.qcow
grep -q "version is 2" "$WORK/out" || fail "qcow2 not named"
expect_rc 3 "$BIN/qcow-check" nonexistent.qcow
grep -q "nonexistent.qcow" "$WORK/out" || fail "missing file not named"
ok "qcow-check: 0 / 1 (+ -r) / 2 / 3"

# qcow2raw and img2qcow name the file on errors.
expect_rc 1 "$BIN/qcow2raw" out.raw nonexistent.qcow
grep -q "nonexistent.qcow" "$WORK/out" || fail "qcow2raw: file not named"
expect_rc 1 "$BIN/qcow2raw" out.raw v2.qcow
grep -q "v2.qcow" "$WORK/out" || fail "qcow2raw: bad image not named"
expect_rc 1 "$BIN/img2qcow" x.qcow nonexistent.raw
grep -q "nonexistent.raw" "$WORK/out" || fail "img2qcow: file not named"
ok "errors name the file"
echo "PASS"
