// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The control protocol of blktap/control.h: payload builder and parser,
 * whole-message socket I/O, and the client side (connect, one round trip).
 * The daemon uses the same encode/decode code.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "blktap/control.h"

static const char *const op_names[BLKTAP_CTL_OP_MAX] = {
	[BLKTAP_CTL_OP_CHECK] = "check",
	[BLKTAP_CTL_OP_LIST] = "list",
	[BLKTAP_CTL_OP_CREATE] = "create",
	[BLKTAP_CTL_OP_DESTROY] = "destroy",
	[BLKTAP_CTL_OP_PAUSE] = "pause",
	[BLKTAP_CTL_OP_UNPAUSE] = "unpause",
	[BLKTAP_CTL_OP_STATS] = "stats",
};

const char *blktap_ctl_op_name(unsigned int op)
{
	op &= ~BLKTAP_CTL_REPLY;
	return op < BLKTAP_CTL_OP_MAX && op_names[op] ? op_names[op] : "unknown";
}

static int key_ok(const char *key, size_t len)
{
	if (len == 0 || len > BLKTAP_CTL_MAX_KEY)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = key[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

static int buf_reserve(struct blktap_ctl_buf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->len + more + 1 <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

void blktap_ctl_buf_vadd(struct blktap_ctl_buf *b, const char *key,
			 const char *fmt, va_list ap)
{
	size_t klen = strlen(key);
	va_list aq;
	int n;

	if (b->err)
		return;
	if (!key_ok(key, klen)) {
		b->err = -EINVAL;
		return;
	}
	va_copy(aq, ap);
	n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0) {
		b->err = -EINVAL;
		return;
	}
	if (buf_reserve(b, klen + 1 + (size_t)n + 1)) {
		b->err = -ENOMEM;
		return;
	}
	memcpy(b->data + b->len, key, klen);
	b->data[b->len + klen] = '=';
	vsnprintf(b->data + b->len + klen + 1, (size_t)n + 1, fmt, ap);
	if (memchr(b->data + b->len + klen + 1, '\n', (size_t)n)) {
		b->err = -EINVAL;	/* a value cannot hold a newline */
		return;
	}
	b->len += klen + 1 + (size_t)n;
	b->data[b->len++] = '\n';
	b->data[b->len] = '\0';
	if (b->len > BLKTAP_CTL_MAX_PAYLOAD)
		b->err = -EMSGSIZE;
}

void blktap_ctl_buf_add(struct blktap_ctl_buf *b, const char *key,
			const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	blktap_ctl_buf_vadd(b, key, fmt, ap);
	va_end(ap);
}

void blktap_ctl_buf_end_record(struct blktap_ctl_buf *b)
{
	if (b->err)
		return;
	/* an empty record is no record */
	if (b->len == 0 || (b->len >= 2 && b->data[b->len - 2] == '\n'))
		return;
	if (buf_reserve(b, 1)) {
		b->err = -ENOMEM;
		return;
	}
	b->data[b->len++] = '\n';
	b->data[b->len] = '\0';
}

void blktap_ctl_buf_free(struct blktap_ctl_buf *b)
{
	free(b->data);
	*b = (struct blktap_ctl_buf){ 0 };
}

void blktap_ctl_hdr_init(struct blktap_ctl_hdr *h, uint16_t op, int32_t status,
			 uint32_t len)
{
	*h = (struct blktap_ctl_hdr){
		.magic = BLKTAP_CTL_MAGIC,
		.version = BLKTAP_CTL_VERSION,
		.op = op,
		.len = len,
		.status = status,
	};
}

int blktap_ctl_hdr_check(const struct blktap_ctl_hdr *h)
{
	if (h->magic != BLKTAP_CTL_MAGIC || h->version != BLKTAP_CTL_VERSION)
		return -EPROTO;
	if (h->len > BLKTAP_CTL_MAX_PAYLOAD)
		return -EMSGSIZE;
	return 0;
}

void blktap_ctl_msg_free(struct blktap_ctl_msg *msg)
{
	free(msg->text);
	free(msg->kvs);
	free(msg->rec);
	*msg = (struct blktap_ctl_msg){ 0 };
}

/*
 * Two passes over a private copy: count lines and records, then split in
 * place. Rejects anything blktap_ctl_buf_*() could not have produced.
 */
int blktap_ctl_decode(const void *payload, size_t len,
		      struct blktap_ctl_msg *msg)
{
	size_t nlines = 0, nrec = 0, r = 0, k = 0, pos;
	char *t;
	int in_rec = 0;

	*msg = (struct blktap_ctl_msg){ 0 };
	if (len > BLKTAP_CTL_MAX_PAYLOAD)
		return -EBADMSG;
	if (len && (memchr(payload, '\0', len) ||
		    ((const char *)payload)[len - 1] != '\n'))
		return -EBADMSG;
	t = malloc(len + 1);
	if (!t)
		return -ENOMEM;
	memcpy(t, payload, len);
	t[len] = '\0';

	/* pass 1: structure */
	for (pos = 0; pos < len;) {
		char *nl = strchr(t + pos, '\n');
		size_t ll = (size_t)(nl - (t + pos));
		char *eq;

		if (ll == 0) {
			if (!in_rec)
				goto bad;	/* blank line not ending a record */
			in_rec = 0;
		} else {
			eq = memchr(t + pos, '=', ll);
			if (!eq || !key_ok(t + pos, (size_t)(eq - (t + pos))))
				goto bad;
			if (!in_rec)
				nrec++;
			in_rec = 1;
			nlines++;
		}
		pos += ll + 1;
	}

	msg->text = t;
	msg->nrec = nrec;
	msg->rec = calloc(nrec ? nrec : 1, sizeof(*msg->rec));
	msg->kvs = calloc(nlines ? nlines : 1, sizeof(*msg->kvs));
	if (!msg->rec || !msg->kvs) {
		blktap_ctl_msg_free(msg);
		return -ENOMEM;
	}

	/* pass 2: split */
	in_rec = 0;
	for (pos = 0; pos < len;) {
		char *line = t + pos, *nl = strchr(line, '\n'), *eq;

		*nl = '\0';
		pos = (size_t)(nl - t) + 1;
		if (!*line) {
			in_rec = 0;
			r++;
			continue;
		}
		if (!in_rec)
			msg->rec[r].kv = &msg->kvs[k];
		in_rec = 1;
		eq = strchr(line, '=');
		*eq = '\0';
		if (blktap_ctl_get(&msg->rec[r], line)) {
			blktap_ctl_msg_free(msg);
			return -EBADMSG;	/* duplicate key */
		}
		msg->kvs[k].key = line;
		msg->kvs[k].val = eq + 1;
		msg->rec[r].n++;
		k++;
	}
	return 0;
bad:
	free(t);
	return -EBADMSG;
}

const char *blktap_ctl_get(const struct blktap_ctl_rec *rec, const char *key)
{
	if (!rec)
		return NULL;
	for (size_t i = 0; i < rec->n; i++)
		if (!strcmp(rec->kv[i].key, key))
			return rec->kv[i].val;
	return NULL;
}

int blktap_ctl_get_u64(const struct blktap_ctl_rec *rec, const char *key,
		       uint64_t *out)
{
	const char *v = blktap_ctl_get(rec, key);
	char *end;

	if (!v)
		return -ENOENT;
	if (*v < '0' || *v > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoull(v, &end, 10);
	if (*end || errno)
		return -EINVAL;
	return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int blktap_ctl_send(int fd, uint16_t op, int32_t status,
		    const struct blktap_ctl_buf *payload)
{
	struct blktap_ctl_hdr h;
	size_t len = payload ? payload->len : 0;
	int err;

	if (payload && payload->err)
		return payload->err;
	if (len > BLKTAP_CTL_MAX_PAYLOAD)
		return -EMSGSIZE;
	blktap_ctl_hdr_init(&h, op, status, (uint32_t)len);
	err = write_all(fd, &h, sizeof(h));
	if (!err && len)
		err = write_all(fd, payload->data, len);
	return err;
}

int blktap_ctl_recv(int fd, struct blktap_ctl_msg *msg)
{
	struct blktap_ctl_hdr h;
	char *payload;
	int err;

	*msg = (struct blktap_ctl_msg){ 0 };
	err = read_all(fd, &h, sizeof(h));
	if (err)
		return err;
	err = blktap_ctl_hdr_check(&h);
	if (err)
		return err;
	payload = malloc(h.len ? h.len : 1);
	if (!payload)
		return -ENOMEM;
	err = read_all(fd, payload, h.len);
	if (!err)
		err = blktap_ctl_decode(payload, h.len, msg);
	free(payload);
	if (err)
		return err;
	msg->op = h.op & ~BLKTAP_CTL_REPLY;
	msg->status = h.status;
	return 0;
}

int blktap_ctl_connect(const char *socket_path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, err;

	if (!socket_path)
		socket_path = BLKTAP_CTL_SOCKET;
	if (strlen(socket_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, socket_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int blktap_ctl_call(const char *socket_path, uint16_t op,
		    const struct blktap_ctl_buf *req,
		    struct blktap_ctl_msg *reply)
{
	int fd, err;

	*reply = (struct blktap_ctl_msg){ 0 };
	fd = blktap_ctl_connect(socket_path);
	if (fd < 0)
		return fd;
	err = blktap_ctl_send(fd, op, 0, req);
	if (!err)
		err = blktap_ctl_recv(fd, reply);
	close(fd);
	return err;
}
