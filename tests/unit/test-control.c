// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Unit tests for the control protocol: libblktap/control-client.c (payload
 * building and decoding, headers, malformed input, a round trip over a
 * socketpair) and tapdisk/control.c (tapdisk's control socket: stats,
 * pause that waits for in-flight I/O, unpause, refusals).
 */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include "util.h"
#include "aio.h"
#include "blktap/control.h"
#include "control.h"
#include "image.h"

static void test_build_and_decode(void **state)
{
	struct blktap_ctl_buf b = { 0 };
	struct blktap_ctl_msg m;
	uint64_t v;

	(void)state;
	blktap_ctl_buf_add(&b, "minor", "%u", 3u);
	blktap_ctl_buf_add(&b, "file", "%s", "/srv/a b=c.img");
	blktap_ctl_buf_end_record(&b);
	blktap_ctl_buf_end_record(&b);		/* no empty record */
	blktap_ctl_buf_add(&b, "minor", "%u", 1048576u);
	blktap_ctl_buf_add(&b, "empty", "%s", "");
	blktap_ctl_buf_end_record(&b);
	assert_int_equal(b.err, 0);
	assert_string_equal(b.data, "minor=3\nfile=/srv/a b=c.img\n\n"
				    "minor=1048576\nempty=\n\n");

	assert_int_equal(blktap_ctl_decode(b.data, b.len, &m), 0);
	assert_int_equal(m.nrec, 2);
	assert_int_equal(m.rec[0].n, 2);
	assert_string_equal(blktap_ctl_get(&m.rec[0], "file"), "/srv/a b=c.img");
	assert_int_equal(blktap_ctl_get_u64(&m.rec[1], "minor", &v), 0);
	assert_int_equal(v, 1048576);
	assert_string_equal(blktap_ctl_get(&m.rec[1], "empty"), "");
	assert_null(blktap_ctl_get(&m.rec[1], "file"));
	assert_int_equal(blktap_ctl_get_u64(&m.rec[1], "file", &v), -ENOENT);
	assert_int_equal(blktap_ctl_get_u64(&m.rec[1], "empty", &v), -EINVAL);
	blktap_ctl_msg_free(&m);
	blktap_ctl_buf_free(&b);

	/* a record without the final blank line is still a record */
	assert_int_equal(blktap_ctl_decode("a=1\n", 4, &m), 0);
	assert_int_equal(m.nrec, 1);
	blktap_ctl_msg_free(&m);
	assert_int_equal(blktap_ctl_decode("", 0, &m), 0);
	assert_int_equal(m.nrec, 0);
	assert_null(blktap_ctl_get(NULL, "a"));
	blktap_ctl_msg_free(&m);
}

static void test_bad_keys_values(void **state)
{
	struct blktap_ctl_buf b = { 0 };

	(void)state;
	blktap_ctl_buf_add(&b, "Bad", "1");
	assert_int_equal(b.err, -EINVAL);
	blktap_ctl_buf_free(&b);
	blktap_ctl_buf_add(&b, "", "1");
	assert_int_equal(b.err, -EINVAL);
	blktap_ctl_buf_free(&b);
	blktap_ctl_buf_add(&b, "a-very-long-key-that-is-too-long-x", "1");
	assert_int_equal(b.err, -EINVAL);
	blktap_ctl_buf_free(&b);
	blktap_ctl_buf_add(&b, "path", "%s", "two\nlines");
	assert_int_equal(b.err, -EINVAL);
	/* the error sticks */
	blktap_ctl_buf_add(&b, "ok", "1");
	assert_int_equal(b.err, -EINVAL);
	blktap_ctl_buf_free(&b);
}

static void test_malformed(void **state)
{
	static const struct {
		const char *text;
		size_t len;
	} bad[] = {
		{ "a=1", 3 },			/* no final newline */
		{ "novalue\n", 8 },		/* no '=' */
		{ "=1\n", 3 },			/* empty key */
		{ "A=1\n", 4 },			/* bad key character */
		{ "a b=1\n", 6 },
		{ "\n", 1 },			/* blank line outside a record */
		{ "a=1\n\n\n", 6 },		/* two blank lines */
		{ "a=1\na=2\n", 8 },		/* duplicate key */
		{ "a=1\0\n", 5 },		/* NUL byte */
		{ "abcdefghijklmnopqrstuvwxyz0123456=1\n", 36 },	/* long key */
	};
	struct blktap_ctl_msg m;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int ret = blktap_ctl_decode(bad[i].text, bad[i].len, &m);

		if (ret != -EBADMSG)
			fail_msg("case %zu: %d, expected -EBADMSG", i, ret);
		assert_null(m.text);
		assert_int_equal(m.nrec, 0);
	}
	assert_int_equal(blktap_ctl_decode("a=1\n", BLKTAP_CTL_MAX_PAYLOAD + 1, &m),
			 -EBADMSG);
}

