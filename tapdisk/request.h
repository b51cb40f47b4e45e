/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Requests as they travel through the image stack. A frontend makes one
 * request per client command; a driver that needs to send parts of it to
 * different places (allocated vs. unallocated clusters, the parent image)
 * slices it into children. The parent completes once every child has, with
 * the first error any of them reported.
 */
#ifndef TAPDISK_REQUEST_H
#define TAPDISK_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

enum td_op {
	TD_OP_READ,
	TD_OP_WRITE,
	TD_OP_FLUSH,
	TD_OP_DISCARD,
	TD_OP_WRITE_ZEROES,
};

#define TD_REQ_FUA	(1u << 0)	/* write: durable before completion */
#define TD_REQ_NO_HOLE	(1u << 1)	/* write-zeroes: keep it allocated */

struct td_req;
struct td_image;

/* @err is 0 or a negative errno. */
typedef void (*td_req_done)(struct td_req *req, int err);

struct td_req {
	enum td_op op;
	unsigned int flags;
	uint64_t off;		/* bytes, in the address space of the image */
	uint64_t len;		/* bytes */
	struct iovec *iov;	/* data of read/write, @len bytes in all */
	int niov;
	td_req_done done;
	void *arg;		/* for the owner of @done */
	void *drv_arg;		/* for the driver the request is queued on */

	/* private to request.c */
	struct td_req *parent;
	struct td_req *next;	/* on a deferred-completion list */
	unsigned int pending;
	int err;
	struct iovec iov_inline[];
};

/*
 * A new request; @iov is referenced, not copied (iov_inline[0] is spare,
 * for an owner with a single buffer). Returns NULL (errno ENOMEM) on
 * allocation failure.
 */
struct td_req *td_req_new(enum td_op op, uint64_t off, uint64_t len,
			  struct iovec *iov, int niov, td_req_done done,
			  void *arg);
void td_req_free(struct td_req *req);

/*
 * A child covering bytes [@rel_off, @rel_off + @len) of @parent, with its
 * own iovec slice of the parent's data (a parent without data gives a child
 * with one spare entry in iov_inline[]). The parent cannot complete before
 * the child does. Returns NULL on allocation failure.
 */
struct td_req *td_req_slice(struct td_req *parent, uint64_t rel_off,
			    uint64_t len);

/*
 * Finish @req with @err. A child reports to its parent and is freed; a
 * top-level request calls its done callback (which owns freeing it).
 */
void td_req_complete(struct td_req *req, int err);

/*
 * Hold/release a parent while slicing it, so that children completing
 * early do not complete it before all of them exist:
 *   td_req_hold(req); for (...) submit(td_req_slice(req, ...)); td_req_release(req, 0);
 */
void td_req_hold(struct td_req *req);
void td_req_release(struct td_req *req, int err);

/* Copy helpers between a request's iovec and a flat buffer. */
void td_iov_zero(const struct iovec *iov, int niov, uint64_t off, uint64_t len);
void td_iov_to_buf(const struct iovec *iov, int niov, uint64_t off, void *buf,
		   uint64_t len);
void td_iov_from_buf(const struct iovec *iov, int niov, uint64_t off,
		     const void *buf, uint64_t len);

/* Is every buffer address and length a multiple of @align? */
bool td_iov_aligned(const struct iovec *iov, int niov, size_t align);

#endif
