/* Cluster tests of Redis trouble (run after test_cluster_objects, before the kill test):
 * Redis paused (SIGSTOP: every command times out) and resumed, then Redis emptied
 * (FLUSHALL, as a restart without persistence or a failover that lost writes), then Redis
 * stopped (SHUTDOWN NOSAVE: connections refused) for five seconds and started again, empty,
 * on the same port. Through all three, no node is ever reported dead, objects stay
 * readable through every node, and the nodes find Redis again and rejoin by themselves:
 * records rewritten, new epochs, the tag counter put back above every live tag. While
 * Redis is stopped, what needs it answers 503 ClusterUnavailable with Retry-After: a ref
 * whose owner tag no node known here has (a node may have joined unseen), and a node that
 * has not joined yet. */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/api/support/harness.h"
#include "tests/cluster/cluster_env.h"

static cluster_env g;
static char refs[CLUSTER_NODES][65];

static int group_setup(void **state)
{
    if (cluster_env_load(&g) != 0)
        return -1;
    for (int i = 0; i < CLUSTER_NODES; i++) {
        char body[32];
        int len = snprintf(body, sizeof(body), "kept by node %d", i);
        http_opts o = {.method = "POST", .path = "/v1/objects", .body = body,
                       .body_len = (size_t)len, .has_body = true, .soft = true};
        http_resp *r = http_request_opts(&g.node[i], &o);
        json_t *ref = r->json ? json_object_get(r->json, "ref") : NULL;
        if (r->status != 201 || !json_is_string(ref)) {
            http_resp_free(r);
            return -1;
        }
        snprintf(refs[i], sizeof(refs[i]), "%s", json_string_value(ref));
        http_resp_free(r);
    }
    return 0;
}

/* Whatever happens, Redis runs again after each test. */
static int resume_redis(void **state)
{
    kill(g.redis_pid, SIGCONT);
    return 0;
}

/* One look at every node: 1 when each reports Redis in state `redis` (NULL: either),
 * joined; fails the test when any node reports another one dead. epochs (may be NULL)
 * receives each node's own epoch. */
static int look(const char *redis, long long *epochs)
{
    int all = 1;
    for (int i = 0; i < CLUSTER_NODES; i++) {
        http_resp *r = cluster_status(&g.node[i]);
        json_t *cluster = json_member(r->json, "cluster");
        for (int k = 0; k < CLUSTER_NODES; k++) {
            json_t *n = cluster_status_node(r, g.tag[k]);
            if (!n || !json_is_true(json_object_get(n, "alive")))
                fail_msg("node %s reports node %s %s", g.tag[i], g.tag[k],
                         n ? "dead" : "unknown");
        }
        if (redis && strcmp(json_str(cluster, "redis"), redis) != 0)
            all = 0;
        if (!json_is_true(json_object_get(cluster, "joined")))
            fail_msg("node %s no longer joined", g.tag[i]);
        if (epochs)
            epochs[i] = json_int(cluster, "epoch");
        http_resp_free(r);
    }
    return all;
}

/* Every object readable through every node. */
static void read_everything(void)
{
    for (int owner = 0; owner < CLUSTER_NODES; owner++) {
        char path[128], body[32];
        int len = snprintf(body, sizeof(body), "kept by node %d", owner);
        snprintf(path, sizeof(path), "/v1/objects/%.64s", refs[owner]);
        for (int j = 0; j < CLUSTER_NODES; j++) {
            http_resp *r = http_get(&g.node[j], path);
            assert_status(r, 200);
            assert_int_equal(r->body_len, (size_t)len);
            assert_memory_equal(r->body, body, (size_t)len);
            http_resp_free(r);
        }
    }
}

#define TK_REF 65

/* Submits add(a, b) to node; its result ref into ref. */
static void submit_add(const rayd_server *node, int a, int b, char *ref)
{
    char body[96];
    snprintf(body, sizeof(body), "{\"function\":\"add\",\"args\":[%d,%d]}", a, b);
    http_resp *r = http_post_json(node, "/v1/tasks", body);
    assert_status(r, 202);
    snprintf(ref, TK_REF, "%s", json_str(r->json, "ref"));
    http_resp_free(r);
}

/* The task result ref reads `want` through node. */
static void assert_task_value(const rayd_server *node, const char *ref, long long want)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/objects/%.64s?timeout=10", ref);
    http_resp *r = http_get(node, path);
    assert_status(r, 200);
    assert_true(json_is_integer(r->json));
    assert_int_equal(json_integer_value(r->json), want);
    http_resp_free(r);
}

/* Keeps looking for `seconds`: nobody may be reported dead meanwhile. */
static void watch(double seconds)
{
    double until = now_s() + seconds;
    while (now_s() < until) {
        look(NULL, NULL);
        sleep_s(0.1);
    }
}

