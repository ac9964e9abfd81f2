/*
 * checkdomain.c: `posternctl check-domain DOMAIN` (see posternctl(8)): is
 * DOMAIN's DNS ready for mail relayed and signed by this postern?
 *
 *  - spf: DOMAIN's SPF record, evaluated by spfcheck (libspf2) for each
 *    outbound address; a missing record or a failing address gets a
 *    record to publish: a new "v=spf1 ip4:... ~all", or the existing one
 *    with the missing ip4:/ip6: terms put first (terms are evaluated left
 *    to right, so this passes our addresses whatever follows).
 *  - dkim: for each dkim entry whose domain is DOMAIN or a parent of it,
 *    SELECTOR._domainkey.<entry domain> must carry the public half of the
 *    configured private key (DER SubjectPublicKeyInfo for RSA, the raw 32
 *    bytes for Ed25519, RFC 8463) with a matching k=.
 *  - dmarc: _dmarc.DOMAIN (or, failing that, a parent's) must parse as
 *    "v=DMARC1; p=none|quarantine|reject; ...".
 *
 * All lookups are blocking and go through spfcheck_txt(), so they honour
 * delivery.dns_servers with ports.  Text that came from DNS is escaped
 * before it is printed; the JSON output carries it raw (jansson escapes).
 */
#include "compat.h"

#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <ifaddrs.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "checkdomain.h"
#include "conf.h"
#include "postern.h"
#include "spfcheck.h"
#include "util.h"

#define CHECKDOMAIN_ED25519_LEN	32
#define CHECKDOMAIN_TAGS_MAX	32

static const char *checkdomain_status_names[] = {
	[CHECKDOMAIN_PASS] = "pass",
	[CHECKDOMAIN_FAIL] = "fail",
	[CHECKDOMAIN_MISSING] = "missing",
};

/* A check in progress: the resolver and the report being filled. */
struct checkdomain_ctx {
	const struct conf		*conf;
	struct spfcheck			*sc;
	const char			*domain;	/* lower case */
	const struct sockaddr_storage	*ips;
	size_t				 nips;
	struct checkdomain_report	*rep;
};

/* One tag=value of a DKIM or DMARC record, pointing into a copy. */
struct checkdomain_tag {
	char	*name;
	char	*value;
};

static char *
checkdomain_esc(const char *s)
{
	char	buf[1024];

	return (xstrdup(util_escape(buf, sizeof(buf), s, strlen(s))));
}

/*
 * The zone-file line for a TXT record: value cut into 255-byte strings,
 * each quoted with " and \ escaped and other non-printables as \DDD.
 */
static char *
checkdomain_zone_line(const char *name, const char *value)
{
	size_t	 len = strlen(value), off, i, cap, n;
	char	*out;

	cap = strlen(name) + 16 + len * 4 + (len / CHECKDOMAIN_TXT_CHUNK + 1)
	    * 3 + 1;
	out = xmalloc(cap);
	n = (size_t)snprintf(out, cap, "%s IN TXT", name);
	for (off = 0; off < len || off == 0; off += CHECKDOMAIN_TXT_CHUNK) {
		out[n++] = ' ';
		out[n++] = '"';
		for (i = off; i < len && i < off + CHECKDOMAIN_TXT_CHUNK;
		    i++) {
			unsigned char c = (unsigned char)value[i];

			if (c == '"' || c == '\\') {
				out[n++] = '\\';
				out[n++] = (char)c;
			} else if (c < 0x20 || c > 0x7e)
				n += (size_t)snprintf(out + n, cap - n,
				    "\\%03u", c);
			else
				out[n++] = (char)c;
		}
		out[n++] = '"';
		if (len == 0)
			break;
	}
	out[n] = '\0';
	return (out);
}

