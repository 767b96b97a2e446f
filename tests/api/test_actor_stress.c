/* Actor stress against the real rayd binary: 8 client threads (each its own keep-alive curl
 * handle) spread 50,000 Counter.incr calls over 200 actors, then every actor's value must
 * equal the number of calls it received; and 2,000 actors created and called once each. */
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

#define ID TK_ID_SIZE
#define THREADS 8
#define ACTORS 200
#define CALLS 50000
#define MANY_ACTORS 2000

static rayd_server g_srv;

static int group_setup(void **state)
{
    /* default --workers (the number of cores): actor calls are short */
    return rayd_start(&g_srv, NULL, NULL);
}

static int group_teardown(void **state)
{
    return rayd_stop(&g_srv) == 0 ? 0 : -1;
}

typedef struct worker {
    int index;
    char (*ids)[ID]; /* the actors */
    int n_actors;
    int n_calls;      /* calls to make (stress) */
    long *received;   /* per actor: accepted calls (stress) */
    char (*refs)[ID]; /* per actor: the ref of its one call (create-many) */
    int first, last;  /* actor range [first, last) (create-many) */
    long failures;
    char error[512];
} worker;

static void set_error(worker *w, const char *what, const http_resp *r)
{
    if (w->error[0])
        return;
    snprintf(w->error, sizeof w->error, "thread %d: %s: status %ld %s %.200s", w->index, what,
             r->status, r->error, r->body);
}

static http_resp *post(CURL *c, const char *path, const char *body, const char *prefer)
{
    const char *h[] = {"Content-Type: application/json", prefer, NULL};
    http_opts o = {.method = "POST",
                   .path = path,
                   .headers = h,
                   .body = body,
                   .body_len = strlen(body),
                   .has_body = true,
                   .soft = true,
                   .handle = c};
    return http_request_opts(&g_srv, &o);
}

static void *stress_main(void *p)
{
    worker *w = p;
    CURL *c = curl_easy_init();
    unsigned seed = 0x9e3779b9u * (unsigned)(w->index + 1);
    char path[256];
    for (int i = 0; i < w->n_calls; i++) {
        int a = (int)(rand_r(&seed) % (unsigned)w->n_actors);
        snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", w->ids[a]);
        http_resp *r = post(c, path, "{\"args\":[1]}", NULL);
        if (r->status == 202 && !r->error[0])
            w->received[a]++;
        else {
            w->failures++;
            set_error(w, "incr", r);
        }
        http_resp_free(r);
    }
    curl_easy_cleanup(c);
    return NULL;
}

static void create_counters(char (*ids)[ID], int n)
{
    CURL *c = curl_easy_init();
    for (int i = 0; i < n; i++) {
        http_resp *r = post(c, "/v1/actors", "{\"class\":\"Counter\"}", NULL);
        assert_status(r, 201);
        snprintf(ids[i], ID, "%s", json_str(r->json, "actor_id"));
        http_resp_free(r);
    }
    curl_easy_cleanup(c);
}

