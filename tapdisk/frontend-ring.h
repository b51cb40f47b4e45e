/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel ring frontend: serves /dev/tapdevN of blktap.ko by attaching
 * to its ring device /dev/blktapN, in the tapdisk loop. Request data stays
 * in the mapped ring window; the image stack reads and writes it in place.
 */
#ifndef TAPDISK_FRONTEND_RING_H
#define TAPDISK_FRONTEND_RING_H

#include <stdbool.h>

#include "image.h"

struct td_ring_frontend;

struct td_ring_opts {
	const char *path;	/* "/dev/blktapN" */
	bool readonly;		/* create the block device read-only */
};

/*
 * Attach to the ring and create /dev/tapdevN with the image's size, or,
 * when it exists already (a tapdisk before us died), check the size and
 * take over its queued requests. NULL (after logging why) on failure.
 */
struct td_ring_frontend *td_ring_frontend_create(struct td_ctx *ctx,
						 struct td_image *img,
						 const struct td_ring_opts *opts);

/* Stop taking requests; those unread stay queued for the next tapdisk. */
void td_ring_frontend_quiesce(struct td_ring_frontend *rf);
/* Take requests again after td_ring_frontend_quiesce() (a pause). */
void td_ring_frontend_resume(struct td_ring_frontend *rf);

/* Requests taken from the ring and not yet answered. */
unsigned int td_ring_frontend_inflight(const struct td_ring_frontend *rf);

/*
 * Detach. @remove_device: remove /dev/tapdevN (clean shutdown); otherwise
 * the disk stays and waits for the next tapdisk. Call it once
 * td_ring_frontend_inflight() is 0 and the loop has turned once more
 * (answers go to the kernel from a deferred call, which must have run).
 */
void td_ring_frontend_destroy(struct td_ring_frontend *rf, bool remove_device);

#endif
