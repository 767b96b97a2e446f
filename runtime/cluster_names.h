/* Actor names across the cluster (cluster mode): one name, one live actor, decided in Redis.
 *
 * Key `actor:name:<name>` holds the id of the actor that has the name. Claiming is one Lua
 * script (atomic in Redis): it sets the key to the new id unless another id holds it, and
 * answers the id that holds the name afterwards, so of several nodes claiming one name at
 * once exactly one reads back its own id. A holder found stale (its actor dead, its node
 * dead or unknown) is replaced by naming it in the claim: the script replaces only that
 * exact id, so two nodes replacing one stale holder still leave one winner. Releasing is a
 * compare-and-delete: only the actor holding the name frees it.
 *
 * Every call only queues a command (rt_cluster_command): done runs later on the command
 * thread. Thread-safety: any thread. */
#ifndef RAYD_RUNTIME_CLUSTER_NAMES_H
#define RAYD_RUNTIME_CLUSTER_NAMES_H

#include "runtime/cluster.h"

#define RT_NAME_KEY_PREFIX "actor:name:"

/* Claims name for actor_id, replacing holder `stale` (NULL or "": none). The answer is the
 * id holding the name afterwards (a string: actor_id when claimed). 0, or -1 (not queued). */
int rt_cluster_name_claim(rt_cluster *cluster, const char *name, const char *actor_id,
                          const char *stale, rt_redis_done_fn done, void *arg);

/* Frees name if actor_id holds it. done may be NULL (nothing to learn). 0, or -1. */
int rt_cluster_name_release(rt_cluster *cluster, const char *name, const char *actor_id,
                            rt_redis_done_fn done, void *arg);

/* The id holding name (a string), or nil. 0, or -1. */
int rt_cluster_name_lookup(rt_cluster *cluster, const char *name, rt_redis_done_fn done,
                           void *arg);

#endif
