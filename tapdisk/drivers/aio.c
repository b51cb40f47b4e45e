// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The aio driver: a raw file or block device, O_DIRECT through the loop's
 * libaio context. FUA is a per-write RWF_DSYNC; flush is an asynchronous
 * IOCB_CMD_FDSYNC, with a synchronous fdatasync() where the filesystem
 * cannot do that asynchronously.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "aio.h"
#include "blktap/log.h"
#include "file.h"
#include "image.h"

struct aio_image {
	struct td_file file;
};

struct aio_io {
	struct td_iocb iocb;
	struct td_image *img;
	struct td_req *req;
};

static int aio_open(struct td_image *img, const char *path, unsigned int flags)
{
	struct aio_image *ai = img->priv;
	int err;

	err = td_file_open(img, &ai->file, path, flags, true);
	if (err)
		return err;
	img->features |= TD_FEAT_FUA;
	return 0;
}

static void aio_close(struct td_image *img)
{
	struct aio_image *ai = img->priv;

	td_file_close(&ai->file);
}

static void aio_io_done(struct td_iocb *iocb, long res)
{
	struct aio_io *io = (struct aio_io *)iocb;
	struct td_image *img = io->img;
	struct td_req *req = io->req;

	if (res == -EINVAL && iocb->iocb.aio_lio_opcode == IO_CMD_FDSYNC) {
		/* No asynchronous fdsync on this file: do it here. */
		res = fdatasync(iocb->iocb.aio_fildes) < 0 ? -errno : 0;
	}
	if (res < 0) {
		img->errors++;
		td_log_err("%s: %s at offset %llu, %llu bytes: %s", img->name,
			   req->op == TD_OP_READ ? "read" :
			   req->op == TD_OP_WRITE ? "write" : "flush",
			   (unsigned long long)req->off,
			   (unsigned long long)req->len, strerror(-res));
	}
	free(io);
	td_req_complete(req, res < 0 ? (int)res : 0);
}

static void aio_queue(struct td_image *img, struct td_req *req,
		      enum td_aio_op op)
{
	struct aio_image *ai = img->priv;
	struct aio_io *io = malloc(sizeof(*io));
	int rw_flags = 0;

	if (!io) {
		td_image_complete_later(img, req, -ENOMEM);
		return;
	}
	io->img = img;
	io->req = req;
	if (op == TD_AIO_WRITE && (req->flags & TD_REQ_FUA))
		rw_flags = RWF_DSYNC;
	td_iocb_prep(&io->iocb, op, ai->file.fd, req->iov, req->niov, req->off,
		     rw_flags, aio_io_done, io);
	td_aio_queue(img->ctx->aio, &io->iocb);
}

static void aio_queue_read(struct td_image *img, struct td_req *req)
{
	aio_queue(img, req, TD_AIO_READ);
}

static void aio_queue_write(struct td_image *img, struct td_req *req)
{
	aio_queue(img, req, TD_AIO_WRITE);
}

static void aio_flush(struct td_image *img, struct td_req *req)
{
	aio_queue(img, req, TD_AIO_FDSYNC);
}

static void aio_discard(struct td_image *img, struct td_req *req)
{
	struct aio_image *ai = img->priv;

	td_file_discard(img, &ai->file, req);
}

static void aio_write_zeroes(struct td_image *img, struct td_req *req)
{
	struct aio_image *ai = img->priv;

	td_file_write_zeroes(img, &ai->file, req);
}

const struct td_driver td_driver_aio = {
	.name		= "aio",
	.priv_size	= sizeof(struct aio_image),
	.open		= aio_open,
	.close		= aio_close,
	.queue_read	= aio_queue_read,
	.queue_write	= aio_queue_write,
	.flush		= aio_flush,
	.discard	= aio_discard,
	.write_zeroes	= aio_write_zeroes,
};
