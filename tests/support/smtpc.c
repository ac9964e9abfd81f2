/*
 * smtpc.c: the blocking test client behind smtpc.h.
 *
 * The socket is non-blocking underneath so that every read, write and TLS
 * handshake can honour a deadline with poll(); to the caller it behaves
 * like a blocking client.  Invariants: smtpc_send_raw() hands its buffer to
 * one send() (or one SSL_write()) and only loops on the remainder when the
 * kernel takes less, which on loopback happens only for large bodies; input
 * is buffered in c->in and never discarded except by smtpc_is_closed() and
 * by the TLS handshake (a client doing STARTTLS has nothing buffered that
 * it may keep).  The struct owns its fd, SSL and SSL_CTX.
 */
#include "compat.h"

#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "smtpc.h"

/* Room for a few replies in flight; a reply line longer than this is bad. */
#define SMTPC_INBUF	65536
#define SMTPC_EHLO_LINES	64
#define SMTPC_EHLO_LINE		512

struct smtpc {
	int		 fd;
	SSL_CTX		*ctx;		/* owned */
	SSL		*ssl;		/* owned */
	int		 tls_min;
	int		 tls_max;
	int		 timeout_ms;
	enum smtpc_status status;
	char		 err[256];
	char		 in[SMTPC_INBUF];
	size_t		 inlen;
	int		 last_code;
	char		 last[SMTPC_REPLY_MAX];
	/* Lines of the last EHLO 250 reply, prefixes stripped. */
	char		 ehlo[SMTPC_EHLO_LINES][SMTPC_EHLO_LINE];
	size_t		 nehlo;
};

static void
smtpc_seterr(struct smtpc *c, enum smtpc_status st, const char *fmt, ...)
{
	va_list	ap;

	c->status = st;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	switch (st) {
	case SMTPC_EOF:
		strlcpy(c->last, "<EOF>", sizeof(c->last));
		break;
	case SMTPC_TIMEOUT:
		strlcpy(c->last, "<timeout>", sizeof(c->last));
		break;
	default:
		snprintf(c->last, sizeof(c->last), "<error: %s>", c->err);
		break;
	}
	c->last_code = -1;
}

