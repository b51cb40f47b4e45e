// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Unit tests for the vmdk driver (tapdisk/drivers/vmdk.c) through
 * td_image_open()/td_image_submit(), on images made by qemu-img: each
 * subformat read back against `qemu-img convert -O raw`, written through
 * the driver and checked with `qemu-img check` and `qemu-img compare`,
 * delta links, concurrent allocation, and corrupt images that must fail to
 * open with a message naming the file and the problem.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <zlib.h>

#include "aio.h"
#include "drivers/vmdk.h"	/* the grain-table cache, for its test */
#include "image.h"
#include "util.h"
#include "vmdk-format.h"

#define MiB	(1ull << 20)
#define GiB	(1ull << 30)

struct fixture {
	struct td_loop *loop;
	struct td_aio *aio;
	struct td_ctx ctx;
	char dir[64];
	char path[256];			/* scratch for names in dir */
	struct td_image *img;
};

static bool have_qemu_img(void)
{
	return system("qemu-img --version >/dev/null 2>&1") == 0 &&
	       system("qemu-io --version >/dev/null 2>&1") == 0;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char *cmd;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	assert_true(vasprintf(&cmd, fmt, ap) >= 0);
	va_end(ap);
	rc = system(cmd);
	if (rc)
		print_message("command failed (%d): %s\n", rc, cmd);
	free(cmd);
	return rc;
}

static const char *in_dir(struct fixture *f, const char *name)
{
	snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, name);
	return f->path;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->loop = td_loop_create();
	f->aio = td_aio_create(f->loop, 64);
	td_ctx_init(&f->ctx, f->loop, f->aio);
	strcpy(f->dir, "/var/tmp/blktap-vmdk.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->img)
		td_image_close(f->img);
	sh("rm -rf '%s'", f->dir);
	td_aio_destroy(f->aio);
	td_loop_destroy(f->loop);
	free(f);
	return 0;
}

static int open_img(struct fixture *f, const char *name, unsigned int flags)
{
	char spec[300];

	if (f->img)
		td_image_close(f->img);
	f->img = NULL;
	snprintf(spec, sizeof(spec), "vmdk:%s/%s", f->dir, name);
	return td_image_open(&f->ctx, spec, flags, &f->img);
}

/* Open @name expecting failure @err with a message holding @needle. */
static void open_fails(struct fixture *f, const char *name, int err,
		       const char *needle)
{
	char log[] = "/var/tmp/blktap-vmdk-log.XXXXXX", msg[4096] = "";
	int fd = mkstemp(log), saved = dup(2);
	ssize_t n;

	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	assert_int_equal(open_img(f, name, 0), err);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, msg, sizeof(msg) - 1, 0);
	close(fd);
	unlink(log);
	assert_true(n > 0);
	if (!strstr(msg, needle) || !strstr(msg, f->dir))
		fail_msg("message '%s' should name the file and say '%s'", msg, needle);
}

static int do_io(struct fixture *f, enum td_op op, uint64_t off, uint64_t len,
		 void *buf)
{
	return image_io(f->loop, f->img, op, off, len, buf, 0);
}

/* Compare @len bytes at @off of the open image with the raw file @raw. */
static void compare_raw(struct fixture *f, const char *raw, uint64_t off,
			uint64_t len)
{
	char *a = malloc(len), *b = malloc(len);
	int fd = open(raw, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, b, len, off), (ssize_t)len);
	close(fd);
	assert_int_equal(do_io(f, TD_OP_READ, off, len, a), 0);
	if (memcmp(a, b, len)) {
		uint64_t i = 0;

		while (a[i] == b[i])
			i++;
		fail_msg("%s differs from %s at offset %llu", f->img->name, raw,
			 (unsigned long long)(off + i));
	}
	free(a);
	free(b);
}

static const char *const qemu_writes =
	"-c 'write -P 0xab 0 1M' -c 'write -P 0x11 100000 3000' "
	"-c 'write -P 0xcd 2147450880 100k' -c 'write -P 0x12 4G 4k' "
	"-c 'write -P 0x13 5368705024 4096'";

/* Regions the patterns above touch, plus their neighbours. */
static const uint64_t regions[][2] = {
	{ 0, 2 * MiB }, { 2 * GiB - MiB, 2 * MiB }, { 4 * GiB - 65536, 3 * 65536 },
	{ 5 * GiB - MiB, MiB }, { 3 * GiB + 12345, 70000 },
};

static void read_subformat(struct fixture *f, const char *fmt)
{
	char raw[300];

	snprintf(raw, sizeof(raw), "%s/ref.raw", f->dir);
	if (!strcmp(fmt, "streamOptimized")) {
		assert_int_equal(sh("cd %s && qemu-img create -q -f raw src.raw 5G && "
				    "qemu-io -f raw %s src.raw >/dev/null && "
				    "qemu-img convert -O vmdk -o subformat=streamOptimized src.raw d.vmdk",
				    f->dir, qemu_writes), 0);
	} else {
		assert_int_equal(sh("cd %s && qemu-img create -q -f vmdk -o subformat=%s d.vmdk 5G && "
				    "qemu-io -f vmdk %s d.vmdk >/dev/null",
				    f->dir, fmt, qemu_writes), 0);
	}
	assert_int_equal(sh("cd %s && qemu-img convert -O raw d.vmdk ref.raw", f->dir), 0);
	assert_int_equal(open_img(f, "d.vmdk", TD_OPEN_RDONLY), 0);
	assert_int_equal(f->img->size, 5 * GiB);
	for (size_t i = 0; i < sizeof(regions) / sizeof(regions[0]); i++)
		compare_raw(f, raw, regions[i][0], regions[i][1]);
}

