/* Unit tests for runtime/builtins.c (each built-in called through the registry, with good,
 * bad and hostile inputs) and runtime/sha256.c (FIPS 180-4 test vectors). */
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

#include "runtime/clock.h"
#include "runtime/function.h"
#include "runtime/sha256.h"

static rt_registry *reg; /* owned by the group setup */

static int group_setup(void **state)
{
    (void)state;
    reg = rt_registry_new();
    if (!reg || rt_builtins_register(reg) != RT_OK)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    rt_registry_free(reg);
    reg = NULL;
    return 0;
}

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

/* Calls builtin name with args and kwargs (both stolen; NULL allowed). */
static void call_with(rt_call *call, const char *name, json_t *args, json_t *kwargs)
{
    const rt_function *fn = rt_registry_find(reg, name);
    assert_non_null(fn);
    call->task_id = "t-test";
    call->function = name;
    call->attempt = 1;
    call->args = args;
    call->kwargs = kwargs;
    fn->fn(call);
    /* Exactly one output, always. */
    int outputs = (call->result_json != NULL) + (call->result_buf != NULL) + (call->error != NULL);
    if (outputs != 1)
        fail_msg("%s: %d outputs set", name, outputs);
}

static void call_done(rt_call *call)
{
    json_decref(call->args);
    json_decref(call->kwargs);
    json_decref(call->result_json);
    rt_buf_decref(call->result_buf);
    free(call->error);
    memset(call, 0, sizeof(*call));
}

/* Asserts name(args, kwargs) returns exactly want (JSON text; integer and real differ). */
static void expect_ok(const char *name, const char *args, const char *kwargs, const char *want)
{
    rt_call call = {0};
    call_with(&call, name, parse(args), parse(kwargs));
    if (call.error)
        fail_msg("%s(%s): unexpected failure: %s", name, args ? args : "NULL", call.error);
    assert_non_null(call.result_json);
    json_t *w = parse(want);
    if (!json_equal(w, call.result_json)) {
        char *got = json_dumps(call.result_json, JSON_ENCODE_ANY);
        fail_msg("%s(%s): got %s, want %s", name, args ? args : "NULL", got, want);
    }
    json_decref(w);
    call_done(&call);
}

/* Asserts name(args, kwargs) fails with exactly message. */
static void expect_fail(const char *name, const char *args, const char *kwargs,
                        const char *message)
{
    rt_call call = {0};
    call_with(&call, name, parse(args), parse(kwargs));
    if (!call.error) {
        char *got = json_dumps(call.result_json, JSON_ENCODE_ANY);
        fail_msg("%s(%s): returned %s, want failure \"%s\"", name, args ? args : "NULL", got,
                 message);
    }
    assert_string_equal(call.error, message);
    call_done(&call);
}

/* ---- registration ----------------------------------------------------------------------- */

static const char *const NAMES[] = {"add",  "concat", "div",    "echo", "fail", "identity",
                                    "len",  "matmul", "mul",    "sha256", "sleep", "sort",
                                    "sub",  "sum"};
#define NNAMES (sizeof(NAMES) / sizeof(NAMES[0]))

static void collect(const rt_function *fn, void *arg)
{
    json_array_append_new(arg, json_string(fn->name));
}

static void test_all_registered_with_docs(void **state)
{
    (void)state;
    for (size_t i = 0; i < NNAMES; i++) {
        const rt_function *fn = rt_registry_find(reg, NAMES[i]);
        assert_non_null(fn);
        assert_string_equal(fn->name, NAMES[i]);
        assert_int_equal(fn->kind, RT_FUNCTION_BUILTIN);
        assert_string_equal(rt_function_kind_name(fn->kind), "builtin");
        assert_true(fn->description && strlen(fn->description) > 10);
        assert_true(fn->args_doc && *fn->args_doc);
        assert_true(fn->returns_doc && *fn->returns_doc);
        assert_non_null(fn->fn);
    }
    json_t *seen = json_array();
    rt_registry_each(reg, collect, seen);
    assert_int_equal(json_array_size(seen), NNAMES); /* NAMES is in name order */
    for (size_t i = 0; i < NNAMES; i++)
        assert_string_equal(json_string_value(json_array_get(seen, i)), NAMES[i]);
    json_decref(seen);
    /* A second registration clashes and adds nothing. */
    assert_int_equal(rt_builtins_register(reg), RT_EEXIST);
    assert_int_equal(rt_builtins_register(NULL), RT_EINVAL);
}

