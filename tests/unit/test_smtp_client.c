/*
 * test_smtp_client.c: the outbound client state machine against a
 * scripted SMTP server in the same process (SECURITY-CASES OUT-01..OUT-24,
 * OUT-35).
 *
 * The server is a thread on 127.0.0.1:0 with blocking I/O that runs a
 * script of steps (send, read a line, read DATA, check that nothing
 * arrives, TLS handshake, close) and records every byte it received, so
 * tests compare the client's side of the conversation byte for byte.  A
 * client that does not pipeline deadlocks on a script that reads MAIL,
 * RCPT and DATA before answering, and fails on the timeouts.
 */
#include "compat.h"

#include <criterion/criterion.h>

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "smtp_client.h"
#include "tls.h"

/* Script steps. */
enum op {
	T_END,
	T_SEND,		/* write s */
	T_SEND1,	/* write s one byte at a time */
	T_LINE,		/* read a line that must start with s */
	T_DATA,		/* read DATA content up to and including CRLF.CRLF */
	T_QUIET,	/* nothing may arrive for 300 ms */
	T_TLS,		/* server side of the handshake */
	T_CLOSE,	/* close now */
	T_EOF,		/* read until the client closes */
	T_SLEEP,	/* s milliseconds */
	T_READN		/* read at least atoi(s) bytes */
};

struct step {
	enum op		 op;
	const char	*s;
};

struct tsrv {
	int		 lfd, fd;
	unsigned short	 port;
	pthread_t	 th;
	const struct step *steps;
	SSL_CTX		*ctx;
	SSL		*ssl;
	char		*rbuf;		/* received, not consumed by a step */
	size_t		 rlen, rcap;
	char		*rx;		/* everything received */
	size_t		 rxlen, rxcap;
	char		 err[1024];
	bool		 tls_failed;
};

static void
buf_add(char **b, size_t *len, size_t *cap, const char *p, size_t n)
{
	if (*len + n + 1 > *cap) {
		*cap = (*len + n + 1) * 2;
		*b = realloc(*b, *cap);
		if (*b == NULL)
			abort();
	}
	memcpy(*b + *len, p, n);
	*len += n;
	(*b)[*len] = '\0';
}

/* Read more; 0 at EOF, -1 on error or timeout. */
static ssize_t
srv_fill(struct tsrv *v)
{
	char	 b[16384];
	ssize_t	 n;

	if (v->ssl != NULL) {
		n = SSL_read(v->ssl, b, sizeof(b));
		if (n <= 0)
			n = SSL_get_error(v->ssl, (int)n) ==
			    SSL_ERROR_ZERO_RETURN ? 0 : -1;
	} else
		n = recv(v->fd, b, sizeof(b), 0);
	if (n > 0) {
		buf_add(&v->rbuf, &v->rlen, &v->rcap, b, (size_t)n);
		buf_add(&v->rx, &v->rxlen, &v->rxcap, b, (size_t)n);
	}
	return (n);
}

static void
srv_consume(struct tsrv *v, size_t n)
{
	memmove(v->rbuf, v->rbuf + n, v->rlen - n);
	v->rlen -= n;
}

