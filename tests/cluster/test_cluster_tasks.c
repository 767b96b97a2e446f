/* Cluster tests of waits and tasks across nodes (tests/cluster/run.sh): POST /v1/wait on
 * refs owned by three nodes (num_returns and timeout across all of them, a parked wait
 * woken when the third owner resolves its ref); POST /v1/objects/get across owners in
 * input order; a chain of 30 tasks submitted round-robin through nginx, each depending on
 * the previous ref; a failing task's 424 with its whole cause chain read through a node
 * that neither ran it nor owns its argument; GET and cancel of a task through a node that
 * does not own it. */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
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
    /* Run here or spilled back to another node, the receipt says where the task is. */
    char location[100];
    snprintf(location, sizeof(location), "/v1/tasks/%s", json_str(r->json, "task_id"));
    const char *got = http_header_get(r, "Location");
    if (!got || strcmp(got, location) != 0)
        fail_msg("POST /v1/tasks: Location %s, wanted %s", got ? got : "(missing)", location);
    http_resp_free(r);
}

/* A rayd_parked_requests figure of node i's /metrics. */
static long parked(int i)
{
    http_resp *r = http_get(&g.node[i], "/metrics");
    assert_status(r, 200);
    const char *p = strstr(r->body, "\nrayd_parked_requests ");
    long n = p ? strtol(p + strlen("\nrayd_parked_requests "), NULL, 10) : -1;
    http_resp_free(r);
    return n;
}

typedef struct async_post {
    pthread_t thread;
    int node;
    const char *path;
    char body[1024];
    http_resp *resp;
} async_post;

static void *async_post_run(void *arg)
{
    async_post *a = arg;
    http_opts o = {.method = "POST",
                   .path = a->path,
                   .headers = (const char *const[]){"Content-Type: application/json", NULL},
                   .body = a->body,
                   .body_len = strlen(a->body),
                   .has_body = true,
                   .timeout_ms = 60000,
                   .soft = true};
    a->resp = http_request_opts(&g.node[a->node], &o);
    return NULL;
}

/* Waits until node i has parked more requests than before (bounded: 10 s). */
static void wait_parked(int i, long before)
{
    double t0 = now_s();
    while (parked(i) <= before) {
        if (now_s() - t0 > 10)
            fail_msg("node %s never parked the request", g.tag[i]);
        sleep_s(0.01);
    }
}

