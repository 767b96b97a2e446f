/* RFC 9457 problem+json bodies and the mapping from runtime errors to HTTP statuses. */
#include "api/problem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/events.h"

#define PROBLEM_TYPE_BASE "https://rayd.dev/problems/"

json_t *api_problem_new(unsigned status, const char *title, const char *detail)
{
    char type[160];
    snprintf(type, sizeof(type), PROBLEM_TYPE_BASE "%s", title);
    json_t *p = json_object();
    json_object_set_new(p, "type", json_string(type));
    json_object_set_new(p, "title", json_string(title));
    json_object_set_new(p, "status", json_integer(status));
    /* json_string rejects invalid UTF-8; fall back so that hostile input still yields a
     * valid body. */
    json_t *d = json_string(detail ? detail : title);
    json_object_set_new(p, "detail", d ? d : json_string("(detail was not valid UTF-8)"));
    return p;
}

unsigned api_problem_status_of_kind(rt_error_kind kind)
{
    /* A lost object is 410 wherever it shows up, also nested as a cause; every other
     * stored error is a failed dependency. */
    return kind == RT_ERR_OBJECT_LOST ? 410 : 424;
}

json_t *api_problem_from_error(const rt_error *err, const char *ref)
{
    /* Build the chain outermost first, then link each to its cause. Iterative so that a
     * chain of any length cannot overflow the stack here; and only the first
     * API_PROBLEM_CAUSES_MAX levels are nested, since JSON writers and readers (jansson's
     * among them) recurse per level: a failure at the bottom of a chain of 40,000 tasks
     * would otherwise make a body nobody can read, or crash the encoder. */
    json_t *outer = NULL, *prev = NULL;
    size_t depth = 0;
    for (const rt_error *e = err; e; e = rt_error_cause(e), depth++) {
        if (depth == API_PROBLEM_CAUSES_MAX) {
            size_t left = 0;
            for (const rt_error *r = e; r; r = rt_error_cause(r))
                left++;
            json_object_set_new(prev, "causes_omitted", json_integer((json_int_t)left));
            break;
        }
        rt_error_kind kind = rt_error_kind_of(e);
        json_t *p = api_problem_new(api_problem_status_of_kind(kind), rt_error_kind_name(kind),
                                    rt_error_message(e));
        json_object_update_missing(p, rt_error_fields(e));
        if (e == err && ref)
            json_object_set_new(p, "ref", json_string(ref));
        if (prev)
            json_object_set_new(prev, "cause", p); /* prev keeps p alive */
        else
            outer = p;
        prev = p;
    }
    return outer;
}

/* The request path as a URI reference: bytes outside unreserved characters and '/' are
 * percent-encoded again (libmicrohttpd hands us the decoded path). */
json_t *api_problem_instance(const char *path)
{
    static const char HEX[] = "0123456789ABCDEF";
    size_t n = strlen(path);
    if (n > 2048)
        n = 2048;
    char *out = malloc(3 * n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)path[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = HEX[c >> 4];
            out[o++] = HEX[c & 15];
        }
    }
    json_t *s = json_stringn(out, o);
    free(out);
    return s;
}

enum MHD_Result api_problem_send(api_request *req, json_t *problem)
{
    json_t *st = json_object_get(problem, "status");
    unsigned status = json_is_integer(st) ? (unsigned)json_integer_value(st) : 500;
    if (req->url && !json_object_get(problem, "instance")) {
        json_t *instance = api_problem_instance(req->url);
        if (instance)
            json_object_set_new(problem, "instance", instance);
    }
    return api_reply(req, status, api_response_json(req, problem), "application/problem+json");
}

enum MHD_Result api_problem(api_request *req, unsigned status, const char *title,
                            const char *detail, json_t *extra)
{
    json_t *p = api_problem_new(status, title, detail);
    if (status == 507) /* every "store full" answer passes here: one place for its line */
        rt_event_emit("warn", "store full",
                      json_pack("{s:s?,s:s,s:s}", "detail", json_string_value(json_object_get(p, "detail")),
                                "path", req->url ? req->url : "", "request_id",
                                req->request_id));
    if (extra) {
        json_object_update_missing(p, extra);
        json_decref(extra);
    }
    return api_problem_send(req, p);
}

enum MHD_Result api_problemf(api_request *req, unsigned status, const char *title,
                             const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return api_problem(req, status, title, detail, NULL);
}

enum MHD_Result api_problem_status(api_request *req, rt_status status, const char *what)
{
    switch (status) {
    case RT_ENOTFOUND:
        return api_problemf(req, 404, "NotFound", "%s does not exist", what);
    case RT_ELOST:
        return api_problemf(req, 410, "ObjectLost", "%s was freed or evicted", what);
    case RT_EFULL:
        return api_problemf(req, 507, "ObjectStoreFull",
                            "%s does not fit in the object store even after eviction", what);
    case RT_EINVAL:
        return api_problemf(req, 400, "BadRequest", "%s is not valid", what);
    case RT_EEXIST:
        return api_problemf(req, 409, "Conflict", "%s already exists", what);
    case RT_ELIMIT:
        return api_problemf(req, 429, "TooManyRequests", "too much pending work for %s", what);
    case RT_ESHUTDOWN:
        return api_problem(req, 503, "ShuttingDown", "the server is shutting down", NULL);
    case RT_ENOMEM:
        return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
    default:
        return api_problemf(req, 500, "InternalError", "%s: %s", what, rt_status_name(status));
    }
}
