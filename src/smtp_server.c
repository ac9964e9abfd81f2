/*
 * smtp_server.c: the inbound ESMTP session of SPEC section 3.
 *
 * One session per accepted socket, driven by libevent bufferevents (plain,
 * or OpenSSL for implicit TLS and after STARTTLS).  The session is an
 * explicit state machine: smtp_server_enter() is the only place the state
 * changes, and commands are dispatched from one table whose allowed-state
 * masks replace scattered ifs (STYLE 2.4).
 *
 * Invariants:
 * - Only CRLF ends a line.  A bare CR or LF in a command closes the
 *   session; in DATA the framer (smtp_data.c) keeps reading to the real
 *   CRLF.CRLF and we answer once, queue nothing, and close (IN-01..IN-08).
 * - Replies go out in command order: while an asynchronous step runs (a
 *   password check on a worker thread, a spool commit on the sync thread)
 *   no further input is processed, so a pipelined group is answered in
 *   order with nothing lost or reordered.
 * - 250 after the final dot is sent only from the spool's commit
 *   callback, i.e. after the group commit made the message durable.
 * - Asynchronous completions carry the session id, never a pointer: the
 *   session may have gone, and then the result is still applied to the
 *   queue (a committed message is indexed whether or not its client stayed).
 * - Every buffer is bounded: lines by SMTP_*_MAX, the header section by
 *   SMTP_HEADER_MAX, unread input by the read watermark, unsent replies by
 *   SMTP_OUTPUT_HIWAT (above it we stop reading the client).
 *
 * Ownership: the module owns its sessions (by id in smtp_server_sessions);
 * a session owns its socket, bufferevent, timers and open transaction, and
 * holds references on the configuration snapshot and listener settings it
 * was accepted under.  Sessions are freed late, from the event loop, never
 * inside a helper that returns into a read loop (STYLE 3.3).
 */
#include "compat.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth.h"
#include "conf.h"
#include "listener.h"
#include "log.h"
#include "postern.h"
#include "queue.h"
#include "rtconf.h"
#include "smtp_data.h"
#include "smtp_parse.h"
#include "smtp_server.h"
#include "spfcheck.h"
#include "spool.h"
#include "stats.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

enum smtp_server_state {
	SMTPS_S_INIT,		/* greeted, waiting for EHLO/HELO */
	SMTPS_S_HELO,		/* EHLO done, no transaction */
	SMTPS_S_MAIL,		/* MAIL accepted */
	SMTPS_S_RCPT,		/* at least one RCPT accepted */
	SMTPS_S_DATA,		/* reading the message */
	SMTPS_S_COMMIT,		/* waiting for the spool to make it durable */
	SMTPS_S_AUTH_PLAIN,	/* waiting for the PLAIN response line */
	SMTPS_S_AUTH_USER,	/* LOGIN: waiting for the user name */
	SMTPS_S_AUTH_PASS,	/* LOGIN: waiting for the password */
	SMTPS_S_AUTH_CHECK,	/* password check on a worker thread */
	SMTPS_S_SPF_CHECK,	/* SPF check of the client on a worker thread */
	SMTPS_S_STARTTLS,	/* 220 queued, waiting for it to flush */
	SMTPS_S_HANDSHAKE,	/* TLS handshake in progress */
	SMTPS_S_CLOSING,	/* last reply queued; free once flushed */
	SMTPS_S_COUNT
};

static const char *smtp_server_state_names[] = {
	[SMTPS_S_INIT] = "INIT",
	[SMTPS_S_HELO] = "HELO",
	[SMTPS_S_MAIL] = "MAIL",
	[SMTPS_S_RCPT] = "RCPT",
	[SMTPS_S_DATA] = "DATA",
	[SMTPS_S_COMMIT] = "COMMIT",
	[SMTPS_S_AUTH_PLAIN] = "AUTH_PLAIN",
	[SMTPS_S_AUTH_USER] = "AUTH_USER",
	[SMTPS_S_AUTH_PASS] = "AUTH_PASS",
	[SMTPS_S_AUTH_CHECK] = "AUTH_CHECK",
	[SMTPS_S_SPF_CHECK] = "SPF_CHECK",
	[SMTPS_S_STARTTLS] = "STARTTLS",
	[SMTPS_S_HANDSHAKE] = "HANDSHAKE",
	[SMTPS_S_CLOSING] = "CLOSING",
};
_Static_assert(nitems(smtp_server_state_names) == SMTPS_S_COUNT,
    "smtp_server_state_names out of step with enum smtp_server_state");

#define SMTPS_M(s)	(1u << (s))
#define SMTPS_CMD_STATES	(SMTPS_M(SMTPS_S_INIT) | SMTPS_M(SMTPS_S_HELO) | \
			    SMTPS_M(SMTPS_S_MAIL) | SMTPS_M(SMTPS_S_RCPT))
#define SMTPS_SASL_STATES	(SMTPS_M(SMTPS_S_AUTH_PLAIN) | \
			    SMTPS_M(SMTPS_S_AUTH_USER) | SMTPS_M(SMTPS_S_AUTH_PASS))

/* Junk commands (NOOP, RSET, VRFY, HELP) tolerated per session (IN-61). */
#define SMTPS_MAX_JUNK		100
/* Seconds a closing session may take to drain its last reply. */
#define SMTPS_CLOSE_LINGER	10
/* Read watermark: a little more than the longest line we wait for. */
#define SMTPS_READ_HIWAT	(SMTP_LINE_HARD_MAX + 4096)

struct smtp_txn {
	qid_t			 id;
	char			 idstr[QUEUE_ID_LEN + 1];
	char			*sender;		/* owned */
	char			**rcpts;		/* owned */
	size_t			 nrcpts;
	size_t			 rcptcap;
	/* Open-addressing set of rcpts indexes + 1 (0: empty), for the
	 * duplicate check (IN-28) in constant time: max_recipients may be
	 * 100000, and a linear scan made a transaction quadratic. */
	uint32_t		*rset;			/* owned */
	size_t			 rsetcap;		/* power of 2 */
	bool			 smtputf8;
	bool			 eightbit;
	struct spool_writer	*writer;		/* owned */
	struct smtp_data	 data;
	struct evbuffer		*hdr;			/* owned */
	bool			 hdr_done;
	bool			 had_empty_line;
	char			 reject[384];		/* reply after the dot */
	int64_t			 queued_at;
};

struct smtp_session {
	uint64_t		 id;
	int			 fd;		/* owned unless bev_owns_fd */
	struct bufferevent	*bev;		/* owned */
	bool			 bev_owns_fd;
	struct event		*timer;		/* owned: command/data deadline */
	struct event		*delay;		/* owned: delayed AUTH failure */
	struct event		*flush;		/* owned: replies to write */
	bool			 direct;	/* plaintext: replies written by
					 * smtp_server_flush_cb, EV_WRITE
					 * only while the socket is full */
	struct rtconf		*rt;		/* reference */
	struct listener_cfg	*lcfg;		/* reference */
	enum smtp_server_state	 state;
	bool			 free_scheduled;
	bool			 output_blocked;

	char			 addr[INET6_ADDRSTRLEN];
	struct sockaddr_storage	 ss;
	uint64_t		 ipkey;
	char			 helo[SMTP_DOMAIN_MAX + 1];
	bool			 esmtp;
	bool			 tls;
	char			 tls_desc[160];

	bool			 authenticated;
	char			 user[256];
	char			 login_user[256];
	int			 auth_failures;
	char			 auth_mech[16];

	bool			 spf_checked;	/* relay_spf_domain evaluated */
	bool			 spf_pass;
	char			*spf_mail;	/* owned: MAIL args to resume */

	int			 errors;
	int			 junk;
	int			 messages;
	struct smtp_txn		*txn;		/* owned */

	unsigned int		 ncmd_ok[SMTP_VERB_COUNT];
	unsigned int		 ncmd[SMTP_VERB_COUNT];
};

/* A password check in flight: owned by the worker job, then by done(). */
struct smtp_server_auth_job {
	uint64_t		 session_id;
	struct auth_check	*check;		/* owned */
	char			 user[256];
};

/* A commit in flight: owned by the spool until its callback runs. */
struct smtp_server_commit {
	uint64_t		 session_id;
	qid_t			 id;
	char			*sender;	/* owned */
	uint32_t		 nrcpts;
	uint64_t		 size;
	int64_t			 queued_at;
};

static struct smtp_server_env	 smtp_server_env;
static struct util_map		 smtp_server_sessions;	/* id -> session */
static struct util_map		 smtp_server_per_ip;	/* ipkey -> count */
static uint64_t			 smtp_server_next_id = 1;
static bool			 smtp_server_stopping;

struct smtp_server_cmd {
	enum smtp_verb	 verb;
	unsigned int	 states;	/* where the verb is allowed */
	const char	*bad_state;	/* the reply elsewhere */
	bool		 sync;		/* must be last in a pipelined group */
	bool		 junk;
	void		(*handler)(struct smtp_session *,
			    const struct smtp_cmd *);
};

static void	smtp_server_process(struct smtp_session *);
static void	smtp_server_close(struct smtp_session *);
static void	smtp_server_writecb(struct bufferevent *, void *);
static void	smtp_server_enter(struct smtp_session *,
		    enum smtp_server_state);

