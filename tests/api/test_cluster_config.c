/* API tests of cluster mode that need no Redis: its settings (bad values exit 2, --help),
 * a node whose Redis is unreachable (it serves health and status, refuses /v1/ work with
 * 503 ClusterUnavailable, is not ready, and still stops cleanly), the cluster token, and a
 * node alone showing nothing of clusters. tests/cluster/ runs the real thing. */
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

/* Nothing listens on port 1 of loopback: connecting is refused at once. */
#define NO_REDIS "RAYD_CLUSTER=redis://127.0.0.1:1"

static void test_help_lists_cluster_flags(void **state)
{
    static const char *const args[] = {"--help", NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(rayd_run(args, NULL, 5.0, &out, &err), 0);
    const char *want[] = {"--cluster",       "RAYD_CLUSTER",          "--cluster-password-file",
                          "RAYD_CLUSTER_PASSWORD_FILE", "--advertise-url", "RAYD_ADVERTISE_URL",
                          "--cluster-token", "RAYD_CLUSTER_TOKEN"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(out, want[i]))
            fail_msg("--help does not mention %s", want[i]);
    free(out);
    free(err);
}

static void test_bad_cluster_settings_exit_2(void **state)
{
    static const struct {
        const char *env[3];
        const char *names;
    } cases[] = {
        {{"RAYD_CLUSTER=http://127.0.0.1:6379"}, "RAYD_CLUSTER"},
        {{"RAYD_CLUSTER=redis://127.0.0.1:0"}, "RAYD_CLUSTER"},
        {{"RAYD_CLUSTER=redis://:6379"}, "RAYD_CLUSTER"},
        {{"RAYD_CLUSTER=http://:hunter2@h:1"}, "RAYD_CLUSTER"}, /* no password echoed */
        {{"RAYD_CLUSTER=redis\n://h:1"}, "RAYD_CLUSTER"},      /* still one line */
        {{NO_REDIS, "RAYD_ADVERTISE_URL=ftp://here:1"}, "RAYD_ADVERTISE_URL"},
        {{NO_REDIS, "RAYD_CLUSTER_PASSWORD_FILE=/nonexistent/password"},
         "RAYD_CLUSTER_PASSWORD_FILE"},
    };
    static const char *const args[] = {"--bind", "127.0.0.1", "--port", "0", NULL};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = NULL, *err = NULL;
        int st = rayd_run(args, cases[i].env, 5.0, &out, &err);
        if (st != 2 || !strstr(err, cases[i].names) || strstr(err, "hunter2") ||
            strchr(err, '\n') != err + strlen(err) - 1)
            fail_msg("[%s %s] exited %d with stderr \"%s\": wanted 2 and one line naming %s",
                     cases[i].env[0], cases[i].env[1] ? cases[i].env[1] : "", st, err,
                     cases[i].names);
        free(out);
        free(err);
    }
}

/* Polls /v1/status until its cluster member says Redis could not be reached. */
static json_t *wait_redis_error(rayd_server *s)
{
    double until = now_s() + 5;
    while (now_s() < until) {
        http_resp *r = http_get(s, "/v1/status");
        assert_status(r, 200);
        json_t *cluster = json_member(r->json, "cluster");
        json_t *why = json_object_get(cluster, "redis_error");
        if (json_is_string(why) && strstr(json_string_value(why), "cannot connect")) {
            json_t *copy = json_deep_copy(cluster);
            http_resp_free(r);
            return copy;
        }
        http_resp_free(r);
        sleep_s(0.05);
    }
    fail_msg("/v1/status never reported the unreachable Redis");
    return NULL;
}

