// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * qcow driver, metadata writeback. An allocating write changes its L2 table
 * in memory (qcow-alloc.c); the table stays dirty, pinned in the L2 cache,
 * until a writeback puts it on disk:
 *
 *   snapshot the dirty tables -> fdatasync (their data) -> write the tables
 *   -> fdatasync -> write the L1 entries of new tables -> fdatasync
 *
 * so a table on disk never points at data that is not, and an L1 entry
 * never points at a table that is not. Every allocating write waits for a
 * writeback and is answered once its tables and L1 entries are written (in
 * the file, before the last fdatasync): a tapdisk that dies after answering
 * loses nothing, since the kernel ring would report the next flush as a
 * success. A flush (and so a FUA write, which the image layer turns into
 * write + flush) is answered after the last fdatasync. One writeback runs at
 * a time; requests arriving meanwhile wait for the next one, which writes
 * back all their tables together.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blktap/log.h"
#include "qcow.h"

enum wb_stage { WB_SYNC_DATA, WB_TABLES, WB_SYNC_TABLES, WB_L1, WB_SYNC_L1 };

struct qwb_item {
	struct td_iocb io;
	struct qcow_l2 *t;
	bool l1;			/* write @t's L1 entry after it */
	uint64_t l1i;
	uint8_t l1e[8];
};

struct qwb {
	struct td_image *img;
	enum wb_stage stage;
	unsigned int n, nl1;
	int pending, err;
	struct td_iocb sync;
	struct qwait *waiters;
	uint8_t *bufs;			/* the n tables as stored */
	struct qwb_item items[];
};

static const char *const stage_name[] = {
	[WB_SYNC_DATA] = "fdatasync before writing L2 tables",
	[WB_TABLES] = "writing an L2 table",
	[WB_SYNC_TABLES] = "fdatasync after writing L2 tables",
	[WB_L1] = "writing an L1 entry",
	[WB_SYNC_L1] = "fdatasync after writing L1 entries",
};

void qcow_meta_init(struct qcow_image *s)
{
	s->wb_next = NULL;
	s->wb_next_tail = &s->wb_next;
}

void qcow_meta_dirty(struct qcow_image *s, struct qcow_l2 *t)
{
	if (!t->dirty) {
		t->dirty = true;
		s->ndirty++;
	}
	if (!t->held) {
		t->held = true;
		t->refs++;
	}
}

static void encode_table(const struct qcow_image *s, const struct qcow_l2 *t,
			 uint8_t *buf)
{
	for (uint64_t i = 0; i < s->h.l2_entries; i++)
		qcow_put_be64(buf + i * 8, t->tab[i]);
}

static void complete_all(struct td_image *img, struct qwait *w, int err,
			 bool later)
{
	while (w) {
		struct qwait *next = w->next;

		if (later)
			td_image_complete_later(img, w->req, err);
		else
			td_req_complete(w->req, err);
		free(w);
		w = next;
	}
}

static void wb_start(struct td_image *img);

/* The snapshot is on disk (or failed): release its tables, answer. */
static void wb_end(struct qwb *wb)
{
	struct td_image *img = wb->img;
	struct qcow_image *s = QI(img);
	struct qwait *waiters = wb->waiters;
	int err = wb->err;

	for (unsigned int k = 0; k < wb->n; k++) {
		struct qwb_item *it = &wb->items[k];
		struct qcow_l2 *t = it->t;

		if (err) {
			/* Still to be written: by the next writeback. */
			if (!t->dirty) {
				t->dirty = true;
				s->ndirty++;
			}
			if (it->l1)
				t->l1_new = true;
		} else if (!t->dirty) {
			t->held = false;
			qcow_l2c_put(&s->l2c, t);
		}
	}
	if (err)
		img->errors++;
	s->wb = NULL;
	free(wb->bufs);
	free(wb);
	/* A completion may queue a flush, which then starts the next one. */
	complete_all(img, waiters, err, false);
	if (!s->wb && s->wb_next)
		wb_start(img);
}

