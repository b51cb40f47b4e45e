#!/bin/sh
# Run the KUnit suites of kernel/tests under UML with kunit.py from a
# linux-source-6.1 tree (DESIGN.md "Kernel tests"). `make check` runs it
# (tests/run.sh kunit); it needs the kernel source and 3-5 minutes to build
# the first time.
#   KSRC=...   extracted kernel source (default: /work/ksrc/linux-source-6.1,
#              else extracted from /usr/src/linux-source-6.1.tar.xz)
#   KBUILD=... UML build directory (default: $KSRC/.kunit-blktap)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
KSRC=${KSRC:-/work/ksrc/linux-source-6.1}
if [ ! -d "$KSRC" ]; then
	tarball=/usr/src/linux-source-6.1.tar.xz
	[ -r $tarball ] || { echo "kunit: no $KSRC and no $tarball (apt-get install linux-source-6.1 bc flex bison libelf-dev)"; exit 1; }
	mkdir -p "$(dirname "$KSRC")"
	tar -C "$(dirname "$KSRC")" -xf $tarball
fi
KBUILD=${KBUILD:-$KSRC/.kunit-blktap}

# Link this directory into the tree once.
ln -sfn "$here" "$KSRC/drivers/misc/blktap_kunit"
grep -q blktap_kunit "$KSRC/drivers/misc/Kconfig" ||
	sed -i '$i source "drivers/misc/blktap_kunit/Kconfig"' "$KSRC/drivers/misc/Kconfig"
grep -q blktap_kunit "$KSRC/drivers/misc/Makefile" ||
	echo 'obj-y += blktap_kunit/' >>"$KSRC/drivers/misc/Makefile"

cd "$KSRC"
exec python3 tools/testing/kunit/kunit.py run --arch=um --jobs="$(nproc)" \
	--build_dir="$KBUILD" --kunitconfig="$here/.kunitconfig"
