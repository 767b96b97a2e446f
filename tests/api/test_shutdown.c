/* API tests of cancel and shutdown while remote work is in flight, against the real rayd
 * binary and an endpoint in the test process (support/stub_endpoint.h) that holds calls
 * until the test releases them, so every wait is on something the endpoint or the server
 * reports:
 * - cancelling a remote task queued behind max_concurrency answers at once and ends the
 *   task CANCELLED, never sent (it once deadlocked on the task's lock), and SIGTERM in that
 *   state exits 0;
 * - SIGTERM with remote-class actors holding queued calls, remote tasks queued behind a
 *   held one, and requests parked on their results (long-poll GETs, Prefer: wait calls)
 *   answers every request over HTTP and exits 0.
 * Run them against the ASan and the TSan builds of the daemon too (RAYD_BIN): a call lost,
 * leaked or raced at stop makes the exit status non-zero there. */
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
#include <unistd.h>

#include "tests/api/support/harness.h"
#include "tests/api/support/stub_endpoint.h"
#include "tests/api/support/tasks_util.h"

#define ID TK_ID_SIZE

/* Each test's server and endpoint; the teardown stops what a failed test left. */
static rayd_server g_srv;
static stub_endpoint *g_stub;

/* ---------------------------------------------------------------- helpers */

/* Starts the endpoint and a server allowed to call it, with --drain-timeout 1 (held
 * remote tasks count as running work: a drain waits for them that long). */
static void start_both(void)
{
    g_stub = stub_start();
    assert_non_null(g_stub);
    char allow[64];
    snprintf(allow, sizeof allow, "http://127.0.0.1:%d", stub_port(g_stub));
    const char *args[] = {"--workers", "2", "--drain-timeout", "1", "--remote-allow", allow,
                          NULL};
    assert_int_equal(rayd_start(&g_srv, args, NULL), 0);
}

static void register_at_stub(const char *what, const char *name, const char *extra)
{
    char path[128], body[256];
    snprintf(path, sizeof path, "/v1/%s/%s", what, name);
    snprintf(body, sizeof body, "{\"url\":\"http://127.0.0.1:%d/%s\"%s}", stub_port(g_stub), name,
             extra);
    const char *h[] = {"Content-Type: application/json", NULL};
    http_resp *r = http_request(&g_srv, "PUT", path, h, body, strlen(body));
    assert_status(r, 201);
    http_resp_free(r);
}

/* One HTTP request made on its own thread, so a request the server never answers cannot
 * hang the test; the outcome is read after joining. */
typedef struct bg_request {
    const char *method;
    char path[200];
    const char *body;       /* JSON, or NULL */
    const char *prefer;     /* a Prefer header line, or NULL */
    long timeout_ms;
    pthread_t thread;
    long status;            /* 0: no HTTP answer (transport error, in error) */
    char error[CURL_ERROR_SIZE];
    char title[64];         /* a problem's title, "" otherwise */
    char state[32];         /* a JSON answer's "state", "" otherwise */
} bg_request;

static void *bg_main(void *arg)
{
    bg_request *b = arg;
    const char *h[] = {"Content-Type: application/json", b->prefer, NULL};
    http_opts o = {.method = b->method,
                   .path = b->path,
                   .headers = h,
                   .body = b->body,
                   .body_len = b->body ? strlen(b->body) : 0,
                   .has_body = b->body != NULL,
                   .timeout_ms = b->timeout_ms,
                   .soft = true};
    http_resp *r = http_request_opts(&g_srv, &o);
    b->status = r->status;
    snprintf(b->error, sizeof b->error, "%s", r->error);
    json_t *title = r->json ? json_object_get(r->json, "title") : NULL;
    json_t *st = r->json ? json_object_get(r->json, "state") : NULL;
    snprintf(b->title, sizeof b->title, "%s", json_is_string(title) ? json_string_value(title) : "");
    snprintf(b->state, sizeof b->state, "%s", json_is_string(st) ? json_string_value(st) : "");
    http_resp_free(r);
    return NULL;
}

static void bg_start(bg_request *b)
{
    assert_int_equal(pthread_create(&b->thread, NULL, bg_main, b), 0);
}

/* A sample's value in /metrics (a family without labels), -1 when absent. */
static double metric(const char *name)
{
    http_resp *r = http_get(&g_srv, "/metrics");
    assert_status(r, 200);
    double v = -1;
    size_t n = strlen(name);
    for (const char *p = r->body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == ' ')
            v = strtod(p + n + 1, NULL);
    http_resp_free(r);
    return v;
}

/* Waits until /metrics says name >= want (the server's own count), failing after
 * timeout_s. */
static void wait_metric(const char *name, double want, double timeout_s)
{
    double deadline = now_s() + timeout_s, got;
    while ((got = metric(name)) < want) {
        if (now_s() > deadline)
            fail_msg("%s is %g after %.0f s, wanted %g", name, got, timeout_s, want);
        sleep_s(0.01);
    }
}

