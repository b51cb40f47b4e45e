// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * qcow-create: make an empty qcow (version 1) image, optionally on top of a
 * backing file, laid out as `qemu-img create -f qcow` does so that QEMU and
 * tapdisk both read it. Usage as Xen's original tool: SIZE in MiB when it
 * is a plain number, `qcow-create SIZE FILE [BACKING]`; -r preallocates
 * (reserves) every L2 table.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blktap/log.h"
#include "blktap/size.h"
#include "qcow-format.h"

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: qcow-create [-r] [-c CLUSTER] [-b BACKING] SIZE FILE [BACKING]\n"
		"Create the qcow image FILE of SIZE bytes (a plain number is MiB;\n"
		"suffixes K, M, G, T), optionally on top of BACKING (raw or qcow; a\n"
		"relative name is relative to FILE's directory). SIZE 0 with a backing\n"
		"file takes the backing file's size.\n"
		"\n"
		"  -r          reserve: preallocate every L2 table\n"
		"  -c CLUSTER  cluster size, 512 to 64K (default 4K, 512 with a backing file)\n"
		"  -l BITS     entries per L2 table as a power of two, 6 to 13\n"
		"              (default: 12 for 512-byte clusters, else a table per cluster)\n"
		"  -b BACKING  backing file\n"
		"  -h          this help\n");
}

static int parse_size_mb(const char *s, uint64_t *out)
{
	size_t n = strspn(s, "0123456789");
	int err;

	err = td_parse_size(s, out);
	if (err)
		return err;
	if (n == strlen(s)) {	/* plain number: MiB, as the original tool */
		if (*out > (UINT64_MAX >> 20))
			return -ERANGE;
		*out <<= 20;
	}
	return 0;
}

/* Virtual size of @path: a qcow header's size, else the file/device size. */
static int backing_size(const char *path, uint64_t *size)
{
	uint8_t hdr[QCOW_HDR_SIZE + QCOW_XEN_HDR_SIZE];
	struct qcow_header h;
	struct stat st;
	char why[256];
	ssize_t n;
	int fd, err = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		err = -errno;
		td_log_err("backing file %s: %s", path, strerror(errno));
		goto out;
	}
	n = pread(fd, hdr, sizeof(hdr), 0);
	if (n >= 4 && !strcmp(qcow_probe(hdr, n), "qcow")) {
		err = qcow_header_parse(hdr, n, st.st_size, &h, why, sizeof(why));
		if (err)
			td_log_err("backing file %s: %s", path, why);
		*size = h.size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size) < 0) {
			err = -errno;
			td_log_err("backing file %s: size: %s", path, strerror(errno));
		}
	} else {
		*size = st.st_size;
	}
out:
	if (fd >= 0)
		close(fd);
	return err;
}

static int write_all(int fd, const void *buf, size_t len, uint64_t off,
		     const char *path)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			td_log_err("%s: write at offset %llu: %s", path,
				   (unsigned long long)off, strerror(errno));
			return -1;
		}
		buf = (const char *)buf + n;
		len -= n;
		off += n;
	}
	return 0;
}

