/* The standard functions that ship in the binary: echo, identity, arithmetic, sum, concat,
 * len, sort, sleep, fail, sha256 and matmul, registered by rt_builtins_register.
 *
 * Conventions shared by every built-in:
 * - args NULL means no arguments and kwargs NULL means no keyword arguments; args that is
 *   not a list, or kwargs that is not an object, fails the call.
 * - A keyword argument a function does not take fails the call ("add: unknown keyword
 *   argument 'x'"). Only sleep (seconds), fail (message) and sort (reverse) take any.
 * - Failures name the function and the problem. Arguments are counted from 1 ("argument
 *   2"); positions inside a list are 0-based indexes ("index 3").
 * - Integer arithmetic stays integer (json_int_t) and fails on overflow; a real result
 *   that is not finite fails too. No function recurses into its arguments, so any input,
 *   however nested, is safe.
 * Every function is thread-safe: none keeps state. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/clock.h"
#include "runtime/function.h"
#include "runtime/sha256.h"

/* matmul refuses results with more cells than this (memory, not time, is the concern). */
#define MATMUL_MAX_CELLS (1u << 22)
/* sleep naps at most this long between checks of rt_call_cancelled. */
#define SLEEP_STEP_SECONDS 0.01

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
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "a value";
}

/* Checks the shape of the call's arguments: args a list (or NULL), kwargs an object (or
 * NULL) whose keys are all in allowed (a NULL-terminated list; NULL allows none). On
 * failure fails the call and returns false. */
static bool check_call(rt_call *call, const char *name, const char *const *allowed)
{
    if (!call)
        return false;
    if (call->args && !json_is_array(call->args)) {
        rt_call_fail(call, "%s: args must be a list, got %s", name, kind_of(call->args));
        return false;
    }
    if (call->kwargs && !json_is_object(call->kwargs)) {
        rt_call_fail(call, "%s: kwargs must be an object, got %s", name, kind_of(call->kwargs));
        return false;
    }
    const char *key;
    json_t *value;
    json_object_foreach(call->kwargs, key, value)
    {
        bool known = false;
        for (const char *const *a = allowed; a && *a && !known; a++)
            known = strcmp(*a, key) == 0;
        if (!known) {
            rt_call_fail(call, "%s: unknown keyword argument '%.64s'", name, key);
            return false;
        }
    }
    return true;
}

static size_t nargs(const rt_call *call)
{
    return json_array_size(call->args); /* 0 for NULL */
}

/* Argument i (0-based), borrowed. */
static json_t *arg(const rt_call *call, size_t i)
{
    return json_array_get(call->args, i);
}

/* Returns a real result, or fails when it is not finite. */
static void return_real(rt_call *call, const char *name, double v)
{
    if (!isfinite(v))
        rt_call_fail(call, "%s: result is out of range", name);
    else
        rt_call_return_json(call, json_real(v));
}

/* Reads a string or $bytes argument (borrowed) like rt_call_arg_bytes; on failure fails the
 * call with a message naming argument `position` (1-based) and returns false. */
static bool bytes_arg(rt_call *call, const char *name, size_t position, json_t *v,
                      const char **data, size_t *len, char **owned)
{
    if (rt_call_arg_bytes(v, data, len, owned) == 0)
        return true;
    if (json_is_object(v) && json_object_get(v, "$bytes"))
        rt_call_fail(call, "%s: argument %zu is not a valid $bytes value", name, position);
    else
        rt_call_fail(call, "%s: argument %zu must be a string or a $bytes value, got %s", name,
                     position, kind_of(v));
    return false;
}

/* A number as a long double: exact for every json_int_t where long double is wider. */
static long double number_ld(const json_t *v)
{
    return json_is_integer(v) ? (long double)json_integer_value(v) : json_real_value(v);
}

/* ---- echo, identity --------------------------------------------------------------------- */

static void fn_echo(rt_call *call)
{
    if (!check_call(call, "echo", NULL))
        return;
    size_t n = nargs(call);
    if (n == 0)
        rt_call_return_json(call, json_null());
    else if (n == 1)
        rt_call_return_json(call, json_incref(arg(call, 0)));
    else
        rt_call_return_json(call, json_copy(call->args)); /* shallow: shares the items */
}

static void fn_identity(rt_call *call)
{
    if (!check_call(call, "identity", NULL))
        return;
    size_t n = nargs(call);
    if (n != 1) {
        rt_call_fail(call, "identity takes 1 argument, got %zu argument%s", n, plural(n));
        return;
    }
    rt_call_return_json(call, json_incref(arg(call, 0)));
}

