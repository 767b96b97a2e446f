/* rt_redis: cluster mode's connection to Redis, on a thread of its own.
 *
 * The thread connects (AUTH and SELECT as the URL says), then calls its owner's tick once
 * per period with the connected hiredis context. When a command fails at the connection
 * level (Redis stopped, a timeout, a reset), the connection is dropped and made again with
 * a growing pause (0.1 s doubling to 2 s), so a Redis that comes back is found again within
 * two seconds. The owner hears of every change (up, down and why) through a callback.
 *
 * Redis holds small records only (membership now; later the actor directory, names,
 * idempotency keys); one blocking hiredis context per thread is what hiredis 0.14 offers
 * and all this needs.
 *
 * Thread-safety: rt_redis_url_parse is pure. rt_redis_start and rt_redis_stop are called by
 * one thread (the owner); the callbacks run on the Redis thread. */
#ifndef RAYD_RUNTIME_CLUSTER_REDIS_H
#define RAYD_RUNTIME_CLUSTER_REDIS_H

#include <stddef.h>

/* A parsed redis://[[user]:password@]host[:port][/db] URL. */
typedef struct rt_redis_url {
    char host[256];     /* a name, an IPv4 address, or an IPv6 address without brackets */
    unsigned port;      /* default 6379 */
    unsigned db;        /* default 0 */
    char user[128];     /* "" when none (AUTH with the password only) */
    char password[512]; /* "" when none */
} rt_redis_url;

/* Parses url into out. user and password may be percent-encoded. Returns 0, or -1 with a
 * one-line reason in err (err_size bytes). */
int rt_redis_url_parse(const char *url, rt_redis_url *out, char *err, size_t err_size);

struct redisContext;

/* Connects to url (AUTH and SELECT as it says), with timeout seconds for connecting and for
 * every command from then on. A new context (redisFree it), or NULL with why. */
struct redisContext *rt_redis_connect(const rt_redis_url *url, double timeout, char *why,
                                      size_t why_size);

/* Runs on the Redis thread with a connected context; fresh is 1 on the first tick of a new
 * connection. Returns 0, or -1 when a command failed (why written into why, why_size
 * bytes): the connection is then dropped and made again. */
typedef int (*rt_redis_tick_fn)(struct redisContext *c, int fresh, void *arg, char *why,
                                size_t why_size);

/* Runs on the Redis thread each time Redis answers again (up = 1, why "": a tick succeeded
 * on a new connection), and each time it stops answering or cannot be reached (up = 0, why
 * says why; once per outage, not once per attempt). */
typedef void (*rt_redis_state_fn)(int up, const char *why, void *arg);

typedef struct rt_redis_config {
    rt_redis_url url;
    double period;          /* seconds from one tick's start to the next */
    double timeout;         /* seconds for connecting and for each command */
    rt_redis_tick_fn tick;  /* required */
    rt_redis_tick_fn leave; /* called once when stopping, if connected; may be NULL */
    rt_redis_state_fn state; /* may be NULL */
    void *arg;              /* passed to the callbacks */
} rt_redis_config;

typedef struct rt_redis rt_redis;

/* Starts the thread (config is copied). The first connection is tried at once. NULL when
 * out of memory or threads. */
rt_redis *rt_redis_start(const rt_redis_config *config);

/* Stops the thread: the tick in progress ends (within the command timeout), leave runs,
 * the connection is closed, everything is freed. NULL accepted. */
void rt_redis_stop(rt_redis *redis);

#endif
