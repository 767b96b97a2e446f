/* API tests of /v1/tasks and /v1/functions against the real rayd binary: every built-in,
 * errors as values, $ref dependencies, kwargs, num_returns, validation, batches, retries,
 * cancellation, listing, Prefer: wait and the pending-task cap (see notes/tasks_api.md). */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/api/support/harness.h"
#include "tests/api/support/tasks_util.h"

static rayd_server g_main;  /* --workers 8: sleeps do not starve the other tests */
static rayd_server g_fresh; /* one per test, for tests that need a server of their own */

#define ID TK_ID_SIZE

/* ---------------------------------------------------------------- helpers */

static void assert_header_eq(const http_resp *r, const char *name, const char *want)
{
    const char *v = http_header_get(r, name);
    if (!v || strcmp(v, want) != 0)
        fail_msg("header %s is %s, wanted %s", name, v ? v : "(missing)", want);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("\"%s\" does not contain \"%s\"", hay ? hay : "(null)", needle);
}

/* The value of task `body`, which must succeed, equals want_json. */
static void assert_task_value(const char *body, const char *want_json)
{
    char ref[ID];
    tk_submit(&g_main, body, NULL, ref);
    json_t *v = tk_value(&g_main, ref);
    json_t *want = json_loads(want_json, JSON_DECODE_ANY, NULL);
    bool same = json_equal(v, want);
    json_decref(want);
    if (!same)
        fprintf(stderr, "task: %s\n", body);
    tk_assert_json_eq(v, want_json);
    json_decref(v);
}

/* Task `body` fails with a TaskError whose detail contains want_detail (and names the
 * function). */
static void assert_task_error(const char *body, const char *function, const char *want_detail)
{
    char id[ID], ref[ID];
    tk_submit(&g_main, body, id, ref);
    http_resp *r = tk_error(&g_main, ref, "TaskError");
    const char *detail = json_str(r->json, "detail");
    if (!strstr(detail, want_detail))
        fail_msg("task %s: detail \"%s\" lacks \"%s\"", body, detail, want_detail);
    assert_string_equal(json_str(r->json, "function"), function);
    assert_string_equal(json_str(r->json, "task_id"), id);
    http_resp_free(r);
    json_t *info = tk_wait_ended(&g_main, id, 5);
    assert_string_equal(json_str(info, "state"), "FAILED");
    json_t *err = json_member(info, "error");
    assert_string_equal(json_str(err, "title"), "TaskError");
    assert_contains(json_str(err, "detail"), want_detail);
    json_decref(info);
}

static void cancel_quietly(const rayd_server *s, const char *task_id)
{
    char path[512];
    snprintf(path, sizeof path, "/v1/tasks/%s/cancel", task_id);
    http_resp *r = http_request(s, "POST", path, NULL, NULL, 0);
    http_resp_free(r);
}

static int group_setup(void **state)
{
    static const char *const args[] = {"--workers", "8", NULL};
    return rayd_start(&g_main, args, NULL);
}

static int group_teardown(void **state)
{
    return rayd_stop_clean(&g_main);
}

static int fresh_setup(void **state)
{
    return rayd_start(&g_fresh, NULL, NULL);
}

static int one_worker_setup(void **state)
{
    static const char *const args[] = {"--workers", "1", NULL};
    return rayd_start(&g_fresh, args, NULL);
}

static int capped_setup(void **state)
{
    static const char *const args[] = {"--workers", "1", "--max-pending-tasks", "5", NULL};
    return rayd_start(&g_fresh, args, NULL);
}

static int fresh_teardown(void **state)
{
    return rayd_stop_clean(&g_fresh);
}

/* ---------------------------------------------------------------- built-ins */

static void test_builtin_values(void **state)
{
    static const struct {
        const char *body, *want;
    } cases[] = {
        {"{\"function\":\"echo\",\"args\":[1]}", "1"},
        {"{\"function\":\"echo\",\"args\":[]}", "null"},
        {"{\"function\":\"echo\"}", "null"},
        {"{\"function\":\"echo\",\"args\":[1,\"a\",null]}", "[1,\"a\",null]"},
        {"{\"function\":\"echo\",\"args\":[{\"k\":[true,false]}]}", "{\"k\":[true,false]}"},
        {"{\"function\":\"identity\",\"args\":[\"x\"]}", "\"x\""},
        {"{\"function\":\"add\",\"args\":[2,3]}", "5"},
        {"{\"function\":\"add\",\"args\":[1.5,2]}", "3.5"},
        {"{\"function\":\"sub\",\"args\":[2,5]}", "-3"},
        {"{\"function\":\"mul\",\"args\":[6,7]}", "42"},
        {"{\"function\":\"mul\",\"args\":[0.5,3]}", "1.5"},
        {"{\"function\":\"div\",\"args\":[7,2]}", "3.5"},
        {"{\"function\":\"div\",\"args\":[6,3]}", "2.0"},
        {"{\"function\":\"sum\",\"args\":[[1,2,3]]}", "6"},
        {"{\"function\":\"sum\",\"args\":[[]]}", "0"},
        {"{\"function\":\"sum\",\"args\":[[1,2.5]]}", "3.5"},
        {"{\"function\":\"concat\",\"args\":[\"ab\",\"cd\",\"\"]}", "\"abcd\""},
        {"{\"function\":\"concat\",\"args\":[[1],[2,3],[]]}", "[1,2,3]"},
        {"{\"function\":\"len\",\"args\":[\"h\\u00e9llo\"]}", "5"},
        {"{\"function\":\"len\",\"args\":[[1,2,3]]}", "3"},
        {"{\"function\":\"len\",\"args\":[{\"a\":1,\"b\":2}]}", "2"},
        {"{\"function\":\"len\",\"args\":[{\"$bytes\":\"AAEC\"}]}", "3"},
        {"{\"function\":\"sort\",\"args\":[[3,1,2.5]]}", "[1,2.5,3]"},
        {"{\"function\":\"sort\",\"args\":[[\"b\",\"c\",\"a\"]]}", "[\"a\",\"b\",\"c\"]"},
        {"{\"function\":\"sleep\",\"args\":[0.01]}", "0.01"},
        {"{\"function\":\"sha256\",\"args\":[\"abc\"]}",
         "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\""},
        {"{\"function\":\"sha256\",\"args\":[\"\"]}",
         "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\""},
        {"{\"function\":\"matmul\",\"args\":[[[1,2],[3,4]],[[5,6],[7,8]]]}",
         "[[19,22],[43,50]]"},
        {"{\"function\":\"matmul\",\"args\":[[[1,2,3]],[[1],[1],[1]]]}", "[[6]]"},
    };
    size_t n = sizeof cases / sizeof cases[0];
    char (*refs)[ID] = calloc(n, ID);
    char (*ids)[ID] = calloc(n, ID);
    assert_non_null(refs);
    assert_non_null(ids);
    for (size_t i = 0; i < n; i++) /* all submitted first: they run concurrently */
        tk_submit(&g_main, cases[i].body, ids[i], refs[i]);
    for (size_t i = 0; i < n; i++) {
        json_t *v = tk_value(&g_main, refs[i]);
        json_t *want = json_loads(cases[i].want, JSON_DECODE_ANY, NULL);
        if (!json_equal(v, want)) {
            char *g = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            fail_msg("%s gave %s, wanted %s", cases[i].body, g, cases[i].want);
        }
        json_decref(want);
        json_decref(v);
        json_t *info = tk_wait_ended(&g_main, ids[i], 5);
        assert_string_equal(json_str(info, "state"), "FINISHED");
        assert_int_equal(json_int(info, "attempts"), 1);
        assert_string_equal(json_str(info, "ref"), refs[i]);
        assert_true(json_is_null(json_member(info, "error")));
        json_decref(info);
    }
    free(refs);
    free(ids);
}

static void test_builtin_result_content_type(void **state)
{
    char ref[ID];
    tk_submit(&g_main, "{\"function\":\"add\",\"args\":[1,2]}", NULL, ref);
    char path[512];
    snprintf(path, sizeof path, "/v1/objects/%s?timeout=10", ref);
    http_resp *r = http_get(&g_main, path);
    assert_status(r, 200);
    assert_true(http_ct_is(r, "application/json"));
    assert_string_equal(r->body, "3");
    http_resp_free(r);
}

static void test_fail(void **state)
{
    assert_task_error("{\"function\":\"fail\",\"args\":[\"boom: it broke\"]}", "fail",
                      "boom: it broke");
    assert_task_error("{\"function\":\"fail\"}", "fail", "fail was called");
}

static void test_div_by_zero(void **state)
{
    assert_task_error("{\"function\":\"div\",\"args\":[1,0]}", "div", "division by zero");
    assert_task_error("{\"function\":\"div\",\"args\":[1.5,0.0]}", "div", "division by zero");
}

