#!/bin/bash
# The Xen suite (issue 12, path A): boot real Xen 4.17 with Debian's 6.1
# kernel as a PV dom0 under qemu-system-x86_64 (TCG), start our blktapctrl
# in dom0 and let Xen's own, unchanged /etc/xen/scripts/block-tap attach a
# PV guest's two disks through tap-ctl (aio: raw and qcow:). The guest
# writes known patterns, reads them back and powers off; dom0 checks that
# block-tap's remove left no tapdisk, minor or tapdev behind and reports
# the module's pages_mapped/pages_copied counters; the host then checks the
# images (qemu-img compare, qcow-check).
#
# Exit 0 pass, 77 skip (not root, or Xen/QEMU packages missing), 1 fail.
#   KVER=...  dom0/domU kernel (default: newest /boot/vmlinuz-6.1.*-amd64)
#   KEEP=1    keep the work directory (console log, images, initramfs)
#   TMO=...   QEMU timeout in seconds (default 160: the whole test < 3 min)
#   SMP=N     QEMU (= Xen) CPUs, default 1: faster than 2 on a loaded
#             2-CPU host, and dom0 user processes were seen to segfault
#             with -smp 2 (see README)
#   CPU=...   QEMU -cpu (default max)
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
here=$top/tests/xen
skip() { echo "xen: SKIP: $*"; exit 77; }
fail() { echo "xen: FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (make deps, qemu, mke2fs -d)"
vmlinuz=${KVER:+/boot/vmlinuz-$KVER}
vmlinuz=${vmlinuz:-$(find /boot -name 'vmlinuz-6.1.*-amd64' 2>/dev/null | sort -V | tail -n 1)}
[ -n "$vmlinuz" ] && [ -r "$vmlinuz" ] || skip "no /boot/vmlinuz-6.1.*-amd64 (apt-get install linux-image-amd64)"
KVER=${vmlinuz#/boot/vmlinuz-}
KDIR=${KDIR:-/usr/src/linux-headers-$KVER}
mods=/lib/modules/$KVER
xenbin=/usr/lib/xen-4.17/bin
xengz=$(find /boot -name 'xen-4.17*-amd64.gz' 2>/dev/null | sort -V | tail -n 1)
[ -n "$xengz" ] || skip "no /boot/xen-4.17-amd64.gz (apt-get install xen-hypervisor-4.17-amd64)"
[ -x $xenbin/xl ] || skip "no $xenbin/xl (apt-get install xen-utils-4.17)"
[ -d "$KDIR" ] || skip "no kernel headers $KDIR"
for t in qemu-system-x86_64 qemu-img cpio gzip gcc mke2fs debugfs depmod python3; do
	command -v $t >/dev/null || skip "$t missing (make deps)"
done
busybox=/bin/busybox
if [ ! -x $busybox ] || ldd $busybox >/dev/null 2>&1; then
	skip "no static $busybox (apt-get install busybox-static)"
fi

work=$(mktemp -d /tmp/blktap-xen.XXXXXX)
[ "${KEEP:-0}" = 1 ] && echo "xen: work directory $work" || trap 'rm -rf "$work"' EXIT
t0=$(date +%s)

# ---- our stack: blktap.ko, and the release build's tapdisk, blktapctrl and
# tap-ctl (their shared libraries go into dom0 by ldd, like Xen's tools)
echo "xen: building blktap.ko against $KDIR and the tools"
make -s -C "$top" modules KDIR="$KDIR" >"$work/build.log" 2>&1 ||
	{ cat "$work/build.log"; fail "module build"; }
rel=$top/build/release
ours="$rel/tapdisk $rel/blktapctrl $rel/tap-ctl"
# shellcheck disable=SC2086
(unset ASAN; make -s -C "$top" BUILD=build/release $ours "$rel/qcow-create" "$rel/qcow-check") \
	>>"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "tools build"; }

mkcpio() { (cd "$1" && find . | cpio -o -H newc --quiet | gzip -1) >"$2"; }

# ---- the guest: busybox, xen-blkfront.ko, the patterns it writes
M=1048576
head -c $((2 * M)) /dev/urandom >"$work/pat1"
head -c $((3 * M)) /dev/urandom >"$work/pat2"
g=$work/domu
mkdir -p "$g/bin" "$g/proc" "$g/sys" "$g/dev" "$g/lib"
cp $busybox "$g/bin/busybox"
cp "$mods/kernel/drivers/block/xen-blkfront.ko" "$g/lib/"
cp "$here/domu-init" "$g/init"
cp "$work/pat1" "$work/pat2" "$g/"
chmod 755 "$g/init"
mkcpio "$g" "$work/domu-initrd.gz"

# ---- dom0: Xen's tools and scripts, our stack, modprobe-able modules
r=$work/dom0
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,mnt,etc/xen,boot,var/lib/xen,var/log/xen,var/lock,lib64}
cp $busybox "$r/bin/busybox"
ln -s ../bin/busybox "$r/sbin/modprobe"
for a in $($busybox --list); do
	[ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"
done
# the hotplug scripts want bash, util-linux flock and coreutils stat
cp /bin/bash /usr/bin/flock "$r/bin/"
rm -f "$r/bin/stat"; cp /usr/bin/stat "$r/bin/stat"
mkdir -p "$r$xenbin"
xbins="xl xenstored xenconsoled xen-init-dom0 xenstore-control"
for b in $xbins; do cp -a "$xenbin/$b" "$r$xenbin/"; done
cp /usr/bin/xenstore "$r/usr/bin/"
for t in read write ls list rm exists chmod watch; do ln -sf xenstore "$r/usr/bin/xenstore-$t"; done
libs=$(for b in $xbins; do ldd "$xenbin/$b"; done; ldd /usr/bin/xenstore /bin/bash /usr/bin/flock /usr/bin/stat $ours)
for lib in $(echo "$libs" | awk '/=>/ && $3 ~ /^\// {print $3} /^\t\/.*ld-linux/ {print $1}' | sort -u) \
	/lib/x86_64-linux-gnu/libgcc_s.so.1; do
	mkdir -p "$r$(dirname "$lib")"
	cp -L "$lib" "$r$lib"
done
cp -a /usr/lib/xen-4.17/boot "$r/usr/lib/xen-4.17/" 2>/dev/null || true
cp -a /etc/xen/scripts /etc/xen/xl.conf "$r/etc/xen/"
echo 'root:x:0:0:root:/root:/bin/sh' >"$r/etc/passwd"
# shellcheck disable=SC2086
cp $ours "$r/usr/sbin/"
# Debian's modules plus ours under extra/, depmod'ed so that block-tap's
# "modprobe blktap" (busybox modprobe) works as on a real dom0
km=$r/lib/modules/$KVER
for m in drivers/xen/xen-privcmd drivers/xen/xenfs/xenfs drivers/xen/xen-evtchn \
	drivers/xen/xen-gntdev drivers/xen/xen-gntalloc drivers/block/xen-blkback/xen-blkback \
	drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev \
	drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci drivers/block/virtio_blk \
	crypto/crc32c_generic lib/crc16 fs/mbcache fs/jbd2/jbd2 fs/ext4/ext4; do
	[ -r "$mods/kernel/$m.ko" ] || continue	# built in
	mkdir -p "$km/kernel/$(dirname $m)"
	cp "$mods/kernel/$m.ko" "$km/kernel/$m.ko"
done
mkdir -p "$km/extra"
cp "$top/blktap.ko" "$km/extra/"
cp "$mods"/modules.order "$mods"/modules.builtin* "$km/" 2>/dev/null || true
depmod -b "$r" "$KVER" || fail "depmod"
python3 - "$vmlinuz" "$r/boot/vmlinux" <<'PY' || cp "$vmlinuz" "$r/boot/vmlinux"
# the guest's kernel decompressed once here: saves libxenguest ~4 s of XZ under TCG
import lzma, sys
d = open(sys.argv[1], 'rb').read()
out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(d[d.find(b'\xfd7zXZ\x00'):])
assert out[:4] == b'\x7fELF'
open(sys.argv[2], 'wb').write(out)
PY
cp "$work/domu-initrd.gz" "$r/boot/"
cp "$here/dom0-init" "$r/init"
cp "$here/guest.cfg" "$r/etc/xen/"
chmod 755 "$r/init"
mkcpio "$r" "$work/dom0-initrd.gz"

# ---- the images, on an ext4 disk dom0 mounts at /images
s=$work/share
mkdir "$s"
truncate -s 64M "$s/a.img"
"$rel/qcow-create" 64M "$s/b.qcow" >/dev/null || fail "qcow-create"
mke2fs -q -F -t ext4 -d "$s" "$work/images.ext4" 256M || fail "mke2fs -d"
zcat "$xengz" >"$work/xen.elf"
echo "xen: prepared in $(($(date +%s) - t0))s; booting Xen + dom0 (TCG)"

# ---- boot
t1=$(date +%s)
set +e
timeout "${TMO:-160}" qemu-system-x86_64 -accel tcg -machine q35 -cpu "${CPU:-max}" -m 2048 -smp ${SMP:-1} \
	-nographic -no-reboot -monitor none -serial stdio \
	-kernel "$work/xen.elf" \
	-append "console=com1 com1=115200,8n1 dom0_mem=768M,max:768M noreboot smap=0" \
	-initrd "$vmlinuz console=hvc0 earlyprintk=xen quiet,$work/dom0-initrd.gz" \
	-drive "file=$work/images.ext4,format=raw,if=virtio,cache=unsafe" \
	</dev/null >"$work/console.log" 2>&1
rc=$?
set -e
tr -d '\r' <"$work/console.log" >"$work/console.txt"
echo "xen: qemu exited ($rc) after $(($(date +%s) - t1))s"
grep -a -E '^(XENTEST|DOMU)' "$work/console.txt" || true
if ! grep -a -q -E '^XENTEST: \[[0-9.]+s\] PASS$' "$work/console.txt"; then
	echo "xen: console tail:"
	tail -n 80 "$work/console.txt"
	fail "dom0 did not report PASS"
fi

# ---- the host checks what the guest left in the images
o=$work/out
mkdir "$o"
e2fsck -fn "$work/images.ext4" >"$o/e2fsck.log" 2>&1 ||
	{ cat "$o/e2fsck.log"; fail "the images' ext4 disk is inconsistent"; }
for f in a.img b.qcow; do
	debugfs -R "dump /$f $o/$f" "$work/images.ext4" >/dev/null 2>&1 || fail "debugfs dump $f"
done
# what the guest wrote (domu-init): a.img pat1 at 0 and 8 MiB, pat2 at 20 MiB;
# b.qcow pat2 at 0 and pat1 at 33 MiB
expect() {	# expect FILE SIZE_MIB OFFSET_MIB:PATTERN ...
	local f=$1 size=$2; shift 2
	truncate -s "${size}M" "$f"
	for x in "$@"; do
		dd if="$work/${x#*:}" of="$f" bs=1M seek="${x%%:*}" conv=notrunc 2>/dev/null
	done
}
expect "$o/a.expect" 64 0:pat1 8:pat1 20:pat2
expect "$o/b.expect" 64 0:pat2 33:pat1
qemu-img compare -f raw -F raw "$o/a.expect" "$o/a.img" || fail "a.img differs from what the guest wrote"
"$rel/qcow-check" "$o/b.qcow" || fail "qcow-check b.qcow"
qemu-img compare -f raw -F qcow "$o/b.expect" "$o/b.qcow" || fail "b.qcow differs from what the guest wrote"
echo "xen: host check: a.img (qemu-img compare), b.qcow (qcow-check, qemu-img compare): ok"
echo "xen: PASS in $(($(date +%s) - t0))s"
