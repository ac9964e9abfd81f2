/*
 * dkimsign.c: DKIM signing with libopendkim (SPEC section 2 "dkim",
 * RFC 6376, RFC 8463 for Ed25519; the decisions are in doc/dkim.md).
 *
 * Keys are read once per configuration snapshot, checked (file mode, key
 * type and size) and proven by signing a fixed message, so posternd -n and
 * a reload report a bad key instead of the first delivery.  Each key is
 * kept as PKCS#8 PEM text because that is what dkim_sign() takes; the text
 * is cleared before it is freed.
 *
 * Threads: after dkimsign_new() returns nothing in struct dkimsign
 * changes, and the one DKIM_LIB is only read by libopendkim while signing
 * (its options are set before the first handle exists).  Each signing call
 * creates, uses and frees its own DKIM handles and buffers, so signing is
 * safe on any number of worker threads at once.  Memory per call is
 * bounded: the header section (at most SMTP_HEADER_MAX) plus one chunk,
 * whatever the size of the body.
 */
#include "compat.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <opendkim/dkim.h>

#include "conf.h"
#include "dkimsign.h"
#include "smtp_data.h"
#include "tls.h"
#include "util.h"

/* Body bytes fed to libopendkim per read. */
#define DKIMSIGN_CHUNK		(64 * 1024)
/* First allocation for the header section; it doubles up to the limit. */
#define DKIMSIGN_HDR_START	(16 * 1024)
/* The header section as received, plus the empty line, plus slack. */
#define DKIMSIGN_HDR_LIMIT	(SMTP_HEADER_MAX + 4)
/* A PEM private key is a few KiB; anything far larger is not one. */
#define DKIMSIGN_KEYFILE_MAX	(1024 * 1024)
/* RFC 5322 2.1.1: 998 octets a line plus CRLF. */
#define DKIMSIGN_LINE_MAX	(SMTP_TEXT_LINE_MAX - 2)

struct dkimsign_key {
	char		*domain;	/* owned, lower case */
	char		*selector;	/* owned */
	char		*pem;		/* owned; PKCS#8 PEM, cleared on free */
	size_t		 pemlen;
	dkim_alg_t	 alg;
};

struct dkimsign {
	DKIM_LIB		*lib;	/* owned; NULL when there are no keys */
	struct dkimsign_key	*keys;	/* owned array */
	size_t			 nkeys;
};

/* Where the message comes from: a file region or a memory buffer. */
struct dkimsign_src {
	int		 fd;
	off_t		 offset;
	const char	*buf;		/* borrowed; NULL: read fd */
	uint64_t	 len;
};

/*
 * The header fields signed when present (RFC 6376 5.4.1 plus the threading
 * and MIME fields); From is also over-signed so that a From: added on the
 * way breaks the signature (SECURITY-CASES, DKIM keys).
 */
static const char *dkimsign_signhdrs[] = {
	"from", "to", "cc", "subject", "date", "message-id", "reply-to",
	"in-reply-to", "references", "mime-version", "content-type", NULL
};
static const char *dkimsign_oversignhdrs[] = { "from", NULL };
/* dkim_body() takes a non-const buffer but only reads it. */
static u_char dkimsign_crlf[2] = { '\r', '\n' };

/* A fixed message signed by every key at load time. */
#define DKIMSIGN_PROBE_FMT						\
	"From: <postmaster@%s>\r\n"					\
	"Subject: postern key check\r\n"				\
	"\r\n"								\
	"key check\r\n"

static int	dkimsign_sign(struct dkimsign *, const struct dkimsign_src *,
		    const size_t *, char **, char *, size_t);

static const char *
dkimsign_conf_file(const struct conf *conf, const struct conf_dkim *d)
{
	if (d->file != NULL)
		return (d->file);
	return (conf->path != NULL ? conf->path : "(default)");
}

/* Never prompt on a terminal for an encrypted key's passphrase. */
static int
dkimsign_no_passphrase(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)arg;
	return (-1);
}

/*
 * Read one private key.  The mode is checked by path (tls_check_key_file,
 * with its messages) and again on the descriptor actually read, so a file
 * swapped in between is not taken.
 */
