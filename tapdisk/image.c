// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Image stacks (see image.h): opening a chain of images through their
 * drivers, and the generic part of request submission that every driver
 * gets for free: range and mode checks, bounce buffers for data that does
 * not meet the driver's alignment, FUA by flush and write-zeroes by writes
 * where the driver cannot do them, and reads that fall through to a parent.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blktap/log.h"
#include "image.h"

#define ZERO_CHUNK	(1u << 20)	/* write-zeroes emulation, per write */
#define MAX_CHAIN	64

extern const struct td_driver td_driver_aio;
extern const struct td_driver td_driver_sync;
extern const struct td_driver td_driver_ram;
extern const struct td_driver td_driver_qcow;
extern const struct td_driver td_driver_vmdk;

static const struct td_driver *const drivers[] = {
	&td_driver_aio,
	&td_driver_sync,
	&td_driver_ram,
	&td_driver_qcow,
	&td_driver_vmdk,
};

#define NDRIVERS (sizeof(drivers) / sizeof(drivers[0]))

const struct td_driver *td_driver_find(const char *name)
{
	for (size_t i = 0; i < NDRIVERS; i++)
		if (drivers[i] && !strcmp(drivers[i]->name, name))
			return drivers[i];
	return NULL;
}

const char *td_driver_names(void)
{
	static char names[128];

	if (!names[0])
		for (size_t i = 0; i < NDRIVERS; i++) {
			if (!drivers[i])
				continue;
			if (names[0])
				strcat(names, " ");
			strcat(names, drivers[i]->name);
		}
	return names;
}

/* ---- deferred completion ---- */

static void ctx_run_done(struct td_deferred *d)
{
	struct td_ctx *ctx = (struct td_ctx *)((char *)d - offsetof(struct td_ctx, done_defer));
	struct td_req *list = ctx->done_head;

	ctx->done_head = NULL;
	ctx->done_tail = &ctx->done_head;
	while (list) {
		struct td_req *req = list;

		list = req->next;
		td_req_complete(req, req->err);
	}
}

void td_ctx_init(struct td_ctx *ctx, struct td_loop *loop, struct td_aio *aio)
{
	static const struct td_opts defaults = { .ram_limit = 4ull << 30 };

	memset(ctx, 0, sizeof(*ctx));
	ctx->loop = loop;
	ctx->aio = aio;
	ctx->opts = &defaults;
	ctx->done_defer.fn = ctx_run_done;
	ctx->done_tail = &ctx->done_head;
}

void td_image_complete_later(struct td_image *img, struct td_req *req, int err)
{
	struct td_ctx *ctx = img->ctx;

	req->err = err;
	req->next = NULL;
	*ctx->done_tail = req;
	ctx->done_tail = &req->next;
	td_loop_defer(ctx->loop, &ctx->done_defer);
}

/* ---- opening ---- */

int td_image_open_one(struct td_ctx *ctx, const struct td_driver *drv,
		      const char *path, unsigned int flags,
		      struct td_image **out)
{
	struct td_image *img = calloc(1, sizeof(*img));
	int err = -ENOMEM;

	if (!img)
		goto fail;
	img->drv = drv;
	img->ctx = ctx;
	img->open_flags = flags;
	img->sector_size = 512;
	img->align = 1;
	img->rmw_tail = &img->rmw_head;
	img->path = strdup(path);
	if (!img->path || asprintf(&img->name, "%s:%s", drv->name, path) < 0) {
		img->name = NULL;
		goto fail_free;
	}
	if (drv->priv_size) {
		img->priv = calloc(1, drv->priv_size);
		if (!img->priv)
			goto fail_free;
	}
	err = drv->open(img, path, flags);
	if (err)
		goto fail_free;
	*out = img;
	return 0;

fail_free:
	free(img->priv);
	free(img->name);
	free(img->path);
	free(img);
fail:
	if (err == -ENOMEM)
		td_log_err("%s:%s: open: out of memory", drv->name, path);
	return err;
}

static int split_spec(const char *spec, char *type, size_t n, const char **path)
{
	const char *colon = strchr(spec, ':');

	if (!colon || colon == spec || (size_t)(colon - spec) >= n || !colon[1])
		return -EINVAL;
	memcpy(type, spec, colon - spec);
	type[colon - spec] = '\0';
	*path = colon + 1;
	return 0;
}

