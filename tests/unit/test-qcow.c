// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Unit tests for the qcow driver (tapdisk/drivers/qcow.c) and its format
 * helpers (tapdisk/qcow-format.c): header parsing with corrupt inputs, the
 * L2 cache, allocation and copy-on-write, chains over ram and raw parents,
 * compressed clusters, concurrent allocation of one cluster, corrupt
 * tables, discard, dirty L2 tables written back at flush and when too many
 * are dirty, the checker and the Xen extension header.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "aio.h"
#include "drivers/qcow.h"
#include "image.h"
#include "qcow-format.h"
#include "util.h"

extern const struct td_driver td_driver_qcow;
extern const struct td_driver td_driver_ram;

struct fx {
	struct td_loop *loop;
	struct td_aio *aio;
	struct td_ctx ctx;
	struct td_opts opts;
	char *path, *ppath;
	struct td_image *img;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->loop = td_loop_create();
	f->aio = td_aio_create(f->loop, 64);
	td_ctx_init(&f->ctx, f->loop, f->aio);
	f->opts.ram_limit = 64u << 20;
	f->ctx.opts = &f->opts;
	f->path = tmpfile_sized(0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->img)
		td_image_close(f->img);
	unlink(f->path);
	free(f->path);
	if (f->ppath) {
		unlink(f->ppath);
		free(f->ppath);
	}
	td_aio_destroy(f->aio);
	td_loop_destroy(f->loop);
	free(f);
	return 0;
}

/* ---- building images by hand ---- */

static void pwrite_ok(const char *path, const void *buf, size_t len, uint64_t off)
{
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

static void pread_ok(const char *path, void *buf, size_t len, uint64_t off)
{
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

/* A fresh image as qcow-create lays it out; returns the header. */
static struct qcow_header make_image(const char *path, uint64_t size,
				     unsigned int cbits, unsigned int l2bits,
				     const char *backing)
{
	struct qcow_header h;
	uint8_t hdr[QCOW_HDR_SIZE];
	size_t blen = backing ? strlen(backing) : 0;
	void *zero;
	int fd;

	assert_int_equal(qcow_header_init(&h, size, blen, cbits, l2bits, NULL, 0), 0);
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, qcow_fresh_length(&h)), 0);
	close(fd);
	qcow_header_write(&h, hdr);
	pwrite_ok(path, hdr, sizeof(hdr), 0);
	if (blen)
		pwrite_ok(path, backing, blen, h.backing_off);
	zero = calloc(1, h.l1_bytes + 1);
	pwrite_ok(path, zero, h.l1_bytes, h.l1_off);
	free(zero);
	return h;
}

static int open_qcow(struct fx *f, unsigned int flags)
{
	char spec[300];

	snprintf(spec, sizeof(spec), "qcow:%s", f->path);
	return td_image_open(&f->ctx, spec, flags, &f->img);
}

/* ---- I/O through the driver ---- */

static struct td_req *mkreq(enum td_op op, uint64_t off, uint64_t len,
			    void *buf, struct result *r)
{
	struct td_req *req = td_req_new(op, off, len, NULL, 0, req_done, r);

	if (buf) {
		req->iov = req->iov_inline;
		req->niov = 1;
		req->iov_inline[0].iov_base = buf;
		req->iov_inline[0].iov_len = len;
	}
	return req;
}

static int do_io(struct fx *f, enum td_op op, uint64_t off, uint64_t len, void *buf)
{
	return image_io(f->loop, f->img, op, off, len, buf, 0);
}

static void check_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i])
			fail_msg("byte %zu is %u, not 0", i, p[i]);
}

static struct qcow_check run_check(const char *path);

/* ---- header parsing ---- */

static void hdr_bytes(uint8_t *b, uint64_t size, unsigned int cbits,
		      unsigned int l2bits, uint64_t l1off)
{
	struct qcow_header h = { .size = size, .cluster_bits = cbits,
				 .l2_bits = l2bits, .l1_off = l1off };

	qcow_header_write(&h, b);
}

static int parse(const uint8_t *b, size_t len, uint64_t fsize, char *why)
{
	struct qcow_header h;

	return qcow_header_parse(b, len, fsize, &h, why, 256);
}

static void test_header_valid(void **state)
{
	uint8_t b[64] = { 0 };
	struct qcow_header h;
	char why[256];

	(void)state;
	hdr_bytes(b, 10 << 20, 12, 9, 48);
	assert_int_equal(qcow_header_parse(b, 64, 48 + 40, &h, why, sizeof(why)), 0);
	assert_int_equal(h.cluster_size, 4096);
	assert_int_equal(h.l1_entries, 5);
	assert_int_equal(h.l2_span, 2 << 20);
	assert_false(h.xen);
}

