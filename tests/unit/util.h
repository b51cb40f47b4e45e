/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small helpers shared by the cmocka unit tests. */
#ifndef TESTS_UNIT_UTIL_H
#define TESTS_UNIT_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "image.h"
#include "loop.h"

/* Run @loop until *@flag becomes true; fail the test after ~10 s. */
static inline void run_until(struct td_loop *loop, const volatile bool *flag)
{
	for (int i = 0; i < 10000 && !*flag; i++)
		assert_true(td_loop_run_once(loop, 1) >= 0);
	assert_true(*flag);
}

/* Run @loop until *@count reaches @want. */
static inline void run_until_count(struct td_loop *loop,
				   const volatile int *count, int want)
{
	for (int i = 0; i < 10000 && *count < want; i++)
		assert_true(td_loop_run_once(loop, 1) >= 0);
	assert_int_equal(*count, want);
}

/* The outcome of a request whose done callback is req_done(). */
struct result {
	bool done;
	int err;
};

static inline void req_done(struct td_req *req, int err)
{
	struct result *r = req->arg;

	r->done = true;
	r->err = err;
	td_req_free(req);
}

/*
 * Submit one request to @img (data in @buf, if any) and run @loop until it
 * completes; returns its error. With @deferred, also check that it did not
 * complete inside td_image_submit() itself (what the image layer promises;
 * drivers may complete at once where that cannot recurse).
 */
static inline int image_io_ex(struct td_loop *loop, struct td_image *img,
			      enum td_op op, uint64_t off, uint64_t len,
			      void *buf, unsigned int flags, bool deferred)
{
	struct result r = { 0 };
	struct td_req *req = td_req_new(op, off, len, NULL, 0, req_done, &r);

	assert_non_null(req);
	if (buf) {
		req->iov = req->iov_inline;
		req->niov = 1;
		req->iov_inline[0].iov_base = buf;
		req->iov_inline[0].iov_len = len;
	}
	req->flags = flags;
	td_image_submit(img, req);
	if (deferred)
		assert_false(r.done);
	run_until(loop, &r.done);
	return r.err;
}

static inline int image_io(struct td_loop *loop, struct td_image *img,
			   enum td_op op, uint64_t off, uint64_t len, void *buf,
			   unsigned int flags)
{
	return image_io_ex(loop, img, op, off, len, buf, flags, false);
}

/* A temporary file on a real filesystem (O_DIRECT works), @size bytes. */
static inline char *tmpfile_sized(uint64_t size)
{
	char *path = strdup("/var/tmp/blktap-unit.XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, size), 0);
	close(fd);
	return path;
}

/* Fill @buf with a pattern that depends on @seed and the byte offset. */
static inline void fill_pattern(void *buf, size_t len, uint64_t off,
				unsigned int seed)
{
	unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)((off + i) * 31 + seed + ((off + i) >> 9));
}

static inline bool check_pattern(const void *buf, size_t len, uint64_t off,
				 unsigned int seed)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i] != (unsigned char)((off + i) * 31 + seed + ((off + i) >> 9)))
			return false;
	return true;
}

#endif