/* ---- echo, identity --------------------------------------------------------------------- */

static void test_echo(void **state)
{
    (void)state;
    expect_ok("echo", NULL, NULL, "null");
    expect_ok("echo", "[]", NULL, "null");
    expect_ok("echo", "[]", "{}", "null");
    expect_ok("echo", "[1]", NULL, "1");
    expect_ok("echo", "[{\"a\": [1, 2.5, null]}]", NULL, "{\"a\": [1, 2.5, null]}");
    expect_ok("echo", "[1, \"a\", null]", NULL, "[1, \"a\", null]");
    expect_ok("echo", "[[1]]", NULL, "[1]");
    expect_fail("echo", "[1]", "{\"x\": 1}", "echo: unknown keyword argument 'x'");
    expect_fail("echo", "{}", NULL, "echo: args must be a list, got an object");
    expect_fail("echo", "[]", "[]", "echo: kwargs must be an object, got a list");
}

static void test_identity(void **state)
{
    (void)state;
    expect_ok("identity", "[\"x\"]", NULL, "\"x\"");
    expect_ok("identity", "[[1, [2]]]", NULL, "[1, [2]]");
    expect_ok("identity", "[null]", NULL, "null");
    expect_fail("identity", "[]", NULL, "identity takes 1 argument, got 0 arguments");
    expect_fail("identity", NULL, NULL, "identity takes 1 argument, got 0 arguments");
    expect_fail("identity", "[1, 2]", NULL, "identity takes 1 argument, got 2 arguments");
}

/* ---- arithmetic ------------------------------------------------------------------------- */

static void test_add_sub_mul(void **state)
{
    (void)state;
    expect_ok("add", "[1, 2]", NULL, "3");
    expect_ok("add", "[-5, 2]", NULL, "-3");
    expect_ok("add", "[1, 2.5]", NULL, "3.5");
    expect_ok("add", "[1.5, 1.5]", NULL, "3.0");
    expect_ok("add", "[0.1, 0.2]", NULL, "0.30000000000000004");
    expect_ok("add", "[9223372036854775806, 1]", NULL, "9223372036854775807");
    expect_ok("sub", "[1, 2]", NULL, "-1");
    expect_ok("sub", "[2.5, 0.5]", NULL, "2.0");
    expect_ok("mul", "[6, 7]", NULL, "42");
    expect_ok("mul", "[6, 0.5]", NULL, "3.0");
    expect_ok("mul", "[-3037000499, 3037000499]", NULL, "-9223372030926249001");

    expect_fail("add", "[1]", NULL, "add takes 2 numbers, got 1 argument");
    expect_fail("add", NULL, NULL, "add takes 2 numbers, got 0 arguments");
    expect_fail("sub", "[1, 2, 3]", NULL, "sub takes 2 numbers, got 3 arguments");
    expect_fail("add", "[\"1\", 2]", NULL, "add: argument 1 must be a number, got a string");
    expect_fail("add", "[1, true]", NULL, "add: argument 2 must be a number, got a boolean");
    expect_fail("mul", "[null, 1]", NULL, "mul: argument 1 must be a number, got null");
    expect_fail("add", "[[1], 1]", NULL, "add: argument 1 must be a number, got a list");
    expect_fail("add", "[1, 2]", "{\"b\": 1}", "add: unknown keyword argument 'b'");

    expect_fail("add", "[9223372036854775807, 1]", NULL, "add: integer overflow");
    expect_fail("sub", "[-9223372036854775808, 1]", NULL, "sub: integer overflow");
    expect_fail("mul", "[3037000500, 3037000500]", NULL, "mul: integer overflow");
    expect_fail("mul", "[-9223372036854775808, -1]", NULL, "mul: integer overflow");
    expect_fail("mul", "[1e200, 1e200]", NULL, "mul: result is out of range");
    expect_fail("add", "[1.7e308, 1.7e308]", NULL, "add: result is out of range");
}

