// SPDX-License-Identifier: LGPL-2.1-or-later
/* Unit tests for tapdisk/request.c: slicing, completion counting, iovecs. */
#include <errno.h>

#include "request.h"
#include "util.h"

static int done_calls, done_err;

static void top_done(struct td_req *req, int err)
{
	done_calls++;
	done_err = err;
	td_req_free(req);
}

static void test_slice_iov(void **state)
{
	static char a[100], b[300], c[50];
	struct iovec iov[3] = { { a, 100 }, { b, 300 }, { c, 50 } };
	struct td_req *req, *s;

	(void)state;
	req = td_req_new(TD_OP_READ, 1000, 450, iov, 3, top_done, NULL);
	assert_non_null(req);
	td_req_hold(req);
	/* Crosses from the first buffer into the second. */
	s = td_req_slice(req, 60, 100);
	assert_non_null(s);
	assert_int_equal(s->off, 1060);
	assert_int_equal(s->len, 100);
	assert_int_equal(s->niov, 2);
	assert_ptr_equal(s->iov[0].iov_base, a + 60);
	assert_int_equal(s->iov[0].iov_len, 40);
	assert_ptr_equal(s->iov[1].iov_base, b);
	assert_int_equal(s->iov[1].iov_len, 60);
	td_req_complete(s, 0);
	/* Exactly the last buffer. */
	s = td_req_slice(req, 400, 50);
	assert_int_equal(s->niov, 1);
	assert_ptr_equal(s->iov[0].iov_base, c);
	td_req_complete(s, 0);
	/* Out of range. */
	assert_null(td_req_slice(req, 400, 51));
	assert_int_equal(done_calls, 0);
	td_req_release(req, 0);
	assert_int_equal(done_calls, 1);
}

static void test_first_error_wins(void **state)
{
	static char buf[4096];
	struct iovec iov = { buf, 4096 };
	struct td_req *req, *s[4];

	(void)state;
	done_calls = 0;
	req = td_req_new(TD_OP_WRITE, 0, 4096, &iov, 1, top_done, NULL);
	td_req_hold(req);
	for (int i = 0; i < 4; i++)
		s[i] = td_req_slice(req, i * 1024, 1024);
	td_req_complete(s[2], 0);
	td_req_complete(s[0], -EIO);
	td_req_complete(s[3], -ENOSPC);
	assert_int_equal(done_calls, 0);
	td_req_release(req, 0);
	assert_int_equal(done_calls, 0);	/* s[1] still pending */
	td_req_complete(s[1], 0);
	assert_int_equal(done_calls, 1);
	assert_int_equal(done_err, -EIO);
}

/* Children of children: completion propagates up through each level. */
static void test_nested(void **state)
{
	static char buf[8192];
	struct iovec iov = { buf, 8192 };
	struct td_req *req, *mid, *leaf1, *leaf2;

	(void)state;
	done_calls = 0;
	req = td_req_new(TD_OP_READ, 0, 8192, &iov, 1, top_done, NULL);
	mid = td_req_slice(req, 4096, 4096);
	leaf1 = td_req_slice(mid, 0, 512);
	leaf2 = td_req_slice(mid, 512, 3584);
	assert_int_equal(leaf2->off, 4096 + 512);
	assert_ptr_equal(leaf2->iov[0].iov_base, buf + 4096 + 512);
	td_req_complete(leaf1, 0);
	td_req_complete(leaf2, 0);
	/* mid had no hold: its last child completes it, and so req. */
	assert_int_equal(done_calls, 1);
	assert_int_equal(done_err, 0);
}

static void test_slice_without_data(void **state)
{
	struct td_req *req, *s;

	(void)state;
	done_calls = 0;
	req = td_req_new(TD_OP_WRITE_ZEROES, 0, 1 << 20, NULL, 0, top_done, NULL);
	s = td_req_slice(req, 4096, 4096);
	assert_null(s->iov);
	/* One spare inline iovec for callers that bring their own buffer. */
	s->iov_inline[0].iov_len = 1;
	td_req_complete(s, 0);
	assert_int_equal(done_calls, 1);
}

static void test_iov_copy_helpers(void **state)
{
	static char a[10], b[20], flat[30], out[30];
	struct iovec iov[2] = { { a, 10 }, { b, 20 } };

	(void)state;
	for (int i = 0; i < 30; i++)
		flat[i] = (char)(i + 1);
	td_iov_from_buf(iov, 2, 5, flat, 20);
	assert_int_equal(a[5], 1);
	assert_int_equal(a[9], 5);
	assert_int_equal(b[0], 6);
	assert_int_equal(b[14], 20);
	assert_int_equal(b[15], 0);
	td_iov_to_buf(iov, 2, 5, out, 20);
	assert_memory_equal(out, flat, 20);
	td_iov_zero(iov, 2, 8, 4);
	assert_int_equal(a[7], 3);
	assert_int_equal(a[8], 0);
	assert_int_equal(b[1], 0);
	assert_int_equal(b[2], 8);
}

static void test_iov_aligned(void **state)
{
	static char buf[8192] __attribute__((aligned(4096)));
	struct iovec ok[2] = { { buf, 512 }, { buf + 1024, 1024 } };
	struct iovec bad_len[1] = { { buf, 100 } };
	struct iovec bad_addr[1] = { { buf + 1, 512 } };

	(void)state;
	assert_true(td_iov_aligned(ok, 2, 512));
	assert_false(td_iov_aligned(ok, 2, 1024));
	assert_false(td_iov_aligned(bad_len, 1, 512));
	assert_false(td_iov_aligned(bad_addr, 1, 512));
	assert_true(td_iov_aligned(bad_addr, 1, 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_slice_iov),
		cmocka_unit_test(test_first_error_wins),
		cmocka_unit_test(test_nested),
		cmocka_unit_test(test_slice_without_data),
		cmocka_unit_test(test_iov_copy_helpers),
		cmocka_unit_test(test_iov_aligned),
	};

	return cmocka_run_group_tests_name("request", tests, NULL, NULL);
}
