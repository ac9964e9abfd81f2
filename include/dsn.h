/*
 * dsn.h: delivery status notifications (RFC 3464 multipart/report) sent
 * to the envelope sender for failed or expired recipients.
 */
#ifndef POSTERN_DSN_H
#define POSTERN_DSN_H

#include <stdbool.h>
#include <stdint.h>

#include "spool.h"

struct queue;

/*
 * Queue one DSN from <> to orig->sender listing the recipients marked in
 * which[] (their dsn, reply and remote fields say why).  cb runs on the
 * loop with 0 once the DSN is durably queued (and indexed in q), or an
 * errno.  Returns -1 when the DSN cannot even be started.
 */
int	dsn_bounce(struct spool *, const struct spool_envelope *orig,
	    const bool *which, const char *hostname, spool_done_cb cb,
	    uint64_t cookie, struct queue *q);

/* Build the DSN text (exposed for tests). Caller frees *out. */
int	dsn_format(const struct spool_envelope *orig, const bool *which,
	    const char *hostname, const char *orig_headers, size_t hdrlen,
	    qid_t id, int64_t now, char **out, size_t *outlen);

#endif /* POSTERN_DSN_H */
