/* Stand-ins for foreign objects, resolved by long-polls to their owners. See
 * cluster_fetch.h.
 *
 * DESIGN
 * - One entry per stand-in being fetched, in a list under one mutex. The store is what
 *   dedupes: rt_store_put_standin fails with RT_EEXIST when the ref is already here (a
 *   copy, or a stand-in with its entry), so rt_fetch_want never looks at the list.
 * - Polls are started only by the fetcher's own thread (woken by a condition variable),
 *   never from the peer's I/O thread: an entry waiting to (re)start is marked START and
 *   the thread is signalled. The same thread retries failed polls every RETRY_SECONDS and
 *   cancels polls to owners the membership now reports dead.
 * - An entry is reference-counted: one reference while it is in the list, one while its
 *   poll is in flight (dropped by the poll's DONE), one while the thread works on it
 *   outside the lock. Its call reference is replaced only by the thread, and released
 *   when the entry is freed.
 * - An entry leaves the list before its stand-in is resolved, failed or dropped, so a
 *   stand-in never outlives its entry while pending (but briefly has none: rt_fetch_want
 *   then sees RT_EEXIST, and the resolution comes at once). */
#include "runtime/cluster_fetch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/clock.h"
#include "runtime/lock.h"

#define RETRY_SECONDS 0.5

enum { ENTRY_START = 0, ENTRY_POLLING, ENTRY_RETRY };

typedef struct entry {
    struct entry *prev, *next; /* the fetcher's list (lock) */
    int refs;                  /* atomic */
    int state;                 /* ENTRY_*, lock */
    bool listed;               /* lock */
    double retry_at;           /* monotonic, ENTRY_RETRY */
    rt_fetch *fetch;
    rt_peer_call *call;        /* the last poll (the thread's reference), or NULL */
    char ref[RT_REF_SIZE];
    char tag[RT_NODE_TAG_SIZE];
} entry;

struct rt_fetch {
    rt_store *store;
    rt_cluster *cluster;
    rt_peer *peer;
    char *auth;       /* "Authorization: Bearer <token>", or NULL */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool stopping;    /* lock */
    bool kicked;      /* lock: an entry waits to start */
    entry *head;      /* lock */
    size_t count;     /* lock */
    long polls;       /* atomic: polls whose DONE has not finished */
};

