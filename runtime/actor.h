/* rt_actors: Ray's actors. An actor is an instance of a class: state built by the class's
 * constructor and changed by its methods. Calls to one actor run one at a time, in the order
 * they were accepted; calls to different actors run in parallel on the shared worker pool.
 *
 * An actor is a mailbox, not a thread: it is queued on the scheduler when its first call is
 * ready to run and it is not already queued or running, so 100,000 idle actors cost memory
 * only. A call whose ref arguments are not ready holds back the calls behind it.
 *
 * Lifecycle as Ray's: PENDING_CREATION until the constructor ran, ALIVE, RESTARTING while
 * the constructor runs again after a method reported a fatal error (up to max_restarts),
 * DEAD when killed, when the constructor failed, or when restarts are exhausted. Calls that
 * had not run when the actor died resolve to ActorDied.
 *
 * Thread-safety: every function may be called from any thread. See actor.c for locks. */
#ifndef RAYD_RUNTIME_ACTOR_H
#define RAYD_RUNTIME_ACTOR_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "runtime/function.h"
#include "runtime/object_store.h"
#include "runtime/scheduler.h"
#include "runtime/task.h"

/* ---- classes ----------------------------------------------------------------------- */

/* A method runs with the actor's state (owned by the actor; the method may change it or
 * replace *state) and a call (as for functions). A method that reports a fatal error with
 * rt_call_fail_fatal makes the actor restart (or die). */
typedef void (*rt_method_fn)(void **state, rt_call *call);

typedef struct rt_actor_method {
    const char *name;
    const char *args_doc;
    const char *description;
    rt_method_fn fn;
} rt_actor_method;

typedef struct rt_actor_class {
    const char *name;
    rt_function_kind kind;
    const char *description;
    const char *args_doc;  /* the constructor's arguments */
    /* Builds the state from the call's args: sets *state (may stay NULL) or fails the call. */
    rt_method_fn constructor;
    void (*destroy)(void *state); /* frees a state; NULL state accepted */
    const rt_actor_method *methods;
    size_t nmethods;
    /* Asynchronous classes (remote ones) run the constructor and every method through
     * start instead (call->function is the method, "__init__" for the constructor), accept
     * any method name, and call complete(call, arg) once when done. *state stays theirs to
     * replace until then. */
    void (*start)(const struct rt_actor_class *cls, void **state, rt_call *call,
                  rt_call_complete_fn complete, void *arg);
    const char *url;  /* remote classes: the endpoint (for listings) */
    double timeout;   /* remote classes: seconds per call */
    void *impl;       /* kind-specific data */
    bool quick;       /* every method runs in microseconds and never blocks: a call may run
                         on the thread that waits for it when the actor is idle */
    /* Set by rt_actors_put_owned_class; zero in static and module classes, which are never
     * counted (see rt_actor_class_hold). */
    int refs;         /* atomic */
    void (*release)(struct rt_actor_class *cls); /* frees cls when its last reference goes */
} rt_actor_class;

/* References to classes the actor system owns (remote ones): the system holds one while
 * the class is listed, and each actor made from it holds one until the actor's record is
 * freed, so replacing or removing a class frees it once its last actor is gone. A no-op
 * for static and module classes. NULL accepted; hold returns cls. */
const rt_actor_class *rt_actor_class_hold(const rt_actor_class *cls);
void rt_actor_class_drop(const rt_actor_class *cls);

/* The method of a class by name, or NULL. */
const rt_actor_method *rt_actor_class_method(const rt_actor_class *cls, const char *name);

/* ---- the actor system ----------------------------------------------------------------- */

typedef struct rt_actors rt_actors;

typedef enum rt_actor_state {
    RT_ACTOR_PENDING_CREATION = 0,
    RT_ACTOR_ALIVE,
    RT_ACTOR_RESTARTING,
    RT_ACTOR_DEAD
} rt_actor_state;
#define RT_ACTOR_STATE_COUNT 4

const char *rt_actor_state_name(rt_actor_state state);
int rt_actor_state_parse(const char *name); /* -1 when unknown */

#define RT_ACTOR_NAME_MAX 128

/* 1 when name may name an actor: 1 to RT_ACTOR_NAME_MAX bytes, no control character, no
 * '/'. */
int rt_actor_name_valid(const char *name);