static void test_header_corrupt(void **state)
{
	uint8_t b[64] = { 0 };
	char why[256];

	(void)state;
	/* short file */
	hdr_bytes(b, 1 << 20, 12, 9, 48);
	assert_int_equal(parse(b, 20, 20, why), -EINVAL);
	assert_non_null(strstr(why, "shorter"));
	/* bad magic */
	b[0] = 'X';
	assert_int_equal(parse(b, 64, 4096, why), -EINVAL);
	assert_non_null(strstr(why, "magic"));
	/* version 2 (qcow2) */
	hdr_bytes(b, 1 << 20, 12, 9, 48);
	qcow_put_be32(b + 4, 2);
	assert_int_equal(parse(b, 64, 4096, why), -ENOTSUP);
	assert_non_null(strstr(why, "version is 2"));
	/* encrypted */
	hdr_bytes(b, 1 << 20, 12, 9, 48);
	qcow_put_be32(b + 36, 1);
	assert_int_equal(parse(b, 64, 4096, why), -ENOTSUP);
	assert_non_null(strstr(why, "encrypted"));
	/* cluster_bits and l2_bits out of range */
	hdr_bytes(b, 1 << 20, 8, 9, 48);
	assert_int_equal(parse(b, 64, 4096, why), -EINVAL);
	assert_non_null(strstr(why, "cluster_bits is 8"));
	hdr_bytes(b, 1 << 20, 17, 9, 48);
	assert_int_equal(parse(b, 64, 4096, why), -EINVAL);
	hdr_bytes(b, 1 << 20, 12, 5, 48);
	assert_int_equal(parse(b, 64, 4096, why), -EINVAL);
	assert_non_null(strstr(why, "l2_bits is 5"));
	hdr_bytes(b, 1 << 20, 12, 14, 48);
	assert_int_equal(parse(b, 64, 4096, why), -EINVAL);
	/* overflowing size */
	hdr_bytes(b, ~0ull - 5, 12, 9, 48);
	assert_int_equal(parse(b, 64, 4096, why), -EINVAL);
	assert_non_null(strstr(why, "size"));
	/* L1 past the end of the file */
	hdr_bytes(b, 100ull << 30, 12, 9, 48);
	assert_int_equal(parse(b, 64, 4096, why), -EINVAL);
	assert_non_null(strstr(why, "L1 table"));
	assert_non_null(strstr(why, "past the end"));
	/* L1 inside the header */
	hdr_bytes(b, 1 << 20, 12, 9, 8);
	assert_int_equal(parse(b, 64, 4096, why), -EINVAL);
	/* backing file name past the end, or too long */
	hdr_bytes(b, 1 << 20, 12, 9, 48);
	qcow_put_be64(b + 8, 4000);
	qcow_put_be32(b + 16, 200);
	assert_int_equal(parse(b, 64, 4096, why), -EINVAL);
	assert_non_null(strstr(why, "backing"));
	qcow_put_be64(b + 8, 48);
	qcow_put_be32(b + 16, 5000);
	assert_int_equal(parse(b, 64, 1 << 20, why), -EINVAL);
}

static void test_header_xen(void **state)
{
	uint8_t b[64] = { 0 };
	struct qcow_header h;

	(void)state;
	hdr_bytes(b, 1 << 20, 12, 9, 4096);
	qcow_put_be32(b + 48, QCOW_XEN_MAGIC);
	qcow_put_be32(b + 60, QCOW_XEN_SPARSE);
	assert_int_equal(qcow_header_parse(b, 64, 8192, &h, NULL, 0), 0);
	assert_true(h.xen);
	assert_true(h.l1_le);
	qcow_put_be32(b + 60, QCOW_XEN_L1_BE);
	assert_int_equal(qcow_header_parse(b, 64, 8192, &h, NULL, 0), 0);
	assert_true(h.xen);
	assert_false(h.l1_le);
	/* Not page-aligned L1: not Xen's extension. */
	hdr_bytes(b, 1 << 20, 12, 9, 64);
	qcow_put_be32(b + 48, QCOW_XEN_MAGIC);
	assert_int_equal(qcow_header_parse(b, 64, 8192, &h, NULL, 0), 0);
	assert_false(h.xen);
}

/* Corrupt images refuse to open, with an error, not a crash. */
static void test_open_corrupt(void **state)
{
	struct fx *f = *state;
	uint8_t b[64] = { 0 };

	hdr_bytes(b, 1 << 30, 12, 9, 48);	/* L1 of 4 KiB past EOF */
	pwrite_ok(f->path, b, 64, 0);
	assert_int_equal(open_qcow(f, 0), -EINVAL);
	qcow_put_be32(b + 36, 1);
	pwrite_ok(f->path, b, 64, 0);
	assert_int_equal(open_qcow(f, 0), -ENOTSUP);
	assert_int_equal(truncate(f->path, 10), 0);
	assert_int_equal(open_qcow(f, 0), -EINVAL);
	f->img = NULL;
}

/* ---- L2 cache ---- */

