/* Unit tests for runtime/actor.c: the actor system with a real store and a 2-worker
 * scheduler, driven through the public API only (no HTTP). Test classes defined here:
 *   Recorder  an append-only log of (submitter, seq); rec() appends and returns the length,
 *             detects re-entrancy with an atomic counter in the state; fatal() breaks it.
 *   Gate      block() waits until the test opens a gate; ping() answers at once.
 *   BadInit   a constructor that always fails.
 *   Once      counts constructor runs (get_if_exists races).
 * Results are awaited with rt_store_watch and a condition variable; "nothing else ran" is
 * proven with a scheduler drain (a barrier job on every worker), never with sleeps. */
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "runtime/actor.h"
#include "runtime/buffer.h"
#include "runtime/error.h"
#include "runtime/function.h"
#include "runtime/object_store.h"
#include "runtime/scheduler.h"

#define WORKERS 2
#define WAIT_SECONDS 120 /* generous: sanitizer builds are slow; a hang fails, not blocks */

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

static rt_store *store;         /* per test */
static rt_scheduler *scheduler; /* per test */
static rt_actors *actors;       /* per test */

/* ---- waiting for refs --------------------------------------------------------------- */

static pthread_mutex_t wait_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wait_cond = PTHREAD_COND_INITIALIZER;

static struct timespec deadline_in(int seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += seconds;
    return ts;
}

/* A group of watchers; callbacks count under wait_lock, so once the waiter has seen the
 * count complete (under the lock) no callback touches the batch any more. */
typedef struct batch {
    size_t done;
} batch;

typedef struct batch_watcher {
    rt_watcher w;
} batch_watcher;

static void on_batch_resolved(rt_watcher *w, void *arg)
{
    batch *b = arg;
    (void)w;
    pthread_mutex_lock(&wait_lock);
    b->done++;
    pthread_cond_broadcast(&wait_cond);
    pthread_mutex_unlock(&wait_lock);
}

/* Waits until every ref in refs (n of them, RT_REF_SIZE apart) has left PENDING. */
static void wait_refs(const char (*refs)[RT_REF_SIZE], size_t n)
{
    batch b = {0};
    batch_watcher *ws = calloc(n ? n : 1, sizeof(*ws));
    assert_non_null(ws);
    size_t already = 0;
    for (size_t i = 0; i < n; i++) {
        ws[i].w.fn = on_batch_resolved;
        ws[i].w.arg = &b;
        int r = rt_store_watch(store, refs[i], &ws[i].w);
        if (r == 1)
            already++;
        else if (r != RT_OK)
            fail_msg("rt_store_watch(%s) = %d", refs[i], r);
    }
    struct timespec dl = deadline_in(WAIT_SECONDS);
    int timed_out = 0;
    pthread_mutex_lock(&wait_lock);
    while (b.done + already < n && !timed_out)
        timed_out = pthread_cond_timedwait(&wait_cond, &wait_lock, &dl) != 0;
    size_t done = b.done;
    pthread_mutex_unlock(&wait_lock);
    if (timed_out && done + already < n) {
        /* Leak ws and never return into freed memory: watchers may still fire. */
        fail_msg("timed out: %zu of %zu refs resolved", done + already, n);
    }
    free(ws);
}

static void wait_ref(const char *ref)
{
    char one[1][RT_REF_SIZE];
    snprintf(one[0], RT_REF_SIZE, "%s", ref);
    wait_refs((const char(*)[RT_REF_SIZE])one, 1);
}

static rt_object_state ref_state(const char *ref)
{
    rt_object_view v;
    rt_status st = rt_store_peek(store, ref, &v);
    rt_object_state s = v.state;
    rt_object_view_release(&v);
    if (st != RT_OK && st != RT_ELOST)
        fail_msg("peek %s: %s", ref, rt_status_name(st));
    return s;
}

/* The JSON value of a READY ref (new reference). */
static json_t *ref_json(const char *ref)
{
    rt_object_view v;
    rt_status st = rt_store_peek(store, ref, &v);
    if (st != RT_OK || v.state != RT_OBJ_READY) {
        const char *msg = v.error ? rt_error_message(v.error) : "";
        char copy[256];
        snprintf(copy, sizeof(copy), "%s", msg);
        rt_object_view_release(&v);
        fail_msg("ref %s is not READY (status %s, state %d): %s", ref, rt_status_name(st),
                 (int)v.state, copy);
    }
    json_t *j = json_loadb(v.buf->data, v.buf->size, JSON_DECODE_ANY, NULL);
    rt_object_view_release(&v);
    assert_non_null(j);
    return j;
}

static json_int_t ref_int(const char *ref)
{
    json_t *j = ref_json(ref);
    if (!json_is_integer(j))
        fail_msg("ref %s is not an integer", ref);
    json_int_t v = json_integer_value(j);
    json_decref(j);
    return v;
}

/* The error of an ERROR ref (new reference). */
static rt_error *ref_error(const char *ref)
{
    rt_object_view v;
    rt_status st = rt_store_peek(store, ref, &v);
    if (st != RT_OK || v.state != RT_OBJ_ERROR) {
        rt_object_view_release(&v);
        fail_msg("ref %s is not ERROR (status %s, state %d)", ref, rt_status_name(st),
                 (int)v.state);
    }
    rt_error *e = rt_error_incref(v.error);
    rt_object_view_release(&v);
    return e;
}

static rt_error_kind ref_error_kind(const char *ref)
{
    rt_error *e = ref_error(ref);
    rt_error_kind k = rt_error_kind_of(e);
    rt_error_decref(e);
    return k;
}

/* ---- draining the scheduler: every job queued before drain() has finished ------------ */

static pthread_barrier_t drain_barrier;
static rt_job drain_jobs[WORKERS];

static void drain_job(rt_job *job)
{
    (void)job;
    pthread_barrier_wait(&drain_barrier);
}

/* One barrier job per worker: when all of them (and the caller) meet, each worker has
 * finished whatever it took before, and the FIFO queue holds nothing older. */
static void drain(void)
{
    for (int i = 0; i < WORKERS; i++) {
        drain_jobs[i].run = drain_job;
        rt_scheduler_submit(scheduler, &drain_jobs[i]);
    }
    pthread_barrier_wait(&drain_barrier);
}

/* ---- the gate (Gate.block waits on it) ---------------------------------------------- */

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_open;    /* gate_lock */
static int gate_entered; /* gate_lock: Gate.block calls that started */

