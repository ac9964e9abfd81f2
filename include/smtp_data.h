/*
 * smtp_data.h: the DATA phase of an inbound transaction.  A framer fed raw
 * bytes as they arrive (split anywhere) finds the one true end of data,
 * CRLF "." CRLF, removes dot-stuffing, and enforces the line, size and
 * header bounds; a scanner reads the finished header section for the
 * fields the policy needs (From:, Received:, Date:, Message-ID:).
 */
#ifndef POSTERN_SMTP_DATA_H
#define POSTERN_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "postern.h"

enum smtp_data_error {
	SMTP_DATA_OK,
	SMTP_DATA_BARE_LF,
	SMTP_DATA_BARE_CR,
	SMTP_DATA_NUL,
	SMTP_DATA_LINE_TOO_LONG,
	SMTP_DATA_TOO_BIG,
	SMTP_DATA_HEADER_TOO_BIG
};

/* Called with runs of un-stuffed content; never with len 0. */
typedef void (*smtp_data_emit_cb)(void *arg, const char *buf, size_t len,
    bool in_header);

enum smtp_data_state {
	SMTP_DATA_S_BOL,	/* at the start of a line */
	SMTP_DATA_S_DOT,	/* "." at the start of a line */
	SMTP_DATA_S_DOT_CR,	/* "." CR at the start of a line */
	SMTP_DATA_S_TEXT,	/* inside a line */
	SMTP_DATA_S_CR,		/* CR inside a line: CRLF or a bare CR */
	SMTP_DATA_S_DONE	/* CRLF "." CRLF consumed */
};

struct smtp_data {
	enum smtp_data_state	 state;
	enum smtp_data_error	 error;	/* sticky; the first wins */
	uint64_t		 max_size;	/* 0: no limit */
	uint64_t		 size;		/* un-stuffed octets */
	uint64_t		 header_max;
	uint64_t		 header_size;	/* un-stuffed */
	size_t			 linelen;	/* on the wire */
	bool			 in_header;
	bool			 bytewise;	/* tests: no span fast path */
};

/*
 * Start a DATA phase, right after the 354 reply.  max_size bounds the
 * un-stuffed message (0: no limit); the header section is bounded by
 * SMTP_HEADER_MAX.
 */
void			 smtp_data_init(struct smtp_data *,
			    uint64_t max_size);
/* Change the header section bound (tests; a header_size_limit knob). */
void			 smtp_data_set_header_max(struct smtp_data *,
			    uint64_t);
/* Tests and fuzzing: frame one octet at a time only, without the fast path
 * that takes plain runs inside a line at once, to compare the two. */
void			 smtp_data_set_bytewise(struct smtp_data *, bool);
/*
 * Consume bytes and emit un-stuffed content through cb in runs.  Content
 * lines keep their CRLF; the terminating "." CRLF is not emitted.
 * in_header is true up to and including the empty line that ends the
 * header section (the whole message when there is none).  Returns the
 * number of bytes consumed: everything, or up to and including the
 * terminating CRLF "." CRLF and never beyond it (the rest is the next
 * pipelined command).  After an error nothing more is emitted but bytes are
 * consumed until the real end of data, so the caller answers only then.
 * The outcome (bytes emitted, error, consumed count) does not depend on how
 * the input is split between calls.
 */
size_t			 smtp_data_feed(struct smtp_data *,
			    const char *buf, size_t len, smtp_data_emit_cb cb,
			    void *arg);
bool			 smtp_data_is_done(const struct smtp_data *);
enum smtp_data_error	 smtp_data_error(const struct smtp_data *);
/* Un-stuffed octets, still counted after an error (for the log). */
uint64_t		 smtp_data_size(const struct smtp_data *);
/*
 * The full reply line for an error; NULL for SMTP_DATA_OK:
 *   BARE_LF         "550 5.5.2 Error: bare <LF> received"
 *   BARE_CR         "550 5.5.2 Error: bare <CR> received"
 *   NUL             "554 5.6.0 Error: NUL character in message"
 *   LINE_TOO_LONG   "550 5.5.2 Error: text line too long"
 *   TOO_BIG         "552 5.3.4 Error: message file too big"
 *   HEADER_TOO_BIG  "552 5.3.4 Error: message header too big"
 */
const char		*smtp_data_error_reply(enum smtp_data_error);
/* A short name for logs ("bare_lf", ...). */
const char		*smtp_data_error_name(enum smtp_data_error);

/* What the policy needs from the header section. */
struct smtp_data_hdrinfo {
	int	 nfrom;			/* From: fields */
	int	 nreceived;		/* Received: fields */
	bool	 has_date;
	bool	 has_message_id;
	/* Message-ID: unfolded and trimmed; "" if none, too long or not
	 * printable ASCII */
	char	 message_id[256];
	int	 nfrom_addrs;		/* addr-specs, first From: */
	/* the first From: addr-spec's domain, lower-cased; "" when there is
	 * none or any From: field is unparseable */
	char	 from_domain[SMTP_DOMAIN_MAX + 1];
	/* every addr-spec of every From: has from_domain (false if none) */
	bool	 from_all_same_domain;
};

/*
 * Scan a header section (CRLF lines, with or without the empty line that
 * ends it; a bare LF is tolerated as a line end).  Field names are
 * case-insensitive; continuation lines are unfolded.  From: is parsed as
 * an RFC 5322 3.4 address list: display names (atoms, quoted strings,
 * encoded words), nested comments, angle addresses with obsolete routes,
 * groups; only the addr-spec counts, never the display name (IN-37).
 * Linear in len (IN-43).  Returns 0, or -1 when a line is neither a
 * field, a continuation nor the end (info then holds what came before).
 */
int	 smtp_data_scan_headers(const char *hdr, size_t len,
	    struct smtp_data_hdrinfo *);

#endif /* POSTERN_SMTP_DATA_H */
