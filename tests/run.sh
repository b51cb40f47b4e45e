#!/bin/bash
# The test runner behind `make check`: cmocka unit tests (ASan+UBSan
# build), fuzz-harness replays (corpus in tests/fuzz/corpus/<harness>/),
# integration scripts, the kernel's KUnit suites (UML), the kernel VM suite
# and the Xen suite where present. Each test passes (exit 0), is skipped (exit 77) or fails; the
# output of a failed test is shown. Ends with "N passed, N failed".
#
# Usage: tests/run.sh [unit|fuzz|integration|kunit|vm|xen ...]   (default: all)
set -u
cd "$(dirname "$0")/.."
top=$PWD
export TOP=$top
export BUILD=${BUILD:-$top/build/asan}
export TAPDISK=${TAPDISK:-$BUILD/tapdisk}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
logdir=$(mktemp -d /tmp/blktap-tests.XXXXXX)
passed=0 failed=0 skipped=0 failures=()

run_one() {
	local name=$1; shift
	local log="$logdir/$(echo "$name" | tr '/ ' '__').log" t0 rc
	t0=$(date +%s)
	"$@" </dev/null >"$log" 2>&1
	rc=$?
	local dt=$(( $(date +%s) - t0 ))
	case $rc in
	0) passed=$((passed + 1)); printf 'PASS  %-44s %4ss\n' "$name" "$dt" ;;
	77) skipped=$((skipped + 1)); printf 'SKIP  %-44s %s\n' "$name" "$(tail -n 1 "$log")" ;;
	*) failed=$((failed + 1)); failures+=("$name")
	   printf 'FAIL  %-44s %4ss (exit %d)\n' "$name" "$dt" "$rc"
	   sed 's/^/    | /' "$log" | tail -n 60 ;;
	esac
}

suites=${*:-unit fuzz integration kunit vm xen}
for s in $suites; do
	case $s in
	unit)
		for t in "$BUILD"/tests/test-*; do
			[ -x "$t" ] && run_one "unit/$(basename "$t")" "$t"
		done ;;
	fuzz)
		# Each harness replays its corpus plus seeded mutations of it.
		for t in "$BUILD"/fuzz/*; do
			[ -x "$t" ] || continue
			n=$(basename "$t")
			[ -d "tests/fuzz/corpus/$n" ] || continue
			run_one "fuzz/$n" env FUZZ_ITERATIONS=${FUZZ_ITERATIONS:-20000} "$t" "tests/fuzz/corpus/$n"
		done ;;
	integration)
		for t in tests/integration/*.sh; do
			case $(basename "$t") in lib.sh|*-lib.sh) continue ;; esac
			[ -f "$t" ] && run_one "integration/$(basename "$t" .sh)" bash "$t"
		done ;;
	kunit)
		# KUnit suites of kernel/tests under UML, from linux-source-6.1
		# extracted into build/ (minutes the first time, then cached).
		run_one "kunit" env KSRC="$top/build/kunit/linux-source-6.1" \
			sh kernel/tests/run-kunit.sh ;;
	vm)
		[ -x tests/vm/run.sh ] && run_one "vm" tests/vm/run.sh ;;
	xen)
		[ -x tests/xen/run.sh ] && run_one "xen" tests/xen/run.sh ;;
	*) echo "tests/run.sh: unknown suite '$s' (unit, fuzz, integration, kunit, vm, xen)" >&2; exit 2 ;;
	esac
done

echo
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]} (logs in $logdir)"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