static void test_header(void **state)
{
	struct blktap_ctl_hdr h;

	(void)state;
	blktap_ctl_hdr_init(&h, BLKTAP_CTL_OP_LIST, 0, 10);
	assert_int_equal(blktap_ctl_hdr_check(&h), 0);
	h.magic ^= 1;
	assert_int_equal(blktap_ctl_hdr_check(&h), -EPROTO);
	blktap_ctl_hdr_init(&h, BLKTAP_CTL_OP_LIST, 0, 10);
	h.version = BLKTAP_CTL_VERSION + 1;
	assert_int_equal(blktap_ctl_hdr_check(&h), -EPROTO);
	blktap_ctl_hdr_init(&h, BLKTAP_CTL_OP_LIST, 0, BLKTAP_CTL_MAX_PAYLOAD + 1);
	assert_int_equal(blktap_ctl_hdr_check(&h), -EMSGSIZE);
	assert_string_equal(blktap_ctl_op_name(BLKTAP_CTL_OP_CREATE | BLKTAP_CTL_REPLY),
			    "create");
	assert_string_equal(blktap_ctl_op_name(999), "unknown");
	assert_string_equal(blktap_ctl_op_name(0), "unknown");
}

static void test_socket_round_trip(void **state)
{
	struct blktap_ctl_buf b = { 0 };
	struct blktap_ctl_msg m;
	struct blktap_ctl_hdr h;
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	blktap_ctl_buf_add(&b, "type", "aio");
	blktap_ctl_buf_add(&b, "path", "/srv/a.img");
	assert_int_equal(blktap_ctl_send(sv[0], BLKTAP_CTL_OP_CREATE | BLKTAP_CTL_REPLY,
					 -ENOENT, &b), 0);
	assert_int_equal(blktap_ctl_recv(sv[1], &m), 0);
	assert_int_equal(m.op, BLKTAP_CTL_OP_CREATE);
	assert_int_equal(m.status, -ENOENT);
	assert_int_equal(m.nrec, 1);
	assert_string_equal(blktap_ctl_get(&m.rec[0], "path"), "/srv/a.img");
	blktap_ctl_msg_free(&m);

	/* no payload */
	assert_int_equal(blktap_ctl_send(sv[0], BLKTAP_CTL_OP_CHECK, 0, NULL), 0);
	assert_int_equal(blktap_ctl_recv(sv[1], &m), 0);
	assert_int_equal(m.op, BLKTAP_CTL_OP_CHECK);
	assert_int_equal(m.nrec, 0);
	blktap_ctl_msg_free(&m);

	/* a builder error is not sent */
	blktap_ctl_buf_add(&b, "BAD", "x");
	assert_int_equal(blktap_ctl_send(sv[0], BLKTAP_CTL_OP_LIST, 0, &b), -EINVAL);
	blktap_ctl_buf_free(&b);

	/* a bad header, a malformed payload, a short message */
	blktap_ctl_hdr_init(&h, BLKTAP_CTL_OP_LIST, 0, 0);
	h.version = 77;
	assert_int_equal(write(sv[0], &h, sizeof(h)), sizeof(h));
	assert_int_equal(blktap_ctl_recv(sv[1], &m), -EPROTO);
	blktap_ctl_hdr_init(&h, BLKTAP_CTL_OP_LIST, 0, 4);
	assert_int_equal(write(sv[0], &h, sizeof(h)), sizeof(h));
	assert_int_equal(write(sv[0], "oops", 4), 4);
	assert_int_equal(blktap_ctl_recv(sv[1], &m), -EBADMSG);
	blktap_ctl_hdr_init(&h, BLKTAP_CTL_OP_LIST, 0, 100);
	assert_int_equal(write(sv[0], &h, sizeof(h)), sizeof(h));
	assert_int_equal(write(sv[0], "a=1\n", 4), 4);
	close(sv[0]);
	assert_int_equal(blktap_ctl_recv(sv[1], &m), -ECONNRESET);
	close(sv[1]);
}

