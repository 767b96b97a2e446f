/* API tests of the lifecycle log lines (runtime/events.c, written by service/log.c) against
 * the real rayd binary and the example worker (examples/python/worker.py): one test per
 * event (task failed, task retried, remote endpoint unreachable and reachable again, actor
 * restarted and died, module loaded, registration changed, store full), the rate limit
 * that keeps a storm of failures from flooding stdout, a remote worker answering 503
 * treated as "retry me", and RAYD_LOG_LEVEL=warn keeping the news but not request lines; and W3C traceparent: accepted, rayd's span passed on to remote
 * functions and classes and written in the request and lifecycle lines; and the metrics
 * per function, actor method and remote endpoint (one test per label set).
 *
 * Each test reads the server's stdout (rayd_capture_stdout) and waits for the line it
 * expects, found by its event name and a member unique to the test (a task id, a name). */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/api/support/harness.h"
#include "tests/api/support/tasks_util.h"
#include "tests/api/support/worker.h"

#define ID TK_ID_SIZE

/* --memory-limit 1M and --on-full refuse (for "store full"), allowed to call the worker
 * and the port where nothing listens until a test starts a worker there. */
static rayd_server g_srv;
static pid_t g_worker = -1;
static int g_port, g_down_port;

/* ---------------------------------------------------------------- helpers */

static void pause_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* The lines of text (a copy of captured stdout) parsed as JSON objects, in order (new
 * array). Lines that are not JSON objects are skipped. */
static json_t *parse_lines(const char *text)
{
    json_t *out = json_array();
    const char *p = text;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        if (!nl)
            break; /* an incomplete line */
        json_t *j = json_loadb(p, (size_t)(nl - p), 0, NULL);
        if (json_is_object(j))
            json_array_append(out, j);
        json_decref(j);
        p = nl + 1;
    }
    return out;
}

/* Does line have "event": event and (when key is not NULL) key's string value equal to
 * value, or (when value is NULL) key present? */
static bool line_matches(const json_t *line, const char *event, const char *key,
                         const char *value)
{
    const char *ev = json_string_value(json_object_get(line, "event"));
    if (!ev || strcmp(ev, event) != 0)
        return false;
    if (!key)
        return true;
    json_t *v = json_object_get(line, key);
    if (!v)
        return false;
    return !value || (json_is_string(v) && strcmp(json_string_value(v), value) == 0);
}

/* Lines of event (with key = value, as line_matches) captured so far. */
static size_t count_lines(const char *event, const char *key, const char *value)
{
    char *text = rayd_stdout_text(&g_srv);
    json_t *lines = parse_lines(text);
    free(text);
    size_t n = 0, i;
    json_t *l;
    json_array_foreach(lines, i, l) if (line_matches(l, event, key, value)) n++;
    json_decref(lines);
    return n;
}

/* Waits up to timeout_s for a captured line of event with key = value; returns it (new
 * reference) or fails the test. */
static json_t *wait_event(const char *event, const char *key, const char *value,
                          double timeout_s)
{
    double deadline = now_s() + timeout_s;
    for (;;) {
        char *text = rayd_stdout_text(&g_srv);
        json_t *lines = parse_lines(text);
        free(text);
        size_t i;
        json_t *l;
        json_array_foreach(lines, i, l)
        {
            if (line_matches(l, event, key, value)) {
                json_incref(l);
                json_decref(lines);
                return l;
            }
        }
        json_decref(lines);
        if (now_s() > deadline)
            fail_msg("no \"%s\" line with %s = %s within %g s", event, key ? key : "-",
                     value ? value : "-", timeout_s);
        /* the next line the server writes wakes us (or the timeout does) */
        free(rayd_stdout_wait_line(&g_srv, "\n", 0.05));
    }
}

static http_resp *put_json(const char *path, const char *body)
{
    const char *h[] = {"Content-Type: application/json", NULL};
    return http_request(&g_srv, "PUT", path, h, body, strlen(body));
}

static void register_fn(const char *name, int port, const char *endpoint, const char *extra)
{
    char path[256], body[512];
    snprintf(path, sizeof path, "/v1/functions/%s", name);
    snprintf(body, sizeof body, "{\"url\":\"http://127.0.0.1:%d/functions/%s\"%s}", port,
             endpoint, extra);
    http_resp *r = put_json(path, body);
    if (r->status != 201 && r->status != 200)
        fail_msg("PUT %s %s: %ld %s", path, body, r->status, r->body);
    http_resp_free(r);
}