static void test_l2_cache(void **state)
{
	struct qcow_l2c c;
	struct qcow_l2 *t[4], *u;
	bool hit;

	(void)state;
	qcow_l2c_init(&c, 2, 8);
	t[0] = qcow_l2c_get(&c, 4096, &hit);
	assert_false(hit);
	t[0]->ready = true;
	qcow_l2c_put(&c, t[0]);
	t[1] = qcow_l2c_get(&c, 8192, &hit);
	t[1]->ready = true;
	qcow_l2c_put(&c, t[1]);
	/* Touch 4096 so 8192 is the least recently used. */
	u = qcow_l2c_get(&c, 4096, &hit);
	assert_true(hit);
	assert_ptr_equal(u, t[0]);
	qcow_l2c_put(&c, u);
	t[2] = qcow_l2c_get(&c, 12288, &hit);
	assert_false(hit);
	assert_ptr_equal(t[2], t[1]);	/* 8192's buffer reused */
	assert_int_equal(c.count, 2);
	t[2]->ready = true;
	qcow_l2c_put(&c, t[2]);
	assert_null(qcow_l2c_peek(&c, 8192));
	assert_non_null(qcow_l2c_peek(&c, 4096));

	/* Pinned tables are never evicted: the cache grows, then shrinks. */
	t[0] = qcow_l2c_get(&c, 4096, &hit);
	t[1] = qcow_l2c_get(&c, 12288, &hit);
	t[2] = qcow_l2c_get(&c, 16384, &hit);
	assert_false(hit);
	t[2]->ready = true;
	t[3] = qcow_l2c_get(&c, 20480, &hit);
	assert_int_equal(c.count, 4);
	qcow_l2c_put(&c, t[3]);	/* never got ready: dropped */
	assert_int_equal(c.count, 3);
	qcow_l2c_put(&c, t[2]);
	qcow_l2c_put(&c, t[1]);
	qcow_l2c_put(&c, t[0]);
	assert_int_equal(c.count, 2);

	/* A failed load is forgotten at once, freed at the last unpin. */
	t[0] = qcow_l2c_get(&c, 65536, &hit);
	assert_false(hit);
	t[1] = qcow_l2c_get(&c, 65536, &hit);
	assert_true(hit);
	qcow_l2c_forget(&c, t[0]);
	u = qcow_l2c_get(&c, 65536, &hit);
	assert_false(hit);
	assert_ptr_not_equal(u, t[0]);
	qcow_l2c_put(&c, t[0]);
	qcow_l2c_put(&c, t[1]);
	qcow_l2c_put(&c, u);
	qcow_l2c_destroy(&c);
}

/* ---- allocation, reads, writes ---- */

static void rw_roundtrip(struct fx *f, unsigned int cbits, unsigned int l2bits)
{
	uint64_t cs = 1ull << cbits, span = cs << l2bits;
	uint64_t size = 3 * span + 5 * cs + 512;
	size_t len = 2 * cs + cs / 2 + 100;
	uint64_t offs[] = { 0, 3 * cs + cs / 2 + 7, span - cs - 100,
			    2 * span + 3, size - len };
	char *w = malloc(len), *r = malloc(len);
	struct qcow_check chk;

	make_image(f->path, size, cbits, l2bits, NULL);
	assert_int_equal(open_qcow(f, 0), 0);
	assert_int_equal(f->img->size, size);
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		fill_pattern(w, len, offs[i], i + 1);
		assert_int_equal(do_io(f, TD_OP_WRITE, offs[i], len, w), 0);
	}
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		assert_int_equal(do_io(f, TD_OP_READ, offs[i], len, r), 0);
		if (!check_pattern(r, len, offs[i], i + 1))
			fail_msg("cluster_bits %u l2_bits %u: data at %llu differs",
				 cbits, l2bits, (unsigned long long)offs[i]);
	}
	/* Never written: zeros; right next to written data: zeros too. */
	assert_int_equal(do_io(f, TD_OP_READ, span + 2 * cs, cs, r), 0);
	check_zero(r, cs);
	assert_int_equal(do_io(f, TD_OP_READ, offs[1] - 7, 7, r), 0);
	check_zero(r, 7);
	assert_int_equal(do_io(f, TD_OP_FLUSH, 0, 0, NULL), 0);
	td_image_close(f->img);
	f->img = NULL;
	chk = run_check(f->path);
	assert_int_equal(chk.errors, 0);
	assert_int_equal(chk.leaks, 0);
	free(w);
	free(r);
}

static void test_rw_cluster_sizes(void **state)
{
	struct fx *f = *state;

	for (unsigned int cb = QCOW_MIN_CLUSTER_BITS; cb <= QCOW_MAX_CLUSTER_BITS; cb++) {
		rw_roundtrip(f, cb, cb - 3);
		rw_roundtrip(f, cb, cb == 9 ? 12 : QCOW_MIN_L2_BITS);
	}
}

/* Data survives close and reopen; the file only grows at its end. */
static void test_reopen(void **state)
{
	struct fx *f = *state;
	char w[5000], r[5000];
	struct stat st1, st2;

	make_image(f->path, 8 << 20, 12, 9, NULL);
	assert_int_equal(open_qcow(f, 0), 0);
	fill_pattern(w, sizeof(w), 12345, 9);
	assert_int_equal(do_io(f, TD_OP_WRITE, 12345, sizeof(w), w), 0);
	td_image_close(f->img);
	stat(f->path, &st1);
	assert_int_equal(st1.st_size % 4096, 0);
	assert_int_equal(open_qcow(f, TD_OPEN_RDONLY), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 12345, sizeof(r), r), 0);
	assert_memory_equal(w, r, sizeof(w));
	assert_int_equal(do_io(f, TD_OP_WRITE, 0, 512, w), -EPERM);
	td_image_close(f->img);
	/* Rewriting allocated clusters allocates nothing. */
	assert_int_equal(open_qcow(f, 0), 0);
	assert_int_equal(do_io(f, TD_OP_WRITE, 12345, sizeof(w), w), 0);
	td_image_close(f->img);
	f->img = NULL;
	stat(f->path, &st2);
	assert_int_equal(st1.st_size, st2.st_size);
}

