// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Unit tests for the VMDK parsers (tapdisk/vmdk-format.c): descriptors as
 * qemu-img and VMware write them and broken ones, sparse headers with each
 * field out of range, probing, grain markers and compressed grains.
 */
#include <errno.h>
#include <zlib.h>

#include "util.h"
#include "vmdk-format.h"

static const char qemu_desc[] =
	"# Disk DescriptorFile\n"
	"version=1\n"
	"CID=cee9539a\n"
	"parentCID=ffffffff\n"
	"createType=\"monolithicSparse\"\n"
	"# Extent description\n"
	"RW 10485760 SPARSE \"monolithicSparse.vmdk\"\n"
	"# The Disk Data Base\n"
	"#DDB\n"
	"ddb.virtualHWVersion = \"4\"\n"
	"ddb.geometry.cylinders = \"10402\"\n"
	"ddb.adapterType = \"ide\"\n";

static int parse(const char *text, struct vmdk_desc *d, char *why)
{
	return vmdk_desc_parse(text, strlen(text), d, why, 256);
}

static void test_desc_qemu(void **state)
{
	struct vmdk_desc d;
	char why[256];

	(void)state;
	assert_int_equal(parse(qemu_desc, &d, why), 0);
	assert_string_equal(d.create_type, "monolithicSparse");
	assert_int_equal(d.cid, 0xcee9539a);
	assert_int_equal(d.parent_cid, VMDK_CID_NONE);
	assert_null(d.parent_hint);
	assert_int_equal(d.n_ext, 1);
	assert_int_equal(d.ext[0].access, VMDK_ACCESS_RW);
	assert_int_equal(d.ext[0].type, VMDK_EXT_SPARSE);
	assert_int_equal(d.ext[0].sectors, 10485760);
	assert_string_equal(d.ext[0].file, "monolithicSparse.vmdk");
	assert_int_equal(d.sectors, 10485760);
	vmdk_desc_free(&d);
}

/* Several extents, CRLF line ends, blanks, a file name with spaces, NUL padding. */
static void test_desc_extents(void **state)
{
	static const char text[] =
		"# Disk DescriptorFile\r\n"
		"CID=0000ABCD\r\n"
		"parentCID=12345678\r\n"
		"createType = \"twoGbMaxExtentFlat\"\r\n"
		"parentFileNameHint=\"../base disk.vmdk\"\r\n"
		"  RW 4194304 FLAT \"my disk-f001.vmdk\" 0\r\n"
		"RDONLY 100 FLAT \"x.img\" 2048\r\n"
		"RW 50 ZERO\r\n"
		"NOACCESS 8 SPARSE \"s.vmdk\"\r\n"
		"\0\0\0\0garbage after the padding";
	struct vmdk_desc d;
	char why[256];

	(void)state;
	assert_int_equal(vmdk_desc_parse(text, sizeof(text), &d, why, sizeof(why)), 0);
	assert_string_equal(d.create_type, "twoGbMaxExtentFlat");
	assert_int_equal(d.cid, 0xabcd);
	assert_int_equal(d.parent_cid, 0x12345678);
	assert_string_equal(d.parent_hint, "../base disk.vmdk");
	assert_int_equal(d.n_ext, 4);
	assert_string_equal(d.ext[0].file, "my disk-f001.vmdk");
	assert_int_equal(d.ext[1].access, VMDK_ACCESS_RDONLY);
	assert_int_equal(d.ext[1].offset, 2048);
	assert_int_equal(d.ext[2].type, VMDK_EXT_ZERO);
	assert_null(d.ext[2].file);
	assert_int_equal(d.ext[3].access, VMDK_ACCESS_NONE);
	assert_int_equal(d.sectors, 4194304 + 100 + 50 + 8);
	vmdk_desc_free(&d);
}

static void expect_bad(const char *text, const char *needle)
{
	struct vmdk_desc d;
	char why[256] = "";

	assert_int_equal(parse(text, &d, why), -EINVAL);
	if (!strstr(why, needle))
		fail_msg("error '%s' does not mention '%s'", why, needle);
	assert_int_equal(d.n_ext, 0);
	assert_null(d.create_type);
}

