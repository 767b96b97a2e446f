/* Unit tests for runtime/task.c: results, dependencies (diamonds, long chains, errors
 * travelling down them), retries, cancellation and its races, num_returns, limits,
 * all-or-nothing submission, lost and pinned dependencies, listing. runtime/task.h is the
 * contract. No HTTP: the runtime only. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/clock.h"
#include "runtime/function.h"
#include "runtime/object_store.h"
#include "runtime/scheduler.h"
#include "runtime/task.h"

#define WAIT_LIMIT 20.0 /* seconds before a wait counts as a hang */

/* ---- small helpers ------------------------------------------------------------------- */

static void sleep_seconds(double s)
{
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static struct timespec abs_deadline(double from_now)
{
    double end = rt_clock_wall() + from_now;
    struct timespec ts;
    ts.tv_sec = (time_t)end;
    ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
    return ts;
}

/* ---- test functions and their shared state ------------------------------------------ */

/* A gate the "t.gate" function waits at; counts the calls that reached it. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
    int started;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static void gate_reset(void)
{
    pthread_mutex_lock(&gate.mu);
    gate.open = 0;
    gate.started = 0;
    pthread_mutex_unlock(&gate.mu);
}

static void gate_open(void)
{
    pthread_mutex_lock(&gate.mu);
    gate.open = 1;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
}

/* Waits until n calls have reached the gate (or "t.spin"). */
static void gate_wait_started(int n)
{
    struct timespec ts = abs_deadline(WAIT_LIMIT);
    pthread_mutex_lock(&gate.mu);
    while (gate.started < n)
        if (pthread_cond_timedwait(&gate.cv, &gate.mu, &ts) != 0)
            break;
    int started = gate.started;
    pthread_mutex_unlock(&gate.mu);
    if (started < n)
        fail_msg("only %d of %d calls started", started, n);
}

static void gate_note_started(void)
{
    pthread_mutex_lock(&gate.mu);
    gate.started++;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
}

/* t.gate(value?): waits until the gate opens (or the task is cancelled), returns value. */
static void fn_gate(rt_call *call)
{
    gate_note_started();
    pthread_mutex_lock(&gate.mu);
    while (!gate.open && !rt_call_cancelled(call)) {
        struct timespec ts = abs_deadline(0.001);
        pthread_cond_timedwait(&gate.cv, &gate.mu, &ts);
    }
    int open = gate.open;
    pthread_mutex_unlock(&gate.mu);
    if (!open) {
        rt_call_fail(call, "cancelled at the gate");
        return;
    }
    json_t *v = json_array_get(call->args, 0);
    rt_call_return_json(call, v ? json_incref(v) : json_null());
}

/* t.spin: spins until cancelled, then notes that it saw the flag and returns "spun". */
static int spin_observed_cancel; /* atomic */

static void fn_spin(rt_call *call)
{
    gate_note_started();
    while (!rt_call_cancelled(call))
        sleep_seconds(0.0002);
    __atomic_store_n(&spin_observed_cancel, 1, __ATOMIC_RELEASE);
    rt_call_return_json(call, json_string("spun"));
}

/* t.flaky(k, record?): fails attempts 1..k, then returns the attempt number. With record
 * true it notes when each attempt started (one such task at a time). */
#define FLAKY_MAX 16
static double flaky_times[FLAKY_MAX + 1];

static void fn_flaky(rt_call *call)
{
    if (json_is_true(json_array_get(call->args, 1)) && call->attempt <= FLAKY_MAX)
        flaky_times[call->attempt] = rt_clock_monotonic();
    json_int_t k = json_integer_value(json_array_get(call->args, 0));
    if ((json_int_t)call->attempt <= k)
        rt_call_fail(call, "flaky attempt %u", call->attempt);
    else
        rt_call_return_json(call, json_integer((json_int_t)call->attempt));
}

/* t.list(n): returns [0, 1, ..., n-1]. */
static void fn_list(rt_call *call)
{
    json_int_t n = json_integer_value(json_array_get(call->args, 0));
    json_t *out = json_array();
    for (json_int_t i = 0; i < n; i++)
        json_array_append_new(out, json_integer(i * 10));
    rt_call_return_json(call, out);
}

/* t.count(v): counts its calls and returns v. */
static int count_calls; /* atomic */

static void fn_count(rt_call *call)
{
    __atomic_add_fetch(&count_calls, 1, __ATOMIC_RELAXED);
    json_t *v = json_array_get(call->args, 0);
    rt_call_return_json(call, v ? json_incref(v) : json_null());
}

/* t.boom(...): always fails with "boom". */
static void fn_boom(rt_call *call)
{
    rt_call_fail(call, "boom");
}

/* t.nothing: returns without a result. */
static void fn_nothing(rt_call *call)
{
    (void)call;
}

/* t.busy(us): spins until cancelled or us microseconds passed; returns us. */
static void fn_busy(rt_call *call)
{
    json_int_t us = json_integer_value(json_array_get(call->args, 0));
    double end = rt_clock_monotonic() + (double)us / 1e6;
    while (!rt_call_cancelled(call) && rt_clock_monotonic() < end) {
    }
    rt_call_return_json(call, json_integer(us));
}

/* t.kw: returns its kwargs. */
static void fn_kw(rt_call *call)
{
    rt_call_return_json(call, json_incref(call->kwargs));
}

static const rt_function TEST_FUNCTIONS[] = {
    {"t.gate", RT_FUNCTION_BUILTIN, "test: waits at the gate", "[value]", "value", fn_gate},
    {"t.spin", RT_FUNCTION_BUILTIN, "test: spins until cancelled", "[]", "string", fn_spin},
    {"t.flaky", RT_FUNCTION_BUILTIN, "test: fails k times", "[k]", "attempt", fn_flaky},
    {"t.list", RT_FUNCTION_BUILTIN, "test: a list of n", "[n]", "list", fn_list},
    {"t.count", RT_FUNCTION_BUILTIN, "test: counts calls", "[value]", "value", fn_count},
    {"t.boom", RT_FUNCTION_BUILTIN, "test: fails", "[...]", "never", fn_boom},
    {"t.nothing", RT_FUNCTION_BUILTIN, "test: no result", "[]", "nothing", fn_nothing},
    {"t.busy", RT_FUNCTION_BUILTIN, "test: busy loop", "[us]", "us", fn_busy},
    {"t.kw", RT_FUNCTION_BUILTIN, "test: kwargs back", "{...}", "object", fn_kw},
};

/* ---- environment --------------------------------------------------------------------- */

typedef struct env {
    rt_store *store;
    rt_registry *registry;
    rt_scheduler *scheduler;
    rt_tasks *tasks;
} env;

static env *env_new_cfg(void **state, unsigned workers, size_t memory_limit,
                        const rt_tasks_config *cfg)
{
    gate_reset();
    __atomic_store_n(&spin_observed_cancel, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&count_calls, 0, __ATOMIC_RELAXED);
    memset(flaky_times, 0, sizeof(flaky_times));
    env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    rt_store_config sc = {.memory_limit = memory_limit};
    e->store = rt_store_new(&sc);
    e->registry = rt_registry_new();
    e->scheduler = rt_scheduler_new(workers);
    assert_non_null(e->store);
    assert_non_null(e->registry);
    assert_non_null(e->scheduler);
    assert_int_equal(rt_builtins_register(e->registry), RT_OK);
    for (size_t i = 0; i < sizeof(TEST_FUNCTIONS) / sizeof(TEST_FUNCTIONS[0]); i++)
        assert_int_equal(rt_registry_add(e->registry, &TEST_FUNCTIONS[i]), RT_OK);
    rt_tasks_config def = {.retry_base_delay = 0.001, .retry_max_delay = 0.01};
    e->tasks = rt_tasks_new(e->store, e->registry, e->scheduler, cfg ? cfg : &def);
    assert_non_null(e->tasks);
    *state = e;
    return e;
}

static env *env_new(void **state, unsigned workers)
{
    return env_new_cfg(state, workers, 0, NULL);
}

/* Teardown in the documented order; also runs after a failed assertion. */
static int env_teardown(void **state)
{
    env *e = *state;
    if (!e)
        return 0;
    gate_open();
    rt_tasks_cancel_all(e->tasks);
    rt_scheduler_free(e->scheduler);
    rt_tasks_free(e->tasks);
    rt_registry_free(e->registry);
    rt_store_free(e->store);
    free(e);
    *state = NULL;
    return 0;
}

static rt_task_spec spec_of(const char *function, json_t *args)
{
    rt_task_spec s;
    memset(&s, 0, sizeof(s));
    s.function = function;
    s.args = args;
    s.num_returns = 1;
    return s;
}

/* Submits a spec (args stolen and released here) that must be accepted; one result ref. */
static void submit_ok(env *e, rt_task_spec spec, char task_id[RT_REF_SIZE], char ref[RT_REF_SIZE])
{
    char err[256] = "";
    char refs[4][RT_REF_SIZE];
    assert_true(spec.num_returns <= 4);
    rt_status st = rt_task_submit(e->tasks, &spec, task_id, refs, err, sizeof(err));
    if (st != RT_OK)
        fail_msg("submit %s: %s: %s", spec.function, rt_status_name(st), err);
    if (ref)
        memcpy(ref, refs[0], RT_REF_SIZE);
}

static void submit_fn(env *e, const char *function, json_t *args, char task_id[RT_REF_SIZE],
                      char ref[RT_REF_SIZE])
{
    submit_ok(e, spec_of(function, args), task_id, ref);
    json_decref(args);
}

static json_t *ref_arg(const char *ref)
{
    return json_pack("{s:s}", "$ref", ref);
}

/* Waiting for an object with a store watcher and a condition variable. */
typedef struct waiter {
    rt_watcher w;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} waiter;

static void waiter_fired(rt_watcher *w, void *arg)
{
    (void)w;
    waiter *wt = arg;
    pthread_mutex_lock(&wt->mu);
    wt->done = 1;
    pthread_cond_signal(&wt->cv);
    pthread_mutex_unlock(&wt->mu);
}

/* Waits until ref leaves PENDING; returns its state. */
static rt_object_state wait_ref(env *e, const char *ref)
{
    waiter wt;
    memset(&wt, 0, sizeof(wt));
    pthread_mutex_init(&wt.mu, NULL);
    pthread_cond_init(&wt.cv, NULL);
    wt.w.fn = waiter_fired;
    wt.w.arg = &wt;
    int rc = rt_store_watch(e->store, ref, &wt.w);
    if (rc == RT_ENOTFOUND)
        fail_msg("wait_ref: %s not found", ref);
    if (rc == RT_OK) {
        struct timespec ts = abs_deadline(WAIT_LIMIT);
        pthread_mutex_lock(&wt.mu);
        while (!wt.done)
            if (pthread_cond_timedwait(&wt.cv, &wt.mu, &ts) != 0)
                break;
        int done = wt.done;
        pthread_mutex_unlock(&wt.mu);
        if (!done) {
            if (rt_store_unwatch(e->store, &wt.w)) {
                fail_msg("wait_ref: %s still pending after %g s", ref, WAIT_LIMIT);
            }
            /* Firing right now: wait for the callback to finish with wt. */
            pthread_mutex_lock(&wt.mu);
            while (!wt.done)
                pthread_cond_wait(&wt.cv, &wt.mu);
            pthread_mutex_unlock(&wt.mu);
        }
    }
    pthread_cond_destroy(&wt.cv);
    pthread_mutex_destroy(&wt.mu);
    rt_object_view v;
    memset(&v, 0, sizeof(v));
    rt_store_peek(e->store, ref, &v);
    rt_object_state s = v.state;
    rt_object_view_release(&v);
    return s;
}

/* Waits for a READY ref and returns its JSON value (new reference). */
static json_t *wait_value(env *e, const char *ref)
{
    rt_object_state s = wait_ref(e, ref);
    rt_object_view v;
    memset(&v, 0, sizeof(v));
    assert_int_equal(rt_store_peek(e->store, ref, &v), RT_OK);
    if (s != RT_OBJ_READY) {
        const char *msg = v.error ? rt_error_message(v.error) : "";
        fail_msg("ref %s is %s (%s), not ready", ref, rt_object_state_name(s), msg);
    }
    json_t *out = json_loadb(v.buf->data, v.buf->size, JSON_DECODE_ANY, NULL);
    rt_object_view_release(&v);
    assert_non_null(out);
    return out;
}

static json_int_t wait_int(env *e, const char *ref)
{
    json_t *v = wait_value(e, ref);
    if (!json_is_integer(v))
        fail_msg("ref %s does not hold an integer", ref);
    json_int_t n = json_integer_value(v);
    json_decref(v);
    return n;
}

/* Waits for an ERROR ref; returns its error (new reference). */
static rt_error *wait_error(env *e, const char *ref)
{
    rt_object_state s = wait_ref(e, ref);
    if (s != RT_OBJ_ERROR)
        fail_msg("ref %s is %s, not error", ref, rt_object_state_name(s));
    rt_object_view v;
    memset(&v, 0, sizeof(v));
    assert_int_equal(rt_store_peek(e->store, ref, &v), RT_OK);
    rt_error *err = rt_error_incref(v.error);
    rt_object_view_release(&v);
    assert_non_null(err);
    return err;
}

static bool terminal(rt_task_state s)
{
    return s == RT_TASK_FINISHED || s == RT_TASK_FAILED || s == RT_TASK_CANCELLED;
}

static rt_task_info get_info(env *e, const char *task_id)
{
    rt_task_info info;
    memset(&info, 0, sizeof(info));
    rt_status st = rt_task_get(e->tasks, task_id, &info);
    if (st != RT_OK)
        fail_msg("rt_task_get %s: %s", task_id, rt_status_name(st));
    return info;
}

/* A task's record can say RUNNING for a moment after its result refs resolved (results
 * are stored before the record ends), so this polls the record with short sleeps. */
static rt_task_state wait_task(env *e, const char *task_id)
{
    double end = rt_clock_monotonic() + WAIT_LIMIT;
    for (;;) {
        rt_task_info info = get_info(e, task_id);
        rt_task_state s = info.state;
        rt_task_info_release(&info);
        if (terminal(s))
            return s;
        if (rt_clock_monotonic() > end)
            fail_msg("task %s still %s", task_id, rt_task_state_name(s));
        sleep_seconds(0.0002);
    }
}

static rt_task_state task_state(env *e, const char *task_id)
{
    rt_task_info info = get_info(e, task_id);
    rt_task_state s = info.state;
    rt_task_info_release(&info);
    return s;
}

static rt_tasks_stats tstats(env *e)
{
    rt_tasks_stats st;
    memset(&st, 0xab, sizeof(st));
    rt_tasks_get_stats(e->tasks, &st);
    return st;
}

static rt_store_stats sstats(env *e)
{
    rt_store_stats st;
    memset(&st, 0xab, sizeof(st));
    rt_store_get_stats(e->store, &st);
    return st;
}

static unsigned peek_pins(env *e, const char *ref)
{
    rt_object_view v;
    memset(&v, 0, sizeof(v));
    rt_store_peek(e->store, ref, &v);
    unsigned pins = v.pins;
    rt_object_view_release(&v);
    return pins;
}

/* Dependencies are unpinned just after the task's record ends: poll briefly. */
static void wait_unpinned(env *e, const char *ref)
{
    double end = rt_clock_monotonic() + WAIT_LIMIT;
    while (peek_pins(e, ref) != 0 && rt_clock_monotonic() < end)
        sleep_seconds(0.0002);
    if (peek_pins(e, ref) != 0)
        fail_msg("%s still pinned %u times", ref, peek_pins(e, ref));
}

static int peek_state(env *e, const char *ref)
{
    rt_object_view v;
    memset(&v, 0, sizeof(v));
    rt_status st = rt_store_peek(e->store, ref, &v);
    int s = st == RT_ENOTFOUND ? -1 : (int)v.state;
    rt_object_view_release(&v);
    return s;
}

static void put_json(env *e, const char *text, char ref[RT_REF_SIZE])
{
    rt_buf *b = rt_buf_from(text, strlen(text), "application/json");
    assert_non_null(b);
    assert_int_equal(rt_store_put(e->store, b, 0, ref), RT_OK);
}

/* Objects in the store (every state, tombstones included) by listing. */
static size_t store_object_count(env *e)
{
    size_t total = 0;
    uint64_t cursor = 0;
    rt_object_view views[64];
    do {
        size_t n = rt_store_list(e->store, cursor, -1, 64, views, &cursor);
        for (size_t i = 0; i < n; i++)
            rt_object_view_release(&views[i]);
        total += n;
    } while (cursor);
    return total;
}

/* ---- names, lookup ----------------------------------------------------------------- */

static void test_state_names(void **state)
{
    (void)state;
    const char *names[] = {
        "PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "RUNNING", "FINISHED", "FAILED",
        "CANCELLED"};
    for (int i = 0; i < RT_TASK_STATE_COUNT; i++) {
        assert_string_equal(rt_task_state_name((rt_task_state)i), names[i]);
        assert_int_equal(rt_task_state_parse(names[i]), i);
    }
    assert_int_equal(rt_task_state_parse("running"), -1);
    assert_int_equal(rt_task_state_parse(""), -1);
    assert_int_equal(rt_task_state_parse(NULL), -1);
}

static void test_get_unknown(void **state)
{
    env *e = env_new(state, 1);
    rt_task_info info;
    memset(&info, 0, sizeof(info));
    assert_int_equal(rt_task_get(e->tasks, "tNoSuchTask", &info), RT_ENOTFOUND);
    rt_task_info_release(&info);
    rt_task_state s = RT_TASK_RUNNING;
    assert_int_equal(rt_task_cancel(e->tasks, "tNoSuchTask", &s), RT_ENOTFOUND);
    rt_task_info_release(NULL);
}

/* ---- simple results ----------------------------------------------------------------- */

static void test_simple_result(void **state)
{
    env *e = env_new(state, 2);
    char id[RT_REF_SIZE], ref[RT_REF_SIZE];
    rt_task_spec spec = spec_of("add", json_pack("[i,i]", 1, 2));
    spec.name = "my add";
    double before = rt_clock_wall();
    submit_ok(e, spec, id, ref);
    json_decref(spec.args);
    assert_true(rt_ref_valid(id));
    assert_true(rt_ref_valid(ref));
    assert_int_equal(wait_int(e, ref), 3);
    assert_int_equal(wait_task(e, id), RT_TASK_FINISHED);

    rt_task_info info = get_info(e, id);
    assert_string_equal(info.task_id, id);
    assert_string_equal(info.function, "add");
    assert_string_equal(info.name, "my add");
    assert_int_equal(info.state, RT_TASK_FINISHED);
    assert_int_equal(info.attempts, 1);
    assert_int_equal(info.num_returns, 1);
    assert_non_null(info.refs);
    assert_string_equal(info.refs[0], ref);
    assert_null(info.error);
    assert_false(info.cancel_requested);
    assert_true(info.submitted_at >= before - 1);
    assert_true(info.started_at >= info.submitted_at);
    assert_true(info.finished_at >= info.started_at);
    assert_true(info.seq > 0);
    rt_task_info_release(&info);

    rt_tasks_stats st = tstats(e);
    assert_int_equal(st.submitted, 1);
    assert_int_equal(st.finished, 1);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.cancelled, 0);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.by_state[RT_TASK_FINISHED], 1);
}