static void test_read_monolithic_sparse(void **s) { read_subformat(*s, "monolithicSparse"); }
static void test_read_monolithic_flat(void **s) { read_subformat(*s, "monolithicFlat"); }
static void test_read_2gb_sparse(void **s) { read_subformat(*s, "twoGbMaxExtentSparse"); }
static void test_read_2gb_flat(void **s) { read_subformat(*s, "twoGbMaxExtentFlat"); }
static void test_read_stream(void **s) { read_subformat(*s, "streamOptimized"); }

/* The CID qemu-img reads from @name. */
static unsigned long get_cid(struct fixture *f, const char *name)
{
	char cmd[400], line[256];
	unsigned long cid = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "qemu-img info --output=json '%s/%s'", f->dir, name);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (fgets(line, sizeof(line), p)) {
		char *c = strstr(line, "\"cid\":");

		if (c)
			cid = strtoul(c + 6, NULL, 10);
	}
	assert_int_equal(pclose(p), 0);
	assert_true(cid != 0);
	return cid;
}

/* The same writes on the image (through the driver) and on a raw file. */
static void write_both(struct fixture *f, int rawfd, uint64_t off, uint64_t len,
		       unsigned int seed)
{
	char *buf = malloc(len);

	fill_pattern(buf, len, off, seed);
	assert_int_equal(do_io(f, TD_OP_WRITE, off, len, buf), 0);
	assert_int_equal(pwrite(rawfd, buf, len, off), (ssize_t)len);
	free(buf);
}

static void write_subformat(struct fixture *f, const char *fmt)
{
	static const uint64_t w[][2] = {
		{ 0, MiB },			/* whole grains */
		{ 100000, 3000 },		/* inside one grain */
		{ 65536 * 20 - 100, 200 },	/* across two unallocated grains */
		{ 2 * GiB - 5000, 10000 },	/* across extents of the split formats */
		{ 3 * GiB, 65536 },		/* one aligned grain */
		{ 4000000000ull, 1 },		/* one byte */
		{ 5 * GiB - 4096, 4096 },	/* the very end */
		{ 4096, 8192 },			/* over allocated data */
	};
	char raw[300];
	int fd;

	unsigned long cid;

	snprintf(raw, sizeof(raw), "%s/ref.raw", f->dir);
	assert_int_equal(sh("cd %s && qemu-img create -q -f vmdk -o subformat=%s d.vmdk 5G && "
			    "qemu-img create -q -f raw ref.raw 5G", f->dir, fmt), 0);
	cid = get_cid(f, "d.vmdk");
	/* Opening and reading leave the CID alone. */
	assert_int_equal(open_img(f, "d.vmdk", 0), 0);
	compare_raw(f, raw, 0, MiB);
	assert_int_equal(get_cid(f, "d.vmdk"), cid);
	fd = open(raw, O_WRONLY);
	assert_true(fd >= 0);
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++)
		write_both(f, fd, w[i][0], w[i][1], (unsigned int)i + 1);
	close(fd);
	assert_int_equal(do_io(f, TD_OP_FLUSH, 0, 0, NULL), 0);
	for (size_t i = 0; i < sizeof(regions) / sizeof(regions[0]); i++)
		compare_raw(f, raw, regions[i][0], regions[i][1]);
	td_image_close(f->img);
	f->img = NULL;
	assert_int_equal(sh("cd %s && qemu-img check -q -f vmdk d.vmdk && "
			    "qemu-img compare -q -f vmdk -F raw d.vmdk ref.raw", f->dir), 0);
	/* Written: a new CID, as qemu and VMware do. */
	assert_true(get_cid(f, "d.vmdk") != cid);
}

static void test_write_monolithic_sparse(void **s) { write_subformat(*s, "monolithicSparse"); }
static void test_write_monolithic_flat(void **s) { write_subformat(*s, "monolithicFlat"); }
static void test_write_2gb_sparse(void **s) { write_subformat(*s, "twoGbMaxExtentSparse"); }
static void test_write_2gb_flat(void **s) { write_subformat(*s, "twoGbMaxExtentFlat"); }

static void test_stream_is_read_only(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(sh("cd %s && qemu-img create -q -f raw s.raw 1M && "
			    "qemu-img convert -O vmdk -o subformat=streamOptimized s.raw d.vmdk",
			    f->dir), 0);
	open_fails(f, "d.vmdk", -EROFS, "read-only");
}

struct multi {
	int done, err;
};

static void multi_done(struct td_req *req, int err)
{
	struct multi *m = req->arg;

	m->done++;
	if (err)
		m->err = err;
	td_req_free(req);
}

