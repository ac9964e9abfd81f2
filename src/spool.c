/*
 * spool.c: the durable queue (SPEC section 3, SECURITY-CASES section 3;
 * byte-level format and protocol in doc/spool.md).
 *
 * A message is written into incoming/<ID>.<random> (O_EXCL, 0600) as a
 * header, typed length-prefixed envelope records, the body and an END
 * record whose CRC32 covers everything before it.  Committing hands the
 * file to one sync thread, which takes every pending request at once,
 * renames new files into queue/<ID> (never over an existing one), appends
 * journal records, unlinks removed messages, and then makes the whole
 * batch durable with a single syncfs(2): that is the group commit.  Only
 * then are the completions posted back to the loop thread, where the
 * server may answer 250.  A failed sync fails the whole batch and is never
 * retried (an fsync error may already have dropped the dirty pages).
 *
 * Ownership: the sync thread owns every queued request until it moves it
 * to the done list; the loop thread frees requests after their callback.
 * Requesters are named by cookies, never by pointers.
 */
#include "compat.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <zlib.h>

#include "log.h"
#include "spool.h"
#include "util.h"

#define SPOOL_MAGIC		"PSTRN1\n\0"
#define SPOOL_MAGIC_LEN		8
#define SPOOL_VERSION		1
#define SPOOL_HDR_LEN		32
#define SPOOL_END_TAG		"PEND"
#define SPOOL_END_LEN		8
#define SPOOL_ENVREC_HDR	6	/* u16 type, u32 length */
#define SPOOL_JREC_HDR		4	/* u16 type, u16 length */
#define SPOOL_JREC_PAYLOAD_MAX	1024
#define SPOOL_JREC_MAX \
	(SPOOL_JREC_HDR + SPOOL_JREC_PAYLOAD_MAX + 4)
#define SPOOL_IO_CHUNK		(64 * 1024)
#define SPOOL_TMPNAME_MAX	32

/* Envelope record types, in the canonical (strictly increasing) order. */
enum spool_envrec {
	SPOOL_E_QID = 1,
	SPOOL_E_QUEUED_AT,
	SPOOL_E_SENDER,
	SPOOL_E_RCPT,
	SPOOL_E_CLIENT_ADDR,
	SPOOL_E_CLIENT_NAME,
	SPOOL_E_HELO,
	SPOOL_E_SASL_USER,
	SPOOL_E_FLAGS
};

enum spool_crash {
	SPOOL_CRASH_NONE,
	SPOOL_CRASH_AFTER_TEMP_WRITE,
	SPOOL_CRASH_AFTER_RENAME,
	SPOOL_CRASH_AFTER_SYNC
};

enum spool_reqtype {
	SPOOL_REQ_COMMIT,
	SPOOL_REQ_JOURNAL,
	SPOOL_REQ_REMOVE
};

struct spool_req {
	struct spool_req	*next;
	enum spool_reqtype	 type;
	qid_t			 id;
	int			 fd;		/* owned; -1 when none */
	char			 tmpname[SPOOL_TMPNAME_MAX];
	uint8_t			 rec[SPOOL_JREC_MAX];
	size_t			 reclen;
	bool			 done;		/* rename/append/unlink ok */
	int			 error;
	spool_done_cb		 cb;
	uint64_t		 cookie;
	void			*arg;		/* borrowed */
};

struct spool {
	char			*dir;		/* owned */
	int			 dirfd;
	int			 incoming_fd;
	int			 queue_fd;
	int			 corrupt_fd;
	struct event_base	*base;		/* borrowed */
	struct event		*done_ev;	/* owned */
	pthread_t		 thread;
	bool			 thread_started;
	pthread_mutex_t		 mtx;		/* guards everything below */
	pthread_cond_t		 cond;
	struct spool_req	*pending;
	struct spool_req	**pending_tail;
	struct spool_req	*done;
	struct spool_req	**done_tail;
	bool			 stopping;
	struct spool_stats	 stats;
	/* test seams, read once at spool_open */
	enum spool_crash	 crash_point;
	unsigned long		 crash_at;
	unsigned long		 crash_seen;	/* atomic */
	bool			 fault_sync_eio;
};

struct spool_writer {
	struct spool		*spool;		/* borrowed */
	qid_t			 id;
	int			 fd;
	char			 tmpname[SPOOL_TMPNAME_MAX];
	uint8_t			 hdr[SPOOL_HDR_LEN];
	uint8_t			*buf;		/* owned, SPOOL_IO_CHUNK plus
						 * room for END */
	size_t			 buflen;
	bool			 hdr_in_buf;	/* buf starts with the header:
						 * nothing written yet */
	uLong			 crc_rest;	/* CRC of envelope + body */
	uint64_t		 rest_len;
	uint64_t		 body_len;
	int			 error;		/* sticky errno */
};

/* A growable byte buffer for the encoder. */
struct spool_buf {
	uint8_t		*p;
	size_t		 len;
	size_t		 cap;
};

static void	 spool_done_event(evutil_socket_t, short, void *);

/* Big-endian integer helpers: the format is byte-order independent. */
static void
spool_put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static void
spool_put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = (v >> 16) & 0xff;
	p[2] = (v >> 8) & 0xff;
	p[3] = v & 0xff;
}

static void
spool_put64(uint8_t *p, uint64_t v)
{
	spool_put32(p, (uint32_t)(v >> 32));
	spool_put32(p + 4, (uint32_t)v);
}

static uint16_t
spool_get16(const uint8_t *p)
{
	return ((uint16_t)(p[0] << 8 | p[1]));
}

static uint32_t
spool_get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3]);
}

static uint64_t
spool_get64(const uint8_t *p)
{
	return ((uint64_t)spool_get32(p) << 32 | spool_get32(p + 4));
}

static void
spool_buf_reserve(struct spool_buf *b, size_t n)
{
	if (b->cap - b->len >= n)
		return;
	while (b->cap - b->len < n)
		b->cap = b->cap == 0 ? 256 : b->cap * 2;
	b->p = xreallocarray(b->p, b->cap, 1);
}

