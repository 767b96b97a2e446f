/* API tests of bad input: every malformed request gets the right 4xx problem and leaves the
 * object store exactly as it was (counts, bytes and listing compared before and after). */
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

#include "tests/api/support/harness.h"

#define MiB (1024 * 1024)

static rayd_server g_srv; /* --max-body 1M */
static char g_a[65], g_b[65], g_c[65], g_lost[65];

/* ---------------------------------------------------------------- helpers */

/* printf into a new string, kept until the group teardown frees them all. */
static char **g_strs;
static size_t g_nstrs;

__attribute__((format(printf, 1, 2))) static const char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *p = NULL;
    if (vasprintf(&p, f, ap) < 0)
        abort();
    va_end(ap);
    char **grown = realloc(g_strs, (g_nstrs + 1) * sizeof *g_strs);
    if (!grown)
        abort();
    g_strs = grown;
    g_strs[g_nstrs++] = p;
    return p;
}

static void free_strs(void)
{
    for (size_t i = 0; i < g_nstrs; i++)
        free(g_strs[i]);
    free(g_strs);
    g_strs = NULL;
    g_nstrs = 0;
}

/* The store as seen from outside: counters and the full listing. New string. */
static char *snapshot(void)
{
    http_resp *r = http_get(&g_srv, "/v1/status");
    assert_status(r, 200);
    json_t *os = json_member(r->json, "object_store");
    char head[256];
    snprintf(head, sizeof head, "objects=%lld bytes=%lld pending=%lld tombstones=%lld\n",
             json_int(os, "objects"), json_int(os, "bytes"), json_int(os, "pending"),
             json_int(os, "tombstones"));
    http_resp_free(r);
    r = http_get(&g_srv, "/v1/objects?limit=1000");
    assert_status(r, 200);
    assert_true(json_is_null(json_member(r->json, "next_cursor")));
    char *list = json_dumps(json_member(r->json, "objects"), JSON_COMPACT | JSON_SORT_KEYS);
    http_resp_free(r);
    size_t n = strlen(head) + strlen(list) + 1;
    char *s = malloc(n);
    snprintf(s, n, "%s%s", head, list);
    free(list);
    return s;
}

/* Failures of table-driven checks are counted and printed, so that one run lists every
 * broken case; each test ends with soft_done(), which fails the test when any did. */
static int g_soft_failures;

static void soft_fail(const char *what, const char *why)
{
    fprintf(stderr, "FAIL: %s: %s\n", what, why);
    g_soft_failures++;
}

static void soft_done(void)
{
    int n = g_soft_failures;
    g_soft_failures = 0;
    if (n)
        fail_msg("%d case(s) failed (listed above)", n);
}

static bool check_unchanged(const char *before, const char *what)
{
    char *after = snapshot();
    bool same = strcmp(before, after) == 0;
    if (!same) {
        fprintf(stderr, "  before: %.600s\n  after:  %.600s\n", before, after);
        soft_fail(what, "changed the store");
    }
    free(after);
    return same;
}

static void assert_unchanged(const char *before, const char *what)
{
    check_unchanged(before, what);
    soft_done();
}

/* Send the request, check the problem and that the store did not change. ct NULL: no
 * Content-Type header. Returns the response for more checks (free it), or NULL when it
 * was not the expected problem (counted as a soft failure). */
static http_resp *bad_keep(const char *method, const char *path, const char *ct, const char *body,
                           long status, const char *title)
{
    char *before = snapshot();
    char cth[256];
    const char *h[] = {cth, NULL};
    if (ct)
        snprintf(cth, sizeof cth, "Content-Type: %s", ct);
    http_opts o = {.method = method,
                   .path = path,
                   .headers = ct ? h : NULL,
                   .body = body,
                   .body_len = body ? strlen(body) : 0,
                   .has_body = body != NULL};
    http_resp *r = http_request_opts(&g_srv, &o);
    const char *what =
        fmt("%s %s [%s] %.200s", method, path, ct ? ct : "no type", body ? body : "");
    char why[512];
    bool ok = problem_ok(r, status, title, why, sizeof why);
    if (!ok)
        soft_fail(what, why);
    check_unchanged(before, what);
    free(before);
    if (!ok) {
        http_resp_free(r);
        return NULL;
    }
    return r;
}

