/*
 * auth.h: the users file (SPEC section 2), SASL PLAIN and LOGIN decoding
 * (RFC 4616, RFC 4954), password checks meant for a worker thread, and
 * password hashing for posternd --hash-password.  Passwords and SASL blobs
 * never reach a log line.
 */
#ifndef POSTERN_AUTH_H
#define POSTERN_AUTH_H

#include <stdbool.h>
#include <stddef.h>

/* Buffer sizes, NUL included, for a decoded user name and password. */
#define AUTH_USER_MAX		256
/* libxcrypt's CRYPT_MAX_PASSPHRASE_SIZE: crypt(3) takes no longer phrase. */
#define AUTH_PASS_MAX		512

struct auth_db;

/*
 * Load a users file: "name:crypt-hash[:domain,domain...]" per line, '#'
 * comments and blank lines.  The file must not be readable or writable by
 * others.  NULL on failure with err "FILE:LINE: message" (or "FILE: ...").
 */
struct auth_db *auth_db_load(const char *path, char *err, size_t errlen);
void	 auth_db_free(struct auth_db *);
size_t	 auth_db_count(const struct auth_db *);
bool	 auth_db_has_user(const struct auth_db *, const char *user);
/*
 * True when the user exists and has no domain restriction, or when domain
 * equals one of its domains, compared without regard to ASCII case.  The
 * match is exact: listing example.com does NOT allow sub.example.com.
 */
bool	 auth_db_user_may_send_from(const struct auth_db *,
	    const char *user, const char *domain);
bool	 auth_db_user_is_restricted(const struct auth_db *,
	    const char *user);

/*
 * SASL decoding.  Input is the response line without CRLF.  Base64 is
 * strict (RFC 4648: no whitespace, padding to a multiple of 4, zero pad
 * bits); "=" alone is an empty response and "*" cancels.  PLAIN is
 * authzid NUL authcid NUL passwd with exactly two NULs, authcid and passwd
 * non-empty, no CR or LF in any field, and authzid empty or equal to
 * authcid.  On anything but AUTH_DECODE_OK the output buffers hold "".
 */
enum auth_decode {
	AUTH_DECODE_OK,
	AUTH_DECODE_BAD_BASE64,		/* 501 5.5.2 */
	AUTH_DECODE_MALFORMED,		/* 501 5.5.2 */
	AUTH_DECODE_AUTHZID_MISMATCH,	/* 535 5.7.8 */
	AUTH_DECODE_CANCELLED		/* 501 5.7.0 */
};
enum auth_decode auth_sasl_plain_decode(const char *b64, size_t len,
	    char *user, size_t userlen, char *pass, size_t passlen);
/* One AUTH LOGIN step (user name or password): non-empty, no NUL/CR/LF. */
enum auth_decode auth_sasl_login_decode(const char *b64, size_t len,
	    char *out, size_t outlen);
/* Base64 of len bytes into out, NUL-terminated; -1 if out is too small. */
int	 auth_b64_encode(const void *, size_t len, char *out, size_t outlen);

/*
 * A password check that runs on a worker thread.  auth_check_new copies the
 * user's hash (or, for an unknown user, another hash of the file so that the
 * work, and the answer, are the same as for a wrong password: IN-56) and
 * the password, so the check never touches the db afterwards and survives a
 * reload.  auth_check_run is the slow, thread-safe part.
 */
struct auth_check;
struct auth_check *auth_check_new(const struct auth_db *, const char *user,
	    const char *pass);
void	 auth_check_run(struct auth_check *);
bool	 auth_check_ok(const struct auth_check *);
/* Frees the check after wiping the password.  Accepts NULL. */
void	 auth_check_free(struct auth_check *);

/*
 * A crypt(3) hash of pw for the users file: yescrypt ($y$) where libcrypt
 * has it, else SHA-512 ($6$).  Caller frees.  NULL with err on failure.
 */
char	*auth_hash_password(const char *pw, char *err, size_t errlen);

#endif /* POSTERN_AUTH_H */
