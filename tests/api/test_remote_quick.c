/* API tests of quick remote functions ("quick": true) against the real rayd binary and the
 * real example worker (examples/python/worker.py, a child process): the registration's
 * checks and listing; calls answered on the HTTP thread that received them (the function's
 * quick_calls.answered_here counts them) with the normal path's result, error, counters
 * and X-Request-Id; a worker that is down (retried, then WorkerUnavailable) or killed
 * behind a kept-alive connection; a slow answer left to the I/O thread after the short
 * wait (quick_calls.wait_missed) without holding the HTTP request for the whole call; and
 * cancel of such a call in flight.
 *
 * Environment (besides the harness's): RAYD_TEST_WORKER, as in test_remote.c. */
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
#include <sys/wait.h>
#include <unistd.h>

#include "tests/api/support/harness.h"
#include "tests/api/support/tasks_util.h"
#include "tests/api/support/worker.h"

#define ID TK_ID_SIZE

/* --workers 2, allowed to call the worker's port, a second worker's, and a dead port. */
static rayd_server g_srv;
static pid_t g_worker = -1;
static int g_port, g_port2, g_dead_port;

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *out = NULL;
    if (vasprintf(&out, f, ap) < 0)
        fail_msg("vasprintf failed");
    va_end(ap);
    return out;
}

/* PUT /v1/functions/<name> with the body; the response. */
static http_resp *put_fn(const char *name, const char *body)
{
    char *path = fmt("/v1/functions/%s", name);
    const char *h[] = {"Content-Type: application/json", NULL};
    http_resp *r = http_request(&g_srv, "PUT", path, h, body, strlen(body));
    free(path);
    return r;
}

/* Registers `name` as a quick remote function at port's /functions/<endpoint>, with extra
 * members (`extra` is "" or starts with a comma). */
static void register_quick(const char *name, int port, const char *endpoint, const char *extra)
{
    char *body = fmt("{\"url\":\"http://127.0.0.1:%d/functions/%s\",\"quick\":true%s}", port,
                     endpoint, extra);
    http_resp *r = put_fn(name, body);
    if (r->status != 201 && r->status != 200)
        fail_msg("PUT %s %s: %ld %s", name, body, r->status, r->body);
    assert_true(json_is_true(json_member(r->json, "quick")));
    http_resp_free(r);
    free(body);
}

/* The function's quick_calls counter `which` (answered_here or wait_missed). */
static long long quick_count(const char *name, const char *which)
{
    http_resp *r = tk_getf(&g_srv, "/v1/functions/%s", name);
    assert_status(r, 200);
    long long n = json_int(json_member(r->json, "quick_calls"), which);
    http_resp_free(r);
    return n;
}

/* POST /v1/tasks with Prefer: wait=<secs> (and one more header, or NULL). */
static http_resp *submit_wait(const char *body, double secs, const char *extra_header)
{
    char prefer[64];
    snprintf(prefer, sizeof prefer, "Prefer: wait=%g", secs);
    const char *h[] = {"Content-Type: application/json", prefer, extra_header, NULL};
    return http_request(&g_srv, "POST", "/v1/tasks", h, body, strlen(body));
}

/* Calls `body` with Prefer: wait until one call of `name` has been answered on the HTTP
 * thread (the first call of all opens the connection on the I/O thread; a busy machine may
 * miss the wait now and then). check(response) runs on every answer. */
static void call_until_answered_here(const char *name, const char *body,
                                     void (*check)(http_resp *r))
{
    long long here0 = quick_count(name, "answered_here");
    for (double deadline = now_s() + 20; quick_count(name, "answered_here") == here0;) {
        if (now_s() > deadline)
            fail_msg("no call of %s was answered on the HTTP thread", name);
        http_resp *r = submit_wait(body, 10, NULL);
        check(r);
        http_resp_free(r);
    }
}