static void open_gate(void)
{
    pthread_mutex_lock(&gate_lock);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

static void wait_gate_entered(int n)
{
    struct timespec dl = deadline_in(WAIT_SECONDS);
    int timed_out = 0;
    pthread_mutex_lock(&gate_lock);
    while (gate_entered < n && !timed_out)
        timed_out = pthread_cond_timedwait(&gate_cond, &gate_lock, &dl) != 0;
    int entered = gate_entered;
    pthread_mutex_unlock(&gate_lock);
    if (entered < n)
        fail_msg("Gate.block: %d of %d calls started", entered, n);
}

/* ---- test classes --------------------------------------------------------------------- */

static int recorder_ctor_runs; /* atomic */
static int once_ctor_runs;     /* atomic */

typedef struct rec_entry {
    json_int_t submitter, seq;
} rec_entry;

typedef struct recorder {
    rec_entry *log;
    size_t len, cap;
    int inside;     /* atomic: calls running on this state now */
    int max_inside; /* atomic: the most ever seen */
    json_t *ctor_args; /* [args, kwargs] its constructor was given */
} recorder;

static void recorder_new(void **state, rt_call *call)
{
    __atomic_add_fetch(&recorder_ctor_runs, 1, __ATOMIC_SEQ_CST);
    recorder *r = calloc(1, sizeof(*r));
    if (!r) {
        rt_call_fail(call, "Recorder: out of memory");
        return;
    }
    r->ctor_args = json_pack("[OO]", call->args ? call->args : json_null(),
                             call->kwargs ? call->kwargs : json_null());
    *state = r;
    rt_call_return_json(call, json_null());
}

static void recorder_destroy(void *state)
{
    recorder *r = state;
    if (r) {
        free(r->log);
        json_decref(r->ctor_args);
    }
    free(r);
}

static void recorder_enter(recorder *r)
{
    int now = __atomic_add_fetch(&r->inside, 1, __ATOMIC_SEQ_CST);
    int max = __atomic_load_n(&r->max_inside, __ATOMIC_SEQ_CST);
    while (now > max &&
           !__atomic_compare_exchange_n(&r->max_inside, &max, now, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST)) {
    }
}

static void recorder_leave(recorder *r)
{
    __atomic_sub_fetch(&r->inside, 1, __ATOMIC_SEQ_CST);
}

/* rec(submitter, seq): appends, returns the log's length. */
static void recorder_rec(void **state, rt_call *call)
{
    recorder *r = *state;
    recorder_enter(r);
    json_t *s = json_array_get(call->args, 0), *q = json_array_get(call->args, 1);
    if (!json_is_integer(s) || !json_is_integer(q)) {
        recorder_leave(r);
        rt_call_fail(call, "Recorder.rec takes (submitter, seq) integers");
        return;
    }
    if (r->len == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        rec_entry *log = realloc(r->log, cap * sizeof(*log));
        if (!log) {
            recorder_leave(r);
            rt_call_fail(call, "Recorder.rec: out of memory");
            return;
        }
        r->log = log;
        r->cap = cap;
    }
    /* Widen the window in which a second thread on this state would be seen. */
    for (volatile int spin = 0; spin < 200; spin++) {
    }
    r->log[r->len].submitter = json_integer_value(s);
    r->log[r->len].seq = json_integer_value(q);
    r->len++;
    size_t len = r->len;
    recorder_leave(r);
    rt_call_return_json(call, json_integer((json_int_t)len));
}

/* dump(): the log as [[submitter, seq], ...]. */
static void recorder_dump(void **state, rt_call *call)
{
    recorder *r = *state;
    json_t *out = json_array();
    for (size_t i = 0; i < r->len; i++)
        json_array_append_new(out, json_pack("[II]", r->log[i].submitter, r->log[i].seq));
    rt_call_return_json(call, out);
}

static void recorder_max_inside(void **state, rt_call *call)
{
    recorder *r = *state;
    rt_call_return_json(call, json_integer(__atomic_load_n(&r->max_inside, __ATOMIC_SEQ_CST)));
}

/* ctor_args(): [args, kwargs] as the constructor got them. */
static void recorder_ctor_args(void **state, rt_call *call)
{
    recorder *r = *state;
    rt_call_return_json(call, json_incref(r->ctor_args));
}

static void recorder_fatal(void **state, rt_call *call)
{
    (void)state;
    rt_call_fail_fatal(call, "Recorder.fatal: state broken on purpose");
}

static const rt_actor_method RECORDER_METHODS[] = {
    {"rec", "[submitter, seq]", "Appends; returns the log length.", recorder_rec},
    {"dump", "[]", "The log.", recorder_dump},
    {"max_inside", "[]", "Most calls seen at once on this state.", recorder_max_inside},
    {"fatal", "[...]", "Fails fatally.", recorder_fatal},
    {"ctor_args", "[]", "The constructor's [args, kwargs].", recorder_ctor_args},
};

static const rt_actor_class RECORDER = {
    "Recorder", RT_FUNCTION_BUILTIN, "An append-only log.", "[...]", recorder_new,
    recorder_destroy, RECORDER_METHODS, sizeof(RECORDER_METHODS) / sizeof(RECORDER_METHODS[0])};

static void stateless_new(void **state, rt_call *call)
{
    *state = NULL;
    rt_call_return_json(call, json_null());
}

static void gate_block(void **state, rt_call *call)
{
    (void)state;
    pthread_mutex_lock(&gate_lock);
    gate_entered++;
    pthread_cond_broadcast(&gate_cond);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    rt_call_return_json(call, json_string("released"));
}

static void ping(void **state, rt_call *call)
{
    (void)state;
    rt_call_return_json(call, json_string("pong"));
}

static const rt_actor_method GATE_METHODS[] = {
    {"block", "[]", "Waits for the test's gate.", gate_block},
    {"ping", "[]", "Answers at once.", ping},
};

static const rt_actor_class GATE = {"Gate",        RT_FUNCTION_BUILTIN, "Blocks on demand.",
                                    "[]",          stateless_new,       NULL,
                                    GATE_METHODS,  2};

static void bad_init_new(void **state, rt_call *call)
{
    (void)state;
    rt_call_fail(call, "BadInit refuses to start");
}

static const rt_actor_method PING_METHODS[] = {{"ping", "[]", "Answers at once.", ping}};

static const rt_actor_class BAD_INIT = {"BadInit",    RT_FUNCTION_BUILTIN, "Never starts.",
                                        "[...]",      bad_init_new,        NULL,
                                        PING_METHODS, 1};

static void once_new(void **state, rt_call *call)
{
    __atomic_add_fetch(&once_ctor_runs, 1, __ATOMIC_SEQ_CST);
    *state = NULL;
    rt_call_return_json(call, json_null());
}

static const rt_actor_class ONCE = {"Once", RT_FUNCTION_BUILTIN, "Counts constructor runs.",
                                    "[]",   once_new,            NULL,
                                    PING_METHODS, 1};

/* ---- fixture --------------------------------------------------------------------------- */

/* Names freed (the name_freed hook): "name actor_id" lines, in order. */
static pthread_mutex_t freed_lock = PTHREAD_MUTEX_INITIALIZER;
static char freed_names[8][RT_ACTOR_NAME_MAX + RT_REF_SIZE + 2];
static int freed_count;

static void on_name_freed(const char *name, const char *actor_id, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&freed_lock);
    if (freed_count < 8)
        snprintf(freed_names[freed_count], sizeof(freed_names[0]), "%s %s", name, actor_id);
    freed_count++;
    pthread_mutex_unlock(&freed_lock);
}

/* Cluster mode's hooks for fenced actors: what they were told, and the lease they see. */
static int ended_count, restarted_count; /* freed_lock */
static unsigned last_restarts;           /* freed_lock */
static int lease_ok = 1;                 /* atomic */

static void on_ended(const char *actor_id, void *arg)
{
    (void)actor_id;
    (void)arg;
    pthread_mutex_lock(&freed_lock);
    ended_count++;
    pthread_mutex_unlock(&freed_lock);
}

static void on_restarted(const char *actor_id, unsigned restarts, void *arg)
{
    (void)actor_id;
    (void)arg;
    pthread_mutex_lock(&freed_lock);
    restarted_count++;
    last_restarts = restarts;
    pthread_mutex_unlock(&freed_lock);
}

static bool on_lease_held(void *arg)
{
    (void)arg;
    return __atomic_load_n(&lease_ok, __ATOMIC_SEQ_CST) != 0;
}

static int setup(void **state)
{
    (void)state;
    rt_store_config store_cfg = {0};
    store = rt_store_new(&store_cfg);
    scheduler = rt_scheduler_new(WORKERS);
    rt_actors_config actors_cfg = {.name_freed = on_name_freed,
                                   .ended = on_ended,
                                   .restarted = on_restarted,
                                   .lease_held = on_lease_held};
    __atomic_store_n(&lease_ok, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&freed_lock);
    ended_count = restarted_count = 0;
    last_restarts = 0;
    freed_count = 0;
    pthread_mutex_unlock(&freed_lock);
    actors = store && scheduler ? rt_actors_new(store, scheduler, &actors_cfg) : NULL;
    if (!actors || rt_builtin_classes_register(actors) != RT_OK ||
        rt_actors_add_class(actors, &RECORDER) != RT_OK ||
        rt_actors_add_class(actors, &GATE) != RT_OK ||
        rt_actors_add_class(actors, &BAD_INIT) != RT_OK ||
        rt_actors_add_class(actors, &ONCE) != RT_OK)
        return -1;
    pthread_barrier_init(&drain_barrier, NULL, WORKERS + 1);
    pthread_mutex_lock(&gate_lock);
    gate_open = 0;
    gate_entered = 0;
    pthread_mutex_unlock(&gate_lock);
    __atomic_store_n(&recorder_ctor_runs, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&once_ctor_runs, 0, __ATOMIC_SEQ_CST);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    open_gate(); /* a failed test may have left a worker blocked */
    rt_scheduler_free(scheduler);
    rt_actors_free(actors);
    rt_store_free(store);
    pthread_barrier_destroy(&drain_barrier);
    scheduler = NULL;
    actors = NULL;
    store = NULL;
    return 0;
}

/* ---- helpers ----------------------------------------------------------------------------- */

static json_t *parse(const char *text)
{
    if (!text)
        return NULL;
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &err);
    if (!v)
        fail_msg("test JSON does not parse: %s: %s", text, err.text);
    return v;
}

typedef struct spec_opts {
    const char *name;
    bool get_if_exists;
    int max_restarts;
    long max_pending_calls;
    json_t *args; /* borrowed */
} spec_opts;

/* Creates an actor of cls; must succeed; writes its id. */
static void create_opts(const char *cls, const spec_opts *o, char id[RT_REF_SIZE])
{
    rt_actor_spec spec = {.class_name = cls,
                          .args = o->args,
                          .name = o->name,
                          .get_if_exists = o->get_if_exists,
                          .max_restarts = o->max_restarts,
                          .max_pending_calls = o->max_pending_calls};
    rt_actor_info info;
    bool created;
    char err[256] = "";
    rt_status st = rt_actor_create(actors, &spec, &info, &created, err, sizeof(err));
    if (st != RT_OK)
        fail_msg("create %s: %s: %s", cls, rt_status_name(st), err);
    memcpy(id, info.actor_id, RT_REF_SIZE);
    rt_actor_info_release(&info);
}

