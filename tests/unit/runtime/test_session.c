/* Unit tests for runtime/session.c: leases (opening bounds, renewals, expiry by a given
 * clock, the cost of expiring), and what a session's end does to its objects, tasks and
 * actors, with a real store, task system and actor system (no HTTP). Time is the `now`
 * each call is given, so nothing here waits for a clock. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/actor.h"
#include "runtime/function.h"
#include "runtime/object_store.h"
#include "runtime/scheduler.h"
#include "runtime/session.h"
#include "runtime/task.h"

typedef struct env {
    rt_store *store;
    rt_registry *registry;
    rt_scheduler *scheduler;
    rt_tasks *tasks;
    rt_actors *actors;
    rt_sessions *sessions;
} env;

static env *env_new(void **state, size_t max_sessions, double max_ttl)
{
    env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    e->store = rt_store_new(NULL);
    e->registry = rt_registry_new();
    e->scheduler = rt_scheduler_new(1);
    assert_non_null(e->store);
    assert_non_null(e->registry);
    assert_non_null(e->scheduler);
    assert_int_equal(rt_builtins_register(e->registry), RT_OK);
    rt_tasks_config tc = {.max_pending = 1000, .max_kept = 1000};
    e->tasks = rt_tasks_new(e->store, e->registry, e->scheduler, &tc);
    rt_actors_config ac = {.max_kept_dead = 1000};
    e->actors = rt_actors_new(e->store, e->scheduler, &ac);
    assert_non_null(e->tasks);
    assert_non_null(e->actors);
    assert_int_equal(rt_builtin_classes_register(e->actors), RT_OK);
    rt_sessions_config sc = {.max_sessions = max_sessions, .max_ttl = max_ttl};
    e->sessions = rt_sessions_new(e->store, e->tasks, e->actors, &sc);
    assert_non_null(e->sessions);
    *state = e;
    return e;
}

/* Teardown in the service's order; also runs after a failed assertion. */
static int env_teardown(void **state)
{
    env *e = *state;
    if (!e)
        return 0;
    rt_sessions_free(e->sessions);
    rt_actors_stop(e->actors);
    rt_tasks_cancel_all(e->tasks);
    rt_scheduler_free(e->scheduler);
    rt_actors_free(e->actors);
    rt_tasks_free(e->tasks);
    rt_registry_free(e->registry);
    rt_store_free(e->store);
    free(e);
    *state = NULL;
    return 0;
}

static void open_ok(env *e, double ttl, double now, char id[RT_REF_SIZE])
{
    rt_session_info info;
    assert_int_equal(rt_session_open(e->sessions, ttl, now, &info), RT_OK);
    assert_true(info.ttl == ttl);
    assert_true(info.expires_at == now + ttl);
    memcpy(id, info.session_id, RT_REF_SIZE);
}

static bool is_open(env *e, const char *id)
{
    rt_session_info info;
    return rt_session_get(e->sessions, id, &info) == RT_OK;
}

static void put(env *e, char ref[RT_REF_SIZE])
{
    rt_buf *b = rt_buf_new(4, NULL);
    assert_non_null(b);
    memcpy(b->data, "data", 4);
    assert_int_equal(rt_store_put(e->store, b, 0, ref), RT_OK);
}

static rt_object_state state_of(env *e, const char *ref)
{
    rt_object_view v;
    rt_store_peek_file(e->store, ref, &v);
    rt_object_state st = v.state;
    rt_object_view_release(&v);
    return st;
}

/* ---- leases -------------------------------------------------------------------------- */

static void test_open_bounds(void **state)
{
    env *e = env_new(state, 2, 60);
    rt_session_info info;
    assert_int_equal(rt_session_open(e->sessions, 0, 0, &info), RT_EINVAL);
    assert_int_equal(rt_session_open(e->sessions, -1, 0, &info), RT_EINVAL);
    assert_int_equal(rt_session_open(e->sessions, NAN, 0, &info), RT_EINVAL);
    assert_int_equal(rt_session_open(e->sessions, INFINITY, 0, &info), RT_EINVAL);
    assert_int_equal(rt_session_open(e->sessions, 60.5, 0, &info), RT_EINVAL);
    char a[RT_REF_SIZE], b[RT_REF_SIZE];
    open_ok(e, 60, 0, a);
    open_ok(e, 0.5, 0, b);
    assert_string_not_equal(a, b);
    assert_int_equal(rt_session_open(e->sessions, 1, 0, &info), RT_ELIMIT);
    assert_int_equal(rt_session_close(e->sessions, a), RT_OK);
    assert_int_equal(rt_session_close(e->sessions, a), RT_ENOTFOUND);
    open_ok(e, 1, 0, a);
    assert_int_equal(rt_session_get(e->sessions, "nope", &info), RT_ENOTFOUND);
    assert_int_equal(rt_session_renew(e->sessions, "nope", 1), RT_ENOTFOUND);
    rt_sessions_stats st;
    rt_sessions_get_stats(e->sessions, &st);
    assert_int_equal(st.open, 2);
    assert_int_equal(st.opened, 3);
    assert_int_equal(st.closed, 1);
}

