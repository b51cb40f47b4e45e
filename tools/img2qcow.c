// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * img2qcow: convert a raw image or block device into a qcow (version 1)
 * image (argument order as Xen's original: QCOW first). Zero clusters stay
 * unallocated; -c stores clusters deflated as QEMU does. Each L2 table is
 * written after the clusters it maps and the L1 table last, so an
 * interrupted conversion leaves a consistent (if incomplete) image.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blktap/log.h"
#include "qcow-format.h"

struct conv {
	const char *dst_path, *src_path;
	int dst, src;
	struct qcow_header h;
	uint64_t end;			/* next free byte of the image */
	uint8_t *l1, *l2, *span, *zbuf;
	bool compress, show;
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: img2qcow [-c] [-q] QCOW SRC\n"
		"Convert the raw image or block device SRC into the qcow image QCOW\n"
		"(created or truncated); zero clusters are left unallocated.\n"
		"\n"
		"  -c   compress clusters (zlib, readable by QEMU)\n"
		"  -q   no progress display\n"
		"  -h   this help\n");
}

static int pwrite_all(struct conv *cv, const void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(cv->dst, buf, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			td_log_err("%s: write at offset %llu: %s", cv->dst_path,
				   (unsigned long long)off,
				   n < 0 ? strerror(errno) : "no progress");
			return -1;
		}
		buf = (const char *)buf + n;
		len -= n;
		off += n;
	}
	return 0;
}

static int pread_all(struct conv *cv, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(cv->src, (char *)buf + done, len - done, off + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			td_log_err("%s: read at offset %llu: %s", cv->src_path,
				   (unsigned long long)(off + done), strerror(errno));
			return -1;
		}
		if (n == 0) {	/* a file that ends inside the last sector */
			memset((char *)buf + done, 0, len - done);
			break;
		}
		done += n;
	}
	return 0;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	return !len || (p[0] == 0 && !memcmp(p, p + 1, len - 1));
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/* Store the clusters of L2 table @i (data in cv->span) and the table. */
static int convert_span(struct conv *cv, uint64_t i, uint64_t len)
{
	const struct qcow_header *h = &cv->h;
	uint64_t cs = h->cluster_size, used = 0;

	memset(cv->l2, 0, h->l2_bytes);
	for (uint64_t j = 0; j * cs < len; j++) {
		const uint8_t *data = cv->span + j * cs;
		uint64_t e;
		size_t z = 0;

		if (all_zero(data, cs))
			continue;
		if (cv->compress)
			z = qcow_deflate(h, data, cv->zbuf);
		if (z) {
			/* Sector-aligned, as QEMU places them. */
			e = align_up(cv->end, 512);
			if (pwrite_all(cv, cv->zbuf, z, e))
				return -1;
			cv->end = e + z;
			e = qcow_centry(h, e, z);
		} else {
			e = align_up(cv->end, cs);
			if (pwrite_all(cv, data, cs, e))
				return -1;
			cv->end = e + cs;
		}
		qcow_put_be64(cv->l2 + j * 8, e);
		used++;
	}
	if (!used)
		return 0;
	cv->end = align_up(cv->end, cs);
	if (pwrite_all(cv, cv->l2, h->l2_bytes, cv->end))
		return -1;
	qcow_put_be64(cv->l1 + i * 8, cv->end);
	cv->end += align_up(h->l2_bytes, cs);
	return 0;
}

static int convert(struct conv *cv, uint64_t src_size)
{
	struct qcow_header *h = &cv->h;
	uint8_t hdr[QCOW_HDR_SIZE];
	uint64_t l1len;
	char why[256];
	int last = -1;

	/* Whole sectors: QEMU and tapdisk serve the size rounded down. */
	if (qcow_header_init(h, align_up(src_size, 512), 0, 12, 9, why,
			     sizeof(why))) {
		td_log_err("%s: %s", cv->dst_path, why);
		return -1;
	}
	l1len = qcow_fresh_length(h) - h->l1_off;
	cv->l1 = calloc(1, l1len + 1);
	cv->l2 = malloc(h->l2_bytes);
	cv->span = malloc(h->l2_span);
	cv->zbuf = malloc(h->cluster_size);
	if (!cv->l1 || !cv->l2 || !cv->span || !cv->zbuf) {
		td_log_err("out of memory");
		return -1;
	}
	/* An empty image first: valid at every step from here on. */
	qcow_header_write(h, hdr);
	if (pwrite_all(cv, hdr, sizeof(hdr), 0) ||
	    pwrite_all(cv, cv->l1, l1len, h->l1_off))
		return -1;
	cv->end = qcow_fresh_length(h);
	for (uint64_t i = 0; i < h->l1_entries; i++) {
		uint64_t off = i * h->l2_span;
		uint64_t len = src_size - off < h->l2_span ? src_size - off : h->l2_span;
		int pct;

		if (pread_all(cv, cv->span, len, off))
			return -1;
		memset(cv->span + len, 0, h->l2_span - len);
		if (convert_span(cv, i, align_up(len, h->cluster_size)))
			return -1;
		pct = (int)((off + len) * 100 / src_size);
		if (cv->show && pct != last) {
			fprintf(stderr, "\r%3d%%", pct);
			last = pct;
		}
	}
	if (cv->show)
		fputc('\n', stderr);
	/* Tables before the L1 that points to them. */
	if (fdatasync(cv->dst) < 0) {
		td_log_err("%s: fdatasync: %s", cv->dst_path, strerror(errno));
		return -1;
	}
	if (pwrite_all(cv, cv->l1, l1len, h->l1_off))
		return -1;
	if (fsync(cv->dst) < 0) {
		td_log_err("%s: fsync: %s", cv->dst_path, strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct conv cv = { .dst = -1, .src = -1 };
	uint64_t size;
	struct stat st;
	bool quiet = false;
	int c, ret = 1;

	td_log_init("img2qcow", TD_LOG_INFO);
	while ((c = getopt(argc, argv, "cqh")) != -1) {
		switch (c) {
		case 'c':
			cv.compress = true;
			break;
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
	cv.dst_path = argv[optind];
	cv.src_path = argv[optind + 1];
	cv.show = !quiet && isatty(STDERR_FILENO);
	cv.src = open(cv.src_path, O_RDONLY | O_CLOEXEC);
	if (cv.src < 0 || fstat(cv.src, &st) < 0) {
		td_log_err("%s: %s", cv.src_path, strerror(errno));
		goto out;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(cv.src, BLKGETSIZE64, &size) < 0) {
			td_log_err("%s: size: %s", cv.src_path, strerror(errno));
			goto out;
		}
	} else {
		size = st.st_size;
	}
	if (!size) {
		td_log_err("%s: empty: nothing to convert", cv.src_path);
		goto out;
	}
	cv.dst = open(cv.dst_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (cv.dst < 0) {
		td_log_err("%s: %s", cv.dst_path, strerror(errno));
		goto out;
	}
	ret = convert(&cv, size) ? 1 : 0;
	if (close(cv.dst) < 0 && !ret) {
		td_log_err("%s: close: %s", cv.dst_path, strerror(errno));
		ret = 1;
	}
out:
	if (cv.src >= 0)
		close(cv.src);
	free(cv.l1);
	free(cv.l2);
	free(cv.span);
	free(cv.zbuf);
	return ret;
}
