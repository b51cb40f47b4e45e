// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * blktapctrl and the kernel module: allocate and free tap minors on
 * /dev/blktap-control. Everything here fails with a sentence the user can
 * act on when the module is not loaded, so NBD-only disks never depend on
 * it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "blktap/ioctl.h"
#include "blktapctrl.h"

static int open_control(char *why, size_t whylen)
{
	int fd = open(BLKTAP_CONTROL_DEV, O_RDWR | O_CLOEXEC);

	if (fd >= 0)
		return fd;
	fd = -errno;
	if (fd == -ENOENT || fd == -ENXIO || fd == -ENODEV)
		snprintf(why, whylen,
			 "%s is missing: the blktap kernel module is not loaded "
			 "(try 'modprobe blktap'), or use an NBD-only disk "
			 "(tap-ctl create --nbd-unix PATH)", BLKTAP_CONTROL_DEV);
	else
		snprintf(why, whylen, "%s: %s", BLKTAP_CONTROL_DEV, strerror(-fd));
	return fd;
}

int kernel_check(char *why, size_t whylen)
{
	int fd = open_control(why, whylen);

	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

int kernel_alloc(unsigned int *minor, char *why, size_t whylen)
{
	struct blktap_ctl_tap ct = { .version = BLKTAP_ABI_VERSION };
	int fd, err = 0;

	fd = open_control(why, whylen);
	if (fd < 0)
		return fd;
	if (ioctl(fd, BLKTAP_CTL_ALLOC, &ct) < 0) {
		err = -errno;
		snprintf(why, whylen, "allocating a tap minor: %s%s", strerror(errno),
			 errno == EMFILE ? " (all taps in use; see the module's max_taps)" :
			 errno == EPROTO ? " (blktap.ko and blktapctrl disagree on the ABI version)" :
			 "");
	} else {
		*minor = ct.minor;
	}
	close(fd);
	return err;
}

int kernel_free(unsigned int minor)
{
	struct blktap_ctl_tap ct = { .version = BLKTAP_ABI_VERSION, .minor = minor };
	char why[256];
	int fd, err = 0;

	fd = open_control(why, sizeof(why));
	if (fd < 0)
		return fd;
	if (ioctl(fd, BLKTAP_CTL_FREE, &ct) < 0)
		err = -errno;
	close(fd);
	return err;
}
