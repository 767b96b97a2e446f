/* API tests of sessions (issue 13 part 4) and result lifetimes (part 5): POST, GET and
 * DELETE /v1/sessions, the Rayd-Session header, what a session's end frees, cancels and
 * kills, and options.result_ttl / --result-ttl. Each test starts its own server (sessions
 * are per node, and several tests need flags). Waits poll the server for a state (a 404,
 * a 410, a task state), each with a generous bound, never a fixed sleep. */
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

#define ID 65
#define WAIT_BOUND 30.0 /* seconds: how long any awaited state may take at most */

static rayd_server g_own;

static int own_teardown(void **state)
{
    if (g_own.pid > 0)
        rayd_stop(&g_own);
    g_own.pid = 0;
    return 0;
}

static void start_own(const char *const *args)
{
    memset(&g_own, 0, sizeof g_own);
    if (rayd_start(&g_own, args, NULL) != 0)
        fail_msg("rayd did not start");
}

static void stop_own(void)
{
    int st = rayd_stop(&g_own);
    g_own.pid = 0;
    if (st != 0)
        fail_msg("rayd exited with status %d after SIGTERM (want 0)", st);
}

/* ---- helpers --------------------------------------------------------------------------- */

/* A request carrying Rayd-Session: sid (NULL: none). body NULL: no body. */
static http_resp *in_session(const char *sid, const char *method, const char *path,
                             const char *body)
{
    char header[128];
    snprintf(header, sizeof header, "Rayd-Session: %s", sid ? sid : "");
    const char *headers[] = {"Content-Type: application/json", sid ? header : NULL, NULL};
    return http_request(&g_own, method, path, headers, body, body ? strlen(body) : 0);
}

static void open_session(double ttl, char sid[ID])
{
    char body[64];
    snprintf(body, sizeof body, "{\"ttl\":%g}", ttl);
    http_resp *r = http_post_json(&g_own, "/v1/sessions", body);
    assert_status(r, 201);
    const char *id = json_str(r->json, "session_id");
    assert_true(is_valid_ref(id));
    char loc[128];
    snprintf(loc, sizeof loc, "/v1/sessions/%s", id);
    assert_non_null(http_header_get(r, "Location"));
    assert_string_equal(http_header_get(r, "Location"), loc);
    assert_true(json_num(r->json, "ttl") == ttl);
    snprintf(sid, ID, "%s", id);
    http_resp_free(r);
}

/* GET /v1/sessions/{sid}: the body (new reference), or NULL after a 404 SessionNotFound. */
static json_t *get_session(const char *sid)
{
    http_resp *r = tk_getf(&g_own, "/v1/sessions/%s", sid);
    json_t *j = NULL;
    if (r->status == 404)
        assert_problem(r, 404, "SessionNotFound");
    else {
        assert_status(r, 200);
        j = json_incref(r->json);
    }
    http_resp_free(r);
    return j;
}

static void put_in(const char *sid, const char *value, char ref[ID])
{
    http_resp *r = in_session(sid, "POST", "/v1/objects", value);
    assert_status(r, 201);
    snprintf(ref, ID, "%s", json_str(r->json, "ref"));
    http_resp_free(r);
}

static void submit_in(const char *sid, const char *body, char task_id[ID], char ref[ID])
{
    http_resp *r = in_session(sid, "POST", "/v1/tasks", body);
    assert_status(r, 202);
    snprintf(task_id, ID, "%s", json_str(r->json, "task_id"));
    snprintf(ref, ID, "%s", json_str(r->json, "ref"));
    http_resp_free(r);
}

static void create_actor_in(const char *sid, const char *body, char actor_id[ID])
{
    http_resp *r = in_session(sid, "POST", "/v1/actors", body);
    assert_status(r, 201);
    snprintf(actor_id, ID, "%s", json_str(r->json, "actor_id"));
    http_resp_free(r);
}

static long object_status(const char *ref)
{
    http_resp *r = tk_getf(&g_own, "/v1/objects/%s", ref);
    long st = r->status;
    http_resp_free(r);
    return st;
}

