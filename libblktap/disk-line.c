// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The disk-line and config-file parser of blktap/disk-line.h. Positions are
 * tracked as byte offsets into the line, turned into columns only when an
 * error is reported, so a line inside a config file reports its position
 * in the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blktap/disk-line.h"

static const char *const drivers[] = { "aio", "sync", "ram", "qcow", "vmdk" };

/* xl keys that may appear in a tap line and that we accept and ignore. */
static const char *const ignored_keys[] = {
	"devtype", "backend", "discard", "no-discard", "direct-io-safe",
	"specification", "trusted", "untrusted",
};

bool td_disk_driver_known(const char *name)
{
	for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
		if (!strcmp(name, drivers[i]))
			return true;
	return false;
}

const char *td_disk_driver_list(void)
{
	return "aio, sync, ram, qcow, vmdk";
}

/* Where the text being parsed sits, for error positions. */
struct where {
	unsigned int line, col;		/* of offset 0 */
};

static int fail(struct td_disk_error *err, const struct where *w, size_t off,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail(struct td_disk_error *err, const struct where *w, size_t off,
		const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return -EINVAL;
	err->line = w->line;
	err->column = w->col + (unsigned int)off;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int copy_field(char *dst, size_t size, const char *src, size_t len)
{
	if (len >= size)
		return -1;
	memcpy(dst, src, len);
	dst[len] = '\0';
	return 0;
}

static bool has_prefix(const char *s, size_t len, const char *p)
{
	size_t pl = strlen(p);

	return len >= pl && !strncmp(s, p, pl);
}

/*
 * "[tap:|tap2:][tapdisk:]driver:path" at @s (@len bytes, at offset @off of
 * the line).
 */
static int parse_target(const char *s, size_t len, size_t off,
			struct td_disk *d, const struct where *w,
			struct td_disk_error *err)
{
	const char *colon;
	size_t skip = 0, dlen;

	if (has_prefix(s, len, "tap:"))
		skip = 4;
	else if (has_prefix(s, len, "tap2:"))
		skip = 5;
	if (has_prefix(s + skip, len - skip, "tapdisk:"))
		skip += 8;
	s += skip, len -= skip, off += skip;

	colon = memchr(s, ':', len);
	if (!colon)
		return fail(err, w, off,
			    "expected DRIVER:PATH (driver one of %s), got '%.*s'",
			    td_disk_driver_list(), (int)len, s);
	dlen = (size_t)(colon - s);
	if (copy_field(d->driver, sizeof(d->driver), s, dlen) ||
	    !td_disk_driver_known(d->driver))
		return fail(err, w, off, "unknown driver '%.*s' (known: %s)",
			    (int)dlen, s, td_disk_driver_list());
	s += dlen + 1, len -= dlen + 1, off += dlen + 1;
	if (len == 0)
		return fail(err, w, off, "no image path after '%s:'", d->driver);
	if (s[0] != '/')
		return fail(err, w, off,
			    "image path '%.*s' is not absolute (start it with /)",
			    (int)len, s);
	if (copy_field(d->path, sizeof(d->path), s, len))
		return fail(err, w, off, "image path is too long (%zu bytes)", len);
	d->is_tap = true;
	return 0;
}

static int parse_mode(const char *s, size_t len, size_t off, struct td_disk *d,
		      const struct where *w, struct td_disk_error *err)
{
	if ((len == 1 && s[0] == 'w') || (len == 2 && !strncmp(s, "rw", 2)))
		d->readonly = false;
	else if ((len == 1 && s[0] == 'r') || (len == 2 && !strncmp(s, "ro", 2)))
		d->readonly = true;
	else
		return fail(err, w, off, "bad mode '%.*s' (use r or w)", (int)len, s);
	return 0;
}

static int parse_vdev(const char *s, size_t len, size_t off, struct td_disk *d,
		      const struct where *w, struct td_disk_error *err)
{
	if (len == 0)
		return fail(err, w, off, "empty virtual device (e.g. xvda)");
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == ':' || s[i] == '_'))
			return fail(err, w, off + i,
				    "bad character '%c' in virtual device '%.*s'",
				    s[i], (int)len, s);
	if (copy_field(d->vdev, sizeof(d->vdev), s, len))
		return fail(err, w, off, "virtual device name is too long");
	return 0;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* A piece of the line: @len bytes at offset @off. */
struct span {
	const char *s;
	size_t len, off;
};

/*
 * The parser proper, on @len bytes of @line placed at @w. Fields are
 * collected first and checked once we know the line is a tap line, so a
 * line for another backend is never rejected for its own syntax.
 */
static int parse_line(const char *line, size_t len, const struct where *w,
		      struct td_disk *d, struct td_disk_error *err)
{
	struct span target = { 0 }, vdev = { 0 }, mode = { 0 }, script = { 0 };
	struct span format = { 0 }, unknown = { 0 }, extra = { 0 };
	size_t pos = 0, npos = 0;
	bool backend_tap = false, twice = false;
	int ret;

	memset(d, 0, sizeof(*d));
	if (len == 0)
		return fail(err, w, 0, "empty disk line");
	while (pos <= len) {
		size_t start, end, flen;
		const char *f, *eq;

		while (pos < len && is_space(line[pos]))
			pos++;
		start = pos;
		f = line + start;
		/* target= takes the rest of the line, commas and all (as xl) */
		if (has_prefix(f, len - start, "target=")) {
			end = len;
		} else {
			const char *c = memchr(f, ',', len - start);

			end = c ? (size_t)(c - line) : len;
		}
		pos = end + 1;
		while (end > start && is_space(line[end - 1]))
			end--;
		flen = end - start;
		if (flen == 0)
			return fail(err, w, start, "empty field");
		eq = memchr(f, '=', flen);
		if (eq && !memchr(f, ':', (size_t)(eq - f)) &&
		    !memchr(f, '/', (size_t)(eq - f))) {
			size_t klen = (size_t)(eq - f);
			struct span v = { eq + 1, flen - klen - 1, start + klen + 1 };

#define KEY(k) (klen == strlen(k) && !strncmp(f, k, klen))
			if (KEY("target")) {
				if (target.s)
					twice = true;
				else
					target = v;
			} else if (KEY("vdev")) {
				vdev = v;
			} else if (KEY("access") || KEY("mode")) {
				mode = v;
			} else if (KEY("script")) {
				script = v;
			} else if (KEY("format")) {
				format = v;
			} else if (KEY("backendtype")) {
				backend_tap = v.len == 3 && !strncmp(v.s, "tap", 3);
			} else if (!unknown.s) {
				bool ok = false;

				for (size_t i = 0; i < sizeof(ignored_keys) /
						     sizeof(ignored_keys[0]); i++)
					if (KEY(ignored_keys[i]))
						ok = true;
				if (!ok)
					unknown = (struct span){ f, klen, start };
			}
#undef KEY
		} else {
			struct span v = { f, flen, start };

			/* positional: target, vdev, mode */
			switch (npos++) {
			case 0:
				if (target.s)
					twice = true;
				else
					target = v;
				break;
			case 1: vdev = v; break;
			case 2: mode = v; break;
			default:
				if (!extra.s)
					extra = v;
			}
		}
	}

	/* Is it ours? */
	if (script.s && !(script.len == 9 && !strncmp(script.s, "block-tap", 9)))
		return -ENOTSUP;
	if (!script.s && !backend_tap && target.s &&
	    !has_prefix(target.s, target.len, "tap:") &&
	    !has_prefix(target.s, target.len, "tap2:"))
		return -ENOTSUP;
	if (!target.s && !script.s && !backend_tap)
		return -ENOTSUP;

	if (!target.s)
		return fail(err, w, len, "no image (expected tap:DRIVER:PATH or target=)");
	if (twice)
		return fail(err, w, target.off, "image given twice");
	if (unknown.s)
		return fail(err, w, unknown.off, "unknown key '%.*s'",
			    (int)unknown.len, unknown.s);
	if (extra.s)
		return fail(err, w, extra.off, "unexpected field '%.*s' after the mode",
			    (int)extra.len, extra.s);

	if (backend_tap && format.s && !memchr(target.s, ':', target.len)) {
		/* xl: backendtype=tap,format=raw|qcow|vmdk,target=/path */
		char drv[TD_DISK_DRIVER_MAX];
		char *buf;
		size_t blen;

		if (format.len == 3 && !strncmp(format.s, "raw", 3))
			strcpy(drv, "aio");
		else if (copy_field(drv, sizeof(drv), format.s, format.len))
			drv[0] = '\0';
		if (!td_disk_driver_known(drv))
			return fail(err, w, format.off,
				    "format '%.*s' has no tap driver (known: raw, %s)",
				    (int)format.len, format.s, td_disk_driver_list());
		blen = strlen(drv) + 1 + target.len;
		buf = malloc(blen + 1);
		if (!buf)
			return -ENOMEM;
		snprintf(buf, blen + 1, "%s:%.*s", drv, (int)target.len, target.s);
		ret = parse_target(buf, blen, target.off - strlen(drv) - 1, d, w,
				   err);
		free(buf);
	} else {
		ret = parse_target(target.s, target.len, target.off, d, w, err);
	}
	if (ret)
		return ret;
	d->block_tap = script.s != NULL;
	if (!vdev.s)
		return fail(err, w, len, "no virtual device (e.g. ',xvda,w')");
	ret = parse_vdev(vdev.s, vdev.len, vdev.off, d, w, err);
	if (ret)
		return ret;
	d->readonly = false;	/* xl's default access is rw */
	if (mode.s)
		ret = parse_mode(mode.s, mode.len, mode.off, d, w, err);
	return ret;
}

int td_disk_line_parse(const char *line, struct td_disk *disk,
		       struct td_disk_error *err)
{
	struct where w = { 1, 1 };

	if (err)
		memset(err, 0, sizeof(*err));
	return parse_line(line, strlen(line), &w, disk, err);
}

int td_disk_target_parse(const char *target, struct td_disk *disk,
			 struct td_disk_error *err)
{
	struct where w = { 1, 1 };

	if (err)
		memset(err, 0, sizeof(*err));
	memset(disk, 0, sizeof(*disk));
	return parse_target(target, strlen(target), 0, disk, &w, err);
}

/* --- config files --- */

struct lexer {
	const char *s;
	size_t len, pos;
	unsigned int line, col;
	struct td_disk_error *err;
};

static void advance(struct lexer *lx)
{
	if (lx->s[lx->pos] == '\n') {
		lx->line++;
		lx->col = 1;
	} else {
		lx->col++;
	}
	lx->pos++;
}

static void skip_blank(struct lexer *lx)
{
	while (lx->pos < lx->len) {
		char c = lx->s[lx->pos];

		if (c == '#') {
			while (lx->pos < lx->len && lx->s[lx->pos] != '\n')
				advance(lx);
		} else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			advance(lx);
		} else {
			break;
		}
	}
}