/* ---- arithmetic ------------------------------------------------------------------------- */

typedef enum arith_op { OP_ADD, OP_SUB, OP_MUL, OP_DIV } arith_op;

static void arith(rt_call *call, const char *name, arith_op op)
{
    if (!check_call(call, name, NULL))
        return;
    size_t n = nargs(call);
    if (n != 2) {
        rt_call_fail(call, "%s takes 2 numbers, got %zu argument%s", name, n, plural(n));
        return;
    }
    json_t *a = arg(call, 0), *b = arg(call, 1);
    for (size_t i = 0; i < 2; i++) {
        json_t *v = arg(call, i);
        if (!json_is_number(v)) {
            rt_call_fail(call, "%s: argument %zu must be a number, got %s", name, i + 1,
                         kind_of(v));
            return;
        }
    }
    if (op == OP_DIV) { /* always real, like Python's / */
        long double y = number_ld(b);
        if (y == 0) {
            rt_call_fail(call, "division by zero");
            return;
        }
        return_real(call, name, (double)(number_ld(a) / y));
        return;
    }
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b), r;
        bool overflow = op == OP_ADD   ? __builtin_add_overflow(x, y, &r)
                        : op == OP_SUB ? __builtin_sub_overflow(x, y, &r)
                                       : __builtin_mul_overflow(x, y, &r);
        if (overflow)
            rt_call_fail(call, "%s: integer overflow", name);
        else
            rt_call_return_json(call, json_integer(r));
        return;
    }
    double x = json_number_value(a), y = json_number_value(b);
    return_real(call, name, op == OP_ADD ? x + y : op == OP_SUB ? x - y : x * y);
}

static void fn_add(rt_call *call)
{
    arith(call, "add", OP_ADD);
}

static void fn_sub(rt_call *call)
{
    arith(call, "sub", OP_SUB);
}

static void fn_mul(rt_call *call)
{
    arith(call, "mul", OP_MUL);
}

static void fn_div(rt_call *call)
{
    arith(call, "div", OP_DIV);
}

/* ---- sum -------------------------------------------------------------------------------- */

static void fn_sum(rt_call *call)
{
    if (!check_call(call, "sum", NULL))
        return;
    size_t n = nargs(call);
    if (n != 1) {
        rt_call_fail(call, "sum takes 1 list of numbers, got %zu argument%s", n, plural(n));
        return;
    }
    json_t *list = arg(call, 0);
    if (!json_is_array(list)) {
        rt_call_fail(call, "sum: argument 1 must be a list of numbers, got %s", kind_of(list));
        return;
    }
    bool all_int = true;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (!json_is_number(v)) {
            rt_call_fail(call, "sum: index %zu of the list must be a number, got %s", i,
                         kind_of(v));
            return;
        }
        all_int = all_int && json_is_integer(v);
    }
    if (all_int) {
        json_int_t total = 0;
        json_array_foreach(list, i, v)
        {
            if (__builtin_add_overflow(total, json_integer_value(v), &total)) {
                rt_call_fail(call, "sum: integer overflow");
                return;
            }
        }
        rt_call_return_json(call, json_integer(total));
        return;
    }
    double total = 0;
    json_array_foreach(list, i, v) total += json_number_value(v);
    return_real(call, "sum", total);
}

/* ---- concat ----------------------------------------------------------------------------- */

static void fn_concat(rt_call *call)
{
    if (!check_call(call, "concat", NULL))
        return;
    size_t n = nargs(call);
    if (n == 0) {
        rt_call_fail(call, "concat takes at least 1 string or list, got 0 arguments");
        return;
    }
    json_t *first = arg(call, 0);
    if (!json_is_string(first) && !json_is_array(first)) {
        rt_call_fail(call, "concat: argument 1 must be a string or a list, got %s",
                     kind_of(first));
        return;
    }
    bool strings = json_is_string(first);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *v = arg(call, i);
        if (strings ? !json_is_string(v) : !json_is_array(v)) {
            rt_call_fail(call,
                         "concat: argument %zu is %s but argument 1 is %s; concat takes all "
                         "strings or all lists",
                         i + 1, kind_of(v), kind_of(first));
            return;
        }
        size_t len = strings ? json_string_length(v) : json_array_size(v);
        if (__builtin_add_overflow(total, len, &total)) {
            rt_call_fail(call, "concat: result is too large");
            return;
        }
    }
    if (!strings) {
        json_t *out = json_array();
        for (size_t i = 0; out && i < n; i++) {
            if (json_array_extend(out, arg(call, i)) != 0) {
                json_decref(out);
                out = NULL;
            }
        }
        rt_call_return_json(call, out); /* NULL: fails with out of memory */
        return;
    }
    char *buf = malloc(total + 1);
    if (!buf) {
        rt_call_fail(call, "out of memory");
        return;
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *v = arg(call, i);
        memcpy(buf + at, json_string_value(v), json_string_length(v));
        at += json_string_length(v);
    }
    buf[at] = '\0';
    /* Concatenated valid UTF-8 is valid UTF-8; embedded NULs are kept by the length. */
    rt_call_return_json(call, json_stringn_nocheck(buf, total));
    free(buf);
}

