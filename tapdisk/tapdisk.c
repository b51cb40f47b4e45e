// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tapdisk: serve one image stack to its frontends from one epoll loop.
 * Exit status: 0 after a clean shutdown (SIGTERM/SIGINT: in-flight requests
 * drained, image flushed), 1 when the image or a frontend fails, 2 for bad
 * usage.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "aio.h"
#include "blktap/log.h"
#include "blktap/size.h"
#include "control.h"
#include "frontend-nbd.h"
#include "frontend-ring.h"
#include "image.h"
#include "loop.h"

#define DEFAULT_DEPTH	256

struct tapdisk {
	struct td_loop *loop;
	struct td_aio *aio;
	struct td_ctx ctx;
	struct td_opts opts;
	struct td_image *img;
	struct td_nbd_server *nbd;
	struct td_ring_frontend *ring;
	struct td_control *ctl;
	struct td_event *sigev;
	int sigfd;
	int flush_err;
	bool flushed;
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: tapdisk [OPTIONS] TYPE:PATH\n"
		"Serve the image PATH, opened with driver TYPE (%s).\n"
		"\n"
		"Frontends (at least one):\n"
		"  --ring /dev/blktapN   serve /dev/tapdevN of the blktap kernel module\n"
		"  --nbd-unix PATH       NBD server on a unix socket\n"
		"  --nbd-tcp HOST:PORT   NBD server on TCP (\":PORT\" for all addresses)\n"
		"  --export-name NAME    name of the NBD export (default: the image path;\n"
		"                        the empty name always selects it)\n"
		"  --control PATH        control socket for blktapctrl (stats)\n"
		"\n"
		"Image:\n"
		"  --readonly            refuse writes\n"
		"  --buffered            no O_DIRECT for aio\n"
		"  --ram-size SIZE       ram: size of an empty image when PATH does not exist\n"
		"  --ram-limit SIZE      ram: refuse images larger than this (default 4G)\n"
		"  --queue-depth N       libaio queue depth (default %d)\n"
		"\n"
		"  -v, --verbose         more messages (repeat for debug)\n"
		"  -h, --help            this help\n"
		"\n"
		"SIGTERM or SIGINT stop it cleanly: in-flight requests complete, the image\n"
		"is flushed, exit status 0.\n",
		td_driver_names(), DEFAULT_DEPTH);
}

static void on_signal(struct td_event *ev, uint32_t events, void *arg)
{
	struct tapdisk *td = arg;
	struct signalfd_siginfo si;

	(void)ev;
	(void)events;
	if (read(td->sigfd, &si, sizeof(si)) != sizeof(si))
		return;
	td_log_info("%s: signal %d: stopping", td->img->name, si.ssi_signo);
	if (td->nbd)
		td_nbd_server_quiesce(td->nbd);
	if (td->ring)
		td_ring_frontend_quiesce(td->ring);
	td_loop_stop(td->loop);
}

static int setup_signals(struct tapdisk *td)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	td->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (td->sigfd < 0)
		return -errno;
	td->sigev = td_loop_add_fd(td->loop, td->sigfd, EPOLLIN, on_signal, td);
	if (!td->sigev) {
		int err = -errno;

		close(td->sigfd);
		return err;
	}
	return 0;
}

static unsigned int frontends_inflight(const struct tapdisk *td)
{
	return (td->nbd ? td_nbd_server_inflight(td->nbd) : 0) +
	       (td->ring ? td_ring_frontend_inflight(td->ring) : 0);
}

/* Pause and resume for the control socket (blktapctrl's pause/unpause). */
static void frontends_pause(void *arg)
{
	struct tapdisk *td = arg;

	if (td->nbd)
		td_nbd_server_pause(td->nbd);
	if (td->ring)
		td_ring_frontend_quiesce(td->ring);
}

static void frontends_resume(void *arg)
{
	struct tapdisk *td = arg;

	if (td->nbd)
		td_nbd_server_resume(td->nbd);
	if (td->ring)
		td_ring_frontend_resume(td->ring);
}

static unsigned int frontends_busy(void *arg)
{
	return frontends_inflight(arg);
}

static void flush_done(struct td_req *req, int err)
{
	struct tapdisk *td = req->arg;

	td->flush_err = err;
	td->flushed = true;
	td_req_free(req);
}

/* Let in-flight requests finish, then make everything durable. */
static int drain_and_flush(struct tapdisk *td)
{
	struct td_req *req;

	while (frontends_inflight(td) || td_aio_inflight(td->aio))
		if (td_loop_run_once(td->loop, -1) < 0)
			return -EIO;
	if (td->img->open_flags & TD_OPEN_RDONLY)
		return 0;
	req = td_req_new(TD_OP_FLUSH, 0, 0, NULL, 0, flush_done, td);
	if (!req)
		return -ENOMEM;
	td_image_submit(td->img, req);
	while (!td->flushed)
		if (td_loop_run_once(td->loop, -1) < 0)
			return -EIO;
	if (td->flush_err)
		td_log_err("%s: final flush: %s", td->img->name,
			   strerror(-td->flush_err));
	return td->flush_err;
}

