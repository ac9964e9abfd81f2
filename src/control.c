/*
 * control.c: the control socket (SPEC section 5).
 *
 * One JSON object per line in, one per line out, through jansson.  A
 * request line is bounded (CONTROL_LINE_MAX), a silent client is dropped
 * after CONTROL_IDLE_TIMEOUT, and at most CONTROL_MAX_CLIENTS are served
 * at once, so no client can stall the daemon or the others.  Commands that
 * change the queue (hold, release, delete) answer only once the spool has
 * made the change durable; their completion finds the client by id.
 *
 * Queue ids from clients are validated with util_qid_parse before they
 * reach the spool, so no request can name a path.
 *
 * Ownership: the control object owns the listening socket and its
 * clients; each client owns its bufferevent and timer.
 */
#include "compat.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "control.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "queue.h"
#include "rtconf.h"
#include "smtp_server.h"
#include "spool.h"
#include "stats.h"
#include "util.h"

struct control_client {
	uint64_t		 id;
	struct bufferevent	*bev;		/* owned */
	struct event		*timer;		/* owned */
	struct control		*ctl;		/* borrowed */
	bool			 waiting;	/* async reply pending */
	bool			 closing;
	uid_t			 uid;
};

struct control {
	struct control_env	 env;
	struct spool		*spool;		/* borrowed */
	struct evconnlistener	*evl;		/* owned */
	char			*path;		/* owned */
	struct util_map		 clients;	/* id -> control_client */
	uint64_t		 next_id;
};

/* A pending mutation: completes through the spool. */
struct control_pending {
	struct control	*ctl;
	uint64_t	 client;
	qid_t		 id;
	int		 op;		/* CONTROL_OP_* */
};

#define CONTROL_OP_HOLD		1
#define CONTROL_OP_RELEASE	2
#define CONTROL_OP_DELETE	3

static void	control_client_process(struct control_client *);

static char *
control_error(const char *msg)
{
	json_t	*o = json_pack("{s:b, s:s}", "ok", 0, "error", msg);
	char	*s = json_dumps(o, JSON_COMPACT);

	json_decref(o);
	return (s);
}

static char *
control_dump(json_t *o)
{
	char	*s = json_dumps(o, JSON_COMPACT);

	json_decref(o);
	return (s);
}

static const char *
control_state_name(int st)
{
	switch (st) {
	case QUEUE_ACTIVE:
		return ("active");
	case QUEUE_DEFERRED:
		return ("deferred");
	case QUEUE_HELD:
		return ("held");
	}
	return ("unknown");
}