/* ---------------------------------------------------------------- events */

static void test_task_failed(void **state)
{
    char tid[ID], ref[ID];
    tk_submit(&g_srv, "{\"function\":\"fail\",\"args\":[\"on purpose\"]}", tid, ref);
    json_t *l = wait_event("task failed", "task_id", tid, 10);
    assert_string_equal(json_str(l, "level"), "warn");
    assert_string_equal(json_str(l, "function"), "fail");
    assert_string_equal(json_str(l, "error_kind"), "TaskError");
    assert_int_equal(json_int(l, "attempts"), 1);
    assert_true(json_is_string(json_object_get(l, "request_id")));
    assert_true(json_is_string(json_object_get(l, "time")));
    json_decref(l);
}

/* Nothing listens on g_down_port: each attempt is retried ("task retried"), the endpoint is
 * reported unreachable once, the task fails for good with WorkerUnavailable after 2
 * attempts; once a worker listens there, "reachable again". */
static void test_retried_unreachable_then_reachable(void **state)
{
    register_fn("down_fn", g_down_port, "wordcount", ",\"timeout\":5");
    char tid[ID], ref[ID];
    tk_submit(&g_srv,
              "{\"function\":\"down_fn\",\"args\":[\"a b\"],\"options\":{\"max_retries\":1}}",
              tid, ref);
    json_t *l = wait_event("task retried", "task_id", tid, 10);
    assert_string_equal(json_str(l, "function"), "down_fn");
    assert_int_equal(json_int(l, "attempt"), 1);
    assert_true(json_is_true(json_object_get(l, "unavailable")));
    json_decref(l);
    l = wait_event("task failed", "task_id", tid, 10);
    assert_string_equal(json_str(l, "error_kind"), "WorkerUnavailable");
    assert_int_equal(json_int(l, "attempts"), 2);
    json_decref(l);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/functions/wordcount", g_down_port);
    l = wait_event("remote endpoint unreachable", "url", url, 5);
    assert_string_equal(json_str(l, "level"), "warn");
    assert_string_equal(json_str(l, "name"), "down_fn");
    assert_true(json_is_string(json_object_get(l, "error")));
    json_decref(l);
    /* two failed attempts, one line: only the change is news */
    assert_int_equal(count_lines("remote endpoint unreachable", "url", url), 1);

    pid_t w = worker_start(g_down_port, true);
    assert_true(w > 0);
    tk_submit(&g_srv, "{\"function\":\"down_fn\",\"args\":[\"a b\"]}", tid, ref);
    json_t *v = tk_value(&g_srv, ref);
    tk_assert_json_eq(v, "2");
    json_decref(v);
    l = wait_event("remote endpoint reachable again", "url", url, 5);
    assert_string_equal(json_str(l, "name"), "down_fn");
    json_decref(l);
    worker_stop(w);
}

/* The first complaint: with RAYD_LOG_LEVEL=warn a worker that was down gave no line
 * at all. Now the endpoint going unreachable and the task failing are warn lines, kept;
 * request lines (info) are not. */
static void test_warn_level_keeps_the_news(void **state)
{
    char allow[64];
    snprintf(allow, sizeof allow, "http://127.0.0.1:%d", g_down_port);
    const char *args[] = {"--remote-allow", allow, NULL};
    const char *env[] = {"RAYD_LOG_LEVEL=warn", NULL};
    rayd_server s;
    assert_int_equal(rayd_start(&s, args, env), 0);
    rayd_capture_stdout(&s, true);
    char path[128], body[256], tid[ID], ref[ID];
    snprintf(path, sizeof path, "/v1/functions/warn_down");
    snprintf(body, sizeof body, "{\"url\":\"%s/functions/wordcount\",\"timeout\":5}", allow);
    const char *h[] = {"Content-Type: application/json", NULL};
    http_resp *r = http_request(&s, "PUT", path, h, body, strlen(body));
    assert_status(r, 201);
    http_resp_free(r);
    tk_submit(&s, "{\"function\":\"warn_down\",\"options\":{\"max_retries\":0}}", tid, ref);
    json_decref(tk_wait_ended(&s, tid, 10));
    /* each line is written by the log thread: wait for the task's, the last one */
    double deadline = now_s() + 5;
    char *text = NULL;
    for (;;) {
        free(text);
        text = rayd_stdout_text(&s);
        if (strstr(text, tid) || now_s() > deadline)
            break;
        free(rayd_stdout_wait_line(&s, "\n", 0.05));
    }
    json_t *lines = parse_lines(text);
    free(text);
    bool unreachable = false, failed = false, request = false;
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        unreachable |= line_matches(l, "remote endpoint unreachable", "name", "warn_down");
        failed |= line_matches(l, "task failed", "task_id", tid);
        request |= line_matches(l, "request", NULL, NULL);
    }
    json_decref(lines);
    assert_true(unreachable);
    assert_true(failed);
    assert_false(request);
    assert_int_equal(rayd_stop(&s), 0);
}

