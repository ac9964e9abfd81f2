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
 * Capture mode for tests and for posternd -n: lines are appended to a
 * caller-owned callback instead of syslog/stderr.
 */
typedef void (*log_sink_cb)(int prio, const char *line, void *arg);
void	log_set_sink(log_sink_cb, void *arg);

#endif /* POSTERN_LOG_H */
