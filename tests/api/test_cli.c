/* API tests of the command line client (service/cli.c) against a live rayd: every
 * subcommand (status, list, get, put, submit, wait, cancel, kill), its exit codes (0, 1 for
 * a stored error, 2 usage, 3 unreachable, 4 refused, 5 not ready in time), --json output
 * parsed, the token from RAYD_API_TOKEN, a put and get of 64 MiB byte-exact, and the
 * progress bar on a terminal for a big put, a big get and a wait on several refs. */
#pragma GCC diagnostic ignored "-Wunused-parameter" /* cmocka's void **state */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/api/support/harness.h"
#include "tests/api/support/tasks_util.h"

#define ID TK_ID_SIZE

static rayd_server g_srv;
static char g_addr[96];    /* RAYD_ADDRESS=... */
static char g_tmp[64];     /* a folder for files */

/* Runs `rayd <args...>` (NULL-terminated) against g_srv; returns the exit
 * status, stdout and stderr in *out and *err (new strings). */
static int cli(char **out, char **err, const char *const *args)
{
    const char *env[] = {g_addr, NULL};
    char *o = NULL, *e = NULL;
    int st = rayd_run(args, env, 120, &o, &e);
    if (out)
        *out = o;
    else
        free(o);
    if (err)
        *err = e;
    else
        free(e);
    return st;
}

#define CLI(out, err, ...) cli((out), (err), (const char *const[]){__VA_ARGS__, NULL})

/* Parses out as JSON (fails the test when it does not parse); frees out. */
static json_t *parse(char *out)
{
    json_error_t je;
    json_t *j = json_loads(out, JSON_DECODE_ANY, &je);
    if (!j)
        fail_msg("not JSON (%s): %.300s", je.text, out);
    free(out);
    return j;
}

static void test_status(void **state)
{
    char *out, *err;
    assert_int_equal(CLI(&out, &err, "status"), 0);
    assert_non_null(strstr(out, "rayd "));
    assert_non_null(strstr(out, "tasks"));
    free(out);
    free(err);
    assert_int_equal(CLI(&out, NULL, "status", "--json"), 0);
    json_t *j = parse(out);
    json_t *api = tk_status(&g_srv);
    assert_string_equal(json_str(j, "version"), json_str(api, "version"));
    json_decref(api);
    json_decref(j);
    assert_int_equal(CLI(NULL, NULL, "status", "extra"), 2);
}

static void test_submit_and_exit_codes(void **state)
{
    char *out, *err;
    /* no wait: the task id and ref */
    assert_int_equal(CLI(&out, NULL, "submit", "add", "1", "2"), 0);
    char tid[ID], ref[ID];
    assert_int_equal(sscanf(out, "%63s %63s", tid, ref), 2);
    free(out);
    json_t *v = tk_value(&g_srv, ref);
    tk_assert_json_eq(v, "3");
    json_decref(v);
    /* waiting: the value; a JSON argument is JSON, anything else a string */
    assert_int_equal(CLI(&out, NULL, "submit", "--wait", "10", "concat", "a", "b c"), 0);
    json_t *j = parse(out);
    assert_true(json_is_string(j));
    assert_string_equal(json_string_value(j), "ab c");
    json_decref(j);
    assert_int_equal(CLI(&out, NULL, "submit", "--wait", "10", "sum", "[1,2,3.5]"), 0);
    j = parse(out);
    assert_true(json_is_number(j) && json_number_value(j) == 6.5);
    json_decref(j);
    /* a failed task is exit 1, with the problem on stderr */
    assert_int_equal(CLI(&out, &err, "submit", "--wait", "10", "fail", "broken"), 1);
    assert_non_null(strstr(err, "TaskError"));
    assert_non_null(strstr(err, "broken"));
    free(out);
    free(err);
    /* not done within the wait: 5 */
    assert_int_equal(CLI(&out, NULL, "submit", "--wait", "0.2", "sleep", "5"), 5);
    free(out);
    /* an unknown function is refused: 4 */
    assert_int_equal(CLI(NULL, NULL, "submit", "no_such_function"), 4);
    /* usage: 2 */
    assert_int_equal(CLI(NULL, NULL, "submit"), 2);
    /* unreachable: 3 */
    const char *env[] = {"RAYD_ADDRESS=http://127.0.0.1:1", NULL};
    const char *args[] = {"status", NULL};
    char *o = NULL, *e = NULL;
    assert_int_equal(rayd_run(args, env, 30, &o, &e), 3);
    free(o);
    free(e);
}

