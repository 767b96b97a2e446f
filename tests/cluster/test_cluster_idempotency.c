/* Cluster tests of Idempotency-Key across nodes (issue 12, part 5): the same key sent
 * through three nodes runs the work once and the retries replay the first answer; while the
 * first request runs, a retry through another node is 409 (Retry-After), another body 422;
 * once answered, the key replays through every node. Runs are counted with the nodes' own
 * tasks.submitted counters, summed. */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "tests/api/support/harness.h"
#include "tests/cluster/cluster_env.h"

static cluster_env g;

static int group_setup(void **state)
{
    return cluster_env_load(&g);
}

static void make_key(char *out, size_t n, const char *what)
{
    static unsigned seq;
    snprintf(out, n, "%s-%d-%u-%.0f", what, (int)getpid(), ++seq, now_s() * 1e6);
}

/* Tasks submitted on all three nodes together. */
static long long submitted(void)
{
    long long sum = 0;
    for (int i = 0; i < CLUSTER_NODES; i++) {
        http_resp *st = cluster_status(&g.node[i]);
        sum += json_int(json_member(st->json, "tasks"), "submitted");
        http_resp_free(st);
    }
    return sum;
}

static http_resp *post_key(const rayd_server *s, const char *key, const char *prefer,
                           const char *body)
{
    char kh[300];
    snprintf(kh, sizeof kh, "Idempotency-Key: %s", key);
    const char *h[] = {kh, "Content-Type: application/json", prefer, NULL};
    return http_request(s, "POST", "/v1/tasks", h, body, strlen(body));
}

static bool replayed(const http_resp *r)
{
    const char *v = http_header_get(r, "Idempotent-Replayed");
    return v && strcasecmp(v, "true") == 0;
}

static void assert_same_answer(const http_resp *a, const http_resp *b)
{
    assert_int_equal(a->status, b->status);
    if (a->body_len != b->body_len || memcmp(a->body, b->body, a->body_len) != 0)
        fail_msg("replayed body %s, first %s", b->body, a->body);
    const char *ca = http_header_get(a, "Content-Type"), *cb = http_header_get(b, "Content-Type");
    if (!ca || !cb || strcmp(ca, cb) != 0)
        fail_msg("replayed Content-Type %s, first %s", cb ? cb : "-", ca ? ca : "-");
    const char *la = http_header_get(a, "Location"), *lb = http_header_get(b, "Location");
    if ((la || lb) && (!la || !lb || strcmp(la, lb) != 0))
        fail_msg("replayed Location %s, first %s", lb ? lb : "-", la ? la : "-");
}

static void test_task_runs_once_through_three_nodes(void **state)
{
    char key[128];
    make_key(key, sizeof key, "once");
    long long before = submitted();
    static const char body[] = "{\"function\":\"echo\",\"args\":[\"once\"]}";
    http_resp *first = post_key(&g.node[0], key, NULL, body);
    assert_status(first, 202);
    if (replayed(first))
        fail_msg("the first answer is marked replayed");
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < CLUSTER_NODES; i++) {
            http_resp *r = post_key(&g.node[i], key, NULL, body);
            if (!replayed(r))
                fail_msg("retry %d through node %d: %ld %s, not replayed", round, i, r->status,
                         r->body);
            assert_same_answer(first, r);
            http_resp_free(r);
        }
    /* through nginx as well */
    for (int i = 0; i < 3; i++) {
        http_resp *r = post_key(&g.lb, key, NULL, body);
        if (!replayed(r))
            fail_msg("retry through nginx: %ld %s, not replayed", r->status, r->body);
        assert_same_answer(first, r);
        http_resp_free(r);
    }
    http_resp_free(first);
    assert_int_equal(submitted(), before + 1);
}

