/* rt_store: rayd's object store, Ray's plasma store in one process.
 *
 * An object is a ref (id) naming one of:
 *   PENDING  a result that does not exist yet (a task's return value),
 *   READY    an immutable buffer (rt_buf) with its content type,
 *   ERROR    a stored error (rt_error), which travels through refs like a value,
 *   LOST     a tombstone: the object existed but was freed, evicted or expired.
 * An object leaves PENDING exactly once, and watchers registered on it are then called.
 *
 * Memory: the bytes of READY objects and of stored errors count against memory_limit. What a
 * put that would go over it does is the configured rt_on_full: with RT_ON_FULL_SPILL the
 * spill thread writes unpinned READY objects, least recently used first, to spill files
 * (rt_spill) and releases their memory; a spilled object stays READY and is read from its
 * file; an object that cannot wait for that (larger than the limit, or nothing left to
 * spill) is written to a spill file by the put itself; past the disk limit too the put
 * fails with RT_EFULL. With RT_ON_FULL_REFUSE the put fails with RT_EFULL at once. With
 * RT_ON_FULL_EVICT (described next) a put first evicts unpinned READY and ERROR objects in
 * least-recently-used order (second-chance approximation: a GET only sets a flag, so reads never take a global
 * lock), and fails with RT_EFULL when that is not enough. An error is always stored: one
 * that does not fit even after eviction is stored as its summary (rt_error_summary, at most
 * RT_ERROR_SUMMARY_MAX bytes), the only way the store goes over its limit. Pinned objects
 * are never evicted. Evicted, freed and expired objects become LOST tombstones (about 120
 * bytes each) so that clients can tell "gone" (410) from "never existed" (404); at most
 * max_tombstones are kept, and the oldest beyond that are forgotten, so that a long
 * history costs bounded memory.
 *
 * Thread-safety: every function may be called from any thread. Objects live in a hash
 * table split into shards, each with its own mutex; a lookup takes one shard lock. The LRU
 * list has its own mutex, taken by puts, pins and eviction, never by reads. Lock order is
 * shard -> LRU, never the reverse. Watcher callbacks run outside all store locks, on the
 * thread that resolved the object. */
#ifndef RAYD_RUNTIME_OBJECT_STORE_H
#define RAYD_RUNTIME_OBJECT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/buffer.h"
#include "runtime/error.h"
#include "runtime/ref.h"
#include "runtime/spill.h"
#include "runtime/status.h"

typedef struct rt_store rt_store;

typedef enum rt_object_state {
    RT_OBJ_PENDING = 0,
    RT_OBJ_READY,
    RT_OBJ_ERROR,
    RT_OBJ_LOST
} rt_object_state;

/* Why a LOST object was lost. */
typedef enum rt_lost_reason {
    RT_LOST_NONE = 0,
    RT_LOST_FREED,
    RT_LOST_EVICTED,
    RT_LOST_EXPIRED
} rt_lost_reason;

/* What a put does when the store is at its memory limit. */
typedef enum rt_on_full {
    RT_ON_FULL_EVICT = 0, /* evict least-recently-used objects: they are lost (410) */
    RT_ON_FULL_REFUSE,    /* refuse the put (RT_EFULL) at once; nothing is lost */
    RT_ON_FULL_SPILL      /* write cold objects to spill files; nothing is lost */
} rt_on_full;

typedef struct rt_store_config {
    size_t memory_limit; /* bytes of READY objects and errors; 0 means unlimited */
    size_t max_tombstones; /* LOST objects remembered (older ones are forgotten: unknown
                              refs); 0: the default, 100,000 */
    rt_on_full on_full;
    double result_ttl;   /* seconds of TTL results (rt_store_create_pending) get once
                            stored; 0: none */
    rt_spill *spill;     /* RT_ON_FULL_SPILL: where to spill (borrowed; closed after the
                            store is freed) */
} rt_store_config;

