/*
 * pool.c: the bounded pool of upstream SMTP connections (SPEC section 4).
 *
 * Invariants:
 * - pool_nconns (every connection from the moment its route lookup starts
 *   until it is freed) never exceeds min(delivery.pool_size, 100), and a
 *   destination's nconns never exceeds delivery.max_per_destination.  Both
 *   are checked in one place, pool_can_open().
 * - A job is in exactly one place: a destination FIFO, a connection
 *   (conn->job), or handed to the result callback.
 * - Waiting for a slot is not an attempt: jobs only leave the FIFO for a
 *   connection that is ready, or when the destination itself failed
 *   (route failure, or every address refused) while no other connection
 *   to it was working.
 * - After a transaction the connection waits (POOL_C_WAIT) until deliver.c
 *   has made the outcome durable and calls pool_resume(): at most one
 *   unrecorded transaction per connection, which bounds duplicates after a
 *   crash to the transactions in flight.
 *
 * Fairness: destinations with waiting jobs sit in a ring; each dispatch
 * pass gives every destination at most one new connection or one job
 * before moving on, so a destination with 10,000 messages cannot take the
 * slots of the others beyond max_per_destination.
 *
 * Ownership: the pool owns destinations, connections and their clients;
 * connections are freed late from the loop (by id), never inside a client
 * callback.
 */
#include "compat.h"

#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "dns.h"
#include "log.h"
#include "pool.h"
#include "route.h"
#include "rtconf.h"
#include "smtp_client.h"
#include "spool.h"
#include "stats.h"
#include "tls.h"
#include "util.h"

enum pool_conn_state {
	POOL_C_ROUTING,		/* waiting for the route */
	POOL_C_CONNECTING,	/* connect, greeting, EHLO, STARTTLS, AUTH */
	POOL_C_RESETTING,	/* RSET before reuse */
	POOL_C_BUSY,		/* a transaction in flight */
	POOL_C_WAIT,		/* outcome being journaled */
	POOL_C_IDLE,
	POOL_C_QUITTING,	/* QUIT sent; still open, still counted */
	POOL_C_DEAD		/* free scheduled */
};

struct pool_dest;

struct pool_conn {
	uint64_t		 id;
	struct pool_dest	*dest;		/* borrowed */
	struct smtp_client	*client;	/* owned */
	enum pool_conn_state	 state;
	struct route_result	 route;
	size_t			 hop;
	bool			 plaintext_retry;
	bool			 was_ready;
	bool			 reusable;
	int			 nsent;
	struct pool_job		*job;		/* owned while here */
	int			 body_fd;
	struct event		*idle_timer;	/* owned */
	double			 t_start;
	double			 conn_time;
	char			 relay[320];
	TAILQ_ENTRY(pool_conn)	 entry;		/* dest->conns */
};

struct pool_dest {
	char			 key[256];
	struct pool_job		*head, *tail;
	size_t			 njobs;
	size_t			 nconns;
	bool			 in_ring;
	TAILQ_HEAD(, pool_conn)	 conns;
	TAILQ_ENTRY(pool_dest)	 ring;
};

static struct pool_env		 pool_env;
static struct util_map		 pool_dests;	/* hash(key) -> dest */
static struct util_map		 pool_conns;	/* id -> conn */
static TAILQ_HEAD(, pool_dest)	 pool_ring = TAILQ_HEAD_INITIALIZER(pool_ring);
static size_t			 pool_nconns;
static size_t			 pool_nwaiting;
static size_t			 pool_peak;
static size_t			 pool_nquitting;
static uint64_t			 pool_next_id = 1;
static bool			 pool_stopping;
static bool			 pool_running;
static SSL_CTX			*pool_ssl;
static char			*pool_smarthost_pass;

static void	pool_run(void);
static void	pool_conn_connect(struct pool_conn *);

static const struct conf *
pool_conf(void)
{
	return (rtconf_current()->conf);
}

static size_t
pool_cap(void)
{
	size_t	n = (size_t)pool_conf()->delivery.pool_size;

	return (n > POOL_HARD_CAP ? POOL_HARD_CAP : n);
}

static uint64_t
pool_hash(const char *s)
{
	uint64_t	h = 1469598103934665603ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return (h == 0 ? 1 : h);
}

