/* Registrations across the cluster. See registrations.h.
 *
 * DESIGN
 * - One Lua script per change (HSET or HDEL, then INCR of the version), so the version
 *   moves exactly when the set does. LOAD answers the version and the whole set as one JSON
 *   string (cjson), since the command thread's answers are strings, not arrays.
 * - Reloading reconciles: a registration whose spec is the one already here is left alone
 *   (its endpoint's concurrency queue and metrics go on); remote ones not in Redis are
 *   removed. Built-in and module names are never stored (refused before).
 * - Redis that lost its data answers version 0: nothing is reloaded then (what the nodes
 *   hold stays), so an emptied Redis never unregisters anything. */
#include "api/registrations.h"

#include <stdlib.h>
#include <string.h>

#include "api/forward.h"
#include "api/live.h"
#include "api/problem.h"
#include "api/redis_call.h"
#include "runtime/cluster.h"
#include "runtime/cluster_actors.h"
#include "runtime/events.h"
#include "runtime/remote_class.h"
#include "runtime/remote_function.h"

#define KEY_SET "registrations"
#define KEY_VERSION "registrations:version"
#define SYNC_PATH "/v1/cluster/registrations/sync"
#define SYNC_TIMEOUT 5.0 /* seconds a node may take to reload */

/* Answers 1 when the registration is new to the cluster, 0 when it replaced one. */
static const char SAVE[] =
    "local added = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) "
    "redis.call('INCR', KEYS[2]) return added";
static const char REMOVE[] =
    "if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then return redis.call('INCR', KEYS[2]) end "
    "return 0";
static const char LOAD[] =
    "local all = redis.call('HGETALL', KEYS[1]) local set = {} "
    "for i = 1, #all, 2 do set[all[i]] = all[i + 1] end "
    "return cjson.encode({version = tonumber(redis.call('GET', KEYS[2]) or '0'), set = set})";

static long long g_applied = -1; /* atomic: the version last reloaded (-1: none yet) */
static int g_polling;            /* atomic: a heartbeat's reload is under way */

/* ---- reloading -------------------------------------------------------------------------- */

typedef struct present {
    json_t *set;    /* borrowed: field -> spec text */
    json_t *stale;  /* names to remove */
    const char *prefix;
} present;

static void collect_stale_function(const rt_function *fn, void *arg)
{
    present *p = arg;
    char field[160];
    snprintf(field, sizeof(field), "function:%s", fn->name);
    if (fn->kind == RT_FUNCTION_REMOTE && !json_object_get(p->set, field))
        json_array_append_new(p->stale, json_string(fn->name));
}

static void collect_stale_class(const rt_actor_class *cls, void *arg)
{
    present *p = arg;
    char field[160];
    snprintf(field, sizeof(field), "class:%s", cls->name);
    if (cls->kind == RT_FUNCTION_REMOTE && !json_object_get(p->set, field))
        json_array_append_new(p->stale, json_string(cls->name));
}

static bool url_allowed(api_context *ctx, const char *name, const char *url)
{
    char *allow = api_live_remote_allow(ctx->live);
    bool ok = allow && rt_remote_url_allowed(allow, url);
    free(allow);
    if (!ok)
        rt_event_emit("warn", "registration refused",
                      json_pack("{s:s,s:s,s:s}", "name", name, "url", url, "reason",
                                "outside this node's RAYD_REMOTE_ALLOW"));
    return ok;
}

static void apply_function(api_context *ctx, const char *name, json_t *spec)
{
    const char *url = json_string_value(json_object_get(spec, "url"));
    rt_remote_function_spec s = {
        .name = name,
        .url = url,
        .timeout = json_number_value(json_object_get(spec, "timeout")),
        .max_concurrency = (unsigned)json_integer_value(json_object_get(spec, "max_concurrency")),
        .max_retries = (int)json_integer_value(json_object_get(spec, "max_retries")),
        .quick = json_is_true(json_object_get(spec, "quick")),
    };
    if (!url)
        return;
    const rt_function *now = rt_registry_get(ctx->registry, name);
    bool same = now && now->kind == RT_FUNCTION_REMOTE && now->url && strcmp(now->url, url) == 0 &&
                now->timeout == s.timeout && now->max_concurrency == s.max_concurrency &&
                now->max_retries == s.max_retries && now->quick == s.quick;
    if (now)
        rt_function_drop(now);
    if (same)
        return;
    if (!url_allowed(ctx, name, url)) {
        rt_registry_remove(ctx->registry, name);
        return;
    }
    rt_function *fn = rt_remote_function_new(ctx->remote, &s);
    bool replaced;
    if (fn && rt_registry_put_owned(ctx->registry, fn, rt_remote_function_release, &replaced) !=
                  RT_OK)
        rt_remote_function_release(fn);
}

