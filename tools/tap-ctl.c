// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tap-ctl: the command-line client of blktapctrl. Every verb is one or a
 * few control requests (blktap/control.h); VM configs are read with the
 * project's one disk-line parser. Output that scripts read (create's
 * device path, list's key=value lines) goes to stdout, everything else to
 * stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blktap/control.h"
#include "blktap/disk-line.h"
#include "blktap/log.h"

static const char *sock_path;

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: tap-ctl [--socket PATH] COMMAND [OPTIONS]\n"
		"\n"
		"  list [-t TYPE] [-f FILE] [-m MINOR] [-p PID] [--json]\n"
		"  create -a TYPE:PATH [-R] [--nbd-unix PATH | --nbd-tcp HOST:PORT]\n"
		"         [--name EXPORT] [--kernel] [--vdev VDEV]\n"
		"  destroy -m MINOR | -p PID\n"
		"  pause -m MINOR | -p PID\n"
		"  unpause -m MINOR | -p PID\n"
		"  stats -m MINOR | -p PID\n"
		"  attach-config FILE [--nbd-dir DIR]\n"
		"  detach-config FILE\n"
		"  check [--nbd-only]\n"
		"  xl-config FILE          print FILE with tap: lines as block-tap lines\n"
		"\n"
		"TYPE is one of %s. Without --nbd-*, create makes a kernel disk\n"
		"(/dev/tapdevN, needs blktap.ko); with it, an NBD-only disk.\n"
		"The socket defaults to $BLKTAPCTRL_SOCKET, else %s.\n",
		td_disk_driver_list(), BLKTAP_CTL_SOCKET);
}

/* One round trip; on failure print why and return non-zero. */
static int call(const char *what, uint16_t op, const struct blktap_ctl_buf *req,
		struct blktap_ctl_msg *reply)
{
	int err = blktap_ctl_call(sock_path, op, req, reply);
	const char *msg;

	if (err) {
		if (err == -ENOENT || err == -ECONNREFUSED)
			td_log_err("%s: blktapctrl is not running (no answer on %s: %s)",
				   what, sock_path, strerror(-err));
		else if (err == -EACCES)
			td_log_err("%s: %s: permission denied (tap-ctl needs root)",
				   what, sock_path);
		else
			td_log_err("%s: talking to blktapctrl on %s: %s", what,
				   sock_path, strerror(-err));
		return 1;
	}
	if (reply->status) {
		msg = reply->nrec ? blktap_ctl_get(&reply->rec[0], "error") : NULL;
		td_log_err("%s: %s", what, msg ? msg : strerror(-reply->status));
		blktap_ctl_msg_free(reply);
		return 1;
	}
	return 0;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static bool json_number_key(const char *k)
{
	return !strcmp(k, "pid") || !strcmp(k, "minor") || !strcmp(k, "restarts");
}

static void print_json(const struct blktap_ctl_msg *m)
{
	printf("[");
	for (size_t i = 0; i < m->nrec; i++) {
		printf("%s\n  {", i ? "," : "");
		for (size_t k = 0; k < m->rec[i].n; k++) {
			const struct blktap_ctl_kv *kv = &m->rec[i].kv[k];

			printf("%s", k ? ", " : " ");
			json_str(kv->key);
			printf(": ");
			if (json_number_key(kv->key))
				printf("%s", kv->val);
			else if (!strcmp(kv->key, "readonly"))
				printf("%s", strcmp(kv->val, "0") ? "true" : "false");
			else
				json_str(kv->val);
		}
		printf(" }");
	}
	printf("%s]\n", m->nrec ? "\n" : "");
}

/* Xen's block-tap script splits this on commas: keep it key=value,... */
static void print_disk_line(const struct blktap_ctl_rec *r)
{
	static const char *const keys[] = {
		"pid", "minor", "state", "type", "file", "kind", "device",
		"readonly", "restarts",
	};
	const char *reason = blktap_ctl_get(r, "reason");
	const char *state = blktap_ctl_get(r, "state");

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *v = blktap_ctl_get(r, keys[i]);

		printf("%s%s=%s", i ? "," : "", keys[i], v ? v : "");
	}
	if (reason && state && strcmp(state, "running"))
		printf(",reason=%s", reason);
	putchar('\n');
}

