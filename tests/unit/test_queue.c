/*
 * test_queue.c: the in-memory queue index: id reservation, the due heap,
 * state counts, the oldest-message gauge and paging.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "queue.h"
#include "util.h"

Test(queue, reserved_ids_are_unique_and_released_by_add)
{
	struct queue	*q = queue_new();
	struct util_map	 seen;
	qid_t		 id;
	int		 i;

	util_map_init(&seen);
	for (i = 0; i < 5000; i++) {
		id = queue_reserve_id(q);
		cr_assert_neq(id, 0);
		cr_assert_null(util_map_get(&seen, id), "id %08X twice", id);
		util_map_put(&seen, id, (void *)1);
	}
	cr_assert_not_null(queue_add(q, id, "a@b", 10, 100, 1, 0, 100, NULL,
	    false));
	cr_assert_null(queue_add(q, id, "a@b", 10, 100, 1, 0, 100, NULL,
	    false), "the same id is not added twice");
	util_map_clear(&seen);
	queue_free(q);
}

Test(queue, due_heap_orders_by_next_attempt)
{
	struct queue		*q = queue_new();
	struct queue_msg	*m;
	int64_t			 last = INT64_MIN;
	int			 i;

	for (i = 0; i < 1000; i++) {
		uint32_t r;

		util_random(&r, sizeof(r));
		queue_add(q, (qid_t)(i + 1), "s", 1, 1000, 1, 0, r % 100000,
		    NULL, false);
	}
	/* Popping by moving the head to the far future visits in order. */
	for (i = 0; i < 1000; i++) {
		m = queue_peek_due(q);
		cr_assert_not_null(m);
		cr_assert_geq(m->next_attempt, last);
		last = m->next_attempt;
		queue_set_next_attempt(q, m, INT64_MAX);
	}
	queue_free(q);
}

Test(queue, held_messages_leave_the_heap_and_come_back)
{
	struct queue		*q = queue_new();
	struct queue_msg	*a, *b;
	struct queue_counts	 c;

	a = queue_add(q, 1, "s", 1, 1000, 1, 0, 10, NULL, false);
	b = queue_add(q, 2, "s", 1, 1000, 1, 2, 20, "451 later", false);
	cr_assert_eq(a->state, QUEUE_ACTIVE);
	cr_assert_eq(b->state, QUEUE_DEFERRED, "attempts > 0 is deferred");
	queue_set_state(q, a, QUEUE_HELD);
	cr_assert_eq(queue_peek_due(q), b);
	queue_counts(q, &c);
	cr_assert_eq(c.total, 2);
	cr_assert_eq(c.by_state[QUEUE_HELD], 1);
	cr_assert_eq(c.by_state[QUEUE_DEFERRED], 1);
	queue_set_state(q, a, QUEUE_ACTIVE);
	cr_assert_eq(queue_peek_due(q), a);
	queue_remove(q, 1);
	queue_remove(q, 2);
	cr_assert_null(queue_peek_due(q));
	queue_counts(q, &c);
	cr_assert_eq(c.total, 0);
	cr_assert_eq(c.oldest_queued_at, 0);
	queue_free(q);
}

Test(queue, oldest_gauge_follows_removals)
{
	struct queue		*q = queue_new();
	struct queue_counts	 c;

	queue_add(q, 1, "s", 1, 300, 1, 0, 0, NULL, false);
	queue_add(q, 2, "s", 1, 100, 1, 0, 0, NULL, false);
	queue_add(q, 3, "s", 1, 200, 1, 0, 0, NULL, true);
	queue_counts(q, &c);
	cr_assert_eq(c.oldest_queued_at, 100);
	queue_remove(q, 2);
	queue_counts(q, &c);
	cr_assert_eq(c.oldest_queued_at, 200, "held messages count too");
	queue_free(q);
}

Test(queue, paging_visits_every_message_once_in_id_order)
{
	struct queue		*q = queue_new();
	struct queue_msg	*page[64];
	qid_t			 cursor = 0, last = 0;
	size_t			 n, total = 0, i;

	for (i = 0; i < 1000; i++)
		queue_add(q, queue_reserve_id(q), "s", 1, 1, 1, 0, 0, NULL,
		    false);
	while ((n = queue_page(q, &cursor, page, nitems(page))) > 0) {
		for (i = 0; i < n; i++) {
			cr_assert_gt(page[i]->id, last);
			last = page[i]->id;
		}
		total += n;
	}
	cr_assert_eq(total, 1000);
	queue_free(q);
}
