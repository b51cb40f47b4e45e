/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The blktapctrl control protocol: one truth for the daemon, tap-ctl and
 * anything else that talks to /run/blktap/blktapctrl.sock.
 *
 * A message is a fixed header followed by @len bytes of payload. Both ends
 * are on the same host (a unix socket), so the header is in host byte
 * order. A client sends one request and reads one reply on each
 * connection; the reply echoes the request's op with BLKTAP_CTL_REPLY set.
 *
 * The payload is text: "key=value\n" lines. A blank line ends a record, so
 * one payload can carry several records (the reply to LIST has one per
 * disk). Keys are [a-z0-9_-]{1,31}; values may hold any byte but NUL and
 * newline. Every line ends with "\n"; no key appears twice in a record.
 * The same text is the format of the daemon's state files.
 *
 * Versioning: a peer refuses a header whose version is not
 * BLKTAP_CTL_VERSION (status -EPROTO). New keys may be added without a
 * version bump; a reader ignores keys it does not know.
 */
#ifndef BLKTAP_CONTROL_H
#define BLKTAP_CONTROL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define BLKTAP_CTL_MAGIC	0x4c544342u	/* "BCTL" in little endian */
#define BLKTAP_CTL_VERSION	1
#define BLKTAP_CTL_MAX_PAYLOAD	(1u << 20)
#define BLKTAP_CTL_MAX_KEY	31
#define BLKTAP_CTL_SOCKET	"/run/blktap/blktapctrl.sock"
#define BLKTAP_CTL_RUN_DIR	"/run/blktap"

/*
 * Disk ids ("minor"). Kernel disks use the minor the kernel gave them
 * (/dev/tapdevN, N < 2^20 = the Linux minor space). NBD-only disks get ids
 * from BLKTAP_CTL_NBD_MINOR_BASE up, so the two never clash.
 */
#define BLKTAP_CTL_NBD_MINOR_BASE	(1u << 20)

/* blktap_ctl_hdr.op */
enum blktap_ctl_op {
	BLKTAP_CTL_OP_CHECK = 1,	/* -> version=, kernel=0|1, kernel-error= */
	BLKTAP_CTL_OP_LIST,		/* [type=, file=, minor=, pid=] -> one record per disk */
	BLKTAP_CTL_OP_CREATE,		/* see "create keys" -> one disk record */
	BLKTAP_CTL_OP_DESTROY,		/* minor= and/or pid= -> the disk record */
	BLKTAP_CTL_OP_PAUSE,		/* minor= and/or pid= -> counters, once drained */
	BLKTAP_CTL_OP_UNPAUSE,		/* minor= and/or pid= -> counters */
	BLKTAP_CTL_OP_STATS,		/* minor= and/or pid= -> counters */
	BLKTAP_CTL_OP_MAX,
};

#define BLKTAP_CTL_REPLY	0x8000u	/* set in the op of a reply */

/*
 * Create keys: type= (aio, sync, ram, qcow, vmdk), path= (absolute),
 * readonly=0|1, nbd-unix=PATH, nbd-tcp=HOST:PORT, name= (NBD export name),
 * kernel=0|1 (default: 1 unless an NBD address is given), vdev= (recorded
 * only).
 *
 * Disk record keys (LIST, CREATE, DESTROY replies): minor=, pid= (0 when no
 * tapdisk runs), state= (starting, running, restarting, failed, stopping),
 * type=, file=, kind= (kernel, nbd), device= (/dev/tapdevN or the NBD URI),
 * readonly=, nbd-unix=, nbd-tcp=, name=, vdev=, restarts=, reason= (why the
 * last restart or the failure happened).
 *
 * Counters (STATS, PAUSE, UNPAUSE replies; answered by the disk's tapdisk
 * on its own control socket, which speaks CHECK, STATS, PAUSE and UNPAUSE
 * of this same protocol): minor=, pid=, image=, size=, requests=,
 * bytes-read=, bytes-written=, errors=, inflight=, paused=.
 *
 * Error replies: status < 0 and a record with error= (a sentence for the
 * user).
 */