static EVP_PKEY *
dkimsign_read_key(const char *path, char *err, size_t errlen)
{
	struct stat	 st;
	EVP_PKEY	*pk;
	FILE		*f;
	char		 ebuf[512];
	size_t		 n;
	int		 fd;

	if (tls_check_key_file(path, err, errlen) == -1) {
		/* Its message starts with the path, which ours already has. */
		n = strlen(path);
		if (strncmp(err, path, n) == 0 &&
		    strncmp(err + n, ": ", 2) == 0)
			memmove(err, err + n + 2, strlen(err + n + 2) + 1);
		return (NULL);
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd == -1) {
		snprintf(err, errlen, "%s", strerror(errno));
		return (NULL);
	}
	if (fstat(fd, &st) == -1) {
		snprintf(err, errlen, "%s", strerror(errno));
		close(fd);
		return (NULL);
	}
	if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IRWXO | S_IWGRP)) != 0) {
		snprintf(err, errlen, "the file changed while it was checked");
		close(fd);
		return (NULL);
	}
	if (st.st_size > DKIMSIGN_KEYFILE_MAX) {
		snprintf(err, errlen, "%lld bytes is too large for a key file",
		    (long long)st.st_size);
		close(fd);
		return (NULL);
	}
	if ((f = fdopen(fd, "r")) == NULL) {
		snprintf(err, errlen, "%s", strerror(errno));
		close(fd);
		return (NULL);
	}
	ERR_clear_error();
	pk = PEM_read_PrivateKey(f, NULL, dkimsign_no_passphrase, NULL);
	fclose(f);
	if (pk == NULL)
		snprintf(err, errlen, "not an unencrypted PEM private key (%s)",
		    tls_errstr(ebuf, sizeof(ebuf)));
	return (pk);
}

/* The key as PKCS#8 PEM text, the form dkim_sign() parses. */
static char *
dkimsign_key_pem(EVP_PKEY *pk, size_t *lenp, char *err, size_t errlen)
{
	BIO	*bio;
	char	*data, *pem, ebuf[512];
	long	 n;

	ERR_clear_error();
	if ((bio = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL) != 1 ||
	    (n = BIO_get_mem_data(bio, &data)) <= 0) {
		snprintf(err, errlen, "cannot encode the key: %s",
		    tls_errstr(ebuf, sizeof(ebuf)));
		BIO_free(bio);
		return (NULL);
	}
	pem = xmalloc((size_t)n + 1);
	memcpy(pem, data, (size_t)n);
	pem[n] = '\0';
	*lenp = (size_t)n;
	/* BIO_free does not clear the memory BIO's buffer. */
	OPENSSL_cleanse(data, (size_t)n);
	BIO_free(bio);
	return (pem);
}

/* Load, check and convert one entry's key; 0, or -1 with errs. */
static int
dkimsign_load_key(struct dkimsign *ds, const struct conf *conf,
    const struct conf_dkim *d, struct dkimsign_key *k,
    struct conf_errors *errs)
{
	const char	*file = dkimsign_conf_file(conf, d);
	EVP_PKEY	*pk;
	char		 err[1024];
	int		 bits;

