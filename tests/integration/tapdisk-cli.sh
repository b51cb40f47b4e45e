#!/bin/bash
# tapdisk's command line: help, bad usage (exit 2), images that cannot be
# opened (exit 1), each with one clear message naming the problem.
set -u
TAPDISK=${TAPDISK:-build/asan/tapdisk}
dir=$(mktemp -d /var/tmp/blktap-cli.XXXXXX)
trap 'rm -rf "$dir"' EXIT
fails=0

# expect STATUS PATTERN -- ARGS...: run tapdisk, check status and stderr.
expect() {
	local want=$1 pattern=$2 out rc
	shift 3
	out=$("$TAPDISK" "$@" 2>&1 </dev/null)
	rc=$?
	if [ "$rc" -ne "$want" ] || ! grep -qE -- "$pattern" <<<"$out"; then
		echo "FAIL: tapdisk $* -> exit $rc (want $want), output:"
		echo "$out" | sed 's/^/    /'
		echo "    (wanted /$pattern/)"
		fails=$((fails + 1))
	else
		echo "ok: tapdisk $* -> $rc"
	fi
}

truncate -s 1M "$dir/disk.img"
truncate -s 8M "$dir/big.img"
chmod 000 "$dir/big.img"

expect 0 'Usage: tapdisk' -- --help
expect 2 'no image given' --
expect 2 'no frontend' -- "aio:$dir/disk.img"
expect 2 "Try 'tapdisk --help'" -- --bogus-option "aio:$dir/disk.img"
expect 2 'more than one image' -- --nbd-unix "$dir/s" "aio:$dir/disk.img" "aio:$dir/disk.img"
expect 2 "bad size 'lots'" -- --ram-limit lots --nbd-unix "$dir/s" "ram:$dir/disk.img"
expect 2 'queue-depth' -- --queue-depth 0 --nbd-unix "$dir/s" "aio:$dir/disk.img"
expect 1 "unknown image type 'qcow9'.*known: aio sync ram" -- --nbd-unix "$dir/s" "qcow9:$dir/disk.img"
expect 1 'not an image of the form TYPE:PATH' -- --nbd-unix "$dir/s" "$dir/disk.img"
expect 1 "aio:$dir/missing.img: open: No such file or directory" -- --nbd-unix "$dir/s" "aio:$dir/missing.img"
expect 1 "sync:$dir: open: Is a directory" -- --nbd-unix "$dir/s" "sync:$dir"
expect 1 "ram:$dir/disk.img: image is 1M, larger than the ram limit of 512K" -- \
	--ram-limit 512K --nbd-unix "$dir/s" "ram:$dir/disk.img"
if [ "$(id -u)" -ne 0 ]; then
	expect 1 "Permission denied" -- --nbd-unix "$dir/s" "aio:$dir/big.img"
fi
# A socket path in a missing directory: the frontend fails, exit 1.
expect 1 "$dir/nodir/s" -- --nbd-unix "$dir/nodir/s" "aio:$dir/disk.img"

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
