/* The task system: task records, dependency tracking through store watchers, running on
 * the worker pool, retries, cancellation, and storing results or errors.
 *
 * DESIGN
 * - Records: every task is in the record table (runtime/record_table.c: by id, in
 *   submission order and by state), which makes a page of a listing cost what it holds
 *   and finds the oldest ended record at once. Finished records beyond max_kept are
 *   forgotten, oldest first.
 * - Per task, `lock` guards state, attempts, timestamps, error and cancel_requested.
 *   Lock order: task lock -> the record table's lock (a leaf: state changes are told to
 *   the table under the task lock, so that they reach it in order); store locks are never
 *   held while taking either.
 * - Lifetime: a task is reference-counted (rec.refs): one reference for the table, one for each
 *   registered dependency watcher, one while its job is queued or running (an asynchronous
 *   attempt keeps it until its completion callback, and a retry across its delay).
 * - A quick function whose submitter waits for it (Prefer: wait) runs on the submitting
 *   thread; it goes through run_job exactly as on a worker. An asynchronous function's
 *   attempt is started there too (the start only posts the call; it never blocks).
 * - Dependencies: deps_remaining starts at ndeps + 1. Each dependency that resolves (or
 *   already was resolved at submission) takes one off, and submission takes the extra one
 *   off when it has registered every watcher; whoever reaches 0 queues the task. So a
 *   task is queued exactly once, the moment its last argument is ready, without polling.
 * - A queued task first checks its dependencies: if one holds an error or is gone, the
 *   task fails at once without running. This happens on a worker, not inside the watcher
 *   callback, so a failure in the middle of a long chain never recurses.
 * - Cancel and completion meet under the task lock: whichever comes first decides. A
 *   function's cancel hook runs with no lock held (it may complete the attempt on the
 *   cancelling thread); while it runs, a completion leaves the attempt to the canceller. */
#include "runtime/task.h"

#include <pthread.h>
#include <stdarg.h>
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

typedef struct rt_task rt_task;

typedef struct dependency {
    rt_watcher watcher;
    rt_task *task;
    char ref[RT_REF_SIZE];
} dependency;

struct rt_task {
    rt_record rec;                  /* id, submission order (rec.seq), references (rec.refs) */
    rt_job job;
    rt_tasks *owner;
    pthread_mutex_t lock;
    const char *id;                 /* in tail */
    const rt_function *fn;          /* held (rt_function_hold) until the record is freed, so
                                       that a replaced remote function outlives its tasks */
    const char *function;           /* in tail */
    const char *name;               /* in tail; "" when none */
    json_t *args, *kwargs;          /* owned; set to NULL (task lock) by the attempt that ends
                                       the task; run_job reads them unlocked, safe because
                                       one attempt at a time runs */
    unsigned num_returns;
    char (*result_refs)[RT_REF_SIZE]; /* in tail */
    size_t ndeps;
    dependency *deps;               /* owned */
    long deps_remaining;            /* atomic */
    int max_retries;
    bool retry_exceptions;
    double timeout;
    /* task lock: */
    rt_task_state state;
    unsigned attempts;
    bool cancel_requested;
    bool deps_started;   /* dependencies pinned and watched (set once, by task_start) */
    bool run_here;       /* run_job is called by the submitter, which waits (its thread) */
    double submitted_at, started_at, finished_at;
    rt_error *error;
    int cancel_flag;                /* atomic, read by functions */
    rt_call *async_call;            /* task lock: an asynchronous attempt in flight */
    bool in_cancel_hook;            /* task lock: a cancel is running fn->cancel on async_call */
    rt_call *completed_in_hook;     /* task lock: the attempt completed meanwhile; the
                                       canceller finishes it once the hook has returned */
    double began;                   /* monotonic start of the current attempt */
    double ready_at;                /* monotonic: queued to run (after a retry's delay) */
    double queued;                  /* the current attempt's time queued (one at a time) */
    rt_stats_entry *stats;          /* the function's /metrics entry (process lifetime) */
    unsigned jitter_seed;           /* for retry backoff jitter (one attempt at a time) */
    const char *request_id;         /* in tail: the HTTP request that submitted it, or "" */
    const char *traceparent;        /* in tail: its W3C traceparent, or "" */
    /* One allocation holds the record and what varies in size: the result refs, then the
     * id, the function's name, the task's name, the request id and the traceparent, each
     * NUL-terminated. Fixed arrays for the strings made every record 736 bytes, zeroed at
     * each submission; a 65-byte id field put a record of a batch's echo task in
     * jemalloc's 640-byte class (512 now: a sixth less fresh memory for a filling task
     * table to fault in). */
    char tail[];
};


struct rt_tasks {
    rt_store *store;
    rt_registry *registry;
    rt_scheduler *scheduler;
    rt_tasks_config config;
    rt_record_table *records;
    size_t finished_kept;           /* records of ended tasks in the table (atomic) */
    pthread_mutex_t forget_lock;    /* one forgetter at a time: two that read the same
                                       finished_kept would forget twice what is over */
    /* statistics (atomics) */
    size_t by_state[RT_TASK_STATE_COUNT];
    size_t pending;
    unsigned long long submitted, finished, failed, cancelled, retries;
    rt_histogram run_seconds;
};

static const char *const STATE_NAMES[RT_TASK_STATE_COUNT] = {
    "PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "RUNNING", "FINISHED", "FAILED",
    "CANCELLED"};

const char *rt_task_state_name(rt_task_state state)
{
    return (unsigned)state < RT_TASK_STATE_COUNT ? STATE_NAMES[state] : "FAILED";
}

int rt_task_state_parse(const char *name)
{
    for (int i = 0; name && i < RT_TASK_STATE_COUNT; i++)
        if (strcmp(name, STATE_NAMES[i]) == 0)
            return i;
    return -1;
}

