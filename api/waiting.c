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
#include "api/values.h"
#include "runtime/clock.h"


/* The decoded body, kept across rounds (refs point into req->json). */
typedef api_wait_request wait_args;

static void wait_args_free(void *p)
{
    api_wait_request_release(p);
    free(p);
}

/* Cluster mode: makes sure a foreign ref has a stand-in (or a copy) here. Returns 1 for a
 * foreign ref, 0 for this node's own, -1 after answering 404 (no node has its tag). */
static int want_foreign(api_request *req, const char *ref)
{
    char tag[RT_NODE_TAG_SIZE];
    rt_owner owner = rt_fetch_want(req->ctx->fetch, ref, tag);
    if (owner == RT_OWNER_SELF)
        return 0;
    if (owner != RT_OWNER_UNKNOWN)
        return 1;
    char detail[200];
    snprintf(detail, sizeof(detail),
             "a ref in refs does not exist: no node of this cluster has tag %s", tag);
    api_problem(req, 404, "NotFound", detail, json_pack("{s:s,s:s}", "ref", ref, "owner", tag));
    return -1;
}

/* Decodes the body on the first round, checks every ref exists, and sets req->deadline.
 * Returns the arguments, or NULL after answering an error. */
static wait_args *parse_args(api_request *req, int is_wait)
{
    if (req->handler_state)
        return req->handler_state;
    if (api_body_json(req) != 0)
        return NULL;
    wait_args *a = calloc(1, sizeof(*a));
    if (!a) {
        api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        return NULL;
    }
    char err[256];
    int d = api_decode_wait(req->json, is_wait, a, err, sizeof(err));
    if (d != API_DECODE_OK) {
        free(a);
        if (d == API_DECODE_NOMEM)
            api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        else
            api_problem(req, 400, "BadRequest", err, NULL);
        return NULL;
    }
    req->handler_state = a;
    req->handler_state_free = wait_args_free;
    /* A ref that never existed is a client error, not something to wait for. */
    for (size_t i = 0; i < a->n; i++) {
        if (req->ctx->fetch) {
            int foreign = want_foreign(req, a->refs[i]);
            if (foreign < 0)
                return NULL;
            if (foreign)
                continue; /* its owner answers for it: a stand-in waits for the answer */
        }
        rt_object_view view;
        if (rt_store_peek(req->ctx->store, a->refs[i], &view) == RT_ENOTFOUND) {
            api_problem(req, 404, "NotFound", "a ref in refs does not exist",
                        json_pack("{s:s}", "ref", a->refs[i]));
            return NULL;
        }
        rt_object_view_release(&view);
    }
    double timeout = a->timeout < 0 || a->timeout > req->ctx->config.max_wait
                         ? req->ctx->config.max_wait
                         : a->timeout;
    req->deadline = rt_clock_monotonic() + timeout;
    return a;
}

/* Collects the refs still PENDING (at most n) into pending; returns how many. */
static size_t collect_pending(api_request *req, const wait_args *a, const char **pending)
{
    size_t np = 0;
    for (size_t i = 0; i < a->n; i++) {
        if (req->ctx->fetch) {
            /* A stand-in nobody waited on may have been dropped since the last round. */
            char tag[RT_NODE_TAG_SIZE];
            rt_fetch_want(req->ctx->fetch, a->refs[i], tag);
        }
        rt_object_view view;
        rt_status st = rt_store_peek(req->ctx->store, a->refs[i], &view);
        if (st == RT_OK && view.state == RT_OBJ_PENDING)
            pending[np++] = a->refs[i];
        rt_object_view_release(&view);
    }
    return np;
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

enum MHD_Result api_objects_get_batch(api_request *req)
{
    wait_args *a = parse_args(req, 0);
    if (!a)
        return MHD_YES;
    const char **pending = malloc((a->n + 1) * sizeof(*pending));
    if (!pending)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    size_t np = collect_pending(req, a, pending);
    if (np > 0 && rt_clock_monotonic() < req->deadline) {
        enum MHD_Result r = api_park_on_refs(req, pending, np, np);
        free(pending);
        return r;
    }
    free(pending);
    json_t *list = json_array();
    for (size_t i = 0; i < a->n; i++) {
        json_t *e = api_objects_entry(req, a->refs[i]);
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
    wait_args *a = parse_args(req, 1);
    if (!a)
        return MHD_YES;
    const char **pending = malloc((a->n + 1) * sizeof(*pending));
    if (!pending)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    size_t np = collect_pending(req, a, pending);
    size_t resolved = a->n - np;
    if (a->n > 0 && resolved < a->num_returns && rt_clock_monotonic() < req->deadline) {
        enum MHD_Result r = api_park_on_refs(req, pending, np, a->num_returns - resolved);
        free(pending);
        return r;
    }
    free(pending);
    /* ready: the first num_returns resolved refs in input order; the rest are not ready.
     * A ref may resolve between the two looks; looking once more per ref keeps the answer
     * consistent with itself. */
    json_t *ready = json_array(), *not_ready = json_array();
    size_t taken = 0;
    for (size_t i = 0; i < a->n; i++) {
        rt_object_view view;
        rt_status st = rt_store_peek(req->ctx->store, a->refs[i], &view);
        int is_resolved = !(st == RT_OK && view.state == RT_OBJ_PENDING);
        rt_object_view_release(&view);
        if (is_resolved && taken < a->num_returns) {
            json_array_append_new(ready, json_string(a->refs[i]));
            taken++;
        } else {
            json_array_append_new(not_ready, json_string(a->refs[i]));
        }
    }
    return api_reply_json(req, 200, json_pack("{s:o,s:o}", "ready", ready, "not_ready", not_ready));
}
