/*
 * queue.c: the in-memory queue index.
 *
 * Ownership: the queue owns every queue_msg and its strings.  Invariants:
 * every message is in the id map; every message that is not held is in
 * the due heap at heap_idx; counts[] matches the states; a reserved id is
 * never handed out twice while it is reserved or queued.
 *
 * The oldest-message gauge is kept as a running minimum; removing the
 * oldest message marks it stale and the next queue_counts() rescans once.
 */
#include "compat.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "queue.h"
#include "util.h"

#define QUEUE_NOT_IN_HEAP	UINT32_MAX

struct queue {
	struct util_map		  by_id;	/* id -> queue_msg */
	struct util_map		  reserved;	/* id -> (void *)1 */
	struct queue_msg	**heap;		/* by next_attempt */
	size_t			  heaplen, heapcap;
	size_t			  counts[QUEUE_NSTATES];
	int64_t			  oldest;	/* 0 = unknown or empty */
	bool			  oldest_stale;
};

struct queue *
queue_new(void)
{
	struct queue	*q = xcalloc(1, sizeof(*q));

	util_map_init(&q->by_id);
	util_map_init(&q->reserved);
	return (q);
}

static void
queue_msg_free(struct queue_msg *m)
{
	free(m->sender);
	free(m->last_error);
	free(m);
}

void
queue_free(struct queue *q)
{
	size_t		 it = 0;
	uint64_t	 k;
	void		*v;

	if (q == NULL)
		return;
	while (util_map_next(&q->by_id, &it, &k, &v))
		queue_msg_free(v);
	util_map_clear(&q->by_id);
	util_map_clear(&q->reserved);
	free(q->heap);
	free(q);
}

qid_t
queue_reserve_id(struct queue *q)
{
	qid_t	id;

	do {
		id = util_qid_random();
	} while (util_map_get(&q->by_id, id) != NULL ||
	    util_map_get(&q->reserved, id) != NULL);
	util_map_put(&q->reserved, id, (void *)1);
	return (id);
}

void
queue_release_id(struct queue *q, qid_t id)
{
	util_map_del(&q->reserved, id);
}

/* Heap helpers: a binary min-heap on next_attempt. */
static bool
queue_heap_less(const struct queue_msg *a, const struct queue_msg *b)
{
	if (a->next_attempt != b->next_attempt)
		return (a->next_attempt < b->next_attempt);
	return (a->id < b->id);
}

static void
queue_heap_set(struct queue *q, size_t i, struct queue_msg *m)
{
	q->heap[i] = m;
	m->heap_idx = (uint32_t)i;
}

static void
queue_heap_up(struct queue *q, size_t i)
{
	struct queue_msg	*m = q->heap[i];

	while (i > 0) {
		size_t	p = (i - 1) / 2;

		if (!queue_heap_less(m, q->heap[p]))
			break;
		queue_heap_set(q, i, q->heap[p]);
		i = p;
	}
	queue_heap_set(q, i, m);
}

static void
queue_heap_down(struct queue *q, size_t i)
{
	struct queue_msg	*m = q->heap[i];

	for (;;) {
		size_t	l = 2 * i + 1, r = l + 1, c;

		if (l >= q->heaplen)
			break;
		c = (r < q->heaplen && queue_heap_less(q->heap[r], q->heap[l]))
		    ? r : l;
		if (!queue_heap_less(q->heap[c], m))
			break;
		queue_heap_set(q, i, q->heap[c]);
		i = c;
	}
	queue_heap_set(q, i, m);
}

static void
queue_heap_push(struct queue *q, struct queue_msg *m)
{
	if (q->heaplen == q->heapcap) {
		q->heapcap = q->heapcap == 0 ? 64 : q->heapcap * 2;
		q->heap = xreallocarray(q->heap, q->heapcap, sizeof(*q->heap));
	}
	queue_heap_set(q, q->heaplen++, m);
	queue_heap_up(q, q->heaplen - 1);
}

static void
queue_heap_remove(struct queue *q, struct queue_msg *m)
{
	size_t	i = m->heap_idx;

	if (i == QUEUE_NOT_IN_HEAP)
		return;
	m->heap_idx = QUEUE_NOT_IN_HEAP;
	if (i == --q->heaplen)
		return;
	queue_heap_set(q, i, q->heap[q->heaplen]);
	queue_heap_up(q, i);
	queue_heap_down(q, q->heap[i]->heap_idx);
}

