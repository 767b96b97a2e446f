/* Cluster tests of listings: GET /v1/objects and GET /v1/tasks through any node (and
 * through nginx) merge every live node's records behind one cursor, each record exactly
 * once however small the pages; ?node=<tag> lists one node only, through any node; copies
 * a node keeps of other nodes' objects are never listed; a cursor that is not one a listing
 * gave, or an unknown node, is refused. */
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
#include "tests/api/support/tasks_util.h"
#include "tests/cluster/cluster_env.h"

#define PER_NODE 4

static cluster_env g;

static int group_setup(void **state)
{
    return cluster_env_load(&g);
}

/* Every id a listing gives, page by page through `via` (limit per page), as a JSON array
 * of the records (new reference). Fails the test on a repeated id or a cursor loop. */
static json_t *list_all(const rayd_server *via, const char *path, const char *key,
                        const char *id_key, const char *extra, int limit)
{
    json_t *all = json_array(), *seen = json_object();
    char cursor[2048] = "";
    for (int pages = 0;; pages++) {
        if (pages > 10000)
            fail_msg("%s: no end after 10000 pages", path);
        char url[4096];
        snprintf(url, sizeof(url), "%s?limit=%d%s%s%s", path, limit, extra,
                 cursor[0] ? "&cursor=" : "", cursor);
        http_resp *r = http_get(via, url);
        assert_status(r, 200);
        json_t *items = json_member(r->json, key);
        assert_true(json_is_array(items));
        if (json_array_size(items) > (size_t)limit)
            fail_msg("%s: a page of %zu with limit %d", url, json_array_size(items), limit);
        size_t i;
        json_t *item;
        json_array_foreach(items, i, item)
        {
            const char *id = json_str(item, id_key);
            if (json_object_get(seen, id))
                fail_msg("%s via %s: %s listed twice (page %d: %s)", path, via->base_url, id,
                         pages, url);
            json_object_set_new(seen, id, json_true());
            json_array_append(all, item);
        }
        json_t *next = json_member(r->json, "next_cursor");
        if (json_is_null(next)) {
            http_resp_free(r);
            break;
        }
        assert_true(json_is_string(next));
        const char *n = json_string_value(next);
        assert_true(strlen(n) < sizeof(cursor));
        for (const char *p = n; *p; p++) /* usable in a URL as it is */
            if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= 'a' && *p <= 'z') || *p == '-' || *p == '_'))
                fail_msg("cursor %s needs escaping", n);
        snprintf(cursor, sizeof(cursor), "%s", n);
        http_resp_free(r);
    }
    json_decref(seen);
    return all;
}

static bool has_id(const json_t *list, const char *id_key, const char *id)
{
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        if (strcmp(json_str(item, id_key), id) == 0)
            return true;
    }
    return false;
}

static void test_objects_merged(void **state)
{
    char refs[CLUSTER_NODES][PER_NODE][65];
    for (int i = 0; i < CLUSTER_NODES; i++)
        for (int k = 0; k < PER_NODE; k++) {
            char body[32];
            int len = snprintf(body, sizeof(body), "listed %d.%d", i, k);
            put_object(&g.node[i], "text/plain", body, (size_t)len, refs[i][k]);
        }
    /* A copy on every node of every other node's first object: copies are never listed. */
    for (int i = 0; i < CLUSTER_NODES; i++)
        for (int j = 0; j < CLUSTER_NODES; j++) {
            char path[128];
            snprintf(path, sizeof(path), "/v1/objects/%.64s", refs[i][0]);
            http_resp *r = http_get(&g.node[j], path);
            assert_status(r, 200);
            http_resp_free(r);
        }

    /* Each node's own listing, then the merged one through every node and nginx, with
     * pages of 1, 3 and 1000. */
    size_t own_total = 0;
    json_t *own[CLUSTER_NODES];
    for (int i = 0; i < CLUSTER_NODES; i++) {
        char extra[64];
        snprintf(extra, sizeof(extra), "&node=%s", g.tag[i]);
        /* ?node= through another node: relayed to that node. */
        own[i] = list_all(&g.node[(i + 1) % CLUSTER_NODES], "/v1/objects", "objects", "ref",
                          extra, 2);
        size_t k;
        json_t *item;
        json_array_foreach(own[i], k, item)
        {
            char tag[16];
            cluster_ref_tag(json_str(item, "ref"), tag);
            if (strcmp(tag, g.tag[i]) != 0)
                fail_msg("?node=%s listed %s", g.tag[i], json_str(item, "ref"));
        }
        for (int k2 = 0; k2 < PER_NODE; k2++)
            assert_true(has_id(own[i], "ref", refs[i][k2]));
        own_total += json_array_size(own[i]);
    }
    const rayd_server *vias[] = {&g.node[0], &g.node[1], &g.node[2], &g.lb};
    const int limits[] = {1, 3, 1000};
    for (size_t v = 0; v < sizeof(vias) / sizeof(vias[0]); v++)
        for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++) {
            json_t *all = list_all(vias[v], "/v1/objects", "objects", "ref", "", limits[l]);
            if (json_array_size(all) != own_total)
                fail_msg("merged listing through %s (limit %d): %zu objects, the nodes' own "
                         "listings %zu",
                         vias[v]->base_url, limits[l], json_array_size(all), own_total);
            for (int i = 0; i < CLUSTER_NODES; i++)
                for (int k = 0; k < PER_NODE; k++)
                    assert_true(has_id(all, "ref", refs[i][k]));
            json_decref(all);
        }
    for (int i = 0; i < CLUSTER_NODES; i++)
        json_decref(own[i]);

    /* A filter holds across nodes. */
    json_t *ready = list_all(&g.lb, "/v1/objects", "objects", "ref", "&state=ready", 2);
    size_t k;
    json_t *item;
    json_array_foreach(ready, k, item)
    {
        assert_string_equal(json_str(item, "state"), "ready");
    }
    assert_true(has_id(ready, "ref", refs[2][3]));
    json_decref(ready);
}