static void test_wrong_args(void **state)
{
    assert_task_error("{\"function\":\"add\",\"args\":[\"a\",1]}", "add",
                      "argument 1 must be a number");
    assert_task_error("{\"function\":\"mul\",\"args\":[2,[1]]}", "mul",
                      "argument 2 must be a number");
    assert_task_error("{\"function\":\"add\",\"args\":[1]}", "add", "takes 2 numbers");
    assert_task_error("{\"function\":\"identity\",\"args\":[1,2]}", "identity",
                      "takes 1 argument");
    assert_task_error("{\"function\":\"sum\",\"args\":[[1,\"x\"]]}", "sum", "index 1");
    assert_task_error("{\"function\":\"concat\",\"args\":[\"a\",[1]]}", "concat",
                      "all strings or all lists");
    assert_task_error("{\"function\":\"len\",\"args\":[5]}", "len", "argument 1");
    assert_task_error("{\"function\":\"sort\",\"args\":[[1,\"a\"]]}", "sort", "mixes");
    assert_task_error("{\"function\":\"sort\",\"args\":[[1]],\"kwargs\":{\"x\":1}}", "sort",
                      "unknown keyword argument 'x'");
    assert_task_error("{\"function\":\"sleep\",\"args\":[-1]}", "sleep", ">= 0");
    assert_task_error("{\"function\":\"sha256\",\"args\":[1]}", "sha256", "argument 1");
    assert_task_error("{\"function\":\"matmul\",\"args\":[[[1,2]],[[1,2]]]}", "matmul",
                      "not compatible");
    assert_task_error("{\"function\":\"add\",\"args\":[9223372036854775807,1]}", "add",
                      "overflow");
}

/* ---------------------------------------------------------------- dependencies */

static void test_chain_ref(void **state)
{
    char r1[ID], r2[ID];
    tk_submit(&g_main, "{\"function\":\"add\",\"args\":[2,3]}", NULL, r1);
    tk_submitf(NULL, r2, &g_main, "{\"function\":\"mul\",\"args\":[{\"$ref\":\"%s\"},6]}", r1);
    json_t *v = tk_value(&g_main, r2);
    tk_assert_json_eq(v, "30");
    json_decref(v);

    /* A dependency on a pending object waits for it; a put object works too. */
    char slow_id[ID], slow[ID], put[ID], r3[ID], id3[ID];
    tk_submit(&g_main, "{\"function\":\"sleep\",\"args\":[0.25]}", slow_id, slow);
    put_object(&g_main, "application/json", "[4,5]", 5, put);
    tk_submitf(id3, r3, &g_main,
               "{\"function\":\"concat\",\"args\":[{\"$ref\":\"%s\"},[{\"$ref\":\"%s\"}]]}",
               put, slow);
    /* the nested ref is not a dependency: concat runs at once */
    json_t *info = tk_wait_ended(&g_main, id3, 5);
    assert_string_equal(json_str(info, "state"), "FINISHED");
    json_decref(info);
    v = tk_value(&g_main, r3);
    char want[200];
    snprintf(want, sizeof want, "[4,5,{\"$ref\":\"%s\"}]", slow);
    tk_assert_json_eq(v, want);
    json_decref(v);

    char r4[ID], id4[ID];
    tk_submitf(id4, r4, &g_main, "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},1]}", slow);
    info = tk_info(&g_main, id4);
    const char *st = json_str(info, "state");
    if (strcmp(st, "PENDING_ARGS_AVAIL") != 0 && strcmp(st, "FINISHED") != 0)
        fail_msg("a task waiting for its argument is %s, wanted PENDING_ARGS_AVAIL", st);
    json_decref(info);
    v = tk_value(&g_main, r4);
    tk_assert_json_eq(v, "1.25");
    json_decref(v);
}

static void test_nested_ref_unresolved(void **state)
{
    /* A pending object nested in a list or map: echo answers at once, with the $ref object
     * itself (Ray passes nested refs as refs). */
    char sid[ID], slow[ID];
    tk_submit(&g_main, "{\"function\":\"sleep\",\"args\":[30]}", sid, slow);
    char body[512];
    snprintf(body, sizeof body,
             "{\"function\":\"echo\",\"args\":[[{\"$ref\":\"%s\"}, 2]]}", slow);
    const char *h[] = {"Content-Type: application/json", "Prefer: wait=5", NULL};
    double t0 = now_s();
    http_resp *r = http_request(&g_main, "POST", "/v1/tasks", h, body, strlen(body));
    double took = now_s() - t0;
    assert_status(r, 200);
    char want[256];
    snprintf(want, sizeof want, "[{\"$ref\":\"%s\"},2]", slow);
    tk_assert_json_eq(r->json, want);
    http_resp_free(r);
    if (took > 2.0)
        fail_msg("echo of a nested pending ref took %.2f s: it waited for the ref", took);

    snprintf(body, sizeof body,
             "{\"function\":\"echo\",\"args\":[{\"k\":{\"$ref\":\"%s\"}}]}", slow);
    r = http_request(&g_main, "POST", "/v1/tasks", h, body, strlen(body));
    assert_status(r, 200);
    snprintf(want, sizeof want, "{\"k\":{\"$ref\":\"%s\"}}", slow);
    tk_assert_json_eq(r->json, want);
    http_resp_free(r);

    /* kwargs: a nested ref in a kwargs value is not resolved either */
    snprintf(body, sizeof body,
             "{\"function\":\"sort\",\"args\":[[2,1]],\"kwargs\":{\"reverse\":[{\"$ref\":\"%s\"}]}}",
             slow);
    r = http_request(&g_main, "POST", "/v1/tasks", h, body, strlen(body));
    assert_problem(r, 424, "TaskError"); /* reverse must be a boolean: it got the list */
    assert_contains(json_str(r->json, "detail"), "reverse must be a boolean");
    http_resp_free(r);
    cancel_quietly(&g_main, sid);
}

