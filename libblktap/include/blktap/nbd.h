/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The NBD wire protocol: the project's one set of NBD constants and message
 * layouts, used by tapdisk's server, the tools and the tests.
 *
 * Every multi-byte field on the wire is big-endian; the structs below are
 * packed and describe the byte layout only (convert with be*toh()/hto*be()).
 * Reference: the NBD protocol document (doc/proto.md of the reference
 * implementation), fixed newstyle negotiation.
 */
#ifndef BLKTAP_NBD_H
#define BLKTAP_NBD_H

#include <stdint.h>

/* Magics */
#define NBD_MAGIC			0x4e42444d41474943ULL	/* "NBDMAGIC" */
#define NBD_IHAVEOPT			0x49484156454f5054ULL	/* "IHAVEOPT" */
#define NBD_REP_MAGIC			0x0003e889045565a9ULL
#define NBD_REQUEST_MAGIC		0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC		0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC	0x668e33efu

/* Handshake flags (server, 16 bits) */
#define NBD_FLAG_FIXED_NEWSTYLE		(1u << 0)
#define NBD_FLAG_NO_ZEROES		(1u << 1)

/* Client flags (32 bits) */
#define NBD_FLAG_C_FIXED_NEWSTYLE	(1u << 0)
#define NBD_FLAG_C_NO_ZEROES		(1u << 1)

/* Transmission flags (16 bits) */
#define NBD_FLAG_HAS_FLAGS		(1u << 0)
#define NBD_FLAG_READ_ONLY		(1u << 1)
#define NBD_FLAG_SEND_FLUSH		(1u << 2)
#define NBD_FLAG_SEND_FUA		(1u << 3)
#define NBD_FLAG_ROTATIONAL		(1u << 4)
#define NBD_FLAG_SEND_TRIM		(1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES	(1u << 6)
#define NBD_FLAG_SEND_DF		(1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN		(1u << 8)
#define NBD_FLAG_SEND_RESIZE		(1u << 9)
#define NBD_FLAG_SEND_CACHE		(1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO		(1u << 11)

/* Options */
#define NBD_OPT_EXPORT_NAME		1
#define NBD_OPT_ABORT			2
#define NBD_OPT_LIST			3
#define NBD_OPT_PEEK_EXPORT		4	/* withdrawn */
#define NBD_OPT_STARTTLS		5
#define NBD_OPT_INFO			6
#define NBD_OPT_GO			7
#define NBD_OPT_STRUCTURED_REPLY	8
#define NBD_OPT_LIST_META_CONTEXT	9
#define NBD_OPT_SET_META_CONTEXT	10
#define NBD_OPT_EXTENDED_HEADERS	11

/* Option reply types */
#define NBD_REP_ACK			1
#define NBD_REP_SERVER			2
#define NBD_REP_INFO			3
#define NBD_REP_META_CONTEXT		4
#define NBD_REP_ERR(v)			((1u << 31) | (v))
#define NBD_REP_IS_ERR(t)		(((t) & (1u << 31)) != 0)
#define NBD_REP_ERR_UNSUP		NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY		NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID		NBD_REP_ERR(3)
#define NBD_REP_ERR_PLATFORM		NBD_REP_ERR(4)
#define NBD_REP_ERR_TLS_REQD		NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN		NBD_REP_ERR(6)
#define NBD_REP_ERR_SHUTDOWN		NBD_REP_ERR(7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD	NBD_REP_ERR(8)
#define NBD_REP_ERR_TOO_BIG		NBD_REP_ERR(9)
#define NBD_REP_ERR_EXT_HEADER_REQD	NBD_REP_ERR(10)

/* Information types in NBD_OPT_INFO/GO requests and NBD_REP_INFO replies */
#define NBD_INFO_EXPORT			0
#define NBD_INFO_NAME			1
#define NBD_INFO_DESCRIPTION		2
#define NBD_INFO_BLOCK_SIZE		3

/* Commands */
#define NBD_CMD_READ			0
#define NBD_CMD_WRITE			1
#define NBD_CMD_DISC			2
#define NBD_CMD_FLUSH			3
#define NBD_CMD_TRIM			4
#define NBD_CMD_CACHE			5
#define NBD_CMD_WRITE_ZEROES		6
#define NBD_CMD_BLOCK_STATUS		7

