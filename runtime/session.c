/* Sessions (see session.h): a table of leases, what each owns, and their cleanup.
 *
 * DESIGN
 * - One mutex (lock) guards the hash table, the lease heap, every session's fields and
 *   lists, and the counters. It is held for table and list work only: the cleanup of a
 *   closed or expired session (cancels, kills, frees) runs after the session was taken out
 *   of the table and the heap, with the mutex released, so a slow cleanup blocks nobody
 *   and nothing is called back with it held.
 * - A session is in the table and in the heap exactly while it is open; whoever takes it
 *   out (close or expire) owns it and cleans it up, once.
 * - Heap: min-heap by heap_due, the expiry the session had when it last entered its place;
 *   renewals move expires_at only (heap_due <= expires_at always), and rt_sessions_expire
 *   sends a renewed top back down with heap_due = expires_at.
 * - Lists are pruned with rt_store_peek_file / rt_actor_get under the mutex (lock order
 *   sessions -> store, tasks, actors; those never call into sessions). */
#include "runtime/session.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/hash.h"
#include "runtime/lock.h"

#define PRUNE_FIRST 64 /* a list is first pruned when it reaches this many entries */

/* A growing array of fixed-width entries (ids, or pairs of ids). */
typedef struct id_list {
    char *data;
    size_t n, cap;
    size_t width;    /* bytes per entry */
    size_t prune_at; /* prune when n reaches this */
} id_list;

typedef struct session {
    struct session *hnext;
    char id[RT_REF_SIZE];
    uint32_t hash;
    size_t heap_index;
    double ttl, created_at, expires_at;
    double heap_due; /* the key of its heap place */
    unsigned long long renewals;
    id_list objects; /* refs */
    id_list tasks;   /* task ids */
    id_list actors;  /* actor ids (not detached) */
} session;

struct rt_sessions {
    pthread_mutex_t lock;
    rt_store *store;
    rt_tasks *tasks;
    rt_actors *actors;
    size_t max_sessions;
    double max_ttl;
    session **buckets;
    size_t nbuckets; /* power of two */
    session **heap;
    size_t count, heap_cap;
    uint64_t expire_visits;
    unsigned long long opened, closed, expired;
    unsigned long long objects_released, tasks_cancelled, actors_killed;
};

/* ---- lists ------------------------------------------------------------------------- */

static void list_init(id_list *l, size_t width)
{
    memset(l, 0, sizeof(*l));
    l->width = width;
    l->prune_at = PRUNE_FIRST;
}

static char *list_at(const id_list *l, size_t i)
{
    return l->data + i * l->width;
}

typedef bool (*alive_fn)(rt_sessions *ss, const char *entry);

static bool object_alive(rt_sessions *ss, const char *ref)
{
    rt_object_view view;
    rt_status st = rt_store_peek_file(ss->store, ref, &view); /* no read-back when spilled */
    rt_object_view_release(&view);
    return st == RT_OK;
}

static bool task_alive(rt_sessions *ss, const char *id)
{
    rt_task_info info;
    if (rt_task_get(ss->tasks, id, &info) != RT_OK)
        return false;
    bool alive = info.state != RT_TASK_FINISHED && info.state != RT_TASK_FAILED &&
                 info.state != RT_TASK_CANCELLED;
    rt_task_info_release(&info);
    return alive;
}

static bool actor_alive(rt_sessions *ss, const char *id)
{
    rt_actor_info info;
    if (rt_actor_get(ss->actors, id, &info) != RT_OK)
        return false;
    bool alive = info.state != RT_ACTOR_DEAD;
    rt_actor_info_release(&info);
    return alive;
}

/* Drops the entries that are gone, keeping order. Lock held. */
static void list_prune(rt_sessions *ss, id_list *l, alive_fn alive)
{
    size_t kept = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (!alive(ss, list_at(l, i)))
            continue;
        if (kept != i)
            memcpy(list_at(l, kept), list_at(l, i), l->width);
        kept++;
    }
    l->n = kept;
    l->prune_at = kept * 2 > PRUNE_FIRST ? kept * 2 : PRUNE_FIRST;
}