static void bad(const char *method, const char *path, const char *ct, const char *body, long status,
                const char *title)
{
    http_resp_free(bad_keep(method, path, ct, body, status, title));
}

/* 400 BadRequest for a JSON POST. */
static void bad_json(const char *path, const char *body)
{
    bad("POST", path, "application/json", body, 400, "BadRequest");
}

static bool detail_says_where(const http_resp *r)
{
    const char *d = json_str(r->json, "detail");
    static const char *const words[] = {"line", "column",    "position", "offset",
                                        "byte", "character", NULL};
    for (int i = 0; words[i]; i++)
        if (strcasestr(d, words[i]))
            return true;
    return false;
}

static bool allow_has(const char *allow, const char *method)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", allow);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        size_t n = strlen(t);
        while (n && t[n - 1] == ' ')
            t[--n] = '\0';
        if (strcmp(t, method) == 0)
            return true;
    }
    return false;
}

/* ---------------------------------------------------------------- setup */

static int group_setup(void **state)
{
    static const char *const args[] = {
        "--memory-limit", "64M", "--max-body", "1M", "--max-wait", "5",
        "--http-threads", "2",   NULL};
    if (rayd_start(&g_srv, args, NULL) != 0)
        return -1;
    return 0;
}

/* cmocka 1.1.5 does not count a failed group teardown in its exit code: main does. */
static int g_teardown_failed;

static int group_teardown(void **state)
{
    free_strs();
    if (rayd_stop_clean(&g_srv) != 0) {
        g_teardown_failed = 1;
        return -1;
    }
    return 0;
}

/* Objects every other test refers to (runs first). */
static void test_populate(void **state)
{
    put_object(&g_srv, "text/plain", "alpha", 5, g_a);
    put_object(&g_srv, NULL, "beta", 4, g_b);
    put_object(&g_srv, "application/json", "{\"c\":3}", 7, g_c);
    put_object(&g_srv, NULL, "lost", 4, g_lost);
    http_resp *r = http_delete(&g_srv, fmt("/v1/objects/%s", g_lost));
    assert_status(r, 204);
    http_resp_free(r);
}

/* ---------------------------------------------------------------- JSON bodies */

static void test_malformed_json(void **state)
{
    static const char *const bodies[] = {
        "{\"objects\": [1, 2", /* truncated */
        "{\"objects\": [1,]}", /* trailing comma */
        "not json",
        "{\"objects\": [1]} trailing", /* garbage after the value */
        "{'objects': [1]}",
        "{\"objects\": [1, 2]",
        NULL,
    };
    static const char *const paths[] = {"/v1/objects/batch", "/v1/objects/get", "/v1/wait", NULL};
    for (int p = 0; paths[p]; p++) {
        for (int i = 0; bodies[i]; i++) {
            http_resp *r =
                bad_keep("POST", paths[p], "application/json", bodies[i], 400, "BadRequest");
            if (r && !detail_says_where(r))
                soft_fail(fmt("POST %s %s", paths[p], bodies[i]),
                          fmt("detail \"%s\" does not say where", json_str(r->json, "detail")));
            http_resp_free(r);
        }
        /* An empty body is not JSON either. */
        bad_json(paths[p], "");
    }
    soft_done();
}

