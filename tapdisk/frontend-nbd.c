// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The NBD frontend (see frontend-nbd.h): listening sockets, connections, and
 * the life of a client command: header -> payload -> td_image_submit() ->
 * reply. The protocol rules themselves are in nbd-proto.c; this file owns
 * the sockets, the buffers and the accounting.
 *
 * Every socket is non-blocking and driven by the loop. Input is read in
 * large chunks into a per-connection buffer and parsed from there; large
 * write payloads go straight into the request's aligned buffer. Replies
 * queue per connection and leave in one sendmsg() per loop turn (a
 * deferred "kick"), in whatever order the image completes them; a reply
 * that does not fit the socket waits for EPOLLOUT, so a slow reader never
 * blocks the loop or mixes two replies on the wire. A connection stops
 * reading new commands while it has too many (or too much data) pending.
 *
 * Shutdown (td_nbd_server_quiesce): the listeners close; connections still
 * negotiating, and writes whose data has not all arrived, are dropped, as
 * nothing was acknowledged for them; every command already read runs and
 * gets its reply. A client that does not read its replies is dropped after
 * QUIESCE_GRACE_NS, so draining cannot hang on it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "blktap/log.h"
#include "frontend-nbd.h"
#include "nbd-proto.h"

#define RXBUF_SIZE		(64u << 10)
#define CONN_MAX_PENDING	256		/* commands read, not replied */
#define CONN_MAX_PENDING_BYTES	(128u << 20)	/* their data buffers */
#define SRV_MAX_PENDING_BYTES	(512ull << 20)	/* all connections' buffers */
#define TX_IOV_MAX		64
#define LISTEN_BACKLOG		128
#define ACCEPT_RETRY_NS		(200ull * 1000000)	/* after EMFILE etc. */
#define QUIESCE_GRACE_NS	(5ull * 1000000000)	/* for stuck readers */
#define HANDSHAKE_TIMEOUT_NS	(30ull * 1000000000)	/* to reach transmission */
#define DATA_ALIGN		4096

struct nbd_conn;

/* Bytes queued for a connection: a handshake message or a reply. */
struct nbd_tx {
	struct nbd_tx *next;
	struct iovec iov[2];
	int niov;
	size_t off;			/* bytes already written */
	bool is_cmd;			/* a struct nbd_cmd, else a struct nbd_msg */
};

struct nbd_msg {
	struct nbd_tx tx;
	uint8_t data[];
};

/* One client command, from its header until its reply is written. */
struct nbd_cmd {
	struct nbd_tx tx;
	struct nbd_conn *conn;
	struct nbd_req_hdr hdr;
	struct nbd_simple_reply reply;
	uint32_t error;			/* NBD_E* */
	void *buf;
	struct iovec iov;
};

enum rx_state {
	RX_CLIENT_FLAGS,
	RX_OPT_HDR,
	RX_REQ_HDR,
	RX_PAYLOAD,		/* option data, write data, or bytes to skip */
	RX_NONE,		/* no more input wanted */
};

enum payload_kind { PL_OPTION, PL_OPTION_SKIP, PL_WRITE, PL_WRITE_SKIP };

struct nbd_listener {
	struct td_nbd_server *srv;
	int fd;
	struct td_event *ev;
	struct td_event *retry;		/* re-enables accepting after EMFILE */
	char name[128];
};

struct td_nbd_server {
	struct td_ctx *ctx;
	struct td_image *img;
	struct nbd_export exp;
	char *export_name;
	char *unix_path;		/* to unlink, while we own it */
	struct nbd_listener *lis;
	int nlis;
	struct nbd_conn *conns;
	struct nbd_conn *kick_head;	/* connections with deferred work */
	struct td_deferred kick;
	struct td_event *grace;		/* after quiesce: drop stuck clients */
	struct td_event *hs_timer;	/* drops clients slow to negotiate */
	uint64_t hs_timeout_ns;
	bool hs_armed;
	struct nbd_buf scratch;		/* option replies being built */
	unsigned int inflight;
	uint64_t pending_bytes;		/* data buffers of all connections */
	bool quiesced;
	bool destroyed;			/* freed by the pending kick */
};

struct nbd_conn {
	struct td_nbd_server *srv;	/* NULL once the server is gone */
	struct nbd_conn *prev, *next;
	struct nbd_conn *kick_next;
	bool kicked;
	int fd;
	struct td_event *ev;
	uint32_t ev_mask;
	char peer[160];
	uint64_t accepted_ns;		/* CLOCK_MONOTONIC */
	bool no_zeroes;
	bool closing;			/* close once every reply is out */
	bool dead;			/* socket closed */