static void test_kwargs(void **state)
{
    assert_task_value("{\"function\":\"sort\",\"args\":[[3,1,2]],\"kwargs\":{\"reverse\":true}}",
                      "[3,2,1]");
    assert_task_value(
        "{\"function\":\"sort\",\"args\":[[3,1,2]],\"kwargs\":{\"reverse\":false}}", "[1,2,3]");
    assert_task_value("{\"function\":\"sleep\",\"kwargs\":{\"seconds\":0.02}}", "0.02");
    assert_task_error("{\"function\":\"fail\",\"kwargs\":{\"message\":\"kw boom\"}}", "fail",
                      "kw boom");
    /* a kwargs value that is exactly {"$ref"} is a dependency, resolved like an argument */
    char msg[ID], flag[ID];
    put_object(&g_main, "application/json", "\"from a ref\"", 12, msg);
    put_object(&g_main, "application/json", "true", 4, flag);
    char body[300];
    snprintf(body, sizeof body,
             "{\"function\":\"fail\",\"kwargs\":{\"message\":{\"$ref\":\"%s\"}}}", msg);
    assert_task_error(body, "fail", "from a ref");
    snprintf(body, sizeof body,
             "{\"function\":\"sort\",\"args\":[[1,3,2]],\"kwargs\":{\"reverse\":{\"$ref\":\"%s\"}}}",
             flag);
    assert_task_value(body, "[3,2,1]");
    /* binary objects arrive as $bytes */
    char bin[ID];
    put_object(&g_main, "application/octet-stream", "abc", 3, bin);
    snprintf(body, sizeof body, "{\"function\":\"sha256\",\"args\":[{\"$ref\":\"%s\"}]}", bin);
    assert_task_value(body, "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"");
    snprintf(body, sizeof body, "{\"function\":\"echo\",\"args\":[{\"$ref\":\"%s\"}]}", bin);
    assert_task_value(body, "{\"$bytes\":\"YWJj\",\"content_type\":\"application/octet-stream\"}");
}

/* ---------------------------------------------------------------- num_returns */

static void submit_multi(const rayd_server *s, const char *body, int n, char *task_id,
                         char refs[][ID])
{
    http_resp *r = http_post_json(s, "/v1/tasks", body);
    assert_status(r, 202);
    snprintf(task_id, ID, "%s", json_str(r->json, "task_id"));
    json_t *a = json_member(r->json, "refs");
    assert_true(json_is_array(a));
    assert_int_equal(json_array_size(a), n);
    for (int i = 0; i < n; i++) {
        const char *ref = json_string_value(json_array_get(a, (size_t)i));
        assert_non_null(ref);
        assert_true(is_valid_ref(ref));
        snprintf(refs[i], ID, "%s", ref);
    }
    assert_string_not_equal(refs[0], refs[1]);
    http_resp_free(r);
}

static void test_num_returns(void **state)
{
    char id[ID], refs[2][ID];
    submit_multi(&g_main,
                 "{\"function\":\"sort\",\"args\":[[\"b\",\"a\"]],\"options\":{\"num_returns\":2}}",
                 2, id, refs);
    json_t *v = tk_value(&g_main, refs[0]);
    tk_assert_json_eq(v, "\"a\"");
    json_decref(v);
    v = tk_value(&g_main, refs[1]);
    tk_assert_json_eq(v, "\"b\"");
    json_decref(v);
    json_t *info = tk_wait_ended(&g_main, id, 5);
    assert_string_equal(json_str(info, "state"), "FINISHED");
    json_t *irefs = json_member(info, "refs");
    assert_int_equal(json_array_size(irefs), 2);
    assert_string_equal(json_string_value(json_array_get(irefs, 0)), refs[0]);
    assert_string_equal(json_string_value(json_array_get(irefs, 1)), refs[1]);
    json_decref(info);

    /* echo of one list argument returns that list */
    submit_multi(&g_main,
                 "{\"function\":\"echo\",\"args\":[[[1,2],{\"x\":3}]],\"options\":{\"num_returns\":2}}",
                 2, id, refs);
    v = tk_value(&g_main, refs[0]);
    tk_assert_json_eq(v, "[1,2]");
    json_decref(v);
    v = tk_value(&g_main, refs[1]);
    tk_assert_json_eq(v, "{\"x\":3}");
    json_decref(v);

    /* a ref of a multi-return task is a dependency like any other */
    char r3[ID];
    tk_submitf(NULL, r3, &g_main, "{\"function\":\"sum\",\"args\":[{\"$ref\":\"%s\"}]}", refs[0]);
    v = tk_value(&g_main, r3);
    tk_assert_json_eq(v, "3");
    json_decref(v);
}

static void test_num_returns_mismatch(void **state)
{
    static const char *const bodies[] = {
        "{\"function\":\"echo\",\"args\":[[1,2,3]],\"options\":{\"num_returns\":2}}",
        "{\"function\":\"echo\",\"args\":[5],\"options\":{\"num_returns\":2}}",
    };
    for (size_t b = 0; b < 2; b++) {
        char id[ID], refs[2][ID];
        submit_multi(&g_main, bodies[b], 2, id, refs);
        for (int i = 0; i < 2; i++) {
            http_resp *r = tk_error(&g_main, refs[i], "TaskError");
            assert_contains(json_str(r->json, "detail"), "num_returns=2");
            http_resp_free(r);
        }
        json_t *info = tk_wait_ended(&g_main, id, 5);
        assert_string_equal(json_str(info, "state"), "FAILED");
        json_decref(info);
    }
}

/* ---------------------------------------------------------------- validation */

static void test_unknown_function_404(void **state)
{
    long long before = tk_status_tasks(&g_main, "submitted");
    http_resp *r = http_post_json(&g_main, "/v1/tasks", "{\"function\":\"no_such_fn\",\"args\":[1]}");
    assert_problem(r, 404, "NotFound");
    assert_contains(json_str(r->json, "detail"), "no_such_fn");
    http_resp_free(r);
    const char *h[] = {"Content-Type: application/json", "Prefer: wait=1", NULL};
    const char *body = "{\"function\":\"no_such_fn\"}";
    r = http_request(&g_main, "POST", "/v1/tasks", h, body, strlen(body));
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    assert_int_equal(tk_status_tasks(&g_main, "submitted"), before);

    r = http_get(&g_main, "/v1/functions/no_such_fn");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
}

static void test_unknown_ref_400(void **state)
{
    long long before = tk_status_tasks(&g_main, "submitted");
    static const char *const bodies[] = {
        "{\"function\":\"add\",\"args\":[1,{\"$ref\":\"oNeverExisted000000000\"}]}",
        "{\"function\":\"fail\",\"kwargs\":{\"message\":{\"$ref\":\"oNeverExisted000000000\"}}}",
        "{\"function\":\"echo\",\"args\":[{\"$ref\":5}]}",
        "{\"function\":\"echo\",\"args\":[{\"$ref\":\"bad ref!\"}]}",
        "{\"function\":\"echo\",\"args\":[{\"$ref\":\"\"}]}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        http_resp *r = http_post_json(&g_main, "/v1/tasks", bodies[i]);
        if (r->status != 400)
            fprintf(stderr, "body: %s\n", bodies[i]);
        assert_problem(r, 400, "BadRequest");
        http_resp_free(r);
    }
    http_resp *r = http_post_json(&g_main, "/v1/tasks", bodies[0]);
    assert_problem(r, 400, "BadRequest");
    const char *detail = json_str(r->json, "detail");
    assert_contains(detail, "args[1]");
    assert_contains(detail, "oNeverExisted000000000");
    http_resp_free(r);

    /* {"$ref"} with other keys is 400 too */
    char ref[ID];
    put_object(&g_main, "application/json", "1", 1, ref);
    r = tk_post_jsonf(&g_main, "/v1/tasks",
                      "{\"function\":\"echo\",\"args\":[{\"$ref\":\"%s\",\"x\":1}]}", ref);
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
    assert_int_equal(tk_status_tasks(&g_main, "submitted"), before);
}

static void test_freed_ref_object_lost(void **state)
{
    char ref[ID], path[128];
    put_object(&g_main, "application/json", "41", 2, ref);
    snprintf(path, sizeof path, "/v1/objects/%s", ref);
    http_resp *r = http_delete(&g_main, path);
    assert_status(r, 204);
    http_resp_free(r);

    char id[ID], out[ID];
    tk_submitf(id, out, &g_main, "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},1]}", ref);
    json_t *info = tk_wait_ended(&g_main, id, 5);
    assert_string_equal(json_str(info, "state"), "FAILED");
    assert_true(json_is_null(json_member(info, "started_at"))); /* it never ran */
    json_t *err = json_member(info, "error");
    assert_string_equal(json_str(err, "title"), "TaskError");
    assert_string_equal(json_str(json_member(err, "cause"), "title"), "ObjectLost");
    json_decref(info);

    r = tk_error(&g_main, out, "TaskError");
    assert_contains(json_str(r->json, "detail"), "did not run");
    json_t *cause = json_member(r->json, "cause");
    assert_string_equal(json_str(cause, "title"), "ObjectLost");
    /* the nested problem is the ObjectLost problem: status 410, as everywhere else */
    long long st = json_int(cause, "status");
    http_resp_free(r);
    if (st != 410)
        fail_msg("the ObjectLost cause has \"status\": %lld, wanted 410", st);
}

static void test_options_validation(void **state)
{
    static const char *const bodies[] = {
        "{\"function\":\"echo\",\"options\":{\"num_returns\":0}}",
        "{\"function\":\"echo\",\"options\":{\"num_returns\":1001}}",
        "{\"function\":\"echo\",\"options\":{\"num_returns\":\"2\"}}",
        "{\"function\":\"echo\",\"options\":{\"num_returns\":1.5}}",
        "{\"function\":\"echo\",\"options\":{\"max_retries\":-1}}",
        "{\"function\":\"echo\",\"options\":{\"max_retries\":1001}}",
        "{\"function\":\"echo\",\"options\":{\"retry_exceptions\":\"yes\"}}",
        "{\"function\":\"echo\",\"options\":{\"timeout\":-1}}",
        "{\"function\":\"echo\",\"options\":{\"timeout\":\"1\"}}",
        "{\"function\":\"echo\",\"options\":{\"name\":\"\"}}",
        "{\"function\":\"echo\",\"options\":{\"name\":\"a\\nb\"}}",
        "{\"function\":\"echo\",\"options\":{\"name\":5}}",
        "{\"function\":\"echo\",\"options\":{\"unknown_option\":1}}",
        "{\"function\":\"echo\",\"options\":[]}",
        "{\"function\":\"echo\",\"fn\":\"x\"}",
        "{\"function\":\"echo\",\"args\":{}}",
        "{\"function\":\"echo\",\"kwargs\":[]}",
        "{\"function\":5}",
        "{\"args\":[1]}",
        "[]",
        "{\"function\":\"echo\"",
    };
    long long before = tk_status_tasks(&g_main, "submitted");
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        http_resp *r = http_post_json(&g_main, "/v1/tasks", bodies[i]);
        char why[512];
        if (!problem_ok(r, 400, "BadRequest", why, sizeof why))
            fail_msg("%s: %s", bodies[i], why);
        http_resp_free(r);
    }
    assert_int_equal(tk_status_tasks(&g_main, "submitted"), before);

    /* the limits themselves are fine */
    char id[ID];
    tk_submit(&g_main,
              "{\"function\":\"echo\",\"args\":[1],\"options\":{\"num_returns\":1,"
              "\"max_retries\":0,\"retry_exceptions\":false,\"timeout\":0,\"name\":\"my-task\"}}",
              id, NULL);
    json_t *info = tk_wait_ended(&g_main, id, 5);
    assert_string_equal(json_str(info, "name"), "my-task");
    json_decref(info);
    tk_submit(&g_main, "{\"function\":\"echo\",\"args\":[1],\"options\":{\"max_retries\":1000}}",
              id, NULL);
    info = tk_wait_ended(&g_main, id, 5);
    assert_null(json_object_get(info, "name")); /* only when given */
    json_decref(info);
}

