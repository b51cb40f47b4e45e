// SPDX-License-Identifier: LGPL-2.1-or-later
/* The project's one logging helper (see blktap/log.h). */
#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

#include "blktap/log.h"

static const char *log_prog = "blktap";
static enum td_log_level log_max = TD_LOG_INFO;
static bool log_to_syslog;

void td_log_init(const char *prog, enum td_log_level max)
{
	log_prog = prog;
	log_max = max;
}

void td_log_syslog(bool on)
{
	if (on && !log_to_syslog)
		openlog(log_prog, LOG_PID, LOG_DAEMON);
	log_to_syslog = on;
}

void td_log(enum td_log_level level, const char *fmt, ...)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char msg[1024];
	va_list ap;

	if (level > log_max)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_to_syslog)
		syslog(prio[level], "%s", msg);
	else
		fprintf(stderr, "%s: %s\n", log_prog, msg);
}
