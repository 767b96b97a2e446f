/* Unit tests for runtime/builtin_classes.c: Counter, KV, Queue and Accumulator found through
 * an actor system's class table, their constructors and methods called directly with good,
 * bad and hostile inputs, exact results and messages, and the fatal Counter.crash. */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/actor.h"
#include "runtime/function.h"
#include "runtime/object_store.h"
#include "runtime/scheduler.h"

static rt_store *store;         /* owned by the group setup */
static rt_scheduler *scheduler; /* owned by the group setup */
static rt_actors *actors;       /* owned by the group setup */

static int group_setup(void **state)
{
    (void)state;
    rt_store_config store_cfg = {0};
    rt_actors_config cfg = {.max_kept_dead = 16};
    store = rt_store_new(&store_cfg);
    scheduler = rt_scheduler_new(1);
    actors = store && scheduler ? rt_actors_new(store, scheduler, &cfg) : NULL;
    if (!actors || rt_builtin_classes_register(actors) != RT_OK)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    rt_scheduler_free(scheduler); /* stopped before the actor system goes */
    rt_actors_free(actors);
    rt_store_free(store);
    scheduler = NULL;
    actors = NULL;
    store = NULL;
    return 0;
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* Parses JSON text (NULL gives NULL); a new reference. */
static json_t *parse(const char *text)
{
    if (!text)
        return NULL;
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!v)
        fail_msg("test JSON does not parse: %s: %s", text, err.text);
    return v;
}

static const rt_actor_class *find(const char *cls_name)
{
    const rt_actor_class *cls = rt_actors_find_class(actors, cls_name);
    if (!cls)
        fail_msg("class %s is not registered", cls_name);
    return cls;
}

/* An instance: a class and the state its constructor built (owned). */
typedef struct instance {
    const rt_actor_class *cls;
    void *state;
} instance;

/* Runs the constructor (method NULL) or a method of inst with args and kwargs (borrowed;
 * NULL allowed), checking that exactly one output is set. The caller frees the outputs
 * with call_done. */
static void run(instance *inst, const char *method, json_t *args, json_t *kwargs, rt_call *call)
{
    memset(call, 0, sizeof(*call));
    int never = 0;
    call->task_id = "a-test";
    call->function = method ? method : inst->cls->name;
    call->attempt = 1;
    call->args = args;
    call->kwargs = kwargs;
    call->cancel_flag = &never;
    if (method) {
        const rt_actor_method *m = rt_actor_class_method(inst->cls, method);
        if (!m)
            fail_msg("%s has no method %s", inst->cls->name, method);
        m->fn(&inst->state, call);
    } else {
        inst->state = NULL;
        inst->cls->constructor(&inst->state, call);
    }
    call->cancel_flag = NULL;
    int outputs = (call->result_json != NULL) + (call->result_buf != NULL) + (call->error != NULL);
    if (outputs != 1)
        fail_msg("%s.%s: %d outputs set", inst->cls->name, method ? method : "__init__", outputs);
    if (call->fatal && !call->error)
        fail_msg("%s.%s: fatal without an error", inst->cls->name, method ? method : "__init__");
}

static void call_done(rt_call *call)
{
    json_decref(call->result_json);
    rt_buf_decref(call->result_buf);
    free(call->error);
    memset(call, 0, sizeof(*call));
}

/* A new instance of cls_name built from args and kwargs (JSON text or NULL); must succeed. */
static instance make(const char *cls_name, const char *args, const char *kwargs)
{
    instance inst = {find(cls_name), NULL};
    json_t *a = parse(args), *k = parse(kwargs);
    rt_call call;
    run(&inst, NULL, a, k, &call);
    if (call.error)
        fail_msg("%s(%s): unexpected failure: %s", cls_name, args ? args : "NULL", call.error);
    call_done(&call);
    json_decref(a);
    json_decref(k);
    assert_non_null(inst.state);
    return inst;
}

static void drop(instance *inst)
{
    inst->cls->destroy(inst->state);
    inst->state = NULL;
}

/* Asserts that constructing cls_name(args, kwargs) fails with exactly message. */
static void make_fails(const char *cls_name, const char *args, const char *kwargs,
                       const char *message)
{
    instance inst = {find(cls_name), NULL};
    json_t *a = parse(args), *k = parse(kwargs);
    rt_call call;
    run(&inst, NULL, a, k, &call);
    if (!call.error)
        fail_msg("%s(%s): succeeded, want failure \"%s\"", cls_name, args ? args : "NULL", message);
    assert_string_equal(call.error, message);
    assert_false(call.fatal);
    assert_null(inst.state);
    call_done(&call);
    json_decref(a);
    json_decref(k);
}

