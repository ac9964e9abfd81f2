/*
 * deliver.c: picks due messages and decides every recipient's fate
 * (SPEC section 4; STYLE 3.5: the one failure policy).
 *
 * A due message is loaded from the spool (envelope and replayed state,
 * not the body), its pending recipients are grouped by destination (the
 * recipient domain, or the smarthost) and each group becomes one pool job,
 * i.e. one transaction.  When every job of the message has come back:
 * - recipients the peer accepted were journaled as delivered before the
 *   connection was reused (pool_resume after the durable append);
 * - recipients rejected with 5xx (or by a permanent DNS failure) fail;
 * - the others stay pending; past retry.max_age they expire;
 * - failed and expired recipients produce one DSN to the sender (none for
 *   the null sender), committed to the spool *before* those recipients are
 *   journaled final, so a crash can repeat a bounce but never lose one;
 * - with nothing pending the message is removed; otherwise an ATTEMPT
 *   record stores the attempt count and the next attempt time (exponential
 *   backoff with jitter).
 * After each attempt sent + deferred + failed equals the recipients tried
 * (checked with an assertion, Postfix's rcpt_left/keep/drop).
 *
 * Ownership: in-flight messages (struct deliver_msg) are owned here, found
 * by queue id; pool jobs point back at their message (owner) and are owned
 * by the pool until the result callback hands them back.
 */
#include "compat.h"

#include <sys/queue.h>

#include <event2/event.h>

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf.h"
#include "deliver.h"
#include "dkimsign.h"
#include "dsn.h"
#include "hook.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "queue.h"
#include "route.h"
#include "rtconf.h"
#include "smtp_client.h"
#include "smtp_data.h"
#include "spool.h"
#include "stats.h"
#include "util.h"
#include "worker.h"

/* Messages being attempted at once: bounds memory, keeps the pool fed. */
#define DELIVER_INFLIGHT_MAX	1000
/* The scheduler looks at the queue at least this often (seconds). */
#define DELIVER_TICK_MAX	30
/* next_attempt of a message in flight: it sinks to the bottom of the heap. */
#define DELIVER_IN_FLIGHT	INT64_MAX

struct deliver_msg {
	qid_t			 id;
	char			 idstr[QUEUE_ID_LEN + 1];
	struct spool_envelope	 env;		/* owned */
	int			 jobs_out;	/* jobs not back yet */
	int			 records_out;	/* deliver_waits in flight */
	bool			*failed_now;	/* owned: per rcpt */
	bool			 finishing;
	bool			 removed;	/* file removal already asked */
	char			 last_error[SPOOL_ERROR_MAX];
	char			*dkim;		/* owned: DKIM-Signature fields */
	size_t			 dkimlen;
};

/* A signing job on a worker thread; found back by message id. */
struct deliver_sign {
	qid_t		 id;
	struct rtconf	*rt;		/* reference: keys stay loaded */
	int		 fd;		/* the queue file, opened on the loop */
	off_t		 offset;
	uint64_t	 len;
	int		 rc;		/* dkimsign_sign_fd's answer */
	char		*out;
	char		 err[256];
};

/* Outcomes of one transaction being made durable before reuse. */
struct deliver_wait {
	uint64_t	 conn_id;
	qid_t		 msgid;
	int		 remaining;
};

/*
 * A failure escalation (SPEC 6): journaled as pending before the hook
 * runs, done after it exits 0.  The message file stays until every
 * escalation of it is done, so a restart can run it again.
 */
struct deliver_esc {
	TAILQ_ENTRY(deliver_esc) entry;	/* deliver_esc_live */
	qid_t		 id;
	int		 event;		/* 0 failed, 1 expired */
	struct hook_event ev;		/* strings below are owned */
	struct hook_rcpt *rcpts;
	char		**strs;
	size_t		 nstrs;
};

/* Escalation event numbers in the journal and escalation.events bits. */
#define DELIVER_EV_FAILED	0
#define DELIVER_EV_EXPIRED	1
#define DELIVER_HOOK_RETRY_BASE	30

static struct deliver_env	 deliver_env;
static struct hook		*deliver_hook;	/* NULL: no escalation */
static struct util_map		 deliver_escs;	/* id -> count pending */
/* Every escalation object alive, so that shutdown frees what the hook
 * runner drops (hook_free() calls no callback). */
