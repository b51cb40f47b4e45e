// SPDX-License-Identifier: GPL-2.0
/*
 * Requests on the ring, in tapdisk's own context (the KICK ioctl, with
 * tap->lock held and tapdisk's mmap_lock read-held):
 *
 * publish: describe the request in the next ring entry and put its data
 *   into the slot's window: zero-copy inserts a write's pages read-only;
 *   reads, pages that cannot be mapped, and everything in copy mode go
 *   through the slot's bounce pages, which stay mapped.
 * consume: check each response against the slot it names, zap the
 *   zero-copy pages, copy read data back from bounce pages, end the request.
 *
 * Why reads are copied: tapdisk would write into page-cache pages that are
 * not uptodate yet through a writable PTE; whoever zaps that PTE (us, but
 * also munmap, MADV_DONTNEED or exit, all in user space's hands) calls
 * set_page_dirty() on it, which warns and schedules a pointless writeback.
 */
#include <linux/blk-mq.h>
#include <linux/highmem.h>
#include <linux/mm.h>

#include "blktap.h"
#include "compat.h"

static void blktap_bad_response(struct blktap *tap, const char *what, u64 id,
				s32 status)
{
	atomic64_inc(&tap->stats.bad_responses);
	dev_warn_ratelimited(tap->dev, "pid %d: %s (id %#llx, status %d)\n",
			     tap->pid, what, id, status);
}

static unsigned long blktap_slot_addr(struct vm_area_struct *vma,
				      struct blktap_slot *slot, u32 page)
{
	struct blktap *tap = vma->vm_private_data;

	return blktap_window_addr(vma->vm_start, slot - tap->slots, page);
}

/* Make window page @i of @slot show its bounce page. */
static int blktap_map_bounce(struct vm_area_struct *vma,
			     struct blktap_slot *slot, u32 i)
{
	unsigned long addr = blktap_slot_addr(vma, slot, i);
	int err;

	if (slot->map[i] == BLKTAP_MAP_BOUNCE)
		return 0;
	if (slot->map[i] != BLKTAP_MAP_NONE)
		blktap_zap_range(vma, addr, PAGE_SIZE);
	slot->map[i] = BLKTAP_MAP_NONE;
	err = vm_insert_page(vma, addr, slot->bounce[i]);
	if (err)
		return err;
	slot->map[i] = BLKTAP_MAP_BOUNCE;
	return 0;
}

static int blktap_get_bounce(struct blktap_slot *slot, u32 i)
{
	if (!slot->bounce[i]) {
		slot->bounce[i] = alloc_page(GFP_NOIO | __GFP_ZERO);
		if (!slot->bounce[i])
			return -ENOMEM;
	}
	return 0;
}

/*
 * Only page-cache pages under writeback are mapped: writeback pins them in
 * their mapping until we complete, after the zap, so truncation and reclaim
 * never meet a page that is still mapped here (our VMA is not in the
 * page's rmap). Anonymous pages (O_DIRECT from a process) cannot be
 * inserted at all; pages of a file mmap'd by an O_DIRECT writer could be
 * truncated under us.
 */
static bool blktap_zc_candidate(struct page *page)
{
	return PageWriteback(page) && !PageAnon(page) && !PageSlab(page) &&
	       !PageReserved(page);
}

/* Insert @page read-only at window page @i; false if it must be copied. */
static bool blktap_map_zc(struct vm_area_struct *vma, struct blktap_slot *slot,
			  u32 i, struct page *page)
{
	unsigned long addr = blktap_slot_addr(vma, slot, i);
	int err;

	if (!blktap_zc_candidate(page))
		return false;
	if (slot->map[i] != BLKTAP_MAP_NONE) {
		blktap_zap_range(vma, addr, PAGE_SIZE);
		slot->map[i] = BLKTAP_MAP_NONE;
	}
	/* vm_page_prot is read-only (write-notify), see blktap_vma_mkwrite */
	err = vm_insert_page(vma, addr, page);
	if (err)
		return false;
	slot->map[i] = BLKTAP_MAP_ZC;
	slot->has_zc = true;
	return true;
}

