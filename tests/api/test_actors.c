/* API tests of /v1/actors and /v1/actor-classes against the real rayd binary: creation and
 * validation, named actors and get_if_exists (also concurrent), calls and their ordering
 * (also behind pending ref arguments), errors as values, kill, restarts, failing
 * constructors, max_pending_calls, listing, the built-in classes and /v1/status (see
 * notes/actors_api.md). */
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

static rayd_server g_main;  /* --workers 4: pending refs and sleeps do not starve others */
static rayd_server g_fresh; /* one per test, for listing and counters */

#define ID TK_ID_SIZE

/* ---------------------------------------------------------------- helpers */

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *out = NULL;
    if (vasprintf(&out, f, ap) < 0)
        fail_msg("vasprintf failed");
    va_end(ap);
    return out;
}

static void assert_header_eq(const http_resp *r, const char *name, const char *want)
{
    const char *v = http_header_get(r, name);
    if (!v || strcmp(v, want) != 0)
        fail_msg("header %s is %s, wanted %s", name, v ? v : "(missing)", want);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("\"%s\" does not contain \"%s\"", hay ? hay : "(null)", needle);
}

/* Asserts the shape of an actor info object. */
static void assert_actor_info(const json_t *a)
{
    if (!json_is_object(a))
        fail_msg("actor info is not an object");
    assert_true(is_valid_ref(json_str(a, "actor_id")));
    json_str(a, "class");
    json_t *name = json_member(a, "name");
    assert_true(json_is_string(name) || json_is_null(name));
    const char *st = json_str(a, "state");
    assert_true(strcmp(st, "PENDING_CREATION") == 0 || strcmp(st, "ALIVE") == 0 ||
                strcmp(st, "RESTARTING") == 0 || strcmp(st, "DEAD") == 0);
    assert_true(json_int(a, "calls_pending") >= 0);
    assert_true(json_int(a, "calls_done") >= 0);
    assert_true(json_int(a, "restarts") >= 0);
    json_int(a, "max_restarts");
    json_int(a, "max_pending_calls");
    const char *ca = json_str(a, "created_at");
    if (strlen(ca) < 20 || ca[4] != '-' || ca[10] != 'T')
        fail_msg("created_at %s is not RFC 3339", ca);
    if (strcmp(st, "DEAD") == 0) {
        json_t *dc = json_member(a, "death_cause");
        assert_true(json_is_object(dc) || json_is_null(dc));
    }
}

/* POST /v1/actors with body; asserts `status` (201 or 200), the info and Location; copies
 * the id out. Returns the info (new reference). */
static json_t *create_status(const rayd_server *s, const char *body, long status, char *id)
{
    http_resp *r = http_post_json(s, "/v1/actors", body);
    if (r->status != status)
        fprintf(stderr, "create: %.500s\n", body);
    assert_status(r, status);
    assert_actor_info(r->json);
    const char *aid = json_str(r->json, "actor_id");
    char loc[512];
    snprintf(loc, sizeof loc, "/v1/actors/%s", aid);
    assert_header_eq(r, "Location", loc);
    if (id)
        snprintf(id, ID, "%s", aid);
    json_t *v = json_incref(r->json);
    http_resp_free(r);
    return v;
}

static void create(const rayd_server *s, const char *body, char *id)
{
    json_decref(create_status(s, body, 201, id));
}

/* POST /v1/actors with body: asserts a problem. */
static void create_fails(const rayd_server *s, const char *body, long status, const char *title)
{
    http_resp *r = http_post_json(s, "/v1/actors", body);
    if (r->status != status)
        fprintf(stderr, "create: %.500s\n", body);
    assert_problem(r, status, title);
    http_resp_free(r);
}

/* POST /v1/actors/{id}/methods/{method}; body NULL sends an empty body; wait > 0 adds
 * Prefer: wait=<wait>. */
static http_resp *call_raw(const rayd_server *s, const char *id, const char *method,
                           const char *body, int wait)
{
    char path[512], prefer[64];
    snprintf(path, sizeof path, "/v1/actors/%s/methods/%s", id, method);
    snprintf(prefer, sizeof prefer, "Prefer: wait=%d", wait);
    const char *h[3] = {"Content-Type: application/json", NULL, NULL};
    if (wait > 0)
        h[1] = prefer;
    if (!body)
        return http_request(s, "POST", path, wait > 0 ? h + 1 : NULL, "", 0);
    return http_request(s, "POST", path, h, body, strlen(body));
}

/* A call answered 202 {"ref"} with Location /v1/objects/<ref>; copies the ref. */
static void call(const rayd_server *s, const char *id, const char *method, const char *body,
                 char *ref)
{
    http_resp *r = call_raw(s, id, method, body, 0);
    if (r->status != 202)
        fprintf(stderr, "call %s.%s %s\n", id, method, body ? body : "(empty)");
    assert_status(r, 202);
    const char *rf = json_str(r->json, "ref");
    assert_true(is_valid_ref(rf));
    char loc[512];
    snprintf(loc, sizeof loc, "/v1/objects/%s", rf);
    assert_header_eq(r, "Location", loc);
    if (ref)
        snprintf(ref, ID, "%s", rf);
    http_resp_free(r);
}

/* The value of a call, which must succeed (new reference). */
static json_t *call_value(const rayd_server *s, const char *id, const char *method,
                          const char *body)
{
    char ref[ID];
    call(s, id, method, body, ref);
    return tk_value(s, ref);
}

static long long call_int(const rayd_server *s, const char *id, const char *method,
                          const char *body)
{
    json_t *v = call_value(s, id, method, body);
    if (!json_is_integer(v)) {
        char *d = json_dumps(v, JSON_ENCODE_ANY);
        fail_msg("%s.%s answered %s, not an integer", id, method, d);
    }
    long long n = json_integer_value(v);
    json_decref(v);
    return n;
}

static void assert_call_json(const rayd_server *s, const char *id, const char *method,
                             const char *body, const char *want)
{
    json_t *v = call_value(s, id, method, body);
    tk_assert_json_eq(v, want);
    json_decref(v);
}

/* The call's ref holds a 424 problem of this title naming the actor and method; returns the
 * response. */
static http_resp *call_error(const rayd_server *s, const char *id, const char *method,
                             const char *body, const char *title)
{
    char ref[ID];
    call(s, id, method, body, ref);
    http_resp *r = tk_error(s, ref, title);
    assert_string_equal(json_str(r->json, "actor_id"), id);
    return r;
}

static json_t *actor_info(const rayd_server *s, const char *id)
{
    http_resp *r = tk_getf(s, "/v1/actors/%s", id);
    assert_status(r, 200);
    assert_actor_info(r->json);
    assert_string_equal(json_str(r->json, "actor_id"), id);
    json_t *v = json_incref(r->json);
    http_resp_free(r);
    return v;
}

static json_t *wait_actor_state(const rayd_server *s, const char *id, const char *state,
                                double timeout_s)
{
    double deadline = now_s() + timeout_s;
    for (;;) {
        json_t *a = actor_info(s, id);
        if (strcmp(json_str(a, "state"), state) == 0)
            return a;
        if (now_s() > deadline) {
            char *d = json_dumps(a, JSON_COMPACT);
            fprintf(stderr, "actor: %s\n", d);
            free(d);
            fail_msg("actor %s not %s within %.1f s", id, state, timeout_s);
        }
        json_decref(a);
        sleep_s(0.01);
    }
}

/* Polls until the actor's calls_done is n (the counter is updated just after a call's result
 * is stored, so a client that saw the result may read it one lower for a moment). Returns
 * the info (new reference). */
static json_t *wait_calls_done(const rayd_server *s, const char *id, long long n)
{
    double deadline = now_s() + 5;
    for (;;) {
        json_t *a = actor_info(s, id);
        if (json_int(a, "calls_done") == n || now_s() > deadline) {
            assert_int_equal(json_int(a, "calls_done"), n);
            return a;
        }
        json_decref(a);
        sleep_s(0.005);
    }
}

static void kill_actor(const rayd_server *s, const char *id)
{
    char path[512];
    snprintf(path, sizeof path, "/v1/actors/%s", id);
    http_resp *r = http_delete(s, path);
    assert_status(r, 204);
    assert_int_equal(r->body_len, 0);
    http_resp_free(r);
}