	enum rx_state rx;
	uint8_t *rxbuf;
	size_t rx_start, rx_end;
	enum payload_kind pl_kind;
	uint8_t *pl_dst;		/* NULL: skip the bytes */
	uint64_t pl_left;
	size_t pl_got;
	uint32_t opt;
	uint8_t *opt_data;
	struct nbd_cmd *pl_cmd;

	struct nbd_tx *tx_head, **tx_tail;
	unsigned int pending;		/* commands read and not replied */
	uint64_t pending_bytes;
};

static void conn_service(struct nbd_conn *c);

/* ---- connection bookkeeping ---- */

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
		conn_service(c);
	}
}

/* Service @c (read what is buffered, write replies) at the end of this turn. */
static void conn_kick(struct nbd_conn *c)
{
	struct td_nbd_server *srv = c->srv;

	if (!srv || c->kicked)
		return;
	c->kicked = true;
	c->kick_next = srv->kick_head;
	srv->kick_head = c;
	td_loop_defer(srv->ctx->loop, &srv->kick);
}

/* Take @c off the server's lists. */
static void conn_unlink(struct nbd_conn *c)
{
	struct td_nbd_server *srv = c->srv;

	if (!srv)
		return;
	if (c->kicked) {
		struct nbd_conn **pp = &srv->kick_head;

		while (*pp != c)
			pp = &(*pp)->kick_next;
		*pp = c->kick_next;
		c->kicked = false;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

static void conn_free(struct nbd_conn *c)
{
	conn_unlink(c);
	free(c->opt_data);
	free(c->rxbuf);
	free(c);
}

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
	if (posix_memalign(&cmd->buf, DATA_ALIGN, cmd->hdr.len))
		return -ENOMEM;
	cmd->iov.iov_base = cmd->buf;
	cmd->iov.iov_len = cmd->hdr.len;
	cmd->conn->pending_bytes += cmd->hdr.len;
	if (cmd->conn->srv)
		cmd->conn->srv->pending_bytes += cmd->hdr.len;
	return 0;
}

static bool conn_over_limits(const struct nbd_conn *c)
{
	return c->pending >= CONN_MAX_PENDING ||
	       c->pending_bytes >= CONN_MAX_PENDING_BYTES;
}

/* The command is over: its reply was written, or can no longer be. */
static void cmd_release(struct nbd_cmd *cmd)
{
	struct nbd_conn *c = cmd->conn;
	struct td_nbd_server *srv = c->srv;
	bool was_full = conn_over_limits(c);
	bool srv_was_full = srv && srv->pending_bytes >= SRV_MAX_PENDING_BYTES;

	if (cmd->buf) {
		c->pending_bytes -= cmd->hdr.len;
		if (srv)
			srv->pending_bytes -= cmd->hdr.len;
	}
	c->pending--;
	if (srv)
		srv->inflight--;
	free(cmd->buf);
	free(cmd);
	/* Reading stopped at a limit may resume. */
	if (srv_was_full && srv->pending_bytes < SRV_MAX_PENDING_BYTES) {
		for (struct nbd_conn *o = srv->conns; o; o = o->next)
			if (!o->dead)
				conn_kick(o);
	} else if (was_full && !c->dead) {
		conn_kick(c);
	}
}

static void tx_release(struct nbd_tx *tx)
{
	if (tx->is_cmd)
		cmd_release((struct nbd_cmd *)tx);
	else
		free(tx);
}

static void tx_queue(struct nbd_conn *c, struct nbd_tx *tx)
{
	tx->next = NULL;
	tx->off = 0;
	*c->tx_tail = tx;
	c->tx_tail = &tx->next;
	conn_kick(c);
}

static int queue_bytes(struct nbd_conn *c, const void *p, size_t n)
{
	struct nbd_msg *m;

	if (!n)
		return 0;
	m = malloc(sizeof(*m) + n);
	if (!m)
		return -ENOMEM;
	memset(&m->tx, 0, sizeof(m->tx));
	memcpy(m->data, p, n);
	m->tx.iov[0].iov_base = m->data;
	m->tx.iov[0].iov_len = n;
	m->tx.niov = 1;
	tx_queue(c, &m->tx);
	return 0;
}

/* Abandon any half-read input and read no more. */
static void conn_stop_reading(struct nbd_conn *c)
{
	if (c->rx == RX_PAYLOAD && c->pl_cmd) {
		struct nbd_cmd *cmd = c->pl_cmd;

		c->pl_cmd = NULL;
		cmd_release(cmd);
	}
	free(c->opt_data);
	c->opt_data = NULL;
	c->rx = RX_NONE;
}

/* Close the socket; the connection lives on until its commands finish. */
static void conn_drop(struct nbd_conn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	conn_stop_reading(c);
	td_loop_del(c->ev);
	c->ev = NULL;
	close(c->fd);
	c->fd = -1;
	while (c->tx_head) {
		struct nbd_tx *tx = c->tx_head;

		c->tx_head = tx->next;
		tx_release(tx);
	}
	c->tx_tail = &c->tx_head;
}

static bool conn_in_handshake(const struct nbd_conn *c)
{
	return c->rx == RX_CLIENT_FLAGS || c->rx == RX_OPT_HDR ||
	       (c->rx == RX_PAYLOAD &&
		(c->pl_kind == PL_OPTION || c->pl_kind == PL_OPTION_SKIP));
}

static bool conn_wants_read(const struct nbd_conn *c)
{
	if (c->dead || c->closing || c->rx == RX_NONE)
		return false;
	if (c->rx == RX_PAYLOAD)
		return true;
	/* A client must wait for option replies: don't pile them up. */
	if (conn_in_handshake(c))
		return !c->tx_head;
	/* At a command boundary: new commands only if we have room. */
	return !c->srv->quiesced && !conn_over_limits(c) &&
	       c->srv->pending_bytes < SRV_MAX_PENDING_BYTES;
}

/* After any work on @c: close or free it when done, else fix its events. */
static void conn_settle(struct nbd_conn *c)
{
	uint32_t mask;

	if (!c->dead && c->closing && !c->tx_head && !c->pending) {
		td_log_debug("nbd: %s: closed", c->peer);
		conn_drop(c);
	}
	if (c->dead) {
		if (!c->pending)
			conn_free(c);
		return;
	}
	mask = (conn_wants_read(c) ? EPOLLIN : 0) | (c->tx_head ? EPOLLOUT : 0);
	if (mask != c->ev_mask) {
		int err = td_loop_mod_fd(c->ev, mask);

		if (err) {
			td_log_err("nbd: %s: epoll: %s", c->peer, strerror(-err));
			conn_drop(c);
			if (!c->pending)
				conn_free(c);
			return;
		}
		c->ev_mask = mask;
	}
}

/* ---- replies ---- */

static size_t tx_len(const struct nbd_tx *tx)
{
	size_t n = 0;

	for (int i = 0; i < tx->niov; i++)
		n += tx->iov[i].iov_len;
	return n;
}

/* Write queued bytes until done or the socket is full. */
static void conn_flush(struct nbd_conn *c)
{
	while (c->tx_head && !c->dead) {
		struct iovec iov[TX_IOV_MAX];
		struct msghdr msg = { .msg_iov = iov };
		size_t skip = c->tx_head->off;
		ssize_t n;
		int k = 0;

		for (struct nbd_tx *tx = c->tx_head; tx && k < TX_IOV_MAX - 1;
		     tx = tx->next) {
			for (int i = 0; i < tx->niov; i++) {
				if (skip >= tx->iov[i].iov_len) {
					skip -= tx->iov[i].iov_len;
					continue;
				}
				iov[k].iov_base = (char *)tx->iov[i].iov_base + skip;
				iov[k].iov_len = tx->iov[i].iov_len - skip;
				skip = 0;
				k++;
			}
		}
		msg.msg_iovlen = k;
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;		/* EPOLLOUT will call us */
			if (errno == EPIPE || errno == ECONNRESET)
				td_log_info("nbd: %s: client went away with replies unsent",
					    c->peer);
			else
				td_log_err("nbd: %s: send: %s", c->peer,
					   strerror(errno));
			conn_drop(c);
			return;
		}
		while (n > 0 && c->tx_head) {
			struct nbd_tx *tx = c->tx_head;
			size_t left = tx_len(tx) - tx->off;

			if ((size_t)n < left) {
				tx->off += n;
				break;
			}
			n -= (ssize_t)left;
			c->tx_head = tx->next;
			if (!c->tx_head)
				c->tx_tail = &c->tx_head;
			tx_release(tx);
		}
	}
}

