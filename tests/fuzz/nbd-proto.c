// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Fuzz harness for the NBD protocol rules (tapdisk/nbd-proto.c), with no
 * sockets: the input is what a client sends, read the way the server
 * (nbd-conn.c, nbd-handshake.c, nbd-cmd.c) reads it. Client flags, then
 * options (header + data, oversized data skipped) until NBD_OPT_GO or
 * EXPORT_NAME, then request headers (write payloads skipped) until a bad
 * magic, NBD_CMD_DISC or a verdict that drops the connection. Every option
 * reply stream and every request verdict is checked against what the
 * server relies on. Built with libFuzzer by `make fuzz-libfuzzer`, or with
 * tests/fuzz/replay.c for `make check`. Seeds: tests/fuzz/corpus/nbd-proto/.
 *
 * Input: byte 0 and byte 1 pick the export (see struct cfg), the rest is
 * the client's byte stream. Byte 0 bit 7 instead feeds the rest as a TCP
 * address to nbd_split_hostport().
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "nbd-proto.h"

#define need(x)								\
	do {								\
		if (!(x)) {						\
			fprintf(stderr, "nbd-proto fuzz: %s:%d: %s\n",	\
				__FILE__, __LINE__, #x);		\
			abort();					\
		}							\
	} while (0)

/* Byte 0. */
#define CFG_READONLY	(1u << 0)
#define CFG_DISCARD	(1u << 1)
#define CFG_DESCRIBED	(1u << 2)
#define CFG_NAME_SHIFT	3		/* 2 bits: which export name */
#define CFG_TRANSMIT	(1u << 5)	/* skip the handshake */
#define CFG_HOSTPORT	(1u << 7)

static char long_name[NBD_MAX_STRING + 1];

static void setup_export(uint8_t b0, uint8_t b1, struct nbd_export *exp)
{
	static const uint64_t sizes[] = {
		0, 512, 1ull << 20, 36ull << 20, 4095, 1ull << 40,
		1ull << 63, UINT64_MAX,
	};
	static const unsigned int aligns[] = {
		0, 1, 512, 4096, 65536, 3, 1u << 20, 1u << 26,
	};
	const char *names[] = { "", "exp", "a", long_name };
	unsigned int feat = (b0 & CFG_DISCARD) ? TD_FEAT_DISCARD : 0;

	memset(long_name, 'n', NBD_MAX_STRING);
	memset(exp, 0, sizeof(*exp));
	exp->name = names[(b0 >> CFG_NAME_SHIFT) & 3];
	exp->description = (b0 & CFG_DESCRIBED) ? "a fuzzed export" : NULL;
	exp->size = sizes[b1 & 7];
	exp->tx_flags = nbd_tx_flags(feat, b0 & CFG_READONLY);
	nbd_block_sizes(aligns[(b1 >> 3) & 7], &exp->min_block,
			&exp->pref_block, &exp->max_block);
	need(exp->min_block && exp->min_block <= exp->pref_block &&
	     exp->pref_block <= exp->max_block);
	need(exp->max_block % exp->min_block == 0);
	need(exp->tx_flags & NBD_FLAG_HAS_FLAGS);
	need(!(exp->tx_flags & NBD_FLAG_SEND_TRIM) == !feat);
	need(!(exp->tx_flags & NBD_FLAG_READ_ONLY) == !(b0 & CFG_READONLY));
}

/* The reply to NBD_OPT_EXPORT_NAME: no header, just size and flags. */
static void check_export_name_reply(const struct nbd_export *exp,
				    bool no_zeroes, int res,
				    const struct nbd_buf *out)
{
	if (res == NBD_OPT_RES_CLOSE) {
		need(out->len == 0);	/* the spec: just hang up */
		return;
	}
	need(res == NBD_OPT_RES_TRANSMIT);
	need(out->len == 10 + (no_zeroes ? 0 : NBD_ZEROES_LEN));
	need(nbd_get64(out->data) == exp->size);
	need(nbd_get16(out->data + 8) == exp->tx_flags);
	for (size_t i = 10; i < out->len; i++)
		need(out->data[i] == 0);
}

static void check_info(const struct nbd_export *exp, const uint8_t *p,
		       uint32_t len, bool *saw_export)
{
	need(len >= 2);
	switch (nbd_get16(p)) {
	case NBD_INFO_EXPORT:
		need(len == 12);
		need(nbd_get64(p + 2) == exp->size);
		need(nbd_get16(p + 10) == exp->tx_flags);
		*saw_export = true;
		break;
	case NBD_INFO_BLOCK_SIZE:
		need(len == 14);
		need(nbd_get32(p + 2) == exp->min_block);
		need(nbd_get32(p + 6) == exp->pref_block);
		need(nbd_get32(p + 10) == exp->max_block);
		break;
	case NBD_INFO_NAME:
		need(len - 2 == strlen(exp->name) &&
		     !memcmp(p + 2, exp->name, len - 2));
		break;
	case NBD_INFO_DESCRIPTION:
		need(exp->description && len - 2 == strlen(exp->description));
		break;
	default:
		need(!"unknown NBD_INFO type");
	}
}

/* Option replies: a well-formed sequence, each answering @option. */
static void check_opt_replies(const struct nbd_export *exp, uint32_t option,
			      int res, const struct nbd_buf *out)
{
	bool saw_export = false;
	uint32_t last = 0;
	size_t off = 0;

	while (off < out->len) {
		const uint8_t *p = out->data + off;
		uint32_t type, len;

		need(out->len - off >= sizeof(struct nbd_opt_reply));
		need(nbd_get64(p) == NBD_REP_MAGIC);
		need(nbd_get32(p + 8) == option);
		type = nbd_get32(p + 12);
		len = nbd_get32(p + 16);
		need(len <= out->len - off - sizeof(struct nbd_opt_reply));
		need(len <= 4 + NBD_MAX_STRING);
		p += sizeof(struct nbd_opt_reply);
		switch (type) {
		case NBD_REP_ACK:
			need(len == 0);
			break;
		case NBD_REP_SERVER:
			need(option == NBD_OPT_LIST);
			need(len >= 4 && nbd_get32(p) == len - 4);
			break;
		case NBD_REP_INFO:
			need(option == NBD_OPT_INFO || option == NBD_OPT_GO);
			check_info(exp, p, len, &saw_export);
			break;
		default:
			need(NBD_REP_IS_ERR(type));
			need(res == NBD_OPT_RES_CONTINUE);
			break;
		}
		last = type;
		off += sizeof(struct nbd_opt_reply) + len;
	}
	/* Every option is answered; a successful GO/INFO described the export. */
	need(out->len > 0);
	if ((option == NBD_OPT_GO || option == NBD_OPT_INFO) &&
	    last == NBD_REP_ACK)
		need(saw_export);
	if (res == NBD_OPT_RES_TRANSMIT)
		need(option == NBD_OPT_GO && last == NBD_REP_ACK);
	if (res == NBD_OPT_RES_CLOSE)
		need(option == NBD_OPT_ABORT && last == NBD_REP_ACK);
}

static void check_opt(const struct nbd_export *exp, bool no_zeroes,
		      uint32_t option, int res, const struct nbd_buf *out)
{
	need(res == NBD_OPT_RES_CONTINUE || res == NBD_OPT_RES_TRANSMIT ||
	     res == NBD_OPT_RES_CLOSE || res == -ENOMEM);
	if (res < 0)
		return;
	if (option == NBD_OPT_EXPORT_NAME)
		check_export_name_reply(exp, no_zeroes, res, out);
	else
		check_opt_replies(exp, option, res, out);
}

static bool is_write(uint16_t type)
{
	return type == NBD_CMD_WRITE || type == NBD_CMD_TRIM ||
	       type == NBD_CMD_WRITE_ZEROES;
}

/* What the command code relies on once a request passes the checks. */
static void check_verdict(const struct nbd_export *exp,
			  const struct nbd_req_hdr *r,
			  const struct nbd_verdict *v)
{
	uint16_t allowed = NBD_CMD_FLAG_FUA;

	if (v->disc) {
		need(r->type == NBD_CMD_DISC && !v->error && !v->payload &&
		     !v->drop);
		return;
	}
	need(!v->drop || v->error);
	if (v->payload)
		need(r->type == NBD_CMD_WRITE && v->payload == r->len &&
		     r->len <= exp->max_block);
	else
		need(r->type != NBD_CMD_WRITE || !r->len || v->drop);
	if (v->error) {
		need(v->error == NBD_EINVAL || v->error == NBD_EPERM ||
		     v->error == NBD_ENOSPC);
		return;
	}
	need(r->type == NBD_CMD_READ || r->type == NBD_CMD_FLUSH ||
	     is_write(r->type));
	if (r->type == NBD_CMD_WRITE_ZEROES)
		allowed |= NBD_CMD_FLAG_NO_HOLE;
	need(!(r->flags & ~allowed));
	if (r->type == NBD_CMD_FLUSH)
		return;
	need(!is_write(r->type) || !(exp->tx_flags & NBD_FLAG_READ_ONLY));
	need(r->offset <= exp->size && r->len <= exp->size - r->offset);
	if (r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE)
		need(r->len <= exp->max_block);
}

static void transmission(const struct nbd_export *exp, const uint8_t *p,
			 size_t n)
{
	while (n >= sizeof(struct nbd_request)) {
		struct nbd_simple_reply rep;
		struct nbd_req_hdr r;
		struct nbd_verdict v;

		if (nbd_parse_request(p, &r) < 0) {
			need(nbd_get32(p) != NBD_REQUEST_MAGIC);
			return;			/* the server closes */
		}
		need(r.cookie == nbd_get64(p + 8) && r.len == nbd_get32(p + 24));
		p += sizeof(struct nbd_request);
		n -= sizeof(struct nbd_request);
		need(nbd_cmd_name(r.type) != NULL);
		nbd_check_request(exp, &r, &v);
		check_verdict(exp, &r, &v);
		if (v.disc)
			return;
		nbd_build_simple_reply(&rep, r.cookie, v.error);
		need(be32toh(rep.magic) == NBD_SIMPLE_REPLY_MAGIC &&
		     be64toh(rep.cookie) == r.cookie &&
		     be32toh(rep.error) == v.error);
		if (v.drop)
			return;
		if (v.payload > n)
			return;			/* the client stops mid-write */
		p += v.payload;
		n -= v.payload;
	}
}

/* The option phase: true if it reached transmission. */
static bool handshake(const struct nbd_export *exp, const uint8_t **pp,
		      size_t *np, struct nbd_buf *out)
{
	const uint8_t *p = *pp;
	size_t n = *np;
	bool no_zeroes = false, ok = false;

	if (n < 4)
		return false;
	if (nbd_parse_client_flags(p, &no_zeroes) < 0) {
		need(nbd_get32(p) & ~(NBD_FLAG_C_FIXED_NEWSTYLE |
				      NBD_FLAG_C_NO_ZEROES));
		return false;
	}
	p += 4;
	n -= 4;
	while (n >= sizeof(struct nbd_opt_hdr)) {
		uint32_t option, len;
		uint8_t *data;
		int res;

		if (nbd_parse_opt_hdr(p, &option, &len) < 0)
			break;
		need(option == nbd_get32(p + 8) && len == nbd_get32(p + 12));
		need(nbd_opt_name(option) != NULL);
		p += sizeof(struct nbd_opt_hdr);
		n -= sizeof(struct nbd_opt_hdr);
		nbd_buf_reset(out);
		if (len > NBD_MAX_OPT_DATA) {
			res = nbd_handle_oversized_option(option, len, out);
			check_opt(exp, no_zeroes, option, res, out);
			if (res != NBD_OPT_RES_CONTINUE || len > n)
				break;
			p += len;
			n -= len;
			continue;
		}
		if (len > n)
			break;			/* the client stops mid-option */
		/* An exact-size copy, as the server reads it: overreads show. */
		data = malloc(len ? len : 1);
		if (!data)
			break;
		memcpy(data, p, len);
		res = nbd_handle_option(exp, no_zeroes, option, data, len, out);
		free(data);
		check_opt(exp, no_zeroes, option, res, out);
		p += len;
		n -= len;
		if (res == NBD_OPT_RES_TRANSMIT) {
			ok = true;
			break;
		}
		if (res != NBD_OPT_RES_CONTINUE)
			break;
	}
	*pp = p;
	*np = n;
	return ok;
}

static void hostport(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), *host, *port;

	if (!s)
		return;
	memcpy(s, data, size);
	s[size] = '\0';
	if (nbd_split_hostport(s, &host, &port) == 0) {
		need(port > s && port <= s + size && *port);
		need(!host || (host >= s && host < port));
		need(!host || strlen(host) < (size_t)(port - host));
	}
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nbd_buf out = { 0 };
	struct nbd_export exp;
	struct nbd_greeting g;
	bool skip_handshake;

	if (size < 2)
		return 0;
	if (data[0] & CFG_HOSTPORT) {
		hostport(data + 1, size - 1);
		return 0;
	}
	setup_export(data[0], data[1], &exp);
	nbd_build_greeting(&g);
	need(be64toh(g.magic) == NBD_MAGIC &&
	     be64toh(g.ihaveopt) == NBD_IHAVEOPT);
	skip_handshake = data[0] & CFG_TRANSMIT;
	data += 2;
	size -= 2;
	if (!skip_handshake && !handshake(&exp, &data, &size, &out))
		goto out;
	transmission(&exp, data, size);
out:
	nbd_buf_free(&out);
	return 0;
}
