/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR LGPL-2.1-or-later */
/*
 * The shared ring between blktap.ko and tapdisk: one truth for the kernel
 * and user space. Fixed-width types, explicit padding, no pointers.
 *
 * tapdisk mmaps /dev/blktapN from offset 0 with length BLKTAP_MMAP_SIZE:
 *
 *   [0, BLKTAP_RING_SIZE)              struct blktap_sring
 *   [BLKTAP_DATA_OFFSET, +DATA_SIZE)   data area: BLKTAP_RING_SLOTS windows of
 *                                      BLKTAP_MAX_SEGS pages; slot s owns
 *                                      data + s * BLKTAP_SLOT_SIZE
 *
 * The kernel produces requests (req_prod) and consumes responses (rsp_cons);
 * tapdisk consumes requests (req_cons, informational) and produces responses
 * (rsp_prod), then calls ioctl(BLKTAP_IOCTL_KICK). A request's data lives in
 * its slot's window: segment i covers bytes [offset, offset + length) of
 * window page seg[i].page. At most BLKTAP_RING_SLOTS requests are
 * outstanding, so neither ring can overflow if both sides follow the rules;
 * the kernel checks every response anyway.
 */
#ifndef BLKTAP_RING_H
#define BLKTAP_RING_H

#include <linux/types.h>

#define BLKTAP_ABI_VERSION	1
#define BLKTAP_RING_MAGIC	0x50415442u	/* "BTAP" */

#define BLKTAP_PAGE_SIZE	4096u		/* the ABI's page; x86-64, arm64 4k */
#define BLKTAP_SECTOR_SIZE	512u		/* unit of sector, nr_sectors */
#define BLKTAP_RING_SLOTS	64u		/* power of two */
#define BLKTAP_MAX_SEGS		128u		/* 512 KiB per request */
#define BLKTAP_SLOT_SIZE	(BLKTAP_MAX_SEGS * BLKTAP_PAGE_SIZE)
#define BLKTAP_MAX_SECTORS	(BLKTAP_SLOT_SIZE / BLKTAP_SECTOR_SIZE)

/* blktap_request.op */
#define BLKTAP_OP_READ		0
#define BLKTAP_OP_WRITE		1
#define BLKTAP_OP_FLUSH		2
#define BLKTAP_OP_DISCARD	3
#define BLKTAP_OP_WRITE_ZEROES	4

/* blktap_request.flags */
#define BLKTAP_REQ_FUA		(1u << 0)	/* write: durable before the response */
#define BLKTAP_REQ_NOUNMAP	(1u << 1)	/* write-zeroes: keep the range allocated */

struct blktap_segment {
	__u32 page;		/* page index inside the slot's window */
	__u16 offset;		/* bytes into that page */
	__u16 length;		/* bytes; offset + length <= BLKTAP_PAGE_SIZE */
};

struct blktap_request {
	__u64 id;		/* echo it in the response */
	__u64 sector;		/* first 512-byte sector */
	__u32 nr_sectors;	/* length in 512-byte sectors (0 for flush) */
	__u16 nr_segs;		/* read/write: segments used; else 0 */
	__u8 op;		/* BLKTAP_OP_* */
	__u8 flags;		/* BLKTAP_REQ_* */
	__u32 slot;		/* data window: data + slot * BLKTAP_SLOT_SIZE */
	__u32 __pad;
	struct blktap_segment seg[BLKTAP_MAX_SEGS];
};

/*
 * status: 0, or a negative errno. -ENOSPC, -EOPNOTSUPP, -ETIMEDOUT and
 * -ENOMEM keep their meaning, any other negative value becomes an I/O error.
 * A positive status, an unknown id or an id that is not in flight is a
 * protocol error: the kernel counts it (sysfs bad_responses) and, for a
 * valid id with a bad status, fails that request with an I/O error.
 */
struct blktap_response {
	__u64 id;
	__s32 status;
	__u32 __pad;
};

struct blktap_ring_header {
	__u32 magic;		/* BLKTAP_RING_MAGIC, set by the kernel */
	__u32 version;		/* BLKTAP_ABI_VERSION */
	__u32 nr_slots;		/* BLKTAP_RING_SLOTS */
	__u32 max_segs;		/* BLKTAP_MAX_SEGS */
	__u32 req_prod;		/* kernel writes: requests published */
	__u32 req_cons;		/* tapdisk writes: requests read (informational) */
	__u32 rsp_prod;		/* tapdisk writes: responses published */
	__u32 rsp_cons;		/* kernel writes: responses consumed */
	__u32 __pad[8];		/* 64 bytes; keeps the indices on one line */
};

/* Indices run freely and wrap at 2^32; entry i lives at [i % nr_slots]. */
struct blktap_sring {
	struct blktap_ring_header hdr;
	struct blktap_request req[BLKTAP_RING_SLOTS];
	struct blktap_response rsp[BLKTAP_RING_SLOTS];
};

#define BLKTAP_RING_INDEX(i)	((i) & (BLKTAP_RING_SLOTS - 1))

#define BLKTAP_RING_PAGES	\
	((sizeof(struct blktap_sring) + BLKTAP_PAGE_SIZE - 1) / BLKTAP_PAGE_SIZE)
#define BLKTAP_RING_SIZE	(BLKTAP_RING_PAGES * BLKTAP_PAGE_SIZE)
#define BLKTAP_DATA_OFFSET	BLKTAP_RING_SIZE
#define BLKTAP_DATA_PAGES	(BLKTAP_RING_SLOTS * BLKTAP_MAX_SEGS)
#define BLKTAP_DATA_SIZE	((__u64)BLKTAP_DATA_PAGES * BLKTAP_PAGE_SIZE)
#define BLKTAP_MMAP_SIZE	(BLKTAP_DATA_OFFSET + BLKTAP_DATA_SIZE)

#endif
