/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * QEMU qcow version 1: the on-disk format, shared by the qcow driver and the
 * qcow tools. Pure helpers, no I/O of their own: header parsing and
 * validation, table entry encoding, a bounded LRU cache of L2 tables, and
 * the metadata checker behind qcow-check (which reads through a callback so
 * that it runs on files and, in the fuzzer, on memory).
 *
 * Layout (all big-endian): a 48-byte header {magic "QFI\xfb", version 1,
 * backing_file_offset u64, backing_file_size u32, mtime u32, size u64,
 * cluster_bits u8, l2_bits u8, pad u16, crypt_method u32, l1_table_offset
 * u64}; optionally Xen's 16-byte extension {magic "XEN\xfb", cksum,
 * min_cluster_alloc, flags} right after it when the L1 table is
 * page-aligned. L1 entries are file offsets of L2 tables (0: none); L2
 * entries are file offsets of data clusters (0: unallocated), or with bit
 * 63 set a compressed cluster: raw deflate of csize bytes at coff, where
 * csize = (e >> (63 - cluster_bits)) & (cluster_size - 1) and
 * coff = e & ((1 << (63 - cluster_bits)) - 1).
 */
#ifndef TAPDISK_QCOW_FORMAT_H
#define TAPDISK_QCOW_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QCOW_MAGIC		0x514649fbu	/* "QFI\xfb" */
#define QCOW_VERSION		1
#define QCOW_HDR_SIZE		48
#define QCOW_XEN_MAGIC		0x58454efbu	/* "XEN\xfb" */
#define QCOW_XEN_HDR_SIZE	16
#define QCOW_XEN_SPARSE		0x1u
#define QCOW_XEN_L1_BE		0x2u	/* L1 is big-endian (else host/LE) */
#define QCOW_COMPRESSED		(1ull << 63)

#define QCOW_MIN_CLUSTER_BITS	9
#define QCOW_MAX_CLUSTER_BITS	16
#define QCOW_MIN_L2_BITS	6	/* L2 tables of 512 B ... */
#define QCOW_MAX_L2_BITS	13	/* ... to 64 KiB, as QEMU accepts */
#define QCOW_MAX_BACKING	1023

struct qcow_header {
	/* as stored */
	uint32_t version;
	uint64_t backing_off;
	uint32_t backing_len;
	uint32_t mtime;
	uint64_t size;
	unsigned int cluster_bits;
	unsigned int l2_bits;
	uint32_t crypt_method;
	uint64_t l1_off;
	/* Xen extension */
	bool xen;
	uint32_t xen_flags;
	bool l1_le;			/* old Xen image: little-endian L1 */
	/* derived */
	uint64_t cluster_size;
	uint64_t l2_entries;		/* per table */
	uint64_t l2_bytes;
	uint64_t l2_span;		/* guest bytes one L2 table maps */
	uint64_t l1_entries;
	uint64_t l1_bytes;
	uint64_t hdr_end;		/* 48, or 64 with the Xen extension */
};

static inline uint32_t qcow_be32(const void *p)
{
	const uint8_t *b = p;

	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
	       (uint32_t)b[2] << 8 | b[3];
}

static inline uint64_t qcow_be64(const void *p)
{
	return (uint64_t)qcow_be32(p) << 32 | qcow_be32((const uint8_t *)p + 4);
}

static inline void qcow_put_be32(void *p, uint32_t v)
{
	uint8_t *b = p;

	b[0] = v >> 24;
	b[1] = v >> 16;
	b[2] = v >> 8;
	b[3] = v;
}

static inline void qcow_put_be64(void *p, uint64_t v)
{
	qcow_put_be32(p, v >> 32);
	qcow_put_be32((uint8_t *)p + 4, (uint32_t)v);
}

/*
 * Parse and validate the first @len bytes of a file of @file_size bytes
 * (give at least QCOW_HDR_SIZE + QCOW_XEN_HDR_SIZE when the file has them).
 * On error returns -EINVAL (corrupt or not qcow), -ENOTSUP (encrypted,
 * other version) and writes into @why a sentence naming the field, its
 * value and the reason.
 */
int qcow_header_parse(const void *buf, size_t len, uint64_t file_size,
		      struct qcow_header *h, char *why, size_t whylen);

/* Fill a 48-byte header (+16 if h->xen) into @buf from @h's stored fields. */
void qcow_header_write(const struct qcow_header *h, void *buf);

/*
 * Fill in the derived fields from size, cluster_bits, l2_bits; -EINVAL
 * with @why if they are out of range or overflow.
 */
int qcow_header_derive(struct qcow_header *h, char *why, size_t whylen);

/*
 * A header for a new image laid out as QEMU does: backing file name right
 * after the header, L1 table at the next multiple of 8. 0 or -EINVAL.
 */
int qcow_header_init(struct qcow_header *h, uint64_t size, uint32_t backing_len,
		     unsigned int cluster_bits, unsigned int l2_bits, char *why,
		     size_t whylen);
/* Length of a fresh image: the L1 table padded to 512 bytes, as QEMU does. */
static inline uint64_t qcow_fresh_length(const struct qcow_header *h)
{
	return h->l1_off + ((h->l1_bytes + 511) & ~511ull);
}

/*
 * Where a backing file named @name in the header of the image at
 * @image_path lives: @name itself if absolute, else relative to the image's
 * directory (as QEMU resolves it). 0, or -ENAMETOOLONG.
 */
int qcow_backing_path(const char *image_path, const char *name, char *buf,
		      size_t buflen);

