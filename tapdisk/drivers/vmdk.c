// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The vmdk driver: VMware virtual disks as qemu-img and VMware write them.
 * A descriptor (a text file, or embedded in a monolithic sparse file) lists
 * extents: FLAT files read and written in place, SPARSE files with a grain
 * directory (GD) of grain tables (GT) mapping grains to file offsets, and
 * ZERO ranges. Stream-optimized extents (compressed grains) are read-only.
 * A delta link names its parent with parentFileNameHint; unallocated grains
 * are read from it.
 *
 * The grain directory is read at open and kept in memory; grain tables go
 * through a bounded LRU cache (vmdk-gt.c, 1024 tables = 2 MiB per extent,
 * the first ones read and checked at open, the rest read asynchronously
 * when first needed). Data I/O goes through the loop's aio context. A write to an unallocated grain appends a
 * whole grain (copy-on-write of the rest from the parent or zeros), then
 * writes the GT entry (both copies), then, for a new grain table, the GD
 * entry (both copies): each step starts only when the one before has
 * completed and an fdatasync has made it durable, so a table never points
 * at data that is not on disk.
 *
 * This file: reads (flat, sparse, compressed grains), flush and the driver
 * table. Opening is in vmdk-open.c, writes in vmdk-write.c, the grain-table
 * cache in vmdk-gt.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blktap/log.h"
#include "vmdk.h"

/* ---- I/O on one child request ---- */

struct vmdk_io {
	struct td_iocb iocb;
	struct td_image *img;
	struct vmdk_extent *ext;
	struct td_req *req;
};

static void io_done(struct td_iocb *iocb, long res)
{
	struct vmdk_io *io = (struct vmdk_io *)iocb;
	struct td_req *req = io->req;

	if (res == -EINVAL && iocb->iocb.aio_lio_opcode == IO_CMD_FDSYNC)
		res = fdatasync(iocb->iocb.aio_fildes) < 0 ? -errno : 0;
	/* A write into a grain that ran past the end of the file extends it. */
	if (res >= 0 && req->op == TD_OP_WRITE && iocb->off + iocb->len > io->ext->eof)
		io->ext->eof = iocb->off + iocb->len;
	if (res < 0) {
		io->img->errors++;
		td_log_err("%s: %s at virtual offset %llu, %llu bytes: %s",
			   io->ext->label,
			   req->op == TD_OP_READ ? "read" :
			   req->op == TD_OP_WRITE ? "write" : "flush",
			   (unsigned long long)req->off,
			   (unsigned long long)req->len, strerror(-res));
	}
	free(io);
	td_req_complete(req, res < 0 ? (int)res : 0);
}

/* Read or write @req at @off in the extent's file; completes @req. */
void vmdk_io_file(struct td_image *img, struct vmdk_extent *e,
		    struct td_req *req, enum td_aio_op op, uint64_t off)
{
	struct vmdk_io *io = malloc(sizeof(*io));

	if (!io) {
		td_image_complete_later(img, req, -ENOMEM);
		return;
	}
	io->img = img;
	io->ext = e;
	io->req = req;
	td_iocb_prep(&io->iocb, op, e->fd, req->iov, req->niov, off, 0,
		     io_done, io);
	td_aio_queue(img->ctx->aio, &io->iocb);
}

/* Split @req's bytes [@a, @b) (virtual offsets) off into a child. */
struct td_req *vmdk_piece(struct td_req *req, uint64_t a, uint64_t b)
{
	return td_req_slice(req, a - req->off, b - a);
}

static void zero_piece(struct td_image *img, struct td_req *req, uint64_t a,
		       uint64_t b, int *err)
{
	struct td_req *c = vmdk_piece(req, a, b);

	if (!c) {
		*err = -ENOMEM;
		return;
	}
	td_iov_zero(c->iov, c->niov, 0, c->len);
	td_image_complete_later(img, c, 0);
}

/* ---- compressed grains ---- */

struct vmdk_cread {
	struct td_iocb iocb;
	struct td_image *img;
	struct vmdk_extent *ext;
	struct td_req *req;
	uint64_t grain_idx, in_grain;
	void *raw;
	size_t raw_len;
	uint64_t file_off;
};

