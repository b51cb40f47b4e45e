// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Fuzz target for tapdisk/vmdk-format.c: the input as a text descriptor,
 * as the start of a sparse extent file (header, then the embedded
 * descriptor it points at), and as a stream-optimized grain marker with
 * its compressed grain. Checks what must hold for any input: a parse
 * either fails with a message or yields a structure whose fields are in
 * range; header encode/parse round-trips; inflation never writes past the
 * grain.
 *
 * libFuzzer:  clang -g -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE
 *               -Ilibblktap/include -Itapdisk tests/fuzz/vmdk-descriptor.c
 *               tapdisk/vmdk-format.c -lz
 * (`make fuzz-libfuzzer` does this for every harness.) Without libFuzzer
 * it links with tests/fuzz/replay.c, which replays and mutates the corpus
 * in tests/fuzz/corpus/vmdk-descriptor/.
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmdk-format.h"

static void check_desc(const struct vmdk_desc *d, int ret, const char *why)
{
	uint64_t sum = 0;

	if (ret) {
		if ((ret == -EINVAL && !why[0]) || d->n_ext || d->ext ||
		    d->create_type || d->parent_hint)
			abort();
		return;
	}
	if (!d->create_type || !d->n_ext || d->n_ext > VMDK_MAX_EXTENTS)
		abort();
	for (unsigned int i = 0; i < d->n_ext; i++) {
		const struct vmdk_desc_extent *e = &d->ext[i];

		if (!e->sectors || (e->type != VMDK_EXT_ZERO && (!e->file || !e->file[0])))
			abort();
		sum += e->sectors;
	}
	if (sum != d->sectors || sum > VMDK_MAX_CAPACITY)
		abort();
}

static void fuzz_desc(const uint8_t *data, size_t size)
{
	struct vmdk_desc d;
	char why[256] = "";
	int ret = vmdk_desc_parse((const char *)data, size, &d, why, sizeof(why));
	unsigned int n = 0;
	long pos = vmdk_desc_cid_pos((const char *)data, size, &n);

	check_desc(&d, ret, why);
	vmdk_desc_free(&d);
	if (pos >= 0) {
		if (n < 1 || n > 8 || (size_t)pos + n > size)
			abort();
		for (unsigned int i = 0; i < n; i++)
			if (!isxdigit(data[pos + i]))
				abort();
	}
}

static void fuzz_header(const uint8_t *data, size_t size)
{
	struct vmdk_header h, again;
	uint8_t enc[VMDK_HEADER_SIZE];
	char why[256] = "";
	uint64_t grains;

	if (vmdk_header_parse(data, size, size, &h, why, sizeof(why))) {
		if (!why[0])
			abort();
		return;
	}
	if (!h.grain_sectors || h.grain_sectors > VMDK_MAX_GRAIN_SECTORS ||
	    (h.grain_sectors & (h.grain_sectors - 1)) ||
	    !h.gtes_per_gt || h.gtes_per_gt > VMDK_MAX_GTES_PER_GT ||
	    h.capacity > VMDK_MAX_CAPACITY)
		abort();
	grains = (h.capacity + h.grain_sectors - 1) / h.grain_sectors;
	if ((uint64_t)h.gd_entries * h.gtes_per_gt < grains)
		abort();
	if (h.gd_offset != VMDK_GD_AT_END &&
	    h.gd_offset * VMDK_SECTOR + (uint64_t)h.gd_entries * 4 > size)
		abort();
	vmdk_header_encode(&h, enc);
	if (vmdk_header_parse(enc, sizeof(enc), size, &again, why, sizeof(why)) ||
	    h.version != again.version || h.flags != again.flags ||
	    h.capacity != again.capacity || h.grain_sectors != again.grain_sectors ||
	    h.desc_offset != again.desc_offset || h.desc_size != again.desc_size ||
	    h.gtes_per_gt != again.gtes_per_gt || h.rgd_offset != again.rgd_offset ||
	    h.gd_offset != again.gd_offset || h.overhead != again.overhead ||
	    h.unclean != again.unclean || h.compress != again.compress ||
	    h.gd_entries != again.gd_entries)
		abort();
	/* The embedded descriptor, as the driver reads it. */
	if (h.desc_offset)
		fuzz_desc(data + h.desc_offset * VMDK_SECTOR, h.desc_size * VMDK_SECTOR);
}

static void fuzz_grain(const uint8_t *data, size_t size)
{
	enum { GRAIN = 65536 };
	struct vmdk_marker m;
	uint8_t *out;
	char why[256];

	if (vmdk_marker_parse(data, size, &m) || !m.size ||
	    m.size > size - VMDK_MARKER_HDR)
		return;
	out = malloc(GRAIN);
	if (!out)
		return;
	vmdk_grain_inflate(data + VMDK_MARKER_HDR, m.size, out, GRAIN, why, sizeof(why));
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly @size bytes, so reads past the end are caught. */
	uint8_t *buf = malloc(size ? size : 1);

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	vmdk_probe(buf, size);
	fuzz_desc(buf, size);
	fuzz_header(buf, size);
	fuzz_grain(buf, size);
	free(buf);
	return 0;
}
