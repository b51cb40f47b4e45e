// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * One tapdisk per disk: spawn it, watch it through a pidfd in the daemon's
 * epoll set, restart it when it dies (same minor, same image, same
 * frontends), with a growing delay and a limit: more than max_restarts
 * crashes within restart_window_s marks the disk failed. Each tapdisk runs
 * in its own session, so it outlives blktapctrl; a restarted blktapctrl
 * re-adopts it from the state file.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blktap/log.h"
#include "blktapctrl.h"

/* How a tapdisk is told to serve the kernel ring of minor N. */
#define TAPDISK_RING_OPT	"--ring"
#define RESTART_DELAY_MIN_MS	50
#define RESTART_DELAY_MAX_MS	5000
#define STOP_TIMEOUT_MS		10000

const char *const disk_state_names[] = {
	[DISK_STARTING] = "starting",
	[DISK_RUNNING] = "running",
	[DISK_RESTARTING] = "restarting",
	[DISK_FAILED] = "failed",
	[DISK_STOPPING] = "stopping",
};

static void on_pidfd(struct ctrl *c, struct ev *ev, uint32_t events);
static void on_restart_timer(struct ctrl *c, struct ev *ev, uint32_t events);

/* Copy @src into @dst (@size bytes), cutting it short if need be. */
void copy_str(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

static int sys_pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int sys_pidfd_send_signal(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

void disk_free(struct disk *d)
{
	if (!d)
		return;
	free(d->path);
	free(d->nbd_unix);
	free(d->nbd_tcp);
	free(d->name);
	free(d->vdev);
	free(d);
}

struct disk *disk_find(struct ctrl *c, int64_t minor, pid_t pid)
{
	for (struct disk *d = c->disks; d; d = d->next)
		if ((minor < 0 || d->minor == minor) && (pid <= 0 || d->pid == pid))
			return d;
	return NULL;
}

struct disk *disk_find_image(struct ctrl *c, const char *type, const char *path)
{
	for (struct disk *d = c->disks; d; d = d->next)
		if ((!type || !strcmp(d->type, type)) && !strcmp(d->path, path))
			return d;
	return NULL;
}

unsigned int disk_next_nbd_minor(struct ctrl *c)
{
	unsigned int m = BLKTAP_CTL_NBD_MINOR_BASE;

	while (disk_find(c, m, 0))
		m++;
	return m;
}

void disk_device(const struct disk *d, char *buf, size_t len)
{
	if (d->kernel)
		snprintf(buf, len, "/dev/tapdev%u", d->minor);
	else if (d->nbd_unix)	/* the empty export name selects the export */
		snprintf(buf, len, "nbd+unix:///%s?socket=%s", d->name ? d->name : "",
			 d->nbd_unix);
	else if (d->nbd_tcp)
		snprintf(buf, len, "nbd://%s/%s", d->nbd_tcp, d->name ? d->name : "");
	else
		snprintf(buf, len, "-");
}

/* Field 22 of /proc/PID/stat: the start time, to recognise a pid again. */
static uint64_t proc_starttime(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long st = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')');	/* the command name may hold spaces */
	if (!p)
		return 0;
	/* p is at the space before field 3; 19 spaces on is field 22 */
	p++;
	for (int i = 0; i < 19 && p; i++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p, " %llu", &st) != 1)
		return 0;
	return st;
}

/*
 * Does /proc/PID/cmdline end with this disk's "TYPE:PATH"? The fallback
 * when the start time cannot confirm a pid: better to adopt the tapdisk
 * that serves the image than to start a second one on it.
 */
static bool proc_serves(pid_t pid, const struct disk *d)
{
	char path[64], buf[8192], want[4200], *last;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 1 || buf[n - 1] != '\0')
		return false;
	buf[n - 1] = '\0';
	last = memrchr(buf, '\0', (size_t)(n - 1));
	last = last ? last + 1 : buf;
	snprintf(want, sizeof(want), "%s:%s", d->type, d->path);
	return !strcmp(last, want);
}