/* The object is still pending: GET ?timeout=0 answers 202. */
static void assert_pending(const rayd_server *s, const char *ref)
{
    http_resp *r = tk_getf(s, "/v1/objects/%s?timeout=0", ref);
    assert_status(r, 202);
    assert_string_equal(json_str(r->json, "state"), "pending");
    http_resp_free(r);
}

/* A ref that stays pending until the test lets it go, whatever the machine's speed:
 * len(echo(sleep(600), 0)). release_held cancels the sleep task (its id is in sleeper), and
 * the ref then holds a TaskError caused by TaskCancelled. */
static void pending_held(const rayd_server *s, char *sleeper, char *ref)
{
    char r1[ID], r2[ID];
    tk_submitf(sleeper, r1, s, "{\"function\":\"sleep\",\"args\":[600]}");
    tk_submitf(NULL, r2, s, "{\"function\":\"echo\",\"args\":[{\"$ref\":\"%s\"},0]}", r1);
    tk_submitf(NULL, ref, s, "{\"function\":\"len\",\"args\":[{\"$ref\":\"%s\"}]}", r2);
}

static void release_held(const rayd_server *s, const char *sleeper)
{
    char path[512];
    snprintf(path, sizeof path, "/v1/tasks/%s/cancel", sleeper);
    http_resp *r = http_request(s, "POST", path, NULL, NULL, 0);
    assert_status(r, 202);
    http_resp_free(r);
}

static json_t *status_actors(const rayd_server *s)
{
    json_t *st = tk_status(s);
    json_t *a = json_incref(json_member(st, "actors"));
    json_decref(st);
    return a;
}

static long long by_state(const json_t *actors, const char *state)
{
    return json_int(json_member(actors, "by_state"), state);
}

/* ---------------------------------------------------------------- setup */

static int group_setup(void **state)
{
    const char *args[] = {"--workers", "4", NULL};
    return rayd_start(&g_main, args, NULL);
}

static int group_teardown(void **state)
{
    return rayd_stop(&g_main) == 0 ? 0 : -1;
}

static int fresh_setup(void **state)
{
    const char *args[] = {"--workers", "2", NULL};
    return rayd_start(&g_fresh, args, NULL);
}

static int fresh_teardown(void **state)
{
    return rayd_stop(&g_fresh) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- the issue's example */

static void test_issue_example(void **state)
{
    const rayd_server *s = &g_main;
    char id[ID], ref[ID];
    json_t *a =
        create_status(s, "{\"class\":\"Counter\",\"args\":[10],\"name\":\"hits\"}", 201, id);
    assert_string_equal(json_str(a, "class"), "Counter");
    assert_string_equal(json_str(a, "name"), "hits");
    assert_int_equal(json_int(a, "restarts"), 0);
    assert_int_equal(json_int(a, "max_restarts"), 0);
    assert_int_equal(json_int(a, "max_pending_calls"), -1);
    const char *st = json_str(a, "state");
    assert_true(strcmp(st, "PENDING_CREATION") == 0 || strcmp(st, "ALIVE") == 0);
    json_decref(a);

    call(s, id, "incr", "{\"args\":[5]}", ref);
    json_t *v = tk_value(s, ref);
    tk_assert_json_eq(v, "15");
    json_decref(v);

    /* Prefer: wait answers the result itself with the ref in headers. */
    http_resp *r = call_raw(s, id, "get", NULL, 5);
    assert_status(r, 200);
    assert_true(http_ct_is(r, "application/json"));
    tk_assert_json_eq(r->json, "15");
    const char *xref = http_header_get(r, "X-Ray-Ref");
    assert_non_null(xref);
    assert_true(is_valid_ref(xref));
    char loc[512];
    snprintf(loc, sizeof loc, "/v1/objects/%s", xref);
    assert_header_eq(r, "Location", loc);
    assert_header_eq(r, "Preference-Applied", "wait=5");
    http_resp_free(r);

    /* by name */
    r = http_get(s, "/v1/actors/by-name/hits");
    assert_status(r, 200);
    assert_actor_info(r->json);
    assert_string_equal(json_str(r->json, "actor_id"), id);
    assert_string_equal(json_str(r->json, "state"), "ALIVE");
    http_resp_free(r);
    a = wait_calls_done(s, id, 2);
    assert_int_equal(json_int(a, "calls_pending"), 0);
    json_decref(a);

    /* kill: 204, calls 410, GET shows DEAD with a death_cause, killing again 204 */
    kill_actor(s, id);
    r = call_raw(s, id, "incr", "{\"args\":[1]}", 0);
    assert_problem(r, 410, "ActorDied");
    assert_string_equal(json_str(r->json, "actor_id"), id);
    http_resp_free(r);
    r = call_raw(s, id, "get", NULL, 5);
    assert_problem(r, 410, "ActorDied");
    http_resp_free(r);
    a = actor_info(s, id);
    assert_string_equal(json_str(a, "state"), "DEAD");
    json_t *dc = json_member(a, "death_cause");
    assert_true(json_is_object(dc));
    assert_string_equal(json_str(dc, "title"), "ActorDied");
    json_decref(a);
    kill_actor(s, id);
    kill_actor(s, id);

    /* the name is freed */
    r = http_get(s, "/v1/actors/by-name/hits");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    char id2[ID];
    create(s, "{\"class\":\"Counter\",\"name\":\"hits\"}", id2);
    assert_string_not_equal(id, id2);
    assert_int_equal(call_int(s, id2, "get", NULL), 0);
    kill_actor(s, id2);
}

/* ---------------------------------------------------------------- not found, bad input */

static void test_unknown_actor(void **state)
{
    const rayd_server *s = &g_main;
    const char *nid = "aNoSuchActor000000000";
    http_resp *r = call_raw(s, nid, "incr", "{\"args\":[1]}", 0);
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    r = call_raw(s, nid, "get", NULL, 2);
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    r = tk_getf(s, "/v1/actors/%s", nid);
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    r = http_delete(s, "/v1/actors/aNoSuchActor000000000");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    r = http_get(s, "/v1/actors/by-name/no-such-name");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    /* bad id syntax */
    r = http_get(s, "/v1/actors/bad%21id");
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
    char longid[80];
    memset(longid, 'a', 65);
    longid[65] = '\0';
    r = tk_getf(s, "/v1/actors/%s", longid);
    assert_problem(r, 400, "BadRequest");
    http_resp_free(r);
}

static void test_unknown_class_and_method(void **state)
{
    const rayd_server *s = &g_main;
    create_fails(s, "{\"class\":\"NoSuchClass\"}", 404, "NotFound");
    create_fails(s, "{\"class\":\"NoSuchClass\",\"name\":\"ucm\"}", 404, "NotFound");
    /* nothing was created under that name */
    http_resp *r = http_get(s, "/v1/actors/by-name/ucm");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);

    char id[ID];
    create(s, "{\"class\":\"Counter\"}", id);
    r = call_raw(s, id, "nope", "{\"args\":[]}", 0);
    assert_problem(r, 404, "NotFound");
    assert_string_equal(json_str(r->json, "actor_id"), id);
    assert_string_equal(json_str(r->json, "method"), "nope");
    http_resp_free(r);
    /* a method of another class is unknown too */
    r = call_raw(s, id, "put", "{\"args\":[\"k\",1]}", 0);
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    /* nothing ran */
    assert_int_equal(call_int(s, id, "get", NULL), 0);
    json_decref(wait_calls_done(s, id, 1));
    kill_actor(s, id);
}

