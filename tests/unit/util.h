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
