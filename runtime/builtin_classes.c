/* The standard actor classes that ship in the binary: Counter, KV, Queue and Accumulator,
 * registered by rt_builtin_classes_register.
 *
 * Conventions shared by every class (the same as the built-in functions'):
 * - args NULL means no arguments and kwargs NULL means no keyword arguments; args that is
 *   not a list, or kwargs that is not an object, fails the call.
 * - A parameter may be given by position or by its keyword, not both. An unknown keyword
 *   fails the call ("Counter.incr: unknown keyword argument 'x'").
 * - Failures name the class and method ("Counter.incr takes an integer, got a string"); the
 *   constructor is named by the class alone ("Counter takes ..."). A failed call leaves the
 *   state as it was. Only Counter.crash fails fatally (the actor restarts or dies).
 * - Values kept in a state are deep copies that the state owns, so the caller's arguments
 *   (which the runtime may keep to re-run a constructor on restart) are never changed.
 *   Values handed back may share memory with the state, which never changes a value in
 *   place, only replaces or drops it.
 * - No method recurses into its arguments except through jansson's json_deep_copy, whose
 *   depth is bounded by the parser's, so any input is safe.
 * States are heap structs (a JSON object for KV). The runtime runs one call per actor at a
 * time, so nothing here locks. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/actor.h"
#include "runtime/function.h"

/* A Queue's ring never shrinks below this many slots. */
#define QUEUE_MIN_CAPACITY 8

/* ---- helpers ---------------------------------------------------------------------------- */

static const char *plural(size_t n)
{
    return n == 1 ? "" : "s";
}

/* A phrase naming the JSON type of v (borrowed), for messages: "a string", "null"... */
static const char *kind_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return json_object_get(v, "$bytes") ? "a $bytes value" : "an object";
    case JSON_ARRAY:
        return "a list";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "a value";
}

/* The signature of a constructor or method: its parameters in order (at most 4), of which
 * the first `required` must be given. `takes` completes "<what> takes ..." for count errors. */
typedef struct signature {
    const char *what;
    const char *takes;
    const char *params[4];
    size_t nparams, required;
} signature;

/* Binds the call's arguments to sig's parameters: out[i] is parameter i (borrowed), or NULL
 * when it was not given. On a malformed call fails it and returns false. */
static bool bind(rt_call *call, const signature *sig, json_t **out)
{
    if (call->args && !json_is_array(call->args)) {
        rt_call_fail(call, "%s: args must be a list, got %s", sig->what, kind_of(call->args));
        return false;
    }
    if (call->kwargs && !json_is_object(call->kwargs)) {
        rt_call_fail(call, "%s: kwargs must be an object, got %s", sig->what,
                     kind_of(call->kwargs));
        return false;
    }
    const char *key;
    size_t key_len;
    json_t *value;
    json_object_keylen_foreach(call->kwargs, key, key_len, value)
    {
        bool known = false;
        for (size_t i = 0; i < sig->nparams && !known; i++)
            known = strlen(sig->params[i]) == key_len && memcmp(sig->params[i], key, key_len) == 0;
        if (!known) {
            rt_call_fail(call, "%s: unknown keyword argument '%.64s'", sig->what, key);
            return false;
        }
    }
    size_t npos = json_array_size(call->args); /* 0 for NULL */
    if (npos > sig->nparams) {
        rt_call_fail(call, "%s takes %s, got %zu argument%s", sig->what, sig->takes, npos,
                     plural(npos));
        return false;
    }
    for (size_t i = 0; i < sig->nparams; i++) {
        json_t *pos = i < npos ? json_array_get(call->args, i) : NULL;
        json_t *kw = json_object_get(call->kwargs, sig->params[i]);
        if (pos && kw) {
            rt_call_fail(call, "%s: %s given both as argument %zu and as a keyword", sig->what,
                         sig->params[i], i + 1);
            return false;
        }
        out[i] = pos ? pos : kw;
    }
    for (size_t i = 0; i < sig->required; i++) {
        if (!out[i]) {
            size_t given = npos + json_object_size(call->kwargs);
            rt_call_fail(call, "%s takes %s, got %zu argument%s", sig->what, sig->takes, given,
                         plural(given));
            return false;
        }
    }
    return true;
}