/* RAYD_API_TOKEN is sent as the bearer token; without it a server with a token refuses. */
static void test_token(void **state)
{
    rayd_server s;
    const char *senv[] = {"RAYD_API_TOKEN=cli-token", NULL};
    assert_int_equal(rayd_start(&s, NULL, senv), 0);
    char addr[96];
    snprintf(addr, sizeof addr, "RAYD_ADDRESS=%s", s.base_url);
    const char *args[] = {"status", "--json", NULL};
    const char *with[] = {addr, "RAYD_API_TOKEN=cli-token", NULL};
    const char *without[] = {addr, "RAYD_API_TOKEN=", NULL};
    char *o = NULL, *e = NULL;
    assert_int_equal(rayd_run(args, with, 30, &o, &e), 0);
    json_decref(parse(o));
    free(e);
    assert_int_equal(rayd_run(args, without, 30, &o, &e), 4);
    assert_non_null(strstr(e, "401"));
    free(o);
    free(e);
    assert_int_equal(rayd_stop(&s), 0);
}

static void test_list(void **state)
{
    char tid[ID], ref[ID];
    tk_submit(&g_srv, "{\"function\":\"fail\",\"args\":[\"for the list\"]}", tid, ref);
    json_decref(tk_wait_ended(&g_srv, tid, 10));
    char *out;
    assert_int_equal(CLI(&out, NULL, "list", "tasks", "--state", "FAILED", "--function", "fail",
                         "--json"),
                     0);
    json_t *j = parse(out);
    json_t *tasks = json_member(j, "tasks");
    bool found = false;
    size_t i;
    json_t *t;
    json_array_foreach(tasks, i, t)
    {
        assert_string_equal(json_str(t, "state"), "FAILED");
        assert_string_equal(json_str(t, "function"), "fail");
        found |= strcmp(json_str(t, "task_id"), tid) == 0;
    }
    assert_true(found);
    json_decref(j);
    /* the table names the task too */
    assert_int_equal(CLI(&out, NULL, "list", "tasks"), 0);
    assert_non_null(strstr(out, tid));
    assert_non_null(strstr(out, "FUNCTION"));
    free(out);
    assert_int_equal(CLI(&out, NULL, "list", "objects", "--json"), 0);
    j = parse(out);
    assert_true(json_array_size(json_member(j, "objects")) > 0);
    json_decref(j);
    assert_int_equal(CLI(NULL, NULL, "list", "things"), 2);
    assert_int_equal(CLI(NULL, NULL, "list", "tasks", "--state", "NOT_A_STATE"), 4);
}

static void test_actors_list_and_kill(void **state)
{
    http_resp *r = http_post_json(&g_srv, "/v1/actors", "{\"class\":\"Counter\"}");
    assert_status(r, 201);
    char id[ID];
    snprintf(id, sizeof id, "%s", json_str(r->json, "actor_id"));
    http_resp_free(r);
    char *out;
    assert_int_equal(CLI(&out, NULL, "list", "actors", "--json"), 0);
    json_t *j = parse(out);
    assert_true(json_array_size(json_member(j, "actors")) >= 1);
    json_decref(j);
    assert_int_equal(CLI(&out, NULL, "kill", id), 0);
    free(out);
    char path[128];
    snprintf(path, sizeof path, "/v1/actors/%s", id);
    r = http_get(&g_srv, path);
    assert_string_equal(json_str(r->json, "state"), "DEAD");
    http_resp_free(r);
    assert_int_equal(CLI(NULL, NULL, "kill", "a-no-such-actor"), 4);
    assert_int_equal(CLI(NULL, NULL, "kill"), 2);
}