static int open_spec(struct td_ctx *ctx, const char *spec, unsigned int flags,
		     struct td_image **out)
{
	const struct td_driver *drv;
	const char *path;
	char type[32];

	if (split_spec(spec, type, sizeof(type), &path)) {
		td_log_err("%s: not an image of the form TYPE:PATH (TYPE is one of: %s)",
			   spec, td_driver_names());
		return -EINVAL;
	}
	drv = td_driver_find(type);
	if (!drv) {
		td_log_err("%s: unknown image type '%s' (known: %s)", spec, type,
			   td_driver_names());
		return -EINVAL;
	}
	return td_image_open_one(ctx, drv, path, flags, out);
}

static bool chain_has(struct td_image *top, const char *path)
{
	char *want = realpath(path, NULL);
	bool found = false;

	for (struct td_image *i = top; i && !found; i = i->parent) {
		char *have = realpath(i->path, NULL);

		found = have && want ? !strcmp(have, want) : !strcmp(i->path, path);
		free(have);
	}
	free(want);
	return found;
}

int td_image_open(struct td_ctx *ctx, const char *spec, unsigned int flags,
		  struct td_image **out)
{
	struct td_image *top, *cur;
	char parent[PATH_MAX + 32];
	int err, depth = 0;

	err = open_spec(ctx, spec, flags, &top);
	if (err)
		return err;
	for (cur = top; cur->drv->get_parent; cur = cur->parent) {
		const char *ppath;
		char ptype[32];

		err = cur->drv->get_parent(cur, parent, sizeof(parent));
		if (err <= 0)
			break;
		if (++depth > MAX_CHAIN) {
			td_log_err("%s: backing chain deeper than %d images", top->name,
				   MAX_CHAIN);
			err = -ELOOP;
			goto fail;
		}
		if (!split_spec(parent, ptype, sizeof(ptype), &ppath) &&
		    chain_has(top, ppath)) {
			td_log_err("%s: backing file %s is already in the chain: the chain loops",
				   cur->name, ppath);
			err = -ELOOP;
			goto fail;
		}
		err = open_spec(ctx, parent, flags | TD_OPEN_RDONLY,
				&cur->parent);
		if (err)
			goto fail;
		if (cur->drv->validate_parent) {
			err = cur->drv->validate_parent(cur, cur->parent);
			if (err)
				goto fail;
		}
	}
	if (err < 0)
		goto fail;
	*out = top;
	return 0;
fail:
	td_image_close(top);
	return err;
}

void td_image_close(struct td_image *img)
{
	while (img) {
		struct td_image *parent = img->parent;

		img->drv->close(img);
		free(img->priv);
		free(img->name);
		free(img->path);
		free(img);
		img = parent;
	}
}

/* ---- submission ---- */

static void *zero_buf(void)
{
	static void *buf;

	if (!buf && posix_memalign(&buf, 4096, ZERO_CHUNK) == 0)
		memset(buf, 0, ZERO_CHUNK);
	return buf;
}

static bool req_writes(const struct td_req *req)
{
	return req->op == TD_OP_WRITE || req->op == TD_OP_WRITE_ZEROES ||
	       req->op == TD_OP_DISCARD;
}

/*
 * A request made here on behalf of one we were given. We own its done/arg;
 * its drv_arg belongs to the driver it goes to. (The request we were given
 * goes to no driver, so its drv_arg is ours.)
 */
static struct td_req *inner_req(enum td_op op, uint64_t off, uint64_t len,
				void *buf, td_req_done done, void *arg)
{
	struct td_req *req = td_req_new(op, off, len, NULL, 0, done, arg);

	if (!req)
		return NULL;
	if (buf) {
		req->iov = req->iov_inline;
		req->niov = 1;
		req->iov_inline[0].iov_base = buf;
		req->iov_inline[0].iov_len = len;
	}
	return req;
}

static void dispatch(struct td_image *img, struct td_req *req);

static void fua_flush_done(struct td_req *flush, int err)
{
	struct td_req *orig = flush->arg;

	td_req_free(flush);
	td_req_complete(orig, err);
}

static void fua_write_done(struct td_req *write, int err)
{
	struct td_req *orig = write->arg;
	struct td_image *img = orig->drv_arg;
	struct td_req *flush;

	td_req_free(write);
	if (err)
		goto out;
	flush = td_req_new(TD_OP_FLUSH, 0, 0, NULL, 0, fua_flush_done, orig);
	if (!flush) {
		err = -ENOMEM;
		goto out;
	}
	dispatch(img, flush);
	return;
out:
	td_req_complete(orig, err);
}

