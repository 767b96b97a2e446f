/* Unit tests for runtime/record_table.c: lookup, order, states, pages by cursor checked
 * against a plain array under random operations, state changes in adversarial orders, and
 * the cost of a page (index entries and probes visited) with a long history: a page costs
 * what it holds, not what the table holds. test_record_table_small.c runs them again with
 * chunks of 4 pairs, and checks the index's own invariants after each test's changes. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/record_table.h"

#define NSTATES 4

typedef struct item {
    rt_record rec;
    char id[24];
    int live; /* in the table, for the model */
} item;

static item *items_new(size_t n)
{
    item *items = calloc(n, sizeof(*items));
    assert_non_null(items);
    for (size_t i = 0; i < n; i++) {
        snprintf(items[i].id, sizeof(items[i].id), "r%zu", i);
        items[i].rec.refs = 1;
    }
    return items;
}

/* Inserts items [from, to) in state `state`, one call per chunk of 100. */
static void insert_range(rt_record_table *t, item *items, size_t from, size_t to, int state)
{
    rt_record *recs[100];
    while (from < to) {
        size_t n = 0;
        while (from < to && n < 100) {
            rt_record_init(&items[from].rec, items[from].id, state);
            items[from].live = 1;
            recs[n++] = &items[from++].rec;
        }
        rt_record_table_insert(t, recs, n);
    }
}

#ifdef RECORD_TABLE_INTERNALS /* built with record_table.c included */
/* Each state's index: slots hold their chunk's first seq, chunks hold 1 to CHUNK pairs in
 * increasing seq (across chunks too) of listed records in that state, and every two
 * neighbouring chunks hold more than half a chunk between them (empty room is bounded). */
static void check_indexes(rt_record_table *t)
{
    size_t total = 0;
    for (unsigned st = 0; st < t->nstates; st++) {
        const seq_index *ix = &t->states[st];
        size_t count = 0;
        uint64_t prev = 0;
        assert_true(ix->head + ix->n <= ix->cap);
        for (size_t s = 0; s < ix->n; s++) {
            const chunk *c = slot_at(ix, s)->c;
            assert_true(c->n <= CHUNK);
            assert_true(c->n >= 1 || (ix->n == 1 && ix->count == 0)); /* or kept empty */
            if (c->n)
                assert_int_equal(slot_at(ix, s)->first, c->e[0].seq);
            if (s > 0)
                assert_true(slot_at(ix, s - 1)->c->n + c->n > CHUNK / 2);
            for (size_t i = 0; i < c->n; i++) {
                assert_true(c->e[i].seq > prev);
                prev = c->e[i].seq;
                assert_int_equal(c->e[i].rec->seq, c->e[i].seq);
                assert_int_equal(c->e[i].rec->state, st);
                assert_true(c->e[i].rec->listed);
            }
            count += c->n;
        }
        assert_int_equal(count, ix->count);
        total += count;
    }
    assert_int_equal(total, t->count);
}
#else
static void check_indexes(rt_record_table *t)
{
    (void)t;
}
#endif

static void drop_refs(rt_record **recs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        __atomic_sub_fetch(&recs[i]->refs, 1, __ATOMIC_RELAXED);
}

static void test_find_insert_remove(void **state)
{
    (void)state;
    rt_record_table *t = rt_record_table_new(NSTATES);
    assert_non_null(t);
    item *items = items_new(5000); /* past the first growth of the hash */
    insert_range(t, items, 0, 5000, 0);
    assert_int_equal(rt_record_table_count(t), 5000);
    for (size_t i = 0; i < 5000; i++)
        assert_int_equal(items[i].rec.seq, i + 1);
    rt_record *r = rt_record_table_find(t, "r4321");
    assert_ptr_equal(r, &items[4321].rec);
    assert_int_equal(r->refs, 2); /* a new reference */
    drop_refs(&r, 1);
    assert_null(rt_record_table_find(t, "nope"));
    assert_int_equal(rt_record_table_remove(t, &items[4321].rec), 1);
    assert_int_equal(rt_record_table_remove(t, &items[4321].rec), 0);
    assert_null(rt_record_table_find(t, "r4321"));
    assert_int_equal(rt_record_table_count(t), 4999);
    assert_int_equal(rt_record_table_count_state(t, 0), 4999);
    rt_record_table_set_state(t, &items[4321].rec, 2); /* out: ignored */
    assert_int_equal(rt_record_table_count_state(t, 2), 0);
    rt_record *all[5000];
    size_t n = rt_record_table_take_oldest(t, RT_RECORD_ALL_STATES, 5000, all);
    assert_int_equal(n, 4999);
    assert_int_equal(rt_record_table_count(t), 0);
    rt_record_table_free(t);
    free(items);
}