static void wb_io_done(struct td_iocb *io, long res);

/* The tables (and L1 entries) are in the file: answer the writes. */
static void wb_answer_written(struct qwb *wb)
{
	struct qwait **pp = &wb->waiters;

	while (*pp) {
		struct qwait *w = *pp;

		if (!w->written) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		td_image_complete_later(wb->img, w->req, 0);
		free(w);
	}
}

static void wb_sync(struct qwb *wb, enum wb_stage stage)
{
	struct qcow_image *s = QI(wb->img);

	wb->stage = stage;
	wb->pending = 1;
	td_iocb_prep(&wb->sync, TD_AIO_FDSYNC, s->fd, NULL, 0, 0, 0,
		     wb_io_done, wb);
	td_aio_queue(wb->img->ctx->aio, &wb->sync);
}

static void wb_next_stage(struct qwb *wb)
{
	struct qcow_image *s = QI(wb->img);
	const struct qcow_header *h = &s->h;

	switch (wb->stage) {
	case WB_SYNC_DATA:
		if (!wb->n)
			break;
		wb->stage = WB_TABLES;
		wb->pending = wb->n;
		for (unsigned int k = 0; k < wb->n; k++) {
			struct qwb_item *it = &wb->items[k];

			td_iocb_prep_buf(&it->io, TD_AIO_WRITE, s->fd,
					 wb->bufs + k * h->l2_bytes, h->l2_bytes,
					 it->t->off, 0, wb_io_done, wb);
			td_aio_queue(wb->img->ctx->aio, &it->io);
		}
		return;
	case WB_TABLES:
		if (!wb->nl1)
			wb_answer_written(wb);
		wb_sync(wb, WB_SYNC_TABLES);
		return;
	case WB_SYNC_TABLES:
		if (!wb->nl1)
			break;
		wb->stage = WB_L1;
		wb->pending = wb->nl1;
		for (unsigned int k = 0; k < wb->n; k++) {
			struct qwb_item *it = &wb->items[k];

			if (!it->l1)
				continue;
			qcow_l1_encode(h, it->l1e, it->t->off);
			td_iocb_prep_buf(&it->io, TD_AIO_WRITE, s->fd, it->l1e, 8,
					 h->l1_off + it->l1i * 8, 0, wb_io_done, wb);
			td_aio_queue(wb->img->ctx->aio, &it->io);
		}
		return;
	case WB_L1:
		wb_answer_written(wb);
		wb_sync(wb, WB_SYNC_L1);
		return;
	case WB_SYNC_L1:
		break;
	}
	wb_end(wb);
}

static void wb_io_done(struct td_iocb *io, long res)
{
	struct qwb *wb = io->arg;
	struct qcow_image *s = QI(wb->img);

	if (res == -EINVAL && io->iocb.aio_lio_opcode == IO_CMD_FDSYNC)
		res = fdatasync(s->fd) < 0 ? -errno : 0;	/* no async fdsync */
	if (res < 0 && !wb->err) {
		wb->err = (int)res;
		td_log_err("%s: %s: %s", wb->img->name, stage_name[wb->stage],
			   strerror(-res));
	}
	if (--wb->pending)
		return;
	if (wb->err)
		wb_end(wb);
	else
		wb_next_stage(wb);
}

