/* Cluster tests of actors (issue 12, parts 1, 2 and 6): an actor lives on one node and is
 * reached through any node (calls, GET, kill, by-name), its calls answered in the order the
 * owner accepted them; names are global, decided in Redis (one id for concurrent
 * get_if_exists creations through three nodes, 409 without it, freed by a kill, 503 while
 * Redis does not answer); options.node places an actor; GET /v1/actors lists every node's
 * actors behind one cursor and ?node= one node. */
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
#include <time.h>

#include "tests/api/support/harness.h"
#include "tests/cluster/cluster_env.h"

static cluster_env g;
static char run_id[16]; /* makes this run's names its own */

static int group_setup(void **state)
{
    snprintf(run_id, sizeof(run_id), "%lx", (unsigned long)time(NULL) ^ (unsigned long)getpid());
    return cluster_env_load(&g);
}

/* Creates an actor through via with body; expects status; copies its id into id. */
static void create(const rayd_server *via, const char *body, long status, char id[65])
{
    http_resp *r = http_post_json(via, "/v1/actors", body);
    assert_status(r, status);
    snprintf(id, 65, "%s", json_str(r->json, "actor_id"));
    http_resp_free(r);
}

static int owner_index(const char *id)
{
    char tag[16];
    cluster_ref_tag(id, tag);
    for (int i = 0; i < CLUSTER_NODES; i++)
        if (strcmp(tag, g.tag[i]) == 0)
            return i;
    fail_msg("%s is owned by no node of the cluster (tag '%s')", id, tag);
    return -1;
}

/* POST a call with Prefer: wait through via; the answer (new). */
static http_resp *call_wait(const rayd_server *via, const char *id, const char *method,
                            const char *body)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/actors/%s/methods/%s", id, method);
    const char *headers[] = {"Content-Type: application/json", "Prefer: wait=30", NULL};
    return http_request(via, "POST", path, headers, body, strlen(body));
}

static void test_counter_in_order_through_lb(void **state)
{
    char id[65];
    create(&g.node[0], "{\"class\":\"Counter\"}", 201, id);
    assert_int_equal(owner_index(id), 0);
    /* Round-robin: two calls in three go through a node that does not own the actor. */
    for (int i = 1; i <= 300; i++) {
        http_resp *r = call_wait(&g.lb, id, "incr", "{\"args\":[1]}");
        assert_status(r, 200);
        if (atoi(r->body) != i)
            fail_msg("call %d answered %s: out of order", i, r->body);
        http_resp_free(r);
    }
    for (int via = 0; via < CLUSTER_NODES; via++) {
        http_resp *r = call_wait(&g.node[via], id, "get", "{}");
        assert_status(r, 200);
        assert_int_equal(atoi(r->body), 300);
        http_resp_free(r);
    }
    /* Without Prefer: the receipt's ref (the owner's) reads through any node. */
    char path[256];
    snprintf(path, sizeof(path), "/v1/actors/%s/methods/get", id);
    http_resp *r = http_post_json(&g.node[2], path, "{}");
    assert_status(r, 202);
    char ref[65];
    snprintf(ref, sizeof(ref), "%s", json_str(r->json, "ref"));
    http_resp_free(r);
    snprintf(path, sizeof(path), "/v1/objects/%s?timeout=10", ref);
    r = http_get(&g.node[1], path);
    assert_status(r, 200);
    assert_int_equal(atoi(r->body), 300);
    http_resp_free(r);
    /* GET through every node. */
    for (int via = 0; via < CLUSTER_NODES; via++) {
        snprintf(path, sizeof(path), "/v1/actors/%s", id);
        r = http_get(&g.node[via], path);
        assert_status(r, 200);
        assert_string_equal(json_str(r->json, "actor_id"), id);
        assert_int_equal(json_integer_value(json_member(r->json, "calls_done")), 304);
        http_resp_free(r);
    }
}

typedef struct async_create {
    pthread_t thread;
    int node;
    char body[256];
    http_resp *resp;
} async_create;

static void *async_create_run(void *arg)
{
    async_create *a = arg;
    http_opts o = {.method = "POST",
                   .path = "/v1/actors",
                   .headers = (const char *const[]){"Content-Type: application/json", NULL},
                   .body = a->body,
                   .body_len = strlen(a->body),
                   .has_body = true,
                   .timeout_ms = 30000,
                   .soft = true};
    a->resp = http_request_opts(&g.node[a->node], &o);
    return NULL;
}

