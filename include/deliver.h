/*
 * deliver.h: the delivery engine's front (SPEC section 4): it picks due
 * messages from the queue, splits their pending recipients by destination
 * into pool jobs, and alone decides each recipient's fate from the
 * attempt's results: delivered, deferred (retry with backoff), failed or
 * expired (DSN to the sender).  Outcomes are journaled before the
 * connection that produced them is reused.
 */
#ifndef POSTERN_DELIVER_H
#define POSTERN_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "postern.h"

struct dns;
struct event_base;
struct queue;
struct spool;
struct spool_envelope;
struct worker_pool;

struct deliver_env {
	struct event_base	*base;		/* borrowed */
	struct spool		*spool;		/* borrowed */
	struct queue		*queue;		/* borrowed */
	struct dns		*dns;		/* borrowed */
	struct worker_pool	*workers;	/* borrowed: DKIM signing */
};

void	deliver_init(const struct deliver_env *);
/* Something may be due now (a new message, a flush, a release). */
void	deliver_kick(void);
/* Stop starting attempts; attempts in flight finish. */
void	deliver_shutdown(void);
size_t	deliver_in_flight(void);
void	deliver_free(void);

/* A recovered message has escalations pending: run them again. */
void	deliver_recovered_escalations(const struct spool_envelope *);
/* True while an escalation of this message has not finished. */
bool	deliver_has_escalations(qid_t);

/* The retry delay after the n-th failed attempt (n >= 1), without jitter. */
int64_t	deliver_backoff(int attempts, int initial, double factor,
	    int max_interval);

#endif /* POSTERN_DELIVER_H */
