/* The settings SIGHUP may change, behind one reader-writer lock. */
#include "api/live.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/router.h"

struct api_live {
    pthread_rwlock_t lock;
    char *remote_allow; /* owned, NULL: none */
    char *api_token;    /* owned, NULL: none */
    char *admin_token;  /* owned, NULL: none */
};

api_live *api_live_new(void)
{
    api_live *live = calloc(1, sizeof(*live));
    if (live && pthread_rwlock_init(&live->lock, NULL) != 0) {
        free(live);
        return NULL;
    }
    return live;
}

void api_live_free(api_live *live)
{
    if (!live)
        return;
    pthread_rwlock_destroy(&live->lock);
    free(live->remote_allow);
    free(live->api_token);
    free(live->admin_token);
    free(live);
}

/* A copy of s, NULL for none or "". Sets *failed when out of memory. */
static char *copy_or_null(const char *s, int *failed)
{
    if (!s || !*s)
        return NULL;
    char *c = strdup(s);
    if (!c)
        *failed = 1;
    return c;
}

int api_live_set(api_live *live, const api_live_values *v)
{
    int failed = 0;
    char *allow = copy_or_null(v->remote_allow, &failed);
    char *api = copy_or_null(v->api_token, &failed);
    char *admin = copy_or_null(v->admin_token, &failed);
    if (failed) {
        free(allow);
        free(api);
        free(admin);
        return -1;
    }
    pthread_rwlock_wrlock(&live->lock);
    char *old[3] = {live->remote_allow, live->api_token, live->admin_token};
    live->remote_allow = allow;
    live->api_token = api;
    live->admin_token = admin;
    pthread_rwlock_unlock(&live->lock);
    for (int i = 0; i < 3; i++)
        free(old[i]);
    return 0;
}

/* Compares two strings in time that depends only on their lengths, not on where they
 * differ, so a token cannot be guessed byte by byte from response times. */
static int secret_equal(const char *given, const char *secret)
{
    size_t a = strlen(given), b = strlen(secret);
    unsigned char diff = (unsigned char)(a != b);
    for (size_t i = 0; i < b; i++)
        diff |= (unsigned char)(secret[i] ^ (i < a ? given[i] : 0));
    return diff == 0;
}

bool api_live_bearer_is(const char *authorization, const char *secret)
{
    return authorization && strncasecmp(authorization, "Bearer ", 7) == 0 &&
           secret_equal(authorization + 7, secret);
}

api_live_auth api_live_check(api_live *live, int need, const char *authorization)
{
    if (need == API_AUTH_OPEN)
        return API_LIVE_AUTH_OK;
    pthread_rwlock_rdlock(&live->lock);
    api_live_auth verdict = API_LIVE_AUTH_OK;
    int admin_route = need == API_AUTH_ADMIN && live->admin_token;
    const char *secret = admin_route ? live->admin_token : live->api_token;
    if (secret && !api_live_bearer_is(authorization, secret)) {
        if (!admin_route)
            verdict = API_LIVE_AUTH_NEED_TOKEN;
        else if (live->api_token && api_live_bearer_is(authorization, live->api_token))
            verdict = API_LIVE_AUTH_FORBIDDEN; /* known caller, not allowed here */
        else
            verdict = API_LIVE_AUTH_NEED_ADMIN;
    }
    pthread_rwlock_unlock(&live->lock);
    return verdict;
}

bool api_live_auth_on(api_live *live)
{
    pthread_rwlock_rdlock(&live->lock);
    bool on = live->api_token != NULL;
    pthread_rwlock_unlock(&live->lock);
    return on;
}

char *api_live_remote_allow(api_live *live)
{
    pthread_rwlock_rdlock(&live->lock);
    char *copy = live->remote_allow ? strdup(live->remote_allow) : NULL;
    pthread_rwlock_unlock(&live->lock);
    return copy;
}
