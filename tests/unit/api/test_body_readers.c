/* Tests the quick readers of big request bodies (api/task_batch_scan.h, api/wait_scan.h)
 * against the general path they stand in for: a body they read gives exactly what
 * api_decode_task_batch / api_decode_wait give on the parsed body; a body of another
 * shape, or a bad one, is left alone (-1, nothing kept, nothing leaked: run under ASan),
 * so that the general path answers it. And the answers written as text
 * (api/ref_lists.h) parse back to what the jansson trees used to say. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/decode.h"
#include "api/json_scan.h"
#include "api/ref_lists.h"
#include "api/task_batch_scan.h"
#include "api/wait_scan.h"

static int scan_batch(const char *body, api_task_batch *b)
{
    return api_task_batch_scan(body, strlen(body), b);
}

static void assert_same_json(json_t *a, json_t *b)
{
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_true(json_equal(a, b));
}

/* The general path's specs for body (args and kwargs as api_decode_task_batch leaves
 * them: null is NULL). */
static json_t *general_batch(const char *body, rt_task_spec **specs, size_t *n)
{
    json_error_t error;
    json_t *doc = api_decode_body(body, strlen(body), &error);
    assert_non_null(doc);
    char err[256];
    assert_int_equal(api_decode_task_batch(doc, specs, n, err, sizeof(err)), API_DECODE_OK);
    return doc;
}

static void test_batch_read_as_the_general_path_reads_it(void **state)
{
    (void)state;
    const char *bodies[] = {
        "{\"tasks\":[{\"function\":\"echo\",\"args\":[1]}]}",
        " {\n \"tasks\" : [ { \"args\" : [ \"a\", {\"$ref\": \"o1\"} ] , \"function\" : \"echo\" "
        "} , {\"function\":\"add\"} ] }\r\n",
        "{\"tasks\":[{\"function\":\"f\",\"args\":null,\"kwargs\":{\"a\":{\"$ref\":\"x\"}},"
        "\"options\":{\"num_returns\":3,\"name\":\"n 1\",\"max_retries\":0,"
        "\"retry_exceptions\":true,\"timeout\":1.5,\"result_ttl\":0}},"
        "{\"function\":\"g\",\"options\":null,\"kwargs\":null},"
        "{\"function\":\"h\",\"options\":{\"result_ttl\":7}}]}",
        NULL,
    };
    for (int i = 0; bodies[i]; i++) {
        api_task_batch b;
        assert_int_equal(scan_batch(bodies[i], &b), 0);
        rt_task_spec *specs;
        size_t n;
        json_t *doc = general_batch(bodies[i], &specs, &n);
        assert_int_equal(b.n, n);
        for (size_t k = 0; k < n; k++) {
            const rt_task_spec *q = &b.specs[k], *g = &specs[k];
            assert_string_equal(q->function, g->function);
            assert_same_json(q->args, g->args);
            assert_same_json(q->kwargs, g->kwargs);
            assert_int_equal(q->num_returns, g->num_returns);
            assert_int_equal(q->max_retries, g->max_retries);
            assert_int_equal(q->retry_exceptions, g->retry_exceptions);
            assert_true(q->timeout == g->timeout && q->result_ttl == g->result_ttl);
            if (g->name)
                assert_string_equal(q->name, g->name);
            else
                assert_null(q->name);
            assert_true(q->args_given); /* the reader's values are the caller's */
            json_decref(q->args);
            json_decref(q->kwargs);
        }
        api_task_batch_release(&b);
        free(specs);
        json_decref(doc);
    }
}

