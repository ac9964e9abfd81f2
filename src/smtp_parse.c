/*
 * smtp_parse.c: pure parsing of SMTP commands, paths, ESMTP parameters and
 * upstream replies (SPEC section 3; SECURITY-CASES IN-19..IN-41, OUT-07,
 * OUT-08).
 *
 * Invariants.  Every input is a (pointer, length) pair and is never read
 * past its length, so an embedded NUL can never cut a string short: NUL is
 * rejected before anything else looks at the bytes (IN-22).  Every output
 * buffer is bounded and always NUL-terminated.  A parsed domain never
 * contains '@'; a parsed field never contains CR, LF or NUL.  Paths keep
 * the local part byte-identical to the wire (quotes included) so nothing
 * downstream dequotes and re-splits it (IN-34, IN-35).  Source routes are
 * parsed and dropped (IN-33).
 *
 * Ownership: nothing is allocated.  struct smtp_cmd and the AUTH initial
 * response borrow from the caller's line.
 */
#include "compat.h"

#include <arpa/inet.h>

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtp_parse.h"

#define SMTP_PARSE_R_NUL	"500 5.5.2 Error: NUL in command"
#define SMTP_PARSE_R_CRLF	"500 5.5.2 Error: bare <CR> or <LF> received"
#define SMTP_PARSE_R_UTF8	"500 5.5.2 Error: bad UTF-8 syntax"
#define SMTP_PARSE_R_TOOLONG	"500 5.5.2 Error: line too long"
#define SMTP_PARSE_R_UNKNOWN	"500 5.5.2 Error: command not recognized"
#define SMTP_PARSE_R_MAILSYN	"501 5.5.4 Syntax: MAIL FROM:<address>"
#define SMTP_PARSE_R_RCPTSYN	"501 5.5.4 Syntax: RCPT TO:<address>"
#define SMTP_PARSE_R_BADFROM	"501 5.1.7 Bad sender address syntax"
#define SMTP_PARSE_R_BADTO	"501 5.1.3 Bad recipient address syntax"
#define SMTP_PARSE_R_NEEDUTF8	\
	"553 5.6.7 Must declare SMTPUTF8 to send unicode address"
#define SMTP_PARSE_R_SIZE	"501 5.5.4 Bad SIZE syntax"
#define SMTP_PARSE_R_BODY	"501 5.5.4 Bad BODY syntax"
#define SMTP_PARSE_R_SMTPUTF8	"501 5.5.4 Bad SMTPUTF8 syntax"
#define SMTP_PARSE_R_AUTHPARAM	"501 5.5.4 Bad AUTH syntax"
#define SMTP_PARSE_R_HELO	"501 5.5.2 Syntax: EHLO hostname"
#define SMTP_PARSE_R_AUTH	\
	"501 5.5.4 Syntax: AUTH mechanism [initial-response]"
#define SMTP_PARSE_R_AUTHDECODE	"501 5.5.2 Error: cannot decode response"

/* RFC 4422 3.1: a SASL mechanism name is 1 to 20 characters. */
#define SMTP_PARSE_MECH_MAX	20
/* Longest keyword echoed back in "555 5.5.4 Unsupported option: X". */
#define SMTP_PARSE_OPT_ECHO	40

static const char *const smtp_parse_verbs[SMTP_VERB_COUNT] = {
	[SMTP_VERB_UNKNOWN] = "UNKNOWN",
	[SMTP_VERB_HELO] = "HELO",
	[SMTP_VERB_EHLO] = "EHLO",
	[SMTP_VERB_MAIL] = "MAIL",
	[SMTP_VERB_RCPT] = "RCPT",
	[SMTP_VERB_DATA] = "DATA",
	[SMTP_VERB_RSET] = "RSET",
	[SMTP_VERB_NOOP] = "NOOP",
	[SMTP_VERB_QUIT] = "QUIT",
	[SMTP_VERB_VRFY] = "VRFY",
	[SMTP_VERB_EXPN] = "EXPN",
	[SMTP_VERB_HELP] = "HELP",
	[SMTP_VERB_STARTTLS] = "STARTTLS",
	[SMTP_VERB_AUTH] = "AUTH",
	[SMTP_VERB_BDAT] = "BDAT",
};
_Static_assert(nitems(smtp_parse_verbs) == SMTP_VERB_COUNT,
    "smtp_parse_verbs out of step with enum smtp_verb");

