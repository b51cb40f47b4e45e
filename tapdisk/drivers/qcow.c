// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The qcow driver: QEMU qcow version 1 images (format in qcow-format.h),
 * read and written through the loop's libaio context on a buffered file.
 *
 * A request is cut into pieces, one per L2 table it touches. A piece looks
 * up its L2 table in a bounded LRU cache (loading it asynchronously), then
 * sends runs of clusters where they live: contiguous allocated clusters in
 * one read or write, unallocated ones to the parent image (or zeros),
 * compressed ones through zlib. Writes to unallocated or compressed
 * clusters allocate new clusters at the end of the file, filling partial
 * clusters from the parent or the old compressed data first. The order on
 * disk is data, then (after an fdatasync shared by every allocation in
 * flight) the L2 entries, and for a new L2 table: data and table, fdatasync,
 * then the L1 entry. Clusters being allocated or discarded are marked busy;
 * pieces that touch them wait and start again when they are done, so one
 * cluster is allocated once however many requests race for it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aio.h"
#include "blktap/log.h"
#include "image.h"
#include "qcow-format.h"

#define L2_CACHE_BYTES	(4u << 20)	/* per image */
#define L2_CACHE_MIN	16
#define ULL(x)		((unsigned long long)(x))

struct qpiece;
struct qalloc;

/* Clusters [first, last] being allocated or discarded. */
struct qbusy {
	uint64_t first, last;
	struct qpiece *waiters;
	struct qbusy *next;
};

struct qcow_image {
	int fd;
	struct qcow_header h;
	uint64_t *l1;			/* host order */
	uint64_t end;			/* where the next allocation goes */
	struct qcow_l2c l2c;
	char *backing;			/* resolved path, or NULL */
	struct qbusy *busy;
	/* allocations waiting for the next fdatasync, and the one running */
	struct qalloc *bar_wait, **bar_tail, *bar_batch;
	bool bar_running;
	struct td_iocb bar_io;
	struct td_image *img;
	/* the last compressed cluster inflated */
	uint64_t zc_off;
	uint8_t *zc_buf;
};

/* The part of a request that falls into one L2 table. */
struct qpiece {
	struct td_image *img;
	struct td_req *req;
	uint64_t rel, len;		/* within req */
	uint64_t l1i;
	struct qpiece *next;		/* on a wait list */
};

/* One I/O on behalf of a child request. */
struct qio {
	struct td_iocb io;
	struct td_image *img;
	struct td_req *req;
	uint64_t inoff;			/* compressed: offset in the cluster */
	uint64_t coff;
	uint8_t *buf;
};

/* An allocation (or a discard: no data, entries set to 0). */
struct qalloc {
	struct td_image *img;
	struct td_req *w;		/* the write (child of the request) */
	bool discard;
	uint64_t c0, n;			/* guest clusters */
	uint64_t phys;			/* new data clusters */
	struct qcow_l2 *t;		/* existing L2 table, pinned */
	uint64_t l1i, l2off;
	uint8_t *newl2;			/* new L2 table as stored */
	uint8_t *part[2];		/* partial head/tail cluster buffers */
	uint64_t old[2];		/* their old entries */
	uint8_t *ebuf;			/* entries to write */
	struct iovec *iov;
	int pending, err;
	struct qbusy busy;
	struct td_iocb io[2];
	struct qalloc *next;		/* barrier list */
};

static void piece_step(struct qpiece *p);

static struct qcow_image *QI(struct td_image *img)
{
	return img->priv;
}

/* ---- busy clusters ---- */

static struct qbusy *busy_find(struct qcow_image *s, uint64_t first,
			       uint64_t last)
{
	for (struct qbusy *b = s->busy; b; b = b->next)
		if (b->first <= last && first <= b->last)
			return b;
	return NULL;
}

static void busy_add(struct qcow_image *s, struct qbusy *b, uint64_t first,
		     uint64_t last)
{
	b->first = first;
	b->last = last;
	b->waiters = NULL;
	b->next = s->busy;
	s->busy = b;
}