static void test_50k_calls_over_200_actors(void **state)
{
    char(*ids)[ID] = calloc(ACTORS, sizeof *ids);
    create_counters(ids, ACTORS);

    worker w[THREADS];
    pthread_t th[THREADS];
    memset(w, 0, sizeof w);
    double t0 = now_s();
    for (int t = 0; t < THREADS; t++) {
        w[t].index = t;
        w[t].ids = ids;
        w[t].n_actors = ACTORS;
        w[t].n_calls = CALLS / THREADS + (t < CALLS % THREADS ? 1 : 0);
        w[t].received = calloc(ACTORS, sizeof(long));
        pthread_create(&th[t], NULL, stress_main, &w[t]);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    double t_submit = now_s() - t0;
    long expected[ACTORS] = {0};
    long total = 0;
    for (int t = 0; t < THREADS; t++) {
        if (w[t].failures)
            fail_msg("%ld incr calls failed; first: %s", w[t].failures, w[t].error);
        for (int a = 0; a < ACTORS; a++)
            expected[a] += w[t].received[a];
        free(w[t].received);
    }
    for (int a = 0; a < ACTORS; a++)
        total += expected[a];
    assert_int_equal(total, CALLS);

    /* every actor's value equals the calls it received */
    CURL *c = curl_easy_init();
    char path[256];
    for (int a = 0; a < ACTORS; a++) {
        snprintf(path, sizeof path, "/v1/actors/%s/methods/get", ids[a]);
        http_resp *r = post(c, path, "{}", "Prefer: wait=30");
        assert_status(r, 200);
        if (!json_is_integer(r->json) || json_integer_value(r->json) != expected[a])
            fail_msg("actor %d (%s): value %s, received %ld calls", a, ids[a], r->body,
                     expected[a]);
        http_resp_free(r);
        /* calls_done is counted just after the result is stored: allow a moment */
        double deadline = now_s() + 5;
        for (;;) {
            r = tk_getf(&g_srv, "/v1/actors/%s", ids[a]);
            assert_status(r, 200);
            if (json_int(r->json, "calls_done") == expected[a] + 1 || now_s() > deadline)
                break;
            http_resp_free(r);
            sleep_s(0.005);
        }
        assert_int_equal(json_int(r->json, "calls_done"), expected[a] + 1);
        assert_int_equal(json_int(r->json, "calls_pending"), 0);
        assert_string_equal(json_str(r->json, "state"), "ALIVE");
        http_resp_free(r);
    }
    curl_easy_cleanup(c);
    double t_all = now_s() - t0;
    fprintf(stderr,
            "stress: %d calls over %d actors from %d threads: submitted in %.2f s "
            "(%.0f calls/s), all done in %.2f s\n",
            CALLS, ACTORS, THREADS, t_submit, CALLS / t_submit, t_all);
    /* The server's own counters (one node's, behind a balancer: checked per actor above). */
    if (!g_srv.shared) {
        json_t *st = tk_status(&g_srv);
        json_t *acts = json_member(st, "actors");
        assert_true(json_int(acts, "calls_done") >= CALLS + ACTORS);
        assert_int_equal(json_int(acts, "calls"), json_int(acts, "calls_done"));
        json_decref(st);
    }
    free(ids);
}

static void *many_main(void *p)
{
    worker *w = p;
    CURL *c = curl_easy_init();
    char path[256];
    for (int i = w->first; i < w->last; i++) {
        http_resp *r = post(c, "/v1/actors", "{\"class\":\"Counter\"}", NULL);
        json_t *aid = r->json ? json_object_get(r->json, "actor_id") : NULL;
        if (r->status != 201 || !json_is_string(aid)) {
            w->failures++;
            set_error(w, "create", r);
            http_resp_free(r);
            continue;
        }
        snprintf(w->ids[i], ID, "%s", json_string_value(aid));
        http_resp_free(r);
        snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", w->ids[i]);
        char body[64];
        snprintf(body, sizeof body, "{\"args\":[%d]}", i + 1);
        r = post(c, path, body, NULL);
        json_t *ref = r->json ? json_object_get(r->json, "ref") : NULL;
        if (r->status != 202 || !json_is_string(ref)) {
            w->failures++;
            set_error(w, "incr", r);
        } else {
            snprintf(w->refs[i], ID, "%s", json_string_value(ref));
        }
        http_resp_free(r);
    }
    curl_easy_cleanup(c);
    return NULL;
}

/* The ALIVE actors GET /v1/actors lists, page by page (every node's, behind a balancer). */
static int count_alive_listed(void)
{
    int listed = 0;
    char cursor[256] = "";
    for (;;) {
        http_resp *r =
            cursor[0] ? tk_getf(&g_srv, "/v1/actors?state=ALIVE&limit=1000&cursor=%s", cursor)
                      : http_get(&g_srv, "/v1/actors?state=ALIVE&limit=1000");
        assert_status(r, 200);
        listed += (int)json_array_size(json_member(r->json, "actors"));
        json_t *nc = json_member(r->json, "next_cursor");
        if (json_is_null(nc)) {
            http_resp_free(r);
            return listed;
        }
        snprintf(cursor, sizeof cursor, "%s", json_string_value(nc));
        http_resp_free(r);
    }
}

static void test_2000_actors_called_once(void **state)
{
    int listed0 = count_alive_listed();
    json_t *st0 = tk_status(&g_srv);
    long long alive0 = json_int(json_member(json_member(st0, "actors"), "by_state"), "ALIVE");
    json_decref(st0);

    char(*ids)[ID] = calloc(MANY_ACTORS, sizeof *ids);
    char(*refs)[ID] = calloc(MANY_ACTORS, sizeof *refs);
    worker w[THREADS];
    pthread_t th[THREADS];
    memset(w, 0, sizeof w);
    double t0 = now_s();
    for (int t = 0; t < THREADS; t++) {
        w[t].index = t;
        w[t].ids = ids;
        w[t].refs = refs;
        w[t].first = MANY_ACTORS * t / THREADS;
        w[t].last = MANY_ACTORS * (t + 1) / THREADS;
        pthread_create(&th[t], NULL, many_main, &w[t]);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < THREADS; t++)
        if (w[t].failures)
            fail_msg("%ld requests failed; first: %s", w[t].failures, w[t].error);

    /* every call answered i + 1, in one get_batch */
    json_t *req = json_pack("{s:[], s:i}", "refs", "timeout", 30);
    json_t *arr = json_object_get(req, "refs");
    for (int i = 0; i < MANY_ACTORS; i++)
        json_array_append_new(arr, json_string(refs[i]));
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    http_resp *r = http_post_json(&g_srv, "/v1/objects/get", body);
    free(body);
    assert_status(r, 200);
    json_t *objs = json_member(r->json, "objects");
    assert_int_equal(json_array_size(objs), MANY_ACTORS);
    for (int i = 0; i < MANY_ACTORS; i++) {
        json_t *o = json_array_get(objs, (size_t)i);
        json_t *v = json_object_get(o, "value");
        if (!json_is_integer(v) || json_integer_value(v) != i + 1) {
            char *d = json_dumps(o, JSON_COMPACT);
            fail_msg("actor %d (%s): call answered %s, wanted %d", i, ids[i], d, i + 1);
        }
    }
    http_resp_free(r);
    fprintf(stderr, "stress: %d actors created and called once in %.2f s\n", MANY_ACTORS,
            now_s() - t0);

    /* all distinct and all listed as ALIVE */
    if (!g_srv.shared) { /* one node's count, behind a balancer */
        json_t *st = tk_status(&g_srv);
        assert_int_equal(json_int(json_member(json_member(st, "actors"), "by_state"), "ALIVE"),
                         alive0 + MANY_ACTORS);
        json_decref(st);
    }
    assert_int_equal(count_alive_listed(), listed0 + MANY_ACTORS);
    free(ids);
    free(refs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_50k_calls_over_200_actors),
        cmocka_unit_test(test_2000_actors_called_once),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
