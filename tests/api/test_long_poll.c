/* API tests of long-polling: GET /v1/objects/{ref}?timeout=, POST /v1/objects/get and
 * POST /v1/wait park the request without holding an HTTP thread, answer as soon as the
 * object is ready, and answer "pending" at their timeout. The big one parks 2,000 GETs on
 * one pending object on a server with 2 HTTP threads and checks that /healthz stays fast. */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include "tests/api/support/harness.h"
#include "tests/api/support/tasks_util.h"

#define ID TK_ID_SIZE
#define PARKED 2000

/* --http-threads 2 --connection-limit 5000 --workers 4 */
static rayd_server g_lp;

static int group_setup(void **state)
{
    /* 2,000 client sockets here, as many in the server (which inherits the limit) */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 3 * PARKED) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 3 * PARKED ? 3 * PARKED
                                                                              : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            perror("setrlimit");
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < PARKED + 200) {
        fprintf(stderr, "RLIMIT_NOFILE is %llu: too low for %d connections\n",
                (unsigned long long)rl.rlim_cur, PARKED);
        return -1;
    }
    static const char *const args[] = {"--http-threads",    "2", "--connection-limit",
                                       "5000",              "--workers", "4",
                                       NULL};
    return rayd_start(&g_lp, args, NULL);
}

static int group_teardown(void **state)
{
    return rayd_stop_clean(&g_lp);
}

static void cancel_quietly(const char *task_id)
{
    char path[512];
    snprintf(path, sizeof path, "/v1/tasks/%s/cancel", task_id);
    http_resp_free(http_request(&g_lp, "POST", path, NULL, NULL, 0));
}

/* ---------------------------------------------------------------- curl multi */

typedef struct transfer {
    CURL *easy;
    char *body;
    size_t len, cap;
    bool has_request_id;
    bool done;
    CURLcode result;
    long status;
    double done_at;
} transfer;

static size_t tr_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    transfer *t = ctx;
    size_t n = size * nmemb;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *p = realloc(t->body, cap);
        if (!p)
            return 0;
        t->body = p;
        t->cap = cap;
    }
    memcpy(t->body + t->len, data, n);
    t->len += n;
    t->body[t->len] = '\0';
    return n;
}

static size_t tr_header(char *data, size_t size, size_t nmemb, void *ctx)
{
    transfer *t = ctx;
    size_t n = size * nmemb;
    if (n > 13 && strncasecmp(data, "X-Request-Id:", 13) == 0)
        t->has_request_id = true;
    return n;
}

static void tr_init(transfer *t, CURLM *multi, const char *url, long timeout_ms)
{
    memset(t, 0, sizeof *t);
    t->easy = curl_easy_init();
    assert_non_null(t->easy);
    curl_easy_setopt(t->easy, CURLOPT_URL, url);
    curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(t->easy, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, tr_body);
    curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, tr_header);
    curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
    curl_easy_setopt(t->easy, CURLOPT_FORBID_REUSE, 1L);
    assert_int_equal(curl_multi_add_handle(multi, t->easy), CURLM_OK);
}

static void tr_cleanup(transfer *t, CURLM *multi)
{
    curl_multi_remove_handle(multi, t->easy);
    curl_easy_cleanup(t->easy);
    free(t->body);
}

/* Drives the multi handle for up to `secs` (or until nothing runs); records finished
 * transfers. Returns the number still running. */
static int drive(CURLM *multi, double secs)
{
    double end = now_s() + secs;
    int running = 0;
    for (;;) {
        assert_int_equal(curl_multi_perform(multi, &running), CURLM_OK);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            transfer *t = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
            t->done = true;
            t->result = m->data.result;
            t->done_at = now_s();
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &t->status);
        }
        double left_s = end - now_s();
        if (running == 0 || left_s <= 0)
            return running;
        int ms = (int)(left_s * 1000) + 1;
        curl_multi_poll(multi, NULL, 0, ms < 20 ? ms : 20, NULL);
    }
}

/* How many transfers have sent their whole request. */
static int requests_sent(transfer *t, int n)
{
    int sent = 0;
    for (int i = 0; i < n; i++) {
        long size = 0;
        curl_easy_getinfo(t[i].easy, CURLINFO_REQUEST_SIZE, &size);
        sent += size > 0;
    }
    return sent;
}

/* ---------------------------------------------------------------- tests */

