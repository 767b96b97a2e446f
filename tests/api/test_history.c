/* API tests of what rayd remembers after work is gone, and the settings that bound it:
 * tombstones of freed objects (RAYD_MAX_TOMBSTONES), records of ended tasks
 * (RAYD_MAX_TASK_RECORDS) and of dead actors (RAYD_MAX_DEAD_ACTORS); and the allocator's
 * figures in /metrics and /v1/status, which show where memory goes. Every wait is for a
 * figure the server reports. */
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

static rayd_server g_srv;

static int group_setup(void **state)
{
    static const char *const args[] = {"--max-tombstones",   "2", "--max-task-records", "2",
                                       "--max-dead-actors", "1", "--workers",          "2",
                                       NULL};
    return rayd_start(&g_srv, args, NULL);
}

static int group_teardown(void **state)
{
    return rayd_stop_clean(&g_srv);
}

/* Waits (up to 10 s) until the /v1/status member section.key (section.sub.key when sub is
 * not NULL) equals want; fails the test otherwise. */
static void wait_status(const char *section, const char *sub, const char *key, long long want)
{
    long long have = -1;
    double deadline = now_s() + 10;
    do {
        json_t *st = tk_status(&g_srv);
        json_t *obj = json_member(st, section);
        if (sub)
            obj = json_member(obj, sub);
        have = json_int(obj, key);
        json_decref(st);
        if (have == want)
            return;
        sleep_s(0.01);
    } while (now_s() < deadline);
    fail_msg("/v1/status %s.%s%s%s is %lld, wanted %lld", section, sub ? sub : "", sub ? "." : "",
             key, have, want);
}

/* GET prefix + id: the status. */
static long get_status(const char *prefix, const char *id)
{
    char path[512];
    snprintf(path, sizeof path, "%s%s", prefix, id);
    http_resp *r = http_get(&g_srv, path);
    long st = r->status;
    http_resp_free(r);
    return st;
}

/* Four objects freed with room for two tombstones: the two freed last answer 410, the
 * two before are forgotten (404), and the server counts them. */
static void test_tombstones_bounded(void **state)
{
    json_t *st = tk_status(&g_srv);
    long long forgotten0 = json_int(json_member(st, "object_store"), "tombstones_forgotten");
    assert_int_equal(json_int(json_member(st, "config"), "max_tombstones"), 2);
    json_decref(st);
    char refs[4][TK_ID_SIZE];
    for (int i = 0; i < 4; i++) {
        put_object(&g_srv, "text/plain", "gone soon", 9, refs[i]);
        assert_int_equal(get_status("/v1/objects/", refs[i]), 200);
    }
    for (int i = 0; i < 4; i++) {
        char path[512];
        snprintf(path, sizeof path, "/v1/objects/%s", refs[i]);
        http_resp *r = http_delete(&g_srv, path);
        assert_status(r, 204);
        http_resp_free(r);
    }
    wait_status("object_store", NULL, "tombstones_forgotten", forgotten0 + 2);
    wait_status("object_store", NULL, "tombstones", 2);
    assert_int_equal(get_status("/v1/objects/", refs[0]), 404);
    assert_int_equal(get_status("/v1/objects/", refs[1]), 404);
    assert_int_equal(get_status("/v1/objects/", refs[2]), 410);
    assert_int_equal(get_status("/v1/objects/", refs[3]), 410);
}

