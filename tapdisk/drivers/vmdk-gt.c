// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The grain-table cache of a sparse vmdk extent (see vmdk.c): at most
 * max_resident tables in memory, least recently used ones evicted, missing
 * ones read through the loop's aio context. The grain directory itself is
 * always in memory (4 bytes per table).
 *
 * The rest of the driver looks grain entries up synchronously (gte_get), so
 * a request on a sparse extent first passes vmdk_extent_run(): it pins every
 * table its range needs, waits for those still loading, runs, and unpins. A
 * pinned table is never evicted; an allocation keeps its table pinned until
 * it has updated it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blktap/log.h"
#include "vmdk.h"

/* A request piece waiting for tables, with the tables it holds pinned. */
struct vmdk_run {
	struct vmdk_run *next;
	struct td_image *img;
	struct vmdk_extent *ext;
	struct td_req *req;
	vmdk_extent_fn fn;
	unsigned int n;
	struct vmdk_gt *pinned[];
};

/* Is every entry either free, zeroed, or inside the file? */
int vmdk_gt_check(const struct vmdk_extent *e, const struct vmdk_gt *gt)
{
	for (uint32_t j = 0; j < e->hdr.gtes_per_gt; j++) {
		uint32_t v = gt->ent[j];

		if (v == 0 || (v == 1 && e->zero_grain))
			continue;
		if ((uint64_t)v * VMDK_SECTOR >= e->eof) {
			td_log_err("%s: grain %llu is at sector %u, past the end of the file (%llu bytes); the file is truncated or corrupt",
				   e->label,
				   (unsigned long long)gt->idx * e->hdr.gtes_per_gt + j,
				   v, (unsigned long long)e->eof);
			return -EINVAL;
		}
	}
	return 0;
}

static void drop(struct vmdk_extent *e, struct vmdk_gt **pp)
{
	struct vmdk_gt *gt = *pp;

	*pp = gt->next;
	e->gt[gt->idx] = NULL;
	e->n_resident--;
	free(gt->ent);
	free(gt);
}

/* Evict least recently used tables nobody uses until at most @keep remain. */
static void evict(struct vmdk_extent *e, unsigned int keep)
{
	while (e->n_resident > keep) {
		struct vmdk_gt **pp, **victim = NULL;

		for (pp = &e->resident; *pp; pp = &(*pp)->next)
			if (!(*pp)->pins && !(*pp)->loading &&
			    (!victim || (*pp)->used < (*victim)->used))
				victim = pp;
		if (!victim)
			return;		/* everything is in use: go over the limit */
		drop(e, victim);
	}
}

struct vmdk_gt *vmdk_gt_insert(struct vmdk_extent *e, uint32_t idx,
			       uint32_t *ent)
{
	struct vmdk_gt *gt = calloc(1, sizeof(*gt));

	if (!gt)
		return NULL;
	evict(e, e->max_resident - 1);
	gt->idx = idx;
	gt->ent = ent;
	gt->ext = e;
	gt->used = ++e->clock;
	gt->next = e->resident;
	e->resident = gt;
	e->n_resident++;
	e->gt[idx] = gt;
	return gt;
}

/*
 * Over the limit because tables were in use: trim once they are not. A
 * table whose load failed goes, so that the next request reads it again.
 */
void vmdk_gt_unpin(struct vmdk_extent *e, struct vmdk_gt *gt)
{
	if (--gt->pins)
		return;
	if (gt->err) {
		/* A table that failed to load is read again next time. */
		struct vmdk_gt **pp = &e->resident;

		while (*pp != gt)
			pp = &(*pp)->next;
		drop(e, pp);
		return;
	}
	if (e->n_resident > e->max_resident)
		evict(e, e->max_resident);
}

void vmdk_gt_set_limit(struct vmdk_extent *e, unsigned int tables)
{
	e->max_resident = tables ? tables : 1;
	evict(e, e->max_resident);
}

void vmdk_gt_free_all(struct vmdk_extent *e)
{
	while (e->resident) {
		struct vmdk_gt *gt = e->resident;

		e->resident = gt->next;
		free(gt->raw);
		free(gt->ent);
		free(gt);
	}
	e->n_resident = 0;
	free(e->gt);
	e->gt = NULL;
}

