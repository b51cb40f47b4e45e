#!/bin/bash
# qcow images written by us, read by QEMU. Through tapdisk's NBD server,
# qemu-io writes (aligned, unaligned, zeroes, concurrent aio) into images
# of every cluster size, into an overlay on a raw backing file (partial
# clusters are copied from it) and into a compressed image made by QEMU;
# afterwards qcow-check is clean and `qemu-img compare -f qcow` (QEMU's
# own reader) matches a raw reference written the same way. fio with crc32c
# verification runs over NBD on a fresh image. Images from img2qcow
# (plain and -c) and qcow-create read the same in QEMU, and qemu-img convert
# of them matches.
set -u
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io nbdinfo cmp
[ -x "$TAPDISK" ] || fail "no tapdisk binary at $TAPDISK (make asan)"
BIN=$(dirname "$TAPDISK")
for t in qcow-create qcow-check img2qcow qcow2raw; do
	[ -x "$BIN/$t" ] || fail "no $t at $BIN (make asan)"
done

SIZE=$((48 << 20))
QIO=(-c 'write -P 0xab 0 1M' -c 'write -P 0xcd 1M 64k'
     -c 'write -P 0x11 3145828 5000' -c 'write -z 4M 2M'
     -c 'write -P 0x22 8M 512' -c 'write -P 0x33 50327552 4k'
     -c 'write -P 0x44 2096640 1536' -c 'write -P 0x55 20M 3M' -c 'write -f -P 0x77 6M 4097'
     -c 'aio_write -P 0x61 30M 7000' -c 'aio_write -P 0x62 30732000 7000'
     -c 'aio_write -P 0x63 30739000 64k' -c 'aio_write -P 0x64 40M 2M'
     -c aio_flush -c 'write -P 0x12 3145900 100' -c flush)

qemu_io() {
	local out
	out=$(qemu-io "$@" 2>&1) || { echo "$out"; return 1; }
	if grep -qiE 'fail|error|mismatch' <<<"$out"; then
		echo "$out"
		return 1
	fi
}

# write_and_compare NAME IMAGE REF [MAXRC]: qemu-io through tapdisk, then
# checks; qcow-check may exit up to MAXRC (1: leaks allowed).
write_and_compare() {
	local name=$1 img=$2 ref=$3 maxrc=${4:-0} rc
	start_tapdisk "$name" --nbd-unix "$WORK/$name.sock" "qcow:$img"
	qemu_io -f raw "$(uri "$name")" "${QIO[@]}" || fail "$name: qemu-io over NBD"
	qemu_io -f raw "$ref" "${QIO[@]}" || fail "$name: qemu-io on the reference"
	qemu-img compare -q -f raw -F raw "$(uri "$name")" "$ref" ||
		fail "$name: NBD read-back differs"
	stop_tapdisk || fail "$name: tapdisk exit status"
	"$BIN/qcow-check" -q "$img"
	rc=$?
	[ $rc -le "$maxrc" ] || fail "$name: qcow-check exit $rc"
	qemu-img compare -q -f qcow -F raw "$img" "$ref" ||
		fail "$name: QEMU reads the image differently"
	ok "$name: written through tapdisk, read by QEMU"
}

for cs in 512 1K 4K 16K 64K; do
	"$BIN/qcow-create" -c $cs $((SIZE >> 20)) "$WORK/c$cs.qcow" ||
		fail "qcow-create -c $cs"
	truncate -s $SIZE "$WORK/c$cs.ref"
	write_and_compare "c$cs" "$WORK/c$cs.qcow" "$WORK/c$cs.ref"
done

# 512-byte clusters with 64 entries per table: many L2 tables.
"$BIN/qcow-create" -c 512 -l 6 $((SIZE >> 20)) "$WORK/small.qcow" || fail "qcow-create -l 6"
truncate -s $SIZE "$WORK/small.ref"
write_and_compare small "$WORK/small.qcow" "$WORK/small.ref"