static long
smtpc_now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* Wait for events on the socket until deadline; 1 ready, 0 timeout. */
static int
smtpc_wait(struct smtpc *c, short events, long deadline)
{
	struct pollfd	pfd;
	long		left;
	int		n;

	for (;;) {
		left = deadline - smtpc_now_ms();
		if (left < 0)
			left = 0;
		pfd.fd = c->fd;
		pfd.events = events;
		pfd.revents = 0;
		n = poll(&pfd, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return (-1);
		return (n > 0 ? 1 : 0);
	}
}

static struct smtpc *
smtpc_open(const char *src, const char *host, int port, char *err,
    size_t errlen)
{
	struct sockaddr_storage	ss, ls;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t		 slen;
	struct smtpc		*c;
	int			 fd, one = 1;

	/* OpenSSL uses write(2): a closed peer must not kill the test. */
	signal(SIGPIPE, SIG_IGN);
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		slen = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		slen = sizeof(*sin6);
	} else {
		snprintf(err, errlen, "not a numeric address: %s", host);
		return (NULL);
	}
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return (NULL);
	}
	if (src != NULL) {
		memset(&ls, 0, sizeof(ls));
		if (ss.ss_family == AF_INET) {
			((struct sockaddr_in *)&ls)->sin_family = AF_INET;
			inet_pton(AF_INET, src,
			    &((struct sockaddr_in *)&ls)->sin_addr);
		} else {
			((struct sockaddr_in6 *)&ls)->sin6_family = AF_INET6;
			inet_pton(AF_INET6, src,
			    &((struct sockaddr_in6 *)&ls)->sin6_addr);
		}
		if (bind(fd, (struct sockaddr *)&ls, slen) == -1) {
			snprintf(err, errlen, "bind %s: %s", src,
			    strerror(errno));
			close(fd);
			return (NULL);
		}
	}
	if (connect(fd, (struct sockaddr *)&ss, slen) == -1) {
		snprintf(err, errlen, "connect %s:%d: %s", host, port,
		    strerror(errno));
		close(fd);
		return (NULL);
	}
	/* Writes must leave as written: no Nagle coalescing of split writes. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		close(fd);
		return (NULL);
	}
	c->fd = fd;
	c->timeout_ms = SMTPC_TIMEOUT_MS;
	c->last_code = -1;
	return (c);
}

struct smtpc *
smtpc_connect(const char *host, int port, char *err, size_t errlen)
{
	return (smtpc_open(NULL, host, port, err, errlen));
}

struct smtpc *
smtpc_connect_from(const char *src, const char *host, int port, char *err,
    size_t errlen)
{
	return (smtpc_open(src, host, port, err, errlen));
}

struct smtpc *
smtpc_connect_tls(const char *host, int port, const char *ca,
    const char *sni, char *err, size_t errlen)
{
	struct smtpc	*c;

	if ((c = smtpc_open(NULL, host, port, err, errlen)) == NULL)
		return (NULL);
	if (smtpc_tls_handshake(c, ca, sni) == -1) {
		snprintf(err, errlen, "TLS handshake: %s", c->err);
		smtpc_close(c);
		return (NULL);
	}
	return (c);
}

void
smtpc_close(struct smtpc *c)
{
	if (c == NULL)
		return;
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->ctx != NULL)
		SSL_CTX_free(c->ctx);
	if (c->fd != -1)
		close(c->fd);
	free(c);
}

void
smtpc_set_timeout(struct smtpc *c, int ms)
{
	c->timeout_ms = ms;
}

void
smtpc_set_tls_versions(struct smtpc *c, int min, int max)
{
	c->tls_min = min;
	c->tls_max = max;
}

static void
smtpc_ssl_errstr(char *buf, size_t len)
{
	unsigned long	e;

	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		if (buf[0] != '\0')
			strlcat(buf, "; ", len);
		ERR_error_string_n(e, buf + strlen(buf), len - strlen(buf));
	}
	if (buf[0] == '\0')
		strlcpy(buf, "no OpenSSL error queued", len);
}

int
smtpc_send_raw(struct smtpc *c, const void *buf, size_t len)
{
	const char	*p = buf;
	long		 deadline = smtpc_now_ms() + c->timeout_ms;
	ssize_t		 n;
	int		 r, e;
	char		 ebuf[200];

	while (len > 0) {
		if (c->ssl != NULL) {
			ERR_clear_error();
			r = SSL_write(c->ssl, p, len > INT32_MAX ? INT32_MAX :
			    (int)len);
			if (r > 0) {
				p += r;
				len -= (size_t)r;
				continue;
			}
			e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_WRITE ||
			    e == SSL_ERROR_WANT_READ) {
				if (smtpc_wait(c, e == SSL_ERROR_WANT_WRITE ?
				    POLLOUT : POLLIN, deadline) != 1)
					goto timeout;
				continue;
			}
			smtpc_ssl_errstr(ebuf, sizeof(ebuf));
			smtpc_seterr(c, SMTPC_IOERR, "SSL_write: %d %s", e,
			    ebuf);
			return (-1);
		}
		n = send(c->fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (smtpc_wait(c, POLLOUT, deadline) != 1)
				goto timeout;
			continue;
		}
		smtpc_seterr(c, errno == EPIPE || errno == ECONNRESET ?
		    SMTPC_EOF : SMTPC_IOERR, "send: %s", strerror(errno));
		return (-1);
	}
	return (0);
timeout:
	smtpc_seterr(c, SMTPC_TIMEOUT, "write timed out");
	return (-1);
}

int
smtpc_send_line(struct smtpc *c, const char *line)
{
	size_t	 len = strlen(line);
	char	*buf;
	int	 rc;

	if ((buf = malloc(len + 2)) == NULL) {
		smtpc_seterr(c, SMTPC_IOERR, "out of memory");
		return (-1);
	}
	memcpy(buf, line, len);
	memcpy(buf + len, "\r\n", 2);
	rc = smtpc_send_raw(c, buf, len + 2);
	free(buf);
	return (rc);
}

/*
 * Read more bytes into c->in before deadline.  1 got bytes, 0 EOF, -1
 * timeout or error (status set).
 */
