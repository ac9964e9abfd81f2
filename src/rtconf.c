/*
 * rtconf.c: turns a validated configuration into a running snapshot by
 * loading what it names: the users file, the inbound certificate and key,
 * the DKIM private keys.  Every failure is reported as FILE:LINE through
 * conf_errors so that posternd -n and a SIGHUP reload say exactly what is
 * wrong, and a failed reload leaves the current snapshot untouched.
 *
 * Ownership: the snapshot owns the conf and everything loaded.  It is
 * refcounted: the daemon holds one reference through rtconf_current(),
 * every session one more for its lifetime.
 */
#include "compat.h"

#include <stdlib.h>

#include "auth.h"
#include "dkimsign.h"
#include "log.h"
#include "rtconf.h"
#include "tls.h"
#include "util.h"

static struct rtconf	*rtconf_cur;

static const char *
rtconf_file(const struct conf *conf)
{
	return (conf->path != NULL ? conf->path : "(default)");
}

struct rtconf *
rtconf_new(struct conf *conf, struct conf_errors *errs)
{
	struct rtconf	*rt;
	char		 err[1024];
	size_t		 nerr = errs->nerrors;

	rt = xcalloc(1, sizeof(*rt));
	rt->refcnt = 1;
	rt->conf = conf;

	if (conf->auth.users_file != NULL && conf->auth.users_file[0] != '\0') {
		rt->users = auth_db_load(conf->auth.users_file, err,
		    sizeof(err));
		if (rt->users == NULL)
			conf_errors_add(errs, false, NULL, 0, "%s", err);
	}
	if (conf->tls.cert != NULL && conf->tls.cert[0] != '\0') {
		rt->server_tls = tls_server_ctx_new(conf->tls.cert,
		    conf->tls.key, conf->tls.min_version, err, sizeof(err));
		if (rt->server_tls == NULL)
			conf_errors_add(errs, false, rtconf_file(conf),
			    conf->lines.tls_cert, "tls: %s", err);
	}
	/* Keys checked and loaded here, so -n and a reload report them. */
	rt->dkim = dkimsign_new(conf, errs);

	if (errs->nerrors > nerr) {
		rtconf_unref(rt);
		return (NULL);
	}
	return (rt);
}

struct rtconf *
rtconf_ref(struct rtconf *rt)
{
	rt->refcnt++;
	return (rt);
}

void
rtconf_unref(struct rtconf *rt)
{
	if (rt == NULL || --rt->refcnt > 0)
		return;
	dkimsign_free(rt->dkim);
	tls_ctx_free(rt->server_tls);
	auth_db_free(rt->users);
	conf_free(rt->conf);
	free(rt);
}

struct rtconf *
rtconf_current(void)
{
	return (rtconf_cur);
}

void
rtconf_set_current(struct rtconf *rt)
{
	struct rtconf	*old = rtconf_cur;

	rtconf_cur = rt;
	rtconf_unref(old);
}
