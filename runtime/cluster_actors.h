/* rt_actor_dir: the actor directory (cluster mode). Where each actor that may restart
 * (max_restarts != 0) lives now, and what it takes to make it again, kept in Redis, so that
 * when its node dies a live node restarts it, under the same id, and every node finds it.
 *
 * Redis keys:
 *   actor:<id>        hash: node (the tag of the node it lives on), incarnation (the
 *                     fencing token: 1 at creation, +1 at each move), restarts,
 *                     max_restarts, class, spec (JSON: class, args, kwargs, name,
 *                     max_pending_calls; at most RT_ACTOR_DIR_SPEC_MAX bytes), state (the
 *                     last kept state of a "state_in_cluster" remote class, JSON)
 *   actors:on:<tag>   set: the ids whose record names node <tag>
 *
 * - Recorded when made (before the creation is answered), deleted when the actor dies or is
 *   killed (only by the node and incarnation that hold it: compare-and-delete).
 * - Restart: every live node, after its heartbeat, looks at the sets of the nodes it sees
 *   dead. For each id there, the node the id hashes to among the live ones (rendezvous
 *   hashing) claims it at once, any other live node that has its class after
 *   RT_ACTOR_DIR_FALLBACK seconds. A claim is one Lua script: it moves the record to the
 *   claiming node and adds one to incarnation and restarts, only while the dead node's
 *   heartbeat record is gone and the record still names the dead node; without restarts
 *   left it deletes the record instead (the actor is DEAD). The winner makes the actor
 *   again (RESTARTING, then ALIVE): its constructor runs again, or for a class that keeps
 *   its state in the cluster, the last kept state is its state.
 * - Fencing: a node runs its fenced actors' calls only while it holds its lease (its
 *   heartbeat record cannot have expired: rt_cluster_lease_held). A node whose record had
 *   expired (it stalled, or Redis lost its data) checks every actor it holds before its
 *   lease is held again: one claimed elsewhere is forgotten here (calls not run end
 *   ActorDied); one whose record Redis lost is recorded again. State writes carry the
 *   incarnation: a node that lost the actor cannot overwrite the state.
 * - Finding an actor: its id names the node that made it; when that node is dead (or no
 *   longer has it), `node` in actor:<id> is where it lives now (rt_actor_dir_locate).
 *
 * Thread-safety: every function may be called from any thread. The table of the actors
 * held here has one mutex (leaf). Redis work runs on the command thread (requests, state
 * writes) and on the heartbeat thread (rt_actor_dir_tick). */
#ifndef RAYD_RUNTIME_CLUSTER_ACTORS_H
#define RAYD_RUNTIME_CLUSTER_ACTORS_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/actor.h"
#include "runtime/cluster.h"
#include "runtime/cluster_fetch.h"
#include "runtime/remote_class.h"

#define RT_ACTOR_DIR_SPEC_MAX (64 * 1024)    /* bytes of creation spec kept per actor */
#define RT_ACTOR_DIR_STATE_MAX (1024 * 1024) /* bytes of kept state per actor */
#define RT_ACTOR_DIR_FALLBACK                                                                      \
    3.0 /* seconds a dead node's actors wait for their preferred                                   \
           node before any live node with the class claims them */

typedef struct rt_actor_dir rt_actor_dir;

/* A directory for this node (cluster, actors and fetch borrowed; they must outlive it;
 * fetch gives a restarted actor's constructor its ref arguments that other nodes own).
 * NULL when out of memory. Call rt_cluster_on_tick(cluster, rt_actor_dir_tick, dir)
 * before starting the cluster, and give the actor system the hooks below. */
rt_actor_dir *rt_actor_dir_new(rt_cluster *cluster, rt_actors *actors, rt_fetch *fetch);
void rt_actor_dir_free(rt_actor_dir *dir); /* NULL accepted */

/* Stops using the cluster (before it is freed): states are no longer kept (a call that
 * completes from now on fails as if Redis were unreachable). NULL accepted. */
void rt_actor_dir_close(rt_actor_dir *dir);

/* The creation spec as kept (new string, free()), or NULL when over RT_ACTOR_DIR_SPEC_MAX
 * (*len the size it would have) or out of memory. */
char *rt_actor_dir_spec_text(const rt_actor_spec *spec, size_t *len);

/* Records actor_id, just made here from spec_text (rt_actor_dir_spec_text, copied): done
 * (command thread) gets a string "ok" once recorded. 0, or -1 (not queued). */
int rt_actor_dir_record(rt_actor_dir *dir, const char *actor_id, const char *class_name,
                        int max_restarts, const char *spec_text, rt_redis_done_fn done, void *arg);

/* The node actor_id lives on (a string: its tag), or nil when the directory has no record
 * of it (never restartable, dead, or killed). 0, or -1 (not queued). */
int rt_actor_dir_locate(rt_actor_dir *dir, const char *actor_id, rt_redis_done_fn done, void *arg);

/* Whether this node holds actor_id as a directory actor now (made or restarted here). */
bool rt_actor_dir_holds(rt_actor_dir *dir, const char *actor_id);

/* rt_state_keeper.keep for "state_in_cluster" classes (keeper: the dir). */
int rt_actor_dir_keep_state(void *dir, const char *actor_id, const char *state, size_t len,
                            rt_state_keep_done_fn done, void *arg);

/* The actor system's hooks (rt_actors_config, with hooks_arg the dir). */
void rt_actor_dir_ended(rt_actor_dir *dir, const char *actor_id);
void rt_actor_dir_restarted(rt_actor_dir *dir, const char *actor_id, unsigned restarts);

/* The cluster's tick hook (rt_cluster_on_tick, arg the dir): checks what this node holds
 * after a rejoin, and restarts the actors of dead nodes. */
int rt_actor_dir_tick(struct redisContext *rc, bool rejoined, void *dir, char *why,
                      size_t why_size);

#endif