static void test_prefer_wait_answer_replayed_elsewhere(void **state)
{
    char key[128];
    make_key(key, sizeof key, "wait");
    long long before = submitted();
    static const char body[] = "{\"function\":\"echo\",\"args\":[{\"x\":[1,2,3]}]}";
    http_resp *first = post_key(&g.node[1], key, "Prefer: wait=10", body);
    assert_status(first, 200);
    for (int i = 0; i < CLUSTER_NODES; i++) {
        http_resp *r = post_key(&g.node[i], key, "Prefer: wait=10", body);
        if (!replayed(r))
            fail_msg("retry through node %d: %ld %s, not replayed", i, r->status, r->body);
        assert_same_answer(first, r);
        http_resp_free(r);
    }
    http_resp_free(first);
    assert_int_equal(submitted(), before + 1);
}

typedef struct bg_post {
    const rayd_server *s;
    const char *key, *body;
    http_resp *r;
    pthread_t th;
} bg_post;

static void *bg_post_main(void *arg)
{
    bg_post *p = arg;
    char kh[300];
    snprintf(kh, sizeof kh, "Idempotency-Key: %s", p->key);
    const char *h[] = {kh, "Content-Type: application/json", "Prefer: wait=30", NULL};
    http_opts o = {.method = "POST",
                   .path = "/v1/tasks",
                   .headers = h,
                   .body = p->body,
                   .body_len = strlen(p->body),
                   .has_body = true,
                   .soft = true,
                   .timeout_ms = 40000};
    p->r = http_request_opts(p->s, &o);
    return NULL;
}

/* The id of the running sleep task node 0 holds (waits for it to run). */
static void wait_sleep_task(char *out, size_t size)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/tasks?function=sleep&state=RUNNING&node=%s", g.tag[0]);
    for (double deadline = now_s() + 10;; sleep_s(0.01)) {
        http_resp *r = http_get(&g.node[0], path);
        json_t *t = json_array_get(json_object_get(r->json, "tasks"), 0);
        if (t) {
            snprintf(out, size, "%s", json_str(t, "task_id"));
            http_resp_free(r);
            return;
        }
        http_resp_free(r);
        if (now_s() > deadline)
            fail_msg("the first request's sleep task is not running");
    }
}

static void test_409_while_running_422_for_another_body(void **state)
{
    char key[128];
    make_key(key, sizeof key, "busy");
    long long before = submitted();
    /* the first request stays in progress until the test cancels its task: no clock */
    static const char body[] = "{\"function\":\"sleep\",\"args\":[600]}";
    static bg_post p;
    p = (bg_post){.s = &g.node[0], .key = key, .body = body};
    assert_int_equal(pthread_create(&p.th, NULL, bg_post_main, &p), 0);
    char task[128];
    wait_sleep_task(task, sizeof task);
    for (int i = 1; i < CLUSTER_NODES; i++) {
        http_resp *r = post_key(&g.node[i], key, "Prefer: wait=3", body);
        assert_problem(r, 409, "Conflict");
        if (replayed(r))
            fail_msg("a 409 is marked replayed");
        if (!http_header_get(r, "Retry-After"))
            fail_msg("the 409 for a key in progress has no Retry-After");
        http_resp_free(r);
        r = post_key(&g.node[i], key, NULL, "{\"function\":\"sleep\",\"args\":[2]}");
        assert_problem(r, 422, "UnprocessableContent");
        http_resp_free(r);
    }
    char path[200];
    snprintf(path, sizeof path, "/v1/tasks/%s/cancel", task);
    http_resp *c = http_request(&g.node[2], "POST", path, NULL, NULL, 0);
    if (c->status != 202 && c->status != 409)
        fail_msg("cancel %s: %ld %s", task, c->status, c->body);
    http_resp_free(c);
    pthread_join(p.th, NULL);
    if (p.r->status != 424)
        fail_msg("the first request (Prefer: wait=30 on a cancelled sleep) got %ld %s %s",
                 p.r->status, p.r->error, p.r->body);
    /* answered: every node replays it; another body is still 422 */
    for (int i = 0; i < CLUSTER_NODES; i++) {
        http_resp *r = post_key(&g.node[i], key, "Prefer: wait=3", body);
        if (!replayed(r))
            fail_msg("after the answer, node %d: %ld %s, not replayed", i, r->status, r->body);
        assert_same_answer(p.r, r);
        http_resp_free(r);
        r = post_key(&g.node[i], key, NULL, "{\"function\":\"sleep\",\"args\":[2]}");
        assert_problem(r, 422, "UnprocessableContent");
        http_resp_free(r);
    }
    http_resp_free(p.r);
    assert_int_equal(submitted(), before + 1);
}

