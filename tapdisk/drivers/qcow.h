/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Private to the qcow driver (tapdisk/drivers/qcow*.c): the per-image state
 * and the objects a request turns into on its way through the driver.
 *
 *   qcow.c        the driver table: open, close, flush, backing chains
 *   qcow-io.c     requests cut into pieces per L2 table, L2 loads, busy
 *                 clusters, plain and compressed cluster I/O
 *   qcow-alloc.c  cluster and L2 table allocation, copy-on-write fill
 *   qcow-meta.c   dirty L2 tables written back at flush (or when too many
 *                 are dirty) in the order data, L2 tables, L1 entries
 */
#ifndef TAPDISK_DRIVERS_QCOW_H
#define TAPDISK_DRIVERS_QCOW_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "aio.h"
#include "image.h"
#include "qcow-format.h"

#define L2_CACHE_BYTES	(4u << 20)	/* per image */
#define L2_CACHE_MIN	16
#define ULL(x)		((unsigned long long)(x))

#define L2_CACHE_BYTES	(4u << 20)	/* per image */
#define L2_CACHE_MIN	16
#define ULL(x)		((unsigned long long)(x))

struct qpiece;
struct qwb;

/* A request waiting for a metadata writeback to finish. */
struct qwait {
	struct td_req *req;
	struct qwait *next;
	bool written;		/* answer once the metadata is written, not synced */
};

/* Clusters [first, last] being allocated or discarded. */
struct qbusy {
	uint64_t first, last;
	struct qpiece *waiters;
	struct qbusy *next;
};

struct qcow_image {
	int fd;				/* buffered: metadata, compressed data */
	int dfd;			/* O_DIRECT for data clusters, or -1 */
	unsigned int dio_align;		/* what dfd needs of offsets and buffers */
	struct qcow_header h;
	uint64_t *l1;			/* host order */
	uint64_t end;			/* where the next allocation goes */
	struct qcow_l2c l2c;
	char *backing;			/* resolved path, or NULL */
	struct qbusy *busy;
	/* dirty L2 tables and their writeback (qcow-meta.c) */
	unsigned int ndirty;		/* tables changed since their last write */
	struct qwb *wb;			/* the writeback running, or NULL */
	struct qwait *wb_next, **wb_next_tail;	/* waiting for the next one */
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

/* An allocation. */
struct qalloc {
	struct td_image *img;
	struct td_req *w;		/* the write (child of the request) */
	uint64_t c0, n;			/* guest clusters */
	uint64_t phys;			/* new data clusters */
	struct qcow_l2 *t;		/* their L2 table, pinned */
	bool newt;			/* @t is new, at @l2off for L1 index @l1i */
	uint64_t l1i, l2off;
	uint8_t *part[2];		/* partial head/tail cluster buffers */
	uint64_t old[2];		/* their old entries */
	struct iovec *iov;
	int pending, err;
	struct qbusy busy;
	struct td_iocb io;
};

static inline struct qcow_image *QI(struct td_image *img)
{
	return img->priv;
}

/*
 * The fd for data I/O of @len bytes at @off from @iov: O_DIRECT (no page
 * cache, as the raw driver and qemu's cache=none) when all of it is aligned
 * for that, else the buffered one. The kernel keeps the two coherent.
 */
static inline int qcow_data_fd(const struct qcow_image *s,
			       const struct iovec *iov, int niov, uint64_t off,
			       uint64_t len)
{
	uint64_t a = s->dio_align;

	if (s->dfd < 0 || (off | len) & (a - 1) || !td_iov_aligned(iov, niov, a))
		return s->fd;
	return s->dfd;
}

/* qcow-io.c */
void qcow_queue(struct td_image *img, struct td_req *req);
/* Mark clusters [first, last] busy; pieces touching them wait. */
void qcow_busy_add(struct qcow_image *s, struct qbusy *b, uint64_t first,
		   uint64_t last);
/* Unmark them and start the pieces that waited again. */
void qcow_busy_del(struct qcow_image *s, struct qbusy *b);
/* Inflate a compressed cluster read from @coff; logs what failed. */
int qcow_inflate_into(struct td_image *img, const uint8_t *in, size_t len,
		      uint64_t coff, uint8_t *out);

/* qcow-alloc.c */
/*
 * Allocate guest clusters [c0, c0 + n) for child write @w; @t is their L2
 * table (pinned for us), or NULL to allocate a new table at L1 index @l1i.
 */
void qcow_alloc_start(struct td_image *img, struct td_req *w, uint64_t c0,
		      uint64_t n, struct qcow_l2 *t, uint64_t l1i);

/* qcow-meta.c */
void qcow_meta_init(struct qcow_image *s);
/* @t (ready, pinned by the caller) was changed in memory. */
void qcow_meta_dirty(struct qcow_image *s, struct qcow_l2 *t);
/* Are so many tables dirty that writes should wait for a writeback? */
/*
 * Complete @req (a flush) once everything acknowledged so far is on disk:
 * data, then the dirty L2 tables, then the L1 entries of new tables, each
 * step after an fdatasync. Starts a writeback if none is running.
 */
void qcow_meta_wait(struct td_image *img, struct td_req *req);
/*
 * Complete an allocating write @req once the tables pointing at its data
 * are written to the file (after an fdatasync of the data, before the
 * writeback's last fdatasync): the write then survives tapdisk dying, which
 * the kernel ring cannot tell from success; power loss still needs a flush.
 */
void qcow_meta_wait_written(struct td_image *img, struct td_req *req);
/* At close (nothing in flight): write back what is dirty, synchronously. */
int qcow_meta_sync(struct td_image *img);

#endif
