/* API tests of the Ray semantics rayd mirrors: ray.wait's ordering and timeouts, ray.get
 * with a timeout, error propagation with the cause chain, and dependency graphs (a
 * diamond, a chain of 200 tasks). */
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

#define ID TK_ID_SIZE

static rayd_server g_srv; /* --workers 4 */

static int group_setup(void **state)
{
    static const char *const args[] = {"--workers", "4", NULL};
    return rayd_start(&g_srv, args, NULL);
}

static int group_teardown(void **state)
{
    return rayd_stop_clean(&g_srv);
}

static void cancel_quietly(const char *task_id)
{
    char path[512];
    snprintf(path, sizeof path, "/v1/tasks/%s/cancel", task_id);
    http_resp_free(http_request(&g_srv, "POST", path, NULL, NULL, 0));
}

/* Asserts that the JSON array holds exactly these refs, in this order. */
static void assert_refs(const json_t *arr, const char *what, int n, ...)
{
    if (!json_is_array(arr) || (int)json_array_size(arr) != n) {
        char *d = arr ? json_dumps(arr, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        fprintf(stderr, "%s: %s\n", what, d ? d : "(missing)");
        free(d);
        fail_msg("%s has %zu refs, wanted %d", what, json_array_size(arr), n);
    }
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *want = va_arg(ap, const char *);
        const char *got = json_string_value(json_array_get(arr, (size_t)i));
        if (!got || strcmp(got, want) != 0) {
            va_end(ap);
            fail_msg("%s[%d] is %s, wanted %s", what, i, got ? got : "(not a string)", want);
        }
    }
    va_end(ap);
}

/* ---------------------------------------------------------------- ray.wait */

static void test_wait_fast_first_in_input_order(void **state)
{
    /* fast2 finishes before fast1, but ready keeps the order the refs were given in */
    char slow_id[ID], slow[ID], fast1[ID], fast2[ID];
    tk_submit(&g_srv, "{\"function\":\"sleep\",\"args\":[5]}", slow_id, slow);
    tk_submit(&g_srv, "{\"function\":\"sleep\",\"args\":[0.3]}", NULL, fast1);
    tk_submit(&g_srv, "{\"function\":\"sleep\",\"args\":[0.05]}", NULL, fast2);
    double a = now_s();
    http_resp *r = tk_post_jsonf(&g_srv, "/v1/wait",
                                 "{\"refs\":[\"%s\",\"%s\",\"%s\"],\"num_returns\":2,"
                                 "\"timeout\":10}",
                                 slow, fast1, fast2);
    double took = now_s() - a;
    assert_status(r, 200);
    assert_refs(json_member(r->json, "ready"), "ready", 2, fast1, fast2);
    assert_refs(json_member(r->json, "not_ready"), "not_ready", 1, slow);
    http_resp_free(r);
    if (took < 0.2 || took > 2.5)
        fail_msg("wait for the 2 fast tasks (0.3 s) answered after %.3f s", took);

    /* num_returns 1 with both fast ones ready: the first of them in input order */
    r = tk_post_jsonf(&g_srv, "/v1/wait",
                      "{\"refs\":[\"%s\",\"%s\",\"%s\"],\"num_returns\":1,\"timeout\":10}", slow,
                      fast2, fast1);
    assert_status(r, 200);
    assert_refs(json_member(r->json, "ready"), "ready", 1, fast2);
    assert_refs(json_member(r->json, "not_ready"), "not_ready", 2, slow, fast1);
    http_resp_free(r);

    /* a stored error counts as ready */
    char bad[ID];
    tk_submit(&g_srv, "{\"function\":\"fail\"}", NULL, bad);
    r = tk_post_jsonf(&g_srv, "/v1/wait",
                      "{\"refs\":[\"%s\",\"%s\"],\"num_returns\":1,\"timeout\":10}", slow, bad);
    assert_status(r, 200);
    assert_refs(json_member(r->json, "ready"), "ready", 1, bad);
    assert_refs(json_member(r->json, "not_ready"), "not_ready", 1, slow);
    http_resp_free(r);
    cancel_quietly(slow_id);
}

