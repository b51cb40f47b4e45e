// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * VMDK formats without I/O (see vmdk-format.h): the sparse header, the text
 * descriptor, grain markers and compressed grains. Every input is treated
 * as hostile: lengths are checked before use and arithmetic cannot wrap.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "vmdk-format.h"

static int fail(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why && whylen) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* ---- sparse header ---- */

/* Is [@off, @off + @bytes) (offset in sectors) inside a file of @size bytes? */
static bool in_file(uint64_t off_sectors, uint64_t bytes, uint64_t size)
{
	uint64_t off, end;

	if (__builtin_mul_overflow(off_sectors, VMDK_SECTOR, &off) ||
	    __builtin_add_overflow(off, bytes, &end))
		return false;
	return end <= size;
}

int vmdk_header_parse(const void *buf, size_t len, uint64_t file_size,
		      struct vmdk_header *h, char *why, size_t whylen)
{
	const uint8_t *b = buf;
	uint64_t grains, gd_bytes;

	memset(h, 0, sizeof(*h));
	if (len < VMDK_HEADER_SIZE || file_size < VMDK_HEADER_SIZE)
		return fail(why, whylen,
			    "the file is shorter than a sparse extent header (%u bytes)",
			    VMDK_HEADER_SIZE);
	if (vmdk_le32(b) != VMDK_MAGIC)
		return fail(why, whylen,
			    "bad magic %02x %02x %02x %02x: not a VMDK sparse extent (expected 'KDMV')",
			    b[0], b[1], b[2], b[3]);
	h->version = vmdk_le32(b + 4);
	h->flags = vmdk_le32(b + 8);
	h->capacity = vmdk_le64(b + 12);
	h->grain_sectors = vmdk_le64(b + 20);
	h->desc_offset = vmdk_le64(b + 28);
	h->desc_size = vmdk_le64(b + 36);
	h->gtes_per_gt = vmdk_le32(b + 44);
	h->rgd_offset = vmdk_le64(b + 48);
	h->gd_offset = vmdk_le64(b + 56);
	h->overhead = vmdk_le64(b + 64);
	h->unclean = b[72];
	h->compress = b[77] | (uint16_t)b[78] << 8;

	if (h->version < 1 || h->version > 3)
		return fail(why, whylen, "unsupported sparse header version %u (1 to 3 are known)",
			    h->version);
	if ((h->flags & VMDK_FLAG_NL_TEST) &&
	    (b[73] != '\n' || b[74] != ' ' || b[75] != '\r' || b[76] != '\n'))
		return fail(why, whylen,
			    "the header's newline test bytes are mangled (was the file copied in text mode?)");
	if (!h->grain_sectors)
		return fail(why, whylen, "grain size is 0");
	if (h->grain_sectors & (h->grain_sectors - 1))
		return fail(why, whylen, "grain size %llu sectors is not a power of two",
			    (unsigned long long)h->grain_sectors);
	if (h->grain_sectors > VMDK_MAX_GRAIN_SECTORS)
		return fail(why, whylen, "grain size %llu sectors is larger than the %u we accept",
			    (unsigned long long)h->grain_sectors, VMDK_MAX_GRAIN_SECTORS);
	if (!h->gtes_per_gt || h->gtes_per_gt > VMDK_MAX_GTES_PER_GT)
		return fail(why, whylen, "%u entries per grain table (1 to %u are valid)",
			    h->gtes_per_gt, VMDK_MAX_GTES_PER_GT);
	if (h->capacity > VMDK_MAX_CAPACITY)
		return fail(why, whylen, "capacity of %llu sectors is beyond the %llu we accept",
			    (unsigned long long)h->capacity,
			    (unsigned long long)VMDK_MAX_CAPACITY);
	if ((h->flags & VMDK_FLAG_COMPRESSED) && h->compress != VMDK_COMPRESS_DEFLATE)
		return fail(why, whylen, "unknown compression algorithm %u", h->compress);