static void
spool_buf_add(struct spool_buf *b, const void *p, size_t n)
{
	spool_buf_reserve(b, n);
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

/* One envelope record: type, length, value. */
static void
spool_buf_rec(struct spool_buf *b, int type, const void *p, size_t n)
{
	uint8_t	h[SPOOL_ENVREC_HDR];

	spool_put16(h, (uint16_t)type);
	spool_put32(h + 2, (uint32_t)n);
	spool_buf_add(b, h, sizeof(h));
	spool_buf_add(b, p, n);
}

static int
spool_field_ok(const char *s, const char *what, char *err, size_t errlen)
{
	if (s != NULL && strnlen(s, SPOOL_FIELD_MAX + 1) > SPOOL_FIELD_MAX) {
		snprintf(err, errlen, "%s longer than %d octets", what,
		    SPOOL_FIELD_MAX);
		return (-1);
	}
	return (0);
}

int
spool_encode_envelope(const struct spool_envelope *env, uint64_t body_len,
    uint8_t **out, size_t *outlen, char *err, size_t errlen)
{
	struct spool_buf	 b = { NULL, 0, 0 };
	uint8_t			 v[8];
	size_t			 i;
	const struct {
		int		 type;
		const char	*s;
		const char	*what;
	} opt[] = {
		{ SPOOL_E_CLIENT_ADDR, env->client_addr, "client address" },
		{ SPOOL_E_CLIENT_NAME, env->client_name, "client name" },
		{ SPOOL_E_HELO, env->helo, "helo" },
		{ SPOOL_E_SASL_USER, env->sasl_user, "sasl user" },
	};

	if (env->id == 0) {
		snprintf(err, errlen, "queue id is zero");
		return (-1);
	}
	if (env->sender == NULL) {
		snprintf(err, errlen, "no sender");
		return (-1);
	}
	if (env->nrcpts == 0 || env->nrcpts > SPOOL_RCPTS_MAX) {
		snprintf(err, errlen, "%zu recipients (want 1..%d)",
		    env->nrcpts, SPOOL_RCPTS_MAX);
		return (-1);
	}
	if ((env->flags & ~(uint32_t)(SPOOL_F_8BITMIME | SPOOL_F_SMTPUTF8))
	    != 0) {
		snprintf(err, errlen, "unknown flags 0x%x",
		    (unsigned)env->flags);
		return (-1);
	}
	if (spool_field_ok(env->sender, "sender", err, errlen) == -1)
		return (-1);
	for (i = 0; i < env->nrcpts; i++) {
		if (env->rcpts[i].addr == NULL) {
			snprintf(err, errlen, "recipient %zu has no address",
			    i);
			return (-1);
		}
		if (spool_field_ok(env->rcpts[i].addr, "recipient", err,
		    errlen) == -1)
			return (-1);
	}
	for (i = 0; i < nitems(opt); i++)
		if (spool_field_ok(opt[i].s, opt[i].what, err, errlen) == -1)
			return (-1);

	/* The header; the envelope length is filled in below. */
	spool_buf_reserve(&b, SPOOL_HDR_LEN);
	memset(b.p, 0, SPOOL_HDR_LEN);
	memcpy(b.p, SPOOL_MAGIC, SPOOL_MAGIC_LEN);
	spool_put16(b.p + 8, SPOOL_VERSION);
	spool_put16(b.p + 10, SPOOL_HDR_LEN);
	spool_put64(b.p + 16, body_len);
	b.len = SPOOL_HDR_LEN;

	spool_put32(v, env->id);
	spool_buf_rec(&b, SPOOL_E_QID, v, 4);
	spool_put64(v, (uint64_t)env->queued_at);
	spool_buf_rec(&b, SPOOL_E_QUEUED_AT, v, 8);
	spool_buf_rec(&b, SPOOL_E_SENDER, env->sender, strlen(env->sender));
	for (i = 0; i < env->nrcpts; i++)
		spool_buf_rec(&b, SPOOL_E_RCPT, env->rcpts[i].addr,
		    strlen(env->rcpts[i].addr));
	for (i = 0; i < nitems(opt); i++)
		if (opt[i].s != NULL)
			spool_buf_rec(&b, opt[i].type, opt[i].s,
			    strlen(opt[i].s));
	spool_put32(v, env->flags);
	spool_buf_rec(&b, SPOOL_E_FLAGS, v, 4);

	/* Bounded by SPOOL_RCPTS_MAX * (SPOOL_FIELD_MAX + 6) < 4 GiB. */
	spool_put32(b.p + 12, (uint32_t)(b.len - SPOOL_HDR_LEN));
	*out = b.p;
	*outlen = b.len;
	return (0);
}

/* A string value: no NUL inside, since it comes back as a C string. */
static char *
spool_decode_str(const uint8_t *p, uint32_t n)
{
	if (n > SPOOL_FIELD_MAX || memchr(p, '\0', n) != NULL)
		return (NULL);
	return (xstrndup((const char *)p, n));
}

/*
 * Parse the envelope records into env (zeroed by the caller).  Records must
 * come in canonical order, so that an accepted envelope re-encodes to the
 * same bytes (FZ-07).
 */
static int
spool_decode_envelope(const uint8_t *p, size_t len,
    struct spool_envelope *env, char *why, size_t whylen)
{
	size_t	 off = 0, cap = 0;
	int	 last = 0;
	char	**slot;

	while (off < len) {
		uint16_t	 type;
		uint32_t	 n;
		const uint8_t	*v;

		if (len - off < SPOOL_ENVREC_HDR) {
			snprintf(why, whylen, "short envelope record");
			return (-1);
		}
		type = spool_get16(p + off);
		n = spool_get32(p + off + 2);
		off += SPOOL_ENVREC_HDR;
		if (n > len - off) {
			snprintf(why, whylen, "envelope record overruns");
			return (-1);
		}
		v = p + off;
		off += n;
		if (type < last || (type == last && type != SPOOL_E_RCPT) ||
		    type > SPOOL_E_FLAGS || type == 0) {
			snprintf(why, whylen, "envelope record %u out of "
			    "order", (unsigned)type);
			return (-1);
		}
		if (last < SPOOL_E_SENDER && type != last + 1) {
			snprintf(why, whylen, "envelope record %d missing",
			    last + 1);
			return (-1);
		}
		if (type > SPOOL_E_RCPT && last < SPOOL_E_RCPT) {
			snprintf(why, whylen, "no recipient");
			return (-1);
		}
		last = type;
		slot = NULL;
		switch (type) {
		case SPOOL_E_QID:
		case SPOOL_E_FLAGS:
			if (n != 4) {
				snprintf(why, whylen, "bad record %u length",
				    (unsigned)type);
				return (-1);
			}
			if (type == SPOOL_E_QID)
				env->id = spool_get32(v);
			else
				env->flags = spool_get32(v);
			break;
		case SPOOL_E_QUEUED_AT:
			if (n != 8) {
				snprintf(why, whylen, "bad queued_at length");
				return (-1);
			}
			env->queued_at = (int64_t)spool_get64(v);
			break;
		case SPOOL_E_RCPT:
			if (env->nrcpts == SPOOL_RCPTS_MAX) {
				snprintf(why, whylen, "too many recipients");
				return (-1);
			}
			if (env->nrcpts == cap) {
				cap = cap == 0 ? 4 : cap * 2;
				env->rcpts = xreallocarray(env->rcpts, cap,
				    sizeof(*env->rcpts));
			}
			memset(&env->rcpts[env->nrcpts], 0,
			    sizeof(*env->rcpts));
			slot = &env->rcpts[env->nrcpts].addr;
			break;
		case SPOOL_E_SENDER:
			slot = &env->sender;
			break;
		case SPOOL_E_CLIENT_ADDR:
			slot = &env->client_addr;
			break;
		case SPOOL_E_CLIENT_NAME:
			slot = &env->client_name;
			break;
		case SPOOL_E_HELO:
			slot = &env->helo;
			break;
		case SPOOL_E_SASL_USER:
			slot = &env->sasl_user;
			break;
		}
		if (slot != NULL) {
			if ((*slot = spool_decode_str(v, n)) == NULL) {
				snprintf(why, whylen, "bad string in record "
				    "%u", (unsigned)type);
				return (-1);
			}
			if (type == SPOOL_E_RCPT)
				env->nrcpts++;
		}
	}
	if (last != SPOOL_E_FLAGS) {
		snprintf(why, whylen, "envelope incomplete");
		return (-1);
	}
	if (env->id == 0 ||
	    (env->flags & ~(uint32_t)(SPOOL_F_8BITMIME | SPOOL_F_SMTPUTF8))) {
		snprintf(why, whylen, "bad id or flags");
		return (-1);
	}
	return (0);
}

void
spool_envelope_free(struct spool_envelope *env)
{
	size_t	i;

	if (env == NULL)
		return;
	for (i = 0; i < env->nrcpts; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].reply);
		free(env->rcpts[i].remote);
	}
	free(env->rcpts);
	free(env->sender);
	free(env->client_addr);
	free(env->client_name);
	free(env->helo);
	free(env->sasl_user);
	free(env->last_error);
	for (i = 0; i < env->nhistory; i++)
		free(env->history[i].error);
	memset(env, 0, sizeof(*env));
}

