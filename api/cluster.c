/* Cluster mode's own routes: what /v1/status shows of the cluster, and the peer route by
 * which an owner tells other nodes to drop their copies of an object it freed; and the
 * stand-ins that let work here depend on other nodes' objects. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/forward.h"
#include "api/handlers.h"
#include "api/problem.h"
#include "runtime/args.h"
#include "runtime/clock.h"
#include "runtime/module.h"

json_t *api_cluster_status(const api_context *ctx)
{
    rt_cluster_info info;
    rt_cluster_get_info(ctx->cluster, &info);
    rt_cluster_node *nodes;
    size_t n = rt_cluster_nodes(ctx->cluster, &nodes);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        const rt_cluster_node *m = &nodes[i];
        char started[40];
        json_t *node = json_pack(
            "{s:s,s:s,s:b,s:b,s:I,s:{s:I,s:I,s:I}}", "tag", m->tag, "url", m->url, "alive",
            m->alive, "self", m->self, "epoch", (json_int_t)m->epoch, "load", "queued",
            (json_int_t)m->load.queued, "running", (json_int_t)m->load.running, "memory",
            (json_int_t)m->load.memory);
        json_object_set_new(node, "started_at",
                            m->started_at > 0
                                ? json_string(rt_clock_format(m->started_at, started,
                                                              sizeof(started)))
                                : json_null());
        json_t *modules = rt_cluster_node_modules(ctx->cluster, m->tag);
        json_object_set_new(node, "modules", modules ? modules : json_null());
        json_array_append_new(list, node);
    }
    free(nodes);
    json_t *cluster = json_pack("{s:b,s:o,s:s,s:s,s:o}", "joined", info.joined, "node",
                                info.joined ? json_string(info.tag) : json_null(), "url",
                                info.url, "redis", info.redis_up ? "connected" : "unavailable",
                                "nodes", list);
    if (info.joined)
        json_object_set_new(cluster, "epoch", json_integer((json_int_t)info.epoch));
    if (!info.redis_up)
        json_object_set_new(cluster, "redis_error", json_string(info.redis_error));
    return cluster;
}

enum MHD_Result api_cluster_copy_delete(api_request *req)
{
    const char *ref = req->params[0];
    if (!req->ctx->cluster)
        return api_problem(req, 404, "NotFound", "this node is not in cluster mode", NULL);
    if (!rt_ref_valid(ref))
        return api_problem(req, 400, "BadRequest", "not a ref", NULL);
    rt_store_drop_copy(req->ctx->store, ref); /* no copy here is fine: nothing to drop */
    return api_reply_empty(req, 204);
}

/* One argument: a stand-in for it when it is a ref another node owns. */
static void want_one(rt_fetch *fetch, json_t *v)
{
    if (!rt_args_is_ref(v))
        return;
    const char *ref = json_string_value(json_object_get(v, "$ref"));
    char tag[RT_NODE_TAG_SIZE];
    if (ref && rt_ref_valid(ref))
        rt_fetch_want(fetch, ref, tag);
}

void api_cluster_want_args(const api_context *ctx, json_t *args, json_t *kwargs)
{
    if (!ctx->fetch)
        return;
    size_t i;
    const char *key;
    json_t *v;
    json_array_foreach(args, i, v) want_one(ctx->fetch, v);
    json_object_foreach(kwargs, key, v) want_one(ctx->fetch, v);
}

/* See handlers.h. This node has more than
 * RAYD_SPILLBACK_QUEUED jobs waiting for a worker and a live node has fewer (by its last
 * heartbeat). Copies the least loaded such node's URL into url, its tag into tag (may be
 * NULL). */
bool api_cluster_spill_target(api_request *req, char url[RT_CLUSTER_URL_MAX],
                              char tag[RT_NODE_TAG_SIZE])
{
    return api_cluster_spill_target_for(req, NULL, false, url, tag);
}

bool api_cluster_spill_target_for(api_request *req, const char *name, bool is_class,
                                  char url[RT_CLUSTER_URL_MAX], char tag[RT_NODE_TAG_SIZE])
{
    size_t limit = req->ctx->config.spillback_queued;
    if (!limit || api_header(req, API_FORWARDED_HEADER))
        return false;
    rt_scheduler_stats ss;
    rt_scheduler_get_stats(req->ctx->scheduler, &ss);
    if (ss.queued <= limit)
        return false;
    /* A module's work goes only where that module is loaded too. */
    bool per_node = name && rt_modules_provide(name, is_class);
    rt_cluster_node *nodes;
    size_t n = rt_cluster_nodes(req->ctx->cluster, &nodes), best = n;
    for (size_t i = 0; i < n; i++) {
        const rt_cluster_load *l = &nodes[i].load;
        if (nodes[i].self || !nodes[i].alive || l->queued >= ss.queued)
            continue;
        if (per_node && !rt_cluster_node_provides(req->ctx->cluster, nodes[i].tag, name, is_class))
            continue;
        if (best == n || l->queued < nodes[best].load.queued ||
            (l->queued == nodes[best].load.queued && l->running < nodes[best].load.running))
            best = i;
    }
    if (best < n) {
        snprintf(url, RT_CLUSTER_URL_MAX, "%s", nodes[best].url);
        if (tag)
            snprintf(tag, RT_NODE_TAG_SIZE, "%s", nodes[best].tag);
    }
    free(nodes);
    return best < n;
}

bool api_cluster_module_missing(api_request *req, const char *name, bool is_class,
                                const char *prefix, enum MHD_Result *result)
{
    if (!req->ctx->cluster || !name)
        return false;
    json_t *found = rt_cluster_module_providers(req->ctx->cluster, name, is_class);
    if (!found)
        return false;
    const char *module = json_string_value(json_object_get(found, "module"));
    json_t *nodes = json_object_get(found, "nodes");
    /* "4 (http://...), 7 (http://...)": the first few; the member lists them all. */
    char where[512] = "";
    size_t used = 0, i;
    json_t *v;
    json_array_foreach(nodes, i, v)
    {
        if (i == 4) {
            snprintf(where + used, sizeof(where) - used, ", ...");
            break;
        }
        int w = snprintf(where + used, sizeof(where) - used, "%s%s (%s)", i ? ", " : "",
                         json_string_value(json_object_get(v, "node")),
                         json_string_value(json_object_get(v, "url")));
        if (w < 0 || (size_t)w >= sizeof(where) - used)
            break;
        used += (size_t)w;
    }
    const char *self = rt_cluster_tag(req->ctx->cluster);
    char detail[1024];
    snprintf(detail, sizeof(detail),
             "%s%s '%.128s' is provided by the C module '%.128s', which this node (%s) did not "
             "load (modules are per node: --module); %s: %s",
             prefix, is_class ? "actor class" : "function", name, module ? module : "",
             self[0] ? self : "not joined yet",
             json_array_size(nodes) == 1 ? "the node that has it" : "the nodes that have it",
             where);
    json_object_set_new(found, is_class ? "class" : "function", json_string(name));
    json_object_set_new(found, "node", json_string(self));
    *result = api_problem(req, 409, "ModuleNotLoaded", detail, found);
    return true;
}
