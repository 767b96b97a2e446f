/* /v1/functions: what tasks can run. */
#include <stdlib.h>
#include <string.h>

#include "api/handlers.h"
#include "api/live.h"
#include "api/problem.h"
#include "api/redis_call.h"
#include "api/registrations.h"
#include "runtime/events.h"
#include "runtime/remote_function.h"

static json_t *function_json(const rt_function *fn)
{
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", fn->name, "kind",
                          rt_function_kind_name(fn->kind), "description",
                          fn->description ? fn->description : "", "args",
                          fn->args_doc ? fn->args_doc : "", "returns",
                          fn->returns_doc ? fn->returns_doc : "");
    if (fn->kind == RT_FUNCTION_REMOTE) {
        json_t *remote = json_pack("{s:s,s:f,s:i,s:i,s:b}", "url", fn->url, "timeout",
                                   fn->timeout, "max_concurrency", (int)fn->max_concurrency,
                                   "max_retries", fn->max_retries < 0 ? 3 : fn->max_retries,
                                   "quick", fn->quick);
        json_object_update(j, remote);
        json_decref(remote);
        if (fn->quick) {
            unsigned long long here, missed;
            rt_remote_function_quick_counts(fn, &here, &missed);
            json_object_set_new(j, "quick_calls",
                                json_pack("{s:I,s:I}", "answered_here", (json_int_t)here,
                                          "wait_missed", (json_int_t)missed));
        }
    }
    return j;
}

static void add_function(const rt_function *fn, void *arg)
{
    json_array_append_new(arg, function_json(fn));
}

enum MHD_Result api_functions_list(api_request *req)
{
    json_t *list = json_array();
    rt_registry_each(req->ctx->registry, add_function, list);
    return api_reply_json(req, 200, json_pack("{s:o}", "functions", list));
}

enum MHD_Result api_functions_get(api_request *req)
{
    const rt_function *fn = rt_registry_get(req->ctx->registry, req->params[0]);
    if (!fn)
        return api_problem(req, 404, "NotFound", "the function does not exist",
                           json_pack("{s:s}", "function", req->params[0]));
    json_t *j = function_json(fn);
    rt_function_drop(fn);
    return api_reply_json(req, 200, j);
}

/* ---- PUT and DELETE /v1/functions/{name}: remote functions ---------------------------- */

int api_functions_check_url(api_request *req, json_t *url, const char *allow)
{
    const char *text = json_string_value(url);
    if (!text || (strncmp(text, "http://", 7) != 0 && strncmp(text, "https://", 8) != 0)) {
        api_problem(req, 400, "BadRequest", "url must be an http:// or https:// URL", NULL);
        return -1;
    }
    if (strlen(text) != json_string_length(url)) {
        api_problem(req, 400, "BadRequest", "url must not contain a NUL character", NULL);
        return -1;
    }
    if (!rt_remote_url_allowed(allow, text)) {
        api_problem(req, 403, "Forbidden",
                    "the url is outside RAYD_REMOTE_ALLOW; ask the operator to add its "
                    "scheme://host:port",
                    json_pack("{s:s,s:s}", "url", text, "allowed", allow));
        return -1;
    }
    char why[200];
    if (rt_remote_url_check(text, why, sizeof(why)) != 0) {
        api_problem(req, 400, "BadRequest", why, NULL);
        return -1;
    }
    return 0;
}