static void test_pages_and_states(void **state)
{
    (void)state;
    rt_record_table *t = rt_record_table_new(NSTATES);
    item *items = items_new(10);
    insert_range(t, items, 0, 10, 0);
    for (size_t i = 0; i < 10; i += 3)
        rt_record_table_set_state(t, &items[i].rec, 1); /* 0, 3, 6, 9 */
    assert_int_equal(rt_record_table_count_state(t, 1), 4);
    assert_int_equal(rt_record_table_count_state(t, 0), 6);

    rt_record *page[10];
    uint64_t next;
    size_t n = rt_record_table_page(t, 0, 1u << 1, page, 3, &next);
    assert_int_equal(n, 3);
    assert_ptr_equal(page[0], &items[0].rec);
    assert_ptr_equal(page[2], &items[6].rec);
    assert_int_equal(next, items[6].rec.seq);
    drop_refs(page, n);
    n = rt_record_table_page(t, next, 1u << 1, page, 3, &next);
    assert_int_equal(n, 1);
    assert_ptr_equal(page[0], &items[9].rec);
    assert_int_equal(next, 0); /* the end */
    drop_refs(page, n);
    /* exactly a page left: no cursor */
    n = rt_record_table_page(t, items[5].rec.seq, 1u << 1, page, 2, &next);
    assert_int_equal(n, 2);
    assert_int_equal(next, 0);
    drop_refs(page, n);
    /* two states merged in order */
    rt_record_table_set_state(t, &items[4].rec, 2);
    n = rt_record_table_page(t, 0, (1u << 1) | (1u << 2), page, 10, &next);
    assert_int_equal(n, 5);
    uint64_t want[] = {1, 4, 5, 7, 10};
    for (size_t i = 0; i < n; i++)
        assert_int_equal(page[i]->seq, want[i]);
    drop_refs(page, n);
    /* every state */
    n = rt_record_table_page(t, 2, RT_RECORD_ALL_STATES, page, 10, &next);
    assert_int_equal(n, 8);
    assert_int_equal(page[0]->seq, 3);
    drop_refs(page, n);
    /* the oldest of states 1 and 2 */
    n = rt_record_table_take_oldest(t, (1u << 1) | (1u << 2), 2, page);
    assert_int_equal(n, 2);
    assert_ptr_equal(page[0], &items[0].rec);
    assert_ptr_equal(page[1], &items[3].rec);
    /* a cursor whose record has left the table: the page goes on after it */
    n = rt_record_table_page(t, items[3].rec.seq, RT_RECORD_ALL_STATES, page, 2, &next);
    assert_int_equal(n, 2);
    assert_ptr_equal(page[0], &items[4].rec);
    assert_ptr_equal(page[1], &items[5].rec);
    drop_refs(page, n);
    n = rt_record_table_take_oldest(t, RT_RECORD_ALL_STATES, 10, page);
    assert_int_equal(n, 8);
    rt_record_table_free(t);
    free(items);
}