static void create(const char *cls, char id[RT_REF_SIZE])
{
    spec_opts o = {.max_pending_calls = -1};
    create_opts(cls, &o, id);
}

/* Calls a method with args as JSON text (or NULL); must be accepted. */
static void call_ok(const char *id, const char *method, const char *args, char ref[RT_REF_SIZE])
{
    json_t *a = parse(args);
    char err[256] = "";
    rt_status st = rt_actor_call(actors, id, method, a, NULL, ref, err, sizeof(err));
    json_decref(a);
    if (st != RT_OK)
        fail_msg("call %s.%s: %s: %s", id, method, rt_status_name(st), err);
}

static rt_status call_status(const char *id, const char *method, const char *args)
{
    json_t *a = parse(args);
    char err[256] = "", ref[RT_REF_SIZE] = "";
    rt_status st = rt_actor_call(actors, id, method, a, NULL, ref, err, sizeof(err));
    json_decref(a);
    if (st != RT_OK)
        assert_true(err[0] != '\0'); /* every refusal says why */
    return st;
}

/* Calls and waits; returns the result JSON (new reference). */
static json_t *call_wait(const char *id, const char *method, const char *args)
{
    char ref[RT_REF_SIZE];
    call_ok(id, method, args, ref);
    wait_ref(ref);
    return ref_json(ref);
}

static rt_actor_info get_info(const char *id)
{
    rt_actor_info info;
    assert_int_equal(rt_actor_get(actors, id, &info), RT_OK);
    return info;
}

static rt_actor_state state_of(const char *id)
{
    rt_actor_info info = get_info(id);
    rt_actor_state s = info.state;
    rt_actor_info_release(&info);
    return s;
}

static void ref_arg(char *out, size_t size, const char *ref, const char *rest)
{
    snprintf(out, size, "[{\"$ref\": \"%s\"}%s]", ref, rest);
}

static void resolve_json(const char *ref, const char *text)
{
    rt_buf *buf = rt_buf_from(text, strlen(text), "application/json");
    assert_non_null(buf);
    assert_int_equal(rt_store_resolve(store, ref, buf), RT_OK);
}

/* ---- mailbox ordering under concurrency ------------------------------------------------ */

#define SUBMITTERS 8
#define CALLS_EACH 2000

typedef struct submitter {
    pthread_t thread;
    const char *actor_id;
    int index;
    char (*refs)[RT_REF_SIZE];
    int failures;
    char first_error[160];
} submitter;

static void *submit_main(void *arg)
{
    submitter *s = arg;
    for (int q = 0; q < CALLS_EACH; q++) {
        json_t *args = json_pack("[ii]", s->index, q);
        char err[128] = "";
        rt_status st = rt_actor_call(actors, s->actor_id, "rec", args, NULL, s->refs[q], err,
                                     sizeof(err));
        json_decref(args);
        if (st != RT_OK && s->failures++ == 0)
            snprintf(s->first_error, sizeof(s->first_error), "%s: %s", rt_status_name(st), err);
    }
    return NULL;
}

/* nsub threads each submit CALLS_EACH rec calls to one actor; checks the log. */
static void run_ordering(int nsub)
{
    char id[RT_REF_SIZE];
    create("Recorder", id);
    submitter subs[SUBMITTERS];
    char(*all)[RT_REF_SIZE] = calloc((size_t)nsub * CALLS_EACH, RT_REF_SIZE);
    assert_non_null(all);
    for (int i = 0; i < nsub; i++) {
        subs[i] = (submitter){.actor_id = id, .index = i, .refs = all + (size_t)i * CALLS_EACH};
        assert_int_equal(pthread_create(&subs[i].thread, NULL, submit_main, &subs[i]), 0);
    }
    for (int i = 0; i < nsub; i++)
        pthread_join(subs[i].thread, NULL);
    for (int i = 0; i < nsub; i++)
        if (subs[i].failures)
            fail_msg("submitter %d: %d calls refused, first: %s", i, subs[i].failures,
                     subs[i].first_error);
    size_t total = (size_t)nsub * CALLS_EACH;
    wait_refs((const char(*)[RT_REF_SIZE])all, total);

    /* Each rec result is the log length after it: per submitter strictly increasing, and
     * all of them together exactly 1..total. */
    unsigned char *seen = calloc(total + 1, 1);
    assert_non_null(seen);
    for (int i = 0; i < nsub; i++) {
        json_int_t prev = 0;
        for (int q = 0; q < CALLS_EACH; q++) {
            json_int_t len = ref_int(subs[i].refs[q]);
            if (len <= prev || len > (json_int_t)total)
                fail_msg("submitter %d call %d: length %lld after %lld", i, q, (long long)len,
                         (long long)prev);
            if (seen[len]++)
                fail_msg("length %lld returned twice", (long long)len);
            prev = len;
        }
    }
    free(seen);

    json_t *log = call_wait(id, "dump", NULL);
    assert_int_equal(json_array_size(log), total);
    int next[SUBMITTERS] = {0};
    size_t k;
    json_t *e;
    json_array_foreach(log, k, e)
    {
        json_int_t s = json_integer_value(json_array_get(e, 0));
        json_int_t q = json_integer_value(json_array_get(e, 1));
        assert_true(s >= 0 && s < nsub);
        if (q != next[s])
            fail_msg("log[%zu]: submitter %lld seq %lld, expected seq %d", k, (long long)s,
                     (long long)q, next[s]);
        next[s]++;
        if (nsub == 1)
            assert_int_equal(q, (json_int_t)k); /* one submitter: total order */
    }
    json_decref(log);

    /* One call at a time: the state never saw two calls inside. */
    json_t *max = call_wait(id, "max_inside", NULL);
    assert_int_equal(json_integer_value(max), 1);
    json_decref(max);

    drain(); /* a call's counters are updated just after its result is stored */
    rt_actor_info info = get_info(id);
    assert_int_equal(info.calls_done, total + 2);
    assert_int_equal(info.calls_pending, 0);
    rt_actor_info_release(&info);
    free(all);
}

static void test_order_concurrent_submitters(void **state)
{
    (void)state;
    run_ordering(SUBMITTERS);
}

static void test_order_single_submitter(void **state)
{
    (void)state;
    run_ordering(1);
}

