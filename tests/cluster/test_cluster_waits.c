/* Cluster tests of ray.wait semantics through nodes that own none or only some of the refs
 * (tests/cluster/run.sh; api/wait_owners.h): the answer reflects the owners' states at the
 * time of the request, exactly as on one node.
 * - num_returns 2 on refs of three owners while the third is pending, through each node,
 *   nginx included, with `timeout: 0`: the two ready ones, in input order, the third not;
 * - timeout 0 through a node that owns none of the refs, ready ones on other nodes counted
 *   ready (and a batch get with timeout 0: their values, the pending one pending);
 * - input order: with num_returns 1, the first ready ref in input order, even when this
 *   node already holds a copy of a later one;
 * - every ref owned by one other node (a batch submitted on one node, waited for through
 *   another), timeout 0 and a long wait;
 * - a ref whose owner does not have it: 404, as on one node. */
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
#include "tests/cluster/cluster_env.h"

static cluster_env g;

static int group_setup(void **state)
{
    return cluster_env_load(&g);
}

static void expect_owner(const char *ref, int node)
{
    char tag[16];
    cluster_ref_tag(ref, tag);
    if (strcmp(tag, g.tag[node]) != 0)
        fail_msg("ref %s names owner '%s', not node %s", ref, tag, g.tag[node]);
}

/* POST /v1/tasks through s; the receipt's task id and first result ref. */
static void submit(const rayd_server *s, const char *body, char *task_id, char *ref)
{
    http_resp *r = http_post_json(s, "/v1/tasks", body);
    if (r->status != 202)
        fail_msg("POST /v1/tasks %s: %ld %.*s", body, r->status, (int)r->body_len, r->body);
    if (task_id)
        snprintf(task_id, 65, "%s", json_str(r->json, "task_id"));
    snprintf(ref, 65, "%s", json_str(r->json, "ref"));
    http_resp_free(r);
}

static void cancel(int node, const char *task_id)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/tasks/%s/cancel", task_id);
    http_resp *r = http_request(&g.node[node], "POST", path, NULL, NULL, 0);
    http_resp_free(r);
}

/* Checks a JSON array of refs against want (n of them), in order. */
static void expect_refs(json_t *list, const char *what, const char *const *want, size_t n)
{
    if (json_array_size(list) != n) {
        char *text = json_dumps(list, JSON_COMPACT);
        fail_msg("%s has %zu refs, wanted %zu: %s", what, json_array_size(list), n,
                 text ? text : "?");
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(json_string_value(json_array_get(list, i)), want[i]) != 0)
            fail_msg("%s[%zu] is %s, wanted %s", what, i,
                     json_string_value(json_array_get(list, i)), want[i]);
}

/* POST /v1/wait through s; checks ready and not_ready. */
static void expect_wait(const rayd_server *s, const char *body, const char *const *ready,
                        size_t nready, const char *const *not_ready, size_t nnot)
{
    http_resp *r = http_post_json(s, "/v1/wait", body);
    if (r->status != 200)
        fail_msg("POST /v1/wait %s through %s: %ld %.*s", body, s->base_url, r->status,
                 (int)r->body_len, r->body);
    expect_refs(json_member(r->json, "ready"), "ready", ready, nready);
    expect_refs(json_member(r->json, "not_ready"), "not_ready", not_ready, nnot);
    http_resp_free(r);
}

/* The value of ref read through node i (waits up to 10 s), as a number. */
static double value_of(int i, const char *ref)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/objects/%s?timeout=10", ref);
    http_resp *r = http_get(&g.node[i], path);
    assert_status(r, 200);
    double v = json_number_value(r->json);
    http_resp_free(r);
    return v;
}