/* ---- len -------------------------------------------------------------------------------- */

static void fn_len(rt_call *call)
{
    if (!check_call(call, "len", NULL))
        return;
    size_t n = nargs(call);
    if (n != 1) {
        rt_call_fail(call, "len takes 1 argument, got %zu argument%s", n, plural(n));
        return;
    }
    json_t *v = arg(call, 0);
    size_t len;
    if (json_is_string(v)) {
        const unsigned char *s = (const unsigned char *)json_string_value(v);
        size_t bytes = json_string_length(v);
        len = 0;
        for (size_t i = 0; i < bytes; i++)
            len += (s[i] & 0xC0) != 0x80; /* count lead bytes: code points */
    } else if (json_is_array(v)) {
        len = json_array_size(v);
    } else if (json_is_object(v) && json_object_get(v, "$bytes")) {
        const char *data;
        char *owned;
        if (!bytes_arg(call, "len", 1, v, &data, &len, &owned))
            return;
        free(owned);
    } else if (json_is_object(v)) {
        len = json_object_size(v);
    } else {
        rt_call_fail(call, "len: argument 1 must be a string, list, object or $bytes value, "
                           "got %s",
                     kind_of(v));
        return;
    }
    rt_call_return_json(call, json_integer((json_int_t)len));
}

/* ---- sort ------------------------------------------------------------------------------- */

typedef struct sort_item {
    json_t *value; /* borrowed */
    size_t index;  /* position in the input: ties keep it, so the sort is stable */
} sort_item;

static int compare_values(const json_t *a, const json_t *b)
{
    if (json_is_string(a)) { /* byte order of UTF-8 is code point order */
        size_t la = json_string_length(a), lb = json_string_length(b);
        int c = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
        return c ? c : (la > lb) - (la < lb);
    }
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return (x > y) - (x < y);
    }
    long double x = number_ld(a), y = number_ld(b);
    return (x > y) - (x < y);
}

static int compare_items(const void *pa, const void *pb, void *reverse)
{
    const sort_item *a = pa, *b = pb;
    int c = compare_values(a->value, b->value);
    if (*(const bool *)reverse)
        c = -c;
    return c ? c : (a->index > b->index) - (a->index < b->index);
}

static void fn_sort(rt_call *call)
{
    static const char *const kw[] = {"reverse", NULL};
    if (!check_call(call, "sort", kw))
        return;
    size_t n = nargs(call);
    if (n != 1) {
        rt_call_fail(call, "sort takes 1 list of numbers or strings, got %zu argument%s", n,
                     plural(n));
        return;
    }
    json_t *rev = json_object_get(call->kwargs, "reverse");
    if (rev && !json_is_boolean(rev)) {
        rt_call_fail(call, "sort: reverse must be a boolean, got %s", kind_of(rev));
        return;
    }
    bool reverse = json_is_true(rev);
    json_t *list = arg(call, 0);
    if (!json_is_array(list)) {
        rt_call_fail(call, "sort: argument 1 must be a list of numbers or strings, got %s",
                     kind_of(list));
        return;
    }
    bool numbers = false, strings = false;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (!json_is_number(v) && !json_is_string(v)) {
            rt_call_fail(call, "sort: index %zu of the list must be a number or a string, got %s",
                         i, kind_of(v));
            return;
        }
        numbers = numbers || json_is_number(v);
        strings = strings || json_is_string(v);
        if (numbers && strings) {
            rt_call_fail(call, "sort: the list mixes numbers and strings (index %zu)", i);
            return;
        }
    }
    size_t count = json_array_size(list);
    json_t *out = json_array();
    sort_item *items = count ? malloc(count * sizeof(*items)) : NULL;
    if (!out || (count && !items)) {
        json_decref(out);
        free(items);
        rt_call_fail(call, "out of memory");
        return;
    }
    json_array_foreach(list, i, v) items[i] = (sort_item){v, i};
    if (count > 1)
        qsort_r(items, count, sizeof(*items), compare_items, &reverse);
    for (i = 0; i < count; i++) {
        if (json_array_append(out, items[i].value) != 0) {
            json_decref(out);
            out = NULL;
            break;
        }
    }
    free(items);
    rt_call_return_json(call, out);
}