/* Many writes to one unallocated grain at once: it is allocated once. */
static void test_concurrent_allocation(void **state)
{
	struct fixture *f = *state;
	enum { N = 16, PIECE = 4096 };
	static char bufs[N][PIECE];
	struct iovec iov[N];
	struct multi m = { 0 };
	struct stat before, after;
	char *chk = malloc(N * PIECE);

	assert_int_equal(sh("cd %s && qemu-img create -q -f vmdk base.vmdk 64M && "
			    "qemu-io -f vmdk -c 'write -P 0x66 0 64M' base.vmdk >/dev/null && "
			    "qemu-img create -q -f vmdk -b base.vmdk -F vmdk d.vmdk", f->dir), 0);
	assert_int_equal(open_img(f, "d.vmdk", 0), 0);
	assert_int_equal(stat(in_dir(f, "d.vmdk"), &before), 0);
	/* Every other 4 KiB of grain 3; the gaps come from the parent. */
	for (int i = 0; i < N; i += 2) {
		struct td_req *req;

		memset(bufs[i], 'a' + i, PIECE);
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = PIECE;
		req = td_req_new(TD_OP_WRITE, 3 * 65536 + i * PIECE, PIECE,
				 &iov[i], 1, multi_done, &m);
		td_image_submit(f->img, req);
	}
	run_until_count(f->loop, &m.done, N / 2);
	assert_int_equal(m.err, 0);
	assert_int_equal(stat(in_dir(f, "d.vmdk"), &after), 0);
	assert_int_equal(after.st_size - before.st_size, 65536);
	assert_int_equal(do_io(f, TD_OP_READ, 3 * 65536, N * PIECE, chk), 0);
	for (int i = 0; i < N; i++)
		for (int j = 0; j < PIECE; j++)
			assert_int_equal((unsigned char)chk[i * PIECE + j],
					 i % 2 ? 0x66 : 'a' + i);
	td_image_close(f->img);
	f->img = NULL;
	assert_int_equal(sh("cd %s && qemu-img check -q d.vmdk", f->dir), 0);
	free(chk);
}

/* A delta link: reads fall through, partial writes copy the rest from the parent. */
static void test_delta_link(void **state)
{
	struct fixture *f = *state;
	char raw[300];
	int fd;

	snprintf(raw, sizeof(raw), "%s/ref.raw", f->dir);
	assert_int_equal(sh("cd %s && qemu-img create -q -f vmdk base.vmdk 64M && "
			    "qemu-io -f vmdk -c 'write -P 0x77 0 8M' -c 'write -P 0x78 20M 1M' "
			    "base.vmdk >/dev/null && "
			    "qemu-img create -q -f vmdk -b base.vmdk -F vmdk d.vmdk && "
			    "qemu-io -f vmdk -c 'write -P 0x99 4M 100k' d.vmdk >/dev/null && "
			    "cp base.vmdk base.orig && qemu-img convert -O raw d.vmdk ref.raw",
			    f->dir), 0);
	assert_int_equal(open_img(f, "d.vmdk", 0), 0);
	assert_non_null(f->img->parent);
	assert_string_equal(f->img->parent->drv->name, "vmdk");
	compare_raw(f, raw, 0, 24 * MiB);
	fd = open(raw, O_WRONLY);
	write_both(f, fd, 1000, 3000, 5);
	write_both(f, fd, 20 * MiB + 7, 3000, 6);
	write_both(f, fd, 4 * MiB + 50000, 100000, 7);	/* over allocated grains */
	write_both(f, fd, 40 * MiB, 65536, 8);		/* past the parent's data */
	close(fd);
	compare_raw(f, raw, 0, 64 * MiB);
	td_image_close(f->img);
	f->img = NULL;
	assert_int_equal(sh("cd %s && qemu-img check -q d.vmdk && "
			    "qemu-img compare -q -F raw d.vmdk ref.raw && cmp -s base.vmdk base.orig",
			    f->dir), 0);
}

/* A hand-written descriptor: raw parent, RDONLY and ZERO extents. */
static void test_descriptor_raw_parent(void **state)
{
	struct fixture *f = *state;
	char *buf = malloc(MiB), *zero = calloc(1, MiB);
	FILE *d;

	assert_int_equal(sh("cd %s && qemu-img create -q -f raw base.raw 4M && "
			    "qemu-io -f raw -c 'write -P 0x42 0 4M' base.raw >/dev/null && "
			    "qemu-img create -q -f vmdk s.vmdk 2M && "
			    "qemu-img create -q -f raw ro.raw 1M", f->dir), 0);
	d = fopen(in_dir(f, "d.vmdk"), "w");
	fprintf(d, "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=abcdef01\n"
		   "createType=\"custom\"\nparentFileNameHint=\"base.raw\"\n"
		   "RW 4096 SPARSE \"s.vmdk\"\nRDONLY 2048 FLAT \"ro.raw\" 0\nRW 2048 ZERO\n");
	fclose(d);
	assert_int_equal(open_img(f, "d.vmdk", 0), 0);
	assert_int_equal(f->img->size, 4 * MiB);
	assert_non_null(f->img->parent);
	assert_string_equal(f->img->parent->drv->name, "aio");
	assert_int_equal(do_io(f, TD_OP_READ, 0, MiB, buf), 0);
	for (int i = 0; i < (int)MiB; i++)
		assert_int_equal((unsigned char)buf[i], 0x42);
	assert_int_equal(do_io(f, TD_OP_READ, 3 * MiB, MiB, buf), 0);
	assert_memory_equal(buf, zero, MiB);
	/* Writes to the sparse part copy the rest of the grain from base.raw. */
	memset(buf, 0x17, 100);
	assert_int_equal(do_io(f, TD_OP_WRITE, 70000, 100, buf), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 65536, 65536, buf), 0);
	for (int i = 0; i < 65536; i++)
		assert_int_equal((unsigned char)buf[i],
				 i >= 70000 - 65536 && i < 70100 - 65536 ? 0x17 : 0x42);
	assert_int_equal(do_io(f, TD_OP_WRITE, 2 * MiB, 512, buf), -EROFS);
	assert_int_equal(do_io(f, TD_OP_WRITE, 3 * MiB, 512, buf), -EROFS);
	assert_int_equal(do_io(f, TD_OP_FLUSH, 0, 0, NULL), 0);
	free(buf);
	free(zero);
}