/* args_given: the task keeps the submitter's argument documents instead of copies, and
 * submission consumes them in every case: accepted, refused by validation (also the
 * valid specs of a refused batch), and with no args at all. A leak or a double release
 * here fails the sanitized run (LeakSanitizer, AddressSanitizer). */
static void test_given_args_are_consumed(void **state)
{
    env *e = env_new(state, 2);
    char id[RT_REF_SIZE], ref[RT_REF_SIZE];
    rt_task_spec spec = spec_of("add", json_pack("[i,i]", 20, 22));
    spec.kwargs = json_object();
    spec.args_given = true;
    submit_ok(e, spec, id, ref);
    assert_int_equal(wait_int(e, ref), 42);

    spec = spec_of("no_such_function", json_pack("[i]", 1));
    spec.args_given = true;
    char err[256], refs[2][RT_REF_SIZE], ids[2][RT_REF_SIZE];
    assert_int_equal(rt_task_submit(e->tasks, &spec, id, refs, err, sizeof(err)),
                     RT_ENOTFOUND);

    rt_task_spec two[2] = {spec_of("add", json_pack("[i,i]", 1, 1)),
                           spec_of("no_such_function", json_pack("[s]", "x"))};
    two[0].args_given = two[1].args_given = true;
    two[1].kwargs = json_pack("{s:i}", "k", 1);
    size_t bad = 99;
    assert_int_equal(
        rt_task_submit_many(e->tasks, two, 2, ids, refs, &bad, err, sizeof(err)),
        RT_ENOTFOUND);
    assert_int_equal(bad, 1);

    spec = spec_of("echo", NULL); /* no args: an empty list */
    spec.args_given = true;
    submit_ok(e, spec, id, ref);
    assert_int_equal(wait_task(e, id), RT_TASK_FINISHED);
    assert_int_equal(tstats(e).submitted, 2);
}

/* A function that fails, and one that returns nothing. */
static void test_function_failure(void **state)
{
    env *e = env_new(state, 2);
    char id[RT_REF_SIZE], ref[RT_REF_SIZE], id2[RT_REF_SIZE], ref2[RT_REF_SIZE];
    submit_fn(e, "div", json_pack("[i,i]", 1, 0), id, ref);
    submit_fn(e, "t.nothing", NULL, id2, ref2);
    rt_error *err = wait_error(e, ref);
    assert_int_equal(rt_error_kind_of(err), RT_ERR_TASK_ERROR);
    assert_non_null(strstr(rt_error_message(err), "zero"));
    assert_null(rt_error_cause(err));
    assert_string_equal(json_string_value(json_object_get(rt_error_fields(err), "task_id")), id);
    assert_string_equal(json_string_value(json_object_get(rt_error_fields(err), "function")),
                        "div");
    rt_error_decref(err);
    assert_int_equal(wait_task(e, id), RT_TASK_FAILED);
    rt_task_info info = get_info(e, id);
    assert_non_null(info.error);
    assert_int_equal(rt_error_kind_of(info.error), RT_ERR_TASK_ERROR);
    rt_task_info_release(&info);

    err = wait_error(e, ref2);
    assert_non_null(strstr(rt_error_message(err), "no result"));
    rt_error_decref(err);
    assert_int_equal(wait_task(e, id2), RT_TASK_FAILED);
}

