/*
 * util.h: allocation wrappers that treat OOM as fatal, bounded string
 * helpers, escaping of peer text for logs, queue-id formatting, and a small
 * id -> pointer hash map used to find sessions and messages by id across
 * asynchronous boundaries (STYLE 2.7).
 */
#ifndef POSTERN_UTIL_H
#define POSTERN_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "postern.h"

void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
void	*xreallocarray(void *, size_t, size_t);
char	*xstrdup(const char *);
char	*xstrndup(const char *, size_t);
int	 xasprintf(char **, const char *, ...)
	    __attribute__((format(printf, 2, 3)));

/*
 * Copy at most srclen bytes of src into dst (size dstlen) with every byte
 * outside printable ASCII written as \xHH and backslash as \\; the result is
 * always NUL-terminated and truncated with "..." when it does not fit.
 * Peer-supplied text goes through this before it reaches a log line.
 */
char	*util_escape(char *dst, size_t dstlen, const char *src, size_t srclen);

/* Lower-case ASCII copy / comparison helpers. */
void	 util_lowercase(char *);
bool	 util_domain_is_within(const char *domain, const char *parent);

/* Monotonic and wall-clock time in seconds (double) and whole seconds. */
double	 util_monotonic(void);
int64_t	 util_wallclock(void);
/* ISO 8601 UTC time "2026-11-25T10:00:00Z" into buf (>= 21 bytes). */
void	 util_iso8601(char *buf, size_t len, int64_t t);
/* RFC 5322 date-time for Date:/Received: into buf (>= 40 bytes). */
void	 util_rfc5322_date(char *buf, size_t len, int64_t t);

/* Queue ids: a random non-zero 32-bit value shown as 8 upper hex digits. */
qid_t	 util_qid_random(void);
void	 util_qid_format(char buf[QUEUE_ID_LEN + 1], qid_t);
/* Returns 0 and sets *out for exactly 8 upper hex digits, else -1. */
int	 util_qid_parse(const char *, qid_t *out);

/* Fill buf with cryptographically random bytes (getrandom). */
void	 util_random(void *buf, size_t len);

/* Write all of buf to fd, retrying on EINTR and short writes. */
int	 util_write_all(int fd, const void *buf, size_t len);
/* fsync the directory that holds path, or the directory path itself. */
int	 util_fsync_dir(const char *dirpath);

/*
 * An open-addressing hash map from non-zero uint64_t keys to pointers.
 * The map does not own the values.
 */
struct util_map {
	uint64_t	*keys;
	void		**vals;
	size_t		 cap;	/* power of two */
	size_t		 len;
	size_t		 tombs;
};

void	 util_map_init(struct util_map *);
void	 util_map_clear(struct util_map *);
/* Insert or replace; key must be non-zero. */
void	 util_map_put(struct util_map *, uint64_t key, void *val);
void	*util_map_get(const struct util_map *, uint64_t key);
/* Remove and return the value, or NULL when absent. */
void	*util_map_del(struct util_map *, uint64_t key);
/* Iterate: start with *it = 0; returns false at the end. */
bool	 util_map_next(const struct util_map *, size_t *it, uint64_t *key,
	    void **val);

#endif /* POSTERN_UTIL_H */
