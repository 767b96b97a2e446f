/* Request counters and histograms, and the /metrics text. */
#include "api/metrics.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/idempotency.h"
#include "api/park.h"
#include "api/router.h"
#include "runtime/events.h"
#include "runtime/histogram.h"
#include "runtime/remote_class.h"
#include "runtime/remote_function.h"
#include "runtime/stats.h"

static const char *const METHODS[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OTHER"};
#define NMETHODS 6
static const unsigned STATUSES[] = {200, 201, 202, 204, 206, 304, 400, 401, 403, 404, 405, 409,
                                    410, 413, 415, 416, 422, 424, 429, 500, 503, 507};
#define NSTATUSES (sizeof(STATUSES) / sizeof(STATUSES[0]))
#define MAX_ROUTES 64 /* slot MAX_ROUTES counts requests no route matched */

struct api_metrics {
    uint64_t requests[MAX_ROUTES + 1][NMETHODS][NSTATUSES + 1]; /* last status: other */
    /* Durations are labelled by route pattern only, and routes such as GET and HEAD of
     * /v1/objects/{ref} share a pattern: each route's histogram is its pattern's first
     * route's, so that every series appears once. */
    rt_histogram durations[MAX_ROUTES + 1];
    size_t pattern_of[MAX_ROUTES + 1];
};

api_metrics *api_metrics_new(void)
{
    api_metrics *m = calloc(1, sizeof(api_metrics));
    if (!m)
        return NULL;
    const api_route *table;
    size_t n = api_route_table(&table);
    for (size_t r = 0; r <= MAX_ROUTES; r++) {
        m->pattern_of[r] = r;
        for (size_t first = 0; r < n && first < r; first++)
            if (strcmp(table[first].pattern, table[r].pattern) == 0) {
                m->pattern_of[r] = first;
                break;
            }
    }
    return m;
}

void api_metrics_free(api_metrics *metrics)
{
    free(metrics);
}

static int method_index(const char *method)
{
    for (int i = 0; i < NMETHODS - 1; i++)
        if (strcmp(method, METHODS[i]) == 0)
            return i;
    return NMETHODS - 1;
}

static size_t status_index(unsigned status)
{
    for (size_t i = 0; i < NSTATUSES; i++)
        if (STATUSES[i] == status)
            return i;
    return NSTATUSES;
}

void api_metrics_record(api_metrics *m, int route, const char *method, unsigned status,
                        double seconds)
{
    size_t r = route >= 0 && route < MAX_ROUTES ? (size_t)route : MAX_ROUTES;
    __atomic_add_fetch(&m->requests[r][method_index(method)][status_index(status)], 1,
                       __ATOMIC_RELAXED);
    rt_histogram_observe(&m->durations[m->pattern_of[r]], seconds);
}

/* ---- rendering -------------------------------------------------------------------- */

typedef struct text {
    char *data;
    size_t len, cap;
    int failed;
} text;

static void emit(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(text *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->data + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap + (size_t)n) * 2;
        char *grown = realloc(t->data, cap);
        if (!grown) {
            t->failed = 1;
            return;
        }
        t->data = grown;
        t->cap = cap;
    }
}