/* Bytes arguments arrive as {"$bytes", "content_type"}; nested refs are not resolved. */
static void test_argument_values(void **state)
{
    env *e = env_new(state, 2);
    char bref[RT_REF_SIZE], jref[RT_REF_SIZE], id[RT_REF_SIZE], ref[RT_REF_SIZE];
    rt_buf *b = rt_buf_from("\x01\x02\x03\x04\x05", 5, "application/octet-stream");
    assert_non_null(b);
    assert_int_equal(rt_store_put(e->store, b, 0, bref), RT_OK);
    submit_fn(e, "len", json_pack("[o]", ref_arg(bref)), id, ref);
    assert_int_equal(wait_int(e, ref), 5);

    put_json(e, "{\"a\": [1, 2]}", jref);
    /* A top-level ref is resolved; the same ref nested in a list is passed through. */
    submit_fn(e, "echo", json_pack("[o,[o]]", ref_arg(jref), ref_arg(jref)), id, ref);
    json_t *v = wait_value(e, ref);
    json_t *expect = json_pack("[{s:[i,i]},[{s:s}]]", "a", 1, 2, "$ref", jref);
    assert_true(json_equal(v, expect));
    json_decref(v);
    json_decref(expect);
}

/* ---- dependencies ------------------------------------------------------------------- */

static void test_diamond(void **state)
{
    env *e = env_new(state, 3);
    char a_id[RT_REF_SIZE], a[RT_REF_SIZE], b_id[RT_REF_SIZE], b[RT_REF_SIZE];
    char c_id[RT_REF_SIZE], c[RT_REF_SIZE], d_id[RT_REF_SIZE], d[RT_REF_SIZE];
    submit_fn(e, "t.gate", json_pack("[i]", 3), a_id, a);
    gate_wait_started(1);
    submit_fn(e, "add", json_pack("[o,i]", ref_arg(a), 10), b_id, b);
    submit_fn(e, "mul", json_pack("[o,i]", ref_arg(a), 2), c_id, c);
    submit_fn(e, "add", json_pack("[o,o]", ref_arg(b), ref_arg(c)), d_id, d);
    assert_int_equal(task_state(e, b_id), RT_TASK_PENDING_ARGS_AVAIL);
    assert_int_equal(task_state(e, c_id), RT_TASK_PENDING_ARGS_AVAIL);
    assert_int_equal(task_state(e, d_id), RT_TASK_PENDING_ARGS_AVAIL);
    assert_int_equal(peek_state(e, d), RT_OBJ_PENDING);
    /* Dependencies are pinned while their dependents wait. */
    assert_int_equal(peek_pins(e, a), 2);
    rt_tasks_stats st = tstats(e);
    assert_int_equal(st.by_state[RT_TASK_PENDING_ARGS_AVAIL], 3);
    assert_int_equal(st.by_state[RT_TASK_RUNNING], 1);
    assert_int_equal(st.pending, 4);

    gate_open();
    assert_int_equal(wait_int(e, d), 13 + 6);
    assert_int_equal(wait_int(e, b), 13);
    assert_int_equal(wait_int(e, c), 6);
    assert_int_equal(wait_task(e, d_id), RT_TASK_FINISHED);
}

#define CHAIN 1000

/* Submits t.gate(start) then CHAIN-1 tasks each taking the previous ref; the function of
 * task i is fn_at(i). */
static void submit_chain(env *e, char (*ids)[RT_REF_SIZE], char (*refs)[RT_REF_SIZE],
                         json_int_t start, size_t fail_at)
{
    submit_fn(e, "t.gate", json_pack("[I]", start), ids[0], refs[0]);
    for (size_t i = 1; i < CHAIN; i++) {
        const char *fn = i == fail_at ? "t.boom" : "add";
        submit_fn(e, fn, json_pack("[o,i]", ref_arg(refs[i - 1]), 1), ids[i], refs[i]);
    }
}

static void test_chain_of_1000(void **state)
{
    env *e = env_new(state, 4);
    char(*ids)[RT_REF_SIZE] = calloc(CHAIN, RT_REF_SIZE);
    char(*refs)[RT_REF_SIZE] = calloc(CHAIN, RT_REF_SIZE);
    assert_non_null(ids);
    assert_non_null(refs);
    submit_chain(e, ids, refs, 7, (size_t)-1);
    rt_tasks_stats st = tstats(e);
    assert_int_equal(st.submitted, CHAIN);
    assert_int_equal(st.by_state[RT_TASK_PENDING_ARGS_AVAIL], CHAIN - 1);
    gate_open();
    assert_int_equal(wait_int(e, refs[CHAIN - 1]), 7 + CHAIN - 1);
    for (size_t i = 0; i < CHAIN; i++)
        assert_int_equal(wait_task(e, ids[i]), RT_TASK_FINISHED);
    for (size_t i = 0; i < CHAIN; i++)
        wait_unpinned(e, refs[i]);
    st = tstats(e);
    assert_int_equal(st.finished, CHAIN);
    assert_int_equal(st.pending, 0);
    free(ids);
    free(refs);
}

static void test_chain_failure_propagates(void **state)
{
    env *e = env_new(state, 4);
    const size_t fail_at = 400;
    char(*ids)[RT_REF_SIZE] = calloc(CHAIN, RT_REF_SIZE);
    char(*refs)[RT_REF_SIZE] = calloc(CHAIN, RT_REF_SIZE);
    assert_non_null(ids);
    assert_non_null(refs);
    submit_chain(e, ids, refs, 0, fail_at);
    gate_open();
    rt_error *last = wait_error(e, refs[CHAIN - 1]);

    /* Walk the cause chain from the last task back to the one that failed. */
    const rt_error *err = last;
    for (size_t i = CHAIN - 1; i > fail_at; i--) {
        assert_non_null(err);
        assert_int_equal(rt_error_kind_of(err), RT_ERR_TASK_ERROR);
        json_t *f = rt_error_fields(err);
        const char *tid = json_string_value(json_object_get(f, "task_id"));
        if (!tid || strcmp(tid, ids[i]) != 0)
            fail_msg("depth %zu: task_id %s, expected %s", CHAIN - 1 - i, tid ? tid : "-", ids[i]);
        assert_string_equal(json_string_value(json_object_get(f, "function")), "add");
        assert_non_null(strstr(rt_error_message(err), "did not run"));
        err = rt_error_cause(err);
    }
    assert_non_null(err);
    assert_int_equal(rt_error_kind_of(err), RT_ERR_TASK_ERROR);
    assert_string_equal(rt_error_message(err), "boom");
    assert_string_equal(json_string_value(json_object_get(rt_error_fields(err), "task_id")),
                        ids[fail_at]);
    assert_null(rt_error_cause(err));
    rt_error_decref(last);

    for (size_t i = 0; i < CHAIN; i++) {
        rt_task_state s = wait_task(e, ids[i]);
        if (i < fail_at) {
            assert_int_equal(s, RT_TASK_FINISHED);
            assert_int_equal(peek_state(e, refs[i]), RT_OBJ_READY);
        } else {
            assert_int_equal(s, RT_TASK_FAILED);
            assert_int_equal(peek_state(e, refs[i]), RT_OBJ_ERROR);
            rt_task_info info = get_info(e, ids[i]);
            /* Tasks after the failure never ran. */
            assert_int_equal(info.attempts, i == fail_at ? 1 : 0);
            assert_non_null(info.error);
            rt_task_info_release(&info);
        }
    }
    rt_tasks_stats st = tstats(e);
    assert_int_equal(st.finished, fail_at);
    assert_int_equal(st.failed, CHAIN - fail_at);
    assert_int_equal(st.pending, 0);
    free(ids);
    free(refs);
}

/* A dependency through kwargs: resolved when ready, and its error travels when failed. */
static void test_kwargs_dependencies(void **state)
{
    env *e = env_new(state, 2);
    char v_id[RT_REF_SIZE], v[RT_REF_SIZE], f_id[RT_REF_SIZE], f[RT_REF_SIZE];
    char id[RT_REF_SIZE], ref[RT_REF_SIZE];
    submit_fn(e, "add", json_pack("[i,i]", 20, 22), v_id, v);
    submit_fn(e, "fail", json_pack("[s]", "kw boom"), f_id, f);

    rt_task_spec spec = spec_of("t.kw", NULL);
    spec.kwargs = json_pack("{s:o,s:i}", "x", ref_arg(v), "y", 5);
    submit_ok(e, spec, id, ref);
    json_decref(spec.kwargs);
    json_t *got = wait_value(e, ref);
    json_t *expect = json_pack("{s:i,s:i}", "x", 42, "y", 5);
    assert_true(json_equal(got, expect));
    json_decref(got);
    json_decref(expect);

    spec.kwargs = json_pack("{s:o,s:o}", "ok", ref_arg(v), "bad", ref_arg(f));
    submit_ok(e, spec, id, ref);
    json_decref(spec.kwargs);
    rt_error *err = wait_error(e, ref);
    assert_int_equal(rt_error_kind_of(err), RT_ERR_TASK_ERROR);
    const rt_error *cause = rt_error_cause(err);
    assert_non_null(cause);
    assert_int_equal(rt_error_kind_of(cause), RT_ERR_TASK_ERROR);
    assert_string_equal(rt_error_message(cause), "kw boom");
    assert_string_equal(json_string_value(json_object_get(rt_error_fields(cause), "task_id")),
                        f_id);
    rt_error_decref(err);
    assert_int_equal(wait_task(e, id), RT_TASK_FAILED);
}

/* ---- retries ---------------------------------------------------------------------- */

