/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A cache of page-aligned data buffers in power-of-two size classes, so the
 * hot path does not pay for mmap/munmap and page faults on every request
 * (glibc serves large allocations with fresh mappings). Not thread-safe: one
 * pool per loop.
 */
#ifndef TAPDISK_BUFPOOL_H
#define TAPDISK_BUFPOOL_H

#include <stddef.h>

#define TD_BUFPOOL_MIN_SHIFT	12	/* 4 KiB */
#define TD_BUFPOOL_MAX_SHIFT	25	/* 32 MiB; larger buffers are not cached */
#define TD_BUFPOOL_CLASSES	(TD_BUFPOOL_MAX_SHIFT - TD_BUFPOOL_MIN_SHIFT + 1)

struct td_bufpool {
	void *free[TD_BUFPOOL_CLASSES];	/* singly linked through the buffers */
	size_t cached;			/* bytes on the free lists */
	size_t max_cached;
};

void td_bufpool_init(struct td_bufpool *pool, size_t max_cached);
/* Free every cached buffer. */
void td_bufpool_drain(struct td_bufpool *pool);

/* A 4096-aligned buffer of at least @len bytes, or NULL. A NULL @pool
 * allocates and frees without caching. */
void *td_bufpool_get(struct td_bufpool *pool, size_t len);
/* Give back a buffer from td_bufpool_get() with the same @len. */
void td_bufpool_put(struct td_bufpool *pool, void *buf, size_t len);

#endif
