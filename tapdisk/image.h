/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Images and the driver interface. An image is one file (or device) opened
 * by one driver; images stack: an overlay's unallocated ranges are read from
 * its parent. Frontends only call td_image_submit() on the top of a stack.
 */
#ifndef TAPDISK_IMAGE_H
#define TAPDISK_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aio.h"
#include "loop.h"
#include "request.h"

/* td_image.features: what the stack can do natively. */
#define TD_FEAT_FLUSH		(1u << 0)
#define TD_FEAT_FUA		(1u << 1)	/* driver honours TD_REQ_FUA itself */
#define TD_FEAT_DISCARD		(1u << 2)
#define TD_FEAT_WRITE_ZEROES	(1u << 3)	/* efficient, no data transfer */

/* Flags for td_image_open(). */
#define TD_OPEN_RDONLY		(1u << 0)
#define TD_OPEN_BUFFERED	(1u << 1)	/* no O_DIRECT */

struct td_image;

/* Options for drivers that need more than a path (from the command line). */
struct td_opts {
	uint64_t ram_limit;	/* ram: largest image held in memory */
	uint64_t ram_size;	/* ram: size of an empty image with no file */
};

/* Where an image does its I/O: one per tapdisk I/O context. */
struct td_ctx {
	struct td_loop *loop;
	struct td_aio *aio;
	const struct td_opts *opts;
	/* private to image.c: completions deferred to the next loop turn */
	struct td_deferred done_defer;
	struct td_req *done_head, **done_tail;
};

/* Set up @ctx around an existing loop and aio context. */
void td_ctx_init(struct td_ctx *ctx, struct td_loop *loop, struct td_aio *aio);

struct td_driver {
	const char *name;
	size_t priv_size;		/* zeroed block at td_image.priv */

	/*
	 * Open @path; fill img->size, img->align (and optionally
	 * img->sector_size, img->features). Return 0 or -errno after logging
	 * what failed and why.
	 */
	int (*open)(struct td_image *img, const char *path, unsigned int flags);
	void (*close)(struct td_image *img);

	/*
	 * Queue I/O; complete each request exactly once with
	 * td_req_complete(), never from inside the queue call's own stack if
	 * that could recurse without bound (defer instead).
	 */
	void (*queue_read)(struct td_image *img, struct td_req *req);
	void (*queue_write)(struct td_image *img, struct td_req *req);
	void (*flush)(struct td_image *img, struct td_req *req);
	void (*discard)(struct td_image *img, struct td_req *req);	   /* optional */
	void (*write_zeroes)(struct td_image *img, struct td_req *req); /* optional */

	/*
	 * Backing chains (optional). get_parent: write the parent's
	 * "type:path" (path resolved) into @buf; return 1 if there is a
	 * parent, 0 if none, -errno on error. validate_parent: check the
	 * opened parent fits (e.g. size); 0 or -errno.
	 */
	int (*get_parent)(struct td_image *img, char *buf, size_t buflen);
	int (*validate_parent)(struct td_image *img, struct td_image *parent);
};

struct td_image {
	const struct td_driver *drv;
	void *priv;
	char *path;
	char *name;			/* "type:path", for messages */
	struct td_ctx *ctx;
	struct td_image *parent;	/* NULL at the bottom of the chain */
	unsigned int open_flags;

	/* set by the driver's open */
	uint64_t size;			/* bytes */
	unsigned int sector_size;	/* logical block size advertised */
	unsigned int align;		/* required offset/len/buffer alignment */
	unsigned int features;

	/* stats */
	uint64_t reqs, bytes_read, bytes_written, errors;

	/* private to image.c: unaligned writes, one read-modify-write at a time */
	bool rmw_busy;
	struct td_req *rmw_head, **rmw_tail;
};

/* Look up a driver by name ("aio", "sync", "ram", ...); NULL if unknown. */
const struct td_driver *td_driver_find(const char *name);
/* Space-separated list of driver names, for help and error messages. */
const char *td_driver_names(void);

/*
 * Open "type:path" and its whole backing chain (a loop in the chain is
 * refused). Writes go only to the top; parents are opened read-only.
 */
int td_image_open(struct td_ctx *ctx, const char *spec, unsigned int flags,
		  struct td_image **out);
/* Open one image with a given driver, no chain. */
int td_image_open_one(struct td_ctx *ctx, const struct td_driver *drv,
		      const char *path, unsigned int flags,
		      struct td_image **out);
void td_image_close(struct td_image *img);	/* closes the chain below */

/*
 * Submit a request to the top of a stack. Checks the range against the
 * size and read-only mode, bounces buffers that do not meet the driver's
 * alignment, emulates FUA with a flush and write-zeroes with writes where
 * the driver cannot do them. Completion always goes through req->done.
 */
void td_image_submit(struct td_image *img, struct td_req *req);

/*
 * For drivers: read @req (relative to @img) from the parent of @img, or
 * zeros where there is no parent or past the parent's end.
 */
void td_image_read_parent(struct td_image *img, struct td_req *req);

/* For drivers: write-zeroes done as ordinary writes of a zero buffer. */
void td_image_zero_by_writes(struct td_image *img, struct td_req *req);

/* Complete @req with @err on the next loop turn (never recursively). */
void td_image_complete_later(struct td_image *img, struct td_req *req,
			     int err);

#endif
