/* The object store: a sharded hash table of objects, an LRU list for eviction, tombstones
 * for objects that are gone, and watchers for objects that are not there yet.
 *
 * DESIGN
 * - Threads: any thread may call any function. Reads (get, peek, meta) take exactly one
 *   shard mutex, chosen by the hash of the ref, and never the LRU mutex: a read marks the
 *   object "accessed" with a relaxed atomic store, and eviction gives accessed objects a
 *   second chance (the CLOCK approximation of LRU).
 * - Locks: shard mutexes guard the table, each object's state, value, pins and watchers.
 *   lru_lock guards the LRU list (READY, unpinned objects, oldest first), the tombstone
 *   list (LOST objects, oldest first) and each object's in_list field. The order is
 *   shard -> lru_lock. Eviction picks a victim under lru_lock, copies its ref, lets go,
 *   and evicts it under its shard lock (looking it up again); tombstone pruning, which
 *   frees objects, only *tries* a shard lock and skips busy ones. Together these keep
 *   the order without reference counts on objects.
 * - Lifetime: an object is owned by its shard's table. It leaves the table only when its
 *   tombstone is pruned (or the store is freed). Values (rt_buf, rt_error) are
 *   reference-counted, so a reader's view stays valid after the object is freed or evicted.
 * - Memory: used_bytes counts the bytes of READY objects and of stored errors. A put
 *   reserves its size first, evicts while over the limit, and gives the reservation back
 *   when that is not enough. An error counts once however many objects reach it, directly
 *   or as a cause (rt_error_hold), so a chain of propagated errors is counted as the
 *   memory it really takes; an error is always stored (a failed task must resolve its
 *   refs), evicting what it can, and one that does not fit even then is replaced by its
 *   summary (rt_error_summary), so that the store goes over its limit by at most that.
 *   READY and ERROR objects are both on the LRU list and are evicted alike.
 * - Watchers fire exactly once, when an object leaves PENDING, after the shard lock is
 *   released, on the thread that resolved, failed or freed the object.
 * - TTL: objects with a TTL are in a min-heap by expiry time (ttl_lock, taken last: shard
 *   -> lru_lock -> ttl_lock), entered with their shard lock held and left when they become
 *   tombstones, so a heap entry never outlives its object. rt_store_expire looks at the
 *   heap's top only: its cost is what expires, not how many objects have a TTL. A due
 *   object that is pinned leaves the heap and expires when its last pin goes.
 * - Secondary copies (cluster mode: objects another node owns, fetched from it) live in the
 *   same table and LRU, flagged OBJ_COPY. They are never listed and never leave a
 *   tombstone: evicting or dropping one removes it, so the next read asks the owner
 *   again. Their bytes count against the limit like any other.
 * - Full (rt_on_full): EVICT is the above. REFUSE fails a put that does not fit at once.
 *   SPILL never loses an object: the spill thread (spill_main) wakes when used_bytes
 *   passes 90% of the limit, or when a put waits for room, and each round picks a batch of
 *   cold objects from the LRU head (second chance as for eviction) under lru_lock, marks
 *   them OBJ_SPILLING and takes them off the LRU under their shard locks, takes a
 *   reference to their buffers, writes them all into one file with no store lock held
 *   (rt_spill_write), then, under each shard lock again, swaps the buffer for its
 *   rt_spilled unless the object was freed or pinned meanwhile, and releases the memory.
 *   A spilled object is READY with OBJ_SPILLED, off the LRU, and value.spilled; reads hand
 *   out a reference to it, and rt_store_get reads it back into a buffer the view alone
 *   holds. A put that does not fit waits for the spill thread (room_cv) until it fits or
 *   a round that began after it asked found nothing to spill; then, as an object larger
 *   than the limit does, it writes its own object to a spill file, with no store lock
 *   held. Errors and pinned objects are never spilled; copies are dropped instead. Freeing
 *   a spilled object drops its rt_spilled; the last one of a file deletes the file
 *   (possibly under a shard lock: an unlink, once per file).
 * - Small values (up to INLINE_MAX bytes, stored by a put) are kept in the object's record
 *   (OBJ_INLINE) instead of a buffer of their own: a million 16-byte objects take 32 MB
 *   less. A reader gets a copy in a new buffer (the record is not reference-counted); they
 *   are evicted like others and never spilled. */
#include "runtime/object_store.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/clock.h"
#include "runtime/hash.h"
#include "runtime/lock.h"

#define SHARD_COUNT 64
#define SHARD_INITIAL_BUCKETS 64
#define TTL_NONE UINT32_MAX /* ttl_index of an object not in the TTL heap */
/* Tombstones remembered by default; beyond the limit the oldest are forgotten (their refs
 * answer 404). Each costs about 104 bytes (the object record and its table slot). */
#define TOMBSTONES_DEFAULT 100000

enum { LIST_NONE = 0, LIST_LRU, LIST_TOMBSTONES };

typedef struct rt_object {
    struct rt_object *hnext;               /* shard chain */
    struct rt_object *list_prev, *list_next; /* LRU or tombstone list (lru_lock) */
    /* The parts that only one state uses share their bytes: a million small objects are a
     * million records, and 128 bytes (120 used) is a size class above 112. */
    union {
        rt_watcher *watchers; /* PENDING (shard lock) */
        rt_buf *buf;          /* READY (owned) */
        rt_error *error;      /* ERROR (owned) */
        rt_spilled *spilled;  /* READY with OBJ_SPILLED (owned) */
        const char *inline_type; /* READY with OBJ_INLINE: the interned content type */
    } value;
    uint64_t seq;
    double created_at;
    double expires_at; /* 0: no TTL; never set while PENDING */
    uint32_t hash;
    uint32_t pins;       /* shard lock */
    union {
        float result_ttl;   /* PENDING: seconds of TTL it gets when stored, 0: none */
        uint32_t ttl_index; /* ttl_lock, once stored with a TTL: its place in the TTL heap,
                               or TTL_NONE */
    };
    uint8_t state : 4;       /* rt_object_state, shard lock */
    uint8_t lost_reason : 4; /* rt_lost_reason, shard lock */
    uint8_t in_list;     /* LIST_*, lru_lock */
    uint8_t accessed;    /* relaxed atomic: read since it entered or re-entered the LRU */
    uint8_t flags;       /* OBJ_*, shard lock */
    uint8_t inline_size; /* OBJ_INLINE: bytes at inline_data(o) */
    /* The ref and its NUL (as long as it is: 23 bytes on a node alone, up to
     * RT_REF_MADE_MAX + 1 in a cluster), then, with OBJ_INLINE, a small value's bytes in
     * the record's own allocation. A 16-byte value in a buffer of its own costs 48 bytes
     * (header, bytes, NUL, size class); here 16, and with a 22-character ref the record is
     * 112 bytes. Readers get a copy (see fill_view). */
    char ref[];
} rt_object;

/* A record with a 22-character ref and 16 bytes inline fills the 112-byte size class
 * exactly (benchmark d, BENCHMARKS.md); a record alone the 96-byte class. */
_Static_assert(sizeof(void *) != 8 || offsetof(rt_object, ref) <= 73, "rt_object grew");

/* Bytes of a record holding ref_len characters of ref and inline_bytes of value. */
static size_t record_size(size_t ref_len, size_t inline_bytes)
{
    size_t size = offsetof(rt_object, ref) + ref_len + 1 + inline_bytes;
    return size > sizeof(rt_object) ? size : sizeof(rt_object);
}

static char *inline_data(rt_object *o)
{
    return o->ref + strlen(o->ref) + 1;
}

/* Copies o's ref and its NUL into out (RT_REF_MADE_MAX + 1 bytes at least). */
static void copy_ref(char *out, const rt_object *o)
{
    memcpy(out, o->ref, strlen(o->ref) + 1);
}

/* Largest value kept inline. Only rt_store_put and rt_store_put_many make inline objects
 * (a PENDING object's record is made before its value is known). The spill thread leaves
 * them alone: spilling one would free at most INLINE_MAX bytes and keep its record. */
#define INLINE_MAX 32


enum {
    OBJ_COPY = 1,  /* a secondary copy of another node's object */
    OBJ_SHARED = 2, /* another node fetched this object and may hold a copy */
    OBJ_SPILLED = 4, /* READY, its bytes in a spill file (value.spilled) */
    OBJ_SPILLING = 8, /* READY, off the LRU, being written by the spill thread */
    OBJ_FREE_ON_UNPIN = 16, /* rt_store_release'd while pinned: freed by the last unpin */
    OBJ_INLINE = 32 /* READY, its bytes in inline_data (value.inline_type) */
};

typedef struct shard {
    pthread_mutex_t lock;
    rt_object **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    uint64_t hits, misses; /* under lock */
} __attribute__((aligned(64))) shard;

typedef struct object_list {
    rt_object *head, *tail;
    size_t count;
} object_list;

