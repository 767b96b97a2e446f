/* API tests of Idempotency-Key (IETF httpapi draft) on POST /v1/objects, /v1/tasks,
 * /v1/tasks/batch and actor calls: a retry with the same key and body gets the first answer
 * back (Idempotent-Replayed: true) and the work is done once; another body is 422; a key whose
 * first request is still being answered is 409; keys are scoped per path; a bad key is 400;
 * keys are forgotten after --idempotency-ttl; 429 and 5xx answers are not remembered. */
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
#include <strings.h>
#include <unistd.h>

#include "tests/api/support/harness.h"
#include "tests/api/support/tasks_util.h"

#define ID TK_ID_SIZE

/* Shared server: --workers 4. */
static rayd_server g_srv;
/* Per-test servers (ttl, limits); the teardown kills one a failed test left running. */
static rayd_server g_own;
/* ... with a short drain, so that a failed test's teardown (SIGTERM) is quick */
static const char *const g_drain_env[] = {"RAYD_DRAIN_TIMEOUT=2", NULL};

static int group_setup(void **state)
{
    static const char *const args[] = {"--workers", "4", NULL};
    return rayd_start(&g_srv, args, NULL);
}

static int group_teardown(void **state)
{
    return rayd_stop_clean(&g_srv);
}

/* A failed test leaves its server running: SIGTERM (it runs with a short drain timeout),
 * so that a clean shutdown is still checked (and its memory, under tests/valgrind). */
static int own_teardown(void **state)
{
    if (g_own.pid > 0)
        rayd_stop(&g_own);
    g_own.pid = 0;
    return 0;
}

/* Keys unique to this run, so that tests never see each other's. */
static void make_key(char *out, size_t n, const char *tag)
{
    static unsigned seq;
    snprintf(out, n, "%s-%d-%u-%.0f", tag, (int)getpid(), ++seq, now_s() * 1e6);
}

/* POST with an Idempotency-Key (NULL: none), a Content-Type and optional extra header. */
static http_resp *post_key(const rayd_server *s, const char *path, const char *key,
                           const char *content_type, const char *extra, const char *body)
{
    char kh[600], ct[200];
    const char *h[4] = {NULL, NULL, NULL, NULL};
    int n = 0;
    if (key) {
        snprintf(kh, sizeof kh, "Idempotency-Key: %s", key);
        h[n++] = kh;
    }
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
    h[n++] = ct;
    if (extra)
        h[n++] = extra;
    return http_request(s, "POST", path, h, body, strlen(body));
}

static http_resp *post_json_key(const rayd_server *s, const char *path, const char *key,
                                const char *body)
{
    return post_key(s, path, key, "application/json", NULL, body);
}

static bool replayed(const http_resp *r)
{
    const char *v = http_header_get(r, "Idempotent-Replayed");
    return v && strcasecmp(v, "true") == 0;
}

static void assert_replayed(const http_resp *r)
{
    if (!replayed(r))
        fail_msg("the retry (%ld) has no Idempotent-Replayed: true", r->status);
}

static void assert_not_replayed(const http_resp *r)
{
    if (http_header_get(r, "Idempotent-Replayed"))
        fail_msg("a first answer (%ld) carries Idempotent-Replayed: %s", r->status,
                 http_header_get(r, "Idempotent-Replayed"));
}

/* Same status, body and Content-Type, Location and X-Ray-Ref as the first answer. */
static void assert_same_answer(const http_resp *a, const http_resp *b)
{
    if (a->status != b->status)
        fail_msg("replayed status %ld, first %ld", b->status, a->status);
    if (a->body_len != b->body_len || memcmp(a->body, b->body, a->body_len) != 0)
        fail_msg("replayed body differs:\n first: %s\n retry: %s", a->body, b->body);
    static const char *const same[] = {"Content-Type", "Location", "X-Ray-Ref",
                                       "Preference-Applied", NULL};
    for (size_t i = 0; same[i]; i++) {
        const char *x = http_header_get(a, same[i]), *y = http_header_get(b, same[i]);
        if ((x == NULL) != (y == NULL) || (x && strcmp(x, y) != 0))
            fail_msg("%s: first '%s', replayed '%s'", same[i], x ? x : "(none)",
                     y ? y : "(none)");
    }
    /* every response has its own request id */
    const char *ra = http_header_get(a, "X-Request-Id"), *rb = http_header_get(b, "X-Request-Id");
    if (ra && rb && strcmp(ra, rb) == 0)
        fail_msg("the replay reused the first answer's X-Request-Id %s", ra);
}


/* A /v1/status figure (section.key) of s; run through a cluster's balancer
 * (tests/cluster/run.sh --api), of the cluster's nodes together, since the work counted may
 * have been done on any of them (issue 12 part 5: once in the whole cluster). */
