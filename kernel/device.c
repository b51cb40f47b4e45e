// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/tapdevN: the blk-mq disk. queue_rq only parks a request in its slot
 * (slot number == blk-mq tag) and wakes tapdisk; publishing and mapping
 * happen in tapdisk's own context (request.c). While no tapdisk is
 * attached, requests wait up to attach_timeout seconds.
 */
#include <linux/blkdev.h>
#include <linux/module.h>

#include "blktap.h"
#include "compat.h"

static int blktap_blk_major;

static const struct block_device_operations blktap_disk_fops = {
	.owner	= THIS_MODULE,
};

static blk_status_t blktap_queue_rq(struct blk_mq_hw_ctx *hctx,
				    const struct blk_mq_queue_data *bd)
{
	struct blktap *tap = hctx->queue->queuedata;
	struct request *rq = bd->rq;
	struct blktap_slot *slot;
	unsigned long flags;

	switch (req_op(rq)) {
	case REQ_OP_READ:
	case REQ_OP_WRITE:
	case REQ_OP_FLUSH:
	case REQ_OP_DISCARD:
	case REQ_OP_WRITE_ZEROES:
		break;
	default:
		return BLK_STS_NOTSUPP;
	}
	if (WARN_ON_ONCE(rq->tag < 0 || rq->tag >= BLKTAP_RING_SLOTS))
		return BLK_STS_IOERR;
	slot = &tap->slots[rq->tag];
	blktap_precopy(tap, slot, rq);

	spin_lock_irqsave(&tap->slock, flags);
	if (tap->dying || tap->failfast) {
		spin_unlock_irqrestore(&tap->slock, flags);
		return BLK_STS_IOERR;
	}
	blk_mq_start_request(rq);
	WARN_ON_ONCE(slot->state != BLKTAP_SLOT_FREE);
	slot->rq = rq;
	slot->state = BLKTAP_SLOT_PENDING;
	list_add_tail(&slot->node, &tap->pending);
	spin_unlock_irqrestore(&tap->slock, flags);

	wake_up_interruptible(&tap->wq);
	return BLK_STS_OK;
}

static enum blk_eh_timer_return blktap_timeout(struct request *rq)
{
	/*
	 * A slow tapdisk is not an error; a missing one is handled by
	 * attach_timeout (timeout_work).
	 */
	return BLK_EH_RESET_TIMER;
}

static const struct blk_mq_ops blktap_mq_ops = {
	.queue_rq	= blktap_queue_rq,
	.complete	= blktap_complete_rq,
	.timeout	= blktap_timeout,
};

/* Take every slot in @state into @list, marked busy. Under slock. */
static void blktap_take_slots(struct blktap *tap, enum blktap_slot_state state,
			      struct list_head *list)
{
	struct blktap_slot *slot;
	unsigned int i;

	for (i = 0; i < BLKTAP_RING_SLOTS; i++) {
		slot = &tap->slots[i];
		if (slot->state != state)
			continue;
		if (state == BLKTAP_SLOT_PENDING)
			list_del(&slot->node);
		slot->state = BLKTAP_SLOT_BUSY;
		list_add_tail(&slot->node, list);
	}
}

static void blktap_fail_list(struct blktap *tap, struct vm_area_struct *vma,
			     struct list_head *list)
{
	struct blktap_slot *slot, *next;

	list_for_each_entry_safe(slot, next, list, node) {
		list_del_init(&slot->node);
		blktap_slot_finish(tap, vma, slot, BLK_STS_IOERR);
	}
}

void blktap_device_timeout_work(struct work_struct *work)
{
	struct blktap *tap = container_of(to_delayed_work(work), struct blktap,
					  timeout_work);
	LIST_HEAD(list);

	spin_lock_irq(&tap->slock);
	if (tap->vma || tap->dying) {
		spin_unlock_irq(&tap->slock);
		return;
	}
	/* detached: nothing is published, so there is nothing to unmap */
	tap->failfast = true;
	blktap_take_slots(tap, BLKTAP_SLOT_PENDING, &list);
	spin_unlock_irq(&tap->slock);

	if (!list_empty(&list))
		dev_warn(tap->dev, "no tapdisk attached for %u s, failing queued I/O\n",
			 blktap_attach_timeout);
	atomic64_add(list_count_nodes(&list), &tap->stats.timed_out);
	blktap_fail_list(tap, NULL, &list);
}

/* tapdisk's mapping went away: start the clock for queued I/O. */
void blktap_device_detached(struct blktap *tap)
{
	unsigned int secs = READ_ONCE(blktap_attach_timeout);

	if (secs)
		mod_delayed_work(system_wq, &tap->timeout_work, secs * HZ);
}

static int blktap_check_params(const struct blktap_device_params *p)
{
	u32 lbs = p->logical_block_size;
	u32 pbs = p->physical_block_size ? p->physical_block_size : lbs;
	unsigned int i;

	if (p->version != BLKTAP_ABI_VERSION)
		return -EPROTO;
	if (p->features & ~BLKTAP_FEAT_ALL || p->__pad)
		return -EINVAL;
	for (i = 0; i < ARRAY_SIZE(p->__reserved); i++)
		if (p->__reserved[i])
			return -EINVAL;
	if (lbs < 512 || lbs > PAGE_SIZE || !is_power_of_2(lbs))
		return -EINVAL;
	if (pbs < lbs || pbs > SZ_64K || !is_power_of_2(pbs))
		return -EINVAL;
	if (!p->sectors || p->sectors % (lbs >> SECTOR_SHIFT))
		return -EINVAL;
	if (p->discard_granularity && p->discard_granularity % lbs)
		return -EINVAL;
	return 0;
}

