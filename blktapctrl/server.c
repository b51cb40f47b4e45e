// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The control socket: accept a connection, check the peer is root (or our
 * own uid), read one request, answer it, close. Requests are handled one
 * at a time in the daemon's loop; a client gets at most a few seconds to
 * send its request.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "blktap/disk-line.h"
#include "blktap/log.h"
#include "blktapctrl.h"
#include "xenwatch.h"

#define CLIENT_TIMEOUT_S	5

static void add_disk_record(struct blktap_ctl_buf *b, const struct disk *d)
{
	char dev[4200];

	disk_device(d, dev, sizeof(dev));
	/* pid and minor first: Xen's block-tap script splits on commas */
	blktap_ctl_buf_add(b, "pid", "%d", (int)d->pid);
	blktap_ctl_buf_add(b, "minor", "%u", d->minor);
	blktap_ctl_buf_add(b, "state", "%s", d->paused && d->state == DISK_RUNNING ?
			   "paused" : disk_state_names[d->state]);
	blktap_ctl_buf_add(b, "type", "%s", d->type);
	blktap_ctl_buf_add(b, "file", "%s", d->path);
	blktap_ctl_buf_add(b, "kind", "%s", d->kernel ? "kernel" : "nbd");
	blktap_ctl_buf_add(b, "device", "%s", dev);
	blktap_ctl_buf_add(b, "readonly", "%d", d->readonly);
	if (d->nbd_unix)
		blktap_ctl_buf_add(b, "nbd-unix", "%s", d->nbd_unix);
	if (d->nbd_tcp)
		blktap_ctl_buf_add(b, "nbd-tcp", "%s", d->nbd_tcp);
	if (d->name)
		blktap_ctl_buf_add(b, "name", "%s", d->name);
	if (d->vdev)
		blktap_ctl_buf_add(b, "vdev", "%s", d->vdev);
	blktap_ctl_buf_add(b, "restarts", "%u", d->restarts);
	if (d->reason[0])
		blktap_ctl_buf_add(b, "reason", "%s", d->reason);
	blktap_ctl_buf_end_record(b);
}

