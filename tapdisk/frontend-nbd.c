// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The NBD frontend (see frontend-nbd.h): the server object and its public
 * API. A client command's life is header -> payload -> td_image_submit()
 * -> reply; the protocol rules themselves are in nbd-proto.c, and the
 * sockets, buffers and accounting in the nbd-*.c files listed in
 * nbd-server.h. Every socket is non-blocking and driven by the loop.
 *
 * Shutdown (td_nbd_server_quiesce): the listeners close; connections still
 * negotiating, and writes whose data has not all arrived, are dropped, as
 * nothing was acknowledged for them; every command already read runs and
 * gets its reply. A client that does not read its replies is dropped after
 * QUIESCE_GRACE_NS, so draining cannot hang on it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blktap/log.h"
#include "frontend-nbd.h"
#include "nbd-server.h"

#define QUIESCE_GRACE_NS	(5ull * 1000000000)	/* for stuck readers */
#define HANDSHAKE_TIMEOUT_NS	(30ull * 1000000000)	/* to reach transmission */

/* The deferred "kick": service every connection that asked for it. */
static void server_kick(struct td_deferred *d)
{
	struct td_nbd_server *srv = (struct td_nbd_server *)
		((char *)d - offsetof(struct td_nbd_server, kick));
	struct nbd_conn *c;

	if (srv->destroyed) {
		free(srv);
		return;
	}
	while ((c = srv->kick_head)) {
		srv->kick_head = c->kick_next;
		c->kicked = false;
		nbd_conn_service(c);
	}
}


struct td_nbd_server *td_nbd_server_create(struct td_ctx *ctx,
					   struct td_image *img,
					   const struct td_nbd_opts *opts)
{
	struct td_nbd_server *srv = calloc(1, sizeof(*srv));
	const char *name = opts->export_name ? opts->export_name : "";
	bool ro = opts->readonly || (img->open_flags & TD_OPEN_RDONLY);

	if (!srv)
		goto nomem;
	if (strlen(name) > NBD_MAX_STRING) {
		td_log_err("nbd: export name longer than %d bytes", NBD_MAX_STRING);
		goto fail;
	}
	srv->ctx = ctx;
	srv->img = img;
	td_bufpool_init(&srv->bufs, SRV_BUFPOOL_BYTES);
	srv->kick.fn = server_kick;
	srv->export_name = strdup(name);
	if (!srv->export_name)
		goto nomem;
	srv->exp.name = srv->export_name;
	srv->exp.size = img->size;
	srv->exp.tx_flags = nbd_tx_flags(img->features, ro);
	nbd_block_sizes(img->align, &srv->exp.min_block, &srv->exp.pref_block,
			&srv->exp.max_block);

	if (opts->unix_path && nbd_listen_unix(srv, opts->unix_path) < 0)
		goto fail;
	if (opts->tcp_addr && nbd_listen_tcp(srv, opts->tcp_addr) < 0)
		goto fail;
	if (!srv->nlis) {
		td_log_err("nbd: nothing to listen on: give a unix socket path and/or a TCP address");
		goto fail;
	}
	srv->hs_timeout_ns = HANDSHAKE_TIMEOUT_NS;
	srv->hs_timer = td_loop_add_timer(ctx->loop, 0, 0, nbd_handshake_check,
					  srv);
	if (!srv->hs_timer) {
		td_log_err("nbd: timer: %s", strerror(errno));
		goto fail;
	}
	if (nbd_listeners_start(srv) < 0)
		goto fail;
	return srv;
nomem:
	td_log_err("nbd: out of memory");
fail:
	if (srv) {
		nbd_listeners_close(srv);
		td_loop_del(srv->hs_timer);
		free(srv->export_name);
		free(srv);
	}
	return NULL;
}

static void on_grace_over(struct td_event *ev, uint32_t events, void *arg)
{
	struct td_nbd_server *srv = arg;
	struct nbd_conn *c, *next;

	(void)ev;
	(void)events;
	td_loop_del(srv->grace);
	srv->grace = NULL;
	for (c = srv->conns; c; c = next) {
		next = c->next;
		if (c->dead || !c->tx_head)
			continue;
		td_log_warn("nbd: %s: client does not read its replies; dropping it",
			    c->peer);
		nbd_conn_drop(c);
		nbd_conn_settle(c);
	}
}

void td_nbd_server_quiesce(struct td_nbd_server *srv)
{
	struct nbd_conn *c, *next;

	if (srv->quiesced)
		return;
	srv->quiesced = true;
	nbd_listeners_close(srv);
	for (c = srv->conns; c; c = next) {
		next = c->next;
		if (c->dead)
			continue;
		/*
		 * Nothing was promised to a client still negotiating, nor for
		 * a write whose data has not all arrived: drop those. The rest
		 * stop at the next command boundary and get their replies.
		 */
		if (nbd_conn_in_handshake(c)) {
			nbd_conn_drop(c);
		} else if (c->rx == RX_PAYLOAD) {
			nbd_conn_stop_reading(c);
			c->closing = true;
		}
		nbd_conn_settle(c);
	}
	srv->grace = td_loop_add_timer(srv->ctx->loop, QUIESCE_GRACE_NS, 0,
				       on_grace_over, srv);
}

void td_nbd_server_pause(struct td_nbd_server *srv)
{
	srv->paused = true;
}

void td_nbd_server_resume(struct td_nbd_server *srv)
{
	srv->paused = false;
	for (struct nbd_conn *c = srv->conns; c; c = c->next)
		if (!c->dead)
			nbd_conn_kick(c);
}

unsigned int td_nbd_server_inflight(const struct td_nbd_server *srv)
{
	return srv->inflight;
}

void td_nbd_server_set_handshake_timeout(struct td_nbd_server *srv,
					 uint64_t timeout_ns)
{
	srv->hs_timeout_ns = timeout_ns ? timeout_ns : 1;
	if (srv->hs_armed && td_loop_set_timer(srv->hs_timer, 0, 0) == 0)
		srv->hs_armed = false;
	nbd_handshake_arm_timer(srv);
}

void td_nbd_server_destroy(struct td_nbd_server *srv)
{
	struct nbd_conn *c, *next;

	if (!srv)
		return;
	nbd_listeners_close(srv);
	td_loop_del(srv->grace);
	td_loop_del(srv->hs_timer);
	for (c = srv->conns; c; c = next) {
		next = c->next;
		nbd_conn_drop(c);
		if (!c->pending) {
			nbd_conn_free(c);
			continue;
		}
		/* Still in the image: freed by its last completion. */
		td_log_warn("nbd: %s: %u requests still in flight at shutdown",
			    c->peer, c->pending);
		nbd_conn_unlink(c);
		c->srv = NULL;
	}
	nbd_buf_free(&srv->scratch);
	td_bufpool_drain(&srv->bufs);
	free(srv->export_name);
	if (srv->kick.queued) {
		srv->destroyed = true;
		srv->kick_head = NULL;
		return;
	}
	free(srv);
}

