#!/bin/sh
# The kernel tests: build blktap.ko and tapctl, pack them with busybox into
# an initramfs, boot Debian's kernel in QEMU (TCG, no host modules needed)
# and take the verdict from the VM. Exit 0 on PASS.
#   KVER=...   kernel to boot (default: newest /boot/vmlinuz-6.1.*-amd64)
#   KDIR=...   its headers (default: /usr/src/linux-headers-$KVER)
#   KEEP=1     keep the work directory
#   BENCH=1    boot the benchmark instead (tests/vm/bench.sh, make bench-vm)
#   DEMO=1     boot the demo instead (tests/vm/demo.sh, scripts/demo-vm.sh;
#              DEMO_BUILD: where the host's qcow tools are)
#   ACCEL=kvm  for the benchmark, where nested KVM works (default tcg)
#   SECS=3 ROUNDS=3  benchmark: seconds per run, interleaved rounds
#   BENCH_DOC=path   benchmark: the file whose bench-vm region gets the
#              table (default doc/benchmarks.md; empty: none)
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

# the real tapdisk (--ring), linked statically from the release build's
# objects so the initramfs needs no shared libraries; the host's qcow tools
rel=$top/build/release
if ! (unset ASAN; make -s -C "$top" BUILD=build/release "$rel/tapdisk" \
		"$rel/qcow-create" "$rel/qcow-check" "$rel/qcow2raw") >"$work/tapdisk.log" 2>&1 ||
	! gcc -static -o "$work/tapdisk" "$rel/obj/tapdisk/tapdisk.o" "$rel/libtapdisk.a" \
		"$rel/libblktap.a" -laio -lz -lpthread >>"$work/tapdisk.log" 2>&1; then
	cat "$work/tapdisk.log"
	echo "vm: FAIL: tapdisk does not build (static)"
	exit 1
fi
# blktapctrl and tap-ctl for the kernel-disk stage (libxenstore when the
# build has it); without them that stage is skipped
ctrl_ok=1
(unset ASAN; make -s -C "$top" BUILD=build/release "$rel/blktapctrl" "$rel/tap-ctl") \
	>>"$work/tapdisk.log" 2>&1 || ctrl_ok=0
xs_libs=
if pkg-config --exists xenstore 2>/dev/null; then
	xs_libs=$(pkg-config --static --libs xenstore)