static void blktap_set_limits(struct blktap *tap, struct request_queue *q)
{
	const struct blktap_device_params *p = &tap->params;
	u32 lbs = p->logical_block_size;

	blk_queue_logical_block_size(q, lbs);
	blk_queue_physical_block_size(q, p->physical_block_size ?
				      p->physical_block_size : lbs);
	blk_queue_io_min(q, lbs);
	/* each segment sits in one page of the slot's window */
	blk_queue_max_hw_sectors(q, BLKTAP_MAX_SECTORS);
	blk_queue_max_segments(q, BLKTAP_MAX_SEGS);
	blk_queue_max_segment_size(q, PAGE_SIZE);
	blk_queue_segment_boundary(q, PAGE_SIZE - 1);
	blk_queue_write_cache(q, p->features & BLKTAP_FEAT_FLUSH,
			      p->features & BLKTAP_FEAT_FUA);
	if (p->features & BLKTAP_FEAT_DISCARD) {
		q->limits.discard_granularity = p->discard_granularity ?
						p->discard_granularity : lbs;
		blk_queue_max_discard_sectors(q, UINT_MAX >> SECTOR_SHIFT);
	}
	if (p->features & BLKTAP_FEAT_WRITE_ZEROES)
		blk_queue_max_write_zeroes_sectors(q, UINT_MAX >> SECTOR_SHIFT);
}

/* With tap->lock held. */
int blktap_device_create(struct blktap *tap,
			 const struct blktap_device_params *params)
{
	struct gendisk *disk;
	int err;

	err = blktap_check_params(params);
	if (err)
		return err;
	if (tap->disk)
		return -EEXIST;
	tap->params = *params;

	memset(&tap->tag_set, 0, sizeof(tap->tag_set));
	tap->tag_set.ops = &blktap_mq_ops;
	tap->tag_set.nr_hw_queues = 1;
	tap->tag_set.queue_depth = BLKTAP_RING_SLOTS;
	tap->tag_set.numa_node = NUMA_NO_NODE;
	tap->tag_set.timeout = 30 * HZ;
	tap->tag_set.flags = BLK_MQ_F_SHOULD_MERGE;
	err = blk_mq_alloc_tag_set(&tap->tag_set);
	if (err)
		return err;

	disk = blktap_alloc_disk(&tap->tag_set, tap);
	if (IS_ERR(disk)) {
		err = PTR_ERR(disk);
		goto out_tag_set;
	}
	disk->major = blktap_blk_major;
	disk->first_minor = tap->minor;
	disk->minors = 1;
	disk->flags |= GENHD_FL_NO_PART;
	disk->fops = &blktap_disk_fops;
	disk->private_data = tap;
	snprintf(disk->disk_name, DISK_NAME_LEN, "tapdev%d", tap->minor);
	set_capacity(disk, params->sectors);
	blktap_set_limits(tap, disk->queue);
	set_disk_ro(disk, params->features & BLKTAP_FEAT_READONLY);

	spin_lock_irq(&tap->slock);
	tap->dying = false;
	tap->failfast = false;
	spin_unlock_irq(&tap->slock);

	err = add_disk(disk);
	if (err)
		goto out_disk;
	tap->disk = disk;

	/* created by a process that has not mapped the ring (yet) */
	spin_lock_irq(&tap->slock);
	if (!tap->vma)
		blktap_device_detached(tap);
	spin_unlock_irq(&tap->slock);
	return 0;

out_disk:
	put_disk(disk);
out_tag_set:
	blk_mq_free_tag_set(&tap->tag_set);
	return err;
}

/*
 * Fail all I/O and remove the disk. With tap->lock held; @vma is the
 * attached tapdisk's mapping (its mmap_lock read-held), or NULL when no
 * tapdisk is attached.
 */
int blktap_device_destroy(struct blktap *tap, struct vm_area_struct *vma)
{
	LIST_HEAD(list);

	if (!tap->disk)
		return -ENODEV;

	spin_lock_irq(&tap->slock);
	tap->dying = true;
	spin_unlock_irq(&tap->slock);
	cancel_delayed_work_sync(&tap->timeout_work);

	spin_lock_irq(&tap->slock);
	blktap_take_slots(tap, BLKTAP_SLOT_PENDING, &list);
	blktap_take_slots(tap, BLKTAP_SLOT_PUBLISHED, &list);
	spin_unlock_irq(&tap->slock);
	blktap_fail_list(tap, vma, &list);

	/* new requests fail in queue_rq, so the queue drains at once */
	del_gendisk(tap->disk);
	put_disk(tap->disk);
	blk_mq_free_tag_set(&tap->tag_set);
	tap->disk = NULL;
	return 0;
}

int blktap_device_init(void)
{
	blktap_blk_major = register_blkdev(0, "tapdev");
	return blktap_blk_major < 0 ? blktap_blk_major : 0;
}

void blktap_device_exit(void)
{
	unregister_blkdev(blktap_blk_major, "tapdev");
}
