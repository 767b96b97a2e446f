/* API tests of /dashboard (api/dashboard.c) against the real rayd binary: the files served
 * are the ones in dashboard/, byte for byte, with their content types and a
 * Content-Security-Policy that keeps the page to its own origin (no CDN, works offline);
 * an unknown file is a 404 problem; config.json says whether the page must ask for a
 * token, and the files need none; and serving the dashboard costs the daemon nothing while
 * no one looks: no thread is started for it, and /v1/status's http.dashboard_requests
 * counts exactly the requests made for it and stands still otherwise.
 *
 * Run from the repository's root (make api-test does), where dashboard/ is. */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/api/support/harness.h"

static rayd_server g_srv;

/* The whole file at path (new, NUL-terminated, *len bytes), or NULL. */
static char *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *data = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = (cap + 4096) * 2;
            char *grown = realloc(data, cap);
            if (!grown) {
                free(data);
                fclose(f);
                return NULL;
            }
            data = grown;
        }
        size_t got = fread(data + n, 1, 4096, f);
        n += got;
        if (got < 4096)
            break;
    }
    fclose(f);
    data[n] = '\0';
    *len = n;
    return data;
}

/* Threads of the server process now (/proc/PID/task), leaving out jemalloc's background
 * threads: the allocator starts one per arena the first time a thread allocates in it,
 * whatever the request (housekeeping of memory, not work done for a route). */
static int thread_count(const rayd_server *s)
{
    char path[96];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)s->pid);
    DIR *d = opendir(path);
    if (!d)
        fail_msg("cannot open %s", path);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char comm_path[96 + 256 + 8], comm[32] = "";
        snprintf(comm_path, sizeof(comm_path), "%s/%s/comm", path, e->d_name);
        FILE *f = fopen(comm_path, "r");
        if (f) {
            if (!fgets(comm, sizeof(comm), f))
                comm[0] = '\0';
            fclose(f);
        }
        n += strncmp(comm, "jemalloc_bg_thd", 15) != 0;
    }
    closedir(d);
    return n;
}

/* /v1/status's http.<name>. */
static long long http_stat(const rayd_server *s, const char *name)
{
    http_resp *r = http_get(s, "/v1/status");
    assert_status(r, 200);
    json_t *v = json_object_get(json_member(r->json, "http"), name);
    if (!json_is_integer(v))
        fail_msg("/v1/status has no integer http.%s: %s", name, r->body);
    long long n = (long long)json_integer_value(v);
    http_resp_free(r);
    return n;
}

static const struct {
    const char *path, *file, *content_type;
} FILES[] = {
    {"/dashboard", "dashboard/index.html", "text/html"},
    {"/dashboard/index.html", "dashboard/index.html", "text/html"},
    {"/dashboard/app.js", "dashboard/app.js", "text/javascript"},
    {"/dashboard/style.css", "dashboard/style.css", "text/css"},
};
#define NFILES (sizeof(FILES) / sizeof(FILES[0]))

static void test_files_are_the_embedded_sources(void **state)
{
    for (size_t i = 0; i < NFILES; i++) {
        size_t len = 0;
        char *want = read_whole(FILES[i].file, &len);
        if (!want)
            fail_msg("cannot read %s (run from the repository's root)", FILES[i].file);
        http_resp *r = http_get(&g_srv, FILES[i].path);
        assert_status(r, 200);
        if (!http_ct_is(r, FILES[i].content_type))
            fail_msg("%s: Content-Type %s", FILES[i].path, http_header_get(r, "Content-Type"));
        assert_int_equal(r->body_len, len);
        assert_memory_equal(r->body, want, len);
        const char *csp = http_header_get(r, "Content-Security-Policy");
        assert_non_null(csp);
        assert_non_null(strstr(csp, "default-src 'self'"));
        assert_string_equal(http_header_get(r, "X-Content-Type-Options"), "nosniff");
        /* Nothing from another origin: no CDN, it works offline. */
        assert_null(strstr(want, "https://"));
        assert_null(strstr(want, "http://"));
        http_resp_free(r);
        free(want);
    }
}

static void test_unknown_file_404(void **state)
{
    http_resp *r = http_get(&g_srv, "/dashboard/no-such-file.js");
    assert_problem(r, 404, "NotFound");
    assert_string_equal(json_str(r->json, "file"), "no-such-file.js");
    http_resp_free(r);
}

static void test_config_without_token(void **state)
{
    http_resp *r = http_get(&g_srv, "/dashboard/config.json");
    assert_status(r, 200);
    assert_true(json_is_false(json_object_get(r->json, "auth")));
    http_resp_free(r);
}

/* With RAYD_API_TOKEN the files need no token (the page must load to ask for it), the API
 * does, and config.json says so. */