/* Asserts inst.method(args, kwargs) returns exactly want (integer and real differ). */
static void expect_ok(instance *inst, const char *method, const char *args, const char *kwargs,
                      const char *want)
{
    json_t *a = parse(args), *k = parse(kwargs);
    rt_call call;
    run(inst, method, a, k, &call);
    if (call.error)
        fail_msg("%s.%s(%s): unexpected failure: %s", inst->cls->name, method, args ? args : "NULL",
                 call.error);
    json_t *w = parse(want);
    if (!json_equal(w, call.result_json) || json_typeof(w) != json_typeof(call.result_json)) {
        char *got = json_dumps(call.result_json, JSON_ENCODE_ANY);
        fail_msg("%s.%s(%s): got %s, want %s", inst->cls->name, method, args ? args : "NULL", got,
                 want);
    }
    json_decref(w);
    call_done(&call);
    json_decref(a);
    json_decref(k);
}

/* Asserts inst.method(args, kwargs) fails with exactly message, fatally or not. */
static void expect_fail_as(instance *inst, const char *method, const char *args, const char *kwargs,
                           const char *message, bool fatal)
{
    json_t *a = parse(args), *k = parse(kwargs);
    rt_call call;
    run(inst, method, a, k, &call);
    if (!call.error) {
        char *got = json_dumps(call.result_json, JSON_ENCODE_ANY);
        fail_msg("%s.%s(%s): returned %s, want failure \"%s\"", inst->cls->name, method,
                 args ? args : "NULL", got, message);
    }
    assert_string_equal(call.error, message);
    assert_int_equal(call.fatal, fatal);
    call_done(&call);
    json_decref(a);
    json_decref(k);
}

static void expect_fail(instance *inst, const char *method, const char *args, const char *kwargs,
                        const char *message)
{
    expect_fail_as(inst, method, args, kwargs, message, false);
}

/* ---- registration ----------------------------------------------------------------------- */

static const char *const CLASS_NAMES[] = {"Accumulator", "Counter", "KV", "Queue"};
#define NCLASSES (sizeof(CLASS_NAMES) / sizeof(CLASS_NAMES[0]))

static void collect(const rt_actor_class *cls, void *arg)
{
    json_array_append_new(arg, json_string(cls->name));
}

static void test_registered_with_docs(void **state)
{
    (void)state;
    static const char *const methods[NCLASSES][6] = {
        {"add", "total", "mean", "count", NULL},
        {"incr", "get", "reset", "crash", NULL},
        {"put", "get", "delete", "keys", "size", NULL},
        {"put", "get", "size", NULL},
    };
    for (size_t i = 0; i < NCLASSES; i++) {
        const rt_actor_class *cls = find(CLASS_NAMES[i]);
        assert_string_equal(cls->name, CLASS_NAMES[i]);
        assert_int_equal(cls->kind, RT_FUNCTION_BUILTIN);
        assert_true(cls->description && strlen(cls->description) > 20);
        assert_true(cls->args_doc && *cls->args_doc);
        assert_non_null(cls->constructor);
        assert_non_null(cls->destroy);
        cls->destroy(NULL); /* accepted */
        size_t n = 0;
        while (methods[i][n])
            n++;
        assert_int_equal(cls->nmethods, n);
        for (size_t j = 0; j < n; j++) {
            const rt_actor_method *m = rt_actor_class_method(cls, methods[i][j]);
            assert_non_null(m);
            assert_string_equal(m->name, methods[i][j]);
            assert_true(m->args_doc && *m->args_doc);
            assert_true(m->description && strlen(m->description) > 10);
            assert_non_null(m->fn);
        }
        assert_null(rt_actor_class_method(cls, "nope"));
    }
    assert_non_null(strstr(find("Counter")->description, "testing restarts"));
    assert_non_null(
        strstr(rt_actor_class_method(find("Counter"), "crash")->description, "testing restarts"));
    json_t *seen = json_array();
    rt_actors_each_class(actors, collect, seen);
    assert_int_equal(json_array_size(seen), NCLASSES); /* CLASS_NAMES is in name order */
    for (size_t i = 0; i < NCLASSES; i++)
        assert_string_equal(json_string_value(json_array_get(seen, i)), CLASS_NAMES[i]);
    json_decref(seen);
    /* A second registration clashes and adds nothing. */
    assert_int_equal(rt_builtin_classes_register(actors), RT_EEXIST);
    assert_int_equal(rt_builtin_classes_register(NULL), RT_EINVAL);
}

/* ---- Counter ---------------------------------------------------------------------------- */