static void test_batch_wrong_shapes(void **state)
{
    static const char *const bodies[] = {
        "[1, 2]",
        "{\"objects\": 5}",
        "{\"objects\": \"x\"}",
        "{\"objects\": {}}",
        "{\"objects\": null}",
        "{}",
        "{\"objects\": []}",                   /* empty batch */
        "{\"objects\": [1], \"extra\": true}", /* unknown field */
        "{\"Objects\": [1]}",
        "{\"objects\": [1, {\"$bytes\": \"!!!!\"}]}", /* bad base64 */
        "{\"objects\": [1, 2, {\"$bytes\": \"a*b=\"}]}",
        "{\"objects\": [{\"$bytes\": \"aGk=\"}, {\"$bytes\": \"aGk=\", \"extra\": 1}]}",
        "{\"objects\": [{\"$bytes\": 5}]}",
        "{\"objects\": [{\"$bytes\": \"aGk=\", \"content_type\": 7}]}",
        "\"objects\"",
        "null",
        NULL,
    };
    for (int i = 0; bodies[i]; i++)
        bad_json("/v1/objects/batch", bodies[i]);

    /* 100001 elements: one over the limit. */
    size_t n = 100001;
    char *big = malloc(16 + 2 * n);
    size_t len = (size_t)sprintf(big, "{\"objects\":[");
    for (size_t i = 0; i < n; i++) {
        big[len++] = '0';
        big[len++] = i + 1 < n ? ',' : ']';
    }
    big[len++] = '}';
    big[len] = '\0';
    bad_json("/v1/objects/batch", big);
    free(big);
    soft_done();
}

static void test_get_batch_wrong_shapes(void **state)
{
    char long_ref[66];
    memset(long_ref, 'a', 65);
    long_ref[65] = '\0';
    const char *bodies[] = {
        "{\"refs\": \"x\"}",
        "{\"refs\": [1]}",
        "{\"refs\": null}",
        "{\"refs\": {}}",
        "{}",
        "[]",
        "{\"refs\": [\"a b\"]}",
        "{\"refs\": [\"a.b\"]}",
        "{\"refs\": [\"\"]}",
        "{\"refs\": [\"../x\"]}",
        fmt("{\"refs\": [\"%s\"]}", long_ref),
        fmt("{\"refs\": [\"%s\"], \"timeout\": \"1\"}", g_a),
        fmt("{\"refs\": [\"%s\"], \"timeout\": -1}", g_a),
        fmt("{\"refs\": [\"%s\"], \"timeout\": true}", g_a),
        fmt("{\"refs\": [\"%s\"], \"extra\": 1}", g_a),
        fmt("{\"refs\": [\"%s\", 5]}", g_a),
        NULL,
    };
    for (int i = 0; bodies[i]; i++)
        bad_json("/v1/objects/get", bodies[i]);
    soft_done();
}

static void test_wait_wrong_shapes(void **state)
{
    char long_ref[66];
    memset(long_ref, 'w', 65);
    long_ref[65] = '\0';
    const char *three = fmt("\"%s\", \"%s\", \"%s\"", g_a, g_b, g_c);
    const char *bodies[] = {
        fmt("{\"refs\": [\"%s\", \"%s\", \"%s\"]}", g_a, g_b, g_a), /* duplicate */
        fmt("{\"refs\": [\"%s\", \"%s\"], \"num_returns\": 1}", g_lost, g_lost),
        fmt("{\"refs\": [%s], \"num_returns\": 0}", three),
        fmt("{\"refs\": [%s], \"num_returns\": -1}", three),
        fmt("{\"refs\": [%s], \"num_returns\": 4}", three),
        fmt("{\"refs\": [%s], \"num_returns\": 1.5}", three),
        fmt("{\"refs\": [%s], \"num_returns\": \"1\"}", three),
        fmt("{\"refs\": [%s], \"num_returns\": true}", three),
        NULL,
    };
    for (int i = 0; bodies[i]; i++)
        bad_json("/v1/wait", bodies[i]);
    const char *more[] = {
        fmt("{\"refs\": [%s], \"timeout\": \"1\"}", three),
        fmt("{\"refs\": [%s], \"timeout\": -0.5}", three),
        fmt("{\"refs\": [%s], \"timeout\": \"abc\"}", three),
        fmt("{\"refs\": [%s], \"timeout\": [1]}", three),
        fmt("{\"refs\": [%s], \"extra\": 1}", three),
        fmt("{\"refs\": [\"%s\"]}", long_ref),
        "{\"refs\": [\"bad ref\"]}",
        "{\"refs\": [1]}",
        "{\"refs\": \"x\"}",
        "{}",
        NULL,
    };
    for (int i = 0; more[i]; i++)
        bad_json("/v1/wait", more[i]);
    soft_done();
}

