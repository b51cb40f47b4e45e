#!/bin/sh
# make demo, the kernel path: boot Debian's kernel under QEMU (TCG) with
# blktap.ko and a static tapdisk (tests/vm/run.sh's machinery, /init =
# tests/vm/demo.sh), serve a qcow image made here by BUILD/qcow-create
# through tapdisk --ring as /dev/tapdevN, make ext2 on it, write and show a
# file, list the tap's sysfs, stop; then check the image here (qcow-check,
# the file read back from it). Exit 0 when all of that worked.
#   scripts/demo-vm.sh [BUILD]     (default build/release)
# Needs qemu-system-x86_64, linux-image-amd64 + headers, busybox-static,
# cpio, e2fsprogs (make deps); about a minute.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
DEMO=1 DEMO_BUILD=${1:-build/release} exec "$top/tests/vm/run.sh"
