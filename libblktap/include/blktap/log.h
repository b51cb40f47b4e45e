/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One logging helper for every user-space program of the project. Messages
 * go to stderr as "<prog>: <message>", or to syslog once td_log_syslog() is
 * called (daemons).
 */
#ifndef BLKTAP_LOG_H
#define BLKTAP_LOG_H

#include <stdbool.h>

enum td_log_level { TD_LOG_ERR, TD_LOG_WARN, TD_LOG_INFO, TD_LOG_DEBUG };

void td_log_init(const char *prog, enum td_log_level max);
void td_log_syslog(bool on);
void td_log(enum td_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define td_log_err(...)		td_log(TD_LOG_ERR, __VA_ARGS__)
#define td_log_warn(...)	td_log(TD_LOG_WARN, __VA_ARGS__)
#define td_log_info(...)	td_log(TD_LOG_INFO, __VA_ARGS__)
#define td_log_debug(...)	td_log(TD_LOG_DEBUG, __VA_ARGS__)

#endif