/* ---------------------------------------------------------------- path and query */

static void test_bad_ref_in_path(void **state)
{
    char long_ref[66];
    memset(long_ref, 'r', 65);
    long_ref[65] = '\0';
    const char *refs[] = {long_ref, "a.b", "a%20b", "a~b", "a+b", "%C3%A9t%C3%A9", NULL};
    for (int i = 0; refs[i]; i++) {
        bad("GET", fmt("/v1/objects/%s", refs[i]), NULL, NULL, 400, "BadRequest");
        bad("GET", fmt("/v1/objects/%s/meta", refs[i]), NULL, NULL, 400, "BadRequest");
        bad("DELETE", fmt("/v1/objects/%s", refs[i]), NULL, NULL, 400, "BadRequest");
        http_resp *r = http_head(&g_srv, fmt("/v1/objects/%s", refs[i]));
        if (r->status != 400)
            soft_fail(fmt("HEAD /v1/objects/%s", refs[i]),
                      fmt("status %ld, wanted 400", r->status));
        http_resp_free(r);
    }
    soft_done();
}

static void test_bad_query_values(void **state)
{
    static const char *const timeouts[] = {"abc", "-1", "", "nan", "1s2", "0x10", NULL};
    for (int i = 0; timeouts[i]; i++)
        bad("GET", fmt("/v1/objects/%s?timeout=%s", g_a, timeouts[i]), NULL, NULL, 400,
            "BadRequest");
    static const char *const ttls[] = {"0", "-1", "abc", "", "nan", NULL};
    for (int i = 0; ttls[i]; i++)
        bad("POST", fmt("/v1/objects?ttl=%s", ttls[i]), "text/plain", "payload", 400, "BadRequest");
    static const char *const lists[] = {
        "state=foo", "state=READY2", "limit=0",   "limit=1001",
        "limit=abc", "limit=-5",     "limit=1.5", "cursor=%21%21garbage%21%21",
        NULL};
    for (int i = 0; lists[i]; i++)
        bad("GET", fmt("/v1/objects?%s", lists[i]), NULL, NULL, 400, "BadRequest");
    soft_done();
}

/* ---------------------------------------------------------------- sizes */

typedef struct upload {
    size_t total; /* bytes the callback will produce at most */
    size_t given; /* bytes produced so far */
} upload;

static size_t upload_read(char *buf, size_t size, size_t nitems, void *ctx)
{
    upload *u = ctx;
    size_t n = size * nitems;
    if (n > 16384)
        n = 16384; /* a small read callback */
    if (n > u->total - u->given)
        n = u->total - u->given;
    memset(buf, 'x', n);
    u->given += n;
    return n;
}

