/* /v1/tasks: submit (one or a batch), Prefer: wait, get, list, cancel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/decode.h"
#include "api/forward.h"
#include "api/handlers.h"
#include "api/listing.h"
#include "api/park.h"
#include "api/problem.h"
#include "api/ref_lists.h"
#include "api/task_batch_scan.h"
#include "api/values.h"
#include "runtime/clock.h"
#include "runtime/events.h"


/* The receipt of one submitted task: {"task_id", "ref"} or {"task_id", "refs"}. */
static json_t *receipt(const char *task_id, char (*refs)[RT_REF_SIZE], unsigned n)
{
    json_t *r = json_pack("{s:s}", "task_id", task_id);
    if (n == 1) {
        json_object_set_new(r, "ref", json_string(refs[0]));
    } else {
        json_t *list = json_array();
        for (unsigned i = 0; i < n; i++)
            json_array_append_new(list, json_string(refs[i]));
        json_object_set_new(r, "refs", list);
    }
    return r;
}

static enum MHD_Result reply_submit_error(api_request *req, rt_status st, const char *prefix,
                                          const char *err)
{
    if (st == RT_ELIMIT) {
        req->retry_after = 1;
        return api_problem(req, 429, "TooManyRequests", err, NULL);
    }
    if (st == RT_ENOTFOUND && !prefix[0])
        return api_problem(req, 404, "NotFound", err, NULL);
    if (st == RT_ENOMEM)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    return api_problemf(req, 400, "BadRequest", "%s%s", prefix, err);
}

/* Cluster mode: a function unknown here that another node's module provides is answered
 * 409 ModuleNotLoaded (true), not 404. */
static bool module_missing(api_request *req, const char *function, const char *prefix,
                           enum MHD_Result *result)
{
    return req->ctx->cluster && function && !rt_registry_find(req->ctx->registry, function) &&
           api_cluster_module_missing(req, function, false, prefix, result);
}

/* ---- POST /v1/tasks ----------------------------------------------------------------- */

/* What a submitted task keeps across Prefer: wait rounds. */
typedef struct submitted {
    char task_id[RT_REF_SIZE];
    unsigned n;
    char (*refs)[RT_REF_SIZE];
} submitted;

static void submitted_free(void *p)
{
    submitted *s = p;
    if (s) {
        free(s->refs);
        free(s);
    }
}

/* 202 with the receipt, and the task's Location (any node answers for it). */
static enum MHD_Result reply_receipt_of(api_request *req, const char *task_id,
                                        char (*refs)[RT_REF_SIZE], unsigned n)
{
    char location[16 + RT_REF_SIZE];
    snprintf(location, sizeof(location), "/v1/tasks/%s", task_id);
    struct MHD_Response *resp = api_response_json(req, receipt(task_id, refs, n));
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location);
    return api_reply(req, 202, resp, "application/json");
}

static enum MHD_Result reply_receipt(api_request *req, const submitted *s)
{
    return reply_receipt_of(req, s->task_id, s->refs, s->n);
}

/* Prefer: wait rounds: answer with the result once every ref resolved, or the receipt. */
static enum MHD_Result answer_or_park(api_request *req, const submitted *s)
{
    if (s->n == 1) {
        /* One result: one look at the store decides. */
        rt_object_view view;
        rt_status st = rt_store_get(req->ctx->store, s->refs[0], &view);
        enum MHD_Result r;
        if (st == RT_ENOTFOUND) {
            r = reply_receipt(req, s); /* long forgotten: the receipt is all there is */
        } else if (st == RT_OK && view.state == RT_OBJ_PENDING) {
            const char *refs[1] = {s->refs[0]};
            /* The task is accepted whatever happens now: when no more requests may wait,
             * the answer is the receipt, not a 429 that would invite a second submission. */
            r = rt_clock_monotonic() < req->deadline && !api_parking_full(req)
                    ? api_park_on_refs(req, refs, 1, 1)
                    : reply_receipt(req, s);
        } else {
            size_t len = strnlen(s->refs[0], sizeof(req->ray_ref) - 1);
            memcpy(req->ray_ref, s->refs[0], len);
            req->ray_ref[len] = '\0';
            r = api_objects_reply_resolved(req, &view);
        }
        rt_object_view_release(&view);
        return r;
    }
    const char *pending[RT_TASK_NUM_RETURNS_MAX];
    size_t np = 0;
    for (unsigned i = 0; i < s->n; i++) {
        rt_object_view view;
        if (rt_store_peek(req->ctx->store, s->refs[i], &view) == RT_OK &&
            view.state == RT_OBJ_PENDING)
            pending[np++] = s->refs[i];
        rt_object_view_release(&view);
    }
    if (np > 0) {
        /* The task is accepted whatever happens now: when no more requests may wait, the
         * answer is the receipt, not a 429 that would invite a second submission. */
        if (rt_clock_monotonic() < req->deadline && !api_parking_full(req))
            return api_park_on_refs(req, pending, np, np);
        return reply_receipt(req, s);
    }
    /* Several results: answer as POST /v1/objects/get would, with the task id. */
    json_t *list = json_array();
    for (unsigned i = 0; i < s->n; i++)
        json_array_append_new(list, api_objects_entry(req, s->refs[i]));
    json_t *body = receipt(s->task_id, s->refs, s->n);
    json_object_set_new(body, "objects", list);
    return api_reply_json(req, 200, body);
}

