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
 * Metadata (GD and GTs) is read synchronously at open and kept in memory:
 * 4 bytes per grain, 64 MiB per TiB with 64 KiB grains. Data I/O goes
 * through the loop's aio context. A write to an unallocated grain appends a
 * whole grain (copy-on-write of the rest from the parent or zeros), then
 * writes the GT entry (both copies), then, for a new grain table, the GD
 * entry (both copies): each step starts only when the one before has
 * completed, so a table never points at data that was not written.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aio.h"
#include "blktap/log.h"
#include "image.h"
#include "vmdk-format.h"

#define GT_MEM_LIMIT	(1ull << 30)	/* grain tables held in memory, per extent */
#define GT_READ_RUN	(1u << 20)	/* bytes of contiguous GTs read at once */

struct vmdk_alloc;

struct vmdk_extent {
	enum vmdk_ext_type type;
	bool writable;
	bool noaccess;
	char *path;
	int fd;
	uint64_t start, len;		/* bytes of the virtual disk */
	uint64_t flat_off;		/* FLAT: bytes into the file */

	/* SPARSE */
	struct vmdk_header hdr;
	uint64_t grain;			/* bytes */
	uint32_t gt_bytes;		/* one table, rounded up to sectors */
	uint32_t *gd, *rgd;		/* sectors; rgd NULL if there is none */
	uint32_t **gt;			/* per GD entry; NULL: not allocated */
	uint64_t eof;			/* bytes the file holds */
	uint64_t alloc;			/* where the next grain goes */
	bool compressed, markers, zero_grain;
	struct vmdk_alloc *allocs;	/* grain allocations in flight */

	/* the last inflated grain of a compressed extent */
	void *cache;
	uint64_t cache_grain;
	bool cache_valid;
};

struct vmdk_image {
	struct vmdk_desc desc;
	char *dir;			/* the descriptor's directory */
	struct vmdk_extent *ext;
	unsigned int n_ext;
};

/* ---- opening ---- */

static int read_at(struct td_image *img, const char *path, int fd, void *buf,
		   size_t len, uint64_t off, const char *what)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, off + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = -errno;

			td_log_err("%s: %s: reading the %s: %s", img->name, path,
				   what, strerror(errno));
			return err;
		}
		if (n == 0) {
			td_log_err("%s: %s: the %s at offset %llu lies past the end of the file",
				   img->name, path, what, (unsigned long long)off);
			return -EINVAL;
		}
		done += n;
	}
	return 0;
}

static char *join_path(const char *dir, const char *file)
{
	char *p;

	if (file[0] == '/' || !dir)
		return strdup(file);
	if (asprintf(&p, "%s/%s", dir, file) < 0)
		return NULL;
	return p;
}

static int read_table(struct td_image *img, struct vmdk_extent *e,
		      uint32_t **out, uint64_t off_sectors, const char *what)
{
	uint32_t n = e->hdr.gd_entries;
	uint8_t *raw = malloc((size_t)n * 4 + 1);
	uint32_t *t = calloc(n + 1, sizeof(*t));
	int err = -ENOMEM;

	if (!raw || !t)
		goto out;
	err = read_at(img, e->path, e->fd, raw, (size_t)n * 4,
		      off_sectors * VMDK_SECTOR, what);
	if (err)
		goto out;
	for (uint32_t i = 0; i < n; i++)
		t[i] = vmdk_le32(raw + 4 * i);
	*out = t;
	t = NULL;
out:
	free(raw);
	free(t);
	return err;
}

static int check_gt(struct td_image *img, struct vmdk_extent *e, uint32_t i)
{
	const uint32_t *t = e->gt[i];

	for (uint32_t j = 0; j < e->hdr.gtes_per_gt; j++) {
		if (t[j] == 0 || (t[j] == 1 && e->zero_grain))
			continue;
		if ((uint64_t)t[j] * VMDK_SECTOR >= e->eof) {
			td_log_err("%s: %s: grain %llu is at sector %u, past the end of the file (%llu bytes); the file is truncated or corrupt",
				   img->name, e->path,
				   (unsigned long long)i * e->hdr.gtes_per_gt + j,
				   t[j], (unsigned long long)e->eof);
			return -EINVAL;
		}
	}
	return 0;
}