/* Snapshot the dirty tables and start writing them, for s->wb_next. */
static void wb_start(struct td_image *img)
{
	struct qcow_image *s = QI(img);
	unsigned int n = 0, k = 0;
	struct qcow_l2 *t;
	struct qwb *wb;

	for (t = s->l2c.list; t; t = t->next)
		n += t->dirty;
	wb = calloc(1, sizeof(*wb) + n * sizeof(wb->items[0]));
	if (wb && n)
		wb->bufs = malloc(n * s->h.l2_bytes);
	if (!wb || (n && !wb->bufs)) {
		struct qwait *w = s->wb_next;

		free(wb);
		s->wb_next = NULL;
		s->wb_next_tail = &s->wb_next;
		td_log_err("%s: writing back metadata: out of memory", img->name);
		complete_all(img, w, -ENOMEM, true);
		return;
	}
	wb->img = img;
	wb->n = n;
	wb->waiters = s->wb_next;
	s->wb_next = NULL;
	s->wb_next_tail = &s->wb_next;
	for (t = s->l2c.list; t; t = t->next) {
		struct qwb_item *it;

		if (!t->dirty)
			continue;
		it = &wb->items[k];
		it->t = t;
		encode_table(s, t, wb->bufs + k++ * s->h.l2_bytes);
		t->dirty = false;
		if (t->l1_new) {
			it->l1 = true;
			it->l1i = t->l1i;
			t->l1_new = false;
			wb->nl1++;
		}
	}
	s->ndirty = 0;
	s->wb = wb;
	wb_sync(wb, WB_SYNC_DATA);
}

static void meta_wait(struct td_image *img, struct td_req *req, bool written)
{
	struct qcow_image *s = QI(img);
	struct qwait *w = malloc(sizeof(*w));

	if (!w) {
		td_image_complete_later(img, req, -ENOMEM);
		return;
	}
	w->req = req;
	w->written = written;
	w->next = NULL;
	*s->wb_next_tail = w;
	s->wb_next_tail = &w->next;
	if (!s->wb)
		wb_start(img);
}

void qcow_meta_wait(struct td_image *img, struct td_req *req)
{
	meta_wait(img, req, false);
}

void qcow_meta_wait_written(struct td_image *img, struct td_req *req)
{
	meta_wait(img, req, true);
}

static int write_exact(struct td_image *img, int fd, const void *buf,
		       size_t len, uint64_t off, const char *what)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done,
				   off + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? -errno : -EIO;

			td_log_err("%s: writing %s at offset %llu: %s", img->name,
				   what, ULL(off), strerror(-err));
			return err;
		}
		done += n;
	}
	return 0;
}

static int sync_file(struct td_image *img, int fd)
{
	if (fdatasync(fd) < 0) {
		int err = -errno;

		td_log_err("%s: fdatasync: %s", img->name, strerror(errno));
		return err;
	}
	return 0;
}

int qcow_meta_sync(struct td_image *img)
{
	struct qcow_image *s = QI(img);
	const struct qcow_header *h = &s->h;
	bool l1 = false;
	struct qcow_l2 *t;
	uint8_t *buf;
	int err;

	if (!s->ndirty)
		return 0;
	buf = malloc(h->l2_bytes);
	if (!buf) {
		td_log_err("%s: writing back metadata: out of memory", img->name);
		return -ENOMEM;
	}
	err = sync_file(img, s->fd);
	for (t = s->l2c.list; !err && t; t = t->next) {
		if (!t->dirty)
			continue;
		encode_table(s, t, buf);
		err = write_exact(img, s->fd, buf, h->l2_bytes, t->off,
				  "an L2 table");
		l1 |= t->l1_new;
	}
	if (!err)
		err = sync_file(img, s->fd);
	for (t = s->l2c.list; !err && l1 && t; t = t->next) {
		if (!t->dirty || !t->l1_new)
			continue;
		qcow_l1_encode(h, buf, t->off);
		err = write_exact(img, s->fd, buf, 8, h->l1_off + t->l1i * 8,
				  "an L1 entry");
	}
	if (!err && l1)
		err = sync_file(img, s->fd);
	/* The pins stay: the cache is destroyed next. */
	for (t = s->l2c.list; !err && t; t = t->next)
		t->dirty = t->l1_new = false;
	if (!err)
		s->ndirty = 0;
	free(buf);
	return err;
}