enum MHD_Result api_functions_put(api_request *req)
{
    static const char *const KEYS[] = {"url",         "timeout", "max_concurrency",
                                       "max_retries", "quick",   NULL};
    const char *name = req->params[0];
    if (api_registration_answered(req)) /* cluster mode: every live node has it */
        return api_registration_answer(req);
    static const char DISABLED[] =
        "remote functions are disabled: start rayd with RAYD_REMOTE_ALLOW (or --remote-allow, "
        "or in RAYD_CONFIG_FILE, which SIGHUP reloads) listing the scheme://host:port prefixes "
        "it may call, e.g. RAYD_REMOTE_ALLOW=http://127.0.0.1:9000";
    char *allow = api_live_remote_allow(req->ctx->live);
    bool enabled = allow != NULL;
    free(allow); /* checked again, as it is then, with the url */
    if (!enabled)
        return api_problem(req, 403, "Forbidden", DISABLED, NULL);
    if (api_body_json(req) != 0)
        return MHD_YES;
    if (!json_is_object(req->json))
        return api_problem(req, 400, "BadRequest",
                           "the body must be {\"url\", \"timeout\", \"max_concurrency\", "
                           "\"max_retries\", \"quick\"}",
                           NULL);
    if (api_json_only_keys(req, req->json, KEYS, "the body") != 0)
        return MHD_YES;
    json_t *v;
    rt_remote_function_spec spec = {.name = name, .timeout = 60, .max_retries = -1};
    v = json_object_get(req->json, "url");
    /* The list in force now: a SIGHUP may have changed it since the check above. */
    allow = api_live_remote_allow(req->ctx->live);
    if (!allow)
        return api_problem(req, 403, "Forbidden", DISABLED, NULL);
    int refused = api_functions_check_url(req, v, allow);
    free(allow);
    if (refused != 0)
        return MHD_YES;
    spec.url = json_string_value(v);
    if ((v = json_object_get(req->json, "timeout"))) {
        if (!json_is_number(v) || json_number_value(v) <= 0 || json_number_value(v) > 3600)
            return api_problem(req, 400, "BadRequest",
                               "timeout must be a number of seconds, > 0 and at most 3600", NULL);
        spec.timeout = json_number_value(v);
    }
    if ((v = json_object_get(req->json, "max_concurrency"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 100000)
            return api_problem(req, 400, "BadRequest",
                               "max_concurrency must be an integer from 0 (no limit) to 100000",
                               NULL);
        spec.max_concurrency = (unsigned)json_integer_value(v);
    }
    if ((v = json_object_get(req->json, "max_retries"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000)
            return api_problem(req, 400, "BadRequest",
                               "max_retries must be an integer from 0 to 1000", NULL);
        spec.max_retries = (int)json_integer_value(v);
    }
    if ((v = json_object_get(req->json, "quick"))) {
        if (!json_is_boolean(v))
            return api_problem(req, 400, "BadRequest", "quick must be true or false", NULL);
        spec.quick = json_is_true(v);
    }
    if (req->ctx->cluster) {
        /* Refused here rather than stored in Redis for every node to refuse. */
        if (!rt_function_name_valid(name))
            return api_problem(req, 400, "BadRequest",
                               "function names are 1 to 128 characters of [A-Za-z0-9_.-]",
                               json_pack("{s:s}", "function", name));
        const rt_function *now = rt_registry_get(req->ctx->registry, name);
        bool fixed = now && now->kind != RT_FUNCTION_REMOTE;
        if (now)
            rt_function_drop(now);
        if (fixed)
            return api_problem(req, 409, "Conflict",
                               "the name belongs to a built-in or module function",
                               json_pack("{s:s}", "function", name));
    }
    char field[160];
    snprintf(field, sizeof(field), "function:%s", name);
    json_t *stored = json_pack("{s:s,s:f,s:i,s:i,s:b}", "url", spec.url, "timeout",
                               spec.timeout, "max_concurrency", (int)spec.max_concurrency,
                               "max_retries", spec.max_retries, "quick", spec.quick);
    int pending = api_registration_store(req, field, stored);
    json_decref(stored);
    if (pending)
        return MHD_YES; /* stored in Redis first (cluster mode), or refused */
    rt_function *fn = rt_remote_function_new(req->ctx->remote, &spec);
    if (!fn)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    /* The answer is made first: once listed, fn may be replaced and freed by another
     * request at any moment. */
    json_t *answer = function_json(fn);
    bool replaced = false;
    rt_status st = rt_registry_put_owned(req->ctx->registry, fn, rt_remote_function_release,
                                         &replaced);
    if (st != RT_OK) {
        json_decref(answer);
        rt_remote_function_release(fn);
        if (st == RT_EEXIST)
            return api_problem(req, 409, "Conflict",
                               "the name belongs to a built-in or module function",
                               json_pack("{s:s}", "function", name));
        if (st == RT_EINVAL)
            return api_problem(req, 400, "BadRequest",
                               "function names are 1 to 128 characters of [A-Za-z0-9_.-]",
                               json_pack("{s:s}", "function", name));
        return api_problem_status(req, st, "the function");
    }
    replaced = api_registration_replaced(req, replaced);
    rt_event_emit("info", "registration changed",
                  json_pack("{s:s,s:s,s:s,s:s?}", "kind", "function", "name", name, "change",
                            replaced ? "replaced" : "registered", "url",
                            json_string_value(json_object_get(answer, "url"))));
    return api_registration_reply(req, replaced ? 200 : 201, answer);
}

enum MHD_Result api_functions_delete(api_request *req)
{
    if (api_registration_answered(req))
        return api_registration_answer(req);
    char field[160];
    snprintf(field, sizeof(field), "function:%s", req->params[0]);
    if (api_registration_store(req, field, NULL))
        return MHD_YES; /* removed from Redis first (cluster mode), or refused */
    const rt_redis_answer *stored = api_redis_answer(req);
    bool removed_in_redis = stored && stored->type == RT_REDIS_INTEGER && stored->integer > 0;
    rt_status st = rt_registry_remove(req->ctx->registry, req->params[0]);
    if (st == RT_ENOTFOUND && removed_in_redis)
        st = RT_OK; /* this node had not taken it (outside its allow list): gone anyway */
    if (st == RT_ENOTFOUND)
        return api_problem(req, 404, "NotFound", "the function does not exist",
                           json_pack("{s:s}", "function", req->params[0]));
    if (st == RT_ESTATE)
        return api_problem(req, 409, "Conflict", "built-in and module functions cannot be removed",
                           json_pack("{s:s}", "function", req->params[0]));
    rt_event_emit("info", "registration changed",
                  json_pack("{s:s,s:s,s:s}", "kind", "function", "name", req->params[0],
                            "change", "removed"));
    return api_registration_reply(req, 204, NULL);
}