static void test_div(void **state)
{
    (void)state;
    expect_ok("div", "[7, 2]", NULL, "3.5");
    expect_ok("div", "[6, 3]", NULL, "2.0"); /* always real, like Python's / */
    expect_ok("div", "[1, 4.0]", NULL, "0.25");
    expect_ok("div", "[-9, 2]", NULL, "-4.5");
    expect_ok("div", "[0, 5]", NULL, "0.0");
    expect_fail("div", "[1, 0]", NULL, "division by zero");
    expect_fail("div", "[1.5, 0.0]", NULL, "division by zero");
    expect_fail("div", "[0, -0.0]", NULL, "division by zero");
    expect_fail("div", "[1e308, 1e-308]", NULL, "div: result is out of range");
    expect_fail("div", "[1]", NULL, "div takes 2 numbers, got 1 argument");
    expect_fail("div", "[1, \"2\"]", NULL, "div: argument 2 must be a number, got a string");
}

/* ---- sum, concat, len ------------------------------------------------------------------- */

static void test_sum(void **state)
{
    (void)state;
    expect_ok("sum", "[[]]", NULL, "0");
    expect_ok("sum", "[[1, 2, 3]]", NULL, "6");
    expect_ok("sum", "[[1, 2.5]]", NULL, "3.5");
    expect_ok("sum", "[[0.5, 0.5]]", NULL, "1.0");
    expect_ok("sum", "[[9223372036854775807, -1, 1]]", NULL, "9223372036854775807");
    expect_fail("sum", "[[9223372036854775807, 1]]", NULL, "sum: integer overflow");
    expect_fail("sum", "[[1e308, 1e308]]", NULL, "sum: result is out of range");
    expect_fail("sum", "[[1, \"x\"]]", NULL,
                "sum: index 1 of the list must be a number, got a string");
    expect_fail("sum", "[[[1]]]", NULL, "sum: index 0 of the list must be a number, got a list");
    expect_fail("sum", "[1]", NULL, "sum: argument 1 must be a list of numbers, got a number");
    expect_fail("sum", "[]", NULL, "sum takes 1 list of numbers, got 0 arguments");
    expect_fail("sum", "[[1], [2]]", NULL, "sum takes 1 list of numbers, got 2 arguments");
}

static void test_concat(void **state)
{
    (void)state;
    expect_ok("concat", "[\"a\", \"b\", \"c\"]", NULL, "\"abc\"");
    expect_ok("concat", "[\"a\"]", NULL, "\"a\"");
    expect_ok("concat", "[\"\", \"\"]", NULL, "\"\"");
    expect_ok("concat", "[\"h\\u00e9\", \"\\u00fc\"]", NULL, "\"h\\u00e9\\u00fc\"");
    expect_ok("concat", "[[1], [2, [3]], []]", NULL, "[1, 2, [3]]");
    expect_ok("concat", "[[\"a\", \"b\"]]", NULL, "[\"a\", \"b\"]"); /* one list: itself */
    expect_ok("concat", "[[]]", NULL, "[]");
    expect_fail("concat", "[\"a\", [1]]", NULL,
                "concat: argument 2 is a list but argument 1 is a string; concat takes all "
                "strings or all lists");
    expect_fail("concat", "[[1], \"a\"]", NULL,
                "concat: argument 2 is a string but argument 1 is a list; concat takes all "
                "strings or all lists");
    expect_fail("concat", "[]", NULL, "concat takes at least 1 string or list, got 0 arguments");
    expect_fail("concat", NULL, NULL, "concat takes at least 1 string or list, got 0 arguments");
    expect_fail("concat", "[1, 2]", NULL,
                "concat: argument 1 must be a string or a list, got a number");

    /* Embedded NULs survive. */
    rt_call call = {0};
    call_with(&call, "concat", parse("[\"a\\u0000b\", \"c\"]"), NULL);
    assert_non_null(call.result_json);
    assert_int_equal(json_string_length(call.result_json), 4);
    assert_memory_equal(json_string_value(call.result_json), "a\0bc", 4);
    call_done(&call);
}

