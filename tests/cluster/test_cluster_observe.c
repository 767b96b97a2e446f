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

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/api/support/harness.h"
#include "tests/cluster/cluster_env.h"

static cluster_env g;

static int group_setup(void **state)
{
    if (cluster_env_load(&g) != 0)
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

/* Whether a captured stdout holds a JSON line of event with "node": tag. */
static bool captured_event(rayd_server *s, const char *event, const char *tag)
{
    char *text = rayd_stdout_text(s);
    bool found = false;
    for (const char *p = text; p && *p && !found;) {
        const char *nl = strchr(p, '\n');
        if (!nl)
            break;
        json_t *j = json_loadb(p, (size_t)(nl - p), 0, NULL);
        const char *ev = json_string_value(json_object_get(j, "event"));
        const char *node = json_string_value(json_object_get(j, "node"));
        found = ev && node && strcmp(ev, event) == 0 && strcmp(node, tag) == 0;
        json_decref(j);
        p = nl + 1;
    }
    free(text);
    return found;
}

/* Waits up to 10 s for node `watcher`'s log line of event about tag; returns it. */
static json_t *wait_log_event(int watcher, const char *event, const char *tag)
{
    double deadline = now_s() + 10;
    json_t *line;
    while (!(line = cluster_log_event(&g, watcher, event, "node", tag))) {
        if (now_s() > deadline)
            fail_msg("node %s logged no \"%s\" line for node %s within 10 s (%s)",
                     g.tag[watcher], event, tag, g.log[watcher]);
        pause_briefly();
    }
    return line;
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
    char redis[64];
    snprintf(redis, sizeof(redis), "RAYD_CLUSTER=redis://127.0.0.1:%d", g.redis_port);
    const char *env[] = {redis, NULL};
    const char *args[] = {"--drain-timeout", "5s", NULL};
    rayd_server fourth;
    assert_int_equal(rayd_start(&fourth, args, env), 0);
    rayd_capture_stdout(&fourth, true);

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
    deadline = now_s() + 10;
    while (!captured_event(&fourth, "node joined", g.tag[watcher])) {
        if (now_s() > deadline)
            fail_msg("the fourth node logged no \"node joined\" line for node %s",
                     g.tag[watcher]);
        free(rayd_stdout_wait_line(&fourth, "\n", 0.05));
    }
    /* ...and the live node logs the newcomer, with its URL, and lists it alive. */
    json_t *joined = wait_log_event(watcher, "node joined", tag);
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
    assert_int_equal(rayd_stop_signal(&fourth, SIGKILL), 128 + SIGKILL);
    json_t *left = wait_log_event(watcher, "node left", tag);
    assert_string_equal(json_str(left, "level"), "warn");
    assert_non_null(json_str(left, "url"));
    assert_non_null(json_str(left, "detail"));
    json_decref(left);
    /* Still listed, as dead: the dashboard's Nodes table shows it so. */
    assert_false(listed_alive(watcher, tag, &listed));
    assert_true(listed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_joined_and_left),
    };
    return cmocka_run_group_tests_name("cluster/observe", tests, group_setup, NULL);
}
