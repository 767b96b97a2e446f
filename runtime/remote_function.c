/* Remote functions: the calling convention over HTTP and the per-function concurrency
 * limit.
 *
 * DESIGN: each function has a mutex guarding its in-flight count and a FIFO of attempts
 * waiting for a slot. An attempt is posted to rt_remote; its completion (on the I/O thread)
 * frees a slot, posts the next waiting attempt, and completes the call. Lock order:
 * function lock -> rt_remote's lock; the I/O thread never holds rt_remote's lock while it
 * calls back, so completion may take the function lock. No completion (the task's
 * callback) runs with the function lock held: a cancel may complete a waiting attempt on
 * its own thread, and a refused post (the server stopping) completes where it was made.
 *
 * QUICK functions (spec.quick): an attempt whose submitter waits for it (Prefer: wait) and
 * that gets a slot at once is sent by the submitting thread, which waits QUICK_WAIT at
 * most for the answer on a kept-alive connection (rt_remote_send): no thread hand-off and
 * two thread wake-ups per call instead of four. Every other rule is the normal path's:
 * the same slot, the same on_done (counting, outputs, the next waiting attempt), the same
 * cancel (a->rc is set under the lock before the call is sent). An answer that does not
 * come in QUICK_WAIT is read on by the lean client's I/O thread (the call completes as any
 * other), and the function's calls take the normal path for a while (QUICK_BACKOFF_MAX):
 * a slow or dead endpoint costs the HTTP threads at most QUICK_WAIT per QUICK_BACKOFF_MAX
 * once its misses in a row have grown the pause to that. */
#include "runtime/remote_function.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/clock.h"
#include "runtime/error.h"
#include "runtime/events.h"
#include "runtime/stats.h"

#define ERROR_BODY_MAX 4096

/* How long the submitting thread waits for a quick function's answer before it leaves the
 * call to the lean client's I/O thread. The thread is an HTTP thread serving other
 * connections meanwhile, so this caps what a slow endpoint adds to their latency: 2 ms is
 * about ten times the example Python worker's own time per call on this project's
 * machines (118-375 us mean, BENCHMARKS.md j), and well under the 10 ms of a
 * scheduler tick. */
#define QUICK_WAIT 0.002
/* After a wait in vain, the function's calls take the normal path for a while: QUICK_WAIT
 * after one miss, twice as long after each further miss in a row, QUICK_BACKOFF_MAX at
 * most. An endpoint that is slow for good then costs an HTTP thread one wait per
 * QUICK_BACKOFF_MAX (2%), while one that missed once because the machine was busy is
 * called quick again within milliseconds. */
#define QUICK_BACKOFF_MAX 0.1

static size_t g_alive; /* atomic: rt_remote_function_count */

typedef struct attempt attempt;

typedef struct remote_impl {
    rt_remote *remote;
    pthread_mutex_t lock;
    unsigned in_flight;
    attempt *waiting_head, *waiting_tail;
    double quick_off_until; /* lock: monotonic; quick calls take the normal path until */
    unsigned quick_misses;  /* lock (and atomic, for a look without it): misses in a row */
    unsigned long long quick_here, quick_missed; /* atomic: rt_remote_function_quick_counts */
    char *name, *url, *description;
} remote_impl;

struct attempt {
    attempt *next; /* waiting FIFO */
    rt_call *call;
    rt_call_complete_fn complete;
    void *arg;
    remote_impl *impl;
    rt_remote_call *rc; /* impl lock; NULL while waiting */
    char *payload;
    size_t payload_len;
    double timeout;
};

/* ---- answers -> call outputs ------------------------------------------------------ */

static int is_json(const char *ct)
{
    return ct && rt_content_type_is_json(ct);
}

/* An endpoint's problem+json body as an error (new reference), or NULL. */
static rt_error *problem_as_error(const rt_remote_result *r)
{
    if (!r->content_type || !strstr(r->content_type, "problem+json"))
        return NULL;
    json_t *p = json_loadb(r->body, r->body_len, 0, NULL);
    if (!json_is_object(p)) {
        json_decref(p);
        return NULL;
    }
    const char *detail = json_string_value(json_object_get(p, "detail"));
    const char *title = json_string_value(json_object_get(p, "title"));
    json_t *fields = json_deep_copy(p);
    json_object_del(fields, "type");
    json_object_del(fields, "title");
    json_object_del(fields, "status");
    json_object_del(fields, "detail");
    json_object_del(fields, "cause");
    if (title)
        json_object_set_new(fields, "remote_title", json_string(title));
    json_object_set_new(fields, "remote_status", json_integer(r->status));
    rt_error *err = rt_error_new(RT_ERR_TASK_ERROR, detail ? detail : title ? title : "remote error",
                                 fields, NULL);
    json_decref(fields);
    json_decref(p);
    return err;
}