/* Polls until GET /v1/objects/{ref} answers 410 ObjectLost with lost_reason. */
static void wait_object_lost(const char *ref, const char *reason)
{
    double end = now_s() + WAIT_BOUND;
    for (;;) {
        http_resp *r = tk_getf(&g_own, "/v1/objects/%s", ref);
        if (r->status == 410) {
            assert_problem(r, 410, "ObjectLost");
            http_resp_free(r);
            r = tk_getf(&g_own, "/v1/objects/%s/meta", ref);
            json_t *why = r->json ? json_object_get(r->json, "lost_reason") : NULL;
            if (!json_is_string(why) || strcmp(json_string_value(why), reason) != 0)
                fail_msg("%s is lost, but not %s: %s", ref, reason, r->body);
            http_resp_free(r);
            return;
        }
        if (r->status != 200 && r->status != 424)
            fail_msg("GET %s answered %ld while waiting for 410", ref, r->status);
        http_resp_free(r);
        if (now_s() > end)
            fail_msg("%s was not %s within %g s", ref, reason, WAIT_BOUND);
        sleep_s(0.02);
    }
}

static void wait_session_gone(const char *sid)
{
    double end = now_s() + WAIT_BOUND;
    json_t *j;
    while ((j = get_session(sid))) {
        json_decref(j);
        if (now_s() > end)
            fail_msg("session %s still open after %g s", sid, WAIT_BOUND);
        sleep_s(0.02);
    }
}

static const char *actor_state(const char *actor_id)
{
    static char state[32];
    http_resp *r = tk_getf(&g_own, "/v1/actors/%s", actor_id);
    assert_status(r, 200);
    snprintf(state, sizeof state, "%s", json_str(r->json, "state"));
    http_resp_free(r);
    return state;
}

static json_t *sessions_status(void)
{
    json_t *st = tk_status(&g_own);
    json_t *s = json_incref(json_member(st, "sessions"));
    json_decref(st);
    return s;
}

static void assert_closed_session_cleaned(const char *sid, const char *obj, const char *result,
                                          const char *call_result, const char *actor,
                                          const char *detached, const char *outsider)
{
    json_t *j = get_session(sid);
    assert_null(j);
    wait_object_lost(obj, "freed");
    wait_object_lost(result, "freed");
    wait_object_lost(call_result, "freed");
    assert_string_equal(actor_state(actor), "DEAD");
    assert_string_equal(actor_state(detached), "ALIVE");
    assert_int_equal(object_status(outsider), 200); /* made without a session */
}

/* Fills a session with an object, a finished task, a non-detached actor and a call to it,
 * and a detached actor. */
