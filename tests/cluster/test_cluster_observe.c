/* Cluster test of the membership lifecycle lines (run last: it may follow the test that
 * killed a node). A fourth rayd of this test's own joins the cluster's Redis: it logs a
 * "node joined" line for each live node it finds, and a live node of run.sh's logs one for
 * it; kill -9 of the fourth makes that node log "node left" for it (its heartbeat record
 * expires) and list it dead in /v1/status, which the dashboard's Nodes table shows. The
 * three nodes run.sh started are left as they were. */
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
static pid_t g_fourth = -1; /* the fourth rayd while it runs: killed at teardown if a check
                               failed first */

static int group_setup(void **state)
{
    if (cluster_env_load_alive(&g) != 0) /* the test before this one killed a node */
        return -1;
    if (!g.log[0][0]) {
        fprintf(stderr, "cluster/observe: RAYD_CLUSTER_LOGS is not set (tests/cluster/run.sh)\n");
        return -1;
    }
    return 0;
}

static void pause_briefly(void)
{
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* A node of run.sh's that is ready (another test may have killed one). */
static int live_node(void)
{
    for (int i = 0; i < CLUSTER_NODES; i++) {
        if (!g.tag[i][0])
            continue;
        http_opts o = {.path = "/readyz", .soft = true};
        http_resp *r = http_request_opts(&g.node[i], &o);
        bool ready = r->status == 200;
        http_resp_free(r);
        if (ready)
            return i;
    }
    fail_msg("no node of the cluster is ready");
    return -1;
}

/* Waits up to 10 s for a "node" log line of event about tag in the stdout file of env's
 * node i; returns it. */
static json_t *wait_log_event(const cluster_env *env, int i, const char *event, const char *tag)
{
    double deadline = now_s() + 10;
    json_t *line;
    while (!(line = cluster_log_event(env, i, event, "node", tag))) {
        if (now_s() > deadline)
            fail_msg("%s has no \"%s\" line for node %s within 10 s", env->log[i], event, tag);
        pause_briefly();
    }
    return line;
}

/* Starts a fourth rayd in the cluster with its stdout in a file next to the others' (a
 * file, not a pipe read later: its first lines come as it joins, right after it listens).
 * Fills *node (base_url, port) and *log_env (log[0]: that file); returns its pid. */
static pid_t start_fourth(rayd_server *node, cluster_env *log_env)
{
    const char *args[] = {"--drain-timeout", "5s", NULL};
    pid_t pid = cluster_start_node(&g, "rayd4.log", args, node, log_env);
    if (pid < 0)
        fail_msg("the fourth rayd did not start (%s)", log_env->log[0]);
    g_fourth = pid;
    return pid;
}

/* Whether node `watcher` lists tag in /v1/status cluster.nodes, and alive. */
static bool listed_alive(int watcher, const char *tag, bool *listed)
{
    http_resp *r = cluster_status(&g.node[watcher]);
    json_t *n = cluster_status_node(r, tag);
    *listed = n != NULL;
    bool alive = json_is_true(json_object_get(n, "alive"));
    http_resp_free(r);
    return alive;
}

static void test_node_joined_and_left(void **state)
{
    int watcher = live_node();
    rayd_server fourth;
    cluster_env fourth_log;
    pid_t pid = start_fourth(&fourth, &fourth_log);

    /* It joins (ready), and has a tag of its own. */
    double deadline = now_s() + 10;
    for (;;) {
        http_opts o = {.path = "/readyz", .soft = true};
        http_resp *r = http_request_opts(&fourth, &o);
        bool ready = r->status == 200;
        http_resp_free(r);
        if (ready)
            break;
        if (now_s() > deadline)
            fail_msg("the fourth node did not join within 10 s");
        pause_briefly();
    }
    http_resp *st = cluster_status(&fourth);
    char tag[16];
    snprintf(tag, sizeof(tag), "%s", json_str(json_object_get(st->json, "cluster"), "node"));
    http_resp_free(st);
    assert_true(tag[0] != '\0');

    /* The newcomer logs the live node it found... */
    json_decref(wait_log_event(&fourth_log, 0, "node joined", g.tag[watcher]));
    /* ...and the live node logs the newcomer, with its URL, and lists it alive. */
    json_t *joined = wait_log_event(&g, watcher, "node joined", tag);
    assert_string_equal(json_str(joined, "level"), "info");
    char port[16];
    snprintf(port, sizeof(port), ":%d", fourth.port);
    assert_non_null(strstr(json_str(joined, "url"), port));
    json_decref(joined);
    bool listed;
    deadline = now_s() + 10;
    while (!listed_alive(watcher, tag, &listed)) {
        if (now_s() > deadline)
            fail_msg("node %s does not list node %s alive", g.tag[watcher], tag);
        pause_briefly();
    }

    /* kill -9: its heartbeat record expires, and the live node says so. */
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    g_fourth = -1;
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    json_t *left = wait_log_event(&g, watcher, "node left", tag);
    assert_string_equal(json_str(left, "level"), "warn");
    assert_non_null(json_str(left, "url"));
    assert_non_null(json_str(left, "detail"));
    json_decref(left);
    /* Still listed, as dead: the dashboard's Nodes table shows it so. */
    assert_false(listed_alive(watcher, tag, &listed));
    assert_true(listed);
}

static int group_teardown(void **state)
{
    if (g_fourth > 0) {
        kill(g_fourth, SIGKILL);
        waitpid(g_fourth, NULL, 0);
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_joined_and_left),
    };
    return cmocka_run_group_tests_name("cluster/observe", tests, group_setup, group_teardown);
}