typedef struct rt_actor_spec {
    const char *class_name; /* borrowed */
    json_t *args;           /* borrowed JSON array or NULL */
    json_t *kwargs;         /* borrowed JSON object or NULL */
    const char *name;       /* borrowed, optional: unique per server */
    bool get_if_exists;     /* with name: return the existing actor instead of RT_EEXIST */
    int max_restarts;       /* >= 0 */
    long max_pending_calls; /* -1: unlimited */
    const char *actor_id;   /* borrowed, optional: the id to give the actor (made with
                               rt_ref_generate beforehand, e.g. to claim its name
                               cluster-wide first); NULL: a new one */
    /* Cluster mode (runtime/cluster_actors.h): */
    bool fenced;            /* runs calls only while the hooks' lease_held says so */
    bool restarting;        /* a restart after its node died: starts RESTARTING */
    unsigned restarts;      /* restarts already counted (carried over from the dead node) */
    json_t *resume_state;   /* borrowed, optional: an asynchronous class's state to resume
                               from; its constructor is then not called */
} rt_actor_spec;

typedef struct rt_actor_info {
    char actor_id[RT_REF_SIZE];
    char class_name[RT_ACTOR_NAME_MAX + 1];
    char name[RT_ACTOR_NAME_MAX + 1]; /* "" when unnamed */
    rt_actor_state state;
    size_t calls_pending;
    unsigned long long calls_done;
    unsigned restarts;
    int max_restarts;
    long max_pending_calls;
    double created_at;
    rt_error *death_cause; /* DEAD: new reference (may be NULL when killed), else NULL */
    uint64_t seq;
} rt_actor_info;

void rt_actor_info_release(rt_actor_info *info);

typedef struct rt_actors_config {
    size_t max_kept_dead; /* dead actor records remembered (older ones answer not found) */
    /* Called when a named actor dies or is killed, once, with no lock held, on the thread
     * that ended it (cluster mode frees the name in Redis). Strings borrowed for the call.
     * May be NULL. */
    void (*name_freed)(const char *name, const char *actor_id, void *arg);
    void *name_freed_arg;
    /* Cluster mode's hooks for fenced actors (spec.fenced), each with hooks_arg; any may
     * be NULL. ended: the actor died or was killed here (not at server stop, not when
     * forgotten), once, with no lock held. restarted: a fatal method error rebuilt its
     * state here; restarts is the new count. lease_held: whether this node may run its
     * fenced actors' calls now (a call that finds it false fails with ActorDied). */
    void (*ended)(const char *actor_id, void *arg);
    void (*restarted)(const char *actor_id, unsigned restarts, void *arg);
    bool (*lease_held)(void *arg);
    void *hooks_arg;
} rt_actors_config;

/* The actor system uses store and scheduler (borrowed; they must outlive it). */
rt_actors *rt_actors_new(rt_store *store, rt_scheduler *scheduler,
                         const rt_actors_config *config);
/* Frees every actor. The scheduler must have been stopped first. NULL accepted. */
void rt_actors_free(rt_actors *actors);

/* Registers a class (borrowed: it must outlive the actor system). RT_EEXIST, RT_EINVAL. */
rt_status rt_actors_add_class(rt_actors *actors, const rt_actor_class *cls);
/* Registers a class the actor system owns (remote ones; cls is stolen on RT_OK):
 * release(cls) runs when its last reference goes (see rt_actor_class_hold). A REMOTE class
 * may replace a REMOTE class of the same name (*replaced); the old one is unlisted and
 * freed once no actor uses it. RT_EEXIST for other kinds. On failure the caller still owns
 * cls. */
rt_status rt_actors_put_owned_class(rt_actors *actors, rt_actor_class *cls,
                                    void (*release)(rt_actor_class *cls), bool *replaced);
/* Unlists a REMOTE class (freed once no actor uses it). RT_OK, RT_ENOTFOUND, RT_ESTATE. */
rt_status rt_actors_remove_class(rt_actors *actors, const char *name);
/* A class by name, or NULL. Borrowed: an owned (remote) class may be replaced and freed by
 * another thread at any time, so use this only to test that a name exists, or for static
 * and module classes. */
const rt_actor_class *rt_actors_find_class(rt_actors *actors, const char *name);
/* A class by name with a reference taken (rt_actor_class_drop it), or NULL. */
const rt_actor_class *rt_actors_get_class(rt_actors *actors, const char *name);
/* Visits every class in name order. */
void rt_actors_each_class(rt_actors *actors,
                          void (*visit)(const rt_actor_class *cls, void *arg), void *arg);
/* Registers Counter, KV, Queue and Accumulator (runtime/builtin_classes.c). */
rt_status rt_builtin_classes_register(rt_actors *actors);

