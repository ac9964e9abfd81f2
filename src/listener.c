/*
 * listener.c: bind and accept for the `listen` entries (SPEC section 2).
 *
 * Accepting is done by libevent's evconnlistener.  When accept(2) fails
 * for lack of descriptors the listener pauses for a second instead of
 * spinning (IN-62) and logs once per pause.  The per-listener settings a
 * session needs are kept in a refcounted listener_cfg so that a reload that
 * changes tls or auth affects new sessions only.
 */
#include "compat.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <event2/event.h>
#include <event2/listener.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "util.h"

struct listener {
	struct evconnlistener	*evl;		/* owned */
	struct event		*resume;	/* owned: re-enable timer */
	struct listener_cfg	*cfg;		/* owned reference */
	listener_accept_cb	 cb;
	void			*arg;
	char			 name[128];
};

static void
listener_accept(struct evconnlistener *evl, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct listener	*l = arg;

	l->cb(fd, sa, (socklen_t)salen, l->cfg, l->arg);
}

static void
listener_resume(evutil_socket_t fd, short ev, void *arg)
{
	struct listener	*l = arg;

	evconnlistener_enable(l->evl);
}

static void
listener_error(struct evconnlistener *evl, void *arg)
{
	struct listener	*l = arg;
	struct timeval	 tv = { 1, 0 };
	int		 e = EVUTIL_SOCKET_ERROR();

	if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
		log_warnx("%s: accept: %s: pausing for 1s", l->name,
		    strerror(e));
		evconnlistener_disable(l->evl);
		evtimer_add(l->resume, &tv);
		return;
	}
	log_warnx("%s: accept: %s", l->name, strerror(e));
}

static bool
listener_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;

		return ((ntohl(sin->sin_addr.s_addr) >> 24) == 127);
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)ss;

		return (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	}
	return (false);
}

struct listener *
listener_new(struct event_base *base, const struct conf_listen *c,
    listener_accept_cb cb, void *arg, char *err, size_t errlen)
{
	struct listener		*l;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	const char		*addr = c->address;
	int			 fd, on = 1;

	memset(&ss, 0, sizeof(ss));
	if (strcmp(addr, "*") == 0)
		addr = "0.0.0.0";
	if (inet_pton(AF_INET, addr, &((struct sockaddr_in *)&ss)->sin_addr)
	    == 1) {
		struct sockaddr_in *sin = (void *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)c->port);
		sslen = sizeof(*sin);
	} else if (inet_pton(AF_INET6, addr,
	    &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		struct sockaddr_in6 *sin6 = (void *)&ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)c->port);
		sslen = sizeof(*sin6);
	} else {
		snprintf(err, errlen, "%s: not a numeric address", addr);
		return (NULL);
	}

	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return (NULL);
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
	if (bind(fd, (struct sockaddr *)&ss, sslen) == -1 ||
	    listen(fd, 511) == -1) {
		snprintf(err, errlen, "[%s]:%d: %s", c->address, c->port,
		    strerror(errno));
		close(fd);
		return (NULL);
	}

	l = xcalloc(1, sizeof(*l));
	l->cb = cb;
	l->arg = arg;
	l->cfg = xcalloc(1, sizeof(*l->cfg));
	l->cfg->refcnt = 1;
	l->cfg->address = xstrdup(c->address);
	l->cfg->port = c->port;
	l->cfg->tls = c->tls;
	l->cfg->auth = c->auth;
	l->cfg->loopback = listener_is_loopback(&ss);
	snprintf(l->name, sizeof(l->name), "listener [%s]:%d", c->address,
	    c->port);
	l->resume = evtimer_new(base, listener_resume, l);
	l->evl = evconnlistener_new(base, listener_accept, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (l->evl == NULL) {
		snprintf(err, errlen, "%s: evconnlistener_new failed", l->name);
		close(fd);
		listener_free(l);
		return (NULL);
	}
	evconnlistener_set_error_cb(l->evl, listener_error);
	return (l);
}

void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	if (l->evl != NULL)
		evconnlistener_free(l->evl);
	if (l->resume != NULL)
		event_free(l->resume);
	listener_cfg_unref(l->cfg);
	free(l);
}

bool
listener_matches(const struct listener *l, const struct conf_listen *c)
{
	return (l->cfg->port == c->port &&
	    strcmp(l->cfg->address, c->address) == 0);
}

void
listener_update(struct listener *l, const struct conf_listen *c)
{
	struct listener_cfg	*n;

	if (l->cfg->tls == c->tls && l->cfg->auth == c->auth)
		return;
	/* Sessions keep the settings they were accepted under. */
	n = xcalloc(1, sizeof(*n));
	n->refcnt = 1;
	n->address = xstrdup(l->cfg->address);
	n->port = l->cfg->port;
	n->loopback = l->cfg->loopback;
	n->tls = c->tls;
	n->auth = c->auth;
	listener_cfg_unref(l->cfg);
	l->cfg = n;
}

void
listener_enable(struct listener *l, bool on)
{
	if (on)
		evconnlistener_enable(l->evl);
	else
		evconnlistener_disable(l->evl);
}

const char *
listener_name(const struct listener *l)
{
	return (l->name);
}

struct listener_cfg *
listener_cfg_ref(struct listener_cfg *c)
{
	c->refcnt++;
	return (c);
}

void
listener_cfg_unref(struct listener_cfg *c)
{
	if (c == NULL || --c->refcnt > 0)
		return;
	free(c->address);
	free(c);
}
