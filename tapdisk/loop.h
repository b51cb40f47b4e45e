/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The tapdisk event loop: one epoll set per loop, with fd watches, timers
 * (timerfd) and deferred callbacks that run once before the next wait.
 */
#ifndef TAPDISK_LOOP_H
#define TAPDISK_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct td_loop;
struct td_event;

/* Called with the epoll events that fired (EPOLLIN, EPOLLOUT, ...). */
typedef void (*td_event_cb)(struct td_event *ev, uint32_t events, void *arg);

/* A deferred call: embed one in your object; queueing it twice is a no-op. */
struct td_deferred {
	struct td_deferred *next;
	void (*fn)(struct td_deferred *d);
	bool queued;
};

struct td_loop *td_loop_create(void);
void td_loop_destroy(struct td_loop *loop);

/*
 * Watch @fd for @events. Returns NULL with errno set on failure. The fd is
 * not owned by the loop: td_loop_del() stops watching but does not close it.
 */
struct td_event *td_loop_add_fd(struct td_loop *loop, int fd, uint32_t events,
				td_event_cb cb, void *arg);
int td_loop_mod_fd(struct td_event *ev, uint32_t events);

/*
 * A timer firing first after @first_ns, then every @interval_ns (0: once).
 * The loop owns the timerfd; td_loop_del() closes it.
 */
struct td_event *td_loop_add_timer(struct td_loop *loop, uint64_t first_ns,
				   uint64_t interval_ns, td_event_cb cb,
				   void *arg);
/* Re-arm an existing timer; 0/0 disarms it. */
int td_loop_set_timer(struct td_event *ev, uint64_t first_ns,
		      uint64_t interval_ns);

/* Stop watching; safe to call from inside the event's own callback. */
void td_loop_del(struct td_event *ev);

/* Run @d->fn once, after the current callbacks and before the next wait. */
void td_loop_defer(struct td_loop *loop, struct td_deferred *d);
/* Take @d off the queue if it is on it (before freeing its owner). */
void td_loop_cancel(struct td_loop *loop, struct td_deferred *d);

/*
 * Run until td_loop_stop(). Returns 0, or -errno if epoll_wait failed.
 * td_loop_run_once() handles one batch of events (waiting at most
 * @timeout_ms, -1 for ever) and the deferred calls after it.
 */
int td_loop_run(struct td_loop *loop);
int td_loop_run_once(struct td_loop *loop, int timeout_ms);
void td_loop_stop(struct td_loop *loop);
bool td_loop_stopped(const struct td_loop *loop);

#endif
