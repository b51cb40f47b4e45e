/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the files of the vmdk driver share: vmdk-open.c (descriptor,
 * extents and metadata at open; backing chains), vmdk.c (reads, flush, the
 * driver table), vmdk-write.c (writes and grain allocation) and vmdk-gt.c
 * (the grain-table cache).
 */
#ifndef TAPDISK_DRIVERS_VMDK_H
#define TAPDISK_DRIVERS_VMDK_H

#include <stdbool.h>
#include <stdint.h>

#include "aio.h"
#include "image.h"
#include "vmdk-format.h"

struct vmdk_alloc;
struct vmdk_extent;
struct vmdk_run;

/* One grain table in memory (see vmdk-gt.c). */
struct vmdk_gt {
	uint32_t *ent;			/* gtes_per_gt entries, host order */
	uint32_t idx;			/* its grain directory entry */
	uint64_t used;			/* LRU clock */
	unsigned int pins;		/* requests and allocations using it */
	bool loading;
	int err;			/* the load failed: requests fail with it */
	struct vmdk_gt *next;		/* on the extent's resident list */
	struct vmdk_run *waiters;	/* requests waiting for the load */
	struct vmdk_extent *ext;
	uint8_t *raw;
	struct td_iocb io;
};

struct vmdk_extent {
	enum vmdk_ext_type type;
	bool writable;
	bool noaccess;
	char *path;
	char *label;			/* "image: extent file", for messages */
	int fd;
	uint64_t start, len;		/* bytes of the virtual disk */
	uint64_t flat_off;		/* FLAT: bytes into the file */

	/* SPARSE */
	struct vmdk_header hdr;
	uint64_t grain;			/* bytes */
	uint32_t gt_bytes;		/* one table, rounded up to sectors */
	uint32_t *gd, *rgd;		/* sectors; rgd NULL if there is none */
	struct vmdk_gt **gt;		/* per GD entry: the table if in memory */
	struct vmdk_gt *resident;
	unsigned int n_resident, max_resident;
	uint64_t clock;
	uint64_t eof;			/* bytes the file holds */
	uint64_t alloc;			/* where the next grain goes */
	bool compressed, markers, zero_grain;
	struct vmdk_alloc *allocs;	/* grain allocations in flight */

	/*
	 * The fdatasync between writing data and writing the table that
	 * points to it: allocations join sync_wait and the next barrier
	 * covers them all (one in flight at a time).
	 */
	struct vmdk_alloc *sync_wait, *sync_batch;
	bool sync_busy;
	struct td_iocb sync_io;
	struct td_image *sync_img;

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

	/*
	 * The first write gives the image a new CID, as VMware and qemu do,
	 * so that delta links made on it can tell it changed.
	 */
	int desc_fd;			/* -1: nothing to rewrite */
	uint64_t cid_pos;		/* file offset of the CID's hex digits */
	unsigned int cid_digits;	/* how many there are (1 to 8) */
	bool cid_written;
};

extern const struct td_driver td_driver_vmdk;

/* vmdk-open.c */
int vmdk_open(struct td_image *img, const char *path, unsigned int flags);
void vmdk_close(struct td_image *img);
int vmdk_get_parent(struct td_image *img, char *buf, size_t buflen);
int vmdk_validate_parent(struct td_image *img, struct td_image *parent);
void vmdk_new_cid(struct td_image *img);

/* vmdk.c */
enum run_kind { RUN_PARENT, RUN_ZERO, RUN_DATA, RUN_COMPRESSED };

static inline uint32_t gte_get(const struct vmdk_extent *e, uint64_t g)
{
	uint64_t t = g / e->hdr.gtes_per_gt;

	/* Callers hold the table pinned (vmdk_extent_run), so NULL means unallocated. */
	if (t >= e->hdr.gd_entries || !e->gt[t])
		return 0;
	return e->gt[t]->ent[g % e->hdr.gtes_per_gt];
}

static inline enum run_kind gte_kind(const struct vmdk_extent *e, uint32_t gte)
{
	if (!gte)
		return RUN_PARENT;
	if (gte == 1 && e->zero_grain)
		return RUN_ZERO;
	return e->compressed ? RUN_COMPRESSED : RUN_DATA;
}

typedef void (*vmdk_extent_fn)(struct td_image *img, struct vmdk_extent *e,
			       struct td_req *req, uint64_t a, uint64_t b,
			       int *err);

void vmdk_io_file(struct td_image *img, struct vmdk_extent *e,
		  struct td_req *req, enum td_aio_op op, uint64_t off);
struct td_req *vmdk_piece(struct td_req *req, uint64_t a, uint64_t b);
uint64_t vmdk_sparse_run(const struct vmdk_extent *e, uint64_t a, uint64_t b,
			 enum run_kind *kind, uint64_t *host);
void vmdk_for_extents(struct td_image *img, struct td_req *req,
		      vmdk_extent_fn fn);

/* vmdk-gt.c */
#ifndef VMDK_GT_CACHE	/* a tiny cache (-DVMDK_GT_CACHE=2) stresses the loading paths */
#define VMDK_GT_CACHE	1024		/* tables in memory per extent (2 MiB) */
#endif

int vmdk_gt_check(const struct vmdk_extent *e, const struct vmdk_gt *gt);
struct vmdk_gt *vmdk_gt_insert(struct vmdk_extent *e, uint32_t idx,
			       uint32_t *ent);
void vmdk_gt_free_all(struct vmdk_extent *e);
void vmdk_gt_unpin(struct vmdk_extent *e, struct vmdk_gt *gt);
/* Keep at most @tables tables in memory (1 or more); evicts now if needed. */
void vmdk_gt_set_limit(struct vmdk_extent *e, unsigned int tables);
void vmdk_extent_run(struct td_image *img, struct vmdk_extent *e,
		     struct td_req *req, vmdk_extent_fn fn);

/* vmdk-write.c */
void vmdk_queue_write(struct td_image *img, struct td_req *req);
void vmdk_write_zeroes(struct td_image *img, struct td_req *req);

#endif
