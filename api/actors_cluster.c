/* Actors across the nodes of a cluster: relays to the owner, placement, global names. See
 * actors_cluster.h.
 *
 * DESIGN
 * - Nothing here holds a thread: relays and checks go through api/forward.h, Redis
 *   commands through api/redis_call.h; each suspends the request and the handler runs
 *   again with its state in handler_state.
 * - Creating a named actor: the owner promises an actor id first (rt_actor_reserve: asked
 *   for it, it answers a PENDING_CREATION record), claims the name for it in Redis
 *   (runtime/cluster_names.h), and makes the actor on the command thread as soon as Redis
 *   says the claim is its own. A node that finds the name held by another id checks that holder with its
 *   owner: alive, the name is taken (409, or that actor with get_if_exists); dead, gone,
 *   or owned by a dead node, the name is stale and is claimed again replacing exactly
 *   that holder. */
#include "api/actors_cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/decode.h"
#include "api/forward.h"
#include "api/handlers.h"
#include "api/problem.h"
#include "api/redis_call.h"
#include "runtime/cluster.h"
#include "runtime/cluster_actors.h"
#include "runtime/cluster_names.h"

#define CLAIM_TRIES 4        /* stale holders replaced in one creation at most */
#define CHECK_TIMEOUT 5.0    /* seconds for asking a holder's owner about it */

/* Percent-encodes s for one path segment into out (size bytes); false when it does not fit. */
static bool path_segment(const char *s, char *out, size_t size)
{
    static const char HEX[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
                     *p == '~';
        if (o + (plain ? 1 : 3) >= size)
            return false;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = HEX[*p >> 4];
            out[o++] = HEX[*p & 15];
        }
    }
    out[o] = '\0';
    return true;
}

/* ---- requests about one actor: relayed to its owner ---------------------------------- */

/* Whether this node has actor id in its table (made here, or restarted here after its
 * node died). */
static bool held_here(api_request *req, const char *id)
{
    rt_actor_info info;
    if (rt_actor_get(req->ctx->actors, id, &info) != RT_OK)
        return false;
    rt_actor_info_release(&info);
    return true;
}

/* The state of a request waiting for the directory (rt_actor_dir_locate). */
typedef struct locate_state {
    rt_actor_dir *dir;
    char id[RT_REF_SIZE];
} locate_state;

static void locate_state_free(void *p)
{
    free(p);
}

bool api_actor_locating(const api_request *req)
{
    return req->handler_state && req->handler_state_free == locate_state_free;
}

/* Ends a locate: its handler state goes, so that the handler may use its own. */
static void locate_done(api_request *req)
{
    if (!api_actor_locating(req))
        return;
    req->handler_state_free(req->handler_state);
    req->handler_state = NULL;
    req->handler_state_free = NULL;
}

static int queue_locate(rt_cluster *cluster, rt_redis_done_fn done, void *arg, void *state)
{
    (void)cluster;
    locate_state *ls = state;
    return rt_actor_dir_locate(ls->dir, ls->id, done, arg);
}

/* Asks the directory where actor id lives now (the handler runs again: see located). */
static enum MHD_Result locate(api_request *req, const char *id)
{
    if (api_cluster_unavailable(req))
        return api_redis_unavailable(req, "unreachable");
    locate_state *ls = calloc(1, sizeof(*ls));
    if (!ls)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    ls->dir = req->ctx->actor_dir;
    snprintf(ls->id, sizeof(ls->id), "%s", id);
    req->handler_state = ls;
    req->handler_state_free = locate_state_free;
    return api_redis_call(req, queue_locate, ls, NULL);
}

/* The answer for an actor whose node died and that the directory does not have (it could
 * not restart: max_restarts 0, or none left, or it was killed). */
static enum MHD_Result reply_owner_died(api_request *req, const char *id, const char *tag,
                                        api_actor_request what)
{
    char detail[200];
    snprintf(detail, sizeof(detail),
             "actor %s died with node %s, which held it (its heartbeat stopped)", id, tag);
    json_t *fields = json_pack("{s:s,s:s,s:b}", "actor_id", id, "owner", tag, "owner_died", 1);
    return what == API_ACTOR_CALL ? api_problem(req, 410, "ActorDied", detail, fields)
                                  : api_problem(req, 404, "NotFound", detail, fields);
}

