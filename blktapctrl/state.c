// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Per-disk state files: RUN_DIR/disks/MINOR holds what a restarted
 * blktapctrl needs to find and re-adopt the disk's tapdisk (pid and its
 * start time, so a recycled pid is not mistaken for it) and to restart it
 * (image, frontends). The format is the control protocol's key=value text.
 * Files are replaced atomically (write a temporary file, rename).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blktap/log.h"
#include "blktapctrl.h"

static char *path_of(struct ctrl *c, const char *fmt, unsigned int minor)
{
	char *p;

	if (asprintf(&p, fmt, c->opts.run_dir, minor) < 0)
		return NULL;
	return p;
}

char *state_log_path(struct ctrl *c, unsigned int minor)
{
	return path_of(c, "%s/tapdisk-%u.log", minor);
}

char *state_control_path(struct ctrl *c, unsigned int minor)
{
	return path_of(c, "%s/tapdisk-%u.ctl", minor);
}

int state_init(struct ctrl *c)
{
	char *dir;
	int err = 0;

	if (asprintf(&dir, "%s/disks", c->opts.run_dir) < 0)
		return -ENOMEM;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		err = -errno;
		td_log_err("creating %s: %s", dir, strerror(errno));
	}
	free(dir);
	return err;
}

int state_save(struct ctrl *c, const struct disk *d)
{
	struct blktap_ctl_buf b = { 0 };
	char *path = path_of(c, "%s/disks/%u", d->minor);
	char *tmp = path_of(c, "%s/disks/.%u.tmp", d->minor);
	int fd, err = 0;

	if (!path || !tmp) {
		err = -ENOMEM;
		goto out;
	}
	blktap_ctl_buf_add(&b, "minor", "%u", d->minor);
	blktap_ctl_buf_add(&b, "kernel", "%d", d->kernel);
	blktap_ctl_buf_add(&b, "type", "%s", d->type);
	blktap_ctl_buf_add(&b, "path", "%s", d->path);
	blktap_ctl_buf_add(&b, "readonly", "%d", d->readonly);
	if (d->nbd_unix)
		blktap_ctl_buf_add(&b, "nbd-unix", "%s", d->nbd_unix);
	if (d->nbd_tcp)
		blktap_ctl_buf_add(&b, "nbd-tcp", "%s", d->nbd_tcp);
	if (d->name)
		blktap_ctl_buf_add(&b, "name", "%s", d->name);
	if (d->vdev)
		blktap_ctl_buf_add(&b, "vdev", "%s", d->vdev);
	blktap_ctl_buf_add(&b, "state", "%s", disk_state_names[d->state]);
	blktap_ctl_buf_add(&b, "pid", "%d", (int)d->pid);
	blktap_ctl_buf_add(&b, "starttime", "%llu", (unsigned long long)d->starttime);
	blktap_ctl_buf_add(&b, "restarts", "%u", d->restarts);
	blktap_ctl_buf_add(&b, "paused", "%d", d->paused);
	if (d->reason[0])
		blktap_ctl_buf_add(&b, "reason", "%s", d->reason);
	if (b.err) {
		err = b.err;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	if (write(fd, b.data, b.len) != (ssize_t)b.len)
		err = errno ? -errno : -EIO;
	if (close(fd) < 0 && !err)
		err = -errno;
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	if (err)
		unlink(tmp);
out:
	if (err)
		td_log_err("saving the state of disk %u: %s", d->minor, strerror(-err));
	blktap_ctl_buf_free(&b);
	free(path);
	free(tmp);
	return err;
}

void state_remove(struct ctrl *c, const struct disk *d)
{
	char *path = path_of(c, "%s/disks/%u", d->minor);

	if (path && unlink(path) < 0 && errno != ENOENT)
		td_log_warn("removing %s: %s", path, strerror(errno));
	free(path);
}

static char *dup_opt(const struct blktap_ctl_rec *r, const char *key)
{
	const char *v = blktap_ctl_get(r, key);

	return v && *v ? strdup(v) : NULL;
}

/* A disk from a state file's text; NULL (after logging) if unusable. */
static struct disk *disk_from_text(const char *file, const char *text, size_t len)
{
	struct blktap_ctl_msg m;
	const struct blktap_ctl_rec *r;
	struct disk *d = NULL;
	uint64_t minor, kernel, ro, pid, st = 0, restarts = 0, paused = 0;
	const char *type, *path, *state;

	if (blktap_ctl_decode(text, len, &m) || m.nrec != 1) {
		td_log_warn("%s: not a state file; ignoring it", file);
		goto out;
	}
	r = &m.rec[0];
	type = blktap_ctl_get(r, "type");
	path = blktap_ctl_get(r, "path");
	state = blktap_ctl_get(r, "state");
	if (blktap_ctl_get_u64(r, "minor", &minor) || minor > UINT32_MAX ||
	    blktap_ctl_get_u64(r, "kernel", &kernel) ||
	    blktap_ctl_get_u64(r, "readonly", &ro) ||
	    blktap_ctl_get_u64(r, "pid", &pid) || pid > INT32_MAX ||
	    !type || strlen(type) >= sizeof(d->type) || !path || !*path || !state) {
		td_log_warn("%s: incomplete state file; ignoring it", file);
		goto out;
	}
	blktap_ctl_get_u64(r, "starttime", &st);
	blktap_ctl_get_u64(r, "restarts", &restarts);
	blktap_ctl_get_u64(r, "paused", &paused);
	d = calloc(1, sizeof(*d));
	if (!d)
		goto out;
	d->minor = (unsigned int)minor;
	d->kernel = kernel != 0;
	d->readonly = ro != 0;
	strcpy(d->type, type);
	d->path = strdup(path);
	d->nbd_unix = dup_opt(r, "nbd-unix");
	d->nbd_tcp = dup_opt(r, "nbd-tcp");
	d->name = dup_opt(r, "name");
	d->vdev = dup_opt(r, "vdev");
	d->pid = (pid_t)pid;
	d->starttime = st;
	d->restarts = (unsigned int)restarts;
	d->paused = paused != 0;
	d->state = !strcmp(state, "failed") ? DISK_FAILED : DISK_RUNNING;
	if (blktap_ctl_get(r, "reason"))
		copy_str(d->reason, sizeof(d->reason), blktap_ctl_get(r, "reason"));
	d->pidfd = -1;
	d->timer_ev.fd = -1;
	if (!d->path) {
		disk_free(d);
		d = NULL;
	}
out:
	blktap_ctl_msg_free(&m);
	return d;
}

void state_load_all(struct ctrl *c)
{
	char *dir;
	DIR *dp;
	struct dirent *de;

	if (asprintf(&dir, "%s/disks", c->opts.run_dir) < 0)
		return;
	dp = opendir(dir);
	if (!dp) {
		free(dir);
		return;
	}
	while ((de = readdir(dp))) {
		char buf[16384];
		struct disk *d;
		ssize_t n;
		int fd;

		if (de->d_name[0] == '.')
			continue;	/* ., .. and temporary files */
		fd = openat(dirfd(dp), de->d_name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf));
		close(fd);
		if (n <= 0)
			continue;
		d = disk_from_text(de->d_name, buf, (size_t)n);
		if (d)
			disk_adopt(c, d);
	}
	closedir(dp);
	free(dir);
}
