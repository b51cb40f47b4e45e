#!/bin/bash
# blktapctrl's backend/tap watcher over real libxenstore. Debian's xenstored
# cannot run on a host without the hypervisor (the C one needs privcmd, and
# with --no-domain-init crashes on its first request; oxenstored needs
# libxenctrl), so a small xenstore wire-protocol server in Python (below:
# nodes, relative paths under /local/domain/0, watches, trivial
# transactions) listens on $XENSTORED_PATH instead. blktapctrl and the
# xenstore-* tools reach it through libxenstore exactly as they would reach
# xenstored. NBD-only disks stand in for kernel disks (--xen-nbd-dir).
# Checks: the keys written for new devices (aio, read-only qcow), I/O on the
# disk, hotplug-error for a bad params line and a missing image, teardown on
# removal and on online=0 + state Closing, re-adoption after a restart of
# blktapctrl.
set -u
. "$(dirname "$0")/blktapctrl-lib.sh"
need qemu-io qemu-img xenstore-read xenstore-write xenstore-rm xenstore-exists python3
ldd "$BLKTAPCTRL" | grep -q libxenstore || skip "blktapctrl built without libxenstore (libxen-dev)"
"$TAPDISK" --help | grep -q -- --control || skip "tapdisk has no --control (disk sizes come from STATS)"

export XENSTORED_PATH=$WORK/xenstored.sock
XSD_PID=
cat >"$WORK/xenstored.py" <<'EOF'
import os, socket, struct, sys, selectors
DIRECTORY, READ, GET_PERMS, WATCH, UNWATCH, TX_START, TX_END = 1, 2, 3, 4, 5, 6, 7
WRITE, MKDIR, RM, WATCH_EVENT, ERROR = 11, 12, 13, 15, 16
HOME = "/local/domain/0"
nodes = {"/": b"", "/local": b"", "/local/domain": b"", HOME: b""}
watches = []  # (conn, abs path, token, relative?)
sel = selectors.DefaultSelector()

def absolute(p):
    return p if p.startswith("/") else HOME + "/" + p

def below(p, base):
    return p == base or p.startswith(base.rstrip("/") + "/")

def send(conn, typ, rid, tx, payload):
    try:
        conn.sendall(struct.pack("<IIII", typ, rid, tx, len(payload)) + payload)
    except OSError:
        pass

def fire(path):
    for conn, wpath, token, rel in watches:
        if below(path, wpath):
            p = path[len(HOME) + 1:] if rel and path.startswith(HOME + "/") else path
            send(conn, WATCH_EVENT, 0, 0, p.encode() + b"\0" + token + b"\0")

def handle(conn, typ, rid, tx, body):
    args = body.split(b"\0")
    def ok(payload=b"OK\0"):
        send(conn, typ, rid, tx, payload)
    def err(e):
        send(conn, ERROR, rid, tx, e.encode() + b"\0")
    if typ == TX_START:
        return ok(b"1\0")
    if typ == TX_END:
        return ok()
    if typ == UNWATCH:
        watches[:] = [w for w in watches if not (w[0] is conn and w[2] == args[1])]
        return ok()
    path = absolute(args[0].decode())
    if typ == READ:
        return ok(nodes[path]) if path in nodes else err("ENOENT")
    if typ == DIRECTORY:
        if path not in nodes:
            return err("ENOENT")
        kids = sorted(k[len(path) + 1:] for k in nodes
                      if k.startswith(path + "/") and "/" not in k[len(path) + 1:])
        return ok(b"".join(k.encode() + b"\0" for k in kids))
    if typ == GET_PERMS:
        return ok(b"n0\0") if path in nodes else err("ENOENT")
    if typ in (WRITE, MKDIR):
        value = body[len(args[0]) + 1:] if typ == WRITE else b""
        parts = path.split("/")
        for i in range(2, len(parts)):
            nodes.setdefault("/".join(parts[:i]), b"")
        if typ == WRITE or path not in nodes:
            nodes[path] = value
        ok()
        return fire(path)
    if typ == RM:
        gone = [k for k in nodes if below(k, path)]
        for k in gone:
            del nodes[k]
        ok()
        return fire(path)
    if typ == WATCH:
        rel = not args[0].startswith(b"/")
        watches.append((conn, path, args[1], rel))
        ok()
        p = args[0]
        return send(conn, WATCH_EVENT, 0, 0, p + b"\0" + args[1] + b"\0")
    err("EINVAL")