static int lex_fail(struct lexer *lx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int lex_fail(struct lexer *lx, const char *fmt, ...)
{
	va_list ap;

	if (!lx->err)
		return -EINVAL;
	lx->err->line = lx->line;
	lx->err->column = lx->col;
	va_start(ap, fmt);
	vsnprintf(lx->err->msg, sizeof(lx->err->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static const char *describe(struct lexer *lx)
{
	static __thread char buf[16];
	char c;

	if (lx->pos >= lx->len)
		return "the end of the file";
	c = lx->s[lx->pos];
	if (c >= 0x20 && c < 0x7f)
		snprintf(buf, sizeof(buf), "'%c'", c);
	else
		snprintf(buf, sizeof(buf), "byte 0x%02x", (unsigned char)c);
	return buf;
}

/* A quoted string; *out points into the text (no escapes in xl configs). */
static int lex_string(struct lexer *lx, const char **out, size_t *outlen,
		      struct where *at)
{
	char q = lx->s[lx->pos];
	struct where start = { lx->line, lx->col };

	advance(lx);
	*out = lx->s + lx->pos;
	at->line = lx->line;
	at->col = lx->col;
	while (lx->pos < lx->len && lx->s[lx->pos] != q) {
		if (lx->s[lx->pos] == '\n' || lx->s[lx->pos] == '\0') {
			lx->line = start.line;
			lx->col = start.col;
			return lex_fail(lx, "unterminated string");
		}
		advance(lx);
	}
	if (lx->pos >= lx->len) {
		lx->line = start.line;
		lx->col = start.col;
		return lex_fail(lx, "unterminated string");
	}
	*outlen = (size_t)(lx->s + lx->pos - *out);
	advance(lx);
	return 0;
}

static bool is_word(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-' ||
	       c == '+';
}

static int add_disk(struct td_disk_config *cfg, const char *s, size_t len,
		    const struct where *at, struct lexer *lx)
{
	struct td_disk_error *err = lx->err;
	struct td_disk *d;
	int ret;

	d = realloc(cfg->disks, (cfg->n + 1) * sizeof(*d));
	if (!d)
		return -ENOMEM;
	cfg->disks = d;
	d = &cfg->disks[cfg->n];
	ret = parse_line(s, len, at, d, err);
	if (ret == -ENOTSUP) {
		memset(d, 0, sizeof(*d));
		ret = 0;
	}
	if (ret)
		return ret;
	d->text = strndup(s, len);
	if (!d->text)
		return -ENOMEM;
	d->line = at->line;
	d->column = at->col;
	d->offset = (size_t)(s - lx->s);
	d->length = len;
	cfg->n++;
	return 0;
}

/* A value: string, word/number, or a list of values. */
static int lex_value(struct lexer *lx, bool is_disk, int depth,
		     struct td_disk_config *cfg)
{
	const char *s = NULL;
	size_t len = 0;
	struct where at = { 0, 0 };
	int ret;
	char c;

	skip_blank(lx);
	if (lx->pos >= lx->len)
		return lex_fail(lx, "expected a value, found the end of the file");
	c = lx->s[lx->pos];
	if (c == '\'' || c == '"') {
		if (is_disk && depth == 0)
			return lex_fail(lx, "disk must be a list: disk = [ '...' ]");
		ret = lex_string(lx, &s, &len, &at);
		if (ret || !is_disk)
			return ret;
		return add_disk(cfg, s, len, &at, lx);
	}
	if (c == '[') {
		if (depth > 0)
			return lex_fail(lx, "nested lists are not supported");
		advance(lx);
		for (;;) {
			skip_blank(lx);
			if (lx->pos < lx->len && lx->s[lx->pos] == ']') {
				advance(lx);
				return 0;
			}
			ret = lex_value(lx, is_disk, depth + 1, cfg);
			if (ret)
				return ret;
			skip_blank(lx);
			if (lx->pos < lx->len && lx->s[lx->pos] == ',') {
				advance(lx);
				continue;
			}
			if (lx->pos < lx->len && lx->s[lx->pos] == ']')
				continue;
			return lex_fail(lx, "expected ',' or ']' in a list, found %s",
					describe(lx));
		}
	}
	if (is_word(c)) {
		if (is_disk)
			return lex_fail(lx, "disk entries must be quoted strings");
		while (lx->pos < lx->len && is_word(lx->s[lx->pos]))
			advance(lx);
		return 0;
	}
	return lex_fail(lx, "expected a value, found %s", describe(lx));
}

int td_disk_config_parse(const char *text, size_t len,
			 struct td_disk_config *cfg, struct td_disk_error *err)
{
	struct lexer lx = { .s = text, .len = len, .line = 1, .col = 1, .err = err };
	unsigned int disk_line = 0;
	int ret;

	if (err)
		memset(err, 0, sizeof(*err));
	cfg->n = 0;
	cfg->disks = NULL;
	for (;;) {
		size_t kstart;
		bool is_disk;

		skip_blank(&lx);
		if (lx.pos >= lx.len)
			return 0;
		kstart = lx.pos;
		if (!is_word(text[lx.pos]) || (text[lx.pos] >= '0' && text[lx.pos] <= '9')) {
			ret = lex_fail(&lx, "expected a setting name, found %s",
				       describe(&lx));
			goto out;
		}
		while (lx.pos < lx.len && is_word(text[lx.pos]))
			advance(&lx);
		is_disk = lx.pos - kstart == 4 && !strncmp(text + kstart, "disk", 4);
		if (is_disk) {
			if (disk_line) {
				lx.col -= 4;
				ret = lex_fail(&lx, "disk is set twice (first on line %u)",
					       disk_line);
				goto out;
			}
			disk_line = lx.line;
		}
		skip_blank(&lx);
		if (lx.pos >= lx.len || text[lx.pos] != '=') {
			ret = lex_fail(&lx, "expected '=' after '%.*s', found %s",
				       (int)(lx.pos - kstart), text + kstart,
				       describe(&lx));
			goto out;
		}
		advance(&lx);
		ret = lex_value(&lx, is_disk, 0, cfg);
		if (ret)
			goto out;
		skip_blank(&lx);
		if (lx.pos < lx.len && text[lx.pos] == ';')
			advance(&lx);
	}
out:
	td_disk_config_free(cfg);
	return ret;
}

int td_disk_config_load(const char *path, struct td_disk_config *cfg,
			struct td_disk_error *err, char **textp)
{
	struct stat st;
	char *text;
	ssize_t n;
	int fd, ret;

	cfg->n = 0;
	cfg->disks = NULL;
	if (err)
		memset(err, 0, sizeof(*err));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto fail_msg;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto fail_close;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > (1 << 20)) {
		ret = S_ISREG(st.st_mode) ? -EFBIG : -EINVAL;
		goto fail_close;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		ret = -ENOMEM;
		goto fail_close;
	}
	n = read(fd, text, (size_t)st.st_size);
	if (n < 0) {
		ret = -errno;
		free(text);
		goto fail_close;
	}
	close(fd);
	text[n] = '\0';
	ret = td_disk_config_parse(text, (size_t)n, cfg, err);
	if (textp && !ret)
		*textp = text;
	else
		free(text);
	return ret;

fail_close:
	close(fd);
fail_msg:
	if (err)
		snprintf(err->msg, sizeof(err->msg), "%s: %s", path,
			 ret == -EINVAL ? "not a regular file" :
			 ret == -EFBIG ? "larger than 1 MiB, not a VM config" :
			 strerror(-ret));
	return ret;
}

void td_disk_config_free(struct td_disk_config *cfg)
{
	for (size_t i = 0; i < cfg->n; i++)
		free(cfg->disks[i].text);
	free(cfg->disks);
	cfg->n = 0;
	cfg->disks = NULL;
}

int td_disk_block_tap_line(const struct td_disk *disk, char *buf, size_t len)
{
	return snprintf(buf, len, "script=block-tap,vdev=%s%s,target=%s:%s",
			disk->vdev, disk->readonly ? ",access=r" : "", disk->driver,
			disk->path);
}
