/*
 * smtp_data.c: the DATA stream framer and the header scanner (SPEC
 * section 3 "Line endings", SECURITY-CASES IN-01..IN-10, IN-37, IN-42..46).
 *
 * The framer is a byte-at-a-time state machine (enum smtp_data_state)
 * whose whole memory between calls is struct smtp_data, so the outcome is
 * the same however the input is split (IN-09, FZ-02).  Only CRLF ends a
 * line and only CRLF "." CRLF ends the data: a bare CR or LF is content
 * that sets a sticky error, never a line end, so no smuggled end of data
 * (IN-01..IN-05) can be recognised.  Errors stop emission but not framing:
 * the caller answers once, after the real end.  Content is passed to the
 * callback in runs borrowed from the caller's buffer.  A CR is emitted only
 * with the LF that makes it a line end, so content never holds a bare CR;
 * when that CR ended the previous feed it is emitted from a constant.
 *
 * The header scanner is a single pass over the finished header section
 * with a small tokenizer for the From: address list; it allocates nothing
 * and does constant work per input byte (IN-43).
 */
#include "compat.h"

#include <sys/param.h>

#include <string.h>
#include <strings.h>

#include "smtp_data.h"

/* A run of content in the current input buffer, not yet emitted. */
struct smtp_data_run {
	smtp_data_emit_cb	 cb;
	void			*arg;
	const char		*buf;
	size_t			 start;
	size_t			 len;
	bool			 in_header;
};

void
smtp_data_init(struct smtp_data *d, uint64_t max_size)
{
	memset(d, 0, sizeof(*d));
	d->state = SMTP_DATA_S_BOL;
	d->error = SMTP_DATA_OK;
	d->max_size = max_size;
	d->header_max = SMTP_HEADER_MAX;
	d->in_header = true;
}

void
smtp_data_set_header_max(struct smtp_data *d, uint64_t max)
{
	d->header_max = max;
}

void
smtp_data_set_bytewise(struct smtp_data *d, bool on)
{
	d->bytewise = on;
}

static void
smtp_data_flush(struct smtp_data_run *run)
{
	if (run->len > 0 && run->cb != NULL)
		run->cb(run->arg, run->buf + run->start, run->len,
		    run->in_header);
	run->len = 0;
}

/* Record the first error; everything accepted before it is emitted. */
static void
smtp_data_fail(struct smtp_data *d, struct smtp_data_run *run,
    enum smtp_data_error e)
{
	if (d->error != SMTP_DATA_OK)
		return;
	smtp_data_flush(run);
	d->error = e;
}

/* Count one content octet against the size and header bounds. */
static void
smtp_data_count(struct smtp_data *d, struct smtp_data_run *run)
{
	d->size++;
	if (d->max_size != 0 && d->size > d->max_size)
		smtp_data_fail(d, run, SMTP_DATA_TOO_BIG);
	if (d->in_header && ++d->header_size > d->header_max)
		smtp_data_fail(d, run, SMTP_DATA_HEADER_TOO_BIG);
}

/* Add buf[i] to the run (already counted, no error). */
static void
smtp_data_content_at(struct smtp_data *d, struct smtp_data_run *run,
    size_t i)
{
	if (run->len > 0 && run->start + run->len != i)
		smtp_data_flush(run);
	if (run->len == 0) {
		run->start = i;
		run->in_header = d->in_header;
	}
	run->len++;
}

/* buf[i] is content: count it and add it to the run unless in error. */
static void
smtp_data_content(struct smtp_data *d, struct smtp_data_run *run, size_t i)
{
	smtp_data_count(d, run);
	if (d->error == SMTP_DATA_OK)
		smtp_data_content_at(d, run, i);
}

/*
 * buf[i] is the LF of a CRLF whose CR was counted but held back, so that
 * emitted content never holds a bare CR.  The CR is buf[i - 1], or, when
 * i is 0, the last byte of the previous feed: then it comes from a
 * constant.
 */
static void
smtp_data_content_crlf(struct smtp_data *d, struct smtp_data_run *run,
    size_t i)
{
	smtp_data_count(d, run);
	if (d->error != SMTP_DATA_OK)
		return;
	if (i == 0) {
		smtp_data_flush(run);
		if (run->cb != NULL)
			run->cb(run->arg, "\r", 1, d->in_header);
		smtp_data_content_at(d, run, i);
		return;
	}
	if (run->len > 0 && run->start + run->len != i - 1)
		smtp_data_flush(run);
	if (run->len == 0) {
		run->start = i - 1;
		run->in_header = d->in_header;
	}
	run->len += 2;
}