/* A qcow parent, recognised by its magic ('QFI\xfb'). */
static void test_qcow_parent(void **state)
{
	struct fixture *f = *state;
	char raw[300];
	int fd;

	if (!td_driver_find("qcow"))
		skip();
	assert_int_equal(sh("cd %s && qemu-img create -q -f qcow base.qcow 8M && "
			    "qemu-io -f qcow -c 'write -P 0x3c 0 8M' base.qcow >/dev/null && "
			    "qemu-img create -q -f vmdk s.vmdk 8M && "
			    "qemu-img convert -O raw base.qcow ref.raw", f->dir), 0);
	fd = open(in_dir(f, "d.vmdk"), O_CREAT | O_WRONLY, 0644);
	dprintf(fd, "# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=2\n"
		    "createType=\"monolithicSparse\"\nparentFileNameHint=\"base.qcow\"\n"
		    "RW 16384 SPARSE \"s.vmdk\"\n");
	close(fd);
	assert_int_equal(open_img(f, "d.vmdk", 0), 0);
	assert_non_null(f->img->parent);
	assert_string_equal(f->img->parent->drv->name, "qcow");
	snprintf(raw, sizeof(raw), "%s/ref.raw", f->dir);
	compare_raw(f, raw, 0, 8 * MiB);
	fd = open(raw, O_WRONLY);
	write_both(f, fd, 5 * 65536 + 3, 7, 11);
	close(fd);
	compare_raw(f, raw, 0, 8 * MiB);
}

/* zeroed_grain=on: grain table entry 1 reads as zeros, not the parent. */
static void test_zeroed_grain(void **state)
{
	struct fixture *f = *state;
	char *buf = malloc(65536);

	assert_int_equal(sh("cd %s && qemu-img create -q -f vmdk base.vmdk 4M && "
			    "qemu-io -f vmdk -c 'write -P 0x55 0 4M' base.vmdk >/dev/null && "
			    "qemu-img create -q -f vmdk -o zeroed_grain=on -b base.vmdk -F vmdk d.vmdk && "
			    "qemu-io -f vmdk -c 'write -z 0 128k' d.vmdk >/dev/null", f->dir), 0);
	assert_int_equal(open_img(f, "d.vmdk", 0), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 65536, 65536, buf), 0);
	for (int i = 0; i < 65536; i++)
		assert_int_equal(buf[i], 0);
	memset(buf, 0x31, 10);
	assert_int_equal(do_io(f, TD_OP_WRITE, 65536 + 10, 10, buf), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 65536, 65536, buf), 0);
	for (int i = 0; i < 65536; i++)
		assert_int_equal((unsigned char)buf[i], i >= 10 && i < 20 ? 0x31 : 0);
	assert_int_equal(do_io(f, TD_OP_READ, 2 * 65536, 10, buf), 0);
	assert_int_equal((unsigned char)buf[0], 0x55);
	td_image_close(f->img);
	f->img = NULL;
	assert_int_equal(sh("cd %s && qemu-img check -q d.vmdk", f->dir), 0);
	free(buf);
}

/*
 * A stream-optimized image as VMware writes it: grain directory at the
 * end, found through the footer. Grains 0 and 2 of 4 hold data.
 */