static void test_timeout_option(void **state)
{
    char id[ID], ref[ID];
    double t0 = now_s();
    tk_submit(&g_main, "{\"function\":\"sleep\",\"args\":[20],\"options\":{\"timeout\":0.2}}", id,
              ref);
    http_resp *r = tk_error(&g_main, ref, "TaskError");
    double took = now_s() - t0;
    assert_contains(json_str(r->json, "detail"), "timed out");
    http_resp_free(r);
    if (took < 0.15 || took > 3.0)
        fail_msg("a 0.2 s timeout ended the task after %.2f s", took);
    json_t *info = tk_wait_ended(&g_main, id, 5);
    assert_string_equal(json_str(info, "state"), "FAILED");
    json_decref(info);
}

/* ---------------------------------------------------------------- batches */

static void test_batch_ok(void **state)
{
    http_resp *r = http_post_json(
        &g_main, "/v1/tasks/batch",
        "{\"tasks\":[{\"function\":\"add\",\"args\":[1,2]},{\"function\":\"mul\",\"args\":[3,4]},"
        "{\"function\":\"echo\",\"args\":[\"x\"]},"
        "{\"function\":\"sort\",\"args\":[[2,1]],\"options\":{\"num_returns\":2}},"
        "{\"function\":\"fail\",\"args\":[\"in batch\"]}]}");
    assert_status(r, 202);
    json_t *tasks = json_member(r->json, "tasks");
    assert_int_equal(json_array_size(tasks), 5);
    static const char *const want[] = {"3", "12", "\"x\""};
    for (size_t i = 0; i < 3; i++) {
        json_t *t = json_array_get(tasks, i);
        json_t *v = tk_value(&g_main, json_str(t, "ref"));
        tk_assert_json_eq(v, want[i]);
        json_decref(v);
        json_t *info = tk_info(&g_main, json_str(t, "task_id"));
        assert_string_equal(json_str(info, "ref"), json_str(t, "ref"));
        json_decref(info);
    }
    json_t *multi = json_member(json_array_get(tasks, 3), "refs");
    assert_int_equal(json_array_size(multi), 2);
    json_t *v = tk_value(&g_main, json_string_value(json_array_get(multi, 1)));
    tk_assert_json_eq(v, "2");
    json_decref(v);
    http_resp *e = tk_error(&g_main, json_str(json_array_get(tasks, 4), "ref"), "TaskError");
    assert_string_equal(json_str(e->json, "detail"), "in batch");
    http_resp_free(e);
    http_resp_free(r);

    /* a batch task may depend on an earlier task's ref only through refs it knows: use a put */
    char put[ID];
    put_object(&g_main, "application/json", "10", 2, put);
    r = tk_post_jsonf(&g_main, "/v1/tasks/batch",
                      "{\"tasks\":[{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},1]},"
                      "{\"function\":\"mul\",\"args\":[{\"$ref\":\"%s\"},2]}]}",
                      put, put);
    assert_status(r, 202);
    tasks = json_member(r->json, "tasks");
    v = tk_value(&g_main, json_str(json_array_get(tasks, 0), "ref"));
    tk_assert_json_eq(v, "11");
    json_decref(v);
    v = tk_value(&g_main, json_str(json_array_get(tasks, 1), "ref"));
    tk_assert_json_eq(v, "20");
    json_decref(v);
    http_resp_free(r);
}

static void test_batch_all_or_nothing(void **state)
{
    static const struct {
        const char *body, *where;
    } cases[] = {
        {"{\"tasks\":[{\"function\":\"add\",\"args\":[1,2]},{\"function\":\"no_such_fn\"}]}",
         "tasks[1]"},
        {"{\"tasks\":[{\"function\":\"add\",\"args\":[1,2]},{\"function\":\"echo\"},"
         "{\"function\":\"echo\",\"options\":{\"num_returns\":0}}]}",
         "tasks[2]"},
        {"{\"tasks\":[{\"function\":\"echo\",\"args\":[{\"$ref\":\"oNeverExisted000000000\"}]},"
         "{\"function\":\"echo\"}]}",
         "tasks[0]"},
        {"{\"tasks\":[{\"function\":\"echo\"},{\"function\":\"echo\",\"bogus\":1}]}", "tasks[1]"},
        {"{\"tasks\":[{\"function\":\"echo\"},5]}", "tasks[1]"},
        {"{\"tasks\":[]}", NULL},
        {"{\"tasks\":{}}", NULL},
        {"{}", NULL},
        {"{\"tasks\":[{\"function\":\"echo\"}],\"extra\":1}", NULL},
    };
    long long before = tk_status_tasks(&g_main, "submitted");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_resp *r = http_post_json(&g_main, "/v1/tasks/batch", cases[i].body);
        char why[512];
        if (!problem_ok(r, 400, "BadRequest", why, sizeof why))
            fail_msg("%s: %s", cases[i].body, why);
        if (cases[i].where)
            assert_contains(json_str(r->json, "detail"), cases[i].where);
        http_resp_free(r);
    }
    assert_int_equal(tk_status_tasks(&g_main, "submitted"), before);
}

static void test_batch_10000_then_wait(void **state)
{
    enum { N = 10000 };
    size_t cap = (size_t)N * 48 + 64, len = 0;
    char *body = malloc(cap);
    assert_non_null(body);
    len += (size_t)snprintf(body + len, cap - len, "{\"tasks\":[");
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(body + len, cap - len, "%s{\"function\":\"echo\",\"args\":[%d]}",
                                i ? "," : "", i);
    len += (size_t)snprintf(body + len, cap - len, "]}");
    double t0 = now_s();
    http_resp *r = http_post_json(&g_main, "/v1/tasks/batch", body);
    assert_status(r, 202);
    json_t *tasks = json_member(r->json, "tasks");
    assert_int_equal(json_array_size(tasks), N);

    /* one wait for all of them */
    len = 0;
    len += (size_t)snprintf(body + len, cap - len, "{\"refs\":[");
    for (size_t i = 0; i < N; i++)
        len += (size_t)snprintf(body + len, cap - len, "%s\"%s\"", i ? "," : "",
                                json_str(json_array_get(tasks, i), "ref"));
    len += (size_t)snprintf(body + len, cap - len, "],\"num_returns\":%d,\"timeout\":30}", N);
    http_resp *w = http_post_json(&g_main, "/v1/wait", body);
    assert_status(w, 200);
    json_t *ready = json_member(w->json, "ready");
    assert_int_equal(json_array_size(ready), N);
    assert_int_equal(json_array_size(json_member(w->json, "not_ready")), 0);
    for (size_t i = 0; i < N; i++)
        if (strcmp(json_string_value(json_array_get(ready, i)),
                   json_str(json_array_get(tasks, i), "ref")) != 0)
            fail_msg("ready[%zu] is not the %zu-th ref (input order)", i, i);
    double took = now_s() - t0;
    if (took > 20)
        fail_msg("10000 echo tasks took %.1f s", took);

    int probe[] = {0, 1, 4999, N - 1};
    for (size_t k = 0; k < 4; k++) {
        json_t *v = tk_value(&g_main, json_str(json_array_get(tasks, (size_t)probe[k]), "ref"));
        assert_true(json_is_integer(v));
        assert_int_equal(json_integer_value(v), probe[k]);
        json_decref(v);
    }
    http_resp_free(w);
    http_resp_free(r);
    free(body);
}

/* Batch and wait bodies of the usual shape are read by quick readers (api/task_batch_scan.h,
 * api/wait_scan.h), others by the general decoder: the same tasks and refs written both ways
 * get the same answers. */