static void test_wait_across_owners(void **state)
{
    char r0[65], r1[65], r2[65], task2[65], body[1024];
    put_object(&g.node[0], "application/json", "10", 2, r0);
    put_object(&g.node[1], "application/json", "11", 2, r1);
    submit(&g.node[2], "{\"function\":\"sleep\",\"args\":[120]}", task2, r2); /* pending */
    expect_owner(r0, 0);
    expect_owner(r1, 1);
    expect_owner(r2, 2);

    /* Through each node: two of the three owners' refs are ready, the third pending. */
    for (int via = 0; via < CLUSTER_NODES; via++) {
        snprintf(body, sizeof(body),
                 "{\"refs\":[\"%s\",\"%s\",\"%s\"],\"num_returns\":2,\"timeout\":20}", r2, r1,
                 r0);
        http_resp *r = http_post_json(&g.node[via], "/v1/wait", body);
        assert_status(r, 200);
        json_t *ready = json_member(r->json, "ready"), *not_ready = json_member(r->json, "not_ready");
        assert_int_equal(json_array_size(ready), 2);
        assert_string_equal(json_string_value(json_array_get(ready, 0)), r1);
        assert_string_equal(json_string_value(json_array_get(ready, 1)), r0);
        assert_int_equal(json_array_size(not_ready), 1);
        assert_string_equal(json_string_value(json_array_get(not_ready, 0)), r2);
        http_resp_free(r);
    }
    /* The timeout holds across owners: num_returns 3 with the third pending times out. */
    snprintf(body, sizeof(body),
             "{\"refs\":[\"%s\",\"%s\",\"%s\"],\"num_returns\":3,\"timeout\":0.3}", r0, r1, r2);
    double t0 = now_s();
    http_resp *r = http_post_json(&g.node[0], "/v1/wait", body);
    assert_status(r, 200);
    assert_int_equal(json_array_size(json_member(r->json, "ready")), 2);
    assert_int_equal(json_array_size(json_member(r->json, "not_ready")), 1);
    assert_true(now_s() - t0 >= 0.3);
    http_resp_free(r);

    /* Parked on node 0 for node 2's ref; woken when node 2 resolves it (the task is
     * cancelled through node 1, which relays the cancel to node 2). */
    long before = parked(0);
    async_post a = {.node = 0, .path = "/v1/wait"};
    snprintf(a.body, sizeof(a.body),
             "{\"refs\":[\"%s\",\"%s\",\"%s\"],\"num_returns\":3,\"timeout\":30}", r0, r1, r2);
    assert_int_equal(pthread_create(&a.thread, NULL, async_post_run, &a), 0);
    wait_parked(0, before);
    char path[128];
    snprintf(path, sizeof(path), "/v1/tasks/%s/cancel", task2);
    r = http_request(&g.node[1], "POST", path, NULL, NULL, 0);
    assert_status(r, 202);
    assert_string_equal(json_str(r->json, "task_id"), task2);
    http_resp_free(r);
    t0 = now_s();
    pthread_join(a.thread, NULL);
    assert_non_null(a.resp);
    assert_status(a.resp, 200);
    assert_int_equal(json_array_size(json_member(a.resp->json, "ready")), 3);
    assert_int_equal(json_array_size(json_member(a.resp->json, "not_ready")), 0);
    assert_true(now_s() - t0 < 5);
    http_resp_free(a.resp);

    /* The task is read through a node that does not own it. */
    snprintf(path, sizeof(path), "/v1/tasks/%s", task2);
    r = http_get(&g.node[0], path);
    assert_status(r, 200);
    assert_string_equal(json_str(r->json, "task_id"), task2);
    assert_string_equal(json_str(r->json, "state"), "CANCELLED");
    http_resp_free(r);
}

static void test_batch_get_in_input_order(void **state)
{
    char refs[3][65], failed[65], pending[65], task[65], body[1024];
    for (int i = 0; i < CLUSTER_NODES; i++) {
        char value[8];
        int n = snprintf(value, sizeof(value), "%d", 100 + i);
        put_object(&g.node[i], "application/json", value, (size_t)n, refs[i]);
        expect_owner(refs[i], i);
    }
    submit(&g.node[1], "{\"function\":\"fail\",\"args\":[\"batch boom\"]}", NULL, failed);
    submit(&g.node[2], "{\"function\":\"sleep\",\"args\":[120]}", task, pending);
    /* Through node 0: node 2's, node 0's, node 1's, node 1's error, then node 2's pending
     * ref, which the node waits for (parked) until it resolves. */
    long before = parked(0);
    async_post a = {.node = 0, .path = "/v1/objects/get"};
    snprintf(a.body, sizeof(a.body),
             "{\"refs\":[\"%s\",\"%s\",\"%s\",\"%s\",\"%s\"],\"timeout\":30}", refs[2], refs[0],
             refs[1], failed, pending);
    assert_int_equal(pthread_create(&a.thread, NULL, async_post_run, &a), 0);
    wait_parked(0, before);
    char path[128];
    snprintf(path, sizeof(path), "/v1/tasks/%s/cancel", task);
    http_resp *r = http_request(&g.node[2], "POST", path, NULL, NULL, 0);
    assert_status(r, 202);
    http_resp_free(r);
    pthread_join(a.thread, NULL);
    assert_non_null(a.resp);
    assert_status(a.resp, 200);
    json_t *objects = json_member(a.resp->json, "objects");
    assert_int_equal(json_array_size(objects), 5);
    const int order[3] = {2, 0, 1};
    for (int k = 0; k < 3; k++) {
        json_t *e = json_array_get(objects, (size_t)k);
        assert_string_equal(json_str(e, "ref"), refs[order[k]]);
        assert_string_equal(json_str(e, "state"), "ready");
        assert_int_equal(json_integer_value(json_object_get(e, "value")), 100 + order[k]);
    }
    json_t *e = json_array_get(objects, 3);
    assert_string_equal(json_str(e, "ref"), failed);
    assert_string_equal(json_str(e, "state"), "error");
    json_t *err = json_member(e, "error");
    assert_string_equal(json_str(err, "title"), "TaskError");
    assert_non_null(strstr(json_str(err, "detail"), "batch boom"));
    e = json_array_get(objects, 4);
    assert_string_equal(json_str(e, "ref"), pending);
    assert_string_equal(json_str(e, "state"), "error");
    assert_string_equal(json_str(json_member(e, "error"), "title"), "TaskCancelled");
    http_resp_free(a.resp);

    /* Without a timeout's help: every ref ready at once, through another node. */
    snprintf(body, sizeof(body), "{\"refs\":[\"%s\",\"%s\",\"%s\"]}", refs[1], refs[2], refs[0]);
    r = http_post_json(&g.node[1], "/v1/objects/get", body);
    assert_status(r, 200);
    objects = json_member(r->json, "objects");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(objects, 0), "value")), 101);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(objects, 1), "value")), 102);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(objects, 2), "value")), 100);
    http_resp_free(r);
}