/* Relays the request about actor id to the node at url (tag). A request that arrived
 * forwarded is relayed again only when the directory says where the actor lives (it was
 * sent to the node its id names, which no longer has it): the node the directory names
 * answers from its own table, or 503, and never relays it further, so there is no loop. */
static enum MHD_Result relay(api_request *req, const char *id, api_actor_request what,
                             const char *url, const char *tag, bool from_directory)
{
    if (!from_directory && api_header(req, API_FORWARDED_HEADER)) {
        req->retry_after = 1;
        return api_problemf(req, 503, "ClusterUnavailable",
                            "actor %s lives on node %s, not on this node (a peer's "
                            "membership is out of date); retry",
                            id, tag);
    }
    char path[64 + RT_REF_SIZE + 3 * RT_ACTOR_NAME_MAX];
    char method[3 * RT_ACTOR_NAME_MAX + 1];
    if (what == API_ACTOR_CALL) {
        if (!path_segment(req->params[1], method, sizeof(method)))
            return api_problem(req, 404, "NotFound", "the actor has no such method",
                               json_pack("{s:s}", "actor_id", id));
        snprintf(path, sizeof(path), "/v1/actors/%s/methods/%s", id, method);
        return api_forward_relay(req, url, path, tag, NULL, API_FORWARD_ACTOR_CALL,
                                 req->body ? req->body : "", req->body_len);
    }
    snprintf(path, sizeof(path), "/v1/actors/%s", id);
    return api_forward_relay(req, url, path, tag, NULL, 0, NULL, 0);
}

/* The handler again, with the directory's answer about id. */
static bool located(api_request *req, const char *id, api_actor_request what,
                    enum MHD_Result *result)
{
    const rt_redis_answer *a = api_redis_answer(req);
    char tag[RT_NODE_TAG_SIZE], url[RT_CLUSTER_URL_MAX];
    rt_owner made_by = rt_cluster_owner(req->ctx->cluster, id, tag, url, sizeof(url));
    locate_done(req);
    if (!a || (a->type != RT_REDIS_STRING && a->type != RT_REDIS_NIL)) {
        *result = api_redis_unavailable(req, !a ? "no answer"
                                        : a->type == RT_REDIS_FAILED ? a->why
                                        : a->str ? a->str : "an unexpected answer");
        return true;
    }
    if (a->type == RT_REDIS_NIL) { /* not in the directory */
        if (made_by == RT_OWNER_SELF)
            return false; /* answered here, as a node alone would */
        *result = reply_owner_died(req, id, tag, what);
        return true;
    }
    char now_on[RT_NODE_TAG_SIZE];
    snprintf(now_on, sizeof(now_on), "%s", a->str);
    switch (rt_cluster_owner_of_tag(req->ctx->cluster, now_on, url, sizeof(url))) {
    case RT_OWNER_SELF:
        if (held_here(req, id))
            return false;
        break; /* claimed here a moment ago, not made yet */
    case RT_OWNER_ALIVE: *result = relay(req, id, what, url, now_on, true); return true;
    case RT_OWNER_DEAD:
    case RT_OWNER_UNKNOWN: break; /* its node died: a live node restarts it */
    }
    req->retry_after = 1;
    *result = api_problem(req, 503, "ClusterUnavailable",
                          "the actor is being restarted: the node that held it died, and a "
                          "live node makes it again within a few seconds; retry",
                          json_pack("{s:s,s:s,s:s}", "actor_id", id, "state", "RESTARTING",
                                    "owner", now_on));
    return true;
}

