/*
 * smtp_client.c: one outbound SMTP connection to one upstream address
 * (SPEC section 4; SECURITY-CASES OUT-01..OUT-26, OUT-35).
 *
 * One explicit state (enum smtp_client_state) changes only in
 * smtp_client_enter(), which logs old -> new and runs the entry action;
 * smtp_client_reply() is the one reply dispatcher.  Every command written
 * pushes an expectation onto a FIFO and every complete reply pops one
 * (STYLE 2.4): with PIPELINING, MAIL, every RCPT and DATA go out in one
 * write and the client waits only at DATA and at the final dot.  A reply
 * with no expectation, or one that was already buffered before its
 * command was written, is a protocol error, never matched to a later
 * command (OUT-10, OUT-22).
 *
 * Invariants: under ENFORCED and VERIFY no byte of AUTH or MAIL onward is
 * written unless TLS is up (smtp_client_write() refuses, and
 * smtp_client_send() turns it into a 4.7.4 verdict first); credentials are
 * never sent without TLS in any mode (OUT-35).  Every recipient of a
 * transaction is decided exactly once before the done callback runs.
 *
 * Ownership: the client owns its bufferevent (the TLS filter owns the
 * socket bufferevent under it, the SSL and the socket), its timers and
 * its result arrays; cfg strings are copied; msg is borrowed until done.
 * Callbacks run only from the event loop; a callback may free the client,
 * so the memory is released when the outermost event handler unwinds.
 */
#include "compat.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <netdb.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "log.h"
#include "smtp_client.h"
#include "smtp_parse.h"
#include "tls.h"
#include "util.h"

/*
 * RFC 5321 4.5.3.1.5 caps a reply line at 512 octets, but real servers
 * send longer ones; stay lenient up to a text line and bound the rest.
 */
#define SMTPC_REPLY_LINE_MAX	SMTP_TEXT_LINE_MAX
/* A whole (multi-line) reply, counted on the wire (OUT-08). */
#define SMTPC_REPLY_BYTES_MAX	(64 * 1024)
/* Input is paused above this; a reply line is far shorter. */
#define SMTPC_INPUT_HIWAT	(64 * 1024)
/* Body streaming: fill output to HIWAT, refill when it drains to LOWAT. */
#define SMTPC_OUTPUT_HIWAT	(64 * 1024)
#define SMTPC_OUTPUT_LOWAT	(16 * 1024)
#define SMTPC_CHUNK		(16 * 1024)
/* AUTH user name and password, each (RFC 4616 allows 255 octets). */
#define SMTPC_AUTH_MAX		255
/* A command line we write; AUTH PLAIN with two 255-octet names fits. */
#define SMTPC_WRITE_MAX		SMTP_MAIL_LINE_MAX

enum smtp_client_state {
	SMTPC_S_NEW,
	SMTPC_S_CONNECT,
	SMTPC_S_GREETING,
	SMTPC_S_EHLO,
	SMTPC_S_HELO,
	SMTPC_S_STARTTLS,
	SMTPC_S_TLS,
	SMTPC_S_AUTH,
	SMTPC_S_AUTH_USER,
	SMTPC_S_AUTH_PASS,
	SMTPC_S_READY,
	SMTPC_S_ENVELOPE,
	SMTPC_S_BODY,
	SMTPC_S_DOT,
	SMTPC_S_RSET,
	SMTPC_S_QUIT,
	SMTPC_S_CLOSED,
	SMTPC_S_COUNT
};

static const char *const smtp_client_state_names[] = {
	[SMTPC_S_NEW] = "NEW",
	[SMTPC_S_CONNECT] = "CONNECT",
	[SMTPC_S_GREETING] = "GREETING",
	[SMTPC_S_EHLO] = "EHLO",
	[SMTPC_S_HELO] = "HELO",
	[SMTPC_S_STARTTLS] = "STARTTLS",
	[SMTPC_S_TLS] = "TLS",
	[SMTPC_S_AUTH] = "AUTH",
	[SMTPC_S_AUTH_USER] = "AUTH_USER",
	[SMTPC_S_AUTH_PASS] = "AUTH_PASS",
	[SMTPC_S_READY] = "READY",
	[SMTPC_S_ENVELOPE] = "ENVELOPE",
	[SMTPC_S_BODY] = "BODY",
	[SMTPC_S_DOT] = "DOT",
	[SMTPC_S_RSET] = "RSET",
	[SMTPC_S_QUIT] = "QUIT",
	[SMTPC_S_CLOSED] = "CLOSED",
};
_Static_assert(nitems(smtp_client_state_names) == SMTPC_S_COUNT,
    "smtp_client_state_names out of sync");

/* What a reply answers: one FIFO entry per command written. */
enum smtp_client_cmd {
	SMTPC_C_GREETING,
	SMTPC_C_EHLO,
	SMTPC_C_HELO,
	SMTPC_C_STARTTLS,
	SMTPC_C_AUTH,
	SMTPC_C_MAIL,
	SMTPC_C_RCPT,
	SMTPC_C_DATA,
	SMTPC_C_DOT,
	SMTPC_C_RSET,
	SMTPC_C_QUIT,
	SMTPC_C_COUNT
};

/* The stage of a result, per command. */
static const char *const smtp_client_cmd_names[] = {
	[SMTPC_C_GREETING] = "GREETING",
	[SMTPC_C_EHLO] = "EHLO",
	[SMTPC_C_HELO] = "HELO",
	[SMTPC_C_STARTTLS] = "STARTTLS",
	[SMTPC_C_AUTH] = "AUTH",
	[SMTPC_C_MAIL] = "MAIL",
	[SMTPC_C_RCPT] = "RCPT",
	[SMTPC_C_DATA] = "DATA",
	[SMTPC_C_DOT] = "DOT",
	[SMTPC_C_RSET] = "RSET",
	[SMTPC_C_QUIT] = "QUIT",
};
_Static_assert(nitems(smtp_client_cmd_names) == SMTPC_C_COUNT,
    "smtp_client_cmd_names out of sync");

enum smtp_client_timeout {
	SMTPC_T_CONNECT,
	SMTPC_T_GREETING,
	SMTPC_T_CMD,
	SMTPC_T_DATA_INIT,
	SMTPC_T_DATA_BLOCK,
	SMTPC_T_FINAL,
	SMTPC_T_TLS,
	SMTPC_T_RSET,
	SMTPC_T_COUNT
};

/* RFC 5321 4.5.3.2 minimums; connect as SPEC delivery.connect_timeout. */
static const int smtp_client_timeout_defaults[SMTPC_T_COUNT] = {
	[SMTPC_T_CONNECT] = 30,
	[SMTPC_T_GREETING] = 300,
	[SMTPC_T_CMD] = 300,
	[SMTPC_T_DATA_INIT] = 120,
	[SMTPC_T_DATA_BLOCK] = 180,
	[SMTPC_T_FINAL] = 600,
	[SMTPC_T_TLS] = 300,
	[SMTPC_T_RSET] = 120,
};

struct smtp_client_exp {
	enum smtp_client_cmd cmd;
	size_t		 rcpt;		/* SMTPC_C_RCPT: index in msg */
	bool		 discard;	/* SMTPC_C_DOT after no content */
	uint64_t	 seq;		/* order in which it was written */
};

/* Where each recipient of the transaction stands. */
enum smtp_client_rstate {
	SMTPC_R_PENDING,	/* RCPT not answered yet */
	SMTPC_R_ACCEPTED,	/* 2xx to RCPT, waits for the final dot */
	SMTPC_R_DONE		/* result final */
};

enum smtp_client_defer {
	SMTPC_D_NONE,
	SMTPC_D_FINISH,		/* a local verdict decided the transaction */
	SMTPC_D_ABORT		/* report defer_res through abort */
};

struct smtp_client {
	struct event_base	*base;		/* borrowed */
	struct smtp_client_cbs	 cbs;
	void			*arg;		/* borrowed */
	char			*helo;		/* owned */
	char			*host;		/* owned */
	char			*auth_user;	/* owned; NULL: no AUTH */
	char			*auth_pass;	/* owned; zeroed on free */
	char			 peer[SMTP_DOMAIN_MAX + 1 + 64 + 16 + 4];
	struct sockaddr_storage	 addr;
	socklen_t		 addrlen;
	enum smtp_client_tls	 tls;
	SSL_CTX			*ssl_ctx;	/* borrowed */
	int			 timeouts[SMTPC_T_COUNT];