static char *
control_stats(struct control *ctl)
{
	struct queue_counts	 qc;
	struct spool_stats	 ss;
	struct pool_stats	 ps;
	int64_t			 now = util_wallclock();
	json_t			*o;

	queue_counts(ctl->env.queue, &qc);
	memset(&ss, 0, sizeof(ss));
	if (ctl->spool != NULL)
		spool_get_stats(ctl->spool, &ss);
	o = json_pack("{s:b, s:I}", "ok", 1, "uptime_s",
	    (json_int_t)(now - stats.started_at));
	json_object_set_new(o, "queue", json_pack(
	    "{s:I, s:I, s:I, s:I, s:I}",
	    "total", (json_int_t)qc.total,
	    "active", (json_int_t)qc.by_state[QUEUE_ACTIVE],
	    "deferred", (json_int_t)qc.by_state[QUEUE_DEFERRED],
	    "held", (json_int_t)qc.by_state[QUEUE_HELD],
	    "oldest_age_s", (json_int_t)(qc.oldest_queued_at == 0 ? 0 :
	    now - qc.oldest_queued_at)));
	json_object_set_new(o, "messages", json_pack("{s:I, s:I, s:I, s:I}",
	    "received", (json_int_t)stats.messages_received,
	    "delivered", (json_int_t)stats.messages_delivered,
	    "failed", (json_int_t)stats.messages_failed,
	    "expired", (json_int_t)stats.messages_expired));
	json_object_set_new(o, "connections_in", json_pack("{s:I, s:I, s:I}",
	    "current", (json_int_t)stats.connections_in_current,
	    "total", (json_int_t)stats.connections_in_total,
	    "rejected", (json_int_t)stats.connections_in_rejected));
	pool_get_stats(&ps);
	json_object_set_new(o, "pool", json_pack("{s:I, s:I, s:I, s:I, s:I}",
	    "size", (json_int_t)ps.size, "in_use", (json_int_t)ps.in_use,
	    "idle", (json_int_t)ps.idle, "waiting", (json_int_t)ps.waiting,
	    "peak", (json_int_t)ps.peak));
	json_object_set_new(o, "tls_out", json_pack("{s:I, s:I, s:I}",
	    "sessions", (json_int_t)stats.tls_out_sessions,
	    "verified", (json_int_t)stats.tls_out_verified,
	    "plaintext", (json_int_t)stats.tls_out_plaintext));
	json_object_set_new(o, "dkim", json_pack("{s:I, s:I}",
	    "signed", (json_int_t)stats.dkim_signed,
	    "errors", (json_int_t)stats.dkim_errors));
	json_object_set_new(o, "escalations", json_pack("{s:I, s:I, s:I}",
	    "sent", (json_int_t)stats.escalations_sent,
	    "failed", (json_int_t)stats.escalations_failed,
	    "pending", (json_int_t)stats.escalations_pending));
	json_object_set_new(o, "auth", json_pack("{s:I, s:I}",
	    "success", (json_int_t)stats.auth_success,
	    "failure", (json_int_t)stats.auth_failure));
	json_object_set_new(o, "spool", json_pack("{s:I, s:I, s:I, s:I, s:I}",
	    "committed", (json_int_t)ss.committed,
	    "journal_records", (json_int_t)ss.journal_records,
	    "syncs", (json_int_t)ss.syncs,
	    "sync_errors", (json_int_t)ss.sync_errors,
	    "corrupt", (json_int_t)ss.corrupt));
	return (control_dump(o));
}

static json_t *
control_msg_json(const struct queue_msg *m, int64_t now)
{
	char	id[QUEUE_ID_LEN + 1];

	util_qid_format(id, m->id);
	return (json_pack("{s:s, s:I, s:I, s:s, s:I, s:I, s:I, s:s?, s:s}",
	    "id", id,
	    "age_s", (json_int_t)(now - m->queued_at),
	    "size", (json_int_t)m->size,
	    "sender", m->sender,
	    "recipients_pending", (json_int_t)m->nrcpt_pending,
	    "attempts", (json_int_t)m->attempts,
	    "next_attempt_s", (json_int_t)(m->state == QUEUE_HELD ? 0 :
	    (m->next_attempt > now ? m->next_attempt - now : 0)),
	    "last_error", m->last_error,
	    "state", control_state_name(m->state)));
}

static char *
control_queue(struct control *ctl, json_t *req)
{
	json_t			*o, *arr, *v;
	struct queue_msg	**page;
	qid_t			 cursor = 0;
	json_int_t		 limit = 100;
	size_t			 n, i;
	int64_t			 now = util_wallclock();

	if ((v = json_object_get(req, "limit")) != NULL) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > 1000000)
			return (control_error("limit must be an integer "
			    "from 1 to 1000000"));
		limit = json_integer_value(v);
	}
	if ((v = json_object_get(req, "cursor")) != NULL) {
		if (!json_is_string(v) ||
		    util_qid_parse(json_string_value(v), &cursor) == -1)
			return (control_error("cursor must be a queue id"));
	}
	page = xcalloc((size_t)limit, sizeof(*page));
	n = queue_page(ctl->env.queue, &cursor, page, (size_t)limit);
	arr = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(arr, control_msg_json(page[i], now));
	free(page);
	o = json_pack("{s:b, s:o}", "ok", 1, "messages", arr);
	if (n == (size_t)limit) {
		char	id[QUEUE_ID_LEN + 1];

		util_qid_format(id, cursor);
		json_object_set_new(o, "next_cursor", json_string(id));
	}
	return (control_dump(o));
}

