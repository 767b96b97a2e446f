/* rt_redis_commands: Redis commands asked for by request handlers (cluster mode), run one
 * at a time on a thread of their own with a connection of their own, so that no request
 * thread ever waits on Redis: the caller queues a command with a callback and goes on
 * (api/redis_call.h suspends the request meanwhile).
 *
 * Every command ends once: answered, or failed (Redis unreachable, a timeout, stopping),
 * each bounded by the command timeout. After a failure the connection is made again for
 * the next command. (Callers look at the heartbeat's verdict, rt_cluster_redis_up, before
 * queueing, so while Redis is known down nothing waits here.)
 *
 * Thread-safety: rt_redis_command may be called from any thread; the callbacks run on the
 * command thread (or on the stopping thread, for commands still queued at stop). */
#ifndef RAYD_RUNTIME_CLUSTER_COMMAND_H
#define RAYD_RUNTIME_CLUSTER_COMMAND_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/cluster_redis.h"

#define RT_REDIS_ARGS_MAX 8

typedef enum rt_redis_answer_type {
    RT_REDIS_FAILED = 0, /* no answer: why says why */
    RT_REDIS_NIL,
    RT_REDIS_INTEGER,
    RT_REDIS_STRING,     /* also status replies */
    RT_REDIS_ERROR,      /* Redis answered an error (str) */
    RT_REDIS_OTHER       /* an array or anything else */
} rt_redis_answer_type;

typedef struct rt_redis_answer {
    rt_redis_answer_type type;
    long long integer;
    const char *str; /* STRING, ERROR: borrowed for the callback; NUL-terminated */
    size_t len;
    char why[256];   /* FAILED: the reason */
} rt_redis_answer;

typedef void (*rt_redis_done_fn)(const rt_redis_answer *answer, void *arg);

typedef struct rt_redis_commands rt_redis_commands;

/* Starts the command thread for url (copied); it connects when the first command comes.
 * timeout: seconds for connecting and per command. max_queued: commands waiting at most.
 * NULL when out of memory or threads. */
rt_redis_commands *rt_redis_commands_start(const rt_redis_url *url, double timeout,
                                           size_t max_queued);

/* Queues one command (argc <= RT_REDIS_ARGS_MAX arguments, copied). done(answer, arg) is
 * called exactly once when it returns 0. Returns -1 (done never called) when the queue is
 * full, out of memory, or stopping. */
int rt_redis_command(rt_redis_commands *rc, int argc, const char *const *argv,
                     rt_redis_done_fn done, void *arg);

/* Stops taking commands, fails those still queued ("stopping") and waits for the one
 * running to end. Idempotent; the thread is joined by rt_redis_commands_free. */
void rt_redis_commands_close(rt_redis_commands *rc);

/* Closes, joins the thread and frees everything. NULL accepted. */
void rt_redis_commands_free(rt_redis_commands *rc);

#endif
