// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Unit tests for blktapctrl/xenwatch.c: the backend/tap watcher, driven by
 * the in-memory store (blktapctrl/xs-fake.c) and fake disks. No real
 * xenstored runs on a host without the hypervisor (Debian's xenstored
 * needs privcmd, or crashes with --no-domain-init; oxenstored needs
 * libxenctrl), so this is where the logic is tested.
 */
#include <errno.h>
#include <poll.h>

#include "util.h"
#include "../../blktapctrl/xenwatch.c"
#include "../../blktapctrl/xs-fake.c"

#define BE "backend/tap/3/51712"

struct fake_disk {
	bool used;
	char driver[16], path[TD_DISK_PATH_MAX], backend[96];
	bool readonly;
};

struct disks {
	struct fake_disk d[8];
	int creates, destroys, adopts;
	int fail_create;		/* -errno for the next creates */
	char last_destroy_why[64];
};

static int fd_create(void *ctx, const struct td_disk *t, const char *backend,
		     struct xw_disk_info *info, char *why, size_t whylen)
{
	struct disks *ds = ctx;

	ds->creates++;
	if (ds->fail_create) {
		snprintf(why, whylen, "/dev/blktap-control is missing: modprobe blktap");
		return ds->fail_create;
	}
	for (unsigned int i = 0; i < 8; i++) {
		struct fake_disk *d = &ds->d[i];

		if (d->used)
			continue;
		d->used = true;
		snprintf(d->driver, sizeof(d->driver), "%s", t->driver);
		snprintf(d->path, sizeof(d->path), "%s", t->path);
		snprintf(d->backend, sizeof(d->backend), "%s", backend);
		d->readonly = t->readonly;
		info->id = i;
		info->sectors = 2048 * (i + 1);
		info->sector_size = 512;
		info->kernel = true;
		info->major = 254;
		info->minor = i;
		return 0;
	}
	return -ENOSPC;
}

static int fd_adopt(void *ctx, const struct td_disk *t, const char *backend,
		    struct xw_disk_info *info)
{
	struct disks *ds = ctx;

	ds->adopts++;
	for (unsigned int i = 0; i < 8; i++) {
		struct fake_disk *d = &ds->d[i];

		if (d->used && !strcmp(d->path, t->path) && !strcmp(d->backend, backend)) {
			info->id = i;
			return 0;
		}
	}
	return -ENOENT;
}

static int fd_destroy(void *ctx, uint64_t id, char *why, size_t whylen)
{
	struct disks *ds = ctx;

	ds->destroys++;
	if (id >= 8 || !ds->d[id].used) {
		snprintf(why, whylen, "no disk %llu", (unsigned long long)id);
		return -ENOENT;
	}
	ds->d[id].used = false;
	return 0;
}

static const struct xw_disk_ops fake_disk_ops = {
	.create = fd_create,
	.adopt = fd_adopt,
	.destroy = fd_destroy,
};

struct fixture {
	void *h;
	struct xenwatch *xw;
	struct disks ds;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->h = xs_fake_open();
	assert_non_null(f->h);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->xw)
		xenwatch_free(f->xw);	/* closes the store */
	else
		xs_fake_ops.close(f->h);
	free(f);
	return 0;
}

static void start(struct fixture *f)
{
	f->xw = xenwatch_new(&xs_fake_ops, f->h, &fake_disk_ops, &f->ds);
	assert_non_null(f->xw);
}

static void put(struct fixture *f, const char *path, const char *val)
{
	assert_int_equal(xs_fake_ops.write(f->h, path, val), 0);
}

/* The value at @path, or "" when missing (static buffer). */
static const char *get(struct fixture *f, const char *path)
{
	static char buf[1024];
	unsigned int len;
	char *v = xs_fake_ops.read(f->h, path, &len);

	snprintf(buf, sizeof(buf), "%s", v ? v : "");
	free(v);
	return buf;
}

static bool exists(struct fixture *f, const char *path)
{
	unsigned int len;
	char *v = xs_fake_ops.read(f->h, path, &len);

	free(v);
	return v != NULL;
}

/* Deliver events until none is pending (our own writes queue more). */
static void settle(struct fixture *f)
{
	struct pollfd p = { .fd = xenwatch_fileno(f->xw), .events = POLLIN };

	for (int i = 0; i < 100 && poll(&p, 1, 0) > 0; i++)
		xenwatch_process(f->xw);
	assert_int_equal(xs_fake_pending(f->h), 0);
	assert_int_equal(poll(&p, 1, 0), 0);
}

/* A device as xl would write it: the backend keys, params last. */
static void add_device(struct fixture *f, const char *be, const char *params,
		       const char *mode)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/frontend-id", be);
	put(f, path, "3");
	snprintf(path, sizeof(path), "%s/online", be);
	put(f, path, "1");
	snprintf(path, sizeof(path), "%s/state", be);
	put(f, path, "1");
	snprintf(path, sizeof(path), "%s/mode", be);
	put(f, path, mode);
	if (params) {
		snprintf(path, sizeof(path), "%s/params", be);
		put(f, path, params);
	}
}

