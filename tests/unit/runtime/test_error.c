/* Unit tests for runtime/error.c: stored error values, their fields and cause chains. */
#include <pthread.h>
#include <stdlib.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/error.h"

static void test_kind_names(void **state)
{
    (void)state;
    assert_string_equal(rt_error_kind_name(RT_ERR_TASK_ERROR), "TaskError");
    assert_string_equal(rt_error_kind_name(RT_ERR_ACTOR_DIED), "ActorDied");
    assert_string_equal(rt_error_kind_name(RT_ERR_TASK_CANCELLED), "TaskCancelled");
    assert_string_equal(rt_error_kind_name(RT_ERR_WORKER_UNAVAILABLE), "WorkerUnavailable");
    assert_string_equal(rt_error_kind_name(RT_ERR_OBJECT_LOST), "ObjectLost");
}

static void test_new_basic(void **state)
{
    (void)state;
    char msg[] = "division by zero";
    rt_error *e = rt_error_new(RT_ERR_ACTOR_DIED, msg, NULL, NULL);
    assert_non_null(e);
    assert_int_equal(rt_error_kind_of(e), RT_ERR_ACTOR_DIED);
    assert_string_equal(rt_error_message(e), "division by zero");
    assert_ptr_not_equal(rt_error_message(e), msg); /* copied */
    msg[0] = 'X';
    assert_string_equal(rt_error_message(e), "division by zero");
    assert_null(rt_error_cause(e));
    json_t *f = rt_error_fields(e);
    assert_non_null(f);
    assert_true(json_is_object(f));
    assert_int_equal(json_object_size(f), 0);
    assert_true(rt_error_size(e) >= strlen("division by zero"));
    rt_error_decref(e);
}

static void test_null_message_is_empty(void **state)
{
    (void)state;
    rt_error *e = rt_error_new(RT_ERR_TASK_ERROR, NULL, NULL, NULL);
    assert_non_null(e);
    assert_non_null(rt_error_message(e));
    assert_string_equal(rt_error_message(e), "");
    rt_error_decref(e);
}

static void test_newf_formats(void **state)
{
    (void)state;
    rt_error *e = rt_error_newf(RT_ERR_WORKER_UNAVAILABLE, NULL, NULL, "%s:%d said %03d",
                                "host", 8080, 7);
    assert_non_null(e);
    assert_int_equal(rt_error_kind_of(e), RT_ERR_WORKER_UNAVAILABLE);
    assert_string_equal(rt_error_message(e), "host:8080 said 007");
    rt_error_decref(e);
}

static void test_fields_deep_copied(void **state)
{
    (void)state;
    json_t *fields = json_pack("{s:s, s:i, s:{s:s}}", "task_id", "t123", "attempt", 2,
                               "nested", "k", "v");
    assert_non_null(fields);
    rt_error *e = rt_error_new(RT_ERR_TASK_ERROR, "boom", fields, NULL);
    assert_non_null(e);
    json_t *copy = rt_error_fields(e);
    assert_non_null(copy);
    assert_ptr_not_equal(copy, fields);
    assert_true(json_equal(copy, fields));
    /* the caller still owns fields (borrowed): one reference, ours */
    assert_int_equal(fields->refcount, 1);

    /* changing the original, at top level and nested, does not change the error */
    json_object_set_new(fields, "task_id", json_string("changed"));
    json_object_set_new(fields, "extra", json_true());
    json_object_set_new(json_object_get(fields, "nested"), "k", json_string("changed"));
    json_decref(fields);

    assert_string_equal(json_string_value(json_object_get(copy, "task_id")), "t123");
    assert_int_equal(json_integer_value(json_object_get(copy, "attempt")), 2);
    assert_null(json_object_get(copy, "extra"));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(copy, "nested"), "k")), "v");
    assert_int_equal(json_object_size(copy), 3);
    rt_error_decref(e);
}

static void test_cause_is_borrowed_and_kept(void **state)
{
    (void)state;
    rt_error *root = rt_error_new(RT_ERR_OBJECT_LOST, "root", NULL, NULL);
    assert_non_null(root);
    rt_error *top = rt_error_new(RT_ERR_TASK_ERROR, "top", NULL, root);
    assert_non_null(top);
    assert_ptr_equal(rt_error_cause(top), root);
    rt_error_decref(root); /* drop our reference; top keeps its own */
    rt_error *c = rt_error_cause(top);
    assert_non_null(c);
    assert_string_equal(rt_error_message(c), "root");
    assert_int_equal(rt_error_kind_of(c), RT_ERR_OBJECT_LOST);
    assert_null(rt_error_cause(c));
    rt_error_decref(top); /* frees both; LSan reports a leak otherwise */
}

