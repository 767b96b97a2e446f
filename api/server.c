/* The MHD daemon and its access handler: request set-up, body collection within the body
 * budget (api/budget.h), early refusals (framing and request targets: api/framing.h; 404,
 * 405, 413, 415, 503, 507), dispatch to the route's handler, and clean-up, which hands
 * connections answered before their body to the lingering close (api/linger.h).
 *
 * MHD calls the access handler several times per request: once when the headers are in
 * (we set up and may refuse at once, before any body is read), once per chunk of body
 * (we collect it), and once when the body is complete (we dispatch). A parked request is
 * called again after it is resumed, and dispatched again. */
#include "api/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/framing.h"
#include "api/handlers.h"
#include "api/budget.h"
#include "api/forward.h"
#include "api/redis_call.h"
#include "api/idempotency.h"
#include "api/linger.h"
#include "api/live.h"
#include "api/metrics.h"
#include "api/park.h"
#include "api/problem.h"
#include "api/router.h"
#include "runtime/clock.h"

/* Memory MHD gives each connection for headers and buffers. libmicrohttpd 0.9.75 clears
 * the whole pool after every keep-alive request, so this is paid per request: at 256 KiB
 * the memset was 40% of the CPU of a small GET (measured with perf, BENCHMARKS.md); 64 KiB
 * keeps big uploads as fast and small requests three times faster. */
#define CONNECTION_MEMORY (64 * 1024)
/* First allocation for a body without Content-Length. */
#define BODY_INITIAL_CHUNKED (64 * 1024)
/* JSON bodies are allocated as they arrive, from this much (or their Content-Length when
 * smaller): a Content-Length alone must not make the server allocate 256 MiB for a client
 * that then sends nothing. Object puts keep allocating their Content-Length at once,
 * within the budget: filling one preallocated buffer is what makes 1 GiB uploads fast. */
#define BODY_INITIAL_JSON (64 * 1024)

struct api_server {
    struct MHD_Daemon *daemon;
    api_context *ctx;
    unsigned port;
    api_linger *linger; /* owned: connections answered before their body */
    struct MHD_Daemon *admin; /* the probes' listener, or NULL (see admin_start) */
    unsigned admin_port;
};

/* ---- request set-up ---------------------------------------------------------------- */

static void request_set_id(api_request *req)
{
    rt_traceparent_child(api_header(req, "traceparent"), req->traceparent);
    const char *given = api_header(req, "X-Request-Id");
    if (given) {
        size_t n = strlen(given);
        int ok = n > 0 && n <= API_REQUEST_ID_MAX;
        for (size_t i = 0; ok && i < n; i++)
            ok = given[i] > 0x20 && given[i] < 0x7f;
        if (ok) {
            memcpy(req->request_id, given, n + 1);
            return;
        }
    }
    rt_ref_generate(req->request_id, 'r');
}

static int content_type_is_json_or_form(const char *ct)
{
    if (!ct || !*ct)
        return 1; /* absent: take it as JSON */
    if (rt_content_type_is_json(ct))
        return 1;
    /* `curl -d` sends this by default; treating it as JSON keeps shell use simple. */
    return strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
}

/* Checks the bearer token a route needs (unmatched /v1/ paths need the API token) against
 * the tokens in force now (api_live: SIGHUP may change them). On failure answers 401 (or
 * 403) and returns -1. */
