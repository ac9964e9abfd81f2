/*
 * pool.h: the bounded pool of upstream SMTP connections (SPEC section 4).
 * At no instant more than delivery.pool_size connections (hard cap 100),
 * nor more than delivery.max_per_destination to one destination; idle
 * connections are kept per destination and reused (RSET between) up to
 * max_messages_per_connection, and closed after idle_timeout.  Jobs wait
 * in a FIFO per destination; destinations are served round-robin so that
 * one large queue cannot starve the others.
 */
#ifndef POSTERN_POOL_H
#define POSTERN_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "postern.h"

struct dns;
struct event_base;
struct smtp_client_result;
struct spool;

#define POOL_HARD_CAP	100

/* One transaction: one message's recipients for one destination. */
struct pool_job {
	uint64_t		 id;
	qid_t			 msgid;
	char			 dest[256];	/* recipient domain, lowercased */
	const char		*sender;	/* borrowed from the owner */
	const char		**rcpts;	/* owned array, borrowed strings */
	size_t			*rcpt_idx;	/* owned: index in the envelope */
	size_t			 nrcpts;
	bool			 eightbit;
	bool			 smtputf8;
	const char		*prefix;	/* borrowed: DKIM-Signature fields */
	size_t			 prefix_len;
	void			*owner;		/* the deliver.c message */
	struct pool_job		*next;		/* destination FIFO */
};

/* What one attempt produced, for logging and the journal. */
struct pool_attempt {
	const struct smtp_client_result	*rcpt;		/* per recipient */
	const struct smtp_client_result	*overall;
	char				 relay[320];	/* host[addr]:port */
	char				 tls[24];	/* "TLSv1.3" or "none" */
	bool				 verified;
	double				 conn_time;	/* seconds to ready */
};

/*
 * Called when a job is finished (delivered, rejected, or not attempted
 * because the destination failed): the callee owns the job afterwards
 * and must call pool_resume(conn_id) once its outcome is durable (conn_id
 * 0 means no connection is waiting).
 */
typedef void (*pool_result_fn)(struct pool_job *, const struct pool_attempt *,
    uint64_t conn_id);

struct pool_env {
	struct event_base	*base;
	struct spool		*spool;
	struct dns		*dns;
	pool_result_fn		 result;
};

void	pool_init(const struct pool_env *);
void	pool_submit(struct pool_job *);
void	pool_resume(uint64_t conn_id);
/* Stop opening connections, close idle ones. */
void	pool_shutdown(void);
void	pool_free_all(void);

struct pool_stats {
	size_t		size;		/* the configured cap */
	size_t		in_use;		/* connecting or in a transaction */
	size_t		idle;
	size_t		waiting;	/* jobs waiting for a connection */
	size_t		peak;		/* highest connections ever open */
};
void	pool_get_stats(struct pool_stats *);
/* Connections in the middle of a transaction (what a stop waits for). */
size_t	pool_busy(void);

#endif /* POSTERN_POOL_H */
