/* Actors across the nodes of a cluster (api/actors_cluster.c) and what api/actors.c shares
 * with it. Without cluster mode none of the cluster functions is called.
 *
 * An actor lives on one node, its owner, named by the actor id's tag. Requests about it
 * through any other node are relayed to the owner (api/forward.h), so the owner's mailbox
 * keeps the order it accepted calls in, whichever node they came through. Names are global,
 * held in Redis (runtime/cluster_names.h). */
#ifndef RAYD_API_ACTORS_CLUSTER_H
#define RAYD_API_ACTORS_CLUSTER_H

#include <stdbool.h>

#include "api/request.h"
#include "runtime/actor.h"

/* api/actors.c: the JSON of an actor record (new reference). */
json_t *api_actor_info_json(const rt_actor_info *info);
/* api/actors.c: answers a creation as a node alone does (201 or 200 with Location; the
 * runtime's errors as problems), giving a new actor that is not detached to the request's
 * session. info is borrowed. */
enum MHD_Result api_actors_reply_created(api_request *req, rt_status st, rt_actor_info *info,
                                         bool created, bool detached, const char *err,
                                         const char *name);
/* api/actors.c: answers status with an actor record body (stolen) and its Location. */
enum MHD_Result api_actors_reply_info(api_request *req, unsigned status, json_t *body);

typedef enum api_actor_request { API_ACTOR_GET, API_ACTOR_CALL, API_ACTOR_KILL } api_actor_request;

/* When actor id lives on another node: answers (its node died or is unknown) or relays
 * the request there, sets *result and returns true; false when it is this node's to
 * answer. An actor whose node died is looked up in the directory (runtime/cluster_actors.h:
 * restarted elsewhere, or dead), and the handler is called again: call this first in the
 * handler, before looking at handler_state (api_actor_locating says it is that call). */
bool api_actor_foreign(api_request *req, const char *id, api_actor_request what,
                       enum MHD_Result *result);
bool api_actor_locating(const api_request *req);

/* Cluster mode: when this node holds restartable actor id but not its lease (its heartbeat
 * could not be renewed in time, so another node may have restarted the actor), answers 503
 * and returns true. */
bool api_actor_lease_lapsed(api_request *req, const char *id, enum MHD_Result *result);

/* POST /v1/actors in cluster mode: placement (options.node, spillback, else here), and a
 * name claimed in Redis before the actor is made. Called again on every resume. */
enum MHD_Result api_actors_create_cluster(api_request *req);

/* GET /v1/actors/by-name/{name} when this node has no live actor of that name: asks Redis
 * who holds it and that node for its record. Called again on every resume. */
enum MHD_Result api_actors_by_name_cluster(api_request *req);

/* After killing named actor id here: frees name in Redis, then answers 204 (when the
 * handler is called again with handler_state set). */
enum MHD_Result api_actors_release_name(api_request *req, const char *name, const char *id);

#endif