static void test_three_owners_third_pending(void **state)
{
    char r0[65], r1[65], r2[65], task2[65], body[1024];
    put_object(&g.node[0], "application/json", "10", 2, r0);
    submit(&g.node[1], "{\"function\":\"add\",\"args\":[5,6]}", NULL, r1);
    submit(&g.node[2], "{\"function\":\"sleep\",\"args\":[120]}", task2, r2); /* pending */
    expect_owner(r0, 0);
    expect_owner(r1, 1);
    expect_owner(r2, 2);
    assert_true(value_of(1, r1) == 11); /* finished on its owner */

    /* num_returns 2, timeout 0: through every node and nginx, at once, the two ready ones
     * in input order. Each node owns one of them and asks the other two. */
    snprintf(body, sizeof(body),
             "{\"refs\":[\"%s\",\"%s\",\"%s\"],\"num_returns\":2,\"timeout\":0}", r2, r1, r0);
    const char *ready[] = {r1, r0}, *not_ready[] = {r2};
    for (int via = 0; via < CLUSTER_NODES; via++)
        expect_wait(&g.node[via], body, ready, 2, not_ready, 1);
    for (int k = 0; k < CLUSTER_NODES; k++)
        expect_wait(&g.lb, body, ready, 2, not_ready, 1);

    /* num_returns 3, timeout 0: the same two ready, the third not. */
    snprintf(body, sizeof(body),
             "{\"refs\":[\"%s\",\"%s\",\"%s\"],\"num_returns\":3,\"timeout\":0}", r0, r2, r1);
    const char *ready3[] = {r0, r1}, *not_ready3[] = {r2};
    expect_wait(&g.node[1], body, ready3, 2, not_ready3, 1);
    cancel(2, task2);
}

static void test_timeout_zero_through_a_non_owner(void **state)
{
    char a1[65], a2[65], p2[65], task[65], body[1024];
    submit(&g.node[1], "{\"function\":\"add\",\"args\":[1,1]}", NULL, a1);
    submit(&g.node[2], "{\"function\":\"add\",\"args\":[2,2]}", NULL, a2);
    submit(&g.node[2], "{\"function\":\"sleep\",\"args\":[120]}", task, p2);
    assert_true(value_of(1, a1) == 2);
    assert_true(value_of(2, a2) == 4);

    /* Node 0 owns none of them and has no copy: it asks nodes 1 and 2. */
    snprintf(body, sizeof(body),
             "{\"refs\":[\"%s\",\"%s\",\"%s\"],\"num_returns\":3,\"timeout\":0}", p2, a2, a1);
    const char *ready[] = {a2, a1}, *not_ready[] = {p2};
    expect_wait(&g.node[0], body, ready, 2, not_ready, 1);

    /* Nothing ready: none, at once. */
    snprintf(body, sizeof(body), "{\"refs\":[\"%s\"],\"timeout\":0}", p2);
    expect_wait(&g.node[0], body, NULL, 0, (const char *[]){p2}, 1);

    /* A batch get with timeout 0: the values of the ready ones, the pending one pending. */
    snprintf(body, sizeof(body), "{\"refs\":[\"%s\",\"%s\",\"%s\"],\"timeout\":0}", a1, p2, a2);
    http_resp *r = http_post_json(&g.node[0], "/v1/objects/get", body);
    assert_status(r, 200);
    json_t *objects = json_member(r->json, "objects");
    assert_int_equal(json_array_size(objects), 3);
    json_t *e = json_array_get(objects, 0);
    assert_string_equal(json_str(e, "ref"), a1);
    assert_string_equal(json_str(e, "state"), "ready");
    assert_true(json_number_value(json_object_get(e, "value")) == 2);
    e = json_array_get(objects, 1);
    assert_string_equal(json_str(e, "ref"), p2);
    assert_string_equal(json_str(e, "state"), "pending");
    e = json_array_get(objects, 2);
    assert_string_equal(json_str(e, "ref"), a2);
    assert_string_equal(json_str(e, "state"), "ready");
    assert_true(json_number_value(json_object_get(e, "value")) == 4);
    http_resp_free(r);
    cancel(2, task);
}

static void test_input_order(void **state)
{
    char first[65], second[65], pending[65], task[65], body[1024];
    submit(&g.node[1], "{\"function\":\"add\",\"args\":[10,1]}", NULL, first);
    submit(&g.node[2], "{\"function\":\"add\",\"args\":[10,2]}", NULL, second);
    submit(&g.node[0], "{\"function\":\"sleep\",\"args\":[120]}", task, pending);
    assert_true(value_of(1, first) == 11);
    /* Node 0 reads the second one: it now holds a copy of it, and none of the first. */
    assert_true(value_of(0, second) == 12);

    /* num_returns 1: the first ready ref in input order is `first`, whichever this node
     * happens to know already. */
    snprintf(body, sizeof(body),
             "{\"refs\":[\"%s\",\"%s\",\"%s\"],\"num_returns\":1,\"timeout\":10}", pending, first,
             second);
    const char *ready[] = {first}, *not_ready[] = {pending, second};
    expect_wait(&g.node[0], body, ready, 1, not_ready, 2);
    /* and num_returns 2: both, in input order */
    snprintf(body, sizeof(body),
             "{\"refs\":[\"%s\",\"%s\",\"%s\"],\"num_returns\":2,\"timeout\":10}", second,
             pending, first);
    const char *ready2[] = {second, first}, *not_ready2[] = {pending};
    expect_wait(&g.node[0], body, ready2, 2, not_ready2, 1);
    cancel(0, task);
}

