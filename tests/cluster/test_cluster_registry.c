/* Cluster tests of registrations (issue 12, part 4): a remote function registered through
 * one node is called through the other two; a node started after the registration knows it;
 * a delete through one node is seen on all; remote actor classes likewise; built-in names are
 * refused without touching Redis; while Redis does not answer a registration is 503
 * ClusterUnavailable and the functions already known keep working.
 *
 * The endpoint: run.sh starts the nodes with --remote-allow for nginx's address, so a remote
 * function's URL is POST /v1/objects through nginx (it answers 201 with the new ref, which
 * becomes the task's result). */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/api/support/harness.h"
#include "tests/cluster/cluster_env.h"

static cluster_env g;
static char run_id[16];
static pid_t g_fourth = -1; /* killed at teardown if a check failed first */

static int group_setup(void **state)
{
    snprintf(run_id, sizeof(run_id), "%lx", (unsigned long)time(NULL) ^ (unsigned long)getpid());
    if (cluster_env_load_alive(&g) != 0) /* test_cluster_failure killed a node before this */
        return -1;
    /* The live nodes first; a dead one's place is taken by a live one again, so that
     * node[0..2] are three views of at least two live nodes. */
    int live = 0;
    for (int i = 0; i < CLUSTER_NODES; i++)
        if (g.tag[i][0] != '\0')
            g.node[live++] = g.node[i];
    if (live < 2) {
        fprintf(stderr, "cluster tests: registry tests need two live nodes, %d found\n", live);
        return -1;
    }
    for (int i = live; i < CLUSTER_NODES; i++)
        g.node[i] = g.node[i % live];
    return 0;
}

static int group_teardown(void **state)
{
    if (g_fourth > 0) {
        kill(g_fourth, SIGKILL);
        waitpid(g_fourth, NULL, 0);
    }
    if (g.redis_pid > 0)
        kill(g.redis_pid, SIGCONT);
    return 0;
}

static void pause_briefly(void)
{
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static http_resp *put_json(const rayd_server *s, const char *path, const char *body)
{
    const char *h[] = {"Content-Type: application/json", NULL};
    return http_request(s, "PUT", path, h, body, strlen(body));
}

static void register_function(const rayd_server *via, const char *name, long status)
{
    char path[200], body[300];
    snprintf(path, sizeof path, "/v1/functions/%s", name);
    snprintf(body, sizeof body, "{\"url\":\"%s/v1/objects\",\"timeout\":10}", g.lb.base_url);
    http_resp *r = put_json(via, path, body);
    assert_status(r, status);
    http_resp_free(r);
}

/* Runs name through s with Prefer: wait: the endpoint's answer (a put's ref) comes back. */
static void call_works(const rayd_server *s, const char *name)
{
    char body[300];
    snprintf(body, sizeof body, "{\"function\":\"%s\",\"args\":[1]}", name);
    const char *h[] = {"Content-Type: application/json", "Prefer: wait=20", NULL};
    http_resp *r = http_request(s, "POST", "/v1/tasks", h, body, strlen(body));
    if (r->status != 200 || !strstr(r->body, "\"ref\""))
        fail_msg("calling %s through %s: %ld %s", name, s->base_url, r->status, r->body);
    http_resp_free(r);
}

static long get_status(const rayd_server *s, const char *path)
{
    http_resp *r = http_get(s, path);
    long status = r->status;
    http_resp_free(r);
    return status;
}

static void test_function_registered_through_one_called_through_others(void **state)
{
    char name[64], path[128];
    snprintf(name, sizeof name, "put_%s", run_id);
    register_function(&g.node[0], name, 201);
    snprintf(path, sizeof path, "/v1/functions/%s", name);
    /* known everywhere as soon as the PUT answered: no waiting */
    for (int i = 0; i < CLUSTER_NODES; i++)
        assert_int_equal(get_status(&g.node[i], path), 200);
    call_works(&g.node[1], name);
    call_works(&g.node[2], name);
    call_works(&g.lb, name);
    /* replaced through another node: 200, everywhere */
    register_function(&g.node[2], name, 200);
    for (int i = 0; i < CLUSTER_NODES; i++)
        call_works(&g.node[i], name);
}

/* A fourth rayd started now, with the same allow list, stdout in a file. */
static pid_t start_fourth(rayd_server *node, cluster_env *log_env)
{
    const char *args[] = {"--drain-timeout", "5s", "--remote-allow", g.lb.base_url, NULL};
    pid_t pid = cluster_start_node(&g, "rayd-registry.log", args, node, log_env);
    if (pid < 0)
        fail_msg("the fourth rayd did not start (%s)", log_env->log[0]);
    g_fourth = pid;
    return pid;
}

static void test_node_started_later_knows_registrations(void **state)
{
    char name[64], path[128];
    snprintf(name, sizeof name, "late_%s", run_id);
    register_function(&g.node[1], name, 201);
    snprintf(path, sizeof path, "/v1/functions/%s", name);
    rayd_server fourth;
    cluster_env fourth_log;
    pid_t pid = start_fourth(&fourth, &fourth_log);
    /* it joins, then reads the registrations with its first heartbeats */
    double deadline = now_s() + 10;
    while (get_status(&fourth, path) != 200) {
        if (now_s() > deadline)
            fail_msg("the node started later never learnt %s", name);
        pause_briefly();
    }
    call_works(&fourth, name);
    /* and a delete through another node reaches it too (it is a live node by now) */
    http_resp *r = http_delete(&g.node[2], path);
    assert_status(r, 204);
    http_resp_free(r);
    assert_int_equal(get_status(&fourth, path), 404);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    g_fourth = -1;
}

static void test_delete_through_one_seen_on_all(void **state)
{
    char name[64], path[128], body[200];
    snprintf(name, sizeof name, "del_%s", run_id);
    register_function(&g.node[2], name, 201);
    snprintf(path, sizeof path, "/v1/functions/%s", name);
    http_resp *r = http_delete(&g.node[1], path);
    assert_status(r, 204);
    http_resp_free(r);
    snprintf(body, sizeof body, "{\"function\":\"%s\",\"args\":[1]}", name);
    for (int i = 0; i < CLUSTER_NODES; i++) {
        assert_int_equal(get_status(&g.node[i], path), 404);
        r = http_post_json(&g.node[i], "/v1/tasks", body);
        assert_problem(r, 404, "NotFound");
        http_resp_free(r);
    }
    r = http_delete(&g.node[0], path);
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
}

static bool class_listed(const rayd_server *s, const char *name)
{
    http_resp *r = http_get(s, "/v1/actor-classes");
    assert_status(r, 200);
    bool found = false;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(r->json, "classes"), i, c)
        if (strcmp(json_str(c, "name"), name) == 0)
            found = true;
    http_resp_free(r);
    return found;
}