static void test_desc_errors(void **state)
{
	(void)state;
	expect_bad("RW 10 SPARSE \"a\"\n", "createType");
	expect_bad("createType=\"vmfsSparse\"\nRW 10 SPARSE \"a\"\n", "vmfsSparse");
	expect_bad("createType=\"monolithicFlat\"\n", "no extents");
	expect_bad("createType=\"monolithicFlat\"\nRW 10 COWD \"a\"\n", "COWD");
	expect_bad("createType=\"monolithicFlat\"\nRW 10 FLAT \"a\n", "quote");
	expect_bad("createType=\"monolithicFlat\"\nRW 10 FLAT a\n", "quoted");
	expect_bad("createType=\"monolithicFlat\"\nRW 10 FLAT \"\"\n", "empty");
	expect_bad("createType=\"monolithicFlat\"\nRW 0 FLAT \"a\"\n", "line 2");
	expect_bad("createType=\"monolithicFlat\"\nRW -5 FLAT \"a\"\n", "extent size");
	expect_bad("createType=\"monolithicFlat\"\nRW 99999999999999999999999 FLAT \"a\"\n",
		   "extent size");
	expect_bad("createType=\"monolithicFlat\"\nRW 10 FLAT \"a\" 0 junk\n", "unexpected");
	expect_bad("createType=\"monolithicFlat\"\nRW 10 FLAT \"a\" x1\n", "offset");
	expect_bad("createType=\"monolithicFlat\"\nRW 10\n", "no type");
	expect_bad("CID=xyz\ncreateType=\"monolithicFlat\"\nRW 10 FLAT \"a\"\n", "CID");
	expect_bad("parentCID=123456789\ncreateType=\"monolithicFlat\"\nRW 10 FLAT \"a\"\n",
		   "parentCID");
	expect_bad("parentFileNameHint=\"\"\ncreateType=\"monolithicFlat\"\nRW 10 FLAT \"a\"\n",
		   "parentFileNameHint");
	/* Sizes that add up past the limit. */
	expect_bad("createType=\"monolithicFlat\"\nRW 2199023255552 FLAT \"a\"\n"
		   "RW 2199023255552 FLAT \"b\"\n", "sectors");
}

/* A header qemu-img would write for a 5 GiB monolithic sparse disk. */
static struct vmdk_header good_header(void)
{
	struct vmdk_header h = {
		.version = 1, .flags = VMDK_FLAG_NL_TEST | VMDK_FLAG_RGD,
		.capacity = 10485760, .grain_sectors = 128, .desc_offset = 1,
		.desc_size = 20, .gtes_per_gt = 512, .rgd_offset = 21,
		.gd_offset = 663, .overhead = 1408,
	};
	return h;
}

#define FILE_SIZE	(1408 * 512)

static int parse_header(const struct vmdk_header *in, uint64_t size,
			struct vmdk_header *out, char *why)
{
	uint8_t buf[512];

	vmdk_header_encode(in, buf);
	return vmdk_header_parse(buf, sizeof(buf), size, out, why, 256);
}

static void test_header_good(void **state)
{
	struct vmdk_header h = good_header(), out;
	char why[256];

	(void)state;
	assert_int_equal(parse_header(&h, FILE_SIZE, &out, why), 0);
	assert_int_equal(out.capacity, 10485760);
	assert_int_equal(out.grain_sectors, 128);
	assert_int_equal(out.gd_offset, 663);
	assert_int_equal(out.rgd_offset, 21);
	assert_int_equal(out.gd_entries, 160);
	assert_int_equal(out.flags, VMDK_FLAG_NL_TEST | VMDK_FLAG_RGD);
	/* GD at the end (stream-optimized) passes; the footer is checked later. */
	h.gd_offset = VMDK_GD_AT_END;
	assert_int_equal(parse_header(&h, FILE_SIZE, &out, why), 0);
}

static void bad_header(struct vmdk_header *h, uint64_t size, const char *needle)
{
	struct vmdk_header out;
	char why[256] = "";

	assert_int_equal(parse_header(h, size, &out, why), -EINVAL);
	if (!strstr(why, needle))
		fail_msg("error '%s' does not mention '%s'", why, needle);
}

