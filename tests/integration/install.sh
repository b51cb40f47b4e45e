#!/bin/bash
# make install DESTDIR=... PREFIX=...: binaries, man pages, headers, the
# static and shared libblktap and a pkg-config file that a program can
# actually build and link with.
set -eu
top=${TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
dest=$(mktemp -d /var/tmp/blktap-install.XXXXXX)
trap 'rm -rf "$dest"' EXIT

env -u BUILD -u ASAN make -s -C "$top" install DESTDIR="$dest" PREFIX=/opt/blktap >/dev/null
for f in sbin/tapdisk sbin/blktapctrl sbin/tap-ctl lib/systemd/system/blktapctrl.service lib/libblktap.a lib/libblktap.so.0 \
	 lib/libblktap.so include/blktap/log.h include/blktap/size.h \
	 lib/pkgconfig/libblktap.pc share/man/man8/tapdisk.8; do
	[ -e "$dest/opt/blktap/$f" ] || { echo "missing after install: /opt/blktap/$f"; exit 1; }
done
"$dest/opt/blktap/sbin/tapdisk" --help | grep -q 'Usage: tapdisk'
man -l "$dest/opt/blktap/share/man/man8/tapdisk.8" >/dev/null 2>&1 || \
	grep -q '^.TH TAPDISK 8' "$dest/opt/blktap/share/man/man8/tapdisk.8"

# Build a program the way a user would: through pkg-config.
export PKG_CONFIG_PATH="$dest/opt/blktap/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$dest"
cflags=$(pkg-config --cflags libblktap)
libs=$(pkg-config --libs libblktap)
cat > "$dest/prog.c" <<'C'
#include <stdio.h>
#include <blktap/size.h>
int main(void)
{
	uint64_t v;
	return td_parse_size("64M", &v) || v != 64u << 20;
}
C
cc $cflags -o "$dest/prog" "$dest/prog.c" $libs
LD_LIBRARY_PATH="$dest/opt/blktap/lib" "$dest/prog"
echo "install ok: $(cd "$dest" && find . -type f | wc -l) files"