/*
 * Copy between a bvec and the bounce pages: unpacked, bvec @i sits at its
 * own offset in bounce page @i; packed, the data is contiguous from @pos.
 */
static void blktap_copy_bvec(struct blktap_slot *slot, struct bio_vec *bv,
			     u32 i, u32 pos, bool to_bounce)
{
	u32 done = 0, page, off, n;
	void *mem, *b;

	mem = bvec_kmap_local(bv);
	while (done < bv->bv_len) {
		if (slot->packed) {
			page = (pos + done) / PAGE_SIZE;
			off = (pos + done) % PAGE_SIZE;
		} else {
			page = i;
			off = bv->bv_offset + done;
		}
		n = min_t(u32, bv->bv_len - done, PAGE_SIZE - off);
		b = page_address(slot->bounce[page]) + off;
		if (to_bounce)
			memcpy(b, mem + done, n);
		else
			memcpy(mem + done, b, n);
		done += n;
	}
	kunmap_local(mem);
}

static int blktap_map_packed(struct blktap *tap, struct vm_area_struct *vma,
			     struct blktap_slot *slot,
			     struct blktap_request *req, bool write)
{
	struct request *rq = slot->rq;
	u32 bytes = blk_rq_bytes(rq), pos = 0, i, n;
	struct req_iterator iter;
	struct bio_vec bv;
	int err;

	n = blktap_pack_segs(req->seg, bytes);
	if (!n)
		return -EIO;
	for (i = 0; i < n; i++) {
		err = blktap_get_bounce(slot, i);
		if (err)
			return err;
		err = blktap_map_bounce(vma, slot, i);
		if (err)
			return err;
		slot->bounced[i] = true;
	}
	if (write) {
		rq_for_each_segment(bv, rq, iter) {
			blktap_copy_bvec(slot, &bv, 0, pos, true);
			pos += bv.bv_len;
		}
	}
	slot->nr_segs = n;
	atomic64_add(n, &tap->stats.pages_copied);
	return 0;
}

static int blktap_map_data(struct blktap *tap, struct vm_area_struct *vma,
			   struct blktap_slot *slot, struct blktap_request *req)
{
	struct request *rq = slot->rq;
	bool write = rq_data_dir(rq) == WRITE;
	bool zc = READ_ONCE(tap->zerocopy);
	struct req_iterator iter;
	struct bio_vec bv;
	u32 i = 0;
	int err;

	rq_for_each_segment(bv, rq, iter)
		i++;
	slot->packed = i > BLKTAP_MAX_SEGS;
	if (slot->packed)
		return blktap_map_packed(tap, vma, slot, req, write);

	i = 0;
	rq_for_each_segment(bv, rq, iter) {
		req->seg[i].page = i;
		req->seg[i].offset = bv.bv_offset;
		req->seg[i].length = bv.bv_len;
		slot->bounced[i] = slot->precopied[i] || !zc || !write ||
				   !blktap_map_zc(vma, slot, i, bv.bv_page);
		if (slot->bounced[i]) {
			err = blktap_get_bounce(slot, i);
			if (err)
				return err;
			err = blktap_map_bounce(vma, slot, i);
			if (err)
				return err;
			if (write && !slot->precopied[i])
				blktap_copy_bvec(slot, &bv, i, 0, true);
			atomic64_inc(&tap->stats.pages_copied);
		} else {
			atomic64_inc(&tap->stats.pages_mapped);
		}
		i++;
	}
	slot->nr_segs = i;
	return 0;
}

static void blktap_unmap_data(struct vm_area_struct *vma,
			      struct blktap_slot *slot)
{
	if (!slot->has_zc)
		return;
	if (vma)
		blktap_zap_range(vma, blktap_slot_addr(vma, slot, 0),
				 BLKTAP_SLOT_SIZE);
	memset(slot->map, BLKTAP_MAP_NONE, sizeof(slot->map));
	slot->has_zc = false;
}

/*
 * From queue_rq, on the submitting CPU: copy what a write will need copied
 * into the slot's bounce pages that exist already, so that tapdisk's KICK
 * only maps them. The slot is ours: its tag is this request's.
 */
