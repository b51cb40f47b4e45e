#!/bin/bash
# tapdisk's NBD server with real clients, for each driver (aio, sync, ram):
# patterns written with qemu-io (aligned, unaligned, zeroes) checked with
# qemu-io and `qemu-img compare` against a reference file written the same
# way; qemu-img info and convert; nbdinfo (size, export list); fio with
# crc32c verification; nbdcopy in and out over several connections; a clean
# SIGTERM (exit 0, socket removed) after which aio and sync have the data in
# the file and ram has left it alone. aio is also served on TCP.
set -u
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io nbdinfo nbdcopy fio cmp
[ -x "$TAPDISK" ] || fail "no tapdisk binary at $TAPDISK (make asan)"

SIZE=$((64 << 20))
head -c $SIZE /dev/urandom >"$WORK/base.bin"
head -c $SIZE /dev/urandom >"$WORK/random.bin"

# The same writes go to the reference file and over NBD. 3M+100 is not
# sector-aligned: with O_DIRECT that is a read-modify-write in tapdisk.
QIO=(-c 'write -P 0xab 0 1M' -c 'write -P 0xcd 1M 64k'
     -c 'write -P 0x11 3145828 5000' -c 'write -z 4M 2M'
     -c 'write -P 0x22 8M 512' -c 'write -P 0x33 67104768 4k' -c 'flush')
CHECK=(-c 'read -P 0xab 0 1M' -c 'read -P 0xcd 1M 64k'
       -c 'read -P 0x11 3145828 5000' -c 'read -P 0 4M 2M'
       -c 'read -P 0x22 8M 512' -c 'read -P 0x33 67104768 4k')

qemu_io() {
	local out
	out=$(qemu-io -f raw "$@" 2>&1) || { echo "$out"; return 1; }
	if grep -qiE 'fail|error|mismatch' <<<"$out"; then
		echo "$out"
		return 1
	fi
}

for drv in aio sync ram; do
	img=$WORK/$drv.img ref=$WORK/$drv.ref
	cp "$WORK/base.bin" "$img"
	cp "$WORK/base.bin" "$ref"
	extra=()
	if [ $drv = aio ]; then
		port=$(free_port)
		extra=(--nbd-tcp "127.0.0.1:$port")
	fi
	start_tapdisk $drv --nbd-unix "$WORK/$drv.sock" "${extra[@]}" \
		--export-name disk "$drv:$img"
	u=$(uri $drv disk)

	size=$(nbdinfo --size "$u") || fail "$drv: nbdinfo --size"
	[ "$size" = $SIZE ] || fail "$drv: nbdinfo says $size bytes, want $SIZE"
	nbdinfo --list "$(uri $drv)" | grep -q 'export="disk"' ||
		fail "$drv: nbdinfo --list does not show export disk"
	nbdinfo --json "$u" | grep -q '"block_size_minimum"' ||
		fail "$drv: no block size constraints advertised"
	ok "$drv: nbdinfo"

	qemu_io "$u" "${QIO[@]}" || fail "$drv: qemu-io writes over NBD"
	qemu_io "$ref" "${QIO[@]}" || fail "$drv: qemu-io writes to the reference"
	qemu_io "$u" "${CHECK[@]}" || fail "$drv: qemu-io read-back"
	qemu-img compare -q -f raw -F raw "$u" "$ref" ||
		fail "$drv: qemu-img compare with the reference"
	# The empty export name selects the default (only) export.
	qemu-img compare -q -f raw -F raw "$(uri $drv)" "$ref" ||
		fail "$drv: qemu-img compare via the empty export name"
	ok "$drv: qemu-io patterns and qemu-img compare"

	qemu-img info -f raw "$u" | grep -q "virtual size: 64 MiB" ||
		fail "$drv: qemu-img info"
	qemu-img convert -f raw -O raw "$u" "$WORK/$drv.conv" ||
		fail "$drv: qemu-img convert from NBD"
	cmp -s "$WORK/$drv.conv" "$ref" || fail "$drv: qemu-img convert output differs"
	rm -f "$WORK/$drv.conv"
	ok "$drv: qemu-img info and convert"

	if [ $drv = aio ]; then
		t="nbd://127.0.0.1:$port/disk"
		[ "$(nbdinfo --size "$t")" = $SIZE ] || fail "aio: nbdinfo over TCP"
		qemu-img compare -q -f raw -F raw "$t" "$ref" ||
			fail "aio: qemu-img compare over TCP"
		ok "aio: TCP"
	fi

	fio --name=rand --ioengine=nbd --uri="$u" --rw=randwrite --bs=4k \
	    --iodepth=16 --size=16M --verify=crc32c --verify_fatal=1 --verify_state_save=0 \
	    --output="$WORK/fio-$drv-rand.log" ||
		{ cat "$WORK/fio-$drv-rand.log"; fail "$drv: fio randwrite verify"; }
	fio --name=seq --ioengine=nbd --uri="$u" --rw=write --bs=1M \
	    --iodepth=4 --offset=32M --size=32M --verify=crc32c --verify_state_save=0 \
	    --verify_fatal=1 --numjobs=2 --output="$WORK/fio-$drv-seq.log" ||
		{ cat "$WORK/fio-$drv-seq.log"; fail "$drv: fio write verify"; }
	ok "$drv: fio --verify=crc32c"

	nbdcopy "$WORK/random.bin" "$u" || fail "$drv: nbdcopy in"
	nbdcopy "$u" "$WORK/$drv.out" || fail "$drv: nbdcopy out"
	cmp -s "$WORK/random.bin" "$WORK/$drv.out" ||
		fail "$drv: nbdcopy out differs from what went in"
	ok "$drv: nbdcopy in and out"

	stop_tapdisk || fail "$drv: tapdisk exited with status $? on SIGTERM"
	[ ! -e "$WORK/$drv.sock" ] || fail "$drv: socket left behind"
	if [ $drv = ram ]; then
		cmp -s "$WORK/base.bin" "$img" || fail "ram: the file was modified"
	else
		cmp -s "$WORK/random.bin" "$img" ||
			fail "$drv: the file does not hold what was written"
	fi
	ok "$drv: clean stop"
	rm -f "$img" "$ref" "$WORK/$drv.out"
done
