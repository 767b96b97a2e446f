/* Unit tests for runtime/trace.c (W3C traceparent: what is accepted, rayd's child span),
 * runtime/events.c (the per-event rate limit, its "suppressed" count, endpoint changes only)
 * and runtime/stats.c (entries found again, scopes kept apart, names too long for a label
 * counted as "_other"). No HTTP server. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/events.h"
#include "runtime/stats.h"
#include "runtime/trace.h"

#define TRACE "4bf92f3577b34da6a3ce929d0e0e4736"

static void test_traceparent(void **state)
{
    (void)state;
    char out[RT_TRACEPARENT_SIZE];
    assert_true(rt_traceparent_child("00-" TRACE "-00f067aa0ba902b7-01", out));
    assert_int_equal(strlen(out), 55);
    assert_memory_equal(out, "00-" TRACE "-", 36);
    assert_string_equal(out + 52, "-01");
    assert_memory_not_equal(out + 36, "00f067aa0ba902b7", 16);
    char again[RT_TRACEPARENT_SIZE];
    assert_true(rt_traceparent_child("00-" TRACE "-00f067aa0ba902b7-01", again));
    assert_string_not_equal(out, again); /* a new span each time */
    /* a later version with more fields is read as 00 */
    assert_true(rt_traceparent_child("cc-" TRACE "-00f067aa0ba902b7-00-more", out));
    assert_memory_equal(out, "00-" TRACE "-", 36);
    static const char *const bad[] = {
        NULL, "", "garbage", "ff-" TRACE "-00f067aa0ba902b7-01",
        "00-" TRACE "-00f067aa0ba902b7-01-x", "00-" TRACE "-00f067aa0ba902b7",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-" TRACE "-0000000000000000-01", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-" TRACE "_00f067aa0ba902b7-01", "0g-" TRACE "-00f067aa0ba902b7-01",
        "cc-" TRACE "-00f067aa0ba902b7-00x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_false(rt_traceparent_child(bad[i], out));
        assert_string_equal(out, "");
    }
}

static int g_lines;
static long long g_suppressed;
static char g_last[64];

static void sink(const char *level, const char *event, json_t *fields)
{
    (void)level;
    g_lines++;
    snprintf(g_last, sizeof g_last, "%s", event);
    json_t *s = json_object_get(fields, "suppressed");
    if (s)
        g_suppressed = json_integer_value(s);
    json_decref(fields);
}

static void test_rate_limit(void **state)
{
    (void)state;
    rt_events_set_sink(sink);
    g_lines = 0;
    unsigned long long before = rt_events_suppressed();
    for (int i = 0; i < 1000; i++)
        rt_event_emit("warn", "unit storm", json_pack("{s:i}", "i", i));
    /* the burst, plus what refilled while the loop ran (a few at most) */
    assert_true(g_lines >= RT_EVENT_BURST && g_lines <= RT_EVENT_BURST + 5);
    assert_int_equal(rt_events_suppressed() - before, (unsigned long long)(1000 - g_lines));
    /* another event name has its own bucket */
    int lines = g_lines;
    rt_event_emit("info", "unit other", NULL);
    assert_int_equal(g_lines, lines + 1);
    assert_string_equal(g_last, "unit other");
    rt_events_set_sink(NULL);
}

static void test_endpoint_changes_only(void **state)
{
    (void)state;
    rt_events_set_sink(sink);
    g_lines = 0;
    rt_event_endpoint("http://127.0.0.1:1/x", "x", true, NULL); /* never down: nothing */
    assert_int_equal(g_lines, 0);
    for (int i = 0; i < 5; i++)
        rt_event_endpoint("http://127.0.0.1:1/x", "x", false, "refused");
    assert_int_equal(g_lines, 1);
    assert_string_equal(g_last, "remote endpoint unreachable");
    rt_event_endpoint("http://127.0.0.1:1/x", "x", true, NULL);
    rt_event_endpoint("http://127.0.0.1:1/x", "x", true, NULL);
    assert_int_equal(g_lines, 2);
    assert_string_equal(g_last, "remote endpoint reachable again");
    rt_events_set_sink(NULL);
}

static void test_stats_entries(void **state)
{
    (void)state;
    rt_stats_entry *a = rt_stats_entry_for(RT_STATS_FUNCTION, "unit_fn", NULL);
    assert_ptr_equal(a, rt_stats_entry_for(RT_STATS_FUNCTION, "unit_fn", "ignored"));
    rt_stats_entry *m = rt_stats_entry_for(RT_STATS_METHOD, "unit_fn", "m");
    assert_ptr_not_equal(a, m);
    rt_stats_call(a, 0.01, 0.001);
    rt_stats_fail(a, RT_ERR_WORKER_UNAVAILABLE);
    size_t n;
    rt_stats_entry *all = rt_stats_snapshot(RT_STATS_FUNCTION, &n);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(all[i].name, "unit_fn") == 0) {
            found = true;
            assert_int_equal(all[i].calls, 1);
            assert_int_equal(all[i].failures[RT_ERR_WORKER_UNAVAILABLE], 1);
            assert_int_equal(all[i].duration.count, 1);
            assert_int_equal(all[i].queued.count, 1);
        }
    free(all);
    assert_true(found);
    /* names too long to be labels share "_other" */
    char long_name[300];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_string_equal(rt_stats_entry_for(RT_STATS_FUNCTION, long_name, NULL)->name, "_other");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traceparent),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_endpoint_changes_only),
        cmocka_unit_test(test_stats_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