static void fill_session(const char *sid, char obj[ID], char result[ID], char call_result[ID],
                         char actor[ID], char detached[ID])
{
    char task_id[ID];
    put_in(sid, "{\"v\":1}", obj);
    submit_in(sid, "{\"function\":\"echo\",\"args\":[7]}", task_id, result);
    json_decref(tk_wait_ended(&g_own, task_id, WAIT_BOUND));
    assert_int_equal(object_status(result), 200);
    create_actor_in(sid, "{\"class\":\"Counter\"}", actor);
    create_actor_in(sid, "{\"class\":\"Counter\",\"options\":{\"lifetime\":\"detached\"}}",
                    detached);
    char path[128];
    snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", actor);
    http_resp *r = in_session(sid, "POST", path, NULL);
    assert_status(r, 202);
    snprintf(call_result, ID, "%s", json_str(r->json, "ref"));
    http_resp_free(r);
    json_decref(tk_value(&g_own, call_result));
    json_t *j = get_session(sid);
    assert_non_null(j);
    assert_int_equal(json_int(j, "objects"), 3); /* the put, the result, the call's result */
    assert_int_equal(json_int(j, "tasks"), 1);
    assert_int_equal(json_int(j, "actors"), 1); /* the detached one is not the session's */
    json_decref(j);
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_close_frees_and_kills(void **state)
{
    start_own(NULL);
    char sid[ID], obj[ID], result[ID], call_result[ID], actor[ID], detached[ID], outsider[ID];
    open_session(60, sid);
    put_object(&g_own, NULL, "mine", 4, outsider);
    fill_session(sid, obj, result, call_result, actor, detached);
    /* Batches belong to it too. */
    char batch[2][ID], batch_task[ID], batch_result[ID];
    http_resp *r = in_session(sid, "POST", "/v1/objects/batch", "{\"objects\":[1,2]}");
    assert_status(r, 201);
    for (int i = 0; i < 2; i++)
        snprintf(batch[i], ID, "%s",
                 json_string_value(json_array_get(json_member(r->json, "refs"), (size_t)i)));
    http_resp_free(r);
    r = in_session(sid, "POST", "/v1/tasks/batch",
                   "{\"tasks\":[{\"function\":\"echo\",\"args\":[3]}]}");
    assert_status(r, 202);
    json_t *receipt = json_array_get(json_member(r->json, "tasks"), 0);
    snprintf(batch_task, ID, "%s", json_str(receipt, "task_id"));
    snprintf(batch_result, ID, "%s", json_str(receipt, "ref"));
    http_resp_free(r);
    json_decref(tk_wait_ended(&g_own, batch_task, WAIT_BOUND));
    json_t *j = get_session(sid);
    assert_int_equal(json_int(j, "objects"), 6);
    assert_int_equal(json_int(j, "tasks"), 2);
    json_decref(j);

    r = tk_getf(&g_own, "/v1/sessions/%s", sid);
    assert_status(r, 200);
    http_resp_free(r);
    r = http_delete(&g_own, "/v1/sessions/x");
    assert_problem(r, 404, "SessionNotFound");
    http_resp_free(r);
    char path[128];
    snprintf(path, sizeof path, "/v1/sessions/%s", sid);
    r = http_delete(&g_own, path);
    assert_status(r, 204);
    http_resp_free(r);
    assert_closed_session_cleaned(sid, obj, result, call_result, actor, detached, outsider);
    wait_object_lost(batch[0], "freed");
    wait_object_lost(batch[1], "freed");
    wait_object_lost(batch_result, "freed");
    r = http_delete(&g_own, path); /* closed already */
    assert_problem(r, 404, "SessionNotFound");
    http_resp_free(r);

    json_t *s = sessions_status();
    assert_int_equal(json_int(s, "open"), 0);
    assert_int_equal(json_int(s, "opened"), 1);
    assert_int_equal(json_int(s, "closed"), 1);
    assert_int_equal(json_int(s, "expired"), 0);
    assert_int_equal(json_int(s, "objects_released"), 6);
    assert_int_equal(json_int(s, "actors_killed"), 1);
    json_decref(s);
    r = http_get(&g_own, "/metrics");
    assert_status(r, 200);
    assert_non_null(strstr(r->body, "\nrayd_sessions_open 0\n"));
    assert_non_null(strstr(r->body, "rayd_sessions_ended_total{how=\"closed\"} 1\n"));
    http_resp_free(r);
    stop_own();
}

static void test_lease_runs_out(void **state)
{
    start_own(NULL);
    char sid[ID], obj[ID], result[ID], call_result[ID], actor[ID], detached[ID], outsider[ID];
    open_session(30, sid);
    put_object(&g_own, NULL, "mine", 4, outsider);
    fill_session(sid, obj, result, call_result, actor, detached);
    /* A short lease now: a new session of 1 s holding what a request puts in it. */
    char short_sid[ID], short_obj[ID];
    open_session(1, short_sid);
    put_in(short_sid, "{\"v\":2}", short_obj);
    wait_session_gone(short_sid);
    wait_object_lost(short_obj, "freed");
    json_t *s = sessions_status();
    assert_int_equal(json_int(s, "expired"), 1);
    assert_int_equal(json_int(s, "open"), 1);
    json_decref(s);
    /* The first session's lease is 30 s: still open, its things still there. */
    assert_int_equal(object_status(obj), 200);
    assert_string_equal(actor_state(actor), "ALIVE");
    stop_own();
}

static void test_lease_runs_out_everything(void **state)
{
    start_own(NULL);
    char sid[ID], obj[ID], result[ID], call_result[ID], actor[ID], detached[ID], outsider[ID];
    open_session(4, sid); /* each request of fill_session renews it */
    put_object(&g_own, NULL, "mine", 4, outsider);
    fill_session(sid, obj, result, call_result, actor, detached);
    wait_session_gone(sid); /* nothing renews it now */
    assert_closed_session_cleaned(sid, obj, result, call_result, actor, detached, outsider);
    json_t *s = sessions_status();
    assert_int_equal(json_int(s, "expired"), 1);
    assert_int_equal(json_int(s, "closed"), 0);
    json_decref(s);
    stop_own();
}

static void test_renew_by_header(void **state)
{
    start_own(NULL);
    char sid[ID];
    open_session(600, sid);
    json_t *before = get_session(sid);
    double first = json_num(before, "expires_at_unix");
    assert_int_equal(json_int(before, "renewals"), 0);
    json_decref(before);
    /* Any request naming the session renews it: here GET /v1/status. The lease's end moves
     * forward with the clock; poll until it has (the clock may not have ticked yet). */
    double end = now_s() + WAIT_BOUND, later = first;
    long long renewals = 0;
    while (later <= first) {
        http_resp *r = in_session(sid, "GET", "/v1/status", NULL);
        assert_status(r, 200);
        http_resp_free(r);
        json_t *j = get_session(sid);
        assert_non_null(j);
        later = json_num(j, "expires_at_unix");
        renewals = json_int(j, "renewals");
        json_decref(j);
        if (now_s() > end)
            fail_msg("the lease did not move forward after %lld renewals", renewals);
    }
    assert_true(renewals >= 1);
    assert_true(later > first);
    stop_own();
}

static void test_pending_tasks_cancelled(void **state)
{
    const char *args[] = {"--workers", "1", NULL};
    start_own(args);
    char busy_id[ID], busy[ID], sid[ID], queued_id[ID], queued[ID];
    /* The only worker sleeps, so the session's task stays queued. */
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[600]}", busy_id, busy);
    json_decref(tk_wait_state(&g_own, busy_id, "RUNNING", WAIT_BOUND));
    open_session(60, sid);
    submit_in(sid, "{\"function\":\"echo\",\"args\":[1]}", queued_id, queued);
    json_t *info = tk_info(&g_own, queued_id);
    assert_string_equal(json_str(info, "state"), "PENDING_NODE_ASSIGNMENT");
    json_decref(info);
    char path[128];
    snprintf(path, sizeof path, "/v1/sessions/%s", sid);
    http_resp *r = http_delete(&g_own, path);
    assert_status(r, 204);
    http_resp_free(r);
    json_decref(tk_wait_state(&g_own, queued_id, "CANCELLED", WAIT_BOUND));
    wait_object_lost(queued, "freed");
    json_t *s = sessions_status();
    assert_int_equal(json_int(s, "tasks_cancelled"), 1);
    json_decref(s);
    /* The task made without a session runs on. */
    info = tk_info(&g_own, busy_id);
    assert_string_equal(json_str(info, "state"), "RUNNING");
    json_decref(info);
    snprintf(path, sizeof path, "/v1/tasks/%s/cancel", busy_id);
    r = http_post_json(&g_own, path, "");
    http_resp_free(r);
    stop_own();
}

