/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * blktapctrl's xenstore side: watch backend/tap for new devices, as the
 * original blktapctrl did, create a disk for each and tear it down again.
 *
 * The logic (xenwatch.c) sees xenstore only through struct xs_ops and the
 * daemon only through struct xw_disk_ops, so the unit test drives it with
 * an in-memory store (xs-fake.c) and fake disks. Implementations:
 *   xs-real.c  libxenstore (built with -DHAVE_XENSTORE only)
 *   xs-fake.c  an in-memory store with watches, for tests
 *   xs-ctrl.c  the daemon's glue: opens the real store, puts its fd into
 *              the epoll loop, creates disks the way tap-ctl create does
 *
 * Per device backend/tap/DOMID/DEVID (both decimal):
 *   reads    params (DRIVER:PATH, also tapdisk:DRIVER:PATH, tap:DRIVER:PATH),
 *            mode (r/ro: read-only), online, state, hotplug-status
 *   creates  the disk once params exists
 *   writes   sectors, sector-size, info (4 = VDISK_READONLY, else 0),
 *            physical-device (MAJOR:MINOR in hex, kernel disks only),
 *            tapdisk-minor, hotplug-status=connected; on failure
 *            hotplug-error=REASON and hotplug-status=error (not retried
 *            until the device node is removed and written again)
 *   destroys the disk when the node is removed, or when online is 0 and
 *            state is 5 (Closing) or 6 (Closed)
 * A device found with hotplug-status=connected (blktapctrl restarted) is
 * re-adopted from the running disks instead of created twice.
 */
#ifndef BLKTAPCTRL_XENWATCH_H
#define BLKTAPCTRL_XENWATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blktap/disk-line.h"

#define XW_ROOT		"backend/tap"
#define XW_TOKEN	"blktapctrl"
#define XW_VDISK_READONLY	4u

/*
 * A store, with libxenstore's conventions: results are malloc()ed and freed
 * with one free(); directory() and read_watch() return one block holding
 * the array and its strings. NULL / -1 set errno.
 */
struct xs_ops {
	/* value (NUL-terminated, *len without the NUL) or NULL (ENOENT...) */
	char *(*read)(void *h, const char *path, unsigned int *len);
	int (*write)(void *h, const char *path, const char *value);	/* 0 / -1 */
	int (*rm)(void *h, const char *path);				/* 0 / -1 */
	char **(*directory)(void *h, const char *path, unsigned int *num);
	int (*watch)(void *h, const char *path, const char *token);	/* 0 / -1 */
	/*
	 * One pending event, without blocking: vec[0] the path, vec[1] the
	 * token; NULL with errno EAGAIN when none is pending.
	 */
	char **(*read_watch)(void *h, unsigned int *num);
	int (*fileno)(void *h);	/* readable when an event may be pending */
	void (*close)(void *h);
};

/* What was created, for the keys written back. */
struct xw_disk_info {
	uint64_t id;			/* the disk's minor */
	uint64_t sectors;
	unsigned int sector_size;
	bool kernel;			/* /dev/tapdevN: physical-device is written */
	unsigned int major, minor;	/* of the block device, kernel disks */
};

struct xw_disk_ops {
	/* Create a disk for @target. 0 and @info, or -errno with @why. */
	int (*create)(void *ctx, const struct td_disk *target, const char *backend,
		      struct xw_disk_info *info, char *why, size_t whylen);
	/*
	 * Find the running disk created for @backend serving @target
	 * (re-adoption). 0 and @info, or -ENOENT.
	 */
	int (*adopt)(void *ctx, const struct td_disk *target, const char *backend,
		     struct xw_disk_info *info);
	int (*destroy)(void *ctx, uint64_t id, char *why, size_t whylen);
};

struct xenwatch;

/*
 * Set up the watch on backend/tap (the store fires it once at once, so
 * existing devices are handled by the first xenwatch_process()). Takes
 * ownership of @h (closed by xenwatch_free). NULL on failure.
 */
struct xenwatch *xenwatch_new(const struct xs_ops *xs, void *h,
			      const struct xw_disk_ops *dops, void *ctx);
/* Handle every pending watch event. Returns how many were handled. */
int xenwatch_process(struct xenwatch *xw);
/* Look at every device now (what an event does). */
void xenwatch_scan(struct xenwatch *xw);
int xenwatch_fileno(struct xenwatch *xw);
/* Forget the devices (their disks keep running) and close the store. */
void xenwatch_free(struct xenwatch *xw);

/* xs-fake.c: an in-memory store; watches queue events, fileno is an eventfd. */
extern const struct xs_ops xs_fake_ops;
void *xs_fake_open(void);
/* Number of queued, unread events. */
unsigned int xs_fake_pending(void *h);

/* xs-real.c (HAVE_XENSTORE): NULL when no xenstored answers. */
extern const struct xs_ops xs_real_ops;
void *xs_real_open(void);

struct ctrl;
struct blktap_ctl_rec;
struct blktap_ctl_buf;
/*
 * xs-ctrl.c: the daemon's hooks. xenstore_start() never fails the daemon:
 * without a xenstored it logs once (debug) and does nothing.
 */
void xenstore_start(struct ctrl *c);
void xenstore_stop(struct ctrl *c);
/*
 * Test mode: backend/tap devices become NBD-only disks on
 * DIR/tap-DOMID-DEVID.sock instead of kernel disks.
 */
void xenstore_set_nbd_dir(const char *dir);
/* server.c: the CREATE handler tap-ctl create reaches, for xs-ctrl.c. */
int server_create(struct ctrl *c, const struct blktap_ctl_rec *r,
		  struct blktap_ctl_buf *b);

#endif
