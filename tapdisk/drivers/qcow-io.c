// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * qcow driver, the request path: a request is cut into pieces, one per L2
 * table it touches. A piece waits for busy clusters (being allocated or
 * discarded), looks up its L2 table in the bounded LRU cache (loading it
 * asynchronously), then sends runs of clusters where they live: contiguous
 * allocated clusters in one read or write, unallocated ones to the parent
 * image (or zeros), compressed ones through zlib, and writes to
 * unallocated or compressed clusters to qcow-alloc.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blktap/log.h"
#include "qcow.h"

static void piece_step(struct qpiece *p);

/* ---- busy clusters ---- */

static struct qbusy *busy_find(struct qcow_image *s, uint64_t first,
			       uint64_t last)
{
	for (struct qbusy *b = s->busy; b; b = b->next)
		if (b->first <= last && first <= b->last)
			return b;
	return NULL;
}

void qcow_busy_add(struct qcow_image *s, struct qbusy *b, uint64_t first,
		   uint64_t last)
{
	b->first = first;
	b->last = last;
	b->waiters = NULL;
	b->next = s->busy;
	s->busy = b;
}

void qcow_busy_del(struct qcow_image *s, struct qbusy *b)
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
		     qcow_data_fd(QI(img), req->iov, req->niov, phys, req->len),
		     req->iov, req->niov, phys, 0, qio_done, q);
	td_aio_queue(img->ctx->aio, &q->io);
}

/* ---- compressed clusters ---- */

int qcow_inflate_into(struct td_image *img, const uint8_t *in, size_t len,
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
		err = qcow_inflate_into(img, q->buf, q->io.len, q->coff,
					s->zc_buf);
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

/*
 * Discard: the entries of whole clusters become 0 in the table in memory;
 * the table is written back with the others (a discard that is not
 * followed by a flush may be lost in a crash, like a write).
 */
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
	bool changed = false;

	for (; c < c_end; c++) {
		if (t->tab[c & mask]) {
			t->tab[c & mask] = 0;
			changed = true;
		}
	}
	if (changed)
		qcow_meta_dirty(s, t);
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
			qcow_alloc_start(img, child, c,
					 (run_end - 1) / cs - c + 1, t, p->l1i);
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
			qcow_alloc_start(img, child, c0, c1 - c0 + 1, NULL,
					 p->l1i);
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

void qcow_queue(struct td_image *img, struct td_req *req)
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