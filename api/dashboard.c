/* GET /dashboard and /dashboard/{file}: the embedded dashboard (see api/dashboard.h). Static
 * files only, served from the binary without copying; the pages read the API with the
 * user's token themselves, so the files need none. Nothing runs while no one looks. */
#include "api/dashboard.h"

#include <string.h>

#include "api/handlers.h"
#include "api/live.h"
#include "api/problem.h"

/* Answers with one embedded file and headers that keep the page to its own origin. */
static enum MHD_Result send_file(api_request *req, const api_dashboard_file *f)
{
    req->bytes_out = f->len;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(f->len, (void *)f->data, MHD_RESPMEM_PERSISTENT);
    if (resp) {
        /* Scripts, styles and requests from this origin only: no CDN, nothing inline. */
        MHD_add_response_header(resp, "Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'");
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
    }
    return api_reply(req, 200, resp, f->content_type);
}

enum MHD_Result api_dashboard_get(api_request *req)
{
    const char *name = req->route && req->params[0] ? req->params[0] : "index.html";
    /* Whether the API wants a token: the page asks for one before its first call instead
     * of failing one (a 401 the browser would log as an error). */
    if (strcmp(name, "config.json") == 0)
        return api_reply_json(req, 200,
                              json_pack("{s:b}", "auth", api_live_auth_on(req->ctx->live)));
    for (unsigned long i = 0; i < api_dashboard_file_count; i++)
        if (strcmp(api_dashboard_files[i].name, name) == 0)
            return send_file(req, &api_dashboard_files[i]);
    return api_problem(req, 404, "NotFound", "the dashboard has no such file",
                       json_pack("{s:s}", "file", name));
}