void rt_remote_count(const char *name, const rt_remote_result *r)
{
    rt_stats_remote_outcome o = RT_STATS_REMOTE_OK;
    switch (r->outcome) {
    case RT_REMOTE_ANSWERED:
        o = r->status >= 200 && r->status < 300   ? RT_STATS_REMOTE_OK
            : r->status >= 400 && r->status < 500 ? RT_STATS_REMOTE_HTTP_4XX
                                                  : RT_STATS_REMOTE_HTTP_5XX;
        break;
    case RT_REMOTE_UNREACHABLE: o = RT_STATS_REMOTE_UNREACHABLE; break;
    case RT_REMOTE_TIMED_OUT: o = RT_STATS_REMOTE_TIMEOUT; break;
    case RT_REMOTE_TOO_LARGE: o = RT_STATS_REMOTE_TOO_LARGE; break;
    case RT_REMOTE_CANCELLED: o = RT_STATS_REMOTE_CANCELLED; break;
    }
    rt_stats_remote(rt_stats_entry_for(RT_STATS_REMOTE, name, NULL), o, r->seconds);
}

void rt_remote_result_to_call(const rt_remote_result *r, rt_call *call, const char *what,
                              const char *url)
{
    switch (r->outcome) {
    case RT_REMOTE_ANSWERED:
        /* 503 is the endpoint saying "not now, retry me": unavailable, as a refused
         * connection is, with its problem body kept as the cause (below). */
        rt_event_endpoint(url, what, r->status != 503, "the endpoint answered 503");
        break;
    case RT_REMOTE_UNREACHABLE:
        rt_event_endpoint(url, what, false, r->error);
        /* fall through */
    case RT_REMOTE_TIMED_OUT:
        rt_call_fail(call, "%s: %s could not be reached: %s", what, url, r->error);
        call->unavailable = true;
        return;
    case RT_REMOTE_TOO_LARGE:
        rt_call_fail(call, "%s: %s", what, r->error);
        return;
    case RT_REMOTE_CANCELLED:
        rt_call_fail(call, "%s: cancelled", what);
        return;
    }
    if (r->status >= 200 && r->status < 300) {
        if (is_json(r->content_type)) {
            json_t *v = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, NULL);
            if (v) {
                rt_call_return_json(call, v);
                return;
            }
        }
        rt_buf *buf = rt_buf_from(r->body, r->body_len, r->content_type);
        if (!buf)
            buf = rt_buf_from(r->body, r->body_len, NULL); /* type too long or not header text */
        rt_call_return_bytes(call, buf);
        return;
    }
    rt_call_fail(call, "%s: the endpoint answered %ld", what, r->status);
    call->unavailable = r->status == 503;
    call->error_fields = json_pack("{s:I}", "remote_status", (json_int_t)r->status);
    call->error_cause = problem_as_error(r);
    if (!call->error_cause && r->body_len) {
        size_t n = r->body_len < ERROR_BODY_MAX ? r->body_len : ERROR_BODY_MAX;
        json_t *body = json_stringn(r->body, n);
        if (body)
            json_object_set_new(call->error_fields, "remote_body", body);
    }
}

/* ---- attempts ------------------------------------------------------------------------ */

static void post(attempt *a);

static void attempt_free(attempt *a)
{
    free(a->payload);
    free(a);
}

static void on_done(rt_remote_call *rc, const rt_remote_result *result, void *arg)
{
    attempt *a = arg;
    remote_impl *impl = a->impl;
    pthread_mutex_lock(&impl->lock);
    a->rc = NULL;
    a->call->async_state = NULL;
    attempt *next = impl->waiting_head;
    if (next) {
        impl->waiting_head = next->next;
        if (!impl->waiting_head)
            impl->waiting_tail = NULL;
    } else {
        impl->in_flight--;
    }
    pthread_mutex_unlock(&impl->lock);
    rt_remote_count(impl->name, result);
    rt_remote_result_to_call(result, a->call, impl->name, impl->url);
    rt_remote_call_free(rc);
    a->complete(a->call, a->arg);
    attempt_free(a);
    if (next)
        post(next); /* takes over the slot */
}

/* True once the attempt's task was cancelled (its deadline is the endpoint's business). */
static bool cancel_asked(const rt_call *call)
{
    return call->cancel_flag && __atomic_load_n(call->cancel_flag, __ATOMIC_ACQUIRE);
}

/* Posts an attempt that holds a slot. rt_remote_post never calls back from inside, so the
 * lock may be held across it: a->rc is set before on_done or a cancel can look at it. An
 * attempt cancelled meanwhile, or refused (the server is stopping), is completed here and
 * its slot goes to the next waiting attempt, in a loop rather than recursion (a refused
 * FIFO may be long). */