static void test_body_over_max_body(void **state)
{
    char *before = snapshot();

    /* 1 MiB + 1 byte, as curl's command line sends it (Expect: 100-continue above 1 MiB). */
    size_t n = MiB + 1;
    char *body = malloc(n);
    memset(body, 'y', n);
    const char *he[] = {"Expect: 100-continue", NULL};
    http_opts o = {.method = "POST",
                   .path = "/v1/objects",
                   .headers = he,
                   .body = body,
                   .body_len = n,
                   .has_body = true};
    http_resp *r = http_request_opts(&g_srv, &o);
    assert_problem(r, 413, "PayloadTooLarge");
    http_resp_free(r);
    assert_unchanged(before, "a 1 MiB + 1 put");

    /* JSON endpoints too. */
    memcpy(body, "{\"objects\": [\"", 14);
    memcpy(body + n - 3, "\"]}", 3);
    const char *hj[] = {"Content-Type: application/json", "Expect: 100-continue", NULL};
    http_opts oj = {.method = "POST",
                    .path = "/v1/objects/batch",
                    .headers = hj,
                    .body = body,
                    .body_len = n,
                    .has_body = true};
    r = http_request_opts(&g_srv, &oj);
    assert_problem(r, 413, "PayloadTooLarge");
    http_resp_free(r);
    assert_unchanged(before, "a 1 MiB + 1 batch");
    free(body);

    /* Content-Length: 64 MiB with a small read callback and Expect: 100-continue: answered
     * from the header, before the body is sent. */
    upload u = {.total = 64 * (size_t)MiB};
    http_opts oe = {.method = "POST",
                    .path = "/v1/objects",
                    .headers = he,
                    .read_fn = upload_read,
                    .read_ctx = &u,
                    .upload_size = 64LL * MiB};
    r = http_request_opts(&g_srv, &oe);
    assert_problem(r, 413, "PayloadTooLarge");
    http_resp_free(r);
    if (u.given >= u.total)
        fail_msg("the client had to send all %zu bytes before the 413", u.given);
    assert_unchanged(before, "a 64 MiB Content-Length put with Expect");

    /* Without Expect, on a raw socket: the headers and 16 KiB of a 64 MiB body, then the
     * client stops sending and listens. The answer comes from the Content-Length alone. */
    size_t part = 16384;
    static const char head[] = "POST /v1/objects HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               "Content-Type: application/octet-stream\r\n"
                               "Content-Length: 67108864\r\n\r\n";
    char *raw = malloc(sizeof head - 1 + part);
    memcpy(raw, head, sizeof head - 1);
    memset(raw + sizeof head - 1, 'q', part);
    char *resp = NULL;
    double t0 = now_s();
    int st = raw_http(&g_srv, raw, sizeof head - 1 + part, 5.0, &resp);
    double took = now_s() - t0;
    free(raw);
    if (st != 413)
        fail_msg("64 MiB Content-Length, 16 KiB sent: status %d after %.1f s, wanted 413: %.300s",
                 st, took, resp);
    if (!strstr(resp, "\"PayloadTooLarge\""))
        fail_msg("413 body: %.300s", resp);
    if (took > 2.0)
        fail_msg("413 took %.1f s", took);
    free(resp);
    assert_unchanged(before, "a raw 64 MiB Content-Length put");

    /* The same through curl without Expect, which keeps sending: the server answers 413 or
     * closes the connection early (curl then reports a send failure); it never stores
     * anything and never waits for all 64 MiB (the 10 s timeout would show that). */
    u = (upload){.total = 64 * (size_t)MiB};
    http_opts on = {.method = "POST",
                    .path = "/v1/objects",
                    .read_fn = upload_read,
                    .read_ctx = &u,
                    .upload_size = 64LL * MiB,
                    .timeout_ms = 10000,
                    .allow_transport_error = true};
    r = http_request_opts(&g_srv, &on);
    if (r->status == 0) {
        if (!strstr(r->error, "Send failure") && !strstr(r->error, "reset") &&
            !strstr(r->error, "Broken pipe"))
            fail_msg("64 MiB Content-Length without Expect: %s", r->error);
    } else {
        assert_problem(r, 413, "PayloadTooLarge");
    }
    http_resp_free(r);
    assert_unchanged(before, "a 64 MiB Content-Length put");

    /* Chunked (no Content-Length), 2 MiB: 413 once the limit is passed (or, as above, the
     * connection closed under curl's feet). */
    u = (upload){.total = 2 * (size_t)MiB};
    const char *hc[] = {"Transfer-Encoding: chunked", NULL};
    http_opts oc = {.method = "POST",
                    .path = "/v1/objects",
                    .headers = hc,
                    .read_fn = upload_read,
                    .read_ctx = &u,
                    .upload_size = -1,
                    .timeout_ms = 10000,
                    .allow_transport_error = true};
    r = http_request_opts(&g_srv, &oc);
    if (r->status == 0) {
        if (!strstr(r->error, "Send failure") && !strstr(r->error, "reset") &&
            !strstr(r->error, "Broken pipe"))
            fail_msg("2 MiB chunked: %s", r->error);
    } else {
        assert_problem(r, 413, "PayloadTooLarge");
    }
    http_resp_free(r);
    assert_unchanged(before, "a 2 MiB chunked put");

    /* A chunked body over the limit on a raw socket, sent in full: 413. */
    size_t chunk = 256 * 1024, nchunks = 5; /* 1.25 MiB */
    static const char chead[] = "POST /v1/objects HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n";
    size_t cap = sizeof chead + nchunks * (chunk + 16) + 8, len = 0;
    raw = malloc(cap);
    memcpy(raw, chead, sizeof chead - 1);
    len = sizeof chead - 1;
    for (size_t k = 0; k < nchunks; k++) {
        len += (size_t)sprintf(raw + len, "%zx\r\n", chunk);
        memset(raw + len, 'c', chunk);
        len += chunk;
        memcpy(raw + len, "\r\n", 2);
        len += 2;
    }
    memcpy(raw + len, "0\r\n\r\n", 5);
    len += 5;
    st = raw_http(&g_srv, raw, len, 5.0, &resp);
    free(raw);
    if (st != 413)
        fail_msg("1.25 MiB chunked on a raw socket: status %d, wanted 413: %.300s", st, resp);
    free(resp);
    assert_unchanged(before, "a raw 1.25 MiB chunked put");
    free(before);
}