static void test_actor_class_through_one_seen_on_all(void **state)
{
    char name[64], path[128], body[300];
    snprintf(name, sizeof name, "Cls_%s", run_id);
    snprintf(path, sizeof path, "/v1/actor-classes/%s", name);
    snprintf(body, sizeof body, "{\"url\":\"%s/v1/objects\"}", g.lb.base_url);
    http_resp *r = put_json(&g.node[2], path, body);
    assert_status(r, 201);
    http_resp_free(r);
    for (int i = 0; i < CLUSTER_NODES; i++)
        if (!class_listed(&g.node[i], name))
            fail_msg("node %d does not list the class %s", i, name);
    r = http_delete(&g.node[0], path);
    assert_status(r, 204);
    http_resp_free(r);
    for (int i = 0; i < CLUSTER_NODES; i++)
        if (class_listed(&g.node[i], name))
            fail_msg("node %d still lists the deleted class %s", i, name);
}

static void test_builtin_names_refused(void **state)
{
    char body[300];
    snprintf(body, sizeof body, "{\"url\":\"%s/v1/objects\"}", g.lb.base_url);
    http_resp *r = put_json(&g.node[0], "/v1/functions/echo", body);
    assert_problem(r, 409, "Conflict");
    http_resp_free(r);
    r = put_json(&g.node[1], "/v1/actor-classes/Counter", body);
    assert_problem(r, 409, "Conflict");
    http_resp_free(r);
    char *in_redis = cluster_redis_cli(&g, "HEXISTS registrations function:echo");
    assert_non_null(in_redis);
    assert_string_equal(in_redis, "0");
    free(in_redis);
}

static void test_redis_paused_registration_503_known_ones_work(void **state)
{
    char name[64], other[64], path[128], body[300];
    snprintf(name, sizeof name, "known_%s", run_id);
    snprintf(other, sizeof other, "new_%s", run_id);
    register_function(&g.node[0], name, 201);
    assert_int_equal(kill(g.redis_pid, SIGSTOP), 0);
    snprintf(path, sizeof path, "/v1/functions/%s", other);
    snprintf(body, sizeof body, "{\"url\":\"%s/v1/objects\"}", g.lb.base_url);
    for (int i = 0; i < CLUSTER_NODES; i++) {
        http_resp *r = put_json(&g.node[i], path, body);
        assert_problem(r, 503, "ClusterUnavailable");
        if (!http_header_get(r, "Retry-After"))
            fail_msg("the 503 has no Retry-After");
        http_resp_free(r);
        call_works(&g.node[i], name);
    }
    assert_int_equal(kill(g.redis_pid, SIGCONT), 0);
    /* Redis answers again: the registration goes through (once the node sees it back) */
    double deadline = now_s() + 10;
    for (;;) {
        http_resp *r = put_json(&g.node[1], path, body);
        long status = r->status;
        http_resp_free(r);
        /* 200: a PUT answered 503 reached the paused Redis after all (it ran the command
         * once resumed, as a timed-out write may): the retry replaced it */
        if (status == 201 || status == 200)
            break;
        if (status != 503 || now_s() > deadline)
            fail_msg("after Redis came back, the registration answered %ld", status);
        pause_briefly();
    }
    for (int i = 0; i < CLUSTER_NODES; i++)
        call_works(&g.node[i], other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_function_registered_through_one_called_through_others),
        cmocka_unit_test(test_node_started_later_knows_registrations),
        cmocka_unit_test(test_delete_through_one_seen_on_all),
        cmocka_unit_test(test_actor_class_through_one_seen_on_all),
        cmocka_unit_test(test_builtin_names_refused),
        cmocka_unit_test(test_redis_paused_registration_503_known_ones_work),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