/* rayd_parked_requests, or -1 when /metrics does not say. */
static double parked_requests(void)
{
    http_resp *r = http_get(&g_lp, "/metrics");
    double v = -1;
    const char *at = r->body ? strstr(r->body, "\nrayd_parked_requests ") : NULL;
    if (at)
        v = strtod(at + strlen("\nrayd_parked_requests "), NULL);
    http_resp_free(r);
    return v;
}

static void test_2000_parked_gets(void **state)
{
    char id[ID], ref[ID];
    double t0 = now_s();
    /* The object stays pending until the test cancels the task that makes it: the parked
     * GETs then all answer its TaskCancelled, however slow the machine is. */
    tk_submit(&g_lp, "{\"function\":\"sleep\",\"args\":[600]}", id, ref);
    char url[256];
    snprintf(url, sizeof url, "%s/v1/objects/%s?timeout=30", g_lp.base_url, ref);

    CURLM *multi = curl_multi_init();
    assert_non_null(multi);
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)PARKED + 10);
    transfer *t = calloc(PARKED, sizeof *t);
    assert_non_null(t);
    for (int i = 0; i < PARKED; i++)
        tr_init(&t[i], multi, url, 20000L);

    /* Send every request, until the server says it has parked them all; none may be
     * answered while the task runs. */
    int sent = 0;
    double parked = 0;
    for (double deadline = now_s() + 60; now_s() < deadline;) {
        drive(multi, 0.05);
        sent = requests_sent(t, PARKED);
        if (sent == PARKED && (parked = parked_requests()) >= PARKED)
            break;
    }
    double parked_at = now_s() - t0;
    int early = 0;
    for (int i = 0; i < PARKED; i++)
        early += t[i].done;
    if (sent != PARKED || parked < PARKED)
        fail_msg("only %d of %d requests were sent, %.0f parked, within %.2f s", sent, PARKED,
                 parked, parked_at);
    if (early)
        fail_msg("%d parked GETs were answered before the object was ready (first: %ld %s)",
                 early, t[0].status, t[0].body ? t[0].body : "");

    /* The point: with 2,000 requests parked on 2 HTTP threads, the server still answers
     * at once. Each probe is a new connection; the median of 5 must be under 200 ms (one
     * slow probe on a loaded machine is forgiven, a server that holds its threads until
     * the object is ready is not: its probes would last until the task ends). */
    double took[5];
    for (int k = 0; k < 5; k++) {
        double a = now_s();
        http_resp *r = http_get(&g_lp, "/healthz");
        took[k] = now_s() - a;
        assert_status(r, 200);
        http_resp_free(r);
    }
    double a = now_s();
    http_resp *r = http_get(&g_lp, "/v1/status");
    double status_took = now_s() - a;
    assert_status(r, 200);
    http_resp_free(r);
    for (int i = 1; i < 5; i++) /* sort took[] */
        for (int j = i; j > 0 && took[j] < took[j - 1]; j--) {
            double x = took[j];
            took[j] = took[j - 1];
            took[j - 1] = x;
        }
    double median = took[2], worst = took[4];
    if (median > 0.2)
        fail_msg("GET /healthz took %.0f ms (median of 5, worst %.0f ms) with %d parked "
                 "requests (limit 200 ms)",
                 median * 1000, worst * 1000, PARKED);
    if (status_took > 1.0)
        fail_msg("GET /v1/status took %.0f ms with %d parked requests", status_took * 1000,
                 PARKED);

    /* All 2,000 answer at once what the object holds once the task ends (cancelled). */
    char cancel_path[512];
    snprintf(cancel_path, sizeof cancel_path, "/v1/tasks/%s/cancel", id);
    double released = now_s();
    http_resp *c = http_request(&g_lp, "POST", cancel_path, NULL, NULL, 0);
    assert_status(c, 202);
    http_resp_free(c);
    int running = drive(multi, 15.0);
    if (running)
        fail_msg("%d parked GETs still running %.1f s after the cancel", running,
                 now_s() - released);
    json_t *info = tk_wait_ended(&g_lp, id, 5);
    assert_string_equal(json_str(info, "state"), "CANCELLED");
    json_decref(info);
    http_resp *want = http_get(&g_lp, url + strlen(g_lp.base_url));
    assert_problem(want, 424, "TaskCancelled");
    double last = 0;
    for (int i = 0; i < PARKED; i++) {
        if (t[i].result != CURLE_OK)
            fail_msg("parked GET %d: %s", i, curl_easy_strerror(t[i].result));
        if (t[i].status != 424)
            fail_msg("parked GET %d answered %ld: %s", i, t[i].status, t[i].body ? t[i].body : "");
        if (!t[i].body || !strstr(t[i].body, "\"title\":\"TaskCancelled\""))
            fail_msg("parked GET %d body %s, wanted TaskCancelled", i,
                     t[i].body ? t[i].body : "(none)");
        if (!t[i].has_request_id)
            fail_msg("parked GET %d: no X-Request-Id", i);
        if (t[i].done_at - released > last)
            last = t[i].done_at - released;
    }
    http_resp_free(want);
    /* resumed when the object resolved, not when their 30 s timeout ran out */
    if (last > 15.0)
        fail_msg("the last parked GET was answered %.2f s after the cancel", last);
    for (int i = 0; i < PARKED; i++)
        tr_cleanup(&t[i], multi);
    free(t);
    curl_multi_cleanup(multi);
    fprintf(stderr,
            "  parked %d in %.2f s, healthz median %.1f ms worst %.1f ms, all answered "
            "%.2f s after the cancel\n",
            PARKED, parked_at, median * 1000, worst * 1000, last);
}

