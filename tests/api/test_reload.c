/* API tests of SIGHUP: rayd reads its configuration again (RAYD_CONFIG_FILE and the token
 * files as they are now) and applies the remote allow-list, the tokens and the log level
 * without a restart: objects and actors made before are still there. A configuration that
 * does not load changes nothing; a setting that needs a restart is named in the log line.
 * Every step waits for rayd's own "reloaded" (or "reload failed") log line. */
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
#include <unistd.h>

#include "tests/api/support/harness.h"
#include "tests/api/support/tasks_util.h"
#include "tests/api/support/worker.h"

static rayd_server g_srv;
static pid_t g_worker = -1;
static int g_port;
static char g_file[64]; /* the config or token file of the running test */

/* ---------------------------------------------------------------- helpers */

/* Replaces the file's content (write to a new file, then rename: as an editor or a
 * Kubernetes volume update does, so rayd never reads half a file). */
static void write_file(const char *path, const char *text)
{
    char tmp[80];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
}

/* A new temporary file holding text; its path goes to g_file. */
static void make_file(const char *text)
{
    strcpy(g_file, "/tmp/rayd-reload-XXXXXX");
    int fd = mkstemp(g_file);
    assert_true(fd >= 0);
    close(fd);
    write_file(g_file, text);
}

/* SIGHUP, then the log line of the event it produced ("reloaded" or "reload failed"), which
 * must be that event (new string, free()). */
static char *sighup(const char *want_event)
{
    rayd_stdout_clear(&g_srv);
    rayd_capture_stdout(&g_srv, true);
    assert_int_equal(kill(g_srv.pid, SIGHUP), 0);
    char *line = rayd_stdout_wait_line(&g_srv, "\"event\":\"reload", 10.0);
    if (!line)
        fail_msg("no reload line within 10 s of SIGHUP");
    char want[64];
    snprintf(want, sizeof want, "\"event\":\"%s\"", want_event);
    if (!strstr(line, want))
        fail_msg("wanted %s, got: %s", want, line);
    return line;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("\"%s\" does not contain \"%s\"", hay ? hay : "(null)", needle);
}

static http_resp *put_function(const char *auth)
{
    char body[160];
    snprintf(body, sizeof body, "{\"url\":\"http://127.0.0.1:%d/functions/wordcount\"}", g_port);
    const char *h[] = {"Content-Type: application/json", auth, NULL};
    return http_request(&g_srv, "PUT", "/v1/functions/wc", h, body, strlen(body));
}

static long get_status(const char *path, const char *auth)
{
    const char *h[] = {auth, NULL};
    http_resp *r = http_request(&g_srv, "GET", path, auth ? h : NULL, NULL, 0);
    long st = r->status;
    http_resp_free(r);
    return st;
}

static int teardown(void **state)
{
    int st = g_srv.pid > 0 ? rayd_stop_clean(&g_srv) : 0;
    g_srv.pid = 0;
    if (g_file[0]) {
        unlink(g_file);
        g_file[0] = '\0';
    }
    return st;
}

/* ---------------------------------------------------------------- tests */

/* The operator started rayd with an allow-list that lacks the worker's port; after fixing
 * the file and SIGHUP, registration to the worker's URL works and a task runs through it,
 * while the object and the actor made before are untouched. */
