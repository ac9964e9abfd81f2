/*
 * test_tls.c: contexts load a good pair and refuse bad ones (mismatch,
 * modes, missing files), real handshakes over a socketpair (TLS 1.3 by
 * default, SNI, name verification against the test CA, minimum version),
 * and the error-queue formatter.  Certificates come from
 * tests/support/gen-certs.sh run into a fresh directory per test.
 */
#include "compat.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls.h"

static char	tt_dir[] = "/tmp/test_tls.XXXXXX";

static void
tt_setup(void)
{
	const char	*src = getenv("POSTERN_SRCDIR");
	char		 cmd[1024];
	int		 rc;

	cr_assert_not_null(mkdtemp(tt_dir));
	snprintf(cmd, sizeof(cmd), "/bin/sh %s/tests/support/gen-certs.sh %s",
	    src != NULL && src[0] != '\0' ? src : "/work/main", tt_dir);
	rc = system(cmd);
	cr_assert(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0,
	    "%s failed (%d)", cmd, rc);
}

static void
tt_teardown(void)
{
	char	cmd[128];
	int	rc;

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tt_dir);
	rc = system(cmd);
	(void)rc;
}

TestSuite(tls, .init = tt_setup, .fini = tt_teardown, .timeout = 60);

/* Path of a file in the certificate directory (static ring of buffers). */
static const char *
tt_path(const char *name)
{
	static char	buf[8][512];
	static int	n;
	char		*p = buf[n++ % 8];

	snprintf(p, sizeof(buf[0]), "%s/%s", tt_dir, name);
	return (p);
}

/* Copy a file to name with mode. */
static const char *
tt_copy(const char *from, const char *to, mode_t mode)
{
	char	cmd[1200];

	snprintf(cmd, sizeof(cmd), "cp %s %s", tt_path(from), tt_path(to));
	cr_assert_eq(system(cmd), 0);
	cr_assert_eq(chmod(tt_path(to), mode), 0);
	return (tt_path(to));
}

/* ---- contexts ---- */

