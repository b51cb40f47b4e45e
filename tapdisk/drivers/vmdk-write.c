// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Writes to a vmdk image (see vmdk.c). Allocated grains and flat extents
 * are written in place. An unallocated grain gets a whole new grain at the
 * end of its extent file: the data (with the rest of the grain copied from
 * the parent, or zeros) is written first, then the grain table entry in
 * both copies, then, if the grain table itself was new, the grain
 * directory entry in both copies. Each step waits for the previous one to
 * complete and, where a table is about to point at new data, for an
 * fdatasync after it, so that not even a power failure leaves a table
 * pointing at data that is not on disk. One fdatasync serves every
 * allocation waiting for it, so under load they batch.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blktap/log.h"
#include "vmdk.h"

/* ---- writes ---- */

enum alloc_stage {
	STAGE_COW,		/* reading the old contents of the grain */
	STAGE_DATA,		/* writing the grain (and a new, empty GT) */
	STAGE_SYNC_DATA,	/* fdatasync: the data is on disk */
	STAGE_GT,		/* writing the GT entry, both copies */
	STAGE_SYNC_GT,		/* fdatasync: a new GT is on disk */
	STAGE_GD,		/* writing the GD entry, both copies */
};

/*
 * One grain being allocated. Writes to the same grain, or to any grain of
 * a grain table being allocated, wait on it and are sent again once it is
 * done, so that each grain and each table is allocated once.
 */
struct vmdk_alloc {
	struct vmdk_alloc *next;
	struct vmdk_alloc *sync_next;	/* on sync_wait/sync_batch */
	struct td_image *img;
	struct vmdk_extent *ext;
	struct td_req *req;		/* the write that allocates */
	struct td_req *waiters;		/* linked through drv_arg */
	uint64_t grain_idx;
	uint32_t gd_idx;
	bool new_gt;
	uint64_t data_off, gt_off, rgt_off;	/* bytes; rgt_off 0: no copy */
	uint32_t *new_table;
	void *buf;			/* the whole grain, for copy-on-write */
	void *zero_gt;
	uint8_t gte_le[4], gde_le[4], rgde_le[4];
	enum alloc_stage stage;
	int pending, err;
	struct td_iocb io[3];
};

static void sparse_write(struct td_image *img, struct vmdk_extent *e,
			 struct td_req *req, uint64_t a, uint64_t b, int *err);

static void alloc_finish(struct vmdk_alloc *al, int err)
{
	struct vmdk_extent *e = al->ext;
	struct td_image *img = al->img;
	uint32_t per = e->hdr.gtes_per_gt;
	struct td_req *w = al->waiters;
	struct vmdk_alloc **pp;

	for (pp = &e->allocs; *pp != al; pp = &(*pp)->next)
		;
	*pp = al->next;
	if (!err && al->new_gt && !vmdk_gt_insert(e, al->gd_idx, al->new_table))
		err = -ENOMEM;	/* on disk but not in memory: the next open sees it */
	if (!err) {
		if (al->new_gt) {
			e->gd[al->gd_idx] = (uint32_t)(al->gt_off / VMDK_SECTOR);
			if (e->rgd)
				e->rgd[al->gd_idx] = (uint32_t)(al->rgt_off / VMDK_SECTOR);
			al->new_table = NULL;
		}
		e->gt[al->gd_idx]->ent[al->grain_idx % per] =
			(uint32_t)(al->data_off / VMDK_SECTOR);
		if (e->eof < al->data_off + e->grain)
			e->eof = al->data_off + e->grain;
	} else {
		img->errors++;
		td_log_err("%s: allocating grain %llu: %s", e->label,
			   (unsigned long long)al->grain_idx, strerror(-err));
	}
	if (!al->new_gt)
		vmdk_gt_unpin(e, e->gt[al->gd_idx]);
	free(al->new_table);
	free(al->buf);
	free(al->zero_gt);
	td_req_complete(al->req, err);
	free(al);
	/* Waiters go through the table cache again: their table may be gone. */
	while (w) {
		struct td_req *next = w->drv_arg;

		vmdk_extent_run(img, e, w, sparse_write);
		w = next;
	}
}

static void alloc_step(struct vmdk_alloc *al);

static void alloc_io_done(struct td_iocb *iocb, long res)
{
	struct vmdk_alloc *al = iocb->arg;

	if (res < 0 && !al->err)
		al->err = (int)res;
	if (--al->pending == 0)
		alloc_step(al);
}