/*
 * Destinations are kept for the life of the process (one small struct per
 * destination domain ever seen).  XXX: an operator relaying to millions of
 * distinct domains would want idle destinations reaped; not needed for
 * the platform's traffic, which goes to a bounded set of providers.
 */
static struct pool_dest *
pool_dest_get(const char *key)
{
	struct pool_dest	*d;
	uint64_t		 h = pool_hash(key);

	while ((d = util_map_get(&pool_dests, h)) != NULL) {
		if (strcmp(d->key, key) == 0)
			return (d);
		h = h + 1 == 0 ? 1 : h + 1;
	}
	d = xcalloc(1, sizeof(*d));
	strlcpy(d->key, key, sizeof(d->key));
	TAILQ_INIT(&d->conns);
	util_map_put(&pool_dests, h, d);
	return (d);
}

static void
pool_ring_add(struct pool_dest *d)
{
	if (!d->in_ring && d->njobs > 0) {
		TAILQ_INSERT_TAIL(&pool_ring, d, ring);
		d->in_ring = true;
	}
}

static void
pool_ring_del(struct pool_dest *d)
{
	if (d->in_ring) {
		TAILQ_REMOVE(&pool_ring, d, ring);
		d->in_ring = false;
	}
}

static struct pool_job *
pool_dest_pop(struct pool_dest *d)
{
	struct pool_job	*j = d->head;

	if (j == NULL)
		return (NULL);
	d->head = j->next;
	if (d->head == NULL)
		d->tail = NULL;
	j->next = NULL;
	d->njobs--;
	pool_nwaiting--;
	if (d->njobs == 0)
		pool_ring_del(d);
	return (j);
}

static void
pool_dest_push(struct pool_dest *d, struct pool_job *j, bool front)
{
	if (front) {
		j->next = d->head;
		d->head = j;
		if (d->tail == NULL)
			d->tail = j;
	} else {
		j->next = NULL;
		if (d->tail != NULL)
			d->tail->next = j;
		else
			d->head = j;
		d->tail = j;
	}
	d->njobs++;
	pool_nwaiting++;
	pool_ring_add(d);
}

/* Hand a job back to deliver.c without a transaction. */
static void
pool_job_unattempted(struct pool_job *j, enum smtp_client_outcome outcome,
    int code, const char *status, const char *reply, const char *relay)
{
	struct smtp_client_result	 r;
	struct pool_attempt		 a;

	memset(&r, 0, sizeof(r));
	r.outcome = outcome;
	r.code = code;
	strlcpy(r.status, status, sizeof(r.status));
	strlcpy(r.reply, reply, sizeof(r.reply));
	strlcpy(r.stage, "CONNECT", sizeof(r.stage));
	memset(&a, 0, sizeof(a));
	a.overall = &r;
	strlcpy(a.relay, relay != NULL ? relay : "none", sizeof(a.relay));
	strlcpy(a.tls, "none", sizeof(a.tls));
	pool_env.result(j, &a, 0);
}

/* The destination cannot be reached now: settle every waiting job. */
static void
pool_dest_fail(struct pool_dest *d, enum smtp_client_outcome outcome,
    int code, const char *status, const char *reply, const char *relay)
{
	struct pool_conn	*c;
	struct pool_job		*j;

	/* Another connection still works: let it carry the jobs. */
	TAILQ_FOREACH(c, &d->conns, entry)
		if (c->was_ready && c->state != POOL_C_DEAD)
			return;
	while ((j = pool_dest_pop(d)) != NULL)
		pool_job_unattempted(j, outcome, code, status, reply, relay);
}

static void
pool_conn_free_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct pool_conn	*c;

	c = util_map_del(&pool_conns, (uint64_t)(uintptr_t)arg);
	if (c == NULL)
		return;
	if (c->body_fd != -1)
		close(c->body_fd);
	event_free(c->idle_timer);
	free(c);
	pool_run();
}

/* Take c out of the pool now; free it from the loop. */
static void
pool_conn_kill(struct pool_conn *c)
{
	if (c->state == POOL_C_DEAD)
		return;
	if (c->state == POOL_C_QUITTING)
		pool_nquitting--;
	c->state = POOL_C_DEAD;
	evtimer_del(c->idle_timer);
	/* No client callback may reach c after this. */
	smtp_client_free(c->client);
	c->client = NULL;
	TAILQ_REMOVE(&c->dest->conns, c, entry);
	c->dest->nconns--;
	pool_nconns--;
	if (c->job != NULL) {
		/* Not sent: back to the front of its FIFO, no attempt. */
		pool_dest_push(c->dest, c->job, true);
		c->job = NULL;
	}
	event_base_once(pool_env.base, -1, EV_TIMEOUT, pool_conn_free_cb,
	    (void *)(uintptr_t)c->id, NULL);
}