bool api_actor_foreign(api_request *req, const char *id, api_actor_request what,
                       enum MHD_Result *result)
{
    if (api_actor_locating(req)) /* resumed with the directory's answer */
        return located(req, id, what, result);
    char tag[RT_NODE_TAG_SIZE], url[RT_CLUSTER_URL_MAX];
    rt_owner owner = rt_cluster_owner(req->ctx->cluster, id, tag, url, sizeof(url));
    if (owner == RT_OWNER_SELF) {
        /* Not here any more: restarted elsewhere while this node was taken for dead? */
        if (held_here(req, id) || !rt_ref_owner(id, tag) || api_cluster_unavailable(req))
            return false;
        *result = locate(req, id);
        return true;
    }
    if (held_here(req, id)) /* restarted here after its node died */
        return false;
    if (owner == RT_OWNER_UNKNOWN) {
        if (api_cluster_unavailable(req)) {
            req->retry_after = 1;
            *result = api_problemf(req, 503, "ClusterUnavailable",
                                   "actor %s names node %s, which this node does not know, "
                                   "and Redis is unreachable: retry",
                                   id, tag);
        } else {
            *result = api_problem(req, 404, "NotFound", "the actor does not exist: no node "
                                  "of this cluster has its tag",
                                  json_pack("{s:s,s:s}", "actor_id", id, "owner", tag));
        }
        return true;
    }
    if (owner == RT_OWNER_DEAD) {
        *result = locate(req, id); /* restarted elsewhere, or dead */
        return true;
    }
    *result = relay(req, id, what, url, tag, false);
    return true;
}

bool api_actor_lease_lapsed(api_request *req, const char *id, enum MHD_Result *result)
{
    if (!req->ctx->actor_dir || rt_cluster_lease_held(req->ctx->cluster) ||
        !rt_actor_dir_holds(req->ctx->actor_dir, id))
        return false;
    req->retry_after = 1;
    *result = api_problem(req, 503, "ClusterUnavailable",
                          "this node could not renew its heartbeat in Redis in time, so "
                          "another node may have restarted the actor: it runs no call until "
                          "it knows; retry",
                          json_pack("{s:s}", "actor_id", id));
    return true;
}

/* ---- the holder of a name ------------------------------------------------------------- */

/* What a name's holder turned out to be. */
typedef enum holder_state {
    HOLDER_LIVE,
    HOLDER_STALE,
    HOLDER_LOCATING, /* its node died: the directory was asked where it lives now */
    HOLDER_ASKING,
    HOLDER_ANSWERED
} holder_state;

/* This node's record of holder: HOLDER_LIVE with *body, or HOLDER_STALE. */
static holder_state holder_here(api_request *req, const char *holder, json_t **body)
{
    rt_actor_info info;
    if (rt_actor_get(req->ctx->actors, holder, &info) != RT_OK)
        return HOLDER_STALE;
    bool live = info.state != RT_ACTOR_DEAD;
    if (live)
        *body = api_actor_info_json(&info);
    rt_actor_info_release(&info);
    return live ? HOLDER_LIVE : HOLDER_STALE;
}

/* Asks holder's owner for its record (HOLDER_ASKING; the handler runs again). */
static holder_state holder_ask(api_request *req, const char *holder, const char *url,
                               enum MHD_Result *result)
{
    char path[32 + RT_REF_SIZE];
    snprintf(path, sizeof(path), "/v1/actors/%s", holder);
    api_forward_release(req); /* a check before this one */
    *result = api_forward_call(req, url, "GET", path, NULL, 0, CHECK_TIMEOUT);
    return HOLDER_ASKING;
}

/* The directory's answer about a holder whose node died (after HOLDER_LOCATING). */
static holder_state holder_located(api_request *req, const char *holder, json_t **body,
                                   enum MHD_Result *result)
{
    const rt_redis_answer *a = api_redis_answer(req);
    if (a && a->type == RT_REDIS_NIL)
        return HOLDER_STALE; /* dead with its node: the name is free */
    if (!a || a->type != RT_REDIS_STRING) {
        *result = api_redis_unavailable(req, !a ? "no answer"
                                        : a->type == RT_REDIS_FAILED ? a->why
                                        : "an unexpected answer");
        return HOLDER_ANSWERED;
    }
    char url[RT_CLUSTER_URL_MAX];
    switch (rt_cluster_owner_of_tag(req->ctx->cluster, a->str, url, sizeof(url))) {
    case RT_OWNER_SELF: return holder_here(req, holder, body);
    case RT_OWNER_ALIVE: return holder_ask(req, holder, url, result);
    case RT_OWNER_DEAD:
    case RT_OWNER_UNKNOWN: break;
    }
    req->retry_after = 1;
    *result = api_problem(req, 503, "ClusterUnavailable",
                          "the actor holding this name is being restarted on a live node "
                          "(its node died); retry",
                          json_pack("{s:s,s:s}", "actor_id", holder, "state", "RESTARTING"));
    return HOLDER_ANSWERED;
}