/* ---- sleep ------------------------------------------------------------------------------ */

static void fn_sleep(rt_call *call)
{
    static const char *const kw[] = {"seconds", NULL};
    if (!check_call(call, "sleep", kw))
        return;
    size_t n = nargs(call);
    json_t *kw_seconds = json_object_get(call->kwargs, "seconds");
    if (n > 1 || (n == 0 && !kw_seconds)) {
        rt_call_fail(call, "sleep takes 1 number of seconds, got %zu argument%s", n, plural(n));
        return;
    }
    if (n == 1 && kw_seconds) {
        rt_call_fail(call, "sleep: seconds given both as argument 1 and as a keyword");
        return;
    }
    json_t *v = n ? arg(call, 0) : kw_seconds;
    if (!json_is_number(v)) {
        rt_call_fail(call, "sleep: seconds must be a number, got %s", kind_of(v));
        return;
    }
    double seconds = json_number_value(v);
    if (!(seconds >= 0)) {
        rt_call_fail(call, "sleep: seconds must be >= 0, got %g", seconds);
        return;
    }
    double end = rt_clock_monotonic() + seconds;
    for (;;) {
        if (rt_call_cancelled(call)) {
            rt_call_fail(call, "cancelled");
            return;
        }
        double left = end - rt_clock_monotonic();
        if (left <= 0)
            break;
        double step = left < SLEEP_STEP_SECONDS ? left : SLEEP_STEP_SECONDS;
        struct timespec ts = {0, (long)(step * 1e9)};
        nanosleep(&ts, NULL);
    }
    rt_call_return_json(call, json_real(seconds));
}

/* ---- fail ------------------------------------------------------------------------------- */

static void fn_fail(rt_call *call)
{
    static const char *const kw[] = {"message", NULL};
    if (!check_call(call, "fail", kw))
        return;
    size_t n = nargs(call);
    json_t *kw_message = json_object_get(call->kwargs, "message");
    if (n > 1) {
        rt_call_fail(call, "fail takes at most 1 message string, got %zu arguments", n);
        return;
    }
    if (n == 1 && kw_message) {
        rt_call_fail(call, "fail: message given both as argument 1 and as a keyword");
        return;
    }
    json_t *message = n ? arg(call, 0) : kw_message;
    if (message && !json_is_string(message)) {
        rt_call_fail(call, "fail: message must be a string, got %s", kind_of(message));
        return;
    }
    rt_call_fail(call, "%s", message ? json_string_value(message) : "fail was called");
}

/* ---- sha256 ----------------------------------------------------------------------------- */

static void fn_sha256(rt_call *call)
{
    if (!check_call(call, "sha256", NULL))
        return;
    size_t n = nargs(call);
    if (n != 1) {
        rt_call_fail(call, "sha256 takes 1 string or $bytes value, got %zu argument%s", n,
                     plural(n));
        return;
    }
    const char *data;
    size_t len;
    char *owned;
    if (!bytes_arg(call, "sha256", 1, arg(call, 0), &data, &len, &owned))
        return;
    unsigned char digest[RT_SHA256_DIGEST_SIZE];
    char hex[RT_SHA256_HEX_SIZE];
    rt_sha256(data, len, digest);
    free(owned);
    rt_call_return_json(call, json_string(rt_sha256_hex(digest, hex)));
}

/* ---- matmul ----------------------------------------------------------------------------- */

/* Checks that argument `position` (1-based) is a non-empty rectangular list of lists of
 * numbers; sets its shape and whether every entry is an integer. Fails the call if not. */