static void test_create_validation(void **state)
{
    const rayd_server *s = &g_main;
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "{}",
        "{\"class\":1}",
        "{\"class\":null}",
        "{\"class\":\"Counter\",\"bogus\":1}",
        "{\"class\":\"Counter\",\"args\":5}",
        "{\"class\":\"Counter\",\"args\":{\"start\":1}}",
        "{\"class\":\"Counter\",\"kwargs\":[1]}",
        "{\"class\":\"Counter\",\"name\":5}",
        "{\"class\":\"Counter\",\"name\":\"\"}",
        "{\"class\":\"Counter\",\"name\":\"a\\u0001b\"}",
        "{\"class\":\"Counter\",\"name\":\"tab\\there\"}",
        "{\"class\":\"Counter\",\"name\":\"nl\\n\"}",
        "{\"class\":\"Counter\",\"name\":\"del\\u007f\"}",
        "{\"class\":\"Counter\",\"get_if_exists\":true}",
        "{\"class\":\"Counter\",\"get_if_exists\":\"yes\",\"name\":\"gie\"}",
        "{\"class\":\"Counter\",\"options\":5}",
        "{\"class\":\"Counter\",\"options\":{\"bogus\":1}}",
        "{\"class\":\"Counter\",\"options\":{\"max_restarts\":-2}}",
        "{\"class\":\"Counter\",\"options\":{\"max_restarts\":1.5}}",
        "{\"class\":\"Counter\",\"options\":{\"max_restarts\":\"1\"}}",
        "{\"class\":\"Counter\",\"options\":{\"max_restarts\":null}}",
        "{\"class\":\"Counter\",\"options\":{\"max_pending_calls\":0}}",
        "{\"class\":\"Counter\",\"options\":{\"max_pending_calls\":-2}}",
        "{\"class\":\"Counter\",\"options\":{\"max_pending_calls\":2.5}}",
        "{\"class\":\"Counter\",\"options\":{\"max_pending_calls\":true}}",
        "{\"class\":\"Counter\",\"args\":[{\"$ref\":\"oNoSuchRef00000000000\"}]}",
        "{\"class\":\"Counter\",\"args\":[{\"$ref\":5}]}",
        "{\"class\":\"Counter\",\"args\":[{\"$ref\":\"bad ref!\"}]}",
        NULL,
    };
    json_t *before = status_actors(s);
    for (size_t i = 0; bad[i]; i++)
        create_fails(s, bad[i], 400, "BadRequest");

    /* a name of 129 bytes is refused, 128 is fine */
    char name[200];
    memset(name, 'n', 129);
    name[129] = '\0';
    char *body = fmt("{\"class\":\"Counter\",\"name\":\"%s\"}", name);
    create_fails(s, body, 400, "BadRequest");
    free(body);
    name[128] = '\0';
    body = fmt("{\"class\":\"Counter\",\"name\":\"%s\"}", name);
    char id[ID];
    json_t *a = create_status(s, body, 201, id);
    assert_string_equal(json_str(a, "name"), name);
    json_decref(a);
    free(body);
    /* 128 bytes of UTF-8 (64 two-byte characters) */
    body = fmt("{\"class\":\"KV\",\"name\":\"%s\"}",
               "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
               "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
               "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
               "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
               "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
               "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
               "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
               "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    char id2[ID];
    create(s, body, id2);
    free(body);
    /* ... and 130 bytes are not */
    body = fmt("{\"class\":\"KV\",\"name\":\"%s\\u00e9\"}", name);
    create_fails(s, body, 400, "BadRequest");
    free(body);

    /* a JSON endpoint refuses other media types */
    const char *h[] = {"Content-Type: text/plain", NULL};
    const char *b = "{\"class\":\"Counter\"}";
    http_resp *r = http_request(s, "POST", "/v1/actors", h, b, strlen(b));
    assert_problem(r, 415, "UnsupportedMediaType");
    http_resp_free(r);

    /* none of the refused bodies created an actor */
    json_t *after = status_actors(s);
    long long total_before = 0, total_after = 0;
    const char *states[] = {"PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD"};
    for (size_t i = 0; i < 4; i++) {
        total_before += by_state(before, states[i]);
        total_after += by_state(after, states[i]);
    }
    assert_int_equal(total_after, total_before + 2);
    json_decref(before);
    json_decref(after);
    kill_actor(s, id);
    kill_actor(s, id2);

    /* valid options are echoed */
    a = create_status(
        s, "{\"class\":\"Counter\",\"options\":{\"max_restarts\":-1,\"max_pending_calls\":7}}", 201,
        id);
    assert_int_equal(json_int(a, "max_restarts"), -1);
    assert_int_equal(json_int(a, "max_pending_calls"), 7);
    json_decref(a);
    kill_actor(s, id);
    /* kwargs for the constructor, and a ready ref argument */
    create(s, "{\"class\":\"Counter\",\"kwargs\":{\"start\":42}}", id);
    assert_int_equal(call_int(s, id, "get", NULL), 42);
    kill_actor(s, id);
    char ref[ID];
    put_object(s, "application/json", "33", 2, ref);
    body = fmt("{\"class\":\"Counter\",\"args\":[{\"$ref\":\"%s\"}]}", ref);
    create(s, body, id);
    free(body);
    assert_int_equal(call_int(s, id, "get", NULL), 33);
    kill_actor(s, id);
}

static void test_call_validation(void **state)
{
    const rayd_server *s = &g_main;
    char id[ID];
    create(s, "{\"class\":\"Counter\",\"args\":[3]}", id);
    static const char *const bad[] = {
        "not json",
        "[]",
        "{\"args\":5}",
        "{\"args\":{\"n\":1}}",
        "{\"kwargs\":[1]}",
        "{\"bogus\":1}",
        "{\"args\":[{\"$ref\":\"oNoSuchRef00000000000\"}]}",
        "{\"args\":[{\"$ref\":\"not a ref\"}]}",
        NULL,
    };
    for (size_t i = 0; bad[i]; i++) {
        http_resp *r = call_raw(s, id, "incr", bad[i], 0);
        if (r->status != 400)
            fprintf(stderr, "call body: %s\n", bad[i]);
        assert_problem(r, 400, "BadRequest");
        http_resp_free(r);
    }
    const char *h[] = {"Content-Type: text/plain", NULL};
    http_resp *r = http_request(s, "POST", "/v1/actors/x/methods/get", h, "{}", 2);
    assert_true(r->status == 415 || r->status == 404);
    http_resp_free(r);
    char path[512];
    snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", id);
    r = http_request(s, "POST", path, h, "{\"args\":[1]}", 12);
    assert_problem(r, 415, "UnsupportedMediaType");
    http_resp_free(r);
    /* none ran; an empty body, {} and kwargs are fine */
    assert_int_equal(call_int(s, id, "get", NULL), 3);
    assert_int_equal(call_int(s, id, "incr", "{}"), 4);
    assert_int_equal(call_int(s, id, "incr", NULL), 5);
    assert_int_equal(call_int(s, id, "incr", "{\"kwargs\":{\"n\":10}}"), 15);
    assert_int_equal(call_int(s, id, "incr", "{\"args\":[-20]}"), -5);
    assert_int_equal(call_int(s, id, "reset", "{\"args\":[]}"), 0);
    assert_int_equal(call_int(s, id, "reset", "{\"args\":[9]}"), 9);
    assert_int_equal(call_int(s, id, "get", "{}"), 9);
    /* wrong methods on the routes */
    r = http_request(s, "PUT", "/v1/actors", NULL, "{}", 2);
    assert_problem(r, 405, "MethodNotAllowed");
    assert_non_null(http_header_get(r, "Allow"));
    http_resp_free(r);
    r = http_get(s, path);
    assert_problem(r, 405, "MethodNotAllowed");
    http_resp_free(r);
    kill_actor(s, id);
}

/* ---------------------------------------------------------------- names */

static void test_name_taken_and_get_if_exists(void **state)
{
    const rayd_server *s = &g_main;
    char id[ID], id2[ID];
    create(s, "{\"class\":\"Counter\",\"args\":[1],\"name\":\"taken\"}", id);
    http_resp *r = http_post_json(s, "/v1/actors", "{\"class\":\"Counter\",\"name\":\"taken\"}");
    assert_problem(r, 409, "Conflict");
    assert_string_equal(json_str(r->json, "name"), "taken");
    http_resp_free(r);
    /* taken also for another class */
    create_fails(s, "{\"class\":\"KV\",\"name\":\"taken\"}", 409, "Conflict");
    create_fails(s, "{\"class\":\"KV\",\"name\":\"taken\",\"get_if_exists\":false}", 409,
                 "Conflict");

    assert_int_equal(call_int(s, id, "incr", "{\"args\":[4]}"), 5);
    /* get_if_exists: 200 with the same actor; its constructor did not run again */
    json_t *a = create_status(
        s, "{\"class\":\"Counter\",\"args\":[100],\"name\":\"taken\",\"get_if_exists\":true}", 200,
        id2);
    assert_string_equal(id2, id);
    assert_string_equal(json_str(a, "name"), "taken");
    assert_string_equal(json_str(a, "class"), "Counter");
    json_decref(a);
    assert_int_equal(call_int(s, id, "get", NULL), 5);

    /* get_if_exists with a new name creates (201) */
    char id3[ID];
    json_decref(create_status(
        s, "{\"class\":\"Counter\",\"name\":\"gie-new\",\"get_if_exists\":true}", 201, id3));
    assert_string_not_equal(id3, id);
    /* names are case-sensitive */
    char id4[ID];
    create(s, "{\"class\":\"Counter\",\"name\":\"TAKEN\"}", id4);
    assert_string_not_equal(id4, id);

    /* after a kill the name is free again; get_if_exists then creates a new actor */
    kill_actor(s, id);
    a = create_status(
        s, "{\"class\":\"Counter\",\"args\":[100],\"name\":\"taken\",\"get_if_exists\":true}", 201,
        id2);
    assert_string_not_equal(id2, id);
    json_decref(a);
    assert_int_equal(call_int(s, id2, "get", NULL), 100);
    kill_actor(s, id2);
    kill_actor(s, id3);
    kill_actor(s, id4);
}

