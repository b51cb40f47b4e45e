// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Request lifecycle (see request.h): creation, slicing into children that
 * reference parts of the parent's data, and completion counting with the
 * first error winning.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

struct td_req *td_req_new(enum td_op op, uint64_t off, uint64_t len,
			  struct iovec *iov, int niov, td_req_done done,
			  void *arg)
{
	/* One inline iovec, for owners that bring a single buffer. */
	struct td_req *req = calloc(1, sizeof(*req) + sizeof(struct iovec));

	if (!req)
		return NULL;
	req->op = op;
	req->off = off;
	req->len = len;
	req->iov = iov;
	req->niov = niov;
	req->done = done;
	req->arg = arg;
	return req;
}

void td_req_free(struct td_req *req)
{
	free(req);
}

/* Count the iovec entries that bytes [off, off + len) touch. */
static int iov_span(const struct iovec *iov, int niov, uint64_t off,
		    uint64_t len, int *first, size_t *skip)
{
	int i = 0, n = 0;

	while (i < niov && off >= iov[i].iov_len) {
		off -= iov[i].iov_len;
		i++;
	}
	*first = i;
	*skip = off;
	while (len && i < niov) {
		uint64_t take = iov[i].iov_len - off;

		if (take > len)
			take = len;
		len -= take;
		off = 0;
		n++;
		i++;
	}
	return len ? -1 : n;
}

struct td_req *td_req_slice(struct td_req *parent, uint64_t rel_off,
			    uint64_t len)
{
	struct td_req *req;
	int first = 0, n = 0, i;
	size_t skip = 0;
	uint64_t left = len;

	if (rel_off + len > parent->len) {
		errno = EINVAL;
		return NULL;
	}
	if (parent->iov) {
		n = iov_span(parent->iov, parent->niov, rel_off, len, &first, &skip);
		if (n < 0) {
			errno = EINVAL;
			return NULL;
		}
	}
	/* At least one inline iovec, for callers that supply their own data. */
	req = calloc(1, sizeof(*req) + (n ? n : 1) * sizeof(struct iovec));
	if (!req)
		return NULL;
	req->op = parent->op;
	req->flags = parent->flags;
	req->off = parent->off + rel_off;
	req->len = len;
	req->parent = parent;
	if (parent->iov) {
		req->iov = req->iov_inline;
		req->niov = n;
		for (i = 0; i < n; i++) {
			const struct iovec *src = &parent->iov[first + i];
			size_t take = src->iov_len - skip;

			if (take > left)
				take = left;
			req->iov[i].iov_base = (char *)src->iov_base + skip;
			req->iov[i].iov_len = take;
			left -= take;
			skip = 0;
		}
	}
	parent->pending++;
	return req;
}

void td_req_hold(struct td_req *req)
{
	req->pending++;
}

void td_req_release(struct td_req *req, int err)
{
	if (err && !req->err)
		req->err = err;
	if (--req->pending)
		return;
	td_req_complete(req, req->err);
}

void td_req_complete(struct td_req *req, int err)
{
	struct td_req *parent = req->parent;

	if (parent) {
		free(req);
		td_req_release(parent, err);
		return;
	}
	req->done(req, err);
}

void td_iov_zero(const struct iovec *iov, int niov, uint64_t off, uint64_t len)
{
	for (int i = 0; i < niov && len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t take = iov[i].iov_len - off;

		if (take > len)
			take = len;
		memset((char *)iov[i].iov_base + off, 0, take);
		len -= take;
		off = 0;
	}
}

static void iov_copy(const struct iovec *iov, int niov, uint64_t off,
		     char *buf, uint64_t len, bool to_buf)
{
	for (int i = 0; i < niov && len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t take = iov[i].iov_len - off;
		char *p = (char *)iov[i].iov_base + off;

		if (take > len)
			take = len;
		if (to_buf)
			memcpy(buf, p, take);
		else
			memcpy(p, buf, take);
		buf += take;
		len -= take;
		off = 0;
	}
}

void td_iov_to_buf(const struct iovec *iov, int niov, uint64_t off, void *buf,
		   uint64_t len)
{
	iov_copy(iov, niov, off, buf, len, true);
}

void td_iov_from_buf(const struct iovec *iov, int niov, uint64_t off,
		     const void *buf, uint64_t len)
{
	iov_copy(iov, niov, off, (char *)buf, len, false);
}

bool td_iov_aligned(const struct iovec *iov, int niov, size_t align)
{
	for (int i = 0; i < niov; i++)
		if (((uintptr_t)iov[i].iov_base | iov[i].iov_len) & (align - 1))
			return false;
	return true;
}