static int
smtpc_fill(struct smtpc *c, long deadline)
{
	ssize_t	n;
	int	r, e, w;
	char	ebuf[200];

	if (c->inlen == sizeof(c->in)) {
		smtpc_seterr(c, SMTPC_BADREPLY, "reply line over %zu bytes",
		    sizeof(c->in));
		return (-1);
	}
	for (;;) {
		if (c->ssl != NULL) {
			ERR_clear_error();
			r = SSL_read(c->ssl, c->in + c->inlen,
			    (int)(sizeof(c->in) - c->inlen));
			if (r > 0) {
				c->inlen += (size_t)r;
				return (1);
			}
			e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_ZERO_RETURN)
				return (0);
			if (e == SSL_ERROR_WANT_READ ||
			    e == SSL_ERROR_WANT_WRITE) {
				w = smtpc_wait(c, e == SSL_ERROR_WANT_READ ?
				    POLLIN : POLLOUT, deadline);
				if (w == 1)
					continue;
				smtpc_seterr(c, SMTPC_TIMEOUT,
				    "read timed out");
				return (-1);
			}
			if (e == SSL_ERROR_SYSCALL && (r == 0 ||
			    errno == ECONNRESET || errno == EPIPE))
				return (0);
			if (e == SSL_ERROR_SSL) {
				/*
				 * An unexpected EOF without close_notify is
				 * reported as an SSL error by OpenSSL 3; to a
				 * test it is the peer closing.
				 */
				smtpc_ssl_errstr(ebuf, sizeof(ebuf));
				if (strstr(ebuf, "unexpected eof") != NULL)
					return (0);
				smtpc_seterr(c, SMTPC_IOERR, "SSL_read: %s",
				    ebuf);
				return (-1);
			}
			smtpc_seterr(c, SMTPC_IOERR, "SSL_read error %d: %s",
			    e, strerror(errno));
			return (-1);
		}
		n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);
		if (n > 0) {
			c->inlen += (size_t)n;
			return (1);
		}
		if (n == 0)
			return (0);
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if (smtpc_wait(c, POLLIN, deadline) == 1)
				continue;
			smtpc_seterr(c, SMTPC_TIMEOUT, "read timed out");
			return (-1);
		}
		if (errno == ECONNRESET)
			return (0);
		smtpc_seterr(c, SMTPC_IOERR, "recv: %s", strerror(errno));
		return (-1);
	}
}

/*
 * Take one line (LF-terminated; a CR before the LF is dropped) out of the
 * buffer into line.  0, or -1 with the status set.
 */
static int
smtpc_getline(struct smtpc *c, char *line, size_t linelen, long deadline)
{
	char	*nl;
	size_t	 n, copy;
	int	 r;

	for (;;) {
		if ((nl = memchr(c->in, '\n', c->inlen)) != NULL) {
			n = (size_t)(nl - c->in);
			copy = n;
			if (copy > 0 && c->in[copy - 1] == '\r')
				copy--;
			if (copy >= linelen)
				copy = linelen - 1;
			memcpy(line, c->in, copy);
			line[copy] = '\0';
			memmove(c->in, nl + 1, c->inlen - n - 1);
			c->inlen -= n + 1;
			return (0);
		}
		r = smtpc_fill(c, deadline);
		if (r == 0) {
			smtpc_seterr(c, SMTPC_EOF, "connection closed");
			return (-1);
		}
		if (r < 0)
			return (-1);
	}
}

int
smtpc_read_reply(struct smtpc *c, int *code, char *text, size_t textlen,
    int timeout_ms)
{
	char	 line[SMTPC_INBUF];
	char	 last[SMTPC_REPLY_MAX];
	long	 deadline;
	int	 lcode, first = -1, nlines = 0;
	bool	 more;

	deadline = smtpc_now_ms() + (timeout_ms > 0 ? timeout_ms :
	    c->timeout_ms);
	if (text != NULL && textlen > 0)
		text[0] = '\0';
	last[0] = '\0';
	do {
		if (smtpc_getline(c, line, sizeof(line), deadline) == -1)
			return (-1);
		if (last[0] != '\0')
			strlcat(last, "\n", sizeof(last));
		strlcat(last, line, sizeof(last));
		if (strlen(line) < 3 || !isdigit((unsigned char)line[0]) ||
		    !isdigit((unsigned char)line[1]) ||
		    !isdigit((unsigned char)line[2]) ||
		    (line[3] != '\0' && line[3] != ' ' && line[3] != '-')) {
			smtpc_seterr(c, SMTPC_BADREPLY, "not a reply line: %s",
			    last);
			strlcpy(c->last, last, sizeof(c->last));
			return (-1);
		}
		lcode = (line[0] - '0') * 100 + (line[1] - '0') * 10 +
		    (line[2] - '0');
		if (first == -1)
			first = lcode;
		else if (lcode != first) {
			smtpc_seterr(c, SMTPC_BADREPLY, "mixed codes: %s",
			    last);
			strlcpy(c->last, last, sizeof(c->last));
			return (-1);
		}
		more = line[3] == '-';
		if (text != NULL && textlen > 0) {
			if (nlines > 0)
				strlcat(text, "\n", textlen);
			strlcat(text, line[3] == '\0' ? "" : line + 4,
			    textlen);
		}
		nlines++;
	} while (more);
	c->status = SMTPC_OK;
	c->err[0] = '\0';
	c->last_code = first;
	strlcpy(c->last, last, sizeof(c->last));
	*code = first;
	return (0);
}