/* Append a bounded string: u16 length then bytes (NULL is ""). */
static size_t
spool_rec_str(uint8_t *p, const char *s, size_t max)
{
	size_t	n = s == NULL ? 0 : strnlen(s, max);

	spool_put16(p, (uint16_t)n);
	if (n > 0)
		memcpy(p + 2, s, n);
	return (2 + n);
}

/* Encode one journal record with its CRC; -1 for a bad record. */
static int
spool_record_encode(const struct spool_record *r, uint8_t *buf, size_t *len)
{
	uint8_t	*p = buf + SPOOL_JREC_HDR;
	size_t	 n, dsnlen;
	uLong	 crc;

	switch (r->type) {
	case SPOOL_REC_RCPT_DONE:
		dsnlen = strnlen(r->dsn, sizeof(r->dsn));
		if (r->rcpt_index < 0 || r->rcpt_index >= SPOOL_RCPTS_MAX ||
		    r->outcome < SPOOL_RCPT_DELIVERED ||
		    r->outcome > SPOOL_RCPT_EXPIRED || dsnlen > SPOOL_DSN_MAX)
			return (-1);
		spool_put32(p, (uint32_t)r->rcpt_index);
		p[4] = (uint8_t)r->outcome;
		p[5] = (uint8_t)dsnlen;
		memcpy(p + 6, r->dsn, dsnlen);
		n = 6 + dsnlen;
		n += spool_rec_str(p + n, r->reply, SPOOL_REPLY_MAX);
		n += spool_rec_str(p + n, r->remote, SPOOL_REMOTE_MAX);
		break;
	case SPOOL_REC_ATTEMPT:
		if (r->attempts < 0)
			return (-1);
		spool_put32(p, (uint32_t)r->attempts);
		spool_put64(p + 4, (uint64_t)r->next_attempt);
		n = 12 + spool_rec_str(p + 12, r->last_error,
		    SPOOL_ERROR_MAX);
		break;
	case SPOOL_REC_HOLD:
	case SPOOL_REC_RELEASE:
	case SPOOL_REC_BOUNCE_DONE:
		n = 0;
		break;
	case SPOOL_REC_ESCALATION_PENDING:
	case SPOOL_REC_ESCALATION_DONE:
		if (r->event < 0 || r->event >= SPOOL_EVENTS_MAX)
			return (-1);
		spool_put32(p, (uint32_t)r->event);
		n = 4;
		break;
	default:
		return (-1);
	}
	spool_put16(buf, (uint16_t)r->type);
	spool_put16(buf + 2, (uint16_t)n);
	crc = crc32(0L, buf, SPOOL_JREC_HDR + n);
	spool_put32(buf + SPOOL_JREC_HDR + n, (uint32_t)crc);
	*len = SPOOL_JREC_HDR + n + 4;
	return (0);
}

/* Read a u16-prefixed string at *off of a payload; NULL when malformed. */
static char *
spool_payload_str(const uint8_t *p, size_t len, size_t *off, size_t max)
{
	size_t	n;

	if (len - *off < 2)
		return (NULL);
	n = spool_get16(p + *off);
	*off += 2;
	if (n > max || n > len - *off || memchr(p + *off, '\0', n) != NULL)
		return (NULL);
	*off += n;
	return (xstrndup((const char *)p + *off - n, n));
}

/*
 * Apply one CRC-valid journal record to env.  A record whose payload does
 * not make sense is skipped (-1), not treated as a torn tail: records after
 * it were acknowledged and must still count.  A recipient's first final
 * state wins, so a delivered recipient is never made pending again.
 */
static int
spool_record_apply(struct spool_envelope *env, unsigned type,
    const uint8_t *p, size_t len)
{
	struct spool_rcpt	*rc;
	char			*reply, *remote, *e;
	size_t			 off;
	uint32_t		 idx, v;
	unsigned		 dsnlen, outcome;

	switch (type) {
	case SPOOL_REC_RCPT_DONE:
		if (len < 6)
			return (-1);
		idx = spool_get32(p);
		outcome = p[4];
		dsnlen = p[5];
		if (idx >= env->nrcpts || outcome < SPOOL_RCPT_DELIVERED ||
		    outcome > SPOOL_RCPT_EXPIRED || dsnlen > SPOOL_DSN_MAX ||
		    len - 6 < dsnlen || memchr(p + 6, '\0', dsnlen) != NULL)
			return (-1);
		off = 6 + dsnlen;
		if ((reply = spool_payload_str(p, len, &off,
		    SPOOL_REPLY_MAX)) == NULL)
			return (-1);
		if ((remote = spool_payload_str(p, len, &off,
		    SPOOL_REMOTE_MAX)) == NULL || off != len) {
			free(reply);
			free(remote);
			return (-1);
		}
		rc = &env->rcpts[idx];
		if (rc->state != SPOOL_RCPT_PENDING) {
			free(reply);
			free(remote);
			return (0);
		}
		rc->state = (int)outcome;
		memcpy(rc->dsn, p + 6, dsnlen);
		rc->dsn[dsnlen] = '\0';
		rc->reply = reply;
		rc->remote = remote;
		return (0);
	case SPOOL_REC_ATTEMPT:
		if (len < 12 || (v = spool_get32(p)) > INT_MAX)
			return (-1);
		off = 12;
		if ((e = spool_payload_str(p, len, &off, SPOOL_ERROR_MAX)) ==
		    NULL || off != len) {
			free(e);
			return (-1);
		}
		env->attempts = (int)v;
		env->next_attempt = (int64_t)spool_get64(p + 4);
		/* Keep the most recent SPOOL_HISTORY_MAX for `show`. */
		if (env->nhistory == SPOOL_HISTORY_MAX) {
			free(env->history[0].error);
			memmove(&env->history[0], &env->history[1],
			    (SPOOL_HISTORY_MAX - 1) * sizeof(env->history[0]));
			env->nhistory--;
		}
		env->history[env->nhistory].attempt = (int)v;
		env->history[env->nhistory].next_attempt = env->next_attempt;
		env->history[env->nhistory++].error = xstrdup(e);
		free(env->last_error);
		env->last_error = e;
		return (0);
	case SPOOL_REC_HOLD:
	case SPOOL_REC_RELEASE:
	case SPOOL_REC_BOUNCE_DONE:
		if (len != 0)
			return (-1);
		if (type == SPOOL_REC_BOUNCE_DONE)
			env->bounce_done = true;
		else
			env->held = type == SPOOL_REC_HOLD;
		return (0);
	case SPOOL_REC_ESCALATION_PENDING:
	case SPOOL_REC_ESCALATION_DONE:
		if (len != 4 || (v = spool_get32(p)) >= SPOOL_EVENTS_MAX)
			return (-1);
		if (type == SPOOL_REC_ESCALATION_PENDING)
			env->escalations_pending |= 1u << v;
		else
			env->escalations_pending &= ~(1u << v);
		return (0);
	}
	return (-1);
}

