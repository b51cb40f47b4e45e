#!/bin/sh
# /init of the blktap test VM: one boot, every kernel test, a verdict on the
# console ("BLKTAP-VM: PASS" or "BLKTAP-VM: FAIL: why") and as the QEMU exit
# status through isa-debug-exit (tapctl exit).
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mkdir -p /mnt
echo 1 > /proc/sys/kernel/printk_ratelimit_burst 2>/dev/null

S=/sys/class/blktap/blktap0
P=/sys/module/blktap/parameters
SRV=

fail() {
	echo "BLKTAP-VM: FAIL: $*"
	dmesg | tail -n 40
	tapctl exit 3
	poweroff -f
}
step() { echo "BLKTAP-VM: step: $*"; }
attr() { cat "$S/$1"; }

# Wait up to $2 seconds for $1 to exist.
wait_for() {
	i=0
	while [ ! -e "$1" ]; do
		i=$((i + 1))
		[ $i -gt $(($2 * 10)) ] && return 1
		usleep 100000
	done
}

start_server() {
	tapctl serve "$@" &
	SRV=$!
	i=0
	until [ "$(attr pid)" = "$SRV" ]; do
		i=$((i + 1))
		[ $i -gt 100 ] && fail "server $* did not attach"
		usleep 100000
	done
}