static int
srv_write(struct tsrv *v, const char *p, size_t n)
{
	ssize_t	 w;

	while (n > 0) {
		if (v->ssl != NULL)
			w = SSL_write(v->ssl, p, (int)n);
		else
			w = send(v->fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return (-1);
		p += w;
		n -= (size_t)w;
	}
	return (0);
}

/* Position just past CRLF.CRLF ending DATA content, or 0. */
static size_t
srv_data_end(const char *b, size_t len)
{
	size_t	 i;

	if (len >= 3 && memcmp(b, ".\r\n", 3) == 0)
		return (3);
	for (i = 0; i + 5 <= len; i++)
		if (memcmp(b + i, "\r\n.\r\n", 5) == 0)
			return (i + 5);
	return (0);
}

static void *
srv_main(void *arg)
{
	struct tsrv		*v = arg;
	const struct step	*st;
	struct timeval		 tv = { 5, 0 };
	struct pollfd		 pfd;
	char			*nl;
	size_t			 k, end, want;
	int			 i;

	if ((v->fd = accept(v->lfd, NULL, NULL)) == -1) {
		snprintf(v->err, sizeof(v->err), "accept: %s",
		    strerror(errno));
		return (NULL);
	}
	setsockopt(v->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	i = 1;
	setsockopt(v->fd, IPPROTO_TCP, TCP_NODELAY, &i, sizeof(i));
	for (i = 0, st = v->steps; st->op != T_END && v->err[0] == '\0';
	    st++, i++) {
		switch (st->op) {
		case T_SEND:
			if (srv_write(v, st->s, strlen(st->s)) == -1)
				snprintf(v->err, sizeof(v->err),
				    "step %d: write failed", i);
			break;
		case T_SEND1:
			for (k = 0; st->s[k] != '\0'; k++) {
				if (srv_write(v, st->s + k, 1) == -1)
					break;
				usleep(1000);
			}
			break;
		case T_LINE:
			while ((nl = v->rlen == 0 ? NULL :
			    memmem(v->rbuf, v->rlen, "\r\n", 2)) == NULL)
				if (srv_fill(v) <= 0) {
					snprintf(v->err, sizeof(v->err),
					    "step %d: no line (want %s)", i,
					    st->s);
					goto out;
				}
			if (strncmp(v->rbuf, st->s, strlen(st->s)) != 0) {
				snprintf(v->err, sizeof(v->err),
				    "step %d: got \"%.*s\", want \"%s...\"",
				    i, (int)(nl - v->rbuf), v->rbuf, st->s);
				goto out;
			}
			srv_consume(v, (size_t)(nl - v->rbuf) + 2);
			break;
		case T_DATA:
			while ((end = srv_data_end(v->rbuf, v->rlen)) == 0)
				if (srv_fill(v) <= 0) {
					snprintf(v->err, sizeof(v->err),
					    "step %d: no end of data", i);
					goto out;
				}
			srv_consume(v, end);
			break;
		case T_READN:
			want = (size_t)atoi(st->s);
			while (v->rlen < want)
				if (srv_fill(v) <= 0)
					break;
			break;
		case T_QUIET:
			pfd.fd = v->fd;
			pfd.events = POLLIN;
			if (v->rlen > 0 || poll(&pfd, 1, 300) != 0) {
				snprintf(v->err, sizeof(v->err),
				    "step %d: client did not wait", i);
				goto out;
			}
			break;
		case T_TLS:
			if (v->rlen > 0) {
				snprintf(v->err, sizeof(v->err),
				    "step %d: plaintext after STARTTLS", i);
				goto out;
			}
			v->ssl = SSL_new(v->ctx);
			SSL_set_fd(v->ssl, v->fd);
			if (SSL_accept(v->ssl) != 1) {
				v->tls_failed = true;
				goto out;
			}
			break;
		case T_CLOSE:
			goto out;
		case T_EOF:
			while (srv_fill(v) > 0)
				;
			goto out;
		case T_SLEEP:
			usleep((useconds_t)atoi(st->s) * 1000);
			break;
		case T_END:
			break;
		}
	}
	/* Whatever the client still says (QUIT), until it closes. */
	while (v->err[0] == '\0' && srv_fill(v) > 0)
		;
out:
	if (v->ssl != NULL) {
		SSL_free(v->ssl);
		v->ssl = NULL;
	}
	close(v->fd);
	return (NULL);
}

static void
srv_start(struct tsrv *v, const struct step *steps, SSL_CTX *ctx)
{
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof(sin);

	signal(SIGPIPE, SIG_IGN);
	memset(v, 0, sizeof(*v));
	v->steps = steps;
	v->ctx = ctx;
	v->lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(v->lfd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(bind(v->lfd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	cr_assert(listen(v->lfd, 4) == 0);
	cr_assert(getsockname(v->lfd, (struct sockaddr *)&sin, &len) == 0);
	v->port = ntohs(sin.sin_port);
	cr_assert(pthread_create(&v->th, NULL, srv_main, v) == 0);
}

static void
srv_join(struct tsrv *v)
{
	pthread_join(v->th, NULL);
	close(v->lfd);
	if (v->rx == NULL)
		buf_add(&v->rx, &v->rxlen, &v->rxcap, "", 0);
}

static void
srv_free(struct tsrv *v)
{
	free(v->rbuf);
	free(v->rx);
}

/* The client side: callbacks record, then drive the next step. */
struct tcli {
	struct event_base	*base;
	struct smtp_client	*c;
	const struct smtp_client_msg *msgs[2];
	int			 nmsg, cur;
	int			 nready, ndone, nclosed;
	struct smtp_client_result rres[2][8];
	struct smtp_client_result overall[2];
	bool			 reusable[2];
	struct smtp_client_result why;
	bool			 is_tls, verified;
	char			 tlsver[16];
	struct smtp_ehlo_caps	 caps;
	bool			 free_in_done;
};

static void
cli_ready(struct smtp_client *c, void *arg)
{
	struct tcli	*t = arg;

	t->nready++;
	t->is_tls = smtp_client_is_tls(c);
	t->verified = smtp_client_tls_verified(c);
	strlcpy(t->tlsver, smtp_client_tls_version(c), sizeof(t->tlsver));
	t->caps = *smtp_client_caps(c);
	if (t->cur < t->nmsg)
		cr_assert_eq(smtp_client_send(c, t->msgs[t->cur]), 0);
	else
		smtp_client_quit(c);
}

static void
cli_done(struct smtp_client *c, const struct smtp_client_result *rcpt,
    size_t nrcpt, const struct smtp_client_result *overall, bool reusable,
    void *arg)
{
	struct tcli	*t = arg;
	size_t		 i;

	cr_assert_lt(t->cur, 2);
	for (i = 0; i < nrcpt && i < 8; i++)
		t->rres[t->cur][i] = rcpt[i];
	t->overall[t->cur] = *overall;
	t->reusable[t->cur] = reusable;
	t->ndone++;
	t->cur++;
	if (t->free_in_done) {
		smtp_client_free(c);
		t->c = NULL;
		event_base_loopbreak(t->base);
		return;
	}
	if (!reusable)
		event_base_loopbreak(t->base);
	else if (t->cur < t->nmsg)
		cr_assert_eq(smtp_client_reset(c), 0);
	else
		smtp_client_quit(c);
}

static void
cli_closed(struct smtp_client *c, const struct smtp_client_result *why,
    void *arg)
{
	struct tcli	*t = arg;

	(void)c;
	t->nclosed++;
	t->why = *why;
	event_base_loopbreak(t->base);
}

static const struct smtp_client_cbs cli_cbs = {
	cli_ready, cli_done, cli_closed
};

static void
cfg_init(struct smtp_client_cfg *cfg, unsigned short port)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)&cfg->addr;

	memset(cfg, 0, sizeof(*cfg));
	cfg->helo = "client.test";
	cfg->host = "mx.ok.test";
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin->sin_port = htons(port);
	cfg->addrlen = sizeof(*sin);
	cfg->tls = SMTPC_TLS_NONE;
	cfg->connect_timeout = 5;
	cfg->timeout_greeting = 5;
	cfg->timeout_cmd = 5;
	cfg->timeout_data_init = 5;
	cfg->timeout_data_block = 5;
	cfg->timeout_final = 5;
	cfg->timeout_tls = 5;
	cfg->timeout_rset = 5;
}

/* Run one client session to its end (closed, or a done not reusable). */
static void
cli_run(struct tcli *t, const struct smtp_client_cfg *cfg)
{
	struct timeval	 tv = { 20, 0 };

	t->base = event_base_new();
	cr_assert_not_null(t->base);
	t->c = smtp_client_new(t->base, cfg, &cli_cbs, t);
	cr_assert_not_null(t->c);
	event_base_loopexit(t->base, &tv);
	event_base_dispatch(t->base);
	smtp_client_free(t->c);
	t->c = NULL;
	/* bufferevents are finalized (closed) from the loop. */
	event_base_loop(t->base, EVLOOP_NONBLOCK);
}

static void
cli_end(struct tcli *t)
{
	event_base_free(t->base);
}

/* A body in an unlinked temp file, at offset 3 to prove pread's offset. */
static int
body_fd(const char *data, size_t len)
{
	char	 path[] = "/tmp/test_smtp_client.XXXXXX";
	int	 fd = mkstemp(path);

	cr_assert(fd >= 0);
	unlink(path);
	cr_assert_eq(write(fd, "XXX", 3), 3);
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	return (fd);
}

static const char *rcpts1[] = { "b@y.test" };
static const char *rcpts2[] = { "b@y.test", "c@y.test" };
static const char *rcpts4[] = { "b@y.test", "c@y.test", "d@y.test",
    "e@y.test" };

static void
msg_init(struct smtp_client_msg *m, const char **rcpts, size_t n,
    const char *body, size_t len)
{
	memset(m, 0, sizeof(*m));
	m->sender = "a@x.test";
	m->rcpts = rcpts;
	m->nrcpts = n;
	m->body_fd = body_fd(body, len);
	m->body_offset = 3;
	m->body_len = len;
}

static void
assert_res(const struct smtp_client_result *r, enum smtp_client_outcome o,
    int code, const char *status, const char *stage, const char *what)
{
	cr_assert_eq(r->outcome, o, "%s: outcome got %d want %d (%s)", what,
	    r->outcome, o, r->reply);
	cr_assert_eq(r->code, code, "%s: code got %d want %d (%s)", what,
	    r->code, code, r->reply);
	cr_assert_str_eq(r->status, status, "%s: status got %s want %s (%s)",
	    what, r->status, status, r->reply);
	cr_assert_str_eq(r->stage, stage, "%s: stage got %s want %s", what,
	    r->stage, stage);
}

#define GREET		"220 mx.test ESMTP\r\n"
#define EHLO_PIPE	"250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n" \
			"250-SIZE 1000000\r\n250 ENHANCEDSTATUSCODES\r\n"
#define EHLO_NOPIPE	"250-mx.test\r\n250 8BITMIME\r\n"
#define BODY		"Subject: t\r\n\r\nhello\r\n"
#define QUIT_STEPS	{ T_LINE, "QUIT" }, { T_SEND, "221 2.0.0 Bye\r\n" }

/* Happy path with PIPELINING, whole replies and one byte per write. */
Test(smtp_client, pipelined_happy_path)
{
	static const struct step whole[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO client.test" },
		{ T_SEND, EHLO_PIPE },
		{ T_LINE, "MAIL FROM:<a@x.test> SIZE=21" },
		{ T_LINE, "RCPT TO:<b@y.test>" }, { T_LINE, "DATA" },
		{ T_SEND, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n" },
		{ T_DATA, NULL },
		{ T_SEND, "250 2.0.0 Ok: queued as ABC\r\n" },
		QUIT_STEPS, { T_END, NULL }
	};
	static const struct step bytewise[] = {
		{ T_SEND1, GREET }, { T_LINE, "EHLO client.test" },
		{ T_SEND1, EHLO_PIPE },
		{ T_LINE, "MAIL FROM:<a@x.test> SIZE=21" },
		{ T_LINE, "RCPT TO:<b@y.test>" }, { T_LINE, "DATA" },
		{ T_SEND1, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n" },
		{ T_DATA, NULL },
		{ T_SEND1, "250 2.0.0 Ok: queued as ABC\r\n" },
		{ T_LINE, "QUIT" }, { T_SEND1, "221 2.0.0 Bye\r\n" },
		{ T_END, NULL }
	};
	const struct step *scripts[] = { whole, bytewise };
	const char	*want = "EHLO client.test\r\n"
	    "MAIL FROM:<a@x.test> SIZE=21\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"
	    BODY ".\r\nQUIT\r\n";
	size_t		 k;

	for (k = 0; k < nitems(scripts); k++) {
		struct smtp_client_cfg	 cfg;
		struct smtp_client_msg	 m;
		struct tsrv		 v;
		struct tcli		 t = { 0 };

		srv_start(&v, scripts[k], NULL);
		cfg_init(&cfg, v.port);
		msg_init(&m, rcpts1, 1, BODY, strlen(BODY));
		t.msgs[0] = &m;
		t.nmsg = 1;
		cli_run(&t, &cfg);
		srv_join(&v);
		cr_assert_str_eq(v.err, "", "script %zu: %s", k, v.err);
		cr_assert_str_eq(v.rx, want, "script %zu: got\n%s\nwant\n%s",
		    k, v.rx, want);
		cr_assert(t.caps.pipelining && t.caps.eightbitmime);
		cr_assert_eq(t.caps.size, 1000000);
		cr_assert_eq(t.ndone, 1);
		assert_res(&t.rres[0][0], SMTPC_OK, 250, "2.0.0", "DOT",
		    "rcpt");
		cr_assert_str_eq(t.rres[0][0].reply,
		    "250 2.0.0 Ok: queued as ABC");
		assert_res(&t.overall[0], SMTPC_OK, 250, "2.0.0", "DOT",
		    "overall");
		cr_assert(t.reusable[0]);
		cr_assert_eq(t.nclosed, 1);
		cr_assert_eq(t.why.outcome, SMTPC_OK);
		cr_assert_str_eq(t.tlsver, "none");
		close(m.body_fd);
		cli_end(&t);
		srv_free(&v);
	}
}

/* Without PIPELINING every command waits for its reply. */
Test(smtp_client, lockstep_without_pipelining)
{
	static const struct step s[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_NOPIPE },
		{ T_LINE, "MAIL FROM:<a@x.test>" }, { T_QUIET, NULL },
		{ T_SEND, "250 ok\r\n" },
		{ T_LINE, "RCPT TO:<b@y.test>" }, { T_QUIET, NULL },
		{ T_SEND, "250 ok\r\n" },
		{ T_LINE, "RCPT TO:<c@y.test>" }, { T_QUIET, NULL },
		{ T_SEND, "250 ok\r\n" },
		{ T_LINE, "DATA" }, { T_QUIET, NULL }, { T_SEND, "354 go\r\n" },
		{ T_DATA, NULL }, { T_SEND, "250 queued\r\n" },
		QUIT_STEPS, { T_END, NULL }
	};
	struct smtp_client_cfg	 cfg;
	struct smtp_client_msg	 m;
	struct tsrv		 v;
	struct tcli		 t = { 0 };

	srv_start(&v, s, NULL);
	cfg_init(&cfg, v.port);
	msg_init(&m, rcpts2, 2, BODY, strlen(BODY));
	t.msgs[0] = &m;
	t.nmsg = 1;
	cli_run(&t, &cfg);
	srv_join(&v);
	cr_assert_str_eq(v.err, "", "%s", v.err);
	cr_assert_str_eq(v.rx, "EHLO client.test\r\nMAIL FROM:<a@x.test>\r\n"
	    "RCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n" BODY
	    ".\r\nQUIT\r\n", "got %s", v.rx);
	/* No enhanced code in the reply: synthesised from the class. */
	assert_res(&t.rres[0][0], SMTPC_OK, 250, "2.0.0", "DOT", "b");
	assert_res(&t.rres[0][1], SMTPC_OK, 250, "2.0.0", "DOT", "c");
	cr_assert_str_eq(t.rres[0][1].reply, "250 queued");
	close(m.body_fd);
	cli_end(&t);
	srv_free(&v);
}

/* OUT-04: per-recipient results; 552 to RCPT is temporary. */
Test(smtp_client, per_recipient_results)
{
	static const struct step s[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_PIPE },
		{ T_LINE, "MAIL" }, { T_LINE, "RCPT TO:<b@" },
		{ T_LINE, "RCPT TO:<c@" }, { T_LINE, "RCPT TO:<d@" },
		{ T_LINE, "RCPT TO:<e@" }, { T_LINE, "DATA" },
		{ T_SEND, "250 2.1.0 ok\r\n550 5.1.1 no such user\r\n"
		    "250 2.1.5 ok\r\n452 4.2.2 over quota\r\n"
		    "552 5.2.2 mailbox full\r\n354 go\r\n" },
		{ T_DATA, NULL }, { T_SEND, "250 2.0.0 queued\r\n" },
		QUIT_STEPS, { T_END, NULL }
	};
	struct smtp_client_cfg	 cfg;
	struct smtp_client_msg	 m;
	struct tsrv		 v;
	struct tcli		 t = { 0 };

	srv_start(&v, s, NULL);
	cfg_init(&cfg, v.port);
	msg_init(&m, rcpts4, 4, BODY, strlen(BODY));
	t.msgs[0] = &m;
	t.nmsg = 1;
	cli_run(&t, &cfg);
	srv_join(&v);
	cr_assert_str_eq(v.err, "", "%s", v.err);
	assert_res(&t.rres[0][0], SMTPC_PERMFAIL, 550, "5.1.1", "RCPT", "b");
	cr_assert_str_eq(t.rres[0][0].reply, "550 5.1.1 no such user");
	assert_res(&t.rres[0][1], SMTPC_OK, 250, "2.0.0", "DOT", "c");
	assert_res(&t.rres[0][2], SMTPC_TEMPFAIL, 452, "4.2.2", "RCPT", "d");
	assert_res(&t.rres[0][3], SMTPC_TEMPFAIL, 552, "4.2.2", "RCPT", "e");
	assert_res(&t.overall[0], SMTPC_OK, 250, "2.0.0", "DOT", "overall");
	cr_assert(t.reusable[0]);
	close(m.body_fd);
	cli_end(&t);
	srv_free(&v);
}

/*
 * OUT-03 and OUT-05: MAIL rejected (pipelined or not) and every RCPT
 * rejected: no content is ever sent; a broken 354 gets a lone dot.
 */
Test(smtp_client, rejected_envelope_sends_no_content)
{
	static const struct step mail451[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_PIPE },
		{ T_LINE, "MAIL" }, { T_LINE, "RCPT" }, { T_LINE, "RCPT" },
		{ T_LINE, "DATA" },
		{ T_SEND, "451 4.3.0 try later\r\n503 5.5.1 no MAIL\r\n"
		    "503 5.5.1 no MAIL\r\n503 5.5.1 no valid recipients\r\n" },
		QUIT_STEPS, { T_END, NULL }
	};
	static const struct step mail550[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_NOPIPE },
		{ T_LINE, "MAIL" }, { T_SEND, "550 5.7.1 go away\r\n" },
		QUIT_STEPS, { T_END, NULL }
	};
	static const struct step rcpts550[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_PIPE },
		{ T_LINE, "MAIL" }, { T_LINE, "RCPT" }, { T_LINE, "RCPT" },
		{ T_LINE, "DATA" },
		{ T_SEND, "250 ok\r\n550 5.1.1 b\r\n450 4.2.1 c\r\n"
		    "554 5.5.1 no valid recipients\r\n" },
		QUIT_STEPS, { T_END, NULL }
	};
	static const struct step broken354[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_PIPE },
		{ T_LINE, "MAIL" }, { T_LINE, "RCPT" }, { T_LINE, "RCPT" },
		{ T_LINE, "DATA" },
		{ T_SEND, "250 ok\r\n550 5.1.1 b\r\n450 4.2.1 c\r\n"
		    "354 go\r\n" },
		{ T_LINE, "." }, { T_SEND, "250 2.0.0 what\r\n" },
		QUIT_STEPS, { T_END, NULL }
	};
	static const struct {
		const struct step *s;
		const char	*rx;
		enum smtp_client_outcome o0, o1, ov;
		int		 c0, c1;
		const char	*st0, *st1, *stage;
	} cases[] = {
		{ mail451, "EHLO client.test\r\n"
		    "MAIL FROM:<a@x.test> SIZE=21\r\n"
		    "RCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n"
		    "QUIT\r\n", SMTPC_TEMPFAIL, SMTPC_TEMPFAIL, SMTPC_TEMPFAIL,
		    451, 451, "4.3.0", "4.3.0", "MAIL" },
		{ mail550, "EHLO client.test\r\nMAIL FROM:<a@x.test>\r\n"
		    "QUIT\r\n", SMTPC_PERMFAIL, SMTPC_PERMFAIL, SMTPC_PERMFAIL,
		    550, 550, "5.7.1", "5.7.1", "MAIL" },
		{ rcpts550, "EHLO client.test\r\nMAIL FROM:<a@x.test> SIZE=21"
		    "\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n"
		    "QUIT\r\n", SMTPC_PERMFAIL, SMTPC_TEMPFAIL, SMTPC_TEMPFAIL,
		    550, 450, "5.1.1", "4.2.1", "RCPT" },
		{ broken354, "EHLO client.test\r\nMAIL FROM:<a@x.test> SIZE=21"
		    "\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n"
		    ".\r\nQUIT\r\n", SMTPC_PERMFAIL, SMTPC_TEMPFAIL,
		    SMTPC_TEMPFAIL, 550, 450, "5.1.1", "4.2.1", "RCPT" },
	};
	size_t	 k;

	for (k = 0; k < nitems(cases); k++) {
		struct smtp_client_cfg	 cfg;
		struct smtp_client_msg	 m;
		struct tsrv		 v;
		struct tcli		 t = { 0 };

		srv_start(&v, cases[k].s, NULL);
		cfg_init(&cfg, v.port);
		msg_init(&m, rcpts2, 2, BODY, strlen(BODY));
		t.msgs[0] = &m;
		t.nmsg = 1;
		cli_run(&t, &cfg);
		srv_join(&v);
		cr_assert_str_eq(v.err, "", "case %zu: %s", k, v.err);
		cr_assert_str_eq(v.rx, cases[k].rx, "case %zu: got\n%s", k,
		    v.rx);
		cr_assert_eq(t.ndone, 1, "case %zu", k);
		assert_res(&t.rres[0][0], cases[k].o0, cases[k].c0,
		    cases[k].st0, cases[k].stage, "b");
		assert_res(&t.rres[0][1], cases[k].o1, cases[k].c1,
		    cases[k].st1, cases[k].stage, "c");
		cr_assert_eq(t.overall[0].outcome, cases[k].ov, "case %zu", k);
		cr_assert(t.reusable[0], "case %zu", k);
		cr_assert_eq(t.nclosed, 1);
		close(m.body_fd);
		cli_end(&t);
		srv_free(&v);
	}
}

