/* The route table and the matcher. */
#include "api/router.h"

#include "api/registrations.h"

#include <pthread.h>
#include <string.h>

#include "api/handlers.h"

static const api_route ROUTES[] = {
    {"GET", "/healthz", api_system_healthz, API_BODY_NONE, API_AUTH_OPEN, 0},
    {"GET", "/readyz", api_system_readyz, API_BODY_NONE, API_AUTH_OPEN, 0},
    {"GET", "/metrics", api_system_metrics, API_BODY_NONE, API_AUTH_OPEN, 0},
    {"GET", "/openapi.yaml", api_system_openapi_yaml, API_BODY_NONE, API_AUTH_OPEN, 0},
    {"GET", "/openapi.json", api_system_openapi_json, API_BODY_NONE, API_AUTH_OPEN, 0},
    {"GET", "/problems", api_system_problems, API_BODY_NONE, API_AUTH_OPEN, 0},
    {"GET", "/problems/{kind}", api_system_problem, API_BODY_NONE, API_AUTH_OPEN, 0},
    {"GET", "/dashboard", api_dashboard_get, API_BODY_NONE, API_AUTH_OPEN, 0},
    {"GET", "/dashboard/{file}", api_dashboard_get, API_BODY_NONE, API_AUTH_OPEN, 0},
    {"GET", "/v1/status", api_system_status, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"POST", "/v1/objects", api_objects_put, API_BODY_RAW, API_AUTH_TOKEN, 1},
    {"GET", "/v1/objects", api_objects_list, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"POST", "/v1/objects/batch", api_objects_put_batch, API_BODY_JSON, API_AUTH_TOKEN, 0},
    {"POST", "/v1/objects/free", api_objects_free, API_BODY_JSON, API_AUTH_TOKEN, 0},
    {"POST", "/v1/objects/get", api_objects_get_batch, API_BODY_JSON, API_AUTH_TOKEN, 0},
    {"GET", "/v1/objects/{ref}", api_objects_get, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"HEAD", "/v1/objects/{ref}", api_objects_get, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"DELETE", "/v1/objects/{ref}", api_objects_delete, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"GET", "/v1/objects/{ref}/meta", api_objects_meta, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"POST", "/v1/wait", api_objects_wait, API_BODY_JSON, API_AUTH_TOKEN, 0},
    {"POST", "/v1/tasks", api_tasks_submit, API_BODY_JSON, API_AUTH_TOKEN, 1},
    {"GET", "/v1/tasks", api_tasks_list, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"POST", "/v1/tasks/batch", api_tasks_submit_batch, API_BODY_JSON, API_AUTH_TOKEN, 1},
    {"GET", "/v1/tasks/{task_id}", api_tasks_get, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"POST", "/v1/tasks/{task_id}/cancel", api_tasks_cancel, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"POST", "/v1/sessions", api_sessions_open, API_BODY_JSON, API_AUTH_TOKEN, 0},
    {"GET", "/v1/sessions/{session_id}", api_sessions_get, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"DELETE", "/v1/sessions/{session_id}", api_sessions_close, API_BODY_NONE, API_AUTH_TOKEN,
     0},
    {"POST", "/v1/actors", api_actors_create, API_BODY_JSON, API_AUTH_TOKEN, 0},
    {"GET", "/v1/actors", api_actors_list, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"GET", "/v1/actors/{actor_id}", api_actors_get, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"DELETE", "/v1/actors/{actor_id}", api_actors_kill, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"GET", "/v1/actors/by-name/{name}", api_actors_get_by_name, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"POST", "/v1/actors/{actor_id}/methods/{method}", api_actors_call, API_BODY_JSON, API_AUTH_TOKEN, 1},
    {"GET", "/v1/actor-classes", api_actor_classes_list, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"PUT", "/v1/actor-classes/{name}", api_actor_classes_put, API_BODY_JSON, API_AUTH_ADMIN, 0},
    {"DELETE", "/v1/actor-classes/{name}", api_actor_classes_delete, API_BODY_NONE,
     API_AUTH_ADMIN, 0},
    {"GET", "/v1/functions", api_functions_list, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"GET", "/v1/functions/{name}", api_functions_get, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"PUT", "/v1/functions/{name}", api_functions_put, API_BODY_JSON, API_AUTH_ADMIN, 0},
    {"DELETE", "/v1/functions/{name}", api_functions_delete, API_BODY_NONE, API_AUTH_ADMIN, 0},
    {"DELETE", "/v1/cluster/copies/{ref}", api_cluster_copy_delete, API_BODY_NONE,
     API_AUTH_CLUSTER, 0},
    {"POST", "/v1/cluster/registrations/sync", api_registrations_sync, API_BODY_NONE,
     API_AUTH_CLUSTER, 0},
    {"GET", "/v1/cluster/list/objects", api_objects_list_peer, API_BODY_NONE, API_AUTH_CLUSTER, 0},
    {"GET", "/v1/cluster/list/tasks", api_tasks_list_peer, API_BODY_NONE, API_AUTH_CLUSTER, 0},
    {"GET", "/v1/cluster/list/actors", api_actors_list_peer, API_BODY_NONE, API_AUTH_CLUSTER, 0},
};

#define ROUTE_COUNT (sizeof(ROUTES) / sizeof(ROUTES[0]))
#define MAX_SEGMENTS 8

