#!/bin/bash
# Hostile and broken clients over a raw socket: requests past the end, with
# overflowing offsets, unknown commands and flags, oversized payloads, bad
# magics, garbage handshakes and random bytes. Each gets an error reply or
# a disconnect; tapdisk keeps serving well-behaved clients, never writes
# outside the image, and still stops cleanly.
set -u
. "$(dirname "$0")/lib.sh"
need nbdinfo cmp
[ -x "$TAPDISK" ] || fail "no tapdisk binary at $TAPDISK (make asan)"

SIZE=$((4 << 20))
head -c $SIZE /dev/urandom >"$WORK/disk.img"
cp "$WORK/disk.img" "$WORK/orig.img"
start_tapdisk bad --nbd-unix "$WORK/bad.sock" --export-name disk \
	"aio:$WORK/disk.img"

"$PYTHON" - "$WORK/bad.sock" $SIZE <<'PY' || fail "raw-socket checks"
import os, random, socket, struct, sys

path, size = sys.argv[1], int(sys.argv[2])
IHAVEOPT, REPMAGIC = 0x49484156454F5054, 0x3e889045565a9
REQ, REPLY = 0x25609513, 0x67446698
READ, WRITE, DISC, FLUSH, TRIM, CACHE, ZEROES = 0, 1, 2, 3, 4, 5, 6
EPERM, EINVAL, ENOSPC = 1, 22, 28

def conn():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    return s

def recvn(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError(f"EOF after {len(b)} of {n} bytes")
        b += c
    return b

def closed(s):
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True

def opt(s, o, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, o, len(data)) + data)

def opt_reply(s):
    magic, o, t, n = struct.unpack(">QIII", recvn(s, 20))
    assert magic == REPMAGIC, hex(magic)
    return o, t, recvn(s, n)

def hello(s, flags=3):
    g = recvn(s, 18)
    assert g[:16] == b"NBDMAGICIHAVEOPT", g
    s.sendall(struct.pack(">I", flags))

def go(name=b"disk"):
    s = conn()
    hello(s)
    opt(s, 7, struct.pack(">I", len(name)) + name + b"\0\0")
    while True:
        o, t, d = opt_reply(s)
        if t != 3:
            assert t == 1, hex(t)
            return s

def req(s, typ, off, ln, flags=0, cookie=1, payload=b""):
    s.sendall(struct.pack(">IHHQQI", REQ, flags, typ, cookie, off, ln) + payload)

def reply(s, want_cookie=1):
    magic, err, cookie = struct.unpack(">IIQ", recvn(s, 16))
    assert magic == REPLY and cookie == want_cookie, (hex(magic), cookie)
    return err

def expect(s, typ, off, ln, want, flags=0, payload=b""):
    req(s, typ, off, ln, flags, 7, payload)
    err = reply(s, 7)
    assert err == want, f"cmd {typ} off {off} len {ln}: error {err}, want {want}"
    if typ == READ and not err:
        recvn(s, ln)

s = go()
expect(s, WRITE, size - 512, 1024, ENOSPC, payload=b"W" * 1024)
expect(s, WRITE, 2**64 - 512, 1024, ENOSPC, payload=b"W" * 1024)
expect(s, READ, size, 1, EINVAL)
expect(s, READ, 2**64 - 1, 2, EINVAL)
expect(s, TRIM, size - 1, 2, EINVAL)
expect(s, ZEROES, 0, size + 1, ENOSPC)
expect(s, CACHE, 0, 512, EINVAL)
expect(s, 200, 0, 512, EINVAL)
expect(s, WRITE, 0, 512, EINVAL, flags=0x2, payload=b"W" * 512)
expect(s, READ, 0, 512, EINVAL, flags=0x4)
expect(s, READ, 0, 64 << 20, EINVAL)
expect(s, READ, 0, 4096, 0)        # still in step after all that
req(s, WRITE, 0, 64 << 20, cookie=9)
assert reply(s, 9) == EINVAL
assert closed(s), "oversized write: connection kept"
print("ok: requests out of range, unknown, oversized")

s = go()
s.sendall(b"\xde\xad\xbe\xef" * 7)
assert closed(s), "bad request magic: connection kept"
s = conn()
hello(s)
s.sendall(b"NOTMAGIC" + b"\0" * 8)
assert closed(s), "bad option magic: connection kept"
s = conn()
hello(s, flags=0xff)
assert closed(s), "unknown client flags: connection kept"
s = conn()
hello(s)
opt(s, 1, b"no-such-export")
assert closed(s), "EXPORT_NAME for an unknown export: connection kept"
s = conn()
hello(s)
opt(s, 7, b"\xff\xff\xff\xff\0\0")
assert opt_reply(s)[1] == 0x80000003, "malformed GO not ERR_INVALID"
opt(s, 99)
assert opt_reply(s)[1] == 0x80000001, "unknown option not ERR_UNSUP"
opt(s, 7, struct.pack(">I", 5) + b"other\0\0")
assert opt_reply(s)[1] == 0x80000006, "unknown export not ERR_UNKNOWN"
opt(s, 2)
assert opt_reply(s)[1] == 1 and closed(s), "ABORT"
print("ok: broken handshakes")

rng = random.Random(1234)
for i in range(200):
    s = conn()
    try:
        if i % 2:
            hello(s)
            if i % 4 == 1:
                opt(s, 7, struct.pack(">I", 4) + b"disk\0\0")
                while opt_reply(s)[1] == 3:
                    pass
        s.sendall(bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 400))))
    except (BrokenPipeError, ConnectionResetError, EOFError):
        pass
    s.close()
print("ok: random bytes")

s = go(b"")
expect(s, READ, 0, 4096, 0)
req(s, DISC, 0, 0)
assert closed(s)
print("ok: still serving")
PY

nbdinfo --size "$(uri bad)" >/dev/null || fail "tapdisk stopped serving"
stop_tapdisk || fail "tapdisk exit status $? after the abuse"
cmp -s "$WORK/disk.img" "$WORK/orig.img" || fail "the image was modified"
grep -q "unix:$WORK/bad.sock#[0-9]*: refusing NBD_CMD_WRITE" "$WORK/tapdisk-bad.log" ||
	fail "no warning naming the client for a refused request"
ok "tapdisk survived and the image is intact"
