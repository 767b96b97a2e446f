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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/api/support/harness.h"
#include "tests/api/support/tasks_util.h"

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
    snprintf(p, 256, "/v1/objects/%.64s%.64s", ref, suffix ? suffix : "");
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

static json_t *status_store(const rayd_server *s)
{
    http_resp *r = http_get(s, "/v1/status");
    assert_status(r, 200);
    json_t *os = json_incref(json_member(r->json, "object_store"));
    http_resp_free(r);
    return os;
}

/* Deterministic bytes for object i of size n (new, free()). */
static unsigned char *pattern(size_t i, size_t n)
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

/* ---------------------------------------------------------------- spilling */

static char g_spill_dir[256];

/* A fresh spill directory for the test (removed by spill_teardown). */
static const char *spill_dir(void)
{
    snprintf(g_spill_dir, sizeof g_spill_dir, "/tmp/rayd-test-lifetime-XXXXXX");
    if (!mkdtemp(g_spill_dir))
        fail_msg("mkdtemp failed");
    return g_spill_dir;
}

static int spill_teardown(void **state)
{
    own_teardown(state);
    if (g_spill_dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_spill_dir);
        if (system(cmd) != 0)
            return -1;
        g_spill_dir[0] = '\0';
    }
    return 0;
}

/* Files (*.spill) in the spill directory's subdirectories. */
static int count_files(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[600];
        snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
        DIR *sd = opendir(sub);
        if (!sd)
            continue;
        struct dirent *f;
        while ((f = readdir(sd)))
            if (strstr(f->d_name, ".spill"))
                n++;
        closedir(sd);
    }
    closedir(d);
    return n;
}

static long long store_int(const rayd_server *s, const char *key)
{
    json_t *os = status_store(s);
    long long v = json_int(os, key);
    json_decref(os);
    return v;
}

static void assert_bytes(const http_resp *r, const unsigned char *want, size_t len, size_t i)
{
    if (r->body_len != len)
        fail_msg("object %zu: %zu bytes back, want %zu", i, r->body_len, len);
    if (memcmp(r->body, want, len) != 0)
        fail_msg("object %zu: bytes differ", i);
}

/* 64 MiB in objects of 1 KiB to 4 MiB into a 1 MiB store: every object comes back
 * byte-exact, none is lost, the old ones are on disk; GET of a spilled one with Range and
 * If-None-Match answers as from memory. */