/* Read every allocated grain table, coalescing tables that follow each other. */
static int load_gts(struct td_image *img, struct vmdk_extent *e)
{
	uint32_t n = e->hdr.gd_entries, per = e->hdr.gtes_per_gt, i = 0, j;
	uint64_t mem = 0;
	uint8_t *raw = NULL;
	int err = 0;

	e->gt = calloc(n + 1, sizeof(*e->gt));
	if (!e->gt)
		return -ENOMEM;
	while (i < n && !err) {
		uint64_t first = e->gd[i];
		uint32_t i0 = i;
		size_t bytes;

		if (!first) {
			i++;
			continue;
		}
		for (j = i + 1; j < n && (j - i + 1) * (uint64_t)e->gt_bytes <= GT_READ_RUN &&
		     e->gd[j] == first + (uint64_t)(j - i) * (e->gt_bytes / VMDK_SECTOR); j++)
			;
		bytes = (size_t)(j - i) * e->gt_bytes;
		mem += bytes;
		if (mem > GT_MEM_LIMIT) {
			td_log_err("%s: %s: grain tables need more than %llu MiB of memory",
				   img->name, e->path, GT_MEM_LIMIT >> 20);
			return -EFBIG;
		}
		if (first * VMDK_SECTOR + bytes > e->eof) {
			td_log_err("%s: %s: grain table %u at sector %llu lies past the end of the file (%llu bytes); the file is truncated or corrupt",
				   img->name, e->path, i, (unsigned long long)first,
				   (unsigned long long)e->eof);
			return -EINVAL;
		}
		raw = malloc(bytes);
		if (!raw)
			return -ENOMEM;
		err = read_at(img, e->path, e->fd, raw, bytes,
			      first * VMDK_SECTOR, "grain tables");
		for (; i < j && !err; i++) {
			const uint8_t *src = raw + (size_t)(i - i0) * e->gt_bytes;

			e->gt[i] = malloc(per * sizeof(uint32_t));
			if (!e->gt[i]) {
				err = -ENOMEM;
				break;
			}
			for (uint32_t k = 0; k < per; k++)
				e->gt[i][k] = vmdk_le32(src + 4 * k);
			err = check_gt(img, e, i);
		}
		free(raw);
	}
	return err;
}

static int load_sparse(struct td_image *img, struct vmdk_extent *e)
{
	uint8_t hdr[VMDK_HEADER_SIZE];
	char why[256];
	int err;

	err = read_at(img, e->path, e->fd, hdr, sizeof(hdr), 0, "sparse header");
	if (err)
		return err;
	if (vmdk_header_parse(hdr, sizeof(hdr), e->eof, &e->hdr, why, sizeof(why)))
		goto bad;
	if (e->hdr.gd_offset == VMDK_GD_AT_END) {
		/* Stream-optimized: the real header is the footer before end-of-stream. */
		if (e->eof < 3 * VMDK_SECTOR) {
			snprintf(why, sizeof(why), "the grain directory is at the end, but there is no footer");
			goto bad;
		}
		err = read_at(img, e->path, e->fd, hdr, sizeof(hdr),
			      e->eof - 2 * VMDK_SECTOR, "footer");
		if (err)
			return err;
		if (vmdk_header_parse(hdr, sizeof(hdr), e->eof, &e->hdr, why, sizeof(why)))
			goto bad_footer;
		if (e->hdr.gd_offset == VMDK_GD_AT_END) {
			snprintf(why, sizeof(why), "the footer does not say where the grain directory is");
			goto bad_footer;
		}
	}
	if (e->hdr.capacity * VMDK_SECTOR < e->len) {
		snprintf(why, sizeof(why),
			 "the descriptor gives the extent %llu sectors but its header only %llu",
			 (unsigned long long)(e->len / VMDK_SECTOR),
			 (unsigned long long)e->hdr.capacity);
		goto bad;
	}
	e->grain = e->hdr.grain_sectors * VMDK_SECTOR;
	e->gt_bytes = (e->hdr.gtes_per_gt * 4 + VMDK_SECTOR - 1) / VMDK_SECTOR * VMDK_SECTOR;
	e->compressed = e->hdr.flags & VMDK_FLAG_COMPRESSED;
	e->markers = e->hdr.flags & VMDK_FLAG_MARKERS;
	e->zero_grain = e->hdr.flags & VMDK_FLAG_ZERO_GRAIN;
	if (e->compressed && e->writable) {
		td_log_err("%s: %s: compressed (stream-optimized) extents are read-only here; open the image read-only",
			   img->name, e->path);
		return -EROFS;
	}
	err = read_table(img, e, &e->gd, e->hdr.gd_offset, "grain directory");
	if (!err && (e->hdr.flags & VMDK_FLAG_RGD) && !e->compressed)
		err = read_table(img, e, &e->rgd, e->hdr.rgd_offset,
				 "redundant grain directory");
	if (!err)
		err = load_gts(img, e);
	if (err)
		return err;
	e->alloc = (e->eof + VMDK_SECTOR - 1) / VMDK_SECTOR * VMDK_SECTOR;
	if (e->alloc < e->hdr.overhead * VMDK_SECTOR)
		e->alloc = e->hdr.overhead * VMDK_SECTOR;
	return 0;
bad_footer:
	td_log_err("%s: %s: footer: %s", img->name, e->path, why);
	return -EINVAL;
bad:
	td_log_err("%s: %s: %s", img->name, e->path, why);
	return -EINVAL;
}