static void cmd_reply(struct nbd_cmd *cmd)
{
	struct nbd_conn *c = cmd->conn;

	if (c->dead) {
		cmd_release(cmd);
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
	tx_queue(c, &cmd->tx);
}

static void cmd_fail(struct nbd_cmd *cmd, uint32_t error)
{
	cmd->error = error;
	cmd_reply(cmd);
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
		cmd_release(cmd);
		if (!c->pending)
			conn_free(c);
		return;
	}
	cmd_reply(cmd);
}

static void cmd_submit(struct nbd_cmd *cmd)
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
		cmd_reply(cmd);		/* nothing to do */
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

/* ---- input ---- */

/* recv() into @buf: > 0 bytes, 0 would block, -1 the connection is over. */
static ssize_t conn_recv(struct nbd_conn *c, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = recv(c->fd, buf, len, MSG_DONTWAIT);

		if (n > 0)
			return n;
		if (n == 0) {
			bool mid = c->rx != RX_REQ_HDR || c->rx_end > c->rx_start;

			if (mid && c->rx != RX_CLIENT_FLAGS)
				td_log_warn("nbd: %s: client closed the connection in the middle of a message",
					    c->peer);
			else
				td_log_debug("nbd: %s: client closed the connection",
					     c->peer);
			/* Replies already due still go out (half-close). */
			conn_stop_reading(c);
			c->closing = true;
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		if (errno == ECONNRESET)
			td_log_info("nbd: %s: connection reset by the client", c->peer);
		else
			td_log_err("nbd: %s: recv: %s", c->peer, strerror(errno));
		conn_drop(c);
		return -1;
	}
}