/* Looks at the actor `holder` that Redis says has a name. HOLDER_LIVE with *body (its
 * record, new reference) when it is this node's and not dead; HOLDER_STALE when it is dead,
 * unknown here, or its node is dead or unknown; HOLDER_ASKING when its owner was asked
 * (the handler runs again: see holder_answer); HOLDER_ANSWERED when a problem was sent. */
static holder_state holder_look(api_request *req, const char *holder, locate_state *ls,
                                json_t **body, enum MHD_Result *result)
{
    char tag[RT_NODE_TAG_SIZE], url[RT_CLUSTER_URL_MAX];
    if (!rt_ref_valid(holder))
        return HOLDER_STALE;
    rt_owner owner = rt_cluster_owner(req->ctx->cluster, holder, tag, url, sizeof(url));
    switch (owner) {
    case RT_OWNER_SELF: {
        rt_actor_info info;
        if (rt_actor_get(req->ctx->actors, holder, &info) != RT_OK)
            return HOLDER_STALE;
        bool live = info.state != RT_ACTOR_DEAD;
        if (live)
            *body = api_actor_info_json(&info);
        rt_actor_info_release(&info);
        return live ? HOLDER_LIVE : HOLDER_STALE;
    }
    case RT_OWNER_DEAD:
        if (held_here(req, holder)) /* restarted here */
            return holder_here(req, holder, body);
        if (!req->ctx->actor_dir)
            return HOLDER_STALE;
        /* Restarted elsewhere, or dead: the directory knows. */
        ls->dir = req->ctx->actor_dir;
        snprintf(ls->id, sizeof(ls->id), "%s", holder);
        *result = api_redis_call(req, queue_locate, ls, NULL);
        return HOLDER_LOCATING;
    case RT_OWNER_UNKNOWN:
        if (!api_cluster_unavailable(req))
            return HOLDER_STALE;
        *result = api_redis_unavailable(req, "it holds a name for a node not known here");
        return HOLDER_ANSWERED;
    case RT_OWNER_ALIVE: break;
    }
    return holder_ask(req, holder, url, result);
}

/* The owner's answer about a holder (after HOLDER_ASKING): HOLDER_LIVE with *body,
 * HOLDER_STALE, or HOLDER_ANSWERED (503: the owner did not answer). */
static holder_state holder_answer(api_request *req, json_t **body, enum MHD_Result *result)
{
    const rt_peer_answer *a = api_forward_fanout_answer(req, 0);
    size_t len = api_forward_fanout_body(req, 0);
    if (a && a->outcome == RT_PEER_ANSWERED && a->status == 404)
        return HOLDER_STALE;
    json_t *record = a && a->outcome == RT_PEER_ANSWERED && a->status == 200 && a->body
                         ? json_loadb((const char *)a->body->data, len, 0, NULL)
                         : NULL;
    const char *state = json_string_value(json_object_get(record, "state"));
    if (!state) {
        json_decref(record);
        req->retry_after = 1;
        *result = api_problem(req, 503, "ClusterUnavailable",
                              "the node holding the actor of this name did not answer; retry",
                              NULL);
        return HOLDER_ANSWERED;
    }
    if (strcmp(state, "DEAD") == 0) {
        json_decref(record);
        return HOLDER_STALE;
    }
    *body = record;
    return HOLDER_LIVE;
}

/* ---- POST /v1/actors ------------------------------------------------------------------ */

enum { CREATE_CLAIMING = 1, CREATE_LOCATING, CREATE_CHECKING, CREATE_RECORDING };

typedef struct create_state {
    rt_actors *actors;
    int phase;
    rt_actor_spec spec;          /* borrows req->json, kept across rounds */
    bool detached;               /* options.lifetime: outlives the request's session */
    char id[RT_REF_SIZE];        /* the new actor's id, claimed for its name */
    char stale[RT_REF_SIZE];     /* a holder found stale, to replace ("" none) */
    char holder[RT_REF_SIZE];    /* the name's holder being looked at */
    locate_state locate;         /* the directory asked about the holder */
    char *spec_text;             /* restartable: the spec kept in the directory (owned) */
    int tries;
    /* Filled on the command thread when the claim is ours. */
    bool won;
    rt_status st;
    bool created, have_info;
    rt_actor_info info;
    char err[256];
} create_state;