struct rt_store {
    shard shards[SHARD_COUNT];
    size_t memory_limit;
    size_t used_bytes;   /* atomic: READY bytes and held error bytes */
    size_t error_bytes;  /* atomic: the part of used_bytes that errors hold */
    size_t max_tombstones;
    size_t live_objects; /* atomic: not LOST */
    size_t pending;      /* atomic */
    size_t ttl_objects;  /* atomic: objects ever given a TTL and not yet LOST */
    size_t copies;       /* atomic: secondary copies held */
    size_t copy_bytes;   /* atomic: their bytes (also in used_bytes) */
    uint64_t next_seq;   /* atomic */
    uint64_t evictions;  /* atomic */
    uint64_t expirations; /* atomic */
    uint64_t tombstones_forgotten; /* lru_lock */
    pthread_mutex_t lru_lock;
    object_list lru;
    object_list tombstones;
    pthread_mutex_t ttl_lock;
    rt_object **ttl_heap; /* min-heap by expires_at (ttl_lock) */
    size_t ttl_count, ttl_cap;
    uint64_t expire_visits; /* ttl_lock: heap tops rt_store_expire looked at (for tests) */
    rt_on_full on_full;
    double result_ttl;      /* the TTL results get by default once stored; 0: none */
    rt_spill *spill;        /* SPILL only (borrowed) */
    size_t spilled;         /* atomic: objects OBJ_SPILLED */
    size_t spilled_bytes;   /* atomic: their bytes */
    uint64_t spills;        /* atomic */
    uint64_t restores;      /* atomic */
    uint64_t restored_bytes; /* atomic */
    uint64_t spill_thread_ns; /* atomic: time the spill thread spent in rounds */
    int kick_pending;       /* atomic: the spill thread was asked to run and has not yet */
    pthread_mutex_t spill_mu; /* the rest: the spill thread's wake-ups */
    pthread_cond_t spill_cv;  /* the spill thread waits here */
    pthread_cond_t room_cv;   /* puts waiting for room wait here */
    uint64_t kicks;           /* requests for a round */
    uint64_t round_done;      /* kicks seen when the last finished round began */
    bool round_progress;      /* whether it released memory */
    bool spill_stop;
    bool spill_running;       /* spill_thread was started */
    pthread_t spill_thread;
};

/* ---- small helpers ---------------------------------------------------------------- */

static shard *shard_for(rt_store *store, uint32_t hash)
{
    return &store->shards[hash & (SHARD_COUNT - 1)];
}

/* The bucket index uses the high bits so it is independent of the shard choice. */
static size_t bucket_of(const shard *sh, uint32_t hash)
{
    return (hash >> 6) & (sh->nbuckets - 1);
}

static rt_object *shard_find(shard *sh, const char *ref, uint32_t hash)
{
    for (rt_object *o = sh->buckets[bucket_of(sh, hash)]; o; o = o->hnext)
        if (o->hash == hash && strcmp(o->ref, ref) == 0)
            return o;
    return NULL;
}

static void shard_grow(shard *sh)
{
    size_t n = sh->nbuckets * 2;
    rt_object **nb = calloc(n, sizeof(*nb));
    if (!nb)
        return; /* keep the longer chains; correctness does not depend on growth */
    size_t old_n = sh->nbuckets;
    rt_object **old = sh->buckets;
    sh->buckets = nb;
    sh->nbuckets = n;
    for (size_t i = 0; i < old_n; i++) {
        rt_object *o = old[i];
        while (o) {
            rt_object *next = o->hnext;
            size_t b = bucket_of(sh, o->hash);
            o->hnext = nb[b];
            nb[b] = o;
            o = next;
        }
    }
    free(old);
}

static void shard_insert(shard *sh, rt_object *o)
{
    if (sh->count >= sh->nbuckets)
        shard_grow(sh);
    size_t b = bucket_of(sh, o->hash);
    o->hnext = sh->buckets[b];
    sh->buckets[b] = o;
    sh->count++;
}

static void shard_remove(shard *sh, rt_object *o)
{
    rt_object **pp = &sh->buckets[bucket_of(sh, o->hash)];
    while (*pp && *pp != o)
        pp = &(*pp)->hnext;
    if (*pp) {
        *pp = o->hnext;
        sh->count--;
    }
}

static void list_append(object_list *l, rt_object *o, uint8_t which)
{
    o->list_next = NULL;
    o->list_prev = l->tail;
    if (l->tail)
        l->tail->list_next = o;
    else
        l->head = o;
    l->tail = o;
    l->count++;
    o->in_list = which;
}

static void list_unlink(object_list *l, rt_object *o)
{
    if (o->list_prev)
        o->list_prev->list_next = o->list_next;
    else
        l->head = o->list_next;
    if (o->list_next)
        o->list_next->list_prev = o->list_prev;
    else
        l->tail = o->list_prev;
    o->list_prev = o->list_next = NULL;
    l->count--;
    o->in_list = LIST_NONE;
}

static size_t atomic_add(size_t *p, size_t v)
{
    return __atomic_add_fetch(p, v, __ATOMIC_RELAXED);
}

static size_t atomic_sub(size_t *p, size_t v)
{
    return __atomic_sub_fetch(p, v, __ATOMIC_RELAXED);
}