static void header(text *t, const char *name, const char *type, const char *help)
{
    emit(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void histogram(text *t, const char *name, const char *labels, const rt_histogram *h)
{
    uint64_t cumulative = 0;
    const char *sep = labels[0] ? "," : "";
    for (int i = 0; i < RT_HISTOGRAM_BUCKETS; i++) {
        cumulative += h->counts[i];
        emit(t, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, rt_histogram_bounds[i],
             (unsigned long long)cumulative);
    }
    cumulative += h->counts[RT_HISTOGRAM_BUCKETS];
    emit(t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
         (unsigned long long)cumulative);
    emit(t, "%s_sum%s%s%s %.9f\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
         (double)h->sum_ns / 1e9);
    emit(t, "%s_count%s%s%s %llu\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
         (unsigned long long)h->count);
}

static const char *route_label(const api_route *table, size_t nroutes, size_t r)
{
    return r < nroutes ? table[r].pattern : "unmatched";
}

static void render_http(text *t, api_metrics *m)
{
    const api_route *table;
    size_t nroutes = api_route_table(&table);
    if (nroutes > MAX_ROUTES)
        nroutes = MAX_ROUTES;
    header(t, "rayd_http_requests_total", "counter",
           "HTTP requests answered, by route pattern, method and status.");
    for (size_t r = 0; r <= MAX_ROUTES; r++) {
        if (r >= nroutes && r != MAX_ROUTES)
            continue;
        for (int mi = 0; mi < NMETHODS; mi++)
            for (size_t s = 0; s <= NSTATUSES; s++) {
                uint64_t n = __atomic_load_n(&m->requests[r][mi][s], __ATOMIC_RELAXED);
                if (!n)
                    continue;
                char status[8];
                if (s < NSTATUSES)
                    snprintf(status, sizeof(status), "%u", STATUSES[s]);
                else
                    snprintf(status, sizeof(status), "other");
                emit(t, "rayd_http_requests_total{route=\"%s\",method=\"%s\",status=\"%s\"} %llu\n",
                     route_label(table, nroutes, r), METHODS[mi], status, (unsigned long long)n);
            }
    }
    header(t, "rayd_http_request_duration_seconds", "histogram",
           "Time from a request's headers to its answer, parked time included, by route.");
    for (size_t r = 0; r <= MAX_ROUTES; r++) {
        if ((r >= nroutes && r != MAX_ROUTES) || m->pattern_of[r] != r)
            continue;
        rt_histogram h;
        rt_histogram_read(&m->durations[r], &h);
        if (!h.count)
            continue;
        char labels[160];
        snprintf(labels, sizeof(labels), "route=\"%s\"", route_label(table, nroutes, r));
        histogram(t, "rayd_http_request_duration_seconds", labels, &h);
    }
}

static void gauge(text *t, const char *name, const char *help, double value)
{
    header(t, name, "gauge", help);
    emit(t, "%s %.17g\n", name, value);
}

static void counter(text *t, const char *name, const char *help, unsigned long long value)
{
    header(t, name, "counter", help);
    emit(t, "%s %llu\n", name, value);
}

static void render_runtime(text *t, const api_context *ctx)
{
    rt_store_stats s;
    rt_store_get_stats(ctx->store, &s);
    gauge(t, "rayd_store_objects", "Objects in the store that are not lost.", (double)s.objects);
    gauge(t, "rayd_store_pending_objects", "Objects waiting for their value.", (double)s.pending);
    gauge(t, "rayd_store_bytes", "Bytes of ready objects and stored errors in the store.",
          (double)s.bytes);
    gauge(t, "rayd_store_error_bytes", "The part of rayd_store_bytes that stored errors take.",
          (double)s.error_bytes);
    gauge(t, "rayd_store_memory_limit_bytes", "The store's memory limit (0: none).",
          (double)s.memory_limit);
    gauge(t, "rayd_store_tombstones", "Freed, evicted or expired objects still remembered.",
          (double)s.tombstones);
    counter(t, "rayd_store_tombstones_forgotten_total",
            "Tombstones forgotten to stay within RAYD_MAX_TOMBSTONES (their refs answer 404).",
            s.tombstones_forgotten);
    counter(t, "rayd_store_hits_total", "Reads that found an object.", s.hits);
    counter(t, "rayd_store_misses_total", "Reads of unknown or lost objects.", s.misses);
    counter(t, "rayd_store_evictions_total", "Objects evicted under memory pressure.", s.evictions);
    gauge(t, "rayd_store_spilled_objects", "Objects whose bytes are in spill files.",
          (double)s.spilled);
    gauge(t, "rayd_store_spilled_bytes", "Bytes of objects in spill files.",
          (double)s.spilled_bytes);
    gauge(t, "rayd_store_spill_disk_bytes", "Bytes of spill files on disk.",
          (double)s.disk.disk_bytes);
    counter(t, "rayd_store_spills_total", "Objects written to spill files.", s.spills);
    counter(t, "rayd_store_spill_write_bytes_total", "Bytes written to spill files.",
            s.disk.write_bytes);
    header(t, "rayd_store_spill_thread_seconds_total", "counter",
           "Time the spill thread spent writing objects out (its write rate: bytes over this).");
    emit(t, "rayd_store_spill_thread_seconds_total %.6f\n", s.spill_thread_seconds);
    counter(t, "rayd_store_restores_total",
            "Spilled objects read back into memory (task arguments, batch gets).", s.restores);
    counter(t, "rayd_store_restored_bytes_total",
            "Bytes of spilled objects read back into memory (their rate is the restore "
            "throughput; GETs served from the file by sendfile are not counted).",
            (unsigned long long)s.restored_bytes);
    gauge(t, "rayd_store_memory_objects", "Objects whose bytes are in memory (not spilled).",
          (double)(s.objects - s.spilled));
    counter(t, "rayd_store_expirations_total", "Objects whose TTL ran out.", s.expirations);

    rt_tasks_stats ts;
    rt_tasks_get_stats(ctx->tasks, &ts);
    header(t, "rayd_tasks", "gauge", "Task records by state.");
    for (int i = 0; i < RT_TASK_STATE_COUNT; i++)
        emit(t, "rayd_tasks{state=\"%s\"} %zu\n", rt_task_state_name((rt_task_state)i),
             ts.by_state[i]);
    counter(t, "rayd_tasks_submitted_total", "Tasks accepted.", ts.submitted);
    header(t, "rayd_tasks_ended_total", "counter", "Tasks ended, by outcome.");
    emit(t, "rayd_tasks_ended_total{outcome=\"finished\"} %llu\n", ts.finished);
    emit(t, "rayd_tasks_ended_total{outcome=\"failed\"} %llu\n", ts.failed);
    emit(t, "rayd_tasks_ended_total{outcome=\"cancelled\"} %llu\n", ts.cancelled);
    counter(t, "rayd_task_retries_total", "Task attempts retried after a failure.", ts.retries);
    header(t, "rayd_task_run_seconds", "histogram", "How long task functions ran.");
    histogram(t, "rayd_task_run_seconds", "", &ts.run_seconds);

    if (ctx->sessions) {
        rt_sessions_stats se;
        rt_sessions_get_stats(ctx->sessions, &se);
        gauge(t, "rayd_sessions_open", "Sessions open now.", (double)se.open);
        counter(t, "rayd_sessions_opened_total", "Sessions opened.", se.opened);
        header(t, "rayd_sessions_ended_total", "counter", "Sessions ended, by how.");
        emit(t, "rayd_sessions_ended_total{how=\"closed\"} %llu\n", se.closed);
        emit(t, "rayd_sessions_ended_total{how=\"expired\"} %llu\n", se.expired);
        counter(t, "rayd_session_objects_released_total",
                "Objects freed because their session ended (pinned ones when unpinned).",
                se.objects_released);
        counter(t, "rayd_session_tasks_cancelled_total",
                "Tasks cancelled because their session ended.", se.tasks_cancelled);
        counter(t, "rayd_session_actors_killed_total",
                "Actors killed because their session ended.", se.actors_killed);
    }

    rt_actors_stats as;
    rt_actors_get_stats(ctx->actors, &as);
    header(t, "rayd_actors", "gauge", "Actors by state.");
    for (int i = 0; i < RT_ACTOR_STATE_COUNT; i++)
        emit(t, "rayd_actors{state=\"%s\"} %zu\n", rt_actor_state_name((rt_actor_state)i),
             as.by_state[i]);
    counter(t, "rayd_actor_calls_total", "Actor method calls accepted.", as.calls);
    counter(t, "rayd_actor_calls_done_total", "Actor method calls that ran.", as.calls_done);
    counter(t, "rayd_actor_restarts_total", "Actor restarts after fatal errors.", as.restarts);
    gauge(t, "rayd_remote_functions",
          "Remote functions in memory: listed, or replaced or removed and still used by a task.",
          (double)rt_remote_function_count());
    gauge(t, "rayd_remote_classes",
          "Remote actor classes in memory: listed, or replaced or removed and still used by an "
          "actor.",
          (double)rt_remote_class_count());

    rt_scheduler_stats ss;
    rt_scheduler_get_stats(ctx->scheduler, &ss);
    gauge(t, "rayd_workers", "Worker threads.", ss.workers);
    gauge(t, "rayd_workers_busy", "Worker threads running a job now.", ss.busy);
    gauge(t, "rayd_scheduler_queued_jobs", "Jobs waiting for a worker.", (double)ss.queued);
    gauge(t, "rayd_parked_requests", "HTTP requests parked waiting for objects.",
          ctx->parking ? (double)api_parking_count(ctx->parking) : 0);
    counter(t, "rayd_parked_clients_gone_total",
            "Parked requests ended early because their client closed the connection.",
            ctx->parking ? api_parking_clients_gone(ctx->parking) : 0);
    gauge(t, "rayd_body_budget_bytes",
          "Memory requests may hold in flight (bodies, parked requests), RAYD_BODY_BUDGET.",
          (double)ctx->bodies.limit);
    gauge(t, "rayd_body_budget_used_bytes", "Of it, what requests hold now.",
          (double)__atomic_load_n(&ctx->bodies.used, __ATOMIC_RELAXED));
    counter(t, "rayd_body_budget_refusals_total",
            "Requests refused (503 or 413), or answered without waiting (Prefer: wait), because "
            "the body budget was spent.",
            __atomic_load_n(&ctx->bodies.refused, __ATOMIC_RELAXED));
    api_idempotency_stats is;
    api_idempotency_get_stats(ctx->idempotency, &is);
    gauge(t, "rayd_idempotency_keys", "Idempotency-Key entries remembered.", (double)is.keys);
    gauge(t, "rayd_idempotency_bytes", "Bytes the remembered Idempotency-Key answers hold.",
          (double)is.bytes);
    counter(t, "rayd_idempotency_evictions_total",
            "Answered Idempotency-Keys forgotten early to stay within the limits.", is.evictions);
    gauge(t, "rayd_start_time_seconds", "When the server started, Unix time.",
          ctx->started_wall);
    counter(t, "rayd_log_lines_dropped_total",
            "Log lines dropped because stdout could not keep up.",
            ctx->log_dropped ? ctx->log_dropped() : 0);

    api_allocator_stats al;
    if (ctx->allocator_stats && ctx->allocator_stats(&al) == 0) {
        gauge(t, "rayd_allocator_allocated_bytes", "Bytes in live heap allocations.",
              (double)al.allocated);
        gauge(t, "rayd_allocator_active_bytes", "Bytes in heap pages holding live allocations.",
              (double)al.active);
        gauge(t, "rayd_allocator_metadata_bytes", "Bytes of the allocator's own bookkeeping.",
              (double)al.metadata);
        gauge(t, "rayd_allocator_resident_bytes",
              "Heap bytes resident in memory (live, free but not yet given back, metadata).",
              (double)al.resident);
        gauge(t, "rayd_allocator_retained_bytes",
              "Heap address space kept for reuse, given back to the system (not resident).",
              (double)al.retained);
    }
    counter(t, "rayd_log_events_suppressed_total",
            "Lifecycle log lines left out by the per-event rate limit.", rt_events_suppressed());
}

/* A Prometheus label value: backslash, double quote and newline escaped (names may hold
 * any printable character: class names do). out has room for 2 * RT_STATS_NAME_MAX + 1. */
static const char *label_value(const char *in, char *out)
{
    char *o = out;
    for (const char *p = in; *p; p++) {
        if (*p == '\\' || *p == '"') {
            *o++ = '\\';
            *o++ = *p;
        } else if (*p == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

/* Whether the entry's names exist now (only those are shown: a removed registration's
 * label goes with it). "_other" always shows. */
static bool stats_exists(const api_context *ctx, const rt_stats_entry *e)
{
    if (strcmp(e->name, "_other") == 0)
        return true;
    switch (e->scope) {
    case RT_STATS_FUNCTION: return rt_registry_find(ctx->registry, e->name) != NULL;
    case RT_STATS_METHOD: return rt_actors_find_class(ctx->actors, e->name) != NULL;
    case RT_STATS_REMOTE:
        return rt_registry_find(ctx->registry, e->name) != NULL ||
               rt_actors_find_class(ctx->actors, e->name) != NULL;
    }
    return false;
}

/* Per function, per actor method and per remote endpoint: calls, failures by kind,
 * durations and time queued. */
static void render_stats(text *t, const api_context *ctx)
{
    static const char *const prefix[] = {"rayd_function", "rayd_actor_method", NULL};
    static const char *const what[] = {"task function", "actor method"};
    char n1[2 * RT_STATS_NAME_MAX + 1], n2[2 * RT_STATS_NAME_MAX + 1];
    char labels[4 * RT_STATS_NAME_MAX + 64], name[64], help[160];
    for (int scope = RT_STATS_FUNCTION; scope <= RT_STATS_METHOD; scope++) {
        size_t n = 0;
        rt_stats_entry *all = rt_stats_snapshot((rt_stats_scope)scope, &n);
        for (size_t i = 0; i < n; i++)
            if (!stats_exists(ctx, &all[i]))
                all[i].calls = UINT64_MAX; /* marks it hidden */
        for (int part = 0; part < 4; part++) {
            static const char *const suffix[] = {"calls_total", "failures_total",
                                                 "duration_seconds", "queued_seconds"};
            snprintf(name, sizeof(name), "%s_%s", prefix[scope], suffix[part]);
            static const char *const helps[] = {
                "Runs (attempts) of each ", "Calls that failed for good, by error kind, of each ",
                "How long it ran, per ", "How long calls waited to run, per "};
            snprintf(help, sizeof(help), "%s%s.", helps[part], what[scope]);
            header(t, name, part == 0 || part == 1 ? "counter" : "histogram", help);
            for (size_t i = 0; i < n; i++) {
                const rt_stats_entry *e = &all[i];
                if (e->calls == UINT64_MAX)
                    continue;
                if (scope == RT_STATS_FUNCTION)
                    snprintf(labels, sizeof(labels), "function=\"%s\"", label_value(e->name, n1));
                else
                    snprintf(labels, sizeof(labels), "class=\"%s\",method=\"%s\"",
                             label_value(e->name, n1), label_value(e->method, n2));
                if (part == 0) {
                    emit(t, "%s{%s} %llu\n", name, labels, (unsigned long long)e->calls);
                } else if (part == 1) {
                    for (int k = 0; k < RT_STATS_KINDS; k++)
                        if (e->failures[k])
                            emit(t, "%s{%s,kind=\"%s\"} %llu\n", name, labels,
                                 rt_error_kind_name((rt_error_kind)k),
                                 (unsigned long long)e->failures[k]);
                } else if (part == 2) {
                    if (e->duration.count)
                        histogram(t, name, labels, &e->duration);
                } else if (e->queued.count) {
                    histogram(t, name, labels, &e->queued);
                }
            }
        }
        free(all);
    }
    size_t n = 0;
    rt_stats_entry *all = rt_stats_snapshot(RT_STATS_REMOTE, &n);
    header(t, "rayd_remote_calls_total", "counter",
           "HTTP calls to each remote function or class endpoint, by outcome.");
    for (size_t i = 0; i < n; i++) {
        if (!stats_exists(ctx, &all[i])) {
            all[i].calls = UINT64_MAX;
            continue;
        }
        for (int o = 0; o < RT_STATS_REMOTE_OUTCOMES; o++)
            if (all[i].outcomes[o])
                emit(t, "rayd_remote_calls_total{endpoint=\"%s\",outcome=\"%s\"} %llu\n",
                     label_value(all[i].name, n1), rt_stats_outcome_name((rt_stats_remote_outcome)o),
                     (unsigned long long)all[i].outcomes[o]);
    }
    header(t, "rayd_remote_call_duration_seconds", "histogram",
           "Latency of each remote endpoint's calls, from sending to the answer or failure.");
    for (size_t i = 0; i < n; i++) {
        if (all[i].calls == UINT64_MAX || !all[i].duration.count)
            continue;
        snprintf(labels, sizeof(labels), "endpoint=\"%s\"", label_value(all[i].name, n1));
        histogram(t, "rayd_remote_call_duration_seconds", labels, &all[i].duration);
    }
    free(all);
}

char *api_metrics_render(api_metrics *m, const api_context *ctx, size_t *len)
{
    text t = {.cap = 16384};
    t.data = malloc(t.cap);
    if (!t.data)
        return NULL;
    render_http(&t, m);
    render_runtime(&t, ctx);
    render_stats(&t, ctx);
    if (t.failed) {
        free(t.data);
        return NULL;
    }
    *len = t.len;
    return t.data;
}
