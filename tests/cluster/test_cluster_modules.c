/* Cluster tests of C modules (issue 12, part 4): modules stay per node, so a fourth rayd
 * started here with --module text.so (the example module) is the only node that has it.
 * Its entry in another node's /v1/status lists the module with its functions and class; a
 * task for text.upper, or a text.Buffer actor, through a node without the module answers 409
 * ModuleNotLoaded naming the function, the module and the fourth node (not 500, not the
 * plain 404), through nginx too; the same through the fourth node works; a name no node has
 * stays a plain 404, and so does text.upper once the fourth node has left. Spillback
 * from the fourth node (one worker, --spillback-queued 1) keeps the module's work there.
 *
 * Runs after the tests that count nodes or read the nodes' logs (run.sh), and tolerates a
 * node test_cluster_failure killed. The fourth node leaves with SIGTERM (its record is
 * removed at once), or is killed at teardown if a check failed first. */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <libgen.h>
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
static int g_live;          /* g.node[0..g_live) answer */
static pid_t g_fourth = -1; /* killed at teardown if a check failed first */
static rayd_server g_mod;   /* the fourth node, with the module */
static char g_mod_tag[16];
static char g_text_so[4096];

static void pause_briefly(void)
{
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static long get_status(const rayd_server *s, const char *path)
{
    http_resp *r = http_get(s, path);
    long status = r->status;
    http_resp_free(r);
    return status;
}

/* The fourth rayd, with --module text.so, stdout in a file next to the nodes' logs. */
static int start_fourth(void)
{
    const char *args[] = {"--drain-timeout", "5s", "--module", g_text_so, "--workers", "1",
                          "--spillback-queued", "1", NULL};
    cluster_env log_env;
    pid_t pid = cluster_start_node(&g, "rayd-modules.log", args, &g_mod, &log_env);
    if (pid < 0)
        return -1;
    g_fourth = pid;
    double deadline = now_s() + 10;
    /* Joined: it has its tag, and the others have read its record once. */
    while (get_status(&g_mod, "/readyz") != 200) {
        if (now_s() > deadline) {
            fprintf(stderr, "the fourth rayd never joined the cluster\n");
            return -1;
        }
        pause_briefly();
    }
    http_resp *st = http_get(&g_mod, "/v1/status");
    const char *tag = json_string_value(json_object_get(json_object_get(st->json, "cluster"),
                                                        "node"));
    snprintf(g_mod_tag, sizeof(g_mod_tag), "%s", tag ? tag : "");
    http_resp_free(st);
    return g_mod_tag[0] ? 0 : -1;
}

static int group_setup(void **state)
{
    if (cluster_env_load_alive(&g) != 0) /* test_cluster_failure killed a node before this */
        return -1;
    for (int i = 0; i < CLUSTER_NODES; i++)
        if (g.tag[i][0] != '\0') {
            g.node[g_live] = g.node[i];
            memmove(g.tag[g_live++], g.tag[i], sizeof(g.tag[i]));
        }
    if (g_live < 1) {
        fprintf(stderr, "cluster tests: the module tests need a live node\n");
        return -1;
    }
    char bin[4096];
    snprintf(bin, sizeof(bin), "%s", rayd_bin());
    snprintf(g_text_so, sizeof(g_text_so), "%s/examples/modules/text.so", dirname(bin));
    if (access(g_text_so, R_OK) != 0) {
        fprintf(stderr, "%s is missing: build it with make examples\n", g_text_so);
        return -1;
    }
    return start_fourth();
}

static int group_teardown(void **state)
{
    if (g_fourth > 0) {
        kill(g_fourth, SIGKILL);
        waitpid(g_fourth, NULL, 0);
    }
    return 0;
}

/* The fourth node's entry in s's /v1/status once it lists the node alive with its modules
 * (new reference), waiting for the next scan that reads them; fails after 10 s. */
static json_t *fourth_entry(const rayd_server *s)
{
    double deadline = now_s() + 10;
    for (;;) {
        http_resp *st = cluster_status(s);
        json_t *node = cluster_status_node(st, g_mod_tag);
        json_t *modules = json_object_get(node, "modules");
        if (node && json_is_true(json_object_get(node, "alive")) && json_is_array(modules)) {
            json_incref(node);
            http_resp_free(st);
            return node;
        }
        http_resp_free(st);
        if (now_s() > deadline)
            fail_msg("%s's /v1/status never listed node %s alive with its modules",
                     s->base_url, g_mod_tag);
        pause_briefly();
    }
}

static bool has_string(const json_t *list, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (json_string_value(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

static void test_status_lists_each_nodes_modules(void **state)
{
    for (int i = 0; i < g_live; i++) {
        json_t *node = fourth_entry(&g.node[i]);
        json_t *modules = json_object_get(node, "modules");
        assert_int_equal(json_array_size(modules), 1);
        json_t *m = json_array_get(modules, 0);
        assert_string_equal(json_str(m, "name"), "text.so");
        json_t *functions = json_object_get(m, "functions");
        assert_int_equal(json_array_size(functions), 3);
        assert_true(has_string(functions, "text.upper"));
        assert_true(has_string(functions, "text.count"));
        assert_true(has_string(json_object_get(m, "classes"), "text.Buffer"));
        assert_null(json_object_get(m, "path")); /* a node's files are its own */
        json_decref(node);

        /* the node itself has none: an empty list, in its entry and at the top */
        http_resp *st = cluster_status(&g.node[i]);
        json_t *self = cluster_status_node(st, g.tag[i]);
        assert_non_null(self);
        assert_true(json_is_true(json_object_get(self, "self")));
        assert_true(json_is_array(json_object_get(self, "modules")));
        assert_int_equal(json_array_size(json_object_get(self, "modules")), 0);
        assert_int_equal(json_array_size(json_object_get(st->json, "modules")), 0);
        http_resp_free(st);
    }
    /* the fourth node lists its own, with the path it loaded it from */
    http_resp *st = cluster_status(&g_mod);
    json_t *own = json_array_get(json_object_get(st->json, "modules"), 0);
    assert_string_equal(json_str(own, "name"), "text.so");
    assert_string_equal(json_str(own, "path"), g_text_so);
    json_t *self = cluster_status_node(st, g_mod_tag);
    assert_string_equal(json_str(json_array_get(json_object_get(self, "modules"), 0), "name"),
                        "text.so");
    http_resp_free(st);
}

/* A 409 ModuleNotLoaded that names what, the module and the fourth node. */
static void assert_module_missing(http_resp *r, const char *member, const char *name)
{
    if (r->status != 409)
        fail_msg("want 409 ModuleNotLoaded, got %ld %s", r->status, r->body);
    assert_string_equal(json_str(r->json, "type"), "/problems/ModuleNotLoaded");
    assert_string_equal(json_str(r->json, "title"), "ModuleNotLoaded");
    assert_string_equal(json_str(r->json, member), name);
    assert_string_equal(json_str(r->json, "module"), "text.so");
    json_t *nodes = json_object_get(r->json, "nodes");
    assert_int_equal(json_array_size(nodes), 1);
    assert_string_equal(json_str(json_array_get(nodes, 0), "node"), g_mod_tag);
    assert_string_equal(json_str(json_array_get(nodes, 0), "url"), g_mod.base_url);
    const char *detail = json_str(r->json, "detail");
    assert_non_null(strstr(detail, name));
    assert_non_null(strstr(detail, "text.so"));
    assert_non_null(strstr(detail, g_mod.base_url));
}

static http_resp *submit(const rayd_server *s, const char *function)
{
    char body[200];
    snprintf(body, sizeof(body), "{\"function\":\"%s\",\"args\":[\"the cat\"]}", function);
    const char *h[] = {"Content-Type: application/json", "Prefer: wait=20", NULL};
    return http_request(s, "POST", "/v1/tasks", h, body, strlen(body));
}

static void test_task_without_the_module_answers_which_node_has_it(void **state)
{
    for (int i = 0; i < g_live; i++) {
        json_decref(fourth_entry(&g.node[i])); /* this node has read the fourth's modules */
        http_resp *r = submit(&g.node[i], "text.upper");
        assert_module_missing(r, "function", "text.upper");
        assert_string_equal(json_str(r->json, "node"), g.tag[i]); /* the node that answered */
        http_resp_free(r);
        /* in a batch, the task at fault is named */
        r = http_post_json(&g.node[i], "/v1/tasks/batch",
                           "{\"tasks\":[{\"function\":\"echo\",\"args\":[1]},"
                           "{\"function\":\"text.count\",\"args\":[\"a\"]}]}");
        assert_module_missing(r, "function", "text.count");
        assert_non_null(strstr(json_str(r->json, "detail"), "tasks[1]: "));
        http_resp_free(r);
    }
    /* through nginx: none of the three has it */
    http_resp *r = submit(&g.lb, "text.words");
    assert_module_missing(r, "function", "text.words");
    http_resp_free(r);
    /* a function no node has is the plain 404 */
    r = submit(&g.node[0], "text.nothing");
    assert_status(r, 404);
    assert_string_equal(json_str(r->json, "title"), "NotFound");
    http_resp_free(r);
    /* through the node that has it, it runs */
    r = submit(&g_mod, "text.upper");
    assert_status(r, 200);
    assert_string_equal(json_string_value(r->json), "THE CAT");
    http_resp_free(r);
}

static void test_actor_without_the_module_answers_which_node_has_it(void **state)
{
    json_decref(fourth_entry(&g.node[0]));
    const char *bodies[] = {"{\"class\":\"text.Buffer\"}",
                            "{\"class\":\"text.Buffer\",\"name\":\"modules-test-buffer\"}"};
    for (size_t k = 0; k < 2; k++) {
        http_resp *r = http_post_json(&g.node[0], "/v1/actors", bodies[k]);
        assert_module_missing(r, "class", "text.Buffer");
        http_resp_free(r);
    }
    http_resp *r = http_post_json(&g.node[0], "/v1/actors", "{\"class\":\"text.Nothing\"}");
    assert_status(r, 404);
    assert_string_equal(json_str(r->json, "title"), "NotFound");
    http_resp_free(r);
    /* made through the fourth node, it answers through any node (calls are relayed) */
    r = http_post_json(&g_mod, "/v1/actors", bodies[1]);
    assert_status(r, 201);
    assert_string_equal(json_str(r->json, "class"), "text.Buffer");
    char path[200];
    snprintf(path, sizeof(path), "/v1/actors/%s/methods/append", json_str(r->json, "actor_id"));
    http_resp_free(r);
    const char *h[] = {"Content-Type: application/json", "Prefer: wait=20", NULL};
    const char *call = "{\"args\":[\"abc\"]}";
    r = http_request(&g.node[0], "POST", path, h, call, strlen(call));
    if (r->status != 200)
        fail_msg("a call through node %s: %ld %s", g.node[0].base_url, r->status, r->body);
    http_resp_free(r);
}

static long scheduler_figure(const rayd_server *s, const char *name)
{
    http_resp *st = cluster_status(s);
    long v = (long)json_integer_value(json_object_get(json_object_get(st->json, "scheduler"), name));
    http_resp_free(st);
    return v;
}

/* The fourth node runs with one worker and --spillback-queued 1: with its worker busy and
 * two jobs queued, a built-in task submitted there goes to another node, but a task or an
 * actor of its module stays there (no other node has the module; an actor sent to one
 * would have answered 409). */
static void test_spillback_keeps_module_work_where_the_module_is(void **state)
{
    for (int i = 0; i < g_live; i++)
        json_decref(fourth_entry(&g.node[i]));
    http_resp *r = http_post_json(&g_mod, "/v1/tasks/batch",
                                  "{\"tasks\":[{\"function\":\"sleep\",\"args\":[120]},"
                                  "{\"function\":\"sleep\",\"args\":[120]},"
                                  "{\"function\":\"sleep\",\"args\":[120]}]}");
    assert_status(r, 202);
    json_t *sleeps = json_deep_copy(json_object_get(r->json, "tasks"));
    http_resp_free(r);
    double deadline = now_s() + 10;
    while (scheduler_figure(&g_mod, "queued") < 2) {
        if (now_s() > deadline)
            fail_msg("the fourth node never had 2 jobs queued");
        pause_briefly();
    }
    char tag[16];
    /* a built-in task spills (so spillback is on, and a node has room) */
    const char *h[] = {"Content-Type: application/json", NULL};
    const char *add = "{\"function\":\"add\",\"args\":[1,2]}";
    r = http_request(&g_mod, "POST", "/v1/tasks", h, add, strlen(add));
    assert_status(r, 202);
    cluster_ref_tag(json_str(r->json, "task_id"), tag);
    if (strcmp(tag, g_mod_tag) == 0)
        fail_msg("a built-in task stayed on the busy fourth node: no spillback to compare with");
    http_resp_free(r);
    /* the module's task stays */
    const char *upper = "{\"function\":\"text.upper\",\"args\":[\"x\"]}";
    r = http_request(&g_mod, "POST", "/v1/tasks", h, upper, strlen(upper));
    assert_status(r, 202);
    cluster_ref_tag(json_str(r->json, "task_id"), tag);
    assert_string_equal(tag, g_mod_tag);
    http_resp_free(r);
    /* and so does the module's actor */
    r = http_post_json(&g_mod, "/v1/actors", "{\"class\":\"text.Buffer\"}");
    if (r->status != 201)
        fail_msg("a text.Buffer made through the busy fourth node: %ld %s", r->status, r->body);
    cluster_ref_tag(json_str(r->json, "actor_id"), tag);
    assert_string_equal(tag, g_mod_tag);
    http_resp_free(r);

    size_t i;
    json_t *t;
    json_array_foreach(sleeps, i, t)
    {
        char path[160];
        snprintf(path, sizeof(path), "/v1/tasks/%s/cancel", json_str(t, "task_id"));
        r = http_request(&g_mod, "POST", path, NULL, NULL, 0);
        assert_true(r->status == 200 || r->status == 202);
        http_resp_free(r);
    }
    json_decref(sleeps);
}

/* Once the fourth node has left, no node has the module: the plain 404 again. */
static void test_plain_404_once_no_node_has_it(void **state)
{
    kill(g_fourth, SIGTERM);
    int status = -1;
    waitpid(g_fourth, &status, 0);
    g_fourth = -1;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    double deadline = now_s() + 10;
    for (;;) { /* its record is gone at once; each node sees it at its next scan */
        http_resp *st = cluster_status(&g.node[0]);
        json_t *node = cluster_status_node(st, g_mod_tag);
        bool gone = !node || !json_is_true(json_object_get(node, "alive"));
        http_resp_free(st);
        if (gone)
            break;
        if (now_s() > deadline)
            fail_msg("node %s is still listed alive after it stopped", g_mod_tag);
        pause_briefly();
    }
    http_resp *r = submit(&g.node[0], "text.upper");
    assert_status(r, 404);
    assert_string_equal(json_str(r->json, "title"), "NotFound");
    http_resp_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_lists_each_nodes_modules),
        cmocka_unit_test(test_task_without_the_module_answers_which_node_has_it),
        cmocka_unit_test(test_actor_without_the_module_answers_which_node_has_it),
        cmocka_unit_test(test_spillback_keeps_module_work_where_the_module_is),
        cmocka_unit_test(test_plain_404_once_no_node_has_it),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
