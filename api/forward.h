/* Forwarding (cluster mode): answering a request by asking the node that can answer it,
 * over the peer client (runtime/cluster_peer.h), without holding an HTTP thread.
 *
 * Two shapes:
 * - A relay sends the request on to one node (method, path and query, the headers that
 *   matter, the body if any, the cluster token) and answers the client with that node's
 *   answer: status, the headers a client needs, and the body. The connection is
 *   suspended until the answer is in; a big body (over API_FORWARD_STREAM_MIN bytes) is
 *   sent on as it arrives, a small one when it is complete. A relayed object that its
 *   owner marks cacheable is kept as a secondary copy (the same buffer the answer is sent
 *   from: the bytes are held once), up to API_FORWARD_COPY_MAX bytes; a bigger body
 *   passes through a bounded window and is not kept.
 * - A fan-out sends one small request to several nodes and suspends until every one has
 *   answered or failed; then the route's handler is called again and finishes.
 *
 * The server (api/server.c) calls api_forward_answer when a relayed request is resumed
 * and api_forward_release when a request ends. Thread-safety: as requests; the peer's
 * I/O thread only resumes connections and stores copies. */
#ifndef RAYD_API_FORWARD_H
#define RAYD_API_FORWARD_H

#include <stdbool.h>

#include "api/request.h"
#include "runtime/cluster_peer.h"

#define API_FORWARD_STREAM_MIN (256 * 1024) /* bodies this big are sent on as they arrive */
/* A relayed object up to this size is collected whole and may be kept as a copy; a bigger
 * one passes through the peer client's window (RT_PEER_WINDOW) and is not kept: its copy
 * would cost its whole size in fresh memory to spare a later read one hop, which for an
 * object this big runs at the owner's own speed anyway. */
#define API_FORWARD_COPY_MAX ((size_t)64 << 20)
#define API_FORWARDED_HEADER "X-Rayd-Forwarded" /* on peer requests: the sender's tag */
#define API_CACHEABLE_HEADER "X-Rayd-Cacheable" /* on an owner's answer: copies may be kept */

typedef struct api_forward api_forward;

/* Relays req to base_url + path_and_query (already percent-encoded) with req's method.
 * owner_tag names the node asked; ref (may be NULL) the object the request is about, so
 * that a node found dead answers 410 for it. With API_FORWARD_CACHE in flags, a whole 200
 * answer that the owner marks cacheable is kept as a secondary copy of ref. body (len
 * bytes, copied) is sent when not NULL. Suspends the connection and returns MHD_YES; the
 * handler returns right after. */
#define API_FORWARD_CACHE 1u
/* With API_FORWARD_ACTOR_CALL, a call to an actor: when the node does not answer, the
 * client gets 424 ActorDied with may_have_run (Ray's ActorUnavailableError: the call may
 * or may not have run), not a 503 inviting a blind retry. */
#define API_FORWARD_ACTOR_CALL 2u
enum MHD_Result api_forward_relay(api_request *req, const char *base_url,
                                  const char *path_and_query, const char *owner_tag,
                                  const char *ref, unsigned flags, const void *body,
                                  size_t len);

/* Sends `method path` to each of the n base URLs and suspends until all have ended (any
 * answer or failure, each bounded by timeout seconds). The route's handler is then called
 * again: api_forward_fanout_done says it is that second call. Returns MHD_YES, or answers
 * 503 itself when out of memory. With n == 0 it does not suspend and returns MHD_YES after
 * marking the fan-out done: the caller just calls its handler's finish. */
enum MHD_Result api_forward_fanout(api_request *req, const char *const *base_urls, size_t n,
                                   const char *method, const char *path, double timeout);

/* The same with a path of its own for each node (paths[i] for base_urls[i]). */
enum MHD_Result api_forward_fanout_each(api_request *req, const char *const *base_urls,
                                        const char *const *paths, size_t n, const char *method,
                                        double timeout);

/* The same with POST and a JSON body of its own for each node (bodies[i], lens[i] bytes,
 * copied, for base_urls[i] + paths[i]): e.g. a wait asking each owner about its refs. */
enum MHD_Result api_forward_fanout_posts(api_request *req, const char *const *base_urls,
                                         const char *const *paths, const char *const *bodies,
                                         const size_t *lens, size_t n, double timeout);

/* A fan-out of one with a JSON body (json_body: len bytes, copied; may be NULL):
 * sends `method path` to base_url and suspends until it has answered or failed; then the
 * route's handler is called again (api_forward_fanout_done) and reads the answer with
 * api_forward_fanout_answer(req, 0). Returns as api_forward_fanout. */
enum MHD_Result api_forward_call(api_request *req, const char *base_url, const char *method,
                                 const char *path, const char *json_body, size_t len,
                                 double timeout);

/* After the fan-out is done: the answer of call i (borrowed, lives as long as req's
 * forward), or NULL when that call could not start. Its outcome says whether a whole answer
 * came; api_forward_fanout_body gives how many bytes of answer->body are there. */
struct rt_peer_answer;
const struct rt_peer_answer *api_forward_fanout_answer(const api_request *req, size_t i);
size_t api_forward_fanout_body(const api_request *req, size_t i);

/* Whether req has a relay whose answer is to be sent now (the server calls
 * api_forward_answer instead of the handler then). */
bool api_forward_relaying(const api_request *req);

/* Whether req's fan-out has ended (every call answered or failed). */
bool api_forward_fanout_done(const api_request *req);

/* Answers req from its relay. */
enum MHD_Result api_forward_answer(api_request *req);

/* Answers 410 ObjectLost for ref, owned by node tag, which died: detail and the fields
 * lost_reason "owner_died", owner (the tag) and owner_died true. */
enum MHD_Result api_forward_reply_owner_died(api_request *req, const char *ref, const char *tag);

/* Cluster mode: whether Redis is unreachable now, so that what only Redis can say (which
 * nodes there are) is unknown here. Such answers are 503 ClusterUnavailable to retry. */
bool api_cluster_unavailable(const api_request *req);

/* Answers for ref whose owner tag no node known here has: 404 NotFound with `owner`, or,
 * while Redis is unreachable (a node may have joined unseen), 503 ClusterUnavailable with
 * Retry-After. */
enum MHD_Result api_forward_reply_unknown_owner(api_request *req, const char *ref,
                                                const char *tag);

/* Ends whatever forwarding req has (cancelling calls still running). NULL forward fine. */
void api_forward_release(api_request *req);

/* The headers every peer request carries: the cluster bearer token (when there is one),
 * X-Rayd-Forwarded with this node's tag, X-Request-Id, and traceparent when the request
 * has one. Writes up to max lines into lines (storage in buf, buf_size bytes) and returns
 * how many. */
size_t api_forward_peer_headers(const api_request *req, const char **lines, size_t max,
                                char *buf, size_t buf_size);

#endif