static int check_auth(api_request *req)
{
    int need = req->route ? req->route->auth
                          : (strncmp(req->url, "/v1/", 4) == 0 ? API_AUTH_TOKEN : API_AUTH_OPEN);
    const char *auth = api_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
    /* Cluster mode: peer routes need the cluster token (fixed at start; it defaults to the
     * API token), and other nodes' requests carry it wherever the API token is needed. */
    const char *cluster_token = req->ctx->config.cluster_token;
    if (cluster_token && *cluster_token) {
        if (need != API_AUTH_OPEN && need != API_AUTH_ADMIN &&
            api_live_bearer_is(auth, cluster_token))
            return 0;
        if (need == API_AUTH_CLUSTER) {
            req->www_authenticate = 1;
            api_problem(req, 401, "Unauthorized",
                        "this route is for other rayd nodes: it needs the cluster token", NULL);
            return -1;
        }
    }
    switch (api_live_check(req->ctx->live, need, auth)) {
    case API_LIVE_AUTH_OK:
        return 0;
    case API_LIVE_AUTH_FORBIDDEN:
        /* Known caller, not allowed here: an admin route without the admin token. */
        api_problem(req, 403, "Forbidden", "this route needs the admin token", NULL);
        return -1;
    case API_LIVE_AUTH_NEED_ADMIN:
        req->www_authenticate = 1;
        api_problem(req, 401, "Unauthorized",
                    "this route needs the admin token: Authorization: Bearer <token>", NULL);
        return -1;
    case API_LIVE_AUTH_NEED_TOKEN:
        break;
    }
    req->www_authenticate = 1;
    api_problem(req, 401, "Unauthorized", "this route needs a token: Authorization: Bearer <token>",
                NULL);
    return -1;
}

/* Parses Content-Length strictly. Returns 1 and sets *out, 0 when absent, -1 when bad. */
static int content_length(api_request *req, size_t *out)
{
    const char *cl = api_header(req, "Content-Length");
    if (!cl)
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(cl, &end, 10);
    if (end == cl || *end || errno || cl[0] == '-')
        return -1;
    *out = (size_t)v;
    return 1;
}

/* True when the request says a body follows (which an early answer leaves unread). */
static bool request_declares_body(api_request *req)
{
    const char *cl = api_header(req, "Content-Length");
    return api_header(req, "Transfer-Encoding") || (cl && strspn(cl, "0") != strlen(cl));
}

/* ---- the body budget --------------------------------------------------------------- */

/* The answer for a body the budget cannot hold: 413 when it is larger than the whole
 * budget (it never fits), else 503 with Retry-After (other requests hold the budget now).
 * size is the body's size, or what was received when it is not known. */
static enum MHD_Result refuse_for_budget(api_request *req, size_t size, bool whole)
{
    const api_budget *b = &req->ctx->bodies;
    if (whole && size > b->limit)
        return api_problemf(req, 413, "PayloadTooLarge",
                            "the body is %zu bytes; this server holds at most %zu bytes of "
                            "request bodies at once (RAYD_BODY_BUDGET)",
                            size, b->limit);
    req->retry_after = 1;
    return api_problemf(req, 503, "ServiceUnavailable",
                        "requests in flight hold the server's body budget (%zu bytes, "
                        "RAYD_BODY_BUDGET); retry shortly",
                        b->limit);
}

/* Admits a body whose first bytes is about to be allocated: the whole Content-Length
 * when there is one, else the first buffer. 0, or -1 after answering. */
static int body_admit(api_request *req, size_t bytes)
{
    if (api_budget_reserve(req, bytes) == 0)
        return 0;
    api_budget_count_refusal(req);
    refuse_for_budget(req, bytes, req->body_expected > 0);
    return -1;
}

/* Grows a body's share to cap bytes as it arrives. False when refused: the rest of the
 * body is then discarded and the request answered with req->body_refused. */
static bool body_budget_grow(api_request *req, size_t cap)
{
    if (api_budget_reserve(req, cap) == 0)
        return true;
    api_budget_count_refusal(req);
    const api_budget *b = &req->ctx->bodies;
    req->body_refused = cap > b->limit ? 413 : 503;
    return false;
}

/* Answers a request whose body was refused while it arrived (body_refused). */
static enum MHD_Result answer_refused_body(api_request *req)
{
    size_t got = req->raw_len + req->body_len;
    if (req->body_refused == 507)
        return api_problemf(req, 507, "ObjectStoreFull",
                            "the object is larger than the object store's memory limit of %zu "
                            "bytes",
                            req->ctx->config.memory_limit);
    if (req->body_refused == 413)
        return api_problemf(req, 413, "PayloadTooLarge",
                            "the body is over %zu bytes; this server holds at most %zu bytes of "
                            "request bodies at once (RAYD_BODY_BUDGET)",
                            got, req->ctx->bodies.limit);
    return refuse_for_budget(req, got, false);
}