/* ---- spillback (cluster mode) ------------------------------------------------------- */

static enum MHD_Result submit_here(api_request *req, bool may_spill);

/* A spilled-back task, kept by the node that owns its result ref until the result comes:
 * if the node running it dies first, this node runs it again, as Ray's owner retries a
 * task whose worker node died, within the task's max_retries. */
typedef struct rerun {
    api_context *ctx;
    char task_id[RT_REF_SIZE]; /* the other node's */
    size_t body_len;
    char body[]; /* the POST /v1/tasks body, as the client sent it */
} rerun;

static bool rerun_here(void *arg, const char *local_ref)
{
    rerun *r = arg;
    json_t *doc = json_loadb(r->body, r->body_len, 0, NULL);
    rt_task_spec spec;
    char err[256], task_id[RT_REF_SIZE], ref[RT_REF_SIZE];
    bool taken = false;
    if (doc && api_decode_task(doc, &spec, err, sizeof(err)) == API_DECODE_OK &&
        spec.max_retries != 0) {
        /* The death used up an attempt; -1 (the function's default) stays the default. */
        if (spec.max_retries > 0)
            spec.max_retries--;
        if (rt_task_submit(r->ctx->tasks, &spec, task_id, &ref, err, sizeof(err)) == RT_OK) {
            taken = rt_fetch_alias_local(r->ctx->fetch, local_ref, ref) == RT_OK;
            json_t *ev = json_pack("{s:s,s:s,s:s,s:s,s:s}", "task_id", r->task_id, "retry_task_id",
                                   task_id, "function", spec.function, "ref", local_ref,
                                   "reason", "node_died");
            rt_event_emit("warn", "task retried", ev);
        }
    }
    json_decref(doc);
    return taken;
}

static void rerun_free(void *arg)
{
    free(arg);
}

static rt_status alias_with_rerun(api_request *req, const char *local, const char *remote,
                                  const char *task_id)
{
    rerun *r = malloc(sizeof(*r) + req->body_len);
    if (!r)
        return RT_ENOMEM;
    r->ctx = req->ctx;
    snprintf(r->task_id, sizeof(r->task_id), "%s", task_id);
    r->body_len = req->body_len;
    memcpy(r->body, req->body, req->body_len);
    return rt_fetch_alias_rerun(req->ctx->fetch, local, remote, rerun_here, r, rerun_free);
}

/* The node the task was sent to answered (or did not): the receipt names its task and this
 * node's own result ref, which resolves with the other node's result. Anything but a
 * receipt, and the task is submitted here after all (its own checks answer a bad one). */
static enum MHD_Result spill_finish(api_request *req)
{
    const rt_peer_answer *a = api_forward_fanout_answer(req, 0);
    json_t *body = NULL;
    if (a && a->outcome == RT_PEER_ANSWERED && a->status == 202 && a->body)
        body = json_loadb((const char *)a->body->data, a->body->size, 0, NULL);
    const char *task_id = json_string_value(json_object_get(body, "task_id"));
    const char *remote = json_string_value(json_object_get(body, "ref"));
    char local[RT_REF_SIZE];
    if (!task_id || !remote || !rt_ref_valid(task_id) || !rt_ref_valid(remote) ||
        rt_store_create_pending(req->ctx->store, local) != RT_OK) {
        json_decref(body);
        return submit_here(req, false);
    }
    if (alias_with_rerun(req, local, remote, task_id) != RT_OK) {
        rt_store_delete(req->ctx->store, local);
        json_decref(body);
        return submit_here(req, false);
    }
    char spilled_task_id[RT_REF_SIZE];
    snprintf(spilled_task_id, sizeof(spilled_task_id), "%s", task_id);
    json_decref(body);
    return reply_receipt_of(req, spilled_task_id, &local, 1);
}

