/*
 * smtpc.h: a small blocking SMTP client for the integration tests.
 *
 * It speaks to posternd over a TCP socket, optionally wrapped in OpenSSL,
 * and keeps the byte-level control the hostile-input cases need: every
 * smtpc_send_raw() is exactly one write (one send() or one SSL_write()), so
 * a test decides what arrives together and what arrives split.  Replies are
 * read whole (multi-line included) with a deadline; EOF and timeout are told
 * apart through smtpc_status().
 */
#ifndef POSTERN_SMTPC_H
#define POSTERN_SMTPC_H

#include <stdbool.h>
#include <stddef.h>

/* Default deadline of a reply read: generous, ASan daemons are slow. */
#define SMTPC_TIMEOUT_MS	30000
/* Bytes of the last reply kept for messages (whole multi-line text). */
#define SMTPC_REPLY_MAX		8192

enum smtpc_status {
	SMTPC_OK = 0,
	SMTPC_EOF,		/* the peer closed the connection */
	SMTPC_TIMEOUT,		/* no whole reply before the deadline */
	SMTPC_IOERR,		/* read/write/TLS error (see smtpc_error) */
	SMTPC_BADREPLY		/* bytes that are not an SMTP reply */
};

struct smtpc;

/* Connect to host:port (numeric address); NULL on failure with err set. */
struct smtpc	*smtpc_connect(const char *host, int port, char *err,
		    size_t errlen);
/* Same, with the local end bound to the numeric address src first. */
struct smtpc	*smtpc_connect_from(const char *src, const char *host,
		    int port, char *err, size_t errlen);
/*
 * Implicit TLS (port 465 style): connect and handshake at once.  ca (PEM
 * file) turns on verification of the chain and of sni (or "localhost");
 * NULL accepts any certificate.
 */
struct smtpc	*smtpc_connect_tls(const char *host, int port,
		    const char *ca, const char *sni, char *err, size_t errlen);
void		 smtpc_close(struct smtpc *);

/* Per-connection read deadline in milliseconds (default SMTPC_TIMEOUT_MS). */
void		 smtpc_set_timeout(struct smtpc *, int ms);
/*
 * Restrict the TLS versions the next handshake offers (TLS1_1_VERSION ...,
 * 0 = library default).  Also lowers the client's security level so that
 * an old version can really be offered.
 */
void		 smtpc_set_tls_versions(struct smtpc *, int min, int max);

/* Exactly one write of len bytes: 0, or -1 with the status set. */
int		 smtpc_send_raw(struct smtpc *, const void *, size_t);
/* line + CRLF in one write. */
int		 smtpc_send_line(struct smtpc *, const char *line);
/*
 * Read one whole reply.  *code gets the 3-digit code; text (if not NULL)
 * gets every line without its "NNN-"/"NNN " prefix, joined with '\n'.
 * timeout_ms <= 0 uses the connection's default.  0, or -1 with
 * smtpc_status() saying EOF, TIMEOUT, IOERR or BADREPLY.
 */
int		 smtpc_read_reply(struct smtpc *, int *code, char *text,
		    size_t textlen, int timeout_ms);
/* Send line + CRLF and read the reply; returns the code or -1. */
int		 smtpc_cmd(struct smtpc *, const char *line);

/*
 * Read one reply and compare it with want: alternatives separated by '|',
 * each "CODE" or "CODE X.Y.Z", where CODE may use 'x' as a wildcard digit
 * ("5xx").  False on mismatch, EOF or timeout; smtpc_last() says what came.
 */
bool		 smtpc_expect(struct smtpc *, const char *want);
/* smtpc_send_line() then smtpc_expect(). */
bool		 smtpc_cmd_expect(struct smtpc *, const char *line,
		    const char *want);
/*
 * The last reply as received ("250-a\n250 b"), or "<EOF>", "<timeout>",
 * "<I/O error: ...>": for assertion messages.
 */
const char	*smtpc_last(const struct smtpc *);
int		 smtpc_last_code(const struct smtpc *);
enum smtpc_status smtpc_status(const struct smtpc *);
const char	*smtpc_error(const struct smtpc *);

/* EHLO name; keeps the advertised keywords.  Returns the code or -1. */
int		 smtpc_ehlo(struct smtpc *, const char *name);
/* Whether the last EHLO reply listed keyword (case-insensitive, first word). */
bool		 smtpc_has_ext(const struct smtpc *, const char *keyword);
/* The parameter text of an EHLO keyword ("SIZE 1000" -> "1000"), or NULL. */
const char	*smtpc_ext_param(const struct smtpc *, const char *keyword);

/* Handshake on the existing connection (after a 220 to STARTTLS). */
int		 smtpc_tls_handshake(struct smtpc *, const char *ca,
		    const char *sni);
/* STARTTLS, expect 220, handshake: 0 or -1. */
int		 smtpc_starttls(struct smtpc *, const char *ca,
		    const char *sni);
bool		 smtpc_is_tls(const struct smtpc *);
/* Negotiated protocol ("TLSv1.3") or NULL. */
const char	*smtpc_tls_version(const struct smtpc *);

/* AUTH PLAIN with an initial response; authzid may be NULL.  Code or -1. */
int		 smtpc_auth_plain(struct smtpc *, const char *authzid,
		    const char *user, const char *pass);
/* AUTH LOGIN with the two 334 challenges.  Final code or -1. */
int		 smtpc_auth_login(struct smtpc *, const char *user,
		    const char *pass);
/* Base64 of len bytes into out (NUL-terminated); -1 if it does not fit. */
int		 smtpc_b64(const void *, size_t len, char *out,
		    size_t outlen);

/*
 * Dot-stuff body (lines starting with '.' get another), make sure it ends
 * with CRLF, and append ".\r\n": the complete DATA payload, malloc'd.
 */
char		*smtpc_dot_stuff(const char *body, size_t len,
		    size_t *outlen);

/*
 * One transaction on a session that has said EHLO (and AUTH if needed):
 * MAIL FROM:<from>, RCPT TO:<rcpt> for each, DATA, the dot-stuffed body in
 * one write, and the final reply.  Returns the code of the first reply that
 * ended the transaction (the final one after the dot, or a MAIL/RCPT/DATA
 * rejection), -1 on I/O error.  On 250 the queue id from "queued as
 * XXXXXXXX" goes into qid (>= 9 bytes) if not NULL.
 */
int		 smtpc_submit(struct smtpc *, const char *from,
		    const char *const *rcpts, size_t nrcpt, const char *body,
		    char *qid);
/* Parse "queued as XXXXXXXX" out of a reply text; 0 or -1. */
int		 smtpc_parse_qid(const char *text, char *qid);

/*
 * Whether the peer closes within timeout_ms: true on EOF or reset, false if
 * the connection is still open (bytes received meanwhile are discarded).
 */
bool		 smtpc_is_closed(struct smtpc *, int timeout_ms);

#endif /* POSTERN_SMTPC_H */