static long long status_figure(const rayd_server *s, const char *section, const char *key)
{
    const char *nodes = getenv("RAYD_CLUSTER_NODES");
    if (!nodes || !getenv("RAYD_TEST_URL") || s != &g_srv) {
        json_t *st = tk_status(s);
        long long v = json_int(json_member(st, section), key);
        json_decref(st);
        return v;
    }
    long long sum = 0;
    char list[512];
    snprintf(list, sizeof list, "%s", nodes);
    char *save = NULL;
    for (char *url = strtok_r(list, " ", &save); url; url = strtok_r(NULL, " ", &save)) {
        rayd_server node = {.pid = -1};
        snprintf(node.base_url, sizeof node.base_url, "%s", url);
        json_t *st = tk_status(&node);
        sum += json_int(json_member(st, section), key);
        json_decref(st);
    }
    return sum;
}

static long long store_objects(const rayd_server *s)
{
    return status_figure(s, "object_store", "objects");
}

static void cancel_task(const rayd_server *s, const char *task_id)
{
    char path[160];
    snprintf(path, sizeof path, "/v1/tasks/%s/cancel", task_id);
    http_resp *r = http_request(s, "POST", path, NULL, NULL, 0);
    if (r->status != 202 && r->status != 409)
        fail_msg("cancel %s: %ld %s", task_id, r->status, r->body);
    http_resp_free(r);
}

/* ================================================================ objects */

static void test_objects_put_replayed(void **state)
{
    char key[128];
    make_key(key, sizeof key, "obj");
    long long n0 = store_objects(&g_srv);
    http_resp *a = post_key(&g_srv, "/v1/objects", key, "text/plain", NULL, "hello, once");
    assert_status(a, 201);
    assert_not_replayed(a);
    http_resp *b = post_key(&g_srv, "/v1/objects", key, "text/plain", NULL, "hello, once");
    assert_status(b, 201);
    assert_replayed(b);
    assert_same_answer(a, b);
    assert_string_equal(json_str(a->json, "ref"), json_str(b->json, "ref"));
    long long n1 = store_objects(&g_srv);
    if (n1 != n0 + 1)
        fail_msg("objects %lld -> %lld after a put and its replay (want +1)", n0, n1);
    /* the object is the one body */
    char path[160];
    snprintf(path, sizeof path, "/v1/objects/%s", json_str(a->json, "ref"));
    http_resp *g = http_get(&g_srv, path);
    assert_status(g, 200);
    assert_string_equal(g->body, "hello, once");
    http_resp_free(g);
    /* a third time, still the same */
    http_resp *c = post_key(&g_srv, "/v1/objects", key, "text/plain", NULL, "hello, once");
    assert_replayed(c);
    assert_same_answer(a, c);
    http_resp_free(a);
    http_resp_free(b);
    http_resp_free(c);
    assert_int_equal(store_objects(&g_srv), n0 + 1);
    /* without a key, two puts are two objects */
    a = post_key(&g_srv, "/v1/objects", NULL, "text/plain", NULL, "no key");
    b = post_key(&g_srv, "/v1/objects", NULL, "text/plain", NULL, "no key");
    assert_status(a, 201);
    assert_status(b, 201);
    assert_not_replayed(b);
    assert_string_not_equal(json_str(a->json, "ref"), json_str(b->json, "ref"));
    http_resp_free(a);
    http_resp_free(b);
    assert_int_equal(store_objects(&g_srv), n0 + 3);
}

/* ================================================================ tasks */

static void test_tasks_submit_replayed(void **state)
{
    char key[128];
    make_key(key, sizeof key, "task");
    long long s0 = status_figure(&g_srv, "tasks", "submitted");
    static const char body[] = "{\"function\":\"add\",\"args\":[20,22]}";
    http_resp *a = post_json_key(&g_srv, "/v1/tasks", key, body);
    assert_status(a, 202);
    assert_not_replayed(a);
    http_resp *b = post_json_key(&g_srv, "/v1/tasks", key, body);
    assert_status(b, 202);
    assert_replayed(b);
    assert_same_answer(a, b);
    assert_string_equal(json_str(a->json, "task_id"), json_str(b->json, "task_id"));
    assert_string_equal(json_str(a->json, "ref"), json_str(b->json, "ref"));
    long long s1 = status_figure(&g_srv, "tasks", "submitted");
    if (s1 != s0 + 1)
        fail_msg("tasks.submitted %lld -> %lld after a submit and its replay (want +1)", s0, s1);
    json_t *v = tk_value(&g_srv, json_str(a->json, "ref"));
    tk_assert_json_eq(v, "42");
    json_decref(v);
    /* after the task finished, the retry still gets the first answer (202 with the ref) */
    http_resp *c = post_json_key(&g_srv, "/v1/tasks", key, body);
    assert_replayed(c);
    assert_same_answer(a, c);
    http_resp_free(a);
    http_resp_free(b);
    http_resp_free(c);
    assert_int_equal(status_figure(&g_srv, "tasks", "submitted"), s0 + 1);
}

