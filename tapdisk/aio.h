/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Asynchronous file I/O for tapdisk: one libaio context per loop, with
 * completions signalled on an eventfd that the loop watches. Submissions
 * queued during a loop turn go to the kernel in one io_submit() call.
 */
#ifndef TAPDISK_AIO_H
#define TAPDISK_AIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <libaio.h>

#include "loop.h"

struct td_aio;
struct td_iocb;

/* @res: bytes transferred (always the full length) or -errno. */
typedef void (*td_iocb_done)(struct td_iocb *io, long res);

enum td_aio_op {
	TD_AIO_READ,
	TD_AIO_WRITE,
	TD_AIO_FDSYNC,
};

/*
 * One I/O. The caller owns the memory and fills it with td_iocb_prep();
 * it must stay valid until @done runs. Short transfers are resubmitted for
 * the remainder; a read that hits end of file fails with -EIO.
 */
struct td_iocb {
	struct iocb iocb;
	td_iocb_done done;
	void *arg;
	/* private */
	struct td_iocb *next;
	struct iovec *iov;
	int niov;
	int rw_flags;
	uint64_t off;
	size_t len;
	size_t done_bytes;
	struct iovec *rest;	/* remainder of a short transfer */
	struct iovec iov_one;
};

struct td_aio *td_aio_create(struct td_loop *loop, unsigned int depth);
void td_aio_destroy(struct td_aio *aio);

/* Vectored read/write of @iov at @off; @rw_flags e.g. RWF_DSYNC for FUA. */
void td_iocb_prep(struct td_iocb *io, enum td_aio_op op, int fd,
		  struct iovec *iov, int niov, uint64_t off, int rw_flags,
		  td_iocb_done done, void *arg);
/* Single-buffer convenience form. */
void td_iocb_prep_buf(struct td_iocb *io, enum td_aio_op op, int fd,
		      void *buf, size_t len, uint64_t off, int rw_flags,
		      td_iocb_done done, void *arg);

/* Queue for submission at the end of this loop turn. */
void td_aio_queue(struct td_aio *aio, struct td_iocb *io);

/* I/Os queued or in the kernel. */
unsigned int td_aio_inflight(const struct td_aio *aio);

/* Counters, for tests and stats. */
struct td_aio_stats {
	uint64_t submit_calls;	/* io_submit() system calls */
	uint64_t submitted;	/* iocbs accepted by the kernel */
	uint64_t resubmitted;	/* remainders of short transfers */
	uint64_t eagain;	/* io_submit() returned -EAGAIN */
};
void td_aio_get_stats(const struct td_aio *aio, struct td_aio_stats *st);

#endif