enum MHD_Result api_tasks_submit(api_request *req)
{
    if (req->ctx->cluster && api_forward_fanout_done(req))
        return spill_finish(req);
    return submit_here(req, req->ctx->cluster != NULL);
}

static enum MHD_Result submit_here(api_request *req, bool may_spill)
{
    if (req->handler_state) /* resumed after Prefer: wait */
        return answer_or_park(req, req->handler_state);
    if (api_body_json(req) != 0)
        return MHD_YES;
    rt_task_spec spec;
    char err[256];
    if (api_decode_task(req->json, &spec, err, sizeof(err)) != API_DECODE_OK)
        return api_problem(req, 400, "BadRequest", err, NULL);
    char url[RT_CLUSTER_URL_MAX];
    /* Sessions are per node: a task made under one runs here. */
    if (may_spill && spec.num_returns == 1 && !api_header(req, "Prefer") && !req->session[0] &&
        api_cluster_spill_target_for(req, spec.function, false, url, NULL))
        return api_forward_call(req, url, "POST", "/v1/tasks", req->body, req->body_len, 30);

    submitted *s = calloc(1, sizeof(*s));
    if (s)
        s->refs = calloc(spec.num_returns, sizeof(*s->refs));
    if (!s || !s->refs) {
        submitted_free(s);
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    }
    s->n = spec.num_returns;
    req->handler_state = s;
    req->handler_state_free = submitted_free;
    spec.request_id = req->request_id;
    spec.traceparent = req->traceparent[0] ? req->traceparent : NULL;
    /* The task takes args and kwargs out of the request's document instead of copying
     * them: nothing reads them there after this. */
    spec.args = api_json_take(req->json, "args", spec.args);
    spec.kwargs = api_json_take(req->json, "kwargs", spec.kwargs);
    spec.args_given = true;
    api_read_prefer_wait(req);
    spec.inline_ok = req->prefer_wait > 0;
    if (req->ctx->fetch)
        api_cluster_want_args(req->ctx, spec.args, spec.kwargs);
    rt_status st = rt_task_submit(req->ctx->tasks, &spec, s->task_id, s->refs, err, sizeof(err));
    if (st != RT_OK) {
        req->prefer_wait = 0; /* refused before any wait: no Preference-Applied */
        enum MHD_Result missing;
        if (st == RT_ENOTFOUND && module_missing(req, spec.function, "", &missing))
            return missing;
        return reply_submit_error(req, st, "", err);
    }
    if (api_session_adopt_task(req, s->task_id, s->refs, s->n) != 0) {
        req->prefer_wait = 0;
        return api_session_reply_closed(req);
    }

    if (req->prefer_wait <= 0)
        return reply_receipt(req, s);
    req->deadline = rt_clock_monotonic() + req->prefer_wait;
    return answer_or_park(req, s);
}

/* ---- POST /v1/tasks/batch ----------------------------------------------------------- */

/* The batch's specs, their args and kwargs taken out of the body (args_given), by the
 * quick reader when the body has the usual shape, else by the general decoder. Returns 0,
 * or -1 after answering (bad input, out of memory). */
static int decode_batch(api_request *req, api_task_batch *batch)
{
    if (!req->json && req->body && api_task_batch_scan(req->body, req->body_len, batch) == 0)
        return 0;
    memset(batch, 0, sizeof(*batch));
    if (api_body_json(req) != 0)
        return -1;
    char err[256];
    int d = api_decode_task_batch(req->json, &batch->specs, &batch->n, err, sizeof(err));
    if (d != API_DECODE_OK) {
        if (d == API_DECODE_NOMEM)
            api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        else
            api_problem(req, 400, "BadRequest", err, NULL);
        return -1;
    }
    json_t *list = json_object_get(req->json, "tasks");
    for (size_t i = 0; i < batch->n; i++) {
        /* Each task takes its args and kwargs out of the request's document instead of
         * copying them (as a single submit does): nothing reads them there after this. */
        rt_task_spec *spec = &batch->specs[i];
        json_t *task = json_array_get(list, i);
        spec->args = api_json_take(task, "args", spec->args);
        spec->kwargs = api_json_take(task, "kwargs", spec->kwargs);
        spec->args_given = true;
    }
    return 0;
}

