/* /v1/functions: what tasks can run. */
#include <string.h>

#include "api/handlers.h"
#include "api/problem.h"

static json_t *function_json(const rt_function *fn)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", fn->name, "kind",
                     rt_function_kind_name(fn->kind), "description",
                     fn->description ? fn->description : "", "args",
                     fn->args_doc ? fn->args_doc : "", "returns",
                     fn->returns_doc ? fn->returns_doc : "");
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
    const rt_function *fn = rt_registry_find(req->ctx->registry, req->params[0]);
    if (!fn)
        return api_problem(req, 404, "NotFound", "the function does not exist",
                           json_pack("{s:s}", "function", req->params[0]));
    return api_reply_json(req, 200, function_json(fn));
}