/* Random inserts, state changes, removals and pages, checked against the items array. */
static void test_random_against_model(void **state)
{
    (void)state;
    enum { N = 4000 };
    rt_record_table *t = rt_record_table_new(NSTATES);
    item *items = items_new(N);
    size_t inserted = 0;
    srand(12345);
    for (int step = 0; step < 20000; step++) {
        int op = rand() % 10;
        if (op < 3 && inserted < N) {
            insert_range(t, items, inserted, inserted + 1, rand() % NSTATES);
            inserted++;
        } else if (op < 6 && inserted) {
            item *it = &items[rand() % inserted];
            int s = rand() % NSTATES;
            rt_record_table_set_state(t, &it->rec, s);
        } else if (op < 7 && inserted) {
            item *it = &items[rand() % inserted];
            assert_int_equal(rt_record_table_remove(t, &it->rec), it->live);
            it->live = 0;
        } else if (inserted) {
            unsigned mask = (unsigned)(rand() % 15) + 1;
            uint64_t after = (uint64_t)(rand() % (inserted + 1));
            size_t max = (size_t)(rand() % 7) + 1;
            rt_record *page[8];
            uint64_t next;
            size_t n = rt_record_table_page(t, after, mask, page, max, &next);
            size_t k = 0, more = 0;
            for (size_t i = after; i < inserted; i++) { /* items[i] has seq i + 1 */
                if (!items[i].live || !(mask & (1u << items[i].rec.state)))
                    continue;
                if (k < n)
                    assert_ptr_equal(page[k], &items[i].rec);
                else
                    more++;
                k++;
            }
            assert_int_equal(n, k < max ? k : max);
            assert_int_equal(next != 0, more > 0);
            if (more)
                assert_int_equal(next, page[n - 1]->seq);
            drop_refs(page, n);
        }
        if (step % 1000 == 0)
            check_indexes(t);
    }
    check_indexes(t);
    size_t live = 0;
    for (size_t i = 0; i < inserted; i++)
        live += (size_t)items[i].live;
    assert_int_equal(rt_record_table_count(t), live);
    rt_record **rest = malloc(N * sizeof(*rest));
    assert_int_equal(rt_record_table_take_oldest(t, RT_RECORD_ALL_STATES, N, rest), live);
    for (size_t i = 1; i < live; i++)
        assert_true(rest[i - 1]->seq < rest[i]->seq);
    free(rest);
    rt_record_table_free(t);
    free(items);
}

/* The point: 200,000 records, nearly all ended (state 3), 20 running (state 1) spread
 * over the history. A page of the running ones, or a page of everything from a cursor
 * deep in the history, looks at a few dozen entries and probes, not at the 200,000 a walk
 * from the oldest record did. */
static void test_page_cost_is_the_page(void **state)
{
    (void)state;
    enum { N = 200000, RUNNING = 20 };
    rt_record_table *t = rt_record_table_new(NSTATES);
    item *items = items_new(N);
    insert_range(t, items, 0, N, 3);
    for (size_t i = 0; i < RUNNING; i++)
        rt_record_table_set_state(t, &items[i * (N / RUNNING) + 7].rec, 1);

    rt_record *page[10];
    uint64_t next = 0, cursor = 0;
    size_t got = 0;
    uint64_t before = rt_record_table_visits(t);
    do {
        size_t n = rt_record_table_page(t, cursor, 1u << 1, page, 10, &next);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(page[i]->state, 1);
        got += n;
        drop_refs(page, n);
        cursor = next;
    } while (next);
    uint64_t filtered = rt_record_table_visits(t) - before;
    assert_int_equal(got, RUNNING);

    before = rt_record_table_visits(t);
    size_t n = rt_record_table_page(t, N - 1000, RT_RECORD_ALL_STATES, page, 10, &next);
    uint64_t deep = rt_record_table_visits(t) - before;
    assert_int_equal(n, 10);
    assert_int_equal(page[0]->seq, N - 1000 + 1);
    drop_refs(page, n);

    before = rt_record_table_visits(t);
    n = rt_record_table_take_oldest(t, 1u << 1, 1, page);
    uint64_t oldest = rt_record_table_visits(t) - before;
    assert_int_equal(n, 1);
    assert_ptr_equal(page[0], &items[7].rec);
    fprintf(stderr, "  visits: 20 filtered records in 2 pages %llu, a deep page of 10 %llu, "
                    "the oldest of a state %llu (of %d records)\n",
            (unsigned long long)filtered, (unsigned long long)deep,
            (unsigned long long)oldest, N);
    /* A seek is two binary searches, about log2(200,000) = 18 probes in all; then a page
     * reads its entries and the chunks it crosses. A walk would be thousands. */
    assert_true(filtered < 200);
    assert_true(deep < 100);
    assert_true(oldest < 10);
    rt_record **rest = malloc(N * sizeof(*rest));
    rt_record_table_take_oldest(t, RT_RECORD_ALL_STATES, N, rest);
    free(rest);
    rt_record_table_free(t);
    free(items);
}


