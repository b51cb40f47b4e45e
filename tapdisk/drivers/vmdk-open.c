// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Opening a vmdk image (see vmdk.c): the descriptor (a text file, or the
 * one embedded in a sparse extent), every extent file, and for sparse
 * extents the header (or the footer of a stream-optimized one), the grain
 * directories and all grain tables, checked against the file size so that
 * a corrupt image fails here with a message instead of misbehaving later.
 * Also the backing chain: the parent named by parentFileNameHint, with its
 * driver picked by probing its first bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blktap/log.h"
#include "vmdk.h"

#define GT_READ_RUN	(1u << 20)	/* bytes of contiguous GTs read at once */

/* ---- opening ---- */

/* Read exactly @len bytes; errors are logged after @label (file and image). */
static int read_at(const char *label, int fd, void *buf, size_t len,
		   uint64_t off, const char *what)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, off + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = -errno;

			td_log_err("%s: reading the %s: %s", label, what,
				   strerror(errno));
			return err;
		}
		if (n == 0) {
			td_log_err("%s: the %s at offset %llu lies past the end of the file",
				   label, what, (unsigned long long)off);
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

static int read_table(struct vmdk_extent *e,
		      uint32_t **out, uint64_t off_sectors, const char *what)
{
	uint32_t n = e->hdr.gd_entries;
	uint8_t *raw = malloc((size_t)n * 4 + 1);
	uint32_t *t = calloc(n + 1, sizeof(*t));
	int err = -ENOMEM;

	if (!raw || !t)
		goto out;
	err = read_at(e->label, e->fd, raw, (size_t)n * 4,
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

/*
 * Check that every grain table the directory names lies inside the file,
 * then read the first tables (as many as the cache holds), coalescing
 * tables that follow each other; the rest are read when first used.
 */
static int load_gts(struct vmdk_extent *e)
{
	uint32_t n = e->hdr.gd_entries, per = e->hdr.gtes_per_gt, i, j;
	int err = 0;

	vmdk_gt_set_limit(e, VMDK_GT_CACHE);
	e->gt = calloc(n + 1, sizeof(*e->gt));
	if (!e->gt)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		if (e->gd[i] && (uint64_t)e->gd[i] * VMDK_SECTOR + e->gt_bytes > e->eof) {
			td_log_err("%s: grain table %u at sector %u lies past the end of the file (%llu bytes); the file is truncated or corrupt",
				   e->label, i, e->gd[i], (unsigned long long)e->eof);
			return -EINVAL;
		}
	}
	i = 0;
	while (i < n && !err && e->n_resident < e->max_resident) {
		uint64_t first = e->gd[i];
		uint32_t i0 = i;
		uint8_t *raw;
		size_t bytes;

		if (!first) {
			i++;
			continue;
		}
		for (j = i + 1; j < n && (j - i + 1) * (uint64_t)e->gt_bytes <= GT_READ_RUN &&
		     e->n_resident + (j - i) < e->max_resident &&
		     e->gd[j] == first + (uint64_t)(j - i) * (e->gt_bytes / VMDK_SECTOR); j++)
			;
		bytes = (size_t)(j - i) * e->gt_bytes;
		raw = malloc(bytes);
		if (!raw)
			return -ENOMEM;
		err = read_at(e->label, e->fd, raw, bytes, first * VMDK_SECTOR,
			      "grain tables");
		for (; i < j && !err; i++) {
			const uint8_t *src = raw + (size_t)(i - i0) * e->gt_bytes;
			uint32_t *ent = malloc(per * sizeof(uint32_t));

			if (!ent || !vmdk_gt_insert(e, i, ent)) {
				free(ent);
				err = -ENOMEM;
				break;
			}
			for (uint32_t k = 0; k < per; k++)
				ent[k] = vmdk_le32(src + 4 * k);
			err = vmdk_gt_check(e, e->gt[i]);
		}
		free(raw);
	}
	return err;
}

static int load_sparse(struct vmdk_extent *e)
{
	uint8_t hdr[VMDK_HEADER_SIZE];
	char why[256];
	int err;

	err = read_at(e->label, e->fd, hdr, sizeof(hdr), 0, "sparse header");
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
		err = read_at(e->label, e->fd, hdr, sizeof(hdr),
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
		td_log_err("%s: compressed (stream-optimized) extents are read-only here; open the image read-only",
			   e->label);
		return -EROFS;
	}
	err = read_table(e, &e->gd, e->hdr.gd_offset, "grain directory");
	if (!err && (e->hdr.flags & VMDK_FLAG_RGD) && !e->compressed)
		err = read_table(e, &e->rgd, e->hdr.rgd_offset,
				 "redundant grain directory");
	if (!err)
		err = load_gts(e);
	if (err)
		return err;
	e->alloc = (e->eof + VMDK_SECTOR - 1) / VMDK_SECTOR * VMDK_SECTOR;
	if (e->alloc < e->hdr.overhead * VMDK_SECTOR)
		e->alloc = e->hdr.overhead * VMDK_SECTOR;
	return 0;
bad_footer:
	td_log_err("%s: footer: %s", e->label, why);
	return -EINVAL;
bad:
	td_log_err("%s: %s", e->label, why);
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
	if (e->type == VMDK_EXT_ZERO) {
		if (asprintf(&e->label, "%s: ZERO extent", img->name) < 0)
			e->label = NULL;
		return e->label ? 0 : -ENOMEM;
	}
	e->path = join_path(vi->dir, d->file);
	if (!e->path)
		return -ENOMEM;
	/* Messages name the extent file when it is not the image's own. */
	if (!strcmp(e->path, img->path))
		e->label = strdup(img->name);
	else if (asprintf(&e->label, "%s: %s", img->name, e->path) < 0)
		e->label = NULL;
	if (!e->label)
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
		td_log_err("%s: stat: %s", e->label, strerror(errno));
		return err;
	}
	e->eof = st.st_size;
	if (e->type == VMDK_EXT_SPARSE)
		return load_sparse(e);
	if (S_ISREG(st.st_mode) && e->flat_off + e->len > e->eof) {
		td_log_err("%s: flat extent of %llu bytes at offset %llu runs past the end of the file (%llu bytes)",
			   e->label, (unsigned long long)e->len,
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
	vmdk_gt_free_all(e);
	free(e->gd);
	free(e->rgd);
	free(e->cache);
	free(e->path);
	free(e->label);
}

void vmdk_close(struct td_image *img)
{
	struct vmdk_image *vi = img->priv;

	for (unsigned int i = 0; vi->ext && i < vi->n_ext; i++)
		free_extent(&vi->ext[i]);
	free(vi->ext);
	free(vi->dir);
	vmdk_desc_free(&vi->desc);
	if (vi->desc_fd >= 0)
		close(vi->desc_fd);
	vi->desc_fd = -1;
}

/*
 * Called before the first write is queued. A few bytes written in place,
 * synchronously: once per open, and a delta link on this image must not
 * keep trusting it once any data may have changed.
 */
void vmdk_new_cid(struct td_image *img)
{
	struct vmdk_image *vi = img->priv;
	unsigned int n = vi->cid_digits;
	uint32_t mask = n >= 8 ? UINT32_MAX : (1u << (4 * n)) - 1;
	uint32_t cid = vi->desc.cid;
	char hex[9];

	if (vi->cid_written || vi->desc_fd < 0)
		return;
	vi->cid_written = true;
	while (cid == vi->desc.cid || cid == VMDK_CID_NONE)
		cid = ((uint32_t)random() ^ (uint32_t)getpid() << 16 ^
		       (uint32_t)time(NULL)) & mask;
	snprintf(hex, sizeof(hex), "%0*x", (int)n, cid);
	if (pwrite(vi->desc_fd, hex, n, vi->cid_pos) != (ssize_t)n) {
		td_log_warn("%s: writing a new CID to the descriptor: %s", img->name,
			    strerror(errno ? errno : EIO));
		return;
	}
	vi->desc.cid = cid;
}

/*
 * The descriptor: the text of @path itself, or the one embedded in a sparse
 * extent (or, if that has none, a single extent made up from its header).
 */
static int read_descriptor(struct td_image *img, struct vmdk_image *vi,
			   const char *path, int fd, uint64_t size,
			   unsigned int flags)
{
	uint8_t head[VMDK_HEADER_SIZE] = { 0 };
	uint64_t off = 0, len = size;
	struct vmdk_header h;
	char why[256], *text;
	int err;

	err = read_at(img->name, fd, head, size < sizeof(head) ? size : sizeof(head),
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
	err = off || len ? read_at(img->name, fd, text, len, off, "descriptor") : 0;
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
	if (!err && !(flags & TD_OPEN_RDONLY)) {
		long pos = vmdk_desc_cid_pos(text, len, &vi->cid_digits);

		/* The new CID is written over the old one, digit for digit. */
		if (pos >= 0 && (vi->desc_fd = open(path, O_RDWR | O_CLOEXEC)) >= 0)
			vi->cid_pos = off + (uint64_t)pos;
	}
	free(text);
	return err;
}

int vmdk_open(struct td_image *img, const char *path, unsigned int flags)
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
	vi->desc_fd = -1;
	err = read_descriptor(img, vi, path, fd, st.st_size, flags);
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

/* ---- backing chains ---- */

int vmdk_get_parent(struct td_image *img, char *buf, size_t buflen)
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

int vmdk_validate_parent(struct td_image *img, struct td_image *parent)
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