/* A worker answering 503 means "not now, retry me": the call is unavailable, retried within
 * max_retries, and when retries run out the final WorkerUnavailable keeps the worker's
 * problem body as its cause. */
static void test_503_is_retried(void **state)
{
    register_fn("overloaded", g_port, "overloaded", "");
    char tid[ID], ref[ID];
    tk_submit(&g_srv, "{\"function\":\"overloaded\",\"options\":{\"max_retries\":2}}", tid, ref);
    http_resp *r = tk_error(&g_srv, ref, "WorkerUnavailable");
    assert_int_equal(json_int(r->json, "remote_status"), 503);
    json_t *cause = json_member(r->json, "cause");
    assert_string_equal(json_str(cause, "remote_title"), "Overloaded");
    assert_string_equal(json_str(cause, "detail"), "the worker is overloaded, retry later");
    assert_int_equal(json_int(cause, "attempt"), 3); /* the last attempt's answer */
    http_resp_free(r);
    json_t *info = tk_wait_ended(&g_srv, tid, 5);
    assert_string_equal(json_str(info, "state"), "FAILED");
    assert_int_equal(json_int(info, "attempts"), 3);
    json_decref(info);
    json_t *l = wait_event("task retried", "task_id", tid, 5);
    assert_true(json_is_true(json_object_get(l, "unavailable")));
    json_decref(l);
    /* other non-2xx answers are still not retried */
    register_fn("failing", g_port, "fail", "");
    tk_submit(&g_srv, "{\"function\":\"failing\",\"options\":{\"max_retries\":2}}", tid, ref);
    r = tk_error(&g_srv, ref, "TaskError");
    http_resp_free(r);
    info = tk_wait_ended(&g_srv, tid, 5);
    assert_int_equal(json_int(info, "attempts"), 1);
    json_decref(info);
}

static void create_actor(const char *body, char *id)
{
    http_resp *r = http_post_json(&g_srv, "/v1/actors", body);
    assert_status(r, 201);
    snprintf(id, ID, "%s", json_str(r->json, "actor_id"));
    http_resp_free(r);
}

/* Calls method and waits for its outcome (an error is expected). */
static void call_and_wait(const char *id, const char *method)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/actors/%s/methods/%s", id, method);
    const char *h[] = {"Content-Type: application/json", "Prefer: wait=10", NULL};
    http_resp *r = http_request(&g_srv, "POST", path, h, "{}", 2);
    http_resp_free(r);
}

static void test_actor_restarted_and_died(void **state)
{
    char id[ID];
    create_actor("{\"class\":\"Counter\",\"options\":{\"max_restarts\":1}}", id);
    call_and_wait(id, "crash");
    json_t *l = wait_event("actor restarted", "actor_id", id, 10);
    assert_string_equal(json_str(l, "class"), "Counter");
    assert_string_equal(json_str(l, "method"), "crash");
    assert_int_equal(json_int(l, "restarts"), 1);
    assert_int_equal(json_int(l, "max_restarts"), 1);
    json_decref(l);
    call_and_wait(id, "crash"); /* out of restarts */
    l = wait_event("actor died", "actor_id", id, 10);
    assert_string_equal(json_str(l, "class"), "Counter");
    assert_string_equal(json_str(l, "error_kind"), "TaskError");
    json_decref(l);

    char killed[ID], path[256];
    create_actor("{\"class\":\"Counter\"}", killed);
    snprintf(path, sizeof path, "/v1/actors/%s", killed);
    http_resp *r = http_delete(&g_srv, path);
    assert_true(r->status == 200 || r->status == 204);
    http_resp_free(r);
    l = wait_event("actor died", "actor_id", killed, 10);
    assert_string_equal(json_str(l, "detail"), "killed");
    json_decref(l);
}

