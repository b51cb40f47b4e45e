// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Unit tests for tapdisk/nbd-proto.c: the handshake's option handling
 * (including malformed option data), request header parsing and checks
 * (ranges, overflow, flags, read-only, oversized payloads), flags and block
 * sizes advertised, and the errno mapping. No sockets: bytes in, bytes out.
 */
#include <endian.h>
#include <errno.h>

#include "image.h"
#include "nbd-proto.h"
#include "util.h"

#define SIZE	(16ull << 30)

static const struct nbd_export export = {
	.name = "disk0",
	.size = SIZE,
	.tx_flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH,
	.min_block = 512,
	.pref_block = 4096,
	.max_block = NBD_MAX_PAYLOAD,
};

static const struct nbd_export ro_export = {
	.name = "disk0",
	.size = SIZE,
	.tx_flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY,
	.min_block = 1,
	.pref_block = 4096,
	.max_block = NBD_MAX_PAYLOAD,
};

/* One option reply found in an output buffer. */
struct rep {
	uint32_t option, type, len;
	const uint8_t *data;
};

/* Split @b into option replies; returns how many (at most @max). */
static int parse_replies(const struct nbd_buf *b, struct rep *r, int max)
{
	size_t off = 0;
	int n = 0;

	while (off < b->len) {
		struct nbd_opt_reply h;

		assert_true(b->len - off >= sizeof(h));
		memcpy(&h, b->data + off, sizeof(h));
		assert_true(be64toh(h.magic) == NBD_REP_MAGIC);
		assert_true(n < max);
		r[n].option = be32toh(h.option);
		r[n].type = be32toh(h.type);
		r[n].len = be32toh(h.len);
		off += sizeof(h);
		assert_true(b->len - off >= r[n].len);
		r[n].data = b->data + off;
		off += r[n].len;
		n++;
	}
	return n;
}

/* Option data of NBD_OPT_INFO/GO: name, then @n info requests. */
static size_t info_data(uint8_t *buf, const char *name,
			const uint16_t *infos, uint16_t n)
{
	uint32_t nl = htobe32(strlen(name));
	uint16_t nn = htobe16(n);
	size_t off = 0;

	memcpy(buf, &nl, 4);
	off += 4;
	memcpy(buf + off, name, strlen(name));
	off += strlen(name);
	memcpy(buf + off, &nn, 2);
	off += 2;
	for (uint16_t i = 0; i < n; i++) {
		uint16_t t = htobe16(infos[i]);

		memcpy(buf + off, &t, 2);
		off += 2;
	}
	return off;
}