/*
 * Queue one reply line (CRLF added).  On a plaintext connection the flush
 * event runs once the current callback is done, so the replies to a
 * pipelined group leave in one write.
 */
static void
smtp_server_reply(struct smtp_session *s, const char *fmt, ...)
{
	struct evbuffer	*out = bufferevent_get_output(s->bev);
	va_list		 ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
	if (s->direct)
		event_active(s->flush, 0, 0);
}

/*
 * Plaintext replies are written here, straight to the socket, rather than
 * by enabling the bufferevent's write event for each reply: that cost two
 * epoll_ctl calls and a loop pass per reply, about seven a message.  Only
 * when the socket does not take everything is EV_WRITE enabled, until the
 * write callback finds the buffer empty.  What the write callback does
 * when the output is drained (close, start TLS, resume reading) is done
 * here too.
 */
static void
smtp_server_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session	*s = arg;
	struct evbuffer		*out;

	(void)fd;
	(void)what;
	if (!s->direct || s->bev == NULL || s->free_scheduled)
		return;
	out = bufferevent_get_output(s->bev);
	if (evbuffer_get_length(out) == 0)
		return;
	/*
	 * A socket bufferevent keeps its output's start frozen except while
	 * it writes; do as it does.  An error (EPIPE, ECONNRESET) is left to
	 * the bufferevent, which meets it again and reports it to the event
	 * callback.
	 */
	evbuffer_unfreeze(out, 1);
	(void)evbuffer_write(out, s->fd);
	evbuffer_freeze(out, 1);
	if (evbuffer_get_length(out) > 0) {
		bufferevent_enable(s->bev, EV_WRITE);
		return;
	}
	smtp_server_writecb(s->bev, s);
}

/* Count a failed command; too many of them end the session (IN-27). */
static bool
smtp_server_error(struct smtp_session *s)
{
	if (++s->errors < SMTP_MAX_ERRORS)
		return (false);
	smtp_server_reply(s, "421 4.7.0 %s Error: too many errors",
	    s->rt->conf->hostname);
	log_info("too many errors from unknown[%s]", s->addr);
	smtp_server_close(s);
	return (true);
}

static const char *
smtp_server_hostname(const struct smtp_session *s)
{
	return (s->rt->conf->hostname);
}

static void
smtp_server_arm_timer(struct smtp_session *s, int seconds)
{
	struct timeval	tv = { seconds, 0 };

	evtimer_add(s->timer, &tv);
}

/* The per-IP key: the IPv4 address, or the /64 of an IPv6 address. */
static uint64_t
smtp_server_ipkey(const struct sockaddr_storage *ss)
{
	uint64_t	k = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;

		k = (1ULL << 62) | ntohl(sin->sin_addr.s_addr);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)ss;

		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			uint32_t v4;

			memcpy(&v4, &sin6->sin6_addr.s6_addr[12], 4);
			k = (1ULL << 62) | ntohl(v4);
		} else {
			memcpy(&k, sin6->sin6_addr.s6_addr, 8);
			k |= 1ULL << 63;
		}
	}
	return (k == 0 ? 1 : k);
}

static void
smtp_server_per_ip_add(uint64_t key, int delta)
{
	uintptr_t	n = (uintptr_t)util_map_get(&smtp_server_per_ip, key);

	n = (uintptr_t)((intptr_t)n + delta);
	if (n == 0)
		util_map_del(&smtp_server_per_ip, key);
	else
		util_map_put(&smtp_server_per_ip, key, (void *)n);
}

static void
smtp_server_txn_free(struct smtp_txn *t, struct queue *q)
{
	size_t	i;

	if (t == NULL)
		return;
	if (t->writer != NULL)
		spool_writer_abort(t->writer);
	if (t->id != 0 && q != NULL)
		queue_release_id(q, t->id);
	for (i = 0; i < t->nrcpts; i++)
		free(t->rcpts[i]);
	free(t->rcpts);
	free(t->rset);
	free(t->sender);
	if (t->hdr != NULL)
		evbuffer_free(t->hdr);
	free(t);
}

static void
smtp_server_txn_reset(struct smtp_session *s)
{
	smtp_server_txn_free(s->txn, smtp_server_env.queue);
	s->txn = NULL;
}

static void
smtp_server_log_disconnect(struct smtp_session *s)
{
	char		 line[512], name[16];
	size_t		 len = 0;
	unsigned int	 total = 0;
	int		 v;

	line[0] = '\0';
	for (v = 1; v < SMTP_VERB_COUNT; v++) {
		if (s->ncmd[v] == 0)
			continue;
		total += s->ncmd[v];
		strlcpy(name, smtp_parse_verb_name(v), sizeof(name));
		util_lowercase(name);
		if (s->ncmd_ok[v] == s->ncmd[v])
			len += (size_t)snprintf(line + len, sizeof(line) - len,
			    " %s=%u", name, s->ncmd[v]);
		else
			len += (size_t)snprintf(line + len, sizeof(line) - len,
			    " %s=%u/%u", name, s->ncmd_ok[v], s->ncmd[v]);
		if (len >= sizeof(line))
			break;
	}
	if (s->ncmd[SMTP_VERB_UNKNOWN] > 0)
		total += s->ncmd[SMTP_VERB_UNKNOWN];
	log_info("disconnect from unknown[%s]%s commands=%u", s->addr, line,
	    total);
}

static void
smtp_server_free(struct smtp_session *s)
{
	util_map_del(&smtp_server_sessions, s->id);
	smtp_server_per_ip_add(s->ipkey, -1);
	stats.connections_in_current--;
	if (s->txn != NULL && s->state == SMTPS_S_DATA)
		log_info("%s: lost connection after DATA from unknown[%s]",
		    s->txn->idstr, s->addr);
	smtp_server_txn_reset(s);
	smtp_server_log_disconnect(s);
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->delay != NULL)
		event_free(s->delay);
	if (s->flush != NULL)
		event_free(s->flush);
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	if (!s->bev_owns_fd && s->fd != -1)
		close(s->fd);
	rtconf_unref(s->rt);
	listener_cfg_unref(s->lcfg);
	free(s->spf_mail);
	free(s);
}

static void
smtp_server_free_cb(evutil_socket_t fd, short ev, void *arg)
{
	uint64_t		 id = (uint64_t)(uintptr_t)arg;
	struct smtp_session	*s;

	if ((s = util_map_get(&smtp_server_sessions, id)) != NULL)
		smtp_server_free(s);
}

/* Free from the loop, after the current callback chain has returned. */
static void
smtp_server_free_later(struct smtp_session *s)
{
	if (s->free_scheduled)
		return;
	s->free_scheduled = true;
	if (s->bev != NULL)
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	event_base_once(smtp_server_env.base, -1, EV_TIMEOUT,
	    smtp_server_free_cb, (void *)(uintptr_t)s->id, NULL);
}

/* Stop reading, flush what is queued, then free. */
static void
smtp_server_close(struct smtp_session *s)
{
	if (s->state == SMTPS_S_CLOSING)
		return;
	smtp_server_enter(s, SMTPS_S_CLOSING);
}

static void
smtp_server_enter(struct smtp_session *s, enum smtp_server_state st)
{
	log_debug("smtp session %llu: %s -> %s", (unsigned long long)s->id,
	    smtp_server_state_names[s->state], smtp_server_state_names[st]);
	s->state = st;

	switch (st) {
	case SMTPS_S_CLOSING:
		bufferevent_disable(s->bev, EV_READ);
		smtp_server_arm_timer(s, SMTPS_CLOSE_LINGER);
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
			smtp_server_free_later(s);
		else
			bufferevent_enable(s->bev, EV_WRITE);
		break;
	case SMTPS_S_DATA:
		smtp_server_arm_timer(s, s->rt->conf->limits.data_timeout);
		break;
	case SMTPS_S_STARTTLS:
		/*
		 * CVE-2011-0411: whatever the client pipelined after
		 * STARTTLS is plaintext injection; drop it and stop reading
		 * until the handshake owns the socket.
		 */
		evbuffer_drain(bufferevent_get_input(s->bev),
		    evbuffer_get_length(bufferevent_get_input(s->bev)));
		bufferevent_disable(s->bev, EV_READ);
		break;
	case SMTPS_S_HANDSHAKE:
		smtp_server_arm_timer(s, s->rt->conf->limits.command_timeout);
		break;
	default:
		break;
	}
}

/* The Received: header (RFC 5321 4.4), with the TLS comment Postfix adds. */
static void
smtp_server_received(struct smtp_session *s, struct evbuffer *out)
{
	struct smtp_txn	*t = s->txn;
	const char	*with;
	char		 date[64];

	if (t->smtputf8)
		with = s->tls ? (s->authenticated ? "UTF8SMTPSA" : "UTF8SMTPS")
		    : (s->authenticated ? "UTF8SMTPA" : "UTF8SMTP");
	else if (s->esmtp)
		with = s->tls ? (s->authenticated ? "ESMTPSA" : "ESMTPS")
		    : (s->authenticated ? "ESMTPA" : "ESMTP");
	else
		with = "SMTP";
	util_rfc5322_date(date, sizeof(date), t->queued_at);
	evbuffer_add_printf(out, "Received: from %s (unknown [%s])\r\n",
	    s->helo, s->addr);
	if (s->tls)
		evbuffer_add_printf(out, "\t(%s)\r\n", s->tls_desc);
	evbuffer_add_printf(out, "\tby %s (postern) with %s id %s",
	    smtp_server_hostname(s), with, t->idstr);
	if (t->nrcpts == 1)
		evbuffer_add_printf(out, "\r\n\tfor <%s>", t->rcpts[0]);
	evbuffer_add_printf(out, "; %s\r\n", date);
}

