/* RFC 9457 problem+json bodies and the mapping from runtime errors to HTTP statuses. */
#include "api/problem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every kind of problem rayd answers with, sorted by title. A new title in the code needs
 * its row here (tests/check_docs.sh fails otherwise), so that its "type" resolves. */
static const api_problem_kind KINDS[] = {
    {"ActorDied", "424 (stored error), 410 (calling a dead actor)",
     "The actor was killed, or its process failed more often than max_restarts allows. A "
     "call to it, or a result it was to produce, cannot complete.",
     "Create a new actor. Calls already accepted by the dead actor end with this error."},
    {"BadRequest", "400",
     "The request is malformed: a body that is not the JSON the route expects, an unknown "
     "member, a value out of range, a bad header, or bad request framing.",
     "Read the detail, which names the part at fault, and fix the request; sending it again "
     "unchanged fails the same way."},
    {"ClusterUnavailable", "503",
     "Cluster mode: this node has not joined the cluster yet (Redis unreachable), or the "
     "node that owns what was asked did not answer in time.",
     "Retry after Retry-After seconds; a node that stays unavailable is taken for dead "
     "within seconds and its refs then answer 410 ObjectLost."},
    {"Conflict", "409",
     "The request conflicts with the current state: a name that is taken, a built-in or "
     "module function or class that cannot be replaced or removed, or an Idempotency-Key "
     "whose first request is still being answered.",
     "Choose another name, or wait for the first request with that key and retry."},
    {"Forbidden", "403",
     "The caller is known but not allowed to do this: an admin route called with the API "
     "token, or a remote URL outside the operator's allow-list (RAYD_REMOTE_ALLOW).",
     "Use the admin token, or ask the operator to add the URL's scheme://host:port to the "
     "allow-list (it can be changed without a restart: SIGHUP)."},
    {"InternalError", "500",
     "rayd reached a state it does not expect. This is a bug.",
     "Report it with the request id (X-Request-Id) and the server's log line for it."},
    {"MethodNotAllowed", "405",
     "The path exists but does not take this method. The Allow header lists the methods it "
     "takes.",
     "Use one of the methods in Allow."},
    {"ModuleNotLoaded", "409",
     "Cluster mode: the function or actor class named is provided by a C module that this "
     "node did not load, while other live nodes did (C modules are loaded per node with "
     "--module). The problem's module and nodes members say which module and which nodes "
     "have it.",
     "Load the module on every node (the same --module on each), or send the request to a "
     "node that has it (its url is in nodes). /v1/status lists each node's modules."},
    {"NotFound", "404",
     "Nothing is known under this path or id: an unknown route, or an object, task, actor, "
     "function or class that does not exist (or was forgotten long ago).",
     "Check the id. Objects that were freed or evicted recently answer 410 ObjectLost "
     "instead."},
    {"NotImplemented", "501",
     "The request uses a transfer coding rayd does not implement (chunked is the only "
     "one), such as Transfer-Encoding: gzip, chunked.",
     "Send the body with Content-Length, or chunked alone."},
    {"ObjectLost", "410, or 424 when nested as a cause",
     "The object existed but is gone: freed, evicted by the store's memory limit, or expired "
     "after its TTL. Tasks that took it as an argument fail with this as their cause.",
     "Put the object again (or run the task that made it again). Raise RAYD_MEMORY_LIMIT if "
     "objects are evicted while still needed."},
    {"ObjectStoreFull", "507",
     "The object does not fit in the object store even after evicting every object that "
     "can be evicted (objects that are pinned or being read are not).",
     "Free objects, put a smaller one, or run rayd with a larger RAYD_MEMORY_LIMIT."},
    {"PayloadTooLarge", "413",
     "The request body is larger than this server accepts (RAYD_MAX_BODY).",
     "Send a smaller body, or split the data into several objects."},
    {"RangeNotSatisfiable", "416",
     "The Range header asks for bytes outside the object. Content-Range gives its length.",
     "Ask for a range within the object's length."},
    {"ServiceUnavailable", "503",
     "The server could not do this now, for a reason that passes: it ran out of memory for "
     "this request, or a limit on work in flight was reached. Retry-After may say when to "
     "try again.",
     "Retry later, with backoff."},
    {"SessionNotFound", "404",
     "The session named in the path or in the Rayd-Session header is not open: it was "
     "closed (DELETE /v1/sessions/{session_id}), its lease ran out, it was opened on another "
     "node (sessions are per node), or it never existed. What it owned was freed.",
     "Open a new session (POST /v1/sessions) and make the work again; renew a lease by "
     "sending requests with Rayd-Session more often than its ttl."},
    {"ShuttingDown", "503",
     "The server is draining before it stops (or has not finished starting) and takes no "
     "new work. /readyz answers the same.",
     "Send the request to another instance, or retry once this one is back."},
    {"TaskCancelled", "424",
     "The task was cancelled (POST /v1/tasks/{task_id}/cancel) before it produced its "
     "result, or because the server was stopping.",
     "Submit the task again if its result is still needed."},
    {"TaskError", "424",
     "The function (or actor method) ran and failed; the message is its own, and cause "
     "holds the error it failed from when an argument was itself an error.",
     "Fix the function or its arguments. Failed attempts are retried only with "
     "retry_exceptions."},
    {"TooManyRequests", "429",
     "A limit on queued work was reached: pending tasks (RAYD_MAX_PENDING_TASKS), requests "
     "waiting for objects (RAYD_MAX_PARKED), open sessions (RAYD_MAX_SESSIONS), or an "
     "actor's mailbox.",
     "Retry later, with backoff, or wait for earlier work to end first."},
    {"URITooLong", "414",
     "The request target is longer than 8 KiB or has more than 256 query arguments.",
     "Send long inputs in the request body instead of the URL."},
    {"Unauthorized", "401",
     "The route needs a bearer token and the request has none, or a wrong one. "
     "WWW-Authenticate says which scheme.",
     "Send Authorization: Bearer <token>."},
    {"UnprocessableContent", "422",
     "The Idempotency-Key was used before with a different request body.",
     "Use a new key for a new request; the same key only repeats the same request."},
    {"UnsupportedMediaType", "415",
     "The body's Content-Type is not one this route reads (JSON routes take "
     "application/json).",
     "Send the body with the Content-Type the route documents."},
    {"WorkerUnavailable", "424",
     "A remote function's or actor's endpoint could not be reached, or answered with an "
     "error, after every retry allowed.",
     "Check that the worker is running at the registered URL, then submit again."},
};

