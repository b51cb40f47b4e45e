// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * qcow driver, allocation: writes to unallocated or compressed clusters get
 * new clusters at the end of the file (and a new L2 table there when
 * theirs has none yet), partial clusters filled from the parent or the old
 * compressed data first (copy-on-write). Once the data is written the
 * table in memory points at it and is left dirty: qcow-meta.c writes it
 * back after an fdatasync of the data, and the write is answered once the
 * table is in the file (writes in flight together share that writeback).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blktap/log.h"
#include "qcow.h"

/* ---- allocation ---- */

static void alloc_free(struct qalloc *a)
{
	free(a->part[0]);
	if (a->part[1] != a->part[0])
		free(a->part[1]);
	free(a->iov);
	free(a);
}

static void alloc_finish(struct qalloc *a, int err)
{
	struct td_image *img = a->img;
	struct qcow_image *s = QI(img);
	struct td_req *w = a->w;

	if (err)
		img->errors++;
	if (a->t)
		qcow_l2c_put(&s->l2c, a->t);
	qcow_busy_del(s, &a->busy);
	alloc_free(a);
	/*
	 * Answer only once the table pointing at the new data is in the file:
	 * a tapdisk killed after answering must not lose the write (the kernel
	 * would report the next flush as a success). Concurrent writes share
	 * one writeback.
	 */
	if (!err)
		qcow_meta_wait_written(img, w);
	else
		td_req_complete(w, err);
}

/*
 * The data is written: point the table in memory at it and leave the table
 * dirty for the next writeback (qcow-meta.c), which puts it on disk after
 * an fdatasync of the data. A new table gets its L1 entry in memory now;
 * on disk after the table.
 */
static void alloc_commit(struct qalloc *a)
{
	struct qcow_image *s = QI(a->img);
	uint64_t cs = s->h.cluster_size, idx = a->c0 & (s->h.l2_entries - 1);
	struct qcow_l2 *t = a->t;

	if (a->newt) {
		memset(t->tab, 0, s->h.l2_entries * sizeof(*t->tab));
		t->ready = true;
		t->l1_new = true;
		t->l1i = a->l1i;
		s->l1[a->l1i] = a->l2off;
	}
	for (uint64_t k = 0; k < a->n; k++)
		t->tab[idx + k] = a->phys + k * cs;
	qcow_meta_dirty(s, t);
	alloc_finish(a, 0);
}

static void data_done(struct td_iocb *io, long res)
{
	struct qalloc *a = io->arg;

	if (res < 0 && !a->err) {
		a->err = (int)res;
		td_log_err("%s: writing new clusters at offset %llu: %s",
			   a->img->name, ULL(a->phys), strerror(-res));
	}
	if (--a->pending)
		return;
	if (a->err)
		alloc_finish(a, a->err);
	else
		alloc_commit(a);
}

/* Is guest cluster @c only partly covered by the write? */
static bool partial(const struct qalloc *a, uint64_t c, uint64_t cs)
{
	return a->w->off > c * cs || a->w->off + a->w->len < (c + 1) * cs;
}

/* Copy @len bytes at @off of @src into @dst entries; returns the count. */
static int iov_sub(const struct iovec *src, int nsrc, uint64_t off,
		   uint64_t len, struct iovec *dst)
{
	int n = 0;

	for (int i = 0; i < nsrc && len; i++) {
		if (off >= src[i].iov_len) {
			off -= src[i].iov_len;
			continue;
		}
		uint64_t take = src[i].iov_len - off;

		if (take > len)
			take = len;
		dst[n].iov_base = (char *)src[i].iov_base + off;
		dst[n++].iov_len = take;
		len -= take;
		off = 0;
	}
	return n;
}

/* The partial clusters hold their old data: write everything out. */
static void alloc_write(struct qalloc *a)
{
	struct qcow_image *s = QI(a->img);
	uint64_t cs = s->h.cluster_size, base = a->c0 * cs;
	struct td_req *w = a->w;
	uint64_t mid_lo = base, mid_hi = base + a->n * cs;
	int n = 0;

	a->iov = calloc(w->niov + 2, sizeof(*a->iov));
	if (!a->iov) {
		alloc_finish(a, -ENOMEM);
		return;
	}
	if (a->part[0]) {
		uint64_t end = base + cs < w->off + w->len ? base + cs : w->off + w->len;

		td_iov_to_buf(w->iov, w->niov, 0, a->part[0] + (w->off - base),
			      end - w->off);
		a->iov[n].iov_base = a->part[0];
		a->iov[n++].iov_len = cs;
		mid_lo += cs;
	}
	if (a->part[1] && a->part[1] != a->part[0]) {
		uint64_t tb = base + (a->n - 1) * cs;

		td_iov_to_buf(w->iov, w->niov, tb - w->off, a->part[1],
			      w->off + w->len - tb);
		mid_hi -= cs;
	} else if (a->part[1]) {
		mid_hi -= cs;
	}
	if (mid_hi > mid_lo)
		n += iov_sub(w->iov, w->niov, mid_lo - w->off, mid_hi - mid_lo,
			     a->iov + n);
	if (a->part[1] && a->part[1] != a->part[0]) {
		a->iov[n].iov_base = a->part[1];
		a->iov[n++].iov_len = cs;
	}
	a->pending = 1;
	td_iocb_prep(&a->io, TD_AIO_WRITE,
		     qcow_data_fd(s, a->iov, n, a->phys, a->n * cs), a->iov, n,
		     a->phys, 0, data_done, a);
	td_aio_queue(a->img->ctx->aio, &a->io);
}