/* ---- chains ---- */

/* qcow over a raw file: COW of partial clusters, zeros past the parent. */
static void test_chain_raw(void **state)
{
	struct fx *f = *state;
	uint64_t psize = (1 << 20) + 1536, size = 4 << 20;
	char *pat = malloc(psize), *r = malloc(8192), w[100];
	char *slash;

	f->ppath = tmpfile_sized(psize);
	fill_pattern(pat, psize, 0, 3);
	pwrite_ok(f->ppath, pat, psize, 0);
	slash = strrchr(f->ppath, '/');
	/* Relative backing name: resolved against the image's directory. */
	make_image(f->path, size, 9, 12, slash + 1);
	assert_int_equal(open_qcow(f, 0), 0);
	assert_non_null(f->img->parent);
	assert_string_equal(f->img->parent->drv->name, "aio");

	assert_int_equal(do_io(f, TD_OP_READ, 4096, 8192, r), 0);
	assert_true(check_pattern(r, 8192, 4096, 3));
	/* Straddling the parent's end: its data, then zeros. */
	assert_int_equal(do_io(f, TD_OP_READ, psize - 4096, 8192, r), 0);
	assert_true(check_pattern(r, 4096, psize - 4096, 3));
	check_zero(r + 4096, 4096);

	/* 100 bytes into a 512-byte cluster: the rest comes from the parent. */
	memset(w, 0xee, sizeof(w));
	assert_int_equal(do_io(f, TD_OP_WRITE, 8192 + 200, sizeof(w), w), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 8192, 1024, r), 0);
	assert_true(check_pattern(r, 200, 8192, 3));
	assert_memory_equal(r + 200, w, sizeof(w));
	assert_true(check_pattern(r + 300, 724, 8192 + 300, 3));
	/* The parent is untouched. */
	pread_ok(f->ppath, r, 1024, 8192);
	assert_true(check_pattern(r, 1024, 8192, 3));
	free(pat);
	free(r);
}

/* qcow over a ram image, attached by hand; a write past the parent's end. */
static void test_chain_ram(void **state)
{
	struct fx *f = *state;
	char *pat = malloc(65536), r[4096], w[10];

	f->ppath = tmpfile_sized(65536);
	fill_pattern(pat, 65536, 0, 5);
	pwrite_ok(f->ppath, pat, 65536, 0);
	make_image(f->path, 1 << 20, 12, 9, NULL);
	assert_int_equal(td_image_open_one(&f->ctx, &td_driver_qcow, f->path, 0,
					   &f->img), 0);
	assert_int_equal(td_image_open_one(&f->ctx, &td_driver_ram, f->ppath,
					   TD_OPEN_RDONLY, &f->img->parent), 0);
	memset(w, 0x77, sizeof(w));
	assert_int_equal(do_io(f, TD_OP_WRITE, 4096 + 10, sizeof(w), w), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 4096, 4096, r), 0);
	assert_true(check_pattern(r, 10, 4096, 5));
	assert_memory_equal(r + 10, w, 10);
	assert_true(check_pattern(r + 20, 4076, 4096 + 20, 5));
	/* Beyond the parent's end: the base is zeros. */
	assert_int_equal(do_io(f, TD_OP_WRITE, 65536 + 100, sizeof(w), w), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 65536, 4096, r), 0);
	check_zero(r, 100);
	assert_memory_equal(r + 100, w, 10);
	check_zero(r + 110, 4096 - 110);
	free(pat);
}

/* qcow over qcow over raw. */
static void test_chain_qcow(void **state)
{
	struct fx *f = *state;
	char *mid = tmpfile_sized(0), r[4096], w[512];
	char spec[300];
	struct td_image *m;

	f->ppath = tmpfile_sized(1 << 20);
	fill_pattern(r, 4096, 0, 6);
	pwrite_ok(f->ppath, r, 4096, 0);
	make_image(mid, 1 << 20, 9, 12, f->ppath);
	snprintf(spec, sizeof(spec), "qcow:%s", mid);
	assert_int_equal(td_image_open(&f->ctx, spec, 0, &m), 0);
	f->img = m;
	memset(w, 0x11, sizeof(w));
	assert_int_equal(do_io(f, TD_OP_WRITE, 1024, 512, w), 0);
	td_image_close(m);
	make_image(f->path, 2 << 20, 9, 12, mid);
	assert_int_equal(open_qcow(f, 0), 0);
	assert_non_null(f->img->parent);
	assert_non_null(f->img->parent->parent);
	assert_int_equal(do_io(f, TD_OP_READ, 0, 4096, r), 0);
	assert_true(check_pattern(r, 1024, 0, 6));
	assert_memory_equal(r + 1024, w, 512);
	assert_true(check_pattern(r + 1536, 4096 - 1536, 1536, 6));
	unlink(mid);
	free(mid);
}