/* Polite close: QUIT; the slot stays counted until the socket is gone. */
static void
pool_conn_quit(struct pool_conn *c)
{
	evtimer_del(c->idle_timer);
	c->state = POOL_C_QUITTING;
	pool_nquitting++;
	smtp_client_quit(c->client);
}

static void
pool_conn_idle_timeout(evutil_socket_t fd, short ev, void *arg)
{
	struct pool_conn	*c = arg;

	if (c->state != POOL_C_IDLE)
		return;
	log_debug("pool: %s: idle timeout", c->relay);
	pool_conn_quit(c);
}

static void
pool_conn_send(struct pool_conn *c)
{
	struct smtp_client_msg	 m;
	struct pool_job		*j = c->job;
	off_t			 off;
	uint64_t		 len;

	if (spool_open_body(pool_env.spool, j->msgid, &c->body_fd, &off, &len)
	    == -1) {
		char	id[QUEUE_ID_LEN + 1];

		util_qid_format(id, j->msgid);
		log_warn("%s: cannot open queue file", id);
		c->job = NULL;
		c->state = POOL_C_IDLE;
		pool_job_unattempted(j, SMTPC_TEMPFAIL, 0, "4.3.0",
		    "queue file unreadable", c->relay);
		pool_run();
		return;
	}
	memset(&m, 0, sizeof(m));
	m.sender = j->sender;
	m.rcpts = j->rcpts;
	m.nrcpts = j->nrcpts;
	m.body_fd = c->body_fd;
	m.body_offset = off;
	m.body_len = len;
	m.eightbit = j->eightbit;
	m.smtputf8 = j->smtputf8;
	m.prefix = j->prefix;
	m.prefix_len = j->prefix_len;
	c->state = POOL_C_BUSY;
	if (smtp_client_send(c->client, &m) == -1) {
		log_warnx("pool: %s: cannot start a transaction", c->relay);
		pool_conn_kill(c);
	}
}

/* Give an idle (or freshly reset) connection the next job of its dest. */
static bool
pool_conn_take(struct pool_conn *c)
{
	struct pool_job	*j;

	if (pool_stopping || (j = pool_dest_pop(c->dest)) == NULL)
		return (false);
	evtimer_del(c->idle_timer);
	c->job = j;
	if (c->nsent > 0) {
		/* SPEC 4: RSET between messages on a reused connection. */
		c->state = POOL_C_RESETTING;
		if (smtp_client_reset(c->client) == -1)
			pool_conn_kill(c);
		return (true);
	}
	pool_conn_send(c);
	return (true);
}

static void
pool_conn_make_idle(struct pool_conn *c)
{
	struct timeval	tv = { pool_conf()->delivery.idle_timeout, 0 };

	c->state = POOL_C_IDLE;
	if (!pool_conn_take(c))
		evtimer_add(c->idle_timer, &tv);
}

static void
pool_client_ready(struct smtp_client *client, void *arg)
{
	struct pool_conn	*c = arg;

	if (c->state == POOL_C_CONNECTING) {
		c->was_ready = true;
		c->conn_time = util_monotonic() - c->t_start;
		if (smtp_client_is_tls(client)) {
			stats.tls_out_sessions++;
			if (smtp_client_tls_verified(client))
				stats.tls_out_verified++;
		} else
			stats.tls_out_plaintext++;
		log_debug("pool: %s: ready (%s)", c->relay,
		    smtp_client_tls_version(client));
		pool_conn_make_idle(c);
		return;
	}
	if (c->state == POOL_C_RESETTING && c->job != NULL) {
		pool_conn_send(c);
		return;
	}
	pool_conn_make_idle(c);
}