int
smtpc_cmd(struct smtpc *c, const char *line)
{
	int	code;

	if (smtpc_send_line(c, line) == -1)
		return (-1);
	if (smtpc_read_reply(c, &code, NULL, 0, 0) == -1)
		return (-1);
	return (code);
}

/* Does the single alternative alt (len bytes) match code and enh? */
static bool
smtpc_match_one(const char *alt, size_t len, int code, const char *enh)
{
	char	buf[64], digits[4];
	char	*sp;
	int	i;

	if (len >= sizeof(buf))
		return (false);
	memcpy(buf, alt, len);
	buf[len] = '\0';
	snprintf(digits, sizeof(digits), "%03d", code);
	for (i = 0; i < 3; i++) {
		if (buf[i] == 'x' || buf[i] == 'X')
			continue;
		if (buf[i] != digits[i])
			return (false);
	}
	if (buf[3] == '\0')
		return (true);
	if (buf[3] != ' ')
		return (false);
	sp = buf + 4;
	return (strcmp(sp, enh) == 0);
}

bool
smtpc_expect(struct smtpc *c, const char *want)
{
	char		 text[SMTPC_REPLY_MAX], enh[32];
	const char	*p, *bar;
	size_t		 n;
	int		 code;

	if (smtpc_read_reply(c, &code, text, sizeof(text), 0) == -1)
		return (false);
	/* The enhanced code is the first word of the first line. */
	n = strcspn(text, " \n");
	if (n >= sizeof(enh))
		n = 0;
	memcpy(enh, text, n);
	enh[n] = '\0';
	for (p = want;; p = bar + 1) {
		bar = strchr(p, '|');
		if (smtpc_match_one(p, bar == NULL ? strlen(p) :
		    (size_t)(bar - p), code, enh))
			return (true);
		if (bar == NULL)
			return (false);
	}
}

bool
smtpc_cmd_expect(struct smtpc *c, const char *line, const char *want)
{
	if (smtpc_send_line(c, line) == -1)
		return (false);
	return (smtpc_expect(c, want));
}

const char *
smtpc_last(const struct smtpc *c)
{
	return (c->last);
}

int
smtpc_last_code(const struct smtpc *c)
{
	return (c->last_code);
}

enum smtpc_status
smtpc_status(const struct smtpc *c)
{
	return (c->status);
}

const char *
smtpc_error(const struct smtpc *c)
{
	return (c->err);
}

int
smtpc_ehlo(struct smtpc *c, const char *name)
{
	char		 line[600], text[SMTPC_REPLY_MAX];
	const char	*p, *nl;
	size_t		 n;
	int		 code;

	snprintf(line, sizeof(line), "EHLO %s", name);
	if (smtpc_send_line(c, line) == -1)
		return (-1);
	if (smtpc_read_reply(c, &code, text, sizeof(text), 0) == -1)
		return (-1);
	c->nehlo = 0;
	if (code != 250)
		return (code);
	for (p = text; c->nehlo < SMTPC_EHLO_LINES; p = nl + 1) {
		nl = strchr(p, '\n');
		n = nl != NULL ? (size_t)(nl - p) : strlen(p);
		if (n >= SMTPC_EHLO_LINE)
			n = SMTPC_EHLO_LINE - 1;
		memcpy(c->ehlo[c->nehlo], p, n);
		c->ehlo[c->nehlo++][n] = '\0';
		if (nl == NULL)
			break;
	}
	return (code);
}

