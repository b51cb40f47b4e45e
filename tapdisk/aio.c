// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libaio for tapdisk (see aio.h). Every iocb signals one eventfd, which the
 * loop watches; completions are reaped without blocking. Submissions wait
 * in a queue until the end of the loop turn and go to the kernel in batches
 * of at most the free context depth. Short transfers are resubmitted for
 * their remainder, so callers only ever see full length or an error.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "aio.h"
#include "blktap/log.h"

#define AIO_RETRY_NS	(1000 * 1000)	/* EAGAIN with nothing in flight */

struct td_aio {
	struct td_loop *loop;
	io_context_t ctx;
	int efd;
	struct td_event *ev;
	struct td_event *retry;
	struct td_deferred submit;
	struct td_iocb *head, **tail;
	unsigned int depth;
	unsigned int queued;
	unsigned int in_kernel;
	struct iocb **batch;
	struct io_event *events;
	struct td_aio_stats stats;
};

void td_iocb_prep(struct td_iocb *io, enum td_aio_op op, int fd,
		  struct iovec *iov, int niov, uint64_t off, int rw_flags,
		  td_iocb_done done, void *arg)
{
	size_t len = 0;
	int i;

	memset(&io->iocb, 0, sizeof(io->iocb));
	for (i = 0; i < niov; i++)
		len += iov[i].iov_len;
	switch (op) {
	case TD_AIO_READ:
		io_prep_preadv2(&io->iocb, fd, iov, niov, off, rw_flags);
		break;
	case TD_AIO_WRITE:
		io_prep_pwritev2(&io->iocb, fd, iov, niov, off, rw_flags);
		break;
	case TD_AIO_FDSYNC:
		io_prep_fdsync(&io->iocb, fd);
		break;
	}
	io->iocb.data = io;
	io->done = done;
	io->arg = arg;
	io->next = NULL;
	io->iov = iov;
	io->niov = niov;
	io->rw_flags = rw_flags;
	io->off = off;
	io->len = len;
	io->done_bytes = 0;
	io->rest = NULL;
}

void td_iocb_prep_buf(struct td_iocb *io, enum td_aio_op op, int fd,
		      void *buf, size_t len, uint64_t off, int rw_flags,
		      td_iocb_done done, void *arg)
{
	io->iov_one.iov_base = buf;
	io->iov_one.iov_len = len;
	td_iocb_prep(io, op, fd, &io->iov_one, 1, off, rw_flags, done, arg);
}

static void aio_kick(struct td_aio *aio)
{
	if (aio->head)
		td_loop_defer(aio->loop, &aio->submit);
}

void td_aio_queue(struct td_aio *aio, struct td_iocb *io)
{
	io_set_eventfd(&io->iocb, aio->efd);
	io->next = NULL;
	*aio->tail = io;
	aio->tail = &io->next;
	aio->queued++;
	td_loop_defer(aio->loop, &aio->submit);
}

static struct td_iocb *aio_dequeue(struct td_aio *aio)
{
	struct td_iocb *io = aio->head;

	aio->head = io->next;
	if (!aio->head)
		aio->tail = &aio->head;
	aio->queued--;
	return io;
}

static void aio_finish(struct td_iocb *io, long res)
{
	free(io->rest);
	io->rest = NULL;
	io->done(io, res);
}

static void aio_submit(struct td_deferred *d)
{
	struct td_aio *aio = (struct td_aio *)((char *)d - offsetof(struct td_aio, submit));

	while (aio->head && aio->in_kernel < aio->depth) {
		struct td_iocb *io = aio->head;
		unsigned int n = 0;
		int ret;

		while (io && n < aio->depth - aio->in_kernel) {
			aio->batch[n++] = &io->iocb;
			io = io->next;
		}
		aio->stats.submit_calls++;
		ret = io_submit(aio->ctx, n, aio->batch);
		if (ret == -EAGAIN || ret == 0) {
			aio->stats.eagain++;
			/* Completions will kick us; if none can, retry soon. */
			if (!aio->in_kernel)
				td_loop_set_timer(aio->retry, AIO_RETRY_NS, 0);
			return;
		}
		if (ret < 0) {
			/* The first iocb was refused: fail it, go on. */
			aio_finish(aio_dequeue(aio), ret);
			continue;
		}
		aio->stats.submitted += ret;
		aio->in_kernel += ret;
		while (ret--)
			aio_dequeue(aio);
	}
}

static void aio_retry(struct td_event *ev, uint32_t events, void *arg)
{
	(void)ev;
	(void)events;
	aio_kick(arg);
}

/*
 * Queue the untransferred remainder of a short read/write again. The
 * caller's iovec is left alone; the remainder gets its own copy.
 */
