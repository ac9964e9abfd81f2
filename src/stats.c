/*
 * stats.c: the global counters.  Only the event-loop thread writes them;
 * control.c reads them to answer `stats` in O(1).
 */
#include "compat.h"

#include <string.h>

#include "stats.h"
#include "util.h"

struct stats	stats;

void
stats_init(void)
{
	memset(&stats, 0, sizeof(stats));
	stats.started_at = util_wallclock();
}