static size_t rx_avail(const struct nbd_conn *c)
{
	return c->rx_end - c->rx_start;
}

/* Read more into the input buffer: 1 got some, 0 would block, -1 over. */
static int rx_fill(struct nbd_conn *c)
{
	ssize_t n;

	if (c->rx_start == c->rx_end) {
		c->rx_start = c->rx_end = 0;
	} else if (c->rx_start) {
		memmove(c->rxbuf, c->rxbuf + c->rx_start, rx_avail(c));
		c->rx_end -= c->rx_start;
		c->rx_start = 0;
	}
	n = conn_recv(c, c->rxbuf + c->rx_end, RXBUF_SIZE - c->rx_end);
	if (n <= 0)
		return (int)n;
	c->rx_end += n;
	return 1;
}

static void start_payload(struct nbd_conn *c, enum payload_kind kind,
			  void *dst, uint64_t len)
{
	c->rx = RX_PAYLOAD;
	c->pl_kind = kind;
	c->pl_dst = dst;
	c->pl_left = len;
	c->pl_got = 0;
}

/* Read the payload in progress: 1 complete, 0 would block, -1 over. */
static int rx_payload(struct nbd_conn *c)
{
	while (c->pl_left) {
		size_t avail = rx_avail(c);
		ssize_t n;

		if (avail) {
			size_t take = avail < c->pl_left ? avail : c->pl_left;

			if (c->pl_dst)
				memcpy(c->pl_dst + c->pl_got,
				       c->rxbuf + c->rx_start, take);
			c->rx_start += take;
			c->pl_got += take;
			c->pl_left -= take;
			continue;
		}
		if (c->pl_dst && c->pl_left >= RXBUF_SIZE / 2) {
			/* Big data: straight into its buffer, no copy. */
			n = conn_recv(c, c->pl_dst + c->pl_got, c->pl_left);
			if (n <= 0)
				return (int)n;
			c->pl_got += n;
			c->pl_left -= n;
			continue;
		}
		n = rx_fill(c);
		if (n <= 0)
			return (int)n;
	}
	return 1;
}

static void queue_scratch(struct nbd_conn *c, int res)
{
	struct nbd_buf *b = &c->srv->scratch;

	if (res >= 0 && queue_bytes(c, b->data, b->len) < 0)
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
		conn_stop_reading(c);
		c->closing = true;
		break;
	default:
		td_log_err("nbd: %s: handshake: %s", c->peer, strerror(-res));
		conn_drop(c);
		break;
	}
}

static void on_client_flags(struct nbd_conn *c, const uint8_t *p)
{
	if (nbd_parse_client_flags(p, &c->no_zeroes) < 0) {
		td_log_warn("nbd: %s: unknown client flags 0x%02x%02x%02x%02x: closing",
			    c->peer, p[0], p[1], p[2], p[3]);
		conn_stop_reading(c);
		c->closing = true;
		return;
	}
	c->rx = RX_OPT_HDR;
}