static void busy_del(struct qcow_image *s, struct qbusy *b)
{
	struct qpiece *w = b->waiters;

	for (struct qbusy **pp = &s->busy; *pp; pp = &(*pp)->next)
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	while (w) {
		struct qpiece *next = w->next;

		piece_step(w);
		w = next;
	}
}

/* ---- plain I/O for child requests ---- */

static void qio_done(struct td_iocb *iocb, long res)
{
	struct qio *q = (struct qio *)iocb;
	struct td_image *img = q->img;
	struct td_req *req = q->req;

	if (res < 0) {
		img->errors++;
		td_log_err("%s: %s of guest offset %llu, %llu bytes: %s", img->name,
			   req->op == TD_OP_READ ? "read" : "write",
			   ULL(req->off), ULL(req->len), strerror(-res));
	}
	free(q);
	td_req_complete(req, res < 0 ? (int)res : 0);
}

static void qio_rw(struct td_image *img, struct td_req *req, uint64_t phys)
{
	struct qio *q = calloc(1, sizeof(*q));

	if (!q) {
		td_image_complete_later(img, req, -ENOMEM);
		return;
	}
	q->img = img;
	q->req = req;
	td_iocb_prep(&q->io, req->op == TD_OP_READ ? TD_AIO_READ : TD_AIO_WRITE,
		     QI(img)->fd, req->iov, req->niov, phys, 0, qio_done, q);
	td_aio_queue(img->ctx->aio, &q->io);
}

/* ---- compressed clusters ---- */

static int inflate_into(struct td_image *img, const uint8_t *in, size_t len,
			uint64_t coff, uint8_t *out)
{
	struct qcow_image *s = QI(img);
	int err = qcow_inflate(&s->h, in, len, out);

	if (err)
		td_log_err("%s: compressed cluster at offset %llu (%zu bytes) does not inflate to %llu bytes",
			   img->name, ULL(coff), len, ULL(s->h.cluster_size));
	return err;
}

static void zread_done(struct td_iocb *iocb, long res)
{
	struct qio *q = (struct qio *)iocb;
	struct td_image *img = q->img;
	struct qcow_image *s = QI(img);
	struct td_req *req = q->req;
	int err = res < 0 ? (int)res : 0;

	if (!err)
		err = inflate_into(img, q->buf, q->io.len, q->coff, s->zc_buf);
	if (!err) {
		s->zc_off = q->coff;
		td_iov_from_buf(req->iov, req->niov, 0, s->zc_buf + q->inoff,
				req->len);
	} else {
		s->zc_off = 0;
		img->errors++;
		if (res < 0)
			td_log_err("%s: reading compressed cluster at offset %llu: %s",
				   img->name, ULL(q->coff), strerror(-res));
	}
	free(q->buf);
	free(q);
	td_req_complete(req, err);
}

static void zread(struct td_image *img, struct td_req *req, uint64_t e)
{
	struct qcow_image *s = QI(img);
	uint64_t coff = qcow_coff(&s->h, e), csize = qcow_csize(&s->h, e);
	uint64_t inoff = req->off & (s->h.cluster_size - 1);
	struct qio *q;

	if (s->zc_off == coff) {
		td_iov_from_buf(req->iov, req->niov, 0, s->zc_buf + inoff, req->len);
		td_image_complete_later(img, req, 0);
		return;
	}
	q = calloc(1, sizeof(*q));
	if (!q || !(q->buf = malloc(csize))) {
		free(q);
		td_image_complete_later(img, req, -ENOMEM);
		return;
	}
	q->img = img;
	q->req = req;
	q->coff = coff;
	q->inoff = inoff;
	td_iocb_prep_buf(&q->io, TD_AIO_READ, s->fd, q->buf, csize, coff, 0,
			 zread_done, q);
	td_aio_queue(img->ctx->aio, &q->io);
}