static const struct option sel_opts[] = {
	{ "minor", required_argument, NULL, 'm' },
	{ "pid", required_argument, NULL, 'p' },
	{ "type", required_argument, NULL, 't' },
	{ "file", required_argument, NULL, 'f' },
	{ "json", no_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int bad_number(const char *opt, const char *v)
{
	char *end;

	strtoull(v, &end, 10);
	if (!*v || *end || *v == '-') {
		td_log_err("%s: '%s' is not a number", opt, v);
		return 1;
	}
	return 0;
}

static int cmd_list(int argc, char **argv)
{
	struct blktap_ctl_buf b = { 0 };
	struct blktap_ctl_msg m;
	bool json = false;
	int c, ret;

	while ((c = getopt_long(argc, argv, "m:p:t:f:h", sel_opts, NULL)) != -1) {
		switch (c) {
		case 'm':
		case 'p':
			if (bad_number(c == 'm' ? "-m" : "-p", optarg)) {
				blktap_ctl_buf_free(&b);
				return 2;
			}
			blktap_ctl_buf_add(&b, c == 'm' ? "minor" : "pid", "%s", optarg);
			break;
		case 't': blktap_ctl_buf_add(&b, "type", "%s", optarg); break;
		case 'f': blktap_ctl_buf_add(&b, "file", "%s", optarg); break;
		case 'j': json = true; break;
		default:
			usage(stderr);
			blktap_ctl_buf_free(&b);
			return 2;
		}
	}
	ret = call("list", BLKTAP_CTL_OP_LIST, &b, &m);
	blktap_ctl_buf_free(&b);
	if (ret)
		return ret;
	if (json)
		print_json(&m);
	else
		for (size_t i = 0; i < m.nrec; i++)
			print_disk_line(&m.rec[i]);
	blktap_ctl_msg_free(&m);
	return 0;
}

struct create_args {
	const char *target, *nbd_unix, *nbd_tcp, *name, *vdev;
	bool readonly, kernel;
};

/*
 * Create one disk; on success set *minor (if wanted) and print the device
 * on stdout, after the vdev if @with_vdev.
 */
static int create_disk(const struct create_args *a, const char *what,
		       unsigned long long *minor, bool with_vdev)
{
	struct blktap_ctl_buf b = { 0 };
	struct blktap_ctl_msg m;
	struct td_disk_error err;
	struct td_disk d;
	const char *dev;
	uint64_t v;
	int ret;

	if (td_disk_target_parse(a->target, &d, &err)) {
		td_log_err("%s: %s", what, err.msg);
		return 1;
	}
	blktap_ctl_buf_add(&b, "type", "%s", d.driver);
	blktap_ctl_buf_add(&b, "path", "%s", d.path);
	blktap_ctl_buf_add(&b, "readonly", "%d", a->readonly);
	if (a->nbd_unix)
		blktap_ctl_buf_add(&b, "nbd-unix", "%s", a->nbd_unix);
	if (a->nbd_tcp)
		blktap_ctl_buf_add(&b, "nbd-tcp", "%s", a->nbd_tcp);
	if (a->name)
		blktap_ctl_buf_add(&b, "name", "%s", a->name);
	if (a->vdev)
		blktap_ctl_buf_add(&b, "vdev", "%s", a->vdev);
	if (a->kernel)
		blktap_ctl_buf_add(&b, "kernel", "1");
	if (b.err) {
		td_log_err("%s: bad argument (a newline in a path?)", what);
		blktap_ctl_buf_free(&b);
		return 1;
	}
	ret = call(what, BLKTAP_CTL_OP_CREATE, &b, &m);
	blktap_ctl_buf_free(&b);
	if (ret)
		return ret;
	dev = m.nrec ? blktap_ctl_get(&m.rec[0], "device") : NULL;
	if (minor && m.nrec && !blktap_ctl_get_u64(&m.rec[0], "minor", &v))
		*minor = v;
	if (with_vdev)
		printf("%s ", a->vdev);
	printf("%s\n", dev ? dev : "?");
	blktap_ctl_msg_free(&m);
	return 0;
}

static int cmd_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "args", required_argument, NULL, 'a' },
		{ "readonly", no_argument, NULL, 'R' },
		{ "nbd-unix", required_argument, NULL, 'u' },
		{ "nbd-tcp", required_argument, NULL, 'T' },
		{ "name", required_argument, NULL, 'n' },
		{ "kernel", no_argument, NULL, 'k' },
		{ "vdev", required_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct create_args a = { 0 };
	char what[4200];
	const char *vdev = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "a:Rh", opts, NULL)) != -1) {
		switch (c) {
		case 'a': a.target = optarg; break;
		case 'R': a.readonly = true; break;
		case 'u': a.nbd_unix = optarg; break;
		case 'T': a.nbd_tcp = optarg; break;
		case 'n': a.name = optarg; break;
		case 'k': a.kernel = true; break;
		case 'V': vdev = optarg; break;
		default: usage(stderr); return 2;
		}
	}
	if (!a.target || optind != argc) {
		td_log_err("create: give the image as -a TYPE:PATH");
		return 2;
	}
	if (a.nbd_unix && a.nbd_unix[0] != '/') {
		td_log_err("create: --nbd-unix %s: give an absolute path", a.nbd_unix);
		return 2;
	}
	snprintf(what, sizeof(what), "create %s", a.target);
	a.vdev = vdev;
	return create_disk(&a, what, NULL, false);
}

