/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tapdisk's own control socket (tapdisk --control PATH): blktapctrl asks a
 * running tapdisk for its counters and to pause (quiesce and drain) or
 * unpause its frontends. The messages are those of blktap/control.h (ops
 * CHECK, STATS, PAUSE, UNPAUSE); one request and one reply per connection,
 * handled without blocking the loop.
 */
#ifndef TAPDISK_CONTROL_H
#define TAPDISK_CONTROL_H

#include "image.h"

struct td_control;

/*
 * What pause needs from the frontends. Leave it unset (or quiesce NULL)
 * and PAUSE/UNPAUSE are answered with EOPNOTSUPP.
 */
struct td_control_frontend {
	void (*quiesce)(void *arg);		/* stop taking new requests */
	void (*resume)(void *arg);		/* take them again */
	unsigned int (*inflight)(void *arg);	/* taken, not yet answered */
	void *arg;
};

/* Listen on @path (mode 0600, replacing a stale socket). NULL after logging. */
struct td_control *td_control_create(struct td_ctx *ctx, struct td_image *img,
				     const char *path);
void td_control_set_frontend(struct td_control *ctl,
			     const struct td_control_frontend *fe);
/* Close every connection and the listener; unlink the socket. */
void td_control_destroy(struct td_control *ctl);

#endif