/* FUA on a driver without native FUA: write, then flush. */
static void emulate_fua(struct td_image *img, struct td_req *req)
{
	struct td_req *write = td_req_new(req->op, req->off, req->len, req->iov,
					  req->niov, fua_write_done, req);

	if (!write) {
		td_image_complete_later(img, req, -ENOMEM);
		return;
	}
	write->flags = req->flags & ~TD_REQ_FUA;
	req->drv_arg = img;
	dispatch(img, write);
}

static void dispatch(struct td_image *img, struct td_req *req)
{
	const struct td_driver *drv = img->drv;

	if ((req->flags & TD_REQ_FUA) && !(img->features & TD_FEAT_FUA) &&
	    req_writes(req)) {
		emulate_fua(img, req);
		return;
	}
	switch (req->op) {
	case TD_OP_READ:
		drv->queue_read(img, req);
		break;
	case TD_OP_WRITE:
		drv->queue_write(img, req);
		break;
	case TD_OP_FLUSH:
		if (drv->flush)
			drv->flush(img, req);
		else
			td_image_complete_later(img, req, 0);
		break;
	case TD_OP_DISCARD:
		if (drv->discard)
			drv->discard(img, req);
		else
			td_image_complete_later(img, req, 0);	/* advisory */
		break;
	case TD_OP_WRITE_ZEROES:
		drv->write_zeroes(img, req);
		break;
	}
}

/* Write-zeroes without driver support: chunked writes of a zero buffer. */
void td_image_zero_by_writes(struct td_image *img, struct td_req *req)
{
	void *zeros = zero_buf();
	uint64_t done;

	if (!zeros) {
		td_image_complete_later(img, req, -ENOMEM);
		return;
	}
	td_req_hold(req);
	for (done = 0; done < req->len; done += ZERO_CHUNK) {
		uint64_t len = req->len - done < ZERO_CHUNK ? req->len - done : ZERO_CHUNK;
		struct td_req *chunk = td_req_slice(req, done, len);

		if (!chunk) {
			td_req_release(req, -ENOMEM);
			return;
		}
		chunk->op = TD_OP_WRITE;
		chunk->flags &= ~TD_REQ_NO_HOLE;
		chunk->iov = chunk->iov_inline;
		chunk->niov = 1;
		chunk->iov_inline[0].iov_base = zeros;
		chunk->iov_inline[0].iov_len = len;
		td_image_submit(img, chunk);
	}
	td_req_release(req, 0);
}

/* ---- bounce buffers and read-modify-write for misaligned requests ---- */

struct bounce {
	struct td_image *img;
	struct td_req *orig;
	void *buf;
	uint64_t aoff, alen;
};

static void bounce_end(struct bounce *b, int err)
{
	struct td_image *img = b->img;
	struct td_req *orig = b->orig;
	bool rmw = orig->op == TD_OP_WRITE &&
		   (b->aoff != orig->off || b->alen != orig->len);

	free(b->buf);
	free(b);
	td_req_complete(orig, err);
	if (rmw) {
		struct td_req *next = img->rmw_head;

		img->rmw_busy = false;
		if (next) {
			img->rmw_head = next->next;
			if (!img->rmw_head)
				img->rmw_tail = &img->rmw_head;
			td_image_submit(img, next);
		}
	}
}

static void bounce_write_done(struct td_req *inner, int err)
{
	struct bounce *b = inner->arg;

	td_req_free(inner);
	bounce_end(b, err);
}

static void bounce_read_done(struct td_req *inner, int err)
{
	struct bounce *b = inner->arg;
	struct td_req *orig = b->orig;
	struct td_req *write;

	td_req_free(inner);
	if (err)
		goto out;
	if (orig->op == TD_OP_READ) {
		td_iov_from_buf(orig->iov, orig->niov, 0,
				(char *)b->buf + (orig->off - b->aoff), orig->len);
		goto out;
	}
	/* Read-modify-write: patch the new data in and write it all back. */
	td_iov_to_buf(orig->iov, orig->niov, 0,
		      (char *)b->buf + (orig->off - b->aoff), orig->len);
	write = inner_req(TD_OP_WRITE, b->aoff, b->alen, b->buf,
			  bounce_write_done, b);
	if (!write) {
		err = -ENOMEM;
		goto out;
	}
	write->flags = orig->flags;
	dispatch(b->img, write);
	return;
out:
	bounce_end(b, err);
}

