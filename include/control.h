/*
 * control.h: the control socket of SPEC section 5: a Unix stream socket,
 * one JSON object per line in, one per line out.
 */
#ifndef POSTERN_CONTROL_H
#define POSTERN_CONTROL_H

#include <stddef.h>
#include <stdint.h>

struct conf;
struct event_base;
struct queue;
struct spool;

/* Longest request line accepted. */
#define CONTROL_LINE_MAX	(64 * 1024)
/* Seconds a client may stay silent before it is disconnected. */
#define CONTROL_IDLE_TIMEOUT	60
/* Clients connected at once. */
#define CONTROL_MAX_CLIENTS	64

struct control_env {
	struct event_base	*base;		/* borrowed */
	struct queue		*queue;		/* borrowed */
	void			(*reload)(void *);
	void			*reload_arg;
	void			(*kick)(void);	/* something may be due now */
};

struct control;

/*
 * Create the socket at conf->control_socket with conf's mode and group.
 * A stale socket file is replaced; any other file there is an error.
 */
struct control	*control_new(const struct control_env *, const struct conf *,
		    char *err, size_t errlen);
void		 control_set_spool(struct control *, struct spool *);
void		 control_free(struct control *);

/*
 * Handle one request line; returns the reply object as a JSON string
 * (caller frees), or NULL when the reply will come later (asynchronous
 * commands).  Exposed for tests and the fuzzer.
 */
char		*control_handle(struct control *, uint64_t client,
		    const char *line, size_t len);

#endif /* POSTERN_CONTROL_H */