/*
 * The driver for an image whose first @n bytes are @buf: "qcow", "vmdk"
 * (sparse or descriptor), else "aio" (raw).
 */
const char *qcow_probe(const void *buf, size_t n);

/* L1 entries as stored (big-endian, or little-endian on old Xen images). */
uint64_t qcow_l1_decode(const struct qcow_header *h, const void *p);
void qcow_l1_encode(const struct qcow_header *h, void *p, uint64_t v);

static inline bool qcow_is_compressed(uint64_t e)
{
	return e & QCOW_COMPRESSED;
}

static inline uint64_t qcow_coff(const struct qcow_header *h, uint64_t e)
{
	return e & ((1ull << (63 - h->cluster_bits)) - 1);
}

static inline uint64_t qcow_csize(const struct qcow_header *h, uint64_t e)
{
	return (e >> (63 - h->cluster_bits)) & (h->cluster_size - 1);
}

static inline uint64_t qcow_centry(const struct qcow_header *h, uint64_t off,
				   uint64_t csize)
{
	return QCOW_COMPRESSED | csize << (63 - h->cluster_bits) | off;
}

/*
 * Check an L2 entry against a file of @file_size bytes: 0 if it is
 * unallocated or points inside the file, else -EIO with @why.
 */
int qcow_entry_check(const struct qcow_header *h, uint64_t e,
		     uint64_t file_size, char *why, size_t whylen);

/*
 * Inflate a compressed cluster (raw deflate) into @out of cluster_size
 * bytes. 0, or -EIO if the data is not exactly one cluster of deflate.
 */
int qcow_inflate(const struct qcow_header *h, const void *in, size_t inlen,
		 void *out);
/*
 * Deflate one cluster as QEMU does (4 KiB window, so QEMU can read it).
 * Returns the compressed length, or 0 if it does not get smaller than a
 * cluster; @out needs cluster_size bytes.
 */
size_t qcow_deflate(const struct qcow_header *h, const void *in, void *out);

/*
 * ---- L2 table cache: bounded, least recently used goes first ----
 * Found by offset through a hash (a lookup per request piece); only a miss
 * walks the list to pick the victim.
 */

struct qcow_l2 {
	uint64_t off;		/* file offset of the table */
	uint64_t *tab;		/* entries, host order */
	unsigned int refs;	/* pinned while > 0: never evicted */
	bool ready;		/* loaded; else the pinner that created it loads */
	bool orphan;		/* dropped from the cache, freed at the last unpin */
	uint64_t stamp;		/* last use, for LRU */
	void *waiters;		/* owner's list of users waiting for the load */
	/* for the owner; a new or reused table has them clear */
	bool dirty;		/* changed in memory since it was last written */
	bool held;		/* pinned by the owner until written back */
	bool l1_new;		/* new table: its L1 entry is not on disk yet */
	uint64_t l1i;		/* with l1_new: its L1 index */
	struct qcow_l2 *next;
	struct qcow_l2 *hnext;	/* in its hash bucket */
};

struct qcow_l2c {
	unsigned int max;	/* unpinned tables kept at most */
	unsigned int count;
	uint64_t clock;
	size_t entries;		/* per table */
	struct qcow_l2 *list;
	/* lookups by offset: buckets, or NULL to walk the list */
	struct qcow_l2 **hash;
	unsigned int hash_bits;
	uint64_t hits, misses;
};

void qcow_l2c_init(struct qcow_l2c *c, unsigned int max, size_t entries);
void qcow_l2c_destroy(struct qcow_l2c *c);
/*
 * The table at @off, pinned. *@hit tells whether it was cached (it may
 * still be loading: check ->ready); on a miss it is new and not ready and
 * the caller loads it. Past @max, the least recently used unpinned table
 * is reused; if every table is pinned the cache grows for a while and
 * shrinks back as tables are unpinned. NULL on allocation failure.
 */
struct qcow_l2 *qcow_l2c_get(struct qcow_l2c *c, uint64_t off, bool *hit);
/* Unpin. A table that never got ready (failed load) is dropped. */
void qcow_l2c_put(struct qcow_l2c *c, struct qcow_l2 *t);
/* Drop @t from the cache now (a failed load); freed at its last unpin. */
void qcow_l2c_forget(struct qcow_l2c *c, struct qcow_l2 *t);
/* The table at @off if cached and ready (not pinned), else NULL. */
struct qcow_l2 *qcow_l2c_peek(struct qcow_l2c *c, uint64_t off);

/* ---- metadata checker (qcow-check, fuzzer) ---- */

/* Read @len bytes at @off; 0 or -errno (reading past the end is an error). */
typedef int (*qcow_read_fn)(void *arg, void *buf, size_t len, uint64_t off);
/* One finding, already formatted. */
typedef void (*qcow_report_fn)(void *arg, bool corrupt, const char *msg);

struct qcow_check {
	qcow_read_fn read;
	qcow_report_fn report;
	void *arg;
	uint64_t file_size;
	/* results */
	struct qcow_header hdr;
	uint64_t errors;		/* corruptions */
	uint64_t leaks;			/* unreferenced clusters */
	uint64_t leaked_tail;		/* file offset where a leaked tail starts, or 0 */
	uint64_t l2_tables, data_clusters, compressed_clusters;
};

/*
 * Check everything: header, L1, every L2 table and entry, overlaps,
 * leaks. Returns 0 clean, 1 leaks only, 2 corrupt, or -errno on a read or
 * allocation failure.
 */
int qcow_check_run(struct qcow_check *chk);

#endif
