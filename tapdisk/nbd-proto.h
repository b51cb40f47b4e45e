/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * NBD message parsing and building for the tapdisk server, kept free of
 * sockets and of the event loop so that every rule can be unit-tested:
 * the handshake's option haggling (one call per option, replies appended
 * to a buffer), request header checks, and errno mapping.
 */
#ifndef TAPDISK_NBD_PROTO_H
#define TAPDISK_NBD_PROTO_H

#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "blktap/nbd.h"

/* Largest READ/WRITE payload we accept (and advertise as maximum block). */
#define NBD_MAX_PAYLOAD		(32u << 20)
/* Longest option data we read; longer options get NBD_REP_ERR_TOO_BIG. */
#define NBD_MAX_OPT_DATA	(16u << 10)
#define NBD_PREFERRED_BLOCK	4096u

/* Big-endian fields at any alignment, as they sit in a message. */
static inline uint16_t nbd_get16(const void *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return be16toh(v);
}

static inline uint32_t nbd_get32(const void *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return be32toh(v);
}

static inline uint64_t nbd_get64(const void *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return be64toh(v);
}

static inline void nbd_put16(void *p, uint16_t v)
{
	v = htobe16(v);
	memcpy(p, &v, sizeof(v));
}

static inline void nbd_put32(void *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, sizeof(v));
}

/* What one export looks like to clients. */
struct nbd_export {
	const char *name;		/* its name; "" also selects it */
	const char *description;	/* NULL: none */
	uint64_t size;
	uint16_t tx_flags;		/* NBD_FLAG_* transmission flags */
	uint32_t min_block, pref_block, max_block;
};

/* A growable byte buffer that option replies are appended to. */
struct nbd_buf {
	uint8_t *data;
	size_t len, cap;
};
int nbd_buf_put(struct nbd_buf *b, const void *p, size_t n);
void nbd_buf_reset(struct nbd_buf *b);
void nbd_buf_free(struct nbd_buf *b);

/* Transmission flags for an image with TD_FEAT_* @features. */
uint16_t nbd_tx_flags(unsigned int features, bool readonly);
/* Block size constraints for an image with alignment @align. */
void nbd_block_sizes(unsigned int align, uint32_t *min, uint32_t *pref,
		     uint32_t *max);

/* The server's first message (NBD_FLAG_FIXED_NEWSTYLE | NO_ZEROES). */
void nbd_build_greeting(struct nbd_greeting *g);

/*
 * The client's flags (raw, big-endian as received). 0, or -EINVAL if it
 * sets a flag we did not advertise (the connection must then be closed).
 */
int nbd_parse_client_flags(const void *buf, bool *no_zeroes);

/* An option header: 0, or -EBADMSG on a bad magic. */
int nbd_parse_opt_hdr(const void *buf, uint32_t *option, uint32_t *len);

enum nbd_opt_result {
	NBD_OPT_RES_CONTINUE,	/* keep haggling */
	NBD_OPT_RES_TRANSMIT,	/* send @out, then enter transmission */
	NBD_OPT_RES_CLOSE,	/* send @out (if anything), then close */
};

/*
 * Handle one option whose @len bytes of data are at @data; append the
 * replies to @out. Returns an enum nbd_opt_result, or -ENOMEM.
 */
int nbd_handle_option(const struct nbd_export *exp, bool no_zeroes,
		      uint32_t option, const uint8_t *data, uint32_t len,
		      struct nbd_buf *out);
/*
 * An option whose data is longer than NBD_MAX_OPT_DATA: the data is to be
 * skipped (unless the result is NBD_OPT_RES_CLOSE). Same returns.
 */
int nbd_handle_oversized_option(uint32_t option, uint32_t len,
				struct nbd_buf *out);
/* Append one option reply (header + @len bytes of @data). */
int nbd_put_opt_reply(struct nbd_buf *out, uint32_t option, uint32_t type,
		      const void *data, uint32_t len);

/* A transmission request, in host byte order. */
struct nbd_req_hdr {
	uint16_t flags;
	uint16_t type;
	uint64_t cookie;
	uint64_t offset;
	uint32_t len;
};

/* 0, or -EBADMSG on a bad magic (the connection must then be closed). */
int nbd_parse_request(const void *buf, struct nbd_req_hdr *r);

/* What to do with a request. */
struct nbd_verdict {
	uint32_t error;		/* NBD_E*: reply with it instead of running */
	uint32_t payload;	/* bytes following the header (to read or skip) */
	bool disc;		/* NBD_CMD_DISC: finish in-flight work, close */
	bool drop;		/* protocol broken: reply if @error, then close */
};
void nbd_check_request(const struct nbd_export *exp,
		       const struct nbd_req_hdr *r, struct nbd_verdict *v);

/* An errno (either sign) as an NBD_E* error value. */
uint32_t nbd_errno_to_wire(int err);

void nbd_build_simple_reply(struct nbd_simple_reply *rep, uint64_t cookie,
			    uint32_t error);

/*
 * Split a TCP address "HOST:PORT", "[V6]:PORT" or ":PORT" in place into
 * @host (NULL: any address) and @port. 0, or -EINVAL for other forms
 * (including a bare IPv6 address, which needs the brackets).
 */
int nbd_split_hostport(char *s, char **host, char **port);

/* For messages: "NBD_CMD_READ", "NBD_OPT_GO", ... or "unknown". */
const char *nbd_cmd_name(uint16_t type);
const char *nbd_opt_name(uint32_t option);

#endif