static size_t atomic_get(const size_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

const char *rt_object_state_name(rt_object_state state)
{
    switch (state) {
    case RT_OBJ_PENDING: return "pending";
    case RT_OBJ_READY: return "ready";
    case RT_OBJ_ERROR: return "error";
    case RT_OBJ_LOST: return "lost";
    }
    return "lost";
}

int rt_object_state_parse(const char *name)
{
    for (int s = RT_OBJ_PENDING; s <= RT_OBJ_LOST; s++)
        if (name && strcmp(name, rt_object_state_name((rt_object_state)s)) == 0)
            return s;
    return -1;
}

void rt_object_view_release(rt_object_view *view)
{
    if (!view)
        return;
    rt_buf_decref(view->buf);
    rt_error_decref(view->error);
    rt_spilled_decref(view->spilled);
    view->buf = NULL;
    view->error = NULL;
    view->spilled = NULL;
}

/* ---- life ---------------------------------------------------------------------------- */

static void *spill_main(void *arg);

rt_store *rt_store_new(const rt_store_config *config)
{
    rt_store *store = calloc(1, sizeof(*store));
    if (!store)
        return NULL;
    store->memory_limit = config ? config->memory_limit : 0;
    store->max_tombstones =
        config && config->max_tombstones ? config->max_tombstones : TOMBSTONES_DEFAULT;
    store->on_full = config ? config->on_full : RT_ON_FULL_EVICT;
    store->spill = config ? config->spill : NULL;
    store->result_ttl = config && config->result_ttl > 0 ? config->result_ttl : 0;
    if (store->on_full == RT_ON_FULL_SPILL && !store->spill)
        store->on_full = RT_ON_FULL_REFUSE; /* nowhere to spill: never lose data either */
    pthread_mutex_init(&store->spill_mu, NULL);
    pthread_cond_init(&store->spill_cv, NULL);
    pthread_cond_init(&store->room_cv, NULL);
    rt_mutex_init(&store->lru_lock);
    rt_mutex_init(&store->ttl_lock);
    for (int i = 0; i < SHARD_COUNT; i++) {
        shard *sh = &store->shards[i];
        rt_mutex_init(&sh->lock);
        sh->nbuckets = SHARD_INITIAL_BUCKETS;
        sh->buckets = calloc(sh->nbuckets, sizeof(*sh->buckets));
        if (!sh->buckets) {
            rt_store_free(store);
            return NULL;
        }
    }
    if (store->on_full == RT_ON_FULL_SPILL && store->memory_limit) {
        if (pthread_create(&store->spill_thread, NULL, spill_main, store) != 0) {
            rt_store_free(store);
            return NULL;
        }
        store->spill_running = true;
    }
    return store;
}

static void object_drop_value(rt_object *o)
{
    if (o->state == RT_OBJ_READY && (o->flags & OBJ_SPILLED))
        rt_spilled_decref(o->value.spilled);
    else if (o->state == RT_OBJ_READY && !(o->flags & OBJ_INLINE))
        rt_buf_decref(o->value.buf);
    else if (o->state == RT_OBJ_ERROR) {
        rt_error_unhold(o->value.error); /* the counts go back, for errors that live on */
        rt_error_decref(o->value.error);
    }
    o->value.buf = NULL;
}

void rt_store_free(rt_store *store)
{
    if (!store)
        return;
    if (store->spill_running) {
        pthread_mutex_lock(&store->spill_mu);
        store->spill_stop = true;
        pthread_cond_broadcast(&store->spill_cv);
        pthread_cond_broadcast(&store->room_cv);
        pthread_mutex_unlock(&store->spill_mu);
        pthread_join(store->spill_thread, NULL);
    }
    for (int i = 0; i < SHARD_COUNT; i++) {
        shard *sh = &store->shards[i];
        for (size_t b = 0; sh->buckets && b < sh->nbuckets; b++) {
            rt_object *o = sh->buckets[b];
            while (o) {
                rt_object *next = o->hnext;
                object_drop_value(o);
                free(o);
                o = next;
            }
        }
        free(sh->buckets);
        pthread_mutex_destroy(&sh->lock);
    }
    pthread_mutex_destroy(&store->lru_lock);
    pthread_mutex_destroy(&store->ttl_lock);
    pthread_mutex_destroy(&store->spill_mu);
    pthread_cond_destroy(&store->spill_cv);
    pthread_cond_destroy(&store->room_cv);
    free(store->ttl_heap);
    free(store);
}

/* ---- the TTL heap (ttl_lock held) ----------------------------------------------------- */

static void ttl_swap(rt_store *store, size_t a, size_t b)
{
    rt_object *t = store->ttl_heap[a];
    store->ttl_heap[a] = store->ttl_heap[b];
    store->ttl_heap[b] = t;
    store->ttl_heap[a]->ttl_index = (uint32_t)a;
    store->ttl_heap[b]->ttl_index = (uint32_t)b;
}

static void ttl_up(rt_store *store, size_t i)
{
    rt_object **h = store->ttl_heap;
    while (i > 0 && h[(i - 1) / 2]->expires_at > h[i]->expires_at) {
        ttl_swap(store, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void ttl_down(rt_store *store, size_t i)
{
    rt_object **h = store->ttl_heap;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < store->ttl_count && h[l]->expires_at < h[m]->expires_at)
            m = l;
        if (r < store->ttl_count && h[r]->expires_at < h[m]->expires_at)
            m = r;
        if (m == i)
            return;
        ttl_swap(store, i, m);
        i = m;
    }
}

/* Adds o (its shard lock held). When out of memory o stays out: it still expires when read. */
static void ttl_push(rt_store *store, rt_object *o)
{
    pthread_mutex_lock(&store->ttl_lock);
    if (store->ttl_count == store->ttl_cap && store->ttl_cap < TTL_NONE) {
        size_t cap = store->ttl_cap ? store->ttl_cap * 2 : 256;
        rt_object **h = realloc(store->ttl_heap, cap * sizeof(*h));
        if (h) {
            store->ttl_heap = h;
            store->ttl_cap = cap;
        }
    }
    if (store->ttl_count < store->ttl_cap) {
        o->ttl_index = (uint32_t)store->ttl_count;
        store->ttl_heap[store->ttl_count++] = o;
        ttl_up(store, o->ttl_index);
    }
    pthread_mutex_unlock(&store->ttl_lock);
}

/* Takes o out of the heap if it is in (its shard lock held). */
static void ttl_remove(rt_store *store, rt_object *o)
{
    pthread_mutex_lock(&store->ttl_lock);
    size_t i = o->ttl_index;
    if (i != TTL_NONE) {
        store->ttl_count--;
        if (i != store->ttl_count) {
            store->ttl_heap[i] = store->ttl_heap[store->ttl_count];
            store->ttl_heap[i]->ttl_index = (uint32_t)i;
            ttl_down(store, i);
            ttl_up(store, i);
        }
        o->ttl_index = TTL_NONE;
    }
    pthread_mutex_unlock(&store->ttl_lock);
}

/* ---- eviction and tombstones ---------------------------------------------------------- */

/* Forgets the oldest tombstones beyond max_tombstones. lru_lock held, and the lock of
 * shard held (the caller's; its tombstones are removed without locking it again). Other
 * shards are only tried (lock order is shard, then lru_lock): a busy one keeps its
 * tombstone in place, to be forgotten first next time, so that the oldest go first. The
 * newest, which the caller has just made and may still look at, stays. */
static void prune_tombstones_locked(rt_store *store, shard *held)
{
    rt_object *o = store->tombstones.head;
    for (size_t tries = 0; o && o != store->tombstones.tail &&
                           store->tombstones.count > store->max_tombstones && tries < 64;
         tries++) {
        rt_object *next = o->list_next;
        shard *sh = shard_for(store, o->hash);
        if (sh == held || pthread_mutex_trylock(&sh->lock) == 0) {
            list_unlink(&store->tombstones, o);
            shard_remove(sh, o);
            if (sh != held)
                pthread_mutex_unlock(&sh->lock);
            free(o);
            store->tombstones_forgotten++;
        }
        o = next;
    }
}

/* Turns a READY or ERROR object into a LOST tombstone. Both its shard lock and lru_lock
 * are held. The value is moved to *dropped_buf / *dropped_error so that the caller frees
 * it after releasing the locks (freeing a 1 GiB buffer takes a while). */
static void make_tombstone_locked(rt_store *store, rt_object *o, rt_lost_reason reason,
                                  rt_buf **dropped_buf, rt_error **dropped_error)
{
    if (o->in_list == LIST_LRU)
        list_unlink(&store->lru, o);
    if (o->state == RT_OBJ_READY && (o->flags & OBJ_SPILLED)) {
        atomic_sub(&store->spilled, 1);
        atomic_sub(&store->spilled_bytes, o->value.spilled->size);
        rt_spilled_decref(o->value.spilled); /* readers hold their own references */
        o->flags &= (uint8_t)~OBJ_SPILLED;
    } else if (o->state == RT_OBJ_READY && (o->flags & OBJ_INLINE)) {
        atomic_sub(&store->used_bytes, o->inline_size); /* the bytes go with the record */
        o->flags &= (uint8_t)~OBJ_INLINE;
    } else if (o->state == RT_OBJ_READY) {
        atomic_sub(&store->used_bytes, o->value.buf->size);
        *dropped_buf = o->value.buf;
    } else if (o->state == RT_OBJ_ERROR) {
        size_t released = rt_error_unhold(o->value.error);
        atomic_sub(&store->used_bytes, released);
        atomic_sub(&store->error_bytes, released);
        *dropped_error = o->value.error;
    } else if (o->state == RT_OBJ_PENDING) {
        atomic_sub(&store->pending, 1);
    }
    if (o->expires_at > 0) {
        atomic_sub(&store->ttl_objects, 1);
        ttl_remove(store, o);
    }
    o->value.buf = NULL;
    o->state = RT_OBJ_LOST;
    o->lost_reason = (uint8_t)reason;
    atomic_sub(&store->live_objects, 1);
    list_append(&store->tombstones, o, LIST_TOMBSTONES);
}

/* Takes a secondary copy (or a stand-in) out of the table and the LRU (no tombstone: the
 * owner answers for it). Its shard lock and lru_lock are held. Moves its value to *buf or
 * *err for the caller to release after unlocking; the caller frees the object then. */
static void remove_copy_locked(rt_store *store, shard *sh, rt_object *o, rt_buf **buf,
                               rt_error **err)
{
    if (o->in_list == LIST_LRU)
        list_unlink(&store->lru, o);
    shard_remove(sh, o);
    if (o->state == RT_OBJ_READY) {
        *buf = o->value.buf;
        atomic_sub(&store->used_bytes, (*buf)->size);
        atomic_sub(&store->copy_bytes, (*buf)->size);
    } else if (o->state == RT_OBJ_ERROR) {
        size_t released = rt_error_unhold(o->value.error);
        atomic_sub(&store->used_bytes, released);
        atomic_sub(&store->error_bytes, released);
        *err = o->value.error;
    }
    o->value.buf = NULL;
    atomic_sub(&store->copies, 1);
}

/* Picks the next eviction victim from the LRU head, giving recently read objects a second
 * chance, and copies its ref and hash out. Returns false when there is none. lru_lock held. */
static bool pick_victim_locked(rt_store *store, char ref[RT_REF_MADE_MAX + 1], uint32_t *hash,
                               bool errors_only)
{
    if (errors_only) { /* the oldest stored error (values are spilled, not evicted) */
        for (rt_object *o = store->lru.head; o; o = o->list_next)
            if (o->state == RT_OBJ_ERROR) {
                copy_ref(ref, o);
                *hash = o->hash;
                return true;
            }
        return false;
    }
    size_t budget = 2 * store->lru.count + 1; /* each object seen at most twice */
    while (store->lru.head && budget-- > 0) {
        rt_object *o = store->lru.head;
        if (__atomic_load_n(&o->accessed, __ATOMIC_RELAXED)) {
            __atomic_store_n(&o->accessed, 0, __ATOMIC_RELAXED);
            list_unlink(&store->lru, o);
            list_append(&store->lru, o, LIST_LRU);
            continue;
        }
        copy_ref(ref, o);
        *hash = o->hash;
        return true;
    }
    return false;
}

/* Evicts least-recently-used objects until used_bytes fits the limit. Returns true when it
 * fits, false when nothing more can go. Called with no lock held.
 *
 * The victim is chosen under lru_lock, but evicted under its shard lock taken first (the
 * lock order), so it is looked up again by ref: meanwhile it may have been read, pinned or
 * freed, and then it is simply not evicted this round. */
static bool evict_until_fits_ex(rt_store *store, bool errors_only)
{
    size_t rounds = 0;
    while (atomic_get(&store->used_bytes) > store->memory_limit) {
        char ref[RT_REF_MADE_MAX + 1];
        uint32_t hash;
        pthread_mutex_lock(&store->lru_lock);
        bool found = pick_victim_locked(store, ref, &hash, errors_only);
        size_t max_rounds = 4 * store->lru.count + 64;
        pthread_mutex_unlock(&store->lru_lock);
        if (!found || rounds++ > max_rounds)
            return false;

        shard *sh = shard_for(store, hash);
        rt_buf *buf = NULL;
        rt_error *err = NULL;
        rt_object *removed = NULL;
        pthread_mutex_lock(&sh->lock);
        rt_object *o = shard_find(sh, ref, hash);
        if (o && (o->state == RT_OBJ_READY || o->state == RT_OBJ_ERROR) && o->pins == 0 &&
            (!errors_only || o->state == RT_OBJ_ERROR) &&
            (errors_only || !__atomic_load_n(&o->accessed, __ATOMIC_RELAXED))) {
            pthread_mutex_lock(&store->lru_lock);
            if (o->in_list == LIST_LRU) {
                if (o->flags & OBJ_COPY) {
                    remove_copy_locked(store, sh, o, &buf, &err);
                    removed = o;
                } else {
                    make_tombstone_locked(store, o, RT_LOST_EVICTED, &buf, &err);
                    prune_tombstones_locked(store, sh);
                }
                __atomic_add_fetch(&store->evictions, 1, __ATOMIC_RELAXED);
            }
            pthread_mutex_unlock(&store->lru_lock);
        }
        pthread_mutex_unlock(&sh->lock);
        free(removed);
        rt_buf_decref(buf);
        rt_error_decref(err);
    }
    return true;
}

static bool evict_until_fits(rt_store *store)
{
    return evict_until_fits_ex(store, false);
}

/* ---- spilling (RT_ON_FULL_SPILL) ------------------------------------------------------ */

#define SPILL_BATCH_BYTES ((size_t)8 << 20) /* a round writes one file of about this */
#define SPILL_BATCH_MAX 512                 /* objects in one file at most */

/* Above this the spill thread runs; it spills down to spill_low. */
static size_t spill_high(const rt_store *store)
{
    return store->memory_limit / 10 * 9;
}

static size_t spill_low(const rt_store *store)
{
    return store->memory_limit / 10 * 8;
}

/* Asks the spill thread for a round without waiting for it. */
static void spill_kick(rt_store *store)
{
    if (__atomic_exchange_n(&store->kick_pending, 1, __ATOMIC_ACQ_REL))
        return; /* asked already */
    pthread_mutex_lock(&store->spill_mu);
    store->kicks++;
    pthread_cond_signal(&store->spill_cv);
    pthread_mutex_unlock(&store->spill_mu);
}

/* Waits until used_bytes fits the limit, the spill thread working for it. Returns false
 * when a round that began after this call found nothing more to spill. No lock held. */
static bool spill_wait_for_room(rt_store *store)
{
    pthread_mutex_lock(&store->spill_mu);
    uint64_t mine = ++store->kicks;
    pthread_cond_signal(&store->spill_cv);
    while (atomic_get(&store->used_bytes) > store->memory_limit && !store->spill_stop &&
           !(store->round_done >= mine && !store->round_progress))
        pthread_cond_wait(&store->room_cv, &store->spill_mu);
    pthread_mutex_unlock(&store->spill_mu);
    return atomic_get(&store->used_bytes) <= store->memory_limit;
}

/* Puts an object whose spill is over back on the LRU when it is still READY in memory and
 * unpinned. Its shard lock held. */
static void spill_abandon_locked(rt_store *store, rt_object *o)
{
    o->flags &= (uint8_t)~OBJ_SPILLING;
    if (o->state == RT_OBJ_READY && !(o->flags & OBJ_SPILLED) && o->pins == 0) {
        pthread_mutex_lock(&store->lru_lock);
        if (o->in_list == LIST_NONE)
            list_append(&store->lru, o, LIST_LRU);
        pthread_mutex_unlock(&store->lru_lock);
    }
}

/* One round: picks cold objects, writes them into one file, releases their memory.
 * Returns whether it released any. No lock held. */
static bool spill_round(rt_store *store)
{
    size_t used = atomic_get(&store->used_bytes), low = spill_low(store);
    /* At least a tenth of the limit a round, so that small objects share files. */
    size_t want = used > low ? used - low : 1;
    if (want < store->memory_limit / 10)
        want = store->memory_limit / 10;
    if (want > SPILL_BATCH_BYTES)
        want = SPILL_BATCH_BYTES;
    struct victim {
        char ref[RT_REF_MADE_MAX + 1];
        uint32_t hash;
    } *v = malloc(SPILL_BATCH_MAX * sizeof(*v));
    rt_buf **bufs = calloc(SPILL_BATCH_MAX, sizeof(*bufs));
    rt_spilled **sps = calloc(SPILL_BATCH_MAX, sizeof(*sps));
    size_t nv = 0, picked = 0;
    bool progress = false;
    if (!v || !bufs || !sps)
        goto done;

    /* Pick: READY objects from the LRU head; recently read ones get a second chance. An
     * object on the LRU is READY or ERROR and its value is stable while lru_lock is held. */
    pthread_mutex_lock(&store->lru_lock);
    size_t budget = 2 * store->lru.count + 1;
    rt_object *o = store->lru.head;
    while (o && budget-- > 0 && nv < SPILL_BATCH_MAX && picked < want) {
        rt_object *next = o->list_next;
        if (__atomic_load_n(&o->accessed, __ATOMIC_RELAXED)) {
            __atomic_store_n(&o->accessed, 0, __ATOMIC_RELAXED);
            list_unlink(&store->lru, o);
            list_append(&store->lru, o, LIST_LRU);
        } else if (o->state == RT_OBJ_READY && !(o->flags & OBJ_INLINE)) {
            copy_ref(v[nv].ref, o);
            v[nv++].hash = o->hash;
            picked += o->value.buf->size;
        }
        o = next;
    }
    pthread_mutex_unlock(&store->lru_lock);

    /* Take them off the LRU, marked, with a reference to their bytes. Copies are dropped
     * instead (their owner has them). */
    size_t nb = 0;
    for (size_t i = 0; i < nv; i++) {
        shard *sh = shard_for(store, v[i].hash);
        rt_buf *dropped = NULL;
        rt_error *dropped_err = NULL;
        rt_object *removed = NULL;
        pthread_mutex_lock(&sh->lock);
        rt_object *x = shard_find(sh, v[i].ref, v[i].hash);
        if (x && x->state == RT_OBJ_READY && x->pins == 0 &&
            !(x->flags & (OBJ_SPILLED | OBJ_SPILLING | OBJ_INLINE))) {
            pthread_mutex_lock(&store->lru_lock);
            if (x->in_list == LIST_LRU && (x->flags & OBJ_COPY)) {
                remove_copy_locked(store, sh, x, &dropped, &dropped_err);
                removed = x;
                __atomic_add_fetch(&store->evictions, 1, __ATOMIC_RELAXED);
            } else if (x->in_list == LIST_LRU) {
                list_unlink(&store->lru, x);
                x->flags |= OBJ_SPILLING;
                memmove(&v[nb], &v[i], sizeof(v[i]));
                bufs[nb++] = rt_buf_incref(x->value.buf);
            }
            pthread_mutex_unlock(&store->lru_lock);
        }
        pthread_mutex_unlock(&sh->lock);
        if (removed) {
            free(removed);
            rt_buf_decref(dropped);
            rt_error_decref(dropped_err);
            progress = true;
        }
    }
    if (nb == 0)
        goto done;

    /* Write, with no store lock held. */
    rt_status st = rt_spill_write(store->spill, bufs, nb, sps);
    for (size_t i = 0; i < nb; i++) {
        shard *sh = shard_for(store, v[i].hash);
        pthread_mutex_lock(&sh->lock);
        rt_object *x = shard_find(sh, v[i].ref, v[i].hash);
        if (x && st == RT_OK && x->state == RT_OBJ_READY && (x->flags & OBJ_SPILLING) &&
            x->pins == 0 && x->value.buf == bufs[i]) {
            pthread_mutex_lock(&store->lru_lock);
            if (x->in_list == LIST_LRU)
                list_unlink(&store->lru, x);
            pthread_mutex_unlock(&store->lru_lock);
            x->value.spilled = sps[i];
            sps[i] = NULL;
            x->flags = (uint8_t)((x->flags & ~OBJ_SPILLING) | OBJ_SPILLED);
            atomic_sub(&store->used_bytes, bufs[i]->size);
            atomic_add(&store->spilled, 1);
            atomic_add(&store->spilled_bytes, bufs[i]->size);
            __atomic_add_fetch(&store->spills, 1, __ATOMIC_RELAXED);
            rt_buf_decref(bufs[i]); /* the object's reference; ours remains */
            progress = true;
        } else if (x && (x->flags & OBJ_SPILLING)) {
            spill_abandon_locked(store, x); /* pinned, or the write failed */
        }
        pthread_mutex_unlock(&sh->lock);
        rt_spilled_decref(sps[i]);
        rt_buf_decref(bufs[i]); /* the memory goes here, outside the locks */
    }
done:
    free(v);
    free(bufs);
    free(sps);
    return progress;
}

static void *spill_main(void *arg)
{
    rt_store *store = arg;
    pthread_mutex_lock(&store->spill_mu);
    uint64_t seen = 0;
    bool stalled = false;
    for (;;) {
        while (!store->spill_stop && seen == store->kicks &&
               (stalled || atomic_get(&store->used_bytes) <= spill_high(store)))
            pthread_cond_wait(&store->spill_cv, &store->spill_mu);
        if (store->spill_stop)
            break;
        if (seen != store->kicks)
            stalled = false;
        seen = store->kicks;
        __atomic_store_n(&store->kick_pending, 0, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&store->spill_mu);
        /* Rounds until below the low mark, or nothing more to spill. */
        bool progress;
        double began = rt_clock_monotonic();
        do
            progress = spill_round(store);
        while (progress && atomic_get(&store->used_bytes) > spill_low(store));
        __atomic_add_fetch(&store->spill_thread_ns,
                           (uint64_t)((rt_clock_monotonic() - began) * 1e9), __ATOMIC_RELAXED);
        pthread_mutex_lock(&store->spill_mu);
        stalled = !progress && atomic_get(&store->used_bytes) > spill_low(store);
        store->round_done = seen;
        store->round_progress = !stalled; /* false: waiting puts give up */
        pthread_cond_broadcast(&store->room_cv);
    }
    pthread_mutex_unlock(&store->spill_mu);
    return NULL;
}

/* Reserves bytes against the limit, as on_full says. RT_OK or RT_EFULL; with SPILL, when
 * *direct is not NULL, an object that does not fit even after spilling sets *direct and
 * answers RT_OK without reserving: the caller writes it to a spill file itself. Under
 * concurrent puts the total may briefly overshoot by what is in flight; each put evicts
 * (or waits for spilling) until the store fits again. */
static rt_status reserve_bytes_ex(rt_store *store, size_t bytes, bool *direct)
{
    if (direct)
        *direct = false;
    if (store->on_full == RT_ON_FULL_SPILL && store->memory_limit && bytes > store->memory_limit) {
        if (!direct)
            return RT_EFULL;
        *direct = true;
        return RT_OK;
    }
    size_t used = atomic_add(&store->used_bytes, bytes);
    if (!store->memory_limit || used <= store->memory_limit) {
        if (store->on_full == RT_ON_FULL_SPILL && used > spill_high(store))
            spill_kick(store);
        return RT_OK;
    }
    bool fits = false;
    if (store->on_full == RT_ON_FULL_EVICT)
        fits = bytes <= store->memory_limit && evict_until_fits(store);
    else if (store->on_full == RT_ON_FULL_SPILL)
        fits = spill_wait_for_room(store);
    if (fits)
        return RT_OK;
    atomic_sub(&store->used_bytes, bytes);
    if (store->on_full == RT_ON_FULL_SPILL && direct) {
        *direct = true;
        return RT_OK;
    }
    return RT_EFULL;
}

static rt_status reserve_bytes(rt_store *store, size_t bytes)
{
    return reserve_bytes_ex(store, bytes, NULL);
}

/* Makes room for a stored error just counted in used_bytes, as on_full says; true when it
 * fits. Errors are not spilled (they are not bytes): with SPILL, when spilling values is
 * not enough, the oldest stored errors are evicted, so that memory stays bounded. */
static bool make_room(rt_store *store)
{
    if (store->on_full == RT_ON_FULL_EVICT)
        return evict_until_fits(store);
    if (store->on_full == RT_ON_FULL_SPILL)
        return spill_wait_for_room(store) || evict_until_fits_ex(store, true);
    return atomic_get(&store->used_bytes) <= store->memory_limit;
}

int rt_store_could_fit(rt_store *store, size_t size)
{
    if (store->on_full == RT_ON_FULL_SPILL) {
        rt_spill_stats d;
        rt_spill_get_stats(store->spill, &d);
        return !d.disk_limit || size <= d.disk_limit;
    }
    return !store->memory_limit || size <= store->memory_limit;
}

/* ---- creating objects ----------------------------------------------------------------- */

/* A new record; with room for inline_bytes of value when that is not 0. */
static rt_object *object_new(rt_store *store, size_t inline_bytes)
{
    char ref[RT_REF_MADE_MAX + 1];
    rt_ref_generate(ref, 'o');
    size_t len = strlen(ref);
    rt_object *o = calloc(1, record_size(len, inline_bytes));
    if (!o)
        return NULL;
    memcpy(o->ref, ref, len + 1);
    if (inline_bytes)
        o->flags = OBJ_INLINE;
    o->hash = rt_hash_str(o->ref);
    o->seq = __atomic_add_fetch(&store->next_seq, 1, __ATOMIC_RELAXED);
    o->created_at = rt_clock_wall();
    o->ttl_index = TTL_NONE;
    return o;
}

/* The room object_new should give buf's bytes in the record: 0 when they get no room. */
static size_t inline_room(const rt_buf *buf)
{
    return buf->size > 0 && buf->size <= INLINE_MAX && !buf->owns_content_type ? buf->size : 0;
}

/* Inserts a new READY object; its bytes are already reserved. buf is stolen: a record
 * with room for them keeps a copy and lets buf go. */
static void insert_ready(rt_store *store, rt_object *o, rt_buf *buf)
{
    o->state = RT_OBJ_READY;
    if (o->flags & OBJ_INLINE) {
        memcpy(inline_data(o), buf->data, buf->size);
        o->inline_size = (uint8_t)buf->size;
        o->value.inline_type = buf->content_type;
        rt_buf_decref(buf);
    } else {
        o->value.buf = buf;
    }
    shard *sh = shard_for(store, o->hash);
    pthread_mutex_lock(&sh->lock);
    shard_insert(sh, o);
    pthread_mutex_lock(&store->lru_lock);
    list_append(&store->lru, o, LIST_LRU);
    pthread_mutex_unlock(&store->lru_lock);
    if (o->expires_at > 0)
        ttl_push(store, o); /* before anyone can free it, so the entry never dangles */
    pthread_mutex_unlock(&sh->lock);
    atomic_add(&store->live_objects, 1);
}

/* Inserts a new READY object whose bytes are in a spill file (sp stolen). */
static void insert_spilled(rt_store *store, rt_object *o, rt_spilled *sp)
{
    o->state = RT_OBJ_READY;
    o->value.spilled = sp;
    o->flags = (uint8_t)((o->flags & ~OBJ_INLINE) | OBJ_SPILLED); /* its room goes unused */
    atomic_add(&store->spilled, 1);
    atomic_add(&store->spilled_bytes, sp->size);
    __atomic_add_fetch(&store->spills, 1, __ATOMIC_RELAXED);
    shard *sh = shard_for(store, o->hash);
    pthread_mutex_lock(&sh->lock);
    shard_insert(sh, o);
    if (o->expires_at > 0)
        ttl_push(store, o);
    pthread_mutex_unlock(&sh->lock);
    atomic_add(&store->live_objects, 1);
}

/* Writes objects that do not fit in memory straight to one spill file, with no lock
 * held, and inserts them. bufs are released on RT_OK (the file has the bytes). Returns
 * RT_OK, RT_EFULL (the disk limit), RT_ENOMEM. */
static rt_status put_direct(rt_store *store, rt_object **objs, rt_buf **bufs, size_t n)
{
    rt_spilled **sps = calloc(n + 1, sizeof(*sps));
    if (!sps)
        return RT_ENOMEM;
    rt_status st = rt_spill_write(store->spill, bufs, n, sps);
    if (st == RT_OK) {
        for (size_t i = 0; i < n; i++) {
            insert_spilled(store, objs[i], sps[i]);
            rt_buf_decref(bufs[i]);
        }
    }
    free(sps);
    return st;
}

rt_status rt_store_put(rt_store *store, rt_buf *buf, double ttl_seconds,
                       char ref_out[RT_REF_SIZE])
{
    rt_object *o = object_new(store, inline_room(buf));
    if (!o)
        return RT_ENOMEM;
    bool direct;
    rt_status st = reserve_bytes_ex(store, buf->size, &direct);
    if (st != RT_OK) {
        free(o);
        return st;
    }
    if (ttl_seconds > 0)
        o->expires_at = o->created_at + ttl_seconds;
    copy_ref(ref_out, o);
    if (direct && (st = put_direct(store, &o, &buf, 1)) != RT_OK) {
        free(o);
        return st;
    }
    if (ttl_seconds > 0)
        atomic_add(&store->ttl_objects, 1);
    if (!direct)
        insert_ready(store, o, buf);
    return RT_OK;
}

rt_status rt_store_put_many(rt_store *store, rt_buf **bufs, size_t n,
                            char (*refs_out)[RT_REF_SIZE])
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (bufs[i]->size > (size_t)-1 - total)
            return RT_EFULL;
        total += bufs[i]->size;
    }
    rt_object **objs = malloc(n * sizeof(*objs) + 1);
    if (!objs)
        return RT_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        objs[i] = object_new(store, inline_room(bufs[i]));
        if (!objs[i]) {
            while (i > 0)
                free(objs[--i]);
            free(objs);
            return RT_ENOMEM;
        }
    }
    bool direct;
    rt_status st = reserve_bytes_ex(store, total, &direct);
    for (size_t i = 0; st == RT_OK && i < n; i++)
        copy_ref(refs_out[i], objs[i]);
    if (st == RT_OK && direct && n > 0)
        st = put_direct(store, objs, bufs, n);
    if (st != RT_OK) {
        for (size_t i = 0; i < n; i++)
            free(objs[i]);
        free(objs);
        return st;
    }
    for (size_t i = 0; i < n && !direct; i++)
        insert_ready(store, objs[i], bufs[i]);
    free(objs);
    return RT_OK;
}

