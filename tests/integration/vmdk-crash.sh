#!/bin/bash
# vmdk crash safety: tapdisk killed with SIGKILL in the middle of
# allocating writes (new grains and new grain tables) leaves an image that
# qemu-img check accepts, and every write acknowledged before a completed
# flush reads back after a restart.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io fio

img=$WORK/c.vmdk
qemu-img create -q -f vmdk -o subformat=monolithicSparse "$img" 256M || fail "create"

for round in 1 2 3; do
	start_tapdisk crash$round --nbd-unix "$WORK/crash$round.sock" "vmdk:$img"
	u=$(uri crash$round)
	# A known block, flushed: must survive the kill.
	qemu-io -f raw "$u" -c "write -P 0x$round$round $((round * 8))M 64k" -c flush >/dev/null ||
		fail "round $round: flushed write"
	fio --name=crash --ioengine=nbd --uri="$u" --rw=randwrite --bs=16k \
	    --iodepth=16 --size=200M --offset=40M --time_based --runtime=30 \
	    --verify_state_save=0 --output="$WORK/fio$round.log" &
	fio_pid=$!
	sleep 2
	kill -KILL "$TD_PID"
	wait "$TD_PID" 2>/dev/null
	wait "$fio_pid" 2>/dev/null
	qemu-img check -q -f vmdk "$img" || fail "round $round: qemu-img check after SIGKILL"
	start_tapdisk after$round --nbd-unix "$WORK/after$round.sock" "vmdk:$img"
	for r in $(seq 1 "$round"); do
		qemu-io -f raw "$(uri after$round)" -c "read -P 0x$r$r $((r * 8))M 64k" >/dev/null ||
			fail "round $round: the flushed block of round $r is gone"
	done
	stop_tapdisk || fail "round $round: tapdisk exit status after restart"
done
ok "3 rounds of SIGKILL under fio writes: qemu-img check clean, flushed data intact"