static void test_tasks_batch_replayed(void **state)
{
    char key[128];
    make_key(key, sizeof key, "batch");
    long long s0 = status_figure(&g_srv, "tasks", "submitted");
    static const char body[] = "{\"tasks\":[{\"function\":\"add\",\"args\":[1,2]},"
                               "{\"function\":\"mul\",\"args\":[3,4]},"
                               "{\"function\":\"concat\",\"args\":[\"a\",\"b\"]}]}";
    http_resp *a = post_json_key(&g_srv, "/v1/tasks/batch", key, body);
    assert_status(a, 202);
    assert_not_replayed(a);
    http_resp *b = post_json_key(&g_srv, "/v1/tasks/batch", key, body);
    assert_status(b, 202);
    assert_replayed(b);
    assert_same_answer(a, b);
    json_t *ta = json_member(a->json, "tasks"), *tb = json_member(b->json, "tasks");
    assert_int_equal(json_array_size(ta), 3);
    assert_true(json_equal(ta, tb));
    long long s1 = status_figure(&g_srv, "tasks", "submitted");
    if (s1 != s0 + 3)
        fail_msg("tasks.submitted %lld -> %lld after a batch of 3 and its replay (want +3)", s0,
                 s1);
    json_t *v = tk_value(&g_srv, json_str(json_array_get(ta, 1), "ref"));
    tk_assert_json_eq(v, "12");
    json_decref(v);
    http_resp_free(a);
    http_resp_free(b);
}

/* ================================================================ actors */

static void make_counter(const rayd_server *s, int start, char *actor)
{
    char body[128];
    snprintf(body, sizeof body, "{\"class\":\"Counter\",\"args\":[%d]}", start);
    http_resp *r = http_post_json(s, "/v1/actors", body);
    assert_status(r, 201);
    snprintf(actor, ID, "%s", json_str(r->json, "actor_id"));
    http_resp_free(r);
}

static json_t *counter_get(const rayd_server *s, const char *actor)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/actors/%s/methods/get", actor);
    http_resp *r = post_key(s, path, NULL, "application/json", "Prefer: wait=5", "{}");
    assert_status(r, 200);
    json_t *v = json_loads(r->body, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    http_resp_free(r);
    return v;
}

static void test_actor_call_once(void **state)
{
    char actor[ID];
    make_counter(&g_srv, 10, actor);
    char key[128], path[200];
    make_key(key, sizeof key, "incr");
    snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", actor);
    static const char body[] = "{\"args\":[5]}";
    http_resp *a = post_json_key(&g_srv, path, key, body);
    assert_status(a, 202);
    assert_not_replayed(a);
    http_resp *b = post_json_key(&g_srv, path, key, body);
    assert_status(b, 202);
    assert_replayed(b);
    assert_same_answer(a, b);
    json_t *v = tk_value(&g_srv, json_str(a->json, "ref"));
    tk_assert_json_eq(v, "15");
    json_decref(v);
    v = counter_get(&g_srv, actor);
    if (json_integer_value(v) != 15)
        fail_msg("Counter(10) after incr(5) sent twice with one key is %lld, want 15",
                 (long long)json_integer_value(v));
    json_decref(v);
    /* another key: incremented again */
    char key2[128];
    make_key(key2, sizeof key2, "incr");
    http_resp *c = post_json_key(&g_srv, path, key2, body);
    assert_status(c, 202);
    assert_not_replayed(c);
    http_resp_free(c);
    v = counter_get(&g_srv, actor);
    tk_assert_json_eq(v, "20");
    json_decref(v);
    char apath[160];
    snprintf(apath, sizeof apath, "/v1/actors/%s", actor);
    c = http_get(&g_srv, apath);
    assert_status(c, 200);
    /* incr, incr, and two gets */
    assert_int_equal(json_int(c->json, "calls_done"), 4);
    http_resp_free(c);
    http_resp_free(a);
    http_resp_free(b);
}

/* ================================================================ Prefer: wait */