	enum smtp_client_state	 state;
	struct bufferevent	*bev;		/* owned */
	SSL			*ssl;		/* owned by bev once attached */
	bool			 tls_active;
	bool			 tls_verified;
	char			 tls_version[16];
	bool			 auth_login;	/* AUTH LOGIN, not PLAIN */
	struct smtp_ehlo_caps	 caps;
	struct event		*timer;		/* owned */
	struct event		*defer_ev;	/* owned */
	enum smtp_client_defer	 defer_what;
	struct smtp_client_result defer_res;

	/* The reply being read. */
	struct smtp_reply	 reply;
	size_t			 reply_bytes;

	/* Expectations, oldest first: q[qhead .. qhead + qlen). */
	struct smtp_client_exp	*q;		/* owned */
	size_t			 qcap, qhead, qlen;
	uint64_t		 seq_next;	/* seq of the next command */
	uint64_t		 seq_fence;	/* seq_next when input came */

	/* The transaction. */
	bool			 in_txn;
	struct smtp_client_msg	 msg;		/* pointers borrowed */
	struct smtp_client_result *rres;	/* owned, msg.nrcpts */
	struct smtp_client_result *prev_rres;	/* owned, the last done's */
	enum smtp_client_rstate	*rstate;	/* owned */
	struct smtp_client_result overall;
	bool			 overall_set;
	bool			 mail_failed;
	size_t			 naccepted;
	size_t			 rcpt_next;	/* unpipelined: next to send */
	uint64_t		 body_sent;
	bool			 body_bol;	/* at the start of a line */
	bool			 body_cr;	/* last byte was CR */
	char			*bodybuf;	/* owned, 2 * SMTPC_CHUNK */

	/* Lifetime: event handlers on the stack, and a free request. */
	int			 busy;
	bool			 freed;
};

static void	smtp_client_enter(struct smtp_client *, enum smtp_client_state);
static void	smtp_client_reply(struct smtp_client *,
		    const struct smtp_client_exp *, const struct smtp_reply *);
static void	smtp_client_abort(struct smtp_client *,
		    const struct smtp_client_result *);
static void	smtp_client_finish(struct smtp_client *, bool reusable);
static void	smtp_client_read(struct smtp_client *);
static void	smtp_client_readcb(struct bufferevent *, void *);
static void	smtp_client_writecb(struct bufferevent *, void *);
static void	smtp_client_eventcb(struct bufferevent *, short, void *);

/* Results. */

static void
smtp_client_res_local(struct smtp_client_result *res,
    enum smtp_client_outcome outcome, const char *status, const char *stage,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* A result decided here, not by the peer (code 0). */
static void
smtp_client_res_local(struct smtp_client_result *res,
    enum smtp_client_outcome outcome, const char *status, const char *stage,
    const char *fmt, ...)
{
	char	 buf[sizeof(res->reply)];
	va_list	 ap;

	memset(res, 0, sizeof(*res));
	res->outcome = outcome;
	res->code = 0;
	strlcpy(res->status, status, sizeof(res->status));
	strlcpy(res->stage, stage, sizeof(res->stage));
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* Local texts may quote peer data (verify errors): escape them too. */
	util_escape(res->reply, sizeof(res->reply), buf, strlen(buf));
}

/*
 * A result from a peer reply: the outcome from the code's class, the
 * enhanced status when the text starts with one of the same class, and the
 * text as "code line1 line2", escaped (OUT-09).
 */
static void
smtp_client_res_reply(struct smtp_client_result *res,
    const struct smtp_reply *r, const char *stage)
{
	char	 buf[SMTP_REPLY_MAX + 8];
	size_t	 i, n;
	int	 cls = r->code / 100;

	memset(res, 0, sizeof(*res));
	res->code = r->code;
	res->outcome = cls == 2 ? SMTPC_OK : cls == 5 ? SMTPC_PERMFAIL :
	    SMTPC_TEMPFAIL;
	if (smtp_parse_enhanced(r->text, res->status) == -1 ||
	    res->status[0] != '0' + cls)
		strlcpy(res->status, cls == 2 ? "2.0.0" : cls == 5 ? "5.0.0" :
		    "4.0.0", sizeof(res->status));
	strlcpy(res->stage, stage, sizeof(res->stage));
	n = (size_t)snprintf(buf, sizeof(buf), "%03d%s%s", r->code,
	    r->textlen > 0 ? " " : "", r->text);
	if (n >= sizeof(buf))
		n = sizeof(buf) - 1;
	for (i = 0; i < n; i++)
		if (buf[i] == '\n')
			buf[i] = ' ';
	util_escape(res->reply, sizeof(res->reply), buf, n);
}

/*
 * Make a failure temporary: OUT-04 (552 to RCPT), OUT-35 (AUTH soft
 * bounce), and every failure before a transaction, which only says that
 * this host will not take mail now, so the caller can try the next one.
 */
static void
smtp_client_res_soften(struct smtp_client_result *res)
{
	if (res->outcome != SMTPC_PERMFAIL)
		return;
	res->outcome = SMTPC_TEMPFAIL;
	if (res->status[0] == '5')
		res->status[0] = '4';
}

/* Lifetime. */

static void
smtp_client_hold(struct smtp_client *s)
{
	s->busy++;
}

static void
smtp_client_destroy(struct smtp_client *s)
{
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->defer_ev != NULL)
		event_free(s->defer_ev);
	free(s->helo);
	free(s->host);
	free(s->auth_user);
	if (s->auth_pass != NULL) {
		explicit_bzero(s->auth_pass, strlen(s->auth_pass));
		free(s->auth_pass);
	}
	free(s->q);
	free(s->rres);
	free(s->prev_rres);
	free(s->rstate);
	free(s->bodybuf);
	free(s);
}

/* Leave an event handler; the last one out frees a freed client. */
static void
smtp_client_release(struct smtp_client *s)
{
	if (--s->busy == 0 && s->freed)
		smtp_client_destroy(s);
}

/* Drop the connection and stop every timer; state is left alone. */
static void
smtp_client_close_conn(struct smtp_client *s)
{
	if (s->bev != NULL) {
		/* Safe inside its own callbacks: libevent refcounts it. */
		bufferevent_free(s->bev);
		s->bev = NULL;
		s->ssl = NULL;
	} else if (s->ssl != NULL) {
		SSL_free(s->ssl);
		s->ssl = NULL;
	}
	evtimer_del(s->timer);
	evtimer_del(s->defer_ev);
	s->defer_what = SMTPC_D_NONE;
	s->qhead = s->qlen = 0;
}

/* Timers and the expectation FIFO. */

static void
smtp_client_timer_arm(struct smtp_client *s, enum smtp_client_timeout t)
{
	struct timeval	 tv = { s->timeouts[t], 0 };

	evtimer_add(s->timer, &tv);
}

static enum smtp_client_timeout
smtp_client_cmd_timeout(enum smtp_client_cmd cmd)
{
	switch (cmd) {
	case SMTPC_C_GREETING:
		return (SMTPC_T_GREETING);
	case SMTPC_C_DATA:
		return (SMTPC_T_DATA_INIT);
	case SMTPC_C_DOT:
		return (SMTPC_T_FINAL);
	case SMTPC_C_RSET:
	case SMTPC_C_QUIT:
		return (SMTPC_T_RSET);
	default:
		return (SMTPC_T_CMD);
	}
}

static void
smtp_client_push(struct smtp_client *s, enum smtp_client_cmd cmd,
    size_t rcpt, bool discard)
{
	struct smtp_client_exp	*e;

	if (s->qhead > 0 && s->qhead + s->qlen == s->qcap) {
		memmove(s->q, s->q + s->qhead, s->qlen * sizeof(*s->q));
		s->qhead = 0;
	}
	if (s->qhead + s->qlen == s->qcap) {
		s->qcap = s->qcap == 0 ? 8 : s->qcap * 2;
		s->q = xreallocarray(s->q, s->qcap, sizeof(*s->q));
	}
	e = &s->q[s->qhead + s->qlen];
	e->cmd = cmd;
	e->rcpt = rcpt;
	e->discard = discard;
	e->seq = s->seq_next++;
	/* The timer always runs for the oldest unanswered command. */
	if (s->qlen++ == 0)
		smtp_client_timer_arm(s, smtp_client_cmd_timeout(cmd));
}

