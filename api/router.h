/* The router: one static table mapping method + path pattern to a handler. Patterns are
 * literal segments and {name} captures ("/v1/objects/{ref}/meta"). When several patterns
 * match a path, the one with more literal segments owns it, so "/v1/objects/batch" is
 * never taken for an object named "batch". Thread-safe: the table is read-only. */
#ifndef RAYD_API_ROUTER_H
#define RAYD_API_ROUTER_H

#include <stddef.h>

#include "api/request.h"

typedef enum MHD_Result (*api_handler)(api_request *req);

/* How a route takes its body. */
enum {
    API_BODY_NONE = 0, /* a body is read and ignored */
    API_BODY_JSON = 1, /* a JSON document, Content-Type checked, collected in memory */
    API_BODY_RAW = 2   /* raw bytes collected straight into an rt_buf (object put) */
};

/* Who may call a route when auth is on (RAYD_API_TOKEN). */
enum {
    API_AUTH_OPEN = 0, /* health, readiness, metrics, the spec: never need a token */
    API_AUTH_TOKEN,    /* every /v1/ route: the API token */
    API_AUTH_ADMIN,    /* registering code: the admin token (or the API token if unset) */
    API_AUTH_CLUSTER   /* peer routes (cluster mode): the cluster token (or the API token) */
};

struct api_route {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* also the route's label in logs and metrics */
    api_handler handler;
    int body;            /* API_BODY_* */
    int auth;            /* API_AUTH_*; routes under /v1/ are at least API_AUTH_TOKEN */
    int idempotent;      /* 1: honours Idempotency-Key (POSTs that create work) */
};

typedef enum api_match_result {
    API_MATCH_OK = 0,
    API_MATCH_NO_PATH,   /* 404 */
    API_MATCH_NO_METHOD  /* 405: allow holds the methods that would work */
} api_match_result;

/* Matches method and path. path is modified in place (split at '/'), and params receive
 * pointers into it for each {name}, in order. On API_MATCH_NO_METHOD, allow (allow_size
 * bytes) receives "GET, HEAD, DELETE". */
api_match_result api_route_match(const char *method, char *path, const api_route **route,
                                 const char *params[API_MAX_PARAMS], char *allow,
                                 size_t allow_size);

/* The whole table, for documentation checks: returns the number of routes. */
size_t api_route_table(const api_route **table);

#endif