stop_server() {
	kill "$SRV"
	wait "$SRV" || fail "server exited with $?"
	SRV=
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# Compare $3 MiB of file $1 at MiB offset $2 with $4.
cmp_region() {
	dd if="$1" of=/tmp/region bs=1M skip="$2" count="$3" 2>/dev/null
	cmp /tmp/region "$4" || fail "$1 at ${2}M differs from $4"
	rm -f /tmp/region
}

step "load"
for m in crc32c_generic crc16 mbcache jbd2 ext4; do
	insmod /lib/$m.ko || fail "insmod $m"
done
insmod /lib/blktap.ko attach_timeout=4 || fail "insmod blktap.ko"
[ -c /dev/blktap-control ] || fail "no /dev/blktap-control"
N=$(tapctl alloc) || fail "alloc"
[ "$N" = 0 ] || fail "first tap is $N, not 0"
wait_for /dev/blktap0 5 || fail "no /dev/blktap0"
[ "$(attr mode)" = zerocopy ] || fail "mode $(attr mode)"

step "abi checks"
tapctl abi 0 || fail "abi checks"

step "create device"
truncate -s 256M /tmp/disk.img
start_server -p 0 /tmp/disk.img
tapctl serve -c 0 /tmp/disk.img 2>/dev/null && fail "second server attached"
stop_server
start_server -p -c 0 /tmp/disk.img >/tmp/probe.log
wait_for /dev/tapdev0 5 || fail "no /dev/tapdev0"
[ "$(attr name)" = tapdev0 ] || fail "name $(attr name)"
[ "$(blockdev --getsize64 /dev/tapdev0)" = 268435456 ] || fail "size"
[ "$(cat /sys/block/tapdev0/queue/max_segments)" = 128 ] || fail "max_segments"
[ "$(cat /sys/block/tapdev0/queue/max_hw_sectors_kb)" = 512 ] || fail "max_hw_sectors_kb"

step "page-cache I/O, zero-copy"
dd if=/dev/urandom of=/tmp/pat bs=1M count=16 2>/dev/null
dd if=/tmp/pat of=/dev/tapdev0 bs=1M conv=fsync 2>/dev/null || fail "dd write"
drop_caches
cmp_region /dev/tapdev0 0 16 /tmp/pat
cmp_region /tmp/disk.img 0 16 /tmp/pat
[ "$(attr pages_mapped)" -gt 0 ] || fail "nothing mapped zero-copy"
stop_server
grep -q " 0 writable" /tmp/probe.log || fail "write-request pages were writable: $(cat /tmp/probe.log)"
grep -q " [1-9][0-9]* read-only faults" /tmp/probe.log || fail "no write-request page was probed"
start_server 0 /tmp/disk.img
echo "pages mapped $(attr pages_mapped), copied $(attr pages_copied)"

step "page-cache I/O, copy mode"
echo copy > "$S/mode"
copied=$(attr pages_copied)
mapped=$(attr pages_mapped)
dd if=/tmp/pat of=/dev/tapdev0 bs=64k seek=512 conv=fsync 2>/dev/null || fail "dd write (copy)"
drop_caches
cmp_region /dev/tapdev0 32 16 /tmp/pat
cmp_region /tmp/disk.img 32 16 /tmp/pat
[ "$(attr pages_mapped)" = "$mapped" ] || fail "copy mode mapped pages"
[ "$(attr pages_copied)" -gt "$copied" ] || fail "copy mode copied nothing"
echo zerocopy > "$S/mode"

step "O_DIRECT from anonymous memory"
tapctl dio /dev/tapdev0 || fail "dio"

step "discard"
blkdiscard -o 1048576 -l 1048576 /dev/tapdev0 || fail "blkdiscard"
drop_caches
dd if=/dev/zero of=/tmp/zero bs=1M count=1 2>/dev/null
cmp_region /dev/tapdev0 1 1 /tmp/zero

step "write-zeroes"
dd if=/tmp/pat of=/dev/tapdev0 bs=1M seek=2 count=1 conv=fsync 2>/dev/null || fail "dd before zeroout"
tapctl zeroout /dev/tapdev0 2097152 1048576 || fail "BLKZEROOUT"
drop_caches
cmp_region /dev/tapdev0 2 1 /tmp/zero
cmp_region /tmp/disk.img 2 1 /tmp/zero

step "ext2 filesystem"
if [ -d /sys/module/ext4 ]; then
	mke2fs -q /dev/tapdev0 >/dev/null || fail "mke2fs"
	mount -t ext4 /dev/tapdev0 /mnt || fail "mount"
	cp /tmp/pat /mnt/pat || fail "cp"
	umount /mnt || fail "umount"
	drop_caches
	mount -t ext4 /dev/tapdev0 /mnt || fail "mount again"
	cmp /mnt/pat /tmp/pat || fail "file differs after remount"
	umount /mnt
else
	echo "BLKTAP-VM: note: ext4 modules missing, filesystem test skipped"
fi

step "kill -9 the server during writes, restart it"
stop_server
start_server -d 100000 0 /tmp/disk.img
dd if=/dev/urandom of=/tmp/pat2 bs=1M count=24 2>/dev/null
dd if=/tmp/pat2 of=/dev/tapdev0 bs=1M seek=64 conv=fsync 2>/dev/null &
DD=$!
sleep 2
kill -9 "$SRV"
wait "$SRV" 2>/dev/null
sleep 1
[ "$(attr pid)" = 0 ] || fail "pid after kill: $(attr pid)"
echo "requests (pending, held) after kill: $(attr requests)"
kill -0 "$DD" 2>/dev/null || fail "dd finished before the server was killed"
start_server 0 /tmp/disk.img
wait "$DD" || fail "dd across the restart"
[ "$(attr requeued)" -gt 0 ] || fail "nothing was replayed"
echo "replayed $(attr requeued) requests"
cmp_region /tmp/disk.img 64 24 /tmp/pat2
drop_caches
cmp_region /dev/tapdev0 64 24 /tmp/pat2

step "malformed responses"
stop_server
start_server -e 0 /tmp/disk.img
EV=$SRV
tapctl pread /dev/tapdev0 0 4096 || fail "read with garbage around its response"
tapctl pread /dev/tapdev0 4096 4096 2>/dev/null && fail "read with a positive status succeeded"
tapctl pread /dev/tapdev0 8192 4096 || fail "read after a bad status"
tapctl pread /dev/tapdev0 12288 4096 &
PR=$!
wait "$EV"
bad=$(attr bad_responses)
[ "$bad" -ge 5 ] || fail "bad_responses $bad, want >= 5"
echo "bad responses rejected: $bad"
start_server 0 /tmp/disk.img
wait "$PR" || fail "read held by the evil server not replayed"
cmp_region /dev/tapdev0 64 24 /tmp/pat2

step "fuzzed responses"
stop_server
bad0=$(attr bad_responses)
start_server -f 4 0 /tmp/disk.img
dd if=/dev/tapdev0 of=/dev/null bs=4k count=4096 iflag=direct 2>/dev/null &
R1=$!
tapctl dio /dev/tapdev0 >/dev/null 2>&1 &
R2=$!
wait "$SRV" 2>/dev/null
echo "fuzz: bad responses rejected: $(($(attr bad_responses) - bad0)), requests $(attr requests)"
start_server 0 /tmp/disk.img
# a lying server may fail or garble its own disk's I/O; the kernel survives
wait "$R1"
wait "$R2"
drop_caches
cmp_region /dev/tapdev0 64 24 /tmp/pat2
tapctl dio /dev/tapdev0 || fail "dio after fuzzing"

step "no tapdisk: attach_timeout fails queued I/O"
stop_server
t0=$(date +%s)
tapctl pread /dev/tapdev0 0 4096 2>/dev/null && fail "read without a server succeeded"
t1=$(date +%s)
[ $((t1 - t0)) -ge 2 ] || fail "read failed after $((t1 - t0)) s, before the timeout"
[ "$(attr timed_out)" -ge 1 ] || fail "timed_out not counted"
start_server 0 /tmp/disk.img
tapctl pread /dev/tapdev0 0 4096 || fail "read after reattach"

step "remove the device with I/O pending"
echo 0 > "$P/attach_timeout"
stop_server
tapctl pread /dev/tapdev0 0 4096 2>/dev/null &
PR=$!
sleep 1
[ "$(attr requests)" = "1 0" ] || fail "requests $(attr requests), want 1 pending"
tapctl free 0 || fail "free with a pending request"
wait "$PR" && fail "pending read succeeded after remove"
[ -e /dev/tapdev0 ] && fail "/dev/tapdev0 still there"
[ -e /dev/blktap0 ] && fail "/dev/blktap0 still there"

# --- the real tapdisk (--ring) on images of the host's shared ext4 disk ---

# Start tapdisk on /dev/blktap$N and wait until it has mapped the ring.
start_tapdisk() {
	tapdisk --ring /dev/blktap"$N" "$@" &
	TD=$!
	i=0
	until [ "$(attr pid)" = "$TD" ]; do
		i=$((i + 1))
		[ $i -gt 100 ] && fail "tapdisk $* did not attach"
		kill -0 "$TD" 2>/dev/null || fail "tapdisk $* exited"
		usleep 100000
	done
}

# SIGTERM: drain, flush, remove /dev/tapdevN, exit 0.
term_tapdisk() {
	kill "$TD"
	wait "$TD" || fail "tapdisk exit status $? after SIGTERM"
	[ -e /dev/tapdev"$N" ] && fail "tapdisk left /dev/tapdev$N after SIGTERM"
	[ "$(attr pid)" = 0 ] || fail "pid $(attr pid) after tapdisk exited"
}

# kill -9 tapdisk while $1 (a background writer's pid) runs, restart it with
# the same image, and expect the writer to succeed.
kill9_restart() {	# writer-pid image
	kill -9 "$TD"
	wait "$TD" 2>/dev/null
	[ "$(attr pid)" = 0 ] || fail "pid after kill -9: $(attr pid)"
	echo "tapdisk: requests (pending, held) after kill -9: $(attr requests)"
	[ -e /dev/tapdev"$N" ] || fail "/dev/tapdev$N vanished with tapdisk"
	start_tapdisk "$2"
	wait "$1" || fail "writer failed across the tapdisk restart"
}

step "shared disk"
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
	insmod /lib/$m.ko || fail "insmod $m"
done
wait_for /dev/vda 5 || fail "no /dev/vda (the host's shared disk)"
mount -t ext4 /dev/vda /shared || fail "mount the shared disk"
echo 30 > "$P/attach_timeout"

step "tapdisk --ring: raw image (aio, O_DIRECT)"
N=$(tapctl alloc) || fail "alloc for tapdisk"
S=/sys/class/blktap/blktap$N
truncate -s 64M /shared/raw.img
start_tapdisk aio:/shared/raw.img
wait_for /dev/tapdev"$N" 5 || fail "tapdisk did not create /dev/tapdev$N"
[ "$(blockdev --getsize64 /dev/tapdev"$N")" = 67108864 ] || fail "raw tapdev size"
tapctl dio /dev/tapdev"$N" || fail "dio through tapdisk"
dd if=/shared/pat1 of=/dev/tapdev"$N" bs=1M conv=fsync 2>/dev/null || fail "dd through tapdisk"
drop_caches
cmp_region /dev/tapdev"$N" 0 16 /shared/pat1
cmp_region /shared/raw.img 0 16 /shared/pat1
# stopped, then killed: requests are surely held when it dies
kill -STOP "$TD"
dd if=/shared/pat2 of=/dev/tapdev"$N" bs=1M seek=32 conv=fsync 2>/dev/null &
DD=$!
sleep 2
kill9_restart "$DD" aio:/shared/raw.img
# killed while it does O_DIRECT writes: each dd write is acknowledged
dd if=/shared/pat1 of=/dev/tapdev"$N" bs=16k seek=1024 oflag=direct 2>/dev/null &
DD=$!
usleep 300000
kill -0 "$DD" 2>/dev/null || fail "O_DIRECT dd finished before the kill"
kill9_restart "$DD" aio:/shared/raw.img
echo "tapdisk: replayed $(attr requeued) requests"
drop_caches
cmp_region /dev/tapdev"$N" 0 16 /shared/pat1
cmp_region /dev/tapdev"$N" 16 16 /shared/pat1
cmp_region /dev/tapdev"$N" 32 24 /shared/pat2
cmp_region /shared/raw.img 16 16 /shared/pat1
cmp_region /shared/raw.img 32 24 /shared/pat2
term_tapdisk
tapctl free "$N" || fail "free $N"

step "tapdisk --ring: qcow image, ext4 on it"
N=$(tapctl alloc) || fail "alloc for qcow"
S=/sys/class/blktap/blktap$N
start_tapdisk qcow:/shared/disk.qcow
wait_for /dev/tapdev"$N" 5 || fail "tapdisk did not create /dev/tapdev$N (qcow)"
[ "$(blockdev --getsize64 /dev/tapdev"$N")" = 134217728 ] || fail "qcow tapdev size"
mke2fs -q /dev/tapdev"$N" 65536 >/dev/null || fail "mke2fs on qcow"
mount -t ext4 /dev/tapdev"$N" /mnt || fail "mount qcow"
cp /shared/pat1 /mnt/pat1 || fail "cp to qcow"
mkdir /mnt/dir || fail "mkdir on qcow"
echo "hello from the VM" > /mnt/dir/hello || fail "write a file on qcow"
# sync(2) flushes ext2 (no journal) before it writes the block device's own
# buffers (bitmaps, inodes): fsync the device for a flush after those too
sync
dd if=/dev/null of=/dev/tapdev"$N" conv=notrunc,fsync 2>/dev/null || fail "fsync tapdev"
# Killed during writeback and the sync that flushes it, stopped first so
# requests are surely held when it dies (replay).
kill -STOP "$TD"
(cp /shared/pat2 /mnt/pat2 && sync) &
CP=$!
sleep 2
kill9_restart "$CP" qcow:/shared/disk.qcow
umount /mnt || fail "umount qcow"
drop_caches
mount -t ext4 /dev/tapdev"$N" /mnt || fail "mount qcow again"
cmp /mnt/pat1 /shared/pat1 || fail "pat1 differs on qcow"
cmp /mnt/pat2 /shared/pat2 || fail "pat2 (written across kill -9) differs on qcow"
grep -q "hello from the VM" /mnt/dir/hello || fail "hello differs"
umount /mnt
# raw data beyond the filesystem, tapdisk stopped and killed in the middle
kill -STOP "$TD"
dd if=/shared/pat2 of=/dev/tapdev"$N" bs=1M seek=96 conv=fsync 2>/dev/null &
DD=$!
sleep 2
kill9_restart "$DD" qcow:/shared/disk.qcow
# killed while it answers allocating O_DIRECT writes: an answered write
# must survive (its L2 entry is in the file before the answer)
dd if=/shared/pat1 of=/dev/tapdev"$N" bs=16k seek=4608 oflag=direct 2>/dev/null &
DD=$!
usleep 300000
kill -0 "$DD" 2>/dev/null || fail "O_DIRECT dd on qcow finished before the kill"
kill9_restart "$DD" qcow:/shared/disk.qcow
drop_caches
cmp_region /dev/tapdev"$N" 72 16 /shared/pat1
term_tapdisk
# a fresh tapdisk reads everything back from the image file
start_tapdisk qcow:/shared/disk.qcow
wait_for /dev/tapdev"$N" 5 || fail "no /dev/tapdev$N from the fresh tapdisk"
cmp_region /dev/tapdev"$N" 96 24 /shared/pat2
cmp_region /dev/tapdev"$N" 72 16 /shared/pat1
mount -t ext4 -o ro /dev/tapdev"$N" /mnt || fail "mount qcow from a fresh tapdisk"
cmp /mnt/pat2 /shared/pat2 || fail "pat2 differs after a fresh tapdisk"
umount /mnt
term_tapdisk
tapctl free "$N" || fail "free $N"

if [ -x /bin/blktapctrl ] && [ -x /bin/tap-ctl ]; then
	step "blktapctrl + tap-ctl: a kernel disk"
	mkdir -p /run/blktap
	blktapctrl --run-dir /run/blktap -f >/tmp/blktapctrl.log 2>&1 &
	CTRL=$!
	ctrl_fail() { cat /tmp/blktapctrl.log; fail "$@"; }
	wait_for /run/blktap/blktapctrl.sock 10 || ctrl_fail "blktapctrl did not start"
	truncate -s 32M /shared/ctl.img
	dev=$(tap-ctl create -a aio:/shared/ctl.img) || ctrl_fail "tap-ctl create -a aio:/shared/ctl.img"
	echo "tapctl: tap-ctl create printed $dev"
	case $dev in /dev/tapdev[0-9]*) ;; *) ctrl_fail "tap-ctl create printed '$dev'" ;; esac
	N=${dev#/dev/tapdev}
	S=/sys/class/blktap/blktap$N
	wait_for "$dev" 5 || ctrl_fail "no $dev"
	dd if=/shared/pat1 of="$dev" bs=1M conv=fsync 2>/dev/null || ctrl_fail "dd to $dev"
	drop_caches
	cmp_region "$dev" 0 16 /shared/pat1
	tap-ctl list >/tmp/list 2>&1 || { cat /tmp/list; ctrl_fail "tap-ctl list"; }
	sed 's/^/tapctl: list: /' /tmp/list
	grep -q "ctl.img" /tmp/list || ctrl_fail "tap-ctl list lacks the disk"
	# blktapctrl restarts a tapdisk that dies; the new one reattaches
	PID=$(attr pid)
	kill -9 "$PID"
	i=0
	until [ "$(attr pid)" != 0 ] && [ "$(attr pid)" != "$PID" ]; do
		i=$((i + 1))
		[ $i -gt 150 ] && ctrl_fail "blktapctrl did not restart tapdisk"
		usleep 100000
	done
	echo "tapctl: blktapctrl restarted tapdisk $PID (kill -9) as $(attr pid)"
	dd if=/shared/pat2 of="$dev" bs=1M seek=8 count=16 conv=fsync 2>/dev/null ||
		ctrl_fail "dd to $dev after the restart"
	drop_caches
	dd if=/shared/pat1 of=/tmp/pat1-8 bs=1M count=8 2>/dev/null
	cmp_region "$dev" 0 8 /tmp/pat1-8
	dd if=/shared/pat2 of=/tmp/pat2-16 bs=1M count=16 2>/dev/null
	cmp_region "$dev" 8 16 /tmp/pat2-16
	tap-ctl destroy -m "$N" || ctrl_fail "tap-ctl destroy -m $N"
	[ -e "$dev" ] && ctrl_fail "$dev still there after destroy"
	[ -e /dev/blktap"$N" ] && ctrl_fail "/dev/blktap$N still there after destroy"
	cmp_region /shared/ctl.img 8 16 /tmp/pat2-16
	kill "$CTRL"
	wait "$CTRL" || ctrl_fail "blktapctrl exit status $?"
	rm -f /tmp/pat1-8 /tmp/pat2-16
else
	echo "BLKTAP-VM: note: blktapctrl/tap-ctl not built, their kernel-disk test skipped"
fi

step "remove the device from tapdisk, free, unload"
N=$(tapctl alloc) || fail "alloc again"
truncate -s 8M /tmp/small.img
S=/sys/class/blktap/blktap$N
start_server -c -r "$N" /tmp/small.img
wait_for /dev/tapdev"$N" 5 || fail "no /dev/tapdev$N"
dd if=/dev/urandom of=/tmp/pat3 bs=1M count=8 2>/dev/null
dd if=/tmp/pat3 of=/dev/tapdev"$N" bs=1M conv=fsync 2>/dev/null || fail "dd write tapdev$N"
cmp /tmp/pat3 /tmp/small.img || fail "small image differs"
stop_server
[ -e /dev/tapdev"$N" ] && fail "/dev/tapdev$N still there after REMOVE_DEVICE"
start_server -c -r -R "$N" /tmp/small.img
wait_for /dev/tapdev"$N" 5 || fail "no read-only /dev/tapdev$N"
[ "$(blockdev --getro /dev/tapdev"$N")" = 1 ] || fail "tapdev$N is not read-only"
dd if=/tmp/pat3 of=/dev/tapdev"$N" bs=1M count=1 conv=fsync 2>/dev/null && fail "wrote to a read-only tapdev"
cmp_region /dev/tapdev"$N" 0 8 /tmp/pat3
stop_server
tapctl free "$N" || fail "free $N"
umount /mnt 2>/dev/null
umount /shared || fail "umount the shared disk"

# unload with a tap and its disk still there: the module cleans up
N=$(tapctl alloc) || fail "alloc before rmmod"
start_server -c "$N" /tmp/small.img
wait_for /dev/tapdev"$N" 5 || fail "no /dev/tapdev$N before rmmod"
stop_server
rmmod blktap || fail "rmmod"
[ -e /dev/tapdev"$N" ] && fail "/dev/tapdev$N survived rmmod"
grep -q '^blktap ' /proc/modules && fail "blktap still loaded"

if dmesg | grep -E -q 'BUG|WARNING|Oops|general protection|INFO: task'; then
	dmesg | grep -E -B5 -A30 'BUG|WARNING|Oops|general protection|INFO: task' | head -n 80
	fail "kernel complained"
fi

echo "BLKTAP-VM: PASS"
tapctl exit 0
poweroff -f