static TAILQ_HEAD(, deliver_esc) deliver_esc_live =
    TAILQ_HEAD_INITIALIZER(deliver_esc_live);
static struct util_map		 deliver_msgs;	/* id -> deliver_msg */
static struct event		*deliver_timer;
static bool			 deliver_stopping;
static uint64_t			 deliver_next_job = 1;

static void	deliver_schedule(void);
static void	deliver_msg_finish(struct deliver_msg *);
static void	deliver_dispatch(struct deliver_msg *);
static void	deliver_sign_start(struct deliver_msg *);

static const struct conf *
deliver_conf(void)
{
	return (rtconf_current()->conf);
}

int64_t
deliver_backoff(int attempts, int initial, double factor, int max_interval)
{
	double	d = (double)initial;
	int	i;

	for (i = 1; i < attempts && d < (double)max_interval; i++)
		d *= factor;
	if (d > (double)max_interval)
		d = (double)max_interval;
	return ((int64_t)d);
}

static int64_t
deliver_next_attempt(int attempts, int64_t now)
{
	const struct conf	*c = deliver_conf();
	int64_t			 d;
	uint32_t		 r;

	d = deliver_backoff(attempts, c->retry.initial, c->retry.factor,
	    c->retry.max_interval);
	/* +-10% jitter so that a burst of deferrals does not return as one. */
	util_random(&r, sizeof(r));
	d += (int64_t)((double)d * (((double)(r % 2001) - 1000.0) / 10000.0));
	return (now + (d < 1 ? 1 : d));
}

static void
deliver_msg_free(struct deliver_msg *m)
{
	util_map_del(&deliver_msgs, m->id);
	free(m->dkim);
	spool_envelope_free(&m->env);
	free(m->failed_now);
	free(m);
}

static const char *
deliver_domain_of(const char *addr)
{
	const char	*at = strrchr(addr, '@');

	return (at != NULL ? at + 1 : "");
}

static void
deliver_journal_done(uint64_t cookie, int error, void *arg)
{
	struct deliver_wait	*w = arg;
	struct deliver_msg	*m;

	if (error != 0) {
		char	id[QUEUE_ID_LEN + 1];

		util_qid_format(id, w->msgid);
		errno = error;
		log_warn("%s: journal write failed", id);
	}
	if (--w->remaining > 0)
		return;
	if (w->conn_id != 0)
		pool_resume(w->conn_id);
	if ((m = util_map_get(&deliver_msgs, w->msgid)) != NULL) {
		m->records_out--;
		if (m->jobs_out == 0 && m->records_out == 0)
			deliver_msg_finish(m);
	}
	free(w);
}

/*
 * Whether job j, the last one out, delivered every recipient of the message
 * that was not delivered already, with no escalation keeping the file.
 * Then removing the file says all that RCPT_DONE records would: the
 * removal is made durable by the same group sync as a journal append, and
 * the connection waits for it the same way, so a crash can still only
 * re-send (never lose) the message, and it costs one request instead of a
 * record per recipient followed by the removal.
 */
static bool
deliver_all_done(const struct deliver_msg *m, const struct pool_job *j,
    const struct pool_attempt *a)
{
	size_t	i, ok = 0, done = 0;

	if (m->jobs_out != 1 || deliver_has_escalations(m->id))
		return (false);
	for (i = 0; i < j->nrcpts; i++) {
		const struct smtp_client_result *r = a->rcpt != NULL ?
		    &a->rcpt[i] : a->overall;

		if (r->outcome != SMTPC_OK)
			return (false);
		ok++;
	}
	for (i = 0; i < m->env.nrcpts; i++) {
		if (m->failed_now[i])
			return (false);
		if (m->env.rcpts[i].state == SPOOL_RCPT_DELIVERED)
			done++;
	}
	/* This job's recipients are still pending until the loop below. */
	return (done + ok == m->env.nrcpts);
}