/* Appends one entry (width bytes at entry). 0, or -1 when out of memory. Lock held. */
static int list_append(rt_sessions *ss, id_list *l, const char *entry, alive_fn alive)
{
    if (l->n >= l->prune_at)
        list_prune(ss, l, alive);
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char *grown = realloc(l->data, cap * l->width);
        if (!grown)
            return -1;
        l->data = grown;
        l->cap = cap;
    }
    memcpy(list_at(l, l->n++), entry, l->width);
    return 0;
}

static void session_free(session *s)
{
    if (s) {
        free(s->objects.data);
        free(s->tasks.data);
        free(s->actors.data);
        free(s);
    }
}

/* ---- the table and the heap (lock held) ---------------------------------------------- */

static session *table_find(rt_sessions *ss, const char *id, uint32_t hash)
{
    for (session *s = ss->buckets[hash & (ss->nbuckets - 1)]; s; s = s->hnext)
        if (s->hash == hash && strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

static void table_remove(rt_sessions *ss, session *s)
{
    session **p = &ss->buckets[s->hash & (ss->nbuckets - 1)];
    while (*p != s)
        p = &(*p)->hnext;
    *p = s->hnext;
}

static void heap_swap(rt_sessions *ss, size_t a, size_t b)
{
    session *t = ss->heap[a];
    ss->heap[a] = ss->heap[b];
    ss->heap[b] = t;
    ss->heap[a]->heap_index = a;
    ss->heap[b]->heap_index = b;
}

static void heap_up(rt_sessions *ss, size_t i)
{
    while (i > 0 && ss->heap[(i - 1) / 2]->heap_due > ss->heap[i]->heap_due) {
        heap_swap(ss, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(rt_sessions *ss, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < ss->count && ss->heap[l]->heap_due < ss->heap[m]->heap_due)
            m = l;
        if (r < ss->count && ss->heap[r]->heap_due < ss->heap[m]->heap_due)
            m = r;
        if (m == i)
            return;
        heap_swap(ss, i, m);
        i = m;
    }
}

/* Takes s out of the table and the heap: the caller now owns it. */
static void take_out(rt_sessions *ss, session *s)
{
    table_remove(ss, s);
    size_t i = s->heap_index;
    ss->count--;
    if (i != ss->count) {
        ss->heap[i] = ss->heap[ss->count];
        ss->heap[i]->heap_index = i;
        heap_down(ss, i);
        heap_up(ss, i);
    }
}

/* ---- cleanup (no lock held) ---------------------------------------------------------- */

/* Cancels the session's tasks, kills its actors and frees its objects, in that order: a
 * cancelled task unpins its arguments, so that they can go at once. Frees s. */
static void cleanup(rt_sessions *ss, session *s)
{
    unsigned long long cancelled = 0, killed = 0, released = 0;
    for (size_t i = 0; i < s->tasks.n; i++) {
        rt_task_state state;
        if (rt_task_cancel(ss->tasks, list_at(&s->tasks, i), &state) == RT_OK)
            cancelled++;
    }
    for (size_t i = 0; i < s->actors.n; i++) {
        rt_actor_info info;
        bool was_alive = rt_actor_get(ss->actors, list_at(&s->actors, i), &info) == RT_OK;
        if (was_alive) {
            was_alive = info.state != RT_ACTOR_DEAD;
            rt_actor_info_release(&info);
        }
        if (was_alive && rt_actor_kill(ss->actors, list_at(&s->actors, i)) == RT_OK)
            killed++;
    }
    for (size_t i = 0; i < s->objects.n; i++)
        if (rt_store_release(ss->store, list_at(&s->objects, i), NULL) == RT_OK)
            released++;
    pthread_mutex_lock(&ss->lock);
    ss->tasks_cancelled += cancelled;
    ss->actors_killed += killed;
    ss->objects_released += released;
    pthread_mutex_unlock(&ss->lock);
    session_free(s);
}

/* ---- the public functions ------------------------------------------------------------ */

rt_sessions *rt_sessions_new(rt_store *store, rt_tasks *tasks, rt_actors *actors,
                             const rt_sessions_config *config)
{
    rt_sessions *ss = calloc(1, sizeof(*ss));
    if (!ss)
        return NULL;
    ss->store = store;
    ss->tasks = tasks;
    ss->actors = actors;
    ss->max_sessions = config && config->max_sessions ? config->max_sessions : 10000;
    ss->max_ttl = config && config->max_ttl > 0 ? config->max_ttl : 86400;
    ss->nbuckets = 64;
    while (ss->nbuckets < ss->max_sessions && ss->nbuckets < ((size_t)1 << 20))
        ss->nbuckets *= 2;
    ss->buckets = calloc(ss->nbuckets, sizeof(*ss->buckets));
    if (!ss->buckets) {
        free(ss);
        return NULL;
    }
    rt_mutex_init(&ss->lock);
    return ss;
}

void rt_sessions_free(rt_sessions *ss)
{
    if (!ss)
        return;
    for (size_t i = 0; i < ss->count; i++)
        session_free(ss->heap[i]);
    free(ss->heap);
    free(ss->buckets);
    pthread_mutex_destroy(&ss->lock);
    free(ss);
}

static void fill_info(const session *s, rt_session_info *info)
{
    memcpy(info->session_id, s->id, sizeof(s->id));
    info->ttl = s->ttl;
    info->created_at = s->created_at;
    info->expires_at = s->expires_at;
    info->renewals = s->renewals;
    info->objects = s->objects.n;
    info->tasks = s->tasks.n;
    info->actors = s->actors.n;
}

rt_status rt_session_open(rt_sessions *ss, double ttl, double now, rt_session_info *info)
{
    if (!isfinite(ttl) || ttl <= 0 || ttl > ss->max_ttl)
        return RT_EINVAL;
    session *s = calloc(1, sizeof(*s));
    if (!s)
        return RT_ENOMEM;
    rt_ref_generate(s->id, 's');
    s->hash = rt_hash_str(s->id);
    s->ttl = ttl;
    s->created_at = now;
    s->expires_at = s->heap_due = now + ttl;
    list_init(&s->objects, RT_REF_SIZE);
    list_init(&s->tasks, RT_REF_SIZE);
    list_init(&s->actors, RT_REF_SIZE);
    pthread_mutex_lock(&ss->lock);
    rt_status st = RT_OK;
    if (ss->count >= ss->max_sessions) {
        st = RT_ELIMIT;
    } else if (ss->count == ss->heap_cap) {
        size_t cap = ss->heap_cap ? ss->heap_cap * 2 : 16;
        session **grown = realloc(ss->heap, cap * sizeof(*grown));
        if (grown) {
            ss->heap = grown;
            ss->heap_cap = cap;
        } else {
            st = RT_ENOMEM;
        }
    }
    if (st == RT_OK) {
        size_t b = s->hash & (ss->nbuckets - 1);
        s->hnext = ss->buckets[b];
        ss->buckets[b] = s;
        s->heap_index = ss->count;
        ss->heap[ss->count++] = s;
        heap_up(ss, s->heap_index);
        ss->opened++;
        fill_info(s, info);
    }
    pthread_mutex_unlock(&ss->lock);
    if (st != RT_OK)
        session_free(s);
    return st;
}

rt_status rt_session_get(rt_sessions *ss, const char *id, rt_session_info *info)
{
    uint32_t h = rt_hash_str(id);
    pthread_mutex_lock(&ss->lock);
    session *s = table_find(ss, id, h);
    if (s)
        fill_info(s, info);
    pthread_mutex_unlock(&ss->lock);
    return s ? RT_OK : RT_ENOTFOUND;
}

rt_status rt_session_renew(rt_sessions *ss, const char *id, double now)
{
    uint32_t h = rt_hash_str(id);
    pthread_mutex_lock(&ss->lock);
    session *s = table_find(ss, id, h);
    if (s) {
        if (now + s->ttl > s->expires_at)
            s->expires_at = now + s->ttl; /* its heap place catches up when it is due */
        s->renewals++;
    }
    pthread_mutex_unlock(&ss->lock);
    return s ? RT_OK : RT_ENOTFOUND;
}

rt_status rt_session_close(rt_sessions *ss, const char *id)
{
    uint32_t h = rt_hash_str(id);
    pthread_mutex_lock(&ss->lock);
    session *s = table_find(ss, id, h);
    if (s) {
        take_out(ss, s);
        ss->closed++;
    }
    pthread_mutex_unlock(&ss->lock);
    if (!s)
        return RT_ENOTFOUND;
    cleanup(ss, s);
    return RT_OK;
}

/* Adds entries to one of a session's lists; when the session is gone, cleans them up as
 * its close would have. which: 0 objects, 1 tasks, 2 actors. */
static rt_status add_entries(rt_sessions *ss, const char *id, int which, const char *entries,
                             size_t width, size_t n)
{
    static const alive_fn ALIVE[] = {object_alive, task_alive, actor_alive};
    uint32_t h = rt_hash_str(id);
    pthread_mutex_lock(&ss->lock);
    session *s = table_find(ss, id, h);
    rt_status st = s ? RT_OK : RT_ENOTFOUND;
    for (size_t i = 0; s && i < n && st == RT_OK; i++) {
        id_list *l = which == 0 ? &s->objects : which == 1 ? &s->tasks : &s->actors;
        if (list_append(ss, l, entries + i * width, ALIVE[which]) != 0)
            st = RT_ENOMEM;
    }
    pthread_mutex_unlock(&ss->lock);
    if (st != RT_ENOTFOUND)
        return st;
    /* Closed meanwhile: what was made for it goes as it would have. */
    session *orphan = calloc(1, sizeof(*orphan));
    if (!orphan)
        return RT_ENOTFOUND;
    list_init(&orphan->objects, RT_REF_SIZE);
    list_init(&orphan->tasks, RT_REF_SIZE);
    list_init(&orphan->actors, RT_REF_SIZE);
    id_list *l = which == 0 ? &orphan->objects : which == 1 ? &orphan->tasks : &orphan->actors;
    if ((l->data = malloc(n * width + 1))) {
        memcpy(l->data, entries, n * width);
        l->n = l->cap = n;
    }
    cleanup(ss, orphan);
    return RT_ENOTFOUND;
}

rt_status rt_session_add_objects(rt_sessions *ss, const char *id,
                                 char (*refs)[RT_REF_SIZE], size_t n)
{
    return add_entries(ss, id, 0, (const char *)refs, RT_REF_SIZE, n);
}

rt_status rt_session_add_task(rt_sessions *ss, const char *id, const char *task_id)
{
    char entry[RT_REF_SIZE] = {0};
    strncpy(entry, task_id, RT_REF_SIZE - 1);
    return add_entries(ss, id, 1, entry, sizeof(entry), 1);
}

rt_status rt_session_add_actor(rt_sessions *ss, const char *id, const char *actor_id)
{
    char entry[RT_REF_SIZE] = {0};
    strncpy(entry, actor_id, RT_REF_SIZE - 1);
    return add_entries(ss, id, 2, entry, sizeof(entry), 1);
}

size_t rt_sessions_expire(rt_sessions *ss, double now)
{
    size_t expired = 0;
    pthread_mutex_lock(&ss->lock);
    /* Each round takes the top out or sends it down with a due time after now, so each
     * session is looked at most twice; the bound is a guard. */
    for (size_t rounds = 2 * ss->count + 1; rounds > 0; rounds--) {
        ss->expire_visits++;
        if (ss->count == 0 || ss->heap[0]->heap_due > now)
            break;
        session *s = ss->heap[0];
        if (s->expires_at > now) { /* renewed since it took its place */
            s->heap_due = s->expires_at;
            heap_down(ss, 0);
            continue;
        }
        take_out(ss, s);
        ss->expired++;
        pthread_mutex_unlock(&ss->lock);
        cleanup(ss, s);
        expired++;
        pthread_mutex_lock(&ss->lock);
    }
    pthread_mutex_unlock(&ss->lock);
    return expired;
}

uint64_t rt__sessions_expire_visits(rt_sessions *ss)
{
    pthread_mutex_lock(&ss->lock);
    uint64_t v = ss->expire_visits;
    pthread_mutex_unlock(&ss->lock);
    return v;
}

void rt_sessions_get_stats(rt_sessions *ss, rt_sessions_stats *out)
{
    pthread_mutex_lock(&ss->lock);
    out->open = ss->count;
    out->max_sessions = ss->max_sessions;
    out->opened = ss->opened;
    out->closed = ss->closed;
    out->expired = ss->expired;
    out->objects_released = ss->objects_released;
    out->tasks_cancelled = ss->tasks_cancelled;
    out->actors_killed = ss->actors_killed;
    pthread_mutex_unlock(&ss->lock);
}