static void test_allow_list_reloaded_store_kept(void **state)
{
    make_file("# rayd settings\nRAYD_REMOTE_ALLOW = http://127.0.0.1\n");
    const char *args[] = {"--config-file", g_file, "--workers", "2", NULL};
    assert_int_equal(rayd_start(&g_srv, args, NULL), 0);

    char ref[TK_ID_SIZE];
    put_object(&g_srv, "text/plain", "kept across SIGHUP", 18, ref);
    http_resp *r = http_post_json(&g_srv, "/v1/actors", "{\"class\":\"Counter\",\"args\":[41]}");
    assert_status(r, 201);
    char actor[TK_ID_SIZE];
    snprintf(actor, sizeof actor, "%s", json_str(r->json, "actor_id"));
    http_resp_free(r);

    r = put_function(NULL);
    assert_problem(r, 403, "Forbidden"); /* "http://127.0.0.1" allows no port */
    http_resp_free(r);

    char text[128];
    snprintf(text, sizeof text, "RAYD_REMOTE_ALLOW=http://127.0.0.1:%d\n", g_port);
    write_file(g_file, text);
    char *line = sighup("reloaded");
    assert_contains(line, "\"changed\":[\"RAYD_REMOTE_ALLOW\"]");
    assert_contains(line, "\"restart_needed\":[]");
    free(line);

    json_t *st = tk_status(&g_srv);
    char want[64];
    snprintf(want, sizeof want, "http://127.0.0.1:%d", g_port);
    assert_string_equal(json_str(json_member(st, "config"), "remote_allow"), want);
    json_decref(st);

    r = put_function(NULL);
    assert_status(r, 201);
    http_resp_free(r);
    const char *h[] = {"Prefer: wait=10", "Content-Type: application/json", NULL};
    static const char task[] = "{\"function\":\"wc\",\"args\":[\"one two three\"]}";
    r = http_request(&g_srv, "POST", "/v1/tasks", h, task, strlen(task));
    assert_status(r, 200);
    tk_assert_json_eq(r->json, "3");
    http_resp_free(r);

    /* what was made before the reload */
    char path[128];
    snprintf(path, sizeof path, "/v1/objects/%s", ref);
    r = http_get(&g_srv, path);
    assert_status(r, 200);
    assert_int_equal(r->body_len, 18);
    assert_memory_equal(r->body, "kept across SIGHUP", 18);
    http_resp_free(r);
    snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", actor);
    const char *hw[] = {"Prefer: wait=10", "Content-Type: application/json", NULL};
    r = http_request(&g_srv, "POST", path, hw, "{}", 2);
    assert_status(r, 200);
    tk_assert_json_eq(r->json, "42");
    http_resp_free(r);

    /* the list taken away again: new registrations are refused */
    write_file(g_file, "RAYD_REMOTE_ALLOW=\n");
    free(sighup("reloaded"));
    r = put_function(NULL);
    assert_problem(r, 403, "Forbidden");
    assert_contains(json_str(r->json, "detail"), "RAYD_CONFIG_FILE");
    http_resp_free(r);
}

/* A new token in the token file replaces the old one at SIGHUP; an empty token file is
 * refused and the token in force stays. */
static void test_token_file_reloaded(void **state)
{
    make_file("first-token\n");
    const char *args[] = {"--api-token-file", g_file, NULL};
    assert_int_equal(rayd_start(&g_srv, args, NULL), 0);
    assert_int_equal(get_status("/v1/status", "Authorization: Bearer first-token"), 200);

    write_file(g_file, "second-token\n");
    char *line = sighup("reloaded");
    assert_contains(line, "\"changed\":[\"RAYD_API_TOKEN\"]");
    assert_true(strstr(line, "second-token") == NULL); /* never logged */
    free(line);
    assert_int_equal(get_status("/v1/status", "Authorization: Bearer first-token"), 401);
    assert_int_equal(get_status("/v1/status", "Authorization: Bearer second-token"), 200);

    write_file(g_file, "\n");
    line = sighup("reload failed");
    assert_contains(line, "holds no token");
    free(line);
    assert_int_equal(get_status("/v1/status", "Authorization: Bearer second-token"), 200);
    assert_int_equal(get_status("/v1/status", NULL), 401);
}

/* The log level from the config file: warn silences request lines after SIGHUP, info
 * brings them back; a bad level is refused and a setting that needs a restart is named. */