/* ---- the fdatasync that orders data before the metadata pointing to it ---- */

static void alloc_meta(struct qalloc *a);
static void alloc_finish(struct qalloc *a, int err);

static void barrier_kick(struct qcow_image *s);

static void barrier_done(struct td_iocb *io, long res)
{
	struct qcow_image *s = io->arg;
	struct qalloc *a = s->bar_batch;

	if (res == -EINVAL) /* no asynchronous fdsync here: do it now */
		res = fdatasync(s->fd) < 0 ? -errno : 0;
	if (res < 0)
		td_log_err("%s: fdatasync: %s", s->img->name, strerror(-res));
	s->bar_batch = NULL;
	s->bar_running = false;
	while (a) {
		struct qalloc *next = a->next;

		if (res < 0)
			alloc_finish(a, (int)res);
		else
			alloc_meta(a);
		a = next;
	}
	barrier_kick(s);
}

static void barrier_kick(struct qcow_image *s)
{
	if (s->bar_running || !s->bar_wait)
		return;
	s->bar_batch = s->bar_wait;
	s->bar_wait = NULL;
	s->bar_tail = &s->bar_wait;
	s->bar_running = true;
	td_iocb_prep(&s->bar_io, TD_AIO_FDSYNC, s->fd, NULL, 0, 0, 0,
		     barrier_done, s);
	td_aio_queue(s->img->ctx->aio, &s->bar_io);
}

static void barrier_enqueue(struct qcow_image *s, struct qalloc *a)
{
	a->next = NULL;
	*s->bar_tail = a;
	s->bar_tail = &a->next;
	barrier_kick(s);
}

/* ---- allocation ---- */

static void alloc_free(struct qalloc *a)
{
	free(a->newl2);
	free(a->part[0]);
	if (a->part[1] != a->part[0])
		free(a->part[1]);
	free(a->ebuf);
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
	busy_del(s, &a->busy);
	alloc_free(a);
	td_req_complete(w, err);
}

static void meta_done(struct td_iocb *io, long res)
{
	struct qalloc *a = io->arg;
	struct td_image *img = a->img;
	struct qcow_image *s = QI(img);
	uint64_t cs = s->h.cluster_size;

	if (res < 0) {
		td_log_err("%s: writing %s for guest offset %llu: %s", img->name,
			   a->newl2 ? "the L1 entry" : "L2 entries",
			   ULL(a->c0 * cs), strerror(-res));
		alloc_finish(a, (int)res);
		return;
	}
	if (a->newl2) {
		struct qcow_l2 *t;
		bool hit;

		s->l1[a->l1i] = a->l2off;
		t = qcow_l2c_get(&s->l2c, a->l2off, &hit);
		if (t) {
			for (uint64_t i = 0; i < s->h.l2_entries; i++)
				t->tab[i] = qcow_be64(a->newl2 + i * 8);
			t->ready = true;
			qcow_l2c_put(&s->l2c, t);
		}
	} else {
		uint64_t idx = a->c0 & (s->h.l2_entries - 1);

		for (uint64_t k = 0; k < a->n; k++)
			a->t->tab[idx + k] = qcow_be64(a->ebuf + k * 8);
	}
	alloc_finish(a, 0);
}

