// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tapdisk-ring: the VM test's stand-in for `tapdisk --ring`, built from
 * tapdisk's own library and tapdisk/frontend-ring.c, so the frontend runs
 * against the real module before tapdisk's main grows the option.
 *
 *   tapdisk-ring [-r] [-b] /dev/blktapN TYPE:PATH
 *     -r  remove /dev/tapdevN on SIGTERM (default: leave it for the next one)
 *     -b  buffered I/O (tmpfs has no O_DIRECT)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "aio.h"
#include "blktap/log.h"
#include "frontend-ring.h"
#include "image.h"
#include "loop.h"

static void on_signal(struct td_event *ev, uint32_t events, void *arg)
{
	(void)ev;
	(void)events;
	td_loop_stop(arg);
}

int main(int argc, char **argv)
{
	struct td_ring_opts ro = { 0 };
	struct td_ring_frontend *rf;
	struct td_opts topts = { .ram_limit = 1ull << 30 };
	unsigned int flags = 0;
	bool remove_device = false;
	struct td_image *img;
	struct td_event *sigev;
	struct td_loop *loop;
	struct td_aio *aio;
	struct td_ctx ctx;
	sigset_t set;
	int c, sigfd;

	td_log_init("tapdisk-ring", TD_LOG_INFO);
	while ((c = getopt(argc, argv, "rb")) != -1) {
		switch (c) {
		case 'r': remove_device = true; break;
		case 'b': flags |= TD_OPEN_BUFFERED; break;
		default: return 2;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: tapdisk-ring [-r] [-b] /dev/blktapN TYPE:PATH\n");
		return 2;
	}
	ro.path = argv[optind];

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sigfd = signalfd(-1, &set, SFD_CLOEXEC);
	loop = td_loop_create();
	aio = loop ? td_aio_create(loop, 256) : NULL;
	if (sigfd < 0 || !aio) {
		fprintf(stderr, "tapdisk-ring: setup: %s\n", strerror(errno));
		return 1;
	}
	td_ctx_init(&ctx, loop, aio);
	ctx.opts = &topts;
	if (td_image_open(&ctx, argv[optind + 1], flags, &img))
		return 1;
	sigev = td_loop_add_fd(loop, sigfd, EPOLLIN, on_signal, loop);
	rf = td_ring_frontend_create(&ctx, img, &ro);
	if (!sigev || !rf)
		return 1;
	printf("tapdisk-ring: serving %s on %s\n", img->name, ro.path);
	fflush(stdout);

	td_loop_run(loop);
	td_ring_frontend_quiesce(rf);
	while (td_ring_frontend_inflight(rf) || td_aio_inflight(aio))
		td_loop_run_once(loop, -1);
	td_loop_run_once(loop, 0);	/* the deferred kick with the last answers */
	td_ring_frontend_destroy(rf, remove_device);
	td_loop_del(sigev);
	td_image_close(img);
	td_aio_destroy(aio);
	td_loop_destroy(loop);
	printf("tapdisk-ring: stopped\n");
	return 0;
}
