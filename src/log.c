/*
 * log.c: the one place lines leave postern for syslog and stderr.
 *
 * Lines are formatted once into a bounded buffer; peer text must already
 * have gone through util_escape().  The "warning: " prefix follows Postfix
 * so that operators' log watchers keep working.  Safe from worker threads:
 * each call formats into its own stack buffer and syslog(3) is MT-safe.
 */
#include "compat.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define LOG_LINE_MAX	2048

static bool		 log_stderr;
static bool		 log_debug_on;
static log_sink_cb	 log_sink;
static void		*log_sink_arg;
static const char	*log_ident = "postern";

void
log_init(const char *ident, bool to_stderr, bool debug)
{
	log_ident = ident;
	log_stderr = to_stderr;
	log_debug_on = debug;
	openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_set_debug(bool on)
{
	log_debug_on = on;
}

bool
log_is_debug(void)
{
	return (log_debug_on);
}

void
log_set_sink(log_sink_cb cb, void *arg)
{
	log_sink = cb;
	log_sink_arg = arg;
}

static void
log_emit(int prio, const char *prefix, const char *fmt, va_list ap,
    int errnum)
{
	char	line[LOG_LINE_MAX];
	size_t	len;

	len = strlcpy(line, prefix, sizeof(line));
	if (len < sizeof(line))
		vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	if (errnum != 0) {
		strlcat(line, ": ", sizeof(line));
		strlcat(line, strerror(errnum), sizeof(line));
	}
	if (log_sink != NULL) {
		log_sink(prio, line, log_sink_arg);
		return;
	}
	syslog(prio, "%s", line);
	if (log_stderr)
		fprintf(stderr, "%s[%ld]: %s\n", log_ident, (long)getpid(),
		    line);
}

void
log_info(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_emit(LOG_INFO, "", fmt, ap, 0);
	va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
	va_list	ap;
	int	saved = errno;

	va_start(ap, fmt);
	log_emit(LOG_WARNING, "warning: ", fmt, ap, saved);
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_emit(LOG_WARNING, "warning: ", fmt, ap, 0);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	ap;

	if (!log_debug_on)
		return;
	va_start(ap, fmt);
	log_emit(LOG_DEBUG, "debug: ", fmt, ap, 0);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list	ap;
	int	saved = errno;

	va_start(ap, fmt);
	log_emit(LOG_CRIT, "fatal: ", fmt, ap, saved);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_emit(LOG_CRIT, "fatal: ", fmt, ap, 0);
	va_end(ap);
	exit(1);
}

void
log_delivery(const char *id, const char *rcpt, const char *relay,
    double delay, const char *tls, bool verified, const char *dsn,
    const char *status, const char *reply)
{
	char	erply[1024], ercpt[1024];

	util_escape(erply, sizeof(erply), reply, strlen(reply));
	util_escape(ercpt, sizeof(ercpt), rcpt, strlen(rcpt));
	log_info("%s: to=<%s>, relay=%s, delay=%.2f, tls=%s, "
	    "tls_verified=%s, dsn=%s, status=%s (%s)", id, ercpt, relay,
	    delay < 0 ? 0.0 : delay, tls, verified ? "yes" : "no", dsn, status,
	    erply);
}
