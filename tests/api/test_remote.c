/* API tests of remote functions and remote actor classes against the real rayd binary and
 * the real example worker (examples/python/worker.py, run as a child process): registration
 * and the allowlist, results end to end, X-Request-Id passed on, non-2xx answers as
 * TaskError with the endpoint's problem as cause, timeouts and unreachable endpoints retried
 * then WorkerUnavailable, an endpoint that comes back, answers over --max-body, cancel of a
 * call in flight, max_concurrency, calls in flight holding no worker thread, actor state
 * carried across calls (and kept on a failed call), DELETE, and $bytes arguments.
 *
 * Environment (besides the harness's): RAYD_TEST_WORKER, the worker script (default
 * examples/python/worker.py, run with python3 from the repository root; a .js script runs
 * with node, e.g. examples/node/worker.js). */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/api/support/harness.h"
#include "tests/api/support/tasks_util.h"
#include "tests/api/support/worker.h"

#define ID TK_ID_SIZE

/* The main server: --workers 2 --max-body 1M, allowed to call both worker ports. */
static rayd_server g_srv;
/* The worker that runs for the whole group, and the port of one that starts late. */
static pid_t g_worker = -1;
static int g_port, g_late_port;

/* ---------------------------------------------------------------- helpers */

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

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("\"%s\" does not contain \"%s\"", hay ? hay : "(null)", needle);
}

