// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The kernel ring frontend (see frontend-ring.h and blktap/ring.h). One
 * turn: ioctl(KICK) consumes our answers and publishes new requests; each
 * request becomes a td_req whose iovec points into the mapped slot window
 * (no copy here); completions write answers into the ring and one deferred
 * KICK per loop turn hands them all to the kernel.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "blktap/ioctl.h"
#include "blktap/log.h"
#include "frontend-ring.h"

struct td_ring_slot {
	struct td_ring_frontend *rf;
	uint64_t id;
	bool busy;
	struct iovec iov[BLKTAP_MAX_SEGS];
};

struct td_ring_frontend {
	struct td_ctx *ctx;
	struct td_image *img;
	char *path;
	int fd;
	uint8_t *map;
	struct blktap_sring *sring;
	struct td_event *ev;
	struct td_deferred push;
	uint32_t req_cons, rsp_prod;
	unsigned int inflight;
	bool quiesced;
	struct td_ring_slot slots[BLKTAP_RING_SLOTS];
};

static void ring_kick(struct td_ring_frontend *rf);

static void ring_respond(struct td_ring_frontend *rf, uint64_t id, int err)
{
	struct blktap_response *rsp =
		&rf->sring->rsp[BLKTAP_RING_INDEX(rf->rsp_prod)];

	rsp->id = id;
	rsp->status = err;
	rf->rsp_prod++;
	td_loop_defer(rf->ctx->loop, &rf->push);
}

static void ring_req_done(struct td_req *req, int err)
{
	struct td_ring_slot *slot = req->arg;
	struct td_ring_frontend *rf = slot->rf;

	if (err)
		td_log_warn("%s: %s: request at byte %llu: %s", rf->path,
			    rf->img->name, (unsigned long long)req->off,
			    strerror(-err));
	slot->busy = false;
	rf->inflight--;
	td_req_free(req);
	ring_respond(rf, slot->id, err);
}

static void ring_push(struct td_deferred *d)
{
	struct td_ring_frontend *rf =
		(struct td_ring_frontend *)((char *)d -
					    offsetof(struct td_ring_frontend, push));

	ring_kick(rf);
}

/* Map the data of @r onto @slot's iovec; the segment count, or -EINVAL. */
static int ring_map_segs(struct td_ring_frontend *rf,
			 const struct blktap_request *r,
			 struct td_ring_slot *slot)
{
	uint8_t *window = rf->map + BLKTAP_DATA_OFFSET +
			  (uint64_t)r->slot * BLKTAP_SLOT_SIZE;
	uint64_t total = 0;
	unsigned int i;

	if (r->nr_segs == 0 || r->nr_segs > BLKTAP_MAX_SEGS)
		return -EINVAL;
	for (i = 0; i < r->nr_segs; i++) {
		const struct blktap_segment *s = &r->seg[i];

		if (s->page >= BLKTAP_MAX_SEGS || !s->length ||
		    s->offset + s->length > BLKTAP_PAGE_SIZE)
			return -EINVAL;
		slot->iov[i].iov_base = window +
					(uint64_t)s->page * BLKTAP_PAGE_SIZE +
					s->offset;
		slot->iov[i].iov_len = s->length;
		total += s->length;
	}
	if (total != (uint64_t)r->nr_sectors * BLKTAP_SECTOR_SIZE)
		return -EINVAL;
	return r->nr_segs;
}

static void ring_take(struct td_ring_frontend *rf,
		      const struct blktap_request *r)
{
	static const enum td_op ops[] = {
		[BLKTAP_OP_READ] = TD_OP_READ,
		[BLKTAP_OP_WRITE] = TD_OP_WRITE,
		[BLKTAP_OP_FLUSH] = TD_OP_FLUSH,
		[BLKTAP_OP_DISCARD] = TD_OP_DISCARD,
		[BLKTAP_OP_WRITE_ZEROES] = TD_OP_WRITE_ZEROES,
	};
	struct td_ring_slot *slot;
	struct td_req *req;
	int niov = 0;

	if (r->slot >= BLKTAP_RING_SLOTS || r->op > BLKTAP_OP_WRITE_ZEROES) {
		td_log_err("%s: malformed request (slot %u, op %u)", rf->path,
			   r->slot, r->op);
		ring_respond(rf, r->id, -EIO);
		return;
	}
	slot = &rf->slots[r->slot];
	if (slot->busy) {
		/* the kernel never does this; answering would hit the wrong one */
		td_log_err("%s: request for busy slot %u ignored", rf->path,
			   r->slot);
		return;
	}
	if (r->op == BLKTAP_OP_READ || r->op == BLKTAP_OP_WRITE) {
		niov = ring_map_segs(rf, r, slot);
		if (niov < 0) {
			td_log_err("%s: request with bad segments (slot %u)",
				   rf->path, r->slot);
			ring_respond(rf, r->id, -EIO);
			return;
		}
	}
	req = td_req_new(ops[r->op], r->sector * BLKTAP_SECTOR_SIZE,
			 (uint64_t)r->nr_sectors * BLKTAP_SECTOR_SIZE,
			 niov ? slot->iov : NULL, niov, ring_req_done, slot);
	if (!req) {
		ring_respond(rf, r->id, -ENOMEM);
		return;
	}
	if (r->flags & BLKTAP_REQ_FUA)
		req->flags |= TD_REQ_FUA;
	if (r->flags & BLKTAP_REQ_NOUNMAP)
		req->flags |= TD_REQ_NO_HOLE;
	slot->id = r->id;
	slot->busy = true;
	rf->inflight++;
	td_image_submit(rf->img, req);
}

