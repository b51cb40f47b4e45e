/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Plain files and block devices, shared by the aio and sync drivers:
 * opening (O_DIRECT with a buffered fallback), size and block size, and the
 * synchronous operations (discard, write-zeroes, flush) both drivers use.
 */
#ifndef TAPDISK_FILE_H
#define TAPDISK_FILE_H

#include <stdbool.h>

#include "image.h"

struct td_file {
	int fd;
	bool blockdev;
	bool direct;		/* opened with O_DIRECT */
};

/*
 * Open @path for @img (TD_OPEN_* flags), preferring O_DIRECT if @direct.
 * Sets img->size, sector_size, align. 0 or -errno (logged).
 */
int td_file_open(struct td_image *img, struct td_file *f, const char *path,
		 unsigned int flags, bool direct);
void td_file_close(struct td_file *f);

/* Synchronous helpers; they complete @req (deferred). */
void td_file_discard(struct td_image *img, struct td_file *f,
		     struct td_req *req);
void td_file_write_zeroes(struct td_image *img, struct td_file *f,
			  struct td_req *req);
void td_file_flush(struct td_image *img, struct td_file *f,
		   struct td_req *req);

#endif