static void test_counter_constructor(void **state)
{
    (void)state;
    instance c = make("Counter", NULL, NULL);
    expect_ok(&c, "get", NULL, NULL, "0");
    drop(&c);
    c = make("Counter", "[]", "{}");
    expect_ok(&c, "get", NULL, NULL, "0");
    drop(&c);
    c = make("Counter", "[5]", NULL);
    expect_ok(&c, "get", "[]", NULL, "5");
    drop(&c);
    c = make("Counter", NULL, "{\"start\": -3}");
    expect_ok(&c, "get", NULL, NULL, "-3");
    drop(&c);
    c = make("Counter", "[9223372036854775807]", NULL);
    expect_ok(&c, "get", NULL, NULL, "9223372036854775807");
    drop(&c);

    make_fails("Counter", "[\"x\"]", NULL, "Counter takes an integer, got a string");
    make_fails("Counter", "[1.5]", NULL, "Counter takes an integer, got a real number");
    make_fails("Counter", "[2.0]", NULL, "Counter takes an integer, got a real number");
    make_fails("Counter", "[true]", NULL, "Counter takes an integer, got a boolean");
    make_fails("Counter", "[null]", NULL, "Counter takes an integer, got null");
    make_fails("Counter", NULL, "{\"start\": [1]}", "Counter takes an integer, got a list");
    make_fails("Counter", "[1, 2]", NULL,
               "Counter takes at most 1 argument (start), got 2 arguments");
    make_fails("Counter", "[1]", "{\"start\": 1}",
               "Counter: start given both as argument 1 and as a keyword");
    make_fails("Counter", NULL, "{\"begin\": 1}", "Counter: unknown keyword argument 'begin'");
    make_fails("Counter", "{}", NULL, "Counter: args must be a list, got an object");
    make_fails("Counter", "5", NULL, "Counter: args must be a list, got an integer");
    make_fails("Counter", "[]", "[]", "Counter: kwargs must be an object, got a list");
}

static void test_counter_methods(void **state)
{
    (void)state;
    instance c = make("Counter", NULL, NULL);
    expect_ok(&c, "incr", NULL, NULL, "1");
    expect_ok(&c, "incr", "[]", "{}", "2");
    expect_ok(&c, "incr", "[5]", NULL, "7");
    expect_ok(&c, "incr", NULL, "{\"n\": -10}", "-3");
    expect_ok(&c, "incr", "[0]", NULL, "-3");
    expect_ok(&c, "get", NULL, NULL, "-3");
    expect_ok(&c, "reset", NULL, NULL, "0");
    expect_ok(&c, "get", NULL, NULL, "0");
    expect_ok(&c, "reset", "[42]", NULL, "42");
    expect_ok(&c, "reset", NULL, "{\"value\": -7}", "-7");
    expect_ok(&c, "get", NULL, NULL, "-7");

    expect_fail(&c, "incr", "[\"1\"]", NULL, "Counter.incr takes an integer, got a string");
    expect_fail(&c, "incr", "[0.5]", NULL, "Counter.incr takes an integer, got a real number");
    expect_fail(&c, "incr", NULL, "{\"n\": null}", "Counter.incr takes an integer, got null");
    expect_fail(&c, "incr", "[1, 2]", NULL,
                "Counter.incr takes at most 1 argument (n), got 2 arguments");
    expect_fail(&c, "incr", "[1]", "{\"n\": 1}",
                "Counter.incr: n given both as argument 1 and as a keyword");
    expect_fail(&c, "incr", NULL, "{\"by\": 1}", "Counter.incr: unknown keyword argument 'by'");
    expect_fail(&c, "get", "[1]", NULL, "Counter.get takes no arguments, got 1 argument");
    expect_fail(&c, "get", NULL, "{\"x\": 1}", "Counter.get: unknown keyword argument 'x'");
    expect_fail(&c, "reset", "[{}]", NULL, "Counter.reset takes an integer, got an object");
    expect_fail(&c, "reset", "[1, 2, 3]", NULL,
                "Counter.reset takes at most 1 argument (value), got 3 arguments");
    expect_ok(&c, "get", NULL, NULL, "-7"); /* failures changed nothing */

    /* Overflow fails both ways and leaves the value. */
    expect_ok(&c, "reset", "[9223372036854775806]", NULL, "9223372036854775806");
    expect_ok(&c, "incr", NULL, NULL, "9223372036854775807");
    expect_fail(&c, "incr", NULL, NULL, "Counter.incr: integer overflow");
    expect_ok(&c, "get", NULL, NULL, "9223372036854775807");
    expect_ok(&c, "reset", "[-9223372036854775807]", NULL, "-9223372036854775807");
    expect_ok(&c, "incr", "[-1]", NULL, "-9223372036854775808");
    expect_fail(&c, "incr", "[-1]", NULL, "Counter.incr: integer overflow");
    expect_fail(&c, "incr", "[-9223372036854775808]", NULL, "Counter.incr: integer overflow");
    expect_ok(&c, "get", NULL, NULL, "-9223372036854775808");
    drop(&c);
}