static void post(attempt *a)
{
    remote_impl *impl = a->impl;
    while (a) {
        const char *why = NULL;
        attempt *next = NULL;
        pthread_mutex_lock(&impl->lock);
        if (cancel_asked(a->call)) {
            why = "cancelled before it was sent";
        } else {
            a->rc = rt_remote_post(impl->remote, impl->url, a->payload, a->payload_len,
                                   a->timeout, a->call->request_id, a->call->traceparent, on_done,
                                   a);
            if (!a->rc)
                why = rt_remote_stopped(impl->remote) ? "not sent: the server is stopping"
                                                      : "out of memory posting the call";
        }
        if (why) {
            a->call->async_state = NULL;
            next = impl->waiting_head;
            if (next) {
                impl->waiting_head = next->next;
                if (!impl->waiting_head)
                    impl->waiting_tail = NULL;
            } else {
                impl->in_flight--;
            }
        }
        pthread_mutex_unlock(&impl->lock);
        if (!why)
            return; /* on_done completes it */
        rt_call_fail(a->call, "%s: %s", impl->name, why);
        a->complete(a->call, a->arg);
        attempt_free(a);
        a = next; /* takes over the slot */
    }
}

/* Sends an attempt that holds a slot from this thread, which waits for the answer (see
 * QUICK in the DESIGN note). Falls back to post() when the call cannot be made. */
static void post_quick(const rt_function *fn, attempt *a)
{
    remote_impl *impl = a->impl;
    rt_remote_call *rc = rt_remote_prepare(impl->remote, impl->url, a->payload, a->payload_len,
                                           a->timeout, a->call->request_id,
                                           a->call->traceparent, on_done, a);
    if (!rc) {
        post(a);
        return;
    }
    double wait = a->timeout < QUICK_WAIT ? a->timeout : QUICK_WAIT;
    /* Named before it can complete, so that a cancel finds it; a cancel that came first
     * left only its flag. */
    pthread_mutex_lock(&impl->lock);
    a->rc = rc;
    if (cancel_asked(a->call))
        rt_remote_cancel(impl->remote, rc); /* it ends unsent in rt_remote_send */
    pthread_mutex_unlock(&impl->lock);
    /* From here a (and maybe fn's last other holder) may be gone once the call completes. */
    rt_function_hold(fn);
    rt_remote_waited how = rt_remote_send(impl->remote, rc, wait);
    if (how == RT_REMOTE_ANSWERED_HERE) {
        __atomic_add_fetch(&impl->quick_here, 1, __ATOMIC_RELAXED);
        if (__atomic_load_n(&impl->quick_misses, __ATOMIC_RELAXED)) {
            pthread_mutex_lock(&impl->lock);
            __atomic_store_n(&impl->quick_misses, 0, __ATOMIC_RELAXED);
            pthread_mutex_unlock(&impl->lock);
        }
    } else if (how == RT_REMOTE_WAIT_MISSED) {
        __atomic_add_fetch(&impl->quick_missed, 1, __ATOMIC_RELAXED);
        pthread_mutex_lock(&impl->lock);
        double off = QUICK_WAIT;
        unsigned misses = __atomic_load_n(&impl->quick_misses, __ATOMIC_RELAXED);
        for (unsigned i = 0; i < misses && off < QUICK_BACKOFF_MAX; i++)
            off *= 2;
        __atomic_store_n(&impl->quick_misses, misses + 1, __ATOMIC_RELAXED);
        impl->quick_off_until =
            rt_clock_monotonic() + (off < QUICK_BACKOFF_MAX ? off : QUICK_BACKOFF_MAX);
        pthread_mutex_unlock(&impl->lock);
    }
    rt_function_drop(fn);
}

static void remote_start(const rt_function *fn, rt_call *call, rt_call_complete_fn complete,
                         void *arg)
{
    remote_impl *impl = fn->impl;
    attempt *a = calloc(1, sizeof(*a));
    json_t *body = json_pack("{s:s,s:s,s:i,s:O,s:O}", "task_id", call->task_id ? call->task_id : "",
                             "function", fn->name, "attempt", (int)call->attempt, "args",
                             call->args ? call->args : json_array(), "kwargs",
                             call->kwargs ? call->kwargs : json_object());
    char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!a || !payload) {
        free(a);
        free(payload);
        rt_call_fail(call, "%s: out of memory", fn->name);
        complete(call, arg);
        return;
    }
    a->call = call;
    a->complete = complete;
    a->arg = arg;
    a->impl = impl;
    a->payload = payload;
    a->payload_len = strlen(payload);
    a->timeout = fn->timeout;
    if (call->deadline > 0) {
        /* The task's own timeout, when shorter, bounds the attempt. */
        double left = call->deadline - rt_clock_monotonic();
        if (left < a->timeout)
            a->timeout = left > 0.001 ? left : 0.001;
    }

    /* A cancel sets the flag before it calls remote_cancel, which looks under this lock:
     * either it finds the attempt here, or the attempt sees the flag. */
    pthread_mutex_lock(&impl->lock);
    bool cancelled = cancel_asked(call);
    bool queued = !cancelled && fn->max_concurrency && impl->in_flight >= fn->max_concurrency;
    bool quick = !cancelled && !queued && fn->quick && call->submitter_waits &&
                 (impl->quick_off_until == 0 || rt_clock_monotonic() >= impl->quick_off_until);
    if (!cancelled)
        call->async_state = a;
    if (queued) {
        if (impl->waiting_tail)
            impl->waiting_tail->next = a;
        else
            impl->waiting_head = a;
        impl->waiting_tail = a;
    } else if (!cancelled) {
        impl->in_flight++;
    }
    pthread_mutex_unlock(&impl->lock);
    if (cancelled) {
        rt_call_fail(call, "%s: cancelled before it was sent", fn->name);
        complete(call, arg);
        attempt_free(a);
    } else if (quick) {
        post_quick(fn, a);
    } else if (!queued) {
        post(a);
    }
}