	if ((pk = dkimsign_read_key(d->key, err, sizeof(err))) == NULL) {
		conf_errors_add(errs, false, file, d->line, "dkim key %s: %s",
		    d->key, err);
		return (-1);
	}
	switch (EVP_PKEY_get_base_id(pk)) {
	case EVP_PKEY_RSA:
		bits = EVP_PKEY_get_bits(pk);
		if (bits < 1024) {
			conf_errors_add(errs, false, file, d->line,
			    "dkim key %s: RSA key of %d bits is too weak "
			    "(1024 at least, 2048 recommended)", d->key, bits);
			EVP_PKEY_free(pk);
			return (-1);
		}
		if (bits < 2048)
			conf_errors_add(errs, true, file, d->line,
			    "dkim key %s: RSA key of %d bits; 2048 is "
			    "recommended", d->key, bits);
		k->alg = DKIM_SIGN_RSASHA256;
		break;
	case EVP_PKEY_ED25519:
		if (!dkim_libfeature(ds->lib, DKIM_FEATURE_ED25519)) {
			conf_errors_add(errs, false, file, d->line,
			    "dkim key %s: this libopendkim cannot sign with "
			    "Ed25519", d->key);
			EVP_PKEY_free(pk);
			return (-1);
		}
		k->alg = DKIM_SIGN_ED25519SHA256;
		break;
	default:
		conf_errors_add(errs, false, file, d->line,
		    "dkim key %s: a %s key; only RSA and Ed25519 keys can sign "
		    "DKIM", d->key, OBJ_nid2sn(EVP_PKEY_get_base_id(pk)));
		EVP_PKEY_free(pk);
		return (-1);
	}
	k->pem = dkimsign_key_pem(pk, &k->pemlen, err, sizeof(err));
	EVP_PKEY_free(pk);
	if (k->pem == NULL) {
		conf_errors_add(errs, false, file, d->line, "dkim key %s: %s",
		    d->key, err);
		return (-1);
	}
	k->domain = xstrdup(d->domain);
	util_lowercase(k->domain);
	k->selector = xstrdup(d->selector);
	return (0);
}

/* Sign a fixed message with key i, so that a key libopendkim rejects
 * fails now rather than at the first delivery. */
static int
dkimsign_probe(struct dkimsign *ds, size_t i, char *err, size_t errlen)
{
	struct dkimsign_src	 src;
	char			*msg, *out = NULL;
	int			 r;

	(void)xasprintf(&msg, DKIMSIGN_PROBE_FMT, ds->keys[i].domain);
	memset(&src, 0, sizeof(src));
	src.fd = -1;
	src.buf = msg;
	src.len = strlen(msg);
	r = dkimsign_sign(ds, &src, &i, &out, err, errlen);
	free(msg);
	free(out);
	return (r == 1 ? 0 : -1);
}

/* Load every key; see dkimsign.h. */
struct dkimsign *
dkimsign_new(const struct conf *conf, struct conf_errors *errs)
{
	struct dkimsign		*ds;
	const struct conf_dkim	*d;
	struct conf_errors	 local;
	char			 err[1024];
	size_t			 i, nerr;

	if (errs == NULL) {
		memset(&local, 0, sizeof(local));
		errs = &local;
	}
	nerr = errs->nerrors;
	ds = xcalloc(1, sizeof(*ds));
	if (conf->ndkim == 0)
		return (ds);
	if ((ds->lib = dkim_init(NULL, NULL)) == NULL) {
		conf_errors_add(errs, false, NULL, 0, "dkim: cannot initialise "
		    "libopendkim");
		goto fail;
	}
	/* The arrays are copied (over-sign) or compiled (sign) by the
	 * library; len is the size of the pointer passed. */
	if (dkim_options(ds->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS,
	    dkimsign_signhdrs, sizeof(char **)) != DKIM_STAT_OK ||
	    dkim_options(ds->lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS,
	    dkimsign_oversignhdrs, sizeof(char **)) != DKIM_STAT_OK) {
		conf_errors_add(errs, false, NULL, 0, "dkim: cannot set the "
		    "libopendkim header lists");
		goto fail;
	}
	ds->keys = xcalloc(conf->ndkim, sizeof(*ds->keys));
	ds->nkeys = conf->ndkim;
	for (i = 0; i < conf->ndkim; i++) {
		d = &conf->dkim[i];
		if (dkimsign_load_key(ds, conf, d, &ds->keys[i], errs) == -1)
			continue;
		if (dkimsign_probe(ds, i, err, sizeof(err)) == -1)
			conf_errors_add(errs, false,
			    dkimsign_conf_file(conf, d), d->line,
			    "dkim key %s: libopendkim cannot sign with it: %s",
			    d->key, err);
	}
	if (errs->nerrors > nerr)
		goto fail;
	if (errs == &local)
		conf_errors_free(&local);
	return (ds);
fail:
	if (errs == &local)
		conf_errors_free(&local);
	dkimsign_free(ds);
	return (NULL);
}

