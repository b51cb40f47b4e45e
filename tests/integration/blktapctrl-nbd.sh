#!/bin/bash
# blktapctrl + tap-ctl with an NBD-only disk: create, I/O through the NBD
# URI with qemu-io, list (human, as Xen's block-tap parses it, and JSON),
# kill -9 of the tapdisk (restarted, data intact), kill -9 of blktapctrl
# (the restarted daemon re-adopts the running tapdisk), destroy the way
# block-tap does (-p PID -m MINOR), and clear errors that change nothing.
set -u
. "$(dirname "$0")/blktapctrl-lib.sh"
need qemu-io qemu-img

IMG=$WORK/a.img
SOCK=$WORK/a.sock
qemu-img create -q -f raw "$IMG" 64M || fail "qemu-img create"
start_ctrl --max-restarts 5 --restart-window 60

# check: the daemon answers; kernel disks need the module
out=$(tapctl check --nbd-only) || fail "check --nbd-only"
if [ ! -e /dev/blktap-control ]; then
	err=$(tapctl check 2>&1) && fail "check passed without /dev/blktap-control"
	case $err in *"/dev/blktap-control is missing"*) ;; *) fail "check: $err" ;; esac
	err=$(tapctl create -a "aio:$IMG" 2>&1) && fail "kernel create passed without the module"
	case $err in *"modprobe blktap"*) ;; *) fail "kernel create: $err" ;; esac
	ok "without blktap.ko: check and kernel create fail with a reason"
fi

# create prints only the device: the NBD URI
dev=$(tapctl create -a "aio:$IMG" --nbd-unix "$SOCK") || fail "create"
[ "$dev" = "nbd+unix:///?socket=$SOCK" ] || fail "create printed '$dev'"
qio "$dev" -c 'write -P 0xa1 0 1M' -c 'read -P 0xa1 0 1M'
ok "create + qemu-io write/read through $dev"

line=$(tapctl list -t aio -f "$IMG") || fail "list -t -f"
[ "$(echo "$line" | wc -l)" = 1 ] || fail "list -t -f gave: $line"
pid=$(field pid "$line") && minor=$(field minor "$line") || fail "no pid/minor in '$line'"
[ "$minor" -ge 1048576 ] || fail "NBD-only minor $minor is in the kernel range"
[ "$(field state "$line")" = running ] || fail "state: $line"
[ "$(field file "$line")" = "$IMG" ] || fail "file: $line"
[ "$(field type "$line")" = aio ] || fail "type: $line"
kill -0 "$pid" || fail "pid $pid is not running"
[ -z "$(tapctl list -t qcow -f "$IMG")" ] || fail "list -t qcow matched an aio disk"
tapctl list --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert len(d) == 1 and d[0]["minor"] == '"$minor"' and d[0]["readonly"] is False, d
' || fail "list --json"
ok "list: $line"

# stats come from tapdisk's control socket, where tapdisk has one
if "$TAPDISK" --help | grep -q -- --control; then
	st=$(tapctl stats -m "$minor") || fail "stats"
	echo "$st" | grep -qx "bytes-written=1048576" || fail "stats: $st"
	echo "$st" | grep -qx "paused=0" || fail "stats: $st"
	ok "stats: $(echo "$st" | tr '\n' ' ')"
else
	err=$(tapctl stats -m "$minor" 2>&1) && fail "stats without a tapdisk control socket"
	case $err in *"no control socket"*) ;; *) fail "stats: $err" ;; esac
	ok "stats: refused, this tapdisk has no --control"
fi
# pause: no new request is served until unpause; then it completes
tapctl pause -m "$minor" || fail "pause"
tapctl stats -m "$minor" | grep -qx "paused=1" || fail "stats after pause"
[ "$(field state "$(tapctl list)")" = paused ] || fail "list after pause: $(tapctl list)"
qemu-io -f raw "$dev" -c 'write -P 0x77 2M 64k' >"$WORK/paused-io.log" 2>&1 &
io_pid=$!
sleep 1
kill -0 "$io_pid" 2>/dev/null || fail "a write completed while the disk was paused"
tapctl unpause -m "$minor" || fail "unpause"
wait "$io_pid" || { cat "$WORK/paused-io.log"; fail "the write held by the pause failed"; }
qemu-io -f raw "$dev" -c 'read -P 0x77 2M 64k' >/dev/null || fail "data written across the pause"
tapctl stats -m "$minor" | grep -qx "paused=0" || fail "stats after unpause"
ok "pause holds new requests, unpause releases them"