/* The last non-empty line of the disk's tapdisk log, for error messages. */
static void log_tail(struct ctrl *c, const struct disk *d, char *buf, size_t len)
{
	char *path = state_log_path(c, d->minor), tail[4096], *e, *s;
	ssize_t n = 0;
	off_t size;
	int fd;

	buf[0] = '\0';
	fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	free(path);
	if (fd < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	if (size > 0)
		n = pread(fd, tail, sizeof(tail) - 1,
			  size > (off_t)sizeof(tail) - 1 ? size - (off_t)sizeof(tail) + 1 : 0);
	close(fd);
	if (n <= 0)
		return;
	tail[n] = '\0';
	/* the last line that says something: not blank, not "Try 'tapdisk --help'" */
	for (;;) {
		e = tail + strlen(tail);
		while (e > tail && (e[-1] == '\n' || e[-1] == ' '))
			*--e = '\0';
		s = strrchr(tail, '\n');
		s = s ? s + 1 : tail;
		if (strncmp(s, "Try '", 5) || s == tail)
			break;
		*s = '\0';
	}
	copy_str(buf, len, s);
}

static void describe_exit(const siginfo_t *si, bool known, char *buf, size_t len)
{
	if (!known)
		snprintf(buf, len, "tapdisk exited");
	else if (si->si_code == CLD_EXITED)
		snprintf(buf, len, "tapdisk exited with status %d", si->si_status);
	else
		snprintf(buf, len, "tapdisk was killed by signal %d (%s)",
			 si->si_status, strsignal(si->si_status));
}

/* fork + exec one tapdisk for @d. 0, or -errno with @why. */
static int spawn(struct ctrl *c, struct disk *d, bool truncate_log,
		 char *why, size_t whylen)
{
	char ring[32], image[4200], *argv[18], *logpath, *ctlpath = NULL;
	int argc = 0, pipefd[2], logfd, child_err = 0;
	pid_t pid;
	ssize_t n;

	argv[argc++] = (char *)c->opts.tapdisk;
	if (d->nbd_unix) {
		argv[argc++] = "--nbd-unix";
		argv[argc++] = d->nbd_unix;
	}
	if (d->nbd_tcp) {
		argv[argc++] = "--nbd-tcp";
		argv[argc++] = d->nbd_tcp;
	}
	if (d->name) {
		argv[argc++] = "--export-name";
		argv[argc++] = d->name;
	}
	if (d->readonly)
		argv[argc++] = "--readonly";
	if (d->kernel) {
		snprintf(ring, sizeof(ring), "/dev/blktap%u", d->minor);
		argv[argc++] = TAPDISK_RING_OPT;
		argv[argc++] = ring;
	}
	if (c->tapdisk_control) {
		ctlpath = state_control_path(c, d->minor);
		if (!ctlpath)
			return -ENOMEM;
		argv[argc++] = "--control";
		argv[argc++] = ctlpath;
	}
	snprintf(image, sizeof(image), "%s:%s", d->type, d->path);
	argv[argc++] = image;
	argv[argc] = NULL;

	logpath = state_log_path(c, d->minor);
	logfd = logpath ? open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC |
			       (truncate_log ? O_TRUNC : 0), 0600) : -1;
	free(logpath);
	if (logfd < 0) {
		snprintf(why, whylen, "opening the tapdisk log: %s", strerror(errno));
		free(ctlpath);
		return -EIO;
	}
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		snprintf(why, whylen, "pipe: %s", strerror(errno));
		close(logfd);
		free(ctlpath);
		return -EIO;
	}
	/* a stale socket of a dead tapdisk would make the new one's bind fail */
	if (d->nbd_unix)
		unlink(d->nbd_unix);

	pid = fork();
	if (pid < 0) {
		snprintf(why, whylen, "fork: %s", strerror(errno));
		close(pipefd[0]);
		close(pipefd[1]);
		close(logfd);
		free(ctlpath);
		return -EAGAIN;
	}
	if (pid == 0) {
		sigset_t all;
		int nul = open("/dev/null", O_RDONLY);
		int e;

		/* its own session: blktapctrl's signals and death don't reach it */
		setsid();
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		signal(SIGPIPE, SIG_DFL);
		if (nul >= 0)
			dup2(nul, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		if (strchr(argv[0], '/'))
			execv(argv[0], argv);
		else
			execvp(argv[0], argv);
		e = errno;
		if (write(pipefd[1], &e, sizeof(e)) < 0)
			_exit(127);
		_exit(127);
	}
	close(pipefd[1]);
	close(logfd);
	free(ctlpath);
	do
		n = read(pipefd[0], &child_err, sizeof(child_err));
	while (n < 0 && errno == EINTR);
	close(pipefd[0]);
	if (n == sizeof(child_err)) {
		waitpid(pid, NULL, 0);
		snprintf(why, whylen, "cannot run %s: %s", c->opts.tapdisk,
			 strerror(child_err));
		return -child_err;
	}

	d->pidfd = sys_pidfd_open(pid);
	if (d->pidfd < 0) {
		int err = -errno;

		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		snprintf(why, whylen, "pidfd_open: %s", strerror(-err));
		return err;
	}
	d->pid = pid;
	d->child = true;
	d->paused = false;
	d->starttime = proc_starttime(pid);
	d->pid_ev = (struct ev){ .fd = d->pidfd, .cb = on_pidfd };
	ev_add(c, &d->pid_ev, EPOLLIN);
	td_log_info("disk %u: tapdisk %d serves %s:%s", d->minor, (int)pid,
		    d->type, d->path);
	return 0;
}