void rt_remote_function_quick_counts(const rt_function *fn, unsigned long long *here,
                                     unsigned long long *missed)
{
    const remote_impl *impl = fn->impl;
    *here = __atomic_load_n(&impl->quick_here, __ATOMIC_RELAXED);
    *missed = __atomic_load_n(&impl->quick_missed, __ATOMIC_RELAXED);
}

size_t rt_remote_function_count(void)
{
    return __atomic_load_n(&g_alive, __ATOMIC_RELAXED);
}

static void remote_cancel(const rt_function *fn, rt_call *call)
{
    remote_impl *impl = fn->impl;
    attempt *dequeued = NULL;
    pthread_mutex_lock(&impl->lock);
    attempt *a = call->async_state;
    if (a && a->rc) {
        rt_remote_cancel(impl->remote, a->rc); /* on_done completes it */
    } else if (a) {
        /* Still waiting for a slot: take it out of the FIFO and complete it here. */
        attempt **pp = &impl->waiting_head;
        attempt *prev = NULL;
        while (*pp && *pp != a) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp) {
            *pp = a->next;
            if (impl->waiting_tail == a)
                impl->waiting_tail = prev;
            call->async_state = NULL;
            dequeued = a;
        }
    }
    pthread_mutex_unlock(&impl->lock);
    if (dequeued) {
        rt_call_fail(call, "%s: cancelled before it was sent", fn->name);
        dequeued->complete(call, dequeued->arg);
        attempt_free(dequeued);
    }
}

/* ---- life --------------------------------------------------------------------------- */

rt_function *rt_remote_function_new(rt_remote *remote, const rt_remote_function_spec *spec)
{
    rt_function *fn = calloc(1, sizeof(*fn));
    remote_impl *impl = calloc(1, sizeof(*impl));
    if (!fn || !impl) {
        free(fn);
        free(impl);
        return NULL;
    }
    impl->remote = remote;
    pthread_mutex_init(&impl->lock, NULL);
    impl->name = strdup(spec->name);
    impl->url = strdup(spec->url);
    if (asprintf(&impl->description, "Remote function at %s.", spec->url) < 0)
        impl->description = NULL;
    if (!impl->name || !impl->url || !impl->description) {
        fn->impl = impl;
        rt_remote_function_release(fn);
        return NULL;
    }
    fn->name = impl->name;
    fn->kind = RT_FUNCTION_REMOTE;
    fn->description = impl->description;
    fn->args_doc = "[any, ...]: sent as JSON; binary objects as {\"$bytes\", \"content_type\"}";
    fn->returns_doc = "the endpoint's 2xx body, with its Content-Type";
    fn->start = remote_start;
    fn->cancel = remote_cancel;
    fn->max_retries = spec->max_retries;
    fn->url = impl->url;
    fn->timeout = spec->timeout > 0 ? spec->timeout : 60;
    fn->max_concurrency = spec->max_concurrency;
    /* Quick without the lean client would only add a check per call: not quick then. */
    fn->quick = spec->quick && rt_remote_enable_quick(remote) == 0;
    fn->impl = impl;
    __atomic_add_fetch(&g_alive, 1, __ATOMIC_RELAXED);
    return fn;
}

void rt_remote_function_release(rt_function *fn)
{
    if (!fn)
        return;
    remote_impl *impl = fn->impl;
    if (fn->start) /* made whole by rt_remote_function_new, so counted */
        __atomic_sub_fetch(&g_alive, 1, __ATOMIC_RELAXED);
    if (impl) {
        pthread_mutex_destroy(&impl->lock);
        free(impl->name);
        free(impl->url);
        free(impl->description);
        free(impl);
    }
    free(fn);
}
