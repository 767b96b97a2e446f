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
 * - Suspended connections are invisible to MHD's timeouts and disconnect detection; the
 *   deadline (capped by RAYD_MAX_WAIT) bounds how long a vanished client costs memory. */
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

/* Wakes every parked request now (server stopping). Thread-safe. */
void api_parking_wake_all(api_parking *parking);

/* True when no more requests may park (RAYD_MAX_PARKED), or when the body budget cannot
 * hold this one while it waits on a few refs (api/budget.h; its share is kept for the
 * park that follows). Handlers whose request already did its work (a submitted task)
 * answer without waiting then, rather than 429 or 503. */
bool api_parking_full(api_request *req);

/* How many requests are parked now. */
size_t api_parking_count(api_parking *parking);

/* Parks req until `needed` of the n refs have resolved (left PENDING) or req->deadline.
 * refs are borrowed for the call only. Suspends the connection. Returns MHD_YES, or an
 * answered 429 (RAYD_MAX_PARKED) or 503 problem (the body budget cannot hold what the
 * request keeps while parked, or out of memory). The handler must return right after. */
enum MHD_Result api_park_on_refs(api_request *req, const char *const *refs, size_t n,
                                 size_t needed);

/* Ends the current round of a resumed request: removes its watchers and its deadline and
 * drops the request's reference. Called by the server before it calls the handler again,
 * and when a request completes. NULL park accepted. */
void api_park_finish(api_request *req);

#endif