rt_status rt_store_create_pending(rt_store *store, char ref_out[RT_REF_SIZE])
{
    return rt_store_create_pending_ttl(store, 0, ref_out);
}

rt_status rt_store_create_pending_ttl(rt_store *store, double result_ttl,
                                      char ref_out[RT_REF_SIZE])
{
    rt_object *o = object_new(store, 0);
    if (!o)
        return RT_ENOMEM;
    o->state = RT_OBJ_PENDING;
    o->result_ttl = (float)(result_ttl > 0 ? result_ttl : result_ttl == 0 ? store->result_ttl : 0);
    copy_ref(ref_out, o);
    shard *sh = shard_for(store, o->hash);
    pthread_mutex_lock(&sh->lock);
    shard_insert(sh, o);
    pthread_mutex_unlock(&sh->lock);
    atomic_add(&store->live_objects, 1);
    atomic_add(&store->pending, 1);
    return RT_OK;
}

/* ---- watchers ------------------------------------------------------------------------ */

/* Detaches a PENDING object's watchers, marking each fired; NULL for any other state
 * (their value is in the bytes the watchers were). Shard lock held. */
static rt_watcher *detach_watchers_locked(rt_object *o)
{
    if (o->state != RT_OBJ_PENDING)
        return NULL;
    rt_watcher *list = o->value.watchers;
    for (rt_watcher *w = list; w; w = w->next)
        w->fired = 1;
    o->value.watchers = NULL;
    return list;
}

