/* /v1/actors and /v1/actor-classes: create, list, get, by-name, call (with Prefer: wait),
 * kill, and the classes that can be instantiated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/actors_cluster.h"
#include "api/decode.h"
#include "api/handlers.h"
#include "api/listing.h"
#include "api/redis_call.h"
#include "api/live.h"
#include "api/park.h"
#include "api/problem.h"
#include "api/redis_call.h"
#include "api/registrations.h"
#include "runtime/actor.h"
#include "runtime/clock.h"
#include "runtime/cluster_actors.h"
#include "runtime/events.h"
#include "runtime/remote_class.h"

json_t *api_actor_info_json(const rt_actor_info *info)
{
    char when[40];
    json_t *a = json_pack("{s:s,s:s,s:o,s:s,s:I,s:I,s:i,s:i,s:I,s:s}", "actor_id",
                          info->actor_id, "class", info->class_name, "name",
                          info->name[0] ? json_string(info->name) : json_null(), "state",
                          rt_actor_state_name(info->state), "calls_pending",
                          (json_int_t)info->calls_pending, "calls_done",
                          (json_int_t)info->calls_done, "restarts", (int)info->restarts,
                          "max_restarts", info->max_restarts, "max_pending_calls",
                          (json_int_t)info->max_pending_calls, "created_at",
                          rt_clock_format(info->created_at, when, sizeof(when)));
    if (info->state == RT_ACTOR_DEAD)
        json_object_set_new(a, "death_cause",
                            info->death_cause ? api_problem_from_error(info->death_cause, NULL)
                                              : json_null());
    return a;
}

static int check_actor_id(api_request *req, const char *id)
{
    if (rt_ref_valid(id))
        return 0;
    api_problemf(req, 400, "BadRequest",
                 "'%.80s' is not an actor id: ids are 1 to 64 characters of [A-Za-z0-9_-]", id);
    return -1;
}

/* ---- POST /v1/actors ---------------------------------------------------------------- */

enum MHD_Result api_actors_reply_created(api_request *req, rt_status st, rt_actor_info *info,
                                         bool created, bool detached, const char *err,
                                         const char *name)
{
    if (st == RT_ENOTFOUND)
        return api_problem(req, 404, "NotFound", err, NULL);
    if (st == RT_EEXIST)
        return api_problem(req, 409, "Conflict", err, json_pack("{s:s}", "name", name));
    if (st == RT_ENOMEM)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    if (st != RT_OK)
        return api_problem(req, 400, "BadRequest", err, NULL);
    /* A detached actor outlives the session; one got with get_if_exists is not made here. */
    if (created && !detached && api_session_adopt_actor(req, info->actor_id) != 0)
        return api_session_reply_closed(req);
    return api_actors_reply_info(req, created ? 201 : 200, api_actor_info_json(info));
}

enum MHD_Result api_actors_reply_info(api_request *req, unsigned status, json_t *body)
{
    const char *id = json_string_value(json_object_get(body, "actor_id"));
    char location[16 + RT_REF_SIZE];
    snprintf(location, sizeof(location), "/v1/actors/" "%s", id ? id : "");
    struct MHD_Response *resp = api_response_json(req, body);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location);
    return api_reply(req, status, resp, "application/json");
}

enum MHD_Result api_actors_create(api_request *req)
{
    if (req->ctx->cluster)
        return api_actors_create_cluster(req);
    if (api_body_json(req) != 0)
        return MHD_YES;
    rt_actor_spec spec;
    bool detached;
    char err[256];
    if (api_decode_actor(req->json, &spec, &detached, err, sizeof(err)) != API_DECODE_OK)
        return api_problem(req, 400, "BadRequest", err, NULL);
    if (json_string_value(json_object_get(json_object_get(req->json, "options"), "node")))
        return api_problem(req, 400, "BadRequest",
                           "options.node places an actor on a node of a cluster, and this "
                           "rayd is not in cluster mode (RAYD_CLUSTER)",
                           NULL);
    rt_actor_info info;
    bool created = false;
    rt_status st = rt_actor_create(req->ctx->actors, &spec, &info, &created, err, sizeof(err));
    enum MHD_Result r = api_actors_reply_created(req, st, &info, created, detached, err,
                                                 spec.name);
    if (st == RT_OK)
        rt_actor_info_release(&info);
    return r;
}

