/*
 * auth.c: SMTP AUTH support (SPEC sections 2 and 3, RFC 4616, RFC 4954).
 *
 * The users file becomes an immutable struct auth_db sorted by name, so a
 * lookup is a binary search and a reload builds a new db beside the old one.
 * SASL decoding is strict and bounded: base64 per RFC 4648 with no
 * whitespace and canonical padding, at most SMTP_AUTH_LINE_MAX octets in,
 * decoded into a stack buffer that is wiped before return.  PLAIN never
 * lets a user act as another (authzid must be empty or equal authcid).
 *
 * Password checks copy what they need out of the db (struct auth_check) so
 * that the slow crypt(3) call can run on a worker thread while the loop
 * swaps the db.  Unknown users are checked against a real hash of the file
 * and then refused, so they cost the same time and get the same answer as
 * a wrong password (SECURITY-CASES IN-56).  Passwords are wiped with
 * explicit_bzero and never logged.
 */
#include "compat.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth.h"
#include "log.h"
#include "util.h"

/* Bounds on the users file: operator input, but still bounded. */
#define AUTH_FILE_MAX		(16 * 1024 * 1024)
#define AUTH_LINE_MAX		8192
/* A decoded SASL response never exceeds this (RFC 4954 line limit). */
#define AUTH_DECODED_MAX	(SMTP_AUTH_LINE_MAX / 4 * 3)

struct auth_user {
	char		 *name;		/* owned */
	char		 *hash;		/* owned */
	char		**domains;	/* owned, lower case; NULL: any */
	size_t		  ndomains;
	int		  line;
};

struct auth_db {
	struct auth_user	*users;	/* owned, sorted by name */
	size_t			 nusers;
	/* Hash used for unknown users: the first user's, or a constant. */
	const char		*dummy;	/* borrowed */
};

struct auth_check {
	char	hash[CRYPT_OUTPUT_SIZE];
	char	pass[AUTH_PASS_MAX];
	bool	known;		/* false: run the hash, then refuse */
	bool	ok;
};

/*
 * Used as the dummy when the file has no users at all: a SHA-512 hash of a
 * string nobody types.  The answer is "no" regardless.
 */
static const char auth_empty_dummy[] = "$6$postern.dummy.1$"
    "9S1lcxvRI/90mjxTsmjyQJzbGoWLrlhABT7yNhtjZek0Sz8vwBzF3blbdV2VWLgJio3ADj"
    "uwaoXnzy7tbyrYA.";

/* Hash prefixes we accept: modern, salted, slow (crypt(5)). */
static const char *const auth_hash_prefixes[] = {
	"$y$", "$gy$", "$7$", "$2b$", "$2y$", "$2a$", "$6$", "$5$"
};

/* Overwrite a secret so that the compiler cannot drop the store. */
static void
auth_wipe(void *p, size_t len)
{
#ifdef HAVE_EXPLICIT_BZERO
	explicit_bzero(p, len);
#else
	volatile unsigned char	*v = p;

	while (len-- > 0)
		*v++ = 0;
#endif
}

/* Compare two strings in time that depends only on their lengths. */
static bool
auth_ct_equal(const char *a, const char *b)
{
	size_t		 la = strlen(a), lb = strlen(b), i;
	unsigned char	 diff = 0;

	if (la != lb)
		return (false);
	for (i = 0; i < la; i++)
		diff |= (unsigned char)a[i] ^ (unsigned char)b[i];
	return (diff == 0);
}

/* ---------------------------------------------------------------- */
/* Users file */

static void
auth_user_clear(struct auth_user *u)
{
	size_t	i;

	free(u->name);
	free(u->hash);
	for (i = 0; i < u->ndomains; i++)
		free(u->domains[i]);
	free(u->domains);
	memset(u, 0, sizeof(*u));
}

