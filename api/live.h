/* api_live: the settings an operator may change while rayd runs (SIGHUP in service/main.c):
 * the remote allow-list and the bearer tokens. Everything else in api_config is fixed at
 * start. Thread-safe: HTTP threads read under a shared lock, the reload writes under an
 * exclusive one, and every value is the live object's own copy, so a reader never sees a
 * half-made change or a freed string. */
#ifndef RAYD_API_LIVE_H
#define RAYD_API_LIVE_H

#include <stdbool.h>

typedef struct api_live api_live;

/* The values; each string may be NULL or "" for "none". Borrowed by api_live_set, which
 * copies them. */
typedef struct api_live_values {
    const char *remote_allow; /* comma-separated scheme://host:port prefixes; none:
                                 registering remote functions and classes is refused */
    const char *api_token;    /* bearer token for /v1/ routes; none: no auth */
    const char *admin_token;  /* bearer token for admin routes; none: api_token applies */
} api_live_values;

/* A new object with no allow-list and no tokens, or NULL when out of memory. Free with
 * api_live_free (NULL accepted) once no thread uses it. */
api_live *api_live_new(void);
void api_live_free(api_live *live);

/* Replaces every value at once with copies of v's. 0, or -1 when out of memory (then
 * nothing changed). */
int api_live_set(api_live *live, const api_live_values *v);

/* What a request's Authorization header (may be NULL) is worth on a route that needs
 * need (API_AUTH_*, api/router.h). */
typedef enum api_live_auth {
    API_LIVE_AUTH_OK = 0,
    API_LIVE_AUTH_NEED_TOKEN, /* 401: no token, or a wrong one */
    API_LIVE_AUTH_NEED_ADMIN, /* 401: an admin route, not the admin token nor the API one */
    API_LIVE_AUTH_FORBIDDEN   /* 403: the API token on an admin route that has its own */
} api_live_auth;

api_live_auth api_live_check(api_live *live, int need, const char *authorization);

/* Whether authorization is "Bearer <secret>", compared in time that does not depend on
 * where they differ. */
bool api_live_bearer_is(const char *authorization, const char *secret);

/* Whether an API token is set (auth is on). */
bool api_live_auth_on(api_live *live);

/* A copy of the allow-list (new, free()), or NULL when there is none (or out of memory:
 * callers then refuse, as without a list). */
char *api_live_remote_allow(api_live *live);

#endif