static void
smtp_client_pop(struct smtp_client *s, struct smtp_client_exp *out)
{
	*out = s->q[s->qhead++];
	if (--s->qlen == 0) {
		s->qhead = 0;
		evtimer_del(s->timer);
	} else
		smtp_client_timer_arm(s,
		    smtp_client_cmd_timeout(s->q[s->qhead].cmd));
}

/* Writing. */

/* true when the TLS policy forbids sending cmd without TLS. */
static bool
smtp_client_needs_tls(const struct smtp_client *s, enum smtp_client_cmd cmd)
{
	switch (cmd) {
	case SMTPC_C_AUTH:
		return (true);		/* OUT-35: credentials never in clear */
	case SMTPC_C_MAIL:
	case SMTPC_C_RCPT:
	case SMTPC_C_DATA:
	case SMTPC_C_DOT:
		return (s->tls == SMTPC_TLS_ENFORCED ||
		    s->tls == SMTPC_TLS_VERIFY);
	default:
		return (false);
	}
}

static void
smtp_client_write(struct smtp_client *s, enum smtp_client_cmd cmd,
    size_t rcpt, bool secret, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/*
 * The one place commands are written: one line, CRLF added, and one
 * expectation pushed.  secret masks it in the debug trace.  The TLS check
 * is the structural guarantee of SPEC section 4; reaching it without TLS
 * is a bug in this file, never something a peer can cause.
 */
static void
smtp_client_write(struct smtp_client *s, enum smtp_client_cmd cmd,
    size_t rcpt, bool secret, const char *fmt, ...)
{
	char	 line[SMTPC_WRITE_MAX + 1], esc[SMTPC_WRITE_MAX];
	va_list	 ap;
	int	 n;

	if (smtp_client_needs_tls(s, cmd) && !s->tls_active)
		fatalx("smtp_client %s: %s without TLS", s->peer,
		    smtp_client_cmd_names[cmd]);
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	/* Lengths and characters were checked before (send, new). */
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		fatalx("smtp_client %s: %s line too long", s->peer,
		    smtp_client_cmd_names[cmd]);
	if (log_is_debug())
		log_debug("smtp_client %s: > %s", s->peer,
		    secret ? "********" :
		    util_escape(esc, sizeof(esc), line, (size_t)n));
	memcpy(line + n, "\r\n", 2);
	bufferevent_write(s->bev, line, (size_t)n + 2);
	explicit_bzero(line, sizeof(line));
	smtp_client_push(s, cmd, rcpt, false);
}

/* AUTH PLAIN or LOGIN data, base64 (RFC 4616, draft-murchison-sasl-login). */
static void
smtp_client_b64(char *out, size_t outlen, const void *in, size_t inlen)
{
	if (outlen < 4 * ((inlen + 2) / 3) + 1)
		fatalx("smtp_client: base64 buffer too small");
	EVP_EncodeBlock((unsigned char *)out, in, (int)inlen);
}

/* The connection. */

static void
smtp_client_connect(struct smtp_client *s)
{
	struct smtp_client_result res;

	s->bev = bufferevent_socket_new(s->base, -1,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (s->bev == NULL) {
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.4.1", "CONNECT",
		    "cannot create a socket");
		goto fail;
	}
	bufferevent_setcb(s->bev, smtp_client_readcb, smtp_client_writecb,
	    smtp_client_eventcb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTPC_INPUT_HIWAT);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	smtp_client_timer_arm(s, SMTPC_T_CONNECT);
	if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&s->addr,
	    (int)s->addrlen) == -1) {
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.4.1", "CONNECT",
		    "connect to %s: %s", s->peer, strerror(errno));
		goto fail;
	}
	{
		/* Small commands, each waited for: no Nagle delays. */
		int	on = 1;

		(void)setsockopt(bufferevent_getfd(s->bev), IPPROTO_TCP,
		    TCP_NODELAY, &on, sizeof(on));
	}
	return;
fail:
	/* Called from smtp_client_new: report from the loop, not from here. */
	s->defer_res = res;
	s->defer_what = SMTPC_D_ABORT;
	event_active(s->defer_ev, EV_TIMEOUT, 0);
}

/*
 * STARTTLS got 220: start the handshake over the same socket.  Whatever
 * the peer sent after the 220 is dropped first, so nothing written in
 * plaintext can be read as a reply inside TLS (OUT-22, CVE-2011-0411).
 */
static void
smtp_client_starttls(struct smtp_client *s)
{
	struct smtp_client_result res;
	struct bufferevent	*tbev;
	struct evbuffer		*in = bufferevent_get_input(s->bev);
	char			 err[256];
	size_t			 junk;

	if ((junk = evbuffer_get_length(in)) > 0) {
		log_warnx("smtp_client %s: discarding %zu octets sent after "
		    "220 to STARTTLS", s->peer, junk);
		evbuffer_drain(in, junk);
	}
	smtp_parse_reply_init(&s->reply);
	s->reply_bytes = 0;
	if ((s->ssl = SSL_new(s->ssl_ctx)) == NULL) {
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.7.5", "STARTTLS",
		    "cannot create a TLS session: %s",
		    tls_errstr(err, sizeof(err)));
		smtp_client_abort(s, &res);
		return;
	}
	if (tls_client_setup(s->ssl, s->host, s->tls == SMTPC_TLS_VERIFY,
	    err, sizeof(err)) == -1) {
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.7.5", "STARTTLS",
		    "%s", err);
		smtp_client_abort(s, &res);
		return;
	}
	tbev = bufferevent_openssl_filter_new(s->base, s->bev, s->ssl,
	    BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (tbev == NULL) {
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.7.5", "STARTTLS",
		    "cannot start TLS");
		smtp_client_abort(s, &res);
		return;
	}
	/* From here the filter owns the socket bufferevent and the SSL. */
	s->bev = tbev;
	bufferevent_openssl_set_allow_dirty_shutdown(tbev, 1);
	bufferevent_setcb(tbev, smtp_client_readcb, smtp_client_writecb,
	    smtp_client_eventcb, s);
	bufferevent_setwatermark(tbev, EV_READ, 0, SMTPC_INPUT_HIWAT);
	bufferevent_enable(tbev, EV_READ | EV_WRITE);
	smtp_client_timer_arm(s, SMTPC_T_TLS);
}

/* Why the handshake failed, for the result and the log. */
static void
smtp_client_tls_failed(struct smtp_client *s, short events)
{
	struct smtp_client_result res;
	unsigned long	 e;
	long		 vr;
	char		 why[256] = "";

	if (s->ssl != NULL && s->tls == SMTPC_TLS_VERIFY &&
	    (vr = SSL_get_verify_result(s->ssl)) != X509_V_OK)
		snprintf(why, sizeof(why), "certificate verification "
		    "failed: %s", X509_verify_cert_error_string(vr));
	else if (s->bev != NULL &&
	    (e = bufferevent_get_openssl_error(s->bev)) != 0)
		ERR_error_string_n(e, why, sizeof(why));
	else if (events & BEV_EVENT_EOF)
		strlcpy(why, "connection closed by peer", sizeof(why));
	else
		strlcpy(why, "handshake failed", sizeof(why));
	while (s->bev != NULL && bufferevent_get_openssl_error(s->bev) != 0)
		;
	ERR_clear_error();
	smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.7.5", "STARTTLS",
	    "TLS handshake with %s failed: %s", s->host, why);
	if (s->tls == SMTPC_TLS_OPPORTUNISTIC)
		/* RFC 7435: an active attacker can force this downgrade. */
		log_warnx("smtp_client %s: %s; plaintext retry possible",
		    s->peer, res.reply);
	else
		log_warnx("smtp_client %s: %s", s->peer, res.reply);
	smtp_client_abort(s, &res);
}