static struct checkdomain_item *
checkdomain_add(struct checkdomain_ctx *cd, const char *check,
    enum checkdomain_status status, const char *name, const char *found,
    const char *record, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* Append an item; detail from fmt (the caller escapes peer text in it). */
static struct checkdomain_item *
checkdomain_add(struct checkdomain_ctx *cd, const char *check,
    enum checkdomain_status status, const char *name, const char *found,
    const char *record, const char *fmt, ...)
{
	struct checkdomain_report	*rep = cd->rep;
	struct checkdomain_item		*it;
	va_list				 ap;

	rep->items = xreallocarray(rep->items, rep->nitems + 1,
	    sizeof(*rep->items));
	it = &rep->items[rep->nitems++];
	memset(it, 0, sizeof(*it));
	it->check = check;
	it->status = status;
	it->name = xstrdup(name);
	va_start(ap, fmt);
	if (vasprintf(&it->detail, fmt, ap) == -1)
		it->detail = NULL;
	va_end(ap);
	if (it->detail == NULL)
		it->detail = xstrdup("");
	if (found != NULL)
		it->found = xstrdup(found);
	if (record != NULL) {
		it->record = xstrdup(record);
		it->publish = checkdomain_zone_line(name, record);
	}
	return (it);
}

/*
 * Addresses.
 */

static bool
checkdomain_ip_is_global(const struct sockaddr *sa)
{
	const unsigned char	*a;

	if (sa->sa_family == AF_INET) {
		a = (const unsigned char *)
		    &((const struct sockaddr_in *)sa)->sin_addr;
		return (!(a[0] == 0 || a[0] == 10 || a[0] == 127 ||
		    a[0] >= 224 ||
		    (a[0] == 100 && (a[1] & 0xc0) == 64) ||
		    (a[0] == 169 && a[1] == 254) ||
		    (a[0] == 172 && (a[1] & 0xf0) == 16) ||
		    (a[0] == 192 && a[1] == 0 && (a[2] == 0 || a[2] == 2)) ||
		    (a[0] == 192 && a[1] == 168) ||
		    (a[0] == 198 && (a[1] & 0xfe) == 18) ||
		    (a[0] == 198 && a[1] == 51 && a[2] == 100) ||
		    (a[0] == 203 && a[1] == 0 && a[2] == 113)));
	}
	if (sa->sa_family == AF_INET6) {
		a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		/* 2000::/3 only, without 2001:db8::/32 (documentation). */
		return ((a[0] & 0xe0) == 0x20 && !(a[0] == 0x20 &&
		    a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8));
	}
	return (false);
}

static bool
checkdomain_ip_eq(const struct sockaddr_storage *a,
    const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return (false);
	if (a->ss_family == AF_INET)
		return (memcmp(&((const struct sockaddr_in *)a)->sin_addr,
		    &((const struct sockaddr_in *)b)->sin_addr, 4) == 0);
	return (memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
	    &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0);
}

size_t
checkdomain_local_ips(struct sockaddr_storage *out, size_t max)
{
	struct ifaddrs	*ifa, *i;
	size_t		 n = 0, k;

	if (getifaddrs(&ifa) == -1)
		return (0);
	for (i = ifa; i != NULL && n < max; i = i->ifa_next) {
		if (i->ifa_addr == NULL ||
		    !checkdomain_ip_is_global(i->ifa_addr))
			continue;
		memset(&out[n], 0, sizeof(out[n]));
		memcpy(&out[n], i->ifa_addr, i->ifa_addr->sa_family ==
		    AF_INET ? sizeof(struct sockaddr_in) :
		    sizeof(struct sockaddr_in6));
		for (k = 0; k < n; k++)
			if (checkdomain_ip_eq(&out[k], &out[n]))
				break;
		if (k == n)
			n++;
	}
	freeifaddrs(ifa);
	return (n);
}

/* "ip4:192.0.2.1" or "ip6:2001:db8::1" (the SPF term for the address). */
static void
checkdomain_spf_term(const struct sockaddr_storage *ss, char *buf,
    size_t len)
{
	char	a[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
		    a, sizeof(a));
	else
		inet_ntop(AF_INET6,
		    &((const struct sockaddr_in6 *)ss)->sin6_addr, a,
		    sizeof(a));
	snprintf(buf, len, "%s:%s", ss->ss_family == AF_INET ? "ip4" : "ip6",
	    a);
}

/*
 * SPF.
 */

static bool
checkdomain_is_spf(const char *txt)
{
	return (strncasecmp(txt, "v=spf1", 6) == 0 &&
	    (txt[6] == ' ' || txt[6] == '\0'));
}

static void
checkdomain_spf(struct checkdomain_ctx *cd)
{
	char			**txt, err[256], term[64], why[256];
	char			*terms = NULL, *record = NULL, *bad = NULL;
	char			*t;
	const char		*spf = NULL;
	enum spfcheck_result	 r;
	size_t			 ntxt, i, nspf = 0;

	if (spfcheck_txt(cd->sc, cd->domain, &txt, &ntxt, err,
	    sizeof(err)) == -1) {
		checkdomain_add(cd, "spf", CHECKDOMAIN_FAIL, cd->domain, NULL,
		    NULL, "DNS lookup failed: %s", err);
		return;
	}
	for (i = 0; i < ntxt; i++) {
		if (checkdomain_is_spf(txt[i])) {
			if (spf == NULL)
				spf = txt[i];
			nspf++;
		}
	}
	if (cd->nips == 0) {
		checkdomain_add(cd, "spf", CHECKDOMAIN_FAIL, cd->domain, spf,
		    NULL, "this host has no global address to check; name "
		    "the outbound addresses with --ip");
		goto out;
	}
	/* The terms for the addresses SPF does not pass. */
	for (i = 0; i < cd->nips; i++) {
		r = nspf == 1 ? spfcheck_run(cd->sc,
		    (const struct sockaddr *)&cd->ips[i], cd->domain, why,
		    sizeof(why)) : SPFCHECK_NONE;
		checkdomain_spf_term(&cd->ips[i], term, sizeof(term));
		if (r == SPFCHECK_PASS)
			continue;
		xasprintf(&t, "%s%s%s", terms != NULL ? terms : "",
		    terms != NULL ? " " : "", term);
		free(terms);
		terms = t;
		xasprintf(&t, "%s%s%s %s", bad != NULL ? bad : "",
		    bad != NULL ? ", " : "", term + 4, spfcheck_result_name(r));
		free(bad);
		bad = t;
	}
	if (nspf == 0) {
		xasprintf(&record, "v=spf1 %s ~all", terms);
		checkdomain_add(cd, "spf", CHECKDOMAIN_MISSING, cd->domain,
		    NULL, record, "no SPF record");
	} else if (nspf > 1) {
		xasprintf(&record, "v=spf1 %s%s", terms, spf + 6);
		checkdomain_add(cd, "spf", CHECKDOMAIN_FAIL, cd->domain, spf,
		    record, "%zu SPF records (permerror): publish only one",
		    nspf);
	} else if (terms != NULL) {
		xasprintf(&record, "v=spf1 %s%s", terms, spf + 6);
		t = checkdomain_esc(spf);
		checkdomain_add(cd, "spf", CHECKDOMAIN_FAIL, cd->domain, spf,
		    record, "not authorized: %s (record \"%s\")", bad, t);
		free(t);
	} else {
		t = checkdomain_esc(spf);
		checkdomain_add(cd, "spf", CHECKDOMAIN_PASS, cd->domain, spf,
		    NULL, "%zu outbound address%s authorized (record \"%s\")",
		    cd->nips, cd->nips == 1 ? "" : "es", t);
		free(t);
	}
out:
	free(terms);
	free(bad);
	free(record);
	spfcheck_txt_free(txt, ntxt);
}

/*
 * Tag lists (DKIM RFC 6376 section 3.2, DMARC RFC 7489 section 6.4).
 */

static char *
checkdomain_trim(char *s)
{
	char	*e;

	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' ||
	    e[-1] == '\n'))
		*--e = '\0';
	return (s);
}

