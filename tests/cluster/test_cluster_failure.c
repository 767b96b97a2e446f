/* Cluster tests of a node's death (run after test_cluster_objects: it kills a node): after
 * kill -9 of one node, the others report it dead within 5 s, and its refs answer 410
 * ObjectLost saying the owner died on every other node, copies or not; the rest of the
 * cluster, and nginx in front of it, go on working. */
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

static void test_kill_9_owner(void **state)
{
    char copied[65], alone[65], survivor[65];
    put_object(&g.node[VICTIM], "text/plain", "copied elsewhere", 16, copied);
    put_object(&g.node[VICTIM], "text/plain", "only on its owner", 17, alone);
    put_object(&g.node[0], "text/plain", "survives", 8, survivor);
    char path[128];
    snprintf(path, sizeof(path), "/v1/objects/%s", copied);
    http_resp *r = http_get(&g.node[0], path); /* node 0 keeps a copy */
    assert_status(r, 200);
    http_resp_free(r);
    long long copies = cluster_store_stat(&g.node[0], "copies");
    assert_true(victim_alive(0) && victim_alive(1));

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
    /* The copy died with its owner. */
    assert_int_equal(cluster_store_stat(&g.node[0], "copies"), copies - 1);

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
            char tag[16];
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
    /* Still listed, as dead; the two others alive. */
    r = cluster_status(&g.node[0]);
    assert_int_equal(json_array_size(json_object_get(json_member(r->json, "cluster"), "nodes")),
                     CLUSTER_NODES);
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
