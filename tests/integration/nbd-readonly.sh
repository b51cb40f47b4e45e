#!/bin/bash
# A read-only export (--readonly): advertised as such, reads work, every
# kind of write (write, zeroes, trim) is refused with EPERM by the server
# itself (libnbd is told not to check flags first), and the file is
# untouched.
set -u
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io nbdinfo cmp
need_python_nbd
[ -x "$TAPDISK" ] || fail "no tapdisk binary at $TAPDISK (make asan)"

head -c $((8 << 20)) /dev/urandom >"$WORK/ro.img"
cp "$WORK/ro.img" "$WORK/orig.img"

for drv in aio ram; do
	start_tapdisk ro --nbd-unix "$WORK/ro.sock" --readonly "$drv:$WORK/ro.img"
	u=$(uri ro)
	nbdinfo "$u" | grep -q 'is_read_only: true' ||
		fail "$drv: export not advertised read-only"
	qemu-img compare -q -f raw -F raw "$u" "$WORK/orig.img" ||
		fail "$drv: reads differ from the file"
	if qemu-io -f raw "$u" -c 'write -P 1 0 4k' >/dev/null 2>&1; then
		fail "$drv: qemu-io could write to a read-only export"
	fi
	"$PYTHON" - "$u" <<'PY' || fail "$drv: writes were not refused with EPERM"
import errno, sys, nbd
h = nbd.NBD()
h.set_strict_mode(0)          # send the commands; let the server refuse
h.connect_uri(sys.argv[1])
assert h.is_read_only()
for name, op in (("pwrite", lambda: h.pwrite(b"x" * 4096, 0)),
                 ("zero", lambda: h.zero(4096, 0)),
                 ("trim", lambda: h.trim(4096, 0))):
    try:
        op()
    except nbd.Error as e:
        if e.errnum != errno.EPERM:
            sys.exit(f"{name}: {e} (want EPERM)")
    else:
        sys.exit(f"{name} succeeded on a read-only export")
assert len(h.pread(4096, 0)) == 4096
h.flush()
h.shutdown()
PY
	stop_tapdisk || fail "$drv: tapdisk exit status $?"
	cmp -s "$WORK/ro.img" "$WORK/orig.img" || fail "$drv: the file changed"
	ok "$drv: read-only export refuses writes"
done