static void alloc_write(struct vmdk_alloc *al, const void *buf, size_t len,
			uint64_t off)
{
	struct td_iocb *io = &al->io[al->pending++];

	td_iocb_prep_buf(io, TD_AIO_WRITE, al->ext->fd, (void *)buf, len, off, 0,
			 alloc_io_done, al);
	td_aio_queue(al->img->ctx->aio, io);
}

static void barrier_kick(struct vmdk_extent *e);

static void barrier_done(struct td_iocb *iocb, long res)
{
	struct vmdk_extent *e = iocb->arg;
	struct vmdk_alloc *al = e->sync_batch;

	if (res == -EINVAL)	/* no asynchronous fdsync on this filesystem */
		res = fdatasync(e->fd) < 0 ? -errno : 0;
	e->sync_batch = NULL;
	e->sync_busy = false;
	while (al) {
		struct vmdk_alloc *next = al->sync_next;

		if (res < 0 && !al->err)
			al->err = (int)res;
		alloc_step(al);
		al = next;
	}
	barrier_kick(e);
}

static void barrier_kick(struct vmdk_extent *e)
{
	if (e->sync_busy || !e->sync_wait)
		return;
	e->sync_batch = e->sync_wait;
	e->sync_wait = NULL;
	e->sync_busy = true;
	td_iocb_prep(&e->sync_io, TD_AIO_FDSYNC, e->fd, NULL, 0, 0, 0,
		     barrier_done, e);
	td_aio_queue(e->sync_img->ctx->aio, &e->sync_io);
}

/* Wait for an fdatasync that starts after everything @al wrote so far. */
static void barrier_join(struct vmdk_alloc *al)
{
	struct vmdk_extent *e = al->ext;

	e->sync_img = al->img;
	al->sync_next = e->sync_wait;
	e->sync_wait = al;
	barrier_kick(e);
}

/* Start the next stage once everything of the current one has completed. */
static void alloc_step(struct vmdk_alloc *al)
{
	struct vmdk_extent *e = al->ext;
	uint64_t gte_at = (al->grain_idx % e->hdr.gtes_per_gt) * 4;
	uint64_t gde_at = (uint64_t)al->gd_idx * 4;

	if (al->err) {
		alloc_finish(al, al->err);
		return;
	}
	switch (al->stage) {
	case STAGE_COW:
		al->stage = STAGE_DATA;
		if (al->buf) {
			alloc_write(al, al->buf, e->grain, al->data_off);
		} else {
			struct td_iocb *io = &al->io[al->pending++];

			td_iocb_prep(io, TD_AIO_WRITE, e->fd, al->req->iov,
				     al->req->niov, al->data_off, 0, alloc_io_done, al);
			td_aio_queue(al->img->ctx->aio, io);
		}
		if (al->new_gt) {
			alloc_write(al, al->zero_gt, e->gt_bytes, al->gt_off);
			if (al->rgt_off)
				alloc_write(al, al->zero_gt, e->gt_bytes, al->rgt_off);
		}
		break;
	case STAGE_DATA:
		al->stage = STAGE_SYNC_DATA;
		barrier_join(al);
		break;
	case STAGE_SYNC_DATA:
		al->stage = STAGE_GT;
		alloc_write(al, al->gte_le, 4, al->gt_off + gte_at);
		if (al->rgt_off)
			alloc_write(al, al->gte_le, 4, al->rgt_off + gte_at);
		break;
	case STAGE_GT:
		if (!al->new_gt) {
			alloc_finish(al, 0);
			break;
		}
		al->stage = STAGE_SYNC_GT;
		barrier_join(al);
		break;
	case STAGE_SYNC_GT:
		al->stage = STAGE_GD;
		alloc_write(al, al->gde_le, 4, e->hdr.gd_offset * VMDK_SECTOR + gde_at);
		if (al->rgt_off)
			alloc_write(al, al->rgde_le, 4,
				    e->hdr.rgd_offset * VMDK_SECTOR + gde_at);
		break;
	case STAGE_GD:
		alloc_finish(al, 0);
		break;
	}
}

/* The old contents of the grain are in al->buf: lay the new data over them. */
static void cow_merge(struct vmdk_alloc *al, int err)
{
	struct vmdk_extent *e = al->ext;
	uint64_t vstart = e->start + al->grain_idx * e->grain;

	if (err && !al->err)
		al->err = err;
	if (!al->err)
		td_iov_to_buf(al->req->iov, al->req->niov, 0,
			      (char *)al->buf + (al->req->off - vstart), al->req->len);
	alloc_step(al);
}