static void test_get_if_exists_one_id(void **state)
{
    for (int round = 0; round < 5; round++) {
        char name[64];
        snprintf(name, sizeof(name), "single-%s-%d", run_id, round);
        async_create a[CLUSTER_NODES];
        for (int i = 0; i < CLUSTER_NODES; i++) {
            a[i].node = i;
            snprintf(a[i].body, sizeof(a[i].body),
                     "{\"class\":\"Counter\",\"name\":\"%s\",\"get_if_exists\":true}", name);
            assert_int_equal(pthread_create(&a[i].thread, NULL, async_create_run, &a[i]), 0);
        }
        int created = 0;
        char id[65] = "";
        for (int i = 0; i < CLUSTER_NODES; i++) {
            pthread_join(a[i].thread, NULL);
            http_resp *r = a[i].resp;
            if (r->status != 200 && r->status != 201)
                fail_msg("creation through node %d: %ld %s", i, r->status, r->body);
            created += r->status == 201;
            const char *got = json_str(r->json, "actor_id");
            if (!id[0])
                snprintf(id, sizeof(id), "%s", got);
            else if (strcmp(id, got) != 0)
                fail_msg("round %d: two actors for one name: %s and %s", round, id, got);
            http_resp_free(r);
        }
        assert_int_equal(created, 1);
        /* Without get_if_exists, through any node: 409. By name, through any node: it. */
        for (int via = 0; via < CLUSTER_NODES; via++) {
            char body[256], path[256];
            snprintf(body, sizeof(body), "{\"class\":\"Counter\",\"name\":\"%s\"}", name);
            http_resp *r = http_post_json(&g.node[via], "/v1/actors", body);
            assert_problem(r, 409, "Conflict");
            http_resp_free(r);
            snprintf(path, sizeof(path), "/v1/actors/by-name/%s", name);
            r = http_get(&g.node[via], path);
            assert_status(r, 200);
            assert_string_equal(json_str(r->json, "actor_id"), id);
            http_resp_free(r);
        }
    }
}

static void test_kill_elsewhere_frees_name(void **state)
{
    char name[64], body[256], path[256], id[65], again[65];
    snprintf(name, sizeof(name), "killed-%s", run_id);
    snprintf(body, sizeof(body),
             "{\"class\":\"Counter\",\"name\":\"%s\",\"options\":{\"node\":\"%s\"}}", name,
             g.tag[0]);
    create(&g.node[2], body, 201, id);
    assert_int_equal(owner_index(id), 0);

    snprintf(path, sizeof(path), "/v1/actors/%s", id);
    http_resp *r = http_delete(&g.node[1], path);
    assert_int_equal(r->status, 204);
    http_resp_free(r);
    r = call_wait(&g.node[2], id, "incr", "{}");
    assert_problem(r, 410, "ActorDied");
    http_resp_free(r);
    r = http_get(&g.node[2], path);
    assert_status(r, 200);
    assert_string_equal(json_str(r->json, "state"), "DEAD");
    http_resp_free(r);
    snprintf(path, sizeof(path), "/v1/actors/by-name/%s", name);
    for (int via = 0; via < CLUSTER_NODES; via++) {
        r = http_get(&g.node[via], path);
        assert_problem(r, 404, "NotFound");
        http_resp_free(r);
    }
    /* The name is free again: taken through another node, by an actor there. */
    snprintf(body, sizeof(body), "{\"class\":\"Counter\",\"name\":\"%s\"}", name);
    create(&g.node[1], body, 201, again);
    assert_string_not_equal(again, id);
    assert_int_equal(owner_index(again), 1);
    r = http_get(&g.node[0], path);
    assert_status(r, 200);
    assert_string_equal(json_str(r->json, "actor_id"), again);
    http_resp_free(r);
}

