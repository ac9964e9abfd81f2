/*
 * tls.c: OpenSSL contexts (SPEC sections 1 to 4).
 *
 * The server context is built once per configuration load and shared by
 * every inbound session until a reload swaps it; the client context is
 * shared by every outbound connection, whose name checks are set per
 * connection by tls_client_setup() because each MX has its own name.
 * Contexts are refcounted by OpenSSL: tls_ctx_free() drops our reference
 * and live SSL objects keep theirs.
 *
 * Private keys are opened once, checked on the open descriptor (fstat, so
 * the mode we check is the mode of the file we read) and refused when
 * others may read or write them or the group may write them.  Every error
 * carries the drained OpenSSL error queue so an operator sees the reason.
 */
#include "compat.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "postern.h"
#include "tls.h"

#define TLS_SERVER_CIPHERS	"HIGH:!aNULL:!eNULL:!MD5:!RC4:!3DES"
#define TLS_SERVER_SECLEVEL	2

/* Drain the OpenSSL error queue; see tls.h. */
const char *
tls_errstr(char *buf, size_t len)
{
	unsigned long	 e;
	char		 one[256];

	if (len == 0)
		return (buf);
	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, one, sizeof(one));
		if (buf[0] != '\0')
			strlcat(buf, "; ", len);
		strlcat(buf, one, len);
	}
	if (buf[0] == '\0')
		strlcpy(buf, "no detail from OpenSSL", len);
	return (buf);
}

/*
 * Open a private key file and check what we opened.  O_NONBLOCK keeps a FIFO
 * planted at the path from hanging start-up; it is harmless on a file.
 */