/* Called once the headers are in. Returns MHD_YES to go on (maybe with a reply queued). */
static enum MHD_Result request_begin(api_request *req)
{
    api_context *ctx = req->ctx;
    char *allow = req->allow;
    api_match_result m = api_route_match(req->method, req->path_copy, &req->route,
                                         req->params, req->allow, sizeof(req->allow));
    if (m == API_MATCH_NO_PATH && strncmp(req->url, "/v1/", 4) == 0 && check_auth(req) != 0)
        return MHD_YES;
    if (m == API_MATCH_NO_PATH)
        return api_problemf(req, 404, "NotFound",
                            "no route for %s %s; the API is described at /openapi.yaml",
                            req->method, req->url);
    if (m == API_MATCH_NO_METHOD && strncmp(req->url, "/v1/", 4) == 0 && check_auth(req) != 0)
        return MHD_YES;
    if (m == API_MATCH_NO_METHOD) {
        json_t *extra = json_pack("{s:s}", "allow", allow);
        char detail[256];
        snprintf(detail, sizeof(detail), "%s is not allowed on %s; allowed: %s", req->method,
                 req->url, allow);
        return api_problem(req, 405, "MethodNotAllowed", detail, extra);
    }

    if (check_auth(req) != 0)
        return MHD_YES;
    /* Cluster mode: until the node has its tag it can neither make ids nor find owners. */
    if (ctx->cluster && !rt_cluster_joined(ctx->cluster) && strncmp(req->url, "/v1/", 4) == 0 &&
        strcmp(req->route->pattern, "/v1/status") != 0) {
        req->retry_after = 1;
        return api_problem(req, 503, "ClusterUnavailable",
                           "this node has not joined the cluster yet (is Redis reachable?); "
                           "retry, or use another node",
                           NULL);
    }
    if (__atomic_load_n(&ctx->lifecycle, __ATOMIC_ACQUIRE) == API_DRAINING &&
        strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        req->retry_after = 1;
        return api_problem(req, 503, "ShuttingDown",
                           "the server is draining and takes no new work; retry on another "
                           "replica",
                           NULL);
    }

    if (api_session_begin(req) != 0)
        return MHD_YES; /* a Rayd-Session that names no open session */

    size_t length = 0;
    int has_length = content_length(req, &length);
    if (has_length < 0)
        return api_problem(req, 400, "BadRequest", "Content-Length is not a number", NULL);
    if (has_length && length > ctx->config.max_body)
        return api_problemf(req, 413, "PayloadTooLarge",
                            "the body is %zu bytes; this server accepts at most %zu "
                            "(RAYD_MAX_BODY)",
                            length, ctx->config.max_body);

    if (req->route->body == API_BODY_JSON) {
        const char *ct = api_header(req, "Content-Type");
        if (!content_type_is_json_or_form(ct))
            return api_problemf(req, 415, "UnsupportedMediaType",
                                "this endpoint takes application/json, not %s", ct);
        if (has_length && length > 0) {
            req->body_expected = length;
            if (body_admit(req, length) != 0)
                return MHD_YES;
            size_t initial = length < BODY_INITIAL_JSON ? length : BODY_INITIAL_JSON;
            req->body = malloc(initial + 1);
            if (!req->body)
                return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
            req->body_cap = initial;
        }
    } else if (req->route->body == API_BODY_RAW) {
        const char *ct = api_header(req, "Content-Type");
        if (ct && strlen(ct) > RT_CONTENT_TYPE_MAX)
            return api_problemf(req, 400, "BadRequest",
                                "Content-Type is longer than %d bytes", RT_CONTENT_TYPE_MAX);
        if (ct && *ct && !rt_content_type_valid(ct))
            return api_problem(req, 400, "BadRequest",
                               "Content-Type is not valid header text: control characters, "
                               "or bytes over 0x7f that are not UTF-8",
                               NULL);
        if (has_length && !rt_store_could_fit(ctx->store, length))
            return api_problemf(req, 507, "ObjectStoreFull",
                                "an object of %zu bytes is larger than the object store's "
                                "memory limit",
                                length);
        size_t initial = has_length ? length : BODY_INITIAL_CHUNKED;
        req->body_expected = has_length ? length : 0;
        if (body_admit(req, initial) != 0)
            return MHD_YES;
        req->raw_buf = rt_buf_new(initial, ct && *ct ? ct : NULL);
        if (!req->raw_buf)
            return api_problem(req, 507, "ObjectStoreFull",
                               "could not allocate memory for the object", NULL);
    }
    return MHD_YES;
}