static int parse_size_opt(const char *name, const char *arg, uint64_t *out)
{
	if (td_parse_size(arg, out)) {
		td_log_err("%s: bad size '%s' (examples: 65536, 64M, 2G)", name, arg);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "nbd-unix", required_argument, NULL, 'u' },
		{ "ring", required_argument, NULL, 'R' },
		{ "control", required_argument, NULL, 'c' },
		{ "nbd-tcp", required_argument, NULL, 't' },
		{ "export-name", required_argument, NULL, 'n' },
		{ "readonly", no_argument, NULL, 'r' },
		{ "buffered", no_argument, NULL, 'b' },
		{ "ram-size", required_argument, NULL, 'S' },
		{ "ram-limit", required_argument, NULL, 'L' },
		{ "queue-depth", required_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct td_nbd_opts nbd = { 0 };
	struct td_ring_opts ring = { 0 };
	struct tapdisk td = { .sigfd = -1 };
	enum td_log_level level = TD_LOG_WARN;
	unsigned int flags = 0, depth = DEFAULT_DEPTH;
	const char *spec, *control_path = NULL;
	char *end;
	int c, err, status = 1;

	td.opts.ram_limit = 4ull << 30;
	td_log_init("tapdisk", level);
	while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'u': nbd.unix_path = optarg; break;
		case 'c': control_path = optarg; break;
		case 'R': ring.path = optarg; break;
		case 't': nbd.tcp_addr = optarg; break;
		case 'n': nbd.export_name = optarg; break;
		case 'r': flags |= TD_OPEN_RDONLY; nbd.readonly = true; break;
		case 'b': flags |= TD_OPEN_BUFFERED; break;
		case 'S':
			if (parse_size_opt("--ram-size", optarg, &td.opts.ram_size))
				return 2;
			break;
		case 'L':
			if (parse_size_opt("--ram-limit", optarg, &td.opts.ram_limit))
				return 2;
			break;
		case 'q':
			depth = strtoul(optarg, &end, 10);
			if (*end || depth < 1 || depth > 65536) {
				td_log_err("--queue-depth: '%s' is not a number from 1 to 65536",
					   optarg);
				return 2;
			}
			break;
		case 'v':
			if (level < TD_LOG_DEBUG)
				level++;
			td_log_init("tapdisk", level);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "Try 'tapdisk --help'.\n");
			return 2;
		}
	}
	if (optind != argc - 1) {
		td_log_err(optind == argc ? "no image given (TYPE:PATH)" :
			   "more than one image given: '%s' after '%s'",
			   argv[argc - 1], argv[optind]);
		fprintf(stderr, "Try 'tapdisk --help'.\n");
		return 2;
	}
	spec = argv[optind];
	if (!nbd.unix_path && !nbd.tcp_addr && !ring.path) {
		td_log_err("no frontend: give --ring /dev/blktapN, --nbd-unix PATH and/or --nbd-tcp HOST:PORT");
		return 2;
	}
	ring.readonly = flags & TD_OPEN_RDONLY;

	td.loop = td_loop_create();
	if (!td.loop) {
		td_log_err("creating the event loop: %s", strerror(errno));
		return 1;
	}
	td.aio = td_aio_create(td.loop, depth);
	if (!td.aio)
		goto out_loop;
	td_ctx_init(&td.ctx, td.loop, td.aio);
	td.ctx.opts = &td.opts;

	err = td_image_open(&td.ctx, spec, flags, &td.img);
	if (err)
		goto out_aio;
	if (!nbd.export_name)
		nbd.export_name = td.img->path;
	err = setup_signals(&td);
	if (err) {
		td_log_err("setting up signal handling: %s", strerror(-err));
		goto out_image;
	}
	/*
	 * The control socket first: whoever sees a frontend answer (blktapctrl
	 * waits for that) can rely on the control socket being there too.
	 */
	if (control_path) {
		struct td_control_frontend fe = {
			.quiesce = frontends_pause,
			.resume = frontends_resume,
			.inflight = frontends_busy,
			.arg = &td,
		};

		td.ctl = td_control_create(&td.ctx, td.img, control_path);
		if (!td.ctl)
			goto out_signals;
		td_control_set_frontend(td.ctl, &fe);
	}
	if (ring.path) {
		td.ring = td_ring_frontend_create(&td.ctx, td.img, &ring);
		if (!td.ring)
			goto out_control;
	}
	if (nbd.unix_path || nbd.tcp_addr) {
		td.nbd = td_nbd_server_create(&td.ctx, td.img, &nbd);
		if (!td.nbd)
			goto out_ring;
	}

	td_log_info("%s: serving (%llu bytes)", td.img->name,
		    (unsigned long long)td.img->size);
	err = td_loop_run(td.loop);
	if (err)
		td_log_err("event loop: %s", strerror(-err));
	if (!drain_and_flush(&td) && !err)
		status = 0;

	if (td.nbd)
		td_nbd_server_destroy(td.nbd);
out_ring:
	if (td.ring) {
		/* Answers go to the kernel from a deferred call: let it run. */
		td_loop_run_once(td.loop, 0);
		/* A clean stop removes /dev/tapdevN; a crash leaves it waiting. */
		td_ring_frontend_destroy(td.ring, true);
	}
out_control:
	td_control_destroy(td.ctl);
out_signals:
	td_loop_del(td.sigev);
	close(td.sigfd);
out_image:
	td_image_close(td.img);
out_aio:
	td_aio_destroy(td.aio);
out_loop:
	td_loop_destroy(td.loop);
	return status;
}
