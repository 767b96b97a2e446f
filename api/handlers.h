/* Every route handler, one file per resource: objects.c, waiting.c (get and wait),
 * tasks.c, actors.c, functions.c, system.c. Each answers one request (see request.h);
 * request bodies are decoded by decode.c. */
#ifndef RAYD_API_HANDLERS_H
#define RAYD_API_HANDLERS_H

#include "api/request.h"

/* api/system.c */
enum MHD_Result api_system_healthz(api_request *req);
enum MHD_Result api_system_readyz(api_request *req);
enum MHD_Result api_system_metrics(api_request *req);
enum MHD_Result api_system_status(api_request *req);
enum MHD_Result api_system_openapi_yaml(api_request *req);
enum MHD_Result api_system_openapi_json(api_request *req);
enum MHD_Result api_system_problems(api_request *req);
enum MHD_Result api_system_problem(api_request *req);
enum MHD_Result api_dashboard_get(api_request *req);

/* api/objects_free.c: POST /v1/objects/free */
enum MHD_Result api_objects_free(api_request *req);
/* api/objects.c */
enum MHD_Result api_objects_put(api_request *req);
enum MHD_Result api_objects_put_batch(api_request *req);
enum MHD_Result api_objects_list(api_request *req);
/* GET /v1/cluster/list/objects: a peer route; this node's part of a merged listing. */
enum MHD_Result api_objects_list_peer(api_request *req);
enum MHD_Result api_objects_get(api_request *req); /* GET and HEAD */
enum MHD_Result api_objects_delete(api_request *req);
enum MHD_Result api_objects_meta(api_request *req);
/* Answers with a resolved object (READY, ERROR or LOST) as GET /v1/objects/{ref} does;
 * used by Prefer: wait answers too. view is borrowed. */
enum MHD_Result api_objects_reply_resolved(api_request *req, const rt_object_view *view);

/* api/waiting.c */
enum MHD_Result api_objects_get_batch(api_request *req);
enum MHD_Result api_objects_wait(api_request *req);
/* One entry of a get_batch answer for ref (new reference, NULL when out of memory). */
json_t *api_objects_entry(api_request *req, const char *ref);

/* api/tasks.c */
enum MHD_Result api_tasks_submit(api_request *req);
enum MHD_Result api_tasks_submit_batch(api_request *req);
enum MHD_Result api_tasks_get(api_request *req);
enum MHD_Result api_tasks_list(api_request *req);
/* GET /v1/cluster/list/tasks: a peer route; this node's part of a merged listing. */
enum MHD_Result api_tasks_list_peer(api_request *req);
enum MHD_Result api_tasks_cancel(api_request *req);

/* api/sessions.c */
enum MHD_Result api_sessions_open(api_request *req);
enum MHD_Result api_sessions_get(api_request *req);
enum MHD_Result api_sessions_close(api_request *req);
/* Reads the Rayd-Session header (when sessions are on): renews that session's lease and
 * notes it in req->session. 0 to go on (also without the header), or -1 after answering
 * 400 (not an id) or 404 SessionNotFound. */
int api_session_begin(api_request *req);
/* Give what a request made to its session (no-ops without one). 0, or -1 when the session
 * closed meanwhile: what was made is already cleaned up; answer with
 * api_session_reply_closed then. */
int api_session_adopt_objects(api_request *req, char (*refs)[RT_REF_SIZE], size_t n);
int api_session_adopt_task(api_request *req, const char *task_id,
                           char (*refs)[RT_REF_SIZE], size_t n);
int api_session_adopt_actor(api_request *req, const char *actor_id);
enum MHD_Result api_session_reply_closed(api_request *req);

/* api/actors.c */
enum MHD_Result api_actors_create(api_request *req);
enum MHD_Result api_actors_list(api_request *req);
enum MHD_Result api_actors_get(api_request *req);
enum MHD_Result api_actors_get_by_name(api_request *req);
enum MHD_Result api_actors_call(api_request *req);
enum MHD_Result api_actors_kill(api_request *req);
enum MHD_Result api_actor_classes_list(api_request *req);
enum MHD_Result api_actor_classes_put(api_request *req);
enum MHD_Result api_actor_classes_delete(api_request *req);
/* GET /v1/cluster/list/actors: a peer route; this node's part of a merged listing. */
enum MHD_Result api_actors_list_peer(api_request *req);

/* api/cluster.c (cluster mode) */
/* DELETE /v1/cluster/copies/{ref}: a peer route; drops this node's copy of an object. */
enum MHD_Result api_cluster_copy_delete(api_request *req);
/* The "cluster" member of /v1/status (new reference). ctx->cluster must be set. */
json_t *api_cluster_status(const api_context *ctx);
/* Cluster mode: gives every ref argument that another node owns a stand-in here
 * (runtime/cluster_fetch.h), so that the work waits on it as on a local object, resolved
 * where it runs. Nothing without cluster mode. args and kwargs borrowed (NULL accepted). */
void api_cluster_want_args(const api_context *ctx, json_t *args, json_t *kwargs);
/* Spillback: whether new work submitted here (a task, an actor) should go to another node
 * because more than RAYD_SPILLBACK_QUEUED jobs wait for a worker here and a live node has
 * fewer (by its last heartbeat); copies the least loaded such node's URL into url. Never for
 * a request another node forwarded. */
bool api_cluster_spill_target(api_request *req, char url[RT_CLUSTER_URL_MAX],
                              char tag[RT_NODE_TAG_SIZE]);
/* The same for work that needs a module function (is_class false) or class called name:
 * when a module loaded here provides it, only a node whose modules provide it too is a
 * target (C modules are per node). */
bool api_cluster_spill_target_for(api_request *req, const char *name, bool is_class,
                                  char url[RT_CLUSTER_URL_MAX], char tag[RT_NODE_TAG_SIZE]);
/* Cluster mode, for a function (is_class false) or actor class called name that this node
 * does not know: when a live node's modules provide it, answers 409 ModuleNotLoaded naming
 * the function, the module and the nodes that have it (detail prefixed by prefix, "" for
 * none) and returns true; false (nothing answered) when no node has it, or not in cluster
 * mode. */
bool api_cluster_module_missing(api_request *req, const char *name, bool is_class,
                                const char *prefix, enum MHD_Result *result);

/* api/functions.c */
enum MHD_Result api_functions_list(api_request *req);
enum MHD_Result api_functions_get(api_request *req);
enum MHD_Result api_functions_put(api_request *req);
enum MHD_Result api_functions_delete(api_request *req);
/* Checks the url member (borrowed) of a remote function's or class's registration: an
 * http(s) URL (else 400), inside the allow-list (else 403), and one that can be called (else
 * 400: a space, a CR/LF, no host... is refused now rather than failing every call later).
 * On failure answers and returns -1. */
int api_functions_check_url(api_request *req, json_t *url, const char *allow);

#endif