static FILE *
tls_key_open(const char *path, char *err, size_t errlen)
{
	struct stat	 st;
	FILE		*f;
	int		 fd;

	if (path == NULL || path[0] == '\0') {
		snprintf(err, errlen, "no private key file given");
		return (NULL);
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return (NULL);
	}
	if (fstat(fd, &st) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: private key is not a regular file",
		    path);
		goto fail;
	}
	if ((st.st_mode & (S_IRWXO | S_IWGRP)) != 0) {
		snprintf(err, errlen, "%s: private key is accessible by others "
		    "or writable by its group (mode %04o); chmod 0600, or 0640 "
		    "with the daemon's group", path,
		    (unsigned int)(st.st_mode & 07777));
		goto fail;
	}
	if ((f = fdopen(fd, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	return (f);
fail:
	close(fd);
	return (NULL);
}

/* Check the mode of a private key file; see tls.h. */
int
tls_check_key_file(const char *path, char *err, size_t errlen)
{
	FILE	*f;

	if ((f = tls_key_open(path, err, errlen)) == NULL)
		return (-1);
	fclose(f);
	return (0);
}

/* Read the private key through the checked descriptor. */
static EVP_PKEY *
tls_key_load(const char *path, char *err, size_t errlen)
{
	EVP_PKEY	*pk;
	FILE		*f;
	char		 ebuf[512];

	if ((f = tls_key_open(path, err, errlen)) == NULL)
		return (NULL);
	pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (pk == NULL)
		snprintf(err, errlen, "%s: cannot read a PEM private key: %s",
		    path, tls_errstr(ebuf, sizeof(ebuf)));
	return (pk);
}

/* The inbound context; see tls.h. */
SSL_CTX *
tls_server_ctx_new(const char *cert, const char *key, int min_version,
    char *err, size_t errlen)
{
	SSL_CTX		*ctx;
	EVP_PKEY	*pk = NULL;
	char		 ebuf[512];

	ERR_clear_error();
	if (min_version == 0)
		min_version = TLS1_2_VERSION;
	if (min_version < TLS1_2_VERSION || min_version > TLS1_3_VERSION) {
		snprintf(err, errlen, "TLS minimum version 0x%x: want TLSv1.2 "
		    "or TLSv1.3", (unsigned int)min_version);
		return (NULL);
	}
	if (cert == NULL || cert[0] == '\0') {
		snprintf(err, errlen, "no certificate file given");
		return (NULL);
	}
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		snprintf(err, errlen, "SSL_CTX_new: %s",
		    tls_errstr(ebuf, sizeof(ebuf)));
		return (NULL);
	}
	SSL_CTX_set_security_level(ctx, TLS_SERVER_SECLEVEL);
	if (SSL_CTX_set_min_proto_version(ctx, min_version) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
		snprintf(err, errlen, "cannot set TLS versions: %s",
		    tls_errstr(ebuf, sizeof(ebuf)));
		goto fail;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* TLS 1.2 ciphers; the TLS 1.3 suites keep OpenSSL's defaults. */
	if (SSL_CTX_set_cipher_list(ctx, TLS_SERVER_CIPHERS) != 1) {
		snprintf(err, errlen, "cipher list: %s",
		    tls_errstr(ebuf, sizeof(ebuf)));
		goto fail;
	}
	/*
	 * No resumption: SMTP sessions are long and few per client, and a
	 * ticket key we never rotate would be worse than a full handshake.
	 */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_num_tickets(ctx, 0);
	/* Up to 1000 idle sessions: give their buffers back. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(err, errlen, "%s: cannot load the certificate chain: "
		    "%s", cert, tls_errstr(ebuf, sizeof(ebuf)));
		goto fail;
	}
	if ((pk = tls_key_load(key, err, errlen)) == NULL)
		goto fail;
	if (SSL_CTX_use_PrivateKey(ctx, pk) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "%s: private key does not match the "
		    "certificate in %s: %s", key, cert,
		    tls_errstr(ebuf, sizeof(ebuf)));
		goto fail;
	}
	EVP_PKEY_free(pk);
	return (ctx);
fail:
	EVP_PKEY_free(pk);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return (NULL);
}

/* The outbound context; see tls.h. */
SSL_CTX *
tls_client_ctx_new(const char *ca_file, char *err, size_t errlen)
{
	SSL_CTX	*ctx;
	char	 ebuf[512];
	int	 rc;

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		snprintf(err, errlen, "SSL_CTX_new: %s",
		    tls_errstr(ebuf, sizeof(ebuf)));
		return (NULL);
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		snprintf(err, errlen, "cannot set TLS versions: %s",
		    tls_errstr(ebuf, sizeof(ebuf)));
		goto fail;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (ca_file != NULL && ca_file[0] != '\0')
		rc = SSL_CTX_load_verify_locations(ctx, ca_file, NULL);
	else
		rc = SSL_CTX_set_default_verify_paths(ctx);
	if (rc != 1) {
		snprintf(err, errlen, "%s: cannot load CA certificates: %s",
		    ca_file != NULL && ca_file[0] != '\0' ? ca_file :
		    "system default", tls_errstr(ebuf, sizeof(ebuf)));
		goto fail;
	}
	return (ctx);
fail:
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return (NULL);
}

/* Per-connection SNI and name checks; see tls.h. */
int
tls_client_setup(SSL *ssl, const char *host, bool verify, char *err,
    size_t errlen)
{
	unsigned char	 addr[sizeof(struct in6_addr)];
	char		 name[SMTP_DOMAIN_MAX + 1], ebuf[512];
	size_t		 len;
	bool		 is_ip;

	if (host == NULL || (len = strlen(host)) == 0) {
		snprintf(err, errlen, "TLS: no host name to check");
		return (-1);
	}
	if (len > SMTP_DOMAIN_MAX + 1) {
		snprintf(err, errlen, "TLS: host name longer than %d octets",
		    SMTP_DOMAIN_MAX);
		return (-1);
	}
	/* DNS gives "mx.example." at times; certificates have no dot. */
	strlcpy(name, host, sizeof(name));
	if (len > 1 && name[len - 1] == '.')
		name[--len] = '\0';
	if (len > SMTP_DOMAIN_MAX) {
		snprintf(err, errlen, "TLS: host name longer than %d octets",
		    SMTP_DOMAIN_MAX);
		return (-1);
	}
	is_ip = inet_pton(AF_INET, name, addr) == 1 ||
	    inet_pton(AF_INET6, name, addr) == 1;

	ERR_clear_error();
	/* RFC 6066 3: SNI carries host names only, never an address. */
	if (!is_ip && SSL_set_tlsext_host_name(ssl, name) != 1) {
		snprintf(err, errlen, "TLS: cannot set SNI %s: %s", name,
		    tls_errstr(ebuf, sizeof(ebuf)));
		return (-1);
	}
	if (!verify) {
		SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
		return (0);
	}
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) :
	    SSL_set1_host(ssl, name)) != 1) {
		snprintf(err, errlen, "TLS: cannot set the name to verify %s: "
		    "%s", name, tls_errstr(ebuf, sizeof(ebuf)));
		return (-1);
	}
	SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
	return (0);
}

/* Protocol version of a live connection, or "none". */
const char *
tls_version_name(const SSL *ssl)
{
	if (ssl == NULL)
		return ("none");
	return (SSL_get_version(ssl));
}

void
tls_ctx_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}