/* The handshake is done: EHLO again (RFC 3207 4.2). */
static void
smtp_client_tls_done(struct smtp_client *s)
{
	struct smtp_client_result res;
	long	 vr;

	/* SSL_VERIFY_PEER already failed the handshake; check anyway. */
	if (s->tls == SMTPC_TLS_VERIFY &&
	    (vr = SSL_get_verify_result(s->ssl)) != X509_V_OK) {
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.7.5",
		    "STARTTLS", "certificate verification failed: %s",
		    X509_verify_cert_error_string(vr));
		smtp_client_abort(s, &res);
		return;
	}
	s->tls_active = true;
	s->tls_verified = s->tls == SMTPC_TLS_VERIFY;
	strlcpy(s->tls_version, tls_version_name(s->ssl),
	    sizeof(s->tls_version));
	log_info("smtp_client %s: %s TLS connection established: %s with "
	    "cipher %s", s->peer, s->tls_verified ? "Verified" : "Untrusted",
	    s->tls_version, SSL_get_cipher_name(s->ssl));
	evtimer_del(s->timer);
	memset(&s->caps, 0, sizeof(s->caps));
	smtp_client_enter(s, SMTPC_S_EHLO);
}

/* The transaction. */

/* The first recipient from i on that still needs a RCPT. */
static size_t
smtp_client_next_pending(const struct smtp_client *s, size_t i)
{
	while (i < s->msg.nrcpts && s->rstate[i] != SMTPC_R_PENDING)
		i++;
	return (i);
}

/* Decide every recipient that is not yet final. */
static void
smtp_client_decide_open(struct smtp_client *s,
    const struct smtp_client_result *res, bool accepted_only)
{
	size_t	 i;

	for (i = 0; i < s->msg.nrcpts; i++) {
		if (s->rstate[i] == SMTPC_R_DONE ||
		    (accepted_only && s->rstate[i] != SMTPC_R_ACCEPTED))
			continue;
		s->rres[i] = *res;
		s->rstate[i] = SMTPC_R_DONE;
	}
}

static void
smtp_client_set_overall(struct smtp_client *s,
    const struct smtp_client_result *res)
{
	s->overall = *res;
	s->overall_set = true;
}

/* Unpipelined: the next RCPT, else DATA, else the end (no recipient). */
static void
smtp_client_envelope_next(struct smtp_client *s)
{
	size_t	 i;

	i = smtp_client_next_pending(s, s->rcpt_next);
	if (i < s->msg.nrcpts) {
		s->rcpt_next = i + 1;
		smtp_client_write(s, SMTPC_C_RCPT, i, false, "RCPT TO:<%s>",
		    s->msg.rcpts[i]);
	} else if (s->naccepted > 0)
		smtp_client_write(s, SMTPC_C_DATA, 0, false, "DATA");
	else
		smtp_client_finish(s, true);
}

/* What goes between DATA and the dot: the prefix, then the body. */
static uint64_t
smtp_client_msg_len(const struct smtp_client_msg *m)
{
	return ((uint64_t)m->prefix_len + m->body_len);
}

/* MAIL, and with PIPELINING every RCPT and DATA, in one write. */
static void
smtp_client_envelope_start(struct smtp_client *s)
{
	char	 size[32] = "";
	size_t	 i;

	if (s->caps.size > 0)
		snprintf(size, sizeof(size), " SIZE=%llu",
		    (unsigned long long)smtp_client_msg_len(&s->msg));
	smtp_client_write(s, SMTPC_C_MAIL, 0, false, "MAIL FROM:<%s>%s%s%s",
	    s->msg.sender, size,
	    s->msg.eightbit && s->caps.eightbitmime ? " BODY=8BITMIME" : "",
	    s->msg.smtputf8 && s->caps.smtputf8 ? " SMTPUTF8" : "");
	if (!s->caps.pipelining)
		return;
	for (i = smtp_client_next_pending(s, 0); i < s->msg.nrcpts;
	    i = smtp_client_next_pending(s, i + 1))
		smtp_client_write(s, SMTPC_C_RCPT, i, false, "RCPT TO:<%s>",
		    s->msg.rcpts[i]);
	smtp_client_write(s, SMTPC_C_DATA, 0, false, "DATA");
}

/*
 * Stream the body: stuff dots, refuse bare CR/LF, fill the output up to
 * the high watermark and continue from the write callback (backpressure,
 * STYLE 3.8).  At the end, the final dot.
 */
/* Octets of p before the first CR or LF (len when there is none). */
static size_t
smtp_client_plain_span(const char *p, size_t len)
{
	const char	*cr, *lf;

	if ((cr = memchr(p, '\r', len)) != NULL)
		len = (size_t)(cr - p);
	if ((lf = memchr(p, '\n', len)) != NULL)
		len = (size_t)(lf - p);
	return (len);
}

static void
smtp_client_body_fill(struct smtp_client *s)
{
	struct smtp_client_result res;
	struct evbuffer	*out = bufferevent_get_output(s->bev);
	char		 in[SMTPC_CHUNK], *o;
	uint64_t	 left;
	ssize_t		 r;
	size_t		 n, i;
	bool		 progress = false;

	while (evbuffer_get_length(out) < SMTPC_OUTPUT_HIWAT &&
	    (left = smtp_client_msg_len(&s->msg) - s->body_sent) > 0) {
		n = left < sizeof(in) ? (size_t)left : sizeof(in);
		if (s->body_sent < s->msg.prefix_len) {
			/* The prefix first, through the same checks. */
			if (n > s->msg.prefix_len - s->body_sent)
				n = (size_t)(s->msg.prefix_len - s->body_sent);
			memcpy(in, s->msg.prefix + s->body_sent, n);
			r = (ssize_t)n;
		} else
			r = pread(s->msg.body_fd, in, n, s->msg.body_offset +
			    (off_t)(s->body_sent - s->msg.prefix_len));
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.3.0",
			    "DATA", "cannot read the message body: %s",
			    r == 0 ? "unexpected end of file" :
			    strerror(errno));
			log_warnx("smtp_client %s: %s", s->peer, res.reply);
			smtp_client_abort(s, &res);
			return;
		}
		o = s->bodybuf;
		for (i = 0; i < (size_t)r; i++) {
			if (!s->body_cr && !s->body_bol) {
				/* Inside a line: copy up to the next CR or
				 * LF at once; those take the path below. */
				n = smtp_client_plain_span(in + i,
				    (size_t)r - i);
				memcpy(o, in + i, n);
				o += n;
				i += n;
				if (i == (size_t)r)
					break;
			}
			/* OUT-20: no bare CR or LF ever leaves; the dot is
			 * never sent, so the peer discards what it got. */
			if ((s->body_cr && in[i] != '\n') ||
			    (!s->body_cr && in[i] == '\n')) {
				smtp_client_res_local(&res, SMTPC_PERMFAIL,
				    "5.6.0", "DATA", "message body contains "
				    "a bare CR or LF; not sent");
				log_warnx("smtp_client %s: %s", s->peer,
				    res.reply);
				smtp_client_abort(s, &res);
				return;
			}
			if (s->body_bol && in[i] == '.')
				*o++ = '.';
			*o++ = in[i];
			s->body_bol = s->body_cr && in[i] == '\n';
			s->body_cr = in[i] == '\r';
		}
		evbuffer_add(out, s->bodybuf, (size_t)(o - s->bodybuf));
		s->body_sent += (uint64_t)r;
		progress = true;
	}
	if (progress)
		smtp_client_timer_arm(s, SMTPC_T_DATA_BLOCK);
	if (s->body_sent < smtp_client_msg_len(&s->msg))
		return;
	if (s->body_cr) {
		smtp_client_res_local(&res, SMTPC_PERMFAIL, "5.6.0", "DATA",
		    "message body ends in a bare CR; not sent");
		smtp_client_abort(s, &res);
		return;
	}
	smtp_client_enter(s, SMTPC_S_DOT);
}