/* Creates an actor; its constructor runs on the worker pool. Returns RT_OK (info filled;
 * *created is false when get_if_exists returned an existing actor), RT_ENOTFOUND (unknown
 * class), RT_EEXIST (name taken), RT_EINVAL (bad name, options or ref argument). */
rt_status rt_actor_create(rt_actors *actors, const rt_actor_spec *spec, rt_actor_info *info,
                          bool *created, char *err, size_t err_size);

/* Promises an actor id before the actor is made (cluster mode claims the name for it in
 * Redis first): the new id is written to id; until rt_actor_create with spec->actor_id = id
 * makes it (atomically replacing the promise) or rt_actor_unreserve drops it, rt_actor_get
 * answers a PENDING_CREATION record made from spec for it. RT_OK or RT_ENOMEM. */
rt_status rt_actor_reserve(rt_actors *actors, const rt_actor_spec *spec, char id[RT_REF_SIZE]);
/* Drops a promise (no-op once the actor is made, or for an unknown id). */
void rt_actor_unreserve(rt_actors *actors, const char *actor_id);

/* Calls a method: the result ref is written to ref_out and resolves when the call has run.
 * Returns RT_OK, RT_ENOTFOUND (unknown actor; *err says), RT_EINVAL (unknown method or bad
 * argument), RT_ESTATE (the actor is DEAD), RT_ELIMIT (max_pending_calls reached). */
rt_status rt_actor_call(rt_actors *actors, const char *actor_id, const char *method,
                        json_t *args, json_t *kwargs, char ref_out[RT_REF_SIZE], char *err,
                        size_t err_size);

/* As rt_actor_call; with inline_ok (the caller waits for the result anyway), a call to an
 * idle actor of a quick class whose arguments are ready runs right away on the calling
 * thread instead of going through a worker. Order is kept: it runs only when nothing is
 * ahead of it in the mailbox. request_id and traceparent (borrowed, may be NULL) are passed
 * on to a remote class's endpoint. result_ttl: as rt_task_spec's (0: the store's default,
 * < 0: none). */
rt_status rt_actor_call_opts(rt_actors *actors, const char *actor_id, const char *method,
                             json_t *args, json_t *kwargs, bool inline_ok,
                             const char *request_id, const char *traceparent,
                             double result_ttl, char ref_out[RT_REF_SIZE], char *err,
                             size_t err_size);

/* Kills an actor (as ray.kill): queued calls resolve to ActorDied, a running call finishes,
 * the name is freed. RT_OK (also when it was already dead) or RT_ENOTFOUND. */
rt_status rt_actor_kill(rt_actors *actors, const char *actor_id);

/* Takes an actor off this node because it lives on elsewhere now (cluster mode: another
 * node restarted it while this one was taken for dead). Calls that have not run resolve to
 * ActorDied with reason; a running call finishes. Its record goes (its id answers not found
 * here, and its name is unbound here only: the name stays with the actor). No hook is
 * called. RT_OK or RT_ENOTFOUND. */
rt_status rt_actor_forget(rt_actors *actors, const char *actor_id, const char *reason);

/* Kills every actor that is not dead yet (server shutdown), as rt_actor_kill does: calls
 * that have not run resolve to ActorDied, a running call finishes (a remote one completes
 * when its HTTP call does, or when rt_remote_stop cancels it). Returns how many. */
size_t rt_actors_stop(rt_actors *actors);

/* Info by id or by name. RT_OK or RT_ENOTFOUND. */
rt_status rt_actor_get(rt_actors *actors, const char *actor_id, rt_actor_info *info);
rt_status rt_actor_get_by_name(rt_actors *actors, const char *name, rt_actor_info *info);

/* Lists actors in creation order after cursor after_seq, optionally in one state (state < 0:
 * all) and of one class (NULL: all). Returns the count written; *next_seq as for tasks. A
 * page costs what it holds (see rt_task_list): a class filter looks at a few thousand
 * actors per page at most, so that page may hold fewer than limit (even none) with a
 * cursor to go on from. */
size_t rt_actor_list(rt_actors *actors, uint64_t after_seq, int state, const char *class_name,
                     size_t limit, rt_actor_info *infos, uint64_t *next_seq);

/* For tests: how many records listings have looked at so far (see rt_record_table). */
uint64_t rt__actors_list_visits(rt_actors *actors);

typedef struct rt_actors_stats {
    size_t by_state[RT_ACTOR_STATE_COUNT];
    unsigned long long calls, calls_done, restarts;
} rt_actors_stats;

void rt_actors_get_stats(rt_actors *actors, rt_actors_stats *out);

#endif