/* OUT-03: 421 at RCPT defers the whole transaction; not reusable. */
Test(smtp_client, reply_421_defers_everything)
{
	static const struct step s[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_PIPE },
		{ T_LINE, "MAIL" }, { T_LINE, "RCPT" }, { T_LINE, "RCPT" },
		{ T_LINE, "DATA" },
		{ T_SEND, "250 ok\r\n421 4.3.2 shutting down\r\n" },
		{ T_EOF, NULL }, { T_END, NULL }
	};
	struct smtp_client_cfg	 cfg;
	struct smtp_client_msg	 m;
	struct tsrv		 v;
	struct tcli		 t = { 0 };

	srv_start(&v, s, NULL);
	cfg_init(&cfg, v.port);
	msg_init(&m, rcpts2, 2, BODY, strlen(BODY));
	t.msgs[0] = &m;
	t.nmsg = 1;
	cli_run(&t, &cfg);
	srv_join(&v);
	cr_assert_str_eq(v.err, "", "%s", v.err);
	assert_res(&t.rres[0][0], SMTPC_TEMPFAIL, 421, "4.3.2", "RCPT", "b");
	assert_res(&t.rres[0][1], SMTPC_TEMPFAIL, 421, "4.3.2", "RCPT", "c");
	assert_res(&t.overall[0], SMTPC_TEMPFAIL, 421, "4.3.2", "RCPT", "all");
	cr_assert_not(t.reusable[0]);
	cr_assert_eq(t.nclosed, 0);
	/* Nothing after DATA: no body, no QUIT. */
	cr_assert(strstr(v.rx, "DATA\r\n") != NULL &&
	    strcmp(strstr(v.rx, "DATA\r\n"), "DATA\r\n") == 0, "%s", v.rx);
	close(m.body_fd);
	cli_end(&t);
	srv_free(&v);
}

/*
 * Local verdicts, nothing sent: OUT-18 (SIZE), OUT-19 (8BITMIME,
 * SMTPUTF8).  And the parameters MAIL carries when the peer offers them.
 */
Test(smtp_client, local_verdicts_send_nothing)
{
	static const struct step small[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" },
		{ T_SEND, "250-mx\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
		    "250 SIZE 10\r\n" },
		QUIT_STEPS, { T_END, NULL }
	};
	static const struct step no8bit[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" },
		{ T_SEND, "250-mx\r\n250 PIPELINING\r\n" },
		QUIT_STEPS, { T_END, NULL }
	};
	static const struct {
		const struct step *s;
		bool		 eightbit, utf8;
		enum smtp_client_outcome o;
		const char	*status;
	} cases[] = {
		{ small, false, false, SMTPC_PERMFAIL, "5.3.4" },
		{ no8bit, true, false, SMTPC_PERMFAIL, "5.6.7" },
		{ no8bit, false, true, SMTPC_PERMFAIL, "5.6.7" },
	};
	size_t	 k;

	for (k = 0; k < nitems(cases); k++) {
		struct smtp_client_cfg	 cfg;
		struct smtp_client_msg	 m;
		struct tsrv		 v;
		struct tcli		 t = { 0 };

		srv_start(&v, cases[k].s, NULL);
		cfg_init(&cfg, v.port);
		msg_init(&m, rcpts2, 2, BODY, strlen(BODY));
		m.eightbit = cases[k].eightbit;
		m.smtputf8 = cases[k].utf8;
		t.msgs[0] = &m;
		t.nmsg = 1;
		cli_run(&t, &cfg);
		srv_join(&v);
		cr_assert_str_eq(v.err, "", "case %zu: %s", k, v.err);
		cr_assert_str_eq(v.rx, "EHLO client.test\r\nQUIT\r\n",
		    "case %zu: got %s", k, v.rx);
		assert_res(&t.rres[0][0], cases[k].o, 0, cases[k].status,
		    "MAIL", "b");
		assert_res(&t.rres[0][1], cases[k].o, 0, cases[k].status,
		    "MAIL", "c");
		assert_res(&t.overall[0], cases[k].o, 0, cases[k].status,
		    "MAIL", "overall");
		cr_assert(t.reusable[0]);
		close(m.body_fd);
		cli_end(&t);
		srv_free(&v);
	}
}

