/*
 * listener.h: the inbound TCP listeners of SPEC section 2 (`listen`).
 * A listener binds, accepts, and hands each new socket to a callback
 * together with its own configuration (address, port, tls, auth).
 */
#ifndef POSTERN_LISTENER_H
#define POSTERN_LISTENER_H

#include <sys/socket.h>

#include <stdbool.h>

#include "conf.h"

struct event_base;
struct listener;

/* The listener's settings as a session needs them; owned by the listener. */
struct listener_cfg {
	char			*address;
	int			 port;
	enum conf_in_tls	 tls;
	enum conf_auth_mode	 auth;
	bool			 loopback;	/* bound to a loopback address */
	int			 refcnt;	/* sessions hold references */
};

typedef void (*listener_accept_cb)(int fd, const struct sockaddr *,
    socklen_t, struct listener_cfg *, void *arg);

struct listener	*listener_new(struct event_base *, const struct conf_listen *,
		    listener_accept_cb, void *arg, char *err, size_t errlen);
void		 listener_free(struct listener *);
/* True when l is bound to the same address and port as c. */
bool		 listener_matches(const struct listener *,
		    const struct conf_listen *);
/* Apply changed tls/auth settings of a reload to a listener kept open. */
void		 listener_update(struct listener *, const struct conf_listen *);
void		 listener_enable(struct listener *, bool);
const char	*listener_name(const struct listener *);

struct listener_cfg *listener_cfg_ref(struct listener_cfg *);
void		 listener_cfg_unref(struct listener_cfg *);

#endif /* POSTERN_LISTENER_H */
