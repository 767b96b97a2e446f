/* Cluster tests of a node's death (run last: it kills a node): after kill -9 of one node,
 * the others report it dead within 5 s, and its refs answer 410 ObjectLost saying the
 * owner died on every other node, copies or not; a batch get parked on another node for
 * one of its pending refs wakes with that error within 5 s, and a task elsewhere whose
 * argument was that ref fails with it as its cause; a task it ran for another node (spillback)
 * runs again on that node; the rest of the cluster, and nginx in front of it, go on
 * working. */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
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

#define VICTIM 2

/* Whether node `seen_by` reports the victim alive. */
static bool victim_alive(int seen_by)
{
    http_resp *r = cluster_status(&g.node[seen_by]);
    json_t *n = cluster_status_node(r, g.tag[VICTIM]);
    if (!n)
        fail_msg("node %s does not list node %s", g.tag[seen_by], g.tag[VICTIM]);
    bool alive = json_is_true(json_object_get(n, "alive"));
    http_resp_free(r);
    return alive;
}

static void expect_owner_died(int j, const char *method, const char *path, const char *ref)
{
    http_resp *r = http_request(&g.node[j], method, path, NULL, NULL, 0);
    if (strcmp(method, "HEAD") == 0) {
        assert_status(r, 410);
        http_resp_free(r);
        return;
    }
    assert_problem(r, 410, "ObjectLost");
    assert_true(json_is_true(json_object_get(r->json, "owner_died")));
    assert_string_equal(json_str(r->json, "owner"), g.tag[VICTIM]);
    assert_string_equal(json_str(r->json, "ref"), ref);
    assert_string_equal(json_str(r->json, "lost_reason"), "owner_died");
    assert_non_null(strstr(json_str(r->json, "detail"), "died"));
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

typedef struct parked_get {
    pthread_t thread;
    char body[256];
    http_resp *resp;
    double answered; /* now_s() when the answer came */
} parked_get;

static void *parked_get_run(void *arg)
{
    parked_get *a = arg;
    http_opts o = {.method = "POST",
                   .path = "/v1/objects/get",
                   .headers = (const char *const[]){"Content-Type: application/json", NULL},
                   .body = a->body,
                   .body_len = strlen(a->body),
                   .has_body = true,
                   .timeout_ms = 60000,
                   .soft = true};
    a->resp = http_request_opts(&g.node[0], &o);
    a->answered = now_s();
    return NULL;
}

/* Submits count sleep(120) tasks to node i in one batch; their receipts (new reference). */
static json_t *sleepers(int i, long count)
{
    size_t cap = 64 + (size_t)count * 48, len = 0;
    char *body = malloc(cap);
    assert_non_null(body);
    len += (size_t)snprintf(body + len, cap - len, "{\"tasks\":[");
    for (long k = 0; k < count; k++)
        len += (size_t)snprintf(body + len, cap - len, "%s{\"function\":\"sleep\",\"args\":[120]}",
                                k ? "," : "");
    snprintf(body + len, cap - len, "]}");
    http_resp *r = http_post_json(&g.node[i], "/v1/tasks/batch", body);
    free(body);
    assert_status(r, 202);
    json_t *tasks = json_incref(json_member(r->json, "tasks"));
    http_resp_free(r);
    return tasks;
}

static void cancel_all(int i, json_t *tasks)
{
    size_t k;
    json_t *t;
    json_array_foreach(tasks, k, t)
    {
        char path[128];
        snprintf(path, sizeof(path), "/v1/tasks/%s/cancel", json_str(t, "task_id"));
        http_resp *r = http_request(&g.node[i], "POST", path, NULL, NULL, 0);
        assert_true(r->status == 202 || r->status == 409);
        http_resp_free(r);
    }
    json_decref(tasks);
}

/* Jobs waiting for a worker: node `of` as node `seen_by` last heard (its heartbeat), or
 * node `of`'s own figure when the two are the same. */
static long queued_seen(int seen_by, int of)
{
    http_resp *r = cluster_status(&g.node[seen_by]);
    long q;
    if (seen_by == of)
        q = json_int(json_member(r->json, "scheduler"), "queued");
    else
        q = json_int(json_member(cluster_status_node(r, g.tag[of]), "load"), "queued");
    http_resp_free(r);
    return q;
}

/* Makes node 0 send its next task to the victim (spillback): node 0 with jobs queued,
 * node 1 with more. Returns the sleepers to cancel later, in *busy0 and *busy1. */
static void make_node_0_spill_to_victim(json_t **busy0, json_t **busy1)
{
    http_resp *r = cluster_status(&g.node[0]);
    long workers = json_int(json_member(r->json, "config"), "workers");
    http_resp_free(r);
    assert_true(workers > 0 && workers < 64);
    *busy0 = sleepers(0, workers + 3);
    *busy1 = sleepers(1, workers + 6);
    double t0 = now_s();
    while (queued_seen(0, 0) < 3 || queued_seen(0, 1) <= queued_seen(0, 0)) {
        if (now_s() - t0 > 10)
            fail_msg("node %s never saw itself with 3 jobs queued and node %s with more",
                     g.tag[0], g.tag[1]);
        sleep_s(0.02);
    }
}

static void test_kill_9_owner(void **state)
{
    char copied[65], alone[65], survivor[65], pending[65], dependent[65], body[256];
    put_object(&g.node[VICTIM], "text/plain", "copied elsewhere", 16, copied);
    put_object(&g.node[VICTIM], "text/plain", "only on its owner", 17, alone);
    put_object(&g.node[0], "text/plain", "survives", 8, survivor);
    char path[128];
    snprintf(path, sizeof(path), "/v1/objects/%s", copied);
    http_resp *r = http_get(&g.node[0], path); /* node 0 keeps a copy */
    assert_status(r, 200);
    http_resp_free(r);
    assert_true(victim_alive(0) && victim_alive(1));

    /* A pending ref of the victim: a batch get through node 0 waiting for it, and a task on
     * node 1 that takes it as its argument. */
    r = http_post_json(&g.node[VICTIM], "/v1/tasks", "{\"function\":\"sleep\",\"args\":[120]}");
    assert_status(r, 202);
    snprintf(pending, sizeof(pending), "%s", json_str(r->json, "ref"));
    http_resp_free(r);
    snprintf(body, sizeof(body), "{\"function\":\"identity\",\"args\":[{\"$ref\":\"%s\"}]}",
             pending);
    r = http_post_json(&g.node[1], "/v1/tasks", body);
    assert_status(r, 202);
    snprintf(dependent, sizeof(dependent), "%s", json_str(r->json, "ref"));
    http_resp_free(r);
    /* Every ref of the get is the victim's: node 0 sends the whole request there, where
     * it parks (api/wait_owners.h); when the victim dies, node 0 waits on a stand-in. */
    long before = parked(0), before_victim = parked(VICTIM);
    parked_get a = {0};
    snprintf(a.body, sizeof(a.body), "{\"refs\":[\"%s\"],\"timeout\":30}", pending);
    assert_int_equal(pthread_create(&a.thread, NULL, parked_get_run, &a), 0);
    double t0 = now_s();
    while (parked(0) <= before && parked(VICTIM) <= before_victim) {
        if (now_s() - t0 > 10)
            fail_msg("neither node %s nor the owner %s parked the batch get", g.tag[0],
                     g.tag[VICTIM]);
        sleep_s(0.01);
    }

    /* A task node 0 owns runs on the victim (spillback) when it dies: node 0 runs it
     * again itself (max_retries 1), and its ref gets that result. */
    json_t *busy0, *busy1;
    make_node_0_spill_to_victim(&busy0, &busy1);
    char spilled_task[65], spilled_ref[65], tag[16];
    r = http_post_json(&g.node[0], "/v1/tasks",
                       "{\"function\":\"sleep\",\"args\":[3],\"options\":{\"max_retries\":1}}");
    assert_status(r, 202);
    snprintf(spilled_task, sizeof(spilled_task), "%s", json_str(r->json, "task_id"));
    snprintf(spilled_ref, sizeof(spilled_ref), "%s", json_str(r->json, "ref"));
    http_resp_free(r);
    cluster_ref_tag(spilled_task, tag);
    if (strcmp(tag, g.tag[VICTIM]) != 0)
        fail_msg("the task went to node %s, not to the victim %s", tag, g.tag[VICTIM]);
    cluster_ref_tag(spilled_ref, tag);
    assert_string_equal(tag, g.tag[0]);
    snprintf(path, sizeof(path), "/v1/tasks/%s", spilled_task);
    for (double t1 = now_s();; sleep_s(0.01)) {
        r = http_get(&g.node[VICTIM], path);
        bool running = r->status == 200 && strcmp(json_str(r->json, "state"), "RUNNING") == 0;
        http_resp_free(r);
        if (running)
            break;
        if (now_s() - t1 > 10)
            fail_msg("the spilled task %s never ran on the victim", spilled_task);
    }
    /* The stand-in of the spilled task's result counts. (The batch get waits at the
     * victim: node 0 makes a stand-in for the pending ref only once the victim's answer
     * breaks off.) */
    long long copies = cluster_store_stat(&g.node[0], "copies");

    assert_int_equal(kill(g.pid[VICTIM], SIGKILL), 0);
    double killed = now_s();
    /* Before the others know, a read of its object through them cannot reach it: a 503
     * to retry (or already the 410), never a 404, a 500 or a hang. */
    snprintf(path, sizeof(path), "/v1/objects/%s", alone);
    r = http_get(&g.node[1], path);
    if (r->status == 503) {
        assert_problem(r, 503, "ClusterUnavailable");
        assert_string_equal(http_header_get(r, "Retry-After"), "1");
    } else {
        assert_problem(r, 410, "ObjectLost");
    }
    http_resp_free(r);
    /* Wait for the others to say so: the heartbeat record expires (3 s) and the next scan
     * (1 s) sees it gone. Bounded well past the promise, which is checked after. */
    while ((victim_alive(0) || victim_alive(1)) && now_s() - killed < 10)
        sleep_s(0.05);
    double seen = now_s() - killed;
    if (victim_alive(0) || victim_alive(1))
        fail_msg("node %s still reported alive 10 s after kill -9", g.tag[VICTIM]);
    if (seen > 5.0)
        fail_msg("the others saw node %s dead after %.2f s, not within 5 s", g.tag[VICTIM], seen);
    printf("     node %s seen dead by both others %.2f s after kill -9\n", g.tag[VICTIM], seen);

    /* Room on node 0 for the rerun; node 1's workers back for the rest. */
    cancel_all(0, busy0);
    cancel_all(1, busy1);

    const char *refs[] = {copied, alone};
    for (int j = 0; j < 2; j++) {
        for (int k = 0; k < 2; k++) {
            snprintf(path, sizeof(path), "/v1/objects/%s", refs[k]);
            expect_owner_died(j, "GET", path, refs[k]);
            expect_owner_died(j, "HEAD", path, refs[k]);
            expect_owner_died(j, "DELETE", path, refs[k]);
            snprintf(path, sizeof(path), "/v1/objects/%s/meta", refs[k]);
            expect_owner_died(j, "GET", path, refs[k]);
        }
    }
    /* The parked batch get woke with the owner's death, within 5 s of the kill. */
    pthread_join(a.thread, NULL);
    assert_non_null(a.resp);
    assert_status(a.resp, 200);
    printf("     a batch get parked for its ref woke %.2f s after kill -9\n", a.answered - killed);
    if (a.answered - killed > 5.0)
        fail_msg("the parked batch get woke %.2f s after the kill, not within 5 s",
                 a.answered - killed);
    json_t *e = json_array_get(json_member(a.resp->json, "objects"), 0);
    assert_string_equal(json_str(e, "ref"), pending);
    assert_string_equal(json_str(e, "state"), "lost");
    json_t *err = json_member(e, "error");
    assert_string_equal(json_str(err, "title"), "ObjectLost");
    assert_int_equal(json_int(err, "status"), 410);
    assert_string_equal(json_str(err, "lost_reason"), "owner_died");
    assert_true(json_is_true(json_object_get(err, "owner_died")));
    assert_string_equal(json_str(err, "owner"), g.tag[VICTIM]);
    http_resp_free(a.resp);
    /* The task whose argument it was failed with that as its cause. */
    snprintf(path, sizeof(path), "/v1/objects/%s?timeout=10", dependent);
    r = http_get(&g.node[0], path);
    assert_problem(r, 424, "TaskError");
    json_t *cause = json_member(r->json, "cause");
    assert_string_equal(json_str(cause, "title"), "ObjectLost");
    assert_string_equal(json_str(cause, "lost_reason"), "owner_died");
    assert_string_equal(json_str(cause, "owner"), g.tag[VICTIM]);
    http_resp_free(r);

    /* The spilled task ran again on node 0, its owner: the ref holds its result. */
    snprintf(path, sizeof(path), "/v1/objects/%s?timeout=30", spilled_ref);
    http_opts slow = {.path = path, .timeout_ms = 60000};
    r = http_request_opts(&g.node[1], &slow);
    assert_status(r, 200);
    http_resp_free(r);
    json_t *line = cluster_log_event(&g, 0, "task retried", "task_id", spilled_task);
    if (!line)
        fail_msg("node %s logged no 'task retried' line for %s", g.tag[0], spilled_task);
    assert_string_equal(json_str(line, "reason"), "node_died");
    cluster_ref_tag(json_str(line, "retry_task_id"), tag);
    assert_string_equal(tag, g.tag[0]);
    json_decref(line);

    /* The copy died with its owner; the pending ref's stand-in, made since, stays,
     * holding the error. */
    assert_int_equal(cluster_store_stat(&g.node[0], "copies"), copies - 1 + 1);

    /* The living go on: the survivor's object through the other live node and nginx. */
    snprintf(path, sizeof(path), "/v1/objects/%s", survivor);
    r = http_get(&g.node[1], path);
    assert_status(r, 200);
    assert_memory_equal(r->body, "survives", 8);
    http_resp_free(r);
    for (int n = 0; n < 6; n++) {
        char ref[65];
        put_object(&g.lb, "text/plain", "after the death", 15, ref);
        snprintf(path, sizeof(path), "/v1/objects/%s", ref);
        r = http_get(&g.lb, path);
        assert_status(r, 200);
        assert_memory_equal(r->body, "after the death", 15);
        http_resp_free(r);
    }
    /* Listings go on without the dead node: the survivor's object, none of the victim's,
     * through both live nodes; ?node= of the dead node is a 404. */
    for (int j = 0; j < 2; j++) {
        r = http_get(&g.node[j], "/v1/objects?limit=1000");
        assert_status(r, 200);
        int has_survivor = 0;
        size_t i;
        json_t *item;
        json_array_foreach(json_member(r->json, "objects"), i, item)
        {
            cluster_ref_tag(json_str(item, "ref"), tag);
            if (strcmp(tag, g.tag[VICTIM]) == 0)
                fail_msg("node %s lists %s of the dead node", g.tag[j], json_str(item, "ref"));
            has_survivor |= strcmp(json_str(item, "ref"), survivor) == 0;
        }
        if (!has_survivor && json_is_null(json_member(r->json, "next_cursor")))
            fail_msg("node %s's listing lacks the survivor's object %s", g.tag[j], survivor);
        http_resp_free(r);
        snprintf(path, sizeof(path), "/v1/objects?node=%s", g.tag[VICTIM]);
        r = http_get(&g.node[j], path);
        assert_problem(r, 404, "NotFound");
        http_resp_free(r);
    }
    /* Still listed, as dead; the two others alive. (Nodes that earlier tests started and
     * killed are listed too, dead.) */
    r = cluster_status(&g.node[0]);
    json_t *victim = cluster_status_node(r, g.tag[VICTIM]);
    assert_non_null(victim);
    assert_true(json_is_false(json_object_get(victim, "alive")));
    assert_true(json_is_true(json_object_get(cluster_status_node(r, g.tag[1]), "alive")));
    http_resp_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_9_owner),
    };
    return cmocka_run_group_tests_name("cluster/failure", tests, group_setup, NULL);
}