/* pread until len octets or end of file; returns octets read or -1. */
static ssize_t
spool_pread(int fd, void *buf, size_t len, off_t off)
{
	size_t	got = 0;

	while (got < len) {
		ssize_t	n = pread(fd, (char *)buf + got, len - got,
		    off + (off_t)got);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			return (-1);
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return ((ssize_t)got);
}

static int
spool_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	size_t	done = 0;

	while (done < len) {
		ssize_t	n = pwrite(fd, (const char *)buf + done,
		    len - done, off + (off_t)done);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			return (-1);
		}
		done += (size_t)n;
	}
	return (0);
}

#define SPOOL_READ_VERIFY	0x1	/* stream the body through the CRC */
#define SPOOL_READ_FIXTAIL	0x2	/* truncate a torn journal tail */

/*
 * Read and validate one queue file.  Returns 0 with *env filled, or -1
 * with errno EBADMSG (why says what is wrong) or an I/O errno.  The body
 * is never held in memory: it is streamed through crc32 in 64 KiB reads.
 */
static int
spool_read_file(int fd, qid_t want, int flags, struct spool_envelope *env,
    char *why, size_t whylen)
{
	struct stat	 st;
	uint8_t		 hdr[SPOOL_HDR_LEN], end[SPOOL_END_LEN];
	uint8_t		 jr[SPOOL_JREC_MAX];
	uint8_t		*envb = NULL, *chunk = NULL;
	uint64_t	 size, body_len, end_off, off;
	uint32_t	 envlen;
	uLong		 crc;
	ssize_t		 n;
	int		 saved;
	char		 idbuf[QUEUE_ID_LEN + 1];

	memset(env, 0, sizeof(*env));
	if (fstat(fd, &st) == -1)
		return (-1);
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "not a regular file");
		goto bad;
	}
	size = (uint64_t)st.st_size;
	if ((n = spool_pread(fd, hdr, sizeof(hdr), 0)) == -1)
		return (-1);
	if ((size_t)n < sizeof(hdr)) {
		snprintf(why, whylen, "truncated header");
		goto bad;
	}
	if (memcmp(hdr, SPOOL_MAGIC, SPOOL_MAGIC_LEN) != 0 ||
	    spool_get16(hdr + 8) != SPOOL_VERSION ||
	    spool_get16(hdr + 10) != SPOOL_HDR_LEN ||
	    spool_get64(hdr + 24) != 0) {
		snprintf(why, whylen, "bad magic, version or header");
		goto bad;
	}
	envlen = spool_get32(hdr + 12);
	body_len = spool_get64(hdr + 16);
	/* Every length is checked against the file size before use. */
	if (envlen > SPOOL_ENVELOPE_MAX || envlen > size ||
	    body_len > size ||
	    SPOOL_HDR_LEN + envlen + body_len + SPOOL_END_LEN > size) {
		snprintf(why, whylen, "truncated (lengths exceed file size)");
		goto bad;
	}
	end_off = SPOOL_HDR_LEN + envlen + body_len;
	envb = xmalloc(envlen);
	if ((n = spool_pread(fd, envb, envlen, SPOOL_HDR_LEN)) == -1)
		goto ioerr;
	if ((size_t)n != envlen) {
		snprintf(why, whylen, "truncated envelope");
		goto bad;
	}
	if (spool_decode_envelope(envb, envlen, env, why, whylen) == -1)
		goto bad;
	if (want != 0 && env->id != want) {
		util_qid_format(idbuf, env->id);
		snprintf(why, whylen, "envelope names id %s", idbuf);
		goto bad;
	}
	env->size = body_len;

	if ((n = spool_pread(fd, end, sizeof(end), (off_t)end_off)) == -1)
		goto ioerr;
	if ((size_t)n != sizeof(end) || memcmp(end, SPOOL_END_TAG, 4) != 0) {
		snprintf(why, whylen, "no END record");
		goto bad;
	}
	if (flags & SPOOL_READ_VERIFY) {
		crc = crc32(0L, hdr, sizeof(hdr));
		crc = crc32(crc, envb, envlen);
		chunk = xmalloc(SPOOL_IO_CHUNK);
		for (off = 0; off < body_len; off += (uint64_t)n) {
			size_t	want_n = body_len - off < SPOOL_IO_CHUNK ?
			    (size_t)(body_len - off) : SPOOL_IO_CHUNK;

			n = spool_pread(fd, chunk, want_n,
			    (off_t)(SPOOL_HDR_LEN + envlen + off));
			if (n == -1)
				goto ioerr;
			if ((size_t)n != want_n) {
				snprintf(why, whylen, "truncated body");
				goto bad;
			}
			crc = crc32(crc, chunk, (uInt)n);
		}
		if ((uint32_t)crc != spool_get32(end + 4)) {
			snprintf(why, whylen, "checksum mismatch");
			goto bad;
		}
	}

	/* The journal: replay every valid record up to a torn tail. */
	off = end_off + SPOOL_END_LEN;
	while (off < size) {
		size_t	 plen;

		n = spool_pread(fd, jr, SPOOL_JREC_HDR, (off_t)off);
		if (n == -1)
			goto ioerr;
		if (n != SPOOL_JREC_HDR)
			break;
		plen = spool_get16(jr + 2);
		if (plen > SPOOL_JREC_PAYLOAD_MAX)
			break;
		n = spool_pread(fd, jr + SPOOL_JREC_HDR, plen + 4,
		    (off_t)(off + SPOOL_JREC_HDR));
		if (n == -1)
			goto ioerr;
		if ((size_t)n != plen + 4 || (uint32_t)crc32(0L, jr,
		    (uInt)(SPOOL_JREC_HDR + plen)) !=
		    spool_get32(jr + SPOOL_JREC_HDR + plen))
			break;
		if (spool_record_apply(env, spool_get16(jr),
		    jr + SPOOL_JREC_HDR, plen) == -1) {
			util_qid_format(idbuf, env->id);
			log_warnx("%s: skipping malformed journal record "
			    "type %u at offset %llu", idbuf,
			    (unsigned)spool_get16(jr),
			    (unsigned long long)off);
		}
		off += SPOOL_JREC_HDR + plen + 4;
	}
	if (off < size) {
		/*
		 * A torn append was never acknowledged.  Cut it off so that
		 * later appends are not hidden behind it.
		 */
		util_qid_format(idbuf, env->id);
		log_warnx("%s: ignoring torn journal tail of %llu octets",
		    idbuf, (unsigned long long)(size - off));
		if ((flags & SPOOL_READ_FIXTAIL) &&
		    ftruncate(fd, (off_t)off) == -1)
			log_warn("%s: ftruncate", idbuf);
	}
	free(envb);
	free(chunk);
	return (0);

 bad:
	free(envb);
	free(chunk);
	spool_envelope_free(env);
	errno = EBADMSG;
	return (-1);
 ioerr:
	saved = errno;
	free(envb);
	free(chunk);
	spool_envelope_free(env);
	errno = saved;
	return (-1);
}

