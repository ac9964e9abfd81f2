/*
 * stats.h: the daemon's counters and gauges of SPEC section 5 `stats`.
 * One global instance, updated on the event-loop thread only (worker and
 * spool threads report through the loop), so plain integers suffice.
 */
#ifndef POSTERN_STATS_H
#define POSTERN_STATS_H

#include <stdint.h>

struct stats {
	int64_t		started_at;		/* wall clock */
	uint64_t	messages_received;
	uint64_t	messages_delivered;
	uint64_t	messages_failed;
	uint64_t	messages_expired;
	uint64_t	connections_in_current;
	uint64_t	connections_in_total;
	uint64_t	connections_in_rejected;
	uint64_t	auth_success;
	uint64_t	auth_failure;
	uint64_t	tls_in_sessions;
	uint64_t	tls_out_sessions;
	uint64_t	tls_out_verified;
	uint64_t	tls_out_plaintext;
	uint64_t	dkim_signed;
	uint64_t	dkim_errors;
	uint64_t	escalations_sent;
	uint64_t	escalations_failed;
	uint64_t	escalations_pending;
	uint64_t	rejected_smuggling;
};

extern struct stats	stats;

void	stats_init(void);

#endif /* POSTERN_STATS_H */