static void test_dependency_of_other_session_survives(void **state)
{
    start_own(NULL);
    char a[ID], b[ID], x[ID], gate_id[ID], gate[ID], task_id[ID], result[ID];
    open_session(60, a);
    open_session(60, b);
    put_in(a, "5", x);
    /* Session b's task needs x and a gate that stays pending until the test cancels it. */
    tk_submit(&g_own, "{\"function\":\"sleep\",\"args\":[600]}", gate_id, gate);
    char body[256];
    snprintf(body, sizeof body,
             "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},{\"$ref\":\"%s\"}]}", x, gate);
    submit_in(b, body, task_id, result);
    json_t *info = tk_info(&g_own, task_id);
    assert_string_equal(json_str(info, "state"), "PENDING_ARGS_AVAIL");
    json_decref(info);

    char path[128];
    snprintf(path, sizeof path, "/v1/sessions/%s", a);
    http_resp *r = http_delete(&g_own, path);
    assert_status(r, 204);
    http_resp_free(r);
    /* a is closed, but b's pending task still needs x: it stays. */
    assert_null(get_session(a));
    assert_int_equal(object_status(x), 200);
    info = tk_info(&g_own, task_id);
    assert_string_equal(json_str(info, "state"), "PENDING_ARGS_AVAIL");
    json_decref(info);
    /* End the task (its gate is cancelled, so it fails): x goes with its last pin. */
    snprintf(path, sizeof path, "/v1/tasks/%s/cancel", gate_id);
    r = http_post_json(&g_own, path, "");
    assert_status(r, 202);
    http_resp_free(r);
    json_t *ended = tk_wait_ended(&g_own, task_id, WAIT_BOUND);
    assert_string_equal(json_str(ended, "state"), "FAILED");
    json_decref(ended);
    wait_object_lost(x, "freed");
    json_t *open_b = get_session(b);
    assert_non_null(open_b); /* b itself is untouched */
    json_decref(open_b);
    stop_own();
}