static void test_batch_other_shapes_left_to_the_general_path(void **state)
{
    (void)state;
    char *long_args = malloc(API_JSON_SCAN_VALUE_MAX + 100);
    strcpy(long_args, "{\"tasks\":[{\"function\":\"echo\",\"args\":[\"");
    size_t at = strlen(long_args);
    memset(long_args + at, 'x', API_JSON_SCAN_VALUE_MAX);
    strcpy(long_args + at + API_JSON_SCAN_VALUE_MAX, "\"]}]}");
    /* 10,001 tasks: one too many */
    size_t one = strlen("{\"function\":\"f\"},");
    char *too_many = malloc(20 + (API_TASKS_BATCH_MAX + 1) * one);
    char *p = too_many + sprintf(too_many, "{\"tasks\":[");
    for (int i = 0; i <= API_TASKS_BATCH_MAX; i++)
        p += sprintf(p, "%s{\"function\":\"f\"}", i ? "," : "");
    strcpy(p, "]}");
    const char *bodies[] = {
        /* valid for the general path, another shape here */
        "{\"tasks\":[{\"\\u0066unction\":\"echo\"}]}",
        "{\"tasks\":[{\"function\":\"ech\\u006f\"}]}",
        "{\"tasks\":[{\"function\":\"\xc3\xa9\"}]}",
        long_args,
        /* bad: the general path says why */
        "{\"tasks\":[{\"function\":\"f\",\"function\":\"g\"}]}",
        "{\"tasks\":[{\"function\":\"f\",\"args\":[1],\"args\":[2]}]}",
        "{\"tasks\":[{\"function\":\"f\",\"args\":5}]}",
        "{\"tasks\":[{\"function\":\"f\",\"args\":{}}]}",
        "{\"tasks\":[{\"function\":\"f\",\"kwargs\":[1]}]}",
        "{\"tasks\":[{\"function\":\"f\",\"args\":[1,]}]}",
        "{\"tasks\":[{\"function\":\"f\",\"args\":[{\"a\":1,\"a\":2}]}]}",
        "{\"tasks\":[{\"function\":\"f\",\"extra\":1}]}",
        "{\"tasks\":[{\"function\":\"f\",\"options\":{\"num_returns\":0}}]}",
        "{\"tasks\":[{\"function\":\"f\",\"options\":{\"nope\":1}}]}",
        "{\"tasks\":[{\"function\":\"f\",\"options\":[]}]}",
        "{\"tasks\":[{\"function\":5}]}",
        "{\"tasks\":[{\"args\":[1]}]}",
        "{\"tasks\":[{}]}",
        "{\"tasks\":[5]}",
        "{\"tasks\":[]}",
        "{\"tasks\":{}}",
        "{\"tasks\":[{\"function\":\"f\"}],\"tasks\":[]}",
        "{\"tasks\":[{\"function\":\"f\"}],\"x\":1}",
        "{\"tasks\":[{\"function\":\"f\"}]} x",
        "{\"tasks\":[{\"function\":\"f\"}]",
        "{\"tasks\":[{\"function\":\"f\",\"args\":[1]",
        "{\"tasks\":[{\"function\":\"f\"},]}",
        "{}",
        "[]",
        "",
        too_many,
        NULL,
    };
    for (int i = 0; bodies[i]; i++) {
        api_task_batch b;
        if (scan_batch(bodies[i], &b) != -1)
            fail_msg("body %d read: %.80s", i, bodies[i]);
        assert_null(b.specs);
        assert_null(b.names);
        assert_null(b.options);
        assert_int_equal(b.n, 0);
    }
    free(long_args);
    free(too_many);
}

static void test_wait_read_as_the_general_path_reads_it(void **state)
{
    (void)state;
    struct {
        const char *body;
        bool is_wait;
    } cases[] = {
        {"{\"refs\":[\"o1\",\"o2\",\"o3\"],\"num_returns\":2,\"timeout\":0.5}", true},
        {" { \"timeout\" : null , \"refs\" : [ \"a-b_C9\" ] , \"fetch_local\" : true } ", true},
        {"{\"refs\":[]}", true},
        {"{\"refs\":[],\"num_returns\":7}", true},
        {"{\"refs\":[\"o1\",\"o1\"],\"timeout\":2}", false}, /* get takes duplicates */
        {NULL, false},
    };
    for (int i = 0; cases[i].body; i++) {
        api_wait_request q, g;
        assert_int_equal(api_wait_scan(cases[i].body, strlen(cases[i].body), cases[i].is_wait, &q),
                         0);
        json_error_t error;
        json_t *doc = api_decode_body(cases[i].body, strlen(cases[i].body), &error);
        char err[256];
        assert_int_equal(api_decode_wait(doc, cases[i].is_wait, &g, err, sizeof(err)),
                         API_DECODE_OK);
        assert_int_equal(q.n, g.n);
        assert_int_equal(q.num_returns, g.num_returns);
        assert_true(q.timeout == g.timeout);
        for (size_t k = 0; k < g.n; k++)
            assert_string_equal(q.refs[k], g.refs[k]);
        assert_non_null(q.text);
        api_wait_request_release(&q);
        api_wait_request_release(&g);
        json_decref(doc);
    }
}