Test(smtp_client, mail_parameters)
{
	static const struct step s[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" },
		{ T_SEND, "250-mx\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
		    "250 SIZE 100\r\n" },
		{ T_LINE, "MAIL FROM:<> SIZE=21 BODY=8BITMIME SMTPUTF8" },
		{ T_SEND, "250 ok\r\n" }, { T_LINE, "RCPT TO:<b@y.test>" },
		{ T_SEND, "250 ok\r\n" }, { T_LINE, "DATA" },
		{ T_SEND, "354 go\r\n" }, { T_DATA, NULL },
		{ T_SEND, "250 ok\r\n" }, QUIT_STEPS, { T_END, NULL }
	};
	struct smtp_client_cfg	 cfg;
	struct smtp_client_msg	 m;
	struct tsrv		 v;
	struct tcli		 t = { 0 };

	srv_start(&v, s, NULL);
	cfg_init(&cfg, v.port);
	msg_init(&m, rcpts1, 1, BODY, strlen(BODY));
	m.sender = "";
	m.eightbit = m.smtputf8 = true;
	t.msgs[0] = &m;
	t.nmsg = 1;
	cli_run(&t, &cfg);
	srv_join(&v);
	cr_assert_str_eq(v.err, "", "%s", v.err);
	assert_res(&t.rres[0][0], SMTPC_OK, 250, "2.0.0", "DOT", "b");
	close(m.body_fd);
	cli_end(&t);
	srv_free(&v);
}

/* The reference for OUT-20: stuff leading dots, end with CRLF.CRLF. */
static char *
stuff(const char *b, size_t len, size_t *outlen)
{
	char	*o = malloc(2 * len + 8), *p = o;
	bool	 bol = true;
	size_t	 i;

	cr_assert_not_null(o);
	for (i = 0; i < len; i++) {
		if (bol && b[i] == '.')
			*p++ = '.';
		*p++ = b[i];
		bol = b[i] == '\n';
	}
	if (!bol)
		p += sprintf(p, "\r\n");
	p += sprintf(p, ".\r\n");
	*outlen = (size_t)(p - o);
	return (o);
}

/* OUT-20: dot-stuffing, a missing final CRLF, large bodies. */
Test(smtp_client, dot_stuffing_and_final_crlf)
{
	static const struct step s[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_NOPIPE },
		{ T_LINE, "MAIL" }, { T_SEND, "250 ok\r\n" },
		{ T_LINE, "RCPT" }, { T_SEND, "250 ok\r\n" },
		{ T_LINE, "DATA" }, { T_SEND, "354 go\r\n" }, { T_DATA, NULL },
		{ T_SEND, "250 ok\r\n" }, QUIT_STEPS, { T_END, NULL }
	};
	static const struct {
		const char	*body, *wire;
	} cases[] = {
		{ ".hidden\r\nline\r\n..two\r\nlast",
		    "..hidden\r\nline\r\n...two\r\nlast\r\n.\r\n" },
		{ "", ".\r\n" },
		{ ".\r\n", "..\r\n.\r\n" },
		{ "a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n" },
		{ "no final crlf .", "no final crlf .\r\n.\r\n" },
		{ "x\r\n.", "x\r\n..\r\n.\r\n" },
		{ NULL, NULL },		/* large, generated */
	};
	const char	*head = "EHLO client.test\r\nMAIL FROM:<a@x.test>\r\n"
	    "RCPT TO:<b@y.test>\r\nDATA\r\n";
	size_t		 k, i, len, wlen;
	char		*big = NULL, *want, *wire;

	for (k = 0; k < nitems(cases); k++) {
		struct smtp_client_cfg	 cfg;
		struct smtp_client_msg	 m;
		struct tsrv		 v;
		struct tcli		 t = { 0 };
		const char		*body = cases[k].body;

		if (body == NULL) {
			/* 300 KiB of lines of every length, half of them
			 * dotted, so dots fall on every chunk boundary. */
			len = 300 * 1024;
			big = malloc(len);
			cr_assert_not_null(big);
			for (i = 0; i < len; i++)
				big[i] = 'a' + (char)(i % 26);
			for (i = 0; i + 2 < len; i += 2 + (i * 7919) % 97) {
				big[i] = '\r';
				big[i + 1] = '\n';
				if (i + 2 < len && (i / 3) % 2 == 0)
					big[i + 2] = '.';
			}
			big[0] = '.';
			big[len - 2] = '\r';
			big[len - 1] = '\n';
			/* A CR may have been left without its LF. */
			for (i = 0; i + 1 < len; i++)
				if (big[i] == '\r' && big[i + 1] != '\n')
					big[i] = 'r';
				else if (big[i + 1] == '\n' && big[i] != '\r')
					big[i + 1] = 'n';
			body = big;
			wire = stuff(big, len, &wlen);
		} else {
			len = strlen(body);
			wire = strdup(cases[k].wire);
			wlen = strlen(wire);
		}
		srv_start(&v, s, NULL);
		cfg_init(&cfg, v.port);
		msg_init(&m, rcpts1, 1, body, len);
		t.msgs[0] = &m;
		t.nmsg = 1;
		cli_run(&t, &cfg);
		srv_join(&v);
		cr_assert_str_eq(v.err, "", "case %zu: %s", k, v.err);
		want = malloc(strlen(head) + wlen + 16);
		cr_assert_not_null(want);
		sprintf(want, "%s%.*s%s", head, (int)wlen, wire, "QUIT\r\n");
		cr_assert_eq(v.rxlen, strlen(want), "case %zu: length got %zu "
		    "want %zu", k, v.rxlen, strlen(want));
		cr_assert(memcmp(v.rx, want, v.rxlen) == 0,
		    "case %zu: got\n%s\nwant\n%s", k, v.rx, want);
		assert_res(&t.rres[0][0], SMTPC_OK, 250, "2.0.0", "DOT", "b");
		free(want);
		free(wire);
		close(m.body_fd);
		cli_end(&t);
		srv_free(&v);
	}
	free(big);
}

/*
 * OUT-20: a bare CR or LF in the body is never sent; the dot is never
 * sent either, so the peer discards the partial message.  A body shorter
 * than announced (spool read error) is deferred the same way.
 */
Test(smtp_client, bad_body_is_never_completed)
{
	static const struct step s[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_NOPIPE },
		{ T_LINE, "MAIL" }, { T_SEND, "250 ok\r\n" },
		{ T_LINE, "RCPT" }, { T_SEND, "250 ok\r\n" },
		{ T_LINE, "DATA" }, { T_SEND, "354 go\r\n" }, { T_EOF, NULL },
		{ T_END, NULL }
	};
	static const struct {
		const char	*body;
		size_t		 extra;		/* announced, not there */
		enum smtp_client_outcome o;
		const char	*status;
	} cases[] = {
		{ "a\nb\r\n", 0, SMTPC_PERMFAIL, "5.6.0" },
		{ "a\rb\r\n", 0, SMTPC_PERMFAIL, "5.6.0" },
		{ "ab\r\nc\r", 0, SMTPC_PERMFAIL, "5.6.0" },
		{ "ab\r\n", 10, SMTPC_TEMPFAIL, "4.3.0" },
	};
	size_t	 k;

	for (k = 0; k < nitems(cases); k++) {
		struct smtp_client_cfg	 cfg;
		struct smtp_client_msg	 m;
		struct tsrv		 v;
		struct tcli		 t = { 0 };

		srv_start(&v, s, NULL);
		cfg_init(&cfg, v.port);
		msg_init(&m, rcpts1, 1, cases[k].body, strlen(cases[k].body));
		m.body_len += cases[k].extra;
		t.msgs[0] = &m;
		t.nmsg = 1;
		cli_run(&t, &cfg);
		srv_join(&v);
		cr_assert_str_eq(v.err, "", "case %zu: %s", k, v.err);
		cr_assert(strstr(v.rx, "\r\n.\r\n") == NULL,
		    "case %zu: the message was completed: %s", k, v.rx);
		cr_assert(strchr(strstr(v.rx, "DATA\r\n") + 6, '\n') == NULL ||
		    cases[k].extra > 0, "case %zu: a bare LF left: %s", k,
		    v.rx);
		assert_res(&t.rres[0][0], cases[k].o, 0, cases[k].status,
		    "DATA", "b");
		cr_assert_not(t.reusable[0]);
		close(m.body_fd);
		cli_end(&t);
		srv_free(&v);
	}
}