const char *
smtpc_ext_param(const struct smtpc *c, const char *keyword)
{
	const char	*p;
	size_t		 i, klen = strlen(keyword);

	/* Line 0 is the greeting name, not a keyword. */
	for (i = 1; i < c->nehlo; i++) {
		p = c->ehlo[i];
		if (strncasecmp(p, keyword, klen) == 0 &&
		    (p[klen] == '\0' || p[klen] == ' ' || p[klen] == '='))
			return (p[klen] == '\0' ? p + klen : p + klen + 1);
	}
	return (NULL);
}

bool
smtpc_has_ext(const struct smtpc *c, const char *keyword)
{
	return (smtpc_ext_param(c, keyword) != NULL);
}

int
smtpc_tls_handshake(struct smtpc *c, const char *ca, const char *sni)
{
	long	deadline = smtpc_now_ms() + c->timeout_ms;
	int	r, e;
	char	ebuf[300];

	if (c->ssl != NULL) {
		smtpc_seterr(c, SMTPC_IOERR, "TLS already on");
		return (-1);
	}
	/* Plaintext sent before the handshake is not ours to keep. */
	c->inlen = 0;
	if ((c->ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		goto sslerr;
	if (c->tls_min != 0 || c->tls_max != 0) {
		/* Old versions are only offered at security level 0. */
		SSL_CTX_set_security_level(c->ctx, 0);
		SSL_CTX_set_cipher_list(c->ctx, "ALL:@SECLEVEL=0");
		if (c->tls_min != 0)
			SSL_CTX_set_min_proto_version(c->ctx, c->tls_min);
		if (c->tls_max != 0)
			SSL_CTX_set_max_proto_version(c->ctx, c->tls_max);
	}
	if (ca != NULL) {
		if (SSL_CTX_load_verify_locations(c->ctx, ca, NULL) != 1)
			goto sslerr;
		SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	} else
		SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
	if ((c->ssl = SSL_new(c->ctx)) == NULL)
		goto sslerr;
	if (sni != NULL)
		SSL_set_tlsext_host_name(c->ssl, sni);
	if (ca != NULL) {
		if (sni != NULL && strcmp(sni, "127.0.0.1") == 0)
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl),
			    sni);
		else
			SSL_set1_host(c->ssl, sni != NULL ? sni : "localhost");
	}
	SSL_set_fd(c->ssl, c->fd);
	for (;;) {
		ERR_clear_error();
		r = SSL_connect(c->ssl);
		if (r == 1)
			break;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			if (smtpc_wait(c, e == SSL_ERROR_WANT_READ ? POLLIN :
			    POLLOUT, deadline) != 1) {
				smtpc_seterr(c, SMTPC_TIMEOUT,
				    "handshake timed out");
				return (-1);
			}
			continue;
		}
		smtpc_ssl_errstr(ebuf, sizeof(ebuf));
		smtpc_seterr(c, e == SSL_ERROR_SYSCALL ? SMTPC_EOF :
		    SMTPC_IOERR, "SSL_connect: error %d: %s", e, ebuf);
		SSL_free(c->ssl);
		c->ssl = NULL;
		return (-1);
	}
	return (0);
sslerr:
	smtpc_ssl_errstr(ebuf, sizeof(ebuf));
	smtpc_seterr(c, SMTPC_IOERR, "TLS setup: %s", ebuf);
	return (-1);
}

int
smtpc_starttls(struct smtpc *c, const char *ca, const char *sni)
{
	if (!smtpc_cmd_expect(c, "STARTTLS", "220")) {
		if (c->status == SMTPC_OK)
			smtpc_seterr(c, SMTPC_BADREPLY, "STARTTLS got %s",
			    c->last);
		return (-1);
	}
	return (smtpc_tls_handshake(c, ca, sni));
}

bool
smtpc_is_tls(const struct smtpc *c)
{
	return (c->ssl != NULL);
}

const char *
smtpc_tls_version(const struct smtpc *c)
{
	return (c->ssl != NULL ? SSL_get_version(c->ssl) : NULL);
}

int
smtpc_b64(const void *in, size_t len, char *out, size_t outlen)
{
	if (outlen < 4 * ((len + 2) / 3) + 1)
		return (-1);
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	return (0);
}