/* Five tasks ended with room for two records: the first answers 404, the last is kept. */
static void test_task_records_bounded(void **state)
{
    char ids[5][TK_ID_SIZE], ref[TK_ID_SIZE];
    for (int i = 0; i < 5; i++) {
        tk_submitf(ids[i], ref, &g_srv, "{\"function\":\"add\",\"args\":[%d,1]}", i);
        json_decref(tk_wait_ended(&g_srv, ids[i], 10));
    }
    /* the records kept, in every state, come down to the bound */
    long long kept = -1;
    for (double deadline = now_s() + 10; now_s() < deadline; sleep_s(0.01)) {
        json_t *st = tk_status(&g_srv);
        json_t *by_state = json_member(json_member(st, "tasks"), "by_state");
        const char *k;
        json_t *v;
        kept = 0;
        json_object_foreach(by_state, k, v) kept += json_integer_value(v);
        json_decref(st);
        if (kept <= 2)
            break;
    }
    if (kept > 2)
        fail_msg("%lld task records kept with RAYD_MAX_TASK_RECORDS=2", kept);
    assert_int_equal(get_status("/v1/tasks/", ids[0]), 404);
    assert_int_equal(get_status("/v1/tasks/", ids[4]), 200);
}

/* Three actors killed with room for one dead record. */
static void test_dead_actors_bounded(void **state)
{
    char ids[3][TK_ID_SIZE];
    for (int i = 0; i < 3; i++) {
        http_resp *r = http_post_json(&g_srv, "/v1/actors", "{\"class\":\"Counter\"}");
        assert_status(r, 201);
        snprintf(ids[i], sizeof ids[i], "%s", json_str(r->json, "actor_id"));
        http_resp_free(r);
        char path[512];
        snprintf(path, sizeof path, "/v1/actors/%s", ids[i]);
        r = http_delete(&g_srv, path);
        assert_status(r, 204);
        http_resp_free(r);
    }
    wait_status("actors", "by_state", "DEAD", 1);
    assert_int_equal(get_status("/v1/actors/", ids[0]), 404);
    assert_int_equal(get_status("/v1/actors/", ids[1]), 404);
    assert_int_equal(get_status("/v1/actors/", ids[2]), 200);
}

/* The value of a /metrics sample without labels, or -1. */
static double metric(const char *name)
{
    http_resp *r = http_get(&g_srv, "/metrics");
    double v = -1;
    size_t n = strlen(name);
    for (const char *line = r->body; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, name, n) == 0 && line[n] == ' ')
            v = strtod(line + n + 1, NULL);
    http_resp_free(r);
    return v;
}

/* The allocator's figures move with what the store holds: an 8 MiB object raises
 * "allocated" by at least that much, and freeing it gives it back. */
static void test_allocator_figures(void **state)
{
    json_t *st = tk_status(&g_srv);
    json_t *al = json_object_get(st, "allocator");
    if (!al) {
        json_decref(st);
        print_message("(no allocator figures in this build: sanitizer allocator)\n");
        assert_true(metric("rayd_allocator_allocated_bytes") < 0);
        return;
    }
    long long before = json_int(al, "allocated");
    assert_true(before > 0);
    assert_true(json_int(al, "resident") >= json_int(al, "allocated") ||
                json_int(al, "resident") == 0); /* glibc: resident unknown */
    json_decref(st);
    assert_true(metric("rayd_allocator_allocated_bytes") > 0);

    size_t big = 8u << 20;
    char *body = malloc(big);
    memset(body, 'x', big);
    char ref[TK_ID_SIZE];
    put_object(&g_srv, "application/octet-stream", body, big, ref);
    free(body);
    double with = metric("rayd_allocator_allocated_bytes");
    if (with < (double)before + (double)big)
        fail_msg("allocated %.0f after an 8 MiB put, %lld before", with, before);
    char path[512];
    snprintf(path, sizeof path, "/v1/objects/%s", ref);
    http_resp *r = http_delete(&g_srv, path);
    assert_status(r, 204);
    http_resp_free(r);
    double after = metric("rayd_allocator_allocated_bytes");
    if (after > with - (double)big)
        fail_msg("allocated %.0f after freeing the 8 MiB object, %.0f with it", after, with);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tombstones_bounded),
        cmocka_unit_test(test_task_records_bounded),
        cmocka_unit_test(test_dead_actors_bounded),
        cmocka_unit_test(test_allocator_figures),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
