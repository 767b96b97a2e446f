/* Cluster mode: a wait (POST /v1/wait) or a batch get (POST /v1/objects/get) through a node
 * that does not own every ref asks the refs' owners for their states before it looks at its
 * own store, so that it answers from the owners' actual states, as one node would.
 *
 * Why: a foreign ref's stand-in (runtime/cluster_fetch.h) stays pending until its owner's
 * first answer, a long-poll that for a pending object comes only when it resolves. Looking
 * only at stand-ins, `timeout: 0` would call a ready foreign ref not ready, and refs
 * resolving on their own nodes would be counted in the order their answers arrived here,
 * not in input order.
 *
 * How, with no HTTP or worker thread held (fan-outs over the peer client, api/forward.h):
 * - every ref owned by one other live node (the case of a batch submitted on one node and
 *   waited for through another): the client's request is sent to that owner as it is, and
 *   its answer is the answer. If the owner does not answer, the node falls back to
 *   stand-ins (so a wait parked here for a node that dies wakes with ObjectLost).
 * - otherwise: one request per owner of refs not already resolved here, with `timeout: 0`
 *   (a wait with num_returns = its refs, or a batch get), all at once; the answers say
 *   which refs are resolved (and, for a get, their entries). The handler counts those as
 *   resolved and waits on stand-ins only for the rest.
 * A request that arrived from another node (X-Rayd-Forwarded) never asks on. */
#ifndef RAYD_API_WAIT_OWNERS_H
#define RAYD_API_WAIT_OWNERS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "api/request.h"

typedef struct api_wait_owners api_wait_owners;

/* One step, called by the handler on every round before it looks at its store; refs (n)
 * are the request's, is_wait says which route. *owners is NULL on the first call; the state
 * is made then and kept there (free it with api_wait_owners_free). Returns true when the
 * request was answered or suspended (the handler returns *result at once), false when the
 * handler goes on with its store and api_wait_owners_resolved/_entry. */
bool api_wait_owners_step(api_request *req, api_wait_owners **owners, const char *const *refs,
                          size_t n, bool is_wait, enum MHD_Result *result);

/* Whether every ref names one other live node as its owner, so that the whole request
 * goes there (and that node checks the refs exist). Cheap: no lock or store look per ref. */
bool api_wait_owners_one_other(const api_request *req, const char *const *refs, size_t n);

/* Whether the owner of ref i said it was resolved (ready, failed or lost). NULL owners:
 * false. */
bool api_wait_owners_resolved(const api_wait_owners *owners, size_t i);

/* A batch get: the owner's entry for ref i ({"ref", "state", ...}, as api_objects_entry
 * makes), borrowed; NULL when the owner was not asked or did not answer. */
json_t *api_wait_owners_entry(const api_wait_owners *owners, size_t i);

void api_wait_owners_free(api_wait_owners *owners);

#endif