static void test_stream_footer(void **state)
{
	struct fixture *f = *state;
	enum { G = 65536, GS = 128 };
	struct vmdk_header h = {
		.version = 3, .capacity = 4 * GS, .grain_sectors = GS,
		.desc_offset = 1, .desc_size = 2, .gtes_per_gt = 512,
		.gd_offset = VMDK_GD_AT_END, .overhead = 3,
		.flags = VMDK_FLAG_NL_TEST | VMDK_FLAG_COMPRESSED | VMDK_FLAG_MARKERS,
		.compress = VMDK_COMPRESS_DEFLATE,
	};
	static uint8_t file[64 * 512], grain[G], out[G];
	uint64_t sec = 3, gt_sec, gd_sec;
	uint32_t gt[512] = { 0 };
	int fd;

	snprintf((char *)file + 512, 1024,
		 "# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n"
		 "createType=\"streamOptimized\"\nRW %d SPARSE \"d.vmdk\"\n", 4 * GS);
	for (int g = 0; g < 4; g += 2) {
		uLongf zlen = sizeof(file) / 4;

		fill_pattern(grain, G, (uint64_t)g * G, 3);
		assert_int_equal(compress(file + sec * 512 + 12, &zlen, grain, G), Z_OK);
		vmdk_put_le64(file + sec * 512, (uint64_t)g * GS);
		vmdk_put_le32(file + sec * 512 + 8, (uint32_t)zlen);
		gt[g] = (uint32_t)sec;
		sec += (12 + zlen + 511) / 512;
	}
	vmdk_put_le64(file + sec++ * 512, 4);		/* GT marker, 4 sectors */
	vmdk_put_le32(file + (sec - 1) * 512 + 12, VMDK_MARKER_GT);
	gt_sec = sec;
	for (int i = 0; i < 512; i++)
		vmdk_put_le32(file + gt_sec * 512 + 4 * i, gt[i]);
	sec += 4;
	vmdk_put_le64(file + sec++ * 512, 1);		/* GD marker */
	vmdk_put_le32(file + (sec - 1) * 512 + 12, VMDK_MARKER_GD);
	gd_sec = sec++;
	vmdk_put_le32(file + gd_sec * 512, (uint32_t)gt_sec);
	vmdk_put_le64(file + sec++ * 512, 1);		/* footer marker */
	vmdk_put_le32(file + (sec - 1) * 512 + 12, VMDK_MARKER_FOOTER);
	vmdk_header_encode(&h, file);
	h.gd_offset = gd_sec;
	vmdk_header_encode(&h, file + sec++ * 512);	/* footer */
	sec++;						/* end of stream: zeros */
	assert_true(sec * 512 <= sizeof(file));

	fd = open(in_dir(f, "d.vmdk"), O_CREAT | O_WRONLY, 0644);
	assert_int_equal(write(fd, file, sec * 512), (ssize_t)(sec * 512));
	close(fd);
	assert_int_equal(open_img(f, "d.vmdk", TD_OPEN_RDONLY), 0);
	assert_int_equal(f->img->size, 4 * G);
	for (int g = 0; g < 4; g++) {
		assert_int_equal(do_io(f, TD_OP_READ, (uint64_t)g * G, G, out), 0);
		if (g % 2) {
			memset(grain, 0, G);
			assert_memory_equal(out, grain, G);
		} else {
			assert_true(check_pattern(out, G, (uint64_t)g * G, 3));
		}
	}
	/* A part of a grain, and the same grain again (from the cache). */
	assert_int_equal(do_io(f, TD_OP_READ, 2 * G + 1000, 3000, out), 0);
	assert_true(check_pattern(out, 3000, 2 * G + 1000, 3));
	assert_int_equal(do_io(f, TD_OP_READ, 2 * G + 5000, 3000, out), 0);
	assert_true(check_pattern(out, 3000, 2 * G + 5000, 3));
	td_image_close(f->img);
	f->img = NULL;
	assert_int_equal(sh("cd %s && qemu-img compare -q -f vmdk d.vmdk d.vmdk", f->dir), 0);
}

/*
 * Grain tables that are not allocated yet (GD entries 0, as VMware leaves
 * them): writes allocate the table once, even with several grains of it
 * written at the same time, and point both directories at it.
 */
static void test_new_grain_table(void **state)
{
	struct fixture *f = *state;
	enum { N = 6 };
	static char bufs[N][8192];
	struct iovec iov[N];
	struct multi m = { 0 };
	uint8_t hdr[512], zero[64] = { 0 }, gd[8];
	char raw[300];
	struct stat before, after;
	int fd, rawfd;

	assert_int_equal(sh("cd %s && qemu-img create -q -f vmdk d.vmdk 64M && "
			    "qemu-img create -q -f raw ref.raw 64M", f->dir), 0);
	fd = open(in_dir(f, "d.vmdk"), O_RDWR);
	assert_int_equal(pread(fd, hdr, 512, 0), 512);
	/* 64 MiB = 2 tables: clear both entries of the GD and the redundant GD. */
	assert_int_equal(pwrite(fd, zero, 8, vmdk_le64(hdr + 56) * 512), 8);
	assert_int_equal(pwrite(fd, zero, 8, vmdk_le64(hdr + 48) * 512), 8);
	close(fd);
	assert_int_equal(stat(in_dir(f, "d.vmdk"), &before), 0);
	assert_int_equal(open_img(f, "d.vmdk", 0), 0);

	snprintf(raw, sizeof(raw), "%s/ref.raw", f->dir);
	rawfd = open(raw, O_WRONLY);
	/* Grains 0, 5, 9 (table 0) and 600, 601, 1000 (table 1), all at once. */
	for (int i = 0; i < N; i++) {
		static const uint64_t grain[N] = { 0, 5, 9, 600, 601, 1000 };
		uint64_t off = grain[i] * 65536 + 1000 * i;
		struct td_req *req;

		fill_pattern(bufs[i], sizeof(bufs[i]), off, 40 + i);
		assert_int_equal(pwrite(rawfd, bufs[i], sizeof(bufs[i]), off), 8192);
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = sizeof(bufs[i]);
		req = td_req_new(TD_OP_WRITE, off, sizeof(bufs[i]), &iov[i], 1,
				 multi_done, &m);
		td_image_submit(f->img, req);
	}
	close(rawfd);
	run_until_count(f->loop, &m.done, N);
	assert_int_equal(m.err, 0);
	compare_raw(f, raw, 0, 64 * MiB);
	td_image_close(f->img);
	f->img = NULL;
	/* Two tables in two copies (2 KiB each) and six grains. */
	assert_int_equal(stat(in_dir(f, "d.vmdk"), &after), 0);
	assert_int_equal(after.st_size - before.st_size, 4 * 2048 + 6 * 65536);
	fd = open(in_dir(f, "d.vmdk"), O_RDONLY);
	assert_int_equal(pread(fd, gd, 8, vmdk_le64(hdr + 56) * 512), 8);
	assert_true(vmdk_le32(gd) && vmdk_le32(gd + 4));
	assert_int_equal(pread(fd, gd, 8, vmdk_le64(hdr + 48) * 512), 8);
	assert_true(vmdk_le32(gd) && vmdk_le32(gd + 4));
	close(fd);
	assert_int_equal(sh("cd %s && qemu-img check -q d.vmdk && "
			    "qemu-img compare -q -F raw d.vmdk ref.raw", f->dir), 0);
	/* Reopened: the tables are found through the directory. */
	assert_int_equal(open_img(f, "d.vmdk", TD_OPEN_RDONLY), 0);
	compare_raw(f, raw, 0, 64 * MiB);
}

