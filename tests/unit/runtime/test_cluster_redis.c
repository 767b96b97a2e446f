/* Unit tests for runtime/cluster_redis.c: the redis:// URL that turns cluster mode on.
 * (The connection itself is exercised against a real Redis by tests/cluster/.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/cluster_redis.h"

static void test_url_host_port_db(void **state)
{
    (void)state;
    rt_redis_url u;
    char err[256];
    assert_int_equal(rt_redis_url_parse("redis://127.0.0.1:6380", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 0);
    assert_string_equal(u.password, "");
    assert_string_equal(u.user, "");

    assert_int_equal(rt_redis_url_parse("redis://cache.internal", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "cache.internal");
    assert_int_equal(u.port, 6379);

    assert_int_equal(rt_redis_url_parse("redis://h:1/15", &u, err, sizeof(err)), 0);
    assert_int_equal(u.port, 1);
    assert_int_equal(u.db, 15);

    assert_int_equal(rt_redis_url_parse("redis://h/", &u, err, sizeof(err)), 0);
    assert_int_equal(u.db, 0);

    assert_int_equal(rt_redis_url_parse("redis://[::1]:7000/2", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 2);
}

static void test_url_credentials(void **state)
{
    (void)state;
    rt_redis_url u;
    char err[256];
    assert_int_equal(rt_redis_url_parse("redis://:s3cret@h:6379/1", &u, err, sizeof(err)), 0);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "s3cret");
    assert_string_equal(u.host, "h");
    assert_int_equal(u.db, 1);

    assert_int_equal(rt_redis_url_parse("redis://rayd:pw@h", &u, err, sizeof(err)), 0);
    assert_string_equal(u.user, "rayd");
    assert_string_equal(u.password, "pw");

    /* '@', ':' and '/' in a password, percent-encoded or ('@') not. */
    assert_int_equal(rt_redis_url_parse("redis://:a%40b%3Ac%2Fd@h:1", &u, err, sizeof(err)), 0);
    assert_string_equal(u.password, "a@b:c/d");
    assert_int_equal(rt_redis_url_parse("redis://:a@b@h:1", &u, err, sizeof(err)), 0);
    assert_string_equal(u.password, "a@b");
    assert_string_equal(u.host, "h");
}

static void test_url_rejected(void **state)
{
    (void)state;
    rt_redis_url u;
    char err[256];
    const char *bad[] = {
        "",                       /* empty */
        "http://h:6379",          /* another scheme */
        "rediss://h:6379",        /* TLS: hiredis 0.14 has none */
        "redis://",               /* no host */
        "redis://:6379",          /* no host */
        "redis://h:0",            /* port out of range */
        "redis://h:65536",
        "redis://h:12ab",
        "redis://h:6379/x",       /* db not a number */
        "redis://pw@h",           /* credentials without ':' */
        "redis://:bad%zz@h",      /* malformed escape */
        "redis://:bad%00@h",      /* NUL in a password */
        "redis://[::1:6379",      /* unclosed bracket */
        "redis://[::1]x:6379",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (rt_redis_url_parse(bad[i], &u, err, sizeof(err)) != -1)
            fail_msg("'%s' was accepted", bad[i]);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(rt_redis_url_parse(NULL, &u, err, sizeof(err)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_host_port_db),
        cmocka_unit_test(test_url_credentials),
        cmocka_unit_test(test_url_rejected),
    };
    return cmocka_run_group_tests_name("runtime/cluster_redis", tests, NULL, NULL);
}
