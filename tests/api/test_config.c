/* API tests of start-up configuration: --help, bad flag and environment values (exit 2 with
 * one line on stderr), size and duration units, and clean exit on SIGTERM / SIGINT. */
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
#include <strings.h>

#include "tests/api/support/harness.h"

static rayd_server g_small; /* RAYD_MAX_BODY=1K from the environment */
static rayd_server g_units; /* sizes and durations given with units */
static rayd_server g_envs;  /* settings from the environment only */

static int group_setup(void **state)
{
    static const char *const small_env[] = {"RAYD_MAX_BODY=1K", NULL};
    static const char *const units_args[] = {"--memory-limit", "512K",       "--max-body",
                                             "2MiB",           "--max-wait", "500ms",
                                             "--http-threads", "2",          NULL};
    static const char *const envs_env[] = {"RAYD_MEMORY_LIMIT=1G", "RAYD_MAX_WAIT=2m",
                                           "RAYD_HTTP_THREADS=3", "RAYD_MAX_BODY=3M", NULL};
    if (rayd_start(&g_small, NULL, small_env) != 0)
        return -1;
    if (rayd_start(&g_units, units_args, NULL) != 0) {
        rayd_stop(&g_small);
        return -1;
    }
    if (rayd_start(&g_envs, NULL, envs_env) != 0) {
        rayd_stop(&g_small);
        rayd_stop(&g_units);
        return -1;
    }
    return 0;
}

/* cmocka 1.1.5 does not count a failed group teardown in its exit code: main does. */
static int g_teardown_failed;

static int group_teardown(void **state)
{
    int a = rayd_stop(&g_small), b = rayd_stop(&g_units), c = rayd_stop(&g_envs);
    if (a != 0 || b != 0 || c != 0) {
        fprintf(stderr, "rayd exit statuses %d %d %d (want 0)\n", a, b, c);
        g_teardown_failed = 1;
        return -1;
    }
    return 0;
}

static void test_help(void **state)
{
    static const char *const args[] = {"--help", NULL};
    char *out = NULL, *err = NULL;
    int st = rayd_run(args, NULL, 30.0, &out, &err);
    if (st != 0)
        fail_msg("--help exited %d (stderr: %.300s)", st, err);
    if (!strcasestr(out, "usage"))
        fail_msg("--help stdout has no usage: %.300s", out);
    assert_non_null(strstr(out, "RAYD_PORT"));
    assert_non_null(strstr(out, "--port"));
    assert_non_null(strstr(out, "--max-body"));
    assert_null(strstr(out, "\"event\":\"listening\""));
    free(out);
    free(err);
}

static void test_bad_values_exit_2(void **state)
{
    static const struct {
        const char *args[8];
        const char *env[2];
        const char *names; /* what stderr must mention */
    } cases[] = {
        {{"--bind", "127.0.0.1", "--port", "70000"}, {NULL}, "--port"},
        {{"--bind", "127.0.0.1", "--port", "abc"}, {NULL}, "--port"},
        {{"--bind", "127.0.0.1", "--port", "0", "--memory-limit", "12Q"}, {NULL}, "--memory-limit"},
        {{"--bind", "127.0.0.1", "--port", "0"}, {"RAYD_MAX_BODY=abc"}, "RAYD_MAX_BODY"},
        {{"--bind", "127.0.0.1", "--port", "0", "--http-threads", "1"}, {NULL}, "--http-threads"},
        {{"--bind", "127.0.0.1", "--port", "0", "--max-wait", "-1"}, {NULL}, "--max-wait"},
        {{"--bind", "127.0.0.1", "--port", "0", "--max-wait", "5x"}, {NULL}, "--max-wait"},
        {{"--bind", "127.0.0.1", "--port", "0", "--no-such-flag"}, {NULL}, "--no-such-flag"},
        {{"--bind", "127.0.0.1", "--port", "0", "--max-body"}, {NULL}, "--max-body"},
        {{"--bind", "127.0.0.1"}, {"RAYD_PORT=99999"}, "RAYD_PORT"},
        {{"--bind", "127.0.0.1", "--port", "0"}, {"RAYD_HTTP_THREADS=zero"}, "RAYD_HTTP_THREADS"},
        {{"--bind", "127.0.0.1", "--port", "0"}, {"RAYD_MEMORY_LIMIT=12Q"}, "RAYD_MEMORY_LIMIT"},
        {{"--bind", "127.0.0.1", "--port", "0"}, {"RAYD_MAX_WAIT=soon"}, "RAYD_MAX_WAIT"},
        {{"--bind", "127.0.0.1", "--port", "0", "--admin-port", "65536"}, {NULL}, "--admin-port"},
        {{"--bind", "127.0.0.1", "--port", "0"}, {"RAYD_ADMIN_PORT=probe"}, "RAYD_ADMIN_PORT"},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL, *err = NULL;
        /* a generous bound: a hang fails it, a slow machine (valgrind, load) does not */
        int st = rayd_run(cases[i].args, cases[i].env, 30.0, &out, &err);
        char what[256] = "";
        for (int k = 0; cases[i].env[k]; k++)
            snprintf(what + strlen(what), sizeof what - strlen(what), "%s ", cases[i].env[k]);
        for (int k = 0; cases[i].args[k]; k++)
            snprintf(what + strlen(what), sizeof what - strlen(what), "%s ", cases[i].args[k]);
        size_t len = strlen(err);
        char *nl = strchr(err, '\n');
        if (st != 2) {
            fprintf(stderr, "FAIL: [%s] exited %d, wanted 2 (stderr: %.300s)\n", what, st, err);
            failures++;
        } else if (len == 0 || !nl || nl != err + len - 1) {
            fprintf(stderr, "FAIL: [%s] stderr is not exactly one line: \"%s\"\n", what, err);
            failures++;
        } else if (!strstr(err, cases[i].names)) {
            fprintf(stderr, "FAIL: [%s] stderr \"%s\" does not name %s\n", what, err,
                    cases[i].names);
            failures++;
        } else if (strstr(out, "\"event\":\"listening\"")) {
            fprintf(stderr, "FAIL: [%s] started listening\n", what);
            failures++;
        }
        free(out);
        free(err);
    }
    if (failures)
        fail_msg("%d bad configuration(s) not refused as they should be (listed above)", failures);
}

