/* The actor system: classes, the actor table and names, mailboxes on the worker pool,
 * restarts and kills.
 *
 * DESIGN
 * - Records: actors live in the record table (runtime/record_table.c: by id, in creation
 *   order and by state, so that a page of a listing costs what it holds and the oldest dead
 *   actor is found at once), and the named ones in a hash table by name under table_lock
 *   (held for O(1) work only).
 * - Per actor, `lock` guards the mailbox, the lifecycle state, counters and `scheduled`.
 *   Lock order: table_lock -> actor lock -> the record table's lock (a leaf: state changes
 *   are told to it under the actor lock, so that they reach it in order). No store call is
 *   made with any of them held, because store calls wake watchers that may take actor
 *   locks.
 * - Mailbox: calls in acceptance order. The constructor is the first entry. The actor is
 *   `scheduled` (its job queued or running) only while its head call is ready, and only one
 *   job per actor exists at a time, so exactly one thread touches the actor's state and
 *   calls run one at a time, in order. A job runs one call and re-queues the actor if the
 *   next is ready, so a busy actor cannot starve others.
 * - A call's ref arguments are tracked like a task's: a watcher per dependency and a
 *   counter with a guard; when it reaches 0 the call becomes ready, and if it is at the head
 *   of the mailbox the actor is scheduled. They are pinned and watched before the call is
 *   published in the mailbox, so a kill that detaches it finds them all.
 * - Asynchronous (remote) classes: the actor stays `running` from start to completion, so
 *   order holds while no worker waits. A quick class's call whose submitter waits for it
 *   (Prefer: wait) runs on the submitting thread when the actor is idle: the job is handed
 *   back instead of queued, and is the only job of that actor as always.
 * - Lifetime: actors and calls are reference-counted: the table holds the actor, and so
 *   does a queued or running job; the mailbox and each registered watcher hold a call, and
 *   a call holds its actor. */
#include "runtime/actor.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/args.h"
#include "runtime/clock.h"
#include "runtime/events.h"
#include "runtime/hash.h"
#include "runtime/lock.h"
#include "runtime/record_table.h"
#include "runtime/stats.h"
#include "runtime/trace.h"

#define TABLE_BUCKETS_INITIAL 1024
#define CLASSES_MAX 1024

typedef struct rt_actor rt_actor;
typedef struct actor_call actor_call;

typedef struct call_dependency {
    rt_watcher watcher;
    actor_call *call;
    char ref[RT_REF_SIZE];
} call_dependency;

struct actor_call {
    actor_call *next; /* mailbox (actor lock) */
    int refs;         /* atomic */
    rt_actor *actor;  /* owned reference */
    const rt_actor_method *method; /* NULL: the constructor */
    char method_name[RT_ACTOR_NAME_MAX + 1]; /* "__init__" for the constructor */
    char request_id[RT_REQUEST_ID_MAX + 1]; /* the submitting request's X-Request-Id, or "" */
    char traceparent[RT_TRACEPARENT_SIZE];  /* its W3C traceparent, or "" */
    double submitted_at, began;             /* monotonic; began 0 until it runs */
    json_t *args, *kwargs;         /* owned */
    char ref[RT_REF_SIZE];         /* result; "" for the constructor */
    size_t ndeps;
    call_dependency *deps;
    long deps_remaining; /* atomic */
    bool ready;          /* actor lock */
};

struct rt_actor {
    rt_record rec;                     /* id, creation order (rec.seq), references (rec.refs) */
    rt_actor *name_next;               /* name table chain (table_lock) */
    rt_actors *owner;
    pthread_mutex_t lock;
    rt_job job;
    char id[RT_REF_SIZE];
    /* the two flags in the padding after id: at 320 bytes the struct is in jemalloc's
     * 320-byte class, at 336 it took 384 */
    bool named;                        /* in the name table (table_lock) */
    bool fenced;                       /* cluster mode: calls run only under the lease */
    uint32_t name_hash;
    char *name;                        /* owned; NULL when unnamed (most actors are: an
                                          inline name would cost every actor 129 bytes) */
    const rt_actor_class *cls;         /* held (rt_actor_class_hold) until the record goes */
    json_t *ctor_args, *ctor_kwargs;   /* kept for restarts; NULL when empty (an empty
                                          jansson array and object would cost every idle
                                          actor 320 bytes) */
    json_t *resume_state;              /* an asynchronous class's state to start from
                                          instead of its constructor (taken by the first
                                          run) */
    int max_restarts;
    long max_pending_calls;
    double created_at;
    /* actor lock: */
    rt_actor_state state;
    actor_call *head, *tail;
    size_t calls_pending;
    unsigned long long calls_done;
    unsigned restarts;
    bool scheduled;
    bool running;
    rt_error *death_cause;
    /* touched only by the one job that runs the actor */
    void *user_state;
};

/* An actor id promised before the actor is made (rt_actor_reserve): what rt_actor_get
 * answers for it meanwhile. */
typedef struct reservation {
    struct reservation *next;
    rt_actor_info info; /* PENDING_CREATION; no death_cause */
} reservation;

struct rt_actors {
    rt_store *store;
    rt_scheduler *scheduler;
    rt_actors_config config;
    rt_record_table *records;
    pthread_mutex_t table_lock;        /* guards by_name, its size, named and dead_kept */
    rt_actor **by_name;
    size_t nbuckets, nnamed;
    size_t dead_kept;
    struct reservation *reserved;      /* ids promised to actors not made yet (table_lock) */
    pthread_rwlock_t classes_lock;
    const rt_actor_class *classes[CLASSES_MAX]; /* sorted by name; owned ones held */
    size_t nclasses;
    size_t by_state[RT_ACTOR_STATE_COUNT]; /* atomics */
    unsigned long long calls, calls_done, restarts;
};

static const char *const STATE_NAMES[RT_ACTOR_STATE_COUNT] = {"PENDING_CREATION", "ALIVE",
                                                              "RESTARTING", "DEAD"};

const char *rt_actor_state_name(rt_actor_state state)
{
    return (unsigned)state < RT_ACTOR_STATE_COUNT ? STATE_NAMES[state] : "DEAD";
}

int rt_actor_state_parse(const char *name)
{
    for (int i = 0; name && i < RT_ACTOR_STATE_COUNT; i++)
        if (strcmp(name, STATE_NAMES[i]) == 0)
            return i;
    return -1;
}

static void stat_add(size_t *p, long delta)
{
    __atomic_add_fetch(p, (size_t)delta, __ATOMIC_RELAXED);
}

/* ---- classes ------------------------------------------------------------------------ */

const rt_actor_method *rt_actor_class_method(const rt_actor_class *cls, const char *name)
{
    for (size_t i = 0; name && i < cls->nmethods; i++)
        if (strcmp(cls->methods[i].name, name) == 0)
            return &cls->methods[i];
    return NULL;
}

