// SPDX-License-Identifier: LGPL-2.1-or-later
/* NBD message parsing and building for the tapdisk server (see nbd-proto.h). */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "nbd-proto.h"

int nbd_buf_put(struct nbd_buf *b, const void *p, size_t n)
{
	if (n > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 256;
		uint8_t *d;

		while (cap - b->len < n)
			cap *= 2;
		d = realloc(b->data, cap);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

void nbd_buf_reset(struct nbd_buf *b)
{
	b->len = 0;
}

void nbd_buf_free(struct nbd_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

uint16_t nbd_tx_flags(unsigned int features, bool readonly)
{
	/*
	 * The image layer emulates FUA (with a flush) and write-zeroes (with
	 * writes), so those are always offered; trim only where the driver
	 * can really discard. One process serves every connection from one
	 * image stack, so a flush covers all of them: multi-conn is safe.
	 */
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
		     NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_WRITE_ZEROES |
		     NBD_FLAG_CAN_MULTI_CONN;

	if (features & TD_FEAT_DISCARD)
		f |= NBD_FLAG_SEND_TRIM;
	if (readonly)
		f |= NBD_FLAG_READ_ONLY;
	return f;
}

void nbd_block_sizes(unsigned int align, uint32_t *min, uint32_t *pref,
		     uint32_t *max)
{
	uint32_t a = align ? align : 1;

	*min = a;
	*pref = a > NBD_PREFERRED_BLOCK ? a : NBD_PREFERRED_BLOCK;
	/* The maximum must be a multiple of the minimum. */
	*max = NBD_MAX_PAYLOAD - NBD_MAX_PAYLOAD % a;
	if (*max < *pref)
		*max = *pref;
}

void nbd_build_greeting(struct nbd_greeting *g)
{
	g->magic = htobe64(NBD_MAGIC);
	g->ihaveopt = htobe64(NBD_IHAVEOPT);
	g->hs_flags = htobe16(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
}

int nbd_parse_client_flags(const void *buf, bool *no_zeroes)
{
	uint32_t f = nbd_get32(buf);

	if (f & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES))
		return -EINVAL;
	*no_zeroes = f & NBD_FLAG_C_NO_ZEROES;
	return 0;
}

int nbd_parse_opt_hdr(const void *buf, uint32_t *option, uint32_t *len)
{
	struct nbd_opt_hdr h;

	memcpy(&h, buf, sizeof(h));
	if (be64toh(h.magic) != NBD_IHAVEOPT)
		return -EBADMSG;
	*option = be32toh(h.option);
	*len = be32toh(h.len);
	return 0;
}

int nbd_put_opt_reply(struct nbd_buf *out, uint32_t option, uint32_t type,
		      const void *data, uint32_t len)
{
	struct nbd_opt_reply r = {
		.magic = htobe64(NBD_REP_MAGIC),
		.option = htobe32(option),
		.type = htobe32(type),
		.len = htobe32(len),
	};

	if (nbd_buf_put(out, &r, sizeof(r)) < 0 ||
	    nbd_buf_put(out, data, len) < 0)
		return -ENOMEM;
	return 0;
}

static int put_error(struct nbd_buf *out, uint32_t option, uint32_t type,
		     const char *msg)
{
	return nbd_put_opt_reply(out, option, type, msg, strlen(msg));
}

static bool name_matches(const struct nbd_export *exp, const uint8_t *name,
			 uint32_t len)
{
	return len == 0 ||
	       (len == strlen(exp->name) && !memcmp(name, exp->name, len));
}

static int put_info_string(struct nbd_buf *out, uint32_t option,
			   uint16_t info, const char *s)
{
	uint8_t buf[2 + NBD_MAX_STRING];
	size_t n = strlen(s);

	if (n > NBD_MAX_STRING)
		n = NBD_MAX_STRING;
	nbd_put16(buf, info);
	memcpy(buf + 2, s, n);
	return nbd_put_opt_reply(out, option, NBD_REP_INFO, buf, 2 + n);
}

/* NBD_OPT_INFO and NBD_OPT_GO: name, then a list of requested infos. */
static int handle_info(const struct nbd_export *exp, uint32_t option,
		       const uint8_t *data, uint32_t len, struct nbd_buf *out)
{
	struct nbd_info_export ie;
	struct nbd_info_block_size ib;
	bool want_name = false, want_desc = false;
	uint32_t namelen;
	uint16_t nreq, i;
	int err;

	if (len < 6)
		goto invalid;
	namelen = nbd_get32(data);
	if (namelen > len - 6)
		goto invalid;
	nreq = nbd_get16(data + 4 + namelen);
	if ((uint64_t)len != 6ull + namelen + 2ull * nreq)
		goto invalid;
	if (!name_matches(exp, data + 4, namelen))
		return put_error(out, option, NBD_REP_ERR_UNKNOWN,
				 "no such export") < 0 ? -ENOMEM :
			NBD_OPT_RES_CONTINUE;
	for (i = 0; i < nreq; i++) {
		uint16_t t = nbd_get16(data + 6 + namelen + 2 * (size_t)i);

		want_name |= t == NBD_INFO_NAME;
		want_desc |= t == NBD_INFO_DESCRIPTION;
	}

	ie.info = htobe16(NBD_INFO_EXPORT);
	ie.size = htobe64(exp->size);
	ie.tx_flags = htobe16(exp->tx_flags);
	err = nbd_put_opt_reply(out, option, NBD_REP_INFO, &ie, sizeof(ie));
	if (!err && want_name)
		err = put_info_string(out, option, NBD_INFO_NAME, exp->name);
	if (!err && want_desc && exp->description)
		err = put_info_string(out, option, NBD_INFO_DESCRIPTION,
				      exp->description);
	/*
	 * Block sizes go out whether or not the client asked: they are a
	 * hint every client understands, and O_DIRECT images need them.
	 */
	ib.info = htobe16(NBD_INFO_BLOCK_SIZE);
	ib.minimum = htobe32(exp->min_block);
	ib.preferred = htobe32(exp->pref_block);
	ib.maximum = htobe32(exp->max_block);
	if (!err)
		err = nbd_put_opt_reply(out, option, NBD_REP_INFO, &ib,
					sizeof(ib));
	if (!err)
		err = nbd_put_opt_reply(out, option, NBD_REP_ACK, NULL, 0);
	if (err)
		return err;
	return option == NBD_OPT_GO ? NBD_OPT_RES_TRANSMIT :
				      NBD_OPT_RES_CONTINUE;
invalid:
	return put_error(out, option, NBD_REP_ERR_INVALID,
			 "malformed NBD_OPT_INFO/GO data") < 0 ? -ENOMEM :
		NBD_OPT_RES_CONTINUE;
}

static int handle_list(const struct nbd_export *exp, uint32_t len,
		       struct nbd_buf *out)
{
	size_t n = strlen(exp->name);
	uint8_t buf[4 + NBD_MAX_STRING];

	if (len)
		return put_error(out, NBD_OPT_LIST, NBD_REP_ERR_INVALID,
				 "NBD_OPT_LIST takes no data") < 0 ? -ENOMEM :
			NBD_OPT_RES_CONTINUE;
	if (n > NBD_MAX_STRING)
		n = NBD_MAX_STRING;
	nbd_put32(buf, n);
	memcpy(buf + 4, exp->name, n);
	if (nbd_put_opt_reply(out, NBD_OPT_LIST, NBD_REP_SERVER, buf, 4 + n) ||
	    nbd_put_opt_reply(out, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0))
		return -ENOMEM;
	return NBD_OPT_RES_CONTINUE;
}

int nbd_handle_option(const struct nbd_export *exp, bool no_zeroes,
		      uint32_t option, const uint8_t *data, uint32_t len,
		      struct nbd_buf *out)
{
	static const uint8_t zeroes[NBD_ZEROES_LEN];
	struct nbd_export_name_reply er;

	switch (option) {
	case NBD_OPT_EXPORT_NAME:
		/* No way to report an error: the spec says hang up. */
		if (!name_matches(exp, data, len))
			return NBD_OPT_RES_CLOSE;
		er.size = htobe64(exp->size);
		er.tx_flags = htobe16(exp->tx_flags);
		if (nbd_buf_put(out, &er, sizeof(er)) ||
		    (!no_zeroes && nbd_buf_put(out, zeroes, sizeof(zeroes))))
			return -ENOMEM;
		return NBD_OPT_RES_TRANSMIT;
	case NBD_OPT_ABORT:
		if (nbd_put_opt_reply(out, option, NBD_REP_ACK, NULL, 0))
			return -ENOMEM;
		return NBD_OPT_RES_CLOSE;
	case NBD_OPT_LIST:
		return handle_list(exp, len, out);
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		return handle_info(exp, option, data, len, out);
	default:
		/* STARTTLS, STRUCTURED_REPLY, meta contexts, ... */
		if (put_error(out, option, NBD_REP_ERR_UNSUP,
			      "option not supported by tapdisk"))
			return -ENOMEM;
		return NBD_OPT_RES_CONTINUE;
	}
}

int nbd_handle_oversized_option(uint32_t option, uint32_t len,
				struct nbd_buf *out)
{
	(void)len;
	if (option == NBD_OPT_EXPORT_NAME)
		return NBD_OPT_RES_CLOSE;
	if (put_error(out, option, NBD_REP_ERR_TOO_BIG, "option data too long"))
		return -ENOMEM;
	return NBD_OPT_RES_CONTINUE;
}

int nbd_parse_request(const void *buf, struct nbd_req_hdr *r)
{
	struct nbd_request w;

	memcpy(&w, buf, sizeof(w));
	if (be32toh(w.magic) != NBD_REQUEST_MAGIC)
		return -EBADMSG;
	r->flags = be16toh(w.flags);
	r->type = be16toh(w.type);
	r->cookie = be64toh(w.cookie);
	r->offset = be64toh(w.offset);
	r->len = be32toh(w.len);
	return 0;
}

/* Command flags each command accepts (FUA is valid on all of them). */
static uint16_t allowed_flags(uint16_t type)
{
	switch (type) {
	case NBD_CMD_WRITE_ZEROES:
		return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE;
	default:
		return NBD_CMD_FLAG_FUA;
	}
}

void nbd_check_request(const struct nbd_export *exp,
		       const struct nbd_req_hdr *r, struct nbd_verdict *v)
{
	bool ro = exp->tx_flags & NBD_FLAG_READ_ONLY;
	bool writes = false;

	memset(v, 0, sizeof(*v));
	switch (r->type) {
	case NBD_CMD_DISC:
		v->disc = true;
		return;
	case NBD_CMD_WRITE:
		/*
		 * The payload follows whatever we think of the request: skip
		 * it to stay in step, unless it is too large to bother.
		 */
		v->payload = r->len;
		if (r->len > exp->max_block) {
			v->error = NBD_EINVAL;
			v->payload = 0;
			v->drop = true;
			return;
		}
		writes = true;
		break;
	case NBD_CMD_READ:
		if (r->len > exp->max_block) {
			v->error = NBD_EINVAL;
			return;
		}
		break;
	case NBD_CMD_TRIM:
	case NBD_CMD_WRITE_ZEROES:
		writes = true;
		break;
	case NBD_CMD_FLUSH:
		/* Offset and length are reserved (zero); not worth a fight. */
		if (r->flags & ~allowed_flags(r->type))
			v->error = NBD_EINVAL;
		return;
	default:
		/* Unknown, or CACHE / BLOCK_STATUS, which we do not offer. */
		v->error = NBD_EINVAL;
		return;
	}

	if (r->flags & ~allowed_flags(r->type))
		v->error = NBD_EINVAL;
	else if (writes && ro)
		v->error = NBD_EPERM;
	else if (r->offset > exp->size || r->len > exp->size - r->offset)
		v->error = writes && r->type != NBD_CMD_TRIM ? NBD_ENOSPC :
							       NBD_EINVAL;
}

uint32_t nbd_errno_to_wire(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		return NBD_SUCCESS;
	case EPERM:
	case EACCES:
	case EROFS:
		return NBD_EPERM;
	case ENOMEM:
		return NBD_ENOMEM;
	case EINVAL:
		return NBD_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBD_ENOSPC;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case EOPNOTSUPP:
		return NBD_ENOTSUP;
	case ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default:
		return NBD_EIO;
	}
}

void nbd_build_simple_reply(struct nbd_simple_reply *rep, uint64_t cookie,
			    uint32_t error)
{
	rep->magic = htobe32(NBD_SIMPLE_REPLY_MAGIC);
	rep->error = htobe32(error);
	rep->cookie = htobe64(cookie);
}

int nbd_split_hostport(char *s, char **host, char **port)
{
	char *colon;

	if (s[0] == '[') {
		char *end = strchr(s, ']');

		if (!end || end[1] != ':')
			return -EINVAL;
		*end = '\0';
		*host = s + 1;
		*port = end + 2;
	} else {
		colon = strrchr(s, ':');
		if (!colon || strchr(s, ':') != colon)
			return -EINVAL;
		*colon = '\0';
		*host = s[0] ? s : NULL;
		*port = colon + 1;
	}
	return **port ? 0 : -EINVAL;
}

const char *nbd_cmd_name(uint16_t type)
{
	static const char *const names[] = {
		[NBD_CMD_READ] = "NBD_CMD_READ",
		[NBD_CMD_WRITE] = "NBD_CMD_WRITE",
		[NBD_CMD_DISC] = "NBD_CMD_DISC",
		[NBD_CMD_FLUSH] = "NBD_CMD_FLUSH",
		[NBD_CMD_TRIM] = "NBD_CMD_TRIM",
		[NBD_CMD_CACHE] = "NBD_CMD_CACHE",
		[NBD_CMD_WRITE_ZEROES] = "NBD_CMD_WRITE_ZEROES",
		[NBD_CMD_BLOCK_STATUS] = "NBD_CMD_BLOCK_STATUS",
	};

	return type < sizeof(names) / sizeof(names[0]) ? names[type] :
							 "unknown";
}

const char *nbd_opt_name(uint32_t option)
{
	static const char *const names[] = {
		[NBD_OPT_EXPORT_NAME] = "NBD_OPT_EXPORT_NAME",
		[NBD_OPT_ABORT] = "NBD_OPT_ABORT",
		[NBD_OPT_LIST] = "NBD_OPT_LIST",
		[NBD_OPT_PEEK_EXPORT] = "NBD_OPT_PEEK_EXPORT",
		[NBD_OPT_STARTTLS] = "NBD_OPT_STARTTLS",
		[NBD_OPT_INFO] = "NBD_OPT_INFO",
		[NBD_OPT_GO] = "NBD_OPT_GO",
		[NBD_OPT_STRUCTURED_REPLY] = "NBD_OPT_STRUCTURED_REPLY",
		[NBD_OPT_LIST_META_CONTEXT] = "NBD_OPT_LIST_META_CONTEXT",
		[NBD_OPT_SET_META_CONTEXT] = "NBD_OPT_SET_META_CONTEXT",
		[NBD_OPT_EXTENDED_HEADERS] = "NBD_OPT_EXTENDED_HEADERS",
	};

	return option < sizeof(names) / sizeof(names[0]) && names[option] ?
		       names[option] : "unknown";
}
