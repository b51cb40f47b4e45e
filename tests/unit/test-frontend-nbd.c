// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Unit tests for tapdisk/frontend-nbd.c: a real server on a unix socket (and
 * TCP) in this process, serving a ram image, and hand-made clients speaking
 * raw NBD. The clients are non-blocking and pump the server's loop while
 * they wait, so everything runs in one thread: handshakes, pipelined and
 * out-of-order commands, malformed and hostile requests, replies larger
 * than the socket buffer, disconnects with requests in flight, quiesce.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "aio.h"
#include "blktap/log.h"
#include "blktap/nbd.h"
#include "frontend-nbd.h"
#include "image.h"
#include "nbd-proto.h"
#include "util.h"

#define IMG_SIZE	(36ull << 20)
#define MAX_PUMP	20000

struct fx {
	struct td_loop *loop;
	struct td_aio *aio;
	struct td_ctx ctx;
	struct td_opts opts;
	struct td_image *img;
	struct td_nbd_server *srv;
	char dir[64];
	char sock[128];
	char ram[128];
};

static struct fx *F;

static void pump(void)
{
	assert_true(td_loop_run_once(F->loop, 1) >= 0);
}

static struct td_nbd_server *make_server(bool readonly, const char *tcp)
{
	struct td_nbd_opts o = {
		.unix_path = F->sock,
		.tcp_addr = tcp,
		.export_name = "exp",
		.readonly = readonly,
	};

	return td_nbd_server_create(&F->ctx, F->img, &o);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char spec[160];

	assert_non_null(f);
	F = f;
	strcpy(f->dir, "/tmp/test-nbd.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->sock, sizeof(f->sock), "%s/sock", f->dir);
	snprintf(f->ram, sizeof(f->ram), "%s/ram", f->dir);
	f->loop = td_loop_create();
	assert_non_null(f->loop);
	f->aio = td_aio_create(f->loop, 64);
	assert_non_null(f->aio);
	td_ctx_init(&f->ctx, f->loop, f->aio);
	f->opts.ram_limit = 1ull << 30;
	f->opts.ram_size = IMG_SIZE;
	f->ctx.opts = &f->opts;
	snprintf(spec, sizeof(spec), "ram:%s", f->ram);
	assert_int_equal(td_image_open(&f->ctx, spec, 0, &f->img), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->srv) {
		for (int i = 0; i < MAX_PUMP && td_nbd_server_inflight(f->srv); i++)
			pump();
		td_nbd_server_destroy(f->srv);
	}
	for (int i = 0; i < 100 && td_aio_inflight(f->aio); i++)
		td_loop_run_once(f->loop, 1);
	td_loop_run_once(f->loop, 0);
	td_image_close(f->img);
	td_aio_destroy(f->aio);
	td_loop_destroy(f->loop);
	unlink(f->sock);
	rmdir(f->dir);
	free(f);
	F = NULL;
	return 0;
}

/* ---- a tiny non-blocking NBD client ---- */

static int cl_connect_path(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	strcpy(sun.sun_path, path);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		close(fd);
		return -errno;
	}
	assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	return fd;
}

static int cl_connect(void)
{
	int fd = cl_connect_path(F->sock);

	assert_true(fd >= 0);
	return fd;
}

static void cl_send(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	for (int i = 0; n && i < MAX_PUMP; i++) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w > 0) {
			p += w;
			n -= w;
			continue;
		}
		assert_true(w < 0 && errno == EAGAIN);
		pump();
	}
	assert_int_equal(n, 0);
}

/* Receive exactly @n bytes, pumping the server meanwhile; bytes got. */
static size_t cl_recv(int fd, void *buf, size_t n)
{
	char *p = buf;
	size_t got = 0;

	for (int i = 0; got < n && i < MAX_PUMP; i++) {
		ssize_t r = recv(fd, p + got, n - got, 0);

		if (r > 0) {
			got += r;
			continue;
		}
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			break;
		assert_true(errno == EAGAIN);
		pump();
	}
	return got;
}

static void cl_expect_eof(int fd)
{
	char c;

	assert_int_equal(cl_recv(fd, &c, 1), 0);
}

/* Nothing arrives while the server runs a while. */
static void cl_expect_silence(int fd)
{
	char c;

	for (int i = 0; i < 50; i++)
		pump();
	assert_int_equal(recv(fd, &c, 1, 0), -1);
	assert_int_equal(errno, EAGAIN);
}