void
dkimsign_free(struct dkimsign *ds)
{
	struct dkimsign_key	*k;
	size_t			 i;

	if (ds == NULL)
		return;
	for (i = 0; i < ds->nkeys; i++) {
		k = &ds->keys[i];
		if (k->pem != NULL)
			OPENSSL_cleanse(k->pem, k->pemlen);
		free(k->pem);
		free(k->domain);
		free(k->selector);
	}
	free(ds->keys);
	/* Also what dkim_init() allocated, for LeakSanitizer's sake. */
	if (ds->lib != NULL)
		dkim_close(ds->lib);
	free(ds);
}

size_t
dkimsign_count(const struct dkimsign *ds)
{
	return (ds != NULL ? ds->nkeys : 0);
}

/* Read exactly n bytes at pos of the message into dst. */
static int
dkimsign_read(const struct dkimsign_src *src, uint64_t pos, char *dst,
    size_t n, char *err, size_t errlen)
{
	size_t	 done = 0;
	ssize_t	 r;

	if (src->buf != NULL) {
		memcpy(dst, src->buf + pos, n);
		return (0);
	}
	while (done < n) {
		r = pread(src->fd, dst + done, n - done,
		    src->offset + (off_t)(pos + done));
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			snprintf(err, errlen, "reading the message: %s",
			    strerror(errno));
			return (-1);
		}
		if (r == 0) {
			snprintf(err, errlen, "the message file ends %llu "
			    "bytes early", (unsigned long long)(n - done));
			return (-1);
		}
		done += (size_t)r;
	}
	return (0);
}

/* The start of a message: the header section and maybe some body. */
struct dkimsign_msg {
	char		*hbuf;		/* owned; the first have bytes */
	size_t		 have;
	size_t		 hdrlen;	/* the fields, with the last CRLF */
	uint64_t	 body;		/* offset of the body */
};

/*
 * Read until the empty line that ends the header section, growing the
 * buffer up to DKIMSIGN_HDR_LIMIT.  A message with no empty line is all
 * header (RFC 5322 allows a message with no body).
 */
static int
dkimsign_read_header(const struct dkimsign_src *src, struct dkimsign_msg *m,
    char *err, size_t errlen)
{
	const char	*e;
	size_t		 cap = DKIMSIGN_HDR_START, from = 0, n;

	m->hbuf = xmalloc(cap);
	m->have = 0;
	for (;;) {
		n = cap - m->have;
		if (n > src->len - m->have)
			n = (size_t)(src->len - m->have);
		if (n > 0 && dkimsign_read(src, m->have, m->hbuf + m->have, n,
		    err, errlen) == -1)
			return (-1);
		m->have += n;
		if (m->have >= 2 && m->hbuf[0] == '\r' && m->hbuf[1] == '\n') {
			m->hdrlen = 0;
			m->body = 2;
			return (0);
		}
		e = memmem(m->hbuf + from, m->have - from, "\r\n\r\n", 4);
		if (e != NULL) {
			m->hdrlen = (size_t)(e - m->hbuf) + 2;
			m->body = m->hdrlen + 2;
			return (0);
		}
		if (m->have == src->len) {
			m->hdrlen = m->have;
			m->body = m->have;
			return (0);
		}
		if (cap >= DKIMSIGN_HDR_LIMIT) {
			snprintf(err, errlen, "the header section is longer "
			    "than %d bytes", DKIMSIGN_HDR_LIMIT);
			return (-1);
		}
		/* Rescan the last 3 bytes: the empty line may straddle. */
		from = m->have - 3;
		cap = cap * 2 > DKIMSIGN_HDR_LIMIT ? DKIMSIGN_HDR_LIMIT :
		    cap * 2;
		m->hbuf = xreallocarray(m->hbuf, cap, 1);
	}
}

/*
 * The entries that sign for from_domain: those whose domain is it or a
 * parent, keeping only the longest (most specific) such domain, so that a
 * subdomain with keys of its own is not also signed by its parent's.
 */
