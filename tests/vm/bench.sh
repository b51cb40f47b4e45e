#!/bin/sh
# /init of the benchmark VM (make bench-vm): the same loads on the bare
# virtio disk, a loop device with direct I/O over it, and /dev/tapdevN
# served by the real tapdisk (aio driver, O_DIRECT) in zero-copy and in copy
# mode. Targets are interleaved within each round (every target runs a
# workload before the next workload starts), ROUNDS rounds; the host takes
# the medians (tests/vm/bench-doc.sh). SECS and ROUNDS come from the kernel
# command line.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp

SECS=${SECS:-3}
ROUNDS=${ROUNDS:-3}
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
buffered() {	# dev -> MiB/s
	sync; echo 3 > /proc/sys/vm/drop_caches
	t0=$(uptime_cs)
	dd if=/dev/zero of="$1" bs=1M count=128 conv=fsync 2>/dev/null || return 1
	t1=$(uptime_cs)
	cs=$((t1 - t0 > 0 ? t1 - t0 : 1))
	echo "$((128 * 100 / cs)) 0"
}

# The targets, all on /dev/vda.
losetup /dev/loop0 /dev/vda || fail "losetup"
tapctl loop-dio /dev/loop0 || fail "loop direct I/O"
N=$(tapctl alloc) || fail "alloc"
tapdisk --ring /dev/blktap"$N" aio:/dev/vda &
TD=$!
i=0
while [ ! -b /dev/tapdev"$N" ]; do
	i=$((i + 1)); [ $i -gt 50 ] && fail "no /dev/tapdev$N"; usleep 100000
done
S=/sys/class/blktap/blktap$N

dev_of() {
	case $1 in
	bare) echo /dev/vda ;;
	loop-dio) echo /dev/loop0 ;;
	tapdev-zerocopy) echo zerocopy > "$S"/mode; echo /dev/tapdev"$N" ;;
	tapdev-copy) echo copy > "$S"/mode; echo /dev/tapdev"$N" ;;
	esac
}

echo "BLKTAP-BENCH: SECS $SECS ROUNDS $ROUNDS"
r=1
while [ $r -le "$ROUNDS" ]; do
	for w in "seq-read-1M read 1048576 8" "seq-write-1M write 1048576 8" \
		"rand-read-4k randread 4096 32" "rand-write-4k randwrite 4096 32" \
		"buffered-write-1M"; do
		# shellcheck disable=SC2086
		set -- $w
		for t in bare loop-dio tapdev-zerocopy tapdev-copy; do
			dev=$(dev_of $t)
			if [ $# = 1 ]; then
				res=$(buffered "$dev") || fail "dd $t"
			else
				res=$(tapctl bench "$dev" "$2" "$3" "$4" "$SECS") || fail "bench $t $w"
				# "bench: DEV MODE bs=B qd=Q: X MiB/s Y IOPS"
				res=${res#*: }; res=${res#*: }
				res="${res%% MiB/s*} ${res#* MiB/s }"; res=${res% IOPS}
			fi
			echo "BLKTAP-BENCH: ROUND $r $t $1 $res"
		done
	done
	r=$((r + 1))
done
echo "BLKTAP-BENCH: pages mapped $(cat "$S"/pages_mapped), copied $(cat "$S"/pages_copied)"
kill "$TD"
wait "$TD" || fail "tapdisk exit status $?"
tapctl free "$N"
losetup -d /dev/loop0
echo "BLKTAP-BENCH: DONE"
tapctl exit 0
poweroff -f