static void test_fake_store(void **state)
{
	struct fixture *f = *state;
	unsigned int n, num;
	char **vec;

	put(f, "a/b/c", "1");
	assert_string_equal(get(f, "a/b"), "");	/* parents made, empty */
	vec = xs_fake_ops.directory(f->h, "a", &n);
	assert_non_null(vec);
	assert_int_equal(n, 1);
	assert_string_equal(vec[0], "b");
	free(vec);
	assert_int_equal(xs_fake_ops.watch(f->h, "a/b", "t"), 0);
	assert_int_equal(xs_fake_pending(f->h), 1);	/* fires once when set */
	put(f, "a/b/d", "2");
	put(f, "a/x", "3");				/* not below a/b */
	assert_int_equal(xs_fake_ops.rm(f->h, "a/b"), 0);
	assert_false(exists(f, "a/b/c"));
	assert_true(exists(f, "a"));
	assert_int_equal(xs_fake_pending(f->h), 3);
	vec = xs_fake_ops.read_watch(f->h, &num);
	assert_non_null(vec);
	assert_string_equal(vec[0], "a/b");
	assert_string_equal(vec[1], "t");
	free(vec);
	free(xs_fake_ops.read_watch(f->h, &num));
	vec = xs_fake_ops.read_watch(f->h, &num);
	assert_string_equal(vec[0], "a/b");		/* the rm */
	free(vec);
	errno = 0;
	assert_null(xs_fake_ops.read_watch(f->h, &num));
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(xs_fake_ops.rm(f->h, "nope"), -1);
	assert_int_equal(errno, ENOENT);
}

static void test_create_and_remove(void **state)
{
	struct fixture *f = *state;

	start(f);
	settle(f);				/* the initial event: nothing there */
	assert_int_equal(f->ds.creates, 0);

	add_device(f, BE, NULL, "w");
	settle(f);
	assert_int_equal(f->ds.creates, 0);	/* no params yet: wait */
	assert_false(exists(f, BE "/hotplug-status"));

	put(f, BE "/params", "aio:/srv/a.img");
	settle(f);
	assert_int_equal(f->ds.creates, 1);
	assert_true(f->ds.d[0].used);
	assert_string_equal(f->ds.d[0].driver, "aio");
	assert_string_equal(f->ds.d[0].path, "/srv/a.img");
	assert_string_equal(f->ds.d[0].backend, BE);
	assert_false(f->ds.d[0].readonly);
	assert_string_equal(get(f, BE "/sectors"), "2048");
	assert_string_equal(get(f, BE "/sector-size"), "512");
	assert_string_equal(get(f, BE "/info"), "0");
	assert_string_equal(get(f, BE "/physical-device"), "fe:0");
	assert_string_equal(get(f, BE "/tapdisk-minor"), "0");
	assert_string_equal(get(f, BE "/hotplug-status"), "connected");
	assert_false(exists(f, BE "/hotplug-error"));

	/* more events (other keys, our own writes) create nothing more */
	put(f, BE "/state", "4");
	settle(f);
	assert_int_equal(f->ds.creates, 1);
	assert_int_equal(f->ds.destroys, 0);

	/* the toolstack removes the backend node: the disk goes */
	assert_int_equal(xs_fake_ops.rm(f->h, BE), 0);
	settle(f);
	assert_int_equal(f->ds.destroys, 1);
	assert_false(f->ds.d[0].used);

	/* the same device again: a new disk */
	add_device(f, BE, "aio:/srv/a.img", "w");
	settle(f);
	assert_int_equal(f->ds.creates, 2);
	assert_string_equal(get(f, BE "/hotplug-status"), "connected");

	/* the whole domain's directory goes */
	assert_int_equal(xs_fake_ops.rm(f->h, "backend/tap/3"), 0);
	settle(f);
	assert_int_equal(f->ds.destroys, 2);
}

static void test_params_forms(void **state)
{
	struct fixture *f = *state;

	start(f);
	add_device(f, "backend/tap/1/51712", "qcow:/srv/b.qcow", "r");
	add_device(f, "backend/tap/1/51728", "tapdisk:aio:/srv/c.img", "w");
	add_device(f, "backend/tap/2/51712", "tap:vmdk:/srv/d.vmdk", "ro");
	settle(f);
	assert_int_equal(f->ds.creates, 3);
	for (unsigned int i = 0; i < 3; i++)
		assert_true(f->ds.d[i].used);
	/* which slot each got depends on the scan order: look them up */
	for (unsigned int i = 0; i < 3; i++) {
		struct fake_disk *d = &f->ds.d[i];

		if (!strcmp(d->path, "/srv/b.qcow")) {
			assert_string_equal(d->driver, "qcow");
			assert_true(d->readonly);
			assert_string_equal(d->backend, "backend/tap/1/51712");
		} else if (!strcmp(d->path, "/srv/c.img")) {
			assert_string_equal(d->driver, "aio");
			assert_false(d->readonly);
		} else {
			assert_string_equal(d->path, "/srv/d.vmdk");
			assert_string_equal(d->driver, "vmdk");
			assert_true(d->readonly);
		}
	}
	assert_string_equal(get(f, "backend/tap/1/51712/info"), "4");
	assert_string_equal(get(f, "backend/tap/1/51728/info"), "0");
	assert_string_equal(get(f, "backend/tap/2/51712/info"), "4");
	assert_string_equal(get(f, "backend/tap/2/51712/hotplug-status"), "connected");
}