static void test_registration_changed(void **state)
{
    register_fn("reg_fn", g_port, "wordcount", "");
    json_t *l = wait_event("registration changed", "name", "reg_fn", 5);
    assert_string_equal(json_str(l, "kind"), "function");
    assert_string_equal(json_str(l, "change"), "registered");
    json_decref(l);
    register_fn("reg_fn", g_port, "wordcount", "");
    http_resp *r = http_delete(&g_srv, "/v1/functions/reg_fn");
    assert_status(r, 204);
    http_resp_free(r);
    l = wait_event("registration changed", "change", "removed", 5);
    assert_string_equal(json_str(l, "name"), "reg_fn");
    json_decref(l);
    assert_int_equal(count_lines("registration changed", "change", "replaced"), 1);

    char body[256];
    snprintf(body, sizeof body, "{\"url\":\"http://127.0.0.1:%d/classes/Account\"}", g_port);
    r = put_json("/v1/actor-classes/RegClass", body);
    assert_status(r, 201);
    http_resp_free(r);
    l = wait_event("registration changed", "name", "RegClass", 5);
    assert_string_equal(json_str(l, "kind"), "class");
    assert_string_equal(json_str(l, "change"), "registered");
    json_decref(l);
}

/* rayd runs with --memory-limit 1M and --on-full refuse: a 2 MiB object never fits. */
static void test_store_full(void **state)
{
    size_t n = 2 << 20;
    char *big = malloc(n);
    memset(big, 'x', n);
    http_resp *r = http_post_bytes(&g_srv, "/v1/objects", "application/octet-stream", big, n);
    free(big);
    assert_problem(r, 507, "ObjectStoreFull");
    json_t *l = wait_event("store full", "request_id", http_header_get(r, "X-Request-Id"), 5);
    assert_string_equal(json_str(l, "level"), "warn");
    assert_string_equal(json_str(l, "path"), "/v1/objects");
    json_decref(l);
    http_resp_free(r);
}

/* The module's line comes before the listening line: rayd_start keeps those. */
static void test_module_loaded(void **state)
{
    char bin[4096], so[4200];
    snprintf(bin, sizeof bin, "%s", rayd_bin());
    snprintf(so, sizeof so, "%s/examples/modules/text.so", dirname(bin));
    if (access(so, R_OK) != 0)
        fail_msg("%s is missing: build it with make examples", so);
    rayd_server s;
    const char *args[] = {"--module", so, NULL};
    assert_int_equal(rayd_start(&s, args, NULL), 0);
    json_t *lines = parse_lines(s.early);
    json_t *found = NULL, *l;
    size_t i;
    json_array_foreach(lines, i, l) if (line_matches(l, "module loaded", "path", so)) found = l;
    if (!found)
        fail_msg("no module loaded line before listening: %s", s.early);
    assert_true(json_int(found, "functions") > 0);
    assert_true(json_int(found, "classes") > 0);
    json_decref(lines);
    assert_int_equal(rayd_stop(&s), 0);
}

/* Scrapes a counter from /metrics (0 when absent). */
static double metric(const char *name)
{
    http_resp *r = http_get(&g_srv, "/metrics");
    double v = 0;
    size_t n = strlen(name);
    for (const char *p = r->body; p && *p;) {
        if (strncmp(p, name, n) == 0 && p[n] == ' ')
            v = strtod(p + n + 1, NULL);
        const char *nl = strchr(p, '\n');
        p = nl ? nl + 1 : NULL;
    }
    http_resp_free(r);
    return v;
}

/* A storm of 200 failing tasks: at most the burst (and what refills meanwhile) is written,
 * every other line is counted as suppressed, and the next line that passes says how many
 * were left out before it. */
