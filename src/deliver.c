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

#include <event2/event.h>

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "deliver.h"
#include "dsn.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "queue.h"
#include "rtconf.h"
#include "smtp_client.h"
#include "spool.h"
#include "stats.h"
#include "util.h"

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
	char			 last_error[SPOOL_ERROR_MAX];
};

/* Outcomes of one transaction being made durable before reuse. */
struct deliver_wait {
	uint64_t	 conn_id;
	qid_t		 msgid;
	int		 remaining;
};

static struct deliver_env	 deliver_env;
static struct util_map		 deliver_msgs;	/* id -> deliver_msg */
static struct event		*deliver_timer;
static bool			 deliver_stopping;
static uint64_t			 deliver_next_job = 1;

static void	deliver_schedule(void);
static void	deliver_msg_finish(struct deliver_msg *);

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

/* The pool's result callback: one transaction (or none) for one job. */
static void
deliver_result(struct pool_job *j, const struct pool_attempt *a,
    uint64_t conn_id)
{
	struct deliver_msg	*m = j->owner;
	struct deliver_wait	*w;
	double			 delay;
	size_t			 i, sent = 0, deferred = 0, failed = 0;

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
			if (spool_journal_append(deliver_env.spool, m->id, &rec,
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
	free(j->rcpts);
	free(j->rcpt_idx);
	free(j);
	m->jobs_out--;
	m->records_out++;
	deliver_journal_done(0, 0, w);
}

/* Start an attempt for a due message. */
static void
deliver_start(struct queue_msg *qm)
{
	struct deliver_msg	*m;
	const struct conf	*conf = deliver_conf();
	struct pool_job		**jobs = NULL;
	size_t			 njobs = 0, i, k;
	bool			 smarthost = conf->delivery.smarthost.host !=
				    NULL;

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

	if (qm == NULL) {
		/* Deleted by the operator while in flight. */
		deliver_msg_free(m);
		return;
	}
	if (pending == 0) {
		if (!any_failed && !any_expired)
			stats.messages_delivered++;
		spool_remove(deliver_env.spool, m->id, NULL, 0, NULL);
		queue_remove(deliver_env.queue, m->id);
		log_info("%s: removed", m->idstr);
		deliver_msg_free(m);
		deliver_schedule();
		return;
	}
	memset(&rec, 0, sizeof(rec));
	rec.type = SPOOL_REC_ATTEMPT;
	rec.attempts = m->env.attempts + 1;
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

	deliver_env = *env;
	util_map_init(&deliver_msgs);
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
