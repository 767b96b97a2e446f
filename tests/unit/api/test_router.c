/* Tests api/router.c: matching, literal-over-parameter precedence, 405 with Allow, and that
 * every route in the table is documented in the OpenAPI document the binary serves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <string.h>

#include "api/openapi_spec.h"
#include "api/router.h"

static api_match_result match(const char *method, const char *path, const api_route **route,
                              const char *params[API_MAX_PARAMS], char *allow, char *buf)
{
    strcpy(buf, path);
    return api_route_match(method, buf, route, params, allow, 64);
}

static void test_literal_routes(void **state)
{
    (void)state;
    const api_route *r;
    const char *params[API_MAX_PARAMS];
    char allow[64], buf[256];
    assert_int_equal(match("GET", "/healthz", &r, params, allow, buf), API_MATCH_OK);
    assert_string_equal(r->pattern, "/healthz");
    assert_int_equal(match("POST", "/v1/objects", &r, params, allow, buf), API_MATCH_OK);
    assert_string_equal(r->pattern, "/v1/objects");
    assert_int_equal(r->body, API_BODY_RAW);
    assert_int_equal(match("POST", "/v1/objects/batch", &r, params, allow, buf), API_MATCH_OK);
    assert_string_equal(r->pattern, "/v1/objects/batch");
}

static void test_params_captured(void **state)
{
    (void)state;
    const api_route *r;
    const char *params[API_MAX_PARAMS];
    char allow[64], buf[256];
    assert_int_equal(match("GET", "/v1/objects/abc-_9/meta", &r, params, allow, buf),
                     API_MATCH_OK);
    assert_string_equal(r->pattern, "/v1/objects/{ref}/meta");
    assert_string_equal(params[0], "abc-_9");
    assert_int_equal(match("DELETE", "/v1/objects/xyz", &r, params, allow, buf), API_MATCH_OK);
    assert_string_equal(params[0], "xyz");
}

static void test_literal_owns_path(void **state)
{
    (void)state;
    const api_route *r;
    const char *params[API_MAX_PARAMS];
    char allow[64], buf[256];
    /* "batch" is a valid ref, but the literal route owns the path: 405, not an object. */
    assert_int_equal(match("GET", "/v1/objects/batch", &r, params, allow, buf),
                     API_MATCH_NO_METHOD);
    assert_string_equal(allow, "POST");
    assert_int_equal(match("PUT", "/v1/objects/x", &r, params, allow, buf),
                     API_MATCH_NO_METHOD);
    assert_string_equal(allow, "GET, HEAD, DELETE");
}

static void test_no_path(void **state)
{
    (void)state;
    const api_route *r;
    const char *params[API_MAX_PARAMS];
    char allow[64], buf[256];
    const char *bad[] = {"/", "", "v1/objects", "/v1/objects/", "/v1/objects//meta",
                         "/v1/objects/a/meta/x", "/v1/nope", "/a/b/c/d/e/f/g/h/i/j", "//",
                         "/healthz/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(match("GET", bad[i], &r, params, allow, buf), API_MATCH_NO_PATH);
        assert_null(r);
    }
}

static void test_every_route_documented(void **state)
{
    (void)state;
    json_error_t error;
    json_t *spec = json_loadb(rayd_openapi_json, rayd_openapi_json_len, 0, &error);
    assert_non_null(spec);
    json_t *paths = json_object_get(spec, "paths");
    assert_true(json_is_object(paths));
    const api_route *table;
    size_t n = api_route_table(&table);
    assert_true(n > 10);
    for (size_t i = 0; i < n; i++) {
        char method[16];
        size_t k = 0;
        for (; table[i].method[k] && k < sizeof(method) - 1; k++)
            method[k] = (char)tolower((unsigned char)table[i].method[k]);
        method[k] = '\0';
        json_t *ops = json_object_get(paths, table[i].pattern);
        if (!ops || !json_object_get(ops, method))
            fail_msg("%s %s is not in openapi/openapi.yaml", table[i].method,
                     table[i].pattern);
    }
    json_decref(spec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_routes),
        cmocka_unit_test(test_params_captured),
        cmocka_unit_test(test_literal_owns_path),
        cmocka_unit_test(test_no_path),
        cmocka_unit_test(test_every_route_documented),
    };
    return cmocka_run_group_tests_name("api/router", tests, NULL, NULL);
}
