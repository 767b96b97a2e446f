/* rt_record_table: the table of task records and of actor records: lookup by id, creation
 * order, states, and pages by cursor. Each costs what it touches, not what the table has
 * ever held, so a long history slows no page and no submission.
 *
 * A record is embedded in its owner's struct (a task, an actor) and carries the owner's
 * reference count: the table holds the owner's first reference while the record is in it
 * (it never takes or drops that one itself), and lookups and pages hand out new references
 * that the owner's own decref drops. The owner frees the struct when the count reaches 0.
 *
 * DESIGN
 * - Ids: a hash table, chained, kept a quarter full at most.
 * - Order: every record has a sequence number (1, 2, ... in insertion order, the cursor of
 *   the listings) and sits in the index of its state: the state's (seq, record) pairs in
 *   order, in chunks of up to RT_RECORD_CHUNK pairs, under a flat array of the chunks
 *   and their first numbers (a two-level sorted array; the seq beside each pointer, so that
 *   no search reads a record). Records come in with the highest number and mostly change
 *   state and leave in about that order, so nearly every change appends to a state's last
 *   chunk or takes from its first one: a few hot cache lines, where the treaps this
 *   replaced walked O(log n) cold records per change (bench f's largest user-space cost).
 *   Any other place costs two binary searches and a memmove within a chunk; a full chunk
 *   splits, and neighbours holding half a chunk or less between them merge, so chunks are
 *   more than a quarter full on average whatever the order. The chunk array moves its
 *   shorter side when a chunk comes or goes (nothing at its two ends): at most
 *   n / RT_RECORD_CHUNK slots, and a chunk comes or goes only every RT_RECORD_CHUNK / 2
 *   or so changes in one place. There is no index of all states: creation order is the
 *   merge of the state indexes (a handful), which keeps each change to one index. A page
 *   seeks its cursor by binary search in each state it asks for, then reads consecutive
 *   pairs (each entry costs O(k) when merging k states); filtering by state reads only
 *   that state's index; forgetting the oldest ended record reads the indexes' heads.
 * - Memory: the hash's 8 to 32 bytes and the index's 16 to 64 bytes per record (16 when
 *   chunks are full, as appends leave them), and a spare chunk per state; none of it in
 *   the record (40 bytes; 72 with the treaps' pointers). Out of memory for an index chunk
 *   aborts: an insert or a state change has no way to fail without breaking the reference
 *   rules above, and a daemon that cannot get 1 KiB cannot go on anyway.
 * - One mutex guards everything here. It is a leaf: no other lock is taken under it, and
 *   owners may call in with their own locks held (a task's lock when its state changes).
 * - visits counts the index entries, chunks and binary search probes looked at by pages
 *   and by take_oldest, so that a test can check that a page costs what the page holds
 *   (rt_record_table_visits).
 *
 * Thread-safety: every function but free may be called from any thread. */
#ifndef RAYD_RUNTIME_RECORD_TABLE_H
#define RAYD_RUNTIME_RECORD_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RT_RECORD_STATES_MAX 8
#define RT_RECORD_ALL_STATES 0xffu /* a state mask with every state */

typedef struct rt_record rt_record;
struct rt_record {
    int refs;               /* atomic: the owner's reference count */
    int state;              /* the table's copy of the owner's state (table lock) */
    uint64_t seq;           /* creation order, set by insert (then read-only) */
    const char *id;         /* the owner's id (borrowed, lives as long as the record) */
    uint32_t hash;
    /* table-private: */
    bool listed; /* in the table (table lock) */
    rt_record *hnext;
};

typedef struct rt_record_table rt_record_table;

/* Prepares a record before insertion: its id (borrowed: the owner's own copy, which must
 * live as long as the record) and its first state. refs is left to the owner. */
void rt_record_init(rt_record *rec, const char *id, int state);

/* A new empty table of records in states 0 .. nstates-1 (at most RT_RECORD_STATES_MAX), or
 * NULL when out of memory. */
rt_record_table *rt_record_table_new(unsigned nstates);
/* Frees the table's own memory, not the records (take them out first). NULL accepted. */
void rt_record_table_free(rt_record_table *table);

/* Inserts n records (prepared with rt_record_init) in this order, giving them the next
 * sequence numbers. The table now holds each owner's first reference. */
void rt_record_table_insert(rt_record_table *table, rt_record *const *recs, size_t n);

/* The record with this id, as a new reference, or NULL. */
rt_record *rt_record_table_find(rt_record_table *table, const char *id);

/* Moves a record to another state. Call it whenever the owner's state changes (with the
 * owner's lock held, so that the changes of one record come in order). A record no longer
 * in the table is ignored. */
void rt_record_table_set_state(rt_record_table *table, rt_record *rec, int state);

/* Takes a record out (if still in). Returns 1 when it was in: the caller then owns the
 * table's reference, and drops it; 0 when it was not. */
int rt_record_table_remove(rt_record_table *table, rt_record *rec);

/* A page: up to max records in creation order whose sequence number is above after and
 * whose state is in state_mask (bit s for state s), written to out as new references.
 * Returns how many; *next is the sequence number of the last one when more follow, else
 * 0. */
size_t rt_record_table_page(rt_record_table *table, uint64_t after, unsigned state_mask,
                            rt_record **out, size_t max, uint64_t *next);

/* Takes out the up to max oldest records whose state is in state_mask, oldest first, into
 * out: the caller owns the table's reference of each and drops it. Returns how many. */
size_t rt_record_table_take_oldest(rt_record_table *table, unsigned state_mask, size_t max,
                                   rt_record **out);

/* Records in the table now, and in one state now. */
size_t rt_record_table_count(rt_record_table *table);
size_t rt_record_table_count_state(rt_record_table *table, int state);

/* Index entries, chunks and search probes pages and take_oldest have looked at so far (for
 * tests: a page's cost). */
uint64_t rt_record_table_visits(rt_record_table *table);

#endif