/* Base data for a partial cluster: parent image or old compressed data. */
struct qbase {
	struct td_iocb io;
	struct qalloc *a;
	int which;
	uint8_t *zbuf;
};

static void base_loaded(struct qalloc *a, int err)
{
	if (err && !a->err)
		a->err = err;
	if (--a->pending)
		return;
	if (a->err)
		alloc_finish(a, a->err);
	else
		alloc_write(a);
}

static void base_parent_done(struct td_req *req, int err)
{
	struct qalloc *a = req->arg;

	td_req_free(req);
	base_loaded(a, err);
}

static void base_z_done(struct td_iocb *io, long res)
{
	struct qbase *b = (struct qbase *)io;
	struct qalloc *a = b->a;
	int err = res < 0 ? (int)res : 0;

	if (!err)
		err = qcow_inflate_into(a->img, b->zbuf, io->len,
					qcow_coff(&QI(a->img)->h, a->old[b->which]),
					a->part[b->which]);
	free(b->zbuf);
	free(b);
	base_loaded(a, err);
}

static int base_load(struct qalloc *a, int which, uint64_t c)
{
	struct td_image *img = a->img;
	struct qcow_image *s = QI(img);
	uint64_t cs = s->h.cluster_size, off = c * cs, e = a->old[which];
	uint64_t len = off + cs > img->size ? img->size - off : cs;

	if (qcow_is_compressed(e)) {
		struct qbase *b = calloc(1, sizeof(*b));
		uint64_t csize = qcow_csize(&s->h, e);

		if (!b || !(b->zbuf = malloc(csize))) {
			free(b);
			return -ENOMEM;
		}
		b->a = a;
		b->which = which;
		a->pending++;
		td_iocb_prep_buf(&b->io, TD_AIO_READ, s->fd, b->zbuf, csize,
				 qcow_coff(&s->h, e), 0, base_z_done, b);
		td_aio_queue(img->ctx->aio, &b->io);
	} else if (img->parent && off < img->parent->size) {
		struct td_req *r = td_req_new(TD_OP_READ, off, len, NULL, 0,
					      base_parent_done, a);

		if (!r)
			return -ENOMEM;
		r->iov = r->iov_inline;
		r->niov = 1;
		r->iov_inline[0].iov_base = a->part[which];
		r->iov_inline[0].iov_len = len;
		a->pending++;
		td_image_read_parent(img, r);
	}
	return 0;
}

/*
 * Allocate guest clusters [c0, c0 + n) for child write @w; @t is their L2
 * table (pinned for us), or NULL to allocate a new table at L1 index @l1i.
 * @old holds the current entries (0 or compressed).
 */
void qcow_alloc_start(struct td_image *img, struct td_req *w, uint64_t c0,
		      uint64_t n, struct qcow_l2 *t, uint64_t l1i)
{
	struct qcow_image *s = QI(img);
	const struct qcow_header *h = &s->h;
	uint64_t cs = h->cluster_size, idx = c0 & (h->l2_entries - 1);
	struct qalloc *a = calloc(1, sizeof(*a));
	int err = -ENOMEM;

	if (!a)
		goto fail;
	a->img = img;
	a->w = w;
	a->c0 = c0;
	a->n = n;
	a->t = t;
	a->l1i = l1i;
	/* A new table: every cluster it will map waits for it to be ready. */
	if (t)
		qcow_busy_add(s, &a->busy, c0, c0 + n - 1);
	else
		qcow_busy_add(s, &a->busy, l1i * h->l2_entries,
			      (l1i + 1) * h->l2_entries - 1);
	if (!t) {
		bool hit;

		a->l2off = s->end;
		/* Not ready, so never evicted; filled in by alloc_commit(). */
		a->t = qcow_l2c_get(&s->l2c, a->l2off, &hit);
		if (!a->t)
			goto fail_a;
		a->newt = true;
		s->end += (h->l2_bytes + cs - 1) / cs * cs;
	}
	a->phys = s->end;
	s->end += n * cs;
	a->old[0] = t ? t->tab[idx] : 0;
	a->old[1] = t ? t->tab[idx + n - 1] : 0;
	/* Hold off the write until every base load has been issued. */
	a->pending = 1;
	for (int i = 0; i < 2; i++) {
		uint64_t c = i ? c0 + n - 1 : c0;

		if (!partial(a, c, cs))
			continue;
		if (i && n == 1) {
			a->part[1] = a->part[0];
			continue;
		}
		/* Aligned: a parent opened with O_DIRECT reads into it directly. */
		if (posix_memalign((void **)&a->part[i], 4096, cs))
			a->part[i] = NULL;
		if (a->part[i])
			memset(a->part[i], 0, cs);
		if (!a->part[i]) {
			base_loaded(a, -ENOMEM);
			return;
		}
		err = base_load(a, i, c);
		if (err) {
			base_loaded(a, err);
			return;
		}
	}
	base_loaded(a, 0);
	return;

fail_a:
	qcow_busy_del(s, &a->busy);
	alloc_free(a);
fail:
	if (t)
		qcow_l2c_put(&s->l2c, t);
	td_image_complete_later(img, w, err);
}
