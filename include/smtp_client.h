/*
 * smtp_client.h: one outbound SMTP client connection to one upstream host
 * address (SPEC section 4, SECURITY-CASES OUT-01..OUT-26, OUT-35).
 *
 * The client connects, reads the greeting, says EHLO (HELO as a fallback),
 * runs STARTTLS and AUTH as the TLS mode asks, and then carries one
 * transaction at a time, pipelined when the peer offers PIPELINING.  It
 * decides nothing about routing, retries or bounces: every outcome is
 * reported as data (struct smtp_client_result) through the callbacks, and
 * deliver.c alone decides what it means.
 *
 * Callbacks are never called from inside an smtp_client_* call; they run
 * from the event loop.  Inside any callback the caller may call
 * smtp_client_send, _reset, _quit or _free on the client.
 */
#ifndef POSTERN_SMTP_CLIENT_H
#define POSTERN_SMTP_CLIENT_H

#include <sys/types.h>
#include <sys/socket.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "smtp_parse.h"

/* Mirrors conf_out_tls (SPEC section 4, TLS policy). */
enum smtp_client_tls {
	SMTPC_TLS_NONE,			/* never STARTTLS */
	SMTPC_TLS_OPPORTUNISTIC,	/* STARTTLS when offered, unchecked */
	SMTPC_TLS_ENFORCED,		/* TLS or nothing, unchecked */
	SMTPC_TLS_VERIFY		/* TLS, chain and host name verified */
};

/*
 * Timeouts are seconds; 0 picks the default (RFC 5321 4.5.3.2, Postfix):
 * connect 30, greeting 300, EHLO/HELO/STARTTLS/AUTH/MAIL/RCPT 300, DATA
 * initiation 120, each data block 180, final dot 600, TLS handshake 300,
 * RSET and QUIT 120.
 */
struct smtp_client_cfg {
	const char	*helo;		/* our hostname for EHLO/HELO */
	const char	*host;		/* peer name: SNI, verify name, logs */
	struct sockaddr_storage addr;	/* with the port set */
	socklen_t	 addrlen;
	enum smtp_client_tls tls;
	SSL_CTX		*ssl_ctx;	/* borrowed; may be NULL for NONE */
	const char	*auth_user;	/* NULL or "": no AUTH; TLS only */
	const char	*auth_pass;
	int		 connect_timeout;
	int		 timeout_greeting;
	int		 timeout_cmd;		/* EHLO .. RCPT, AUTH */
	int		 timeout_data_init;	/* reply to DATA */
	int		 timeout_data_block;	/* progress while sending */
	int		 timeout_final;		/* reply to the final dot */
	int		 timeout_tls;		/* the handshake */
	int		 timeout_rset;		/* RSET and QUIT */
};

/*
 * A message: the envelope and a body read with pread(2) from body_fd at
 * body_offset for body_len octets, sent after prefix_len octets of prefix
 * (header fields added at delivery, such as DKIM-Signature; NULL and 0 for
 * none).  The prefix and the body are one stream of CRLF text, not
 * dot-stuffed: SIZE= counts both, the output backpressure covers both, and
 * the client stuffs it, adds CRLF before the final "." when it lacks one,
 * and never emits a bare CR or LF: a stream holding one fails every
 * accepted recipient with 5.6.0 and the final dot is never sent (OUT-20).
 * Every pointer is borrowed until the done callback.
 */
struct smtp_client_msg {
	const char	*sender;	/* "" for <> */
	const char	**rcpts;
	size_t		 nrcpts;
	const char	*prefix;	/* sent verbatim before the body */
	size_t		 prefix_len;
	int		 body_fd;
	off_t		 body_offset;
	uint64_t	 body_len;
	bool		 eightbit;	/* needs 8BITMIME, else 5.6.7 */
	bool		 smtputf8;	/* needs SMTPUTF8, else 5.6.7 */
};

enum smtp_client_outcome {
	SMTPC_OK,
	SMTPC_TEMPFAIL,
	SMTPC_PERMFAIL
};

