#!/bin/bash
# qcow images made by QEMU, read by us: plain, compressed (qemu-img convert
# -c), with a raw backing file written by qemu-io, and a qcow -> qcow -> raw
# chain with relative backing names, a vmdk backing file. Each reads back identically through
# qcow2raw and through tapdisk's NBD server (qemu-img compare against the
# expected raw data), and passes qcow-check.
set -u
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io nbdinfo cmp python3
[ -x "$TAPDISK" ] || fail "no tapdisk binary at $TAPDISK (make asan)"
BIN=$(dirname "$TAPDISK")
for t in qcow2raw qcow-check; do
	[ -x "$BIN/$t" ] || fail "no $t at $BIN (make asan)"
done

SIZE=$((24 << 20))
# Data with zero runs, text (compressible) and random (not) clusters.
python3 - "$WORK/src.raw" $SIZE <<'PY'
import os, sys
path, size = sys.argv[1], int(sys.argv[2])
b = bytearray(size)
rnd = os.urandom(size // 4)
for i in range(0, size, 65536):
    k = (i // 65536) % 4
    if k == 0:
        b[i:i + 65536] = rnd[(i // 4) % len(rnd):][:65536].ljust(65536, b'\1')
    elif k == 1:
        b[i:i + 20000] = (b'qcow interop %d ' % i) * (20000 // len(b'qcow interop %d ' % i)) + b'x' * (20000 % len(b'qcow interop %d ' % i))
    elif k == 2:
        b[i + 3000:i + 3100] = b'\xff' * 100
with open(path, 'wb') as f:
    f.write(b)
PY

# check NAME IMAGE EXPECTED_RAW: qcow2raw, qcow-check, tapdisk over NBD.
check() {
	local name=$1 img=$2 want=$3 rc
	"$BIN/qcow2raw" -q "$WORK/$name.out" "$img" || fail "$name: qcow2raw"
	cmp "$WORK/$name.out" "$want" || fail "$name: qcow2raw output differs"
	ok "$name: qcow2raw"
	"$BIN/qcow-check" -q "$img"
	rc=$?
	[ $rc -eq 0 ] || fail "$name: qcow-check exit $rc"
	start_tapdisk "$name" --nbd-unix "$WORK/$name.sock" --readonly "qcow:$img"
	qemu-img compare -q -f raw -F raw "$(uri "$name")" "$want" ||
		fail "$name: NBD contents differ from the expected data"
	stop_tapdisk || fail "$name: tapdisk exit status"
	ok "$name: tapdisk NBD read"
}

# Plain: qemu-img convert.
qemu-img convert -f raw -O qcow "$WORK/src.raw" "$WORK/plain.qcow" || fail "qemu-img convert"
check plain "$WORK/plain.qcow" "$WORK/src.raw"

# Compressed. (qemu-img 7.2 exits 1 after writing a good compressed qcow,
# so judge by its own compare, not its exit status.)
qemu-img convert -c -f raw -O qcow "$WORK/src.raw" "$WORK/zip.qcow" 2>/dev/null
qemu-img compare -q -f raw -F qcow "$WORK/src.raw" "$WORK/zip.qcow" ||
	fail "qemu-img could not make a compressed qcow"
python3 - "$WORK/zip.qcow" <<'PY' || fail "compressed image has no compressed clusters"
import struct, sys
f = open(sys.argv[1], 'rb').read()
cb, l2b = f[32], f[33]
l1o = struct.unpack('>Q', f[40:48])[0]
l2o = struct.unpack('>Q', f[l1o:l1o + 8])[0]
ents = struct.unpack('>%dQ' % (1 << l2b), f[l2o:l2o + 8 * (1 << l2b)])
sys.exit(0 if any(e >> 63 for e in ents) else 1)
PY
check compressed "$WORK/zip.qcow" "$WORK/src.raw"

# Backing file (raw), written through QEMU: 512-byte clusters.
mkdir -p "$WORK/d"
cp "$WORK/src.raw" "$WORK/d/base.raw"
cp "$WORK/src.raw" "$WORK/d/want.raw"
(cd "$WORK/d" && qemu-img create -q -f qcow -b base.raw -F raw over.qcow $((32 << 20))) ||
	fail "qemu-img create with backing"
truncate -s $((32 << 20)) "$WORK/d/want.raw"
QIO=(-c 'write -P 0x5a 1000 3000' -c 'write -P 0x6b 2M 1M'
     -c 'write -P 0x7c 25M 4096' -c 'write -z 5M 64k' -c 'write -P 0x11 31M 1536')
qemu-io -f qcow "${QIO[@]}" "$WORK/d/over.qcow" >/dev/null || fail "qemu-io on the overlay"
qemu-io -f raw "${QIO[@]}" "$WORK/d/want.raw" >/dev/null || fail "qemu-io on the reference"
qemu-img compare -q -f qcow -F raw "$WORK/d/over.qcow" "$WORK/d/want.raw" ||
	fail "QEMU itself reads the overlay differently"
check backing "$WORK/d/over.qcow" "$WORK/d/want.raw"

# qcow -> qcow -> raw, relative names from another directory.
(cd "$WORK/d" && qemu-img create -q -f qcow -b over.qcow -F qcow top.qcow $((32 << 20))) ||
	fail "qemu-img create of the top"
cp "$WORK/d/want.raw" "$WORK/d/want2.raw"
QIO2=(-c 'write -P 0x99 0 512' -c 'write -P 0x98 2097664 100000')
qemu-io -f qcow "${QIO2[@]}" "$WORK/d/top.qcow" >/dev/null || fail "qemu-io on the top"
qemu-io -f raw "${QIO2[@]}" "$WORK/d/want2.raw" >/dev/null || fail "qemu-io on the reference"
cd /
check chain "$WORK/d/top.qcow" "$WORK/d/want2.raw"

# A vmdk backing file, found by probing its magic.
qemu-img create -q -f vmdk "$WORK/d/bv.vmdk" $((8 << 20)) || fail "qemu-img create -f vmdk"
qemu-io -f vmdk -c 'write -P 0x31 0 1M' -c 'write -P 0x32 5M 64k' "$WORK/d/bv.vmdk" >/dev/null ||
	fail "qemu-io on the vmdk"
(cd "$WORK/d" && qemu-img create -q -f qcow -b bv.vmdk -F vmdk ov.qcow $((8 << 20))) ||
	fail "qemu-img create over vmdk"
qemu-io -f qcow -c 'write -P 0x41 4096 1000' "$WORK/d/ov.qcow" >/dev/null || fail "qemu-io over vmdk"
qemu-img convert -O raw "$WORK/d/ov.qcow" "$WORK/d/ov.want" || fail "qemu-img convert"
check vmdk-backing "$WORK/d/ov.qcow" "$WORK/d/ov.want"

# Encrypted images are refused with a clear error.
qemu-img create -q -f qcow -o encryption=on,encrypt.key-secret=s0 \
	--object secret,id=s0,data=pw "$WORK/enc.qcow" 1M 2>/dev/null ||
	qemu-img create -q -f qcow --object secret,id=s0,data=pw \
	-o encrypt.format=aes,encrypt.key-secret=s0 "$WORK/enc.qcow" 1M 2>/dev/null
if [ -f "$WORK/enc.qcow" ]; then
	out=$("$BIN/qcow2raw" -q "$WORK/enc.out" "$WORK/enc.qcow" 2>&1) &&
		fail "qcow2raw read an encrypted image"
	grep -q "encrypted" <<<"$out" || fail "no clear error for an encrypted image: $out"
	ok "encrypted image refused: $out"
fi
echo "PASS"