static void create_state_free(void *p)
{
    create_state *cs = p;
    if (!cs)
        return;
    rt_actor_unreserve(cs->actors, cs->id); /* a no-op once the actor was made */
    if (cs->have_info)
        rt_actor_info_release(&cs->info);
    free(cs->spec_text);
    free(cs);
}

static int queue_claim(rt_cluster *cluster, rt_redis_done_fn done, void *arg, void *state)
{
    create_state *cs = state;
    return rt_cluster_name_claim(cluster, cs->spec.name, cs->id, cs->stale, done, arg);
}

/* On the command thread: the claim is ours, so the actor is made at once (a node that
 * learns the id from Redis next may ask for it right away). */
static void claim_then(api_request *req, const rt_redis_answer *answer)
{
    create_state *cs = req->handler_state;
    if (answer->type != RT_REDIS_STRING || strcmp(answer->str, cs->id) != 0)
        return;
    cs->won = true;
    rt_actor_spec spec = cs->spec;
    spec.actor_id = cs->id;
    cs->st = rt_actor_create(req->ctx->actors, &spec, &cs->info, &cs->created, cs->err,
                             sizeof(cs->err));
    cs->have_info = cs->st == RT_OK;
    if (cs->st != RT_OK || !cs->created) /* not made after all: the name goes back */
        rt_cluster_name_release(req->ctx->cluster, spec.name, cs->id, NULL, NULL);
}

static enum MHD_Result claim(api_request *req, create_state *cs)
{
    if (api_cluster_unavailable(req))
        return api_redis_unavailable(req, "unreachable");
    cs->phase = CREATE_CLAIMING;
    return api_redis_call(req, queue_claim, cs, claim_then);
}

/* The name is held by a live actor: that actor (get_if_exists) or 409. body stolen. */
static enum MHD_Result reply_taken(api_request *req, create_state *cs, json_t *body)
{
    if (cs->spec.get_if_exists)
        return api_actors_reply_info(req, 200, body);
    const char *holder = json_string_value(json_object_get(body, "actor_id"));
    char detail[200];
    snprintf(detail, sizeof(detail), "an actor named '%.128s' exists", cs->spec.name);
    enum MHD_Result r = api_problem(req, 409, "Conflict", detail,
                                    json_pack("{s:s,s:s?}", "name", cs->spec.name, "actor_id",
                                              holder));
    json_decref(body);
    return r;
}

static enum MHD_Result holder_outcome(api_request *req, create_state *cs, holder_state hs,
                                      json_t *body, enum MHD_Result result)
{
    const char *holder = cs->holder;
    switch (hs) {
    case HOLDER_LIVE: return reply_taken(req, cs, body);
    case HOLDER_LOCATING:
        cs->phase = CREATE_LOCATING;
        return result;
    case HOLDER_ASKING:
        cs->phase = CREATE_CHECKING;
        return result;
    case HOLDER_ANSWERED: return result;
    case HOLDER_STALE: break;
    }
    if (++cs->tries >= CLAIM_TRIES) {
        req->retry_after = 1;
        return api_problem(req, 503, "ClusterUnavailable",
                           "the name changed hands too often while claiming it; retry", NULL);
    }
    snprintf(cs->stale, sizeof(cs->stale), "%s", holder);
    api_forward_release(req);
    return claim(req, cs);
}

static int queue_record(rt_cluster *cluster, rt_redis_done_fn done, void *arg, void *state)
{
    (void)cluster;
    api_request *req = state;
    create_state *cs = req->handler_state;
    return rt_actor_dir_record(req->ctx->actor_dir, cs->info.actor_id, cs->spec.class_name,
                               cs->spec.max_restarts, cs->spec_text, done, arg);
}

/* The actor is made here: a restartable one is recorded in the directory first (so that a
 * node that dies right after the answer has its actor restarted), then the answer. */
static enum MHD_Result reply_made(api_request *req, create_state *cs)
{
    if (cs->st != RT_OK || !cs->created || !cs->spec_text)
        return api_actors_reply_created(req, cs->st, &cs->info, cs->created, cs->detached,
                                        cs->err, cs->spec.name);
    if (api_cluster_unavailable(req)) {
        rt_actor_kill(cs->actors, cs->info.actor_id);
        return api_redis_unavailable(req, "unreachable; a restartable actor is recorded there");
    }
    cs->phase = CREATE_RECORDING;
    return api_redis_call(req, queue_record, req, NULL);
}