/* Reads every record in state mask through pages of `max`, and checks them against items
 * in creation order. */
static void check_pages(rt_record_table *t, item *items, size_t nitems, unsigned mask,
                        size_t max)
{
    rt_record *page[64];
    uint64_t cursor = 0, next;
    size_t k = 0;
    do {
        size_t n = rt_record_table_page(t, cursor, mask, page, max, &next);
        for (size_t i = 0; i < n; i++) {
            while (k < nitems && (!items[k].live || !(mask & (1u << items[k].rec.state))))
                k++;
            assert_true(k < nitems);
            assert_ptr_equal(page[i], &items[k++].rec);
        }
        drop_refs(page, n);
        cursor = next;
    } while (next);
    while (k < nitems && (!items[k].live || !(mask & (1u << items[k].rec.state))))
        k++;
    assert_int_equal(k, nitems); /* nothing left out */
}

/* The orders a treap did not care about and chunks do: records moving to a state from the
 * back, from the front, shuffled, and one old record arriving after 10,000 newer ones. */
static void test_state_changes_in_any_order(void **state)
{
    (void)state;
    enum { N = 10000 };
    rt_record_table *t = rt_record_table_new(NSTATES);
    item *items = items_new(N);
    insert_range(t, items, 0, N, 0);
    check_indexes(t);
    for (size_t i = N; i-- > 0;) /* newest first: every one goes in front */
        rt_record_table_set_state(t, &items[i].rec, 1);
    check_indexes(t);
    assert_int_equal(rt_record_table_count_state(t, 0), 0);
    check_pages(t, items, N, 1u << 1, 7);
    srand(777);
    size_t *order = malloc(N * sizeof(*order));
    for (size_t i = 0; i < N; i++)
        order[i] = i;
    for (size_t i = N - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1), x = order[i];
        order[i] = order[j];
        order[j] = x;
    }
    for (size_t i = 0; i < N / 2; i++) /* half of them to state 2, shuffled: splits */
        rt_record_table_set_state(t, &items[order[i]].rec, 2);
    check_indexes(t);
    check_pages(t, items, N, 1u << 2, 13);
    check_pages(t, items, N, (1u << 1) | (1u << 2), 64);
    for (size_t i = 0; i < N / 2; i++) /* and back: state 2 empties, merges */
        rt_record_table_set_state(t, &items[order[i]].rec, 1);
    check_indexes(t);
    assert_int_equal(rt_record_table_count_state(t, 2), 0);
    /* the old one last: state 3 fills in order, then item 0 goes before all of them */
    for (size_t i = 1; i < N; i++)
        rt_record_table_set_state(t, &items[i].rec, 3);
    rt_record_table_set_state(t, &items[0].rec, 3);
    check_indexes(t);
    check_pages(t, items, N, 1u << 3, 64);
    rt_record *r;
    assert_int_equal(rt_record_table_take_oldest(t, 1u << 3, 1, &r), 1);
    assert_ptr_equal(r, &items[0].rec);
    items[0].live = 0;
    /* removals in shuffled order leave holes everywhere: chunks merge, pages stay right */
    for (size_t i = 0; i < N; i++) {
        item *it = &items[order[i]];
        if (order[i] % 10 != 0 && it->live) {
            assert_int_equal(rt_record_table_remove(t, &it->rec), 1);
            it->live = 0;
        }
        if (i % 997 == 0)
            check_indexes(t);
    }
    check_indexes(t);
    assert_int_equal(rt_record_table_count(t), N / 10 - 1);
    check_pages(t, items, N, RT_RECORD_ALL_STATES, 3);
    free(order);
    rt_record **rest = malloc(N * sizeof(*rest));
    assert_int_equal(rt_record_table_take_oldest(t, RT_RECORD_ALL_STATES, N, rest), N / 10 - 1);
    check_indexes(t);
    free(rest);
    rt_record_table_free(t);
    free(items);
}

/* The daemon's pattern: records come in, run, end in about their order, and the oldest
 * ended ones are forgotten past a limit. The indexes keep what is in them, no more. */