/* ---- body collection --------------------------------------------------------------- */

/* Collects body bytes: JSON routes into req->body, object puts into req->raw_buf, each
 * buffer grown (doubling) as bytes arrive and only within the body budget; routes without
 * a body discard them. After a refusal the rest is discarded. */
static void body_append(api_request *req, const char *data, size_t n)
{
    size_t max = req->ctx->config.max_body;
    if (req->body_too_large || req->body_refused || req->route->body == API_BODY_NONE)
        return;
    if (req->route->body == API_BODY_RAW) {
        if (req->raw_len + n > max) {
            req->body_too_large = 1;
            return;
        }
        if (!rt_store_could_fit(req->ctx->store, req->raw_len + n)) {
            req->body_refused = 507; /* can never be stored: stop holding it now */
            return;
        }
        if (req->raw_len + n > req->raw_buf->size) {
            size_t cap = req->raw_buf->size * 2;
            if (cap < req->raw_len + n)
                cap = req->raw_len + n;
            if (cap > max)
                cap = max;
            if (!body_budget_grow(req, cap))
                return;
            rt_buf *grown = rt_buf_resize(req->raw_buf, cap);
            if (!grown) {
                req->body_too_large = 1;
                return;
            }
            req->raw_buf = grown;
        }
        memcpy(req->raw_buf->data + req->raw_len, data, n);
        req->raw_len += n;
        return;
    }
    if (req->body_len + n > max) {
        req->body_too_large = 1;
        return;
    }
    if (req->body_len + n > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap * 2 : 4096;
        if (cap < req->body_len + n)
            cap = req->body_len + n;
        if (cap > max)
            cap = max;
        if (req->body_expected && cap > req->body_expected)
            cap = req->body_expected; /* admitted already: never more than announced */
        if (!body_budget_grow(req, cap))
            return;
        char *grown = realloc(req->body, cap + 1);
        if (!grown) {
            req->body_too_large = 1;
            return;
        }
        req->body = grown;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
}

/* ---- MHD callbacks ----------------------------------------------------------------- */

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    api_server *server = cls;
    api_request *req = *con_cls;

    if (!req || api_uri_refused(req)) {
        const void *uri_mark = req; /* set by api_uri_check: refuse the target */
        req = calloc(1, sizeof(*req));
        if (!req)
            return MHD_NO;
        *con_cls = req;
        req->conn = conn;
        req->ctx = server->ctx;
        req->method = method;
        req->url = url;
        req->started = rt_clock_monotonic();
        req->path_copy = strdup(url);
        if (!req->path_copy)
            return MHD_NO;
        request_set_id(req);
        enum MHD_Result r = MHD_YES;
        if (uri_mark)
            r = api_uri_refuse(req, uri_mark);
        else if (api_framing_check(req, version) == 0)
            r = request_begin(req);
        /* Answered before the body: libmicrohttpd will close without reading it. */
        req->linger = req->replied && request_declares_body(req);
        return r;
    }

    if (*upload_data_size) {
        if (!req->replied)
            body_append(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->idem_held)
        return api_idempotency_send_held(req); /* resumed: Redis has the answer */
    if (req->replied)
        return MHD_YES;

    if (req->body_too_large)
        return api_problemf(req, 413, "PayloadTooLarge",
                            "the body is over this server's limit of %zu bytes (RAYD_MAX_BODY)",
                            req->ctx->config.max_body);
    if (req->body_refused)
        return answer_refused_body(req);
    if (req->park)
        api_park_finish(req); /* resumed: end the round before the handler looks again */
    if (req->forward && api_forward_relaying(req))
        return api_forward_answer(req); /* resumed: the other node's answer is in */
    if (req->raw_buf && req->raw_len != req->raw_buf->size) {
        rt_buf *fitted = rt_buf_resize(req->raw_buf, req->raw_len);
        if (!fitted)
            return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
        req->raw_buf = fitted;
    }
    if (req->body)
        req->body[req->body_len] = '\0';
    if (req->rounds == 0 && req->route->idempotent &&
        api_idempotency_begin(req->ctx->idempotency, req) != 0)
        return MHD_YES; /* answered: replayed, or the key was refused */
    req->rounds++;
    return req->route->handler(req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    api_request *req = *con_cls;
    api_server *server = cls;
    if (!req || api_uri_refused(req)) {
        *con_cls = NULL; /* no request was made (libmicrohttpd refused it itself) */
        return;
    }
    if (req->linger && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        api_linger_connection(server->linger, conn);
    api_park_complete(req);
    api_forward_release(req);
    api_redis_release(req);
    double seconds = rt_clock_monotonic() - req->started;
    const api_route *table;
    size_t nroutes = api_route_table(&table);
    int route = req->route ? (int)(req->route - table) : -1;
    if (req->replied)
        api_metrics_record(server->ctx->metrics, route, req->method, req->status, seconds);
    if (server->ctx->log_request) {
        api_request_summary s = {
            .request_id = req->request_id,
            .traceparent = req->traceparent,
            .method = req->method,
            .route = route >= 0 && (size_t)route < nroutes ? req->route->pattern : "unmatched",
            .path = req->url,
            .status = req->replied ? req->status : 0,
            .seconds = seconds,
            .bytes = req->bytes_out,
        };
        server->ctx->log_request(&s, server->ctx->log_arg);
    }
    api_idempotency_abandon(server->ctx->idempotency, req); /* no answer was recorded */
    rt_buf_decref(req->idem_buf);
    if (req->idem_held)
        MHD_destroy_response(req->idem_held);
    if (req->handler_state_free)
        req->handler_state_free(req->handler_state);
    rt_buf_decref(req->raw_buf);
    json_decref(req->json);
    free(req->body);
    api_budget_release(req);
    free(req->path_copy);
    free(req);
    *con_cls = NULL;
}

/* ---- the admin listener ------------------------------------------------------------- */

/* A second, small daemon on --admin-port for probes and scrapes: /healthz, /readyz and
 * /metrics only. It has its own connections and thread, and nothing on it ever parks, so
 * parked requests filling the main connection limit cannot keep a liveness probe waiting
 * in the listen backlog (and get a healthy container restarted, losing its store). */
#define ADMIN_CONNECTIONS 32
#define ADMIN_TIMEOUT 10 /* seconds a probe's connection may stay idle */
#define ADMIN_CONNECTION_MEMORY (16 * 1024)

static int admin_path(const char *url)
{
    return strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0 ||
           strcmp(url, "/metrics") == 0;
}

/* Called once the headers are in, on the admin port. Refuses what is not a probe route. */
static enum MHD_Result admin_begin(api_request *req)
{
    if (!admin_path(req->url))
        return api_problemf(req, 404, "NotFound",
                            "the admin port serves /healthz, /readyz and /metrics only; %s "
                            "is on the API port",
                            req->url);
    api_match_result m = api_route_match(req->method, req->path_copy, &req->route,
                                         req->params, req->allow, sizeof(req->allow));
    if (m != API_MATCH_OK) {
        req->route = NULL;
        return api_problem(req, 405, "MethodNotAllowed",
                           "the admin port answers GET only",
                           json_pack("{s:s}", "allow", req->allow));
    }
    check_auth(req); /* answers 401 when refused (these routes are open today) */
    return MHD_YES;
}

static enum MHD_Result admin_on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                       const char *method, const char *version,
                                       const char *upload_data, size_t *upload_data_size,
                                       void **con_cls)
{
    api_server *server = cls;
    api_request *req = *con_cls;
    (void)version;
    (void)upload_data;
    if (!req) {
        req = calloc(1, sizeof(*req));
        if (!req)
            return MHD_NO;
        *con_cls = req;
        req->conn = conn;
        req->ctx = server->ctx;
        req->method = method;
        req->url = url;
        req->started = rt_clock_monotonic();
        req->path_copy = strdup(url);
        if (!req->path_copy)
            return MHD_NO;
        request_set_id(req);
        return admin_begin(req);
    }
    if (*upload_data_size) {
        *upload_data_size = 0; /* probe routes take no body: read and dropped */
        return MHD_YES;
    }
    if (req->replied)
        return MHD_YES;
    req->rounds++;
    return req->route->handler(req);
}

/* Fills addr for bind:port and adds MHD_USE_IPv6 to *flags for an IPv6 address. 0, or -1
 * with a reason in err. */
static int listen_address(const char *bind, unsigned port, struct sockaddr_storage *addr,
                          unsigned *flags, char *err, size_t err_size)
{
    memset(addr, 0, sizeof(*addr));
    if (strchr(bind, ':')) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, bind, &a6->sin6_addr) != 1) {
            snprintf(err, err_size, "bind address %s is not an IPv6 address", bind);
            return -1;
        }
        *flags |= MHD_USE_IPv6;
        return 0;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, bind, &a4->sin_addr) != 1) {
        snprintf(err, err_size, "bind address %s is not an IPv4 address", bind);
        return -1;
    }
    return 0;
}

