// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * blktapctrl: the blktap control daemon. Owns the control socket, starts one
 * tapdisk per disk and keeps it running, and keeps its state under the run
 * directory so that a restarted blktapctrl re-adopts the running tapdisks.
 * SIGTERM/SIGINT stop the daemon and leave the tapdisks serving.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blktap/log.h"
#include "blktapctrl.h"
#include "xenwatch.h"

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int ev_add(struct ctrl *c, struct ev *ev, uint32_t events)
{
	struct epoll_event e = { .events = events, .data.ptr = ev };

	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, ev->fd, &e) < 0) {
		td_log_err("epoll_ctl: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

void ev_del(struct ctrl *c, struct ev *ev)
{
	epoll_ctl(c->epfd, EPOLL_CTL_DEL, ev->fd, NULL);
}

/*
 * One event per wait: a handler may free another object (a destroy request
 * frees a disk), so no stale pointer from the same batch is ever used.
 */
static int run(struct ctrl *c)
{
	while (!c->stop) {
		struct epoll_event e;
		struct ev *ev;
		int n = epoll_wait(c->epfd, &e, 1, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			td_log_err("epoll_wait: %s", strerror(errno));
			return -errno;
		}
		if (n == 0)
			continue;
		ev = e.data.ptr;
		ev->cb(c, ev, e.events);
	}
	return 0;
}

static void on_signal(struct ctrl *c, struct ev *ev, uint32_t events)
{
	struct signalfd_siginfo si;

	(void)events;
	if (read(ev->fd, &si, sizeof(si)) != sizeof(si))
		return;
	td_log_info("signal %u: stopping; tapdisks keep serving", si.ssi_signo);
	c->stop = true;
}

static int setup_signals(struct ctrl *c)
{
	sigset_t set;
	int fd;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	c->signal_ev = (struct ev){ .fd = fd, .cb = on_signal };
	return ev_add(c, &c->signal_ev, EPOLLIN);
}

/* One blktapctrl per run dir: hold an exclusive lock on RUN_DIR/blktapctrl.lock. */
static int lock_run_dir(struct ctrl *c)
{
	char path[PATH_MAX], buf[32];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/blktapctrl.lock", c->opts.run_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		td_log_err("%s: %s", path, strerror(errno));
		return -errno;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		td_log_err("another blktapctrl (pid %s) already uses %s",
			   buf[0] ? buf : "?", c->opts.run_dir);
		close(fd);
		return -EBUSY;
	}
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n)
		td_log_warn("%s: cannot record our pid", path);
	return fd;	/* kept open for the daemon's lifetime */
}

/* The tapdisk next to our own binary, else "tapdisk" from PATH. */
static const char *default_tapdisk(void)
{
	static char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 16);
	char *slash;

	if (n > 0) {
		path[n] = '\0';
		slash = strrchr(path, '/');
		if (slash) {
			strcpy(slash + 1, "tapdisk");
			if (access(path, X_OK) == 0)
				return path;
		}
	}
	return "tapdisk";
}

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: blktapctrl [OPTIONS]\n"
		"The blktap control daemon: serves tap-ctl, runs one tapdisk per disk.\n"
		"\n"
		"  -f, --foreground        stay in the foreground, log to stderr\n"
		"      --run-dir DIR       state directory (default %s)\n"
		"      --socket PATH       control socket (default RUN_DIR/blktapctrl.sock)\n"
		"      --tapdisk PATH      the tapdisk program (default: next to blktapctrl,\n"
		"                          else from PATH)\n"
		"      --max-restarts N    crashes tolerated within the window (default 5)\n"
		"      --restart-window S  seconds (default 60); one more crash: failed\n"
		"      --ready-timeout MS  how long create waits for a tapdisk (default 10000)\n"
		"      --xen-nbd-dir DIR   test mode: backend/tap devices in xenstore get\n"
		"                          NBD-only disks on DIR/tap-DOMID-DEVID.sock\n"
		"  -v, --verbose           more messages (repeat for debug)\n"
		"  -h, --help              this help\n",
		BLKTAP_CTL_RUN_DIR);
}

