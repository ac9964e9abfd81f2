/*
 * it_crash.c: durability of acceptance (SPEC section 3, "a crash at any
 * moment loses no message that got its 250"; SECURITY-CASES section 3,
 * CC-01 reduced to one kill) and group commit of the spool.
 *
 * Client threads, each with its own connection, submit in a loop and
 * journal (in memory; the test process outlives the daemon) every queue id
 * that got "250" after the final dot.  The daemon is SIGKILLed while they
 * run, restarted on the same spool, and every journaled id must be listed
 * by the control socket's "queue".  A message whose final dot was sent but
 * whose reply never came is "in flight": it may or may not be in the
 * queue, and the number of queued messages nobody acknowledged must not
 * exceed the number in flight.  Worker threads never call cr_assert; the
 * main thread checks what they recorded after joining them.
 */
#include "compat.h"

#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../support/harness.h"

#define IT_TIMEOUT		600
#define IT_CRASH_THREADS	200
#define IT_CRASH_MIN_ACKED	100
#define IT_GC_THREADS		50
#define IT_GC_MESSAGES		10	/* per thread */

struct it_worker {
	pthread_t	 tid;
	int		 port;
	int		 id;
	int		 max_messages;	/* 0 = until the end */
	char		(*acked)[9];	/* owned: ids that got 250 */
	size_t		 nacked;
	size_t		 cap;
	atomic_int	 in_data;	/* 1 from dot to reply */
	bool		 lost_reply;	/* dot sent, no reply */
	bool		 started;	/* got its 220 and EHLO 250 */
	int		 other;		/* unexpected replies */
	char		 last[256];	/* last unexpected reply */
};

static atomic_int	 it_acked_total;
static atomic_bool	 it_stop;
static pthread_barrier_t it_barrier;

static void
it_record(struct it_worker *w, const char *qid)
{
	if (w->nacked == w->cap) {
		w->cap = w->cap == 0 ? 64 : w->cap * 2;
		w->acked = realloc(w->acked, w->cap * sizeof(*w->acked));
		if (w->acked == NULL)
			abort();
	}
	strlcpy(w->acked[w->nacked++], qid, 9);
	atomic_fetch_add(&it_acked_total, 1);
}

static void *
it_worker_main(void *arg)
{
	struct it_worker	*w = arg;
	struct smtpc		*c;
	char			 err[256], body[512], line[128];
	char			 text[SMTPC_REPLY_MAX], qid[9], *data;
	size_t			 dlen;
	int			 seq, code;

	c = smtpc_connect("127.0.0.1", w->port, err, sizeof(err));
	if (c != NULL && (!smtpc_expect(c, "220") ||
	    smtpc_ehlo(c, "crash.test") != 250)) {
		strlcpy(w->last, smtpc_last(c), sizeof(w->last));
		smtpc_close(c);
		c = NULL;
	}
	if (c == NULL && w->last[0] == '\0')
		strlcpy(w->last, err, sizeof(w->last));
	w->started = c != NULL;
	pthread_barrier_wait(&it_barrier);
	if (c == NULL)
		return (NULL);
	for (seq = 0; !atomic_load(&it_stop); seq++) {
		if (w->max_messages > 0 && seq >= w->max_messages)
			break;
		if (smtpc_cmd(c, "MAIL FROM:<load@ok.example>") != 250 ||
		    smtpc_cmd(c, "RCPT TO:<sink@ok.example>") / 100 != 2 ||
		    smtpc_cmd(c, "DATA") != 354)
			goto unexpected;
		snprintf(body, sizeof(body), "From: load@ok.example\r\n"
		    "Subject: crash test\r\n"
		    "X-Seq: %d-%d\r\n\r\nmessage %d of worker %d\r\n",
		    w->id, seq, seq, w->id);
		if ((data = smtpc_dot_stuff(body, strlen(body), &dlen)) ==
		    NULL)
			break;
		atomic_store(&w->in_data, 1);
		if (smtpc_send_raw(c, data, dlen) == -1) {
			/* Part of the body may have gone: count it. */
			free(data);
			w->lost_reply = true;
			atomic_store(&w->in_data, 0);
			break;
		}
		free(data);
		if (smtpc_read_reply(c, &code, text, sizeof(text), 0) == -1) {
			w->lost_reply = true;
			atomic_store(&w->in_data, 0);
			break;
		}
		atomic_store(&w->in_data, 0);
		if (code != 250 || smtpc_parse_qid(text, qid) == -1)
			goto unexpected;
		it_record(w, qid);
		continue;
unexpected:
		if (smtpc_status(c) == SMTPC_OK) {
			w->other++;
			snprintf(line, sizeof(line), "%s", smtpc_last(c));
			strlcpy(w->last, line, sizeof(w->last));
		}
		break;
	}
	smtpc_close(c);
	return (NULL);
}