/* Reap (when ours) and forget the dead tapdisk. Returns its exit info. */
static bool collect(struct ctrl *c, struct disk *d, siginfo_t *si)
{
	bool known = false;

	memset(si, 0, sizeof(*si));
	if (d->pidfd >= 0) {
		ev_del(c, &d->pid_ev);
		if (d->child &&
		    waitid((idtype_t)P_PIDFD, (id_t)d->pidfd, si, WEXITED | WNOHANG) == 0 &&
		    si->si_pid)
			known = true;
		close(d->pidfd);
	}
	d->pidfd = -1;
	d->pid = 0;
	d->starttime = 0;
	return known;
}

/* Is the tapdisk answering on its frontends yet? */
static bool ready(const struct disk *d)
{
	if (d->kernel) {
		char path[64];

		snprintf(path, sizeof(path), "/sys/class/block/tapdev%u", d->minor);
		return access(path, F_OK) == 0;
	}
	if (d->nbd_unix) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int fd, ok;

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d->nbd_unix);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return false;
		ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		close(fd);
		return ok;
	}
	if (d->nbd_tcp) {
		char host[256], *port;
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
		int fd, ok = 0;

		snprintf(host, sizeof(host), "%s", d->nbd_tcp);
		port = strrchr(host, ':');
		if (!port)
			return false;
		*port++ = '\0';
		if (host[0] == '[') {
			memmove(host, host + 1, strlen(host));
			host[strcspn(host, "]")] = '\0';
		}
		if (getaddrinfo(*host ? host : "127.0.0.1", port, &hints, &ai))
			return false;
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0) {
			ok = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
			close(fd);
		}
		freeaddrinfo(ai);
		return ok;
	}
	return true;
}

/*
 * Wait until the new tapdisk serves, or dies, or the timeout passes. The
 * daemon blocks meanwhile; creation is rare and this keeps it simple.
 */
static int wait_ready(struct ctrl *c, struct disk *d, char *why, size_t whylen)
{
	uint64_t deadline = now_ns() + (uint64_t)c->opts.ready_timeout_ms * 1000000;
	struct pollfd p = { .fd = d->pidfd, .events = POLLIN };

	for (;;) {
		if (ready(d))
			return 0;
		if (poll(&p, 1, 10) > 0) {
			char tail[200], ex[128];
			siginfo_t si;
			bool known = collect(c, d, &si);

			describe_exit(&si, known, ex, sizeof(ex));
			log_tail(c, d, tail, sizeof(tail));
			snprintf(why, whylen, "%s%s%s", ex, tail[0] ? ": " : "", tail);
			return -EIO;
		}
		if (now_ns() > deadline) {
			snprintf(why, whylen, "tapdisk did not start serving within %u ms",
				 c->opts.ready_timeout_ms);
			return -ETIMEDOUT;
		}
	}
}