/* The one reply that carries peer text (a validated esmtp-keyword). */
static _Thread_local char smtp_parse_optbuf[64];

static bool
smtp_parse_is_alpha(unsigned char c)
{
	return ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'));
}

static bool
smtp_parse_is_digit(unsigned char c)
{
	return (c >= '0' && c <= '9');
}

static bool
smtp_parse_is_alnum(unsigned char c)
{
	return (smtp_parse_is_alpha(c) || smtp_parse_is_digit(c));
}

static unsigned char
smtp_parse_upper(unsigned char c)
{
	return (c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
}

/* RFC 5322 atext, plus UTF8-non-ascii (RFC 6531); UTF-8 validity is checked
 * over the whole line before any path is parsed. */
static bool
smtp_parse_is_atext(unsigned char c)
{
	if (smtp_parse_is_alnum(c) || c >= 0x80)
		return (true);
	return (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Case-insensitive comparison of a counted string with a C literal. */
static bool
smtp_parse_eq(const char *s, size_t len, const char *lit)
{
	return (strlen(lit) == len && strncasecmp(s, lit, len) == 0);
}

bool
smtp_parse_is_utf8(const char *buf, size_t len)
{
	const unsigned char	*s = (const unsigned char *)buf;
	size_t			 i = 0, n, k;
	unsigned char		 lo, hi;

	while (i < len) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		/* Table 3-7 of the Unicode standard: the second byte's
		 * range excludes overlongs (E0, F0), surrogates (ED) and
		 * code points over U+10FFFF (F4). */
		lo = 0x80;
		hi = 0xbf;
		if (s[i] >= 0xc2 && s[i] <= 0xdf)
			n = 1;
		else if (s[i] >= 0xe0 && s[i] <= 0xef) {
			n = 2;
			if (s[i] == 0xe0)
				lo = 0xa0;
			else if (s[i] == 0xed)
				hi = 0x9f;
		} else if (s[i] >= 0xf0 && s[i] <= 0xf4) {
			n = 3;
			if (s[i] == 0xf0)
				lo = 0x90;
			else if (s[i] == 0xf4)
				hi = 0x8f;
		} else
			return (false);
		if (len - i <= n)
			return (false);
		if (s[i + 1] < lo || s[i + 1] > hi)
			return (false);
		for (k = 2; k <= n; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xbf)
				return (false);
		i += n + 1;
	}
	return (true);
}

/* The checks every command line and argument string gets first. */
static int
smtp_parse_check_bytes(const char *s, size_t len, const char **reply)
{
	if (memchr(s, '\0', len) != NULL) {
		*reply = SMTP_PARSE_R_NUL;
		return (-1);
	}
	if (memchr(s, '\r', len) != NULL || memchr(s, '\n', len) != NULL) {
		*reply = SMTP_PARSE_R_CRLF;
		return (-1);
	}
	if (!smtp_parse_is_utf8(s, len)) {
		*reply = SMTP_PARSE_R_UTF8;
		return (-1);
	}
	return (0);
}

const char *
smtp_parse_verb_name(enum smtp_verb v)
{
	if ((unsigned)v >= SMTP_VERB_COUNT)
		return ("UNKNOWN");
	return (smtp_parse_verbs[v]);
}

size_t
smtp_parse_line_max(enum smtp_verb v)
{
	switch (v) {
	case SMTP_VERB_MAIL:
	case SMTP_VERB_RCPT:
		return (SMTP_MAIL_LINE_MAX);
	case SMTP_VERB_AUTH:
		return (SMTP_AUTH_LINE_MAX);
	default:
		return (SMTP_CMD_LINE_MAX);
	}
}

int
smtp_parse_command(const char *line, size_t len, struct smtp_cmd *cmd,
    const char **reply)
{
	size_t	 vlen;
	int	 v;

	cmd->verb = SMTP_VERB_UNKNOWN;
	cmd->args = "";
	cmd->argslen = 0;

	for (vlen = 0; vlen < len && line[vlen] != ' '; vlen++)
		;
	for (v = SMTP_VERB_UNKNOWN + 1; v < SMTP_VERB_COUNT; v++)
		if (smtp_parse_eq(line, vlen, smtp_parse_verbs[v]))
			break;
	if (v < SMTP_VERB_COUNT)
		cmd->verb = v;

	if (smtp_parse_check_bytes(line, len, reply) == -1)
		return (-1);
	/* Checked before the verb so that an overlong unknown command is
	 * "too long", as the reading loop would have said. */
	if (len + 2 > smtp_parse_line_max(cmd->verb)) {
		*reply = SMTP_PARSE_R_TOOLONG;
		return (-1);
	}
	if (cmd->verb == SMTP_VERB_UNKNOWN) {
		*reply = SMTP_PARSE_R_UNKNOWN;
		return (-1);
	}
	if (vlen < len) {
		cmd->args = line + vlen + 1;
		cmd->argslen = len - vlen - 1;
	}
	return (0);
}

/*
 * A Domain (RFC 5321 4.1.2): LDH labels, no '-' at either end of a label,
 * labels of at most 63 octets and at most 255 in all, no empty label and
 * no trailing dot.  Non-ASCII octets count as letters (U-labels, RFC 6531);
 * whether they are allowed is decided by the caller.
 */
static int
smtp_parse_domain(const char *d, size_t len)
{
	size_t		 i, label = 0;
	unsigned char	 c;

	if (len == 0 || len > SMTP_DOMAIN_MAX)
		return (-1);
	for (i = 0; i < len; i++) {
		c = (unsigned char)d[i];
		if (c == '.') {
			if (label == 0 || d[i - 1] == '-')
				return (-1);
			label = 0;
			continue;
		}
		if (c == '-') {
			if (label == 0)
				return (-1);
		} else if (!smtp_parse_is_alnum(c) && c < 0x80)
			return (-1);
		if (++label > SMTP_LABEL_MAX)
			return (-1);
	}
	if (label == 0 || d[len - 1] == '-')
		return (-1);
	return (0);
}

/*
 * An address literal "[1.2.3.4]" or "[IPv6:...]", brackets included in
 * (d, len).  General (tagged) literals are refused: we could never route
 * to them.
 */
static int
smtp_parse_literal(const char *d, size_t len)
{
	char		 buf[INET6_ADDRSTRLEN + 8];
	unsigned char	 a[sizeof(struct in6_addr)];
	const char	*in;
	size_t		 inlen;
	int		 af = AF_INET;

	if (len < 3 || d[0] != '[' || d[len - 1] != ']')
		return (-1);
	in = d + 1;
	inlen = len - 2;
	if (inlen > 5 && strncasecmp(in, "IPv6:", 5) == 0) {
		af = AF_INET6;
		in += 5;
		inlen -= 5;
	}
	if (inlen >= sizeof(buf))
		return (-1);
	memcpy(buf, in, inlen);
	buf[inlen] = '\0';
	if (inet_pton(af, buf, a) != 1)
		return (-1);
	return (0);
}

/*
 * The inside of a path, between '<' and '>'.  Returns 0 with a filled, or
 * -1 for a syntax error.  Non-ASCII is accepted here and reported through
 * a->has_utf8; the SMTPUTF8 decision is the caller's.
 */
static int
smtp_parse_path(const char *p, size_t len, bool is_rcpt, struct smtp_addr *a)
{
	size_t		 i = 0, start, llen, dlen, k;
	unsigned char	 c;
	bool		 atom_start;
	const char	*d;

	memset(a, 0, sizeof(*a));
	if (len == 0) {
		if (is_rcpt)
			return (-1);
		a->is_null = true;
		return (0);
	}
	if (is_rcpt && smtp_parse_eq(p, len, "postmaster")) {
		memcpy(a->local, p, len);
		a->local[len] = '\0';
		a->is_postmaster = true;
		return (0);
	}

	/* A-d-l = At-domain *( "," At-domain ) ":", parsed and dropped. */
	if (p[0] == '@') {
		for (;;) {
			start = ++i;
			while (i < len && p[i] != ',' && p[i] != ':')
				i++;
			if (i == len || smtp_parse_domain(p + start,
			    i - start) == -1)
				return (-1);
			if (p[i++] == ':')
				break;
			if (i == len || p[i] != '@')
				return (-1);
		}
	}

	start = i;
	if (i < len && p[i] == '"') {
		/* Quoted-string: qtextSMTP, quoted-pairSMTP, UTF-8. */
		for (i++;; i++) {
			if (i == len)
				return (-1);
			c = (unsigned char)p[i];
			if (c == '"')
				break;
			if (c == '\\') {
				if (++i == len)
					return (-1);
				c = (unsigned char)p[i];
				if (c < 32 || c > 126)
					return (-1);
			} else if (c < 32 || c == 127)
				return (-1);
		}
		i++;
	} else {
		/* Dot-string = Atom *("." Atom) */
		atom_start = true;
		for (; i < len && p[i] != '@'; i++) {
			c = (unsigned char)p[i];
			if (c == '.') {
				if (atom_start)
					return (-1);
				atom_start = true;
			} else if (smtp_parse_is_atext(c))
				atom_start = false;
			else
				return (-1);
		}
		if (atom_start)
			return (-1);
	}
	llen = i - start;
	if (i == len || p[i] != '@' || llen > SMTP_PATH_MAX)
		return (-1);
	d = p + i + 1;
	dlen = len - i - 1;
	if (dlen == 0 || dlen > SMTP_DOMAIN_MAX)
		return (-1);
	if (d[0] == '[') {
		if (smtp_parse_literal(d, dlen) == -1)
			return (-1);
		a->domain_is_literal = true;
	} else if (smtp_parse_domain(d, dlen) == -1)
		return (-1);

	memcpy(a->local, p + start, llen);
	a->local[llen] = '\0';
	memcpy(a->domain, d, dlen);
	a->domain[dlen] = '\0';
	for (k = 0; k < llen; k++)
		if ((unsigned char)a->local[k] >= 0x80)
			a->has_utf8 = true;
	for (k = 0; k < dlen; k++)
		if ((unsigned char)a->domain[k] >= 0x80)
			a->has_utf8 = true;
	return (0);
}

int
smtp_parse_addr_format(const struct smtp_addr *a, char *buf, size_t len)
{
	int	 n;

	if (len == 0)
		return (-1);
	if (a->is_null)
		n = snprintf(buf, len, "%s", "");
	else if (a->is_postmaster)
		n = snprintf(buf, len, "%s", a->local);
	else
		n = snprintf(buf, len, "%s@%s", a->local, a->domain);
	if (n < 0 || (size_t)n >= len) {
		buf[0] = '\0';
		return (-1);
	}
	return (0);
}

/*
 * "FROM:" / "TO:" keyword, one optional SP, then "<...>".  On success
 * *pos is just past '>' and (*path, *pathlen) is the inside.  A '>' inside
 * a quoted local part does not end the path.
 */
static int
smtp_parse_path_span(const char *args, size_t len, const char *kw,
    size_t *pos, const char **path, size_t *pathlen)
{
	size_t	 i, kwlen = strlen(kw), start;
	bool	 quoted = false;

	if (len < kwlen || strncasecmp(args, kw, kwlen) != 0)
		return (-1);
	i = kwlen;
	if (i < len && args[i] == ' ')
		i++;
	if (i == len || args[i] != '<')
		return (-1);
	start = ++i;
	for (; i < len; i++) {
		if (quoted && args[i] == '\\') {
			if (++i == len)
				return (-1);
			continue;
		}
		if (args[i] == '"')
			quoted = !quoted;
		else if (!quoted && args[i] == '>')
			break;
	}
	if (i == len)
		return (-1);
	*path = args + start;
	*pathlen = i - start;
	*pos = i + 1;
	return (0);
}

/* One ESMTP parameter: keyword [ "=" value ]. */
struct smtp_parse_param {
	const char	*key;
	size_t		 keylen;
	const char	*val;		/* NULL when there is no "=" */
	size_t		 vallen;
};

/*
 * The next parameter after *pos.  Returns 1 with p filled, 0 at the end,
 * -1 on a syntax error (no SP before it, bad keyword).
 */
static int
smtp_parse_next_param(const char *args, size_t len, size_t *pos,
    struct smtp_parse_param *p)
{
	size_t	 i = *pos, k;

	if (i == len)
		return (0);
	if (args[i] != ' ')
		return (-1);
	while (i < len && args[i] == ' ')
		i++;
	if (i == len)
		return (0);
	p->key = args + i;
	while (i < len && args[i] != ' ' && args[i] != '=')
		i++;
	p->keylen = (size_t)(args + i - p->key);
	/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
	if (p->keylen == 0 || !smtp_parse_is_alnum(p->key[0]))
		return (-1);
	for (k = 1; k < p->keylen; k++)
		if (!smtp_parse_is_alnum(p->key[k]) && p->key[k] != '-')
			return (-1);
	p->val = NULL;
	p->vallen = 0;
	if (i < len && args[i] == '=') {
		p->val = args + ++i;
		while (i < len && args[i] != ' ')
			i++;
		p->vallen = (size_t)(args + i - p->val);
	}
	*pos = i;
	return (1);
}

static const char *
smtp_parse_unsupported(const struct smtp_parse_param *p)
{
	int	 n;

	n = p->keylen > SMTP_PARSE_OPT_ECHO ? SMTP_PARSE_OPT_ECHO :
	    (int)p->keylen;
	snprintf(smtp_parse_optbuf, sizeof(smtp_parse_optbuf),
	    "555 5.5.4 Unsupported option: %.*s", n, p->key);
	return (smtp_parse_optbuf);
}

/* SIZE=1*DIGIT; a value too large saturates rather than wraps (IN-26). */
static int
smtp_parse_size(const char *v, size_t len, uint64_t *out)
{
	uint64_t	 n = 0;
	size_t		 i;
	unsigned	 d;

	if (v == NULL || len == 0)
		return (-1);
	for (i = 0; i < len; i++) {
		if (!smtp_parse_is_digit(v[i]))
			return (-1);
		d = (unsigned)(v[i] - '0');
		if (n > (UINT64_MAX - d) / 10)
			n = UINT64_MAX;
		else if (n != UINT64_MAX)
			n = n * 10 + d;
	}
	*out = n;
	return (0);
}

static int
smtp_parse_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'A' && c <= 'F')
		return (c - 'A' + 10);
	return (-1);
}