	grains = (h->capacity + h->grain_sectors - 1) / h->grain_sectors;
	gd_bytes = (grains + h->gtes_per_gt - 1) / h->gtes_per_gt;
	if (gd_bytes > UINT32_MAX / 4)
		return fail(why, whylen,
			    "a grain directory of %llu entries (capacity %llu sectors, %llu-sector grains, %u per table) is too large",
			    (unsigned long long)gd_bytes, (unsigned long long)h->capacity,
			    (unsigned long long)h->grain_sectors, h->gtes_per_gt);
	h->gd_entries = (uint32_t)gd_bytes;
	gd_bytes *= 4;

	if (h->desc_offset) {
		if (h->desc_size > VMDK_MAX_DESC_SIZE / VMDK_SECTOR)
			return fail(why, whylen, "embedded descriptor of %llu sectors is too large",
				    (unsigned long long)h->desc_size);
		if (!in_file(h->desc_offset, h->desc_size * VMDK_SECTOR, file_size))
			return fail(why, whylen,
				    "embedded descriptor at sector %llu (%llu sectors) lies past the end of the file (%llu bytes)",
				    (unsigned long long)h->desc_offset,
				    (unsigned long long)h->desc_size,
				    (unsigned long long)file_size);
	}
	if (h->gd_offset == VMDK_GD_AT_END)
		return 0;
	if (!h->gd_offset)
		return fail(why, whylen, "no grain directory (its offset is 0)");
	if (!in_file(h->gd_offset, gd_bytes, file_size))
		return fail(why, whylen,
			    "grain directory at sector %llu (%llu bytes) lies past the end of the file (%llu bytes); the file is truncated or corrupt",
			    (unsigned long long)h->gd_offset,
			    (unsigned long long)gd_bytes,
			    (unsigned long long)file_size);
	if ((h->flags & VMDK_FLAG_RGD) &&
	    !in_file(h->rgd_offset, gd_bytes, file_size))
		return fail(why, whylen,
			    "redundant grain directory at sector %llu (%llu bytes) lies past the end of the file (%llu bytes)",
			    (unsigned long long)h->rgd_offset,
			    (unsigned long long)gd_bytes,
			    (unsigned long long)file_size);
	return 0;
}

void vmdk_header_encode(const struct vmdk_header *h, void *buf)
{
	uint8_t *b = buf;

	memset(b, 0, VMDK_HEADER_SIZE);
	vmdk_put_le32(b, VMDK_MAGIC);
	vmdk_put_le32(b + 4, h->version);
	vmdk_put_le32(b + 8, h->flags);
	vmdk_put_le64(b + 12, h->capacity);
	vmdk_put_le64(b + 20, h->grain_sectors);
	vmdk_put_le64(b + 28, h->desc_offset);
	vmdk_put_le64(b + 36, h->desc_size);
	vmdk_put_le32(b + 44, h->gtes_per_gt);
	vmdk_put_le64(b + 48, h->rgd_offset);
	vmdk_put_le64(b + 56, h->gd_offset);
	vmdk_put_le64(b + 64, h->overhead);
	b[72] = h->unclean;
	b[73] = '\n';
	b[74] = ' ';
	b[75] = '\r';
	b[76] = '\n';
	b[77] = (uint8_t)h->compress;
	b[78] = (uint8_t)(h->compress >> 8);
}

/* ---- descriptor ---- */

static char *skip_ws(char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

static void trim_end(char *p)
{
	size_t n = strlen(p);

	while (n && isspace((unsigned char)p[n - 1]))
		p[--n] = '\0';
}

/* Next blank-separated word of @*p, NUL-terminated in place; NULL at end. */
static char *word(char **p)
{
	char *s = skip_ws(*p), *e;

	if (!*s)
		return NULL;
	e = s;
	while (*e && *e != ' ' && *e != '\t')
		e++;
	if (*e)
		*e++ = '\0';
	*p = e;
	return s;
}

static int parse_u64(const char *s, uint64_t *v)
{
	uint64_t x = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' ||
		    __builtin_mul_overflow(x, 10, &x) ||
		    __builtin_add_overflow(x, (uint64_t)(*s - '0'), &x))
			return -1;
	}
	*v = x;
	return 0;
}

