/* Service endpoints: liveness, node status, the OpenAPI document, and the pages problem
 * types point at. */
#include <stdlib.h>

#include "api/handlers.h"
#include "api/idempotency.h"
#include "api/live.h"
#include "api/metrics.h"
#include "api/openapi_spec.h"
#include "api/park.h"
#include "api/problem.h"
#include "runtime/clock.h"
#include "runtime/module.h"
#include "runtime/remote_class.h"
#include "runtime/remote_function.h"

enum MHD_Result api_system_healthz(api_request *req)
{
    static const char OK[] = "{\"status\":\"ok\"}";
    return api_reply_static(req, 200, OK, sizeof(OK) - 1, "application/json");
}

enum MHD_Result api_system_readyz(api_request *req)
{
    static const char READY[] = "{\"status\":\"ready\"}";
    int state = __atomic_load_n(&req->ctx->lifecycle, __ATOMIC_ACQUIRE);
    bool joining = req->ctx->cluster && !rt_cluster_joined(req->ctx->cluster);
    if (state == API_READY && !joining)
        return api_reply_static(req, 200, READY, sizeof(READY) - 1, "application/json");
    req->retry_after = 1;
    if (state == API_READY)
        return api_problem(req, 503, "ClusterUnavailable",
                           "this node has not joined the cluster yet (is Redis reachable?)",
                           NULL);
    return api_problem(req, 503, "ShuttingDown",
                       state == API_STARTING ? "the server is starting"
                                             : "the server is draining and takes no new work",
                       NULL);
}

enum MHD_Result api_system_metrics(api_request *req)
{
    size_t len = 0;
    char *text = api_metrics_render(req->ctx->metrics, req->ctx, &len);
    if (!text)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    struct MHD_Response *resp = api_response_text(req, text, len);
    if (!resp)
        return MHD_NO;
    return api_reply(req, 200, resp, "text/plain; version=0.0.4; charset=utf-8");
}