static void bounce(struct td_image *img, struct td_req *req)
{
	uint64_t a = img->align;
	struct bounce *b = calloc(1, sizeof(*b));
	struct td_req *inner;
	bool rmw;

	if (!b)
		goto nomem;
	b->img = img;
	b->orig = req;
	b->aoff = req->off / a * a;
	b->alen = (req->off + req->len + a - 1) / a * a - b->aoff;
	if (b->aoff + b->alen > img->size) {
		/* Only possible if size is not aligned: refuse, don't overrun. */
		free(b);
		td_image_complete_later(img, req, -EINVAL);
		return;
	}
	rmw = req->op == TD_OP_WRITE &&
	      (b->aoff != req->off || b->alen != req->len);
	if (rmw && img->rmw_busy) {
		free(b);
		req->next = NULL;
		*img->rmw_tail = req;
		img->rmw_tail = &req->next;
		return;
	}
	if (posix_memalign(&b->buf, a > 4096 ? a : 4096, b->alen))
		goto nomem_free;
	if (req->op == TD_OP_WRITE && !rmw) {
		td_iov_to_buf(req->iov, req->niov, 0, b->buf, req->len);
		inner = inner_req(TD_OP_WRITE, b->aoff, b->alen, b->buf,
				  bounce_write_done, b);
		if (!inner)
			goto nomem_buf;
		inner->flags = req->flags;
	} else {
		inner = inner_req(TD_OP_READ, b->aoff, b->alen, b->buf,
				  bounce_read_done, b);
		if (!inner)
			goto nomem_buf;
	}
	if (rmw)
		img->rmw_busy = true;
	dispatch(img, inner);
	return;

nomem_buf:
	free(b->buf);
nomem_free:
	free(b);
nomem:
	td_image_complete_later(img, req, -ENOMEM);
}

static bool needs_bounce(const struct td_image *img, const struct td_req *req)
{
	uint64_t a = img->align;

	if (a <= 1 || (req->op != TD_OP_READ && req->op != TD_OP_WRITE))
		return false;
	return (req->off | req->len) & (a - 1) ||
	       !td_iov_aligned(req->iov, req->niov, a);
}

void td_image_submit(struct td_image *img, struct td_req *req)
{
	bool ranged = req->op != TD_OP_FLUSH;

	img->reqs++;
	if (ranged && (req->off > img->size || req->len > img->size - req->off)) {
		img->errors++;
		td_image_complete_later(img, req,
					req->op == TD_OP_READ ? -EINVAL : -ENOSPC);
		return;
	}
	if (req_writes(req) && (img->open_flags & TD_OPEN_RDONLY)) {
		img->errors++;
		td_image_complete_later(img, req, -EPERM);
		return;
	}
	if (ranged && !req->len) {
		td_image_complete_later(img, req, 0);
		return;
	}
	if (req->op == TD_OP_READ)
		img->bytes_read += req->len;
	else if (req->op == TD_OP_WRITE)
		img->bytes_written += req->len;

	if (req->op == TD_OP_WRITE_ZEROES && !img->drv->write_zeroes) {
		td_image_zero_by_writes(img, req);
		return;
	}
	if (needs_bounce(img, req)) {
		bounce(img, req);
		return;
	}
	dispatch(img, req);
}

void td_image_read_parent(struct td_image *img, struct td_req *req)
{
	struct td_image *parent = img->parent;
	uint64_t psize = parent ? parent->size : 0;
	struct td_req *part;

	if (req->off >= psize) {
		td_iov_zero(req->iov, req->niov, 0, req->len);
		td_image_complete_later(img, req, 0);
		return;
	}
	if (req->off + req->len <= psize) {
		td_image_submit(parent, req);
		return;
	}
	/* Straddles the parent's end: read what it has, zero the rest. */
	td_iov_zero(req->iov, req->niov, psize - req->off,
		    req->off + req->len - psize);
	td_req_hold(req);
	part = td_req_slice(req, 0, psize - req->off);
	if (!part) {
		td_req_release(req, -ENOMEM);
		return;
	}
	td_image_submit(parent, part);
	td_req_release(req, 0);
}
