#!/bin/bash
# blktapctrl's restart limit: more than --max-restarts crashes within
# --restart-window marks the disk failed (no tapdisk, reason shown), a
# tapdisk that cannot start at all ends there too, and destroy still
# cleans a failed disk up.
set -u
. "$(dirname "$0")/blktapctrl-lib.sh"
need qemu-io qemu-img

IMG=$WORK/a.img
qemu-img create -q -f raw "$IMG" 16M || fail "qemu-img create"
start_ctrl --max-restarts 2 --restart-window 30

dev=$(tapctl create -a "aio:$IMG" --nbd-unix "$WORK/a.sock") || fail "create"
line=$(tapctl list -f "$IMG")
minor=$(field minor "$line")
pid=$(field pid "$line")

# two crashes are tolerated
for i in 1 2; do
	kill -KILL "$pid"
	line=$(wait_state "$minor" running "$pid")
	pid=$(field pid "$line")
done
qio "$dev" -c 'write -P 0x33 0 64k' -c 'read -P 0x33 0 64k'
# the third within the window is one too many
kill -KILL "$pid"
line=$(wait_state "$minor" failed)
[ "$(field pid "$line")" = 0 ] || fail "a failed disk has a pid: $line"
case $line in *"reason=3 crashes within 30 s"*) ;; *) fail "reason: $line" ;; esac
sleep 0.3
[ "$(field state "$(tapctl list -m "$minor")")" = failed ] || fail "failed disk came back"
grep -q "failed: 3 crashes" "$WORK/blktapctrl.log" || fail "failure not logged"
ok "three kill -9 in 30 s with --max-restarts 2: $line"

# a failed disk survives a blktapctrl restart as failed, and destroy removes it
stop_ctrl
start_ctrl --max-restarts 2 --restart-window 30
[ "$(field state "$(tapctl list -m "$minor")")" = failed ] || fail "not failed after restart"
tapctl destroy -m "$minor" || fail "destroy of a failed disk"
[ -z "$(tapctl list)" ] || fail "failed disk still listed"
ok "failed state kept across a blktapctrl restart; destroy cleans it up"

# a tapdisk that cannot start again (image gone) fails after its retries
cp "$IMG" "$WORK/b.img"
tapctl create -a "aio:$WORK/b.img" --nbd-unix "$WORK/b.sock" >/dev/null || fail "create b"
line=$(tapctl list -f "$WORK/b.img")
minor=$(field minor "$line")
rm "$WORK/b.img"
kill -KILL "$(field pid "$line")"
line=$(wait_state "$minor" failed)
case $line in *"tapdisk exited with status 1"*) ;; *) fail "reason: $line" ;; esac
tapctl destroy -m "$minor" || fail "destroy b"
ok "image removed: restarts fail, disk failed with tapdisk's reason"
stop_ctrl