static void cow_read_done(struct td_req *r, int err)
{
	struct vmdk_alloc *al = r->arg;

	td_req_free(r);
	cow_merge(al, err);
}

/* Read what the grain held before (parent or zeros) under the new data. */
static void alloc_cow(struct vmdk_alloc *al, uint32_t old_gte)
{
	struct vmdk_extent *e = al->ext;
	uint64_t vstart = e->start + al->grain_idx * e->grain;
	uint64_t vend = vstart + e->grain;
	struct td_req *r;

	if (vend > e->start + e->len)
		vend = e->start + e->len;
	memset((char *)al->buf + (vend - vstart), 0, e->grain - (vend - vstart));
	if (gte_kind(e, old_gte) == RUN_ZERO || !al->img->parent) {
		memset(al->buf, 0, vend - vstart);
		cow_merge(al, 0);
		return;
	}
	r = td_req_new(TD_OP_READ, vstart, vend - vstart, NULL, 0, cow_read_done, al);
	if (!r) {
		al->err = -ENOMEM;
		alloc_step(al);
		return;
	}
	r->iov = r->iov_inline;
	r->niov = 1;
	r->iov_inline[0].iov_base = al->buf;
	r->iov_inline[0].iov_len = vend - vstart;
	td_image_read_parent(al->img, r);
}

static void start_alloc(struct td_image *img, struct vmdk_extent *e,
			struct td_req *c, uint64_t g, uint32_t old_gte)
{
	uint32_t per = e->hdr.gtes_per_gt;
	struct vmdk_alloc *al = calloc(1, sizeof(*al));
	uint64_t need;

	if (!al)
		goto nomem;
	al->img = img;
	al->ext = e;
	al->req = c;
	al->grain_idx = g;
	al->gd_idx = (uint32_t)(g / per);
	al->new_gt = !e->gd[al->gd_idx];
	need = e->grain + (al->new_gt ? 2ull * e->gt_bytes : 0);
	if (e->alloc + need > (uint64_t)UINT32_MAX * VMDK_SECTOR) {
		td_log_err("%s: the extent is full (sparse extents hold at most 2 TiB)",
			   e->label);
		free(al);
		td_image_complete_later(img, c, -ENOSPC);
		return;
	}
	if (al->new_gt) {
		al->new_table = calloc(per, sizeof(uint32_t));
		al->zero_gt = calloc(1, e->gt_bytes);
		if (!al->new_table || !al->zero_gt)
			goto nomem_free;
		al->gt_off = e->alloc;
		e->alloc += e->gt_bytes;
		if (e->rgd) {
			al->rgt_off = e->alloc;
			e->alloc += e->gt_bytes;
		}
	} else {
		al->gt_off = (uint64_t)e->gd[al->gd_idx] * VMDK_SECTOR;
		if (e->rgd && e->rgd[al->gd_idx])
			al->rgt_off = (uint64_t)e->rgd[al->gd_idx] * VMDK_SECTOR;
	}
	if (c->len != e->grain && !(al->buf = malloc(e->grain)))
		goto nomem_free;
	al->data_off = e->alloc;
	e->alloc += e->grain;
	vmdk_put_le32(al->gte_le, (uint32_t)(al->data_off / VMDK_SECTOR));
	vmdk_put_le32(al->gde_le, (uint32_t)(al->gt_off / VMDK_SECTOR));
	vmdk_put_le32(al->rgde_le, (uint32_t)(al->rgt_off / VMDK_SECTOR));
	al->next = e->allocs;
	e->allocs = al;
	if (!al->new_gt)
		e->gt[al->gd_idx]->pins++;	/* updated in alloc_finish */
	if (al->buf)
		alloc_cow(al, old_gte);
	else
		alloc_step(al);
	return;

nomem_free:
	free(al->new_table);
	free(al->zero_gt);
	free(al);
nomem:
	td_image_complete_later(img, c, -ENOMEM);
}

/* Write @c, which lies inside one grain. */
static void write_grain(struct td_image *img, struct vmdk_extent *e,
			struct td_req *c)
{
	uint64_t rel = c->off - e->start, g = rel / e->grain;
	uint32_t gte = gte_get(e, g);