/* The last grain cut short by the end of the file: the rest reads as zeros. */
static void test_grain_past_eof(void **state)
{
	struct fixture *f = *state;
	char *buf = malloc(65536), w[100];
	struct stat st;

	assert_int_equal(sh("cd %s && qemu-img create -q -f vmdk d.vmdk 4M && "
			    "qemu-io -f vmdk -c 'write -P 0x61 1M 64k' d.vmdk >/dev/null",
			    f->dir), 0);
	assert_int_equal(stat(in_dir(f, "d.vmdk"), &st), 0);
	assert_int_equal(truncate(f->path, st.st_size - 32768), 0);
	assert_int_equal(open_img(f, "d.vmdk", 0), 0);
	assert_int_equal(do_io(f, TD_OP_READ, MiB, 65536, buf), 0);
	for (int i = 0; i < 65536; i++)
		assert_int_equal((unsigned char)buf[i], i < 32768 ? 0x61 : 0);
	/* Writing past the end extends the file, and reads see it. */
	memset(w, 0x62, sizeof(w));
	assert_int_equal(do_io(f, TD_OP_WRITE, MiB + 40000, sizeof(w), w), 0);
	assert_int_equal(do_io(f, TD_OP_READ, MiB + 39990, 120, buf), 0);
	for (int i = 0; i < 120; i++)
		assert_int_equal((unsigned char)buf[i], i >= 10 && i < 110 ? 0x62 : 0);
	free(buf);
}

static off_t file_size(struct fixture *f, const char *name)
{
	struct stat st;

	assert_int_equal(stat(in_dir(f, name), &st), 0);
	return st.st_size;
}

/*
 * Write-zeroes leaves grains that already read as zeros unallocated (the
 * image stays sparse), zeroes allocated ones in place, allocates with
 * TD_REQ_NO_HOLE, and over a parent writes real zeros.
 */
static void test_write_zeroes(void **state)
{
	struct fixture *f = *state;
	char *buf = malloc(8 * MiB), *zero = calloc(1, 8 * MiB);
	off_t size0, size1;
	struct result r = { 0 };
	struct td_req *req;

	assert_int_equal(sh("cd %s && qemu-img create -q -f vmdk d.vmdk 64M && "
			    "qemu-io -f vmdk -c 'write -P 0x44 3M 64k' d.vmdk >/dev/null",
			    f->dir), 0);
	size0 = file_size(f, "d.vmdk");
	assert_int_equal(open_img(f, "d.vmdk", 0), 0);
	assert_int_equal(do_io(f, TD_OP_WRITE_ZEROES, 0, 8 * MiB, NULL), 0);
	assert_int_equal(file_size(f, "d.vmdk"), size0);
	assert_int_equal(do_io(f, TD_OP_READ, 0, 8 * MiB, buf), 0);
	assert_memory_equal(buf, zero, 8 * MiB);
	/* NO_HOLE: allocated (two grains), still zeros. */
	req = td_req_new(TD_OP_WRITE_ZEROES, 16 * MiB + 100, 65536, NULL, 0,
			 req_done, &r);
	req->flags = TD_REQ_NO_HOLE;
	td_image_submit(f->img, req);
	run_until(f->loop, &r.done);
	assert_int_equal(r.err, 0);
	size1 = file_size(f, "d.vmdk");
	assert_int_equal(size1 - size0, 2 * 65536);
	assert_int_equal(do_io(f, TD_OP_READ, 16 * MiB, 2 * 65536, buf), 0);
	assert_memory_equal(buf, zero, 2 * 65536);
	td_image_close(f->img);
	f->img = NULL;
	assert_int_equal(sh("cd %s && qemu-img check -q d.vmdk && "
			    "qemu-io -f vmdk -c 'read -P 0 0 64M' d.vmdk | grep -q 'read 67108864'",
			    f->dir), 0);

	/* Over a parent: zeros must hide the parent's data. */
	assert_int_equal(sh("cd %s && qemu-img create -q -f vmdk -b d.vmdk -F vmdk c.vmdk && "
			    "qemu-io -f vmdk -c 'write -P 0x45 0 4M' d.vmdk >/dev/null",
			    f->dir), 0);
	assert_int_equal(open_img(f, "c.vmdk", 0), 0);
	assert_int_equal(do_io(f, TD_OP_WRITE_ZEROES, 1000, 3 * MiB, NULL), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 0, 4 * MiB, buf), 0);
	for (uint64_t i = 0; i < 4 * MiB; i++)
		if ((unsigned char)buf[i] != (i >= 1000 && i < 1000 + 3 * MiB ? 0 : 0x45))
			fail_msg("byte %llu is %#x", (unsigned long long)i, (unsigned char)buf[i]);
	td_image_close(f->img);
	f->img = NULL;
	assert_int_equal(sh("cd %s && qemu-img check -q c.vmdk", f->dir), 0);
	free(buf);
	free(zero);
}