static void test_batch_and_wait_either_reader(void **state)
{
    static const char *const bodies[] = {
        "{\"tasks\":[{\"function\":\"add\",\"args\":[1,2]},{\"function\":\"echo\","
        "\"kwargs\":{},\"options\":{\"num_returns\":1,\"name\":\"quick\"}}]}",
        "{\"tasks\":[{\"\\u0066unction\":\"add\",\"args\":[1,2]},{\"function\":\"ech\\u006f\","
        "\"kwargs\":{},\"options\":{\"num_returns\":1,\"name\":\"general\"}}]}",
    };
    char refs[2][2][ID];
    for (int b = 0; b < 2; b++) {
        http_resp *r = http_post_json(&g_main, "/v1/tasks/batch", bodies[b]);
        assert_status(r, 202);
        assert_header_eq(r, "Content-Type", "application/json");
        json_t *tasks = json_member(r->json, "tasks");
        assert_int_equal(json_array_size(tasks), 2);
        for (size_t i = 0; i < 2; i++) {
            json_t *t = json_array_get(tasks, i);
            assert_int_equal(json_object_size(t), 2); /* task_id and ref */
            snprintf(refs[b][i], ID, "%s", json_str(t, "ref"));
        }
        json_t *info = tk_info(&g_main, json_str(json_array_get(tasks, 1), "task_id"));
        assert_string_equal(json_str(info, "name"), b == 0 ? "quick" : "general");
        assert_string_equal(json_str(info, "function"), "echo");
        json_decref(info);
        http_resp_free(r);
    }
    /* waits read both ways: the same answer, in input order */
    for (int w = 0; w < 2; w++) {
        http_resp *r = tk_post_jsonf(&g_main, "/v1/wait",
                                     "{\"%s\":[\"%s\",\"%s\",\"%s\",\"%s\"],\"num_returns\":4,"
                                     "\"timeout\":30}",
                                     w == 0 ? "refs" : "r\\u0065fs", refs[0][0], refs[0][1],
                                     refs[1][0], refs[1][1]);
        assert_status(r, 200);
        json_t *ready = json_member(r->json, "ready");
        assert_int_equal(json_array_size(ready), 4);
        assert_int_equal(json_array_size(json_member(r->json, "not_ready")), 0);
        for (size_t i = 0; i < 4; i++)
            assert_string_equal(json_string_value(json_array_get(ready, i)), refs[i / 2][i % 2]);
        http_resp_free(r);
    }
    for (int b = 0; b < 2; b++) {
        json_t *v = tk_value(&g_main, refs[b][0]);
        tk_assert_json_eq(v, "3");
        json_decref(v);
    }
}

/* Bad batch and wait bodies of the usual shape get the general path's problem+json, and
 * submit nothing (compares one node's tasks.submitted, so it is node-local in the cluster
 * run: tests/cluster/api_node_local.txt). */
static void test_batch_and_wait_bad_bodies_submit_nothing(void **state)
{
    char ids[2][ID], refs[2][ID];
    for (int i = 0; i < 2; i++)
        tk_submit(&g_main, "{\"function\":\"add\",\"args\":[1,2]}", ids[i], refs[i]);
    static const struct {
        const char *path, *body, *detail;
    } bad[] = {
        {"/v1/tasks/batch", "{\"tasks\":[{\"function\":\"echo\"},{\"function\":\"echo\",\"args\":5}]}",
         "tasks[1]: args must be a list"},
        {"/v1/tasks/batch", "{\"tasks\":[{\"function\":\"echo\",\"options\":{\"num_returns\":0}}]}",
         "tasks[0]: options.num_returns must be"},
        {"/v1/tasks/batch", "{\"tasks\":[{\"function\":\"echo\",\"args\":[1],\"args\":[2]}]}",
         "duplicate"},
        {"/v1/tasks/batch", "{\"tasks\":[{\"function\":\"echo\"}]} x", "not valid JSON"},
        /* waits: refs [a, b, a] and this after them */
        {"/v1/wait", "", "appears more than once"},
        {"/v1/wait", ",\"num_returns\":4", "num_returns must be"},
        {"/v1/wait", ",\"timeout\":-1", "timeout must be"},
    };
    long long before = tk_status_tasks(&g_main, "submitted");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        http_resp *r = strcmp(bad[i].path, "/v1/wait") != 0
                           ? http_post_json(&g_main, bad[i].path, bad[i].body)
                           : tk_post_jsonf(&g_main, bad[i].path, "{\"refs\":[\"%s\",\"%s\",\"%s\"]%s}",
                                           refs[0], refs[1], refs[0], bad[i].body);
        char why[512];
        if (!problem_ok(r, 400, "BadRequest", why, sizeof why))
            fail_msg("%s: %s", bad[i].body, why);
        assert_contains(json_str(r->json, "detail"), bad[i].detail);
        http_resp_free(r);
    }
    assert_int_equal(tk_status_tasks(&g_main, "submitted"), before);
}

/* ---------------------------------------------------------------- retries */

static void test_retries(void **state)
{
    long long retries0 = tk_status_tasks(&g_main, "retries");
    char id[ID], ref[ID];
    tk_submit(&g_main,
              "{\"function\":\"fail\",\"args\":[\"again\"],\"options\":{\"max_retries\":2,"
              "\"retry_exceptions\":true}}",
              id, ref);
    json_t *info = tk_wait_ended(&g_main, id, 15);
    assert_string_equal(json_str(info, "state"), "FAILED");
    assert_int_equal(json_int(info, "attempts"), 3);
    json_decref(info);
    http_resp *r = tk_error(&g_main, ref, "TaskError");
    assert_contains(json_str(r->json, "detail"), "again");
    http_resp_free(r);
    assert_int_equal(tk_status_tasks(&g_main, "retries") - retries0, 2);

    /* function errors are not retried without retry_exceptions */
    tk_submit(&g_main,
              "{\"function\":\"fail\",\"args\":[\"once\"],\"options\":{\"max_retries\":2}}", id,
              ref);
    info = tk_wait_ended(&g_main, id, 5);
    assert_string_equal(json_str(info, "state"), "FAILED");
    assert_int_equal(json_int(info, "attempts"), 1);
    json_decref(info);

    /* max_retries 0 with retry_exceptions: one attempt */
    tk_submit(&g_main,
              "{\"function\":\"fail\",\"options\":{\"max_retries\":0,\"retry_exceptions\":true}}",
              id, ref);
    info = tk_wait_ended(&g_main, id, 5);
    assert_int_equal(json_int(info, "attempts"), 1);
    json_decref(info);
    assert_int_equal(tk_status_tasks(&g_main, "retries") - retries0, 2);
}

/* ---------------------------------------------------------------- cancel */

static http_resp *cancel(const rayd_server *s, const char *task_id)
{
    char path[512];
    snprintf(path, sizeof path, "/v1/tasks/%s/cancel", task_id);
    return http_request(s, "POST", path, NULL, NULL, 0);
}

static void test_cancel_running(void **state)
{
    char id[ID], ref[ID];
    long long cancelled0 = tk_status_tasks(&g_main, "cancelled");
    long long retries0 = tk_status_tasks(&g_main, "retries");
    tk_submit(&g_main,
              "{\"function\":\"sleep\",\"args\":[30],\"options\":{\"max_retries\":3,"
              "\"retry_exceptions\":true}}",
              id, ref);
    json_decref(tk_wait_state(&g_main, id, "RUNNING", 5));
    double t0 = now_s();
    http_resp *r = cancel(&g_main, id);
    assert_status(r, 202);
    assert_string_equal(json_str(r->json, "task_id"), id);
    assert_string_equal(json_str(r->json, "state"), "RUNNING");
    assert_true(json_is_true(json_member(r->json, "cancel_requested")));
    http_resp_free(r);
    /* well before the 30 s the sleep would take, even on a loaded machine */
    json_t *info = tk_wait_state(&g_main, id, "CANCELLED", 10.0);
    double took = now_s() - t0;
    assert_true(json_is_true(json_member(info, "cancel_requested")));
    assert_int_equal(json_int(info, "attempts"), 1); /* never retried */
    assert_true(json_is_string(json_member(info, "started_at")));
    assert_true(json_is_string(json_member(info, "finished_at")));
    json_decref(info);
    if (took > 10.0)
        fail_msg("cancelled after %.2f s", took);
    r = tk_error(&g_main, ref, "TaskCancelled");
    http_resp_free(r);
    /* ended for good: no retry was scheduled (the server's count), the state stays */
    assert_int_equal(tk_status_tasks(&g_main, "retries"), retries0);
    info = tk_info(&g_main, id);
    assert_string_equal(json_str(info, "state"), "CANCELLED");
    assert_int_equal(json_int(info, "attempts"), 1);
    json_decref(info);
    assert_int_equal(tk_status_tasks(&g_main, "cancelled") - cancelled0, 1);

    /* cancelling again: it has ended */
    r = cancel(&g_main, id);
    assert_problem(r, 409, "Conflict");
    assert_string_equal(json_str(r->json, "state"), "CANCELLED");
    http_resp_free(r);
}