/* ---- GET /v1/actors, /v1/actors/{id}, /v1/actors/by-name/{name} ----------------------- */

static int actors_list_check(api_request *req)
{
    const char *state = api_query(req, "state");
    if (state && rt_actor_state_parse(state) < 0) {
        api_problem(req, 400, "BadRequest",
                    "state must be one of PENDING_CREATION, ALIVE, RESTARTING, DEAD", NULL);
        return -1;
    }
    return 0;
}

static int actors_list_local(api_request *req, uint64_t after, size_t limit,
                             api_list_page *page)
{
    const char *state = api_query(req, "state");
    rt_actor_info *infos = calloc(limit, sizeof(*infos));
    if (!infos)
        return -1;
    size_t n = rt_actor_list(req->ctx->actors, after, state ? rt_actor_state_parse(state) : -1,
                             api_query(req, "class"), limit, infos, &page->next);
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(page->items, api_actor_info_json(&infos[i]));
        if (page->seqs) {
            page->seqs[i] = infos[i].seq;
            page->times[i] = infos[i].created_at;
        }
        rt_actor_info_release(&infos[i]);
    }
    page->n = n;
    free(infos);
    return 0;
}

static const char *const ACTORS_LIST_FILTERS[] = {"state", "class", NULL};
static const api_list_kind ACTORS_LISTING = {
    "actors", "/v1/actors", "/v1/cluster/list/actors", ACTORS_LIST_FILTERS,
    actors_list_check, actors_list_local,
};

enum MHD_Result api_actors_list(api_request *req)
{
    return api_list(req, &ACTORS_LISTING);
}

enum MHD_Result api_actors_list_peer(api_request *req)
{
    return api_list_peer(req, &ACTORS_LISTING);
}

enum MHD_Result api_actors_get(api_request *req)
{
    const char *id = req->params[0];
    if (check_actor_id(req, id) != 0)
        return MHD_YES;
    enum MHD_Result result;
    if (req->ctx->cluster && api_actor_foreign(req, id, API_ACTOR_GET, &result))
        return result;
    rt_actor_info info;
    if (rt_actor_get(req->ctx->actors, id, &info) != RT_OK)
        return api_problemf(req, 404, "NotFound", "actor %s does not exist", id);
    json_t *body = api_actor_info_json(&info);
    rt_actor_info_release(&info);
    return api_reply_json(req, 200, body);
}

enum MHD_Result api_actors_get_by_name(api_request *req)
{
    if (req->handler_state) /* cluster mode, resumed */
        return api_actors_by_name_cluster(req);
    rt_actor_info info;
    if (rt_actor_get_by_name(req->ctx->actors, req->params[0], &info) != RT_OK) {
        if (req->ctx->cluster)
            return api_actors_by_name_cluster(req); /* another node may have it */
        return api_problemf(req, 404, "NotFound", "no live actor is named '%.128s'",
                            req->params[0]);
    }
    json_t *body = api_actor_info_json(&info);
    rt_actor_info_release(&info);
    return api_reply_json(req, 200, body);
}

/* ---- POST /v1/actors/{id}/methods/{method} -------------------------------------------- */

typedef struct call_state {
    char ref[RT_REF_SIZE];
} call_state;

static enum MHD_Result reply_call_receipt(api_request *req, const char *ref)
{
    char location[16 + RT_REF_SIZE];
    snprintf(location, sizeof(location), "/v1/objects/%s", ref);
    struct MHD_Response *resp = api_response_json(req, json_pack("{s:s}", "ref", ref));
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location);
    return api_reply(req, 202, resp, "application/json");
}