static void test_counter_crash_is_fatal(void **state)
{
    (void)state;
    instance c = make("Counter", "[3]", NULL);
    expect_fail_as(&c, "crash", NULL, NULL, "Counter.crash was called: state discarded", true);
    expect_fail_as(&c, "crash", "[]", "{}", "Counter.crash was called: state discarded", true);
    /* A malformed call is an ordinary failure. */
    expect_fail_as(&c, "crash", "[1]", NULL, "Counter.crash takes no arguments, got 1 argument",
                   false);
    /* The runtime restarts by destroying the state and constructing again. */
    drop(&c);
    c = make("Counter", "[3]", NULL);
    expect_ok(&c, "get", NULL, NULL, "3");
    drop(&c);
}

static void test_counter_state_is_small(void **state)
{
    (void)state;
    instance c = make("Counter", "[1]", NULL);
    size_t bytes = malloc_usable_size(c.state);
    if (bytes > 32)
        fail_msg("a Counter's state takes %zu bytes", bytes);
    drop(&c);
}

/* ---- KV --------------------------------------------------------------------------------- */

static void test_kv_constructor(void **state)
{
    (void)state;
    instance kv = make("KV", NULL, NULL);
    expect_ok(&kv, "size", NULL, NULL, "0");
    expect_ok(&kv, "keys", NULL, NULL, "[]");
    drop(&kv);
    kv = make("KV", "[{\"b\": 2, \"a\": [1, {\"x\": null}]}]", NULL);
    expect_ok(&kv, "size", NULL, NULL, "2");
    expect_ok(&kv, "keys", NULL, NULL, "[\"a\", \"b\"]");
    expect_ok(&kv, "get", "[\"a\"]", NULL, "[1, {\"x\": null}]");
    drop(&kv);
    kv = make("KV", NULL, "{\"initial\": {\"k\": \"v\"}}");
    expect_ok(&kv, "get", "[\"k\"]", NULL, "\"v\"");
    drop(&kv);

    make_fails("KV", "[[]]", NULL, "KV takes an object, got a list");
    make_fails("KV", "[null]", NULL, "KV takes an object, got null");
    make_fails("KV", NULL, "{\"initial\": \"x\"}", "KV takes an object, got a string");
    make_fails("KV", "[{}, {}]", NULL, "KV takes at most 1 argument (initial), got 2 arguments");
    make_fails("KV", NULL, "{\"a\": 1}", "KV: unknown keyword argument 'a'");

    /* The constructor's arguments are copied: the state changing leaves them as they were,
     * so a restart builds the same state again. */
    json_t *args = parse("[{\"a\": {\"deep\": 1}}]");
    json_t *before = json_deep_copy(args);
    instance k2 = {find("KV"), NULL};
    rt_call call;
    run(&k2, NULL, args, NULL, &call);
    assert_null(call.error);
    call_done(&call);
    expect_ok(&k2, "put", "[\"a\", 2]", NULL, "{\"deep\": 1}");
    expect_ok(&k2, "put", "[\"b\", 3]", NULL, "null");
    assert_true(json_equal(args, before));
    drop(&k2);
    json_decref(args);
    json_decref(before);
}

