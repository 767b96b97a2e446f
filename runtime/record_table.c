/* The record table: ids in a hash table, creation order and states in one two-level
 * sorted array per state. See record_table.h for the design. */
#include "runtime/record_table.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/hash.h"
#include "runtime/lock.h"

#define BUCKETS_INITIAL 1024

/* Pairs per chunk: 64 pairs are 1 KiB, a binary search in one touches 6 cache lines and a
 * memmove moves half of it on average. */
#ifndef RT_RECORD_CHUNK
#define RT_RECORD_CHUNK 64 /* a test builds this file with a tiny one */
#endif
#define CHUNK RT_RECORD_CHUNK
/* Two neighbouring chunks holding this many pairs or fewer merge: since a split leaves two
 * halves, a chunk splits again only after CHUNK / 2 more inserts, and merges only after
 * about as many removals, so no order of changes makes chunks come and go at every step. */
#define MERGE_AT (CHUNK / 2)

/* The seq is kept beside the pointer so that searches never read a (cold) record. */
typedef struct entry {
    uint64_t seq;
    rt_record *rec;
} entry;

typedef struct chunk {
    size_t n;
    entry e[CHUNK]; /* e[0 .. n) in increasing seq */
} chunk;

/* A chunk and a copy of its first seq, so that finding a chunk reads only this array. */
typedef struct slot {
    uint64_t first;
    chunk *c;
} slot;

/* One state's records in seq order: slots[head .. head + n) in use, room on both sides
 * so that chunks come and go at either end without moving the others. Chunks hold 1 to
 * CHUNK pairs, but for a state whose records have all left: its only chunk stays, empty
 * (states that hold a record or two at a time, like running, would otherwise add and drop
 * a chunk at every change). */
typedef struct seq_index {
    slot *slots;
    size_t head, n, cap;
    size_t count; /* records */
    chunk *spare; /* the last chunk emptied, for the next one needed: a state that drains
                   * at the front as it fills at the back (ended records, forgotten oldest
                   * first) would otherwise free one and allocate one every CHUNK changes */
} seq_index;

struct rt_record_table {
    pthread_mutex_t lock;
    rt_record **buckets;
    size_t nbuckets, count;
    uint64_t next_seq;
    unsigned nstates;
    seq_index states[RT_RECORD_STATES_MAX];
    uint64_t visits;
};

/* ---- the state indexes (table lock held) -------------------------------------------- */

static void *must_alloc(size_t size)
{
    void *p = malloc(size);
    if (!p) {
        fputs("rayd: out of memory for the record table's index\n", stderr);
        abort();
    }
    return p;
}

static slot *slot_at(const seq_index *ix, size_t i)
{
    return &ix->slots[ix->head + i];
}

/* The slot of the chunk where seq is or would go: the last one whose first seq is at most
 * seq, or the first one. The two ends, where nearly every change happens, come first.
 * ix->n > 0. Adds the probes to *visits. */