static enum MHD_Result recorded(api_request *req, create_state *cs)
{
    const rt_redis_answer *a = api_redis_answer(req);
    if (a && a->type == RT_REDIS_STRING && strcmp(a->str, "ok") == 0)
        return api_actors_reply_created(req, cs->st, &cs->info, cs->created, cs->detached,
                                        cs->err, cs->spec.name);
    /* Not recorded: it could not be restarted, so it is not made at all. */
    rt_actor_kill(cs->actors, cs->info.actor_id);
    return api_redis_unavailable(req, !a ? "no answer"
                                 : a->type == RT_REDIS_FAILED ? a->why
                                 : a->str ? a->str : "an unexpected answer");
}

static enum MHD_Result create_here(api_request *req, const rt_actor_spec *spec_in,
                                   bool detached)
{
    char err[256];
    enum MHD_Result missing; /* a class another node's module provides: 409, not 404 */
    if (!rt_actors_find_class(req->ctx->actors, spec_in->class_name) &&
        api_cluster_module_missing(req, spec_in->class_name, true, "", &missing))
        return missing;
    rt_actor_spec spec_copy = *spec_in;
    const rt_actor_spec *spec = &spec_copy;
    char *spec_text = NULL;
    if (spec_copy.max_restarts != 0 && req->ctx->actor_dir) {
        /* Restartable: its creation spec goes to the directory, bounded. */
        size_t len;
        spec_text = rt_actor_dir_spec_text(spec, &len);
        if (!spec_text)
            return len > RT_ACTOR_DIR_SPEC_MAX
                       ? api_problemf(req, 400, "BadRequest",
                                      "a restartable actor's class, args and kwargs are kept "
                                      "in Redis to restart it on another node: at most %d "
                                      "bytes of JSON, and these take %zu",
                                      RT_ACTOR_DIR_SPEC_MAX, len)
                       : api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        spec_copy.fenced = true;
    }
    /* Constructor arguments other nodes own get stand-ins, as a task's do. */
    api_cluster_want_args(req->ctx, spec->args, spec->kwargs);
    if (!spec->name) {
        rt_actor_info info;
        bool created = false;
        rt_status st = rt_actor_create(req->ctx->actors, spec, &info, &created, err,
                                       sizeof(err));
        if (!spec_text || st != RT_OK) {
            free(spec_text);
            enum MHD_Result r = api_actors_reply_created(req, st, &info, created, detached,
                                                         err, NULL);
            if (st == RT_OK)
                rt_actor_info_release(&info);
            return r;
        }
        create_state *cs = calloc(1, sizeof(*cs));
        if (!cs) {
            rt_actor_kill(req->ctx->actors, info.actor_id);
            rt_actor_info_release(&info);
            free(spec_text);
            return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        }
        cs->spec = *spec;
        cs->detached = detached;
        cs->actors = req->ctx->actors;
        cs->spec_text = spec_text;
        cs->st = st;
        cs->created = created;
        cs->info = info;
        cs->have_info = true;
        req->handler_state = cs;
        req->handler_state_free = create_state_free;
        return reply_made(req, cs);
    }
    /* What the runtime would refuse is refused before any name is claimed. */
    if (!rt_actors_find_class(req->ctx->actors, spec->class_name)) {
        free(spec_text);
        return api_problemf(req, 404, "NotFound", "actor class '%.128s' does not exist",
                            spec->class_name);
    }
    if (!rt_actor_name_valid(spec->name)) {
        free(spec_text);
        return api_problemf(req, 400, "BadRequest",
                            "name must be 1 to %d bytes without control characters or '/'",
                            RT_ACTOR_NAME_MAX);
    }
    rt_actor_info info;
    if (rt_actor_get_by_name(req->ctx->actors, spec->name, &info) == RT_OK) {
        json_t *body = api_actor_info_json(&info); /* here already: no need to ask Redis */
        rt_actor_info_release(&info);
        create_state local = {.spec = *spec};
        free(spec_text);
        return reply_taken(req, &local, body);
    }
    create_state *cs = calloc(1, sizeof(*cs));
    if (!cs) {
        free(spec_text);
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    }
    cs->spec = *spec;
    cs->detached = detached;
    cs->actors = req->ctx->actors;
    cs->spec_text = spec_text;
    /* Promised here before anyone can read it in Redis, so that the owner never says "no
     * such actor" of a name's holder that it is about to make. */
    if (rt_actor_reserve(cs->actors, spec, cs->id) != RT_OK) {
        free(cs->spec_text);
        free(cs);
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    }
    req->handler_state = cs;
    req->handler_state_free = create_state_free;
    return claim(req, cs);
}