/*
 * xtext (RFC 3461 4): xchar is "!".."~" but "+" and "=", hexchar is "+"
 * and two upper-case hex digits.  A value that decodes to a control
 * character is refused, so nothing injected survives to a log or an
 * envelope field (IN-40).
 */
static int
smtp_parse_xtext(const char *v, size_t len)
{
	size_t		 i;
	unsigned char	 c;
	int		 hi, lo;

	if (v == NULL || len == 0)
		return (-1);
	for (i = 0; i < len; i++) {
		c = (unsigned char)v[i];
		if (c == '+') {
			if (len - i < 3 ||
			    (hi = smtp_parse_hexval(v[i + 1])) == -1 ||
			    (lo = smtp_parse_hexval(v[i + 2])) == -1)
				return (-1);
			c = (unsigned char)(hi << 4 | lo);
			if (c < 32 || c == 127)
				return (-1);
			i += 2;
		} else if (c < '!' || c > '~' || c == '=')
			return (-1);
	}
	return (0);
}

int
smtp_parse_mail(const char *args, size_t len, struct smtp_mail *m,
    const char **reply)
{
	struct smtp_parse_param	 p;
	const char		*path;
	size_t			 pathlen, pos;
	int			 r;

	memset(m, 0, sizeof(*m));
	if (smtp_parse_check_bytes(args, len, reply) == -1)
		return (-1);
	if (smtp_parse_path_span(args, len, "FROM:", &pos, &path,
	    &pathlen) == -1) {
		*reply = SMTP_PARSE_R_MAILSYN;
		return (-1);
	}
	if (pathlen + 2 > SMTP_PATH_MAX ||
	    smtp_parse_path(path, pathlen, false, &m->from) == -1) {
		*reply = SMTP_PARSE_R_BADFROM;
		return (-1);
	}
	while ((r = smtp_parse_next_param(args, len, &pos, &p)) == 1) {
		if (smtp_parse_eq(p.key, p.keylen, "SIZE")) {
			if (smtp_parse_size(p.val, p.vallen, &m->size) == -1) {
				*reply = SMTP_PARSE_R_SIZE;
				return (-1);
			}
		} else if (smtp_parse_eq(p.key, p.keylen, "BODY")) {
			if (p.val != NULL &&
			    smtp_parse_eq(p.val, p.vallen, "7BIT"))
				m->body = SMTP_BODY_7BIT;
			else if (p.val != NULL &&
			    smtp_parse_eq(p.val, p.vallen, "8BITMIME"))
				m->body = SMTP_BODY_8BITMIME;
			else {
				*reply = SMTP_PARSE_R_BODY;
				return (-1);
			}
		} else if (smtp_parse_eq(p.key, p.keylen, "SMTPUTF8")) {
			if (p.val != NULL) {
				*reply = SMTP_PARSE_R_SMTPUTF8;
				return (-1);
			}
			m->smtputf8 = true;
		} else if (smtp_parse_eq(p.key, p.keylen, "AUTH")) {
			if (smtp_parse_xtext(p.val, p.vallen) == -1) {
				*reply = SMTP_PARSE_R_AUTHPARAM;
				return (-1);
			}
		} else {
			*reply = smtp_parse_unsupported(&p);
			return (-1);
		}
	}
	if (r == -1) {
		*reply = SMTP_PARSE_R_MAILSYN;
		return (-1);
	}
	if (m->from.has_utf8 && !m->smtputf8) {
		*reply = SMTP_PARSE_R_NEEDUTF8;
		return (-1);
	}
	return (0);
}