int
smtpc_auth_plain(struct smtpc *c, const char *authzid, const char *user,
    const char *pass)
{
	char	raw[1024], b64[1400], line[1500];
	size_t	zl = authzid != NULL ? strlen(authzid) : 0;
	size_t	ul = strlen(user), pl = strlen(pass);

	if (zl + ul + pl + 2 > sizeof(raw))
		return (-1);
	memcpy(raw, authzid != NULL ? authzid : "", zl);
	raw[zl] = '\0';
	memcpy(raw + zl + 1, user, ul);
	raw[zl + 1 + ul] = '\0';
	memcpy(raw + zl + ul + 2, pass, pl);
	if (smtpc_b64(raw, zl + ul + pl + 2, b64, sizeof(b64)) == -1)
		return (-1);
	snprintf(line, sizeof(line), "AUTH PLAIN %s", b64);
	return (smtpc_cmd(c, line));
}

int
smtpc_auth_login(struct smtpc *c, const char *user, const char *pass)
{
	char	b64[1400];
	int	code;

	if ((code = smtpc_cmd(c, "AUTH LOGIN")) != 334)
		return (code);
	if (smtpc_b64(user, strlen(user), b64, sizeof(b64)) == -1)
		return (-1);
	if ((code = smtpc_cmd(c, b64)) != 334)
		return (code);
	if (smtpc_b64(pass, strlen(pass), b64, sizeof(b64)) == -1)
		return (-1);
	return (smtpc_cmd(c, b64));
}

char *
smtpc_dot_stuff(const char *body, size_t len, size_t *outlen)
{
	char	*out, *o;
	size_t	 i;
	bool	 bol = true;

	/* Worst case every byte is a line-leading dot, plus CRLF.CRLF. */
	if ((out = malloc(2 * len + 8)) == NULL)
		return (NULL);
	o = out;
	for (i = 0; i < len; i++) {
		if (bol && body[i] == '.')
			*o++ = '.';
		*o++ = body[i];
		bol = body[i] == '\n';
	}
	if (len > 0 && !(len >= 2 && body[len - 2] == '\r' &&
	    body[len - 1] == '\n')) {
		*o++ = '\r';
		*o++ = '\n';
	}
	memcpy(o, ".\r\n", 3);
	o += 3;
	*outlen = (size_t)(o - out);
	return (out);
}

int
smtpc_parse_qid(const char *text, char *qid)
{
	const char	*p;
	int		 i;

	if ((p = strstr(text, "queued as ")) == NULL)
		return (-1);
	p += strlen("queued as ");
	for (i = 0; i < 8; i++)
		if (!isxdigit((unsigned char)p[i]) ||
		    islower((unsigned char)p[i]))
			return (-1);
	if (isxdigit((unsigned char)p[8]))
		return (-1);
	memcpy(qid, p, 8);
	qid[8] = '\0';
	return (0);
}

int
smtpc_submit(struct smtpc *c, const char *from, const char *const *rcpts,
    size_t nrcpt, const char *body, char *qid)
{
	char	 line[1100], text[SMTPC_REPLY_MAX];
	char	*data;
	size_t	 i, dlen;
	int	 code;

	if (qid != NULL)
		qid[0] = '\0';
	snprintf(line, sizeof(line), "MAIL FROM:<%s>", from);
	if ((code = smtpc_cmd(c, line)) != 250)
		return (code);
	for (i = 0; i < nrcpt; i++) {
		snprintf(line, sizeof(line), "RCPT TO:<%s>", rcpts[i]);
		if ((code = smtpc_cmd(c, line)) / 100 != 2)
			return (code);
	}
	if ((code = smtpc_cmd(c, "DATA")) != 354)
		return (code);
	if ((data = smtpc_dot_stuff(body, strlen(body), &dlen)) == NULL)
		return (-1);
	if (smtpc_send_raw(c, data, dlen) == -1) {
		free(data);
		return (-1);
	}
	free(data);
	if (smtpc_read_reply(c, &code, text, sizeof(text), 0) == -1)
		return (-1);
	if (code == 250 && qid != NULL)
		smtpc_parse_qid(text, qid);
	return (code);
}

bool
smtpc_is_closed(struct smtpc *c, int timeout_ms)
{
	long	deadline = smtpc_now_ms() + timeout_ms;
	int	r;

	for (;;) {
		c->inlen = 0;
		r = smtpc_fill(c, deadline);
		if (r == 0)
			return (true);
		if (r < 0) {
			if (c->status == SMTPC_TIMEOUT)
				return (false);
			/* A reset or TLS failure: the connection is gone. */
			return (true);
		}
	}
}