Test(tls, server_ctx_loads_good_pair)
{
	SSL_CTX	*ctx;
	char	 err[1024];

	ctx = tls_server_ctx_new(tt_path("server.pem"), tt_path("server.key"),
	    0, err, sizeof(err));
	cr_assert_not_null(ctx, "good pair refused: %s", err);
	cr_expect_eq(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	cr_expect_eq(SSL_CTX_get_security_level(ctx), 2);
	cr_expect(SSL_CTX_get_options(ctx) & SSL_OP_NO_COMPRESSION);
	cr_expect(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION);
	cr_expect(SSL_CTX_get_options(ctx) & SSL_OP_CIPHER_SERVER_PREFERENCE);
	cr_expect_eq(SSL_CTX_get_session_cache_mode(ctx), SSL_SESS_CACHE_OFF);
	tls_ctx_free(ctx);
	tls_ctx_free(NULL);
	cr_expect_eq(ERR_peek_error(), 0, "error queue left non-empty");
}

Test(tls, server_ctx_refuses_bad_input)
{
	static const struct {
		const char	*cert, *key;
		int		 minv;
		const char	*want;
	} cases[] = {
		{ "server.pem", "wrongname.key", 0, "does not match" },
		{ "wrongname.pem", "server.key", 0, "does not match" },
		{ "missing.pem", "server.key", 0, "missing.pem: cannot load "
		    "the certificate chain" },
		{ "server.pem", "missing.key", 0,
		    "missing.key: No such file or directory" },
		{ "server.key", "server.key", 0, "cannot load the certificate" },
		{ "server.pem", "notakey.pem", 0,
		    "cannot read a PEM private key" },
		{ "server.pem", ".", 0, "not a regular file" },
		{ "server.pem", "server.key", TLS1_1_VERSION, "TLSv1.2 or" },
		{ "server.pem", "server.key", 0x9999, "TLSv1.2 or" },
	};
	SSL_CTX	*ctx;
	char	 err[1024];
	size_t	 i;

	tt_copy("server.pem", "notakey.pem", 0600);
	for (i = 0; i < nitems(cases); i++) {
		err[0] = '\0';
		ctx = tls_server_ctx_new(tt_path(cases[i].cert),
		    tt_path(cases[i].key), cases[i].minv, err, sizeof(err));
		cr_expect_null(ctx, "case %zu (%s, %s) accepted", i,
		    cases[i].cert, cases[i].key);
		cr_expect_not_null(strstr(err, cases[i].want), "case %zu: got "
		    "\"%s\", want \"%s\" in it", i, err, cases[i].want);
		tls_ctx_free(ctx);
	}
	/* The OpenSSL reason is part of the message on a mismatch. */
	ctx = tls_server_ctx_new(tt_path("server.pem"),
	    tt_path("wrongname.key"), 0, err, sizeof(err));
	cr_expect_not_null(strstr(err, "error:"), "no OpenSSL detail: %s",
	    err);
	cr_expect_null(tls_server_ctx_new(NULL, tt_path("server.key"), 0, err,
	    sizeof(err)));
	cr_expect_null(tls_server_ctx_new(tt_path("server.pem"), "", 0, err,
	    sizeof(err)));
}

Test(tls, key_file_modes)
{
	static const struct {
		mode_t	 mode;
		bool	 ok;
	} cases[] = {
		{ 0600, true }, { 0400, true }, { 0640, true }, { 0440, true },
		{ 0644, false }, { 0604, false }, { 0602, false },
		{ 0601, false }, { 0660, false }, { 0620, false },
		{ 0666, false },
	};
	SSL_CTX		*ctx;
	const char	*key;
	char		 err[1024], name[32];
	size_t		 i;

	for (i = 0; i < nitems(cases); i++) {
		snprintf(name, sizeof(name), "k%04o.key",
		    (unsigned)cases[i].mode);
		key = tt_copy("server.key", name, cases[i].mode);
		err[0] = '\0';
		cr_expect_eq(tls_check_key_file(key, err, sizeof(err)) == 0,
		    cases[i].ok, "mode %04o: got %s, want %s (%s)",
		    (unsigned)cases[i].mode, err[0] ? "refused" : "accepted",
		    cases[i].ok ? "accepted" : "refused", err);
		ctx = tls_server_ctx_new(tt_path("server.pem"), key, 0, err,
		    sizeof(err));
		cr_expect_eq(ctx != NULL, cases[i].ok, "mode %04o: server "
		    "ctx %s", (unsigned)cases[i].mode, ctx ? "loaded" : err);
		if (!cases[i].ok)
			cr_expect_not_null(strstr(err, "accessible by others"),
			    "mode %04o: got \"%s\"", (unsigned)cases[i].mode,
			    err);
		tls_ctx_free(ctx);
	}
}

Test(tls, key_file_checks_symlink_target_and_type)
{
	char	err[1024];

	/* A link to a 0600 key is fine (certbot's live/ directory). */
	cr_assert_eq(symlink(tt_path("server.key"), tt_path("link.key")), 0);
	cr_expect_eq(tls_check_key_file(tt_path("link.key"), err,
	    sizeof(err)), 0, "%s", err);
	/* A link to a world-readable key is judged by the target. */
	tt_copy("server.key", "open.key", 0644);
	cr_assert_eq(symlink(tt_path("open.key"), tt_path("link2.key")), 0);
	cr_expect_eq(tls_check_key_file(tt_path("link2.key"), err,
	    sizeof(err)), -1);
	cr_expect_eq(tls_check_key_file(tt_dir, err, sizeof(err)), -1);
	cr_expect_not_null(strstr(err, "not a regular file"), "got %s", err);
	cr_expect_eq(tls_check_key_file("/nonexistent.key", err, sizeof(err)),
	    -1);
	cr_expect_str_eq(err, "/nonexistent.key: No such file or directory");
	cr_expect_eq(tls_check_key_file(NULL, err, sizeof(err)), -1);
	/* A FIFO must not hang the check. */
	cr_assert_eq(mkfifo(tt_path("fifo.key"), 0600), 0);
	cr_expect_eq(tls_check_key_file(tt_path("fifo.key"), err,
	    sizeof(err)), -1);
}

Test(tls, client_ctx)
{
	SSL_CTX	*ctx;
	char	 err[1024];

	ctx = tls_client_ctx_new(tt_path("ca.pem"), err, sizeof(err));
	cr_assert_not_null(ctx, "%s", err);
	cr_expect_eq(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	cr_expect_eq(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_NONE);
	tls_ctx_free(ctx);
	ctx = tls_client_ctx_new(NULL, err, sizeof(err));
	cr_assert_not_null(ctx, "default paths: %s", err);
	tls_ctx_free(ctx);
	ctx = tls_client_ctx_new("", err, sizeof(err));
	cr_assert_not_null(ctx, "empty ca_file: %s", err);
	tls_ctx_free(ctx);
	cr_expect_null(tls_client_ctx_new(tt_path("missing.pem"), err,
	    sizeof(err)));
	cr_expect_not_null(strstr(err, "cannot load CA"), "got %s", err);
	cr_expect_null(tls_client_ctx_new(tt_path("server.key"), err,
	    sizeof(err)));
}

Test(tls, errstr_drains_queue)
{
	SSL_CTX	*ctx;
	char	 buf[512], small[16];

	cr_expect_str_eq(tls_errstr(buf, sizeof(buf)),
	    "no detail from OpenSSL");
	ctx = SSL_CTX_new(TLS_server_method());
	cr_assert_neq(SSL_CTX_use_certificate_chain_file(ctx,
	    "/nonexistent.pem"), 1);
	cr_assert_neq(ERR_peek_error(), 0);
	tls_errstr(buf, sizeof(buf));
	cr_expect(strncmp(buf, "error:", 6) == 0, "got %s", buf);
	cr_expect_eq(ERR_peek_error(), 0, "queue not drained");
	/* Truncation stays bounded and terminated. */
	cr_assert_neq(SSL_CTX_use_certificate_chain_file(ctx,
	    "/nonexistent.pem"), 1);
	tls_errstr(small, sizeof(small));
	cr_expect_eq(strlen(small), sizeof(small) - 1);
	SSL_CTX_free(ctx);
	cr_expect_str_eq(tls_version_name(NULL), "none");
}

/* ---- handshakes ---- */

struct tt_side {
	SSL		*ssl;
	int		 rc;
	unsigned long	 err;
	char		 sni[256];
};

static void *
tt_accept(void *arg)
{
	struct tt_side	*s = arg;
	const char	*sni;

	s->rc = SSL_accept(s->ssl);
	s->err = ERR_get_error();
	if ((sni = SSL_get_servername(s->ssl, TLSEXT_NAMETYPE_host_name)) !=
	    NULL)
		strlcpy(s->sni, sni, sizeof(s->sni));
	if (s->rc == 1)
		(void)SSL_shutdown(s->ssl);
	return (NULL);
}

struct tt_result {
	bool		 ok;
	char		 client_version[32], server_version[32];
	char		 sni[256];
	long		 verify;
};

/*
 * Handshake a server context with certificate cert/key (min_version) and a
 * client context trusting ca.pem, set up for host with or without
 * verification; client_max caps the client's version when non-zero.
 */
static struct tt_result
tt_handshake(const char *cert, const char *key, int min_version,
    const char *host, bool verify, int client_max)
{
	struct tt_result	 r;
	struct tt_side		 srv;
	SSL_CTX			*sctx, *cctx;
	SSL			*cssl;
	pthread_t		 t;
	char			 err[1024];
	int			 sv[2], crc;

	memset(&r, 0, sizeof(r));
	memset(&srv, 0, sizeof(srv));
	sctx = tls_server_ctx_new(tt_path(cert), tt_path(key), min_version,
	    err, sizeof(err));
	cr_assert_not_null(sctx, "server ctx: %s", err);
	cctx = tls_client_ctx_new(tt_path("ca.pem"), err, sizeof(err));
	cr_assert_not_null(cctx, "client ctx: %s", err);
	if (client_max != 0)
		SSL_CTX_set_max_proto_version(cctx, client_max);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);

	srv.ssl = SSL_new(sctx);
	SSL_set_fd(srv.ssl, sv[0]);
	cssl = SSL_new(cctx);
	SSL_set_fd(cssl, sv[1]);
	cr_assert_eq(tls_client_setup(cssl, host, verify, err, sizeof(err)),
	    0, "tls_client_setup(%s): %s", host, err);

	cr_assert_eq(pthread_create(&t, NULL, tt_accept, &srv), 0);
	crc = SSL_connect(cssl);
	r.verify = SSL_get_verify_result(cssl);
	if (crc == 1) {
		strlcpy(r.client_version, tls_version_name(cssl),
		    sizeof(r.client_version));
		(void)SSL_shutdown(cssl);
	} else {
		/* Unblock a server still waiting for the client. */
		shutdown(sv[1], SHUT_RDWR);
	}
	pthread_join(t, NULL);
	r.ok = crc == 1 && srv.rc == 1;
	if (srv.rc == 1)
		strlcpy(r.server_version, tls_version_name(srv.ssl),
		    sizeof(r.server_version));
	strlcpy(r.sni, srv.sni, sizeof(r.sni));

	SSL_free(cssl);
	SSL_free(srv.ssl);
	close(sv[0]);
	close(sv[1]);
	tls_ctx_free(cctx);
	tls_ctx_free(sctx);
	ERR_clear_error();
	return (r);
}

Test(tls, handshake_tls13_by_default)
{
	struct tt_result	r;

	r = tt_handshake("server.pem", "server.key", 0, "mx.ok.test", true, 0);
	cr_assert(r.ok, "handshake failed (verify %ld: %s)", r.verify,
	    X509_verify_cert_error_string(r.verify));
	cr_expect_str_eq(r.client_version, "TLSv1.3");
	cr_expect_str_eq(r.server_version, "TLSv1.3");
	cr_expect_eq(r.verify, X509_V_OK);
	cr_expect_str_eq(r.sni, "mx.ok.test", "server saw SNI \"%s\"", r.sni);
}

Test(tls, verify_names)
{
	static const struct {
		const char	*cert, *key, *host;
		bool		 ok;
	} cases[] = {
		{ "server.pem", "server.key", "mx.ok.test", true },
		{ "server.pem", "server.key", "MX.OK.Test", true },
		{ "server.pem", "server.key", "mx.ok.test.", true },
		{ "server.pem", "server.key", "localhost", true },
		{ "server.pem", "server.key", "127.0.0.1", true },
		{ "server.pem", "server.key", "127.0.0.2", false },
		{ "server.pem", "server.key", "ok.test", false },
		{ "server.pem", "server.key", "a.mx.ok.test", false },
		{ "server.pem", "server.key", "mx.ok.test.evil", false },
		{ "wrongname.pem", "wrongname.key", "mx.ok.test", false },
		{ "wrongname.pem", "wrongname.key", "wrong.test", true },
		{ "selfsigned.pem", "selfsigned.key", "mx.ok.test", false },
		{ "selfsigned.pem", "selfsigned.key", "localhost", false },
	};
	struct tt_result	r;
	size_t			i;

	for (i = 0; i < nitems(cases); i++) {
		r = tt_handshake(cases[i].cert, cases[i].key, 0,
		    cases[i].host, true, 0);
		cr_expect_eq(r.ok, cases[i].ok, "%s for %s: got %s, want %s "
		    "(verify %ld: %s)", cases[i].cert, cases[i].host,
		    r.ok ? "accepted" : "refused",
		    cases[i].ok ? "accepted" : "refused", r.verify,
		    X509_verify_cert_error_string(r.verify));
	}
}

Test(tls, no_verify_accepts_any_certificate)
{
	static const char *const certs[] = { "server", "wrongname",
	    "selfsigned" };
	struct tt_result	r;
	char			cert[64], key[64];
	size_t			i;

	for (i = 0; i < nitems(certs); i++) {
		snprintf(cert, sizeof(cert), "%s.pem", certs[i]);
		snprintf(key, sizeof(key), "%s.key", certs[i]);
		r = tt_handshake(cert, key, 0, "mx.ok.test", false, 0);
		cr_expect(r.ok, "%s refused without verification", cert);
	}
}

Test(tls, sni_not_sent_for_ip)
{
	struct tt_result	r;

	r = tt_handshake("server.pem", "server.key", 0, "127.0.0.1", false, 0);
	cr_assert(r.ok);
	cr_expect_str_eq(r.sni, "", "SNI \"%s\" sent for an IP", r.sni);
	r = tt_handshake("server.pem", "server.key", 0, "mx.ok.test.", false,
	    0);
	cr_assert(r.ok);
	cr_expect_str_eq(r.sni, "mx.ok.test");
}

Test(tls, min_version)
{
	struct tt_result	r;

	/* A TLS 1.3 server refuses a client that stops at 1.2. */
	r = tt_handshake("server.pem", "server.key", TLS1_3_VERSION,
	    "mx.ok.test", true, TLS1_2_VERSION);
	cr_expect(!r.ok, "TLSv1.3-only server accepted a TLSv1.2 client");
	/* The default (1.2) server takes it, at 1.2. */
	r = tt_handshake("server.pem", "server.key", TLS1_2_VERSION,
	    "mx.ok.test", true, TLS1_2_VERSION);
	cr_expect(r.ok, "TLSv1.2 handshake failed");
	cr_expect_str_eq(r.server_version, "TLSv1.2");
	/* And the 1.3 server takes a 1.3 client. */
	r = tt_handshake("server.pem", "server.key", TLS1_3_VERSION,
	    "mx.ok.test", true, 0);
	cr_expect(r.ok);
	cr_expect_str_eq(r.server_version, "TLSv1.3");
}

Test(tls, client_setup_refuses_bad_host)
{
	SSL_CTX	*ctx;
	SSL	*ssl;
	char	 err[1024], big[300];

	ctx = tls_client_ctx_new(tt_path("ca.pem"), err, sizeof(err));
	cr_assert_not_null(ctx);
	ssl = SSL_new(ctx);
	cr_expect_eq(tls_client_setup(ssl, NULL, true, err, sizeof(err)), -1);
	cr_expect_eq(tls_client_setup(ssl, "", true, err, sizeof(err)), -1);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_expect_eq(tls_client_setup(ssl, big, true, err, sizeof(err)), -1);
	cr_expect_eq(tls_client_setup(ssl, "mx.ok.test", true, err,
	    sizeof(err)), 0);
	cr_expect_eq(SSL_get_verify_mode(ssl), SSL_VERIFY_PEER);
	SSL_free(ssl);
	tls_ctx_free(ctx);
}
