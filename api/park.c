/* Parked requests: suspension, store watchers, and the deadline thread. See park.h. */
#include "api/park.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "api/budget.h"
#include "api/problem.h"
#include "api/router.h"
#include "runtime/clock.h"

/* Parks whose socket left the epoll set wait in the retired list until the deadline thread
 * has handled the events of its current epoll_wait (which may still name them); it wakes
 * early once this many wait. */
#define RETIRED_WAKE 64
#define EVENTS_PER_WAIT 64
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
    int fd;              /* the client's socket, watched while polled */
    bool polled;         /* parking->lock: fd is in the epoll set (holds a reference) */
    bool gone;           /* parking->lock: the client closed or reset its connection */
    api_park *retired_next; /* parking->lock */
    size_t nwatchers;
    rt_watcher watchers[];
};

struct api_parking {
    pthread_mutex_t lock;
    pthread_cond_t settled; /* signalled when `live` or the heap empties after closing */
    pthread_t thread;
    int epfd;   /* the deadline thread's: wakefd and the sockets of parked clients */
    int wakefd; /* eventfd: a deadline before sleep_until, stopping, retired list long */
    int stopping;
    int closed;      /* the server is stopping: nothing suspends any more */
    size_t live;     /* requests that parked and have not completed (suspended, or
                        resumed and still answering) */
    api_park **heap; /* min-heap by deadline */
    double sleep_until; /* lock: when the deadline thread wakes by itself next (INFINITY:
                           never); a park due before then must wake it */
    size_t count, cap;
    api_park *retired; /* left the epoll set; each still holds its poll reference */
    size_t nretired;
    unsigned long long clients_gone; /* atomic */
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

/* Wakes the deadline thread. Any thread; no lock needed. */
static void thread_poke(api_parking *pk)
{
    uint64_t one = 1;
    ssize_t n = write(pk->wakefd, &one, sizeof(one));
    (void)n; /* EAGAIN: a wake-up is pending already */
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

/* A parked client's socket reported a hang-up or an error: it closed or reset the
 * connection. Takes the socket out of the set and wakes the request, which answers at
 * once (api_park_finish) and lets libmicrohttpd close the connection. parking->lock held. */
static void client_gone_locked(api_parking *pk, api_park *park)
{
    if (!park->polled)
        return; /* finished after the wait returned: it is in the retired list */
    epoll_ctl(pk->epfd, EPOLL_CTL_DEL, park->fd, NULL);
    park->polled = false;
    park->gone = true;
    __atomic_add_fetch(&pk->clients_gone, 1, __ATOMIC_RELAXED);
    park_wake(park);
    park_decref(park); /* the poll reference; the request still holds one */
}

static void *deadline_thread(void *arg)
{
    api_parking *pk = arg;
    struct epoll_event events[EVENTS_PER_WAIT];
    int nevents = 0;
    pthread_mutex_lock(&pk->lock);
    while (!pk->stopping) {
        for (int i = 0; i < nevents; i++) {
            if (events[i].data.ptr) {
                client_gone_locked(pk, events[i].data.ptr);
            } else {
                uint64_t n;
                ssize_t r = read(pk->wakefd, &n, sizeof(n));
                (void)r;
            }
        }
        double now = rt_clock_monotonic();
        while (pk->count > 0 && pk->heap[0]->deadline <= now) {
            api_park *park = pk->heap[0];
            heap_remove(pk, park);
            park_wake(park);
            park_decref(park); /* the heap's reference; the request still holds one */
        }
        if (pk->closed && pk->count == 0)
            pthread_cond_broadcast(&pk->settled); /* every resume has been issued */
        /* The events just handled were the last that could name a retired park. */
        while (pk->retired) {
            api_park *park = pk->retired;
            pk->retired = park->retired_next;
            park_decref(park);
        }
        pk->nretired = 0;
        int timeout = -1;
        pk->sleep_until = INFINITY;
        if (pk->count > 0) {
            double ms = ceil((pk->heap[0]->deadline - now) * 1000);
            timeout = ms > INT_MAX ? INT_MAX : (int)ms;
            pk->sleep_until = pk->heap[0]->deadline;
        }
        pthread_mutex_unlock(&pk->lock);
        nevents = epoll_wait(pk->epfd, events, EVENTS_PER_WAIT, timeout);
        if (nevents < 0)
            nevents = 0; /* EINTR */
        pthread_mutex_lock(&pk->lock);
    }
    pthread_mutex_unlock(&pk->lock);
    return NULL;
}

api_parking *api_parking_new(void)
{
    api_parking *pk = calloc(1, sizeof(*pk));
    if (!pk)
        return NULL;
    pk->sleep_until = INFINITY;
    pk->epfd = epoll_create1(EPOLL_CLOEXEC);
    pk->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (pk->epfd < 0 || pk->wakefd < 0 ||
        epoll_ctl(pk->epfd, EPOLL_CTL_ADD, pk->wakefd, &ev) != 0)
        goto fail;
    pthread_mutex_init(&pk->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&pk->settled, &attr);
    pthread_condattr_destroy(&attr);
    sigset_t all, old;
    sigfillset(&all); /* the main thread takes the signals */
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int started = pthread_create(&pk->thread, NULL, deadline_thread, pk);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started != 0) {
        pthread_cond_destroy(&pk->settled);
        pthread_mutex_destroy(&pk->lock);
        goto fail;
    }
    return pk;
fail:
    if (pk->epfd >= 0)
        close(pk->epfd);
    if (pk->wakefd >= 0)
        close(pk->wakefd);
    free(pk);
    return NULL;
}

void api_parking_free(api_parking *pk)
{
    if (!pk)
        return;
    pthread_mutex_lock(&pk->lock);
    pk->stopping = 1;
    pthread_mutex_unlock(&pk->lock);
    thread_poke(pk);
    pthread_join(pk->thread, NULL);
    /* Anything still in the heap belongs to requests MHD has already dropped. */
    for (size_t i = 0; i < pk->count; i++)
        park_decref(pk->heap[i]);
    while (pk->retired) {
        api_park *park = pk->retired;
        pk->retired = park->retired_next;
        park_decref(park);
    }
    free(pk->heap);
    pthread_cond_destroy(&pk->settled);
    close(pk->epfd);
    close(pk->wakefd);
    pthread_mutex_destroy(&pk->lock);
    free(pk);
}

void api_parking_wake_all(api_parking *pk)
{
    pthread_mutex_lock(&pk->lock);
    double now = rt_clock_monotonic();
    for (size_t i = 0; i < pk->count; i++)
        pk->heap[i]->deadline = now; /* all equal: still a valid heap */
    pthread_mutex_unlock(&pk->lock);
    thread_poke(pk);
}

/* Absolute CLOCK_MONOTONIC time `seconds` from now, for the condition variables. */
static struct timespec monotonic_in(double seconds)
{
    double when = rt_clock_monotonic() + seconds;
    struct timespec ts;
    ts.tv_sec = (time_t)when;
    ts.tv_nsec = (long)((when - (double)ts.tv_sec) * 1e9);
    return ts;
}

bool api_parking_close(api_parking *pk, double timeout)
{
    struct timespec until = monotonic_in(timeout);
    pthread_mutex_lock(&pk->lock);
    pk->closed = 1;
    double now = rt_clock_monotonic();
    for (size_t i = 0; i < pk->count; i++)
        pk->heap[i]->deadline = now; /* all equal: still a valid heap */
    thread_poke(pk);
    /* Each parked request is resumed by the deadline thread, answered by its handler, and
     * counted down when MHD has sent the answer (api_park_complete). */
    int timed_out = 0;
    while (pk->live > 0 && !timed_out)
        timed_out = pthread_cond_timedwait(&pk->settled, &pk->lock, &until) == ETIMEDOUT;
    /* Whatever is still answering (a client that does not read) has at least been
     * resumed, which is all MHD_stop_daemon needs: the deadline thread empties the heap
     * at once now that every deadline has come. */
    while (pk->count > 0)
        pthread_cond_wait(&pk->settled, &pk->lock);
    bool all = pk->live == 0;
    pthread_mutex_unlock(&pk->lock);
    return all;
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

unsigned long long api_parking_clients_gone(api_parking *pk)
{
    return __atomic_load_n(&pk->clients_gone, __ATOMIC_RELAXED);
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
    pthread_mutex_lock(&pk->lock);
    bool closed = pk->closed;
    if (!closed && !req->parked) {
        req->parked = true; /* counted until it completes, across rounds */
        pk->live++;
    }
    pthread_mutex_unlock(&pk->lock);
    if (closed) {
        /* The server is stopping and MHD must find no connection suspended: no park, the
         * handler is called again at once, past its deadline, and answers with what there
         * is, as a woken request would. */
        req->deadline = 0;
        req->rounds++;
        return req->route->handler(req);
    }
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
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    park->fd = info ? info->connect_fd : -1;
    req->park = park;

    /* Suspend before anything can resume us. */
    MHD_suspend_connection(req->conn);

    pthread_mutex_lock(&pk->lock);
    if (pk->closed)
        park->deadline = 0; /* closed since we looked: wake at once */
    __atomic_add_fetch(&park->refs, 1, __ATOMIC_RELAXED);
    if (heap_push(pk, park) != 0) {
        __atomic_sub_fetch(&park->refs, 1, __ATOMIC_RELAXED); /* the heap never held it */
        park->deadline = 0; /* could not track: wake at once and answer */
        pthread_mutex_unlock(&pk->lock);
        park_wake(park);
        return MHD_YES;
    }
    /* Wake the deadline thread only when this park is due before it wakes by itself: a
     * poke per parked request cost a thread wake-up each (a Prefer: wait on a remote call,
     * for one), and an earlier deadline that has since left the heap only makes it wake
     * once for nothing. */
    bool poke = park->heap_index == 0 && park->deadline < pk->sleep_until;
    if (poke)
        pk->sleep_until = park->deadline;
    /* libmicrohttpd does not watch a suspended connection: watch for the client leaving
     * (a hang-up or an error on its socket; level-triggered, so one that left before this
     * is seen at once). Without it, the deadline still ends the wait. */
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.ptr = park};
    if (park->fd >= 0 && epoll_ctl(pk->epfd, EPOLL_CTL_ADD, park->fd, &ev) == 0) {
        __atomic_add_fetch(&park->refs, 1, __ATOMIC_RELAXED); /* the poll reference */
        park->polled = true;
    }
    pthread_mutex_unlock(&pk->lock);
    if (poke)
        thread_poke(pk);

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
    bool poke = false;
    pthread_mutex_lock(&pk->lock);
    if (park->heap_index != SIZE_MAX) {
        heap_remove(pk, park);
        park_decref(park);
        if (pk->closed && pk->count == 0)
            pthread_cond_broadcast(&pk->settled); /* api_parking_close may wait on it */
    }
    if (park->polled) {
        /* Out of the set before libmicrohttpd may close the socket; the poll reference
         * goes once the deadline thread can no longer hold this park from its last wait. */
        epoll_ctl(pk->epfd, EPOLL_CTL_DEL, park->fd, NULL);
        park->polled = false;
        park->retired_next = pk->retired;
        pk->retired = park;
        poke = ++pk->nretired == RETIRED_WAKE;
    }
    if (park->gone)
        req->deadline = 0; /* nobody is waiting: answer with what there is, now */
    pthread_mutex_unlock(&pk->lock);
    if (poke)
        thread_poke(pk);
    park_decref(park);
}

void api_park_complete(api_request *req)
{
    api_park_finish(req);
    if (!req->parked)
        return;
    req->parked = false;
    api_parking *pk = req->ctx->parking;
    pthread_mutex_lock(&pk->lock);
    if (--pk->live == 0 && pk->closed)
        pthread_cond_broadcast(&pk->settled);
    pthread_mutex_unlock(&pk->lock);
}