static void test_rate_limited(void **state)
{
    enum { STORM = 200 };
    rayd_stdout_clear(&g_srv);
    double suppressed0 = metric("rayd_log_events_suppressed_total");
    long long failed0 = tk_status_tasks(&g_srv, "failed");
    double t0 = now_s();
    char tid[ID], ref[ID];
    for (int i = 0; i < STORM; i++)
        tk_submit(&g_srv, "{\"function\":\"fail\",\"args\":[\"storm\"]}", tid, ref);
    json_decref(tk_wait_ended(&g_srv, tid, 20));
    while (tk_status_tasks(&g_srv, "failed") < failed0 + STORM)
        json_decref(tk_wait_ended(&g_srv, tid, 1));
    double took = now_s() - t0;
    /* ordering barrier: lines are written in the order logged */
    register_fn("storm_barrier", g_port, "wordcount", "");
    json_decref(wait_event("registration changed", "name", "storm_barrier", 5));
    size_t written = count_lines("task failed", NULL, NULL);
    double suppressed = metric("rayd_log_events_suppressed_total") - suppressed0;
    if ((double)written + suppressed != STORM)
        fail_msg("%zu lines written + %g suppressed != %d", written, suppressed, STORM);
    double bound = 20 + 5 * took + 1;
    if ((double)written > bound)
        fail_msg("%zu task failed lines in %.2f s: the limit allows %.0f", written, took, bound);
    /* once the bucket refills, a line passes carrying the count */
    for (double deadline = now_s() + 10;;) {
        tk_submit(&g_srv, "{\"function\":\"fail\",\"args\":[\"after\"]}", tid, ref);
        json_decref(tk_wait_ended(&g_srv, tid, 5));
        register_fn("storm_barrier", g_port, "wordcount", "");
        if (count_lines("task failed", "task_id", tid) == 1)
            break;
        if (now_s() > deadline)
            fail_msg("no task failed line passed after the storm");
        pause_s(0.1); /* the bucket refills with time: nothing to wait on but the clock */
    }
    json_t *l = wait_event("task failed", "task_id", tid, 1);
    assert_true(json_int(l, "suppressed") > 0);
    json_decref(l);
}

/* ---------------------------------------------------------------- traceparent */

#define TRACE_ID "4bf92f3577b34da6a3ce929d0e0e4736"
#define CALLER_SPAN "00f067aa0ba902b7"
#define GIVEN_TP "00-" TRACE_ID "-" CALLER_SPAN "-01"

/* tp is rayd's child of GIVEN_TP: same trace and flags, a new span. */
static void assert_child(const char *tp)
{
    if (!tp || strlen(tp) != 55 || strncmp(tp, "00-" TRACE_ID "-", 36) != 0 ||
        strcmp(tp + 52, "-01") != 0 || strncmp(tp + 36, CALLER_SPAN, 16) == 0)
        fail_msg("traceparent %s is not a child span of %s", tp ? tp : "(none)", GIVEN_TP);
}

static void test_traceparent_to_function(void **state)
{
    register_fn("tp_info", g_port, "request_info", "");
    const char *body = "{\"function\":\"tp_info\"}";
    const char *h[] = {"Content-Type: application/json", "Prefer: wait=10",
                       "traceparent: " GIVEN_TP, NULL};
    http_resp *r = http_request(&g_srv, "POST", "/v1/tasks", h, body, strlen(body));
    assert_status(r, 200);
    const char *sent = json_str(r->json, "traceparent");
    assert_child(sent);
    /* the request line carries the same span the worker saw */
    json_t *l = wait_event("request", "request_id", http_header_get(r, "X-Request-Id"), 5);
    assert_string_equal(json_str(l, "traceparent"), sent);
    json_decref(l);
    http_resp_free(r);
}

static void test_traceparent_to_class(void **state)
{
    char body[256], id[ID], path[256];
    snprintf(body, sizeof body, "{\"url\":\"http://127.0.0.1:%d/classes/Account\"}", g_port);
    http_resp *r = put_json("/v1/actor-classes/TpAccount", body);
    assert_true(r->status == 201 || r->status == 200);
    http_resp_free(r);
    create_actor("{\"class\":\"TpAccount\"}", id);
    snprintf(path, sizeof path, "/v1/actors/%s/methods/request_info", id);
    const char *h[] = {"Content-Type: application/json", "Prefer: wait=10",
                       "traceparent: " GIVEN_TP, NULL};
    r = http_request(&g_srv, "POST", path, h, "{}", 2);
    assert_status(r, 200);
    assert_child(json_str(r->json, "traceparent"));
    http_resp_free(r);
}

