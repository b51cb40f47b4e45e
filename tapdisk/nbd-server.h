/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Private to the NBD frontend (frontend-nbd.c and the nbd-*.c files that
 * make up the server): the server, connection and command objects, and the
 * calls between the parts. Users of the frontend include frontend-nbd.h.
 *
 *   frontend-nbd.c   the server object and the public API
 *   nbd-listen.c     unix and TCP listeners, accepting
 *   nbd-conn.c       a connection: input buffer, reply queue, flow control
 *   nbd-handshake.c  the option phase and the negotiation timeout
 *   nbd-cmd.c        a client command: header -> image request -> reply
 */
#ifndef TAPDISK_NBD_SERVER_H
#define TAPDISK_NBD_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

#include "bufpool.h"
#include "frontend-nbd.h"
#include "image.h"
#include "nbd-proto.h"

#define RXBUF_SIZE		(64u << 10)
#define RX_FILL			(16u << 10)	/* most read into it at once */
#define CONN_MAX_PENDING	256		/* commands read, not replied */
#define CONN_MAX_PENDING_BYTES	(128u << 20)	/* their data buffers */
#define SRV_MAX_PENDING_BYTES	(512ull << 20)	/* all connections' buffers */
#define SRV_BUFPOOL_BYTES	(64u << 20)	/* idle buffers kept for reuse */

struct nbd_conn;
struct nbd_listener;

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
	struct td_bufpool bufs;		/* recycled data buffers */
	bool quiesced;
	bool paused;			/* no new commands until resumed */
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

static inline uint64_t nbd_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* nbd-listen.c */
int nbd_listen_unix(struct td_nbd_server *srv, const char *path);
int nbd_listen_tcp(struct td_nbd_server *srv, const char *addr);
/* Start accepting on every listener: 0, or -errno (after logging why). */
int nbd_listeners_start(struct td_nbd_server *srv);
/* Close the listeners; unlink the unix socket. */
void nbd_listeners_close(struct td_nbd_server *srv);

/* nbd-conn.c */
/* Take a new client socket @fd (closed on failure) and send the greeting. */
void nbd_conn_new(struct td_nbd_server *srv, int fd, const char *peer);
/* Service @c (read what is buffered, write replies) at the end of this turn. */
void nbd_conn_kick(struct nbd_conn *c);
/* Read what is buffered and write replies now, then settle. */
void nbd_conn_service(struct nbd_conn *c);
/* Take @c off the server's lists. */
void nbd_conn_unlink(struct nbd_conn *c);
void nbd_conn_free(struct nbd_conn *c);
/* Abandon any half-read input and read no more. */
void nbd_conn_stop_reading(struct nbd_conn *c);
/* Close the socket; the connection lives on until its commands finish. */
void nbd_conn_drop(struct nbd_conn *c);
/* After any work on @c: close or free it when done, else fix its events. */
void nbd_conn_settle(struct nbd_conn *c);
bool nbd_conn_in_handshake(const struct nbd_conn *c);
bool nbd_conn_over_limits(const struct nbd_conn *c);
/* Queue @tx (or a copy of @n bytes at @p) to be written to the client. */
void nbd_conn_queue_tx(struct nbd_conn *c, struct nbd_tx *tx);
int nbd_conn_queue_bytes(struct nbd_conn *c, const void *p, size_t n);
/* Read @len bytes of payload into @dst (NULL: skip them), then on_payload. */
void nbd_conn_start_payload(struct nbd_conn *c, enum payload_kind kind,
			    void *dst, uint64_t len);

/* nbd-handshake.c: each takes the message just read from the client. */
void nbd_handshake_client_flags(struct nbd_conn *c, const uint8_t *p);
void nbd_handshake_opt_hdr(struct nbd_conn *c, const uint8_t *p);
/* The option data (PL_OPTION) is in c->opt_data. */
void nbd_handshake_option(struct nbd_conn *c);
/* Watch negotiating clients for the handshake timeout. */
void nbd_handshake_arm_timer(struct td_nbd_server *srv);
void nbd_handshake_check(struct td_event *ev, uint32_t events, void *arg);

/* nbd-cmd.c */
/* A request header was read: check it and run it (or refuse it). */
void nbd_cmd_request(struct nbd_conn *c, const uint8_t *p);
/* Send the image the command whose write data (if any) has arrived. */
void nbd_cmd_submit(struct nbd_cmd *cmd);
/* Queue the reply, with cmd->error (and the read data, if any). */
void nbd_cmd_reply(struct nbd_cmd *cmd);
/* The command is over: its reply was written, or can no longer be. */
void nbd_cmd_release(struct nbd_cmd *cmd);

#endif