static void test_bad_input(void **state)
{
    const char *args[] = {"--session-max-ttl", "10", "--max-sessions", "2", NULL};
    start_own(args);
    static const char *const bad_ttls[] = {"{\"ttl\":0}", "{\"ttl\":-1}", "{\"ttl\":\"5\"}",
                                           "{\"ttl\":10.5}", "{\"ttl\":1e300}", "{\"ttl\":true}",
                                           "[1]", "{\"ttl\":5,\"extra\":1}", "{\"ttl\":"};
    for (size_t i = 0; i < sizeof bad_ttls / sizeof bad_ttls[0]; i++) {
        http_resp *r = http_post_json(&g_own, "/v1/sessions", bad_ttls[i]);
        assert_problem(r, 400, "BadRequest");
        http_resp_free(r);
    }
    /* Unknown session ids: in the path and in the header, on every kind of route. */
    http_resp *r = http_get(&g_own, "/v1/sessions/sNoSuchSession");
    assert_problem(r, 404, "SessionNotFound");
    http_resp_free(r);
    r = in_session("sNoSuchSession", "POST", "/v1/objects", "1");
    assert_problem(r, 404, "SessionNotFound");
    assert_string_equal(json_str(r->json, "session_id"), "sNoSuchSession");
    http_resp_free(r);
    r = in_session("sNoSuchSession", "POST", "/v1/tasks", "{\"function\":\"echo\"}");
    assert_problem(r, 404, "SessionNotFound");
    http_resp_free(r);
    r = in_session("sNoSuchSession", "GET", "/v1/status", NULL);
    assert_problem(r, 404, "SessionNotFound");
    http_resp_free(r);
    r = in_session("not a session!", "POST", "/v1/objects", "1");
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
    r = http_get(&g_own, "/v1/sessions/bad$id");
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
    json_t *st = tk_status(&g_own);
    assert_int_equal(json_int(json_member(st, "object_store"), "objects"), 0); /* nothing made */
    assert_int_equal(json_int(json_member(st, "tasks"), "submitted"), 0);
    json_decref(st);
    /* Bad lifetimes. */
    r = http_post_json(&g_own, "/v1/actors",
                       "{\"class\":\"Counter\",\"options\":{\"lifetime\":\"forever\"}}");
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
    /* At most --max-sessions open: the third is 429 with Retry-After. */
    char s1[ID], s2[ID];
    open_session(10, s1);
    r = http_post_json(&g_own, "/v1/sessions", ""); /* no body: the default lease */
    assert_status(r, 201);
    assert_true(json_num(r->json, "ttl") == 10); /* the default, capped at the max */
    snprintf(s2, ID, "%s", json_str(r->json, "session_id"));
    http_resp_free(r);
    r = http_post_json(&g_own, "/v1/sessions", "{\"ttl\":1}");
    assert_problem(r, 429, "TooManyRequests");
    assert_non_null(http_header_get(r, "Retry-After"));
    http_resp_free(r);
    char path[128];
    snprintf(path, sizeof path, "/v1/sessions/%s", s1);
    r = http_delete(&g_own, path);
    assert_status(r, 204);
    http_resp_free(r);
    open_session(1, s1); /* room again */
    stop_own();
}

