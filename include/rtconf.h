/*
 * rtconf.h: the running configuration snapshot: a validated struct conf
 * plus everything loaded from the files it names (users, the inbound TLS
 * context, DKIM keys).  Sessions keep the snapshot they started with;
 * SIGHUP builds a new one and swaps the current pointer only when the new
 * one loaded completely (STYLE 2.7: refcounted because it is shared).
 */
#ifndef POSTERN_RTCONF_H
#define POSTERN_RTCONF_H

#include <openssl/ssl.h>

#include "conf.h"

struct auth_db;
struct dkimsign;

struct rtconf {
	int		 refcnt;
	struct conf	*conf;		/* owned */
	struct auth_db	*users;		/* owned; NULL when no users_file */
	SSL_CTX		*server_tls;	/* owned; NULL when no tls.cert */
	struct dkimsign	*dkim;		/* owned; never NULL (no entries:
					 * signs nothing) */
};

/* Load the files conf names; takes ownership of conf.  NULL with errs. */
struct rtconf	*rtconf_new(struct conf *, struct conf_errors *);
struct rtconf	*rtconf_ref(struct rtconf *);
void		 rtconf_unref(struct rtconf *);

/* The snapshot new sessions use. */
struct rtconf	*rtconf_current(void);
/* Install rt as current (takes the caller's reference). */
void		 rtconf_set_current(struct rtconf *);

#endif /* POSTERN_RTCONF_H */
