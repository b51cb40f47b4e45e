/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The one parser for VM disk lines and xl config files.
 *
 * Disk lines it understands:
 *   tap:<driver>:<path>,<vdev>,<mode>           tap:aio:/srv/a.img,xvda,w
 *   tap2:<driver>:<path>,<vdev>,<mode>          blktap2's spelling
 *   tap:tapdisk:<driver>:<path>,<vdev>,<mode>   xend's spelling
 *   script=block-tap,vdev=xvda,target=aio:/srv/a.img[,access=r]
 *                                               Xen's block-tap hotplug form
 * with driver one of aio, sync, ram, qcow, vmdk and mode r, ro, w or rw.
 * Positional fields may carry xl's keys (target=, vdev=, access=).
 *
 * A config file holds xl-style settings; only `disk = [ '...', ... ]` is
 * read (strings in single or double quotes, # comments, lists over several
 * lines). Disks that are not tap disks (phy:, file:, qdisk...) are kept with
 * is_tap = false so callers can say they skip them.
 *
 * Errors carry a line and a column (1-based): for a lone disk line, line 1
 * and the column in that line; for a config file, the position in the file.
 */
#ifndef BLKTAP_DISK_LINE_H
#define BLKTAP_DISK_LINE_H

#include <stdbool.h>
#include <stddef.h>

#define TD_DISK_DRIVER_MAX	16
#define TD_DISK_VDEV_MAX	32
#define TD_DISK_PATH_MAX	4096

struct td_disk {
	bool is_tap;			/* false: a disk for another backend */
	bool readonly;
	char driver[TD_DISK_DRIVER_MAX];	/* "aio", "qcow", ... */
	char path[TD_DISK_PATH_MAX];
	char vdev[TD_DISK_VDEV_MAX];	/* may be empty for a bare target */
	bool block_tap;			/* written as script=block-tap,... */
	char *text;			/* the line as written (config files) */
	unsigned int line, column;	/* where it starts (config files) */
	size_t offset, length;		/* of text in the file (config files) */
};

struct td_disk_error {
	unsigned int line, column;	/* 1-based; 0: no position */
	char msg[256];
};

struct td_disk_config {
	size_t n;
	struct td_disk *disks;
};

/*
 * Parse one disk line. Returns 0, -EINVAL (syntax; @err filled, may be
 * NULL) or -ENOTSUP (a valid-looking line for another backend; is_tap =
 * false and the rest of @disk unset).
 */
int td_disk_line_parse(const char *line, struct td_disk *disk,
		       struct td_disk_error *err);

/*
 * Parse a "TYPE:PATH" target (tap-ctl create -a, block-tap's target=).
 * 0 or -EINVAL with @err.
 */
int td_disk_target_parse(const char *target, struct td_disk *disk,
			 struct td_disk_error *err);

/* Is @name one of the drivers a disk line may name? */
bool td_disk_driver_known(const char *name);
/* "aio, sync, ram, qcow, vmdk" */
const char *td_disk_driver_list(void);

/*
 * Parse the text of a config file. 0, -EINVAL with @err, or -ENOMEM. A
 * file without a disk setting gives n = 0.
 */
int td_disk_config_parse(const char *text, size_t len,
			 struct td_disk_config *cfg, struct td_disk_error *err);
/*
 * Read and parse @path; on open/read errors err->msg names the file. With
 * @text non-NULL, the file's contents are handed back too (free() them).
 */
int td_disk_config_load(const char *path, struct td_disk_config *cfg,
			struct td_disk_error *err, char **text);
void td_disk_config_free(struct td_disk_config *cfg);

/*
 * @disk as Xen's block-tap hotplug line:
 * "script=block-tap,vdev=VDEV[,access=r],target=DRIVER:PATH". Returns the
 * length snprintf() would, so a short buffer can be detected.
 */
int td_disk_block_tap_line(const struct td_disk *disk, char *buf, size_t len);

#endif
