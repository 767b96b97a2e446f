/* Actor names in Redis. See cluster_names.h. */
#include "runtime/cluster_names.h"

#include <stdio.h>
#include <stdlib.h>

#include "runtime/actor.h"

/* KEYS[1] the name's key, ARGV[1] the claiming id, ARGV[2] a stale holder to replace. */
static const char CLAIM[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v and v ~= ARGV[2] then return v end "
    "redis.call('SET', KEYS[1], ARGV[1]) return ARGV[1]";

/* KEYS[1] the name's key, ARGV[1] the id that may free it. */
static const char RELEASE[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0";

static void ignore(const rt_redis_answer *answer, void *arg)
{
    (void)answer;
    (void)arg;
}

static void name_key(char *key, size_t size, const char *name)
{
    snprintf(key, size, RT_NAME_KEY_PREFIX "%s", name);
}

int rt_cluster_name_claim(rt_cluster *cluster, const char *name, const char *actor_id,
                          const char *stale, rt_redis_done_fn done, void *arg)
{
    char key[sizeof(RT_NAME_KEY_PREFIX) + RT_ACTOR_NAME_MAX];
    name_key(key, sizeof(key), name);
    const char *argv[] = {"EVAL", CLAIM, "1", key, actor_id, stale ? stale : ""};
    return rt_cluster_command(cluster, 6, argv, done, arg);
}

int rt_cluster_name_release(rt_cluster *cluster, const char *name, const char *actor_id,
                            rt_redis_done_fn done, void *arg)
{
    char key[sizeof(RT_NAME_KEY_PREFIX) + RT_ACTOR_NAME_MAX];
    name_key(key, sizeof(key), name);
    const char *argv[] = {"EVAL", RELEASE, "1", key, actor_id};
    return rt_cluster_command(cluster, 5, argv, done ? done : ignore, arg);
}

int rt_cluster_name_lookup(rt_cluster *cluster, const char *name, rt_redis_done_fn done,
                           void *arg)
{
    char key[sizeof(RT_NAME_KEY_PREFIX) + RT_ACTOR_NAME_MAX];
    name_key(key, sizeof(key), name);
    const char *argv[] = {"GET", key};
    return rt_cluster_command(cluster, 2, argv, done, arg);
}