/* The value of one series in /metrics (0 when absent). */
static double metric_value(const char *series)
{
    http_resp *r = http_get(&g_srv, "/metrics");
    double v = 0;
    size_t n = strlen(series);
    for (const char *p = r->body; p && *p;) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            v = strtod(p + n + 1, NULL);
        const char *nl = strchr(p, '\n');
        p = nl ? nl + 1 : NULL;
    }
    http_resp_free(r);
    return v;
}

/* ---------------------------------------------------------------- tests */

static void test_register_quick(void **state)
{
    static const char *const BAD[] = {"\"yes\"", "1", "null", "{}", "[true]"};
    for (size_t i = 0; i < sizeof BAD / sizeof *BAD; i++) {
        char *body = fmt("{\"url\":\"http://127.0.0.1:%d/functions/wordcount\",\"quick\":%s}",
                         g_port, BAD[i]);
        http_resp *r = put_fn("quick_bad", body);
        assert_problem(r, 400, "BadRequest");
        assert_non_null(strstr(json_str(r->json, "detail"), "quick"));
        http_resp_free(r);
        free(body);
    }
    http_resp *r = tk_getf(&g_srv, "/v1/functions/quick_bad");
    assert_status(r, 404);
    http_resp_free(r);

    register_quick("quick_listed", g_port, "wordcount", ",\"max_retries\":2");
    r = tk_getf(&g_srv, "/v1/functions/quick_listed");
    assert_status(r, 200);
    assert_true(json_is_true(json_member(r->json, "quick")));
    assert_int_equal(json_int(r->json, "max_retries"), 2);
    json_t *qc = json_member(r->json, "quick_calls");
    assert_int_equal(json_int(qc, "answered_here"), 0);
    assert_int_equal(json_int(qc, "wait_missed"), 0);
    http_resp_free(r);
    /* registered again without it: not quick, no quick_calls */
    char *body = fmt("{\"url\":\"http://127.0.0.1:%d/functions/wordcount\"}", g_port);
    r = put_fn("quick_listed", body);
    free(body);
    assert_status(r, 200);
    assert_true(json_is_false(json_member(r->json, "quick")));
    assert_null(json_object_get(r->json, "quick_calls"));
    http_resp_free(r);
}

static void check_five(http_resp *r)
{
    assert_status(r, 200);
    tk_assert_json_eq(r->json, "5");
}

static void check_wc_quick(http_resp *r)
{
    assert_status(r, 200);
    tk_assert_json_eq(r->json, "5");
    assert_non_null(http_header_get(r, "X-Ray-Ref"));
}

/* Answered on the HTTP thread with the normal path's result, counters and metrics. */
static void test_quick_counts_as_normal(void **state)
{
    register_quick("wc_quick2", g_port, "wordcount", "");
    long long finished0 = tk_status_tasks(&g_srv, "finished");
    double ok0 = metric_value("rayd_remote_calls_total{endpoint=\"wc_quick2\",outcome=\"ok\"}");
    long long here0 = quick_count("wc_quick2", "answered_here");
    long long missed0 = quick_count("wc_quick2", "wait_missed");
    /* one call first, so that a kept-alive connection is there */
    http_resp *r =
        submit_wait("{\"function\":\"wc_quick2\",\"args\":[\"the cat and the hat\"]}", 10, NULL);
    check_wc_quick(r);
    http_resp_free(r);
    call_until_answered_here("wc_quick2",
                             "{\"function\":\"wc_quick2\",\"args\":[\"the cat and the hat\"]}",
                             check_wc_quick);
    long long calls = (quick_count("wc_quick2", "answered_here") - here0) +
                      (quick_count("wc_quick2", "wait_missed") - missed0);
    assert_true(calls >= 1);
    /* every call, wherever answered, is a finished task and an ok remote call */
    long long finished = tk_status_tasks(&g_srv, "finished") - finished0;
    double ok = metric_value("rayd_remote_calls_total{endpoint=\"wc_quick2\",outcome=\"ok\"}") - ok0;
    assert_true(finished >= calls + 1);
    assert_true((long long)ok == finished);
}