/* Calls detached watchers. No lock held. A callback may free its watcher, so read next
 * first. */
static void fire_watchers(rt_watcher *list)
{
    while (list) {
        rt_watcher *next = list->next;
        list->fn(list, list->arg);
        list = next;
    }
}

int rt_store_watch(rt_store *store, const char *ref, rt_watcher *watcher)
{
    uint32_t h = rt_hash_str(ref);
    shard *sh = shard_for(store, h);
    pthread_mutex_lock(&sh->lock);
    rt_object *o = shard_find(sh, ref, h);
    int rc;
    if (!o) {
        rc = RT_ENOTFOUND;
    } else if (o->state != RT_OBJ_PENDING) {
        rc = 1;
    } else {
        watcher->fired = 0;
        watcher->object = o;
        watcher->shard = sh;
        watcher->prev = NULL;
        watcher->next = o->value.watchers;
        if (o->value.watchers)
            o->value.watchers->prev = watcher;
        o->value.watchers = watcher;
        rc = RT_OK;
    }
    pthread_mutex_unlock(&sh->lock);
    return rc;
}

int rt_store_unwatch(rt_store *store, rt_watcher *watcher)
{
    (void)store;
    shard *sh = watcher->shard;
    if (!sh)
        return 0;
    pthread_mutex_lock(&sh->lock);
    int removed = 0;
    if (!watcher->fired) {
        rt_object *o = watcher->object;
        if (watcher->prev)
            watcher->prev->next = watcher->next;
        else
            o->value.watchers = watcher->next;
        if (watcher->next)
            watcher->next->prev = watcher->prev;
        watcher->prev = watcher->next = NULL;
        watcher->fired = 1;
        removed = 1;
    }
    pthread_mutex_unlock(&sh->lock);
    return removed;
}

