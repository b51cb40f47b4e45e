#!/bin/bash
# tap-ctl attach-config / detach-config on xl configs: every tap disk of a
# VM config comes up as an NBD-only disk (this host has no blktap.ko),
# other disks are skipped; a bad line, a missing image or a failure half
# way leave nothing behind.
set -u
. "$(dirname "$0")/blktapctrl-lib.sh"
need qemu-io qemu-img

qemu-img create -q -f raw "$WORK/a.img" 32M || fail "qemu-img create a"
qemu-img create -q -f raw "$WORK/b.img" 16M || fail "qemu-img create b"
mkdir -p "$WORK/nbd"
start_ctrl

cat >"$WORK/vm.cfg" <<EOF
# a PV guest
name = "vm1"
memory = 256
vif = [ 'bridge=xenbr0' ]
disk = [ 'tap:aio:$WORK/a.img,xvda,w',
         'phy:/dev/loop7,xvdc,w',
         "script=block-tap,vdev=xvdb,access=r,target=aio:$WORK/b.img" ]
EOF
out=$(tapctl attach-config "$WORK/vm.cfg" --nbd-dir "$WORK/nbd" 2>"$WORK/err") ||
	fail "attach-config: $(cat "$WORK/err")"
grep -q "skipping 'phy:/dev/loop7,xvdc,w': not a tap disk" "$WORK/err" ||
	fail "no note about the phy disk: $(cat "$WORK/err")"
[ "$(echo "$out" | wc -l)" = 2 ] || fail "attach-config printed: $out"
echo "$out" | grep -qx "xvda nbd+unix:///?socket=$WORK/nbd/xvda.sock" || fail "xvda: $out"
echo "$out" | grep -qx "xvdb nbd+unix:///?socket=$WORK/nbd/xvdb.sock" || fail "xvdb: $out"
[ "$(tapctl list | wc -l)" = 2 ] || fail "list: $(tapctl list)"
[ "$(field readonly "$(tapctl list -f "$WORK/b.img")")" = 1 ] || fail "xvdb is not read-only"
qio "nbd+unix:///?socket=$WORK/nbd/xvda.sock" -c 'write -P 0x77 0 1M' -c 'read -P 0x77 0 1M'
qio "nbd+unix:///?socket=$WORK/nbd/xvdb.sock" -r -c 'read -P 0 0 1M'
if command -v nbdinfo >/dev/null; then
	nbdinfo "nbd+unix:///?socket=$WORK/nbd/xvdb.sock" | grep -q "is_read_only: true" ||
		fail "the xvdb export is not read-only"
fi
ok "attach-config: two tap disks up, phy skipped, I/O works, xvdb read-only"

# attaching again fails (the images are in use) and changes nothing
tapctl attach-config "$WORK/vm.cfg" --nbd-dir "$WORK/nbd2" >/dev/null 2>"$WORK/err" &&
	fail "a second attach-config passed"
grep -q "already served" "$WORK/err" || fail "second attach: $(cat "$WORK/err")"
[ "$(tapctl list | wc -l)" = 2 ] || fail "second attach changed the list"

tapctl detach-config "$WORK/vm.cfg" || fail "detach-config"
[ -z "$(tapctl list)" ] || fail "disks left after detach-config: $(tapctl list)"
ok "detach-config removes both"

# a bad line: the error names file, line and column; nothing is created
cat >"$WORK/bad.cfg" <<EOF
disk = [ 'tap:aio:$WORK/a.img,xvda,w',
         'tap:vhd:$WORK/b.img,xvdb,w' ]
EOF
tapctl attach-config "$WORK/bad.cfg" --nbd-dir "$WORK/nbd" 2>"$WORK/err" && fail "bad config passed"
grep -q "bad.cfg:2:15: unknown driver 'vhd'" "$WORK/err" || fail "bad line: $(cat "$WORK/err")"
[ -z "$(tapctl list)" ] || fail "bad config created disks"

# a missing image: refused before anything is created
cat >"$WORK/missing.cfg" <<EOF
disk = [ 'tap:aio:$WORK/a.img,xvda,w', 'tap:aio:$WORK/nope.img,xvdb,w' ]
EOF
tapctl attach-config "$WORK/missing.cfg" --nbd-dir "$WORK/nbd" 2>"$WORK/err" && fail "missing image passed"
grep -q "missing.cfg:1: .*nope.img: No such file" "$WORK/err" || fail "missing: $(cat "$WORK/err")"
[ -z "$(tapctl list)" ] || fail "missing image config created disks"

# a failure half way (the second image is busy): the first disk is undone
tapctl create -a "aio:$WORK/b.img" --nbd-unix "$WORK/busy.sock" >/dev/null || fail "create busy"
tapctl attach-config "$WORK/vm.cfg" --nbd-dir "$WORK/nbd" >/dev/null 2>"$WORK/err" && fail "busy passed"
grep -q "removing the 1 disk(s) already created" "$WORK/err" || fail "no undo: $(cat "$WORK/err")"
[ "$(tapctl list | wc -l)" = 1 ] || fail "undo left: $(tapctl list)"
ok "bad line (file:line:col), missing image, half-way failure: nothing left behind"
# xl-config: legacy tap lines become block-tap lines, the rest is untouched
cat >"$WORK/legacy.cfg" <<'CFG'
name = "vm1"   # keep me
disk = [ 'tap:aio:/srv/a.img,xvda,w', "tap2:qcow:/srv/b.qcow,xvdb,r",
         'phy:/dev/sdb,xvdc,w', 'script=block-tap,vdev=xvdd,target=vmdk:/v' ]
vif = [ 'bridge=xenbr0' ]
CFG
cat >"$WORK/want.cfg" <<'CFG'
name = "vm1"   # keep me
disk = [ 'script=block-tap,vdev=xvda,target=aio:/srv/a.img', "script=block-tap,vdev=xvdb,access=r,target=qcow:/srv/b.qcow",
         'phy:/dev/sdb,xvdc,w', 'script=block-tap,vdev=xvdd,target=vmdk:/v' ]
vif = [ 'bridge=xenbr0' ]
CFG
tapctl xl-config "$WORK/legacy.cfg" >"$WORK/got.cfg" || fail "xl-config"
cmp -s "$WORK/got.cfg" "$WORK/want.cfg" || fail "xl-config: $(diff "$WORK/want.cfg" "$WORK/got.cfg")"
tapctl xl-config "$WORK/got.cfg" | cmp -s - "$WORK/want.cfg" || fail "xl-config is not idempotent"
ok "xl-config rewrites tap: lines to script=block-tap lines"
stop_ctrl