typedef struct rt_store_stats {
    size_t objects;     /* objects not LOST (secondary copies not counted) */
    size_t bytes;       /* bytes of READY objects and of stored errors */
    size_t error_bytes; /* the part of bytes that stored errors (and their causes) take */
    size_t pending;     /* objects PENDING */
    size_t tombstones;  /* LOST objects remembered */
    size_t max_tombstones; /* at most */
    uint64_t tombstones_forgotten; /* LOST objects forgotten to keep within the bound */
    size_t memory_limit;
    uint64_t hits;      /* reads that found an object that was not LOST */
    uint64_t misses;    /* reads of unknown or LOST refs */
    uint64_t evictions; /* objects evicted under memory pressure */
    uint64_t expirations;
    size_t copies;      /* secondary copies of other nodes' objects (cluster mode) */
    size_t copy_bytes;  /* their bytes, also counted in bytes */
    rt_on_full on_full;
    size_t spilled;       /* READY objects whose bytes are in spill files, not memory */
    size_t spilled_bytes; /* their bytes (not counted in bytes) */
    uint64_t spills;      /* objects written to spill files, ever */
    uint64_t restores;    /* spilled objects read back into memory (task arguments...) */
    uint64_t restored_bytes; /* their bytes */
    double spill_thread_seconds; /* time the spill thread spent in rounds: with
                                    disk.write_bytes, its write rate while it works */
    rt_spill_stats disk;  /* the spill files (all zero without spilling) */
} rt_store_stats;

/* A snapshot of one object, filled by rt_store_get / rt_store_peek. buf and error are new
 * references (or NULL): release them with rt_object_view_release. */
typedef struct rt_object_view {
    char ref[RT_REF_SIZE];
    rt_object_state state;
    rt_lost_reason lost_reason;
    rt_buf *buf;        /* READY: the bytes (new reference; a copy of a value of up to 32
                           bytes, which the store keeps in the object's record); NULL for
                           a spilled object read with rt_store_get_file / _peek_file */
    rt_spilled *spilled; /* that spilled object's place on disk (new reference), else NULL */
    rt_error *error;    /* ERROR: the error (new reference) */
    size_t size;        /* READY: bytes; else 0 */
    const char *content_type; /* READY: interned; else NULL */
    double created_at;  /* wall clock seconds */
    double expires_at;  /* wall clock seconds, 0 when no TTL */
    unsigned pins;
    uint64_t seq;       /* creation order, used for paging */
    bool copy;          /* a secondary copy of another node's object (cluster mode) */
} rt_object_view;

void rt_object_view_release(rt_object_view *view);

/* Returns "pending", "ready", "error" or "lost". */
const char *rt_object_state_name(rt_object_state state);
/* Parses a name of rt_object_state_name; returns -1 when unknown. */
int rt_object_state_parse(const char *name);

/* Creates a store. Returns a new store or NULL when out of memory. */
rt_store *rt_store_new(const rt_store_config *config);
/* Frees the store and every object. Watchers still registered are dropped without being
 * called. NULL accepted. No other thread may use the store during or after this call. */
void rt_store_free(rt_store *store);

/* Stores a READY object. buf is stolen on success (the store keeps the caller's reference);
 * on failure the caller still owns it. ttl_seconds > 0 makes the object expire after that
 * long. Writes the new ref into ref_out.
 * Returns RT_OK, RT_EFULL (does not fit even after eviction), RT_ENOMEM. */
rt_status rt_store_put(rt_store *store, rt_buf *buf, double ttl_seconds,
                       char ref_out[RT_REF_SIZE]);

/* Stores several READY objects, all or nothing: every buf is stolen on success, none on
 * failure. refs_out receives n refs. Returns as rt_store_put. */
rt_status rt_store_put_many(rt_store *store, rt_buf **bufs, size_t n,
                            char (*refs_out)[RT_REF_SIZE]);

/* Creates a PENDING object whose value will come later (rt_store_resolve / _fail): a
 * result, which gets the store's default result TTL (rt_store_config.result_ttl) from when
 * it is stored. Returns RT_OK or RT_ENOMEM. */
rt_status rt_store_create_pending(rt_store *store, char ref_out[RT_REF_SIZE]);

/* As rt_store_create_pending with a TTL of its own: result_ttl > 0 seconds from when it
 * is stored (resolved or failed), 0 the store's default, < 0 none. */
