#!/bin/sh
# /init of the benchmark VM (make bench-vm): the same O_DIRECT load on the
# bare virtio disk, a loop device with direct I/O over it, and /dev/tapdevN
# served by tapdisk (aio driver, O_DIRECT) in zero-copy and in copy mode.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp

SECS=${SECS:-5}
fail() {
	echo "BLKTAP-BENCH: FAIL: $*"
	tapctl exit 3
	poweroff -f
}

for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev \
	virtio_pci virtio_blk loop; do
	insmod /lib/$m.ko || echo "BLKTAP-BENCH: note: insmod $m failed"
done
insmod /lib/blktap.ko || fail "insmod blktap.ko"
i=0
while [ ! -b /dev/vda ]; do
	i=$((i + 1)); [ $i -gt 50 ] && fail "no /dev/vda"; usleep 100000
done

uptime_cs() { read -r up _ < /proc/uptime; echo "${up%.*}${up#*.}"; }

# Buffered writes: the bios carry page-cache pages, which zero-copy maps.
buffered() {	# label dev
	sync; echo 3 > /proc/sys/vm/drop_caches
	t0=$(uptime_cs)
	dd if=/dev/zero of="$2" bs=1M count=256 conv=fsync 2>/dev/null || fail "dd $1"
	t1=$(uptime_cs)
	cs=$((t1 - t0 > 0 ? t1 - t0 : 1))
	echo "BLKTAP-BENCH: $1 $2 buffered-write 256M+fsync: $((256 * 100 / cs)) MiB/s"
}

run() {	# label dev
	buffered "$1" "$2"
	for w in "read 1048576 8" "write 1048576 8" "randread 4096 32" "randwrite 4096 32"; do
		# shellcheck disable=SC2086
		r=$(tapctl bench "$2" $w "$SECS") || fail "bench $1 $w"
		echo "BLKTAP-BENCH: $1 ${r#*: }"
	done
}

echo
run bare /dev/vda

losetup /dev/loop0 /dev/vda || fail "losetup"
tapctl loop-dio /dev/loop0 || fail "loop direct I/O"
run loop-dio /dev/loop0
losetup -d /dev/loop0

[ -x /bin/tapdisk-ring ] || fail "tapdisk-ring not built"
N=$(tapctl alloc) || fail "alloc"
tapdisk-ring -r /dev/blktap"$N" aio:/dev/vda >/dev/null &
TD=$!
i=0
while [ ! -b /dev/tapdev"$N" ]; do
	i=$((i + 1)); [ $i -gt 50 ] && fail "no /dev/tapdev$N"; usleep 100000
done
S=/sys/class/blktap/blktap$N
run tapdev-zerocopy /dev/tapdev"$N"
echo "BLKTAP-BENCH: pages mapped $(cat "$S"/pages_mapped), copied $(cat "$S"/pages_copied)"
echo copy > "$S"/mode
run tapdev-copy /dev/tapdev"$N"
echo "BLKTAP-BENCH: pages mapped $(cat "$S"/pages_mapped), copied $(cat "$S"/pages_copied)"
kill "$TD"
wait "$TD"
tapctl free "$N"
echo "BLKTAP-BENCH: DONE"
tapctl exit 0
poweroff -f