static void test_retries(void **state)
{
    env *e = env_new(state, 2);
    char id[RT_REF_SIZE], ref[RT_REF_SIZE];

    /* Fails twice, retried up to 3 times: finishes on attempt 3. */
    rt_task_spec spec = spec_of("t.flaky", json_pack("[i,b]", 2, 1));
    spec.max_retries = 3;
    spec.retry_exceptions = true;
    submit_ok(e, spec, id, ref);
    assert_int_equal(wait_int(e, ref), 3);
    assert_int_equal(wait_task(e, id), RT_TASK_FINISHED);
    rt_task_info info = get_info(e, id);
    assert_int_equal(info.attempts, 3);
    assert_null(info.error);
    rt_task_info_release(&info);
    /* Backoff: base 1 ms, doubling. */
    assert_true(flaky_times[2] - flaky_times[1] >= 0.001);
    assert_true(flaky_times[3] - flaky_times[2] >= 0.002);
    assert_int_equal(tstats(e).retries, 2);

    /* Without retry_exceptions a function failure is final. */
    spec.retry_exceptions = false;
    submit_ok(e, spec, id, ref);
    rt_error *err = wait_error(e, ref);
    assert_string_equal(rt_error_message(err), "flaky attempt 1");
    rt_error_decref(err);
    assert_int_equal(wait_task(e, id), RT_TASK_FAILED);
    info = get_info(e, id);
    assert_int_equal(info.attempts, 1);
    rt_task_info_release(&info);

    /* Retries exhausted: the last attempt's error. */
    spec.retry_exceptions = true;
    spec.max_retries = 1;
    submit_ok(e, spec, id, ref);
    err = wait_error(e, ref);
    assert_string_equal(rt_error_message(err), "flaky attempt 2");
    rt_error_decref(err);
    assert_int_equal(wait_task(e, id), RT_TASK_FAILED);
    info = get_info(e, id);
    assert_int_equal(info.attempts, 2);
    rt_task_info_release(&info);
    json_decref(spec.args);

    rt_tasks_stats st = tstats(e);
    assert_int_equal(st.retries, 3);
    assert_int_equal(st.finished, 1);
    assert_int_equal(st.failed, 2);
}

/* Cancelling a task waiting out its retry backoff ends it at once. */
static void test_cancel_during_backoff(void **state)
{
    rt_tasks_config cfg = {.retry_base_delay = 30, .retry_max_delay = 30};
    env *e = env_new_cfg(state, 1, 0, &cfg);
    char id[RT_REF_SIZE], ref[RT_REF_SIZE];
    rt_task_spec spec = spec_of("t.flaky", json_pack("[i]", 5));
    spec.max_retries = 5;
    spec.retry_exceptions = true;
    submit_ok(e, spec, id, ref);
    json_decref(spec.args);
    double end = rt_clock_monotonic() + WAIT_LIMIT;
    while (tstats(e).retries < 1 && rt_clock_monotonic() < end)
        sleep_seconds(0.0005);
    assert_int_equal(tstats(e).retries, 1);
    rt_task_state s;
    assert_int_equal(rt_task_cancel(e->tasks, id, &s), RT_OK);
    assert_int_equal(s, RT_TASK_CANCELLED);
    rt_error *err = wait_error(e, ref);
    assert_int_equal(rt_error_kind_of(err), RT_ERR_TASK_CANCELLED);
    rt_error_decref(err);
    rt_task_info info = get_info(e, id);
    assert_int_equal(info.attempts, 1);
    assert_int_equal(info.state, RT_TASK_CANCELLED);
    rt_task_info_release(&info);
}

/* ---- cancel ------------------------------------------------------------------------- */


/* Statistics once no task is pending: a record shows its outcome as soon as it is decided,
 * and the counters move when the results are stored, a moment later. */
static rt_tasks_stats settled_stats(env *e)
{
    rt_tasks_stats st = tstats(e);
    for (int i = 0; i < 2000 && st.pending != 0; i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
        st = tstats(e);
    }
    return st;
}

static void test_cancel_before_run(void **state)
{
    env *e = env_new(state, 1);
    char g_id[RT_REF_SIZE], g[RT_REF_SIZE], id[RT_REF_SIZE], ref[RT_REF_SIZE];
    char d_id[RT_REF_SIZE], d[RT_REF_SIZE], m_id[RT_REF_SIZE], m[RT_REF_SIZE];
    submit_fn(e, "t.gate", json_pack("[i]", 1), g_id, g);
    gate_wait_started(1); /* the only worker is busy */
    submit_fn(e, "t.count", json_pack("[i]", 5), id, ref);
    submit_fn(e, "add", json_pack("[o,i]", ref_arg(ref), 1), d_id, d);
    assert_int_equal(task_state(e, id), RT_TASK_PENDING_NODE_ASSIGNMENT);
    assert_int_equal(task_state(e, d_id), RT_TASK_PENDING_ARGS_AVAIL);

    rt_task_state s = RT_TASK_RUNNING;
    assert_int_equal(rt_task_cancel(e->tasks, id, &s), RT_OK);
    assert_int_equal(s, RT_TASK_CANCELLED);
    rt_task_info info = get_info(e, id);
    assert_int_equal(info.state, RT_TASK_CANCELLED);
    assert_true(info.cancel_requested);
    assert_int_equal(info.attempts, 0);
    assert_true(info.started_at == 0);
    assert_true(info.finished_at > 0);
    assert_non_null(info.error);
    assert_int_equal(rt_error_kind_of(info.error), RT_ERR_TASK_CANCELLED);
    rt_task_info_release(&info);

    rt_error *err = wait_error(e, ref);
    assert_int_equal(rt_error_kind_of(err), RT_ERR_TASK_CANCELLED);
    rt_error_decref(err);
    /* The dependent fails (on the worker, so after the gate) with cause TaskCancelled. */
    gate_open();
    err = wait_error(e, d);
    assert_int_equal(rt_error_kind_of(err), RT_ERR_TASK_ERROR);
    assert_non_null(rt_error_cause(err));
    assert_int_equal(rt_error_kind_of(rt_error_cause(err)), RT_ERR_TASK_CANCELLED);
    rt_error_decref(err);
    assert_int_equal(wait_task(e, d_id), RT_TASK_FAILED);

    /* The cancelled task's job reached the worker and did not call the function. */
    submit_fn(e, "t.count", json_pack("[i]", 9), m_id, m);
    assert_int_equal(wait_int(e, m), 9);
    assert_int_equal(wait_task(e, m_id), RT_TASK_FINISHED);
    assert_int_equal(__atomic_load_n(&count_calls, __ATOMIC_RELAXED), 1);
    assert_int_equal(wait_task(e, g_id), RT_TASK_FINISHED);

    /* Cancelling again: it already ended. */
    assert_int_equal(rt_task_cancel(e->tasks, id, &s), RT_ESTATE);
    assert_int_equal(s, RT_TASK_CANCELLED);
    rt_tasks_stats st = settled_stats(e);
    assert_int_equal(st.cancelled, 1);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.finished, 2);
    assert_int_equal(st.pending, 0);
}

/* A task whose arguments are all available but that waits for a busy worker is queued:
 * PENDING_NODE_ASSIGNMENT ("queued for a worker"), not PENDING_ARGS_AVAIL ("waiting for
 * dependencies"), both when its dependency was ready at submission and when it became
 * ready later. */
static void test_queued_state_after_deps(void **state)
{
    env *e = env_new(state, 1);
    char g_id[RT_REF_SIZE], g[RT_REF_SIZE], x[RT_REF_SIZE];
    char p_id[RT_REF_SIZE], p[RT_REF_SIZE], t_id[RT_REF_SIZE], t[RT_REF_SIZE];
    char later[RT_REF_SIZE], u_id[RT_REF_SIZE], u[RT_REF_SIZE];
    submit_fn(e, "t.gate", NULL, g_id, g);
    gate_wait_started(1);
    submit_fn(e, "add", json_pack("[i,i]", 1, 1), p_id, p);
    assert_int_equal(task_state(e, p_id), RT_TASK_PENDING_NODE_ASSIGNMENT);
    put_json(e, "1", x);
    submit_fn(e, "add", json_pack("[o,i]", ref_arg(x), 1), t_id, t);
    assert_int_equal(rt_store_create_pending(e->store, later), RT_OK);
    submit_fn(e, "add", json_pack("[o,i]", ref_arg(later), 1), u_id, u);
    assert_int_equal(task_state(e, u_id), RT_TASK_PENDING_ARGS_AVAIL);
    rt_buf *b = rt_buf_from("2", 1, "application/json");
    assert_non_null(b);
    assert_int_equal(rt_store_resolve(e->store, later, b), RT_OK);
    rt_task_state ts = task_state(e, t_id), us = task_state(e, u_id);
    rt_tasks_stats st = tstats(e);
    gate_open();
    assert_int_equal(wait_int(e, t), 2);
    assert_int_equal(wait_int(e, u), 3);
    if (ts != RT_TASK_PENDING_NODE_ASSIGNMENT || us != RT_TASK_PENDING_NODE_ASSIGNMENT)
        fail_msg("queued tasks with ready arguments report %s and %s (stats: %zu waiting "
                 "for args, %zu queued)",
                 rt_task_state_name(ts), rt_task_state_name(us),
                 st.by_state[RT_TASK_PENDING_ARGS_AVAIL],
                 st.by_state[RT_TASK_PENDING_NODE_ASSIGNMENT]);
}

/* Cancelling a task waiting for its arguments: it never runs, its dependency is unpinned. */
static void test_cancel_waiting_for_args(void **state)
{
    env *e = env_new(state, 2);
    char g_id[RT_REF_SIZE], g[RT_REF_SIZE], id[RT_REF_SIZE], ref[RT_REF_SIZE];
    submit_fn(e, "t.gate", json_pack("[i]", 1), g_id, g);
    submit_fn(e, "t.count", json_pack("[o]", ref_arg(g)), id, ref);
    assert_int_equal(peek_pins(e, g), 1);
    rt_task_state s;
    assert_int_equal(rt_task_cancel(e->tasks, id, &s), RT_OK);
    assert_int_equal(s, RT_TASK_CANCELLED);
    assert_int_equal(peek_pins(e, g), 0);
    gate_open();
    assert_int_equal(wait_int(e, g), 1);
    assert_int_equal(wait_task(e, g_id), RT_TASK_FINISHED);
    rt_error *err = wait_error(e, ref);
    assert_int_equal(rt_error_kind_of(err), RT_ERR_TASK_CANCELLED);
    rt_error_decref(err);
    assert_int_equal(__atomic_load_n(&count_calls, __ATOMIC_RELAXED), 0);
}

static void test_cancel_while_running(void **state)
{
    env *e = env_new(state, 2);
    char id[RT_REF_SIZE], ref[RT_REF_SIZE];
    submit_fn(e, "t.spin", NULL, id, ref);
    gate_wait_started(1);
    assert_int_equal(task_state(e, id), RT_TASK_RUNNING);
    rt_task_state s = RT_TASK_FINISHED;
    assert_int_equal(rt_task_cancel(e->tasks, id, &s), RT_OK);
    /* RUNNING with cancel requested, or already CANCELLED if the spin saw it at once. */
    assert_true(s == RT_TASK_RUNNING || s == RT_TASK_CANCELLED);
    rt_error *err = wait_error(e, ref);
    assert_int_equal(rt_error_kind_of(err), RT_ERR_TASK_CANCELLED);
    rt_error_decref(err);
    assert_int_equal(wait_task(e, id), RT_TASK_CANCELLED);
    assert_int_equal(__atomic_load_n(&spin_observed_cancel, __ATOMIC_ACQUIRE), 1);
    rt_task_info info = get_info(e, id);
    assert_true(info.cancel_requested);
    assert_int_equal(info.attempts, 1);
    assert_true(info.started_at > 0);
    assert_non_null(info.error);
    assert_int_equal(rt_error_kind_of(info.error), RT_ERR_TASK_CANCELLED);
    rt_task_info_release(&info);
    assert_int_equal(tstats(e).cancelled, 1);
}