/* A chain that loops is refused. */
static void test_chain_loop(void **state)
{
	struct fx *f = *state;

	make_image(f->path, 1 << 20, 9, 12, f->path);
	assert_int_equal(open_qcow(f, 0), -ELOOP);
	f->img = NULL;
}

/* ---- compressed clusters ---- */

/* An image whose cluster 1 is compressed (deflated pattern). */
static struct qcow_header make_compressed(const char *path, char *plain)
{
	struct qcow_header h = make_image(path, 1 << 20, 12, 9, NULL);
	uint8_t z[4096], ent[8];
	uint64_t l2off = 4096, zoff = 8192 + 512;
	size_t n;

	/* Compressible, not trivially: a pattern with runs. */
	for (int i = 0; i < 4096; i++)
		plain[i] = (char)("qcow"[i % 4] + (i / 512));
	n = qcow_deflate(&h, plain, z);
	assert_true(n > 0 && n < 4096);
	qcow_put_be64(ent, l2off);
	pwrite_ok(path, ent, 8, h.l1_off);
	assert_int_equal(truncate(path, 8192), 0);
	qcow_put_be64(ent, qcow_centry(&h, zoff, n));
	pwrite_ok(path, ent, 8, l2off + 8);
	pwrite_ok(path, z, n, zoff);
	return h;
}

static void test_compressed(void **state)
{
	struct fx *f = *state;
	char plain[4096], r[8192], w[16];
	struct qcow_check chk;
	uint8_t ent[8];

	make_compressed(f->path, plain);
	chk = run_check(f->path);
	assert_int_equal(chk.compressed_clusters, 1);
	assert_int_equal(chk.errors, 0);
	assert_int_equal(open_qcow(f, 0), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 4096, 4096, r), 0);
	assert_memory_equal(r, plain, 4096);
	assert_int_equal(do_io(f, TD_OP_READ, 4096 + 100, 50, r), 0);
	assert_memory_equal(r, plain + 100, 50);
	/* Across the compressed cluster into unallocated space. */
	assert_int_equal(do_io(f, TD_OP_READ, 4096, 8192, r), 0);
	assert_memory_equal(r, plain, 4096);
	check_zero(r + 4096, 4096);

	/* A partial write: decompressed, rewritten uncompressed elsewhere. */
	memset(w, 0x42, sizeof(w));
	assert_int_equal(do_io(f, TD_OP_WRITE, 4096 + 1000, sizeof(w), w), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 4096, 4096, r), 0);
	assert_memory_equal(r, plain, 1000);
	assert_memory_equal(r + 1000, w, sizeof(w));
	assert_memory_equal(r + 1016, plain + 1016, 4096 - 1016);
	td_image_close(f->img);
	f->img = NULL;
	pread_ok(f->path, ent, 8, 4096 + 8);
	assert_false(qcow_is_compressed(qcow_be64(ent)));
	assert_int_equal(qcow_be64(ent) % 4096, 0);
	chk = run_check(f->path);
	assert_int_equal(chk.compressed_clusters, 0);
	assert_int_equal(chk.errors, 0);
	assert_int_equal(chk.leaks, 1);	/* the old compressed cluster */
}

/* Garbage instead of deflate data: EIO, not a crash. */
static void test_compressed_corrupt(void **state)
{
	struct fx *f = *state;
	char plain[4096], r[4096];
	uint8_t junk[64];

	make_compressed(f->path, plain);
	memset(junk, 0xff, sizeof(junk));
	pwrite_ok(f->path, junk, sizeof(junk), 8192 + 512);
	assert_int_equal(open_qcow(f, 0), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 4096, 4096, r), -EIO);
	assert_int_equal(do_io(f, TD_OP_WRITE, 4096, 10, r), -EIO);
	/* Other clusters still work. */
	assert_int_equal(do_io(f, TD_OP_READ, 0, 4096, r), 0);
}

/* ---- concurrency ---- */

/* Many writes into one unallocated cluster at once: allocated once. */
static void test_concurrent_alloc(void **state)
{
	struct fx *f = *state;
	struct result res[16] = { 0 };
	char bufs[16][256], r[4096];
	int done = 0;
	struct qcow_check chk;

	make_image(f->path, 1 << 20, 12, 9, NULL);
	assert_int_equal(open_qcow(f, 0), 0);
	for (int i = 0; i < 16; i++) {
		memset(bufs[i], 'a' + i, 256);
		td_image_submit(f->img, mkreq(TD_OP_WRITE, 8192 + i * 256, 256,
					      bufs[i], &res[i]));
	}
	/* And a read of the same cluster racing with them. */
	for (int i = 0; i < 2000 && done < 16; i++) {
		assert_true(td_loop_run_once(f->loop, 1) >= 0);
		done = 0;
		for (int j = 0; j < 16; j++)
			done += res[j].done;
	}
	assert_int_equal(done, 16);
	for (int i = 0; i < 16; i++)
		assert_int_equal(res[i].err, 0);
	assert_int_equal(do_io(f, TD_OP_READ, 8192, 4096, r), 0);
	for (int i = 0; i < 16; i++)
		assert_memory_equal(r + i * 256, bufs[i], 256);
	td_image_close(f->img);
	f->img = NULL;
	chk = run_check(f->path);
	assert_int_equal(chk.data_clusters, 1);
	assert_int_equal(chk.leaks, 0);
	assert_int_equal(chk.errors, 0);
}