static void on_opt_hdr(struct nbd_conn *c, const uint8_t *p)
{
	uint32_t len;

	if (nbd_parse_opt_hdr(p, &c->opt, &len) < 0) {
		td_log_warn("nbd: %s: option without the IHAVEOPT magic: closing",
			    c->peer);
		conn_stop_reading(c);
		c->closing = true;
		return;
	}
	td_log_debug("nbd: %s: %s (%u bytes)", c->peer, nbd_opt_name(c->opt), len);
	if (len > NBD_MAX_OPT_DATA) {
		int res = nbd_handle_oversized_option(c->opt, len,
						      &c->srv->scratch);

		queue_scratch(c, res);
		if (res == NBD_OPT_RES_CONTINUE)
			start_payload(c, PL_OPTION_SKIP, NULL, len);
		return;
	}
	c->opt_data = malloc(len ? len : 1);
	if (!c->opt_data) {
		td_log_err("nbd: %s: option data: out of memory", c->peer);
		conn_drop(c);
		return;
	}
	start_payload(c, PL_OPTION, c->opt_data, len);
}

static void on_option(struct nbd_conn *c)
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

static void on_request(struct nbd_conn *c, const uint8_t *p)
{
	struct td_nbd_server *srv = c->srv;
	struct nbd_req_hdr h;
	struct nbd_verdict v;
	struct nbd_cmd *cmd;

	if (nbd_parse_request(p, &h) < 0) {
		td_log_warn("nbd: %s: request with a bad magic (%02x%02x%02x%02x): closing",
			    c->peer, p[0], p[1], p[2], p[3]);
		conn_stop_reading(c);
		c->closing = true;
		return;
	}
	nbd_check_request(&srv->exp, &h, &v);
	if (v.disc) {
		td_log_debug("nbd: %s: NBD_CMD_DISC", c->peer);
		conn_stop_reading(c);
		c->closing = true;
		return;
	}
	cmd = cmd_new(c, &h);
	if (!cmd) {
		td_log_err("nbd: %s: out of memory: closing", c->peer);
		conn_drop(c);
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
			start_payload(c, PL_WRITE_SKIP, NULL, v.payload);
			return;
		}
		cmd_reply(cmd);
		if (v.drop) {
			conn_stop_reading(c);
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
			start_payload(c, PL_WRITE_SKIP, NULL, h.len);
		} else {
			cmd_reply(cmd);
		}
		return;
	}
	if (h.type == NBD_CMD_WRITE && h.len) {
		c->pl_cmd = cmd;
		start_payload(c, PL_WRITE, cmd->buf, h.len);
		return;
	}
	cmd_submit(cmd);
}

static void on_payload(struct nbd_conn *c)
{
	struct nbd_cmd *cmd = c->pl_cmd;

	c->pl_cmd = NULL;
	switch (c->pl_kind) {
	case PL_OPTION:
		on_option(c);
		break;
	case PL_OPTION_SKIP:
		c->rx = RX_OPT_HDR;
		break;
	case PL_WRITE:
		c->rx = RX_REQ_HDR;
		cmd_submit(cmd);
		break;
	case PL_WRITE_SKIP:
		c->rx = RX_REQ_HDR;
		cmd_reply(cmd);
		break;
	}
}

static void conn_read(struct nbd_conn *c)
{
	static const size_t need[] = {
		[RX_CLIENT_FLAGS] = 4,
		[RX_OPT_HDR] = sizeof(struct nbd_opt_hdr),
		[RX_REQ_HDR] = sizeof(struct nbd_request),
		[RX_PAYLOAD] = 0,
		[RX_NONE] = 0,
	};

	while (conn_wants_read(c)) {
		const uint8_t *p;

		if (c->rx == RX_PAYLOAD) {
			if (rx_payload(c) <= 0)
				return;
			on_payload(c);
			continue;
		}
		if (rx_avail(c) < need[c->rx]) {
			if (rx_fill(c) <= 0)
				return;
			continue;
		}
		p = c->rxbuf + c->rx_start;
		c->rx_start += need[c->rx];
		switch (c->rx) {
		case RX_CLIENT_FLAGS:
			on_client_flags(c, p);
			break;
		case RX_OPT_HDR:
			on_opt_hdr(c, p);
			break;
		default:
			on_request(c, p);
			break;
		}
	}
}