static struct it_worker *
it_spawn(struct harness *h, int n, int max_messages)
{
	struct it_worker	*w;
	int			 i;

	atomic_store(&it_acked_total, 0);
	atomic_store(&it_stop, false);
	cr_assert((w = calloc((size_t)n, sizeof(*w))) != NULL);
	cr_assert(pthread_barrier_init(&it_barrier, NULL, (unsigned)n + 1) ==
	    0);
	for (i = 0; i < n; i++) {
		w[i].port = harness_port(h, 0);
		w[i].id = i;
		w[i].max_messages = max_messages;
		cr_assert(pthread_create(&w[i].tid, NULL, it_worker_main,
		    &w[i]) == 0);
	}
	/* Every thread has its session before anyone submits. */
	pthread_barrier_wait(&it_barrier);
	return (w);
}

static void
it_join(struct it_worker *w, int n)
{
	int	i;

	for (i = 0; i < n; i++)
		pthread_join(w[i].tid, NULL);
	pthread_barrier_destroy(&it_barrier);
}

static void
it_free_workers(struct it_worker *w, int n)
{
	int	i;

	for (i = 0; i < n; i++)
		free(w[i].acked);
	free(w);
}

static struct harness *
it_start(void)
{
	struct harness	*h;

	cr_assert((h = harness_new()) != NULL);
	cr_assert(harness_listen(h, NULL, "none", "none") == 0, "%s",
	    harness_err(h));
	harness_set_limits(h, "max_inbound_connections = 1000;\n"
	    "  max_connections_per_ip = 1000;");
	HARNESS_START(h);
	return (h);
}

static int
it_cmp_id(const void *a, const void *b)
{
	return (strcmp(a, b));
}