/* Prefer: wait rounds: the result once ready, else the receipt at the deadline. */
static enum MHD_Result call_answer_or_park(api_request *req, const char *ref)
{
    rt_object_view view;
    rt_store_peek(req->ctx->store, ref, &view);
    enum MHD_Result r;
    if (view.state == RT_OBJ_PENDING) {
        /* The call is accepted: when no more requests may wait, answer the receipt. */
        if (rt_clock_monotonic() < req->deadline && !api_parking_full(req)) {
            const char *refs[1] = {ref};
            r = api_park_on_refs(req, refs, 1, 1);
        } else {
            r = reply_call_receipt(req, ref);
        }
    } else {
        size_t n = strnlen(ref, sizeof(req->ray_ref) - 1); /* as tasks.c: not snprintf */
        memcpy(req->ray_ref, ref, n);
        req->ray_ref[n] = '\0';
        r = api_objects_reply_resolved(req, &view);
    }
    rt_object_view_release(&view);
    return r;
}

enum MHD_Result api_actors_call(api_request *req)
{
    if (req->handler_state && !api_actor_locating(req))
        return call_answer_or_park(req, ((call_state *)req->handler_state)->ref);
    const char *id = req->params[0], *method = req->params[1];
    if (check_actor_id(req, id) != 0)
        return MHD_YES;
    enum MHD_Result result;
    if (req->ctx->cluster && (api_actor_foreign(req, id, API_ACTOR_CALL, &result) ||
                              api_actor_lease_lapsed(req, id, &result)))
        return result;
    json_t *args = NULL, *kwargs = NULL;
    double result_ttl;
    char err[256];
    if (req->body_len > 0 && api_body_json(req) != 0)
        return MHD_YES;
    if (api_decode_call(req->json, &args, &kwargs, &result_ttl, err, sizeof(err)) !=
        API_DECODE_OK)
        return api_problem(req, 400, "BadRequest", err, NULL);
    call_state *cs = calloc(1, sizeof(*cs));
    if (!cs)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    api_read_prefer_wait(req);
    if (req->ctx->fetch)
        api_cluster_want_args(req->ctx, args, kwargs);
    rt_status st = rt_actor_call_opts(req->ctx->actors, id, method, args, kwargs,
                                      req->prefer_wait > 0, req->request_id,
                                      req->traceparent[0] ? req->traceparent : NULL,
                                      result_ttl, cs->ref, err, sizeof(err));
    if (st != RT_OK) {
        free(cs);
        req->prefer_wait = 0; /* refused before any wait: no Preference-Applied */
        json_t *extra = json_pack("{s:s,s:s}", "actor_id", id, "method", method);
        switch (st) {
        case RT_ENOTFOUND: return api_problem(req, 404, "NotFound", err, extra);
        case RT_ESTATE: return api_problem(req, 410, "ActorDied", err, extra);
        case RT_ELIMIT:
            req->retry_after = 1;
            return api_problem(req, 429, "TooManyRequests", err, extra);
        case RT_ENOMEM:
            json_decref(extra);
            return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        default:
            /* an unknown method is a 404: classes declare their methods */
            if (strstr(err, "has no method"))
                return api_problem(req, 404, "NotFound", err, extra);
            return api_problem(req, 400, "BadRequest", err, extra);
        }
    }
    req->handler_state = cs;
    req->handler_state_free = free;
    if (api_session_adopt_objects(req, &cs->ref, 1) != 0) {
        req->prefer_wait = 0;
        return api_session_reply_closed(req);
    }
    if (req->prefer_wait <= 0)
        return reply_call_receipt(req, cs->ref);
    req->deadline = rt_clock_monotonic() + req->prefer_wait;
    return call_answer_or_park(req, cs->ref);
}

/* ---- DELETE /v1/actors/{id} ----------------------------------------------------------- */

enum MHD_Result api_actors_kill(api_request *req)
{
    if (req->handler_state && !api_actor_locating(req)) /* resumed: the name is free in Redis */
        return api_reply_empty(req, 204);
    const char *id = req->params[0];
    if (check_actor_id(req, id) != 0)
        return MHD_YES;
    enum MHD_Result result;
    if (req->ctx->cluster && api_actor_foreign(req, id, API_ACTOR_KILL, &result))
        return result;
    rt_actor_info info;
    if (rt_actor_get(req->ctx->actors, id, &info) != RT_OK)
        return api_problemf(req, 404, "NotFound", "actor %s does not exist", id);
    char name[RT_ACTOR_NAME_MAX + 1];
    snprintf(name, sizeof(name), "%s", info.state != RT_ACTOR_DEAD ? info.name : "");
    rt_actor_info_release(&info);
    if (rt_actor_kill(req->ctx->actors, id) != RT_OK)
        return api_problemf(req, 404, "NotFound", "actor %s does not exist", id);
    /* Cluster mode: answer once Redis has freed the name, so that a creation through any
     * node after the 204 finds it free. */
    if (req->ctx->cluster && name[0])
        return api_actors_release_name(req, name, id);
    return api_reply_empty(req, 204);
}