/* ---- resolving pending objects -------------------------------------------------------- */

/* Finds a PENDING object and classifies it. Shard lock held on RT_OK. */
static rt_status lock_pending(rt_store *store, const char *ref, shard **sh_out,
                              rt_object **o_out)
{
    uint32_t h = rt_hash_str(ref);
    shard *sh = shard_for(store, h);
    pthread_mutex_lock(&sh->lock);
    rt_object *o = shard_find(sh, ref, h);
    rt_status st = RT_OK;
    if (!o)
        st = RT_ENOTFOUND;
    else if (o->state == RT_OBJ_LOST)
        st = RT_ELOST;
    else if (o->state != RT_OBJ_PENDING)
        st = RT_ESTATE;
    if (st != RT_OK) {
        pthread_mutex_unlock(&sh->lock);
        return st;
    }
    *sh_out = sh;
    *o_out = o;
    return RT_OK;
}

/* A result that was given a TTL (rt_store_create_pending_ttl) starts it now that it is
 * stored. Shard lock held (the TTL heap's lock is taken after it). */
static void start_result_ttl_locked(rt_store *store, rt_object *o)
{
    float ttl = o->result_ttl;
    o->ttl_index = TTL_NONE; /* the same bytes */
    if (ttl <= 0 || (o->flags & OBJ_COPY))
        return;
    o->expires_at = rt_clock_wall() + ttl;
    atomic_add(&store->ttl_objects, 1);
    ttl_push(store, o);
}

rt_status rt_store_resolve(rt_store *store, const char *ref, rt_buf *buf)
{
    /* Look first, so that a call that must fail evicts nothing; look again after reserving,
     * as the object may have been freed meanwhile. */
    shard *sh;
    rt_object *o;
    rt_status st = lock_pending(store, ref, &sh, &o);
    if (st != RT_OK)
        return st;
    pthread_mutex_unlock(&sh->lock);
    bool direct;
    st = reserve_bytes_ex(store, buf->size, &direct);
    if (st != RT_OK)
        return st;
    rt_spilled *sp = NULL;
    if (direct && (st = rt_spill_write(store->spill, &buf, 1, &sp)) != RT_OK)
        return st;
    st = lock_pending(store, ref, &sh, &o);
    if (st != RT_OK) {
        if (direct)
            rt_spilled_decref(sp);
        else
            atomic_sub(&store->used_bytes, buf->size);
        return st;
    }
    rt_watcher *fired = detach_watchers_locked(o); /* before the value takes their place */
    o->state = RT_OBJ_READY;
    if (direct) {
        o->value.spilled = sp;
        o->flags |= OBJ_SPILLED;
        atomic_add(&store->spilled, 1);
        atomic_add(&store->spilled_bytes, sp->size);
        __atomic_add_fetch(&store->spills, 1, __ATOMIC_RELAXED);
    } else {
        o->value.buf = buf;
    }
    start_result_ttl_locked(store, o);
    if (o->pins == 0 && !direct) {
        pthread_mutex_lock(&store->lru_lock);
        list_append(&store->lru, o, LIST_LRU);
        pthread_mutex_unlock(&store->lru_lock);
    }
    bool standin = (o->flags & OBJ_COPY) != 0;
    pthread_mutex_unlock(&sh->lock);
    if (!standin)
        atomic_sub(&store->pending, 1);
    else if (!direct)
        atomic_add(&store->copy_bytes, buf->size); /* a stand-in is now a copy */
    if (direct)
        rt_buf_decref(buf); /* stolen: the file has the bytes */
    fire_watchers(fired);
    return RT_OK;
}

/* Counts err as held by the store (its bytes and those of causes not held yet) and
 * evicts for them. Returns the value to store: err, or, when it does not fit even after
 * eviction, its summary, counted instead. New reference; NULL only when out of memory
 * (nothing is held then). */
static rt_error *hold_error(rt_store *store, rt_error *err)
{
    size_t added = rt_error_hold(err);
    atomic_add(&store->error_bytes, added);
    size_t used = atomic_add(&store->used_bytes, added);
    if (!store->memory_limit || used <= store->memory_limit || make_room(store) ||
        rt_error_chain_size(err) <= RT_ERROR_SUMMARY_MAX)
        return rt_error_incref(err); /* fits, or is already as small as it gets */
    rt_error *summary = rt_error_summary(err, RT_ERROR_SUMMARY_MAX);
    if (!summary)
        return rt_error_incref(err);
    size_t gone = rt_error_unhold(err);
    atomic_sub(&store->used_bytes, gone);
    atomic_sub(&store->error_bytes, gone);
    added = rt_error_hold(summary);
    atomic_add(&store->error_bytes, added);
    atomic_add(&store->used_bytes, added);
    make_room(store);
    return summary;
}

/* Undoes hold_error for a value that was not stored after all. */
static void unhold_error(rt_store *store, rt_error *held)
{
    size_t gone = rt_error_unhold(held);
    atomic_sub(&store->used_bytes, gone);
    atomic_sub(&store->error_bytes, gone);
    rt_error_decref(held);
}

rt_status rt_store_fail(rt_store *store, const char *ref, rt_error *err)
{
    /* Look first, so that a call that must fail evicts nothing; look again after holding,
     * as the object may have been freed meanwhile. */
    shard *sh;
    rt_object *o;
    rt_status st = lock_pending(store, ref, &sh, &o);
    if (st != RT_OK)
        return st;
    pthread_mutex_unlock(&sh->lock);
    rt_error *held = hold_error(store, err);
    if (!held)
        return RT_ENOMEM;
    st = lock_pending(store, ref, &sh, &o);
    if (st != RT_OK) {
        unhold_error(store, held);
        return st;
    }
    rt_watcher *fired = detach_watchers_locked(o); /* before the value takes their place */
    o->state = RT_OBJ_ERROR;
    o->value.error = held; /* the reference hold_error made */
    start_result_ttl_locked(store, o);
    if (o->pins == 0) {
        pthread_mutex_lock(&store->lru_lock);
        list_append(&store->lru, o, LIST_LRU);
        pthread_mutex_unlock(&store->lru_lock);
    }
    bool standin = (o->flags & OBJ_COPY) != 0;
    pthread_mutex_unlock(&sh->lock);
    if (!standin)
        atomic_sub(&store->pending, 1);
    fire_watchers(fired);
    return RT_OK;
}

/* ---- reading ------------------------------------------------------------------------- */

static void fill_view(const rt_object *o, rt_object_view *view)
{
    copy_ref(view->ref, o);
    view->state = (rt_object_state)o->state;
    view->lost_reason = (rt_lost_reason)o->lost_reason;
    view->buf = NULL;
    view->error = NULL;
    view->spilled = NULL;
    view->size = 0;
    view->content_type = NULL;
    if (o->state == RT_OBJ_READY && (o->flags & OBJ_SPILLED)) {
        view->spilled = rt_spilled_incref(o->value.spilled);
        view->size = o->value.spilled->size;
        view->content_type = o->value.spilled->content_type;
    } else if (o->state == RT_OBJ_READY && (o->flags & OBJ_INLINE)) {
        /* A copy: the record is not reference-counted, and a reader may keep the bytes
         * after the object is freed. NULL only when out of memory. */
        view->buf = rt_buf_from_interned(inline_data((rt_object *)o), o->inline_size,
                                         o->value.inline_type);
        view->size = o->inline_size;
        view->content_type = o->value.inline_type;
    } else if (o->state == RT_OBJ_READY) {
        view->buf = rt_buf_incref(o->value.buf);
        view->size = o->value.buf->size;
        view->content_type = o->value.buf->content_type;
    } else if (o->state == RT_OBJ_ERROR) {
        view->error = rt_error_incref(o->value.error);
    }
    view->created_at = o->created_at;
    view->expires_at = o->expires_at;
    view->pins = o->pins;
    view->seq = o->seq;
    view->copy = (o->flags & OBJ_COPY) != 0;
}

/* Expires an object whose TTL has passed. Shard lock held. Returns true if it expired. */
static bool expire_if_due_locked(rt_store *store, rt_object *o, double now, rt_buf **buf,
                                 rt_error **err)
{
    if (o->expires_at <= 0 || now < o->expires_at || o->state == RT_OBJ_LOST ||
        o->state == RT_OBJ_PENDING || o->pins > 0)
        return false;
    pthread_mutex_lock(&store->lru_lock);
    make_tombstone_locked(store, o, RT_LOST_EXPIRED, buf, err);
    prune_tombstones_locked(store, shard_for(store, o->hash));
    pthread_mutex_unlock(&store->lru_lock);
    __atomic_add_fetch(&store->expirations, 1, __ATOMIC_RELAXED);
    return true;
}

/* Reads a spilled object of a view back into a buffer the view alone holds. Returns
 * RT_OK, or RT_ENOMEM (out of memory or an I/O error: the view is then LOST, with no
 * reason). */
static rt_status restore_view(rt_store *store, rt_object_view *view)
{
    view->buf = rt_spilled_read(store->spill, view->spilled);
    rt_spilled_decref(view->spilled);
    view->spilled = NULL;
    if (!view->buf) {
        view->state = RT_OBJ_LOST;
        view->lost_reason = RT_LOST_NONE;
        view->size = 0;
        view->content_type = NULL;
        return RT_ENOMEM;
    }
    view->content_type = view->buf->content_type;
    __atomic_add_fetch(&store->restores, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&store->restored_bytes, view->buf->size, __ATOMIC_RELAXED);
    return RT_OK;
}