static void entry_decref(entry *e)
{
    if (__atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    rt_peer_call_release(e->call);
    free(e);
}

static void list_add_locked(rt_fetch *f, entry *e)
{
    e->prev = NULL;
    e->next = f->head;
    if (f->head)
        f->head->prev = e;
    f->head = e;
    e->listed = true;
    f->count++;
}

/* Takes e out of the list; returns whether it was in it (the caller then owns the list's
 * reference). lock held. */
static bool list_remove_locked(rt_fetch *f, entry *e)
{
    if (!e->listed)
        return false;
    if (e->prev)
        e->prev->next = e->next;
    else
        f->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    e->listed = false;
    f->count--;
    return true;
}

/* ---- errors ---------------------------------------------------------------------------- */

rt_error *rt_fetch_owner_died_error(const char *ref, const char *tag)
{
    json_t *fields = json_pack("{s:s,s:s,s:s,s:b}", "ref", ref, "lost_reason", "owner_died",
                               "owner", tag, "owner_died", 1);
    rt_error *err = rt_error_newf(RT_ERR_OBJECT_LOST, fields, NULL,
                                  "object %s is lost: node %s, which owned it, died (its "
                                  "heartbeat stopped)",
                                  ref, tag);
    json_decref(fields);
    return err;
}

static int kind_of_title(const char *title)
{
    for (int k = RT_ERR_TASK_ERROR; k <= RT_ERR_OBJECT_LOST; k++)
        if (strcmp(title, rt_error_kind_name((rt_error_kind)k)) == 0)
            return k;
    return -1;
}

rt_error *rt_fetch_error_from_problem(json_t *problem)
{
    /* The chain outermost first, then built innermost first (each error takes its cause);
     * iterative, as problem bodies nest at most a bounded number of levels anyway. */
    size_t depth = 0;
    for (json_t *p = problem; json_is_object(p); p = json_object_get(p, "cause"))
        depth++;
    if (depth == 0)
        return NULL;
    json_t **levels = malloc(depth * sizeof(*levels));
    if (!levels)
        return NULL;
    size_t n = 0;
    for (json_t *p = problem; json_is_object(p); p = json_object_get(p, "cause"))
        levels[n++] = p;
    rt_error *cause = NULL;
    for (size_t i = n; i-- > 0;) {
        json_t *p = levels[i];
        const char *title = json_string_value(json_object_get(p, "title"));
        int kind = title ? kind_of_title(title) : -1;
        if (kind < 0)
            kind = RT_ERR_TASK_ERROR; /* not a stored error's kind: report it as a failure */
        json_t *fields = json_object();
        const char *key;
        json_t *value;
        json_object_foreach(p, key, value)
        {
            if (strcmp(key, "type") && strcmp(key, "title") && strcmp(key, "status") &&
                strcmp(key, "detail") && strcmp(key, "cause") && strcmp(key, "instance"))
                json_object_set(fields, key, value);
        }
        const char *detail = json_string_value(json_object_get(p, "detail"));
        rt_error *err = rt_error_new((rt_error_kind)kind, detail ? detail : title, fields, cause);
        json_decref(fields);
        rt_error_decref(cause);
        cause = err;
        if (!err)
            break;
    }
    free(levels);
    return cause;
}

/* An ObjectLost error with a message and the ref. New reference (NULL: out of memory). */
static rt_error *lost_error(const char *ref, const char *message)
{
    json_t *fields = json_pack("{s:s}", "ref", ref);
    rt_error *err = rt_error_new(RT_ERR_OBJECT_LOST, message, fields, NULL);
    json_decref(fields);
    return err;
}

/* ---- ending an entry -------------------------------------------------------------------- */

/* Takes e out of the list and resolves its stand-in with buf (stolen) or fails it with err
 * (stolen). Either may be NULL: then the stand-in just fails with a generic loss. */
static void finish(rt_fetch *f, entry *e, rt_buf *buf, rt_error *err)
{
    pthread_mutex_lock(&f->lock);
    bool listed = list_remove_locked(f, e);
    pthread_mutex_unlock(&f->lock);
    if (!listed) { /* finished already (cannot happen: one DONE per poll) */
        rt_buf_decref(buf);
        rt_error_decref(err);
        return;
    }
    if (buf) {
        rt_status st = rt_store_resolve(f->store, e->ref, buf);
        if (st != RT_OK) {
            rt_buf_decref(buf);
            if (st == RT_EFULL)
                err = lost_error(e->ref, "the object does not fit in this node's object "
                                         "store (RAYD_MEMORY_LIMIT), so it cannot be used here");
        }
    }
    if (err || !buf) {
        if (!err)
            err = lost_error(e->ref, "the object could not be fetched from its owner");
        if (err)
            rt_store_fail(f->store, e->ref, err);
        rt_error_decref(err);
    }
    entry_decref(e); /* the list's */
}

/* Marks e to poll again: at once (START) or after RETRY_SECONDS (RETRY). */
static void again(rt_fetch *f, entry *e, bool now)
{
    pthread_mutex_lock(&f->lock);
    if (now) {
        e->state = ENTRY_START;
        f->kicked = true;
        pthread_cond_signal(&f->wake);
    } else {
        e->state = ENTRY_RETRY;
        e->retry_at = rt_clock_monotonic() + RETRY_SECONDS;
    }
    pthread_mutex_unlock(&f->lock);
}

/* A poll ended (I/O thread). */
static void poll_notify(rt_peer_call *call, rt_peer_event event, void *arg)
{
    if (event != RT_PEER_DONE)
        return;
    entry *e = arg;
    rt_fetch *f = e->fetch;
    const rt_peer_answer *a = rt_peer_answer_of(call);
    if (a->outcome == RT_PEER_TOO_LARGE) {
        finish(f, e, NULL,
               lost_error(e->ref, "the object is larger than this node takes from another "
                                  "(RAYD_MAX_BODY), so it cannot be used here"));
    } else if (a->outcome != RT_PEER_ANSWERED) {
        rt_owner owner = rt_cluster_owner_of_tag(f->cluster, e->tag, NULL, 0);
        if (owner == RT_OWNER_DEAD)
            finish(f, e, NULL, rt_fetch_owner_died_error(e->ref, e->tag));
        else
            again(f, e, false); /* the thread looks again (and at the membership) */
    } else if (a->status == 200) {
        rt_buf *body = a->body ? rt_buf_incref(a->body) : rt_buf_new(0, NULL);
        finish(f, e, body, NULL);
    } else if (a->status == 202) {
        /* Still pending at the owner: ask again while anyone here waits on it. */
        if (rt_store_drop_standin(f->store, e->ref) == RT_ESTATE) {
            again(f, e, true);
        } else {
            pthread_mutex_lock(&f->lock);
            bool listed = list_remove_locked(f, e);
            pthread_mutex_unlock(&f->lock);
            if (listed)
                entry_decref(e);
        }
    } else if (a->status == 404 || a->status == 410 || a->status == 424) {
        rt_error *err = NULL;
        json_t *problem = a->body ? json_loadb((const char *)a->body->data,
                                               rt_peer_filled(call), 0, NULL)
                                  : NULL;
        if (problem)
            err = rt_fetch_error_from_problem(problem);
        json_decref(problem);
        if (a->status == 404 && err) {
            rt_error_decref(err);
            err = lost_error(e->ref, "the object does not exist at its owner (it was freed "
                                     "and forgotten, or never made)");
        }
        finish(f, e, NULL, err);
    } else {
        again(f, e, false); /* 503 (owner busy or stopping), 401/403 (token): try again */
    }
    entry_decref(e); /* the poll's */
    __atomic_sub_fetch(&f->polls, 1, __ATOMIC_RELEASE); /* last: f may go after this */
}

/* ---- the thread ------------------------------------------------------------------------- */

static void start_poll(rt_fetch *f, entry *e)
{
    char url[RT_CLUSTER_URL_MAX];
    rt_owner owner = rt_cluster_owner_of_tag(f->cluster, e->tag, url, sizeof(url));
    if (owner == RT_OWNER_DEAD) {
        finish(f, e, NULL, rt_fetch_owner_died_error(e->ref, e->tag));
        return;
    }
    if (owner != RT_OWNER_ALIVE) {
        finish(f, e, NULL, lost_error(e->ref, "no node of this cluster has the object's tag"));
        return;
    }
    size_t base = strlen(url);
    while (base > 0 && url[base - 1] == '/')
        base--;
    char full[RT_CLUSTER_URL_MAX + RT_REF_SIZE + 64], forwarded[64];
    snprintf(full, sizeof(full), "%.*s/v1/objects/%s?timeout=%.0f", (int)base, url, e->ref,
             RT_FETCH_POLL_SECONDS);
    const char *tag = rt_ref_node_tag();
    snprintf(forwarded, sizeof(forwarded), "X-Rayd-Forwarded: %s", tag ? tag : "");
    const char *headers[3] = {forwarded, NULL, NULL};
    if (f->auth)
        headers[1] = f->auth;
    rt_peer_request rq = {
        .method = "GET",
        .url = full,
        .headers = headers,
        .timeout = RT_FETCH_POLL_SECONDS + 20,
        .stall = RT_FETCH_POLL_SECONDS + 20,
    };
    __atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED); /* the poll's */
    __atomic_add_fetch(&f->polls, 1, __ATOMIC_RELAXED);
    rt_peer_call *c = rt_peer_start(f->peer, &rq, poll_notify, e);
    if (!c) {
        __atomic_sub_fetch(&f->polls, 1, __ATOMIC_RELAXED);
        __atomic_sub_fetch(&e->refs, 1, __ATOMIC_RELAXED);
        again(f, e, false);
    }
    rt_peer_call *old = e->call; /* only this thread touches e->call */
    e->call = c;
    rt_peer_call_release(old);
}

