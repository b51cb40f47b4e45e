/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR LGPL-2.1-or-later */
/*
 * ioctls of /dev/blktap-control (allocate and free taps) and of
 * /dev/blktapN (the per-disk ring device). Every struct starts with a
 * version field the caller sets to BLKTAP_ABI_VERSION; reserved fields
 * must be zero.
 */
#ifndef BLKTAP_IOCTL_H
#define BLKTAP_IOCTL_H

#include <linux/ioctl.h>
#include <linux/types.h>

#include "ring.h"

#define BLKTAP_IOC_MAGIC	0xb7

/* /dev/blktap-control */
struct blktap_ctl_tap {
	__u32 version;
	__u32 minor;		/* ALLOC: out; FREE: in */
};

#define BLKTAP_CTL_ALLOC	_IOWR(BLKTAP_IOC_MAGIC, 0x01, struct blktap_ctl_tap)
#define BLKTAP_CTL_FREE		_IOW(BLKTAP_IOC_MAGIC, 0x02, struct blktap_ctl_tap)

/* blktap_device_params.features */
#define BLKTAP_FEAT_FLUSH		(1u << 0)
#define BLKTAP_FEAT_FUA			(1u << 1)
#define BLKTAP_FEAT_DISCARD		(1u << 2)
#define BLKTAP_FEAT_WRITE_ZEROES	(1u << 3)
#define BLKTAP_FEAT_READONLY		(1u << 4)
#define BLKTAP_FEAT_ALL			0x1fu

struct blktap_device_params {
	__u32 version;
	__u32 features;			/* BLKTAP_FEAT_* */
	__u64 sectors;			/* size in 512-byte sectors */
	__u32 logical_block_size;	/* 512..4096, power of two */
	__u32 physical_block_size;	/* >= logical, power of two; 0: logical */
	__u32 discard_granularity;	/* bytes; 0: logical block size */
	__u32 __pad;
	__u64 __reserved[4];
};

/* blktap_info.flags */
#define BLKTAP_INFO_DEVICE	(1u << 0)	/* /dev/tapdevN exists */
#define BLKTAP_INFO_ZEROCOPY	(1u << 1)	/* zero-copy mode */

struct blktap_info {
	__u32 version;
	__u32 minor;			/* N of /dev/blktapN and /dev/tapdevN */
	__u32 flags;			/* BLKTAP_INFO_* */
	__u32 nr_slots;
	__u32 max_segs;
	__u32 page_size;
	__u64 ring_size;		/* bytes at mmap offset 0 */
	__u64 data_offset;		/* mmap offset of the data area */
	__u64 mmap_size;		/* the length to mmap */
	struct blktap_device_params params;	/* valid with BLKTAP_INFO_DEVICE */
};

/* /dev/blktapN */
#define BLKTAP_IOCTL_CREATE_DEVICE	_IOW(BLKTAP_IOC_MAGIC, 0x10, struct blktap_device_params)
#define BLKTAP_IOCTL_REMOVE_DEVICE	_IO(BLKTAP_IOC_MAGIC, 0x11)
/*
 * Consume the responses up to rsp_prod, then publish queued requests.
 * Returns the number of requests published, or -errno.
 */
#define BLKTAP_IOCTL_KICK		_IO(BLKTAP_IOC_MAGIC, 0x12)
#define BLKTAP_IOCTL_INFO		_IOWR(BLKTAP_IOC_MAGIC, 0x13, struct blktap_info)

#endif