/* Each pattern split into segments once, so that matching compares lengths and bytes
 * instead of scanning pattern strings for '/' on every request (the matcher was the
 * largest part of rayd's own instructions per small GET). */
typedef struct pattern_segment {
    const char *text; /* into the pattern; not NUL-terminated at the segment's end */
    size_t len;
    int is_param; /* {name} */
} pattern_segment;

typedef struct compiled_pattern {
    pattern_segment segs[MAX_SEGMENTS];
    int nsegs;
    int literals; /* the pattern's specificity */
} compiled_pattern;

static compiled_pattern compiled[ROUTE_COUNT];
/* The routes of each segment count, in table order: only those can match a path of that
 * many segments (looking at the whole table was most of the matcher's instructions). */
static unsigned char with_nsegs[MAX_SEGMENTS + 1][ROUTE_COUNT];
static size_t nwith_nsegs[MAX_SEGMENTS + 1];
static pthread_once_t compile_once = PTHREAD_ONCE_INIT;

static void compile_patterns(void)
{
    _Static_assert(ROUTE_COUNT <= 256, "route indexes are kept in bytes");
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        compiled_pattern *c = &compiled[i];
        const char *p = ROUTES[i].pattern + 1; /* every pattern starts with '/' */
        for (;;) {
            size_t len = strcspn(p, "/");
            pattern_segment *seg = &c->segs[c->nsegs++];
            seg->text = p;
            seg->len = len;
            seg->is_param = p[0] == '{';
            c->literals += !seg->is_param;
            if (!p[len])
                break;
            p += len + 1;
        }
        with_nsegs[c->nsegs][nwith_nsegs[c->nsegs]++] = (unsigned char)i;
    }
}

size_t api_route_table(const api_route **table)
{
    *table = ROUTES;
    return ROUTE_COUNT;
}

/* Splits "/a/b/c" into NUL-terminated segments in place, with their lengths. Returns the
 * count, or -1 when there are too many or the path does not start with '/'. */
static int split_path(char *path, char *segs[MAX_SEGMENTS], size_t lens[MAX_SEGMENTS])
{
    if (path[0] != '/')
        return -1;
    int n = 0;
    char *p = path + 1;
    for (;;) {
        if (n == MAX_SEGMENTS)
            return -1;
        segs[n] = p;
        char *slash = strchr(p, '/');
        if (!slash) {
            lens[n++] = strlen(p);
            break;
        }
        lens[n++] = (size_t)(slash - p);
        *slash = '\0';
        p = slash + 1;
    }
    return n;
}

/* Whether a compiled pattern matches the split path (same segment count, checked by the
 * caller). A capture needs a non-empty segment. */
static int pattern_matches(const compiled_pattern *c, char *const segs[], const size_t lens[])
{
    for (int i = 0; i < c->nsegs; i++) {
        const pattern_segment *seg = &c->segs[i];
        if (seg->is_param ? lens[i] == 0
                          : lens[i] != seg->len || memcmp(segs[i], seg->text, seg->len) != 0)
            return 0;
    }
    return 1;
}

static void fill_params(const compiled_pattern *c, char *const segs[],
                        const char *params[API_MAX_PARAMS])
{
    int nparams = 0;
    for (int i = 0; i < c->nsegs && nparams < API_MAX_PARAMS; i++)
        if (c->segs[i].is_param)
            params[nparams++] = segs[i];
}

api_match_result api_route_match(const char *method, char *path, const api_route **route,
                                 const char *params[API_MAX_PARAMS], char *allow,
                                 size_t allow_size)
{
    char *segs[MAX_SEGMENTS];
    size_t lens[MAX_SEGMENTS];
    int nsegs = split_path(path, segs, lens);
    *route = NULL;
    if (nsegs < 0)
        return API_MATCH_NO_PATH;

    /* The most specific patterns that match the path own it. Only patterns with as many
     * segments as the path can match: the others are not looked at. */
    pthread_once(&compile_once, compile_patterns);
    const unsigned char *candidates = with_nsegs[nsegs];
    size_t ncandidates = nwith_nsegs[nsegs];
    int best = -1;
    int spec[ROUTE_COUNT];
    for (size_t k = 0; k < ncandidates; k++) {
        const compiled_pattern *c = &compiled[candidates[k]];
        spec[k] = pattern_matches(c, segs, lens) ? c->literals : -1;
        if (spec[k] > best)
            best = spec[k];
    }
    if (best < 0)
        return API_MATCH_NO_PATH;

    size_t used = 0;
    if (allow_size)
        allow[0] = '\0';
    for (size_t k = 0; k < ncandidates; k++) {
        if (spec[k] != best)
            continue;
        size_t i = candidates[k];
        if (strcmp(ROUTES[i].method, method) == 0) {
            fill_params(&compiled[i], segs, params);
            *route = &ROUTES[i];
            return API_MATCH_OK;
        }
        size_t len = strlen(ROUTES[i].method);
        if (used + len + 3 < allow_size) {
            if (used) {
                memcpy(allow + used, ", ", 2);
                used += 2;
            }
            memcpy(allow + used, ROUTES[i].method, len + 1);
            used += len;
        }
    }
    return API_MATCH_NO_METHOD;
}