static void test_cancel_after_finish(void **state)
{
    env *e = env_new(state, 1);
    char id[RT_REF_SIZE], ref[RT_REF_SIZE];
    submit_fn(e, "add", json_pack("[i,i]", 2, 2), id, ref);
    assert_int_equal(wait_int(e, ref), 4);
    assert_int_equal(wait_task(e, id), RT_TASK_FINISHED);
    rt_task_state s = RT_TASK_RUNNING;
    assert_int_equal(rt_task_cancel(e->tasks, id, &s), RT_ESTATE);
    assert_int_equal(s, RT_TASK_FINISHED);
    assert_int_equal(wait_int(e, ref), 4); /* the result is untouched */
    rt_task_info info = get_info(e, id);
    assert_false(info.cancel_requested);
    assert_null(info.error);
    rt_task_info_release(&info);
    rt_tasks_stats st = tstats(e);
    assert_int_equal(st.cancelled, 0);
    assert_int_equal(st.finished, 1);
}

/* Many threads cancel tasks while they run, wait, or finish. */
#define STORM_TASKS 1200
#define STORM_THREADS 4

typedef struct storm {
    env *e;
    char (*ids)[RT_REF_SIZE];
    size_t *published; /* atomic: ids[0 .. *published) are submitted */
    int seed;
    int ok_cancelled, ok_running; /* cancel answers seen by this thread */
    int unexpected;               /* answers other than RT_OK / RT_ESTATE */
    int *running_answer;          /* per task: 1 when some cancel said RUNNING (atomic) */
} storm;

static void *storm_main(void *arg)
{
    storm *s = arg;
    unsigned r = (unsigned)s->seed * 2654435761u + 1;
    for (int round = 0; round < 2 * STORM_TASKS; round++) {
        size_t n = __atomic_load_n(s->published, __ATOMIC_ACQUIRE);
        if (n == 0) {
            sleep_seconds(0.0001);
            continue;
        }
        r = r * 1103515245u + 12345u;
        size_t i = (r >> 8) % n;
        rt_task_state st;
        rt_status rc = rt_task_cancel(s->e->tasks, s->ids[i], &st);
        if (rc == RT_OK && st == RT_TASK_CANCELLED)
            s->ok_cancelled++;
        else if (rc == RT_OK && st == RT_TASK_RUNNING) {
            s->ok_running++;
            __atomic_store_n(&s->running_answer[i], 1, __ATOMIC_RELAXED);
        } else if (rc != RT_ESTATE) {
            s->unexpected++;
        }
        if (round % 8 == 0)
            sleep_seconds(0.0002);
    }
    return NULL;
}

static void test_cancel_storm(void **state)
{
    env *e = env_new(state, 4);
    char(*ids)[RT_REF_SIZE] = calloc(STORM_TASKS, RT_REF_SIZE);
    char(*refs)[RT_REF_SIZE] = calloc(STORM_TASKS, RT_REF_SIZE);
    int *running_answer = calloc(STORM_TASKS, sizeof(int));
    size_t published = 0;
    assert_non_null(ids);
    assert_non_null(refs);
    assert_non_null(running_answer);
    pthread_t threads[STORM_THREADS];
    storm storms[STORM_THREADS];
    for (int t = 0; t < STORM_THREADS; t++) {
        storms[t] = (storm){.e = e, .ids = ids, .published = &published, .seed = t + 1,
                            .running_answer = running_answer};
        assert_int_equal(pthread_create(&threads[t], NULL, storm_main, &storms[t]), 0);
    }
    /* Mixed work: busy loops, quick adds, failures, retries, and dependents. */
    for (size_t i = 0; i < STORM_TASKS; i++) {
        rt_task_spec spec;
        switch (i % 6) {
        case 0:
        case 1: spec = spec_of("t.busy", json_pack("[i]", 500)); break;
        case 2: spec = spec_of("add", json_pack("[i,i]", (int)i, 1)); break;
        case 3:
            spec = spec_of("t.flaky", json_pack("[i]", 1));
            spec.max_retries = 2;
            spec.retry_exceptions = true;
            break;
        case 4: spec = spec_of("t.boom", NULL); break;
        default: spec = spec_of("t.count", json_pack("[o]", ref_arg(refs[i - 5]))); break;
        }
        submit_ok(e, spec, ids[i], refs[i]);
        json_decref(spec.args);
        __atomic_store_n(&published, i + 1, __ATOMIC_RELEASE);
    }
    for (int t = 0; t < STORM_THREADS; t++)
        pthread_join(threads[t], NULL);

    size_t counts[RT_TASK_STATE_COUNT] = {0};
    int late_finish = 0;
    for (size_t i = 0; i < STORM_TASKS; i++) {
        rt_object_state os = wait_ref(e, refs[i]);
        rt_task_state s = wait_task(e, ids[i]);
        counts[s]++;
        if (s == RT_TASK_FINISHED) {
            assert_int_equal(os, RT_OBJ_READY);
            if (__atomic_load_n(&running_answer[i], __ATOMIC_RELAXED))
                late_finish++;
        } else {
            assert_int_equal(os, RT_OBJ_ERROR);
        }
        rt_task_info info = get_info(e, ids[i]);
        if (s == RT_TASK_CANCELLED) {
            assert_non_null(info.error);
            assert_int_equal(rt_error_kind_of(info.error), RT_ERR_TASK_CANCELLED);
        }
        rt_task_info_release(&info);
    }
    int ok_cancelled = 0;
    for (int t = 0; t < STORM_THREADS; t++) {
        ok_cancelled += storms[t].ok_cancelled;
        assert_int_equal(storms[t].unexpected, 0);
    }
    if (getenv("RAYD_TEST_VERBOSE")) {
        int ok_running = 0;
        for (int t = 0; t < STORM_THREADS; t++)
            ok_running += storms[t].ok_running;
        print_message("storm: %zu finished, %zu failed, %zu cancelled; cancel answered "
                      "CANCELLED %d, RUNNING %d\n",
                      counts[RT_TASK_FINISHED], counts[RT_TASK_FAILED], counts[RT_TASK_CANCELLED],
                      ok_cancelled, ok_running);
    }
    if (late_finish)
        print_message("note: %d tasks finished normally after a cancel answered "
                      "RT_OK/RUNNING\n",
                      late_finish);
    rt_tasks_stats st = tstats(e);
    assert_int_equal(st.submitted, STORM_TASKS);
    assert_int_equal(st.finished + st.failed + st.cancelled, STORM_TASKS);
    assert_int_equal(st.finished, counts[RT_TASK_FINISHED]);
    assert_int_equal(st.failed, counts[RT_TASK_FAILED]);
    assert_int_equal(st.cancelled, counts[RT_TASK_CANCELLED]);
    assert_int_equal(st.pending, 0);
    for (int s = 0; s < RT_TASK_STATE_COUNT; s++)
        assert_int_equal(st.by_state[s], counts[s]);
    /* Every cancel that answered CANCELLED ended a distinct task. */
    assert_true((size_t)ok_cancelled <= counts[RT_TASK_CANCELLED]);
    assert_true(counts[RT_TASK_CANCELLED] > 0);
    free(ids);
    free(refs);
    free(running_answer);
}

/* Cancels (rt_tasks_cancel_all, as at shutdown) racing with submissions of tasks that have
 * many dependencies: every task ends cancelled or finished, and once all have ended no
 * dependency is left pinned. Each task has its own dependency objects. */
#define RACE_DEPS 32
#define RACE_TASKS 800

typedef struct race {
    env *e;
    int stop; /* atomic */
} race;

static void *cancel_all_main(void *arg)
{
    race *r = arg;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE))
        rt_tasks_cancel_all(r->e->tasks);
    return NULL;
}

static void test_cancel_races_submission(void **state)
{
    env *e = env_new(state, 2);
    char(*objs)[RT_REF_SIZE] = calloc((size_t)RACE_TASKS * RACE_DEPS, RT_REF_SIZE);
    char(*ids)[RT_REF_SIZE] = calloc(RACE_TASKS, RT_REF_SIZE);
    char(*refs)[RT_REF_SIZE] = calloc(RACE_TASKS, RT_REF_SIZE);
    json_t **args = calloc(RACE_TASKS, sizeof(*args));
    assert_non_null(objs);
    assert_non_null(ids);
    assert_non_null(refs);
    assert_non_null(args);
    for (int i = 0; i < RACE_TASKS; i++) {
        args[i] = json_array();
        for (int k = 0; k < RACE_DEPS; k++) {
            put_json(e, "1", objs[i * RACE_DEPS + k]);
            json_array_append_new(args[i], ref_arg(objs[i * RACE_DEPS + k]));
        }
    }
    race r = {.e = e};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_all_main, &r), 0);
    for (int i = 0; i < RACE_TASKS; i++)
        submit_ok(e, spec_of("echo", args[i]), ids[i], refs[i]);
    __atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    size_t counts[RT_TASK_STATE_COUNT] = {0};
    for (int i = 0; i < RACE_TASKS; i++) {
        wait_ref(e, refs[i]);
        counts[wait_task(e, ids[i])]++;
    }
    assert_int_equal(counts[RT_TASK_FINISHED] + counts[RT_TASK_CANCELLED], RACE_TASKS);
    rt_tasks_stats st = tstats(e);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.finished + st.cancelled, RACE_TASKS);
    /* Every task ended; dependencies are unpinned just after a record ends: wait for the
     * pins to go (the store's own count), and none may stay. */
    unsigned leaked = 0, tasks_leaking = 0;
    for (double end = rt_clock_monotonic() + WAIT_LIMIT;; sleep_seconds(0.0005)) {
        leaked = tasks_leaking = 0;
        for (int i = 0; i < RACE_TASKS; i++) {
            unsigned mine = 0;
            for (int k = 0; k < RACE_DEPS; k++)
                mine += peek_pins(e, objs[i * RACE_DEPS + k]);
            leaked += mine;
            tasks_leaking += mine > 0;
        }
        if (!leaked || rt_clock_monotonic() > end)
            break;
    }
    for (int i = 0; i < RACE_TASKS; i++)
        json_decref(args[i]);
    free(objs);
    free(ids);
    free(refs);
    free(args);
    if (leaked)
        fail_msg("%u pins left on the dependencies of %u tasks after all %d ended "
                 "(%zu cancelled)",
                 leaked, tasks_leaking, RACE_TASKS, counts[RT_TASK_CANCELLED]);
}

/* max_pending holds under concurrent submission. */
#define LIMIT_THREADS 8
#define LIMIT_MAX 60

typedef struct limiter {
    env *e;
    int accepted, refused;
} limiter;

static void *limit_main(void *arg)
{
    limiter *l = arg;
    json_t *a = json_pack("[i]", 1);
    for (int i = 0; i < LIMIT_MAX; i++) {
        rt_task_spec spec = spec_of("t.gate", a);
        char id[RT_REF_SIZE], ref[1][RT_REF_SIZE], err[128];
        rt_status st = rt_task_submit(l->e->tasks, &spec, id, ref, err, sizeof(err));
        if (st == RT_OK)
            l->accepted++;
        else if (st == RT_ELIMIT)
            l->refused++;
    }
    json_decref(a);
    return NULL;
}