/*
 * The end of the header section: check it (one From:, hop count, sender
 * ownership) and write Received:, the client's fields, and the Date: and
 * Message-ID: it lacks, to the spool.
 */
static void
smtp_server_flush_headers(struct smtp_session *s)
{
	struct smtp_txn			*t = s->txn;
	struct smtp_data_hdrinfo	 hi;
	struct evbuffer			*out;
	size_t				 len;
	char				*hdr;

	t->hdr_done = true;
	len = evbuffer_get_length(t->hdr);
	hdr = (char *)evbuffer_pullup(t->hdr, -1);
	if (len >= 2 && hdr != NULL && memcmp(hdr + len - 2, "\r\n", 2) == 0 &&
	    (len == 2 || (len >= 4 && memcmp(hdr + len - 4, "\r\n\r\n", 4) ==
	    0))) {
		t->had_empty_line = true;
		len -= 2;
	}

	memset(&hi, 0, sizeof(hi));
	if (smtp_data_scan_headers(hdr != NULL ? hdr : "", len, &hi) == -1 ||
	    hi.nfrom != 1) {
		snprintf(t->reject, sizeof(t->reject), "550 5.6.0 Error: a "
		    "message must have exactly one From: header field");
		return;
	}
	if (hi.nreceived > SMTP_MAX_HOPS) {
		snprintf(t->reject, sizeof(t->reject), "554 5.4.6 Error: too "
		    "many hops (mail forwarding loop)");
		return;
	}
	if (s->authenticated && s->rt->users != NULL &&
	    auth_db_user_is_restricted(s->rt->users, s->user) &&
	    (hi.from_domain[0] == '\0' || !hi.from_all_same_domain ||
	    !auth_db_user_may_send_from(s->rt->users, s->user,
	    hi.from_domain))) {
		snprintf(t->reject, sizeof(t->reject), "550 5.7.1 Error: "
		    "From: header address not owned by user %s", s->user);
		return;
	}

	out = evbuffer_new();
	smtp_server_received(s, out);
	evbuffer_add(out, hdr != NULL ? hdr : "", len);
	if (!hi.has_date) {
		char	date[64];

		util_rfc5322_date(date, sizeof(date), t->queued_at);
		evbuffer_add_printf(out, "Date: %s\r\n", date);
	}
	if (!hi.has_message_id) {
		char	rnd[8];
		char	hex[17];
		int	i;

		util_random(rnd, sizeof(rnd));
		for (i = 0; i < 8; i++)
			snprintf(hex + 2 * i, 3, "%02x", (unsigned char)rnd[i]);
		evbuffer_add_printf(out, "Message-ID: <%lld.%s.%s@%s>\r\n",
		    (long long)t->queued_at, t->idstr, hex,
		    smtp_server_hostname(s));
	}
	if (t->had_empty_line)
		evbuffer_add(out, "\r\n", 2);
	{
		size_t	 olen = evbuffer_get_length(out);
		char	*p = (char *)evbuffer_pullup(out, -1);

		spool_writer_write(t->writer, p, olen);
	}
	evbuffer_free(out);
	evbuffer_free(t->hdr);
	t->hdr = NULL;
}

/* smtp_data emit callback: header bytes are held, body bytes streamed. */
static void
smtp_server_data_emit(void *arg, const char *buf, size_t len, bool in_header)
{
	struct smtp_session	*s = arg;
	struct smtp_txn		*t = s->txn;

	if (t->reject[0] != '\0')
		return;
	if (in_header && !t->hdr_done) {
		evbuffer_add(t->hdr, buf, len);
		return;
	}
	if (!t->hdr_done) {
		smtp_server_flush_headers(s);
		if (t->reject[0] != '\0')
			return;
	}
	spool_writer_write(t->writer, buf, len);
}

static void
smtp_server_committed(uint64_t cookie, int error, void *arg)
{
	struct smtp_server_commit	*c = arg;
	struct smtp_session		*s;
	char				 idstr[QUEUE_ID_LEN + 1];

	util_qid_format(idstr, c->id);
	s = util_map_get(&smtp_server_sessions, c->session_id);
	if (error == 0) {
		queue_add(smtp_server_env.queue, c->id, c->sender, c->size,
		    c->queued_at, c->nrcpts, 0, c->queued_at, NULL, false);
		stats.messages_received++;
		log_info("%s: from=<%s>, size=%llu, nrcpt=%u (queue active)",
		    idstr, c->sender, (unsigned long long)c->size, c->nrcpts);
		if (smtp_server_env.queued_cb != NULL)
			smtp_server_env.queued_cb(c->id,
			    smtp_server_env.queued_arg);
	} else {
		queue_release_id(smtp_server_env.queue, c->id);
		errno = error;
		log_warn("%s: queue file commit failed", idstr);
	}
	if (s != NULL && s->state == SMTPS_S_COMMIT) {
		/* The writer was consumed by the commit. */
		s->txn->writer = NULL;
		s->txn->id = 0;
		smtp_server_txn_reset(s);
		if (error == 0) {
			smtp_server_reply(s, "250 2.0.0 Ok: queued as %s",
			    idstr);
			s->ncmd_ok[SMTP_VERB_DATA]++;
			s->messages++;
			s->junk = 0;
		} else
			smtp_server_reply(s, "451 4.3.0 Error: queue file "
			    "write error");
		smtp_server_enter(s, SMTPS_S_HELO);
		smtp_server_arm_timer(s, s->rt->conf->limits.command_timeout);
		smtp_server_process(s);
	}
	free(c->sender);
	free(c);
}

/* The final dot: answer an error, or hand the message to the spool. */
static void
smtp_server_data_done(struct smtp_session *s)
{
	struct smtp_txn			*t = s->txn;
	struct smtp_server_commit	*c;
	enum smtp_data_error		 err = smtp_data_error(&t->data);

	smtp_server_arm_timer(s, s->rt->conf->limits.command_timeout);
	if (err == SMTP_DATA_OK && !t->hdr_done)
		smtp_server_flush_headers(s);
	if (err != SMTP_DATA_OK) {
		log_info("%s: reject: DATA from unknown[%s]: %s", t->idstr,
		    s->addr, smtp_data_error_reply(err));
		smtp_server_reply(s, "%s", smtp_data_error_reply(err));
		smtp_server_txn_reset(s);
		if (err == SMTP_DATA_BARE_LF || err == SMTP_DATA_BARE_CR) {
			stats.rejected_smuggling++;
			smtp_server_close(s);
			return;
		}
		smtp_server_enter(s, SMTPS_S_HELO);
		smtp_server_error(s);
		return;
	}
	if (t->reject[0] != '\0') {
		log_info("%s: reject: DATA from unknown[%s]: %s", t->idstr,
		    s->addr, t->reject);
		smtp_server_reply(s, "%s", t->reject);
		smtp_server_txn_reset(s);
		smtp_server_enter(s, SMTPS_S_HELO);
		smtp_server_error(s);
		return;
	}

	c = xcalloc(1, sizeof(*c));
	c->session_id = s->id;
	c->id = t->id;
	c->sender = xstrdup(t->sender);
	c->nrcpts = (uint32_t)t->nrcpts;
	c->size = spool_writer_size(t->writer);
	c->queued_at = t->queued_at;
	smtp_server_enter(s, SMTPS_S_COMMIT);
	if (spool_writer_commit(t->writer, smtp_server_committed, s->id, c)
	    == -1) {
		/* The writer is consumed either way. */
		t->writer = NULL;
		free(c->sender);
		free(c);
		log_warnx("%s: cannot commit queue file", t->idstr);
		smtp_server_reply(s, "451 4.3.0 Error: queue file write error");
		smtp_server_txn_reset(s);
		smtp_server_enter(s, SMTPS_S_HELO);
	}
}

/* Feed buffered input to the DATA framer. Returns false to stop. */
static bool
smtp_server_read_data(struct smtp_session *s)
{
	struct evbuffer		*in = bufferevent_get_input(s->bev);
	struct evbuffer_iovec	 v;
	size_t			 n;

	while (evbuffer_get_length(in) > 0) {
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		n = smtp_data_feed(&s->txn->data, v.iov_base, v.iov_len,
		    smtp_server_data_emit, s);
		evbuffer_drain(in, n);
		if (smtp_data_is_done(&s->txn->data)) {
			smtp_server_data_done(s);
			return (true);
		}
	}
	return (false);
}

/* True when more input already waits: a pipelining violation here. */
static bool
smtp_server_out_of_sync(struct smtp_session *s)
{
	if (evbuffer_get_length(bufferevent_get_input(s->bev)) == 0)
		return (false);
	log_info("improper command pipelining after %s from unknown[%s]",
	    s->state == SMTPS_S_INIT ? "CONNECT" : "command", s->addr);
	smtp_server_reply(s, "554 5.5.0 Error: SMTP protocol synchronization");
	smtp_server_close(s);
	return (true);
}