static int parse_hex32(const char *s, uint32_t *v)
{
	uint64_t x = 0;
	int n = 0;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	for (; *s; s++, n++) {
		int d = isdigit((unsigned char)*s) ? *s - '0' :
			isxdigit((unsigned char)*s) ? tolower((unsigned char)*s) - 'a' + 10 : -1;

		if (d < 0 || n >= 8)
			return -1;
		x = x << 4 | (unsigned int)d;
	}
	if (!n)
		return -1;
	*v = (uint32_t)x;
	return 0;
}

static int parse_extent(struct vmdk_desc *d, char *p, unsigned int lineno,
			char *why, size_t whylen)
{
	struct vmdk_desc_extent e = { 0 }, *grown;
	char *acc = word(&p), *sec = word(&p), *type = word(&p), *tail;

	if (!strcmp(acc, "RW"))
		e.access = VMDK_ACCESS_RW;
	else if (!strcmp(acc, "RDONLY"))
		e.access = VMDK_ACCESS_RDONLY;
	else
		e.access = VMDK_ACCESS_NONE;
	if (!sec || parse_u64(sec, &e.sectors) || !e.sectors ||
	    e.sectors > VMDK_MAX_CAPACITY)
		return fail(why, whylen, "line %u: extent size '%s' is not a sector count from 1 to %llu",
			    lineno, sec ? sec : "", (unsigned long long)VMDK_MAX_CAPACITY);
	if (!type)
		return fail(why, whylen, "line %u: extent has no type (SPARSE, FLAT or ZERO)",
			    lineno);
	if (!strcmp(type, "SPARSE"))
		e.type = VMDK_EXT_SPARSE;
	else if (!strcmp(type, "FLAT") || !strcmp(type, "VMFS"))
		e.type = VMDK_EXT_FLAT;
	else if (!strcmp(type, "ZERO"))
		e.type = VMDK_EXT_ZERO;
	else
		return fail(why, whylen,
			    "line %u: extent type '%.32s' is not supported (SPARSE, FLAT, VMFS or ZERO)",
			    lineno, type);

	p = skip_ws(p);
	if (*p == '"') {
		tail = strchr(p + 1, '"');
		if (!tail)
			return fail(why, whylen, "line %u: extent file name has no closing quote",
				    lineno);
		*tail = '\0';
		if (tail == p + 1)
			return fail(why, whylen, "line %u: extent file name is empty", lineno);
		if (e.type != VMDK_EXT_ZERO) {
			e.file = strdup(p + 1);
			if (!e.file)
				return -ENOMEM;
		}
		p = tail + 1;
	} else if (e.type != VMDK_EXT_ZERO) {
		return fail(why, whylen, "line %u: %s extent without a quoted file name",
			    lineno, type);
	}
	tail = word(&p);
	if (tail && parse_u64(tail, &e.offset)) {
		free(e.file);
		return fail(why, whylen, "line %u: extent offset '%.32s' is not a sector number",
			    lineno, tail);
	}
	if (word(&p)) {
		free(e.file);
		return fail(why, whylen, "line %u: unexpected text after the extent", lineno);
	}
	if (e.type == VMDK_EXT_FLAT &&
	    (e.offset > VMDK_MAX_CAPACITY)) {
		free(e.file);
		return fail(why, whylen, "line %u: flat extent offset %llu is too large",
			    lineno, (unsigned long long)e.offset);
	}
	if (d->n_ext >= VMDK_MAX_EXTENTS || d->sectors + e.sectors > VMDK_MAX_CAPACITY) {
		free(e.file);
		return fail(why, whylen, "line %u: more than %u extents or %llu sectors",
			    lineno, VMDK_MAX_EXTENTS, (unsigned long long)VMDK_MAX_CAPACITY);
	}
	grown = realloc(d->ext, (d->n_ext + 1) * sizeof(*grown));
	if (!grown) {
		free(e.file);
		return -ENOMEM;
	}
	d->ext = grown;
	d->ext[d->n_ext++] = e;
	d->sectors += e.sectors;
	return 0;
}

