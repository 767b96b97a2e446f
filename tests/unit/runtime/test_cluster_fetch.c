/* Unit tests for runtime/cluster_fetch.c's pure parts: a stored error rebuilt from the
 * problem+json body another node answered (kind, message, fields, the whole cause chain),
 * and the owner-died error. The fetching itself is tested across real nodes in
 * tests/cluster/test_cluster_tasks.c and test_cluster_failure.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/cluster_fetch.h"

static void test_error_from_problem_chain(void **state)
{
    (void)state;
    json_t *p = json_loads(
        "{\"type\":\"https://rayd.dev/problems/TaskError\",\"title\":\"TaskError\","
        "\"status\":424,\"detail\":\"outer failed\",\"ref\":\"o2-x\",\"task_id\":\"t2-y\","
        "\"instance\":\"/v1/objects/o2-x\",\"cause\":{\"title\":\"ObjectLost\",\"status\":410,"
        "\"detail\":\"gone\",\"lost_reason\":\"owner_died\",\"owner_died\":true,"
        "\"cause\":{\"title\":\"SomethingNew\",\"detail\":\"deepest\"}}}",
        0, NULL);
    assert_non_null(p);
    rt_error *e = rt_fetch_error_from_problem(p);
    json_decref(p);
    assert_non_null(e);
    assert_int_equal(rt_error_kind_of(e), RT_ERR_TASK_ERROR);
    assert_string_equal(rt_error_message(e), "outer failed");
    json_t *f = rt_error_fields(e);
    assert_string_equal(json_string_value(json_object_get(f, "task_id")), "t2-y");
    assert_string_equal(json_string_value(json_object_get(f, "ref")), "o2-x");
    assert_null(json_object_get(f, "type"));
    assert_null(json_object_get(f, "status"));
    assert_null(json_object_get(f, "instance"));
    assert_null(json_object_get(f, "cause"));
    rt_error *c = rt_error_cause(e);
    assert_non_null(c);
    assert_int_equal(rt_error_kind_of(c), RT_ERR_OBJECT_LOST);
    assert_string_equal(rt_error_message(c), "gone");
    assert_true(json_is_true(json_object_get(rt_error_fields(c), "owner_died")));
    rt_error *d = rt_error_cause(c);
    assert_non_null(d);
    assert_int_equal(rt_error_kind_of(d), RT_ERR_TASK_ERROR); /* unknown title */
    assert_string_equal(rt_error_message(d), "deepest");
    assert_null(rt_error_cause(d));
    rt_error_decref(e);
}

static void test_error_from_non_problem(void **state)
{
    (void)state;
    json_t *p = json_loads("[1,2]", 0, NULL);
    assert_null(rt_fetch_error_from_problem(p));
    json_decref(p);
    assert_null(rt_fetch_error_from_problem(NULL));
}

static void test_owner_died_error(void **state)
{
    (void)state;
    rt_error *e = rt_fetch_owner_died_error("o3-abc", "3");
    assert_non_null(e);
    assert_int_equal(rt_error_kind_of(e), RT_ERR_OBJECT_LOST);
    json_t *f = rt_error_fields(e);
    assert_string_equal(json_string_value(json_object_get(f, "lost_reason")), "owner_died");
    assert_string_equal(json_string_value(json_object_get(f, "owner")), "3");
    assert_string_equal(json_string_value(json_object_get(f, "ref")), "o3-abc");
    assert_true(json_is_true(json_object_get(f, "owner_died")));
    assert_non_null(strstr(rt_error_message(e), "died"));
    rt_error_decref(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_from_problem_chain),
        cmocka_unit_test(test_error_from_non_problem),
        cmocka_unit_test(test_owner_died_error),
    };
    return cmocka_run_group_tests_name("cluster_fetch", tests, NULL, NULL);
}
