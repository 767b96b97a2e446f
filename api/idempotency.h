/* Idempotency-Key (IETF httpapi draft): a client that retries a POST with the same key gets
 * the first answer back instead of having the work done twice; the same key with another
 * body is 422. Keys are scoped to method and path and remembered for a configured time.
 *
 * A request with a key is looked up when its body is complete: a remembered answer is
 * replayed; a key whose first request is still running answers 409; otherwise the request
 * runs and its answer is recorded. Answers 429 and 5xx are not remembered (a retry should
 * try again).
 *
 * Memory: the table holds at most max_bytes of keys and answers (RAYD_IDEMPOTENCY_MAX_BYTES)
 * and max_keys keys; beyond either, the oldest answered keys are forgotten first (a retry
 * of a forgotten key does the work again, as after the TTL). An answer that is a stored
 * object is kept as a reference to the object's buffer, not a copy, and counted in full,
 * since it keeps the buffer alive after the store has let it go; an answer larger than
 * max_bytes by itself is not remembered. Thread-safe: one mutex guards the table.
 *
 * Cluster mode: the key is also claimed in Redis (key idem:<sha256 of method, path and
 * key>), so a retry through another node replays the first answer, answers 409 while it
 * runs, 422 for another body. See docs/cluster.md, "Idempotency-Key across nodes". */
#ifndef RAYD_API_IDEMPOTENCY_H
#define RAYD_API_IDEMPOTENCY_H

#include <stddef.h>

#include "api/request.h"

typedef struct api_idempotency api_idempotency;

/* A new table. max_keys 0: 100,000; max_bytes 0: no byte limit. NULL when out of memory. */
api_idempotency *api_idempotency_new(double ttl_seconds, size_t max_keys, size_t max_bytes);
void api_idempotency_free(api_idempotency *table); /* NULL accepted */

/* For a request whose route takes keys and whose body is complete: returns 0 to go on
 * (req->idem_entry is set when the request carries a key), or 1 when it has answered
 * (replay, 400 bad key, 409 in progress, 422 other body). */
int api_idempotency_begin(api_idempotency *table, api_request *req);

/* Records the answer being queued for req (called by api_reply). body is borrowed.
 * Returns 1 when the answer must be held (cluster mode: the connection is suspended until
 * Redis has it; then api_idempotency_send_held sends it), else 0: send it now. */
int api_idempotency_record(api_idempotency *table, api_request *req, unsigned status,
                           struct MHD_Response *resp, const char *content_type);

/* Sends the answer held by api_idempotency_record (the connection was resumed). */
enum MHD_Result api_idempotency_send_held(api_request *req);

/* Forgets an entry whose request ended without an answer (the client went away). */
void api_idempotency_abandon(api_idempotency *table, api_request *req);

typedef struct api_idempotency_stats {
    size_t keys;         /* keys remembered (answered or in progress) */
    size_t bytes;        /* bytes they hold, answers included */
    size_t shared_bytes; /* the part of bytes that is stored objects' buffers, kept by
                            reference rather than copied */
    size_t max_bytes;    /* the limit (0: none) */
    unsigned long long evictions; /* answered keys forgotten early to stay within the limits */
} api_idempotency_stats;

/* A snapshot of the table's figures. NULL table: all zero. */
void api_idempotency_get_stats(api_idempotency *table, api_idempotency_stats *out);

#endif