/*
 * A grain-table cache of two tables under many concurrent reads and writes
 * spread over 32 tables: tables are loaded, pinned and evicted, and every
 * byte still comes back right.
 */
static void test_gt_cache(void **state)
{
	struct fixture *f = *state;
	enum { N = 48, LEN = 100000 };
	static char bufs[N][LEN], want[LEN];
	struct vmdk_image *vi;
	struct iovec iov[N];
	struct multi m = { 0 };
	uint64_t offs[N];
	char raw[300];
	int rawfd;

	assert_int_equal(sh("cd %s && qemu-img create -q -f vmdk d.vmdk 1G && "
			    "qemu-io -f vmdk -c 'write -P 0x71 0 64M' -c 'write -P 0x72 500M 100M' "
			    "-c 'write -P 0x73 1000M 24M' d.vmdk >/dev/null && "
			    "qemu-img convert -O raw d.vmdk ref.raw", f->dir), 0);
	assert_int_equal(open_img(f, "d.vmdk", 0), 0);
	vi = f->img->priv;
	vmdk_gt_set_limit(&vi->ext[0], 2);
	assert_int_equal(vi->ext[0].n_resident, 2);
	snprintf(raw, sizeof(raw), "%s/ref.raw", f->dir);
	rawfd = open(raw, O_RDWR);
	srandom(7);
	for (int i = 0; i < N; i++) {
		struct td_req *req;

		offs[i] = (uint64_t)random() % (GiB - LEN);
		fill_pattern(bufs[i], LEN, offs[i], 60 + i);
		assert_int_equal(pwrite(rawfd, bufs[i], LEN, offs[i]), LEN);
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = LEN;
		req = td_req_new(TD_OP_WRITE, offs[i], LEN, &iov[i], 1, multi_done, &m);
		td_image_submit(f->img, req);
	}
	run_until_count(f->loop, &m.done, N);
	assert_int_equal(m.err, 0);
	assert_true(vi->ext[0].n_resident <= 2);
	/* Reads at once, each checked against the reference. */
	memset(&m, 0, sizeof(m));
	for (int i = 0; i < N; i++) {
		struct td_req *req;

		offs[i] = (uint64_t)random() % (GiB - LEN);
		req = td_req_new(TD_OP_READ, offs[i], LEN, &iov[i], 1, multi_done, &m);
		td_image_submit(f->img, req);
	}
	run_until_count(f->loop, &m.done, N);
	assert_int_equal(m.err, 0);
	for (int i = 0; i < N; i++) {
		assert_int_equal(pread(rawfd, want, LEN, offs[i]), LEN);
		if (memcmp(want, bufs[i], LEN))
			fail_msg("read %d at %llu differs", i, (unsigned long long)offs[i]);
	}
	close(rawfd);
	assert_true(vi->ext[0].n_resident <= 2);
	td_image_close(f->img);
	f->img = NULL;
	assert_int_equal(sh("cd %s && qemu-img check -q d.vmdk && "
			    "qemu-img compare -q -F raw d.vmdk ref.raw", f->dir), 0);
}

/* A corrupt table beyond those read at open fails the I/O that needs it. */
static void test_gt_corrupt_lazy(void **state)
{
	struct fixture *f = *state;
	uint8_t hdr[512], gd[4], gte[4];
	char buf[4096];
	int fd;

	/* 40 GiB: 1280 tables, more than the cache reads at open. */
	assert_int_equal(sh("cd %s && qemu-img create -q -f vmdk d.vmdk 40G && "
			    "qemu-io -f vmdk -c 'write -P 0x11 39G 64k' d.vmdk >/dev/null",
			    f->dir), 0);
	fd = open(in_dir(f, "d.vmdk"), O_RDWR);
	assert_int_equal(pread(fd, hdr, 512, 0), 512);
	assert_int_equal(pread(fd, gd, 4, vmdk_le64(hdr + 56) * 512 + 4 * 1100), 4);
	vmdk_put_le32(gte, 0x7fffffff);
	assert_int_equal(pwrite(fd, gte, 4, (uint64_t)vmdk_le32(gd) * 512 + 4 * 5), 4);
	close(fd);
	assert_int_equal(open_img(f, "d.vmdk", TD_OPEN_RDONLY), 0);
	assert_int_equal(do_io(f, TD_OP_READ, 1100ull * 32 * MiB, 4096, buf), -EIO);
	/* The bad table is not kept: it is read (and refused) again. */
	assert_int_equal(do_io(f, TD_OP_READ, 1100ull * 32 * MiB + 8 * MiB, 4096, buf), -EIO);
	assert_int_equal(do_io(f, TD_OP_READ, 39 * GiB, 4096, buf), 0);
	assert_int_equal((unsigned char)buf[0], 0x11);
	assert_int_equal(do_io(f, TD_OP_READ, 0, 4096, buf), 0);
}

/* ---- corrupt images ---- */

static void patch(struct fixture *f, const char *name, uint64_t off,
		  const void *bytes, size_t len)
{
	int fd = open(in_dir(f, name), O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, len, off), (ssize_t)len);
	close(fd);
}

static void make_sparse(struct fixture *f)
{
	assert_int_equal(sh("cd %s && qemu-img create -q -f vmdk d.vmdk 64M && "
			    "qemu-io -f vmdk -c 'write -P 1 0 1M' d.vmdk >/dev/null", f->dir), 0);
}