/* Starts the admin listener on the API's bind address. 0, or -1 with a reason in err. */
static int admin_start(api_server *server, char *err, size_t err_size)
{
    const api_config *cfg = &server->ctx->config;
    struct sockaddr_storage addr;
    /* One polling thread: a few probe connections at a time, never the 128 busy ones
     * that stall a single epoll thread (LIBMICROHTTPD.md). */
    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    if (listen_address(cfg->bind, (unsigned)cfg->admin_port, &addr, &flags, err, err_size) != 0)
        return -1;
    server->admin = MHD_start_daemon(
        flags, (uint16_t)cfg->admin_port, NULL, NULL, admin_on_access, server,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)ADMIN_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)ADMIN_TIMEOUT,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)ADMIN_CONNECTION_MEMORY,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, server,
        MHD_OPTION_END);
    if (!server->admin) {
        snprintf(err, err_size, "cannot listen on %s admin port %d (in use, or not allowed)",
                 cfg->bind, cfg->admin_port);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(server->admin,
                                                           MHD_DAEMON_INFO_BIND_PORT);
    server->admin_port = info ? info->port : (unsigned)cfg->admin_port;
    return 0;
}

unsigned api_server_admin_port(const api_server *server)
{
    return server->admin ? server->admin_port : 0;
}

