// SPDX-License-Identifier: LGPL-2.1-or-later
/* Unit tests for libblktap/disk-line.c: disk lines, targets, config files. */
#include <errno.h>

#include "util.h"
#include "blktap/disk-line.h"

struct good {
	const char *line;
	const char *driver, *path, *vdev;
	bool readonly;
};

static void test_good_lines(void **state)
{
	static const struct good cases[] = {
		{ "tap:aio:/srv/a.img,xvda,w", "aio", "/srv/a.img", "xvda", false },
		{ "tap:qcow:/srv/b.qcow,xvdb,r", "qcow", "/srv/b.qcow", "xvdb", true },
		{ "tap2:vmdk:/v/c.vmdk,xvdc,rw", "vmdk", "/v/c.vmdk", "xvdc", false },
		{ "tap:tapdisk:sync:/s,hda,ro", "sync", "/s", "hda", true },
		{ "tap2:tapdisk:ram:/r,xvde,w", "ram", "/r", "xvde", false },
		{ " tap:aio:/a b.img , xvda , w ", "aio", "/a b.img", "xvda", false },
		{ "tap:aio:/srv/a.img,xvda", "aio", "/srv/a.img", "xvda", false },
		{ "script=block-tap,vdev=xvda,target=aio:/srv/a.img", "aio",
		  "/srv/a.img", "xvda", false },
		{ "vdev=xvdb,access=r,script=block-tap,target=qcow:/q,with,commas",
		  "qcow", "/q,with,commas", "xvdb", true },
		{ "tap:aio:/x,xvda,w,devtype=disk", "aio", "/x", "xvda", false },
		{ "backendtype=tap,format=raw,vdev=xvdf,target=/srv/raw.img", "aio",
		  "/srv/raw.img", "xvdf", false },
		{ "backendtype=tap,format=qcow,vdev=xvdf,access=ro,target=/q", "qcow",
		  "/q", "xvdf", true },
	};
	struct td_disk d;
	struct td_disk_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ret = td_disk_line_parse(cases[i].line, &d, &err);

		if (ret)
			fail_msg("'%s': %d %u: %s", cases[i].line, ret, err.column,
				 err.msg);
		assert_true(d.is_tap);
		assert_string_equal(d.driver, cases[i].driver);
		assert_string_equal(d.path, cases[i].path);
		assert_string_equal(d.vdev, cases[i].vdev);
		assert_int_equal(d.readonly, cases[i].readonly);
	}
}

static void test_not_tap(void **state)
{
	static const char *const lines[] = {
		"phy:/dev/sda,xvda,w",
		"file:/srv/a.img,xvda,w!",	/* other backends' syntax is theirs */
		"/srv/a.img,raw,xvda,rw,foo=bar",
		"aio:/srv/a.img,xvda,w",	/* xl strips aio: and uses qdisk */
		"format=raw,vdev=xvda,target=/srv/a.img",
		"script=block-iscsi,vdev=xvda,target=iqn.x",
	};
	struct td_disk d;
	struct td_disk_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		int ret = td_disk_line_parse(lines[i], &d, &err);

		if (ret != -ENOTSUP)
			fail_msg("'%s': %d, expected -ENOTSUP (%s)", lines[i], ret,
				 err.msg);
		assert_false(d.is_tap);
	}
}

struct bad {
	const char *line;
	unsigned int column;
	const char *words;	/* a piece of the message */
};

static void test_bad_lines(void **state)
{
	static const struct bad cases[] = {
		{ "", 1, "empty" },
		{ "tap:vhd:/srv/a.vhd,xvda,w", 5, "unknown driver 'vhd'" },
		{ "tap:aio:/srv/a.img,xvda,x", 25, "bad mode 'x'" },
		{ "tap:aio:/srv/a.img,xvda,w!", 25, "bad mode" },
		{ "tap:aio:srv/a.img,xvda,w", 9, "not absolute" },
		{ "tap:aio:,xvda,w", 9, "no image path" },
		{ "tap:aio:/a,,w", 12, "empty field" },
		{ "tap:aio:/a,xv/da,w", 14, "bad character '/'" },
		{ "tap:aio:/a", 11, "no virtual device" },
		{ "tap:aio:/a,xvda,w,extra", 19, "unexpected field 'extra'" },
		{ "tap:aio:/a,xvda,w,colour=red", 19, "unknown key 'colour'" },
		{ "tap:/srv/a.img,xvda,w", 5, "expected DRIVER:PATH" },
		{ "tap:aio", 5, "expected DRIVER:PATH" },
		{ "script=block-tap,vdev=xvda", 27, "no image" },
		{ "script=block-tap,vdev=xvda,target=vhd:/x", 35, "unknown driver" },
		{ "backendtype=tap,format=vhd,vdev=xvda,target=/x", 24, "format 'vhd'" },
		{ "tap:aio:/a,xvda,w,target=aio:/b", 1, "twice" },
	};
	struct td_disk d;
	struct td_disk_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ret = td_disk_line_parse(cases[i].line, &d, &err);

		if (ret != -EINVAL)
			fail_msg("'%s': %d, expected -EINVAL", cases[i].line, ret);
		if (err.line != 1 || err.column != cases[i].column ||
		    !strstr(err.msg, cases[i].words))
			fail_msg("'%s': got %u:%u '%s', expected 1:%u '...%s...'",
				 cases[i].line, err.line, err.column, err.msg,
				 cases[i].column, cases[i].words);
	}
}