static void test_options_node(void **state)
{
    char body[256], id[65];
    for (int i = 0; i < CLUSTER_NODES; i++) {
        int via = (i + 1) % CLUSTER_NODES;
        snprintf(body, sizeof(body), "{\"class\":\"Counter\",\"args\":[%d],\"options\":"
                                     "{\"node\":\"%s\"}}", 10 * i, g.tag[i]);
        create(&g.node[via], body, 201, id);
        assert_int_equal(owner_index(id), i);
        for (int through = 0; through < CLUSTER_NODES; through++) {
            http_resp *r = call_wait(&g.node[through], id, "incr", "{}");
            assert_status(r, 200);
            assert_int_equal(atoi(r->body), 10 * i + through + 1);
            http_resp_free(r);
        }
    }
    http_resp *r = http_post_json(&g.node[0], "/v1/actors",
                                  "{\"class\":\"Counter\",\"options\":{\"node\":\"zzzzz9\"}}");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    r = http_post_json(&g.node[0], "/v1/actors",
                       "{\"class\":\"Counter\",\"options\":{\"node\":\"a-b\"}}");
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
    /* An unknown actor of a live node, and of an unknown node. */
    char path[256];
    snprintf(path, sizeof(path), "/v1/actors/a%s-0000000000000000000000", g.tag[1]);
    r = http_get(&g.node[0], path);
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    r = http_get(&g.node[0], "/v1/actors/azzzzz9-0000000000000000000000");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
}

/* Every actor id listed through via (limit per page, extra query), each exactly once. */
static json_t *list_ids(const rayd_server *via, const char *extra, int limit)
{
    json_t *ids = json_object();
    char cursor[2048] = "";
    for (int pages = 0; pages < 100000; pages++) {
        char url[4096];
        snprintf(url, sizeof(url), "/v1/actors?limit=%d%s%s%s", limit, extra,
                 cursor[0] ? "&cursor=" : "", cursor);
        http_resp *r = http_get(via, url);
        assert_status(r, 200);
        size_t i;
        json_t *item;
        json_array_foreach(json_member(r->json, "actors"), i, item)
        {
            const char *id = json_str(item, "actor_id");
            if (json_object_get(ids, id))
                fail_msg("%s listed twice", id);
            json_object_set_new(ids, id, json_true());
        }
        json_t *next = json_member(r->json, "next_cursor");
        if (json_is_null(next)) {
            http_resp_free(r);
            return ids;
        }
        snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        http_resp_free(r);
    }
    fail_msg("no end to the listing");
    return ids;
}

static void test_listing_across_nodes(void **state)
{
    char made[CLUSTER_NODES][2][65], body[256];
    for (int i = 0; i < CLUSTER_NODES; i++)
        for (int k = 0; k < 2; k++) {
            snprintf(body, sizeof(body), "{\"class\":\"KV\",\"options\":{\"node\":\"%s\"}}",
                     g.tag[i]);
            create(&g.node[(i + k) % CLUSTER_NODES], body, 201, made[i][k]);
        }
    json_t *all = list_ids(&g.lb, "", 1000);
    json_t *paged = list_ids(&g.lb, "&class=KV", 1);
    size_t total = 0;
    for (int i = 0; i < CLUSTER_NODES; i++) {
        char extra[64];
        snprintf(extra, sizeof(extra), "&node=%s", g.tag[i]);
        json_t *one = list_ids(&g.node[(i + 1) % CLUSTER_NODES], extra, 7);
        const char *id;
        json_t *v;
        json_object_foreach(one, id, v)
        {
            assert_int_equal(owner_index(id), i);
            assert_non_null(json_object_get(all, id));
        }
        total += json_object_size(one);
        for (int k = 0; k < 2; k++) {
            assert_non_null(json_object_get(one, made[i][k]));
            assert_non_null(json_object_get(paged, made[i][k]));
        }
        json_decref(one);
    }
    assert_int_equal(total, json_object_size(all));
    json_decref(all);
    json_decref(paged);
}

/* Sessions are per node: an actor a session owns is made on the session's node, named or
 * not, and dies with the session; options.node elsewhere is refused unless detached. */