void blktap_precopy(struct blktap *tap, struct blktap_slot *slot,
		    struct request *rq)
{
	bool zc = READ_ONCE(tap->zerocopy);
	struct req_iterator iter;
	struct bio_vec bv;
	u32 i = 0;

	memset(slot->precopied, 0, sizeof(slot->precopied));
	if (req_op(rq) != REQ_OP_WRITE)
		return;
	slot->packed = false;
	rq_for_each_segment(bv, rq, iter) {
		if (i == BLKTAP_MAX_SEGS) {
			/* packed: publishing copies it all */
			memset(slot->precopied, 0, sizeof(slot->precopied));
			return;
		}
		if (slot->bounce[i] && !(zc && blktap_zc_candidate(bv.bv_page))) {
			blktap_copy_bvec(slot, &bv, i, 0, true);
			slot->precopied[i] = true;
		}
		i++;
	}
}

/* Give the slot back and end its request, from any context. */
static void blktap_slot_end(struct blktap *tap, struct blktap_slot *slot)
{
	struct request *rq = slot->rq;
	blk_status_t status = slot->status;
	unsigned long flags;

	spin_lock_irqsave(&tap->slock, flags);
	slot->rq = NULL;
	slot->state = BLKTAP_SLOT_FREE;
	spin_unlock_irqrestore(&tap->slock, flags);
	blk_mq_end_request(rq, status);
}

/*
 * blk-mq's completion, on the CPU that submitted the request: copying read
 * data back there keeps it off tapdisk's one thread.
 */
void blktap_complete_rq(struct request *rq)
{
	struct blktap *tap = rq->q->queuedata;
	struct blktap_slot *slot = &tap->slots[rq->tag];
	struct req_iterator iter;
	struct bio_vec bv;
	u32 i = 0, pos = 0;

	rq_for_each_segment(bv, rq, iter) {
		if (slot->packed || slot->bounced[i])
			blktap_copy_bvec(slot, &bv, i, pos, false);
		pos += bv.bv_len;
		i++;
	}
	blktap_slot_end(tap, slot);
}

/*
 * End the request of a busy slot. @vma: the attached mapping (mmap_lock
 * held) or NULL when detached, when nothing is mapped.
 */
void blktap_slot_finish(struct blktap *tap, struct vm_area_struct *vma,
			struct blktap_slot *slot, blk_status_t status)
{
	blktap_unmap_data(vma, slot);
	slot->status = status;
	if (status == BLK_STS_OK && req_op(slot->rq) == REQ_OP_READ)
		blk_mq_complete_request(slot->rq);	/* blktap_complete_rq */
	else
		blktap_slot_end(tap, slot);
}

static int blktap_fill_request(struct blktap *tap, struct vm_area_struct *vma,
			       struct blktap_slot *slot,
			       struct blktap_request *req)
{
	struct request *rq = slot->rq;

	memset(req, 0, offsetof(struct blktap_request, seg));
	req->id = slot->id;
	req->slot = slot - tap->slots;
	req->sector = blk_rq_pos(rq);
	req->nr_sectors = blk_rq_sectors(rq);
	slot->nr_segs = 0;
	slot->packed = false;

	switch (req_op(rq)) {
	case REQ_OP_READ:
		req->op = BLKTAP_OP_READ;
		break;
	case REQ_OP_WRITE:
		req->op = BLKTAP_OP_WRITE;
		if (rq->cmd_flags & REQ_FUA)
			req->flags |= BLKTAP_REQ_FUA;
		break;
	case REQ_OP_FLUSH:
		req->op = BLKTAP_OP_FLUSH;
		req->nr_sectors = 0;
		return 0;
	case REQ_OP_DISCARD:
		req->op = BLKTAP_OP_DISCARD;
		return 0;
	case REQ_OP_WRITE_ZEROES:
		req->op = BLKTAP_OP_WRITE_ZEROES;
		if (rq->cmd_flags & REQ_NOUNMAP)
			req->flags |= BLKTAP_REQ_NOUNMAP;
		return 0;
	default:
		return -EOPNOTSUPP;
	}
	return blktap_map_data(tap, vma, slot, req);
}

