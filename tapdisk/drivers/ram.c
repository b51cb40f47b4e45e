// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The ram driver: the whole image in memory, loaded from a file at open or
 * empty with a size from the command line (--ram-size). Writes stay in
 * memory and are lost at exit; images above --ram-limit are refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blktap/log.h"
#include "image.h"

struct ram_image {
	char *mem;
	size_t size;
};

static void fmt_size(char *buf, size_t n, uint64_t v)
{
	static const char unit[] = "BKMGTP";
	int u = 0;

	while (v >= 1024 && !(v % 1024) && u < 5) {
		v /= 1024;
		u++;
	}
	snprintf(buf, n, "%llu%c", (unsigned long long)v, unit[u]);
}

static int ram_load(struct td_image *img, struct ram_image *ri, int fd)
{
	uint64_t done = 0;

	while (done < ri->size) {
		ssize_t n = pread(fd, ri->mem + done, ri->size - done, done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = -errno;

			td_log_err("%s: read: %s", img->name, strerror(errno));
			return err;
		}
		if (n == 0) {
			td_log_err("%s: file shrank while loading it", img->name);
			return -EIO;
		}
		done += n;
	}
	return 0;
}

static int ram_open(struct td_image *img, const char *path, unsigned int flags)
{
	const struct td_opts *opts = img->ctx->opts;
	struct ram_image *ri = img->priv;
	char a[32], b[32];
	struct stat st;
	int fd, err;

	(void)flags;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && !(errno == ENOENT && opts->ram_size)) {
		err = -errno;
		td_log_err("%s: open: %s%s", img->name, strerror(errno),
			   errno == ENOENT ? " (give --ram-size for an empty image)" : "");
		return err;
	}
	if (fd >= 0) {
		if (fstat(fd, &st) < 0) {
			err = -errno;
			td_log_err("%s: stat: %s", img->name, strerror(errno));
			goto out_close;
		}
		ri->size = st.st_size;
	} else {
		ri->size = opts->ram_size;
	}
	if (ri->size > opts->ram_limit) {
		fmt_size(a, sizeof(a), ri->size);
		fmt_size(b, sizeof(b), opts->ram_limit);
		td_log_err("%s: image is %s, larger than the ram limit of %s (raise --ram-limit)",
			   img->name, a, b);
		err = -EFBIG;
		goto out_close;
	}
	if (ri->size) {
		ri->mem = mmap(NULL, ri->size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (ri->mem == MAP_FAILED) {
			err = -errno;
			ri->mem = NULL;
			td_log_err("%s: allocating %zu bytes: %s", img->name,
				   ri->size, strerror(errno));
			goto out_close;
		}
	}
	if (fd >= 0) {
		err = ram_load(img, ri, fd);
		if (err)
			goto out_unmap;
		close(fd);
	}
	img->size = ri->size;
	img->align = 1;
	img->features = TD_FEAT_FLUSH | TD_FEAT_FUA | TD_FEAT_DISCARD |
			TD_FEAT_WRITE_ZEROES;
	return 0;

out_unmap:
	munmap(ri->mem, ri->size);
	ri->mem = NULL;
out_close:
	if (fd >= 0)
		close(fd);
	return err;
}

static void ram_close(struct td_image *img)
{
	struct ram_image *ri = img->priv;

	if (ri->mem)
		munmap(ri->mem, ri->size);
}

static void ram_queue_read(struct td_image *img, struct td_req *req)
{
	struct ram_image *ri = img->priv;

	td_iov_from_buf(req->iov, req->niov, 0, ri->mem + req->off, req->len);
	td_image_complete_later(img, req, 0);
}

static void ram_queue_write(struct td_image *img, struct td_req *req)
{
	struct ram_image *ri = img->priv;

	td_iov_to_buf(req->iov, req->niov, 0, ri->mem + req->off, req->len);
	td_image_complete_later(img, req, 0);
}

static void ram_flush(struct td_image *img, struct td_req *req)
{
	td_image_complete_later(img, req, 0);	/* nothing is ever durable */
}

static void ram_zero(struct td_image *img, struct td_req *req)
{
	struct ram_image *ri = img->priv;

	memset(ri->mem + req->off, 0, req->len);
	td_image_complete_later(img, req, 0);
}

const struct td_driver td_driver_ram = {
	.name		= "ram",
	.priv_size	= sizeof(struct ram_image),
	.open		= ram_open,
	.close		= ram_close,
	.queue_read	= ram_queue_read,
	.queue_write	= ram_queue_write,
	.flush		= ram_flush,
	.discard	= ram_zero,
	.write_zeroes	= ram_zero,
};