static void test_prefer_wait_replayed(void **state)
{
    char key[128];
    make_key(key, sizeof key, "pw");
    long long s0 = status_figure(&g_srv, "tasks", "submitted");
    static const char body[] = "{\"function\":\"concat\",\"args\":[\"ab\",\"cd\"]}";
    http_resp *a = post_key(&g_srv, "/v1/tasks", key, "application/json", "Prefer: wait=5", body);
    assert_status(a, 200);
    assert_string_equal(a->body, "\"abcd\"");
    assert_non_null(http_header_get(a, "X-Ray-Ref"));
    assert_not_replayed(a);
    http_resp *b = post_key(&g_srv, "/v1/tasks", key, "application/json", "Prefer: wait=5", body);
    assert_replayed(b);
    assert_same_answer(a, b);
    http_resp_free(b);
    /* a retry without Prefer gets the same recorded answer (the body is what counts) */
    b = post_key(&g_srv, "/v1/tasks", key, "application/json", NULL, body);
    assert_replayed(b);
    assert_same_answer(a, b);
    http_resp_free(b);
    assert_int_equal(status_figure(&g_srv, "tasks", "submitted"), s0 + 1);
    http_resp_free(a);

    /* a stored error (424) is an answer like any other: replayed */
    make_key(key, sizeof key, "pw424");
    static const char failing[] = "{\"function\":\"fail\",\"args\":[\"boom\"]}";
    a = post_key(&g_srv, "/v1/tasks", key, "application/json", "Prefer: wait=5", failing);
    assert_problem(a, 424, "TaskError");
    b = post_key(&g_srv, "/v1/tasks", key, "application/json", "Prefer: wait=5", failing);
    assert_replayed(b);
    assert_same_answer(a, b);
    http_resp_free(a);
    http_resp_free(b);

    /* an actor call with Prefer: wait: the same, and the method ran once */
    char actor[ID], path[200];
    make_counter(&g_srv, 0, actor);
    snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", actor);
    make_key(key, sizeof key, "pwactor");
    a = post_key(&g_srv, path, key, "application/json", "Prefer: wait=5", "{\"args\":[7]}");
    assert_status(a, 200);
    assert_string_equal(a->body, "7");
    b = post_key(&g_srv, path, key, "application/json", "Prefer: wait=5", "{\"args\":[7]}");
    assert_replayed(b);
    assert_same_answer(a, b);
    http_resp_free(a);
    http_resp_free(b);
    json_t *v = counter_get(&g_srv, actor);
    tk_assert_json_eq(v, "7");
    json_decref(v);
}

/* ================================================================ 422, 409, scope, bad keys */

static void test_other_body_is_422(void **state)
{
    char key[128];
    make_key(key, sizeof key, "diff");
    long long s0 = status_figure(&g_srv, "tasks", "submitted");
    http_resp *a = post_json_key(&g_srv, "/v1/tasks", key, "{\"function\":\"add\",\"args\":[1,1]}");
    assert_status(a, 202);
    http_resp *b = post_json_key(&g_srv, "/v1/tasks", key, "{\"function\":\"add\",\"args\":[1,2]}");
    assert_problem(b, 422, "UnprocessableContent");
    assert_not_replayed(b);
    http_resp_free(b);
    assert_int_equal(status_figure(&g_srv, "tasks", "submitted"), s0 + 1);
    /* the first body still replays after the 422 */
    b = post_json_key(&g_srv, "/v1/tasks", key, "{\"function\":\"add\",\"args\":[1,1]}");
    assert_replayed(b);
    assert_same_answer(a, b);
    http_resp_free(a);
    http_resp_free(b);

    /* objects: another body, and the same body with another Content-Type */
    make_key(key, sizeof key, "diffobj");
    long long n0 = store_objects(&g_srv);
    a = post_key(&g_srv, "/v1/objects", key, "text/plain", NULL, "one");
    assert_status(a, 201);
    b = post_key(&g_srv, "/v1/objects", key, "text/plain", NULL, "two");
    assert_problem(b, 422, "UnprocessableContent");
    http_resp_free(b);
    b = post_key(&g_srv, "/v1/objects", key, "application/octet-stream", NULL, "one");
    assert_problem(b, 422, "UnprocessableContent");
    http_resp_free(b);
    http_resp_free(a);
    assert_int_equal(store_objects(&g_srv), n0 + 1);
}

typedef struct bg_post {
    const rayd_server *s;
    const char *path, *key, *body, *prefer;
    http_resp *r;
    pthread_t th;
} bg_post;

static void *bg_post_main(void *arg)
{
    bg_post *p = arg;
    char kh[300];
    snprintf(kh, sizeof kh, "Idempotency-Key: %s", p->key);
    const char *h[] = {kh, "Content-Type: application/json", p->prefer, NULL};
    http_opts o = {.method = "POST",
                   .path = p->path,
                   .headers = h,
                   .body = p->body,
                   .body_len = strlen(p->body),
                   .has_body = true,
                   .soft = true,
                   .timeout_ms = 20000};
    p->r = http_request_opts(p->s, &o);
    return NULL;
}

/* The id of the one sleep task not ended on s, waiting for it to exist (new string in
 * out). */