static void *fetch_thread(void *arg)
{
    rt_fetch *f = arg;
    pthread_mutex_lock(&f->lock);
    while (!f->stopping) {
        double now = rt_clock_monotonic();
        size_t n = 0, cap = f->count;
        entry **work = cap ? malloc(cap * sizeof(*work)) : NULL;
        bool *cancel = cap ? calloc(cap, sizeof(*cancel)) : NULL;
        f->kicked = false;
        for (entry *e = f->head; e && work && cancel && n < cap; e = e->next) {
            bool take = e->state == ENTRY_START ||
                        (e->state == ENTRY_RETRY && now >= e->retry_at);
            bool dead = false;
            if (!take && e->state == ENTRY_POLLING)
                dead = rt_cluster_owner_of_tag(f->cluster, e->tag, NULL, 0) == RT_OWNER_DEAD;
            if (!take && !dead)
                continue;
            if (take)
                e->state = ENTRY_POLLING;
            __atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED); /* ours */
            cancel[n] = dead;
            work[n++] = e;
        }
        pthread_mutex_unlock(&f->lock);
        for (size_t i = 0; i < n; i++) {
            if (cancel[i]) {
                if (work[i]->call)
                    rt_peer_cancel(work[i]->call); /* its DONE fails it: owner died */
            } else {
                start_poll(f, work[i]);
            }
            entry_decref(work[i]);
        }
        free(work);
        free(cancel);
        pthread_mutex_lock(&f->lock);
        if (f->stopping || f->kicked)
            continue;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)(RETRY_SECONDS * 1e9);
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&f->wake, &f->lock, &until);
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

