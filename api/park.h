/* Parking: a request that must wait for objects suspends its connection instead of holding
 * an HTTP thread, and is resumed by the store (a watcher fires) or by its deadline.
 *
 * A handler that cannot answer yet calls api_park_on_refs() and returns its result. MHD then
 * holds the connection suspended. When enough of the refs resolve, or the deadline passes,
 * or the server drains, the connection is resumed and the handler is called again; it
 * recomputes its answer from the store and either answers or parks again.
 *
 * DESIGN
 * - One deadline thread keeps a min-heap of parked requests by deadline and resumes those
 *   whose time has come. Store watchers resume from whichever thread resolved the object.
 * - A park is reference-counted: one reference for the request, one per registered watcher,
 *   one while in the deadline heap. So a watcher firing on another thread while the request
 *   finishes never touches freed memory.
 * - Waking is once per round: an atomic flag decides who calls MHD_resume_connection, which
 *   libmicrohttpd allows from any thread. The connection is suspended before any watcher is
 *   registered, so a resume can never come before its suspend.
 * - Suspended connections are invisible to MHD's timeouts and disconnect detection, so the
 *   deadline thread watches them itself: each parked client's socket is in its epoll set
 *   for EPOLLRDHUP (hang-up and error come with it). A client that closes or resets its
 *   connection is woken at once; its request answers with what there is (as at its
 *   deadline) and libmicrohttpd, failing to send, closes the connection. A client that
 *   only shuts down its sending side is taken as gone too, as nginx does (HTTP/1.1
 *   clients do not half-close while waiting for an answer). So a vanished
 *   client frees its parking slot and its descriptor within milliseconds, not at its
 *   deadline. The socket leaves the set in api_park_finish, before libmicrohttpd can close
 *   it; the park's poll reference is dropped by the deadline thread once no event of its
 *   last epoll_wait can still name it.
 * - Stopping: MHD_stop_daemon aborts the process if a connection is still suspended, and
 *   a resumed one it closes unanswered. A request is counted (`live`) from its first park
 *   until it completes; api_parking_close refuses new parks, wakes the rest and waits on a
 *   condition variable for that count to reach zero, instead of sleeping and hoping. */
#ifndef RAYD_API_PARK_H
#define RAYD_API_PARK_H

#include <stdbool.h>
#include <stddef.h>

#include "api/request.h"

typedef struct api_parking api_parking;

/* Starts the deadline thread. Returns NULL on failure. */
api_parking *api_parking_new(void);
/* Stops the deadline thread. Every parked request must have been woken and finished
 * (api_parking_wake_all, then let MHD finish them). NULL accepted. The parking a request
 * uses is req->ctx->parking. */
void api_parking_free(api_parking *parking);

/* Wakes every parked request now (server draining). Thread-safe. */
void api_parking_wake_all(api_parking *parking);

/* True when no more requests may park (RAYD_MAX_PARKED), or when the body budget cannot
 * hold this one while it waits on a few refs (api/budget.h; its share is kept for the
 * park that follows). Handlers whose request already did its work (a submitted task)
 * answer without waiting then, rather than 429 or 503. */
bool api_parking_full(api_request *req);

/* Server stopping, before MHD_stop_daemon (which must find no connection suspended):
 * from now on no request parks (a handler that would is called again at once, past its
 * deadline, and answers with what there is); every parked request is woken; then waits
 * until each request that ever parked has completed (its answer sent), up to timeout
 * seconds, and in any case until every suspended connection has been resumed. Returns
 * true when all completed. Call once, from the thread that stops the server. */
bool api_parking_close(api_parking *parking, double timeout);

/* How many requests are parked now. */
size_t api_parking_count(api_parking *parking);

/* How many parked requests were woken because their client went away. */
unsigned long long api_parking_clients_gone(api_parking *parking);

/* Parks req until `needed` of the n refs have resolved (left PENDING) or req->deadline.
 * refs are borrowed for the call only. Suspends the connection. Returns MHD_YES, or an
 * answered 429 (RAYD_MAX_PARKED) or 503 problem (the body budget cannot hold what the
 * request keeps while parked, or out of memory). The handler must return right after. */
enum MHD_Result api_park_on_refs(api_request *req, const char *const *refs, size_t n,
                                 size_t needed);

/* Ends the current round of a resumed request: removes its watchers, its deadline and its
 * socket watch, and drops the request's reference. When the client went away, sets
 * req->deadline to 0 so that the handler answers at once. Called by the server before it
 * calls the handler again. NULL park accepted. */
void api_park_finish(api_request *req);

/* A request completed (MHD's completion callback): ends its round as api_park_finish, and
 * counts it down if it ever parked, so api_parking_close knows when all are answered. */
void api_park_complete(api_request *req);

#endif
