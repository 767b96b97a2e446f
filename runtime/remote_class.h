/* Remote actor classes: an actor class whose methods are an HTTP endpoint in any language,
 * while the actor's state stays in rayd. Each call POSTs
 * {"actor_id","class","method","args","kwargs","state"} (method "__init__" with state null
 * at creation) and expects {"result": value, "state": new_state}; the new state is kept only
 * when the call succeeds. The endpoint can be stateless and scaled behind its own load
 * balancer. Calls go through rt_remote, so no worker waits on them. Thread-safe. */
#ifndef RAYD_RUNTIME_REMOTE_CLASS_H
#define RAYD_RUNTIME_REMOTE_CLASS_H

#include "runtime/actor.h"
#include "runtime/remote.h"

/* Where a class whose state is kept in the cluster ("state_in_cluster") keeps it: after
 * every successful call the new state (JSON text) goes to keep, and the call completes
 * only when done says what happened (cluster mode: runtime/cluster_actors.h). */
typedef enum rt_state_kept {
    RT_STATE_KEPT = 0,     /* written where a restart elsewhere reads it */
    RT_STATE_NOT_KEPT,     /* nothing to keep it for (the actor cannot restart elsewhere) */
    RT_STATE_FENCED,       /* the actor lives on another node now: the call must not count */
    RT_STATE_UNAVAILABLE,  /* could not be written (Redis did not answer): why says why */
    RT_STATE_TOO_BIG       /* over the size kept */
} rt_state_kept;
typedef void (*rt_state_keep_done_fn)(rt_state_kept outcome, const char *why, void *arg);
typedef struct rt_state_keeper {
    /* Keeps state (len bytes, copied) of actor_id; done(outcome, why, arg) is called once,
     * on any thread, unless it returns -1 (not queued: done is never called). */
    int (*keep)(void *keeper, const char *actor_id, const char *state, size_t len,
                rt_state_keep_done_fn done, void *arg);
    void *keeper;
} rt_state_keeper;

/* A new remote class (owned by the caller until handed to rt_actors_put_owned_class with
 * rt_remote_class_release). remote is borrowed. timeout <= 0 means 60 s. keeper (copied;
 * NULL: the state stays in this process only) keeps each actor's state after every
 * successful call. */
rt_actor_class *rt_remote_class_new(rt_remote *remote, const char *name, const char *url,
                                    double timeout, const rt_state_keeper *keeper);

/* Whether cls keeps its actors' states in the cluster (made with a keeper). */
bool rt_remote_class_keeps_state(const rt_actor_class *cls);
void rt_remote_class_release(rt_actor_class *cls);

/* Remote classes in memory in this process: made and not yet released (listed ones, and
 * replaced or removed ones that an actor still holds). */
size_t rt_remote_class_count(void);

#endif