static void test_incref_decref(void **state)
{
    (void)state;
    rt_error *e = rt_error_new(RT_ERR_TASK_CANCELLED, "x", NULL, NULL);
    assert_non_null(e);
    assert_ptr_equal(rt_error_incref(e), e);
    rt_error_decref(e);
    assert_string_equal(rt_error_message(e), "x"); /* still alive (ASan checks) */
    rt_error_decref(e);
    assert_null(rt_error_incref(NULL));
    rt_error_decref(NULL);
}

static void test_shared_cause_survives_one_parent(void **state)
{
    (void)state;
    rt_error *cause = rt_error_new(RT_ERR_TASK_ERROR, "shared", NULL, NULL);
    rt_error *a = rt_error_new(RT_ERR_TASK_ERROR, "a", NULL, cause);
    rt_error *b = rt_error_new(RT_ERR_TASK_ERROR, "b", NULL, cause);
    assert_non_null(cause);
    assert_non_null(a);
    assert_non_null(b);
    rt_error_decref(cause);
    rt_error_decref(a); /* must stop at the shared cause, which b still holds */
    assert_string_equal(rt_error_message(rt_error_cause(b)), "shared");
    rt_error_decref(b);
}

#define CHAIN_LEN 100000

static void *decref_worker(void *arg)
{
    rt_error_decref(arg);
    return NULL;
}

