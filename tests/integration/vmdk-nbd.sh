#!/bin/bash
# vmdk images made by qemu-img, served by tapdisk over NBD: for each
# subformat, patterns written by qemu-io into the file read back over NBD;
# patterns written over NBD (unaligned, zeroes, across the 2 GiB extent
# boundary) read back, and after a clean stop the file passes
# `qemu-img check` and compares equal to a raw reference written the same
# way; qemu-img convert over NBD keeps an image sparse. streamOptimized
# is served read-only. A delta link (vmdk parent) takes
# fio's verified random writes at queue depth 16 (many concurrent grain
# allocations), and they are still there after a restart.
set -u
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io nbdinfo fio
[ -x "$TAPDISK" ] || fail "no tapdisk binary at $TAPDISK (make asan)"

qemu_io() {
	local fmt=$1 out
	shift
	out=$(qemu-io -f "$fmt" "$@" 2>&1) || { echo "$out"; return 1; }
	if grep -qiE 'fail|error|mismatch' <<<"$out"; then
		echo "$out"
		return 1
	fi
}

G2=$((2 << 30))
# Before tapdisk: written by qemu into the vmdk.
PRE=(-c 'write -P 0xab 0 1M' -c 'write -P 0x11 2197152 3000'
     -c 'write -P 0xcd 40M 100k' -c "write -P 0x12 $((G2 - 4096)) 8k")
PRE_CHECK=(-c 'read -P 0xab 0 1M' -c 'read -P 0x11 2197152 3000'
	   -c 'read -P 0xcd 40M 100k' -c "read -P 0x12 $((G2 - 4096)) 8k")
# Through tapdisk: partial grains, unaligned, zeroes, across extents.
QIO=(-c 'write -P 0x21 512k 64k' -c 'write -P 0x22 3145828 5000'
     -c 'write -z 40M 64k' -c 'write -P 0x23 50M 1' -c 'write -P 0x24 10M 3M'
     -c "write -P 0x25 $((G2 - 1000)) 3000" -c 'flush')
CHECK=(-c 'read -P 0x21 512k 64k' -c 'read -P 0x22 3145828 5000'
       -c 'read -P 0 40M 64k' -c 'read -P 0x23 50M 1' -c 'read -P 0x24 10M 3M'
       -c "read -P 0x25 $((G2 - 1000)) 3000")

for fmt in monolithicSparse monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat; do
	case $fmt in
	twoGb*) size=$((G2 + (64 << 20))) pre=("${PRE[@]}") pre_check=("${PRE_CHECK[@]}")
		qio=("${QIO[@]}") check=("${CHECK[@]}") ;;
	*) size=$((64 << 20)) pre=("${PRE[@]:0:6}") pre_check=("${PRE_CHECK[@]:0:6}")
	   qio=("${QIO[@]:0:10}" -c flush) check=("${CHECK[@]:0:10}") ;;
	esac
	img=$WORK/$fmt.vmdk ref=$WORK/$fmt.raw
	qemu-img create -q -f vmdk -o subformat=$fmt "$img" $size || fail "$fmt: create"
	qemu_io vmdk "$img" "${pre[@]}" || fail "$fmt: qemu-io into the file"
	qemu-img convert -O raw "$img" "$ref" || fail "$fmt: reference"

	start_tapdisk $fmt --nbd-unix "$WORK/$fmt.sock" "vmdk:$img"
	u=$(uri $fmt)
	[ "$(nbdinfo --size "$u")" = $size ] || fail "$fmt: size over NBD"
	qemu_io raw "$u" "${pre_check[@]}" || fail "$fmt: qemu's patterns over NBD"
	if [ $size -le $((64 << 20)) ]; then
		qemu-img compare -q -f raw -F raw "$u" "$ref" || fail "$fmt: compare over NBD"
	fi
	ok "$fmt: qemu-io data read through tapdisk"

	qemu_io raw "$u" "${qio[@]}" || fail "$fmt: writes over NBD"
	qemu_io raw "$ref" "${qio[@]}" || fail "$fmt: writes to the reference"
	qemu_io raw "$u" "${check[@]}" || fail "$fmt: read-back over NBD"
	stop_tapdisk || fail "$fmt: tapdisk exit status $? after SIGTERM"
	qemu-img check -q -f vmdk "$img" || fail "$fmt: qemu-img check after writes"
	qemu-img compare -q -f vmdk -F raw "$img" "$ref" ||
		fail "$fmt: qemu-img compare with the reference"
	ok "$fmt: written through tapdisk, qemu-img check and compare"
	rm -f "$WORK/$fmt"*