static void test_traceparent_in_lifecycle_lines(void **state)
{
    const char *body = "{\"function\":\"fail\",\"args\":[\"traced\"]}";
    const char *h[] = {"Content-Type: application/json", "traceparent: " GIVEN_TP, NULL};
    http_resp *r = http_request(&g_srv, "POST", "/v1/tasks", h, body, strlen(body));
    assert_status(r, 202);
    char tid[ID];
    snprintf(tid, sizeof tid, "%s", json_str(r->json, "task_id"));
    http_resp_free(r);
    json_t *l = wait_event("task failed", "task_id", tid, 10);
    assert_child(json_str(l, "traceparent"));
    json_decref(l);
}

/* Invalid traceparents (bad version ff, zero trace id, upper case, short) are ignored:
 * nothing passed on, nothing logged. A later version with more fields is read as 00. */
static void test_traceparent_invalid_ignored(void **state)
{
    register_fn("tp_info", g_port, "request_info", "");
    static const char *const bad[] = {
        "ff-" TRACE_ID "-" CALLER_SPAN "-01",
        "00-00000000000000000000000000000000-" CALLER_SPAN "-01",
        "00-" TRACE_ID "-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-" CALLER_SPAN "-01",
        "00-" TRACE_ID "-" CALLER_SPAN "-01-extra",
        "00-" TRACE_ID "-" CALLER_SPAN,
        "garbage",
    };
    const char *body = "{\"function\":\"tp_info\"}";
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char hdr[160];
        snprintf(hdr, sizeof hdr, "traceparent: %s", bad[i]);
        const char *h[] = {"Content-Type: application/json", "Prefer: wait=10", hdr, NULL};
        http_resp *r = http_request(&g_srv, "POST", "/v1/tasks", h, body, strlen(body));
        assert_status(r, 200);
        if (!json_is_null(json_object_get(r->json, "traceparent")))
            fail_msg("%s was passed on as %s", bad[i], json_str(r->json, "traceparent"));
        json_t *l = wait_event("request", "request_id", http_header_get(r, "X-Request-Id"), 5);
        assert_null(json_object_get(l, "traceparent"));
        json_decref(l);
        http_resp_free(r);
    }
    const char *later = "01-" TRACE_ID "-" CALLER_SPAN "-01-what-comes-next";
    const char *h[] = {"Content-Type: application/json", "Prefer: wait=10",
                       "traceparent: 01-" TRACE_ID "-" CALLER_SPAN "-01-what-comes-next", NULL};
    http_resp *r = http_request(&g_srv, "POST", "/v1/tasks", h, body, strlen(body));
    assert_status(r, 200);
    const char *got = json_str(r->json, "traceparent");
    if (!got || strncmp(got, "00-" TRACE_ID "-", 36) != 0)
        fail_msg("%s gave %s", later, got ? got : "(none)");
    http_resp_free(r);
}

/* ---------------------------------------------------------------- per-name metrics */

/* Whether /metrics has a line starting with series followed by a space. */
static bool has_series(const char *series)
{
    http_resp *r = http_get(&g_srv, "/metrics");
    size_t n = strlen(series);
    bool found = false;
    for (const char *p = r->body; p && *p && !found;) {
        found = strncmp(p, series, n) == 0 && p[n] == ' ';
        const char *nl = strchr(p, '\n');
        p = nl ? nl + 1 : NULL;
    }
    http_resp_free(r);
    return found;
}

static void run_wait(const char *body)
{
    char tid[ID], ref[ID];
    tk_submit(&g_srv, body, tid, ref);
    json_decref(tk_wait_ended(&g_srv, tid, 10));
}

static void test_metrics_function(void **state)
{
    const char *calls = "rayd_function_calls_total{function=\"mul\"}";
    const char *dur = "rayd_function_duration_seconds_count{function=\"mul\"}";
    const char *queued = "rayd_function_queued_seconds_count{function=\"mul\"}";
    const char *failed = "rayd_function_failures_total{function=\"mul\",kind=\"TaskError\"}";
    double c0 = metric(calls), d0 = metric(dur), q0 = metric(queued), f0 = metric(failed);
    run_wait("{\"function\":\"mul\",\"args\":[2,3]}");
    run_wait("{\"function\":\"mul\",\"args\":[2,3]}");
    run_wait("{\"function\":\"mul\",\"args\":[\"x\",3]}"); /* a TaskError */
    assert_int_equal((int)(metric(calls) - c0), 3);
    assert_int_equal((int)(metric(dur) - d0), 3);
    assert_int_equal((int)(metric(queued) - q0), 3);
    assert_int_equal((int)(metric(failed) - f0), 1);
    /* a function that does not exist makes no label */
    http_resp *r = http_post_json(&g_srv, "/v1/tasks", "{\"function\":\"no_such_fn\"}");
    assert_true(r->status >= 400 && r->status < 500);
    http_resp_free(r);
    assert_false(has_series("rayd_function_calls_total{function=\"no_such_fn\"}"));
}