static void test_len(void **state)
{
    (void)state;
    expect_ok("len", "[\"\"]", NULL, "0");
    expect_ok("len", "[\"hello\"]", NULL, "5");
    expect_ok("len", "[\"h\\u00e9llo\"]", NULL, "5");      /* 2-byte code point */
    expect_ok("len", "[\"\\u20ac\"]", NULL, "1");           /* 3 bytes */
    expect_ok("len", "[\"\\ud83d\\ude00!\"]", NULL, "2");   /* 4 bytes + 1 */
    expect_ok("len", "[[1, 2, [3, 4]]]", NULL, "3");
    expect_ok("len", "[{}]", NULL, "0");
    expect_ok("len", "[{\"a\": 1, \"b\": 2}]", NULL, "2");
    expect_ok("len", "[{\"$bytes\": \"AAEC\", \"content_type\": \"application/x\"}]", NULL, "3");
    expect_ok("len", "[{\"$bytes\": \"\"}]", NULL, "0");
    expect_ok("len", "[{\"$bytes\": \"YQ==\"}]", NULL, "1");
    expect_fail("len", "[{\"$bytes\": \"!!!!\"}]", NULL,
                "len: argument 1 is not a valid $bytes value");
    expect_fail("len", "[{\"$bytes\": 5}]", NULL, "len: argument 1 is not a valid $bytes value");
    expect_fail("len", "[5]", NULL,
                "len: argument 1 must be a string, list, object or $bytes value, got a number");
    expect_fail("len", "[null]", NULL,
                "len: argument 1 must be a string, list, object or $bytes value, got null");
    expect_fail("len", "[]", NULL, "len takes 1 argument, got 0 arguments");
    expect_fail("len", "[\"a\", \"b\"]", NULL, "len takes 1 argument, got 2 arguments");
}

/* ---- sort ------------------------------------------------------------------------------- */

static void test_sort(void **state)
{
    (void)state;
    expect_ok("sort", "[[]]", NULL, "[]");
    expect_ok("sort", "[[3, 1, 2]]", NULL, "[1, 2, 3]");
    expect_ok("sort", "[[2.5, -1, 2]]", NULL, "[-1, 2, 2.5]");
    expect_ok("sort", "[[\"b\", \"a\", \"B\", \"\", \"ab\"]]", NULL,
              "[\"\", \"B\", \"a\", \"ab\", \"b\"]");
    expect_ok("sort", "[[\"\\u00e9\", \"z\", \"\\ud83d\\ude00\"]]", NULL,
              "[\"z\", \"\\u00e9\", \"\\ud83d\\ude00\"]"); /* code point order */
    /* Stable: equal numbers keep their input order, also when reversed (as in Python). */
    expect_ok("sort", "[[1, 1.0, 0, 1]]", NULL, "[0, 1, 1.0, 1]");
    expect_ok("sort", "[[1, 1.0, 0, 1]]", "{\"reverse\": true}", "[1, 1.0, 1, 0]");
    expect_ok("sort", "[[1, 3, 2]]", "{\"reverse\": false}", "[1, 2, 3]");
    /* Integers beyond 2^53 compare exactly against reals. */
    expect_ok("sort", "[[9007199254740993, 9007199254740992.0, 9007199254740992]]", NULL,
              "[9007199254740992.0, 9007199254740992, 9007199254740993]");
    expect_ok("sort", "[[9223372036854775807, -9223372036854775808, 9223372036854775806]]", NULL,
              "[-9223372036854775808, 9223372036854775806, 9223372036854775807]");
    expect_fail("sort", "[[1, \"a\"]]", NULL, "sort: the list mixes numbers and strings (index 1)");
    expect_fail("sort", "[[\"a\", 1]]", NULL, "sort: the list mixes numbers and strings (index 1)");
    expect_fail("sort", "[[1, null]]", NULL,
                "sort: index 1 of the list must be a number or a string, got null");
    expect_fail("sort", "[[[2], [1]]]", NULL,
                "sort: index 0 of the list must be a number or a string, got a list");
    expect_fail("sort", "[\"abc\"]", NULL,
                "sort: argument 1 must be a list of numbers or strings, got a string");
    expect_fail("sort", "[[1], [2]]", NULL,
                "sort takes 1 list of numbers or strings, got 2 arguments");
    expect_fail("sort", "[[1]]", "{\"reverse\": 1}", "sort: reverse must be a boolean, got a number");
    expect_fail("sort", "[[1]]", "{\"key\": \"x\"}", "sort: unknown keyword argument 'key'");

    /* A larger shuffled list sorts like qsort would, and stability holds on many ties. */
    json_t *list = json_array();
    for (int i = 0; i < 5000; i++)
        json_array_append_new(list, (i % 2) ? json_integer((i * 7919) % 100)
                                            : json_real((double)((i * 7919) % 100)));
    rt_call call = {0};
    call_with(&call, "sort", json_pack("[o]", list), NULL);
    assert_non_null(call.result_json);
    assert_int_equal(json_array_size(call.result_json), 5000);
    for (size_t i = 1; i < 5000; i++) {
        double a = json_number_value(json_array_get(call.result_json, i - 1));
        double b = json_number_value(json_array_get(call.result_json, i));
        assert_true(a <= b);
    }
    call_done(&call);
}

