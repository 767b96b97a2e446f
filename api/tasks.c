/* /v1/tasks: submit (one or a batch), Prefer: wait, get, list, cancel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/handlers.h"
#include "api/park.h"
#include "api/problem.h"
#include "api/values.h"
#include "runtime/clock.h"

#define BATCH_MAX 10000
#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000
#define DEFAULT_MAX_RETRIES -1 /* the function's default; Ray's (3) for built-ins. Function
                                  errors are retried only with retry_exceptions */

/* ---- reading a task from JSON ------------------------------------------------------- */

/* Fills spec from one task object (borrowed JSON; spec points into it). Returns 0, or -1
 * with a reason in err. */
static int parse_task(json_t *task, rt_task_spec *spec, char *err, size_t err_size)
{
    static const char *const KEYS[] = {"function", "args", "kwargs", "options", NULL};
    static const char *const OPTION_KEYS[] = {"max_retries", "retry_exceptions", "timeout",
                                              "num_returns", "name", NULL};
    memset(spec, 0, sizeof(*spec));
    spec->num_returns = 1;
    spec->max_retries = DEFAULT_MAX_RETRIES;
    if (!json_is_object(task)) {
        snprintf(err, err_size, "a task must be an object {\"function\", \"args\", ...}");
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(task, key, v)
    {
        int known = 0;
        for (const char *const *k = KEYS; *k; k++)
            known |= strcmp(*k, key) == 0;
        if (!known) {
            snprintf(err, err_size, "unknown member '%.64s'", key);
            return -1;
        }
    }
    json_t *fn = json_object_get(task, "function");
    if (!json_is_string(fn)) {
        snprintf(err, err_size, "function must be a string");
        return -1;
    }
    spec->function = json_string_value(fn);
    spec->args = json_object_get(task, "args");
    spec->kwargs = json_object_get(task, "kwargs");
    if (spec->args && json_is_null(spec->args))
        spec->args = NULL;
    if (spec->kwargs && json_is_null(spec->kwargs))
        spec->kwargs = NULL;
    if (spec->args && !json_is_array(spec->args)) {
        snprintf(err, err_size, "args must be a list");
        return -1;
    }
    if (spec->kwargs && !json_is_object(spec->kwargs)) {
        snprintf(err, err_size, "kwargs must be an object");
        return -1;
    }
    json_t *options = json_object_get(task, "options");
    if (!options || json_is_null(options))
        return 0;
    if (!json_is_object(options)) {
        snprintf(err, err_size, "options must be an object");
        return -1;
    }
    json_object_foreach(options, key, v)
    {
        int known = 0;
        for (const char *const *k = OPTION_KEYS; *k; k++)
            known |= strcmp(*k, key) == 0;
        if (!known) {
            snprintf(err, err_size, "unknown option '%.64s'", key);
            return -1;
        }
    }
    if ((v = json_object_get(options, "num_returns"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > RT_TASK_NUM_RETURNS_MAX) {
            snprintf(err, err_size, "options.num_returns must be an integer from 1 to %d",
                     RT_TASK_NUM_RETURNS_MAX);
            return -1;
        }
        spec->num_returns = (unsigned)json_integer_value(v);
    }
    if ((v = json_object_get(options, "max_retries"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000) {
            snprintf(err, err_size, "options.max_retries must be an integer from 0 to 1000");
            return -1;
        }
        spec->max_retries = (int)json_integer_value(v);
    }
    if ((v = json_object_get(options, "retry_exceptions"))) {
        if (!json_is_boolean(v)) {
            snprintf(err, err_size, "options.retry_exceptions must be true or false");
            return -1;
        }
        spec->retry_exceptions = json_is_true(v);
    }
    if ((v = json_object_get(options, "timeout")) && !json_is_null(v)) {
        if (!json_is_number(v) || json_number_value(v) < 0) {
            snprintf(err, err_size, "options.timeout must be a number of seconds >= 0");
            return -1;
        }
        spec->timeout = json_number_value(v);
    }
    if ((v = json_object_get(options, "name")) && !json_is_null(v)) {
        if (!json_is_string(v)) {
            snprintf(err, err_size, "options.name must be a string");
            return -1;
        }
        spec->name = json_string_value(v);
    }
    return 0;
}

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

static enum MHD_Result reply_receipt(api_request *req, const submitted *s)
{
    char location[16 + RT_REF_SIZE];
    snprintf(location, sizeof(location), "/v1/tasks/%s", s->task_id);
    struct MHD_Response *resp = api_response_json(req, receipt(s->task_id, s->refs, s->n));
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location);
    return api_reply(req, 202, resp, "application/json");
}

/* Prefer: wait rounds: answer with the result once every ref resolved, or the receipt. */
static enum MHD_Result answer_or_park(api_request *req, const submitted *s)
{
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
        if (rt_clock_monotonic() < req->deadline)
            return api_park_on_refs(req, pending, np, np);
        return reply_receipt(req, s);
    }
    if (s->n == 1) {
        rt_object_view view;
        rt_store_get(req->ctx->store, s->refs[0], &view);
        snprintf(req->ray_ref, sizeof(req->ray_ref), "%s", s->refs[0]);
        enum MHD_Result r = api_objects_reply_resolved(req, &view);
        rt_object_view_release(&view);
        return r;
    }
    /* Several results: answer as POST /v1/objects/get would, with the task id. */
    json_t *list = json_array();
    for (unsigned i = 0; i < s->n; i++)
        json_array_append_new(list, api_objects_entry(req, s->refs[i]));
    json_t *body = receipt(s->task_id, s->refs, s->n);
    json_object_set_new(body, "objects", list);
    return api_reply_json(req, 200, body);
}

enum MHD_Result api_tasks_submit(api_request *req)
{
    if (req->handler_state) /* resumed after Prefer: wait */
        return answer_or_park(req, req->handler_state);
    if (api_body_json(req) != 0)
        return MHD_YES;
    rt_task_spec spec;
    char err[256];
    if (parse_task(req->json, &spec, err, sizeof(err)) != 0)
        return api_problem(req, 400, "BadRequest", err, NULL);

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
    rt_status st = rt_task_submit(req->ctx->tasks, &spec, s->task_id, s->refs, err, sizeof(err));
    if (st != RT_OK)
        return reply_submit_error(req, st, "", err);

    api_read_prefer_wait(req);
    if (req->prefer_wait <= 0)
        return reply_receipt(req, s);
    req->deadline = rt_clock_monotonic() + req->prefer_wait;
    return answer_or_park(req, s);
}

/* ---- POST /v1/tasks/batch ----------------------------------------------------------- */

enum MHD_Result api_tasks_submit_batch(api_request *req)
{
    static const char *const KEYS[] = {"tasks", NULL};
    if (api_body_json(req) != 0)
        return MHD_YES;
    if (!json_is_object(req->json))
        return api_problem(req, 400, "BadRequest", "the body must be {\"tasks\": [task, ...]}",
                           NULL);
    if (api_json_only_keys(req, req->json, KEYS, "the body") != 0)
        return MHD_YES;
    json_t *list = json_object_get(req->json, "tasks");
    if (!json_is_array(list) || json_array_size(list) == 0 ||
        json_array_size(list) > BATCH_MAX)
        return api_problemf(req, 400, "BadRequest", "tasks must be a list of 1 to %d tasks",
                            BATCH_MAX);
    size_t n = json_array_size(list);
    rt_task_spec *specs = calloc(n, sizeof(*specs));
    char(*ids)[RT_REF_SIZE] = calloc(n, sizeof(*ids));
    char(*refs)[RT_REF_SIZE] = NULL;
    enum MHD_Result result;
    char err[256], prefix[32];
    size_t total_refs = 0;
    if (!specs || !ids) {
        result = api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (parse_task(json_array_get(list, i), &specs[i], err, sizeof(err)) != 0) {
            result = api_problemf(req, 400, "BadRequest", "tasks[%zu]: %s", i, err);
            goto done;
        }
        total_refs += specs[i].num_returns;
        specs[i].request_id = req->request_id;
    }
    refs = calloc(total_refs, sizeof(*refs));
    if (!refs) {
        result = api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        goto done;
    }
    size_t bad = 0;
    rt_status st = rt_task_submit_many(req->ctx->tasks, specs, n, ids, refs, &bad, err,
                                       sizeof(err));
    if (st != RT_OK) {
        snprintf(prefix, sizeof(prefix), "tasks[%zu]: ", bad);
        result = reply_submit_error(req, st, st == RT_ELIMIT ? "" : prefix, err);
        goto done;
    }
    json_t *out = json_array();
    size_t r = 0;
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(out, receipt(ids[i], &refs[r], specs[i].num_returns));
        r += specs[i].num_returns;
    }
    result = api_reply_json(req, 202, json_pack("{s:o}", "tasks", out));
done:
    free(specs);
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

enum MHD_Result api_tasks_get(api_request *req)
{
    const char *id = req->params[0];
    if (check_task_id(req, id) != 0)
        return MHD_YES;
    rt_task_info info;
    if (rt_task_get(req->ctx->tasks, id, &info) != RT_OK)
        return api_problem(req, 404, "NotFound", "the task does not exist",
                           json_pack("{s:s}", "task_id", id));
    json_t *body = info_json(&info);
    rt_task_info_release(&info);
    return api_reply_json(req, 200, body);
}

enum MHD_Result api_tasks_list(api_request *req)
{
    int state = -1;
    const char *state_text = api_query(req, "state");
    if (state_text && (state = rt_task_state_parse(state_text)) < 0)
        return api_problem(req, 400, "BadRequest",
                           "state must be one of PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, "
                           "RUNNING, FINISHED, FAILED, CANCELLED",
                           NULL);
    unsigned long long limit = LIST_LIMIT_DEFAULT, cursor = 0;
    if (api_query_uint(req, "limit", 1, LIST_LIMIT_MAX, &limit) != 0 ||
        api_query_uint(req, "cursor", 0, (unsigned long long)-1, &cursor) != 0)
        return MHD_YES;
    rt_task_info *infos = calloc(limit, sizeof(*infos));
    if (!infos)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    uint64_t next = 0;
    size_t n = rt_task_list(req->ctx->tasks, cursor, state, api_query(req, "function"), limit,
                            infos, &next);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(list, info_json(&infos[i]));
        rt_task_info_release(&infos[i]);
    }
    free(infos);
    char next_text[24];
    snprintf(next_text, sizeof(next_text), "%llu", (unsigned long long)next);
    return api_reply_json(req, 200,
                          json_pack("{s:o,s:o}", "tasks", list, "next_cursor",
                                    next ? json_string(next_text) : json_null()));
}

enum MHD_Result api_tasks_cancel(api_request *req)
{
    const char *id = req->params[0];
    if (check_task_id(req, id) != 0)
        return MHD_YES;
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