static void cread_done(struct td_iocb *iocb, long res)
{
	struct vmdk_cread *c = (struct vmdk_cread *)iocb;
	struct vmdk_extent *e = c->ext;
	struct vmdk_marker m = { 0 };
	const uint8_t *data = c->raw;
	size_t data_len = c->raw_len;
	char why[160];
	int err = res < 0 ? (int)res : 0;

	if (err) {
		snprintf(why, sizeof(why), "%s", strerror(-err));
		goto out;
	}
	if (e->markers) {
		if (vmdk_marker_parse(c->raw, c->raw_len, &m) ||
		    m.lba != c->grain_idx * e->hdr.grain_sectors ||
		    m.size > c->raw_len - VMDK_MARKER_HDR || !m.size) {
			snprintf(why, sizeof(why),
				 "grain marker (lba %llu, %u bytes) does not fit grain %llu",
				 (unsigned long long)m.lba, m.size,
				 (unsigned long long)c->grain_idx);
			err = -EIO;
			goto out;
		}
		data += VMDK_MARKER_HDR;
		data_len = m.size;
	}
	e->cache_valid = false;
	if (!e->cache && !(e->cache = malloc(e->grain))) {
		err = -ENOMEM;
		snprintf(why, sizeof(why), "out of memory");
		goto out;
	}
	err = vmdk_grain_inflate(data, data_len, e->cache, e->grain, why, sizeof(why));
	if (err) {
		err = -EIO;
		goto out;
	}
	e->cache_grain = c->grain_idx;
	e->cache_valid = true;
	td_iov_from_buf(c->req->iov, c->req->niov, 0,
			(char *)e->cache + c->in_grain, c->req->len);
out:
	if (err) {
		c->img->errors++;
		td_log_err("%s: compressed grain at offset %llu: %s", e->label,
			   (unsigned long long)c->file_off, why);
	}
	td_req_complete(c->req, err);
	free(c->raw);
	free(c);
}

static void compressed_read(struct td_image *img, struct vmdk_extent *e,
			    struct td_req *req, uint64_t g, uint64_t in_grain,
			    uint32_t gte)
{
	struct vmdk_cread *c;
	uint64_t off = (uint64_t)gte * VMDK_SECTOR;
	size_t want = VMDK_MARKER_HDR + e->grain + e->grain / 8 + 1024;

	if (e->cache_valid && e->cache_grain == g) {
		td_iov_from_buf(req->iov, req->niov, 0, (char *)e->cache + in_grain,
				req->len);
		td_image_complete_later(img, req, 0);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c && want > e->eof - off)
		want = e->eof - off;	/* off < eof was checked at open */
	if (!c || !(c->raw = malloc(want))) {
		free(c);
		td_image_complete_later(img, req, -ENOMEM);
		return;
	}
	c->img = img;
	c->ext = e;
	c->req = req;
	c->grain_idx = g;
	c->in_grain = in_grain;
	c->raw_len = want;
	c->file_off = off;
	td_iocb_prep_buf(&c->iocb, TD_AIO_READ, e->fd, c->raw, want, off, 0,
			 cread_done, c);
	td_aio_queue(img->ctx->aio, &c->iocb);
}

/* ---- reads ---- */

/*
 * The longest run from @a (< @b) of grains of one kind, contiguous in the
 * file for data. Returns the end; *@host is the file offset of @a.
 */
uint64_t vmdk_sparse_run(const struct vmdk_extent *e, uint64_t a, uint64_t b,
			   enum run_kind *kind, uint64_t *host)
{
	uint64_t rel = a - e->start, g = rel / e->grain;
	uint32_t gte = gte_get(e, g);
	uint64_t end = e->start + (g + 1) * e->grain;

	*kind = gte_kind(e, gte);
	*host = (uint64_t)gte * VMDK_SECTOR + rel % e->grain;
	if (*kind == RUN_COMPRESSED)
		return end < b ? end : b;
	while (end < b) {
		uint32_t next = gte_get(e, ++g);

		if (gte_kind(e, next) != *kind ||
		    (*kind == RUN_DATA &&
		     (uint64_t)next * VMDK_SECTOR != *host + (end - a)))
			break;
		end += e->grain;
	}
	return end < b ? end : b;
}

