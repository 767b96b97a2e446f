/* POST /v1/objects/get (ray.get of many refs) and POST /v1/wait (ray.wait). Both park
 * until their condition holds or the timeout passes, and recompute their answer from the
 * store each time they are called. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/decode.h"
#include "api/handlers.h"
#include "api/park.h"
#include "api/problem.h"
#include "api/ref_lists.h"
#include "api/values.h"
#include "api/wait_owners.h"
#include "api/wait_scan.h"
#include "runtime/clock.h"
#include "runtime/cluster.h"
#include "runtime/cluster_fetch.h"


/* The decoded body and what is known of the refs, kept across rounds (refs point into
 * req->json, or into args.text when the quick reader read the body). */
typedef api_wait_request wait_args;

typedef struct wait_state {
    api_wait_request args;
    unsigned char *foreign;  /* cluster mode, per ref: another live node owns it */
    unsigned char *resolved; /* per ref: seen resolved in this node's store (an object never
                                goes back to PENDING, so it is not looked up again) */
    api_wait_owners *owners; /* cluster mode: what the owners said (api/wait_owners.h) */
} wait_state;

static void wait_state_free(void *p)
{
    wait_state *s = p;
    api_wait_request_release(&s->args);
    api_wait_owners_free(s->owners);
    free(s->foreign);
    free(s->resolved);
    free(s);
}

/* Cluster mode: sorts out a ref another node may own. Returns 1 for a ref another live
 * node owns, 2 for one whose owner died (its stand-in holds ObjectLost now), 0 for this
 * node's own, -1 after answering 404 (no node has its tag). */
static int classify(api_request *req, const char *ref)
{
    char tag[RT_NODE_TAG_SIZE];
    rt_owner owner = rt_cluster_owner(req->ctx->cluster, ref, tag, NULL, 0);
    if (owner == RT_OWNER_SELF)
        return 0;
    if (owner == RT_OWNER_ALIVE)
        return 1; /* its owner answers for it (api/wait_owners.h), else a stand-in */
    if (owner == RT_OWNER_DEAD) {
        rt_fetch_want(req->ctx->fetch, ref, tag);
        return 2;
    }
    char detail[200];
    snprintf(detail, sizeof(detail),
             "a ref in refs does not exist: no node of this cluster has tag %s", tag);
    api_problem(req, 404, "NotFound", detail, json_pack("{s:s,s:s}", "ref", ref, "owner", tag));
    return -1;
}

/* Decodes the body on the first round, checks every ref exists, and sets req->deadline.
 * Returns the state, or NULL after answering an error. */
static wait_state *parse_args(api_request *req, int is_wait)
{
    if (req->handler_state)
        return req->handler_state;
    wait_state *s = calloc(1, sizeof(*s));
    if (!s) {
        api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        return NULL;
    }
    wait_args *a = &s->args;
    char err[256];
    int d = API_DECODE_OK;
    if (!req->json && req->body &&
        api_wait_scan(req->body, req->body_len, is_wait, a) == 0) {
        /* no parsed body: what a park keeps of it is the refs (api/budget.h) */
        req->parked_cost = a->n * sizeof(*a->refs) + req->body_len + 256;
    } else if (api_body_json(req) != 0) {
        free(s);
        return NULL;
    } else {
        d = api_decode_wait(req->json, is_wait, a, err, sizeof(err));
    }
    if (d != API_DECODE_OK) {
        free(s);
        if (d == API_DECODE_NOMEM)
            api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        else
            api_problem(req, 400, "BadRequest", err, NULL);
        return NULL;
    }
    req->handler_state = s;
    req->handler_state_free = wait_state_free;
    if (!(s->resolved = calloc(a->n + 1, 1)) ||
        (req->ctx->fetch && !(s->foreign = calloc(a->n + 1, 1)))) {
        api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        return NULL;
    }
    /* A ref that never existed is a client error, not something to wait for. (Refs all
     * of one other node: that node checks them, answering the whole request.) */
    bool one_owner = req->ctx->fetch && api_wait_owners_one_other(req, a->refs, a->n);
    for (size_t i = 0; i < a->n; i++) {
        if (one_owner) {
            s->foreign[i] = 1;
            continue;
        }
        if (req->ctx->fetch) {
            int foreign = classify(req, a->refs[i]);
            if (foreign < 0)
                return NULL;
            s->foreign[i] = foreign == 1;
            if (foreign)
                continue; /* its owner answers for it */
        }
        rt_object_view view;
        rt_status st = rt_store_peek(req->ctx->store, a->refs[i], &view);
        if (st == RT_ENOTFOUND) {
            api_problem(req, 404, "NotFound", "a ref in refs does not exist",
                        json_pack("{s:s}", "ref", a->refs[i]));
            return NULL;
        }
        s->resolved[i] = st != RT_OK || view.state != RT_OBJ_PENDING;
        rt_object_view_release(&view);
    }
    double timeout = a->timeout < 0 || a->timeout > req->ctx->config.max_wait
                         ? req->ctx->config.max_wait
                         : a->timeout;
    req->deadline = rt_clock_monotonic() + timeout;
    return s;
}

