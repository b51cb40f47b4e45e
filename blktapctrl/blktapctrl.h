/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * blktapctrl internals: the daemon's state (one struct ctrl), its disks,
 * and the small epoll loop they share. One concern per file:
 *   main.c    options, run dir, lock, signals, the loop
 *   server.c  the control socket and the request handlers
 *   disk.c    one tapdisk per disk: spawn, supervise, restart, stop
 *   state.c   per-disk state files under the run dir (re-adoption)
 *   kernel.c  /dev/blktap-control: allocate and free minors
 */
#ifndef BLKTAPCTRL_H
#define BLKTAPCTRL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "blktap/control.h"

struct ctrl;

/* An fd in the epoll set; the callback gets the epoll events. */
struct ev {
	int fd;
	void (*cb)(struct ctrl *c, struct ev *ev, uint32_t events);
};

enum disk_state {
	DISK_STARTING,
	DISK_RUNNING,
	DISK_RESTARTING,	/* waiting for the restart timer */
	DISK_FAILED,		/* too many crashes; only destroy helps */
	DISK_STOPPING,
};

#define DISK_MAX_CRASHES	64	/* bound of the crash-time history */

struct disk {
	struct disk *next;
	unsigned int minor;
	bool kernel;			/* a /dev/tapdevN disk */
	bool readonly;
	char type[16];
	char *path;
	char *nbd_unix, *nbd_tcp;	/* NULL: none */
	char *name, *vdev;		/* NULL: none */

	enum disk_state state;
	pid_t pid;			/* 0: no tapdisk runs */
	int pidfd;			/* -1 with pid 0 */
	bool child;			/* ours to reap (not adopted) */
	uint64_t starttime;		/* of pid, /proc/PID/stat field 22 */
	struct ev pid_ev;
	struct ev timer_ev;		/* restart timer, fd -1 when none */

	unsigned int restarts;
	unsigned int ncrash;
	uint64_t crash_ns[DISK_MAX_CRASHES];	/* recent crashes, oldest first */
	char reason[256];
	bool paused;			/* by tap-ctl pause; a new tapdisk is not */
};

struct ctrl_opts {
	const char *run_dir;
	const char *socket_path;
	const char *tapdisk;		/* program to run */
	unsigned int max_restarts;	/* within restart_window_s */
	unsigned int restart_window_s;
	unsigned int ready_timeout_ms;	/* create waits this long */
};

struct ctrl {
	struct ctrl_opts opts;
	int epfd;
	bool stop;
	struct ev listen_ev;
	struct ev signal_ev;
	struct disk *disks;
	bool tapdisk_control;		/* tapdisk knows --control PATH */
};

/* main.c: the loop */
int ev_add(struct ctrl *c, struct ev *ev, uint32_t events);
void ev_del(struct ctrl *c, struct ev *ev);
uint64_t now_ns(void);

/* server.c */
int server_listen(struct ctrl *c);
void server_close(struct ctrl *c);

/* disk.c */
extern const char *const disk_state_names[];
struct disk *disk_find(struct ctrl *c, int64_t minor, pid_t pid);
struct disk *disk_find_image(struct ctrl *c, const char *type, const char *path);
unsigned int disk_next_nbd_minor(struct ctrl *c);
/*
 * Start a new disk from a create request's fields (already checked).
 * 0 and *out, or -errno with @why (for the user) filled.
 */
int disk_create(struct ctrl *c, struct disk *tmpl, struct disk **out,
		char *why, size_t whylen);
/* Stop the tapdisk (SIGTERM, then SIGKILL), free the minor, forget it. */
int disk_destroy(struct ctrl *c, struct disk *d, char *why, size_t whylen);
/*
 * Forward STATS/PAUSE/UNPAUSE to the disk's tapdisk; its reply lands in
 * @reply. 0 or -errno with @why.
 */
int disk_tapdisk_call(struct ctrl *c, struct disk *d, uint16_t op,
		      struct blktap_ctl_msg *reply, char *why, size_t whylen);
/* Does this tapdisk program take --control? (asks its --help once) */
bool disk_probe_control(const char *tapdisk);
/* Re-adopt a disk read from its state file. */
void disk_adopt(struct ctrl *c, struct disk *d);
void disk_free(struct disk *d);
/* Copy @src into @dst (@size bytes), cutting it short if need be. */
void copy_str(char *dst, size_t size, const char *src);
/* The device path or URI users give to clients. */
void disk_device(const struct disk *d, char *buf, size_t len);

/* state.c */
int state_init(struct ctrl *c);
int state_save(struct ctrl *c, const struct disk *d);
void state_remove(struct ctrl *c, const struct disk *d);
/* Read every state file and hand each disk to disk_adopt(). */
void state_load_all(struct ctrl *c);
char *state_log_path(struct ctrl *c, unsigned int minor);
char *state_control_path(struct ctrl *c, unsigned int minor);

/* kernel.c */
#define BLKTAP_CONTROL_DEV	"/dev/blktap-control"
/* 0 when the module is usable, else -errno with @why filled. */
int kernel_check(char *why, size_t whylen);
int kernel_alloc(unsigned int *minor, char *why, size_t whylen);
int kernel_free(unsigned int minor);

#endif
