#!/bin/bash
# SIGTERM under write load loses no acknowledged write. A libnbd client
# keeps 16 writes of numbered 64 KiB blocks in flight, wrapping around the
# image with a generation number, and logs every write the server
# acknowledged. tapdisk is stopped mid-stream: it must exit 0, and every
# acknowledged block must be in the file (that generation or a later one).
# Then the same with fio's nbd engine and several connections.
set -u
. "$(dirname "$0")/lib.sh"
need fio
need_python_nbd
[ -x "$TAPDISK" ] || fail "no tapdisk binary at $TAPDISK (make asan)"

BS=65536
truncate -s 32M "$WORK/disk.img"

for drv in aio sync; do
	rm -f "$WORK/acks" "$WORK/ready"
	start_tapdisk term --nbd-unix "$WORK/term.sock" "$drv:$WORK/disk.img"
	"$PYTHON" - "$(uri term)" "$WORK/acks" "$WORK/ready" $BS <<'PY' &
import struct, sys, nbd

uri, ackpath, readypath, bs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
h = nbd.NBD()
h.connect_uri(uri)
nblocks = h.get_size() // bs
acks = open(ackpath, "w")
inflight = {}             # cookie -> (block, generation, buffer)
n = nacked = 0
try:
    while True:
        while len(inflight) < 16:
            blk, gen = n % nblocks, n // nblocks + 1
            buf = nbd.Buffer.from_bytearray(bytearray(struct.pack(">QQ", blk, gen) * (bs // 16)))
            inflight[h.aio_pwrite(buf, blk * bs)] = (blk, gen, buf)
            n += 1
        h.poll(-1)
        for cookie in list(inflight):
            if h.aio_command_completed(cookie):
                blk, gen, _ = inflight.pop(cookie)
                acks.write(f"{blk} {gen}\n")
                nacked += 1
                if nacked == 300:
                    open(readypath, "w").close()
        acks.flush()
except nbd.Error:
    pass                  # the server went away: expected
acks.close()
PY
	client=$!
	for i in $(seq 400); do
		[ -e "$WORK/ready" ] && break
		kill -0 $client 2>/dev/null || break
		sleep 0.025
	done
	[ -e "$WORK/ready" ] || fail "$drv: the client did not get going"
	stop_tapdisk || fail "$drv: tapdisk exited with status $? on SIGTERM under load"
	wait $client || fail "$drv: the client failed"
	"$PYTHON" - "$WORK/disk.img" "$WORK/acks" $BS <<'PY' || fail "$drv: acknowledged writes lost"
import struct, sys

img, ackpath, bs = sys.argv[1], sys.argv[2], int(sys.argv[3])
want = {}
for line in open(ackpath):
    blk, gen = map(int, line.split())
    want[blk] = max(gen, want.get(blk, 0))
data = open(img, "rb").read()
bad = 0
for blk, gen in sorted(want.items()):
    chunk = data[blk * bs:(blk + 1) * bs]
    for off in range(0, bs, 16):
        b, g = struct.unpack_from(">QQ", chunk, off)
        if b != blk or g < gen:
            bad += 1
            print(f"block {blk}: acknowledged generation {gen}, file has "
                  f"block {b} generation {g} at +{off}")
            break
print(f"{len(want)} acknowledged blocks checked ({sum(1 for _ in open(ackpath))} acks), {bad} bad")
sys.exit(1 if bad else 0)
PY
	ok "$drv: SIGTERM under load kept every acknowledged write"
done

# fio through several connections, killed mid-run: a clean exit.
start_tapdisk fio --nbd-unix "$WORK/fio.sock" "aio:$WORK/disk.img"
fio --name=load --ioengine=nbd --uri="$(uri fio)" --rw=randwrite --bs=16k \
    --iodepth=32 --numjobs=3 --size=32M --time_based --runtime=30 \
    --output="$WORK/fio.log" >/dev/null 2>&1 &
fio_pid=$!
sleep 1.5
stop_tapdisk || fail "fio load: tapdisk exited with status $? on SIGTERM"
wait $fio_pid	# fails: its server went away
[ ! -e "$WORK/fio.sock" ] || fail "socket left behind"
ok "fio load: clean SIGTERM"