/* Clients that give up while parked: once the server resumes their requests (the object
 * becomes ready, or the server-side timeout passes), nothing of them remains. */
static void test_client_disconnects_while_parked(void **state)
{
    enum { N = 20 };
    http_resp_free(http_get(&g_lp, "/healthz"));
    /* the baseline: wait until the server has closed earlier tests' connections */
    int fds0 = tk_count_fds(g_lp.pid);
    assert_true(fds0 > 0);
    for (double until = now_s() + 5.0; now_s() < until;) {
        sleep_s(0.1);
        int n = tk_count_fds(g_lp.pid);
        if (n == fds0 && n < 64)
            break;
        fds0 = n;
    }
    json_t *st0 = tk_status(&g_lp);
    long long objects0 = json_int(json_member(st0, "object_store"), "objects");
    json_decref(st0);

    char ready_id[ID], ready_ref[ID], slow_id[ID], slow_ref[ID];
    tk_submit(&g_lp, "{\"function\":\"sleep\",\"args\":[0.8]}", ready_id, ready_ref);
    tk_submit(&g_lp, "{\"function\":\"sleep\",\"args\":[30]}", slow_id, slow_ref);
    char url_ready[256], url_slow[256];
    /* resumed by readiness (0.8 s) and by the server-side timeout (1 s) */
    snprintf(url_ready, sizeof url_ready, "%s/v1/objects/%s?timeout=10", g_lp.base_url,
             ready_ref);
    snprintf(url_slow, sizeof url_slow, "%s/v1/objects/%s?timeout=1", g_lp.base_url, slow_ref);

    CURLM *multi = curl_multi_init();
    transfer t[2 * N];
    for (int i = 0; i < 2 * N; i++)
        tr_init(&t[i], multi, i < N ? url_ready : url_slow, 300L);
    double a = now_s();
    int running = drive(multi, 3.0);
    double took = now_s() - a;
    assert_int_equal(running, 0);
    int during = tk_count_fds(g_lp.pid);
    for (int i = 0; i < 2 * N; i++) {
        if (t[i].result != CURLE_OPERATION_TIMEDOUT)
            fail_msg("client %d: %s (status %ld), wanted a client-side timeout", i,
                     curl_easy_strerror(t[i].result), t[i].status);
        tr_cleanup(&t[i], multi);
    }
    curl_multi_cleanup(multi);
    if (took > 2.5)
        fail_msg("clients with a 0.3 s timeout took %.2f s", took);

    /* the server still works, at once */
    a = now_s();
    http_resp *r = http_get(&g_lp, "/healthz");
    assert_status(r, 200);
    http_resp_free(r);
    assert_true(now_s() - a < 1.0);
    json_t *v = tk_value(&g_lp, ready_ref);
    tk_assert_json_eq(v, "0.8");
    json_decref(v);
    r = tk_getf(&g_lp, "/v1/objects/%s?timeout=0.05", slow_ref);
    assert_status(r, 202);
    http_resp_free(r);
    cancel_quietly(slow_id);
    json_decref(tk_wait_state(&g_lp, slow_id, "CANCELLED", 2));

    /* no leak you can observe: the server's descriptors are back where they were, the
     * store holds just the two results, no task is pending */
    double deadline = now_s() + 3.0;
    int fds = tk_count_fds(g_lp.pid);
    while (fds > fds0 + 2 && now_s() < deadline) {
        sleep_s(0.05);
        fds = tk_count_fds(g_lp.pid);
    }
    if (fds > fds0 + 2)
        fail_msg("the server has %d descriptors open, %d before the abandoned requests (%d "
                 "while they were parked)",
                 fds, fds0, during);
    json_t *st = tk_status(&g_lp);
    json_t *store = json_member(st, "object_store");
    assert_int_equal(json_int(store, "pending"), 0);
    assert_int_equal(json_int(store, "objects"), objects0 + 2);
    assert_int_equal(json_int(json_member(st, "tasks"), "pending"), 0);
    json_decref(st);
}

