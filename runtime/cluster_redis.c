/* The Redis connection of cluster mode: URL parsing, and the thread that connects,
 * authenticates, ticks, and reconnects with backoff.
 *
 * DESIGN
 * - Threads: one thread owns the hiredis context; nothing else touches it. The owner's
 *   thread only starts and stops it.
 * - Waiting between ticks and between attempts is a timed wait on a condition variable
 *   (CLOCK_MONOTONIC), so rt_redis_stop does not wait for a period to end. A command in
 *   progress is bounded by the command timeout. */
#include "runtime/cluster_redis.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/clock.h"

#define BACKOFF_FIRST 0.1
#define BACKOFF_MAX 2.0

struct rt_redis {
    rt_redis_config config;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopping; /* lock */
};

/* ---- URL ---------------------------------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Copies len bytes of s into out (out_size bytes) decoding %XX. 0, or -1 when it does
 * not fit or an escape is malformed. */
static int decode_part(const char *s, size_t len, char *out, size_t out_size)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = hex_value(s[i + 1]);
            int lo = hex_value(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= out_size)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

/* Parses an unsigned decimal of len bytes in [min, max]. 0, or -1. */
static int parse_uint(const char *s, size_t len, unsigned long min, unsigned long max,
                      unsigned *out)
{
    if (len == 0 || len > 10)
        return -1;
    unsigned long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

int rt_redis_url_parse(const char *url, rt_redis_url *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    static const char scheme[] = "redis://";
    if (!url || strncmp(url, scheme, sizeof(scheme) - 1) != 0) {
        /* The text is not echoed: it may hold a password, or anything at all. */
        snprintf(err, err_size, "not a redis:// URL (redis://[:password@]host:port[/db])");
        return -1;
    }
    const char *p = url + sizeof(scheme) - 1;
    const char *at = strrchr(p, '@');
    const char *slash = strchr(at ? at : p, '/');
    if (at && slash && slash < at)
        at = NULL;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) {
            snprintf(err, err_size, "the Redis URL's credentials must be [user]:password@");
            return -1;
        }
        if (decode_part(p, (size_t)(colon - p), out->user, sizeof(out->user)) != 0 ||
            decode_part(colon + 1, (size_t)(at - colon - 1), out->password,
                        sizeof(out->password)) != 0) {
            snprintf(err, err_size, "the Redis URL's user or password is malformed or too long");
            return -1;
        }
        p = at + 1;
    }
    const char *end = p + strcspn(p, "/");
    const char *host_end, *port_start = NULL;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (!close) {
            snprintf(err, err_size, "the Redis URL's IPv6 address has no closing ']'");
            return -1;
        }
        host_end = close;
        p++;
        if (close + 1 < end) {
            if (close[1] != ':') {
                snprintf(err, err_size, "the Redis URL has something after its address");
                return -1;
            }
            port_start = close + 2;
        }
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        host_end = colon ? colon : end;
        if (colon)
            port_start = colon + 1;
    }
    size_t host_len = (size_t)(host_end - p);
    if (host_len == 0 || host_len >= sizeof(out->host)) {
        snprintf(err, err_size, "the Redis URL needs a host");
        return -1;
    }
    memcpy(out->host, p, host_len);
    out->host[host_len] = '\0';
    if (port_start && parse_uint(port_start, (size_t)(end - port_start), 1, 65535,
                                 &out->port) != 0) {
        snprintf(err, err_size, "the Redis URL's port must be a number from 1 to 65535");
        return -1;
    }
    if (*end == '/' && end[1] &&
        parse_uint(end + 1, strlen(end + 1), 0, 100000, &out->db) != 0) {
        snprintf(err, err_size, "the Redis URL's database must be a number (redis://host:port/0)");
        return -1;
    }
    return 0;
}

/* ---- the thread ---------------------------------------------------------------------- */

/* Waits until the monotonic time `until` or until stopped. Returns 1 when stopping. */
static int wait_until(rt_redis *r, double until)
{
    struct timespec ts;
    ts.tv_sec = (time_t)until;
    ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
    pthread_mutex_lock(&r->lock);
    while (!r->stopping && rt_clock_monotonic() < until)
        if (pthread_cond_timedwait(&r->wake, &r->lock, &ts) == ETIMEDOUT)
            break;
    int stopping = r->stopping;
    pthread_mutex_unlock(&r->lock);
    return stopping;
}