/* After the barrier: point the metadata at the new data. */
static void alloc_meta(struct qalloc *a)
{
	struct qcow_image *s = QI(a->img);
	const struct qcow_header *h = &s->h;

	if (a->newl2) {
		/* The entries are in the new table already; ebuf has >= 8 bytes. */
		qcow_l1_encode(h, a->ebuf, a->l2off);
		td_iocb_prep_buf(&a->io[0], TD_AIO_WRITE, s->fd, a->ebuf, 8,
				 h->l1_off + a->l1i * 8, 0, meta_done, a);
	} else {
		uint64_t idx = a->c0 & (h->l2_entries - 1);

		td_iocb_prep_buf(&a->io[0], TD_AIO_WRITE, s->fd, a->ebuf, a->n * 8,
				 a->t->off + idx * 8, 0, meta_done, a);
	}
	td_aio_queue(a->img->ctx->aio, &a->io[0]);
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
		barrier_enqueue(QI(a->img), a);
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
	a->pending = a->newl2 ? 2 : 1;
	td_iocb_prep(&a->io[0], TD_AIO_WRITE, s->fd, a->iov, n, a->phys, 0,
		     data_done, a);
	td_aio_queue(a->img->ctx->aio, &a->io[0]);
	if (a->newl2) {
		/* The table is unreferenced until the L1 entry: write it now. */
		td_iocb_prep_buf(&a->io[1], TD_AIO_WRITE, s->fd, a->newl2,
				 s->h.l2_bytes, a->l2off, 0, data_done, a);
		td_aio_queue(a->img->ctx->aio, &a->io[1]);
	}
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
		err = inflate_into(a->img, b->zbuf, io->len,
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
static void alloc_start(struct td_image *img, struct td_req *w, uint64_t c0,
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
	/* A new table: every cluster it will map waits for its L1 entry. */
	if (t)
		busy_add(s, &a->busy, c0, c0 + n - 1);
	else
		busy_add(s, &a->busy, l1i * h->l2_entries,
			 (l1i + 1) * h->l2_entries - 1);
	a->ebuf = malloc(n * 8);
	if (!a->ebuf)
		goto fail_a;
	if (!t) {
		a->newl2 = calloc(1, h->l2_bytes);
		if (!a->newl2)
			goto fail_a;
		a->l2off = s->end;
		s->end += (h->l2_bytes + cs - 1) / cs * cs;
	}
	a->phys = s->end;
	s->end += n * cs;
	for (uint64_t k = 0; k < n; k++) {
		qcow_put_be64(a->ebuf + k * 8, a->phys + k * cs);
		if (a->newl2)
			qcow_put_be64(a->newl2 + (idx + k) * 8, a->phys + k * cs);
	}
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
	busy_del(s, &a->busy);
	alloc_free(a);
fail:
	if (t)
		qcow_l2c_put(&s->l2c, t);
	td_image_complete_later(img, w, err);
}

/* Discard: set the entries of whole clusters [c0, c0 + n) to 0. */
static void discard_start(struct td_image *img, struct td_req *d, uint64_t c0,
			  uint64_t n, struct qcow_l2 *t)
{
	struct qcow_image *s = QI(img);
	uint64_t idx = c0 & (s->h.l2_entries - 1);
	struct qalloc *a = calloc(1, sizeof(*a));

	if (!a || !(a->ebuf = calloc(n, 8))) {
		free(a);
		qcow_l2c_put(&s->l2c, t);
		td_image_complete_later(img, d, -ENOMEM);
		return;
	}
	a->img = img;
	a->w = d;
	a->discard = true;
	a->c0 = c0;
	a->n = n;
	a->t = t;
	busy_add(s, &a->busy, c0, c0 + n - 1);
	td_iocb_prep_buf(&a->io[0], TD_AIO_WRITE, s->fd, a->ebuf, n * 8,
			 t->off + idx * 8, 0, meta_done, a);
	td_aio_queue(img->ctx->aio, &a->io[0]);
}

/* ---- pieces ---- */

enum run_kind { RUN_PARENT, RUN_DATA, RUN_ZIP, RUN_BAD };

static enum run_kind entry_kind(struct td_image *img, uint64_t e, uint64_t c,
				bool log)
{
	struct qcow_image *s = QI(img);
	char why[256];

	if (qcow_entry_check(&s->h, e, s->end, why, sizeof(why))) {
		if (log)
			td_log_err("%s: guest offset %llu: %s; the image is corrupt (try qcow-check)",
				   img->name, ULL(c * s->h.cluster_size), why);
		return RUN_BAD;
	}
	return !e ? RUN_PARENT : qcow_is_compressed(e) ? RUN_ZIP : RUN_DATA;
}

static void piece_end(struct qpiece *p, int err)
{
	struct td_req *req = p->req;

	free(p);
	td_req_release(req, err);
}

/* Discard: runs of whole clusters with entries go to discard_start(). */
static int piece_discard(struct qpiece *p, struct qcow_l2 *t)
{
	struct td_image *img = p->img;
	struct qcow_image *s = QI(img);
	struct td_req *req = p->req;
	uint64_t cs = s->h.cluster_size, mask = s->h.l2_entries - 1;
	uint64_t off = req->off + p->rel, end = off + p->len;
	/* The last cluster may reach past the virtual size: it is whole. */
	uint64_t c = (off + cs - 1) / cs;
	uint64_t c_end = end == img->size ? (end + cs - 1) / cs : end / cs;

	while (c < c_end) {
		uint64_t c1 = c, lo, hi;
		struct td_req *child;

		if (!t->tab[c & mask]) {
			c++;
			continue;
		}
		while (c1 < c_end && t->tab[c1 & mask])
			c1++;
		lo = c * cs;
		hi = c1 * cs < end ? c1 * cs : end;
		child = td_req_slice(req, lo - req->off, hi - lo);
		if (!child)
			return -ENOMEM;
		t->refs++;
		discard_start(img, child, c, c1 - c, t);
		c = c1;
	}
	return 0;
}

/*
 * Walk the clusters of @p with its L2 table @t ready, in runs of the same
 * kind, and send each run on its way. Reads: contiguous allocated
 * clusters, unallocated ones, one compressed cluster. Writes: contiguous
 * allocated clusters (written in place), clusters to allocate.
 */
static void piece_run(struct qpiece *p, struct qcow_l2 *t)
{
	struct td_image *img = p->img;
	struct qcow_image *s = QI(img);
	const struct qcow_header *h = &s->h;
	struct td_req *req = p->req;
	uint64_t cs = h->cluster_size, mask = h->l2_entries - 1;
	uint64_t off = req->off + p->rel, end = off + p->len;
	bool rd = req->op == TD_OP_READ;
	int err = 0;

	if (req->op == TD_OP_DISCARD) {
		piece_end(p, piece_discard(p, t));
		return;
	}
	while (off < end) {
		uint64_t c = off / cs, e = t->tab[c & mask];
		enum run_kind k = entry_kind(img, e, c, true);
		uint64_t run_end = (c + 1) * cs, phys = e + (off - c * cs);
		struct td_req *child;

		while (run_end < end && k != RUN_BAD && !(rd && k == RUN_ZIP)) {
			uint64_t c2 = run_end / cs, e2 = t->tab[c2 & mask];
			enum run_kind k2 = entry_kind(img, e2, c2, false);

			if (k2 == RUN_BAD)
				break;
			if (k == RUN_DATA || k2 == RUN_DATA) {
				if (k2 != k || e2 != e + (c2 - c) * cs)
					break;
			} else if (rd && k2 != k) {
				break;
			}
			run_end += cs;
		}
		if (run_end > end)
			run_end = end;
		child = td_req_slice(req, off - req->off, run_end - off);
		if (!child) {
			err = -ENOMEM;
			break;
		}
		if (k == RUN_BAD) {
			img->errors++;
			td_image_complete_later(img, child, -EIO);
		} else if (k == RUN_DATA) {
			qio_rw(img, child, phys);
		} else if (!rd) {
			t->refs++;
			alloc_start(img, child, c, (run_end - 1) / cs - c + 1, t,
				    p->l1i);
		} else if (k == RUN_PARENT) {
			td_image_read_parent(img, child);
		} else {
			zread(img, child, e);
		}
		off = run_end;
	}
	piece_end(p, err);
}

struct qload {
	struct td_iocb io;
	struct td_image *img;
	struct qcow_l2 *t;
};

static void l2_loaded(struct td_iocb *io, long res)
{
	struct qload *l = (struct qload *)io;
	struct td_image *img = l->img;
	struct qcow_image *s = QI(img);
	struct qcow_l2 *t = l->t;
	struct qpiece *w = t->waiters;

	free(l);
	t->waiters = NULL;
	if (res >= 0) {
		for (uint64_t i = 0; i < s->h.l2_entries; i++)
			t->tab[i] = qcow_be64(&t->tab[i]);
		t->ready = true;
	} else {
		td_log_err("%s: reading the L2 table at offset %llu: %s",
			   img->name, ULL(t->off), strerror(-res));
		img->errors++;
		/* Requests arriving from here on must try a load of their own. */
		qcow_l2c_forget(&s->l2c, t);
	}
	while (w) {
		struct qpiece *next = w->next;

		if (res >= 0)
			piece_step(w);
		else
			piece_end(w, (int)res);
		qcow_l2c_put(&s->l2c, t);	/* the pin each waiter held */
		w = next;
	}
}

static void piece_wait_l2(struct qpiece *p, struct qcow_l2 *t, bool load)
{
	struct td_image *img = p->img;
	struct qcow_image *s = QI(img);
	struct qload *l;

	p->next = t->waiters;
	t->waiters = p;
	if (!load)
		return;
	l = calloc(1, sizeof(*l));
	if (!l) {
		/* We created @t: nobody else waits on it yet. */
		t->waiters = NULL;
		qcow_l2c_put(&s->l2c, t);
		piece_end(p, -ENOMEM);
		return;
	}
	l->img = img;
	l->t = t;
	td_iocb_prep_buf(&l->io, TD_AIO_READ, s->fd, t->tab, s->h.l2_bytes,
			 t->off, 0, l2_loaded, l);
	td_aio_queue(img->ctx->aio, &l->io);
}

/* Start (or start again) a piece: wait for busy clusters, find its table. */
static void piece_step(struct qpiece *p)
{
	struct td_image *img = p->img;
	struct qcow_image *s = QI(img);
	const struct qcow_header *h = &s->h;
	uint64_t cs = h->cluster_size, off = p->req->off + p->rel;
	uint64_t c0 = off / cs, c1 = (off + p->len - 1) / cs, l2off;
	struct qbusy *b = busy_find(s, c0, c1);
	struct qcow_l2 *t;
	bool hit;

	if (b) {
		p->next = b->waiters;
		b->waiters = p;
		return;
	}
	l2off = s->l1[p->l1i];
	if (!l2off) {
		struct td_req *child;

		if (p->req->op == TD_OP_DISCARD) {
			piece_end(p, 0);
			return;
		}
		child = td_req_slice(p->req, p->rel, p->len);
		if (!child) {
			piece_end(p, -ENOMEM);
			return;
		}
		if (p->req->op == TD_OP_READ)
			td_image_read_parent(img, child);
		else
			alloc_start(img, child, c0, c1 - c0 + 1, NULL, p->l1i);
		piece_end(p, 0);
		return;
	}
	if (l2off % 512 || l2off < h->hdr_end || l2off > s->end ||
	    h->l2_bytes > s->end - l2off) {
		td_log_err("%s: L1[%llu] = %llu: the L2 table lies outside the file; the image is corrupt (try qcow-check)",
			   img->name, ULL(p->l1i), ULL(l2off));
		img->errors++;
		piece_end(p, -EIO);
		return;
	}
	t = qcow_l2c_get(&s->l2c, l2off, &hit);
	if (!t) {
		piece_end(p, -ENOMEM);
		return;
	}
	if (!t->ready) {
		piece_wait_l2(p, t, !hit);
		return;
	}
	piece_run(p, t);
	qcow_l2c_put(&s->l2c, t);
}

static void qcow_queue(struct td_image *img, struct td_req *req)
{
	uint64_t span = QI(img)->h.l2_span, off = req->off, end = off + req->len;

	td_req_hold(req);
	while (off < end) {
		uint64_t next = (off / span + 1) * span;
		struct qpiece *p = calloc(1, sizeof(*p));

		if (!p) {
			td_req_release(req, -ENOMEM);
			return;
		}
		if (next > end)
			next = end;
		p->img = img;
		p->req = req;
		p->rel = off - req->off;
		p->len = next - off;
		p->l1i = off / span;
		td_req_hold(req);
		piece_step(p);
		off = next;
	}
	td_req_release(req, 0);
}

static void flush_done(struct td_iocb *io, long res)
{
	struct qio *q = (struct qio *)io;

	if (res == -EINVAL)
		res = fdatasync(io->iocb.aio_fildes) < 0 ? -errno : 0;
	if (res < 0)
		td_log_err("%s: fdatasync: %s", q->img->name, strerror(-res));
	td_req_complete(q->req, res < 0 ? (int)res : 0);
	free(q);
}

static void qcow_flush(struct td_image *img, struct td_req *req)
{
	struct qio *q = calloc(1, sizeof(*q));

	if (!q) {
		td_image_complete_later(img, req, -ENOMEM);
		return;
	}
	q->img = img;
	q->req = req;
	td_iocb_prep(&q->io, TD_AIO_FDSYNC, QI(img)->fd, NULL, 0, 0, 0,
		     flush_done, q);
	td_aio_queue(img->ctx->aio, &q->io);
}

/* ---- open, close, chains ---- */

static int read_exact(struct td_image *img, int fd, void *buf, size_t len,
		      uint64_t off, const char *what)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, off + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? -errno : -EIO;

			td_log_err("%s: reading %s at offset %llu: %s", img->name,
				   what, ULL(off), n < 0 ? strerror(errno) :
				   "unexpected end of file");
			return err;
		}
		done += n;
	}
	return 0;
}