static void test_corrupt_magic(void **state)
{
	struct fixture *f = *state;

	make_sparse(f);
	patch(f, "d.vmdk", 0, "XXXX", 4);
	open_fails(f, "d.vmdk", -EINVAL, "not a VMDK image");
	/* A descriptor pointing at a sparse extent that is not one. */
	assert_int_equal(sh("cd %s && printf '# Disk DescriptorFile\\ncreateType=\"monolithicSparse\"\\n"
			    "RW 128 SPARSE \"d.vmdk\"\\n' > t.vmdk", f->dir), 0);
	open_fails(f, "t.vmdk", -EINVAL, "bad magic");
}

static void test_corrupt_grain_size(void **state)
{
	struct fixture *f = *state;
	uint8_t v[8] = { 0 };

	make_sparse(f);
	patch(f, "d.vmdk", 20, v, 8);
	open_fails(f, "d.vmdk", -EINVAL, "grain size is 0");
	vmdk_put_le64(v, 1ull << 40);
	patch(f, "d.vmdk", 20, v, 8);
	open_fails(f, "d.vmdk", -EINVAL, "grain size");
}

static void test_corrupt_gd_past_eof(void **state)
{
	struct fixture *f = *state;
	uint8_t v[8];

	make_sparse(f);
	vmdk_put_le64(v, 1u << 20);
	patch(f, "d.vmdk", 56, v, 8);
	open_fails(f, "d.vmdk", -EINVAL, "past the end of the file");
}

static void test_corrupt_truncated(void **state)
{
	struct fixture *f = *state;

	make_sparse(f);
	assert_int_equal(truncate(in_dir(f, "d.vmdk"), 16384), 0);
	open_fails(f, "d.vmdk", -EINVAL, "past the end of the file");
}

/* A grain table entry pointing far past the end of the file. */
static void test_corrupt_grain_past_eof(void **state)
{
	struct fixture *f = *state;
	uint8_t hdr[512], gd[4], gte[4];
	int fd;

	make_sparse(f);
	fd = open(in_dir(f, "d.vmdk"), O_RDONLY);
	assert_int_equal(pread(fd, hdr, 512, 0), 512);
	assert_int_equal(pread(fd, gd, 4, vmdk_le64(hdr + 56) * 512), 4);
	close(fd);
	vmdk_put_le32(gte, 0x7fffffff);
	patch(f, "d.vmdk", (uint64_t)vmdk_le32(gd) * 512 + 8, gte, 4);
	open_fails(f, "d.vmdk", -EINVAL, "grain 2 is at sector");
}

static void test_corrupt_missing_extent(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(sh("cd %s && qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentFlat d.vmdk 64M && "
			    "rm d-f001.vmdk", f->dir), 0);
	open_fails(f, "d.vmdk", -ENOENT, "d-f001.vmdk");
	assert_int_equal(sh("cd %s && qemu-img create -q -f vmdk -o subformat=monolithicFlat e.vmdk 64M && "
			    "truncate -s 1M e-flat.vmdk", f->dir), 0);
	open_fails(f, "e.vmdk", -EINVAL, "runs past the end of the file");
}

static void test_corrupt_descriptor(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(sh("cd %s && printf '# Disk DescriptorFile\\ncreateType=\"monolithicFlat\"\\n"
			    "RW 128 FLAT \"x.raw\" zz\\n' > d.vmdk && "
			    "printf 'hello' > e.vmdk && : > z.vmdk", f->dir), 0);
	open_fails(f, "d.vmdk", -EINVAL, "line 3");
	open_fails(f, "e.vmdk", -EINVAL, "not a VMDK image");
	open_fails(f, "z.vmdk", -EINVAL, "not a VMDK image");
	open_fails(f, "nonexistent.vmdk", -ENOENT, "No such file");
}

static void test_missing_parent(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(sh("cd %s && qemu-img create -q -f vmdk base.vmdk 4M && "
			    "qemu-img create -q -f vmdk -b base.vmdk -F vmdk d.vmdk && rm base.vmdk",
			    f->dir), 0);
	open_fails(f, "d.vmdk", -ENOENT, "parentFileNameHint");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_read_monolithic_sparse),
		T(test_read_monolithic_flat),
		T(test_read_2gb_sparse),
		T(test_read_2gb_flat),
		T(test_read_stream),
		T(test_write_monolithic_sparse),
		T(test_write_monolithic_flat),
		T(test_write_2gb_sparse),
		T(test_write_2gb_flat),
		T(test_stream_is_read_only),
		T(test_concurrent_allocation),
		T(test_delta_link),
		T(test_descriptor_raw_parent),
		T(test_qcow_parent),
		T(test_zeroed_grain),
		T(test_stream_footer),
		T(test_new_grain_table),
		T(test_grain_past_eof),
		T(test_write_zeroes),
		T(test_gt_cache),
		T(test_gt_corrupt_lazy),
		T(test_corrupt_magic),
		T(test_corrupt_grain_size),
		T(test_corrupt_gd_past_eof),
		T(test_corrupt_truncated),
		T(test_corrupt_grain_past_eof),
		T(test_corrupt_missing_extent),
		T(test_corrupt_descriptor),
		T(test_missing_parent),
	};

	if (!have_qemu_img()) {
		printf("qemu-img/qemu-io not installed: skipped\n");
		return 77;
	}
	return cmocka_run_group_tests_name("vmdk", tests, NULL, NULL);
}
