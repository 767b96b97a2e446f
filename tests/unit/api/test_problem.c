/* Tests api/problem.c's table of kinds: sorted (the lookup is a binary search), every
 * stored error kind has a page, and a problem's type is its kind's page; and a cause chain
 * cut short counts what it leaves out, a count carried from another node included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "api/problem.h"

static void test_kinds_sorted_and_complete(void **state)
{
    (void)state;
    size_t n = 0;
    const api_problem_kind *kinds = api_problem_kinds(&n);
    assert_true(n > 0);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            assert_true(strcmp(kinds[i - 1].title, kinds[i].title) < 0);
        assert_ptr_equal(api_problem_kind_find(kinds[i].title), &kinds[i]);
        assert_true(*kinds[i].status && *kinds[i].meaning && *kinds[i].action);
    }
    assert_null(api_problem_kind_find("Teapot"));
    assert_null(api_problem_kind_find(""));
}

static void test_every_error_kind_has_a_page(void **state)
{
    (void)state;
    rt_error_kind all[] = {RT_ERR_TASK_ERROR, RT_ERR_ACTOR_DIED, RT_ERR_TASK_CANCELLED,
                           RT_ERR_WORKER_UNAVAILABLE, RT_ERR_OBJECT_LOST};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        assert_non_null(api_problem_kind_find(rt_error_kind_name(all[i])));
}

static void test_type_is_the_page(void **state)
{
    (void)state;
    json_t *p = api_problem_new(404, "NotFound", "gone");
    assert_string_equal(json_string_value(json_object_get(p, "type")), "/problems/NotFound");
    json_decref(p);
    size_t len = 0;
    char *page = api_problem_kind_page(api_problem_kind_find("ObjectStoreFull"), &len);
    assert_non_null(page);
    assert_int_equal(strlen(page), len);
    assert_non_null(strstr(page, "<h1>ObjectStoreFull</h1>"));
    assert_non_null(strstr(page, "507"));
    free(page);
    /* Text with markup characters is escaped. */
    page = api_problem_kind_page(api_problem_kind_find("Unauthorized"), &len);
    assert_non_null(page);
    assert_non_null(strstr(page, "Bearer &lt;token&gt;"));
    free(page);
    page = api_problem_index_page(&len);
    assert_non_null(page);
    assert_non_null(strstr(page, "href=\"/problems/TaskError\""));
    free(page);
}

static void test_causes_omitted_adds_a_carried_count(void **state)
{
    (void)state;
    /* 40 levels, the deepest rebuilt from another node's answer that had left 100 out. */
    json_t *carried = json_pack("{s:i}", "causes_omitted", 100);
    rt_error *chain = rt_error_new(RT_ERR_TASK_ERROR, "deepest shown there", carried, NULL);
    json_decref(carried);
    for (int i = 1; i < 40; i++) {
        rt_error *outer = rt_error_new(RT_ERR_TASK_ERROR, "link", NULL, chain);
        rt_error_decref(chain);
        chain = outer;
    }
    json_t *p = api_problem_from_error(chain, "o_ref");
    json_t *last = p;
    int depth = 0;
    while (json_object_get(last, "cause")) {
        last = json_object_get(last, "cause");
        depth++;
    }
    assert_int_equal(depth, API_PROBLEM_CAUSES_MAX - 1);
    /* 8 levels not shown here, and the 100 the other node had left out */
    assert_int_equal(json_integer_value(json_object_get(last, "causes_omitted")),
                     40 - API_PROBLEM_CAUSES_MAX + 100);
    json_decref(p);
    rt_error_decref(chain);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds_sorted_and_complete),
        cmocka_unit_test(test_every_error_kind_has_a_page),
        cmocka_unit_test(test_type_is_the_page),
        cmocka_unit_test(test_causes_omitted_adds_a_carried_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