/*
 * Inside a line with no error so far: the octets from buf[i] up to the
 * next CR, LF or NUL that stay within every bound (line, message, header)
 * are plain content, and are counted and added to the run at once; the
 * state machine below sees the octet that stops the span.  Exactly what
 * the byte path would do for them, which fuzz_smtp_data checks by
 * comparing with smtp_data_set_bytewise(); only the common case is faster.
 * Returns how many were taken.
 */
static size_t
smtp_data_text_span(struct smtp_data *d, struct smtp_data_run *run,
    const char *buf, size_t i, size_t len)
{
	const char	*p = buf + i;
	size_t		 n = 0, max = len - i;
	uint64_t	 room;

	if (d->linelen >= SMTP_TEXT_LINE_MAX)
		return (0);
	room = SMTP_TEXT_LINE_MAX - d->linelen;
	if (d->max_size != 0)
		room = d->size >= d->max_size ? 0 :
		    MIN(room, d->max_size - d->size);
	if (d->in_header)
		room = d->header_size >= d->header_max ? 0 :
		    MIN(room, d->header_max - d->header_size);
	if (room < max)
		max = (size_t)room;
	while (n < max && p[n] != '\r' && p[n] != '\n' && p[n] != '\0')
		n++;
	if (n == 0)
		return (0);
	d->linelen += n;
	d->size += n;
	if (d->in_header)
		d->header_size += n;
	if (run->len > 0 && run->start + run->len != i)
		smtp_data_flush(run);
	if (run->len == 0) {
		run->start = i;
		run->in_header = d->in_header;
	}
	run->len += n;
	return (n);
}

size_t
smtp_data_feed(struct smtp_data *d, const char *buf, size_t len,
    smtp_data_emit_cb cb, void *arg)
{
	struct smtp_data_run	 run = { cb, arg, buf, 0, 0, false };
	size_t			 i;
	unsigned char		 c;

	for (i = 0; i < len && d->state != SMTP_DATA_S_DONE; i++) {
		if (d->state == SMTP_DATA_S_TEXT && d->error == SMTP_DATA_OK &&
		    !d->bytewise) {
			i += smtp_data_text_span(d, &run, buf, i, len);
			if (i == len)
				break;
		}
		c = (unsigned char)buf[i];
		/* Wire octets, stuffing dot and CRLF included (RFC 5321
		 * 4.5.3.1.6): what the next hop will see after restuffing. */
		if (++d->linelen > SMTP_TEXT_LINE_MAX)
			smtp_data_fail(d, &run, SMTP_DATA_LINE_TOO_LONG);
again:
		switch (d->state) {
		case SMTP_DATA_S_BOL:
			if (c == '.') {
				d->state = SMTP_DATA_S_DOT;
				break;
			}
			d->state = SMTP_DATA_S_TEXT;
			goto again;
		case SMTP_DATA_S_DOT:
			if (c == '\r') {
				d->state = SMTP_DATA_S_DOT_CR;
				break;
			}
			/* RFC 5321 4.5.2: the leading dot was stuffing. */
			d->state = SMTP_DATA_S_TEXT;
			goto again;
		case SMTP_DATA_S_DOT_CR:
			if (c == '\n') {
				d->state = SMTP_DATA_S_DONE;
				break;
			}
			/* ".\r" then not LF: a stuffed line with a bare CR,
			 * which is content (counted, never emitted). */
			smtp_data_fail(d, &run, SMTP_DATA_BARE_CR);
			smtp_data_count(d, &run);
			d->state = SMTP_DATA_S_TEXT;
			goto again;
		case SMTP_DATA_S_TEXT:
			if (c == '\r') {
				/* Counted now, emitted with its LF. */
				smtp_data_count(d, &run);
				d->state = SMTP_DATA_S_CR;
				break;
			}
			if (c == '\n')
				smtp_data_fail(d, &run, SMTP_DATA_BARE_LF);
			else if (c == '\0')
				smtp_data_fail(d, &run, SMTP_DATA_NUL);
			smtp_data_content(d, &run, i);
			break;
		case SMTP_DATA_S_CR:
			if (c != '\n') {
				/* The CR is bare; c starts over inside the
				 * line (it may be another CR: IN-04). */
				smtp_data_fail(d, &run, SMTP_DATA_BARE_CR);
				d->state = SMTP_DATA_S_TEXT;
				goto again;
			}
			smtp_data_content_crlf(d, &run, i);
			if (d->in_header && d->linelen == 2) {
				/* The empty line ends the header section and
				 * belongs to it. */
				smtp_data_flush(&run);
				d->in_header = false;
			}
			d->linelen = 0;
			d->state = SMTP_DATA_S_BOL;
			break;
		case SMTP_DATA_S_DONE:
			break;
		}
	}
	smtp_data_flush(&run);
	return (i);
}