/* SIGTERM, wait, SIGKILL; then collect. */
static void stop_tapdisk(struct ctrl *c, struct disk *d)
{
	struct pollfd p = { .fd = d->pidfd, .events = POLLIN };
	siginfo_t si;

	if (d->pidfd < 0)
		return;
	if (sys_pidfd_send_signal(d->pidfd, SIGTERM) == 0 &&
	    poll(&p, 1, STOP_TIMEOUT_MS) <= 0) {
		td_log_warn("disk %u: tapdisk %d ignored SIGTERM for %d ms; killing it",
			    d->minor, (int)d->pid, STOP_TIMEOUT_MS);
		sys_pidfd_send_signal(d->pidfd, SIGKILL);
		poll(&p, 1, STOP_TIMEOUT_MS);
	}
	collect(c, d, &si);
}

static void link_disk(struct ctrl *c, struct disk *d)
{
	struct disk **pp = &c->disks;

	while (*pp && (*pp)->minor < d->minor)
		pp = &(*pp)->next;
	d->next = *pp;
	*pp = d;
}

static void unlink_disk(struct ctrl *c, struct disk *d)
{
	for (struct disk **pp = &c->disks; *pp; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			return;
		}
}

int disk_create(struct ctrl *c, struct disk *d, struct disk **out,
		char *why, size_t whylen)
{
	int err;

	d->pidfd = -1;
	d->timer_ev.fd = -1;
	if (d->kernel) {
		err = kernel_alloc(&d->minor, why, whylen);
		if (err)
			return err;
	} else {
		d->minor = disk_next_nbd_minor(c);
	}
	d->state = DISK_STARTING;
	err = spawn(c, d, true, why, whylen);
	if (!err)
		err = wait_ready(c, d, why, whylen);
	if (err) {
		if (d->pidfd >= 0)
			stop_tapdisk(c, d);
		if (d->kernel)
			kernel_free(d->minor);
		return err;
	}
	d->state = DISK_RUNNING;
	link_disk(c, d);
	state_save(c, d);
	*out = d;
	return 0;
}

int disk_destroy(struct ctrl *c, struct disk *d, char *why, size_t whylen)
{
	char *logpath;
	int err;

	d->state = DISK_STOPPING;
	if (d->timer_ev.fd >= 0) {
		ev_del(c, &d->timer_ev);
		close(d->timer_ev.fd);
		d->timer_ev.fd = -1;
	}
	stop_tapdisk(c, d);
	if (d->kernel) {
		/* the ring is closed once tapdisk is gone; retry briefly on EBUSY */
		for (int i = 0; i < 50; i++) {
			err = kernel_free(d->minor);
			if (err != -EBUSY)
				break;
			usleep(20000);
		}
		if (err && err != -ENOENT) {
			snprintf(why, whylen, "freeing tap minor %u: %s", d->minor,
				 strerror(-err));
			state_save(c, d);
			return err;
		}
	}
	if (d->nbd_unix)
		unlink(d->nbd_unix);	/* tapdisk removes it; unless killed */
	logpath = state_control_path(c, d->minor);
	if (logpath)
		unlink(logpath);
	free(logpath);
	state_remove(c, d);
	logpath = state_log_path(c, d->minor);
	if (logpath)
		unlink(logpath);
	free(logpath);
	td_log_info("disk %u: destroyed", d->minor);
	unlink_disk(c, d);
	disk_free(d);
	return 0;
}

