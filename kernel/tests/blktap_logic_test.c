// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests for kernel/logic.h: the parts of blktap.ko that decide what
 * a response from user space may do, and where request data lives.
 */
#include <kunit/test.h>
#include <linux/errno.h>

#include "logic.h"

static void blktap_test_id_roundtrip(struct kunit *test)
{
	u32 slot;

	for (slot = 0; slot < BLKTAP_RING_SLOTS; slot++) {
		u64 id = blktap_make_id(12345, slot);

		KUNIT_EXPECT_EQ(test, blktap_id_slot(id), slot);
		KUNIT_EXPECT_EQ(test, blktap_rsp_slot(id), (int)slot);
	}
	/* sequence numbers change the id, not the slot */
	KUNIT_EXPECT_NE(test, blktap_make_id(1, 5), blktap_make_id(2, 5));
	KUNIT_EXPECT_EQ(test, blktap_id_slot(blktap_make_id(~0ull >> 8, 63)),
			63u);
}

static void blktap_test_rsp_slot_unknown(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, blktap_rsp_slot(BLKTAP_RING_SLOTS), -1);
	KUNIT_EXPECT_EQ(test, blktap_rsp_slot(0xff), -1);
	KUNIT_EXPECT_EQ(test, blktap_rsp_slot(~0ull), -1);
	KUNIT_EXPECT_EQ(test, blktap_rsp_slot(blktap_make_id(7, 0)), 0);
}

static void blktap_test_rsp_matches(struct kunit *test)
{
	u64 cur = blktap_make_id(9, 3);

	KUNIT_EXPECT_TRUE(test, blktap_rsp_matches(true, cur, cur));
	/* duplicate: the slot was answered already */
	KUNIT_EXPECT_FALSE(test, blktap_rsp_matches(false, cur, cur));
	/* stale: an earlier use of the same slot */
	KUNIT_EXPECT_FALSE(test,
			   blktap_rsp_matches(true, cur, blktap_make_id(8, 3)));
	/* another slot's id */
	KUNIT_EXPECT_FALSE(test,
			   blktap_rsp_matches(true, cur, blktap_make_id(9, 4)));
}

static void blktap_test_ring_count_wraps(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, blktap_ring_count(5, 5), 0u);
	KUNIT_EXPECT_EQ(test, blktap_ring_count(3, 0xfffffffeu), 5u);
	KUNIT_EXPECT_TRUE(test, blktap_rsp_prod_valid(0, 0));
	KUNIT_EXPECT_TRUE(test, blktap_rsp_prod_valid(64, 0));
	KUNIT_EXPECT_TRUE(test, blktap_rsp_prod_valid(10, 0xffffffe0u));
	KUNIT_EXPECT_FALSE(test, blktap_rsp_prod_valid(65, 0));
	/* a producer behind the consumer is garbage too */
	KUNIT_EXPECT_FALSE(test, blktap_rsp_prod_valid(4, 5));
	KUNIT_EXPECT_EQ(test, BLKTAP_RING_INDEX(64u), 0u);
	KUNIT_EXPECT_EQ(test, BLKTAP_RING_INDEX(0xffffffffu), 63u);
}

static void blktap_test_rsp_errno(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, blktap_rsp_errno(0), 0);
	KUNIT_EXPECT_EQ(test, blktap_rsp_errno(-ENOSPC), -ENOSPC);
	KUNIT_EXPECT_EQ(test, blktap_rsp_errno(-EOPNOTSUPP), -EOPNOTSUPP);
	KUNIT_EXPECT_EQ(test, blktap_rsp_errno(-EIO), -EIO);
	KUNIT_EXPECT_EQ(test, blktap_rsp_errno(-EPERM), -EIO);
	KUNIT_EXPECT_EQ(test, blktap_rsp_errno(S32_MIN), -EIO);
	/* positive: a protocol error */
	KUNIT_EXPECT_EQ(test, blktap_rsp_errno(1), 1);
	KUNIT_EXPECT_EQ(test, blktap_rsp_errno(S32_MAX), 1);
}

static void blktap_test_pack_segs(struct kunit *test)
{
	struct blktap_segment seg[BLKTAP_MAX_SEGS];
	u32 n;

	n = blktap_pack_segs(seg, 512);
	KUNIT_EXPECT_EQ(test, n, 1u);
	KUNIT_EXPECT_EQ(test, seg[0].length, 512);
	KUNIT_EXPECT_EQ(test, seg[0].offset, 0);

	n = blktap_pack_segs(seg, 3 * BLKTAP_PAGE_SIZE + 1024);
	KUNIT_EXPECT_EQ(test, n, 4u);
	KUNIT_EXPECT_EQ(test, seg[2].page, 2u);
	KUNIT_EXPECT_EQ(test, seg[2].length, BLKTAP_PAGE_SIZE);
	KUNIT_EXPECT_EQ(test, seg[3].length, 1024);

	n = blktap_pack_segs(seg, BLKTAP_SLOT_SIZE);
	KUNIT_EXPECT_EQ(test, n, BLKTAP_MAX_SEGS);
	KUNIT_EXPECT_EQ(test, seg[n - 1].length, BLKTAP_PAGE_SIZE);

	KUNIT_EXPECT_EQ(test, blktap_pack_segs(seg, 0), 0u);
	KUNIT_EXPECT_EQ(test, blktap_pack_segs(seg, BLKTAP_SLOT_SIZE + 512),
			0u);
}

static void blktap_test_seg_valid(struct kunit *test)
{
	KUNIT_EXPECT_TRUE(test, blktap_seg_valid(0, 0, BLKTAP_PAGE_SIZE));
	KUNIT_EXPECT_TRUE(test, blktap_seg_valid(127, 3584, 512));
	KUNIT_EXPECT_FALSE(test, blktap_seg_valid(128, 0, 512));
	KUNIT_EXPECT_FALSE(test, blktap_seg_valid(0, 3584, 1024));
	KUNIT_EXPECT_FALSE(test, blktap_seg_valid(0, 0, 0));
}

static void blktap_test_window_addr(struct kunit *test)
{
	unsigned long base = 0x7f0000000000ul;

	KUNIT_EXPECT_EQ(test, blktap_window_addr(base, 0, 0),
			base + BLKTAP_DATA_OFFSET);
	KUNIT_EXPECT_EQ(test, blktap_window_addr(base, 1, 0),
			base + BLKTAP_DATA_OFFSET + BLKTAP_SLOT_SIZE);
	KUNIT_EXPECT_EQ(test, blktap_window_addr(base, 63, 127) + BLKTAP_PAGE_SIZE,
			base + BLKTAP_MMAP_SIZE);
}

static struct kunit_case blktap_logic_cases[] = {
	KUNIT_CASE(blktap_test_id_roundtrip),
	KUNIT_CASE(blktap_test_rsp_slot_unknown),
	KUNIT_CASE(blktap_test_rsp_matches),
	KUNIT_CASE(blktap_test_ring_count_wraps),
	KUNIT_CASE(blktap_test_rsp_errno),
	KUNIT_CASE(blktap_test_pack_segs),
	KUNIT_CASE(blktap_test_seg_valid),
	KUNIT_CASE(blktap_test_window_addr),
	{}
};

static struct kunit_suite blktap_logic_suite = {
	.name = "blktap-logic",
	.test_cases = blktap_logic_cases,
};
kunit_test_suite(blktap_logic_suite);

MODULE_DESCRIPTION("KUnit tests for blktap's ring logic");
MODULE_LICENSE("GPL");
