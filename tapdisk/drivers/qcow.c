// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The qcow driver: QEMU qcow version 1 images (format in qcow-format.h),
 * read and written through the loop's libaio context: data clusters with
 * O_DIRECT where the file system allows it, metadata buffered.
 * This file is the driver table: open (header, backing name, L1 table),
 * close, flush and the backing chain. Requests go through qcow-io.c and,
 * where they allocate, qcow-alloc.c; qcow.h says who does what.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blktap/log.h"
#include "qcow.h"


/* Data and the metadata pointing to it: see qcow-meta.c. */
static void qcow_flush(struct td_image *img, struct td_req *req)
{
	qcow_meta_wait(img, req);
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

/*
 * A second fd with O_DIRECT for data clusters, unless the caller asked for
 * buffered I/O or the filesystem refuses it (then everything is buffered).
 * Buffered and direct I/O must never meet in one page (the kernel then
 * reports EIO at the next fdatasync), so only with clusters of a page or
 * more, and with img->align set so that no data I/O is left unaligned.
 */
static void open_direct(struct td_image *img, struct qcow_image *s,
			const char *path, unsigned int flags)
{
	struct statx stx;
	unsigned int a = 4096;	/* if the kernel cannot tell: safe everywhere */
	int fd;

	s->dfd = -1;
	if ((flags & TD_OPEN_BUFFERED) ||
	    s->h.cluster_size < (uint64_t)sysconf(_SC_PAGESIZE))
		return;
	fd = open(path, ((flags & TD_OPEN_RDONLY) ? O_RDONLY : O_RDWR) |
		  O_DIRECT | O_CLOEXEC);
	if (fd < 0) {
		td_log_info("%s: no O_DIRECT (%s); data goes through the page cache",
			    img->name, strerror(errno));
		return;
	}
	if (!statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) &&
	    (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
		a = stx.stx_dio_offset_align;
		if (stx.stx_dio_mem_align > a)
			a = stx.stx_dio_mem_align;
	}
	if (a & (a - 1) || a > 4096) {
		close(fd);
		return;
	}
	s->dfd = fd;
	s->dio_align = a;
}

static int qcow_open(struct td_image *img, const char *path, unsigned int flags)
{
	struct qcow_image *s = img->priv;
	unsigned int max;
	off_t fsize;
	int err;

	s->img = img;
	s->dfd = -1;
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
	qcow_meta_init(s);
	open_direct(img, s, path, flags);
	/* As QEMU does: whole sectors only. */
	img->size = s->h.size & ~511ull;
	img->sector_size = 512;
	if (s->dfd >= 0 && img->size % s->dio_align) {
		close(s->dfd);	/* the image layer could not align the tail */
		s->dfd = -1;
	}
	img->align = s->dfd >= 0 ? s->dio_align : 1;
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

	/*
	 * Writes are answered before their writeback's last fdatasync, so one
	 * may still be running when the owner closes: let it finish.
	 */
	while (s->wb)
		if (td_loop_run_once(img->ctx->loop, -1) < 0)
			break;
	if (s->wb)
		td_log_err("%s: closed during a metadata writeback", img->name);
	else
		qcow_meta_sync(img);	/* logs what failed */
	qcow_l2c_destroy(&s->l2c);
	free(s->zc_buf);
	free(s->l1);
	free(s->backing);
	if (s->dfd >= 0)
		close(s->dfd);
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