/* The crash-point seam (CC-02): SIGKILL at the Nth pass of a point. */
static void
spool_crashpoint(struct spool *s, enum spool_crash point)
{
	if (s->crash_point != point)
		return;
	if (__atomic_add_fetch(&s->crash_seen, 1, __ATOMIC_SEQ_CST) <
	    s->crash_at)
		return;
	raise(SIGKILL);
}

static void
spool_read_seams(struct spool *s)
{
	const char	*v, *colon;
	char		 name[32];
	size_t		 len;
	const struct {
		const char		*name;
		enum spool_crash	 point;
	} points[] = {
		{ "after-temp-write", SPOOL_CRASH_AFTER_TEMP_WRITE },
		{ "after-rename", SPOOL_CRASH_AFTER_RENAME },
		{ "after-sync", SPOOL_CRASH_AFTER_SYNC },
	};
	size_t		 i;

	s->crash_at = 1;
	if ((v = getenv("POSTERN_CRASHPOINT")) != NULL && *v != '\0') {
		colon = strchr(v, ':');
		len = colon != NULL ? (size_t)(colon - v) : strlen(v);
		if (len < sizeof(name)) {
			memcpy(name, v, len);
			name[len] = '\0';
			for (i = 0; i < nitems(points); i++)
				if (strcmp(name, points[i].name) == 0)
					s->crash_point = points[i].point;
		}
		if (colon != NULL) {
			char		*ep;
			unsigned long	 at;

			errno = 0;
			at = strtoul(colon + 1, &ep, 10);
			if (errno == 0 && *ep == '\0' && at > 0)
				s->crash_at = at;
		}
	}
	if ((v = getenv("POSTERN_SPOOL_FAULT")) != NULL &&
	    strcmp(v, "sync-eio") == 0)
		s->fault_sync_eio = true;
}

/* Owned by us and writable by nobody else. */
static int
spool_check_dir(int fd, const char *what, char *err, size_t errlen)
{
	struct stat	st;

	if (fstat(fd, &st) == -1) {
		snprintf(err, errlen, "%s: %s", what, strerror(errno));
		return (-1);
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: not a directory", what);
		return (-1);
	}
	if (st.st_uid != geteuid()) {
		snprintf(err, errlen, "%s: owned by uid %u, not %u", what,
		    (unsigned)st.st_uid, (unsigned)geteuid());
		return (-1);
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen, "%s: group or world writable (mode "
		    "%04o)", what, (unsigned)(st.st_mode & 07777));
		return (-1);
	}
	return (0);
}

/*
 * Every ancestor must belong to root or to us, and only a sticky one (as
 * /tmp) may be writable by others: otherwise someone else could swap the
 * spool directory under us.
 */
static int
spool_check_ancestors(const char *dir, char *err, size_t errlen)
{
	char		*real, *p;
	struct stat	 st;
	int		 rc = -1;

	if ((real = realpath(dir, NULL)) == NULL) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return (-1);
	}
	p = real;
	for (;;) {
		char	save;

		p = strchr(p + 1, '/');
		if (p == NULL)
			break;
		save = p[1];
		/* Check the prefix up to and including this slash. */
		p[1] = '\0';
		if (lstat(real, &st) == -1) {
			snprintf(err, errlen, "%s: %s", real, strerror(errno));
			goto out;
		}
		p[1] = save;
		if ((st.st_uid != 0 && st.st_uid != geteuid()) ||
		    ((st.st_mode & (S_IWGRP | S_IWOTH)) &&
		    !(st.st_mode & S_ISVTX))) {
			*p = '\0';
			snprintf(err, errlen, "%s: unsafe ancestor of the "
			    "spool (owner or mode)", real);
			goto out;
		}
	}
	if (lstat("/", &st) == 0 && st.st_uid != 0 &&
	    st.st_uid != geteuid()) {
		snprintf(err, errlen, "/: not owned by root");
		goto out;
	}
	rc = 0;
 out:
	free(real);
	return (rc);
}

static int
spool_open_subdir(struct spool *s, const char *name, int *fdp, char *err,
    size_t errlen)
{
	char	what[PATH_MAX];

	snprintf(what, sizeof(what), "%s/%s", s->dir, name);
	if (mkdirat(s->dirfd, name, 0700) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "mkdir %s: %s", what, strerror(errno));
		return (-1);
	}
	if ((*fdp = openat(s->dirfd, name, O_RDONLY | O_DIRECTORY |
	    O_NOFOLLOW | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "%s: %s", what, strerror(errno));
		return (-1);
	}
	return (spool_check_dir(*fdp, what, err, errlen));
}

/*
 * Rename without ever replacing an existing message (a colliding id must
 * fail, not overwrite an acknowledged file).
 */
static int
spool_rename_noreplace(int ofd, const char *from, int nfd, const char *to)
{
#ifdef HAVE_RENAMEAT2
	if (renameat2(ofd, from, nfd, to, RENAME_NOREPLACE) == 0)
		return (0);
	if (errno != EINVAL && errno != ENOSYS)
		return (-1);
#endif
	/* link(2) refuses an existing target: the same guarantee. */
	if (linkat(ofd, from, nfd, to, 0) == -1)
		return (-1);
	if (unlinkat(ofd, from, 0) == -1)
		log_warn("spool: unlink %s after link", from);
	return (0);
}

/* Make the batch durable; one syncfs, or fsyncs where it is missing. */
static int
spool_sync_batch(struct spool *s, struct spool_req *batch)
{
	int	rc = 0;

#ifdef HAVE_SYNCFS
	(void)batch;
	rc = syncfs(s->dirfd);
	pthread_mutex_lock(&s->mtx);
	s->stats.syncs++;
	pthread_mutex_unlock(&s->mtx);
#else
	struct spool_req	*r;
	uint64_t		 calls = 0;

	for (r = batch; r != NULL && rc == 0; r = r->next)
		if (r->done && r->fd != -1) {
			calls++;
			rc = fsync(r->fd);
		}
	if (rc == 0) {
		calls++;
		rc = fsync(s->queue_fd);
	}
	pthread_mutex_lock(&s->mtx);
	s->stats.syncs += calls;
	pthread_mutex_unlock(&s->mtx);
#endif
	if (rc == 0 && s->fault_sync_eio) {
		errno = EIO;
		rc = -1;
	}
	return (rc);
}

