/* Unit tests for runtime/function.c: the function registry (add, find, names, order,
 * concurrent readers) and the calling convention (one output, failures, cancellation,
 * $bytes arguments). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/clock.h"
#include "runtime/function.h"

static void noop(rt_call *call)
{
    rt_call_return_json(call, json_null());
}

#define FN(n) {n, RT_FUNCTION_MODULE, "test function", "[]", "null", noop}

/* ---- registry --------------------------------------------------------------------------- */

static void test_new_free(void **state)
{
    (void)state;
    rt_registry *reg = rt_registry_new();
    assert_non_null(reg);
    assert_null(rt_registry_find(reg, "anything"));
    rt_registry_free(reg);
    rt_registry_free(NULL);
}

static void test_add_find_duplicate(void **state)
{
    (void)state;
    static const rt_function alpha = FN("alpha"), alpha2 = FN("alpha"), beta = FN("beta");
    rt_registry *reg = rt_registry_new();
    assert_int_equal(rt_registry_add(reg, &alpha), RT_OK);
    assert_int_equal(rt_registry_add(reg, &beta), RT_OK);
    assert_ptr_equal(rt_registry_find(reg, "alpha"), &alpha);
    assert_ptr_equal(rt_registry_find(reg, "beta"), &beta);
    assert_null(rt_registry_find(reg, "gamma"));
    assert_null(rt_registry_find(reg, "alph"));
    assert_null(rt_registry_find(reg, "alphaa"));
    assert_null(rt_registry_find(reg, ""));
    assert_null(rt_registry_find(reg, NULL));
    assert_null(rt_registry_find(NULL, "alpha"));

    assert_int_equal(rt_registry_add(reg, &alpha2), RT_EEXIST);
    assert_int_equal(rt_registry_add(reg, &alpha), RT_EEXIST);
    assert_ptr_equal(rt_registry_find(reg, "alpha"), &alpha); /* the first one stays */
    rt_registry_free(reg);
}

static void test_bad_names(void **state)
{
    (void)state;
    static char long_ok[129], too_long[130];
    memset(long_ok, 'a', 128);
    memset(too_long, 'b', 129);
    static const char *bad[] = {"", "a b", "a/b", "a:b", "caf\xc3\xa9", "tab\t", "x\n",
                                "semi;colon", "q?", "%s", too_long};
    rt_registry *reg = rt_registry_new();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rt_function f = FN(bad[i]);
        assert_int_equal(rt_registry_add(reg, &f), RT_EINVAL);
    }
    rt_function null_name = FN(NULL);
    assert_int_equal(rt_registry_add(reg, &null_name), RT_EINVAL);
    rt_function no_code = FN("no_code");
    no_code.fn = NULL;
    assert_int_equal(rt_registry_add(reg, &no_code), RT_EINVAL);
    assert_int_equal(rt_registry_add(reg, NULL), RT_EINVAL);
    static const rt_function ok = FN("ok");
    assert_int_equal(rt_registry_add(NULL, &ok), RT_EINVAL);

    static const rt_function good1 = FN("A-z_0.9"), good2 = FN("."), good3 = FN("-");
    static rt_function good4 = FN(long_ok);
    assert_int_equal(rt_registry_add(reg, &good1), RT_OK);
    assert_int_equal(rt_registry_add(reg, &good2), RT_OK);
    assert_int_equal(rt_registry_add(reg, &good3), RT_OK);
    assert_int_equal(rt_registry_add(reg, &good4), RT_OK);
    assert_ptr_equal(rt_registry_find(reg, long_ok), &good4);
    assert_null(rt_registry_find(reg, too_long));
    rt_registry_free(reg);
}

static void collect(const rt_function *fn, void *arg)
{
    json_array_append_new(arg, json_string(fn->name));
}

static void test_each_in_name_order(void **state)
{
    (void)state;
    static const rt_function fns[] = {FN("sum"),  FN("b.x"), FN("Zeta"), FN("a"),
                                      FN("b-x"),  FN("a1"),  FN("_u"),   FN("9lives"),
                                      FN("add"),  FN("b_x")};
    const char *want[] = {"9lives", "Zeta", "_u", "a", "a1", "add", "b-x", "b.x", "b_x", "sum"};
    rt_registry *reg = rt_registry_new();
    json_t *seen = json_array();
    rt_registry_each(reg, collect, seen); /* empty: no visits */
    assert_int_equal(json_array_size(seen), 0);
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
        assert_int_equal(rt_registry_add(reg, &fns[i]), RT_OK);
    rt_registry_each(reg, collect, seen);
    assert_int_equal(json_array_size(seen), 10);
    for (size_t i = 0; i < 10; i++)
        assert_string_equal(json_string_value(json_array_get(seen, i)), want[i]);
    json_decref(seen);
    rt_registry_each(reg, NULL, NULL);
    rt_registry_each(NULL, collect, NULL);
    rt_registry_free(reg);
}