static void test_target(void **state)
{
	struct td_disk d;
	struct td_disk_error err;

	(void)state;
	assert_int_equal(td_disk_target_parse("aio:/srv/a.img", &d, &err), 0);
	assert_string_equal(d.driver, "aio");
	assert_string_equal(d.path, "/srv/a.img");
	assert_int_equal(td_disk_target_parse("tap:qcow:/q", &d, &err), 0);
	assert_string_equal(d.driver, "qcow");
	assert_int_equal(td_disk_target_parse("nope:/x", &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "unknown driver 'nope'"));
	assert_int_equal(td_disk_target_parse("/x", &d, &err), -EINVAL);
	assert_int_equal(td_disk_target_parse("aio:rel", &d, &err), -EINVAL);
	assert_int_equal(err.column, 5);
	assert_true(td_disk_driver_known("vmdk"));
	assert_false(td_disk_driver_known("vhd"));
}

static int parse_cfg(const char *text, struct td_disk_config *cfg,
		     struct td_disk_error *err)
{
	return td_disk_config_parse(text, strlen(text), cfg, err);
}

static void test_config_good(void **state)
{
	const char *text =
		"# a VM\n"
		"name = \"vm1\"\n"
		"memory = 256\n"
		"vif = [ 'bridge=xenbr0' ]\n"
		"disk = [ 'tap:aio:/srv/a.img,xvda,w',\n"
		"         \"tap:qcow:/srv/b.qcow,xvdb,r\", # trailing comment\n"
		"         'phy:/dev/sdb,xvdc,w',\n"
		"         'script=block-tap,vdev=xvdd,target=vmdk:/v.vmdk',\n"
		"       ]\n"
		"on_crash = 'destroy';\n";
	struct td_disk_config cfg;
	struct td_disk_error err;

	(void)state;
	if (parse_cfg(text, &cfg, &err))
		fail_msg("%u:%u: %s", err.line, err.column, err.msg);
	assert_int_equal(cfg.n, 4);
	assert_true(cfg.disks[0].is_tap);
	assert_string_equal(cfg.disks[0].path, "/srv/a.img");
	assert_int_equal(cfg.disks[0].line, 5);
	assert_int_equal(cfg.disks[0].column, 11);
	assert_true(cfg.disks[1].is_tap);
	assert_true(cfg.disks[1].readonly);
	assert_string_equal(cfg.disks[1].vdev, "xvdb");
	assert_false(cfg.disks[2].is_tap);
	assert_string_equal(cfg.disks[2].text, "phy:/dev/sdb,xvdc,w");
	assert_true(cfg.disks[3].is_tap);
	assert_string_equal(cfg.disks[3].driver, "vmdk");
	assert_true(cfg.disks[3].block_tap);
	assert_false(cfg.disks[0].block_tap);
	/* offset/length locate the string in the file, for rewriting */
	for (size_t i = 0; i < cfg.n; i++)
		assert_memory_equal(text + cfg.disks[i].offset, cfg.disks[i].text,
				    cfg.disks[i].length);
	td_disk_config_free(&cfg);

	assert_int_equal(parse_cfg("name='x'\n", &cfg, &err), 0);
	assert_int_equal(cfg.n, 0);
	td_disk_config_free(&cfg);
	assert_int_equal(parse_cfg("disk=[]", &cfg, &err), 0);
	assert_int_equal(cfg.n, 0);
	td_disk_config_free(&cfg);
	assert_int_equal(parse_cfg("", &cfg, &err), 0);
	td_disk_config_free(&cfg);
}