/* RFC 5321 4.1.1.4 .. 4.1.1.5: replies to MAIL, RCPT and DATA. */
static void
smtp_client_envelope_reply(struct smtp_client *s,
    const struct smtp_client_exp *e, const struct smtp_reply *r)
{
	struct smtp_client_result res;
	int	 cls = r->code / 100;

	switch (e->cmd) {
	case SMTPC_C_MAIL:
		if (cls == 2) {
			if (!s->caps.pipelining)
				smtp_client_envelope_next(s);
			return;
		}
		/* OUT-03: the whole transaction shares MAIL's fate; with
		 * PIPELINING the RCPT and DATA replies are still read. */
		smtp_client_res_reply(&res, r, "MAIL");
		if (res.outcome == SMTPC_OK)
			res.outcome = SMTPC_TEMPFAIL;
		s->mail_failed = true;
		smtp_client_decide_open(s, &res, false);
		smtp_client_set_overall(s, &res);
		if (!s->caps.pipelining)
			smtp_client_finish(s, true);
		return;
	case SMTPC_C_RCPT:
		if (s->mail_failed)
			return;
		if (cls == 2) {
			s->rstate[e->rcpt] = SMTPC_R_ACCEPTED;
			s->naccepted++;
		} else {
			smtp_client_res_reply(&res, r, "RCPT");
			/* OUT-04: 552 to RCPT is 452 (RFC 5321 4.5.3.1.10). */
			if (r->code == 552)
				smtp_client_res_soften(&res);
			if (res.outcome == SMTPC_OK)
				res.outcome = SMTPC_TEMPFAIL;
			s->rres[e->rcpt] = res;
			s->rstate[e->rcpt] = SMTPC_R_DONE;
		}
		if (!s->caps.pipelining)
			smtp_client_envelope_next(s);
		return;
	case SMTPC_C_DATA:
		if (r->code == 354) {
			/* OUT-05: never content without a recipient; a
			 * broken server's 354 gets a lone dot. */
			smtp_client_enter(s, s->mail_failed ||
			    s->naccepted == 0 ? SMTPC_S_DOT : SMTPC_S_BODY);
			return;
		}
		if (!s->mail_failed && s->naccepted > 0) {
			smtp_client_res_reply(&res, r, "DATA");
			if (res.outcome == SMTPC_OK)
				res.outcome = SMTPC_TEMPFAIL;
			smtp_client_decide_open(s, &res, true);
			smtp_client_set_overall(s, &res);
		}
		smtp_client_finish(s, true);
		return;
	default:
		fatalx("smtp_client: %s reply in ENVELOPE",
		    smtp_client_cmd_names[e->cmd]);
	}
}

/* After EHLO or HELO: AUTH if configured, else ready. */
static void
smtp_client_auth_or_ready(struct smtp_client *s)
{
	struct smtp_client_result res;

	if (s->auth_user == NULL) {
		smtp_client_enter(s, SMTPC_S_READY);
		if (s->cbs.ready != NULL)
			s->cbs.ready(s, s->arg);
		return;
	}
	if (!s->tls_active) {
		/* OUT-35: never credentials in clear, whatever the mode. */
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.7.4", "AUTH",
		    "TLS is required for AUTH, but was not offered by %s",
		    s->host);
		smtp_client_abort(s, &res);
		return;
	}
	if (!s->caps.auth_plain && !s->caps.auth_login) {
		/* Defer rather than send unauthenticated and be bounced. */
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.7.0", "AUTH",
		    "%s offers no AUTH PLAIN or LOGIN", s->host);
		smtp_client_abort(s, &res);
		return;
	}
	s->auth_login = !s->caps.auth_plain;
	smtp_client_enter(s, SMTPC_S_AUTH);
}

/* After a successful EHLO or HELO: STARTTLS as the TLS mode says. */
static void
smtp_client_after_ehlo(struct smtp_client *s)
{
	struct smtp_client_result res;

	if (!s->tls_active && s->tls != SMTPC_TLS_NONE) {
		if (s->caps.starttls) {
			smtp_client_enter(s, SMTPC_S_STARTTLS);
			return;
		}
		if (s->tls != SMTPC_TLS_OPPORTUNISTIC) {
			/* OUT-21: before MAIL, never plaintext. */
			smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.7.4",
			    "STARTTLS", "TLS is required, but was not "
			    "offered by host %s", s->host);
			smtp_client_abort(s, &res);
			return;
		}
		log_info("smtp_client %s: STARTTLS not offered; plaintext",
		    s->peer);
	}
	smtp_client_auth_or_ready(s);
}

/* Failures before or between transactions close the connection. */
static void
smtp_client_session_fail(struct smtp_client *s, const struct smtp_reply *r,
    const char *stage)
{
	struct smtp_client_result res;

	smtp_client_res_reply(&res, r, stage);
	if (res.outcome == SMTPC_OK)
		res.outcome = SMTPC_TEMPFAIL;
	smtp_client_res_soften(&res);
	smtp_client_abort(s, &res);
}

/* The reply dispatcher: one complete reply to the command e. */
static void
smtp_client_reply(struct smtp_client *s, const struct smtp_client_exp *e,
    const struct smtp_reply *r)
{
	struct smtp_client_result res;
	int	 cls = r->code / 100;

	/* OUT-03: 421 closes the session at any stage but QUIT. */
	if (r->code == 421 && s->state != SMTPC_S_QUIT) {
		smtp_client_res_reply(&res, r, smtp_client_cmd_names[e->cmd]);
		smtp_client_abort(s, &res);
		return;
	}
	switch (s->state) {
	case SMTPC_S_GREETING:
		/* OUT-01: a 5xx greeting says "try another host". */
		if (r->code != 220)
			smtp_client_session_fail(s, r, "GREETING");
		else
			smtp_client_enter(s, SMTPC_S_EHLO);
		break;
	case SMTPC_S_EHLO:
		if (cls == 2) {
			smtp_parse_ehlo_caps(r, &s->caps);
			smtp_client_after_ehlo(s);
		} else if (!s->tls_active && (s->tls == SMTPC_TLS_ENFORCED ||
		    s->tls == SMTPC_TLS_VERIFY)) {
			/* OUT-02: HELO would mean no STARTTLS. */
			smtp_client_res_reply(&res, r, "EHLO");
			smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.7.4",
			    "EHLO", "TLS is required, but host %s rejected "
			    "EHLO: %s", s->host, res.reply);
			smtp_client_abort(s, &res);
		} else
			smtp_client_enter(s, SMTPC_S_HELO);
		break;
	case SMTPC_S_HELO:
		if (cls == 2) {
			memset(&s->caps, 0, sizeof(s->caps));
			smtp_client_after_ehlo(s);
		} else
			smtp_client_session_fail(s, r, "HELO");
		break;
	case SMTPC_S_STARTTLS:
		if (r->code == 220)
			smtp_client_enter(s, SMTPC_S_TLS);
		else if (s->tls == SMTPC_TLS_OPPORTUNISTIC) {
			log_info("smtp_client %s: STARTTLS refused (%d); "
			    "plaintext", s->peer, r->code);
			smtp_client_auth_or_ready(s);
		} else {
			smtp_client_res_reply(&res, r, "STARTTLS");
			smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.7.4",
			    "STARTTLS", "TLS is required, but host %s "
			    "refused STARTTLS: %s", s->host, res.reply);
			smtp_client_abort(s, &res);
		}
		break;
	case SMTPC_S_AUTH:
		if (r->code == 235)
			goto authenticated;
		if (r->code == 334 && s->auth_login)
			smtp_client_enter(s, SMTPC_S_AUTH_USER);
		else
			smtp_client_session_fail(s, r, "AUTH");
		break;
	case SMTPC_S_AUTH_USER:
		if (r->code == 334)
			smtp_client_enter(s, SMTPC_S_AUTH_PASS);
		else
			smtp_client_session_fail(s, r, "AUTH");
		break;
	case SMTPC_S_AUTH_PASS:
		if (r->code == 235)
			goto authenticated;
		/* OUT-35: 535 is a soft bounce. */
		smtp_client_session_fail(s, r, "AUTH");
		break;
	case SMTPC_S_ENVELOPE:
		smtp_client_envelope_reply(s, e, r);
		break;
	case SMTPC_S_DOT:
		if (!e->discard) {
			/* OUT-06: the final reply decides every recipient
			 * that RCPT accepted. */
			smtp_client_res_reply(&res, r, "DOT");
			if (r->code == 552 &&
			    strcmp(res.status, "5.0.0") == 0)
				strlcpy(res.status, "5.3.4",
				    sizeof(res.status));	/* OUT-18 */
			if (cls == 3)
				res.outcome = SMTPC_TEMPFAIL;
			smtp_client_decide_open(s, &res, true);
			smtp_client_set_overall(s, &res);
		}
		smtp_client_finish(s, true);
		break;
	case SMTPC_S_RSET:
		if (cls == 2) {
			smtp_client_enter(s, SMTPC_S_READY);
			if (s->cbs.ready != NULL)
				s->cbs.ready(s, s->arg);
		} else
			smtp_client_session_fail(s, r, "RSET");
		break;
	case SMTPC_S_QUIT:
		smtp_client_res_reply(&res, r, "QUIT");
		smtp_client_abort(s, &res);
		break;
	default:
		fatalx("smtp_client: reply in state %s",
		    smtp_client_state_names[s->state]);
	}
	return;
