/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One size parser: "4096", "64K", "10M", "2G", "1T" (powers of 1024). */
#ifndef BLKTAP_SIZE_H
#define BLKTAP_SIZE_H

#include <stdint.h>

/* 0 on success, -EINVAL for bad syntax, -ERANGE on overflow. */
int td_parse_size(const char *s, uint64_t *out);

#endif