static void test_errors(void **state)
{
	struct fixture *f = *state;

	start(f);
	/* a bad params line: hotplug-error, no disk */
	add_device(f, "backend/tap/1/1", "nodriver:/x", "w");
	add_device(f, "backend/tap/1/2", "aio:relative.img", "w");
	/* junk under backend/tap is ignored */
	put(f, "backend/tap/dom/1/params", "aio:/x");
	put(f, "backend/tap/1/x/params", "aio:/x");
	settle(f);
	assert_int_equal(f->ds.creates, 0);
	assert_string_equal(get(f, "backend/tap/1/1/hotplug-status"), "error");
	assert_non_null(strstr(get(f, "backend/tap/1/1/hotplug-error"), "unknown driver"));
	assert_string_equal(get(f, "backend/tap/1/2/hotplug-status"), "error");
	assert_non_null(strstr(get(f, "backend/tap/1/2/hotplug-error"), "not absolute"));

	/* create fails (no kernel module): the reason lands in xenstore */
	f->ds.fail_create = -ENODEV;
	add_device(f, "backend/tap/1/3", "aio:/srv/a.img", "w");
	settle(f);
	assert_int_equal(f->ds.creates, 1);
	assert_string_equal(get(f, "backend/tap/1/3/hotplug-status"), "error");
	assert_non_null(strstr(get(f, "backend/tap/1/3/hotplug-error"), "modprobe blktap"));
	assert_false(exists(f, "backend/tap/1/3/sectors"));

	/* a failed device is not retried on every event... */
	f->ds.fail_create = 0;
	put(f, "backend/tap/1/3/state", "2");
	settle(f);
	assert_int_equal(f->ds.creates, 1);
	/* ...but is when written again after removal */
	assert_int_equal(xs_fake_ops.rm(f->h, "backend/tap/1/3"), 0);
	settle(f);
	assert_int_equal(f->ds.destroys, 0);	/* there was no disk */
	add_device(f, "backend/tap/1/3", "aio:/srv/a.img", "w");
	settle(f);
	assert_int_equal(f->ds.creates, 2);
	assert_string_equal(get(f, "backend/tap/1/3/hotplug-status"), "connected");
}

static void test_online_closing(void **state)
{
	struct fixture *f = *state;

	start(f);
	add_device(f, BE, "aio:/srv/a.img", "w");
	settle(f);
	assert_int_equal(f->ds.creates, 1);

	/* online=0 alone is not enough; with state Closing it is */
	put(f, BE "/online", "0");
	settle(f);
	assert_int_equal(f->ds.destroys, 0);
	put(f, BE "/state", "5");
	settle(f);
	assert_int_equal(f->ds.destroys, 1);
	assert_false(f->ds.d[0].used);
	/* the node's removal afterwards destroys nothing twice */
	assert_int_equal(xs_fake_ops.rm(f->h, BE), 0);
	settle(f);
	assert_int_equal(f->ds.destroys, 1);

	/* a device that is already closing when seen is not created */
	add_device(f, BE, NULL, "w");
	put(f, BE "/online", "0");
	put(f, BE "/state", "6");
	put(f, BE "/params", "aio:/srv/a.img");
	settle(f);
	assert_int_equal(f->ds.creates, 1);
}

static void test_readopt(void **state)
{
	struct fixture *f = *state;

	/* blktapctrl restarted: the disk runs, xenstore says connected */
	f->ds.d[5] = (struct fake_disk){ .used = true, .driver = "aio",
					 .path = "/srv/a.img", .backend = BE };
	add_device(f, BE, "aio:/srv/a.img", "w");
	put(f, BE "/hotplug-status", "connected");
	/* another connected one whose disk is gone: created again */
	add_device(f, "backend/tap/4/1", "aio:/srv/z.img", "w");
	put(f, "backend/tap/4/1/hotplug-status", "connected");
	start(f);
	settle(f);
	assert_int_equal(f->ds.adopts, 2);
	assert_int_equal(f->ds.creates, 1);
	assert_true(f->ds.d[0].used);
	assert_string_equal(f->ds.d[0].path, "/srv/z.img");
	assert_string_equal(get(f, "backend/tap/4/1/hotplug-status"), "connected");

	/* the adopted one is torn down on removal like any other */
	assert_int_equal(xs_fake_ops.rm(f->h, BE), 0);
	settle(f);
	assert_int_equal(f->ds.destroys, 1);
	assert_false(f->ds.d[5].used);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fake_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_and_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_params_forms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_online_closing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readopt, setup, teardown),
	};

	td_log_init("test-xenwatch", TD_LOG_DEBUG);
	return cmocka_run_group_tests_name("xenwatch", tests, NULL, NULL);
}
