/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * VMDK on-disk formats, without any I/O: the text descriptor, the sparse
 * extent header (KDMV), stream-optimized grain markers and compressed
 * grains, and the magic probe used to pick a parent's driver. Everything
 * here works on buffers the caller read, so it can be unit- and fuzz-tested
 * on its own; the driver (drivers/vmdk.c) does the reading and writing.
 *
 * Errors are reported as -EINVAL with a sentence in @why saying what is
 * wrong (the caller prefixes it with the file name).
 */
#ifndef TAPDISK_VMDK_FORMAT_H
#define TAPDISK_VMDK_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMDK_SECTOR		512u
#define VMDK_MAGIC		0x564d444bu	/* "KDMV" as a little-endian u32 */
#define VMDK_HEADER_SIZE	512u

/* Sparse header flags. */
#define VMDK_FLAG_NL_TEST	(1u << 0)	/* the newline characters are valid */
#define VMDK_FLAG_RGD		(1u << 1)	/* redundant grain directory present */
#define VMDK_FLAG_ZERO_GRAIN	(1u << 2)	/* GT entry 1 means "all zeros" */
#define VMDK_FLAG_COMPRESSED	(1u << 16)
#define VMDK_FLAG_MARKERS	(1u << 17)

#define VMDK_GD_AT_END		UINT64_MAX	/* stream-optimized: see the footer */
#define VMDK_COMPRESS_NONE	0
#define VMDK_COMPRESS_DEFLATE	1

/* Limits we accept: anything larger is treated as corruption. */
#define VMDK_MAX_GRAIN_SECTORS	4096u		/* 2 MiB grains (VMware uses 64 KiB) */
#define VMDK_MAX_GTES_PER_GT	512u		/* what every writer uses */
#define VMDK_MAX_CAPACITY	(1ull << 41)	/* sectors: 1 PiB */
#define VMDK_MAX_DESC_SIZE	(1u << 20)	/* bytes of descriptor text */
#define VMDK_MAX_EXTENTS	1024u

/* Stream-optimized markers: a marker with size 0 is metadata of @type. */
#define VMDK_MARKER_EOS		0
#define VMDK_MARKER_GT		1
#define VMDK_MARKER_GD		2
#define VMDK_MARKER_FOOTER	3
#define VMDK_MARKER_HDR		12u		/* lba (8) + size (4) */

/* The sparse extent header, host byte order. Offsets are in sectors. */
struct vmdk_header {
	uint32_t version;
	uint32_t flags;
	uint64_t capacity;		/* sectors of data in this extent */
	uint64_t grain_sectors;
	uint64_t desc_offset;
	uint64_t desc_size;
	uint32_t gtes_per_gt;
	uint64_t rgd_offset;
	uint64_t gd_offset;
	uint64_t overhead;
	uint8_t unclean;
	uint16_t compress;

	/* derived */
	uint32_t gd_entries;		/* grain tables the capacity needs */
};

/*
 * Parse and check a 512-byte sparse header from a file of @file_size
 * bytes: magic, version, grain size, table sizes, and that the descriptor,
 * GD and redundant GD lie inside the file. A header whose GD is at the end
 * (VMDK_GD_AT_END) passes; the caller reads the footer and parses it too.
 */
int vmdk_header_parse(const void *buf, size_t len, uint64_t file_size,
		      struct vmdk_header *h, char *why, size_t whylen);

/* Encode @h into 512 bytes (for tests and tools). */
void vmdk_header_encode(const struct vmdk_header *h, void *buf);

enum vmdk_access { VMDK_ACCESS_RW, VMDK_ACCESS_RDONLY, VMDK_ACCESS_NONE };
enum vmdk_ext_type { VMDK_EXT_SPARSE, VMDK_EXT_FLAT, VMDK_EXT_ZERO };

struct vmdk_desc_extent {
	enum vmdk_access access;
	enum vmdk_ext_type type;
	uint64_t sectors;
	uint64_t offset;	/* FLAT: sectors into the file */
	char *file;		/* as written, relative to the descriptor; NULL for ZERO */
};

struct vmdk_desc {
	char *create_type;
	uint32_t cid;
	uint32_t parent_cid;		/* 0xffffffff: none */
	char *parent_hint;		/* parentFileNameHint, NULL if absent */
	struct vmdk_desc_extent *ext;
	unsigned int n_ext;
	uint64_t sectors;		/* sum of the extents */
};

#define VMDK_CID_NONE	0xffffffffu

/*
 * Parse descriptor text (@len bytes; it may be NUL-padded, as the one
 * embedded in a sparse extent is). On success @d owns allocated strings:
 * free them with vmdk_desc_free() (also safe after a failure).
 */
int vmdk_desc_parse(const char *text, size_t len, struct vmdk_desc *d,
		    char *why, size_t whylen);
void vmdk_desc_free(struct vmdk_desc *d);

/*
 * Where in @text the CID value is and how many hex digits it has (1 to 8:
 * qemu-img writes "CID=%x", VMware "CID=%08x"), so that a new CID of the
 * same width can be written over it in place; -1 if there is no such line.
 */
long vmdk_desc_cid_pos(const char *text, size_t len, unsigned int *ndigits);

/* What a file starting with @buf is, for picking a parent's driver. */
enum vmdk_probe { VMDK_PROBE_RAW, VMDK_PROBE_VMDK, VMDK_PROBE_QCOW };
enum vmdk_probe vmdk_probe(const void *buf, size_t len);

/* Does @buf start with a text descriptor ("# Disk DescriptorFile")? */
bool vmdk_is_descriptor(const void *buf, size_t len);

struct vmdk_marker {
	uint64_t lba;
	uint32_t size;		/* bytes of compressed data that follow, 0: metadata */
	uint32_t type;		/* VMDK_MARKER_*, when size is 0 */
};

/* Parse the marker at the start of @buf (at least VMDK_MARKER_HDR bytes). */
int vmdk_marker_parse(const void *buf, size_t len, struct vmdk_marker *m);

/*
 * Inflate one compressed grain (zlib or raw deflate stream in @src) into
 * @dst; the rest of @dst after what the stream holds is zeroed. -EINVAL if
 * the stream is corrupt, truncated, or inflates to more than @dstlen.
 */
int vmdk_grain_inflate(const void *src, size_t srclen, void *dst,
		       size_t dstlen, char *why, size_t whylen);

/* Little-endian helpers shared with the driver. */
static inline uint32_t vmdk_le32(const void *p)
{
	const uint8_t *b = p;

	return b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	       (uint32_t)b[3] << 24;
}

static inline uint64_t vmdk_le64(const void *p)
{
	return vmdk_le32(p) | (uint64_t)vmdk_le32((const uint8_t *)p + 4) << 32;
}

static inline void vmdk_put_le32(void *p, uint32_t v)
{
	uint8_t *b = p;

	b[0] = v;
	b[1] = v >> 8;
	b[2] = v >> 16;
	b[3] = v >> 24;
}

static inline void vmdk_put_le64(void *p, uint64_t v)
{
	vmdk_put_le32(p, (uint32_t)v);
	vmdk_put_le32((uint8_t *)p + 4, (uint32_t)(v >> 32));
}

#endif
