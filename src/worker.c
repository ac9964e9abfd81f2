/*
 * worker.c: a fixed pool of pthreads that run blocking jobs off the event
 * loop (STYLE 2.11).  Jobs wait in a FIFO guarded by one mutex and condition
 * variable; a finished job moves to the completion list and the loop is
 * woken with event_active() on an fd-less event, whose callback runs the
 * done callbacks on the loop thread.
 *
 * Invariants: a job is on exactly one of the queue, a worker's hands or the
 * completion list, and its done callback runs exactly once, on the loop
 * thread (or on the thread calling worker_pool_free()).  pending counts
 * every job from submission until its done callback has returned.
 * Ownership: the pool owns its jobs; a job's arg belongs to the caller until
 * done runs, and to done afterwards.  Worker threads block every signal so
 * that signals reach the loop thread only.
 */
#include "compat.h"

#include <sys/queue.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "util.h"
#include "worker.h"

struct worker_job {
	TAILQ_ENTRY(worker_job)	 entry;
	worker_fn		 fn;
	worker_done_fn		 done;
	void			*arg;	/* borrowed; handed to done */
};
TAILQ_HEAD(worker_jobs, worker_job);

struct worker_pool {
	struct event_base	*base;	/* borrowed */
	struct event		*wake;	/* owned; fd-less */
	pthread_t		*threads; /* owned */
	int			 nthreads;
	pthread_mutex_t		 mtx;	/* guards everything below */
	pthread_cond_t		 cond;
	struct worker_jobs	 queue;	/* waiting to run */
	struct worker_jobs	 done;	/* done cb not run yet */
	size_t			 nqueued;
	size_t			 pending;
	bool			 stopping;
	bool			 woken;	/* wake is already active */
	bool			 dispatching; /* inside worker_run_done */
};

static void	*worker_main(void *);
static void	 worker_dispatch(evutil_socket_t, short, void *);
static void	 worker_run_done(struct worker_pool *);