/* The pool's result callback: one transaction (or none) for one job. */
static void
deliver_result(struct pool_job *j, const struct pool_attempt *a,
    uint64_t conn_id)
{
	struct deliver_msg	*m = j->owner;
	struct deliver_wait	*w;
	double			 delay;
	size_t			 i, sent = 0, deferred = 0, failed = 0;
	bool			 remove_now;

	remove_now = deliver_all_done(m, j, a);
	w = xcalloc(1, sizeof(*w));
	w->conn_id = conn_id;
	w->msgid = m->id;
	w->remaining = 1;	/* released below, after the loop */
	delay = (double)(util_wallclock() - m->env.queued_at);

	for (i = 0; i < j->nrcpts; i++) {
		const struct smtp_client_result *r = a->rcpt != NULL ?
		    &a->rcpt[i] : a->overall;
		struct spool_rcpt	*rc = &m->env.rcpts[j->rcpt_idx[i]];
		struct spool_record	 rec;
		const char		*status;

		switch (r->outcome) {
		case SMTPC_OK:
			status = "sent";
			rc->state = SPOOL_RCPT_DELIVERED;
			memset(&rec, 0, sizeof(rec));
			rec.type = SPOOL_REC_RCPT_DONE;
			rec.rcpt_index = (int)j->rcpt_idx[i];
			rec.outcome = SPOOL_RCPT_DELIVERED;
			strlcpy(rec.dsn, r->status, sizeof(rec.dsn));
			rec.reply = r->reply;
			rec.remote = a->relay;
			if (!remove_now && spool_journal_append(
			    deliver_env.spool, m->id, &rec,
			    deliver_journal_done, 0, w) == 0)
				w->remaining++;
			sent++;
			break;
		case SMTPC_PERMFAIL:
			/* Recorded after the bounce is queued. */
			status = "bounced";
			rc->state = SPOOL_RCPT_FAILED;
			strlcpy(rc->dsn, r->status, sizeof(rc->dsn));
			free(rc->reply);
			rc->reply = xstrdup(r->reply);
			free(rc->remote);
			rc->remote = xstrdup(a->relay);
			m->failed_now[j->rcpt_idx[i]] = true;
			failed++;
			break;
		default:
			status = "deferred";
			/* Truncation is fine: this is a summary. */
			strlcpy(m->last_error, a->relay, sizeof(m->last_error));
			strlcat(m->last_error, ": ", sizeof(m->last_error));
			strlcat(m->last_error, r->reply, sizeof(m->last_error));
			deferred++;
			break;
		}
		log_delivery(m->idstr, rc->addr, a->relay, delay, a->tls,
		    a->verified, r->status, status, r->reply);
		metrics_observe_delivery(j->dest, status, delay, a->tls,
		    a->verified);
	}
	assert(sent + deferred + failed == j->nrcpts);
	if (remove_now && spool_remove(deliver_env.spool, m->id,
	    deliver_journal_done, 0, w) == 0) {
		w->remaining++;
		m->removed = true;
	} else if (remove_now)
		log_warnx("%s: cannot ask for the removal of the delivered "
		    "message; it may be sent again after a restart", m->idstr);
	free(j->rcpts);
	free(j->rcpt_idx);
	free(j);
	m->jobs_out--;
	m->records_out++;
	deliver_journal_done(0, 0, w);
}

/* Worker thread: the signature (libopendkim, thread-safe per call). */
static void
deliver_sign_work(void *arg)
{
	struct deliver_sign	*sg = arg;

	sg->rc = dkimsign_sign_fd(sg->rt->dkim, sg->fd, sg->offset, sg->len,
	    &sg->out, sg->err, sizeof(sg->err));
}

/* Loop thread: sign result in; dispatch, or defer the whole message. */
static void
deliver_sign_done(void *arg)
{
	struct deliver_sign	*sg = arg;
	struct deliver_msg	*m = util_map_get(&deliver_msgs, sg->id);

	close(sg->fd);
	rtconf_unref(sg->rt);
	if (m == NULL) {
		free(sg->out);
		free(sg);
		return;
	}
	if (sg->rc == -1) {
		/* A message for a domain with keys never leaves unsigned. */
		stats.dkim_errors++;
		log_warnx("%s: DKIM signing failed: %s", m->idstr, sg->err);
		snprintf(m->last_error, sizeof(m->last_error), "4.7.0 DKIM "
		    "signing failed: %s", sg->err);
		free(sg);
		deliver_msg_finish(m);
		return;
	}
	if (sg->rc == 1) {
		stats.dkim_signed++;
		m->dkim = sg->out;
		m->dkimlen = strlen(sg->out);
	}
	free(sg);
	deliver_dispatch(m);
}

