/*
 * log.c: the one place lines leave postern for syslog and stderr.
 *
 * Lines are formatted once into a bounded buffer; peer text must already
 * have gone through util_escape().  The "warning: " prefix follows Postfix
 * so that operators' log watchers keep working.  Safe from worker threads:
 * each call formats into its own stack buffer and syslog(3) is MT-safe.
 *
 * When nothing listens on /dev/log (a container, a test machine), glibc's
 * syslog(3) opens, connects and closes a socket for every line and fails;
 * at six lines a message that was a tenth of posternd's CPU.  So whether
 * syslog is there is probed with a connect() at most once a second, and
 * lines are only handed to syslog(3) while it is (glibc keeps its own
 * connection).  A syslogd started later is picked up within a second.
 */
#include "compat.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <paths.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define LOG_LINE_MAX	2048
/* How often whether syslog listens is checked again, in milliseconds. */
#define LOG_PROBE_MS	1000

static bool		 log_stderr;
static bool		 log_debug_on;
static log_sink_cb	 log_sink;
static void		*log_sink_arg;
static const char	*log_ident = "postern";
/* Whether a syslogd listens, and when (CLOCK_MONOTONIC_COARSE, ms) to
 * check again; races between threads only cost an extra probe. */
static atomic_bool	 log_syslog_up;
static atomic_llong	 log_probe_at;

void
log_init(const char *ident, bool to_stderr, bool debug)
{
	log_ident = ident;
	log_stderr = to_stderr;
	log_debug_on = debug;
	openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
	atomic_store(&log_probe_at, 0);
}

/* Can a datagram be sent to syslog now?  errno is left as it was. */
static bool
log_syslog_probe(void)
{
	struct sockaddr_un	sun;
	int			fd, saved = errno;
	bool			up;

	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1) {
		errno = saved;
		return (false);
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strlcpy(sun.sun_path, _PATH_LOG, sizeof(sun.sun_path));
	up = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
	close(fd);
	errno = saved;
	return (up);
}

/* Whether to hand lines to syslog(3): the last probe's answer, probed
 * again when it is LOG_PROBE_MS old (a vDSO clock read otherwise). */
static bool
log_syslog_ok(void)
{
	struct timespec	ts;
	long long	now;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (now >= atomic_load(&log_probe_at)) {
		atomic_store(&log_probe_at, now + LOG_PROBE_MS);
		atomic_store(&log_syslog_up, log_syslog_probe());
	}
	return (atomic_load(&log_syslog_up));
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
	if (log_syslog_ok())
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