static void apply_class(api_context *ctx, const char *name, json_t *spec)
{
    const char *url = json_string_value(json_object_get(spec, "url"));
    double timeout = json_number_value(json_object_get(spec, "timeout"));
    bool in_cluster = json_is_true(json_object_get(spec, "state_in_cluster")) && ctx->actor_dir;
    if (!url)
        return;
    const rt_actor_class *now = rt_actors_get_class(ctx->actors, name);
    bool same = now && now->kind == RT_FUNCTION_REMOTE && now->url &&
                strcmp(now->url, url) == 0 && now->timeout == timeout &&
                rt_remote_class_keeps_state(now) == in_cluster;
    if (now)
        rt_actor_class_drop(now);
    if (same)
        return;
    if (!url_allowed(ctx, name, url)) {
        rt_actors_remove_class(ctx->actors, name);
        return;
    }
    rt_state_keeper keeper = {rt_actor_dir_keep_state, ctx->actor_dir};
    rt_actor_class *cls = rt_remote_class_new(ctx->remote, name, url, timeout,
                                              in_cluster ? &keeper : NULL);
    bool replaced;
    if (cls && rt_actors_put_owned_class(ctx->actors, cls, rt_remote_class_release, &replaced) !=
                   RT_OK)
        rt_remote_class_release(cls);
}

/* Makes this node's remote registrations those of `loaded` ({"version","set"}). 0, or -1
 * when loaded is not such a value. */
static int reconcile(api_context *ctx, const char *loaded)
{
    json_t *v = loaded ? json_loads(loaded, 0, NULL) : NULL;
    json_t *set = json_object_get(v, "set");
    json_int_t version = json_integer_value(json_object_get(v, "version"));
    if (!v || !json_is_integer(json_object_get(v, "version"))) {
        json_decref(v);
        return -1;
    }
    if (version == 0) { /* Redis lost its data (or nothing was ever registered) */
        json_decref(v);
        return 0;
    }
    if (!json_is_object(set)) /* cjson encodes an empty table as {} or [] */
        set = NULL;
    const char *field;
    json_t *text;
    json_object_foreach(set, field, text) {
        json_t *spec = json_loads(json_string_value(text) ? json_string_value(text) : "", 0,
                                  NULL);
        if (strncmp(field, "function:", 9) == 0)
            apply_function(ctx, field + 9, spec);
        else if (strncmp(field, "class:", 6) == 0)
            apply_class(ctx, field + 6, spec);
        json_decref(spec);
    }
    present p = {.set = set, .stale = json_array()};
    rt_registry_each(ctx->registry, collect_stale_function, &p);
    size_t i;
    json_t *name;
    json_array_foreach(p.stale, i, name)
        rt_registry_remove(ctx->registry, json_string_value(name));
    json_array_clear(p.stale);
    rt_actors_each_class(ctx->actors, collect_stale_class, &p);
    json_array_foreach(p.stale, i, name)
        rt_actors_remove_class(ctx->actors, json_string_value(name));
    json_decref(p.stale);
    __atomic_store_n(&g_applied, (long long)version, __ATOMIC_RELEASE);
    json_decref(v);
    return 0;
}

/* ---- the heartbeat's poll ----------------------------------------------------------------- */

static void loaded_by_poll(const rt_redis_answer *answer, void *arg)
{
    if (answer->type == RT_REDIS_STRING)
        reconcile(arg, answer->str);
    __atomic_store_n(&g_polling, 0, __ATOMIC_RELEASE);
}

static void version_read(const rt_redis_answer *answer, void *arg)
{
    api_context *ctx = arg;
    long long version = answer->type == RT_REDIS_STRING ? atoll(answer->str)
                        : answer->type == RT_REDIS_NIL  ? 0
                                                        : -1;
    if (version > 0 && version != __atomic_load_n(&g_applied, __ATOMIC_ACQUIRE)) {
        const char *argv[] = {"EVAL", LOAD, "2", KEY_SET, KEY_VERSION};
        if (rt_cluster_command(ctx->cluster, 5, argv, loaded_by_poll, ctx) == 0)
            return; /* g_polling cleared when loaded */
    }
    __atomic_store_n(&g_polling, 0, __ATOMIC_RELEASE);
}

void api_registrations_tick(void *arg)
{
    api_context *ctx = arg;
    if (__atomic_exchange_n(&g_polling, 1, __ATOMIC_ACQ_REL))
        return; /* the last one is still under way */
    const char *argv[] = {"GET", KEY_VERSION};
    if (rt_cluster_command(ctx->cluster, 2, argv, version_read, ctx) != 0)
        __atomic_store_n(&g_polling, 0, __ATOMIC_RELEASE);
}

/* ---- the peer route -------------------------------------------------------------------- */

static int queue_load(rt_cluster *cluster, rt_redis_done_fn done, void *arg, void *queue_arg)
{
    const char *argv[] = {"EVAL", LOAD, "2", KEY_SET, KEY_VERSION};
    return rt_cluster_command(cluster, 5, argv, done, arg);
}

static void load_then(api_request *req, const rt_redis_answer *answer)
{
    if (answer->type == RT_REDIS_STRING && reconcile(req->ctx, answer->str) != 0) {
        /* unreadable: answered as a failure below */
    }
}