static int set_string(char **dst, const char *v)
{
	char *s = strdup(v);

	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

static int parse_setting(struct vmdk_desc *d, char *line, char *eq,
			 unsigned int lineno, char *why, size_t whylen)
{
	char *key = line, *val = skip_ws(eq + 1);
	size_t n;

	*eq = '\0';
	trim_end(key);
	trim_end(val);
	n = strlen(val);
	if (n >= 2 && val[0] == '"' && val[n - 1] == '"') {
		val[n - 1] = '\0';
		val++;
	}
	if (!strcmp(key, "CID")) {
		if (parse_hex32(val, &d->cid))
			return fail(why, whylen, "line %u: CID '%.32s' is not a 32-bit hex number",
				    lineno, val);
	} else if (!strcmp(key, "parentCID")) {
		if (parse_hex32(val, &d->parent_cid))
			return fail(why, whylen, "line %u: parentCID '%.32s' is not a 32-bit hex number",
				    lineno, val);
	} else if (!strcmp(key, "createType")) {
		return set_string(&d->create_type, val);
	} else if (!strcmp(key, "parentFileNameHint")) {
		if (!*val)
			return fail(why, whylen, "line %u: parentFileNameHint is empty", lineno);
		return set_string(&d->parent_hint, val);
	}
	return 0;	/* version, encoding, ddb.*: nothing we need */
}

static const char *const create_types[] = {
	"monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse",
	"twoGbMaxExtentFlat", "streamOptimized", "vmfs", "custom",
};

int vmdk_desc_parse(const char *text, size_t len, struct vmdk_desc *d,
		    char *why, size_t whylen)
{
	char *copy, *line, *next;
	unsigned int lineno = 0;
	bool known = false;
	int err = 0;

	memset(d, 0, sizeof(*d));
	d->parent_cid = VMDK_CID_NONE;
	if (len > VMDK_MAX_DESC_SIZE)
		return fail(why, whylen, "descriptor of %zu bytes is larger than the %u we accept",
			    len, VMDK_MAX_DESC_SIZE);
	len = strnlen(text, len);
	copy = malloc(len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, text, len);
	copy[len] = '\0';

	for (line = copy; line && !err; line = next) {
		char *eq;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		trim_end(line);
		line = skip_ws(line);
		if (!*line || *line == '#')
			continue;
		if (!strncmp(line, "RW", 2) || !strncmp(line, "RDONLY", 6) ||
		    !strncmp(line, "NOACCESS", 8)) {
			size_t w = strcspn(line, " \t");

			if ((w == 2 && !strncmp(line, "RW", 2)) ||
			    (w == 6 && !strncmp(line, "RDONLY", 6)) ||
			    (w == 8 && !strncmp(line, "NOACCESS", 8))) {
				err = parse_extent(d, line, lineno, why, whylen);
				continue;
			}
		}
		eq = strchr(line, '=');
		if (eq)
			err = parse_setting(d, line, eq, lineno, why, whylen);
		/* Anything else is ignored, as other readers do. */
	}
	free(copy);
	if (err)
		goto fail;
	if (!d->create_type) {
		err = fail(why, whylen, "no createType: not a VMDK descriptor");
		goto fail;
	}
	for (size_t i = 0; i < sizeof(create_types) / sizeof(create_types[0]); i++)
		known |= !strcmp(d->create_type, create_types[i]);
	if (!known) {
		err = fail(why, whylen,
			   "createType \"%.64s\" is not supported (monolithicSparse, monolithicFlat, twoGbMaxExtentSparse, twoGbMaxExtentFlat, streamOptimized, vmfs)",
			   d->create_type);
		goto fail;
	}
	if (!d->n_ext) {
		err = fail(why, whylen, "the descriptor lists no extents");
		goto fail;
	}
	return 0;
fail:
	vmdk_desc_free(d);
	return err;
}

void vmdk_desc_free(struct vmdk_desc *d)
{
	for (unsigned int i = 0; i < d->n_ext; i++)
		free(d->ext[i].file);
	free(d->ext);
	free(d->create_type);
	free(d->parent_hint);
	memset(d, 0, sizeof(*d));
	d->parent_cid = VMDK_CID_NONE;
}

long vmdk_desc_cid_pos(const char *text, size_t len, unsigned int *ndigits)
{
	size_t i = 0;

	len = strnlen(text, len);
	while (i < len) {
		size_t p = i, n;

		while (p < len && (text[p] == ' ' || text[p] == '\t'))
			p++;
		if (len - p > 3 && !memcmp(text + p, "CID", 3)) {
			p += 3;
			while (p < len && (text[p] == ' ' || text[p] == '\t'))
				p++;
			if (p < len && text[p] == '=') {
				p++;
				while (p < len && (text[p] == ' ' || text[p] == '\t'))
					p++;
				for (n = 0; p + n < len && n < 9 && isxdigit((unsigned char)text[p + n]); n++)
					;
				if (n >= 1 && n <= 8 &&
				    (p + n == len || isspace((unsigned char)text[p + n]))) {
					*ndigits = (unsigned int)n;
					return (long)p;
				}
			}
		}
		while (i < len && text[i] != '\n')
			i++;
		i++;
	}
	return -1;
}

/* ---- probing, markers, compressed grains ---- */

#define DESC_SIG	"# Disk DescriptorFile"

bool vmdk_is_descriptor(const void *buf, size_t len)
{
	return len >= sizeof(DESC_SIG) - 1 &&
	       !memcmp(buf, DESC_SIG, sizeof(DESC_SIG) - 1);
}

enum vmdk_probe vmdk_probe(const void *buf, size_t len)
{
	if (len >= 4 && vmdk_le32(buf) == VMDK_MAGIC)
		return VMDK_PROBE_VMDK;
	if (vmdk_is_descriptor(buf, len))
		return VMDK_PROBE_VMDK;
	if (len >= 4 && !memcmp(buf, "QFI\xfb", 4))
		return VMDK_PROBE_QCOW;
	return VMDK_PROBE_RAW;
}

int vmdk_marker_parse(const void *buf, size_t len, struct vmdk_marker *m)
{
	const uint8_t *b = buf;

	memset(m, 0, sizeof(*m));
	if (len < VMDK_MARKER_HDR)
		return -EINVAL;
	m->lba = vmdk_le64(b);
	m->size = vmdk_le32(b + 8);
	if (!m->size) {
		if (len < VMDK_MARKER_HDR + 4)
			return -EINVAL;
		m->type = vmdk_le32(b + 12);
	}
	return 0;
}

/* A zlib stream starts with a CMF/FLG pair: deflate, checksum divisible by 31. */
static bool zlib_header(const uint8_t *b, size_t len)
{
	return len >= 2 && (b[0] & 0x0f) == 8 && (b[0] >> 4) <= 7 &&
	       ((b[0] << 8) | b[1]) % 31 == 0;
}

int vmdk_grain_inflate(const void *src, size_t srclen, void *dst,
		       size_t dstlen, char *why, size_t whylen)
{
	z_stream z;
	int ret;

	memset(&z, 0, sizeof(z));
	if (srclen > UINT32_MAX || dstlen > UINT32_MAX)
		return fail(why, whylen, "compressed grain too large");
	if (inflateInit2(&z, zlib_header(src, srclen) ? 15 : -15) != Z_OK)
		return -ENOMEM;
	z.next_in = (Bytef *)src;
	z.avail_in = (uInt)srclen;
	z.next_out = dst;
	z.avail_out = (uInt)dstlen;
	ret = inflate(&z, Z_FINISH);
	if (ret != Z_STREAM_END) {
		bool full = z.avail_out == 0;

		inflateEnd(&z);
		if (ret == Z_MEM_ERROR)
			return -ENOMEM;
		if (full && ret == Z_BUF_ERROR)
			return fail(why, whylen,
				    "compressed grain inflates to more than %zu bytes", dstlen);
		return fail(why, whylen, "compressed grain is %s (zlib: %s)",
			    ret == Z_BUF_ERROR ? "truncated" : "corrupt",
			    z.msg ? z.msg : "no detail");
	}
	memset((uint8_t *)dst + (dstlen - z.avail_out), 0, z.avail_out);
	inflateEnd(&z);
	return 0;
}
