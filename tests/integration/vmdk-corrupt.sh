#!/bin/bash
# tapdisk on broken vmdk images: each must fail to start with exit status 1
# (never a crash or a sanitizer report) and one message naming the file and
# saying what is wrong. Images start as qemu-img made them and get one
# field overwritten.
set -u
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io python3
[ -x "$TAPDISK" ] || fail "no tapdisk binary at $TAPDISK (make asan)"

# poke FILE OFFSET FORMAT VALUE: overwrite a little-endian field.
poke() {
	python3 - "$@" <<'PY'
import struct, sys
path, off, fmt, val = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4], 0)
with open(path, "r+b") as f:
    f.seek(off)
    f.write(struct.pack("<" + fmt, val))
PY
}

# expect NAME FILE TEXT: tapdisk refuses FILE with a message holding TEXT.
expect() {
	local name=$1 file=$2 text=$3 rc
	# An image that opens would be served until stopped: bound the wait.
	timeout -s KILL 30 "$TAPDISK" --nbd-unix "$WORK/x.sock" "vmdk:$file" \
		>"$WORK/$name.log" 2>&1
	rc=$?
	[ $rc = 1 ] || { cat "$WORK/$name.log"; fail "$name: exit status $rc, want 1"; }
	grep -q -- "$file" "$WORK/$name.log" || { cat "$WORK/$name.log"; fail "$name: message does not name $file"; }
	grep -q -- "$text" "$WORK/$name.log" || { cat "$WORK/$name.log"; fail "$name: message does not say '$text'"; }
	[ -e "$WORK/x.sock" ] && fail "$name: a socket was left behind"
	ok "$name: $(tail -n 1 "$WORK/$name.log")"
}

fresh() {
	rm -f "$WORK/d.vmdk"
	qemu-img create -q -f vmdk "$WORK/d.vmdk" 64M || fail "qemu-img create"
	qemu-io -f vmdk -c 'write -P 1 0 1M' "$WORK/d.vmdk" >/dev/null || fail "qemu-io"
}
d=$WORK/d.vmdk

fresh; poke "$d" 0 I 0x12345678;		expect magic "$d" "not a VMDK image"
fresh; poke "$d" 20 Q 0;			expect grain0 "$d" "grain size is 0"
fresh; poke "$d" 20 Q 0x10000000000;		expect grainhuge "$d" "grain size"
fresh; poke "$d" 20 Q 100;			expect grainpow2 "$d" "power of two"
fresh; poke "$d" 44 I 0;			expect gtes "$d" "entries per grain table"
fresh; poke "$d" 56 Q 0x100000;			expect gd "$d" "grain directory at sector"
fresh; poke "$d" 48 Q 0x100000;			expect rgd "$d" "redundant grain directory"
fresh; poke "$d" 4 I 9;				expect version "$d" "version 9"
fresh; truncate -s 16384 "$d";			expect truncated "$d" "past the end of the file"
fresh; sed -i '1,40s/monolithicSparse/monolithicSpars3/' "$d"
expect createtype "$d" 'createType "monolithicSpars3" is not supported'

qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse "$WORK/t.vmdk" 64M
rm "$WORK/t-s001.vmdk";				expect extent "$WORK/t.vmdk" "t-s001.vmdk: No such file"
qemu-img create -q -f vmdk "$WORK/b.vmdk" 4M
qemu-img create -q -f vmdk -b "$WORK/b.vmdk" -F vmdk "$WORK/c.vmdk"
rm "$WORK/b.vmdk";				expect parent "$WORK/c.vmdk" "parentFileNameHint"
printf '# Disk DescriptorFile\ncreateType="monolithicFlat"\nRW 8 FLAT "f.raw" 0 junk\n' >"$WORK/e.vmdk"
expect descriptor "$WORK/e.vmdk" "line 3"
qemu-img create -q -f raw "$WORK/s.raw" 1M
qemu-img convert -O vmdk -o subformat=streamOptimized "$WORK/s.raw" "$WORK/s.vmdk"
expect stream-rw "$WORK/s.vmdk" "read-only"