static void test_cancel(void **state)
{
    char tid[ID], ref[ID];
    tk_submit(&g_srv, "{\"function\":\"sleep\",\"args\":[30]}", tid, ref);
    json_decref(tk_wait_state(&g_srv, tid, "RUNNING", 10));
    char *out;
    assert_int_equal(CLI(&out, NULL, "cancel", tid), 0);
    free(out);
    json_t *info = tk_wait_ended(&g_srv, tid, 10);
    assert_string_equal(json_str(info, "state"), "CANCELLED");
    json_decref(info);
    assert_int_equal(CLI(NULL, NULL, "cancel", "t-no-such-task"), 4);
    /* waiting on the cancelled task's ref: a stored error, exit 1 */
    assert_int_equal(CLI(&out, NULL, "wait", "--json", ref), 1);
    json_t *j = parse(out);
    assert_int_equal(json_array_size(json_member(j, "failed")), 1);
    json_decref(j);
}

static void test_wait(void **state)
{
    char t1[ID], r1[ID], t2[ID], r2[ID], t3[ID], r3[ID];
    tk_submit(&g_srv, "{\"function\":\"add\",\"args\":[1,1]}", t1, r1);
    tk_submit(&g_srv, "{\"function\":\"add\",\"args\":[2,2]}", t2, r2);
    char *out;
    assert_int_equal(CLI(&out, NULL, "wait", "--json", r1, r2), 0);
    json_t *j = parse(out);
    assert_int_equal(json_array_size(json_member(j, "ready")), 2);
    assert_int_equal(json_array_size(json_member(j, "failed")), 0);
    json_decref(j);
    /* one that does not end in time: 5 */
    tk_submit(&g_srv, "{\"function\":\"sleep\",\"args\":[20]}", t3, r3);
    assert_int_equal(CLI(&out, NULL, "wait", "--timeout", "0.3", r1, r3), 5);
    assert_non_null(strstr(out, "not ready"));
    free(out);
    http_resp *r = http_request(&g_srv, "POST", "/v1/tasks/x/cancel", NULL, NULL, 0);
    http_resp_free(r);
    char path[128];
    snprintf(path, sizeof path, "/v1/tasks/%s/cancel", t3);
    r = http_request(&g_srv, "POST", path, NULL, NULL, 0);
    http_resp_free(r);
    assert_int_equal(CLI(NULL, NULL, "wait"), 2);
}

/* 64 MiB of varied bytes, put from a file and got back into another, byte for byte. */
static void test_put_get_64mib(void **state)
{
    size_t n = 64u << 20;
    unsigned char *data = malloc(n);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data[i] = (unsigned char)x;
    }
    char in[128], got[128];
    snprintf(in, sizeof in, "%s/in.bin", g_tmp);
    snprintf(got, sizeof got, "%s/got.bin", g_tmp);
    FILE *f = fopen(in, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
    char *out;
    assert_int_equal(CLI(&out, NULL, "put", in), 0);
    char ref[ID];
    assert_int_equal(sscanf(out, "%63s", ref), 1);
    free(out);
    assert_int_equal(CLI(&out, NULL, "get", ref, "-o", got), 0);
    free(out);
    f = fopen(got, "rb");
    assert_non_null(f);
    unsigned char *back = malloc(n + 1);
    size_t m = fread(back, 1, n + 1, f);
    fclose(f);
    assert_int_equal(m, n);
    assert_memory_equal(back, data, n);
    free(back);
    free(data);
    unlink(in);
    unlink(got);
    /* --json gives the store's answer */
    snprintf(in, sizeof in, "%s/small.json", g_tmp);
    f = fopen(in, "w");
    fputs("{\"k\":[1,2]}", f);
    fclose(f);
    assert_int_equal(CLI(&out, NULL, "put", in, "--content-type", "application/json", "--json"), 0);
    json_t *j = parse(out);
    assert_int_equal(json_int(j, "size"), 11);
    assert_string_equal(json_str(j, "content_type"), "application/json");
    /* get to stdout */
    assert_int_equal(CLI(&out, NULL, "get", json_str(j, "ref")), 0);
    assert_string_equal(out, "{\"k\":[1,2]}");
    free(out);
    json_decref(j);
    unlink(in);
    /* errors: a missing file is 2, an unknown ref 4, a stored error 1 (no file left) */
    assert_int_equal(CLI(NULL, NULL, "put", "/nonexistent/file"), 2);
    assert_int_equal(CLI(NULL, NULL, "get", "o-no-such-ref", "-o", got), 4);
    assert_int_equal(access(got, F_OK), -1);
    char tid[ID], fref[ID];
    tk_submit(&g_srv, "{\"function\":\"fail\",\"args\":[\"stored\"]}", tid, fref);
    assert_int_equal(CLI(NULL, NULL, "get", fref, "-o", got), 1);
    assert_int_equal(access(got, F_OK), -1);
}