authenticated:
	log_info("smtp_client %s: authenticated as %s", s->peer,
	    s->auth_user);
	smtp_client_enter(s, SMTPC_S_READY);
	if (s->cbs.ready != NULL)
		s->cbs.ready(s, s->arg);
}

/*
 * The transaction is over: check that every recipient is decided (STYLE
 * 2.5), pick the overall result and report.
 */
static void
smtp_client_finish(struct smtp_client *s, bool reusable)
{
	size_t	 i, first_temp = SIZE_MAX, first_perm = SIZE_MAX;

	for (i = 0; i < s->msg.nrcpts; i++) {
		if (s->rstate[i] != SMTPC_R_DONE)
			fatalx("smtp_client %s: recipient %zu undecided",
			    s->peer, i);
		if (s->rres[i].outcome == SMTPC_TEMPFAIL &&
		    first_temp == SIZE_MAX)
			first_temp = i;
		if (s->rres[i].outcome == SMTPC_PERMFAIL &&
		    first_perm == SIZE_MAX)
			first_perm = i;
	}
	/* No recipient was accepted: the first deferral, else failure. */
	if (!s->overall_set)
		smtp_client_set_overall(s, &s->rres[first_temp != SIZE_MAX ?
		    first_temp : first_perm != SIZE_MAX ? first_perm : 0]);
	s->in_txn = false;
	evtimer_del(s->defer_ev);
	s->defer_what = SMTPC_D_NONE;
	smtp_client_enter(s, reusable ? SMTPC_S_READY : SMTPC_S_CLOSED);
	if (s->cbs.done != NULL)
		s->cbs.done(s, s->rres, s->msg.nrcpts, &s->overall, reusable,
		    s->arg);
}

/*
 * The connection is lost, timed out, broke the protocol, or the peer said
 * 421: inside a transaction every open recipient gets res and done
 * reports it (not reusable); otherwise closed does (OK after QUIT).
 */
static void
smtp_client_abort(struct smtp_client *s, const struct smtp_client_result *res)
{
	struct smtp_client_result quit;

	if (s->state == SMTPC_S_CLOSED)
		return;
	if (s->in_txn) {
		log_info("smtp_client %s: transaction failed: %s", s->peer,
		    res->reply);
		smtp_client_decide_open(s, res, false);
		smtp_client_set_overall(s, res);
		smtp_client_finish(s, false);
		return;
	}
	if (s->state == SMTPC_S_QUIT) {
		/* OUT-14: whatever happens at QUIT is fine. */
		smtp_client_res_local(&quit, SMTPC_OK, "2.0.0", "QUIT",
		    "connection closed");
		res = &quit;
	} else
		log_info("smtp_client %s: %s (%s)", s->peer, res->reply,
		    res->stage);
	smtp_client_enter(s, SMTPC_S_CLOSED);
	if (s->cbs.closed != NULL)
		s->cbs.closed(s, res, s->arg);
}

/*
 * The state machine's one transition: log, then the entry action.
 */
static void
smtp_client_enter(struct smtp_client *s, enum smtp_client_state new)
{
	char	 b64[4 * ((2 * SMTPC_AUTH_MAX + 2 + 2) / 3) + 1];
	char	 plain[2 * SMTPC_AUTH_MAX + 2];
	size_t	 ulen, plen;

	log_debug("smtp_client %s: %s -> %s", s->peer,
	    smtp_client_state_names[s->state], smtp_client_state_names[new]);
	s->state = new;
	switch (new) {
	case SMTPC_S_CONNECT:
		smtp_client_connect(s);
		break;
	case SMTPC_S_GREETING:
		evtimer_del(s->timer);
		smtp_client_push(s, SMTPC_C_GREETING, 0, false);
		break;
	case SMTPC_S_EHLO:
		smtp_client_write(s, SMTPC_C_EHLO, 0, false, "EHLO %s",
		    s->helo);
		break;
	case SMTPC_S_HELO:
		smtp_client_write(s, SMTPC_C_HELO, 0, false, "HELO %s",
		    s->helo);
		break;
	case SMTPC_S_STARTTLS:
		smtp_client_write(s, SMTPC_C_STARTTLS, 0, false, "STARTTLS");
		break;
	case SMTPC_S_TLS:
		smtp_client_starttls(s);
		break;
	case SMTPC_S_AUTH:
		if (s->auth_login) {
			smtp_client_write(s, SMTPC_C_AUTH, 0, false,
			    "AUTH LOGIN");
			break;
		}
		/* RFC 4616: authzid (empty) NUL authcid NUL passwd. */
		ulen = strlen(s->auth_user);
		plen = strlen(s->auth_pass);
		plain[0] = '\0';
		memcpy(plain + 1, s->auth_user, ulen);
		plain[1 + ulen] = '\0';
		memcpy(plain + 2 + ulen, s->auth_pass, plen);
		smtp_client_b64(b64, sizeof(b64), plain, 2 + ulen + plen);
		smtp_client_write(s, SMTPC_C_AUTH, 0, true, "AUTH PLAIN %s",
		    b64);
		explicit_bzero(plain, sizeof(plain));
		explicit_bzero(b64, sizeof(b64));
		break;
	case SMTPC_S_AUTH_USER:
		smtp_client_b64(b64, sizeof(b64), s->auth_user,
		    strlen(s->auth_user));
		smtp_client_write(s, SMTPC_C_AUTH, 0, true, "%s", b64);
		break;
	case SMTPC_S_AUTH_PASS:
		smtp_client_b64(b64, sizeof(b64), s->auth_pass,
		    strlen(s->auth_pass));
		smtp_client_write(s, SMTPC_C_AUTH, 0, true, "%s", b64);
		explicit_bzero(b64, sizeof(b64));
		break;
	case SMTPC_S_READY:
		evtimer_del(s->timer);
		if (s->bev != NULL)
			bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
		break;
	case SMTPC_S_ENVELOPE:
		smtp_client_envelope_start(s);
		break;
	case SMTPC_S_BODY:
		if (smtp_client_needs_tls(s, SMTPC_C_DOT) && !s->tls_active)
			fatalx("smtp_client %s: body without TLS", s->peer);
		bufferevent_setwatermark(s->bev, EV_WRITE,
		    SMTPC_OUTPUT_LOWAT, 0);
		smtp_client_timer_arm(s, SMTPC_T_DATA_BLOCK);
		smtp_client_body_fill(s);
		break;
	case SMTPC_S_DOT:
		bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
		/* OUT-20: CRLF before the dot when the body lacks one. */
		if (!s->body_bol)
			bufferevent_write(s->bev, "\r\n", 2);
		smtp_client_write(s, SMTPC_C_DOT, 0, false, ".");
		if (s->mail_failed || s->naccepted == 0)
			s->q[s->qhead + s->qlen - 1].discard = true;
		break;
	case SMTPC_S_RSET:
		smtp_client_write(s, SMTPC_C_RSET, 0, false, "RSET");
		break;
	case SMTPC_S_QUIT:
		smtp_client_write(s, SMTPC_C_QUIT, 0, false, "QUIT");
		break;
	case SMTPC_S_CLOSED:
		smtp_client_close_conn(s);
		break;
	case SMTPC_S_NEW:
	case SMTPC_S_COUNT:
		fatalx("smtp_client: enter %d", (int)new);
	}
}

/* Reading. */

static void
smtp_client_protocol_error(struct smtp_client *s, const char *what,
    const char *line, size_t len)
{
	struct smtp_client_result res;
	char	 esc[128];

	smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.5.0",
	    s->qlen > 0 ? smtp_client_cmd_names[s->q[s->qhead].cmd] :
	    s->state == SMTPC_S_BODY ? "DATA" : "IDLE",
	    "protocol error: %s%s%s", what, line != NULL ? ": " : "",
	    line != NULL ? util_escape(esc, sizeof(esc), line, len) : "");
	smtp_client_abort(s, &res);
}

