/* Waiting for Redis without a thread (cluster mode): a handler queues one command on the
 * cluster's command thread (runtime/cluster_command.h) and returns; the connection is
 * suspended until the answer is in, then the route's handler is called again and reads it
 * with api_redis_answer. As forwarding does for other nodes (api/forward.h), and for the
 * same reason: an HTTP thread waiting on Redis would be a thread no other client gets.
 *
 * Thread-safety: as requests; the command thread only fills the answer, runs `then` and
 * resumes the connection. */
#ifndef RAYD_API_REDIS_CALL_H
#define RAYD_API_REDIS_CALL_H

#include <stdbool.h>

#include "api/request.h"
#include "runtime/cluster_command.h"

/* Queues a command: `queue(cluster, done, arg)` calls one of rt_cluster_name_* (or
 * rt_cluster_command) with the done and arg it is given. then (may be NULL) runs on the
 * command thread with the answer before the request is resumed (the request stays
 * suspended meanwhile, so it may use req and its handler state). Returns MHD_YES, after
 * suspending, or answers 503 ClusterUnavailable itself when the command cannot be queued. */
typedef int (*api_redis_queue_fn)(rt_cluster *cluster, rt_redis_done_fn done, void *arg,
                                  void *queue_arg);
typedef void (*api_redis_then_fn)(api_request *req, const rt_redis_answer *answer);
enum MHD_Result api_redis_call(api_request *req, api_redis_queue_fn queue, void *queue_arg,
                               api_redis_then_fn then);

/* The answer of the request's last command, once in (NULL before, or without one). Its
 * strings live as long as the request or until the next api_redis_call. */
const rt_redis_answer *api_redis_answer(const api_request *req);

/* Frees the request's command state (the server calls it when the request ends; the
 * command has always ended by then, as the request was suspended until it did). */
void api_redis_release(api_request *req);

/* Answers 503 ClusterUnavailable, Retry-After 1, saying Redis did not answer (why). */
enum MHD_Result api_redis_unavailable(api_request *req, const char *why);

#endif