static void cl_greeting(int fd, uint32_t cflags)
{
	uint8_t g[18];
	uint32_t be = htobe32(cflags);

	assert_int_equal(cl_recv(fd, g, sizeof(g)), sizeof(g));
	assert_memory_equal(g, "NBDMAGICIHAVEOPT", 16);
	assert_int_equal(g[16], 0);
	assert_int_equal(g[17], NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	cl_send(fd, &be, 4);
}

static void cl_option(int fd, uint32_t opt, const void *data, uint32_t len)
{
	struct nbd_opt_hdr h = {
		.magic = htobe64(NBD_IHAVEOPT),
		.option = htobe32(opt),
		.len = htobe32(len),
	};

	cl_send(fd, &h, sizeof(h));
	if (len)
		cl_send(fd, data, len);
}

/* One option reply; its data (up to @max bytes) into @data. */
static uint32_t cl_opt_reply(int fd, uint32_t opt, void *data, size_t max,
			     uint32_t *len)
{
	struct nbd_opt_reply r;
	uint8_t skip[256];
	uint32_t n;

	assert_int_equal(cl_recv(fd, &r, sizeof(r)), sizeof(r));
	assert_true(be64toh(r.magic) == NBD_REP_MAGIC);
	assert_int_equal(be32toh(r.option), opt);
	n = be32toh(r.len);
	if (len)
		*len = n;
	if (n <= max) {
		assert_int_equal(cl_recv(fd, data, n), n);
	} else {
		assert_true(n <= sizeof(skip));
		assert_int_equal(cl_recv(fd, skip, n), n);
	}
	return be32toh(r.type);
}

struct export_info {
	uint64_t size;
	uint16_t flags;
	uint32_t min, pref, max;
};

/* NBD_OPT_GO/INFO for @name: the final reply type; @ei filled on success. */
static uint32_t cl_go(int fd, uint32_t opt, const char *name,
		      struct export_info *ei)
{
	uint8_t data[64], rep[64];
	uint32_t nl = htobe32(strlen(name)), type, len;
	uint16_t zero = 0;

	memcpy(data, &nl, 4);
	memcpy(data + 4, name, strlen(name));
	memcpy(data + 4 + strlen(name), &zero, 2);
	cl_option(fd, opt, data, 6 + strlen(name));
	while ((type = cl_opt_reply(fd, opt, rep, sizeof(rep), &len)) ==
	       NBD_REP_INFO) {
		uint16_t info = nbd_get16(rep);

		if (info == NBD_INFO_EXPORT && ei) {
			ei->size = nbd_get64(rep + 2);
			ei->flags = nbd_get16(rep + 10);
		} else if (info == NBD_INFO_BLOCK_SIZE && ei) {
			ei->min = nbd_get32(rep + 2);
			ei->pref = nbd_get32(rep + 6);
			ei->max = nbd_get32(rep + 10);
		}
	}
	return type;
}

/* Connect and negotiate export @name with NBD_OPT_GO. */
static int cl_open(const char *name, struct export_info *ei)
{
	int fd = cl_connect();

	cl_greeting(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	assert_int_equal(cl_go(fd, NBD_OPT_GO, name, ei), NBD_REP_ACK);
	return fd;
}

static void cl_request(int fd, uint16_t type, uint16_t flags, uint64_t cookie,
		       uint64_t off, uint32_t len)
{
	struct nbd_request r = {
		.magic = htobe32(NBD_REQUEST_MAGIC),
		.flags = htobe16(flags),
		.type = htobe16(type),
		.cookie = htobe64(cookie),
		.offset = htobe64(off),
		.len = htobe32(len),
	};

	cl_send(fd, &r, sizeof(r));
}

/* One simple reply: its error; the cookie into @cookie. */
static uint32_t cl_reply(int fd, uint64_t *cookie)
{
	struct nbd_simple_reply r;

	assert_int_equal(cl_recv(fd, &r, sizeof(r)), sizeof(r));
	assert_int_equal(be32toh(r.magic), NBD_SIMPLE_REPLY_MAGIC);
	*cookie = be64toh(r.cookie);
	return be32toh(r.error);
}

/* A command whose reply carries no data: its error. */
static uint32_t cl_cmd(int fd, uint16_t type, uint16_t flags, uint64_t off,
		       uint32_t len, const void *payload)
{
	static uint64_t next_cookie = 1000;
	uint64_t cookie = next_cookie++, got;
	uint32_t err;

	cl_request(fd, type, flags, cookie, off, len);
	if (payload)
		cl_send(fd, payload, len);
	err = cl_reply(fd, &got);
	assert_true(got == cookie);
	return err;
}

/* Read @len bytes at @off into @buf: the error. */
static uint32_t cl_read(int fd, uint64_t off, uint32_t len, void *buf)
{
	uint64_t got;
	uint32_t err;

	cl_request(fd, NBD_CMD_READ, 0, 77, off, len);
	err = cl_reply(fd, &got);
	assert_true(got == 77);
	if (!err)
		assert_int_equal(cl_recv(fd, buf, len), len);
	return err;
}

static void cl_disc(int fd)
{
	cl_request(fd, NBD_CMD_DISC, 0, 0, 0, 0);
	cl_expect_eof(fd);
	close(fd);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	assert_non_null(p);
	return p;
}

static void drain_inflight(void)
{
	for (int i = 0; i < MAX_PUMP && td_nbd_server_inflight(F->srv); i++)
		pump();
	assert_int_equal(td_nbd_server_inflight(F->srv), 0);
}

/* ---- tests ---- */

static void test_io(void **state)
{
	struct export_info ei = { 0 };
	char *w = xmalloc(65536), *r = xmalloc(65536);
	int fd;

	(void)state;
	F->srv = make_server(false, NULL);
	assert_non_null(F->srv);
	fd = cl_open("exp", &ei);
	assert_true(ei.size == IMG_SIZE);
	assert_int_equal(ei.flags, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
			 NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
			 NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_CAN_MULTI_CONN);
	assert_int_equal(ei.min, 1);
	assert_int_equal(ei.pref, 4096);
	assert_int_equal(ei.max, 32u << 20);

	fill_pattern(w, 65536, 4096, 1);
	assert_int_equal(cl_cmd(fd, NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 4096,
				65536, w), 0);
	assert_int_equal(cl_read(fd, 4096, 65536, r), 0);
	assert_memory_equal(w, r, 65536);

	/* Zeroes and trim in the middle, unaligned (ram has align 1). */
	assert_int_equal(cl_cmd(fd, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE,
				4096 + 1000, 3000, NULL), 0);
	assert_int_equal(cl_read(fd, 4096, 65536, r), 0);
	memset(w + 1000, 0, 3000);
	assert_memory_equal(w, r, 65536);
	assert_int_equal(cl_cmd(fd, NBD_CMD_TRIM, 0, 8192, 4096, NULL), 0);
	assert_int_equal(cl_cmd(fd, NBD_CMD_FLUSH, 0, 0, 0, NULL), 0);

	/* Empty commands are fine, at the very end too. */
	assert_int_equal(cl_read(fd, IMG_SIZE, 0, r), 0);
	assert_int_equal(cl_cmd(fd, NBD_CMD_WRITE, 0, 0, 0, NULL), 0);
	assert_int_equal(cl_cmd(fd, NBD_CMD_WRITE_ZEROES, 0, 5, 0, NULL), 0);

	/* The last byte. */
	assert_int_equal(cl_cmd(fd, NBD_CMD_WRITE, 0, IMG_SIZE - 1, 1, "z"), 0);
	assert_int_equal(cl_read(fd, IMG_SIZE - 1, 1, r), 0);
	assert_int_equal(r[0], 'z');
	assert_int_equal(td_nbd_server_inflight(F->srv), 0);
	cl_disc(fd);
	free(w);
	free(r);
}

static void test_negotiation(void **state)
{
	struct export_info ei = { 0 };
	uint8_t buf[256];
	uint32_t len;
	int fd;

	(void)state;
	F->srv = make_server(false, NULL);
	assert_non_null(F->srv);
	fd = cl_connect();
	cl_greeting(fd, NBD_FLAG_C_FIXED_NEWSTYLE);

	/* LIST names our one export. */
	cl_option(fd, NBD_OPT_LIST, NULL, 0);
	assert_int_equal(cl_opt_reply(fd, NBD_OPT_LIST, buf, sizeof(buf), &len),
			 NBD_REP_SERVER);
	assert_int_equal(len, 7);
	assert_memory_equal(buf + 4, "exp", 3);
	assert_int_equal(cl_opt_reply(fd, NBD_OPT_LIST, buf, sizeof(buf), NULL),
			 NBD_REP_ACK);

	/* Unknown export, unknown and unsupported options. */
	assert_int_equal(cl_go(fd, NBD_OPT_INFO, "nope", NULL),
			 NBD_REP_ERR_UNKNOWN);
	assert_int_equal(cl_go(fd, NBD_OPT_GO, "nope", NULL),
			 NBD_REP_ERR_UNKNOWN);
	cl_option(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	assert_int_equal(cl_opt_reply(fd, NBD_OPT_STRUCTURED_REPLY, buf,
				      sizeof(buf), NULL), NBD_REP_ERR_UNSUP);
	cl_option(fd, 4242, "junk", 4);
	assert_int_equal(cl_opt_reply(fd, 4242, buf, sizeof(buf), NULL),
			 NBD_REP_ERR_UNSUP);
	/* Malformed GO data. */
	cl_option(fd, NBD_OPT_GO, "\0\0\0\x50xx", 6);
	assert_int_equal(cl_opt_reply(fd, NBD_OPT_GO, buf, sizeof(buf), NULL),
			 NBD_REP_ERR_INVALID);
	/* Too long to bother: skipped, refused, and we stay in step. */
	{
		size_t n = 100000;
		char *junk = calloc(1, n);

		assert_non_null(junk);
		cl_option(fd, NBD_OPT_GO, junk, n);
		free(junk);
	}
	assert_int_equal(cl_opt_reply(fd, NBD_OPT_GO, buf, sizeof(buf), NULL),
			 NBD_REP_ERR_TOO_BIG);

	/* INFO then GO with the empty name: the default export. */
	assert_int_equal(cl_go(fd, NBD_OPT_INFO, "", &ei), NBD_REP_ACK);
	assert_true(ei.size == IMG_SIZE);
	assert_int_equal(cl_go(fd, NBD_OPT_GO, "", &ei), NBD_REP_ACK);
	assert_int_equal(cl_read(fd, 0, sizeof(buf), buf), 0);
	cl_disc(fd);

	/* ABORT gets an ACK, then the server hangs up. */
	fd = cl_connect();
	cl_greeting(fd, NBD_FLAG_C_FIXED_NEWSTYLE);
	cl_option(fd, NBD_OPT_ABORT, NULL, 0);
	assert_int_equal(cl_opt_reply(fd, NBD_OPT_ABORT, buf, sizeof(buf), NULL),
			 NBD_REP_ACK);
	cl_expect_eof(fd);
	close(fd);

	/* Flags we never offered: hang up. Bad option magic: hang up. */
	fd = cl_connect();
	cl_greeting(fd, 0x10);
	cl_expect_eof(fd);
	close(fd);
	fd = cl_connect();
	cl_greeting(fd, 0);
	cl_send(fd, "NBDMAGIC\0\0\0\x07\0\0\0\0", 16);
	cl_expect_eof(fd);
	close(fd);
}

static void test_export_name(void **state)
{
	uint8_t buf[200];
	int fd;

	(void)state;
	F->srv = make_server(false, NULL);
	assert_non_null(F->srv);

	/* Old-style clients get size, flags and 124 zeroes... */
	fd = cl_connect();
	cl_greeting(fd, NBD_FLAG_C_FIXED_NEWSTYLE);
	cl_option(fd, NBD_OPT_EXPORT_NAME, "exp", 3);
	assert_int_equal(cl_recv(fd, buf, 134), 134);
	assert_true(nbd_get64(buf) == IMG_SIZE);
	for (int i = 10; i < 134; i++)
		assert_int_equal(buf[i], 0);
	assert_int_equal(cl_read(fd, 0, 16, buf), 0);
	cl_disc(fd);

	/* ... unless they asked for no zeroes; "" is the default export. */
	fd = cl_connect();
	cl_greeting(fd, NBD_FLAG_C_NO_ZEROES);
	cl_option(fd, NBD_OPT_EXPORT_NAME, NULL, 0);
	assert_int_equal(cl_recv(fd, buf, 10), 10);
	assert_int_equal(cl_read(fd, 0, 16, buf), 0);
	cl_disc(fd);

	/* An unknown name cannot be refused politely: hang up. */
	fd = cl_connect();
	cl_greeting(fd, NBD_FLAG_C_NO_ZEROES);
	cl_option(fd, NBD_OPT_EXPORT_NAME, "other", 5);
	cl_expect_eof(fd);
	close(fd);
}

static void test_bad_requests(void **state)
{
	char *buf = xmalloc(1 << 20);
	uint64_t cookie;
	int fd;

	(void)state;
	F->srv = make_server(false, NULL);
	assert_non_null(F->srv);
	fd = cl_open("exp", NULL);
	memset(buf, 0x5a, 1 << 20);

	/* Past the end: writes ENOSPC (payload skipped), others EINVAL. */
	assert_int_equal(cl_cmd(fd, NBD_CMD_WRITE, 0, IMG_SIZE - 512, 1024, buf),
			 NBD_ENOSPC);
	assert_int_equal(cl_cmd(fd, NBD_CMD_WRITE, 0, UINT64_MAX - 10, 4096, buf),
			 NBD_ENOSPC);
	assert_int_equal(cl_cmd(fd, NBD_CMD_WRITE, 0, IMG_SIZE, 1 << 20, buf),
			 NBD_ENOSPC);
	assert_int_equal(cl_read(fd, IMG_SIZE - 512, 1024, buf), NBD_EINVAL);
	assert_int_equal(cl_read(fd, UINT64_MAX - 511, 512, buf), NBD_EINVAL);
	assert_int_equal(cl_cmd(fd, NBD_CMD_TRIM, 0, IMG_SIZE, 1, NULL),
			 NBD_EINVAL);
	assert_int_equal(cl_cmd(fd, NBD_CMD_WRITE_ZEROES, 0, 1, IMG_SIZE, NULL),
			 NBD_ENOSPC);
	/* Unknown commands and flags. */
	assert_int_equal(cl_cmd(fd, 77, 0, 0, 512, NULL), NBD_EINVAL);
	assert_int_equal(cl_cmd(fd, NBD_CMD_CACHE, 0, 0, 512, NULL), NBD_EINVAL);
	assert_int_equal(cl_cmd(fd, NBD_CMD_WRITE, NBD_CMD_FLAG_NO_HOLE, 0, 512,
				buf), NBD_EINVAL);
	assert_int_equal(cl_cmd(fd, NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, NULL),
			 NBD_EINVAL);
	/* Too long a read: refused, the connection stays. */
	assert_int_equal(cl_cmd(fd, NBD_CMD_READ, 0, 0, (32u << 20) + 1, NULL),
			 NBD_EINVAL);
	/* Still in step: the data written before all this is intact. */
	assert_int_equal(cl_cmd(fd, NBD_CMD_WRITE, 0, 0, 4096, buf), 0);
	memset(buf, 0, 4096);
	assert_int_equal(cl_read(fd, 0, 4096, buf), 0);
	assert_int_equal(buf[0], 0x5a);
	assert_int_equal(buf[4095], 0x5a);
	assert_int_equal(buf[4096], 0x5a);	/* not touched by the read */

	/* Too long a write: refused, and the server hangs up. */
	cl_request(fd, NBD_CMD_WRITE, 0, 5, 0, (32u << 20) + 1);
	assert_int_equal(cl_reply(fd, &cookie), NBD_EINVAL);
	assert_true(cookie == 5);
	cl_expect_eof(fd);
	close(fd);

	/* Bad magic: hung up on; the server serves the next client. */
	fd = cl_open("", NULL);
	cl_send(fd, "GARBAGE GARBAGE GARBAGE GARBAGE", 28);
	cl_expect_eof(fd);
	close(fd);
	fd = cl_open("", NULL);
	assert_int_equal(cl_read(fd, 0, 4096, buf), 0);
	assert_int_equal(buf[100], 0x5a);
	cl_disc(fd);
	drain_inflight();
	free(buf);
}

static void test_readonly(void **state)
{
	struct export_info ei = { 0 };
	char buf[4096] = "hello";
	int fd;

	(void)state;
	F->srv = make_server(true, NULL);
	assert_non_null(F->srv);
	fd = cl_open("exp", &ei);
	assert_true(ei.flags & NBD_FLAG_READ_ONLY);
	assert_int_equal(cl_cmd(fd, NBD_CMD_WRITE, 0, 0, sizeof(buf), buf),
			 NBD_EPERM);
	assert_int_equal(cl_cmd(fd, NBD_CMD_TRIM, 0, 0, 4096, NULL), NBD_EPERM);
	assert_int_equal(cl_cmd(fd, NBD_CMD_WRITE_ZEROES, 0, 0, 4096, NULL),
			 NBD_EPERM);
	assert_int_equal(cl_cmd(fd, NBD_CMD_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(cl_read(fd, 0, sizeof(buf), buf), 0);
	assert_int_equal(buf[0], 0);
	cl_disc(fd);
}

/* Many commands sent before any reply is read; replies in any order. */
static void test_pipeline(void **state)
{
	enum { N = 200, BS = 4096, NR = 64 };
	char *w = xmalloc((size_t)N * BS), *r = xmalloc(BS);
	bool seen[N] = { false };
	uint64_t cookie;
	int fd;

	(void)state;
	F->srv = make_server(false, NULL);
	assert_non_null(F->srv);
	fd = cl_open("exp", NULL);
	fill_pattern(w, (size_t)N * BS, 0, 7);
	for (int i = 0; i < N; i++) {
		cl_request(fd, NBD_CMD_WRITE, i % 3 ? 0 : NBD_CMD_FLAG_FUA, i,
			   (uint64_t)i * BS, BS);
		cl_send(fd, w + (size_t)i * BS, BS);
	}
	for (int i = 0; i < N; i++) {
		assert_int_equal(cl_reply(fd, &cookie), 0);
		assert_true(cookie < N && !seen[cookie]);
		seen[cookie] = true;
	}
	/* More read data than a socket holds: partial sends and EPOLLOUT. */
	for (int i = 0; i < NR; i++)
		cl_request(fd, NBD_CMD_READ, 0, 1000 + i, (uint64_t)i * BS, BS);
	for (int i = 0; i < NR; i++) {
		assert_int_equal(cl_reply(fd, &cookie), 0);
		assert_true(cookie >= 1000 && cookie < 1000 + NR);
		assert_int_equal(cl_recv(fd, r, BS), BS);
		assert_memory_equal(r, w + (cookie - 1000) * BS, BS);
	}
	/* More commands than a connection may have pending: flow control. */
	for (int i = 0; i < 3 * 256; i++)
		cl_request(fd, NBD_CMD_FLUSH, 0, 5000 + i, 0, 0);
	for (int i = 0; i < 3 * 256; i++)
		assert_int_equal(cl_reply(fd, &cookie), 0);
	drain_inflight();
	cl_disc(fd);
	free(w);
	free(r);
}

/* The largest payloads, with a client that reads slowly. */
static void test_big(void **state)
{
	const uint32_t len = 32u << 20;
	char *w = xmalloc(len), *r = xmalloc(len);
	int fd, small = 4096;

	(void)state;
	F->srv = make_server(false, NULL);
	assert_non_null(F->srv);
	fd = cl_open("exp", NULL);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	fill_pattern(w, len, 0, 3);
	assert_int_equal(cl_cmd(fd, NBD_CMD_WRITE, 0, 4096, len, w), 0);
	memset(r, 0, len);
	assert_int_equal(cl_read(fd, 4096, len, r), 0);
	assert_memory_equal(w, r, len);
	cl_disc(fd);
	free(w);
	free(r);
}

static void test_multi_clients(void **state)
{
	enum { C = 4 };
	char buf[4096], want[4096];
	int fd[C];

	(void)state;
	F->srv = make_server(false, NULL);
	assert_non_null(F->srv);
	for (int i = 0; i < C; i++)
		fd[i] = cl_open(i % 2 ? "exp" : "", NULL);
	for (int i = 0; i < C; i++) {
		memset(buf, 'a' + i, sizeof(buf));
		cl_request(fd[i], NBD_CMD_WRITE, 0, i, (uint64_t)i << 20,
			   sizeof(buf));
		cl_send(fd[i], buf, sizeof(buf));
	}
	for (int i = 0; i < C; i++) {
		uint64_t cookie;

		assert_int_equal(cl_reply(fd[i], &cookie), 0);
		assert_true(cookie == (uint64_t)i);
	}
	/* Each client sees what the others wrote. */
	for (int i = 0; i < C; i++) {
		int j = (i + 1) % C;

		assert_int_equal(cl_cmd(fd[i], NBD_CMD_FLUSH, 0, 0, 0, NULL), 0);
		assert_int_equal(cl_read(fd[i], (uint64_t)j << 20, sizeof(buf),
					 buf), 0);
		memset(want, 'a' + j, sizeof(want));
		assert_memory_equal(buf, want, sizeof(buf));
	}
	for (int i = 0; i < C; i++)
		cl_disc(fd[i]);
}

/* Clients vanishing with commands in flight or half sent. */
static void test_disconnects(void **state)
{
	char *buf = xmalloc(1 << 20);
	int fd;

	(void)state;
	F->srv = make_server(false, NULL);
	assert_non_null(F->srv);
	memset(buf, 1, 1 << 20);

	fd = cl_open("exp", NULL);
	for (int i = 0; i < 16; i++) {
		cl_request(fd, NBD_CMD_WRITE, 0, i, (uint64_t)i << 20, 1 << 20);
		cl_send(fd, buf, 1 << 20);
		cl_request(fd, NBD_CMD_READ, 0, 100 + i, (uint64_t)i << 20,
			   1 << 20);
	}
	close(fd);
	drain_inflight();

	/* Half a write payload, then gone. */
	fd = cl_open("exp", NULL);
	cl_request(fd, NBD_CMD_WRITE, 0, 1, 0, 1 << 20);
	cl_send(fd, buf, 1000);
	pump();
	close(fd);
	drain_inflight();

	/* Half a header; half a handshake. */
	fd = cl_open("exp", NULL);
	cl_send(fd, "\x25\x60\x95\x13\0\0", 6);
	pump();
	close(fd);
	fd = cl_connect();
	cl_send(fd, "\0\0", 2);
	pump();
	close(fd);

	/* A half-close still gets its replies. */
	fd = cl_open("exp", NULL);
	cl_request(fd, NBD_CMD_READ, 0, 9, 0, 4096);
	shutdown(fd, SHUT_WR);
	{
		uint64_t cookie;

		assert_int_equal(cl_reply(fd, &cookie), 0);
		assert_int_equal(cl_recv(fd, buf, 4096), 4096);
		assert_int_equal(buf[0], 1);
	}
	cl_expect_eof(fd);
	close(fd);

	fd = cl_open("exp", NULL);
	assert_int_equal(cl_read(fd, 0, 4096, buf), 0);
	cl_disc(fd);
	drain_inflight();
	free(buf);
}

static void test_quiesce(void **state)
{
	char buf[4096];
	uint64_t cookie;
	int fd, hs, half;

	(void)state;
	F->srv = make_server(false, NULL);
	assert_non_null(F->srv);
	fd = cl_open("exp", NULL);
	half = cl_open("exp", NULL);
	hs = cl_connect();
	assert_int_equal(cl_read(fd, 0, sizeof(buf), buf), 0);

	/* One command in flight, one half-sent write, one handshake. */
	cl_request(fd, NBD_CMD_READ, 0, 1, 0, sizeof(buf));
	cl_request(half, NBD_CMD_WRITE, 0, 2, 0, sizeof(buf));
	cl_send(half, buf, 100);
	pump();
	pump();
	td_nbd_server_quiesce(F->srv);
	td_nbd_server_quiesce(F->srv);	/* idempotent */

	/* No new connections, and the socket is gone. */
	assert_int_equal(cl_connect_path(F->sock), -ENOENT);
	/* The command read before gets its reply (maybe already had). */
	assert_int_equal(cl_reply(fd, &cookie), 0);
	assert_true(cookie == 1);
	assert_int_equal(cl_recv(fd, buf, sizeof(buf)), sizeof(buf));
	/* New commands are not read any more. */
	cl_request(fd, NBD_CMD_READ, 0, 3, 0, sizeof(buf));
	cl_expect_silence(fd);
	/* The handshake and the half write were dropped: nothing promised. */
	assert_int_equal(cl_recv(hs, buf, 18), 18);	/* the greeting */
	cl_expect_eof(hs);
	cl_expect_eof(half);
	drain_inflight();
	close(fd);
	close(hs);
	close(half);
}

/* Clients that never finish negotiating are shown the door. */
static void test_handshake_timeout(void **state)
{
	struct export_info ei = { 0 };
	uint8_t g[18];
	int idle, slow, quick;

	(void)state;
	F->srv = make_server(false, NULL);
	assert_non_null(F->srv);
	td_nbd_server_set_handshake_timeout(F->srv, 100 * 1000000ull);
	idle = cl_connect();
	slow = cl_connect();
	cl_greeting(slow, NBD_FLAG_C_FIXED_NEWSTYLE);
	quick = cl_open("exp", &ei);
	{
		struct timespec t0, t;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		do {
			pump();
			clock_gettime(CLOCK_MONOTONIC, &t);
		} while ((t.tv_sec - t0.tv_sec) * 1000 +
			 (t.tv_nsec - t0.tv_nsec) / 1000000 < 300);
	}
	assert_int_equal(cl_recv(idle, g, sizeof(g)), sizeof(g));
	cl_expect_eof(idle);
	cl_expect_eof(slow);
	/* Past negotiation, no time limit. */
	assert_int_equal(cl_read(quick, 0, sizeof(g), g), 0);
	cl_disc(quick);
	close(idle);
	close(slow);
}

static void test_create_errors(void **state)
{
	struct td_nbd_opts o = { .export_name = "x" };
	char path[200];
	int fd;

	(void)state;
	/* No frontend at all. */
	assert_null(td_nbd_server_create(&F->ctx, F->img, &o));
	/* Too long a unix path. */
	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	o.unix_path = path;
	assert_null(td_nbd_server_create(&F->ctx, F->img, &o));
	/* Something that is not a socket is never replaced. */
	o.unix_path = F->ram;
	fd = open(F->ram, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_null(td_nbd_server_create(&F->ctx, F->img, &o));
	unlink(F->ram);
	/* A live server's socket is not stolen; a stale one is replaced. */
	F->srv = make_server(false, NULL);
	assert_non_null(F->srv);
	o.unix_path = F->sock;
	assert_null(td_nbd_server_create(&F->ctx, F->img, &o));
	{
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		struct td_nbd_server *s;
		int sfd = socket(AF_UNIX, SOCK_STREAM, 0);

		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/stale", F->dir);
		assert_int_equal(bind(sfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
		close(sfd);
		o.unix_path = sun.sun_path;
		s = td_nbd_server_create(&F->ctx, F->img, &o);
		assert_non_null(s);
		fd = cl_connect_path(sun.sun_path);
		assert_true(fd >= 0);
		close(fd);
		td_nbd_server_destroy(s);
		assert_int_equal(access(sun.sun_path, F_OK), -1);
	}
	/* Bad TCP addresses. */
	o.unix_path = NULL;
	o.tcp_addr = "nonsense";
	assert_null(td_nbd_server_create(&F->ctx, F->img, &o));
	o.tcp_addr = "[::1:10809";
	assert_null(td_nbd_server_create(&F->ctx, F->img, &o));
	o.tcp_addr = "::1:10809";
	assert_null(td_nbd_server_create(&F->ctx, F->img, &o));
	o.tcp_addr = "127.0.0.1:";
	assert_null(td_nbd_server_create(&F->ctx, F->img, &o));
	o.tcp_addr = "no.such.host.invalid:10809";
	assert_null(td_nbd_server_create(&F->ctx, F->img, &o));
}

static int free_port(int family)
{
	struct sockaddr_storage ss = { .ss_family = family };
	socklen_t len = family == AF_INET ? sizeof(struct sockaddr_in) :
					    sizeof(struct sockaddr_in6);
	int fd = socket(family, SOCK_STREAM, 0), port;

	if (fd < 0)
		return -1;
	if (family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else
		((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		close(fd);
		return -1;
	}
	port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port :
			  ((struct sockaddr_in6 *)&ss)->sin6_port);
	close(fd);
	return port;
}

static int cl_connect_tcp(int family, int port)
{
	struct sockaddr_storage ss = { .ss_family = family };
	socklen_t len;
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0);

	assert_true(fd >= 0);
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin->sin_port = htons(port);
		len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_addr = in6addr_loopback;
		sin6->sin6_port = htons(port);
		len = sizeof(*sin6);
	}
	if (connect(fd, (struct sockaddr *)&ss, len) < 0)
		assert_int_equal(errno, EINPROGRESS);
	return fd;
}

static void tcp_session(int family, int port)
{
	uint8_t buf[512];
	int fd = cl_connect_tcp(family, port);

	cl_greeting(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	assert_int_equal(cl_go(fd, NBD_OPT_GO, "exp", NULL), NBD_REP_ACK);
	memset(buf, 9, sizeof(buf));
	assert_int_equal(cl_cmd(fd, NBD_CMD_WRITE, 0, 512, 512, buf), 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(cl_read(fd, 512, 512, buf), 0);
	assert_int_equal(buf[511], 9);
	cl_disc(fd);
}

static void test_tcp(void **state)
{
	char addr[64];
	int port = free_port(AF_INET), port6 = free_port(AF_INET6);

	(void)state;
	assert_true(port > 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	F->srv = make_server(false, addr);
	assert_non_null(F->srv);
	tcp_session(AF_INET, port);
	td_nbd_server_destroy(F->srv);
	F->srv = NULL;

	if (port6 <= 0)
		return;		/* no IPv6 here */
	snprintf(addr, sizeof(addr), "[::1]:%d", port6);
	F->srv = make_server(false, addr);
	assert_non_null(F->srv);
	tcp_session(AF_INET6, port6);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_io),
		T(test_negotiation),
		T(test_export_name),
		T(test_bad_requests),
		T(test_readonly),
		T(test_pipeline),
		T(test_big),
		T(test_multi_clients),
		T(test_disconnects),
		T(test_quiesce),
		T(test_handshake_timeout),
		T(test_create_errors),
		T(test_tcp),
	};

	td_log_init("test-frontend-nbd", TD_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