/* ---- start and stop ---------------------------------------------------------------- */

api_server *api_server_start(api_context *ctx, char *err, size_t err_size)
{
    api_server *server = calloc(1, sizeof(*server));
    if (!server) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    server->ctx = ctx;
    ctx->bodies = (api_budget){.limit = ctx->config.body_budget};
    ctx->parking = api_parking_new();
    ctx->metrics = api_metrics_new();
    ctx->idempotency = api_idempotency_new(ctx->config.idempotency_ttl, 100000,
                                           ctx->config.idempotency_max_bytes);
    server->linger = api_linger_new(ctx->config.linger_max);
    if (!ctx->parking || !ctx->metrics || !ctx->idempotency || !server->linger) {
        snprintf(err, err_size, "cannot start the deadline thread (out of memory?)");
        api_parking_free(ctx->parking);
        api_metrics_free(ctx->metrics);
        api_idempotency_free(ctx->idempotency);
        api_linger_free(server->linger);
        ctx->parking = NULL;
        ctx->metrics = NULL;
        ctx->idempotency = NULL;
        free(server);
        return NULL;
    }

    struct sockaddr_storage addr;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (listen_address(ctx->config.bind, ctx->config.port, &addr, &flags, err, err_size) != 0)
        goto fail;

    unsigned threads = ctx->config.http_threads < 2 ? 2 : ctx->config.http_threads;
    /* libmicrohttpd counts idle time in whole seconds, and 0 would mean never: round up. */
    unsigned idle_timeout = (unsigned)ceil(ctx->config.connection_timeout);
    if (ctx->config.connection_timeout > 0 && idle_timeout == 0)
        idle_timeout = 1;
    server->daemon = MHD_start_daemon(
        flags, (uint16_t)ctx->config.port, NULL, NULL, on_access, server,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT, ctx->config.connection_limit,
        MHD_OPTION_CONNECTION_TIMEOUT, idle_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, server,
        MHD_OPTION_URI_LOG_CALLBACK, api_uri_check, NULL,
        MHD_OPTION_END);
    if (!server->daemon) {
        snprintf(err, err_size, "cannot listen on %s port %u (in use, or not allowed)",
                 ctx->config.bind, ctx->config.port);
        goto fail;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_BIND_PORT);
    server->port = info ? info->port : ctx->config.port;
    ctx->config.port = server->port; /* what /v1/status reports */
    if (ctx->config.admin_port >= 0 && admin_start(server, err, err_size) != 0) {
        MHD_stop_daemon(server->daemon);
        goto fail;
    }
    return server;

fail:
    api_linger_free(server->linger);
    api_parking_free(ctx->parking);
    api_metrics_free(ctx->metrics);
    api_idempotency_free(ctx->idempotency);
    ctx->parking = NULL;
    ctx->metrics = NULL;
    ctx->idempotency = NULL;
    free(server);
    return NULL;
}