int blktap_ring_publish(struct blktap *tap, struct vm_area_struct *vma)
{
	struct blktap_request *req;
	struct blktap_slot *slot;
	int n = 0, err;

	lockdep_assert_held(&tap->lock);
	for (;;) {
		spin_lock_irq(&tap->slock);
		slot = list_first_entry_or_null(&tap->pending,
						struct blktap_slot, node);
		if (slot) {
			list_del_init(&slot->node);
			slot->state = BLKTAP_SLOT_BUSY;
		}
		spin_unlock_irq(&tap->slock);
		if (!slot)
			break;

		slot->id = blktap_make_id(++slot->seq, slot - tap->slots);
		req = &tap->sring->req[BLKTAP_RING_INDEX(tap->req_prod)];
		err = blktap_fill_request(tap, vma, slot, req);
		if (err) {
			blktap_slot_finish(tap, vma, slot, errno_to_blk_status(err));
			continue;
		}
		req->nr_segs = slot->nr_segs;

		spin_lock_irq(&tap->slock);
		slot->state = BLKTAP_SLOT_PUBLISHED;
		spin_unlock_irq(&tap->slock);
		tap->req_prod++;
		n++;
	}
	if (n) {
		/* entries before the index that publishes them */
		smp_wmb();
		WRITE_ONCE(tap->sring->hdr.req_prod, tap->req_prod);
	}
	return n;
}

static void blktap_complete(struct blktap *tap, struct vm_area_struct *vma,
			    u64 id, s32 status)
{
	int idx = blktap_rsp_slot(id);
	struct blktap_slot *slot;
	int err;

	if (idx < 0) {
		blktap_bad_response(tap, "unknown id", id, status);
		return;
	}
	slot = &tap->slots[idx];
	spin_lock_irq(&tap->slock);
	if (!blktap_rsp_matches(slot->state == BLKTAP_SLOT_PUBLISHED,
				slot->id, id)) {
		spin_unlock_irq(&tap->slock);
		blktap_bad_response(tap, "id not in flight", id, status);
		return;
	}
	slot->state = BLKTAP_SLOT_BUSY;
	spin_unlock_irq(&tap->slock);

	err = blktap_rsp_errno(status);
	if (err > 0) {
		blktap_bad_response(tap, "bad status", id, status);
		err = -EIO;
	}
	blktap_slot_finish(tap, vma, slot, errno_to_blk_status(err));
}

int blktap_ring_consume(struct blktap *tap, struct vm_area_struct *vma)
{
	struct blktap_sring *sring = tap->sring;
	struct blktap_response *rsp;
	u32 prod, cons;
	int n = 0;

	lockdep_assert_held(&tap->lock);
	prod = READ_ONCE(sring->hdr.rsp_prod);
	if (!blktap_rsp_prod_valid(prod, tap->rsp_cons)) {
		/* cannot tell real entries from garbage: skip them all */
		blktap_bad_response(tap, "response producer out of range",
				    prod, 0);
		tap->rsp_cons = prod;
		WRITE_ONCE(sring->hdr.rsp_cons, prod);
		return 0;
	}
	/* the index before the entries it covers */
	smp_rmb();
	for (cons = tap->rsp_cons; cons != prod; cons++) {
		rsp = &sring->rsp[BLKTAP_RING_INDEX(cons)];
		blktap_complete(tap, vma, READ_ONCE(rsp->id),
				READ_ONCE(rsp->status));
		n++;
	}
	tap->rsp_cons = prod;
	WRITE_ONCE(sring->hdr.rsp_cons, prod);
	return n;
}

void blktap_slots_free_bounce(struct blktap *tap)
{
	struct blktap_slot *slot;
	u32 s, i;

	for (s = 0; s < BLKTAP_RING_SLOTS; s++) {
		slot = &tap->slots[s];
		for (i = 0; i < BLKTAP_MAX_SEGS; i++) {
			if (slot->bounce[i])
				__free_page(slot->bounce[i]);
			slot->bounce[i] = NULL;
		}
	}
}
