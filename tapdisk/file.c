// SPDX-License-Identifier: LGPL-2.1-or-later
/* Files and block devices for the aio and sync drivers (see file.h). */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blktap/log.h"
#include "file.h"

int td_file_open(struct td_image *img, struct td_file *f, const char *path,
		 unsigned int flags, bool direct)
{
	int oflags = (flags & TD_OPEN_RDONLY ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct stat st;
	int err;

	f->direct = direct && !(flags & TD_OPEN_BUFFERED);
	f->fd = open(path, oflags | (f->direct ? O_DIRECT : 0));
	if (f->fd < 0 && errno == EINVAL && f->direct) {
		td_log_warn("%s: the filesystem refuses O_DIRECT; using buffered I/O",
			    img->name);
		f->direct = false;
		f->fd = open(path, oflags);
	}
	if (f->fd < 0) {
		err = -errno;
		td_log_err("%s: open: %s", img->name, strerror(errno));
		return err;
	}
	if (fstat(f->fd, &st) < 0) {
		err = -errno;
		td_log_err("%s: stat: %s", img->name, strerror(errno));
		goto fail;
	}
	if (S_ISBLK(st.st_mode)) {
		uint64_t bytes;
		int ssz;

		f->blockdev = true;
		if (ioctl(f->fd, BLKGETSIZE64, &bytes) < 0 ||
		    ioctl(f->fd, BLKSSZGET, &ssz) < 0) {
			err = -errno;
			td_log_err("%s: reading the device size: %s", img->name,
				   strerror(errno));
			goto fail;
		}
		img->size = bytes;
		img->sector_size = ssz;
	} else if (S_ISREG(st.st_mode)) {
		img->size = st.st_size;
	} else {
		td_log_err("%s: not a regular file or block device", img->name);
		err = -EINVAL;
		goto fail;
	}
	img->align = f->direct ? img->sector_size : 1;
	if (f->direct && img->size % img->sector_size) {
		td_log_warn("%s: size %llu is not a multiple of %u; the last %llu bytes are not served",
			    img->name, (unsigned long long)img->size,
			    img->sector_size,
			    (unsigned long long)(img->size % img->sector_size));
		img->size -= img->size % img->sector_size;
	}
	img->features = TD_FEAT_FLUSH | TD_FEAT_DISCARD | TD_FEAT_WRITE_ZEROES;
	return 0;
fail:
	close(f->fd);
	f->fd = -1;
	return err;
}

void td_file_close(struct td_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

/* FUA on the synchronous paths: make the change durable before completing. */
static int file_fua(struct td_file *f, const struct td_req *req)
{
	if ((req->flags & TD_REQ_FUA) && fdatasync(f->fd) < 0)
		return -errno;
	return 0;
}

void td_file_discard(struct td_image *img, struct td_file *f,
		     struct td_req *req)
{
	int err = 0;

	if (f->blockdev) {
		uint64_t range[2] = { req->off, req->len };

		if (ioctl(f->fd, BLKDISCARD, range) < 0)
			err = -errno;
	} else if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			     req->off, req->len) < 0) {
		err = -errno;
	}
	/* Discard is advisory: a device or filesystem without it is fine. */
	if (err == -EOPNOTSUPP || err == -ENOTTY)
		err = 0;
	if (!err)
		err = file_fua(f, req);
	td_image_complete_later(img, req, err);
}

void td_file_write_zeroes(struct td_image *img, struct td_file *f,
			  struct td_req *req)
{
	int err = 0;

	if (f->blockdev) {
		uint64_t range[2] = { req->off, req->len };

		if (ioctl(f->fd, BLKZEROOUT, range) < 0)
			err = -errno;
	} else {
		int mode = req->flags & TD_REQ_NO_HOLE ?
			   FALLOC_FL_ZERO_RANGE :
			   FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

		if (fallocate(f->fd, mode, req->off, req->len) < 0)
			err = -errno;
	}
	if (err == -EOPNOTSUPP || err == -ENOTTY) {
		td_image_zero_by_writes(img, req);
		return;
	}
	if (!err)
		err = file_fua(f, req);
	td_image_complete_later(img, req, err);
}

void td_file_flush(struct td_image *img, struct td_file *f, struct td_req *req)
{
	int err = 0;

	if (fdatasync(f->fd) < 0) {
		err = -errno;
		td_log_err("%s: fdatasync: %s", img->name, strerror(errno));
	}
	td_image_complete_later(img, req, err);
}