#define GIE_THREADS 8

typedef struct gie_arg {
    pthread_barrier_t *barrier;
    long create_status;
    long incr_status;
    char actor_id[ID];
    char error[256];
} gie_arg;

static void *gie_main(void *p)
{
    gie_arg *g = p;
    const char *h[] = {"Content-Type: application/json", NULL};
    const char *body =
        "{\"class\":\"Counter\",\"args\":[100],\"name\":\"concurrent\",\"get_if_exists\":true}";
    pthread_barrier_wait(g->barrier);
    http_opts o = {.method = "POST",
                   .path = "/v1/actors",
                   .headers = h,
                   .body = body,
                   .body_len = strlen(body),
                   .has_body = true,
                   .soft = true};
    http_resp *r = http_request_opts(&g_main, &o);
    g->create_status = r->status;
    if (r->error[0])
        snprintf(g->error, sizeof g->error, "%s", r->error);
    json_t *aid = r->json ? json_object_get(r->json, "actor_id") : NULL;
    if (json_is_string(aid))
        snprintf(g->actor_id, ID, "%s", json_string_value(aid));
    http_resp_free(r);
    if (!g->actor_id[0])
        return NULL;
    char path[256];
    snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", g->actor_id);
    const char *h2[] = {"Content-Type: application/json", "Prefer: wait=20", NULL};
    http_opts o2 = {.method = "POST",
                    .path = path,
                    .headers = h2,
                    .body = "{\"args\":[1]}",
                    .body_len = 12,
                    .has_body = true,
                    .soft = true};
    r = http_request_opts(&g_main, &o2);
    g->incr_status = r->status;
    http_resp_free(r);
    return NULL;
}

static void test_get_if_exists_concurrent(void **state)
{
    for (int round = 0; round < 3; round++) {
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, GIE_THREADS);
        gie_arg args[GIE_THREADS];
        pthread_t th[GIE_THREADS];
        memset(args, 0, sizeof args);
        for (int i = 0; i < GIE_THREADS; i++) {
            args[i].barrier = &barrier;
            pthread_create(&th[i], NULL, gie_main, &args[i]);
        }
        for (int i = 0; i < GIE_THREADS; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&barrier);
        int created = 0;
        for (int i = 0; i < GIE_THREADS; i++) {
            if (args[i].error[0])
                fail_msg("thread %d: %s", i, args[i].error);
            if (args[i].create_status == 201)
                created++;
            else if (args[i].create_status != 200)
                fail_msg("thread %d: create answered %ld", i, args[i].create_status);
            if (strcmp(args[i].actor_id, args[0].actor_id) != 0)
                fail_msg("thread %d got actor %s, thread 0 got %s", i, args[i].actor_id,
                         args[0].actor_id);
            if (args[i].incr_status != 200)
                fail_msg("thread %d: incr answered %ld", i, args[i].incr_status);
        }
        assert_int_equal(created, 1);
        /* the constructor ran once: every incr counted from 100 */
        assert_int_equal(call_int(&g_main, args[0].actor_id, "get", NULL), 100 + GIE_THREADS);
        json_t *a = wait_calls_done(&g_main, args[0].actor_id, GIE_THREADS + 1);
        assert_int_equal(json_int(a, "restarts"), 0);
        json_decref(a);
        kill_actor(&g_main, args[0].actor_id);
    }
}

/* ---------------------------------------------------------------- calls */

static void test_wrong_argument_types(void **state)
{
    const rayd_server *s = &g_main;
    char id[ID];
    create(s, "{\"class\":\"Counter\",\"args\":[1]}", id);
    http_resp *r = call_error(s, id, "incr", "{\"args\":[\"x\"]}", "TaskError");
    assert_string_equal(json_str(r->json, "method"), "incr");
    assert_string_equal(json_str(r->json, "class"), "Counter");
    assert_contains(json_str(r->json, "detail"), "Counter.incr");
    assert_contains(json_str(r->json, "detail"), "integer");
    http_resp_free(r);
    r = call_error(s, id, "incr", "{\"args\":[1.5]}", "TaskError");
    assert_string_equal(json_str(r->json, "method"), "incr");
    http_resp_free(r);
    r = call_error(s, id, "reset", "{\"args\":[[1]]}", "TaskError");
    assert_string_equal(json_str(r->json, "method"), "reset");
    http_resp_free(r);

    /* Prefer: wait on a failing call answers the 424 itself, with the ref */
    r = call_raw(s, id, "incr", "{\"args\":[null]}", 5);
    assert_problem(r, 424, "TaskError");
    assert_string_equal(json_str(r->json, "actor_id"), id);
    assert_string_equal(json_str(r->json, "method"), "incr");
    const char *xref = http_header_get(r, "X-Ray-Ref");
    assert_non_null(xref);
    assert_string_equal(json_str(r->json, "ref"), xref);
    http_resp_free(r);

    /* a method error leaves the actor alive and its state unchanged */
    assert_int_equal(call_int(s, id, "get", NULL), 1);
    json_t *a = actor_info(s, id);
    assert_string_equal(json_str(a, "state"), "ALIVE");
    assert_int_equal(json_int(a, "restarts"), 0);
    json_decref(a);
    kill_actor(s, id);
}

static void test_ordering_1000(void **state)
{
    const rayd_server *s = &g_main;
    enum { N = 1000 };
    char id[ID];
    create(s, "{\"class\":\"Counter\"}", id);
    char path[256];
    snprintf(path, sizeof path, "/v1/actors/%s/methods/incr", id);
    char(*refs)[ID] = calloc(N, sizeof *refs);
    CURL *c = curl_easy_init();
    const char *h[] = {"Content-Type: application/json", NULL};
    for (int i = 0; i < N; i++) {
        http_opts o = {.method = "POST",
                       .path = path,
                       .headers = h,
                       .body = "{\"args\":[1]}",
                       .body_len = 12,
                       .has_body = true,
                       .handle = c};
        http_resp *r = http_request_opts(s, &o);
        assert_status(r, 202);
        snprintf(refs[i], ID, "%s", json_str(r->json, "ref"));
        http_resp_free(r);
    }
    curl_easy_cleanup(c);
    assert_int_equal(call_int(s, id, "get", NULL), N);

    json_t *req = json_pack("{s:[], s:i}", "refs", "timeout", 20);
    json_t *arr = json_object_get(req, "refs");
    for (int i = 0; i < N; i++)
        json_array_append_new(arr, json_string(refs[i]));
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    http_resp *r = http_post_json(s, "/v1/objects/get", body);
    free(body);
    assert_status(r, 200);
    json_t *objs = json_member(r->json, "objects");
    assert_int_equal(json_array_size(objs), N);
    for (int i = 0; i < N; i++) {
        json_t *o = json_array_get(objs, (size_t)i);
        assert_string_equal(json_str(o, "ref"), refs[i]);
        json_t *v = json_member(o, "value");
        if (!json_is_integer(v) || json_integer_value(v) != i + 1)
            fail_msg("call %d answered %lld, wanted %d", i + 1,
                     json_is_integer(v) ? (long long)json_integer_value(v) : -1LL, i + 1);
    }
    http_resp_free(r);
    free(refs);
    json_t *a = wait_calls_done(s, id, N + 1);
    assert_int_equal(json_int(a, "calls_pending"), 0);
    json_decref(a);
    kill_actor(s, id);
}