static void test_parked_get_times_out_202(void **state)
{
    char id[ID], ref[ID];
    tk_submit(&g_lp, "{\"function\":\"sleep\",\"args\":[3]}", id, ref);
    double a = now_s();
    http_resp *r = tk_getf(&g_lp, "/v1/objects/%s?timeout=0.3", ref);
    double took = now_s() - a;
    assert_status(r, 202);
    assert_string_equal(json_str(r->json, "ref"), ref);
    assert_string_equal(json_str(r->json, "state"), "pending");
    const char *ra = http_header_get(r, "Retry-After");
    if (!ra || strcmp(ra, "1") != 0)
        fail_msg("Retry-After is %s, wanted 1", ra ? ra : "(missing)");
    http_resp_free(r);
    if (took < 0.25 || took > 2.0)
        fail_msg("GET ?timeout=0.3 answered after %.3f s", took);

    /* HEAD never waits */
    a = now_s();
    char path[512];
    snprintf(path, sizeof path, "/v1/objects/%s", ref);
    r = http_head(&g_lp, path);
    assert_status(r, 202);
    http_resp_free(r);
    if (now_s() - a > 1.0)
        fail_msg("HEAD of a pending object waited %.3f s", now_s() - a);

    /* timeout=0: answers at once */
    a = now_s();
    r = tk_getf(&g_lp, "/v1/objects/%s?timeout=0", ref);
    assert_status(r, 202);
    http_resp_free(r);
    if (now_s() - a > 1.0)
        fail_msg("GET ?timeout=0 waited %.3f s", now_s() - a);
    cancel_quietly(id);
}

static void test_parked_get_resumes_when_ready(void **state)
{
    char ref[ID];
    double a = now_s();
    tk_submit(&g_lp, "{\"function\":\"sleep\",\"args\":[0.3]}", NULL, ref);
    http_resp *r = tk_getf(&g_lp, "/v1/objects/%s?timeout=10", ref);
    double took = now_s() - a;
    assert_status(r, 200);
    assert_true(json_is_number(r->json) && json_number_value(r->json) == 0.3);
    http_resp_free(r);
    if (took < 0.25 || took > 2.0)
        fail_msg("a GET parked on a 0.3 s task answered after %.3f s", took);

    /* a stored error resumes it too, with the 424 */
    char fid[ID], fref[ID];
    tk_submit(&g_lp, "{\"function\":\"sleep\",\"args\":[0.2],\"options\":{\"timeout\":0.05}}",
              fid, fref);
    r = tk_getf(&g_lp, "/v1/objects/%s?timeout=10", fref);
    assert_problem(r, 424, "TaskError");
    http_resp_free(r);

    /* no ?timeout: waits up to the server maximum, so also until ready */
    a = now_s();
    tk_submit(&g_lp, "{\"function\":\"sleep\",\"args\":[0.2]}", NULL, ref);
    r = tk_getf(&g_lp, "/v1/objects/%s", ref);
    assert_status(r, 200);
    http_resp_free(r);
    assert_true(now_s() - a < 2.0);
}