static size_t
dkimsign_select(const struct dkimsign *ds, const char *from_domain,
    size_t **selp)
{
	size_t	 i, n = 0, best = 0, len;
	size_t	*sel;

	*selp = NULL;
	if (from_domain[0] == '\0')
		return (0);
	for (i = 0; i < ds->nkeys; i++) {
		len = strlen(ds->keys[i].domain);
		if (len > best &&
		    util_domain_is_within(from_domain, ds->keys[i].domain))
			best = len;
	}
	if (best == 0)
		return (0);
	sel = xcalloc(ds->nkeys, sizeof(*sel));
	for (i = 0; i < ds->nkeys; i++) {
		if (strlen(ds->keys[i].domain) == best &&
		    util_domain_is_within(from_domain, ds->keys[i].domain))
			sel[n++] = i;
	}
	*selp = sel;
	return (n);
}

static void
dkimsign_error(DKIM *h, const struct dkimsign_key *k, const char *what,
    DKIM_STAT st, char *err, size_t errlen)
{
	const char	*e = h != NULL ? dkim_geterror(h) : NULL;

	if (e == NULL || e[0] == '\0')
		e = dkim_getresultstr(st);
	snprintf(err, errlen, "d=%s s=%s: %s: %s", k->domain, k->selector,
	    what, e != NULL ? e : "unknown error");
}

/*
 * A header field from libopendkim goes on the wire as is: insist on CRLF
 * line ends only, no NUL, and lines within RFC 5322's 998 octets.
 */
static bool
dkimsign_field_is_sane(const u_char *s, size_t len, size_t initial)
{
	size_t	i, col = initial;

	for (i = 0; i < len; i++) {
		if (s[i] == '\0')
			return (false);
		if (s[i] == '\r') {
			if (i + 1 >= len || s[i + 1] != '\n')
				return (false);
			i++;
			col = 0;
			continue;
		}
		if (s[i] == '\n' || ++col > DKIMSIGN_LINE_MAX)
			return (false);
	}
	return (true);
}

/* Hand one header field (no trailing CRLF) to every handle. */
static int
dkimsign_feed_field(DKIM **h, struct dkimsign_key **k, size_t n, u_char *f,
    size_t len, char *err, size_t errlen)
{
	DKIM_STAT	st;
	size_t		i;

	for (i = 0; i < n; i++) {
		if ((st = dkim_header(h[i], f, len)) != DKIM_STAT_OK) {
			dkimsign_error(h[i], k[i], "header field", st, err,
			    errlen);
			return (-1);
		}
	}
	return (0);
}

/*
 * Whether a field is one we sign.  Only those reach libopendkim: the others
 * do not enter the signature anyway (relaxed header canonicalisation hashes
 * only the fields named in h=), and this keeps fields we do not sign, such
 * as a hostile DKIM-Signature: from the submitter, away from the library's
 * tag parser (FZ-10, OpenDKIM #433).  RFC 5322 4.5 allows blanks before
 * the colon.
 */
static bool
dkimsign_field_is_signed(const char *f, size_t len)
{
	const char	*colon;
	size_t		 i, n;

	if ((colon = memchr(f, ':', len)) == NULL)
		return (false);
	n = (size_t)(colon - f);
	while (n > 0 && (f[n - 1] == ' ' || f[n - 1] == '\t'))
		n--;
	for (i = 0; dkimsign_signhdrs[i] != NULL; i++) {
		if (strlen(dkimsign_signhdrs[i]) == n &&
		    strncasecmp(f, dkimsign_signhdrs[i], n) == 0)
			return (true);
	}
	return (false);
}

/* Split the header section into fields, unfolding nothing: libopendkim
 * canonicalises them itself. */
static int
dkimsign_feed_header(DKIM **h, struct dkimsign_key **k, size_t n,
    struct dkimsign_msg *m, char *err, size_t errlen)
{
	char	*b = m->hbuf, *e;
	size_t	 start, p = 0, end, next;