static void test_pending_ref_holds_back(void **state)
{
    const rayd_server *s = &g_main;
    char id[ID], sleeper[ID], p[ID], r0[ID], r1[ID], later[5][ID];
    create(s, "{\"class\":\"Counter\"}", id);
    pending_held(s, sleeper, p);
    call(s, id, "incr", "{\"args\":[1]}", r0);
    char *body = fmt("{\"args\":[{\"$ref\":\"%s\"}]}", p);
    call(s, id, "incr", body, r1);
    free(body);
    for (int i = 0; i < 5; i++)
        call(s, id, "incr", "{\"args\":[1]}", later[i]);
    json_t *v = tk_value(s, r0);
    tk_assert_json_eq(v, "1");
    json_decref(v);
    /* the call waiting for its argument holds back the ones behind it, for as long as the
     * argument is pending */
    json_t *a = wait_calls_done(s, id, 1); /* r0 */
    assert_int_equal(json_int(a, "calls_pending"), 6);
    json_decref(a);
    assert_pending(s, r1);
    for (int i = 0; i < 5; i++)
        assert_pending(s, later[i]);
    assert_pending(s, p);
    /* the argument fails: that call fails without running, and the ones behind it run, in
     * order */
    release_held(s, sleeper);
    http_resp *r = tk_error(s, r1, "TaskError");
    http_resp_free(r);
    for (int i = 0; i < 5; i++) {
        v = tk_value(s, later[i]);
        if (!json_is_integer(v) || json_integer_value(v) != 2 + i)
            fail_msg("call %d behind the pending one answered %lld, wanted %d", i,
                     json_is_integer(v) ? (long long)json_integer_value(v) : -1LL, 2 + i);
        json_decref(v);
    }
    kill_actor(s, id);
}

static void test_errored_ref_argument(void **state)
{
    const rayd_server *s = &g_main;
    char id[ID], bad[ID], r1[ID], r2[ID];
    create(s, "{\"class\":\"Counter\",\"args\":[5]}", id);
    tk_submit(s, "{\"function\":\"fail\",\"args\":[\"boom here\"]}", NULL, bad);
    char *body = fmt("{\"args\":[{\"$ref\":\"%s\"}]}", bad);
    call(s, id, "incr", body, r1);
    free(body);
    call(s, id, "incr", "{\"args\":[1]}", r2);
    http_resp *r = tk_error(s, r1, "TaskError");
    assert_string_equal(json_str(r->json, "actor_id"), id);
    assert_string_equal(json_str(r->json, "method"), "incr");
    json_t *cause = json_member(r->json, "cause");
    assert_string_equal(json_str(cause, "title"), "TaskError");
    assert_contains(json_str(cause, "detail"), "boom here");
    http_resp_free(r);
    /* the call did not run; the one behind it did */
    json_t *v = tk_value(s, r2);
    tk_assert_json_eq(v, "6");
    json_decref(v);

    /* an argument that was a failed actor call propagates too */
    char r3[ID], r4[ID];
    call(s, id, "incr", "{\"args\":[\"x\"]}", r3);
    body = fmt("{\"args\":[{\"$ref\":\"%s\"}]}", r3);
    call(s, id, "reset", body, r4);
    free(body);
    r = tk_error(s, r4, "TaskError");
    cause = json_member(r->json, "cause");
    assert_string_equal(json_str(cause, "title"), "TaskError");
    assert_string_equal(json_str(cause, "method"), "incr");
    http_resp_free(r);
    assert_int_equal(call_int(s, id, "get", NULL), 6);

    /* a freed ref argument: accepted, fails with ObjectLost as the cause */
    char gone[ID], r5[ID];
    put_object(s, "application/json", "7", 1, gone);
    char path[256];
    snprintf(path, sizeof path, "/v1/objects/%s", gone);
    r = http_delete(s, path);
    assert_status(r, 204);
    http_resp_free(r);
    body = fmt("{\"args\":[{\"$ref\":\"%s\"}]}", gone);
    call(s, id, "incr", body, r5);
    free(body);
    r = tk_error(s, r5, "TaskError");
    cause = json_member(r->json, "cause");
    assert_string_equal(json_str(cause, "title"), "ObjectLost");
    http_resp_free(r);
    assert_int_equal(call_int(s, id, "get", NULL), 6);
    kill_actor(s, id);
}

static void test_results_chain_into_tasks(void **state)
{
    const rayd_server *s = &g_main;
    char id[ID], r1[ID], t[ID];
    create(s, "{\"class\":\"Counter\",\"args\":[40]}", id);
    call(s, id, "incr", "{\"args\":[1]}", r1);
    tk_submitf(NULL, t, s, "{\"function\":\"add\",\"args\":[{\"$ref\":\"%s\"},1]}", r1);
    json_t *v = tk_value(s, t);
    tk_assert_json_eq(v, "42");
    json_decref(v);
    /* and task results into calls, and calls into other actors' calls */
    char id2[ID], r2[ID];
    create(s, "{\"class\":\"Counter\",\"args\":[1000]}", id2);
    char *body = fmt("{\"args\":[{\"$ref\":\"%s\"}]}", r1);
    call(s, id2, "incr", body, r2);
    free(body);
    v = tk_value(s, r2);
    tk_assert_json_eq(v, "1041");
    json_decref(v);
    /* a KV actor storing an actor result by ref */
    char kv[ID];
    create(s, "{\"class\":\"KV\"}", kv);
    body = fmt("{\"args\":[\"v\",{\"$ref\":\"%s\"}]}", r2);
    assert_call_json(s, kv, "put", body, "null");
    free(body);
    assert_call_json(s, kv, "get", "{\"args\":[\"v\"]}", "1041");
    /* a nested ref is stored as is */
    body = fmt("{\"args\":[\"n\",[{\"$ref\":\"%s\"}]]}", r2);
    assert_call_json(s, kv, "put", body, "null");
    free(body);
    v = call_value(s, kv, "get", "{\"args\":[\"n\"]}");
    assert_true(json_is_array(v));
    assert_string_equal(json_str(json_array_get(v, 0), "$ref"), r2);
    json_decref(v);
    kill_actor(s, id);
    kill_actor(s, id2);
    kill_actor(s, kv);
}

/* ---------------------------------------------------------------- built-in classes */

static void test_kv(void **state)
{
    const rayd_server *s = &g_main;
    char id[ID];
    create(s, "{\"class\":\"KV\"}", id);
    assert_call_json(s, id, "size", NULL, "0");
    assert_call_json(s, id, "keys", NULL, "[]");
    assert_call_json(s, id, "put", "{\"args\":[\"b\",1]}", "null");
    assert_call_json(s, id, "put", "{\"args\":[\"b\",{\"x\":[1,2]}]}", "1");
    assert_call_json(s, id, "put", "{\"kwargs\":{\"key\":\"a\",\"value\":\"s\"}}", "null");
    assert_call_json(s, id, "put", "{\"args\":[\"c\",null]}", "null");
    assert_call_json(s, id, "get", "{\"args\":[\"b\"]}", "{\"x\":[1,2]}");
    assert_call_json(s, id, "get", "{\"args\":[\"a\"]}", "\"s\"");
    assert_call_json(s, id, "get", "{\"args\":[\"zz\"]}", "null");
    assert_call_json(s, id, "get", "{\"args\":[\"zz\",7]}", "7");
    assert_call_json(s, id, "get", "{\"kwargs\":{\"key\":\"zz\",\"default\":[]}}", "[]");
    assert_call_json(s, id, "keys", NULL, "[\"a\",\"b\",\"c\"]");
    assert_call_json(s, id, "size", NULL, "3");
    assert_call_json(s, id, "delete", "{\"args\":[\"b\"]}", "true");
    assert_call_json(s, id, "delete", "{\"args\":[\"b\"]}", "false");
    assert_call_json(s, id, "keys", NULL, "[\"a\",\"c\"]");
    assert_call_json(s, id, "size", NULL, "2");
    http_resp *r = call_error(s, id, "put", "{\"args\":[1,2]}", "TaskError");
    assert_string_equal(json_str(r->json, "method"), "put");
    assert_string_equal(json_str(r->json, "class"), "KV");
    http_resp_free(r);
    kill_actor(s, id);

    create(s, "{\"class\":\"KV\",\"args\":[{\"z\":1,\"y\":2}]}", id);
    assert_call_json(s, id, "keys", NULL, "[\"y\",\"z\"]");
    assert_call_json(s, id, "get", "{\"args\":[\"z\"]}", "1");
    kill_actor(s, id);
    /* a constructor argument of the wrong type kills it */
    create(s, "{\"class\":\"KV\",\"args\":[[1]]}", id);
    json_decref(wait_actor_state(s, id, "DEAD", 5));
}