/*
 * One result.  status is the enhanced status code of the reply when it
 * carries one of the right class, else synthesised: X.0.0 from the reply
 * code, 4.4.1 connect failed, 4.4.2 timeout or lost connection, 4.5.0
 * protocol error, 4.7.4 TLS required but not offered (also AUTH without
 * TLS), 4.7.5 TLS handshake or verification failed, 4.7.8 AUTH failed,
 * 5.3.4 too big for the peer's SIZE, 5.6.7 8BITMIME/SMTPUTF8 needed,
 * 5.6.0 bare CR or LF in the body, 4.3.0 local read error.
 */
struct smtp_client_result {
	enum smtp_client_outcome outcome;
	int		 code;		/* SMTP code; 0 for local/network */
	char		 status[12];	/* "4.4.2" */
	char		 reply[512];	/* "550 5.1.1 text", escaped (no
					 * control characters), or a local
					 * description */
	char		 stage[16];	/* "CONNECT", "GREETING", "EHLO",
					 * "HELO", "STARTTLS", "AUTH",
					 * "MAIL", "RCPT", "DATA", "DOT",
					 * "RSET", "QUIT", "IDLE" */
};

struct smtp_client;

struct smtp_client_cbs {
	/* Greeted, EHLO (STARTTLS, EHLO, AUTH) done, or RSET done: idle. */
	void	(*ready)(struct smtp_client *, void *arg);
	/*
	 * The transaction ended: rcpt[i] for msg->rcpts[i] (for delivered
	 * recipients the final-dot reply), and the overall result (the
	 * final-dot reply, or the reply or failure that stopped the
	 * transaction).  With reusable the client is idle again (call
	 * smtp_client_reset before the next message); without it the
	 * connection is gone and only smtp_client_free remains.
	 */
	void	(*done)(struct smtp_client *,
		    const struct smtp_client_result *rcpt, size_t nrcpt,
		    const struct smtp_client_result *overall, bool reusable,
		    void *arg);
	/*
	 * The connection failed or closed outside a transaction: before
	 * ready, while idle, at RSET, or after smtp_client_quit (then the
	 * outcome is SMTPC_OK).  Only smtp_client_free remains.  A TEMPFAIL
	 * 4.7.5 with stage "STARTTLS" under OPPORTUNISTIC means the caller
	 * may retry in plaintext on a new connection (OUT-23).
	 */
	void	(*closed)(struct smtp_client *,
		    const struct smtp_client_result *why, void *arg);
};

/* Start connecting; NULL (with a log line) when cfg is unusable. */
struct smtp_client *smtp_client_new(struct event_base *,
		    const struct smtp_client_cfg *,
		    const struct smtp_client_cbs *, void *arg);
/*
 * Send one message; only when idle (after ready, or after a reusable
 * done and a reset).  Returns -1 when the client is not idle or msg has
 * no recipients; otherwise 0 and the done callback follows, also for
 * local verdicts (SIZE, 8BITMIME, TLS) decided without sending anything.
 */
int		 smtp_client_send(struct smtp_client *,
		    const struct smtp_client_msg *);
/* RSET; ready follows on 250, closed on anything else (OUT-17). -1 when
 * not idle. */
int		 smtp_client_reset(struct smtp_client *);
/* QUIT and close; closed follows with SMTPC_OK whatever the peer does
 * (OUT-14).  When not idle the connection is closed at once. */
void		 smtp_client_quit(struct smtp_client *);
/* Close and free at once; no callback runs after it.  Accepts NULL. */
void		 smtp_client_free(struct smtp_client *);

bool		 smtp_client_is_tls(const struct smtp_client *);
/* "TLSv1.3" and so on, or "none". */
const char	*smtp_client_tls_version(const struct smtp_client *);
/* TLS with the chain and the host name verified (VERIFY mode). */
bool		 smtp_client_tls_verified(const struct smtp_client *);
/* The capabilities of the last EHLO (all zero after HELO). */
const struct smtp_ehlo_caps *smtp_client_caps(const struct smtp_client *);
/* "host[addr]:port", for log lines. */
const char	*smtp_client_peer(const struct smtp_client *);

#endif /* POSTERN_SMTP_CLIENT_H */