static void run_now(struct vmdk_run *r)
{
	struct td_req *req = r->req;
	int err = 0;

	td_req_hold(req);
	r->fn(r->img, r->ext, req, req->off, req->off + req->len, &err);
	for (unsigned int i = 0; i < r->n; i++)
		vmdk_gt_unpin(r->ext, r->pinned[i]);
	free(r);
	td_req_release(req, err);
}

/* Run @r if its tables are all in memory, else wait on one still loading. */
static void run_or_wait(struct vmdk_run *r)
{
	int err = 0;

	for (unsigned int i = 0; i < r->n; i++) {
		struct vmdk_gt *gt = r->pinned[i];

		if (gt->loading) {
			r->next = gt->waiters;
			gt->waiters = r;
			return;
		}
		if (gt->err && !err)
			err = gt->err;
	}
	if (err) {
		for (unsigned int i = 0; i < r->n; i++)
			vmdk_gt_unpin(r->ext, r->pinned[i]);
		td_req_complete(r->req, err);
		free(r);
		return;
	}
	run_now(r);
}

static void load_done(struct td_iocb *iocb, long res)
{
	struct vmdk_gt *gt = iocb->arg;
	struct vmdk_extent *e = gt->ext;
	struct vmdk_run *r = gt->waiters;

	gt->loading = false;
	gt->waiters = NULL;
	if (res < 0) {
		td_log_err("%s: reading grain table %u: %s", e->label, gt->idx,
			   strerror((int)-res));
		gt->err = (int)res;
	} else {
		for (uint32_t j = 0; j < e->hdr.gtes_per_gt; j++)
			gt->ent[j] = vmdk_le32(gt->raw + 4 * j);
		if (vmdk_gt_check(e, gt))
			gt->err = -EIO;
	}
	free(gt->raw);
	gt->raw = NULL;
	while (r) {
		struct vmdk_run *next = r->next;

		run_or_wait(r);
		r = next;
	}
}

static struct vmdk_gt *load(struct td_image *img, struct vmdk_extent *e,
			    uint32_t idx)
{
	uint32_t *ent = malloc(e->hdr.gtes_per_gt * sizeof(uint32_t));
	uint8_t *raw = malloc(e->gt_bytes);
	struct vmdk_gt *gt = ent && raw ? vmdk_gt_insert(e, idx, ent) : NULL;

	if (!gt) {
		free(ent);
		free(raw);
		return NULL;
	}
	gt->loading = true;
	gt->raw = raw;
	td_iocb_prep_buf(&gt->io, TD_AIO_READ, e->fd, raw, e->gt_bytes,
			 (uint64_t)e->gd[idx] * VMDK_SECTOR, 0, load_done, gt);
	td_aio_queue(img->ctx->aio, &gt->io);
	return gt;
}

/*
 * Run @fn on @req (the share of one extent) once the grain tables of its
 * range are in memory; they stay pinned while @fn runs.
 */
void vmdk_extent_run(struct td_image *img, struct vmdk_extent *e,
		     struct td_req *req, vmdk_extent_fn fn)
{
	uint64_t span = e->grain * e->hdr.gtes_per_gt;
	uint32_t t0 = 0, t1 = 0, n = 0;
	struct vmdk_run *r;

	if (e->type == VMDK_EXT_SPARSE) {
		t0 = (uint32_t)((req->off - e->start) / span);
		t1 = (uint32_t)((req->off + req->len - 1 - e->start) / span);
		for (uint32_t t = t0; t <= t1; t++)
			n += e->gd[t] != 0;
	}
	r = malloc(sizeof(*r) + n * sizeof(r->pinned[0]));
	if (!r) {
		td_image_complete_later(img, req, -ENOMEM);
		return;
	}
	r->img = img;
	r->ext = e;
	r->req = req;
	r->fn = fn;
	r->n = 0;
	for (uint32_t t = t0; n && t <= t1; t++) {
		struct vmdk_gt *gt;

		if (!e->gd[t])
			continue;
		gt = e->gt[t] ? e->gt[t] : load(img, e, t);
		if (!gt) {
			for (unsigned int i = 0; i < r->n; i++)
				vmdk_gt_unpin(e, r->pinned[i]);
			free(r);
			td_image_complete_later(img, req, -ENOMEM);
			return;
		}
		gt->pins++;
		gt->used = ++e->clock;
		r->pinned[r->n++] = gt;
	}
	run_or_wait(r);
}
