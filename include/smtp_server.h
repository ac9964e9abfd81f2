/*
 * smtp_server.h: the inbound ESMTP session (SPEC section 3).  The daemon
 * initialises the module with what sessions need, hands it every accepted
 * socket, and asks it to wind down on SIGTERM.
 */
#ifndef POSTERN_SMTP_SERVER_H
#define POSTERN_SMTP_SERVER_H

#include <sys/socket.h>

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct listener_cfg;
struct queue;
struct spfcheck;
struct spool;
struct worker_pool;

struct smtp_server_env {
	struct event_base	*base;		/* borrowed */
	struct spool		*spool;		/* borrowed */
	struct queue		*queue;		/* borrowed */
	struct worker_pool	*workers;	/* borrowed */
	struct spfcheck		*spf;		/* borrowed; NULL: no SPF */
	/* Called on the loop after a message is committed and indexed. */
	void			(*queued_cb)(unsigned int id, void *arg);
	void			*queued_arg;
};

void	smtp_server_init(const struct smtp_server_env *);
/* listener_accept_cb: takes ownership of fd. */
void	smtp_server_accept(int fd, const struct sockaddr *, socklen_t,
	    struct listener_cfg *, void *arg);
/* Stop: idle sessions get 421 now, busy ones after their transaction. */
void	smtp_server_shutdown(void);
size_t	smtp_server_count(void);
/* Close every session at once (end of the shutdown grace period). */
void	smtp_server_close_all(void);

#endif /* POSTERN_SMTP_SERVER_H */