/*
 * Sign at delivery time, once per attempt, off the loop (doc/dkim.md says
 * why); without keys go straight to dispatch.
 */
static void
deliver_sign_start(struct deliver_msg *m)
{
	struct rtconf		*rt = rtconf_current();
	struct deliver_sign	*sg;

	if (dkimsign_count(rt->dkim) == 0 || deliver_env.workers == NULL) {
		deliver_dispatch(m);
		return;
	}
	sg = xcalloc(1, sizeof(*sg));
	sg->id = m->id;
	if (spool_open_body(deliver_env.spool, m->id, &sg->fd, &sg->offset,
	    &sg->len) == -1) {
		log_warn("%s: cannot open queue file for signing", m->idstr);
		strlcpy(m->last_error, "4.3.0 queue file unreadable",
		    sizeof(m->last_error));
		free(sg);
		deliver_msg_finish(m);
		return;
	}
	sg->rt = rtconf_ref(rt);
	if (worker_submit(deliver_env.workers, deliver_sign_work,
	    deliver_sign_done, sg) == -1) {
		close(sg->fd);
		rtconf_unref(sg->rt);
		free(sg);
		strlcpy(m->last_error, "4.3.0 signing queue full",
		    sizeof(m->last_error));
		deliver_msg_finish(m);
	}
}

/* Start an attempt for a due message. */
static void
deliver_start(struct queue_msg *qm)
{
	struct deliver_msg	*m;
	const struct conf	*conf = deliver_conf();

	queue_set_next_attempt(deliver_env.queue, qm, DELIVER_IN_FLIGHT);
	if (util_map_get(&deliver_msgs, qm->id) != NULL)
		return;		/* a flush while in flight: nothing to do */
	queue_set_state(deliver_env.queue, qm, QUEUE_ACTIVE);

	m = xcalloc(1, sizeof(*m));
	m->id = qm->id;
	util_qid_format(m->idstr, m->id);
	if (spool_load(deliver_env.spool, m->id, &m->env) == -1) {
		log_warn("%s: cannot read queue file", m->idstr);
		free(m);
		queue_set_state(deliver_env.queue, qm, QUEUE_DEFERRED);
		queue_set_next_attempt(deliver_env.queue, qm,
		    util_wallclock() + conf->retry.initial);
		return;
	}
	m->failed_now = xcalloc(m->env.nrcpts + 1, sizeof(*m->failed_now));
	if (m->env.last_error != NULL)
		strlcpy(m->last_error, m->env.last_error,
		    sizeof(m->last_error));
	util_map_put(&deliver_msgs, m->id, m);
	deliver_sign_start(m);
}

/* Split the pending recipients into one pool job per destination. */
static void
deliver_dispatch(struct deliver_msg *m)
{
	const struct conf	*conf = deliver_conf();
	struct pool_job		**jobs = NULL;
	size_t			 njobs = 0, i, k;
	bool			 smarthost = conf->delivery.smarthost.host !=
				    NULL;

	/* One job per destination; recipients keep their envelope order. */
	for (i = 0; i < m->env.nrcpts; i++) {
		struct spool_rcpt	*rc = &m->env.rcpts[i];
		char			 dest[256];
		struct pool_job		*j = NULL;

		if (rc->state != SPOOL_RCPT_PENDING)
			continue;
		strlcpy(dest, smarthost ? conf->delivery.smarthost.host :
		    deliver_domain_of(rc->addr), sizeof(dest));
		util_lowercase(dest);
		for (k = 0; k < njobs; k++)
			if (strcmp(jobs[k]->dest, dest) == 0)
				j = jobs[k];
		if (j == NULL) {
			jobs = xreallocarray(jobs, njobs + 1, sizeof(*jobs));
			j = jobs[njobs++] = xcalloc(1, sizeof(*j));
			j->id = deliver_next_job++;
			j->msgid = m->id;
			strlcpy(j->dest, dest, sizeof(j->dest));
			j->sender = m->env.sender;
			j->eightbit = (m->env.flags & SPOOL_F_8BITMIME) != 0;
			j->smtputf8 = (m->env.flags & SPOOL_F_SMTPUTF8) != 0;
			j->prefix = m->dkim;
			j->prefix_len = m->dkimlen;
			j->owner = m;
		}
		j->rcpts = xreallocarray(j->rcpts, j->nrcpts + 1,
		    sizeof(*j->rcpts));
		j->rcpt_idx = xreallocarray(j->rcpt_idx, j->nrcpts + 1,
		    sizeof(*j->rcpt_idx));
		j->rcpts[j->nrcpts] = rc->addr;
		j->rcpt_idx[j->nrcpts++] = i;
	}
	m->jobs_out = (int)njobs;
	if (njobs == 0) {
		free(jobs);
		deliver_msg_finish(m);
		return;
	}
	for (k = 0; k < njobs; k++)
		pool_submit(jobs[k]);
	free(jobs);
}