static void test_expiry_follows_renewals(void **state)
{
    env *e = env_new(state, 10, 100);
    char long_one[RT_REF_SIZE], short_one[RT_REF_SIZE];
    open_ok(e, 10, 1000, long_one);
    open_ok(e, 5, 1000, short_one);
    assert_int_equal(rt_sessions_expire(e->sessions, 1004), 0);
    assert_int_equal(rt_session_renew(e->sessions, short_one, 1003), RT_OK);
    rt_session_info info;
    assert_int_equal(rt_session_get(e->sessions, short_one, &info), RT_OK);
    assert_true(info.expires_at == 1008);
    assert_int_equal(info.renewals, 1);
    /* A renewal never moves the end back. */
    assert_int_equal(rt_session_renew(e->sessions, short_one, 1001), RT_OK);
    assert_int_equal(rt_session_get(e->sessions, short_one, &info), RT_OK);
    assert_true(info.expires_at == 1008);
    /* Its first end passed, but it was renewed: still open. */
    assert_int_equal(rt_sessions_expire(e->sessions, 1005.5), 0);
    assert_true(is_open(e, short_one));
    assert_int_equal(rt_sessions_expire(e->sessions, 1008), 1);
    assert_false(is_open(e, short_one));
    assert_true(is_open(e, long_one));
    assert_int_equal(rt_sessions_expire(e->sessions, 1010), 1);
    assert_false(is_open(e, long_one));
    rt_sessions_stats st;
    rt_sessions_get_stats(e->sessions, &st);
    assert_int_equal(st.expired, 2);
    assert_int_equal(st.open, 0);
}

static void test_expire_cost_is_what_is_due(void **state)
{
    enum { N = 2000 };
    env *e = env_new(state, N, 1000);
    char id[RT_REF_SIZE], first[RT_REF_SIZE];
    for (int i = 0; i < N; i++)
        open_ok(e, 100 + i % 7, 0, i == 0 ? first : id);
    uint64_t v0 = rt__sessions_expire_visits(e->sessions);
    for (int i = 0; i < 100; i++)
        assert_int_equal(rt_sessions_expire(e->sessions, 50), 0);
    /* Nothing due: one look at the top per call, whatever the number of sessions. */
    assert_int_equal(rt__sessions_expire_visits(e->sessions) - v0, 100);
    /* A renewed top costs one more look when its first end comes, then sinks. */
    assert_int_equal(rt_session_renew(e->sessions, first, 500), RT_OK);
    v0 = rt__sessions_expire_visits(e->sessions);
    assert_int_equal(rt_sessions_expire(e->sessions, 106), N - 1);
    assert_true(rt__sessions_expire_visits(e->sessions) - v0 <= N + 2);
    assert_true(is_open(e, first));
    assert_int_equal(rt_sessions_expire(e->sessions, 600), 1);
}

/* ---- what a session's end does --------------------------------------------------------- */

