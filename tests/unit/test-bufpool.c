// SPDX-License-Identifier: LGPL-2.1-or-later
/* Unit tests for tapdisk/bufpool.c. */
#include <stdint.h>

#include "bufpool.h"
#include "util.h"

static void test_reuse_by_class(void **state)
{
	struct td_bufpool pool;
	void *a, *b, *c;

	(void)state;
	td_bufpool_init(&pool, 1 << 20);
	a = td_bufpool_get(&pool, 100000);	/* class 128 KiB */
	assert_non_null(a);
	assert_int_equal((uintptr_t)a % 4096, 0);
	memset(a, 1, 131072);			/* the whole class is usable */
	td_bufpool_put(&pool, a, 100000);
	assert_int_equal(pool.cached, 131072);
	b = td_bufpool_get(&pool, 131072);	/* same class: the same buffer */
	assert_ptr_equal(a, b);
	assert_int_equal(pool.cached, 0);
	c = td_bufpool_get(&pool, 131073);	/* next class: a new one */
	assert_ptr_not_equal(c, b);
	td_bufpool_put(&pool, b, 131072);
	td_bufpool_put(&pool, c, 131073);
	assert_int_equal(pool.cached, 131072 + 262144);
	td_bufpool_drain(&pool);
	assert_int_equal(pool.cached, 0);
}

static void test_cap_and_large(void **state)
{
	struct td_bufpool pool;
	void *bufs[8], *big;

	(void)state;
	td_bufpool_init(&pool, 3 * 4096);
	for (int i = 0; i < 8; i++)
		bufs[i] = td_bufpool_get(&pool, 1);
	for (int i = 0; i < 8; i++)
		td_bufpool_put(&pool, bufs[i], 1);
	assert_int_equal(pool.cached, 3 * 4096);	/* the rest was freed */
	big = td_bufpool_get(&pool, (32u << 20) + 1);	/* beyond the classes */
	assert_non_null(big);
	td_bufpool_put(&pool, big, (32u << 20) + 1);
	assert_int_equal(pool.cached, 3 * 4096);
	td_bufpool_put(&pool, NULL, 4096);
	td_bufpool_drain(&pool);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reuse_by_class),
		cmocka_unit_test(test_cap_and_large),
	};

	return cmocka_run_group_tests_name("bufpool", tests, NULL, NULL);
}