static void test_spill_round_trip(void **state)
{
    const char *args[] = {"--memory-limit", "1M", "--spill-dir", spill_dir(), NULL};
    start_own(args, NULL);
    enum { MAX = 200 };
    char refs[MAX][65];
    size_t sizes[MAX], n = 0, total = 0;
    while (total < 64 * MIB && n < MAX) {
        sizes[n] = (size_t)KIB << (n % 13); /* 1 KiB .. 4 MiB */
        unsigned char *b = pattern(n, sizes[n]);
        put_object(&g_own, "application/x-test", b, sizes[n], refs[n]);
        free(b);
        total += sizes[n++];
    }
    json_t *os = status_store(&g_own);
    assert_string_equal(json_str(os, "on_full"), "spill");
    if (json_int(os, "bytes") > 1 * MIB)
        fail_msg("%lld bytes in memory, over the 1 MiB limit", json_int(os, "bytes"));
    if (json_int(os, "spilled_bytes") < (long long)total - 1 * MIB)
        fail_msg("only %lld bytes spilled of %zu", json_int(os, "spilled_bytes"), total);
    assert_int_equal(json_int(os, "evictions"), 0);
    assert_int_equal(json_int(os, "objects"), (long long)n);
    assert_true(json_int(os, "spill_disk_bytes") >= json_int(os, "spilled_bytes"));
    assert_true(json_int(os, "spill_write_bytes") >= json_int(os, "spilled_bytes"));
    if (!(json_real_value(json_member(os, "spill_thread_seconds")) > 0))
        fail_msg("the spill thread's time is not counted");
    json_decref(os);
    assert_true(count_files(g_spill_dir) > 0);

    /* /metrics has the same figures. */
    http_resp *r = http_get(&g_own, "/metrics");
    assert_status(r, 200);
    const char *names[] = {"rayd_store_spilled_objects ", "rayd_store_spilled_bytes ",
                           "rayd_store_spill_disk_bytes ", "rayd_store_spills_total ",
                           "rayd_store_restores_total ", "rayd_store_spill_write_bytes_total ",
                           "rayd_store_spill_thread_seconds_total "};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strstr(r->body, names[i]))
            fail_msg("/metrics lacks %s", names[i]);
    const char *spills = strstr(r->body, "\nrayd_store_spills_total ");
    if (!spills || atof(spills + strlen("\nrayd_store_spills_total ")) < 1)
        fail_msg("rayd_store_spills_total is not counted");
    http_resp_free(r);

    r = http_get(&g_own, objpath(refs[0], "/meta"));
    assert_status(r, 200);
    assert_true(json_is_true(json_member(r->json, "spilled")));
    http_resp_free(r);

    for (size_t i = 0; i < n; i++) {
        unsigned char *b = pattern(i, sizes[i]);
        r = http_get(&g_own, objpath(refs[i], NULL));
        assert_status(r, 200); /* never 410 */
        assert_bytes(r, b, sizes[i], i);
        assert_string_equal(http_header_get(r, "Content-Type"), "application/x-test");
        http_resp_free(r);
        free(b);
    }

    /* Range and ETag on a spilled object (4 MiB, object 12). */
    size_t k = 12;
    unsigned char *b = pattern(k, sizes[k]);
    r = http_request(&g_own, "GET", objpath(refs[k], NULL),
                     (const char *const[]){"Range: bytes=1000000-1000099", NULL}, NULL, 0);
    assert_status(r, 206);
    assert_bytes(r, b + 1000000, 100, k);
    assert_string_equal(http_header_get(r, "Content-Range"), "bytes 1000000-1000099/4194304");
    char etag[80], inm[100];
    snprintf(etag, sizeof etag, "\"%.64s\"", refs[k]);
    assert_string_equal(http_header_get(r, "ETag"), etag);
    http_resp_free(r);
    r = http_request(&g_own, "GET", objpath(refs[k], NULL),
                     (const char *const[]){"Range: bytes=-10", NULL}, NULL, 0);
    assert_status(r, 206);
    assert_bytes(r, b + sizes[k] - 10, 10, k);
    http_resp_free(r);
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    r = http_request(&g_own, "GET", objpath(refs[k], NULL), (const char *const[]){inm, NULL},
                     NULL, 0);
    assert_status(r, 304);
    http_resp_free(r);
    r = http_head(&g_own, objpath(refs[k], NULL));
    assert_status(r, 200);
    assert_string_equal(http_header_get(r, "Content-Length"), "4194304");
    http_resp_free(r);
    free(b);

    /* Freeing them all reclaims the disk. */
    for (size_t i = 0; i < n; i++) {
        r = http_delete(&g_own, objpath(refs[i], NULL));
        assert_status(r, 204);
        http_resp_free(r);
    }
    assert_int_equal(store_int(&g_own, "spilled"), 0);
    assert_int_equal(store_int(&g_own, "spill_disk_bytes"), 0);
    assert_int_equal(count_files(g_spill_dir), 0);
    stop_own();
}