static int qcow_load_meta(struct td_image *img, struct qcow_image *s,
			  uint64_t fsize)
{
	uint8_t hdr[QCOW_HDR_SIZE + QCOW_XEN_HDR_SIZE], *l1 = NULL;
	size_t hlen = fsize < sizeof(hdr) ? fsize : sizeof(hdr);
	char why[512];
	int err;

	err = read_exact(img, s->fd, hdr, hlen, 0, "the header");
	if (err)
		return err;
	err = qcow_header_parse(hdr, hlen, fsize, &s->h, why, sizeof(why));
	if (err) {
		td_log_err("%s: %s", img->name, why);
		return err;
	}
	if (s->h.backing_off) {
		s->backing = calloc(1, s->h.backing_len + 1);
		if (!s->backing)
			return -ENOMEM;
		err = read_exact(img, s->fd, s->backing, s->h.backing_len,
				 s->h.backing_off, "the backing file name");
		if (err)
			return err;
		if (strlen(s->backing) != s->h.backing_len) {
			td_log_err("%s: the backing file name at offset %llu contains a NUL byte; the header is corrupt",
				   img->name, ULL(s->h.backing_off));
			return -EINVAL;
		}
	}
	s->l1 = calloc(s->h.l1_entries ? s->h.l1_entries : 1, sizeof(uint64_t));
	l1 = malloc(s->h.l1_bytes ? s->h.l1_bytes : 1);
	if (!s->l1 || !l1) {
		free(l1);
		return -ENOMEM;
	}
	err = s->h.l1_bytes ? read_exact(img, s->fd, l1, s->h.l1_bytes,
					 s->h.l1_off, "the L1 table") : 0;
	for (uint64_t i = 0; !err && i < s->h.l1_entries; i++)
		s->l1[i] = qcow_l1_decode(&s->h, l1 + i * 8);
	free(l1);
	return err;
}

