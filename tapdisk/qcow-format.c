// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * qcow version 1 format helpers (see qcow-format.h): header parsing and
 * validation, compression, the L2 cache and the metadata checker.
 */
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "qcow-format.h"

#define ULL(x)	((unsigned long long)(x))

static int why_fmt(char *why, size_t n, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int why_fmt(char *why, size_t n, int err, const char *fmt, ...)
{
	if (why && n) {
		va_list ap;

		va_start(ap, fmt);
		vsnprintf(why, n, fmt, ap);
		va_end(ap);
	}
	return err;
}

int qcow_header_derive(struct qcow_header *h, char *why, size_t whylen)
{
	unsigned int shift;

	if (h->cluster_bits < QCOW_MIN_CLUSTER_BITS ||
	    h->cluster_bits > QCOW_MAX_CLUSTER_BITS)
		return why_fmt(why, whylen, -EINVAL,
			       "cluster_bits is %u, outside %d..%d (clusters of 512 B to 64 KiB)",
			       h->cluster_bits, QCOW_MIN_CLUSTER_BITS,
			       QCOW_MAX_CLUSTER_BITS);
	if (h->l2_bits < QCOW_MIN_L2_BITS || h->l2_bits > QCOW_MAX_L2_BITS)
		return why_fmt(why, whylen, -EINVAL,
			       "l2_bits is %u, outside %d..%d (L2 tables of 512 B to 64 KiB)",
			       h->l2_bits, QCOW_MIN_L2_BITS, QCOW_MAX_L2_BITS);
	shift = h->cluster_bits + h->l2_bits;
	h->cluster_size = 1ull << h->cluster_bits;
	h->l2_entries = 1ull << h->l2_bits;
	h->l2_bytes = h->l2_entries * 8;
	h->l2_span = 1ull << shift;
	/* Keep virtual offsets far from overflow anywhere in the arithmetic. */
	if (h->size > (1ull << 62))
		return why_fmt(why, whylen, -EINVAL,
			       "size is %llu bytes, larger than 2^62: the header is corrupt",
			       ULL(h->size));
	h->l1_entries = (h->size + h->l2_span - 1) >> shift;
	h->l1_bytes = h->l1_entries * 8;
	if (!h->hdr_end)
		h->hdr_end = QCOW_HDR_SIZE + (h->xen ? QCOW_XEN_HDR_SIZE : 0);
	return 0;
}

int qcow_header_parse(const void *buf, size_t len, uint64_t file_size,
		      struct qcow_header *h, char *why, size_t whylen)
{
	const uint8_t *b = buf;
	uint32_t magic;
	int err;

	memset(h, 0, sizeof(*h));
	if (len < QCOW_HDR_SIZE || file_size < QCOW_HDR_SIZE)
		return why_fmt(why, whylen, -EINVAL,
			       "the file is %llu bytes, shorter than the %d-byte qcow header",
			       ULL(file_size < len ? file_size : len), QCOW_HDR_SIZE);
	magic = qcow_be32(b);
	if (magic != QCOW_MAGIC)
		return why_fmt(why, whylen, -EINVAL,
			       "magic is 0x%08x, not 0x%08x (\"QFI\\xfb\"): not a qcow image",
			       magic, QCOW_MAGIC);
	h->version = qcow_be32(b + 4);
	h->backing_off = qcow_be64(b + 8);
	h->backing_len = qcow_be32(b + 16);
	h->mtime = qcow_be32(b + 20);
	h->size = qcow_be64(b + 24);
	h->cluster_bits = b[32];
	h->l2_bits = b[33];
	h->crypt_method = qcow_be32(b + 36);
	h->l1_off = qcow_be64(b + 40);
	if (h->version != QCOW_VERSION)
		return why_fmt(why, whylen, -ENOTSUP,
			       "version is %u; only qcow version 1 is supported%s",
			       h->version, h->version == 2 || h->version == 3 ?
			       " (this is qcow2: use qemu-img convert -O qcow)" : "");
	if (h->crypt_method)
		return why_fmt(why, whylen, -ENOTSUP,
			       "crypt_method is %u: encrypted qcow images are not supported "
			       "(decrypt with qemu-img convert first)", h->crypt_method);

	/* Xen's extension: only with a page-aligned L1, as Xen wrote it. */
	if (len >= QCOW_HDR_SIZE + QCOW_XEN_HDR_SIZE &&
	    file_size >= QCOW_HDR_SIZE + QCOW_XEN_HDR_SIZE &&
	    h->l1_off && h->l1_off % 4096 == 0 &&
	    qcow_be32(b + QCOW_HDR_SIZE) == QCOW_XEN_MAGIC) {
		h->xen = true;
		h->xen_flags = qcow_be32(b + QCOW_HDR_SIZE + 12);
		h->l1_le = !(h->xen_flags & QCOW_XEN_L1_BE);
	}
	err = qcow_header_derive(h, why, whylen);
	if (err)
		return err;

	if (h->backing_off) {
		if (!h->backing_len || h->backing_len > QCOW_MAX_BACKING)
			return why_fmt(why, whylen, -EINVAL,
				       "backing_file_size is %u, not 1..%d",
				       h->backing_len, QCOW_MAX_BACKING);
		if (h->backing_off < h->hdr_end ||
		    h->backing_off > file_size ||
		    h->backing_len > file_size - h->backing_off)
			return why_fmt(why, whylen, -EINVAL,
				       "backing file name at offset %llu (%u bytes) lies %s",
				       ULL(h->backing_off), h->backing_len,
				       h->backing_off < h->hdr_end ?
				       "inside the header" : "past the end of the file");
	}
	if (h->l1_entries) {
		if (h->l1_off < h->hdr_end)
			return why_fmt(why, whylen, -EINVAL,
				       "l1_table_offset is %llu, inside the %llu-byte header",
				       ULL(h->l1_off), ULL(h->hdr_end));
		if (h->l1_off > file_size || h->l1_bytes > file_size - h->l1_off)
			return why_fmt(why, whylen, -EINVAL,
				       "L1 table at offset %llu (%llu bytes for size %llu) lies past "
				       "the end of the file (%llu bytes); the image is truncated or corrupt",
				       ULL(h->l1_off), ULL(h->l1_bytes), ULL(h->size),
				       ULL(file_size));
	}
	return 0;
}

int qcow_header_init(struct qcow_header *h, uint64_t size, uint32_t backing_len,
		     unsigned int cluster_bits, unsigned int l2_bits, char *why,
		     size_t whylen)
{
	memset(h, 0, sizeof(*h));
	h->version = QCOW_VERSION;
	h->size = size;
	h->cluster_bits = cluster_bits;
	h->l2_bits = l2_bits;
	if (backing_len > QCOW_MAX_BACKING)
		return why_fmt(why, whylen, -ENAMETOOLONG,
			       "the backing file name is %u bytes, longer than %d",
			       backing_len, QCOW_MAX_BACKING);
	if (backing_len) {
		h->backing_off = QCOW_HDR_SIZE;
		h->backing_len = backing_len;
	}
	h->l1_off = (QCOW_HDR_SIZE + backing_len + 7) & ~7ull;
	return qcow_header_derive(h, why, whylen);
}

void qcow_header_write(const struct qcow_header *h, void *buf)
{
	uint8_t *b = buf;

	memset(b, 0, QCOW_HDR_SIZE);
	qcow_put_be32(b, QCOW_MAGIC);
	qcow_put_be32(b + 4, QCOW_VERSION);
	qcow_put_be64(b + 8, h->backing_off);
	qcow_put_be32(b + 16, h->backing_len);
	qcow_put_be32(b + 20, h->mtime);
	qcow_put_be64(b + 24, h->size);
	b[32] = h->cluster_bits;
	b[33] = h->l2_bits;
	qcow_put_be32(b + 36, h->crypt_method);
	qcow_put_be64(b + 40, h->l1_off);
	if (h->xen) {
		memset(b + QCOW_HDR_SIZE, 0, QCOW_XEN_HDR_SIZE);
		qcow_put_be32(b + QCOW_HDR_SIZE, QCOW_XEN_MAGIC);
		qcow_put_be32(b + QCOW_HDR_SIZE + 12, h->xen_flags);
	}
}

int qcow_backing_path(const char *image_path, const char *name, char *buf,
		      size_t buflen)
{
	char *copy;
	int n;

	if (name[0] == '/') {
		n = snprintf(buf, buflen, "%s", name);
	} else {
		copy = strdup(image_path);
		if (!copy)
			return -ENOMEM;
		n = snprintf(buf, buflen, "%s/%s", dirname(copy), name);
		free(copy);
	}
	return n < 0 || (size_t)n >= buflen ? -ENAMETOOLONG : 0;
}

const char *qcow_probe(const void *buf, size_t n)
{
	static const char desc[] = "# Disk DescriptorFile";

	if (n >= 4 && qcow_be32(buf) == QCOW_MAGIC)
		return "qcow";
	if ((n >= 4 && !memcmp(buf, "KDMV", 4)) ||
	    (n >= sizeof(desc) - 1 && !memcmp(buf, desc, sizeof(desc) - 1)))
		return "vmdk";
	return "aio";
}

uint64_t qcow_l1_decode(const struct qcow_header *h, const void *p)
{
	const uint8_t *b = p;
	uint64_t v = 0;

	if (!h->l1_le)
		return qcow_be64(p);
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

void qcow_l1_encode(const struct qcow_header *h, void *p, uint64_t v)
{
	uint8_t *b = p;

	if (!h->l1_le) {
		qcow_put_be64(p, v);
		return;
	}
	for (int i = 0; i < 8; i++, v >>= 8)
		b[i] = (uint8_t)v;
}

int qcow_entry_check(const struct qcow_header *h, uint64_t e,
		     uint64_t file_size, char *why, size_t whylen)
{
	uint64_t off, len;

	if (!e)
		return 0;
	if (qcow_is_compressed(e)) {
		off = qcow_coff(h, e);
		len = qcow_csize(h, e);
		if (!len)
			return why_fmt(why, whylen, -EIO,
				       "compressed cluster at offset %llu has length 0",
				       ULL(off));
	} else {
		off = e;
		len = h->cluster_size;
	}
	if (off < h->hdr_end || off > file_size || len > file_size - off)
		return why_fmt(why, whylen, -EIO,
			       "%s at offset %llu (%llu bytes) lies %s (file: %llu bytes)",
			       qcow_is_compressed(e) ? "compressed cluster" : "cluster",
			       ULL(off), ULL(len),
			       off < h->hdr_end ? "inside the header" :
			       "past the end of the file", ULL(file_size));
	return 0;
}

int qcow_inflate(const struct qcow_header *h, const void *in, size_t inlen,
		 void *out)
{
	z_stream zs;
	int ret;

	memset(&zs, 0, sizeof(zs));
	/* Raw deflate; a 32 KiB window reads QEMU's 4 KiB-window streams too. */
	if (inflateInit2(&zs, -15) != Z_OK)
		return -ENOMEM;
	zs.next_in = (Bytef *)in;
	zs.avail_in = inlen;
	zs.next_out = out;
	zs.avail_out = h->cluster_size;
	ret = inflate(&zs, Z_FINISH);
	inflateEnd(&zs);
	if ((ret != Z_STREAM_END && ret != Z_BUF_ERROR && ret != Z_OK) ||
	    zs.total_out != h->cluster_size)
		return -EIO;
	return 0;
}

size_t qcow_deflate(const struct qcow_header *h, const void *in, void *out)
{
	z_stream zs;
	size_t n;
	int ret;

	memset(&zs, 0, sizeof(zs));
	/* QEMU inflates with a 4 KiB window (-12): write no wider. */
	if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return 0;
	zs.next_in = (Bytef *)in;
	zs.avail_in = h->cluster_size;
	zs.next_out = out;
	zs.avail_out = h->cluster_size;
	ret = deflate(&zs, Z_FINISH);
	n = zs.total_out;
	deflateEnd(&zs);
	if (ret != Z_STREAM_END || n >= h->cluster_size)
		return 0;
	return n;
}

/* ---- L2 cache ---- */

void qcow_l2c_init(struct qcow_l2c *c, unsigned int max, size_t entries)
{
	memset(c, 0, sizeof(*c));
	c->max = max ? max : 1;
	c->entries = entries;
	/* About a bucket per table; without buckets lookups walk the list. */
	c->hash_bits = 4;
	while (c->hash_bits < 20 && (1u << c->hash_bits) < c->max)
		c->hash_bits++;
	c->hash = calloc(1u << c->hash_bits, sizeof(*c->hash));
}

static void l2_free(struct qcow_l2 *t)
{
	free(t->tab);
	free(t);
}

void qcow_l2c_destroy(struct qcow_l2c *c)
{
	while (c->list) {
		struct qcow_l2 *t = c->list;

		c->list = t->next;
		l2_free(t);
	}
	free(c->hash);
	c->hash = NULL;
	c->count = 0;
}

static struct qcow_l2 **bucket(struct qcow_l2c *c, uint64_t off)
{
	return &c->hash[(off * 0x9e3779b97f4a7c15ull) >> (64 - c->hash_bits)];
}

static void hash_del(struct qcow_l2c *c, struct qcow_l2 *t)
{
	if (!c->hash)
		return;
	for (struct qcow_l2 **p = bucket(c, t->off); *p; p = &(*p)->hnext)
		if (*p == t) {
			*p = t->hnext;
			return;
		}
}

static void hash_add(struct qcow_l2c *c, struct qcow_l2 *t)
{
	struct qcow_l2 **p;

	if (!c->hash)
		return;
	p = bucket(c, t->off);
	t->hnext = *p;
	*p = t;
}

static void l2c_unlink(struct qcow_l2c *c, struct qcow_l2 *t)
{
	hash_del(c, t);
	for (struct qcow_l2 **p = &c->list; *p; p = &(*p)->next)
		if (*p == t) {
			*p = t->next;
			c->count--;
			return;
		}
}

static struct qcow_l2 *l2c_find(struct qcow_l2c *c, uint64_t off)
{
	struct qcow_l2 *t = c->hash ? *bucket(c, off) : c->list;

	for (; t; t = c->hash ? t->hnext : t->next)
		if (t->off == off)
			return t;
	return NULL;
}

struct qcow_l2 *qcow_l2c_peek(struct qcow_l2c *c, uint64_t off)
{
	struct qcow_l2 *t = l2c_find(c, off);

	return t && t->ready ? t : NULL;
}

struct qcow_l2 *qcow_l2c_get(struct qcow_l2c *c, uint64_t off, bool *hit)
{
	struct qcow_l2 *t = l2c_find(c, off), *victim = NULL;

	if (t) {
		t->refs++;
		t->stamp = ++c->clock;
		c->hits++;
		*hit = true;
		return t;
	}
	*hit = false;
	c->misses++;
	if (c->count >= c->max) {
		for (t = c->list; t; t = t->next)
			if (!t->refs && t->ready &&
			    (!victim || t->stamp < victim->stamp))
				victim = t;
	}
	if (victim) {
		t = victim;		/* reuse its buffer */
		hash_del(c, t);
	} else {
		t = calloc(1, sizeof(*t));
		if (!t)
			return NULL;
		t->tab = malloc(c->entries * sizeof(uint64_t));
		if (!t->tab) {
			free(t);
			return NULL;
		}
		t->next = c->list;
		c->list = t;
		c->count++;
	}
	t->off = off;
	hash_add(c, t);
	t->refs = 1;
	t->ready = false;
	t->orphan = false;
	t->waiters = NULL;
	t->dirty = t->held = t->l1_new = false;
	t->l1i = 0;
	t->stamp = ++c->clock;
	return t;
}

void qcow_l2c_forget(struct qcow_l2c *c, struct qcow_l2 *t)
{
	if (!t->orphan) {
		l2c_unlink(c, t);
		t->orphan = true;
	}
}

void qcow_l2c_put(struct qcow_l2c *c, struct qcow_l2 *t)
{
	if (--t->refs)
		return;
	if (t->orphan) {
		l2_free(t);
		return;
	}
	if (!t->ready || c->count > c->max) {
		l2c_unlink(c, t);
		l2_free(t);
	}
}

/* ---- checker ---- */

enum ext_kind { EXT_HDR, EXT_BACKING, EXT_L1, EXT_L2, EXT_DATA, EXT_COMPR };

static const char *const ext_name[] = {
	[EXT_HDR] = "the header",
	[EXT_BACKING] = "the backing file name",
	[EXT_L1] = "the L1 table",
	[EXT_L2] = "L2 table",
	[EXT_DATA] = "data cluster",
	[EXT_COMPR] = "compressed cluster",
};

struct ext {
	uint64_t start;
	uint64_t len : 56;
	uint64_t kind : 8;
};

struct extents {
	struct ext *v;
	size_t n, cap;
};

static int ext_add(struct extents *x, uint64_t start, uint64_t len,
		   enum ext_kind kind)
{
	if (x->n == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 256;
		struct ext *v = realloc(x->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		x->v = v;
		x->cap = cap;
	}
	x->v[x->n++] = (struct ext){ .start = start, .len = len, .kind = kind };
	return 0;
}

static int ext_cmp(const void *a, const void *b)
{
	const struct ext *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

#define MAX_REPORTS	50

static void report(struct qcow_check *chk, bool corrupt, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void report(struct qcow_check *chk, bool corrupt, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (corrupt)
		chk->errors++;
	if (chk->errors > MAX_REPORTS && corrupt) {
		if (chk->errors == MAX_REPORTS + 1)
			chk->report(chk->arg, true, "more errors follow; not reporting them");
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	chk->report(chk->arg, corrupt, msg);
}

static int check_l2(struct qcow_check *chk, struct extents *x, uint64_t l1i,
		    const uint8_t *tab)
{
	const struct qcow_header *h = &chk->hdr;
	uint64_t fs = chk->file_size;
	char why[256];

	for (uint64_t j = 0; j < h->l2_entries; j++) {
		uint64_t e = qcow_be64(tab + j * 8);
		uint64_t vaddr = (l1i * h->l2_entries + j) << h->cluster_bits;
		int err;

		if (!e)
			continue;
		if (vaddr >= h->size) {
			report(chk, true, "L2[%llu][%llu] = 0x%llx maps guest offset %llu, past the virtual size %llu",
			       ULL(l1i), ULL(j), ULL(e), ULL(vaddr), ULL(h->size));
			continue;
		}
		err = qcow_entry_check(h, e, fs, why, sizeof(why));
		if (err) {
			report(chk, true, "L2[%llu][%llu] (guest offset %llu): %s",
			       ULL(l1i), ULL(j), ULL(vaddr), why);
			continue;
		}
		if (qcow_is_compressed(e)) {
			chk->compressed_clusters++;
			err = ext_add(x, qcow_coff(h, e), qcow_csize(h, e), EXT_COMPR);
		} else {
			if (e % h->cluster_size) {
				report(chk, true, "L2[%llu][%llu] (guest offset %llu): cluster offset %llu is not a multiple of the cluster size %llu",
				       ULL(l1i), ULL(j), ULL(vaddr), ULL(e),
				       ULL(h->cluster_size));
				continue;
			}
			chk->data_clusters++;
			err = ext_add(x, e, h->cluster_size, EXT_DATA);
		}
		if (err)
			return err;
	}
	return 0;
}

static void check_overlaps_and_leaks(struct qcow_check *chk, struct extents *x)
{
	const struct qcow_header *h = &chk->hdr;
	uint64_t cs = h->cluster_size, meta_end = 0, cursor, first, last;
	const struct ext *owner = NULL;
	uint64_t owner_end = 0;

	qsort(x->v, x->n, sizeof(*x->v), ext_cmp);
	for (size_t i = 0; i < x->n; i++) {
		const struct ext *e = &x->v[i];

		if (owner && e->start < owner_end)
			report(chk, true, "%s at offset %llu (%llu bytes) overlaps %s at offset %llu (%llu bytes)",
			       ext_name[e->kind], ULL(e->start), ULL(e->len),
			       ext_name[owner->kind], ULL(owner->start),
			       ULL(owner->len));
		if (!owner || e->start + e->len > owner_end) {
			owner = e;
			owner_end = e->start + e->len;
		}
		if (e->kind <= EXT_L1 && e->start + e->len > meta_end)
			meta_end = e->start + e->len;
	}
	/*
	 * Clusters are allocated after the fixed metadata, cluster-aligned;
	 * QEMU pads the L1 table to 512 bytes in the file.
	 */
	if (qcow_fresh_length(h) > meta_end)
		meta_end = qcow_fresh_length(h);
	cursor = (meta_end + cs - 1) / cs * cs;
	for (size_t i = 0; i < x->n; i++) {
		const struct ext *e = &x->v[i];

		if (e->start + e->len <= cursor)
			continue;
		if (e->start > cursor) {
			first = (cursor + cs - 1) / cs;
			last = e->start / cs;
			if (last > first)
				chk->leaks += last - first;
		}
		cursor = e->start + e->len;
	}
	first = (cursor + cs - 1) / cs;
	last = (chk->file_size + cs - 1) / cs;
	if (last > first) {
		chk->leaks += last - first;
		chk->leaked_tail = cursor;
	}
	if (chk->leaks)
		report(chk, false, "%llu leaked cluster%s (allocated in the file, referenced by no table)%s",
		       ULL(chk->leaks), chk->leaks == 1 ? "" : "s",
		       chk->leaked_tail ? "; the file has a leaked tail" : "");
}

int qcow_check_run(struct qcow_check *chk)
{
	struct qcow_header *h = &chk->hdr;
	struct extents x = { 0 };
	uint8_t hdr[QCOW_HDR_SIZE + QCOW_XEN_HDR_SIZE];
	uint8_t *l1 = NULL, *l2 = NULL;
	size_t hlen = chk->file_size < sizeof(hdr) ? chk->file_size : sizeof(hdr);
	char why[512];
	int err;

	chk->errors = chk->leaks = chk->leaked_tail = 0;
	chk->l2_tables = chk->data_clusters = chk->compressed_clusters = 0;
	err = chk->read(chk->arg, hdr, hlen, 0);
	if (err)
		return err;
	err = qcow_header_parse(hdr, hlen, chk->file_size, h, why, sizeof(why));
	if (err) {
		report(chk, true, "header: %s", why);
		return 2;
	}
	err = ext_add(&x, 0, h->hdr_end, EXT_HDR);
	if (!err && h->backing_off)
		err = ext_add(&x, h->backing_off, h->backing_len, EXT_BACKING);
	if (!err && h->l1_bytes)
		err = ext_add(&x, h->l1_off, h->l1_bytes, EXT_L1);
	if (err)
		goto out;
	l1 = malloc(h->l1_bytes ? h->l1_bytes : 1);
	l2 = malloc(h->l2_bytes);
	err = -ENOMEM;
	if (!l1 || !l2)
		goto out;
	err = h->l1_bytes ? chk->read(chk->arg, l1, h->l1_bytes, h->l1_off) : 0;
	if (err)
		goto out;
	for (uint64_t i = 0; i < h->l1_entries; i++) {
		uint64_t off = qcow_l1_decode(h, l1 + i * 8);

		if (!off)
			continue;
		if (off % h->cluster_size) {
			report(chk, true, "L1[%llu] = %llu: L2 table offset is not a multiple of the cluster size %llu",
			       ULL(i), ULL(off), ULL(h->cluster_size));
			continue;
		}
		if (off < h->hdr_end || off > chk->file_size ||
		    h->l2_bytes > chk->file_size - off) {
			report(chk, true, "L1[%llu] = %llu: L2 table (%llu bytes) lies %s (file: %llu bytes)",
			       ULL(i), ULL(off), ULL(h->l2_bytes),
			       off < h->hdr_end ? "inside the header" :
			       "past the end of the file", ULL(chk->file_size));
			continue;
		}
		chk->l2_tables++;
		err = ext_add(&x, off, h->l2_bytes, EXT_L2);
		if (!err)
			err = chk->read(chk->arg, l2, h->l2_bytes, off);
		if (!err)
			err = check_l2(chk, &x, i, l2);
		if (err)
			goto out;
	}
	check_overlaps_and_leaks(chk, &x);
	err = chk->errors ? 2 : chk->leaks ? 1 : 0;
out:
	free(x.v);
	free(l1);
	free(l2);
	return err;
}