/* OUT-12, OUT-13: a drop during DATA, and after the dot. */
Test(smtp_client, lost_connection_in_data)
{
	static const struct step mid[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" },
		{ T_SEND, "250-mx.test\r\n250 PIPELINING\r\n" },
		{ T_LINE, "MAIL" }, { T_LINE, "RCPT" }, { T_LINE, "RCPT" },
		{ T_LINE, "DATA" },
		{ T_SEND, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n" },
		{ T_READN, "1000" }, { T_CLOSE, NULL }, { T_END, NULL }
	};
	static const struct step afterdot[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_PIPE },
		{ T_LINE, "MAIL" }, { T_LINE, "RCPT" }, { T_LINE, "RCPT" },
		{ T_LINE, "DATA" },
		{ T_SEND, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n" },
		{ T_DATA, NULL }, { T_CLOSE, NULL }, { T_END, NULL }
	};
	static const struct {
		const struct step *s;
		size_t		 len;
		const char	*stage, *text;
	} cases[] = {
		{ mid, 32 * 1024 * 1024, "DATA", "while sending message body" },
		{ afterdot, 100, "DOT", "after end of data" },
	};
	size_t	 k;
	char	*body;

	for (k = 0; k < nitems(cases); k++) {
		struct smtp_client_cfg	 cfg;
		struct smtp_client_msg	 m;
		struct tsrv		 v;
		struct tcli		 t = { 0 };

		body = malloc(cases[k].len);
		cr_assert_not_null(body);
		memset(body, 'x', cases[k].len);
		memcpy(body + cases[k].len - 2, "\r\n", 2);
		srv_start(&v, cases[k].s, NULL);
		cfg_init(&cfg, v.port);
		msg_init(&m, rcpts2, 2, body, cases[k].len);
		t.msgs[0] = &m;
		t.nmsg = 1;
		cli_run(&t, &cfg);
		srv_join(&v);
		cr_assert_str_eq(v.err, "", "case %zu: %s", k, v.err);
		cr_assert_eq(t.ndone, 1);
		assert_res(&t.rres[0][0], SMTPC_TEMPFAIL, 0, "4.4.2",
		    cases[k].stage, "b");
		assert_res(&t.rres[0][1], SMTPC_TEMPFAIL, 0, "4.4.2",
		    cases[k].stage, "c");
		cr_assert(strstr(t.overall[0].reply, cases[k].text) != NULL,
		    "case %zu: %s", k, t.overall[0].reply);
		cr_assert_not(t.reusable[0]);
		free(body);
		close(m.body_fd);
		cli_end(&t);
		srv_free(&v);
	}
}

/*
 * OUT-07, OUT-08, OUT-10: reply shapes (CVE-2020-8794) as the reply to
 * MAIL.  Well-formed ones go on; the rest are protocol errors that defer.
 */
Test(smtp_client, reply_shapes)
{
	static char	 longline[70 * 1024];
	static char	 manylines[1001 * 8 + 16];
	static const char *ok[] = {
		"250-a\r\n250 b\r\n", "250-x\r\n250\r\n", "250\r\n",
		"250 \r\n",
	};
	const char	*bad[] = {
		"250-x\r\n550 y\r\n", "600 x\r\n", "25\r\n", "2a0 x\r\n",
		"250x\r\n", "199 x\r\n", "250 a\nb\r\n", "250 a\rb\r\n",
		longline, manylines,
	};
	size_t		 k, i;

	memset(longline, 'a', sizeof(longline) - 1);
	memcpy(longline, "250 ", 4);
	for (i = 0; i < 1001; i++)
		memcpy(manylines + 8 * i, "250-xx\r\n", 8);
	strcpy(manylines + 8 * 1001, "250 end\r\n");

	for (k = 0; k < nitems(ok) + nitems(bad); k++) {
		bool			 good = k < nitems(ok);
		struct step		 s[16];
		struct smtp_client_cfg	 cfg;
		struct smtp_client_msg	 m;
		struct tsrv		 v;
		struct tcli		 t = { 0 };
		int			 n = 0;

		s[n++] = (struct step){ T_SEND, GREET };
		s[n++] = (struct step){ T_LINE, "EHLO" };
		s[n++] = (struct step){ T_SEND, EHLO_NOPIPE };
		s[n++] = (struct step){ T_LINE, "MAIL" };
		s[n++] = (struct step){ T_SEND, good ? ok[k] :
		    bad[k - nitems(ok)] };
		if (good) {
			s[n++] = (struct step){ T_LINE, "RCPT" };
			s[n++] = (struct step){ T_SEND, "250 ok\r\n" };
			s[n++] = (struct step){ T_LINE, "DATA" };
			s[n++] = (struct step){ T_SEND, "354 go\r\n" };
			s[n++] = (struct step){ T_DATA, NULL };
			s[n++] = (struct step){ T_SEND, "250 ok\r\n" };
			s[n++] = (struct step){ T_LINE, "QUIT" };
			s[n++] = (struct step){ T_SEND, "221 bye\r\n" };
		} else
			s[n++] = (struct step){ T_EOF, NULL };
		s[n++] = (struct step){ T_END, NULL };
		srv_start(&v, s, NULL);
		cfg_init(&cfg, v.port);
		msg_init(&m, rcpts1, 1, BODY, strlen(BODY));
		t.msgs[0] = &m;
		t.nmsg = 1;
		cli_run(&t, &cfg);
		srv_join(&v);
		cr_assert_str_eq(v.err, "", "case %zu: %s", k, v.err);
		cr_assert_eq(t.ndone, 1, "case %zu", k);
		if (good) {
			assert_res(&t.rres[0][0], SMTPC_OK, 250, "2.0.0",
			    "DOT", "b");
			cr_assert(t.reusable[0]);
		} else {
			assert_res(&t.rres[0][0], SMTPC_TEMPFAIL, 0, "4.5.0",
			    "MAIL", "b");
			cr_assert(strstr(t.rres[0][0].reply, "protocol error")
			    != NULL, "case %zu: %s", k, t.rres[0][0].reply);
			cr_assert_not(t.reusable[0]);
			cr_assert(strstr(v.rx, "RCPT") == NULL);
		}
		close(m.body_fd);
		cli_end(&t);
		srv_free(&v);
	}
}

/* OUT-10: a reply that arrives before its command is a protocol error. */
Test(smtp_client, unsolicited_reply)
{
	static const struct step s[] = {
		{ T_SEND, "220 hi\r\n250 extra\r\n" }, { T_EOF, NULL },
		{ T_END, NULL }
	};
	struct smtp_client_cfg	 cfg;
	struct tsrv		 v;
	struct tcli		 t = { 0 };

	srv_start(&v, s, NULL);
	cfg_init(&cfg, v.port);
	cli_run(&t, &cfg);
	srv_join(&v);
	cr_assert_eq(t.nready, 0);
	cr_assert_eq(t.nclosed, 1);
	assert_res(&t.why, SMTPC_TEMPFAIL, 0, "4.5.0", "EHLO", "why");
	cli_end(&t);
	srv_free(&v);
}

/* OUT-01, OUT-02: a 5xx greeting; EHLO refused falls back to HELO. */
Test(smtp_client, greeting_and_helo_fallback)
{
	static const struct step g554[] = {
		{ T_SEND, "554 5.3.2 no SMTP service here\r\n" },
		{ T_EOF, NULL }, { T_END, NULL }
	};
	static const struct step helo[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" },
		{ T_SEND, "502 5.5.2 what\r\n" },
		{ T_LINE, "HELO client.test" }, { T_SEND, "250 mx\r\n" },
		{ T_LINE, "MAIL FROM:<a@x.test>" }, { T_SEND, "250 ok\r\n" },
		{ T_LINE, "RCPT" }, { T_SEND, "250 ok\r\n" },
		{ T_LINE, "DATA" }, { T_SEND, "354 go\r\n" }, { T_DATA, NULL },
		{ T_SEND, "250 ok\r\n" }, QUIT_STEPS, { T_END, NULL }
	};
	struct smtp_client_cfg	 cfg;
	struct smtp_client_msg	 m;
	struct tsrv		 v;
	struct tcli		 t = { 0 }, t2 = { 0 };

	srv_start(&v, g554, NULL);
	cfg_init(&cfg, v.port);
	cli_run(&t, &cfg);
	srv_join(&v);
	cr_assert_eq(t.nclosed, 1);
	/* Temporary so that the caller tries the next MX. */
	assert_res(&t.why, SMTPC_TEMPFAIL, 554, "4.3.2", "GREETING", "why");
	cr_assert_str_eq(t.why.reply, "554 5.3.2 no SMTP service here");
	cr_assert_str_eq(v.rx, "");
	cli_end(&t);
	srv_free(&v);

	srv_start(&v, helo, NULL);
	cfg_init(&cfg, v.port);
	msg_init(&m, rcpts1, 1, BODY, strlen(BODY));
	t2.msgs[0] = &m;
	t2.nmsg = 1;
	cli_run(&t2, &cfg);
	srv_join(&v);
	cr_assert_str_eq(v.err, "", "%s", v.err);
	assert_res(&t2.rres[0][0], SMTPC_OK, 250, "2.0.0", "DOT", "b");
	cr_assert_not(t2.caps.pipelining);
	close(m.body_fd);
	cli_end(&t2);
	srv_free(&v);
}

/* OUT-17: RSET then a second message; a 421 to RSET closes. */
Test(smtp_client, reset_and_reuse)
{
	static const struct step s[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_PIPE },
		{ T_LINE, "MAIL" }, { T_LINE, "RCPT" }, { T_LINE, "DATA" },
		{ T_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" }, { T_DATA, NULL },
		{ T_SEND, "250 2.0.0 first\r\n" },
		{ T_LINE, "RSET" }, { T_SEND, "250 2.0.0 ok\r\n" },
		{ T_LINE, "MAIL FROM:<z@x.test>" }, { T_LINE, "RCPT" },
		{ T_LINE, "DATA" },
		{ T_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" }, { T_DATA, NULL },
		{ T_SEND, "250 2.0.0 second\r\n" }, QUIT_STEPS, { T_END, NULL }
	};
	static const struct step rset421[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_PIPE },
		{ T_LINE, "MAIL" }, { T_LINE, "RCPT" }, { T_LINE, "DATA" },
		{ T_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" }, { T_DATA, NULL },
		{ T_SEND, "250 2.0.0 first\r\n" },
		{ T_LINE, "RSET" }, { T_SEND, "421 4.4.2 idle too long\r\n" },
		{ T_EOF, NULL }, { T_END, NULL }
	};
	struct smtp_client_cfg	 cfg;
	struct smtp_client_msg	 m1, m2;
	struct tsrv		 v;
	struct tcli		 t = { 0 }, t2 = { 0 };

	srv_start(&v, s, NULL);
	cfg_init(&cfg, v.port);
	msg_init(&m1, rcpts1, 1, BODY, strlen(BODY));
	msg_init(&m2, rcpts1, 1, "second\r\n", 8);
	m2.sender = "z@x.test";
	t.msgs[0] = &m1;
	t.msgs[1] = &m2;
	t.nmsg = 2;
	cli_run(&t, &cfg);
	srv_join(&v);
	cr_assert_str_eq(v.err, "", "%s", v.err);
	cr_assert_eq(t.nready, 2);
	cr_assert_eq(t.ndone, 2);
	cr_assert_str_eq(t.rres[0][0].reply, "250 2.0.0 first");
	cr_assert_str_eq(t.rres[1][0].reply, "250 2.0.0 second");
	cr_assert(strstr(v.rx, ".\r\nRSET\r\nMAIL FROM:<z@x.test>") != NULL,
	    "%s", v.rx);
	cr_assert(strstr(v.rx, "DATA\r\nsecond\r\n.\r\nQUIT\r\n") != NULL,
	    "%s", v.rx);
	cli_end(&t);
	srv_free(&v);

	srv_start(&v, rset421, NULL);
	cfg_init(&cfg, v.port);
	t2.msgs[0] = &m1;
	t2.msgs[1] = &m2;
	t2.nmsg = 2;
	cli_run(&t2, &cfg);
	srv_join(&v);
	cr_assert_eq(t2.ndone, 1);
	cr_assert_eq(t2.nclosed, 1);
	assert_res(&t2.why, SMTPC_TEMPFAIL, 421, "4.4.2", "RSET", "why");
	close(m1.body_fd);
	close(m2.body_fd);
	cli_end(&t2);
	srv_free(&v);
}

/* OUT-15: every stage has its own timer. */
Test(smtp_client, stage_timeouts)
{
	static const struct step ehlo[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_EOF, NULL },
		{ T_END, NULL }
	};
	static const struct step dot[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_PIPE },
		{ T_LINE, "MAIL" }, { T_LINE, "RCPT" }, { T_LINE, "DATA" },
		{ T_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" }, { T_DATA, NULL },
		{ T_EOF, NULL }, { T_END, NULL }
	};
	struct smtp_client_cfg	 cfg;
	struct smtp_client_msg	 m;
	struct tsrv		 v;
	struct tcli		 t = { 0 }, t2 = { 0 };
	time_t			 t0 = time(NULL);

	srv_start(&v, ehlo, NULL);
	cfg_init(&cfg, v.port);
	cfg.timeout_cmd = 1;
	cli_run(&t, &cfg);
	srv_join(&v);
	cr_assert_eq(t.nclosed, 1);
	assert_res(&t.why, SMTPC_TEMPFAIL, 0, "4.4.2", "EHLO", "why");
	cr_assert_leq(time(NULL) - t0, 3);
	cli_end(&t);
	srv_free(&v);

	t0 = time(NULL);
	srv_start(&v, dot, NULL);
	cfg_init(&cfg, v.port);
	cfg.timeout_final = 1;
	msg_init(&m, rcpts1, 1, BODY, strlen(BODY));
	t2.msgs[0] = &m;
	t2.nmsg = 1;
	cli_run(&t2, &cfg);
	srv_join(&v);
	assert_res(&t2.rres[0][0], SMTPC_TEMPFAIL, 0, "4.4.2", "DOT", "b");
	cr_assert_not(t2.reusable[0]);
	cr_assert_leq(time(NULL) - t0, 3);
	close(m.body_fd);
	cli_end(&t2);
	srv_free(&v);
}

/*
 * OUT-15: a peer that stops reading during DATA (zero window): the data
 * block timer is re-armed only on progress, so it fires.
 */
Test(smtp_client, data_block_timeout)
{
	static const struct step s[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" },
		{ T_SEND, "250-mx.test\r\n250 PIPELINING\r\n" },
		{ T_LINE, "MAIL" }, { T_LINE, "RCPT" }, { T_LINE, "DATA" },
		{ T_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" },
		{ T_SLEEP, "4000" }, { T_EOF, NULL }, { T_END, NULL }
	};
	struct smtp_client_cfg	 cfg;
	struct smtp_client_msg	 m;
	struct tsrv		 v;
	struct tcli		 t = { 0 };
	size_t			 len = 64 * 1024 * 1024;
	char			*body = malloc(len);
	time_t			 t0 = time(NULL);

	cr_assert_not_null(body);
	memset(body, 'x', len);
	srv_start(&v, s, NULL);
	cfg_init(&cfg, v.port);
	cfg.timeout_data_block = 1;
	msg_init(&m, rcpts1, 1, body, len);
	free(body);
	t.msgs[0] = &m;
	t.nmsg = 1;
	cli_run(&t, &cfg);
	cr_assert_leq(time(NULL) - t0, 3);
	srv_join(&v);
	assert_res(&t.rres[0][0], SMTPC_TEMPFAIL, 0, "4.4.2", "DATA", "b");
	cr_assert(strstr(t.rres[0][0].reply, "timed out") != NULL, "%s",
	    t.rres[0][0].reply);
	cr_assert_not(t.reusable[0]);
	close(m.body_fd);
	cli_end(&t);
	srv_free(&v);
}

/* Only an idle client takes a message or a RSET. */
static void
misuse_ready(struct smtp_client *c, void *arg)
{
	struct tcli	*t = arg;

	t->nready++;
	cr_assert_eq(smtp_client_send(c, t->msgs[1]), -1);	/* no rcpt */
	cr_assert_eq(smtp_client_send(c, t->msgs[0]), 0);
	cr_assert_eq(smtp_client_send(c, t->msgs[0]), -1);
	cr_assert_eq(smtp_client_reset(c), -1);
}

Test(smtp_client, api_only_when_idle)
{
	static const struct step s[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_PIPE },
		{ T_LINE, "MAIL" }, { T_LINE, "RCPT" }, { T_LINE, "DATA" },
		{ T_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" }, { T_DATA, NULL },
		{ T_SEND, "250 ok\r\n" }, QUIT_STEPS, { T_END, NULL }
	};
	const struct smtp_client_cbs cbs = {
		misuse_ready, cli_done, cli_closed
	};
	struct smtp_client_cfg	 cfg;
	struct smtp_client_msg	 m, empty;
	struct tsrv		 v;
	struct tcli		 t = { 0 };
	struct timeval		 tv = { 20, 0 };

	srv_start(&v, s, NULL);
	cfg_init(&cfg, v.port);
	msg_init(&m, rcpts1, 1, BODY, strlen(BODY));
	empty = m;
	empty.nrcpts = 0;
	t.msgs[0] = &m;
	t.msgs[1] = &empty;
	t.nmsg = 1;
	t.base = event_base_new();
	t.c = smtp_client_new(t.base, &cfg, &cbs, &t);
	cr_assert_not_null(t.c);
	/* Not ready yet. */
	cr_assert_eq(smtp_client_send(t.c, &m), -1);
	event_base_loopexit(t.base, &tv);
	event_base_dispatch(t.base);
	smtp_client_free(t.c);
	event_base_loop(t.base, EVLOOP_NONBLOCK);
	srv_join(&v);
	cr_assert_str_eq(v.err, "", "%s", v.err);
	cr_assert_eq(t.ndone, 1);
	assert_res(&t.rres[0][0], SMTPC_OK, 250, "2.0.0", "DOT", "b");
	close(m.body_fd);
	cli_end(&t);
	srv_free(&v);
}

/* OUT-11: nobody listens. */
Test(smtp_client, connect_refused)
{
	struct smtp_client_cfg	 cfg;
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof(sin);
	struct tcli		 t = { 0 };
	int			 fd;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	close(fd);
	cfg_init(&cfg, ntohs(sin.sin_port));
	cli_run(&t, &cfg);
	cr_assert_eq(t.nclosed, 1);
	assert_res(&t.why, SMTPC_TEMPFAIL, 0, "4.4.1", "CONNECT", "why");
	cli_end(&t);
}

/* Freeing the client inside its done callback is safe. */
Test(smtp_client, free_inside_callback)
{
	static const struct step s[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_PIPE },
		{ T_LINE, "MAIL" }, { T_LINE, "RCPT" }, { T_LINE, "DATA" },
		{ T_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" }, { T_DATA, NULL },
		{ T_SEND, "250 ok\r\n250 extra\r\n" }, { T_EOF, NULL },
		{ T_END, NULL }
	};
	struct smtp_client_cfg	 cfg;
	struct smtp_client_msg	 m;
	struct tsrv		 v;
	struct tcli		 t = { 0 };

	srv_start(&v, s, NULL);
	cfg_init(&cfg, v.port);
	msg_init(&m, rcpts1, 1, BODY, strlen(BODY));
	t.msgs[0] = &m;
	t.nmsg = 1;
	t.free_in_done = true;
	cli_run(&t, &cfg);
	srv_join(&v);
	cr_assert_eq(t.ndone, 1);
	cr_assert_eq(t.nclosed, 0);
	assert_res(&t.rres[0][0], SMTPC_OK, 250, "2.0.0", "DOT", "b");
	close(m.body_fd);
	cli_end(&t);
	srv_free(&v);
}

/* TLS: certificates from tests/support/gen-certs.sh, per test. */
static char	 tdir[] = "/tmp/test_smtp_client.XXXXXX";

static void
certs(void)
{
	const char	*src = getenv("POSTERN_SRCDIR");
	char		 cmd[1024];
	int		 rc;

	cr_assert_not_null(mkdtemp(tdir));
	snprintf(cmd, sizeof(cmd), "/bin/sh %s/tests/support/gen-certs.sh %s",
	    src != NULL && src[0] != '\0' ? src : "/work/main", tdir);
	rc = system(cmd);
	cr_assert(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0,
	    "%s failed", cmd);
}

static void
certs_rm(void)
{
	char	 cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tdir);
}

static SSL_CTX *
server_ctx(const char *name)
{
	SSL_CTX	*ctx = SSL_CTX_new(TLS_server_method());
	char	 p[256];

	cr_assert_not_null(ctx);
	snprintf(p, sizeof(p), "%s/%s.pem", tdir, name);
	cr_assert_eq(SSL_CTX_use_certificate_chain_file(ctx, p), 1);
	snprintf(p, sizeof(p), "%s/%s.key", tdir, name);
	cr_assert_eq(SSL_CTX_use_PrivateKey_file(ctx, p, SSL_FILETYPE_PEM), 1);
	return (ctx);
}

static SSL_CTX *
client_ctx(void)
{
	SSL_CTX	*ctx;
	char	 p[256], err[256];

	snprintf(p, sizeof(p), "%s/ca.pem", tdir);
	ctx = tls_client_ctx_new(p, err, sizeof(err));
	cr_assert_not_null(ctx, "%s", err);
	return (ctx);
}

#define EHLO_TLS	"250-mx.test\r\n250-SIZE 1000\r\n250 STARTTLS\r\n"
#define TLS_STEPS(reply220) \
	{ T_SEND, GREET }, { T_LINE, "EHLO client.test" }, \
	{ T_SEND, EHLO_TLS }, { T_LINE, "STARTTLS" }, \
	{ T_SEND, reply220 }, { T_TLS, NULL }, \
	{ T_LINE, "EHLO client.test" }
#define TXN_STEPS \
	{ T_LINE, "MAIL" }, { T_LINE, "RCPT" }, { T_LINE, "DATA" }, \
	{ T_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" }, { T_DATA, NULL }, \
	{ T_SEND, "250 2.0.0 ok\r\n" }, QUIT_STEPS

/*
 * STARTTLS in every mode, with certificates good, of the wrong name and
 * self-signed; OUT-21 (not offered), OUT-22 (injection after 220),
 * OUT-23/24 (handshake and verification failures).
 */
Test(smtp_client, starttls_modes, .init = certs, .fini = certs_rm)
{
	static const struct step tls_ok[] = {
		TLS_STEPS("220 2.0.0 go\r\n"),
		{ T_SEND, "250-mx.test\r\n250 PIPELINING\r\n" }, TXN_STEPS,
		{ T_END, NULL }
	};
	/* OUT-22: if "250 inj" were read inside TLS it would answer EHLO
	 * and the real EHLO reply would be unexpected. */
	static const struct step inject[] = {
		TLS_STEPS("220 2.0.0 go\r\n250 inj\r\n"),
		{ T_SEND, "250-mx.test\r\n250 PIPELINING\r\n" }, TXN_STEPS,
		{ T_END, NULL }
	};
	static const struct step hs_fail[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_TLS },
		{ T_LINE, "STARTTLS" }, { T_SEND, "220 go\r\n" },
		{ T_SLEEP, "100" }, { T_SEND, "garbage, not TLS\r\n" },
		{ T_EOF, NULL }, { T_END, NULL }
	};
	static const struct step no_tls[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" },
		{ T_SEND, "250-mx\r\n250 PIPELINING\r\n" }, { T_EOF, NULL },
		{ T_END, NULL }
	};
	static const struct step no_tls_ok[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" },
		{ T_SEND, "250-mx\r\n250 PIPELINING\r\n" }, TXN_STEPS,
		{ T_END, NULL }
	};
	static const struct step refused[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_TLS },
		{ T_LINE, "STARTTLS" }, { T_SEND, "454 4.7.0 not now\r\n" },
		{ T_EOF, NULL }, { T_END, NULL }
	};
	static const struct step refused_ok[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_TLS },
		{ T_LINE, "STARTTLS" }, { T_SEND, "454 4.7.0 not now\r\n" },
		{ T_LINE, "MAIL" }, { T_SEND, "250 ok\r\n" },
		{ T_LINE, "RCPT" }, { T_SEND, "250 ok\r\n" },
		{ T_LINE, "DATA" }, { T_SEND, "354 go\r\n" }, { T_DATA, NULL },
		{ T_SEND, "250 ok\r\n" }, QUIT_STEPS, { T_END, NULL }
	};
	static const struct step ehlo502[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" },
		{ T_SEND, "502 5.5.2 no\r\n" }, { T_EOF, NULL }, { T_END, NULL }
	};
	static const struct step bad_cert[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_TLS },
		{ T_LINE, "STARTTLS" }, { T_SEND, "220 go\r\n" },
		{ T_TLS, NULL }, { T_EOF, NULL }, { T_END, NULL }
	};
	static const struct {
		const struct step *s;
		const char	*cert;
		enum smtp_client_tls mode;
		bool		 sent;		/* the message went out */
		bool		 tls, verified;
		const char	*status, *stage;	/* when !sent */
	} cases[] = {
		{ tls_ok, "server", SMTPC_TLS_OPPORTUNISTIC, true, true, false,
		    NULL, NULL },
		{ tls_ok, "wrongname", SMTPC_TLS_ENFORCED, true, true, false,
		    NULL, NULL },
		{ tls_ok, "selfsigned", SMTPC_TLS_ENFORCED, true, true,
		    false, NULL, NULL },
		{ tls_ok, "server", SMTPC_TLS_VERIFY, true, true, true, NULL,
		    NULL },
		{ inject, "server", SMTPC_TLS_OPPORTUNISTIC, true, true,
		    false, NULL, NULL },
		{ hs_fail, "server", SMTPC_TLS_OPPORTUNISTIC, false, false,
		    false, "4.7.5", "STARTTLS" },
		{ hs_fail, "server", SMTPC_TLS_ENFORCED, false, false, false,
		    "4.7.5", "STARTTLS" },
		{ no_tls, "server", SMTPC_TLS_ENFORCED, false, false, false,
		    "4.7.4", "STARTTLS" },
		{ no_tls, "server", SMTPC_TLS_VERIFY, false, false, false,
		    "4.7.4", "STARTTLS" },
		{ no_tls_ok, "server", SMTPC_TLS_OPPORTUNISTIC, true, false,
		    false, NULL, NULL },
		{ refused, "server", SMTPC_TLS_ENFORCED, false, false, false,
		    "4.7.4", "STARTTLS" },
		{ refused_ok, "server", SMTPC_TLS_OPPORTUNISTIC, true, false,
		    false, NULL, NULL },
		{ ehlo502, "server", SMTPC_TLS_ENFORCED, false, false, false,
		    "4.7.4", "EHLO" },
		{ bad_cert, "wrongname", SMTPC_TLS_VERIFY, false, false, false,
		    "4.7.5", "STARTTLS" },
		{ bad_cert, "selfsigned", SMTPC_TLS_VERIFY, false, false,
		    false, "4.7.5", "STARTTLS" },
	};
	SSL_CTX	*cctx = client_ctx();
	size_t	 k;

	for (k = 0; k < nitems(cases); k++) {
		struct smtp_client_cfg	 cfg;
		struct smtp_client_msg	 m;
		struct tsrv		 v;
		struct tcli		 t = { 0 };
		SSL_CTX			*sctx = server_ctx(cases[k].cert);

		srv_start(&v, cases[k].s, sctx);
		cfg_init(&cfg, v.port);
		cfg.tls = cases[k].mode;
		cfg.ssl_ctx = cctx;
		msg_init(&m, rcpts1, 1, BODY, strlen(BODY));
		t.msgs[0] = &m;
		t.nmsg = 1;
		cli_run(&t, &cfg);
		srv_join(&v);
		cr_assert_str_eq(v.err, "", "case %zu: %s", k, v.err);
		if (cases[k].sent) {
			cr_assert_eq(t.ndone, 1, "case %zu", k);
			assert_res(&t.rres[0][0], SMTPC_OK, 250, "2.0.0",
			    "DOT", "b");
			cr_assert_eq(t.is_tls, cases[k].tls, "case %zu", k);
			cr_assert_eq(t.verified, cases[k].verified,
			    "case %zu", k);
			if (cases[k].tls)
				cr_assert(strncmp(t.tlsver, "TLSv1.", 6) == 0,
				    "case %zu: %s", k, t.tlsver);
		} else {
			cr_assert_eq(t.nready, 0, "case %zu", k);
			cr_assert_eq(t.nclosed, 1, "case %zu", k);
			assert_res(&t.why, SMTPC_TEMPFAIL, 0, cases[k].status,
			    cases[k].stage, "why");
			/* Nothing of a transaction, ever. */
			cr_assert(strstr(v.rx, "MAIL") == NULL &&
			    strstr(v.rx, "HELO") == NULL,
			    "case %zu: %s", k, v.rx);
		}
		if (cases[k].mode == SMTPC_TLS_VERIFY && !cases[k].sent &&
		    strcmp(cases[k].status, "4.7.5") == 0)
			cr_assert(strstr(t.why.reply, "verif") != NULL,
			    "case %zu: %s", k, t.why.reply);
		close(m.body_fd);
		cli_end(&t);
		srv_free(&v);
		SSL_CTX_free(sctx);
	}
	SSL_CTX_free(cctx);
}