Test(it_crash, sigkill_loses_no_acknowledged_message, .timeout = IT_TIMEOUT)
{
	struct harness		*h = it_start();
	struct it_worker	*w;
	char			(*ids)[9];
	int			 i, nstarted = 0, inflight_at_kill = 0;
	int			 lost_reply = 0, nids, missing = 0, unacked;
	size_t			 j, acked = 0;
	time_t			 deadline;
	char			 first_missing[9] = "";

	w = it_spawn(h, IT_CRASH_THREADS, 0);
	for (i = 0; i < IT_CRASH_THREADS; i++)
		nstarted += w[i].started;
	deadline = time(NULL) + 300;
	while (atomic_load(&it_acked_total) < IT_CRASH_MIN_ACKED &&
	    time(NULL) < deadline && harness_is_running(h))
		usleep(2000);
	for (i = 0; i < IT_CRASH_THREADS; i++)
		inflight_at_kill += atomic_load(&w[i].in_data);
	cr_assert(harness_kill9(h) == 0, "%s", harness_err(h));
	atomic_store(&it_stop, true);
	it_join(w, IT_CRASH_THREADS);

	for (i = 0; i < IT_CRASH_THREADS; i++) {
		acked += w[i].nacked;
		lost_reply += w[i].lost_reply;
	}
	cr_log_info("crash: %d/%d sessions, %zu acknowledged, %d in the "
	    "data phase at the kill, %d final dots without a reply",
	    nstarted, IT_CRASH_THREADS, acked, inflight_at_kill, lost_reply);
	cr_assert(nstarted == IT_CRASH_THREADS,
	    "only %d of %d sessions started: %s", nstarted,
	    IT_CRASH_THREADS, w[0].last);
	cr_assert(acked >= IT_CRASH_MIN_ACKED,
	    "only %zu acknowledged before the kill:\n%s", acked,
	    harness_log_tail(h, 20));
	for (i = 0; i < IT_CRASH_THREADS; i++)
		cr_assert(w[i].other == 0, "worker %d got \"%s\"", i,
		    w[i].last);

	cr_assert(harness_start(h) == 0, "restart on the same spool: %s",
	    harness_err(h));
	cr_assert((ids = calloc(100000, sizeof(*ids))) != NULL);
	nids = harness_queue_ids(h, ids, 100000);
	cr_assert(nids >= 0, "queue: %s", harness_err(h));
	qsort(ids, (size_t)nids, sizeof(*ids), it_cmp_id);
	for (i = 0; i < IT_CRASH_THREADS; i++)
		for (j = 0; j < w[i].nacked; j++)
			if (bsearch(w[i].acked[j], ids, (size_t)nids,
			    sizeof(*ids), it_cmp_id) == NULL) {
				if (missing++ == 0)
					strlcpy(first_missing, w[i].acked[j],
					    sizeof(first_missing));
			}
	cr_assert(missing == 0, "%d of %zu acknowledged messages lost "
	    "(first: %s); %d recovered", missing, acked, first_missing,
	    nids);
	/*
	 * Queued but never acknowledged: only the transactions whose final
	 * dot was sent and whose reply was cut off by the kill.
	 */
	unacked = nids - (int)acked;
	cr_log_info("crash: %d recovered, %d of them unacknowledged", nids,
	    unacked);
	cr_assert(unacked >= 0 && unacked <= lost_reply,
	    "%d queued messages were never acknowledged, but only %d "
	    "transactions were in flight", unacked, lost_reply);
	free(ids);
	it_free_workers(w, IT_CRASH_THREADS);
	harness_free(h);
}

/* Concurrent acceptances share fsyncs (STYLE 4; SPEC 3 durability). */
Test(it_crash, group_commit_shares_syncs, .timeout = IT_TIMEOUT)
{
	struct harness		*h = it_start();
	struct it_worker	*w;
	json_t			*r, *spool, *jc, *js;
	json_int_t		 committed, syncs;
	size_t			 acked = 0;
	int			 i;
	char			*dump;

	w = it_spawn(h, IT_GC_THREADS, IT_GC_MESSAGES);
	it_join(w, IT_GC_THREADS);
	for (i = 0; i < IT_GC_THREADS; i++) {
		cr_assert(w[i].started && w[i].other == 0 && !w[i].lost_reply,
		    "worker %d: %s", i, w[i].last);
		acked += w[i].nacked;
	}
	cr_assert(acked == IT_GC_THREADS * IT_GC_MESSAGES, "acked %zu", acked);
	r = harness_control(h, "{\"cmd\":\"stats\"}");
	cr_assert(r != NULL, "%s", harness_err(h));
	dump = json_dumps(r, JSON_COMPACT);
	spool = json_object_get(r, "spool");
	jc = json_object_get(spool, "committed");
	js = json_object_get(spool, "syncs");
	cr_assert(json_is_integer(jc) && json_is_integer(js),
	    "stats lacks spool.committed/spool.syncs: %s", dump);
	committed = json_integer_value(jc);
	syncs = json_integer_value(js);
	cr_log_info("group commit: %zu messages, spool.committed=%lld, "
	    "spool.syncs=%lld", acked, (long long)committed,
	    (long long)syncs);
	cr_assert(committed >= (json_int_t)acked, "committed %lld < %zu: %s",
	    (long long)committed, acked, dump);
	cr_assert(syncs > 0, "no syncs counted: %s", dump);
	cr_assert(syncs < committed, "no sharing: syncs %lld, committed "
	    "%lld", (long long)syncs, (long long)committed);
	free(dump);
	json_decref(r);
	it_free_workers(w, IT_GC_THREADS);
	harness_free(h);
}