int
smtp_parse_rcpt(const char *args, size_t len, bool smtputf8,
    struct smtp_rcpt *rc, const char **reply)
{
	struct smtp_parse_param	 p;
	const char		*path;
	size_t			 pathlen, pos;
	int			 r;

	memset(rc, 0, sizeof(*rc));
	if (smtp_parse_check_bytes(args, len, reply) == -1)
		return (-1);
	if (smtp_parse_path_span(args, len, "TO:", &pos, &path,
	    &pathlen) == -1) {
		*reply = SMTP_PARSE_R_RCPTSYN;
		return (-1);
	}
	if (pathlen + 2 > SMTP_PATH_MAX ||
	    smtp_parse_path(path, pathlen, true, &rc->to) == -1) {
		*reply = SMTP_PARSE_R_BADTO;
		return (-1);
	}
	/* DSN (NOTIFY, ORCPT) is not offered: every parameter is refused. */
	if ((r = smtp_parse_next_param(args, len, &pos, &p)) == 1) {
		*reply = smtp_parse_unsupported(&p);
		return (-1);
	}
	if (r == -1) {
		*reply = SMTP_PARSE_R_RCPTSYN;
		return (-1);
	}
	if (rc->to.has_utf8 && !smtputf8) {
		*reply = SMTP_PARSE_R_NEEDUTF8;
		return (-1);
	}
	return (0);
}