/* Runs `rayd ARGS` on a terminal (script(1) gives it one) and returns what it printed,
 * stderr included (new string); fails the test unless it exits 0. */
static char *on_terminal(const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s=%s script -qec '%s %s' /dev/null 2>&1", "RAYD_ADDRESS",
             g_srv.base_url, rayd_bin(), args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char *out = calloc(1, 8192);
    size_t n = fread(out, 1, 8191, p);
    out[n] = '\0';
    int st = pclose(p);
    if (st != 0)
        fail_msg("%s exited %d on a terminal: %s", args, st, out);
    return out;
}

/* On a terminal (script(1) gives it one) a big put draws a progress bar on stderr up to
 * 100%; without a terminal, none. So do a big get and a wait on many refs. */
static void test_progress_bar(void **state)
{
    char in[128];
    snprintf(in, sizeof in, "%s/bar.bin", g_tmp);
    FILE *f = fopen(in, "wb");
    assert_non_null(f);
    static char chunk[1 << 20];
    memset(chunk, 'b', sizeof chunk);
    for (int i = 0; i < 8; i++)
        assert_int_equal(fwrite(chunk, 1, sizeof chunk, f), sizeof chunk);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s=%s script -qec '%s put %s' /dev/null 2>&1", "RAYD_ADDRESS",
             g_srv.base_url, rayd_bin(), in);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[8192];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
    if (!strstr(out, "put [") || !strstr(out, "100% 8.0/8.0 MiB"))
        fail_msg("no progress bar on a terminal: %s", out);
    char *o, *e;
    assert_int_equal(CLI(&o, &e, "put", in), 0);
    assert_null(strstr(e, "put ["));
    char ref[ID], args[512];
    assert_int_equal(sscanf(o, "%63s", ref), 1);
    free(o);
    free(e);
    /* a big get, to a file */
    char got[160];
    snprintf(got, sizeof got, "%s/bar-got.bin", g_tmp);
    snprintf(args, sizeof args, "get %s -o %s", ref, got);
    char *t = on_terminal(args);
    if (!strstr(t, "get [") || !strstr(t, "100% 8.0/8.0 MiB"))
        fail_msg("no progress bar for a get on a terminal: %s", t);
    free(t);
    /* a wait on several refs counts them */
    char ref2[ID], ref3[ID];
    assert_int_equal(CLI(&o, NULL, "put", in), 0);
    assert_int_equal(sscanf(o, "%63s", ref2), 1);
    free(o);
    assert_int_equal(CLI(&o, NULL, "put", in), 0);
    assert_int_equal(sscanf(o, "%63s", ref3), 1);
    free(o);
    snprintf(args, sizeof args, "wait %s %s %s", ref, ref2, ref3);
    t = on_terminal(args);
    if (!strstr(t, "wait [") || !strstr(t, "100% 3.0/3.0 refs"))
        fail_msg("no progress bar for a wait on a terminal: %s", t);
    free(t);
    unlink(got);
    unlink(in);
}

static int group_setup(void **state)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/rayd-cli-XXXXXX");
    if (!mkdtemp(g_tmp))
        return -1;
    if (rayd_start(&g_srv, NULL, NULL) != 0)
        return -1;
    snprintf(g_addr, sizeof g_addr, "RAYD_ADDRESS=%s", g_srv.base_url);
    return 0;
}

static int group_teardown(void **state)
{
    rmdir(g_tmp);
    return rayd_stop(&g_srv) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_submit_and_exit_codes),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_actors_list_and_kill),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_wait),
        cmocka_unit_test(test_put_get_64mib),
        cmocka_unit_test(test_progress_bar),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