/*
 * Read every complete reply line (STYLE 2.8: CRLF only, bounded), feed
 * the reply parser, and dispatch each complete reply to its expectation.
 */
static void
smtp_client_read(struct smtp_client *s)
{
	struct bufferevent	*bev = s->bev;
	struct evbuffer		*in;
	struct smtp_client_exp	 e;
	char			*line, esc[SMTPC_REPLY_LINE_MAX];
	size_t			 len;

	if (bev == NULL)
		return;
	in = bufferevent_get_input(bev);
	while (!s->freed && s->bev == bev && s->state != SMTPC_S_CLOSED &&
	    s->state != SMTPC_S_TLS) {
		line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF_STRICT);
		if (line == NULL) {
			if (evbuffer_get_length(in) > SMTPC_REPLY_LINE_MAX)
				smtp_client_protocol_error(s,
				    "reply line too long", NULL, 0);
			return;
		}
		if (log_is_debug())
			log_debug("smtp_client %s: < %s", s->peer,
			    util_escape(esc, sizeof(esc), line, len));
		s->reply_bytes += len + 2;
		if (len > SMTPC_REPLY_LINE_MAX) {
			free(line);
			smtp_client_protocol_error(s, "reply line too long",
			    NULL, 0);
			return;
		}
		if (memchr(line, '\r', len) != NULL ||
		    memchr(line, '\n', len) != NULL) {
			smtp_client_protocol_error(s, "bare CR or LF in reply",
			    line, len);
			free(line);
			return;
		}
		if (s->reply_bytes > SMTPC_REPLY_BYTES_MAX ||
		    smtp_parse_reply_line(&s->reply, line, len) == -1) {
			smtp_client_protocol_error(s,
			    s->reply_bytes > SMTPC_REPLY_BYTES_MAX ?
			    "reply too long" : "malformed reply", line, len);
			free(line);
			return;
		}
		free(line);
		if (!s->reply.complete)
			continue;
		/* OUT-10, OUT-22: a reply must answer a command written
		 * before it was read. */
		if (s->qlen == 0 || s->q[s->qhead].seq >= s->seq_fence) {
			smtp_client_protocol_error(s, "unexpected reply",
			    s->reply.text, s->reply.textlen);
			return;
		}
		smtp_client_pop(s, &e);
		smtp_client_reply(s, &e, &s->reply);
		smtp_parse_reply_init(&s->reply);
		s->reply_bytes = 0;
	}
}

static void
smtp_client_readcb(struct bufferevent *bev, void *arg)
{
	struct smtp_client	*s = arg;

	(void)bev;
	smtp_client_hold(s);
	s->seq_fence = s->seq_next;
	smtp_client_read(s);
	smtp_client_release(s);
}

static void
smtp_client_writecb(struct bufferevent *bev, void *arg)
{
	struct smtp_client	*s = arg;

	(void)bev;
	smtp_client_hold(s);
	if (s->state == SMTPC_S_BODY)
		smtp_client_body_fill(s);
	smtp_client_release(s);
}

static void
smtp_client_eventcb(struct bufferevent *bev, short events, void *arg)
{
	struct smtp_client	*s = arg;
	struct smtp_client_result res;
	const char		*what;
	int			 err = EVUTIL_SOCKET_ERROR();

	(void)bev;
	smtp_client_hold(s);
	if (events & BEV_EVENT_CONNECTED) {
		if (s->state == SMTPC_S_CONNECT)
			smtp_client_enter(s, SMTPC_S_GREETING);
		else if (s->state == SMTPC_S_TLS)
			smtp_client_tls_done(s);
		goto out;
	}
	if (s->state == SMTPC_S_CONNECT) {
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.4.1", "CONNECT",
		    "connect to %s: %s", s->peer, err != 0 ?
		    evutil_socket_error_to_string(err) : "failed");
		smtp_client_abort(s, &res);
		goto out;
	}
	if (s->state == SMTPC_S_TLS) {
		smtp_client_tls_failed(s, events);
		goto out;
	}
	/* A reply and the close can come together ("421 bye", FIN). */
	s->seq_fence = s->seq_next;
	smtp_client_read(s);
	if (s->freed || s->state == SMTPC_S_CLOSED || s->bev != bev)
		goto out;
	what = events & BEV_EVENT_EOF ? "lost connection" :
	    "connection error";
	switch (s->state) {
	case SMTPC_S_BODY:
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.4.2", "DATA",
		    "%s with %s while sending message body", what, s->peer);
		break;
	case SMTPC_S_DOT:
		/* OUT-13: the message may have been delivered (RFC 1047). */
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.4.2", "DOT",
		    "%s with %s after end of data", what, s->peer);
		break;
	default:
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.4.2",
		    s->qlen > 0 ? smtp_client_cmd_names[s->q[s->qhead].cmd] :
		    "IDLE", "%s with %s%s%s", what, s->peer,
		    s->qlen > 0 ? " while waiting for reply to " :
		    " while idle",
		    s->qlen > 0 ? smtp_client_cmd_names[s->q[s->qhead].cmd] :
		    "");
		break;
	}
	smtp_client_abort(s, &res);
out:
	smtp_client_release(s);
}

static void
smtp_client_timeout_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct smtp_client	*s = arg;
	struct smtp_client_result res;

	(void)fd;
	(void)ev;
	smtp_client_hold(s);
	if (s->state == SMTPC_S_CONNECT)
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.4.1", "CONNECT",
		    "connect to %s: timed out", s->peer);
	else if (s->state == SMTPC_S_TLS)
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.7.5",
		    "STARTTLS", "TLS handshake with %s timed out", s->peer);
	else if (s->state == SMTPC_S_BODY)
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.4.2", "DATA",
		    "conversation with %s timed out while sending message "
		    "body", s->peer);
	else if (s->qlen > 0)
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.4.2",
		    smtp_client_cmd_names[s->q[s->qhead].cmd],
		    "conversation with %s timed out while waiting for reply "
		    "to %s", s->peer,
		    smtp_client_cmd_names[s->q[s->qhead].cmd]);
	else
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.4.2", "IDLE",
		    "conversation with %s timed out", s->peer);
	smtp_client_abort(s, &res);
	smtp_client_release(s);
}

/* Results decided inside an API call are reported from the loop. */
static void
smtp_client_defer_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct smtp_client	*s = arg;
	enum smtp_client_defer	 what = s->defer_what;

	(void)fd;
	(void)ev;
	smtp_client_hold(s);
	s->defer_what = SMTPC_D_NONE;
	if (what == SMTPC_D_FINISH)
		smtp_client_finish(s, true);
	else if (what == SMTPC_D_ABORT)
		smtp_client_abort(s, &s->defer_res);
	smtp_client_release(s);
}

/* API. */

/* Printable ASCII (or any 8-bit with utf8) without SP, '<', '>'. */
static bool
smtp_client_is_path_ok(const char *p, bool utf8)
{
	size_t	 i, len = strlen(p);

	if (len > SMTP_PATH_MAX - 2)
		return (false);
	for (i = 0; i < len; i++) {
		unsigned char	 c = (unsigned char)p[i];

		if (c <= ' ' || c == 0x7f || c == '<' || c == '>' ||
		    (c >= 0x80 && !utf8))
			return (false);
	}
	return (true);
}

static bool
smtp_client_is_token(const char *p, size_t max)
{
	size_t	 i, len = strlen(p);

	if (len == 0 || len > max)
		return (false);
	for (i = 0; i < len; i++)
		if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] >= 0x7f)
			return (false);
	return (true);
}