/* A complete crypt(3) hash of an accepted algorithm. */
static bool
auth_hash_is_valid(const char *h)
{
	const char	*last;
	size_t		 i;
	bool		 known = false;

	if (strlen(h) >= CRYPT_OUTPUT_SIZE)
		return (false);
	for (i = 0; i < nitems(auth_hash_prefixes); i++)
		if (strncmp(h, auth_hash_prefixes[i],
		    strlen(auth_hash_prefixes[i])) == 0)
			known = true;
	if (!known)
		return (false);
	if (strspn(h, "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz$=") != strlen(h))
		return (false);
	/* A setting alone ("$6$salt$") is not a hash: want the digest. */
	if ((last = strrchr(h, '$')) == NULL || strlen(last + 1) < 22)
		return (false);
#ifdef CRYPT_CHECKSALT_AVAILABLE
	/*
	 * Debian's libxcrypt calls $5$ legacy; the prefix list above already
	 * refuses the weak ones (DES, $1$).
	 */
	switch (crypt_checksalt(h)) {
	case CRYPT_SALT_OK:
	case CRYPT_SALT_METHOD_LEGACY:
		break;
	default:
		return (false);
	}
#endif
	return (true);
}

/* A host name: LDH labels of 1..63, 1..253 octets, no trailing dot. */
static bool
auth_domain_is_valid(const char *d)
{
	size_t	len = strlen(d), label = 0, i;

	if (len == 0 || len > 253)
		return (false);
	for (i = 0; i < len; i++) {
		unsigned char	c = d[i];

		if (c == '.') {
			if (label == 0 || d[i - 1] == '-')
				return (false);
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-'))
			return (false);
		if (c == '-' && label == 0)
			return (false);
		if (++label > SMTP_LABEL_MAX)
			return (false);
	}
	return (label != 0 && d[len - 1] != '-');
}

/*
 * Parse "a, b,c" into u->domains.  Spaces around a comma are tolerated;
 * an empty element is not.  On error, msg gets the reason.
 */
static int
auth_parse_domains(struct auth_user *u, char *list, char *msg, size_t msglen)
{
	char	*p, *d, *end;
	char	 esc[128];

	if (*list == '\0') {
		snprintf(msg, msglen, "empty domain list after second ':'");
		return (-1);
	}
	for (p = list; p != NULL; ) {
		d = strsep(&p, ",");
		d += strspn(d, " \t");
		end = d + strlen(d);
		while (end > d && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (!auth_domain_is_valid(d)) {
			snprintf(msg, msglen, "invalid domain \"%s\"",
			    util_escape(esc, sizeof(esc), d, strlen(d)));
			return (-1);
		}
		u->domains = xreallocarray(u->domains, u->ndomains + 1,
		    sizeof(*u->domains));
		u->domains[u->ndomains] = xstrdup(d);
		util_lowercase(u->domains[u->ndomains]);
		u->ndomains++;
	}
	return (0);
}

/*
 * Parse one non-comment line "name:hash[:domains]" into u.  line is
 * modified.  -1 with msg on error.
 */
static int
auth_parse_line(struct auth_user *u, char *line, char *msg, size_t msglen)
{
	char	*name, *hash, *domains;
	size_t	 i;

	name = line;
	if ((hash = strchr(line, ':')) == NULL) {
		snprintf(msg, msglen, "missing ':' after the user name "
		    "(want name:crypt-hash[:domains])");
		return (-1);
	}
	*hash++ = '\0';
	if ((domains = strchr(hash, ':')) != NULL)
		*domains++ = '\0';

	if (*name == '\0') {
		snprintf(msg, msglen, "empty user name");
		return (-1);
	}
	for (i = 0; name[i] != '\0'; i++) {
		if (name[i] <= ' ' || name[i] > '~') {
			snprintf(msg, msglen, "user name contains a space, "
			    "control or non-ASCII character");
			return (-1);
		}
	}
	if (i >= AUTH_USER_MAX) {
		snprintf(msg, msglen, "user name longer than %d characters",
		    AUTH_USER_MAX - 1);
		return (-1);
	}
	if (!auth_hash_is_valid(hash)) {
		snprintf(msg, msglen, "user %s: not a crypt(3) hash of a "
		    "supported kind ($y$, $gy$, $7$, $2b$, $6$, $5$; make one "
		    "with posternd --hash-password)", name);
		return (-1);
	}
	u->name = xstrdup(name);
	u->hash = xstrdup(hash);
	if (domains != NULL &&
	    auth_parse_domains(u, domains, msg, msglen) == -1) {
		auth_user_clear(u);
		return (-1);
	}
	return (0);
}

static int
auth_user_cmp(const void *a, const void *b)
{
	const struct auth_user	*ua = a, *ub = b;
	int			 c;

	if ((c = strcmp(ua->name, ub->name)) != 0)
		return (c);
	return (ua->line - ub->line);
}

/* Open the users file and refuse modes that would leak or let others edit. */
static FILE *
auth_db_open(const char *path, char *err, size_t errlen)
{
	struct stat	 st;
	FILE		*f;
	int		 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return (NULL);
	}
	if (fstat(fd, &st) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto fail;
	}
	if ((st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
		snprintf(err, errlen, "%s: readable or writable by others "
		    "(mode %04o); chmod 0640 or 0600", path,
		    (unsigned int)(st.st_mode & 07777));
		goto fail;
	}
	if (st.st_size > AUTH_FILE_MAX) {
		snprintf(err, errlen, "%s: larger than %d bytes", path,
		    AUTH_FILE_MAX);
		goto fail;
	}
	if ((f = fdopen(fd, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	return (f);
fail:
	close(fd);
	return (NULL);
}

/* Load the users file; see auth.h. */
struct auth_db *
auth_db_load(const char *path, char *err, size_t errlen)
{
	struct auth_db	*db;
	struct auth_user u;
	FILE		*f;
	char		*line = NULL, *p, msg[512];
	size_t		 cap = 0, i;
	ssize_t		 n;
	int		 lineno = 0, errline = 0, dupline = 0;

	if ((f = auth_db_open(path, err, errlen)) == NULL)
		return (NULL);
	db = xcalloc(1, sizeof(*db));
	msg[0] = '\0';
	while ((n = getline(&line, &cap, f)) != -1) {
		lineno++;
		if (n > AUTH_LINE_MAX) {
			snprintf(msg, sizeof(msg), "line longer than %d bytes",
			    AUTH_LINE_MAX);
			errline = lineno;
			break;
		}
		if (strlen(line) != (size_t)n) {
			snprintf(msg, sizeof(msg), "NUL byte in line");
			errline = lineno;
			break;
		}
		/* Trailing blanks (and a CR from a CRLF file) are noise. */
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' ||
		    line[n - 1] == ' ' || line[n - 1] == '\t'))
			line[--n] = '\0';
		p = line + strspn(line, " \t");
		if (*p == '\0' || *p == '#')
			continue;
		memset(&u, 0, sizeof(u));
		if (auth_parse_line(&u, line, msg, sizeof(msg)) == -1) {
			errline = lineno;
			break;
		}
		u.line = lineno;
		db->users = xreallocarray(db->users, db->nusers + 1,
		    sizeof(*db->users));
		db->users[db->nusers++] = u;
	}
	if (errline == 0 && ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		fclose(f);
		free(line);
		auth_db_free(db);
		return (NULL);
	}
	fclose(f);
	if (line != NULL)
		auth_wipe(line, cap);
	free(line);

	/*
	 * The dummy is the first user's hash in file order; the string stays
	 * where it is when qsort moves the structs.
	 */
	db->dummy = db->nusers > 0 ? db->users[0].hash : auth_empty_dummy;
	if (db->nusers > 0)
		qsort(db->users, db->nusers, sizeof(*db->users),
		    auth_user_cmp);
	for (i = 1; i < db->nusers; i++) {
		/* Equal names sort by line: users[i - 1] came first. */
		if (strcmp(db->users[i].name, db->users[i - 1].name) != 0)
			continue;
		if (dupline == 0 || db->users[i].line < dupline) {
			dupline = db->users[i].line;
			snprintf(msg, sizeof(msg), "duplicate user %s (first "
			    "on line %d)", db->users[i].name,
			    db->users[i - 1].line);
		}
	}
	/* Every duplicate precedes a syntax error: report the earliest. */
	if (dupline != 0)
		errline = dupline;
	if (errline != 0) {
		snprintf(err, errlen, "%s:%d: %s", path, errline, msg);
		auth_db_free(db);
		return (NULL);
	}
	return (db);
}

/* Free a db; accepts NULL. */
void
auth_db_free(struct auth_db *db)
{
	size_t	i;

	if (db == NULL)
		return;
	for (i = 0; i < db->nusers; i++)
		auth_user_clear(&db->users[i]);
	free(db->users);
	free(db);
}

size_t
auth_db_count(const struct auth_db *db)
{
	return (db != NULL ? db->nusers : 0);
}

static int
auth_user_key_cmp(const void *key, const void *elem)
{
	const struct auth_user	*u = elem;

	return (strcmp(key, u->name));
}

static const struct auth_user *
auth_db_find(const struct auth_db *db, const char *user)
{
	if (db == NULL || user == NULL || db->nusers == 0)
		return (NULL);
	return (bsearch(user, db->users, db->nusers, sizeof(*db->users),
	    auth_user_key_cmp));
}

bool
auth_db_has_user(const struct auth_db *db, const char *user)
{
	return (auth_db_find(db, user) != NULL);
}

/*
 * Sender-domain policy; see auth.h.  An empty or NULL domain (the null
 * reverse-path) is not in any list, so a restricted user gets false and the
 * caller decides what <> means for it.
 */
bool
auth_db_user_may_send_from(const struct auth_db *db, const char *user,
    const char *domain)
{
	const struct auth_user	*u;
	size_t			 i;

	if ((u = auth_db_find(db, user)) == NULL)
		return (false);
	if (u->ndomains == 0)
		return (true);
	if (domain == NULL)
		return (false);
	for (i = 0; i < u->ndomains; i++)
		if (strcasecmp(u->domains[i], domain) == 0)
			return (true);
	return (false);
}

bool
auth_db_user_is_restricted(const struct auth_db *db, const char *user)
{
	const struct auth_user	*u;

	return ((u = auth_db_find(db, user)) != NULL && u->ndomains > 0);
}

/* ---------------------------------------------------------------- */
/* Base64 and SASL */

static const char auth_b64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Value of a base64 character, or -1. */
static int
auth_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return (c - 'A');
	if (c >= 'a' && c <= 'z')
		return (c - 'a' + 26);
	if (c >= '0' && c <= '9')
		return (c - '0' + 52);
	if (c == '+')
		return (62);
	if (c == '/')
		return (63);
	return (-1);
}

/*
 * Strict RFC 4648 decoding of in[0..len) into out (at least len / 4 * 3
 * bytes).  Padding only at the end, length a multiple of 4, pad bits zero:
 * exactly one encoding per byte string, so nothing can hide in the slack.
 */
static int
auth_b64_decode(const char *in, size_t len, unsigned char *out,
    size_t *outlen)
{
	size_t		i, o = 0, pad = 0;
	uint32_t	acc;
	int		v, k;

	*outlen = 0;
	if (len % 4 != 0)
		return (-1);
	for (i = 0; i < len; i += 4) {
		acc = 0;
		for (k = 0; k < 4; k++) {
			unsigned char	c = in[i + k];

			if (c == '=' && i + 4 == len && k >= 2) {
				/* "xx==" or "xxx=", nothing after. */
				if (k == 2 && in[i + 3] != '=')
					return (-1);
				pad = 4 - k;
				acc <<= 6 * (4 - k);
				break;
			}
			if ((v = auth_b64_value(c)) == -1)
				return (-1);
			acc = (acc << 6) | (uint32_t)v;
		}
		if (pad == 2 && (acc & 0xffff) != 0)
			return (-1);
		if (pad == 1 && (acc & 0xff) != 0)
			return (-1);
		out[o++] = (acc >> 16) & 0xff;
		if (pad < 2)
			out[o++] = (acc >> 8) & 0xff;
		if (pad < 1)
			out[o++] = acc & 0xff;
	}
	*outlen = o;
	return (0);
}

/* Base64 encoding; see auth.h. */
int
auth_b64_encode(const void *src, size_t len, char *out, size_t outlen)
{
	const unsigned char	*s = src;
	size_t			 i, o = 0;
	uint32_t		 acc;

	if (len > (SIZE_MAX - 1) / 4 * 3 - 3 ||
	    outlen < (len + 2) / 3 * 4 + 1) {
		if (outlen > 0)
			out[0] = '\0';
		return (-1);
	}
	for (i = 0; i + 2 < len; i += 3) {
		acc = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		out[o++] = auth_b64_chars[(acc >> 18) & 63];
		out[o++] = auth_b64_chars[(acc >> 12) & 63];
		out[o++] = auth_b64_chars[(acc >> 6) & 63];
		out[o++] = auth_b64_chars[acc & 63];
	}
	if (i < len) {
		acc = (uint32_t)s[i] << 16;
		if (i + 1 < len)
			acc |= (uint32_t)s[i + 1] << 8;
		out[o++] = auth_b64_chars[(acc >> 18) & 63];
		out[o++] = auth_b64_chars[(acc >> 12) & 63];
		out[o++] = i + 1 < len ? auth_b64_chars[(acc >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return (0);
}

/*
 * Common front of both mechanisms: cancel, the "=" empty response, the
 * length bound and base64.  buf holds AUTH_DECODED_MAX bytes.
 */
static enum auth_decode
auth_sasl_decode(const char *b64, size_t len, unsigned char *buf, size_t *n)
{
	*n = 0;
	if (b64 == NULL)
		return (AUTH_DECODE_MALFORMED);
	if (len == 1 && b64[0] == '*')
		return (AUTH_DECODE_CANCELLED);
	if (len == 1 && b64[0] == '=')
		return (AUTH_DECODE_OK);
	if (len > SMTP_AUTH_LINE_MAX)
		return (AUTH_DECODE_MALFORMED);
	if (auth_b64_decode(b64, len, buf, n) == -1)
		return (AUTH_DECODE_BAD_BASE64);
	return (AUTH_DECODE_OK);
}

/* True when field[0..len) has no NUL, CR or LF. */
static bool
auth_field_is_clean(const unsigned char *field, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++)
		if (field[i] == '\0' || field[i] == '\r' || field[i] == '\n')
			return (false);
	return (true);
}

/* RFC 4616 PLAIN; see auth.h. */
enum auth_decode
auth_sasl_plain_decode(const char *b64, size_t len, char *user,
    size_t userlen, char *pass, size_t passlen)
{
	unsigned char		 buf[AUTH_DECODED_MAX];
	const unsigned char	*authz, *authc, *pw, *nul1, *nul2;
	size_t			 n, zlen, clen, plen;
	enum auth_decode	 rc;

	if (userlen > 0)
		user[0] = '\0';
	if (passlen > 0)
		pass[0] = '\0';
	if ((rc = auth_sasl_decode(b64, len, buf, &n)) != AUTH_DECODE_OK)
		goto out;

	rc = AUTH_DECODE_MALFORMED;
	/* Exactly two NULs: a third would let a parser cut the password. */
	if ((nul1 = memchr(buf, '\0', n)) == NULL)
		goto out;
	if ((nul2 = memchr(nul1 + 1, '\0', n - (nul1 + 1 - buf))) == NULL)
		goto out;
	if (memchr(nul2 + 1, '\0', n - (nul2 + 1 - buf)) != NULL)
		goto out;
	authz = buf;
	zlen = nul1 - buf;
	authc = nul1 + 1;
	clen = nul2 - authc;
	pw = nul2 + 1;
	plen = n - (pw - buf);
	if (clen == 0 || plen == 0)
		goto out;
	if (!auth_field_is_clean(authz, zlen) ||
	    !auth_field_is_clean(authc, clen) || !auth_field_is_clean(pw, plen))
		goto out;
	if (clen >= userlen || plen >= passlen)
		goto out;
	/* A user never acts as another one (IN-51). */
	if (zlen != 0 && (zlen != clen || memcmp(authz, authc, clen) != 0)) {
		rc = AUTH_DECODE_AUTHZID_MISMATCH;
		goto out;
	}
	memcpy(user, authc, clen);
	user[clen] = '\0';
	memcpy(pass, pw, plen);
	pass[plen] = '\0';
	rc = AUTH_DECODE_OK;
out:
	auth_wipe(buf, sizeof(buf));
	return (rc);
}

/* One AUTH LOGIN response; see auth.h. */
enum auth_decode
auth_sasl_login_decode(const char *b64, size_t len, char *out, size_t outlen)
{
	unsigned char		buf[AUTH_DECODED_MAX];
	size_t			n;
	enum auth_decode	rc;

	if (outlen > 0)
		out[0] = '\0';
	if ((rc = auth_sasl_decode(b64, len, buf, &n)) != AUTH_DECODE_OK)
		goto done;
	if (n == 0 || n >= outlen || !auth_field_is_clean(buf, n)) {
		rc = AUTH_DECODE_MALFORMED;
		goto done;
	}
	memcpy(out, buf, n);
	out[n] = '\0';
done:
	auth_wipe(buf, sizeof(buf));
	return (rc);
}

/* ---------------------------------------------------------------- */
/* Password checks and hashing */

/* Snapshot what a check needs; see auth.h. */
struct auth_check *
auth_check_new(const struct auth_db *db, const char *user, const char *pass)
{
	struct auth_check	*c;
	const struct auth_user	*u;
	const char		*hash;

	c = xcalloc(1, sizeof(*c));
	u = auth_db_find(db, user);
	hash = u != NULL ? u->hash :
	    (db != NULL && db->dummy != NULL ? db->dummy : auth_empty_dummy);
	strlcpy(c->hash, hash, sizeof(c->hash));
	c->known = u != NULL;
	/* An empty or over-long password still costs a hash, then fails. */
	if (pass == NULL || pass[0] == '\0' ||
	    strlcpy(c->pass, pass, sizeof(c->pass)) >= sizeof(c->pass))
		c->known = false;
	return (c);
}

/* The slow part: crypt(3) with per-call state, safe on any thread. */
void
auth_check_run(struct auth_check *c)
{
	struct crypt_data	*cd;
	const char		*out;

	/* About 32 KiB: on the heap, not on a worker's stack. */
	cd = xcalloc(1, sizeof(*cd));
	out = crypt_rn(c->pass, c->hash, cd, sizeof(*cd));
	c->ok = out != NULL && out[0] != '*' && auth_ct_equal(out, c->hash) &&
	    c->known;
	auth_wipe(cd, sizeof(*cd));
	free(cd);
	auth_wipe(c->pass, sizeof(c->pass));
}

bool
auth_check_ok(const struct auth_check *c)
{
	return (c->ok);
}

void
auth_check_free(struct auth_check *c)
{
	if (c == NULL)
		return;
	auth_wipe(c, sizeof(*c));
	free(c);
}

/* A users-file hash for pw; see auth.h. */
char *
auth_hash_password(const char *pw, char *err, size_t errlen)
{
	static const char *const prefixes[] = { "$y$", "$6$" };
	struct crypt_data	*cd;
	char			*setting, *hash = NULL;
	const char		*out;
	size_t			 i, len;

	if (pw == NULL || (len = strlen(pw)) == 0) {
		snprintf(err, errlen, "empty password");
		return (NULL);
	}
	if (len >= AUTH_PASS_MAX) {
		snprintf(err, errlen, "password longer than %d bytes",
		    AUTH_PASS_MAX - 1);
		return (NULL);
	}
	if (strpbrk(pw, "\r\n") != NULL) {
		snprintf(err, errlen, "password contains CR or LF");
		return (NULL);
	}
	cd = xcalloc(1, sizeof(*cd));
	for (i = 0; i < nitems(prefixes) && hash == NULL; i++) {
		/* Count 0, no entropy: default cost, random salt. */
		if ((setting = crypt_gensalt_ra(prefixes[i], 0, NULL, 0)) ==
		    NULL)
			continue;
		out = crypt_rn(pw, setting, cd, sizeof(*cd));
		if (out != NULL && out[0] != '*')
			hash = xstrdup(out);
		free(setting);
	}
	auth_wipe(cd, sizeof(*cd));
	free(cd);
	if (hash == NULL)
		snprintf(err, errlen, "crypt: no yescrypt or SHA-512 support: "
		    "%s", strerror(errno));
	return (hash);
}
