/*
 * dkimsign.h: DKIM signing of outgoing mail (SPEC section 2 "dkim", RFC
 * 6376, RFC 8463; doc/dkim.md): rsa-sha256 and ed25519-sha256 made with
 * OpenSSL from keys parsed once, each RSA key's output proven identical to
 * libopendkim's at load.
 *
 * A struct dkimsign holds the keys of one configuration snapshot, loaded
 * and checked when the snapshot is built (posternd -n, start, SIGHUP).
 * Signing runs at delivery time on a worker thread: the object is
 * immutable once built, so any number of threads may sign with it at once;
 * each call has its own libopendkim handles and OpenSSL contexts.
 */
#ifndef POSTERN_DKIMSIGN_H
#define POSTERN_DKIMSIGN_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct conf;
struct conf_errors;
struct dkimsign;

/*
 * Load every conf->dkim entry's key: a PEM RSA key (rsa-sha256; refused
 * under 1024 bits, a warning under 2048) or Ed25519 key (ed25519-sha256),
 * in a file that passes tls_check_key_file() (not readable by others, not
 * group-writable).  Problems go into errs as "FILE:LINE: dkim key PATH:
 * ...".  NULL when any key failed.  An empty conf->dkim gives a valid
 * object that never signs.  Nothing of conf is kept.
 */
struct dkimsign	*dkimsign_new(const struct conf *, struct conf_errors *errs);
/* Accepts NULL; clears the key material. */
void		 dkimsign_free(struct dkimsign *);

/*
 * Thread-safe.  Sign the message stored at [offset, offset + len) of fd:
 * CRLF lines, the header section, an empty line, the body, not
 * dot-stuffed; read with pread(2).  The signing domain comes from the
 * first From: addr-spec: every entry whose domain is that domain or its
 * parent signs, and when entries for several of those domains exist only
 * the most specific domain's entries do.  Returns 1 with *out a malloc'd
 * string of DKIM-Signature header fields, each folded with CRLF TAB and
 * ending in CRLF, to be sent before the message; 0 when no entry applies
 * (*out is NULL); -1 with a reason in err.
 */
int		 dkimsign_sign_fd(struct dkimsign *, int fd, off_t offset,
		    uint64_t len, char **out, char *err, size_t errlen);
/* The same over a message in memory (tests, fuzzing). */
int		 dkimsign_sign_buf(struct dkimsign *, const char *msg,
		    size_t len, char **out, char *err, size_t errlen);
/*
 * The same at a fixed time t (t= tag; 0: now), and with odkim every RSA
 * key signed by libopendkim instead of by postern: the tests compare the
 * two, as dkimsign_new() does for each RSA key with a fixed message.
 */
int		 dkimsign_sign_buf_at(struct dkimsign *, const char *msg,
		    size_t len, time_t t, bool odkim, char **out, char *err,
		    size_t errlen);
/* Whether key i (configuration order) is signed by postern, not by
 * libopendkim (only when the load-time comparison failed). */
bool		 dkimsign_key_native(const struct dkimsign *, size_t i);
/* The number of keys loaded (conf->ndkim). */
size_t		 dkimsign_count(const struct dkimsign *);

#endif /* POSTERN_DKIMSIGN_H */