	if (gte_kind(e, gte) == RUN_DATA) {
		vmdk_io_file(img, e, c, TD_AIO_WRITE, (uint64_t)gte * VMDK_SECTOR + rel % e->grain);
		return;
	}
	for (struct vmdk_alloc *al = e->allocs; al; al = al->next) {
		if (al->grain_idx == g ||
		    (al->new_gt && al->gd_idx == g / e->hdr.gtes_per_gt)) {
			struct td_req **pp = &al->waiters;

			while (*pp)
				pp = (struct td_req **)&(*pp)->drv_arg;
			c->drv_arg = NULL;
			*pp = c;
			return;
		}
	}
	start_alloc(img, e, c, g, gte);
}

static void sparse_write(struct td_image *img, struct vmdk_extent *e,
			 struct td_req *req, uint64_t a, uint64_t b, int *err)
{
	while (a < b && !*err) {
		enum run_kind kind;
		uint64_t host, end = vmdk_sparse_run(e, a, b, &kind, &host);
		struct td_req *c;

		if (kind != RUN_DATA) {
			/* Unallocated: one grain at a time. */
			end = e->start + ((a - e->start) / e->grain + 1) * e->grain;
			if (end > b)
				end = b;
		}
		c = vmdk_piece(req, a, end);
		if (!c) {
			*err = -ENOMEM;
			return;
		}
		if (kind == RUN_DATA)
			vmdk_io_file(img, e, c, TD_AIO_WRITE, host);
		else
			write_grain(img, e, c);
		a = end;
	}
}

static void extent_write(struct td_image *img, struct vmdk_extent *e,
			 struct td_req *req, uint64_t a, uint64_t b, int *err)
{
	struct td_req *c;

	if (!e->writable || e->type == VMDK_EXT_ZERO) {
		td_log_err("%s: write at %llu: the extent is read-only",
			   e->label, (unsigned long long)a);
		*err = -EROFS;
		return;
	}
	if (e->type == VMDK_EXT_SPARSE) {
		sparse_write(img, e, req, a, b, err);
		return;
	}
	c = vmdk_piece(req, a, b);
	if (!c) {
		*err = -ENOMEM;
		return;
	}
	vmdk_io_file(img, e, c, TD_AIO_WRITE, e->flat_off + (a - e->start));
}

void vmdk_queue_write(struct td_image *img, struct td_req *req)
{
	vmdk_new_cid(img);
	vmdk_for_extents(img, req, extent_write);
}


/* ---- write-zeroes ---- */

#define ZERO_CHUNK	(1u << 20)	/* bytes of zeros written per piece */

static void *zero_chunk(void)
{
	static void *buf;

	if (!buf)
		buf = calloc(1, ZERO_CHUNK);
	return buf;
}

/*
 * Grains that already read as zeros (unallocated with no parent, or
 * zeroed-grain entries) are left alone unless the caller wants the space
 * allocated (TD_REQ_NO_HOLE); everything else gets written zeros.
 */
static void extent_zero(struct td_image *img, struct vmdk_extent *e,
			struct td_req *req, uint64_t a, uint64_t b, int *err)
{
	void *zeros = zero_chunk();

	if (!zeros) {
		*err = -ENOMEM;
		return;
	}
	while (a < b && !*err) {
		uint64_t end = b;
		struct td_req *c;

		if (e->type == VMDK_EXT_SPARSE && e->writable &&
		    !(req->flags & TD_REQ_NO_HOLE)) {
			enum run_kind kind;
			uint64_t host;

			end = vmdk_sparse_run(e, a, b, &kind, &host);
			if (kind == RUN_ZERO || (kind == RUN_PARENT && !img->parent)) {
				a = end;
				continue;
			}
		}
		if (end - a > ZERO_CHUNK)
			end = a + ZERO_CHUNK;
		c = vmdk_piece(req, a, end);
		if (!c) {
			*err = -ENOMEM;
			return;
		}
		c->op = TD_OP_WRITE;
		c->flags &= ~TD_REQ_NO_HOLE;
		c->iov = c->iov_inline;
		c->niov = 1;
		c->iov_inline[0].iov_base = zeros;
		c->iov_inline[0].iov_len = end - a;
		td_req_hold(c);
		extent_write(img, e, c, a, end, err);
		td_req_release(c, *err);
		a = end;
	}
}

void vmdk_write_zeroes(struct td_image *img, struct td_req *req)
{
	vmdk_new_cid(img);
	vmdk_for_extents(img, req, extent_zero);
}
