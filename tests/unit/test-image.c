// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Unit tests for tapdisk/image.c: range and mode checks, bounce buffers and
 * read-modify-write for misaligned requests, FUA and write-zeroes
 * emulation, and reads that fall through to a parent. A fake in-memory
 * driver records what reaches it.
 */
#include <errno.h>

#include "image.h"
#include "util.h"

#define MEM_SIZE	(4u << 20)
#define LOG_MAX		256

struct call {
	enum td_op op;
	uint64_t off, len;
	unsigned int flags;
};

struct mem {
	char *data;
	bool to_parent;		/* reads go to the parent */
	unsigned int align;
	struct call log[LOG_MAX];
	int ncalls;
};

static struct mem *next_mem;	/* the state the next open picks up */

static int mem_open(struct td_image *img, const char *path, unsigned int flags)
{
	(void)path;
	(void)flags;
	*(struct mem **)img->priv = next_mem;
	img->size = MEM_SIZE;
	img->align = next_mem->align ? next_mem->align : 1;
	img->features = TD_FEAT_FLUSH;
	return 0;
}

static void mem_close(struct td_image *img)
{
	(void)img;
}

static struct mem *mem_of(struct td_image *img)
{
	return *(struct mem **)img->priv;
}

static void mem_record(struct td_image *img, struct td_req *req)
{
	struct mem *m = mem_of(img);

	if (m->ncalls < LOG_MAX)
		m->log[m->ncalls++] = (struct call){ req->op, req->off, req->len,
						     req->flags };
	if (req->op == TD_OP_READ || req->op == TD_OP_WRITE) {
		/* The driver's alignment contract: checked, not assumed. */
		assert_int_equal(req->off % img->align, 0);
		assert_int_equal(req->len % img->align, 0);
		assert_true(td_iov_aligned(req->iov, req->niov, img->align));
	}
}

static void mem_read(struct td_image *img, struct td_req *req)
{
	mem_record(img, req);
	if (mem_of(img)->to_parent) {
		td_image_read_parent(img, req);
		return;
	}
	td_iov_from_buf(req->iov, req->niov, 0, mem_of(img)->data + req->off,
			req->len);
	td_image_complete_later(img, req, 0);
}

static void mem_write(struct td_image *img, struct td_req *req)
{
	mem_record(img, req);
	td_iov_to_buf(req->iov, req->niov, 0, mem_of(img)->data + req->off,
		      req->len);
	td_image_complete_later(img, req, 0);
}

static void mem_flush(struct td_image *img, struct td_req *req)
{
	mem_record(img, req);
	td_image_complete_later(img, req, 0);
}

static const struct td_driver mem_driver = {
	.name		= "mem",
	.priv_size	= sizeof(struct mem *),
	.open		= mem_open,
	.close		= mem_close,
	.queue_read	= mem_read,
	.queue_write	= mem_write,
	.flush		= mem_flush,
};

struct fixture {
	struct td_loop *loop;
	struct td_ctx ctx;
	struct mem mem, pmem;
	struct td_image *img;
};

static struct td_image *fx_open(struct fixture *f, struct mem *m,
				unsigned int flags)
{
	struct td_image *img;

	m->data = calloc(1, MEM_SIZE);
	next_mem = m;
	assert_int_equal(td_image_open_one(&f->ctx, &mem_driver, "/mem", flags,
					   &img), 0);
	return img;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->loop = td_loop_create();
	td_ctx_init(&f->ctx, f->loop, NULL);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	td_image_close(f->img);
	free(f->mem.data);
	free(f->pmem.data);
	td_loop_destroy(f->loop);
	free(f);
	return 0;
}

/* Submit one request and run the loop until it completes; returns err. */
static int do_io(struct fixture *f, struct td_image *img, enum td_op op,
		 uint64_t off, uint64_t len, void *buf, unsigned int flags)
{
	/* The image layer never completes a request inside submit. */
	return image_io_ex(f->loop, img, op, off, len, buf, flags, true);
}