/* Parse -m/-p into a request; 0, or 2 for bad usage. */
static int selector(int argc, char **argv, const char *verb,
		    struct blktap_ctl_buf *b)
{
	bool any = false;
	int c;

	while ((c = getopt_long(argc, argv, "m:p:h", sel_opts, NULL)) != -1) {
		switch (c) {
		case 'm':
		case 'p':
			if (bad_number(c == 'm' ? "-m" : "-p", optarg))
				return 2;
			blktap_ctl_buf_add(b, c == 'm' ? "minor" : "pid", "%s", optarg);
			any = true;
			break;
		default: usage(stderr); return 2;
		}
	}
	if (!any || optind != argc) {
		td_log_err("%s: give -m MINOR and/or -p PID", verb);
		return 2;
	}
	return 0;
}

static int cmd_simple(int argc, char **argv, const char *verb, uint16_t op)
{
	struct blktap_ctl_buf b = { 0 };
	struct blktap_ctl_msg m;
	int ret;

	ret = selector(argc, argv, verb, &b);
	if (!ret)
		ret = call(verb, op, &b, &m);
	blktap_ctl_buf_free(&b);
	if (ret)
		return ret;
	if (op == BLKTAP_CTL_OP_STATS)
		for (size_t i = 0; i < m.nrec; i++)
			for (size_t k = 0; k < m.rec[i].n; k++)
				printf("%s=%s\n", m.rec[i].kv[k].key, m.rec[i].kv[k].val);
	blktap_ctl_msg_free(&m);
	return 0;
}

static int destroy_minor(unsigned long long minor, const char *what)
{
	struct blktap_ctl_buf b = { 0 };
	struct blktap_ctl_msg m;
	int ret;

	blktap_ctl_buf_add(&b, "minor", "%llu", minor);
	ret = call(what, BLKTAP_CTL_OP_DESTROY, &b, &m);
	blktap_ctl_buf_free(&b);
	if (!ret)
		blktap_ctl_msg_free(&m);
	return ret;
}

static int load_config(const char *file, const char *verb,
		       struct td_disk_config *cfg, char **text)
{
	struct td_disk_error err;

	if (td_disk_config_load(file, cfg, &err, text)) {
		if (err.line)
			td_log_err("%s: %s:%u:%u: %s", verb, file, err.line,
				   err.column, err.msg);
		else
			td_log_err("%s: %s", verb, err.msg);
		return 1;
	}
	return 0;
}

