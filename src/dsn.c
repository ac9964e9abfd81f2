/*
 * dsn.c: RFC 3464 delivery status notifications.
 *
 * One DSN per message per event (an attempt that ended with failed or
 * expired recipients), from the null sender so that a DSN that fails is
 * never bounced again (deliver.c sends none to <>).  The report carries
 * the human-readable part, the machine-readable message/delivery-status
 * part (Reporting-MTA, Arrival-Date, and per recipient Final-Recipient,
 * Action, Status, Remote-MTA, Diagnostic-Code) and the original message's
 * header section (text/rfc822-headers), never its body.
 *
 * Peer text (remote replies) is already free of CR, LF and NUL when it
 * reaches here (smtp_client escapes it); it is folded into the report as
 * one line each.
 */
#include "compat.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dsn.h"
#include "log.h"
#include "queue.h"
#include "stats.h"
#include "util.h"

/* The original header section quoted in a DSN is cut at this size. */
#define DSN_HEADERS_MAX		(64 * 1024)

struct dsn_commit {
	spool_done_cb	 cb;
	uint64_t	 cookie;
	struct queue	*q;
	qid_t		 id;
	char		*to;
	uint64_t	 size;
	int64_t		 queued_at;
};

static void
dsn_add(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
dsn_add(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < *cap - *len)
			break;
		*cap = *cap * 2 + (size_t)(n > 0 ? n : 0);
		*buf = xreallocarray(*buf, *cap, 1);
	}
	*len += (size_t)n;
}

int
dsn_format(const struct spool_envelope *orig, const bool *which,
    const char *hostname, const char *hdrs, size_t hdrlen, qid_t id,
    int64_t now, char **out, size_t *outlen)
{
	char		 date[64], arrival[64], oid[QUEUE_ID_LEN + 1],
			 nid[QUEUE_ID_LEN + 1], boundary[96];
	char		*b;
	size_t		 len = 0, cap = 4096, i;
	bool		 expired_only = true;

	util_qid_format(oid, orig->id);
	util_qid_format(nid, id);
	util_rfc5322_date(date, sizeof(date), now);
	util_rfc5322_date(arrival, sizeof(arrival), orig->queued_at);
	snprintf(boundary, sizeof(boundary), "%s.%lld/%s", nid,
	    (long long)now, hostname);
	for (i = 0; i < orig->nrcpts; i++)
		if (which[i] && orig->rcpts[i].state != SPOOL_RCPT_EXPIRED)
			expired_only = false;

	b = xmalloc(cap);
	dsn_add(&b, &len, &cap,
	    "From: MAILER-DAEMON@%s (Mail Delivery System)\r\n"
	    "To: <%s>\r\n"
	    "Subject: Undelivered Mail Returned to Sender\r\n"
	    "Date: %s\r\n"
	    "Message-ID: <%lld.%s@%s>\r\n"
	    "Auto-Submitted: auto-replied\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	    "\tboundary=\"%s\"\r\n"
	    "\r\n"
	    "This is a MIME-encapsulated message.\r\n"
	    "\r\n"
	    "--%s\r\n"
	    "Content-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "\r\n"
	    "This is the mail system at host %s.\r\n"
	    "\r\n"
	    "I'm sorry to have to inform you that your message could not\r\n"
	    "be delivered to one or more recipients%s. The header of your\r\n"
	    "message is attached below.\r\n"
	    "\r\n",
	    hostname, orig->sender, date, (long long)now, nid, hostname,
	    boundary, boundary, hostname, expired_only ?
	    " within the time the queue keeps it" : "");
	for (i = 0; i < orig->nrcpts; i++) {
		const struct spool_rcpt *r = &orig->rcpts[i];

		if (!which[i])
			continue;
		if (r->remote != NULL && strcmp(r->remote, "none") != 0)
			dsn_add(&b, &len, &cap, "<%s>: host %s said: %s\r\n"
			    "\r\n", r->addr, r->remote, r->reply != NULL ?
			    r->reply : "delivery failed");
		else
			dsn_add(&b, &len, &cap, "<%s>: %s\r\n\r\n", r->addr,
			    r->reply != NULL ? r->reply : "delivery failed");
	}
	dsn_add(&b, &len, &cap,
	    "--%s\r\n"
	    "Content-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n"
	    "\r\n"
	    "Reporting-MTA: dns; %s\r\n"
	    "X-Postern-Queue-ID: %s\r\n"
	    "Arrival-Date: %s\r\n",
	    boundary, hostname, oid, arrival);
	for (i = 0; i < orig->nrcpts; i++) {
		const struct spool_rcpt *r = &orig->rcpts[i];

		if (!which[i])
			continue;
		dsn_add(&b, &len, &cap,
		    "\r\n"
		    "Final-Recipient: rfc822; %s\r\n"
		    "Action: failed\r\n"
		    "Status: %s\r\n",
		    r->addr, r->dsn[0] != '\0' ? r->dsn : "5.0.0");
		if (r->remote != NULL && strcmp(r->remote, "none") != 0) {
			char	host[256];

			/* "mx.example.net[192.0.2.10]:25" -> the name. */
			strlcpy(host, r->remote, sizeof(host));
			host[strcspn(host, "[")] = '\0';
			dsn_add(&b, &len, &cap, "Remote-MTA: dns; %s\r\n",
			    host);
		}
		if (r->reply != NULL)
			dsn_add(&b, &len, &cap, "Diagnostic-Code: %s; %s\r\n",
			    r->reply[0] >= '2' && r->reply[0] <= '5' &&
			    r->remote != NULL && strcmp(r->remote, "none") != 0
			    ? "smtp" : "X-Postern", r->reply);
	}
	dsn_add(&b, &len, &cap,
	    "\r\n"
	    "--%s\r\n"
	    "Content-Description: Undelivered Message Headers\r\n"
	    "Content-Type: text/rfc822-headers\r\n"
	    "\r\n", boundary);
	if (cap - len < hdrlen + 256) {
		cap = len + hdrlen + 256;
		b = xreallocarray(b, cap, 1);
	}
	memcpy(b + len, hdrs, hdrlen);
	len += hdrlen;
	if (hdrlen < 2 || memcmp(hdrs + hdrlen - 2, "\r\n", 2) != 0)
		dsn_add(&b, &len, &cap, "\r\n");
	dsn_add(&b, &len, &cap, "\r\n--%s--\r\n", boundary);
	*out = b;
	*outlen = len;
	return (0);
}