static void test_redis_paused_and_resumed(void **state)
{
    assert_true(look("connected", NULL));
    assert_int_equal(kill(g.redis_pid, SIGSTOP), 0);
    double until = now_s() + 10;
    while (!look("unavailable", NULL) && now_s() < until)
        sleep_s(0.1);
    if (!look("unavailable", NULL))
        fail_msg("the nodes did not notice Redis stopped answering within 10 s");
    /* Objects move node to node without Redis. */
    read_everything();
    watch(2.0); /* past the records' expiry inside Redis */
    assert_int_equal(kill(g.redis_pid, SIGCONT), 0);
    until = now_s() + 10;
    while (!look("connected", NULL) && now_s() < until)
        sleep_s(0.1);
    if (!look("connected", NULL))
        fail_msg("the nodes did not find Redis again within 10 s");
    watch(5.0); /* longer than a record's expiry plus a scan */
    read_everything();
}

static void test_redis_emptied(void **state)
{
    long long before[CLUSTER_NODES], after[CLUSTER_NODES];
    look("connected", before);
    char *ok = cluster_redis_cli(&g, "FLUSHALL");
    assert_non_null(ok);
    assert_string_equal(ok, "OK");
    free(ok);
    /* Each node finds its record gone, rejoins with a new epoch, and nobody is taken for
     * dead while the others write theirs back. */
    double until = now_s() + 10;
    int rejoined = 0;
    while (!rejoined && now_s() < until) {
        look("connected", after);
        rejoined = 1;
        for (int i = 0; i < CLUSTER_NODES; i++)
            rejoined &= after[i] > before[i];
        sleep_s(0.1);
    }
    if (!rejoined)
        fail_msg("the nodes did not rejoin with new epochs within 10 s of FLUSHALL");
    long long highest = 0;
    for (int i = 0; i < CLUSTER_NODES; i++)
        highest = before[i] > highest ? before[i] : highest;
    for (int i = 0; i < CLUSTER_NODES; i++)
        if (after[i] <= highest)
            fail_msg("node %s rejoined with epoch %lld, not above every earlier epoch (%lld)",
                     g.tag[i], after[i], highest);
    watch(5.0);
    read_everything();
    /* The tag counter is back above every live tag: a node joining now gets a new one. */
    char *counter = cluster_redis_cli(&g, "GET nodes:counter");
    assert_non_null(counter);
    long long n = atoll(counter);
    free(counter);
    for (int i = 0; i < CLUSTER_NODES; i++) {
        long long tag = 0;
        for (const char *p = g.tag[i]; *p; p++)
            tag = tag * 62 + (*p >= '0' && *p <= '9'   ? *p - '0'
                              : *p >= 'A' && *p <= 'Z' ? *p - 'A' + 10
                                                       : *p - 'a' + 36);
        if (n < tag)
            fail_msg("nodes:counter is %lld, below node %s's number %lld", n, g.tag[i], tag);
    }
    char *known = cluster_redis_cli(&g, "HLEN nodes");
    assert_non_null(known);
    assert_int_equal(atoi(known), CLUSTER_NODES);
    free(known);
    /* New ids still name their owners. */
    for (int i = 0; i < CLUSTER_NODES; i++) {
        char ref[65], tag[16];
        put_object(&g.node[i], "text/plain", "after", 5, ref);
        cluster_ref_tag(ref, tag);
        assert_string_equal(tag, g.tag[i]);
    }
}

/* 1 when `redis-cli ping` on the test's port answers PONG. */
static int redis_answers(void)
{
    char *pong = cluster_redis_cli(&g, "ping");
    int up = pong && strcmp(pong, "PONG") == 0;
    free(pong);
    return up;
}

/* A ref whose owner tag no node has. */
#define UNKNOWN_REF "oZZZZZZ-0123456789abcdefghijkl"

static void assert_cluster_unavailable(const http_resp *r)
{
    assert_problem(r, 503, "ClusterUnavailable");
    const char *retry = http_header_get(r, "Retry-After");
    if (!retry || atoi(retry) < 1)
        fail_msg("503 ClusterUnavailable without a Retry-After");
}

static rayd_server g_late; /* a node started while Redis is stopped */

static int stop_late(void **state)
{
    if (g_late.pid > 0)
        rayd_stop(&g_late);
    return 0;
}