static void test_env_max_body(void **state)
{
    char body[2048];
    memset(body, 'k', sizeof body);
    http_resp *r = http_post_bytes(&g_small, "/v1/objects", NULL, body, 2048);
    assert_problem(r, 413, "PayloadTooLarge");
    http_resp_free(r);
    r = http_post_bytes(&g_small, "/v1/objects", NULL, body, 1025);
    assert_problem(r, 413, "PayloadTooLarge");
    http_resp_free(r);
    char ref[65];
    put_object(&g_small, NULL, body, 1024, ref);

    r = http_get(&g_small, "/v1/status");
    assert_status(r, 200);
    assert_int_equal(json_int(json_member(r->json, "config"), "max_body"), 1024);
    http_resp_free(r);
}

static void test_units(void **state)
{
    http_resp *r = http_get(&g_units, "/v1/status");
    assert_status(r, 200);
    json_t *cfg = json_member(r->json, "config");
    assert_int_equal(json_int(cfg, "memory_limit"), 512 * 1024);
    assert_int_equal(json_int(cfg, "max_body"), 2 * 1024 * 1024);
    if (json_num(cfg, "max_wait") != 0.5)
        fail_msg("max_wait %g, wanted 0.5", json_num(cfg, "max_wait"));
    assert_int_equal(json_int(cfg, "http_threads"), 2);
    assert_int_equal(json_int(json_member(r->json, "object_store"), "memory_limit"), 512 * 1024);
    http_resp_free(r);

    /* A timeout above the 500 ms maximum is capped, not refused. */
    char ref[65];
    put_object(&g_units, NULL, "u", 1, ref);
    char path[128];
    snprintf(path, sizeof path, "/v1/objects/%s?timeout=3600", ref);
    r = http_get(&g_units, path);
    assert_status(r, 200);
    http_resp_free(r);
}

static void test_env_settings(void **state)
{
    http_resp *r = http_get(&g_envs, "/v1/status");
    assert_status(r, 200);
    json_t *cfg = json_member(r->json, "config");
    assert_int_equal(json_int(cfg, "memory_limit"), 1024LL * 1024 * 1024);
    assert_int_equal(json_int(cfg, "max_body"), 3 * 1024 * 1024);
    if (json_num(cfg, "max_wait") != 120.0)
        fail_msg("max_wait %g, wanted 120", json_num(cfg, "max_wait"));
    assert_int_equal(json_int(cfg, "http_threads"), 3);
    http_resp_free(r);
}

static void stop_with(int sig)
{
    static const char *const args[] = {"--http-threads", "2", NULL};
    rayd_server s;
    assert_int_equal(rayd_start(&s, args, NULL), 0);
    char ref[65];
    put_object(&s, NULL, "bye", 3, ref);
    int st = rayd_stop_signal(&s, sig);
    if (st != 0)
        fail_msg("rayd exited %d after signal %d, wanted 0", st, sig);
}

static void test_sigterm_exits_0(void **state)
{
    stop_with(SIGTERM);
}

static void test_sigint_exits_0(void **state)
{
    stop_with(SIGINT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),           cmocka_unit_test(test_bad_values_exit_2),
        cmocka_unit_test(test_env_max_body),   cmocka_unit_test(test_units),
        cmocka_unit_test(test_env_settings),   cmocka_unit_test(test_sigterm_exits_0),
        cmocka_unit_test(test_sigint_exits_0),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    return failed ? failed : g_teardown_failed;
}