static void test_max_pending_concurrent(void **state)
{
    rt_tasks_config cfg = {.max_pending = LIMIT_MAX, .retry_base_delay = 0.001};
    env *e = env_new_cfg(state, 1, 0, &cfg);
    for (int round = 0; round < 30; round++) {
        unsigned long long submitted_before = tstats(e).submitted;
        pthread_t th[LIMIT_THREADS];
        limiter ls[LIMIT_THREADS];
        for (int t = 0; t < LIMIT_THREADS; t++) {
            ls[t] = (limiter){.e = e};
            assert_int_equal(pthread_create(&th[t], NULL, limit_main, &ls[t]), 0);
        }
        int accepted = 0;
        for (int t = 0; t < LIMIT_THREADS; t++) {
            pthread_join(th[t], NULL);
            accepted += ls[t].accepted;
        }
        rt_tasks_stats st = tstats(e);
        if (accepted > LIMIT_MAX)
            fail_msg("round %d: max_pending %d, but %d tasks were accepted (pending now %zu)",
                     round, LIMIT_MAX, accepted, st.pending);
        assert_int_equal(st.submitted - submitted_before, (unsigned long long)accepted);
        /* Let them all end before the next round. */
        rt_tasks_cancel_all(e->tasks);
        double end = rt_clock_monotonic() + WAIT_LIMIT;
        while (tstats(e).pending > 0 && rt_clock_monotonic() < end)
            sleep_seconds(0.0005);
        assert_int_equal(tstats(e).pending, 0);
    }
}

/* ---- num_returns ----------------------------------------------------------------------- */

static void test_num_returns(void **state)
{
    env *e = env_new(state, 2);
    char id[RT_REF_SIZE], refs[3][RT_REF_SIZE], err[256];
    rt_task_spec spec = spec_of("t.list", json_pack("[i]", 3));
    spec.num_returns = 3;
    assert_int_equal(rt_task_submit(e->tasks, &spec, id, refs, err, sizeof(err)), RT_OK);
    json_decref(spec.args);
    assert_string_not_equal(refs[0], refs[1]);
    assert_string_not_equal(refs[1], refs[2]);
    for (int i = 0; i < 3; i++)
        assert_int_equal(wait_int(e, refs[i]), i * 10);
    assert_int_equal(wait_task(e, id), RT_TASK_FINISHED);
    rt_task_info info = get_info(e, id);
    assert_int_equal(info.num_returns, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(info.refs[i], refs[i]);
    rt_task_info_release(&info);

    /* A list of the wrong length, and no list: every ref fails. */
    const char *fns[2] = {"t.list", "t.count"};
    for (int k = 0; k < 2; k++) {
        spec = spec_of(fns[k], json_pack("[i]", 2));
        spec.num_returns = 3;
        assert_int_equal(rt_task_submit(e->tasks, &spec, id, refs, err, sizeof(err)), RT_OK);
        json_decref(spec.args);
        for (int i = 0; i < 3; i++) {
            rt_error *er = wait_error(e, refs[i]);
            assert_int_equal(rt_error_kind_of(er), RT_ERR_TASK_ERROR);
            assert_non_null(strstr(rt_error_message(er), "num_returns=3"));
            rt_error_decref(er);
        }
        assert_int_equal(wait_task(e, id), RT_TASK_FAILED);
    }
}

/* ---- validation, limits, all-or-nothing ------------------------------------------------- */

static void test_validate(void **state)
{
    env *e = env_new(state, 1);
    char err[256], ref[RT_REF_SIZE], missing[RT_REF_SIZE];
    put_json(e, "1", ref);
    rt_ref_generate(missing, 'o');
    char longname[RT_TASK_NAME_MAX + 2];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;

    rt_task_spec ok = spec_of("add", json_pack("[o,i]", ref_arg(ref), 1));
    assert_int_equal(rt_task_validate(e->tasks, &ok, err, sizeof(err)), RT_OK);

    struct {
        rt_task_spec spec;
        rt_status expect;
    } cases[12];
    size_t n = 0;
    cases[n].spec = spec_of("nope", NULL), cases[n++].expect = RT_ENOTFOUND;
    cases[n].spec = spec_of(NULL, NULL), cases[n++].expect = RT_ENOTFOUND;
    cases[n].spec = ok, cases[n].spec.num_returns = 0, cases[n++].expect = RT_EINVAL;
    cases[n].spec = ok, cases[n].spec.num_returns = RT_TASK_NUM_RETURNS_MAX + 1,
    cases[n++].expect = RT_EINVAL;
    cases[n].spec = ok, cases[n].spec.max_retries = -2, cases[n++].expect = RT_EINVAL;
    cases[n].spec = ok, cases[n].spec.timeout = -1, cases[n++].expect = RT_EINVAL;
    cases[n].spec = ok, cases[n].spec.name = longname, cases[n++].expect = RT_EINVAL;
    cases[n].spec = ok, cases[n].spec.name = "a\nb", cases[n++].expect = RT_EINVAL;
    json_t *not_list = json_object(), *not_obj = json_array();
    json_t *missing_ref = json_pack("[o]", ref_arg(missing));
    json_t *bad_ref = json_pack("[{s:i}]", "$ref", 5);
    json_t *extra_ref = json_pack("{s:{s:s,s:i}}", "k", "$ref", ref, "x", 1);
    cases[n].spec = spec_of("echo", not_list), cases[n++].expect = RT_EINVAL;
    cases[n].spec = spec_of("echo", NULL), cases[n].spec.kwargs = not_obj,
    cases[n++].expect = RT_EINVAL;
    cases[n].spec = spec_of("echo", missing_ref), cases[n++].expect = RT_EINVAL;
    cases[n].spec = spec_of("echo", bad_ref), cases[n++].expect = RT_EINVAL;
    for (size_t i = 0; i < n; i++) {
        err[0] = 0;
        rt_status st = rt_task_validate(e->tasks, &cases[i].spec, err, sizeof(err));
        if (st != cases[i].expect)
            fail_msg("case %zu: %s, expected %s", i, rt_status_name(st),
                     rt_status_name(cases[i].expect));
        assert_true(strlen(err) > 0);
    }
    rt_task_spec kw = spec_of("echo", NULL);
    kw.kwargs = extra_ref;
    assert_int_equal(rt_task_validate(e->tasks, &kw, err, sizeof(err)), RT_EINVAL);
    /* Validation did nothing. */
    assert_int_equal(tstats(e).submitted, 0);
    json_decref(ok.args);
    json_decref(not_list);
    json_decref(not_obj);
    json_decref(missing_ref);
    json_decref(bad_ref);
    json_decref(extra_ref);
}

static void test_max_pending(void **state)
{
    rt_tasks_config cfg = {.max_pending = 5, .retry_base_delay = 0.001};
    env *e = env_new_cfg(state, 1, 0, &cfg);
    char ids[8][RT_REF_SIZE], refs[8][RT_REF_SIZE], err[256];
    for (int i = 0; i < 3; i++)
        submit_fn(e, "t.gate", json_pack("[i]", i), ids[i], refs[i]);
    gate_wait_started(1);
    size_t objects = store_object_count(e);

    rt_task_spec specs[3];
    for (int i = 0; i < 3; i++)
        specs[i] = spec_of("add", NULL);
    json_t *args = json_pack("[i,i]", 1, 1);
    for (int i = 0; i < 3; i++)
        specs[i].args = args;
    size_t bad = 99;
    err[0] = 0;
    assert_int_equal(
        rt_task_submit_many(e->tasks, specs, 3, ids + 3, refs + 3, &bad, err, sizeof(err)),
        RT_ELIMIT);
    assert_true(strlen(err) > 0);
    assert_int_equal(store_object_count(e), objects);
    assert_int_equal(tstats(e).submitted, 3);
    assert_int_equal(tstats(e).pending, 3);

    assert_int_equal(
        rt_task_submit_many(e->tasks, specs, 2, ids + 3, refs + 3, &bad, err, sizeof(err)), RT_OK);
    char id[RT_REF_SIZE], ref[RT_REF_SIZE];
    assert_int_equal(rt_task_submit(e->tasks, &specs[0], id, &ref, err, sizeof(err)), RT_ELIMIT);
    assert_int_equal(store_object_count(e), objects + 2);
    rt_tasks_stats st = tstats(e);
    assert_int_equal(st.submitted, 5);
    assert_int_equal(st.pending, 5);

    gate_open();
    for (int i = 0; i < 5; i++)
        wait_task(e, ids[i]);
    assert_int_equal(tstats(e).pending, 0);
    submit_ok(e, specs[0], id, ref);
    assert_int_equal(wait_int(e, ref), 2);
    json_decref(args);
}

static void test_submit_many_all_or_nothing(void **state)
{
    env *e = env_new(state, 2);
    char ids[4][RT_REF_SIZE], refs[8][RT_REF_SIZE], err[256], obj[RT_REF_SIZE];
    char missing[RT_REF_SIZE];
    put_json(e, "5", obj);
    rt_ref_generate(missing, 'o');
    json_t *a1 = json_pack("[i,i]", 1, 2);
    json_t *a2 = json_pack("[i]", 2);
    json_t *a3 = json_pack("[o,i]", ref_arg(obj), 10);
    json_t *a_missing = json_pack("[o,i]", ref_arg(missing), 10);

    rt_task_spec specs[3] = {spec_of("add", a1), spec_of("t.list", a2), spec_of("add", a3)};
    specs[1].num_returns = 2;
    size_t objects = store_object_count(e);
    rt_store_stats ss = sstats(e);

    struct {
        int index;
        rt_task_spec bad;
        rt_status expect;
    } cases[4] = {{1, spec_of("no.such", a2), RT_ENOTFOUND},
                  {2, spec_of("add", a1), RT_EINVAL},
                  {2, spec_of("add", a_missing), RT_EINVAL},
                  {0, spec_of("add", a1), RT_EINVAL}};
    cases[1].bad.num_returns = 0;
    cases[3].bad.max_retries = -3;
    for (int c = 0; c < 4; c++) {
        rt_task_spec tried[3] = {specs[0], specs[1], specs[2]};
        tried[cases[c].index] = cases[c].bad;
        size_t bad = 99;
        err[0] = 0;
        rt_status st = rt_task_submit_many(e->tasks, tried, 3, ids, refs, &bad, err, sizeof(err));
        assert_int_equal(st, cases[c].expect);
        assert_int_equal(bad, (size_t)cases[c].index);
        assert_true(strlen(err) > 0);
        rt_tasks_stats ts = tstats(e);
        assert_int_equal(ts.submitted, 0);
        assert_int_equal(ts.pending, 0);
        assert_int_equal(store_object_count(e), objects);
        rt_store_stats now = sstats(e);
        assert_int_equal(now.objects, ss.objects);
        assert_int_equal(now.pending, 0);
        rt_task_info infos[4];
        uint64_t next;
        assert_int_equal(rt_task_list(e->tasks, 0, -1, NULL, 4, infos, &next), 0);
    }

    /* All good: ids per spec, refs spec by spec (1 + 2 + 1). */
    size_t bad = 99;
    assert_int_equal(rt_task_submit_many(e->tasks, specs, 3, ids, refs, &bad, err, sizeof(err)),
                     RT_OK);
    assert_int_equal(wait_int(e, refs[0]), 3);
    assert_int_equal(wait_int(e, refs[1]), 0);
    assert_int_equal(wait_int(e, refs[2]), 10);
    assert_int_equal(wait_int(e, refs[3]), 15);
    rt_task_info info = get_info(e, ids[1]);
    assert_string_equal(info.refs[0], refs[1]);
    assert_string_equal(info.refs[1], refs[2]);
    rt_task_info_release(&info);
    assert_int_equal(tstats(e).submitted, 3);
    /* Consecutive seqs in spec order. */
    rt_task_info i0 = get_info(e, ids[0]), i2 = get_info(e, ids[2]);
    assert_int_equal(i2.seq, i0.seq + 2);
    rt_task_info_release(&i0);
    rt_task_info_release(&i2);
    json_decref(a1);
    json_decref(a2);
    json_decref(a3);
    json_decref(a_missing);
}

/* ---- lost and pinned dependencies ---------------------------------------------------- */

static void test_freed_dependency(void **state)
{
    env *e = env_new(state, 2);
    char g_id[RT_REF_SIZE], g[RT_REF_SIZE], x[RT_REF_SIZE];
    char t_id[RT_REF_SIZE], t[RT_REF_SIZE], u_id[RT_REF_SIZE], u[RT_REF_SIZE];
    char g2_id[RT_REF_SIZE], g2[RT_REF_SIZE];
    /* Both workers busy; t waits in the queue for a READY object that is then freed. */
    submit_fn(e, "t.gate", json_pack("[i]", 1), g_id, g);
    submit_fn(e, "t.gate", json_pack("[i]", 2), g2_id, g2);
    gate_wait_started(2);
    put_json(e, "7", x);
    submit_fn(e, "add", json_pack("[o,i]", ref_arg(x), 1), t_id, t);
    assert_int_equal(peek_pins(e, x), 1);
    assert_int_equal(rt_store_delete(e->store, x), RT_OK);
    /* u waits for a PENDING result that is freed before it resolves. */
    submit_fn(e, "add", json_pack("[i,o]", 1, ref_arg(g)), u_id, u);
    assert_int_equal(rt_store_delete(e->store, g), RT_OK);
    gate_open();

    const char *which[2] = {t, u};
    const char *ids[2] = {t_id, u_id};
    const char *gone[2] = {x, g};
    for (int k = 0; k < 2; k++) {
        rt_error *err = wait_error(e, which[k]);
        assert_int_equal(rt_error_kind_of(err), RT_ERR_TASK_ERROR);
        const rt_error *cause = rt_error_cause(err);
        assert_non_null(cause);
        assert_int_equal(rt_error_kind_of(cause), RT_ERR_OBJECT_LOST);
        assert_non_null(strstr(rt_error_message(cause), "freed"));
        assert_string_equal(json_string_value(json_object_get(rt_error_fields(cause), "ref")),
                            gone[k]);
        rt_error_decref(err);
        assert_int_equal(wait_task(e, ids[k]), RT_TASK_FAILED);
    }
    /* The producer of the freed result still finishes. */
    assert_int_equal(wait_task(e, g_id), RT_TASK_FINISHED);
    assert_int_equal(peek_state(e, g), RT_OBJ_LOST);
    assert_int_equal(wait_task(e, g2_id), RT_TASK_FINISHED);
}

static void test_pinned_dependency(void **state)
{
    env *e = env_new_cfg(state, 1, 1000, NULL);
    char g_id[RT_REF_SIZE], g[RT_REF_SIZE], x[RT_REF_SIZE], t_id[RT_REF_SIZE], t[RT_REF_SIZE];
    char text[301];
    text[0] = '"';
    memset(text + 1, 'x', 298);
    text[299] = '"';
    text[300] = 0;
    put_json(e, text, x);
    submit_fn(e, "t.gate", NULL, g_id, g);
    gate_wait_started(1);
    submit_fn(e, "len", json_pack("[o]", ref_arg(x)), t_id, t);
    assert_int_equal(peek_pins(e, x), 1);
    assert_false(terminal(task_state(e, t_id)));

    /* Fill the store several times over: x stays. */
    char other[RT_REF_SIZE];
    for (int i = 0; i < 12; i++) {
        rt_buf *b = rt_buf_new(300, NULL);
        assert_non_null(b);
        memset(b->data, 'o', 300);
        assert_int_equal(rt_store_put(e->store, b, 0, other), RT_OK);
    }
    assert_true(sstats(e).evictions >= 8);
    assert_int_equal(peek_state(e, x), RT_OBJ_READY);

    gate_open();
    assert_int_equal(wait_int(e, t), 298);
    assert_int_equal(wait_task(e, t_id), RT_TASK_FINISHED);
    wait_unpinned(e, x);
    for (int i = 0; i < 12; i++) {
        rt_buf *b = rt_buf_new(300, NULL);
        assert_non_null(b);
        memset(b->data, 'p', 300);
        assert_int_equal(rt_store_put(e->store, b, 0, other), RT_OK);
    }
    assert_int_equal(peek_state(e, x), RT_OBJ_LOST);
}

/* ---- cancel_all, listing ------------------------------------------------------------ */

static void test_cancel_all(void **state)
{
    env *e = env_new(state, 1);
    char ids[8][RT_REF_SIZE], refs[8][RT_REF_SIZE];
    submit_fn(e, "t.gate", NULL, ids[0], refs[0]);
    gate_wait_started(1);
    for (int i = 1; i < 6; i++)
        submit_fn(e, "add", json_pack("[i,i]", i, i), ids[i], refs[i]);
    char never[RT_REF_SIZE];
    assert_int_equal(rt_store_create_pending(e->store, never), RT_OK);
    submit_fn(e, "add", json_pack("[o,i]", ref_arg(never), 1), ids[6], refs[6]);
    assert_int_equal(task_state(e, ids[6]), RT_TASK_PENDING_ARGS_AVAIL);
    assert_int_equal(rt_tasks_cancel_all(e->tasks), 7);
    assert_int_equal(peek_pins(e, never), 0);
    for (int i = 0; i < 7; i++) {
        rt_error *err = wait_error(e, refs[i]);
        assert_int_equal(rt_error_kind_of(err), RT_ERR_TASK_CANCELLED);
        rt_error_decref(err);
        assert_int_equal(wait_task(e, ids[i]), RT_TASK_CANCELLED);
    }
    assert_int_equal(rt_tasks_cancel_all(e->tasks), 0);
    rt_tasks_stats st = tstats(e);
    assert_int_equal(st.cancelled, 7);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.by_state[RT_TASK_CANCELLED], 7);
}