static void test_connect_missing(void **state)
{
	struct blktap_ctl_msg m;
	char longpath[200];

	(void)state;
	assert_int_equal(blktap_ctl_connect("/nonexistent/blktapctrl.sock"), -ENOENT);
	assert_int_equal(blktap_ctl_call("/nonexistent/x.sock", BLKTAP_CTL_OP_CHECK,
					 NULL, &m), -ENOENT);
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(blktap_ctl_connect(longpath), -ENAMETOOLONG);
}

/* --- tapdisk/control.c --- */

struct fake_fe {
	unsigned int inflight;
	int quiesced, resumed;
};

static void fe_quiesce(void *arg) { ((struct fake_fe *)arg)->quiesced++; }
static void fe_resume(void *arg) { ((struct fake_fe *)arg)->resumed++; }
static unsigned int fe_inflight(void *arg) { return ((struct fake_fe *)arg)->inflight; }

struct td_fixture {
	struct td_loop *loop;
	struct td_aio *aio;
	struct td_ctx ctx;
	struct td_opts opts;
	struct td_image *img;
	struct td_control *ctl;
	char path[64];
};

static int td_setup(void **state)
{
	struct td_fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->loop = td_loop_create();
	f->aio = td_aio_create(f->loop, 16);
	td_ctx_init(&f->ctx, f->loop, f->aio);
	f->opts.ram_limit = 1u << 20;
	f->opts.ram_size = 1u << 20;
	f->ctx.opts = &f->opts;
	assert_int_equal(td_image_open(&f->ctx, "ram:/nonexistent/ram", 0, &f->img), 0);
	snprintf(f->path, sizeof(f->path), "/tmp/blktap-unit-ctl.%d", (int)getpid());
	f->ctl = td_control_create(&f->ctx, f->img, f->path);
	assert_non_null(f->ctl);
	*state = f;
	return 0;
}

static int td_teardown(void **state)
{
	struct td_fixture *f = *state;

	td_control_destroy(f->ctl);
	assert_int_equal(access(f->path, F_OK), -1);
	td_image_close(f->img);
	td_aio_destroy(f->aio);
	td_loop_destroy(f->loop);
	free(f);
	return 0;
}

/* Send @op on a new connection; returns the fd (reply not read yet). */
static int td_request(struct td_fixture *f, uint16_t op)
{
	int fd = blktap_ctl_connect(f->path);

	assert_true(fd >= 0);
	assert_int_equal(blktap_ctl_send(fd, op, 0, NULL), 0);
	return fd;
}

/* Run the loop until @fd is readable (at most @turns turns); true if so. */
static bool td_wait_reply(struct td_fixture *f, int fd, int turns)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	for (int i = 0; i < turns; i++) {
		if (poll(&p, 1, 0) > 0)
			return true;
		assert_true(td_loop_run_once(f->loop, 2) >= 0);
	}
	return poll(&p, 1, 0) > 0;
}

static void td_call(struct td_fixture *f, uint16_t op, struct blktap_ctl_msg *m)
{
	int fd = td_request(f, op);

	assert_true(td_wait_reply(f, fd, 1000));
	assert_int_equal(blktap_ctl_recv(fd, m), 0);
	close(fd);
}

static void test_tapdisk_stats(void **state)
{
	struct td_fixture *f = *state;
	struct blktap_ctl_msg m;
	uint64_t v;

	td_call(f, BLKTAP_CTL_OP_STATS, &m);
	assert_int_equal(m.status, 0);
	assert_int_equal(m.op, BLKTAP_CTL_OP_STATS);
	assert_int_equal(blktap_ctl_get_u64(&m.rec[0], "size", &v), 0);
	assert_int_equal(v, 1u << 20);
	assert_int_equal(blktap_ctl_get_u64(&m.rec[0], "requests", &v), 0);
	assert_int_equal(blktap_ctl_get_u64(&m.rec[0], "paused", &v), 0);
	assert_int_equal(v, 0);
	assert_string_equal(blktap_ctl_get(&m.rec[0], "image"), "ram:/nonexistent/ram");
	blktap_ctl_msg_free(&m);

	td_call(f, BLKTAP_CTL_OP_CHECK, &m);
	assert_int_equal(m.status, 0);
	blktap_ctl_msg_free(&m);
}