static const char *
control_rcpt_state(int st)
{
	switch (st) {
	case SPOOL_RCPT_DELIVERED:
		return ("delivered");
	case SPOOL_RCPT_FAILED:
		return ("failed");
	case SPOOL_RCPT_EXPIRED:
		return ("expired");
	}
	return ("pending");
}

static char *
control_show(struct control *ctl, qid_t id)
{
	struct spool_envelope	 env;
	struct queue_msg	*m = queue_get(ctl->env.queue, id);
	json_t			*o, *rcpts;
	char			 ts[32];
	size_t			 i;

	if (m == NULL || ctl->spool == NULL)
		return (control_error("no such message"));
	memset(&env, 0, sizeof(env));
	if (spool_load(ctl->spool, id, &env) == -1)
		return (control_error("cannot read the queue file"));
	rcpts = json_array();
	for (i = 0; i < env.nrcpts; i++) {
		struct spool_rcpt *r = &env.rcpts[i];

		json_array_append_new(rcpts, json_pack(
		    "{s:s, s:s, s:s?, s:s?, s:s?}",
		    "address", r->addr, "status", control_rcpt_state(r->state),
		    "dsn", r->dsn[0] != '\0' ? r->dsn : NULL,
		    "reply", r->reply, "remote", r->remote));
	}
	util_iso8601(ts, sizeof(ts), env.queued_at);
	o = control_msg_json(m, util_wallclock());
	json_object_set_new(o, "ok", json_true());
	json_object_set_new(o, "queued_at", json_string(ts));
	json_object_set_new(o, "recipients", rcpts);
	json_object_set_new(o, "client", json_pack("{s:s?, s:s?, s:s?, s:s?}",
	    "address", env.client_addr, "name", env.client_name,
	    "helo", env.helo, "sasl_username", env.sasl_user));
	{
		json_t	*hist = json_array();

		for (i = 0; i < env.nhistory; i++) {
			char	na[32];

			util_iso8601(na, sizeof(na),
			    env.history[i].next_attempt);
			json_array_append_new(hist, json_pack(
			    "{s:i, s:s, s:s}", "attempt",
			    env.history[i].attempt, "next_attempt", na,
			    "error", env.history[i].error));
		}
		json_object_set_new(o, "history", hist);
	}
	json_object_set_new(o, "smtputf8",
	    json_boolean(env.flags & SPOOL_F_SMTPUTF8));
	json_object_set_new(o, "eightbitmime",
	    json_boolean(env.flags & SPOOL_F_8BITMIME));
	spool_envelope_free(&env);
	return (control_dump(o));
}

static char *
control_flush(struct control *ctl, json_t *req)
{
	json_t			*v = json_object_get(req, "id");
	struct queue_msg	*m;
	int64_t			 now = util_wallclock();
	qid_t			 id;
	size_t			 n = 0;

	if (v != NULL) {
		if (!json_is_string(v) ||
		    util_qid_parse(json_string_value(v), &id) == -1)
			return (control_error("id must be a queue id"));
		if ((m = queue_get(ctl->env.queue, id)) == NULL)
			return (control_error("no such message"));
		if (m->state != QUEUE_HELD) {
			queue_set_next_attempt(ctl->env.queue, m, now);
			n = 1;
		}
	} else {
		/* Bring every due-later message forward to now. */
		while ((m = queue_peek_due(ctl->env.queue)) != NULL &&
		    m->next_attempt > now) {
			queue_set_next_attempt(ctl->env.queue, m, now);
			n++;
		}
		/* Later messages are behind the first; walk them too. */
		{
			struct queue_msg	**page;
			qid_t			  cursor = 0;
			size_t			  k, got;

			page = xcalloc(1024, sizeof(*page));
			while ((got = queue_page(ctl->env.queue, &cursor,
			    page, 1024)) > 0) {
				for (k = 0; k < got; k++) {
					if (page[k]->state != QUEUE_HELD &&
					    page[k]->next_attempt > now) {
						queue_set_next_attempt(
						    ctl->env.queue, page[k],
						    now);
						n++;
					}
				}
			}
			free(page);
		}
	}
	log_info("control: flush %s (%zu messages)", v != NULL ?
	    json_string_value(v) : "all", n);
	if (ctl->env.kick != NULL)
		ctl->env.kick();
	return (control_dump(json_pack("{s:b, s:I}", "ok", 1, "flushed",
	    (json_int_t)n)));
}