# Overlay on a raw backing file made by qemu-img (relative name).
mkdir -p "$WORK/d"
head -c $SIZE /dev/urandom >"$WORK/d/base.raw"
cp "$WORK/d/base.raw" "$WORK/over.ref"
(cd "$WORK/d" && qemu-img create -q -f qcow -b base.raw -F raw over.qcow $SIZE) ||
	fail "qemu-img create with backing"
write_and_compare overlay "$WORK/d/over.qcow" "$WORK/over.ref"
cmp -s "$WORK/d/base.raw" "$WORK/over.ref" && fail "reference unchanged?"

# Overlay made by qcow-create on the same backing file.
(cd "$WORK/d" && "$BIN/qcow-create" 0 over2.qcow base.raw) || fail "qcow-create with backing"
cp "$WORK/d/base.raw" "$WORK/over2.ref"
write_and_compare overlay2 "$WORK/d/over2.qcow" "$WORK/over2.ref"

# Writes into compressed clusters.
head -c $((SIZE * 3 / 4)) /dev/urandom | base64 -w 0 | head -c $SIZE >"$WORK/text.raw"
qemu-img convert -c -f raw -O qcow "$WORK/text.raw" "$WORK/zip.qcow" 2>/dev/null
qemu-img compare -q -f raw -F qcow "$WORK/text.raw" "$WORK/zip.qcow" ||
	fail "qemu-img could not make a compressed qcow"
cp "$WORK/text.raw" "$WORK/zip.ref"
# Rewritten compressed clusters leak their old data (qcow has no refcounts).
write_and_compare compressed "$WORK/zip.qcow" "$WORK/zip.ref" 1

# fio with verification on a fresh image, if fio has the nbd engine.
if command -v fio >/dev/null && fio --enghelp 2>/dev/null | grep -qw nbd; then
	"$BIN/qcow-create" 64 "$WORK/fio.qcow" || fail "qcow-create"
	start_tapdisk fio --nbd-unix "$WORK/fio.sock" "qcow:$WORK/fio.qcow"
	(cd "$WORK" && fio --name=v --ioengine=nbd --uri="$(uri fio)" --rw=randwrite --bs=4k-64k \
		--size=32M --iodepth=16 --verify=crc32c --verify_fatal=1 \
		--do_verify=1 --randrepeat=1 >"$WORK/fio.log" 2>&1) ||
		{ cat "$WORK/fio.log"; fail "fio verify over NBD"; }
	stop_tapdisk || fail "fio: tapdisk exit status"
	"$BIN/qcow-check" -q "$WORK/fio.qcow" || fail "fio: qcow-check"
	ok "fio randwrite + verify"
fi

# Our tools' images in QEMU: img2qcow plain and compressed, qcow2raw back.
head -c $((8 << 20)) /dev/urandom >"$WORK/mix.raw"
truncate -s $((16 << 20)) "$WORK/mix.raw"
head -c $((4 << 20)) "$WORK/text.raw" >>"$WORK/mix.raw"
for c in "" -c; do
	"$BIN/img2qcow" -q $c "$WORK/i.qcow" "$WORK/mix.raw" || fail "img2qcow $c"
	"$BIN/qcow-check" -q "$WORK/i.qcow" || fail "img2qcow $c: qcow-check"
	qemu-img compare -q -f qcow -F raw "$WORK/i.qcow" "$WORK/mix.raw" ||
		fail "img2qcow $c: QEMU reads it differently"
	qemu-img convert -f qcow -O qcow "$WORK/i.qcow" "$WORK/conv.qcow" || fail "qemu-img convert"
	qemu-img compare -q "$WORK/conv.qcow" "$WORK/i.qcow" || fail "qemu-img convert of img2qcow $c output differs"
	"$BIN/qcow2raw" -q "$WORK/back.raw" "$WORK/i.qcow" || fail "qcow2raw"
	cmp "$WORK/back.raw" "$WORK/mix.raw" || fail "img2qcow $c | qcow2raw round trip differs"
	ok "img2qcow $c: QEMU reads it, qemu-img convert matches, qcow2raw round trip"
done
used=$(du -k "$WORK/i.qcow" | cut -f1)
[ "$used" -lt $((12 << 10)) ] || fail "img2qcow -c output uses $used KiB: zero clusters allocated?"
echo "PASS"