static void test_config_with_token(void **state)
{
    rayd_server s;
    const char *env[] = {"RAYD_API_TOKEN=dashboard-test-token", NULL};
    assert_int_equal(rayd_start(&s, NULL, env), 0);
    http_resp *r = http_get(&s, "/dashboard");
    assert_status(r, 200);
    http_resp_free(r);
    r = http_get(&s, "/dashboard/app.js");
    assert_status(r, 200);
    http_resp_free(r);
    r = http_get(&s, "/dashboard/config.json");
    assert_status(r, 200);
    assert_true(json_is_true(json_object_get(r->json, "auth")));
    http_resp_free(r);
    r = http_get(&s, "/v1/status");
    assert_problem(r, 401, "Unauthorized");
    http_resp_free(r);
    assert_int_equal(rayd_stop(&s), 0);
}

/* Serving /dashboard starts nothing and nothing runs for it afterwards: the process has as
 * many threads after serving every file as before, and the dashboard request count is
 * exactly the requests made for it, then stands still while status is read again. (The
 * page's own polling stops while its tab is hidden: tests/dashboard checks that.) */
static void test_costs_nothing_while_no_one_looks(void **state)
{
    rayd_server s;
    assert_int_equal(rayd_start(&s, NULL, NULL), 0);
    assert_int_equal(http_stat(&s, "dashboard_requests"), 0);
    int threads = thread_count(&s);
    for (size_t i = 0; i < NFILES; i++) {
        http_resp *r = http_get(&s, FILES[i].path);
        assert_status(r, 200);
        http_resp_free(r);
    }
    http_resp *r = http_get(&s, "/dashboard/config.json");
    assert_status(r, 200);
    http_resp_free(r);
    long long want = (long long)NFILES + 1;
    /* A request is counted when the server is done with it (its connection closed here),
     * which may come after the client has its answer: wait for the last one's count. */
    double deadline = now_s() + 5;
    long long n;
    while ((n = http_stat(&s, "dashboard_requests")) < want && now_s() < deadline)
        ;
    assert_int_equal(n, want);
    assert_int_equal(thread_count(&s), threads);
    for (int i = 0; i < 5; i++)
        assert_int_equal(http_stat(&s, "dashboard_requests"), want);
    assert_int_equal(thread_count(&s), threads);
    assert_int_equal(rayd_stop(&s), 0);
}

/* Sum of rayd_http_requests_total, and whether rayd_parked_requests is 0, from /metrics. */
static double metrics_requests(const rayd_server *s, bool *parked_zero)
{
    http_resp *m = http_get(s, "/metrics");
    assert_status(m, 200);
    double total = 0;
    for (const char *p = m->body; p && *p;) {
        if (strncmp(p, "rayd_http_requests_total{", 25) == 0)
            total += strtod(strchr(p, '}') + 1, NULL);
        const char *nl = strchr(p, '\n');
        p = nl ? nl + 1 : NULL;
    }
    if (parked_zero)
        *parked_zero = strstr(m->body, "\nrayd_parked_requests 0\n") != NULL;
    http_resp_free(m);
    return total;
}

/* The figures the overview shows from http: the request count is the sum of /metrics'
 * rayd_http_requests_total (a request is counted when the server is done with it, so the
 * status's figure lies between a scrape before and one after), and the parked count is
 * rayd_parked_requests. */
static void test_status_http_matches_metrics(void **state)
{
    rayd_server s;
    assert_int_equal(rayd_start(&s, NULL, NULL), 0);
    for (int i = 0; i < 3; i++) {
        http_resp *r = http_get(&s, "/healthz");
        http_resp_free(r);
    }
    /* counted when the server is done with them, maybe after the answers: wait for them */
    bool parked_zero = false;
    double before, deadline = now_s() + 5;
    while ((before = metrics_requests(&s, &parked_zero)) < 3 && now_s() < deadline)
        ;
    long long requests = http_stat(&s, "requests");
    double after = metrics_requests(&s, NULL);
    assert_true(before >= 3);
    if (requests < (long long)before || requests > (long long)after)
        fail_msg("status says %lld requests, /metrics %.0f before and %.0f after", requests,
                 before, after);
    assert_true(parked_zero);
    assert_int_equal(http_stat(&s, "parked"), 0);
    assert_int_equal(rayd_stop(&s), 0);
}

static int group_setup(void **state)
{
    return rayd_start(&g_srv, NULL, NULL);
}

static int group_teardown(void **state)
{
    return rayd_stop(&g_srv) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files_are_the_embedded_sources),
        cmocka_unit_test(test_unknown_file_404),
        cmocka_unit_test(test_config_without_token),
        cmocka_unit_test(test_config_with_token),
        cmocka_unit_test(test_costs_nothing_while_no_one_looks),
        cmocka_unit_test(test_status_http_matches_metrics),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
