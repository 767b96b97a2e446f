/* Registrations across the cluster (cluster mode): remote functions and remote actor
 * classes registered or removed through any node take effect on every node.
 *
 * - Redis holds them: hash `registrations` (field "function:<name>" or "class:<name>" ->
 *   the spec as JSON) and `registrations:version`, incremented by every change, in the same
 *   Lua script as the change.
 * - The node that takes a PUT or DELETE stores it in Redis first (503 ClusterUnavailable
 *   while Redis does not answer), applies it itself, then tells every other live node
 *   (POST /v1/cluster/registrations/sync, a peer route: the node reloads the whole set from
 *   Redis) and answers once they have answered (each bounded), so a call through any node
 *   after the answer finds the function.
 * - Every node also reads the version with its heartbeat (each second) and reloads the set
 *   when it changed: a node that joins later, or missed a sync, catches up within a second.
 * - Each node checks every URL against its own RAYD_REMOTE_ALLOW: a registration outside
 *   it is not taken there (a warn line says so).
 * Thread-safety: any thread; reloading runs on the cluster's command thread. */
#ifndef RAYD_API_REGISTRATIONS_H
#define RAYD_API_REGISTRATIONS_H

#include <jansson.h>

#include "api/request.h"

/* In a PUT or DELETE handler, once the change is validated and before it is applied here:
 * field is "function:<name>" or "class:<name>", spec the registration (NULL: a removal).
 * Returns 1 when the handler must return MHD_YES now (the change is being stored in Redis,
 * or an error was answered), 0 to apply it here now. */
int api_registration_store(api_request *req, const char *field, json_t *spec);

/* Whether a PUT replaced a registration (200) rather than made one (201): as Redis said in
 * cluster mode (a node's reload may have taken it here first), else `here`. */
bool api_registration_replaced(const api_request *req, bool here);

/* Answers a registration change (status, body or NULL) once the other live nodes have
 * reloaded (cluster mode), or at once. Call api_registration_answered first in the
 * handler: when it returns true, return api_registration_answer(req). */
enum MHD_Result api_registration_reply(api_request *req, unsigned status, json_t *body);
bool api_registration_answered(const api_request *req);
enum MHD_Result api_registration_answer(api_request *req);

/* POST /v1/cluster/registrations/sync (peer route): reloads every registration from Redis;
 * 204 once done. */
enum MHD_Result api_registrations_sync(api_request *req);

/* The heartbeat's hook: reloads the registrations when their version in Redis changed.
 * arg: the api_context. */
void api_registrations_tick(void *arg);

#endif