static void wait_sleep_task(const rayd_server *s, char *out, size_t size)
{
    for (double deadline = now_s() + 10;; sleep_s(0.01)) {
        http_resp *r = http_get(s, "/v1/tasks?function=sleep&state=RUNNING");
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

static void test_in_progress_is_409(void **state)
{
    char key[128];
    make_key(key, sizeof key, "busy");
    long long s0 = status_figure(&g_srv, "tasks", "submitted");
    /* the first request stays in progress until the test cancels its task: no clock */
    static const char body[] = "{\"function\":\"sleep\",\"args\":[600]}";
    static bg_post p;
    p = (bg_post){.s = &g_srv, .path = "/v1/tasks", .key = key, .body = body,
                  .prefer = "Prefer: wait=30"};
    assert_int_equal(pthread_create(&p.th, NULL, bg_post_main, &p), 0);
    char task[ID];
    wait_sleep_task(&g_srv, task, sizeof task);
    http_resp *b = post_key(&g_srv, "/v1/tasks", key, "application/json", "Prefer: wait=3", body);
    assert_problem(b, 409, "Conflict");
    assert_not_replayed(b);
    if (!http_header_get(b, "Retry-After"))
        fail_msg("the 409 for a key in progress has no Retry-After");
    http_resp_free(b);
    /* the same key with another body while in progress: 422 (the body is checked first) */
    b = post_json_key(&g_srv, "/v1/tasks", key, "{\"function\":\"sleep\",\"args\":[2]}");
    if (b->status != 422 && b->status != 409)
        fail_msg("another body with a key in progress: %ld %s", b->status, b->body);
    http_resp_free(b);
    cancel_task(&g_srv, task);
    pthread_join(p.th, NULL);
    if (p.r->status != 424)
        fail_msg("the first request (Prefer: wait=30 on a cancelled sleep) got %ld %s %s",
                 p.r->status, p.r->error, p.r->body);
    /* done: now the key replays the first answer */
    b = post_key(&g_srv, "/v1/tasks", key, "application/json", "Prefer: wait=3", body);
    assert_replayed(b);
    assert_same_answer(p.r, b);
    http_resp_free(b);
    http_resp_free(p.r);
    assert_int_equal(status_figure(&g_srv, "tasks", "submitted"), s0 + 1);
}

/* The replay of a Prefer: wait answer carries the result's validators too: the first 200
 * had ETag; a retry that gets "the first answer back" has it (and whatever else the first
 * had, or had not: Accept-Ranges is only on GETs of the object). */
static void test_replay_keeps_result_headers(void **state)
{
    char key[128];
    make_key(key, sizeof key, "etag");
    static const char body[] = "{\"function\":\"add\",\"args\":[3,4]}";
    http_resp *a = post_key(&g_srv, "/v1/tasks", key, "application/json", "Prefer: wait=5", body);
    assert_status(a, 200);
    http_resp *b = post_key(&g_srv, "/v1/tasks", key, "application/json", "Prefer: wait=5", body);
    assert_replayed(b);
    assert_same_answer(a, b);
    static const char *const more[] = {"ETag", "Accept-Ranges", "Retry-After", NULL};
    char bad[512] = "";
    for (size_t i = 0; more[i]; i++) {
        const char *x = http_header_get(a, more[i]), *y = http_header_get(b, more[i]);
        if ((x == NULL) != (y == NULL) || (x && strcmp(x, y) != 0))
            snprintf(bad + strlen(bad), sizeof bad - strlen(bad), " %s: first '%s', replay '%s';",
                     more[i], x ? x : "(none)", y ? y : "(none)");
    }
    http_resp_free(a);
    http_resp_free(b);
    if (bad[0])
        fail_msg("the replayed Prefer: wait 200 differs from the first:%s", bad);
}

/* Many clients retrying at once with one key: the work is done once; every other answer is
 * a 409 (first still running) or the replay. */
#define RACERS 8

static void test_concurrent_same_key(void **state)
{
    char key[128];
    make_key(key, sizeof key, "race");
    long long s0 = status_figure(&g_srv, "tasks", "submitted");
    static const char body[] = "{\"function\":\"sleep\",\"args\":[0.3]}";
    static bg_post p[RACERS];
    for (int i = 0; i < RACERS; i++) {
        p[i] = (bg_post){.s = &g_srv, .path = "/v1/tasks", .key = key, .body = body,
                         .prefer = "Prefer: wait=3"};
        assert_int_equal(pthread_create(&p[i].th, NULL, bg_post_main, &p[i]), 0);
    }
    int firsts = 0, conflicts = 0, replays = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(p[i].th, NULL);
        http_resp *r = p[i].r;
        if (r->status == 200 && !replayed(r))
            firsts++;
        else if (r->status == 200 && replayed(r))
            replays++;
        else if (r->status == 409)
            conflicts++;
        else
            fail_msg("racer %d got %ld %s %s", i, r->status, r->error, r->body);
    }
    for (int i = 0; i < RACERS; i++)
        http_resp_free(p[i].r);
    fprintf(stderr, "%d racers: %d first, %d conflicts, %d replays\n", RACERS, firsts, conflicts,
            replays);
    assert_int_equal(firsts, 1);
    assert_int_equal(status_figure(&g_srv, "tasks", "submitted"), s0 + 1);
}

static void test_keys_scoped_per_path(void **state)
{
    char key[128];
    make_key(key, sizeof key, "scope");
    long long s0 = status_figure(&g_srv, "tasks", "submitted");
    long long n0 = store_objects(&g_srv);
    static const char task[] = "{\"function\":\"add\",\"args\":[2,3]}";
    http_resp *a = post_key(&g_srv, "/v1/objects", key, "application/json", NULL, task);
    assert_status(a, 201);
    assert_not_replayed(a);
    http_resp *b = post_json_key(&g_srv, "/v1/tasks", key, task);
    assert_status(b, 202);
    assert_not_replayed(b);
    http_resp *c = post_json_key(&g_srv, "/v1/tasks/batch", key,
                                 "{\"tasks\":[{\"function\":\"add\",\"args\":[2,3]}]}");
    assert_status(c, 202);
    assert_not_replayed(c);
    http_resp_free(a);
    http_resp_free(b);
    http_resp_free(c);
    /* two actors: one key each, both run */
    char a1[ID], a2[ID], path[200];
    make_counter(&g_srv, 0, a1);
    make_counter(&g_srv, 100, a2);
    snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", a1);
    a = post_json_key(&g_srv, path, key, "{}");
    assert_status(a, 202);
    assert_not_replayed(a);
    snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", a2);
    b = post_json_key(&g_srv, path, key, "{}");
    assert_status(b, 202);
    assert_not_replayed(b);
    http_resp_free(a);
    http_resp_free(b);
    json_t *v = counter_get(&g_srv, a1);
    tk_assert_json_eq(v, "1");
    json_decref(v);
    v = counter_get(&g_srv, a2);
    tk_assert_json_eq(v, "101");
    json_decref(v);
    assert_int_equal(status_figure(&g_srv, "tasks", "submitted"), s0 + 2);
    if (store_objects(&g_srv) < n0 + 1)
        fail_msg("the object put was not done");
}

static void test_bad_keys_are_400(void **state)
{
    long long n0 = store_objects(&g_srv);
    char long_key[300];
    memset(long_key, 'k', 256);
    long_key[256] = '\0';
    http_resp *r = post_key(&g_srv, "/v1/objects", long_key, "text/plain", NULL, "x");
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
    r = post_json_key(&g_srv, "/v1/tasks", long_key, "{\"function\":\"add\",\"args\":[1,1]}");
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
    r = post_key(&g_srv, "/v1/objects", "has spaces in it", "text/plain", NULL, "x");
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
    r = post_key(&g_srv, "/v1/objects", "tab\there", "text/plain", NULL, "x");
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
    /* a control character, on a raw connection */
    static const char raw_ctl[] = "POST /v1/objects HTTP/1.1\r\nHost: t\r\nIdempotency-Key: a\x01"
                                  "b\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx";
    char *text = NULL;
    int st = raw_http(&g_srv, raw_ctl, strlen(raw_ctl), 5.0, &text);
    if (st != 400)
        fail_msg("Idempotency-Key with a control character: %d, want 400: %.200s", st, text);
    free(text);
    /* exactly 255 printable characters is fine, and replays */
    char key255[300];
    make_key(key255, sizeof key255, "k255");
    size_t l = strlen(key255);
    memset(key255 + l, '~', 255 - l);
    key255[255] = '\0';
    http_resp *a = post_key(&g_srv, "/v1/objects", key255, "text/plain", NULL, "x");
    assert_status(a, 201);
    http_resp *b = post_key(&g_srv, "/v1/objects", key255, "text/plain", NULL, "x");
    assert_replayed(b);
    assert_same_answer(a, b);
    http_resp_free(a);
    http_resp_free(b);
    assert_int_equal(store_objects(&g_srv), n0 + 1); /* none of the 400s stored anything */
}

/* ================================================================ ttl */

/* POSTs body with key until the answer is not a replay (or, with refused_status, not that
 * status): the server forgetting the key after its TTL is the signal waited for, and
 * replays do no work. The first other answer (new reference); fails after 30 s. */
static http_resp *post_until_forgotten(const char *path, const char *key, const char *ct,
                                       const char *body, long refused_status)
{
    for (double deadline = now_s() + 30;; sleep_s(0.05)) {
        http_resp *r = post_key(&g_own, path, key, ct, NULL, body);
        bool remembered = refused_status ? r->status == refused_status : replayed(r);
        if (!remembered)
            return r;
        http_resp_free(r);
        if (now_s() > deadline)
            fail_msg("the key %s is still remembered 30 s on, with a TTL of 2 s", key);
    }
}

static void test_ttl_forgets(void **state)
{
    /* Long enough for the retry right after the first answer to fall within it on a loaded
     * machine; the end of it is waited for, not slept through. */
    static const char *const args[] = {"--idempotency-ttl", "2", NULL};
    if (rayd_start(&g_own, args, g_drain_env) != 0)
        fail_msg("rayd did not start");
    char key[128];
    make_key(key, sizeof key, "ttl");
    static const char body[] = "{\"function\":\"add\",\"args\":[5,5]}";
    http_resp *a = post_json_key(&g_own, "/v1/tasks", key, body);
    assert_status(a, 202);
    http_resp *b = post_json_key(&g_own, "/v1/tasks", key, body);
    assert_replayed(b); /* within the ttl */
    assert_same_answer(a, b);
    http_resp_free(b);
    assert_int_equal(tk_status_tasks(&g_own, "submitted"), 1);
    b = post_until_forgotten("/v1/tasks", key, "application/json", body, 0);
    assert_status(b, 202);
    assert_not_replayed(b);
    if (strcmp(json_str(a->json, "task_id"), json_str(b->json, "task_id")) == 0)
        fail_msg("after the ttl the same key got the same task %s", json_str(a->json, "task_id"));
    assert_int_equal(tk_status_tasks(&g_own, "submitted"), 2);
    http_resp_free(b);
    /* after the ttl another body with the key is new work, not a 422 */
    b = post_until_forgotten("/v1/tasks", key, "application/json",
                             "{\"function\":\"add\",\"args\":[6,6]}", 422);
    assert_status(b, 202);
    assert_not_replayed(b);
    http_resp_free(b);
    /* objects too */
    make_key(key, sizeof key, "ttlobj");
    http_resp *o1 = post_key(&g_own, "/v1/objects", key, "text/plain", NULL, "v");
    assert_status(o1, 201);
    http_resp *o2 = post_until_forgotten("/v1/objects", key, "text/plain", "v", 0);
    assert_status(o2, 201);
    assert_not_replayed(o2);
    assert_string_not_equal(json_str(o1->json, "ref"), json_str(o2->json, "ref"));
    http_resp_free(o1);
    http_resp_free(o2);
    http_resp_free(a);
    int st = rayd_stop(&g_own);
    g_own.pid = 0;
    assert_int_equal(st, 0);
}

/* ================================================================ 429 not remembered */

static void test_429_not_remembered(void **state)
{
    static const char *const args[] = {"--max-pending-tasks", "1", "--workers", "1", NULL};
    if (rayd_start(&g_own, args, g_drain_env) != 0)
        fail_msg("rayd did not start");
    char busy[ID], ref[ID];
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[30]}", busy, ref);
    char key[128];
    make_key(key, sizeof key, "full");
    static const char body[] = "{\"function\":\"add\",\"args\":[4,4]}";
    http_resp *a = post_json_key(&g_own, "/v1/tasks", key, body);
    assert_problem(a, 429, "TooManyRequests");
    http_resp_free(a);
    /* still full: the retry is refused again, not replayed */
    a = post_json_key(&g_own, "/v1/tasks", key, body);
    assert_problem(a, 429, "TooManyRequests");
    assert_not_replayed(a);
    http_resp_free(a);
    /* the batch route too */
    char bkey[128];
    make_key(bkey, sizeof bkey, "fullbatch");
    static const char batch[] = "{\"tasks\":[{\"function\":\"add\",\"args\":[1,1]}]}";
    a = post_json_key(&g_own, "/v1/tasks/batch", bkey, batch);
    assert_problem(a, 429, "TooManyRequests");
    http_resp_free(a);

    cancel_task(&g_own, busy);
    json_decref(tk_wait_ended(&g_own, busy, 5));
    for (double deadline = now_s() + 3; tk_status_tasks(&g_own, "pending") > 0;) {
        if (now_s() > deadline)
            fail_msg("tasks.pending stays %lld", tk_status_tasks(&g_own, "pending"));
        sleep_s(0.01);
    }
    /* room: the same key does the work now */
    a = post_key(&g_own, "/v1/tasks", key, "application/json", "Prefer: wait=5", body);
    assert_status(a, 200);
    assert_not_replayed(a);
    assert_string_equal(a->body, "8");
    http_resp *b = post_key(&g_own, "/v1/tasks", key, "application/json", "Prefer: wait=5", body);
    assert_replayed(b);
    assert_same_answer(a, b);
    http_resp_free(a);
    http_resp_free(b);
    a = post_json_key(&g_own, "/v1/tasks/batch", bkey, batch);
    assert_status(a, 202);
    assert_not_replayed(a);
    http_resp_free(a);

    /* actor calls: a 429 from max_pending_calls is not remembered either */
    http_resp *r = http_post_json(
        &g_own, "/v1/actors",
        "{\"class\":\"Counter\",\"args\":[0],\"options\":{\"max_pending_calls\":1}}");
    assert_status(r, 201);
    char actor[ID];
    snprintf(actor, sizeof actor, "%s", json_str(r->json, "actor_id"));
    http_resp_free(r);
    json_t *v = counter_get(&g_own, actor);
    json_decref(v);
    /* one call waiting on a pending argument fills the actor */
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[30]}", busy, ref);
    char path[200], arg[200];
    snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", actor);
    snprintf(arg, sizeof arg, "{\"args\":[{\"$ref\":\"%s\"}]}", ref);
    r = post_json_key(&g_own, path, NULL, arg);
    assert_status(r, 202);
    http_resp_free(r);
    char ckey[128];
    make_key(ckey, sizeof ckey, "fullcall");
    r = post_json_key(&g_own, path, ckey, "{\"args\":[3]}");
    assert_problem(r, 429, "TooManyRequests");
    http_resp_free(r);
    cancel_task(&g_own, busy);
    json_decref(tk_wait_ended(&g_own, busy, 5));
    /* the call that failed on its argument leaves the mailbox: the server says when */
    snprintf(path, sizeof path, "/v1/actors/%s", actor);
    for (double deadline = now_s() + 10;; sleep_s(0.01)) {
        r = http_get(&g_own, path);
        long long pending = json_int(r->json, "calls_pending");
        http_resp_free(r);
        if (pending == 0)
            break;
        if (now_s() > deadline)
            fail_msg("calls_pending stays %lld after the argument's task ended", pending);
    }
    snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", actor);
    r = post_key(&g_own, path, ckey, "application/json", "Prefer: wait=5", "{\"args\":[3]}");
    assert_status(r, 200);
    assert_not_replayed(r);
    assert_string_equal(r->body, "3");
    http_resp_free(r);

    int st = rayd_stop(&g_own);
    g_own.pid = 0;
    assert_int_equal(st, 0);
}