static int create(const char *path, uint64_t size, const char *backing,
		  unsigned int cbits, unsigned int l2bits, bool reserve)
{
	size_t blen = backing ? strlen(backing) : 0;
	struct qcow_header h;
	uint8_t hdr[QCOW_HDR_SIZE];
	uint8_t *l1 = NULL;
	uint64_t len, l2_area = 0;
	char why[256];
	int fd, err;

	err = qcow_header_init(&h, size, blen, cbits, l2bits, why, sizeof(why));
	if (err) {
		td_log_err("%s: %s", path, why);
		return 1;
	}
	len = qcow_fresh_length(&h);
	l1 = calloc(1, len - h.l1_off + 1);
	if (!l1) {
		td_log_err("%s: out of memory for the L1 table", path);
		return 1;
	}
	if (reserve) {
		/* Tables one after the other from the first cluster boundary. */
		uint64_t cs = h.cluster_size, step = (h.l2_bytes + cs - 1) / cs * cs;
		uint64_t at = (len + cs - 1) / cs * cs;

		for (uint64_t i = 0; i < h.l1_entries; i++)
			qcow_put_be64(l1 + i * 8, at + i * step);
		l2_area = h.l1_entries * step;
		len = at + l2_area;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		td_log_err("%s: %s", path, strerror(errno));
		free(l1);
		return 1;
	}
	qcow_header_write(&h, hdr);
	err = write_all(fd, hdr, sizeof(hdr), 0, path);
	if (!err && blen)
		err = write_all(fd, backing, blen, h.backing_off, path);
	if (!err)
		err = write_all(fd, l1, qcow_fresh_length(&h) - h.l1_off, h.l1_off, path);
	if (!err && ftruncate(fd, len) < 0) {
		td_log_err("%s: extending to %llu bytes: %s", path,
			   (unsigned long long)len, strerror(errno));
		err = -1;
	}
	if (!err && l2_area) {
		int e = posix_fallocate(fd, len - l2_area, l2_area);

		if (e && e != EOPNOTSUPP)
			td_log_warn("%s: reserving the L2 tables: %s", path, strerror(e));
	}
	if (!err && fsync(fd) < 0) {
		td_log_err("%s: fsync: %s", path, strerror(errno));
		err = -1;
	}
	if (close(fd) < 0 && !err) {
		td_log_err("%s: close: %s", path, strerror(errno));
		err = -1;
	}
	free(l1);
	return err ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *backing = NULL, *file;
	unsigned int cbits = 0, l2bits = 0;
	uint64_t size, v;
	bool reserve = false;
	int c;

	td_log_init("qcow-create", TD_LOG_INFO);
	while ((c = getopt(argc, argv, "rc:l:b:h")) != -1) {
		switch (c) {
		case 'r':
			reserve = true;
			break;
		case 'b':
			backing = optarg;
			break;
		case 'c':
			if (td_parse_size(optarg, &v) || v < 512 || v > 65536 ||
			    (v & (v - 1))) {
				td_log_err("cluster size %s: want a power of two from 512 to 64K",
					   optarg);
				return 2;
			}
			cbits = __builtin_ctzll(v);
			break;
		case 'l':
			l2bits = atoi(optarg);
			if (l2bits < QCOW_MIN_L2_BITS || l2bits > QCOW_MAX_L2_BITS) {
				td_log_err("L2 bits %s: want %d to %d", optarg,
					   QCOW_MIN_L2_BITS, QCOW_MAX_L2_BITS);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind < 2 || argc - optind > 3 ||
	    (argc - optind == 3 && backing)) {
		usage(stderr);
		return 2;
	}
	if (parse_size_mb(argv[optind], &size)) {
		td_log_err("size %s: not a size (MiB, or a number with K, M, G, T)",
			   argv[optind]);
		return 2;
	}
	file = argv[optind + 1];
	if (argc - optind == 3)
		backing = argv[optind + 2];
	if (backing) {
		char resolved[PATH_MAX * 2];
		uint64_t bsize;

		if (qcow_backing_path(file, backing, resolved, sizeof(resolved))) {
			td_log_err("backing file %s: name too long", backing);
			return 1;
		}
		if (backing_size(resolved, &bsize))
			return 1;
		if (!size)
			size = bsize;
	}
	if (!size) {
		td_log_err("size 0: give a size (or a backing file to take it from)");
		return 2;
	}
	/* QEMU's choices: 512 B clusters with 32 KiB tables, or 4 KiB and 4 KiB. */
	if (!cbits)
		cbits = backing ? 9 : 12;
	if (!l2bits)
		l2bits = cbits == 9 ? 12 : cbits - 3;
	return create(file, size, backing, cbits, l2bits, reserve);
}