static void test_session_actors_stay_on_the_session_node(void **state)
{
    http_resp *r = http_post_json(&g.node[1], "/v1/sessions", "{\"ttl\":30}");
    assert_status(r, 201);
    char sid[128], header[160], name[64], body[256], id[65], named[65];
    snprintf(sid, sizeof(sid), "%s", json_str(r->json, "session_id"));
    http_resp_free(r);
    snprintf(header, sizeof(header), "Rayd-Session: %s", sid);
    const char *headers[] = {"Content-Type: application/json", header, NULL};

    snprintf(body, sizeof(body), "{\"class\":\"Counter\",\"options\":{\"node\":\"%s\"}}",
             g.tag[2]);
    r = http_request(&g.node[1], "POST", "/v1/actors", headers, body, strlen(body));
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
    snprintf(body, sizeof(body),
             "{\"class\":\"Counter\",\"options\":{\"node\":\"%s\",\"lifetime\":\"detached\"}}",
             g.tag[2]);
    r = http_request(&g.node[1], "POST", "/v1/actors", headers, body, strlen(body));
    assert_status(r, 201);
    snprintf(id, sizeof(id), "%s", json_str(r->json, "actor_id"));
    http_resp_free(r);
    assert_int_equal(owner_index(id), 2);

    snprintf(name, sizeof(name), "session-%s", run_id);
    snprintf(body, sizeof(body), "{\"class\":\"Counter\",\"name\":\"%s\"}", name);
    r = http_request(&g.node[1], "POST", "/v1/actors", headers, body, strlen(body));
    assert_status(r, 201);
    snprintf(named, sizeof(named), "%s", json_str(r->json, "actor_id"));
    http_resp_free(r);
    assert_int_equal(owner_index(named), 1);

    /* The session ends: its named actor dies and its name is free; the detached one lives. */
    char path[256];
    snprintf(path, sizeof(path), "/v1/sessions/%s", sid);
    r = http_delete(&g.node[1], path);
    assert_true(r->status == 204 || r->status == 200);
    http_resp_free(r);
    snprintf(path, sizeof(path), "/v1/actors/%s", named);
    r = http_get(&g.node[0], path);
    assert_status(r, 200);
    assert_string_equal(json_str(r->json, "state"), "DEAD");
    http_resp_free(r);
    snprintf(path, sizeof(path), "/v1/actors/%s", id);
    r = http_get(&g.node[0], path);
    assert_status(r, 200);
    assert_string_not_equal(json_str(r->json, "state"), "DEAD");
    http_resp_free(r);
    /* Freed in Redis by the actor's death (a queued command): taken again through another
     * node once Redis has done it. */
    double until = now_s() + 10;
    for (;;) {
        r = http_post_json(&g.node[2], "/v1/actors", body);
        long status = r->status;
        http_resp_free(r);
        if (status == 201)
            break;
        assert_int_equal(status, 409);
        if (now_s() > until)
            fail_msg("the name of the session's actor was never freed");
        sleep_s(0.02);
    }
}

static bool redis_connected(int node)
{
    http_resp *s = cluster_status(&g.node[node]);
    bool up = strcmp(json_str(json_member(s->json, "cluster"), "redis"), "connected") == 0;
    http_resp_free(s);
    return up;
}

static void test_named_creation_503_while_redis_stopped(void **state)
{
    char body[256], id[65];
    snprintf(body, sizeof(body), "{\"class\":\"Counter\",\"name\":\"paused-%s\"}", run_id);
    assert_int_equal(kill(g.redis_pid, SIGSTOP), 0);
    http_resp *r = http_post_json(&g.node[1], "/v1/actors", body);
    bool ok = r->status == 503 && http_header_get(r, "Retry-After");
    char why[256] = "";
    if (!problem_ok(r, 503, "ClusterUnavailable", why, sizeof(why)))
        ok = false;
    http_resp_free(r);
    /* An actor without a name needs no Redis. */
    r = http_post_json(&g.node[1], "/v1/actors", "{\"class\":\"Counter\"}");
    long unnamed = r->status;
    http_resp_free(r);
    kill(g.redis_pid, SIGCONT);
    assert_true(ok);
    assert_int_equal(unnamed, 201);
    /* Once the node sees Redis again, the same creation works. */
    double until = now_s() + 10;
    while (!redis_connected(1) && now_s() < until)
        sleep_s(0.05);
    create(&g.node[1], body, 201, id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_in_order_through_lb),
        cmocka_unit_test(test_get_if_exists_one_id),
        cmocka_unit_test(test_kill_elsewhere_frees_name),
        cmocka_unit_test(test_options_node),
        cmocka_unit_test(test_listing_across_nodes),
        cmocka_unit_test(test_session_actors_stay_on_the_session_node),
        cmocka_unit_test(test_named_creation_503_while_redis_stopped),
    };
    return cmocka_run_group_tests_name("cluster/actors", tests, group_setup, NULL);
}