/* ---- the interface ---------------------------------------------------------------------- */

rt_fetch *rt_fetch_new(rt_store *store, rt_cluster *cluster, rt_peer *peer, const char *token)
{
    rt_fetch *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->store = store;
    f->cluster = cluster;
    f->peer = peer;
    if (token && *token && asprintf(&f->auth, "Authorization: Bearer %s", token) < 0) {
        free(f);
        return NULL;
    }
    rt_mutex_init(&f->lock);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&f->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&f->thread, NULL, fetch_thread, f) != 0) {
        pthread_mutex_destroy(&f->lock);
        pthread_cond_destroy(&f->wake);
        free(f->auth);
        free(f);
        return NULL;
    }
    return f;
}

void rt_fetch_free(rt_fetch *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->lock);
    f->stopping = true;
    pthread_cond_signal(&f->wake);
    pthread_mutex_unlock(&f->lock);
    pthread_join(f->thread, NULL);
    /* Cancel what is in flight and wait for each DONE (they drop the polls' references);
     * the peer client's own close would end them too. */
    for (;;) {
        pthread_mutex_lock(&f->lock);
        entry *e = f->head;
        if (e) {
            list_remove_locked(f, e);
            pthread_mutex_unlock(&f->lock);
            if (e->call && !rt_peer_done(e->call))
                rt_peer_cancel(e->call);
            entry_decref(e); /* the list's; the poll's goes with its DONE */
            continue;
        }
        pthread_mutex_unlock(&f->lock);
        break;
    }
    /* A DONE still to come uses f: wait until every poll has had its DONE. */
    while (__atomic_load_n(&f->polls, __ATOMIC_ACQUIRE) > 0) {
        struct timespec ms = {0, 10 * 1000 * 1000};
        nanosleep(&ms, NULL);
    }
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->wake);
    free(f->auth);
    free(f);
}

rt_owner rt_fetch_want(rt_fetch *f, const char *ref, char tag[RT_NODE_TAG_SIZE])
{
    rt_owner owner = rt_cluster_owner(f->cluster, ref, tag, NULL, 0);
    if (owner == RT_OWNER_SELF || owner == RT_OWNER_UNKNOWN)
        return owner;
    if (owner == RT_OWNER_DEAD) {
        rt_store_drop_copy(f->store, ref); /* a dead owner's objects are lost, copies too */
        if (rt_store_put_standin(f->store, ref) == RT_OK) {
            rt_error *err = rt_fetch_owner_died_error(ref, tag);
            if (!err || rt_store_fail(f->store, ref, err) != RT_OK)
                rt_store_drop_standin(f->store, ref);
            rt_error_decref(err);
        }
        return owner;
    }
    rt_object_view view;
    rt_status st = rt_store_peek(f->store, ref, &view);
    rt_object_view_release(&view);
    if (st == RT_OK)
        return owner; /* a copy, or a stand-in already being fetched */
    entry *e = calloc(1, sizeof(*e));
    if (!e)
        return owner; /* the caller finds no object: as if the owner had not answered */
    e->refs = 1; /* the list's */
    e->fetch = f;
    snprintf(e->ref, sizeof(e->ref), "%s", ref);
    snprintf(e->tag, sizeof(e->tag), "%s", tag);
    if (rt_store_put_standin(f->store, ref) != RT_OK) {
        free(e); /* here already (another request made it just now), or out of memory */
        return owner;
    }
    pthread_mutex_lock(&f->lock);
    e->state = ENTRY_START;
    list_add_locked(f, e);
    f->kicked = true;
    pthread_cond_signal(&f->wake);
    pthread_mutex_unlock(&f->lock);
    return owner;
}

