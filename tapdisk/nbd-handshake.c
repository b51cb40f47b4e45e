// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The NBD handshake on one connection (see nbd-server.h): the client's
 * flags, then one option after another until NBD_OPT_GO/EXPORT_NAME
 * (transmission) or NBD_OPT_ABORT (close). Replies are built by
 * nbd-proto.c into the server's scratch buffer and queued here. A timer
 * drops clients that are still negotiating after srv->hs_timeout_ns.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blktap/log.h"
#include "nbd-server.h"

static void queue_scratch(struct nbd_conn *c, int res)
{
	struct nbd_buf *b = &c->srv->scratch;

	if (res >= 0 && nbd_conn_queue_bytes(c, b->data, b->len) < 0)
		res = -ENOMEM;
	nbd_buf_reset(b);
	switch (res) {
	case NBD_OPT_RES_CONTINUE:
		c->rx = RX_OPT_HDR;
		break;
	case NBD_OPT_RES_TRANSMIT:
		td_log_debug("nbd: %s: negotiated, export '%s'", c->peer,
			     c->srv->exp.name);
		c->rx = RX_REQ_HDR;
		break;
	case NBD_OPT_RES_CLOSE:
		nbd_conn_stop_reading(c);
		c->closing = true;
		break;
	default:
		td_log_err("nbd: %s: handshake: %s", c->peer, strerror(-res));
		nbd_conn_drop(c);
		break;
	}
}

void nbd_handshake_client_flags(struct nbd_conn *c, const uint8_t *p)
{
	if (nbd_parse_client_flags(p, &c->no_zeroes) < 0) {
		td_log_warn("nbd: %s: unknown client flags 0x%02x%02x%02x%02x: closing",
			    c->peer, p[0], p[1], p[2], p[3]);
		nbd_conn_stop_reading(c);
		c->closing = true;
		return;
	}
	c->rx = RX_OPT_HDR;
}

void nbd_handshake_opt_hdr(struct nbd_conn *c, const uint8_t *p)
{
	uint32_t len;

	if (nbd_parse_opt_hdr(p, &c->opt, &len) < 0) {
		td_log_warn("nbd: %s: option without the IHAVEOPT magic: closing",
			    c->peer);
		nbd_conn_stop_reading(c);
		c->closing = true;
		return;
	}
	td_log_debug("nbd: %s: %s (%u bytes)", c->peer, nbd_opt_name(c->opt), len);
	if (len > NBD_MAX_OPT_DATA) {
		int res = nbd_handle_oversized_option(c->opt, len,
						      &c->srv->scratch);

		queue_scratch(c, res);
		if (res == NBD_OPT_RES_CONTINUE)
			nbd_conn_start_payload(c, PL_OPTION_SKIP, NULL, len);
		return;
	}
	c->opt_data = malloc(len ? len : 1);
	if (!c->opt_data) {
		td_log_err("nbd: %s: option data: out of memory", c->peer);
		nbd_conn_drop(c);
		return;
	}
	nbd_conn_start_payload(c, PL_OPTION, c->opt_data, len);
}

void nbd_handshake_option(struct nbd_conn *c)
{
	struct td_nbd_server *srv = c->srv;
	int res;

	res = nbd_handle_option(&srv->exp, c->no_zeroes, c->opt, c->opt_data,
				c->pl_got, &srv->scratch);
	free(c->opt_data);
	c->opt_data = NULL;
	if (res == NBD_OPT_RES_CLOSE && c->opt == NBD_OPT_EXPORT_NAME)
		td_log_warn("nbd: %s: NBD_OPT_EXPORT_NAME for an unknown export: closing",
			    c->peer);
	queue_scratch(c, res);
}

/* Check on negotiating clients a few times per timeout while there are any. */
void nbd_handshake_arm_timer(struct td_nbd_server *srv)
{
	uint64_t period = srv->hs_timeout_ns / 4 + 1;

	if (srv->hs_armed || !srv->hs_timer)
		return;
	if (td_loop_set_timer(srv->hs_timer, period, period) == 0)
		srv->hs_armed = true;
}

void nbd_handshake_check(struct td_event *ev, uint32_t events, void *arg)
{
	struct td_nbd_server *srv = arg;
	uint64_t now = nbd_now_ns();
	struct nbd_conn *c, *next;
	bool waiting = false;

	(void)events;
	for (c = srv->conns; c; c = next) {
		next = c->next;
		if (c->dead || !nbd_conn_in_handshake(c))
			continue;
		if (now - c->accepted_ns < srv->hs_timeout_ns) {
			waiting = true;
			continue;
		}
		td_log_warn("nbd: %s: no NBD negotiation within %llu ms: closing",
			    c->peer,
			    (unsigned long long)(srv->hs_timeout_ns / 1000000));
		nbd_conn_drop(c);
		nbd_conn_settle(c);
	}
	if (!waiting && td_loop_set_timer(ev, 0, 0) == 0)
		srv->hs_armed = false;
}