/* OUT-35: AUTH only inside TLS; 535 is a soft bounce. */
Test(smtp_client, auth, .init = certs, .fini = certs_rm)
{
	static const struct step plain_ok[] = {
		TLS_STEPS("220 go\r\n"),
		{ T_SEND, "250-mx.test\r\n250-PIPELINING\r\n"
		    "250 AUTH PLAIN LOGIN\r\n" },
		{ T_LINE, "AUTH PLAIN AHVzZXIAcGFzcw==" },
		{ T_SEND, "235 2.7.0 ok\r\n" }, TXN_STEPS, { T_END, NULL }
	};
	static const struct step login_ok[] = {
		TLS_STEPS("220 go\r\n"),
		{ T_SEND, "250-mx.test\r\n250-PIPELINING\r\n"
		    "250 AUTH LOGIN\r\n" },
		{ T_LINE, "AUTH LOGIN" }, { T_SEND, "334 VXNlcm5hbWU6\r\n" },
		{ T_LINE, "dXNlcg==" }, { T_SEND, "334 UGFzc3dvcmQ6\r\n" },
		{ T_LINE, "cGFzcw==" }, { T_SEND, "235 2.7.0 ok\r\n" },
		TXN_STEPS, { T_END, NULL }
	};
	static const struct step bad_pass[] = {
		TLS_STEPS("220 go\r\n"),
		{ T_SEND, "250-mx.test\r\n250 AUTH PLAIN\r\n" },
		{ T_LINE, "AUTH PLAIN " },
		{ T_SEND, "535 5.7.8 bad credentials\r\n" }, { T_EOF, NULL },
		{ T_END, NULL }
	};
	static const struct step no_tls[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" },
		{ T_SEND, "250-mx\r\n250 AUTH PLAIN LOGIN\r\n" },
		{ T_EOF, NULL }, { T_END, NULL }
	};
	static const struct {
		const struct step *s;
		enum smtp_client_tls mode;
		bool		 sent;
		int		 code;
		const char	*status;
	} cases[] = {
		{ plain_ok, SMTPC_TLS_OPPORTUNISTIC, true, 0, NULL },
		{ login_ok, SMTPC_TLS_ENFORCED, true, 0, NULL },
		{ bad_pass, SMTPC_TLS_OPPORTUNISTIC, false, 535, "4.7.8" },
		{ no_tls, SMTPC_TLS_OPPORTUNISTIC, false, 0, "4.7.4" },
		{ no_tls, SMTPC_TLS_NONE, false, 0, "4.7.4" },
	};
	SSL_CTX	*cctx = client_ctx(), *sctx = server_ctx("server");
	size_t	 k;

	for (k = 0; k < nitems(cases); k++) {
		struct smtp_client_cfg	 cfg;
		struct smtp_client_msg	 m;
		struct tsrv		 v;
		struct tcli		 t = { 0 };

		srv_start(&v, cases[k].s, sctx);
		cfg_init(&cfg, v.port);
		cfg.tls = cases[k].mode;
		cfg.ssl_ctx = cctx;
		cfg.auth_user = "user";
		cfg.auth_pass = "pass";
		msg_init(&m, rcpts1, 1, BODY, strlen(BODY));
		t.msgs[0] = &m;
		t.nmsg = 1;
		cli_run(&t, &cfg);
		srv_join(&v);
		cr_assert_str_eq(v.err, "", "case %zu: %s", k, v.err);
		if (cases[k].sent) {
			assert_res(&t.rres[0][0], SMTPC_OK, 250, "2.0.0",
			    "DOT", "b");
			cr_assert(t.is_tls);
		} else {
			cr_assert_eq(t.nclosed, 1, "case %zu", k);
			assert_res(&t.why, SMTPC_TEMPFAIL, cases[k].code,
			    cases[k].status, "AUTH", "why");
			cr_assert(strstr(v.rx, "MAIL") == NULL, "%s", v.rx);
			if (cases[k].code == 0)
				cr_assert(strstr(v.rx, "AUTH") == NULL,
				    "case %zu: credentials in clear: %s", k,
				    v.rx);
		}
		close(m.body_fd);
		cli_end(&t);
		srv_free(&v);
	}
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
}