static void test_wait_timeout_zero(void **state)
{
    char slow_id[ID], slow[ID], done[ID];
    tk_submit(&g_srv, "{\"function\":\"sleep\",\"args\":[5]}", slow_id, slow);
    tk_submit(&g_srv, "{\"function\":\"add\",\"args\":[1,1]}", NULL, done);
    json_decref(tk_value(&g_srv, done));
    double a = now_s();
    http_resp *r = tk_post_jsonf(&g_srv, "/v1/wait",
                                 "{\"refs\":[\"%s\",\"%s\"],\"num_returns\":2,\"timeout\":0}",
                                 slow, done);
    double took = now_s() - a;
    assert_status(r, 200);
    assert_refs(json_member(r->json, "ready"), "ready", 1, done);
    assert_refs(json_member(r->json, "not_ready"), "not_ready", 1, slow);
    http_resp_free(r);
    if (took > 1.0)
        fail_msg("wait with timeout 0 answered after %.3f s", took);

    /* nothing ready: both not_ready, at once */
    a = now_s();
    r = tk_post_jsonf(&g_srv, "/v1/wait", "{\"refs\":[\"%s\"],\"timeout\":0}", slow);
    took = now_s() - a;
    assert_status(r, 200);
    assert_refs(json_member(r->json, "ready"), "ready", 0);
    assert_refs(json_member(r->json, "not_ready"), "not_ready", 1, slow);
    http_resp_free(r);
    if (took > 1.0)
        fail_msg("wait with timeout 0 answered after %.3f s", took);
    cancel_quietly(slow_id);
}

/* ---------------------------------------------------------------- ray.get with a timeout */

static void test_get_timeout_then_value(void **state)
{
    char ref[ID];
    double t0 = now_s();
    tk_submit(&g_srv, "{\"function\":\"sleep\",\"args\":[0.6]}", NULL, ref);
    http_resp *r = tk_getf(&g_srv, "/v1/objects/%s?timeout=0.1", ref);
    assert_status(r, 202);
    assert_string_equal(json_str(r->json, "state"), "pending");
    assert_string_equal(json_str(r->json, "ref"), ref);
    assert_non_null(http_header_get(r, "Retry-After"));
    http_resp_free(r);
    r = tk_getf(&g_srv, "/v1/objects/%s?timeout=10", ref);
    double took = now_s() - t0;
    assert_status(r, 200);
    assert_true(json_is_number(r->json) && json_number_value(r->json) == 0.6);
    http_resp_free(r);
    if (took < 0.5 || took > 3.0)
        fail_msg("the value of a 0.6 s task came after %.3f s", took);
}

/* ---------------------------------------------------------------- errors propagate */