static void test_wait_other_shapes_left_to_the_general_path(void **state)
{
    (void)state;
    const char *wait_bodies[] = {
        /* valid for the general path, another shape here */
        "{\"refs\":[\"o\\u0031\"]}",
        "{\"r\\u0065fs\":[\"o1\"]}",
        /* bad: the general path says why */
        "{\"refs\":[\"o1\",\"o2\",\"o1\"]}",
        "{\"refs\":[\"o1\"],\"num_returns\":0}",
        "{\"refs\":[\"o1\"],\"num_returns\":2}",
        "{\"refs\":[\"o1\"],\"num_returns\":1.5}",
        "{\"refs\":[\"o1\"],\"num_returns\":1,\"num_returns\":1}",
        "{\"refs\":[\"o1\"],\"refs\":[\"o2\"]}",
        "{\"refs\":[\"o1\"],\"timeout\":-1}",
        "{\"refs\":[\"o1\"],\"fetch_local\":null}",
        "{\"refs\":[\"o1\"],\"extra\":1}",
        "{\"refs\":[\"bad ref\"]}",
        "{\"refs\":[1]}",
        "{\"refs\":\"o1\"}",
        "{\"refs\":[\"o1\",]}",
        "{\"refs\":[\"o1\"]} x",
        "{\"refs\":[\"o1\"]",
        "{\"timeout\":1}",
        "{}",
        "[]",
        "",
        NULL,
    };
    for (int i = 0; wait_bodies[i]; i++) {
        api_wait_request q;
        if (api_wait_scan(wait_bodies[i], strlen(wait_bodies[i]), true, &q) != -1)
            fail_msg("wait body %d read: %s", i, wait_bodies[i]);
        assert_null(q.refs);
        assert_null(q.text);
    }
    /* a get has no num_returns */
    const char *get = "{\"refs\":[\"o1\"],\"num_returns\":1}";
    api_wait_request q;
    assert_int_equal(api_wait_scan(get, strlen(get), false, &q), -1);
}

static void test_receipts_text(void **state)
{
    (void)state;
    char ids[2][RT_REF_SIZE] = {"t1", "tLongerId_-9"};
    char refs[4][RT_REF_SIZE] = {"oA", "oB", "oC", "oD"};
    rt_task_spec specs[2] = {{.num_returns = 1}, {.num_returns = 3}};
    size_t len = 0;
    char *text = api_task_receipts_text((const char(*)[RT_REF_SIZE])ids,
                                        (const char(*)[RT_REF_SIZE])refs, specs, 2, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    json_t *got = json_loads(text, 0, NULL);
    json_t *want = json_pack("{s:[{s:s,s:s},{s:s,s:[s,s,s]}]}", "tasks", "task_id", "t1", "ref",
                             "oA", "task_id", "tLongerId_-9", "refs", "oB", "oC", "oD");
    assert_true(json_equal(got, want));
    /* the keys in the order the jansson tree wrote them */
    assert_string_equal(text, "{\"tasks\":[{\"task_id\":\"t1\",\"ref\":\"oA\"},{\"task_id\":"
                              "\"tLongerId_-9\",\"refs\":[\"oB\",\"oC\",\"oD\"]}]}");
    json_decref(got);
    json_decref(want);
    free(text);
}

static void test_wait_answer_text(void **state)
{
    (void)state;
    const char *refs[] = {"o1", "o2", "o3", "o4"};
    bool ready[] = {false, true, false, true};
    size_t len = 0;
    char *text = api_wait_answer_text(refs, ready, 4, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    assert_string_equal(text, "{\"ready\":[\"o2\",\"o4\"],\"not_ready\":[\"o1\",\"o3\"]}");
    free(text);
    text = api_wait_answer_text(refs, ready, 0, &len);
    assert_string_equal(text, "{\"ready\":[],\"not_ready\":[]}");
    assert_int_equal(len, strlen(text));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_read_as_the_general_path_reads_it),
        cmocka_unit_test(test_batch_other_shapes_left_to_the_general_path),
        cmocka_unit_test(test_wait_read_as_the_general_path_reads_it),
        cmocka_unit_test(test_wait_other_shapes_left_to_the_general_path),
        cmocka_unit_test(test_receipts_text),
        cmocka_unit_test(test_wait_answer_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
