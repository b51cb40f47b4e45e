// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * An in-memory xenstore behind struct xs_ops, for the tests: nodes are
 * "path=value" pairs (writing a node creates its missing parents with empty
 * values, as xenstored does; rm removes the subtree), a watch fires once when
 * set and then for every write or rm at or below its path, and the fd is an
 * eventfd that counts the queued events.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "xenwatch.h"

struct fake_node {
	struct fake_node *next;
	char *path, *value;
};

struct fake_watch {
	struct fake_watch *next;
	char *path, *token;
};

struct fake_event {
	struct fake_event *next;
	char *path, *token;
};

struct fake_store {
	struct fake_node *nodes;
	struct fake_watch *watches;
	struct fake_event *head, **tail;
	unsigned int pending;
	int efd;
};

/* Is @path @base or below it? */
static bool at_or_below(const char *path, const char *base)
{
	size_t n = strlen(base);

	return !strncmp(path, base, n) && (path[n] == '\0' || path[n] == '/');
}

static struct fake_node *find(struct fake_store *s, const char *path)
{
	for (struct fake_node *n = s->nodes; n; n = n->next)
		if (!strcmp(n->path, path))
			return n;
	return NULL;
}

static void queue(struct fake_store *s, const char *path, const char *token)
{
	struct fake_event *e = calloc(1, sizeof(*e));
	uint64_t one = 1;

	if (!e)
		return;
	e->path = strdup(path);
	e->token = strdup(token);
	*s->tail = e;
	s->tail = &e->next;
	s->pending++;
	if (write(s->efd, &one, sizeof(one)) < 0)
		return;
}

static void fire(struct fake_store *s, const char *path)
{
	for (struct fake_watch *w = s->watches; w; w = w->next)
		if (at_or_below(path, w->path))
			queue(s, path, w->token);
}

static char *fake_read(void *h, const char *path, unsigned int *len)
{
	struct fake_node *n = find(h, path);
	char *v;

	if (!n) {
		errno = ENOENT;
		return NULL;
	}
	v = strdup(n->value);
	if (v && len)
		*len = (unsigned int)strlen(v);
	return v;
}

static int set(struct fake_store *s, const char *path, const char *value)
{
	struct fake_node *n = find(s, path);
	char *v = strdup(value);

	if (!v)
		return -1;
	if (n) {
		free(n->value);
		n->value = v;
		return 0;
	}
	n = calloc(1, sizeof(*n));
	if (!n || !(n->path = strdup(path))) {
		free(n);
		free(v);
		return -1;
	}
	n->value = v;
	n->next = s->nodes;
	s->nodes = n;
	return 0;
}

static int fake_write(void *h, const char *path, const char *value)
{
	struct fake_store *s = h;
	char *p = strdup(path), *slash;

	if (!p || !path[0] || path[strlen(path) - 1] == '/') {
		free(p);
		errno = EINVAL;
		return -1;
	}
	/* the missing parents, empty */
	for (slash = strchr(p + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (!find(s, p) && set(s, p, "") < 0) {
			free(p);
			return -1;
		}
		*slash = '/';
	}
	free(p);
	if (set(s, path, value) < 0)
		return -1;
	fire(s, path);
	return 0;
}

static int fake_rm(void *h, const char *path)
{
	struct fake_store *s = h;
	bool any = false;

	for (struct fake_node **pp = &s->nodes; *pp;) {
		struct fake_node *n = *pp;

		if (!at_or_below(n->path, path)) {
			pp = &n->next;
			continue;
		}
		*pp = n->next;
		free(n->path);
		free(n->value);
		free(n);
		any = true;
	}
	if (!any) {
		errno = ENOENT;
		return -1;
	}
	fire(s, path);
	return 0;
}

/* One block: the array, then the strings. */
static char **fake_directory(void *h, const char *path, unsigned int *num)
{
	struct fake_store *s = h;
	size_t plen = strlen(path), bytes = 0;
	unsigned int n = 0;
	char **vec, *p;

	if (!find(s, path)) {
		errno = ENOENT;
		return NULL;
	}
	for (struct fake_node *x = s->nodes; x; x = x->next)
		if (!strncmp(x->path, path, plen) && x->path[plen] == '/' &&
		    !strchr(x->path + plen + 1, '/')) {
			n++;
			bytes += strlen(x->path + plen + 1) + 1;
		}
	vec = malloc((n + 1) * sizeof(*vec) + bytes);
	if (!vec)
		return NULL;
	p = (char *)(vec + n + 1);
	n = 0;
	for (struct fake_node *x = s->nodes; x; x = x->next)
		if (!strncmp(x->path, path, plen) && x->path[plen] == '/' &&
		    !strchr(x->path + plen + 1, '/')) {
			vec[n++] = p;
			strcpy(p, x->path + plen + 1);
			p += strlen(p) + 1;
		}
	vec[n] = NULL;
	*num = n;
	return vec;
}

static int fake_watch(void *h, const char *path, const char *token)
{
	struct fake_store *s = h;
	struct fake_watch *w = calloc(1, sizeof(*w));

	if (!w)
		return -1;
	w->path = strdup(path);
	w->token = strdup(token);
	w->next = s->watches;
	s->watches = w;
	queue(s, path, token);	/* xenstored fires a new watch once */
	return 0;
}

static char **fake_read_watch(void *h, unsigned int *num)
{
	struct fake_store *s = h;
	struct fake_event *e = s->head;
	size_t lp, lt;
	uint64_t v;
	char **vec;

	if (!e) {
		errno = EAGAIN;
		return NULL;
	}
	lp = strlen(e->path) + 1;
	lt = strlen(e->token) + 1;
	vec = malloc(2 * sizeof(*vec) + lp + lt);
	if (!vec)
		return NULL;
	vec[0] = (char *)(vec + 2);
	vec[1] = vec[0] + lp;
	memcpy(vec[0], e->path, lp);
	memcpy(vec[1], e->token, lt);
	*num = 2;
	s->head = e->next;
	if (!s->head)
		s->tail = &s->head;
	s->pending--;
	if (read(s->efd, &v, sizeof(v)) < 0)
		v = 0;
	free(e->path);
	free(e->token);
	free(e);
	return vec;
}

static int fake_fileno(void *h)
{
	return ((struct fake_store *)h)->efd;
}

static void fake_close(void *h)
{
	struct fake_store *s = h;

	if (!s)
		return;
	while (s->nodes) {
		struct fake_node *n = s->nodes;

		s->nodes = n->next;
		free(n->path);
		free(n->value);
		free(n);
	}
	while (s->watches) {
		struct fake_watch *w = s->watches;

		s->watches = w->next;
		free(w->path);
		free(w->token);
		free(w);
	}
	while (s->head) {
		struct fake_event *e = s->head;

		s->head = e->next;
		free(e->path);
		free(e->token);
		free(e);
	}
	close(s->efd);
	free(s);
}

unsigned int xs_fake_pending(void *h)
{
	return ((struct fake_store *)h)->pending;
}

void *xs_fake_open(void)
{
	struct fake_store *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->tail = &s->head;
	s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
	if (s->efd < 0) {
		free(s);
		return NULL;
	}
	return s;
}

const struct xs_ops xs_fake_ops = {
	.read = fake_read,
	.write = fake_write,
	.rm = fake_rm,
	.directory = fake_directory,
	.watch = fake_watch,
	.read_watch = fake_read_watch,
	.fileno = fake_fileno,
	.close = fake_close,
};