/* Create the pool and start its threads. */
struct worker_pool *
worker_pool_new(struct event_base *base, int nthreads, char *err,
    size_t errlen)
{
	struct worker_pool	*wp;
	sigset_t		 all, old;
	int			 i, rc = 0;

	if (base == NULL || nthreads < 1 || nthreads > WORKER_THREADS_MAX) {
		snprintf(err, errlen, "worker pool: %d threads, want 1..%d",
		    nthreads, WORKER_THREADS_MAX);
		return (NULL);
	}
	wp = xcalloc(1, sizeof(*wp));
	wp->base = base;
	TAILQ_INIT(&wp->queue);
	TAILQ_INIT(&wp->done);
	pthread_mutex_init(&wp->mtx, NULL);
	pthread_cond_init(&wp->cond, NULL);
	if ((wp->wake = event_new(base, -1, 0, worker_dispatch, wp)) == NULL) {
		snprintf(err, errlen, "worker pool: event_new failed");
		goto fail;
	}
	wp->threads = xcalloc(nthreads, sizeof(*wp->threads));

	/* Threads inherit this mask: keep signals for the loop thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (i = 0; i < nthreads; i++) {
		rc = pthread_create(&wp->threads[i], NULL, worker_main, wp);
		if (rc != 0)
			break;
		wp->nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (wp->nthreads != nthreads) {
		snprintf(err, errlen, "worker pool: pthread_create: %s",
		    strerror(rc));
		worker_pool_free(wp);
		return (NULL);
	}
	return (wp);

fail:
	pthread_cond_destroy(&wp->cond);
	pthread_mutex_destroy(&wp->mtx);
	free(wp);
	return (NULL);
}

/* Queue a job; see worker.h. */
int
worker_submit(struct worker_pool *wp, worker_fn fn, worker_done_fn done,
    void *arg)
{
	struct worker_job	*job;

	pthread_mutex_lock(&wp->mtx);
	if (wp->stopping || wp->nqueued >= WORKER_QUEUE_MAX) {
		pthread_mutex_unlock(&wp->mtx);
		return (-1);
	}
	job = xmalloc(sizeof(*job));
	job->fn = fn;
	job->done = done;
	job->arg = arg;
	TAILQ_INSERT_TAIL(&wp->queue, job, entry);
	wp->nqueued++;
	wp->pending++;
	pthread_cond_signal(&wp->cond);
	pthread_mutex_unlock(&wp->mtx);
	return (0);
}

/* Jobs submitted and not yet reported back. */
size_t
worker_pending(const struct worker_pool *cwp)
{
	/* The mutex is logically mutable: reading must still lock it. */
	struct worker_pool	*wp = (struct worker_pool *)cwp;
	size_t			 n;

	pthread_mutex_lock(&wp->mtx);
	n = wp->pending;
	pthread_mutex_unlock(&wp->mtx);
	return (n);
}

/*
 * A worker thread: run jobs until the pool stops and the queue is empty, so
 * that jobs queued before worker_pool_free() still run.
 */
static void *
worker_main(void *a)
{
	struct worker_pool	*wp = a;
	struct worker_job	*job;
	bool			 wake;

	pthread_mutex_lock(&wp->mtx);
	for (;;) {
		while (TAILQ_EMPTY(&wp->queue) && !wp->stopping)
			pthread_cond_wait(&wp->cond, &wp->mtx);
		if ((job = TAILQ_FIRST(&wp->queue)) == NULL)
			break;	/* stopping and drained */
		TAILQ_REMOVE(&wp->queue, job, entry);
		wp->nqueued--;
		pthread_mutex_unlock(&wp->mtx);

		if (job->fn != NULL)
			job->fn(job->arg);

		pthread_mutex_lock(&wp->mtx);
		TAILQ_INSERT_TAIL(&wp->done, job, entry);
		/* One activation per batch; the callback clears woken. */
		wake = !wp->woken && !wp->stopping;
		if (wake) {
			wp->woken = true;
			event_active(wp->wake, 0, 0);
		}
	}
	pthread_mutex_unlock(&wp->mtx);
	return (NULL);
}

/* Run the done callbacks of finished jobs; caller is the loop thread. */
static void
worker_run_done(struct worker_pool *wp)
{
	struct worker_jobs	 batch;
	struct worker_job	*job;

	TAILQ_INIT(&batch);
	pthread_mutex_lock(&wp->mtx);
	TAILQ_CONCAT(&batch, &wp->done, entry);
	wp->woken = false;
	wp->dispatching = true;
	pthread_mutex_unlock(&wp->mtx);

	while ((job = TAILQ_FIRST(&batch)) != NULL) {
		TAILQ_REMOVE(&batch, job, entry);
		if (job->done != NULL)
			job->done(job->arg);
		free(job);
		pthread_mutex_lock(&wp->mtx);
		wp->pending--;
		pthread_mutex_unlock(&wp->mtx);
	}

	pthread_mutex_lock(&wp->mtx);
	wp->dispatching = false;
	pthread_mutex_unlock(&wp->mtx);
}

static void
worker_dispatch(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	worker_run_done(arg);
}

/* Drain the pool and tear it down; see worker.h. */
void
worker_pool_free(struct worker_pool *wp)
{
	int	i;

	if (wp == NULL)
		return;
	pthread_mutex_lock(&wp->mtx);
	if (wp->dispatching)
		fatalx("worker_pool_free called from a done callback");
	wp->stopping = true;
	pthread_cond_broadcast(&wp->cond);
	pthread_mutex_unlock(&wp->mtx);

	for (i = 0; i < wp->nthreads; i++)
		pthread_join(wp->threads[i], NULL);

	/* Threads are gone: whatever finished is on the done list. */
	worker_run_done(wp);
	if (wp->pending != 0)
		fatalx("worker pool: %zu jobs lost", wp->pending);

	event_free(wp->wake);
	free(wp->threads);
	pthread_cond_destroy(&wp->cond);
	pthread_mutex_destroy(&wp->mtx);
	free(wp);
}
