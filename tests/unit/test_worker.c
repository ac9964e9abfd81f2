/*
 * test_worker.c: the worker pool runs every job once on a worker thread and
 * every done callback once on the loop thread, keeps the loop responsive
 * while a job blocks, bounds its queue, and drains on free.
 */
#include "compat.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "worker.h"

struct tw_job {
	int		 idx;
	atomic_int	 fn_runs;
	int		 done_runs;
	pthread_t	 fn_thread;
	pthread_t	 done_thread;
	useconds_t	 sleep_us;
};

struct tw_ctx {
	struct event_base	*base;
	struct tw_job		*jobs;
	int			 njobs;
	int			 ndone;
	int			 ticks;
	int			 ticks_at_done;
};

static struct tw_ctx	tw;

static struct event_base *
tw_base(void)
{
	struct event_base	*base;

	cr_assert_eq(evthread_use_pthreads(), 0);
	base = event_base_new();
	cr_assert_not_null(base);
	return (base);
}

static void
tw_fn(void *arg)
{
	struct tw_job	*j = arg;

	j->fn_thread = pthread_self();
	if (j->sleep_us != 0)
		usleep(j->sleep_us);
	atomic_fetch_add(&j->fn_runs, 1);
}

static void
tw_done(void *arg)
{
	struct tw_job	*j = arg;

	j->done_thread = pthread_self();
	j->done_runs++;
	/* The job's fn must have finished before done runs. */
	cr_assert_eq(atomic_load(&j->fn_runs), 1, "job %d: fn ran %d times "
	    "before done", j->idx, atomic_load(&j->fn_runs));
	tw.ticks_at_done = tw.ticks;
	if (++tw.ndone == tw.njobs)
		event_base_loopbreak(tw.base);
}

static void
tw_timeout(evutil_socket_t fd, short what, void *arg)
{
	cr_assert_fail("timed out with %d of %d jobs done", tw.ndone,
	    tw.njobs);
}

static void
tw_setup(int njobs)
{
	int	i;

	memset(&tw, 0, sizeof(tw));
	tw.base = tw_base();
	tw.njobs = njobs;
	tw.jobs = calloc(njobs, sizeof(*tw.jobs));
	cr_assert_not_null(tw.jobs);
	for (i = 0; i < njobs; i++)
		tw.jobs[i].idx = i;
}

static void
tw_run_loop(void)
{
	struct timeval	 tv = { 10, 0 };
	struct event	*to;

	to = evtimer_new(tw.base, tw_timeout, NULL);
	evtimer_add(to, &tv);
	event_base_dispatch(tw.base);
	event_free(to);
}

static void
tw_check_all_once(pthread_t loop)
{
	int	i;

	for (i = 0; i < tw.njobs; i++) {
		struct tw_job	*j = &tw.jobs[i];

		cr_assert_eq(atomic_load(&j->fn_runs), 1,
		    "job %d: fn ran %d times, want 1", i,
		    atomic_load(&j->fn_runs));
		cr_assert_eq(j->done_runs, 1, "job %d: done ran %d times, "
		    "want 1", i, j->done_runs);
		cr_assert(pthread_equal(j->done_thread, loop),
		    "job %d: done ran off the loop thread", i);
		cr_assert(!pthread_equal(j->fn_thread, loop),
		    "job %d: fn ran on the loop thread", i);
	}
}

static void
tw_teardown(void)
{
	free(tw.jobs);
	event_base_free(tw.base);
}

Test(worker, many_jobs_each_done_once_on_loop_thread)
{
	struct worker_pool	*wp;
	char			 err[256];
	int			 i;

	tw_setup(5000);
	wp = worker_pool_new(tw.base, 4, err, sizeof(err));
	cr_assert_not_null(wp, "worker_pool_new: %s", err);
	for (i = 0; i < tw.njobs; i++)
		cr_assert_eq(worker_submit(wp, tw_fn, tw_done, &tw.jobs[i]), 0,
		    "submit %d refused", i);
	cr_assert_gt(worker_pending(wp), 0);
	tw_run_loop();
	cr_assert_eq(tw.ndone, tw.njobs, "got %d done, want %d", tw.ndone,
	    tw.njobs);
	tw_check_all_once(pthread_self());
	cr_assert_eq(worker_pending(wp), 0, "pending %zu after all done",
	    worker_pending(wp));
	worker_pool_free(wp);
	tw_teardown();
}

static void
tw_tick(evutil_socket_t fd, short what, void *arg)
{
	tw.ticks++;
}

Test(worker, slow_job_does_not_block_loop)
{
	struct worker_pool	*wp;
	struct event		*tick;
	struct timeval		 tv = { 0, 20 * 1000 };
	char			 err[256];

	tw_setup(1);
	tw.jobs[0].sleep_us = 500 * 1000;
	wp = worker_pool_new(tw.base, 1, err, sizeof(err));
	cr_assert_not_null(wp, "worker_pool_new: %s", err);
	tick = event_new(tw.base, -1, EV_PERSIST, tw_tick, NULL);
	event_add(tick, &tv);
	cr_assert_eq(worker_submit(wp, tw_fn, tw_done, &tw.jobs[0]), 0);
	tw_run_loop();
	/* 500 ms of sleep at a 20 ms tick: expect ~25; demand a few. */
	cr_assert_geq(tw.ticks_at_done, 5, "loop ticked %d times while the "
	    "job slept, want >= 5", tw.ticks_at_done);
	tw_check_all_once(pthread_self());
	event_free(tick);
	worker_pool_free(wp);
	tw_teardown();
}