enum MHD_Result api_tasks_submit_batch(api_request *req)
{
    api_task_batch batch;
    if (decode_batch(req, &batch) != 0)
        return MHD_YES;
    rt_task_spec *specs = batch.specs;
    size_t n = batch.n;
    char err[256], prefix[32];
    size_t total_refs = 0;
    for (size_t i = 0; i < n; i++) {
        total_refs += specs[i].num_returns;
        specs[i].request_id = req->request_id;
        if (req->ctx->fetch)
            api_cluster_want_args(req->ctx, specs[i].args, specs[i].kwargs);
        specs[i].traceparent = req->traceparent[0] ? req->traceparent : NULL;
    }
    char(*ids)[RT_REF_SIZE] = calloc(n, sizeof(*ids));
    char(*refs)[RT_REF_SIZE] = calloc(total_refs, sizeof(*refs));
    enum MHD_Result result;
    if (!ids || !refs) {
        for (size_t i = 0; i < n; i++) { /* the taken arguments, not handed over */
            json_decref(specs[i].args);
            json_decref(specs[i].kwargs);
        }
        result = api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        goto done;
    }
    size_t bad = 0;
    rt_status st = rt_task_submit_many(req->ctx->tasks, specs, n, ids, refs, &bad, err,
                                       sizeof(err));
    if (st != RT_OK) {
        snprintf(prefix, sizeof(prefix), "tasks[%zu]: ", bad);
        if (st != RT_ENOTFOUND || bad >= n ||
            !module_missing(req, specs[bad].function, prefix, &result))
            result = reply_submit_error(req, st, st == RT_ELIMIT ? "" : prefix, err);
        goto done;
    }
    bool closed = false;
    for (size_t i = 0, r = 0; i < n; r += specs[i].num_returns, i++)
        closed |= api_session_adopt_task(req, ids[i], &refs[r], specs[i].num_returns) != 0;
    if (closed) {
        result = api_session_reply_closed(req);
        goto done;
    }
    size_t len = 0;
    char *text = api_task_receipts_text((const char(*)[RT_REF_SIZE])ids,
                                        (const char(*)[RT_REF_SIZE])refs, specs, n, &len);
    result = api_reply_json_text(req, 202, text, len);
done:
    api_task_batch_release(&batch);
    free(ids);
    free(refs);
    return result;
}

/* ---- GET /v1/tasks/{id}, GET /v1/tasks, cancel ------------------------------------- */

static json_t *info_json(const rt_task_info *info)
{
    char when[40];
    json_t *t = json_pack("{s:s,s:s,s:s,s:i}", "task_id", info->task_id, "function",
                          info->function, "state", rt_task_state_name(info->state), "attempts",
                          (int)info->attempts);
    if (info->name[0])
        json_object_set_new(t, "name", json_string(info->name));
    if (info->num_returns == 1) {
        json_object_set_new(t, "ref", json_string(info->refs[0]));
    } else {
        json_t *refs = json_array();
        for (unsigned i = 0; i < info->num_returns; i++)
            json_array_append_new(refs, json_string(info->refs[i]));
        json_object_set_new(t, "refs", refs);
    }
    json_object_set_new(t, "submitted_at",
                        json_string(rt_clock_format(info->submitted_at, when, sizeof(when))));
    json_object_set_new(t, "started_at",
                        info->started_at > 0
                            ? json_string(rt_clock_format(info->started_at, when, sizeof(when)))
                            : json_null());
    json_object_set_new(t, "finished_at",
                        info->finished_at > 0 ? json_string(rt_clock_format(
                                                    info->finished_at, when, sizeof(when)))
                                              : json_null());
    json_object_set_new(t, "cancel_requested", json_boolean(info->cancel_requested));
    json_object_set_new(t, "error",
                        info->error ? api_problem_from_error(info->error, NULL) : json_null());
    return t;
}

static int check_task_id(api_request *req, const char *id)
{
    if (rt_ref_valid(id))
        return 0;
    api_problemf(req, 400, "BadRequest",
                 "'%.80s' is not a task id: ids are 1 to 64 characters of [A-Za-z0-9_-]", id);
    return -1;
}

/* Cluster mode: a task another node owns (its id names it) is answered by that node.
 * Returns true when it answered or relayed (*result set), false for this node's own. */
