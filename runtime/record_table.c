/* The record table: ids in a hash table, creation order and states in treaps. See
 * record_table.h for the design. */
#include "runtime/record_table.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/hash.h"
#include "runtime/lock.h"

#define BUCKETS_INITIAL 1024

/* Which tree a walk is in: the order treap (every record) or a state's treap. */
enum { ORDER = 0, STATE = 1 };

struct rt_record_table {
    pthread_mutex_t lock;
    rt_record **buckets;
    size_t nbuckets, count;
    uint64_t next_seq;
    unsigned nstates;
    rt_record *order_root;
    rt_record *state_roots[RT_RECORD_STATES_MAX];
    size_t state_counts[RT_RECORD_STATES_MAX];
    uint64_t visits;
};

static rt_record **kids(rt_record *r, int tree)
{
    return tree == ORDER ? r->order_kids : r->state_kids;
}

/* The heap priority of a record: its sequence number mixed (splitmix64's finaliser), so
 * that consecutive numbers get unrelated priorities and the treap stays balanced. */
static uint64_t priority(uint64_t seq)
{
    uint64_t z = seq + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- treaps (table lock held) ------------------------------------------------------ */

/* Splits t into the records below seq (*lo) and those above it (*hi). */
static void split(rt_record *t, uint64_t seq, int tree, rt_record **lo, rt_record **hi)
{
    if (!t) {
        *lo = *hi = NULL;
    } else if (t->seq < seq) {
        split(kids(t, tree)[1], seq, tree, &kids(t, tree)[1], hi);
        *lo = t;
    } else {
        split(kids(t, tree)[0], seq, tree, lo, &kids(t, tree)[0]);
        *hi = t;
    }
}

/* Joins two treaps, every record of a below every record of b. */
static rt_record *join(rt_record *a, rt_record *b, int tree)
{
    if (!a)
        return b;
    if (!b)
        return a;
    if (priority(a->seq) > priority(b->seq)) {
        kids(a, tree)[1] = join(kids(a, tree)[1], b, tree);
        return a;
    }
    kids(b, tree)[0] = join(a, kids(b, tree)[0], tree);
    return b;
}

static rt_record *tree_insert(rt_record *t, rt_record *rec, int tree)
{
    if (!t || priority(rec->seq) > priority(t->seq)) {
        split(t, rec->seq, tree, &kids(rec, tree)[0], &kids(rec, tree)[1]);
        return rec;
    }
    int right = rec->seq > t->seq;
    kids(t, tree)[right] = tree_insert(kids(t, tree)[right], rec, tree);
    return t;
}

/* Removes rec, which is in t. */
static rt_record *tree_remove(rt_record *t, rt_record *rec, int tree)
{
    if (t == rec) {
        rt_record *joined = join(kids(t, tree)[0], kids(t, tree)[1], tree);
        kids(rec, tree)[0] = kids(rec, tree)[1] = NULL;
        return joined;
    }
    int right = rec->seq > t->seq;
    kids(t, tree)[right] = tree_remove(kids(t, tree)[right], rec, tree);
    return t;
}

/* The first record of t after seq, or NULL. Counts the nodes it looks at. */
static rt_record *tree_after(rt_record_table *table, rt_record *t, uint64_t seq, int tree)
{
    rt_record *best = NULL;
    while (t) {
        table->visits++;
        if (t->seq > seq) {
            best = t;
            t = kids(t, tree)[0];
        } else {
            t = kids(t, tree)[1];
        }
    }
    return best;
}

/* The first record after seq in the order treap (mask: every state) or in the treaps of
 * the states in mask, or NULL. */
static rt_record *first_after(rt_record_table *table, uint64_t seq, unsigned mask)
{
    unsigned all = (1u << table->nstates) - 1;
    if ((mask & all) == all)
        return tree_after(table, table->order_root, seq, ORDER);
    rt_record *best = NULL;
    for (unsigned s = 0; s < table->nstates; s++) {
        if (!(mask & (1u << s)) || !table->state_roots[s])
            continue;
        rt_record *r = tree_after(table, table->state_roots[s], seq, STATE);
        if (r && (!best || r->seq < best->seq))
            best = r;
    }
    return best;
}

/* In-order walks, for pages: the first step seeks in O(depth), each next one costs O(1)
 * on average. The stack holds the nodes whose left side the walk is in, the next record on
 * top. A treap deeper than ITER_DEPTH is all but impossible; should it happen, the stack
 * keeps its deepest part and the walk seeks again from the root when that runs out. */
#ifndef RT_RECORD_ITER_DEPTH
#define RT_RECORD_ITER_DEPTH 128 /* a test builds this file with a tiny one */
#endif
#define ITER_DEPTH RT_RECORD_ITER_DEPTH

typedef struct tree_iter {
    rt_record_table *table;
    rt_record *root;
    int tree;
    int depth;
    bool dropped;  /* nodes fell off the bottom of the stack */
    uint64_t last; /* the sequence number of the last record taken */
    rt_record *stack[ITER_DEPTH];
} tree_iter;

static void iter_push(tree_iter *it, rt_record *r)
{
    if (it->depth == ITER_DEPTH) {
        memmove(it->stack, it->stack + ITER_DEPTH / 2, (ITER_DEPTH / 2) * sizeof(*it->stack));
        it->depth = ITER_DEPTH / 2;
        it->dropped = true;
    }
    it->stack[it->depth++] = r;
}

/* Pushes the left spine from t (records after `after` only). */
static void iter_descend(tree_iter *it, rt_record *t, uint64_t after)
{
    while (t) {
        it->table->visits++;
        if (t->seq > after) {
            iter_push(it, t);
            t = kids(t, it->tree)[0];
        } else {
            t = kids(t, it->tree)[1];
        }
    }
}

static void iter_start(tree_iter *it, rt_record_table *table, rt_record *root, int tree,
                       uint64_t after)
{
    it->table = table;
    it->root = root;
    it->tree = tree;
    it->depth = 0;
    it->dropped = false;
    it->last = after;
    iter_descend(it, root, after);
}

static rt_record *iter_peek(const tree_iter *it)
{
    return it->depth ? it->stack[it->depth - 1] : NULL;
}

static void iter_next(tree_iter *it)
{
    rt_record *r = it->stack[--it->depth];
    it->last = r->seq;
    iter_descend(it, kids(r, it->tree)[1], r->seq);
    if (it->depth == 0 && it->dropped) {
        it->dropped = false;
        iter_descend(it, it->root, it->last); /* what fell off the stack */
    }
}

/* ---- the id hash (table lock held) -------------------------------------------------- */

static rt_record *hash_find(rt_record_table *table, const char *id, uint32_t hash)
{
    for (rt_record *r = table->buckets[hash & (table->nbuckets - 1)]; r; r = r->hnext)
        if (r->hash == hash && strcmp(r->id, id) == 0)
            return r;
    return NULL;
}

static void hash_grow(rt_record_table *table)
{
    size_t n = table->nbuckets * 2;
    rt_record **nb = calloc(n, sizeof(*nb));
    if (!nb)
        return; /* chains get longer; lookups still work */
    for (size_t i = 0; i < table->nbuckets; i++) {
        rt_record *r = table->buckets[i];
        while (r) {
            rt_record *next = r->hnext;
            r->hnext = nb[r->hash & (n - 1)];
            nb[r->hash & (n - 1)] = r;
            r = next;
        }
    }
    free(table->buckets);
    table->buckets = nb;
    table->nbuckets = n;
}

/* Unlinks rec from the hash; 1 when it was there. */
static int hash_remove(rt_record_table *table, rt_record *rec)
{
    rt_record **pp = &table->buckets[rec->hash & (table->nbuckets - 1)];
    while (*pp && *pp != rec)
        pp = &(*pp)->hnext;
    if (!*pp)
        return 0;
    *pp = rec->hnext;
    rec->hnext = NULL;
    return 1;
}

/* Takes rec out of the hash and both its treaps. 1 when it was in the table. */
static int remove_locked(rt_record_table *table, rt_record *rec)
{
    if (!hash_remove(table, rec))
        return 0;
    table->order_root = tree_remove(table->order_root, rec, ORDER);
    table->state_roots[rec->state] = tree_remove(table->state_roots[rec->state], rec, STATE);
    table->state_counts[rec->state]--;
    table->count--;
    return 1;
}

/* ---- the interface ------------------------------------------------------------------- */

void rt_record_init(rt_record *rec, const char *id, int state)
{
    rec->id = id;
    rec->hash = rt_hash_str(id);
    rec->state = state;
    rec->seq = 0;
    rec->hnext = NULL;
    rec->order_kids[0] = rec->order_kids[1] = NULL;
    rec->state_kids[0] = rec->state_kids[1] = NULL;
}

rt_record_table *rt_record_table_new(unsigned nstates)
{
    if (nstates == 0 || nstates > RT_RECORD_STATES_MAX)
        return NULL;
    rt_record_table *table = calloc(1, sizeof(*table));
    if (!table)
        return NULL;
    table->nstates = nstates;
    table->nbuckets = BUCKETS_INITIAL;
    table->buckets = calloc(table->nbuckets, sizeof(*table->buckets));
    if (!table->buckets) {
        free(table);
        return NULL;
    }
    rt_mutex_init(&table->lock);
    return table;
}

void rt_record_table_free(rt_record_table *table)
{
    if (!table)
        return;
    free(table->buckets);
    pthread_mutex_destroy(&table->lock);
    free(table);
}

void rt_record_table_insert(rt_record_table *table, rt_record *const *recs, size_t n)
{
    pthread_mutex_lock(&table->lock);
    for (size_t i = 0; i < n; i++) {
        rt_record *rec = recs[i];
        /* Sparse (a quarter full at most): chains stay short, and forgetting an old record
         * does not walk past many newer ones. 8 bytes per record, 4 to 8 times over. */
        if (table->count * 4 >= table->nbuckets)
            hash_grow(table);
        rec->seq = ++table->next_seq;
        size_t b = rec->hash & (table->nbuckets - 1);
        rec->hnext = table->buckets[b];
        table->buckets[b] = rec;
        table->order_root = tree_insert(table->order_root, rec, ORDER);
        table->state_roots[rec->state] = tree_insert(table->state_roots[rec->state], rec, STATE);
        table->state_counts[rec->state]++;
        table->count++;
    }
    pthread_mutex_unlock(&table->lock);
}

rt_record *rt_record_table_find(rt_record_table *table, const char *id)
{
    uint32_t hash = rt_hash_str(id);
    pthread_mutex_lock(&table->lock);
    rt_record *rec = hash_find(table, id, hash);
    if (rec)
        __atomic_add_fetch(&rec->refs, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&table->lock);
    return rec;
}

void rt_record_table_set_state(rt_record_table *table, rt_record *rec, int state)
{
    if (state < 0 || (unsigned)state >= table->nstates)
        return;
    pthread_mutex_lock(&table->lock);
    if (rec->state != state && hash_find(table, rec->id, rec->hash) == rec) {
        table->state_roots[rec->state] = tree_remove(table->state_roots[rec->state], rec, STATE);
        table->state_counts[rec->state]--;
        rec->state = state;
        table->state_roots[state] = tree_insert(table->state_roots[state], rec, STATE);
        table->state_counts[state]++;
    } else {
        rec->state = state; /* not in the table (any more): nothing to move */
    }
    pthread_mutex_unlock(&table->lock);
}

int rt_record_table_remove(rt_record_table *table, rt_record *rec)
{
    pthread_mutex_lock(&table->lock);
    int was_in = remove_locked(table, rec);
    pthread_mutex_unlock(&table->lock);
    return was_in;
}

size_t rt_record_table_page(rt_record_table *table, uint64_t after, unsigned state_mask,
                            rt_record **out, size_t max, uint64_t *next)
{
    size_t n = 0;
    *next = 0;
    if (max == 0)
        return 0;
    /* One walk over the order treap, or one per state asked for, merged. */
    tree_iter its[RT_RECORD_STATES_MAX];
    size_t nits = 0;
    pthread_mutex_lock(&table->lock);
    unsigned all = (1u << table->nstates) - 1;
    if ((state_mask & all) == all) {
        iter_start(&its[nits++], table, table->order_root, ORDER, after);
    } else {
        for (unsigned s = 0; s < table->nstates; s++)
            if ((state_mask & (1u << s)) && table->state_roots[s])
                iter_start(&its[nits++], table, table->state_roots[s], STATE, after);
    }
    for (;;) {
        tree_iter *best = NULL;
        for (size_t i = 0; i < nits; i++) {
            rt_record *r = iter_peek(&its[i]);
            if (r && (!best || r->seq < iter_peek(best)->seq))
                best = &its[i];
        }
        if (!best)
            break;
        if (n == max) {
            *next = out[n - 1]->seq; /* another one follows */
            break;
        }
        rt_record *r = iter_peek(best);
        table->visits++;
        __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
        out[n++] = r;
        iter_next(best);
    }
    pthread_mutex_unlock(&table->lock);
    return n;
}

size_t rt_record_table_take_oldest(rt_record_table *table, unsigned state_mask, size_t max,
                                   rt_record **out)
{
    size_t n = 0;
    pthread_mutex_lock(&table->lock);
    while (n < max) {
        rt_record *r = first_after(table, 0, state_mask);
        if (!r)
            break;
        remove_locked(table, r);
        out[n++] = r;
    }
    pthread_mutex_unlock(&table->lock);
    return n;
}

size_t rt_record_table_count(rt_record_table *table)
{
    pthread_mutex_lock(&table->lock);
    size_t n = table->count;
    pthread_mutex_unlock(&table->lock);
    return n;
}

size_t rt_record_table_count_state(rt_record_table *table, int state)
{
    if (state < 0 || (unsigned)state >= table->nstates)
        return 0;
    pthread_mutex_lock(&table->lock);
    size_t n = table->state_counts[state];
    pthread_mutex_unlock(&table->lock);
    return n;
}

uint64_t rt_record_table_visits(rt_record_table *table)
{
    pthread_mutex_lock(&table->lock);
    uint64_t v = table->visits;
    pthread_mutex_unlock(&table->lock);
    return v;
}
