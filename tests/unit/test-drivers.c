// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Unit tests for the raw drivers (tapdisk/drivers/{aio,sync,ram}.c): the
 * same contract checked on each through td_image_open() on real files.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "aio.h"
#include "image.h"
#include "util.h"

#define SIZE	(2u << 20)

struct fixture {
	const char *type;
	struct td_loop *loop;
	struct td_aio *aio;
	struct td_ctx ctx;
	struct td_opts opts;
	char *path;
	struct td_image *img;
};

static int setup_type(void **state, const char *type)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char spec[256];
	int fd;
	char *pat = malloc(SIZE);

	f->type = type;
	f->loop = td_loop_create();
	f->aio = td_aio_create(f->loop, 64);
	td_ctx_init(&f->ctx, f->loop, f->aio);
	f->opts.ram_limit = 64u << 20;
	f->ctx.opts = &f->opts;
	f->path = tmpfile_sized(SIZE);
	fill_pattern(pat, SIZE, 0, 1);
	fd = open(f->path, O_WRONLY);
	assert_int_equal(pwrite(fd, pat, SIZE, 0), SIZE);
	close(fd);
	free(pat);
	snprintf(spec, sizeof(spec), "%s:%s", type, f->path);
	assert_int_equal(td_image_open(&f->ctx, spec, 0, &f->img), 0);
	assert_int_equal(f->img->size, SIZE);
	*state = f;
	return 0;
}

static int setup_aio(void **state) { return setup_type(state, "aio"); }
static int setup_sync(void **state) { return setup_type(state, "sync"); }
static int setup_ram(void **state) { return setup_type(state, "ram"); }

static int teardown(void **state)
{
	struct fixture *f = *state;

	td_image_close(f->img);
	unlink(f->path);
	free(f->path);
	td_aio_destroy(f->aio);
	td_loop_destroy(f->loop);
	free(f);
	return 0;
}

static int do_io(struct fixture *f, enum td_op op, uint64_t off, uint64_t len,
		 void *buf, unsigned int flags)
{
	return image_io(f->loop, f->img, op, off, len, buf, flags);
}

static void *abuf(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, len))
		fail_msg("posix_memalign(%zu) failed", len);
	return p;
}

/* What the file holds at @off, read behind the driver's back. */
static void file_read(struct fixture *f, void *buf, size_t len, uint64_t off)
{
	int fd = open(f->path, O_RDONLY);

	assert_int_equal(pread(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

static void test_read_existing(void **state)
{
	struct fixture *f = *state;
	char *buf = abuf(65536);

	assert_int_equal(do_io(f, TD_OP_READ, 131072, 65536, buf, 0), 0);
	assert_true(check_pattern(buf, 65536, 131072, 1));
	free(buf);
}

static void test_write_read_back(void **state)
{
	struct fixture *f = *state;
	char *w = abuf(1 << 20), *r = abuf(1 << 20);

	fill_pattern(w, 1 << 20, 4096, 77);
	assert_int_equal(do_io(f, TD_OP_WRITE, 4096, 1 << 20, w, TD_REQ_FUA), 0);
	assert_int_equal(do_io(f, TD_OP_FLUSH, 0, 0, NULL, 0), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 4096, 1 << 20, r, 0), 0);
	assert_memory_equal(w, r, 1 << 20);
	if (strcmp(f->type, "ram")) {
		file_read(f, r, 1 << 20, 4096);
		assert_memory_equal(w, r, 1 << 20);
	}
	free(w);
	free(r);
}

/* Byte-granular requests on any driver (aio gets them bounced). */
static void test_unaligned(void **state)
{
	struct fixture *f = *state;
	char w[777], r[777];

	memset(w, 0x5a, sizeof(w));
	assert_int_equal(do_io(f, TD_OP_WRITE, 1001, 777, w, 0), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 1001, 777, r, 0), 0);
	assert_memory_equal(w, r, 777);
	/* Neighbours untouched. */
	assert_int_equal(do_io(f, TD_OP_READ, 1000, 1, r, 0), 0);
	assert_true(check_pattern(r, 1, 1000, 1));
	assert_int_equal(do_io(f, TD_OP_READ, 1778, 1, r, 0), 0);
	assert_true(check_pattern(r, 1, 1778, 1));
}

static void test_zeroes_and_discard(void **state)
{
	struct fixture *f = *state;
	char *buf = abuf(65536), *zero = calloc(1, 65536);

	assert_int_equal(do_io(f, TD_OP_WRITE_ZEROES, 65536, 65536, NULL, 0), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 65536, 65536, buf, 0), 0);
	assert_memory_equal(buf, zero, 65536);
	assert_int_equal(do_io(f, TD_OP_WRITE_ZEROES, 196608, 65536, NULL,
			       TD_REQ_NO_HOLE | TD_REQ_FUA), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 196608, 65536, buf, 0), 0);
	assert_memory_equal(buf, zero, 65536);
	/* Discard then read: zeros (punched hole), neighbours intact. */
	assert_int_equal(do_io(f, TD_OP_DISCARD, 262144, 65536, NULL, 0), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 262144, 65536, buf, 0), 0);
	assert_memory_equal(buf, zero, 65536);
	assert_int_equal(do_io(f, TD_OP_READ, 262144 + 65536, 4096, buf, 0), 0);
	assert_true(check_pattern(buf, 4096, 262144 + 65536, 1));
	free(buf);
	free(zero);
}