static rt_registry *reentrant_reg;

/* A visitor that uses the registry itself: finds and registers without deadlocking. */
static void reentrant_visit(const rt_function *fn, void *arg)
{
    static const rt_function late = FN("zz_late");
    assert_ptr_equal(rt_registry_find(reentrant_reg, fn->name), fn);
    rt_status status = rt_registry_add(reentrant_reg, &late);
    assert_true(status == RT_OK || status == RT_EEXIST);
    (*(int *)arg)++;
}

static void test_each_visitor_may_use_registry(void **state)
{
    (void)state;
    static const rt_function a = FN("a"), b = FN("b");
    reentrant_reg = rt_registry_new();
    rt_registry_add(reentrant_reg, &a);
    rt_registry_add(reentrant_reg, &b);
    int visits = 0;
    rt_registry_each(reentrant_reg, reentrant_visit, &visits);
    assert_int_equal(visits, 2); /* a snapshot: the function added meanwhile is not visited */
    assert_non_null(rt_registry_find(reentrant_reg, "zz_late"));
    rt_registry_free(reentrant_reg);
}

/* Concurrency: readers find and list while a writer registers. */

#define NCONC 600
static rt_function conc_fns[NCONC];
static char conc_names[NCONC][16];

typedef struct reader_ctx {
    rt_registry *reg;
    int *done;
    size_t iterations;
    int errors;
} reader_ctx;

typedef struct order_check {
    const char *last;
    size_t count;
    int errors;
} order_check;

static void check_order(const rt_function *fn, void *arg)
{
    order_check *oc = arg;
    if (oc->last && strcmp(oc->last, fn->name) >= 0)
        oc->errors++;
    oc->last = fn->name;
    oc->count++;
}

static void *reader(void *arg)
{
    reader_ctx *ctx = arg;
    size_t last_count = 0;
    while (!__atomic_load_n(ctx->done, __ATOMIC_ACQUIRE) || ctx->iterations < 10) {
        order_check oc = {0};
        rt_registry_each(ctx->reg, check_order, &oc);
        if (oc.errors || oc.count < last_count)
            ctx->errors++;
        last_count = oc.count;
        /* Whatever is found is the right function. */
        for (size_t i = ctx->iterations % 7; i < NCONC; i += 37) {
            const rt_function *fn = rt_registry_find(ctx->reg, conc_names[i]);
            if (fn && fn != &conc_fns[i])
                ctx->errors++;
        }
        ctx->iterations++;
    }
    return NULL;
}

static void test_concurrent_readers_while_registering(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCONC; i++) {
        /* Registration order is scrambled relative to name order. */
        snprintf(conc_names[i], sizeof(conc_names[i]), "f%05zu", (i * 7919) % 100000);
        conc_fns[i] = (rt_function){conc_names[i], RT_FUNCTION_REMOTE, "d", "[]", "null", noop};
    }
    rt_registry *reg = rt_registry_new();
    int done = 0;
    enum { NREADERS = 4 };
    pthread_t threads[NREADERS];
    reader_ctx ctx[NREADERS];
    for (int r = 0; r < NREADERS; r++) {
        ctx[r] = (reader_ctx){reg, &done, 0, 0};
        assert_int_equal(pthread_create(&threads[r], NULL, reader, &ctx[r]), 0);
    }
    for (size_t i = 0; i < NCONC; i++)
        assert_int_equal(rt_registry_add(reg, &conc_fns[i]), RT_OK);
    __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    for (int r = 0; r < NREADERS; r++) {
        pthread_join(threads[r], NULL);
        assert_int_equal(ctx[r].errors, 0);
        assert_true(ctx[r].iterations >= 10);
    }
    for (size_t i = 0; i < NCONC; i++)
        assert_ptr_equal(rt_registry_find(reg, conc_names[i]), &conc_fns[i]);
    order_check oc = {0};
    rt_registry_each(reg, check_order, &oc);
    assert_int_equal(oc.count, NCONC);
    assert_int_equal(oc.errors, 0);
    rt_registry_free(reg);
}