static int parse_uint(const char *name, const char *s, unsigned int min,
		      unsigned int *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (!*s || *end || errno || v < min || v > 1000000) {
		td_log_err("%s: '%s' is not a number from %u to 1000000", name, s, min);
		return -1;
	}
	*out = (unsigned int)v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "run-dir", required_argument, NULL, 'd' },
		{ "socket", required_argument, NULL, 's' },
		{ "tapdisk", required_argument, NULL, 't' },
		{ "max-restarts", required_argument, NULL, 'm' },
		{ "restart-window", required_argument, NULL, 'w' },
		{ "ready-timeout", required_argument, NULL, 'r' },
		{ "xen-nbd-dir", required_argument, NULL, 'X' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctrl c = {
		.opts = {
			.run_dir = BLKTAP_CTL_RUN_DIR,
			.max_restarts = 5,
			.restart_window_s = 60,
			.ready_timeout_ms = 10000,
		},
		.epfd = -1,
		.listen_ev.fd = -1,
		.signal_ev.fd = -1,
	};
	enum td_log_level level = TD_LOG_INFO;
	bool foreground = false;
	char *sock = NULL;
	int opt, lockfd, err, status = 1;

	td_log_init("blktapctrl", level);
	while ((opt = getopt_long(argc, argv, "fvh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'f': foreground = true; break;
		case 'd': c.opts.run_dir = optarg; break;
		case 's': c.opts.socket_path = optarg; break;
		case 't': c.opts.tapdisk = optarg; break;
		case 'm':
			if (parse_uint("--max-restarts", optarg, 0, &c.opts.max_restarts))
				return 2;
			if (c.opts.max_restarts >= DISK_MAX_CRASHES)
				c.opts.max_restarts = DISK_MAX_CRASHES - 1;
			break;
		case 'w':
			if (parse_uint("--restart-window", optarg, 1, &c.opts.restart_window_s))
				return 2;
			break;
		case 'r':
			if (parse_uint("--ready-timeout", optarg, 1, &c.opts.ready_timeout_ms))
				return 2;
			break;
		case 'X':
			xenstore_set_nbd_dir(optarg);
			break;
		case 'v':
			if (level < TD_LOG_DEBUG)
				level++;
			td_log_init("blktapctrl", level);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "Try 'blktapctrl --help'.\n");
			return 2;
		}
	}
	if (optind != argc) {
		td_log_err("unexpected argument '%s'", argv[optind]);
		return 2;
	}
	if (!c.opts.tapdisk)
		c.opts.tapdisk = default_tapdisk();
	if (!c.opts.socket_path) {
		if (asprintf(&sock, "%s/blktapctrl.sock", c.opts.run_dir) < 0)
			return 1;
		c.opts.socket_path = sock;
	}
	if (mkdir(c.opts.run_dir, 0700) < 0 && errno != EEXIST) {
		td_log_err("creating %s: %s", c.opts.run_dir, strerror(errno));
		goto out;
	}
	if (!foreground) {
		if (daemon(0, 0) < 0) {
			td_log_err("daemon: %s", strerror(errno));
			goto out;
		}
		td_log_syslog(true);
	}
	lockfd = lock_run_dir(&c);
	if (lockfd < 0)
		goto out;
	if (state_init(&c))
		goto out_lock;
	c.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (c.epfd < 0) {
		td_log_err("epoll_create1: %s", strerror(errno));
		goto out_lock;
	}
	err = setup_signals(&c);
	if (err) {
		td_log_err("signals: %s", strerror(-err));
		goto out_epoll;
	}
	c.tapdisk_control = disk_probe_control(c.opts.tapdisk);
	if (!c.tapdisk_control)
		td_log_info("%s has no --control: stats, pause and unpause are unavailable",
			    c.opts.tapdisk);
	state_load_all(&c);
	if (server_listen(&c))
		goto out_disks;
	td_log_info("listening on %s (run dir %s, tapdisk %s)", c.opts.socket_path,
		    c.opts.run_dir, c.opts.tapdisk);
	xenstore_start(&c);	/* after daemon(): libxenstore may start a thread */
	if (run(&c) == 0)
		status = 0;
	xenstore_stop(&c);
	server_close(&c);
out_disks:
	/* the tapdisks keep running; only our bookkeeping goes */
	while (c.disks) {
		struct disk *d = c.disks;

		c.disks = d->next;
		if (d->pidfd >= 0)
			close(d->pidfd);
		if (d->timer_ev.fd >= 0)
			close(d->timer_ev.fd);
		disk_free(d);
	}
	close(c.signal_ev.fd);
out_epoll:
	close(c.epfd);
out_lock:
	close(lockfd);
out:
	free(sock);
	return status;
}