static void conn_service(struct nbd_conn *c)
{
	if (!c->dead) {
		conn_read(c);
		conn_flush(c);
		/* Flushing may have made room for input we already hold. */
		if (rx_avail(c) && conn_wants_read(c)) {
			conn_read(c);
			conn_flush(c);
		}
	}
	conn_settle(c);
}

static void on_conn_event(struct td_event *ev, uint32_t events, void *arg)
{
	struct nbd_conn *c = arg;

	(void)ev;
	if (conn_wants_read(c) && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		conn_read(c);
	if ((events & (EPOLLHUP | EPOLLERR)) && !c->dead) {
		/* The peer is gone both ways: nobody to reply to. */
		td_log_debug("nbd: %s: hung up", c->peer);
		conn_drop(c);
	}
	if (!c->dead)
		conn_flush(c);
	conn_settle(c);
}

/* ---- accepting ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* Check on negotiating clients a few times per timeout while there are any. */
static void arm_handshake_timer(struct td_nbd_server *srv)
{
	uint64_t period = srv->hs_timeout_ns / 4 + 1;

	if (srv->hs_armed || !srv->hs_timer)
		return;
	if (td_loop_set_timer(srv->hs_timer, period, period) == 0)
		srv->hs_armed = true;
}

static void on_handshake_check(struct td_event *ev, uint32_t events, void *arg)
{
	struct td_nbd_server *srv = arg;
	uint64_t now = now_ns();
	struct nbd_conn *c, *next;
	bool waiting = false;

	(void)events;
	for (c = srv->conns; c; c = next) {
		next = c->next;
		if (c->dead || !conn_in_handshake(c))
			continue;
		if (now - c->accepted_ns < srv->hs_timeout_ns) {
			waiting = true;
			continue;
		}
		td_log_warn("nbd: %s: no NBD negotiation within %llu ms: closing",
			    c->peer,
			    (unsigned long long)(srv->hs_timeout_ns / 1000000));
		conn_drop(c);
		conn_settle(c);
	}
	if (!waiting && td_loop_set_timer(ev, 0, 0) == 0)
		srv->hs_armed = false;
}

static void conn_new(struct td_nbd_server *srv, int fd, const char *peer)
{
	struct nbd_greeting g;
	struct nbd_conn *c = calloc(1, sizeof(*c));

	if (!c)
		goto nomem;
	c->rxbuf = malloc(RXBUF_SIZE);
	if (!c->rxbuf)
		goto nomem_free;
	c->srv = srv;
	c->fd = fd;
	c->tx_tail = &c->tx_head;
	c->rx = RX_CLIENT_FLAGS;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->ev_mask = EPOLLIN;
	c->ev = td_loop_add_fd(srv->ctx->loop, fd, c->ev_mask, on_conn_event, c);
	if (!c->ev) {
		td_log_err("nbd: %s: epoll: %s", peer, strerror(errno));
		goto out_free;
	}
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	nbd_build_greeting(&g);
	if (queue_bytes(c, &g, sizeof(g)) < 0) {
		td_log_err("nbd: %s: out of memory", peer);
		conn_drop(c);
		conn_free(c);
		return;
	}
	c->accepted_ns = now_ns();
	arm_handshake_timer(srv);
	td_log_debug("nbd: %s: connected", peer);
	return;

nomem_free:
	td_log_err("nbd: %s: cannot take the connection: out of memory", peer);
out_free:
	free(c->rxbuf);
	free(c);
	close(fd);
	return;
nomem:
	td_log_err("nbd: %s: cannot take the connection: out of memory", peer);
	close(fd);
}

static void peer_name(const struct nbd_listener *l, int fd,
		      const struct sockaddr_storage *ss, char *buf, size_t n)
{
	char host[INET6_ADDRSTRLEN] = "?";

	switch (ss->ss_family) {
	case AF_INET: {
		const struct sockaddr_in *sin = (const void *)ss;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, n, "%s:%u", host, ntohs(sin->sin_port));
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *sin6 = (const void *)ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, n, "[%s]:%u", host, ntohs(sin6->sin6_port));
		break;
	}
	default:
		snprintf(buf, n, "%s#%d", l->name, fd);
		break;
	}
}

static void on_accept_retry(struct td_event *ev, uint32_t events, void *arg)
{
	struct nbd_listener *l = arg;

	(void)ev;
	(void)events;
	td_loop_del(l->retry);
	l->retry = NULL;
	if (l->ev && !l->srv->quiesced)
		td_loop_mod_fd(l->ev, EPOLLIN);
}

