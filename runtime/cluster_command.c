/* Redis commands for request handlers, on a thread of their own. See cluster_command.h.
 *
 * DESIGN
 * - One mutex guards the queue (a singly linked FIFO) and `closing`; the thread waits on a
 *   condition variable for work. The hiredis context belongs to the thread alone.
 * - A command is copied whole (arguments included) into one allocation when queued, so the
 *   caller's strings may go at once. */
#include "runtime/cluster_command.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


typedef struct command {
    struct command *next;
    int argc;
    const char *argv[RT_REDIS_ARGS_MAX];
    size_t lens[RT_REDIS_ARGS_MAX];
    rt_redis_done_fn done;
    void *arg;
    char data[]; /* the arguments, NUL-terminated one after the other */
} command;

struct rt_redis_commands {
    rt_redis_url url;
    double timeout;
    size_t max_queued;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    command *head, *tail; /* lock */
    size_t queued;        /* lock */
    bool closing;         /* lock */
    bool running;         /* lock: a command is being run */
    pthread_cond_t idle;  /* signalled when running goes false */
    bool joined;
};

static void fail(command *cmd, const char *why)
{
    rt_redis_answer a = {.type = RT_REDIS_FAILED};
    snprintf(a.why, sizeof(a.why), "%s", why);
    cmd->done(&a, cmd->arg);
    free(cmd);
}

static void answer(command *cmd, const redisReply *r)
{
    rt_redis_answer a = {.type = RT_REDIS_OTHER};
    switch (r->type) {
    case REDIS_REPLY_NIL: a.type = RT_REDIS_NIL; break;
    case REDIS_REPLY_INTEGER:
        a.type = RT_REDIS_INTEGER;
        a.integer = r->integer;
        break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        a.type = RT_REDIS_STRING;
        a.str = r->str;
        a.len = r->len;
        break;
    case REDIS_REPLY_ERROR:
        a.type = RT_REDIS_ERROR;
        a.str = r->str;
        a.len = r->len;
        break;
    default: break;
    }
    cmd->done(&a, cmd->arg);
    free(cmd);
}

static void *command_thread(void *arg)
{
    rt_redis_commands *rc = arg;
    redisContext *c = NULL;
    char why[256] = "";
    for (;;) {
        pthread_mutex_lock(&rc->lock);
        while (!rc->head && !rc->closing)
            pthread_cond_wait(&rc->wake, &rc->lock);
        if (rc->closing) {
            pthread_mutex_unlock(&rc->lock);
            break;
        }
        command *cmd = rc->head;
        rc->head = cmd->next;
        if (!rc->head)
            rc->tail = NULL;
        rc->queued--;
        rc->running = true;
        pthread_mutex_unlock(&rc->lock);

        if (!c)
            c = rt_redis_connect(&rc->url, rc->timeout, why, sizeof(why));
        redisReply *r = c ? redisCommandArgv(c, cmd->argc, cmd->argv, cmd->lens) : NULL;
        if (r) {
            answer(cmd, r);
            freeReplyObject(r);
        } else {
            if (c) { /* broken or timed out: a new connection for the next command */
                snprintf(why, sizeof(why), "%s: %s", cmd->argv[0], c->errstr);
                redisFree(c);
                c = NULL;
            }
            fail(cmd, why);
        }
        pthread_mutex_lock(&rc->lock);
        rc->running = false;
        pthread_cond_broadcast(&rc->idle);
        pthread_mutex_unlock(&rc->lock);
    }
    if (c)
        redisFree(c);
    return NULL;
}

rt_redis_commands *rt_redis_commands_start(const rt_redis_url *url, double timeout,
                                           size_t max_queued)
{
    rt_redis_commands *rc = calloc(1, sizeof(*rc));
    if (!rc)
        return NULL;
    rc->url = *url;
    rc->timeout = timeout;
    rc->max_queued = max_queued;
    pthread_mutex_init(&rc->lock, NULL);
    pthread_cond_init(&rc->wake, NULL);
    pthread_cond_init(&rc->idle, NULL);
    if (pthread_create(&rc->thread, NULL, command_thread, rc) != 0) {
        pthread_cond_destroy(&rc->idle);
        pthread_cond_destroy(&rc->wake);
        pthread_mutex_destroy(&rc->lock);
        free(rc);
        return NULL;
    }
    return rc;
}

int rt_redis_command(rt_redis_commands *rc, int argc, const char *const *argv,
                     rt_redis_done_fn done, void *arg)
{
    if (!rc || argc < 1 || argc > RT_REDIS_ARGS_MAX)
        return -1;
    size_t total = 0;
    for (int i = 0; i < argc; i++)
        total += strlen(argv[i]) + 1;
    command *cmd = malloc(sizeof(*cmd) + total);
    if (!cmd)
        return -1;
    cmd->next = NULL;
    cmd->argc = argc;
    cmd->done = done;
    cmd->arg = arg;
    char *p = cmd->data;
    for (int i = 0; i < argc; i++) {
        size_t len = strlen(argv[i]);
        memcpy(p, argv[i], len + 1);
        cmd->argv[i] = p;
        cmd->lens[i] = len;
        p += len + 1;
    }
    pthread_mutex_lock(&rc->lock);
    if (rc->closing || rc->queued >= rc->max_queued) {
        pthread_mutex_unlock(&rc->lock);
        free(cmd);
        return -1;
    }
    if (rc->tail)
        rc->tail->next = cmd;
    else
        rc->head = cmd;
    rc->tail = cmd;
    rc->queued++;
    pthread_cond_signal(&rc->wake);
    pthread_mutex_unlock(&rc->lock);
    return 0;
}

void rt_redis_commands_close(rt_redis_commands *rc)
{
    if (!rc)
        return;
    pthread_mutex_lock(&rc->lock);
    rc->closing = true;
    command *list = rc->head;
    rc->head = rc->tail = NULL;
    rc->queued = 0;
    pthread_cond_signal(&rc->wake);
    while (rc->running)
        pthread_cond_wait(&rc->idle, &rc->lock);
    pthread_mutex_unlock(&rc->lock);
    while (list) {
        command *next = list->next;
        fail(list, "this node is stopping");
        list = next;
    }
}

void rt_redis_commands_free(rt_redis_commands *rc)
{
    if (!rc)
        return;
    rt_redis_commands_close(rc);
    pthread_join(rc->thread, NULL);
    pthread_cond_destroy(&rc->idle);
    pthread_cond_destroy(&rc->wake);
    pthread_mutex_destroy(&rc->lock);
    free(rc);
}
