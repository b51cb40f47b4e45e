// SPDX-License-Identifier: LGPL-2.1-or-later
/* Unit tests for tapdisk/loop.c: fd watches, timers, deferred calls. */
#include "util.h"

struct counter {
	int hits;
	struct td_event *other;	/* deleted by the callback, if set */
	int fd;
};

static void count_cb(struct td_event *ev, uint32_t events, void *arg)
{
	struct counter *c = arg;
	char buf[16];

	(void)ev;
	(void)events;
	c->hits++;
	if (c->fd >= 0)
		assert_true(read(c->fd, buf, sizeof(buf)) > 0);
	if (c->other) {
		td_loop_del(c->other);
		c->other = NULL;
	}
}

static void test_fd_watch(void **state)
{
	struct td_loop *loop = td_loop_create();
	struct counter c = { .fd = -1 };
	struct td_event *ev;
	int p[2];

	(void)state;
	assert_int_equal(pipe(p), 0);
	c.fd = p[0];
	ev = td_loop_add_fd(loop, p[0], EPOLLIN, count_cb, &c);
	assert_non_null(ev);
	assert_int_equal(td_loop_run_once(loop, 0), 0);
	assert_int_equal(c.hits, 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(td_loop_run_once(loop, 1000), 1);
	assert_int_equal(c.hits, 1);
	td_loop_del(ev);
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(td_loop_run_once(loop, 10), 0);
	assert_int_equal(c.hits, 1);
	close(p[0]);
	close(p[1]);
	td_loop_destroy(loop);
}

/* A callback deleting an event that is ready in the same batch. */
static void test_delete_in_batch(void **state)
{
	struct td_loop *loop = td_loop_create();
	struct counter a = { .fd = -1 }, b = { .fd = -1 };
	struct td_event *ea, *eb;
	int p[2], q[2];

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pipe(q), 0);
	a.fd = p[0];
	b.fd = q[0];
	ea = td_loop_add_fd(loop, p[0], EPOLLIN, count_cb, &a);
	eb = td_loop_add_fd(loop, q[0], EPOLLIN, count_cb, &b);
	a.other = eb;
	b.other = ea;
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(write(q[1], "x", 1), 1);
	assert_int_equal(td_loop_run_once(loop, 1000), 2);
	/* Whichever ran first deleted the other, which must not run. */
	assert_int_equal(a.hits + b.hits, 1);
	td_loop_del(a.hits ? ea : eb);
	close(p[0]); close(p[1]); close(q[0]); close(q[1]);
	td_loop_destroy(loop);
}

static void test_timer_oneshot_and_periodic(void **state)
{
	struct td_loop *loop = td_loop_create();
	struct counter once = { .fd = -1 }, tick = { .fd = -1 };
	struct td_event *t1, *t2;

	(void)state;
	t1 = td_loop_add_timer(loop, 1000000, 0, count_cb, &once);
	t2 = td_loop_add_timer(loop, 1000000, 2000000, count_cb, &tick);
	assert_non_null(t1);
	assert_non_null(t2);
	run_until_count(loop, &tick.hits, 5);
	assert_int_equal(once.hits, 1);
	/* Disarm: no more ticks. */
	assert_int_equal(td_loop_set_timer(t2, 0, 0), 0);
	for (int i = 0; i < 5; i++)
		td_loop_run_once(loop, 3);
	assert_int_equal(tick.hits, 5);
	/* Re-arm the one-shot. */
	assert_int_equal(td_loop_set_timer(t1, 1000, 0), 0);
	run_until_count(loop, &once.hits, 2);
	td_loop_del(t1);
	td_loop_del(t2);
	td_loop_destroy(loop);
}

struct deferred_test {
	struct td_deferred d, d2;
	struct td_loop *loop;
	int runs, runs2;
};

static void deferred_fn2(struct td_deferred *d)
{
	struct deferred_test *t = (void *)((char *)d - offsetof(struct deferred_test, d2));

	t->runs2++;
}

static void deferred_fn(struct td_deferred *d)
{
	struct deferred_test *t = (void *)d;

	t->runs++;
	/* Deferring from a deferred call runs in the same turn. */
	td_loop_defer(t->loop, &t->d2);
}

static void test_deferred(void **state)
{
	struct deferred_test t = { .d.fn = deferred_fn, .d2.fn = deferred_fn2 };

	(void)state;
	t.loop = td_loop_create();
	td_loop_defer(t.loop, &t.d);
	td_loop_defer(t.loop, &t.d);	/* twice: still once */
	/* Deferred work must not wait for the timeout. */
	assert_int_equal(td_loop_run_once(t.loop, 5000), 0);
	assert_int_equal(t.runs, 1);
	assert_int_equal(t.runs2, 1);
	td_loop_run_once(t.loop, 0);
	assert_int_equal(t.runs, 1);
	td_loop_destroy(t.loop);
}

/* A cancelled call does not run; the queue behind it still does. */
static void test_cancel(void **state)
{
	struct deferred_test a = { .d.fn = deferred_fn, .d2.fn = deferred_fn2 };
	struct deferred_test b = { .d.fn = deferred_fn, .d2.fn = deferred_fn2 };
	struct td_loop *loop = td_loop_create();

	(void)state;
	a.loop = b.loop = loop;
	td_loop_defer(loop, &a.d);
	td_loop_defer(loop, &b.d);
	td_loop_cancel(loop, &b.d);	/* the tail */
	td_loop_cancel(loop, &b.d);	/* twice: harmless */
	td_loop_defer(loop, &b.d2);	/* queued after a cancelled tail */
	td_loop_cancel(loop, &a.d);	/* the head */
	td_loop_run_once(loop, 0);
	assert_int_equal(a.runs, 0);
	assert_int_equal(b.runs, 0);
	assert_int_equal(b.runs2, 1);
	td_loop_defer(loop, &a.d);
	td_loop_run_once(loop, 0);
	assert_int_equal(a.runs, 1);
	td_loop_destroy(loop);
}

static void stop_cb(struct td_event *ev, uint32_t events, void *arg)
{
	(void)events;
	td_loop_stop(arg);
	td_loop_del(ev);
}

static void test_run_stop(void **state)
{
	struct td_loop *loop = td_loop_create();

	(void)state;
	assert_non_null(td_loop_add_timer(loop, 1000000, 0, stop_cb, loop));
	assert_false(td_loop_stopped(loop));
	assert_int_equal(td_loop_run(loop), 0);
	assert_true(td_loop_stopped(loop));
	td_loop_destroy(loop);
}

static void test_add_bad_fd(void **state)
{
	struct td_loop *loop = td_loop_create();

	(void)state;
	assert_null(td_loop_add_fd(loop, -1, EPOLLIN, count_cb, NULL));
	td_loop_destroy(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fd_watch),
		cmocka_unit_test(test_delete_in_batch),
		cmocka_unit_test(test_timer_oneshot_and_periodic),
		cmocka_unit_test(test_deferred),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_run_stop),
		cmocka_unit_test(test_add_bad_fd),
	};

	return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