static void
smtp_server_cmd_helo(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	struct conf	*c = s->rt->conf;
	const char	*reply;
	bool		 ehlo = cmd->verb == SMTP_VERB_EHLO;
	bool		 starttls, auth;

	if (smtp_parse_helo(cmd->args, cmd->argslen, s->helo, sizeof(s->helo),
	    &reply) == -1) {
		smtp_server_reply(s, "%s", reply);
		smtp_server_error(s);
		return;
	}
	smtp_server_txn_reset(s);
	s->esmtp = ehlo;
	s->ncmd_ok[cmd->verb]++;
	smtp_server_enter(s, SMTPS_S_HELO);
	if (!ehlo) {
		smtp_server_reply(s, "250 %s", c->hostname);
		return;
	}
	starttls = s->lcfg->tls == CONF_IN_TLS_STARTTLS && !s->tls &&
	    s->rt->server_tls != NULL;
	auth = s->lcfg->auth != CONF_AUTH_NONE && (s->tls || s->lcfg->loopback);
	smtp_server_reply(s, "250-%s", c->hostname);
	smtp_server_reply(s, "250-PIPELINING");
	smtp_server_reply(s, "250-SIZE %llu",
	    (unsigned long long)c->limits.max_message_size);
	smtp_server_reply(s, "250-8BITMIME");
	if (starttls)
		smtp_server_reply(s, "250-STARTTLS");
	if (auth)
		smtp_server_reply(s, "250-AUTH PLAIN LOGIN");
	smtp_server_reply(s, "250-ENHANCEDSTATUSCODES");
	smtp_server_reply(s, "250 SMTPUTF8");
}

/* May this session relay?  SPEC section 3 "Who may relay". */
static bool
smtp_server_may_relay(struct smtp_session *s)
{
	if (s->authenticated)
		return (true);
	if (s->lcfg->auth == CONF_AUTH_REQUIRED)
		return (false);
	if (conf_cidr_match(s->rt->conf->relay_networks,
	    s->rt->conf->nrelay_networks, (struct sockaddr *)&s->ss))
		return (true);
	return (s->spf_checked && s->spf_pass);
}

/* An SPF check in flight: owned by the worker job, then by done(). */
struct smtp_server_spf_job {
	uint64_t		 session_id;
	struct sockaddr_storage	 ss;
	char			 domain[SMTP_DOMAIN_MAX + 1];
	enum spfcheck_result	 res;
	char			 explain[256];
};

static void
smtp_server_spf_work(void *arg)
{
	struct smtp_server_spf_job	*j = arg;

	j->res = spfcheck_run(smtp_server_env.spf, (struct sockaddr *)&j->ss,
	    j->domain, j->explain, sizeof(j->explain));
}

static void	smtp_server_cmd_mail(struct smtp_session *,
		    const struct smtp_cmd *);

static void
smtp_server_spf_done(void *arg)
{
	struct smtp_server_spf_job	*j = arg;
	struct smtp_session		*s;
	struct smtp_cmd			 cmd;
	char				 esc[512];

	s = util_map_get(&smtp_server_sessions, j->session_id);
	if (s != NULL && s->state == SMTPS_S_SPF_CHECK) {
		s->spf_checked = true;
		s->spf_pass = j->res == SPFCHECK_PASS;
		util_escape(esc, sizeof(esc), j->explain, strlen(j->explain));
		log_info("unknown[%s]: SPF %s for relay_spf_domain %s%s%s",
		    s->addr, spfcheck_result_name(j->res), j->domain,
		    esc[0] != '\0' ? ": " : "", esc);
		smtp_server_enter(s, SMTPS_S_HELO);
		/* Resume the MAIL command that waited for the verdict. */
		memset(&cmd, 0, sizeof(cmd));
		cmd.verb = SMTP_VERB_MAIL;
		cmd.args = s->spf_mail != NULL ? s->spf_mail : "";
		cmd.argslen = strlen(cmd.args);
		smtp_server_cmd_mail(s, &cmd);
		free(s->spf_mail);
		s->spf_mail = NULL;
		smtp_server_process(s);
	}
	free(j);
}

/*
 * Not otherwise allowed to relay: ask SPF (off the loop, libspf2 blocks)
 * whether the client is one of relay_spf_domain's senders.  Returns true
 * when the check was started and the MAIL command must wait for it.
 */
static bool
smtp_server_spf_start(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	const char			*domain = s->rt->conf->relay_spf_domain;
	struct smtp_server_spf_job	*j;
	enum spfcheck_result		 res;

	if (s->spf_checked || s->authenticated || domain == NULL ||
	    domain[0] == '\0' || smtp_server_env.spf == NULL ||
	    s->lcfg->auth == CONF_AUTH_REQUIRED)
		return (false);
	if (spfcheck_cached(smtp_server_env.spf, (struct sockaddr *)&s->ss,
	    domain, &res)) {
		s->spf_checked = true;
		s->spf_pass = res == SPFCHECK_PASS;
		return (false);
	}
	j = xcalloc(1, sizeof(*j));
	j->session_id = s->id;
	j->ss = s->ss;
	strlcpy(j->domain, domain, sizeof(j->domain));
	free(s->spf_mail);
	s->spf_mail = xstrndup(cmd->args, cmd->argslen);
	if (worker_submit(smtp_server_env.workers, smtp_server_spf_work,
	    smtp_server_spf_done, j) == -1) {
		/* No verdict is "not authorized by SPF", never "authorized". */
		free(j);
		free(s->spf_mail);
		s->spf_mail = NULL;
		s->spf_checked = true;
		s->spf_pass = false;
		return (false);
	}
	smtp_server_enter(s, SMTPS_S_SPF_CHECK);
	return (true);
}

static void
smtp_server_cmd_mail(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	struct conf		*c = s->rt->conf;
	struct smtp_mail	 m;
	struct smtp_txn		*t;
	const char		*reply;
	char			 addr[SMTP_PATH_MAX + 2];

	if (s->messages >= SMTP_MAX_MESSAGES_PER_SESSION) {
		smtp_server_reply(s, "452 4.5.3 Error: too many messages in "
		    "one session");
		smtp_server_error(s);
		return;
	}
	if (smtp_parse_mail(cmd->args, cmd->argslen, &m, &reply) == -1) {
		smtp_server_reply(s, "%s", reply);
		smtp_server_error(s);
		return;
	}
	if (!smtp_server_may_relay(s) && smtp_server_spf_start(s, cmd))
		return;
	if (!smtp_server_may_relay(s)) {
		log_info("NOQUEUE: reject: MAIL from unknown[%s]: 530 5.7.0 "
		    "Authentication required", s->addr);
		smtp_server_reply(s, "530 5.7.0 Authentication required");
		smtp_server_error(s);
		return;
	}
	if (m.size > c->limits.max_message_size) {
		smtp_server_reply(s, "552 5.3.4 Error: message size exceeds "
		    "fixed limit");
		smtp_server_error(s);
		return;
	}
	if (smtp_parse_addr_format(&m.from, addr, sizeof(addr)) == -1) {
		smtp_server_reply(s, "501 5.1.7 Bad sender address syntax");
		smtp_server_error(s);
		return;
	}
	if (s->authenticated && s->rt->users != NULL && !m.from.is_null &&
	    (m.from.domain_is_literal ||
	    !auth_db_user_may_send_from(s->rt->users, s->user,
	    m.from.domain))) {
		char	esc[SMTP_PATH_MAX * 4 + 8];

		util_escape(esc, sizeof(esc), addr, strlen(addr));
		log_info("NOQUEUE: reject: MAIL from unknown[%s]: 553 5.7.1 "
		    "<%s>: Sender address rejected: not owned by user %s",
		    s->addr, esc, s->user);
		smtp_server_reply(s, "553 5.7.1 <%s>: Sender address "
		    "rejected: not owned by user %s", addr, s->user);
		smtp_server_error(s);
		return;
	}

	t = xcalloc(1, sizeof(*t));
	t->id = queue_reserve_id(smtp_server_env.queue);
	util_qid_format(t->idstr, t->id);
	t->sender = xstrdup(addr);
	t->smtputf8 = m.smtputf8;
	t->eightbit = m.body == SMTP_BODY_8BITMIME;
	s->txn = t;
	s->ncmd_ok[cmd->verb]++;
	if (s->authenticated)
		log_info("%s: client=unknown[%s], sasl_method=%s, "
		    "sasl_username=%s", t->idstr, s->addr, s->auth_mech,
		    s->user);
	else
		log_info("%s: client=unknown[%s]", t->idstr, s->addr);
	smtp_server_enter(s, SMTPS_S_MAIL);
	smtp_server_reply(s, "250 2.1.0 Ok");
}

/*
 * The recipient set's hash: FNV-1a started from a random per-process value,
 * so that a client cannot prepare addresses that all land in one probe
 * chain and make the set as slow as the scan it replaced.
 */
static uint64_t	smtp_server_rseed;

