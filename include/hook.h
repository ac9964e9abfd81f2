/*
 * hook.h: the failure-escalation hook of SPEC section 6.  A message with
 * failed or expired recipients runs escalation.command once per event,
 * without a shell, with one JSON object on stdin and POSTERN_EVENT and
 * POSTERN_QUEUE_ID in an otherwise empty environment (PATH aside).  A run
 * that exits non-zero, dies of a signal, outlives the timeout or cannot be
 * started is retried with backoff until it exits 0 or the hook is freed.
 * Durability is the caller's: it journals the escalation as pending before
 * hook_run() and as done from the done callback, and calls hook_run() again
 * for every pending one after a restart.
 */
#ifndef POSTERN_HOOK_H
#define POSTERN_HOOK_H

#include <stddef.h>
#include <stdint.h>

#include "postern.h"

struct event_base;
struct hook;

/* Children running at once; further runs wait for a slot. */
#define HOOK_RUNNING_MAX	16
/* Escalations held at once (running, waiting for a slot or a retry). */
#define HOOK_PENDING_MAX	100000
/* Cap of the retry backoff, in seconds. */
#define HOOK_RETRY_MAX		3600
/* Bytes of the child's stdout and stderr kept for the log; more is read and
 * dropped so that a chatty hook never blocks on a full pipe. */
#define HOOK_OUTPUT_MAX		4096

struct hook_rcpt {
	const char	*address;
	const char	*dsn;		/* "5.1.1" */
	const char	*reply;		/* "550 5.1.1 no such user" */
	const char	*remote;	/* "mx.example.net[192.0.2.10]" */
};

struct hook_event {
	qid_t			 id;		/* queue id */
	const char		*event;		/* "failed" or "expired" */
	const char		*message_id;	/* "<...>" or "" */
	const char		*sender;
	const struct hook_rcpt	*rcpts;
	size_t			 nrcpts;
	int			 attempts;
	int64_t			 queued_at;	/* wall clock */
	int64_t			 failed_at;	/* wall clock */
	const char		*hostname;
};

/* Runs on the loop when a run of the hook exited 0; the last call made for
 * that escalation. */
typedef void (*hook_done_cb)(uint64_t cookie, void *arg);

/*
 * A hook runner on base.  command must be an absolute path; if it exists
 * it must be a regular file that neither group nor others can write (it is
 * checked again before every run, and may be installed later).  timeout_s
 * (1..86400) bounds each run; retry_base_s (1..HOOK_RETRY_MAX) is the first
 * retry delay, doubled after every failed run up to HOOK_RETRY_MAX.
 * Installs a SIGCHLD event on base and reaps only its own children.
 */
struct hook	*hook_new(struct event_base *, const char *command,
		    int timeout_s, int retry_base_s, char *err, size_t errlen);
/*
 * Kill the process group of every running child, reap them, and drop the
 * pending retries (durable in the spool) without calling done callbacks.
 * May be called from a done callback.  Accepts NULL.
 */
void		 hook_free(struct hook *);
/*
 * Copy the event (the caller's strings may go away), run it now or as soon
 * as a slot is free, and retry until a run exits 0; then done_cb(cookie,
 * arg) runs once, never from inside hook_run().  A second hook_run() for
 * the same id and event while the first is pending is a no-op returning 0
 * (one escalation per message per event).  -1 when it cannot be queued:
 * event not "failed"/"expired", HOOK_PENDING_MAX reached, or the hook is
 * being freed.
 */
int		 hook_run(struct hook *, const struct hook_event *,
		    hook_done_cb done_cb, uint64_t cookie, void *arg);
/*
 * The event as SPEC section 6's JSON object, compact, keys in SPEC order,
 * NUL-terminated, no trailing newline; the caller frees it.  NULL strings
 * become "", bytes that are not UTF-8 become U+FFFD.
 */
char		*hook_event_json(const struct hook_event *);
/* Escalations held: running, waiting for a slot or for a retry. */
size_t		 hook_pending(const struct hook *);

#endif /* POSTERN_HOOK_H */