def readable(conn):
    buf = conns[conn]
    try:
        data = conn.recv(65536)
    except OSError:
        data = b""
    if not data:
        sel.unregister(conn)
        del conns[conn]
        watches[:] = [w for w in watches if w[0] is not conn]
        conn.close()
        return
    buf += data
    while len(buf) >= 16:
        typ, rid, tx, n = struct.unpack("<IIII", buf[:16])
        if len(buf) < 16 + n:
            break
        body, buf = buf[16:16 + n], buf[16 + n:]
        handle(conn, typ, rid, tx, body)
    conns[conn] = buf

conns = {}
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
srv.listen(16)
sel.register(srv, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj is srv:
            c, _ = srv.accept()
            conns[c] = b""
            sel.register(c, selectors.EVENT_READ)
        else:
            readable(key.fileobj)
EOF
python3 "$WORK/xenstored.py" "$XENSTORED_PATH" >"$WORK/xenstored.log" 2>&1 &
XSD_PID=$!
TD_PIDS+=("$XSD_PID")
for i in $(seq 100); do
	[ -S "$XENSTORED_PATH" ] && break
	sleep 0.05
done
xenstore-write /probe 1 || fail "the test xenstored does not answer"
xenstore-rm /probe

NBD=$WORK/nbd
mkdir -p "$NBD"
A=$WORK/a.img
B=$WORK/b.qcow
qemu-img create -q -f raw "$A" 64M || fail "qemu-img create"
qemu-img create -q -f qcow "$B" 32M 2>/dev/null || qemu-img create -q -f qcow2 "$B" 32M ||
	fail "qemu-img create qcow"
qemu-img info "$B" | grep -q '^file format: qcow$' || B_IS_QCOW2=1

BE=/local/domain/0/backend/tap
start_ctrl --xen-nbd-dir "$NBD"
grep -q "xenstore: watching backend/tap" "$WORK/blktapctrl.log" || fail "blktapctrl does not watch"

# wait_key PATH VALUE: until xenstore has it (5 s)
wait_key() {
	local i v
	for i in $(seq 100); do
		v=$(xenstore-read "$1" 2>/dev/null) && [ "$v" = "$2" ] && return 0
		sleep 0.05
	done
	fail "$1 is '$(xenstore-read "$1" 2>&1)', not '$2'"
}
# disk_of BACKEND: the disks whose vdev is BACKEND (tap-ctl list --json),
# one "minor=..,file=..,kind=..,readonly=.." line each
disk_of() {
	tapctl list --json | python3 -c '
import json, sys
for d in json.load(sys.stdin):
    if d.get("vdev") == sys.argv[1]:
        print("minor=%s,file=%s,kind=%s,readonly=%d" % (d["minor"], d["file"], d["kind"], d["readonly"]))
' "$1"
}
wait_gone() {
	local i
	for i in $(seq 100); do
		[ -z "$(disk_of "$1")" ] && return 0
		sleep 0.05
	done
	fail "the disk of $1 was not destroyed: $(tapctl list)"
}

# a device the way a toolstack writes it, params last (in one transaction
# with xl; here key by key: the watcher waits for params)
add_dev() {	# add_dev DOMID DEVID PARAMS MODE
	local d=$BE/$1/$2
	xenstore-write "$d/frontend-id" "$1" "$d/online" 1 "$d/state" 1 "$d/mode" "$4" ||
		fail "xenstore-write"
	xenstore-write "$d/params" "$3" || fail "xenstore-write params"
}

add_dev 5 51712 "aio:$A" w
wait_key "$BE/5/51712/hotplug-status" connected
[ "$(xenstore-read "$BE/5/51712/sectors")" = $((64 * 2048)) ] || fail "sectors: $(xenstore-read "$BE/5/51712/sectors")"
[ "$(xenstore-read "$BE/5/51712/sector-size")" = 512 ] || fail "sector-size"
[ "$(xenstore-read "$BE/5/51712/info")" = 0 ] || fail "info"
xenstore-exists "$BE/5/51712/hotplug-error" && fail "hotplug-error on success"
line=$(disk_of backend/tap/5/51712)
[ -n "$line" ] || fail "no disk listed: $(tapctl list)"
[ "$(field file "$line")" = "$A" ] && [ "$(field kind "$line")" = nbd ] || fail "listed: $line"
[ "$(xenstore-read "$BE/5/51712/tapdisk-minor")" = "$(field minor "$line")" ] || fail "tapdisk-minor"
qio "nbd+unix:///?socket=$NBD/tap-5-51712.sock" -c 'write -P 0x5a 0 1M' -c 'read -P 0x5a 0 1M'
ok "aio device: sectors, sector-size, info, hotplug-status=connected; I/O works"

add_dev 5 51728 "tapdisk:qcow:$B" r
if [ -n "${B_IS_QCOW2:-}" ]; then
	# qemu-img cannot make qcow v1 here: the create fails, which is a test too
	wait_key "$BE/5/51728/hotplug-status" error
else
	wait_key "$BE/5/51728/hotplug-status" connected
	[ "$(xenstore-read "$BE/5/51728/info")" = 4 ] || fail "info of a read-only disk"
	[ "$(xenstore-read "$BE/5/51728/sectors")" = $((32 * 2048)) ] || fail "qcow sectors"
	line=$(disk_of backend/tap/5/51728)
	[ -n "$line" ] || fail "qcow disk not listed"
	[ "$(field readonly "$line")" = 1 ] || fail "not read-only: $line"
	ok "tapdisk:qcow: read-only device: info=4"
fi

add_dev 6 1 "nosuch:/x" w
wait_key "$BE/6/1/hotplug-status" error
xenstore-read "$BE/6/1/hotplug-error" | grep -q "unknown driver" || fail "hotplug-error: $(xenstore-read "$BE/6/1/hotplug-error")"
add_dev 6 2 "aio:$WORK/missing.img" w
wait_key "$BE/6/2/hotplug-status" error
xenstore-read "$BE/6/2/hotplug-error" | grep -q "No such file" || fail "hotplug-error: $(xenstore-read "$BE/6/2/hotplug-error")"
xenstore-exists "$BE/6/2/sectors" && fail "sectors written for a failed device"
ok "bad params and a missing image: hotplug-status=error with the reason"

# teardown: online=0 + Closing
xenstore-write "$BE/5/51728/online" 0 "$BE/5/51728/state" 5
wait_gone backend/tap/5/51728
# re-adoption: blktapctrl restarts, the aio disk stays, nothing is created twice
stop_ctrl
start_ctrl --xen-nbd-dir "$NBD"
for i in $(seq 100); do
	grep -q "re-adopted disk" "$WORK/blktapctrl.log" && break
	sleep 0.05
done
[ "$(disk_of backend/tap/5/51712 | wc -l)" = 1 ] || fail "after restart: $(tapctl list)"
grep -q "re-adopted disk" "$WORK/blktapctrl.log" || fail "not re-adopted"
qio "nbd+unix:///?socket=$NBD/tap-5-51712.sock" -c 'read -P 0x5a 0 1M'
ok "restart of blktapctrl: the disk is re-adopted, data intact"

# teardown: the node is removed
xenstore-rm "$BE/5/51712" || fail "xenstore-rm"
wait_gone backend/tap/5/51712
[ -z "$(tapctl list)" ] || fail "disks left: $(tapctl list)"
ok "removal of the backend node destroys the disk"
stop_ctrl
