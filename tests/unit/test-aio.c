// SPDX-License-Identifier: LGPL-2.1-or-later
/* Unit tests for tapdisk/aio.c: batching, depth limits, short transfers. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>

#include "aio.h"
#include "util.h"

struct io_test {
	struct td_iocb io;
	long res;
	int *done;
};

static void io_done(struct td_iocb *io, long res)
{
	struct io_test *t = (struct io_test *)io;

	t->res = res;
	(*t->done)++;
}

/* Many reads queued in one turn go to the kernel in one io_submit(). */
static void test_batching(void **state)
{
	struct td_loop *loop = td_loop_create();
	struct td_aio *aio = td_aio_create(loop, 64);
	char *path = tmpfile_sized(1 << 20);
	struct io_test t[16];
	struct td_aio_stats st;
	static char buf[16][4096];
	int fd = open(path, O_RDWR), done = 0;

	(void)state;
	assert_non_null(aio);
	for (int i = 0; i < 16; i++) {
		fill_pattern(buf[i], 4096, i * 4096, 1);
		assert_int_equal(pwrite(fd, buf[i], 4096, i * 4096), 4096);
		memset(buf[i], 0, 4096);
		t[i].done = &done;
		td_iocb_prep_buf(&t[i].io, TD_AIO_READ, fd, buf[i], 4096,
				 i * 4096, 0, io_done, NULL);
		td_aio_queue(aio, &t[i].io);
	}
	assert_int_equal(td_aio_inflight(aio), 16);
	run_until_count(loop, &done, 16);
	td_aio_get_stats(aio, &st);
	assert_int_equal(st.submit_calls, 1);
	assert_int_equal(st.submitted, 16);
	for (int i = 0; i < 16; i++) {
		assert_int_equal(t[i].res, 4096);
		assert_true(check_pattern(buf[i], 4096, i * 4096, 1));
	}
	assert_int_equal(td_aio_inflight(aio), 0);
	close(fd);
	unlink(path);
	free(path);
	td_aio_destroy(aio);
	td_loop_destroy(loop);
}

/* More I/O than the context depth: queued, submitted as slots free up. */
static void test_depth_limit(void **state)
{
	struct td_loop *loop = td_loop_create();
	struct td_aio *aio = td_aio_create(loop, 4);
	char *path = tmpfile_sized(1 << 20);
	struct io_test t[40];
	struct td_aio_stats st;
	static char buf[40][512];
	int fd = open(path, O_RDWR), done = 0;

	(void)state;
	for (int i = 0; i < 40; i++) {
		fill_pattern(buf[i], 512, i * 512, 7);
		t[i].done = &done;
		td_iocb_prep_buf(&t[i].io, TD_AIO_WRITE, fd, buf[i], 512,
				 i * 512, 0, io_done, NULL);
		td_aio_queue(aio, &t[i].io);
	}
	run_until_count(loop, &done, 40);
	td_aio_get_stats(aio, &st);
	assert_true(st.submit_calls >= 10);
	assert_int_equal(st.submitted, 40);
	for (int i = 0; i < 40; i++) {
		char chk[512];

		assert_int_equal(t[i].res, 512);
		assert_int_equal(pread(fd, chk, 512, i * 512), 512);
		assert_true(check_pattern(chk, 512, i * 512, 7));
	}
	close(fd);
	unlink(path);
	free(path);
	td_aio_destroy(aio);
	td_loop_destroy(loop);
}

/* A read running into end of file: the short part is retried, then -EIO. */
static void test_read_past_eof(void **state)
{
	struct td_loop *loop = td_loop_create();
	struct td_aio *aio = td_aio_create(loop, 8);
	char *path = tmpfile_sized(4096 + 100);
	struct io_test t = { 0 };
	struct td_aio_stats st;
	static char buf[8192];
	int fd = open(path, O_RDONLY), done = 0;

	(void)state;
	t.done = &done;
	td_iocb_prep_buf(&t.io, TD_AIO_READ, fd, buf, 8192, 0, 0, io_done, NULL);
	td_aio_queue(aio, &t.io);
	run_until_count(loop, &done, 1);
	assert_int_equal(t.res, -EIO);
	td_aio_get_stats(aio, &st);
	assert_int_equal(st.resubmitted, 1);
	close(fd);
	unlink(path);
	free(path);
	td_aio_destroy(aio);
	td_loop_destroy(loop);
}

/*
 * A short write (the file size limit cuts it) is resubmitted for the rest
 * and then fails with the error of the remainder; a vectored write with the
 * cut inside the second buffer resumes at the right place.
 */
static void test_short_write(void **state)
{
	struct td_loop *loop = td_loop_create();
	struct td_aio *aio = td_aio_create(loop, 8);
	char *path = tmpfile_sized(0);
	struct rlimit old, lim = { 6000, RLIM_INFINITY };
	static char a[4096], b[4096];
	struct iovec iov[2] = { { a, 4096 }, { b, 4096 } };
	struct io_test t = { 0 };
	struct td_aio_stats st;
	int fd = open(path, O_RDWR), done = 0;
	char chk[6000];

	(void)state;
	fill_pattern(a, 4096, 0, 3);
	fill_pattern(b, 4096, 4096, 3);
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim.rlim_max = old.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	t.done = &done;
	td_iocb_prep(&t.io, TD_AIO_WRITE, fd, iov, 2, 0, 0, io_done, NULL);
	td_aio_queue(aio, &t.io);
	run_until_count(loop, &done, 1);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_equal(t.res, -EFBIG);
	td_aio_get_stats(aio, &st);
	assert_int_equal(st.resubmitted, 1);
	/* The caller's iovec is untouched; the written part is right. */
	assert_ptr_equal(iov[1].iov_base, b);
	assert_int_equal(iov[1].iov_len, 4096);
	assert_int_equal(pread(fd, chk, 6000, 0), 6000);
	assert_true(check_pattern(chk, 6000, 0, 3));
	close(fd);
	unlink(path);
	free(path);
	td_aio_destroy(aio);
	td_loop_destroy(loop);
}

static void test_fdsync_and_bad_fd(void **state)
{
	struct td_loop *loop = td_loop_create();
	struct td_aio *aio = td_aio_create(loop, 8);
	char *path = tmpfile_sized(4096);
	struct io_test t[2] = { 0 };
	int fd = open(path, O_RDWR), done = 0;
	static char buf[512];

	(void)state;
	t[0].done = t[1].done = &done;
	td_iocb_prep(&t[0].io, TD_AIO_FDSYNC, fd, NULL, 0, 0, 0, io_done, NULL);
	td_aio_queue(aio, &t[0].io);
	/* A refused iocb fails alone and does not stall the queue. */
	td_iocb_prep_buf(&t[1].io, TD_AIO_READ, 999, buf, 512, 0, 0, io_done, NULL);
	td_aio_queue(aio, &t[1].io);
	run_until_count(loop, &done, 2);
	assert_int_equal(t[0].res, 0);
	assert_int_equal(t[1].res, -EBADF);
	close(fd);
	unlink(path);
	free(path);
	td_aio_destroy(aio);
	td_loop_destroy(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_batching),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_read_past_eof),
		cmocka_unit_test(test_short_write),
		cmocka_unit_test(test_fdsync_and_bad_fd),
	};

	return cmocka_run_group_tests_name("aio", tests, NULL, NULL);
}
