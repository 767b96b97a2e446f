/* The route table and the matcher. */
#include "api/router.h"

#include <pthread.h>
#include <string.h>

#include "api/handlers.h"

static const api_route ROUTES[] = {
    {"GET", "/healthz", api_system_healthz, API_BODY_NONE, API_AUTH_OPEN, 0},
    {"GET", "/readyz", api_system_readyz, API_BODY_NONE, API_AUTH_OPEN, 0},
    {"GET", "/metrics", api_system_metrics, API_BODY_NONE, API_AUTH_OPEN, 0},
    {"GET", "/openapi.yaml", api_system_openapi_yaml, API_BODY_NONE, API_AUTH_OPEN, 0},
    {"GET", "/openapi.json", api_system_openapi_json, API_BODY_NONE, API_AUTH_OPEN, 0},
    {"GET", "/v1/status", api_system_status, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"POST", "/v1/objects", api_objects_put, API_BODY_RAW, API_AUTH_TOKEN, 1},
    {"GET", "/v1/objects", api_objects_list, API_BODY_NONE, API_AUTH_TOKEN, 0},
    {"POST", "/v1/objects/batch", api_objects_put_batch, API_BODY_JSON, API_AUTH_TOKEN, 0},
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
};

#define ROUTE_COUNT (sizeof(ROUTES) / sizeof(ROUTES[0]))
#define MAX_SEGMENTS 8

/* Segments in each route's pattern, counted once. */
static int route_segments[ROUTE_COUNT];
static pthread_once_t segments_once = PTHREAD_ONCE_INIT;

static void count_segments(void)
{
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        int n = 0;
        for (const char *p = ROUTES[i].pattern; *p; p++)
            n += *p == '/';
        route_segments[i] = n;
    }
}

size_t api_route_table(const api_route **table)
{
    *table = ROUTES;
    return ROUTE_COUNT;
}

/* Splits "/a/b/c" into segments in place. Returns the count, or -1 when there are too
 * many or the path does not start with '/'. */
static int split_path(char *path, char *segs[MAX_SEGMENTS])
{
    if (path[0] != '/')
        return -1;
    int n = 0;
    char *p = path + 1;
    for (;;) {
        if (n == MAX_SEGMENTS)
            return -1;
        segs[n++] = p;
        char *slash = strchr(p, '/');
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
    }
    return n;
}

/* Matches one pattern against split segments. Returns the number of literal segments
 * (its specificity) or -1 for no match; fills params. */
static int match_pattern(const char *pattern, char *const segs[], int nsegs,
                         const char *params[API_MAX_PARAMS])
{
    const char *p = pattern + 1;
    int literals = 0, nparams = 0;
    for (int i = 0; i < nsegs; i++) {
        if (!*p && i > 0)
            return -1; /* the path is longer */
        size_t len = strcspn(p, "/");
        if (p[0] == '{') {
            if (!segs[i][0] || nparams == API_MAX_PARAMS)
                return -1;
            params[nparams++] = segs[i];
        } else {
            if (strlen(segs[i]) != len || strncmp(segs[i], p, len) != 0)
                return -1;
            literals++;
        }
        p += len;
        if (*p == '/')
            p++;
        else if (i + 1 < nsegs)
            return -1; /* the pattern ends before the path */
    }
    return *p ? -1 : literals; /* the pattern is longer than the path */
}

api_match_result api_route_match(const char *method, char *path, const api_route **route,
                                 const char *params[API_MAX_PARAMS], char *allow,
                                 size_t allow_size)
{
    char *segs[MAX_SEGMENTS];
    int nsegs = split_path(path, segs);
    *route = NULL;
    if (nsegs < 0)
        return API_MATCH_NO_PATH;

    /* The most specific patterns that match the path own it. Only patterns with as many
     * segments as the path can match, which skips most of the table cheaply. */
    pthread_once(&segments_once, count_segments);
    int best = -1;
    int spec[ROUTE_COUNT];
    const char *scratch[API_MAX_PARAMS];
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        spec[i] = route_segments[i] == nsegs
                      ? match_pattern(ROUTES[i].pattern, segs, nsegs, scratch)
                      : -1;
        if (spec[i] > best)
            best = spec[i];
    }
    if (best < 0)
        return API_MATCH_NO_PATH;

    size_t used = 0;
    if (allow_size)
        allow[0] = '\0';
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        if (spec[i] != best)
            continue;
        if (strcmp(ROUTES[i].method, method) == 0) {
            match_pattern(ROUTES[i].pattern, segs, nsegs, params);
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