static void test_redis_unreachable(void **state)
{
    static const char *const env[] = {NO_REDIS, "RAYD_ADVERTISE_URL=http://node-a.test:1234",
                                      NULL};
    rayd_server s;
    assert_int_equal(rayd_start(&s, NULL, env), 0);
    json_t *cluster = wait_redis_error(&s);
    assert_false(json_is_true(json_object_get(cluster, "joined")));
    assert_true(json_is_null(json_object_get(cluster, "node")));
    assert_string_equal(json_str(cluster, "redis"), "unavailable");
    assert_string_equal(json_str(cluster, "url"), "http://node-a.test:1234");
    assert_int_equal(json_array_size(json_member(cluster, "nodes")), 0);
    json_decref(cluster);

    http_resp *r = http_get(&s, "/healthz");
    assert_status(r, 200);
    http_resp_free(r);
    r = http_get(&s, "/readyz");
    assert_problem(r, 503, "ClusterUnavailable");
    assert_non_null(http_header_get(r, "Retry-After"));
    http_resp_free(r);
    /* Without its tag the node can make no id and find no owner. */
    r = http_post_bytes(&s, "/v1/objects", "text/plain", "x", 1);
    assert_problem(r, 503, "ClusterUnavailable");
    assert_string_equal(http_header_get(r, "Retry-After"), "1");
    http_resp_free(r);
    r = http_get(&s, "/v1/objects/o1-aaaaaaaaaaaaaaaaaaaaaa");
    assert_problem(r, 503, "ClusterUnavailable");
    http_resp_free(r);
    r = http_post_json(&s, "/v1/tasks", "{\"function\":\"add\",\"args\":[1,2]}");
    assert_problem(r, 503, "ClusterUnavailable");
    http_resp_free(r);
    /* And it still stops at once on SIGTERM (the Redis thread is waiting to retry). */
    double t0 = now_s();
    assert_int_equal(rayd_stop(&s), 0);
    if (now_s() - t0 > 5)
        fail_msg("stopping took %.1f s", now_s() - t0);
}

/* The cluster token opens peer routes and every route the API token opens; the API token
 * does not open peer routes. */
static void test_cluster_token(void **state)
{
    static const char *const env[] = {NO_REDIS, "RAYD_API_TOKEN=api-secret",
                                      "RAYD_CLUSTER_TOKEN=peer-secret", NULL};
    rayd_server s;
    assert_int_equal(rayd_start(&s, NULL, env), 0);
    static const char *const api[] = {"Authorization: Bearer api-secret", NULL};
    static const char *const peer[] = {"Authorization: Bearer peer-secret", NULL};
    const char *copy = "/v1/cluster/copies/o1-aaaaaaaaaaaaaaaaaaaaaa";
    http_resp *r = http_request(&s, "DELETE", copy, api, NULL, 0);
    assert_problem(r, 401, "Unauthorized");
    http_resp_free(r);
    r = http_request(&s, "DELETE", copy, NULL, NULL, 0);
    assert_problem(r, 401, "Unauthorized");
    http_resp_free(r);
    r = http_request(&s, "DELETE", copy, peer, NULL, 0);
    assert_problem(r, 503, "ClusterUnavailable"); /* past auth: not joined yet */
    http_resp_free(r);
    r = http_request(&s, "GET", "/v1/status", peer, NULL, 0);
    assert_status(r, 200);
    http_resp_free(r);
    r = http_request(&s, "GET", "/v1/status", api, NULL, 0);
    assert_status(r, 200);
    http_resp_free(r);
    assert_int_equal(rayd_stop(&s), 0);
}

/* A node alone: no cluster in its status, 22-character ids, and the peer route is a 404. */
static void test_single_node_unchanged(void **state)
{
    rayd_server s;
    assert_int_equal(rayd_start(&s, NULL, NULL), 0);
    http_resp *r = http_get(&s, "/v1/status");
    assert_status(r, 200);
    assert_null(json_object_get(r->json, "cluster"));
    assert_null(json_object_get(json_member(r->json, "object_store"), "copies"));
    http_resp_free(r);
    char ref[65];
    put_object(&s, NULL, "alone", 5, ref);
    assert_int_equal(strlen(ref), 22);
    r = http_delete(&s, "/v1/cluster/copies/o1-aaaaaaaaaaaaaaaaaaaaaa");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    r = http_get(&s, "/readyz");
    assert_status(r, 200);
    http_resp_free(r);
    assert_int_equal(rayd_stop(&s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_lists_cluster_flags),
        cmocka_unit_test(test_bad_cluster_settings_exit_2),
        cmocka_unit_test(test_redis_unreachable),
        cmocka_unit_test(test_cluster_token),
        cmocka_unit_test(test_single_node_unchanged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