/* ---- sleep ------------------------------------------------------------------------------ */

static void test_sleep_basic(void **state)
{
    (void)state;
    expect_ok("sleep", "[0]", NULL, "0.0");
    expect_ok("sleep", "[]", "{\"seconds\": 0}", "0.0");
    expect_ok("sleep", NULL, "{\"seconds\": 0.001}", "0.001");
    double t0 = rt_clock_monotonic();
    expect_ok("sleep", "[0.03]", NULL, "0.03");
    double took = rt_clock_monotonic() - t0;
    assert_true(took >= 0.029);
    assert_true(took < 5.0); /* generous: CI machines may be loaded */

    expect_fail("sleep", "[-1]", NULL, "sleep: seconds must be >= 0, got -1");
    expect_fail("sleep", "[-0.5]", NULL, "sleep: seconds must be >= 0, got -0.5");
    expect_fail("sleep", "[\"1\"]", NULL, "sleep: seconds must be a number, got a string");
    expect_fail("sleep", NULL, "{\"seconds\": null}", "sleep: seconds must be a number, got null");
    expect_fail("sleep", "[]", NULL, "sleep takes 1 number of seconds, got 0 arguments");
    expect_fail("sleep", "[1, 2]", NULL, "sleep takes 1 number of seconds, got 2 arguments");
    expect_fail("sleep", "[1]", "{\"seconds\": 1}",
                "sleep: seconds given both as argument 1 and as a keyword");
    expect_fail("sleep", "[1]", "{\"secs\": 1}", "sleep: unknown keyword argument 'secs'");
}

static void *set_flag_later(void *arg)
{
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    __atomic_store_n((int *)arg, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_sleep_cancelled_from_another_thread(void **state)
{
    (void)state;
    int flag = 0;
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, set_flag_later, &flag), 0);
    rt_call call = {.cancel_flag = &flag};
    double t0 = rt_clock_monotonic();
    call_with(&call, "sleep", parse("[30]"), NULL);
    double took = rt_clock_monotonic() - t0;
    pthread_join(thread, NULL);
    assert_non_null(call.error);
    assert_string_equal(call.error, "cancelled");
    assert_true(took >= 0.04);
    assert_true(took < 5.0); /* far below the 30 s asked for */
    call_done(&call);

    /* Already cancelled: even sleep(0) reports it. */
    rt_call again = {.cancel_flag = &flag};
    call_with(&again, "sleep", parse("[0]"), NULL);
    assert_string_equal(again.error, "cancelled");
    call_done(&again);
}

static void test_sleep_honours_deadline(void **state)
{
    (void)state;
    int flag = 0;
    rt_call call = {.cancel_flag = &flag, .deadline = rt_clock_monotonic() + 0.05};
    double t0 = rt_clock_monotonic();
    call_with(&call, "sleep", parse("[1e300]"), NULL);
    double took = rt_clock_monotonic() - t0;
    assert_string_equal(call.error, "cancelled");
    assert_true(took < 5.0); /* far below the 30 s asked for */
    call_done(&call);
}

/* ---- fail ------------------------------------------------------------------------------- */