static void test_metrics_actor_method(void **state)
{
    char id[ID];
    create_actor("{\"class\":\"Counter\",\"options\":{\"max_restarts\":-1}}", id);
    const char *incr = "rayd_actor_method_calls_total{class=\"Counter\",method=\"incr\"}";
    const char *incr_d =
        "rayd_actor_method_duration_seconds_count{class=\"Counter\",method=\"incr\"}";
    const char *incr_q =
        "rayd_actor_method_queued_seconds_count{class=\"Counter\",method=\"incr\"}";
    const char *crash_f = "rayd_actor_method_failures_total{class=\"Counter\",method=\"crash\","
                          "kind=\"TaskError\"}";
    double c0 = metric(incr), d0 = metric(incr_d), q0 = metric(incr_q), f0 = metric(crash_f);
    call_and_wait(id, "incr");
    call_and_wait(id, "incr");
    call_and_wait(id, "crash");
    assert_int_equal((int)(metric(incr) - c0), 2);
    assert_int_equal((int)(metric(incr_d) - d0), 2);
    assert_int_equal((int)(metric(incr_q) - q0), 2);
    assert_int_equal((int)(metric(crash_f) - f0), 1);
}

static void test_metrics_remote_endpoint(void **state)
{
    register_fn("m_ok", g_port, "wordcount", "");
    register_fn("m_fail", g_port, "fail", "");
    register_fn("m_down", g_down_port, "wordcount", ",\"timeout\":5");
    run_wait("{\"function\":\"m_ok\",\"args\":[\"a b\"]}");
    run_wait("{\"function\":\"m_ok\",\"args\":[\"a b\"]}");
    run_wait("{\"function\":\"m_fail\"}");
    run_wait("{\"function\":\"m_down\",\"options\":{\"max_retries\":1}}");
    assert_int_equal((int)metric("rayd_remote_calls_total{endpoint=\"m_ok\",outcome=\"ok\"}"), 2);
    assert_int_equal(
        (int)metric("rayd_remote_calls_total{endpoint=\"m_fail\",outcome=\"http_5xx\"}"), 1);
    assert_int_equal(
        (int)metric("rayd_remote_calls_total{endpoint=\"m_down\",outcome=\"unreachable\"}"), 2);
    assert_int_equal((int)metric("rayd_remote_call_duration_seconds_count{endpoint=\"m_ok\"}"), 2);
    assert_int_equal(
        (int)metric("rayd_function_failures_total{function=\"m_down\",kind=\"WorkerUnavailable\"}"),
        1);
    /* a removed registration takes its labels with it */
    http_resp *r = http_delete(&g_srv, "/v1/functions/m_ok");
    assert_status(r, 204);
    http_resp_free(r);
    assert_false(has_series("rayd_remote_calls_total{endpoint=\"m_ok\",outcome=\"ok\"}"));
    assert_false(has_series("rayd_function_calls_total{function=\"m_ok\"}"));
}

/* The remote outcomes the test above does not make (http_4xx, timeout, cancelled; too_large
 * needs a server with a small --max-body: see test_remote), and a remote class's label. */