static void test_long_cause_chain(void **state)
{
    (void)state;
    rt_error *head = NULL;
    for (int i = 0; i < CHAIN_LEN; i++) {
        rt_error *e = rt_error_newf(RT_ERR_TASK_ERROR, NULL, head, "level %d", i);
        assert_non_null(e);
        rt_error_decref(head); /* the new error holds the only reference now */
        head = e;
    }
    assert_string_equal(rt_error_message(head), "level 99999");
    size_t depth = 0;
    for (const rt_error *e = head; e; e = rt_error_cause(e))
        depth++;
    assert_int_equal(depth, CHAIN_LEN);
    assert_string_equal(rt_error_message(rt_error_cause(head)), "level 99998");
    /* Drop the chain on a thread with a small stack, so that a recursive decref (100000
     * frames) would overflow it even where the main stack is large. */
    pthread_attr_t attr;
    pthread_t th;
    assert_int_equal(pthread_attr_init(&attr), 0);
    assert_int_equal(pthread_attr_setstacksize(&attr, 256 * 1024), 0);
    assert_int_equal(pthread_create(&th, &attr, decref_worker, head), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    pthread_attr_destroy(&attr);
}

/* Sizes grow with the message and the fields; the chain size adds the causes'. */
static void test_sizes(void **state)
{
    (void)state;
    char big[10001];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    rt_error *small = rt_error_new(RT_ERR_TASK_ERROR, "x", NULL, NULL);
    rt_error *large = rt_error_new(RT_ERR_TASK_ERROR, big, NULL, NULL);
    json_t *fields = json_pack("{s:s}", "remote_body", big);
    rt_error *with_fields = rt_error_new(RT_ERR_TASK_ERROR, "x", fields, NULL);
    json_decref(fields);
    rt_error *top = rt_error_new(RT_ERR_TASK_ERROR, "top", NULL, large);
    assert_true(rt_error_size(small) < 300);
    assert_true(rt_error_size(large) >= 10000);
    assert_true(rt_error_size(with_fields) >= 10000);
    assert_int_equal(rt_error_chain_size(small), rt_error_size(small));
    assert_int_equal(rt_error_chain_size(top), rt_error_size(top) + rt_error_size(large));
    rt_error_decref(small);
    rt_error_decref(large);
    rt_error_decref(with_fields);
    rt_error_decref(top);
}

/* hold / unhold count each node once, however many holders reach it. */
static void test_hold_counts_nodes_once(void **state)
{
    (void)state;
    rt_error *root = rt_error_new(RT_ERR_TASK_ERROR, "root", NULL, NULL);
    rt_error *a = rt_error_new(RT_ERR_TASK_ERROR, "a", NULL, root);
    rt_error *b = rt_error_new(RT_ERR_TASK_ERROR, "b", NULL, root);
    size_t r = rt_error_size(root), sa = rt_error_size(a), sb = rt_error_size(b);
    assert_int_equal(rt_error_hold(a), sa + r);
    assert_int_equal(rt_error_hold(b), sb);      /* root is held already, through a */
    assert_int_equal(rt_error_hold(root), 0);    /* stored itself too */
    assert_int_equal(rt_error_hold(a), 0);       /* a second object holding a */
    assert_int_equal(rt_error_unhold(a), 0);
    assert_int_equal(rt_error_unhold(root), 0);
    assert_int_equal(rt_error_unhold(a), sa);    /* b still holds root */
    assert_int_equal(rt_error_unhold(b), sb + r);
    assert_int_equal(rt_error_hold(a), sa + r);  /* and again from nothing */
    assert_int_equal(rt_error_unhold(a), sa + r);
    rt_error_decref(root);
    rt_error_decref(a);
    rt_error_decref(b);
}

/* A long chain costs O(1) per new link to hold: the walk stops at the held cause. */
static void test_hold_long_chain(void **state)
{
    (void)state;
    rt_error *head = NULL;
    size_t total = 0;
    for (int i = 0; i < 10000; i++) {
        rt_error *e = rt_error_newf(RT_ERR_TASK_ERROR, NULL, head, "level %d", i);
        total += rt_error_hold(e); /* as a store does for each new failure */
        rt_error_decref(head);
        head = e;
    }
    assert_int_equal(total, rt_error_chain_size(head));
    size_t released = 0;
    /* the store lets go of each object; the chain is released once its head goes */
    rt_error *e = head;
    for (int i = 0; i < 10000; i++, e = rt_error_cause(e))
        released += rt_error_unhold(e);
    assert_int_equal(released, total);
    rt_error_decref(head);
}

/* A small error is its own summary; a large one is cut, keeping kind, the start of the
 * message and small fields. */
static void test_summary(void **state)
{
    (void)state;
    rt_error *small = rt_error_new(RT_ERR_TASK_ERROR, "small", NULL, NULL);
    rt_error *s = rt_error_summary(small, RT_ERROR_SUMMARY_MAX);
    assert_ptr_equal(s, small);
    rt_error_decref(s);

    char *big = malloc(100001);
    assert_non_null(big);
    memset(big, 'x', 100000);
    big[100000] = '\0';
    memcpy(big, "\xc3\xa9", 2); /* a 2-byte UTF-8 sequence at the start */
    json_t *fields = json_pack("{s:s,s:s}", "task_id", "t-1", "remote_body", big);
    rt_error *large = rt_error_new(RT_ERR_WORKER_UNAVAILABLE, big, fields, small);
    json_decref(fields);
    s = rt_error_summary(large, RT_ERROR_SUMMARY_MAX);
    assert_non_null(s);
    assert_ptr_not_equal(s, large);
    assert_true(rt_error_chain_size(s) <= RT_ERROR_SUMMARY_MAX);
    assert_int_equal(rt_error_kind_of(s), RT_ERR_WORKER_UNAVAILABLE);
    assert_true(strncmp(rt_error_message(s), big, 100) == 0);
    assert_non_null(strstr(rt_error_message(s), "bytes omitted]"));
    assert_string_equal(json_string_value(json_object_get(rt_error_fields(s), "task_id")), "t-1");
    assert_null(json_object_get(rt_error_fields(s), "remote_body"));
    assert_ptr_equal(rt_error_cause(s), small); /* the small cause is shared */
    rt_error_decref(s);

    /* A chain of large errors: a few cut copies, then the count of the levels left out. */
    rt_error *head = rt_error_incref(large);
    for (int i = 0; i < 50; i++) {
        rt_error *e = rt_error_new(RT_ERR_TASK_ERROR, big, NULL, head);
        rt_error_decref(head);
        head = e;
    }
    s = rt_error_summary(head, RT_ERROR_SUMMARY_MAX);
    assert_true(rt_error_chain_size(s) <= 2 * RT_ERROR_SUMMARY_MAX);
    size_t depth = 0;
    const rt_error *last = s;
    for (const rt_error *e = s; e; e = rt_error_cause(e), depth++)
        last = e;
    assert_true(depth >= 2 && depth < 16);
    json_t *omitted = json_object_get(rt_error_fields(last), "causes_omitted");
    assert_true(json_is_integer(omitted));
    assert_int_equal((size_t)json_integer_value(omitted) + depth, 52); /* 50 + large + small */
    rt_error_decref(s);
    rt_error_decref(head);
    rt_error_decref(large);
    rt_error_decref(small);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_new_basic),
        cmocka_unit_test(test_null_message_is_empty),
        cmocka_unit_test(test_newf_formats),
        cmocka_unit_test(test_fields_deep_copied),
        cmocka_unit_test(test_cause_is_borrowed_and_kept),
        cmocka_unit_test(test_incref_decref),
        cmocka_unit_test(test_shared_cause_survives_one_parent),
        cmocka_unit_test(test_long_cause_chain),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_hold_counts_nodes_once),
        cmocka_unit_test(test_hold_long_chain),
        cmocka_unit_test(test_summary),
    };
    return cmocka_run_group_tests_name("runtime/error", tests, NULL, NULL);
}