static int open_extent(struct td_image *img, struct vmdk_image *vi,
		       struct vmdk_extent *e, const struct vmdk_desc_extent *d,
		       unsigned int flags)
{
	struct stat st;
	int err;

	e->type = d->type;
	e->len = d->sectors * VMDK_SECTOR;
	e->flat_off = d->offset * VMDK_SECTOR;
	e->noaccess = d->access == VMDK_ACCESS_NONE;
	e->writable = d->access == VMDK_ACCESS_RW && !(flags & TD_OPEN_RDONLY);
	if (e->type == VMDK_EXT_ZERO)
		return 0;
	e->path = join_path(vi->dir, d->file);
	if (!e->path)
		return -ENOMEM;
	e->fd = open(e->path, (e->writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (e->fd < 0) {
		err = -errno;
		td_log_err("%s: extent file %s: %s", img->name, e->path,
			   strerror(errno));
		return err;
	}
	if (fstat(e->fd, &st) < 0) {
		err = -errno;
		td_log_err("%s: %s: stat: %s", img->name, e->path, strerror(errno));
		return err;
	}
	e->eof = st.st_size;
	if (e->type == VMDK_EXT_SPARSE)
		return load_sparse(img, e);
	if (S_ISREG(st.st_mode) && e->flat_off + e->len > e->eof) {
		td_log_err("%s: %s: flat extent of %llu bytes at offset %llu runs past the end of the file (%llu bytes)",
			   img->name, e->path, (unsigned long long)e->len,
			   (unsigned long long)e->flat_off,
			   (unsigned long long)e->eof);
		return -EINVAL;
	}
	return 0;
}

static void free_extent(struct vmdk_extent *e)
{
	if (e->fd >= 0)
		close(e->fd);
	if (e->gt)
		for (uint32_t i = 0; i < e->hdr.gd_entries; i++)
			free(e->gt[i]);
	free(e->gt);
	free(e->gd);
	free(e->rgd);
	free(e->cache);
	free(e->path);
}

static void vmdk_close(struct td_image *img)
{
	struct vmdk_image *vi = img->priv;

	for (unsigned int i = 0; i < vi->n_ext; i++)
		free_extent(&vi->ext[i]);
	free(vi->ext);
	free(vi->dir);
	vmdk_desc_free(&vi->desc);
}

/*
 * The descriptor: the text of @path itself, or the one embedded in a sparse
 * extent (or, if that has none, a single extent made up from its header).
 */
static int read_descriptor(struct td_image *img, struct vmdk_image *vi,
			   const char *path, int fd, uint64_t size)
{
	uint8_t head[VMDK_HEADER_SIZE] = { 0 };
	uint64_t off = 0, len = size;
	struct vmdk_header h;
	char why[256], *text;
	int err;

	err = read_at(img, path, fd, head, size < sizeof(head) ? size : sizeof(head),
		      0, "first sector");
	if (err)
		return err;
	if (vmdk_le32(head) == VMDK_MAGIC) {
		if (vmdk_header_parse(head, sizeof(head), size, &h, why, sizeof(why))) {
			td_log_err("%s: %s", img->name, why);
			return -EINVAL;
		}
		off = h.desc_offset * VMDK_SECTOR;
		len = h.desc_size * VMDK_SECTOR;
	} else if (!vmdk_is_descriptor(head, sizeof(head))) {
		td_log_err("%s: not a VMDK image: neither a sparse extent ('KDMV') nor a text descriptor ('# Disk DescriptorFile')",
			   img->name);
		return -EINVAL;
	}
	if (len > VMDK_MAX_DESC_SIZE) {
		td_log_err("%s: descriptor of %llu bytes is too large", img->name,
			   (unsigned long long)len);
		return -EINVAL;
	}
	text = calloc(1, len + 1);
	if (!text)
		return -ENOMEM;
	err = off || len ? read_at(img, path, fd, text, len, off, "descriptor") : 0;
	if (!err && vmdk_le32(head) == VMDK_MAGIC && !text[0]) {
		/* A bare extent (e.g. one part of a split image). */
		const char *base = strrchr(path, '/');

		free(text);
		if (asprintf(&text, "createType=\"monolithicSparse\"\nRW %llu SPARSE \"%s\"\n",
			     (unsigned long long)h.capacity, base ? base + 1 : path) < 0)
			return -ENOMEM;
		len = strlen(text);
	}
	if (!err) {
		err = vmdk_desc_parse(text, len, &vi->desc, why, sizeof(why));
		if (err == -EINVAL)
			td_log_err("%s: descriptor: %s", img->name, why);
	}
	free(text);
	return err;
}

static int vmdk_open(struct td_image *img, const char *path, unsigned int flags)
{
	struct vmdk_image *vi = img->priv;
	uint64_t start = 0;
	struct stat st;
	char *slash;
	int fd, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		td_log_err("%s: open: %s", img->name, strerror(errno));
		return err;
	}
	if (fstat(fd, &st) < 0) {
		err = -errno;
		td_log_err("%s: stat: %s", img->name, strerror(errno));
		close(fd);
		return err;
	}
	err = read_descriptor(img, vi, path, fd, st.st_size);
	close(fd);
	if (err)
		goto fail;
	slash = strrchr(path, '/');
	vi->dir = slash ? strndup(path, slash - path + (slash == path)) : NULL;
	vi->ext = calloc(vi->desc.n_ext, sizeof(*vi->ext));
	err = -ENOMEM;
	if ((slash && !vi->dir) || !vi->ext)
		goto fail;
	for (unsigned int i = 0; i < vi->desc.n_ext; i++) {
		struct vmdk_extent *e = &vi->ext[i];

		e->fd = -1;
		e->start = start;
		vi->n_ext++;
		err = open_extent(img, vi, e, &vi->desc.ext[i], flags);
		if (err)
			goto fail;
		start += e->len;
	}
	img->size = start;
	img->align = 1;
	img->features = TD_FEAT_FLUSH;
	return 0;
fail:
	vmdk_close(img);
	return err;
}

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
	if (res < 0) {
		io->img->errors++;
		td_log_err("%s: %s: %s at virtual offset %llu, %llu bytes: %s",
			   io->img->name, io->ext->path,
			   req->op == TD_OP_READ ? "read" :
			   req->op == TD_OP_WRITE ? "write" : "flush",
			   (unsigned long long)req->off,
			   (unsigned long long)req->len, strerror(-res));
	}
	free(io);
	td_req_complete(req, res < 0 ? (int)res : 0);
}