/* A Prefer: wait submission with a key while --max-parked is reached: if it is answered 429,
 * the retry with the key (once parking has room) must not run the task a second time. */
typedef struct parked_get {
    const rayd_server *s;
    char path[200];
    long status;
} parked_get;

static void *parked_get_main(void *arg)
{
    parked_get *g = arg;
    http_opts o = {.path = g->path, .soft = true, .timeout_ms = 25000};
    http_resp *r = http_request_opts(g->s, &o);
    g->status = r->status;
    http_resp_free(r);
    return NULL;
}

static void test_parking_full_retry_runs_once(void **state)
{
    static const char *const args[] = {"--max-parked", "1", "--workers", "2", NULL};
    if (rayd_start(&g_own, args, g_drain_env) != 0)
        fail_msg("rayd did not start");
    char busy[ID], ref[ID];
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[30]}", busy, ref);
    /* fill the parking with one GET */
    static parked_get g;
    g = (parked_get){.s = &g_own};
    snprintf(g.path, sizeof g.path, "/v1/objects/%s?timeout=20", ref);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, parked_get_main, &g), 0);
    for (double deadline = now_s() + 5;;) {
        http_resp *m = http_get(&g_own, "/metrics");
        const char *v = strstr(m->body, "\nrayd_parked_requests ");
        bool one = v && strtod(v + strlen("\nrayd_parked_requests "), NULL) == 1;
        http_resp_free(m);
        if (one)
            break;
        if (now_s() > deadline)
            fail_msg("the GET did not park");
        sleep_s(0.01);
    }
    long long s0 = tk_status_tasks(&g_own, "submitted");
    char key[128];
    make_key(key, sizeof key, "parkfull");
    static const char body[] = "{\"function\":\"sleep\",\"args\":[0.2]}";
    http_resp *a = post_key(&g_own, "/v1/tasks", key, "application/json", "Prefer: wait=2", body);
    long first = a->status;
    http_resp_free(a);
    /* room again */
    cancel_task(&g_own, busy);
    pthread_join(th, NULL);
    assert_int_equal(g.status, 424);
    http_resp *b = post_key(&g_own, "/v1/tasks", key, "application/json", "Prefer: wait=2", body);
    long second = b->status;
    http_resp_free(b);
    long long s1 = tk_status_tasks(&g_own, "submitted");
    if (s1 != s0 + 1)
        fail_msg("a Prefer: wait submission with Idempotency-Key answered %ld while parking was "
                 "full, and its retry %ld: the task was submitted %lld times (want 1)",
                 first, second, s1 - s0);
    int st = rayd_stop(&g_own);
    g_own.pid = 0;
    assert_int_equal(st, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_objects_put_replayed),
        cmocka_unit_test(test_tasks_submit_replayed),
        cmocka_unit_test(test_tasks_batch_replayed),
        cmocka_unit_test(test_actor_call_once),
        cmocka_unit_test(test_prefer_wait_replayed),
        cmocka_unit_test(test_other_body_is_422),
        cmocka_unit_test(test_in_progress_is_409),
        cmocka_unit_test(test_replay_keeps_result_headers),
        cmocka_unit_test(test_concurrent_same_key),
        cmocka_unit_test(test_keys_scoped_per_path),
        cmocka_unit_test(test_bad_keys_are_400),
        cmocka_unit_test_teardown(test_ttl_forgets, own_teardown),
        cmocka_unit_test_teardown(test_429_not_remembered, own_teardown),
        cmocka_unit_test_teardown(test_parking_full_retry_runs_once, own_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