static uint64_t
smtp_server_rcpt_hash(const char *a)
{
	uint64_t	h = smtp_server_rseed;

	for (; *a != '\0'; a++)
		h = (h ^ (unsigned char)*a) * 0x100000001b3ULL;
	return (h);
}

static void
smtp_server_rset_put(uint32_t *set, size_t cap, const char *addr,
    uint32_t idx1)
{
	size_t	i = (size_t)smtp_server_rcpt_hash(addr) & (cap - 1);

	while (set[i] != 0)
		i = (i + 1) & (cap - 1);
	set[i] = idx1;
}

/* Add rcpts[i] to the set, growing it to keep it at most half full. */
static void
smtp_server_rcpt_add(struct smtp_txn *t, size_t i)
{
	uint32_t	*n;
	size_t		 cap, k;

	if ((t->nrcpts) * 2 > t->rsetcap) {
		cap = t->rsetcap == 0 ? 16 : t->rsetcap * 2;
		n = xcalloc(cap, sizeof(*n));
		for (k = 0; k < t->nrcpts; k++)
			if (k != i)
				smtp_server_rset_put(n, cap, t->rcpts[k],
				    (uint32_t)k + 1);
		free(t->rset);
		t->rset = n;
		t->rsetcap = cap;
	}
	smtp_server_rset_put(t->rset, t->rsetcap, t->rcpts[i],
	    (uint32_t)i + 1);
}

static bool
smtp_server_rcpt_seen(const struct smtp_txn *t, const char *addr)
{
	size_t	i;

	if (t->rsetcap == 0)
		return (false);
	i = (size_t)smtp_server_rcpt_hash(addr) & (t->rsetcap - 1);
	for (; t->rset[i] != 0; i = (i + 1) & (t->rsetcap - 1))
		if (strcmp(t->rcpts[t->rset[i] - 1], addr) == 0)
			return (true);
	return (false);
}

static void
smtp_server_cmd_rcpt(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	struct smtp_txn		*t = s->txn;
	struct smtp_rcpt	 r;
	const char		*reply;
	char			 addr[SMTP_PATH_MAX + 2];

	if (smtp_parse_rcpt(cmd->args, cmd->argslen, t->smtputf8, &r,
	    &reply) == -1) {
		smtp_server_reply(s, "%s", reply);
		smtp_server_error(s);
		return;
	}
	if (r.to.is_postmaster) {
		smtp_server_reply(s, "550 5.1.1 <postmaster>: Recipient "
		    "address rejected: this relay has no local mailboxes");
		smtp_server_error(s);
		return;
	}
	if (r.to.domain_is_literal) {
		/* IN-36: never relay to an address literal (or to self). */
		smtp_server_reply(s, "550 5.7.1 Error: address literals are "
		    "not accepted as recipients");
		smtp_server_error(s);
		return;
	}
	if (smtp_parse_addr_format(&r.to, addr, sizeof(addr)) == -1) {
		smtp_server_reply(s, "501 5.1.3 Bad recipient address syntax");
		smtp_server_error(s);
		return;
	}
	/* IN-28: a duplicate is accepted once and not counted again. */
	if (smtp_server_rcpt_seen(t, addr)) {
		s->ncmd_ok[cmd->verb]++;
		smtp_server_reply(s, "250 2.1.5 Ok");
		return;
	}
	if (t->nrcpts >= (size_t)s->rt->conf->limits.max_recipients) {
		smtp_server_reply(s, "452 4.5.3 Error: too many recipients");
		smtp_server_error(s);
		return;
	}
	if (t->nrcpts == t->rcptcap) {
		t->rcptcap = t->rcptcap == 0 ? 4 : t->rcptcap * 2;
		t->rcpts = xreallocarray(t->rcpts, t->rcptcap,
		    sizeof(*t->rcpts));
	}
	t->rcpts[t->nrcpts++] = xstrdup(addr);
	smtp_server_rcpt_add(t, t->nrcpts - 1);
	s->ncmd_ok[cmd->verb]++;
	smtp_server_enter(s, SMTPS_S_RCPT);
	smtp_server_reply(s, "250 2.1.5 Ok");
}