static int qcow_open(struct td_image *img, const char *path, unsigned int flags)
{
	struct qcow_image *s = img->priv;
	unsigned int max;
	off_t fsize;
	int err;

	s->img = img;
	s->bar_tail = &s->bar_wait;
	s->fd = open(path, ((flags & TD_OPEN_RDONLY) ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (s->fd < 0) {
		err = -errno;
		td_log_err("%s: open: %s", img->name, strerror(errno));
		return err;
	}
	fsize = lseek(s->fd, 0, SEEK_END);
	if (fsize < 0) {
		err = -errno;
		td_log_err("%s: finding the file size: %s", img->name, strerror(errno));
		goto fail;
	}
	err = qcow_load_meta(img, s, fsize);
	if (err)
		goto fail;
	s->end = (fsize + s->h.cluster_size - 1) & ~(s->h.cluster_size - 1);
	s->zc_buf = malloc(s->h.cluster_size);
	err = -ENOMEM;
	if (!s->zc_buf)
		goto fail;
	max = L2_CACHE_BYTES / s->h.l2_bytes;
	qcow_l2c_init(&s->l2c, max < L2_CACHE_MIN ? L2_CACHE_MIN : max,
		      s->h.l2_entries);
	/* As QEMU does: whole sectors only. */
	img->size = s->h.size & ~511ull;
	img->sector_size = 512;
	img->align = 1;
	img->features = TD_FEAT_FLUSH | TD_FEAT_DISCARD;
	return 0;
fail:
	if (err == -ENOMEM)
		td_log_err("%s: open: out of memory", img->name);
	free(s->zc_buf);
	free(s->l1);
	free(s->backing);
	close(s->fd);
	return err;
}

static void qcow_close(struct td_image *img)
{
	struct qcow_image *s = img->priv;

	qcow_l2c_destroy(&s->l2c);
	free(s->zc_buf);
	free(s->l1);
	free(s->backing);
	close(s->fd);
}

/* Which driver reads the backing file: probe its first bytes. */
static const char *probe_type(struct td_image *img, const char *path)
{
	char buf[32] = { 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	const char *type;
	ssize_t n;

	if (fd < 0) {
		td_log_err("%s: backing file %s: %s", img->name, path, strerror(errno));
		return NULL;
	}
	n = pread(fd, buf, sizeof(buf), 0);
	close(fd);
	type = qcow_probe(buf, n > 0 ? (size_t)n : 0);
	if (!td_driver_find(type)) {
		td_log_err("%s: backing file %s is a %s image, which this tapdisk cannot read",
			   img->name, path, type);
		return NULL;
	}
	return type;
}

static int qcow_get_parent(struct td_image *img, char *buf, size_t buflen)
{
	struct qcow_image *s = img->priv;
	char resolved[PATH_MAX * 2];
	const char *type;
	int n;

	if (!s->backing)
		return 0;
	if (strstr(s->backing, "://") || !strncmp(s->backing, "json:", 5)) {
		td_log_err("%s: backing file \"%s\" is a protocol URL, not a file",
			   img->name, s->backing);
		return -EINVAL;
	}
	n = qcow_backing_path(img->path, s->backing, resolved, sizeof(resolved));
	if (n) {
		td_log_err("%s: backing file %s: %s", img->name, s->backing,
			   strerror(-n));
		return n;
	}
	type = probe_type(img, resolved);
	if (!type)
		return -ENOENT;
	n = snprintf(buf, buflen, "%s:%s", type, resolved);
	if (n < 0 || (size_t)n >= buflen)
		return -ENAMETOOLONG;
	return 1;
}

const struct td_driver td_driver_qcow = {
	.name		= "qcow",
	.priv_size	= sizeof(struct qcow_image),
	.open		= qcow_open,
	.close		= qcow_close,
	.queue_read	= qcow_queue,
	.queue_write	= qcow_queue,
	.flush		= qcow_flush,
	.discard	= qcow_queue,
	.get_parent	= qcow_get_parent,
};