/* Command flags (16 bits) */
#define NBD_CMD_FLAG_FUA		(1u << 0)
#define NBD_CMD_FLAG_NO_HOLE		(1u << 1)
#define NBD_CMD_FLAG_DF			(1u << 2)
#define NBD_CMD_FLAG_REQ_ONE		(1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO		(1u << 4)

/* Error values in replies (not the host's errno values) */
#define NBD_SUCCESS			0
#define NBD_EPERM			1
#define NBD_EIO				5
#define NBD_ENOMEM			12
#define NBD_EINVAL			22
#define NBD_ENOSPC			28
#define NBD_EOVERFLOW			75
#define NBD_ENOTSUP			95
#define NBD_ESHUTDOWN			108

/* Limits */
#define NBD_MAX_STRING			4096	/* export names, messages */
#define NBD_ZEROES_LEN			124	/* after NBD_OPT_EXPORT_NAME */

#define NBD_PACKED			__attribute__((packed))

/* S: greeting, then C: 32-bit client flags */
struct nbd_greeting {
	uint64_t magic;			/* NBD_MAGIC */
	uint64_t ihaveopt;		/* NBD_IHAVEOPT */
	uint16_t hs_flags;		/* NBD_FLAG_FIXED_NEWSTYLE, ... */
} NBD_PACKED;

/* C: option header, followed by @len bytes of option data */
struct nbd_opt_hdr {
	uint64_t magic;			/* NBD_IHAVEOPT */
	uint32_t option;		/* NBD_OPT_* */
	uint32_t len;
} NBD_PACKED;

/* S: option reply header, followed by @len bytes of reply data */
struct nbd_opt_reply {
	uint64_t magic;			/* NBD_REP_MAGIC */
	uint32_t option;		/* the option this answers */
	uint32_t type;			/* NBD_REP_* */
	uint32_t len;
} NBD_PACKED;

/* S: reply to NBD_OPT_EXPORT_NAME (then 124 zeroes unless NO_ZEROES) */
struct nbd_export_name_reply {
	uint64_t size;
	uint16_t tx_flags;
} NBD_PACKED;

/* NBD_REP_INFO payloads */
struct nbd_info_export {
	uint16_t info;			/* NBD_INFO_EXPORT */
	uint64_t size;
	uint16_t tx_flags;
} NBD_PACKED;

struct nbd_info_block_size {
	uint16_t info;			/* NBD_INFO_BLOCK_SIZE */
	uint32_t minimum;
	uint32_t preferred;
	uint32_t maximum;
} NBD_PACKED;

/* C: request, followed by @len bytes of data for NBD_CMD_WRITE */
struct nbd_request {
	uint32_t magic;			/* NBD_REQUEST_MAGIC */
	uint16_t flags;			/* NBD_CMD_FLAG_* */
	uint16_t type;			/* NBD_CMD_* */
	uint64_t cookie;		/* "handle": echoed in the reply */
	uint64_t offset;
	uint32_t len;
} NBD_PACKED;

/* S: simple reply, followed by the data of a successful NBD_CMD_READ */
struct nbd_simple_reply {
	uint32_t magic;			/* NBD_SIMPLE_REPLY_MAGIC */
	uint32_t error;			/* NBD_E* */
	uint64_t cookie;
} NBD_PACKED;

_Static_assert(sizeof(struct nbd_greeting) == 18, "nbd_greeting");
_Static_assert(sizeof(struct nbd_opt_hdr) == 16, "nbd_opt_hdr");
_Static_assert(sizeof(struct nbd_opt_reply) == 20, "nbd_opt_reply");
_Static_assert(sizeof(struct nbd_export_name_reply) == 10, "export_name_reply");
_Static_assert(sizeof(struct nbd_info_export) == 12, "nbd_info_export");
_Static_assert(sizeof(struct nbd_info_block_size) == 14, "nbd_info_block_size");
_Static_assert(sizeof(struct nbd_request) == 28, "nbd_request");
_Static_assert(sizeof(struct nbd_simple_reply) == 16, "nbd_simple_reply");

#endif
