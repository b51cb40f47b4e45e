#!/bin/bash
# make demo: serve a raw image through tapdisk over NBD on a unix socket,
# look at it with nbdinfo, write and read it back with qemu-io, stop cleanly.
set -euo pipefail
build=${1:-build/release}
tapdisk=$build/tapdisk
dir=$(mktemp -d /var/tmp/blktap-demo.XXXXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
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
echo
echo "demo finished"