static bool foreign_task(api_request *req, const char *id, const char *path,
                         enum MHD_Result *result)
{
    char tag[RT_NODE_TAG_SIZE], url[RT_CLUSTER_URL_MAX];
    rt_owner owner = rt_cluster_owner(req->ctx->cluster, id, tag, url, sizeof(url));
    if (owner == RT_OWNER_SELF)
        return false;
    if (owner == RT_OWNER_UNKNOWN) {
        *result = api_problemf(req, 404, "NotFound",
                               "task %s does not exist: no node of this cluster has tag %s",
                               id, tag);
    } else if (owner == RT_OWNER_DEAD) {
        char detail[200];
        snprintf(detail, sizeof(detail),
                 "task %s is gone: node %s, which owned it, died (its heartbeat stopped)", id,
                 tag);
        *result = api_problem(req, 404, "NotFound", detail,
                              json_pack("{s:s,s:s,s:b}", "task_id", id, "owner", tag,
                                        "owner_died", 1));
    } else if (api_header(req, API_FORWARDED_HEADER)) {
        req->retry_after = 1;
        *result = api_problemf(req, 503, "ClusterUnavailable",
                               "task %s belongs to node %s, not to this node (a peer's "
                               "membership is out of date); retry",
                               id, tag);
    } else {
        *result = api_forward_relay(req, url, path, tag, NULL, 0, NULL, 0);
    }
    return true;
}

enum MHD_Result api_tasks_get(api_request *req)
{
    const char *id = req->params[0];
    if (check_task_id(req, id) != 0)
        return MHD_YES;
    enum MHD_Result result;
    char path[RT_REF_SIZE + 32];
    snprintf(path, sizeof(path), "/v1/tasks/%s", id);
    if (req->ctx->cluster && foreign_task(req, id, path, &result))
        return result;
    rt_task_info info;
    if (rt_task_get(req->ctx->tasks, id, &info) != RT_OK)
        return api_problem(req, 404, "NotFound", "the task does not exist",
                           json_pack("{s:s}", "task_id", id));
    json_t *body = info_json(&info);
    rt_task_info_release(&info);
    return api_reply_json(req, 200, body);
}

static int tasks_list_check(api_request *req)
{
    const char *state = api_query(req, "state");
    if (state && rt_task_state_parse(state) < 0) {
        api_problem(req, 400, "BadRequest",
                    "state must be one of PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, "
                    "RUNNING, FINISHED, FAILED, CANCELLED",
                    NULL);
        return -1;
    }
    return 0;
}

static int tasks_list_local(api_request *req, uint64_t after, size_t limit, api_list_page *page)
{
    const char *state = api_query(req, "state");
    rt_task_info *infos = calloc(limit, sizeof(*infos));
    if (!infos)
        return -1;
    size_t n = rt_task_list(req->ctx->tasks, after, state ? rt_task_state_parse(state) : -1,
                            api_query(req, "function"), limit, infos, &page->next);
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(page->items, info_json(&infos[i]));
        if (page->seqs) {
            page->seqs[i] = infos[i].seq;
            page->times[i] = infos[i].submitted_at;
        }
        rt_task_info_release(&infos[i]);
    }
    page->n = n;
    free(infos);
    return 0;
}

static const char *const TASKS_LIST_FILTERS[] = {"state", "function", NULL};
static const api_list_kind TASKS_LISTING = {
    "tasks", "/v1/tasks", "/v1/cluster/list/tasks", TASKS_LIST_FILTERS,
    tasks_list_check, tasks_list_local,
};

enum MHD_Result api_tasks_list(api_request *req)
{
    return api_list(req, &TASKS_LISTING);
}

enum MHD_Result api_tasks_list_peer(api_request *req)
{
    return api_list_peer(req, &TASKS_LISTING);
}

enum MHD_Result api_tasks_cancel(api_request *req)
{
    const char *id = req->params[0];
    if (check_task_id(req, id) != 0)
        return MHD_YES;
    enum MHD_Result result;
    char path[RT_REF_SIZE + 32];
    snprintf(path, sizeof(path), "/v1/tasks/%s/cancel", id);
    if (req->ctx->cluster && foreign_task(req, id, path, &result))
        return result;
    rt_task_state state;
    rt_status st = rt_task_cancel(req->ctx->tasks, id, &state);
    if (st == RT_ENOTFOUND)
        return api_problem(req, 404, "NotFound", "the task does not exist",
                           json_pack("{s:s}", "task_id", id));
    if (st == RT_ESTATE)
        return api_problem(req, 409, "Conflict", "the task has already ended; nothing to cancel",
                           json_pack("{s:s,s:s}", "task_id", id, "state",
                                     rt_task_state_name(state)));
    return api_reply_json(req, 202,
                          json_pack("{s:s,s:s,s:b}", "task_id", id, "state",
                                    rt_task_state_name(state), "cancel_requested", 1));
}
