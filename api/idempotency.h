/* Idempotency-Key (IETF httpapi draft): a client that retries a POST with the same key gets
 * the first answer back instead of having the work done twice; the same key with another
 * body is 422. Keys are scoped to method and path and remembered for a configured time.
 *
 * A request with a key is looked up when its body is complete: a remembered answer is
 * replayed; a key whose first request is still running answers 409; otherwise the request
 * runs and its answer is recorded. Answers 429 and 5xx are not remembered (a retry should
 * try again). Thread-safe: one mutex guards the table. */
#ifndef RAYD_API_IDEMPOTENCY_H
#define RAYD_API_IDEMPOTENCY_H

#include <stddef.h>

#include "api/request.h"

typedef struct api_idempotency api_idempotency;

api_idempotency *api_idempotency_new(double ttl_seconds, size_t max_keys);
void api_idempotency_free(api_idempotency *table); /* NULL accepted */

/* For a request whose route takes keys and whose body is complete: returns 0 to go on
 * (req->idem_entry is set when the request carries a key), or 1 when it has answered
 * (replay, 400 bad key, 409 in progress, 422 other body). */
int api_idempotency_begin(api_idempotency *table, api_request *req);

/* Records the answer being queued for req (called by api_reply). body is borrowed. */
void api_idempotency_record(api_idempotency *table, api_request *req, unsigned status,
                            struct MHD_Response *resp, const char *content_type);

/* Forgets an entry whose request ended without an answer (the client went away). */
void api_idempotency_abandon(api_idempotency *table, api_request *req);

#endif
