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

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
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

/* Load one DKIM private key: RSA (>= 1024 bits) or Ed25519. */
static EVP_PKEY *
rtconf_load_dkim_key(const struct conf *conf, const struct conf_dkim *d,
    struct conf_errors *errs)
{
	char		 err[512];
	FILE		*f;
	EVP_PKEY	*pk;
	int		 bits;

	if (tls_check_key_file(d->key, err, sizeof(err)) == -1) {
		conf_errors_add(errs, false, rtconf_file(conf), d->line,
		    "dkim key %s: %s", d->key, err);
		return (NULL);
	}
	if ((f = fopen(d->key, "r")) == NULL) {
		conf_errors_add(errs, false, rtconf_file(conf), d->line,
		    "dkim key %s: %s", d->key, strerror(errno));
		return (NULL);
	}
	pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (pk == NULL) {
		conf_errors_add(errs, false, rtconf_file(conf), d->line,
		    "dkim key %s: not a PEM private key: %s", d->key,
		    tls_errstr(err, sizeof(err)));
		return (NULL);
	}
	switch (EVP_PKEY_get_base_id(pk)) {
	case EVP_PKEY_RSA:
		bits = EVP_PKEY_get_bits(pk);
		if (bits < 1024) {
			conf_errors_add(errs, false, rtconf_file(conf), d->line,
			    "dkim key %s: RSA key of %d bits is too weak "
			    "(1024 at least, 2048 recommended)", d->key, bits);
			EVP_PKEY_free(pk);
			return (NULL);
		}
		if (bits < 2048)
			conf_errors_add(errs, true, rtconf_file(conf), d->line,
			    "dkim key %s: RSA key of %d bits; 2048 is "
			    "recommended", d->key, bits);
		break;
	case EVP_PKEY_ED25519:
		break;
	default:
		conf_errors_add(errs, false, rtconf_file(conf), d->line,
		    "dkim key %s: only RSA and Ed25519 keys can sign DKIM",
		    d->key);
		EVP_PKEY_free(pk);
		return (NULL);
	}
	return (pk);
}

struct rtconf *
rtconf_new(struct conf *conf, struct conf_errors *errs)
{
	struct rtconf	*rt;
	char		 err[1024];
	size_t		 i, nerr = errs->nerrors;

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
	rt->dkim_keys = xcalloc(conf->ndkim + 1, sizeof(*rt->dkim_keys));
	for (i = 0; i < conf->ndkim; i++)
		rt->dkim_keys[i] = rtconf_load_dkim_key(conf, &conf->dkim[i],
		    errs);

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
	size_t	i;

	if (rt == NULL || --rt->refcnt > 0)
		return;
	if (rt->dkim_keys != NULL) {
		for (i = 0; i < rt->conf->ndkim; i++)
			EVP_PKEY_free(rt->dkim_keys[i]);
		free(rt->dkim_keys);
	}
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