/* options.node, or spillback: the node that should make the actor, relayed there. Returns
 * true when it answered or relayed. Sessions are per node: an actor a session is to own
 * is made here. */
static bool place_elsewhere(api_request *req, const char *class_name, bool detached,
                            enum MHD_Result *result)
{
    const char *node =
        json_string_value(json_object_get(json_object_get(req->json, "options"), "node"));
    char url[RT_CLUSTER_URL_MAX], tag[RT_NODE_TAG_SIZE];
    bool of_session = req->session[0] && !detached;
    if (!node) {
        if (of_session || !api_cluster_spill_target_for(req, class_name, true, url, tag))
            return false;
        *result = api_forward_relay(req, url, "/v1/actors", tag, NULL, 0, req->body,
                                    req->body_len);
        return true;
    }
    switch (rt_cluster_owner_of_tag(req->ctx->cluster, node, url, sizeof(url))) {
    case RT_OWNER_SELF: return false;
    case RT_OWNER_UNKNOWN:
        if (api_cluster_unavailable(req)) {
            req->retry_after = 1;
            *result = api_problemf(req, 503, "ClusterUnavailable",
                                   "options.node: node %s is not known here, and Redis is "
                                   "unreachable: retry",
                                   node);
        } else {
            *result = api_problem(req, 404, "NotFound",
                                  "options.node: no node of this cluster has this tag (see "
                                  "/v1/status)",
                                  json_pack("{s:s}", "node", node));
        }
        return true;
    case RT_OWNER_DEAD:
        *result = api_problem(req, 404, "NotFound",
                              "options.node: that node is dead (its heartbeat stopped)",
                              json_pack("{s:s,s:b}", "node", node, "node_died", 1));
        return true;
    case RT_OWNER_ALIVE: break;
    }
    if (of_session) {
        *result = api_problem(req, 400, "BadRequest",
                              "options.node: sessions are per node, so an actor of this "
                              "request's session is made on the node that holds the session; "
                              "give options.lifetime \"detached\" to make it elsewhere",
                              json_pack("{s:s}", "node", node));
        return true;
    }
    if (api_header(req, API_FORWARDED_HEADER)) {
        req->retry_after = 1;
        *result = api_problemf(req, 503, "ClusterUnavailable",
                               "options.node %s is not this node (a peer's membership is out "
                               "of date); retry",
                               node);
        return true;
    }
    *result = api_forward_relay(req, url, "/v1/actors", node, NULL, 0, req->body,
                                req->body_len);
    return true;
}

enum MHD_Result api_actors_create_cluster(api_request *req)
{
    create_state *cs = req->handler_state;
    json_t *body = NULL;
    enum MHD_Result result = MHD_YES;
    if (cs && cs->phase == CREATE_RECORDING)
        return recorded(req, cs);
    if (cs && cs->phase == CREATE_CLAIMING) {
        const rt_redis_answer *a = api_redis_answer(req);
        if (!a || a->type != RT_REDIS_STRING)
            return api_redis_unavailable(req, !a ? "no answer"
                                         : a->type == RT_REDIS_FAILED ? a->why
                                         : a->str ? a->str : "an unexpected answer");
        if (cs->won)
            return reply_made(req, cs);
        snprintf(cs->holder, sizeof(cs->holder), "%s", a->str);
        holder_state hs = holder_look(req, cs->holder, &cs->locate, &body, &result);
        return holder_outcome(req, cs, hs, body, result);
    }
    if (cs && cs->phase == CREATE_LOCATING) {
        holder_state hs = holder_located(req, cs->holder, &body, &result);
        return holder_outcome(req, cs, hs, body, result);
    }
    if (cs && cs->phase == CREATE_CHECKING) {
        holder_state hs = holder_answer(req, &body, &result);
        return holder_outcome(req, cs, hs, body, result);
    }