static void test_body_at_max_body_accepted(void **state)
{
    size_t n = MiB;
    char *body = malloc(n);
    memset(body, 'z', n);
    char ref[65];
    put_object(&g_srv, NULL, body, n, ref);
    free(body);
    http_resp *r = http_delete(&g_srv, fmt("/v1/objects/%s", ref));
    assert_status(r, 204);
    http_resp_free(r);

    /* A small chunked upload is fine. */
    upload u = {.total = 1000};
    const char *hc[] = {"Transfer-Encoding: chunked", NULL};
    http_opts oc = {.method = "POST",
                    .path = "/v1/objects",
                    .headers = hc,
                    .read_fn = upload_read,
                    .read_ctx = &u,
                    .upload_size = -1};
    r = http_request_opts(&g_srv, &oc);
    assert_status(r, 201);
    assert_int_equal(json_int(r->json, "size"), 1000);
    snprintf(ref, sizeof ref, "%s", json_str(r->json, "ref"));
    http_resp_free(r);
    r = http_get(&g_srv, fmt("/v1/objects/%s", ref));
    assert_status(r, 200);
    assert_int_equal(r->body_len, 1000);
    assert_true(r->body[0] == 'x' && r->body[999] == 'x');
    http_resp_free(r);
    r = http_delete(&g_srv, fmt("/v1/objects/%s", ref));
    assert_status(r, 204);
    http_resp_free(r);
}

/* ---------------------------------------------------------------- media types */

static void test_unsupported_media_type(void **state)
{
    static const char *const types[] = {
        "text/plain", "application/xml",          "multipart/form-data; boundary=x",
        "text/json",  "application/octet-stream", NULL};
    for (int i = 0; types[i]; i++) {
        bad("POST", "/v1/objects/batch", types[i], "{\"objects\": [1]}", 415,
            "UnsupportedMediaType");
        bad("POST", "/v1/objects/get", types[i], fmt("{\"refs\": [\"%s\"]}", g_a), 415,
            "UnsupportedMediaType");
        bad("POST", "/v1/wait", types[i], fmt("{\"refs\": [\"%s\"]}", g_a), 415,
            "UnsupportedMediaType");
    }
    soft_done();
}

static void test_json_media_types_accepted(void **state)
{
    static const char *const types[] = {"application/json",
                                        "application/json; charset=utf-8",
                                        "application/x-www-form-urlencoded",
                                        "application/merge-patch+json",
                                        "Application/JSON",
                                        NULL};
    for (int i = -1; i < 0 || types[i]; i++) {
        const char *ct = i < 0 ? NULL : types[i]; /* -1: no Content-Type at all */
        char cth[128];
        const char *h[] = {cth, NULL};
        if (ct)
            snprintf(cth, sizeof cth, "Content-Type: %s", ct);
        const char *body = "{\"objects\": [42]}";
        http_resp *r =
            http_request(&g_srv, "POST", "/v1/objects/batch", ct ? h : NULL, body, strlen(body));
        if (r->status != 201)
            fail_msg("batch with Content-Type %s: %ld, wanted 201", ct ? ct : "(none)", r->status);
        const char *ref = json_string_value(json_array_get(json_member(r->json, "refs"), 0));
        assert_non_null(ref);
        http_resp *d = http_delete(&g_srv, fmt("/v1/objects/%s", ref));
        assert_status(d, 204);
        http_resp_free(d);
        http_resp_free(r);

        const char *wb = fmt("{\"refs\": [\"%s\"], \"timeout\": 0}", g_a);
        r = http_request(&g_srv, "POST", "/v1/wait", ct ? h : NULL, wb, strlen(wb));
        assert_status(r, 200);
        http_resp_free(r);
    }
}

