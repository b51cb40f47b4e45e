// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * qcow-check: check the metadata of a qcow (version 1) image, which
 * `qemu-img check` does not do for this format. Exit status: 0 clean,
 * 1 leaked clusters only, 2 corruption (or bad usage), 3 the check could not
 * run (I/O error). -r truncates a leaked tail of the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "blktap/log.h"
#include "qcow-format.h"

struct file {
	const char *path;
	int fd;
};

static int file_read(void *arg, void *buf, size_t len, uint64_t off)
{
	struct file *f = arg;
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(f->fd, (char *)buf + done, len - done, off + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		done += n;
	}
	return 0;
}

static void file_report(void *arg, bool corrupt, const char *msg)
{
	struct file *f = arg;

	if (corrupt)
		td_log_err("%s: ERROR %s", f->path, msg);
	else
		td_log_warn("%s: %s", f->path, msg);
}

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: qcow-check [-r] FILE\n"
		"Check the metadata of the qcow image FILE: header, every L1 and L2\n"
		"entry inside the file and cluster-aligned, no cluster used twice, no\n"
		"overlap with the header or tables; count leaked clusters.\n"
		"\n"
		"  -r   repair leaks: truncate a leaked tail of the file\n"
		"  -q   quiet: no summary line\n"
		"  -h   this help\n"
		"\n"
		"Exit status: 0 clean, 1 leaks only, 2 corrupt, 3 could not check.\n");
}

static int run(struct qcow_check *chk, struct file *f)
{
	off_t size = lseek(f->fd, 0, SEEK_END);
	int ret;

	if (size < 0) {
		td_log_err("%s: size: %s", f->path, strerror(errno));
		return 3;
	}
	chk->file_size = size;
	ret = qcow_check_run(chk);
	if (ret < 0) {
		td_log_err("%s: reading: %s", f->path, strerror(-ret));
		return 3;
	}
	return ret;
}

int main(int argc, char **argv)
{
	struct qcow_check chk = { 0 };
	struct file f;
	bool repair = false, quiet = false;
	int c, ret;

	td_log_init("qcow-check", TD_LOG_INFO);
	while ((c = getopt(argc, argv, "rqh")) != -1) {
		switch (c) {
		case 'r':
			repair = true;
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
	if (argc - optind != 1) {
		usage(stderr);
		return 2;
	}
	f.path = argv[optind];
	f.fd = open(f.path, (repair ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (f.fd < 0) {
		td_log_err("%s: %s", f.path, strerror(errno));
		return 3;
	}
	chk.read = file_read;
	chk.report = file_report;
	chk.arg = &f;
	ret = run(&chk, &f);
	if (ret == 1 && repair && chk.leaked_tail) {
		if (ftruncate(f.fd, chk.leaked_tail) < 0 || fsync(f.fd) < 0) {
			td_log_err("%s: truncating the leaked tail: %s", f.path,
				   strerror(errno));
			close(f.fd);
			return 3;
		}
		td_log_info("%s: truncated the leaked tail at offset %llu", f.path,
			    (unsigned long long)chk.leaked_tail);
		ret = run(&chk, &f);
	} else if (ret == 2 && repair) {
		td_log_err("%s: corrupt: not repairing", f.path);
	}
	close(f.fd);
	if (!quiet && ret <= 2)
		printf("%s: %llu L2 tables, %llu clusters, %llu compressed clusters; "
		       "%llu errors, %llu leaked clusters\n", f.path,
		       (unsigned long long)chk.l2_tables,
		       (unsigned long long)chk.data_clusters,
		       (unsigned long long)chk.compressed_clusters,
		       (unsigned long long)chk.errors,
		       (unsigned long long)chk.leaks);
	return ret;
}
