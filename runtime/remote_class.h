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

/* A new remote class (owned by the caller until handed to rt_actors_put_owned_class with
 * rt_remote_class_release). remote is borrowed. timeout <= 0 means 60 s. */
rt_actor_class *rt_remote_class_new(rt_remote *remote, const char *name, const char *url,
                                    double timeout);
void rt_remote_class_release(rt_actor_class *cls);

/* Remote classes in memory in this process: made and not yet released (listed ones, and
 * replaced or removed ones that an actor still holds). */
size_t rt_remote_class_count(void);

#endif