/* ---------------------------------------------------------------- routes */

static void test_weird_paths_are_4xx(void **state)
{
    static const char *const paths[] = {
        "/v1/objects/../status",
        "/v1/objects/..",
        "/v1/objects/%2e%2e",
        "/v1/objects/%2e%2e/meta",
        "/v1/objects/%2E%2E%2Fstatus",
        "/v1/objects/%00",
        "/v1/objects/a%00b",
        "/v1/objects/%ff",
        "/v1/objects/%ff%fe/meta",
        "/v1/%2e%2e/v1/status",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/v1/objects/%",
        "/v1/objects/%zz",
        "/v1/objects/..%2f..%2fetc%2fpasswd",
        "/v1/objects/%c0%ae%c0%ae",
        "/v1/objects/x/y/z",
        "/v1/objects/%0d%0aX-Injected:%201",
        "/v1/objects/a%2Fb",
        NULL,
    };
    static const char *const methods[] = {"GET", "DELETE", "POST", NULL};
    for (int i = 0; paths[i]; i++) {
        for (int m = 0; methods[m]; m++) {
            char *before = snapshot();
            http_opts o = {.method = methods[m],
                           .path = paths[i],
                           .has_body = strcmp(methods[m], "POST") == 0,
                           .body = "{}",
                           .body_len = 2,
                           .allow_transport_error = true};
            http_resp *r = http_request_opts(&g_srv, &o);
            const char *what = fmt("%s %s", methods[m], paths[i]);
            if (r->status < 400 || r->status > 499)
                soft_fail(what, fmt("status %ld (%s), wanted 4xx", r->status, r->error));
            if (http_header_get(r, "X-Injected"))
                soft_fail(what, "header injected");
            if (r->body_len && (!http_ct_is(r, "application/problem+json") ||
                                !json_is_string(json_object_get(r->json, "title"))))
                soft_fail(what, fmt("%ld without a problem body", r->status));
            http_resp_free(r);
            check_unchanged(before, what);
            free(before);
        }
    }
    soft_done();
}