static void
control_reply(struct control_client *c, const char *reply)
{
	struct evbuffer	*out = bufferevent_get_output(c->bev);

	evbuffer_add(out, reply, strlen(reply));
	evbuffer_add(out, "\n", 1);
}

static void
control_pending_done(uint64_t cookie, int error, void *arg)
{
	struct control_pending	*p = arg;
	struct control		*ctl = p->ctl;
	struct control_client	*c;
	struct queue_msg	*m;
	char			 idstr[QUEUE_ID_LEN + 1], *reply;

	util_qid_format(idstr, p->id);
	if (error == 0 && (m = queue_get(ctl->env.queue, p->id)) != NULL) {
		switch (p->op) {
		case CONTROL_OP_HOLD:
			queue_set_state(ctl->env.queue, m, QUEUE_HELD);
			log_info("%s: held by operator", idstr);
			break;
		case CONTROL_OP_RELEASE:
			queue_set_state(ctl->env.queue, m, m->attempts > 0 ?
			    QUEUE_DEFERRED : QUEUE_ACTIVE);
			queue_set_next_attempt(ctl->env.queue, m,
			    util_wallclock());
			log_info("%s: released by operator", idstr);
			if (ctl->env.kick != NULL)
				ctl->env.kick();
			break;
		case CONTROL_OP_DELETE:
			queue_remove(ctl->env.queue, p->id);
			log_info("%s: removed by operator", idstr);
			break;
		}
	}
	if ((c = util_map_get(&ctl->clients, p->client)) != NULL) {
		if (error == 0)
			reply = control_dump(json_pack("{s:b, s:s}", "ok", 1,
			    "id", idstr));
		else
			reply = control_error(strerror(error));
		control_reply(c, reply);
		free(reply);
		c->waiting = false;
		control_client_process(c);
	}
	free(p);
}

static char *
control_mutate(struct control *ctl, uint64_t client, json_t *req, int op)
{
	struct control_pending	*p;
	struct spool_record	 rec;
	struct queue_msg	*m;
	json_t			*v = json_object_get(req, "id");
	qid_t			 id;
	int			 rc;

	if (v == NULL || !json_is_string(v) ||
	    util_qid_parse(json_string_value(v), &id) == -1)
		return (control_error("id must be a queue id (8 upper-case "
		    "hex digits)"));
	if ((m = queue_get(ctl->env.queue, id)) == NULL)
		return (control_error("no such message"));
	if (op == CONTROL_OP_HOLD && m->state == QUEUE_HELD)
		return (control_error("message is already held"));
	if (op == CONTROL_OP_RELEASE && m->state != QUEUE_HELD)
		return (control_error("message is not held"));
	if (ctl->spool == NULL)
		return (control_error("spool not open"));
	p = xcalloc(1, sizeof(*p));
	p->ctl = ctl;
	p->client = client;
	p->id = id;
	p->op = op;
	memset(&rec, 0, sizeof(rec));
	if (op == CONTROL_OP_DELETE)
		rc = spool_remove(ctl->spool, id, control_pending_done, client,
		    p);
	else {
		rec.type = op == CONTROL_OP_HOLD ? SPOOL_REC_HOLD :
		    SPOOL_REC_RELEASE;
		rc = spool_journal_append(ctl->spool, id, &rec,
		    control_pending_done, client, p);
	}
	if (rc == -1) {
		free(p);
		return (control_error("cannot update the queue file"));
	}
	return (NULL);
}

static char *
control_metrics(struct control *ctl)
{
	char	*text = metrics_text();
	json_t	*o;

	o = json_pack("{s:b, s:s}", "ok", 1, "text", text);
	free(text);
	return (control_dump(o));
}