/* A task's state now ("" when the request failed). Safe on any thread. */
static void task_state(const char *task_id, char *out, size_t n)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/tasks/%s", task_id);
    http_opts o = {.path = path, .timeout_ms = 5000, .soft = true};
    http_resp *r = http_request_opts(&g_srv, &o);
    json_t *st = r->json ? json_object_get(r->json, "state") : NULL;
    snprintf(out, n, "%s", json_is_string(st) ? json_string_value(st) : "");
    http_resp_free(r);
}

/* Sets up the state of issue #10: function `held` with max_concurrency 1, task A sent to
 * the endpoint and held there, task B RUNNING behind it (waiting for the slot). */
static void queued_behind_held(char *a_id, char *a_ref, char *b_id, char *b_ref)
{
    register_at_stub("functions", "held", ",\"max_concurrency\":1,\"timeout\":60");
    tk_submit(&g_srv, "{\"function\":\"held\",\"args\":[1]}", a_id, a_ref);
    if (!stub_wait(g_stub, 1, 0, 10))
        fail_msg("the endpoint never received task A");
    tk_submit(&g_srv, "{\"function\":\"held\",\"args\":[2]}", b_id, b_ref);
    json_decref(tk_wait_state(&g_srv, b_id, "RUNNING", 10));
}

/* ---------------------------------------------------------------- tests */

/* Cancelling the queued task answers 202 at once (a 10 s bound only turns a hang into a
 * failure), B ends CANCELLED with TaskCancelled in its ref and was never sent, and A,
 * still held, finishes with the endpoint's answer once released. */
static void test_cancel_queued_remote_task(void **state)
{
    start_both();
    char a_id[ID], a_ref[ID], b_id[ID], b_ref[ID];
    queued_behind_held(a_id, a_ref, b_id, b_ref);

    bg_request cancel = {.method = "POST", .body = "{}", .timeout_ms = 10000};
    snprintf(cancel.path, sizeof cancel.path, "/v1/tasks/%s/cancel", b_id);
    bg_start(&cancel);
    pthread_join(cancel.thread, NULL);
    if (cancel.status != 202)
        fail_msg("cancel of the queued task: status %ld (%s)", cancel.status, cancel.error);

    json_decref(tk_wait_state(&g_srv, b_id, "CANCELLED", 10));
    http_resp_free(tk_error(&g_srv, b_ref, "TaskCancelled"));
    json_t *info = tk_info(&g_srv, a_id);
    assert_string_equal(json_str(info, "state"), "RUNNING");
    json_decref(info);
    stub_release(g_stub);
    json_t *v = tk_value(&g_srv, a_ref);
    tk_assert_json_eq(v, "{\"result\":\"done\",\"state\":{\"n\":1}}");
    json_decref(v);
    stub_counts c = stub_get_counts(g_stub);
    assert_int_equal(c.received, 1); /* B never went out */
    assert_int_equal(rayd_stop(&g_srv), 0);
}

/* The same state, a cancel of B, then SIGTERM with A still held: the server exits 0 (it
 * once hung until SIGKILL, an HTTP thread stuck on the task's lock). */
static void test_sigterm_after_cancel_of_queued_remote_task(void **state)
{
    start_both();
    char a_id[ID], a_ref[ID], b_id[ID], b_ref[ID];
    queued_behind_held(a_id, a_ref, b_id, b_ref);

    bg_request cancel = {.method = "POST", .body = "{}", .timeout_ms = 30000};
    snprintf(cancel.path, sizeof cancel.path, "/v1/tasks/%s/cancel", b_id);
    bg_start(&cancel);
    /* the server's word that the cancel went through, for up to 5 s: a cancel that hangs
     * is the state SIGTERM must still get out of */
    char st[32] = "";
    for (double deadline = now_s() + 5; strcmp(st, "CANCELLED") != 0 && now_s() < deadline;
         sleep_s(0.01))
        task_state(b_id, st, sizeof st);

    assert_int_equal(kill(g_srv.pid, SIGTERM), 0);
    int status = rayd_wait_exit(&g_srv, 20);
    pthread_join(cancel.thread, NULL);
    if (status != 0)
        fail_msg("exit status %d after SIGTERM (-1: still running after 20 s)", status);
    if (cancel.status != 202)
        fail_msg("cancel of the queued task: status %ld (%s)", cancel.status, cancel.error);
    assert_string_equal(st, "CANCELLED");
    /* A was in flight: the stop aborted it */
    if (!stub_wait(g_stub, 1, 1, 5))
        fail_msg("the endpoint never saw task A's call closed");
}

#define ACTORS 3
#define CALLS 4    /* per actor, without Prefer: wait: one held at the endpoint, the rest
                      queued in the mailbox */
#define WAITERS 2  /* per actor: Prefer: wait calls, parked on their results */
#define POLLS 2    /* per actor: long-poll GETs on its queued calls' refs */
#define TASKS 3    /* remote tasks, max_concurrency 1: one held, the rest queued */
#define TASK_WAITERS 2

/* SIGTERM with three remote-class actors, each with a call held at the endpoint, calls
 * queued behind it, Prefer: wait calls and long-poll GETs parked on its results, and
 * remote tasks queued behind a held one with Prefer: wait submissions parked: every
 * request gets an HTTP answer (the parked ones 202, what there is), nothing resets, and
 * the server exits 0. */
