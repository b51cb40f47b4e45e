// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The backend/tap watcher (see xenwatch.h for the keys). Every watch event
 * triggers a rescan of backend/tap: the tree is small, a rescan is
 * idempotent, and our own writes (which fire the watch too) cost one
 * harmless pass. Each device is in one of the states below; a device
 * leaves the list only when its node is gone.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blktap/log.h"
#include "xenwatch.h"

enum xw_dev_state {
	XW_WAITING,	/* no params yet */
	XW_CONNECTED,	/* disk created or adopted */
	XW_FAILED,	/* hotplug-status=error written; left alone */
	XW_CLOSED,	/* torn down on online=0; waits for the node to go */
};

struct xw_dev {
	struct xw_dev *next;
	unsigned int domid, devid;
	enum xw_dev_state state;
	uint64_t id;		/* the disk, when XW_CONNECTED */
	bool seen;		/* in the current scan */
};

struct xenwatch {
	const struct xs_ops *xs;
	void *h;
	const struct xw_disk_ops *dops;
	void *ctx;
	struct xw_dev *devs;
};

static bool parse_id(const char *s, unsigned int *out)
{
	unsigned long v;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (*end || errno || v > 0x7fffffff)
		return false;
	*out = (unsigned int)v;
	return true;
}

static char *dev_read(struct xenwatch *xw, const struct xw_dev *d, const char *key)
{
	char path[128];
	unsigned int len;

	snprintf(path, sizeof(path), XW_ROOT "/%u/%u/%s", d->domid, d->devid, key);
	return xw->xs->read(xw->h, path, &len);
}

