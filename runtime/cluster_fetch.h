/* rt_fetch (cluster mode): stand-ins for objects other nodes own. A request or a task that
 * needs a foreign ref's value calls rt_fetch_want: the node puts a pending stand-in under
 * that ref in its own store (rt_store_put_standin) and asks the owner for it with a
 * long-poll GET over the peer client. The answer resolves the stand-in: with the value
 * (it becomes a secondary copy), with the owner's error and its whole cause chain, or with
 * ObjectLost. Everything that waits on a local pending object (parked requests, task and
 * actor dependencies) therefore waits on foreign objects unchanged, and no thread is held.
 *
 * - A poll that ends with the object still pending is asked again while someone watches
 *   or pins the stand-in; one that nobody wanted for a whole round is dropped.
 * - A poll that fails (the owner is unreachable) is tried again every half second; once
 *   the membership says the owner is dead, the stand-in fails with ObjectLost,
 *   lost_reason "owner_died" (Ray's OwnerDiedError), within the membership's 3-4 s.
 *
 * Thread-safety: every function may be called from any thread. */
#ifndef RAYD_RUNTIME_CLUSTER_FETCH_H
#define RAYD_RUNTIME_CLUSTER_FETCH_H

#include "runtime/cluster.h"
#include "runtime/cluster_peer.h"
#include "runtime/object_store.h"

#define RT_FETCH_POLL_SECONDS 10.0 /* one long-poll's timeout at the owner */

typedef struct rt_fetch rt_fetch;

/* Starts the fetcher (and its retry thread). store, cluster and peer are borrowed and must
 * outlive it; token (copied; may be NULL) is the cluster token peer requests carry.
 * NULL when out of memory or threads. */
rt_fetch *rt_fetch_new(rt_store *store, rt_cluster *cluster, rt_peer *peer,
                       const char *token);

/* Stops the retry thread and cancels the polls; stand-ins still pending stay pending.
 * Call after the HTTP server stopped and before the peer client is freed. NULL accepted. */
void rt_fetch_free(rt_fetch *fetch);

/* Makes sure ref can be waited on here. Returns who owns it:
 *   RT_OWNER_SELF     this node: nothing done;
 *   RT_OWNER_UNKNOWN  no node has its tag: nothing done (the caller answers 404);
 *   RT_OWNER_DEAD     a stand-in failed with ObjectLost owner_died is in the store
 *                     (a copy held before is dropped: a dead owner's objects are lost);
 *   RT_OWNER_ALIVE    the store holds ref: a copy, or a stand-in being fetched.
 * tag receives the owner's tag. */
rt_owner rt_fetch_want(rt_fetch *fetch, const char *ref, char tag[RT_NODE_TAG_SIZE]);

/* Spillback: resolves this node's pending object local_ref with whatever remote_ref (a
 * foreign ref, the result of a task another node runs) resolves to: its value, its error
 * (the same chain), or ObjectLost when its owner dies. Returns RT_OK, RT_ENOMEM, or
 * RT_EINVAL when remote_ref is not another live node's. */
rt_status rt_fetch_alias(rt_fetch *fetch, const char *local_ref, const char *remote_ref);

/* What the owner of a spilled-back task does when the node running it dies before the
 * result arrives: run it again (rt_fetch_alias_rerun). Returns true when it took local_ref
 * over (something else will resolve it); false leaves the owner-died error on it. Called
 * once, on any thread, no lock held; the alias frees arg after it (with arg_free). */
typedef bool (*rt_fetch_rerun_fn)(void *arg, const char *local_ref);

/* As rt_fetch_alias, but when remote_ref's owner dies, rerun(arg, local_ref) is asked to
 * run the task again instead of failing local_ref. arg is the alias's from the call on,
 * whatever it returns (arg_free, if not NULL, frees it). */
rt_status rt_fetch_alias_rerun(rt_fetch *fetch, const char *local_ref, const char *remote_ref,
                               rt_fetch_rerun_fn rerun, void *arg, void (*arg_free)(void *));

/* Resolves local_ref with whatever other_ref, an object of this node, resolves to (a
 * rerun's result). RT_OK or RT_ENOMEM. */
rt_status rt_fetch_alias_local(rt_fetch *fetch, const char *local_ref, const char *other_ref);

/* The ObjectLost error for a ref whose owner (tag) died: message and the fields ref,
 * lost_reason "owner_died", owner, owner_died true. New reference; NULL out of memory. */
rt_error *rt_fetch_owner_died_error(const char *ref, const char *tag);

/* Rebuilds a stored error from a problem+json body (what GET of an errored object
 * answers): title gives the kind, detail the message, cause the cause, every other member
 * but type, status and instance a field. New reference; NULL when problem is not such a
 * body or out of memory. */
rt_error *rt_fetch_error_from_problem(json_t *problem);

/* Stand-ins being fetched now. */
size_t rt_fetch_active(rt_fetch *fetch);

#endif