static int error_reply(struct blktap_ctl_buf *b, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int error_reply(struct blktap_ctl_buf *b, int err, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	blktap_ctl_buf_free(b);
	blktap_ctl_buf_add(b, "error", "%s", msg);
	return err;
}

static int do_check(struct ctrl *c, const struct blktap_ctl_rec *r,
		    struct blktap_ctl_buf *b)
{
	char why[512] = "";
	int k = kernel_check(why, sizeof(why));

	(void)c;
	(void)r;
	blktap_ctl_buf_add(b, "version", "%d", BLKTAP_CTL_VERSION);
	blktap_ctl_buf_add(b, "kernel", "%d", k == 0);
	if (k)
		blktap_ctl_buf_add(b, "kernel-error", "%s", why);
	return 0;
}

/* minor= and/or pid= of a request; -1 / 0 when absent. */
static int parse_selector(const struct blktap_ctl_rec *r, int64_t *minor,
			  pid_t *pid)
{
	uint64_t v;
	int err;

	*minor = -1;
	*pid = 0;
	err = blktap_ctl_get_u64(r, "minor", &v);
	if (err == -EINVAL || (!err && v > UINT32_MAX))
		return -EINVAL;
	if (!err)
		*minor = (int64_t)v;
	err = blktap_ctl_get_u64(r, "pid", &v);
	if (err == -EINVAL || (!err && (v == 0 || v > INT32_MAX)))
		return -EINVAL;
	if (!err)
		*pid = (pid_t)v;
	return 0;
}

static int do_list(struct ctrl *c, const struct blktap_ctl_rec *r,
		   struct blktap_ctl_buf *b)
{
	const char *type = blktap_ctl_get(r, "type");
	const char *file = blktap_ctl_get(r, "file");
	int64_t minor;
	pid_t pid;

	if (parse_selector(r, &minor, &pid))
		return error_reply(b, -EINVAL, "minor= and pid= must be numbers");
	for (struct disk *d = c->disks; d; d = d->next) {
		if ((type && strcmp(type, d->type)) || (file && strcmp(file, d->path)) ||
		    (minor >= 0 && d->minor != minor) || (pid > 0 && d->pid != pid))
			continue;
		add_disk_record(b, d);
	}
	return 0;
}

static char *dup_nonempty(const struct blktap_ctl_rec *r, const char *key)
{
	const char *v = blktap_ctl_get(r, key);

	return v && *v ? strdup(v) : NULL;
}

static int do_create(struct ctrl *c, const struct blktap_ctl_rec *r,
		     struct blktap_ctl_buf *b)
{
	const char *type = blktap_ctl_get(r, "type");
	const char *path = blktap_ctl_get(r, "path");
	struct td_disk_error derr;
	struct td_disk parsed;
	struct disk *d, *other;
	char spec[4200], why[1024] = "";
	uint64_t v;
	struct stat st;
	int err;

	if (!type || !path)
		return error_reply(b, -EINVAL, "create needs type= and path=");
	snprintf(spec, sizeof(spec), "%s:%s", type, path);
	if (td_disk_target_parse(spec, &parsed, &derr))
		return error_reply(b, -EINVAL, "%s", derr.msg);
	if (strcmp(parsed.driver, "ram") && stat(path, &st) < 0)
		return error_reply(b, -errno, "%s: %s", path, strerror(errno));
	other = disk_find_image(c, NULL, path);
	if (other)
		return error_reply(b, -EBUSY,
				   "%s is already served by disk %u (pid %d, %s)",
				   path, other->minor, (int)other->pid,
				   disk_state_names[other->state]);

	d = calloc(1, sizeof(*d));
	if (!d)
		return error_reply(b, -ENOMEM, "out of memory");
	snprintf(d->type, sizeof(d->type), "%s", parsed.driver);
	d->path = strdup(path);
	d->nbd_unix = dup_nonempty(r, "nbd-unix");
	d->nbd_tcp = dup_nonempty(r, "nbd-tcp");
	d->name = dup_nonempty(r, "name");
	d->vdev = dup_nonempty(r, "vdev");
	d->readonly = !blktap_ctl_get_u64(r, "readonly", &v) && v;
	err = blktap_ctl_get_u64(r, "kernel", &v);
	d->kernel = err ? !(d->nbd_unix || d->nbd_tcp) : v != 0;
	if (!d->path) {
		disk_free(d);
		return error_reply(b, -ENOMEM, "out of memory");
	}
	for (other = c->disks; other && d->nbd_unix; other = other->next)
		if (other->nbd_unix && !strcmp(other->nbd_unix, d->nbd_unix)) {
			disk_free(d);
			return error_reply(b, -EADDRINUSE,
					   "NBD socket %s is in use by disk %u",
					   other->nbd_unix, other->minor);
		}

	err = disk_create(c, d, &d, why, sizeof(why));
	if (err) {
		disk_free(d);
		return error_reply(b, err, "%s", why);
	}
	add_disk_record(b, d);
	return 0;
}

/* xs-ctrl.c creates backend/tap disks through the same handler. */
int server_create(struct ctrl *c, const struct blktap_ctl_rec *r,
		  struct blktap_ctl_buf *b)
{
	return do_create(c, r, b);
}

static struct disk *select_disk(struct ctrl *c, const struct blktap_ctl_rec *r,
				struct blktap_ctl_buf *b, int *err)
{
	struct disk *d;
	int64_t minor;
	pid_t pid;

	if (parse_selector(r, &minor, &pid)) {
		*err = error_reply(b, -EINVAL, "minor= and pid= must be numbers");
		return NULL;
	}
	if (minor < 0 && pid <= 0) {
		*err = error_reply(b, -EINVAL, "give a minor (-m) or a pid (-p)");
		return NULL;
	}
	d = disk_find(c, minor, pid);
	if (!d) {
		if (minor >= 0 && pid > 0 && disk_find(c, minor, 0))
			*err = error_reply(b, -ENOENT,
					   "disk %lld is not served by pid %d",
					   (long long)minor, (int)pid);
		else if (minor >= 0)
			*err = error_reply(b, -ENOENT, "no disk with minor %lld",
					   (long long)minor);
		else
			*err = error_reply(b, -ENOENT, "no disk served by pid %d",
					   (int)pid);
	}
	return d;
}

static int do_destroy(struct ctrl *c, const struct blktap_ctl_rec *r,
		      struct blktap_ctl_buf *b)
{
	char why[512];
	struct disk *d;
	int err = 0;

	d = select_disk(c, r, b, &err);
	if (!d)
		return err;
	add_disk_record(b, d);
	err = disk_destroy(c, d, why, sizeof(why));
	if (err)
		return error_reply(b, err, "%s", why);
	return 0;
}

/* STATS, PAUSE, UNPAUSE: answered by the disk's tapdisk. */
static int do_forward(struct ctrl *c, const struct blktap_ctl_rec *r,
		      struct blktap_ctl_buf *b, uint16_t op)
{
	struct blktap_ctl_msg reply;
	const char *msg;
	char why[512];
	struct disk *d;
	int err = 0;

	d = select_disk(c, r, b, &err);
	if (!d)
		return err;
	err = disk_tapdisk_call(c, d, op, &reply, why, sizeof(why));
	if (err)
		return error_reply(b, err, "disk %u: %s", d->minor, why);
	if (reply.status) {
		msg = reply.nrec ? blktap_ctl_get(&reply.rec[0], "error") : NULL;
		err = error_reply(b, reply.status, "disk %u: %s", d->minor,
				  msg ? msg : strerror(-reply.status));
		blktap_ctl_msg_free(&reply);
		return err;
	}
	blktap_ctl_buf_add(b, "minor", "%u", d->minor);
	for (size_t i = 0; reply.nrec && i < reply.rec[0].n; i++)
		if (strcmp(reply.rec[0].kv[i].key, "minor"))
			blktap_ctl_buf_add(b, reply.rec[0].kv[i].key, "%s",
					   reply.rec[0].kv[i].val);
	blktap_ctl_msg_free(&reply);
	return 0;
}

static int do_stats(struct ctrl *c, const struct blktap_ctl_rec *r,
		    struct blktap_ctl_buf *b)
{
	return do_forward(c, r, b, BLKTAP_CTL_OP_STATS);
}

static int do_pause(struct ctrl *c, const struct blktap_ctl_rec *r,
		    struct blktap_ctl_buf *b)
{
	return do_forward(c, r, b, BLKTAP_CTL_OP_PAUSE);
}

static int do_unpause(struct ctrl *c, const struct blktap_ctl_rec *r,
		      struct blktap_ctl_buf *b)
{
	return do_forward(c, r, b, BLKTAP_CTL_OP_UNPAUSE);
}

typedef int (*handler_fn)(struct ctrl *c, const struct blktap_ctl_rec *r,
			  struct blktap_ctl_buf *b);

static const handler_fn handlers[BLKTAP_CTL_OP_MAX] = {
	[BLKTAP_CTL_OP_CHECK] = do_check,
	[BLKTAP_CTL_OP_LIST] = do_list,
	[BLKTAP_CTL_OP_CREATE] = do_create,
	[BLKTAP_CTL_OP_DESTROY] = do_destroy,
	[BLKTAP_CTL_OP_PAUSE] = do_pause,
	[BLKTAP_CTL_OP_UNPAUSE] = do_unpause,
	[BLKTAP_CTL_OP_STATS] = do_stats,
};

static void serve_client(struct ctrl *c, int fd)
{
	struct timeval tv = { .tv_sec = CLIENT_TIMEOUT_S };
	struct blktap_ctl_buf b = { 0 };
	struct blktap_ctl_msg m;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	uint16_t op = 0;
	int status, err;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
	    (cred.uid != 0 && cred.uid != geteuid())) {
		status = error_reply(&b, -EPERM,
				     "permission denied: only root may control blktapctrl");
		blktap_ctl_send(fd, BLKTAP_CTL_REPLY, status, &b);
		goto out;
	}
	err = blktap_ctl_recv(fd, &m);
	if (err) {
		td_log_warn("bad request from pid %d: %s", (int)cred.pid,
			    strerror(-err));
		status = error_reply(&b, err == -EPROTO ? -EPROTO : -EBADMSG,
				     "bad request: %s (blktapctrl speaks protocol version %d)",
				     strerror(-err), BLKTAP_CTL_VERSION);
		blktap_ctl_send(fd, BLKTAP_CTL_REPLY, status, &b);
		goto out;
	}
	op = m.op;
	if (op >= BLKTAP_CTL_OP_MAX || !handlers[op]) {
		status = error_reply(&b, -EOPNOTSUPP, "unknown request %u", op);
	} else if (m.nrec > 1) {
		status = error_reply(&b, -EINVAL, "a request has at most one record");
	} else {
		td_log_debug("%s request from pid %d", blktap_ctl_op_name(op),
			     (int)cred.pid);
		status = handlers[op](c, m.nrec ? &m.rec[0] : NULL, &b);
	}
	blktap_ctl_msg_free(&m);
	if (b.err)
		status = error_reply(&b, b.err, "reply too large or malformed");
	err = blktap_ctl_send(fd, op | BLKTAP_CTL_REPLY, status, &b);
	if (err)
		td_log_warn("replying to pid %d: %s", (int)cred.pid, strerror(-err));
out:
	blktap_ctl_buf_free(&b);
	close(fd);
}

static void on_accept(struct ctrl *c, struct ev *ev, uint32_t events)
{
	int fd;

	(void)events;
	fd = accept4(ev->fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR)
			td_log_warn("accept: %s", strerror(errno));
		return;
	}
	serve_client(c, fd);
}

int server_listen(struct ctrl *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = c->opts.socket_path;
	mode_t old;
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		td_log_err("socket path %s is too long", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(path);	/* we hold the run dir's lock: a leftover is stale */
	old = umask(0077);
	err = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (err < 0 || chmod(path, 0600) < 0 || listen(fd, 64) < 0) {
		err = -errno;
		td_log_err("listening on %s: %s", path, strerror(errno));
		close(fd);
		return err;
	}
	c->listen_ev = (struct ev){ .fd = fd, .cb = on_accept };
	err = ev_add(c, &c->listen_ev, EPOLLIN);
	if (err) {
		close(fd);
		return err;
	}
	return 0;
}

void server_close(struct ctrl *c)
{
	if (c->listen_ev.fd < 0)
		return;
	ev_del(c, &c->listen_ev);
	close(c->listen_ev.fd);
	c->listen_ev.fd = -1;
	unlink(c->opts.socket_path);
}
