// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A main() for the libFuzzer-style harnesses in tests/fuzz/ when built
 * without libFuzzer (gcc, `make check`): feeds every file named on the
 * command line (directories: every file in them) to LLVMFuzzerTestOneInput,
 * then, if FUZZ_ITERATIONS=N is set, N mutations of those inputs (bit
 * flips, byte overwrites with boundary values, truncations, extensions)
 * from a fixed seed (FUZZ_SEED), so a run is repeatable.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct input {
	uint8_t *data;
	size_t size;
};

static struct input *inputs;
static size_t ninputs;

static void load_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct input in = { 0 };
	long n;

	if (!f) {
		perror(path);
		exit(2);
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	in.size = n > 0 ? (size_t)n : 0;
	in.data = malloc(in.size + 1);
	if (!in.data || fread(in.data, 1, in.size, f) != in.size) {
		fprintf(stderr, "%s: read failed\n", path);
		exit(2);
	}
	fclose(f);
	inputs = realloc(inputs, (ninputs + 1) * sizeof(*inputs));
	inputs[ninputs++] = in;
}

static void load(const char *path)
{
	struct stat st;
	struct dirent *de;
	DIR *d;

	if (stat(path, &st) < 0) {
		perror(path);
		exit(2);
	}
	if (!S_ISDIR(st.st_mode)) {
		load_file(path);
		return;
	}
	d = opendir(path);
	while ((de = readdir(d))) {
		char sub[4096];

		if (de->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		load(sub);
	}
	closedir(d);
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void mutate(uint8_t **buf, size_t *size)
{
	static const uint8_t edge[] = { 0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff };
	int rounds = 1 + rnd() % 8;

	while (rounds--) {
		size_t pos = *size ? rnd() % *size : 0;

		switch (rnd() % 5) {
		case 0:
			if (*size)
				(*buf)[pos] ^= 1u << (rnd() % 8);
			break;
		case 1:
			if (*size)
				(*buf)[pos] = edge[rnd() % sizeof(edge)];
			break;
		case 2:
			if (*size)
				(*buf)[pos] = (uint8_t)rnd();
			break;
		case 3:
			*size = pos;
			break;
		case 4: {
			size_t add = 1 + rnd() % 64;

			*buf = realloc(*buf, *size + add);
			for (size_t i = 0; i < add; i++)
				(*buf)[*size + i] = (uint8_t)rnd();
			*size += add;
			break;
		}
		}
	}
}

int main(int argc, char **argv)
{
	const char *iters = getenv("FUZZ_ITERATIONS");
	const char *seed = getenv("FUZZ_SEED");
	unsigned long n = iters ? strtoul(iters, NULL, 10) : 0;

	for (int i = 1; i < argc; i++)
		load(argv[i]);
	for (size_t i = 0; i < ninputs; i++)
		LLVMFuzzerTestOneInput(inputs[i].data, inputs[i].size);
	rng_state = seed ? strtoull(seed, NULL, 0) : 0x9e3779b97f4a7c15ull;
	if (!rng_state)
		rng_state = 1;
	for (unsigned long i = 0; i < n && ninputs; i++) {
		const struct input *in = &inputs[rnd() % ninputs];
		size_t size = in->size;
		uint8_t *buf = malloc(size + 1);

		memcpy(buf, in->data, size);
		mutate(&buf, &size);
		LLVMFuzzerTestOneInput(buf, size);
		free(buf);
	}
	printf("%zu inputs, %lu mutations: no crash\n", ninputs, n);
	for (size_t i = 0; i < ninputs; i++)
		free(inputs[i].data);
	free(inputs);
	return 0;
}