static void on_accept(struct td_event *ev, uint32_t events, void *arg)
{
	struct nbd_listener *l = arg;
	struct td_nbd_server *srv = l->srv;

	(void)events;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss = { .ss_family = AF_UNSPEC };
		socklen_t slen = sizeof(ss);
		char peer[160];
		int fd, one = 1;

		fd = accept4(l->fd, (struct sockaddr *)&ss, &slen,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			td_log_err("nbd: %s: accept: %s", l->name, strerror(errno));
			/* Out of fds or memory: pause rather than spin. */
			l->retry = td_loop_add_timer(srv->ctx->loop,
						     ACCEPT_RETRY_NS, 0,
						     on_accept_retry, l);
			if (l->retry)
				td_loop_mod_fd(ev, 0);
			return;
		}
		if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
				   sizeof(one));
		peer_name(l, fd, &ss, peer, sizeof(peer));
		conn_new(srv, fd, peer);
	}
}

/* ---- listening ---- */

static struct nbd_listener *add_listener(struct td_nbd_server *srv, int fd,
					 const char *name)
{
	struct nbd_listener *l, *lis;

	lis = realloc(srv->lis, (srv->nlis + 1) * sizeof(*lis));
	if (!lis)
		return NULL;
	srv->lis = lis;
	l = &lis[srv->nlis];
	memset(l, 0, sizeof(*l));
	l->srv = srv;
	l->fd = fd;
	snprintf(l->name, sizeof(l->name), "%s", name);
	srv->nlis++;
	return l;
}

/* Is somebody serving on the unix socket @path? */
static bool unix_socket_live(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live;

	if (fd < 0)
		return false;
	live = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
	close(fd);
	return live;
}

static int listen_unix(struct td_nbd_server *srv, const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char name[128];
	struct stat st;
	int fd, err;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		td_log_err("nbd: unix socket path %s is too long (at most %zu bytes)",
			   path, sizeof(sun.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			td_log_err("nbd: %s exists and is not a socket; not replacing it",
				   path);
			return -EEXIST;
		}
		if (unix_socket_live(&sun)) {
			td_log_err("nbd: %s: another server is listening there",
				   path);
			return -EADDRINUSE;
		}
		unlink(path);		/* stale, from a process that died */
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		td_log_err("nbd: %s: socket: %s", path, strerror(errno));
		return err;
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		err = -errno;
		td_log_err("nbd: %s: bind: %s", path, strerror(errno));
		goto out_close;
	}
	srv->unix_path = strdup(path);
	if (!srv->unix_path) {
		err = -ENOMEM;
		unlink(path);
		goto out_close;
	}
	if (chmod(path, 0600) < 0)
		td_log_warn("nbd: %s: chmod 0600: %s", path, strerror(errno));
	if (listen(fd, LISTEN_BACKLOG) < 0) {
		err = -errno;
		td_log_err("nbd: %s: listen: %s", path, strerror(errno));
		goto out_close;
	}
	snprintf(name, sizeof(name), "unix:%s", path);
	if (!add_listener(srv, fd, name)) {
		err = -ENOMEM;
		goto out_close;
	}
	return 0;
out_close:
	close(fd);
	return err;
}

static int listen_tcp(struct td_nbd_server *srv, const char *addr)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE,
	};
	struct addrinfo *res, *ai;
	char *copy = strdup(addr), *host, *port;
	int err = -ENOMEM, gai, bound = 0;

	if (!copy)
		goto out;
	if (nbd_split_hostport(copy, &host, &port)) {
		td_log_err("nbd: TCP address '%s': expected HOST:PORT, [IPV6]:PORT or :PORT",
			   addr);
		err = -EINVAL;
		goto out;
	}
	gai = getaddrinfo(host, port, &hints, &res);
	if (gai) {
		td_log_err("nbd: TCP address '%s': %s", addr, gai_strerror(gai));
		err = -EINVAL;
		goto out;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		char h[INET6_ADDRSTRLEN + 2], p[16], name[128];
		int fd, one = 1;

		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, h, sizeof(h), p,
				sizeof(p), NI_NUMERICHOST | NI_NUMERICSERV))
			snprintf(h, sizeof(h), "?");
		snprintf(name, sizeof(name), ai->ai_family == AF_INET6 ?
			 "tcp:[%s]:%s" : "tcp:%s:%s", h, p);
		fd = socket(ai->ai_family,
			    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			err = -errno;
			td_log_err("nbd: %s: socket: %s", name, strerror(errno));
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* Wildcards give both families: keep them apart. */
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
				   sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
		    listen(fd, LISTEN_BACKLOG) < 0) {
			err = -errno;
			td_log_err("nbd: %s: %s", name, strerror(errno));
			close(fd);
			continue;
		}
		if (!add_listener(srv, fd, name)) {
			err = -ENOMEM;
			close(fd);
			break;
		}
		td_log_info("nbd: listening on %s", name);
		bound++;
	}
	freeaddrinfo(res);
	if (bound)
		err = 0;