# the same image twice, a missing image, an unknown driver: refused
err=$(tapctl create -a "aio:$IMG" --nbd-unix "$WORK/b.sock" 2>&1) && fail "second create of one image passed"
case $err in *"already served by disk $minor"*) ;; *) fail "duplicate: $err" ;; esac
err=$(tapctl create -a "aio:$WORK/missing.img" --nbd-unix "$WORK/m.sock" 2>&1) && fail "missing image passed"
case $err in *"No such file"*) ;; *) fail "missing image: $err" ;; esac
err=$(tapctl create -a "vhd:$IMG" --nbd-unix "$WORK/v.sock" 2>&1) && fail "unknown driver passed"
case $err in *"unknown driver 'vhd'"*) ;; *) fail "unknown driver: $err" ;; esac
err=$(tapctl destroy -m 7 2>&1) && fail "destroy of a missing disk passed"
case $err in *"no disk with minor 7"*) ;; *) fail "destroy missing: $err" ;; esac
[ "$(tapctl list | wc -l)" = 1 ] || fail "a refused request changed the disk list"
if command -v setpriv >/dev/null; then
	err=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$TAPCTL" list 2>&1) &&
		fail "a non-root client could list"
	case $err in *"permission denied"*|*"Permission denied"*) ;; *) fail "non-root: $err" ;; esac
fi
# malformed messages on the control socket: answered or dropped, daemon lives
python3 - "$BLKTAPCTRL_SOCKET" <<'PY' || fail "malformed requests"
import socket, struct, sys
hdr = lambda op, n, ver=1, magic=0x4c544342: struct.pack("=IHHIi", magic, ver, op, n, 0)
for msg in [b"garbage, not a header", hdr(2, 0, magic=1), hdr(2, 0, ver=9),
            hdr(99, 0), hdr(2, 5) + b"A=1\n\n", hdr(2, 100) + b"a=1\n",
            hdr(2, 1 << 30), hdr(3, 8) + b"type=aio", b""]:
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    try:  # the daemon may hang up before reading everything: a reset
        s.sendall(msg)
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    s.close()
PY
kill -0 "$CTRL_PID" || fail "blktapctrl died of malformed requests"
[ "$(tapctl list | wc -l)" = 1 ] || fail "malformed requests changed the disk list"
ok "bad requests refused with clear errors, nothing changed"

# kill -9 the tapdisk: restarted on the same minor, data still there
kill -KILL "$pid"
line=$(wait_state "$minor" running "$pid")
pid2=$(field pid "$line")
[ "$(field restarts "$line")" = 1 ] || fail "restarts after one crash: $line"
qio "$dev" -c 'read -P 0xa1 0 1M' -c 'write -P 0xb2 1M 1M' -c 'read -P 0xb2 1M 1M'
ok "tapdisk $pid killed: restarted as $pid2, data intact"

# kill -9 blktapctrl: a new one re-adopts the running tapdisk
{ kill -KILL "$CTRL_PID"; wait "$CTRL_PID"; } 2>/dev/null	# no "Killed" notice
kill -0 "$pid2" || fail "tapdisk died with blktapctrl"
qio "$dev" -c 'read -P 0xb2 1M 1M'
# a start time that does not match: the command line still identifies it
sed -i 's/^starttime=.*/starttime=1/' "$RUN/disks/$minor"
start_ctrl --max-restarts 5 --restart-window 60
line=$(tapctl list -m "$minor") || fail "list after restart"
[ "$(field pid "$line")" = "$pid2" ] || fail "not re-adopted: $line"
grep -q "re-adopted tapdisk $pid2" "$WORK/blktapctrl.log" || fail "no re-adoption message"
# and it still supervises the adopted tapdisk
kill -KILL "$pid2"
line=$(wait_state "$minor" running "$pid2")
pid3=$(field pid "$line")
qio "$dev" -c 'read -P 0xa1 0 1M' -c 'read -P 0xb2 1M 1M'
ok "blktapctrl restarted: re-adopted $pid2, restarted it as $pid3 after kill -9"

# destroy the way block-tap does, then everything is gone
tapctl destroy -p "$pid3" -m "$minor" || fail "destroy -p -m"
[ -z "$(tapctl list)" ] || fail "disk still listed after destroy"
kill -0 "$pid3" 2>/dev/null && fail "tapdisk $pid3 still runs"
[ -e "$SOCK" ] && fail "NBD socket left behind"
[ -e "$RUN/disks/$minor" ] && fail "state file left behind"
qemu-io -f raw -c 'read -P 0xb2 1M 1M' "$IMG" | grep -q "read 1048576" || fail "image content"
ok "destroy -p $pid3 -m $minor: tapdisk, socket and state gone; image holds the data"
stop_ctrl