static void test_out_of_range(void **state)
{
	struct fixture *f = *state;
	char *buf = abuf(8192);

	assert_int_equal(do_io(f, TD_OP_READ, SIZE - 4096, 8192, buf, 0), -EINVAL);
	assert_int_equal(do_io(f, TD_OP_WRITE, SIZE, 512, buf, 0), -ENOSPC);
	free(buf);
}

/* Vectored requests with many segments, as the kernel ring sends them. */
static void test_vectored(void **state)
{
	struct fixture *f = *state;
	struct iovec iov[128];
	char *pages = abuf(128 * 4096), *chk = abuf(128 * 4096);
	struct result r = { 0 };
	struct td_req *req;

	for (int i = 0; i < 128; i++) {
		/* Scatter: page i of the request lives at page (127 - i). */
		iov[i].iov_base = pages + (127 - i) * 4096;
		iov[i].iov_len = 4096;
		fill_pattern(iov[i].iov_base, 4096, 8192 + i * 4096, 33);
	}
	req = td_req_new(TD_OP_WRITE, 8192, 128 * 4096, iov, 128, req_done, &r);
	td_image_submit(f->img, req);
	run_until(f->loop, &r.done);
	assert_int_equal(r.err, 0);
	assert_int_equal(do_io(f, TD_OP_READ, 8192, 128 * 4096, chk, 0), 0);
	assert_true(check_pattern(chk, 128 * 4096, 8192, 33));
	free(pages);
	free(chk);
}

static void test_readonly(void **state)
{
	struct fixture *f = *state;
	struct td_image *ro;
	char spec[256], *buf = abuf(4096);

	snprintf(spec, sizeof(spec), "%s:%s", f->type, f->path);
	assert_int_equal(td_image_open(&f->ctx, spec, TD_OPEN_RDONLY, &ro), 0);
	td_image_close(f->img);
	f->img = ro;
	assert_int_equal(do_io(f, TD_OP_WRITE, 0, 4096, buf, 0), -EPERM);
	assert_int_equal(do_io(f, TD_OP_READ, 0, 4096, buf, 0), 0);
	free(buf);
}

/* ---- driver-specific ---- */

static void test_ram_limit_and_empty(void **state)
{
	struct fixture *f = *state;
	struct td_image *img;
	char spec[256];

	snprintf(spec, sizeof(spec), "ram:%s", f->path);
	f->opts.ram_limit = SIZE - 1;
	assert_int_equal(td_image_open(&f->ctx, spec, 0, &img), -EFBIG);
	f->opts.ram_limit = 64u << 20;
	assert_int_equal(td_image_open(&f->ctx, "ram:/nonexistent/x", 0, &img),
			 -ENOENT);
	f->opts.ram_size = 1u << 20;
	assert_int_equal(td_image_open(&f->ctx, "ram:/nonexistent/x", 0, &img), 0);
	assert_int_equal(img->size, 1u << 20);
	td_image_close(img);
}

/* Writes to a ram image never reach its file. */
static void test_ram_volatile(void **state)
{
	struct fixture *f = *state;
	char w[4096], r[4096];

	memset(w, 0xee, sizeof(w));
	assert_int_equal(do_io(f, TD_OP_WRITE, 0, 4096, w, 0), 0);
	file_read(f, r, 4096, 0);
	assert_true(check_pattern(r, 4096, 0, 1));
}

/* tmpfs refuses O_DIRECT: aio falls back to buffered I/O and works. */
static void test_aio_tmpfs_fallback(void **state)
{
	struct fixture *f = *state;
	char path[] = "/dev/shm/blktap-unit.XXXXXX", spec[64];
	struct td_image *img;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	fd = open(path, O_RDWR | O_DIRECT);
	if (fd >= 0) {
		/* Newer kernels' tmpfs takes O_DIRECT: nothing to fall back from. */
		close(fd);
		unlink(path);
		skip();
	}
	snprintf(spec, sizeof(spec), "aio:%s", path);
	assert_int_equal(td_image_open(&f->ctx, spec, 0, &img), 0);
	assert_int_equal(img->align, 1);
	td_image_close(f->img);
	f->img = img;
	test_unaligned(state);
	unlink(path);
}

static void test_aio_odirect_align(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(f->img->align, 512);
	assert_true(f->img->features & TD_FEAT_FUA);
}

#define AIO(fn) cmocka_unit_test_setup_teardown(fn, setup_aio, teardown)
#define SYNC(fn) cmocka_unit_test_setup_teardown(fn, setup_sync, teardown)
#define RAM(fn) cmocka_unit_test_setup_teardown(fn, setup_ram, teardown)
#define ALL(fn) AIO(fn), SYNC(fn), RAM(fn)

int main(void)
{
	const struct CMUnitTest tests[] = {
		ALL(test_read_existing),
		ALL(test_write_read_back),
		ALL(test_unaligned),
		ALL(test_zeroes_and_discard),
		ALL(test_out_of_range),
		ALL(test_vectored),
		ALL(test_readonly),
		RAM(test_ram_limit_and_empty),
		RAM(test_ram_volatile),
		AIO(test_aio_tmpfs_fallback),
		AIO(test_aio_odirect_align),
	};

	return cmocka_run_group_tests_name("drivers", tests, NULL, NULL);
}