/* Perform one request of a batch (before the shared sync). */
static void
spool_run_one(struct spool *s, struct spool_req *r)
{
	char		 name[QUEUE_ID_LEN + 1];
	struct stat	 st;

	util_qid_format(name, r->id);
	switch (r->type) {
	case SPOOL_REQ_COMMIT:
		if (spool_rename_noreplace(s->incoming_fd, r->tmpname,
		    s->queue_fd, name) == -1) {
			r->error = errno;
			(void)unlinkat(s->incoming_fd, r->tmpname, 0);
			break;
		}
		r->done = true;
		spool_crashpoint(s, SPOOL_CRASH_AFTER_RENAME);
		break;
	case SPOOL_REQ_JOURNAL:
		if ((r->fd = openat(s->queue_fd, name, O_WRONLY | O_NOFOLLOW |
		    O_NONBLOCK | O_CLOEXEC)) == -1) {
			r->error = errno;
			break;
		}
		if (fstat(r->fd, &st) == -1) {
			r->error = errno;
			break;
		}
		if (!S_ISREG(st.st_mode)) {
			r->error = EBADMSG;
			break;
		}
		/*
		 * Only this thread appends, so st_size is the end.  A short
		 * append is cut off again so that it cannot hide later ones.
		 */
		if (spool_pwrite(r->fd, r->rec, r->reclen, st.st_size) ==
		    -1) {
			r->error = errno;
			if (ftruncate(r->fd, st.st_size) == -1)
				log_warn("%s: ftruncate after failed append",
				    name);
			break;
		}
		r->done = true;
		break;
	case SPOOL_REQ_REMOVE:
		if (unlinkat(s->queue_fd, name, 0) == -1) {
			r->error = errno;
			break;
		}
		r->done = true;
		break;
	}
}

static void
spool_run_batch(struct spool *s, struct spool_req *batch)
{
	struct spool_req	*r;
	char			 name[QUEUE_ID_LEN + 1];
	bool			 need_sync = false;
	uint64_t		 committed = 0, journaled = 0;
	int			 err;

	for (r = batch; r != NULL; r = r->next) {
		spool_run_one(s, r);
		if (r->done)
			need_sync = true;
	}
	if (need_sync && spool_sync_batch(s, batch) == -1) {
		/*
		 * Never retry and trust a failed sync (IN-48): every request
		 * of the batch fails, and new messages are taken back.
		 */
		err = errno;
		log_warnx("spool: sync of %s failed: %s; failing the batch",
		    s->dir, strerror(err));
		pthread_mutex_lock(&s->mtx);
		s->stats.sync_errors++;
		pthread_mutex_unlock(&s->mtx);
		for (r = batch; r != NULL; r = r->next) {
			if (!r->done)
				continue;
			r->done = false;
			r->error = err;
			if (r->type == SPOOL_REQ_COMMIT) {
				util_qid_format(name, r->id);
				(void)unlinkat(s->queue_fd, name, 0);
			}
		}
	} else if (need_sync)
		spool_crashpoint(s, SPOOL_CRASH_AFTER_SYNC);

	for (r = batch; r != NULL; r = r->next) {
		if (r->fd != -1) {
			close(r->fd);
			r->fd = -1;
		}
		if (r->done && r->type == SPOOL_REQ_COMMIT)
			committed++;
		if (r->done && r->type == SPOOL_REQ_JOURNAL)
			journaled++;
	}
	pthread_mutex_lock(&s->mtx);
	s->stats.committed += committed;
	s->stats.journal_records += journaled;
	pthread_mutex_unlock(&s->mtx);
}

/*
 * The sync thread: take everything pending, perform it, sync once, post
 * the completions.  While it syncs, new requests pile up and share the
 * next sync: that is where the grouping comes from.
 */
static void *
spool_thread_main(void *arg)
{
	struct spool		*s = arg;
	struct spool_req	*batch, *r;

	pthread_mutex_lock(&s->mtx);
	for (;;) {
		while (s->pending == NULL && !s->stopping)
			pthread_cond_wait(&s->cond, &s->mtx);
		if (s->pending == NULL)
			break;
		batch = s->pending;
		s->pending = NULL;
		s->pending_tail = &s->pending;
		pthread_mutex_unlock(&s->mtx);

		spool_run_batch(s, batch);

		pthread_mutex_lock(&s->mtx);
		for (r = batch; r->next != NULL; r = r->next)
			;
		*s->done_tail = batch;
		s->done_tail = &r->next;
		pthread_mutex_unlock(&s->mtx);
		event_active(s->done_ev, EV_READ, 1);
		pthread_mutex_lock(&s->mtx);
	}
	pthread_mutex_unlock(&s->mtx);
	return (NULL);
}

/* Call the callbacks of the finished requests, in submission order. */
static void
spool_run_done(struct spool *s)
{
	struct spool_req	*list, *r;

	pthread_mutex_lock(&s->mtx);
	list = s->done;
	s->done = NULL;
	s->done_tail = &s->done;
	pthread_mutex_unlock(&s->mtx);

	while ((r = list) != NULL) {
		list = r->next;
		if (r->cb != NULL)
			r->cb(r->cookie, r->error, r->arg);
		free(r);
	}
}

static void
spool_done_event(evutil_socket_t fd, short what, void *arg)
{
	spool_run_done(arg);
}

static int
spool_submit(struct spool *s, struct spool_req *r)
{
	pthread_mutex_lock(&s->mtx);
	if (s->stopping) {
		pthread_mutex_unlock(&s->mtx);
		errno = ESHUTDOWN;
		return (-1);
	}
	r->next = NULL;
	*s->pending_tail = r;
	s->pending_tail = &r->next;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->mtx);
	return (0);
}

static struct spool_req *
spool_req_new(enum spool_reqtype type, qid_t id, spool_done_cb cb,
    uint64_t cookie, void *arg)
{
	struct spool_req	*r = xcalloc(1, sizeof(*r));

	r->type = type;
	r->id = id;
	r->fd = -1;
	r->cb = cb;
	r->cookie = cookie;
	r->arg = arg;
	return (r);
}