static void check_request_info(http_resp *r)
{
    assert_status(r, 200);
    assert_string_equal(json_str(r->json, "function"), "req_quick");
}

/* X-Request-Id and traceparent reach the worker on the quick path too. */
static void test_quick_request_id(void **state)
{
    register_quick("req_quick", g_port, "request_info", "");
    call_until_answered_here("req_quick", "{\"function\":\"req_quick\"}", check_request_info);
    /* the connection is kept and idle now: the next call is answered here (or missed) */
    long long here0 = quick_count("req_quick", "answered_here");
    http_resp *r = submit_wait("{\"function\":\"req_quick\"}", 10, "X-Request-Id: rid-quick-7");
    assert_status(r, 200);
    assert_string_equal(http_header_get(r, "X-Request-Id"), "rid-quick-7");
    assert_string_equal(json_str(r->json, "request_id"), "rid-quick-7");
    assert_int_equal(json_int(r->json, "attempt"), 1);
    http_resp_free(r);
    long long here = quick_count("req_quick", "answered_here") - here0;
    long long missed = quick_count("req_quick", "wait_missed");
    assert_true(here == 1 || missed > 0);
}

static void check_fail(http_resp *r)
{
    assert_problem(r, 424, "TaskError");
    assert_int_equal(json_int(r->json, "remote_status"), 500);
    json_t *cause = json_member(r->json, "cause");
    assert_string_equal(json_str(cause, "detail"), "on purpose");
    assert_string_equal(json_str(cause, "remote_title"), "FailedOnPurpose");
}

/* The worker's error: a TaskError stored as problem+json, not retried, counted failed. */
static void test_quick_worker_error(void **state)
{
    register_quick("fail_quick", g_port, "fail", "");
    long long failed0 = tk_status_tasks(&g_srv, "failed");
    long long here0 = quick_count("fail_quick", "answered_here");
    call_until_answered_here("fail_quick", "{\"function\":\"fail_quick\",\"args\":[\"on purpose\"]}",
                             check_fail);
    long long calls = quick_count("fail_quick", "answered_here") - here0 +
                      quick_count("fail_quick", "wait_missed");
    assert_true(tk_status_tasks(&g_srv, "failed") - failed0 >= calls);
    assert_true(metric_value("rayd_remote_calls_total{endpoint=\"fail_quick\",outcome=\"http_5xx\"}") >=
                (double)calls);
    /* stored: the object holds the same problem */
    char tid[ID], ref[ID];
    http_resp *r = submit_wait("{\"function\":\"fail_quick\",\"args\":[\"on purpose\"]}", 10, NULL);
    check_fail(r);
    const char *rr = http_header_get(r, "X-Ray-Ref");
    assert_non_null(rr);
    snprintf(ref, sizeof ref, "%s", rr);
    http_resp_free(r);
    r = tk_error(&g_srv, ref, "TaskError");
    assert_string_equal(json_str(json_member(r->json, "cause"), "detail"), "on purpose");
    snprintf(tid, sizeof tid, "%s", json_str(r->json, "task_id"));
    http_resp_free(r);
    json_t *info = tk_wait_ended(&g_srv, tid, 5);
    assert_string_equal(json_str(info, "state"), "FAILED");
    assert_int_equal(json_int(info, "attempts"), 1);
    json_decref(info);
}

/* Nothing listens: retried on workers as usual, then WorkerUnavailable. */
static void test_quick_worker_down(void **state)
{
    register_quick("down_quick", g_dead_port, "wordcount", ",\"max_retries\":1,\"timeout\":5");
    long long retries0 = tk_status_tasks(&g_srv, "retries");
    http_resp *r = submit_wait("{\"function\":\"down_quick\",\"args\":[\"x\"]}", 10, NULL);
    assert_problem(r, 424, "WorkerUnavailable");
    assert_non_null(strstr(json_str(r->json, "detail"), "could not be reached"));
    http_resp_free(r);
    assert_int_equal(tk_status_tasks(&g_srv, "retries") - retries0, 1);
    assert_true(metric_value(
                    "rayd_remote_calls_total{endpoint=\"down_quick\",outcome=\"unreachable\"}") ==
                2);
}

