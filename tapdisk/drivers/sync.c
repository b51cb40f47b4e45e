// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The sync driver: a raw file or block device through plain buffered
 * preadv/pwritev in the loop. For comparison with aio, and for files where
 * asynchronous I/O is not wanted.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "blktap/log.h"
#include "file.h"
#include "image.h"

struct sync_image {
	struct td_file file;
};

static int sync_open(struct td_image *img, const char *path, unsigned int flags)
{
	struct sync_image *si = img->priv;
	int err;

	err = td_file_open(img, &si->file, path, flags, false);
	if (err)
		return err;
	img->features |= TD_FEAT_FUA;
	return 0;
}

static void sync_close(struct td_image *img)
{
	struct sync_image *si = img->priv;

	td_file_close(&si->file);
}

/* The whole transfer, or -errno; a read past the end of file is -EIO. */
static int sync_rw(int fd, bool write, const struct iovec *iov, int niov,
		   uint64_t off, uint64_t len, int rw_flags)
{
	struct iovec local[IOV_MAX];
	uint64_t done = 0;

	if (niov > IOV_MAX)
		return -EINVAL;
	memcpy(local, iov, niov * sizeof(*iov));
	while (done < len) {
		struct iovec *v = local;
		int n = niov;
		uint64_t skip = done;
		ssize_t ret;

		while (skip >= v->iov_len) {
			skip -= v->iov_len;
			v++;
			n--;
		}
		v->iov_base = (char *)v->iov_base + skip;
		v->iov_len -= skip;
		ret = write ? pwritev2(fd, v, n, off + done, rw_flags) :
			      preadv2(fd, v, n, off + done, rw_flags);
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (ret == 0)
			return -EIO;
		/* Restore the adjusted entry before walking again. */
		v->iov_base = (char *)v->iov_base - skip;
		v->iov_len += skip;
		done += ret;
	}
	return 0;
}

static void sync_queue(struct td_image *img, struct td_req *req, bool write)
{
	struct sync_image *si = img->priv;
	int flags = write && (req->flags & TD_REQ_FUA) ? RWF_DSYNC : 0;
	int err;

	err = sync_rw(si->file.fd, write, req->iov, req->niov, req->off,
		      req->len, flags);
	if (err) {
		img->errors++;
		td_log_err("%s: %s at offset %llu, %llu bytes: %s", img->name,
			   write ? "write" : "read", (unsigned long long)req->off,
			   (unsigned long long)req->len, strerror(-err));
	}
	td_image_complete_later(img, req, err);
}

static void sync_queue_read(struct td_image *img, struct td_req *req)
{
	sync_queue(img, req, false);
}

static void sync_queue_write(struct td_image *img, struct td_req *req)
{
	sync_queue(img, req, true);
}

static void sync_flush(struct td_image *img, struct td_req *req)
{
	struct sync_image *si = img->priv;

	td_file_flush(img, &si->file, req);
}

static void sync_discard(struct td_image *img, struct td_req *req)
{
	struct sync_image *si = img->priv;

	td_file_discard(img, &si->file, req);
}

static void sync_write_zeroes(struct td_image *img, struct td_req *req)
{
	struct sync_image *si = img->priv;

	td_file_write_zeroes(img, &si->file, req);
}

const struct td_driver td_driver_sync = {
	.name		= "sync",
	.priv_size	= sizeof(struct sync_image),
	.open		= sync_open,
	.close		= sync_close,
	.queue_read	= sync_queue_read,
	.queue_write	= sync_queue_write,
	.flush		= sync_flush,
	.discard	= sync_discard,
	.write_zeroes	= sync_write_zeroes,
};