static rt_status read_object(rt_store *store, const char *ref, rt_object_view *view,
                             bool count, bool keep_file)
{
    uint32_t h = rt_hash_str(ref);
    shard *sh = shard_for(store, h);
    rt_buf *dropped_buf = NULL;
    rt_error *dropped_err = NULL;
    view->buf = NULL; /* so that releasing a view of an unknown ref is harmless */
    view->error = NULL;
    view->spilled = NULL;
    pthread_mutex_lock(&sh->lock);
    rt_object *o = shard_find(sh, ref, h);
    rt_status st = RT_ENOTFOUND;
    if (o) {
        if (o->expires_at > 0)
            expire_if_due_locked(store, o, rt_clock_wall(), &dropped_buf, &dropped_err);
        fill_view(o, view);
        st = o->state == RT_OBJ_LOST ? RT_ELOST : RT_OK;
        if (o->state == RT_OBJ_READY && !view->buf && !view->spilled) {
            /* No memory to copy an inline value: as restore_view does for a spilled one,
             * the view says LOST, so that no caller uses a READY view without bytes. */
            view->state = RT_OBJ_LOST;
            view->lost_reason = RT_LOST_NONE;
            view->size = 0;
            view->content_type = NULL;
            st = RT_ENOMEM;
        }
        if (count && st == RT_OK && !__atomic_load_n(&o->accessed, __ATOMIC_RELAXED))
            __atomic_store_n(&o->accessed, 1, __ATOMIC_RELAXED);
    }
    if (count) {
        if (st == RT_OK)
            sh->hits++;
        else
            sh->misses++;
    }
    pthread_mutex_unlock(&sh->lock);
    rt_buf_decref(dropped_buf);
    rt_error_decref(dropped_err);
    if (view->spilled && !keep_file)
        st = restore_view(store, view);
    return st;
}

rt_status rt_store_get(rt_store *store, const char *ref, rt_object_view *view)
{
    return read_object(store, ref, view, true, false);
}

rt_status rt_store_peek(rt_store *store, const char *ref, rt_object_view *view)
{
    return read_object(store, ref, view, false, false);
}

rt_status rt_store_get_file(rt_store *store, const char *ref, rt_object_view *view)
{
    return read_object(store, ref, view, true, true);
}

rt_status rt_store_peek_file(rt_store *store, const char *ref, rt_object_view *view)
{
    return read_object(store, ref, view, false, true);
}

/* ---- freeing, pins, expiry ------------------------------------------------------------ */

rt_status rt_store_delete(rt_store *store, const char *ref)
{
    return rt_store_delete_ex(store, ref, NULL);
}

/* rt_store_delete_ex, and rt_store_release when defer_if_pinned: a pinned object is then
 * only marked, and its last unpin frees it (*deferred says so). */
static rt_status free_object(rt_store *store, const char *ref, bool *was_shared,
                             bool defer_if_pinned, bool *deferred)
{
    uint32_t h = rt_hash_str(ref);
    shard *sh = shard_for(store, h);
    rt_buf *buf = NULL;
    rt_error *err = NULL;
    rt_watcher *fired = NULL;
    rt_object *removed = NULL;
    if (was_shared)
        *was_shared = false;
    pthread_mutex_lock(&sh->lock);
    rt_object *o = shard_find(sh, ref, h);
    rt_status st = RT_OK;
    if (!o) {
        st = RT_ENOTFOUND;
    } else if (o->state == RT_OBJ_LOST) {
        st = RT_ELOST;
    } else if ((o->flags & OBJ_COPY) && o->state == RT_OBJ_PENDING) {
        st = RT_ENOTFOUND; /* a stand-in: its fetch resolves it (with the owner's answer) */
    } else if (defer_if_pinned && o->pins > 0 && !(o->flags & OBJ_COPY)) {
        o->flags |= OBJ_FREE_ON_UNPIN;
        *deferred = true;
    } else if (o->flags & OBJ_COPY) {
        pthread_mutex_lock(&store->lru_lock);
        remove_copy_locked(store, sh, o, &buf, &err);
        pthread_mutex_unlock(&store->lru_lock);
        removed = o;
    } else {
        if (was_shared)
            *was_shared = (o->flags & OBJ_SHARED) != 0;
        fired = detach_watchers_locked(o);
        pthread_mutex_lock(&store->lru_lock);
        make_tombstone_locked(store, o, RT_LOST_FREED, &buf, &err);
        prune_tombstones_locked(store, sh);
        pthread_mutex_unlock(&store->lru_lock);
    }
    pthread_mutex_unlock(&sh->lock);
    free(removed);
    rt_buf_decref(buf);
    rt_error_decref(err);
    fire_watchers(fired);
    return st;
}

rt_status rt_store_delete_ex(rt_store *store, const char *ref, bool *was_shared)
{
    return free_object(store, ref, was_shared, false, NULL);
}

rt_status rt_store_release(rt_store *store, const char *ref, bool *deferred)
{
    bool later = false;
    rt_status st = free_object(store, ref, NULL, true, &later);
    if (deferred)
        *deferred = later;
    return st;
}

/* ---- secondary copies (cluster mode) ------------------------------------------------- */

rt_status rt_store_put_copy(rt_store *store, const char *ref, rt_buf *buf)
{
    size_t len = strnlen(ref, RT_REF_MADE_MAX + 1);
    if (len > RT_REF_MADE_MAX || !rt_ref_valid(ref))
        return RT_EINVAL;
    rt_object *o = calloc(1, record_size(len, 0));
    if (!o)
        return RT_ENOMEM;
    memcpy(o->ref, ref, len + 1);
    o->hash = rt_hash_str(o->ref);
    o->seq = __atomic_add_fetch(&store->next_seq, 1, __ATOMIC_RELAXED);
    o->created_at = rt_clock_wall();
    o->flags = OBJ_COPY;
    rt_status st = reserve_bytes(store, buf->size);
    if (st != RT_OK) {
        free(o);
        return st;
    }
    shard *sh = shard_for(store, o->hash);
    pthread_mutex_lock(&sh->lock);
    if (shard_find(sh, o->ref, o->hash)) {
        pthread_mutex_unlock(&sh->lock);
        atomic_sub(&store->used_bytes, buf->size);
        free(o);
        return RT_EEXIST;
    }
    o->state = RT_OBJ_READY;
    o->value.buf = buf;
    shard_insert(sh, o);
    pthread_mutex_lock(&store->lru_lock);
    list_append(&store->lru, o, LIST_LRU);
    pthread_mutex_unlock(&store->lru_lock);
    pthread_mutex_unlock(&sh->lock);
    atomic_add(&store->copies, 1);
    atomic_add(&store->copy_bytes, buf->size);
    return RT_OK;
}

rt_status rt_store_drop_copy(rt_store *store, const char *ref)
{
    uint32_t h = rt_hash_str(ref);
    shard *sh = shard_for(store, h);
    rt_buf *buf = NULL;
    rt_error *err = NULL;
    rt_object *removed = NULL;
    pthread_mutex_lock(&sh->lock);
    rt_object *o = shard_find(sh, ref, h);
    /* A pending stand-in stays: its fetch resolves it, waking whoever waits on it. */
    if (o && (o->flags & OBJ_COPY) && o->state != RT_OBJ_PENDING) {
        pthread_mutex_lock(&store->lru_lock);
        remove_copy_locked(store, sh, o, &buf, &err);
        pthread_mutex_unlock(&store->lru_lock);
        removed = o;
    }
    pthread_mutex_unlock(&sh->lock);
    free(removed);
    rt_buf_decref(buf);
    rt_error_decref(err);
    return removed ? RT_OK : RT_ENOTFOUND;
}

rt_status rt_store_put_standin(rt_store *store, const char *ref)
{
    size_t len = strnlen(ref, RT_REF_MADE_MAX + 1);
    if (len > RT_REF_MADE_MAX || !rt_ref_valid(ref))
        return RT_EINVAL;
    rt_object *o = calloc(1, record_size(len, 0));
    if (!o)
        return RT_ENOMEM;
    memcpy(o->ref, ref, len + 1);
    o->hash = rt_hash_str(o->ref);
    o->seq = __atomic_add_fetch(&store->next_seq, 1, __ATOMIC_RELAXED);
    o->created_at = rt_clock_wall();
    o->result_ttl = 0; /* PENDING: a copy never gets a TTL */
    o->flags = OBJ_COPY;
    o->state = RT_OBJ_PENDING;
    shard *sh = shard_for(store, o->hash);
    pthread_mutex_lock(&sh->lock);
    if (shard_find(sh, o->ref, o->hash)) {
        pthread_mutex_unlock(&sh->lock);
        free(o);
        return RT_EEXIST;
    }
    shard_insert(sh, o);
    pthread_mutex_unlock(&sh->lock);
    atomic_add(&store->copies, 1);
    return RT_OK;
}