/* Split copy (modified in place) into tags; -1 when malformed. */
static int
checkdomain_tags(char *copy, struct checkdomain_tag *tags, size_t max,
    size_t *ntags)
{
	char	*p = copy, *semi, *eq, *part;

	*ntags = 0;
	while (p != NULL) {
		if ((semi = strchr(p, ';')) != NULL)
			*semi++ = '\0';
		part = checkdomain_trim(p);
		p = semi;
		if (*part == '\0')
			continue;	/* an empty last tag is allowed */
		if ((eq = strchr(part, '=')) == NULL || *ntags >= max)
			return (-1);
		*eq = '\0';
		tags[*ntags].name = checkdomain_trim(part);
		tags[*ntags].value = checkdomain_trim(eq + 1);
		if (*tags[*ntags].name == '\0')
			return (-1);
		(*ntags)++;
	}
	return (0);
}

static const char *
checkdomain_tag(const struct checkdomain_tag *tags, size_t n,
    const char *name)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (strcmp(tags[i].name, name) == 0)
			return (tags[i].value);
	return (NULL);
}

/* Base64 (whitespace allowed) into an owned buffer; -1 when invalid. */
static int
checkdomain_b64_decode(const char *in, unsigned char **out, size_t *outlen)
{
	EVP_ENCODE_CTX	*ctx;
	size_t		 len = strlen(in);
	int		 n1 = 0, n2 = 0, rc = -1;

	*out = xmalloc(len / 4 * 3 + 4);
	if ((ctx = EVP_ENCODE_CTX_new()) == NULL)
		goto fail;
	EVP_DecodeInit(ctx);
	if (len > INT32_MAX || EVP_DecodeUpdate(ctx, *out, &n1,
	    (const unsigned char *)in, (int)len) < 0 ||
	    EVP_DecodeFinal(ctx, *out + n1, &n2) < 0)
		goto fail;
	*outlen = (size_t)(n1 + n2);
	rc = 0;
fail:
	EVP_ENCODE_CTX_free(ctx);
	if (rc == -1) {
		free(*out);
		*out = NULL;
	}
	return (rc);
}

