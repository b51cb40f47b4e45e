// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The daemon's side of the xenstore watcher: open the real store (when a
 * xenstored answers), put its fd into the epoll loop, and create disks for
 * backend/tap devices through the same CREATE handler tap-ctl create
 * reaches (kernel disks; without /dev/blktap-control that fails with its
 * reason, which lands in hotplug-error). The backend path is recorded as
 * the disk's vdev, so `tap-ctl list` shows which device owns a disk and a
 * restarted blktapctrl re-adopts it.
 *
 * Test mode (--xen-nbd-dir DIR): NBD-only disks on DIR/tap-DOMID-DEVID.sock
 * stand in for kernel disks, so the whole path runs on a host without
 * blktap.ko; their size comes from tapdisk's STATS.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "blktap/log.h"
#include "blktap/ring.h"
#include "blktapctrl.h"
#include "xenwatch.h"

static struct xenwatch *watcher;
static struct ev xs_ev = { .fd = -1 };
static const char *nbd_dir;	/* --xen-nbd-dir: NBD-only disks, for tests */

void xenstore_set_nbd_dir(const char *dir)
{
	nbd_dir = dir;
}

static unsigned long long sysfs_u64(unsigned int minor, const char *what,
				    unsigned long long dflt)
{
	char path[128];
	unsigned long long v;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/block/tapdev%u/%s", minor, what);
	f = fopen(path, "re");
	if (!f)
		return dflt;
	if (fscanf(f, "%llu", &v) != 1)
		v = dflt;
	fclose(f);
	return v;
}

/* Size and device numbers of a running disk. */
static int describe(struct ctrl *c, struct disk *d, struct xw_disk_info *info,
		    char *why, size_t whylen)
{
	info->id = d->minor;
	info->kernel = d->kernel;
	info->sector_size = BLKTAP_SECTOR_SIZE;
	if (d->kernel) {
		char dev[64];
		struct stat st;

		snprintf(dev, sizeof(dev), "/dev/tapdev%u", d->minor);
		if (stat(dev, &st) == 0 && S_ISBLK(st.st_mode)) {
			info->major = major(st.st_rdev);
			info->minor = minor(st.st_rdev);
		} else {
			info->major = (unsigned int)sysfs_u64(d->minor, "dev", 0);
			info->kernel = false;	/* no physical-device to give */
		}
		/* sysfs counts 512-byte sectors whatever the block size */
		info->sectors = sysfs_u64(d->minor, "size", 0);
		info->sector_size = (unsigned int)sysfs_u64(d->minor,
					"queue/logical_block_size", BLKTAP_SECTOR_SIZE);
		if (info->sector_size > BLKTAP_SECTOR_SIZE)
			info->sectors /= info->sector_size / BLKTAP_SECTOR_SIZE;
		return 0;
	}
	/* an NBD-only disk: its tapdisk knows the size */
	struct blktap_ctl_msg reply;
	uint64_t size;
	int err;

	/*
	 * A new tapdisk may serve NBD a moment before its control socket
	 * listens: retry briefly.
	 */
	for (int i = 0;; i++) {
		err = disk_tapdisk_call(c, d, BLKTAP_CTL_OP_STATS, &reply, why, whylen);
		if (!err || i == 100 || (err != -ECONNREFUSED && err != -ENOENT))
			break;
		usleep(20000);
	}
	if (err)
		return err;
	if (reply.status || !reply.nrec ||
	    blktap_ctl_get_u64(&reply.rec[0], "size", &size)) {
		snprintf(why, whylen, "tapdisk %d did not report the disk size", (int)d->pid);
		blktap_ctl_msg_free(&reply);
		return -EIO;
	}
	blktap_ctl_msg_free(&reply);
	info->sectors = size / BLKTAP_SECTOR_SIZE;
	return 0;
}

static int xc_create(void *ctx, const struct td_disk *t, const char *backend,
		     struct xw_disk_info *info, char *why, size_t whylen)
{
	struct ctrl *c = ctx;
	struct blktap_ctl_buf req = { 0 }, reply = { 0 };
	struct blktap_ctl_msg m = { 0 }, r = { 0 };
	const char *msg;
	uint64_t minor;
	struct disk *d;
	int status, err;