/* A task and an actor call whose argument is spilled get its value. */
static void test_spill_task_argument(void **state)
{
    const char *args[] = {"--memory-limit", "1M", "--spill-dir", spill_dir(), NULL};
    start_own(args, NULL);
    char arg[65], num[65], filler[65];
    /* Over 32 bytes each: smaller values are kept in memory (in their object's record). */
    static const char args_json[] = "[1, 2, 3, 4]                                      ";
    static const char num_json[] = "5                                                  ";
    put_object(&g_own, "application/json", args_json, strlen(args_json), arg);
    put_object(&g_own, "application/json", num_json, strlen(num_json), num);
    unsigned char *b = pattern(1, 256 * KIB);
    for (int i = 0; i < 12; i++) /* 3 MiB after it: the argument is the coldest */
        put_object(&g_own, NULL, b, 256 * KIB, filler);
    free(b);
    http_resp *r = http_get(&g_own, objpath(arg, "/meta"));
    assert_true(json_is_true(json_member(r->json, "spilled")));
    http_resp_free(r);
    r = http_get(&g_own, objpath(num, "/meta"));
    assert_true(json_is_true(json_member(r->json, "spilled")));
    http_resp_free(r);

    char ref[TK_ID_SIZE];
    tk_submitf(NULL, ref, &g_own, "{\"function\":\"sum\",\"args\":[{\"$ref\":\"%s\"}]}", arg);
    json_t *v = tk_value(&g_own, ref);
    tk_assert_json_eq(v, "10");
    json_decref(v);

    r = http_post_json(&g_own, "/v1/actors", "{\"class\":\"Accumulator\"}");
    assert_status(r, 201);
    char path[200];
    snprintf(path, sizeof path, "/v1/actors/%s/methods/add", json_str(r->json, "actor_id"));
    http_resp_free(r);
    char body[200];
    snprintf(body, sizeof body, "{\"args\":[{\"$ref\":\"%s\"}]}", num);
    r = http_request(&g_own, "POST", path,
                     (const char *const[]){"Content-Type: application/json", "Prefer: wait=10",
                                           NULL},
                     body, strlen(body));
    assert_status(r, 200);
    http_resp_free(r);
    snprintf(path + strlen(path) - 3, 8, "total");
    r = http_request(&g_own, "POST", path,
                     (const char *const[]){"Content-Type: application/json", "Prefer: wait=10",
                                           NULL},
                     "{}", 2);
    assert_status(r, 200);
    assert_true(json_is_number(r->json) && json_number_value(r->json) == 5);
    http_resp_free(r);
    assert_true(store_int(&g_own, "restores") >= 1);
    stop_own();
}

/* Past the memory and the disk limit a put is 507 ObjectStoreFull; what is stored stays. */
static void test_spill_disk_limit(void **state)
{
    const char *args[] = {"--memory-limit", "1M", "--spill-limit", "2M", "--spill-dir",
                          spill_dir(), NULL};
    start_own(args, NULL);
    unsigned char *b = pattern(2, 256 * KIB);
    char refs[32][65];
    int stored = 0;
    http_resp *r = NULL;
    for (; stored < 32; stored++) {
        r = http_post_bytes(&g_own, "/v1/objects", "application/octet-stream", b, 256 * KIB);
        if (r->status != 201)
            break;
        snprintf(refs[stored], 65, "%s", json_str(r->json, "ref"));
        http_resp_free(r);
        r = NULL;
    }
    if (!r)
        fail_msg("32 puts of 256 KiB fit in 1 MiB of memory and 2 MiB of disk");
    assert_problem(r, 507, "ObjectStoreFull");
    http_resp_free(r);
    if (stored < 10 || stored > 12)
        fail_msg("%d objects of 256 KiB stored, want 10 to 12 in 1M + 2M", stored);
    for (int i = 0; i < stored; i++) {
        r = http_get(&g_own, objpath(refs[i], NULL));
        assert_status(r, 200);
        assert_bytes(r, b, 256 * KIB, (size_t)i);
        http_resp_free(r);
    }
    free(b);
    stop_own();
}