static void test_sigterm_with_actors_queued_and_requests_parked(void **state)
{
    start_both();
    register_at_stub("actor-classes", "Held", "");
    register_at_stub("functions", "held", ",\"max_concurrency\":1,\"timeout\":60");

    char actors[ACTORS][ID], refs[ACTORS][CALLS][ID];
    for (int a = 0; a < ACTORS; a++) {
        http_resp *r = http_post_json(&g_srv, "/v1/actors", "{\"class\":\"Held\"}");
        assert_status(r, 201);
        snprintf(actors[a], ID, "%s", json_str(r->json, "actor_id"));
        http_resp_free(r);
    }
    if (!stub_wait(g_stub, ACTORS, 0, 10)) /* the constructors, answered at once */
        fail_msg("the endpoint saw %zu constructors of %d", stub_get_counts(g_stub).received,
                 ACTORS);
    for (int a = 0; a < ACTORS; a++) {
        for (int k = 0; k < CALLS; k++) {
            char path[160];
            snprintf(path, sizeof path, "/v1/actors/%.64s/methods/step", actors[a]);
            http_resp *r = http_post_json(&g_srv, path, "{\"args\":[1]}");
            assert_status(r, 202);
            snprintf(refs[a][k], ID, "%s", json_str(r->json, "ref"));
            http_resp_free(r);
        }
    }
    /* each actor's first call is at the endpoint, the others wait in its mailbox */
    if (!stub_wait(g_stub, 2 * ACTORS, 0, 10))
        fail_msg("the endpoint saw %zu calls, wanted %d", stub_get_counts(g_stub).received,
                 2 * ACTORS);

    char task_ids[TASKS][ID], task_refs[TASKS][ID];
    for (int t = 0; t < TASKS; t++)
        tk_submit(&g_srv, "{\"function\":\"held\",\"args\":[1]}", task_ids[t], task_refs[t]);
    if (!stub_wait(g_stub, 2 * ACTORS + 1, 0, 10))
        fail_msg("the endpoint never received the first task");

    enum { PARKED = ACTORS * (WAITERS + POLLS) + TASK_WAITERS };
    static bg_request reqs[PARKED];
    memset(reqs, 0, sizeof reqs);
    int n = 0;
    for (int a = 0; a < ACTORS; a++) {
        for (int w = 0; w < WAITERS; w++, n++) {
            reqs[n] = (bg_request){.method = "POST", .body = "{\"args\":[2]}",
                                   .prefer = "Prefer: wait=60", .timeout_ms = 60000};
            snprintf(reqs[n].path, sizeof reqs[n].path, "/v1/actors/%.64s/methods/step",
                     actors[a]);
        }
        for (int p = 0; p < POLLS; p++, n++) {
            reqs[n] = (bg_request){.method = "GET", .timeout_ms = 60000};
            snprintf(reqs[n].path, sizeof reqs[n].path, "/v1/objects/%.64s?timeout=60",
                     refs[a][CALLS - 1 - p]);
        }
    }
    for (int w = 0; w < TASK_WAITERS; w++, n++) {
        reqs[n] = (bg_request){.method = "POST", .body = "{\"function\":\"held\",\"args\":[3]}",
                               .prefer = "Prefer: wait=60", .timeout_ms = 60000};
        snprintf(reqs[n].path, sizeof reqs[n].path, "/v1/tasks");
    }
    assert_int_equal(n, PARKED);
    for (int i = 0; i < PARKED; i++)
        bg_start(&reqs[i]);
    wait_metric("rayd_parked_requests", PARKED, 20);

    assert_int_equal(kill(g_srv.pid, SIGTERM), 0);
    int status = rayd_wait_exit(&g_srv, 30);
    int unanswered = 0;
    for (int i = 0; i < PARKED; i++) {
        pthread_join(reqs[i].thread, NULL);
        bool pending = reqs[i].status == 202 &&
                       (strcmp(reqs[i].method, "POST") == 0 ||
                        strcmp(reqs[i].state, "pending") == 0);
        if (!pending && unanswered++ < 5)
            fprintf(stderr, "%s %s: status %ld title '%s' state '%s' error '%s'\n",
                    reqs[i].method, reqs[i].path, reqs[i].status, reqs[i].title, reqs[i].state,
                    reqs[i].error);
    }
    if (status != 0)
        fail_msg("exit status %d after SIGTERM (-1: still running after 30 s)", status);
    if (unanswered)
        fail_msg("%d of %d parked requests were not answered 202 with what there was",
                 unanswered, PARKED);
}

/* ---------------------------------------------------------------- main */

static int teardown(void **state)
{
    int st = 0;
    if (g_srv.pid > 0)
        st = rayd_stop(&g_srv);
    stub_stop(g_stub);
    g_stub = NULL;
    return st == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_cancel_queued_remote_task, teardown),
        cmocka_unit_test_teardown(test_sigterm_after_cancel_of_queued_remote_task, teardown),
        cmocka_unit_test_teardown(test_sigterm_with_actors_queued_and_requests_parked,
                                  teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