static void test_end_frees_objects(void **state)
{
    env *e = env_new(state, 10, 100);
    char sid[RT_REF_SIZE], refs[3][RT_REF_SIZE], pinned[RT_REF_SIZE], outsider[RT_REF_SIZE];
    open_ok(e, 10, 0, sid);
    for (int i = 0; i < 3; i++)
        put(e, refs[i]);
    put(e, pinned);
    put(e, outsider);
    assert_int_equal(rt_session_add_objects(e->sessions, sid, refs, 3), RT_OK);
    assert_int_equal(rt_session_add_objects(e->sessions, sid, &pinned, 1), RT_OK);
    assert_int_equal(rt_store_pin(e->store, pinned), RT_OK); /* as a dependent task does */
    rt_session_info info;
    assert_int_equal(rt_session_get(e->sessions, sid, &info), RT_OK);
    assert_int_equal(info.objects, 4);
    assert_int_equal(rt_sessions_expire(e->sessions, 10), 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(state_of(e, refs[i]), RT_OBJ_LOST);
    assert_int_equal(state_of(e, pinned), RT_OBJ_READY); /* until its last pin goes */
    assert_int_equal(state_of(e, outsider), RT_OBJ_READY);
    assert_int_equal(rt_store_unpin(e->store, pinned), RT_OK);
    assert_int_equal(state_of(e, pinned), RT_OBJ_LOST);
    rt_sessions_stats st;
    rt_sessions_get_stats(e->sessions, &st);
    assert_int_equal(st.objects_released, 4);
}

static void test_added_after_close_is_cleaned_up(void **state)
{
    env *e = env_new(state, 10, 100);
    char sid[RT_REF_SIZE], ref[RT_REF_SIZE];
    open_ok(e, 10, 0, sid);
    assert_int_equal(rt_session_close(e->sessions, sid), RT_OK);
    put(e, ref);
    assert_int_equal(rt_session_add_objects(e->sessions, sid, &ref, 1), RT_ENOTFOUND);
    assert_int_equal(state_of(e, ref), RT_OBJ_LOST);
}

static void test_end_cancels_tasks_and_kills_actors(void **state)
{
    env *e = env_new(state, 10, 100);
    char sid[RT_REF_SIZE], gate[RT_REF_SIZE], task_id[RT_REF_SIZE], result[RT_REF_SIZE];
    open_ok(e, 10, 0, sid);
    /* A task that waits for an object nobody resolves: it stays pending. */
    assert_int_equal(rt_store_create_pending(e->store, gate), RT_OK);
    json_t *args = json_pack("[{s:s}]", "$ref", gate);
    rt_task_spec spec = {.function = "echo", .args = args, .num_returns = 1, .max_retries = 0};
    char err[128];
    assert_int_equal(rt_task_submit(e->tasks, &spec, task_id, &result, err, sizeof err), RT_OK);
    json_decref(args);
    assert_int_equal(rt_session_add_task(e->sessions, sid, task_id), RT_OK);
    assert_int_equal(rt_session_add_objects(e->sessions, sid, &result, 1), RT_OK);

    rt_actor_spec as = {.class_name = "Counter", .max_pending_calls = -1};
    rt_actor_info mine, detached;
    bool created;
    assert_int_equal(rt_actor_create(e->actors, &as, &mine, &created, err, sizeof err), RT_OK);
    assert_int_equal(rt_actor_create(e->actors, &as, &detached, &created, err, sizeof err),
                     RT_OK);
    assert_int_equal(rt_session_add_actor(e->sessions, sid, mine.actor_id), RT_OK);

    assert_int_equal(rt_session_close(e->sessions, sid), RT_OK);
    rt_task_info ti;
    assert_int_equal(rt_task_get(e->tasks, task_id, &ti), RT_OK);
    assert_int_equal(ti.state, RT_TASK_CANCELLED);
    rt_task_info_release(&ti);
    assert_int_equal(state_of(e, result), RT_OBJ_LOST);
    assert_int_equal(state_of(e, gate), RT_OBJ_PENDING); /* not the session's */
    rt_actor_info ai;
    assert_int_equal(rt_actor_get(e->actors, mine.actor_id, &ai), RT_OK);
    assert_int_equal(ai.state, RT_ACTOR_DEAD);
    rt_actor_info_release(&ai);
    assert_int_equal(rt_actor_get(e->actors, detached.actor_id, &ai), RT_OK);
    assert_int_not_equal(ai.state, RT_ACTOR_DEAD);
    rt_actor_info_release(&ai);
    rt_actor_info_release(&mine);
    rt_actor_info_release(&detached);
    rt_sessions_stats st;
    rt_sessions_get_stats(e->sessions, &st);
    assert_int_equal(st.tasks_cancelled, 1);
    assert_int_equal(st.actors_killed, 1);
    rt_buf *b = rt_buf_new(1, NULL);
    assert_int_equal(rt_store_resolve(e->store, gate, b), RT_OK);
}

static void test_lists_are_pruned(void **state)
{
    env *e = env_new(state, 10, 100);
    char sid[RT_REF_SIZE], ref[RT_REF_SIZE];
    open_ok(e, 10, 0, sid);
    /* Objects freed by the client one by one: the session forgets them as it goes. */
    for (int i = 0; i < 10000; i++) {
        put(e, ref);
        assert_int_equal(rt_session_add_objects(e->sessions, sid, &ref, 1), RT_OK);
        assert_int_equal(rt_store_delete(e->store, ref), RT_OK);
    }
    rt_session_info info;
    assert_int_equal(rt_session_get(e->sessions, sid, &info), RT_OK);
    assert_true(info.objects <= 128);
    /* Live ones are all kept. */
    char live[300][RT_REF_SIZE];
    for (int i = 0; i < 300; i++)
        put(e, live[i]);
    assert_int_equal(rt_session_add_objects(e->sessions, sid, live, 300), RT_OK);
    assert_int_equal(rt_session_close(e->sessions, sid), RT_OK);
    for (int i = 0; i < 300; i++)
        assert_int_equal(state_of(e, live[i]), RT_OBJ_LOST);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_open_bounds, env_teardown),
        cmocka_unit_test_teardown(test_expiry_follows_renewals, env_teardown),
        cmocka_unit_test_teardown(test_expire_cost_is_what_is_due, env_teardown),
        cmocka_unit_test_teardown(test_end_frees_objects, env_teardown),
        cmocka_unit_test_teardown(test_added_after_close_is_cleaned_up, env_teardown),
        cmocka_unit_test_teardown(test_end_cancels_tasks_and_kills_actors, env_teardown),
        cmocka_unit_test_teardown(test_lists_are_pruned, env_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