static void sparse_read(struct td_image *img, struct vmdk_extent *e,
			struct td_req *req, uint64_t a, uint64_t b, int *err)
{
	while (a < b && !*err) {
		enum run_kind kind;
		uint64_t host, next = vmdk_sparse_run(e, a, b, &kind, &host);
		uint64_t rel = a - e->start, end = next;
		struct td_req *c;

		if (kind == RUN_DATA && host + (end - a) > e->eof) {
			/* Bytes past the end of the file read as zeros. */
			uint64_t keep = host < e->eof ? e->eof - host : 0;

			zero_piece(img, req, a + keep, end, err);
			end = a + keep;
		}
		if (kind == RUN_ZERO) {
			zero_piece(img, req, a, end, err);
			a = next;
			continue;
		}
		if (a == end) {
			a = next;
			continue;
		}
		c = vmdk_piece(req, a, end);
		if (!c) {
			*err = -ENOMEM;
			return;
		}
		if (kind == RUN_PARENT)
			td_image_read_parent(img, c);
		else if (kind == RUN_COMPRESSED)
			compressed_read(img, e, c, rel / e->grain, rel % e->grain,
					gte_get(e, rel / e->grain));
		else
			vmdk_io_file(img, e, c, TD_AIO_READ, host);
		a = next;
	}
}

/* Call @fn on each extent's share [a, b) of @req. */
void vmdk_for_extents(struct td_image *img, struct td_req *req,
		      vmdk_extent_fn fn)
{
	struct vmdk_image *vi = img->priv;
	uint64_t end = req->off + req->len;
	int err = 0;

	td_req_hold(req);
	for (unsigned int i = 0; i < vi->n_ext && !err; i++) {
		struct vmdk_extent *e = &vi->ext[i];
		uint64_t a = req->off > e->start ? req->off : e->start;
		uint64_t b = end < e->start + e->len ? end : e->start + e->len;

		if (a >= b)
			continue;
		if (e->type == VMDK_EXT_SPARSE) {
			/* After its grain tables are in memory. */
			struct td_req *c = vmdk_piece(req, a, b);

			if (!c)
				err = -ENOMEM;
			else
				vmdk_extent_run(img, e, c, fn);
			continue;
		}
		fn(img, e, req, a, b, &err);
	}
	td_req_release(req, err);
}

static void extent_read(struct td_image *img, struct vmdk_extent *e,
			struct td_req *req, uint64_t a, uint64_t b, int *err)
{
	struct td_req *c;

	if (e->noaccess) {
		td_log_err("%s: read at %llu: the extent is NOACCESS", img->name,
			   (unsigned long long)a);
		*err = -EACCES;
		return;
	}
	switch (e->type) {
	case VMDK_EXT_ZERO:
		zero_piece(img, req, a, b, err);
		break;
	case VMDK_EXT_FLAT:
		c = vmdk_piece(req, a, b);
		if (!c) {
			*err = -ENOMEM;
			return;
		}
		vmdk_io_file(img, e, c, TD_AIO_READ, e->flat_off + (a - e->start));
		break;
	case VMDK_EXT_SPARSE:
		sparse_read(img, e, req, a, b, err);
		break;
	}
}

static void vmdk_queue_read(struct td_image *img, struct td_req *req)
{
	vmdk_for_extents(img, req, extent_read);
}

/* Flush: fdatasync every extent file we write to. */
static void vmdk_flush(struct td_image *img, struct td_req *req)
{
	struct vmdk_image *vi = img->priv;
	unsigned int i;
	int err = 0;

	for (i = 0; i < vi->n_ext && (vi->ext[i].fd < 0 || !vi->ext[i].writable); i++)
		;
	if (i == vi->n_ext) {
		td_image_complete_later(img, req, 0);	/* nothing we write to */
		return;
	}
	td_req_hold(req);
	for (; i < vi->n_ext && !err; i++) {
		struct vmdk_extent *e = &vi->ext[i];
		struct td_req *c;
		struct vmdk_io *io;

		if (e->fd < 0 || !e->writable)
			continue;
		c = td_req_slice(req, 0, 0);
		io = c ? malloc(sizeof(*io)) : NULL;
		if (!io) {
			if (c)
				td_image_complete_later(img, c, -ENOMEM);
			err = -ENOMEM;
			break;
		}
		io->img = img;
		io->ext = e;
		io->req = c;
		td_iocb_prep(&io->iocb, TD_AIO_FDSYNC, e->fd, NULL, 0, 0, 0,
			     io_done, io);
		td_aio_queue(img->ctx->aio, &io->iocb);
	}
	td_req_release(req, err);
}


const struct td_driver td_driver_vmdk = {
	.name		 = "vmdk",
	.priv_size	 = sizeof(struct vmdk_image),
	.open		 = vmdk_open,
	.close		 = vmdk_close,
	.queue_read	 = vmdk_queue_read,
	.queue_write	 = vmdk_queue_write,
	.flush		 = vmdk_flush,
	.write_zeroes	 = vmdk_write_zeroes,
	.get_parent	 = vmdk_get_parent,
	.validate_parent = vmdk_validate_parent,
};
