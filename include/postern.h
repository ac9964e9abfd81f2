/*
 * postern.h: limits and small types shared by every module.
 *
 * The numbers here are the wire limits of RFC 5321 4.5.3.1 and the bounds
 * of ../shared/SPEC.md section 3; everything a peer can make us allocate is
 * bounded by one of them or by a configuration key.
 */
#ifndef POSTERN_H
#define POSTERN_H

#include <stdint.h>

/* RFC 5321 4.5.3.1.4: a command line, CRLF included. */
#define SMTP_CMD_LINE_MAX	512
/* MAIL/RCPT may grow by SIZE= (26) and AUTH= (500) octets: RFC 1870, 4954. */
#define SMTP_MAIL_LINE_MAX	1024
/* RFC 5321 4.5.3.1.6: a text line in DATA, CRLF included. */
#define SMTP_TEXT_LINE_MAX	1000
/* RFC 5321 4.5.3.1.3: a reverse- or forward-path, brackets included. */
#define SMTP_PATH_MAX		256
/* RFC 5321 4.5.3.1.2 and RFC 1035: a domain and one of its labels. */
#define SMTP_DOMAIN_MAX		255
#define SMTP_LABEL_MAX		63
/* RFC 4954 4: a SASL response line of 12288 octets must be accepted. */
#define SMTP_AUTH_LINE_MAX	12288
/* Hard cap on a line with no CRLF before the session is closed. */
#define SMTP_LINE_HARD_MAX	65536
/* The header section of a message (postern's header_size_limit). */
#define SMTP_HEADER_MAX		(1024 * 1024)
/* More Received: fields than this is a mail loop (554 5.4.6). */
#define SMTP_MAX_HOPS		100
/* Commands that fail in one session before it is closed with 421. */
#define SMTP_MAX_ERRORS		20
/* Transactions in one session before 452 (IN-63). */
#define SMTP_MAX_MESSAGES_PER_SESSION	10000
/* Bytes of not-yet-sent replies before we stop reading the client. */
#define SMTP_OUTPUT_HIWAT	(64 * 1024)

/* A queue id: 8 upper-case hex digits of a random non-zero 32-bit value. */
#define QUEUE_ID_LEN		8
typedef uint32_t qid_t;

#endif /* POSTERN_H */