Test(worker, free_with_jobs_queued_runs_them_all)
{
	struct worker_pool	*wp;
	char			 err[256];
	int			 i;

	tw_setup(200);
	wp = worker_pool_new(tw.base, 2, err, sizeof(err));
	cr_assert_not_null(wp, "worker_pool_new: %s", err);
	for (i = 0; i < tw.njobs; i++) {
		tw.jobs[i].sleep_us = 500;
		cr_assert_eq(worker_submit(wp, tw_fn, tw_done, &tw.jobs[i]),
		    0);
	}
	/* No loop iteration: free itself must run every job and callback. */
	worker_pool_free(wp);
	cr_assert_eq(tw.ndone, tw.njobs, "got %d done, want %d", tw.ndone,
	    tw.njobs);
	tw_check_all_once(pthread_self());
	tw_teardown();
}

/* A job that holds its worker until the test releases it. */
static sem_t	tw_started, tw_release;

static void
tw_block_fn(void *arg)
{
	sem_post(&tw_started);
	sem_wait(&tw_release);
}

static int	tw_nop_done_runs;

static void
tw_nop_done(void *arg)
{
	tw_nop_done_runs++;
}

Test(worker, queue_is_bounded)
{
	struct worker_pool	*wp;
	char			 err[256];
	int			 i;

	tw_setup(0);
	sem_init(&tw_started, 0, 0);
	sem_init(&tw_release, 0, 0);
	wp = worker_pool_new(tw.base, 1, err, sizeof(err));
	cr_assert_not_null(wp, "worker_pool_new: %s", err);
	cr_assert_eq(worker_submit(wp, tw_block_fn, tw_nop_done, NULL), 0);
	sem_wait(&tw_started);
	for (i = 0; i < WORKER_QUEUE_MAX; i++)
		cr_assert_eq(worker_submit(wp, NULL, tw_nop_done, NULL), 0,
		    "submit %d refused below the bound", i);
	cr_assert_eq(worker_submit(wp, NULL, tw_nop_done, NULL), -1,
	    "submit over the bound accepted");
	cr_assert_eq(worker_pending(wp), WORKER_QUEUE_MAX + 1);
	sem_post(&tw_release);
	worker_pool_free(wp);
	cr_assert_eq(tw_nop_done_runs, WORKER_QUEUE_MAX + 1, "got %d done, "
	    "want %d", tw_nop_done_runs, WORKER_QUEUE_MAX + 1);
	tw_teardown();
}

/* Submitting from a done callback that runs during free is refused. */
static struct worker_pool	*tw_pool;
static int			 tw_resubmit_rc = 99;

static void
tw_resubmit_done(void *arg)
{
	tw_resubmit_rc = worker_submit(tw_pool, NULL, NULL, NULL);
	if (tw.base != NULL)
		event_base_loopbreak(tw.base);
}

Test(worker, submit_while_stopping_refused)
{
	char	err[256];

	tw_setup(0);
	tw_pool = worker_pool_new(tw.base, 1, err, sizeof(err));
	cr_assert_not_null(tw_pool, "worker_pool_new: %s", err);
	cr_assert_eq(worker_submit(tw_pool, NULL, tw_resubmit_done, NULL), 0);
	worker_pool_free(tw_pool);
	cr_assert_eq(tw_resubmit_rc, -1, "got %d, want -1", tw_resubmit_rc);
	tw_teardown();
}

Test(worker, done_callback_may_submit_on_live_pool)
{
	/* A chain of jobs, each submitted from the previous done callback. */
	struct worker_pool	*wp;
	char			 err[256];

	tw_setup(0);
	wp = worker_pool_new(tw.base, 2, err, sizeof(err));
	cr_assert_not_null(wp, "worker_pool_new: %s", err);
	tw_pool = wp;
	tw_resubmit_rc = 99;
	cr_assert_eq(worker_submit(wp, NULL, tw_resubmit_done, NULL), 0);
	/* tw_run_loop's timeout event keeps the loop alive until done. */
	tw_run_loop();
	cr_assert_eq(tw_resubmit_rc, 0, "got %d, want 0", tw_resubmit_rc);
	worker_pool_free(wp);
	tw_teardown();
}

Test(worker, bad_thread_count_refused)
{
	static const int	 bad[] = { 0, -1, WORKER_THREADS_MAX + 1 };
	struct event_base	*base = tw_base();
	char			 err[256];
	size_t			 i;

	for (i = 0; i < nitems(bad); i++) {
		err[0] = '\0';
		cr_assert_null(worker_pool_new(base, bad[i], err, sizeof(err)),
		    "%d threads accepted", bad[i]);
		cr_assert_neq(err[0], '\0', "%d threads: no error", bad[i]);
	}
	event_base_free(base);
}

Test(worker, free_null_is_noop)
{
	worker_pool_free(NULL);
}