static int cmd_attach_config(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "nbd-dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *nbd_dir = NULL, *file;
	struct td_disk_config cfg;
	unsigned long long *made;
	size_t nmade = 0;
	int c, ret = 0;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': nbd_dir = optarg; break;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		td_log_err("attach-config: give one VM config file");
		return 2;
	}
	file = argv[optind];
	if (load_config(file, "attach-config", &cfg, NULL))
		return 1;

	/* check everything before changing anything */
	for (size_t i = 0; i < cfg.n; i++) {
		const struct td_disk *d = &cfg.disks[i];
		struct stat st;

		if (!d->is_tap) {
			td_log_warn("%s:%u: skipping '%s': not a tap disk", file,
				    d->line, d->text);
			continue;
		}
		if (strcmp(d->driver, "ram") && stat(d->path, &st) < 0) {
			td_log_err("attach-config: %s:%u: %s: %s", file, d->line,
				   d->path, strerror(errno));
			ret = 1;
		}
		for (size_t j = 0; j < i; j++)
			if (cfg.disks[j].is_tap && !strcmp(cfg.disks[j].vdev, d->vdev)) {
				td_log_err("attach-config: %s:%u: %s is used twice",
					   file, d->line, d->vdev);
				ret = 1;
			}
	}
	made = calloc(cfg.n + 1, sizeof(*made));
	if (ret || !made)
		goto out;

	for (size_t i = 0; i < cfg.n && !ret; i++) {
		const struct td_disk *d = &cfg.disks[i];
		struct create_args a = { .readonly = d->readonly, .vdev = d->vdev };
		char target[TD_DISK_PATH_MAX + 32], sock[4096], what[4200];

		if (!d->is_tap)
			continue;
		snprintf(target, sizeof(target), "%s:%s", d->driver, d->path);
		a.target = target;
		if (nbd_dir) {
			snprintf(sock, sizeof(sock), "%s/%s.sock", nbd_dir, d->vdev);
			a.nbd_unix = sock;
		}
		snprintf(what, sizeof(what), "attach-config: %s:%u", file, d->line);
		ret = create_disk(&a, what, &made[nmade], true);
		if (!ret)
			nmade++;
	}
	if (ret && nmade) {
		td_log_err("attach-config: removing the %zu disk(s) already created",
			   nmade);
		for (size_t i = 0; i < nmade; i++)
			destroy_minor(made[i], "attach-config: undo");
	}
out:
	free(made);
	td_disk_config_free(&cfg);
	return ret;
}

static int cmd_detach_config(int argc, char **argv)
{
	struct td_disk_config cfg;
	int ret = 0;

	if (argc != 2) {
		td_log_err("detach-config: give one VM config file");
		return 2;
	}
	if (load_config(argv[1], "detach-config", &cfg, NULL))
		return 1;
	for (size_t i = 0; i < cfg.n; i++) {
		const struct td_disk *d = &cfg.disks[i];
		struct blktap_ctl_buf b = { 0 };
		struct blktap_ctl_msg m;
		uint64_t minor;

		if (!d->is_tap)
			continue;
		blktap_ctl_buf_add(&b, "type", "%s", d->driver);
		blktap_ctl_buf_add(&b, "file", "%s", d->path);
		if (call("detach-config", BLKTAP_CTL_OP_LIST, &b, &m)) {
			blktap_ctl_buf_free(&b);
			ret = 1;
			continue;
		}
		blktap_ctl_buf_free(&b);
		if (!m.nrec)
			td_log_warn("detach-config: %s:%u: %s:%s is not attached",
				    argv[1], d->line, d->driver, d->path);
		for (size_t r = 0; r < m.nrec; r++)
			if (!blktap_ctl_get_u64(&m.rec[r], "minor", &minor) &&
			    destroy_minor(minor, "detach-config"))
				ret = 1;
		blktap_ctl_msg_free(&m);
	}
	td_disk_config_free(&cfg);
	return ret;
}

/*
 * Print the config with its legacy tap lines rewritten to Xen's block-tap
 * form (xl 4.17 ignores "tap:" and would serve them with qdisk); everything
 * else is copied byte for byte. Needs no daemon.
 */