/* Cluster mode: asks the refs' owners once (api/wait_owners.h). Returns true when the
 * request was answered or suspended meanwhile (*result to return). */
static bool ask_owners(api_request *req, wait_state *s, int is_wait, enum MHD_Result *result)
{
    if (!req->ctx->fetch)
        return false;
    return api_wait_owners_step(req, &s->owners, s->args.refs, s->args.n, is_wait, result);
}

/* Whether ref i counts as resolved now: its owner said so, or this node's store has it
 * resolved. A ref of this node that is gone since (freed) counts as resolved (lost); a
 * foreign ref with no stand-in here is not. */
static bool resolved_now(api_request *req, const wait_state *s, size_t i)
{
    if (s->resolved[i] || api_wait_owners_resolved(s->owners, i))
        return true;
    rt_object_view view;
    rt_status st = rt_store_peek(req->ctx->store, s->args.refs[i], &view);
    bool foreign = s->foreign && s->foreign[i];
    bool resolved = st == RT_OK ? view.state != RT_OBJ_PENDING : !foreign;
    rt_object_view_release(&view);
    /* a foreign ref's stand-in may be dropped (and the ref be pending again here) */
    s->resolved[i] = resolved && !foreign;
    return resolved;
}

/* Collects the refs not resolved (at most n) into pending; returns how many. */
static size_t collect_pending(api_request *req, const wait_state *s, const char **pending)
{
    size_t np = 0;
    for (size_t i = 0; i < s->args.n; i++)
        if (!resolved_now(req, s, i))
            pending[np++] = s->args.refs[i];
    return np;
}

/* Before parking: every foreign ref still pending gets a stand-in to wait on (one nobody
 * waited on may have been dropped since the last round); then collects them again (a
 * stand-in may have failed at once: its owner died). */
static size_t want_pending(api_request *req, const wait_state *s, const char **pending)
{
    if (!req->ctx->fetch)
        return collect_pending(req, s, pending);
    for (size_t i = 0; i < s->args.n; i++) {
        if (s->foreign[i] && !resolved_now(req, s, i)) {
            char tag[RT_NODE_TAG_SIZE];
            rt_fetch_want(req->ctx->fetch, s->args.refs[i], tag);
        }
    }
    return collect_pending(req, s, pending);
}

json_t *api_objects_entry(api_request *req, const char *ref)
{
    rt_object_view view;
    rt_status st = rt_store_get(req->ctx->store, ref, &view);
    json_t *e = json_pack("{s:s}", "ref", ref);
    if (st == RT_ENOTFOUND || st == RT_ELOST) {
        /* Gone since the request began: report it as lost, like a freed object. */
        json_object_set_new(e, "state", json_string("lost"));
        json_t *p = api_problem_new(410, "ObjectLost", "the object was freed or evicted");
        json_object_set_new(p, "ref", json_string(ref));
        if (st == RT_ELOST)
            json_object_set_new(p, "lost_reason",
                                json_string(api_value_lost_reason(view.lost_reason)));
        json_object_set_new(e, "error", p);
    } else if (view.state == RT_OBJ_PENDING) {
        json_object_set_new(e, "state", json_string("pending"));
    } else if (view.state == RT_OBJ_ERROR) {
        /* A stand-in that failed for want of the object (its owner died, or freed it)
         * reports it lost, as the owner itself would. */
        bool lost = view.copy && rt_error_kind_of(view.error) == RT_ERR_OBJECT_LOST &&
                    !rt_error_cause(view.error);
        json_object_set_new(e, "state", json_string(lost ? "lost" : "error"));
        json_object_set_new(e, "error", api_problem_from_error(view.error, ref));
    } else {
        json_object_set_new(e, "state", json_string("ready"));
        if (api_value_put_in(e, view.buf) != 0) {
            json_decref(e);
            e = NULL;
        }
    }
    rt_object_view_release(&view);
    return e;
}