/*
 * DKIM.
 */

/*
 * The public half of the key in path: its DER (RSA: SubjectPublicKeyInfo;
 * Ed25519: the raw 32 bytes) and k= name.  -1 with err set.
 */
static int
checkdomain_dkim_key(const char *path, unsigned char **pub, size_t *publen,
    const char **ktype, int *bits, char *err, size_t errlen)
{
	BIO		*bio;
	EVP_PKEY	*pkey = NULL;
	unsigned char	*der = NULL;
	size_t		 len;
	int		 n, rc = -1;

	*pub = NULL;
	if ((bio = BIO_new_file(path, "r")) == NULL) {
		snprintf(err, errlen, "cannot open %s: %s", path,
		    strerror(errno));
		ERR_clear_error();
		return (-1);
	}
	pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (pkey == NULL) {
		snprintf(err, errlen, "%s: not a PEM private key", path);
		ERR_clear_error();
		return (-1);
	}
	*bits = EVP_PKEY_get_bits(pkey);
	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_RSA:
		*ktype = "rsa";
		if ((n = i2d_PUBKEY(pkey, &der)) <= 0) {
			snprintf(err, errlen, "%s: cannot encode the public "
			    "key", path);
			break;
		}
		*pub = xmalloc((size_t)n);
		memcpy(*pub, der, (size_t)n);
		*publen = (size_t)n;
		OPENSSL_free(der);
		rc = 0;
		break;
	case EVP_PKEY_ED25519:
		*ktype = "ed25519";
		len = CHECKDOMAIN_ED25519_LEN;
		*pub = xmalloc(len);
		if (EVP_PKEY_get_raw_public_key(pkey, *pub, &len) != 1 ||
		    len != CHECKDOMAIN_ED25519_LEN) {
			snprintf(err, errlen, "%s: cannot read the Ed25519 "
			    "public key", path);
			free(*pub);
			*pub = NULL;
			break;
		}
		*publen = len;
		rc = 0;
		break;
	default:
		snprintf(err, errlen, "%s: neither an RSA nor an Ed25519 key",
		    path);
		break;
	}
	ERR_clear_error();
	EVP_PKEY_free(pkey);
	return (rc);
}