static void
pool_client_done(struct smtp_client *client,
    const struct smtp_client_result *rcpt, size_t nrcpt,
    const struct smtp_client_result *overall, bool reusable, void *arg)
{
	struct pool_conn	*c = arg;
	struct pool_job		*j = c->job;
	struct pool_attempt	 a;

	c->job = NULL;
	if (c->body_fd != -1) {
		close(c->body_fd);
		c->body_fd = -1;
	}
	c->nsent++;
	c->reusable = reusable;
	c->state = POOL_C_WAIT;
	if (!reusable) {
		/* The connection is gone; the slot is released at resume. */
		smtp_client_free(c->client);
		c->client = NULL;
	}
	memset(&a, 0, sizeof(a));
	a.rcpt = rcpt;
	a.overall = overall;
	strlcpy(a.relay, c->relay, sizeof(a.relay));
	strlcpy(a.tls, smtp_client_tls_version(client), sizeof(a.tls));
	a.verified = smtp_client_tls_verified(client);
	a.conn_time = c->conn_time;
	if (j != NULL)
		pool_env.result(j, &a, c->id);
	else
		pool_resume(c->id);
}

static void
pool_client_closed(struct smtp_client *client,
    const struct smtp_client_result *why, void *arg)
{
	struct pool_conn	*c = arg;
	struct pool_dest	*d = c->dest;
	enum smtp_client_tls	 mode;

	if (c->state == POOL_C_QUITTING || c->state == POOL_C_DEAD) {
		pool_conn_kill(c);
		return;
	}
	if (c->state == POOL_C_CONNECTING) {
		log_info("pool: %s: %s (%s %s)", c->relay, why->reply,
		    why->stage, why->status);
		smtp_client_free(c->client);
		c->client = NULL;
		mode = (enum smtp_client_tls)conf_tls_for_domain(pool_conf(),
		    d->key);
		/* OUT-23: a failed opportunistic handshake retries in clear. */
		if (mode == SMTPC_TLS_OPPORTUNISTIC && !c->plaintext_retry &&
		    strcmp(why->stage, "STARTTLS") == 0) {
			log_warnx("pool: %s: TLS handshake failed, retrying "
			    "without TLS (opportunistic)", c->relay);
			c->plaintext_retry = true;
			pool_conn_connect(c);
			return;
		}
		c->plaintext_retry = false;
		if (++c->hop < c->route.nhops) {
			pool_conn_connect(c);
			return;
		}
		pool_conn_kill(c);
		pool_dest_fail(d, why->outcome == SMTPC_PERMFAIL ?
		    SMTPC_TEMPFAIL : why->outcome, why->code, why->status,
		    why->reply, c->relay);
		return;
	}
	/* An idle drop or a failed RSET is not an attempt (OUT-17). */
	log_debug("pool: %s: closed while %d", c->relay, (int)c->state);
	pool_conn_kill(c);
}

static const struct smtp_client_cbs pool_client_cbs = {
	.ready = pool_client_ready,
	.done = pool_client_done,
	.closed = pool_client_closed,
};

static void
pool_conn_connect(struct pool_conn *c)
{
	const struct conf	*conf = pool_conf();
	struct route_hop	*hop = &c->route.hops[c->hop];
	struct smtp_client_cfg	 cfg;
	char			 addr[INET6_ADDRSTRLEN];
	int			 port;

	if (hop->addr.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&hop->addr)->
		    sin6_addr, addr, sizeof(addr));
		port = ntohs(((struct sockaddr_in6 *)&hop->addr)->sin6_port);
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&hop->addr)->
		    sin_addr, addr, sizeof(addr));
		port = ntohs(((struct sockaddr_in *)&hop->addr)->sin_port);
	}
	snprintf(c->relay, sizeof(c->relay), "%s[%s]:%d", hop->host, addr,
	    port);
	memset(&cfg, 0, sizeof(cfg));
	cfg.helo = conf->hostname;
	cfg.host = hop->host;
	cfg.addr = hop->addr;
	cfg.addrlen = hop->addrlen;
	cfg.tls = c->plaintext_retry ? SMTPC_TLS_NONE :
	    (enum smtp_client_tls)conf_tls_for_domain(conf, c->dest->key);
	cfg.ssl_ctx = pool_ssl;
	if (conf->delivery.smarthost.host != NULL &&
	    conf->delivery.smarthost_user != NULL &&
	    conf->delivery.smarthost_user[0] != '\0') {
		cfg.auth_user = conf->delivery.smarthost_user;
		cfg.auth_pass = pool_smarthost_pass;
	}
	cfg.connect_timeout = conf->delivery.connect_timeout;
	c->state = POOL_C_CONNECTING;
	c->t_start = util_monotonic();
	c->client = smtp_client_new(pool_env.base, &cfg, &pool_client_cbs, c);
	if (c->client == NULL) {
		pool_conn_kill(c);
		pool_dest_fail(c->dest, SMTPC_TEMPFAIL, 0, "4.3.0",
		    "cannot create a connection", c->relay);
	}
}