fi
# shellcheck disable=SC2086
[ $ctrl_ok = 1 ] && gcc -static -o "$work/blktapctrl" "$rel"/obj/blktapctrl/*.o "$rel/libtapdisk.a" \
	"$rel/libblktap.a" -laio -lz -lpthread $xs_libs >>"$work/tapdisk.log" 2>&1 || ctrl_ok=0
[ $ctrl_ok = 1 ] && gcc -static -o "$work/tap-ctl" "$rel/obj/tools/tap-ctl.o" "$rel/libtapdisk.a" \
	"$rel/libblktap.a" -laio -lz -lpthread >>"$work/tapdisk.log" 2>&1 || ctrl_ok=0
[ $ctrl_ok = 1 ] || { echo "vm: note: blktapctrl/tap-ctl do not link statically, their stage is skipped:"
	grep -v 'warning:' "$work/tapdisk.log" | tail -n 5; }

root=$work/root
mkdir -p "$root/bin" "$root/sbin" "$root/lib" "$root/proc" "$root/sys" \
	"$root/dev" "$root/tmp" "$root/mnt" "$root/shared" "$root/run"
cp "$busybox" "$root/bin/busybox"
for a in $("$busybox" --list); do
	[ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
done
cp "$work/tapctl" "$root/bin/tapctl"
cp "$work/tapdisk" "$root/bin/"
[ $ctrl_ok = 1 ] && cp "$work/blktapctrl" "$work/tap-ctl" "$root/bin/"
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
elif [ "${DEMO:-0}" = 1 ]; then
	# scripts/demo-vm.sh: a qcow image from DEMO_BUILD's qcow-create on an
	# ext4 disk the host makes and reads back afterwards
	case ${DEMO_BUILD:=build/release} in /*) ;; *) DEMO_BUILD=$top/$DEMO_BUILD ;; esac
	cp "$top/tests/vm/demo.sh" "$root/init"
	mkdir "$work/share"
	echo "vm: host: $DEMO_BUILD/qcow-create 64M demo.qcow, on an ext4 disk image for the VM"
	"$DEMO_BUILD/qcow-create" 64M "$work/share/demo.qcow" >/dev/null
	mke2fs -q -F -t ext4 -d "$work/share" "$work/shared.img" 256M >/dev/null ||
		{ echo "vm: FAIL: mke2fs -d (e2fsprogs >= 1.43)"; exit 1; }
	drive="-drive file=$work/shared.img,format=raw,if=virtio,cache=unsafe"
else
	cp "$top/tests/vm/init.sh" "$root/init"
	# The images tapdisk serves live on an ext4 disk the host made and
	# checks afterwards: a qcow image from qcow-create and the patterns the
	# VM writes (the raw image is made in the VM).
	mkdir "$work/share"
	"$rel/qcow-create" 128M "$work/share/disk.qcow" >/dev/null
	head -c 16M /dev/urandom >"$work/share/pat1"
	head -c 24M /dev/urandom >"$work/share/pat2"
	mke2fs -q -F -t ext4 -d "$work/share" "$work/shared.img" 512M >/dev/null ||
		{ echo "vm: FAIL: mke2fs -d (e2fsprogs >= 1.43)"; exit 1; }
	drive="-drive file=$work/shared.img,format=raw,if=virtio,cache=unsafe"
fi
chmod 755 "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

accel=${ACCEL:-tcg}
load0=$(cut -d' ' -f1-3 /proc/loadavg)
append="console=ttyS0 panic=-1 oops=panic quiet"
[ "${BENCH:-0}" = 1 ] && append="$append SECS=${SECS:-3} ROUNDS=${ROUNDS:-3}"
echo "vm: booting $vmlinuz ($accel)"
set +e
# shellcheck disable=SC2086
timeout "$([ "${BENCH:-0}" = 1 ] && echo 900 || echo 400)" qemu-system-x86_64 -m 1024 -smp 2 -accel "$accel" -cpu max \
	-kernel "$vmlinuz" -initrd "$work/initrd.gz" $drive \
	-append "$append" \
	-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
	-nographic -no-reboot -monitor none -serial stdio </dev/null \
	>"$work/console.log" 2>&1
rc=$?
set -e
if [ "${DEMO:-0}" = 1 ]; then
	# the VM's side of the demo, without the kernel's own messages
	tr -d '\r' <"$work/console.log" | sed -n '/^== in the VM/,/^BLKTAP-DEMO/p' | grep -a -v '^\[ *[0-9]'
	if [ $rc -ne 1 ] || ! grep -a -q '^BLKTAP-DEMO: DONE' "$work/console.log"; then
		tail -n 30 "$work/console.log"
		echo "vm: demo FAIL (qemu status $rc)"
		exit 1
	fi
	echo
	echo "== back on the host: the qcow image the VM wrote"
	debugfs -R "dump /demo.qcow $work/demo.qcow" "$work/shared.img" >/dev/null 2>&1 ||
		{ echo "vm: demo FAIL: debugfs dump"; exit 1; }
	echo "\$ qcow-check demo.qcow"
	"$DEMO_BUILD/qcow-check" "$work/demo.qcow" || { echo "vm: demo FAIL: qcow-check"; exit 1; }
	"$DEMO_BUILD/qcow2raw" -q "$work/demo.raw" "$work/demo.qcow" || { echo "vm: demo FAIL: qcow2raw"; exit 1; }
	echo "\$ qcow2raw demo.raw demo.qcow; debugfs -R 'cat /hello.txt' demo.raw"
	debugfs -R "cat /hello.txt" "$work/demo.raw" 2>/dev/null | grep . ||
		{ echo "vm: demo FAIL: no hello.txt in the image"; exit 1; }
	echo "vm: demo PASS"
	exit 0
fi
grep -a -E '^(BLKTAP-VM|BLKTAP-BENCH|tapctl|tapdisk|vm:|pages|replayed|bad resp|requests|fuzz)' "$work/console.log" || true
if [ "${BENCH:-0}" = 1 ]; then
	if [ $rc -eq 1 ] && grep -a -q '^BLKTAP-BENCH: DONE' "$work/console.log"; then
		mkdir -p "$top/build"
		tr -d '\r' <"$work/console.log" | grep -a '^BLKTAP-BENCH: ' >"$top/build/bench-vm.txt"
		echo "vm: results in build/bench-vm.txt"
		if [ -n "${BENCH_DOC-$top/doc/benchmarks.md}" ]; then
			SECS=${SECS:-3} "$top/tests/vm/bench-doc.sh" "$top/build/bench-vm.txt" \
				"${BENCH_DOC-$top/doc/benchmarks.md}" \
				"Guest: Debian's $KVER under QEMU $accel, 2 vCPUs, 1 GiB; host: $(nproc) CPUs, load average $load0 before and $(cut -d' ' -f1-3 /proc/loadavg) after. The backing store is one 1 GiB virtio-blk disk (raw file on the host, cache=writeback); every target runs on it: the bare disk with O_DIRECT, loop with direct I/O over it, /dev/tapdevN served by \`tapdisk --ring\` with the aio driver (O_DIRECT) on it. Load: \`tapctl bench\` (libaio, O_DIRECT from anonymous memory, seq 1 MiB at QD 8, random 4 KiB at QD 32); those buffers are anonymous pages, so both tapdev modes copy them: zero-copy only maps page-cache pages under writeback, which the buffered-write row (dd 128 MiB + fsync) measures. Goals (issue 4): tapdev >= 1.1x loop, >= 85% of bare, zero-copy >= copy for >= 64 KiB requests. Under TCG every guest instruction is emulated, copies included: bare and loop move data by virtio DMA done in QEMU's native code, while every tapdev request costs the guest a bounce copy (anonymous pages) and tapdisk's ring round trip, so the large-request figures say more about TCG than about the driver; ACCEL=kvm where nested KVM works."
			echo "vm: table in ${BENCH_DOC-doc/benchmarks.md} (bench-vm region)"
		fi
		exit 0
	fi
	tail -n 40 "$work/console.log"
	echo "vm: bench FAIL (qemu status $rc)"
	exit 1
fi
# isa-debug-exit turns "tapctl exit 0" into status 1
if [ $rc -eq 1 ] && grep -a -q '^BLKTAP-VM: PASS' "$work/console.log"; then
	# what the VM's tapdisks left in the images, seen from the host
	hostfail() { echo "vm: host check: $*"; echo "vm: FAIL"; exit 1; }
	out=$work/out
	mkdir "$out"
	e2fsck -fn "$work/shared.img" >"$out/e2fsck.log" 2>&1 ||
		{ cat "$out/e2fsck.log"; hostfail "the shared ext4 disk is inconsistent"; }
	for f in raw.img disk.qcow; do
		debugfs -R "dump /$f $out/$f" "$work/shared.img" >/dev/null 2>&1 ||
			hostfail "debugfs dump $f"
	done
	M=1048576
	for r in 0:pat1:16 16:pat1:16 32:pat2:24; do	# MiB offset:pattern:MiB
		IFS=: read -r o p n <<-EOF
		$r
		EOF
		cmp -n $((n * M)) -i $((o * M)):0 "$out/raw.img" "$work/share/$p" ||
			hostfail "raw.img at ${o}M lacks the data written through /dev/tapdevN"
	done
	if [ $ctrl_ok = 1 ]; then	# the disk blktapctrl made: pat1, then pat2 from 8 MiB
		debugfs -R "dump /ctl.img $out/ctl.img" "$work/shared.img" >/dev/null 2>&1 ||
			hostfail "debugfs dump ctl.img"
		cmp -n $((8 * M)) "$out/ctl.img" "$work/share/pat1" ||
			hostfail "ctl.img lacks pat1 written through blktapctrl's disk"
		cmp -n $((16 * M)) -i $((8 * M)):0 "$out/ctl.img" "$work/share/pat2" ||
			hostfail "ctl.img lacks pat2 written through blktapctrl's disk"
	fi
	# 0 clean, 1 leaked clusters only (a tapdisk killed between writing a
	# new cluster and its table leaks it), 2 and up: corruption
	rc=0
	"$rel/qcow-check" "$out/disk.qcow" || rc=$?
	[ "$rc" -le 1 ] || hostfail "qcow-check disk.qcow (exit $rc)"
	"$rel/qcow2raw" -q "$out/qcow.raw" "$out/disk.qcow" || hostfail "qcow2raw"
	cmp -n $((24 * M)) -i $((96 * M)):0 "$out/qcow.raw" "$work/share/pat2" ||
		hostfail "disk.qcow lacks the data written at 96 MiB"
	for f in pat1 pat2; do
		debugfs -R "dump /$f $out/fs-$f" "$out/qcow.raw" >/dev/null 2>&1 ||
			hostfail "no file $f in disk.qcow's filesystem"
		cmp "$out/fs-$f" "$work/share/$f" || hostfail "file $f in disk.qcow's filesystem differs"
	done
	echo "vm: host check: raw.img data, qcow-check, disk.qcow data and files$([ $ctrl_ok = 1 ] && echo ", ctl.img data"): ok"
	echo "vm: PASS"
	exit 0
fi
echo "vm: console tail:"
tail -n 60 "$work/console.log"
echo "vm: FAIL (qemu status $rc)"
exit 1