struct blktap_ctl_hdr {
	uint32_t magic;		/* BLKTAP_CTL_MAGIC */
	uint16_t version;	/* BLKTAP_CTL_VERSION */
	uint16_t op;		/* enum blktap_ctl_op, | BLKTAP_CTL_REPLY in replies */
	uint32_t len;		/* payload bytes, <= BLKTAP_CTL_MAX_PAYLOAD */
	int32_t status;		/* replies: 0 or -errno; requests: 0 */
};

_Static_assert(sizeof(struct blktap_ctl_hdr) == 16, "control header is 16 bytes");

/* A payload being built. On a bad key/value or ENOMEM, err is set and sticks. */
struct blktap_ctl_buf {
	char *data;
	size_t len, cap;
	int err;
};

/* A decoded payload: records of key/value pairs pointing into one buffer. */
struct blktap_ctl_kv {
	const char *key;
	const char *val;
};

struct blktap_ctl_rec {
	size_t n;
	struct blktap_ctl_kv *kv;
};

struct blktap_ctl_msg {
	uint16_t op;		/* without BLKTAP_CTL_REPLY */
	int32_t status;
	size_t nrec;
	struct blktap_ctl_rec *rec;
	char *text;		/* private: the split payload */
	struct blktap_ctl_kv *kvs;	/* private */
};

/* Builder. blktap_ctl_buf_add() formats the value with printf. */
void blktap_ctl_buf_add(struct blktap_ctl_buf *b, const char *key,
			const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void blktap_ctl_buf_vadd(struct blktap_ctl_buf *b, const char *key,
			 const char *fmt, va_list ap);
void blktap_ctl_buf_end_record(struct blktap_ctl_buf *b);
void blktap_ctl_buf_free(struct blktap_ctl_buf *b);

/* Header: fill one; check one (0, -EPROTO bad magic/version, -EMSGSIZE). */
void blktap_ctl_hdr_init(struct blktap_ctl_hdr *h, uint16_t op, int32_t status,
			 uint32_t len);
int blktap_ctl_hdr_check(const struct blktap_ctl_hdr *h);

/*
 * Split @len bytes of payload into records. 0, -EBADMSG (malformed) or
 * -ENOMEM. The message owns a copy; free it with blktap_ctl_msg_free().
 */
int blktap_ctl_decode(const void *payload, size_t len,
		      struct blktap_ctl_msg *msg);
void blktap_ctl_msg_free(struct blktap_ctl_msg *msg);

/* Value of @key in @rec, or NULL. */
const char *blktap_ctl_get(const struct blktap_ctl_rec *rec, const char *key);
/* 0 and *out, -ENOENT when missing, -EINVAL when not a decimal number. */
int blktap_ctl_get_u64(const struct blktap_ctl_rec *rec, const char *key,
		       uint64_t *out);
const char *blktap_ctl_op_name(unsigned int op);

/* Socket I/O: whole messages, retrying on EINTR. 0 or -errno. */
int blktap_ctl_send(int fd, uint16_t op, int32_t status,
		    const struct blktap_ctl_buf *payload);
int blktap_ctl_recv(int fd, struct blktap_ctl_msg *msg);

/* Client: connect to @socket_path (NULL: the default). fd or -errno. */
int blktap_ctl_connect(const char *socket_path);

/*
 * One round trip: send @op with @req (may be NULL), read the reply into
 * @reply. Returns -errno for transport errors; otherwise 0, with the
 * daemon's verdict in reply->status (and error= in reply->rec[0]).
 */
int blktap_ctl_call(const char *socket_path, uint16_t op,
		    const struct blktap_ctl_buf *req,
		    struct blktap_ctl_msg *reply);

#endif