/* ---- GET /v1/actor-classes ------------------------------------------------------------ */

static void add_class(const rt_actor_class *cls, void *arg)
{
    json_t *methods = json_array();
    for (size_t i = 0; i < cls->nmethods; i++)
        json_array_append_new(
            methods, json_pack("{s:s,s:s,s:s}", "name", cls->methods[i].name, "args",
                               cls->methods[i].args_doc ? cls->methods[i].args_doc : "",
                               "description",
                               cls->methods[i].description ? cls->methods[i].description : ""));
    json_t *c = json_pack("{s:s,s:s,s:s,s:s,s:o}", "name", cls->name, "kind",
                          rt_function_kind_name(cls->kind), "description",
                          cls->description ? cls->description : "", "args",
                          cls->args_doc ? cls->args_doc : "", "methods", methods);
    if (cls->url) {
        json_object_set_new(c, "url", json_string(cls->url));
        json_object_set_new(c, "timeout", json_real(cls->timeout));
        json_object_set_new(c, "state_in_cluster", json_boolean(rt_remote_class_keeps_state(cls)));
    }
    json_array_append_new(arg, c);
}

enum MHD_Result api_actor_classes_list(api_request *req)
{
    json_t *list = json_array();
    rt_actors_each_class(req->ctx->actors, add_class, list);
    return api_reply_json(req, 200, json_pack("{s:o}", "classes", list));
}

/* ---- PUT and DELETE /v1/actor-classes/{name}: remote actor classes --------------------- */