/* Reads and writes to a new L2 table racing with its allocation. */
static void test_concurrent_new_table(void **state)
{
	struct fx *f = *state;
	struct result res[8] = { 0 };
	char *w = malloc(8 * 65536), *r = malloc(65536);
	int done = 0;
	struct qcow_check chk;

	make_image(f->path, 8 << 20, 12, 9, NULL);
	assert_int_equal(open_qcow(f, 0), 0);
	for (int i = 0; i < 8; i++) {
		fill_pattern(w + i * 65536, 65536, i * 65536, 20 + i);
		td_image_submit(f->img, mkreq(TD_OP_WRITE, i * 65536, 65536,
					      w + i * 65536, &res[i]));
	}
	for (int i = 0; i < 2000 && done < 8; i++) {
		assert_true(td_loop_run_once(f->loop, 1) >= 0);
		done = 0;
		for (int j = 0; j < 8; j++)
			done += res[j].done;
	}
	assert_int_equal(done, 8);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(res[i].err, 0);
		assert_int_equal(do_io(f, TD_OP_READ, i * 65536, 65536, r), 0);
		if (!check_pattern(r, 65536, i * 65536, 20 + i))
			fail_msg("write %d reads back wrong", i);
	}
	td_image_close(f->img);
	f->img = NULL;
	chk = run_check(f->path);
	assert_int_equal(chk.l2_tables, 1);
	assert_int_equal(chk.data_clusters, 128);
	assert_int_equal(chk.errors + chk.leaks, 0);
	free(w);
	free(r);
}

/* ---- corrupt tables ---- */

static void test_corrupt_entries(void **state)
{
	struct fx *f = *state;
	struct qcow_header h = make_image(f->path, 4 << 20, 12, 9, NULL);
	uint8_t ent[8];
	char r[4096];

	/* L1[1] far past the end of the file. */
	qcow_put_be64(ent, 1ull << 40);
	pwrite_ok(f->path, ent, 8, h.l1_off + 8);
	/* L1[0] fine, its L2[3] past the end of the file. */
	qcow_put_be64(ent, 4096);
	pwrite_ok(f->path, ent, 8, h.l1_off);
	assert_int_equal(truncate(f->path, 8192), 0);
	qcow_put_be64(ent, 1ull << 33);
	pwrite_ok(f->path, ent, 8, 4096 + 3 * 8);
	assert_int_equal(open_qcow(f, 0), 0);
	assert_int_equal(do_io(f, TD_OP_READ, (2 << 20) + 4096, 4096, r), -EIO);
	assert_int_equal(do_io(f, TD_OP_WRITE, (2 << 20) + 4096, 4096, r), -EIO);
	assert_int_equal(do_io(f, TD_OP_READ, 3 * 4096, 4096, r), -EIO);
	assert_int_equal(do_io(f, TD_OP_WRITE, 3 * 4096 + 5, 10, r), -EIO);
	assert_int_equal(do_io(f, TD_OP_READ, 0, 4096, r), 0);
	check_zero(r, 4096);
	td_image_close(f->img);
	f->img = NULL;
	assert_int_equal(run_check(f->path).errors, 2);
}

/* An L2 table cut short by the end of the file: every reader gets EIO. */
static void test_l2_load_fails(void **state)
{
	struct fx *f = *state;
	struct qcow_header h = make_image(f->path, 4 << 20, 12, 9, NULL);
	struct result res[3] = { 0 };
	uint8_t ent[8];
	char r[3][512];

	qcow_put_be64(ent, 4096);
	pwrite_ok(f->path, ent, 8, h.l1_off);
	assert_int_equal(truncate(f->path, 6000), 0);	/* table needs 8192 */
	assert_int_equal(open_qcow(f, 0), 0);
	for (int i = 0; i < 3; i++)
		td_image_submit(f->img, mkreq(TD_OP_READ, i * 4096, 512, r[i], &res[i]));
	for (int i = 0; i < 3; i++) {
		run_until(f->loop, &res[i].done);
		assert_int_equal(res[i].err, -EIO);
	}
	/* Not stuck on the failed table: a new request loads again, fails again. */
	assert_int_equal(do_io(f, TD_OP_READ, 0, 512, r[0]), -EIO);
}

/* ---- discard ---- */

static void test_discard(void **state)
{
	struct fx *f = *state;
	char *w = malloc(16384), r[16384];

	f->ppath = tmpfile_sized(1 << 20);
	fill_pattern(w, 16384, 0, 8);
	pwrite_ok(f->ppath, w, 16384, 0);
	make_image(f->path, 1 << 20, 12, 9, f->ppath);	/* 4 KiB clusters here */
	assert_int_equal(open_qcow(f, 0), 0);
	memset(w, 0x99, 16384);
	assert_int_equal(do_io(f, TD_OP_WRITE, 0, 16384, w), 0);
	/* Clusters 1 and 2 whole, 0 and 3 partly: only 1 and 2 are dropped. */
	assert_int_equal(do_io(f, TD_OP_DISCARD, 100, 3 * 4096 + 100, NULL), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 0, 16384, r), 0);
	assert_memory_equal(r, w, 4096);
	assert_true(check_pattern(r + 4096, 8192, 4096, 8));
	assert_memory_equal(r + 12288, w, 4096);
	free(w);
}