static void test_range_and_mode(void **state)
{
	struct fixture *f = *state;
	char buf[512];
	struct td_image *ro;

	f->img = fx_open(f, &f->mem, 0);
	assert_int_equal(do_io(f, f->img, TD_OP_READ, MEM_SIZE - 256, 512, buf, 0),
			 -EINVAL);
	assert_int_equal(do_io(f, f->img, TD_OP_WRITE, MEM_SIZE, 512, buf, 0),
			 -ENOSPC);
	assert_int_equal(do_io(f, f->img, TD_OP_READ, UINT64_MAX - 10, 512, buf, 0),
			 -EINVAL);
	assert_int_equal(do_io(f, f->img, TD_OP_READ, MEM_SIZE, 0, buf, 0), 0);
	assert_int_equal(f->mem.ncalls, 0);

	ro = fx_open(f, &f->pmem, TD_OPEN_RDONLY);
	assert_int_equal(do_io(f, ro, TD_OP_WRITE, 0, 512, buf, 0), -EPERM);
	assert_int_equal(do_io(f, ro, TD_OP_WRITE_ZEROES, 0, 512, NULL, 0), -EPERM);
	assert_int_equal(do_io(f, ro, TD_OP_DISCARD, 0, 512, NULL, 0), -EPERM);
	assert_int_equal(do_io(f, ro, TD_OP_READ, 0, 512, buf, 0), 0);
	td_image_close(ro);
}

/* No native FUA: the write goes out without it, then a flush, then done. */
static void test_fua_emulation(void **state)
{
	struct fixture *f = *state;
	char buf[4096];

	f->img = fx_open(f, &f->mem, 0);
	fill_pattern(buf, sizeof(buf), 8192, 2);
	assert_int_equal(do_io(f, f->img, TD_OP_WRITE, 8192, 4096, buf, TD_REQ_FUA), 0);
	assert_int_equal(f->mem.ncalls, 2);
	assert_int_equal(f->mem.log[0].op, TD_OP_WRITE);
	assert_int_equal(f->mem.log[0].flags & TD_REQ_FUA, 0);
	assert_int_equal(f->mem.log[1].op, TD_OP_FLUSH);
	assert_true(check_pattern(f->mem.data + 8192, 4096, 8192, 2));
}

/* No native write-zeroes: 1 MiB writes of zeros cover the range exactly. */
static void test_write_zeroes_emulation(void **state)
{
	struct fixture *f = *state;
	uint64_t off = 4096, len = (3u << 20) + 1536, covered = 0;

	f->img = fx_open(f, &f->mem, 0);
	memset(f->mem.data, 0xaa, MEM_SIZE);
	assert_int_equal(do_io(f, f->img, TD_OP_WRITE_ZEROES, off, len, NULL, 0), 0);
	assert_int_equal(f->mem.ncalls, 4);
	for (int i = 0; i < f->mem.ncalls; i++) {
		assert_int_equal(f->mem.log[i].op, TD_OP_WRITE);
		assert_int_equal(f->mem.log[i].off, off + covered);
		covered += f->mem.log[i].len;
	}
	assert_int_equal(covered, len);
	assert_int_equal((unsigned char)f->mem.data[off - 1], 0xaa);
	for (uint64_t i = off; i < off + len; i++)
		if (f->mem.data[i])
			fail_msg("byte %llu not zeroed", (unsigned long long)i);
	assert_int_equal((unsigned char)f->mem.data[off + len], 0xaa);
}

/* Misaligned reads are bounced through an aligned buffer. */
static void test_bounce_read(void **state)
{
	struct fixture *f = *state;
	char *buf = malloc(1000 + 1);

	f->mem.align = 512;
	f->img = fx_open(f, &f->mem, 0);
	fill_pattern(f->mem.data, MEM_SIZE, 0, 5);
	assert_int_equal(do_io(f, f->img, TD_OP_READ, 700, 1000, buf + 1, 0), 0);
	assert_true(check_pattern(buf + 1, 1000, 700, 5));
	assert_int_equal(f->mem.ncalls, 1);
	assert_int_equal(f->mem.log[0].off, 512);
	assert_int_equal(f->mem.log[0].len, 1536);
	free(buf);
}

/* A misaligned write is a read-modify-write that keeps the bytes around it. */
static void test_rmw_write(void **state)
{
	struct fixture *f = *state;
	char buf[100];

	f->mem.align = 512;
	f->img = fx_open(f, &f->mem, 0);
	memset(f->mem.data, 0x11, MEM_SIZE);
	memset(buf, 0x22, sizeof(buf));
	assert_int_equal(do_io(f, f->img, TD_OP_WRITE, 1000, 100, buf, 0), 0);
	assert_int_equal(f->mem.ncalls, 2);
	assert_int_equal(f->mem.log[0].op, TD_OP_READ);
	assert_int_equal(f->mem.log[1].op, TD_OP_WRITE);
	assert_int_equal(f->mem.log[1].off, 512);
	assert_int_equal(f->mem.log[1].len, 1024);
	assert_int_equal(f->mem.data[999], 0x11);
	assert_int_equal(f->mem.data[1000], 0x22);
	assert_int_equal(f->mem.data[1099], 0x22);
	assert_int_equal(f->mem.data[1100], 0x11);
}