struct spool *
spool_open(const char *dir, struct event_base *base, char *err, size_t errlen)
{
	struct spool	*s;

	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "mkdir %s: %s", dir, strerror(errno));
		return (NULL);
	}
	if (spool_check_ancestors(dir, err, errlen) == -1)
		return (NULL);
	s = xcalloc(1, sizeof(*s));
	s->dir = xstrdup(dir);
	s->base = base;
	s->dirfd = s->incoming_fd = s->queue_fd = s->corrupt_fd = -1;
	s->pending_tail = &s->pending;
	s->done_tail = &s->done;
	pthread_mutex_init(&s->mtx, NULL);
	pthread_cond_init(&s->cond, NULL);
	if ((s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	if (spool_check_dir(s->dirfd, dir, err, errlen) == -1 ||
	    spool_open_subdir(s, "incoming", &s->incoming_fd, err,
	    errlen) == -1 ||
	    spool_open_subdir(s, "queue", &s->queue_fd, err, errlen) == -1 ||
	    spool_open_subdir(s, "corrupt", &s->corrupt_fd, err,
	    errlen) == -1)
		goto fail;
	spool_read_seams(s);
	if ((s->done_ev = event_new(base, -1, 0, spool_done_event, s)) ==
	    NULL) {
		snprintf(err, errlen, "event_new failed");
		goto fail;
	}
	if ((errno = pthread_create(&s->thread, NULL, spool_thread_main,
	    s)) != 0) {
		snprintf(err, errlen, "pthread_create: %s", strerror(errno));
		goto fail;
	}
	s->thread_started = true;
	return (s);
 fail:
	spool_close(s);
	return (NULL);
}

void
spool_close(struct spool *s)
{
	if (s == NULL)
		return;
	if (s->thread_started) {
		pthread_mutex_lock(&s->mtx);
		s->stopping = true;
		pthread_cond_signal(&s->cond);
		pthread_mutex_unlock(&s->mtx);
		pthread_join(s->thread, NULL);
	}
	spool_run_done(s);
	if (s->done_ev != NULL)
		event_free(s->done_ev);
	if (s->dirfd != -1)
		close(s->dirfd);
	if (s->incoming_fd != -1)
		close(s->incoming_fd);
	if (s->queue_fd != -1)
		close(s->queue_fd);
	if (s->corrupt_fd != -1)
		close(s->corrupt_fd);
	pthread_mutex_destroy(&s->mtx);
	pthread_cond_destroy(&s->cond);
	free(s->dir);
	free(s);
}

void
spool_get_stats(struct spool *s, struct spool_stats *st)
{
	pthread_mutex_lock(&s->mtx);
	*st = s->stats;
	pthread_mutex_unlock(&s->mtx);
}

/* Write out the user-space buffer; errors become sticky. */
static void
spool_writer_flush(struct spool_writer *w)
{
	if (w->error == 0 && w->buflen > 0 &&
	    util_write_all(w->fd, w->buf, w->buflen) == -1)
		w->error = errno;
	w->buflen = 0;
	/* Written with body_len 0; commit patches it with pwrite. */
	w->hdr_in_buf = false;
}

struct spool_writer *
spool_writer_new(struct spool *s, const struct spool_envelope *env,
    char *err, size_t errlen)
{
	struct spool_writer	*w;
	uint8_t			*enc;
	size_t			 enclen;
	char			 idbuf[QUEUE_ID_LEN + 1];
	uint8_t			 rnd[8];
	int			 tries;

	if (spool_encode_envelope(env, 0, &enc, &enclen, err, errlen) == -1) {
		errno = EINVAL;
		return (NULL);
	}
	w = xcalloc(1, sizeof(*w));
	w->spool = s;
	w->id = env->id;
	w->fd = -1;
	util_qid_format(idbuf, env->id);
	for (tries = 0; tries < 8 && w->fd == -1; tries++) {
		util_random(rnd, sizeof(rnd));
		snprintf(w->tmpname, sizeof(w->tmpname),
		    "%s.%02x%02x%02x%02x%02x%02x%02x%02x", idbuf, rnd[0],
		    rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
		w->fd = openat(s->incoming_fd, w->tmpname, O_WRONLY | O_CREAT |
		    O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (w->fd == -1 && errno != EEXIST)
			break;
	}
	if (w->fd == -1) {
		snprintf(err, errlen, "%s/incoming/%s: %s", s->dir,
		    w->tmpname, strerror(errno));
		goto fail;
	}
	/*
	 * A usual envelope waits in the buffer with the body, so that a
	 * message of less than SPOOL_IO_CHUNK is written by one write(2) at
	 * commit, header patched and END included; a huge one goes now.
	 */
	w->buf = xmalloc(SPOOL_IO_CHUNK + SPOOL_END_LEN);
	if (enclen <= SPOOL_IO_CHUNK / 2) {
		memcpy(w->buf, enc, enclen);
		w->buflen = enclen;
		w->hdr_in_buf = true;
	} else if (util_write_all(w->fd, enc, enclen) == -1) {
		snprintf(err, errlen, "%s/incoming/%s: %s", s->dir,
		    w->tmpname, strerror(errno));
		goto fail;
	}
	memcpy(w->hdr, enc, SPOOL_HDR_LEN);
	w->crc_rest = crc32(0L, enc + SPOOL_HDR_LEN,
	    (uInt)(enclen - SPOOL_HDR_LEN));
	w->rest_len = enclen - SPOOL_HDR_LEN;
	free(enc);
	return (w);
 fail:
	{
		int	saved = errno;

		free(enc);
		if (w->fd != -1) {
			close(w->fd);
			(void)unlinkat(s->incoming_fd, w->tmpname, 0);
		}
		free(w->buf);
		free(w);
		errno = saved;
	}
	return (NULL);
}

int
spool_writer_write(struct spool_writer *w, const void *p, size_t len)
{
	const uint8_t	*b = p;

	while (len > 0 && w->error == 0) {
		size_t	n = SPOOL_IO_CHUNK - w->buflen;

		if (n > len)
			n = len;
		memcpy(w->buf + w->buflen, b, n);
		w->crc_rest = crc32(w->crc_rest, b, (uInt)n);
		w->buflen += n;
		w->body_len += n;
		w->rest_len += n;
		b += n;
		len -= n;
		if (w->buflen == SPOOL_IO_CHUNK)
			spool_writer_flush(w);
	}
	if (w->error != 0) {
		errno = w->error;
		return (-1);
	}
	return (0);
}

uint64_t
spool_writer_size(const struct spool_writer *w)
{
	return (w->body_len);
}

void
spool_writer_abort(struct spool_writer *w)
{
	if (w == NULL)
		return;
	if (w->fd != -1) {
		close(w->fd);
		if (unlinkat(w->spool->incoming_fd, w->tmpname, 0) == -1)
			log_warn("spool: unlink incoming/%s", w->tmpname);
	}
	free(w->buf);
	free(w);
}

int
spool_writer_commit(struct spool_writer *w, spool_done_cb cb,
    uint64_t cookie, void *arg)
{
	struct spool		*s = w->spool;
	struct spool_req	*r;
	uint8_t			 end[SPOOL_END_LEN];
	uLong			 crc;
	int			 saved;

	/* The body length is known only now: patch the header, in the
	 * buffer when nothing was written yet, else in the file. */
	spool_put64(w->hdr + 16, w->body_len);
	if (w->hdr_in_buf)
		memcpy(w->buf, w->hdr, SPOOL_HDR_LEN);
	else if (w->error == 0 &&
	    spool_pwrite(w->fd, w->hdr, SPOOL_HDR_LEN, 0) == -1)
		w->error = errno;
	if (w->error == 0) {
		crc = crc32_combine(crc32(0L, w->hdr, SPOOL_HDR_LEN),
		    w->crc_rest, (z_off_t)w->rest_len);
		memcpy(end, SPOOL_END_TAG, 4);
		spool_put32(end + 4, (uint32_t)crc);
		/* The buffer has room for END past SPOOL_IO_CHUNK. */
		memcpy(w->buf + w->buflen, end, sizeof(end));
		w->buflen += sizeof(end);
		spool_writer_flush(w);
	}
	if (w->error != 0) {
		saved = w->error;
		spool_writer_abort(w);
		errno = saved;
		return (-1);
	}
	spool_crashpoint(s, SPOOL_CRASH_AFTER_TEMP_WRITE);

	r = spool_req_new(SPOOL_REQ_COMMIT, w->id, cb, cookie, arg);
	/* The fd stays open for the fsync fallback; the thread closes it. */
	r->fd = w->fd;
	strlcpy(r->tmpname, w->tmpname, sizeof(r->tmpname));
	if (spool_submit(s, r) == -1) {
		saved = errno;
		free(r);
		spool_writer_abort(w);
		errno = saved;
		return (-1);
	}
	free(w->buf);
	free(w);
	return (0);
}

int
spool_journal_append(struct spool *s, qid_t id, const struct spool_record *rec,
    spool_done_cb cb, uint64_t cookie, void *arg)
{
	struct spool_req	*r;

	if (id == 0) {
		errno = EINVAL;
		return (-1);
	}
	r = spool_req_new(SPOOL_REQ_JOURNAL, id, cb, cookie, arg);
	if (spool_record_encode(rec, r->rec, &r->reclen) == -1) {
		free(r);
		errno = EINVAL;
		return (-1);
	}
	if (spool_submit(s, r) == -1) {
		free(r);
		return (-1);
	}
	return (0);
}

int
spool_remove(struct spool *s, qid_t id, spool_done_cb cb, uint64_t cookie,
    void *arg)
{
	struct spool_req	*r;

	if (id == 0) {
		errno = EINVAL;
		return (-1);
	}
	r = spool_req_new(SPOOL_REQ_REMOVE, id, cb, cookie, arg);
	if (spool_submit(s, r) == -1) {
		free(r);
		return (-1);
	}
	return (0);
}

static int
spool_open_id(struct spool *s, qid_t id, int mode)
{
	char	name[QUEUE_ID_LEN + 1];

	if (id == 0) {
		errno = ENOENT;
		return (-1);
	}
	util_qid_format(name, id);
	return (openat(s->queue_fd, name, mode | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC));
}

int
spool_load(struct spool *s, qid_t id, struct spool_envelope *out)
{
	char	why[128], name[QUEUE_ID_LEN + 1];
	int	fd, rc, saved;

	memset(out, 0, sizeof(*out));
	if ((fd = spool_open_id(s, id, O_RDONLY)) == -1)
		return (-1);
	rc = spool_read_file(fd, id, 0, out, why, sizeof(why));
	saved = errno;
	if (rc == -1 && saved == EBADMSG) {
		util_qid_format(name, id);
		log_warnx("%s: unreadable queue file: %s", name, why);
	}
	close(fd);
	errno = saved;
	return (rc);
}

int
spool_open_body(struct spool *s, qid_t id, int *fdp, off_t *offset,
    uint64_t *len)
{
	struct stat	st;
	uint8_t		hdr[SPOOL_HDR_LEN];
	uint64_t	envlen, body_len;
	ssize_t		n;
	int		fd, saved;

	if ((fd = spool_open_id(s, id, O_RDONLY)) == -1)
		return (-1);
	if (fstat(fd, &st) == -1 ||
	    (n = spool_pread(fd, hdr, sizeof(hdr), 0)) == -1)
		goto err;
	errno = EBADMSG;
	if (!S_ISREG(st.st_mode) || n != (ssize_t)sizeof(hdr) ||
	    memcmp(hdr, SPOOL_MAGIC, SPOOL_MAGIC_LEN) != 0)
		goto err;
	envlen = spool_get32(hdr + 12);
	body_len = spool_get64(hdr + 16);
	if (envlen > SPOOL_ENVELOPE_MAX || body_len > (uint64_t)st.st_size ||
	    SPOOL_HDR_LEN + envlen + body_len + SPOOL_END_LEN >
	    (uint64_t)st.st_size)
		goto err;
	/* The body is read with pread; drop O_NONBLOCK for the caller. */
	(void)fcntl(fd, F_SETFL, 0);
	*fdp = fd;
	*offset = (off_t)(SPOOL_HDR_LEN + envlen);
	*len = body_len;
	return (0);
 err:
	saved = errno;
	close(fd);
	errno = saved;
	return (-1);
}

/* Move a bad file aside, keeping its name (with a suffix if taken). */
static void
spool_quarantine(struct spool *s, const char *name, const char *why)
{
	char	to[NAME_MAX + 1], esc[128], escto[128];
	int	i, rc;

	strlcpy(to, name, sizeof(to));
	for (i = 1; (rc = spool_rename_noreplace(s->queue_fd, name,
	    s->corrupt_fd, to)) == -1 && errno == EEXIST && i < 100; i++) {
		if ((size_t)snprintf(to, sizeof(to), "%.200s.%d", name, i) >=
		    sizeof(to))
			break;
	}
	util_escape(esc, sizeof(esc), name, strlen(name));
	if (rc == -1) {
		log_warn("spool: cannot quarantine queue/%s (%s)", esc, why);
		return;
	}
	util_escape(escto, sizeof(escto), to, strlen(to));
	log_warnx("spool: corrupt queue file queue/%s moved to corrupt/%s: "
	    "%s", esc, escto, why);
	pthread_mutex_lock(&s->mtx);
	s->stats.corrupt++;
	pthread_mutex_unlock(&s->mtx);
}

/* Empty incoming/: nothing there was ever acknowledged. */
static void
spool_clean_incoming(struct spool *s)
{
	DIR		*d;
	struct dirent	*de;
	int		 fd;

	if ((fd = dup(s->incoming_fd)) == -1 || (d = fdopendir(fd)) == NULL) {
		log_warn("spool: %s/incoming", s->dir);
		if (fd != -1)
			close(fd);
		return;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(s->incoming_fd, de->d_name, 0) == -1) {
			char	esc[128];

			util_escape(esc, sizeof(esc), de->d_name,
			    strlen(de->d_name));
			log_warn("spool: unlink incoming/%s", esc);
		}
	}
	closedir(d);
}

int
spool_recover(struct spool *s, spool_recover_cb cb, void *arg)
{
	DIR			*d;
	struct dirent		*de;
	struct spool_envelope	 env;
	char			 why[128];
	qid_t			 id;
	int			 fd, n = 0, rc;

	spool_clean_incoming(s);
	if ((fd = dup(s->queue_fd)) == -1 || (d = fdopendir(fd)) == NULL) {
		log_warn("spool: %s/queue", s->dir);
		if (fd != -1)
			close(fd);
		return (-1);
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		/* The name is validated before it is used for anything. */
		if (util_qid_parse(de->d_name, &id) == -1) {
			spool_quarantine(s, de->d_name, "not a queue id");
			continue;
		}
		if ((fd = openat(s->queue_fd, de->d_name, O_RDWR | O_NOFOLLOW |
		    O_NONBLOCK | O_CLOEXEC)) == -1) {
			if (errno == ENOENT)
				continue;
			snprintf(why, sizeof(why), "open: %s",
			    strerror(errno));
			spool_quarantine(s, de->d_name, why);
			continue;
		}
		rc = spool_read_file(fd, id,
		    SPOOL_READ_VERIFY | SPOOL_READ_FIXTAIL, &env, why,
		    sizeof(why));
		if (rc == -1 && errno != EBADMSG) {
			/* An I/O error is the disk's, not the file's. */
			log_warn("spool: reading queue/%s", de->d_name);
			close(fd);
			continue;
		}
		close(fd);
		if (rc == -1) {
			spool_quarantine(s, de->d_name, why);
			continue;
		}
		n++;
		rc = cb(&env, arg);
		spool_envelope_free(&env);
		if (rc == -1) {
			closedir(d);
			return (-1);
		}
	}
	closedir(d);
	return (n);
}
