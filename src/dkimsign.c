/*
 * dkimsign.c: DKIM signing (SPEC section 2 "dkim", RFC 6376; the
 * decisions are in doc/dkim.md).  Signatures are made here with OpenSSL
 * from keys parsed once: relaxed/relaxed canonicalisation, SHA-256 of the
 * body and of the header, then RSASSA-PKCS1-v1_5 (rsa-sha256) or PureEdDSA
 * over the 32-byte header hash (ed25519-sha256, RFC 8463).  libopendkim is
 * the reference: at load every RSA key signs a fixed message both here and
 * with libopendkim at a fixed time, and the two fields must be identical
 * byte for byte (PKCS#1 v1.5 signatures are deterministic); a key for
 * which they differ is signed by libopendkim from then on, with a warning.
 * Why not libopendkim for every message: dkim_sign() takes the key as PEM
 * text and parses it, and sets up the RSA key, on every signature, which
 * costs more than three signatures here (bench/RESULTS.md).  Ed25519 is
 * never signed by libopendkim 2.11, which leaks the key on every signature.
 *
 * Keys are read once per configuration snapshot, checked (file mode, key
 * type and size) and proven by signing a fixed message, so posternd -n and
 * a reload report a bad key instead of the first delivery.  Every key is
 * kept as an EVP_PKEY (OpenSSL clears it); an RSA key also as PKCS#8 PEM
 * text, what dkim_sign() takes, cleared before it is freed.
 *
 * Threads: after dkimsign_new() returns nothing in struct dkimsign
 * changes; the one DKIM_LIB and the EVP_PKEYs are only read while signing
 * (openssl-threads(7)).  Each signing call creates, uses and frees its own
 * handles, digests and buffers, so signing is safe on any number of worker
 * threads at once.  Memory per call is bounded: the header section (at
 * most SMTP_HEADER_MAX) plus one chunk, whatever the size of the body.
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
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

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
/* libopendkim's margin for its DKIM-Signature lines, a tab counting 8: a
 * tag that ends by this column stays on the line (after its space, so a
 * line may reach one column more), and b= fills lines up to it. */
#define DKIMSIGN_FOLD		75
#define DKIMSIGN_TABCOL		8
/* Canonical text is gathered in this much before it is hashed. */
#define DKIMSIGN_SINKBUF	4096
#define DKIMSIGN_FIELDNAME	"DKIM-Signature"

struct dkimsign_key {
	char		*domain;	/* owned, lower case */
	char		*selector;	/* owned */
	char		*pem;		/* owned; RSA only: PKCS#8 PEM, cleared
					 * on free */
	size_t		 pemlen;
	EVP_PKEY	*pk;		/* owned; the key, signed with here */
	dkim_alg_t	 alg;
	bool		 odkim;		/* RSA: sign with libopendkim, because
					 * our field differed from its own at
					 * load */
};

/* How one signing call is made: the load-time check and the tests pin the
 * time and may ask for libopendkim's RSA signatures. */
struct dkimsign_how {
	time_t		 t;		/* 0: now */
	bool		 odkim;		/* RSA keys through libopendkim */
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

/* A fixed message signed by every key at load time; enough fields that
 * h= folds, and a body with what relaxed canonicalisation rewrites. */
#define DKIMSIGN_PROBE_FMT						\
	"From: Postmaster <postmaster@%s>\r\n"				\
	"To: Key check <key-check@example.org>\r\n"			\
	"Subject:  postern\t key check \r\n"				\
	"Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n"			\
	"Message-ID: <key-check@postern.invalid>\r\n"			\
	"MIME-Version: 1.0\r\n"						\
	"Content-Type: text/plain;\r\n charset=us-ascii\r\n"		\
	"\r\n"								\
	"key  check \t\r\n"						\
	"\r\n"								\
	"\r\n"
/* The time both signers are given for the load-time comparison. */
#define DKIMSIGN_PROBE_TIME	((time_t)1767225600)

static int	dkimsign_sign(struct dkimsign *, const struct dkimsign_src *,
		    const size_t *, const struct dkimsign_how *, char **,
		    char *, size_t);

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
dkimsign_load_key(const struct conf *conf,
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
		if (bits > 8192) {
			conf_errors_add(errs, false, file, d->line,
			    "dkim key %s: RSA key of %d bits is too large "
			    "(8192 at most)", d->key, bits);
			EVP_PKEY_free(pk);
			return (-1);
		}
		k->alg = DKIM_SIGN_RSASHA256;
		break;
	case EVP_PKEY_ED25519:
		/* Never by libopendkim (it leaks the key). */
		k->alg = DKIM_SIGN_ED25519SHA256;
		k->pk = pk;
		k->domain = xstrdup(d->domain);
		util_lowercase(k->domain);
		k->selector = xstrdup(d->selector);
		return (0);
	default:
		conf_errors_add(errs, false, file, d->line,
		    "dkim key %s: a %s key; only RSA and Ed25519 keys can sign "
		    "DKIM", d->key, OBJ_nid2sn(EVP_PKEY_get_base_id(pk)));
		EVP_PKEY_free(pk);
		return (-1);
	}
	k->pem = dkimsign_key_pem(pk, &k->pemlen, err, sizeof(err));
	k->pk = pk;
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

/*
 * A libopendkim library handle with our header lists; a non-zero t fixes
 * the time of its signatures (the load-time comparison).  NULL on failure.
 */
static DKIM_LIB *
dkimsign_lib_new(time_t t)
{
	DKIM_LIB	*lib;
	uint64_t	 ft = (uint64_t)t;

	if ((lib = dkim_init(NULL, NULL)) == NULL)
		return (NULL);
	/* The arrays are copied (over-sign) or compiled (sign) by the
	 * library; len is the size of the pointer passed. */
	if (dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS,
	    dkimsign_signhdrs, sizeof(char **)) != DKIM_STAT_OK ||
	    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS,
	    dkimsign_oversignhdrs, sizeof(char **)) != DKIM_STAT_OK ||
	    (t != 0 && dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME,
	    &ft, sizeof(ft)) != DKIM_STAT_OK)) {
		dkim_close(lib);
		return (NULL);
	}
	return (lib);
}

