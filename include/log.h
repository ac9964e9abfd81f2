/*
 * log.h: syslog (facility mail) and, with -f, stderr.  One line per event,
 * in the Postfix-like format of SPEC section 7.  log_warn appends
 * strerror(errno); log_warnx does not.  fatal/fatalx are for programmer
 * errors and start-up only: nothing a peer or the disk does may reach them.
 */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <stdarg.h>
#include <stdbool.h>

/* ident is the syslog tag ("posternd"); stderr mirrors syslog when true. */
void	log_init(const char *ident, bool to_stderr, bool debug);
void	log_set_debug(bool);
bool	log_is_debug(void);

void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	fatal(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

/*
 * The one formatter of per-recipient delivery lines (SPEC section 7):
 * "ID: to=<rcpt>, relay=host[ip]:port, delay=S, tls=V, tls_verified=yes|no,
 * dsn=X.Y.Z, status=sent|deferred|bounced|expired (reply)".  The reply is
 * peer text and is escaped here.
 */
void	log_delivery(const char *id, const char *rcpt, const char *relay,
	    double delay, const char *tls, bool verified, const char *dsn,
	    const char *status, const char *reply);

/*
 * Capture mode for tests and for posternd -n: lines are appended to a
 * caller-owned callback instead of syslog/stderr.
 */
typedef void (*log_sink_cb)(int prio, const char *line, void *arg);
void	log_set_sink(log_sink_cb, void *arg);

#endif /* POSTERN_LOG_H */