rt_status rt_store_create_pending_ttl(rt_store *store, double result_ttl,
                                      char ref_out[RT_REF_SIZE]);

/* Resolves a PENDING object to READY with buf (stolen on RT_OK; kept by the caller
 * otherwise), or fails it with err (borrowed; the store takes its own reference). Wakes
 * watchers. Returns RT_OK, RT_ENOTFOUND, RT_ELOST (it was freed meanwhile: the value is
 * dropped, which is not an error for the producer), RT_ESTATE (not pending), RT_EFULL
 * (resolve only: a failure is stored even then, see Memory above), RT_ENOMEM (fail). */
rt_status rt_store_resolve(rt_store *store, const char *ref, rt_buf *buf);
rt_status rt_store_fail(rt_store *store, const char *ref, rt_error *err);

/* Reads an object: fills view (new references inside). Counts a hit or a miss and marks the
 * object recently used. Returns RT_OK (view filled, any state but LOST), RT_ELOST (view
 * filled with state LOST and the reason), RT_ENOTFOUND (only view->buf and view->error are
 * set, to NULL), RT_ENOMEM (no memory for the bytes: a small value's copy, or a spilled
 * value read back). Releasing the view is safe after every outcome. */
rt_status rt_store_get(rt_store *store, const char *ref, rt_object_view *view);

/* As rt_store_get, without counting a hit or miss and without marking it used. */
rt_status rt_store_peek(rt_store *store, const char *ref, rt_object_view *view);

/* As rt_store_get and rt_store_peek, but a spilled object is not read back: view->buf is
 * NULL and view->spilled says where its bytes are (for sendfile). rt_store_get and
 * rt_store_peek read a spilled object back into a new buffer that the view alone holds
 * (the store does not keep it, nor count it against its limit). */
rt_status rt_store_get_file(rt_store *store, const char *ref, rt_object_view *view);
rt_status rt_store_peek_file(rt_store *store, const char *ref, rt_object_view *view);

/* Frees an object (as ray free): it becomes a LOST tombstone, its bytes are released once
 * no reader holds them, and its watchers are woken. Returns RT_OK, RT_ENOTFOUND, RT_ELOST
 * (already gone). */
rt_status rt_store_delete(rt_store *store, const char *ref);

/* As rt_store_delete; *was_shared (when not NULL) tells whether the object was marked
 * shared (rt_store_mark_shared): other nodes may hold copies to drop. */
rt_status rt_store_delete_ex(rt_store *store, const char *ref, bool *was_shared);

/* Frees an object as rt_store_delete does, unless it is pinned (a task or actor call that
 * has not ended depends on it): then it stays as it is until its last pin goes, which
 * frees it (*deferred, when not NULL, says which happened). This is how a session's
 * objects go when it closes (runtime/session.h). Returns RT_OK, RT_ENOTFOUND, RT_ELOST. */
rt_status rt_store_release(rt_store *store, const char *ref, bool *deferred);

/* Secondary copies (cluster mode): a READY object that another node owns, kept here after
 * it was fetched so that later reads need no hop. A copy is found by rt_store_get/_peek
 * like any object (view->copy says so), is evictable at any time, is never listed, and
 * when evicted or dropped it leaves no tombstone (the owner answers whether it is gone).
 *
 * rt_store_put_copy stores buf (stolen on RT_OK) under ref, a foreign id of at most
 * RT_REF_MADE_MAX characters. Returns RT_OK, RT_EEXIST (the ref is here already: the
 * caller keeps buf), RT_EFULL, RT_ENOMEM, RT_EINVAL (not such an id).
 * rt_store_drop_copy removes a copy: RT_OK, or RT_ENOTFOUND when there is no copy of ref
 * (an object this node owns is never touched). rt_store_delete on a copy drops it too. */
rt_status rt_store_put_copy(rt_store *store, const char *ref, rt_buf *buf);
rt_status rt_store_drop_copy(rt_store *store, const char *ref);