int
smtp_parse_helo(const char *args, size_t len, char *out, size_t outlen,
    const char **reply)
{
	size_t		 i, s = 0, e = len;
	unsigned char	 c;

	if (outlen > 0)
		out[0] = '\0';
	if (memchr(args, '\0', len) != NULL) {
		*reply = SMTP_PARSE_R_NUL;
		return (-1);
	}
	*reply = SMTP_PARSE_R_HELO;
	while (s < e && args[s] == ' ')
		s++;
	while (e > s && args[e - 1] == ' ')
		e--;
	if (s == e || e - s > SMTP_DOMAIN_MAX || e - s >= outlen)
		return (-1);
	if (args[s] == '[') {
		/* Liberal: any dcontent (RFC 5321 4.1.3) inside brackets. */
		if (e - s < 3 || args[e - 1] != ']')
			return (-1);
		for (i = s + 1; i < e - 1; i++) {
			c = (unsigned char)args[i];
			if (c < 33 || c > 126 || c == '[' || c == ']' ||
			    c == '\\')
				return (-1);
		}
	} else {
		for (i = s; i < e; i++) {
			c = (unsigned char)args[i];
			if (!smtp_parse_is_alnum(c) && c != '-' && c != '.' &&
			    c != '_')
				return (-1);
		}
	}
	memcpy(out, args + s, e - s);
	out[e - s] = '\0';
	return (0);
}