/* ---- dirty metadata writeback ---- */

static uint64_t l1_on_disk(const char *path, const struct qcow_header *h,
			   uint64_t i)
{
	uint8_t b[8];

	pread_ok(path, b, 8, h->l1_off + i * 8);
	return qcow_be64(b);
}

static uint64_t l2_on_disk(const char *path, uint64_t l2off, uint64_t i)
{
	uint8_t b[8];

	pread_ok(path, b, 8, l2off + i * 8);
	return qcow_be64(b);
}

/*
 * An allocating write is answered only once the tables pointing at its data
 * are in the file: a tapdisk killed right after the answer loses nothing.
 */
static void test_writeback_written(void **state)
{
	struct fx *f = *state;
	struct qcow_header h = make_image(f->path, 8 << 20, 12, 9, NULL);
	char w[4096], r[4096];
	struct qcow_check chk;
	uint64_t l2off;

	assert_int_equal(open_qcow(f, 0), 0);
	fill_pattern(w, 4096, 0, 31);
	/* Two new tables (2 MiB each), one cluster each. */
	assert_int_equal(do_io(f, TD_OP_WRITE, 0, 4096, w), 0);
	assert_int_equal(do_io(f, TD_OP_WRITE, 2 << 20, 4096, w), 0);
	assert_int_equal(QI(f->img)->ndirty, 0);
	l2off = l1_on_disk(f->path, &h, 0);
	assert_true(l2off != 0);
	assert_true(l1_on_disk(f->path, &h, 1) != 0);
	assert_true(l2_on_disk(f->path, l2off, 0) != 0);
	chk = run_check(f->path);
	assert_int_equal(chk.errors + chk.leaks, 0);
	assert_int_equal(chk.l2_tables, 2);
	assert_int_equal(chk.data_clusters, 2);
	assert_int_equal(do_io(f, TD_OP_READ, 2 << 20, 4096, r), 0);
	assert_memory_equal(r, w, 4096);
	assert_int_equal(do_io(f, TD_OP_FLUSH, 0, 0, NULL), 0);

	/* An existing table: the new entry is in the file when answered. */
	assert_int_equal(do_io(f, TD_OP_WRITE, 4096, 4096, w), 0);
	assert_true(l2_on_disk(f->path, l2off, 1) != 0);
	/* A discard reaches the file at the next flush. */
	assert_int_equal(do_io(f, TD_OP_DISCARD, 4096, 4096, NULL), 0);
	assert_int_equal(do_io(f, TD_OP_FLUSH, 0, 0, NULL), 0);
	assert_int_equal(l2_on_disk(f->path, l2off, 1), 0);
	chk = run_check(f->path);
	assert_int_equal(chk.errors, 0);
	assert_int_equal(chk.data_clusters, 2);

	/* Close right after answered writes: their writeback completes. */
	assert_int_equal(do_io(f, TD_OP_WRITE, 8192, 4096, w), 0);
	assert_int_equal(do_io(f, TD_OP_WRITE, 4 << 20, 4096, w), 0);
	td_image_close(f->img);
	f->img = NULL;
	chk = run_check(f->path);
	assert_int_equal(chk.errors, 0);
	assert_int_equal(chk.leaks, 1);	/* the discarded cluster */
	assert_int_equal(chk.l2_tables, 3);
	assert_int_equal(chk.data_clusters, 4);
	assert_int_equal(open_qcow(f, TD_OPEN_RDONLY), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 4 << 20, 4096, r), 0);
	assert_memory_equal(r, w, 4096);
}

struct batch {
	int done, err;
};

static void batch_done(struct td_req *req, int err)
{
	struct batch *b = req->arg;

	b->done++;
	if (err)
		b->err = err;
	td_req_free(req);
}

/*
 * Many allocating writes in flight at once, into many new tables (more than
 * the table cache holds): they share writebacks, every table and L1 entry
 * is in the file once all are answered, and no table stays pinned.
 */
static void test_writeback_concurrent(void **state)
{
	struct fx *f = *state;
	/* 512 B clusters, 64 KiB tables: a small cache, 4 MiB per table. */
	struct qcow_header h = make_image(f->path, 160 << 20, 9, 13, NULL);
	enum { N = 32 };
	static char w[N][512];
	struct iovec iov[N];
	struct batch b = { 0 };
	struct qcow_image *s;
	struct qcow_check chk;
	char r[512];

	assert_int_equal(open_qcow(f, 0), 0);
	s = QI(f->img);
	assert_true((uint64_t)N * h.l2_span <= f->img->size);
	for (int i = 0; i < N; i++) {
		struct td_req *req;

		fill_pattern(w[i], 512, i * h.l2_span, 40);
		iov[i].iov_base = w[i];
		iov[i].iov_len = 512;
		req = td_req_new(TD_OP_WRITE, i * h.l2_span, 512, &iov[i], 1,
				 batch_done, &b);
		td_image_submit(f->img, req);
	}
	run_until_count(f->loop, &b.done, N);
	assert_int_equal(b.err, 0);
	assert_int_equal(s->ndirty, 0);
	for (int i = 0; i < N; i++)
		assert_true(l1_on_disk(f->path, &h, i) != 0);
	/* The last writeback's final fdatasync may still run: let it end. */
	for (int i = 0; i < 1000 && s->wb; i++)
		td_loop_run_once(f->loop, 10);
	assert_null(s->wb);
	for (struct qcow_l2 *t = s->l2c.list; t; t = t->next)
		assert_false(t->dirty || t->held || t->l1_new);
	chk = run_check(f->path);
	assert_int_equal(chk.errors + chk.leaks, 0);
	assert_int_equal(chk.l2_tables, N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(do_io(f, TD_OP_READ, i * h.l2_span, 512, r), 0);
		assert_true(check_pattern(r, 512, i * h.l2_span, 40));
	}
}