static int class_index(rt_actors *as, const char *name, size_t *pos)
{
    size_t lo = 0, hi = as->nclasses;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(as->classes[mid]->name, name);
        if (c == 0) {
            *pos = mid;
            return 1;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return 0;
}

const rt_actor_class *rt_actor_class_hold(const rt_actor_class *cls)
{
    if (cls && cls->release) /* static classes may live in read-only memory: never written */
        __atomic_add_fetch(&((rt_actor_class *)cls)->refs, 1, __ATOMIC_RELAXED);
    return cls;
}

void rt_actor_class_drop(const rt_actor_class *cls)
{
    if (cls && cls->release &&
        __atomic_sub_fetch(&((rt_actor_class *)cls)->refs, 1, __ATOMIC_ACQ_REL) == 0)
        cls->release((rt_actor_class *)cls);
}

rt_status rt_actors_put_owned_class(rt_actors *as, rt_actor_class *cls,
                                    void (*release)(rt_actor_class *cls), bool *replaced)
{
    *replaced = false;
    if (!cls || !cls->name || !*cls->name || strlen(cls->name) > RT_ACTOR_NAME_MAX ||
        !cls->start || !release)
        return RT_EINVAL;
    const rt_actor_class *old = NULL;
    pthread_rwlock_wrlock(&as->classes_lock);
    size_t pos;
    rt_status st = RT_OK;
    if (class_index(as, cls->name, &pos)) {
        if (as->classes[pos]->kind != RT_FUNCTION_REMOTE)
            st = RT_EEXIST;
        else
            old = as->classes[pos]; /* its actors keep it alive */
    } else if (as->nclasses == CLASSES_MAX) {
        st = RT_ELIMIT;
    } else {
        memmove(&as->classes[pos + 1], &as->classes[pos],
                (as->nclasses - pos) * sizeof(as->classes[0]));
        as->nclasses++;
    }
    if (st == RT_OK) {
        cls->refs = 1; /* the system's */
        cls->release = release;
        as->classes[pos] = cls;
        *replaced = old != NULL;
    }
    pthread_rwlock_unlock(&as->classes_lock);
    rt_actor_class_drop(old); /* freed now, or with its last actor */
    return st;
}

rt_status rt_actors_remove_class(rt_actors *as, const char *name)
{
    const rt_actor_class *removed = NULL;
    pthread_rwlock_wrlock(&as->classes_lock);
    size_t pos;
    rt_status st = RT_OK;
    if (!name || !class_index(as, name, &pos)) {
        st = RT_ENOTFOUND;
    } else if (as->classes[pos]->kind != RT_FUNCTION_REMOTE) {
        st = RT_ESTATE;
    } else {
        removed = as->classes[pos];
        memmove(&as->classes[pos], &as->classes[pos + 1],
                (as->nclasses - pos - 1) * sizeof(as->classes[0]));
        as->nclasses--;
    }
    pthread_rwlock_unlock(&as->classes_lock);
    rt_actor_class_drop(removed);
    return st;
}

rt_status rt_actors_add_class(rt_actors *as, const rt_actor_class *cls)
{
    if (!cls || !cls->name || (!cls->constructor && !cls->start) || !*cls->name ||
        strlen(cls->name) > RT_ACTOR_NAME_MAX)
        return RT_EINVAL;
    pthread_rwlock_wrlock(&as->classes_lock);
    size_t pos;
    rt_status st = RT_OK;
    if (class_index(as, cls->name, &pos))
        st = RT_EEXIST;
    else if (as->nclasses == CLASSES_MAX)
        st = RT_ELIMIT;
    else {
        memmove(&as->classes[pos + 1], &as->classes[pos],
                (as->nclasses - pos) * sizeof(as->classes[0]));
        as->classes[pos] = cls;
        as->nclasses++;
    }
    pthread_rwlock_unlock(&as->classes_lock);
    return st;
}

const rt_actor_class *rt_actors_get_class(rt_actors *as, const char *name)
{
    if (!name)
        return NULL;
    pthread_rwlock_rdlock(&as->classes_lock);
    size_t pos;
    /* Held under the lock: a listed class has the system's reference until unlisted. */
    const rt_actor_class *cls =
        class_index(as, name, &pos) ? rt_actor_class_hold(as->classes[pos]) : NULL;
    pthread_rwlock_unlock(&as->classes_lock);
    return cls;
}

const rt_actor_class *rt_actors_find_class(rt_actors *as, const char *name)
{
    if (!name)
        return NULL;
    pthread_rwlock_rdlock(&as->classes_lock);
    size_t pos;
    const rt_actor_class *cls = class_index(as, name, &pos) ? as->classes[pos] : NULL;
    pthread_rwlock_unlock(&as->classes_lock);
    return cls;
}

void rt_actors_each_class(rt_actors *as, void (*visit)(const rt_actor_class *cls, void *arg),
                          void *arg)
{
    pthread_rwlock_rdlock(&as->classes_lock);
    for (size_t i = 0; i < as->nclasses; i++)
        visit(as->classes[i], arg);
    pthread_rwlock_unlock(&as->classes_lock);
}

/* ---- records ------------------------------------------------------------------------ */

static rt_actor *actor_incref(rt_actor *a)
{
    __atomic_add_fetch(&a->rec.refs, 1, __ATOMIC_RELAXED);
    return a;
}

static void actor_decref(rt_actor *a)
{
    if (__atomic_sub_fetch(&a->rec.refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (a->cls->destroy)
        a->cls->destroy(a->user_state);
    rt_actor_class_drop(a->cls);
    json_decref(a->ctor_args);
    json_decref(a->ctor_kwargs);
    json_decref(a->resume_state);
    rt_error_decref(a->death_cause);
    pthread_mutex_destroy(&a->lock);
    free(a->name);
    free(a);
}

static actor_call *call_incref(actor_call *c)
{
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
    return c;
}

static void call_decref(actor_call *c)
{
    if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    json_decref(c->args);
    json_decref(c->kwargs);
    free(c->deps);
    actor_decref(c->actor);
    free(c);
}

/* table_lock held. */
static void names_grow(rt_actors *as)
{
    size_t n = as->nbuckets * 2;
    rt_actor **names = calloc(n, sizeof(*names));
    if (!names)
        return; /* chains get longer; lookups still work */
    for (size_t i = 0; i < as->nbuckets; i++) {
        for (rt_actor *a = as->by_name[i], *next; a; a = next) {
            next = a->name_next;
            a->name_next = names[a->name_hash & (n - 1)];
            names[a->name_hash & (n - 1)] = a;
        }
    }
    free(as->by_name);
    as->by_name = names;
    as->nbuckets = n;
}

static rt_actor *actor_of(rt_record *rec)
{
    return (rt_actor *)(void *)((char *)rec - offsetof(rt_actor, rec));
}

/* The actor with this id, as a new reference, or NULL. */
static void unreserve_locked(rt_actors *as, const char *id);

static rt_actor *find_by_id(rt_actors *as, const char *id)
{
    rt_record *rec = rt_record_table_find(as->records, id);
    return rec ? actor_of(rec) : NULL;
}

/* table_lock held. */
static rt_actor *find_by_name(rt_actors *as, const char *name)
{
    uint32_t h = rt_hash_str(name);
    for (rt_actor *a = as->by_name[h & (as->nbuckets - 1)]; a; a = a->name_next)
        if (a->name_hash == h && a->name && strcmp(a->name, name) == 0)
            return a;
    return NULL;
}

/* table_lock held. */
static bool unname(rt_actors *as, rt_actor *a)
{
    if (!a->named)
        return false;
    rt_actor **pp = &as->by_name[a->name_hash & (as->nbuckets - 1)];
    while (*pp && *pp != a)
        pp = &(*pp)->name_next;
    if (*pp)
        *pp = a->name_next;
    a->named = false;
    as->nnamed--;
    return true;
}

/* Forgets the oldest dead actors beyond max_kept_dead. No lock held. */
static void forget_old_dead(rt_actors *as)
{
    rt_record *dropped[64];
    pthread_mutex_lock(&as->table_lock);
    size_t over = as->dead_kept > as->config.max_kept_dead
                      ? as->dead_kept - as->config.max_kept_dead
                      : 0;
    size_t n = over ? rt_record_table_take_oldest(as->records, 1u << RT_ACTOR_DEAD,
                                                  over < 64 ? over : 64, dropped)
                    : 0;
    for (size_t i = 0; i < n; i++)
        unname(as, actor_of(dropped[i]));
    as->dead_kept -= n;
    pthread_mutex_unlock(&as->table_lock);
    for (size_t i = 0; i < n; i++) {
        stat_add(&as->by_state[RT_ACTOR_DEAD], -1);
        actor_decref(actor_of(dropped[i]));
    }
}

/* ---- state changes (actor lock held) ----------------------------------------------- */

static void set_state_locked(rt_actor *a, rt_actor_state s)
{
    if (a->state == s)
        return;
    stat_add(&a->owner->by_state[a->state], -1);
    stat_add(&a->owner->by_state[s], 1);
    __atomic_store_n(&a->state, s, __ATOMIC_RELEASE);
    rt_record_table_set_state(a->owner->records, &a->rec, (int)s);
}

/* Tells cluster mode that a fenced actor is gone for good (no lock held). */
static void actor_ended(rt_actors *as, const rt_actor *a)
{
    if (a->fenced && as->config.ended)
        as->config.ended(a->id, as->config.hooks_arg);
}

/* Tells the owner of the actor system that a's name is free again (no lock held). */
static void name_freed(rt_actors *as, const rt_actor *a)
{
    if (as->config.name_freed)
        as->config.name_freed(a->name ? a->name : "", a->id, as->config.name_freed_arg);
}

static json_t *call_fields(const rt_actor *a, const char *method)
{
    return json_pack("{s:s,s:s,s:s}", "actor_id", a->id, "class", a->cls->name, "method",
                     method);
}

/* Makes the actor DEAD and detaches the calls that have not run (all but a running head).
 * Returns the detached list; the caller fails their refs with ActorDied outside the lock. */
static actor_call *die_locked(rt_actor *a, rt_error *cause)
{
    set_state_locked(a, RT_ACTOR_DEAD);
    if (cause && !a->death_cause)
        a->death_cause = rt_error_incref(cause);
    actor_call *keep = a->running ? a->head : NULL;
    actor_call *detached = keep ? keep->next : a->head;
    if (keep) {
        keep->next = NULL;
        a->head = a->tail = keep;
    } else {
        a->head = a->tail = NULL;
    }
    return detached;
}

/* Fails detached calls with ActorDied and drops the mailbox's references. No lock held. */
static void fail_detached(rt_actor *a, actor_call *list, rt_error *cause)
{
    rt_actors *as = a->owner;
    size_t n = 0;
    while (list) {
        actor_call *next = list->next;
        if (list->method) {
            json_t *fields = call_fields(a, list->method_name);
            rt_error *err = rt_error_newf(RT_ERR_ACTOR_DIED, fields, cause,
                                          "actor %s died before %s.%s ran", a->id, a->cls->name,
                                          list->method_name);
            json_decref(fields);
            rt_store_fail(as->store, list->ref, err);
            rt_error_decref(err);
            n++;
        }
        /* Dependencies still watched keep their own references; drop them now. */
        for (size_t i = 0; i < list->ndeps; i++)
            rt_store_unpin(as->store, list->deps[i].ref);
        size_t unwatched = 0;
        for (size_t i = 0; i < list->ndeps; i++)
            if (list->deps[i].watcher.fn && rt_store_unwatch(as->store, &list->deps[i].watcher))
                unwatched++;
        while (unwatched--)
            call_decref(list); /* the mailbox's reference below keeps it alive */
        call_decref(list); /* the mailbox's */
        list = next;
    }
    pthread_mutex_lock(&a->lock);
    a->calls_pending -= n < a->calls_pending ? n : a->calls_pending;
    pthread_mutex_unlock(&a->lock);
}

static void run_actor(rt_job *job);

/* The method of every call to an asynchronous class: the name is the call's own. */
static const rt_actor_method ANY_REMOTE_METHOD = {"*", "[any, ...]", "any method", NULL};

/* Set by rt_actor_call_opts around publishing an inline-able call: instead of queueing the
 * actor, maybe_schedule_locked hands its job back here for the caller to run. The job
 * carries the actor reference maybe_schedule_locked took; run_actor consumes it. */
static __thread bool inline_wanted;
static __thread rt_job *inline_job;

/* Queues the actor when its head call is ready and it is not already queued. */
static void maybe_schedule_locked(rt_actor *a)
{
    if (!a->scheduled && a->head && a->head->ready) {
        a->scheduled = true;
        actor_incref(a);
        if (inline_wanted && !inline_job && a->cls->quick) {
            inline_job = &a->job; /* the caller runs it right after unlocking */
            return;
        }
        rt_scheduler_submit(a->owner->scheduler, &a->job);
    }
}

/* ---- dependencies ------------------------------------------------------------------- */

static void call_dependency_done(actor_call *c)
{
    if (__atomic_sub_fetch(&c->deps_remaining, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    rt_actor *a = c->actor;
    pthread_mutex_lock(&a->lock);
    c->ready = true;
    maybe_schedule_locked(a);
    pthread_mutex_unlock(&a->lock);
}

static void on_call_dependency(rt_watcher *w, void *arg)
{
    call_dependency *d = arg;
    actor_call *c = d->call;
    (void)w;
    call_dependency_done(c);
    call_decref(c); /* the watcher's reference */
}

/* A new call with its dependencies counted (not yet watched). NULL when out of memory. */
/* Copies src into dst of size bytes, cut short as snprintf's "%s" would be: that snprintf
 * was an eighth of an actor call's own instructions. */
static void copy_text(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static actor_call *call_new(rt_actor *a, const rt_actor_method *method, const char *name,
                            json_t *args, json_t *kwargs)
{
    actor_call *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->refs = 1; /* the mailbox's */
    c->actor = actor_incref(a);
    c->method = method;
    c->submitted_at = rt_clock_monotonic();
    copy_text(c->method_name, sizeof(c->method_name), method ? name : "__init__");
    c->args = args ? json_deep_copy(args) : json_array();
    c->kwargs = kwargs ? json_deep_copy(kwargs) : json_object();
    size_t n = rt_args_count_refs(c->args, c->kwargs);
    c->ndeps = n;
    c->deps = n ? calloc(n, sizeof(*c->deps)) : NULL;
    char(*refs)[RT_REF_SIZE] = n ? malloc(n * sizeof(*refs)) : NULL;
    if (!c->args || !c->kwargs || (n && (!c->deps || !refs))) {
        free(refs);
        call_decref(c);
        return NULL;
    }
    if (n) {
        rt_args_collect_refs(c->args, c->kwargs, refs);
        for (size_t d = 0; d < n; d++)
            memcpy(c->deps[d].ref, refs[d], RT_REF_SIZE);
        free(refs);
    }
    c->deps_remaining = (long)n + 1;
    return c;
}

/* Pins and watches a call's dependencies BEFORE the call is published in a mailbox, so
 * that a kill detaching it at any later moment finds them all pinned and watched. The
 * guard in deps_remaining stays held: the call cannot become ready until call_publish.
 * No lock held. */
static void call_watch(rt_actors *as, actor_call *c)
{
    for (size_t i = 0; i < c->ndeps; i++) {
        call_dependency *d = &c->deps[i];
        d->call = c;
        d->watcher.fn = on_call_dependency;
        d->watcher.arg = d;
        rt_store_pin(as->store, d->ref);
        call_incref(c);
        if (rt_store_watch(as->store, d->ref, &d->watcher) != RT_OK) {
            d->watcher.fn = NULL;
            call_decref(c); /* not the last: the caller holds one */
            __atomic_sub_fetch(&c->deps_remaining, 1, __ATOMIC_ACQ_REL); /* guard stays */
        }
    }
}

/* Undoes call_watch for a call that was never published. */
static void call_unwatch(rt_actors *as, actor_call *c)
{
    for (size_t i = 0; i < c->ndeps; i++) {
        rt_store_unpin(as->store, c->deps[i].ref);
        if (c->deps[i].watcher.fn && rt_store_unwatch(as->store, &c->deps[i].watcher))
            call_decref(c); /* the caller's reference keeps it alive */
    }
}

/* Drops the guard of a published call: it becomes ready now if its dependencies are.
 * The caller holds its own reference across this (a kill may have detached the call). */
static void call_publish_done(actor_call *c)
{
    call_dependency_done(c);
}

/* ---- running calls ------------------------------------------------------------------ */

/* Runs the constructor on the actor's state. Returns NULL, or the error that kills it. */
static rt_error *construct(rt_actor *a, json_t *args, json_t *kwargs)
{
    if (a->cls->destroy)
        a->cls->destroy(a->user_state);
    a->user_state = NULL;
    int never = 0;
    rt_call call = {.task_id = a->id,
                    .function = a->cls->name,
                    .attempt = a->restarts + 1,
                    .args = args,
                    .kwargs = kwargs,
                    .cancel_flag = &never,
                    .store = a->owner->store};
    a->cls->constructor(&a->user_state, &call);
    rt_error *err = NULL;
    if (call.error) {
        json_t *fields = call_fields(a, "__init__");
        err = rt_error_newf(RT_ERR_TASK_ERROR, fields, NULL, "%s.__init__ failed: %s",
                            a->cls->name, call.error);
        json_decref(fields);
    }
    free(call.error);
    json_decref(call.result_json);
    rt_buf_decref(call.result_buf);
    return err;
}

/* Stores a method's result. Returns NULL or an error to store instead (new reference). */
static rt_error *store_result(rt_actors *as, actor_call *c, rt_call *call)
{
    rt_buf *buf = call->result_buf;
    call->result_buf = NULL;
    if (!buf) {
        buf = rt_buf_from_json(call->result_json ? call->result_json : json_null());
    }
    rt_error *err = NULL;
    /* The error's fields are built only for an error: json_pack was over a third of a
     * successful call's run. */
    if (!buf) {
        json_t *fields = call_fields(c->actor, c->method_name);
        err = rt_error_newf(RT_ERR_TASK_ERROR, fields, NULL, "out of memory storing the result");
        json_decref(fields);
    } else {
        size_t size = buf->size;
        rt_status st = rt_store_resolve(as->store, c->ref, buf);
        if (st != RT_OK)
            rt_buf_decref(buf);
        if (st == RT_EFULL) {
            json_t *fields = call_fields(c->actor, c->method_name);
            err = rt_error_newf(RT_ERR_TASK_ERROR, fields, NULL,
                                "the result of %zu bytes does not fit in the object store", size);
            json_decref(fields);
        }
    }
    return err;
}

/* What one run of an actor's head call decided. */
typedef struct run_outcome {
    rt_error *result_err; /* what the call's ref gets instead of a value (owned) */
    rt_error *death;      /* the actor dies with this (owned) */
    bool restart;         /* a fatal method error: rebuild the state */
    bool counted;         /* calls_done already counts this call */
} run_outcome;

/* An asynchronous call in flight: the actor stays `running` until it completes. */
typedef struct async_run {
    rt_actor *actor;
    actor_call *call;
    rt_call rc;
} async_run;

static void finish_run(rt_actor *a, actor_call *c, run_outcome *o);

/* Counts a method call as done before its result is visible, so that a client holding the
 * result never sees calls_done lag behind it. */
static void count_done(rt_actor *a, run_outcome *o)
{
    pthread_mutex_lock(&a->lock);
    a->calls_pending--;
    a->calls_done++;
    pthread_mutex_unlock(&a->lock);
    __atomic_add_fetch(&a->owner->calls_done, 1, __ATOMIC_RELAXED);
    o->counted = true;
}

/* Turns a finished method call's outputs into the outcome, storing its result. */
static void method_outcome(rt_actor *a, actor_call *c, rt_call *call, run_outcome *o)
{
    count_done(a, o);
    if (call->error) {
        json_t *fields = call_fields(a, c->method_name);
        if (call->error_fields)
            json_object_update(fields, call->error_fields);
        /* Methods name themselves in their messages ("Queue.get: ..."). */
        o->result_err = rt_error_new(call->unavailable ? RT_ERR_WORKER_UNAVAILABLE
                                                        : RT_ERR_TASK_ERROR,
                                     call->error, fields, call->error_cause);
        json_decref(fields);
        o->restart = call->fatal;
    } else {
        o->result_err = store_result(a->owner, c, call);
    }
}

static void on_async_done(rt_call *call, void *arg)
{
    async_run *x = arg;
    rt_actor *a = x->actor;
    actor_call *c = x->call;
    run_outcome o = {0};
    if (!c->method) {
        if (call->error) {
            json_t *fields = call_fields(a, "__init__");
            o.death = rt_error_newf(call->unavailable ? RT_ERR_WORKER_UNAVAILABLE
                                                      : RT_ERR_TASK_ERROR,
                                    fields, call->error_cause, "%s.__init__ failed: %s",
                                    a->cls->name, call->error);
            json_decref(fields);
        }
    } else {
        method_outcome(a, c, call, &o);
    }
    json_decref(call->args);
    json_decref(call->kwargs);
    rt_call_free_outputs(call);
    free(x);
    finish_run(a, c, &o);
}

static void run_actor(rt_job *job)
{
    rt_actor *a = (rt_actor *)((char *)job - offsetof(rt_actor, job));
    rt_actors *as = a->owner;

    pthread_mutex_lock(&a->lock);
    actor_call *c = a->head;
    if (!c || !c->ready) { /* killed meanwhile, or nothing to do */
        a->scheduled = false;
        pthread_mutex_unlock(&a->lock);
        actor_decref(a);
        return;
    }
    bool dead = a->state == RT_ACTOR_DEAD;
    a->running = true;
    pthread_mutex_unlock(&a->lock);
    if (!dead)
        c->began = rt_clock_monotonic(); /* the head call: this run alone touches it */

    run_outcome o = {0};
    json_t *args = NULL, *kwargs = NULL;
    rt_error *cause = NULL;
    if (dead) {
        json_t *fields = c->method ? call_fields(a, c->method_name) : NULL;
        o.result_err = rt_error_newf(RT_ERR_ACTOR_DIED, fields, a->death_cause,
                                     "actor %s is dead", a->id);
        json_decref(fields);
    } else if (c->method && a->fenced && as->config.lease_held &&
               !as->config.lease_held(as->config.hooks_arg)) {
        /* Another node may run this actor now: this one must not (see cluster_actors.h). */
        json_t *fields = call_fields(a, c->method_name);
        json_object_set_new(fields, "may_have_run", json_false());
        o.result_err = rt_error_newf(RT_ERR_ACTOR_DIED, fields, NULL,
                                     "%s.%s did not run: this node's lease on actor %s "
                                     "lapsed (it could not renew its heartbeat in Redis), so "
                                     "the actor may have been restarted on another node",
                                     a->cls->name, c->method_name, a->id);
        json_decref(fields);
    } else if (!c->method && a->resume_state && a->cls->start) {
        /* Restarted elsewhere with its state kept in the cluster: no __init__. */
        json_decref(a->user_state); /* async classes' states are JSON (remote_class.c) */
        a->user_state = a->resume_state;
        a->resume_state = NULL;
    } else if (rt_args_resolve(as->store, c->args, c->kwargs, &args, &kwargs, &cause) != RT_OK) {
        json_t *fields = call_fields(a, c->method_name);
        o.result_err = rt_error_newf(RT_ERR_TASK_ERROR, fields, cause,
                                     "%s.%s did not run: an argument holds an error, %s (see "
                                     "cause)",
                                     a->cls->name, c->method_name,
                                     rt_error_kind_name(rt_error_kind_of(cause)));
        json_decref(fields);
        if (!c->method)
            o.death = rt_error_incref(o.result_err);
        rt_error_decref(cause);
    } else if (a->cls->start) {
        async_run *x = calloc(1, sizeof(*x));
        if (x) {
            x->actor = a;
            x->call = c;
            x->rc.task_id = a->id;
            x->rc.function = c->method_name;
            x->rc.attempt = 1;
            x->rc.args = args;
            x->rc.kwargs = kwargs;
            x->rc.store = as->store;
            x->rc.request_id = c->request_id[0] ? c->request_id : NULL;
            x->rc.traceparent = c->traceparent[0] ? c->traceparent : NULL;
            /* The class calls on_async_done when the endpoint has answered; the worker
             * goes back to the pool now. */
            a->cls->start(a->cls, &a->user_state, &x->rc, on_async_done, x);
            return;
        }
        json_t *fields = call_fields(a, c->method_name);
        o.result_err = rt_error_newf(RT_ERR_TASK_ERROR, fields, NULL, "out of memory");
        json_decref(fields);
    } else if (!c->method) {
        o.death = construct(a, args, kwargs);
    } else {
        int never = 0;
        rt_call call = {.task_id = a->id,
                        .function = c->method_name,
                        .attempt = 1,
                        .args = args,
                        .kwargs = kwargs,
                        .cancel_flag = &never,
                        .store = as->store};
        c->method->fn(&a->user_state, &call);
        method_outcome(a, c, &call, &o);
        rt_call_free_outputs(&call);
    }
    json_decref(args);
    json_decref(kwargs);
    finish_run(a, c, &o);
}

/* Ends a run: stores a failure, restarts or kills the actor if it must, pops the call and
 * queues the actor again when the next call is ready. Consumes o and the job's reference. */
static void finish_run(rt_actor *a, actor_call *c, run_outcome *o)
{
    rt_actors *as = a->owner;
    rt_error *result_err = o->result_err, *death = o->death;
    if (result_err && c->method)
        rt_store_fail(as->store, c->ref, result_err);
    if (c->method) {
        rt_stats_entry *st = rt_stats_entry_for(RT_STATS_METHOD, a->cls->name, c->method_name);
        if (c->began > 0)
            rt_stats_call(st, rt_clock_monotonic() - c->began, c->began - c->submitted_at);
        if (result_err)
            rt_stats_fail(st, rt_error_kind_of(result_err));
    }

    /* A fatal method error: rebuild the state, or die when out of restarts. */
    if (o->restart) {
        pthread_mutex_lock(&a->lock);
        bool can = a->state != RT_ACTOR_DEAD && (a->max_restarts < 0 ||
                                                 a->restarts < (unsigned)a->max_restarts);
        unsigned restarts = 0;
        if (can) {
            restarts = ++a->restarts;
            set_state_locked(a, RT_ACTOR_RESTARTING);
        }
        pthread_mutex_unlock(&a->lock);
        if (can && a->fenced && as->config.restarted)
            as->config.restarted(a->id, restarts, as->config.hooks_arg);
        if (can) {
            rt_event_emit("warn", "actor restarted",
                          json_pack("{s:s,s:s,s:I,s:i,s:s}", "actor_id", a->id, "class",
                                    a->cls->name, "restarts", (json_int_t)restarts,
                                    "max_restarts", a->max_restarts, "method",
                                    c->method ? c->method->name : "__init__"));
            __atomic_add_fetch(&as->restarts, 1, __ATOMIC_RELAXED);
            json_t *cargs = NULL, *ckwargs = NULL;
            rt_error *ccause = NULL;
            /* The constructor's ref arguments were pinned for its first run and resolved;
             * they are read again as they are now. */
            if (rt_args_resolve(as->store, a->ctor_args, a->ctor_kwargs, &cargs, &ckwargs,
                                &ccause) != RT_OK) {
                json_t *fields = call_fields(a, "__init__");
                death = rt_error_newf(RT_ERR_TASK_ERROR, fields, ccause,
                                      "%s.__init__ did not run: an argument holds an error, %s "
                                      "(see cause)",
                                      a->cls->name, rt_error_kind_name(rt_error_kind_of(ccause)));
                json_decref(fields);
                rt_error_decref(ccause);
            } else
                death = construct(a, cargs, ckwargs);
            json_decref(cargs);
            json_decref(ckwargs);
        } else {
            death = rt_error_incref(result_err);
        }
    }

    /* Pop the call, update the lifecycle, and queue the actor again if there is more. */
    actor_call *detached = NULL;
    bool became_dead = false;
    pthread_mutex_lock(&a->lock);
    a->running = false;
    if (a->head == c) {
        a->head = c->next;
        if (!a->head)
            a->tail = NULL;
    }
    if (c->method && !o->counted) {
        a->calls_pending--;
        a->calls_done++;
        __atomic_add_fetch(&as->calls_done, 1, __ATOMIC_RELAXED);
    }
    if (death && a->state != RT_ACTOR_DEAD) {
        detached = die_locked(a, death);
        became_dead = true;
    } else if (!death && a->state != RT_ACTOR_DEAD) {
        set_state_locked(a, RT_ACTOR_ALIVE);
    }
    a->scheduled = false;
    maybe_schedule_locked(a);
    pthread_mutex_unlock(&a->lock);

    for (size_t i = 0; i < c->ndeps; i++)
        rt_store_unpin(as->store, c->deps[i].ref);
    if (became_dead) {
        pthread_mutex_lock(&as->table_lock);
        bool was_named = unname(as, a);
        as->dead_kept++;
        pthread_mutex_unlock(&as->table_lock);
        if (was_named)
            name_freed(as, a);
        actor_ended(as, a);
        rt_event_emit("warn", "actor died",
                      json_pack("{s:s,s:s,s:s,s:s?}", "actor_id", a->id, "class", a->cls->name,
                                "error_kind", rt_error_kind_name(rt_error_kind_of(death)),
                                "detail", rt_error_message(death)));
        fail_detached(a, detached, death);
        forget_old_dead(as);
    }
    rt_error_decref(death);
    rt_error_decref(result_err);
    call_decref(c); /* the mailbox's */
    actor_decref(a); /* the job's */
}

/* ---- public operations --------------------------------------------------------------- */

static void fill_info(rt_actor *a, rt_actor_info *info)
{
    memset(info, 0, sizeof(*info));
    memcpy(info->actor_id, a->id, RT_REF_SIZE);
    snprintf(info->class_name, sizeof(info->class_name), "%s", a->cls->name);
    if (a->name)
        snprintf(info->name, sizeof(info->name), "%s", a->name);
    info->max_restarts = a->max_restarts;
    info->max_pending_calls = a->max_pending_calls;
    info->created_at = a->created_at;
    info->seq = a->rec.seq;
    pthread_mutex_lock(&a->lock);
    info->state = a->state;
    info->calls_pending = a->calls_pending;
    info->calls_done = a->calls_done;
    info->restarts = a->restarts;
    info->death_cause = a->state == RT_ACTOR_DEAD ? rt_error_incref(a->death_cause) : NULL;
    pthread_mutex_unlock(&a->lock);
}

void rt_actor_info_release(rt_actor_info *info)
{
    if (info) {
        rt_error_decref(info->death_cause);
        info->death_cause = NULL;
    }
}

int rt_actor_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > RT_ACTOR_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f || name[i] == '/')
            return 0; /* '/' would make GET /v1/actors/by-name/{name} unreachable */
    return 1;
}

rt_status rt_actor_create(rt_actors *as, const rt_actor_spec *spec, rt_actor_info *info,
                          bool *created, char *err, size_t err_size)
{
    *created = false;
    /* Checked first, so that a bad request takes no reference. */
    if (!rt_actors_find_class(as, spec->class_name)) {
        snprintf(err, err_size, "actor class '%.128s' does not exist",
                 spec->class_name ? spec->class_name : "");
        return RT_ENOTFOUND;
    }
    if (spec->name && !rt_actor_name_valid(spec->name)) {
        snprintf(err, err_size, "name must be 1 to %d bytes without control characters or '/'",
                 RT_ACTOR_NAME_MAX);
        return RT_EINVAL;
    }
    if (spec->get_if_exists && !spec->name) {
        snprintf(err, err_size, "get_if_exists needs a name");
        return RT_EINVAL;
    }
    if (spec->max_restarts < -1 || spec->max_pending_calls < -1 || spec->max_pending_calls == 0) {
        snprintf(err, err_size, "max_restarts must be >= -1 and max_pending_calls >= 1 (or -1)");
        return RT_EINVAL;
    }
    if ((spec->args && !json_is_array(spec->args)) ||
        (spec->kwargs && !json_is_object(spec->kwargs))) {
        snprintf(err, err_size, "args must be a list and kwargs an object");
        return RT_EINVAL;
    }
    rt_status st = rt_args_check(as->store, spec->args, spec->kwargs, err, err_size);
    if (st != RT_OK)
        return st;

    /* Taken again with a reference: the class may have been replaced or removed since. */
    const rt_actor_class *cls = rt_actors_get_class(as, spec->class_name);
    if (!cls) {
        snprintf(err, err_size, "actor class '%.128s' does not exist", spec->class_name);
        return RT_ENOTFOUND;
    }
    rt_actor *a = calloc(1, sizeof(*a));
    if (!a) {
        rt_actor_class_drop(cls);
        return RT_ENOMEM;
    }
    rt_mutex_init(&a->lock);
    a->rec.refs = 1; /* the table's */
    a->owner = as;
    a->cls = cls; /* the reference is the actor's from here */
    a->job.run = run_actor;
    if (spec->actor_id)
        snprintf(a->id, sizeof(a->id), "%s", spec->actor_id);
    else
        rt_ref_generate(a->id, 'a');
    rt_actor_state first = spec->restarting ? RT_ACTOR_RESTARTING : RT_ACTOR_PENDING_CREATION;
    rt_record_init(&a->rec, a->id, (int)first);
    bool no_memory = false;
    if (spec->name) {
        a->name = strdup(spec->name); /* valid: at most RT_ACTOR_NAME_MAX bytes */
        no_memory |= !a->name;
        a->name_hash = a->name ? rt_hash_str(a->name) : 0;
    }
    if (json_array_size(spec->args) > 0)
        no_memory |= !(a->ctor_args = json_deep_copy(spec->args));
    if (json_object_size(spec->kwargs) > 0)
        no_memory |= !(a->ctor_kwargs = json_deep_copy(spec->kwargs));
    a->max_restarts = spec->max_restarts;
    a->max_pending_calls = spec->max_pending_calls;
    a->created_at = rt_clock_wall();
    a->state = first;
    a->restarts = spec->restarts;
    a->fenced = spec->fenced;
    if (spec->resume_state && cls->start)
        a->resume_state = json_deep_copy(spec->resume_state);
    actor_call *ctor = call_new(a, NULL, NULL, a->ctor_args, a->ctor_kwargs);
    if (no_memory || !ctor) {
        if (ctor)
            call_decref(ctor); /* drops its reference to a */
        actor_decref(a);
        return RT_ENOMEM;
    }

    call_watch(as, ctor);
    pthread_mutex_lock(&as->table_lock);
    if (spec->name) {
        rt_actor *existing = find_by_name(as, spec->name);
        if (existing) {
            if (spec->get_if_exists)
                fill_info(existing, info);
            pthread_mutex_unlock(&as->table_lock);
            call_unwatch(as, ctor);
            call_decref(ctor);
            actor_decref(a);
            if (spec->get_if_exists)
                return RT_OK;
            snprintf(err, err_size, "an actor named '%.128s' exists", spec->name);
            return RT_EEXIST;
        }
    }
    if (spec->name) {
        if (as->nnamed >= as->nbuckets)
            names_grow(as);
        size_t nb = a->name_hash & (as->nbuckets - 1);
        a->name_next = as->by_name[nb];
        as->by_name[nb] = a;
        a->named = true;
        as->nnamed++;
    }
    rt_record *rec = &a->rec;
    rt_record_table_insert(as->records, &rec, 1);
    if (spec->actor_id)
        unreserve_locked(as, spec->actor_id); /* the same lock: never neither, never both */
    stat_add(&as->by_state[first], 1);
    /* The constructor is the first call in the mailbox. */
    a->head = a->tail = ctor;
    call_incref(ctor); /* ours, across call_publish_done: a kill may detach it first */
    fill_info(a, info);
    pthread_mutex_unlock(&as->table_lock);
    *created = true;
    call_publish_done(ctor);
    call_decref(ctor);
    return RT_OK;
}

rt_status rt_actor_call(rt_actors *as, const char *actor_id, const char *method, json_t *args,
                        json_t *kwargs, char ref_out[RT_REF_SIZE], char *err, size_t err_size)
{
    return rt_actor_call_opts(as, actor_id, method, args, kwargs, false, NULL, NULL, 0,
                              ref_out, err, err_size);
}

rt_status rt_actor_call_opts(rt_actors *as, const char *actor_id, const char *method,
                             json_t *args, json_t *kwargs, bool inline_ok,
                             const char *request_id, const char *traceparent,
                             double result_ttl, char ref_out[RT_REF_SIZE], char *err,
                             size_t err_size)
{
    rt_actor *a = find_by_id(as, actor_id);
    if (!a) {
        snprintf(err, err_size, "actor %s does not exist", actor_id);
        return RT_ENOTFOUND;
    }
    rt_status st = RT_OK;
    actor_call *c = NULL;
    /* Asynchronous (remote) classes take any method name; the endpoint decides. */
    const rt_actor_method *m =
        a->cls->start ? &ANY_REMOTE_METHOD : rt_actor_class_method(a->cls, method);
    if (!m || !method || !*method || strlen(method) > RT_ACTOR_NAME_MAX) {
        snprintf(err, err_size, "%s has no method '%.128s'", a->cls->name, method);
        st = RT_EINVAL;
        goto out;
    }
    if ((args && !json_is_array(args)) || (kwargs && !json_is_object(kwargs))) {
        snprintf(err, err_size, "args must be a list and kwargs an object");
        st = RT_EINVAL;
        goto out;
    }
    if ((st = rt_args_check(as->store, args, kwargs, err, err_size)) != RT_OK)
        goto out;
    c = call_new(a, m, method, args, kwargs);
    if (!c || rt_store_create_pending_ttl(as->store, result_ttl, c->ref) != RT_OK) {
        st = RT_ENOMEM;
        goto out;
    }
    if (request_id)
        copy_text(c->request_id, sizeof(c->request_id), request_id);
    if (traceparent)
        copy_text(c->traceparent, sizeof(c->traceparent), traceparent);
    call_watch(as, c);
    pthread_mutex_lock(&a->lock);
    if (a->state == RT_ACTOR_DEAD) {
        st = RT_ESTATE;
        snprintf(err, err_size, "actor %s is dead", a->id);
    } else if (a->max_pending_calls > 0 && a->calls_pending >= (size_t)a->max_pending_calls) {
        st = RT_ELIMIT;
        snprintf(err, err_size, "actor %s has %zu pending calls; its limit is %ld", a->id,
                 a->calls_pending, a->max_pending_calls);
    } else {
        c->next = NULL;
        if (a->tail)
            a->tail->next = c;
        else
            a->head = c;
        a->tail = c;
        a->calls_pending++;
    }
    if (st == RT_OK)
        call_incref(c); /* ours, across call_publish_done: a kill may detach it first */
    pthread_mutex_unlock(&a->lock);
    if (st != RT_OK) {
        call_unwatch(as, c);
        rt_store_delete(as->store, c->ref);
        goto out;
    }
    __atomic_add_fetch(&as->calls, 1, __ATOMIC_RELAXED);
    memcpy(ref_out, c->ref, RT_REF_SIZE);
    inline_wanted = inline_ok;
    call_publish_done(c); /* the mailbox holds its own reference */
    inline_wanted = false;
    if (inline_job) {
        rt_job *job = inline_job;
        inline_job = NULL;
        run_actor(job); /* exactly what a worker would do, on this thread */
    }
out:
    if (c)
        call_decref(c);
    actor_decref(a);
    return st;
}

static rt_status kill_actor(rt_actors *as, const char *actor_id, bool server_stopping);

rt_status rt_actor_kill(rt_actors *as, const char *actor_id)
{
    return kill_actor(as, actor_id, false);
}

size_t rt_actors_stop(rt_actors *as)
{
    size_t n = 0, cap = 0, killed = 0;
    char(*ids)[RT_REF_SIZE] = NULL;
    enum { BATCH = 64 };
    rt_record *page[BATCH];
    unsigned alive_mask = RT_RECORD_ALL_STATES & ~(1u << RT_ACTOR_DEAD);
    uint64_t cursor = 0, more = 0;
    do {
        size_t got = rt_record_table_page(as->records, cursor, alive_mask, page, BATCH, &more);
        for (size_t i = 0; i < got; i++) {
            rt_actor *a = actor_of(page[i]);
            cursor = a->rec.seq;
            if (n == cap) {
                size_t grown_cap = cap ? cap * 2 : 256;
                char(*grown)[RT_REF_SIZE] = realloc(ids, grown_cap * sizeof(*ids));
                if (grown) {
                    ids = grown;
                    cap = grown_cap;
                }
            }
            if (n < cap)
                memcpy(ids[n++], a->id, RT_REF_SIZE);
            actor_decref(a);
        }
    } while (more);
    /* Killed one by one with no lock held: a kill fails refs, which wakes watchers. */
    for (size_t i = 0; i < n; i++)
        if (kill_actor(as, ids[i], true) == RT_OK)
            killed++;
    free(ids);
    return killed;
}

static rt_status kill_actor(rt_actors *as, const char *actor_id, bool server_stopping)
{
    rt_actor *a = find_by_id(as, actor_id);
    if (!a)
        return RT_ENOTFOUND;
    pthread_mutex_lock(&as->table_lock);
    bool was_named = unname(as, a); /* killing frees the name at once */
    pthread_mutex_unlock(&as->table_lock);
    if (was_named)
        name_freed(as, a);
    pthread_mutex_lock(&a->lock);
    bool was_dead = a->state == RT_ACTOR_DEAD;
    actor_call *detached = was_dead ? NULL : die_locked(a, NULL);
    pthread_mutex_unlock(&a->lock);
    if (!was_dead) {
        json_t *fields = json_pack("{s:s}", "actor_id", a->id);
        rt_error *cause = rt_error_newf(RT_ERR_ACTOR_DIED, fields, NULL,
                                        server_stopping ? "actor %s was stopped with the server"
                                                        : "actor %s was killed",
                                        a->id);
        json_decref(fields);
        pthread_mutex_lock(&a->lock);
        if (!a->death_cause)
            a->death_cause = rt_error_incref(cause);
        pthread_mutex_unlock(&a->lock);
        pthread_mutex_lock(&as->table_lock);
        as->dead_kept++;
        pthread_mutex_unlock(&as->table_lock);
        if (!server_stopping)
            actor_ended(as, a);
        if (!server_stopping)
            rt_event_emit("info", "actor died",
                          json_pack("{s:s,s:s,s:s,s:s}", "actor_id", a->id, "class",
                                    a->cls->name, "error_kind", "ActorDied", "detail",
                                    "killed"));
        fail_detached(a, detached, cause);
        rt_error_decref(cause);
        forget_old_dead(as);
    }
    actor_decref(a);
    return RT_OK;
}

rt_status rt_actor_forget(rt_actors *as, const char *actor_id, const char *reason)
{
    rt_actor *a = find_by_id(as, actor_id);
    if (!a)
        return RT_ENOTFOUND;
    pthread_mutex_lock(&as->table_lock);
    unname(as, a); /* here only: the name stays bound to the actor where it lives now */
    pthread_mutex_unlock(&as->table_lock);
    json_t *fields = json_pack("{s:s,s:b}", "actor_id", a->id, "moved", 1);
    rt_error *cause = rt_error_newf(RT_ERR_ACTOR_DIED, fields, NULL, "actor %s %s", a->id,
                                    reason);
    json_decref(fields);
    pthread_mutex_lock(&a->lock);
    bool was_dead = a->state == RT_ACTOR_DEAD;
    actor_call *detached = was_dead ? NULL : die_locked(a, cause);
    pthread_mutex_unlock(&a->lock);
    if (!was_dead)
        fail_detached(a, detached, cause);
    rt_error_decref(cause);
    if (rt_record_table_remove(as->records, &a->rec)) {
        pthread_mutex_lock(&as->table_lock);
        if (was_dead && as->dead_kept)
            as->dead_kept--;
        pthread_mutex_unlock(&as->table_lock);
        stat_add(&as->by_state[RT_ACTOR_DEAD], -1);
        actor_decref(a); /* the table's */
    }
    actor_decref(a);
    return RT_OK;
}

/* The reservation of id, or NULL. table_lock held. */
static reservation **find_reservation(rt_actors *as, const char *id)
{
    for (reservation **r = &as->reserved; *r; r = &(*r)->next)
        if (strcmp((*r)->info.actor_id, id) == 0)
            return r;
    return NULL;
}

rt_status rt_actor_reserve(rt_actors *as, const rt_actor_spec *spec, char id[RT_REF_SIZE])
{
    reservation *r = calloc(1, sizeof(*r));
    if (!r)
        return RT_ENOMEM;
    rt_ref_generate(r->info.actor_id, 'a');
    snprintf(r->info.class_name, sizeof(r->info.class_name), "%s",
             spec->class_name ? spec->class_name : "");
    snprintf(r->info.name, sizeof(r->info.name), "%s", spec->name ? spec->name : "");
    r->info.state = RT_ACTOR_PENDING_CREATION;
    r->info.max_restarts = spec->max_restarts;
    r->info.max_pending_calls = spec->max_pending_calls;
    r->info.created_at = rt_clock_wall();
    memcpy(id, r->info.actor_id, RT_REF_SIZE);
    pthread_mutex_lock(&as->table_lock);
    r->next = as->reserved;
    as->reserved = r;
    pthread_mutex_unlock(&as->table_lock);
    return RT_OK;
}

/* Drops the reservation of id, if any. table_lock held. */
static void unreserve_locked(rt_actors *as, const char *id)
{
    reservation **r = find_reservation(as, id);
    if (!r)
        return;
    reservation *gone = *r;
    *r = gone->next;
    free(gone);
}

void rt_actor_unreserve(rt_actors *as, const char *id)
{
    pthread_mutex_lock(&as->table_lock);
    unreserve_locked(as, id);
    pthread_mutex_unlock(&as->table_lock);
}

rt_status rt_actor_get(rt_actors *as, const char *actor_id, rt_actor_info *info)
{
    rt_actor *a = find_by_id(as, actor_id);
    if (!a) {
        pthread_mutex_lock(&as->table_lock);
        /* Looked for again under the lock: the actor may have been made meanwhile. */
        reservation **r = find_reservation(as, actor_id);
        if (r)
            *info = (*r)->info;
        pthread_mutex_unlock(&as->table_lock);
        if (r)
            return RT_OK;
        a = find_by_id(as, actor_id);
        if (!a)
            return RT_ENOTFOUND;
    }
    fill_info(a, info);
    actor_decref(a);
    return RT_OK;
}

rt_status rt_actor_get_by_name(rt_actors *as, const char *name, rt_actor_info *info)
{
    pthread_mutex_lock(&as->table_lock);
    rt_actor *a = find_by_name(as, name);
    if (a)
        fill_info(a, info);
    pthread_mutex_unlock(&as->table_lock);
    return a ? RT_OK : RT_ENOTFOUND;
}

/* Records a class-filtered listing looks at per page at most, beyond the page itself (the
 * record table has no index by class): see rt_actor_list. */
#define LIST_SCAN_MAX 4096

size_t rt_actor_list(rt_actors *as, uint64_t after_seq, int state, const char *class_name,
                     size_t limit, rt_actor_info *infos, uint64_t *next_seq)
{
    size_t n = 0, scanned = 0;
    *next_seq = 0;
    if (limit == 0 || state >= RT_ACTOR_STATE_COUNT)
        return 0;
    unsigned mask = state >= 0 ? 1u << state : RT_RECORD_ALL_STATES;
    enum { BATCH = 64 };
    rt_record *page[BATCH];
    uint64_t cursor = after_seq; /* the last record looked at */
    for (;;) {
        /* one more than the page needs, to know whether another follows */
        size_t want = class_name || limit - n + 1 > BATCH ? BATCH : limit - n + 1;
        uint64_t more;
        size_t got = rt_record_table_page(as->records, cursor, mask, page, want, &more);
        int full = 0;
        for (size_t i = 0; i < got; i++) {
            rt_actor *a = actor_of(page[i]);
            int match = !class_name || strcmp(class_name, a->cls->name) == 0;
            if (!full && match && n == limit) {
                *next_seq = infos[n - 1].seq; /* another one follows the page */
                full = 1;
            } else if (!full) {
                scanned++;
                cursor = a->rec.seq;
                if (match)
                    fill_info(a, &infos[n++]);
            }
            actor_decref(a);
        }
        if (full || !more)
            return n;
        if (scanned >= LIST_SCAN_MAX + limit) {
            *next_seq = cursor; /* looked at enough for one page: go on from here */
            return n;
        }
    }
}

uint64_t rt__actors_list_visits(rt_actors *as)
{
    return rt_record_table_visits(as->records);
}

void rt_actors_get_stats(rt_actors *as, rt_actors_stats *out)
{
    for (int i = 0; i < RT_ACTOR_STATE_COUNT; i++)
        out->by_state[i] = __atomic_load_n(&as->by_state[i], __ATOMIC_RELAXED);
    out->calls = __atomic_load_n(&as->calls, __ATOMIC_RELAXED);
    out->calls_done = __atomic_load_n(&as->calls_done, __ATOMIC_RELAXED);
    out->restarts = __atomic_load_n(&as->restarts, __ATOMIC_RELAXED);
}

/* ---- life --------------------------------------------------------------------------- */

rt_actors *rt_actors_new(rt_store *store, rt_scheduler *scheduler,
                         const rt_actors_config *config)
{
    rt_actors *as = calloc(1, sizeof(*as));
    if (!as)
        return NULL;
    as->store = store;
    as->scheduler = scheduler;
    if (config)
        as->config = *config;
    if (!as->config.max_kept_dead)
        as->config.max_kept_dead = 100000;
    as->nbuckets = TABLE_BUCKETS_INITIAL;
    as->by_name = calloc(as->nbuckets, sizeof(*as->by_name));
    as->records = rt_record_table_new(RT_ACTOR_STATE_COUNT);
    if (!as->by_name || !as->records) {
        free(as->by_name);
        rt_record_table_free(as->records);
        free(as);
        return NULL;
    }
    rt_mutex_init(&as->table_lock);
    pthread_rwlock_init(&as->classes_lock, NULL);
    return as;
}

void rt_actors_free(rt_actors *as)
{
    if (!as)
        return;
    rt_record *recs[256];
    size_t n;
    while ((n = rt_record_table_take_oldest(as->records, RT_RECORD_ALL_STATES, 256, recs))) {
        for (size_t k = 0; k < n; k++) {
            rt_actor *a = actor_of(recs[k]);
            /* Calls still in the mailbox never ran (the scheduler has stopped): drop them
             * and the watchers that hold them. */
            actor_call *c = a->head;
            a->head = a->tail = NULL;
            while (c) {
                actor_call *cn = c->next;
                for (size_t i = 0; i < c->ndeps; i++)
                    if (c->deps[i].watcher.fn &&
                        rt_store_unwatch(as->store, &c->deps[i].watcher))
                        call_decref(c);
                call_decref(c);
                c = cn;
            }
            actor_decref(a); /* the table's */
        }
    }
    rt_record_table_free(as->records);
    free(as->by_name);
    for (size_t i = 0; i < as->nclasses; i++)
        rt_actor_class_drop(as->classes[i]); /* the system's reference to owned ones */
    pthread_rwlock_destroy(&as->classes_lock);
    pthread_mutex_destroy(&as->table_lock);
    free(as);
}