char *
control_handle(struct control *ctl, uint64_t client, const char *line,
    size_t len)
{
	json_error_t	 jerr;
	json_t		*req, *v;
	const char	*cmd;
	char		*reply;
	qid_t		 id;

	req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (req == NULL)
		return (control_error("request is not valid JSON"));
	if (!json_is_object(req) ||
	    (v = json_object_get(req, "cmd")) == NULL || !json_is_string(v)) {
		json_decref(req);
		return (control_error("request must be an object with a "
		    "\"cmd\" string"));
	}
	cmd = json_string_value(v);
	if (strcmp(cmd, "stats") == 0)
		reply = control_stats(ctl);
	else if (strcmp(cmd, "queue") == 0)
		reply = control_queue(ctl, req);
	else if (strcmp(cmd, "show") == 0) {
		v = json_object_get(req, "id");
		if (v == NULL || !json_is_string(v) ||
		    util_qid_parse(json_string_value(v), &id) == -1)
			reply = control_error("id must be a queue id (8 "
			    "upper-case hex digits)");
		else
			reply = control_show(ctl, id);
	} else if (strcmp(cmd, "flush") == 0)
		reply = control_flush(ctl, req);
	else if (strcmp(cmd, "hold") == 0)
		reply = control_mutate(ctl, client, req, CONTROL_OP_HOLD);
	else if (strcmp(cmd, "release") == 0)
		reply = control_mutate(ctl, client, req, CONTROL_OP_RELEASE);
	else if (strcmp(cmd, "delete") == 0)
		reply = control_mutate(ctl, client, req, CONTROL_OP_DELETE);
	else if (strcmp(cmd, "reload") == 0) {
		if (ctl->env.reload != NULL)
			ctl->env.reload(ctl->env.reload_arg);
		reply = control_dump(json_pack("{s:b}", "ok", 1));
	} else if (strcmp(cmd, "metrics") == 0)
		reply = control_metrics(ctl);
	else
		reply = control_error("unknown command");
	json_decref(req);
	return (reply);
}

static void
control_client_free(struct control_client *c)
{
	util_map_del(&c->ctl->clients, c->id);
	bufferevent_free(c->bev);
	event_free(c->timer);
	free(c);
}

static void
control_client_close(struct control_client *c)
{
	c->closing = true;
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		control_client_free(c);
}

static void
control_client_process(struct control_client *c)
{
	struct evbuffer	*in = bufferevent_get_input(c->bev);
	struct timeval	 tv = { CONTROL_IDLE_TIMEOUT, 0 };
	char		*line, *reply;
	size_t		 len;

	while (!c->waiting && !c->closing) {
		line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
		if (line == NULL) {
			if (evbuffer_get_length(in) > CONTROL_LINE_MAX) {
				reply = control_error("request line too long");
				control_reply(c, reply);
				free(reply);
				control_client_close(c);
			}
			return;
		}
		evtimer_add(c->timer, &tv);
		if (len > CONTROL_LINE_MAX)
			reply = control_error("request line too long");
		else
			reply = control_handle(c->ctl, c->id, line, len);
		free(line);
		if (reply == NULL) {
			c->waiting = true;
			return;
		}
		control_reply(c, reply);
		free(reply);
	}
}

static void
control_client_read(struct bufferevent *bev, void *arg)
{
	control_client_process(arg);
}

static void
control_client_write(struct bufferevent *bev, void *arg)
{
	struct control_client	*c = arg;

	if (c->closing &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		control_client_free(c);
}

static void
control_client_event(struct bufferevent *bev, short what, void *arg)
{
	struct control_client	*c = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		/* A pending completion will find no client and drop it. */
		control_client_free(c);
	}
}

static void
control_client_timeout(evutil_socket_t fd, short ev, void *arg)
{
	struct control_client	*c = arg;

	if (c->waiting) {
		struct timeval	tv = { CONTROL_IDLE_TIMEOUT, 0 };

		evtimer_add(c->timer, &tv);
		return;
	}
	control_client_free(c);
}