static void
pool_route_done(uint64_t cookie, const struct route_result *r, void *arg)
{
	struct pool_conn	*c = util_map_get(&pool_conns, cookie);

	if (c == NULL || c->state != POOL_C_ROUTING)
		return;
	if (r->status != ROUTE_OK) {
		struct pool_dest *d = c->dest;

		log_info("pool: %s: %s", d->key, r->error);
		pool_conn_kill(c);
		pool_dest_fail(d, r->status == ROUTE_PERMFAIL ?
		    SMTPC_PERMFAIL : SMTPC_TEMPFAIL, 0, r->dsn, r->error,
		    "none");
		return;
	}
	c->route = *r;
	c->hop = 0;
	pool_conn_connect(c);
}

static bool
pool_can_open(const struct pool_dest *d)
{
	return (!pool_stopping && pool_nconns < pool_cap() &&
	    d->nconns < (size_t)pool_conf()->delivery.max_per_destination);
}

static void
pool_conn_open(struct pool_dest *d)
{
	struct pool_conn	*c;

	c = xcalloc(1, sizeof(*c));
	c->id = pool_next_id++;
	c->dest = d;
	c->body_fd = -1;
	c->state = POOL_C_ROUTING;
	c->idle_timer = evtimer_new(pool_env.base, pool_conn_idle_timeout, c);
	TAILQ_INSERT_TAIL(&d->conns, c, entry);
	d->nconns++;
	pool_nconns++;
	if (pool_nconns > pool_peak)
		pool_peak = pool_nconns;
	util_map_put(&pool_conns, c->id, c);
	if (route_lookup(pool_env.dns, pool_conf(), d->key, pool_route_done,
	    c->id, NULL) == -1) {
		pool_conn_kill(c);
		pool_dest_fail(d, SMTPC_TEMPFAIL, 0, "4.4.3", "route lookup "
		    "failed", "none");
	}
}

/* Close one idle connection of a destination nobody waits for. */
static bool
pool_evict_idle(void)
{
	struct pool_dest	*d;
	struct pool_conn	*c;
	size_t			 it = 0;
	uint64_t		 k;
	void			*v;

	while (util_map_next(&pool_conns, &it, &k, &v)) {
		c = v;
		d = c->dest;
		if (c->state == POOL_C_IDLE && d->njobs == 0) {
			pool_conn_quit(c);
			return (true);
		}
	}
	return (false);
}

/* One dispatch pass per event: match waiting jobs with connections. */
static void
pool_run(void)
{
	struct pool_dest	*d;
	struct pool_conn	*c;
	bool			 progress = true;

	if (pool_running)
		return;
	pool_running = true;
	while (progress && !TAILQ_EMPTY(&pool_ring)) {
		size_t	n, i;

		progress = false;
		n = 0;
		TAILQ_FOREACH(d, &pool_ring, ring)
			n++;
		for (i = 0; i < n && (d = TAILQ_FIRST(&pool_ring)) != NULL;
		    i++) {
			/* Rotate: d goes to the back of the ring. */
			TAILQ_REMOVE(&pool_ring, d, ring);
			TAILQ_INSERT_TAIL(&pool_ring, d, ring);
			TAILQ_FOREACH(c, &d->conns, entry)
				if (c->state == POOL_C_IDLE)
					break;
			if (c != NULL) {
				progress |= pool_conn_take(c);
				continue;
			}
			/* Connections being opened will take jobs. */
			{
				size_t		 opening = 0;
				struct pool_conn *x;

				TAILQ_FOREACH(x, &d->conns, entry)
					if (x->state == POOL_C_ROUTING ||
					    x->state == POOL_C_CONNECTING)
						opening++;
				if (opening >= d->njobs)
					continue;
			}
			if (!pool_can_open(d) && pool_nconns >= pool_cap() &&
			    pool_nquitting == 0 &&
			    d->nconns <
			    (size_t)pool_conf()->delivery.max_per_destination)
				(void)pool_evict_idle();
			if (pool_can_open(d)) {
				pool_conn_open(d);
				progress = true;
			}
			if (!d->in_ring)
				break;
		}
	}
	pool_running = false;
}