static void test_header_errors(void **state)
{
	struct vmdk_header h;
	uint8_t buf[512];
	char why[256];
	struct vmdk_header out;

	(void)state;
	h = good_header(); h.grain_sectors = 0;
	bad_header(&h, FILE_SIZE, "grain size is 0");
	h = good_header(); h.grain_sectors = 1ull << 40;
	bad_header(&h, FILE_SIZE, "larger than");
	h = good_header(); h.grain_sectors = 100;
	bad_header(&h, FILE_SIZE, "power of two");
	h = good_header(); h.gtes_per_gt = 0;
	bad_header(&h, FILE_SIZE, "entries per grain table");
	h = good_header(); h.gtes_per_gt = 1u << 30;
	bad_header(&h, FILE_SIZE, "entries per grain table");
	h = good_header(); h.gd_offset = 2000;
	bad_header(&h, FILE_SIZE, "grain directory at sector 2000");
	h = good_header(); h.gd_offset = UINT64_MAX / 2;	/* offset * 512 wraps */
	bad_header(&h, FILE_SIZE, "past the end");
	h = good_header(); h.gd_offset = 0;
	bad_header(&h, FILE_SIZE, "no grain directory");
	h = good_header(); h.rgd_offset = 1407;
	bad_header(&h, FILE_SIZE, "redundant grain directory");
	h = good_header(); h.desc_size = 5000;
	bad_header(&h, FILE_SIZE, "embedded descriptor");
	h = good_header(); h.desc_offset = 1408;
	bad_header(&h, FILE_SIZE, "embedded descriptor");
	h = good_header(); h.version = 4;
	bad_header(&h, FILE_SIZE, "version 4");
	h = good_header(); h.capacity = UINT64_MAX;
	bad_header(&h, FILE_SIZE, "capacity");
	h = good_header(); h.capacity = VMDK_MAX_CAPACITY; h.grain_sectors = 1; h.gtes_per_gt = 1;
	bad_header(&h, FILE_SIZE, "too large");
	h = good_header(); h.flags |= VMDK_FLAG_COMPRESSED; h.compress = 7;
	bad_header(&h, FILE_SIZE, "compression algorithm 7");

	h = good_header();
	vmdk_header_encode(&h, buf);
	buf[75] = '\n';		/* "\r\n" became "\n\n": a text-mode copy */
	assert_int_equal(vmdk_header_parse(buf, 512, FILE_SIZE, &out, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "newline"));
	vmdk_header_encode(&h, buf);
	buf[0] = 'X';
	assert_int_equal(vmdk_header_parse(buf, 512, FILE_SIZE, &out, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "magic"));
	vmdk_header_encode(&h, buf);
	assert_int_equal(vmdk_header_parse(buf, 100, FILE_SIZE, &out, why, sizeof(why)), -EINVAL);
	assert_int_equal(vmdk_header_parse(buf, 512, 300, &out, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "shorter"));
}

static void test_cid_pos(void **state)
{
	static const char t1[] = "version=1\nparentCID=ffffffff\n  CID = 0000abcd\r\nx=1\n";
	unsigned int n = 0;

	(void)state;
	assert_int_equal(vmdk_desc_cid_pos(qemu_desc, sizeof(qemu_desc), &n),
			 strstr(qemu_desc, "cee9539a") - qemu_desc);
	assert_int_equal(n, 8);
	assert_int_equal(vmdk_desc_cid_pos(t1, sizeof(t1), &n), strstr(t1, "0000abcd") - t1);
	assert_int_equal(n, 8);
	/* qemu-img writes "%x": fewer digits. */
	assert_int_equal(vmdk_desc_cid_pos("CID=9af792f\n", 12, &n), 4);
	assert_int_equal(n, 7);
	assert_int_equal(vmdk_desc_cid_pos("CID=0", 5, &n), 4);
	assert_int_equal(n, 1);
	/* Too long, not hex, or only a parentCID: nothing to overwrite. */
	assert_int_equal(vmdk_desc_cid_pos("CID=123456789\n", 14, &n), -1);
	assert_int_equal(vmdk_desc_cid_pos("CID=12x4\n", 9, &n), -1);
	assert_int_equal(vmdk_desc_cid_pos("CID=\n", 5, &n), -1);
	assert_int_equal(vmdk_desc_cid_pos("parentCID=12345678\n", 19, &n), -1);
}

