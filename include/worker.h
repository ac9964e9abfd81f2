/*
 * worker.h: a fixed pool of threads for blocking work (crypt(3), libspf2,
 * DKIM signing of large bodies) whose completions come back to the libevent
 * loop thread.  The daemon, and every test, must call evthread_use_pthreads()
 * before it creates the event_base given to worker_pool_new().
 */
#ifndef POSTERN_WORKER_H
#define POSTERN_WORKER_H

#include <stddef.h>

struct event_base;
struct worker_pool;

/* Jobs queued but not yet started, beyond which worker_submit() refuses. */
#define WORKER_QUEUE_MAX	10000
/* Bounds on the number of threads in one pool. */
#define WORKER_THREADS_MAX	64

/* fn runs on a worker thread; done then runs on the loop thread, owns arg. */
typedef void (*worker_fn)(void *arg);
typedef void (*worker_done_fn)(void *arg);

/* A pool of nthreads (1..WORKER_THREADS_MAX) threads reporting to base. */
struct worker_pool *worker_pool_new(struct event_base *, int nthreads,
	    char *err, size_t errlen);
/*
 * Queue fn(arg); done(arg) runs later on the loop thread, exactly once, and
 * owns arg.  fn or done may be NULL.  -1 (and nothing runs) when the pool
 * is shutting down or WORKER_QUEUE_MAX jobs are already waiting.
 */
int	 worker_submit(struct worker_pool *, worker_fn, worker_done_fn,
	    void *arg);
/* Jobs submitted whose done callback has not run yet. */
size_t	 worker_pending(const struct worker_pool *);
/*
 * Stop taking jobs, let running and queued jobs finish, run their done
 * callbacks on the calling (loop) thread and join the threads.  Must not be
 * called from a done callback.  Accepts NULL.
 */
void	 worker_pool_free(struct worker_pool *);

#endif /* POSTERN_WORKER_H */