static void test_kv_methods(void **state)
{
    (void)state;
    instance kv = make("KV", NULL, NULL);
    expect_ok(&kv, "put", "[\"a\", 1]", NULL, "null");
    expect_ok(&kv, "put", "[\"a\", {\"x\": [1, 2]}]", NULL, "1");
    expect_ok(&kv, "put", NULL, "{\"key\": \"b\", \"value\": null}", "null");
    expect_ok(&kv, "put", "[\"c\"]", "{\"value\": \"z\"}", "null");
    expect_ok(&kv, "get", "[\"a\"]", NULL, "{\"x\": [1, 2]}");
    expect_ok(&kv, "get", "[\"b\"]", NULL, "null");
    expect_ok(&kv, "get", "[\"b\", 5]", NULL, "null"); /* a stored null is a value */
    expect_ok(&kv, "get", "[\"missing\"]", NULL, "null");
    expect_ok(&kv, "get", "[\"missing\", 5]", NULL, "5");
    expect_ok(&kv, "get", NULL, "{\"key\": \"missing\", \"default\": [\"d\"]}", "[\"d\"]");
    expect_ok(&kv, "get", "[\"missing\", null]", NULL, "null");
    expect_ok(&kv, "size", NULL, NULL, "3");
    expect_ok(&kv, "delete", "[\"b\"]", NULL, "true");
    expect_ok(&kv, "delete", "[\"b\"]", NULL, "false");
    expect_ok(&kv, "delete", NULL, "{\"key\": \"never\"}", "false");
    expect_ok(&kv, "size", NULL, NULL, "2");
    expect_ok(&kv, "get", "[\"b\", \"gone\"]", NULL, "\"gone\"");

    /* Keys sort in code point order, a prefix first; NUL inside a key is kept. */
    expect_ok(&kv, "put", "[\"\", 0]", NULL, "null");
    expect_ok(&kv, "put", "[\"B\", 0]", NULL, "null");
    expect_ok(&kv, "put", "[\"ab\", 0]", NULL, "null");
    expect_ok(&kv, "put", "[\"a\\u0000b\", 7]", NULL, "null");
    expect_ok(&kv, "put", "[\"\\u00e9\", 0]", NULL, "null");
    expect_ok(&kv, "put", "[\"\\ud83d\\ude00\", 0]", NULL, "null");
    expect_ok(&kv, "put", "[\"\\uffff\", 0]", NULL, "null");
    expect_ok(&kv, "keys", NULL, NULL,
              "[\"\", \"B\", \"a\", \"a\\u0000b\", \"ab\", \"c\", \"\\u00e9\", \"\\uffff\", "
              "\"\\ud83d\\ude00\"]");
    expect_ok(&kv, "get", "[\"a\\u0000b\"]", NULL, "7");
    expect_ok(&kv, "get", "[\"a\"]", NULL, "{\"x\": [1, 2]}");
    expect_ok(&kv, "delete", "[\"a\\u0000b\"]", NULL, "true");
    expect_ok(&kv, "get", "[\"a\"]", NULL, "{\"x\": [1, 2]}");
    expect_ok(&kv, "size", NULL, NULL, "8");

    expect_fail(&kv, "put", "[1, 2]", NULL, "KV.put takes a string key, got an integer");
    expect_fail(&kv, "put", "[\"a\"]", NULL,
                "KV.put takes 2 arguments (key, value), got 1 argument");
    expect_fail(&kv, "put", NULL, "{\"value\": 1}",
                "KV.put takes 2 arguments (key, value), got 1 argument");
    expect_fail(&kv, "put", NULL, NULL, "KV.put takes 2 arguments (key, value), got 0 arguments");
    expect_fail(&kv, "put", "[\"a\", 1, 2]", NULL,
                "KV.put takes 2 arguments (key, value), got 3 arguments");
    expect_fail(&kv, "put", "[\"a\", 1]", "{\"value\": 2}",
                "KV.put: value given both as argument 2 and as a keyword");
    expect_fail(&kv, "get", NULL, NULL,
                "KV.get takes 1 or 2 arguments (key, default), got 0 arguments");
    expect_fail(&kv, "get", "[null]", NULL, "KV.get takes a string key, got null");
    expect_fail(&kv, "get", "[[\"a\"]]", NULL, "KV.get takes a string key, got a list");
    expect_fail(&kv, "delete", "[]", NULL, "KV.delete takes 1 argument (key), got 0 arguments");
    expect_fail(&kv, "delete", "[{\"$bytes\": \"YQ==\"}]", NULL,
                "KV.delete takes a string key, got a $bytes value");
    expect_fail(&kv, "keys", "[1]", NULL, "KV.keys takes no arguments, got 1 argument");
    expect_fail(&kv, "size", NULL, "{\"a\": 1}", "KV.size: unknown keyword argument 'a'");
    expect_ok(&kv, "size", NULL, NULL, "8"); /* failures changed nothing */
    drop(&kv);
}

/* A value put is copied: changing the caller's JSON afterwards does not change the KV. */
static void test_kv_copies_values(void **state)
{
    (void)state;
    instance kv = make("KV", NULL, NULL);
    json_t *args = parse("[\"k\", {\"list\": [1]}]");
    rt_call call;
    run(&kv, "put", args, NULL, &call);
    assert_null(call.error);
    call_done(&call);
    json_array_append_new(json_object_get(json_array_get(args, 1), "list"), json_integer(2));
    json_decref(args);
    expect_ok(&kv, "get", "[\"k\"]", NULL, "{\"list\": [1]}");
    drop(&kv);
}

/* ---- Queue ------------------------------------------------------------------------------ */