/* Concurrent first requests through three nodes: one runs, the others 409 or replay. */
static void test_concurrent_first_requests_run_once(void **state)
{
    char key[128];
    make_key(key, sizeof key, "race");
    long long before = submitted();
    static const char body[] = "{\"function\":\"echo\",\"args\":[\"race\"]}";
    static bg_post p[CLUSTER_NODES];
    for (int i = 0; i < CLUSTER_NODES; i++) {
        p[i] = (bg_post){.s = &g.node[i], .key = key, .body = body};
        assert_int_equal(pthread_create(&p[i].th, NULL, bg_post_main, &p[i]), 0);
    }
    int ran = 0;
    for (int i = 0; i < CLUSTER_NODES; i++) {
        pthread_join(p[i].th, NULL);
        if (p[i].r->status == 200 && !replayed(p[i].r))
            ran++;
        else if (p[i].r->status != 409 && !replayed(p[i].r))
            fail_msg("node %d: %ld %s", i, p[i].r->status, p[i].r->body);
        http_resp_free(p[i].r);
    }
    assert_int_equal(ran, 1);
    assert_int_equal(submitted(), before + 1);
}

/* An actor call relayed to its owner: the node that relays holds the key; retries through
 * every node replay, and the counter moved once. */
static void test_actor_call_through_non_owner_once(void **state)
{
    http_resp *c = http_post_json(&g.node[0], "/v1/actors", "{\"class\":\"Counter\"}");
    assert_status(c, 201);
    char id[80], path[200], key[128];
    snprintf(id, sizeof id, "%s", json_str(c->json, "actor_id"));
    http_resp_free(c);
    snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", id);
    make_key(key, sizeof key, "actor");
    char kh[300];
    snprintf(kh, sizeof kh, "Idempotency-Key: %s", key);
    const char *h[] = {kh, "Content-Type: application/json", "Prefer: wait=10", NULL};
    static const char body[] = "{\"args\":[1]}";
    http_resp *first = http_request(&g.node[1], "POST", path, h, body, strlen(body));
    assert_status(first, 200);
    assert_int_equal(atoi(first->body), 1);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < CLUSTER_NODES; i++) {
            http_resp *r = http_request(&g.node[i], "POST", path, h, body, strlen(body));
            if (!replayed(r))
                fail_msg("retry through node %d: %ld %s, not replayed", i, r->status, r->body);
            assert_same_answer(first, r);
            http_resp_free(r);
        }
    http_resp_free(first);
    snprintf(path, sizeof path, "/v1/actors/%s/methods/get", id);
    const char *hg[] = {"Content-Type: application/json", "Prefer: wait=10", NULL};
    http_resp *r = http_request(&g.node[2], "POST", path, hg, "{}", 2);
    assert_status(r, 200);
    assert_int_equal(atoi(r->body), 1);
    http_resp_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_runs_once_through_three_nodes),
        cmocka_unit_test(test_prefer_wait_answer_replayed_elsewhere),
        cmocka_unit_test(test_409_while_running_422_for_another_body),
        cmocka_unit_test(test_concurrent_first_requests_run_once),
        cmocka_unit_test(test_actor_call_through_non_owner_once),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
