#!/bin/bash
# A tapdisk killed with -9 in the middle of a client's writes: blktapctrl
# restarts it on the same socket, QEMU's NBD client (reconnect-delay)
# reconnects and retries, every write completes and every pattern reads
# back. The NBD-only counterpart of "the kernel keeps queued I/O".
set -u
. "$(dirname "$0")/blktapctrl-lib.sh"
need qemu-io qemu-img

IMG=$WORK/a.img
SOCK=$WORK/a.sock
N=40
qemu-img create -q -f raw "$IMG" 64M || fail "qemu-img create"
start_ctrl
dev=$(tapctl create -a "aio:$IMG" --nbd-unix "$SOCK") || fail "create"
line=$(tapctl list -f "$IMG")
minor=$(field minor "$line")
pid=$(field pid "$line")

# N writes of 256 KiB, 50 ms apart: about 2 s of I/O
cmds=()
for i in $(seq 0 $((N - 1))); do
	cmds+=(-c "write -P $((i + 1)) $((i * 256))k 256k" -c "sleep 50")
done
qemu-io --image-opts "driver=nbd,server.type=unix,server.path=$SOCK,reconnect-delay=10" \
	"${cmds[@]}" >"$WORK/qio.log" 2>&1 &
qpid=$!
sleep 0.6
kill -0 "$qpid" 2>/dev/null || fail "qemu-io finished before the crash: $(tail -3 "$WORK/qio.log")"
kill -KILL "$pid"
wait "$qpid" || fail "qemu-io failed: $(tail -5 "$WORK/qio.log")"
[ "$(grep -c '^wrote 262144/262144' "$WORK/qio.log")" = "$N" ] ||
	fail "not every write completed: $(grep -v '^wrote\|ops;' "$WORK/qio.log" | head -5)"
grep -qiE 'error|fail' "$WORK/qio.log" && fail "qemu-io: $(grep -iE 'error|fail' "$WORK/qio.log" | head -3)"
line=$(wait_state "$minor" running "$pid")
[ "$(field restarts "$line")" = 1 ] || fail "expected one restart: $line"

cmds=()
for i in $(seq 0 $((N - 1))); do
	cmds+=(-c "read -P $((i + 1)) $((i * 256))k 256k")
done
qio "$dev" "${cmds[@]}"
ok "kill -9 of tapdisk $pid during $N writes: restarted as $(field pid "$line"), all writes done and read back"
tapctl destroy -m "$minor" || fail "destroy"
stop_ctrl
