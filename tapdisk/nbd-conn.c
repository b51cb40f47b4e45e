// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * One NBD client connection (see nbd-server.h): its non-blocking socket,
 * the input buffer and the receive state machine that hands each message
 * to the handshake (nbd-handshake.c) or command (nbd-cmd.c) code, the
 * reply queue, and flow control.
 *
 * Input is read in large chunks into a per-connection buffer and parsed
 * from there; large write payloads go straight into the command's aligned
 * buffer. Replies queue per connection and leave in one sendmsg() per loop
 * turn (a deferred "kick"), in whatever order the image completes them; a
 * reply that does not fit the socket waits for EPOLLOUT, so a slow reader
 * never blocks the loop or mixes two replies on the wire. A connection
 * stops reading new commands while it has too many (or too much data)
 * pending, and while the server as a whole holds too much.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "blktap/log.h"
#include "nbd-server.h"

#define TX_IOV_MAX		64

/* ---- bookkeeping ---- */

/* Service @c (read what is buffered, write replies) at the end of this turn. */
void nbd_conn_kick(struct nbd_conn *c)
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
void nbd_conn_unlink(struct nbd_conn *c)
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

void nbd_conn_free(struct nbd_conn *c)
{
	nbd_conn_unlink(c);
	free(c->opt_data);
	free(c->rxbuf);
	free(c);
}

bool nbd_conn_over_limits(const struct nbd_conn *c)
{
	return c->pending >= CONN_MAX_PENDING ||
	       c->pending_bytes >= CONN_MAX_PENDING_BYTES;
}


static void tx_release(struct nbd_tx *tx)
{
	if (tx->is_cmd)
		nbd_cmd_release((struct nbd_cmd *)tx);
	else
		free(tx);
}

void nbd_conn_queue_tx(struct nbd_conn *c, struct nbd_tx *tx)
{
	tx->next = NULL;
	tx->off = 0;
	*c->tx_tail = tx;
	c->tx_tail = &tx->next;
	nbd_conn_kick(c);
}

int nbd_conn_queue_bytes(struct nbd_conn *c, const void *p, size_t n)
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
	nbd_conn_queue_tx(c, &m->tx);
	return 0;
}

/* Abandon any half-read input and read no more. */
void nbd_conn_stop_reading(struct nbd_conn *c)
{
	if (c->rx == RX_PAYLOAD && c->pl_cmd) {
		struct nbd_cmd *cmd = c->pl_cmd;

		c->pl_cmd = NULL;
		nbd_cmd_release(cmd);
	}
	free(c->opt_data);
	c->opt_data = NULL;
	c->rx = RX_NONE;
}

/* Close the socket; the connection lives on until its commands finish. */
void nbd_conn_drop(struct nbd_conn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	nbd_conn_stop_reading(c);
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

bool nbd_conn_in_handshake(const struct nbd_conn *c)
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
	if (nbd_conn_in_handshake(c))
		return !c->tx_head;
	/* At a command boundary: new commands only if we have room. */
	return !c->srv->quiesced && !c->srv->paused && !nbd_conn_over_limits(c) &&
	       c->srv->pending_bytes < SRV_MAX_PENDING_BYTES;
}

/* After any work on @c: close or free it when done, else fix its events. */
void nbd_conn_settle(struct nbd_conn *c)
{
	uint32_t mask;

	if (!c->dead && c->closing && !c->tx_head && !c->pending) {
		td_log_debug("nbd: %s: closed", c->peer);
		nbd_conn_drop(c);
	}
	if (c->dead) {
		if (!c->pending)
			nbd_conn_free(c);
		return;
	}
	mask = (conn_wants_read(c) ? EPOLLIN : 0) | (c->tx_head ? EPOLLOUT : 0);
	if (mask != c->ev_mask) {
		int err = td_loop_mod_fd(c->ev, mask);

		if (err) {
			td_log_err("nbd: %s: epoll: %s", c->peer, strerror(-err));
			nbd_conn_drop(c);
			if (!c->pending)
				nbd_conn_free(c);
			return;
		}
		c->ev_mask = mask;
	}
}

/* ---- output ---- */

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
			nbd_conn_drop(c);
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
			nbd_conn_stop_reading(c);
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
		nbd_conn_drop(c);
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
	/*
	 * Read at most RX_FILL at a time: what follows a header is often a
	 * large payload, better received straight into its own buffer than
	 * into this one and copied (rx_payload).
	 */
	n = conn_recv(c, c->rxbuf + c->rx_end,
		      RXBUF_SIZE - c->rx_end < RX_FILL ? RXBUF_SIZE - c->rx_end : RX_FILL);
	if (n <= 0)
		return (int)n;
	c->rx_end += n;
	return 1;
}

void nbd_conn_start_payload(struct nbd_conn *c, enum payload_kind kind,
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
		if (c->pl_dst && c->pl_left >= RX_FILL) {
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

static void on_payload(struct nbd_conn *c)
{
	struct nbd_cmd *cmd = c->pl_cmd;

	c->pl_cmd = NULL;
	switch (c->pl_kind) {
	case PL_OPTION:
		nbd_handshake_option(c);
		break;
	case PL_OPTION_SKIP:
		c->rx = RX_OPT_HDR;
		break;
	case PL_WRITE:
		c->rx = RX_REQ_HDR;
		nbd_cmd_submit(cmd);
		break;
	case PL_WRITE_SKIP:
		c->rx = RX_REQ_HDR;
		nbd_cmd_reply(cmd);
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
			nbd_handshake_client_flags(c, p);
			break;
		case RX_OPT_HDR:
			nbd_handshake_opt_hdr(c, p);
			break;
		default:
			nbd_cmd_request(c, p);
			break;
		}
	}
}

void nbd_conn_service(struct nbd_conn *c)
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
	nbd_conn_settle(c);
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
		nbd_conn_drop(c);
	}
	if (!c->dead)
		conn_flush(c);
	nbd_conn_settle(c);
}

/* ---- a new client ---- */

void nbd_conn_new(struct td_nbd_server *srv, int fd, const char *peer)
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
	if (nbd_conn_queue_bytes(c, &g, sizeof(g)) < 0) {
		td_log_err("nbd: %s: out of memory", peer);
		nbd_conn_drop(c);
		nbd_conn_free(c);
		return;
	}
	c->accepted_ns = nbd_now_ns();
	nbd_handshake_arm_timer(srv);
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