static bool state_is_terminal(rt_task_state s)
{
    return s == RT_TASK_FINISHED || s == RT_TASK_FAILED || s == RT_TASK_CANCELLED;
}

static void stat_add(size_t *p, long delta)
{
    __atomic_add_fetch(p, (size_t)delta, __ATOMIC_RELAXED);
}

static void count_add(unsigned long long *p)
{
    __atomic_add_fetch(p, 1, __ATOMIC_RELAXED);
}

/* ---- records ------------------------------------------------------------------------ */

static void task_free(rt_task *t)
{
    json_decref(t->args);
    json_decref(t->kwargs);
    free(t->deps);
    rt_error_decref(t->error);
    rt_function_drop(t->fn);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static rt_task *task_incref(rt_task *t)
{
    __atomic_add_fetch(&t->rec.refs, 1, __ATOMIC_RELAXED);
    return t;
}

static void task_decref(rt_task *t)
{
    if (__atomic_sub_fetch(&t->rec.refs, 1, __ATOMIC_ACQ_REL) == 0)
        task_free(t);
}

static rt_task *task_of(rt_record *rec)
{
    return (rt_task *)(void *)((char *)rec - offsetof(rt_task, rec));
}

/* The task with this id, as a new reference, or NULL. */
static rt_task *task_find(rt_tasks *ts, const char *id)
{
    rt_record *rec = rt_record_table_find(ts->records, id);
    return rec ? task_of(rec) : NULL;
}

#define ENDED_STATES                                                                       \
    ((1u << RT_TASK_FINISHED) | (1u << RT_TASK_FAILED) | (1u << RT_TASK_CANCELLED))

/* Up to max_kept / PRUNE_FRACTION extra records are kept before a batch is forgotten:
 * about 100 at the default max_kept, so that the table lock is held for a short while
 * (forgetting reads cold records; a batch of 1,500 held it for milliseconds, and the
 * other HTTP thread waited on it). */
#define PRUNE_FRACTION 1024
#define PRUNE_MAX 2048 /* records forgotten per batch at most */

/* Forgets the oldest ended tasks until max_kept are left (after_end calls it once
 * max_kept / PRUNE_FRACTION more have ended). Called with no lock held. */
static void forget_old_records(rt_tasks *ts)
{
    rt_record *dropped[PRUNE_MAX];
    pthread_mutex_lock(&ts->forget_lock);
    size_t kept = __atomic_load_n(&ts->finished_kept, __ATOMIC_RELAXED);
    size_t n = 0;
    if (kept > ts->config.max_kept) {
        size_t want = kept - ts->config.max_kept;
        n = rt_record_table_take_oldest(ts->records, ENDED_STATES,
                                        want < PRUNE_MAX ? want : PRUNE_MAX, dropped);
        __atomic_sub_fetch(&ts->finished_kept, n, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&ts->forget_lock);
    for (size_t i = 0; i < n; i++) {
        stat_add(&ts->by_state[dropped[i]->state], -1);
        task_decref(task_of(dropped[i]));
    }
}

/* ---- state changes (task lock held) -------------------------------------------------- */

static void set_state_locked(rt_task *t, rt_task_state s)
{
    rt_tasks *ts = t->owner;
    stat_add(&ts->by_state[t->state], -1);
    stat_add(&ts->by_state[s], 1);
    __atomic_store_n(&t->state, s, __ATOMIC_RELEASE);
    rt_record_table_set_state(ts->records, &t->rec, (int)s);
}

static json_t *error_fields(const rt_task *t)
{
    return json_pack("{s:s,s:s}", "task_id", t->id, "function", t->function);
}

/* What a record keeps of the error that ended its task (new reference): a summary when
 * the error is large, since records outlive their result objects (max_kept of them) and
 * the store can evict those; the full error stays at the result ref while it lives. */
static rt_error *record_error(rt_error *err)
{
    rt_error *summary = rt_error_summary(err, RT_ERROR_SUMMARY_MAX);
    return summary ? summary : rt_error_incref(err);
}

/* Moves a task to a terminal state. Task lock held. Results are stored by the caller after
 * unlocking (store calls wake watchers, which may take other task locks). */
static void end_locked(rt_task *t, rt_task_state s, rt_error *err)
{
    rt_tasks *ts = t->owner;
    set_state_locked(t, s);
    t->finished_at = rt_clock_wall();
    t->error = record_error(err);
    stat_add(&ts->pending, -1);
    if (s == RT_TASK_FINISHED)
        count_add(&ts->finished);
    else if (s == RT_TASK_FAILED)
        count_add(&ts->failed);
    else
        count_add(&ts->cancelled);
}

/* After a task ended: unpin dependencies once, count the record as ended, prune. */
static void after_end(rt_task *t)
{
    rt_tasks *ts = t->owner;
    pthread_mutex_lock(&t->lock);
    bool pinned = t->deps_started;
    pthread_mutex_unlock(&t->lock);
    for (size_t i = 0; pinned && i < t->ndeps; i++)
        rt_store_unpin(ts->store, t->deps[i].ref);
    /* Records are forgotten in batches, so that the table lock is not taken for every
     * task once the table is full. */
    size_t kept = __atomic_add_fetch(&ts->finished_kept, 1, __ATOMIC_RELAXED);
    if (kept > ts->config.max_kept + ts->config.max_kept / PRUNE_FRACTION)
        forget_old_records(ts);
}

static void fail_results(rt_task *t, rt_error *err)
{
    for (unsigned i = 0; i < t->num_returns; i++)
        rt_store_fail(t->owner->store, t->result_refs[i], err);
}

/* Fails a task that has not run (or whose run failed for good) with err. No lock held. */
/* The "task failed" lifecycle line: the task ended FAILED with err after attempts attempts.
 * No lock held (the sink writes). */
static void event_failed(const rt_task *t, const rt_error *err, unsigned attempts)
{
    rt_stats_fail(t->stats, rt_error_kind_of(err)); /* the failures metric counts it too */
    json_t *fields = json_pack("{s:s,s:s,s:s,s:I}", "task_id", t->id, "function", t->function,
                               "error_kind", rt_error_kind_name(rt_error_kind_of(err)),
                               "attempts", (json_int_t)attempts);
    if (fields && t->request_id[0])
        json_object_set_new(fields, "request_id", json_string(t->request_id));
    if (fields && t->traceparent[0])
        json_object_set_new(fields, "traceparent", json_string(t->traceparent));
    rt_event_emit("warn", "task failed", fields);
}

static void fail_task(rt_task *t, rt_task_state s, rt_error *err)
{
    pthread_mutex_lock(&t->lock);
    if (state_is_terminal(t->state)) {
        pthread_mutex_unlock(&t->lock);
        return;
    }
    end_locked(t, s, err);
    unsigned attempts = t->attempts;
    pthread_mutex_unlock(&t->lock);
    fail_results(t, err);
    if (s == RT_TASK_FAILED)
        event_failed(t, err, attempts);
    after_end(t);
}

/* ---- running ------------------------------------------------------------------------ */

static void run_job(rt_job *job);
static void finish_attempt(rt_task *t, rt_call *call);
static void on_async_complete(rt_call *call, void *arg);

static void queue_task(rt_task *t)
{
    t->ready_at = rt_clock_monotonic(); /* before the job is visible to a worker */
    task_incref(t); /* the job's reference */
    rt_scheduler_submit(t->owner->scheduler, &t->job);
}

/* A TaskError about task t (new reference), its fields built only now: the success path
 * never pays for them. */
static rt_error *task_error(const rt_task *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static rt_error *task_error(const rt_task *t, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    json_t *fields = error_fields(t);
    rt_error *err = rt_error_new(RT_ERR_TASK_ERROR, message, fields, NULL);
    json_decref(fields);
    return err;
}

/* Stores a successful call's result(s). Returns NULL, or an error to fail the task with
 * (new reference) when the result does not fit num_returns or the store. */
static rt_error *store_results(rt_task *t, rt_call *call)
{
    rt_tasks *ts = t->owner;
    rt_error *err = NULL;
    if (t->num_returns > 1) {
        json_t *list = call->result_json;
        if (!json_is_array(list) || json_array_size(list) != t->num_returns) {
            err = task_error(t, 
                                "%s was declared with num_returns=%u but returned %s", t->function,
                                t->num_returns,
                                json_is_array(list) ? "a list of another length" : "no list");
            return err;
        }
    }
    for (unsigned i = 0; i < t->num_returns && !err; i++) {
        rt_buf *buf = NULL;
        if (call->result_buf && t->num_returns == 1) {
            buf = call->result_buf;
            call->result_buf = NULL;
        } else {
            json_t *value = t->num_returns > 1 ? json_array_get(call->result_json, i)
                                               : call->result_json;
            buf = rt_buf_from_json(value ? value : json_null());
        }
        if (!buf) {
            err = task_error(t,  "out of memory storing the result");
            break;
        }
        rt_status st = rt_store_resolve(ts->store, t->result_refs[i], buf);
        if (st == RT_EFULL)
            err = task_error(t, 
                                "the result of %zu bytes does not fit in the object store",
                                buf->size);
        if (st != RT_OK)
            rt_buf_decref(buf); /* RT_ELOST: the ref was freed meanwhile; nothing to do */
    }
    return err;
}

static double retry_delay(const rt_tasks *ts, unsigned attempt)
{
    double d = ts->config.retry_base_delay;
    for (unsigned i = 1; i < attempt && d < ts->config.retry_max_delay; i++)
        d *= 2;
    return d < ts->config.retry_max_delay ? d : ts->config.retry_max_delay;
}

static void run_job(rt_job *job)
{
    rt_task *t = (rt_task *)((char *)job - offsetof(rt_task, job));
    rt_tasks *ts = t->owner;

    pthread_mutex_lock(&t->lock);
    if (state_is_terminal(t->state)) { /* cancelled while queued */
        pthread_mutex_unlock(&t->lock);
        task_decref(t);
        return;
    }
    if (t->state == RT_TASK_PENDING_ARGS_AVAIL)
        set_state_locked(t, RT_TASK_PENDING_NODE_ASSIGNMENT);
    pthread_mutex_unlock(&t->lock);

    json_t *args = NULL, *kwargs = NULL;
    rt_error *cause = NULL;
    if (rt_args_resolve(ts->store, t->args, t->kwargs, &args, &kwargs, &cause) != RT_OK) {
        json_t *fields = error_fields(t);
        rt_error *err = rt_error_newf(RT_ERR_TASK_ERROR, fields, cause,
                                      "%s did not run: an argument holds an error, %s (see "
                                      "cause)",
                                      t->function, rt_error_kind_name(rt_error_kind_of(cause)));
        json_decref(fields);
        fail_task(t, RT_TASK_FAILED, err);
        rt_error_decref(err);
        rt_error_decref(cause);
        task_decref(t);
        return;
    }

    pthread_mutex_lock(&t->lock);
    if (state_is_terminal(t->state)) {
        pthread_mutex_unlock(&t->lock);
        json_decref(args);
        json_decref(kwargs);
        task_decref(t);
        return;
    }
    set_state_locked(t, RT_TASK_RUNNING);
    t->attempts++;
    if (t->attempts == 1)
        t->started_at = rt_clock_wall();
    unsigned attempt = t->attempts;
    pthread_mutex_unlock(&t->lock);

    rt_call *call = calloc(1, sizeof(*call));
    if (!call) {
        json_decref(args);
        json_decref(kwargs);
        rt_error *err = rt_error_newf(RT_ERR_TASK_ERROR, NULL, NULL, "out of memory");
        fail_task(t, RT_TASK_FAILED, err);
        rt_error_decref(err);
        task_decref(t);
        return;
    }
    call->task_id = t->id;
    call->function = t->function;
    call->attempt = attempt;
    call->args = args;
    call->kwargs = kwargs;
    call->cancel_flag = &t->cancel_flag;
    call->deadline = t->timeout > 0 ? rt_clock_monotonic() + t->timeout : 0;
    call->store = ts->store;
    call->request_id = t->request_id[0] ? t->request_id : NULL;
    call->traceparent = t->traceparent[0] ? t->traceparent : NULL;
    call->submitter_waits = t->run_here;
    t->run_here = false; /* a retry runs on a worker */
    t->began = rt_clock_monotonic();
    t->queued = t->ready_at > 0 ? t->began - t->ready_at : -1;
    if (t->fn->start) {
        /* Asynchronous (remote): no worker waits; finish_attempt runs on completion. The
         * job's reference is kept until then. */
        pthread_mutex_lock(&t->lock);
        t->async_call = call;
        pthread_mutex_unlock(&t->lock);
        t->fn->start(t->fn, call, on_async_complete, t);
        return;
    }
    t->fn->fn(call);
    finish_attempt(t, call);
}

/* An asynchronous attempt completed (any thread, maybe inside the function's own cancel
 * hook). While a cancel runs that hook the call must stay valid, so the canceller is left
 * to finish the attempt once the hook has returned. */
static void on_async_complete(rt_call *call, void *arg)
{
    rt_task *t = arg;
    pthread_mutex_lock(&t->lock);
    t->async_call = NULL;
    bool deferred = t->in_cancel_hook;
    if (deferred)
        t->completed_in_hook = call;
    pthread_mutex_unlock(&t->lock);
    if (!deferred)
        finish_attempt(t, call);
}

/* Retries allowed for this task: its own max_retries, or the function's default for system
 * failures, or Ray's default. */
static unsigned retries_allowed(const rt_task *t)
{
    if (t->max_retries >= 0)
        return (unsigned)t->max_retries;
    return t->fn->max_retries > 0 ? (unsigned)t->fn->max_retries : 3;
}

/* Decides what an attempt's outcome means: a result to store, a retry, or an error.
 * Consumes call (and the job's reference on t). */
static void finish_attempt(rt_task *t, rt_call *call)
{
    rt_tasks *ts = t->owner;
    unsigned attempt = call->attempt;
    double ran = rt_clock_monotonic() - t->began;
    rt_histogram_observe(&ts->run_seconds, ran);
    rt_stats_call(t->stats, ran, t->queued);
    bool timed_out = call->deadline > 0 && rt_clock_monotonic() >= call->deadline;
    json_decref(call->args);
    json_decref(call->kwargs);
    call->args = call->kwargs = NULL;

    rt_error *err = NULL;
    rt_task_state end = RT_TASK_FINISHED;
    bool failed = call->error || (!call->result_json && !call->result_buf);
    /* The members of an error's problem body; built only when there is an error. */
    json_t *fields = NULL;
    if (failed || __atomic_load_n(&t->cancel_flag, __ATOMIC_ACQUIRE)) {
        fields = error_fields(t);
        if (call->error_fields)
            json_object_update(fields, call->error_fields);
    }
    pthread_mutex_lock(&t->lock);
    /* System failures (an endpoint that cannot be reached) are retried as Ray retries a
     * dead worker; function errors only with retry_exceptions. Never after a cancel. */
    bool retry = failed && !t->cancel_requested && attempt <= retries_allowed(t) &&
                 (call->unavailable || t->retry_exceptions);
    if (t->cancel_requested) {
        end = RT_TASK_CANCELLED;
        if (!fields)
            fields = error_fields(t); /* the cancel came after the first look */
        err = rt_error_newf(RT_ERR_TASK_CANCELLED, fields, NULL,
                            "task %s was cancelled while running", t->id);
    } else if (retry) {
        set_state_locked(t, RT_TASK_PENDING_NODE_ASSIGNMENT);
        pthread_mutex_unlock(&t->lock);
        count_add(&ts->retries);
        json_decref(fields);
        double delay = retry_delay(ts, attempt);
        /* A system failure is likely shared by many tasks (an endpoint down): jitter
         * spreads their retries so they do not all knock at once. */
        if (call->unavailable)
            delay *= 0.5 + (double)(rand_r(&t->jitter_seed) % 1000) / 1000.0;
        json_t *ev = json_pack("{s:s,s:s,s:I,s:f,s:s,s:b}", "task_id", t->id, "function",
                               t->function, "attempt", (json_int_t)attempt, "delay_seconds",
                               delay, "error", call->error ? call->error : "no result",
                               "unavailable", call->unavailable);
        if (ev && t->request_id[0])
            json_object_set_new(ev, "request_id", json_string(t->request_id));
        if (ev && t->traceparent[0])
            json_object_set_new(ev, "traceparent", json_string(t->traceparent));
        rt_event_emit("info", "task retried", ev);
        rt_call_free_outputs(call);
        free(call);
        t->ready_at = rt_clock_monotonic() + delay; /* queued time starts after the delay */
        /* The job keeps its reference across the delay. */
        rt_scheduler_submit_after(ts->scheduler, &t->job, delay);
        return;
    } else if (failed) {
        end = RT_TASK_FAILED;
        if (timed_out && call->error && !call->unavailable)
            err = rt_error_newf(RT_ERR_TASK_ERROR, fields, call->error_cause,
                                "%s timed out after %g s", t->function, t->timeout);
        else
            err = rt_error_new(call->unavailable ? RT_ERR_WORKER_UNAVAILABLE : RT_ERR_TASK_ERROR,
                               call->error ? call->error : "the function returned no result",
                               fields, call->error_cause);
    }
    /* The record ends before its results are visible, so that a client holding a result
     * never reads a task that is still RUNNING, and a cancel from here on has lost. */
    end_locked(t, end, err);
    /* Ended: no attempt will read the arguments again. They go now, while they are in
     * the cache, instead of when the record is forgotten (max_kept records later, when
     * touching them was most of what forgetting a record cost). */
    json_t *ended_args = t->args, *ended_kwargs = t->kwargs;
    t->args = t->kwargs = NULL;
    pthread_mutex_unlock(&t->lock);
    json_decref(ended_args);
    json_decref(ended_kwargs);

    if (end == RT_TASK_FINISHED) {
        err = store_results(t, call); /* NULL on success */
        if (err) {
            /* The result could not be stored (the store is full): the task failed after
             * all. Rare; the record changes its mind once. */
            pthread_mutex_lock(&t->lock);
            set_state_locked(t, RT_TASK_FAILED);
            t->error = record_error(err);
            __atomic_sub_fetch(&ts->finished, 1, __ATOMIC_RELAXED);
            count_add(&ts->failed);
            pthread_mutex_unlock(&t->lock);
        }
    }
    if (err)
        fail_results(t, err); /* refs already resolved keep their value */
    if (err && end != RT_TASK_CANCELLED)
        event_failed(t, err, attempt);
    after_end(t);
    rt_error_decref(err);
    json_decref(fields);
    rt_call_free_outputs(call);
    free(call);
    task_decref(t);
}

/* ---- dependencies ------------------------------------------------------------------- */

static void dependency_done(rt_task *t)
{
    if (__atomic_sub_fetch(&t->deps_remaining, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    pthread_mutex_lock(&t->lock);
    if (t->state == RT_TASK_PENDING_ARGS_AVAIL)
        set_state_locked(t, RT_TASK_PENDING_NODE_ASSIGNMENT); /* queued from now on */
    pthread_mutex_unlock(&t->lock);
    queue_task(t);
}

static void on_dependency_resolved(rt_watcher *w, void *arg)
{
    dependency *d = arg;
    rt_task *t = d->task;
    (void)w;
    dependency_done(t);
    task_decref(t); /* the watcher's reference */
}

/* ---- submission ---------------------------------------------------------------------- */

static int valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > RT_TASK_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return 0;
    return 1;
}

rt_status rt_task_validate(rt_tasks *ts, const rt_task_spec *spec, char *err, size_t err_size)
{
    if (!spec->function || !rt_registry_find(ts->registry, spec->function)) {
        snprintf(err, err_size, "function '%.128s' does not exist",
                 spec->function ? spec->function : "");
        return RT_ENOTFOUND;
    }
    if (spec->num_returns < 1 || spec->num_returns > RT_TASK_NUM_RETURNS_MAX) {
        snprintf(err, err_size, "num_returns must be from 1 to %d", RT_TASK_NUM_RETURNS_MAX);
        return RT_EINVAL;
    }
    if (spec->max_retries < -1) {
        snprintf(err, err_size, "max_retries must be >= 0");
        return RT_EINVAL;
    }
    if (spec->timeout < 0) {
        snprintf(err, err_size, "timeout must be >= 0");
        return RT_EINVAL;
    }
    if (spec->name && !valid_name(spec->name)) {
        snprintf(err, err_size, "name must be 1 to %d bytes without control characters",
                 RT_TASK_NAME_MAX);
        return RT_EINVAL;
    }
    if (spec->args && !json_is_array(spec->args)) {
        snprintf(err, err_size, "args must be a list");
        return RT_EINVAL;
    }
    if (spec->kwargs && !json_is_object(spec->kwargs)) {
        snprintf(err, err_size, "kwargs must be an object");
        return RT_EINVAL;
    }
    /* Top-level ref arguments must name objects that exist (or existed). */
    if (rt_args_check(ts->store, spec->args, spec->kwargs, err, err_size) != RT_OK)
        return RT_EINVAL;
    return RT_OK;
}

/* Drops the references of specs that hand over their arguments (args_given) and did not
 * become tasks. */
static void release_given_args(const rt_task_spec *specs, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        if (specs[i].args_given) {
            json_decref(specs[i].args);
            json_decref(specs[i].kwargs);
        }
    }
}

/* Makes a task record with its result objects, not yet visible (new, one reference: the
 * table's). Consumes spec's arguments when it gives them (args_given), also when it
 * fails. */
static rt_task *task_new(rt_tasks *ts, const rt_task_spec *spec)
{
    /* Validated: names are at most RT_TASK_NAME_MAX bytes. */
    size_t function_len = strnlen(spec->function, RT_TASK_NAME_MAX);
    size_t name_len = spec->name ? strnlen(spec->name, RT_TASK_NAME_MAX) : 0;
    size_t request_id_len = spec->request_id ? strnlen(spec->request_id, RT_REQUEST_ID_MAX) : 0;
    size_t trace_len = spec->traceparent ? strnlen(spec->traceparent, RT_TRACEPARENT_SIZE - 1)
                                         : 0;
    size_t refs_size = (size_t)spec->num_returns * RT_REF_SIZE;
    char id[RT_REF_SIZE];
    rt_ref_generate(id, 't');
    size_t id_len = strlen(id);
    rt_task *t = malloc(sizeof(*t) + refs_size + id_len + function_len + name_len +
                        request_id_len + trace_len + 5);
    if (!t) {
        release_given_args(spec, 0, 1);
        return NULL;
    }
    memset(t, 0, sizeof(*t));
    char *tail = t->tail;
    t->result_refs = (char(*)[RT_REF_SIZE])tail; /* written by rt_store_create_pending */
    tail += refs_size;
    t->id = memcpy(tail, id, id_len + 1);
    tail += id_len + 1;
    t->function = memcpy(tail, spec->function, function_len);
    t->stats = rt_stats_entry_for(RT_STATS_FUNCTION, spec->function, NULL);
    tail[function_len] = '\0';
    tail += function_len + 1;
    t->name = tail;
    if (name_len)
        memcpy(tail, spec->name, name_len);
    tail[name_len] = '\0';
    tail += name_len + 1;
    t->request_id = tail;
    if (request_id_len)
        memcpy(tail, spec->request_id, request_id_len);
    tail[request_id_len] = '\0';
    tail += request_id_len + 1;
    t->traceparent = tail;
    if (trace_len)
        memcpy(tail, spec->traceparent, trace_len);
    tail[trace_len] = '\0';
    rt_mutex_init(&t->lock);
    t->rec.refs = 1; /* the table's */
    t->owner = ts;
    t->job.run = run_job;
    t->fn = rt_registry_get(ts->registry, spec->function);
    if (spec->args_given) {
        t->args = spec->args ? spec->args : json_array();
        t->kwargs = spec->kwargs ? spec->kwargs : json_object();
    } else {
        t->args = spec->args ? json_deep_copy(spec->args) : json_array();
        t->kwargs = spec->kwargs ? json_deep_copy(spec->kwargs) : json_object();
    }
    t->num_returns = spec->num_returns;
    t->max_retries = spec->max_retries;
    t->retry_exceptions = spec->retry_exceptions;
    t->timeout = spec->timeout;
    t->submitted_at = rt_clock_wall();
    t->jitter_seed = rt_hash_str(t->id);
    t->ndeps = rt_args_count_refs(t->args, t->kwargs);
    t->deps = t->ndeps ? calloc(t->ndeps, sizeof(*t->deps)) : NULL;
    if (!t->fn || !t->args || !t->kwargs || (t->ndeps && !t->deps)) {
        task_free(t);
        return NULL;
    }
    for (unsigned i = 0; i < spec->num_returns; i++) {
        if (rt_store_create_pending_ttl(ts->store, spec->result_ttl, t->result_refs[i]) !=
            RT_OK) {
            while (i > 0)
                rt_store_delete(ts->store, t->result_refs[--i]);
            task_free(t);
            return NULL;
        }
    }
    if (t->ndeps) {
        char(*refs)[RT_REF_SIZE] = malloc(t->ndeps * sizeof(*refs));
        if (!refs) {
            for (unsigned i = 0; i < spec->num_returns; i++)
                rt_store_delete(ts->store, t->result_refs[i]);
            task_free(t);
            return NULL;
        }
        rt_args_collect_refs(t->args, t->kwargs, refs);
        for (size_t d = 0; d < t->ndeps; d++)
            memcpy(t->deps[d].ref, refs[d], RT_REF_SIZE);
        free(refs);
    }
    t->state = t->ndeps ? RT_TASK_PENDING_ARGS_AVAIL : RT_TASK_PENDING_NODE_ASSIGNMENT;
    rt_record_init(&t->rec, t->id, (int)t->state);
    return t;
}

/* Starts a task that is in the table: pins and watches its dependencies. This happens
 * under the task lock, so a cancel that comes at the same time either finds them all
 * pinned and watched (and undoes that), or comes first and the task never pins anything.
 * Watchers may fire on other threads meanwhile; the guard in deps_remaining keeps them
 * from queueing the task before this is done. */
static void task_start(rt_tasks *ts, rt_task *t)
{
    long resolved = 0;
    pthread_mutex_lock(&t->lock);
    if (state_is_terminal(t->state)) { /* cancelled before it started */
        pthread_mutex_unlock(&t->lock);
        return;
    }
    t->deps_started = true;
    t->deps_remaining = (long)t->ndeps + 1;
    for (size_t i = 0; i < t->ndeps; i++) {
        dependency *d = &t->deps[i];
        d->task = t;
        d->watcher.fn = on_dependency_resolved;
        d->watcher.arg = d;
        rt_store_pin(ts->store, d->ref);
        task_incref(t);
        if (rt_store_watch(ts->store, d->ref, &d->watcher) != RT_OK) {
            d->watcher.fn = NULL; /* resolved or gone already */
            task_decref(t);       /* not the last: the table holds one */
            resolved++;
        }
    }
    pthread_mutex_unlock(&t->lock);
    while (resolved-- > 0)
        dependency_done(t);
    dependency_done(t); /* the guard */
}

rt_status rt_task_submit_many(rt_tasks *ts, const rt_task_spec *specs, size_t n,
                              char (*task_ids)[RT_REF_SIZE], char (*refs)[RT_REF_SIZE],
                              size_t *bad_index, char *err, size_t err_size)
{
    for (size_t i = 0; i < n; i++) {
        rt_status st = rt_task_validate(ts, &specs[i], err, err_size);
        if (st != RT_OK) {
            release_given_args(specs, 0, n);
            *bad_index = i;
            return st;
        }
    }
    /* Reserve room for n pending tasks first, so concurrent submissions cannot pass the
     * limit together; give it back on any failure below. */
    size_t pending = __atomic_add_fetch(&ts->pending, n, __ATOMIC_ACQ_REL);
    if (pending > ts->config.max_pending) {
        __atomic_sub_fetch(&ts->pending, n, __ATOMIC_ACQ_REL);
        release_given_args(specs, 0, n);
        *bad_index = 0;
        snprintf(err, err_size, "%zu tasks are pending; the limit is %zu", pending - n,
                 ts->config.max_pending);
        return RT_ELIMIT;
    }
    /* made[i] and its record recs[i], in one allocation */
    rt_task **made = malloc((n + 1) * (sizeof(*made) + sizeof(rt_record *)));
    if (!made) {
        __atomic_sub_fetch(&ts->pending, n, __ATOMIC_ACQ_REL);
        release_given_args(specs, 0, n);
        return RT_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        made[i] = task_new(ts, &specs[i]); /* consumes given arguments, also on failure */
        if (!made[i]) {
            for (size_t k = 0; k < i; k++) {
                for (unsigned r = 0; r < made[k]->num_returns; r++)
                    rt_store_delete(ts->store, made[k]->result_refs[r]);
                task_free(made[k]);
            }
            release_given_args(specs, i + 1, n);
            free(made);
            __atomic_sub_fetch(&ts->pending, n, __ATOMIC_ACQ_REL);
            *bad_index = i;
            snprintf(err, err_size, "out of memory");
            return RT_ENOMEM;
        }
    }
    rt_record **recs = (rt_record **)(made + n + 1);
    for (size_t i = 0; i < n; i++) {
        recs[i] = &made[i]->rec;
        stat_add(&ts->by_state[made[i]->state], 1);
    }
    rt_record_table_insert(ts->records, recs, n);
    __atomic_add_fetch(&ts->submitted, n, __ATOMIC_RELAXED);

    size_t r = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(task_ids[i], made[i]->id, strlen(made[i]->id) + 1);
        for (unsigned k = 0; k < made[i]->num_returns; k++)
            memcpy(refs[r++], made[i]->result_refs[k], RT_REF_SIZE);
    }
    /* Tasks without dependencies go to the queue in one go; the others wait. A quick
     * function whose submitter waits for it runs here: handing it to a worker and back
     * would cost more than running it (two thread switches per task). So does the start
     * of an asynchronous (remote) function: it only hands the call to the remote-call I/O
     * thread, and a worker in between would add a thread switch to every call. */
    rt_job *first = NULL, *last = NULL;
    size_t queued = 0;
    double now = rt_clock_monotonic();
    for (size_t i = 0; i < n; i++) {
        rt_task *t = made[i];
        t->ready_at = now; /* tasks with dependencies set it again once those are done */
        if (t->ndeps == 0 && specs[i].inline_ok && (t->fn->quick || t->fn->start)) {
            task_incref(t);
            t->run_here = true;
            run_job(&t->job);
        } else if (t->ndeps == 0) {
            task_incref(t);
            t->job.next = NULL;
            if (last)
                last->next = &t->job;
            else
                first = &t->job;
            last = &t->job;
            queued++;
        } else {
            task_start(ts, t);
        }
    }
    rt_scheduler_submit_list(ts->scheduler, first, last, queued);
    free(made);
    return RT_OK;
}

rt_status rt_task_submit(rt_tasks *ts, const rt_task_spec *spec, char task_id[RT_REF_SIZE],
                         char (*refs)[RT_REF_SIZE], char *err, size_t err_size)
{
    size_t bad;
    char(*ids)[RT_REF_SIZE] = (char(*)[RT_REF_SIZE])task_id;
    return rt_task_submit_many(ts, spec, 1, ids, refs, &bad, err, err_size);
}

/* ---- cancel, queries --------------------------------------------------------------- */

rt_status rt_task_cancel(rt_tasks *ts, const char *task_id, rt_task_state *state_out)
{
    rt_task *t = task_find(ts, task_id);
    if (!t)
        return RT_ENOTFOUND;

    rt_status st = RT_OK;
    rt_error *err = NULL;
    rt_call *hook_call = NULL;
    pthread_mutex_lock(&t->lock);
    if (state_is_terminal(t->state)) {
        st = RT_ESTATE;
    } else if (t->state == RT_TASK_RUNNING) {
        t->cancel_requested = true;
        __atomic_store_n(&t->cancel_flag, 1, __ATOMIC_RELEASE);
        /* The hook (e.g. abort the HTTP call in flight) runs after unlocking: it may
         * complete the attempt on this thread, and completion takes this lock. One
         * canceller runs it; a second one has nothing to add. */
        if (t->async_call && t->fn->cancel && !t->in_cancel_hook) {
            hook_call = t->async_call;
            t->in_cancel_hook = true;
        }
    } else {
        t->cancel_requested = true;
        __atomic_store_n(&t->cancel_flag, 1, __ATOMIC_RELEASE);
        json_t *fields = error_fields(t);
        err = rt_error_newf(RT_ERR_TASK_CANCELLED, fields, NULL,
                            "task %s was cancelled before it ran", t->id);
        json_decref(fields);
        end_locked(t, RT_TASK_CANCELLED, err);
    }
    *state_out = t->state;
    pthread_mutex_unlock(&t->lock);

    if (hook_call) {
        t->fn->cancel(t->fn, hook_call);
        pthread_mutex_lock(&t->lock);
        t->in_cancel_hook = false;
        rt_call *completed = t->completed_in_hook;
        t->completed_in_hook = NULL;
        pthread_mutex_unlock(&t->lock);
        if (completed) {
            finish_attempt(t, completed); /* consumes the job's reference, not ours */
            *state_out = __atomic_load_n(&t->state, __ATOMIC_ACQUIRE);
        }
    }
    if (err) {
        /* Stop watching dependencies; a watcher already firing just finds it ended. */
        for (size_t i = 0; i < t->ndeps; i++)
            if (t->deps[i].watcher.fn && rt_store_unwatch(ts->store, &t->deps[i].watcher))
                task_decref(t);
        fail_results(t, err);
        after_end(t);
        rt_error_decref(err);
    }
    task_decref(t);
    return st;
}

size_t rt_tasks_cancel_all(rt_tasks *ts)
{
    size_t cancelled = 0;
    rt_record *page[256];
    uint64_t cursor = 0;
    do {
        size_t n = rt_record_table_page(ts->records, cursor, RT_RECORD_ALL_STATES & ~ENDED_STATES,
                                        page, 256, &cursor);
        for (size_t i = 0; i < n; i++) {
            rt_task_state state;
            if (rt_task_cancel(ts, task_of(page[i])->id, &state) == RT_OK)
                cancelled++;
            task_decref(task_of(page[i]));
        }
    } while (cursor);
    return cancelled;
}

static void fill_info(rt_task *t, rt_task_info *info)
{
    memset(info, 0, sizeof(*info));
    memcpy(info->task_id, t->id, strlen(t->id) + 1);
    snprintf(info->function, sizeof(info->function), "%s", t->function);
    snprintf(info->name, sizeof(info->name), "%s", t->name);
    info->num_returns = t->num_returns;
    info->seq = t->rec.seq;
    info->refs = malloc(t->num_returns * sizeof(*info->refs));
    if (info->refs)
        memcpy(info->refs, t->result_refs, t->num_returns * sizeof(*info->refs));
    else
        info->num_returns = 0;
    pthread_mutex_lock(&t->lock);
    info->state = t->state;
    info->attempts = t->attempts;
    info->submitted_at = t->submitted_at;
    info->started_at = t->started_at;
    info->finished_at = t->finished_at;
    info->cancel_requested = t->cancel_requested;
    info->error = rt_error_incref(t->error);
    pthread_mutex_unlock(&t->lock);
}

void rt_task_info_release(rt_task_info *info)
{
    if (!info)
        return;
    free(info->refs);
    rt_error_decref(info->error);
    info->refs = NULL;
    info->error = NULL;
}

rt_status rt_task_get(rt_tasks *ts, const char *task_id, rt_task_info *info)
{
    rt_task *t = task_find(ts, task_id);
    if (!t)
        return RT_ENOTFOUND;
    fill_info(t, info);
    task_decref(t);
    return RT_OK;
}

/* Records a filtered listing looks at per page at most, beyond the page itself: a filter
 * the record table has no index for (the function) skips records, and a page must not
 * cost the whole history. A page may then hold fewer entries than asked for, with a
 * cursor to go on from. */
#define LIST_SCAN_MAX 4096

size_t rt_task_list(rt_tasks *ts, uint64_t after_seq, int state, const char *function,
                    size_t limit, rt_task_info *infos, uint64_t *next_seq)
{
    size_t n = 0, scanned = 0;
    *next_seq = 0;
    if (limit == 0 || state >= RT_TASK_STATE_COUNT)
        return 0;
    unsigned mask = state >= 0 ? 1u << state : RT_RECORD_ALL_STATES;
    enum { BATCH = 64 };
    rt_record *page[BATCH];
    uint64_t cursor = after_seq; /* the last record looked at */
    for (;;) {
        /* one more than the page needs, to know whether another follows */
        size_t want = function || limit - n + 1 > BATCH ? BATCH : limit - n + 1;
        uint64_t more;
        size_t got = rt_record_table_page(ts->records, cursor, mask, page, want, &more);
        int full = 0;
        for (size_t i = 0; i < got; i++) {
            rt_task *t = task_of(page[i]);
            int match = !function || strcmp(function, t->function) == 0;
            if (!full && match && n == limit) {
                *next_seq = infos[n - 1].seq; /* another one follows the page */
                full = 1;
            } else if (!full) {
                scanned++;
                cursor = t->rec.seq;
                if (match)
                    fill_info(t, &infos[n++]);
            }
            task_decref(t);
        }
        if (full || !more)
            return n;
        if (scanned >= LIST_SCAN_MAX + limit) {
            *next_seq = cursor; /* looked at enough for one page: go on from here */
            return n;
        }
    }
}

uint64_t rt__tasks_list_visits(rt_tasks *ts)
{
    return rt_record_table_visits(ts->records);
}

void rt_tasks_get_stats(rt_tasks *ts, rt_tasks_stats *out)
{
    for (int i = 0; i < RT_TASK_STATE_COUNT; i++)
        out->by_state[i] = __atomic_load_n(&ts->by_state[i], __ATOMIC_RELAXED);
    out->pending = __atomic_load_n(&ts->pending, __ATOMIC_RELAXED);
    out->submitted = __atomic_load_n(&ts->submitted, __ATOMIC_RELAXED);
    out->finished = __atomic_load_n(&ts->finished, __ATOMIC_RELAXED);
    out->failed = __atomic_load_n(&ts->failed, __ATOMIC_RELAXED);
    out->cancelled = __atomic_load_n(&ts->cancelled, __ATOMIC_RELAXED);
    out->retries = __atomic_load_n(&ts->retries, __ATOMIC_RELAXED);
    rt_histogram_read(&ts->run_seconds, &out->run_seconds);
}

/* ---- life --------------------------------------------------------------------------- */

rt_tasks *rt_tasks_new(rt_store *store, rt_registry *registry, rt_scheduler *scheduler,
                       const rt_tasks_config *config)
{
    rt_tasks *ts = calloc(1, sizeof(*ts));
    if (!ts)
        return NULL;
    ts->store = store;
    ts->registry = registry;
    ts->scheduler = scheduler;
    ts->config = *config;
    if (!ts->config.max_pending)
        ts->config.max_pending = 1000000;
    if (!ts->config.max_kept)
        ts->config.max_kept = 100000;
    if (ts->config.retry_base_delay <= 0)
        ts->config.retry_base_delay = 0.05;
    if (ts->config.retry_max_delay <= 0)
        ts->config.retry_max_delay = 5;
    ts->records = rt_record_table_new(RT_TASK_STATE_COUNT);
    if (!ts->records) {
        free(ts);
        return NULL;
    }
    pthread_mutex_init(&ts->forget_lock, NULL);
    return ts;
}

void rt_tasks_free(rt_tasks *ts)
{
    if (!ts)
        return;
    rt_record *recs[256];
    size_t n;
    while ((n = rt_record_table_take_oldest(ts->records, RT_RECORD_ALL_STATES, 256, recs))) {
        for (size_t i = 0; i < n; i++) {
            rt_task *t = task_of(recs[i]);
            /* Watchers still registered hold references to tasks that never got their
             * arguments; take them back so every record is freed. */
            for (size_t k = 0; k < t->ndeps; k++)
                if (t->deps[k].watcher.fn && rt_store_unwatch(ts->store, &t->deps[k].watcher))
                    task_decref(t);
            task_decref(t);
        }
    }
    rt_record_table_free(ts->records);
    pthread_mutex_destroy(&ts->forget_lock);
    free(ts);
}