static void test_chain_of_30_through_nginx(void **state)
{
    char prev[65], body[256];
    submit(&g.lb, "{\"function\":\"add\",\"args\":[0,1]}", NULL, prev);
    bool owners[CLUSTER_NODES] = {false};
    for (int i = 1; i < 30; i++) {
        char ref[65], tag[16];
        snprintf(body, sizeof(body), "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},1]}", prev);
        submit(&g.lb, body, NULL, ref);
        cluster_ref_tag(ref, tag);
        for (int n = 0; n < CLUSTER_NODES; n++)
            if (strcmp(tag, g.tag[n]) == 0)
                owners[n] = true;
        snprintf(prev, sizeof(prev), "%s", ref);
    }
    for (int n = 0; n < CLUSTER_NODES; n++)
        if (!owners[n])
            fail_msg("no task of the chain was answered by node %s (nginx round-robin?)",
                     g.tag[n]);
    char path[128];
    snprintf(path, sizeof(path), "/v1/objects/%s?timeout=30", prev);
    http_opts o = {.path = path, .timeout_ms = 60000};
    for (int k = 0; k < CLUSTER_NODES; k++) {
        http_resp *r = http_request_opts(&g.lb, &o);
        assert_status(r, 200);
        assert_int_equal(strtol(r->body, NULL, 10), 30);
        http_resp_free(r);
    }
}

static void test_failure_chain_through_another_node(void **state)
{
    char failed[65], dependent[65], dep_task[65], body[256];
    submit(&g.node[0], "{\"function\":\"fail\",\"args\":[\"deep boom\"]}", NULL, failed);
    snprintf(body, sizeof(body), "{\"function\":\"identity\",\"args\":[{\"$ref\":\"%s\"}]}",
             failed);
    submit(&g.node[1], body, dep_task, dependent);
    expect_owner(dependent, 1);
    /* Read through node 2, which neither owns nor ran either task. */
    char path[128];
    snprintf(path, sizeof(path), "/v1/objects/%s?timeout=30", dependent);
    http_opts o = {.path = path, .timeout_ms = 60000};
    http_resp *r = http_request_opts(&g.node[2], &o);
    assert_problem(r, 424, "TaskError");
    assert_string_equal(json_str(r->json, "ref"), dependent);
    json_t *cause = json_member(r->json, "cause");
    assert_string_equal(json_str(cause, "title"), "TaskError");
    assert_non_null(strstr(json_str(cause, "detail"), "deep boom"));
    assert_string_equal(json_str(cause, "function"), "fail");
    assert_int_equal(json_int(cause, "status"), 424);
    http_resp_free(r);

    snprintf(path, sizeof(path), "/v1/tasks/%s", dep_task);
    r = http_get(&g.node[2], path);
    assert_status(r, 200);
    assert_string_equal(json_str(r->json, "state"), "FAILED");
    http_resp_free(r);
    /* A task id no node has. */
    r = http_get(&g.node[2], "/v1/tasks/tZZZ-0123456789012345678901");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
}

