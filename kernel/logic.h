/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Pure ring logic of blktap.ko: index arithmetic, request ids, response
 * validation. No locking, no allocation, so the same code runs in the
 * module and in the KUnit suites (kernel/tests/).
 */
#ifndef BLKTAP_LOGIC_H
#define BLKTAP_LOGIC_H

#include <linux/errno.h>
#include <linux/types.h>
#include <blktap/ring.h>

/*
 * A request id carries its slot in the low byte and a per-slot sequence
 * number above it, so a late or duplicated response for an earlier use of
 * the slot never matches the request now in it.
 */
#define BLKTAP_ID_SLOT_BITS	8

static inline u64 blktap_make_id(u64 seq, u32 slot)
{
	return (seq << BLKTAP_ID_SLOT_BITS) | slot;
}

static inline u32 blktap_id_slot(u64 id)
{
	return id & ((1u << BLKTAP_ID_SLOT_BITS) - 1);
}

/* Entries between a free-running consumer and producer index. */
static inline u32 blktap_ring_count(u32 prod, u32 cons)
{
	return prod - cons;
}

/* May user space's response producer @prod be trusted against @cons? */
static inline bool blktap_rsp_prod_valid(u32 prod, u32 cons)
{
	return blktap_ring_count(prod, cons) <= BLKTAP_RING_SLOTS;
}

/*
 * The errno a response status stands for: 0 for success, a negative errno
 * for a failure, or 1 if the status itself breaks the protocol.
 */
static inline int blktap_rsp_errno(s32 status)
{
	if (status > 0)
		return 1;
	switch (status) {
	case 0:
	case -ENOSPC:
	case -EOPNOTSUPP:
	case -ETIMEDOUT:
	case -ENOMEM:
		return status;
	default:
		return -EIO;
	}
}

/* The slot a response names, or -1 if its id names none. */
static inline int blktap_rsp_slot(u64 id)
{
	u32 slot = blktap_id_slot(id);

	return slot < BLKTAP_RING_SLOTS ? (int)slot : -1;
}

/*
 * Does a response with @id complete the slot's current publication? Not if
 * the slot is not on the ring (never was, or already answered: duplicate)
 * or @id belongs to an earlier use of it (stale sequence).
 */
static inline bool blktap_rsp_matches(bool published, u64 cur_id, u64 id)
{
	return published && cur_id == id;
}

/*
 * Segments of a packed request (data contiguous from the window's start):
 * one per page, the last one short. Returns how many, 0 if @bytes does not
 * fit a slot.
 */
static inline u32 blktap_pack_segs(struct blktap_segment *seg, u32 bytes)
{
	u32 i, n = (bytes + BLKTAP_PAGE_SIZE - 1) / BLKTAP_PAGE_SIZE;

	if (!bytes || n > BLKTAP_MAX_SEGS)
		return 0;
	for (i = 0; i < n; i++) {
		seg[i].page = i;
		seg[i].offset = 0;
		seg[i].length = bytes - i * BLKTAP_PAGE_SIZE < BLKTAP_PAGE_SIZE ?
				bytes - i * BLKTAP_PAGE_SIZE : BLKTAP_PAGE_SIZE;
	}
	return n;
}

/* Does a segment stay inside one page of its slot's window? */
static inline bool blktap_seg_valid(u32 page, u32 offset, u32 len)
{
	return page < BLKTAP_MAX_SEGS && len > 0 &&
	       offset + len <= BLKTAP_PAGE_SIZE;
}

/* User address of window page @page of @slot, for a mapping at @base. */
static inline unsigned long blktap_window_addr(unsigned long base, u32 slot,
					       u32 page)
{
	return base + BLKTAP_DATA_OFFSET +
	       ((unsigned long)slot * BLKTAP_MAX_SEGS + page) *
	       BLKTAP_PAGE_SIZE;
}

#endif