bool
smtp_data_is_done(const struct smtp_data *d)
{
	return (d->state == SMTP_DATA_S_DONE);
}

enum smtp_data_error
smtp_data_error(const struct smtp_data *d)
{
	return (d->error);
}

uint64_t
smtp_data_size(const struct smtp_data *d)
{
	return (d->size);
}

const char *
smtp_data_error_reply(enum smtp_data_error e)
{
	switch (e) {
	case SMTP_DATA_OK:
		return (NULL);
	case SMTP_DATA_BARE_LF:
		return ("550 5.5.2 Error: bare <LF> received");
	case SMTP_DATA_BARE_CR:
		return ("550 5.5.2 Error: bare <CR> received");
	case SMTP_DATA_NUL:
		return ("554 5.6.0 Error: NUL character in message");
	case SMTP_DATA_LINE_TOO_LONG:
		return ("550 5.5.2 Error: text line too long");
	case SMTP_DATA_TOO_BIG:
		return ("552 5.3.4 Error: message file too big");
	case SMTP_DATA_HEADER_TOO_BIG:
		return ("552 5.3.4 Error: message header too big");
	}
	return ("451 4.3.0 Error: internal error");
}

const char *
smtp_data_error_name(enum smtp_data_error e)
{
	switch (e) {
	case SMTP_DATA_OK:
		return ("ok");
	case SMTP_DATA_BARE_LF:
		return ("bare_lf");
	case SMTP_DATA_BARE_CR:
		return ("bare_cr");
	case SMTP_DATA_NUL:
		return ("nul");
	case SMTP_DATA_LINE_TOO_LONG:
		return ("line_too_long");
	case SMTP_DATA_TOO_BIG:
		return ("too_big");
	case SMTP_DATA_HEADER_TOO_BIG:
		return ("header_too_big");
	}
	return ("unknown");
}

/*
 * The header scanner.  The From: tokenizer follows RFC 5322 3.2: CFWS
 * (with nested comments) is skipped between tokens, atoms are runs of atext
 * (8-bit octets included, RFC 6532; encoded words are atoms), quoted
 * strings and domain literals are single tokens, and the specials that
 * structure an address list are returned one by one.
 */
enum smtp_data_tok {
	SMTP_DATA_T_END,
	SMTP_DATA_T_ATOM,
	SMTP_DATA_T_QSTR,
	SMTP_DATA_T_DLIT,
	SMTP_DATA_T_SPECIAL,
	SMTP_DATA_T_ERR
};

struct smtp_data_lex {
	const char		*s;
	size_t			 len;
	size_t			 pos;
	enum smtp_data_tok	 type;
	const char		*t;	/* the token, for ATOM and DLIT */
	size_t			 tlen;
	char			 c;	/* the special */
};

/* State of the From: scan across every From: field. */
struct smtp_data_from {
	struct smtp_data_hdrinfo *h;
	bool			 first_field;
	bool			 have_domain;
	bool			 bad;
	int			 naddrs;	/* over every field */
};

static bool
smtp_data_is_wsp(unsigned char c)
{
	return (c == ' ' || c == '\t' || c == '\r' || c == '\n');
}