static int is_stopping(rt_redis *r)
{
    pthread_mutex_lock(&r->lock);
    int stopping = r->stopping;
    pthread_mutex_unlock(&r->lock);
    return stopping;
}

/* Sends one command and checks its answer is not an error. 0, or -1 with why. */
static int simple_command(redisContext *c, int argc, const char **argv, char *why,
                          size_t why_size)
{
    redisReply *reply = redisCommandArgv(c, argc, argv, NULL);
    if (!reply) {
        snprintf(why, why_size, "%s: %s", argv[0], c->errstr);
        return -1;
    }
    int ok = reply->type != REDIS_REPLY_ERROR;
    if (!ok)
        snprintf(why, why_size, "%s: %s", argv[0], reply->str ? reply->str : "error");
    freeReplyObject(reply);
    return ok ? 0 : -1;
}

/* Connects, authenticates and selects the database. A new context, or NULL with why. */
static redisContext *connect_redis(const rt_redis_config *cfg, char *why, size_t why_size)
{
    return rt_redis_connect(&cfg->url, cfg->timeout, why, why_size);
}

redisContext *rt_redis_connect(const rt_redis_url *url, double timeout, char *why,
                               size_t why_size)
{
    struct timeval tv = {(time_t)timeout,
                         (suseconds_t)((timeout - (double)(time_t)timeout) * 1e6)};
    redisContext *c = redisConnectWithTimeout(url->host, (int)url->port, tv);
    if (!c) {
        snprintf(why, why_size, "out of memory");
        return NULL;
    }
    if (c->err) {
        snprintf(why, why_size, "cannot connect to %.100s:%u: %.100s", url->host,
                 url->port, c->errstr);
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (url->password[0]) {
        const char *auth_user[] = {"AUTH", url->user, url->password};
        const char *auth[] = {"AUTH", url->password};
        int failed = url->user[0] ? simple_command(c, 3, auth_user, why, why_size)
                                      : simple_command(c, 2, auth, why, why_size);
        if (failed) {
            redisFree(c);
            return NULL;
        }
    }
    if (url->db) {
        char db[16];
        snprintf(db, sizeof(db), "%u", url->db);
        const char *select[] = {"SELECT", db};
        if (simple_command(c, 2, select, why, why_size) != 0) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

static void *redis_thread(void *arg)
{
    rt_redis *r = arg;
    rt_redis_config *cfg = &r->config;
    redisContext *c = NULL;
    double backoff = BACKOFF_FIRST;
    int up = 0, reported_down = 0, fresh = 0;
    char why[256];
    while (!is_stopping(r)) {
        double started = rt_clock_monotonic();
        why[0] = '\0';
        if (!c) {
            c = connect_redis(cfg, why, sizeof(why));
            fresh = 1;
        }
        /* Up means answering: a connection the kernel accepted for a Redis that hangs is
         * not up until a tick went through on it. */
        if (!c || cfg->tick(c, fresh, cfg->arg, why, sizeof(why)) != 0) {
            if (c)
                redisFree(c);
            c = NULL;
            if ((up || !reported_down) && cfg->state)
                cfg->state(0, why[0] ? why : "a command failed", cfg->arg);
            up = 0;
            reported_down = 1;
            if (wait_until(r, rt_clock_monotonic() + backoff))
                break;
            backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
            continue;
        }
        fresh = 0;
        backoff = BACKOFF_FIRST;
        if (!up && cfg->state)
            cfg->state(1, "", cfg->arg);
        up = 1;
        reported_down = 0;
        if (wait_until(r, started + cfg->period))
            break;
    }
    if (c && cfg->leave)
        cfg->leave(c, 0, cfg->arg, why, sizeof(why));
    if (c)
        redisFree(c);
    return NULL;
}

rt_redis *rt_redis_start(const rt_redis_config *config)
{
    rt_redis *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->config = *config;
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&r->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&r->thread, NULL, redis_thread, r) != 0) {
        pthread_cond_destroy(&r->wake);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return NULL;
    }
    return r;
}

void rt_redis_stop(rt_redis *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stopping = 1;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