static void test_tasks_merged(void **state)
{
    char ids[CLUSTER_NODES][PER_NODE][TK_ID_SIZE];
    for (int i = 0; i < CLUSTER_NODES; i++)
        for (int k = 0; k < PER_NODE; k++) {
            char ref[TK_ID_SIZE];
            /* owned by node i, or by another if node i was busy and spilled it back */
            tk_submitf(ids[i][k], ref, &g.node[i], "{\"function\":\"add\",\"args\":[%d,%d]}", i,
                       k);
        }
    for (int limit = 1; limit <= 5; limit += 4) {
        json_t *all = list_all(&g.lb, "/v1/tasks", "tasks", "task_id", "&function=add", limit);
        for (int i = 0; i < CLUSTER_NODES; i++)
            for (int k = 0; k < PER_NODE; k++)
                if (!has_id(all, "task_id", ids[i][k]))
                    fail_msg("task %s (node %s) missing from the merged listing", ids[i][k],
                             g.tag[i]);
        size_t n;
        json_t *item;
        json_array_foreach(all, n, item)
        {
            assert_string_equal(json_str(item, "function"), "add");
        }
        json_decref(all);
    }
    char extra[64];
    snprintf(extra, sizeof(extra), "&node=%s", g.tag[1]);
    json_t *one = list_all(&g.node[0], "/v1/tasks", "tasks", "task_id", extra, 3);
    for (int i = 0; i < CLUSTER_NODES; i++)
        for (int k = 0; k < PER_NODE; k++) {
            char tag[16];
            cluster_ref_tag(ids[i][k], tag);
            bool on_node_1 = strcmp(tag, g.tag[1]) == 0;
            if (has_id(one, "task_id", ids[i][k]) != on_node_1)
                fail_msg("task %s (owner %s) %s the listing of node %s", ids[i][k], tag,
                         on_node_1 ? "missing from" : "in", g.tag[1]);
        }
    json_decref(one);
}

static void test_bad_cursor_and_node(void **state)
{
    static const char *const bad[] = {"12", "x", "1-", "1-x_1-x", "-5", "1-5_", "1-5_2",
                                      "1-99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "/v1/objects?cursor=%s", bad[i]);
        http_resp *r = http_get(&g.node[0], path);
        assert_problem(r, 400, "BadRequest");
        http_resp_free(r);
    }
    http_resp *r = http_get(&g.node[0], "/v1/tasks?node=zzzzz");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    r = http_get(&g.node[0], "/v1/objects?node=not-a-tag");
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
    r = http_get(&g.node[0], "/v1/objects?limit=0");
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_objects_merged),
        cmocka_unit_test(test_tasks_merged),
        cmocka_unit_test(test_bad_cursor_and_node),
    };
    return cmocka_run_group_tests_name("cluster/listing", tests, group_setup, NULL);
}