enum MHD_Result api_registrations_sync(api_request *req)
{
    if (!req->ctx->cluster)
        return api_problem(req, 404, "NotFound", "this node is not in cluster mode", NULL);
    const rt_redis_answer *a = api_redis_answer(req);
    if (!a) {
        if (api_cluster_unavailable(req))
            return api_redis_unavailable(req, "unreachable");
        return api_redis_call(req, queue_load, NULL, load_then);
    }
    if (a->type != RT_REDIS_STRING)
        return api_redis_unavailable(req, a->type == RT_REDIS_FAILED ? a->why : "an error");
    return api_reply_empty(req, 204);
}

/* ---- storing a change ---------------------------------------------------------------- */

typedef struct change {
    char *field, *spec; /* spec NULL: a removal */
    unsigned status;    /* the answer, once applied here */
    json_t *body;
    bool replying;      /* the other nodes are being told */
} change;

static void change_free(void *state)
{
    change *c = state;
    if (!c)
        return;
    free(c->field);
    free(c->spec);
    json_decref(c->body);
    free(c);
}

static int queue_change(rt_cluster *cluster, rt_redis_done_fn done, void *arg, void *queue_arg)
{
    change *c = queue_arg;
    if (c->spec) {
        const char *argv[] = {"EVAL", SAVE, "2", KEY_SET, KEY_VERSION, c->field, c->spec};
        return rt_cluster_command(cluster, 7, argv, done, arg);
    }
    const char *argv[] = {"EVAL", REMOVE, "2", KEY_SET, KEY_VERSION, c->field};
    return rt_cluster_command(cluster, 6, argv, done, arg);
}

static bool clustered(const api_request *req)
{
    return req->ctx->cluster && !api_header((api_request *)req, API_FORWARDED_HEADER);
}

bool api_registration_replaced(const api_request *req, bool here)
{
    const rt_redis_answer *a = clustered(req) ? api_redis_answer(req) : NULL;
    return a && a->type == RT_REDIS_INTEGER ? a->integer == 0 : here;
}

int api_registration_store(api_request *req, const char *field, json_t *spec)
{
    if (!clustered(req))
        return 0;
    const rt_redis_answer *a = api_redis_answer(req);
    if (a) { /* resumed: Redis answered */
        if (a->type != RT_REDIS_INTEGER) {
            req->retry_after = 1;
            api_problemf(req, 503, "ClusterUnavailable",
                         "Redis, which holds registrations across the cluster, did not answer "
                         "(%s); retry",
                         a->type == RT_REDIS_FAILED ? a->why : a->str ? a->str : "an error");
            return 1;
        }
        return 0;
    }
    if (api_cluster_unavailable(req)) {
        req->retry_after = 1;
        api_problem(req, 503, "ClusterUnavailable",
                    "Redis, which holds registrations across the cluster, is unreachable; "
                    "retry (registrations already known keep working)",
                    NULL);
        return 1;
    }
    change *c = calloc(1, sizeof(*c));
    if (c) {
        c->field = strdup(field);
        c->spec = spec ? json_dumps(spec, JSON_COMPACT) : NULL;
    }
    if (!c || !c->field || (spec && !c->spec)) {
        change_free(c);
        api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        return 1;
    }
    if (req->handler_state_free)
        req->handler_state_free(req->handler_state);
    req->handler_state = c;
    req->handler_state_free = change_free;
    api_redis_call(req, queue_change, c, NULL);
    return 1;
}

enum MHD_Result api_registration_reply(api_request *req, unsigned status, json_t *body)
{
    change *c = req->handler_state_free == change_free ? req->handler_state : NULL;
    if (!clustered(req) || !c) {
        if (!body)
            return api_reply_empty(req, status);
        return api_reply_json(req, status, body);
    }
    c->status = status;
    c->body = body;
    c->replying = true;
    rt_cluster_node *nodes = NULL;
    size_t n = rt_cluster_nodes(req->ctx->cluster, &nodes), peers = 0;
    const char **urls = calloc(n ? n : 1, sizeof(*urls));
    const char **paths = calloc(n ? n : 1, sizeof(*paths));
    for (size_t i = 0; urls && paths && i < n; i++)
        if (nodes[i].alive && !nodes[i].self) {
            urls[peers] = nodes[i].url;
            paths[peers++] = SYNC_PATH;
        }
    enum MHD_Result r = MHD_YES;
    if (urls && paths)
        r = api_forward_fanout_each(req, urls, paths, peers, "POST", SYNC_TIMEOUT);
    free(urls);
    free(paths);
    free(nodes);
    if (api_forward_fanout_done(req) && !req->replied)
        return api_registration_answer(req); /* no other node, or out of memory */
    return r;
}

bool api_registration_answered(const api_request *req)
{
    const change *c = req->handler_state_free == change_free ? req->handler_state : NULL;
    return c && c->replying && api_forward_fanout_done(req);
}

enum MHD_Result api_registration_answer(api_request *req)
{
    change *c = req->handler_state;
    json_t *body = c->body;
    c->body = NULL;
    c->replying = false;
    if (!body)
        return api_reply_empty(req, c->status);
    return api_reply_json(req, c->status, body);
}
