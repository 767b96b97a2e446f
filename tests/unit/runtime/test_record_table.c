/* Unit tests for runtime/record_table.c: lookup, order, states, pages by cursor checked
 * against a plain array under random operations, and the cost of a page (tree nodes
 * visited) with a long history: a page costs what it holds, not what the table holds. */
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
    }
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
 * deep in the history, looks at a few hundred nodes, not at the 200,000 a walk from the
 * oldest record did. */
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
    /* log2(200,000) is 18; a treap's depth is a small multiple of it */
    assert_true(filtered < 2000);
    assert_true(deep < 1000);
    assert_true(oldest < 200);
    rt_record **rest = malloc(N * sizeof(*rest));
    rt_record_table_take_oldest(t, RT_RECORD_ALL_STATES, N, rest);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