static void test_greeting(void **state)
{
	struct nbd_greeting g = { 0 };
	const uint8_t *p = (const uint8_t *)&g;

	(void)state;
	nbd_build_greeting(&g);
	assert_memory_equal(p, "NBDMAGICIHAVEOPT", 16);
	assert_int_equal(nbd_get16(p + 16),
			 NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
}

static void test_client_flags(void **state)
{
	static const struct { uint32_t flags; int ret; bool nz; } cases[] = {
		{ 0, 0, false },
		{ NBD_FLAG_C_FIXED_NEWSTYLE, 0, false },
		{ NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES, 0, true },
		{ NBD_FLAG_C_NO_ZEROES, 0, true },
		{ 1u << 2, -EINVAL, false },
		{ 0x80000001u, -EINVAL, false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t be = htobe32(cases[i].flags);
		bool nz = !cases[i].nz;

		assert_int_equal(nbd_parse_client_flags(&be, &nz), cases[i].ret);
		if (!cases[i].ret)
			assert_int_equal(nz, cases[i].nz);
	}
}

static void test_opt_hdr(void **state)
{
	struct nbd_opt_hdr h = {
		.magic = htobe64(NBD_IHAVEOPT),
		.option = htobe32(NBD_OPT_GO),
		.len = htobe32(1234),
	};
	uint32_t opt = 0, len = 0;

	(void)state;
	assert_int_equal(nbd_parse_opt_hdr(&h, &opt, &len), 0);
	assert_int_equal(opt, NBD_OPT_GO);
	assert_int_equal(len, 1234);
	h.magic = htobe64(NBD_MAGIC);
	assert_int_equal(nbd_parse_opt_hdr(&h, &opt, &len), -EBADMSG);
}

static void test_export_name(void **state)
{
	struct nbd_buf out = { 0 };

	(void)state;
	/* The right name, zeroes wanted: size, flags, 124 zeroes. */
	assert_int_equal(nbd_handle_option(&export, false, NBD_OPT_EXPORT_NAME,
					   (const uint8_t *)"disk0", 5, &out),
			 NBD_OPT_RES_TRANSMIT);
	assert_int_equal(out.len, 10 + NBD_ZEROES_LEN);
	assert_true(nbd_get64(out.data) == SIZE);
	assert_int_equal(nbd_get16(out.data + 8), export.tx_flags);
	for (size_t i = 10; i < out.len; i++)
		assert_int_equal(out.data[i], 0);

	/* The empty name is the default export; NO_ZEROES is honoured. */
	nbd_buf_reset(&out);
	assert_int_equal(nbd_handle_option(&export, true, NBD_OPT_EXPORT_NAME,
					   NULL, 0, &out),
			 NBD_OPT_RES_TRANSMIT);
	assert_int_equal(out.len, 10);

	/* Unknown names and prefixes: no way to say so but hanging up. */
	nbd_buf_reset(&out);
	assert_int_equal(nbd_handle_option(&export, true, NBD_OPT_EXPORT_NAME,
					   (const uint8_t *)"disk", 4, &out),
			 NBD_OPT_RES_CLOSE);
	assert_int_equal(nbd_handle_option(&export, true, NBD_OPT_EXPORT_NAME,
					   (const uint8_t *)"disk00", 6, &out),
			 NBD_OPT_RES_CLOSE);
	assert_int_equal(out.len, 0);
	nbd_buf_free(&out);
}

static void test_abort(void **state)
{
	struct nbd_buf out = { 0 };
	struct rep r[4];

	(void)state;
	assert_int_equal(nbd_handle_option(&export, false, NBD_OPT_ABORT, NULL,
					   0, &out),
			 NBD_OPT_RES_CLOSE);
	assert_int_equal(parse_replies(&out, r, 4), 1);
	assert_int_equal(r[0].option, NBD_OPT_ABORT);
	assert_int_equal(r[0].type, NBD_REP_ACK);
	assert_int_equal(r[0].len, 0);
	nbd_buf_free(&out);
}

static void test_list(void **state)
{
	struct nbd_buf out = { 0 };
	struct rep r[4];

	(void)state;
	assert_int_equal(nbd_handle_option(&export, false, NBD_OPT_LIST, NULL,
					   0, &out),
			 NBD_OPT_RES_CONTINUE);
	assert_int_equal(parse_replies(&out, r, 4), 2);
	assert_int_equal(r[0].type, NBD_REP_SERVER);
	assert_int_equal(r[0].len, 4 + 5);
	assert_int_equal(nbd_get32(r[0].data), 5);
	assert_memory_equal(r[0].data + 4, "disk0", 5);
	assert_int_equal(r[1].type, NBD_REP_ACK);

	/* NBD_OPT_LIST takes no data. */
	nbd_buf_reset(&out);
	assert_int_equal(nbd_handle_option(&export, false, NBD_OPT_LIST,
					   (const uint8_t *)"x", 1, &out),
			 NBD_OPT_RES_CONTINUE);
	assert_int_equal(parse_replies(&out, r, 4), 1);
	assert_int_equal(r[0].type, NBD_REP_ERR_INVALID);
	nbd_buf_free(&out);
}

static void check_go_replies(const struct nbd_buf *out, uint32_t opt,
			     const struct nbd_export *exp, bool want_name)
{
	struct rep r[8];
	int n = parse_replies(out, r, 8), i = 0;

	assert_int_equal(n, want_name ? 4 : 3);
	for (int k = 0; k < n; k++)
		assert_int_equal(r[k].option, opt);
	assert_int_equal(r[i].type, NBD_REP_INFO);
	assert_int_equal(r[i].len, 12);
	assert_int_equal(nbd_get16(r[i].data), NBD_INFO_EXPORT);
	assert_true(nbd_get64(r[i].data + 2) == exp->size);
	assert_int_equal(nbd_get16(r[i].data + 10), exp->tx_flags);
	i++;
	if (want_name) {
		assert_int_equal(r[i].type, NBD_REP_INFO);
		assert_int_equal(nbd_get16(r[i].data), NBD_INFO_NAME);
		assert_int_equal(r[i].len, 2 + strlen(exp->name));
		assert_memory_equal(r[i].data + 2, exp->name, strlen(exp->name));
		i++;
	}
	assert_int_equal(r[i].type, NBD_REP_INFO);
	assert_int_equal(r[i].len, 14);
	assert_int_equal(nbd_get16(r[i].data), NBD_INFO_BLOCK_SIZE);
	assert_int_equal(nbd_get32(r[i].data + 2), exp->min_block);
	assert_int_equal(nbd_get32(r[i].data + 6), exp->pref_block);
	assert_int_equal(nbd_get32(r[i].data + 10), exp->max_block);
	i++;
	assert_int_equal(r[i].type, NBD_REP_ACK);
	assert_int_equal(r[i].len, 0);
}

static void test_go_info(void **state)
{
	static const uint16_t want[] = { NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE,
					 NBD_INFO_DESCRIPTION, 999 };
	struct nbd_buf out = { 0 };
	uint8_t data[64];
	size_t n;

	(void)state;
	n = info_data(data, "disk0", NULL, 0);
	assert_int_equal(nbd_handle_option(&export, false, NBD_OPT_GO, data, n,
					   &out),
			 NBD_OPT_RES_TRANSMIT);
	check_go_replies(&out, NBD_OPT_GO, &export, false);

	/* INFO answers the same but stays in negotiation. */
	nbd_buf_reset(&out);
	assert_int_equal(nbd_handle_option(&export, false, NBD_OPT_INFO, data,
					   n, &out),
			 NBD_OPT_RES_CONTINUE);
	check_go_replies(&out, NBD_OPT_INFO, &export, false);

	/* Empty name = the default export; unknown info types are ignored. */
	nbd_buf_reset(&out);
	n = info_data(data, "", want, 4);
	assert_int_equal(nbd_handle_option(&ro_export, false, NBD_OPT_GO, data,
					   n, &out),
			 NBD_OPT_RES_TRANSMIT);
	check_go_replies(&out, NBD_OPT_GO, &ro_export, true);
	nbd_buf_free(&out);
}

static void expect_one_error(uint32_t opt, const uint8_t *data, uint32_t len,
			     int res, uint32_t type)
{
	struct nbd_buf out = { 0 };
	struct rep r[4];

	assert_int_equal(nbd_handle_option(&export, false, opt, data, len, &out),
			 res);
	assert_int_equal(parse_replies(&out, r, 4), 1);
	assert_int_equal(r[0].option, opt);
	assert_int_equal(r[0].type, type);
	assert_true(NBD_REP_IS_ERR(r[0].type));
	nbd_buf_free(&out);
}

static void test_go_errors(void **state)
{
	uint8_t data[64];
	uint32_t be;
	size_t n;

	(void)state;
	/* Unknown export. */
	n = info_data(data, "other", NULL, 0);
	expect_one_error(NBD_OPT_GO, data, n, NBD_OPT_RES_CONTINUE,
			 NBD_REP_ERR_UNKNOWN);
	expect_one_error(NBD_OPT_INFO, data, n, NBD_OPT_RES_CONTINUE,
			 NBD_REP_ERR_UNKNOWN);

	/* Too short for the name length and count. */
	expect_one_error(NBD_OPT_GO, data, 0, NBD_OPT_RES_CONTINUE,
			 NBD_REP_ERR_INVALID);
	expect_one_error(NBD_OPT_GO, data, 5, NBD_OPT_RES_CONTINUE,
			 NBD_REP_ERR_INVALID);

	/* Name length past the data. */
	n = info_data(data, "disk0", NULL, 0);
	be = htobe32(1000);
	memcpy(data, &be, 4);
	expect_one_error(NBD_OPT_GO, data, n, NBD_OPT_RES_CONTINUE,
			 NBD_REP_ERR_INVALID);
	be = htobe32(0xffffffffu);
	memcpy(data, &be, 4);
	expect_one_error(NBD_OPT_GO, data, n, NBD_OPT_RES_CONTINUE,
			 NBD_REP_ERR_INVALID);

	/* Info request count disagreeing with the length, both ways. */
	n = info_data(data, "disk0", (const uint16_t[]){ 1, 3 }, 2);
	expect_one_error(NBD_OPT_GO, data, n - 1, NBD_OPT_RES_CONTINUE,
			 NBD_REP_ERR_INVALID);
	expect_one_error(NBD_OPT_GO, data, n - 2, NBD_OPT_RES_CONTINUE,
			 NBD_REP_ERR_INVALID);
	data[n] = 0;
	data[n + 1] = 0;
	expect_one_error(NBD_OPT_GO, data, n + 2, NBD_OPT_RES_CONTINUE,
			 NBD_REP_ERR_INVALID);
}

static void test_unsupported_options(void **state)
{
	static const uint32_t opts[] = {
		NBD_OPT_PEEK_EXPORT, NBD_OPT_STARTTLS, NBD_OPT_STRUCTURED_REPLY,
		NBD_OPT_LIST_META_CONTEXT, NBD_OPT_SET_META_CONTEXT,
		NBD_OPT_EXTENDED_HEADERS, 0, 12, 0x7fffffff, 0xffffffff,
	};

	(void)state;
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		expect_one_error(opts[i], (const uint8_t *)"abc", 3,
				 NBD_OPT_RES_CONTINUE, NBD_REP_ERR_UNSUP);
}

static void test_oversized_option(void **state)
{
	struct nbd_buf out = { 0 };
	struct rep r[2];

	(void)state;
	assert_int_equal(nbd_handle_oversized_option(NBD_OPT_EXPORT_NAME,
						     1u << 20, &out),
			 NBD_OPT_RES_CLOSE);
	assert_int_equal(out.len, 0);
	assert_int_equal(nbd_handle_oversized_option(NBD_OPT_GO, 1u << 20, &out),
			 NBD_OPT_RES_CONTINUE);
	assert_int_equal(parse_replies(&out, r, 2), 1);
	assert_int_equal(r[0].option, NBD_OPT_GO);
	assert_int_equal(r[0].type, NBD_REP_ERR_TOO_BIG);
	nbd_buf_free(&out);
}

static void make_request(uint8_t *buf, uint32_t magic, uint16_t flags,
			 uint16_t type, uint64_t cookie, uint64_t off,
			 uint32_t len)
{
	struct nbd_request r = {
		.magic = htobe32(magic),
		.flags = htobe16(flags),
		.type = htobe16(type),
		.cookie = htobe64(cookie),
		.offset = htobe64(off),
		.len = htobe32(len),
	};

	memcpy(buf, &r, sizeof(r));
}

static void test_parse_request(void **state)
{
	uint8_t buf[sizeof(struct nbd_request)];
	struct nbd_req_hdr h;

	(void)state;
	make_request(buf, NBD_REQUEST_MAGIC, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE,
		     0x0102030405060708ull, 0x1122334455667788ull, 0xdeadbeef);
	assert_int_equal(nbd_parse_request(buf, &h), 0);
	assert_int_equal(h.flags, NBD_CMD_FLAG_FUA);
	assert_int_equal(h.type, NBD_CMD_WRITE);
	assert_true(h.cookie == 0x0102030405060708ull);
	assert_true(h.offset == 0x1122334455667788ull);
	assert_true(h.len == 0xdeadbeefu);

	make_request(buf, NBD_SIMPLE_REPLY_MAGIC, 0, NBD_CMD_READ, 1, 0, 512);
	assert_int_equal(nbd_parse_request(buf, &h), -EBADMSG);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(nbd_parse_request(buf, &h), -EBADMSG);
}

struct check_case {
	const char *what;
	const struct nbd_export *exp;
	uint16_t type, flags;
	uint64_t off;
	uint32_t len;
	uint32_t error, payload;
	bool disc, drop;
};

static void test_check_request(void **state)
{
	const struct nbd_export *rw = &export, *ro = &ro_export;
	const uint32_t max = NBD_MAX_PAYLOAD;
	const struct check_case cases[] = {
		{ "read", rw, NBD_CMD_READ, 0, 0, 4096, 0, 0, false, false },
		{ "read to the end", rw, NBD_CMD_READ, 0, SIZE - 512, 512, 0, 0, false, false },
		{ "read at the end, empty", rw, NBD_CMD_READ, 0, SIZE, 0, 0, 0, false, false },
		{ "read past the end", rw, NBD_CMD_READ, 0, SIZE - 512, 1024, NBD_EINVAL, 0, false, false },
		{ "read beyond", rw, NBD_CMD_READ, 0, SIZE + 512, 512, NBD_EINVAL, 0, false, false },
		{ "read, offset wraps", rw, NBD_CMD_READ, 0, UINT64_MAX - 100, 4096, NBD_EINVAL, 0, false, false },
		{ "read, max length", rw, NBD_CMD_READ, 0, 0, max, 0, 0, false, false },
		{ "read, too long", rw, NBD_CMD_READ, 0, 0, max + 1, NBD_EINVAL, 0, false, false },
		{ "read, FUA ignored", rw, NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 512, 0, 0, false, false },
		{ "read, DF without structured replies", rw, NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, NBD_EINVAL, 0, false, false },
		{ "read-only read", ro, NBD_CMD_READ, 0, 0, 512, 0, 0, false, false },
		{ "write", rw, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 4096, 4096, 0, 4096, false, false },
		{ "write past the end", rw, NBD_CMD_WRITE, 0, SIZE - 512, 1024, NBD_ENOSPC, 1024, false, false },
		{ "write, offset wraps", rw, NBD_CMD_WRITE, 0, UINT64_MAX, 1, NBD_ENOSPC, 1, false, false },
		{ "write, too long", rw, NBD_CMD_WRITE, 0, 0, max + 1, NBD_EINVAL, 0, false, true },
		{ "write, 4 GiB", rw, NBD_CMD_WRITE, 0, 0, UINT32_MAX, NBD_EINVAL, 0, false, true },
		{ "write, NO_HOLE", rw, NBD_CMD_WRITE, NBD_CMD_FLAG_NO_HOLE, 0, 512, NBD_EINVAL, 512, false, false },
		{ "read-only write", ro, NBD_CMD_WRITE, 0, 0, 512, NBD_EPERM, 512, false, false },
		{ "read-only write past the end", ro, NBD_CMD_WRITE, 0, SIZE, 512, NBD_EPERM, 512, false, false },
		{ "trim", rw, NBD_CMD_TRIM, NBD_CMD_FLAG_FUA, 0, 1u << 29, 0, 0, false, false },
		{ "trim past the end", rw, NBD_CMD_TRIM, 0, SIZE - 1, 2, NBD_EINVAL, 0, false, false },
		{ "read-only trim", ro, NBD_CMD_TRIM, 0, 0, 512, NBD_EPERM, 0, false, false },
		{ "zeroes, huge", rw, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 0, UINT32_MAX, 0, 0, false, false },
		{ "zeroes past the end", rw, NBD_CMD_WRITE_ZEROES, 0, SIZE, 1, NBD_ENOSPC, 0, false, false },
		{ "zeroes, FAST_ZERO not offered", rw, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 0, 512, NBD_EINVAL, 0, false, false },
		{ "read-only zeroes", ro, NBD_CMD_WRITE_ZEROES, 0, 0, 512, NBD_EPERM, 0, false, false },
		{ "flush", rw, NBD_CMD_FLUSH, 0, 0, 0, 0, 0, false, false },
		{ "flush, odd flags", rw, NBD_CMD_FLUSH, 0x8000, 0, 0, NBD_EINVAL, 0, false, false },
		{ "read-only flush", ro, NBD_CMD_FLUSH, 0, 0, 0, 0, 0, false, false },
		{ "disc", rw, NBD_CMD_DISC, 0, 0, 0, 0, 0, true, false },
		{ "cache", rw, NBD_CMD_CACHE, 0, 0, 512, NBD_EINVAL, 0, false, false },
		{ "block status", rw, NBD_CMD_BLOCK_STATUS, 0, 0, 512, NBD_EINVAL, 0, false, false },
		{ "unknown", rw, 99, 0, 0, 512, NBD_EINVAL, 0, false, false },
		{ "unknown, high", rw, 0xffff, 0xffff, UINT64_MAX, UINT32_MAX, NBD_EINVAL, 0, false, false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct check_case *c = &cases[i];
		struct nbd_req_hdr h = { .flags = c->flags, .type = c->type,
					 .cookie = i, .offset = c->off,
					 .len = c->len };
		struct nbd_verdict v;

		nbd_check_request(c->exp, &h, &v);
		if (v.error != c->error || v.payload != c->payload ||
		    v.disc != c->disc || v.drop != c->drop)
			fail_msg("%s: got error %u payload %u disc %d drop %d",
				 c->what, v.error, v.payload, v.disc, v.drop);
	}
}

static void test_errno_mapping(void **state)
{
	static const struct { int err; uint32_t wire; } map[] = {
		{ 0, NBD_SUCCESS },
		{ EPERM, NBD_EPERM }, { EACCES, NBD_EPERM }, { EROFS, NBD_EPERM },
		{ EIO, NBD_EIO }, { ENOMEM, NBD_ENOMEM }, { EINVAL, NBD_EINVAL },
		{ ENOSPC, NBD_ENOSPC }, { EDQUOT, NBD_ENOSPC },
		{ EFBIG, NBD_ENOSPC }, { EOVERFLOW, NBD_EOVERFLOW },
		{ EOPNOTSUPP, NBD_ENOTSUP }, { ESHUTDOWN, NBD_ESHUTDOWN },
		{ ENODEV, NBD_EIO }, { EBADF, NBD_EIO }, { ETIMEDOUT, NBD_EIO },
		{ 12345, NBD_EIO },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		assert_int_equal(nbd_errno_to_wire(map[i].err), map[i].wire);
		assert_int_equal(nbd_errno_to_wire(-map[i].err), map[i].wire);
	}
}

static void test_tx_flags(void **state)
{
	const uint16_t base = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
			      NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_WRITE_ZEROES |
			      NBD_FLAG_CAN_MULTI_CONN;

	(void)state;
	assert_int_equal(nbd_tx_flags(0, false), base);
	assert_int_equal(nbd_tx_flags(TD_FEAT_DISCARD, false),
			 base | NBD_FLAG_SEND_TRIM);
	assert_int_equal(nbd_tx_flags(TD_FEAT_FLUSH | TD_FEAT_FUA |
				      TD_FEAT_WRITE_ZEROES, true),
			 base | NBD_FLAG_READ_ONLY);
	/* Never offered: we have no structured replies, cache or resize. */
	assert_false(nbd_tx_flags(~0u, false) &
		     (NBD_FLAG_SEND_DF | NBD_FLAG_SEND_CACHE |
		      NBD_FLAG_SEND_RESIZE | NBD_FLAG_SEND_FAST_ZERO |
		      NBD_FLAG_ROTATIONAL));
}

static void test_block_sizes(void **state)
{
	static const struct { unsigned int align; uint32_t min, pref, max; } c[] = {
		{ 0, 1, 4096, NBD_MAX_PAYLOAD },
		{ 1, 1, 4096, NBD_MAX_PAYLOAD },
		{ 512, 512, 4096, NBD_MAX_PAYLOAD },
		{ 4096, 4096, 4096, NBD_MAX_PAYLOAD },
		{ 65536, 65536, 65536, NBD_MAX_PAYLOAD },
		{ 3000, 3000, 4096, NBD_MAX_PAYLOAD - NBD_MAX_PAYLOAD % 3000 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		uint32_t min, pref, max;

		nbd_block_sizes(c[i].align, &min, &pref, &max);
		assert_int_equal(min, c[i].min);
		assert_int_equal(pref, c[i].pref);
		assert_int_equal(max, c[i].max);
		assert_int_equal(max % min, 0);
	}
}

static void test_simple_reply(void **state)
{
	struct nbd_simple_reply r = { 0 };
	const uint8_t *p = (const uint8_t *)&r;

	(void)state;
	nbd_build_simple_reply(&r, 0xa1b2c3d4e5f60718ull, NBD_ENOSPC);
	assert_int_equal(nbd_get32(p), NBD_SIMPLE_REPLY_MAGIC);
	assert_int_equal(nbd_get32(p + 4), NBD_ENOSPC);
	assert_true(nbd_get64(p + 8) == 0xa1b2c3d4e5f60718ull);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(nbd_cmd_name(NBD_CMD_WRITE_ZEROES),
			    "NBD_CMD_WRITE_ZEROES");
	assert_string_equal(nbd_cmd_name(1000), "unknown");
	assert_string_equal(nbd_opt_name(NBD_OPT_GO), "NBD_OPT_GO");
	assert_string_equal(nbd_opt_name(0), "unknown");
	assert_string_equal(nbd_opt_name(0xffffffffu), "unknown");
}

static void test_split_hostport(void **state)
{
	static const struct { const char *in, *host, *port; } ok[] = {
		{ "127.0.0.1:10809", "127.0.0.1", "10809" },
		{ "localhost:nbd", "localhost", "nbd" },
		{ ":10809", NULL, "10809" },
		{ "[::1]:10809", "::1", "10809" },
		{ "[::]:1", "::", "1" },
		{ "[fe80::1%eth0]:99", "fe80::1%eth0", "99" },
	};
	static const char *const bad[] = {
		"", "10809", "host", "host:", ":", "::1:10809", "[::1]",
		"[::1]10809", "[::1:10809", "[::1]:", "a:b:c",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char buf[64], *host, *port;

		strcpy(buf, ok[i].in);
		assert_int_equal(nbd_split_hostport(buf, &host, &port), 0);
		if (ok[i].host)
			assert_string_equal(host, ok[i].host);
		else
			assert_null(host);
		assert_string_equal(port, ok[i].port);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char buf[64], *host, *port;

		strcpy(buf, bad[i]);
		if (nbd_split_hostport(buf, &host, &port) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
	}
}

static void test_buf(void **state)
{
	struct nbd_buf b = { 0 };
	char big[5000];

	(void)state;
	memset(big, 'x', sizeof(big));
	assert_int_equal(nbd_buf_put(&b, "ab", 2), 0);
	assert_int_equal(nbd_buf_put(&b, NULL, 0), 0);
	assert_int_equal(nbd_buf_put(&b, big, sizeof(big)), 0);
	assert_int_equal(b.len, 2 + sizeof(big));
	assert_memory_equal(b.data, "abxx", 4);
	nbd_buf_reset(&b);
	assert_int_equal(b.len, 0);
	nbd_buf_free(&b);
	assert_null(b.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greeting),
		cmocka_unit_test(test_client_flags),
		cmocka_unit_test(test_opt_hdr),
		cmocka_unit_test(test_export_name),
		cmocka_unit_test(test_abort),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_go_info),
		cmocka_unit_test(test_go_errors),
		cmocka_unit_test(test_unsupported_options),
		cmocka_unit_test(test_oversized_option),
		cmocka_unit_test(test_parse_request),
		cmocka_unit_test(test_check_request),
		cmocka_unit_test(test_errno_mapping),
		cmocka_unit_test(test_tx_flags),
		cmocka_unit_test(test_block_sizes),
		cmocka_unit_test(test_simple_reply),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_split_hostport),
		cmocka_unit_test(test_buf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