static void test_probe(void **state)
{
	uint8_t raw[512] = { 0 };

	(void)state;
	assert_int_equal(vmdk_probe("KDMV\1\0\0\0", 8), VMDK_PROBE_VMDK);
	assert_int_equal(vmdk_probe(qemu_desc, sizeof(qemu_desc)), VMDK_PROBE_VMDK);
	assert_int_equal(vmdk_probe("QFI\xfb\0\0\0\3", 8), VMDK_PROBE_QCOW);
	assert_int_equal(vmdk_probe(raw, sizeof(raw)), VMDK_PROBE_RAW);
	assert_int_equal(vmdk_probe("KD", 2), VMDK_PROBE_RAW);
	assert_int_equal(vmdk_probe("", 0), VMDK_PROBE_RAW);
	assert_true(vmdk_is_descriptor(qemu_desc, sizeof(qemu_desc)));
	assert_false(vmdk_is_descriptor("# Disk", 6));
}

static void test_marker(void **state)
{
	uint8_t b[16] = { 0 };
	struct vmdk_marker m;

	(void)state;
	vmdk_put_le64(b, 256);
	vmdk_put_le32(b + 8, 85);
	assert_int_equal(vmdk_marker_parse(b, 12, &m), 0);
	assert_int_equal(m.lba, 256);
	assert_int_equal(m.size, 85);
	vmdk_put_le32(b + 8, 0);
	vmdk_put_le32(b + 12, VMDK_MARKER_FOOTER);
	assert_int_equal(vmdk_marker_parse(b, 16, &m), 0);
	assert_int_equal(m.type, VMDK_MARKER_FOOTER);
	assert_int_equal(vmdk_marker_parse(b, 12, &m), -EINVAL);
	assert_int_equal(vmdk_marker_parse(b, 4, &m), -EINVAL);
}

static void test_inflate(void **state)
{
	enum { G = 65536 };
	uint8_t *grain = malloc(G), *out = malloc(G), *z = malloc(2 * G);
	uLongf zlen = 2 * G;
	z_stream s;
	char why[256];

	(void)state;
	fill_pattern(grain, G, 0, 9);
	memset(grain + 4096, 0, 8192);
	assert_int_equal(compress(z, &zlen, grain, G), Z_OK);
	assert_int_equal(vmdk_grain_inflate(z, zlen, out, G, why, sizeof(why)), 0);
	assert_memory_equal(grain, out, G);

	/* Short stream: the rest of the grain reads as zeros. */
	zlen = 2 * G;
	assert_int_equal(compress(z, &zlen, grain, 1000), Z_OK);
	memset(out, 0xff, G);
	assert_int_equal(vmdk_grain_inflate(z, zlen, out, G, why, sizeof(why)), 0);
	assert_memory_equal(grain, out, 1000);
	assert_int_equal(out[1000], 0);
	assert_int_equal(out[G - 1], 0);

	/* More than a grain: refused, not overrun. */
	zlen = 2 * G;
	assert_int_equal(compress(z, &zlen, grain, G), Z_OK);
	assert_int_equal(vmdk_grain_inflate(z, zlen, out, G / 2, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "more than"));
	/* Truncated and corrupt streams. */
	assert_int_equal(vmdk_grain_inflate(z, zlen / 2, out, G, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "truncated"));
	memset(z + 2, 0xff, 16);
	assert_int_equal(vmdk_grain_inflate(z, zlen, out, G, why, sizeof(why)), -EINVAL);

	/* Raw deflate (no zlib header) also reads. */
	memset(&s, 0, sizeof(s));
	assert_int_equal(deflateInit2(&s, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	s.next_in = grain;
	s.avail_in = G;
	s.next_out = z;
	s.avail_out = 2 * G;
	assert_int_equal(deflate(&s, Z_FINISH), Z_STREAM_END);
	zlen = 2 * G - s.avail_out;
	deflateEnd(&s);
	assert_int_equal(vmdk_grain_inflate(z, zlen, out, G, why, sizeof(why)), 0);
	assert_memory_equal(grain, out, G);
	free(grain);
	free(out);
	free(z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_desc_qemu),
		cmocka_unit_test(test_desc_extents),
		cmocka_unit_test(test_desc_errors),
		cmocka_unit_test(test_header_good),
		cmocka_unit_test(test_header_errors),
		cmocka_unit_test(test_cid_pos),
		cmocka_unit_test(test_probe),
		cmocka_unit_test(test_marker),
		cmocka_unit_test(test_inflate),
	};

	return cmocka_run_group_tests_name("vmdk-format", tests, NULL, NULL);
}
