// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tapdisk's control socket (see control.h). Each connection is read without
 * blocking until one whole request is in, answered, and closed. PAUSE
 * quiesces the frontends and answers only once nothing is in flight, so a
 * paused disk's image can be copied or swapped safely.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "blktap/control.h"
#include "blktap/log.h"
#include "control.h"

#define CTL_MAX_CONNS	8
#define DRAIN_POLL_NS	(1ull * 1000000)	/* check for drained I/O every ms */

struct ctl_conn {
	struct ctl_conn *next;
	struct td_control *ctl;
	int fd;
	struct td_event *ev;
	struct blktap_ctl_hdr hdr;
	char *payload;
	size_t have;			/* bytes of header + payload read */
	bool draining;			/* a PAUSE waiting for in-flight I/O */
};

struct td_control {
	struct td_ctx *ctx;
	struct td_image *img;
	char *path;
	int fd;
	struct td_event *ev;
	struct td_control_frontend fe;
	bool paused;
	struct td_event *drain_timer;
	struct ctl_conn *conns;
	unsigned int nconns;
};

/* Free a connection already unlinked from ctl->conns. */
static void conn_free(struct ctl_conn *c)
{
	c->ctl->nconns--;
	if (c->ev)
		td_loop_del(c->ev);
	close(c->fd);
	free(c->payload);
	free(c);
}

