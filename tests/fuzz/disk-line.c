// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Fuzz target for libblktap/disk-line.c and the control payload decoder:
 * the same input as one disk line, as a "TYPE:PATH" target, as a config
 * file, and as a control payload. Checks what must hold for any input:
 * errors carry a position and a message, parsed disks have a known driver
 * and an absolute path, and a config disk's span points at its text.
 *
 * libFuzzer:  clang -g -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE
 *               -Ilibblktap/include tests/fuzz/disk-line.c
 *               libblktap/disk-line.c libblktap/control-client.c
 * With -DFUZZ_STANDALONE instead of -fsanitize=fuzzer it builds a driver
 * that runs each file named on the command line once, for reproducing a
 * crash or replaying a corpus with any compiler.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blktap/control.h"
#include "blktap/disk-line.h"

static void check_disk(const struct td_disk *d)
{
	if (!d->is_tap)
		return;
	if (!td_disk_driver_known(d->driver) || d->path[0] != '/')
		abort();
}

static void check_err(const struct td_disk_error *e, int ret)
{
	if (ret == -EINVAL && (!e->msg[0] || !e->line || !e->column))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct td_disk_config cfg;
	struct td_disk_error err;
	struct blktap_ctl_msg msg;
	struct td_disk *d;
	char *text;
	int ret;

	text = malloc(size + 1);
	d = malloc(sizeof(*d));
	if (!text || !d)
		goto out;
	memcpy(text, data, size);
	text[size] = '\0';

	ret = td_disk_config_parse(text, size, &cfg, &err);
	check_err(&err, ret);
	for (size_t i = 0; !ret && i < cfg.n; i++) {
		const struct td_disk *cd = &cfg.disks[i];

		check_disk(cd);
		/* the span names the disk's text inside the file */
		if (cd->offset + cd->length > size ||
		    memcmp(text + cd->offset, cd->text, cd->length))
			abort();
	}
	td_disk_config_free(&cfg);

	/* the lone-line parsers see the text up to the first NUL */
	ret = td_disk_line_parse(text, d, &err);
	check_err(&err, ret);
	if (!ret)
		check_disk(d);
	ret = td_disk_target_parse(text, d, &err);
	check_err(&err, ret);
	if (!ret)
		check_disk(d);

	if (blktap_ctl_decode(data, size, &msg) == 0) {
		for (size_t r = 0; r < msg.nrec; r++)
			for (size_t k = 0; k < msg.rec[r].n; k++)
				if (blktap_ctl_get(&msg.rec[r], msg.rec[r].kv[k].key) !=
				    msg.rec[r].kv[k].val)
					abort();
		blktap_ctl_msg_free(&msg);
	}
out:
	free(d);
	free(text);
	return 0;
}

#ifdef FUZZ_STANDALONE
int main(int argc, char **argv)
{
	static uint8_t buf[1 << 20];

	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		size_t n;

		if (!f) {
			perror(argv[i]);
			return 1;
		}
		n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		LLVMFuzzerTestOneInput(buf, n);
	}
	return 0;
}
#endif
