/* /v1/sessions: open, look at and close sessions (runtime/session.h), and the helpers
 * other handlers call to give what a request made to the session it named in its
 * Rayd-Session header (read, and its lease renewed, by api/server.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/decode.h"
#include "api/handlers.h"
#include "api/problem.h"
#include "runtime/clock.h"
#include "runtime/session.h"

/* A lease when POST /v1/sessions names none: a minute, or the longest allowed if less. */
#define TTL_DEFAULT 60.0

static json_t *info_json(const rt_session_info *info)
{
    char created[40], expires[40];
    return json_pack("{s:s,s:f,s:s,s:s,s:f,s:I,s:I,s:I,s:I}", "session_id", info->session_id,
                     "ttl", info->ttl, "created_at",
                     rt_clock_format(info->created_at, created, sizeof(created)),
                     "expires_at", rt_clock_format(info->expires_at, expires, sizeof(expires)),
                     "expires_at_unix", info->expires_at, "renewals",
                     (json_int_t)info->renewals, "objects", (json_int_t)info->objects, "tasks",
                     (json_int_t)info->tasks, "actors", (json_int_t)info->actors);
}

static enum MHD_Result reply_not_found(api_request *req, const char *id)
{
    return api_problem(req, 404, "SessionNotFound",
                       "no open session has this id: it was closed, its lease ran out, or it "
                       "never existed (sessions are per node)",
                       json_pack("{s:s}", "session_id", id));
}

static bool check_id(api_request *req, const char *id)
{
    if (rt_ref_valid(id))
        return true;
    api_problemf(req, 400, "BadRequest",
                 "'%.80s' is not a session id: ids are 1 to 64 characters of [A-Za-z0-9_-]", id);
    return false;
}

/* ---- POST /v1/sessions --------------------------------------------------------------- */

enum MHD_Result api_sessions_open(api_request *req)
{
    static const char *const KEYS[] = {"ttl", NULL};
    rt_sessions *ss = req->ctx->sessions;
    double max_ttl = req->ctx->config.session_max_ttl;
    double ttl = TTL_DEFAULT < max_ttl ? TTL_DEFAULT : max_ttl;
    if (req->body_len > 0 && api_body_json(req) != 0)
        return MHD_YES;
    char err[160];
    if (req->json) {
        if (!json_is_object(req->json))
            return api_problem(req, 400, "BadRequest", "the body must be {\"ttl\": seconds}",
                               NULL);
        if (api_decode_only_keys(req->json, KEYS, "the body", err, sizeof(err)))
            return api_problem(req, 400, "BadRequest", err, NULL);
        json_t *t = json_object_get(req->json, "ttl");
        if (t && !json_is_null(t)) {
            if (!json_is_number(t) || !(json_number_value(t) > 0) ||
                json_number_value(t) > max_ttl)
                return api_problemf(req, 400, "BadRequest",
                                    "ttl must be a number of seconds > 0 and at most %g "
                                    "(RAYD_SESSION_MAX_TTL)",
                                    max_ttl);
            ttl = json_number_value(t);
        }
    }
    rt_session_info info;
    rt_status st = rt_session_open(ss, ttl, rt_clock_wall(), &info);
    if (st == RT_ELIMIT) {
        req->retry_after = 1;
        rt_sessions_stats s;
        rt_sessions_get_stats(ss, &s);
        return api_problemf(req, 429, "TooManyRequests",
                            "%zu sessions are open, the most this server keeps "
                            "(RAYD_MAX_SESSIONS); close one or retry later",
                            s.max_sessions);
    }
    if (st == RT_EINVAL)
        return api_problemf(req, 400, "BadRequest", "ttl must be > 0 and at most %g", max_ttl);
    if (st != RT_OK)
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    char location[16 + RT_REF_SIZE];
    snprintf(location, sizeof(location), "/v1/sessions/%s", info.session_id);
    struct MHD_Response *resp = api_response_json(req, info_json(&info));
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location);
    return api_reply(req, 201, resp, "application/json");
}

/* ---- GET and DELETE /v1/sessions/{id} ------------------------------------------------ */

enum MHD_Result api_sessions_get(api_request *req)
{
    const char *id = req->params[0];
    if (!check_id(req, id))
        return MHD_YES;
    rt_session_info info;
    if (rt_session_get(req->ctx->sessions, id, &info) != RT_OK)
        return reply_not_found(req, id);
    return api_reply_json(req, 200, info_json(&info));
}

enum MHD_Result api_sessions_close(api_request *req)
{
    const char *id = req->params[0];
    if (!check_id(req, id))
        return MHD_YES;
    if (rt_session_close(req->ctx->sessions, id) != RT_OK)
        return reply_not_found(req, id);
    return api_reply_empty(req, 204);
}

/* ---- the Rayd-Session header --------------------------------------------------------- */

int api_session_begin(api_request *req)
{
    const char *id = api_header(req, API_SESSION_HEADER);
    if (!id || !req->ctx->sessions)
        return 0;
    if (!rt_ref_valid(id)) {
        api_problemf(req, 400, "BadRequest",
                     API_SESSION_HEADER " '%.80s' is not a session id: ids are 1 to 64 "
                     "characters of [A-Za-z0-9_-]",
                     id);
        return -1;
    }
    if (rt_session_renew(req->ctx->sessions, id, rt_clock_wall()) != RT_OK) {
        reply_not_found(req, id);
        return -1;
    }
    snprintf(req->session, sizeof(req->session), "%s", id);
    return 0;
}

enum MHD_Result api_session_reply_closed(api_request *req)
{
    return api_problem(req, 404, "SessionNotFound",
                       "the session was closed (or its lease ran out) while this request ran; "
                       "what the request made was freed with it",
                       json_pack("{s:s}", "session_id", req->session));
}

/* RT_ENOTFOUND: the session closed between the request's start and now, and what it made
 * is gone already (the runtime cleaned it up as the close would have). Out of memory
 * leaves it as work made without a session. */
int api_session_adopt_objects(api_request *req, char (*refs)[RT_REF_SIZE], size_t n)
{
    if (!req->session[0])
        return 0;
    return rt_session_add_objects(req->ctx->sessions, req->session, refs, n) == RT_ENOTFOUND
               ? -1
               : 0;
}

int api_session_adopt_task(api_request *req, const char *task_id,
                           char (*refs)[RT_REF_SIZE], size_t n)
{
    if (!req->session[0])
        return 0;
    /* The task first: if the session is gone it is cancelled, then its refs are freed. */
    rt_status st = rt_session_add_task(req->ctx->sessions, req->session, task_id);
    rt_status st2 = rt_session_add_objects(req->ctx->sessions, req->session, refs, n);
    return st == RT_ENOTFOUND || st2 == RT_ENOTFOUND ? -1 : 0;
}

int api_session_adopt_actor(api_request *req, const char *actor_id)
{
    if (!req->session[0])
        return 0;
    return rt_session_add_actor(req->ctx->sessions, req->session, actor_id) == RT_ENOTFOUND
               ? -1
               : 0;
}