rt_status rt_store_drop_standin(rt_store *store, const char *ref)
{
    uint32_t h = rt_hash_str(ref);
    shard *sh = shard_for(store, h);
    rt_object *removed = NULL;
    rt_status st = RT_ENOTFOUND;
    pthread_mutex_lock(&sh->lock);
    rt_object *o = shard_find(sh, ref, h);
    if (o && (o->flags & OBJ_COPY) && o->state == RT_OBJ_PENDING) {
        st = RT_ESTATE;
        if (!o->value.watchers && o->pins == 0) {
            rt_buf *buf = NULL;
            rt_error *err = NULL;
            pthread_mutex_lock(&store->lru_lock);
            remove_copy_locked(store, sh, o, &buf, &err); /* pending: no value */
            pthread_mutex_unlock(&store->lru_lock);
            removed = o;
            st = RT_OK;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    free(removed);
    return st;
}

rt_status rt_store_mark_shared(rt_store *store, const char *ref)
{
    uint32_t h = rt_hash_str(ref);
    shard *sh = shard_for(store, h);
    pthread_mutex_lock(&sh->lock);
    rt_object *o = shard_find(sh, ref, h);
    rt_status st = RT_OK;
    if (!o || (o->flags & OBJ_COPY))
        st = RT_ENOTFOUND;
    else
        o->flags |= OBJ_SHARED;
    pthread_mutex_unlock(&sh->lock);
    return st;
}

rt_status rt_store_pin(rt_store *store, const char *ref)
{
    uint32_t h = rt_hash_str(ref);
    shard *sh = shard_for(store, h);
    pthread_mutex_lock(&sh->lock);
    rt_object *o = shard_find(sh, ref, h);
    rt_status st = RT_OK;
    if (!o) {
        st = RT_ENOTFOUND;
    } else if (o->state == RT_OBJ_LOST) {
        st = RT_ELOST;
    } else if (o->pins++ == 0 && (o->state == RT_OBJ_READY || o->state == RT_OBJ_ERROR)) {
        pthread_mutex_lock(&store->lru_lock);
        if (o->in_list == LIST_LRU)
            list_unlink(&store->lru, o);
        pthread_mutex_unlock(&store->lru_lock);
    }
    pthread_mutex_unlock(&sh->lock);
    return st;
}

rt_status rt_store_unpin(rt_store *store, const char *ref)
{
    uint32_t h = rt_hash_str(ref);
    shard *sh = shard_for(store, h);
    rt_buf *buf = NULL;
    rt_error *err = NULL;
    rt_watcher *fired = NULL;
    pthread_mutex_lock(&sh->lock);
    rt_object *o = shard_find(sh, ref, h);
    rt_status st = RT_OK;
    if (!o) {
        st = RT_ENOTFOUND;
    } else if (o->pins == 0) {
        st = o->state == RT_OBJ_LOST ? RT_ELOST : RT_ESTATE;
    } else if (--o->pins == 0 && (o->flags & OBJ_FREE_ON_UNPIN) &&
               o->state != RT_OBJ_LOST) {
        /* Released while a task or call depended on it: that was the last one. */
        fired = detach_watchers_locked(o);
        pthread_mutex_lock(&store->lru_lock);
        make_tombstone_locked(store, o, RT_LOST_FREED, &buf, &err);
        prune_tombstones_locked(store, sh);
        pthread_mutex_unlock(&store->lru_lock);
    } else if (o->pins == 0 && (o->state == RT_OBJ_READY || o->state == RT_OBJ_ERROR)) {
        pthread_mutex_lock(&store->lru_lock);
        if (o->in_list == LIST_NONE && !(o->flags & (OBJ_SPILLED | OBJ_SPILLING)))
            list_append(&store->lru, o, LIST_LRU);
        pthread_mutex_unlock(&store->lru_lock);
        /* Its TTL may have run out while pinned (it left the heap then): expire it now. */
        if (o->expires_at > 0)
            expire_if_due_locked(store, o, rt_clock_wall(), &buf, &err);
    }
    pthread_mutex_unlock(&sh->lock);
    rt_buf_decref(buf);
    rt_error_decref(err);
    fire_watchers(fired);
    return st;
}

size_t rt_store_expire(rt_store *store)
{
    double now = rt_clock_wall();
    size_t expired = 0;
    pthread_mutex_lock(&store->ttl_lock);
    /* Each round takes the heap's top out (expired, or left for its unpin), so the loop
     * ends; the bound is a guard. */
    for (size_t rounds = store->ttl_count; rounds > 0; rounds--) {
        store->expire_visits++;
        if (store->ttl_count == 0 || store->ttl_heap[0]->expires_at > now)
            break;
        /* Copy the ref and let go: the lock order takes the shard lock first, and the
         * object may become a tombstone (leaving the heap) meanwhile. */
        char ref[RT_REF_MADE_MAX + 1];
        copy_ref(ref, store->ttl_heap[0]);
        uint32_t hash = store->ttl_heap[0]->hash;
        pthread_mutex_unlock(&store->ttl_lock);

        shard *sh = shard_for(store, hash);
        rt_buf *buf = NULL;
        rt_error *err = NULL;
        pthread_mutex_lock(&sh->lock);
        rt_object *o = shard_find(sh, ref, hash);
        if (o && expire_if_due_locked(store, o, now, &buf, &err))
            expired++;
        else if (o && o->pins > 0 && o->expires_at <= now)
            ttl_remove(store, o); /* due but pinned: rt_store_unpin expires it */
        pthread_mutex_unlock(&sh->lock);
        rt_buf_decref(buf);
        rt_error_decref(err);
        pthread_mutex_lock(&store->ttl_lock);
    }
    pthread_mutex_unlock(&store->ttl_lock);
    return expired;
}

uint64_t rt__store_expire_visits(rt_store *store)
{
    pthread_mutex_lock(&store->ttl_lock);
    uint64_t v = store->expire_visits;
    pthread_mutex_unlock(&store->ttl_lock);
    return v;
}

/* ---- listing and statistics ----------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_view_seq(const void *a, const void *b)
{
    return cmp_u64(&((const rt_object_view *)a)->seq, &((const rt_object_view *)b)->seq);
}

/* Keeps the k smallest values in a max-heap of capacity k. */
static void heap_offer(uint64_t *heap, size_t *n, size_t k, uint64_t v)
{
    size_t i;
    if (*n < k) {
        i = (*n)++;
        heap[i] = v;
        while (i > 0 && heap[(i - 1) / 2] < heap[i]) {
            uint64_t t = heap[i];
            heap[i] = heap[(i - 1) / 2];
            heap[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
        return;
    }
    if (v >= heap[0])
        return;
    heap[0] = v;
    i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && heap[l] > heap[m])
            m = l;
        if (r < *n && heap[r] > heap[m])
            m = r;
        if (m == i)
            break;
        uint64_t t = heap[i];
        heap[i] = heap[m];
        heap[m] = t;
        i = m;
    }
}

size_t rt_store_list(rt_store *store, uint64_t after_seq, int state, size_t limit,
                     rt_object_view *views, uint64_t *next_seq)
{
    *next_seq = 0;
    if (limit == 0)
        return 0;
    /* Pass 1: the sequence numbers of the first limit + 1 matching objects. */
    size_t k = limit + 1, nheap = 0;
    uint64_t *heap = malloc(k * sizeof(*heap));
    if (!heap)
        return 0;
    for (int i = 0; i < SHARD_COUNT; i++) {
        shard *sh = &store->shards[i];
        pthread_mutex_lock(&sh->lock);
        for (size_t b = 0; b < sh->nbuckets; b++)
            for (rt_object *o = sh->buckets[b]; o; o = o->hnext)
                if (o->seq > after_seq && !(o->flags & OBJ_COPY) &&
                    (state < 0 || o->state == state))
                    heap_offer(heap, &nheap, k, o->seq);
        pthread_mutex_unlock(&sh->lock);
    }
    if (nheap == 0) {
        free(heap);
        return 0;
    }
    qsort(heap, nheap, sizeof(*heap), cmp_u64);
    bool more = nheap > limit;
    uint64_t cutoff = heap[nheap > limit ? limit - 1 : nheap - 1];
    free(heap);

    /* Pass 2: fill the views of those objects (some may have gone meanwhile). */
    size_t n = 0;
    for (int i = 0; i < SHARD_COUNT && n < limit; i++) {
        shard *sh = &store->shards[i];
        pthread_mutex_lock(&sh->lock);
        for (size_t b = 0; b < sh->nbuckets && n < limit; b++)
            for (rt_object *o = sh->buckets[b]; o && n < limit; o = o->hnext)
                if (o->seq > after_seq && o->seq <= cutoff && !(o->flags & OBJ_COPY) &&
                    (state < 0 || o->state == state))
                    fill_view(o, &views[n++]);
        pthread_mutex_unlock(&sh->lock);
    }
    qsort(views, n, sizeof(*views), cmp_view_seq);
    if (more && n > 0)
        *next_seq = views[n - 1].seq;
    return n;
}

void rt_store_get_stats(rt_store *store, rt_store_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < SHARD_COUNT; i++) {
        shard *sh = &store->shards[i];
        pthread_mutex_lock(&sh->lock);
        out->hits += sh->hits;
        out->misses += sh->misses;
        pthread_mutex_unlock(&sh->lock);
    }
    pthread_mutex_lock(&store->lru_lock);
    out->tombstones = store->tombstones.count;
    out->tombstones_forgotten = store->tombstones_forgotten;
    pthread_mutex_unlock(&store->lru_lock);
    out->max_tombstones = store->max_tombstones;
    out->objects = atomic_get(&store->live_objects);
    out->bytes = atomic_get(&store->used_bytes);
    out->error_bytes = atomic_get(&store->error_bytes);
    out->pending = atomic_get(&store->pending);
    out->memory_limit = store->memory_limit;
    out->evictions = __atomic_load_n(&store->evictions, __ATOMIC_RELAXED);
    out->expirations = __atomic_load_n(&store->expirations, __ATOMIC_RELAXED);
    out->copies = atomic_get(&store->copies);
    out->copy_bytes = atomic_get(&store->copy_bytes);
    out->on_full = store->on_full;
    out->spilled = atomic_get(&store->spilled);
    out->spilled_bytes = atomic_get(&store->spilled_bytes);
    out->spills = __atomic_load_n(&store->spills, __ATOMIC_RELAXED);
    out->restores = __atomic_load_n(&store->restores, __ATOMIC_RELAXED);
    out->restored_bytes = __atomic_load_n(&store->restored_bytes, __ATOMIC_RELAXED);
    out->spill_thread_seconds =
        (double)__atomic_load_n(&store->spill_thread_ns, __ATOMIC_RELAXED) / 1e9;
    rt_spill_get_stats(store->spill, &out->disk);
}
