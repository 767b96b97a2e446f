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
 *   the listings) and sits in one treap ordered by it, and in a second treap of the records
 *   in its state. A treap is a binary search tree by sequence number and a heap by a
 *   priority hashed from it, so its depth is logarithmic with high probability whatever
 *   the order of insertions and removals. A page seeks its cursor in O(log n) and each
 *   entry costs O(log n) (O(k log n) when merging k states); filtering by state walks only
 *   that state's records; forgetting the oldest ended record finds it at once.
 * - One mutex guards everything here. It is a leaf: no other lock is taken under it, and
 *   owners may call in with their own locks held (a task's lock when its state changes).
 * - visits counts the tree nodes and records looked at by pages, so that a test can check
 *   that a page costs what the page holds (rt_record_table_visits).
 *
 * Thread-safety: every function but free may be called from any thread. */
#ifndef RAYD_RUNTIME_RECORD_TABLE_H
#define RAYD_RUNTIME_RECORD_TABLE_H

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
    rt_record *hnext;
    rt_record *order_kids[2];
    rt_record *state_kids[2];
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

/* Tree nodes and records pages have looked at so far (for tests: a page's cost). */
uint64_t rt_record_table_visits(rt_record_table *table);

#endif