static void test_log_level_reloaded(void **state)
{
    make_file("RAYD_LOG_LEVEL=info\n");
    const char *args[] = {"--config-file", g_file, NULL};
    assert_int_equal(rayd_start(&g_srv, args, NULL), 0);

    write_file(g_file, "RAYD_LOG_LEVEL=warn\n");
    char *line = sighup("reloaded");
    assert_contains(line, "\"changed\":[\"RAYD_LOG_LEVEL\"]");
    free(line);
    const char *silent[] = {"X-Request-Id: while-at-warn", NULL};
    http_resp *r = http_request(&g_srv, "GET", "/healthz", silent, NULL, 0);
    assert_status(r, 200);
    http_resp_free(r);

    /* a bad value: nothing changes (still warn) */
    write_file(g_file, "RAYD_LOG_LEVEL=loud\n");
    line = sighup("reload failed");
    assert_contains(line, "loud");
    free(line);

    write_file(g_file, "RAYD_LOG_LEVEL=info\nRAYD_MAX_BODY=1M\n");
    line = sighup("reloaded");
    assert_contains(line, "\"changed\":[\"RAYD_LOG_LEVEL\"]");
    assert_contains(line, "\"restart_needed\":[\"RAYD_MAX_BODY\"]");
    free(line);
    const char *heard[] = {"X-Request-Id: while-at-info", NULL};
    r = http_request(&g_srv, "GET", "/healthz", heard, NULL, 0);
    assert_status(r, 200);
    http_resp_free(r);
    /* Request lines are written in order: once the second is out, the first would be. */
    line = rayd_stdout_wait_line(&g_srv, "while-at-info", 10.0);
    assert_non_null(line);
    free(line);
    char *all = rayd_stdout_text(&g_srv);
    if (strstr(all, "while-at-warn"))
        fail_msg("a request was logged at level warn: %s", all);
    free(all);
    /* the body limit did not change without a restart */
    json_t *st = tk_status(&g_srv);
    assert_int_equal(json_int(json_member(st, "config"), "max_body"), 256 << 20);
    json_decref(st);
}

/* A config file with a typo stops rayd at start-up with exit 2, naming file and line. */
static void test_config_file_errors_at_start(void **state)
{
    make_file("RAYD_PORT=0\n\nRAYD_MEMORY_LIMTI=1G\n");
    const char *args[] = {"--config-file", g_file, NULL};
    char *out = NULL, *err = NULL;
    int st = rayd_run(args, NULL, 10.0, &out, &err);
    assert_int_equal(st, 2);
    char want[160];
    snprintf(want, sizeof want, "%s:3: RAYD_MEMORY_LIMTI: unknown setting", g_file);
    assert_contains(err, want);
    free(out);
    free(err);
    /* the environment and flags win over the file */
    write_file(g_file, "RAYD_MAX_BODY=1M\nRAYD_MAX_PARKED=7\n");
    static const char *const env[] = {"RAYD_MAX_BODY=2M", NULL};
    const char *args2[] = {"--config-file", g_file, "--max-parked", "9", NULL};
    assert_int_equal(rayd_start(&g_srv, args2, env), 0);
    json_t *status = tk_status(&g_srv);
    assert_int_equal(json_int(json_member(status, "config"), "max_body"), 2 << 20);
    assert_int_equal(json_int(json_member(status, "config"), "max_parked"), 9);
    json_decref(status);
}

/* ---------------------------------------------------------------- main */

static int group_setup(void **state)
{
    g_port = free_port();
    if (g_port <= 0)
        return -1;
    g_worker = worker_start(g_port, true);
    return g_worker > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    worker_stop(g_worker);
    return 0;
}

int main(void)
{
    unsetenv("RAYD_REMOTE_ALLOW");
    unsetenv("RAYD_LOG_LEVEL");
    unsetenv("RAYD_API_TOKEN");
    unsetenv("RAYD_MAX_BODY");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_allow_list_reloaded_store_kept, teardown),
        cmocka_unit_test_teardown(test_token_file_reloaded, teardown),
        cmocka_unit_test_teardown(test_log_level_reloaded, teardown),
        cmocka_unit_test_teardown(test_config_file_errors_at_start, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
