/* Cluster test of actors whose node dies (issue 12, part 3). A fourth rayd of this test's
 * own joins the cluster and holds the actors; kill -9 of it, then:
 * - a Counter with max_restarts 1 (and a name) is ALIVE again on a live node within 10 s,
 *   with restarts 1; calls to it work through every node and nginx; its name still finds
 *   it through every node;
 * - a remote-class actor (the example Python worker's Account) whose class keeps its state
 *   in the cluster resumes from its last state, not from __init__;
 * - a Counter with max_restarts 0: calls answer 410 ActorDied through every node;
 * - a call in flight to it when the node died (relayed through another node, waiting on a
 *   dependency) ends 424 ActorDied, saying it may or may not have run.
 * The three nodes run.sh started stay alive (one of them restarts the actors). */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/api/support/harness.h"
#include "tests/api/support/worker.h"
#include "tests/cluster/cluster_env.h"

static cluster_env g;
static pid_t g_fourth = -1; /* killed at teardown if a check failed first */
static pid_t g_worker = -1;
static int g_worker_port;

static int group_setup(void **state)
{
    if (cluster_env_load(&g) != 0)
        return -1;
    const char *port = getenv("RAYD_CLUSTER_WORKER_PORT");
    if (!port || !g.log[0][0]) {
        fprintf(stderr, "cluster/actor_failover: RAYD_CLUSTER_WORKER_PORT or "
                        "RAYD_CLUSTER_LOGS not set (tests/cluster/run.sh)\n");
        return -1;
    }
    g_worker_port = atoi(port);
    g_worker = worker_start(g_worker_port, true);
    return g_worker > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    if (g_fourth > 0) {
        kill(g_fourth, SIGKILL);
        waitpid(g_fourth, NULL, 0);
    }
    worker_stop(g_worker);
    return 0;
}

/* Starts a fourth rayd in the cluster (stdout in a file `log_name` next to the others', in
 * log_env->log[0]), allowed to call the worker; waits until it has joined and every node
 * sees it. Fills *node; writes its tag. */
static void start_fourth(rayd_server *node, char tag[16], const char *log_name,
                         cluster_env *log_env_out)
{
    char allow[64];
    snprintf(allow, sizeof(allow), "http://127.0.0.1:%d", g_worker_port);
    const char *args[] = {"--remote-allow", allow, NULL};
    cluster_env log_env;
    pid_t pid = cluster_start_node(&g, log_name, args, node, &log_env);
    if (pid < 0)
        fail_msg("the fourth rayd did not start (%s)", log_env.log[0]);
    g_fourth = pid;
    double deadline = now_s() + 10;
    for (;;) {
        http_opts o = {.path = "/readyz", .soft = true};
        http_resp *r = http_request_opts(node, &o);
        bool ready = r->status == 200;
        http_resp_free(r);
        if (ready)
            break;
        if (now_s() > deadline)
            fail_msg("the fourth node did not join within 10 s");
        sleep_s(0.05);
    }
    http_resp *st = cluster_status(node);
    snprintf(tag, 16, "%s", json_str(json_object_get(st->json, "cluster"), "node"));
    http_resp_free(st);
    /* Every other node knows it before its ids reach them. */
    for (int i = 0; i < CLUSTER_NODES; i++) {
        for (;;) {
            http_resp *s = cluster_status(&g.node[i]);
            bool alive = json_is_true(json_object_get(cluster_status_node(s, tag), "alive"));
            http_resp_free(s);
            if (alive)
                break;
            if (now_s() > deadline + 5)
                fail_msg("node %s does not see the fourth node alive", g.tag[i]);
            sleep_s(0.05);
        }
    }
    if (log_env_out)
        *log_env_out = log_env;
}