static void test_error_chain_three_levels(void **state)
{
    char f_id[ID], f[ID], e1_id[ID], e1[ID], e2_id[ID], e2[ID];
    tk_submit(&g_srv, "{\"function\":\"fail\",\"args\":[\"deep failure\"]}", f_id, f);
    tk_submitf(e1_id, e1, &g_srv, "{\"function\":\"echo\",\"args\":[{\"$ref\":\"%s\"}]}", f);
    tk_submitf(e2_id, e2, &g_srv, "{\"function\":\"echo\",\"args\":[{\"$ref\":\"%s\"}]}", e1);

    http_resp *r = tk_error(&g_srv, e2, "TaskError");
    json_t *outer = r->json;
    assert_string_equal(json_str(outer, "task_id"), e2_id);
    assert_string_equal(json_str(outer, "function"), "echo");
    json_t *cause = json_member(outer, "cause");
    assert_string_equal(json_str(cause, "title"), "TaskError");
    assert_int_equal(json_int(cause, "status"), 424);
    assert_string_equal(json_str(cause, "task_id"), e1_id);
    assert_string_equal(json_str(cause, "function"), "echo");
    json_t *root = json_member(cause, "cause");
    assert_string_equal(json_str(root, "title"), "TaskError");
    assert_string_equal(json_str(root, "type"), "/problems/TaskError");
    assert_string_equal(json_str(root, "detail"), "deep failure");
    assert_string_equal(json_str(root, "task_id"), f_id);
    assert_string_equal(json_str(root, "function"), "fail");
    assert_null(json_object_get(root, "cause"));
    http_resp_free(r);

    /* the middle ref answers with the two-level chain; no dependent ran */
    r = tk_error(&g_srv, e1, "TaskError");
    assert_string_equal(json_str(json_member(r->json, "cause"), "detail"), "deep failure");
    http_resp_free(r);
    const char *ids[] = {e1_id, e2_id};
    for (int i = 0; i < 2; i++) {
        json_t *info = tk_wait_ended(&g_srv, ids[i], 5);
        assert_string_equal(json_str(info, "state"), "FAILED");
        assert_true(json_is_null(json_member(info, "started_at")));
        assert_string_equal(json_str(json_member(json_member(info, "error"), "cause"), "title"),
                            "TaskError");
        json_decref(info);
    }

    /* get_batch carries the same chain in its entry, without failing the request */
    r = tk_post_jsonf(&g_srv, "/v1/objects/get", "{\"refs\":[\"%s\"],\"timeout\":5}", e2);
    assert_status(r, 200);
    json_t *entry = json_array_get(json_member(r->json, "objects"), 0);
    assert_string_equal(json_str(entry, "state"), "error");
    json_t *err = json_member(entry, "error");
    assert_string_equal(
        json_str(json_member(json_member(err, "cause"), "cause"), "detail"), "deep failure");
    http_resp_free(r);
}

/* ---------------------------------------------------------------- graphs */

static void test_diamond(void **state)
{
    /* z (sleep 0.25) -> a = z + 2.75 = 3; b = a * 2 = 6; c = a + 10 = 13; d = b + c = 19.
     * Everything is submitted while z still sleeps. */
    char z[ID], a[ID], b[ID], c[ID], d[ID], d_id[ID];
    tk_submit(&g_srv, "{\"function\":\"sleep\",\"args\":[0.25]}", NULL, z);
    tk_submitf(NULL, a, &g_srv, "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},2.75]}", z);
    tk_submitf(NULL, b, &g_srv, "{\"function\":\"mul\",\"args\":[{\"$ref\":\"%s\"},2]}", a);
    tk_submitf(NULL, c, &g_srv, "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},10]}", a);
    tk_submitf(d_id, d, &g_srv,
               "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},{\"$ref\":\"%s\"}]}", b, c);
    json_t *info = tk_info(&g_srv, d_id);
    const char *st = json_str(info, "state");
    if (strcmp(st, "PENDING_ARGS_AVAIL") != 0 && strcmp(st, "FINISHED") != 0)
        fail_msg("d, waiting on b and c, is %s", st);
    json_decref(info);
    json_t *v = tk_value(&g_srv, d);
    assert_true(json_is_number(v));
    if (json_number_value(v) != 19.0)
        fail_msg("the diamond gave %g, wanted 19", json_number_value(v));
    json_decref(v);

    /* the same with integers only, and the same ref used twice by one task */
    char i0[ID], i1[ID], i2[ID], i3[ID];
    tk_submit(&g_srv, "{\"function\":\"add\",\"args\":[1,2]}", NULL, i0);
    tk_submitf(NULL, i1, &g_srv, "{\"function\":\"mul\",\"args\":[{\"$ref\":\"%s\"},2]}", i0);
    tk_submitf(NULL, i2, &g_srv, "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},10]}", i0);
    tk_submitf(NULL, i3, &g_srv,
               "{\"function\":\"sum\",\"args\":[[1]],\"kwargs\":{}}"); /* independent */
    tk_submitf(NULL, d, &g_srv,
               "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},{\"$ref\":\"%s\"}]}", i1, i2);
    v = tk_value(&g_srv, d);
    tk_assert_json_eq(v, "19");
    json_decref(v);
    tk_submitf(NULL, d, &g_srv,
               "{\"function\":\"mul\",\"args\":[{\"$ref\":\"%s\"},{\"$ref\":\"%s\"}]}", i0, i0);
    v = tk_value(&g_srv, d);
    tk_assert_json_eq(v, "9");
    json_decref(v);
    (void)i3;
}