static void test_block_tap_line(void **state)
{
	struct td_disk d;
	char buf[128];

	(void)state;
	assert_int_equal(td_disk_line_parse("tap:qcow:/srv/b.qcow,xvdb,r", &d, NULL), 0);
	assert_int_equal(td_disk_block_tap_line(&d, buf, sizeof(buf)),
			 (int)strlen("script=block-tap,vdev=xvdb,access=r,target=qcow:/srv/b.qcow"));
	assert_string_equal(buf, "script=block-tap,vdev=xvdb,access=r,target=qcow:/srv/b.qcow");
	/* and it parses back to the same disk */
	assert_int_equal(td_disk_line_parse(buf, &d, NULL), 0);
	assert_true(d.block_tap && d.readonly);
	assert_string_equal(d.path, "/srv/b.qcow");
	assert_int_equal(td_disk_line_parse("tap2:aio:/a,xvda,w", &d, NULL), 0);
	td_disk_block_tap_line(&d, buf, sizeof(buf));
	assert_string_equal(buf, "script=block-tap,vdev=xvda,target=aio:/a");
	assert_true(td_disk_block_tap_line(&d, buf, 8) > 8);
}

static void test_config_bad(void **state)
{
	static const struct {
		const char *text;
		unsigned int line, column;
		const char *words;
	} cases[] = {
		{ "disk = [ 'tap:aio:/a,xvda,w',\n  'tap:vhd:/b,xvdb,w' ]\n", 2, 8,
		  "unknown driver 'vhd'" },
		{ "name = 'x'\ndisk = [ 'tap:aio:/a,xvda,q' ]", 2, 27, "bad mode 'q'" },
		{ "disk = 'tap:aio:/a,xvda,w'\n", 1, 8, "must be a list" },
		{ "disk = [ 'tap:aio:/a,xvda,w'\n", 2, 1, "expected ',' or ']'" },
		{ "disk = [ 'tap:aio:/a,xvda,w ]\n", 1, 10, "unterminated string" },
		{ "name 'x'\n", 1, 6, "expected '='" },
		{ "  = 3\n", 1, 3, "expected a setting name" },
		{ "disk = [ tap ]\n", 1, 10, "quoted strings" },
		{ "disk = []\ndisk = []\n", 2, 1, "set twice" },
		{ "x = [ [ 1 ] ]\n", 1, 7, "nested" },
		{ "x = \n", 2, 1, "expected a value" },
	};
	struct td_disk_config cfg;
	struct td_disk_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ret = parse_cfg(cases[i].text, &cfg, &err);

		if (ret != -EINVAL)
			fail_msg("case %zu: %d, expected -EINVAL", i, ret);
		assert_int_equal(cfg.n, 0);
		assert_null(cfg.disks);
		if (err.line != cases[i].line || err.column != cases[i].column ||
		    !strstr(err.msg, cases[i].words))
			fail_msg("case %zu: got %u:%u '%s', expected %u:%u '...%s...'",
				 i, err.line, err.column, err.msg, cases[i].line,
				 cases[i].column, cases[i].words);
	}
}

static void test_config_load(void **state)
{
	char path[] = "/tmp/blktap-unit-cfg.XXXXXX";
	const char *text = "disk = [ 'tap:ram:/r,xvda,w' ]\n";
	struct td_disk_config cfg;
	struct td_disk_error err;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(td_disk_config_load(path, &cfg, &err, NULL), 0);
	assert_int_equal(cfg.n, 1);
	assert_string_equal(cfg.disks[0].driver, "ram");
	td_disk_config_free(&cfg);
	unlink(path);
	assert_int_equal(td_disk_config_load(path, &cfg, &err, NULL), -ENOENT);
	assert_non_null(strstr(err.msg, "No such file"));
	assert_non_null(strstr(err.msg, path));
	assert_int_equal(td_disk_config_load("/tmp", &cfg, &err, NULL), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_lines),
		cmocka_unit_test(test_not_tap),
		cmocka_unit_test(test_bad_lines),
		cmocka_unit_test(test_target),
		cmocka_unit_test(test_config_good),
		cmocka_unit_test(test_block_tap_line),
		cmocka_unit_test(test_config_bad),
		cmocka_unit_test(test_config_load),
	};

	return cmocka_run_group_tests_name("disk-line", tests, NULL, NULL);
}