out:
	free(copy);
	return err;
}

static void close_listeners(struct td_nbd_server *srv)
{
	for (int i = 0; i < srv->nlis; i++) {
		struct nbd_listener *l = &srv->lis[i];

		td_loop_del(l->retry);
		td_loop_del(l->ev);
		close(l->fd);
	}
	free(srv->lis);
	srv->lis = NULL;
	srv->nlis = 0;
	if (srv->unix_path) {
		unlink(srv->unix_path);
		free(srv->unix_path);
		srv->unix_path = NULL;
	}
}

/* ---- the server ---- */

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
	srv->kick.fn = server_kick;
	srv->export_name = strdup(name);
	if (!srv->export_name)
		goto nomem;
	srv->exp.name = srv->export_name;
	srv->exp.size = img->size;
	srv->exp.tx_flags = nbd_tx_flags(img->features, ro);
	nbd_block_sizes(img->align, &srv->exp.min_block, &srv->exp.pref_block,
			&srv->exp.max_block);

	if (opts->unix_path && listen_unix(srv, opts->unix_path) < 0)
		goto fail;
	if (opts->tcp_addr && listen_tcp(srv, opts->tcp_addr) < 0)
		goto fail;
	if (!srv->nlis) {
		td_log_err("nbd: nothing to listen on: give a unix socket path and/or a TCP address");
		goto fail;
	}
	srv->hs_timeout_ns = HANDSHAKE_TIMEOUT_NS;
	srv->hs_timer = td_loop_add_timer(ctx->loop, 0, 0, on_handshake_check,
					  srv);
	if (!srv->hs_timer) {
		td_log_err("nbd: timer: %s", strerror(errno));
		goto fail;
	}
	for (int i = 0; i < srv->nlis; i++) {
		struct nbd_listener *l = &srv->lis[i];

		l->ev = td_loop_add_fd(ctx->loop, l->fd, EPOLLIN, on_accept, l);
		if (!l->ev) {
			td_log_err("nbd: %s: epoll: %s", l->name, strerror(errno));
			goto fail;
		}
	}
	return srv;
nomem:
	td_log_err("nbd: out of memory");
fail:
	if (srv) {
		close_listeners(srv);
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
		conn_drop(c);
		conn_settle(c);
	}
}

void td_nbd_server_quiesce(struct td_nbd_server *srv)
{
	struct nbd_conn *c, *next;

	if (srv->quiesced)
		return;
	srv->quiesced = true;
	close_listeners(srv);
	for (c = srv->conns; c; c = next) {
		next = c->next;
		if (c->dead)
			continue;
		/*
		 * Nothing was promised to a client still negotiating, nor for
		 * a write whose data has not all arrived: drop those. The rest
		 * stop at the next command boundary and get their replies.
		 */
		if (conn_in_handshake(c)) {
			conn_drop(c);
		} else if (c->rx == RX_PAYLOAD) {
			conn_stop_reading(c);
			c->closing = true;
		}
		conn_settle(c);
	}
	srv->grace = td_loop_add_timer(srv->ctx->loop, QUIESCE_GRACE_NS, 0,
				       on_grace_over, srv);
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
	arm_handshake_timer(srv);
}

void td_nbd_server_destroy(struct td_nbd_server *srv)
{
	struct nbd_conn *c, *next;

	if (!srv)
		return;
	close_listeners(srv);
	td_loop_del(srv->grace);
	td_loop_del(srv->hs_timer);
	for (c = srv->conns; c; c = next) {
		next = c->next;
		conn_drop(c);
		if (!c->pending) {
			conn_free(c);
			continue;
		}
		/* Still in the image: freed by its last completion. */
		td_log_warn("nbd: %s: %u requests still in flight at shutdown",
			    c->peer, c->pending);
		conn_unlink(c);
		c->srv = NULL;
	}
	nbd_buf_free(&srv->scratch);
	free(srv->export_name);
	if (srv->kick.queued) {
		srv->destroyed = true;
		srv->kick_head = NULL;
		return;
	}
	free(srv);
}