	while (p < m->hdrlen) {
		start = p;
		for (;;) {
			e = memmem(b + p, m->hdrlen - p, "\r\n", 2);
			if (e == NULL) {
				end = next = m->hdrlen;
				break;
			}
			p = (size_t)(e - b) + 2;
			if (p < m->hdrlen && (b[p] == ' ' || b[p] == '\t'))
				continue;
			end = (size_t)(e - b);
			next = p;
			break;
		}
		if (end > start &&
		    dkimsign_field_is_signed(b + start, end - start) &&
		    dkimsign_feed_field(h, k, n, (u_char *)b + start,
		    end - start, err, errlen) == -1)
			return (-1);
		p = next;
	}
	return (0);
}

/* The last two body octets fed, to tell whether the body ends in CRLF. */
struct dkimsign_tail {
	uint64_t	 n;
	u_char		 c[2];
};

static int
dkimsign_feed_body(DKIM **h, struct dkimsign_key **k, size_t n, u_char *buf,
    size_t len, struct dkimsign_tail *t, char *err, size_t errlen)
{
	DKIM_STAT	st;
	size_t		i;

	if (len == 0)
		return (0);
	if (len >= 2) {
		t->c[0] = buf[len - 2];
		t->c[1] = buf[len - 1];
	} else {
		t->c[0] = t->c[1];
		t->c[1] = buf[0];
	}
	t->n += len;
	for (i = 0; i < n; i++) {
		if ((st = dkim_body(h[i], buf, len)) != DKIM_STAT_OK) {
			dkimsign_error(h[i], k[i], "body", st, err, errlen);
			return (-1);
		}
	}
	return (0);
}

/*
 * Sign with the keys chosen by the From: domain, or with key *only.  One
 * pass over the message feeds every handle, so two signatures cost one
 * read of a large body.  1, 0 (nothing to sign) or -1.
 */