static void
deliver_record_final(struct deliver_msg *m, size_t i)
{
	struct spool_rcpt	*rc = &m->env.rcpts[i];
	struct spool_record	 rec;

	memset(&rec, 0, sizeof(rec));
	rec.type = SPOOL_REC_RCPT_DONE;
	rec.rcpt_index = (int)i;
	rec.outcome = rc->state;
	strlcpy(rec.dsn, rc->dsn, sizeof(rec.dsn));
	rec.reply = rc->reply;
	rec.remote = rc->remote;
	(void)spool_journal_append(deliver_env.spool, m->id, &rec, NULL, 0,
	    NULL);
}

static const char *
deliver_esc_str(struct deliver_esc *e, const char *v)
{
	char	*c = xstrdup(v != NULL ? v : "");

	e->strs = xreallocarray(e->strs, e->nstrs + 1, sizeof(*e->strs));
	e->strs[e->nstrs++] = c;
	return (c);
}

static void
deliver_esc_free(struct deliver_esc *e)
{
	size_t	i;

	TAILQ_REMOVE(&deliver_esc_live, e, entry);
	for (i = 0; i < e->nstrs; i++)
		free(e->strs[i]);
	free(e->strs);
	free(e->rcpts);
	free(e);
}

/* The Message-ID of a queued message, from its header section. */
static void
deliver_message_id(qid_t id, char *buf, size_t len)
{
	struct smtp_data_hdrinfo	 hi;
	char				*hdr, *end;
	int				 fd;
	off_t				 off;
	uint64_t			 blen;
	ssize_t				 n;

	buf[0] = '\0';
	if (spool_open_body(deliver_env.spool, id, &fd, &off, &blen) == -1)
		return;
	hdr = xmalloc(65536 + 1);
	n = pread(fd, hdr, blen < 65536 ? (size_t)blen : 65536, off);
	close(fd);
	if (n > 0) {
		hdr[n] = '\0';
		if ((end = strstr(hdr, "\r\n\r\n")) != NULL)
			n = end - hdr + 2;
		memset(&hi, 0, sizeof(hi));
		if (smtp_data_scan_headers(hdr, (size_t)n, &hi) == 0)
			strlcpy(buf, hi.message_id, len);
	}
	free(hdr);
}

static void
deliver_esc_settled(qid_t id)
{
	uintptr_t	n = (uintptr_t)util_map_get(&deliver_escs, id);

	if (n > 1) {
		util_map_put(&deliver_escs, id, (void *)(n - 1));
		return;
	}
	util_map_del(&deliver_escs, id);
	/* Nothing else needs the file once delivery is over too. */
	if (queue_get(deliver_env.queue, id) == NULL) {
		char	idstr[QUEUE_ID_LEN + 1];

		util_qid_format(idstr, id);
		spool_remove(deliver_env.spool, id, NULL, 0, NULL);
		log_info("%s: removed", idstr);
	}
}

static void
deliver_esc_done(uint64_t cookie, void *arg)
{
	struct deliver_esc	*e = arg;
	struct spool_record	 rec;

	memset(&rec, 0, sizeof(rec));
	rec.type = SPOOL_REC_ESCALATION_DONE;
	rec.event = e->event;
	(void)spool_journal_append(deliver_env.spool, e->id, &rec, NULL, 0,
	    NULL);
	deliver_esc_settled(e->id);
	deliver_esc_free(e);
}