/* A batch get's entry for ref i: this node's, once resolved here; else its owner's answer;
 * else pending (a foreign ref with no stand-in here is pending, not lost). */
static json_t *entry_of(api_request *req, const wait_state *s, size_t i)
{
    const char *ref = s->args.refs[i];
    if (!s->foreign || !s->foreign[i])
        return api_objects_entry(req, ref);
    rt_object_view view;
    rt_status st = rt_store_peek(req->ctx->store, ref, &view);
    bool here = st == RT_OK && view.state != RT_OBJ_PENDING;
    rt_object_view_release(&view);
    if (here)
        return api_objects_entry(req, ref);
    json_t *owners = api_wait_owners_entry(s->owners, i);
    if (owners)
        return json_incref(owners);
    return json_pack("{s:s,s:s}", "ref", ref, "state", "pending");
}

enum MHD_Result api_objects_get_batch(api_request *req)
{
    wait_state *s = parse_args(req, 0);
    if (!s)
        return MHD_YES;
    enum MHD_Result asked;
    if (ask_owners(req, s, 0, &asked))
        return asked;
    const wait_args *a = &s->args;
    const char **pending = malloc((a->n + 1) * sizeof(*pending));
    if (!pending)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    size_t np = collect_pending(req, s, pending);
    if (np > 0 && rt_clock_monotonic() < req->deadline)
        np = want_pending(req, s, pending);
    if (np > 0 && rt_clock_monotonic() < req->deadline) {
        enum MHD_Result r = api_park_on_refs(req, pending, np, np);
        free(pending);
        return r;
    }
    free(pending);
    json_t *list = json_array();
    for (size_t i = 0; i < a->n; i++) {
        json_t *e = entry_of(req, s, i);
        if (!e) {
            json_decref(list);
            return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        }
        json_array_append_new(list, e);
    }
    return api_reply_json(req, 200, json_pack("{s:o}", "objects", list));
}

enum MHD_Result api_objects_wait(api_request *req)
{
    wait_state *s = parse_args(req, 1);
    if (!s)
        return MHD_YES;
    enum MHD_Result asked;
    if (ask_owners(req, s, 1, &asked))
        return asked;
    const wait_args *a = &s->args;
    const char **pending = malloc((a->n + 1) * sizeof(*pending));
    if (!pending)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    size_t np = collect_pending(req, s, pending);
    bool more = a->n > 0 && a->n - np < a->num_returns && rt_clock_monotonic() < req->deadline;
    if (more) {
        np = want_pending(req, s, pending);
        more = a->n - np < a->num_returns;
    }
    if (more) {
        size_t resolved = a->n - np;
        enum MHD_Result r = api_park_on_refs(req, pending, np, a->num_returns - resolved);
        free(pending);
        return r;
    }
    free(pending);
    /* ready: the first num_returns resolved refs in input order; the rest are not ready.
     * A ref may resolve between the two looks; looking once more per ref keeps the answer
     * consistent with itself. */
    bool *ready = malloc(a->n + 1);
    if (!ready)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    size_t taken = 0;
    for (size_t i = 0; i < a->n; i++) {
        ready[i] = taken < a->num_returns && resolved_now(req, s, i);
        taken += ready[i];
    }
    size_t len = 0;
    char *text = api_wait_answer_text(a->refs, ready, a->n, &len);
    free(ready);
    return api_reply_json_text(req, 200, text, len);
}