/*
 * A prefix (the DKIM-Signature fields added at delivery) goes out before
 * the body as one stream: counted in SIZE=, dot-stuffed and checked like
 * the body, streamed under the same backpressure when it is large.
 */
Test(smtp_client, prefix_sent_before_body)
{
	static const struct {
		const char	*prefix;
		const char	*body;
		size_t		 bigprefix;	/* generated, this long */
	} cases[] = {
		{ "DKIM-Signature: v=1; a=ed25519-sha256; d=x.test;\r\n"
		  "\ts=s; b=abc\r\n", BODY, 0 },
		{ ".starts with a dot\r\n..two\r\n", ".body dot\r\n", 0 },
		{ "", BODY, 0 },
		{ "X-Only: prefix\r\n", "", 0 },
		{ "X-No-Final: crlf", " continued\r\n", 0 },
		{ NULL, BODY, 200 * 1024 },
	};
	const char	*head = "EHLO client.test\r\n";
	size_t		 k, i, plen, wlen, blen;
	char		*big = NULL, *all, *wire, *want, mail[64];

	for (k = 0; k < nitems(cases); k++) {
		struct smtp_client_cfg	 cfg;
		struct smtp_client_msg	 m;
		struct tsrv		 v;
		struct tcli		 t = { 0 };
		const char		*prefix = cases[k].prefix;
		struct step		 s[] = {
			{ T_SEND, GREET }, { T_LINE, "EHLO" },
			{ T_SEND, EHLO_PIPE }, { T_LINE, mail },
			{ T_LINE, "RCPT" }, { T_LINE, "DATA" },
			{ T_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" },
			/* The client must wait with most of it unsent. */
			{ T_SLEEP, "300" }, { T_DATA, NULL },
			{ T_SEND, "250 ok\r\n" }, QUIT_STEPS, { T_END, NULL }
		};

		if (prefix == NULL) {
			/* Lines of every length, some dotted, over several
			 * output high-water marks. */
			plen = cases[k].bigprefix;
			big = malloc(plen + 1);
			cr_assert_not_null(big);
			for (i = 0; i < plen; i++)
				big[i] = 'a' + (char)(i % 26);
			for (i = 0; i + 3 < plen; i += 3 + (i * 31) % 113) {
				big[i] = '\r';
				big[i + 1] = '\n';
				big[i + 2] = i % 2 ? '.' : 'X';
			}
			big[plen - 2] = '\r';
			big[plen - 1] = '\n';
			big[plen] = '\0';
			prefix = big;
		}
		plen = strlen(prefix);
		blen = strlen(cases[k].body);
		snprintf(mail, sizeof(mail), "MAIL FROM:<a@x.test> SIZE=%zu",
		    plen + blen);
		srv_start(&v, s, NULL);
		cfg_init(&cfg, v.port);
		msg_init(&m, rcpts1, 1, cases[k].body, blen);
		m.prefix = prefix;
		m.prefix_len = plen;
		t.msgs[0] = &m;
		t.nmsg = 1;
		cli_run(&t, &cfg);
		srv_join(&v);
		cr_assert_str_eq(v.err, "", "case %zu: %s", k, v.err);

		all = malloc(plen + blen + 1);
		cr_assert_not_null(all);
		memcpy(all, prefix, plen);
		memcpy(all + plen, cases[k].body, blen + 1);
		wire = stuff(all, plen + blen, &wlen);
		want = malloc(strlen(head) + strlen(mail) + wlen + 64);
		cr_assert_not_null(want);
		sprintf(want, "%s%s\r\nRCPT TO:<b@y.test>\r\nDATA\r\n%.*s"
		    "QUIT\r\n", head, mail, (int)wlen, wire);
		cr_assert_eq(v.rxlen, strlen(want), "case %zu: length got %zu "
		    "want %zu", k, v.rxlen, strlen(want));
		cr_assert(memcmp(v.rx, want, v.rxlen) == 0,
		    "case %zu: got\n%.300s\nwant\n%.300s", k, v.rx, want);
		assert_res(&t.rres[0][0], SMTPC_OK, 250, "2.0.0", "DOT", "b");
		free(want);
		free(wire);
		free(all);
		close(m.body_fd);
		cli_end(&t);
		srv_free(&v);
	}
	free(big);
}

/* The prefix counts against the peer's SIZE and obeys OUT-20. */
Test(smtp_client, prefix_size_and_bare_line_ends)
{
	static const struct step small[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" },
		{ T_SEND, "250-mx\r\n250-PIPELINING\r\n250 SIZE 25\r\n" },
		QUIT_STEPS, { T_END, NULL }
	};
	static const struct step data[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_NOPIPE },
		{ T_LINE, "MAIL" }, { T_SEND, "250 ok\r\n" },
		{ T_LINE, "RCPT" }, { T_SEND, "250 ok\r\n" },
		{ T_LINE, "DATA" }, { T_SEND, "354 go\r\n" }, { T_EOF, NULL },
		{ T_END, NULL }
	};
	static const struct {
		const struct step *s;
		const char	*prefix;
		enum smtp_client_outcome o;
		const char	*status;
		const char	*stage;
	} cases[] = {
		/* BODY is 21 octets: fits alone, not with 5 more. */
		{ small, "X: 1\r\n", SMTPC_PERMFAIL, "5.3.4", "MAIL" },
		{ data, "X: bare\nLF\r\n", SMTPC_PERMFAIL, "5.6.0", "DATA" },
		{ data, "X: bare\rCR\r\n", SMTPC_PERMFAIL, "5.6.0", "DATA" },
		/* A CR at the end of the prefix needs the body's LF. */
		{ data, "X: split\r", SMTPC_PERMFAIL, "5.6.0", "DATA" },
	};
	size_t	 k;

	for (k = 0; k < nitems(cases); k++) {
		struct smtp_client_cfg	 cfg;
		struct smtp_client_msg	 m;
		struct tsrv		 v;
		struct tcli		 t = { 0 };

		srv_start(&v, cases[k].s, NULL);
		cfg_init(&cfg, v.port);
		msg_init(&m, rcpts1, 1, BODY, strlen(BODY));
		m.prefix = cases[k].prefix;
		m.prefix_len = strlen(cases[k].prefix);
		t.msgs[0] = &m;
		t.nmsg = 1;
		cli_run(&t, &cfg);
		srv_join(&v);
		cr_assert_str_eq(v.err, "", "case %zu: %s", k, v.err);
		cr_assert(strstr(v.rx, "\r\n.\r\n") == NULL,
		    "case %zu: the message was completed: %s", k, v.rx);
		assert_res(&t.rres[0][0], cases[k].o, 0, cases[k].status,
		    cases[k].stage, "b");
		close(m.body_fd);
		cli_end(&t);
		srv_free(&v);
	}
}

