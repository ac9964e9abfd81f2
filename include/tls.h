/*
 * tls.h: OpenSSL contexts for the inbound listeners and outbound delivery,
 * the per-connection client setup (SNI, name checks), and the mode checks
 * on private key files that TLS and DKIM share (SPEC section 1: a
 * world-readable private key is refused).
 */
#ifndef POSTERN_TLS_H
#define POSTERN_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

/*
 * Inbound: TLS >= min_version (0 means TLS1_2_VERSION; below 1.2 is
 * refused), security level 2, HIGH ciphers without aNULL/eNULL/MD5/RC4/3DES,
 * no compression, no renegotiation, server cipher preference, no session
 * cache or tickets.  Loads the full chain from cert and the key from key,
 * refuses a key file others can read (tls_check_key_file) or a key that does
 * not match the certificate.  NULL with a readable reason in err.
 */
SSL_CTX	*tls_server_ctx_new(const char *cert, const char *key,
	    int min_version, char *err, size_t errlen);
/*
 * Outbound: TLS >= 1.2; CA from ca_file when it is non-NULL and non-empty,
 * else the system default paths.  Verification is off here and is turned on
 * per connection by tls_client_setup().
 */
SSL_CTX	*tls_client_ctx_new(const char *ca_file, char *err,
	    size_t errlen);
/*
 * Per connection: SNI = host (not for an IP literal), a trailing dot
 * ignored; with verify, SSL_VERIFY_PEER and a check of host against the
 * certificate's subjectAltName (no partial wildcards) or, for an IP
 * literal, its IP addresses.
 */
int	 tls_client_setup(SSL *, const char *host, bool verify, char *err,
	    size_t errlen);
/*
 * A private key file (TLS or DKIM): a regular file (symlinks are followed
 * and the target is checked, so certbot's live/ links work), not readable or
 * writable by others and not group-writable.  0, or -1 with err.
 */
int	 tls_check_key_file(const char *path, char *err, size_t errlen);
/* "TLSv1.3" etc. for a live SSL, "none" for NULL. */
const char *tls_version_name(const SSL *);
/* Drain the OpenSSL error queue into buf as "a; b"; returns buf. */
const char *tls_errstr(char *buf, size_t len);
/* Accepts NULL. */
void	 tls_ctx_free(SSL_CTX *);

#endif /* POSTERN_TLS_H */