static void test_list_paging_and_filters(void **state)
{
    env *e = env_new(state, 2);
    enum { N = 10 };
    char ids[N][RT_REF_SIZE], refs[N][RT_REF_SIZE];
    for (int i = 0; i < N; i++) {
        if (i % 3 == 2)
            submit_fn(e, "fail", NULL, ids[i], refs[i]);
        else
            submit_fn(e, "add", json_pack("[i,i]", i, i), ids[i], refs[i]);
    }
    for (int i = 0; i < N; i++)
        wait_task(e, ids[i]);

    /* All, 3 at a time, in submission order. */
    rt_task_info infos[N + 1];
    uint64_t cursor = 0, prev_seq = 0;
    int seen = 0, pages = 0;
    do {
        size_t n = rt_task_list(e->tasks, cursor, -1, NULL, 3, infos, &cursor);
        pages++;
        assert_true(n <= 3);
        for (size_t k = 0; k < n; k++) {
            assert_true(seen < N);
            assert_string_equal(infos[k].task_id, ids[seen]);
            assert_true(infos[k].seq > prev_seq);
            prev_seq = infos[k].seq;
            seen++;
            rt_task_info_release(&infos[k]);
        }
        if (cursor)
            assert_int_equal(n, 3);
    } while (cursor && pages < 20);
    assert_int_equal(seen, N);
    assert_int_equal(pages, 4);

    /* An exact last page has no next cursor. */
    uint64_t next = 123;
    assert_int_equal(rt_task_list(e->tasks, 0, -1, NULL, N, infos, &next), N);
    assert_int_equal(next, 0);
    for (int k = 0; k < N; k++)
        rt_task_info_release(&infos[k]);

    /* Filters. */
    size_t n = rt_task_list(e->tasks, 0, RT_TASK_FAILED, NULL, N, infos, &next);
    assert_int_equal(n, 3);
    for (size_t k = 0; k < n; k++) {
        assert_string_equal(infos[k].function, "fail");
        assert_int_equal(infos[k].state, RT_TASK_FAILED);
        assert_non_null(infos[k].error);
        rt_task_info_release(&infos[k]);
    }
    n = rt_task_list(e->tasks, 0, -1, "add", 4, infos, &next);
    assert_int_equal(n, 4);
    assert_true(next != 0);
    for (size_t k = 0; k < n; k++)
        rt_task_info_release(&infos[k]);
    n = rt_task_list(e->tasks, next, -1, "add", 4, infos, &next);
    assert_int_equal(n, 3);
    assert_int_equal(next, 0);
    for (size_t k = 0; k < n; k++) {
        assert_string_equal(infos[k].function, "add");
        rt_task_info_release(&infos[k]);
    }
    assert_int_equal(rt_task_list(e->tasks, 0, RT_TASK_FINISHED, "fail", N, infos, &next), 0);
    assert_int_equal(next, 0);
    assert_int_equal(rt_task_list(e->tasks, 0, RT_TASK_RUNNING, NULL, N, infos, &next), 0);
    /* After the last seq: nothing. */
    assert_int_equal(rt_task_list(e->tasks, prev_seq, -1, NULL, N, infos, &next), 0);
}

/* Ended records beyond max_kept are forgotten, oldest first. */
static void test_max_kept(void **state)
{
    rt_tasks_config cfg = {.max_kept = 5, .retry_base_delay = 0.001};
    env *e = env_new_cfg(state, 1, 0, &cfg);
    enum { N = 20 };
    char ids[N][RT_REF_SIZE], refs[N][RT_REF_SIZE];
    for (int i = 0; i < N; i++)
        submit_fn(e, "add", json_pack("[i,i]", i, 1), ids[i], refs[i]);
    assert_int_equal(wait_int(e, refs[N - 1]), N);
    wait_task(e, ids[N - 1]);
    rt_task_info info;
    memset(&info, 0, sizeof(info));
    assert_int_equal(rt_task_get(e->tasks, ids[0], &info), RT_ENOTFOUND);
    /* Results outlive their records. */
    assert_int_equal(wait_int(e, refs[0]), 1);
    rt_tasks_stats st = settled_stats(e);
    assert_int_equal(st.finished, N);
    assert_true(st.by_state[RT_TASK_FINISHED] <= 6);
    assert_true(st.by_state[RT_TASK_FINISHED] >= 5);
}