/* A prefix length without a prefix is misuse. */
Test(smtp_client, prefix_null_with_length_refused)
{
	static const struct step s[] = {
		{ T_SEND, GREET }, { T_LINE, "EHLO" }, { T_SEND, EHLO_PIPE },
		{ T_LINE, "MAIL" }, { T_LINE, "RCPT" }, { T_LINE, "DATA" },
		{ T_SEND, "250 ok\r\n250 ok\r\n354 go\r\n" }, { T_DATA, NULL },
		{ T_SEND, "250 ok\r\n" }, QUIT_STEPS, { T_END, NULL }
	};
	const struct smtp_client_cbs cbs = {
		misuse_ready, cli_done, cli_closed
	};
	struct smtp_client_cfg	 cfg;
	struct smtp_client_msg	 m, bad;
	struct tsrv		 v;
	struct tcli		 t = { 0 };
	struct timeval		 tv = { 20, 0 };

	srv_start(&v, s, NULL);
	cfg_init(&cfg, v.port);
	msg_init(&m, rcpts1, 1, BODY, strlen(BODY));
	bad = m;
	bad.prefix = NULL;
	bad.prefix_len = 10;
	t.msgs[0] = &m;
	t.msgs[1] = &bad;
	t.nmsg = 1;
	t.base = event_base_new();
	t.c = smtp_client_new(t.base, &cfg, &cbs, &t);
	cr_assert_not_null(t.c);
	event_base_loopexit(t.base, &tv);
	event_base_dispatch(t.base);
	smtp_client_free(t.c);
	event_base_loop(t.base, EVLOOP_NONBLOCK);
	srv_join(&v);
	cr_assert_str_eq(v.err, "", "%s", v.err);
	cr_assert_eq(t.ndone, 1);
	assert_res(&t.rres[0][0], SMTPC_OK, 250, "2.0.0", "DOT", "b");
	close(m.body_fd);
	cli_end(&t);
	srv_free(&v);
}