/* Forget crash times older than the window; count the rest. */
static unsigned int recent_crashes(struct ctrl *c, struct disk *d, uint64_t now)
{
	uint64_t window = (uint64_t)c->opts.restart_window_s * 1000000000ull;
	unsigned int keep = 0;

	for (unsigned int i = 0; i < d->ncrash; i++)
		if (now - d->crash_ns[i] <= window)
			d->crash_ns[keep++] = d->crash_ns[i];
	d->ncrash = keep;
	return keep;
}

static void mark_failed(struct ctrl *c, struct disk *d, const char *what)
{
	d->state = DISK_FAILED;
	copy_str(d->reason, sizeof(d->reason), what);
	td_log_err("disk %u (%s:%s): failed: %s; 'tap-ctl destroy -m %u' removes it",
		   d->minor, d->type, d->path, what, d->minor);
	state_save(c, d);
}

/* A tapdisk died, or was found dead: restart it later, or give up. */
static void crashed(struct ctrl *c, struct disk *d, const char *what)
{
	uint64_t now = now_ns(), delay_ms;
	unsigned int n;
	struct itimerspec its = { 0 };
	char msg[512];

	if (d->ncrash == DISK_MAX_CRASHES) {
		memmove(d->crash_ns, d->crash_ns + 1,
			sizeof(d->crash_ns[0]) * (DISK_MAX_CRASHES - 1));
		d->ncrash--;
	}
	d->crash_ns[d->ncrash++] = now;
	n = recent_crashes(c, d, now);
	if (n > c->opts.max_restarts) {
		snprintf(msg, sizeof(msg), "%u crashes within %u s, last: %s", n,
			 c->opts.restart_window_s, what);
		mark_failed(c, d, msg);
		return;
	}
	copy_str(d->reason, sizeof(d->reason), what);
	delay_ms = RESTART_DELAY_MIN_MS;
	for (unsigned int i = 1; i < n && delay_ms < RESTART_DELAY_MAX_MS; i++)
		delay_ms *= 2;
	if (delay_ms > RESTART_DELAY_MAX_MS)
		delay_ms = RESTART_DELAY_MAX_MS;
	td_log_warn("disk %u (%s:%s): %s; restarting it in %llu ms (crash %u of at most %u in %u s)",
		    d->minor, d->type, d->path, what, (unsigned long long)delay_ms,
		    n, c->opts.max_restarts, c->opts.restart_window_s);
	if (d->timer_ev.fd < 0) {
		d->timer_ev.fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		if (d->timer_ev.fd < 0) {
			mark_failed(c, d, "timerfd_create failed");
			return;
		}
		d->timer_ev.cb = on_restart_timer;
		ev_add(c, &d->timer_ev, EPOLLIN);
	}
	its.it_value.tv_sec = (time_t)(delay_ms / 1000);
	its.it_value.tv_nsec = (long)(delay_ms % 1000) * 1000000;
	timerfd_settime(d->timer_ev.fd, 0, &its, NULL);
	d->state = DISK_RESTARTING;
	state_save(c, d);
}

static void on_pidfd(struct ctrl *c, struct ev *ev, uint32_t events)
{
	struct disk *d = (struct disk *)((char *)ev - offsetof(struct disk, pid_ev));
	char ex[128], tail[200], what[400];
	siginfo_t si;
	bool known;

	(void)events;
	known = collect(c, d, &si);
	describe_exit(&si, known, ex, sizeof(ex));
	log_tail(c, d, tail, sizeof(tail));
	snprintf(what, sizeof(what), "%s%s%s", ex, tail[0] ? " (" : "",
		 tail[0] ? tail : "");
	if (tail[0])
		strcat(what, ")");
	if (known && si.si_code == CLD_EXITED && si.si_status == 2) {
		/* bad usage: restarting the same command line cannot help */
		mark_failed(c, d, what);
		return;
	}
	crashed(c, d, what);
}