static void check_three(http_resp *r)
{
    assert_status(r, 200);
    tk_assert_json_eq(r->json, "3");
}

/* A worker killed behind a kept-alive connection: the next call fails over to the normal
 * handling of a broken connection (WorkerUnavailable without retries); a worker back on
 * the port is called again. */
static void test_quick_worker_killed(void **state)
{
    pid_t w2 = worker_start(g_port2, true);
    assert_true(w2 > 0);
    register_quick("killed_quick", g_port2, "wordcount", ",\"timeout\":5");
    call_until_answered_here("killed_quick", "{\"function\":\"killed_quick\",\"args\":[\"a b c\"]}",
                             check_three);
    worker_stop(w2);
    http_resp *r = submit_wait(
        "{\"function\":\"killed_quick\",\"args\":[\"a b c\"],\"options\":{\"max_retries\":0}}", 10,
        NULL);
    assert_problem(r, 424, "WorkerUnavailable");
    http_resp_free(r);
    w2 = worker_start(g_port2, true);
    assert_true(w2 > 0);
    r = submit_wait("{\"function\":\"killed_quick\",\"args\":[\"a b c\"],\"options\":{\"max_retries\":3}}",
                    10, NULL);
    check_three(r);
    http_resp_free(r);
    worker_stop(w2);
}

/* A slow answer: the HTTP thread waits a moment, then the I/O thread reads on; the call's
 * result is the normal one, and the request's own Prefer: wait ends long before the call. */
static void test_quick_slow_falls_back(void **state)
{
    register_quick("slow_quick", g_port, "slow", ",\"timeout\":30");
    /* a kept-alive connection to the worker, idle (calls of another function share it) */
    register_quick("wc_for_slow", g_port, "wordcount", "");
    call_until_answered_here("wc_for_slow", "{\"function\":\"wc_for_slow\",\"args\":[\"a b c d e\"]}",
                             check_five);
    long long missed0 = quick_count("slow_quick", "wait_missed");
    double t0 = now_s();
    http_resp *r = submit_wait("{\"function\":\"slow_quick\",\"kwargs\":{\"seconds\":1.5}}", 0.1, NULL);
    double took = now_s() - t0;
    assert_status(r, 202); /* the receipt: the call goes on */
    if (took > 1.0)
        fail_msg("Prefer: wait=0.1 answered after %.2f s: the HTTP thread waited for the call",
                 took);
    const char *ref = json_str(r->json, "ref");
    http_resp *got = tk_getf(&g_srv, "/v1/objects/%s?timeout=20", ref);
    http_resp_free(r);
    assert_status(got, 200);
    tk_assert_json_eq(got->json, "{\"slept\":1.5}");
    http_resp_free(got);
    assert_int_equal(quick_count("slow_quick", "wait_missed") - missed0, 1);
    assert_int_equal(quick_count("slow_quick", "answered_here"), 0);
}