static void put_class(const rayd_server *node)
{
    char body[160];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://127.0.0.1:%d/classes/Account\",\"timeout\":10,"
             "\"state_in_cluster\":true}",
             g_worker_port);
    http_opts o = {.method = "PUT",
                   .path = "/v1/actor-classes/KeptAccount",
                   .headers = (const char *const[]){"Content-Type: application/json", NULL},
                   .body = body,
                   .body_len = strlen(body),
                   .has_body = true};
    http_resp *r = http_request_opts(node, &o);
    if (r->status != 201 && r->status != 200)
        fail_msg("PUT /v1/actor-classes/KeptAccount on %s answered %ld: %s", node->base_url,
                 r->status, r->body ? r->body : "");
    assert_true(json_is_true(json_object_get(r->json, "state_in_cluster")));
    http_resp_free(r);
}

/* Creates an actor on node (its own node) from body; writes its id. */
static void make_actor(const rayd_server *node, const char *body, char id[65])
{
    http_resp *r = http_post_json(node, "/v1/actors", body);
    if (r->status != 201)
        fail_msg("POST /v1/actors %s answered %ld: %s", body, r->status, r->body);
    snprintf(id, 65, "%s", json_str(r->json, "actor_id"));
    http_resp_free(r);
}

/* Calls method with args (JSON array text) through node, Prefer: wait; new response. */
static http_resp *call(const rayd_server *node, const char *id, const char *method,
                       const char *args)
{
    char path[256], body[256];
    snprintf(path, sizeof(path), "/v1/actors/%s/methods/%s", id, method);
    snprintf(body, sizeof(body), "{\"args\":%s}", args);
    http_opts o = {.method = "POST",
                   .path = path,
                   .headers = (const char *const[]){"Content-Type: application/json",
                                                    "Prefer: wait=10", NULL},
                   .body = body,
                   .body_len = strlen(body),
                   .has_body = true,
                   .timeout_ms = 30000,
                   .soft = true};
    return http_request_opts(node, &o);
}

static long call_int(const rayd_server *node, const char *id, const char *method,
                     const char *args)
{
    http_resp *r = call(node, id, method, args);
    if (r->status != 200)
        fail_msg("%s.%s%s through %s answered %ld: %s", id, method, args, node->base_url,
                 r->status, r->body ? r->body : "");
    long v = strtol(r->body, NULL, 10);
    http_resp_free(r);
    return v;
}

typedef struct in_flight {
    pthread_t thread;
    char path[256];
    char body[256];
    http_resp *resp;
} in_flight;

static void *in_flight_run(void *arg)
{
    in_flight *f = arg;
    http_opts o = {.method = "POST",
                   .path = f->path,
                   .headers = (const char *const[]){"Content-Type: application/json",
                                                    "Prefer: wait=60", NULL},
                   .body = f->body,
                   .body_len = strlen(f->body),
                   .has_body = true,
                   .timeout_ms = 90000,
                   .soft = true};
    f->resp = http_request_opts(&g.node[0], &o);
    return NULL;
}

/* Waits (up to limit seconds after since) for actor id to be ALIVE through node; returns
 * its record (new response). */
static http_resp *wait_alive(const rayd_server *node, const char *id, double since,
                             double limit)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/actors/%s", id);
    for (;;) {
        http_opts o = {.path = path, .soft = true};
        http_resp *r = http_request_opts(node, &o);
        if (r->status == 200 && strcmp(json_str(r->json, "state"), "ALIVE") == 0)
            return r;
        if (r->status != 200 && r->status != 503)
            fail_msg("GET %s through %s answered %ld while restarting: %s", path,
                     node->base_url, r->status, r->body ? r->body : "");
        http_resp_free(r);
        if (now_s() - since > limit)
            fail_msg("actor %s not ALIVE again through %s within %.0f s of the kill", id,
                     node->base_url, limit);
        sleep_s(0.05);
    }
}