static void test_cancel_queued(void **state)
{
    /* --workers 1: the sleep holds the only worker, so the echo stays queued */
    char busy_id[ID], busy[ID], q_id[ID], q_ref[ID], d_id[ID], d_ref[ID];
    tk_submit(&g_fresh, "{\"function\":\"sleep\",\"args\":[30]}", busy_id, busy);
    json_decref(tk_wait_state(&g_fresh, busy_id, "RUNNING", 5));
    tk_submit(&g_fresh, "{\"function\":\"echo\",\"args\":[1]}", q_id, q_ref);
    tk_submitf(d_id, d_ref, &g_fresh, "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},1]}",
               q_ref);
    json_t *info = tk_info(&g_fresh, q_id);
    assert_string_equal(json_str(info, "state"), "PENDING_NODE_ASSIGNMENT");
    json_decref(info);
    info = tk_info(&g_fresh, d_id);
    assert_string_equal(json_str(info, "state"), "PENDING_ARGS_AVAIL");
    json_decref(info);
    json_t *st = tk_status(&g_fresh);
    json_t *sched = json_member(st, "scheduler");
    assert_int_equal(json_int(sched, "busy"), 1);
    assert_int_equal(json_int(sched, "queued"), 1);
    json_decref(st);

    http_resp *r = cancel(&g_fresh, q_id);
    assert_status(r, 202);
    assert_string_equal(json_str(r->json, "state"), "CANCELLED");
    assert_true(json_is_true(json_member(r->json, "cancel_requested")));
    http_resp_free(r);

    r = tk_error(&g_fresh, q_ref, "TaskCancelled");
    http_resp_free(r);
    info = tk_info(&g_fresh, q_id);
    assert_string_equal(json_str(info, "state"), "CANCELLED");
    assert_true(json_is_null(json_member(info, "started_at")));
    json_decref(info);

    /* free the worker: the sleep is cancelled, the queued echo never ran (like Ray, the
     * dependent is failed by a worker, so it may wait for one) */
    r = cancel(&g_fresh, busy_id);
    assert_status(r, 202);
    http_resp_free(r);
    json_decref(tk_wait_state(&g_fresh, busy_id, "CANCELLED", 2));

    /* the dependent fails with the cancellation as its cause, without running */
    info = tk_wait_ended(&g_fresh, d_id, 5);
    assert_string_equal(json_str(info, "state"), "FAILED");
    assert_true(json_is_null(json_member(info, "started_at")));
    json_decref(info);
    r = tk_error(&g_fresh, d_ref, "TaskError");
    assert_contains(json_str(r->json, "detail"), "did not run");
    json_t *cause = json_member(r->json, "cause");
    assert_string_equal(json_str(cause, "title"), "TaskCancelled");
    assert_string_equal(json_str(cause, "task_id"), q_id);
    http_resp_free(r);
    char late[ID];
    tk_submit(&g_fresh, "{\"function\":\"add\",\"args\":[2,2]}", NULL, late);
    json_t *v = tk_value(&g_fresh, late);
    tk_assert_json_eq(v, "4");
    json_decref(v);
    info = tk_info(&g_fresh, q_id);
    assert_string_equal(json_str(info, "state"), "CANCELLED");
    assert_true(json_is_null(json_member(info, "started_at")));
    json_decref(info);
    st = tk_status(&g_fresh);
    json_t *tasks = json_member(st, "tasks");
    assert_int_equal(json_int(tasks, "cancelled"), 2);
    assert_int_equal(json_int(tasks, "pending"), 0);
    json_decref(st);
}

static void test_dependent_state_once_args_resolved(void **state)
{
    /* --workers 1, the worker busy. A task waiting on a queued task's ref is
     * PENDING_ARGS_AVAIL; once that ref resolves (here: the producer is cancelled) its
     * arguments are available and it waits for a worker: PENDING_NODE_ASSIGNMENT (queued). */
    char busy_id[ID], q_id[ID], q_ref[ID], d_id[ID];
    tk_submit(&g_fresh, "{\"function\":\"sleep\",\"args\":[30]}", busy_id, NULL);
    json_decref(tk_wait_state(&g_fresh, busy_id, "RUNNING", 5));
    tk_submit(&g_fresh, "{\"function\":\"echo\",\"args\":[1]}", q_id, q_ref);
    tk_submitf(d_id, NULL, &g_fresh, "{\"function\":\"echo\",\"args\":[{\"$ref\":\"%s\"}]}",
               q_ref);
    http_resp *r = cancel(&g_fresh, q_id);
    assert_status(r, 202);
    http_resp_free(r);
    /* the dependent leaves PENDING_ARGS_AVAIL once the cancel resolved its argument */
    char st[64];
    for (double deadline = now_s() + 10;; sleep_s(0.01)) {
        json_t *info = tk_info(&g_fresh, d_id);
        snprintf(st, sizeof st, "%s", json_str(info, "state"));
        json_decref(info);
        if (strcmp(st, "PENDING_ARGS_AVAIL") != 0 || now_s() > deadline)
            break;
    }
    json_t *status = tk_status(&g_fresh);
    long long queued = json_int(json_member(status, "scheduler"), "queued");
    long long by_args =
        json_int(json_member(json_member(status, "tasks"), "by_state"), "PENDING_ARGS_AVAIL");
    json_decref(status);
    cancel_quietly(&g_fresh, busy_id);
    json_decref(tk_wait_ended(&g_fresh, d_id, 5));
    if (strcmp(st, "PENDING_NODE_ASSIGNMENT") != 0 && strcmp(st, "FAILED") != 0)
        fail_msg("the dependent of a cancelled task is %s (queued %lld, by_state "
                 "PENDING_ARGS_AVAIL %lld): its argument is resolved, so it should be "
                 "PENDING_NODE_ASSIGNMENT (or FAILED)",
                 st, queued, by_args);
}

static void test_cancel_finished_and_unknown(void **state)
{
    char id[ID], ref[ID];
    tk_submit(&g_main, "{\"function\":\"add\",\"args\":[1,1]}", id, ref);
    json_decref(tk_wait_state(&g_main, id, "FINISHED", 5));
    http_resp *r = cancel(&g_main, id);
    assert_problem(r, 409, "Conflict");
    assert_string_equal(json_str(r->json, "state"), "FINISHED");
    http_resp_free(r);
    json_t *v = tk_value(&g_main, ref); /* the result is untouched */
    tk_assert_json_eq(v, "2");
    json_decref(v);

    tk_submit(&g_main, "{\"function\":\"fail\"}", id, ref);
    json_decref(tk_wait_state(&g_main, id, "FAILED", 5));
    r = cancel(&g_main, id);
    assert_problem(r, 409, "Conflict");
    assert_string_equal(json_str(r->json, "state"), "FAILED");
    http_resp_free(r);

    r = cancel(&g_main, "tNoSuchTask0000000000");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    r = http_request(&g_main, "POST", "/v1/tasks/bad!id/cancel", NULL, NULL, 0);
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
}

/* ---------------------------------------------------------------- task info, listing */

static void test_task_info(void **state)
{
    char id[ID], ref[ID];
    tk_submit(&g_main, "{\"function\":\"add\",\"args\":[1,1]}", id, ref);
    json_t *info = tk_wait_ended(&g_main, id, 5);
    assert_string_equal(json_str(info, "task_id"), id);
    assert_string_equal(json_str(info, "function"), "add");
    assert_string_equal(json_str(info, "state"), "FINISHED");
    assert_int_equal(json_int(info, "attempts"), 1);
    assert_string_equal(json_str(info, "ref"), ref);
    const char *sub = json_str(info, "submitted_at");
    const char *sta = json_str(info, "started_at");
    const char *fin = json_str(info, "finished_at");
    /* RFC 3339, UTC: lexical order is time order */
    assert_true(strlen(sub) >= 20 && sub[4] == '-' && sub[10] == 'T');
    assert_true(strcmp(sub, sta) <= 0 && strcmp(sta, fin) <= 0);
    assert_true(json_is_false(json_member(info, "cancel_requested")));
    assert_true(json_is_null(json_member(info, "error")));
    json_decref(info);

    http_resp *r = http_get(&g_main, "/v1/tasks/tNoSuchTask0000000000");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    r = http_get(&g_main, "/v1/tasks/bad!id");
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
}

