/*
 * spool.h: the durable on-disk queue (SPEC section 3, SECURITY-CASES
 * section 3).  One file per message under spool_dir/queue/, written into
 * incoming/ first and committed by a sync thread that renames and makes
 * whole batches durable with one syncfs(2) (group commit).  Per-recipient
 * delivery state is an append-only, checksummed journal at the end of each
 * file.  The byte-level format is in doc/spool.md.
 *
 * Threads: every function is called from the event-loop thread, except
 * that spool_writer_*, spool_journal_append and spool_remove may also be
 * called from other threads.  Completion callbacks always run on the loop
 * thread of the event_base given to spool_open (which must have been set
 * up after evthread_use_pthreads()).
 */
#ifndef POSTERN_SPOOL_H
#define POSTERN_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "postern.h"

struct event_base;
struct spool;
struct spool_writer;

/* Bounds on what a spool file may hold; the reader enforces them too. */
#define SPOOL_FIELD_MAX		4096	/* any envelope string, octets */
#define SPOOL_RCPTS_MAX		100000	/* recipients per message */
#define SPOOL_ENVELOPE_MAX	(16 * 1024 * 1024)	/* envelope octets */
#define SPOOL_REPLY_MAX		512	/* journal: remote reply text */
#define SPOOL_REMOTE_MAX	256	/* journal: remote host */
#define SPOOL_ERROR_MAX		512	/* journal: last error text */
#define SPOOL_DSN_MAX		11	/* "5.1.10" etc., without the NUL */
#define SPOOL_EVENTS_MAX	32	/* escalation events 0..31 */

/* Recipient states; also the outcome of a SPOOL_REC_RCPT_DONE record. */
#define SPOOL_RCPT_PENDING	0
#define SPOOL_RCPT_DELIVERED	1
#define SPOOL_RCPT_FAILED	2
#define SPOOL_RCPT_EXPIRED	3

/* Envelope flags. */
#define SPOOL_F_8BITMIME	0x1
#define SPOOL_F_SMTPUTF8	0x2

struct spool_rcpt {
	char	*addr;			/* owned */
	int	 state;			/* SPOOL_RCPT_* */
	char	 dsn[12];		/* "" while pending */
	char	*reply;			/* owned, NULL while pending */
	char	*remote;		/* owned, NULL while pending */
};

/* One past attempt, from the journal (spool_load / recovery). */
struct spool_attempt {
	int		 attempt;	/* 1, 2, ... */
	int64_t		 next_attempt;	/* when the next one was planned */
	char		*error;		/* owned; the attempt's last error */
};
/* Attempts kept in an envelope's history (the most recent ones). */
#define SPOOL_HISTORY_MAX	16

struct spool_envelope {
	qid_t		 id;
	int64_t		 queued_at;
	char		*sender;	/* "" for the null sender */
	struct spool_rcpt *rcpts;
	size_t		 nrcpts;
	char		*client_addr;	/* these four may be NULL */
	char		*client_name;
	char		*helo;
	char		*sasl_user;
	uint32_t	 flags;		/* SPOOL_F_* */
	uint64_t	 size;		/* body octets */
	/* replayed state (spool_recover / spool_load) */
	int		 attempts;
	int64_t		 next_attempt;
	char		*last_error;	/* owned, NULL when none */
	bool		 held;
	unsigned int	 escalations_pending;	/* bit per event */
	bool		 bounce_done;
	struct spool_attempt history[SPOOL_HISTORY_MAX];	/* oldest first */
	size_t		 nhistory;
};

/* Frees the members, not the struct; accepts a zeroed envelope. */
void	 spool_envelope_free(struct spool_envelope *);

/* error is 0 or an errno value; cookie identifies the requester. */
typedef void (*spool_done_cb)(uint64_t cookie, int error, void *arg);
/* The envelope is borrowed for the call; return -1 to stop recovery. */
typedef int (*spool_recover_cb)(const struct spool_envelope *, void *arg);

/*
 * Open (creating 0700 if missing) the spool and start its sync thread.
 * Refuses a spool directory, subdirectory or ancestor that another user
 * owns or that is group/world-writable (sticky ancestors such as /tmp
 * excepted).  Reads POSTERN_CRASHPOINT ("after-temp-write", "after-rename"
 * or "after-sync", optionally ":N") and POSTERN_SPOOL_FAULT ("sync-eio")
 * once, for the crash and fault tests.
 */
struct spool	*spool_open(const char *dir, struct event_base *, char *err,
		    size_t errlen);