static void test_actors_survive_their_node(void **state)
{
    rayd_server fourth;
    char tag4[16];
    start_fourth(&fourth, tag4, "rayd-failover.log", NULL);
    put_class(&fourth);
    for (int i = 0; i < CLUSTER_NODES; i++)
        put_class(&g.node[i]);

    char counter[65], kept[65], mortal[65], tag[16];
    make_actor(&fourth,
               "{\"class\":\"Counter\",\"name\":\"failover-counter\","
               "\"options\":{\"max_restarts\":1}}",
               counter);
    make_actor(&fourth, "{\"class\":\"KeptAccount\",\"args\":[100],\"options\":{\"max_restarts\":1}}",
               kept);
    make_actor(&fourth, "{\"class\":\"Counter\"}", mortal);
    /* A constructor argument that node 0 owns: read again from node 0 at the restart. */
    char start_ref[65], seeded[65], body[256];
    put_object(&g.node[0], "application/json", "40", 2, start_ref);
    snprintf(body, sizeof(body),
             "{\"class\":\"Counter\",\"args\":[{\"$ref\":\"%s\"}],"
             "\"options\":{\"max_restarts\":1}}",
             start_ref);
    make_actor(&fourth, body, seeded);
    assert_int_equal(call_int(&fourth, seeded, "incr", "[1]"), 41);
    cluster_ref_tag(counter, tag);
    assert_string_equal(tag, tag4);
    for (int k = 1; k <= 3; k++)
        assert_int_equal(call_int(&g.node[k % CLUSTER_NODES], counter, "incr", "[1]"), k);
    assert_int_equal(call_int(&g.node[1], kept, "deposit", "[5]"), 105);
    assert_int_equal(call_int(&g.node[2], kept, "deposit", "[7]"), 112);
    assert_int_equal(call_int(&g.node[0], mortal, "incr", "[1]"), 1);

    /* A call in flight through node 0 when the node dies: the mortal Counter's incr waits
     * on a task that sleeps on node 1. */
    http_resp *r = http_post_json(&g.node[1], "/v1/tasks", "{\"function\":\"sleep\",\"args\":[30]}");
    assert_status(r, 202);
    char pending[65];
    snprintf(pending, sizeof(pending), "%s", json_str(r->json, "ref"));
    http_resp_free(r);
    in_flight f = {0};
    snprintf(f.path, sizeof(f.path), "/v1/actors/%s/methods/incr", mortal);
    snprintf(f.body, sizeof(f.body), "{\"args\":[{\"$ref\":\"%s\"}]}", pending);
    assert_int_equal(pthread_create(&f.thread, NULL, in_flight_run, &f), 0);
    char path[160];
    snprintf(path, sizeof(path), "/v1/actors/%s", mortal);
    for (double t0 = now_s();; sleep_s(0.02)) { /* accepted by the fourth node */
        r = http_get(&fourth, path);
        long pending_calls = json_int(r->json, "calls_pending");
        http_resp_free(r);
        if (pending_calls >= 1)
            break;
        if (now_s() - t0 > 10)
            fail_msg("the call in flight never reached the fourth node");
    }

    assert_int_equal(kill(g_fourth, SIGKILL), 0);
    assert_int_equal(waitpid(g_fourth, NULL, 0), g_fourth);
    g_fourth = -1;
    double killed = now_s();

    /* The restartable Counter: ALIVE again within 10 s, restarts 1, on a live node. */
    r = wait_alive(&g.node[0], counter, killed, 10);
    printf("     the Counter was ALIVE again %.2f s after kill -9\n", now_s() - killed);
    assert_int_equal(json_int(r->json, "restarts"), 1);
    assert_int_equal(json_int(r->json, "max_restarts"), 1);
    assert_string_equal(json_str(r->json, "name"), "failover-counter");
    http_resp_free(r);
    /* Until a node sees the fourth dead it relays there (and answers 503, retry). */
    for (int i = 0; i < CLUSTER_NODES; i++) {
        for (;;) {
            http_resp *s = cluster_status(&g.node[i]);
            bool alive = json_is_true(json_object_get(cluster_status_node(s, tag4), "alive"));
            http_resp_free(s);
            if (!alive)
                break;
            if (now_s() - killed > 10)
                fail_msg("node %s still sees the fourth node alive", g.tag[i]);
            sleep_s(0.05);
        }
    }
    /* Through every node and nginx: calls (its state began again: a built-in Counter's
     * state lives in memory), its record, its name. */
    long last = 0;
    for (int i = 0; i < CLUSTER_NODES + 1; i++) {
        const rayd_server *via = i < CLUSTER_NODES ? &g.node[i] : &g.lb;
        long v = call_int(via, counter, "incr", "[1]");
        assert_int_equal(v, last + 1);
        last = v;
        r = wait_alive(via, counter, killed, 15);
        assert_int_equal(json_int(r->json, "restarts"), 1);
        http_resp_free(r);
        r = http_get(via, "/v1/actors/by-name/failover-counter");
        assert_status(r, 200);
        assert_string_equal(json_str(r->json, "actor_id"), counter);
        http_resp_free(r);
    }
    /* The name stays taken by it. */
    r = http_post_json(&g.node[2], "/v1/actors", "{\"class\":\"Counter\",\"name\":\"failover-counter\"}");
    assert_problem(r, 409, "Conflict");
    http_resp_free(r);

    /* The remote-class actor resumed from its last kept state: 112, not 100. */
    r = wait_alive(&g.node[1], kept, killed, 15);
    assert_int_equal(json_int(r->json, "restarts"), 1);
    http_resp_free(r);
    assert_int_equal(call_int(&g.node[0], kept, "balance", "[]"), 112);
    assert_int_equal(call_int(&g.lb, kept, "deposit", "[1]"), 113);
    assert_int_equal(call_int(&g.node[2], kept, "balance", "[]"), 113);

    /* Its constructor ran again with node 0's object. */
    r = wait_alive(&g.node[2], seeded, killed, 15);
    http_resp_free(r);
    assert_int_equal(call_int(&g.node[1], seeded, "incr", "[2]"), 42);

    /* The Counter without restarts: 410 ActorDied through every node. */
    for (int i = 0; i < CLUSTER_NODES; i++) {
        r = call(&g.node[i], mortal, "incr", "[1]");
        assert_problem(r, 410, "ActorDied");
        assert_true(json_is_true(json_object_get(r->json, "owner_died")));
        http_resp_free(r);
    }
    /* The call in flight ended ActorDied, saying it may or may not have run. */
    pthread_join(f.thread, NULL);
    assert_non_null(f.resp);
    assert_problem(f.resp, 424, "ActorDied");
    assert_true(json_is_true(json_object_get(f.resp->json, "may_have_run")));
    assert_non_null(strstr(json_str(f.resp->json, "detail"), "may or may not have run"));
    http_resp_free(f.resp);

    /* The node that restarted them said so. */
    json_t *said = NULL;
    for (int i = 0; i < CLUSTER_NODES && !said; i++)
        said = cluster_log_event(&g, i, "actor restarted", "actor_id", counter);
    assert_non_null(said);
    assert_string_equal(json_str(said, "reason"), "node_died");
    assert_string_equal(json_str(said, "node"), tag4);
    json_decref(said);

    /* Killed through any node, it is gone for good. */
    snprintf(path, sizeof(path), "/v1/actors/%s", counter);
    r = http_delete(&g.node[2], path);
    assert_status(r, 204);
    http_resp_free(r);
    for (int i = 0; i < CLUSTER_NODES; i++) {
        r = call(&g.node[i], counter, "incr", "[1]");
        assert_problem(r, 410, "ActorDied");
        http_resp_free(r);
    }
    snprintf(path, sizeof(path), "/v1/actors/%s", kept);
    r = http_delete(&g.node[0], path);
    assert_status(r, 204);
    http_resp_free(r);
}

