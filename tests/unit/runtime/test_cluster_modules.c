/* Unit tests for runtime/cluster_modules.c: reading the "modules" field of a node's heartbeat
 * record (what another node wrote: every name checked, other members dropped, anything
 * malformed refused as a whole), and finding which module provides a function or class. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/cluster_modules.h"

static json_t *parse(const char *text)
{
    return rt_cluster_modules_parse(text, strlen(text));
}

static void test_parse_and_find(void **state)
{
    (void)state;
    json_t *m = parse("[{\"name\":\"text.so\",\"functions\":[\"text.upper\",\"text.count\"],"
                      "\"classes\":[\"text.Buffer\"],\"path\":\"/opt/text.so\"},"
                      "{\"name\":\"math.so\",\"functions\":[\"math.add\"]}]");
    assert_non_null(m);
    assert_int_equal(json_array_size(m), 2);
    /* unknown members are dropped; absent lists are empty */
    assert_null(json_object_get(json_array_get(m, 0), "path"));
    assert_int_equal(json_array_size(json_object_get(json_array_get(m, 1), "classes")), 0);
    assert_string_equal(rt_cluster_modules_find(m, "text.count", false), "text.so");
    assert_string_equal(rt_cluster_modules_find(m, "math.add", false), "math.so");
    assert_string_equal(rt_cluster_modules_find(m, "text.Buffer", true), "text.so");
    /* functions and classes are looked up in their own lists */
    assert_null(rt_cluster_modules_find(m, "text.Buffer", false));
    assert_null(rt_cluster_modules_find(m, "text.upper", true));
    assert_null(rt_cluster_modules_find(m, "text", false));
    assert_null(rt_cluster_modules_find(m, "", false));
    assert_null(rt_cluster_modules_find(m, NULL, false));
    assert_null(rt_cluster_modules_find(NULL, "text.upper", false));
    json_decref(m);

    m = parse("[]"); /* a node without modules */
    assert_non_null(m);
    assert_int_equal(json_array_size(m), 0);
    assert_null(rt_cluster_modules_find(m, "text.upper", false));
    json_decref(m);
}

static void test_parse_refuses_malformed(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "not json",
        "{}",
        "\"text.so\"",
        "[1]",
        "[{}]",                                            /* no name */
        "[{\"name\":\"\"}]",                               /* empty name */
        "[{\"name\":7}]",
        "[{\"name\":\"a\\u0001b\"}]",                      /* control character */
        "[{\"name\":\"t\",\"functions\":\"text.upper\"}]", /* not a list */
        "[{\"name\":\"t\",\"functions\":[7]}]",
        "[{\"name\":\"t\",\"functions\":[\"bad name\"]}]", /* not [A-Za-z0-9_.-] */
        "[{\"name\":\"t\",\"classes\":[\"a/b\"]}]",
        "[{\"name\":\"t\",\"classes\":[\"\"]}]",
        "[{\"name\":\"t\",\"name\":\"u\"}]", /* duplicate member */
        "[{\"name\":\"t\"}] trailing",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *m = parse(bad[i]);
        if (m)
            fail_msg("'%s' was accepted", bad[i]);
    }
    assert_null(rt_cluster_modules_parse(NULL, 0));
    /* the length is the text's: a field cut short is refused */
    const char *whole = "[{\"name\":\"t\"}]";
    assert_null(rt_cluster_modules_parse(whole, strlen(whole) - 1));
}

static void test_parse_limits(void **state)
{
    (void)state;
    /* a module name at the limit passes, one byte more is refused */
    char name[RT_CLUSTER_MODULE_NAME_MAX + 2];
    memset(name, 'm', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    char text[sizeof(name) + 32];
    snprintf(text, sizeof(text), "[{\"name\":\"%s\"}]", name + 1);
    json_t *m = parse(text);
    assert_non_null(m);
    json_decref(m);
    snprintf(text, sizeof(text), "[{\"name\":\"%s\"}]", name);
    assert_null(parse(text));

    /* RT_CLUSTER_MODULES_MAX modules pass, one more is refused */
    size_t size = (RT_CLUSTER_MODULES_MAX + 1) * 16 + 8, used = 0;
    char *many = malloc(size);
    assert_non_null(many);
    used += (size_t)snprintf(many, size, "[");
    for (int i = 0; i < RT_CLUSTER_MODULES_MAX; i++)
        used += (size_t)snprintf(many + used, size - used, "%s{\"name\":\"m%d\"}", i ? "," : "",
                                 i);
    snprintf(many + used, size - used, "]");
    m = parse(many);
    assert_non_null(m);
    assert_int_equal(json_array_size(m), RT_CLUSTER_MODULES_MAX);
    json_decref(m);
    snprintf(many + used, size - used, ",{\"name\":\"one-more\"}]");
    assert_null(parse(many));
    /* longer than the field may be: refused before it is read */
    assert_null(rt_cluster_modules_parse(many, RT_CLUSTER_MODULES_TEXT_MAX + 1));
    free(many);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_find),
        cmocka_unit_test(test_parse_refuses_malformed),
        cmocka_unit_test(test_parse_limits),
    };
    return cmocka_run_group_tests_name("runtime/cluster_modules", tests, NULL, NULL);
}