static void
smtp_server_cmd_data(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	struct smtp_txn		*t = s->txn;
	struct spool_envelope	 env;
	struct spool_rcpt	*rcpts;
	char			 err[256];
	size_t			 i;

	if (cmd->argslen > 0) {
		smtp_server_reply(s, "501 5.5.4 Syntax: DATA");
		smtp_server_error(s);
		return;
	}
	if (smtp_server_out_of_sync(s))
		return;

	t->queued_at = util_wallclock();
	memset(&env, 0, sizeof(env));
	rcpts = xcalloc(t->nrcpts, sizeof(*rcpts));
	for (i = 0; i < t->nrcpts; i++)
		rcpts[i].addr = t->rcpts[i];
	env.id = t->id;
	env.queued_at = t->queued_at;
	env.sender = t->sender;
	env.rcpts = rcpts;
	env.nrcpts = t->nrcpts;
	env.client_addr = s->addr;
	env.client_name = (char *)"unknown";
	env.helo = s->helo;
	env.sasl_user = s->authenticated ? s->user : NULL;
	env.flags = (t->eightbit ? SPOOL_F_8BITMIME : 0) |
	    (t->smtputf8 ? SPOOL_F_SMTPUTF8 : 0);
	t->writer = spool_writer_new(smtp_server_env.spool, &env, err,
	    sizeof(err));
	free(rcpts);
	if (t->writer == NULL) {
		log_warnx("%s: cannot create queue file: %s", t->idstr, err);
		smtp_server_reply(s, "451 4.3.0 Error: queue file write error");
		smtp_server_txn_reset(s);
		smtp_server_enter(s, SMTPS_S_HELO);
		return;
	}
	t->hdr = evbuffer_new();
	smtp_data_init(&t->data, s->rt->conf->limits.max_message_size);
	smtp_server_enter(s, SMTPS_S_DATA);
	smtp_server_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void
smtp_server_cmd_rset(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	smtp_server_txn_reset(s);
	if (s->state != SMTPS_S_INIT)
		smtp_server_enter(s, SMTPS_S_HELO);
	s->ncmd_ok[cmd->verb]++;
	smtp_server_reply(s, "250 2.0.0 Ok");
}

static void
smtp_server_cmd_noop(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	s->ncmd_ok[cmd->verb]++;
	smtp_server_reply(s, "250 2.0.0 Ok");
}

static void
smtp_server_cmd_quit(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	s->ncmd_ok[cmd->verb]++;
	smtp_server_reply(s, "221 2.0.0 Bye");
	smtp_server_close(s);
}

static void
smtp_server_cmd_vrfy(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	s->ncmd_ok[cmd->verb]++;
	smtp_server_reply(s, "252 2.0.0 Cannot VRFY user, but will accept "
	    "message and attempt delivery");
}

static void
smtp_server_cmd_help(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	s->ncmd_ok[cmd->verb]++;
	smtp_server_reply(s, "214-2.0.0 Commands supported:");
	smtp_server_reply(s, "214-2.0.0   HELO EHLO MAIL RCPT DATA RSET NOOP");
	smtp_server_reply(s, "214 2.0.0   QUIT VRFY HELP STARTTLS AUTH");
}

static void
smtp_server_cmd_unknown(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	if (cmd->verb == SMTP_VERB_BDAT || cmd->verb == SMTP_VERB_EXPN)
		smtp_server_reply(s, "502 5.5.1 Error: command not "
		    "implemented");
	else
		smtp_server_reply(s, "500 5.5.2 Error: command not "
		    "recognized");
	smtp_server_error(s);
}

static void
smtp_server_cmd_starttls(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	if (s->lcfg->tls != CONF_IN_TLS_STARTTLS || s->rt->server_tls == NULL) {
		smtp_server_reply(s, "502 5.5.1 Error: command not "
		    "implemented");
		smtp_server_error(s);
		return;
	}
	if (s->tls) {
		smtp_server_reply(s, "554 5.5.1 Error: TLS already active");
		smtp_server_error(s);
		return;
	}
	if (cmd->argslen > 0) {
		smtp_server_reply(s, "501 5.5.4 Syntax: STARTTLS");
		smtp_server_error(s);
		return;
	}
	s->ncmd_ok[cmd->verb]++;
	smtp_server_reply(s, "220 2.0.0 Ready to start TLS");
	smtp_server_enter(s, SMTPS_S_STARTTLS);
}

/* Worker thread: the slow crypt(3). */
static void
smtp_server_auth_work(void *arg)
{
	struct smtp_server_auth_job	*j = arg;

	auth_check_run(j->check);
}

static void
smtp_server_auth_fail_reply(evutil_socket_t fd, short ev, void *arg)
{
	uint64_t		 id = (uint64_t)(uintptr_t)arg;
	struct smtp_session	*s;

	if ((s = util_map_get(&smtp_server_sessions, id)) == NULL ||
	    s->state != SMTPS_S_AUTH_CHECK)
		return;
	smtp_server_reply(s, "535 5.7.8 Error: authentication failed");
	if (s->auth_failures >= s->rt->conf->limits.max_auth_failures) {
		smtp_server_reply(s, "421 4.7.0 %s Error: too many "
		    "authentication failures", smtp_server_hostname(s));
		smtp_server_close(s);
		return;
	}
	smtp_server_enter(s, SMTPS_S_HELO);
	smtp_server_process(s);
}

/* Loop thread: the verdict of a password check. */
static void
smtp_server_auth_done(void *arg)
{
	struct smtp_server_auth_job	*j = arg;
	struct smtp_session		*s;
	bool				 ok = auth_check_ok(j->check);

	s = util_map_get(&smtp_server_sessions, j->session_id);
	if (s != NULL && s->state == SMTPS_S_AUTH_CHECK) {
		if (ok) {
			s->authenticated = true;
			strlcpy(s->user, j->user, sizeof(s->user));
			s->ncmd_ok[SMTP_VERB_AUTH]++;
			stats.auth_success++;
			smtp_server_reply(s, "235 2.7.0 Authentication "
			    "successful");
			smtp_server_enter(s, SMTPS_S_HELO);
			smtp_server_process(s);
		} else {
			struct timeval	tv;
			uint32_t	r;

			s->auth_failures++;
			stats.auth_failure++;
			log_warnx("unknown[%s]: SASL %s authentication failed",
			    s->addr, s->auth_mech);
			/* A random delay blunts guessing (OpenSMTPD). */
			util_random(&r, sizeof(r));
			tv.tv_sec = 0;
			tv.tv_usec = (suseconds_t)(r % 500000);
			evtimer_add(s->delay, &tv);
		}
	}
	auth_check_free(j->check);
	free(j);
}

/* Start the password check for user/pass off the event loop. */
static void
smtp_server_auth_verify(struct smtp_session *s, const char *user,
    const char *pass)
{
	struct smtp_server_auth_job	*j;

	j = xcalloc(1, sizeof(*j));
	j->session_id = s->id;
	strlcpy(j->user, user, sizeof(j->user));
	j->check = auth_check_new(s->rt->users, user, pass);
	smtp_server_enter(s, SMTPS_S_AUTH_CHECK);
	if (worker_submit(smtp_server_env.workers, smtp_server_auth_work,
	    smtp_server_auth_done, j) == -1) {
		auth_check_free(j->check);
		free(j);
		smtp_server_reply(s, "454 4.7.0 Temporary authentication "
		    "failure");
		smtp_server_enter(s, SMTPS_S_HELO);
	}
}

/* Reply to a SASL decoding problem and leave the exchange. */
static void
smtp_server_auth_bad(struct smtp_session *s, enum auth_decode d)
{
	switch (d) {
	case AUTH_DECODE_CANCELLED:
		smtp_server_reply(s, "501 5.7.0 Authentication aborted");
		break;
	case AUTH_DECODE_AUTHZID_MISMATCH:
		s->auth_failures++;
		smtp_server_reply(s, "535 5.7.8 Error: authentication failed");
		break;
	default:
		smtp_server_reply(s, "501 5.5.2 Error: cannot decode "
		    "response");
		break;
	}
	smtp_server_enter(s, SMTPS_S_HELO);
	if (s->auth_failures >= s->rt->conf->limits.max_auth_failures) {
		smtp_server_reply(s, "421 4.7.0 %s Error: too many "
		    "authentication failures", smtp_server_hostname(s));
		smtp_server_close(s);
		return;
	}
	smtp_server_error(s);
}

static void
smtp_server_auth_plain(struct smtp_session *s, const char *resp, size_t len)
{
	char			user[256], pass[1024];
	enum auth_decode	d;

	d = auth_sasl_plain_decode(resp, len, user, sizeof(user), pass,
	    sizeof(pass));
	if (d != AUTH_DECODE_OK) {
		smtp_server_auth_bad(s, d);
		return;
	}
	smtp_server_auth_verify(s, user, pass);
	explicit_bzero(pass, sizeof(pass));
}

static void
smtp_server_cmd_auth(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	char		 mech[32];
	const char	*initial, *reply;
	size_t		 ilen;

	if (s->lcfg->auth == CONF_AUTH_NONE) {
		smtp_server_reply(s, "503 5.5.1 Error: authentication not "
		    "enabled");
		smtp_server_error(s);
		return;
	}
	if (s->authenticated) {
		smtp_server_reply(s, "503 5.5.1 Error: already authenticated");
		smtp_server_error(s);
		return;
	}
	if (!s->tls && !s->lcfg->loopback) {
		/* IN-50: no oracle, nothing decoded, nothing logged. */
		smtp_server_reply(s, "538 5.7.11 Encryption required for "
		    "requested authentication mechanism");
		smtp_server_error(s);
		return;
	}
	if (smtp_parse_auth(cmd->args, cmd->argslen, mech, sizeof(mech),
	    &initial, &ilen, &reply) == -1) {
		smtp_server_reply(s, "%s", reply);
		smtp_server_error(s);
		return;
	}
	if (strcmp(mech, "PLAIN") == 0) {
		strlcpy(s->auth_mech, "PLAIN", sizeof(s->auth_mech));
		if (initial == NULL) {
			smtp_server_enter(s, SMTPS_S_AUTH_PLAIN);
			smtp_server_reply(s, "334 ");
		} else
			smtp_server_auth_plain(s, initial, ilen);
	} else if (strcmp(mech, "LOGIN") == 0) {
		strlcpy(s->auth_mech, "LOGIN", sizeof(s->auth_mech));
		if (initial == NULL) {
			smtp_server_enter(s, SMTPS_S_AUTH_USER);
			smtp_server_reply(s, "334 VXNlcm5hbWU6");
			return;
		}
		if (auth_sasl_login_decode(initial, ilen, s->login_user,
		    sizeof(s->login_user)) != AUTH_DECODE_OK) {
			smtp_server_auth_bad(s, AUTH_DECODE_MALFORMED);
			return;
		}
		smtp_server_enter(s, SMTPS_S_AUTH_PASS);
		smtp_server_reply(s, "334 UGFzc3dvcmQ6");
	} else {
		smtp_server_reply(s, "504 5.5.4 Error: unsupported "
		    "authentication mechanism");
		smtp_server_error(s);
	}
}

/* A line of a SASL exchange (after 334). */
static void
smtp_server_sasl_line(struct smtp_session *s, const char *line, size_t len)
{
	char			pass[1024];
	enum auth_decode	d;

	switch (s->state) {
	case SMTPS_S_AUTH_PLAIN:
		smtp_server_auth_plain(s, line, len);
		break;
	case SMTPS_S_AUTH_USER:
		d = auth_sasl_login_decode(line, len, s->login_user,
		    sizeof(s->login_user));
		if (d != AUTH_DECODE_OK) {
			smtp_server_auth_bad(s, d);
			return;
		}
		smtp_server_enter(s, SMTPS_S_AUTH_PASS);
		smtp_server_reply(s, "334 UGFzc3dvcmQ6");
		break;
	case SMTPS_S_AUTH_PASS:
		d = auth_sasl_login_decode(line, len, pass, sizeof(pass));
		if (d != AUTH_DECODE_OK) {
			smtp_server_auth_bad(s, d);
			return;
		}
		smtp_server_auth_verify(s, s->login_user, pass);
		explicit_bzero(pass, sizeof(pass));
		break;
	default:
		break;
	}
}

static const struct smtp_server_cmd smtp_server_cmds[] = {
	{ SMTP_VERB_HELO, SMTPS_CMD_STATES, NULL, true, false,
	    smtp_server_cmd_helo },
	{ SMTP_VERB_EHLO, SMTPS_CMD_STATES, NULL, true, false,
	    smtp_server_cmd_helo },
	{ SMTP_VERB_MAIL, SMTPS_M(SMTPS_S_HELO),
	    NULL, false, false, smtp_server_cmd_mail },
	{ SMTP_VERB_RCPT, SMTPS_M(SMTPS_S_MAIL) | SMTPS_M(SMTPS_S_RCPT),
	    "503 5.5.1 Error: need MAIL command", false, false,
	    smtp_server_cmd_rcpt },
	{ SMTP_VERB_DATA, SMTPS_M(SMTPS_S_RCPT), NULL, false, false,
	    smtp_server_cmd_data },
	{ SMTP_VERB_RSET, SMTPS_CMD_STATES, NULL, false, true,
	    smtp_server_cmd_rset },
	{ SMTP_VERB_NOOP, SMTPS_CMD_STATES, NULL, false, true,
	    smtp_server_cmd_noop },
	{ SMTP_VERB_QUIT, SMTPS_CMD_STATES, NULL, false, false,
	    smtp_server_cmd_quit },
	{ SMTP_VERB_VRFY, SMTPS_CMD_STATES, NULL, false, true,
	    smtp_server_cmd_vrfy },
	{ SMTP_VERB_HELP, SMTPS_CMD_STATES, NULL, false, true,
	    smtp_server_cmd_help },
	{ SMTP_VERB_STARTTLS, SMTPS_M(SMTPS_S_HELO), NULL, false, false,
	    smtp_server_cmd_starttls },
	{ SMTP_VERB_AUTH, SMTPS_M(SMTPS_S_HELO), NULL, false, false,
	    smtp_server_cmd_auth },
	{ SMTP_VERB_EXPN, SMTPS_CMD_STATES, NULL, false, true,
	    smtp_server_cmd_unknown },
	{ SMTP_VERB_BDAT, SMTPS_CMD_STATES, NULL, false, false,
	    smtp_server_cmd_unknown },
	{ SMTP_VERB_UNKNOWN, SMTPS_CMD_STATES, NULL, false, false,
	    smtp_server_cmd_unknown },
};

/* The reply for a verb arriving in a state that does not allow it. */
static const char *
smtp_server_bad_state(const struct smtp_session *s,
    const struct smtp_server_cmd *c)
{
	if (c->bad_state != NULL)
		return (c->bad_state);
	if (s->state == SMTPS_S_INIT)
		return ("503 5.5.1 Error: send HELO/EHLO first");
	switch (c->verb) {
	case SMTP_VERB_MAIL:
		return ("503 5.5.1 Error: nested MAIL command");
	case SMTP_VERB_DATA:
		return (s->state == SMTPS_S_MAIL ?
		    "503 5.5.1 Error: need RCPT command" :
		    "503 5.5.1 Error: need MAIL command");
	case SMTP_VERB_STARTTLS:
	case SMTP_VERB_AUTH:
		return ("503 5.5.1 Error: not allowed during a mail "
		    "transaction");
	default:
		return ("503 5.5.1 Error: bad sequence of commands");
	}
}

/* One command line, CRLF already removed and checked. */
static void
smtp_server_command(struct smtp_session *s, const char *line, size_t len)
{
	const struct smtp_server_cmd	*c = NULL;
	struct smtp_cmd			 cmd;
	const char			*reply;
	size_t				 i, limit;

	if (smtp_parse_command(line, len, &cmd, &reply) == -1) {
		s->ncmd[SMTP_VERB_UNKNOWN]++;
		smtp_server_reply(s, "%s", reply);
		smtp_server_error(s);
		return;
	}
	s->ncmd[cmd.verb]++;
	switch (cmd.verb) {
	case SMTP_VERB_MAIL:
	case SMTP_VERB_RCPT:
		limit = SMTP_MAIL_LINE_MAX;
		break;
	case SMTP_VERB_AUTH:
		limit = SMTP_AUTH_LINE_MAX;
		break;
	default:
		limit = SMTP_CMD_LINE_MAX;
		break;
	}
	if (len + 2 > limit) {
		smtp_server_reply(s, "500 5.5.2 Error: line too long");
		smtp_server_error(s);
		return;
	}
	for (i = 0; i < nitems(smtp_server_cmds); i++) {
		if (smtp_server_cmds[i].verb == cmd.verb) {
			c = &smtp_server_cmds[i];
			break;
		}
	}
	if (c == NULL)
		c = &smtp_server_cmds[nitems(smtp_server_cmds) - 1];
	if (c->junk && ++s->junk > SMTPS_MAX_JUNK) {
		smtp_server_reply(s, "421 4.7.0 %s Error: too many junk "
		    "commands", smtp_server_hostname(s));
		smtp_server_close(s);
		return;
	}
	if ((c->states & SMTPS_M(s->state)) == 0) {
		smtp_server_reply(s, "%s", smtp_server_bad_state(s, c));
		smtp_server_error(s);
		return;
	}
	c->handler(s, &cmd);
	if (c->sync && s->state != SMTPS_S_CLOSING)
		smtp_server_out_of_sync(s);
}

/*
 * Take one line from the input.  Returns 1 when a line was handled, 0
 * when more input is needed, -1 when the session is closing.
 */
static int
smtp_server_read_line(struct smtp_session *s)
{
	struct evbuffer		*in = bufferevent_get_input(s->bev);
	struct evbuffer_ptr	 p;
	size_t			 avail = evbuffer_get_length(in), len;
	char			*line;

	p = evbuffer_search(in, "\n", 1, NULL);
	if (p.pos == -1) {
		if (avail > SMTP_LINE_HARD_MAX) {
			smtp_server_reply(s, "500 5.5.2 Error: line too long");
			smtp_server_close(s);
			return (-1);
		}
		return (0);
	}
	len = (size_t)p.pos + 1;
	smtp_server_arm_timer(s, s->rt->conf->limits.command_timeout);
	if (len > SMTP_AUTH_LINE_MAX + 2) {
		evbuffer_drain(in, len);
		smtp_server_reply(s, "500 5.5.2 Error: line too long");
		return (smtp_server_error(s) ? -1 : 1);
	}
	line = (char *)evbuffer_pullup(in, (ssize_t)len);
	/* STYLE 2.8: only CRLF ends a line; a bare CR or LF closes. */
	if (len < 2 || line[len - 2] != '\r' ||
	    memchr(line, '\r', len - 2) != NULL) {
		bool bare_lf = len < 2 || line[len - 2] != '\r';

		evbuffer_drain(in, len);
		log_info("reject: bare <%s> received from unknown[%s]",
		    bare_lf ? "LF" : "CR", s->addr);
		stats.rejected_smuggling++;
		smtp_server_reply(s, "500 5.5.2 Error: bare <%s> received",
		    bare_lf ? "LF" : "CR");
		smtp_server_close(s);
		return (-1);
	}
	{
		char	buf[SMTP_AUTH_LINE_MAX + 3];

		memcpy(buf, line, len - 2);
		buf[len - 2] = '\0';
		evbuffer_drain(in, len);
		if (s->state == SMTPS_S_AUTH_PLAIN ||
		    s->state == SMTPS_S_AUTH_USER ||
		    s->state == SMTPS_S_AUTH_PASS)
			smtp_server_sasl_line(s, buf, len - 2);
		else
			smtp_server_command(s, buf, len - 2);
		explicit_bzero(buf, len);
	}
	return (s->state == SMTPS_S_CLOSING ? -1 : 1);
}

/* Work through buffered input for as long as the state allows. */
static void
smtp_server_process(struct smtp_session *s)
{
	struct evbuffer	*out;

	while (s->state != SMTPS_S_CLOSING && !s->free_scheduled) {
		out = bufferevent_get_output(s->bev);
		if (evbuffer_get_length(out) > SMTP_OUTPUT_HIWAT) {
			/* Backpressure: resume from the write callback. */
			s->output_blocked = true;
			bufferevent_disable(s->bev, EV_READ);
			bufferevent_setwatermark(s->bev, EV_WRITE,
			    SMTP_OUTPUT_HIWAT / 2, 0);
			return;
		}
		if (smtp_server_stopping &&
		    (SMTPS_M(s->state) & SMTPS_CMD_STATES) != 0 &&
		    s->state != SMTPS_S_MAIL && s->state != SMTPS_S_RCPT) {
			smtp_server_reply(s, "421 4.3.2 %s Service shutting "
			    "down", smtp_server_hostname(s));
			smtp_server_close(s);
			return;
		}
		if (s->state == SMTPS_S_DATA) {
			if (!smtp_server_read_data(s))
				return;
			continue;
		}
		if ((SMTPS_M(s->state) & (SMTPS_CMD_STATES |
		    SMTPS_SASL_STATES)) == 0)
			return;
		if (smtp_server_read_line(s) <= 0)
			return;
	}
}

static void
smtp_server_readcb(struct bufferevent *bev, void *arg)
{
	smtp_server_process(arg);
}

static void smtp_server_eventcb(struct bufferevent *, short, void *);
static void smtp_server_writecb(struct bufferevent *, void *);

/* The 220 to STARTTLS has left: hand the socket to OpenSSL. */
static void
smtp_server_start_tls(struct smtp_session *s)
{
	SSL	*ssl;

	/* The TLS bufferevent writes for itself. */
	s->direct = false;
	bufferevent_free(s->bev);
	s->bev = NULL;
	if ((ssl = SSL_new(s->rt->server_tls)) == NULL) {
		log_warnx("unknown[%s]: SSL_new failed", s->addr);
		smtp_server_free_later(s);
		return;
	}
	s->bev = bufferevent_openssl_socket_new(smtp_server_env.base, s->fd,
	    ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		SSL_free(ssl);
		smtp_server_free_later(s);
		return;
	}
	s->bev_owns_fd = true;
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	bufferevent_setcb(s->bev, smtp_server_readcb, smtp_server_writecb,
	    smtp_server_eventcb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTPS_READ_HIWAT);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	smtp_server_enter(s, SMTPS_S_HANDSHAKE);
}

static void
smtp_server_writecb(struct bufferevent *bev, void *arg)
{
	struct smtp_session	*s = arg;

	/* Drained after a write the flush could not finish: back to
	 * writing from smtp_server_flush_cb. */
	if (s->direct && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_disable(bev, EV_WRITE);
	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0 &&
	    s->state != SMTPS_S_CLOSING && !s->output_blocked)
		return;
	switch (s->state) {
	case SMTPS_S_CLOSING:
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			smtp_server_free_later(s);
		break;
	case SMTPS_S_STARTTLS:
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			smtp_server_start_tls(s);
		break;
	default:
		if (s->output_blocked) {
			s->output_blocked = false;
			bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
			bufferevent_enable(s->bev, EV_READ);
			smtp_server_process(s);
		}
		break;
	}
}

static void
smtp_server_greet(struct smtp_session *s)
{
	smtp_server_reply(s, "220 %s ESMTP postern", smtp_server_hostname(s));
	smtp_server_arm_timer(s, s->rt->conf->limits.command_timeout);
}

/* After a TLS handshake: describe it, and restart the session (RFC 3207). */
static void
smtp_server_tls_ready(struct smtp_session *s)
{
	SSL	*ssl = bufferevent_openssl_get_ssl(s->bev);
	bool	 implicit = s->state == SMTPS_S_INIT;

	s->tls = true;
	stats.tls_in_sessions++;
	snprintf(s->tls_desc, sizeof(s->tls_desc), "using %s with cipher %s",
	    SSL_get_version(ssl), SSL_get_cipher_name(ssl));
	log_info("%s TLS connection established from unknown[%s]: %s",
	    implicit ? "Anonymous" : "Anonymous", s->addr, s->tls_desc);
	smtp_server_txn_reset(s);
	s->helo[0] = '\0';
	s->authenticated = false;
	s->user[0] = '\0';
	smtp_server_enter(s, SMTPS_S_INIT);
	if (implicit)
		smtp_server_greet(s);
	smtp_server_arm_timer(s, s->rt->conf->limits.command_timeout);
	smtp_server_process(s);
}

static void
smtp_server_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session	*s = arg;

	if (what & BEV_EVENT_CONNECTED) {
		if (s->state == SMTPS_S_HANDSHAKE ||
		    (s->state == SMTPS_S_INIT && !s->tls))
			smtp_server_tls_ready(s);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		unsigned long	e;
		char		buf[256];

		if (s->state == SMTPS_S_HANDSHAKE || (!s->tls &&
		    s->lcfg->tls == CONF_IN_TLS_IMPLICIT)) {
			buf[0] = '\0';
			while ((e = bufferevent_get_openssl_error(bev)) != 0)
				ERR_error_string_n(e, buf, sizeof(buf));
			log_info("SSL_accept error from unknown[%s]: %s",
			    s->addr, buf[0] != '\0' ? buf : "handshake failed");
		} else if (s->state != SMTPS_S_CLOSING)
			log_info("lost connection after %s from unknown[%s]",
			    smtp_server_state_names[s->state], s->addr);
	}
	smtp_server_free_later(s);
}

