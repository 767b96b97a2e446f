/* API tests of object lifetime (issue 13): freeing many objects at once
 * (POST /v1/objects/free), what a full store does (RAYD_ON_FULL: spill, evict, refuse), and
 * spilling to disk. Each test starts its own server with the limits it needs. */
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
#include <sys/stat.h>
#include <unistd.h>

#include "tests/api/support/harness.h"

#define KIB 1024L
#define MIB (1024L * 1024L)

/* The server of the running test; the teardown stops one a failed test left running. */
static rayd_server g_own;

static int own_teardown(void **state)
{
    if (g_own.pid > 0)
        rayd_stop(&g_own);
    g_own.pid = 0;
    return 0;
}

static void start_own(const char *const *args, const char *const *env)
{
    memset(&g_own, 0, sizeof g_own);
    if (rayd_start(&g_own, args, env) != 0)
        fail_msg("rayd did not start");
}

static void stop_own(void)
{
    int st = rayd_stop(&g_own);
    g_own.pid = 0;
    if (st != 0)
        fail_msg("rayd exited with status %d after SIGTERM (want 0)", st);
}

static char *objpath(const char *ref, const char *suffix)
{
    static __thread char buf[8][256];
    static __thread int next;
    char *p = buf[next++ & 7];
    snprintf(p, 256, "/v1/objects/%s%s", ref, suffix ? suffix : "");
    return p;
}

/* Asserts that list is a JSON array holding exactly the n refs given, in that order. */
static void assert_refs(const json_t *list, const char *const *refs, size_t n, const char *what)
{
    if (!json_is_array(list))
        fail_msg("%s is not a list", what);
    if (json_array_size(list) != n)
        fail_msg("%s has %zu refs, want %zu", what, json_array_size(list), n);
    for (size_t i = 0; i < n; i++) {
        const char *got = json_string_value(json_array_get(list, i));
        if (!got || strcmp(got, refs[i]) != 0)
            fail_msg("%s[%zu] is %s, want %s", what, i, got ? got : "(not a string)", refs[i]);
    }
}

static __attribute__((unused)) json_t *status_store(const rayd_server *s)
{
    http_resp *r = http_get(s, "/v1/status");
    assert_status(r, 200);
    json_t *os = json_incref(json_member(r->json, "object_store"));
    http_resp_free(r);
    return os;
}

/* Deterministic bytes for object i of size n (new, free()). */
static __attribute__((unused)) unsigned char *pattern(size_t i, size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    uint64_t x = 0x9E3779B97F4A7C15ULL ^ (i * 0x100000001B3ULL);
    for (size_t k = 0; k < n; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[k] = (unsigned char)x;
    }
    return p;
}

/* ---------------------------------------------------------------- POST /v1/objects/free */

static void test_free_many(void **state)
{
    start_own(NULL, NULL);
    char a[65], b[65], c[65], gone[65];
    put_object(&g_own, NULL, "a", 1, a);
    put_object(&g_own, NULL, "b", 1, b);
    put_object(&g_own, NULL, "c", 1, c);
    put_object(&g_own, NULL, "d", 1, gone);
    http_resp *r = http_delete(&g_own, objpath(gone, NULL));
    assert_status(r, 204);
    http_resp_free(r);

    char body[512];
    snprintf(body, sizeof body, "{\"refs\":[\"%s\",\"never_was\",\"%s\",\"%s\",\"%s\"]}", a,
             gone, b, a);
    r = http_post_json(&g_own, "/v1/objects/free", body);
    assert_status(r, 200);
    const char *freed[] = {a, b}, *was_gone[] = {gone, a}, *unknown[] = {"never_was"};
    assert_refs(json_member(r->json, "freed"), freed, 2, "freed");
    assert_refs(json_member(r->json, "gone"), was_gone, 2, "gone");
    assert_refs(json_member(r->json, "unknown"), unknown, 1, "unknown");
    assert_null(json_object_get(r->json, "foreign")); /* not in cluster mode */
    http_resp_free(r);

    /* Freed means freed: 410 with the reason, and c, not listed, is still there. */
    r = http_get(&g_own, objpath(a, NULL));
    assert_problem(r, 410, "ObjectLost");
    http_resp_free(r);
    r = http_get(&g_own, objpath(b, "/meta"));
    assert_string_equal(json_str(r->json, "lost_reason"), "freed");
    http_resp_free(r);
    r = http_get(&g_own, objpath(c, NULL));
    assert_status(r, 200);
    http_resp_free(r);
    json_t *os = status_store(&g_own);
    assert_int_equal(json_int(os, "objects"), 1);
    json_decref(os);

    /* An empty list frees nothing. */
    r = http_post_json(&g_own, "/v1/objects/free", "{\"refs\":[]}");
    assert_status(r, 200);
    assert_refs(json_member(r->json, "freed"), NULL, 0, "freed");
    http_resp_free(r);
    stop_own();
}

static void test_free_bad_input(void **state)
{
    start_own(NULL, NULL);
    static const char *const bad[] = {
        "[]", "{}", "{\"refs\":\"o_x\"}", "{\"refs\":[1]}", "{\"refs\":[\"a b\"]}",
        "{\"refs\":[],\"timeout\":1}", "{\"refs\":[\"" /* truncated */, NULL};
    for (size_t i = 0; bad[i]; i++) {
        http_resp *r = http_post_json(&g_own, "/v1/objects/free", bad[i]);
        assert_problem(r, 400, "BadRequest");
        http_resp_free(r);
    }
    http_resp *r = http_get(&g_own, "/v1/objects/free");
    assert_problem(r, 405, "MethodNotAllowed"); /* the literal path wins over {ref} */
    http_resp_free(r);
    stop_own();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_free_many, own_teardown),
        cmocka_unit_test_teardown(test_free_bad_input, own_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