static size_t find_slot(const seq_index *ix, uint64_t seq, uint64_t *visits)
{
    size_t last = ix->n - 1;
    (*visits)++;
    if (seq >= slot_at(ix, last)->first)
        return last;
    (*visits)++;
    if (last == 0 || seq < slot_at(ix, 1)->first)
        return 0;
    size_t lo = 1, hi = last; /* the answer is in [lo, hi) */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        (*visits)++;
        if (slot_at(ix, mid)->first <= seq)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* The first position in c whose seq is above seq (c->n when none). */
static size_t chunk_after(const chunk *c, uint64_t seq, uint64_t *visits)
{
    size_t lo = 0, hi = c->n;
    (*visits)++;
    if (c->e[c->n - 1].seq <= seq)
        return c->n; /* appends */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        (*visits)++;
        if (c->e[mid].seq <= seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Moves the n slots in use to the middle of an array with room for want, growing it so that
 * at least a quarter of it is free on each side: the next cap / 4 chunks to come at either
 * end move nothing, which pays for this copy. */
static void slots_recentre(seq_index *ix, size_t want)
{
    size_t cap = ix->cap ? ix->cap : 8;
    while (want * 2 > cap)
        cap *= 2;
    size_t head = (cap - ix->n) / 2;
    if (cap != ix->cap) {
        slot *slots = must_alloc(cap * sizeof(*slots));
        if (ix->n)
            memcpy(slots + head, ix->slots + ix->head, ix->n * sizeof(*slots));
        free(ix->slots);
        ix->slots = slots;
        ix->cap = cap;
    } else {
        memmove(ix->slots + head, ix->slots + ix->head, ix->n * sizeof(*ix->slots));
    }
    ix->head = head;
}

/* Puts chunk c at slot i, moving the shorter side of the array by one. */
static void slot_insert(seq_index *ix, size_t i, chunk *c)
{
    bool front = i < ix->n / 2;
    if (front ? ix->head == 0 : ix->head + ix->n == ix->cap)
        slots_recentre(ix, ix->n + 1);
    if (front) {
        memmove(ix->slots + ix->head - 1, ix->slots + ix->head, i * sizeof(*ix->slots));
        ix->head--;
    } else {
        memmove(slot_at(ix, i + 1), slot_at(ix, i), (ix->n - i) * sizeof(*ix->slots));
    }
    ix->n++;
    *slot_at(ix, i) = (slot){c->e[0].seq, c};
}

/* Drops slot i (its chunk is freed by the caller), moving the shorter side by one. */
static void slot_remove(seq_index *ix, size_t i)
{
    if (i < ix->n / 2) {
        memmove(slot_at(ix, 1), slot_at(ix, 0), i * sizeof(*ix->slots));
        ix->head++;
    } else {
        memmove(slot_at(ix, i), slot_at(ix, i + 1), (ix->n - i - 1) * sizeof(*ix->slots));
    }
    ix->n--;
}

static chunk *chunk_new(seq_index *ix)
{
    chunk *c = ix->spare;
    if (c)
        ix->spare = NULL;
    else
        c = must_alloc(sizeof(*c));
    c->n = 0;
    return c;
}

static void chunk_free(seq_index *ix, chunk *c)
{
    if (ix->spare)
        free(c);
    else
        ix->spare = c;
}

/* Inserts (seq, rec); seq is not in ix. */
static void index_insert(seq_index *ix, uint64_t seq, rt_record *rec)
{
    uint64_t probes = 0;
    ix->count++;
    if (ix->n == 0) {
        chunk *c = chunk_new(ix);
        c->e[c->n++] = (entry){seq, rec};
        slot_insert(ix, 0, c);
        return;
    }
    size_t s = find_slot(ix, seq, &probes);
    chunk *c = slot_at(ix, s)->c;
    if (c->n == 0) { /* the state's only chunk, emptied */
        c->e[c->n++] = (entry){seq, rec};
        slot_at(ix, s)->first = seq;
        return;
    }
    size_t i = chunk_after(c, seq, &probes);
    if (c->n == CHUNK) {
        chunk *fresh = chunk_new(ix);
        if (i == CHUNK && s == ix->n - 1) {
            /* past the end: a new last chunk, and the full one stays full */
            fresh->e[fresh->n++] = (entry){seq, rec};
            slot_insert(ix, s + 1, fresh);
            return;
        }
        if (i == 0 && s == 0 && seq < c->e[0].seq) {
            fresh->e[fresh->n++] = (entry){seq, rec}; /* before the start, likewise */
            slot_insert(ix, 0, fresh);
            return;
        }
        /* in the middle: the upper half moves to a new chunk after c */
        fresh->n = CHUNK / 2;
        c->n = CHUNK - CHUNK / 2;
        memcpy(fresh->e, c->e + c->n, fresh->n * sizeof(entry));
        slot_insert(ix, s + 1, fresh);
        if (i > c->n) {
            i -= c->n;
            c = fresh;
            s++;
        }
    }
    memmove(c->e + i + 1, c->e + i, (c->n - i) * sizeof(entry));
    c->e[i] = (entry){seq, rec};
    c->n++;
    if (i == 0)
        slot_at(ix, s)->first = seq;
}

/* Merges slot s+1's chunk into slot s's when the two hold MERGE_AT pairs or fewer. */
static void merge_with_next(seq_index *ix, size_t s)
{
    if (s + 1 >= ix->n)
        return;
    chunk *c = slot_at(ix, s)->c, *next = slot_at(ix, s + 1)->c;
    if (c->n + next->n > MERGE_AT)
        return;
    memcpy(c->e + c->n, next->e, next->n * sizeof(entry));
    c->n += next->n;
    slot_remove(ix, s + 1);
    chunk_free(ix, next);
}

/* Removes the pair at position i of slot s's chunk. Every two neighbouring chunks hold
 * more than MERGE_AT pairs between them, which bounds the index's empty room. */
static void index_remove_at(seq_index *ix, size_t s, size_t i)
{
    chunk *c = slot_at(ix, s)->c;
    ix->count--;
    c->n--;
    memmove(c->e + i, c->e + i + 1, (c->n - i) * sizeof(entry));
    if (c->n == 0) {
        if (ix->n == 1)
            return; /* a state's only chunk stays, empty, for its next record */
        slot_remove(ix, s);
        chunk_free(ix, c);
        return;
    }
    if (i == 0)
        slot_at(ix, s)->first = c->e[0].seq;
    merge_with_next(ix, s);
    if (s > 0)
        merge_with_next(ix, s - 1);
}

/* Removes seq, which is in ix. */
static void index_remove(seq_index *ix, uint64_t seq)
{
    uint64_t probes = 0;
    size_t s = find_slot(ix, seq, &probes);
    chunk *c = slot_at(ix, s)->c;
    size_t i = c->e[0].seq == seq ? 0 : chunk_after(c, seq - 1, &probes);
    index_remove_at(ix, s, i);
}

static void index_free(seq_index *ix)
{
    for (size_t s = 0; s < ix->n; s++)
        free(slot_at(ix, s)->c);
    free(ix->spare);
    free(ix->slots);
    *ix = (seq_index){0};
}

/* A walk through one index in seq order, for pages and take_oldest: slot s, position i. */
typedef struct index_iter {
    const seq_index *ix;
    size_t s, i;
} index_iter;

/* Starts at the first record after seq `after`. */
static void iter_start(index_iter *it, const seq_index *ix, uint64_t after, uint64_t *visits)
{
    it->ix = ix;
    it->s = it->i = 0;
    if (ix->n == 0 || after == 0)
        return;
    it->s = find_slot(ix, after, visits);
    it->i = chunk_after(slot_at(ix, it->s)->c, after, visits);
    if (it->i == slot_at(ix, it->s)->c->n) {
        it->s++;
        it->i = 0;
    }
}

static const entry *iter_peek(const index_iter *it)
{
    return it->s < it->ix->n ? &slot_at(it->ix, it->s)->c->e[it->i] : NULL;
}

static void iter_next(index_iter *it, uint64_t *visits)
{
    if (++it->i == slot_at(it->ix, it->s)->c->n) {
        it->s++;
        it->i = 0;
        (*visits)++; /* a chunk more */
    }
}

/* The states a mask asks for that have records: the indexes to merge. */
static size_t start_walks(rt_record_table *table, unsigned mask, uint64_t after,
                          index_iter *its)
{
    size_t n = 0;
    for (unsigned s = 0; s < table->nstates; s++)
        if ((mask & (1u << s)) && table->states[s].count)
            iter_start(&its[n++], &table->states[s], after, &table->visits);
    return n;
}

/* The walk whose next record comes first (the oldest), or NULL when all are done. */
static index_iter *first_of(index_iter *its, size_t n)
{
    index_iter *best = NULL;
    const entry *best_e = NULL;
    for (size_t k = 0; k < n; k++) {
        const entry *e = iter_peek(&its[k]);
        if (e && (!best || e->seq < best_e->seq)) {
            best = &its[k];
            best_e = e;
        }
    }
    return best;
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

/* Takes rec out of the hash and its state's index. 1 when it was in the table. */
static int remove_locked(rt_record_table *table, rt_record *rec)
{
    if (!rec->listed)
        return 0;
    hash_remove(table, rec);
    index_remove(&table->states[rec->state], rec->seq);
    rec->listed = false;
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
    rec->listed = false;
    rec->hnext = NULL;
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
    for (unsigned s = 0; s < table->nstates; s++)
        index_free(&table->states[s]);
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
        rec->listed = true;
        index_insert(&table->states[rec->state], rec->seq, rec); /* appends */
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
    if (rec->state != state && rec->listed) {
        index_remove(&table->states[rec->state], rec->seq);
        rec->state = state;
        index_insert(&table->states[state], rec->seq, rec);
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
    /* One walk per state asked for, merged in creation order. */
    index_iter its[RT_RECORD_STATES_MAX];
    pthread_mutex_lock(&table->lock);
    size_t nits = start_walks(table, state_mask, after, its);
    index_iter *best;
    while ((best = first_of(its, nits))) {
        if (n == max) {
            *next = out[n - 1]->seq; /* another one follows */
            break;
        }
        rt_record *r = iter_peek(best)->rec;
        table->visits++;
        __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
        out[n++] = r;
        iter_next(best, &table->visits);
    }
    pthread_mutex_unlock(&table->lock);
    return n;
}

size_t rt_record_table_take_oldest(rt_record_table *table, unsigned state_mask, size_t max,
                                   rt_record **out)
{
    size_t n = 0;
    index_iter its[RT_RECORD_STATES_MAX];
    pthread_mutex_lock(&table->lock);
    while (n < max) {
        /* the oldest is at the head of one of the states' indexes */
        size_t nits = start_walks(table, state_mask, 0, its);
        table->visits += nits;
        index_iter *best = first_of(its, nits);
        if (!best)
            break;
        rt_record *r = iter_peek(best)->rec;
        hash_remove(table, r);
        index_remove_at(&table->states[r->state], 0, 0);
        r->listed = false;
        table->count--;
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
    size_t n = table->states[state].count;
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
