// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * struct xs_ops over libxenstore. Built only with -DHAVE_XENSTORE (the
 * Makefile defines it when `pkg-config --exists xenstore`); otherwise
 * xs_real_open() says no store is there.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

#include "xenwatch.h"

#ifdef HAVE_XENSTORE
#include <xenstore.h>

static char *real_read(void *h, const char *path, unsigned int *len)
{
	return xs_read(h, XBT_NULL, path, len);
}

static int real_write(void *h, const char *path, const char *value)
{
	size_t n = 0;

	while (value[n])
		n++;
	return xs_write(h, XBT_NULL, path, value, (unsigned int)n) ? 0 : -1;
}

static int real_rm(void *h, const char *path)
{
	return xs_rm(h, XBT_NULL, path) ? 0 : -1;
}

static char **real_directory(void *h, const char *path, unsigned int *num)
{
	return xs_directory(h, XBT_NULL, path, num);
}

static int real_watch(void *h, const char *path, const char *token)
{
	return xs_watch(h, path, token) ? 0 : -1;
}

static char **real_read_watch(void *h, unsigned int *num)
{
	char **vec = xs_check_watch(h);

	if (vec)
		*num = 2;
	return vec;
}

static int real_fileno(void *h)
{
	return xs_fileno(h);
}

static void real_close(void *h)
{
	xs_close(h);
}

void *xs_real_open(void)
{
	return xs_open(0);
}

const struct xs_ops xs_real_ops = {
	.read = real_read,
	.write = real_write,
	.rm = real_rm,
	.directory = real_directory,
	.watch = real_watch,
	.read_watch = real_read_watch,
	.fileno = real_fileno,
	.close = real_close,
};

#else

void *xs_real_open(void)
{
	errno = ENOSYS;
	return NULL;
}

const struct xs_ops xs_real_ops;

#endif
