#!/bin/sh
# /init of the demo VM (scripts/demo-vm.sh, make demo): the kernel path end
# to end - blktap.ko, tapdisk --ring on a qcow image the host made, ext2 on
# /dev/tapdevN, a file written and read, the tap's sysfs, a clean stop.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp

fail() {
	echo "BLKTAP-DEMO: FAIL: $*"
	tapctl exit 3
	poweroff -f
}
say() { printf '\n== %s\n' "$*"; }
run() { echo "# $*"; "$@"; }

for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
	virtio_blk crc32c_generic crc16 mbcache jbd2 ext4; do
	insmod /lib/$m.ko || fail "insmod $m"
done
i=0
while [ ! -b /dev/vda ]; do
	i=$((i + 1)); [ $i -gt 50 ] && fail "no /dev/vda"; usleep 100000
done
mount -t ext4 /dev/vda /shared || fail "mount the host's disk"

say "in the VM: $(uname -sr); the host's qcow image"
run ls -l /shared/demo.qcow

say "load blktap.ko"
run insmod /lib/blktap.ko || fail "insmod blktap.ko"
run ls -l /dev/blktap-control

say "allocate a tap (BLKTAP_CTL_ALLOC on /dev/blktap-control)"
N=$(tapctl alloc) || fail "alloc"
echo "minor $N"
run ls -l /dev/blktap"$N"

say "tapdisk serves the qcow image on the tap's ring"
echo "# tapdisk --ring /dev/blktap$N qcow:/shared/demo.qcow &"
tapdisk --ring /dev/blktap"$N" qcow:/shared/demo.qcow &
TD=$!
i=0
while [ ! -b /dev/tapdev"$N" ]; do
	i=$((i + 1)); [ $i -gt 50 ] && fail "no /dev/tapdev$N"; usleep 100000
done
run ls -l /dev/tapdev"$N"
echo "size: $(blockdev --getsize64 /dev/tapdev"$N") bytes," \
	"max request $(cat /sys/block/tapdev"$N"/queue/max_hw_sectors_kb) KiB," \
	"$(cat /sys/block/tapdev"$N"/queue/max_segments) segments"

say "format and mount it"
echo "# mke2fs -q /dev/tapdev$N"; mke2fs -q /dev/tapdev"$N" >/dev/null || fail "mke2fs"
run mount -t ext4 /dev/tapdev"$N" /mnt || fail "mount"

say "write a file and show it"
echo "# echo ... > /mnt/hello.txt"
echo "Hello from /dev/tapdev$N: a qcow image served by tapdisk through blktap.ko" > /mnt/hello.txt
run dd if=/dev/urandom of=/mnt/random.bin bs=1M count=8 2>/dev/null
run sync
run umount /mnt
echo 3 > /proc/sys/vm/drop_caches
run mount -t ext4 -o ro /dev/tapdev"$N" /mnt || fail "mount again"
run ls -l /mnt
run cat /mnt/hello.txt
run df -k /mnt

say "the tap in sysfs: /sys/class/blktap/blktap$N/*"
for f in /sys/class/blktap/blktap"$N"/*; do
	[ "${f##*/}" = uevent ] && continue
	[ -f "$f" ] && [ -r "$f" ] && printf '%-14s %s\n' "$(basename "$f")" "$(cat "$f" 2>/dev/null)"
done

say "stop: unmount, SIGTERM tapdisk (drain, flush, remove /dev/tapdev$N), free the tap"
run umount /mnt
echo "# kill -TERM $TD"
kill "$TD"
wait "$TD" || fail "tapdisk exit status $?"
echo "tapdisk exited 0"
[ -e /dev/tapdev"$N" ] && fail "/dev/tapdev$N still there"
echo "/dev/tapdev$N is gone"
run tapctl free "$N" || fail "free"
run rmmod blktap || fail "rmmod"
umount /shared
echo
echo "BLKTAP-DEMO: DONE"
tapctl exit 0
poweroff -f