static void test_fail(void **state)
{
    (void)state;
    expect_fail("fail", NULL, NULL, "fail was called");
    expect_fail("fail", "[]", NULL, "fail was called");
    expect_fail("fail", "[\"boom\"]", NULL, "boom");
    expect_fail("fail", "[\"\"]", NULL, "");
    expect_fail("fail", "[\"100%s %n %d\"]", NULL, "100%s %n %d"); /* not a format */
    expect_fail("fail", NULL, "{\"message\": \"kw\"}", "kw");
    expect_fail("fail", "[1]", NULL, "fail: message must be a string, got a number");
    expect_fail("fail", "[\"a\", \"b\"]", NULL,
                "fail takes at most 1 message string, got 2 arguments");
    expect_fail("fail", "[\"a\"]", "{\"message\": \"b\"}",
                "fail: message given both as argument 1 and as a keyword");
    expect_fail("fail", "[]", "{\"code\": 1}", "fail: unknown keyword argument 'code'");
}

/* ---- sha256 ----------------------------------------------------------------------------- */

static void hex_of(const void *data, size_t len, char out[RT_SHA256_HEX_SIZE])
{
    unsigned char digest[RT_SHA256_DIGEST_SIZE];
    rt_sha256(data, len, digest);
    rt_sha256_hex(digest, out);
}

#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_448 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
#define SHA_MILLION_A "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"

static void test_sha256_vectors(void **state)
{
    (void)state;
    char hex[RT_SHA256_HEX_SIZE];
    hex_of(NULL, 0, hex);
    assert_string_equal(hex, SHA_EMPTY);
    hex_of("abc", 3, hex);
    assert_string_equal(hex, SHA_ABC);
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(m448, strlen(m448), hex);
    assert_string_equal(hex, SHA_448);

    size_t million = 1000000;
    char *a = malloc(million);
    assert_non_null(a);
    memset(a, 'a', million);
    hex_of(a, million, hex);
    assert_string_equal(hex, SHA_MILLION_A);

    /* Incremental updates in awkward chunk sizes give the same digest. */
    rt_sha256_ctx ctx;
    rt_sha256_init(&ctx);
    size_t at = 0, step = 1;
    while (at < million) {
        size_t take = million - at < step ? million - at : step;
        rt_sha256_update(&ctx, a + at, take);
        at += take;
        step = step * 3 % 200 + 1;
    }
    unsigned char digest[RT_SHA256_DIGEST_SIZE];
    rt_sha256_final(&ctx, digest);
    assert_string_equal(rt_sha256_hex(digest, hex), SHA_MILLION_A);
    free(a);

    /* Padding boundaries: 55, 56, 63, 64, 65 bytes hash the same one-shot and bytewise. */
    unsigned char msg[130];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (unsigned char)(i * 31 + 7);
    size_t lens[] = {55, 56, 57, 63, 64, 65, 119, 120, 128};
    for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
        char one[RT_SHA256_HEX_SIZE];
        hex_of(msg, lens[l], one);
        rt_sha256_init(&ctx);
        for (size_t i = 0; i < lens[l]; i++)
            rt_sha256_update(&ctx, msg + i, 1);
        rt_sha256_final(&ctx, digest);
        assert_string_equal(rt_sha256_hex(digest, hex), one);
    }
}