static void test_queue(void **state)
{
    const rayd_server *s = &g_main;
    char id[ID];
    create(s, "{\"class\":\"Queue\"}", id);
    http_resp *r = call_error(s, id, "get", NULL, "TaskError");
    assert_contains(json_str(r->json, "detail"), "queue is empty");
    assert_string_equal(json_str(r->json, "method"), "get");
    assert_string_equal(json_str(r->json, "class"), "Queue");
    http_resp_free(r);
    assert_call_json(s, id, "put", "{\"args\":[\"first\"]}", "1");
    assert_call_json(s, id, "put", "{\"args\":[{\"n\":2}]}", "2");
    assert_call_json(s, id, "put", "{\"kwargs\":{\"item\":3}}", "3");
    assert_call_json(s, id, "size", NULL, "3");
    assert_call_json(s, id, "get", NULL, "\"first\"");
    assert_call_json(s, id, "get", NULL, "{\"n\":2}");
    assert_call_json(s, id, "put", "{\"args\":[null]}", "2");
    assert_call_json(s, id, "get", NULL, "3");
    assert_call_json(s, id, "get", NULL, "null");
    assert_call_json(s, id, "size", NULL, "0");
    r = call_error(s, id, "get", NULL, "TaskError");
    assert_contains(json_str(r->json, "detail"), "queue is empty");
    http_resp_free(r);
    /* the error left the actor alive */
    assert_call_json(s, id, "size", NULL, "0");
    kill_actor(s, id);

    create(s, "{\"class\":\"Queue\",\"args\":[[\"a\",\"b\"]]}", id);
    assert_call_json(s, id, "put", "{\"args\":[\"c\"]}", "3");
    assert_call_json(s, id, "get", NULL, "\"a\"");
    assert_call_json(s, id, "get", NULL, "\"b\"");
    assert_call_json(s, id, "get", NULL, "\"c\"");
    kill_actor(s, id);
}

static void test_accumulator(void **state)
{
    const rayd_server *s = &g_main;
    char id[ID];
    create(s, "{\"class\":\"Accumulator\"}", id);
    http_resp *r = call_error(s, id, "mean", NULL, "TaskError");
    assert_contains(json_str(r->json, "detail"), "no values");
    http_resp_free(r);
    assert_call_json(s, id, "count", NULL, "0");
    assert_call_json(s, id, "total", NULL, "0.0");
    assert_call_json(s, id, "add", "{\"args\":[1]}", "1.0");
    assert_call_json(s, id, "add", "{\"args\":[2,3.5]}", "6.5");
    assert_call_json(s, id, "add", "{\"args\":[-0.5]}", "6.0");
    assert_call_json(s, id, "count", NULL, "4");
    assert_call_json(s, id, "total", NULL, "6.0");
    assert_call_json(s, id, "mean", NULL, "1.5");
    r = call_error(s, id, "add", "{\"args\":[\"x\"]}", "TaskError");
    assert_string_equal(json_str(r->json, "method"), "add");
    http_resp_free(r);
    r = call_error(s, id, "add", "{\"args\":[]}", "TaskError");
    http_resp_free(r);
    /* failed adds add nothing */
    assert_call_json(s, id, "count", NULL, "4");
    assert_call_json(s, id, "mean", NULL, "1.5");
    kill_actor(s, id);
}

static void test_actor_classes(void **state)
{
    http_resp *r = http_get(&g_main, "/v1/actor-classes");
    assert_status(r, 200);
    json_t *classes = json_member(r->json, "classes");
    assert_true(json_is_array(classes));
    static const struct {
        const char *name;
        const char *methods[6];
    } want[] = {
        {"Counter", {"incr", "get", "reset", "crash", NULL}},
        {"KV", {"put", "get", "delete", "keys", "size", NULL}},
        {"Queue", {"put", "get", "size", NULL}},
        {"Accumulator", {"add", "total", "mean", "count", NULL}},
    };
    for (size_t w = 0; w < 4; w++) {
        json_t *found = NULL;
        size_t i;
        json_t *c;
        json_array_foreach(classes, i, c)
        {
            if (strcmp(json_str(c, "name"), want[w].name) == 0)
                found = c;
        }
        if (!found)
            fail_msg("class %s not listed", want[w].name);
        assert_string_equal(json_str(found, "kind"), "builtin");
        assert_true(strlen(json_str(found, "description")) > 0);
        json_member(found, "args");
        json_t *methods = json_member(found, "methods");
        size_t nwant = 0;
        while (want[w].methods[nwant])
            nwant++;
        assert_int_equal(json_array_size(methods), nwant);
        for (size_t k = 0; k < nwant; k++) {
            bool have = false;
            json_t *m;
            json_array_foreach(methods, i, m)
            {
                if (strcmp(json_str(m, "name"), want[w].methods[k]) == 0) {
                    have = true;
                    json_member(m, "args");
                    assert_true(strlen(json_str(m, "description")) > 0);
                }
            }
            if (!have)
                fail_msg("class %s lacks method %s", want[w].name, want[w].methods[k]);
        }
    }
    http_resp_free(r);
}

/* ---------------------------------------------------------------- lifecycle */

static void test_kill_with_queued_calls(void **state)
{
    const rayd_server *s = &g_main;
    char id[ID], sleeper[ID], p[ID], first[ID], done[ID], queued[4][ID];
    create(s, "{\"class\":\"Counter\"}", id);
    call(s, id, "incr", "{\"args\":[1]}", done);
    json_t *v = tk_value(s, done);
    tk_assert_json_eq(v, "1");
    json_decref(v);
    pending_held(s, sleeper, p);
    char *body = fmt("{\"args\":[{\"$ref\":\"%s\"}]}", p);
    call(s, id, "incr", body, first);
    free(body);
    for (int i = 0; i < 4; i++)
        call(s, id, "incr", "{\"args\":[1]}", queued[i]);
    assert_pending(s, queued[0]);
    json_t *a = actor_info(s, id);
    assert_int_equal(json_int(a, "calls_pending"), 5);
    json_decref(a);
    kill_actor(s, id);
    for (int i = 0; i < 4; i++) {
        http_resp *r = tk_error(s, queued[i], "ActorDied");
        assert_string_equal(json_str(r->json, "actor_id"), id);
        http_resp_free(r);
    }
    /* the call waiting for its argument had not run either */
    http_resp *r = tk_error(s, first, "ActorDied");
    assert_string_equal(json_str(r->json, "actor_id"), id);
    http_resp_free(r);
    /* they resolved at the kill, while the argument is still pending */
    assert_pending(s, p);
    release_held(s, sleeper);
    /* the finished call keeps its result */
    v = tk_value(s, done);
    tk_assert_json_eq(v, "1");
    json_decref(v);
    a = actor_info(s, id);
    assert_string_equal(json_str(a, "state"), "DEAD");
    assert_int_equal(json_int(a, "calls_pending"), 0);
    json_decref(a);
    r = call_raw(s, id, "get", NULL, 0);
    assert_problem(r, 410, "ActorDied");
    http_resp_free(r);
}