static void on_restart_timer(struct ctrl *c, struct ev *ev, uint32_t events)
{
	struct disk *d = (struct disk *)((char *)ev - offsetof(struct disk, timer_ev));
	char why[512];
	uint64_t ticks;

	(void)events;
	if (read(ev->fd, &ticks, sizeof(ticks)) < 0)
		return;
	if (d->state != DISK_RESTARTING)
		return;
	d->restarts++;
	if (spawn(c, d, false, why, sizeof(why))) {
		mark_failed(c, d, why);
		return;
	}
	d->state = DISK_RUNNING;
	state_save(c, d);
}

bool disk_probe_control(const char *tapdisk)
{
	char buf[8192];
	size_t len = 0;
	int pipefd[2];
	pid_t pid;
	ssize_t n;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return false;
	pid = fork();
	if (pid < 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		return false;
	}
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);

		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 2);
		}
		dup2(pipefd[1], 1);
		if (strchr(tapdisk, '/'))
			execl(tapdisk, tapdisk, "--help", (char *)NULL);
		else
			execlp(tapdisk, tapdisk, "--help", (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	while (len < sizeof(buf) - 1 &&
	       (n = read(pipefd[0], buf + len, sizeof(buf) - 1 - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(pipefd[0]);
	waitpid(pid, NULL, 0);
	return strstr(buf, "--control") != NULL;
}

int disk_tapdisk_call(struct ctrl *c, struct disk *d, uint16_t op,
		      struct blktap_ctl_msg *reply, char *why, size_t whylen)
{
	struct timeval tv = { .tv_sec = 30 };
	char *path;
	int fd, err;

	if (!c->tapdisk_control) {
		snprintf(why, whylen, "%s has no control socket (no --control option): "
			 "stats, pause and unpause are unavailable", c->opts.tapdisk);
		return -EOPNOTSUPP;
	}
	if (d->state != DISK_RUNNING || !d->pid) {
		snprintf(why, whylen, "disk %u is %s", d->minor,
			 disk_state_names[d->state]);
		return -EAGAIN;
	}
	path = state_control_path(c, d->minor);
	if (!path)
		return -ENOMEM;
	fd = blktap_ctl_connect(path);
	free(path);
	if (fd < 0) {
		snprintf(why, whylen, "tapdisk %d's control socket: %s", (int)d->pid,
			 strerror(-fd));
		return fd;
	}
	/* a pause waits for in-flight I/O; don't wait for ever */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	err = blktap_ctl_send(fd, op, 0, NULL);
	if (!err)
		err = blktap_ctl_recv(fd, reply);
	close(fd);
	if (err) {
		snprintf(why, whylen, "asking tapdisk %d: %s", (int)d->pid, strerror(-err));
		return err;
	}
	if (!reply->status) {
		if (op == BLKTAP_CTL_OP_PAUSE || op == BLKTAP_CTL_OP_UNPAUSE) {
			d->paused = op == BLKTAP_CTL_OP_PAUSE;
			state_save(c, d);
		}
	}
	return 0;
}

void disk_adopt(struct ctrl *c, struct disk *d)
{
	link_disk(c, d);
	if (d->state == DISK_FAILED) {
		td_log_info("disk %u (%s:%s): still failed: %s", d->minor, d->type,
			    d->path, d->reason);
		return;
	}
	if (d->pid > 0) {
		int fd = sys_pidfd_open(d->pid);

		if (fd >= 0 && ((d->starttime && proc_starttime(d->pid) == d->starttime) ||
				proc_serves(d->pid, d))) {
			d->pidfd = fd;
			d->child = false;
			d->pid_ev = (struct ev){ .fd = fd, .cb = on_pidfd };
			ev_add(c, &d->pid_ev, EPOLLIN);
			d->state = DISK_RUNNING;
			d->starttime = proc_starttime(d->pid);
			td_log_info("disk %u (%s:%s): re-adopted tapdisk %d", d->minor,
				    d->type, d->path, (int)d->pid);
			state_save(c, d);
			return;
		}
		if (fd >= 0)
			close(fd);
	}
	d->pid = 0;
	d->starttime = 0;
	crashed(c, d, "tapdisk was gone while blktapctrl was not running");
}