done

# qemu-img convert onto an empty image over NBD zeroes the whole target
# first: the grains that stay zero must not be allocated.
img=$WORK/conv.vmdk src=$WORK/conv.raw
qemu-img create -q -f raw "$src" 256M
qemu_io raw "$src" -c 'write -P 0x31 0 1M' -c 'write -P 0x32 200M 64k' || fail "convert: source"
qemu-img create -q -f vmdk "$img" 256M
before=$(stat -c %s "$img")
start_tapdisk conv --nbd-unix "$WORK/conv.sock" "vmdk:$img"
qemu-img convert -n -f raw -O raw "$src" "$(uri conv)" || fail "convert: qemu-img convert to NBD"
qemu-img compare -q -f raw -F raw "$src" "$(uri conv)" || fail "convert: compare over NBD"
stop_tapdisk || fail "convert: tapdisk exit status"
grown=$(( $(stat -c %s "$img") - before ))
[ $grown -le $((2 << 20)) ] || fail "convert: the image grew by $grown bytes for 1.06 MiB of data"
qemu-img check -q "$img" && qemu-img compare -q -F raw "$img" "$src" || fail "convert: check/compare"
ok "qemu-img convert over NBD keeps the image sparse (grew $grown bytes)"

# streamOptimized: compressed grains, read-only.
img=$WORK/stream.vmdk ref=$WORK/stream.raw
qemu-img create -q -f raw "$ref" 64M
qemu_io raw "$ref" "${PRE[@]:0:6}" -c 'write -P 0x77 63M 1M' || fail "stream: reference"
qemu-img convert -O vmdk -o subformat=streamOptimized "$ref" "$img" || fail "stream: convert"
start_tapdisk stream --readonly --nbd-unix "$WORK/stream.sock" "vmdk:$img"
qemu-img compare -q -f raw -F raw "$(uri stream)" "$ref" || fail "stream: compare over NBD"
stop_tapdisk || fail "stream: tapdisk exit status"
"$TAPDISK" --nbd-unix "$WORK/rw.sock" "vmdk:$img" >"$WORK/stream-rw.log" 2>&1 &&
	fail "stream: opened for writing"
grep -q "read-only" "$WORK/stream-rw.log" || fail "stream: no read-only message"
ok "streamOptimized: read through tapdisk, refused for writing"

# A delta link under fio: concurrent random 4k writes allocate grains.
base=$WORK/base.vmdk img=$WORK/delta.vmdk
qemu-img create -q -f vmdk "$base" 64M
qemu_io vmdk "$base" -c 'write -P 0x5a 0 64M' || fail "delta: base"
cp "$base" "$WORK/base.orig"
qemu-img create -q -f vmdk -b "$base" -F vmdk "$img" || fail "delta: create"
start_tapdisk delta --nbd-unix "$WORK/delta.sock" "vmdk:$img"
u=$(uri delta)
qemu_io raw "$u" -c 'read -P 0x5a 0 64M' || fail "delta: parent data over NBD"
FIO=(--name=rand --ioengine=nbd --rw=randwrite --bs=4k --iodepth=16
     --size=32M --offset=8M --verify=crc32c --verify_fatal=1 --randseed=7
     --verify_state_save=0)
fio "${FIO[@]}" --uri="$u" --output="$WORK/fio.log" || { cat "$WORK/fio.log"; fail "delta: fio verify"; }
qemu_io raw "$u" -c 'read -P 0x5a 0 8M' -c 'read -P 0x5a 40M 24M' ||
	fail "delta: parent data around fio's range"
stop_tapdisk || fail "delta: tapdisk exit status"
qemu-img check -q "$img" || fail "delta: qemu-img check after fio"
cmp -s "$base" "$WORK/base.orig" || fail "delta: the parent was modified"
start_tapdisk delta2 --readonly --nbd-unix "$WORK/delta2.sock" "vmdk:$img"
fio "${FIO[@]}" --uri="$(uri delta2)" --verify_only --output="$WORK/fio2.log" ||
	{ cat "$WORK/fio2.log"; fail "delta: fio's data after a restart"; }
stop_tapdisk || fail "delta2: tapdisk exit status"
ok "delta link: fio verify, qemu-img check, data kept across a restart"