static void test_chain_of_200(void **state)
{
    /* r0 = add(gate, 1), r[i] = add(r[i-1], 1): 200 tasks, each submitted while the chain
     * before it is still waiting on the gate (sleep 0.3 s, then * 0 -> 0.0). */
    enum { N = 200 };
    char gate_sleep[ID], gate[ID], last_id[ID];
    char(*refs)[ID] = calloc(N, ID);
    assert_non_null(refs);
    double t0 = now_s();
    tk_submit(&g_srv, "{\"function\":\"sleep\",\"args\":[0.3]}", NULL, gate_sleep);
    tk_submitf(NULL, gate, &g_srv, "{\"function\":\"mul\",\"args\":[{\"$ref\":\"%s\"},0]}",
               gate_sleep);
    for (int i = 0; i < N; i++)
        tk_submitf(i == N - 1 ? last_id : NULL, refs[i], &g_srv,
                   "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},1]}",
                   i == 0 ? gate : refs[i - 1]);
    double submitted = now_s() - t0;
    json_t *v = tk_value(&g_srv, refs[N - 1]);
    double took = now_s() - t0;
    assert_true(json_is_number(v));
    if (json_number_value(v) != 200.0)
        fail_msg("the chain of 200 gave %g", json_number_value(v));
    json_decref(v);
    json_t *info = tk_info(&g_srv, last_id);
    assert_string_equal(json_str(info, "state"), "FINISHED");
    json_decref(info);
    if (took > 10.0)
        fail_msg("a chain of 200 add tasks took %.2f s (submission %.2f s)", took, submitted);

    /* and without the gate, integers all the way: 200 exactly */
    tk_submit(&g_srv, "{\"function\":\"add\",\"args\":[0,1]}", NULL, refs[0]);
    for (int i = 1; i < N; i++)
        tk_submitf(NULL, refs[i], &g_srv, "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},1]}",
                   refs[i - 1]);
    v = tk_value(&g_srv, refs[N - 1]);
    tk_assert_json_eq(v, "200");
    json_decref(v);

    /* a failure at the head of a chain fails every link, cause chain 200 deep; the answer
     * nests the first 32 causes and counts the rest in causes_omitted */
    tk_submit(&g_srv, "{\"function\":\"fail\",\"args\":[\"head\"]}", NULL, refs[0]);
    for (int i = 1; i < N; i++)
        tk_submitf(NULL, refs[i], &g_srv, "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},1]}",
                   refs[i - 1]);
    http_resp *r = tk_error(&g_srv, refs[N - 1], "TaskError");
    json_t *p = r->json;
    int depth = 0;
    while (json_object_get(p, "cause")) {
        p = json_object_get(p, "cause");
        depth++;
    }
    assert_int_equal(depth, 31); /* the outer problem and 31 causes: 32 levels */
    json_t *omitted = json_object_get(p, "causes_omitted");
    assert_true(json_is_integer(omitted));
    assert_int_equal(json_integer_value(omitted), N - 32); /* the rest, down to "head" */
    /* The whole chain is still there: the ref of a link near the head shows its end. */
    http_resp *near = tk_error(&g_srv, refs[10], "TaskError");
    json_t *q = near->json;
    while (json_object_get(q, "cause"))
        q = json_object_get(q, "cause");
    assert_string_equal(json_str(q, "detail"), "head");
    http_resp_free(near);
    http_resp_free(r);
    free(refs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wait_fast_first_in_input_order),
        cmocka_unit_test(test_wait_timeout_zero),
        cmocka_unit_test(test_get_timeout_then_value),
        cmocka_unit_test(test_error_chain_three_levels),
        cmocka_unit_test(test_diamond),
        cmocka_unit_test(test_chain_of_200),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
