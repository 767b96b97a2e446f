/* POST /v1/objects/get (ray.get of many refs) and POST /v1/wait (ray.wait). Both park
 * until their condition holds or the timeout passes, and recompute their answer from the
 * store each time they are called. */
#include <stdlib.h>
#include <string.h>

#include "api/handlers.h"
#include "api/park.h"
#include "api/problem.h"
#include "api/values.h"
#include "runtime/clock.h"

#define REFS_MAX 100000

/* The parsed body, kept across rounds. refs point into req->json. */
typedef struct wait_args {
    const char **refs;
    size_t n;
    size_t num_returns;
} wait_args;

static void wait_args_free(void *p)
{
    wait_args *a = p;
    if (a) {
        free(a->refs);
        free(a);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Parses {"refs": [...], "timeout": S, ...} on the first round; sets req->deadline and
 * req->handler_state. extra_key is the one more member allowed (num_returns) or NULL.
 * Returns the args, or NULL after answering an error. */
static wait_args *parse_args(api_request *req, int is_wait)
{
    if (req->handler_state)
        return req->handler_state;
    static const char *const GET_KEYS[] = {"refs", "timeout", NULL};
    static const char *const WAIT_KEYS[] = {"refs", "timeout", "num_returns", "fetch_local",
                                            NULL};
    if (api_body_json(req) != 0)
        return NULL;
    if (!json_is_object(req->json)) {
        api_problem(req, 400, "BadRequest", "the body must be a JSON object", NULL);
        return NULL;
    }
    if (api_json_only_keys(req, req->json, is_wait ? WAIT_KEYS : GET_KEYS, "the body") != 0)
        return NULL;
    json_t *refs = json_object_get(req->json, "refs");
    if (!json_is_array(refs) || json_array_size(refs) > REFS_MAX) {
        api_problemf(req, 400, "BadRequest", "refs must be a list of at most %d refs", REFS_MAX);
        return NULL;
    }
    double timeout = req->ctx->config.max_wait;
    json_t *t = json_object_get(req->json, "timeout");
    if (t && !json_is_null(t)) {
        if (!json_is_number(t) || json_number_value(t) < 0) {
            api_problem(req, 400, "BadRequest", "timeout must be a number of seconds >= 0",
                        NULL);
            return NULL;
        }
        timeout = json_number_value(t);
    }
    if (timeout > req->ctx->config.max_wait)
        timeout = req->ctx->config.max_wait;

    wait_args *a = calloc(1, sizeof(*a));
    size_t n = json_array_size(refs);
    if (!a || !(a->refs = malloc((n + 1) * sizeof(*a->refs)))) {
        free(a);
        api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        return NULL;
    }
    a->n = n;
    req->handler_state = a;
    req->handler_state_free = wait_args_free;
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_array_get(refs, i);
        if (!json_is_string(r) || !rt_ref_valid(json_string_value(r))) {
            api_problemf(req, 400, "BadRequest",
                         "refs[%zu] is not a ref (1 to 64 characters of [A-Za-z0-9_-])", i);
            return NULL;
        }
        a->refs[i] = json_string_value(r);
    }
    if (is_wait) {
        json_t *k = json_object_get(req->json, "num_returns");
        json_int_t num = 1;
        if (k && !json_is_integer(k)) {
            api_problem(req, 400, "BadRequest", "num_returns must be an integer", NULL);
            return NULL;
        }
        if (k)
            num = json_integer_value(k);
        if (n > 0 && (num <= 0 || (size_t)num > n)) {
            api_problemf(req, 400, "BadRequest",
                         "num_returns must be between 1 and the number of refs (%zu)", n);
            return NULL;
        }
        a->num_returns = (size_t)(num > 0 ? num : 1);
        /* ray.wait refuses duplicates: sort a copy and look at neighbours. */
        const char **sorted = malloc((n + 1) * sizeof(*sorted));
        if (!sorted) {
            api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
            return NULL;
        }
        memcpy(sorted, a->refs, n * sizeof(*sorted));
        qsort(sorted, n, sizeof(*sorted), cmp_str);
        for (size_t i = 1; i < n; i++) {
            if (strcmp(sorted[i - 1], sorted[i]) == 0) {
                api_problemf(req, 400, "BadRequest", "ref %s appears more than once in refs",
                             sorted[i]);
                free(sorted);
                return NULL;
            }
        }
        free(sorted);
    }
    /* A ref that never existed is a client error, not something to wait for. */
    for (size_t i = 0; i < n; i++) {
        rt_object_view view;
        if (rt_store_peek(req->ctx->store, a->refs[i], &view) == RT_ENOTFOUND) {
            api_problem(req, 404, "NotFound", "a ref in refs does not exist",
                        json_pack("{s:s}", "ref", a->refs[i]));
            return NULL;
        }
        rt_object_view_release(&view);
    }
    req->deadline = rt_clock_monotonic() + timeout;
    return a;
}

/* Collects the refs still PENDING (at most n) into pending; returns how many. */
static size_t collect_pending(api_request *req, const wait_args *a, const char **pending)
{
    size_t np = 0;
    for (size_t i = 0; i < a->n; i++) {
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
        json_object_set_new(e, "state", json_string("error"));
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