struct queue_msg *
queue_add(struct queue *q, qid_t id, const char *sender, uint64_t size,
    int64_t queued_at, uint32_t nrcpt_pending, int attempts,
    int64_t next_attempt, const char *last_error, bool held)
{
	struct queue_msg	*m;

	if (util_map_get(&q->by_id, id) != NULL)
		return (NULL);
	util_map_del(&q->reserved, id);
	m = xcalloc(1, sizeof(*m));
	m->id = id;
	m->sender = xstrdup(sender != NULL ? sender : "");
	m->size = size;
	m->queued_at = queued_at;
	m->nrcpt_pending = nrcpt_pending;
	m->attempts = (uint16_t)(attempts > UINT16_MAX ? UINT16_MAX : attempts);
	m->next_attempt = next_attempt;
	m->last_error = last_error != NULL ? xstrdup(last_error) : NULL;
	m->heap_idx = QUEUE_NOT_IN_HEAP;
	m->state = held ? QUEUE_HELD :
	    (attempts > 0 ? QUEUE_DEFERRED : QUEUE_ACTIVE);
	util_map_put(&q->by_id, id, m);
	q->counts[m->state]++;
	if (!held)
		queue_heap_push(q, m);
	if (q->oldest == 0 || queued_at < q->oldest)
		q->oldest = queued_at;
	return (m);
}

struct queue_msg *
queue_get(const struct queue *q, qid_t id)
{
	return (util_map_get(&q->by_id, id));
}

void
queue_remove(struct queue *q, qid_t id)
{
	struct queue_msg	*m;

	if ((m = util_map_del(&q->by_id, id)) == NULL)
		return;
	queue_heap_remove(q, m);
	q->counts[m->state]--;
	if (m->queued_at == q->oldest)
		q->oldest_stale = true;
	queue_msg_free(m);
}

void
queue_set_state(struct queue *q, struct queue_msg *m, enum queue_state st)
{
	if (m->state == st)
		return;
	q->counts[m->state]--;
	q->counts[st]++;
	if (st == QUEUE_HELD)
		queue_heap_remove(q, m);
	else if (m->state == QUEUE_HELD)
		queue_heap_push(q, m);
	m->state = (uint8_t)st;
}

void
queue_set_next_attempt(struct queue *q, struct queue_msg *m, int64_t t)
{
	m->next_attempt = t;
	if (m->heap_idx != QUEUE_NOT_IN_HEAP) {
		queue_heap_up(q, m->heap_idx);
		queue_heap_down(q, m->heap_idx);
	}
}

void
queue_set_last_error(struct queue_msg *m, const char *err)
{
	free(m->last_error);
	m->last_error = err != NULL ? xstrdup(err) : NULL;
}

struct queue_msg *
queue_peek_due(const struct queue *q)
{
	return (q->heaplen > 0 ? q->heap[0] : NULL);
}

void
queue_counts(const struct queue *qc, struct queue_counts *out)
{
	struct queue	*q = (struct queue *)qc;
	size_t		 i;

	memset(out, 0, sizeof(*out));
	out->total = q->by_id.len;
	for (i = 0; i < QUEUE_NSTATES; i++)
		out->by_state[i] = q->counts[i];
	if (q->oldest_stale) {
		/*
		 * The oldest message left: a full scan, but only after the
		 * oldest one was removed and only when somebody asks.
		 */
		size_t		 it = 0;
		uint64_t	 k;
		void		*v;

		q->oldest = 0;
		while (util_map_next(&q->by_id, &it, &k, &v)) {
			struct queue_msg *m = v;

			if (q->oldest == 0 || m->queued_at < q->oldest)
				q->oldest = m->queued_at;
		}
		q->oldest_stale = false;
	}
	out->oldest_queued_at = out->total > 0 ? q->oldest : 0;
}

static int
queue_cmp_id(const void *a, const void *b)
{
	const struct queue_msg	*x = *(struct queue_msg * const *)a;
	const struct queue_msg	*y = *(struct queue_msg * const *)b;

	return (x->id < y->id ? -1 : x->id > y->id);
}

size_t
queue_page(const struct queue *q, qid_t *cursor, struct queue_msg **out,
    size_t limit)
{
	struct queue_msg	**all;
	size_t			  it = 0, n = 0, i;
	uint64_t		  k;
	void			 *v;

	/* One pass, then a sort of the candidates: an operator command. */
	if (limit == 0 || q->by_id.len == 0)
		return (0);
	all = xreallocarray(NULL, q->by_id.len, sizeof(*all));
	while (util_map_next(&q->by_id, &it, &k, &v)) {
		struct queue_msg *m = v;

		if (m->id > *cursor)
			all[n++] = m;
	}
	qsort(all, n, sizeof(*all), queue_cmp_id);
	if (n > limit)
		n = limit;
	for (i = 0; i < n; i++)
		out[i] = all[i];
	free(all);
	if (n > 0)
		*cursor = out[n - 1]->id;
	return (n);
}