static void test_unknown_route(void **state)
{
    static const struct {
        const char *method, *path;
    } cases[] = {{"GET", "/v1/nope"},
                 {"POST", "/v2/objects"},
                 {"GET", "/"},
                 {"DELETE", "/v1/objectsx"},
                 {"GET", "/v1"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_resp *r = bad_keep(cases[i].method, cases[i].path, NULL, NULL, 404, "NotFound");
        if (!r)
            continue;
        const char *d = json_str(r->json, "detail");
        if (!strstr(d, cases[i].method) || !strstr(d, cases[i].path))
            soft_fail(fmt("%s %s", cases[i].method, cases[i].path),
                      fmt("404 detail \"%s\" does not name method and path", d));
        http_resp_free(r);
    }
    soft_done();
}

static void test_wrong_method(void **state)
{
    const struct {
        const char *method, *path;
        const char *allowed[4];
    } cases[] = {
        {"PUT", "/v1/objects", {"GET", "POST"}},
        {"DELETE", "/v1/objects", {"GET", "POST"}},
        {"DELETE", "/v1/wait", {"POST"}},
        {"GET", "/v1/wait", {"POST"}},
        {"GET", "/v1/objects/get", {"POST"}},
        {"PUT", "/v1/objects/batch", {"POST"}},
        {"PATCH", fmt("/v1/objects/%s", g_a), {"GET", "HEAD", "DELETE"}},
        {"PUT", fmt("/v1/objects/%s", g_b), {"GET", "HEAD", "DELETE"}},
        {"POST", fmt("/v1/objects/%s/meta", g_a), {"GET"}},
        {"POST", "/healthz", {"GET"}},
        {"DELETE", "/v1/status", {"GET"}},
        {"POST", "/openapi.json", {"GET"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_resp *r =
            bad_keep(cases[i].method, cases[i].path, NULL, NULL, 405, "MethodNotAllowed");
        if (!r)
            continue;
        const char *what = fmt("%s %s", cases[i].method, cases[i].path);
        const char *allow = http_header_get(r, "Allow");
        if (!allow) {
            soft_fail(what, "405 without Allow");
            http_resp_free(r);
            continue;
        }
        for (int k = 0; k < 4 && cases[i].allowed[k]; k++)
            if (!allow_has(allow, cases[i].allowed[k]))
                soft_fail(what, fmt("Allow \"%s\" lacks %s", allow, cases[i].allowed[k]));
        if (allow_has(allow, cases[i].method))
            soft_fail(what, fmt("Allow \"%s\" lists the refused method", allow));
        http_resp_free(r);
    }
    soft_done();
}

static void test_te_and_cl(void **state)
{
    static const char *const reqs[] = {
        "POST /v1/objects HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        "5\r\nhello\r\n0\r\n\r\n",
        "POST /v1/objects/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nContent-Length: 17\r\nConnection: close\r\n\r\n"
        "11\r\n{\"objects\": [1]}\r\n0\r\n\r\n",
        /* Smuggling shape: the CL body hides a second request. */
        "POST /v1/objects HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 44\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nPOST /v1/objects HTTP/1.1\r\nHost: x\r\n\r\n",
        NULL,
    };
    for (int i = 0; reqs[i]; i++) {
        char *before = snapshot();
        char *resp = NULL;
        int st = raw_http(&g_srv, reqs[i], strlen(reqs[i]), 5.0, &resp);
        const char *what = fmt("raw request %d with Transfer-Encoding and Content-Length", i);
        char *hend = strstr(resp, "\r\n\r\n");
        const char *ct = strcasestr(resp, "\r\nContent-Type: application/problem+json");
        if (st != 400) {
            soft_fail(what, fmt("status %d, wanted 400; response: %.400s", st, resp));
        } else if (!ct || !hend || ct > hend) {
            soft_fail(what, fmt("400 without problem+json: %.300s", resp));
        } else if (!strstr(hend, "\"BadRequest\"")) {
            soft_fail(what, fmt("400 body: %.300s", hend));
        } else if (strstr(hend, "HTTP/1.1 ")) {
            /* Exactly one response: the hidden request was not served. */
            soft_fail(what, fmt("a second response followed: %.600s", resp));
        }
        free(resp);
        check_unchanged(before, what);
        free(before);
    }
    soft_done();
}

static void test_still_healthy(void **state)
{
    http_resp *r = http_get(&g_srv, "/healthz");
    assert_status(r, 200);
    assert_string_equal(json_str(r->json, "status"), "ok");
    http_resp_free(r);
    /* And the objects made at the start are intact. */
    r = http_get(&g_srv, fmt("/v1/objects/%s", g_a));
    assert_status(r, 200);
    assert_int_equal(r->body_len, 5);
    assert_memory_equal(r->body, "alpha", 5);
    http_resp_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_populate),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_batch_wrong_shapes),
        cmocka_unit_test(test_get_batch_wrong_shapes),
        cmocka_unit_test(test_wait_wrong_shapes),
        cmocka_unit_test(test_bad_ref_in_path),
        cmocka_unit_test(test_bad_query_values),
        cmocka_unit_test(test_body_over_max_body),
        cmocka_unit_test(test_body_at_max_body_accepted),
        cmocka_unit_test(test_unsupported_media_type),
        cmocka_unit_test(test_json_media_types_accepted),
        cmocka_unit_test(test_weird_paths_are_4xx),
        cmocka_unit_test(test_unknown_route),
        cmocka_unit_test(test_wrong_method),
        cmocka_unit_test(test_te_and_cl),
        cmocka_unit_test(test_still_healthy),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    return failed ? failed : g_teardown_failed;
}