unsigned api_server_port(const api_server *server)
{
    return server->port;
}

void api_server_stop(api_server *server)
{
    if (!server)
        return;
    /* No MHD_quiesce_daemon: with epoll worker threads, libmicrohttpd 0.9.75 races its
     * own event loop removing the listen socket from the epoll sets and aborts the process
     * ("Failed to remove listen FD from epoll set", seen in CI; an open upstream defect).
     * Until MHD_stop_daemon closes it, the socket keeps accepting, and new work is
     * answered 503 ShuttingDown as during the whole drain.
     *
     * Parked requests must be resumed before MHD_stop_daemon (it aborts on a suspended
     * connection) and answered before it (it closes them unanswered): close the parking
     * and wait until every request that parked has completed. A client that does not read
     * its answer is dropped by MHD's idle timeout, which bounds the wait. */
    /* Requests waiting on Redis are resumed as their commands fail (none waits longer
     * than the command timeout). */
    rt_cluster_commands_close(server->ctx->cluster);
    if (server->ctx->peer) {
        /* Requests waiting for another node are resumed by cancelling their calls; the
         * peer's I/O thread completes them, and each is counted down as it does. */
        rt_peer_close(server->ctx->peer);
        for (int i = 0; i < 200 && rt_peer_in_flight(server->ctx->peer) > 0; i++) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    const api_config *cfg = &server->ctx->config;
    double bound = (cfg->connection_timeout > 0 ? cfg->connection_timeout : 30) + 1;
    api_parking_close(server->ctx->parking, bound);
    MHD_stop_daemon(server->daemon);
    if (server->admin)
        MHD_stop_daemon(server->admin); /* probes are answered until the API port closes */
    api_linger_free(server->linger); /* after MHD: no connection can be handed over now */
    api_parking_free(server->ctx->parking);
    api_metrics_free(server->ctx->metrics);
    api_idempotency_free(server->ctx->idempotency);
    server->ctx->parking = NULL;
    server->ctx->metrics = NULL;
    server->ctx->idempotency = NULL;
    free(server);
}
