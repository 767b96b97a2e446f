/* Lifecycle events: rate limiting per event name and the endpoint reachability table, in
 * front of the sink the service installs (see events.h). */
#include "runtime/events.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/clock.h"

static rt_event_sink g_sink;

/* One bucket per event name; names are a handful of literals, so a small table suffices
 * (names beyond it share the last bucket). */
#define BUCKETS 32
typedef struct bucket {
    const char *name;
    double tokens, at;
    unsigned long long suppressed; /* since the last line that passed */
} bucket;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER; /* guards what follows */
static bucket g_buckets[BUCKETS];
static unsigned long long g_suppressed_total;

void rt_events_set_sink(rt_event_sink sink)
{
    g_sink = sink;
}

unsigned long long rt_events_suppressed(void)
{
    pthread_mutex_lock(&g_lock);
    unsigned long long n = g_suppressed_total;
    pthread_mutex_unlock(&g_lock);
    return n;
}

void rt_event_emit(const char *level, const char *event, json_t *fields)
{
    if (!g_sink) {
        json_decref(fields);
        return;
    }
    double now = rt_clock_monotonic();
    unsigned long long suppressed = 0;
    bool pass;
    pthread_mutex_lock(&g_lock);
    bucket *b = &g_buckets[BUCKETS - 1];
    for (size_t i = 0; i < BUCKETS; i++) {
        if (!g_buckets[i].name) {
            g_buckets[i].name = event;
            g_buckets[i].tokens = RT_EVENT_BURST;
            g_buckets[i].at = now;
        }
        if (strcmp(g_buckets[i].name, event) == 0) {
            b = &g_buckets[i];
            break;
        }
    }
    b->tokens += (now - b->at) * RT_EVENT_PER_SECOND;
    if (b->tokens > RT_EVENT_BURST)
        b->tokens = RT_EVENT_BURST;
    b->at = now;
    pass = b->tokens >= 1;
    if (pass) {
        b->tokens -= 1;
        suppressed = b->suppressed;
        b->suppressed = 0;
    } else {
        b->suppressed++;
        g_suppressed_total++;
    }
    pthread_mutex_unlock(&g_lock);
    if (!pass) {
        json_decref(fields);
        return;
    }
    if (suppressed) {
        if (!fields)
            fields = json_object();
        json_object_set_new(fields, "suppressed", json_integer((json_int_t)suppressed));
    }
    g_sink(level, event, fields);
}

/* URLs now unreachable. Bounded: past DOWN_MAX, further URLs are not remembered (their
 * "unreachable" lines still come, rate-limited, but no "reachable again"). */
#define DOWN_MAX 256
static char *g_down[DOWN_MAX]; /* g_lock */
static size_t g_ndown;         /* g_lock */

void rt_event_endpoint(const char *url, const char *what, bool reachable, const char *why)
{
    if (!url || !g_sink)
        return;
    bool changed = false;
    pthread_mutex_lock(&g_lock);
    size_t i = 0;
    while (i < g_ndown && strcmp(g_down[i], url) != 0)
        i++;
    bool was_down = i < g_ndown;
    if (reachable && was_down) {
        free(g_down[i]);
        g_down[i] = g_down[--g_ndown];
        changed = true;
    } else if (!reachable && !was_down) {
        changed = true;
        if (g_ndown < DOWN_MAX && (g_down[g_ndown] = strdup(url)) != NULL)
            g_ndown++;
    }
    pthread_mutex_unlock(&g_lock);
    if (!changed)
        return;
    json_t *fields = json_pack("{s:s,s:s}", "url", url, "name", what ? what : "");
    if (!reachable && why && fields)
        json_object_set_new(fields, "error", json_string(why));
    rt_event_emit(reachable ? "info" : "warn",
                  reachable ? "remote endpoint reachable again" : "remote endpoint unreachable",
                  fields);
}
