#!/bin/bash
# make demo: serve a raw image through tapdisk over NBD on a unix socket,
# look at it with nbdinfo, write and read it back with qemu-io, stop
# cleanly; then bring up a VM config's tap: disks (raw and qcow) through
# blktapctrl and tap-ctl, use them, and take them down.
set -euo pipefail
build=${1:-build/release}
tapdisk=$build/tapdisk
dir=$(mktemp -d /var/tmp/blktap-demo.XXXXXX)
pid=
ctrl=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
	[ -n "$ctrl" ] && { "$build/tap-ctl" detach-config "$dir/vm1.cfg" >/dev/null 2>&1 || true
			    kill "$ctrl" 2>/dev/null || true; }
	rm -rf "$dir"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "create a 64 MiB raw image"
qemu-img create -q -f raw "$dir/disk.img" 64M
ls -l "$dir/disk.img"

step "start tapdisk: aio driver (O_DIRECT + libaio), NBD on a unix socket"
echo "\$ $tapdisk --nbd-unix $dir/nbd.sock --export-name demo aio:$dir/disk.img &"
"$tapdisk" --nbd-unix "$dir/nbd.sock" --export-name demo "aio:$dir/disk.img" &
pid=$!
for _ in $(seq 100); do [ -S "$dir/nbd.sock" ] && break; sleep 0.05; done
uri="nbd+unix:///demo?socket=$dir/nbd.sock"

step "nbdinfo $uri"
nbdinfo "$uri"

step "write patterns through NBD with qemu-io"
qemu-io -f raw "$uri" -c 'write -P 0xab 0 1M' -c 'write -P 0xcd 10M 64k' -c 'flush'

step "read them back and verify"
qemu-io -f raw "$uri" -c 'read -P 0xab 0 1M' -c 'read -P 0xcd 10M 64k' -c 'read -P 0 20M 4k'

step "the empty export name selects the default export"
qemu-img info "nbd+unix:///?socket=$dir/nbd.sock"

step "stop tapdisk with SIGTERM (drains, flushes, exits 0)"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
echo "tapdisk exit status: $status"
[ "$status" -eq 0 ]

step "the data is in the file"
qemu-io -f raw -r "$dir/disk.img" -c 'read -P 0xab 0 1M' -c 'read -P 0xcd 10M 64k'

step "a VM config with two tap: disks, brought up by blktapctrl + tap-ctl"
"$build/qcow-create" 128M "$dir/data.qcow" >/dev/null
cat > "$dir/vm1.cfg" <<CFG
name = "vm1"
memory = 256
disk = [ 'tap:aio:$dir/disk.img,xvda,w',
         'tap:qcow:$dir/data.qcow,xvdb,w' ]
CFG
cat "$dir/vm1.cfg"
export BLKTAPCTRL_SOCKET=$dir/run/blktapctrl.sock
"$build/blktapctrl" --foreground --run-dir "$dir/run" &
ctrl=$!
for _ in $(seq 100); do [ -S "$BLKTAPCTRL_SOCKET" ] && break; sleep 0.05; done
echo "\$ tap-ctl attach-config vm1.cfg --nbd-dir $dir/nbd   (no blktap.ko on this host: NBD disks)"
mkdir -p "$dir/nbd"
"$build/tap-ctl" attach-config "$dir/vm1.cfg" --nbd-dir "$dir/nbd"
echo "\$ tap-ctl list"
"$build/tap-ctl" list
qcow_uri=$("$build/tap-ctl" list -t qcow -f "$dir/data.qcow" | tr ',' '\n' | sed -n 's/^device=//p')

step "write to the qcow disk through NBD, read it back; the raw disk still has the data"
qemu-io -f raw "$qcow_uri" -c 'write -P 0x5a 1M 256k' -c 'read -P 0x5a 1M 256k'
raw_uri=$("$build/tap-ctl" list -t aio -f "$dir/disk.img" | tr ',' '\n' | sed -n 's/^device=//p')
qemu-io -f raw "$raw_uri" -c 'read -P 0xab 0 1M'
echo "\$ tap-ctl stats -p <qcow tapdisk>"
"$build/tap-ctl" stats -p "$("$build/tap-ctl" list -t qcow -f "$dir/data.qcow" | tr ',' '\n' | sed -n 's/^pid=//p')"

step "detach the config: tapdisks stop, the qcow image is consistent"
"$build/tap-ctl" detach-config "$dir/vm1.cfg"
"$build/tap-ctl" list
kill "$ctrl"; wait "$ctrl" || true
ctrl=
"$build/qcow-check" "$dir/data.qcow"
qemu-io -f qcow -r "$dir/data.qcow" -c 'read -P 0x5a 1M 256k'

step "the kernel path: blktap.ko, /dev/tapdevN served by tapdisk --ring, in a VM (about a minute)"
"$(dirname "$0")/demo-vm.sh" "$build"
echo
echo "demo finished"