/* Drains pending requests (calling their callbacks), joins the thread. */
void	 spool_close(struct spool *);
/*
 * Start-up: empties incoming/, validates every queue/ file (quarantining
 * bad ones into corrupt/), truncates a torn journal tail, and calls cb
 * once per good message.  Returns the number recovered, or -1.
 */
int	 spool_recover(struct spool *, spool_recover_cb, void *arg);

/*
 * A message being received: the envelope (id, queued_at, sender, rcpts
 * with addr only, client fields, flags; size and state are ignored) is
 * written at once; the body follows through spool_writer_write.
 */
struct spool_writer *spool_writer_new(struct spool *,
		    const struct spool_envelope *, char *err, size_t errlen);
/* Append body octets.  A write error is sticky: -1 with errno from now on. */
int	 spool_writer_write(struct spool_writer *, const void *, size_t);
/*
 * Finish the file and hand it to the sync thread; takes ownership of the
 * writer in every case.  Returns 0 and later calls cb on the loop thread
 * with 0 (durably queued as queue/<id>) or an errno (nothing queued: EEXIST
 * for a duplicate id, EIO for a failed sync, ...).  Returns -1 with errno
 * set, removes the file and never calls cb, when a write had already
 * failed (ENOSPC, EIO) or the spool is closing (ESHUTDOWN).
 */
int	 spool_writer_commit(struct spool_writer *, spool_done_cb,
		    uint64_t cookie, void *arg);
/* Unlink the temporary file and free the writer; accepts NULL. */
void	 spool_writer_abort(struct spool_writer *);
/* Body octets written so far. */
uint64_t spool_writer_size(const struct spool_writer *);

enum spool_rec {
	SPOOL_REC_RCPT_DONE = 1,
	SPOOL_REC_ATTEMPT,
	SPOOL_REC_HOLD,
	SPOOL_REC_RELEASE,
	SPOOL_REC_ESCALATION_PENDING,
	SPOOL_REC_ESCALATION_DONE,
	SPOOL_REC_BOUNCE_DONE
};

/*
 * One journal record; only the members of its type are read.  Strings are
 * borrowed and truncated to their SPOOL_*_MAX bound; NULL means "".
 *   RCPT_DONE: rcpt_index, outcome (SPOOL_RCPT_DELIVERED/FAILED/EXPIRED),
 *              dsn, reply, remote
 *   ATTEMPT: attempts, next_attempt (wall clock), last_error
 *   ESCALATION_PENDING, ESCALATION_DONE: event (0..31)
 */
struct spool_record {
	enum spool_rec	 type;
	int		 rcpt_index;
	int		 outcome;
	char		 dsn[12];
	const char	*reply;
	const char	*remote;
	int		 attempts;
	int64_t		 next_attempt;
	const char	*last_error;
	int		 event;
};

/*
 * Append a record to queue/<id> durably; cb (may be NULL) gets 0 once it
 * is on disk.  After a non-zero error the record may or may not survive a
 * crash.  Returns -1 (EINVAL, ESHUTDOWN) without calling cb.
 */
int	 spool_journal_append(struct spool *, qid_t,
		    const struct spool_record *, spool_done_cb, uint64_t cookie,
		    void *arg);
/* Unlink queue/<id> durably; cb may be NULL (ENOENT when it was absent). */
int	 spool_remove(struct spool *, qid_t, spool_done_cb, uint64_t cookie,
		    void *arg);
/* Re-read the envelope and replayed state of one message (no body check). */
int	 spool_load(struct spool *, qid_t, struct spool_envelope *out);
/*
 * Open queue/<id> for reading the body with pread: *fd (caller closes),
 * body at *offset, *len octets.
 */
int	 spool_open_body(struct spool *, qid_t, int *fd, off_t *offset,
		    uint64_t *len);

struct spool_stats {
	uint64_t	committed;	/* messages made durable */
	uint64_t	journal_records; /* journal records made durable */
	uint64_t	syncs;		/* syncfs (or fsync) calls */
	uint64_t	sync_errors;
	uint64_t	corrupt;	/* files moved to corrupt/ */
};
void	 spool_get_stats(struct spool *, struct spool_stats *);

/*
 * The encoder, exposed for tests and the fuzz target: the header and
 * envelope records of a file whose body is body_len octets, in a buffer
 * the caller frees.  Returns -1 with err set for an envelope the spool
 * refuses (no recipient, a field over SPOOL_FIELD_MAX, ...).
 */
int	 spool_encode_envelope(const struct spool_envelope *,
		    uint64_t body_len, uint8_t **out, size_t *outlen, char *err,
		    size_t errlen);

#endif /* POSTERN_SPOOL_H */