static void conn_close(struct ctl_conn *c)
{
	for (struct ctl_conn **pp = &c->ctl->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	conn_free(c);
}

/* Answer and hang up; the reply is small and the socket fresh, so a failed
 * non-blocking send only means the client went away. */
static void conn_reply(struct ctl_conn *c, int status, struct blktap_ctl_buf *b)
{
	int err = blktap_ctl_send(c->fd, c->hdr.op | BLKTAP_CTL_REPLY, status, b);

	if (err)
		td_log_debug("control: reply to %s: %s",
			     blktap_ctl_op_name(c->hdr.op), strerror(-err));
	blktap_ctl_buf_free(b);
	conn_close(c);
}

static unsigned int fe_inflight(const struct td_control *ctl)
{
	return ctl->fe.inflight ? ctl->fe.inflight(ctl->fe.arg) : 0;
}

static void add_stats(struct td_control *ctl, struct blktap_ctl_buf *b)
{
	const struct td_image *img = ctl->img;

	blktap_ctl_buf_add(b, "pid", "%d", (int)getpid());
	blktap_ctl_buf_add(b, "image", "%s", img->name);
	blktap_ctl_buf_add(b, "size", "%llu", (unsigned long long)img->size);
	blktap_ctl_buf_add(b, "requests", "%llu", (unsigned long long)img->reqs);
	blktap_ctl_buf_add(b, "bytes-read", "%llu", (unsigned long long)img->bytes_read);
	blktap_ctl_buf_add(b, "bytes-written", "%llu",
			   (unsigned long long)img->bytes_written);
	blktap_ctl_buf_add(b, "errors", "%llu", (unsigned long long)img->errors);
	blktap_ctl_buf_add(b, "inflight", "%u",
			   fe_inflight(ctl) + td_aio_inflight(ctl->ctx->aio));
	blktap_ctl_buf_add(b, "paused", "%d", ctl->paused);
}

static void on_drain_timer(struct td_event *ev, uint32_t events, void *arg)
{
	struct td_control *ctl = arg;
	struct ctl_conn *c, *next;

	(void)ev;
	(void)events;
	if (fe_inflight(ctl) || td_aio_inflight(ctl->ctx->aio))
		return;
	td_loop_del(ctl->drain_timer);
	ctl->drain_timer = NULL;
	td_log_info("%s: paused", ctl->img->name);
	for (c = ctl->conns; c; c = next) {
		struct blktap_ctl_buf b = { 0 };

		next = c->next;
		if (!c->draining)
			continue;
		add_stats(ctl, &b);
		conn_reply(c, 0, &b);
	}
}

static void handle(struct ctl_conn *c)
{
	struct td_control *ctl = c->ctl;
	struct blktap_ctl_buf b = { 0 };

	switch (c->hdr.op) {
	case BLKTAP_CTL_OP_CHECK:
		blktap_ctl_buf_add(&b, "version", "%d", BLKTAP_CTL_VERSION);
		conn_reply(c, 0, &b);
		return;
	case BLKTAP_CTL_OP_STATS:
		add_stats(ctl, &b);
		conn_reply(c, 0, &b);
		return;
	case BLKTAP_CTL_OP_PAUSE:
	case BLKTAP_CTL_OP_UNPAUSE:
		if (!ctl->fe.quiesce || !ctl->fe.resume) {
			blktap_ctl_buf_add(&b, "error", "%s: the frontends of this tapdisk "
					   "cannot pause", ctl->img->name);
			conn_reply(c, -EOPNOTSUPP, &b);
			return;
		}
		if (c->hdr.op == BLKTAP_CTL_OP_UNPAUSE) {
			if (ctl->paused && !ctl->drain_timer) {
				ctl->fe.resume(ctl->fe.arg);
				ctl->paused = false;
				td_log_info("%s: unpaused", ctl->img->name);
			} else if (ctl->drain_timer) {
				blktap_ctl_buf_add(&b, "error", "still draining for a pause");
				conn_reply(c, -EBUSY, &b);
				return;
			}
			add_stats(ctl, &b);
			conn_reply(c, 0, &b);
			return;
		}
		if (!ctl->paused) {
			ctl->fe.quiesce(ctl->fe.arg);
			ctl->paused = true;
		}
		/* answer once drained; stop reading this connection meanwhile */
		c->draining = true;
		td_loop_del(c->ev);
		c->ev = NULL;
		if (!ctl->drain_timer) {
			ctl->drain_timer = td_loop_add_timer(ctl->ctx->loop, DRAIN_POLL_NS,
							     DRAIN_POLL_NS, on_drain_timer,
							     ctl);
			if (!ctl->drain_timer) {
				blktap_ctl_buf_add(&b, "error", "timer: %s", strerror(errno));
				conn_reply(c, -ENOMEM, &b);
			}
		}
		return;
	default:
		blktap_ctl_buf_add(&b, "error", "tapdisk does not handle '%s'",
				   blktap_ctl_op_name(c->hdr.op));
		conn_reply(c, -EOPNOTSUPP, &b);
	}
}

static void on_conn(struct td_event *ev, uint32_t events, void *arg)
{
	struct ctl_conn *c = arg;
	size_t hsz = sizeof(c->hdr);
	ssize_t n;

	(void)ev;
	(void)events;
	if (c->have < hsz) {
		n = read(c->fd, (char *)&c->hdr + c->have, hsz - c->have);
	} else {
		n = read(c->fd, c->payload + (c->have - hsz),
			 c->hdr.len - (c->have - hsz));
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	c->have += (size_t)n;
	if (c->have == hsz) {
		if (blktap_ctl_hdr_check(&c->hdr)) {
			conn_close(c);
			return;
		}
		c->payload = malloc(c->hdr.len ? c->hdr.len : 1);
		if (!c->payload) {
			conn_close(c);
			return;
		}
	}
	if (c->have == hsz + c->hdr.len)
		handle(c);	/* requests carry no keys tapdisk needs yet */
}

static void on_accept(struct td_event *ev, uint32_t events, void *arg)
{
	struct td_control *ctl = arg;
	struct ctl_conn *c;
	int fd;

	(void)ev;
	(void)events;
	fd = accept4(ctl->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	if (ctl->nconns >= CTL_MAX_CONNS) {
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->ctl = ctl;
	c->fd = fd;
	c->ev = td_loop_add_fd(ctl->ctx->loop, fd, EPOLLIN, on_conn, c);
	if (!c->ev) {
		close(fd);
		free(c);
		return;
	}
	c->next = ctl->conns;
	ctl->conns = c;
	ctl->nconns++;
}

struct td_control *td_control_create(struct td_ctx *ctx, struct td_image *img,
				     const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct td_control *ctl;
	mode_t old;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		td_log_err("control socket %s: path too long", path);
		return NULL;
	}
	strcpy(sa.sun_path, path);
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		goto fail;
	ctl->ctx = ctx;
	ctl->img = img;
	ctl->path = strdup(path);
	if (!ctl->path)
		goto fail_free;
	ctl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (ctl->fd < 0)
		goto fail_free;
	unlink(path);
	old = umask(0077);
	if (bind(ctl->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		umask(old);
		goto fail_close;
	}
	umask(old);
	if (listen(ctl->fd, CTL_MAX_CONNS) < 0)
		goto fail_unlink;
	ctl->ev = td_loop_add_fd(ctx->loop, ctl->fd, EPOLLIN, on_accept, ctl);
	if (!ctl->ev)
		goto fail_unlink;
	return ctl;

fail_unlink:
	unlink(path);
fail_close:
	close(ctl->fd);
fail_free:
	free(ctl->path);
	free(ctl);
fail:
	td_log_err("control socket %s: %s", path, strerror(errno));
	return NULL;
}

void td_control_set_frontend(struct td_control *ctl,
			     const struct td_control_frontend *fe)
{
	ctl->fe = *fe;
}

void td_control_destroy(struct td_control *ctl)
{
	if (!ctl)
		return;
	while (ctl->conns) {
		struct ctl_conn *c = ctl->conns;

		ctl->conns = c->next;
		conn_free(c);
	}
	if (ctl->drain_timer)
		td_loop_del(ctl->drain_timer);
	td_loop_del(ctl->ev);
	close(ctl->fd);
	unlink(ctl->path);
	free(ctl->path);
	free(ctl);
}