static void test_sha256_builtin(void **state)
{
    (void)state;
    expect_ok("sha256", "[\"\"]", NULL, "\"" SHA_EMPTY "\"");
    expect_ok("sha256", "[\"abc\"]", NULL, "\"" SHA_ABC "\"");
    expect_ok("sha256", "[{\"$bytes\": \"YWJj\"}]", NULL, "\"" SHA_ABC "\"");
    expect_ok("sha256", "[{\"$bytes\": \"YWJj\", \"content_type\": \"text/plain\"}]", NULL,
              "\"" SHA_ABC "\"");
    expect_ok("sha256", "[{\"$bytes\": \"\"}]", NULL, "\"" SHA_EMPTY "\"");
    /* "é" hashes as its UTF-8 bytes c3 a9. */
    char hex[RT_SHA256_HEX_SIZE], want[RT_SHA256_HEX_SIZE + 2];
    hex_of("\xc3\xa9", 2, hex);
    snprintf(want, sizeof(want), "\"%s\"", hex);
    expect_ok("sha256", "[\"\\u00e9\"]", NULL, want);

    expect_fail("sha256", "[1]", NULL,
                "sha256: argument 1 must be a string or a $bytes value, got a number");
    expect_fail("sha256", "[{\"a\": 1}]", NULL,
                "sha256: argument 1 must be a string or a $bytes value, got an object");
    expect_fail("sha256", "[{\"$bytes\": \"YWJ\"}]", NULL,
                "sha256: argument 1 is not a valid $bytes value");
    expect_fail("sha256", "[{\"$bytes\": \"YWJj\", \"extra\": 1}]", NULL,
                "sha256: argument 1 is not a valid $bytes value");
    expect_fail("sha256", "[]", NULL, "sha256 takes 1 string or $bytes value, got 0 arguments");
}

/* ---- matmul ----------------------------------------------------------------------------- */

static void test_matmul(void **state)
{
    (void)state;
    expect_ok("matmul", "[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]", NULL, "[[19, 22], [43, 50]]");
    expect_ok("matmul", "[[[1, 2, 3]], [[1], [2], [3]]]", NULL, "[[14]]");
    expect_ok("matmul", "[[[1], [2]], [[3, 4]]]", NULL, "[[3, 4], [6, 8]]");
    expect_ok("matmul", "[[[1.5]], [[2]]]", NULL, "[[3.0]]");
    expect_ok("matmul", "[[[1, 0], [0, 1]], [[0.5, 2], [3, 4]]]", NULL,
              "[[0.5, 2.0], [3.0, 4.0]]");
    expect_fail("matmul", "[[[1, 2]], [[1, 2]]]", NULL,
                "matmul: shapes 1x2 and 1x2 are not compatible");
    expect_fail("matmul", "[[[1, 2], [3]], [[1], [2]]]", NULL,
                "matmul: argument 1 is not rectangular: row 0 has 2 columns, row 1 has 1");
    expect_fail("matmul", "[[], [[1]]]", NULL,
                "matmul: argument 1 must be a non-empty list of rows, got an empty list");
    expect_fail("matmul", "[[[1]], 5]", NULL,
                "matmul: argument 2 must be a non-empty list of rows, got a number");
    expect_fail("matmul", "[[[]], [[1]]]", NULL, "matmul: argument 1 row 0 is empty");
    expect_fail("matmul", "[[[1], 2], [[1]]]", NULL,
                "matmul: argument 1 row 1 must be a list of numbers, got a number");
    expect_fail("matmul", "[[[1]], [[\"x\"]]]", NULL,
                "matmul: argument 2 [0][0] must be a number, got a string");
    expect_fail("matmul", "[[[1, true]], [[1], [2]]]", NULL,
                "matmul: argument 1 [0][1] must be a number, got a boolean");
    expect_fail("matmul", "[[[1]]]", NULL, "matmul takes 2 matrices, got 1 argument");
    expect_fail("matmul", "[[[4611686018427387904]], [[2]]]", NULL, "matmul: integer overflow");
    expect_fail("matmul", "[[[4611686018427387904, 4611686018427387904]], [[1], [1]]]", NULL,
                "matmul: integer overflow");
    expect_fail("matmul", "[[[1e200]], [[1e200]]]", NULL, "matmul: result is out of range");

    /* A 3000x1 by 1x3000 product would be 9 million cells: refused before any work. */
    json_t *a = json_array(), *b = json_array(), *brow = json_array();
    for (int i = 0; i < 3000; i++) {
        json_array_append_new(a, json_pack("[i]", i));
        json_array_append_new(brow, json_integer(i));
    }
    json_array_append_new(b, brow);
    expect_fail("matmul", NULL, NULL, "matmul takes 2 matrices, got 0 arguments");
    rt_call call = {0};
    call_with(&call, "matmul", json_pack("[oo]", a, b), NULL);
    assert_string_equal(call.error,
                        "matmul: a 3000x3000 result is larger than the limit of 4194304 cells");
    call_done(&call);
}

/* ---- hostile input ---------------------------------------------------------------------- */