/* Reads an optional integer parameter v (borrowed; NULL gives fallback) into *out, or fails
 * the call and returns false. */
static bool int_param(rt_call *call, const char *what, json_t *v, json_int_t fallback,
                      json_int_t *out)
{
    if (!v) {
        *out = fallback;
        return true;
    }
    if (!json_is_integer(v)) {
        rt_call_fail(call, "%s takes an integer, got %s", what, kind_of(v));
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

/* Reads a required string key parameter (borrowed), or fails the call. */
static bool key_param(rt_call *call, const char *what, json_t *v, const char **key, size_t *len)
{
    if (!json_is_string(v)) {
        rt_call_fail(call, "%s takes a string key, got %s", what, kind_of(v));
        return false;
    }
    *key = json_string_value(v);
    *len = json_string_length(v);
    return true;
}

/* The state of an actor, or NULL after failing the call fatally: a method of an actor
 * whose constructor set no state can only be a runtime bug, and a restart repairs it. */
static void *state_of(void **state, rt_call *call, const char *what)
{
    void *s = state ? *state : NULL;
    if (!s)
        rt_call_fail_fatal(call, "%s: the actor has no state", what);
    return s;
}

/* Takes no arguments: checks that, or fails the call. */
static bool no_args(rt_call *call, const char *what)
{
    signature sig = {what, "no arguments", {NULL}, 0, 0};
    return bind(call, &sig, NULL);
}

/* ---- Counter ---------------------------------------------------------------------------- */

/* Eight bytes per actor. */
typedef struct counter_state {
    json_int_t value;
} counter_state;

static void counter_new(void **state, rt_call *call)
{
    static const signature sig = {"Counter", "at most 1 argument (start)", {"start"}, 1, 0};
    json_t *p[1];
    json_int_t start;
    if (!bind(call, &sig, p) || !int_param(call, "Counter", p[0], 0, &start))
        return;
    counter_state *c = malloc(sizeof(*c));
    if (!c) {
        rt_call_fail(call, "out of memory");
        return;
    }
    c->value = start;
    *state = c;
    rt_call_return_json(call, json_null());
}

static void counter_destroy(void *state)
{
    free(state);
}

static void counter_incr(void **state, rt_call *call)
{
    static const signature sig = {"Counter.incr", "at most 1 argument (n)", {"n"}, 1, 0};
    json_t *p[1];
    json_int_t n, r;
    if (!bind(call, &sig, p) || !int_param(call, "Counter.incr", p[0], 1, &n))
        return;
    counter_state *c = state_of(state, call, "Counter.incr");
    if (!c)
        return;
    if (__builtin_add_overflow(c->value, n, &r)) {
        rt_call_fail(call, "Counter.incr: integer overflow");
        return;
    }
    c->value = r;
    rt_call_return_json(call, json_integer(r));
}

static void counter_get(void **state, rt_call *call)
{
    if (!no_args(call, "Counter.get"))
        return;
    counter_state *c = state_of(state, call, "Counter.get");
    if (c)
        rt_call_return_json(call, json_integer(c->value));
}

static void counter_reset(void **state, rt_call *call)
{
    static const signature sig = {"Counter.reset", "at most 1 argument (value)", {"value"}, 1, 0};
    json_t *p[1];
    json_int_t value;
    if (!bind(call, &sig, p) || !int_param(call, "Counter.reset", p[0], 0, &value))
        return;
    counter_state *c = state_of(state, call, "Counter.reset");
    if (!c)
        return;
    c->value = value;
    rt_call_return_json(call, json_integer(value));
}

static void counter_crash(void **state, rt_call *call)
{
    if (!no_args(call, "Counter.crash"))
        return;
    rt_call_fail_fatal(call, "Counter.crash was called: state discarded");
}

static const rt_actor_method COUNTER_METHODS[] = {
    {"incr", "[n: integer = 1] or {n: integer}",
     "Adds n (default 1; may be negative) and returns the new value. Overflow fails and "
     "leaves the value as it was.",
     counter_incr},
    {"get", "[]", "Returns the value.", counter_get},
    {"reset", "[value: integer = 0] or {value: integer}",
     "Sets the value (default 0) and returns it.", counter_reset},
    {"crash", "[]",
     "Always fails fatally, for testing restarts: the state is discarded and the actor "
     "restarts from its constructor's arguments (or dies when it has no restarts left).",
     counter_crash},
};

/* ---- KV --------------------------------------------------------------------------------- */

/* The state is a JSON object (owned) whose values the state owns. */

static void kv_new(void **state, rt_call *call)
{
    static const signature sig = {"KV", "at most 1 argument (initial)", {"initial"}, 1, 0};
    json_t *p[1];
    if (!bind(call, &sig, p))
        return;
    if (p[0] && !json_is_object(p[0])) {
        rt_call_fail(call, "KV takes an object, got %s", kind_of(p[0]));
        return;
    }
    json_t *map = p[0] ? json_deep_copy(p[0]) : json_object();
    if (!map) {
        rt_call_fail(call, "out of memory");
        return;
    }
    *state = map;
    rt_call_return_json(call, json_null());
}

static void kv_destroy(void *state)
{
    json_decref(state);
}

static void kv_put(void **state, rt_call *call)
{
    static const signature sig = {"KV.put", "2 arguments (key, value)", {"key", "value"}, 2, 2};
    json_t *p[2];
    const char *key;
    size_t len;
    if (!bind(call, &sig, p) || !key_param(call, "KV.put", p[0], &key, &len))
        return;
    json_t *map = state_of(state, call, "KV.put");
    if (!map)
        return;
    json_t *value = json_deep_copy(p[1]);
    json_t *previous = json_incref(json_object_getn(map, key, len));
    if (!value || json_object_setn_new(map, key, len, value) != 0) { /* steals value */
        json_decref(previous);
        rt_call_fail(call, "out of memory");
        return;
    }
    rt_call_return_json(call, previous ? previous : json_null());
}

static void kv_get(void **state, rt_call *call)
{
    static const signature sig = {
        "KV.get", "1 or 2 arguments (key, default)", {"key", "default"}, 2, 1};
    json_t *p[2];
    const char *key;
    size_t len;
    if (!bind(call, &sig, p) || !key_param(call, "KV.get", p[0], &key, &len))
        return;
    json_t *map = state_of(state, call, "KV.get");
    if (!map)
        return;
    json_t *value = json_object_getn(map, key, len);
    if (!value)
        value = p[1] ? p[1] : json_null();
    rt_call_return_json(call, json_incref(value));
}

static void kv_delete(void **state, rt_call *call)
{
    static const signature sig = {"KV.delete", "1 argument (key)", {"key"}, 1, 1};
    json_t *p[1];
    const char *key;
    size_t len;
    if (!bind(call, &sig, p) || !key_param(call, "KV.delete", p[0], &key, &len))
        return;
    json_t *map = state_of(state, call, "KV.delete");
    if (map)
        rt_call_return_json(call, json_boolean(json_object_deln(map, key, len) == 0));
}

/* A key of a KV with its length (keys may hold NUL characters). */
typedef struct kv_key {
    const char *key;
    size_t len;
} kv_key;

/* Byte order, which for UTF-8 is code point order; a prefix sorts first. */
static int compare_keys(const void *pa, const void *pb)
{
    const kv_key *a = pa, *b = pb;
    int c = memcmp(a->key, b->key, a->len < b->len ? a->len : b->len);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

static void kv_keys(void **state, rt_call *call)
{
    if (!no_args(call, "KV.keys"))
        return;
    json_t *map = state_of(state, call, "KV.keys");
    if (!map)
        return;
    size_t count = json_object_size(map), i = 0;
    kv_key *keys = count ? malloc(count * sizeof(*keys)) : NULL;
    json_t *out = json_array();
    if (!out || (count && !keys)) {
        free(keys);
        json_decref(out);
        rt_call_fail(call, "out of memory");
        return;
    }
    const char *key;
    size_t len;
    json_t *value;
    json_object_keylen_foreach(map, key, len, value) keys[i++] = (kv_key){key, len};
    if (count > 1)
        qsort(keys, count, sizeof(*keys), compare_keys);
    for (i = 0; i < count; i++) {
        if (json_array_append_new(out, json_stringn(keys[i].key, keys[i].len)) != 0) {
            json_decref(out);
            out = NULL; /* rt_call_return_json fails the call */
            break;
        }
    }
    free(keys);
    rt_call_return_json(call, out);
}

static void kv_size(void **state, rt_call *call)
{
    if (!no_args(call, "KV.size"))
        return;
    json_t *map = state_of(state, call, "KV.size");
    if (map)
        rt_call_return_json(call, json_integer((json_int_t)json_object_size(map)));
}

static const rt_actor_method KV_METHODS[] = {
    {"put", "[key: string, value: any] or {key: string, value: any}",
     "Sets key to value. Returns the value it replaced, or null when the key was new.", kv_put},
    {"get", "[key: string, default: any = null] or {key: string, default: any}",
     "Returns the value of key, or default (null when not given) when the key is missing. "
     "A stored null and a missing key both answer null unless a default is given.",
     kv_get},
    {"delete", "[key: string] or {key: string}",
     "Removes key. Returns true if it was there, false if not.", kv_delete},
    {"keys", "[]", "Returns the keys as a list of strings sorted in code point order.", kv_keys},
    {"size", "[]", "Returns the number of keys.", kv_size},
};

/* ---- Queue ------------------------------------------------------------------------------ */

/* A ring of owned items: the first is items[head], the next ones follow modulo capacity. */
typedef struct queue_state {
    json_t **items;
    size_t head, count, capacity;
} queue_state;

/* Moves the items into a new ring of `capacity` slots (>= count), first at index 0. Returns
 * false, leaving the queue as it was, when memory runs out. */
static bool queue_resize(queue_state *q, size_t capacity)
{
    if (capacity > SIZE_MAX / sizeof(json_t *))
        return false;
    json_t **items = malloc(capacity * sizeof(*items));
    if (!items)
        return false;
    for (size_t i = 0; i < q->count; i++)
        items[i] = q->items[(q->head + i) % q->capacity];
    free(q->items);
    q->items = items;
    q->head = 0;
    q->capacity = capacity;
    return true;
}

static void queue_destroy(void *state)
{
    queue_state *q = state;
    if (!q)
        return;
    for (size_t i = 0; i < q->count; i++)
        json_decref(q->items[(q->head + i) % q->capacity]);
    free(q->items);
    free(q);
}

static void queue_new(void **state, rt_call *call)
{
    static const signature sig = {"Queue", "at most 1 argument (items)", {"items"}, 1, 0};
    json_t *p[1];
    if (!bind(call, &sig, p))
        return;
    if (p[0] && !json_is_array(p[0])) {
        rt_call_fail(call, "Queue takes a list, got %s", kind_of(p[0]));
        return;
    }
    size_t n = json_array_size(p[0]);
    queue_state *q = calloc(1, sizeof(*q));
    if (!q || (n && !queue_resize(q, n))) {
        free(q);
        rt_call_fail(call, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_deep_copy(json_array_get(p[0], i));
        if (!item) {
            queue_destroy(q);
            rt_call_fail(call, "out of memory");
            return;
        }
        q->items[q->count++] = item;
    }
    *state = q;
    rt_call_return_json(call, json_null());
}

static void queue_put(void **state, rt_call *call)
{
    static const signature sig = {"Queue.put", "1 argument (item)", {"item"}, 1, 1};
    json_t *p[1];
    if (!bind(call, &sig, p))
        return;
    queue_state *q = state_of(state, call, "Queue.put");
    if (!q)
        return;
    json_t *item = json_deep_copy(p[0]);
    if (!item || (q->count == q->capacity &&
                  !queue_resize(q, q->capacity < QUEUE_MIN_CAPACITY / 2 ? QUEUE_MIN_CAPACITY
                                                                        : q->capacity * 2))) {
        json_decref(item);
        rt_call_fail(call, "out of memory");
        return;
    }
    q->items[(q->head + q->count) % q->capacity] = item;
    q->count++;
    rt_call_return_json(call, json_integer((json_int_t)q->count));
}

static void queue_get(void **state, rt_call *call)
{
    if (!no_args(call, "Queue.get"))
        return;
    queue_state *q = state_of(state, call, "Queue.get");
    if (!q)
        return;
    if (q->count == 0) {
        rt_call_fail(call, "Queue.get: queue is empty");
        return;
    }
    json_t *item = q->items[q->head];
    q->head = (q->head + 1) % q->capacity;
    q->count--;
    /* Give memory back after a burst; a failed shrink just keeps the larger ring. */
    if (q->capacity > QUEUE_MIN_CAPACITY && q->count <= q->capacity / 4)
        queue_resize(q, q->capacity / 2);
    rt_call_return_json(call, item); /* the state's reference moves to the result */
}

static void queue_size(void **state, rt_call *call)
{
    if (!no_args(call, "Queue.size"))
        return;
    queue_state *q = state_of(state, call, "Queue.size");
    if (q)
        rt_call_return_json(call, json_integer((json_int_t)q->count));
}

static const rt_actor_method QUEUE_METHODS[] = {
    {"put", "[item: any] or {item: any}", "Appends item at the back. Returns the new size.",
     queue_put},
    {"get", "[]",
     "Removes and returns the item at the front (first in, first out). Fails with \"queue "
     "is empty\" when there is none; it does not wait.",
     queue_get},
    {"size", "[]", "Returns the number of items.", queue_size},
};

/* ---- Accumulator ------------------------------------------------------------------------ */

/* A compensated (Neumaier) sum: total is sum + compensation. The count is exact. */
typedef struct accumulator_state {
    double sum, compensation;
    json_int_t count;
} accumulator_state;

static void accumulator_new(void **state, rt_call *call)
{
    if (!no_args(call, "Accumulator"))
        return;
    accumulator_state *a = calloc(1, sizeof(*a));
    if (!a) {
        rt_call_fail(call, "out of memory");
        return;
    }
    *state = a;
    rt_call_return_json(call, json_null());
}

static void accumulator_destroy(void *state)
{
    free(state);
}

static void accumulator_add(void **state, rt_call *call)
{
    if (call->args && !json_is_array(call->args)) {
        rt_call_fail(call, "Accumulator.add: args must be a list, got %s", kind_of(call->args));
        return;
    }
    if (call->kwargs && !json_is_object(call->kwargs)) {
        rt_call_fail(call, "Accumulator.add: kwargs must be an object, got %s",
                     kind_of(call->kwargs));
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach(call->kwargs, key, v)
    {
        rt_call_fail(call, "Accumulator.add: unknown keyword argument '%.64s'", key);
        return;
    }
    size_t n = json_array_size(call->args), i;
    if (n == 0) {
        rt_call_fail(call, "Accumulator.add takes 1 or more numbers, got 0 arguments");
        return;
    }
    json_array_foreach(call->args, i, v)
    {
        if (!json_is_number(v)) {
            rt_call_fail(call, "Accumulator.add takes numbers, got %s as argument %zu", kind_of(v),
                         i + 1);
            return;
        }
    }
    accumulator_state *a = state_of(state, call, "Accumulator.add");
    if (!a)
        return;
    json_int_t count;
    if (n > (size_t)INT64_MAX || __builtin_add_overflow(a->count, (json_int_t)n, &count)) {
        rt_call_fail(call, "Accumulator.add: too many values");
        return;
    }
    double sum = a->sum, compensation = a->compensation;
    json_array_foreach(call->args, i, v)
    {
        double x = json_number_value(v), t = sum + x;
        compensation += fabs(sum) >= fabs(x) ? (sum - t) + x : (x - t) + sum;
        sum = t;
    }
    double total = sum + compensation;
    if (!isfinite(sum) || !isfinite(compensation) || !isfinite(total)) {
        rt_call_fail(call, "Accumulator.add: the total is out of range");
        return;
    }
    a->sum = sum;
    a->compensation = compensation;
    a->count = count;
    rt_call_return_json(call, json_real(total));
}

static void accumulator_total(void **state, rt_call *call)
{
    if (!no_args(call, "Accumulator.total"))
        return;
    accumulator_state *a = state_of(state, call, "Accumulator.total");
    if (a)
        rt_call_return_json(call, json_real(a->sum + a->compensation));
}

static void accumulator_mean(void **state, rt_call *call)
{
    if (!no_args(call, "Accumulator.mean"))
        return;
    accumulator_state *a = state_of(state, call, "Accumulator.mean");
    if (!a)
        return;
    if (a->count == 0) {
        rt_call_fail(call, "Accumulator.mean: no values");
        return;
    }
    rt_call_return_json(call, json_real((a->sum + a->compensation) / (double)a->count));
}

static void accumulator_count(void **state, rt_call *call)
{
    if (!no_args(call, "Accumulator.count"))
        return;
    accumulator_state *a = state_of(state, call, "Accumulator.count");
    if (a)
        rt_call_return_json(call, json_integer(a->count));
}

static const rt_actor_method ACCUMULATOR_METHODS[] = {
    {"add", "[x: number, more: number, ...]",
     "Adds one or more numbers and returns the running total (a real). A total that would "
     "not be finite fails and adds nothing.",
     accumulator_add},
    {"total", "[]", "Returns the running total (a real; 0.0 before any add).", accumulator_total},
    {"mean", "[]",
     "Returns the mean of every number added (a real). Fails with \"no values\" "
     "before any add.",
     accumulator_mean},
    {"count", "[]", "Returns how many numbers were added (an integer).", accumulator_count},
};

/* ---- the table -------------------------------------------------------------------------- */

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

static rt_actor_class CLASSES[] = {
    {"Counter", RT_FUNCTION_BUILTIN,
     "An integer counter (64-bit; overflow fails). Counter.crash fails fatally, for testing "
     "restarts.",
     "[start: integer = 0] or {start: integer}", counter_new, counter_destroy, COUNTER_METHODS,
     COUNT_OF(COUNTER_METHODS)},
    {"KV", RT_FUNCTION_BUILTIN,
     "A small dictionary from string keys to JSON values, optionally built from an object.",
     "[initial: object = {}] or {initial: object}", kv_new, kv_destroy, KV_METHODS,
     COUNT_OF(KV_METHODS)},
    {"Queue", RT_FUNCTION_BUILTIN,
     "A first-in, first-out queue of JSON values, optionally built from a list (its first "
     "item at the front).",
     "[items: list = []] or {items: list}", queue_new, queue_destroy, QUEUE_METHODS,
     COUNT_OF(QUEUE_METHODS)},
    {"Accumulator", RT_FUNCTION_BUILTIN,
     "Sums numbers as they arrive and answers their total, count and mean. Totals are "
     "doubles (compensated summation); the count is exact.",
     "[]", accumulator_new, accumulator_destroy, ACCUMULATOR_METHODS,
     COUNT_OF(ACCUMULATOR_METHODS)},
};

rt_status rt_builtin_classes_register(rt_actors *actors)
{
    if (!actors)
        return RT_EINVAL;
    /* Every built-in method is a few instructions on a small state. */
    for (size_t i = 0; i < COUNT_OF(CLASSES); i++)
        CLASSES[i].quick = true;
    /* Check every name first so that a clash registers nothing. */
    for (size_t i = 0; i < COUNT_OF(CLASSES); i++)
        if (rt_actors_find_class(actors, CLASSES[i].name))
            return RT_EEXIST;
    for (size_t i = 0; i < COUNT_OF(CLASSES); i++) {
        rt_status status = rt_actors_add_class(actors, &CLASSES[i]);
        if (status != RT_OK)
            return status;
    }
    return RT_OK;
}