/* Stand-ins (cluster mode): a PENDING secondary copy of another node's object that is not
 * here yet, so that parked requests, task and actor dependencies wait on it like on any
 * pending object. Whoever made it (runtime/cluster_fetch.c) resolves it with
 * rt_store_resolve (it becomes a copy) or rt_store_fail (an error copy: the owner's
 * error, or ObjectLost). It is never listed and leaves no tombstone; rt_store_drop_copy
 * and rt_store_delete leave it alone while it is pending (its resolution wakes its
 * watchers).
 *
 * rt_store_put_standin: RT_OK, RT_EEXIST (the ref is here already), RT_ENOMEM, RT_EINVAL.
 * rt_store_drop_standin removes a pending stand-in that nobody watches or pins: RT_OK,
 * RT_ESTATE (watched or pinned: it stays), RT_ENOTFOUND (no pending stand-in of ref). */
rt_status rt_store_put_standin(rt_store *store, const char *ref);
rt_status rt_store_drop_standin(rt_store *store, const char *ref);

/* Marks an object this node owns as fetched by another node, so that freeing it tells
 * rt_store_delete_ex's caller to have copies dropped. RT_OK, or RT_ENOTFOUND (unknown, or
 * a copy). */
rt_status rt_store_mark_shared(rt_store *store, const char *ref);

/* Pins protect an object (a value or an error) from eviction; they nest. The last unpin puts the object at the
 * most-recently-used end of the LRU (as Ray's plasma store does). Returns RT_OK,
 * RT_ENOTFOUND, RT_ELOST, or for unpin RT_ESTATE when not pinned (unpinning a lost object
 * that still had pins is RT_OK). */
rt_status rt_store_pin(rt_store *store, const char *ref);
rt_status rt_store_unpin(rt_store *store, const char *ref);

/* Watchers. The caller owns the rt_watcher and keeps it alive until either its callback has
 * run or rt_store_unwatch returned 1. The callback runs once, when the object leaves
 * PENDING (to READY, ERROR or LOST, including when freed), outside store locks, on the
 * resolving thread; it must not block. */
typedef struct rt_watcher rt_watcher;
typedef void (*rt_watch_fn)(rt_watcher *watcher, void *arg);
struct rt_watcher {
    rt_watcher *prev, *next; /* store-private: the object's watcher list */
    void *object;            /* store-private: the watched object */
    void *shard;             /* store-private: the shard whose lock guards the above */
    int fired;               /* store-private */
    rt_watch_fn fn;          /* set by the caller */
    void *arg;               /* set by the caller */
};

/* Registers watcher (fn and arg set by the caller) on a PENDING object: returns RT_OK (0).
 * When the object is already resolved (READY, ERROR or LOST) returns 1 and does not
 * register. RT_ENOTFOUND for unknown refs. */
int rt_store_watch(rt_store *store, const char *ref, rt_watcher *watcher);

/* Removes a registered watcher that has not fired. Returns 1 when removed (the callback
 * will never run), 0 when it has fired or is firing: the callback runs or ran, perhaps on
 * another thread right now, so the caller must not free what the callback uses until it
 * knows the callback finished. */
int rt_store_unwatch(rt_store *store, rt_watcher *watcher);

/* Turns objects whose TTL has passed into LOST tombstones; returns how many. Call it now
 * and then (the service does, every second); reads also check expiry. Its cost is what
 * expires: objects with a TTL wait in a heap by expiry time, and only its top is looked
 * at. A pinned object expires when its last pin goes. */
size_t rt_store_expire(rt_store *store);

/* For tests: how many heap tops rt_store_expire has looked at so far. */
uint64_t rt__store_expire_visits(rt_store *store);

/* Lists objects in creation order after the object with sequence after_seq (0: from the
 * start), at most limit of them, optionally only in one state (state < 0: all). views
 * receives up to limit entries with new references (release each). Returns how many were
 * written; *next_seq is the cursor for the next page, or 0 when there is no more. */
size_t rt_store_list(rt_store *store, uint64_t after_seq, int state, size_t limit,
                     rt_object_view *views, uint64_t *next_seq);

/* Whether an object of size bytes could ever fit: it is not larger than the memory limit,
 * or, when spilling, than the disk limit. */
int rt_store_could_fit(rt_store *store, size_t size);

void rt_store_get_stats(rt_store *store, rt_store_stats *out);

#endif