/* Two actors hammered at once from several threads: neither state ever sees 2 calls. */
static void test_one_call_at_a_time(void **state)
{
    (void)state;
    char ids[2][RT_REF_SIZE];
    create("Recorder", ids[0]);
    create("Recorder", ids[1]);
    submitter subs[4];
    char(*all)[RT_REF_SIZE] = calloc(4 * CALLS_EACH, RT_REF_SIZE);
    assert_non_null(all);
    for (int i = 0; i < 4; i++) {
        subs[i] = (submitter){.actor_id = ids[i % 2], .index = i, .refs = all + i * CALLS_EACH};
        assert_int_equal(pthread_create(&subs[i].thread, NULL, submit_main, &subs[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(subs[i].thread, NULL);
    for (int i = 0; i < 4; i++)
        assert_int_equal(subs[i].failures, 0);
    wait_refs((const char(*)[RT_REF_SIZE])all, 4 * CALLS_EACH);
    for (int a = 0; a < 2; a++) {
        json_t *max = call_wait(ids[a], "max_inside", NULL);
        assert_int_equal(json_integer_value(max), 1);
        json_decref(max);
    }
    free(all);
}

/* ---- parallelism and dependencies -------------------------------------------------------- */

static void test_different_actors_run_in_parallel(void **state)
{
    (void)state;
    char a[RT_REF_SIZE], b[RT_REF_SIZE], ra[RT_REF_SIZE], rb[RT_REF_SIZE];
    create("Gate", a);
    create("Gate", b);
    call_ok(a, "block", NULL, ra);
    wait_gate_entered(1); /* A holds one worker */
    call_ok(b, "ping", NULL, rb);
    wait_ref(rb); /* arrives while A is still blocked */
    assert_int_equal(ref_state(ra), RT_OBJ_PENDING);
    json_t *pong = ref_json(rb);
    assert_string_equal(json_string_value(pong), "pong");
    json_decref(pong);
    /* A second call to A queues behind the blocked one. */
    char ra2[RT_REF_SIZE];
    call_ok(a, "ping", NULL, ra2);
    rt_actor_info info = get_info(a);
    assert_int_equal(info.calls_pending, 2);
    rt_actor_info_release(&info);
    assert_int_equal(ref_state(ra2), RT_OBJ_PENDING);
    open_gate();
    wait_ref(ra);
    wait_ref(ra2);
    json_t *v = ref_json(ra);
    assert_string_equal(json_string_value(v), "released");
    json_decref(v);
    assert_int_equal(ref_state(ra2), RT_OBJ_READY);
}

static void test_pending_ref_holds_back_later_calls(void **state)
{
    (void)state;
    char id[RT_REF_SIZE], pending[RT_REF_SIZE], r1[RT_REF_SIZE], r2[RT_REF_SIZE], args[256];
    create("Recorder", id);
    assert_int_equal(rt_store_create_pending(store, pending), RT_OK);
    ref_arg(args, sizeof(args), pending, ", 0");
    call_ok(id, "rec", args, r1);
    call_ok(id, "rec", "[7, 1]", r2);
    drain(); /* anything runnable has run */
    assert_int_equal(ref_state(r1), RT_OBJ_PENDING);
    assert_int_equal(ref_state(r2), RT_OBJ_PENDING);
    assert_int_equal(state_of(id), RT_ACTOR_ALIVE);
    /* Other actors are not held back. */
    char other[RT_REF_SIZE];
    create("Gate", other);
    json_t *pong = call_wait(other, "ping", NULL);
    json_decref(pong);
    assert_int_equal(ref_state(r2), RT_OBJ_PENDING);

    resolve_json(pending, "5");
    wait_ref(r2);
    assert_int_equal(ref_state(r1), RT_OBJ_READY);
    assert_int_equal(ref_int(r1), 1);
    assert_int_equal(ref_int(r2), 2);
    json_t *log = call_wait(id, "dump", NULL);
    json_t *want = parse("[[5, 0], [7, 1]]");
    assert_true(json_equal(log, want));
    json_decref(log);
    json_decref(want);
}

/* An argument that resolves to an error fails that call (TaskError with the cause), and the
 * actor goes on. */
static void test_error_argument_fails_only_that_call(void **state)
{
    (void)state;
    char id[RT_REF_SIZE], pending[RT_REF_SIZE], r1[RT_REF_SIZE], r2[RT_REF_SIZE], args[256];
    create("Recorder", id);
    assert_int_equal(rt_store_create_pending(store, pending), RT_OK);
    ref_arg(args, sizeof(args), pending, ", 0");
    call_ok(id, "rec", args, r1);
    call_ok(id, "rec", "[1, 1]", r2);
    rt_error *boom = rt_error_new(RT_ERR_TASK_ERROR, "upstream failed", NULL, NULL);
    assert_int_equal(rt_store_fail(store, pending, boom), RT_OK);
    rt_error_decref(boom);
    wait_ref(r2);
    rt_error *e = ref_error(r1);
    assert_int_equal(rt_error_kind_of(e), RT_ERR_TASK_ERROR);
    assert_non_null(rt_error_cause(e));
    assert_string_equal(rt_error_message(rt_error_cause(e)), "upstream failed");
    rt_error_decref(e);
    assert_int_equal(ref_int(r2), 1);
    assert_int_equal(state_of(id), RT_ACTOR_ALIVE);
}

/* ---- kill -------------------------------------------------------------------------------- */

static void test_kill_with_queued_calls(void **state)
{
    (void)state;
    char id[RT_REF_SIZE], running[RT_REF_SIZE], queued[3][RT_REF_SIZE];
    spec_opts o = {.name = "victim", .max_pending_calls = -1};
    create_opts("Gate", &o, id);
    call_ok(id, "block", NULL, running);
    wait_gate_entered(1);
    for (int i = 0; i < 3; i++)
        call_ok(id, "ping", NULL, queued[i]);

    assert_int_equal(rt_actor_kill(actors, id), RT_OK);
    wait_refs((const char(*)[RT_REF_SIZE])queued, 3);
    for (int i = 0; i < 3; i++) {
        rt_error *e = ref_error(queued[i]);
        assert_int_equal(rt_error_kind_of(e), RT_ERR_ACTOR_DIED);
        json_t *f = rt_error_fields(e);
        assert_string_equal(json_string_value(json_object_get(f, "actor_id")), id);
        assert_string_equal(json_string_value(json_object_get(f, "method")), "ping");
        rt_error_decref(e);
    }
    assert_int_equal(ref_state(running), RT_OBJ_PENDING); /* still running */

    rt_actor_info info = get_info(id);
    assert_int_equal(info.state, RT_ACTOR_DEAD);
    if (info.death_cause)
        assert_int_equal(rt_error_kind_of(info.death_cause), RT_ERR_ACTOR_DIED);
    rt_actor_info_release(&info);

    /* The name is free at once. */
    rt_actor_info by_name;
    assert_int_equal(rt_actor_get_by_name(actors, "victim", &by_name), RT_ENOTFOUND);
    char second[RT_REF_SIZE];
    create_opts("Gate", &o, second);
    assert_string_not_equal(second, id);
    assert_int_equal(rt_actor_get_by_name(actors, "victim", &by_name), RT_OK);
    assert_string_equal(by_name.actor_id, second);
    rt_actor_info_release(&by_name);

    assert_int_equal(call_status(id, "ping", NULL), RT_ESTATE);
    assert_int_equal(rt_actor_kill(actors, id), RT_OK); /* again */

    open_gate();
    wait_ref(running);
    json_t *v = ref_json(running);
    assert_string_equal(json_string_value(v), "released");
    json_decref(v);
    drain();
    info = get_info(id);
    assert_int_equal(info.state, RT_ACTOR_DEAD);
    assert_int_equal(info.calls_pending, 0);
    assert_int_equal(info.calls_done, 1);
    rt_actor_info_release(&info);
    json_t *pong = call_wait(second, "ping", NULL);
    json_decref(pong);
}

/* Killed before its constructor could run (it waits on a ref): the constructor never runs. */
static void test_kill_before_constructor(void **state)
{
    (void)state;
    char id[RT_REF_SIZE], pending[RT_REF_SIZE], ref[RT_REF_SIZE], args[256];
    assert_int_equal(rt_store_create_pending(store, pending), RT_OK);
    ref_arg(args, sizeof(args), pending, "");
    json_t *a = parse(args);
    spec_opts o = {.max_pending_calls = -1, .args = a};
    create_opts("Recorder", &o, id);
    json_decref(a);
    assert_int_equal(state_of(id), RT_ACTOR_PENDING_CREATION);
    call_ok(id, "rec", "[0, 0]", ref);
    assert_int_equal(rt_actor_kill(actors, id), RT_OK);
    wait_ref(ref);
    assert_int_equal(ref_error_kind(ref), RT_ERR_ACTOR_DIED);
    resolve_json(pending, "1");
    drain();
    assert_int_equal(__atomic_load_n(&recorder_ctor_runs, __ATOMIC_SEQ_CST), 0);
    assert_int_equal(state_of(id), RT_ACTOR_DEAD);
}

/* A promised id (cluster mode claims the name for it first): rt_actor_get answers a
 * PENDING_CREATION record for it until rt_actor_create makes it under that id, and nothing
 * once the promise is dropped. The name hook hears of a kill and of a constructor's death,
 * once each, and never of an unnamed actor. */
static void test_reserve_then_create_and_name_freed(void **state)
{
    (void)state;
    rt_actor_spec spec = {.class_name = "Counter", .name = "promised", .max_pending_calls = -1};
    char id[RT_REF_SIZE], other[RT_REF_SIZE], expected[256];
    assert_int_equal(rt_actor_reserve(actors, &spec, id), RT_OK);
    rt_actor_info info;
    assert_int_equal(rt_actor_get(actors, id, &info), RT_OK);
    assert_int_equal(info.state, RT_ACTOR_PENDING_CREATION);
    assert_string_equal(info.name, "promised");
    assert_string_equal(info.class_name, "Counter");
    rt_actor_info_release(&info);
    assert_int_equal(rt_actor_get_by_name(actors, "promised", &info), RT_ENOTFOUND);

    spec.actor_id = id;
    bool created = false;
    char err[256];
    assert_int_equal(rt_actor_create(actors, &spec, &info, &created, err, sizeof(err)), RT_OK);
    assert_true(created);
    assert_string_equal(info.actor_id, id);
    rt_actor_info_release(&info);
    rt_actor_unreserve(actors, id); /* made: a no-op */
    assert_int_equal(rt_actor_get_by_name(actors, "promised", &info), RT_OK);
    assert_string_equal(info.actor_id, id);
    rt_actor_info_release(&info);

    spec.actor_id = NULL;
    assert_int_equal(rt_actor_reserve(actors, &spec, other), RT_OK);
    assert_string_not_equal(other, id);
    rt_actor_unreserve(actors, other);
    assert_int_equal(rt_actor_get(actors, other, &info), RT_ENOTFOUND);

    assert_int_equal(rt_actor_kill(actors, id), RT_OK);
    assert_int_equal(rt_actor_kill(actors, id), RT_OK); /* already dead: no second hook */
    char plain[RT_REF_SIZE];
    create("Counter", plain);
    assert_int_equal(rt_actor_kill(actors, plain), RT_OK);
    pthread_mutex_lock(&freed_lock);
    assert_int_equal(freed_count, 1);
    snprintf(expected, sizeof(expected), "promised %s", id);
    assert_string_equal(freed_names[0], expected);
    pthread_mutex_unlock(&freed_lock);
    drain();
}

/* The name table grows while an id is promised: the promise stands (it was once dropped with
 * the old buckets, so a named actor being made for another node lost its id). */
static void test_reservation_survives_names_growing(void **state)
{
    (void)state;
    rt_actor_spec spec = {.class_name = "Counter", .name = "awaited", .max_pending_calls = -1};
    char id[RT_REF_SIZE], grown[RT_REF_SIZE], name[32];
    assert_int_equal(rt_actor_reserve(actors, &spec, id), RT_OK);
    for (int i = 0; i < 1100; i++) { /* past the first 1,024 buckets */
        snprintf(name, sizeof(name), "grow-%d", i);
        spec_opts o = {.name = name, .max_pending_calls = -1};
        create_opts("Counter", &o, grown);
    }
    rt_actor_info info;
    assert_int_equal(rt_actor_get(actors, id, &info), RT_OK);
    assert_int_equal(info.state, RT_ACTOR_PENDING_CREATION);
    rt_actor_info_release(&info);
    spec.actor_id = id;
    bool created = false;
    char err[256];
    assert_int_equal(rt_actor_create(actors, &spec, &info, &created, err, sizeof(err)), RT_OK);
    assert_true(created);
    rt_actor_info_release(&info);
    assert_int_equal(rt_actor_get_by_name(actors, "awaited", &info), RT_OK);
    assert_string_equal(info.actor_id, id);
    rt_actor_info_release(&info);
    assert_int_equal(rt_actor_get_by_name(actors, "grow-1099", &info), RT_OK);
    rt_actor_info_release(&info);
    drain();
}

/* Kills racing with submitters: every accepted call resolves to ActorDied or a value, every
 * refused one is RT_ESTATE, and no pin on the argument object leaks. */
#define KILL_ROUNDS 200

typedef struct kill_racer {
    pthread_t thread;
    char actor_id[RT_REF_SIZE];
    const char *dep;
    int accepted; /* atomic */
    int bad_status;
    char (*refs)[RT_REF_SIZE];
    int cap;
} kill_racer;

static void *kill_race_main(void *arg)
{
    kill_racer *k = arg;
    char args[256];
    ref_arg(args, sizeof(args), k->dep, ", 0");
    json_t *a = json_loads(args, 0, NULL);
    for (int i = 0; i < k->cap; i++) {
        char err[128];
        rt_status st = rt_actor_call(actors, k->actor_id, "rec", a, NULL, k->refs[i], err,
                                     sizeof(err));
        if (st == RT_ESTATE)
            break;
        if (st != RT_OK) {
            k->bad_status = st;
            break;
        }
        __atomic_add_fetch(&k->accepted, 1, __ATOMIC_SEQ_CST);
    }
    json_decref(a);
    return NULL;
}

static void test_kill_races_submitters(void **state)
{
    (void)state;
    char dep[RT_REF_SIZE];
    assert_int_equal(rt_store_create_pending(store, dep), RT_OK);
    kill_racer *k = calloc(1, sizeof(*k));
    assert_non_null(k);
    k->cap = 4096;
    k->refs = calloc((size_t)k->cap, RT_REF_SIZE);
    assert_non_null(k->refs);
    k->dep = dep;
    for (int round = 0; round < KILL_ROUNDS; round++) {
        create("Recorder", k->actor_id);
        __atomic_store_n(&k->accepted, 0, __ATOMIC_SEQ_CST);
        k->bad_status = 0;
        assert_int_equal(pthread_create(&k->thread, NULL, kill_race_main, k), 0);
        /* Let a few calls in, then kill while the submitter is still going. */
        while (__atomic_load_n(&k->accepted, __ATOMIC_SEQ_CST) < 1 + round % 8)
            ;
        assert_int_equal(rt_actor_kill(actors, k->actor_id), RT_OK);
        pthread_join(k->thread, NULL);
        assert_int_equal(k->bad_status, 0);
        int n = __atomic_load_n(&k->accepted, __ATOMIC_SEQ_CST);
        assert_true(n <= k->cap); /* at cap the submitter stopped before the kill */
        wait_refs((const char(*)[RT_REF_SIZE])k->refs, (size_t)n);
        for (int i = 0; i < n; i++)
            assert_int_equal(ref_error_kind(k->refs[i]), RT_ERR_ACTOR_DIED);
        rt_object_view v;
        assert_int_equal(rt_store_peek(store, dep, &v), RT_OK);
        unsigned pins = v.pins;
        rt_object_view_release(&v);
        if (pins != 0)
            fail_msg("round %d: %u pins left on the argument after the kill", round, pins);
    }
    resolve_json(dep, "1");
    drain();
    free(k->refs);
    free(k);
}

/* ---- restarts and failing constructors ------------------------------------------------- */

static void test_restarts_then_death(void **state)
{
    (void)state;
    char id[RT_REF_SIZE], ref[RT_REF_SIZE];
    spec_opts o = {.max_restarts = 2, .max_pending_calls = -1};
    create_opts("Recorder", &o, id);
    for (unsigned round = 1; round <= 2; round++) {
        json_t *v = call_wait(id, "rec", "[0, 0]");
        assert_int_equal(json_integer_value(v), 1); /* a fresh state each round */
        json_decref(v);
        call_ok(id, "fatal", NULL, ref);
        wait_ref(ref);
        assert_int_equal(ref_error_kind(ref), RT_ERR_TASK_ERROR);
        /* The next call runs after the restart: an empty log. */
        json_t *log = call_wait(id, "dump", NULL);
        assert_int_equal(json_array_size(log), 0);
        json_decref(log);
        rt_actor_info info = get_info(id);
        assert_int_equal(info.restarts, round);
        assert_int_equal(info.state, RT_ACTOR_ALIVE);
        rt_actor_info_release(&info);
    }
    assert_int_equal(__atomic_load_n(&recorder_ctor_runs, __ATOMIC_SEQ_CST), 3);

    /* The third fatal call kills it; a call queued behind it gets ActorDied. */
    char pending[RT_REF_SIZE], fatal_ref[RT_REF_SIZE], behind[RT_REF_SIZE], args[256];
    assert_int_equal(rt_store_create_pending(store, pending), RT_OK);
    ref_arg(args, sizeof(args), pending, "");
    call_ok(id, "fatal", args, fatal_ref);
    call_ok(id, "rec", "[0, 1]", behind);
    resolve_json(pending, "0");
    wait_ref(behind);
    assert_int_equal(ref_error_kind(fatal_ref), RT_ERR_TASK_ERROR);
    rt_error *e = ref_error(behind);
    assert_int_equal(rt_error_kind_of(e), RT_ERR_ACTOR_DIED);
    rt_error_decref(e);

    rt_actor_info info = get_info(id);
    assert_int_equal(info.state, RT_ACTOR_DEAD);
    assert_int_equal(info.restarts, 2);
    assert_non_null(info.death_cause);
    assert_int_equal(rt_error_kind_of(info.death_cause), RT_ERR_TASK_ERROR);
    assert_non_null(strstr(rt_error_message(info.death_cause), "broken on purpose"));
    rt_actor_info_release(&info);
    assert_int_equal(call_status(id, "rec", "[0, 2]"), RT_ESTATE);
    assert_int_equal(__atomic_load_n(&recorder_ctor_runs, __ATOMIC_SEQ_CST), 3);

    rt_actors_stats st;
    rt_actors_get_stats(actors, &st);
    assert_int_equal(st.restarts, 2);
}

/* Constructor arguments are kept for restarts (an actor keeps none when they are empty,
 * to stay small while idle): a restarted actor's constructor gets the same ones again. */
static void test_restart_keeps_constructor_args(void **state)
{
    (void)state;
    struct {
        const char *args, *kwargs, *seen;
    } cases[] = {
        {"[7, \"x\"]", "{\"k\": [1]}", "[[7, \"x\"], {\"k\": [1]}]"},
        {NULL, NULL, "[[], {}]"},
        {"[]", "{}", "[[], {}]"},
        {NULL, "{\"only\": true}", "[[], {\"only\": true}]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *args = parse(cases[i].args), *kwargs = parse(cases[i].kwargs);
        json_t *seen = parse(cases[i].seen);
        rt_actor_spec spec = {.class_name = "Recorder", .args = args, .kwargs = kwargs,
                              .max_restarts = 1, .max_pending_calls = -1};
        rt_actor_info info;
        bool created;
        char err[256] = "", id[RT_REF_SIZE], ref[RT_REF_SIZE];
        assert_int_equal(rt_actor_create(actors, &spec, &info, &created, err, sizeof(err)),
                         RT_OK);
        memcpy(id, info.actor_id, RT_REF_SIZE);
        assert_string_equal(info.name, ""); /* unnamed */
        rt_actor_info_release(&info);
        json_decref(args); /* the actor keeps its own copy */
        json_decref(kwargs);
        json_t *v = call_wait(id, "ctor_args", NULL);
        assert_true(json_equal(v, seen));
        json_decref(v);
        call_ok(id, "fatal", NULL, ref);
        wait_ref(ref);
        v = call_wait(id, "ctor_args", NULL); /* runs on the restarted actor */
        assert_true(json_equal(v, seen));
        json_decref(v);
        info = get_info(id);
        assert_int_equal(info.restarts, 1);
        rt_actor_info_release(&info);
        json_decref(seen);
    }
}

static void test_max_restarts_zero_dies_at_once(void **state)
{
    (void)state;
    char id[RT_REF_SIZE];
    spec_opts o = {.max_restarts = 0, .max_pending_calls = -1};
    create_opts("Recorder", &o, id);
    char ref[RT_REF_SIZE];
    call_ok(id, "fatal", NULL, ref);
    wait_ref(ref);
    drain();
    rt_actor_info info = get_info(id);
    assert_int_equal(info.state, RT_ACTOR_DEAD);
    assert_int_equal(info.restarts, 0);
    assert_non_null(info.death_cause);
    rt_actor_info_release(&info);
}

static void test_failing_constructor(void **state)
{
    (void)state;
    /* Deterministic: the constructor waits on a ref while a call is accepted behind it. */
    char id[RT_REF_SIZE], pending[RT_REF_SIZE], ref[RT_REF_SIZE], args[256];
    assert_int_equal(rt_store_create_pending(store, pending), RT_OK);
    ref_arg(args, sizeof(args), pending, "");
    json_t *a = parse(args);
    spec_opts o = {.name = "bad", .max_restarts = 3, .max_pending_calls = -1, .args = a};
    create_opts("BadInit", &o, id);
    json_decref(a);
    call_ok(id, "ping", NULL, ref);
    resolve_json(pending, "1");
    wait_ref(ref);
    rt_error *e = ref_error(ref);
    assert_int_equal(rt_error_kind_of(e), RT_ERR_ACTOR_DIED);
    assert_non_null(rt_error_cause(e));
    assert_int_equal(rt_error_kind_of(rt_error_cause(e)), RT_ERR_TASK_ERROR);
    rt_error_decref(e);
    drain();
    rt_actor_info info = get_info(id);
    assert_int_equal(info.state, RT_ACTOR_DEAD);
    assert_int_equal(info.restarts, 0); /* constructor failures are not restarted */
    assert_non_null(info.death_cause);
    assert_int_equal(rt_error_kind_of(info.death_cause), RT_ERR_TASK_ERROR);
    assert_non_null(strstr(rt_error_message(info.death_cause), "BadInit refuses to start"));
    pthread_mutex_lock(&freed_lock); /* its death freed its name, once */
    assert_int_equal(freed_count, 1);
    assert_int_equal(strncmp(freed_names[0], "bad ", 4), 0);
    pthread_mutex_unlock(&freed_lock);
    rt_actor_info_release(&info);
    assert_int_equal(call_status(id, "ping", NULL), RT_ESTATE);
    /* Its name was released. */
    rt_actor_info by_name;
    assert_int_equal(rt_actor_get_by_name(actors, "bad", &by_name), RT_ENOTFOUND);

    /* Without the ref: create, let it run, then calls are refused. */
    char id2[RT_REF_SIZE];
    create("BadInit", id2);
    drain();
    assert_int_equal(state_of(id2), RT_ACTOR_DEAD);
    assert_int_equal(call_status(id2, "ping", NULL), RT_ESTATE);
}

/* ---- names ------------------------------------------------------------------------------- */

#define RACERS 8
#define RACE_ROUNDS 25

typedef struct racer {
    pthread_t thread;
    pthread_barrier_t *start;
    char ids[RACE_ROUNDS][RT_REF_SIZE];
    bool created[RACE_ROUNDS];
    int failures;
} racer;

static void *race_main(void *arg)
{
    racer *r = arg;
    for (int round = 0; round < RACE_ROUNDS; round++) {
        char name[32], err[128];
        snprintf(name, sizeof(name), "shared-%d", round);
        rt_actor_spec spec = {.class_name = "Once",
                              .name = name,
                              .get_if_exists = true,
                              .max_pending_calls = -1};
        rt_actor_info info;
        pthread_barrier_wait(r->start);
        if (rt_actor_create(actors, &spec, &info, &r->created[round], err, sizeof(err)) !=
            RT_OK) {
            r->failures++;
            continue;
        }
        memcpy(r->ids[round], info.actor_id, RT_REF_SIZE);
        rt_actor_info_release(&info);
    }
    return NULL;
}

static void test_get_if_exists_concurrent(void **state)
{
    (void)state;
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, RACERS);
    racer *rs = calloc(RACERS, sizeof(*rs));
    assert_non_null(rs);
    for (int i = 0; i < RACERS; i++) {
        rs[i].start = &start;
        assert_int_equal(pthread_create(&rs[i].thread, NULL, race_main, &rs[i]), 0);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(rs[i].thread, NULL);
    pthread_barrier_destroy(&start);
    for (int round = 0; round < RACE_ROUNDS; round++) {
        int created = 0;
        for (int i = 0; i < RACERS; i++) {
            assert_int_equal(rs[i].failures, 0);
            assert_string_equal(rs[i].ids[round], rs[0].ids[round]);
            created += rs[i].created[round];
        }
        assert_int_equal(created, 1);
    }
    drain();
    assert_int_equal(__atomic_load_n(&once_ctor_runs, __ATOMIC_SEQ_CST), RACE_ROUNDS);
    rt_actors_stats st;
    rt_actors_get_stats(actors, &st);
    assert_int_equal(st.by_state[RT_ACTOR_ALIVE], RACE_ROUNDS);
    free(rs);

    /* Without get_if_exists the name is taken. */
    rt_actor_spec spec = {.class_name = "Once", .name = "shared-0", .max_pending_calls = -1};
    rt_actor_info info;
    bool created = true;
    char err[128] = "";
    assert_int_equal(rt_actor_create(actors, &spec, &info, &created, err, sizeof(err)),
                     RT_EEXIST);
    assert_false(created);
    assert_true(err[0] != '\0');
}

/* ---- limits and errors ------------------------------------------------------------------ */

static void test_max_pending_calls(void **state)
{
    (void)state;
    char id[RT_REF_SIZE], r[3][RT_REF_SIZE];
    spec_opts o = {.max_pending_calls = 2};
    create_opts("Gate", &o, id);
    call_ok(id, "block", NULL, r[0]);
    wait_gate_entered(1);
    call_ok(id, "ping", NULL, r[1]);
    assert_int_equal(call_status(id, "ping", NULL), RT_ELIMIT);
    assert_int_equal(call_status(id, "ping", NULL), RT_ELIMIT);
    rt_actor_info info = get_info(id);
    assert_int_equal(info.calls_pending, 2);
    assert_int_equal(info.max_pending_calls, 2);
    rt_actor_info_release(&info);
    open_gate();
    wait_refs((const char(*)[RT_REF_SIZE])r, 2);
    drain();
    call_ok(id, "ping", NULL, r[2]); /* room again */
    wait_ref(r[2]);
    rt_actors_stats st;
    rt_actors_get_stats(actors, &st);
    assert_int_equal(st.calls, 3); /* refused calls are not counted */
}

static void test_errors(void **state)
{
    (void)state;
    char id[RT_REF_SIZE], ref[RT_REF_SIZE], err[256];
    create("Recorder", id);
    assert_int_equal(call_status(id, "nope", NULL), RT_EINVAL);
    assert_int_equal(call_status("a-0000000000000000000000000000", "rec", "[0, 0]"),
                     RT_ENOTFOUND);
    assert_int_equal(call_status("", "rec", "[0, 0]"), RT_ENOTFOUND);
    assert_int_equal(rt_actor_kill(actors, "a-0000000000000000000000000000"), RT_ENOTFOUND);
    rt_actor_info info;
    assert_int_equal(rt_actor_get(actors, "a-0000000000000000000000000000", &info),
                     RT_ENOTFOUND);
    assert_int_equal(rt_actor_get_by_name(actors, "nobody", &info), RT_ENOTFOUND);
    /* Ref arguments must exist and be well formed. */
    assert_int_equal(call_status(id, "rec", "[{\"$ref\": \"o-doesnotexist\"}, 0]"), RT_EINVAL);
    assert_int_equal(call_status(id, "rec", "[{\"$ref\": 5}, 0]"), RT_EINVAL);
    json_t *obj = json_object();
    assert_int_equal(rt_actor_call(actors, id, "rec", obj, NULL, ref, err, sizeof(err)),
                     RT_EINVAL);
    json_decref(obj);

    rt_actor_spec spec = {.class_name = "NoSuchClass", .max_pending_calls = -1};
    bool created = true;
    assert_int_equal(rt_actor_create(actors, &spec, &info, &created, err, sizeof(err)),
                     RT_ENOTFOUND);
    assert_false(created);
    spec.class_name = "Recorder";
    spec.name = "";
    assert_int_equal(rt_actor_create(actors, &spec, &info, &created, err, sizeof(err)),
                     RT_EINVAL);
    spec.name = "bad\nname";
    assert_int_equal(rt_actor_create(actors, &spec, &info, &created, err, sizeof(err)),
                     RT_EINVAL);
    spec.name = NULL;
    spec.get_if_exists = true;
    assert_int_equal(rt_actor_create(actors, &spec, &info, &created, err, sizeof(err)),
                     RT_EINVAL);
    spec.get_if_exists = false;
    spec.max_pending_calls = 0;
    assert_int_equal(rt_actor_create(actors, &spec, &info, &created, err, sizeof(err)),
                     RT_EINVAL);
    spec.max_pending_calls = -1;
    spec.max_restarts = -2;
    assert_int_equal(rt_actor_create(actors, &spec, &info, &created, err, sizeof(err)),
                     RT_EINVAL);
    spec.max_restarts = 0;
    spec.args = json_object();
    assert_int_equal(rt_actor_create(actors, &spec, &info, &created, err, sizeof(err)),
                     RT_EINVAL);
    json_decref(spec.args);
    spec.args = NULL;
    /* Class registration. */
    assert_int_equal(rt_actors_add_class(actors, &RECORDER), RT_EEXIST);
    assert_ptr_equal(rt_actors_find_class(actors, "Recorder"), &RECORDER);
    assert_null(rt_actors_find_class(actors, "recorder"));
    rt_actors_stats st;
    rt_actors_get_stats(actors, &st);
    assert_int_equal(st.calls, 0);
    assert_int_equal(st.by_state[RT_ACTOR_ALIVE] + st.by_state[RT_ACTOR_PENDING_CREATION], 1);
}

/* ---- 100,000 actors --------------------------------------------------------------------- */

#define MANY 100000

static void test_many_counters_and_memory(void **state)
{
    (void)state;
    char(*ids)[RT_REF_SIZE] = malloc((size_t)MANY * RT_REF_SIZE);
    char(*refs)[RT_REF_SIZE] = malloc((size_t)MANY * RT_REF_SIZE);
    assert_non_null(ids);
    assert_non_null(refs);
    drain();
    struct mallinfo2 before = mallinfo2();
    for (size_t i = 0; i < MANY; i++)
        create("Counter", ids[i]);
    drain(); /* every constructor has run */
    struct mallinfo2 after = mallinfo2();
    rt_actors_stats st;
    rt_actors_get_stats(actors, &st);
    assert_int_equal(st.by_state[RT_ACTOR_ALIVE], MANY);

    double heap = ((double)after.uordblks - (double)before.uordblks) / MANY;
    double with_mmap = ((double)after.uordblks + (double)after.hblkhd -
                        (double)before.uordblks - (double)before.hblkhd) /
                       MANY;
    printf("[ MEMORY   ] idle actor: %.0f bytes (uordblks), %.0f bytes with mmap'd blocks%s\n",
           heap, with_mmap, SANITIZED ? " (sanitized build: not checked)" : "");
    if (!SANITIZED) {
        assert_true(heap > 0);
        assert_true(heap < 2048);
    }

    for (size_t i = 0; i < MANY; i++)
        call_ok(ids[i], "incr", NULL, refs[i]);
    wait_refs((const char(*)[RT_REF_SIZE])refs, MANY);
    for (size_t i = 0; i < MANY; i++)
        if (ref_int(refs[i]) != 1)
            fail_msg("Counter %zu: incr gave %lld", i, (long long)ref_int(refs[i]));
    drain();
    rt_actors_get_stats(actors, &st);
    assert_int_equal(st.calls, MANY);
    assert_int_equal(st.calls_done, MANY);
    free(ids);
    free(refs);
}

/* ---- listing and stats ------------------------------------------------------------------ */

static size_t list_ids(uint64_t after, int state, const char *cls, size_t limit,
                       char (*out)[RT_REF_SIZE], uint64_t *next)
{
    rt_actor_info infos[16];
    assert_true(limit <= 16);
    size_t n = rt_actor_list(actors, after, state, cls, limit, infos, next);
    for (size_t i = 0; i < n; i++) {
        memcpy(out[i], infos[i].actor_id, RT_REF_SIZE);
        if (i)
            assert_true(infos[i].seq > infos[i - 1].seq);
        if (cls)
            assert_string_equal(infos[i].class_name, cls);
        if (state >= 0)
            assert_int_equal(infos[i].state, state);
        rt_actor_info_release(&infos[i]);
    }
    return n;
}

/* A long history does not make a page dear: 20,000 dead actors, then 2 alive. A page of
 * ALIVE actors looks at what it holds (plus a logarithm), and each page of a class filter
 * at no more than its budget, where a walk from the oldest record under the table's lock
 * looked at all 20,000 for each. */
static void test_list_cost_with_long_history(void **state)
{
    (void)state;
    enum { N = 20000 };
    char id[RT_REF_SIZE], g1[RT_REF_SIZE], g2[RT_REF_SIZE];
    for (int i = 0; i < N; i++) {
        create("Once", id);
        assert_int_equal(rt_actor_kill(actors, id), RT_OK);
    }
    create("Gate", g1);
    create("Gate", g2);
    drain();
    assert_int_equal(state_of(g2), RT_ACTOR_ALIVE);

    char got[16][RT_REF_SIZE];
    uint64_t next, v = rt__actors_list_visits(actors);
    assert_int_equal(list_ids(0, RT_ACTOR_ALIVE, NULL, 10, got, &next), 2);
    uint64_t alive_cost = rt__actors_list_visits(actors) - v;
    assert_int_equal(next, 0);
    assert_string_equal(got[0], g1);

    uint64_t cursor = 0, worst = 0;
    int pages = 0, found = 0;
    do {
        v = rt__actors_list_visits(actors);
        found += (int)list_ids(cursor, -1, "Gate", 10, got, &cursor);
        uint64_t cost = rt__actors_list_visits(actors) - v;
        worst = cost > worst ? cost : worst;
        pages++;
    } while (cursor && pages < 1000);
    fprintf(stderr, "  visits: ALIVE page %llu, class filter: %d pages, the dearest %llu\n",
            (unsigned long long)alive_cost, pages, (unsigned long long)worst);
    assert_int_equal(found, 2);
    assert_true(alive_cost < 200);
    assert_true(pages > 1);
    assert_true(worst < 3 * 4096 + 200);
}

static void test_list_paging_and_filters(void **state)
{
    (void)state;
    /* R0 G0 R1 G1 R2 G2 R3 R4 */
    const char *classes[8] = {"Recorder", "Gate",    "Recorder", "Gate",
                              "Recorder", "Gate",    "Recorder", "Recorder"};
    char ids[8][RT_REF_SIZE];
    for (int i = 0; i < 8; i++)
        create(classes[i], ids[i]);
    drain();
    assert_int_equal(rt_actor_kill(actors, ids[2]), RT_OK); /* R1 */
    assert_int_equal(rt_actor_kill(actors, ids[6]), RT_OK); /* R3 */

    char got[16][RT_REF_SIZE];
    uint64_t next, after = 0;
    size_t total = 0, pages = 0;
    do {
        size_t n = list_ids(after, -1, NULL, 3, got, &next);
        for (size_t i = 0; i < n; i++)
            assert_string_equal(got[i], ids[total + i]);
        total += n;
        pages++;
        after = next;
    } while (next && pages < 10);
    assert_int_equal(total, 8);
    assert_int_equal(pages, 3);

    /* Exactly limit matches: no next page. */
    assert_int_equal(list_ids(0, -1, NULL, 8, got, &next), 8);
    assert_int_equal(next, 0);

    /* Class filter with paging: R0 R1 | R2 R3 | R4. */
    const int recorders[5] = {0, 2, 4, 6, 7};
    after = 0;
    total = 0;
    pages = 0;
    do {
        size_t n = list_ids(after, -1, "Recorder", 2, got, &next);
        for (size_t i = 0; i < n; i++)
            assert_string_equal(got[i], ids[recorders[total + i]]);
        total += n;
        pages++;
        after = next;
    } while (next && pages < 10);
    assert_int_equal(total, 5);
    assert_int_equal(pages, 3);

    assert_int_equal(list_ids(0, -1, "Gate", 16, got, &next), 3);
    assert_int_equal(list_ids(0, -1, "Nope", 16, got, &next), 0);
    assert_int_equal(next, 0);
    assert_int_equal(list_ids(0, RT_ACTOR_DEAD, NULL, 16, got, &next), 2);
    assert_string_equal(got[0], ids[2]);
    assert_string_equal(got[1], ids[6]);
    assert_int_equal(list_ids(0, RT_ACTOR_ALIVE, "Recorder", 16, got, &next), 3);
    assert_int_equal(list_ids(0, RT_ACTOR_RESTARTING, NULL, 16, got, &next), 0);
    /* A cursor in the middle. */
    rt_actor_info info = get_info(ids[4]);
    uint64_t mid = info.seq;
    rt_actor_info_release(&info);
    assert_int_equal(list_ids(mid, -1, NULL, 16, got, &next), 3);
    assert_string_equal(got[0], ids[5]);
}

static void test_stats(void **state)
{
    (void)state;
    rt_actors_stats st;
    rt_actors_get_stats(actors, &st);
    for (int i = 0; i < RT_ACTOR_STATE_COUNT; i++)
        assert_int_equal(st.by_state[i], 0);
    assert_int_equal(st.calls + st.calls_done + st.restarts, 0);

    char r[3][RT_REF_SIZE], bad[RT_REF_SIZE], waiting[RT_REF_SIZE], pending[RT_REF_SIZE];
    char args[256];
    spec_opts o = {.max_restarts = 1, .max_pending_calls = -1};
    for (int i = 0; i < 3; i++)
        create_opts("Recorder", &o, r[i]);
    create("BadInit", bad);
    assert_int_equal(rt_store_create_pending(store, pending), RT_OK);
    ref_arg(args, sizeof(args), pending, "");
    json_t *a = parse(args);
    spec_opts ow = {.max_pending_calls = -1, .args = a};
    create_opts("Gate", &ow, waiting);
    json_decref(a);
    drain();
    rt_actors_get_stats(actors, &st);
    assert_int_equal(st.by_state[RT_ACTOR_PENDING_CREATION], 1);
    assert_int_equal(st.by_state[RT_ACTOR_ALIVE], 3);
    assert_int_equal(st.by_state[RT_ACTOR_RESTARTING], 0);
    assert_int_equal(st.by_state[RT_ACTOR_DEAD], 1);

    char refs[10][RT_REF_SIZE];
    for (int i = 0; i < 10; i++)
        call_ok(r[i % 3], "rec", "[0, 0]", refs[i]);
    wait_refs((const char(*)[RT_REF_SIZE])refs, 10);
    drain();
    rt_actors_get_stats(actors, &st);
    assert_int_equal(st.calls, 10);
    assert_int_equal(st.calls_done, 10);

    call_ok(r[0], "fatal", NULL, refs[0]);
    wait_ref(refs[0]);
    json_t *v = call_wait(r[0], "dump", NULL); /* runs after the restart */
    json_decref(v);
    assert_int_equal(rt_actor_kill(actors, r[1]), RT_OK);
    resolve_json(pending, "0");
    drain();
    rt_actors_get_stats(actors, &st);
    assert_int_equal(st.restarts, 1);
    assert_int_equal(st.calls, 12);
    assert_int_equal(st.calls_done, 12);
    assert_int_equal(st.by_state[RT_ACTOR_PENDING_CREATION], 0);
    assert_int_equal(st.by_state[RT_ACTOR_ALIVE], 3);
    assert_int_equal(st.by_state[RT_ACTOR_DEAD], 2);
}

/* Cluster mode's fenced actors: made RESTARTING with restarts carried over; calls refused
 * while the lease is not held; the ended and restarted hooks; forgotten when moved. */
static void test_fenced_actor(void **state)
{
    (void)state;
    rt_actor_spec spec = {.class_name = "Counter",
                          .max_restarts = 5,
                          .max_pending_calls = -1,
                          .fenced = true,
                          .restarting = true,
                          .restarts = 2};
    rt_actor_info info;
    bool created;
    char err[256], counter[RT_REF_SIZE], ref[RT_REF_SIZE];
    assert_int_equal(rt_actor_create(actors, &spec, &info, &created, err, sizeof(err)), RT_OK);
    assert_int_equal(info.state, RT_ACTOR_RESTARTING);
    assert_int_equal(info.restarts, 2);
    memcpy(counter, info.actor_id, RT_REF_SIZE);
    rt_actor_info_release(&info);
    json_t *v = call_wait(counter, "incr", NULL);
    assert_int_equal(json_integer_value(v), 1);
    json_decref(v);
    info = get_info(counter);
    assert_int_equal(info.state, RT_ACTOR_ALIVE);
    assert_int_equal(info.restarts, 2);
    rt_actor_info_release(&info);

    /* Without the lease a call does not run: ActorDied, not run. */
    __atomic_store_n(&lease_ok, 0, __ATOMIC_SEQ_CST);
    call_ok(counter, "incr", NULL, ref);
    wait_ref(ref);
    rt_error *e = ref_error(ref);
    assert_int_equal(rt_error_kind_of(e), RT_ERR_ACTOR_DIED);
    assert_true(json_is_false(json_object_get(rt_error_fields(e), "may_have_run")));
    rt_error_decref(e);
    __atomic_store_n(&lease_ok, 1, __ATOMIC_SEQ_CST);
    v = call_wait(counter, "incr", NULL);
    assert_int_equal(json_integer_value(v), 2);
    json_decref(v);

    /* A fatal error restarts it here: the hook counts it. */
    rt_actor_spec rec_spec = {.class_name = "Recorder", .max_restarts = 3,
                              .max_pending_calls = -1, .fenced = true};
    char rec_actor[RT_REF_SIZE];
    assert_int_equal(rt_actor_create(actors, &rec_spec, &info, &created, err, sizeof(err)),
                     RT_OK);
    memcpy(rec_actor, info.actor_id, RT_REF_SIZE);
    rt_actor_info_release(&info);
    call_ok(rec_actor, "fatal", NULL, ref);
    wait_ref(ref);
    json_decref(call_wait(rec_actor, "dump", NULL));

    /* Moved: queued calls end ActorDied (moved), the record goes, no hook, the name is
     * not freed (it stays with the actor where it lives now). */
    rt_actor_spec gate_spec = {.class_name = "Gate", .name = "fenced-gate",
                               .max_restarts = 1, .max_pending_calls = -1, .fenced = true};
    char gate[RT_REF_SIZE], running[RT_REF_SIZE], queued[2][RT_REF_SIZE];
    assert_int_equal(rt_actor_create(actors, &gate_spec, &info, &created, err, sizeof(err)),
                     RT_OK);
    memcpy(gate, info.actor_id, RT_REF_SIZE);
    rt_actor_info_release(&info);
    call_ok(gate, "block", NULL, running);
    wait_gate_entered(1);
    call_ok(gate, "ping", NULL, queued[0]);
    call_ok(gate, "ping", NULL, queued[1]);
    assert_int_equal(rt_actor_forget(actors, gate, "was restarted on node 9"), RT_OK);
    wait_refs((const char(*)[RT_REF_SIZE])queued, 2);
    for (int i = 0; i < 2; i++) {
        e = ref_error(queued[i]);
        assert_int_equal(rt_error_kind_of(e), RT_ERR_ACTOR_DIED);
        rt_error *cause = rt_error_cause(e);
        assert_non_null(cause);
        assert_true(json_is_true(json_object_get(rt_error_fields(cause), "moved")));
        assert_non_null(strstr(rt_error_message(cause), "node 9"));
        rt_error_decref(e);
    }
    assert_int_equal(rt_actor_get(actors, gate, &info), RT_ENOTFOUND);
    assert_int_equal(rt_actor_get_by_name(actors, "fenced-gate", &info), RT_ENOTFOUND);
    assert_int_equal(rt_actor_forget(actors, gate, "again"), RT_ENOTFOUND);
    open_gate();
    wait_ref(running);

    /* Killed: the ended hook, once; an unfenced actor's kill tells it nothing. */
    assert_int_equal(rt_actor_kill(actors, counter), RT_OK);
    char plain[RT_REF_SIZE];
    create("Counter", plain);
    assert_int_equal(rt_actor_kill(actors, plain), RT_OK);
    drain();
    pthread_mutex_lock(&freed_lock);
    assert_int_equal(ended_count, 1);
    assert_int_equal(restarted_count, 1);
    assert_int_equal(last_restarts, 1);
    assert_int_equal(freed_count, 0);
    pthread_mutex_unlock(&freed_lock);
    rt_actors_stats st;
    rt_actors_get_stats(actors, &st);
    assert_int_equal(st.by_state[RT_ACTOR_DEAD], 2); /* the killed two; the moved one is gone */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_concurrent_submitters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_keeps_constructor_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_single_submitter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_call_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_different_actors_run_in_parallel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_ref_holds_back_later_calls, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_error_argument_fails_only_that_call, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_kill_with_queued_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_before_constructor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reserve_then_create_and_name_freed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reservation_survives_names_growing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_kill_races_submitters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restarts_then_death, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_restarts_zero_dies_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_constructor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_if_exists_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_pending_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_paging_and_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_cost_with_long_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fenced_actor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_counters_and_memory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