/* Thousands of records through a small max_kept: the table grows and forgets from every
 * position in its chains, and afterwards exactly the newest records are found. */
static void test_max_kept_many(void **state)
{
    enum { N = 3000, KEEP = 200 };
    rt_tasks_config cfg = {.max_kept = KEEP, .retry_base_delay = 0.001};
    env *e = env_new_cfg(state, 2, 0, &cfg);
    static char ids[N][RT_REF_SIZE], refs[N][RT_REF_SIZE];
    for (int i = 0; i < N; i++) {
        submit_fn(e, "add", json_pack("[i,i]", i, 1), ids[i], refs[i]);
        if (i % 500 == 499) /* let them end in waves, so that forgetting interleaves */
            assert_int_equal(wait_int(e, refs[i]), i + 1);
    }
    for (int i = 0; i < N; i++) /* results outlive their records */
        assert_int_equal(wait_int(e, refs[i]), i + 1);
    (void)settled_stats(e);
    rt_task_info info;
    int found_old = 0, missing_new = 0;
    for (int i = 0; i < N; i++) {
        memset(&info, 0, sizeof(info));
        rt_status st = rt_task_get(e->tasks, ids[i], &info);
        if (st == RT_OK)
            rt_task_info_release(&info);
        if (i < N - KEEP - KEEP / 64 - 1 && st == RT_OK)
            found_old++;
        if (i >= N - KEEP && st != RT_OK)
            missing_new++;
    }
    if (found_old || missing_new)
        fail_msg("%d old records still found, %d of the newest %d missing", found_old,
                 missing_new, KEEP);
    rt_tasks_stats st = settled_stats(e);
    assert_int_equal(st.finished, N);
}

/* A long history does not make a page dear: 60,000 ended tasks, then 2 running. A page of
 * RUNNING tasks and a page from a cursor near the end look at what they hold (plus a
 * logarithm), and every page of a function filter at no more than its budget, where
 * walking from the oldest record under the table's lock looked at all 60,000 for each. */
static void test_list_cost_with_long_history(void **state)
{
    enum { N = 60000, BATCH = 1000 };
    env *e = env_new(state, 2);
    rt_task_spec *specs = calloc(BATCH, sizeof(*specs));
    char(*ids)[RT_REF_SIZE] = malloc(BATCH * sizeof(*ids));
    char(*refs)[RT_REF_SIZE] = malloc(BATCH * sizeof(*refs));
    assert_true(specs && ids && refs);
    for (int b = 0; b < N / BATCH; b++) {
        for (int i = 0; i < BATCH; i++)
            specs[i] = spec_of("add", json_pack("[i,i]", i, 1));
        size_t bad;
        char err[256];
        assert_int_equal(
            rt_task_submit_many(e->tasks, specs, BATCH, ids, refs, &bad, err, sizeof(err)),
            RT_OK);
        for (int i = 0; i < BATCH; i++)
            json_decref(specs[i].args);
    }
    free(specs);
    free(ids);
    free(refs);
    rt_tasks_stats st = tstats(e);
    for (double end = rt_clock_monotonic() + WAIT_LIMIT;
         st.finished < N && rt_clock_monotonic() < end; st = tstats(e))
        sleep_seconds(0.005);
    assert_int_equal(st.finished, N);
    char g1[RT_REF_SIZE], g2[RT_REF_SIZE], r1[RT_REF_SIZE], r2[RT_REF_SIZE];
    submit_fn(e, "t.gate", json_pack("[i]", 1), g1, r1);
    submit_fn(e, "t.gate", json_pack("[i]", 2), g2, r2);
    gate_wait_started(2);

    rt_task_info infos[10];
    uint64_t next, v = rt__tasks_list_visits(e->tasks);
    size_t n = rt_task_list(e->tasks, 0, RT_TASK_RUNNING, NULL, 10, infos, &next);
    uint64_t running_cost = rt__tasks_list_visits(e->tasks) - v;
    assert_int_equal(n, 2);
    assert_int_equal(next, 0);
    assert_string_equal(infos[0].task_id, g1);
    for (size_t i = 0; i < n; i++)
        rt_task_info_release(&infos[i]);

    v = rt__tasks_list_visits(e->tasks);
    n = rt_task_list(e->tasks, N - 5, -1, NULL, 10, infos, &next);
    uint64_t deep_cost = rt__tasks_list_visits(e->tasks) - v;
    assert_int_equal(n, 7); /* the last 5 adds and the 2 gates */
    assert_int_equal(infos[0].seq, N - 4);
    for (size_t i = 0; i < n; i++)
        rt_task_info_release(&infos[i]);

    uint64_t cursor = 0, worst = 0;
    int pages = 0, found = 0;
    do {
        v = rt__tasks_list_visits(e->tasks);
        n = rt_task_list(e->tasks, cursor, -1, "t.gate", 10, infos, &cursor);
        uint64_t cost = rt__tasks_list_visits(e->tasks) - v;
        worst = cost > worst ? cost : worst;
        found += (int)n;
        for (size_t i = 0; i < n; i++)
            rt_task_info_release(&infos[i]);
        pages++;
    } while (cursor && pages < 1000);
    fprintf(stderr, "  visits: RUNNING page %llu, deep page %llu, function filter: %d pages, "
                    "the dearest %llu\n",
            (unsigned long long)running_cost, (unsigned long long)deep_cost, pages,
            (unsigned long long)worst);
    assert_int_equal(found, 2);
    assert_true(running_cost < 200);
    assert_true(deep_cost < 200);
    assert_true(pages > 1);           /* the budget cut the history into pages */
    assert_true(worst < 3 * 4096 + 200); /* and bounds each, whatever the history */
    gate_open();
    wait_task(e, g1);
    wait_task(e, g2);
}

/* A task's timeout reaches the function as a deadline. */
static void test_timeout(void **state)
{
    env *e = env_new(state, 1);
    char id[RT_REF_SIZE], ref[RT_REF_SIZE];
    rt_task_spec spec = spec_of("sleep", json_pack("[i]", 10));
    spec.timeout = 0.05;
    double t0 = rt_clock_monotonic();
    submit_ok(e, spec, id, ref);
    json_decref(spec.args);
    rt_error *err = wait_error(e, ref);
    assert_true(rt_clock_monotonic() - t0 < 5);
    assert_non_null(strstr(rt_error_message(err), "timed out"));
    rt_error_decref(err);
    assert_int_equal(wait_task(e, id), RT_TASK_FAILED);
}

/* ---- asynchronous functions: the cancel hook -------------------------------------- */

/* t.held: an asynchronous function that keeps its call until its cancel hook completes it,
 * on the cancelling thread (hook_mode 0, as a remote attempt still waiting for a slot is)
 * or on another thread while the hook waits for it (hook_mode 1, as the I/O thread may). */
static struct {
    pthread_mutex_t mu;
    rt_call *call;
    rt_call_complete_fn complete;
    void *arg;
    int hook_mode;
} held = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, NULL, 0};

static void held_start(const rt_function *fn, rt_call *call, rt_call_complete_fn complete,
                       void *arg)
{
    (void)fn;
    pthread_mutex_lock(&held.mu);
    held.call = call;
    held.complete = complete;
    held.arg = arg;
    pthread_mutex_unlock(&held.mu);
    gate_note_started();
}

static void *held_complete_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&held.mu);
    rt_call *call = held.call;
    held.call = NULL;
    pthread_mutex_unlock(&held.mu);
    if (call) {
        rt_call_fail(call, "cancelled before it was sent");
        held.complete(call, held.arg);
    }
    return NULL;
}

static void held_cancel(const rt_function *fn, rt_call *call)
{
    (void)fn;
    (void)call;
    if (held.hook_mode == 0) {
        held_complete_main(NULL);
    } else {
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, held_complete_main, NULL), 0);
        pthread_join(th, NULL);
    }
}

static const rt_function HELD_FUNCTION = {
    .name = "t.held", .kind = RT_FUNCTION_REMOTE, .description = "test: held until cancelled",
    .args_doc = "[]", .returns_doc = "never", .start = held_start, .cancel = held_cancel};

/* A cancel whose hook completes the attempt (here or on another thread meanwhile) returns,
 * and the task ends CANCELLED. It once deadlocked: the hook ran under the task's lock and
 * completion takes it. alarm() turns a hang into a failure. */
static void cancel_with_hook(void **state, int mode)
{
    env *e = env_new(state, 2);
    held.hook_mode = mode;
    assert_int_equal(rt_registry_add(e->registry, &HELD_FUNCTION), RT_OK);
    char id[RT_REF_SIZE], ref[RT_REF_SIZE];
    submit_fn(e, "t.held", NULL, id, ref);
    gate_wait_started(1);
    assert_int_equal(task_state(e, id), RT_TASK_RUNNING);
    rt_task_state s = RT_TASK_FINISHED;
    alarm((unsigned)WAIT_LIMIT);
    assert_int_equal(rt_task_cancel(e->tasks, id, &s), RT_OK);
    alarm(0);
    assert_int_equal(s, RT_TASK_CANCELLED);
    assert_int_equal(task_state(e, id), RT_TASK_CANCELLED);
    rt_error *err = wait_error(e, ref);
    assert_int_equal(rt_error_kind_of(err), RT_ERR_TASK_CANCELLED);
    rt_error_decref(err);
    rt_task_info info = get_info(e, id);
    assert_int_equal(info.attempts, 1);
    rt_task_info_release(&info);
    /* a second cancel finds it ended */
    assert_int_equal(rt_task_cancel(e->tasks, id, &s), RT_ESTATE);
}

static void test_cancel_hook_completes_inline(void **state)
{
    cancel_with_hook(state, 0);
}

static void test_cancel_hook_completes_elsewhere(void **state)
{
    cancel_with_hook(state, 1);
}

#define T(fn) cmocka_unit_test_teardown(fn, env_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_names),
        T(test_get_unknown),
        T(test_simple_result),
        T(test_given_args_are_consumed),
        T(test_function_failure),
        T(test_argument_values),
        T(test_diamond),
        T(test_chain_of_1000),
        T(test_chain_failure_propagates),
        T(test_kwargs_dependencies),
        T(test_retries),
        T(test_cancel_during_backoff),
        T(test_cancel_before_run),
        T(test_cancel_waiting_for_args),
        T(test_queued_state_after_deps),
        T(test_cancel_while_running),
        T(test_cancel_after_finish),
        T(test_cancel_storm),
        T(test_cancel_races_submission),
        T(test_max_pending_concurrent),
        T(test_num_returns),
        T(test_validate),
        T(test_max_pending),
        T(test_submit_many_all_or_nothing),
        T(test_freed_dependency),
        T(test_pinned_dependency),
        T(test_cancel_all),
        T(test_list_paging_and_filters),
        T(test_max_kept),
        T(test_max_kept_many),
        T(test_list_cost_with_long_history),
        T(test_timeout),
        T(test_cancel_hook_completes_inline),
        T(test_cancel_hook_completes_elsewhere),
    };
    return cmocka_run_group_tests_name("runtime/task", tests, NULL, NULL);
}
