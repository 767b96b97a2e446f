/* Per-function, per-method and per-endpoint statistics (see stats.h): a fixed pool of
 * entries found by a hash of their labels, under a read-write lock taken for lookups only;
 * counting itself is atomic. */
#include "runtime/stats.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_SIZE 4096 /* power of two, over RT_STATS_MAX: open addressing stays short */

static pthread_rwlock_t g_lock = PTHREAD_RWLOCK_INITIALIZER; /* guards the table */
static rt_stats_entry g_entries[RT_STATS_MAX];
static size_t g_count;
static int g_table[TABLE_SIZE]; /* index + 1 into g_entries; 0: empty */
static rt_stats_entry g_other[3]; /* per scope, past the limit */
static pthread_once_t g_other_once = PTHREAD_ONCE_INIT;

static void other_init(void)
{
    for (int s = 0; s < 3; s++) {
        g_other[s].scope = (rt_stats_scope)s;
        snprintf(g_other[s].name, sizeof(g_other[s].name), "_other");
        if (s == RT_STATS_METHOD)
            snprintf(g_other[s].method, sizeof(g_other[s].method), "_other");
    }
}

static size_t hash_of(rt_stats_scope scope, const char *name, const char *method)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)scope;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (const char *p = method; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return (size_t)h & (TABLE_SIZE - 1);
}

/* The slot holding the entry, or the empty slot where it would go. Lock held. */
static int *slot_of(rt_stats_scope scope, const char *name, const char *method)
{
    size_t i = hash_of(scope, name, method);
    for (;;) {
        int *s = &g_table[i];
        if (*s == 0)
            return s;
        rt_stats_entry *e = &g_entries[*s - 1];
        if (e->scope == scope && strcmp(e->name, name) == 0 && strcmp(e->method, method) == 0)
            return s;
        i = (i + 1) & (TABLE_SIZE - 1);
    }
}

rt_stats_entry *rt_stats_entry_for(rt_stats_scope scope, const char *name, const char *method)
{
    pthread_once(&g_other_once, other_init);
    if (!name)
        name = "";
    if (!method || scope != RT_STATS_METHOD)
        method = "";
    if (strlen(name) > RT_STATS_NAME_MAX || strlen(method) > RT_STATS_NAME_MAX)
        return &g_other[scope];
    pthread_rwlock_rdlock(&g_lock);
    int *s = slot_of(scope, name, method);
    rt_stats_entry *e = *s ? &g_entries[*s - 1] : NULL;
    pthread_rwlock_unlock(&g_lock);
    if (e)
        return e;
    pthread_rwlock_wrlock(&g_lock);
    s = slot_of(scope, name, method); /* another thread may have made it meanwhile */
    if (*s) {
        e = &g_entries[*s - 1];
    } else if (g_count < RT_STATS_MAX) {
        e = &g_entries[g_count];
        e->scope = scope;
        snprintf(e->name, sizeof(e->name), "%s", name);
        snprintf(e->method, sizeof(e->method), "%s", method);
        *s = (int)++g_count;
    } else {
        e = &g_other[scope];
    }
    pthread_rwlock_unlock(&g_lock);
    return e;
}

void rt_stats_call(rt_stats_entry *e, double seconds, double queued)
{
    __atomic_add_fetch(&e->calls, 1, __ATOMIC_RELAXED);
    rt_histogram_observe(&e->duration, seconds > 0 ? seconds : 0);
    if (queued >= 0)
        rt_histogram_observe(&e->queued, queued);
}

void rt_stats_fail(rt_stats_entry *e, rt_error_kind kind)
{
    if ((unsigned)kind < RT_STATS_KINDS)
        __atomic_add_fetch(&e->failures[kind], 1, __ATOMIC_RELAXED);
}

void rt_stats_remote(rt_stats_entry *e, rt_stats_remote_outcome outcome, double seconds)
{
    __atomic_add_fetch(&e->calls, 1, __ATOMIC_RELAXED);
    if ((unsigned)outcome < RT_STATS_REMOTE_OUTCOMES)
        __atomic_add_fetch(&e->outcomes[outcome], 1, __ATOMIC_RELAXED);
    rt_histogram_observe(&e->duration, seconds > 0 ? seconds : 0);
}

/* A copy of e read field by field (atomically each). */
static void copy_entry(const rt_stats_entry *e, rt_stats_entry *out)
{
    out->scope = e->scope;
    memcpy(out->name, e->name, sizeof(out->name));
    memcpy(out->method, e->method, sizeof(out->method));
    out->calls = __atomic_load_n(&e->calls, __ATOMIC_RELAXED);
    for (size_t k = 0; k < RT_STATS_KINDS; k++)
        out->failures[k] = __atomic_load_n(&e->failures[k], __ATOMIC_RELAXED);
    for (size_t k = 0; k < RT_STATS_REMOTE_OUTCOMES; k++)
        out->outcomes[k] = __atomic_load_n(&e->outcomes[k], __ATOMIC_RELAXED);
    rt_histogram_read(&e->duration, &out->duration);
    rt_histogram_read(&e->queued, &out->queued);
}

rt_stats_entry *rt_stats_snapshot(rt_stats_scope scope, size_t *n)
{
    pthread_once(&g_other_once, other_init);
    *n = 0;
    pthread_rwlock_rdlock(&g_lock);
    size_t count = g_count;
    pthread_rwlock_unlock(&g_lock);
    /* Entries below count are complete and never move: they are copied without the lock. */
    rt_stats_entry *out = malloc((count + 1) * sizeof(*out));
    if (!out)
        return NULL;
    size_t m = 0;
    for (size_t i = 0; i < count; i++)
        if (g_entries[i].scope == scope)
            copy_entry(&g_entries[i], &out[m++]);
    if (__atomic_load_n(&g_other[scope].calls, __ATOMIC_RELAXED))
        copy_entry(&g_other[scope], &out[m++]);
    *n = m;
    return out;
}

const char *rt_stats_outcome_name(rt_stats_remote_outcome outcome)
{
    static const char *const names[] = {"ok",      "http_4xx",  "http_5xx", "unreachable",
                                        "timeout", "too_large", "cancelled"};
    return (unsigned)outcome < RT_STATS_REMOTE_OUTCOMES ? names[outcome] : "unknown";
}