/* Read or write @req at @off in the extent's file; completes @req. */
static void io_file(struct td_image *img, struct vmdk_extent *e,
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
static struct td_req *piece(struct td_req *req, uint64_t a, uint64_t b)
{
	return td_req_slice(req, a - req->off, b - a);
}

static void zero_piece(struct td_image *img, struct td_req *req, uint64_t a,
		       uint64_t b, int *err)
{
	struct td_req *c = piece(req, a, b);

	if (!c) {
		*err = -ENOMEM;
		return;
	}
	td_iov_zero(c->iov, c->niov, 0, c->len);
	td_image_complete_later(img, c, 0);
}

static uint32_t gte_get(const struct vmdk_extent *e, uint64_t g)
{
	uint64_t t = g / e->hdr.gtes_per_gt;

	if (t >= e->hdr.gd_entries || !e->gt[t])
		return 0;
	return e->gt[t][g % e->hdr.gtes_per_gt];
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
		td_log_err("%s: %s: compressed grain at offset %llu: %s", c->img->name,
			   e->path, (unsigned long long)c->file_off, why);
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

enum run_kind { RUN_PARENT, RUN_ZERO, RUN_DATA, RUN_COMPRESSED };

static enum run_kind gte_kind(const struct vmdk_extent *e, uint32_t gte)
{
	if (!gte)
		return RUN_PARENT;
	if (gte == 1 && e->zero_grain)
		return RUN_ZERO;
	return e->compressed ? RUN_COMPRESSED : RUN_DATA;
}

/*
 * The longest run from @a (< @b) of grains of one kind, contiguous in the
 * file for data. Returns the end; *@host is the file offset of @a.
 */
static uint64_t sparse_run(const struct vmdk_extent *e, uint64_t a, uint64_t b,
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
		uint64_t host, end = sparse_run(e, a, b, &kind, &host);
		uint64_t rel = a - e->start;
		struct td_req *c;

		if (kind == RUN_ZERO) {
			zero_piece(img, req, a, end, err);
			a = end;
			continue;
		}
		if (kind == RUN_DATA && host + (end - a) > e->eof) {
			/* Bytes past the end of the file read as zeros. */
			uint64_t keep = host < e->eof ? e->eof - host : 0;

			zero_piece(img, req, a + keep, end, err);
			end = a + keep;
			if (a == end)
				continue;
		}
		c = piece(req, a, end);
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
			io_file(img, e, c, TD_AIO_READ, host);
		a = end;
	}
}

/* Call @fn on each extent's share [a, b) of @req. */
static void for_extents(struct td_image *img, struct td_req *req,
			void (*fn)(struct td_image *, struct vmdk_extent *,
				   struct td_req *, uint64_t, uint64_t, int *))
{
	struct vmdk_image *vi = img->priv;
	uint64_t end = req->off + req->len;
	int err = 0;

	td_req_hold(req);
	for (unsigned int i = 0; i < vi->n_ext && !err; i++) {
		struct vmdk_extent *e = &vi->ext[i];
		uint64_t a = req->off > e->start ? req->off : e->start;
		uint64_t b = end < e->start + e->len ? end : e->start + e->len;

		if (a < b)
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
		c = piece(req, a, b);
		if (!c) {
			*err = -ENOMEM;
			return;
		}
		io_file(img, e, c, TD_AIO_READ, e->flat_off + (a - e->start));
		break;
	case VMDK_EXT_SPARSE:
		sparse_read(img, e, req, a, b, err);
		break;
	}
}

static void vmdk_queue_read(struct td_image *img, struct td_req *req)
{
	for_extents(img, req, extent_read);
}

/* ---- writes ---- */

enum alloc_stage { STAGE_COW, STAGE_DATA, STAGE_GT, STAGE_GD };

/*
 * One grain being allocated. Writes to the same grain, or to any grain of
 * a grain table being allocated, wait on it and are sent again once it is
 * done, so that each grain and each table is allocated once.
 */
struct vmdk_alloc {
	struct vmdk_alloc *next;
	struct td_image *img;
	struct vmdk_extent *ext;
	struct td_req *req;		/* the write that allocates */
	struct td_req *waiters;		/* linked through drv_arg */
	uint64_t grain_idx;
	uint32_t gd_idx;
	bool new_gt;
	uint64_t data_off, gt_off, rgt_off;	/* bytes; rgt_off 0: no copy */
	uint32_t *new_table;
	void *buf;			/* the whole grain, for copy-on-write */
	void *zero_gt;
	uint8_t gte_le[4], gde_le[4], rgde_le[4];
	enum alloc_stage stage;
	int pending, err;
	struct td_iocb io[3];
};

static void write_grain(struct td_image *img, struct vmdk_extent *e,
			struct td_req *c);

static void alloc_finish(struct vmdk_alloc *al, int err)
{
	struct vmdk_extent *e = al->ext;
	struct td_image *img = al->img;
	uint32_t per = e->hdr.gtes_per_gt;
	struct td_req *w = al->waiters;
	struct vmdk_alloc **pp;

	for (pp = &e->allocs; *pp != al; pp = &(*pp)->next)
		;
	*pp = al->next;
	if (!err) {
		if (al->new_gt) {
			e->gd[al->gd_idx] = (uint32_t)(al->gt_off / VMDK_SECTOR);
			if (e->rgd)
				e->rgd[al->gd_idx] = (uint32_t)(al->rgt_off / VMDK_SECTOR);
			e->gt[al->gd_idx] = al->new_table;
			al->new_table = NULL;
		}
		e->gt[al->gd_idx][al->grain_idx % per] =
			(uint32_t)(al->data_off / VMDK_SECTOR);
		if (e->eof < al->data_off + e->grain)
			e->eof = al->data_off + e->grain;
	} else {
		img->errors++;
		td_log_err("%s: %s: allocating grain %llu: %s", img->name, e->path,
			   (unsigned long long)al->grain_idx, strerror(-err));
	}
	free(al->new_table);
	free(al->buf);
	free(al->zero_gt);
	td_req_complete(al->req, err);
	free(al);
	while (w) {
		struct td_req *next = w->drv_arg;

		write_grain(img, e, w);
		w = next;
	}
}

static void alloc_step(struct vmdk_alloc *al);

static void alloc_io_done(struct td_iocb *iocb, long res)
{
	struct vmdk_alloc *al = iocb->arg;

	if (res < 0 && !al->err)
		al->err = (int)res;
	if (--al->pending == 0)
		alloc_step(al);
}

static void alloc_write(struct vmdk_alloc *al, const void *buf, size_t len,
			uint64_t off)
{
	struct td_iocb *io = &al->io[al->pending++];

	td_iocb_prep_buf(io, TD_AIO_WRITE, al->ext->fd, (void *)buf, len, off, 0,
			 alloc_io_done, al);
	td_aio_queue(al->img->ctx->aio, io);
}

/* Start the next stage once everything of the current one has completed. */
static void alloc_step(struct vmdk_alloc *al)
{
	struct vmdk_extent *e = al->ext;
	uint64_t gte_at = (al->grain_idx % e->hdr.gtes_per_gt) * 4;
	uint64_t gde_at = (uint64_t)al->gd_idx * 4;

	if (al->err) {
		alloc_finish(al, al->err);
		return;
	}
	switch (al->stage) {
	case STAGE_COW:
		al->stage = STAGE_DATA;
		if (al->buf) {
			alloc_write(al, al->buf, e->grain, al->data_off);
		} else {
			struct td_iocb *io = &al->io[al->pending++];

			td_iocb_prep(io, TD_AIO_WRITE, e->fd, al->req->iov,
				     al->req->niov, al->data_off, 0, alloc_io_done, al);
			td_aio_queue(al->img->ctx->aio, io);
		}
		if (al->new_gt) {
			alloc_write(al, al->zero_gt, e->gt_bytes, al->gt_off);
			if (al->rgt_off)
				alloc_write(al, al->zero_gt, e->gt_bytes, al->rgt_off);
		}
		break;
	case STAGE_DATA:
		al->stage = STAGE_GT;
		alloc_write(al, al->gte_le, 4, al->gt_off + gte_at);
		if (al->rgt_off)
			alloc_write(al, al->gte_le, 4, al->rgt_off + gte_at);
		break;
	case STAGE_GT:
		if (!al->new_gt) {
			alloc_finish(al, 0);
			break;
		}
		al->stage = STAGE_GD;
		alloc_write(al, al->gde_le, 4, e->hdr.gd_offset * VMDK_SECTOR + gde_at);
		if (al->rgt_off)
			alloc_write(al, al->rgde_le, 4,
				    e->hdr.rgd_offset * VMDK_SECTOR + gde_at);
		break;
	case STAGE_GD:
		alloc_finish(al, 0);
		break;
	}
}

/* The old contents of the grain are in al->buf: lay the new data over them. */
static void cow_merge(struct vmdk_alloc *al, int err)
{
	struct vmdk_extent *e = al->ext;
	uint64_t vstart = e->start + al->grain_idx * e->grain;

	if (err && !al->err)
		al->err = err;
	if (!al->err)
		td_iov_to_buf(al->req->iov, al->req->niov, 0,
			      (char *)al->buf + (al->req->off - vstart), al->req->len);
	alloc_step(al);
}

static void cow_read_done(struct td_req *r, int err)
{
	struct vmdk_alloc *al = r->arg;

	td_req_free(r);
	cow_merge(al, err);
}

/* Read what the grain held before (parent or zeros) under the new data. */
static void alloc_cow(struct vmdk_alloc *al, uint32_t old_gte)
{
	struct vmdk_extent *e = al->ext;
	uint64_t vstart = e->start + al->grain_idx * e->grain;
	uint64_t vend = vstart + e->grain;
	struct td_req *r;

	if (vend > e->start + e->len)
		vend = e->start + e->len;
	memset((char *)al->buf + (vend - vstart), 0, e->grain - (vend - vstart));
	if (gte_kind(e, old_gte) == RUN_ZERO || !al->img->parent) {
		memset(al->buf, 0, vend - vstart);
		cow_merge(al, 0);
		return;
	}
	r = td_req_new(TD_OP_READ, vstart, vend - vstart, NULL, 0, cow_read_done, al);
	if (!r) {
		al->err = -ENOMEM;
		alloc_step(al);
		return;
	}
	r->iov = r->iov_inline;
	r->niov = 1;
	r->iov_inline[0].iov_base = al->buf;
	r->iov_inline[0].iov_len = vend - vstart;
	td_image_read_parent(al->img, r);
}

static void start_alloc(struct td_image *img, struct vmdk_extent *e,
			struct td_req *c, uint64_t g, uint32_t old_gte)
{
	uint32_t per = e->hdr.gtes_per_gt;
	struct vmdk_alloc *al = calloc(1, sizeof(*al));
	uint64_t need;

	if (!al)
		goto nomem;
	al->img = img;
	al->ext = e;
	al->req = c;
	al->grain_idx = g;
	al->gd_idx = (uint32_t)(g / per);
	al->new_gt = !e->gt[al->gd_idx];
	need = e->grain + (al->new_gt ? 2ull * e->gt_bytes : 0);
	if (e->alloc + need > (uint64_t)UINT32_MAX * VMDK_SECTOR) {
		td_log_err("%s: %s: the extent is full (sparse extents hold at most 2 TiB)",
			   img->name, e->path);
		free(al);
		td_image_complete_later(img, c, -ENOSPC);
		return;
	}
	if (al->new_gt) {
		al->new_table = calloc(per, sizeof(uint32_t));
		al->zero_gt = calloc(1, e->gt_bytes);
		if (!al->new_table || !al->zero_gt)
			goto nomem_free;
		al->gt_off = e->alloc;
		e->alloc += e->gt_bytes;
		if (e->rgd) {
			al->rgt_off = e->alloc;
			e->alloc += e->gt_bytes;
		}
	} else {
		al->gt_off = (uint64_t)e->gd[al->gd_idx] * VMDK_SECTOR;
		if (e->rgd && e->rgd[al->gd_idx])
			al->rgt_off = (uint64_t)e->rgd[al->gd_idx] * VMDK_SECTOR;
	}
	if (c->len != e->grain && !(al->buf = malloc(e->grain)))
		goto nomem_free;
	al->data_off = e->alloc;
	e->alloc += e->grain;
	vmdk_put_le32(al->gte_le, (uint32_t)(al->data_off / VMDK_SECTOR));
	vmdk_put_le32(al->gde_le, (uint32_t)(al->gt_off / VMDK_SECTOR));
	vmdk_put_le32(al->rgde_le, (uint32_t)(al->rgt_off / VMDK_SECTOR));
	al->next = e->allocs;
	e->allocs = al;
	if (al->buf)
		alloc_cow(al, old_gte);
	else
		alloc_step(al);
	return;

nomem_free:
	free(al->new_table);
	free(al->zero_gt);
	free(al);
nomem:
	td_image_complete_later(img, c, -ENOMEM);
}

/* Write @c, which lies inside one grain. */
static void write_grain(struct td_image *img, struct vmdk_extent *e,
			struct td_req *c)
{
	uint64_t rel = c->off - e->start, g = rel / e->grain;
	uint32_t gte = gte_get(e, g);

	if (gte_kind(e, gte) == RUN_DATA) {
		io_file(img, e, c, TD_AIO_WRITE, (uint64_t)gte * VMDK_SECTOR + rel % e->grain);
		return;
	}
	for (struct vmdk_alloc *al = e->allocs; al; al = al->next) {
		if (al->grain_idx == g ||
		    (al->new_gt && al->gd_idx == g / e->hdr.gtes_per_gt)) {
			struct td_req **pp = &al->waiters;

			while (*pp)
				pp = (struct td_req **)&(*pp)->drv_arg;
			c->drv_arg = NULL;
			*pp = c;
			return;
		}
	}
	start_alloc(img, e, c, g, gte);
}

static void sparse_write(struct td_image *img, struct vmdk_extent *e,
			 struct td_req *req, uint64_t a, uint64_t b, int *err)
{
	while (a < b && !*err) {
		enum run_kind kind;
		uint64_t host, end = sparse_run(e, a, b, &kind, &host);
		struct td_req *c;

		if (kind != RUN_DATA) {
			/* Unallocated: one grain at a time. */
			end = e->start + ((a - e->start) / e->grain + 1) * e->grain;
			if (end > b)
				end = b;
		}
		c = piece(req, a, end);
		if (!c) {
			*err = -ENOMEM;
			return;
		}
		if (kind == RUN_DATA)
			io_file(img, e, c, TD_AIO_WRITE, host);
		else
			write_grain(img, e, c);
		a = end;
	}
}

static void extent_write(struct td_image *img, struct vmdk_extent *e,
			 struct td_req *req, uint64_t a, uint64_t b, int *err)
{
	struct td_req *c;

	if (!e->writable || e->type == VMDK_EXT_ZERO) {
		td_log_err("%s: write at %llu: the extent %s is read-only",
			   img->name, (unsigned long long)a,
			   e->path ? e->path : "(ZERO)");
		*err = -EROFS;
		return;
	}
	if (e->type == VMDK_EXT_SPARSE) {
		sparse_write(img, e, req, a, b, err);
		return;
	}
	c = piece(req, a, b);
	if (!c) {
		*err = -ENOMEM;
		return;
	}
	io_file(img, e, c, TD_AIO_WRITE, e->flat_off + (a - e->start));
}

static void vmdk_queue_write(struct td_image *img, struct td_req *req)
{
	for_extents(img, req, extent_write);
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

/* ---- backing chains ---- */

extern const struct td_driver td_driver_vmdk;

static int vmdk_get_parent(struct td_image *img, char *buf, size_t buflen)
{
	struct vmdk_image *vi = img->priv;
	static const char *const types[] = {
		[VMDK_PROBE_RAW] = "aio", [VMDK_PROBE_VMDK] = "vmdk",
		[VMDK_PROBE_QCOW] = "qcow",
	};
	uint8_t head[64] = { 0 };
	char *path;
	ssize_t n;
	int fd, err;

	if (!vi->desc.parent_hint)
		return 0;
	path = join_path(vi->dir, vi->desc.parent_hint);
	if (!path)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		td_log_err("%s: parent %s (parentFileNameHint): %s", img->name,
			   path, strerror(errno));
		free(path);
		return err;
	}
	n = pread(fd, head, sizeof(head), 0);
	close(fd);
	err = snprintf(buf, buflen, "%s:%s",
		       types[vmdk_probe(head, n > 0 ? (size_t)n : 0)], path);
	free(path);
	return err < 0 || (size_t)err >= buflen ? -ENAMETOOLONG : 1;
}

static int vmdk_validate_parent(struct td_image *img, struct td_image *parent)
{
	struct vmdk_image *vi = img->priv;

	if (parent->drv == &td_driver_vmdk) {
		struct vmdk_image *pvi = parent->priv;

		if (vi->desc.parent_cid != pvi->desc.cid)
			td_log_warn("%s: parentCID %08x does not match the CID %08x of %s; the parent may have changed since the link was made",
				    img->name, vi->desc.parent_cid, pvi->desc.cid,
				    parent->name);
	}
	return 0;
}

const struct td_driver td_driver_vmdk = {
	.name		 = "vmdk",
	.priv_size	 = sizeof(struct vmdk_image),
	.open		 = vmdk_open,
	.close		 = vmdk_close,
	.queue_read	 = vmdk_queue_read,
	.queue_write	 = vmdk_queue_write,
	.flush		 = vmdk_flush,
	.get_parent	 = vmdk_get_parent,
	.validate_parent = vmdk_validate_parent,
};