static void test_queue_constructor(void **state)
{
    (void)state;
    instance q = make("Queue", NULL, NULL);
    expect_ok(&q, "size", NULL, NULL, "0");
    drop(&q);
    q = make("Queue", "[[1, \"two\", [3]]]", NULL);
    expect_ok(&q, "size", NULL, NULL, "3");
    expect_ok(&q, "get", NULL, NULL, "1");
    expect_ok(&q, "put", "[4]", NULL, "3");
    expect_ok(&q, "get", NULL, NULL, "\"two\"");
    expect_ok(&q, "get", NULL, NULL, "[3]");
    expect_ok(&q, "get", NULL, NULL, "4");
    drop(&q);
    q = make("Queue", NULL, "{\"items\": []}");
    expect_ok(&q, "size", NULL, NULL, "0");
    drop(&q);
    q = make("Queue", NULL, "{\"items\": [null]}");
    expect_ok(&q, "get", NULL, NULL, "null");
    drop(&q);

    make_fails("Queue", "[{}]", NULL, "Queue takes a list, got an object");
    make_fails("Queue", "[\"abc\"]", NULL, "Queue takes a list, got a string");
    make_fails("Queue", "[[], []]", NULL,
               "Queue takes at most 1 argument (items), got 2 arguments");
    make_fails("Queue", NULL, "{\"item\": []}", "Queue: unknown keyword argument 'item'");
}

static void test_queue_fifo(void **state)
{
    (void)state;
    instance q = make("Queue", NULL, NULL);
    expect_fail(&q, "get", NULL, NULL, "Queue.get: queue is empty");
    expect_ok(&q, "put", "[\"a\"]", NULL, "1");
    expect_ok(&q, "put", NULL, "{\"item\": {\"b\": 1}}", "2");
    expect_ok(&q, "put", "[null]", NULL, "3");
    expect_ok(&q, "size", NULL, NULL, "3");
    expect_ok(&q, "get", NULL, NULL, "\"a\"");
    expect_ok(&q, "get", NULL, NULL, "{\"b\": 1}");
    expect_ok(&q, "get", NULL, NULL, "null");
    expect_fail(&q, "get", NULL, NULL, "Queue.get: queue is empty");
    expect_ok(&q, "size", NULL, NULL, "0");

    /* Many items through a growing, wrapping and shrinking ring keep their order. */
    char args[64], want[64];
    long next_in = 0, next_out = 0;
    for (int round = 0; round < 6; round++) {
        int puts = round % 2 ? 37 : 300, gets = round % 2 ? 250 : 40;
        for (int i = 0; i < puts; i++, next_in++) {
            snprintf(args, sizeof(args), "[%ld]", next_in);
            snprintf(want, sizeof(want), "%ld", next_in - next_out + 1);
            expect_ok(&q, "put", args, NULL, want);
        }
        for (int i = 0; i < gets && next_out < next_in; i++, next_out++) {
            snprintf(want, sizeof(want), "%ld", next_out);
            expect_ok(&q, "get", NULL, NULL, want);
        }
    }
    snprintf(want, sizeof(want), "%ld", next_in - next_out);
    expect_ok(&q, "size", NULL, NULL, want);
    while (next_out < next_in) {
        snprintf(want, sizeof(want), "%ld", next_out++);
        expect_ok(&q, "get", NULL, NULL, want);
    }
    expect_fail(&q, "get", NULL, NULL, "Queue.get: queue is empty");
    expect_ok(&q, "put", "[\"again\"]", NULL, "1");

    expect_fail(&q, "put", NULL, NULL, "Queue.put takes 1 argument (item), got 0 arguments");
    expect_fail(&q, "put", "[1, 2]", NULL, "Queue.put takes 1 argument (item), got 2 arguments");
    expect_fail(&q, "get", "[0]", NULL, "Queue.get takes no arguments, got 1 argument");
    expect_fail(&q, "size", "[0]", NULL, "Queue.size takes no arguments, got 1 argument");
    expect_ok(&q, "size", NULL, NULL, "1");
    drop(&q); /* frees the item still queued */

    q = make("Queue", "[[1, 2]]", NULL); /* destroyed with items, never drained */
    drop(&q);
}

/* ---- Accumulator ------------------------------------------------------------------------ */