static void test_tapdisk_refusals(void **state)
{
	struct td_fixture *f = *state;
	struct blktap_ctl_msg m;
	struct blktap_ctl_hdr h;
	char c;
	int fd;

	/* no frontend hooks: pause is not supported */
	td_call(f, BLKTAP_CTL_OP_PAUSE, &m);
	assert_int_equal(m.status, -EOPNOTSUPP);
	assert_non_null(strstr(blktap_ctl_get(&m.rec[0], "error"), "cannot pause"));
	blktap_ctl_msg_free(&m);
	/* a daemon-only op */
	td_call(f, BLKTAP_CTL_OP_LIST, &m);
	assert_int_equal(m.status, -EOPNOTSUPP);
	blktap_ctl_msg_free(&m);
	/* a bad header: hung up on, the loop goes on */
	fd = blktap_ctl_connect(f->path);
	assert_true(fd >= 0);
	blktap_ctl_hdr_init(&h, BLKTAP_CTL_OP_STATS, 0, 0);
	h.magic = 0;
	assert_int_equal(write(fd, &h, sizeof(h)), sizeof(h));
	assert_true(td_wait_reply(f, fd, 1000));
	assert_int_equal(read(fd, &c, 1), 0);
	close(fd);
	/* a client that goes away mid-request */
	fd = blktap_ctl_connect(f->path);
	assert_int_equal(write(fd, &h, 4), 4);
	close(fd);
	for (int i = 0; i < 10; i++)
		td_loop_run_once(f->loop, 1);
	td_call(f, BLKTAP_CTL_OP_STATS, &m);
	assert_int_equal(m.status, 0);
	blktap_ctl_msg_free(&m);
}

static void test_tapdisk_pause(void **state)
{
	struct td_fixture *f = *state;
	struct fake_fe fe = { .inflight = 2 };
	struct td_control_frontend hooks = {
		.quiesce = fe_quiesce, .resume = fe_resume,
		.inflight = fe_inflight, .arg = &fe,
	};
	struct blktap_ctl_msg m;
	uint64_t v;
	int fd;

	td_control_set_frontend(f->ctl, &hooks);
	fd = td_request(f, BLKTAP_CTL_OP_PAUSE);
	/* quiesced at once, but no answer while requests are in flight */
	assert_false(td_wait_reply(f, fd, 30));
	assert_int_equal(fe.quiesced, 1);
	/* stats still answer meanwhile */
	td_call(f, BLKTAP_CTL_OP_STATS, &m);
	assert_int_equal(blktap_ctl_get_u64(&m.rec[0], "inflight", &v), 0);
	assert_int_equal(v, 2);
	blktap_ctl_msg_free(&m);
	fe.inflight = 0;
	assert_true(td_wait_reply(f, fd, 1000));
	assert_int_equal(blktap_ctl_recv(fd, &m), 0);
	assert_int_equal(m.status, 0);
	assert_int_equal(blktap_ctl_get_u64(&m.rec[0], "paused", &v), 0);
	assert_int_equal(v, 1);
	blktap_ctl_msg_free(&m);
	close(fd);

	/* pausing again answers at once; unpause resumes once */
	td_call(f, BLKTAP_CTL_OP_PAUSE, &m);
	assert_int_equal(m.status, 0);
	assert_int_equal(fe.quiesced, 1);
	blktap_ctl_msg_free(&m);
	td_call(f, BLKTAP_CTL_OP_UNPAUSE, &m);
	assert_int_equal(m.status, 0);
	assert_int_equal(fe.resumed, 1);
	blktap_ctl_msg_free(&m);
	td_call(f, BLKTAP_CTL_OP_UNPAUSE, &m);
	assert_int_equal(fe.resumed, 1);
	blktap_ctl_msg_free(&m);

	/* a PAUSE still draining at destroy time is dropped cleanly */
	fe.inflight = 1;
	fd = td_request(f, BLKTAP_CTL_OP_PAUSE);
	assert_false(td_wait_reply(f, fd, 5));
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build_and_decode),
		cmocka_unit_test(test_bad_keys_values),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_socket_round_trip),
		cmocka_unit_test(test_connect_missing),
		cmocka_unit_test_setup_teardown(test_tapdisk_stats, td_setup, td_teardown),
		cmocka_unit_test_setup_teardown(test_tapdisk_refusals, td_setup, td_teardown),
		cmocka_unit_test_setup_teardown(test_tapdisk_pause, td_setup, td_teardown),
	};

	return cmocka_run_group_tests_name("control", tests, NULL, NULL);
}