static void test_list_paging_and_filters(void **state)
{
    /* g_fresh: exactly these tasks */
    enum { N = 8 };
    static const char *const bodies[N] = {
        "{\"function\":\"add\",\"args\":[1,1]}", "{\"function\":\"echo\",\"args\":[1]}",
        "{\"function\":\"add\",\"args\":[2,2]}", "{\"function\":\"fail\"}",
        "{\"function\":\"add\",\"args\":[3,3]}", "{\"function\":\"echo\",\"args\":[2]}",
        "{\"function\":\"add\",\"args\":[4,4]}", "{\"function\":\"add\",\"args\":[5,5]}",
    };
    char ids[N][ID];
    for (int i = 0; i < N; i++)
        tk_submit(&g_fresh, bodies[i], ids[i], NULL);
    for (int i = 0; i < N; i++)
        json_decref(tk_wait_ended(&g_fresh, ids[i], 5));

    /* pages of 3: 3 + 3 + 2, in submission order, next_cursor null at the end */
    int seen = 0, pages = 0;
    char cursor[256] = "";
    for (;;) {
        http_resp *r = cursor[0] ? tk_getf(&g_fresh, "/v1/tasks?limit=3&cursor=%s", cursor)
                                 : http_get(&g_fresh, "/v1/tasks?limit=3");
        assert_status(r, 200);
        json_t *tasks = json_member(r->json, "tasks");
        size_t n = json_array_size(tasks);
        assert_true(n <= 3);
        for (size_t i = 0; i < n; i++) {
            assert_true(seen < N);
            assert_string_equal(json_str(json_array_get(tasks, i), "task_id"), ids[seen]);
            seen++;
        }
        pages++;
        json_t *next = json_member(r->json, "next_cursor");
        if (json_is_null(next)) {
            http_resp_free(r);
            break;
        }
        assert_true(json_is_string(next));
        assert_true(n == 3);
        snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        http_resp_free(r);
        assert_true(pages < 10);
    }
    assert_int_equal(seen, N);
    assert_int_equal(pages, 3);

    /* default limit (100): all, next_cursor null */
    http_resp *r = http_get(&g_fresh, "/v1/tasks");
    assert_status(r, 200);
    assert_int_equal(json_array_size(json_member(r->json, "tasks")), N);
    assert_true(json_is_null(json_member(r->json, "next_cursor")));
    http_resp_free(r);

    static const struct {
        const char *query;
        int want[N];
        int n;
    } filters[] = {
        {"function=echo", {1, 5}, 2},
        {"function=add", {0, 2, 4, 6, 7}, 5},
        {"state=FAILED", {3}, 1},
        {"state=FINISHED&function=echo", {1, 5}, 2},
        {"state=FAILED&function=add", {0}, 0},
        {"state=RUNNING", {0}, 0},
        {"function=sha256", {0}, 0},
    };
    for (size_t f = 0; f < sizeof filters / sizeof filters[0]; f++) {
        r = tk_getf(&g_fresh, "/v1/tasks?%s", filters[f].query);
        assert_status(r, 200);
        json_t *tasks = json_member(r->json, "tasks");
        if ((int)json_array_size(tasks) != filters[f].n)
            fail_msg("?%s gave %zu tasks, wanted %d", filters[f].query, json_array_size(tasks),
                     filters[f].n);
        for (int i = 0; i < filters[f].n; i++)
            assert_string_equal(json_str(json_array_get(tasks, (size_t)i), "task_id"),
                                ids[filters[f].want[i]]);
        assert_true(json_is_null(json_member(r->json, "next_cursor")));
        http_resp_free(r);
    }
    /* a filter with paging */
    r = http_get(&g_fresh, "/v1/tasks?function=add&limit=2");
    assert_status(r, 200);
    json_t *tasks = json_member(r->json, "tasks");
    assert_int_equal(json_array_size(tasks), 2);
    assert_string_equal(json_str(json_array_get(tasks, 1), "task_id"), ids[2]);
    const char *next = json_str(r->json, "next_cursor");
    http_resp *r2 = tk_getf(&g_fresh, "/v1/tasks?function=add&limit=2&cursor=%s", next);
    assert_status(r2, 200);
    tasks = json_member(r2->json, "tasks");
    assert_int_equal(json_array_size(tasks), 2);
    assert_string_equal(json_str(json_array_get(tasks, 0), "task_id"), ids[4]);
    assert_string_equal(json_str(json_array_get(tasks, 1), "task_id"), ids[6]);
    http_resp_free(r2);
    http_resp_free(r);

    static const char *const bad[] = {
        "/v1/tasks?state=DONE", "/v1/tasks?limit=0",     "/v1/tasks?limit=1001",
        "/v1/tasks?limit=x",    "/v1/tasks?limit=-1",    "/v1/tasks?cursor=not-a-cursor!",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = http_get(&g_fresh, bad[i]);
        char why[512];
        if (!problem_ok(r, 400, "BadRequest", why, sizeof why))
            fail_msg("GET %s: %s", bad[i], why);
        http_resp_free(r);
    }
    r = http_get(&g_fresh, "/v1/tasks?limit=1000");
    assert_status(r, 200);
    http_resp_free(r);
}

/* ---------------------------------------------------------------- Prefer: wait */

static http_resp *submit_prefer(const rayd_server *s, const char *prefer, const char *body)
{
    char h0[64];
    snprintf(h0, sizeof h0, "Prefer: %s", prefer);
    const char *h[] = {"Content-Type: application/json", h0, NULL};
    return http_request(s, "POST", "/v1/tasks", h, body, strlen(body));
}

static void test_prefer_wait(void **state)
{
    http_resp *r = submit_prefer(&g_main, "wait=5", "{\"function\":\"mul\",\"args\":[6,7]}");
    assert_status(r, 200);
    assert_true(http_ct_is(r, "application/json"));
    assert_string_equal(r->body, "42");
    const char *ref = http_header_get(r, "X-Ray-Ref");
    assert_non_null(ref);
    assert_true(is_valid_ref(ref));
    char loc[512];
    snprintf(loc, sizeof loc, "/v1/objects/%s", ref);
    assert_header_eq(r, "Location", loc);
    assert_header_eq(r, "Preference-Applied", "wait=5");
    /* ranges are for GETs of the object, not advertised on a POST's answer */
    assert_null(http_header_get(r, "Accept-Ranges"));
    /* and If-None-Match does not turn a POST's answer into a 304 (RFC 9110 15.4.5) */
    {
        char inm[160];
        snprintf(inm, sizeof inm, "If-None-Match: \"%s\"", ref);
        const char *h[] = {"Content-Type: application/json", "Prefer: wait=5", inm, NULL};
        static const char again[] = "{\"function\":\"mul\",\"args\":[6,7]}";
        http_resp *c = http_request(&g_main, "POST", "/v1/tasks", h, again, strlen(again));
        assert_status(c, 200);
        assert_string_equal(c->body, "42");
        http_resp_free(c);
        const char *star[] = {"Content-Type: application/json", "Prefer: wait=5",
                              "If-None-Match: *", NULL};
        c = http_request(&g_main, "POST", "/v1/tasks", star, again, strlen(again));
        assert_status(c, 200);
        http_resp_free(c);
    }
    json_t *v = tk_value(&g_main, ref); /* the ref is a real object */
    tk_assert_json_eq(v, "42");
    json_decref(v);
    http_resp_free(r);

    /* the wait applied is echoed as given: several digits, a fraction */
    r = submit_prefer(&g_main, "wait=12", "{\"function\":\"mul\",\"args\":[6,7]}");
    assert_status(r, 200);
    assert_header_eq(r, "Preference-Applied", "wait=12");
    http_resp_free(r);
    r = submit_prefer(&g_main, "wait=2.5", "{\"function\":\"mul\",\"args\":[6,7]}");
    assert_status(r, 200);
    assert_header_eq(r, "Preference-Applied", "wait=2.5");
    http_resp_free(r);

    /* a dependency is waited for within the budget */
    char slow[ID];
    tk_submit(&g_main, "{\"function\":\"sleep\",\"args\":[0.25]}", NULL, slow);
    char body[256];
    snprintf(body, sizeof body, "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},1]}", slow);
    r = submit_prefer(&g_main, "wait=5", body);
    assert_status(r, 200);
    tk_assert_json_eq(r->json, "1.25");
    http_resp_free(r);

    /* num_returns > 1 */
    r = submit_prefer(&g_main, "wait=5",
                      "{\"function\":\"sort\",\"args\":[[2,1]],\"options\":{\"num_returns\":2}}");
    assert_status(r, 200);
    json_t *refs = json_member(r->json, "refs");
    json_t *objs = json_member(r->json, "objects");
    assert_true(json_is_string(json_member(r->json, "task_id")));
    assert_int_equal(json_array_size(refs), 2);
    assert_int_equal(json_array_size(objs), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *o = json_array_get(objs, i);
        assert_string_equal(json_str(o, "ref"), json_string_value(json_array_get(refs, i)));
        assert_string_equal(json_str(o, "state"), "ready");
        assert_int_equal(json_int(o, "value"), (long long)i + 1);
    }
    http_resp_free(r);
}