static void
deliver_esc_start(uint64_t cookie, int error, void *arg)
{
	struct deliver_esc	*e = arg;

	if (error != 0 || deliver_hook == NULL ||
	    hook_run(deliver_hook, &e->ev, deliver_esc_done, e->id, e) == -1) {
		char	id[QUEUE_ID_LEN + 1];

		/* Stays pending in the journal: a restart runs it. */
		util_qid_format(id, e->id);
		log_warnx("%s: escalation could not be started", id);
		deliver_esc_free(e);
		return;
	}
}

/*
 * Build and start the escalation of event for a message whose recipients
 * in the matching final state are listed; journal it first unless it is
 * already pending (a recovered message).
 */
static void
deliver_escalate(const struct spool_envelope *env, int event, bool journal)
{
	const struct conf	*conf = deliver_conf();
	struct deliver_esc	*e;
	struct spool_record	 rec;
	char			 msgid[256];
	int			 want = event == DELIVER_EV_FAILED ?
				    SPOOL_RCPT_FAILED : SPOOL_RCPT_EXPIRED;
	size_t			 i;

	if (deliver_hook == NULL || (conf->escalation.events &
	    (event == DELIVER_EV_FAILED ? CONF_EVENT_FAILED :
	    CONF_EVENT_EXPIRED)) == 0)
		return;
	e = xcalloc(1, sizeof(*e));
	TAILQ_INSERT_TAIL(&deliver_esc_live, e, entry);
	e->id = env->id;
	e->event = event;
	e->rcpts = xcalloc(env->nrcpts + 1, sizeof(*e->rcpts));
	for (i = 0; i < env->nrcpts; i++) {
		const struct spool_rcpt	*r = &env->rcpts[i];
		struct hook_rcpt	*h;

		if (r->state != want)
			continue;
		h = &e->rcpts[e->ev.nrcpts++];
		h->address = deliver_esc_str(e, r->addr);
		h->dsn = deliver_esc_str(e, r->dsn);
		h->reply = deliver_esc_str(e, r->reply);
		/* SPEC 6 shows "host[addr]", without the port. */
		h->remote = deliver_esc_str(e, r->remote);
		if (strchr(h->remote, ']') != NULL)
			strchr(h->remote, ']')[1] = '\0';
	}
	if (e->ev.nrcpts == 0) {
		deliver_esc_free(e);
		return;
	}
	deliver_message_id(env->id, msgid, sizeof(msgid));
	e->ev.id = env->id;
	e->ev.event = event == DELIVER_EV_FAILED ? "failed" : "expired";
	e->ev.message_id = deliver_esc_str(e, msgid);
	e->ev.sender = deliver_esc_str(e, env->sender);
	e->ev.rcpts = e->rcpts;
	e->ev.attempts = env->attempts;
	e->ev.queued_at = env->queued_at;
	e->ev.failed_at = util_wallclock();
	e->ev.hostname = deliver_esc_str(e, conf->hostname);
	util_map_put(&deliver_escs, env->id, (void *)((uintptr_t)
	    util_map_get(&deliver_escs, env->id) + 1));
	if (!journal) {
		deliver_esc_start(0, 0, e);
		return;
	}
	memset(&rec, 0, sizeof(rec));
	rec.type = SPOOL_REC_ESCALATION_PENDING;
	rec.event = event;
	if (spool_journal_append(deliver_env.spool, env->id, &rec,
	    deliver_esc_start, env->id, e) == -1) {
		deliver_esc_settled(env->id);
		deliver_esc_free(e);
	}
}

void
deliver_recovered_escalations(const struct spool_envelope *env)
{
	if (env->escalations_pending & (1u << DELIVER_EV_FAILED))
		deliver_escalate(env, DELIVER_EV_FAILED, false);
	if (env->escalations_pending & (1u << DELIVER_EV_EXPIRED))
		deliver_escalate(env, DELIVER_EV_EXPIRED, false);
}

bool
deliver_has_escalations(qid_t id)
{
	return (util_map_get(&deliver_escs, id) != NULL);
}