static int aio_resubmit(struct td_aio *aio, struct td_iocb *io)
{
	size_t skip = io->done_bytes;
	struct iovec *rest;
	int i = 0, n;

	while (skip >= io->iov[i].iov_len) {
		skip -= io->iov[i].iov_len;
		i++;
	}
	n = io->niov - i;
	rest = malloc(n * sizeof(*rest));
	if (!rest)
		return -ENOMEM;
	memcpy(rest, io->iov + i, n * sizeof(*rest));
	rest[0].iov_base = (char *)rest[0].iov_base + skip;
	rest[0].iov_len -= skip;
	free(io->rest);
	io->rest = rest;

	if (io->iocb.aio_lio_opcode == IO_CMD_PREADV)
		io_prep_preadv2(&io->iocb, io->iocb.aio_fildes, rest, n,
				io->off + io->done_bytes, io->rw_flags);
	else
		io_prep_pwritev2(&io->iocb, io->iocb.aio_fildes, rest, n,
				 io->off + io->done_bytes, io->rw_flags);
	io->iocb.data = io;
	aio->stats.resubmitted++;
	td_aio_queue(aio, io);
	return 0;
}

static void aio_complete_one(struct td_aio *aio, struct td_iocb *io, long res)
{
	if (res < 0 || io->iocb.aio_lio_opcode == IO_CMD_FDSYNC) {
		aio_finish(io, res);
		return;
	}
	if (res == 0 && io->done_bytes < io->len) {
		/* Nothing moved: end of file on read, or a stuck write. */
		aio_finish(io, -EIO);
		return;
	}
	io->done_bytes += res;
	if (io->done_bytes >= io->len) {
		aio_finish(io, io->len);
		return;
	}
	res = aio_resubmit(aio, io);
	if (res < 0)
		aio_finish(io, res);
}

static void aio_reap(struct td_event *ev, uint32_t events, void *arg)
{
	struct td_aio *aio = arg;
	struct timespec zero = { 0, 0 };
	uint64_t count;
	int n, i;

	(void)ev;
	(void)events;
	if (read(aio->efd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		td_log_err("aio: read eventfd: %s", strerror(errno));
	do {
		n = io_getevents(aio->ctx, 0, aio->depth, aio->events, &zero);
		if (n < 0) {
			td_log_err("aio: io_getevents: %s", strerror(-n));
			break;
		}
		aio->in_kernel -= n;
		for (i = 0; i < n; i++) {
			struct td_iocb *io = aio->events[i].data;

			aio_complete_one(aio, io, (long)aio->events[i].res);
		}
	} while (n == (int)aio->depth);
	aio_kick(aio);
}

struct td_aio *td_aio_create(struct td_loop *loop, unsigned int depth)
{
	struct td_aio *aio = calloc(1, sizeof(*aio));
	int err;

	if (!aio)
		return NULL;
	aio->loop = loop;
	aio->depth = depth;
	aio->tail = &aio->head;
	aio->submit.fn = aio_submit;
	aio->batch = calloc(depth, sizeof(*aio->batch));
	aio->events = calloc(depth, sizeof(*aio->events));
	if (!aio->batch || !aio->events) {
		err = ENOMEM;
		goto fail_free;
	}
	err = -io_setup(depth, &aio->ctx);
	if (err) {
		td_log_err("aio: io_setup(%u): %s (see /proc/sys/fs/aio-max-nr)",
			   depth, strerror(err));
		goto fail_free;
	}
	aio->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (aio->efd < 0) {
		err = errno;
		td_log_err("aio: eventfd: %s", strerror(err));
		goto fail_destroy;
	}
	aio->ev = td_loop_add_fd(loop, aio->efd, EPOLLIN, aio_reap, aio);
	if (!aio->ev) {
		err = errno;
		goto fail_close;
	}
	aio->retry = td_loop_add_timer(loop, 0, 0, aio_retry, aio);
	if (!aio->retry) {
		err = errno;
		goto fail_del;
	}
	return aio;

fail_del:
	td_loop_del(aio->ev);
fail_close:
	close(aio->efd);
fail_destroy:
	io_destroy(aio->ctx);
fail_free:
	free(aio->batch);
	free(aio->events);
	free(aio);
	errno = err;
	return NULL;
}

void td_aio_destroy(struct td_aio *aio)
{
	if (!aio)
		return;
	td_loop_cancel(aio->loop, &aio->submit);
	td_loop_del(aio->retry);
	td_loop_del(aio->ev);
	close(aio->efd);
	io_destroy(aio->ctx);
	free(aio->batch);
	free(aio->events);
	free(aio);
}

unsigned int td_aio_inflight(const struct td_aio *aio)
{
	return aio->queued + aio->in_kernel;
}

void td_aio_get_stats(const struct td_aio *aio, struct td_aio_stats *st)
{
	*st = aio->stats;
}