static void test_prefer_wait_error(void **state)
{
    http_resp *r = submit_prefer(&g_main, "wait=5", "{\"function\":\"fail\",\"args\":[\"nope\"]}");
    assert_problem(r, 424, "TaskError");
    assert_string_equal(json_str(r->json, "detail"), "nope");
    const char *ref = http_header_get(r, "X-Ray-Ref");
    assert_non_null(ref);
    assert_string_equal(json_str(r->json, "ref"), ref);
    char loc[512];
    snprintf(loc, sizeof loc, "/v1/objects/%s", ref);
    assert_header_eq(r, "Location", loc);
    http_resp_free(r);
}

static void test_prefer_wait_times_out(void **state)
{
    double t0 = now_s();
    http_resp *r = submit_prefer(&g_main, "wait=0.2", "{\"function\":\"sleep\",\"args\":[2]}");
    double took = now_s() - t0;
    assert_status(r, 202);
    const char *id = json_str(r->json, "task_id");
    assert_true(is_valid_ref(json_str(r->json, "ref")));
    char loc[512];
    snprintf(loc, sizeof loc, "/v1/tasks/%s", id);
    assert_header_eq(r, "Location", loc);
    if (took < 0.15 || took > 1.5)
        fail_msg("Prefer: wait=0.2 answered after %.3f s", took);
    cancel_quietly(&g_main, id);
    http_resp_free(r);

    /* wait=0: the receipt at once */
    t0 = now_s();
    r = submit_prefer(&g_main, "wait=0", "{\"function\":\"sleep\",\"args\":[2]}");
    took = now_s() - t0;
    assert_status(r, 202);
    cancel_quietly(&g_main, json_str(r->json, "task_id"));
    http_resp_free(r);
    if (took > 0.5)
        fail_msg("Prefer: wait=0 answered after %.3f s", took);
}

/* ---------------------------------------------------------------- the pending-task cap */

static void test_pending_cap_429(void **state)
{
    /* --max-pending-tasks 5 --workers 1: one sleep runs, four are queued */
    char ids[5][ID];
    for (int i = 0; i < 5; i++)
        tk_submit(&g_fresh, "{\"function\":\"sleep\",\"args\":[30]}", ids[i], NULL);
    long long submitted = tk_status_tasks(&g_fresh, "submitted");
    assert_int_equal(submitted, 5);
    assert_int_equal(tk_status_tasks(&g_fresh, "pending"), 5);

    http_resp *r = http_post_json(&g_fresh, "/v1/tasks", "{\"function\":\"echo\",\"args\":[1]}");
    assert_status(r, 429);
    assert_string_equal(json_str(r->json, "title"), "TooManyRequests");
    assert_header_eq(r, "Retry-After", "1");
    http_resp_free(r);
    r = http_post_json(&g_fresh, "/v1/tasks/batch", "{\"tasks\":[{\"function\":\"echo\"}]}");
    assert_status(r, 429);
    assert_string_equal(json_str(r->json, "title"), "TooManyRequests");
    assert_header_eq(r, "Retry-After", "1");
    http_resp_free(r);
    assert_int_equal(tk_status_tasks(&g_fresh, "submitted"), 5);

    /* ending one makes room for one */
    r = cancel(&g_fresh, ids[4]);
    assert_status(r, 202);
    http_resp_free(r);
    char ref[ID];
    tk_submit(&g_fresh, "{\"function\":\"echo\",\"args\":[7]}", NULL, ref);
    r = http_post_json(&g_fresh, "/v1/tasks", "{\"function\":\"echo\",\"args\":[1]}");
    assert_status(r, 429);
    http_resp_free(r);
    for (int i = 0; i < 4; i++) {
        r = cancel(&g_fresh, ids[i]);
        assert_status(r, 202);
        http_resp_free(r);
    }
    json_t *v = tk_value(&g_fresh, ref);
    tk_assert_json_eq(v, "7");
    json_decref(v);
    for (int i = 0; i < 5; i++)
        json_decref(tk_wait_state(&g_fresh, ids[i], "CANCELLED", 2));
    /* a batch bigger than the room left is refused as a whole */
    r = http_post_json(&g_fresh, "/v1/tasks/batch",
                       "{\"tasks\":[{\"function\":\"sleep\",\"args\":[30]},{\"function\":"
                       "\"sleep\",\"args\":[30]},{\"function\":\"sleep\",\"args\":[30]},"
                       "{\"function\":\"sleep\",\"args\":[30]},{\"function\":\"sleep\","
                       "\"args\":[30]},{\"function\":\"sleep\",\"args\":[30]}]}");
    assert_status(r, 429);
    http_resp_free(r);
    assert_int_equal(tk_status_tasks(&g_fresh, "pending"), 0);

    /* last, the full RFC 9457 shape of the 429 (instance included) */
    for (int i = 0; i < 5; i++)
        tk_submit(&g_fresh, "{\"function\":\"sleep\",\"args\":[30]}", ids[i], NULL);
    r = http_post_json(&g_fresh, "/v1/tasks", "{\"function\":\"echo\"}");
    for (int i = 0; i < 5; i++)
        cancel_quietly(&g_fresh, ids[i]);
    char why[512];
    bool ok = problem_ok(r, 429, "TooManyRequests", why, sizeof why);
    http_resp_free(r);
    if (!ok)
        fail_msg("the 429 problem: %s", why);
}

/* ---------------------------------------------------------------- functions */

static void test_functions(void **state)
{
    static const char *const builtins[] = {"echo", "identity", "add",  "sub",    "mul",
                                           "div",  "sum",      "concat", "len",  "sort",
                                           "sleep", "fail",    "sha256", "matmul"};
    size_t nb = sizeof builtins / sizeof builtins[0];
    http_resp *r = http_get(&g_main, "/v1/functions");
    assert_status(r, 200);
    json_t *fns = json_member(r->json, "functions");
    assert_true(json_is_array(fns));
    for (size_t b = 0; b < nb; b++) {
        json_t *found = NULL;
        size_t i;
        json_t *f;
        json_array_foreach(fns, i, f)
        {
            if (strcmp(json_str(f, "name"), builtins[b]) == 0)
                found = f;
        }
        if (!found)
            fail_msg("GET /v1/functions lacks %s", builtins[b]);
        assert_string_equal(json_str(found, "kind"), "builtin");
        if (strlen(json_str(found, "description")) == 0)
            fail_msg("%s has an empty description", builtins[b]);
    }
    size_t i;
    json_t *f;
    json_array_foreach(fns, i, f)
    {
        assert_true(strlen(json_str(f, "description")) > 0);
    }
    http_resp_free(r);

    r = http_get(&g_main, "/v1/functions/matmul");
    assert_status(r, 200);
    assert_string_equal(json_str(r->json, "name"), "matmul");
    assert_string_equal(json_str(r->json, "kind"), "builtin");
    assert_true(strlen(json_str(r->json, "description")) > 0);
    http_resp_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_values),
        cmocka_unit_test(test_builtin_result_content_type),
        cmocka_unit_test(test_fail),
        cmocka_unit_test(test_div_by_zero),
        cmocka_unit_test(test_wrong_args),
        cmocka_unit_test(test_chain_ref),
        cmocka_unit_test(test_nested_ref_unresolved),
        cmocka_unit_test(test_kwargs),
        cmocka_unit_test(test_num_returns),
        cmocka_unit_test(test_num_returns_mismatch),
        cmocka_unit_test(test_unknown_function_404),
        cmocka_unit_test(test_unknown_ref_400),
        cmocka_unit_test(test_freed_ref_object_lost),
        cmocka_unit_test(test_options_validation),
        cmocka_unit_test(test_timeout_option),
        cmocka_unit_test(test_batch_ok),
        cmocka_unit_test(test_batch_all_or_nothing),
        cmocka_unit_test(test_batch_10000_then_wait),
        cmocka_unit_test(test_batch_and_wait_either_reader),
        cmocka_unit_test(test_batch_and_wait_bad_bodies_submit_nothing),
        cmocka_unit_test(test_retries),
        cmocka_unit_test(test_cancel_running),
        cmocka_unit_test_setup_teardown(test_cancel_queued, one_worker_setup, fresh_teardown),
        cmocka_unit_test_setup_teardown(test_dependent_state_once_args_resolved,
                                        one_worker_setup, fresh_teardown),
        cmocka_unit_test(test_cancel_finished_and_unknown),
        cmocka_unit_test(test_task_info),
        cmocka_unit_test_setup_teardown(test_list_paging_and_filters, fresh_setup,
                                        fresh_teardown),
        cmocka_unit_test(test_prefer_wait),
        cmocka_unit_test(test_prefer_wait_error),
        cmocka_unit_test(test_prefer_wait_times_out),
        cmocka_unit_test_setup_teardown(test_pending_cap_429, capped_setup, fresh_teardown),
        cmocka_unit_test(test_functions),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