static int cmd_xl_config(int argc, char **argv)
{
	struct td_disk_config cfg;
	char *text = NULL, line[TD_DISK_PATH_MAX + 128];
	size_t pos = 0;

	if (argc != 2) {
		td_log_err("xl-config: give one VM config file");
		return 2;
	}
	if (load_config(argv[1], "xl-config", &cfg, &text))
		return 1;
	for (size_t i = 0; i < cfg.n; i++) {
		const struct td_disk *d = &cfg.disks[i];

		if (!d->is_tap || d->block_tap)
			continue;
		if (td_disk_block_tap_line(d, line, sizeof(line)) >= (int)sizeof(line)) {
			td_log_err("xl-config: %s:%u: line too long", argv[1], d->line);
			free(text);
			td_disk_config_free(&cfg);
			return 1;
		}
		fwrite(text + pos, 1, d->offset - pos, stdout);
		fputs(line, stdout);
		pos = d->offset + d->length;
	}
	fputs(text + pos, stdout);
	free(text);
	td_disk_config_free(&cfg);
	return fflush(stdout) ? 1 : 0;
}

static int cmd_check(int argc, char **argv)
{
	struct blktap_ctl_msg m;
	const char *kerr;
	bool nbd_only = argc == 2 && !strcmp(argv[1], "--nbd-only");
	uint64_t kernel = 0;

	if (argc > 2 || (argc == 2 && !nbd_only)) {
		td_log_err("check: the only option is --nbd-only");
		return 2;
	}
	if (call("check", BLKTAP_CTL_OP_CHECK, NULL, &m))
		return 1;
	blktap_ctl_get_u64(m.nrec ? &m.rec[0] : NULL, "kernel", &kernel);
	kerr = m.nrec ? blktap_ctl_get(&m.rec[0], "kernel-error") : NULL;
	if (!kernel && !nbd_only) {
		td_log_err("check: blktapctrl answers, but kernel disks are unavailable: %s",
			   kerr ? kerr : "unknown reason");
		blktap_ctl_msg_free(&m);
		return 1;
	}
	printf("ok: blktapctrl answers on %s; kernel disks %s\n", sock_path,
	       kernel ? "available" : "unavailable (NBD-only disks work)");
	blktap_ctl_msg_free(&m);
	return 0;
}

int main(int argc, char **argv)
{
	const char *verb;
	int i = 1;

	td_log_init("tap-ctl", TD_LOG_INFO);
	sock_path = getenv("BLKTAPCTRL_SOCKET");
	if (i + 1 < argc && !strcmp(argv[i], "--socket")) {
		sock_path = argv[i + 1];
		i += 2;
	}
	if (!sock_path || !*sock_path)
		sock_path = BLKTAP_CTL_SOCKET;
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	verb = argv[i];
	argc -= i;
	argv += i;
	optind = 1;
	if (!strcmp(verb, "list"))
		return cmd_list(argc, argv);
	if (!strcmp(verb, "create"))
		return cmd_create(argc, argv);
	if (!strcmp(verb, "destroy"))
		return cmd_simple(argc, argv, "destroy", BLKTAP_CTL_OP_DESTROY);
	if (!strcmp(verb, "pause"))
		return cmd_simple(argc, argv, "pause", BLKTAP_CTL_OP_PAUSE);
	if (!strcmp(verb, "unpause"))
		return cmd_simple(argc, argv, "unpause", BLKTAP_CTL_OP_UNPAUSE);
	if (!strcmp(verb, "stats"))
		return cmd_simple(argc, argv, "stats", BLKTAP_CTL_OP_STATS);
	if (!strcmp(verb, "attach-config"))
		return cmd_attach_config(argc, argv);
	if (!strcmp(verb, "detach-config"))
		return cmd_detach_config(argc, argv);
	if (!strcmp(verb, "check"))
		return cmd_check(argc, argv);
	if (!strcmp(verb, "xl-config"))
		return cmd_xl_config(argc, argv);
	if (!strcmp(verb, "help") || !strcmp(verb, "--help") || !strcmp(verb, "-h")) {
		usage(stdout);
		return 0;
	}
	td_log_err("unknown command '%s'", verb);
	usage(stderr);
	return 2;
}