/* Second half of finishing: record finals, then reschedule or remove. */
static void
deliver_msg_settle(struct deliver_msg *m)
{
	struct queue_msg	*qm = queue_get(deliver_env.queue, m->id);
	struct spool_record	 rec;
	int64_t			 now = util_wallclock();
	uint32_t		 pending = 0;
	bool			 any_failed = false, any_expired = false;
	size_t			 i;

	for (i = 0; i < m->env.nrcpts; i++) {
		if (m->failed_now[i]) {
			deliver_record_final(m, i);
			if (m->env.rcpts[i].state == SPOOL_RCPT_EXPIRED)
				any_expired = true;
			else
				any_failed = true;
		}
		if (m->env.rcpts[i].state == SPOOL_RCPT_PENDING)
			pending++;
	}
	if (any_failed)
		stats.messages_failed++;
	if (any_expired)
		stats.messages_expired++;
	m->env.attempts++;
	if ((any_failed || any_expired) && pending == 0) {
		/*
		 * The last attempt of a message that is over: record it, so
		 * an escalation re-run after a restart reports the same count.
		 */
		memset(&rec, 0, sizeof(rec));
		rec.type = SPOOL_REC_ATTEMPT;
		rec.attempts = m->env.attempts;
		rec.next_attempt = now;
		rec.last_error = m->last_error;
		(void)spool_journal_append(deliver_env.spool, m->id, &rec, NULL,
		    0, NULL);
	}
	if (any_failed)
		deliver_escalate(&m->env, DELIVER_EV_FAILED, true);
	if (any_expired)
		deliver_escalate(&m->env, DELIVER_EV_EXPIRED, true);

	if (qm == NULL) {
		/* Deleted by the operator while in flight. */
		deliver_msg_free(m);
		return;
	}
	if (pending == 0) {
		if (!any_failed && !any_expired)
			stats.messages_delivered++;
		queue_remove(deliver_env.queue, m->id);
		/* An escalation in progress keeps the file until it is done. */
		if (!deliver_has_escalations(m->id)) {
			if (!m->removed)
				spool_remove(deliver_env.spool, m->id, NULL, 0,
				    NULL);
			log_info("%s: removed", m->idstr);
		}
		deliver_msg_free(m);
		deliver_schedule();
		return;
	}
	memset(&rec, 0, sizeof(rec));
	rec.type = SPOOL_REC_ATTEMPT;
	rec.attempts = m->env.attempts;
	rec.next_attempt = deliver_next_attempt(rec.attempts, now);
	rec.last_error = m->last_error;
	(void)spool_journal_append(deliver_env.spool, m->id, &rec, NULL, 0,
	    NULL);
	qm->attempts = (uint16_t)(rec.attempts > UINT16_MAX ? UINT16_MAX :
	    rec.attempts);
	qm->nrcpt_pending = pending;
	queue_set_last_error(qm, m->last_error[0] != '\0' ? m->last_error :
	    NULL);
	if (qm->state != QUEUE_HELD)
		queue_set_state(deliver_env.queue, qm, QUEUE_DEFERRED);
	queue_set_next_attempt(deliver_env.queue, qm, rec.next_attempt);
	deliver_msg_free(m);
	deliver_schedule();
}

static void
deliver_bounce_done(uint64_t cookie, int error, void *arg)
{
	struct deliver_msg	*m = util_map_get(&deliver_msgs, cookie);

	if (m == NULL)
		return;
	if (error != 0) {
		/*
		 * The bounce is not queued: keep the recipients pending so
		 * that the next attempt decides (and bounces) again.
		 */
		size_t	i;

		errno = error;
		log_warn("%s: cannot queue the delivery status notification",
		    m->idstr);
		for (i = 0; i < m->env.nrcpts; i++) {
			if (m->failed_now[i]) {
				m->failed_now[i] = false;
				m->env.rcpts[i].state = SPOOL_RCPT_PENDING;
			}
		}
	}
	deliver_msg_settle(m);
}