int
smtp_parse_auth(const char *args, size_t len, char *mech, size_t mechlen,
    const char **initial, size_t *initiallen, const char **reply)
{
	size_t		 i, k;
	unsigned char	 c;

	*initial = NULL;
	*initiallen = 0;
	if (mechlen > 0)
		mech[0] = '\0';
	if (memchr(args, '\0', len) != NULL) {
		*reply = SMTP_PARSE_R_NUL;
		return (-1);
	}
	*reply = SMTP_PARSE_R_AUTH;
	for (i = 0; i < len && args[i] != ' '; i++) {
		c = (unsigned char)args[i];
		if (!smtp_parse_is_alnum(c) && c != '-' && c != '_')
			return (-1);
	}
	if (i == 0 || i > SMTP_PARSE_MECH_MAX || i >= mechlen)
		return (-1);
	for (k = 0; k < i; k++)
		mech[k] = (char)smtp_parse_upper((unsigned char)args[k]);
	mech[i] = '\0';
	if (i == len)
		return (0);
	/* One SP, then a non-empty base64 string or "=". */
	if (++i == len) {
		mech[0] = '\0';
		return (-1);
	}
	for (k = i; k < len; k++) {
		c = (unsigned char)args[k];
		if (!smtp_parse_is_alnum(c) && c != '+' && c != '/' &&
		    c != '=') {
			/* IN-53: not base64 is a decoding error, 5.5.2. */
			mech[0] = '\0';
			*reply = SMTP_PARSE_R_AUTHDECODE;
			return (-1);
		}
	}
	*initial = args + i;
	*initiallen = len - i;
	return (0);
}