/* A gauge of node i's /metrics. */
static long metric(int i, const char *name)
{
    http_resp *r = http_get(&g.node[i], "/metrics");
    assert_status(r, 200);
    char needle[128];
    snprintf(needle, sizeof(needle), "\n%s ", name);
    const char *p = strstr(r->body, needle);
    long n = p ? strtol(p + strlen(needle), NULL, 10) : -1;
    http_resp_free(r);
    return n;
}

/* run.sh starts the nodes with --spillback-queued 2: with node 0's workers busy and three
 * jobs queued, a task submitted there runs on another node; its receipt names that node's
 * task and node 0's own result ref, which answers (value or error) through any node. */
static void test_spillback(void **state)
{
    http_resp *r = cluster_status(&g.node[0]);
    long workers = json_int(json_member(r->json, "config"), "workers");
    http_resp_free(r);
    assert_true(workers > 0 && workers < 64);
    char body[8192] = "{\"tasks\":[";
    for (long i = 0; i < workers + 3; i++)
        strcat(body, i ? ",{\"function\":\"sleep\",\"args\":[120]}"
                       : "{\"function\":\"sleep\",\"args\":[120]}");
    strcat(body, "]}");
    r = http_post_json(&g.node[0], "/v1/tasks/batch", body);
    assert_status(r, 202);
    json_t *sleeps = json_deep_copy(json_member(r->json, "tasks"));
    http_resp_free(r);
    double t0 = now_s();
    while (metric(0, "rayd_scheduler_queued_jobs") < 3) {
        if (now_s() - t0 > 10)
            fail_msg("node %s never had 3 jobs queued", g.tag[0]);
        sleep_s(0.01);
    }

    char task[65], ref[65], task_tag[16], path[160];
    submit(&g.node[0], "{\"function\":\"add\",\"args\":[1,2]}", task, ref);
    expect_owner(ref, 0);
    cluster_ref_tag(task, task_tag);
    if (strcmp(task_tag, g.tag[0]) == 0)
        fail_msg("task %s ran on the busy node %s: no spillback", task, g.tag[0]);
    snprintf(path, sizeof(path), "/v1/objects/%s?timeout=30", ref);
    http_opts o = {.path = path, .timeout_ms = 60000};
    for (int via = 0; via < CLUSTER_NODES; via++) {
        r = http_request_opts(&g.node[via], &o);
        assert_status(r, 200);
        assert_int_equal(strtol(r->body, NULL, 10), 3);
        http_resp_free(r);
    }
    snprintf(path, sizeof(path), "/v1/tasks/%s", task);
    r = http_get(&g.node[0], path);
    assert_status(r, 200);
    assert_string_equal(json_str(r->json, "state"), "FINISHED");
    http_resp_free(r);

    /* An error travels back whole. */
    submit(&g.node[0], "{\"function\":\"fail\",\"args\":[\"spilled boom\"]}", task, ref);
    expect_owner(ref, 0);
    snprintf(path, sizeof(path), "/v1/objects/%s?timeout=30", ref);
    r = http_request_opts(&g.node[2], &o);
    assert_problem(r, 424, "TaskError");
    assert_non_null(strstr(json_str(r->json, "detail"), "spilled boom"));
    http_resp_free(r);

    /* The sleepers go (cancelled through another node). */
    size_t i;
    json_t *t;
    json_array_foreach(sleeps, i, t)
    {
        snprintf(path, sizeof(path), "/v1/tasks/%s/cancel", json_str(t, "task_id"));
        r = http_request(&g.node[1], "POST", path, NULL, NULL, 0);
        assert_true(r->status == 202 || r->status == 409);
        http_resp_free(r);
    }
    json_decref(sleeps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wait_across_owners),
        cmocka_unit_test(test_batch_get_in_input_order),
        cmocka_unit_test(test_chain_of_30_through_nginx),
        cmocka_unit_test(test_failure_chain_through_another_node),
        cmocka_unit_test(test_spillback),
    };
    return cmocka_run_group_tests_name("cluster/tasks", tests, group_setup, NULL);
}
