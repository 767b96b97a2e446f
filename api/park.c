/* Parked requests: suspension, store watchers, and the deadline thread. See park.h. */
#include "api/park.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "api/budget.h"
#include "api/problem.h"
#include "runtime/clock.h"

/* What api_parking_full reserves for: the handlers that ask it park on a task's or a
 * call's results (RT_TASK_NUM_RETURNS_MAX at most). */
#define PARK_FEW_REFS 16

struct api_park {
    int refs;      /* atomic */
    int woken;     /* atomic: 1 once this round's resume was issued */
    long remaining; /* atomic: resolutions still needed before waking */
    struct MHD_Connection *conn;
    api_parking *parking;
    double deadline;     /* monotonic; guarded by parking->lock */
    size_t heap_index;   /* parking->lock; SIZE_MAX when not in the heap */
    size_t nwatchers;
    rt_watcher watchers[];
};

struct api_parking {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    pthread_t thread;
    int stopping;
    api_park **heap; /* min-heap by deadline */
    size_t count, cap;
};

static void park_decref(api_park *park)
{
    if (__atomic_sub_fetch(&park->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(park);
}

static void park_wake(api_park *park)
{
    int expected = 0;
    if (__atomic_compare_exchange_n(&park->woken, &expected, 1, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        MHD_resume_connection(park->conn);
}

/* ---- the deadline heap (parking->lock held) ----------------------------------------- */

static void heap_swap(api_parking *pk, size_t a, size_t b)
{
    api_park *t = pk->heap[a];
    pk->heap[a] = pk->heap[b];
    pk->heap[b] = t;
    pk->heap[a]->heap_index = a;
    pk->heap[b]->heap_index = b;
}

static void heap_up(api_parking *pk, size_t i)
{
    while (i > 0 && pk->heap[(i - 1) / 2]->deadline > pk->heap[i]->deadline) {
        heap_swap(pk, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(api_parking *pk, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < pk->count && pk->heap[l]->deadline < pk->heap[m]->deadline)
            m = l;
        if (r < pk->count && pk->heap[r]->deadline < pk->heap[m]->deadline)
            m = r;
        if (m == i)
            return;
        heap_swap(pk, i, m);
        i = m;
    }
}

static int heap_push(api_parking *pk, api_park *park)
{
    if (pk->count == pk->cap) {
        size_t cap = pk->cap ? pk->cap * 2 : 256;
        api_park **h = realloc(pk->heap, cap * sizeof(*h));
        if (!h)
            return -1;
        pk->heap = h;
        pk->cap = cap;
    }
    park->heap_index = pk->count;
    pk->heap[pk->count++] = park;
    heap_up(pk, park->heap_index);
    return 0;
}

static void heap_remove(api_parking *pk, api_park *park)
{
    size_t i = park->heap_index;
    if (i == SIZE_MAX)
        return;
    pk->count--;
    if (i != pk->count) {
        pk->heap[i] = pk->heap[pk->count];
        pk->heap[i]->heap_index = i;
        heap_down(pk, i);
        heap_up(pk, i);
    }
    park->heap_index = SIZE_MAX;
}

/* ---- the deadline thread ----------------------------------------------------------- */

static void *deadline_thread(void *arg)
{
    api_parking *pk = arg;
    pthread_mutex_lock(&pk->lock);
    while (!pk->stopping) {
        double now = rt_clock_monotonic();
        while (pk->count > 0 && pk->heap[0]->deadline <= now) {
            api_park *park = pk->heap[0];
            heap_remove(pk, park);
            park_wake(park);
            park_decref(park); /* the heap's reference; the request still holds one */
        }
        if (pk->count == 0) {
            pthread_cond_wait(&pk->changed, &pk->lock);
        } else {
            double when = pk->heap[0]->deadline;
            /* The condition variable uses CLOCK_MONOTONIC (set in api_parking_new). */
            struct timespec ts;
            ts.tv_sec = (time_t)when;
            ts.tv_nsec = (long)((when - (double)ts.tv_sec) * 1e9);
            pthread_cond_timedwait(&pk->changed, &pk->lock, &ts);
        }
    }
    pthread_mutex_unlock(&pk->lock);
    return NULL;
}

api_parking *api_parking_new(void)
{
    api_parking *pk = calloc(1, sizeof(*pk));
    if (!pk)
        return NULL;
    pthread_mutex_init(&pk->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&pk->changed, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&pk->thread, NULL, deadline_thread, pk) != 0) {
        pthread_cond_destroy(&pk->changed);
        pthread_mutex_destroy(&pk->lock);
        free(pk);
        return NULL;
    }
    return pk;
}

void api_parking_free(api_parking *pk)
{
    if (!pk)
        return;
    pthread_mutex_lock(&pk->lock);
    pk->stopping = 1;
    pthread_cond_signal(&pk->changed);
    pthread_mutex_unlock(&pk->lock);
    pthread_join(pk->thread, NULL);
    /* Anything still in the heap belongs to requests MHD has already dropped. */
    for (size_t i = 0; i < pk->count; i++)
        park_decref(pk->heap[i]);
    free(pk->heap);
    pthread_cond_destroy(&pk->changed);
    pthread_mutex_destroy(&pk->lock);
    free(pk);
}

void api_parking_wake_all(api_parking *pk)
{
    pthread_mutex_lock(&pk->lock);
    double now = rt_clock_monotonic();
    for (size_t i = 0; i < pk->count; i++)
        pk->heap[i]->deadline = now; /* all equal: still a valid heap */
    pthread_cond_signal(&pk->changed);
    pthread_mutex_unlock(&pk->lock);
}

bool api_parking_full(api_request *req)
{
    size_t max = req->ctx->config.max_parked;
    return (max && api_parking_count(req->ctx->parking) >= max) ||
           api_budget_reserve_parked(req, PARK_FEW_REFS) != 0;
}

size_t api_parking_count(api_parking *pk)
{
    pthread_mutex_lock(&pk->lock);
    size_t n = pk->count;
    pthread_mutex_unlock(&pk->lock);
    return n;
}

/* ---- parking and resuming a request ------------------------------------------------ */

static void on_resolved(rt_watcher *w, void *arg)
{
    api_park *park = arg;
    (void)w;
    if (__atomic_sub_fetch(&park->remaining, 1, __ATOMIC_ACQ_REL) <= 0)
        park_wake(park);
    park_decref(park); /* this watcher's reference */
}

enum MHD_Result api_park_on_refs(api_request *req, const char *const *refs, size_t n,
                                 size_t needed)
{
    api_parking *pk = req->ctx->parking;
    api_park_finish(req); /* a previous round, if any */
    if (__atomic_load_n(&req->ctx->lifecycle, __ATOMIC_ACQUIRE) == API_DRAINING)
        req->deadline = 0; /* draining: answer with what there is, right away */
    if (req->ctx->config.max_parked && api_parking_count(pk) >= req->ctx->config.max_parked) {
        req->retry_after = 1;
        return api_problemf(req, 429, "TooManyRequests",
                            "%zu requests are already waiting; the limit is %zu (RAYD_MAX_PARKED)",
                            api_parking_count(pk), req->ctx->config.max_parked);
    }
    if (api_budget_reserve_parked(req, n) != 0) {
        req->retry_after = 1;
        return api_problemf(req, 503, "ServiceUnavailable",
                            "waiting requests hold the server's body budget (%zu bytes, "
                            "RAYD_BODY_BUDGET); retry shortly",
                            req->ctx->bodies.limit);
    }
    api_park *park = calloc(1, sizeof(*park) + n * sizeof(rt_watcher));
    if (!park)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    park->refs = 1; /* the request's */
    park->remaining = (long)needed;
    park->conn = req->conn;
    park->parking = pk;
    park->deadline = req->deadline;
    park->heap_index = SIZE_MAX;
    park->nwatchers = n;
    req->park = park;

    /* Suspend before anything can resume us. */
    MHD_suspend_connection(req->conn);

    pthread_mutex_lock(&pk->lock);
    __atomic_add_fetch(&park->refs, 1, __ATOMIC_RELAXED);
    if (heap_push(pk, park) != 0) {
        __atomic_sub_fetch(&park->refs, 1, __ATOMIC_RELAXED); /* the heap never held it */
        park->deadline = 0; /* could not track: wake at once and answer */
        pthread_mutex_unlock(&pk->lock);
        park_wake(park);
        return MHD_YES;
    }
    if (park->heap_index == 0)
        pthread_cond_signal(&pk->changed);
    pthread_mutex_unlock(&pk->lock);

    long resolved = 0;
    for (size_t i = 0; i < n; i++) {
        rt_watcher *w = &park->watchers[i];
        w->fn = on_resolved;
        w->arg = park;
        __atomic_add_fetch(&park->refs, 1, __ATOMIC_RELAXED);
        if (rt_store_watch(req->ctx->store, refs[i], w) != RT_OK) {
            w->fn = NULL; /* not registered: resolved already, or gone */
            park_decref(park);
            resolved++;
        }
    }
    if (resolved && __atomic_sub_fetch(&park->remaining, resolved, __ATOMIC_ACQ_REL) <= 0)
        park_wake(park);
    return MHD_YES;
}

void api_park_finish(api_request *req)
{
    api_park *park = req->park;
    if (!park)
        return;
    req->park = NULL;
    api_parking *pk = park->parking;
    for (size_t i = 0; i < park->nwatchers; i++) {
        rt_watcher *w = &park->watchers[i];
        if (w->fn && rt_store_unwatch(req->ctx->store, w))
            park_decref(park); /* removed before firing: its reference is ours to drop */
    }
    pthread_mutex_lock(&pk->lock);
    if (park->heap_index != SIZE_MAX) {
        heap_remove(pk, park);
        park_decref(park);
    }
    pthread_mutex_unlock(&pk->lock);
    park_decref(park);
}