/* Why a DKIM key record does not carry pub; NULL when it does. */
static const char *
checkdomain_dkim_mismatch(const char *txt, const char *ktype,
    const unsigned char *pub, size_t publen, char *buf, size_t len)
{
	struct checkdomain_tag	 tags[CHECKDOMAIN_TAGS_MAX];
	const char		*v, *k, *p;
	unsigned char		*got;
	size_t			 ntags, gotlen;
	char			*copy = xstrdup(txt), esc[64];
	const char		*why = NULL;

	if (checkdomain_tags(copy, tags, nitems(tags), &ntags) == -1) {
		why = "the record is not a tag=value list";
		goto out;
	}
	v = checkdomain_tag(tags, ntags, "v");
	if (v != NULL && (strcmp(tags[0].name, "v") != 0 ||
	    strcmp(v, "DKIM1") != 0)) {
		why = "v= must come first and be DKIM1";
		goto out;
	}
	k = checkdomain_tag(tags, ntags, "k");
	if (k == NULL)
		k = "rsa";
	if (strcmp(k, ktype) != 0) {
		snprintf(buf, len, "k=%s but the configured key is %s",
		    util_escape(esc, sizeof(esc), k, strlen(k)), ktype);
		why = buf;
		goto out;
	}
	if ((p = checkdomain_tag(tags, ntags, "p")) == NULL) {
		why = "no p= tag";
		goto out;
	}
	if (*p == '\0') {
		why = "p= is empty: the key is revoked";
		goto out;
	}
	if (checkdomain_b64_decode(p, &got, &gotlen) == -1) {
		why = "p= is not valid base64";
		goto out;
	}
	if (gotlen != publen || memcmp(got, pub, publen) != 0)
		why = "p= is not the public half of the configured key";
	free(got);
out:
	free(copy);
	return (why);
}