/* Two misaligned writes into the same sector: both land (serialized). */
static void test_rmw_serialized(void **state)
{
	struct fixture *f = *state;
	struct result r1 = { 0 }, r2 = { 0 };
	char a[10], b[10];
	struct iovec ia = { a, 10 }, ib = { b, 10 };
	struct td_req *q1, *q2;

	f->mem.align = 512;
	f->img = fx_open(f, &f->mem, 0);
	memset(a, 'a', 10);
	memset(b, 'b', 10);
	q1 = td_req_new(TD_OP_WRITE, 100, 10, &ia, 1, req_done, &r1);
	q2 = td_req_new(TD_OP_WRITE, 200, 10, &ib, 1, req_done, &r2);
	td_image_submit(f->img, q1);
	td_image_submit(f->img, q2);
	run_until(f->loop, &r1.done);
	run_until(f->loop, &r2.done);
	assert_int_equal(r1.err, 0);
	assert_int_equal(r2.err, 0);
	assert_memory_equal(f->mem.data + 100, a, 10);
	assert_memory_equal(f->mem.data + 200, b, 10);
}

/* An aligned request in a misaligned buffer is copied, not read first. */
static void test_bounce_write_buffer(void **state)
{
	struct fixture *f = *state;
	char *buf = malloc(4097);

	f->mem.align = 512;
	f->img = fx_open(f, &f->mem, 0);
	fill_pattern(buf + 1, 4096, 0, 9);
	assert_int_equal(do_io(f, f->img, TD_OP_WRITE, 4096, 4096, buf + 1, 0), 0);
	assert_int_equal(f->mem.ncalls, 1);
	assert_int_equal(f->mem.log[0].op, TD_OP_WRITE);
	assert_true(check_pattern(f->mem.data + 4096, 4096, 0, 9));
	free(buf);
}

/* Overlay reading through to a smaller parent: parent data, then zeros. */
static void test_read_parent(void **state)
{
	struct fixture *f = *state;
	char *buf = malloc(8192);

	f->mem.to_parent = true;
	f->img = fx_open(f, &f->mem, 0);
	f->img->parent = fx_open(f, &f->pmem, TD_OPEN_RDONLY);
	f->img->parent->size = MEM_SIZE - 4096;
	fill_pattern(f->pmem.data, MEM_SIZE, 0, 4);
	memset(buf, 0xff, 8192);
	assert_int_equal(do_io(f, f->img, TD_OP_READ, MEM_SIZE - 8192, 8192, buf, 0), 0);
	assert_true(check_pattern(buf, 4096, MEM_SIZE - 8192, 4));
	for (int i = 4096; i < 8192; i++)
		assert_int_equal(buf[i], 0);
	assert_int_equal(f->pmem.ncalls, 1);
	assert_int_equal(f->pmem.log[0].len, 4096);
	/* No parent: all zeros. */
	td_image_close(f->img->parent);
	f->img->parent = NULL;
	memset(buf, 0xff, 8192);
	assert_int_equal(do_io(f, f->img, TD_OP_READ, 0, 8192, buf, 0), 0);
	for (int i = 0; i < 8192; i++)
		assert_int_equal(buf[i], 0);
	free(buf);
}

static void test_driver_lookup(void **state)
{
	(void)state;
	assert_non_null(td_driver_find("aio"));
	assert_non_null(td_driver_find("sync"));
	assert_non_null(td_driver_find("ram"));
	assert_null(td_driver_find("qcow9"));
	assert_non_null(strstr(td_driver_names(), "aio"));
}

static void test_open_bad_spec(void **state)
{
	struct fixture *f = *state;
	struct td_image *img;

	assert_int_equal(td_image_open(&f->ctx, "noprefix", 0, &img), -EINVAL);
	assert_int_equal(td_image_open(&f->ctx, "bogus:/x", 0, &img), -EINVAL);
	assert_int_equal(td_image_open(&f->ctx, "aio:", 0, &img), -EINVAL);
	assert_int_equal(td_image_open(&f->ctx, "sync:/nonexistent/file", 0, &img),
			 -ENOENT);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_range_and_mode),
		T(test_fua_emulation),
		T(test_write_zeroes_emulation),
		T(test_bounce_read),
		T(test_rmw_write),
		T(test_rmw_serialized),
		T(test_bounce_write_buffer),
		T(test_read_parent),
		T(test_driver_lookup),
		T(test_open_bad_spec),
	};

	return cmocka_run_group_tests_name("image", tests, NULL, NULL);
}