static void
smtp_server_timeout(evutil_socket_t fd, short ev, void *arg)
{
	struct smtp_session	*s = arg;

	switch (s->state) {
	case SMTPS_S_CLOSING:
	case SMTPS_S_HANDSHAKE:
	case SMTPS_S_STARTTLS:
		log_info("timeout after %s from unknown[%s]",
		    smtp_server_state_names[s->state], s->addr);
		smtp_server_free_later(s);
		return;
	case SMTPS_S_COMMIT:
	case SMTPS_S_AUTH_CHECK:
	case SMTPS_S_SPF_CHECK:
		/* Our own work is in flight; the client is not at fault. */
		smtp_server_arm_timer(s, s->rt->conf->limits.command_timeout);
		return;
	default:
		break;
	}
	log_info("timeout after %s from unknown[%s]",
	    smtp_server_state_names[s->state], s->addr);
	smtp_server_reply(s, "421 4.4.2 %s Error: timeout exceeded",
	    smtp_server_hostname(s));
	smtp_server_close(s);
}

/* Refuse a connection over a cap without building a session. */
static void
smtp_server_refuse(int fd, struct listener_cfg *lcfg, const char *reply)
{
	stats.connections_in_rejected++;
	if (lcfg->tls != CONF_IN_TLS_IMPLICIT) {
		/* A fresh socket's send buffer is empty: this never blocks. */
		(void)send(fd, reply, strlen(reply), MSG_NOSIGNAL |
		    MSG_DONTWAIT);
	}
	close(fd);
}