static void test_get_batch_parks(void **state)
{
    char slow_id[ID], slow[ID], fast[ID], put[ID];
    tk_submit(&g_lp, "{\"function\":\"sleep\",\"args\":[3]}", slow_id, slow);
    tk_submit(&g_lp, "{\"function\":\"add\",\"args\":[20,22]}", NULL, fast);
    put_object(&g_lp, "text/plain", "hi", 2, put);
    json_decref(tk_value(&g_lp, fast));

    /* at its timeout: the pending entry says so, the others carry their values */
    double a = now_s();
    http_resp *r = tk_post_jsonf(&g_lp, "/v1/objects/get",
                                 "{\"refs\":[\"%s\",\"%s\",\"%s\",\"%s\"],\"timeout\":0.3}", slow,
                                 fast, put, slow);
    double took = now_s() - a;
    assert_status(r, 200);
    json_t *objs = json_member(r->json, "objects");
    assert_int_equal(json_array_size(objs), 4);
    json_t *o = json_array_get(objs, 0);
    assert_string_equal(json_str(o, "ref"), slow);
    assert_string_equal(json_str(o, "state"), "pending");
    assert_null(json_object_get(o, "value"));
    o = json_array_get(objs, 1);
    assert_string_equal(json_str(o, "ref"), fast);
    assert_string_equal(json_str(o, "state"), "ready");
    assert_int_equal(json_int(o, "value"), 42);
    o = json_array_get(objs, 2);
    assert_string_equal(json_str(o, "state"), "ready");
    assert_string_equal(json_str(o, "$bytes"), "aGk=");
    assert_string_equal(json_str(json_array_get(objs, 3), "state"), "pending");
    http_resp_free(r);
    if (took < 0.25 || took > 2.0)
        fail_msg("get_batch with timeout 0.3 answered after %.3f s", took);
    cancel_quietly(slow_id);

    /* values as soon as every ref is ready */
    char s1[ID], s2[ID];
    tk_submit(&g_lp, "{\"function\":\"sleep\",\"args\":[0.2]}", NULL, s1);
    tk_submit(&g_lp, "{\"function\":\"sleep\",\"args\":[0.4]}", NULL, s2);
    a = now_s();
    r = tk_post_jsonf(&g_lp, "/v1/objects/get", "{\"refs\":[\"%s\",\"%s\",\"%s\"],\"timeout\":10}",
                      s2, fast, s1);
    took = now_s() - a;
    assert_status(r, 200);
    objs = json_member(r->json, "objects");
    assert_int_equal(json_array_size(objs), 3);
    static const double want[] = {0.4, 42, 0.2};
    for (size_t i = 0; i < 3; i++) {
        o = json_array_get(objs, i);
        assert_string_equal(json_str(o, "state"), "ready");
        if (json_num(o, "value") != want[i])
            fail_msg("entry %zu value %g, wanted %g", i, json_num(o, "value"), want[i]);
    }
    http_resp_free(r);
    if (took < 0.3 || took > 2.0)
        fail_msg("get_batch waiting for a 0.4 s task answered after %.3f s", took);
}

static void test_wait_returns_when_k_ready(void **state)
{
    char slow_id[ID], slow[ID], fast[ID];
    tk_submit(&g_lp, "{\"function\":\"sleep\",\"args\":[5]}", slow_id, slow);
    tk_submit(&g_lp, "{\"function\":\"sleep\",\"args\":[0.2]}", NULL, fast);
    double a = now_s();
    http_resp *r = tk_post_jsonf(&g_lp, "/v1/wait",
                                 "{\"refs\":[\"%s\",\"%s\"],\"num_returns\":1,\"timeout\":10}",
                                 slow, fast);
    double took = now_s() - a;
    assert_status(r, 200);
    json_t *ready = json_member(r->json, "ready"), *not_ready = json_member(r->json, "not_ready");
    assert_int_equal(json_array_size(ready), 1);
    assert_string_equal(json_string_value(json_array_get(ready, 0)), fast);
    assert_int_equal(json_array_size(not_ready), 1);
    assert_string_equal(json_string_value(json_array_get(not_ready, 0)), slow);
    http_resp_free(r);
    if (took > 2.5)
        fail_msg("wait num_returns=1 answered after %.3f s; the fast task takes 0.2 s", took);

    /* asking for both: answers at the timeout with what is ready */
    a = now_s();
    r = tk_post_jsonf(&g_lp, "/v1/wait",
                      "{\"refs\":[\"%s\",\"%s\"],\"num_returns\":2,\"timeout\":0.3}", slow, fast);
    took = now_s() - a;
    assert_status(r, 200);
    ready = json_member(r->json, "ready");
    assert_int_equal(json_array_size(ready), 1);
    assert_string_equal(json_string_value(json_array_get(ready, 0)), fast);
    assert_int_equal(json_array_size(json_member(r->json, "not_ready")), 1);
    http_resp_free(r);
    if (took < 0.25 || took > 2.0)
        fail_msg("wait with timeout 0.3 answered after %.3f s", took);
    cancel_quietly(slow_id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_2000_parked_gets),
        cmocka_unit_test(test_client_disconnects_while_parked),
        cmocka_unit_test(test_parked_get_times_out_202),
        cmocka_unit_test(test_parked_get_resumes_when_ready),
        cmocka_unit_test(test_get_batch_parks),
        cmocka_unit_test(test_wait_returns_when_k_ready),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