static void test_metrics_remote_outcomes_and_class(void **state)
{
    register_fn("m_4xx", g_port, "no_such_endpoint", "");
    register_fn("m_timeout", g_port, "slow", ",\"timeout\":0.2");
    register_fn("m_cancel", g_port, "slow", "");
    run_wait("{\"function\":\"m_4xx\"}");
    run_wait("{\"function\":\"m_timeout\",\"args\":[3],\"options\":{\"max_retries\":0}}");
    assert_int_equal(
        (int)metric("rayd_remote_calls_total{endpoint=\"m_4xx\",outcome=\"http_4xx\"}"), 1);
    assert_int_equal(
        (int)metric("rayd_remote_calls_total{endpoint=\"m_timeout\",outcome=\"timeout\"}"), 1);
    /* cancelled while the worker sleeps: the call is hung up */
    char tid[ID], ref[ID], path[256];
    tk_submit(&g_srv, "{\"function\":\"m_cancel\",\"args\":[30]}", tid, ref);
    json_decref(tk_wait_state(&g_srv, tid, "RUNNING", 10));
    snprintf(path, sizeof path, "/v1/tasks/%s/cancel", tid);
    http_resp *r = http_post_json(&g_srv, path, "{}");
    assert_true(r->status == 200 || r->status == 202);
    http_resp_free(r);
    json_decref(tk_wait_ended(&g_srv, tid, 10));
    const char *cancelled = "rayd_remote_calls_total{endpoint=\"m_cancel\",outcome=\"cancelled\"}";
    double deadline = now_s() + 10; /* counted when the I/O thread has hung up */
    while (metric(cancelled) < 1 && now_s() < deadline)
        free(rayd_stdout_wait_line(&g_srv, "\n", 0.05));
    assert_int_equal((int)metric(cancelled), 1);

    /* a remote class: its endpoint label, and its methods' */
    char body[256], id[ID];
    snprintf(body, sizeof body, "{\"url\":\"http://127.0.0.1:%d/classes/Account\"}", g_port);
    r = put_json("/v1/actor-classes/MAccount", body);
    assert_true(r->status == 201 || r->status == 200);
    http_resp_free(r);
    create_actor("{\"class\":\"MAccount\"}", id);
    snprintf(path, sizeof path, "/v1/actors/%s/methods/deposit", id);
    const char *h[] = {"Content-Type: application/json", "Prefer: wait=10", NULL};
    const char *args = "{\"args\":[5]}";
    double ok0 = 0, d0 = 0;
    for (int i = 0; i < 2; i++) { /* the first call also runs __init__: count the second */
        ok0 = metric("rayd_remote_calls_total{endpoint=\"MAccount\",outcome=\"ok\"}");
        d0 = metric("rayd_remote_call_duration_seconds_count{endpoint=\"MAccount\"}");
        r = http_request(&g_srv, "POST", path, h, args, strlen(args));
        assert_status(r, 200);
        http_resp_free(r);
    }
    assert_int_equal(
        (int)(metric("rayd_remote_calls_total{endpoint=\"MAccount\",outcome=\"ok\"}") - ok0), 1);
    assert_int_equal(
        (int)(metric("rayd_remote_call_duration_seconds_count{endpoint=\"MAccount\"}") - d0), 1);
    assert_int_equal(
        (int)metric("rayd_actor_method_calls_total{class=\"MAccount\",method=\"deposit\"}"), 2);
}

/* ---------------------------------------------------------------- main */

static int group_setup(void **state)
{
    g_port = free_port();
    g_down_port = free_port();
    while (g_down_port == g_port)
        g_down_port = free_port();
    g_worker = worker_start(g_port, true);
    if (g_worker <= 0)
        return -1;
    char allow[128];
    snprintf(allow, sizeof allow, "http://127.0.0.1:%d,http://127.0.0.1:%d", g_port,
             g_down_port);
    const char *args[] = {"--memory-limit", "1M", "--on-full", "refuse", "--remote-allow", allow, NULL};
    if (rayd_start(&g_srv, args, NULL) != 0) {
        worker_stop(g_worker);
        return -1;
    }
    rayd_capture_stdout(&g_srv, true);
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
        cmocka_unit_test(test_task_failed),
        cmocka_unit_test(test_retried_unreachable_then_reachable),
        cmocka_unit_test(test_503_is_retried),
        cmocka_unit_test(test_warn_level_keeps_the_news),
        cmocka_unit_test(test_actor_restarted_and_died),
        cmocka_unit_test(test_registration_changed),
        cmocka_unit_test(test_store_full),
        cmocka_unit_test(test_module_loaded),
        cmocka_unit_test(test_traceparent_to_function),
        cmocka_unit_test(test_traceparent_to_class),
        cmocka_unit_test(test_traceparent_in_lifecycle_lines),
        cmocka_unit_test(test_traceparent_invalid_ignored),
        cmocka_unit_test(test_metrics_function),
        cmocka_unit_test(test_metrics_actor_method),
        cmocka_unit_test(test_metrics_remote_endpoint),
        cmocka_unit_test(test_metrics_remote_outcomes_and_class),
        cmocka_unit_test(test_rate_limited),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