void
smtp_server_accept(int fd, const struct sockaddr *sa, socklen_t salen,
    struct listener_cfg *lcfg, void *arg)
{
	struct rtconf		*rt = rtconf_current();
	struct smtp_session	*s;
	struct sockaddr_storage	 ss;
	char			 addr[INET6_ADDRSTRLEN];
	uint64_t		 key;
	uintptr_t		 n;

	memset(&ss, 0, sizeof(ss));
	memcpy(&ss, sa, salen < sizeof(ss) ? salen : sizeof(ss));
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)&ss;

		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], addr,
			    sizeof(addr));
		else
			inet_ntop(AF_INET6, &sin6->sin6_addr, addr,
			    sizeof(addr));
	} else
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)
		    &ss)->sin_addr, addr, sizeof(addr));

	if (smtp_server_stopping) {
		close(fd);
		return;
	}
	if (smtp_server_sessions.len >=
	    (size_t)rt->conf->limits.max_inbound_connections) {
		log_warnx("connection from unknown[%s] refused: too many "
		    "connections (%zu)", addr, smtp_server_sessions.len);
		smtp_server_refuse(fd, lcfg, "421 4.3.2 Error: too many "
		    "connections\r\n");
		return;
	}
	key = smtp_server_ipkey(&ss);
	n = (uintptr_t)util_map_get(&smtp_server_per_ip, key);
	if (n >= (uintptr_t)rt->conf->limits.max_connections_per_ip) {
		log_warnx("connection from unknown[%s] refused: too many "
		    "connections from this address (%lu)", addr,
		    (unsigned long)n);
		smtp_server_refuse(fd, lcfg, "421 4.7.0 Error: too many "
		    "connections from your address\r\n");
		return;
	}

	/*
	 * Replies are small and every one is waited for: without NODELAY,
	 * Nagle and delayed ACKs add tens of milliseconds per command on a
	 * connection the client keeps for several messages.
	 */
	{
		int	on = 1;

		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on,
		    sizeof(on));
	}
	s = xcalloc(1, sizeof(*s));
	s->id = smtp_server_next_id++;
	s->fd = fd;
	s->ss = ss;
	s->ipkey = key;
	strlcpy(s->addr, addr, sizeof(s->addr));
	s->rt = rtconf_ref(rt);
	s->lcfg = listener_cfg_ref(lcfg);
	s->state = SMTPS_S_INIT;
	s->timer = evtimer_new(smtp_server_env.base, smtp_server_timeout, s);
	s->delay = evtimer_new(smtp_server_env.base,
	    smtp_server_auth_fail_reply, (void *)(uintptr_t)s->id);
	util_map_put(&smtp_server_sessions, s->id, s);
	smtp_server_per_ip_add(key, 1);
	stats.connections_in_current++;
	stats.connections_in_total++;
	log_info("connect from unknown[%s]", addr);

	if (lcfg->tls == CONF_IN_TLS_IMPLICIT) {
		SSL	*ssl;

		if (rt->server_tls == NULL ||
		    (ssl = SSL_new(rt->server_tls)) == NULL) {
			log_warnx("unknown[%s]: no TLS context for an "
			    "implicit TLS listener", addr);
			smtp_server_free_later(s);
			return;
		}
		s->bev = bufferevent_openssl_socket_new(smtp_server_env.base,
		    fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
		if (s->bev == NULL) {
			SSL_free(ssl);
			smtp_server_free_later(s);
			return;
		}
		s->bev_owns_fd = true;
		bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
		smtp_server_arm_timer(s, rt->conf->limits.command_timeout);
	} else {
		s->bev = bufferevent_socket_new(smtp_server_env.base, fd, 0);
		s->flush = event_new(smtp_server_env.base, -1, 0,
		    smtp_server_flush_cb, s);
		if (s->bev == NULL || s->flush == NULL) {
			smtp_server_free_later(s);
			return;
		}
		s->direct = true;
	}
	bufferevent_setcb(s->bev, smtp_server_readcb, smtp_server_writecb,
	    smtp_server_eventcb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTPS_READ_HIWAT);
	/* A new bufferevent has writing enabled; direct mode wants it off. */
	if (s->direct) {
		bufferevent_disable(s->bev, EV_WRITE);
		bufferevent_enable(s->bev, EV_READ);
	} else
		bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	if (lcfg->tls != CONF_IN_TLS_IMPLICIT)
		smtp_server_greet(s);
}

void
smtp_server_init(const struct smtp_server_env *env)
{
	smtp_server_env = *env;
	util_random(&smtp_server_rseed, sizeof(smtp_server_rseed));
	smtp_server_rseed ^= 0xcbf29ce484222325ULL;
	util_map_init(&smtp_server_sessions);
	util_map_init(&smtp_server_per_ip);
}

void
smtp_server_shutdown(void)
{
	size_t		 it = 0;
	uint64_t	 k;
	void		*v;

	smtp_server_stopping = true;
	while (util_map_next(&smtp_server_sessions, &it, &k, &v))
		smtp_server_process(v);
}

size_t
smtp_server_count(void)
{
	return (smtp_server_sessions.len);
}

void
smtp_server_close_all(void)
{
	size_t		 it = 0, n = 0, i;
	uint64_t	 k;
	void		*v;
	struct smtp_session **all;

	all = xcalloc(smtp_server_sessions.len + 1, sizeof(*all));
	while (util_map_next(&smtp_server_sessions, &it, &k, &v))
		all[n++] = v;
	for (i = 0; i < n; i++)
		smtp_server_free(all[i]);
	free(all);
	util_map_clear(&smtp_server_sessions);
	util_map_clear(&smtp_server_per_ip);
}