static void test_accumulator(void **state)
{
    (void)state;
    make_fails("Accumulator", "[1]", NULL, "Accumulator takes no arguments, got 1 argument");
    make_fails("Accumulator", NULL, "{\"start\": 1}",
               "Accumulator: unknown keyword argument 'start'");
    instance a = make("Accumulator", "[]", "{}");
    expect_ok(&a, "count", NULL, NULL, "0");
    expect_ok(&a, "total", NULL, NULL, "0.0");
    expect_fail(&a, "mean", NULL, NULL, "Accumulator.mean: no values");
    expect_ok(&a, "add", "[1]", NULL, "1.0");
    expect_ok(&a, "add", "[2, 3.5]", NULL, "6.5");
    expect_ok(&a, "add", "[-0.5, 0, 2]", NULL, "8.0");
    expect_ok(&a, "count", NULL, NULL, "6");
    expect_ok(&a, "mean", NULL, NULL, "1.3333333333333333");
    expect_ok(&a, "total", NULL, NULL, "8.0");

    expect_fail(&a, "add", NULL, NULL, "Accumulator.add takes 1 or more numbers, got 0 arguments");
    expect_fail(&a, "add", "[]", NULL, "Accumulator.add takes 1 or more numbers, got 0 arguments");
    expect_fail(&a, "add", "[1, \"2\"]", NULL,
                "Accumulator.add takes numbers, got a string as argument 2");
    expect_fail(&a, "add", "[[1]]", NULL,
                "Accumulator.add takes numbers, got a list as argument 1");
    expect_fail(&a, "add", "[true]", NULL,
                "Accumulator.add takes numbers, got a boolean as argument 1");
    expect_fail(&a, "add", "[1]", "{\"x\": 1}", "Accumulator.add: unknown keyword argument 'x'");
    expect_fail(&a, "add", "{\"x\": 1}", NULL,
                "Accumulator.add: args must be a list, got an object");
    expect_fail(&a, "add", "[1]", "1", "Accumulator.add: kwargs must be an object, got an integer");
    expect_fail(&a, "add", "[1e308, 1e308]", NULL, "Accumulator.add: the total is out of range");
    expect_fail(&a, "mean", "[1]", NULL, "Accumulator.mean takes no arguments, got 1 argument");
    expect_fail(&a, "count", "[1]", NULL, "Accumulator.count takes no arguments, got 1 argument");
    /* Failures added nothing. */
    expect_ok(&a, "count", NULL, NULL, "6");
    expect_ok(&a, "total", NULL, NULL, "8.0");
    drop(&a);
}

/* Compensated: ten 0.1s make exactly 1.0 (naive summation gives 0.9999999999999999), and
 * the count stays exact while the total is a double. */
static void test_accumulator_precision(void **state)
{
    (void)state;
    instance a = make("Accumulator", NULL, NULL);
    json_t *args = parse("[0.1]");
    rt_call call;
    for (int i = 0; i < 10; i++) {
        run(&a, "add", args, NULL, &call);
        assert_null(call.error);
        call_done(&call);
    }
    json_decref(args);
    expect_ok(&a, "total", NULL, NULL, "1.0");
    expect_ok(&a, "mean", NULL, NULL, "0.1");
    expect_ok(&a, "count", NULL, NULL, "10");
    expect_ok(&a, "add", "[1e16, 1, -1e16]", NULL, "2.0");
    expect_ok(&a, "add", "[9007199254740993]", NULL, "9007199254740994.0");
    expect_ok(&a, "count", NULL, NULL, "14");
    drop(&a);
}

/* ---- hostile inputs --------------------------------------------------------------------- */

/* Every constructor and method with malformed, odd and deep inputs: exactly one output,
 * never a crash, never a fatal failure (except Counter.crash), and no leak. */
static void test_hostile_inputs_never_crash(void **state)
{
    (void)state;
    static const char *const args[] = {NULL,
                                       "[]",
                                       "{}",
                                       "null",
                                       "\"s\"",
                                       "1",
                                       "[null]",
                                       "[[]]",
                                       "[{}]",
                                       "[\"\"]",
                                       "[\"a\\u0000b\"]",
                                       "[-1]",
                                       "[1e308]",
                                       "[-9223372036854775808]",
                                       "[9223372036854775807]",
                                       "[true, false]",
                                       "[1, 2, 3, 4, 5, 6, 7, 8]",
                                       "[\"k\", [[[[[[[[[[1]]]]]]]]]]]",
                                       "[{\"$bytes\": \"!!\"}]",
                                       "[{\"\": {\"\": null}}]",
                                       "[[1, \"x\", null]]",
                                       "[\"\\ud83d\\ude00\", \"\\ud83d\\ude00\"]"};
    static const char *const kwargs[] = {NULL,
                                         "{}",
                                         "[]",
                                         "null",
                                         "1",
                                         "{\"\": 1}",
                                         "{\"n \": 1}",
                                         "{\"n\": 1}",
                                         "{\"start\": null}",
                                         "{\"key\": 1, \"value\": 2}",
                                         "{\"item\": [1]}",
                                         "{\"initial\": {\"a\": 1}}",
                                         "{\"items\": [1, 2]}",
                                         "{\"default\": 1}",
                                         "{\"value\": \"x\"}"};
    size_t nargs = sizeof(args) / sizeof(args[0]), nkwargs = sizeof(kwargs) / sizeof(kwargs[0]);
    for (size_t c = 0; c < NCLASSES; c++) {
        const rt_actor_class *cls = find(CLASS_NAMES[c]);
        for (size_t i = 0; i < nargs; i++) {
            for (size_t k = 0; k < nkwargs; k++) {
                json_t *a = parse(args[i]), *kw = parse(kwargs[k]);
                instance inst = {cls, NULL};
                rt_call call;
                run(&inst, NULL, a, kw, &call);
                assert_false(call.fatal);
                if (call.error)
                    assert_null(inst.state);
                call_done(&call);
                if (!inst.state) /* the constructor refused: use a default instance */
                    inst = make(cls->name, NULL, NULL);
                for (size_t m = 0; m < cls->nmethods; m++) {
                    run(&inst, cls->methods[m].name, a, kw, &call);
                    bool crash = strcmp(cls->name, "Counter") == 0 &&
                                 strcmp(cls->methods[m].name, "crash") == 0;
                    if (call.fatal && !crash)
                        fail_msg("%s.%s(%s, %s) failed fatally: %s", cls->name,
                                 cls->methods[m].name, args[i] ? args[i] : "NULL",
                                 kwargs[k] ? kwargs[k] : "NULL", call.error);
                    call_done(&call);
                }
                drop(&inst);
                json_decref(a);
                json_decref(kw);
            }
        }
    }
}