enum MHD_Result api_system_status(api_request *req)
{
    const api_context *ctx = req->ctx;
    rt_store_stats s;
    rt_store_get_stats(ctx->store, &s);
    char started[40];
    json_t *config = json_pack(
        "{s:s,s:i,s:i,s:I,s:I,s:f,s:i,s:f}", "bind", ctx->config.bind, "port",
        (int)ctx->config.port, "http_threads", (int)ctx->config.http_threads, "memory_limit",
        (json_int_t)ctx->config.memory_limit, "max_body", (json_int_t)ctx->config.max_body,
        "max_wait", ctx->config.max_wait, "connection_limit", (int)ctx->config.connection_limit,
        "connection_timeout", ctx->config.connection_timeout);
    json_t *store = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "objects",
                              (json_int_t)s.objects, "bytes", (json_int_t)s.bytes, "pending",
                              (json_int_t)s.pending, "tombstones", (json_int_t)s.tombstones,
                              "tombstones_forgotten", (json_int_t)s.tombstones_forgotten,
                              "memory_limit", (json_int_t)s.memory_limit, "hits",
                              (json_int_t)s.hits, "misses", (json_int_t)s.misses, "evictions",
                              (json_int_t)s.evictions, "expirations",
                              (json_int_t)s.expirations);
    json_object_set_new(store, "error_bytes", json_integer((json_int_t)s.error_bytes));
    api_system_spill_status(store, &s);
    if (ctx->cluster) {
        json_object_set_new(store, "copies", json_integer((json_int_t)s.copies));
        json_object_set_new(store, "copy_bytes", json_integer((json_int_t)s.copy_bytes));
    }
    json_object_set_new(config, "workers", json_integer(ctx->config.workers));
    json_object_set_new(config, "max_parked", json_integer((json_int_t)ctx->config.max_parked));
    json_object_set_new(config, "idempotency_ttl", json_real(ctx->config.idempotency_ttl));
    json_object_set_new(config, "body_budget", json_integer((json_int_t)ctx->config.body_budget));
    json_object_set_new(config, "idempotency_max_bytes",
                        json_integer((json_int_t)ctx->config.idempotency_max_bytes));
    json_object_set_new(config, "auth", json_boolean(api_live_auth_on(ctx->live)));
    char *allow = api_live_remote_allow(ctx->live);
    json_object_set_new(config, "remote_allow", allow ? json_string(allow) : json_null());
    free(allow);
    json_object_set_new(config, "max_pending_tasks",
                        json_integer((json_int_t)ctx->config.max_pending_tasks));
    json_object_set_new(config, "max_tombstones",
                        json_integer((json_int_t)ctx->config.max_tombstones));
    json_object_set_new(config, "max_task_records",
                        json_integer((json_int_t)ctx->config.max_task_records));
    json_object_set_new(config, "max_dead_actors",
                        json_integer((json_int_t)ctx->config.max_dead_actors));

    rt_tasks_stats ts;
    rt_tasks_get_stats(ctx->tasks, &ts);
    json_t *by_state = json_object();
    for (int i = 0; i < RT_TASK_STATE_COUNT; i++)
        json_object_set_new(by_state, rt_task_state_name((rt_task_state)i),
                            json_integer((json_int_t)ts.by_state[i]));
    json_t *tasks = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "pending", (json_int_t)ts.pending,
                              "submitted", (json_int_t)ts.submitted, "finished",
                              (json_int_t)ts.finished, "failed", (json_int_t)ts.failed,
                              "cancelled", (json_int_t)ts.cancelled, "retries",
                              (json_int_t)ts.retries, "by_state", by_state);
    rt_scheduler_stats ss;
    rt_scheduler_get_stats(ctx->scheduler, &ss);
    json_t *scheduler = json_pack("{s:i,s:i,s:I,s:I}", "workers", (int)ss.workers, "busy",
                                  (int)ss.busy, "queued", (json_int_t)ss.queued, "delayed",
                                  (json_int_t)ss.delayed);

    rt_actors_stats as;
    rt_actors_get_stats(ctx->actors, &as);
    json_t *actor_states = json_object();
    for (int i = 0; i < RT_ACTOR_STATE_COUNT; i++)
        json_object_set_new(actor_states, rt_actor_state_name((rt_actor_state)i),
                            json_integer((json_int_t)as.by_state[i]));
    json_t *actors = json_pack("{s:o,s:I,s:I,s:I}", "by_state", actor_states, "calls",
                               (json_int_t)as.calls, "calls_done", (json_int_t)as.calls_done,
                               "restarts", (json_int_t)as.restarts);

    api_idempotency_stats is;
    api_idempotency_get_stats(ctx->idempotency, &is);
    json_t *idempotency = json_pack("{s:I,s:I,s:I,s:I,s:I}", "keys", (json_int_t)is.keys,
                                    "bytes", (json_int_t)is.bytes, "shared_bytes",
                                    (json_int_t)is.shared_bytes, "max_bytes",
                                    (json_int_t)is.max_bytes, "evictions",
                                    (json_int_t)is.evictions);

    json_t *bodies = json_pack(
        "{s:I,s:I,s:I}", "budget", (json_int_t)ctx->bodies.limit, "in_use",
        (json_int_t)__atomic_load_n(&ctx->bodies.used, __ATOMIC_RELAXED), "refused",
        (json_int_t)__atomic_load_n(&ctx->bodies.refused, __ATOMIC_RELAXED));
    json_t *registry = json_pack("{s:I,s:I}", "remote_functions",
                                 (json_int_t)rt_remote_function_count(), "remote_classes",
                                 (json_int_t)rt_remote_class_count());

    json_t *body = json_pack("{s:s,s:s,s:f,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "version",
                             ctx->version,
                             "started_at",
                             rt_clock_format(ctx->started_wall, started, sizeof(started)),
                             "uptime_seconds", rt_clock_monotonic() - ctx->started_mono,
                             "config", config, "object_store", store, "tasks", tasks,
                             "scheduler", scheduler, "actors", actors, "idempotency",
                             idempotency, "registry", registry, "bodies", bodies);
    unsigned long long requests = 0, dashboard_requests = 0;
    if (ctx->metrics)
        api_metrics_request_totals(ctx->metrics, &requests, &dashboard_requests);
    json_object_set_new(
        body, "http",
        json_pack("{s:I,s:I,s:I}", "requests", (json_int_t)requests, "dashboard_requests",
                  (json_int_t)dashboard_requests, "parked",
                  (json_int_t)(ctx->parking ? api_parking_count(ctx->parking) : 0)));
    if (ctx->sessions) {
        rt_sessions_stats se;
        rt_sessions_get_stats(ctx->sessions, &se);
        json_object_set_new(
            body, "sessions",
            json_pack("{s:I,s:I,s:f,s:I,s:I,s:I,s:I,s:I,s:I}", "open", (json_int_t)se.open,
                      "max_sessions", (json_int_t)se.max_sessions, "max_ttl",
                      ctx->config.session_max_ttl, "opened", (json_int_t)se.opened, "closed",
                      (json_int_t)se.closed, "expired", (json_int_t)se.expired,
                      "objects_released", (json_int_t)se.objects_released, "tasks_cancelled",
                      (json_int_t)se.tasks_cancelled, "actors_killed",
                      (json_int_t)se.actors_killed));
    }
    json_t *modules = rt_modules_list(true); /* C modules are per node: this node's */
    json_object_set_new(body, "modules", modules ? modules : json_array());
    if (ctx->cluster)
        json_object_set_new(body, "cluster", api_cluster_status(ctx));
    api_allocator_stats al;
    if (body && ctx->allocator_stats && ctx->allocator_stats(&al) == 0)
        json_object_set_new(body, "allocator",
                            json_pack("{s:I,s:I,s:I,s:I,s:I}", "allocated",
                                      (json_int_t)al.allocated, "active", (json_int_t)al.active,
                                      "metadata", (json_int_t)al.metadata, "resident",
                                      (json_int_t)al.resident, "retained",
                                      (json_int_t)al.retained));
    return api_reply_json(req, 200, body);
}

enum MHD_Result api_system_openapi_yaml(api_request *req)
{
    return api_reply_static(req, 200, rayd_openapi_yaml, rayd_openapi_yaml_len,
                            "application/yaml");
}

enum MHD_Result api_system_openapi_json(api_request *req)
{
    return api_reply_static(req, 200, rayd_openapi_json, rayd_openapi_json_len,
                            "application/json");
}

/* GET /problems: the list of problem kinds. */
enum MHD_Result api_system_problems(api_request *req)
{
    size_t len = 0;
    char *page = api_problem_index_page(&len);
    struct MHD_Response *resp = page ? api_response_text(req, page, len) : NULL;
    if (!resp)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    return api_reply(req, 200, resp, "text/html; charset=utf-8");
}

/* GET /problems/{kind}: what a problem "type" resolves to. */
enum MHD_Result api_system_problem(api_request *req)
{
    const api_problem_kind *kind = api_problem_kind_find(req->params[0]);
    if (!kind)
        return api_problem(req, 404, "NotFound", "rayd answers no problem of this kind",
                           json_pack("{s:s}", "kind", req->params[0]));
    size_t len = 0;
    char *page = api_problem_kind_page(kind, &len);
    struct MHD_Response *resp = page ? api_response_text(req, page, len) : NULL;
    if (!resp)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    return api_reply(req, 200, resp, "text/html; charset=utf-8");
}