/* tmpl with every "{P}" replaced by the worker's port (new string). */
static char *with_port(const char *tmpl)
{
    char port[16];
    snprintf(port, sizeof port, "%d", g_port);
    size_t cap = strlen(tmpl) * 2 + 32;
    char *out = malloc(cap), *o = out;
    for (const char *p = tmpl; *p;) {
        if (strncmp(p, "{P}", 3) == 0) {
            o = stpcpy(o, port);
            p += 3;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    char **buf = arg;
    size_t old = *buf ? strlen(*buf) : 0, len = size * n;
    char *grown = realloc(*buf, old + len + 1);
    if (!grown)
        return 0;
    memcpy(grown + old, data, len);
    grown[old + len] = '\0';
    *buf = grown;
    return len;
}

/* GET /stats from the worker (not through rayd): {name: {calls, in_flight, max_in_flight,
 * disconnects}}. The entry for `function` (new reference; zeros when absent). */
static json_t *worker_stats(const char *function)
{
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/stats", g_port);
    CURL *c = curl_easy_init();
    char *body = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK || !body)
        fail_msg("GET %s: %s", url, curl_easy_strerror(rc));
    json_t *all = json_loads(body, 0, NULL);
    free(body);
    if (!json_is_object(all))
        fail_msg("worker stats are not a JSON object");
    json_t *one = json_object_get(all, function);
    json_t *out = one ? json_incref(one)
                      : json_pack("{s:i,s:i,s:i,s:i}", "calls", 0, "in_flight", 0,
                                  "max_in_flight", 0, "disconnects", 0);
    json_decref(all);
    return out;
}

/* PUT `path` with a JSON body; returns the response. */
static http_resp *put_json(const rayd_server *s, const char *path, const char *body)
{
    const char *h[] = {"Content-Type: application/json", NULL};
    return http_request(s, "PUT", path, h, body, strlen(body));
}

/* Registers a remote function `name` at the worker's /functions/<endpoint> with extra
 * members (`extra` is "" or starts with a comma); asserts 201 or 200. */
static void register_fn(const char *name, int port, const char *endpoint, const char *extra)
{
    char *path = fmt("/v1/functions/%s", name);
    char *body = fmt("{\"url\":\"http://127.0.0.1:%d/functions/%s\"%s}", port, endpoint, extra);
    http_resp *r = put_json(&g_srv, path, body);
    if (r->status != 201 && r->status != 200)
        fail_msg("PUT %s %s: %ld %s", path, body, r->status, r->body);
    assert_string_equal(json_str(r->json, "kind"), "remote");
    http_resp_free(r);
    free(path);
    free(body);
}

/* POST /v1/tasks with Prefer: wait=<secs> (and more headers); returns the response. */
static http_resp *submit_wait(const char *body, double secs, const char *extra_header)
{
    char prefer[64];
    snprintf(prefer, sizeof prefer, "Prefer: wait=%g", secs);
    const char *h[] = {"Content-Type: application/json", prefer, extra_header, NULL};
    return http_request(&g_srv, "POST", "/v1/tasks", h, body, strlen(body));
}

/* ---------------------------------------------------------------- registration */

static void test_register(void **state)
{
    char *body = fmt("{\"url\":\"http://127.0.0.1:%d/functions/wordcount\",\"timeout\":2.5,"
                     "\"max_concurrency\":7,\"max_retries\":4}",
                     g_port);
    http_resp *r = put_json(&g_srv, "/v1/functions/reg_wc", body);
    assert_status(r, 201);
    assert_string_equal(json_str(r->json, "name"), "reg_wc");
    assert_string_equal(json_str(r->json, "kind"), "remote");
    assert_true(json_num(r->json, "timeout") == 2.5);
    assert_int_equal(json_int(r->json, "max_concurrency"), 7);
    assert_int_equal(json_int(r->json, "max_retries"), 4);
    http_resp_free(r);
    /* again: replaced */
    r = put_json(&g_srv, "/v1/functions/reg_wc", body);
    assert_status(r, 200);
    http_resp_free(r);
    free(body);
    /* the defaults, and GET /v1/functions/{name} */
    body = fmt("{\"url\":\"http://127.0.0.1:%d/functions/wordcount\"}", g_port);
    r = put_json(&g_srv, "/v1/functions/reg_wc", body);
    assert_status(r, 200);
    http_resp_free(r);
    r = http_get(&g_srv, "/v1/functions/reg_wc");
    assert_status(r, 200);
    char *url = fmt("http://127.0.0.1:%d/functions/wordcount", g_port);
    assert_string_equal(json_str(r->json, "url"), url);
    assert_string_equal(json_str(r->json, "kind"), "remote");
    json_num(r->json, "timeout");
    assert_int_equal(json_int(r->json, "max_retries"), 3);
    assert_int_equal(json_int(r->json, "max_concurrency"), 0);
    http_resp_free(r);
    /* listed with kind remote */
    r = http_get(&g_srv, "/v1/functions");
    assert_status(r, 200);
    bool found = false;
    size_t i;
    json_t *fn;
    json_array_foreach(json_member(r->json, "functions"), i, fn)
    {
        if (strcmp(json_str(fn, "name"), "reg_wc") == 0) {
            found = true;
            assert_string_equal(json_str(fn, "kind"), "remote");
            assert_string_equal(json_str(fn, "url"), url);
        }
    }
    assert_true(found);
    http_resp_free(r);

    /* a built-in name */
    r = put_json(&g_srv, "/v1/functions/add", body);
    assert_problem(r, 409, "Conflict");
    http_resp_free(r);
    free(body);
    /* outside the allowlist: another port, another host, a longer port */
    const char *outside[] = {"http://127.0.0.1:1/functions/wordcount",
                             "http://localhost:{P}/functions/wordcount",
                             "http://127.0.0.1:{P}0/x", "https://127.0.0.1:{P}/x"};
    for (size_t k = 0; k < sizeof outside / sizeof *outside; k++) {
        char *u = with_port(outside[k]);
        body = fmt("{\"url\":\"%s\"}", u);
        r = put_json(&g_srv, "/v1/functions/reg_out", body);
        if (r->status != 403)
            fprintf(stderr, "url %s\n", u);
        assert_problem(r, 403, "Forbidden");
        http_resp_free(r);
        free(body);
        free(u);
    }
    r = http_get(&g_srv, "/v1/functions/reg_out");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    /* bad bodies */
    const char *bad[] = {"{\"url\":\"ftp://127.0.0.1/x\"}", "{\"url\":\"not a url\"}",
                         "{\"url\":42}", "{}", "[]",
                         "{\"url\":\"http://127.0.0.1:{P}/x\",\"timeout\":-1}",
                         "{\"url\":\"http://127.0.0.1:{P}/x\",\"max_retries\":\"3\"}",
                         "{\"url\":\"http://127.0.0.1:{P}/x\",\"max_concurrency\":-2}",
                         "{\"url\":\"http://127.0.0.1:{P}/x\",\"colour\":\"red\"}", "{\"url\":"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        body = with_port(bad[k]);
        r = put_json(&g_srv, "/v1/functions/reg_bad", body);
        if (r->status != 400)
            fprintf(stderr, "body %s\n", body);
        assert_problem(r, 400, "BadRequest");
        http_resp_free(r);
        free(body);
    }

    /* actor classes: the same rules */
    body = fmt("{\"url\":\"http://127.0.0.1:%d/classes/Account\",\"timeout\":5}", g_port);
    r = put_json(&g_srv, "/v1/actor-classes/RegAccount", body);
    assert_status(r, 201);
    assert_string_equal(json_str(r->json, "kind"), "remote");
    assert_string_equal(json_str(r->json, "name"), "RegAccount");
    assert_true(json_num(r->json, "timeout") == 5);
    http_resp_free(r);
    r = put_json(&g_srv, "/v1/actor-classes/RegAccount", body);
    assert_status(r, 200);
    http_resp_free(r);
    r = put_json(&g_srv, "/v1/actor-classes/Counter", body);
    assert_problem(r, 409, "Conflict");
    http_resp_free(r);
    free(body);
    r = put_json(&g_srv, "/v1/actor-classes/RegOut", "{\"url\":\"http://127.0.0.1:1/x\"}");
    assert_problem(r, 403, "Forbidden");
    http_resp_free(r);
    r = put_json(&g_srv, "/v1/actor-classes/RegBad", "{\"url\":\"gopher://x\"}");
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
    r = http_get(&g_srv, "/v1/actor-classes");
    assert_status(r, 200);
    found = false;
    json_array_foreach(json_member(r->json, "classes"), i, fn)
    {
        if (strcmp(json_str(fn, "name"), "RegAccount") == 0) {
            found = true;
            assert_string_equal(json_str(fn, "kind"), "remote");
            assert_contains(json_str(fn, "url"), "/classes/Account");
        }
        assert_true(strcmp(json_str(fn, "name"), "RegOut") != 0);
    }
    assert_true(found);
    http_resp_free(r);
    r = http_delete(&g_srv, "/v1/actor-classes/RegAccount");
    assert_status(r, 204);
    http_resp_free(r);
    r = http_delete(&g_srv, "/v1/actor-classes/RegAccount");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    r = http_delete(&g_srv, "/v1/actor-classes/Counter");
    assert_problem(r, 409, "Conflict");
    http_resp_free(r);
    free(url);
}

/* A server without an allowlist refuses every registration, and says how to enable it. */
static void test_allowlist_empty(void **state)
{
    rayd_server s;
    unsetenv("RAYD_REMOTE_ALLOW"); /* (an empty value is refused at start-up) */
    assert_int_equal(rayd_start(&s, NULL, NULL), 0);
    char *body = fmt("{\"url\":\"http://127.0.0.1:%d/functions/wordcount\"}", g_port);
    http_resp *r = put_json(&s, "/v1/functions/wc", body);
    assert_problem(r, 403, "Forbidden");
    assert_contains(json_str(r->json, "detail"), "RAYD_REMOTE_ALLOW");
    assert_contains(json_str(r->json, "detail"), "--remote-allow");
    http_resp_free(r);
    free(body);
    body = fmt("{\"url\":\"http://127.0.0.1:%d/classes/Account\"}", g_port);
    r = put_json(&s, "/v1/actor-classes/Account", body);
    assert_problem(r, 403, "Forbidden");
    assert_contains(json_str(r->json, "detail"), "RAYD_REMOTE_ALLOW");
    http_resp_free(r);
    free(body);
    r = http_get(&s, "/v1/functions/wc");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    assert_int_equal(rayd_stop(&s), 0);
}

/* ---------------------------------------------------------------- tasks */

static void test_end_to_end(void **state)
{
    register_fn("wordcount", g_port, "wordcount", "");
    http_resp *r =
        submit_wait("{\"function\":\"wordcount\",\"args\":[\"the cat and the hat\"]}", 10, NULL);
    assert_status(r, 200);
    tk_assert_json_eq(r->json, "5");
    assert_non_null(http_header_get(r, "X-Ray-Ref"));
    http_resp_free(r);
    /* kwargs, and a chain: the remote result feeds a built-in task */
    char tid[ID], ref[ID], ref2[ID];
    tk_submit(&g_srv, "{\"function\":\"wordcount\",\"kwargs\":{\"text\":\"a b c d e f\"}}", tid,
              ref);
    tk_submitf(NULL, ref2, &g_srv, "{\"function\":\"mul\",\"args\":[{\"$ref\":\"%s\"},10]}", ref);
    json_t *v = tk_value(&g_srv, ref2);
    tk_assert_json_eq(v, "60");
    json_decref(v);
    json_t *info = tk_wait_ended(&g_srv, tid, 5);
    assert_string_equal(json_str(info, "state"), "FINISHED");
    assert_int_equal(json_int(info, "attempts"), 1);
    assert_string_equal(json_str(info, "function"), "wordcount");
    json_decref(info);
    /* and the other way round: a built-in result feeds the remote function */
    tk_submitf(NULL, ref, &g_srv, "{\"function\":\"concat\",\"args\":[\"one two \",\"three\"]}");
    char *body = fmt("{\"function\":\"wordcount\",\"args\":[{\"$ref\":\"%s\"}]}", ref);
    r = submit_wait(body, 10, NULL);
    free(body);
    assert_status(r, 200);
    tk_assert_json_eq(r->json, "3");
    http_resp_free(r);
    /* the endpoint's own 400 problem is a TaskError too */
    r = submit_wait("{\"function\":\"wordcount\",\"args\":[42]}", 10, NULL);
    assert_problem(r, 424, "TaskError");
    assert_int_equal(json_int(r->json, "remote_status"), 400);
    assert_string_equal(json_str(json_member(r->json, "cause"), "remote_title"), "BadArgument");
    http_resp_free(r);
}

static void test_request_id_propagated(void **state)
{
    register_fn("request_info", g_port, "request_info", "");
    http_resp *r = submit_wait("{\"function\":\"request_info\"}", 10, "X-Request-Id: rid-remote-42");
    assert_status(r, 200);
    assert_string_equal(http_header_get(r, "X-Request-Id"), "rid-remote-42");
    assert_string_equal(json_str(r->json, "request_id"), "rid-remote-42");
    assert_string_equal(json_str(r->json, "function"), "request_info");
    assert_int_equal(json_int(r->json, "attempt"), 1);
    assert_true(is_valid_ref(json_str(r->json, "task_id")));
    http_resp_free(r);
}

static void test_non_2xx_is_task_error(void **state)
{
    register_fn("failing", g_port, "fail", "");
    char tid[ID], ref[ID];
    tk_submit(&g_srv, "{\"function\":\"failing\",\"args\":[\"the disk is full\"]}", tid, ref);
    http_resp *r = tk_error(&g_srv, ref, "TaskError");
    assert_int_equal(json_int(r->json, "remote_status"), 500);
    assert_string_equal(json_str(r->json, "function"), "failing");
    json_t *cause = json_member(r->json, "cause");
    assert_string_equal(json_str(cause, "detail"), "the disk is full");
    assert_string_equal(json_str(cause, "remote_title"), "FailedOnPurpose");
    assert_int_equal(json_int(cause, "remote_status"), 500);
    assert_string_equal(json_str(cause, "function"), "failing"); /* the endpoint's extension */
    http_resp_free(r);
    json_t *info = tk_wait_ended(&g_srv, tid, 5);
    assert_string_equal(json_str(info, "state"), "FAILED");
    assert_int_equal(json_int(info, "attempts"), 1); /* a function error is not retried */
    json_decref(info);
    /* Prefer: wait answers the same problem at once */
    r = submit_wait("{\"function\":\"failing\",\"args\":[\"again\"]}", 10, NULL);
    assert_problem(r, 424, "TaskError");
    assert_string_equal(json_str(json_member(r->json, "cause"), "detail"), "again");
    http_resp_free(r);
    /* a dependent fails with this error as its cause */
    tk_submitf(NULL, ref, &g_srv, "{\"function\":\"failing\",\"args\":[\"deep\"]}");
    char ref2[ID];
    tk_submitf(NULL, ref2, &g_srv, "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},1]}", ref);
    r = tk_error(&g_srv, ref2, "TaskError");
    json_t *c1 = json_member(r->json, "cause");
    assert_int_equal(json_int(c1, "remote_status"), 500);
    assert_string_equal(json_str(json_member(c1, "cause"), "detail"), "deep");
    http_resp_free(r);
}

/* The endpoint sleeps past the function's timeout: each attempt times out, is retried
 * (max_retries 1 from the registration), then WorkerUnavailable. */
static void test_timeout_then_worker_unavailable(void **state)
{
    register_fn("slow_short", g_port, "slow", ",\"timeout\":0.3,\"max_retries\":1");
    char tid[ID], ref[ID];
    double t0 = now_s();
    tk_submit(&g_srv, "{\"function\":\"slow_short\",\"kwargs\":{\"seconds\":3}}", tid, ref);
    http_resp *r = tk_error(&g_srv, ref, "WorkerUnavailable");
    double took = now_s() - t0;
    assert_string_equal(json_str(r->json, "function"), "slow_short");
    http_resp_free(r);
    json_t *info = tk_wait_ended(&g_srv, tid, 5);
    assert_string_equal(json_str(info, "state"), "FAILED");
    assert_int_equal(json_int(info, "attempts"), 2);
    json_decref(info);
    if (took < 0.55 || took > 2.5)
        fail_msg("two 0.3 s attempts took %.2f s", took);
}

/* Nothing listens: retried, then WorkerUnavailable; then the endpoint comes up while a task
 * with max_retries 5 is retrying, and that task succeeds. */
static void test_endpoint_comes_back(void **state)
{
    register_fn("late", g_late_port, "wordcount", ",\"timeout\":5");
    char tid[ID], ref[ID];
    tk_submit(&g_srv,
              "{\"function\":\"late\",\"args\":[\"x\"],\"options\":{\"max_retries\":0}}", tid,
              ref);
    http_resp *r = tk_error(&g_srv, ref, "WorkerUnavailable");
    assert_contains(json_str(r->json, "detail"), "could not be reached");
    http_resp_free(r);
    json_t *info = tk_wait_ended(&g_srv, tid, 5);
    assert_int_equal(json_int(info, "attempts"), 1);
    json_decref(info);

    long long retries0 = tk_status_tasks(&g_srv, "retries");
    tk_submit(&g_srv,
              "{\"function\":\"late\",\"args\":[\"back in business\"],"
              "\"options\":{\"max_retries\":10}}",
              tid, ref);
    /* the worker comes up once an attempt has failed and been retried, as the server says */
    for (double deadline = now_s() + 10; tk_status_tasks(&g_srv, "retries") <= retries0;
         sleep_s(0.01))
        if (now_s() > deadline)
            fail_msg("no retry of the call to the endpoint that is down");
    /* up and accepting before the backoff (0.05 s doubling, at most 5 s: about 20 s for
     * 10 retries) runs out, even where a Python start takes seconds */
    pid_t late = worker_start(g_late_port, true);
    assert_true(late > 0);
    http_resp *got = tk_getf(&g_srv, "/v1/objects/%s?timeout=20", ref);
    worker_stop(late);
    assert_status(got, 200);
    tk_assert_json_eq(got->json, "3");
    http_resp_free(got);
    info = tk_wait_ended(&g_srv, tid, 5);
    assert_string_equal(json_str(info, "state"), "FINISHED");
    long long attempts = json_int(info, "attempts");
    json_decref(info);
    if (attempts < 2 || attempts > 11)
        fail_msg("attempts %lld, wanted 2..11", attempts);
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

/* rayd runs with --max-body 1M: a 2 MiB answer is a TaskError naming the limit, counted
 * with the outcome too_large; 512 KiB arrives whole, as bytes with the endpoint's
 * Content-Type. */
static void test_answer_over_max_body(void **state)
{
    register_fn("big", g_port, "big", "");
    char tid[ID], ref[ID];
    tk_submit(&g_srv, "{\"function\":\"big\",\"kwargs\":{\"size\":2097152}}", tid, ref);
    http_resp *r = tk_error(&g_srv, ref, "TaskError");
    assert_contains(json_str(r->json, "detail"), "1048576");
    http_resp_free(r);
    json_t *info = tk_wait_ended(&g_srv, tid, 5);
    assert_int_equal(json_int(info, "attempts"), 1);
    json_decref(info);
    assert_int_equal(
        (int)metric_value("rayd_remote_calls_total{endpoint=\"big\",outcome=\"too_large\"}"), 1);

    tk_submit(&g_srv, "{\"function\":\"big\",\"kwargs\":{\"size\":524288}}", NULL, ref);
    r = tk_getf(&g_srv, "/v1/objects/%s?timeout=20", ref);
    assert_status(r, 200);
    assert_true(http_ct_is(r, "application/octet-stream"));
    assert_int_equal(r->body_len, 524288);
    assert_int_equal(r->body[0], 'x');
    assert_int_equal(r->body[524287], 'x');
    http_resp_free(r);
}

static void test_cancel_in_flight(void **state)
{
    register_fn("slow_cancel", g_port, "slow", ",\"timeout\":30");
    char tid[ID], ref[ID];
    tk_submit(&g_srv, "{\"function\":\"slow_cancel\",\"kwargs\":{\"seconds\":10}}", tid, ref);
    json_decref(tk_wait_state(&g_srv, tid, "RUNNING", 5));
    /* wait until the worker has it */
    double deadline = now_s() + 5;
    for (;;) {
        json_t *st = worker_stats("slow_cancel");
        long long in = json_int(st, "in_flight");
        json_decref(st);
        if (in == 1)
            break;
        if (now_s() > deadline)
            fail_msg("the worker never saw the call");
        sleep_s(0.01);
    }
    double t0 = now_s();
    char *path = fmt("/v1/tasks/%s/cancel", tid);
    http_resp *r = http_post_json(&g_srv, path, "{}");
    free(path);
    assert_status(r, 202);
    http_resp_free(r);
    json_t *info = tk_wait_state(&g_srv, tid, "CANCELLED", 1.0);
    json_decref(info);
    double took = now_s() - t0;
    if (took > 1.0)
        fail_msg("cancelled after %.2f s", took);
    r = tk_error(&g_srv, ref, "TaskCancelled");
    http_resp_free(r);
    info = tk_info(&g_srv, tid);
    assert_int_equal(json_int(info, "attempts"), 1); /* never retried */
    json_decref(info);
    /* the worker saw the connection closed */
    deadline = now_s() + 2;
    for (;;) {
        json_t *st = worker_stats("slow_cancel");
        long long gone = json_int(st, "disconnects"), in = json_int(st, "in_flight");
        long long calls = json_int(st, "calls");
        json_decref(st);
        if (gone == 1 && in == 0) {
            assert_int_equal(calls, 1);
            break;
        }
        if (now_s() > deadline)
            fail_msg("the worker did not see the connection close (disconnects %lld)", gone);
        sleep_s(0.02);
    }
}

static void test_max_concurrency(void **state)
{
    register_fn("slow_mc2", g_port, "slow", ",\"max_concurrency\":2");
    enum { N = 6 };
    char body[2048] = "{\"tasks\":[";
    for (int i = 0; i < N; i++)
        snprintf(body + strlen(body), sizeof body - strlen(body),
                 "%s{\"function\":\"slow_mc2\",\"kwargs\":{\"seconds\":0.25}}", i ? "," : "");
    strcat(body, "]}");
    double t0 = now_s();
    http_resp *r = http_post_json(&g_srv, "/v1/tasks/batch", body);
    assert_status(r, 202);
    json_t *refs = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(json_member(r->json, "tasks"), i, t)
        json_array_append_new(refs, json_string(json_str(t, "ref")));
    http_resp_free(r);
    char *refs_s = json_dumps(refs, JSON_COMPACT);
    char *wb = fmt("{\"refs\":%s,\"num_returns\":%d,\"timeout\":10}", refs_s, N);
    r = http_post_json(&g_srv, "/v1/wait", wb);
    assert_status(r, 200);
    assert_int_equal(json_array_size(json_member(r->json, "ready")), N);
    http_resp_free(r);
    double took = now_s() - t0;
    json_t *st = worker_stats("slow_mc2");
    assert_int_equal(json_int(st, "calls"), N);
    assert_int_equal(json_int(st, "max_in_flight"), 2);
    json_decref(st);
    if (took < 0.7) /* three rounds of 0.25 s */
        fail_msg("6 calls of 0.25 s two at a time took %.2f s", took);
    for (i = 0; i < N; i++) {
        json_t *v = tk_value(&g_srv, json_string_value(json_array_get(refs, i)));
        tk_assert_json_eq(v, "{\"slept\":0.25}");
        json_decref(v);
    }
    free(wb);
    free(refs_s);
    json_decref(refs);
}

/* With --workers 2, 200 remote calls in flight hold no worker: a built-in task still runs at
 * once. */
static void test_in_flight_calls_hold_no_worker(void **state)
{
    register_fn("slow_many", g_port, "slow", ",\"timeout\":20");
    enum { N = 200 };
    size_t cap = 64 + N * 64;
    char *body = malloc(cap);
    strcpy(body, "{\"tasks\":[");
    for (int i = 0; i < N; i++)
        snprintf(body + strlen(body), cap - strlen(body),
                 "%s{\"function\":\"slow_many\",\"kwargs\":{\"seconds\":1}}", i ? "," : "");
    strcat(body, "]}");
    http_resp *r = http_post_json(&g_srv, "/v1/tasks/batch", body);
    free(body);
    assert_status(r, 202);
    json_t *refs = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(json_member(r->json, "tasks"), i, t)
        json_array_append_new(refs, json_string(json_str(t, "ref")));
    http_resp_free(r);
    /* wait until many are at the worker */
    double deadline = now_s() + 5;
    long long in = 0;
    while (now_s() < deadline) {
        json_t *st = worker_stats("slow_many");
        in = json_int(st, "in_flight");
        json_decref(st);
        if (in >= 50)
            break;
        sleep_s(0.01);
    }
    if (in < 50)
        fail_msg("only %lld calls reached the worker", in);
    double t0 = now_s();
    r = submit_wait("{\"function\":\"add\",\"args\":[1,2]}", 2, NULL);
    double took = now_s() - t0;
    assert_status(r, 200);
    tk_assert_json_eq(r->json, "3");
    http_resp_free(r);
    if (took > 0.5)
        fail_msg("add took %.2f s with remote calls in flight", took);
    char *refs_s = json_dumps(refs, JSON_COMPACT);
    char *wb = fmt("{\"refs\":%s,\"num_returns\":%d,\"timeout\":15}", refs_s, N);
    r = http_post_json(&g_srv, "/v1/wait", wb);
    assert_status(r, 200);
    assert_int_equal(json_array_size(json_member(r->json, "ready")), N);
    http_resp_free(r);
    free(wb);
    wb = fmt("{\"refs\":%s}", refs_s);
    r = http_post_json(&g_srv, "/v1/objects/get", wb);
    assert_status(r, 200);
    json_array_foreach(json_member(r->json, "objects"), i, t)
    {
        if (strcmp(json_str(t, "state"), "ready") != 0)
            fail_msg("call %zu: state %s", i, json_str(t, "state"));
        tk_assert_json_eq(json_member(t, "value"), "{\"slept\":1}");
    }
    http_resp_free(r);
    free(wb);
    free(refs_s);
    json_decref(refs);
    json_t *st = worker_stats("slow_many");
    assert_int_equal(json_int(st, "calls"), N); /* none retried */
    json_decref(st);
}

static void test_delete_function(void **state)
{
    register_fn("temp_wc", g_port, "wordcount", "");
    http_resp *r = submit_wait("{\"function\":\"temp_wc\",\"args\":[\"x y\"]}", 10, NULL);
    assert_status(r, 200);
    http_resp_free(r);
    r = http_delete(&g_srv, "/v1/functions/temp_wc");
    assert_status(r, 204);
    assert_int_equal(r->body_len, 0);
    http_resp_free(r);
    r = http_get(&g_srv, "/v1/functions/temp_wc");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    r = http_post_json(&g_srv, "/v1/tasks", "{\"function\":\"temp_wc\",\"args\":[\"x\"]}");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    r = http_delete(&g_srv, "/v1/functions/temp_wc");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    r = http_delete(&g_srv, "/v1/functions/add");
    assert_problem(r, 409, "Conflict");
    http_resp_free(r);
    /* a registration after the delete works again */
    register_fn("temp_wc", g_port, "wordcount", "");
    r = http_delete(&g_srv, "/v1/functions/temp_wc");
    assert_status(r, 204);
    http_resp_free(r);
}

static void test_bytes_argument(void **state)
{
    register_fn("byte_length", g_port, "byte_length", "");
    unsigned char data[1000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 7); /* zeros and high bytes included */
    char ref[ID];
    put_object(&g_srv, "image/png", data, sizeof data, ref);
    char *body = fmt("{\"function\":\"byte_length\",\"args\":[{\"$ref\":\"%s\"}]}", ref);
    http_resp *r = submit_wait(body, 10, NULL);
    free(body);
    assert_status(r, 200);
    tk_assert_json_eq(r->json, "{\"bytes\":1000,\"content_type\":\"image/png\"}");
    http_resp_free(r);
    /* as a kwarg too, and a $bytes literal */
    body = fmt("{\"function\":\"byte_length\",\"kwargs\":{\"data\":{\"$ref\":\"%s\"}}}", ref);
    r = submit_wait(body, 10, NULL);
    free(body);
    assert_status(r, 200);
    tk_assert_json_eq(r->json, "{\"bytes\":1000,\"content_type\":\"image/png\"}");
    http_resp_free(r);
    r = submit_wait("{\"function\":\"byte_length\",\"args\":[\"h\\u00e9\"]}", 10, NULL);
    assert_status(r, 200);
    tk_assert_json_eq(r->json, "{\"bytes\":3,\"content_type\":null}");
    http_resp_free(r);
}

/* ---------------------------------------------------------------- actors */

static json_t *actor_info(const char *id)
{
    http_resp *r = tk_getf(&g_srv, "/v1/actors/%s", id);
    assert_status(r, 200);
    json_t *v = json_incref(r->json);
    http_resp_free(r);
    return v;
}

/* POST a method call; returns its ref. */
static void call_method(const char *id, const char *method, const char *body, char *ref)
{
    char *path = fmt("/v1/actors/%s/methods/%s", id, method);
    http_resp *r = http_post_json(&g_srv, path, body);
    free(path);
    assert_status(r, 202);
    snprintf(ref, ID, "%s", json_str(r->json, "ref"));
    http_resp_free(r);
}

static http_resp *call_wait(const char *id, const char *method, const char *body)
{
    char *path = fmt("/v1/actors/%s/methods/%s", id, method);
    const char *h[] = {"Content-Type: application/json", "Prefer: wait=10", NULL};
    http_resp *r = http_request(&g_srv, "POST", path, h, body, strlen(body));
    free(path);
    return r;
}

static void test_actor_state_across_calls(void **state)
{
    char *body = fmt("{\"url\":\"http://127.0.0.1:%d/classes/Account\",\"timeout\":10}", g_port);
    http_resp *r = put_json(&g_srv, "/v1/actor-classes/Account", body);
    free(body);
    assert_true(r->status == 201 || r->status == 200);
    http_resp_free(r);
    r = http_post_json(&g_srv, "/v1/actors", "{\"class\":\"Account\",\"args\":[100]}");
    assert_status(r, 201);
    char id[ID];
    snprintf(id, ID, "%s", json_str(r->json, "actor_id"));
    http_resp_free(r);

    char ref[ID];
    for (int i = 0; i < 100; i++)
        call_method(id, "deposit", "{\"args\":[1]}", ref);
    json_t *v = tk_value(&g_srv, ref);
    tk_assert_json_eq(v, "200");
    json_decref(v);
    r = call_wait(id, "balance", "{}");
    assert_status(r, 200);
    tk_assert_json_eq(r->json, "200");
    http_resp_free(r);

    /* a failing call leaves the state alone */
    r = call_wait(id, "withdraw", "{\"args\":[1000]}");
    assert_problem(r, 424, "TaskError");
    assert_int_equal(json_int(r->json, "remote_status"), 409);
    assert_string_equal(json_str(r->json, "method"), "withdraw");
    json_t *cause = json_member(r->json, "cause");
    assert_string_equal(json_str(cause, "remote_title"), "InsufficientFunds");
    assert_int_equal(json_int(cause, "balance"), 200);
    http_resp_free(r);
    /* any method name is sent; the endpoint's 404 is a TaskError */
    r = call_wait(id, "fly", "{}");
    assert_problem(r, 424, "TaskError");
    assert_int_equal(json_int(r->json, "remote_status"), 404);
    assert_string_equal(json_str(json_member(r->json, "cause"), "remote_title"), "NoSuchMethod");
    http_resp_free(r);
    r = call_wait(id, "withdraw", "{\"kwargs\":{\"n\":50}}");
    assert_status(r, 200);
    tk_assert_json_eq(r->json, "150");
    http_resp_free(r);
    r = call_wait(id, "balance", "{}");
    assert_status(r, 200);
    tk_assert_json_eq(r->json, "150");
    http_resp_free(r);
    json_t *info = actor_info(id);
    assert_string_equal(json_str(info, "state"), "ALIVE");
    assert_int_equal(json_int(info, "calls_done"), 105);
    json_decref(info);
    /* the result chains into a task */
    call_method(id, "balance", "{}", ref);
    char ref2[ID];
    tk_submitf(NULL, ref2, &g_srv, "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},1]}", ref);
    v = tk_value(&g_srv, ref2);
    tk_assert_json_eq(v, "151");
    json_decref(v);
    char *path = fmt("/v1/actors/%s", id);
    r = http_delete(&g_srv, path);
    free(path);
    assert_status(r, 204);
    http_resp_free(r);
}

/* A constructor the endpoint refuses, or one that cannot be reached, leaves the actor DEAD
 * with a death_cause. */
static void test_actor_constructor_fails(void **state)
{
    char *body = fmt("{\"url\":\"http://127.0.0.1:%d/classes/Account\"}", g_port);
    http_resp *r = put_json(&g_srv, "/v1/actor-classes/Account", body);
    free(body);
    http_resp_free(r);
    body = fmt("{\"url\":\"http://127.0.0.1:%d/classes/Account\",\"timeout\":2}", g_late_port);
    r = put_json(&g_srv, "/v1/actor-classes/Unreachable", body);
    free(body);
    assert_status(r, 201);
    http_resp_free(r);
    const char *creates[] = {"{\"class\":\"Account\",\"args\":[\"lots\"]}",
                             "{\"class\":\"Unreachable\",\"args\":[1]}"};
    for (int k = 0; k < 2; k++) {
        r = http_post_json(&g_srv, "/v1/actors", creates[k]);
        assert_status(r, 201);
        char id[ID];
        snprintf(id, ID, "%s", json_str(r->json, "actor_id"));
        http_resp_free(r);
        double deadline = now_s() + 10;
        json_t *info;
        for (;;) {
            info = actor_info(id);
            if (strcmp(json_str(info, "state"), "DEAD") == 0)
                break;
            if (now_s() > deadline)
                fail_msg("actor %s (%s) is %s, not DEAD", id, creates[k], json_str(info, "state"));
            json_decref(info);
            sleep_s(0.01);
        }
        json_t *dc = json_member(info, "death_cause");
        assert_true(json_is_object(dc));
        json_decref(info);
        r = call_wait(id, "balance", "{}");
        assert_problem(r, 410, "ActorDied");
        http_resp_free(r);
    }
    r = http_delete(&g_srv, "/v1/actor-classes/Unreachable");
    assert_status(r, 204);
    http_resp_free(r);
}

/* ---------------------------------------------------------------- main */

static int group_setup(void **state)
{
    g_port = free_port();
    g_late_port = free_port();
    while (g_late_port == g_port)
        g_late_port = free_port();
    if (g_port <= 0 || g_late_port <= 0)
        return -1;
    g_worker = worker_start(g_port, true);
    if (g_worker <= 0)
        return -1;
    char allow[128];
    snprintf(allow, sizeof allow, "http://127.0.0.1:%d,http://127.0.0.1:%d", g_port,
             g_late_port);
    const char *args[] = {"--workers", "2", "--max-body", "1M", "--remote-allow", allow, NULL};
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
        cmocka_unit_test(test_register),
        cmocka_unit_test(test_allowlist_empty),
        cmocka_unit_test(test_end_to_end),
        cmocka_unit_test(test_request_id_propagated),
        cmocka_unit_test(test_non_2xx_is_task_error),
        cmocka_unit_test(test_timeout_then_worker_unavailable),
        cmocka_unit_test(test_endpoint_comes_back),
        cmocka_unit_test(test_answer_over_max_body),
        cmocka_unit_test(test_cancel_in_flight),
        cmocka_unit_test(test_max_concurrency),
        cmocka_unit_test(test_in_flight_calls_hold_no_worker),
        cmocka_unit_test(test_delete_function),
        cmocka_unit_test(test_bytes_argument),
        cmocka_unit_test(test_actor_state_across_calls),
        cmocka_unit_test(test_actor_constructor_fails),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
