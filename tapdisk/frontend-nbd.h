/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The NBD frontend: a fixed-newstyle NBD server on a unix socket and/or a
 * TCP address, serving one image stack as one export, in the tapdisk loop.
 */
#ifndef TAPDISK_FRONTEND_NBD_H
#define TAPDISK_FRONTEND_NBD_H

#include <stdbool.h>

#include "image.h"

struct td_nbd_server;

struct td_nbd_opts {
	const char *unix_path;		/* NULL: no unix socket */
	const char *tcp_addr;		/* "HOST:PORT", "[V6]:PORT", ":PORT"; NULL: none */
	const char *export_name;	/* name of the one export; "" also selects it */
	bool readonly;
};

/* Listen and serve @img. NULL (after logging why) on failure. */
struct td_nbd_server *td_nbd_server_create(struct td_ctx *ctx,
					   struct td_image *img,
					   const struct td_nbd_opts *opts);

/*
 * Stop accepting connections and stop reading new commands; requests already
 * read still run and get their replies. Used for a clean shutdown.
 */
void td_nbd_server_quiesce(struct td_nbd_server *srv);

/*
 * Pause: stop reading new commands (connections and listeners stay; clients
 * may still connect and negotiate), so in-flight requests drain. Resume
 * reads again.
 */
void td_nbd_server_pause(struct td_nbd_server *srv);
void td_nbd_server_resume(struct td_nbd_server *srv);

/* Requests read from clients and not yet replied to. */
unsigned int td_nbd_server_inflight(const struct td_nbd_server *srv);

/*
 * A client that has not finished negotiating @timeout_ns after connecting
 * is disconnected (default: 30 s), so idle connections cannot pile up.
 */
void td_nbd_server_set_handshake_timeout(struct td_nbd_server *srv,
					 uint64_t timeout_ns);

/* Close every connection and the listeners; unlink the unix socket. */
void td_nbd_server_destroy(struct td_nbd_server *srv);

#endif
