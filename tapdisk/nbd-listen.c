// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The NBD server's listening sockets (see nbd-server.h): a unix socket
 * (replacing a stale one, never a live one or a non-socket) and/or TCP
 * addresses, and accepting clients onto nbd_conn_new(). Accept errors
 * such as EMFILE pause the listener for ACCEPT_RETRY_NS instead of
 * spinning on a socket that stays readable.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "blktap/log.h"
#include "nbd-server.h"

#define LISTEN_BACKLOG		128
#define ACCEPT_RETRY_NS		(200ull * 1000000)	/* after EMFILE etc. */

struct nbd_listener {
	struct td_nbd_server *srv;
	int fd;
	struct td_event *ev;
	struct td_event *retry;		/* re-enables accepting after EMFILE */
	char name[128];
};

static void peer_name(const struct nbd_listener *l, int fd,
		      const struct sockaddr_storage *ss, char *buf, size_t n)
{
	char host[INET6_ADDRSTRLEN] = "?";

	switch (ss->ss_family) {
	case AF_INET: {
		const struct sockaddr_in *sin = (const void *)ss;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, n, "%s:%u", host, ntohs(sin->sin_port));
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *sin6 = (const void *)ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, n, "[%s]:%u", host, ntohs(sin6->sin6_port));
		break;
	}
	default:
		snprintf(buf, n, "%s#%d", l->name, fd);
		break;
	}
}

static void on_accept_retry(struct td_event *ev, uint32_t events, void *arg)
{
	struct nbd_listener *l = arg;

	(void)ev;
	(void)events;
	td_loop_del(l->retry);
	l->retry = NULL;
	if (l->ev && !l->srv->quiesced)
		td_loop_mod_fd(l->ev, EPOLLIN);
}

static void on_accept(struct td_event *ev, uint32_t events, void *arg)
{
	struct nbd_listener *l = arg;
	struct td_nbd_server *srv = l->srv;

	(void)events;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss = { .ss_family = AF_UNSPEC };
		socklen_t slen = sizeof(ss);
		char peer[160];
		int fd, one = 1;

		fd = accept4(l->fd, (struct sockaddr *)&ss, &slen,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			td_log_err("nbd: %s: accept: %s", l->name, strerror(errno));
			/* Out of fds or memory: pause rather than spin. */
			l->retry = td_loop_add_timer(srv->ctx->loop,
						     ACCEPT_RETRY_NS, 0,
						     on_accept_retry, l);
			if (l->retry)
				td_loop_mod_fd(ev, 0);
			return;
		}
		if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
				   sizeof(one));
		peer_name(l, fd, &ss, peer, sizeof(peer));
		nbd_conn_new(srv, fd, peer);
	}
}

static struct nbd_listener *add_listener(struct td_nbd_server *srv, int fd,
					 const char *name)
{
	struct nbd_listener *l, *lis;

	lis = realloc(srv->lis, (srv->nlis + 1) * sizeof(*lis));
	if (!lis)
		return NULL;
	srv->lis = lis;
	l = &lis[srv->nlis];
	memset(l, 0, sizeof(*l));
	l->srv = srv;
	l->fd = fd;
	snprintf(l->name, sizeof(l->name), "%s", name);
	srv->nlis++;
	return l;
}

/* Is somebody serving on the unix socket @path? */
static bool unix_socket_live(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live;

	if (fd < 0)
		return false;
	live = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
	close(fd);
	return live;
}