static bool matrix_shape(rt_call *call, size_t position, json_t *m, size_t *rows, size_t *cols,
                         bool *all_int)
{
    if (!json_is_array(m) || json_array_size(m) == 0) {
        rt_call_fail(call, "matmul: argument %zu must be a non-empty list of rows, got %s%s",
                     position, json_is_array(m) ? "an empty " : "",
                     json_is_array(m) ? "list" : kind_of(m));
        return false;
    }
    *rows = json_array_size(m);
    *cols = json_array_size(json_array_get(m, 0));
    size_t r, c;
    json_t *row, *v;
    json_array_foreach(m, r, row)
    {
        if (!json_is_array(row)) {
            rt_call_fail(call, "matmul: argument %zu row %zu must be a list of numbers, got %s",
                         position, r, kind_of(row));
            return false;
        }
        if (json_array_size(row) == 0) {
            rt_call_fail(call, "matmul: argument %zu row %zu is empty", position, r);
            return false;
        }
        if (json_array_size(row) != *cols) {
            rt_call_fail(call,
                         "matmul: argument %zu is not rectangular: row 0 has %zu columns, "
                         "row %zu has %zu",
                         position, *cols, r, json_array_size(row));
            return false;
        }
        json_array_foreach(row, c, v)
        {
            if (!json_is_number(v)) {
                rt_call_fail(call, "matmul: argument %zu [%zu][%zu] must be a number, got %s",
                             position, r, c, kind_of(v));
                return false;
            }
            *all_int = *all_int && json_is_integer(v);
        }
    }
    return true;
}

/* The product of the checked matrices a (n x m) and b (m x p), borrowed, as a new list of
 * lists; NULL after failing the call. */
static json_t *matmul_compute(rt_call *call, json_t *a, json_t *b, size_t n, size_t m, size_t p,
                              bool ints)
{
    json_t *out = json_array();
    if (!out)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        if (rt_call_cancelled(call)) {
            rt_call_fail(call, "cancelled");
            goto fail;
        }
        json_t *arow = json_array_get(a, i);
        json_t *row = json_array();
        if (!row || json_array_append_new(out, row) != 0)
            goto oom;
        for (size_t j = 0; j < p; j++) {
            json_t *cell;
            if (ints) {
                json_int_t acc = 0, t;
                for (size_t k = 0; k < m; k++) {
                    json_int_t x = json_integer_value(json_array_get(arow, k));
                    json_int_t y = json_integer_value(json_array_get(json_array_get(b, k), j));
                    if (__builtin_mul_overflow(x, y, &t) || __builtin_add_overflow(acc, t, &acc)) {
                        rt_call_fail(call, "matmul: integer overflow");
                        goto fail;
                    }
                }
                cell = json_integer(acc);
            } else {
                double acc = 0;
                for (size_t k = 0; k < m; k++)
                    acc += json_number_value(json_array_get(arow, k)) *
                           json_number_value(json_array_get(json_array_get(b, k), j));
                if (!isfinite(acc)) {
                    rt_call_fail(call, "matmul: result is out of range");
                    goto fail;
                }
                cell = json_real(acc);
            }
            if (!cell || json_array_append_new(row, cell) != 0)
                goto oom;
        }
    }
    return out;
oom:
    rt_call_fail(call, "out of memory");
fail:
    json_decref(out);
    return NULL;
}

static void fn_matmul(rt_call *call)
{
    if (!check_call(call, "matmul", NULL))
        return;
    size_t n = nargs(call);
    if (n != 2) {
        rt_call_fail(call, "matmul takes 2 matrices, got %zu argument%s", n, plural(n));
        return;
    }
    json_t *a = arg(call, 0), *b = arg(call, 1);
    size_t ar, ac, br, bc, cells;
    bool ints = true;
    if (!matrix_shape(call, 1, a, &ar, &ac, &ints) || !matrix_shape(call, 2, b, &br, &bc, &ints))
        return;
    if (ac != br) {
        rt_call_fail(call, "matmul: shapes %zux%zu and %zux%zu are not compatible", ar, ac, br,
                     bc);
        return;
    }
    if (__builtin_mul_overflow(ar, bc, &cells) || cells > MATMUL_MAX_CELLS) {
        rt_call_fail(call, "matmul: a %zux%zu result is larger than the limit of %u cells", ar,
                     bc, MATMUL_MAX_CELLS);
        return;
    }
    json_t *out = matmul_compute(call, a, b, ar, ac, bc, ints);
    if (out)
        rt_call_return_json(call, out);
}

/* ---- the table -------------------------------------------------------------------------- */