/* The header section of the original: up to the empty line, bounded. */
static char *
dsn_read_headers(struct spool *spool, qid_t id, size_t *hdrlen)
{
	char		*buf, *end;
	int		 fd;
	off_t		 off;
	uint64_t	 len;
	ssize_t		 n;
	size_t		 want;

	*hdrlen = 0;
	if (spool_open_body(spool, id, &fd, &off, &len) == -1)
		return (xstrdup(""));
	want = len < DSN_HEADERS_MAX ? (size_t)len : DSN_HEADERS_MAX;
	buf = xmalloc(want + 1);
	n = pread(fd, buf, want, off);
	close(fd);
	if (n < 0)
		n = 0;
	buf[n] = '\0';
	if ((end = strstr(buf, "\r\n\r\n")) != NULL)
		*hdrlen = (size_t)(end - buf) + 2;
	else {
		/* Cut at the last whole line. */
		char *nl = n > 0 ? memrchr(buf, '\n', (size_t)n) : NULL;

		*hdrlen = nl != NULL ? (size_t)(nl - buf) + 1 : 0;
	}
	return (buf);
}

static void
dsn_committed(uint64_t cookie, int error, void *arg)
{
	struct dsn_commit	*c = arg;
	char			 id[QUEUE_ID_LEN + 1];

	util_qid_format(id, c->id);
	if (error == 0) {
		queue_add(c->q, c->id, "", c->size, c->queued_at, 1, 0,
		    c->queued_at, NULL, false);
		stats.messages_received++;
		log_info("%s: from=<>, size=%llu, nrcpt=1 (queue active)", id,
		    (unsigned long long)c->size);
	} else
		queue_release_id(c->q, c->id);
	c->cb(c->cookie, error, NULL);
	free(c->to);
	free(c);
}

int
dsn_bounce(struct spool *spool, const struct spool_envelope *orig,
    const bool *which, const char *hostname, spool_done_cb cb,
    uint64_t cookie, struct queue *q)
{
	struct spool_envelope	 env;
	struct spool_rcpt	 rcpt;
	struct spool_writer	*w;
	struct dsn_commit	*c;
	char			*hdrs, *text, err[256], oid[QUEUE_ID_LEN + 1],
				 nid[QUEUE_ID_LEN + 1];
	size_t			 hdrlen, textlen;
	int64_t			 now = util_wallclock();
	qid_t			 id;

	id = queue_reserve_id(q);
	hdrs = dsn_read_headers(spool, orig->id, &hdrlen);
	dsn_format(orig, which, hostname, hdrs, hdrlen, id, now, &text,
	    &textlen);
	free(hdrs);

	memset(&env, 0, sizeof(env));
	memset(&rcpt, 0, sizeof(rcpt));
	rcpt.addr = orig->sender;
	env.id = id;
	env.queued_at = now;
	env.sender = (char *)"";
	env.rcpts = &rcpt;
	env.nrcpts = 1;
	env.client_name = (char *)"localhost";
	env.flags = SPOOL_F_8BITMIME;
	if ((w = spool_writer_new(spool, &env, err, sizeof(err))) == NULL ||
	    spool_writer_write(w, text, textlen) == -1) {
		log_warnx("cannot write a notification: %s", err);
		spool_writer_abort(w);
		queue_release_id(q, id);
		free(text);
		return (-1);
	}
	free(text);
	c = xcalloc(1, sizeof(*c));
	c->cb = cb;
	c->cookie = cookie;
	c->q = q;
	c->id = id;
	c->size = textlen;
	c->queued_at = now;
	if (spool_writer_commit(w, dsn_committed, cookie, c) == -1) {
		queue_release_id(q, id);
		free(c);
		return (-1);
	}
	util_qid_format(oid, orig->id);
	util_qid_format(nid, id);
	log_info("%s: sender non-delivery notification: %s", oid, nid);
	return (0);
}
