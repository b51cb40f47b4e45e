// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * qcow2raw: flatten a qcow image and its whole backing chain into a raw
 * file or block device (argument order as Xen's original: DEST first).
 * The image is read through tapdisk's own qcow driver; zero blocks are not
 * written to a regular file, which stays sparse.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aio.h"
#include "blktap/log.h"
#include "image.h"
#include "loop.h"

#define CHUNK		(1u << 20)
#define DEPTH		4
#define ZBLOCK		4096

struct slot {
	struct td_req *req;
	struct iovec iov;
	uint64_t off, len;
	bool busy, done;
	int err;
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: qcow2raw [-q] DEST QCOW\n"
		"Write the guest-visible contents of the qcow image QCOW (with its\n"
		"backing chain) to DEST, a raw file (created or truncated, kept\n"
		"sparse) or a block device.\n"
		"\n"
		"  -q   no progress display\n"
		"  -h   this help\n");
}

static void read_done(struct td_req *req, int err)
{
	struct slot *s = req->arg;

	s->done = true;
	s->err = err;
	td_req_free(req);
}

static bool all_zero(const char *p, size_t len)
{
	return !len || (p[0] == 0 && !memcmp(p, p + 1, len - 1));
}

/* Write @len bytes at @off, skipping zero blocks when @sparse. */
static int write_out(int fd, const char *buf, uint64_t len, uint64_t off,
		     bool sparse, const char *path)
{
	uint64_t done = 0;

	while (done < len) {
		uint64_t n = len - done < ZBLOCK ? len - done : ZBLOCK;
		ssize_t w;

		if (sparse && all_zero(buf + done, n)) {
			done += n;
			continue;
		}
		w = pwrite(fd, buf + done, n, off + done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			td_log_err("%s: write at offset %llu: %s", path,
				   (unsigned long long)(off + done),
				   w < 0 ? strerror(errno) : "no progress");
			return -1;
		}
		done += w;
	}
	return 0;
}

/*
 * Run the loop until *@done. Completions may run as deferred work at the
 * start of a loop turn, so block only while I/O is in flight to wake us.
 */
static int wait_done(struct td_loop *loop, struct td_aio *aio,
		     const bool *done)
{
	while (!*done)
		if (td_loop_run_once(loop, td_aio_inflight(aio) ? -1 : 0) < 0)
			return -1;
	return 0;
}

static void progress(uint64_t done, uint64_t total, bool show)
{
	static int last = -1;
	int pct = total ? (int)(done * 100 / total) : 100;

	if (!show || pct == last)
		return;
	last = pct;
	fprintf(stderr, "\r%3d%%", pct);
	if (done == total)
		fputc('\n', stderr);
}

int main(int argc, char **argv)
{
	struct slot slots[DEPTH] = { 0 };
	const char *dest, *src;
	char spec[4200];
	struct td_loop *loop;
	struct td_aio *aio;
	struct td_ctx ctx;
	struct td_image *img;
	uint64_t next = 0, written = 0, size;
	bool quiet = false, sparse;
	struct stat st;
	int c, fd, ret = 1;

	td_log_init("qcow2raw", TD_LOG_INFO);
	while ((c = getopt(argc, argv, "qh")) != -1) {
		switch (c) {
		case 'q':
			quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return 2;
	}
	dest = argv[optind];
	src = argv[optind + 1];
	snprintf(spec, sizeof(spec), "qcow:%s", src);

	loop = td_loop_create();
	aio = loop ? td_aio_create(loop, 64) : NULL;
	if (!aio) {
		td_log_err("setting up the I/O loop: %s", strerror(errno));
		return 1;
	}
	td_ctx_init(&ctx, loop, aio);
	if (td_image_open(&ctx, spec, TD_OPEN_RDONLY | TD_OPEN_BUFFERED, &img))
		goto out_loop;
	size = img->size;

	fd = open(dest, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0 || fstat(fd, &st) < 0) {
		td_log_err("%s: %s", dest, strerror(errno));
		goto out_img;
	}
	sparse = S_ISREG(st.st_mode);
	if (sparse && ftruncate(fd, 0) < 0) {
		td_log_err("%s: truncate: %s", dest, strerror(errno));
		goto out_fd;
	}
	for (int i = 0; i < DEPTH; i++)
		if (posix_memalign(&slots[i].iov.iov_base, 4096, CHUNK)) {
			td_log_err("out of memory");
			goto out_bufs;
		}
	quiet = quiet || !isatty(STDERR_FILENO);

	/* Keep DEPTH reads in flight; write each chunk out in order. */
	for (int head = 0;; head = (head + 1) % DEPTH) {
		for (int i = 0; i < DEPTH && next < size; i++) {
			struct slot *s = &slots[(head + i) % DEPTH];

			if (s->busy)
				continue;
			s->off = next;
			s->len = size - next < CHUNK ? size - next : CHUNK;
			s->iov.iov_len = s->len;
			s->busy = true;
			s->done = false;
			s->req = td_req_new(TD_OP_READ, s->off, s->len, &s->iov, 1,
					    read_done, s);
			if (!s->req) {
				td_log_err("out of memory");
				goto out_bufs;
			}
			td_image_submit(img, s->req);
			next += s->len;
		}
		struct slot *s = &slots[head];

		if (!s->busy)
			break;
		if (wait_done(loop, aio, &s->done))
			goto out_bufs;
		s->busy = false;
		if (s->err) {
			td_log_err("%s: read at offset %llu: %s", src,
				   (unsigned long long)s->off, strerror(-s->err));
			goto out_drain;
		}
		if (write_out(fd, s->iov.iov_base, s->len, s->off, sparse, dest))
			goto out_drain;
		written += s->len;
		progress(written, size, !quiet);
	}
	if (sparse && ftruncate(fd, size) < 0) {
		td_log_err("%s: truncate to %llu: %s", dest,
			   (unsigned long long)size, strerror(errno));
		goto out_bufs;
	}
	if (fsync(fd) < 0) {
		td_log_err("%s: fsync: %s", dest, strerror(errno));
		goto out_bufs;
	}
	ret = 0;
	goto out_bufs;
out_drain:
	for (int i = 0; i < DEPTH; i++)
		if (slots[i].busy)
			wait_done(loop, aio, &slots[i].done);
out_bufs:
	for (int i = 0; i < DEPTH; i++)
		free(slots[i].iov.iov_base);
out_fd:
	if (close(fd) < 0 && !ret) {
		td_log_err("%s: close: %s", dest, strerror(errno));
		ret = 1;
	}
out_img:
	td_image_close(img);
out_loop:
	td_aio_destroy(aio);
	td_loop_destroy(loop);
	return ret;
}