/* A method run without a state (a runtime bug) fails fatally instead of crashing, so the
 * actor restarts. */
static void test_missing_state_is_fatal(void **state)
{
    (void)state;
    for (size_t c = 0; c < NCLASSES; c++) {
        instance inst = {find(CLASS_NAMES[c]), NULL};
        for (size_t m = 0; m < inst.cls->nmethods; m++) {
            rt_call call;
            const char *method = inst.cls->methods[m].name;
            /* Well-formed arguments for each method so that only the state is missing. */
            json_t *a =
                parse(strcmp(method, "put") == 0
                          ? (strcmp(inst.cls->name, "KV") == 0 ? "[\"k\", 1]" : "[1]")
                      : strcmp(method, "get") == 0 && strcmp(inst.cls->name, "KV") == 0 ? "[\"k\"]"
                      : strcmp(method, "delete") == 0                                   ? "[\"k\"]"
                      : strcmp(method, "add") == 0                                      ? "[1]"
                                                                                        : "[]");
            run(&inst, method, a, NULL, &call);
            assert_non_null(call.error);
            assert_true(call.fatal);
            char want[128];
            if (strcmp(method, "crash") == 0)
                snprintf(want, sizeof(want), "Counter.crash was called: state discarded");
            else
                snprintf(want, sizeof(want), "%s.%s: the actor has no state", inst.cls->name,
                         method);
            assert_string_equal(call.error, want);
            call_done(&call);
            json_decref(a);
        }
    }
}

/* The deepest JSON the parser accepts is stored, returned and freed intact. */
static void test_deep_values(void **state)
{
    (void)state;
    enum { DEPTH = 2000 };
    char *text = malloc(2 * DEPTH + 16);
    assert_non_null(text);
    char *p = text;
    p += sprintf(p, "[\"k\", ");
    for (int i = 0; i < DEPTH; i++)
        *p++ = '[';
    for (int i = 0; i < DEPTH; i++)
        *p++ = ']';
    strcpy(p, "]");
    json_t *args = parse(text);
    instance kv = make("KV", NULL, NULL), q = make("Queue", NULL, NULL);
    rt_call call;
    run(&kv, "put", args, NULL, &call);
    assert_null(call.error);
    call_done(&call);
    json_t *item = json_array();
    json_array_append(item, json_array_get(args, 1));
    run(&q, "put", item, NULL, &call);
    assert_null(call.error);
    call_done(&call);
    json_t *key = parse("[\"k\"]");
    run(&kv, "get", key, NULL, &call);
    assert_true(json_equal(call.result_json, json_array_get(args, 1)));
    call_done(&call);
    run(&q, "get", NULL, NULL, &call);
    assert_true(json_equal(call.result_json, json_array_get(args, 1)));
    call_done(&call);
    json_decref(key);
    json_decref(item);
    json_decref(args);
    free(text);
    drop(&kv);
    drop(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registered_with_docs),
        cmocka_unit_test(test_counter_constructor),
        cmocka_unit_test(test_counter_methods),
        cmocka_unit_test(test_counter_crash_is_fatal),
        cmocka_unit_test(test_counter_state_is_small),
        cmocka_unit_test(test_kv_constructor),
        cmocka_unit_test(test_kv_methods),
        cmocka_unit_test(test_kv_copies_values),
        cmocka_unit_test(test_queue_constructor),
        cmocka_unit_test(test_queue_fifo),
        cmocka_unit_test(test_accumulator),
        cmocka_unit_test(test_accumulator_precision),
        cmocka_unit_test(test_hostile_inputs_never_crash),
        cmocka_unit_test(test_missing_state_is_fatal),
        cmocka_unit_test(test_deep_values),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