/* ---- aliases (spillback) -------------------------------------------------------------- */

typedef struct alias {
    rt_watcher watcher; /* on the remote ref's stand-in (or another local object) */
    rt_store *store;
    rt_fetch_rerun_fn rerun; /* optional: asked first when the remote ref's owner died */
    void *rerun_arg;
    void (*rerun_arg_free)(void *);
    char local[RT_REF_SIZE];
    char remote[RT_REF_SIZE];
} alias;

/* Whether err says the node that owned the object died (rt_fetch_owner_died_error). */
static bool owner_died(rt_error *err)
{
    const char *reason = json_string_value(json_object_get(rt_error_fields(err), "lost_reason"));
    return rt_error_kind_of(err) == RT_ERR_OBJECT_LOST && reason &&
           strcmp(reason, "owner_died") == 0;
}

static void alias_free(alias *a)
{
    if (a->rerun_arg_free)
        a->rerun_arg_free(a->rerun_arg);
    free(a);
}

/* The remote ref resolved: so does the local one. Any thread, no lock held. */
static void alias_fire(rt_watcher *w, void *arg)
{
    (void)w;
    alias *a = arg;
    rt_object_view view;
    rt_status st = rt_store_peek(a->store, a->remote, &view);
    if (st == RT_OK && view.state == RT_OBJ_READY) {
        rt_buf *buf = rt_buf_incref(view.buf);
        if (rt_store_resolve(a->store, a->local, buf) != RT_OK)
            rt_buf_decref(buf);
    } else {
        rt_error *err = st == RT_OK && view.state == RT_OBJ_ERROR
                            ? rt_error_incref(view.error)
                            : lost_error(a->remote, "the result of the task another node ran "
                                                    "was lost before it arrived");
        bool taken = err && a->rerun && owner_died(err) && a->rerun(a->rerun_arg, a->local);
        if (err && !taken)
            rt_store_fail(a->store, a->local, err);
        rt_error_decref(err);
    }
    rt_object_view_release(&view);
    alias_free(a);
}

static rt_status alias_start(rt_store *store, const char *local_ref, const char *other_ref,
                             rt_fetch_rerun_fn rerun, void *arg, void (*arg_free)(void *))
{
    alias *a = calloc(1, sizeof(*a));
    if (!a) {
        if (arg_free)
            arg_free(arg);
        return RT_ENOMEM;
    }
    a->store = store;
    a->rerun = rerun;
    a->rerun_arg = arg;
    a->rerun_arg_free = arg_free;
    snprintf(a->local, sizeof(a->local), "%s", local_ref);
    snprintf(a->remote, sizeof(a->remote), "%s", other_ref);
    a->watcher.fn = alias_fire;
    a->watcher.arg = a;
    if (rt_store_watch(store, other_ref, &a->watcher) != RT_OK)
        alias_fire(&a->watcher, a); /* resolved already (or no stand-in: lost) */
    return RT_OK;
}

rt_status rt_fetch_alias_rerun(rt_fetch *f, const char *local_ref, const char *remote_ref,
                               rt_fetch_rerun_fn rerun, void *arg, void (*arg_free)(void *))
{
    char tag[RT_NODE_TAG_SIZE];
    rt_owner owner = rt_fetch_want(f, remote_ref, tag);
    if (owner != RT_OWNER_ALIVE && owner != RT_OWNER_DEAD) {
        if (arg_free)
            arg_free(arg);
        return RT_EINVAL;
    }
    return alias_start(f->store, local_ref, remote_ref, rerun, arg, arg_free);
}

rt_status rt_fetch_alias(rt_fetch *f, const char *local_ref, const char *remote_ref)
{
    return rt_fetch_alias_rerun(f, local_ref, remote_ref, NULL, NULL, NULL);
}

rt_status rt_fetch_alias_local(rt_fetch *f, const char *local_ref, const char *other_ref)
{
    return alias_start(f->store, local_ref, other_ref, NULL, NULL, NULL);
}

size_t rt_fetch_active(rt_fetch *f)
{
    pthread_mutex_lock(&f->lock);
    size_t n = f->count;
    pthread_mutex_unlock(&f->lock);
    return n;
}