struct smtp_client *
smtp_client_new(struct event_base *base, const struct smtp_client_cfg *cfg,
    const struct smtp_client_cbs *cbs, void *arg)
{
	struct smtp_client	*s;
	char			 ip[64], port[16];
	const int		 t[SMTPC_T_COUNT] = {
		[SMTPC_T_CONNECT] = cfg->connect_timeout,
		[SMTPC_T_GREETING] = cfg->timeout_greeting,
		[SMTPC_T_CMD] = cfg->timeout_cmd,
		[SMTPC_T_DATA_INIT] = cfg->timeout_data_init,
		[SMTPC_T_DATA_BLOCK] = cfg->timeout_data_block,
		[SMTPC_T_FINAL] = cfg->timeout_final,
		[SMTPC_T_TLS] = cfg->timeout_tls,
		[SMTPC_T_RSET] = cfg->timeout_rset,
	};
	size_t			 i;
	bool			 auth;

	auth = cfg->auth_user != NULL && cfg->auth_user[0] != '\0';
	if (cfg->helo == NULL || !smtp_client_is_token(cfg->helo,
	    SMTP_DOMAIN_MAX) || cfg->host == NULL ||
	    !smtp_client_is_token(cfg->host, SMTP_DOMAIN_MAX + 1) ||
	    cfg->addrlen == 0 || cfg->addrlen > sizeof(cfg->addr) ||
	    (cfg->tls != SMTPC_TLS_NONE && cfg->ssl_ctx == NULL) ||
	    (auth && (strlen(cfg->auth_user) > SMTPC_AUTH_MAX ||
	    cfg->auth_pass == NULL ||
	    strlen(cfg->auth_pass) > SMTPC_AUTH_MAX))) {
		log_warnx("smtp_client: unusable configuration for %s",
		    cfg->host != NULL ? cfg->host : "(no host)");
		return (NULL);
	}
	s = xcalloc(1, sizeof(*s));
	s->base = base;
	s->cbs = *cbs;
	s->arg = arg;
	s->helo = xstrdup(cfg->helo);
	s->host = xstrdup(cfg->host);
	if (auth) {
		s->auth_user = xstrdup(cfg->auth_user);
		s->auth_pass = xstrdup(cfg->auth_pass);
	}
	memcpy(&s->addr, &cfg->addr, cfg->addrlen);
	s->addrlen = cfg->addrlen;
	s->tls = cfg->tls;
	s->ssl_ctx = cfg->ssl_ctx;
	for (i = 0; i < SMTPC_T_COUNT; i++)
		s->timeouts[i] = t[i] > 0 ? t[i] :
		    smtp_client_timeout_defaults[i];
	strlcpy(s->tls_version, "none", sizeof(s->tls_version));
	if (getnameinfo((struct sockaddr *)&s->addr, s->addrlen, ip,
	    sizeof(ip), port, sizeof(port),
	    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		strlcpy(ip, "?", sizeof(ip));
		strlcpy(port, "?", sizeof(port));
	}
	snprintf(s->peer, sizeof(s->peer), "%s[%s]:%s", s->host, ip, port);
	smtp_parse_reply_init(&s->reply);
	s->timer = evtimer_new(base, smtp_client_timeout_cb, s);
	s->defer_ev = event_new(base, -1, 0, smtp_client_defer_cb, s);
	if (s->timer == NULL || s->defer_ev == NULL)
		fatalx("smtp_client: cannot create timers");
	/* xcalloc left state at SMTPC_S_NEW. */
	smtp_client_enter(s, SMTPC_S_CONNECT);
	return (s);
}

/* One message over an idle connection; see smtp_client.h. */
int
smtp_client_send(struct smtp_client *s, const struct smtp_client_msg *msg)
{
	struct smtp_client_result res;
	size_t	 i, open = 0;
	bool	 local = false;

	if (s->state != SMTPC_S_READY || s->in_txn || msg->nrcpts == 0 ||
	    msg->rcpts == NULL || msg->sender == NULL ||
	    (msg->prefix == NULL && msg->prefix_len > 0))
		return (-1);
	free(s->prev_rres);
	s->prev_rres = s->rres;	/* the last done's results stay valid */
	s->rres = xcalloc(msg->nrcpts, sizeof(*s->rres));
	free(s->rstate);
	s->rstate = xcalloc(msg->nrcpts, sizeof(*s->rstate));
	if (s->bodybuf == NULL)
		s->bodybuf = xmalloc(2 * SMTPC_CHUNK);
	s->msg = *msg;
	s->in_txn = true;
	s->overall_set = false;
	s->mail_failed = false;
	s->naccepted = 0;
	s->rcpt_next = 0;
	s->body_sent = 0;
	s->body_bol = true;
	s->body_cr = false;

	/* Local verdicts: nothing is sent (OUT-18, OUT-19, SPEC 4 TLS). */
	if ((s->tls == SMTPC_TLS_ENFORCED || s->tls == SMTPC_TLS_VERIFY) &&
	    !s->tls_active) {
		smtp_client_res_local(&res, SMTPC_TEMPFAIL, "4.7.4", "MAIL",
		    "TLS is required, but the session with %s is not "
		    "encrypted", s->host);
		local = true;
	} else if (!smtp_client_is_path_ok(msg->sender, msg->smtputf8)) {
		smtp_client_res_local(&res, SMTPC_PERMFAIL, "5.1.7", "MAIL",
		    "bad sender address");
		local = true;
	} else if (s->caps.size > 0 &&
	    smtp_client_msg_len(msg) > s->caps.size) {
		smtp_client_res_local(&res, SMTPC_PERMFAIL, "5.3.4", "MAIL",
		    "message size %llu exceeds the limit %llu of %s",
		    (unsigned long long)smtp_client_msg_len(msg),
		    (unsigned long long)s->caps.size, s->host);
		local = true;
	} else if (msg->eightbit && !s->caps.eightbitmime) {
		smtp_client_res_local(&res, SMTPC_PERMFAIL, "5.6.7", "MAIL",
		    "8-bit message, but %s does not offer 8BITMIME", s->host);
		local = true;
	} else if (msg->smtputf8 && !s->caps.smtputf8) {
		smtp_client_res_local(&res, SMTPC_PERMFAIL, "5.6.7", "MAIL",
		    "SMTPUTF8 is required, but %s does not offer it", s->host);
		local = true;
	}
	if (local) {
		smtp_client_decide_open(s, &res, false);
		smtp_client_set_overall(s, &res);
	} else {
		for (i = 0; i < msg->nrcpts; i++) {
			if (msg->rcpts[i] != NULL &&
			    smtp_client_is_path_ok(msg->rcpts[i],
			    msg->smtputf8) && msg->rcpts[i][0] != '\0') {
				open++;
				continue;
			}
			smtp_client_res_local(&s->rres[i], SMTPC_PERMFAIL,
			    "5.1.3", "RCPT", "bad recipient address");
			s->rstate[i] = SMTPC_R_DONE;
		}
	}
	if (local || open == 0) {
		s->defer_what = SMTPC_D_FINISH;
		event_active(s->defer_ev, EV_TIMEOUT, 0);
		return (0);
	}
	smtp_client_enter(s, SMTPC_S_ENVELOPE);
	return (0);
}

int
smtp_client_reset(struct smtp_client *s)
{
	if (s->state != SMTPC_S_READY || s->in_txn)
		return (-1);
	smtp_client_enter(s, SMTPC_S_RSET);
	return (0);
}

void
smtp_client_quit(struct smtp_client *s)
{
	if (s->state == SMTPC_S_CLOSED || s->state == SMTPC_S_QUIT)
		return;
	if (s->state == SMTPC_S_READY && !s->in_txn) {
		smtp_client_enter(s, SMTPC_S_QUIT);
		return;
	}
	/* Not idle: drop the connection now and report from the loop. */
	smtp_client_close_conn(s);
	smtp_client_res_local(&s->defer_res, SMTPC_TEMPFAIL, "4.4.2",
	    s->in_txn ? "DATA" : smtp_client_state_names[s->state],
	    "connection to %s closed locally", s->peer);
	s->defer_what = SMTPC_D_ABORT;
	event_active(s->defer_ev, EV_TIMEOUT, 0);
}

void
smtp_client_free(struct smtp_client *s)
{
	if (s == NULL)
		return;
	memset(&s->cbs, 0, sizeof(s->cbs));
	smtp_client_close_conn(s);
	s->freed = true;
	if (s->busy == 0)
		smtp_client_destroy(s);
}

bool
smtp_client_is_tls(const struct smtp_client *s)
{
	return (s->tls_active);
}

const char *
smtp_client_tls_version(const struct smtp_client *s)
{
	return (s->tls_active ? s->tls_version : "none");
}

bool
smtp_client_tls_verified(const struct smtp_client *s)
{
	return (s->tls_active && s->tls_verified);
}

const struct smtp_ehlo_caps *
smtp_client_caps(const struct smtp_client *s)
{
	return (&s->caps);
}

const char *
smtp_client_peer(const struct smtp_client *s)
{
	return (s->peer);
}