enum MHD_Result api_actor_classes_put(api_request *req)
{
    static const char *const KEYS[] = {"url", "timeout", "state_in_cluster", NULL};
    const char *name = req->params[0];
    if (api_registration_answered(req)) /* cluster mode: every live node has it */
        return api_registration_answer(req);
    static const char DISABLED[] =
        "remote actor classes are disabled: start rayd with RAYD_REMOTE_ALLOW (or "
        "--remote-allow, or in RAYD_CONFIG_FILE, which SIGHUP reloads) listing the "
        "scheme://host:port prefixes it may call";
    char *allow = api_live_remote_allow(req->ctx->live);
    bool enabled = allow != NULL;
    free(allow); /* checked again, as it is then, with the url */
    if (!enabled)
        return api_problem(req, 403, "Forbidden", DISABLED, NULL);
    if (api_body_json(req) != 0)
        return MHD_YES;
    if (!json_is_object(req->json))
        return api_problem(req, 400, "BadRequest",
                           "the body must be {\"url\", \"timeout\", \"state_in_cluster\"}",
                           NULL);
    if (api_json_only_keys(req, req->json, KEYS, "the body") != 0)
        return MHD_YES;
    json_t *url = json_object_get(req->json, "url"), *timeout = json_object_get(req->json, "timeout");
    json_t *in_cluster = json_object_get(req->json, "state_in_cluster");
    if (in_cluster && !json_is_boolean(in_cluster))
        return api_problem(req, 400, "BadRequest", "state_in_cluster must be true or false",
                           NULL);
    if (json_is_true(in_cluster) && !req->ctx->actor_dir)
        return api_problem(req, 400, "BadRequest",
                           "state_in_cluster keeps each actor's state in the cluster's Redis, "
                           "and this rayd is not in cluster mode (RAYD_CLUSTER)",
                           NULL);
    /* The list in force now: a SIGHUP may have changed it since the check above. */
    allow = api_live_remote_allow(req->ctx->live);
    if (!allow)
        return api_problem(req, 403, "Forbidden", DISABLED, NULL);
    int refused = api_functions_check_url(req, url, allow);
    free(allow);
    if (refused != 0)
        return MHD_YES;
    if (timeout && (!json_is_number(timeout) || json_number_value(timeout) <= 0 ||
                    json_number_value(timeout) > 3600))
        return api_problem(req, 400, "BadRequest",
                           "timeout must be a number of seconds, > 0 and at most 3600", NULL);
    if (!*name || strlen(name) > RT_ACTOR_NAME_MAX)
        return api_problem(req, 400, "BadRequest", "class names are 1 to 128 characters", NULL);
    if (req->ctx->cluster) {
        /* Refused here rather than stored in Redis for every node to refuse. */
        const rt_actor_class *now = rt_actors_get_class(req->ctx->actors, name);
        bool fixed = now && now->kind != RT_FUNCTION_REMOTE;
        if (now)
            rt_actor_class_drop(now);
        if (fixed)
            return api_problem(req, 409, "Conflict", "the name belongs to a built-in or module class",
                               json_pack("{s:s}", "class", name));
    }
    char field[160];
    snprintf(field, sizeof(field), "class:%s", name);
    json_t *stored = json_pack("{s:s,s:f,s:b}", "url", json_string_value(url), "timeout",
                               timeout ? json_number_value(timeout) : 60.0, "state_in_cluster",
                               json_is_true(in_cluster));
    int pending = api_registration_store(req, field, stored);
    json_decref(stored);
    if (pending)
        return MHD_YES; /* stored in Redis first (cluster mode), or refused */
    rt_state_keeper keeper = {rt_actor_dir_keep_state, req->ctx->actor_dir};
    rt_actor_class *cls = rt_remote_class_new(req->ctx->remote, name, json_string_value(url),
                                              timeout ? json_number_value(timeout) : 60,
                                              json_is_true(in_cluster) ? &keeper : NULL);
    if (!cls)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    /* The answer is made first: once listed, cls may be replaced and freed by another
     * request at any moment. */
    json_t *list = json_array();
    add_class(cls, list);
    json_t *body = json_incref(json_array_get(list, 0));
    json_decref(list);
    bool replaced = false;
    rt_status st = rt_actors_put_owned_class(req->ctx->actors, cls, rt_remote_class_release,
                                             &replaced);
    if (st != RT_OK) {
        json_decref(body);
        rt_remote_class_release(cls);
        if (st == RT_EEXIST)
            return api_problem(req, 409, "Conflict", "the name belongs to a built-in or module class",
                               json_pack("{s:s}", "class", name));
        return api_problem_status(req, st, "the class");
    }
    replaced = api_registration_replaced(req, replaced);
    rt_event_emit("info", "registration changed",
                  json_pack("{s:s,s:s,s:s,s:s?}", "kind", "class", "name", name, "change",
                            replaced ? "replaced" : "registered", "url", json_string_value(url)));
    return api_registration_reply(req, replaced ? 200 : 201, body);
}

enum MHD_Result api_actor_classes_delete(api_request *req)
{
    if (api_registration_answered(req))
        return api_registration_answer(req);
    char field[160];
    snprintf(field, sizeof(field), "class:%s", req->params[0]);
    if (api_registration_store(req, field, NULL))
        return MHD_YES; /* removed from Redis first (cluster mode), or refused */
    const rt_redis_answer *stored = api_redis_answer(req);
    bool removed_in_redis = stored && stored->type == RT_REDIS_INTEGER && stored->integer > 0;
    rt_status st = rt_actors_remove_class(req->ctx->actors, req->params[0]);
    if (st == RT_ENOTFOUND && removed_in_redis)
        st = RT_OK; /* this node had not taken it (outside its allow list): gone anyway */
    if (st == RT_ENOTFOUND)
        return api_problem(req, 404, "NotFound", "the actor class does not exist",
                           json_pack("{s:s}", "class", req->params[0]));
    if (st == RT_ESTATE)
        return api_problem(req, 409, "Conflict",
                           "built-in and module classes cannot be removed",
                           json_pack("{s:s}", "class", req->params[0]));
    rt_event_emit("info", "registration changed",
                  json_pack("{s:s,s:s,s:s}", "kind", "class", "name", req->params[0], "change",
                            "removed"));
    return api_registration_reply(req, 204, NULL);
}