static void test_redis_stopped_and_started(void **state)
{
    const char *restart = getenv("RAYD_CLUSTER_REDIS_RESTART");
    if (!restart)
        fail_msg("RAYD_CLUSTER_REDIS_RESTART (set by run.sh) is missing");
    long long before[CLUSTER_NODES], after[CLUSTER_NODES];
    assert_true(look("connected", before));
    /* A task submitted before, and its result (owned by node 0). */
    char task_ref[TK_REF], task_ref_during[TK_REF];
    submit_add(&g.node[0], 20, 22, task_ref);

    char *bye = cluster_redis_cli(&g, "SHUTDOWN NOSAVE");
    free(bye); /* the connection closes without an answer */
    double until = now_s() + 10;
    while (redis_answers() && now_s() < until)
        sleep_s(0.05);
    if (redis_answers())
        fail_msg("Redis still answers after SHUTDOWN NOSAVE");
    until = now_s() + 10;
    while (!look("unavailable", NULL) && now_s() < until)
        sleep_s(0.1);
    if (!look("unavailable", NULL))
        fail_msg("the nodes did not notice Redis stopped within 10 s");
    double stopped_at = now_s();

    /* What the nodes own, and every ref whose owner they know, keeps working. */
    read_everything();
    char during[CLUSTER_NODES][65];
    for (int i = 0; i < CLUSTER_NODES; i++) {
        char body[32];
        int len = snprintf(body, sizeof(body), "put while Redis is down %d", i);
        put_object(&g.node[i], "text/plain", body, (size_t)len, during[i]);
        for (int j = 0; j < CLUSTER_NODES; j++) {
            char path[128];
            snprintf(path, sizeof(path), "/v1/objects/%.64s", during[i]);
            http_resp *r = http_get(&g.node[j], path);
            assert_status(r, 200);
            assert_memory_equal(r->body, body, (size_t)len);
            http_resp_free(r);
        }
    }
    submit_add(&g.node[1], 1, 2, task_ref_during);
    assert_task_value(&g.node[0], task_ref, 42);
    assert_task_value(&g.node[2], task_ref_during, 3);
    http_resp *r = http_get(&g.node[2], "/v1/objects?limit=1000");
    assert_status(r, 200);
    http_resp_free(r);
    for (int i = 0; i < CLUSTER_NODES; i++) {
        r = http_get(&g.node[i], "/readyz");
        assert_status(r, 200); /* still serving: the balancer keeps it */
        http_resp_free(r);
    }

    /* What needs Redis answers 503 ClusterUnavailable, to retry. */
    for (int i = 0; i < CLUSTER_NODES; i++) {
        r = http_get(&g.node[i], "/v1/objects/" UNKNOWN_REF);
        assert_cluster_unavailable(r);
        assert_string_equal(json_str(r->json, "owner"), "ZZZZZZ");
        http_resp_free(r);
        r = http_get(&g.node[i], "/v1/tasks?node=ZZZZZZ");
        assert_cluster_unavailable(r);
        http_resp_free(r);
    }
    /* A node that starts now cannot join (it would need a tag from Redis). It uses a
     * Redis database of its own, so that it forms a cluster of one and the three above stay
     * three for the tests after this one. */
    char url[64];
    snprintf(url, sizeof(url), "RAYD_CLUSTER=redis://127.0.0.1:%d/1", g.redis_port);
    const char *const env[] = {url, NULL};
    assert_int_equal(rayd_start(&g_late, NULL, env), 0);
    r = http_get(&g_late, "/readyz");
    assert_int_equal(r->status, 503);
    http_resp_free(r);
    r = http_post_bytes(&g_late, "/v1/objects", "text/plain", "x", 1);
    assert_cluster_unavailable(r);
    http_resp_free(r);

    /* Five seconds without Redis (longer than a record's expiry): nobody is taken for dead
     * meanwhile. */
    watch(5.0 - (now_s() - stopped_at));
    assert_int_equal(system(restart), 0);
    until = now_s() + 10;
    int rejoined = 0;
    while (!rejoined && now_s() < until) {
        rejoined = look("connected", after);
        for (int i = 0; i < CLUSTER_NODES; i++)
            rejoined &= after[i] > before[i];
        if (!rejoined)
            sleep_s(0.1);
    }
    if (!rejoined)
        fail_msg("the nodes did not reconnect and rejoin (new epochs) within 10 s of Redis "
                 "starting again");
    /* The late node joins by itself too. */
    until = now_s() + 10;
    long status = 0;
    while (status != 200 && now_s() < until) {
        r = http_get(&g_late, "/readyz");
        status = r->status;
        http_resp_free(r);
        if (status != 200)
            sleep_s(0.05);
    }
    assert_int_equal(status, 200);
    assert_int_equal(rayd_stop(&g_late), 0);

    /* Nothing was lost: everything owned before and during is readable through every node,
     * the tasks' results too, a ref of no node is a 404 again, new ids name their owners. */
    watch(5.0);
    read_everything();
    for (int i = 0; i < CLUSTER_NODES; i++)
        for (int j = 0; j < CLUSTER_NODES; j++) {
            char path[128];
            snprintf(path, sizeof(path), "/v1/objects/%.64s", during[i]);
            r = http_get(&g.node[j], path);
            assert_status(r, 200);
            http_resp_free(r);
        }
    assert_task_value(&g.node[0], task_ref, 42);
    assert_task_value(&g.node[1], task_ref_during, 3);
    for (int i = 0; i < CLUSTER_NODES; i++) {
        r = http_get(&g.node[i], "/v1/objects/" UNKNOWN_REF);
        assert_problem(r, 404, "NotFound");
        http_resp_free(r);
        char ref[65], tag[16];
        put_object(&g.node[i], "text/plain", "after", 5, ref);
        cluster_ref_tag(ref, tag);
        assert_string_equal(tag, g.tag[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_redis_paused_and_resumed, resume_redis),
        cmocka_unit_test_teardown(test_redis_emptied, resume_redis),
        cmocka_unit_test_teardown(test_redis_stopped_and_started, stop_late),
    };
    return cmocka_run_group_tests_name("cluster/redis", tests, group_setup, NULL);
}
