// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The life of one NBD client command (see nbd-server.h): its header is
 * checked (the rules are in nbd-proto.c), its data buffer allocated and
 * counted against the connection's and the server's limits, it becomes a
 * td_req for the image, and its completion becomes a reply queued on the
 * connection. Refused commands get their error reply without reaching the
 * image; a refused write's payload is skipped to stay in step.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blktap/log.h"
#include "nbd-server.h"

static struct nbd_cmd *cmd_new(struct nbd_conn *c, const struct nbd_req_hdr *h)
{
	struct nbd_cmd *cmd = calloc(1, sizeof(*cmd));

	if (!cmd)
		return NULL;
	cmd->tx.is_cmd = true;
	cmd->conn = c;
	cmd->hdr = *h;
	c->pending++;
	if (c->srv)
		c->srv->inflight++;
	return cmd;
}

static int cmd_alloc_buf(struct nbd_cmd *cmd)
{
	cmd->buf = td_bufpool_get(cmd->conn->srv ? &cmd->conn->srv->bufs : NULL,
				  cmd->hdr.len);
	if (!cmd->buf)
		return -ENOMEM;
	cmd->iov.iov_base = cmd->buf;
	cmd->iov.iov_len = cmd->hdr.len;
	cmd->conn->pending_bytes += cmd->hdr.len;
	if (cmd->conn->srv)
		cmd->conn->srv->pending_bytes += cmd->hdr.len;
	return 0;
}

/* The command is over: its reply was written, or can no longer be. */
void nbd_cmd_release(struct nbd_cmd *cmd)
{
	struct nbd_conn *c = cmd->conn;
	struct td_nbd_server *srv = c->srv;
	bool was_full = nbd_conn_over_limits(c);
	bool srv_was_full = srv && srv->pending_bytes >= SRV_MAX_PENDING_BYTES;

	if (cmd->buf) {
		c->pending_bytes -= cmd->hdr.len;
		if (srv)
			srv->pending_bytes -= cmd->hdr.len;
	}
	c->pending--;
	if (srv)
		srv->inflight--;
	td_bufpool_put(srv ? &srv->bufs : NULL, cmd->buf, cmd->hdr.len);
	free(cmd);
	/* Reading stopped at a limit may resume. */
	if (srv_was_full && srv->pending_bytes < SRV_MAX_PENDING_BYTES) {
		for (struct nbd_conn *o = srv->conns; o; o = o->next)
			if (!o->dead)
				nbd_conn_kick(o);
	} else if (was_full && !c->dead) {
		nbd_conn_kick(c);
	}
}

void nbd_cmd_reply(struct nbd_cmd *cmd)
{
	struct nbd_conn *c = cmd->conn;

	if (c->dead) {
		nbd_cmd_release(cmd);
		return;
	}
	nbd_build_simple_reply(&cmd->reply, cmd->hdr.cookie, cmd->error);
	cmd->tx.iov[0].iov_base = &cmd->reply;
	cmd->tx.iov[0].iov_len = sizeof(cmd->reply);
	cmd->tx.niov = 1;
	if (cmd->hdr.type == NBD_CMD_READ && !cmd->error && cmd->buf) {
		cmd->tx.iov[1] = cmd->iov;
		cmd->tx.niov = 2;
	}
	nbd_conn_queue_tx(c, &cmd->tx);
}

static void cmd_fail(struct nbd_cmd *cmd, uint32_t error)
{
	cmd->error = error;
	nbd_cmd_reply(cmd);
}

static void cmd_done(struct td_req *req, int err)
{
	struct nbd_cmd *cmd = req->arg;
	struct nbd_conn *c = cmd->conn;

	td_req_free(req);
	if (err) {
		td_log_err("nbd: %s: %s of %u bytes at %llu: %s", c->peer,
			   nbd_cmd_name(cmd->hdr.type), cmd->hdr.len,
			   (unsigned long long)cmd->hdr.offset, strerror(-err));
		cmd->error = nbd_errno_to_wire(err);
	}
	if (c->dead) {
		/* Nobody to tell: the client or the server went away. */
		nbd_cmd_release(cmd);
		if (!c->pending)
			nbd_conn_free(c);
		return;
	}
	nbd_cmd_reply(cmd);
}