static void test_result_ttl(void **state)
{
    start_own(NULL);
    char task_id[ID], ref[ID], keep_id[ID], keep[ID];
    tk_submit(&g_own, "{\"function\":\"echo\",\"args\":[1],\"options\":{\"result_ttl\":1}}",
              task_id, ref);
    tk_submit(&g_own, "{\"function\":\"echo\",\"args\":[2]}", keep_id, keep);
    json_decref(tk_wait_ended(&g_own, task_id, WAIT_BOUND));
    http_resp *r = tk_getf(&g_own, "/v1/objects/%s/meta", ref);
    assert_status(r, 200);
    assert_true(json_is_string(json_member(r->json, "expires_at")));
    http_resp_free(r);
    wait_object_lost(ref, "expired");
    json_decref(tk_wait_ended(&g_own, keep_id, WAIT_BOUND));
    r = tk_getf(&g_own, "/v1/objects/%s/meta", keep);
    assert_status(r, 200);
    assert_true(json_is_null(json_member(r->json, "expires_at"))); /* no default set */
    http_resp_free(r);

    /* An actor call's result. */
    r = http_post_json(&g_own, "/v1/actors", "{\"class\":\"Counter\"}");
    assert_status(r, 201);
    char path[160];
    snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", json_str(r->json, "actor_id"));
    http_resp_free(r);
    r = http_post_json(&g_own, path, "{\"options\":{\"result_ttl\":0.5}}");
    assert_status(r, 202);
    snprintf(ref, ID, "%s", json_str(r->json, "ref"));
    http_resp_free(r);
    wait_object_lost(ref, "expired");

    /* Bad values: 400, nothing submitted. */
    static const char *const bad[] = {"-1", "\"10\"", "true", "[]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = tk_post_jsonf(&g_own, "/v1/tasks",
                          "{\"function\":\"echo\",\"options\":{\"result_ttl\":%s}}", bad[i]);
        assert_problem(r, 400, "BadRequest");
        http_resp_free(r);
        r = tk_post_jsonf(&g_own, path, "{\"options\":{\"result_ttl\":%s}}", bad[i]);
        assert_problem(r, 400, "BadRequest");
        http_resp_free(r);
    }
    r = http_post_json(&g_own, path, "{\"options\":{\"other\":1}}");
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
    stop_own();
}

static void test_result_ttl_default(void **state)
{
    const char *args[] = {"--result-ttl", "1", NULL};
    start_own(args);
    char task_id[ID], ref[ID], keep_id[ID], keep[ID], put[ID];
    tk_submit(&g_own, "{\"function\":\"echo\",\"args\":[1]}", task_id, ref);
    /* result_ttl 0: kept, whatever the default. */
    tk_submit(&g_own, "{\"function\":\"echo\",\"args\":[2],\"options\":{\"result_ttl\":0}}",
              keep_id, keep);
    put_object(&g_own, NULL, "put", 3, put); /* a put is not a result */
    wait_object_lost(ref, "expired");
    json_decref(tk_wait_ended(&g_own, keep_id, WAIT_BOUND));
    http_resp *r = tk_getf(&g_own, "/v1/objects/%s/meta", keep);
    assert_status(r, 200);
    assert_true(json_is_null(json_member(r->json, "expires_at")));
    http_resp_free(r);
    assert_int_equal(object_status(put), 200);
    stop_own();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_close_frees_and_kills, own_teardown),
        cmocka_unit_test_teardown(test_lease_runs_out, own_teardown),
        cmocka_unit_test_teardown(test_lease_runs_out_everything, own_teardown),
        cmocka_unit_test_teardown(test_renew_by_header, own_teardown),
        cmocka_unit_test_teardown(test_pending_tasks_cancelled, own_teardown),
        cmocka_unit_test_teardown(test_dependency_of_other_session_survives, own_teardown),
        cmocka_unit_test_teardown(test_bad_input, own_teardown),
        cmocka_unit_test_teardown(test_result_ttl, own_teardown),
        cmocka_unit_test_teardown(test_result_ttl_default, own_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