static void test_stream_of_records(void **state)
{
    (void)state;
    enum { N = 50000, KEPT = 1000, RUNNING = 3 };
    rt_record_table *t = rt_record_table_new(NSTATES);
    item *items = items_new(N);
    for (size_t i = 0; i < N; i++) {
        insert_range(t, items, i, i + 1, 0);
        rt_record_table_set_state(t, &items[i].rec, 1);
        if (i >= RUNNING) /* ends a little out of order */
            rt_record_table_set_state(t, &items[i - RUNNING + (i % 2)].rec, 3);
        if (i >= RUNNING + 1)
            rt_record_table_set_state(t, &items[i - RUNNING - 1 + (i % 2)].rec, 3);
        while (rt_record_table_count_state(t, 3) > KEPT) {
            rt_record *r;
            assert_int_equal(rt_record_table_take_oldest(t, 1u << 3, 1, &r), 1);
            ((item *)r)->live = 0;
        }
        if (i % 4999 == 0)
            check_indexes(t);
    }
    check_indexes(t);
    assert_int_equal(rt_record_table_count_state(t, 3), KEPT);
    check_pages(t, items, N, RT_RECORD_ALL_STATES, 50);
    check_pages(t, items, N, 1u << 1, 2);
    rt_record **rest = malloc(N * sizeof(*rest));
    size_t n = rt_record_table_take_oldest(t, RT_RECORD_ALL_STATES, N, rest);
    for (size_t i = 1; i < n; i++)
        assert_true(rest[i - 1]->seq < rest[i]->seq);
    free(rest);
    rt_record_table_free(t);
    free(items);
}

/* Threads inserting, ending, forgetting and paging at once (TSan checks the locking): pages
 * stay in creation order and every record is taken out exactly once. */
enum { THREADS = 4, PER_THREAD = 5000, THREAD_KEPT = 100 };

typedef struct worker {
    rt_record_table *t;
    item *items;
    size_t taken;
} worker;

static void *worker_run(void *arg)
{
    worker *w = arg;
    rt_record *page[16];
    for (size_t i = 0; i < PER_THREAD; i++) {
        rt_record_init(&w->items[i].rec, w->items[i].id, 0);
        rt_record *rec = &w->items[i].rec;
        rt_record_table_insert(w->t, &rec, 1);
        rt_record_table_set_state(w->t, rec, 1);
        rt_record_table_set_state(w->t, rec, 3);
        if (rt_record_table_count_state(w->t, 3) > THREAD_KEPT)
            w->taken += rt_record_table_take_oldest(w->t, 1u << 3, 1, page);
        if (i % 64 == 0) {
            uint64_t next;
            size_t n = rt_record_table_page(w->t, 0, RT_RECORD_ALL_STATES, page, 16, &next);
            for (size_t k = 1; k < n; k++)
                if (page[k - 1]->seq >= page[k]->seq)
                    return "a page out of order";
            drop_refs(page, n);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    rt_record_table *t = rt_record_table_new(NSTATES);
    item *items = items_new(THREADS * PER_THREAD);
    worker w[THREADS];
    pthread_t th[THREADS];
    for (size_t k = 0; k < THREADS; k++) {
        w[k] = (worker){t, items + k * PER_THREAD, 0};
        assert_int_equal(pthread_create(&th[k], NULL, worker_run, &w[k]), 0);
    }
    size_t taken = 0;
    for (size_t k = 0; k < THREADS; k++) {
        void *err;
        pthread_join(th[k], &err);
        assert_null(err);
        taken += w[k].taken;
    }
    check_indexes(t);
    rt_record **rest = malloc(THREADS * PER_THREAD * sizeof(*rest));
    size_t n = rt_record_table_take_oldest(t, RT_RECORD_ALL_STATES, THREADS * PER_THREAD, rest);
    assert_int_equal(taken + n, THREADS * PER_THREAD);
    free(rest);
    rt_record_table_free(t);
    free(items);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_insert_remove),
        cmocka_unit_test(test_pages_and_states),
        cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_page_cost_is_the_page),
        cmocka_unit_test(test_state_changes_in_any_order),
        cmocka_unit_test(test_stream_of_records),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
