#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Benchmark the qcow driver against raw and against qemu-nbd: the qcow run of
# tests/bench/image.sh (see there for the jobs, peers and environment). The
# table goes to the bench-qcow region of doc/benchmarks.md.
#
# Usage: tests/bench/qcow.sh [BUILD_DIR]      (default build/release)
exec "$(dirname "$0")/image.sh" qcow "$@"