int nbd_listen_unix(struct td_nbd_server *srv, const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char name[128];
	struct stat st;
	int fd, err;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		td_log_err("nbd: unix socket path %s is too long (at most %zu bytes)",
			   path, sizeof(sun.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			td_log_err("nbd: %s exists and is not a socket; not replacing it",
				   path);
			return -EEXIST;
		}
		if (unix_socket_live(&sun)) {
			td_log_err("nbd: %s: another server is listening there",
				   path);
			return -EADDRINUSE;
		}
		unlink(path);		/* stale, from a process that died */
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		td_log_err("nbd: %s: socket: %s", path, strerror(errno));
		return err;
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		err = -errno;
		td_log_err("nbd: %s: bind: %s", path, strerror(errno));
		goto out_close;
	}
	srv->unix_path = strdup(path);
	if (!srv->unix_path) {
		err = -ENOMEM;
		unlink(path);
		goto out_close;
	}
	if (chmod(path, 0600) < 0)
		td_log_warn("nbd: %s: chmod 0600: %s", path, strerror(errno));
	if (listen(fd, LISTEN_BACKLOG) < 0) {
		err = -errno;
		td_log_err("nbd: %s: listen: %s", path, strerror(errno));
		goto out_close;
	}
	snprintf(name, sizeof(name), "unix:%s", path);
	if (!add_listener(srv, fd, name)) {
		err = -ENOMEM;
		goto out_close;
	}
	return 0;
out_close:
	close(fd);
	return err;
}

int nbd_listen_tcp(struct td_nbd_server *srv, const char *addr)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE,
	};
	struct addrinfo *res, *ai;
	char *copy = strdup(addr), *host, *port;
	int err = -ENOMEM, gai, bound = 0;

	if (!copy)
		goto out;
	if (nbd_split_hostport(copy, &host, &port)) {
		td_log_err("nbd: TCP address '%s': expected HOST:PORT, [IPV6]:PORT or :PORT",
			   addr);
		err = -EINVAL;
		goto out;
	}
	gai = getaddrinfo(host, port, &hints, &res);
	if (gai) {
		td_log_err("nbd: TCP address '%s': %s", addr, gai_strerror(gai));
		err = -EINVAL;
		goto out;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		char h[INET6_ADDRSTRLEN + 2], p[16], name[128];
		int fd, one = 1;

		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, h, sizeof(h), p,
				sizeof(p), NI_NUMERICHOST | NI_NUMERICSERV))
			snprintf(h, sizeof(h), "?");
		snprintf(name, sizeof(name), ai->ai_family == AF_INET6 ?
			 "tcp:[%s]:%s" : "tcp:%s:%s", h, p);
		fd = socket(ai->ai_family,
			    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			err = -errno;
			td_log_err("nbd: %s: socket: %s", name, strerror(errno));
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* Wildcards give both families: keep them apart. */
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
				   sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
		    listen(fd, LISTEN_BACKLOG) < 0) {
			err = -errno;
			td_log_err("nbd: %s: %s", name, strerror(errno));
			close(fd);
			continue;
		}
		if (!add_listener(srv, fd, name)) {
			err = -ENOMEM;
			close(fd);
			break;
		}
		td_log_info("nbd: listening on %s", name);
		bound++;
	}
	freeaddrinfo(res);
	if (bound)
		err = 0;
out:
	free(copy);
	return err;
}

void nbd_listeners_close(struct td_nbd_server *srv)
{
	for (int i = 0; i < srv->nlis; i++) {
		struct nbd_listener *l = &srv->lis[i];

		td_loop_del(l->retry);
		td_loop_del(l->ev);
		close(l->fd);
	}
	free(srv->lis);
	srv->lis = NULL;
	srv->nlis = 0;
	if (srv->unix_path) {
		unlink(srv->unix_path);
		free(srv->unix_path);
		srv->unix_path = NULL;
	}
}

int nbd_listeners_start(struct td_nbd_server *srv)
{
	for (int i = 0; i < srv->nlis; i++) {
		struct nbd_listener *l = &srv->lis[i];

		l->ev = td_loop_add_fd(srv->ctx->loop, l->fd, EPOLLIN,
				       on_accept, l);
		if (!l->ev) {
			int err = -errno;

			td_log_err("nbd: %s: epoll: %s", l->name, strerror(errno));
			return err;
		}
	}
	return 0;
}