static void ring_take_all(struct td_ring_frontend *rf)
{
	struct blktap_request r;
	uint32_t prod;

	if (rf->quiesced)
		return;
	prod = __atomic_load_n(&rf->sring->hdr.req_prod, __ATOMIC_ACQUIRE);
	while (rf->req_cons != prod) {
		/* the entry is reused once answered: keep our own copy */
		memcpy(&r, &rf->sring->req[BLKTAP_RING_INDEX(rf->req_cons)],
		       sizeof(r));
		rf->req_cons++;
		ring_take(rf, &r);
	}
	__atomic_store_n(&rf->sring->hdr.req_cons, rf->req_cons,
			 __ATOMIC_RELEASE);
}

/* Hand our answers to the kernel and take what it published. */
static void ring_kick(struct td_ring_frontend *rf)
{
	int n;

	do {
		__atomic_store_n(&rf->sring->hdr.rsp_prod, rf->rsp_prod,
				 __ATOMIC_RELEASE);
		n = ioctl(rf->fd, BLKTAP_IOCTL_KICK);
		if (n < 0) {
			td_log_err("%s: kick: %s", rf->path, strerror(errno));
			return;
		}
		ring_take_all(rf);
	} while (n > 0 && !rf->quiesced);
}

static void ring_on_event(struct td_event *ev, uint32_t events, void *arg)
{
	(void)ev;
	(void)events;
	ring_kick(arg);
}

static int ring_device(struct td_ring_frontend *rf, const struct td_ring_opts *opts)
{
	struct blktap_info info = { .version = BLKTAP_ABI_VERSION };
	struct td_image *img = rf->img;
	unsigned int lbs = img->sector_size ? img->sector_size : 512;
	struct blktap_device_params p = {
		.version = BLKTAP_ABI_VERSION,
		.features = BLKTAP_FEAT_FLUSH | BLKTAP_FEAT_FUA |
			    BLKTAP_FEAT_WRITE_ZEROES,
		.sectors = img->size / BLKTAP_SECTOR_SIZE,
		.logical_block_size = lbs,
	};

	if (ioctl(rf->fd, BLKTAP_IOCTL_INFO, &info) < 0) {
		td_log_err("%s: query: %s (is blktap.ko of ABI %u loaded?)",
			   rf->path, strerror(errno), BLKTAP_ABI_VERSION);
		return -1;
	}
	if (info.mmap_size != BLKTAP_MMAP_SIZE ||
	    info.nr_slots != BLKTAP_RING_SLOTS ||
	    info.max_segs != BLKTAP_MAX_SEGS) {
		td_log_err("%s: ring geometry %u slots x %u segments differs from ours (%u x %u)",
			   rf->path, info.nr_slots, info.max_segs,
			   BLKTAP_RING_SLOTS, BLKTAP_MAX_SEGS);
		return -1;
	}
	if (info.flags & BLKTAP_INFO_DEVICE) {
		if (info.params.sectors != p.sectors) {
			td_log_err("%s: the existing disk has %llu sectors, %s has %llu",
				   rf->path,
				   (unsigned long long)info.params.sectors,
				   img->name, (unsigned long long)p.sectors);
			return -1;
		}
		td_log_info("%s: reattached to the existing disk", rf->path);
		return 0;
	}
	if (img->size % lbs) {
		td_log_err("%s: size %llu is not a multiple of its %u-byte blocks",
			   img->name, (unsigned long long)img->size, lbs);
		return -1;
	}
	if (img->features & TD_FEAT_DISCARD)
		p.features |= BLKTAP_FEAT_DISCARD;
	if (opts->readonly || (img->open_flags & TD_OPEN_RDONLY))
		p.features |= BLKTAP_FEAT_READONLY;
	if (ioctl(rf->fd, BLKTAP_IOCTL_CREATE_DEVICE, &p) < 0) {
		td_log_err("%s: creating the block device for %s: %s", rf->path,
			   img->name, strerror(errno));
		return -1;
	}
	return 0;
}