static bool
smtp_data_is_atext(unsigned char c)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c >= 0x80)
		return (true);
	return (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Skip FWS and comments; false on an unterminated comment. */
static bool
smtp_data_lex_cfws(struct smtp_data_lex *lx)
{
	size_t	 depth;

	for (;;) {
		while (lx->pos < lx->len &&
		    smtp_data_is_wsp((unsigned char)lx->s[lx->pos]))
			lx->pos++;
		if (lx->pos == lx->len || lx->s[lx->pos] != '(')
			return (true);
		/* A counter, not recursion: nesting depth is unbounded. */
		for (depth = 0; lx->pos < lx->len; lx->pos++) {
			if (lx->s[lx->pos] == '\\') {
				lx->pos++;
				continue;
			}
			if (lx->s[lx->pos] == '(')
				depth++;
			else if (lx->s[lx->pos] == ')' && --depth == 0)
				break;
		}
		if (lx->pos >= lx->len)
			return (false);
		lx->pos++;
	}
}

static void
smtp_data_lex_next(struct smtp_data_lex *lx)
{
	unsigned char	 c;
	size_t		 start;

	if (lx->type == SMTP_DATA_T_ERR)
		return;
	if (!smtp_data_lex_cfws(lx)) {
		lx->type = SMTP_DATA_T_ERR;
		return;
	}
	if (lx->pos == lx->len) {
		lx->type = SMTP_DATA_T_END;
		return;
	}
	start = lx->pos;
	c = (unsigned char)lx->s[lx->pos];
	if (smtp_data_is_atext(c)) {
		while (lx->pos < lx->len &&
		    smtp_data_is_atext((unsigned char)lx->s[lx->pos]))
			lx->pos++;
		lx->type = SMTP_DATA_T_ATOM;
	} else if (c == '"' || c == '[') {
		/* Quoted string or domain literal, quoted pairs allowed. */
		for (lx->pos++; lx->pos < lx->len; lx->pos++) {
			if (lx->s[lx->pos] == '\\') {
				lx->pos++;
				continue;
			}
			if (c == '"' && lx->s[lx->pos] == '"')
				break;
			if (c == '[' && lx->s[lx->pos] == '[')
				lx->pos = lx->len;
			else if (c == '[' && lx->s[lx->pos] == ']')
				break;
		}
		if (lx->pos >= lx->len) {
			lx->type = SMTP_DATA_T_ERR;
			return;
		}
		lx->pos++;
		lx->type = c == '"' ? SMTP_DATA_T_QSTR : SMTP_DATA_T_DLIT;
	} else if (c != '\0' && strchr("<>@,;:.", c) != NULL) {
		lx->pos++;
		lx->type = SMTP_DATA_T_SPECIAL;
		lx->c = (char)c;
	} else {
		lx->type = SMTP_DATA_T_ERR;
		return;
	}
	lx->t = lx->s + start;
	lx->tlen = lx->pos - start;
}

static bool
smtp_data_lex_is(const struct smtp_data_lex *lx, char c)
{
	return (lx->type == SMTP_DATA_T_SPECIAL && lx->c == c);
}

/*
 * local-part "@" domain, the local part's words already consumed by the
 * caller; the current token is the first of the domain.  Records the
 * lower-cased domain.
 */
static int
smtp_data_domain(struct smtp_data_lex *lx, struct smtp_data_from *f)
{
	char	 dom[SMTP_DOMAIN_MAX + 1];
	size_t	 dlen = 0, k;
	bool	 want_atom = true;

	if (lx->type == SMTP_DATA_T_DLIT) {
		if (lx->tlen > SMTP_DOMAIN_MAX)
			return (-1);
		memcpy(dom, lx->t, lx->tlen);
		dlen = lx->tlen;
		smtp_data_lex_next(lx);
	} else {
		/* dot-atom, with obs-domain CFWS around the dots */
		for (;;) {
			if (want_atom && lx->type == SMTP_DATA_T_ATOM) {
				if (dlen + lx->tlen > SMTP_DOMAIN_MAX)
					return (-1);
				memcpy(dom + dlen, lx->t, lx->tlen);
				dlen += lx->tlen;
			} else if (!want_atom && smtp_data_lex_is(lx, '.')) {
				if (dlen + 1 > SMTP_DOMAIN_MAX)
					return (-1);
				dom[dlen++] = '.';
			} else
				break;
			want_atom = !want_atom;
			smtp_data_lex_next(lx);
		}
		if (dlen == 0 || want_atom)
			return (-1);
	}
	dom[dlen] = '\0';
	for (k = 0; k < dlen; k++)
		if (dom[k] >= 'A' && dom[k] <= 'Z')
			dom[k] = (char)(dom[k] - 'A' + 'a');

	if (f->first_field)
		f->h->nfrom_addrs++;
	if (f->naddrs++ == 0) {
		memcpy(f->h->from_domain, dom, dlen + 1);
		f->have_domain = true;
	} else if (strcmp(f->h->from_domain, dom) != 0)
		f->h->from_all_same_domain = false;
	return (0);
}

/* local-part = word *("." word); consumes it, false if malformed. */
static bool
smtp_data_local(struct smtp_data_lex *lx)
{
	bool	 want_word = true;

	for (;;) {
		if (want_word && (lx->type == SMTP_DATA_T_ATOM ||
		    lx->type == SMTP_DATA_T_QSTR))
			want_word = false;
		else if (!want_word && smtp_data_lex_is(lx, '.'))
			want_word = true;
		else
			break;
		smtp_data_lex_next(lx);
	}
	return (!want_word);
}

/* "<" [obs-route] addr-spec ">", the "<" being the current token. */
static int
smtp_data_angle(struct smtp_data_lex *lx, struct smtp_data_from *f)
{
	smtp_data_lex_next(lx);
	if (smtp_data_lex_is(lx, '@')) {
		/* obs-route: "@" domain *("," ["@" domain]) ":", dropped */
		while (lx->type == SMTP_DATA_T_ATOM ||
		    lx->type == SMTP_DATA_T_DLIT || smtp_data_lex_is(lx, '@') ||
		    smtp_data_lex_is(lx, '.') || smtp_data_lex_is(lx, ','))
			smtp_data_lex_next(lx);
		if (!smtp_data_lex_is(lx, ':'))
			return (-1);
		smtp_data_lex_next(lx);
	}
	if (!smtp_data_local(lx) || !smtp_data_lex_is(lx, '@'))
		return (-1);
	smtp_data_lex_next(lx);
	if (smtp_data_domain(lx, f) == -1 || !smtp_data_lex_is(lx, '>'))
		return (-1);
	smtp_data_lex_next(lx);
	return (0);
}

/*
 * One mailbox or group.  Words are read once; what follows them decides
 * whether they were a display name ("<" or ":") or a local part ("@").
 */
static int
smtp_data_address(struct smtp_data_lex *lx, struct smtp_data_from *f,
    bool in_group)
{
	size_t	 nwords = 0;
	bool	 local_ok = true, after_word = false;

	while (lx->type == SMTP_DATA_T_ATOM || lx->type == SMTP_DATA_T_QSTR ||
	    smtp_data_lex_is(lx, '.')) {
		if (smtp_data_lex_is(lx, '.')) {
			if (!after_word)
				local_ok = false;
			after_word = false;
		} else {
			if (after_word)
				local_ok = false;	/* "John Smith" */
			after_word = true;
			nwords++;
		}
		smtp_data_lex_next(lx);
	}
	if (smtp_data_lex_is(lx, '<'))
		return (smtp_data_angle(lx, f));
	if (smtp_data_lex_is(lx, '@')) {
		if (nwords == 0 || !local_ok || !after_word)
			return (-1);
		smtp_data_lex_next(lx);
		return (smtp_data_domain(lx, f));
	}
	if (smtp_data_lex_is(lx, ':') && !in_group && nwords > 0) {
		/* group = display-name ":" [group-list] ";" */
		smtp_data_lex_next(lx);
		for (;;) {
			if (smtp_data_lex_is(lx, ';')) {
				smtp_data_lex_next(lx);
				return (0);
			}
			if (smtp_data_lex_is(lx, ',')) {
				smtp_data_lex_next(lx);
				continue;
			}
			if (smtp_data_address(lx, f, true) == -1)
				return (-1);
			if (!smtp_data_lex_is(lx, ',') &&
			    !smtp_data_lex_is(lx, ';'))
				return (-1);
		}
	}
	return (-1);
}

/* One From: field value; an address list (obsolete empty elements ok). */
static void
smtp_data_scan_from(const char *s, size_t len, struct smtp_data_from *f)
{
	struct smtp_data_lex	 lx;

	memset(&lx, 0, sizeof(lx));
	lx.s = s;
	lx.len = len;
	lx.type = SMTP_DATA_T_END;
	smtp_data_lex_next(&lx);
	for (;;) {
		if (lx.type == SMTP_DATA_T_END)
			return;
		if (smtp_data_lex_is(&lx, ',')) {
			smtp_data_lex_next(&lx);
			continue;
		}
		if (smtp_data_address(&lx, f, false) == -1)
			break;
		if (smtp_data_lex_is(&lx, ','))
			smtp_data_lex_next(&lx);
		else if (lx.type != SMTP_DATA_T_END)
			break;
	}
	f->bad = true;
}

/* Message-ID value: unfolded, trimmed, printable ASCII, < 256 octets. */
static void
smtp_data_scan_msgid(const char *s, size_t len, struct smtp_data_hdrinfo *h)
{
	size_t		 i, n = 0;
	unsigned char	 c;

	while (len > 0 && smtp_data_is_wsp((unsigned char)s[len - 1]))
		len--;
	for (i = 0; i < len && smtp_data_is_wsp((unsigned char)s[i]); i++)
		;
	for (; i < len; i++) {
		c = (unsigned char)s[i];
		if (c == '\r' || c == '\n')
			continue;
		if ((c < 32 && c != '\t') || c > 126 ||
		    n + 1 >= sizeof(h->message_id)) {
			n = 0;
			break;
		}
		h->message_id[n++] = (char)c;
	}
	h->message_id[n] = '\0';
}

static bool
smtp_data_name_is(const char *name, size_t len, const char *want)
{
	return (strlen(want) == len && strncasecmp(name, want, len) == 0);
}

int
smtp_data_scan_headers(const char *hdr, size_t len,
    struct smtp_data_hdrinfo *h)
{
	struct smtp_data_from	 f;
	const char		*nl, *name, *val;
	size_t			 i = 0, eol, next, namelen, colon, k;
	int			 rc = 0;

	memset(h, 0, sizeof(*h));
	memset(&f, 0, sizeof(f));
	f.h = h;
	h->from_all_same_domain = true;

	while (i < len) {
		/* The field's first line: [i, eol) without CR LF. */
		nl = memchr(hdr + i, '\n', len - i);
		eol = nl == NULL ? len : (size_t)(nl - hdr);
		next = nl == NULL ? len : eol + 1;
		if (eol == i || (eol == i + 1 && hdr[i] == '\r'))
			break;			/* the empty line */
		/* field-name = 1*ftext, obs-optional WSP before ":" */
		name = hdr + i;
		for (colon = i; colon < eol && hdr[colon] != ':'; colon++)
			;
		if (colon == eol) {
			rc = -1;
			break;
		}
		namelen = colon - i;
		while (namelen > 0 && (name[namelen - 1] == ' ' ||
		    name[namelen - 1] == '\t'))
			namelen--;
		for (k = 0; k < namelen; k++)
			if (name[k] < 33 || name[k] > 126)
				break;
		if (namelen == 0 || k < namelen) {
			rc = -1;
			break;
		}
		val = hdr + colon + 1;
		/* Continuation lines begin with WSP; the value runs to the
		 * end of the last one, inner line breaks being FWS. */
		while (next < len && (hdr[next] == ' ' || hdr[next] == '\t')) {
			nl = memchr(hdr + next, '\n', len - next);
			eol = nl == NULL ? len : (size_t)(nl - hdr);
			next = nl == NULL ? len : eol + 1;
		}
		if (eol > colon && hdr[eol - 1] == '\r')
			eol--;

		if (smtp_data_name_is(name, namelen, "From")) {
			f.first_field = h->nfrom == 0;
			h->nfrom++;
			smtp_data_scan_from(val, (size_t)(hdr + eol - val), &f);
		} else if (smtp_data_name_is(name, namelen, "Received"))
			h->nreceived++;
		else if (smtp_data_name_is(name, namelen, "Date"))
			h->has_date = true;
		else if (smtp_data_name_is(name, namelen, "Message-ID")) {
			if (!h->has_message_id)
				smtp_data_scan_msgid(val,
				    (size_t)(hdr + eol - val), h);
			h->has_message_id = true;
		}
		i = next;
	}
	if (f.bad || f.naddrs == 0) {
		h->from_domain[0] = '\0';
		h->from_all_same_domain = false;
	}
	return (rc);
}