#define KIND_COUNT (sizeof(KINDS) / sizeof(KINDS[0]))

const api_problem_kind *api_problem_kinds(size_t *count)
{
    *count = KIND_COUNT;
    return KINDS;
}

const api_problem_kind *api_problem_kind_find(const char *title)
{
    size_t lo = 0, hi = KIND_COUNT;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(title, KINDS[mid].title);
        if (c == 0)
            return &KINDS[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* Writes text with the characters HTML gives a meaning to escaped. */
static void put_html(FILE *f, const char *text)
{
    for (const char *c = text; *c; c++) {
        switch (*c) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*c, f);
        }
    }
}

/* The start of a page, up to and including <body>. */
static void put_head(FILE *f, const char *title)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>", f);
    put_html(f, title);
    fputs("</title></head>\n<body>\n", f);
}

/* Closes a memory stream opened on *page and *size (which fclose updates); the text it
 * wrote (new), or NULL when out of memory. */
static char *close_page(FILE *f, char **page, size_t *size, size_t *len)
{
    if (fclose(f) != 0) {
        free(*page);
        return NULL;
    }
    *len = *size;
    return *page;
}

char *api_problem_kind_page(const api_problem_kind *kind, size_t *len)
{
    char *page = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&page, &size);
    if (!f)
        return NULL;
    put_head(f, kind->title);
    fputs("<h1>", f);
    put_html(f, kind->title);
    fputs("</h1>\n<p>HTTP status: ", f);
    put_html(f, kind->status);
    fputs("</p>\n<p>", f);
    put_html(f, kind->meaning);
    fputs("</p>\n<p>What to do: ", f);
    put_html(f, kind->action);
    fputs("</p>\n<p>rayd answers errors as <code>application/problem+json</code> (RFC 9457) "
          "whose <code>type</code> is this page's path and whose <code>title</code> is ",
          f);
    put_html(f, kind->title);
    fputs("; <code>detail</code> says what happened to that request. "
          "<a href=\"/problems\">Every kind</a>.</p>\n</body>\n</html>\n",
          f);
    return close_page(f, &page, &size, len);
}

char *api_problem_index_page(size_t *len)
{
    char *page = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&page, &size);
    if (!f)
        return NULL;
    put_head(f, "rayd problems");
    fputs("<h1>rayd problems</h1>\n<p>Every error rayd answers is an RFC 9457 problem whose "
          "<code>type</code> is one of these pages.</p>\n<ul>\n",
          f);
    for (size_t i = 0; i < KIND_COUNT; i++) {
        fputs("<li><a href=\"" API_PROBLEM_TYPE_PREFIX, f);
        put_html(f, KINDS[i].title);
        fputs("\">", f);
        put_html(f, KINDS[i].title);
        fputs("</a> (", f);
        put_html(f, KINDS[i].status);
        fputs(")</li>\n", f);
    }
    fputs("</ul>\n</body>\n</html>\n", f);
    return close_page(f, &page, &size, len);
}
#include "runtime/events.h"


json_t *api_problem_new(unsigned status, const char *title, const char *detail)
{
    char type[160];
    snprintf(type, sizeof(type), API_PROBLEM_TYPE_PREFIX "%s", title);
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
            /* A level rebuilt from another node's answer (runtime/cluster_fetch.h) may end
             * its chain with that node's own count of what it left out: add it in, so the
             * count is the whole chain's, as on one node. */
            size_t left = 0;
            for (const rt_error *r = e; r; r = rt_error_cause(r)) {
                json_t *more = json_object_get(rt_error_fields(r), "causes_omitted");
                left += 1 + (json_is_integer(more) && json_integer_value(more) > 0
                                 ? (size_t)json_integer_value(more)
                                 : 0);
            }
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