	blktap_ctl_buf_add(&req, "type", "%s", t->driver);
	blktap_ctl_buf_add(&req, "path", "%s", t->path);
	blktap_ctl_buf_add(&req, "readonly", "%d", t->readonly);
	blktap_ctl_buf_add(&req, "vdev", "%s", backend);
	if (nbd_dir) {
		/* DIR/tap-DOMID-DEVID.sock stands in for /dev/tapdevN */
		const char *p = backend + strlen(XW_ROOT "/");
		char sock[4096];
		int n = snprintf(sock, sizeof(sock), "%s/tap-", nbd_dir);

		for (; *p && n < (int)sizeof(sock) - 6; p++)
			sock[n++] = *p == '/' ? '-' : *p;
		snprintf(sock + n, sizeof(sock) - (size_t)n, ".sock");
		blktap_ctl_buf_add(&req, "nbd-unix", "%s", sock);
		blktap_ctl_buf_add(&req, "kernel", "0");
	}
	err = req.err ? req.err : blktap_ctl_decode(req.data, req.len, &m);
	blktap_ctl_buf_free(&req);
	if (err) {
		snprintf(why, whylen, "building the create request: %s", strerror(-err));
		return err;
	}
	status = server_create(c, &m.rec[0], &reply);
	blktap_ctl_msg_free(&m);
	err = reply.err ? reply.err : blktap_ctl_decode(reply.data, reply.len, &r);
	blktap_ctl_buf_free(&reply);
	if (err) {
		snprintf(why, whylen, "reading the create reply: %s", strerror(-err));
		return err;
	}
	if (status) {
		msg = r.nrec ? blktap_ctl_get(&r.rec[0], "error") : NULL;
		snprintf(why, whylen, "%s", msg ? msg : strerror(-status));
		blktap_ctl_msg_free(&r);
		return status;
	}
	err = !r.nrec || blktap_ctl_get_u64(&r.rec[0], "minor", &minor);
	blktap_ctl_msg_free(&r);
	d = err ? NULL : disk_find(c, (int64_t)minor, 0);
	if (!d) {
		snprintf(why, whylen, "the new disk is not listed");
		return -EIO;
	}
	err = describe(c, d, info, why, whylen);
	if (err) {
		char ignored[256];

		disk_destroy(c, d, ignored, sizeof(ignored));
	}
	return err;
}

static int xc_adopt(void *ctx, const struct td_disk *t, const char *backend,
		    struct xw_disk_info *info)
{
	struct ctrl *c = ctx;
	char why[256];

	for (struct disk *d = c->disks; d; d = d->next)
		if (d->vdev && !strcmp(d->vdev, backend) && !strcmp(d->type, t->driver) &&
		    !strcmp(d->path, t->path))
			return describe(c, d, info, why, sizeof(why)) ? -ENOENT : 0;
	return -ENOENT;
}

static int xc_destroy(void *ctx, uint64_t id, char *why, size_t whylen)
{
	struct ctrl *c = ctx;
	struct disk *d = disk_find(c, (int64_t)id, 0);

	if (!d) {
		snprintf(why, whylen, "no disk with minor %llu", (unsigned long long)id);
		return -ENOENT;
	}
	return disk_destroy(c, d, why, whylen);
}

static const struct xw_disk_ops ctrl_disk_ops = {
	.create = xc_create,
	.adopt = xc_adopt,
	.destroy = xc_destroy,
};

static void on_xenstore(struct ctrl *c, struct ev *ev, uint32_t events)
{
	(void)ev;
	if (events & (EPOLLERR | EPOLLHUP)) {
		td_log_warn("xenstore: the connection to xenstored is gone; "
			    "backend/tap is no longer watched");
		xenstore_stop(c);
		return;
	}
	xenwatch_process(watcher);
}

void xenstore_start(struct ctrl *c)
{
	void *h = xs_real_open();

	if (!h) {
		td_log_debug("xenstore: no xenstored answers (%s); not watching " XW_ROOT,
			     strerror(errno));
		return;
	}
	watcher = xenwatch_new(&xs_real_ops, h, &ctrl_disk_ops, c);
	if (!watcher)
		return;
	xs_ev = (struct ev){ .fd = xenwatch_fileno(watcher), .cb = on_xenstore };
	if (xs_ev.fd < 0 || ev_add(c, &xs_ev, EPOLLIN)) {
		xenstore_stop(c);
		return;
	}
	td_log_info("xenstore: watching " XW_ROOT);
}

void xenstore_stop(struct ctrl *c)
{
	if (xs_ev.fd >= 0)
		ev_del(c, &xs_ev);
	xs_ev.fd = -1;
	xenwatch_free(watcher);
	watcher = NULL;
}