static rt_function BUILTINS[] = {
    {"echo", RT_FUNCTION_BUILTIN,
     "Returns its argument unchanged; several arguments come back as a list, none as null.",
     "[value: any, ...]", "any: the argument, the list of arguments, or null", fn_echo},
    {"identity", RT_FUNCTION_BUILTIN, "Returns its single argument unchanged.", "[value: any]",
     "any: the argument", fn_identity},
    {"add", RT_FUNCTION_BUILTIN,
     "a + b. Two integers give an integer (overflow fails); otherwise a real.",
     "[a: number, b: number]", "number", fn_add},
    {"sub", RT_FUNCTION_BUILTIN,
     "a - b. Two integers give an integer (overflow fails); otherwise a real.",
     "[a: number, b: number]", "number", fn_sub},
    {"mul", RT_FUNCTION_BUILTIN,
     "a * b. Two integers give an integer (overflow fails); otherwise a real.",
     "[a: number, b: number]", "number", fn_mul},
    {"div", RT_FUNCTION_BUILTIN,
     "a / b, always a real (like Python's /). Division by zero fails.",
     "[a: number, b: number]", "number (real)", fn_div},
    {"sum", RT_FUNCTION_BUILTIN,
     "Sums a list of numbers: an integer when all are integers (overflow fails), else a "
     "real. An empty list sums to 0.",
     "[values: list of numbers]", "number", fn_sum},
    {"concat", RT_FUNCTION_BUILTIN,
     "Concatenates its arguments, which must be all strings or all lists (not mixed).",
     "[first: string | list, more: string | list, ...]",
     "string or list: the arguments joined in order", fn_concat},
    {"len", RT_FUNCTION_BUILTIN,
     "Length of a string in characters (Unicode code points), of a list or object in "
     "members, or of a $bytes value in bytes.",
     "[value: string | list | object | $bytes]", "integer", fn_len},
    {"sort", RT_FUNCTION_BUILTIN,
     "Sorts a list of numbers or a list of strings (not mixed), stably; strings in code "
     "point order. Keyword reverse=true sorts descending, equal items keeping their order.",
     "[values: list of numbers | list of strings], {reverse: boolean = false}",
     "list: the values sorted", fn_sort},
    {"sleep", RT_FUNCTION_BUILTIN,
     "Sleeps for the given seconds (>= 0), waking every 10 ms to honour cancellation and "
     "the task's timeout, which fail it with \"cancelled\".",
     "[seconds: number] or {seconds: number}", "number (real): the seconds slept", fn_sleep},
    {"fail", RT_FUNCTION_BUILTIN,
     "Always fails, with the given message or \"fail was called\". Useful to test error "
     "handling and retries.",
     "[message: string = \"fail was called\"] or {message: string}", "never returns",
     fn_fail},
    {"sha256", RT_FUNCTION_BUILTIN,
     "SHA-256 of a string's UTF-8 bytes or of a $bytes value's bytes.",
     "[data: string | $bytes]", "string: 64 lowercase hex digits", fn_sha256},
    {"matmul", RT_FUNCTION_BUILTIN,
     "Matrix product a x b of two non-empty rectangular matrices (lists of rows) with "
     "compatible shapes. All-integer inputs give integers (overflow fails), otherwise "
     "reals. The result is limited to 4194304 cells.",
     "[a: list of lists of numbers (n x m), b: list of lists of numbers (m x p)]",
     "list of lists of numbers (n x p)", fn_matmul},
};

rt_status rt_builtins_register(rt_registry *registry)
{
    if (!registry)
        return RT_EINVAL;
    size_t count = sizeof(BUILTINS) / sizeof(BUILTINS[0]);
    /* Quick ones may run on the thread that waits for them (Prefer: wait): all but those
     * that sleep or whose cost grows beyond a request's parsing (matmul, sort, sha256). */
    for (size_t i = 0; i < count; i++) {
        const char *n = BUILTINS[i].name;
        BUILTINS[i].quick = strcmp(n, "sleep") != 0 && strcmp(n, "matmul") != 0 &&
                            strcmp(n, "sort") != 0 && strcmp(n, "sha256") != 0;
    }
    /* Check every name first so that a clash registers nothing. */
    for (size_t i = 0; i < count; i++)
        if (rt_registry_find(registry, BUILTINS[i].name))
            return RT_EEXIST;
    for (size_t i = 0; i < count; i++) {
        rt_status status = rt_registry_add(registry, &BUILTINS[i]);
        if (status != RT_OK)
            return status;
    }
    return RT_OK;
}