/* Cancel of a quick call left to the I/O thread: cancelled at once, the connection closed. */
static void test_quick_cancel(void **state)
{
    register_quick("slow_quick_cancel", g_port, "slow", ",\"timeout\":30");
    register_quick("wc_for_cancel", g_port, "wordcount", "");
    call_until_answered_here("wc_for_cancel",
                             "{\"function\":\"wc_for_cancel\",\"args\":[\"a b c d e\"]}", check_five);
    http_resp *r =
        submit_wait("{\"function\":\"slow_quick_cancel\",\"kwargs\":{\"seconds\":10}}", 0.1, NULL);
    assert_status(r, 202);
    char tid[ID];
    snprintf(tid, sizeof tid, "%s", json_str(r->json, "task_id"));
    http_resp_free(r);
    assert_int_equal(quick_count("slow_quick_cancel", "wait_missed"), 1);
    json_decref(tk_wait_state(&g_srv, tid, "RUNNING", 5));
    double t0 = now_s();
    char *path = fmt("/v1/tasks/%s/cancel", tid);
    r = http_post_json(&g_srv, path, "{}");
    free(path);
    assert_status(r, 202);
    http_resp_free(r);
    json_decref(tk_wait_state(&g_srv, tid, "CANCELLED", 1.0));
    if (now_s() - t0 > 1.0)
        fail_msg("cancelled after %.2f s", now_s() - t0);
    json_t *info = tk_info(&g_srv, tid);
    assert_int_equal(json_int(info, "attempts"), 1);
    json_decref(info);
    assert_true(metric_value("rayd_remote_calls_total{endpoint=\"slow_quick_cancel\","
                             "outcome=\"cancelled\"}") == 1);
}

/* max_concurrency holds: a quick call that finds the slot taken waits in the FIFO and is
 * sent when the call holding it (one left to the I/O thread) completes. */
static void test_quick_max_concurrency(void **state)
{
    register_quick("slow_quick_mc1", g_port, "slow", ",\"max_concurrency\":1,\"timeout\":30");
    register_quick("wc_for_mc", g_port, "wordcount", "");
    call_until_answered_here("wc_for_mc", "{\"function\":\"wc_for_mc\",\"args\":[\"a b c d e\"]}",
                             check_five);
    http_resp *r =
        submit_wait("{\"function\":\"slow_quick_mc1\",\"kwargs\":{\"seconds\":0.5}}", 0.1, NULL);
    assert_status(r, 202);
    char first[ID];
    snprintf(first, sizeof first, "%s", json_str(r->json, "task_id"));
    http_resp_free(r);
    r = submit_wait("{\"function\":\"slow_quick_mc1\",\"kwargs\":{\"seconds\":0.01}}", 20, NULL);
    assert_status(r, 200);
    tk_assert_json_eq(r->json, "{\"slept\":0.01}");
    http_resp_free(r);
    /* the second was sent only once the first had its answer */
    json_t *info = tk_info(&g_srv, first);
    assert_string_equal(json_str(info, "state"), "FINISHED");
    json_decref(info);
}

/* ---------------------------------------------------------------- main */

static int group_setup(void **state)
{
    g_port = free_port();
    do
        g_port2 = free_port();
    while (g_port2 == g_port);
    do
        g_dead_port = free_port();
    while (g_dead_port == g_port || g_dead_port == g_port2);
    if (g_port <= 0 || g_port2 <= 0 || g_dead_port <= 0)
        return -1;
    g_worker = worker_start(g_port, true);
    if (g_worker <= 0)
        return -1;
    char allow[200];
    snprintf(allow, sizeof allow, "http://127.0.0.1:%d,http://127.0.0.1:%d,http://127.0.0.1:%d",
             g_port, g_port2, g_dead_port);
    const char *args[] = {"--workers", "2", "--remote-allow", allow, NULL};
    if (rayd_start(&g_srv, args, NULL) != 0) {
        worker_stop(g_worker);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    int st = rayd_stop(&g_srv);
    worker_stop(g_worker);
    return st == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_quick),
        cmocka_unit_test(test_quick_counts_as_normal),
        cmocka_unit_test(test_quick_request_id),
        cmocka_unit_test(test_quick_worker_error),
        cmocka_unit_test(test_quick_worker_down),
        cmocka_unit_test(test_quick_worker_killed),
        cmocka_unit_test(test_quick_slow_falls_back),
        cmocka_unit_test(test_quick_cancel),
        cmocka_unit_test(test_quick_max_concurrency),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