/* Spill files of a process that died are removed when rayd starts on the directory. */
static void test_spill_restart_removes_old_files(void **state)
{
    const char *args[] = {"--memory-limit", "1M", "--spill-dir", spill_dir(), NULL};
    start_own(args, NULL);
    unsigned char *b = pattern(3, 512 * KIB);
    char ref[65];
    for (int i = 0; i < 6; i++)
        put_object(&g_own, NULL, b, 512 * KIB, ref);
    free(b);
    /* The spill thread writes behind the puts: count once the process is gone. */
    rayd_stop_signal(&g_own, SIGKILL); /* no clean-up */
    g_own.pid = 0;
    int files = count_files(g_spill_dir);
    assert_true(files > 0);

    start_own(args, NULL);
    assert_int_equal(store_int(&g_own, "spill_removed_at_start"), files);
    assert_int_equal(count_files(g_spill_dir), 0);
    stop_own();
}

static void test_spill_dir_not_writable(void **state)
{
    char *out = NULL, *err = NULL;
    const char *args[] = {"--port", "0", "--spill-dir", "/proc/rayd-spill-here", NULL};
    int st = rayd_run(args, NULL, 10, &out, &err);
    assert_int_equal(st, 2);
    if (!strstr(err, "/proc/rayd-spill-here") || strchr(err, '\n') != err + strlen(err) - 1)
        fail_msg("want one line naming the directory, got: %s", err);
    free(out);
    free(err);
}

/* ---------------------------------------------------------------- evict and refuse */

static void test_on_full_evict(void **state)
{
    const char *args[] = {"--memory-limit", "1M", NULL};
    const char *env[] = {"RAYD_ON_FULL=evict", NULL};
    start_own(args, env);
    unsigned char *b = pattern(4, 256 * KIB);
    char first[65], ref[65];
    put_object(&g_own, NULL, b, 256 * KIB, first);
    for (int i = 0; i < 8; i++)
        put_object(&g_own, NULL, b, 256 * KIB, ref);
    free(b);
    http_resp *r = http_get(&g_own, objpath(first, NULL));
    assert_problem(r, 410, "ObjectLost"); /* evict loses data */
    assert_non_null(strstr(json_str(r->json, "detail"), "evicted"));
    http_resp_free(r);
    json_t *os = status_store(&g_own);
    assert_string_equal(json_str(os, "on_full"), "evict");
    assert_true(json_int(os, "evictions") >= 4);
    assert_int_equal(json_int(os, "spilled"), 0);
    json_decref(os);
    stop_own();
}

static void test_on_full_refuse(void **state)
{
    const char *args[] = {"--memory-limit", "1M", "--on-full", "refuse", NULL};
    start_own(args, NULL);
    unsigned char *b = pattern(5, 400 * KIB);
    char a[65], c[65];
    put_object(&g_own, NULL, b, 400 * KIB, a);
    put_object(&g_own, NULL, b, 400 * KIB, c);
    http_resp *r = http_post_bytes(&g_own, "/v1/objects", NULL, b, 400 * KIB);
    assert_problem(r, 507, "ObjectStoreFull");
    http_resp_free(r);
    r = http_get(&g_own, objpath(a, NULL)); /* nothing lost */
    assert_status(r, 200);
    assert_bytes(r, b, 400 * KIB, 0);
    http_resp_free(r);
    free(b);
    assert_int_equal(store_int(&g_own, "evictions"), 0);
    stop_own();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_free_many, own_teardown),
        cmocka_unit_test_teardown(test_free_bad_input, own_teardown),
        cmocka_unit_test_teardown(test_spill_round_trip, spill_teardown),
        cmocka_unit_test_teardown(test_spill_task_argument, spill_teardown),
        cmocka_unit_test_teardown(test_spill_disk_limit, spill_teardown),
        cmocka_unit_test_teardown(test_spill_restart_removes_old_files, spill_teardown),
        cmocka_unit_test(test_spill_dir_not_writable),
        cmocka_unit_test_teardown(test_on_full_evict, own_teardown),
        cmocka_unit_test_teardown(test_on_full_refuse, own_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
