/* The MHD daemon and its access handler: request set-up, body collection, early refusals
 * (404, 405, 413, 415, request smuggling), dispatch to the route's handler, and clean-up.
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

#include "api/idempotency.h"
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

struct api_server {
    struct MHD_Daemon *daemon;
    api_context *ctx;
    unsigned port;
};

/* ---- request set-up ---------------------------------------------------------------- */

static void request_set_id(api_request *req)
{
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
    switch (api_live_check(req->ctx->live, need, api_header(req, MHD_HTTP_HEADER_AUTHORIZATION))) {
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

/* Called once the headers are in. Returns MHD_YES to go on (maybe with a reply queued). */
static enum MHD_Result request_begin(api_request *req)
{
    api_context *ctx = req->ctx;
    if (api_header(req, "Transfer-Encoding") && api_header(req, "Content-Length"))
        return api_problem(req, 400, "BadRequest",
                           "a request must not carry both Transfer-Encoding and "
                           "Content-Length",
                           NULL);

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
    if (__atomic_load_n(&ctx->lifecycle, __ATOMIC_ACQUIRE) == API_DRAINING &&
        strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        req->retry_after = 1;
        return api_problem(req, 503, "ShuttingDown",
                           "the server is draining and takes no new work; retry on another "
                           "replica",
                           NULL);
    }

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
            req->body = malloc(length + 1);
            if (!req->body)
                return api_problem(req, 503, "ServiceUnavailable", "out of memory", NULL);
            req->body_cap = length;
        }
    } else if (req->route->body == API_BODY_RAW) {
        const char *ct = api_header(req, "Content-Type");
        if (ct && strlen(ct) > RT_CONTENT_TYPE_MAX)
            return api_problemf(req, 400, "BadRequest",
                                "Content-Type is longer than %d bytes", RT_CONTENT_TYPE_MAX);
        if (has_length && !rt_store_could_fit(ctx->store, length))
            return api_problemf(req, 507, "ObjectStoreFull",
                                "an object of %zu bytes is larger than the object store's "
                                "memory limit",
                                length);
        size_t initial = has_length ? length : BODY_INITIAL_CHUNKED;
        req->raw_buf = rt_buf_new(initial, ct && *ct ? ct : NULL);
        if (!req->raw_buf)
            return api_problem(req, 507, "ObjectStoreFull",
                               "could not allocate memory for the object", NULL);
    }
    return MHD_YES;
}

/* ---- body collection --------------------------------------------------------------- */

static void body_append(api_request *req, const char *data, size_t n)
{
    size_t max = req->ctx->config.max_body;
    if (req->body_too_large)
        return;
    if (req->route->body == API_BODY_RAW) {
        if (req->raw_len + n > max) {
            req->body_too_large = 1;
            return;
        }
        if (req->raw_len + n > req->raw_buf->size) {
            size_t cap = req->raw_buf->size * 2;
            if (cap < req->raw_len + n)
                cap = req->raw_len + n;
            if (cap > max)
                cap = max;
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
    (void)version;

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
        return request_begin(req);
    }

    if (*upload_data_size) {
        if (!req->replied)
            body_append(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->replied)
        return MHD_YES;

    if (req->body_too_large)
        return api_problemf(req, 413, "PayloadTooLarge",
                            "the body is over this server's limit of %zu bytes (RAYD_MAX_BODY)",
                            req->ctx->config.max_body);
    if (req->park)
        api_park_finish(req); /* resumed: end the round before the handler looks again */
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
    (void)conn;
    (void)toe;
    if (!req)
        return;
    api_park_finish(req);
    double seconds = rt_clock_monotonic() - req->started;
    const api_route *table;
    size_t nroutes = api_route_table(&table);
    int route = req->route ? (int)(req->route - table) : -1;
    if (req->replied)
        api_metrics_record(server->ctx->metrics, route, req->method, req->status, seconds);
    if (server->ctx->log_request) {
        api_request_summary s = {
            .request_id = req->request_id,
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
    free(req->idem_body);
    if (req->handler_state_free)
        req->handler_state_free(req->handler_state);
    rt_buf_decref(req->raw_buf);
    json_decref(req->json);
    free(req->body);
    free(req->path_copy);
    free(req);
    *con_cls = NULL;
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
    ctx->parking = api_parking_new();
    ctx->metrics = api_metrics_new();
    ctx->idempotency = api_idempotency_new(ctx->config.idempotency_ttl, 100000);
    if (!ctx->parking || !ctx->metrics || !ctx->idempotency) {
        snprintf(err, err_size, "cannot start the deadline thread (out of memory?)");
        api_parking_free(ctx->parking);
        api_metrics_free(ctx->metrics);
        api_idempotency_free(ctx->idempotency);
        ctx->parking = NULL;
        ctx->metrics = NULL;
        ctx->idempotency = NULL;
        free(server);
        return NULL;
    }

    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof(addr));
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (strchr(ctx->config.bind, ':')) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)ctx->config.port);
        if (inet_pton(AF_INET6, ctx->config.bind, &a6->sin6_addr) != 1) {
            snprintf(err, err_size, "bind address %s is not an IPv6 address",
                     ctx->config.bind);
            goto fail;
        }
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)ctx->config.port);
        if (inet_pton(AF_INET, ctx->config.bind, &a4->sin_addr) != 1) {
            snprintf(err, err_size, "bind address %s is not an IPv4 address",
                     ctx->config.bind);
            goto fail;
        }
    }

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
    return server;

fail:
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
     * Parked requests must be resumed before MHD_stop_daemon: wake them all and give MHD a
     * moment to answer them. */
    api_parking_wake_all(server->ctx->parking);
    for (int i = 0; i < 200 && api_parking_count(server->ctx->parking) > 0; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    struct timespec settle = {0, 50 * 1000 * 1000};
    nanosleep(&settle, NULL);
    MHD_stop_daemon(server->daemon);
    api_parking_free(server->ctx->parking);
    api_metrics_free(server->ctx->metrics);
    api_idempotency_free(server->ctx->idempotency);
    server->ctx->parking = NULL;
    server->ctx->metrics = NULL;
    server->ctx->idempotency = NULL;
    free(server);
}