/*
 * Sign a fixed message with key i, so that a key that cannot sign fails
 * now rather than at the first delivery.  An RSA key also signs it with
 * libopendkim at the same fixed time: when the two fields differ, *differs
 * is set and the key is signed by libopendkim from then on.  0 or -1.
 */
static int
dkimsign_probe(struct dkimsign *ds, size_t i, bool *differs, char *err,
    size_t errlen)
{
	struct dkimsign_src	 src;
	struct dkimsign_how	 how;
	struct dkimsign_key	*k = &ds->keys[i];
	char			*msg, *ours = NULL, *theirs = NULL;
	int			 r;

	*differs = false;
	(void)xasprintf(&msg, DKIMSIGN_PROBE_FMT, k->domain);
	memset(&src, 0, sizeof(src));
	src.fd = -1;
	src.buf = msg;
	src.len = strlen(msg);
	memset(&how, 0, sizeof(how));
	how.t = DKIMSIGN_PROBE_TIME;
	r = dkimsign_sign(ds, &src, &i, &how, &ours, err, errlen);
	if (r == 1 && k->alg == DKIM_SIGN_RSASHA256) {
		how.odkim = true;
		r = dkimsign_sign(ds, &src, &i, &how, &theirs, err, errlen);
		if (r == 1 && strcmp(ours, theirs) != 0) {
			*differs = true;
			k->odkim = true;
		}
	}
	free(msg);
	free(ours);
	free(theirs);
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
	bool			 differs;

	if (errs == NULL) {
		memset(&local, 0, sizeof(local));
		errs = &local;
	}
	nerr = errs->nerrors;
	ds = xcalloc(1, sizeof(*ds));
	if (conf->ndkim == 0)
		return (ds);
	if ((ds->lib = dkimsign_lib_new(0)) == NULL) {
		conf_errors_add(errs, false, NULL, 0, "dkim: cannot initialise "
		    "libopendkim");
		goto fail;
	}
	ds->keys = xcalloc(conf->ndkim, sizeof(*ds->keys));
	ds->nkeys = conf->ndkim;
	for (i = 0; i < conf->ndkim; i++) {
		d = &conf->dkim[i];
		if (dkimsign_load_key(conf, d, &ds->keys[i], errs) == -1)
			continue;
		if (dkimsign_probe(ds, i, &differs, err, sizeof(err)) == -1)
			conf_errors_add(errs, false,
			    dkimsign_conf_file(conf, d), d->line,
			    "dkim key %s: cannot sign with it: %s",
			    d->key, err);
		else if (differs)
			conf_errors_add(errs, true,
			    dkimsign_conf_file(conf, d), d->line,
			    "dkim key %s: postern's rsa-sha256 signature of "
			    "the check message differs from libopendkim's; "
			    "this key is signed by libopendkim, which is "
			    "slower (please report this)", d->key);
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
		EVP_PKEY_free(k->pk);
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

/* A failed OpenSSL step of one of our signatures, with OpenSSL's reason. */
static void
dkimsign_nat_error(const struct dkimsign_key *k, const char *what, char *err,
    size_t errlen)
{
	char	ebuf[512];

	snprintf(err, errlen, "d=%s s=%s: %s: %s", k->domain, k->selector,
	    what, tls_errstr(ebuf, sizeof(ebuf)));
}

/*
 * A header field goes on the wire as is: insist on CRLF line ends only, no
 * NUL, and lines within RFC 5322's 998 octets.
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

/* A growing NUL-terminated string, for the fields we build. */
struct dkimsign_str {
	char	*s;
	size_t	 len;
	size_t	 cap;
};

static void
dkimsign_str_add(struct dkimsign_str *b, const char *p, size_t n)
{
	if (b->s == NULL || b->cap - b->len <= n) {
		while (b->cap - b->len <= n)
			b->cap = b->cap == 0 ? 256 : b->cap * 2;
		b->s = xreallocarray(b->s, b->cap, 1);
	}
	memcpy(b->s + b->len, p, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void
dkimsign_str_adds(struct dkimsign_str *b, const char *p)
{
	dkimsign_str_add(b, p, strlen(p));
}

/*
 * Canonical text on its way into a SHA-256, gathered so that the
 * octet-at-a-time canonicalisers below do not call the digest per octet.
 * A failed update is remembered and reported by the caller.
 */
struct dkimsign_sink {
	EVP_MD_CTX	*md;		/* borrowed */
	bool		 failed;
	size_t		 n;
	u_char		 buf[DKIMSIGN_SINKBUF];
};

static void
dkimsign_sink_flush(struct dkimsign_sink *sk)
{
	if (sk->n > 0 && EVP_DigestUpdate(sk->md, sk->buf, sk->n) != 1)
		sk->failed = true;
	sk->n = 0;
}

static inline void
dkimsign_sink_put(struct dkimsign_sink *sk, u_char c)
{
	if (sk->n == sizeof(sk->buf))
		dkimsign_sink_flush(sk);
	sk->buf[sk->n++] = c;
}

static void
dkimsign_sink_crlf(struct dkimsign_sink *sk)
{
	dkimsign_sink_put(sk, '\r');
	dkimsign_sink_put(sk, '\n');
}

/*
 * Relaxed header canonicalisation (RFC 6376 3.4.2) of one field as it is
 * in the message, folds included, without the CRLF that ends it; namelen
 * is the name's length without blanks before the colon.  Out: the name in
 * lower case, ':', the value unfolded (CRLF removed) with every run of SP
 * and HTAB made one SP and none left at either end, then CRLF when crlf
 * (the DKIM-Signature field being signed has none, RFC 6376 3.7).  Only
 * SP and HTAB are blanks (RFC 5234 WSP); other octets, 8-bit included,
 * pass as they are.
 */
static void
dkimsign_canon_field(struct dkimsign_sink *sk, const char *f, size_t len,
    size_t namelen, bool crlf)
{
	const char	*colon;
	size_t		 i;
	bool		 wsp = false, text = false;
	u_char		 c;

	for (i = 0; i < namelen; i++) {
		c = (u_char)f[i];
		dkimsign_sink_put(sk, c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
	}
	dkimsign_sink_put(sk, ':');
	colon = memchr(f, ':', len);
	for (i = colon != NULL ? (size_t)(colon - f) + 1 : len; i < len; i++) {
		c = (u_char)f[i];
		if (c == '\r' && i + 1 < len && f[i + 1] == '\n') {
			i++;
			continue;
		}
		if (c == ' ' || c == '\t') {
			wsp = true;
			continue;
		}
		if (wsp && text)
			dkimsign_sink_put(sk, ' ');
		wsp = false;
		text = true;
		dkimsign_sink_put(sk, c);
	}
	if (crlf)
		dkimsign_sink_crlf(sk);
}

/*
 * Relaxed body canonicalisation (RFC 6376 3.4.4), streamed: blanks at the
 * end of a line are dropped, other runs of SP and HTAB become one SP,
 * empty lines are held back and written only when a line with text
 * follows, so empty lines at the end count for nothing and a body of
 * nothing but empty lines canonicalises to nothing (as dkimpy does).  Only
 * CRLF ends a line; a CR and its LF may come in different chunks.  The
 * whole state between chunks is in this struct.
 */
struct dkimsign_body {
	struct dkimsign_sink	 sink;
	uint64_t		 nblank;	/* empty lines held back */
	bool			 wsp;	/* blanks seen, not yet written */
	bool			 cr;	/* the last octet was a CR */
	bool			 text;	/* this line has text written */
};

/* Text (anything but a blank or a line end) in the body. */
static void
dkimsign_body_text(struct dkimsign_body *bc, u_char c)
{
	for (; bc->nblank > 0; bc->nblank--)
		dkimsign_sink_crlf(&bc->sink);
	if (bc->wsp)
		dkimsign_sink_put(&bc->sink, ' ');
	bc->wsp = false;
	bc->text = true;
	dkimsign_sink_put(&bc->sink, c);
}

static void
dkimsign_body_feed(struct dkimsign_body *bc, const u_char *p, size_t len)
{
	size_t	i;
	u_char	c;

	for (i = 0; i < len; i++) {
		c = p[i];
		if (bc->cr) {
			bc->cr = false;
			if (c == '\n') {
				/* End of line: trailing blanks go. */
				bc->wsp = false;
				if (bc->text)
					dkimsign_sink_crlf(&bc->sink);
				else
					bc->nblank++;
				bc->text = false;
				continue;
			}
			dkimsign_body_text(bc, '\r');
		}
		if (c == '\r')
			bc->cr = true;
		else if (c == ' ' || c == '\t')
			bc->wsp = true;
		else
			dkimsign_body_text(bc, c);
	}
}

/*
 * The end of the body.  The caller has already fed the CRLF the client
 * adds to a body that lacks one; ending a line with text here anyway
 * keeps RFC 6376 3.4.4 ("a CRLF is added") true on its own.
 */
static void
dkimsign_body_end(struct dkimsign_body *bc)
{
	if (bc->cr) {
		bc->cr = false;
		dkimsign_body_text(bc, '\r');
	}
	if (bc->text)
		dkimsign_sink_crlf(&bc->sink);
	bc->text = false;
	dkimsign_sink_flush(&bc->sink);
}

/* A header field that we sign: where it is in the header section. */
struct dkimsign_field {
	size_t	 off;
	size_t	 len;		/* without the CRLF that ends it */
	size_t	 namelen;	/* as written, blanks before the colon left
				 * out */
	size_t	 name;		/* index in dkimsign_signhdrs */
	size_t	 rank;		/* fields of that name above this one */
};

#define DKIMSIGN_NNAMES	(nitems(dkimsign_signhdrs) - 1)

/*
 * Which of the names we sign a field has: its index in dkimsign_signhdrs,
 * or -1.  Only those fields are signed, and only those reach libopendkim:
 * the others do not enter a signature anyway (relaxed header
 * canonicalisation hashes only the fields named in h=), and this keeps
 * fields we do not sign, such as a hostile DKIM-Signature: from the
 * submitter, away from libopendkim's tag parser (FZ-10, OpenDKIM #433).
 * RFC 5322 4.5 allows blanks before the colon.
 */
static int
dkimsign_field_name(const char *f, size_t len, size_t *namelenp)
{
	const char	*colon;
	size_t		 i, n;

	if ((colon = memchr(f, ':', len)) == NULL)
		return (-1);
	n = (size_t)(colon - f);
	while (n > 0 && (f[n - 1] == ' ' || f[n - 1] == '\t'))
		n--;
	for (i = 0; dkimsign_signhdrs[i] != NULL; i++) {
		if (strlen(dkimsign_signhdrs[i]) == n &&
		    strncasecmp(f, dkimsign_signhdrs[i], n) == 0) {
			*namelenp = n;
			return ((int)i);
		}
	}
	return (-1);
}

/*
 * Split the header section into fields (a field goes on while the next
 * line starts with a blank) and keep those we sign, in message order;
 * nothing is unfolded: each signer canonicalises for itself.  Returns the
 * count; *fp is malloc'd (NULL when none).
 */
static size_t
dkimsign_split_header(const struct dkimsign_msg *m,
    struct dkimsign_field **fp)
{
	struct dkimsign_field	*f = NULL;
	const char		*b = m->hbuf, *e;
	size_t			 count[DKIMSIGN_NNAMES];
	size_t			 start, p = 0, end, next, nf = 0, cap = 0;
	size_t			 namelen = 0;
	int			 name;

	memset(count, 0, sizeof(count));
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
		p = next;
		if (end == start || (name = dkimsign_field_name(b + start,
		    end - start, &namelen)) == -1)
			continue;
		if (nf == cap) {
			cap = cap == 0 ? 16 : cap * 2;
			f = xreallocarray(f, cap, sizeof(*f));
		}
		f[nf].off = start;
		f[nf].len = end - start;
		f[nf].namelen = namelen;
		f[nf].name = (size_t)name;
		f[nf].rank = count[name]++;
		nf++;
	}
	*fp = f;
	return (nf);
}

/* Hand the signed header fields to every libopendkim handle. */
static int
dkimsign_feed_header(DKIM **h, struct dkimsign_key **k, size_t n,
    const struct dkimsign_msg *m, const struct dkimsign_field *f, size_t nf,
    char *err, size_t errlen)
{
	DKIM_STAT	st;
	size_t		i, j;

	for (j = 0; j < nf; j++) {
		for (i = 0; i < n; i++) {
			st = dkim_header(h[i], (u_char *)m->hbuf + f[j].off,
			    f[j].len);
			if (st != DKIM_STAT_OK) {
				dkimsign_error(h[i], k[i], "header field", st,
				    err, errlen);
				return (-1);
			}
		}
	}
	return (0);
}

/*
 * The part of the header hash that all our own signatures of a message
 * share, into md, and their h= list into hl.  h= names the signed fields
 * in message order as libopendkim does, then "from" once more (over-signing).
 * A verifier takes the k-th occurrence of a name in h= to mean the k-th
 * field of that name counted from the bottom (RFC 6376 5.4.2), so that is
 * the field hashed there; the extra "from" finds no field and adds nothing.
 * Linear in the number of fields, however many share a name.
 */
static int
dkimsign_nat_header(const struct dkimsign_msg *m,
    const struct dkimsign_field *f, size_t nf, EVP_MD_CTX *md,
    struct dkimsign_str *hl)
{
	struct dkimsign_sink	*sk;
	size_t			 count[DKIMSIGN_NNAMES];
	size_t			 first[DKIMSIGN_NNAMES];
	size_t			 fill[DKIMSIGN_NNAMES];
	size_t			*byname, i, x, fi, total = 0;
	bool			 failed;

	memset(count, 0, sizeof(count));
	for (i = 0; i < nf; i++)
		count[f[i].name]++;
	for (x = 0; x < DKIMSIGN_NNAMES; x++) {
		first[x] = fill[x] = total;
		total += count[x];
	}
	/* byname[first[x] + r]: the field of name x with rank r. */
	byname = xcalloc(nf > 0 ? nf : 1, sizeof(*byname));
	for (i = 0; i < nf; i++)
		byname[fill[f[i].name]++] = i;

	sk = xcalloc(1, sizeof(*sk));
	sk->md = md;
	for (i = 0; i < nf; i++) {
		x = f[i].name;
		fi = byname[first[x] + count[x] - 1 - f[i].rank];
		dkimsign_canon_field(sk, m->hbuf + f[fi].off, f[fi].len,
		    f[fi].namelen, true);
		dkimsign_str_add(hl, m->hbuf + f[i].off, f[i].namelen);
		dkimsign_str_add(hl, ":", 1);
	}
	dkimsign_str_adds(hl, dkimsign_oversignhdrs[0]);
	dkimsign_sink_flush(sk);
	failed = sk->failed;
	free(sk);
	free(byname);
	return (failed ? -1 : 0);
}

/*
 * Append one tag of our DKIM-Signature field (its ';' included), on the
 * current line when the column before the space plus the tag is within
 * DKIMSIGN_FOLD, else on a new line (CRLF TAB): exactly libopendkim's rule
 * (dkim_getsighdr_d()), so that our fields are the bytes it would make.
 */
static void
dkimsign_fold_tag(struct dkimsign_str *b, size_t *col, const char *tag,
    bool first)
{
	size_t	n = strlen(tag);

	if (!first) {
		if (*col + n > DKIMSIGN_FOLD) {
			dkimsign_str_adds(b, "\r\n\t");
			*col = DKIMSIGN_TABCOL;
		} else {
			dkimsign_str_add(b, " ", 1);
			(*col)++;
		}
	}
	dkimsign_str_add(b, tag, n);
	*col += n;
}

/*
 * h= and its ';': whole on the current line if it fits (the fold_tag
 * rule), else from a new line, folded after a ':' (CRLF TAB SP) where the
 * next name (the last with its ';') would pass the margin, as libopendkim
 * does.  The folds are part of what is signed: the field is canonicalised
 * as sent, where each fold becomes one SP.
 */
static void
dkimsign_fold_h(struct dkimsign_str *b, size_t *col, const char *list)
{
	const char	*p, *e;
	size_t		 n;

	if (*col + 2 + strlen(list) + 1 <= DKIMSIGN_FOLD) {
		dkimsign_str_add(b, " h=", 3);
		dkimsign_str_adds(b, list);
		*col += 3 + strlen(list);
		return;
	}
	dkimsign_str_adds(b, "\r\n\th=");
	*col = DKIMSIGN_TABCOL + 2;
	for (p = list; ; p = e + 1) {
		e = strchr(p, ':');
		n = e != NULL ? (size_t)(e - p) : strlen(p);
		if (p != list &&
		    *col + n + (e == NULL ? 1 : 0) > DKIMSIGN_FOLD) {
			dkimsign_str_adds(b, "\r\n\t ");
			*col = DKIMSIGN_TABCOL + 1;
		}
		dkimsign_str_add(b, p, n);
		*col += n;
		if (e == NULL)
			break;
		dkimsign_str_add(b, ":", 1);
		(*col)++;
	}
}

/*
 * The signature over the 32-octet header hash: RSASSA-PKCS1-v1_5 with
 * SHA-256 (rsa-sha256, RFC 6376 3.3.1), or PureEdDSA (RFC 8463 3: Ed25519
 * over the hash, not Ed25519ph).  Into sig, of room *siglen (at least
 * EVP_PKEY_get_size()); 0 or -1.
 */
static int
dkimsign_nat_sigbytes(const struct dkimsign_key *k, const u_char *hash,
    size_t hashlen, u_char *sig, size_t *siglen)
{
	EVP_MD_CTX	*sc;
	EVP_PKEY_CTX	*pc;
	int		 ok;

	if (k->alg == DKIM_SIGN_ED25519SHA256) {
		if ((sc = EVP_MD_CTX_new()) == NULL)
			return (-1);
		ok = EVP_DigestSignInit(sc, NULL, NULL, NULL, k->pk) == 1 &&
		    EVP_DigestSign(sc, sig, siglen, hash, hashlen) == 1;
		EVP_MD_CTX_free(sc);
		return (ok ? 0 : -1);
	}
	if ((pc = EVP_PKEY_CTX_new(k->pk, NULL)) == NULL)
		return (-1);
	ok = EVP_PKEY_sign_init(pc) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) == 1 &&
	    EVP_PKEY_sign(pc, sig, siglen, hash, hashlen) == 1;
	EVP_PKEY_CTX_free(pc);
	return (ok ? 0 : -1);
}

/*
 * One rsa-sha256 or ed25519-sha256 DKIM-Signature field, CRLF-terminated,
 * or NULL with err.  The tags are libopendkim's, in its order, folded the
 * way it folds, so that for an RSA key the field is byte for byte the one
 * libopendkim makes (checked at load); b= starts a line of its own.  hdr
 * holds the hash of the signed fields so far; the field itself,
 * canonicalised with b= empty and no CRLF, completes it (RFC 6376 3.7).
 */
static char *
dkimsign_nat_sign(const struct dkimsign_key *k, const EVP_MD_CTX *hdr,
    const char *bh, const char *hlist, time_t now, char *err, size_t errlen)
{
	struct dkimsign_str	 b;
	struct dkimsign_sink	*sk = NULL;
	EVP_MD_CTX		*md = NULL;
	u_char			 hash[EVP_MAX_MD_SIZE], *sig = NULL;
	char			 tag[SMTP_DOMAIN_MAX + 16], *b64 = NULL;
	char			*res = NULL;
	size_t			 col, siglen, i;
	unsigned int		 hashlen = 0;
	int			 n;

	memset(&b, 0, sizeof(b));
	dkimsign_str_adds(&b, DKIMSIGN_FIELDNAME ": ");
	col = strlen(DKIMSIGN_FIELDNAME) + 2;
	dkimsign_fold_tag(&b, &col, "v=1;", true);
	dkimsign_fold_tag(&b, &col, k->alg == DKIM_SIGN_ED25519SHA256 ?
	    "a=ed25519-sha256;" : "a=rsa-sha256;", false);
	dkimsign_fold_tag(&b, &col, "c=relaxed/relaxed;", false);
	n = snprintf(tag, sizeof(tag), "d=%s;", k->domain);
	if (n < 0 || (size_t)n >= sizeof(tag))
		goto toolong;
	dkimsign_fold_tag(&b, &col, tag, false);
	n = snprintf(tag, sizeof(tag), "s=%s;", k->selector);
	if (n < 0 || (size_t)n >= sizeof(tag))
		goto toolong;
	dkimsign_fold_tag(&b, &col, tag, false);
	snprintf(tag, sizeof(tag), "t=%lld;", (long long)now);
	dkimsign_fold_tag(&b, &col, tag, false);
	snprintf(tag, sizeof(tag), "bh=%s;", bh);
	dkimsign_fold_tag(&b, &col, tag, false);
	dkimsign_fold_h(&b, &col, hlist);
	dkimsign_str_adds(&b, ";\r\n\tb=");
	col = DKIMSIGN_TABCOL + 2;

	ERR_clear_error();
	sk = xcalloc(1, sizeof(*sk));
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_MD_CTX_copy_ex(md, hdr) != 1) {
		dkimsign_nat_error(k, "header hash", err, errlen);
		goto done;
	}
	sk->md = md;
	dkimsign_canon_field(sk, b.s, b.len, strlen(DKIMSIGN_FIELDNAME),
	    false);
	dkimsign_sink_flush(sk);
	if (sk->failed || EVP_DigestFinal_ex(md, hash, &hashlen) != 1) {
		dkimsign_nat_error(k, "header hash", err, errlen);
		goto done;
	}
	/* At most 8192 bits (dkimsign_load_key), so these stay small. */
	siglen = (size_t)EVP_PKEY_get_size(k->pk);
	sig = xmalloc(siglen);
	b64 = xmalloc(4 * ((siglen + 2) / 3) + 1);
	if (dkimsign_nat_sigbytes(k, hash, hashlen, sig, &siglen) == -1) {
		dkimsign_nat_error(k, "signature", err, errlen);
		goto done;
	}
	EVP_EncodeBlock((u_char *)b64, sig, (int)siglen);
	for (i = 0; b64[i] != '\0'; i++) {
		if (col >= DKIMSIGN_FOLD) {
			dkimsign_str_adds(&b, "\r\n\t ");
			col = DKIMSIGN_TABCOL + 1;
		}
		dkimsign_str_add(&b, b64 + i, 1);
		col++;
	}
	dkimsign_str_adds(&b, "\r\n");
	if (!dkimsign_field_is_sane((u_char *)b.s, b.len, 0)) {
		snprintf(err, errlen, "d=%s s=%s: made a malformed header "
		    "field", k->domain, k->selector);
		goto done;
	}
	res = b.s;
	b.s = NULL;
	goto done;
toolong:
	snprintf(err, errlen, "d=%s s=%s: too long for a tag", k->domain,
	    k->selector);
done:
	OPENSSL_cleanse(hash, sizeof(hash));
	EVP_MD_CTX_free(md);
	free(sig);
	free(b64);
	free(sk);
	free(b.s);
	return (res);
}

/* The last two body octets fed, to tell whether the body ends in CRLF. */
struct dkimsign_tail {
	uint64_t	 n;
	u_char		 c[2];
};

/* Body octets to every libopendkim handle and to our own body hash. */
static int
dkimsign_feed_body(DKIM **h, struct dkimsign_key **k, size_t n,
    struct dkimsign_body *bc, u_char *buf, size_t len,
    struct dkimsign_tail *t, char *err, size_t errlen)
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
	if (bc != NULL)
		dkimsign_body_feed(bc, buf, len);
	return (0);
}

/* The RSA signature of handle h as a CRLF-terminated field, or NULL. */
static char *
dkimsign_rsa_field(DKIM *h, const struct dkimsign_key *k, char *err,
    size_t errlen)
{
	DKIM_STAT	 st;
	u_char		*sig = NULL;
	char		*res;
	size_t		 siglen = 0;
	size_t		 initial = strlen(DKIMSIGN_FIELDNAME) + 2;

	if ((st = dkim_eom(h, NULL)) != DKIM_STAT_OK) {
		dkimsign_error(h, k, "end of message", st, err, errlen);
		return (NULL);
	}
	st = dkim_getsighdr_d(h, initial, &sig, &siglen);
	if (st != DKIM_STAT_OK || sig == NULL) {
		dkimsign_error(h, k, "signature", st, err, errlen);
		return (NULL);
	}
	if (!dkimsign_field_is_sane(sig, siglen, initial)) {
		snprintf(err, errlen, "d=%s s=%s: libopendkim made a malformed "
		    "header field", k->domain, k->selector);
		return (NULL);
	}
	/* "DKIM-Signature: " value CRLF, NUL */
	res = xmalloc(initial + siglen + 3);
	memcpy(res, DKIMSIGN_FIELDNAME ": ", initial);
	memcpy(res + initial, sig, siglen);
	memcpy(res + initial + siglen, "\r\n", 3);
	return (res);
}

/*
 * Sign with the keys chosen by the From: domain, or with key *only, as how
 * says (NULL: now, and libopendkim only for keys that failed the load-time
 * comparison).  One pass over the message feeds every libopendkim handle
 * and the one body hash that all our own signatures share, so several
 * signatures cost one read of a large body.  1, 0 (nothing to sign) or -1.
 */
static int
dkimsign_sign(struct dkimsign *ds, const struct dkimsign_src *src,
    const size_t *only, const struct dkimsign_how *how, char **out, char *err,
    size_t errlen)
{
	struct smtp_data_hdrinfo	 hi;
	struct dkimsign_msg		 m;
	struct dkimsign_tail		 tail;
	struct dkimsign_field		*f = NULL;
	struct dkimsign_body		*bc = NULL;
	struct dkimsign_str		 hl, res;
	struct dkimsign_key		**k = NULL;
	EVP_MD_CTX			*hdrmd = NULL, *bodymd = NULL;
	DKIM				**h = NULL;
	DKIM_LIB			*lib, *fixedlib = NULL;
	DKIM_STAT			 st;
	u_char				*chunk = NULL;
	u_char				 bhash[EVP_MAX_MD_SIZE];
	char				**fields = NULL, bh[64], ebuf[512];
	size_t				*sel = NULL, *hsel = NULL, nsel = 0;
	size_t				 nrsa = 0, nnat = 0, nf, i;
	bool				*viaodkim = NULL;
	unsigned int			 bhlen = 0;
	uint64_t			 pos;
	time_t				 now;
	int				 r = -1;

	*out = NULL;
	if (errlen > 0)
		err[0] = '\0';
	if (ds == NULL || ds->nkeys == 0 || src->len == 0)
		return (0);
	memset(&m, 0, sizeof(m));
	memset(&hl, 0, sizeof(hl));
	memset(&res, 0, sizeof(res));
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
	nf = dkimsign_split_header(&m, &f);

	/* libopendkim handles for RSA keys signed by it; hsel[j]: handle j's
	 * sel slot. */
	lib = ds->lib;
	h = xcalloc(nsel, sizeof(*h));
	k = xcalloc(nsel, sizeof(*k));
	hsel = xcalloc(nsel, sizeof(*hsel));
	fields = xcalloc(nsel, sizeof(*fields));
	viaodkim = xcalloc(nsel, sizeof(*viaodkim));
	for (i = 0; i < nsel; i++) {
		viaodkim[i] = ds->keys[sel[i]].alg == DKIM_SIGN_RSASHA256 &&
		    (ds->keys[sel[i]].odkim || (how != NULL && how->odkim));
		if (!viaodkim[i]) {
			nnat++;
			continue;
		}
		if (how != NULL && how->t != 0 && fixedlib == NULL) {
			if ((fixedlib = dkimsign_lib_new(how->t)) == NULL) {
				snprintf(err, errlen, "cannot initialise "
				    "libopendkim");
				goto done;
			}
			lib = fixedlib;
		}
		k[nrsa] = &ds->keys[sel[i]];
		hsel[nrsa] = i;
		st = DKIM_STAT_OK;
		h[nrsa] = dkim_sign(lib, (const u_char *)"postern", NULL,
		    (dkim_sigkey_t)k[nrsa]->pem,
		    (const u_char *)k[nrsa]->selector,
		    (const u_char *)k[nrsa]->domain, DKIM_CANON_RELAXED,
		    DKIM_CANON_RELAXED, k[nrsa]->alg, -1, &st);
		if (h[nrsa] == NULL) {
			dkimsign_error(NULL, k[nrsa], "dkim_sign", st, err,
			    errlen);
			goto done;
		}
		nrsa++;
	}
	if (dkimsign_feed_header(h, k, nrsa, &m, f, nf, err, errlen) == -1)
		goto done;
	for (i = 0; i < nrsa; i++) {
		if ((st = dkim_eoh(h[i])) != DKIM_STAT_OK) {
			dkimsign_error(h[i], k[i], "end of header", st, err,
			    errlen);
			goto done;
		}
	}
	if (nnat > 0) {
		bc = xcalloc(1, sizeof(*bc));
		if ((hdrmd = EVP_MD_CTX_new()) == NULL ||
		    (bodymd = EVP_MD_CTX_new()) == NULL ||
		    EVP_DigestInit_ex(hdrmd, EVP_sha256(), NULL) != 1 ||
		    EVP_DigestInit_ex(bodymd, EVP_sha256(), NULL) != 1 ||
		    dkimsign_nat_header(&m, f, nf, hdrmd, &hl) == -1) {
			snprintf(err, errlen, "header hash: %s",
			    tls_errstr(ebuf, sizeof(ebuf)));
			goto done;
		}
		bc->sink.md = bodymd;
	}

	memset(&tail, 0, sizeof(tail));
	if (m.have > m.body && dkimsign_feed_body(h, k, nrsa, bc,
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
		    dkimsign_feed_body(h, k, nrsa, bc, chunk, i, &tail, err,
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
	    dkimsign_feed_body(h, k, nrsa, bc, dkimsign_crlf, 2, &tail,
	    err, errlen) == -1)
		goto done;

	for (i = 0; i < nrsa; i++) {
		if ((fields[hsel[i]] = dkimsign_rsa_field(h[i], k[i], err,
		    errlen)) == NULL)
			goto done;
	}
	if (nnat > 0) {
		dkimsign_body_end(bc);
		if (bc->sink.failed ||
		    EVP_DigestFinal_ex(bodymd, bhash, &bhlen) != 1) {
			snprintf(err, errlen, "body hash: %s",
			    tls_errstr(ebuf, sizeof(ebuf)));
			goto done;
		}
		EVP_EncodeBlock((u_char *)bh, bhash, (int)bhlen);
		now = how != NULL && how->t != 0 ? how->t : time(NULL);
		for (i = 0; i < nsel; i++) {
			if (viaodkim[i])
				continue;
			fields[i] = dkimsign_nat_sign(&ds->keys[sel[i]], hdrmd,
			    bh, hl.s, now, err, errlen);
			if (fields[i] == NULL)
				goto done;
		}
	}
	/* In configuration order, whoever made them. */
	for (i = 0; i < nsel; i++)
		dkimsign_str_adds(&res, fields[i]);
	*out = res.s;
	res.s = NULL;
	r = 1;
done:
	for (i = 0; i < nrsa; i++)
		if (h[i] != NULL)
			dkim_free(h[i]);
	if (fields != NULL) {
		for (i = 0; i < nsel; i++)
			free(fields[i]);
	}
	free(fields);
	free(viaodkim);
	if (fixedlib != NULL)
		dkim_close(fixedlib);
	free(h);
	free(k);
	free(hsel);
	free(sel);
	free(f);
	free(bc);
	EVP_MD_CTX_free(hdrmd);
	EVP_MD_CTX_free(bodymd);
	free(chunk);
	free(hl.s);
	free(res.s);
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
	return (dkimsign_sign(ds, &src, NULL, NULL, out, err, errlen));
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
	return (dkimsign_sign(ds, &src, NULL, NULL, out, err, errlen));
}

int
dkimsign_sign_buf_at(struct dkimsign *ds, const char *msg, size_t len,
    time_t t, bool odkim, char **out, char *err, size_t errlen)
{
	struct dkimsign_src	src;
	struct dkimsign_how	how;

	memset(&src, 0, sizeof(src));
	src.fd = -1;
	src.buf = msg;
	src.len = len;
	memset(&how, 0, sizeof(how));
	how.t = t;
	how.odkim = odkim;
	return (dkimsign_sign(ds, &src, NULL, &how, out, err, errlen));
}

bool
dkimsign_key_native(const struct dkimsign *ds, size_t i)
{
	return (ds != NULL && i < ds->nkeys && !ds->keys[i].odkim);
}