static void
control_accept(struct evconnlistener *evl, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct control		*ctl = arg;
	struct control_client	*c;
	struct ucred		 cred;
	socklen_t		 clen = sizeof(cred);
	struct timeval		 tv = { CONTROL_IDLE_TIMEOUT, 0 };

	if (ctl->clients.len >= CONTROL_MAX_CLIENTS) {
		log_warnx("control: too many clients");
		close(fd);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->id = ++ctl->next_id;
	c->ctl = ctl;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0)
		c->uid = cred.uid;
	c->bev = bufferevent_socket_new(ctl->env.base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(ctl->env.base, control_client_timeout, c);
	bufferevent_setcb(c->bev, control_client_read, control_client_write,
	    control_client_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, CONTROL_LINE_MAX + 4096);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	evtimer_add(c->timer, &tv);
	util_map_put(&ctl->clients, c->id, c);
}

struct control *
control_new(const struct control_env *env, const struct conf *conf,
    char *err, size_t errlen)
{
	struct control		*ctl;
	struct sockaddr_un	 sun;
	struct stat		 st;
	struct group		*gr = NULL;
	mode_t			 old;
	int			 fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, conf->control_socket, sizeof(sun.sun_path))
	    >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "%s: path too long",
		    conf->control_socket);
		return (NULL);
	}
	if (conf->control_socket_group != NULL &&
	    conf->control_socket_group[0] != '\0' &&
	    (gr = getgrnam(conf->control_socket_group)) == NULL) {
		snprintf(err, errlen, "group %s does not exist",
		    conf->control_socket_group);
		return (NULL);
	}
	/* Replace a stale socket, never anything else. */
	if (lstat(conf->control_socket, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket",
			    conf->control_socket);
			return (NULL);
		}
		unlink(conf->control_socket);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return (NULL);
	}
	/* No window with default permissions: umask before bind. */
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		umask(old);
		snprintf(err, errlen, "bind %s: %s", conf->control_socket,
		    strerror(errno));
		close(fd);
		return (NULL);
	}
	umask(old);
	if (chmod(conf->control_socket, conf->control_socket_mode) == -1 ||
	    (gr != NULL && chown(conf->control_socket, (uid_t)-1, gr->gr_gid)
	    == -1)) {
		snprintf(err, errlen, "%s: %s", conf->control_socket,
		    strerror(errno));
		close(fd);
		unlink(conf->control_socket);
		return (NULL);
	}
	if (getuid() == 0 && conf->user != NULL && conf->user[0] != '\0') {
		struct passwd	*pw = getpwnam(conf->user);

		if (pw != NULL && chown(conf->control_socket, pw->pw_uid,
		    (gid_t)-1) == -1)
			log_warn("chown %s", conf->control_socket);
	}
	if (listen(fd, 16) == -1) {
		snprintf(err, errlen, "listen: %s", strerror(errno));
		close(fd);
		unlink(conf->control_socket);
		return (NULL);
	}
	ctl = xcalloc(1, sizeof(*ctl));
	ctl->env = *env;
	ctl->path = xstrdup(conf->control_socket);
	util_map_init(&ctl->clients);
	ctl->evl = evconnlistener_new(env->base, control_accept, ctl,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (ctl->evl == NULL) {
		snprintf(err, errlen, "evconnlistener_new failed");
		close(fd);
		control_free(ctl);
		return (NULL);
	}
	return (ctl);
}

void
control_set_spool(struct control *ctl, struct spool *spool)
{
	ctl->spool = spool;
}

void
control_free(struct control *ctl)
{
	size_t		 it = 0;
	uint64_t	 k;
	void		*v;

	if (ctl == NULL)
		return;
	while (util_map_next(&ctl->clients, &it, &k, &v)) {
		struct control_client *c = v;

		bufferevent_free(c->bev);
		event_free(c->timer);
		free(c);
	}
	util_map_clear(&ctl->clients);
	if (ctl->evl != NULL) {
		evconnlistener_free(ctl->evl);
		unlink(ctl->path);
	}
	free(ctl->path);
	free(ctl);
}
