// SPDX-License-Identifier: LGPL-2.1-or-later
/* Page-aligned buffer cache in power-of-two classes (see bufpool.h). */
#include <stdlib.h>

#include "bufpool.h"

void td_bufpool_init(struct td_bufpool *pool, size_t max_cached)
{
	for (int i = 0; i < TD_BUFPOOL_CLASSES; i++)
		pool->free[i] = NULL;
	pool->cached = 0;
	pool->max_cached = max_cached;
}

/* The class of @len, or -1 if it is too large to cache. */
static int class_of(size_t len)
{
	int shift = TD_BUFPOOL_MIN_SHIFT;

	while (((size_t)1 << shift) < len) {
		if (++shift > TD_BUFPOOL_MAX_SHIFT)
			return -1;
	}
	return shift - TD_BUFPOOL_MIN_SHIFT;
}

static size_t class_size(int c)
{
	return (size_t)1 << (c + TD_BUFPOOL_MIN_SHIFT);
}

void *td_bufpool_get(struct td_bufpool *pool, size_t len)
{
	int c = class_of(len);
	void *buf;

	if (pool && c >= 0 && pool->free[c]) {
		buf = pool->free[c];
		pool->free[c] = *(void **)buf;
		pool->cached -= class_size(c);
		return buf;
	}
	if (posix_memalign(&buf, 4096, c >= 0 ? class_size(c) : len))
		return NULL;
	return buf;
}

void td_bufpool_put(struct td_bufpool *pool, void *buf, size_t len)
{
	int c = class_of(len);

	if (!buf)
		return;
	if (!pool || c < 0 || pool->cached + class_size(c) > pool->max_cached) {
		free(buf);
		return;
	}
	*(void **)buf = pool->free[c];
	pool->free[c] = buf;
	pool->cached += class_size(c);
}

void td_bufpool_drain(struct td_bufpool *pool)
{
	for (int c = 0; c < TD_BUFPOOL_CLASSES; c++) {
		while (pool->free[c]) {
			void *buf = pool->free[c];

			pool->free[c] = *(void **)buf;
			free(buf);
		}
	}
	pool->cached = 0;
}