struct td_ring_frontend *td_ring_frontend_create(struct td_ctx *ctx,
						 struct td_image *img,
						 const struct td_ring_opts *opts)
{
	struct td_ring_frontend *rf;
	unsigned int i;

	rf = calloc(1, sizeof(*rf));
	if (!rf) {
		td_log_err("%s: %s", opts->path, strerror(errno));
		return NULL;
	}
	rf->ctx = ctx;
	rf->img = img;
	rf->push.fn = ring_push;
	for (i = 0; i < BLKTAP_RING_SLOTS; i++)
		rf->slots[i].rf = rf;
	rf->path = strdup(opts->path);
	if (!rf->path)
		goto out_free;
	rf->fd = open(opts->path, O_RDWR | O_CLOEXEC);
	if (rf->fd < 0) {
		td_log_err("%s: open: %s", opts->path, strerror(errno));
		goto out_path;
	}
	rf->map = mmap(NULL, BLKTAP_MMAP_SIZE, PROT_READ | PROT_WRITE,
		       MAP_SHARED, rf->fd, 0);
	if (rf->map == MAP_FAILED) {
		td_log_err("%s: mmap: %s", opts->path, strerror(errno));
		goto out_close;
	}
	rf->sring = (struct blktap_sring *)rf->map;
	if (rf->sring->hdr.magic != BLKTAP_RING_MAGIC ||
	    rf->sring->hdr.version != BLKTAP_ABI_VERSION) {
		td_log_err("%s: ring header: magic %#x version %u, want %#x %u",
			   opts->path, rf->sring->hdr.magic,
			   rf->sring->hdr.version, BLKTAP_RING_MAGIC,
			   BLKTAP_ABI_VERSION);
		goto out_unmap;
	}
	if (ring_device(rf, opts))
		goto out_unmap;
	/*
	 * We serve a block device: memory we allocate must not wait for
	 * writeback to that device (our own I/O), as loop and ublk servers do.
	 */
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0)
		td_log_warn("%s: PR_SET_IO_FLUSHER: %s (memory pressure may stall the disk)",
			    opts->path, strerror(errno));
	rf->ev = td_loop_add_fd(ctx->loop, rf->fd, EPOLLIN, ring_on_event, rf);
	if (!rf->ev) {
		td_log_err("%s: watching the ring: %s", opts->path,
			   strerror(errno));
		goto out_unmap;
	}
	/* a disk that waited for us may have requests queued already */
	ring_kick(rf);
	return rf;

out_unmap:
	munmap(rf->map, BLKTAP_MMAP_SIZE);
out_close:
	close(rf->fd);
out_path:
	free(rf->path);
out_free:
	free(rf);
	return NULL;
}

void td_ring_frontend_quiesce(struct td_ring_frontend *rf)
{
	rf->quiesced = true;
}

void td_ring_frontend_resume(struct td_ring_frontend *rf)
{
	rf->quiesced = false;
	ring_kick(rf);		/* what the kernel queued meanwhile */
}

unsigned int td_ring_frontend_inflight(const struct td_ring_frontend *rf)
{
	return rf->inflight;
}

void td_ring_frontend_destroy(struct td_ring_frontend *rf, bool remove_device)
{
	/* answers still waiting for the deferred kick go now */
	__atomic_store_n(&rf->sring->hdr.rsp_prod, rf->rsp_prod,
			 __ATOMIC_RELEASE);
	if (ioctl(rf->fd, BLKTAP_IOCTL_KICK) < 0)
		td_log_warn("%s: final kick: %s", rf->path, strerror(errno));
	if (remove_device && ioctl(rf->fd, BLKTAP_IOCTL_REMOVE_DEVICE) < 0)
		td_log_warn("%s: removing the block device: %s", rf->path,
			    strerror(errno));
	td_loop_del(rf->ev);
	munmap(rf->map, BLKTAP_MMAP_SIZE);
	close(rf->fd);
	free(rf->path);
	free(rf);
}