static void test_restarts(void **state)
{
    const rayd_server *s = &g_main;
    char id[ID];
    json_t *a = create_status(
        s, "{\"class\":\"Counter\",\"args\":[7],\"options\":{\"max_restarts\":1}}", 201, id);
    assert_int_equal(json_int(a, "max_restarts"), 1);
    json_decref(a);
    assert_int_equal(call_int(s, id, "incr", NULL), 8);
    http_resp *r = call_error(s, id, "crash", NULL, "TaskError");
    assert_string_equal(json_str(r->json, "method"), "crash");
    http_resp_free(r);
    /* state rebuilt from the constructor's arguments */
    assert_int_equal(call_int(s, id, "get", NULL), 7);
    a = actor_info(s, id);
    assert_string_equal(json_str(a, "state"), "ALIVE");
    assert_int_equal(json_int(a, "restarts"), 1);
    json_decref(a);
    assert_int_equal(call_int(s, id, "incr", "{\"args\":[3]}"), 10);

    /* out of restarts: DEAD, death_cause the fatal error; calls queued behind -> ActorDied */
    char sleeper[ID], p[ID], held[ID], crash[ID], behind[ID];
    pending_held(s, sleeper, p); /* keeps crash and get queued together */
    char *body = fmt("{\"args\":[{\"$ref\":\"%s\"}]}", p);
    call(s, id, "incr", body, held);
    free(body);
    call(s, id, "crash", NULL, crash);
    call(s, id, "get", NULL, behind);
    release_held(s, sleeper); /* held fails on its argument; crash runs next */
    r = tk_error(s, held, "TaskError");
    http_resp_free(r);
    r = tk_error(s, crash, "TaskError");
    assert_string_equal(json_str(r->json, "method"), "crash");
    http_resp_free(r);
    r = tk_error(s, behind, "ActorDied");
    assert_string_equal(json_str(r->json, "actor_id"), id);
    http_resp_free(r);
    a = wait_actor_state(s, id, "DEAD", 5);
    assert_int_equal(json_int(a, "restarts"), 1);
    json_t *dc = json_member(a, "death_cause");
    assert_true(json_is_object(dc));
    assert_string_equal(json_str(dc, "title"), "TaskError");
    assert_contains(json_str(dc, "detail"), "crash");
    json_decref(a);
    r = call_raw(s, id, "get", NULL, 0);
    assert_problem(r, 410, "ActorDied");
    http_resp_free(r);
    kill_actor(s, id); /* idempotent on a dead actor */

    /* default max_restarts 0: the first crash kills */
    create(s, "{\"class\":\"Counter\",\"args\":[1],\"name\":\"crashy\"}", id);
    r = call_error(s, id, "crash", NULL, "TaskError");
    http_resp_free(r);
    a = wait_actor_state(s, id, "DEAD", 5);
    assert_int_equal(json_int(a, "restarts"), 0);
    json_decref(a);
    /* a dead actor's name is freed */
    r = http_get(s, "/v1/actors/by-name/crashy");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    char id2[ID];
    create(s, "{\"class\":\"Counter\",\"name\":\"crashy\"}", id2);
    kill_actor(s, id2);

    /* -1: unlimited */
    create(s, "{\"class\":\"Counter\",\"args\":[2],\"options\":{\"max_restarts\":-1}}", id);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(call_int(s, id, "incr", NULL), 3);
        r = call_error(s, id, "crash", NULL, "TaskError");
        http_resp_free(r);
    }
    assert_int_equal(call_int(s, id, "get", NULL), 2);
    a = actor_info(s, id);
    assert_string_equal(json_str(a, "state"), "ALIVE");
    assert_int_equal(json_int(a, "restarts"), 5);
    json_decref(a);
    kill_actor(s, id);
}

static void test_failing_constructor(void **state)
{
    const rayd_server *s = &g_main;
    char id[ID], early[ID];
    create(s, "{\"class\":\"Counter\",\"args\":[\"x\"],\"name\":\"badinit\"}", id);
    /* a call accepted before it died resolves to ActorDied (or is refused with 410) */
    http_resp *r = call_raw(s, id, "get", NULL, 0);
    if (r->status == 202) {
        snprintf(early, ID, "%s", json_str(r->json, "ref"));
        http_resp *e = tk_error(s, early, "ActorDied");
        http_resp_free(e);
    } else {
        assert_problem(r, 410, "ActorDied");
    }
    http_resp_free(r);
    json_t *a = wait_actor_state(s, id, "DEAD", 5);
    json_t *dc = json_member(a, "death_cause");
    assert_true(json_is_object(dc));
    assert_string_equal(json_str(dc, "title"), "TaskError");
    assert_contains(json_str(dc, "detail"), "Counter.__init__ failed");
    json_decref(a);
    r = call_raw(s, id, "incr", "{\"args\":[1]}", 0);
    assert_problem(r, 410, "ActorDied");
    http_resp_free(r);
    r = http_get(s, "/v1/actors/by-name/badinit");
    assert_problem(r, 404, "NotFound");
    http_resp_free(r);
    kill_actor(s, id);

    /* even with restarts left: the constructor itself fails */
    create(s, "{\"class\":\"Counter\",\"args\":[1.5],\"options\":{\"max_restarts\":2}}", id);
    a = wait_actor_state(s, id, "DEAD", 5);
    dc = json_member(a, "death_cause");
    assert_contains(json_str(dc, "detail"), "Counter.__init__ failed");
    json_decref(a);

    /* a constructor whose ref argument holds an error */
    char bad[ID];
    tk_submit(s, "{\"function\":\"fail\",\"args\":[\"no start\"]}", NULL, bad);
    char *body = fmt("{\"class\":\"Counter\",\"args\":[{\"$ref\":\"%s\"}]}", bad);
    create(s, body, id);
    free(body);
    a = wait_actor_state(s, id, "DEAD", 5);
    dc = json_member(a, "death_cause");
    assert_true(json_is_object(dc));
    json_decref(a);

    /* a restart whose constructor ref argument was freed meanwhile: the server survives and
     * either rebuilds the state from the value or lets the actor die with a cause (the notes
     * do not decide) */
    char obj[ID];
    put_object(s, "application/json", "5", 1, obj);
    body = fmt("{\"class\":\"Counter\",\"args\":[{\"$ref\":\"%s\"}],"
               "\"options\":{\"max_restarts\":1}}",
               obj);
    create(s, body, id);
    free(body);
    assert_int_equal(call_int(s, id, "get", NULL), 5);
    char path[256];
    snprintf(path, sizeof path, "/v1/objects/%s", obj);
    r = http_delete(s, path);
    assert_status(r, 204);
    http_resp_free(r);
    r = call_error(s, id, "crash", NULL, "TaskError");
    http_resp_free(r);
    r = call_raw(s, id, "get", NULL, 10);
    if (r->status == 200) {
        tk_assert_json_eq(r->json, "5");
    } else {
        assert_true(r->status == 424 || r->status == 410);
        assert_string_equal(json_str(r->json, "title"), "ActorDied");
        a = wait_actor_state(s, id, "DEAD", 5);
        assert_true(json_is_object(json_member(a, "death_cause")));
        json_decref(a);
    }
    http_resp_free(r);
    kill_actor(s, id);
}

static void test_max_pending_calls(void **state)
{
    const rayd_server *s = &g_main;
    char id[ID], p[ID], r1[ID], r2[ID], r4[ID];
    json_t *a =
        create_status(s, "{\"class\":\"Counter\",\"options\":{\"max_pending_calls\":2}}", 201, id);
    assert_int_equal(json_int(a, "max_pending_calls"), 2);
    json_decref(a);
    assert_int_equal(call_int(s, id, "get", NULL), 0);
    char sleeper[ID];
    pending_held(s, sleeper, p);
    char *body = fmt("{\"args\":[{\"$ref\":\"%s\"}]}", p);
    call(s, id, "incr", body, r1);
    free(body);
    call(s, id, "incr", "{\"args\":[1]}", r2);
    http_resp *r = call_raw(s, id, "incr", "{\"args\":[100]}", 0);
    assert_problem(r, 429, "TooManyRequests");
    assert_header_eq(r, "Retry-After", "1");
    http_resp_free(r);
    r = call_raw(s, id, "get", NULL, 1);
    assert_problem(r, 429, "TooManyRequests");
    http_resp_free(r);
    /* the refused calls did not run; once the queue drains calls are accepted again (the
     * held argument fails, so r1 fails without running) */
    release_held(s, sleeper);
    r = tk_error(s, r1, "TaskError");
    http_resp_free(r);
    json_t *v = tk_value(s, r2);
    tk_assert_json_eq(v, "1");
    json_decref(v);
    call(s, id, "incr", "{\"args\":[1]}", r4);
    v = tk_value(s, r4);
    tk_assert_json_eq(v, "2");
    json_decref(v);
    json_decref(wait_calls_done(s, id, 4));
    kill_actor(s, id);
}

/* ---------------------------------------------------------------- listing and status */