static int
dkimsign_sign(struct dkimsign *ds, const struct dkimsign_src *src,
    const size_t *only, char **out, char *err, size_t errlen)
{
	struct smtp_data_hdrinfo	 hi;
	struct dkimsign_msg		 m;
	struct dkimsign_tail		 tail;
	struct dkimsign_key		**k = NULL;
	DKIM				**h = NULL;
	DKIM_STAT			 st;
	u_char				*sig, *chunk = NULL;
	char				*res = NULL;
	size_t				*sel = NULL, nsel = 0, i, siglen;
	size_t				 reslen = 0;
	size_t				 initial = strlen(DKIM_SIGNHEADER) + 2;
	uint64_t			 pos;
	int				 r = -1;

	*out = NULL;
	if (errlen > 0)
		err[0] = '\0';
	if (ds == NULL || ds->nkeys == 0 || src->len == 0)
		return (0);
	memset(&m, 0, sizeof(m));
	/* libopendkim reads OpenSSL's per-thread queue for its messages. */
	ERR_clear_error();
	if (dkimsign_read_header(src, &m, err, errlen) == -1)
		goto done;
	if (only != NULL) {
		sel = xcalloc(1, sizeof(*sel));
		sel[0] = *only;
		nsel = 1;
	} else {
		/* A malformed line ends the scan; From: before it counts. */
		memset(&hi, 0, sizeof(hi));
		(void)smtp_data_scan_headers(m.hbuf, m.hdrlen, &hi);
		if ((nsel = dkimsign_select(ds, hi.from_domain, &sel)) == 0) {
			r = 0;
			goto done;
		}
	}

	h = xcalloc(nsel, sizeof(*h));
	k = xcalloc(nsel, sizeof(*k));
	for (i = 0; i < nsel; i++) {
		k[i] = &ds->keys[sel[i]];
		st = DKIM_STAT_OK;
		h[i] = dkim_sign(ds->lib, (const u_char *)"postern", NULL,
		    (dkim_sigkey_t)k[i]->pem, (const u_char *)k[i]->selector,
		    (const u_char *)k[i]->domain, DKIM_CANON_RELAXED,
		    DKIM_CANON_RELAXED, k[i]->alg, -1, &st);
		if (h[i] == NULL) {
			dkimsign_error(NULL, k[i], "dkim_sign", st, err,
			    errlen);
			goto done;
		}
	}

	if (dkimsign_feed_header(h, k, nsel, &m, err, errlen) == -1)
		goto done;
	for (i = 0; i < nsel; i++) {
		if ((st = dkim_eoh(h[i])) != DKIM_STAT_OK) {
			dkimsign_error(h[i], k[i], "end of header", st, err,
			    errlen);
			goto done;
		}
	}
	memset(&tail, 0, sizeof(tail));
	if (m.have > m.body && dkimsign_feed_body(h, k, nsel,
	    (u_char *)m.hbuf + m.body, m.have - (size_t)m.body, &tail, err,
	    errlen) == -1)
		goto done;
	pos = m.have > m.body ? m.have : m.body;
	if (pos < src->len)
		chunk = xmalloc(DKIMSIGN_CHUNK);
	while (pos < src->len) {
		i = src->len - pos > DKIMSIGN_CHUNK ? DKIMSIGN_CHUNK :
		    (size_t)(src->len - pos);
		if (dkimsign_read(src, pos, (char *)chunk, i, err,
		    errlen) == -1 ||
		    dkimsign_feed_body(h, k, nsel, chunk, i, &tail, err,
		    errlen) == -1)
			goto done;
		pos += i;
	}
	/*
	 * The client ends a body that lacks it with CRLF before the dot
	 * (smtp_client.h), and RFC 6376 3.4.4 canonicalises so; libopendkim
	 * instead refuses such a body, so sign what is sent.
	 */
	if (tail.n > 0 && (tail.c[0] != '\r' || tail.c[1] != '\n') &&
	    dkimsign_feed_body(h, k, nsel, dkimsign_crlf, 2, &tail,
	    err, errlen) == -1)
		goto done;

	for (i = 0; i < nsel; i++) {
		if ((st = dkim_eom(h[i], NULL)) != DKIM_STAT_OK) {
			dkimsign_error(h[i], k[i], "end of message", st, err,
			    errlen);
			goto done;
		}
		sig = NULL;
		siglen = 0;
		st = dkim_getsighdr_d(h[i], initial, &sig, &siglen);
		if (st != DKIM_STAT_OK || sig == NULL) {
			dkimsign_error(h[i], k[i], "signature", st, err,
			    errlen);
			goto done;
		}
		if (!dkimsign_field_is_sane(sig, siglen, initial)) {
			snprintf(err, errlen, "d=%s s=%s: libopendkim made a "
			    "malformed header field", k[i]->domain,
			    k[i]->selector);
			goto done;
		}
		/* "DKIM-Signature: " value CRLF, NUL */
		res = xreallocarray(res, 1, reslen + initial + siglen + 3);
		memcpy(res + reslen, DKIM_SIGNHEADER ": ", initial);
		memcpy(res + reslen + initial, sig, siglen);
		memcpy(res + reslen + initial + siglen, "\r\n", 3);
		reslen += initial + siglen + 2;
	}
	*out = res;
	res = NULL;
	r = 1;
done:
	if (h != NULL) {
		for (i = 0; i < nsel; i++)
			if (h[i] != NULL)
				dkim_free(h[i]);
	}
	free(h);
	free(k);
	free(sel);
	free(chunk);
	free(res);
	free(m.hbuf);
	return (r);
}

/* See dkimsign.h. */
int
dkimsign_sign_fd(struct dkimsign *ds, int fd, off_t offset, uint64_t len,
    char **out, char *err, size_t errlen)
{
	struct dkimsign_src	src;

	memset(&src, 0, sizeof(src));
	src.fd = fd;
	src.offset = offset;
	src.len = len;
	return (dkimsign_sign(ds, &src, NULL, out, err, errlen));
}

int
dkimsign_sign_buf(struct dkimsign *ds, const char *msg, size_t len,
    char **out, char *err, size_t errlen)
{
	struct dkimsign_src	src;

	memset(&src, 0, sizeof(src));
	src.fd = -1;
	src.buf = msg;
	src.len = len;
	return (dkimsign_sign(ds, &src, NULL, out, err, errlen));
}
