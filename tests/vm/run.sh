#!/bin/sh
# The kernel tests: build blktap.ko and tapctl, pack them with busybox into
# an initramfs, boot Debian's kernel in QEMU (TCG, no host modules needed)
# and take the verdict from the VM. Exit 0 on PASS.
#   KVER=...   kernel to boot (default: newest /boot/vmlinuz-6.1.*-amd64)
#   KDIR=...   its headers (default: /usr/src/linux-headers-$KVER)
#   KEEP=1     keep the work directory
#   BENCH=1    boot the benchmark instead (tests/vm/bench.sh, make bench-vm)
#   ACCEL=kvm  for the benchmark, where nested KVM works (default tcg)
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
vmlinuz=${KVER:+/boot/vmlinuz-$KVER}
vmlinuz=${vmlinuz:-$(find /boot -name 'vmlinuz-6.1.*-amd64' 2>/dev/null | sort -V | tail -n 1)}
if [ -z "$vmlinuz" ] || [ ! -r "$vmlinuz" ]; then
	echo "vm: FAIL: no kernel in /boot (apt-get install linux-image-amd64)"
	exit 1
fi
KVER=${vmlinuz#/boot/vmlinuz-}
KDIR=${KDIR:-/usr/src/linux-headers-$KVER}
moddir=/lib/modules/$KVER/kernel
for t in qemu-system-x86_64 cpio gzip gcc; do
	command -v $t >/dev/null || { echo "vm: FAIL: $t missing (make deps)"; exit 1; }
done
# busybox-static's /bin/busybox; a dynamic one would need its libraries
busybox=/bin/busybox
if [ ! -x $busybox ] || ldd $busybox >/dev/null 2>&1; then
	echo "vm: FAIL: no static $busybox (apt-get install busybox-static)"
	exit 1
fi

work=$(mktemp -d /tmp/blktap-vm.XXXXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT

echo "vm: building blktap.ko against $KDIR"
make -s -C "$top" modules KDIR="$KDIR" >"$work/build.log" 2>&1 ||
	{ cat "$work/build.log"; echo "vm: FAIL: module build"; exit 1; }
if grep -q 'warning:' "$work/build.log"; then
	cat "$work/build.log"
	echo "vm: FAIL: module build warnings"
	exit 1
fi
gcc -static -O2 -Wall -Wextra -Werror -D_GNU_SOURCE \
	-I"$top/libblktap/include" -o "$work/tapctl" "$top/tests/vm/tapctl.c" -laio

# tapdisk's ring frontend, on tapdisk's own library, when that builds
libtd=$top/build/release/libtapdisk.a
libbt=$top/build/release/libblktap.a
tapdisk_ring=
if make -s -C "$top" "$libtd" "$libbt" >"$work/tapdisk.log" 2>&1 &&
	gcc -static -O2 -Wall -Wextra -Werror -std=gnu11 -D_GNU_SOURCE \
		-I"$top/libblktap/include" -I"$top/tapdisk" \
		-o "$work/tapdisk-ring" "$top/tests/vm/tapdisk-ring.c" "$libtd" "$libbt" \
		-laio -lz -lpthread >>"$work/tapdisk.log" 2>&1; then
	tapdisk_ring=$work/tapdisk-ring
else
	echo "vm: note: tapdisk-ring does not build, its stage is skipped:"
	tail -n 5 "$work/tapdisk.log"
fi

root=$work/root
mkdir -p "$root/bin" "$root/sbin" "$root/lib" "$root/proc" "$root/sys" \
	"$root/dev" "$root/tmp" "$root/mnt"
cp "$busybox" "$root/bin/busybox"
for a in $("$busybox" --list); do
	[ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
done
cp "$work/tapctl" "$root/bin/tapctl"
[ -n "$tapdisk_ring" ] && cp "$tapdisk_ring" "$root/bin/tapdisk-ring"
cp "$top/blktap.ko" "$root/lib/"
for m in crypto/crc32c_generic lib/crc16 fs/mbcache fs/jbd2/jbd2 fs/ext4/ext4 \
	drivers/virtio/virtio drivers/virtio/virtio_ring \
	drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci_legacy_dev \
	drivers/virtio/virtio_pci drivers/block/virtio_blk drivers/block/loop; do
	[ -r "$moddir/$m.ko" ] && cp "$moddir/$m.ko" "$root/lib/"
done
drive=
if [ "${BENCH:-0}" = 1 ]; then
	cp "$top/tests/vm/bench.sh" "$root/init"
	truncate -s 1G "$work/bench.img"
	drive="-drive file=$work/bench.img,format=raw,if=virtio,cache=writeback"
else
	cp "$top/tests/vm/init.sh" "$root/init"
fi
chmod 755 "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

accel=${ACCEL:-tcg}
echo "vm: booting $vmlinuz ($accel)"
set +e
# shellcheck disable=SC2086
timeout "$([ "${BENCH:-0}" = 1 ] && echo 900 || echo 400)" qemu-system-x86_64 -m 1024 -smp 2 -accel "$accel" -cpu max \
	-kernel "$vmlinuz" -initrd "$work/initrd.gz" $drive \
	-append "console=ttyS0 panic=-1 oops=panic quiet" \
	-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
	-nographic -no-reboot -monitor none -serial stdio </dev/null \
	>"$work/console.log" 2>&1
rc=$?
set -e
grep -a -E '^(BLKTAP-VM|BLKTAP-BENCH|tapctl|tapdisk|pages|replayed|bad resp|requests|fuzz)' "$work/console.log" || true
if [ "${BENCH:-0}" = 1 ]; then
	if [ $rc -eq 1 ] && grep -a -q '^BLKTAP-BENCH: DONE' "$work/console.log"; then
		grep -a '^BLKTAP-BENCH: ' "$work/console.log" >"$top/build/bench-vm.txt" 2>/dev/null &&
			echo "vm: results in build/bench-vm.txt"
		exit 0
	fi
	tail -n 40 "$work/console.log"
	echo "vm: bench FAIL (qemu status $rc)"
	exit 1
fi
# isa-debug-exit turns "tapctl exit 0" into status 1
if [ $rc -eq 1 ] && grep -a -q '^BLKTAP-VM: PASS' "$work/console.log"; then
	echo "vm: PASS"
	exit 0
fi
echo "vm: console tail:"
tail -n 60 "$work/console.log"
echo "vm: FAIL (qemu status $rc)"
exit 1