static void test_kind_names(void **state)
{
    (void)state;
    assert_string_equal(rt_function_kind_name(RT_FUNCTION_BUILTIN), "builtin");
    assert_string_equal(rt_function_kind_name(RT_FUNCTION_MODULE), "module");
    assert_string_equal(rt_function_kind_name(RT_FUNCTION_REMOTE), "remote");
    assert_string_equal(rt_function_kind_name((rt_function_kind)42), "unknown");
}

/* ---- calling convention ----------------------------------------------------------------- */

static void clear(rt_call *call)
{
    json_decref(call->result_json);
    rt_buf_decref(call->result_buf);
    free(call->error);
    memset(call, 0, sizeof(*call));
}

static void test_only_one_output_remains(void **state)
{
    (void)state;
    rt_call call = {0};
    rt_call_return_json(&call, json_integer(1));
    assert_int_equal(json_integer_value(call.result_json), 1);
    rt_call_return_json(&call, json_integer(2)); /* replaces (the first is freed) */
    assert_int_equal(json_integer_value(call.result_json), 2);

    rt_call_fail(&call, "bad %s %d", "thing", 7);
    assert_null(call.result_json);
    assert_null(call.result_buf);
    assert_string_equal(call.error, "bad thing 7");

    rt_call_fail(&call, "second"); /* replaces the first message */
    assert_string_equal(call.error, "second");

    rt_call_return_bytes(&call, rt_buf_from("xy", 2, "text/plain"));
    assert_null(call.error);
    assert_null(call.result_json);
    assert_int_equal(call.result_buf->size, 2);

    rt_call_return_json(&call, json_string("s"));
    assert_null(call.result_buf);
    assert_string_equal(json_string_value(call.result_json), "s");

    rt_call_return_bytes(&call, rt_buf_from("z", 1, NULL));
    rt_call_fail(&call, "%s", "after bytes");
    assert_null(call.result_buf);
    assert_string_equal(call.error, "after bytes");

    /* The message may quote the message it replaces. */
    rt_call_fail(&call, "wrapped: %s", call.error);
    assert_string_equal(call.error, "wrapped: after bytes");
    clear(&call);

    /* A failed constructor (NULL) becomes an out-of-memory failure, not a NULL result. */
    rt_call_return_json(&call, json_integer(3));
    rt_call_return_json(&call, NULL);
    assert_null(call.result_json);
    assert_string_equal(call.error, "out of memory");
    rt_call_return_bytes(&call, NULL);
    assert_string_equal(call.error, "out of memory");
    clear(&call);

    /* Long messages are kept whole. */
    char big[5000];
    memset(big, 'm', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    rt_call_fail(&call, "%s!", big);
    assert_int_equal(strlen(call.error), sizeof(big));
    clear(&call);

    /* NULL calls are ignored; stolen values are still released (ASan checks). */
    rt_call_return_json(NULL, json_integer(1));
    rt_call_return_bytes(NULL, rt_buf_new(3, NULL));
    rt_call_fail(NULL, "x");
}

static void test_cancelled(void **state)
{
    (void)state;
    rt_call call = {0};
    assert_false(rt_call_cancelled(&call)); /* no flag, no deadline */
    assert_false(rt_call_cancelled(NULL));
    int flag = 0;
    call.cancel_flag = &flag;
    assert_false(rt_call_cancelled(&call));
    __atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
    assert_true(rt_call_cancelled(&call));
    flag = 0;
    call.deadline = rt_clock_monotonic() + 60;
    assert_false(rt_call_cancelled(&call));
    call.deadline = rt_clock_monotonic() - 0.001;
    assert_true(rt_call_cancelled(&call));
    call.cancel_flag = NULL;
    assert_true(rt_call_cancelled(&call));
    call.deadline = 0;
    assert_false(rt_call_cancelled(&call));
}

static void test_arg_bytes(void **state)
{
    (void)state;
    const char *data = NULL;
    size_t len = 99;
    char *owned = (char *)"sentinel";

    json_t *s = json_stringn("a\0b", 3);
    assert_int_equal(rt_call_arg_bytes(s, &data, &len, &owned), 0);
    assert_ptr_equal(data, json_string_value(s)); /* the string itself, no copy */
    assert_int_equal(len, 3);
    assert_null(owned);
    json_decref(s);

    json_t *b = json_pack("{s:s, s:s}", "$bytes", "AP8A", "content_type", "image/png");
    assert_int_equal(rt_call_arg_bytes(b, &data, &len, &owned), 0);
    assert_non_null(owned);
    assert_ptr_equal(data, owned);
    assert_int_equal(len, 3);
    assert_memory_equal(data, "\x00\xff\x00", 3);
    free(owned);
    json_decref(b);

    json_t *empty = json_pack("{s:s}", "$bytes", "");
    assert_int_equal(rt_call_arg_bytes(empty, &data, &len, &owned), 0);
    assert_int_equal(len, 0);
    free(owned);
    json_decref(empty);

    json_t *null_ct = json_pack("{s:s, s:n}", "$bytes", "YQ==", "content_type");
    assert_int_equal(rt_call_arg_bytes(null_ct, &data, &len, &owned), 0);
    assert_int_equal(len, 1);
    assert_int_equal(data[0], 'a');
    free(owned);
    json_decref(null_ct);

    const char *bad[] = {"1", "null", "true", "[]", "{}", "{\"$bytes\": 1}",
                         "{\"$bytes\": \"YQ\"}", "{\"$bytes\": \"Y Q==\"}",
                         "{\"$bytes\": \"!!!!\"}", "{\"$bytes\": \"YQ==\", \"content_type\": 1}",
                         "{\"$bytes\": \"YQ==\", \"other\": \"x\"}", "{\"content_type\": \"x\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *v = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        owned = (char *)"sentinel";
        if (rt_call_arg_bytes(v, &data, &len, &owned) != -1)
            fail_msg("accepted %s", bad[i]);
        assert_null(owned);
        json_decref(v);
    }
    assert_int_equal(rt_call_arg_bytes(NULL, &data, &len, &owned), -1);
    json_t *b2 = json_pack("{s:s}", "$bytes", "YQ==");
    assert_int_equal(rt_call_arg_bytes(b2, &data, &len, NULL), -1); /* needs somewhere to own */
    json_decref(b2);
}

/* ---- owned (remote) functions: freed when the last holder lets go --------------------- */

static int g_released;

static void count_release(rt_function *fn)
{
    g_released++;
    free((char *)fn->name);
    free(fn);
}

static rt_function *owned_fn(const char *name)
{
    rt_function *fn = calloc(1, sizeof(*fn));
    fn->name = strdup(name);
    fn->kind = RT_FUNCTION_REMOTE;
    fn->fn = noop;
    return fn;
}

static void test_owned_replaced_and_removed_are_freed(void **state)
{
    (void)state;
    g_released = 0;
    rt_registry *reg = rt_registry_new();
    bool replaced;
    /* 1,000 registrations of one name: each replaced one goes at once */
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(rt_registry_put_owned(reg, owned_fn("f"), count_release, &replaced),
                         RT_OK);
        assert_int_equal(replaced, i > 0);
    }
    assert_int_equal(g_released, 999);
    /* one held by a user (a task) outlives its replacement and its removal */
    const rt_function *held = rt_registry_get(reg, "f");
    assert_non_null(held);
    assert_int_equal(rt_registry_put_owned(reg, owned_fn("f"), count_release, &replaced), RT_OK);
    assert_int_equal(g_released, 999);
    assert_string_equal(held->name, "f"); /* still valid (ASan checks) */
    rt_function_drop(held);
    assert_int_equal(g_released, 1000);
    held = rt_registry_get(reg, "f");
    assert_int_equal(rt_registry_remove(reg, "f"), RT_OK);
    assert_null(rt_registry_get(reg, "f"));
    assert_int_equal(g_released, 1000);
    rt_function_drop(held);
    assert_int_equal(g_released, 1001);
    /* what is listed goes with the registry; static functions are never counted */
    static const rt_function builtin = FN("builtin");
    assert_int_equal(rt_registry_add(reg, &builtin), RT_OK);
    assert_ptr_equal(rt_registry_get(reg, "builtin"), &builtin);
    rt_function_drop(&builtin);
    assert_int_equal(rt_registry_put_owned(reg, owned_fn("g"), count_release, &replaced), RT_OK);
    rt_registry_free(reg);
    assert_int_equal(g_released, 1002);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_free),
        cmocka_unit_test(test_add_find_duplicate),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_each_in_name_order),
        cmocka_unit_test(test_each_visitor_may_use_registry),
        cmocka_unit_test(test_concurrent_readers_while_registering),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_only_one_output_remains),
        cmocka_unit_test(test_cancelled),
        cmocka_unit_test(test_arg_bytes),
        cmocka_unit_test(test_owned_replaced_and_removed_are_freed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