void
pool_submit(struct pool_job *j)
{
	pool_dest_push(pool_dest_get(j->dest), j, false);
	pool_run();
}

void
pool_resume(uint64_t conn_id)
{
	struct pool_conn	*c = util_map_get(&pool_conns, conn_id);
	const struct conf	*conf = pool_conf();

	if (c == NULL || c->state != POOL_C_WAIT)
		return;
	if (!c->reusable) {
		pool_conn_kill(c);
		return;
	}
	if (pool_stopping ||
	    c->nsent >= conf->delivery.max_messages_per_connection) {
		pool_conn_quit(c);
		return;
	}
	pool_conn_make_idle(c);
	pool_run();
}

static char *
pool_read_password(const char *path)
{
	char	buf[1024];
	FILE	*f;
	size_t	n;

	if (path == NULL || path[0] == '\0')
		return (NULL);
	if ((f = fopen(path, "r")) == NULL) {
		log_warn("smarthost_password_file %s", path);
		return (NULL);
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	{
		char	*p = xstrdup(buf);

		explicit_bzero(buf, sizeof(buf));
		return (p);
	}
}

void
pool_init(const struct pool_env *env)
{
	const struct conf	*conf = pool_conf();
	char			 err[512];

	pool_env = *env;
	util_map_init(&pool_dests);
	util_map_init(&pool_conns);
	pool_ssl = tls_client_ctx_new(conf->delivery.ca_file, err,
	    sizeof(err));
	if (pool_ssl == NULL)
		log_warnx("outbound TLS unavailable: %s", err);
	pool_smarthost_pass = pool_read_password(
	    conf->delivery.smarthost_password_file);
}

void
pool_shutdown(void)
{
	size_t		 it = 0;
	uint64_t	 k;
	void		*v;

	pool_stopping = true;
	while (util_map_next(&pool_conns, &it, &k, &v)) {
		struct pool_conn *c = v;

		if (c->state == POOL_C_IDLE)
			pool_conn_quit(c);
	}
}

void
pool_free_all(void)
{
	size_t		 it = 0;
	uint64_t	 k;
	void		*v;

	while (util_map_next(&pool_conns, &it, &k, &v)) {
		struct pool_conn *c = v;

		if (c->client != NULL)
			smtp_client_free(c->client);
		if (c->body_fd != -1)
			close(c->body_fd);
		free(c->job);
		event_free(c->idle_timer);
		free(c);
	}
	util_map_clear(&pool_conns);
	it = 0;
	while (util_map_next(&pool_dests, &it, &k, &v)) {
		struct pool_dest	*d = v;
		struct pool_job		*j;

		while ((j = d->head) != NULL) {
			d->head = j->next;
			free(j->rcpts);
			free(j->rcpt_idx);
			free(j);
		}
		free(d);
	}
	util_map_clear(&pool_dests);
	tls_ctx_free(pool_ssl);
	if (pool_smarthost_pass != NULL) {
		explicit_bzero(pool_smarthost_pass,
		    strlen(pool_smarthost_pass));
		free(pool_smarthost_pass);
	}
}

void
pool_get_stats(struct pool_stats *st)
{
	size_t		 it = 0;
	uint64_t	 k;
	void		*v;

	memset(st, 0, sizeof(*st));
	st->size = pool_cap();
	st->waiting = pool_nwaiting;
	st->peak = pool_peak;
	while (util_map_next(&pool_conns, &it, &k, &v)) {
		struct pool_conn *c = v;

		if (c->state == POOL_C_IDLE)
			st->idle++;
		else if (c->state != POOL_C_DEAD)
			st->in_use++;
	}
}

size_t
pool_busy(void)
{
	size_t		 it = 0, n = 0;
	uint64_t	 k;
	void		*v;

	while (util_map_next(&pool_conns, &it, &k, &v)) {
		struct pool_conn *c = v;

		if (c->state == POOL_C_BUSY || c->state == POOL_C_WAIT ||
		    c->state == POOL_C_RESETTING)
			n++;
	}
	return (n);
}