static void dev_write(struct xenwatch *xw, const struct xw_dev *d, const char *key,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void dev_write(struct xenwatch *xw, const struct xw_dev *d, const char *key,
		      const char *fmt, ...)
{
	char path[128], val[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	snprintf(path, sizeof(path), XW_ROOT "/%u/%u/%s", d->domid, d->devid, key);
	if (xw->xs->write(xw->h, path, val) < 0)
		td_log_warn("xenstore: writing %s: %s", path, strerror(errno));
}

/* Does the key read @want? */
static bool dev_key_is(struct xenwatch *xw, const struct xw_dev *d,
		       const char *key, const char *want)
{
	char *v = dev_read(xw, d, key);
	bool is = v && !strcmp(v, want);

	free(v);
	return is;
}

static void dev_fail(struct xenwatch *xw, struct xw_dev *d, const char *why)
{
	td_log_err("xenstore: " XW_ROOT "/%u/%u: %s", d->domid, d->devid, why);
	dev_write(xw, d, "hotplug-error", "%s", why);
	dev_write(xw, d, "hotplug-status", "error");
	d->state = XW_FAILED;
}

static void dev_connected(struct xenwatch *xw, struct xw_dev *d,
			  const struct xw_disk_info *info, bool readonly)
{
	d->id = info->id;
	d->state = XW_CONNECTED;
	dev_write(xw, d, "sectors", "%llu", (unsigned long long)info->sectors);
	dev_write(xw, d, "sector-size", "%u", info->sector_size);
	dev_write(xw, d, "info", "%u", readonly ? XW_VDISK_READONLY : 0u);
	if (info->kernel)
		dev_write(xw, d, "physical-device", "%x:%x", info->major, info->minor);
	dev_write(xw, d, "tapdisk-minor", "%llu", (unsigned long long)info->id);
	dev_write(xw, d, "hotplug-status", "connected");
}

/* A device with params and no disk yet: create it (or re-adopt it). */
static void dev_start(struct xenwatch *xw, struct xw_dev *d, const char *params)
{
	struct xw_disk_info info = { 0 };
	struct td_disk_error derr;
	struct td_disk target;
	char why[1024] = "", backend[96];
	char *mode;
	bool readonly;
	int err;

	if (td_disk_target_parse(params, &target, &derr)) {
		snprintf(why, sizeof(why), "params '%s': %s", params, derr.msg);
		dev_fail(xw, d, why);
		return;
	}
	mode = dev_read(xw, d, "mode");
	readonly = mode && (!strcmp(mode, "r") || !strcmp(mode, "ro"));
	free(mode);
	target.readonly = readonly;

	snprintf(backend, sizeof(backend), XW_ROOT "/%u/%u", d->domid, d->devid);
	if (dev_key_is(xw, d, "hotplug-status", "connected") &&
	    xw->dops->adopt(xw->ctx, &target, backend, &info) == 0) {
		td_log_info("xenstore: " XW_ROOT "/%u/%u: re-adopted disk %llu (%s:%s)",
			    d->domid, d->devid, (unsigned long long)info.id,
			    target.driver, target.path);
		d->id = info.id;
		d->state = XW_CONNECTED;
		return;
	}
	err = xw->dops->create(xw->ctx, &target, backend, &info, why, sizeof(why));
	if (err) {
		if (!why[0])
			snprintf(why, sizeof(why), "%s", strerror(-err));
		dev_fail(xw, d, why);
		return;
	}
	td_log_info("xenstore: %s: disk %llu serves %s:%s (%llu sectors)", backend,
		    (unsigned long long)info.id, target.driver, target.path,
		    (unsigned long long)info.sectors);
	dev_connected(xw, d, &info, readonly);
}

static void dev_stop(struct xenwatch *xw, struct xw_dev *d, const char *what)
{
	char why[512] = "";

	if (d->state != XW_CONNECTED)
		return;
	if (xw->dops->destroy(xw->ctx, d->id, why, sizeof(why)))
		td_log_warn("xenstore: " XW_ROOT "/%u/%u: destroying disk %llu: %s",
			    d->domid, d->devid, (unsigned long long)d->id, why);
	else
		td_log_info("xenstore: " XW_ROOT "/%u/%u %s: disk %llu destroyed",
			    d->domid, d->devid, what, (unsigned long long)d->id);
	d->state = XW_CLOSED;
}

static struct xw_dev *dev_get(struct xenwatch *xw, unsigned int domid,
			      unsigned int devid)
{
	struct xw_dev *d;

	for (d = xw->devs; d; d = d->next)
		if (d->domid == domid && d->devid == devid)
			return d;
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->domid = domid;
	d->devid = devid;
	d->state = XW_WAITING;
	d->next = xw->devs;
	xw->devs = d;
	return d;
}

/* One device node that exists: move it along. */
static void dev_update(struct xenwatch *xw, struct xw_dev *d)
{
	char *params, *online, *state;
	bool closing;

	online = dev_read(xw, d, "online");
	state = dev_read(xw, d, "state");
	closing = online && !strcmp(online, "0") && state &&
		  (!strcmp(state, "5") || !strcmp(state, "6"));
	free(online);
	free(state);

	switch (d->state) {
	case XW_WAITING:
		if (closing)
			return;
		params = dev_read(xw, d, "params");
		if (params && params[0])
			dev_start(xw, d, params);
		free(params);
		break;
	case XW_CONNECTED:
		if (closing)
			dev_stop(xw, d, "is closing (online=0)");
		break;
	case XW_FAILED:
	case XW_CLOSED:
		break;
	}
}

void xenwatch_scan(struct xenwatch *xw)
{
	char path[64], **doms, **devs;
	unsigned int ndom = 0, ndev, domid, devid;
	struct xw_dev *d, **pp;

	for (d = xw->devs; d; d = d->next)
		d->seen = false;
	doms = xw->xs->directory(xw->h, XW_ROOT, &ndom);
	for (unsigned int i = 0; doms && i < ndom; i++) {
		if (!parse_id(doms[i], &domid))
			continue;
		snprintf(path, sizeof(path), XW_ROOT "/%u", domid);
		ndev = 0;
		devs = xw->xs->directory(xw->h, path, &ndev);
		for (unsigned int j = 0; devs && j < ndev; j++) {
			if (!parse_id(devs[j], &devid))
				continue;
			d = dev_get(xw, domid, devid);
			if (!d)
				continue;
			d->seen = true;
			dev_update(xw, d);
		}
		free(devs);
	}
	free(doms);

	/* nodes that are gone: tear their disks down, forget them */
	for (pp = &xw->devs; *pp;) {
		d = *pp;
		if (d->seen) {
			pp = &d->next;
			continue;
		}
		dev_stop(xw, d, "was removed");
		*pp = d->next;
		free(d);
	}
}

int xenwatch_process(struct xenwatch *xw)
{
	unsigned int num;
	char **ev;
	int n = 0;

	while ((ev = xw->xs->read_watch(xw->h, &num))) {
		free(ev);
		n++;
	}
	if (n)
		xenwatch_scan(xw);
	return n;
}

int xenwatch_fileno(struct xenwatch *xw)
{
	return xw->xs->fileno(xw->h);
}

struct xenwatch *xenwatch_new(const struct xs_ops *xs, void *h,
			      const struct xw_disk_ops *dops, void *ctx)
{
	struct xenwatch *xw = calloc(1, sizeof(*xw));

	if (!xw) {
		xs->close(h);
		return NULL;
	}
	*xw = (struct xenwatch){ .xs = xs, .h = h, .dops = dops, .ctx = ctx };
	if (xs->watch(h, XW_ROOT, XW_TOKEN) < 0) {
		td_log_warn("xenstore: watching " XW_ROOT ": %s", strerror(errno));
		xenwatch_free(xw);
		return NULL;
	}
	return xw;
}

void xenwatch_free(struct xenwatch *xw)
{
	if (!xw)
		return;
	while (xw->devs) {
		struct xw_dev *d = xw->devs;

		xw->devs = d->next;
		free(d);
	}
	xw->xs->close(xw->h);
	free(xw);
}