/* A list nested depth levels deep around a number: [[[...[1]...]]]. */
static json_t *deep_list(int depth)
{
    json_t *v = json_integer(1);
    for (int i = 0; i < depth; i++)
        v = json_pack("[o]", v);
    return v;
}

static void test_hostile_inputs_never_crash(void **state)
{
    (void)state;
    const char *hostile[] = {
        "null", "1", "\"s\"", "{}", "{\"$bytes\": 5}", "[null]", "[[null]]", "[{}]",
        "[true, false]", "[[[[]]]]", "[{\"$bytes\": \"====\"}]",
        "[{\"$bytes\": \"YQ==\", \"content_type\": 7}]", "[-9223372036854775808, -1]",
        "[9223372036854775807, 9223372036854775807]", "[1.7976931348623157e308, -1e-320]",
        "[[1.7976931348623157e308, 1.7976931348623157e308]]",
        "[[[9223372036854775807]], [[9223372036854775807]]]", "[\"\\u0000\", \"\\u0000\"]",
        "[[\"a\", 1, null, {}, []]]", "[[[1, 2], [3, 4, 5]], [[1]]]",
    };
    const char *kwargs[] = {NULL, "{}", "{\"x\": null}", "{\"seconds\": \"x\"}",
                            "{\"reverse\": null}", "{\"message\": 5}"};
    int cancelled = 1; /* sleep must not actually sleep on huge numbers */
    for (size_t f = 0; f < NNAMES; f++) {
        for (size_t h = 0; h < sizeof(hostile) / sizeof(hostile[0]); h++) {
            for (size_t k = 0; k < sizeof(kwargs) / sizeof(kwargs[0]); k++) {
                rt_call call = {.cancel_flag = &cancelled};
                call_with(&call, NAMES[f], parse(hostile[h]), parse(kwargs[k]));
                call_done(&call);
            }
        }
        /* Deep nesting, as one argument and as two. */
        rt_call call = {.cancel_flag = &cancelled};
        call_with(&call, NAMES[f], json_pack("[o]", deep_list(10000)), NULL);
        call_done(&call);
        call = (rt_call){.cancel_flag = &cancelled};
        call_with(&call, NAMES[f], json_pack("[oo]", deep_list(5000), deep_list(5000)), NULL);
        call_done(&call);
        /* A kwargs key that is long and full of format directives. */
        char key[600];
        for (size_t i = 0; i + 2 < sizeof(key); i += 2)
            memcpy(key + i, "%n", 2);
        key[sizeof(key) - 1] = '\0';
        call = (rt_call){.cancel_flag = &cancelled};
        call_with(&call, NAMES[f], json_array(), json_pack("{s:i}", key, 1));
        assert_non_null(call.error);
        assert_true(strlen(call.error) < 200);
        call_done(&call);
    }
    /* A NULL call is ignored. */
    for (size_t f = 0; f < NNAMES; f++)
        rt_registry_find(reg, NAMES[f])->fn(NULL);
}

static void test_echo_deep_nesting_unchanged(void **state)
{
    (void)state;
    json_t *deep = deep_list(10000);
    rt_call call = {0};
    call_with(&call, "echo", json_pack("[O]", deep), NULL);
    assert_true(json_equal(call.result_json, deep));
    call_done(&call);
    call = (rt_call){0};
    call_with(&call, "len", json_pack("[O]", deep), NULL);
    assert_true(json_is_integer(call.result_json));
    assert_int_equal(json_integer_value(call.result_json), 1);
    call_done(&call);
    json_decref(deep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_registered_with_docs),
        cmocka_unit_test(test_echo),
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_add_sub_mul),
        cmocka_unit_test(test_div),
        cmocka_unit_test(test_sum),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_len),
        cmocka_unit_test(test_sort),
        cmocka_unit_test(test_sleep_basic),
        cmocka_unit_test(test_sleep_cancelled_from_another_thread),
        cmocka_unit_test(test_sleep_honours_deadline),
        cmocka_unit_test(test_fail),
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_sha256_builtin),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_hostile_inputs_never_crash),
        cmocka_unit_test(test_echo_deep_nesting_unchanged),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
