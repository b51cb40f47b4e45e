// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The tapdisk event loop (see loop.h). Events removed during a dispatch
 * batch are only marked dead and freed after the batch, so a callback may
 * delete any event, including ones still pending in the same batch.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "loop.h"

#define LOOP_BATCH 64

struct td_event {
	struct td_loop *loop;
	int fd;
	bool owns_fd;		/* timers: the loop closes the timerfd */
	bool dead;
	td_event_cb cb;
	void *arg;
	struct td_event *next_dead;
};

struct td_loop {
	int epfd;
	bool stop;
	bool dispatching;
	struct td_deferred *defer_head, **defer_tail;
	struct td_event *dead;
};

struct td_loop *td_loop_create(void)
{
	struct td_loop *loop = calloc(1, sizeof(*loop));

	if (!loop)
		return NULL;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		int err = errno;

		free(loop);
		errno = err;
		return NULL;
	}
	loop->defer_tail = &loop->defer_head;
	return loop;
}

static void loop_reap(struct td_loop *loop)
{
	while (loop->dead) {
		struct td_event *ev = loop->dead;

		loop->dead = ev->next_dead;
		free(ev);
	}
}

void td_loop_destroy(struct td_loop *loop)
{
	if (!loop)
		return;
	loop_reap(loop);
	close(loop->epfd);
	free(loop);
}

struct td_event *td_loop_add_fd(struct td_loop *loop, int fd, uint32_t events,
				td_event_cb cb, void *arg)
{
	struct epoll_event ee = { .events = events };
	struct td_event *ev = calloc(1, sizeof(*ev));

	if (!ev)
		return NULL;
	ev->loop = loop;
	ev->fd = fd;
	ev->cb = cb;
	ev->arg = arg;
	ee.data.ptr = ev;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ee) < 0) {
		int err = errno;

		free(ev);
		errno = err;
		return NULL;
	}
	return ev;
}

int td_loop_mod_fd(struct td_event *ev, uint32_t events)
{
	struct epoll_event ee = { .events = events, .data.ptr = ev };

	if (epoll_ctl(ev->loop->epfd, EPOLL_CTL_MOD, ev->fd, &ee) < 0)
		return -errno;
	return 0;
}

static void ns_to_ts(uint64_t ns, struct timespec *ts)
{
	ts->tv_sec = ns / 1000000000ull;
	ts->tv_nsec = ns % 1000000000ull;
}

int td_loop_set_timer(struct td_event *ev, uint64_t first_ns,
		      uint64_t interval_ns)
{
	struct itimerspec its;

	/* A zero it_value would disarm: fire "now" as 1 ns instead. */
	if (!first_ns && interval_ns)
		first_ns = 1;
	ns_to_ts(first_ns, &its.it_value);
	ns_to_ts(interval_ns, &its.it_interval);
	if (timerfd_settime(ev->fd, 0, &its, NULL) < 0)
		return -errno;
	return 0;
}

struct td_event *td_loop_add_timer(struct td_loop *loop, uint64_t first_ns,
				   uint64_t interval_ns, td_event_cb cb,
				   void *arg)
{
	struct td_event *ev;
	int fd, err;

	fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (fd < 0)
		return NULL;
	ev = td_loop_add_fd(loop, fd, EPOLLIN, cb, arg);
	if (!ev)
		goto fail_close;
	ev->owns_fd = true;
	if (first_ns || interval_ns) {
		err = td_loop_set_timer(ev, first_ns ? first_ns : 1, interval_ns);
		if (err) {
			td_loop_del(ev);
			errno = -err;
			return NULL;
		}
	}
	return ev;
fail_close:
	err = errno;
	close(fd);
	errno = err;
	return NULL;
}

void td_loop_del(struct td_event *ev)
{
	struct td_loop *loop;

	if (!ev || ev->dead)
		return;
	loop = ev->loop;
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, ev->fd, NULL);
	if (ev->owns_fd)
		close(ev->fd);
	ev->dead = true;
	ev->next_dead = loop->dead;
	loop->dead = ev;
	if (!loop->dispatching)
		loop_reap(loop);
}

void td_loop_defer(struct td_loop *loop, struct td_deferred *d)
{
	if (d->queued)
		return;
	d->queued = true;
	d->next = NULL;
	*loop->defer_tail = d;
	loop->defer_tail = &d->next;
}

void td_loop_cancel(struct td_loop *loop, struct td_deferred *d)
{
	struct td_deferred **pp = &loop->defer_head;

	if (!d->queued)
		return;
	while (*pp && *pp != d)
		pp = &(*pp)->next;
	if (*pp) {
		*pp = d->next;
		if (loop->defer_tail == &d->next)
			loop->defer_tail = pp;
	}
	d->queued = false;
}

/* Deferred calls may defer more; run until the queue is empty. */
static void loop_run_deferred(struct td_loop *loop)
{
	while (loop->defer_head) {
		struct td_deferred *d = loop->defer_head;

		loop->defer_head = d->next;
		if (!loop->defer_head)
			loop->defer_tail = &loop->defer_head;
		d->queued = false;
		d->fn(d);
	}
}

int td_loop_run_once(struct td_loop *loop, int timeout_ms)
{
	struct epoll_event evs[LOOP_BATCH];
	int n, i;

	/* Work queued before the wait (e.g. submissions) goes out first. */
	loop_run_deferred(loop);
	if (loop->defer_head)
		timeout_ms = 0;
	n = epoll_wait(loop->epfd, evs, LOOP_BATCH, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;

	loop->dispatching = true;
	for (i = 0; i < n; i++) {
		struct td_event *ev = evs[i].data.ptr;

		if (ev->dead)
			continue;
		if (ev->owns_fd) {
			uint64_t ticks;

			if (read(ev->fd, &ticks, sizeof(ticks)) < 0)
				continue;	/* spurious: re-armed meanwhile */
		}
		ev->cb(ev, evs[i].events, ev->arg);
	}
	loop->dispatching = false;
	loop_reap(loop);
	loop_run_deferred(loop);
	return n;
}

int td_loop_run(struct td_loop *loop)
{
	while (!loop->stop) {
		int ret = td_loop_run_once(loop, -1);

		if (ret < 0)
			return ret;
	}
	return 0;
}

void td_loop_stop(struct td_loop *loop)
{
	loop->stop = true;
}

bool td_loop_stopped(const struct td_loop *loop)
{
	return loop->stop;
}