/* Every job is back and its deliveries are durable. */
static void
deliver_msg_finish(struct deliver_msg *m)
{
	const struct conf	*conf = deliver_conf();
	int64_t			 now = util_wallclock();
	bool			 newly = false;
	size_t			 i;

	if (m->finishing)
		return;
	m->finishing = true;
	/* Past max_age, what is still pending expires now. */
	if (now - m->env.queued_at >= conf->retry.max_age) {
		for (i = 0; i < m->env.nrcpts; i++) {
			struct spool_rcpt *rc = &m->env.rcpts[i];

			if (rc->state != SPOOL_RCPT_PENDING)
				continue;
			rc->state = SPOOL_RCPT_EXPIRED;
			strlcpy(rc->dsn, "4.4.7", sizeof(rc->dsn));
			free(rc->reply);
			xasprintf(&rc->reply, "delivery time expired%s%s",
			    m->last_error[0] != '\0' ? ": " : "",
			    m->last_error);
			m->failed_now[i] = true;
			log_delivery(m->idstr, rc->addr, "none",
			    (double)(now - m->env.queued_at), "none", false,
			    "4.4.7", "expired", rc->reply);
			{
				char	dom[256];

				strlcpy(dom, deliver_domain_of(rc->addr),
				    sizeof(dom));
				util_lowercase(dom);
				metrics_observe_delivery(dom, "expired",
				    (double)(now - m->env.queued_at), "none",
				    false);
			}
		}
	}
	for (i = 0; i < m->env.nrcpts; i++)
		newly |= m->failed_now[i];
	if (newly && m->env.sender[0] != '\0' && conf->bounces.enabled) {
		if (dsn_bounce(deliver_env.spool, &m->env, m->failed_now,
		    conf->hostname, deliver_bounce_done, m->id,
		    deliver_env.queue) == 0)
			return;
		log_warnx("%s: cannot create the delivery status "
		    "notification", m->idstr);
	} else if (newly && m->env.sender[0] == '\0')
		log_info("%s: no notification to the null sender", m->idstr);
	deliver_msg_settle(m);
}

static void
deliver_timer_cb(evutil_socket_t fd, short ev, void *arg)
{
	deliver_schedule();
}

/* Start every due message we have room for; arm the timer for the next. */
static void
deliver_schedule(void)
{
	struct queue_msg	*qm;
	struct timeval		 tv = { DELIVER_TICK_MAX, 0 };
	int64_t			 now = util_wallclock();

	if (deliver_stopping)
		return;
	while (deliver_msgs.len < DELIVER_INFLIGHT_MAX &&
	    (qm = queue_peek_due(deliver_env.queue)) != NULL &&
	    qm->next_attempt <= now)
		deliver_start(qm);
	qm = queue_peek_due(deliver_env.queue);
	if (qm != NULL && qm->next_attempt != DELIVER_IN_FLIGHT &&
	    qm->next_attempt - now < DELIVER_TICK_MAX)
		tv.tv_sec = qm->next_attempt > now ? qm->next_attempt - now :
		    1;
	evtimer_add(deliver_timer, &tv);
}

void
deliver_kick(void)
{
	deliver_schedule();
}

void
deliver_init(const struct deliver_env *env)
{
	struct pool_env	pe;

	const struct conf	*conf = deliver_conf();
	char			 err[256];

	deliver_env = *env;
	util_map_init(&deliver_msgs);
	util_map_init(&deliver_escs);
	if (conf->escalation.command != NULL &&
	    conf->escalation.command[0] != '\0') {
		deliver_hook = hook_new(env->base, conf->escalation.command,
		    conf->escalation.timeout, DELIVER_HOOK_RETRY_BASE, err,
		    sizeof(err));
		if (deliver_hook == NULL)
			log_warnx("escalation: %s", err);
	}
	deliver_timer = evtimer_new(env->base, deliver_timer_cb, NULL);
	memset(&pe, 0, sizeof(pe));
	pe.base = env->base;
	pe.spool = env->spool;
	pe.dns = env->dns;
	pe.result = deliver_result;
	pool_init(&pe);
	deliver_schedule();
}

void
deliver_shutdown(void)
{
	deliver_stopping = true;
	evtimer_del(deliver_timer);
	pool_shutdown();
}

size_t
deliver_in_flight(void)
{
	return (deliver_msgs.len);
}

void
deliver_free(void)
{
	size_t		 it = 0;
	uint64_t	 k;
	void		*v;

	pool_free_all();
	route_cancel_all();
	hook_free(deliver_hook);
	deliver_hook = NULL;
	/* Pending escalations stay pending in the spool for the next start. */
	while (!TAILQ_EMPTY(&deliver_esc_live))
		deliver_esc_free(TAILQ_FIRST(&deliver_esc_live));
	util_map_clear(&deliver_escs);
	while (util_map_next(&deliver_msgs, &it, &k, &v)) {
		struct deliver_msg *m = v;

		spool_envelope_free(&m->env);
		free(m->failed_now);
		free(m);
	}
	util_map_clear(&deliver_msgs);
	if (deliver_timer != NULL)
		event_free(deliver_timer);
}
