// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Fuzz harness for the qcow header and L1/L2 table parser
 * (tapdisk/qcow-format.c): the input is a whole image file in memory, fed
 * to the header parser and then to the metadata checker, which walks every
 * table. Built with libFuzzer by `make fuzz-libfuzzer`, or with
 * tests/fuzz/replay.c for `make check`. Seeds: tests/fuzz/corpus/qcow-header/.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "qcow-format.h"

struct mem {
	const uint8_t *data;
	size_t size;
};

static int mem_read(void *arg, void *buf, size_t len, uint64_t off)
{
	const struct mem *m = arg;

	if (off > m->size || len > m->size - off)
		return -EIO;
	memcpy(buf, m->data + off, len);
	return 0;
}

static void mem_report(void *arg, bool corrupt, const char *msg)
{
	(void)arg;
	(void)corrupt;
	(void)msg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mem m = { data, size };
	struct qcow_check chk = {
		.read = mem_read, .report = mem_report, .arg = &m,
		.file_size = size,
	};
	struct qcow_header h;
	char why[256];
	int ret;

	if (qcow_header_parse(data, size, size, &h, why, sizeof(why)) == 0) {
		/* What the driver relies on after a successful parse. */
		if (h.l1_entries && (h.l1_off < h.hdr_end ||
				     h.l1_off + h.l1_bytes > size))
			__builtin_trap();
		if (h.cluster_bits < QCOW_MIN_CLUSTER_BITS ||
		    h.cluster_bits > QCOW_MAX_CLUSTER_BITS)
			__builtin_trap();
		for (uint64_t i = 0; i < h.l2_entries && i < 64; i++) {
			uint64_t e = (uint64_t)i << 40 | QCOW_COMPRESSED | i;

			(void)qcow_entry_check(&h, e, size, why, sizeof(why));
		}
	}
	ret = qcow_check_run(&chk);
	if (ret != 0 && ret != 1 && ret != 2 && ret != -ENOMEM && ret != -EIO)
		__builtin_trap();
	return 0;
}