static void
checkdomain_dkim_one(struct checkdomain_ctx *cd, const struct conf_dkim *d)
{
	unsigned char	*pub = NULL;
	const char	*ktype = NULL, *why;
	char		*name, *record = NULL, *b64 = NULL, **txt = NULL;
	char		*t;
	char		 err[512], buf[256];
	size_t		 publen = 0, ntxt = 0;
	int		 bits = 0;

	xasprintf(&name, "%s._domainkey.%s", d->selector, d->domain);
	if (checkdomain_dkim_key(d->key, &pub, &publen, &ktype, &bits, err,
	    sizeof(err)) == -1) {
		checkdomain_add(cd, "dkim", CHECKDOMAIN_FAIL, name, NULL, NULL,
		    "%s", err);
		goto out;
	}
	b64 = xmalloc(4 * ((publen + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)b64, pub, (int)publen);
	xasprintf(&record, "v=DKIM1; k=%s; p=%s", ktype, b64);
	if (spfcheck_txt(cd->sc, name, &txt, &ntxt, err, sizeof(err)) == -1) {
		checkdomain_add(cd, "dkim", CHECKDOMAIN_FAIL, name, NULL,
		    record, "DNS lookup failed: %s", err);
		goto out;
	}
	if (ntxt == 0) {
		checkdomain_add(cd, "dkim", CHECKDOMAIN_MISSING, name, NULL,
		    record, "no key record for %s (%s %d bits)", d->key, ktype,
		    bits);
		goto out;
	}
	if (ntxt > 1) {
		checkdomain_add(cd, "dkim", CHECKDOMAIN_FAIL, name, txt[0],
		    record, "%zu TXT records: verifiers need exactly one",
		    ntxt);
		goto out;
	}
	t = checkdomain_esc(txt[0]);
	if ((why = checkdomain_dkim_mismatch(txt[0], ktype, pub, publen, buf,
	    sizeof(buf))) != NULL)
		checkdomain_add(cd, "dkim", CHECKDOMAIN_FAIL, name, txt[0],
		    record, "%s (key %s; record \"%s\")", why, d->key, t);
	else
		checkdomain_add(cd, "dkim", CHECKDOMAIN_PASS, name, txt[0],
		    NULL, "matches %s (%s %d bits)", d->key, ktype, bits);
	free(t);
out:
	spfcheck_txt_free(txt, ntxt);
	free(record);
	free(b64);
	free(pub);
	free(name);
}

/*
 * DMARC.
 */

static bool
checkdomain_is_dmarc(const char *txt)
{
	return (strncmp(txt, "v=DMARC1", 8) == 0 && (txt[8] == ';' ||
	    txt[8] == ' ' || txt[8] == '\t' || txt[8] == '\0'));
}

/* Why a DMARC record is unusable; NULL when it parses. */
static const char *
checkdomain_dmarc_invalid(const char *txt)
{
	struct checkdomain_tag	 tags[CHECKDOMAIN_TAGS_MAX];
	const char		*p, *sp, *why = NULL;
	size_t			 ntags;
	char			*copy = xstrdup(txt);

	if (checkdomain_tags(copy, tags, nitems(tags), &ntags) == -1)
		why = "not a tag=value list";
	else if (ntags == 0 || strcmp(tags[0].name, "v") != 0 ||
	    strcmp(tags[0].value, "DMARC1") != 0)
		why = "v=DMARC1 must come first";
	else if (ntags < 2 || strcmp(tags[1].name, "p") != 0)
		why = "p= must follow v=DMARC1";
	else if ((p = tags[1].value, strcasecmp(p, "none") != 0 &&
	    strcasecmp(p, "quarantine") != 0 && strcasecmp(p, "reject") != 0))
		why = "p= must be none, quarantine or reject";
	else if ((sp = checkdomain_tag(tags, ntags, "sp")) != NULL &&
	    strcasecmp(sp, "none") != 0 && strcasecmp(sp, "quarantine") != 0 &&
	    strcasecmp(sp, "reject") != 0)
		why = "sp= must be none, quarantine or reject";
	free(copy);
	return (why);
}

static void
checkdomain_dmarc(struct checkdomain_ctx *cd)
{
	char		 err[256], *name, *record, *pname, **txt = NULL, *t;
	const char	*dmarc, *why, *parent;
	size_t		 ntxt = 0, i, ndmarc;

	xasprintf(&name, "_dmarc.%s", cd->domain);
	xasprintf(&record, "v=DMARC1; p=none; rua=mailto:postmaster@%s",
	    cd->domain);
	/*
	 * DOMAIN first, then its parents down to two labels: without the
	 * public suffix list this approximates RFC 7489's organizational
	 * domain, whose record covers DOMAIN.
	 */
	for (parent = cd->domain; parent != NULL;) {
		xasprintf(&pname, "_dmarc.%s", parent);
		if (spfcheck_txt(cd->sc, pname, &txt, &ntxt, err,
		    sizeof(err)) == -1) {
			checkdomain_add(cd, "dmarc", CHECKDOMAIN_FAIL, pname,
			    NULL, NULL, "DNS lookup failed: %s", err);
			free(pname);
			goto out;
		}
		dmarc = NULL;
		for (i = ndmarc = 0; i < ntxt; i++) {
			if (checkdomain_is_dmarc(txt[i])) {
				dmarc = dmarc == NULL ? txt[i] : dmarc;
				ndmarc++;
			}
		}
		if (ndmarc > 1) {
			checkdomain_add(cd, "dmarc", CHECKDOMAIN_FAIL, pname,
			    dmarc, parent == cd->domain ? record : NULL,
			    "%zu DMARC records: receivers ignore them all",
			    ndmarc);
			free(pname);
			goto out;
		}
		if (dmarc != NULL) {
			t = checkdomain_esc(dmarc);
			if ((why = checkdomain_dmarc_invalid(dmarc)) != NULL)
				checkdomain_add(cd, "dmarc", CHECKDOMAIN_FAIL,
				    pname, dmarc, parent == cd->domain ?
				    record : NULL, "%s (record \"%s\")", why,
				    t);
			else
				checkdomain_add(cd, "dmarc", CHECKDOMAIN_PASS,
				    pname, dmarc, NULL, "%s\"%s\"",
				    parent == cd->domain ? "" :
				    "inherited from the parent domain: ", t);
			free(t);
			free(pname);
			goto out;
		}
		free(pname);
		spfcheck_txt_free(txt, ntxt);
		txt = NULL;
		ntxt = 0;
		parent = strchr(parent, '.');
		if (parent != NULL && strchr(++parent, '.') == NULL)
			parent = NULL;	/* stop above a bare TLD */
	}
	checkdomain_add(cd, "dmarc", CHECKDOMAIN_MISSING, name, NULL, record,
	    "no DMARC record");
out:
	spfcheck_txt_free(txt, ntxt);
	free(record);
	free(name);
}

/*
 * The command.
 */

int
checkdomain_run(const struct conf *conf, const char *domain,
    const struct sockaddr_storage *ips, size_t nips, int query_ms,
    int total_ms, struct checkdomain_report *rep, char *err, size_t errlen)
{
	struct checkdomain_ctx	 cd;
	struct sockaddr_storage	 local[CHECKDOMAIN_IPS_MAX];
	char			*dom;
	size_t			 i, n;

	memset(rep, 0, sizeof(*rep));
	n = strlen(domain);
	if (n > 0 && domain[n - 1] == '.')
		n--;
	dom = xstrndup(domain, n);
	util_lowercase(dom);
	if (!conf_is_domain(dom)) {
		snprintf(err, errlen, "not a domain name: %s", domain);
		free(dom);
		return (-1);
	}
	memset(&cd, 0, sizeof(cd));
	cd.conf = conf;
	cd.domain = dom;
	cd.rep = rep;
	if ((cd.sc = spfcheck_new(conf->delivery.dns_servers,
	    conf->delivery.ndns_servers, err, errlen)) == NULL) {
		free(dom);
		return (-1);
	}
	spfcheck_set_timeouts(cd.sc, query_ms, total_ms);
	if (nips == 0) {
		nips = checkdomain_local_ips(local, nitems(local));
		ips = local;
	}
	cd.ips = ips;
	cd.nips = nips;
	rep->domain = dom;

	checkdomain_spf(&cd);
	for (i = 0; i < conf->ndkim; i++)
		if (util_domain_is_within(dom, conf->dkim[i].domain))
			checkdomain_dkim_one(&cd, &conf->dkim[i]);
	checkdomain_dmarc(&cd);
	spfcheck_free(cd.sc);
	return (0);
}

void
checkdomain_report_free(struct checkdomain_report *rep)
{
	size_t	i;

	if (rep == NULL)
		return;
	for (i = 0; i < rep->nitems; i++) {
		free(rep->items[i].name);
		free(rep->items[i].detail);
		free(rep->items[i].found);
		free(rep->items[i].record);
		free(rep->items[i].publish);
	}
	free(rep->items);
	free(rep->domain);
	memset(rep, 0, sizeof(*rep));
}

bool
checkdomain_report_is_ok(const struct checkdomain_report *rep)
{
	size_t	i;

	for (i = 0; i < rep->nitems; i++)
		if (rep->items[i].status != CHECKDOMAIN_PASS)
			return (false);
	return (rep->nitems > 0);
}

void
checkdomain_print(FILE *f, const struct checkdomain_report *rep)
{
	const struct checkdomain_item	*it;
	char				 name[SMTP_DOMAIN_MAX * 4 + 8];
	size_t				 i;

	for (i = 0; i < rep->nitems; i++) {
		it = &rep->items[i];
		fprintf(f, "%-7s %-5s %s: %s\n",
		    checkdomain_status_names[it->status], it->check,
		    util_escape(name, sizeof(name), it->name,
		    strlen(it->name)), it->detail);
		if (it->publish != NULL)
			fprintf(f, "        publish: %s\n", it->publish);
	}
	if (rep->nitems == 0)
		fprintf(f, "nothing checked\n");
}

/* DNS text that is not UTF-8 becomes null rather than vanishing. */
static json_t *
checkdomain_json_str(const char *s)
{
	json_t	*j;

	return ((j = json_string(s)) != NULL ? j : json_null());
}

char *
checkdomain_json(const struct checkdomain_report *rep)
{
	const struct checkdomain_item	*it;
	json_t				*o, *items, *j, *strs;
	char				*s, *out;
	size_t				 i, off, len;

	items = json_array();
	for (i = 0; i < rep->nitems; i++) {
		it = &rep->items[i];
		j = json_pack("{s:s, s:s, s:s, s:s}", "check", it->check,
		    "status", checkdomain_status_names[it->status],
		    "name", it->name, "detail", it->detail);
		if (j == NULL)
			continue;
		if (it->found != NULL)
			json_object_set_new(j, "found",
			    checkdomain_json_str(it->found));
		if (it->record != NULL) {
			json_object_set_new(j, "record",
			    checkdomain_json_str(it->record));
			json_object_set_new(j, "publish",
			    checkdomain_json_str(it->publish));
			strs = json_array();
			len = strlen(it->record);
			for (off = 0; off < len; off += CHECKDOMAIN_TXT_CHUNK)
				json_array_append_new(strs, json_stringn(
				    it->record + off, len - off <
				    CHECKDOMAIN_TXT_CHUNK ? len - off :
				    CHECKDOMAIN_TXT_CHUNK));
			json_object_set_new(j, "strings", strs);
		}
		json_array_append_new(items, j);
	}
	o = json_pack("{s:s, s:b, s:o}", "domain", rep->domain != NULL ?
	    rep->domain : "", "ok", checkdomain_report_is_ok(rep), "items",
	    items);
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	out = xstrdup(s != NULL ? s : "{}");
	free(s);
	return (out);
}

int
checkdomain_main(const struct conf *conf, const char *domain,
    char *const *ips, size_t nips, bool json, FILE *out, FILE *errf)
{
	struct checkdomain_report	 rep;
	struct sockaddr_storage		 ss[CHECKDOMAIN_IPS_MAX];
	struct sockaddr_in		*sin;
	struct sockaddr_in6		*sin6;
	char				 err[512], *s;
	size_t				 i;
	int				 rc;

	if (nips > nitems(ss)) {
		fprintf(errf, "posternctl: at most %zu --ip\n", nitems(ss));
		return (2);
	}
	for (i = 0; i < nips; i++) {
		memset(&ss[i], 0, sizeof(ss[i]));
		sin = (struct sockaddr_in *)&ss[i];
		sin6 = (struct sockaddr_in6 *)&ss[i];
		if (inet_pton(AF_INET, ips[i], &sin->sin_addr) == 1)
			sin->sin_family = AF_INET;
		else if (inet_pton(AF_INET6, ips[i], &sin6->sin6_addr) == 1)
			sin6->sin6_family = AF_INET6;
		else {
			fprintf(errf, "posternctl: --ip %s: not an IPv4 or "
			    "IPv6 address\n", ips[i]);
			return (2);
		}
	}
	if (checkdomain_run(conf, domain, ss, nips, 0, 0, &rep, err,
	    sizeof(err)) == -1) {
		fprintf(errf, "posternctl: check-domain: %s\n", err);
		return (2);
	}
	if (json) {
		s = checkdomain_json(&rep);
		fprintf(out, "%s\n", s);
		free(s);
	} else
		checkdomain_print(out, &rep);
	rc = checkdomain_report_is_ok(&rep) ? 0 : 1;
	checkdomain_report_free(&rep);
	return (rc);
}