    if (api_body_json(req) != 0)
        return MHD_YES;
    rt_actor_spec spec;
    bool detached;
    char err[256];
    if (api_decode_actor(req->json, &spec, &detached, err, sizeof(err)) != API_DECODE_OK)
        return api_problem(req, 400, "BadRequest", err, NULL);
    if (place_elsewhere(req, spec.class_name, detached, &result))
        return result;
    return create_here(req, &spec, detached);
}

/* ---- GET /v1/actors/by-name/{name} ----------------------------------------------------- */

enum { LOOKUP_ASKING_REDIS = 1, LOOKUP_LOCATING, LOOKUP_ASKING_OWNER };

typedef struct lookup_state {
    int phase;
    char holder[RT_REF_SIZE];
    locate_state locate;
} lookup_state;

static int queue_lookup(rt_cluster *cluster, rt_redis_done_fn done, void *arg, void *name)
{
    return rt_cluster_name_lookup(cluster, name, done, arg);
}

static enum MHD_Result reply_no_such_name(api_request *req)
{
    return api_problemf(req, 404, "NotFound", "no live actor is named '%.128s'",
                        req->params[0]);
}

enum MHD_Result api_actors_by_name_cluster(api_request *req)
{
    lookup_state *ls = req->handler_state;
    json_t *body = NULL;
    enum MHD_Result result = MHD_YES;
    holder_state hs;
    if (!ls) {
        if (!rt_actor_name_valid(req->params[0]))
            return reply_no_such_name(req);
        if (api_cluster_unavailable(req))
            return api_redis_unavailable(req, "unreachable");
        ls = calloc(1, sizeof(*ls));
        if (!ls)
            return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        ls->phase = LOOKUP_ASKING_REDIS;
        req->handler_state = ls;
        req->handler_state_free = free;
        return api_redis_call(req, queue_lookup, (void *)req->params[0], NULL);
    }
    if (ls->phase == LOOKUP_ASKING_REDIS) {
        const rt_redis_answer *a = api_redis_answer(req);
        if (a && a->type == RT_REDIS_NIL)
            return reply_no_such_name(req);
        if (!a || a->type != RT_REDIS_STRING)
            return api_redis_unavailable(req, !a ? "no answer"
                                         : a->type == RT_REDIS_FAILED ? a->why
                                         : "an unexpected answer");
        snprintf(ls->holder, sizeof(ls->holder), "%s", a->str);
        hs = holder_look(req, ls->holder, &ls->locate, &body, &result);
    } else if (ls->phase == LOOKUP_LOCATING) {
        hs = holder_located(req, ls->holder, &body, &result);
    } else {
        hs = holder_answer(req, &body, &result);
    }
    if (hs == HOLDER_ASKING)
        ls->phase = LOOKUP_ASKING_OWNER;
    else if (hs == HOLDER_LOCATING)
        ls->phase = LOOKUP_LOCATING;
    switch (hs) {
    case HOLDER_LIVE: return api_reply_json(req, 200, body);
    case HOLDER_STALE: return reply_no_such_name(req);
    case HOLDER_LOCATING:
    case HOLDER_ASKING:
    case HOLDER_ANSWERED: break;
    }
    return result;
}

/* ---- DELETE /v1/actors/{id}: the name ---------------------------------------------------- */

typedef struct release_state {
    char name[RT_ACTOR_NAME_MAX + 1];
    char id[RT_REF_SIZE];
} release_state;

static int queue_release(rt_cluster *cluster, rt_redis_done_fn done, void *arg, void *state)
{
    release_state *rs = state;
    return rt_cluster_name_release(cluster, rs->name, rs->id, done, arg);
}

enum MHD_Result api_actors_release_name(api_request *req, const char *name, const char *id)
{
    release_state *rs = calloc(1, sizeof(*rs));
    if (!rs)
        return api_reply_empty(req, 204); /* killed; a stale name is replaced when claimed */
    snprintf(rs->name, sizeof(rs->name), "%s", name);
    snprintf(rs->id, sizeof(rs->id), "%s", id);
    req->handler_state = rs;
    req->handler_state_free = free;
    if (api_cluster_unavailable(req))
        return api_reply_empty(req, 204);
    /* The answer (204) comes when the handler runs again, whatever Redis said: the actor
     * is dead, and a name left behind is stale and replaced by the next claim. */
    return api_redis_call(req, queue_release, rs, NULL);
}