void
smtp_parse_reply_init(struct smtp_reply *r)
{
	r->code = 0;
	r->text[0] = '\0';
	r->textlen = 0;
	r->nlines = 0;
	r->complete = false;
	r->truncated = false;
}

/* Append to r->text, keeping it NUL-terminated and within its size. */
static void
smtp_parse_reply_append(struct smtp_reply *r, const char *s, size_t len)
{
	size_t	 room = sizeof(r->text) - 1 - r->textlen, n, k;
	char	 c;

	n = len > room ? room : len;
	if (n < len)
		r->truncated = true;
	for (k = 0; k < n; k++) {
		c = s[k];
		/* Keep "\n" unambiguous as the line separator and the text a
		 * C string; the caller escapes the rest before logging. */
		if (c == '\0' || c == '\r' || c == '\n')
			c = '?';
		r->text[r->textlen++] = c;
	}
	r->text[r->textlen] = '\0';
}

int
smtp_parse_reply_line(struct smtp_reply *r, const char *line, size_t len)
{
	int	 code;
	bool	 last;

	if (r->complete || r->nlines >= SMTP_REPLY_LINES_MAX)
		return (-1);
	/* OUT-07: exactly three digits, 2xx-5xx, then end, SP or '-'. The
	 * length is checked before each byte is read (CVE-2020-8794). */
	if (len < 3 || line[0] < '2' || line[0] > '5' ||
	    !smtp_parse_is_digit(line[1]) || !smtp_parse_is_digit(line[2]))
		return (-1);
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return (-1);
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (r->nlines > 0 && code != r->code)
		return (-1);
	last = len == 3 || line[3] == ' ';
	r->code = code;
	if (r->nlines > 0 && r->textlen + 1 < sizeof(r->text)) {
		r->text[r->textlen++] = '\n';
		r->text[r->textlen] = '\0';
	} else if (r->nlines > 0)
		r->truncated = true;
	if (len > 4)
		smtp_parse_reply_append(r, line + 4, len - 4);
	r->nlines++;
	r->complete = last;
	return (0);
}

