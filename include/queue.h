/*
 * queue.h: the in-memory index of queued messages.  The spool on disk is
 * the truth; this index is rebuilt from it at start-up and kept small per
 * message (no recipients, no body) so that a million queued messages fit
 * comfortably.  Messages are found by id (hash map) and by next attempt
 * time (binary heap, O(log n) per change).
 */
#ifndef POSTERN_QUEUE_H
#define POSTERN_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "postern.h"

enum queue_state {
	QUEUE_ACTIVE,		/* due now or being delivered */
	QUEUE_DEFERRED,		/* waiting for its next attempt */
	QUEUE_HELD,		/* operator hold */
	QUEUE_NSTATES
};

struct queue_msg {
	qid_t		 id;
	uint8_t		 state;		/* enum queue_state */
	uint16_t	 attempts;
	uint32_t	 nrcpt_pending;
	uint32_t	 heap_idx;	/* position in the due heap */
	int64_t		 queued_at;
	int64_t		 next_attempt;
	uint64_t	 size;
	char		*sender;	/* owned */
	char		*last_error;	/* owned; NULL when none */
};

struct queue;

struct queue	*queue_new(void);
void		 queue_free(struct queue *);

/* Pick a fresh id that is neither queued nor reserved, and reserve it. */
qid_t		 queue_reserve_id(struct queue *);
void		 queue_release_id(struct queue *, qid_t);

/* Add a message (copies sender and last_error).  Releases a reservation. */
struct queue_msg *queue_add(struct queue *, qid_t, const char *sender,
		    uint64_t size, int64_t queued_at, uint32_t nrcpt_pending,
		    int attempts, int64_t next_attempt, const char *last_error,
		    bool held);
struct queue_msg *queue_get(const struct queue *, qid_t);
void		 queue_remove(struct queue *, qid_t);
void		 queue_set_state(struct queue *, struct queue_msg *,
		    enum queue_state);
void		 queue_set_next_attempt(struct queue *, struct queue_msg *,
		    int64_t);
void		 queue_set_last_error(struct queue_msg *, const char *);
/* The message with the earliest next attempt that is not held, or NULL. */
struct queue_msg *queue_peek_due(const struct queue *);

struct queue_counts {
	size_t		 total;
	size_t		 by_state[QUEUE_NSTATES];
	int64_t		 oldest_queued_at;	/* 0 when empty */
};
void		 queue_counts(const struct queue *, struct queue_counts *);

/*
 * Page through the queue in id order from a cursor: messages with an id
 * greater than *cursor, at most limit of them.  *cursor is updated to the
 * last id returned (0 starts).  Returns the number written to out.
 */
size_t		 queue_page(const struct queue *, qid_t *cursor,
		    struct queue_msg **out, size_t limit);

#endif /* POSTERN_QUEUE_H */