static void test_list_paging_and_filters(void **state)
{
    const rayd_server *s = &g_fresh;
    enum { NC = 5, NK = 3 };
    char ids[NC + NK][ID];
    for (int i = 0; i < NC + NK; i++) {
        char *body = fmt("{\"class\":\"%s\",\"name\":\"l%d\"}", i % 2 ? "KV" : "Counter", i);
        create(s, body, ids[i]);
        free(body);
    }
    /* 0,2,4,6 are Counters (and 7 below), 1,3,5 KV */
    char extra[ID];
    create(s, "{\"class\":\"Counter\"}", extra);
    kill_actor(s, ids[0]);
    kill_actor(s, ids[3]);
    for (int i = 0; i < NC + NK; i++)
        if (i != 0 && i != 3)
            json_decref(call_value(s, ids[i], i % 2 ? "size" : "get", NULL));

    /* everything, in creation order */
    http_resp *r = http_get(s, "/v1/actors");
    assert_status(r, 200);
    json_t *list = json_member(r->json, "actors");
    assert_int_equal(json_array_size(list), NC + NK + 1);
    assert_true(json_is_null(json_member(r->json, "next_cursor")));
    for (int i = 0; i < NC + NK; i++) {
        json_t *e = json_array_get(list, (size_t)i);
        assert_actor_info(e);
        assert_string_equal(json_str(e, "actor_id"), ids[i]);
    }
    assert_true(json_is_null(json_member(json_array_get(list, NC + NK), "name")));
    http_resp_free(r);

    /* paging with limit=2 */
    char cursor[256] = "";
    int seen = 0, pages = 0;
    for (;;) {
        r = cursor[0] ? tk_getf(s, "/v1/actors?limit=2&cursor=%s", cursor)
                      : http_get(s, "/v1/actors?limit=2");
        assert_status(r, 200);
        list = json_member(r->json, "actors");
        assert_true(json_array_size(list) <= 2);
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e)
        {
            const char *want = seen < NC + NK ? ids[seen] : extra;
            assert_string_equal(json_str(e, "actor_id"), want);
            seen++;
        }
        pages++;
        json_t *nc = json_member(r->json, "next_cursor");
        if (json_is_null(nc)) {
            http_resp_free(r);
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", json_string_value(nc));
        http_resp_free(r);
        assert_true(pages < 20);
    }
    assert_int_equal(seen, NC + NK + 1);
    assert_int_equal(pages, 5);

    /* filters */
    r = http_get(s, "/v1/actors?class=Counter");
    assert_status(r, 200);
    list = json_member(r->json, "actors");
    assert_int_equal(json_array_size(list), 5); /* 0, 2, 4, 6, extra */
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) assert_string_equal(json_str(e, "class"), "Counter");
    http_resp_free(r);

    r = http_get(s, "/v1/actors?state=DEAD");
    assert_status(r, 200);
    list = json_member(r->json, "actors");
    assert_int_equal(json_array_size(list), 2);
    assert_string_equal(json_str(json_array_get(list, 0), "actor_id"), ids[0]);
    assert_string_equal(json_str(json_array_get(list, 1), "actor_id"), ids[3]);
    json_array_foreach(list, i, e) assert_true(json_is_object(json_member(e, "death_cause")));
    http_resp_free(r);

    r = http_get(s, "/v1/actors?state=ALIVE&class=KV");
    assert_status(r, 200);
    list = json_member(r->json, "actors");
    assert_int_equal(json_array_size(list), 3); /* 1, 5, 7 */
    assert_string_equal(json_str(json_array_get(list, 0), "actor_id"), ids[1]);
    assert_string_equal(json_str(json_array_get(list, 1), "actor_id"), ids[5]);
    assert_string_equal(json_str(json_array_get(list, 2), "actor_id"), ids[7]);
    http_resp_free(r);

    r = http_get(s, "/v1/actors?state=ALIVE&class=Counter&limit=1");
    assert_status(r, 200);
    list = json_member(r->json, "actors");
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(json_str(json_array_get(list, 0), "actor_id"), ids[2]);
    assert_true(json_is_string(json_member(r->json, "next_cursor")));
    http_resp_free(r);

    r = http_get(s, "/v1/actors?state=RESTARTING");
    assert_status(r, 200);
    assert_int_equal(json_array_size(json_member(r->json, "actors")), 0);
    assert_true(json_is_null(json_member(r->json, "next_cursor")));
    http_resp_free(r);

    r = http_get(s, "/v1/actors?limit=1000");
    assert_status(r, 200);
    http_resp_free(r);

    static const char *const bad[] = {
        "/v1/actors?limit=0",
        "/v1/actors?limit=1001",
        "/v1/actors?limit=x",
        "/v1/actors?limit=-1",
        "/v1/actors?state=BOGUS",
        "/v1/actors?state=alive",
        "/v1/actors?cursor=%%%",
        "/v1/actors?cursor=zzzz-not-a-cursor",
        NULL,
    };
    for (size_t k = 0; bad[k]; k++) {
        r = http_get(s, bad[k]);
        if (r->status != 400)
            fprintf(stderr, "GET %s\n", bad[k]);
        assert_problem(r, 400, "BadRequest");
        http_resp_free(r);
    }
}

static void test_status_counts(void **state)
{
    const rayd_server *s = &g_fresh;
    json_t *st = status_actors(s);
    assert_int_equal(by_state(st, "PENDING_CREATION"), 0);
    assert_int_equal(by_state(st, "ALIVE"), 0);
    assert_int_equal(by_state(st, "RESTARTING"), 0);
    assert_int_equal(by_state(st, "DEAD"), 0);
    assert_int_equal(json_int(st, "calls"), 0);
    assert_int_equal(json_int(st, "calls_done"), 0);
    assert_int_equal(json_int(st, "restarts"), 0);
    json_decref(st);

    char a[ID], b[ID], c[ID];
    create(s, "{\"class\":\"Counter\",\"options\":{\"max_restarts\":3}}", a);
    create(s, "{\"class\":\"KV\"}", b);
    create(s, "{\"class\":\"Counter\",\"args\":[\"x\"]}", c);
    json_decref(wait_actor_state(s, c, "DEAD", 5));
    assert_int_equal(call_int(s, a, "incr", NULL), 1);
    assert_int_equal(call_int(s, a, "incr", NULL), 2);
    json_decref(call_value(s, b, "size", NULL));
    http_resp *r = call_error(s, a, "crash", NULL, "TaskError");
    http_resp_free(r);
    assert_int_equal(call_int(s, a, "get", NULL), 0);
    json_decref(wait_calls_done(s, a, 4));
    json_decref(wait_calls_done(s, b, 1));
    st = status_actors(s);
    assert_int_equal(by_state(st, "ALIVE"), 2);
    assert_int_equal(by_state(st, "DEAD"), 1);
    assert_int_equal(by_state(st, "PENDING_CREATION"), 0);
    assert_int_equal(json_int(st, "calls"), 5);
    assert_int_equal(json_int(st, "calls_done"), 5);
    assert_int_equal(json_int(st, "restarts"), 1);
    json_decref(st);

    kill_actor(s, b);
    st = status_actors(s);
    assert_int_equal(by_state(st, "ALIVE"), 1);
    assert_int_equal(by_state(st, "DEAD"), 2);
    json_decref(st);
    /* refused calls are not counted */
    r = call_raw(s, b, "size", NULL, 0);
    assert_problem(r, 410, "ActorDied");
    http_resp_free(r);
    st = status_actors(s);
    assert_int_equal(json_int(st, "calls"), 5);
    json_decref(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_example),
        cmocka_unit_test(test_unknown_actor),
        cmocka_unit_test(test_unknown_class_and_method),
        cmocka_unit_test(test_create_validation),
        cmocka_unit_test(test_call_validation),
        cmocka_unit_test(test_name_taken_and_get_if_exists),
        cmocka_unit_test(test_get_if_exists_concurrent),
        cmocka_unit_test(test_wrong_argument_types),
        cmocka_unit_test(test_ordering_1000),
        cmocka_unit_test(test_pending_ref_holds_back),
        cmocka_unit_test(test_errored_ref_argument),
        cmocka_unit_test(test_results_chain_into_tasks),
        cmocka_unit_test(test_kv),
        cmocka_unit_test(test_queue),
        cmocka_unit_test(test_accumulator),
        cmocka_unit_test(test_actor_classes),
        cmocka_unit_test(test_kill_with_queued_calls),
        cmocka_unit_test(test_restarts),
        cmocka_unit_test(test_failing_constructor),
        cmocka_unit_test(test_max_pending_calls),
        cmocka_unit_test_setup_teardown(test_list_paging_and_filters, fresh_setup, fresh_teardown),
        cmocka_unit_test_setup_teardown(test_status_counts, fresh_setup, fresh_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
