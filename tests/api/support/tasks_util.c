/* Helpers for the task API tests: see tasks_util.h. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/api/support/tasks_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *vformat(const char *fmt, va_list ap)
{
    char *out = NULL;
    if (vasprintf(&out, fmt, ap) < 0)
        fail_msg("vasprintf failed");
    return out;
}

http_resp *tk_post_jsonf(const rayd_server *s, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *body = vformat(fmt, ap);
    va_end(ap);
    http_resp *r = http_post_json(s, path, body);
    free(body);
    return r;
}

http_resp *tk_getf(const rayd_server *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *path = vformat(fmt, ap);
    va_end(ap);
    http_resp *r = http_get(s, path);
    free(path);
    return r;
}

void tk_submit(const rayd_server *s, const char *body, char *task_id, char *ref)
{
    http_resp *r = http_post_json(s, "/v1/tasks", body);
    if (r->status != 202)
        fprintf(stderr, "submitted: %.500s\n", body);
    assert_status(r, 202);
    const char *id = json_str(r->json, "task_id");
    const char *rf = json_str(r->json, "ref");
    if (!is_valid_ref(id) || !is_valid_ref(rf))
        fail_msg("task_id %s / ref %s are not valid ids", id, rf);
    char loc[512];
    snprintf(loc, sizeof loc, "/v1/tasks/%s", id);
    const char *got = http_header_get(r, "Location");
    if (!got || strcmp(got, loc) != 0)
        fail_msg("Location is %s, wanted %s", got ? got : "(missing)", loc);
    if (task_id)
        snprintf(task_id, TK_ID_SIZE, "%s", id);
    if (ref)
        snprintf(ref, TK_ID_SIZE, "%s", rf);
    http_resp_free(r);
}

void tk_submitf(char *task_id, char *ref, const rayd_server *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *body = vformat(fmt, ap);
    va_end(ap);
    tk_submit(s, body, task_id, ref);
    free(body);
}

json_t *tk_value(const rayd_server *s, const char *ref)
{
    http_resp *r = tk_getf(s, "/v1/objects/%s?timeout=20", ref);
    assert_status(r, 200);
    if (!r->json)
        fail_msg("GET %s: 200 but not JSON (Content-Type %s): %.200s", ref,
                 http_header_get(r, "Content-Type") ? http_header_get(r, "Content-Type") : "-",
                 r->body);
    json_t *v = json_incref(r->json);
    http_resp_free(r);
    return v;
}

http_resp *tk_error(const rayd_server *s, const char *ref, const char *title)
{
    http_resp *r = tk_getf(s, "/v1/objects/%s?timeout=20", ref);
    assert_problem(r, 424, title);
    const char *got = json_str(r->json, "ref");
    if (strcmp(got, ref) != 0)
        fail_msg("problem names ref %s, wanted %s", got, ref);
    return r;
}

json_t *tk_info(const rayd_server *s, const char *task_id)
{
    http_resp *r = tk_getf(s, "/v1/tasks/%s", task_id);
    assert_status(r, 200);
    if (!json_is_object(r->json))
        fail_msg("task info is not a JSON object: %.200s", r->body);
    json_t *v = json_incref(r->json);
    http_resp_free(r);
    return v;
}

static json_t *wait_until(const rayd_server *s, const char *task_id, const char *state,
                          double timeout_s)
{
    double deadline = now_s() + timeout_s;
    for (;;) {
        json_t *info = tk_info(s, task_id);
        const char *st = json_str(info, "state");
        bool ended = strcmp(st, "FINISHED") == 0 || strcmp(st, "FAILED") == 0 ||
                     strcmp(st, "CANCELLED") == 0;
        if (state ? strcmp(st, state) == 0 : ended)
            return info;
        if (now_s() > deadline) {
            char *dump = json_dumps(info, JSON_COMPACT);
            fprintf(stderr, "task info: %.600s\n", dump);
            free(dump);
            json_decref(info);
            fail_msg("task %s not %s within %.1f s", task_id, state ? state : "ended",
                     timeout_s);
        }
        json_decref(info);
        sleep_s(0.01);
    }
}

json_t *tk_wait_state(const rayd_server *s, const char *task_id, const char *state,
                      double timeout_s)
{
    return wait_until(s, task_id, state, timeout_s);
}

json_t *tk_wait_ended(const rayd_server *s, const char *task_id, double timeout_s)
{
    return wait_until(s, task_id, NULL, timeout_s);
}

json_t *tk_status(const rayd_server *s)
{
    http_resp *r = http_get(s, "/v1/status");
    assert_status(r, 200);
    json_t *v = json_incref(r->json);
    http_resp_free(r);
    if (!json_is_object(v))
        fail_msg("/v1/status is not a JSON object");
    return v;
}

long long tk_status_tasks(const rayd_server *s, const char *key)
{
    json_t *st = tk_status(s);
    long long v = json_int(json_member(st, "tasks"), key);
    json_decref(st);
    return v;
}

void tk_assert_json_eq(const json_t *got, const char *want_json)
{
    json_error_t err;
    json_t *want = json_loads(want_json, JSON_DECODE_ANY, &err);
    if (!want)
        fail_msg("bad expected JSON %s: %s", want_json, err.text);
    if (!json_equal((json_t *)got, want)) {
        char *g = got ? json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        json_decref(want);
        fprintf(stderr, "got %.600s\n", g ? g : "(null)");
        free(g);
        fail_msg("value differs from %s", want_json);
    }
    json_decref(want);
}

int tk_count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}