/* ---- checker ---- */

static int file_read(void *arg, void *buf, size_t len, uint64_t off)
{
	const char *path = arg;
	int fd = open(path, O_RDONLY);
	ssize_t n = pread(fd, buf, len, off);

	close(fd);
	return n == (ssize_t)len ? 0 : -EIO;
}

static void quiet_report(void *arg, bool corrupt, const char *msg)
{
	(void)arg;
	(void)corrupt;
	(void)msg;
}

static struct qcow_check run_check(const char *path)
{
	struct qcow_check chk = { .read = file_read, .report = quiet_report,
				  .arg = (void *)path };
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	chk.file_size = st.st_size;
	assert_true(qcow_check_run(&chk) >= 0);
	return chk;
}

static void test_check_overlap(void **state)
{
	struct fx *f = *state;
	struct qcow_header h = make_image(f->path, 4 << 20, 12, 9, NULL);
	uint8_t ent[8];
	struct qcow_check chk;

	qcow_put_be64(ent, 4096);
	pwrite_ok(f->path, ent, 8, h.l1_off);
	assert_int_equal(truncate(f->path, 4 * 4096), 0);
	/* Two entries for one cluster, one entry pointing at the L2 table. */
	qcow_put_be64(ent, 8192);
	pwrite_ok(f->path, ent, 8, 4096);
	pwrite_ok(f->path, ent, 8, 4096 + 8);
	qcow_put_be64(ent, 4096);
	pwrite_ok(f->path, ent, 8, 4096 + 16);
	chk = run_check(f->path);
	assert_int_equal(chk.errors, 2);
	assert_int_equal(chk.leaks, 1);	/* cluster 3 */
	assert_int_equal(chk.leaked_tail, 3 * 4096);
	/* Misaligned entry. */
	qcow_put_be64(ent, 8192 + 512);
	pwrite_ok(f->path, ent, 8, 4096 + 8);
	qcow_put_be64(ent, 0);
	pwrite_ok(f->path, ent, 8, 4096 + 16);
	chk = run_check(f->path);
	assert_int_equal(chk.errors, 1);
}

/* An old Xen image: extension header, page-aligned little-endian L1. */
static void test_xen_le_l1(void **state)
{
	struct fx *f = *state;
	struct qcow_header h;
	uint8_t hdr[64], ent[8];
	char w[4096], r[4096];

	memset(&h, 0, sizeof(h));
	h.size = 4 << 20;
	h.cluster_bits = 12;
	h.l2_bits = 9;
	h.l1_off = 4096;
	h.xen = true;
	h.xen_flags = QCOW_XEN_SPARSE;	/* no L1_BE: little-endian L1 */
	qcow_header_write(&h, hdr);
	assert_int_equal(truncate(f->path, 3 * 4096), 0);
	pwrite_ok(f->path, hdr, 64, 0);
	for (int i = 0; i < 8; i++)
		ent[i] = (uint8_t)((8192ull >> (8 * i)) & 0xff);	/* L1[0] = 8192, LE */
	pwrite_ok(f->path, ent, 8, 4096);
	assert_int_equal(open_qcow(f, 0), 0);
	fill_pattern(w, sizeof(w), 0, 12);
	assert_int_equal(do_io(f, TD_OP_WRITE, 4096, 4096, w), 0);
	/* A second L2 table: its L1 entry is written little-endian too. */
	assert_int_equal(do_io(f, TD_OP_WRITE, (2 << 20) + 4096, 4096, w), 0);
	td_image_close(f->img);
	assert_int_equal(open_qcow(f, 0), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 4096, 4096, r), 0);
	assert_memory_equal(w, r, 4096);
	assert_int_equal(do_io(f, TD_OP_READ, (2 << 20) + 4096, 4096, r), 0);
	assert_memory_equal(w, r, 4096);
	td_image_close(f->img);
	f->img = NULL;
	pread_ok(f->path, ent, 8, 4096 + 8);
	assert_int_equal(ent[7], 0);	/* high byte last: little-endian */
	assert_int_equal(run_check(f->path).errors, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_valid),
		cmocka_unit_test(test_header_corrupt),
		cmocka_unit_test(test_header_xen),
		cmocka_unit_test(test_l2_cache),
		cmocka_unit_test_setup_teardown(test_open_corrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rw_cluster_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain_raw, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain_qcow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compressed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compressed_corrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_alloc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_new_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_l2_load_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writeback_written, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writeback_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_overlap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_xen_le_l1, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
