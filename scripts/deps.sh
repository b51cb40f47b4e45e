#!/bin/sh
# Install the Debian packages the build, the tests and the demo need, if any
# are missing. Runs apt-get update at most once. Needs root (or sudo) only
# when something is missing.
set -eu

PKGS="
	build-essential pkg-config
	libaio-dev zlib1g-dev libcmocka-dev libnbd-dev libxen-dev
	qemu-utils libnbd-bin nbdkit fio python3 python3-libnbd
	linux-headers-amd64 linux-image-amd64 qemu-system-x86 busybox-static cpio kmod
	linux-source-6.1 bc flex bison libelf-dev
	xen-hypervisor-4.17-amd64 xen-utils-4.17
"

missing=""
for p in $PKGS; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in
	*"install ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