/* Fencing: a node that stalls past its heartbeat's expiry (SIGSTOP) is taken for dead and
 * its actor restarted elsewhere; when it runs again (SIGCONT) it must not run its old copy:
 * it forgets it (an "actor moved" line), and calls through it reach the restarted actor. */
static void test_stalled_node_does_not_run_it_twice(void **state)
{
    rayd_server fourth;
    char tag4[16], counter[65];
    cluster_env log4;
    start_fourth(&fourth, tag4, "rayd-stalled.log", &log4);
    make_actor(&fourth, "{\"class\":\"Counter\",\"options\":{\"max_restarts\":2}}", counter);
    for (int k = 1; k <= 10; k++) /* the old copy's count: 10 */
        assert_int_equal(call_int(&fourth, counter, "incr", "[1]"), k);

    assert_int_equal(kill(g_fourth, SIGSTOP), 0);
    double stopped = now_s();
    /* Asked before node 0 takes it for dead, a stopped node would hold the relay. */
    for (;;) {
        http_resp *s = cluster_status(&g.node[0]);
        bool alive = json_is_true(json_object_get(cluster_status_node(s, tag4), "alive"));
        http_resp_free(s);
        if (!alive)
            break;
        if (now_s() - stopped > 10)
            fail_msg("node %s still sees the stopped node alive after 10 s", g.tag[0]);
        sleep_s(0.05);
    }
    http_resp *r = wait_alive(&g.node[0], counter, stopped, 15);
    assert_int_equal(json_int(r->json, "restarts"), 1);
    http_resp_free(r);
    assert_int_equal(call_int(&g.node[0], counter, "incr", "[1]"), 1); /* a new count */

    assert_int_equal(kill(g_fourth, SIGCONT), 0);
    double deadline = now_s() + 15;
    json_t *moved;
    while (!(moved = cluster_log_event(&log4, 0, "actor moved", "actor_id", counter))) {
        if (now_s() > deadline)
            fail_msg("the stalled node never said it lost actor %s", counter);
        sleep_s(0.05);
    }
    json_decref(moved);
    /* Through the node that came back: the restarted actor (2), never the old copy (11).
     * Until it sees itself alive again it may answer 503: retried. */
    for (deadline = now_s() + 15;; sleep_s(0.05)) {
        r = call(&fourth, counter, "incr", "[1]");
        if (r->status != 503)
            break;
        http_resp_free(r);
        if (now_s() > deadline)
            fail_msg("the node that came back kept answering 503");
    }
    assert_status(r, 200);
    assert_int_equal(strtol(r->body, NULL, 10), 2);
    http_resp_free(r);
    /* Once every node sees it alive again, they send requests for the id (which names it)
     * to it, and it passes them on to where the directory says the actor lives. */
    for (int i = 0; i < CLUSTER_NODES; i++) {
        for (deadline = now_s() + 10;; sleep_s(0.05)) {
            http_resp *s = cluster_status(&g.node[i]);
            bool alive = json_is_true(json_object_get(cluster_status_node(s, tag4), "alive"));
            http_resp_free(s);
            if (alive)
                break;
            if (now_s() > deadline)
                fail_msg("node %s does not see the node that came back alive", g.tag[i]);
        }
    }
    for (int i = 0; i < CLUSTER_NODES; i++)
        assert_int_equal(call_int(&g.node[i], counter, "incr", "[1]"), 3 + i);

    char path[128];
    snprintf(path, sizeof(path), "/v1/actors/%s", counter);
    r = http_delete(&g.node[2], path);
    assert_status(r, 204);
    http_resp_free(r);
    assert_int_equal(kill(g_fourth, SIGKILL), 0);
    waitpid(g_fourth, NULL, 0);
    g_fourth = -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_actors_survive_their_node),
        cmocka_unit_test(test_stalled_node_does_not_run_it_twice),
    };
    return cmocka_run_group_tests_name("cluster/actor_failover", tests, group_setup,
                                       group_teardown);
}