static void test_all_refs_of_one_other_node(void **state)
{
    /* A batch of 100 submitted on node 1, waited for through node 2: every ref is node 1's. */
    enum { N = 100 };
    size_t cap = 64 + N * 48, len = 0;
    char *batch = malloc(cap);
    assert_non_null(batch);
    len += (size_t)snprintf(batch + len, cap - len, "{\"tasks\":[");
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(batch + len, cap - len, "%s{\"function\":\"echo\",\"args\":[%d]}",
                                i ? "," : "", i);
    snprintf(batch + len, cap - len, "]}");
    http_resp *r = http_post_json(&g.node[1], "/v1/tasks/batch", batch);
    assert_status(r, 202);
    json_t *tasks = json_member(r->json, "tasks");
    assert_int_equal(json_array_size(tasks), N);
    char *wait = malloc(64 + N * 40);
    assert_non_null(wait);
    len = (size_t)sprintf(wait, "{\"refs\":[");
    for (int i = 0; i < N; i++) {
        const char *ref = json_str(json_array_get(tasks, (size_t)i), "ref");
        expect_owner(ref, 1);
        len += (size_t)sprintf(wait + len, "%s\"%s\"", i ? "," : "", ref);
    }
    sprintf(wait + len, "],\"num_returns\":%d,\"timeout\":30}", N);
    http_resp *w = http_post_json(&g.node[2], "/v1/wait", wait);
    assert_status(w, 200);
    assert_int_equal(json_array_size(json_member(w->json, "ready")), N);
    assert_int_equal(json_array_size(json_member(w->json, "not_ready")), 0);
    for (int i = 0; i < N; i++)
        assert_string_equal(json_string_value(json_array_get(json_member(w->json, "ready"),
                                                             (size_t)i)),
                            json_str(json_array_get(tasks, (size_t)i), "ref"));
    http_resp_free(w);
    free(wait);
    free(batch);
    http_resp_free(r);

    /* timeout 0 on node 1's refs, one pending, through node 0. */
    char done[65], pending[65], task[65], body[512];
    submit(&g.node[1], "{\"function\":\"add\",\"args\":[3,4]}", NULL, done);
    submit(&g.node[1], "{\"function\":\"sleep\",\"args\":[120]}", task, pending);
    assert_true(value_of(1, done) == 7);
    snprintf(body, sizeof(body),
             "{\"refs\":[\"%s\",\"%s\"],\"num_returns\":2,\"timeout\":0}", pending, done);
    expect_wait(&g.node[0], body, (const char *[]){done}, 1, (const char *[]){pending}, 1);
    cancel(1, task);
}

static void test_ref_its_owner_does_not_have(void **state)
{
    /* A ref in node 1's shape that node 1 never made: 404 NotFound, as on one node, alone
     * or beside another node's ref. */
    char ghost[65], other[65], body[512];
    snprintf(ghost, sizeof(ghost), "o%s-AAAAAAAAAAAAAAAAAAAAAA", g.tag[1]);
    put_object(&g.node[2], "application/json", "1", 1, other);
    snprintf(body, sizeof(body), "{\"refs\":[\"%s\"],\"timeout\":0}", ghost);
    http_resp *r = http_post_json(&g.node[0], "/v1/wait", body);
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    snprintf(body, sizeof(body), "{\"refs\":[\"%s\",\"%s\"],\"timeout\":0}", other, ghost);
    r = http_post_json(&g.node[0], "/v1/wait", body);
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    r = http_post_json(&g.node[0], "/v1/objects/get", body);
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_owners_third_pending),
        cmocka_unit_test(test_timeout_zero_through_a_non_owner),
        cmocka_unit_test(test_input_order),
        cmocka_unit_test(test_all_refs_of_one_other_node),
        cmocka_unit_test(test_ref_its_owner_does_not_have),
    };
    return cmocka_run_group_tests_name("cluster/waits", tests, group_setup, NULL);
}