void nbd_cmd_submit(struct nbd_cmd *cmd)
{
	static const enum td_op ops[] = {
		[NBD_CMD_READ] = TD_OP_READ,
		[NBD_CMD_WRITE] = TD_OP_WRITE,
		[NBD_CMD_FLUSH] = TD_OP_FLUSH,
		[NBD_CMD_TRIM] = TD_OP_DISCARD,
		[NBD_CMD_WRITE_ZEROES] = TD_OP_WRITE_ZEROES,
	};
	const struct nbd_req_hdr *h = &cmd->hdr;
	struct td_nbd_server *srv = cmd->conn->srv;
	uint64_t off = h->offset, len = h->len;
	struct td_req *req;

	if (h->type == NBD_CMD_FLUSH) {
		off = 0;
		len = 0;
	} else if (!len) {
		nbd_cmd_reply(cmd);		/* nothing to do */
		return;
	}
	req = td_req_new(ops[h->type], off, len, cmd->buf ? &cmd->iov : NULL,
			 cmd->buf ? 1 : 0, cmd_done, cmd);
	if (!req) {
		cmd_fail(cmd, NBD_ENOMEM);
		return;
	}
	if ((h->flags & NBD_CMD_FLAG_FUA) &&
	    (h->type == NBD_CMD_WRITE || h->type == NBD_CMD_TRIM ||
	     h->type == NBD_CMD_WRITE_ZEROES))
		req->flags |= TD_REQ_FUA;
	if (h->flags & NBD_CMD_FLAG_NO_HOLE)
		req->flags |= TD_REQ_NO_HOLE;
	td_image_submit(srv->img, req);
}

void nbd_cmd_request(struct nbd_conn *c, const uint8_t *p)
{
	struct td_nbd_server *srv = c->srv;
	struct nbd_req_hdr h;
	struct nbd_verdict v;
	struct nbd_cmd *cmd;

	if (nbd_parse_request(p, &h) < 0) {
		td_log_warn("nbd: %s: request with a bad magic (%02x%02x%02x%02x): closing",
			    c->peer, p[0], p[1], p[2], p[3]);
		nbd_conn_stop_reading(c);
		c->closing = true;
		return;
	}
	nbd_check_request(&srv->exp, &h, &v);
	if (v.disc) {
		td_log_debug("nbd: %s: NBD_CMD_DISC", c->peer);
		nbd_conn_stop_reading(c);
		c->closing = true;
		return;
	}
	cmd = cmd_new(c, &h);
	if (!cmd) {
		td_log_err("nbd: %s: out of memory: closing", c->peer);
		nbd_conn_drop(c);
		return;
	}
	if (v.error) {
		td_log_warn("nbd: %s: refusing %s (flags 0x%x) of %u bytes at %llu (export size %llu): %s",
			    c->peer, nbd_cmd_name(h.type), h.flags, h.len,
			    (unsigned long long)h.offset,
			    (unsigned long long)srv->exp.size,
			    strerror((int)v.error));
		cmd->error = v.error;
		if (v.payload) {
			c->pl_cmd = cmd;
			nbd_conn_start_payload(c, PL_WRITE_SKIP, NULL,
					       v.payload);
			return;
		}
		nbd_cmd_reply(cmd);
		if (v.drop) {
			nbd_conn_stop_reading(c);
			c->closing = true;
		}
		return;
	}
	if ((h.type == NBD_CMD_READ || h.type == NBD_CMD_WRITE) && h.len &&
	    cmd_alloc_buf(cmd) < 0) {
		td_log_err("nbd: %s: %s of %u bytes: out of memory", c->peer,
			   nbd_cmd_name(h.type), h.len);
		cmd->error = NBD_ENOMEM;
		if (h.type == NBD_CMD_WRITE) {
			c->pl_cmd = cmd;
			nbd_conn_start_payload(c, PL_WRITE_SKIP, NULL, h.len);
		} else {
			nbd_cmd_reply(cmd);
		}
		return;
	}
	if (h.type == NBD_CMD_WRITE && h.len) {
		c->pl_cmd = cmd;
		nbd_conn_start_payload(c, PL_WRITE, cmd->buf, h.len);
		return;
	}
	nbd_cmd_submit(cmd);
}