/* Case-insensitive match of a keyword token in an EHLO line. */
static bool
smtp_parse_tok(const char *t, size_t len, const char *kw)
{
	return (smtp_parse_eq(t, len, kw));
}

/* One EHLO keyword line (without the code): "SIZE 1000", "AUTH PLAIN". */
static void
smtp_parse_ehlo_line(const char *s, size_t len, struct smtp_ehlo_caps *c)
{
	const char	*tok;
	size_t		 i = 0, tlen, kwlen;
	bool		 is_auth = false, is_size = false;
	uint64_t	 n;

	for (kwlen = 0; kwlen < len && s[kwlen] != ' ' && s[kwlen] != '=';
	    kwlen++)
		;
	if (smtp_parse_tok(s, kwlen, "PIPELINING"))
		c->pipelining = true;
	else if (smtp_parse_tok(s, kwlen, "STARTTLS"))
		c->starttls = true;
	else if (smtp_parse_tok(s, kwlen, "8BITMIME"))
		c->eightbitmime = true;
	else if (smtp_parse_tok(s, kwlen, "SMTPUTF8"))
		c->smtputf8 = true;
	else if (smtp_parse_tok(s, kwlen, "ENHANCEDSTATUSCODES"))
		c->enhancedstatuscodes = true;
	else if (smtp_parse_tok(s, kwlen, "AUTH"))
		is_auth = true;
	else if (smtp_parse_tok(s, kwlen, "SIZE"))
		is_size = true;
	if (!is_auth && !is_size)
		return;
	/* Parameters: space separated ("AUTH=LOGIN PLAIN" is the old
	 * form some servers still send). */
	for (i = kwlen; i < len;) {
		while (i < len && (s[i] == ' ' || s[i] == '='))
			i++;
		tok = s + i;
		while (i < len && s[i] != ' ')
			i++;
		tlen = (size_t)(s + i - tok);
		if (tlen == 0)
			break;
		if (is_auth && smtp_parse_tok(tok, tlen, "PLAIN"))
			c->auth_plain = true;
		else if (is_auth && smtp_parse_tok(tok, tlen, "LOGIN"))
			c->auth_login = true;
		else if (is_size && smtp_parse_size(tok, tlen, &n) == 0) {
			c->size = n;
			break;
		}
	}
}

void
smtp_parse_ehlo_caps(const struct smtp_reply *r, struct smtp_ehlo_caps *c)
{
	const char	*s, *end, *nl;

	memset(c, 0, sizeof(*c));
	if (!r->complete || r->code != 250)
		return;
	s = r->text;
	end = r->text + r->textlen;
	/* The first line is the server's name and greeting, not a keyword. */
	if ((nl = memchr(s, '\n', (size_t)(end - s))) == NULL)
		return;
	for (s = nl + 1; s < end; s = nl + 1) {
		if ((nl = memchr(s, '\n', (size_t)(end - s))) == NULL)
			nl = end;
		smtp_parse_ehlo_line(s, (size_t)(nl - s), c);
	}
}

int
smtp_parse_enhanced(const char *text, char status[12])
{
	size_t	 i = 0, n, part;

	status[0] = '\0';
	/* class "." subject "." detail; class 2, 4 or 5, the others 1-3
	 * digits (RFC 3463 2). */
	if (text[0] != '2' && text[0] != '4' && text[0] != '5')
		return (-1);
	i = 1;
	for (part = 0; part < 2; part++) {
		if (text[i++] != '.')
			return (-1);
		for (n = 0; n < 3 && smtp_parse_is_digit(text[i]); n++)
			i++;
		if (n == 0)
			return (-1);
	}
	if (text[i] != '\0' && text[i] != ' ' && text[i] != '\n')
		return (-1);
	memcpy(status, text, i);
	status[i] = '\0';
	return (0);
}
